//! Moving changes out of memory and the log: flushes write change files, compaction
//! folds changes into the base, a checkpoint lets the log drop old segments.
//!
//! - **Flush** (per table): the changes not yet in change files are written, one
//!   Parquet file per bucket (`changes/<bucket>/<min>-<max>.parquet`: the table's
//!   columns, the op, the version), and a manifest naming them is committed.
//! - **Compaction** (per table): after a flush, the newest row of every changed key is
//!   appended to the Lance base, the base rows the changes replaced join the base's
//!   deletion vector (a roaring bitmap of row addresses, `deletes/<version>.roaring`),
//!   and a manifest with the new base, the deletion vector and `folded_seq` is
//!   committed. Its cost follows the changes, not the table. (Lance's own deletion
//!   files would turn every gap between deleted rows into a read range: a scan of a
//!   base with 10% scattered deletes read 100k ranges and took twice as long.) It holds the writer lock
//!   only for that commit; readers keep their pinned snapshot (old Lance versions stay).
//! - **Base rewrite**: a compaction after which the deletion vector would hide a third
//!   of the base's rows (or `CLUSTER`) writes the live rows and the changes as a new base
//!   (a Lance overwrite; readers of older versions keep theirs until retention lets
//!   them go), with an empty deletion vector and its indexes built anew.
//! - **Checkpoint**: a new log segment is started, every table flushes, the older
//!   segments are deleted (everything in them is in change files now).
//!
//! Rows reach the base in the table's clustering order ([`crate::cluster`]), if it has
//! one: appended rows sorted among themselves, a rewritten base as a whole.
//!
//! When to do which is [`decide`], a pure function of [`TableStats`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;
use lance::dataset::{InsertBuilder, WriteDestination, WriteMode, WriteParams};
use lance::Dataset;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use roaring::RoaringTreemap;
use tracing::{debug, info};

use crate::changes::{BaseKeys, BucketStats, Chunk, Epoch};
use crate::cluster::ClusterBy;
use crate::commit::{align_to_schema, split_op_column, with_op_column, SEQ_COLUMN};
use crate::error::{Result, StorageError};
use crate::failpoint::failpoint;
use crate::io::Location;
use crate::key::{Key, KeyCodec};
use crate::manifest::{now_ms, BaseRef, ChangeFile, CompactionInfo, DeleteFile, Manifest};
use crate::table::{encode_parquet, read_columns, read_parquet, BaseSnapshot, Table, MAX_ROWS_PER_FILE};
use crate::table_def::TableDef;
use crate::vector_index;

/// When a table flushes and compacts, from its `WITH (...)` options.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `auto_compaction`: compact in the background (else only on `VACUUM`).
    pub auto_compaction: bool,
    /// `compaction_interval`: compact changes at least this old (`off`: never by age).
    pub compaction_interval: Option<Duration>,
    /// `compaction_threshold`: compact once a bucket holds this many change rows.
    pub compaction_threshold: u64,
    /// `flush_rows`: flush once this many change rows are only in the log.
    pub flush_rows: u64,
    /// `flush_interval`: flush changes that have been only in the log this long.
    pub flush_interval: Duration,
    /// `history_retention`: how far back time travel reaches (`None`: the
    /// warehouse's default). See [`crate::retention`].
    pub history_retention: Option<Duration>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            auto_compaction: true,
            compaction_interval: Some(Duration::from_secs(600)),
            compaction_threshold: 100_000,
            flush_rows: 50_000,
            flush_interval: Duration::from_secs(10),
            history_retention: None,
        }
    }
}

impl Policy {
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self> {
        let mut policy = Policy::default();
        let invalid = |key: &str, value: &str, expected: &str| StorageError::InvalidOption {
            message: format!("invalid value for option \"{key}\": \"{value}\" (expected {expected})"),
        };
        for (key, value) in options {
            let v = value.trim().trim_matches('\'').to_ascii_lowercase();
            match key.as_str() {
                "auto_compaction" => {
                    policy.auto_compaction = match v.as_str() {
                        "on" | "true" | "yes" | "1" => true,
                        "off" | "false" | "no" | "0" => false,
                        _ => return Err(invalid(key, value, "on or off")),
                    }
                }
                "compaction_interval" => {
                    policy.compaction_interval = match v.as_str() {
                        "off" | "0" => None,
                        _ => Some(
                            parse_duration(&v).ok_or_else(|| invalid(key, value, "a duration like '30s'"))?,
                        ),
                    }
                }
                "flush_interval" => {
                    policy.flush_interval =
                        parse_duration(&v).ok_or_else(|| invalid(key, value, "a duration like '5s'"))?
                }
                "history_retention" => {
                    policy.history_retention = Some(
                        parse_retention(&v).ok_or_else(|| invalid(key, value, "a duration like '7 days'"))?,
                    )
                }
                "compaction_threshold" => {
                    policy.compaction_threshold = v
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| invalid(key, value, "a positive row count"))?
                }
                "flush_rows" => {
                    policy.flush_rows = v
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| invalid(key, value, "a positive row count"))?
                }
                _ => {}
            }
        }
        Ok(policy)
    }
}

/// `100ms`, `30s`, `5min`, `6h`, `1d`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" | "sec" | "secs" | "second" | "seconds" => number,
        "m" | "min" | "mins" | "minute" | "minutes" => number * 60.0,
        "h" | "hour" | "hours" => number * 3600.0,
        "d" | "day" | "days" => number * 86400.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// A retention: a duration, or `0` (keep only the newest version).
pub fn parse_retention(text: &str) -> Option<Duration> {
    match text.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == ' ') {
        "0" => Some(Duration::ZERO),
        _ => parse_duration(text),
    }
}

/// What the policy looks at.
#[derive(Debug, Clone, Default)]
pub struct TableStats {
    pub now_ms: u64,
    pub buckets: Vec<BucketStats>,
    pub last_compaction_ms: Option<u64>,
    /// The table has vector indexes: rows only in the change store are in none of
    /// them (every kNN query compares them all), and an index declared on a table
    /// whose rows are all changes is not built until they are in the base.
    pub indexed: bool,
}

/// Bases smaller than this are never rewritten (their garbage costs little).
pub const REWRITE_MIN_ROWS: u64 = 1024;

/// Change rows (all buckets) past which a table with vector indexes is compacted, so
/// its indexes cover them: searching this many exactly costs a kNN query about what
/// the index search does.
pub const INDEXED_CHANGE_ROWS: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Flush,
    /// Compact; the buckets that asked for it (compaction folds every bucket).
    Compact {
        buckets: Vec<usize>,
    },
}

/// The background maintenance a table needs now. Pure: statistics in, decision out.
pub fn decide(policy: &Policy, stats: &TableStats) -> Action {
    if policy.auto_compaction {
        let over: Vec<usize> = stats
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| b.change_rows >= policy.compaction_threshold)
            .map(|(i, _)| i)
            .collect();
        if !over.is_empty() {
            return Action::Compact { buckets: over };
        }
        let change_rows: u64 = stats.buckets.iter().map(|b| b.change_rows).sum();
        if stats.indexed && change_rows >= INDEXED_CHANGE_ROWS.min(policy.compaction_threshold) {
            let changed = stats.buckets.iter().enumerate().filter(|(_, b)| b.change_rows > 0);
            return Action::Compact { buckets: changed.map(|(i, _)| i).collect() };
        }
        if let Some(interval) = policy.compaction_interval {
            let due: Vec<usize> = stats
                .buckets
                .iter()
                .enumerate()
                .filter(|(_, b)| {
                    b.oldest_change_ms
                        .is_some_and(|t| stats.now_ms.saturating_sub(t) >= interval.as_millis() as u64)
                })
                .map(|(i, _)| i)
                .collect();
            if !due.is_empty() {
                return Action::Compact { buckets: due };
            }
        }
    }
    let unflushed: u64 = stats.buckets.iter().map(|b| b.unflushed_rows).sum();
    let oldest = stats.buckets.iter().filter_map(|b| b.oldest_unflushed_ms).min();
    let aged =
        oldest.is_some_and(|t| stats.now_ms.saturating_sub(t) >= policy.flush_interval.as_millis() as u64);
    if unflushed >= policy.flush_rows || aged {
        return Action::Flush;
    }
    Action::Nothing
}

impl Table {
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Per-bucket statistics of the newest state (primary-key tables; empty otherwise).
    pub fn stats(&self) -> TableStats {
        let snapshot = self.snapshot();
        let buckets = match &snapshot.changes {
            Some(epoch) => (0..epoch.bucket_count()).map(|b| epoch.bucket_stats(b)).collect(),
            None => Vec::new(),
        };
        TableStats {
            now_ms: now_ms(),
            buckets,
            last_compaction_ms: snapshot.manifest.last_compaction.map(|c| c.at_ms),
            indexed: !snapshot.manifest.indexes.is_empty() || !snapshot.manifest.text_indexes.is_empty(),
        }
    }

    /// Background maintenance: does what [`decide`] says.
    pub async fn maintain(self: &Arc<Self>) -> Result<()> {
        if !self.has_primary_key() {
            return Ok(());
        }
        match decide(&self.policy, &self.stats()) {
            Action::Nothing => Ok(()),
            Action::Flush => self.flush().await,
            Action::Compact { buckets } => {
                debug!(table = %self.name(), ?buckets, "buckets due for compaction");
                self.compact().await.map(|_| ())
            }
        }
    }

    /// Writes the changes that are only in the log to change files and commits a
    /// manifest naming them.
    pub async fn flush(&self) -> Result<()> {
        self.location.fence().check()?;
        let writer = self.writer.lock().await;
        let snapshot = self.snapshot();
        let Some(epoch) = snapshot.changes.clone() else { return Ok(()) };
        let upto = writer.next_seq - 1;
        if upto <= snapshot.manifest.seq {
            return Ok(());
        }
        let mut manifest = snapshot.manifest.successor();
        let mut flushed = Vec::new();
        for bucket in 0..epoch.bucket_count() {
            let chunks = epoch.unflushed(bucket, upto);
            if chunks.is_empty() {
                continue;
            }
            let file = self.write_change_file(bucket, &chunks, &snapshot.schema()).await?;
            flushed.push((bucket, chunks.len()));
            manifest.changes.push(file);
        }
        failpoint("flush-before-manifest");
        manifest.seq = upto;
        manifest.sequences = writer.sequences.clone();
        self.manifests.commit(&manifest).await?;
        failpoint("flush-after-manifest");
        for (bucket, count) in flushed {
            epoch.mark_flushed(bucket, count);
        }
        debug!(table = %self.name(), upto, "flushed changes");
        self.publish(manifest, &writer, None).await
    }

    async fn write_change_file(
        &self,
        bucket: usize,
        chunks: &[Arc<Chunk>],
        schema: &Arc<Schema>,
    ) -> Result<ChangeFile> {
        let mut batches = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let rows = align_to_schema(&chunk.rows, schema)?;
            let mut batch = with_op_column(&rows, &chunk.ops)?;
            let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.push(Field::new(SEQ_COLUMN, DataType::UInt64, false));
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            columns.push(Arc::new(UInt64Array::from(vec![chunk.seq; rows.num_rows()])));
            batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
            batches.push(batch);
        }
        let file_schema = batches[0].schema();
        let (min_seq, max_seq) = (chunks[0].seq, chunks[chunks.len() - 1].seq);
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let bytes = encode_parquet(&file_schema, &batches)?;
        let name = format!("{min_seq:020}-{max_seq:020}.parquet");
        let size = bytes.len() as u64;
        let path = change_file_path(&self.dir, bucket as u32, &name);
        self.location.store().put(&path, PutPayload::from(bytes)).await?;
        Ok(ChangeFile { bucket: bucket as u32, name, min_seq, max_seq, rows, bytes: size })
    }

    /// Folds every change into the base. Returns false when there was nothing to fold.
    pub async fn compact(&self) -> Result<bool> {
        self.compact_rewriting(false).await
    }

    /// [`Self::compact`]; with `force_rewrite`, the base is written anew even when there
    /// is no change to fold (`CLUSTER`: in the table's clustering order).
    pub(crate) async fn compact_rewriting(&self, force_rewrite: bool) -> Result<bool> {
        self.location.fence().check()?;
        let _one = self.compacting.lock().await;
        self.flush().await?;
        let started = Instant::now();
        let snapshot = self.snapshot();
        let (Some(epoch), BaseSnapshot::Lance(_)) = (snapshot.changes.clone(), &snapshot.base) else {
            return Ok(false);
        };
        let codec = self.codec.as_ref().expect("a table with changes has a key");
        let upto = snapshot.manifest.seq;
        if upto <= snapshot.manifest.folded_seq && !force_rewrite {
            return Ok(false);
        }

        let mut deleted = RoaringTreemap::new();
        let mut rows = Vec::new();
        let mut folded_rows = 0u64;
        let mut changed_keys: Vec<Key> = Vec::new();
        for bucket in 0..epoch.bucket_count() {
            let view = epoch.view(bucket, upto)?;
            deleted |= &view.deleted;
            folded_rows += view.change_rows as u64;
            rows.extend(view.rows.clone());
            for chunk in epoch.chunks(bucket).iter().take_while(|c| c.seq <= upto) {
                changed_keys.extend(chunk.keys.iter().cloned());
            }
        }

        // The base is written by compaction (and ALTER, which compacts first) only,
        // both under `compacting`: the head can be used without the writer lock.
        let head = {
            let mut writer = self.writer.lock().await;
            self.head(&mut writer, &snapshot).await?
        };
        let mut all_deleted = epoch.base_keys.deleted.as_ref().clone();
        all_deleted |= &deleted;
        let appended: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
        let physical = head.count_rows(None).await? as u64 + appended;
        // Once a third of the base is rows the deletion vector hides, the live rows are
        // written anew instead: a table updated for days scans, opens and takes space
        // as a fresh one (within 1.5x). A row is rewritten once per half its table's
        // live rows replaced.
        let rewrite = force_rewrite || (physical >= REWRITE_MIN_ROWS && all_deleted.len() * 3 > physical);
        let def = &snapshot.manifest.table;
        let result = if rewrite {
            self.rewrite_base(head, &snapshot.base, &all_deleted, rows, codec, def).await
        } else {
            self.append_to_base(head, rows, codec, def).await
        };
        let (mut new_base, added_keys) = match result {
            Ok(done) => done,
            Err(e) => {
                self.writer.lock().await.head = None;
                return Err(e);
            }
        };

        let keys = if rewrite {
            all_deleted = RoaringTreemap::new();
            added_keys.into_iter().collect()
        } else {
            let mut keys = epoch.base_keys.map.clone();
            for key in &changed_keys {
                keys.remove(key);
            }
            keys.extend(added_keys);
            keys
        };
        let row_count = new_base.count_rows(None).await? as u64 - all_deleted.len();
        // Vector indexes take the appended rows (a delta, not a rebuild); a rewritten
        // base's are trained anew (Lance drops the indexes of a dataset it overwrites).
        let mut index_defs = snapshot.manifest.indexes.clone();
        let mut text_defs = snapshot.manifest.text_indexes.clone();
        let mut scalar_defs = snapshot.manifest.scalar_indexes.clone();
        if rewrite {
            index_defs.iter_mut().for_each(|d| d.built = false);
            text_defs.iter_mut().for_each(|d| d.segments.clear());
            scalar_defs.iter_mut().for_each(|d| d.built = false);
        }
        let indexes = if index_defs.is_empty() {
            Vec::new()
        } else {
            let name = self.name().to_string();
            match vector_index::refresh(&mut new_base, &index_defs, row_count, &name, &self.builds).await {
                Ok(indexes) => indexes,
                Err(e) => {
                    self.writer.lock().await.head = None;
                    return Err(e);
                }
            }
        };
        // Scalar indexes merge the appended fragments in.
        let scalar_indexes = if scalar_defs.is_empty() {
            Vec::new()
        } else {
            let name = self.name().to_string();
            match crate::scalar_index::refresh(&mut new_base, &scalar_defs, &name, &self.builds).await {
                Ok(defs) => defs,
                Err(e) => {
                    self.writer.lock().await.head = None;
                    return Err(e);
                }
            }
        };
        // Text indexes take a segment over the appended fragments.
        let text_indexes = match crate::text_index::refresh(self, &new_base, &text_defs).await {
            Ok(defs) => defs,
            Err(e) => {
                self.writer.lock().await.head = None;
                return Err(e);
            }
        };
        failpoint("compaction-before-commit");

        let mut writer = self.writer.lock().await;
        let latest = self.snapshot();
        let mut manifest = latest.manifest.successor();
        let deletes = self.write_deletes(&manifest, &all_deleted).await;
        let deletes = match deletes {
            Ok(file) => file,
            Err(e) => {
                writer.head = None;
                return Err(e);
            }
        };
        manifest.deletes = Some(deletes);
        manifest.base = BaseRef::Lance { version: new_base.version().version };
        manifest.folded_seq = upto;
        // The manifest keeps the live change files; the folded ones go to the history.
        let (folded, live): (Vec<ChangeFile>, Vec<ChangeFile>) =
            std::mem::take(&mut manifest.changes).into_iter().partition(|f| f.max_seq <= upto);
        manifest.changes = live;
        if let Err(e) = self.write_history(&folded).await {
            writer.head = None;
            return Err(e);
        }
        manifest.row_count = row_count;
        manifest.indexes = indexes;
        manifest.text_indexes = text_indexes;
        manifest.scalar_indexes = scalar_indexes;
        let duration_ms = started.elapsed().as_millis() as u64;
        manifest.last_compaction = Some(CompactionInfo { at_ms: now_ms(), duration_ms, rows: folded_rows });
        if let Err(e) = self.manifests.commit(&manifest).await {
            writer.head = None;
            return Err(e);
        }
        failpoint("compaction-after-commit");
        let current_epoch = latest.changes.clone().expect("primary-key table has an epoch");
        let next = Arc::new(
            current_epoch.successor(upto, Arc::new(BaseKeys { map: keys, deleted: Arc::new(all_deleted) })),
        );
        writer.head = Some(new_base);
        self.publish(manifest, &writer, Some(next)).await?;
        info!(table = %self.name(), upto, folded_rows, duration_ms, "compacted");
        Ok(true)
    }

    /// Writes the base's deletion vector for the manifest about to be committed.
    async fn write_deletes(&self, manifest: &Manifest, deleted: &RoaringTreemap) -> Result<DeleteFile> {
        let mut bytes = Vec::with_capacity(deleted.serialized_size());
        deleted
            .serialize_into(&mut bytes)
            .map_err(|e| StorageError::internal(format!("deletion vector: {e}")))?;
        let name = format!("{:020}.roaring", manifest.version.0);
        let path = self.dir.clone().join("deletes").join(name.as_str());
        self.location.store().put(&path, PutPayload::from(bytes)).await?;
        Ok(DeleteFile { name, rows: deleted.len() })
    }

    /// Writes the base anew: its rows outside `deleted`, then `rows`. Returns the new
    /// base and every key with its address.
    async fn rewrite_base(
        &self,
        head: Dataset,
        base: &BaseSnapshot,
        deleted: &RoaringTreemap,
        rows: Vec<RecordBatch>,
        codec: &KeyCodec,
        def: &TableDef,
    ) -> Result<(Dataset, Vec<(Key, u64)>)> {
        let columns: Vec<String> = def.schema.fields().iter().map(|f| f.name().clone()).collect();
        let mut live = Vec::new();
        for mut batch in read_columns(&self.location, base, &columns, true).await? {
            let keep: arrow::array::BooleanArray =
                row_addresses(&batch)?.values().iter().map(|a| Some(!deleted.contains(*a))).collect();
            batch.remove_column(batch.num_columns() - 1);
            live.push(arrow::compute::filter_record_batch(&batch, &keep)?);
        }
        info!(table = %def.name, live = live.iter().map(|b| b.num_rows()).sum::<usize>(), "rewriting the base");
        live.extend(rows);
        if let Some(cluster) = ClusterBy::of(def)? {
            let aligned = live.iter().map(|b| align_to_schema(b, &def.schema)).collect::<Result<Vec<_>>>()?;
            live = cluster.sort(&aligned)?;
        }
        let head = self.write_rows(head, live, def, WriteMode::Overwrite).await?;
        let keys = keys_in(&head, None, codec, def).await?;
        Ok((head, keys))
    }

    /// Appends `rows` to the base. Returns the new base and the keys of the appended
    /// rows with their addresses.
    async fn append_to_base(
        &self,
        head: Dataset,
        rows: Vec<RecordBatch>,
        codec: &KeyCodec,
        def: &TableDef,
    ) -> Result<(Dataset, Vec<(Key, u64)>)> {
        if rows.iter().all(|b| b.num_rows() == 0) {
            return Ok((head, Vec::new()));
        }
        let rows = match ClusterBy::of(def)? {
            Some(cluster) => {
                let aligned =
                    rows.iter().map(|b| align_to_schema(b, &def.schema)).collect::<Result<Vec<_>>>()?;
                cluster.sort(&aligned)?
            }
            None => rows,
        };
        let before: std::collections::HashSet<u64> =
            head.get_fragments().iter().map(|f| f.id() as u64).collect();
        let head = self.write_rows(head, rows, def, WriteMode::Append).await?;
        let new_fragments: Vec<_> = head
            .get_fragments()
            .into_iter()
            .filter(|f| !before.contains(&(f.id() as u64)))
            .map(|f| f.metadata().clone())
            .collect();
        let added = keys_in(&head, Some(new_fragments), codec, def).await?;
        Ok((head, added))
    }

    /// Writes `rows` (in the table's schema, as the base stores it) to `head` in `mode`.
    async fn write_rows(
        &self,
        head: Dataset,
        rows: Vec<RecordBatch>,
        def: &TableDef,
        mode: WriteMode,
    ) -> Result<Dataset> {
        let params = WriteParams {
            mode,
            session: Some(self.session.clone()),
            max_rows_per_file: MAX_ROWS_PER_FILE,
            ..Default::default()
        };
        let rows = rows
            .iter()
            .map(|b| crate::blob::to_lance(head.schema(), align_to_schema(b, &def.schema)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(InsertBuilder::new(WriteDestination::Dataset(Arc::new(head)))
            .with_params(&params)
            .execute(rows)
            .await?)
    }
}

/// The keys of `head`'s rows (of `fragments`, or all) with their addresses.
async fn keys_in(
    head: &Dataset,
    fragments: Option<Vec<lance::table::format::Fragment>>,
    codec: &KeyCodec,
    def: &TableDef,
) -> Result<Vec<(Key, u64)>> {
    let mut scanner = head.scan();
    if let Some(fragments) = fragments {
        scanner.with_fragments(fragments);
    }
    scanner.project(&def.primary_key)?.with_row_address();
    let mut keys = Vec::new();
    for batch in scanner.try_into_stream().await?.try_collect::<Vec<RecordBatch>>().await? {
        let (batch_keys, addresses) = keys_and_addresses(&batch, codec, def.primary_key.len())?;
        keys.extend(batch_keys.into_iter().zip(addresses));
    }
    Ok(keys)
}

/// The base's primary-key index of `manifest`: every live key with its row address,
/// and the base's deletion vector.
pub(crate) async fn base_keys(
    location: &Location,
    dir: &Path,
    manifest: &Manifest,
    base: &BaseSnapshot,
    codec: &KeyCodec,
) -> Result<BaseKeys> {
    let started = Instant::now();
    let def = &manifest.table;
    let deleted = match &manifest.deletes {
        Some(file) => {
            let path = dir.clone().join("deletes").join(file.name.as_str());
            let bytes = location.store().get(&path).await?.bytes().await?;
            RoaringTreemap::deserialize_from(bytes.as_ref())
                .map_err(|e| StorageError::internal(format!("deletion vector {path}: {e}")))?
        }
        None => RoaringTreemap::new(),
    };
    let mut map = std::collections::HashMap::new();
    if let BaseSnapshot::Lance(ds) = base {
        if ds.count_rows(None).await? > 0 {
            for batch in read_columns(location, base, &def.primary_key, true).await? {
                let (keys, addresses) = keys_and_addresses(&batch, codec, def.primary_key.len())?;
                map.extend(keys.into_iter().zip(addresses).filter(|(_, a)| !deleted.contains(*a)));
            }
        }
    }
    debug!(table = %def.name, keys = map.len(), elapsed = ?started.elapsed(), "loaded primary key index");
    Ok(BaseKeys { map, deleted: Arc::new(deleted) })
}

/// Keys (from the first `key_columns` columns) and row addresses (the last column).
fn keys_and_addresses(
    batch: &RecordBatch,
    codec: &KeyCodec,
    key_columns: usize,
) -> Result<(Vec<Key>, Vec<u64>)> {
    let columns: Vec<ArrayRef> = batch.columns()[..key_columns].to_vec();
    let keys = codec.keys_of(&columns)?;
    Ok((keys, row_addresses(batch)?.values().to_vec()))
}

/// The row addresses of a batch read with them (its last column).
fn row_addresses(batch: &RecordBatch) -> Result<&UInt64Array> {
    batch
        .column(batch.num_columns() - 1)
        .as_any()
        .downcast_ref::<UInt64Array>()
        .ok_or_else(|| StorageError::internal("row address column is not u64"))
}

/// Loads the changes of `manifest`'s live change files (newer than its base) into
/// `epoch`, up to version `upto`.
pub(crate) async fn load_change_files(
    location: &Location,
    dir: &Path,
    manifest: &Manifest,
    epoch: &Epoch,
    codec: &KeyCodec,
    upto: u64,
) -> Result<()> {
    let schema = manifest.table.schema.clone();
    for file in manifest.changes.iter().filter(|f| f.max_seq > manifest.folded_seq) {
        let chunks = read_change_file(location, dir, file, &schema, codec).await?;
        let mut applied = 0;
        for chunk in chunks.into_iter().filter(|c| c.seq > manifest.folded_seq && c.seq <= upto) {
            epoch.apply(file.bucket as usize, Arc::new(chunk));
            applied += 1;
        }
        epoch.mark_flushed(file.bucket as usize, applied);
    }
    Ok(())
}

fn change_file_path(table_dir: &Path, bucket: u32, name: &str) -> Path {
    table_dir.clone().join("changes").join(bucket.to_string()).join(name)
}

/// A change file's chunks, oldest first, with rows in today's schema.
pub(crate) async fn read_change_file(
    location: &Location,
    dir: &Path,
    file: &ChangeFile,
    schema: &Arc<Schema>,
    codec: &KeyCodec,
) -> Result<Vec<Chunk>> {
    let path = change_file_path(dir, file.bucket, &file.name);
    let mut chunks = Vec::new();
    for batch in read_parquet(location, &path, None).await? {
        let seq_index = batch.schema().index_of(SEQ_COLUMN)?;
        let seqs = batch
            .column(seq_index)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| StorageError::internal("change file version column is not u64"))?
            .clone();
        let mut without_seq = batch.clone();
        without_seq.remove_column(seq_index);
        let (rows, ops) = split_op_column(&without_seq)?;
        let rows = align_to_schema(&rows, schema)?;
        let mut start = 0;
        while start < rows.num_rows() {
            let seq = seqs.value(start);
            let mut end = start;
            while end < rows.num_rows() && seqs.value(end) == seq {
                end += 1;
            }
            let part = rows.slice(start, end - start);
            let keys = codec.keys(&part)?;
            chunks.push(Chunk { seq, ops: ops[start..end].to_vec(), rows: part, keys, committed_at_ms: 0 });
            start = end;
        }
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(change_rows: u64, unflushed_rows: u64, oldest_ms: Option<u64>) -> BucketStats {
        BucketStats {
            change_rows,
            unflushed_rows,
            keys: change_rows,
            deleted_base_rows: 0,
            oldest_unflushed_ms: if unflushed_rows > 0 { oldest_ms } else { None },
            oldest_change_ms: oldest_ms,
        }
    }

    fn policy() -> Policy {
        Policy {
            auto_compaction: true,
            compaction_interval: Some(Duration::from_secs(30)),
            compaction_threshold: 1000,
            flush_rows: 100,
            flush_interval: Duration::from_secs(5),
            history_retention: None,
        }
    }

    #[test]
    fn quiet_tables_are_left_alone() {
        let stats = TableStats {
            now_ms: 10_000,
            buckets: vec![bucket(0, 0, None); 4],
            last_compaction_ms: None,
            indexed: false,
        };
        assert_eq!(decide(&policy(), &stats), Action::Nothing);
        let stats = TableStats {
            now_ms: 10_000,
            buckets: vec![bucket(10, 10, Some(9_000))],
            last_compaction_ms: None,
            indexed: false,
        };
        assert_eq!(decide(&policy(), &stats), Action::Nothing, "few, young changes");
    }

    #[test]
    fn buckets_over_the_threshold_compact() {
        let stats = TableStats {
            now_ms: 10_000,
            buckets: vec![
                bucket(5, 0, Some(9_000)),
                bucket(1000, 0, Some(9_000)),
                bucket(2000, 10, Some(9_000)),
            ],
            last_compaction_ms: None,
            indexed: false,
        };
        assert_eq!(decide(&policy(), &stats), Action::Compact { buckets: vec![1, 2] });
        let manual = Policy { auto_compaction: false, ..policy() };
        assert_eq!(decide(&manual, &stats), Action::Nothing, "auto_compaction = off: only VACUUM compacts");
    }

    #[test]
    fn indexed_tables_compact_once_their_changes_would_cost_a_search() {
        // Four buckets of 3,000 rows each: under the per-bucket threshold, over the
        // table-wide one of an indexed table (rows in the change store are in no index).
        let p = Policy { compaction_threshold: 100_000, ..policy() };
        let stats = TableStats {
            now_ms: 10_000,
            buckets: vec![bucket(3000, 0, Some(9_000)); 4],
            last_compaction_ms: None,
            indexed: false,
        };
        assert_eq!(decide(&p, &stats), Action::Nothing);
        let indexed = TableStats { indexed: true, ..stats.clone() };
        assert_eq!(decide(&p, &indexed), Action::Compact { buckets: vec![0, 1, 2, 3] });
        let few = TableStats { buckets: vec![bucket(100, 0, Some(9_000)); 4], ..indexed };
        assert_eq!(decide(&p, &few), Action::Nothing);
    }

    #[test]
    fn old_changes_compact_and_old_or_many_log_rows_flush() {
        let old = TableStats {
            now_ms: 100_000,
            buckets: vec![bucket(5, 0, Some(60_000))],
            last_compaction_ms: None,
            indexed: false,
        };
        assert_eq!(decide(&policy(), &old), Action::Compact { buckets: vec![0] });
        let no_interval = Policy { compaction_interval: None, ..policy() };
        assert_eq!(decide(&no_interval, &old), Action::Nothing);

        let many = TableStats {
            now_ms: 10_000,
            buckets: vec![bucket(60, 60, Some(9_900)); 2],
            last_compaction_ms: None,
            indexed: false,
        };
        assert_eq!(decide(&policy(), &many), Action::Flush);
        let aged = TableStats {
            now_ms: 20_000,
            buckets: vec![bucket(1, 1, Some(10_000))],
            last_compaction_ms: None,
            indexed: false,
        };
        assert_eq!(decide(&policy(), &aged), Action::Flush);
    }

    #[test]
    fn options_parse_and_bad_values_are_refused() {
        let options: BTreeMap<String, String> = [
            ("compaction_interval".to_string(), "'30s'".to_string()),
            ("auto_compaction".to_string(), "off".to_string()),
            ("flush_rows".to_string(), "20".to_string()),
        ]
        .into_iter()
        .collect();
        let p = Policy::from_options(&options).unwrap();
        assert_eq!(p.compaction_interval, Some(Duration::from_secs(30)));
        assert!(!p.auto_compaction);
        assert_eq!(p.flush_rows, 20);
        assert_eq!(parse_duration("6h"), Some(Duration::from_secs(6 * 3600)));
        assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("soon"), None);
        let bad: BTreeMap<String, String> =
            [("flush_rows".to_string(), "-3".to_string())].into_iter().collect();
        assert!(Policy::from_options(&bad).is_err());
    }
}
