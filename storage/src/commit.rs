//! Committing changes to primary-key tables: one log record per statement or
//! transaction, however many tables it writes.
//!
//! 1. Under each table's writer lock (tables in name order), the writes are checked
//!    against the newest state (duplicate keys: 23505; a key another commit changed
//!    after the writer read it: 40001), folded to one change per key, and given the
//!    table's next version.
//! 2. The chunks go into the epoch at once, still invisible to readers (their version
//!    is above every reader's), so the next writer checks against them; the record is
//!    queued on the log and the locks are released.
//! 3. Once the log has fsynced the record (together with whatever else queued: group
//!    commit), the new versions become visible and the commit is acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt8Array};
use arrow::compute::{interleave_record_batch, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use tracing::error;

use crate::changes::{ChangeOp, Chunk, Epoch};
use crate::error::{Result, StorageError};
use crate::failpoint::failpoint;
use crate::key::Key;
use crate::manifest::now_ms;
use crate::table::{conform, Table, Writer};
use crate::wal::{Wal, MAX_RECORD_BYTES};

/// What a statement asks of a set of rows of a primary-key table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// New rows; a key that exists fails the commit with a unique violation.
    Insert,
    /// New rows; a key that exists is skipped (`ON CONFLICT DO NOTHING`).
    InsertOrSkip,
    /// Rows an upsert found absent when it read (`ON CONFLICT DO UPDATE`): if another
    /// commit inserted the key since, that is a write conflict (40001), not a duplicate.
    UpsertInsert,
    /// New values for keys the writer read (`UPDATE`, `ON CONFLICT DO UPDATE`).
    Update,
    /// Keys to remove; the rows hold their values as read (for the change feed).
    Delete,
}

#[derive(Debug, Clone)]
pub struct Write {
    pub kind: WriteKind,
    /// Rows with the table's columns.
    pub rows: RecordBatch,
}

/// One table's part of a commit.
#[derive(Debug)]
pub struct TableWrite {
    pub table: Arc<Table>,
    /// The version the writer read: a key changed by a later commit is a conflict.
    pub read_seq: u64,
    pub writes: Vec<Write>,
}

/// What a commit did to one table.
#[derive(Debug, Default)]
pub struct Applied {
    /// The version created, or `None` if nothing changed.
    pub seq: Option<u64>,
    /// Per write, the rows it applied as stored (identity values filled in; skipped
    /// rows left out), for `RETURNING` and row counts.
    pub rows: Vec<RecordBatch>,
}

/// A table's commit, checked and ordered, not yet in the epoch or the log.
struct Prepared {
    seq: u64,
    sequences: BTreeMap<String, i64>,
    /// Every change, one per key, with the op column last.
    record: RecordBatch,
    chunks: Vec<(usize, Arc<Chunk>)>,
}

/// Commits `writes` atomically: one log record, visible together once durable.
pub async fn commit(wal: &Wal, writes: Vec<TableWrite>) -> Result<Vec<Applied>> {
    let mut order: Vec<usize> = (0..writes.len()).collect();
    // One order of locking for every commit (ids, not names: a rename changes a name).
    order.sort_by_key(|&i| writes[i].table.id);
    let mut guards = Vec::with_capacity(writes.len());
    for &i in &order {
        guards.push((i, writes[i].table.writer.lock().await));
    }

    let mut prepared: Vec<Option<Prepared>> = (0..writes.len()).map(|_| None).collect();
    let mut applied: Vec<Applied> = (0..writes.len()).map(|_| Applied::default()).collect();
    for (i, guard) in guards.iter() {
        let (p, rows) = prepare(&writes[*i], guard)?;
        applied[*i].rows = rows;
        prepared[*i] = p;
    }
    if prepared.iter().all(Option::is_none) {
        return Ok(applied);
    }
    let payload = encode_record(&writes, &prepared)?;
    if payload.len() > MAX_RECORD_BYTES {
        return Err(StorageError::Unsupported {
            message: format!("a single commit of {} bytes exceeds the log's record limit", payload.len()),
        });
    }
    failpoint("wal-before-append");
    for (i, guard) in guards.iter_mut() {
        let Some(p) = prepared[*i].take() else { continue };
        let epoch = writes[*i].table.snapshot().changes.clone().expect("primary-key table has an epoch");
        guard.next_seq = p.seq + 1;
        guard.sequences = p.sequences;
        for (bucket, chunk) in p.chunks {
            epoch.apply(bucket, chunk);
        }
        applied[*i].seq = Some(p.seq);
    }
    let durable = match wal.submit(payload) {
        Ok(wait) => wait,
        Err(e) => {
            // The chunks are in the epoch already; a later commit would make them visible.
            error!(error = %e, "the write-ahead log refused a record after it was ordered; stopping");
            std::process::abort();
        }
    };
    drop(guards);
    if durable.await.is_err() {
        error!("the write-ahead log stopped before a record was durable; stopping");
        std::process::abort();
    }
    failpoint("wal-after-append");
    for (write, applied) in writes.iter().zip(&applied) {
        if let Some(seq) = applied.seq {
            write.table.advance(seq);
        }
    }
    Ok(applied)
}

/// Checks one table's writes against its newest state and folds them to one change
/// per key. Changes nothing.
fn prepare(write: &TableWrite, writer: &Writer) -> Result<(Option<Prepared>, Vec<RecordBatch>)> {
    let table = &write.table;
    let codec =
        table.codec.as_ref().ok_or_else(|| StorageError::internal("change commit to a table without key"))?;
    let snapshot = table.snapshot();
    let epoch = snapshot.changes.clone().expect("primary-key table has an epoch");
    let def = snapshot.def();
    let mut sequences = writer.sequences.clone();

    struct Pending {
        existed: bool,
        /// `(batch, row)` of the key's newest row in this commit; `None`: deleted.
        row: Option<(usize, usize)>,
        /// The row a delete removed, for the change feed.
        deleted: Option<(usize, usize)>,
    }
    let mut pending: HashMap<Key, Pending> = HashMap::new();
    let mut order: Vec<Key> = Vec::new();
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut applied = Vec::with_capacity(write.writes.len());

    for w in &write.writes {
        let batch = conform(def, w.rows.clone(), &mut sequences)?;
        let keys = codec.keys(&batch)?;
        let b = batches.len();
        let mut taken: Vec<u32> = Vec::with_capacity(keys.len());
        for (r, key) in keys.into_iter().enumerate() {
            let known = pending.get(&key);
            let exists = match known {
                Some(p) => p.row.is_some(),
                None => epoch.exists(&key),
            };
            let conflict = known.is_none() && epoch.changed_since(&key, write.read_seq);
            let target = match w.kind {
                WriteKind::Insert if exists => {
                    return Err(StorageError::UniqueViolation {
                        constraint: def.primary_key_constraint(),
                        detail: format!("{} already exists.", codec.describe(&batch, r)),
                    })
                }
                WriteKind::InsertOrSkip if exists => continue,
                WriteKind::UpsertInsert if exists => {
                    return Err(StorageError::SerializationFailure {
                        detail: format!(
                            "{} was inserted by a concurrent transaction.",
                            codec.describe(&batch, r)
                        ),
                    })
                }
                WriteKind::Insert | WriteKind::InsertOrSkip | WriteKind::UpsertInsert => Some((b, r)),
                WriteKind::Update | WriteKind::Delete if conflict => {
                    return Err(StorageError::SerializationFailure {
                        detail: format!(
                            "{} was changed by a concurrent transaction.",
                            codec.describe(&batch, r)
                        ),
                    })
                }
                WriteKind::Update => Some((b, r)),
                WriteKind::Delete if !exists => continue,
                WriteKind::Delete => None,
            };
            taken.push(r as u32);
            match pending.get_mut(&key) {
                Some(p) => {
                    p.row = target;
                    p.deleted = if target.is_none() { Some((b, r)) } else { None };
                }
                None => {
                    order.push(key.clone());
                    let deleted = if target.is_none() { Some((b, r)) } else { None };
                    pending.insert(key, Pending { existed: exists, row: target, deleted });
                }
            }
        }
        applied.push(take_record_batch(&batch, &arrow::array::UInt32Array::from(taken))?);
        batches.push(batch);
    }

    let mut picks = Vec::new();
    let mut ops = Vec::new();
    let mut keys = Vec::new();
    for key in order {
        let p = pending.remove(&key).expect("every ordered key is pending");
        let (op, pick) = match (p.row, p.existed) {
            (Some(pick), false) => (ChangeOp::Insert, pick),
            (Some(pick), true) => (ChangeOp::Update, pick),
            (None, true) => (ChangeOp::Delete, p.deleted.expect("a delete remembers its row")),
            (None, false) => continue,
        };
        picks.push(pick);
        ops.push(op);
        keys.push(key);
    }
    if picks.is_empty() {
        return Ok((None, applied));
    }
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let rows = interleave_record_batch(&refs, &picks)?;
    let seq = writer.next_seq;
    let chunks = split_into_chunks(&epoch, seq, now_ms(), rows.clone(), ops.clone(), keys)?;
    let record = with_op_column(&rows, &ops)?;
    Ok((Some(Prepared { seq, sequences, record, chunks }), applied))
}

/// Splits one commit's changes of a table into a chunk per bucket.
pub(crate) fn split_into_chunks(
    epoch: &Epoch,
    seq: u64,
    committed_at_ms: u64,
    rows: RecordBatch,
    ops: Vec<ChangeOp>,
    keys: Vec<Key>,
) -> Result<Vec<(usize, Arc<Chunk>)>> {
    let buckets = epoch.bucket_count();
    let mut per_bucket: Vec<Vec<u32>> = vec![Vec::new(); buckets];
    for (row, key) in keys.iter().enumerate() {
        per_bucket[key.bucket(buckets as u32)].push(row as u32);
    }
    let mut chunks = Vec::new();
    for (bucket, rows_of) in per_bucket.into_iter().enumerate() {
        if rows_of.is_empty() {
            continue;
        }
        let chunk = if rows_of.len() == rows.num_rows() {
            Chunk { seq, ops: ops.clone(), rows: rows.clone(), keys: keys.clone(), committed_at_ms }
        } else {
            Chunk {
                seq,
                ops: rows_of.iter().map(|&r| ops[r as usize]).collect(),
                keys: rows_of.iter().map(|&r| keys[r as usize].clone()).collect(),
                rows: take_record_batch(&rows, &arrow::array::UInt32Array::from(rows_of))?,
                committed_at_ms,
            }
        };
        chunks.push((bucket, Arc::new(chunk)));
    }
    Ok(chunks)
}

/// Name of the column holding each change's [`ChangeOp`] in log records and change files.
pub const OP_COLUMN: &str = "_tarn_op";
/// Name of the column holding each change's table version in change files.
pub const SEQ_COLUMN: &str = "_tarn_seq";

/// `rows` with the op column appended.
pub(crate) fn with_op_column(rows: &RecordBatch, ops: &[ChangeOp]) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = rows.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(OP_COLUMN, DataType::UInt8, false));
    let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
    columns.push(Arc::new(UInt8Array::from(ops.iter().map(|&op| op as u8).collect::<Vec<_>>())));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// Splits a batch with the op column last into rows and ops.
pub(crate) fn split_op_column(batch: &RecordBatch) -> Result<(RecordBatch, Vec<ChangeOp>)> {
    let last =
        batch.num_columns().checked_sub(1).ok_or_else(|| StorageError::internal("empty change batch"))?;
    let ops = batch
        .column(last)
        .as_any()
        .downcast_ref::<UInt8Array>()
        .ok_or_else(|| StorageError::internal("change batch without an op column"))?
        .values()
        .iter()
        .map(|&v| ChangeOp::from_u8(v))
        .collect::<Result<Vec<_>>>()?;
    let mut rows = batch.clone();
    rows.remove_column(last);
    Ok((rows, ops))
}

// --- Log records ---
//
// record  = entries (u32 LE) | entry*
// entry   = table id (u64 LE) | version (u64 LE) | committed at, ms (u64 LE)
//           | sequences JSON length (u32 LE) | JSON | IPC length (u32 LE) | Arrow IPC stream

fn encode_record(writes: &[TableWrite], prepared: &[Option<Prepared>]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let entries = prepared.iter().filter(|p| p.is_some()).count() as u32;
    out.extend_from_slice(&entries.to_le_bytes());
    for (write, p) in writes.iter().zip(prepared) {
        let Some(p) = p else { continue };
        let committed_at = p.chunks.first().map_or(0, |(_, c)| c.committed_at_ms);
        out.extend_from_slice(&write.table.id.to_le_bytes());
        out.extend_from_slice(&p.seq.to_le_bytes());
        out.extend_from_slice(&committed_at.to_le_bytes());
        let json = serde_json::to_vec(&p.sequences).map_err(|e| StorageError::internal(e.to_string()))?;
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        let mut ipc = Vec::new();
        {
            let mut writer = StreamWriter::try_new(&mut ipc, &p.record.schema())?;
            writer.write(&p.record)?;
            writer.finish()?;
        }
        out.extend_from_slice(&(ipc.len() as u32).to_le_bytes());
        out.extend_from_slice(&ipc);
    }
    Ok(out)
}

/// One table's part of a log record.
pub(crate) struct LoggedChanges {
    pub table_id: u64,
    pub seq: u64,
    pub committed_at_ms: u64,
    pub sequences: BTreeMap<String, i64>,
    pub rows: RecordBatch,
    pub ops: Vec<ChangeOp>,
}

pub(crate) fn decode_record(payload: &[u8]) -> Result<Vec<LoggedChanges>> {
    let corrupt = |what: &str| StorageError::CorruptLog { path: "record".into(), message: what.to_string() };
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let slice = payload.get(at..at + n).ok_or_else(|| corrupt("record ends early"))?;
        at += n;
        Ok(slice)
    };
    let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
    let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let entries = u32_of(take(4)?);
    let mut out = Vec::with_capacity(entries as usize);
    for _ in 0..entries {
        let table_id = u64_of(take(8)?);
        let seq = u64_of(take(8)?);
        let committed_at_ms = u64_of(take(8)?);
        let json_len = u32_of(take(4)?) as usize;
        let sequences = serde_json::from_slice(take(json_len)?).map_err(|e| corrupt(&e.to_string()))?;
        let ipc_len = u32_of(take(4)?) as usize;
        let ipc = take(ipc_len)?;
        let reader = StreamReader::try_new(Cursor::new(ipc), None)?;
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        let schema = batches.first().map(|b| b.schema()).ok_or_else(|| corrupt("entry without rows"))?;
        let batch = arrow::compute::concat_batches(&schema, &batches)?;
        let (rows, ops) = split_op_column(&batch)?;
        out.push(LoggedChanges { table_id, seq, committed_at_ms, sequences, rows, ops });
    }
    Ok(out)
}

impl Table {
    /// Makes every version up to `seq` visible.
    pub(crate) fn advance(&self, seq: u64) {
        let mut current = self.current.write().expect("snapshot lock poisoned");
        if current.seq < seq {
            let mut next = current.as_ref().clone();
            next.seq = seq;
            *current = Arc::new(next);
        }
    }

    /// Applies a logged commit found when opening (it is newer than the manifest).
    pub(crate) async fn replay(&self, logged: LoggedChanges) -> Result<()> {
        let codec =
            self.codec.as_ref().ok_or_else(|| StorageError::internal("log entry for a table without key"))?;
        let mut writer = self.writer.lock().await;
        if logged.seq < writer.next_seq {
            return Ok(());
        }
        let snapshot = self.snapshot();
        let epoch = snapshot.changes.clone().expect("primary-key table has an epoch");
        let rows = align_to_schema(&logged.rows, &snapshot.schema())?;
        let keys = codec.keys(&rows)?;
        for (bucket, chunk) in
            split_into_chunks(&epoch, logged.seq, logged.committed_at_ms, rows, logged.ops, keys)?
        {
            epoch.apply(bucket, chunk);
        }
        writer.next_seq = logged.seq + 1;
        writer.sequences = logged.sequences;
        drop(writer);
        self.advance(logged.seq);
        Ok(())
    }
}

/// `batch` with exactly `schema`'s columns, by name: columns added since it was written
/// read NULL.
pub(crate) fn align_to_schema(batch: &RecordBatch, schema: &Arc<Schema>) -> Result<RecordBatch> {
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    if batch.schema().fields() == schema.fields() {
        return Ok(RecordBatch::try_new_with_options(schema.clone(), batch.columns().to_vec(), &options)?);
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
            Some(column) => Ok(arrow::compute::cast(column, field.data_type())?),
            None => Ok(arrow::array::new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new_with_options(schema.clone(), columns, &options)?)
}
