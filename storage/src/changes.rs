//! The change store's memory: every change to a primary-key table since its base was
//! last compacted, per bucket, with every version of every key (MVCC).
//!
//! A committed statement or transaction is a [`Chunk`] per bucket it touched, stamped
//! with the table version (sequence number) it created. Readers pin a version and see,
//! per key, the newest change at or below it; writers see everything, including commits
//! whose log record is still being fsynced (their version is not visible yet).
//!
//! An [`Epoch`] is the state between two compactions: the base's primary-key index (key
//! to base row address) and the buckets. Compaction builds a new epoch; readers that
//! pinned the old one keep reading it unchanged.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arrow::array::RecordBatch;
use arrow::compute::interleave_record_batch;
use roaring::RoaringTreemap;

use crate::error::{Result, StorageError};
use crate::key::Key;

/// What a change does to its key. Stored as `u8` in the log and in change files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChangeOp {
    /// A new key.
    Insert = 1,
    /// New values for an existing key.
    Update = 2,
    /// The key is gone; the row holds its last values (for the change feed).
    Delete = 3,
}

impl ChangeOp {
    pub fn from_u8(value: u8) -> Result<Self> {
        match value {
            1 => Ok(ChangeOp::Insert),
            2 => Ok(ChangeOp::Update),
            3 => Ok(ChangeOp::Delete),
            other => Err(StorageError::internal(format!("unknown change operation {other}"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ChangeOp::Insert => "insert",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
        }
    }
}

/// Changes of one commit to one bucket: rows with the table's schema, one op per row,
/// at most one row per key.
#[derive(Debug)]
pub struct Chunk {
    pub seq: u64,
    pub ops: Vec<ChangeOp>,
    pub rows: RecordBatch,
    pub keys: Vec<Key>,
    pub committed_at_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct Version {
    seq: u64,
    chunk: u32,
    row: u32,
    op: ChangeOp,
}

#[derive(Debug, Default)]
struct Entry {
    /// Where the key's row is in the base, if it is there.
    base: Option<u64>,
    /// Oldest first.
    versions: Vec<Version>,
}

/// What a reader at one version sees of a bucket's changes.
#[derive(Debug)]
pub struct BucketView {
    pub seq: u64,
    /// The newest row of every key whose newest change is not a delete.
    pub rows: Option<RecordBatch>,
    /// Base rows replaced or deleted by a change (the deletion vector).
    pub deleted: RoaringTreemap,
    /// Changes at or below `seq` (every version, not only the newest).
    pub change_rows: usize,
}

#[derive(Debug, Default)]
pub struct Bucket {
    chunks: Vec<Arc<Chunk>>,
    entries: HashMap<Key, Entry>,
    /// `chunks[..flushed]` are in change files.
    flushed: usize,
    view: Option<Arc<BucketView>>,
}

/// The answer to "what is this key's row" at some version.
#[derive(Debug)]
pub enum Lookup {
    /// The newest change: a row (one-row batch), or `None` for a delete.
    Changed(Option<RecordBatch>),
    /// Unchanged since the base; the row is at this base address.
    InBase(u64),
    Absent,
}

/// The base's primary-key index: key to base row address, and the base rows that
/// compactions deleted (the base's deletion vector; its rows are in no key's entry).
#[derive(Debug, Default)]
pub struct BaseKeys {
    pub map: HashMap<Key, u64>,
    pub deleted: Arc<RoaringTreemap>,
}

#[derive(Debug)]
pub struct Epoch {
    /// Every change up to this version is in the base.
    pub folded_seq: u64,
    pub base_keys: Arc<BaseKeys>,
    buckets: Vec<RwLock<Bucket>>,
    /// The keys the last compactions folded, newest first, so a transaction that began
    /// before them still detects write conflicts.
    folds: Vec<Arc<Fold>>,
    /// Writers that read before this version cannot be checked exactly (the folds
    /// after it are forgotten): every key counts as changed for them.
    checked_since: u64,
}

/// The keys one compaction folded into the base (every change up to `to`), with each
/// key's newest version.
#[derive(Debug)]
struct Fold {
    to: u64,
    keys: HashMap<Key, u64>,
}

/// How much fold history an epoch keeps for conflict checks. A transaction that stays
/// open across more compactions, or across more folded keys, than this gets 40001 on
/// its first update (the same answer as a real conflict: retry).
const FOLDS_KEPT: usize = 64;
const FOLDED_KEYS_KEPT: usize = 1 << 20;

impl Epoch {
    pub fn new(folded_seq: u64, base_keys: Arc<BaseKeys>, buckets: u32) -> Self {
        Self {
            folded_seq,
            base_keys,
            buckets: (0..buckets.max(1)).map(|_| RwLock::default()).collect(),
            folds: Vec::new(),
            checked_since: folded_seq,
        }
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    fn bucket(&self, bucket: usize) -> std::sync::RwLockReadGuard<'_, Bucket> {
        self.buckets[bucket].read().expect("bucket lock poisoned")
    }

    fn bucket_mut(&self, bucket: usize) -> std::sync::RwLockWriteGuard<'_, Bucket> {
        self.buckets[bucket].write().expect("bucket lock poisoned")
    }

    /// Adds a committed chunk to `bucket`. Chunks arrive in version order.
    pub fn apply(&self, bucket: usize, chunk: Arc<Chunk>) {
        let mut b = self.bucket_mut(bucket);
        let index = b.chunks.len() as u32;
        for (row, (key, &op)) in chunk.keys.iter().zip(&chunk.ops).enumerate() {
            let entry = b.entries.entry(key.clone()).or_insert_with(|| Entry {
                base: self.base_keys.map.get(key).copied(),
                versions: Vec::new(),
            });
            entry.versions.push(Version { seq: chunk.seq, chunk: index, row: row as u32, op });
        }
        b.chunks.push(chunk);
        b.view = None;
    }

    /// The newest change of `key` at or below `seq` (`u64::MAX`: every change, also
    /// commits not yet visible), else its place in the base.
    pub fn lookup(&self, key: &Key, seq: u64) -> Lookup {
        let b = self.bucket(key.bucket(self.buckets.len() as u32));
        let entry = b.entries.get(key);
        if let Some(v) = entry.and_then(|e| e.versions.iter().rev().find(|v| v.seq <= seq)) {
            if v.op == ChangeOp::Delete {
                return Lookup::Changed(None);
            }
            let chunk = &b.chunks[v.chunk as usize];
            return Lookup::Changed(Some(chunk.rows.slice(v.row as usize, 1)));
        }
        match self.base_keys.map.get(key) {
            Some(&address) => Lookup::InBase(address),
            None => Lookup::Absent,
        }
    }

    /// Whether `key` exists in the newest state, commits not yet visible included.
    pub fn exists(&self, key: &Key) -> bool {
        match self.lookup(key, u64::MAX) {
            Lookup::Changed(row) => row.is_some(),
            Lookup::InBase(_) => true,
            Lookup::Absent => false,
        }
    }

    /// Whether a commit after `read_seq` changed `key` (a write-write conflict for a
    /// writer that read at `read_seq`).
    pub fn changed_since(&self, key: &Key, read_seq: u64) -> bool {
        if read_seq < self.checked_since {
            return true;
        }
        let b = self.bucket(key.bucket(self.buckets.len() as u32));
        if let Some(v) = b.entries.get(key).and_then(|e| e.versions.last()) {
            return v.seq > read_seq;
        }
        drop(b);
        self.folds
            .iter()
            .take_while(|f| f.to > read_seq)
            .any(|f| f.keys.get(key).is_some_and(|&seq| seq > read_seq))
    }

    /// The version of the newest change to `bucket` at or below `seq` (0 if none): two
    /// views of the bucket with the same value hold the same rows.
    pub fn bucket_seq(&self, bucket: usize, seq: u64) -> u64 {
        self.bucket(bucket).chunks.iter().rev().map(|c| c.seq).find(|&s| s <= seq).unwrap_or(0)
    }

    /// A bucket as a reader at `seq` sees it. Views of the newest version are cached
    /// until the next commit to the bucket.
    pub fn view(&self, bucket: usize, seq: u64) -> Result<Arc<BucketView>> {
        {
            let b = self.bucket(bucket);
            if let Some(view) = b.view.as_ref().filter(|v| v.seq == seq) {
                return Ok(view.clone());
            }
        }
        let b = self.bucket(bucket);
        let mut deleted = RoaringTreemap::new();
        let mut picks: Vec<(usize, usize)> = Vec::new();
        let mut change_rows = 0;
        for entry in b.entries.values() {
            let visible = entry.versions.iter().filter(|v| v.seq <= seq);
            let mut newest = None;
            for v in visible {
                change_rows += 1;
                newest = Some(v);
            }
            let Some(newest) = newest else { continue };
            if let Some(address) = entry.base {
                deleted.insert(address);
            }
            if newest.op != ChangeOp::Delete {
                picks.push((newest.chunk as usize, newest.row as usize));
            }
        }
        // Key order inside a bucket is hash order; sort by commit for stable output.
        picks.sort_unstable();
        let rows = if picks.is_empty() {
            None
        } else {
            let batches: Vec<&RecordBatch> = b.chunks.iter().map(|c| &c.rows).collect();
            Some(interleave_record_batch(&batches, &picks)?)
        };
        let newest = b.chunks.last().is_none_or(|c| c.seq <= seq);
        drop(b);
        let view = Arc::new(BucketView { seq, rows, deleted, change_rows });
        if newest {
            let mut b = self.bucket_mut(bucket);
            if b.chunks.last().is_none_or(|c| c.seq <= seq) {
                b.view = Some(view.clone());
            }
        }
        Ok(view)
    }

    /// Chunks of `bucket` not yet in change files, up to `seq`.
    pub fn unflushed(&self, bucket: usize, seq: u64) -> Vec<Arc<Chunk>> {
        let b = self.bucket(bucket);
        b.chunks[b.flushed..].iter().take_while(|c| c.seq <= seq).cloned().collect()
    }

    /// Marks the first `count` unflushed chunks of `bucket` as written to change files.
    pub fn mark_flushed(&self, bucket: usize, count: usize) {
        let mut b = self.bucket_mut(bucket);
        b.flushed = (b.flushed + count).min(b.chunks.len());
    }

    /// Every chunk of `bucket` (flushed or not), oldest first.
    pub fn chunks(&self, bucket: usize) -> Vec<Arc<Chunk>> {
        self.bucket(bucket).chunks.clone()
    }

    /// Statistics for the system views and the compaction policy.
    pub fn bucket_stats(&self, bucket: usize) -> BucketStats {
        let b = self.bucket(bucket);
        BucketStats {
            change_rows: b.chunks.iter().map(|c| c.rows.num_rows() as u64).sum(),
            unflushed_rows: b.chunks[b.flushed..].iter().map(|c| c.rows.num_rows() as u64).sum(),
            keys: b.entries.len() as u64,
            deleted_base_rows: b.entries.values().filter(|e| e.base.is_some()).count() as u64,
            oldest_unflushed_ms: b.chunks.get(b.flushed).map(|c| c.committed_at_ms),
            oldest_change_ms: b.chunks.first().map(|c| c.committed_at_ms),
        }
    }

    /// The epoch after a compaction that folded every change up to `folded_seq` into a
    /// new base: later chunks carry over, the folded keys are remembered for conflict
    /// checks (with the last [`FOLDS_KEPT`] compactions' keys).
    pub fn successor(&self, folded_seq: u64, base_keys: Arc<BaseKeys>) -> Epoch {
        let mut next = Epoch::new(folded_seq, base_keys, self.buckets.len() as u32);
        let mut fold = Fold { to: folded_seq, keys: HashMap::new() };
        for bucket in 0..self.buckets.len() {
            let b = self.bucket(bucket);
            let mut flushed_kept = 0;
            for (i, chunk) in b.chunks.iter().enumerate() {
                if chunk.seq <= folded_seq {
                    for key in &chunk.keys {
                        fold.keys.insert(key.clone(), chunk.seq);
                    }
                } else {
                    if i < b.flushed {
                        flushed_kept += 1;
                    }
                    next.apply(bucket, chunk.clone());
                }
            }
            next.mark_flushed(bucket, flushed_kept);
        }
        next.checked_since = self.checked_since;
        let mut kept_keys = fold.keys.len();
        if !fold.keys.is_empty() {
            next.folds.push(Arc::new(fold));
        }
        for older in &self.folds {
            kept_keys += older.keys.len();
            if next.folds.len() == FOLDS_KEPT || kept_keys > FOLDED_KEYS_KEPT {
                next.checked_since = older.to;
                break;
            }
            next.folds.push(older.clone());
        }
        next
    }
}

#[derive(Debug, Clone, Default)]
pub struct BucketStats {
    /// Change rows held (every version), flushed or not.
    pub change_rows: u64,
    pub unflushed_rows: u64,
    /// Distinct keys changed since the base.
    pub keys: u64,
    /// Base rows superseded by a change (the deletion vector's size).
    pub deleted_base_rows: u64,
    pub oldest_unflushed_ms: Option<u64>,
    pub oldest_change_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn chunk(seq: u64, rows: &[(i64, &str, ChangeOp)]) -> Arc<Chunk> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        Arc::new(Chunk {
            seq,
            ops: rows.iter().map(|r| r.2).collect(),
            keys: rows.iter().map(|r| Key::Int(r.0)).collect(),
            rows: batch,
            committed_at_ms: 0,
        })
    }

    fn single_bucket(base: &[(i64, u64)]) -> Epoch {
        let keys =
            BaseKeys { map: base.iter().map(|&(k, a)| (Key::Int(k), a)).collect(), ..Default::default() };
        Epoch::new(1, Arc::new(keys), 1)
    }

    #[test]
    fn readers_see_the_newest_change_at_their_version() {
        let epoch = single_bucket(&[(1, 100), (2, 101)]);
        epoch.apply(0, chunk(2, &[(1, "a2", ChangeOp::Update), (3, "c2", ChangeOp::Insert)]));
        epoch.apply(0, chunk(3, &[(1, "", ChangeOp::Delete), (3, "c3", ChangeOp::Update)]));

        let at2 = epoch.view(0, 2).unwrap();
        assert_eq!(at2.rows.as_ref().unwrap().num_rows(), 2);
        assert_eq!(at2.deleted.iter().collect::<Vec<_>>(), vec![100]);
        let at3 = epoch.view(0, 3).unwrap();
        assert_eq!(at3.rows.as_ref().unwrap().num_rows(), 1, "key 1 deleted, key 3 updated");
        assert_eq!(at3.change_rows, 4);
        let at1 = epoch.view(0, 1).unwrap();
        assert!(at1.rows.is_none() && at1.deleted.is_empty());

        assert!(matches!(epoch.lookup(&Key::Int(1), 2), Lookup::Changed(Some(_))));
        assert!(matches!(epoch.lookup(&Key::Int(1), 3), Lookup::Changed(None)));
        assert!(matches!(epoch.lookup(&Key::Int(2), 3), Lookup::InBase(101)));
        assert!(matches!(epoch.lookup(&Key::Int(9), 3), Lookup::Absent));
        assert!(!epoch.exists(&Key::Int(1)) && epoch.exists(&Key::Int(2)) && epoch.exists(&Key::Int(3)));
        assert!(epoch.changed_since(&Key::Int(3), 2) && !epoch.changed_since(&Key::Int(3), 3));
    }

    #[test]
    fn successor_keeps_later_chunks_and_remembers_folded_keys() {
        let epoch = single_bucket(&[]);
        epoch.apply(0, chunk(2, &[(1, "a", ChangeOp::Insert)]));
        epoch.mark_flushed(0, 1);
        epoch.apply(0, chunk(3, &[(2, "b", ChangeOp::Insert)]));
        let base = BaseKeys { map: [(Key::Int(1), 7)].into_iter().collect(), ..Default::default() };
        let next = epoch.successor(2, Arc::new(base));
        assert!(matches!(next.lookup(&Key::Int(1), 3), Lookup::InBase(7)));
        assert!(matches!(next.lookup(&Key::Int(2), 3), Lookup::Changed(Some(_))));
        assert!(next.changed_since(&Key::Int(1), 1), "folded write after the reader's version");
        assert!(!next.changed_since(&Key::Int(1), 2));
        assert_eq!(next.unflushed(0, u64::MAX).len(), 1);
    }

    /// A transaction open across several compactions still sees exactly which keys
    /// changed after it read, not "everything".
    #[test]
    fn conflict_checks_span_several_compactions() {
        let mut epoch = single_bucket(&[]);
        for seq in 2..6u64 {
            epoch.apply(0, chunk(seq, &[(seq as i64, "x", ChangeOp::Insert)]));
            epoch = epoch.successor(seq, Arc::new(BaseKeys::default()));
        }
        // Read at 1, before all four folds: keys 2..5 changed since, key 9 did not.
        assert!((2..6).all(|k| epoch.changed_since(&Key::Int(k), 1)));
        assert!(!epoch.changed_since(&Key::Int(9), 1));
        assert!(!epoch.changed_since(&Key::Int(2), 3) && epoch.changed_since(&Key::Int(4), 3));
        // Compactions that fold nothing take no room; beyond the kept history every key
        // counts as changed.
        for seq in 6..6 + FOLDS_KEPT as u64 {
            epoch = epoch.successor(seq - 1, Arc::new(BaseKeys::default()));
            epoch.apply(0, chunk(seq, &[(100, "y", ChangeOp::Insert)]));
            epoch = epoch.successor(seq, Arc::new(BaseKeys::default()));
        }
        assert!(epoch.changed_since(&Key::Int(9), 1));
        assert!(!epoch.changed_since(&Key::Int(9), 6) && epoch.changed_since(&Key::Int(100), 6));
    }
}
