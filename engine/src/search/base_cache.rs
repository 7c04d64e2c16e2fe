//! The base of a table held in memory, for nearest-neighbour searches and key lookups.
//!
//! A kNN query over Lance pays for every read twice over on this machine: each read is
//! a hop to a blocking thread and back, and a filtered exact search reads the vectors
//! of every row that passes. A base version never changes, so the first kNN query of a
//! version reads the whole base once (every column, with row addresses) and later ones
//! filter and compare in memory, and fetch the rows an index search names from here.
//! Bases larger than [`MAX_BYTES`] are not held: their searches read through Lance.
//! Key lookups and BM25 searches use a held base too, and a base version they read
//! often ([`note_lookup`]) is read into memory for them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{AsArray, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{SchemaRef, UInt64Type};
use datafusion::common::Result as DfResult;
use datafusion::error::DataFusionError;
use futures::TryStreamExt;
use lance::Dataset;

/// Bases up to this size (in Arrow memory) are held.
pub const MAX_BYTES: u64 = 1 << 30;

/// Bases held at once (the newest versions asked for).
const HELD: usize = 4;

/// One base version in memory.
#[derive(Debug)]
pub struct BaseRows {
    /// Every row, in the table's (nullable) schema.
    pub rows: RecordBatch,
    /// The Lance row address of each row.
    pub addresses: Vec<u64>,
    position: HashMap<u64, u32>,
}

impl BaseRows {
    /// The rows at `addresses` (those held), in that order.
    pub fn take(&self, addresses: impl IntoIterator<Item = u64>) -> DfResult<RecordBatch> {
        let indices: UInt32Array =
            addresses.into_iter().filter_map(|a| self.position.get(&a).copied()).collect();
        Ok(take_record_batch(&self.rows, &indices)?)
    }
}

/// A base version: the table's id (a table dropped and made again under the same name
/// has a new one) and the base's Lance version.
pub type BaseKey = (u64, u64);

/// A process-wide cache of what was derived from a few base versions (keyed by a
/// [`BaseKey`], or one with more in it): the newest `capacity` kept, the oldest put
/// dropped first. Base versions never change, so an entry is never stale, only unused.
pub struct PerBase<V, K = BaseKey> {
    entries: Mutex<Vec<(K, V)>>,
    capacity: usize,
}

impl<V: Clone, K: PartialEq> PerBase<V, K> {
    pub const fn new(capacity: usize) -> Self {
        PerBase { entries: Mutex::new(Vec::new()), capacity }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().expect("cache lock");
        entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: K, value: V) {
        let mut entries = self.entries.lock().expect("cache lock");
        entries.retain(|(k, _)| *k != key);
        entries.push((key, value));
        if entries.len() > self.capacity {
            entries.remove(0);
        }
    }
}

/// Bases held; `None` for a base found too large (not read again).
static HELD_BASES: PerBase<Option<Arc<BaseRows>>> = PerBase::new(HELD);

/// The base `ds` of table `table_id` if it is held now (nothing is read).
pub fn held(table_id: u64, ds: &Dataset) -> Option<Arc<BaseRows>> {
    HELD_BASES.get(&(table_id, ds.version().version)).flatten()
}

/// Key lookups of one base version after which the base is read into memory (in the
/// background) and later lookups take its rows from there instead of through Lance.
const LOOKUPS_TO_HOLD: u32 = 200;

/// Key lookups counted per base version not held yet.
static LOOKUPS: PerBase<Arc<AtomicU32>> = PerBase::new(16);

/// Counts a key lookup of the base rows of `ds`; once a base version has had
/// [`LOOKUPS_TO_HOLD`], it is read into memory in the background (if small enough).
pub fn note_lookup(table_id: u64, ds: &Arc<Dataset>, schema: &SchemaRef) {
    let key = (table_id, ds.version().version);
    let counter = LOOKUPS.get(&key).unwrap_or_else(|| {
        let counter = Arc::new(AtomicU32::new(0));
        LOOKUPS.put(key, counter.clone());
        counter
    });
    if counter.fetch_add(1, Ordering::Relaxed) + 1 == LOOKUPS_TO_HOLD {
        let (ds, schema) = (ds.clone(), schema.clone());
        tokio::spawn(async move {
            if let Err(e) = base_rows(table_id, &ds, &schema).await {
                tracing::warn!(table = ds.uri(), error = %e, "could not hold a base for lookups");
            }
        });
    }
}

/// The base `ds` of table `table_id` in memory, read now if it is not held yet; `None`
/// when it is too large.
pub async fn base_rows(table_id: u64, ds: &Dataset, schema: &SchemaRef) -> DfResult<Option<Arc<BaseRows>>> {
    let key = (table_id, ds.version().version);
    if let Some(held) = HELD_BASES.get(&key) {
        return Ok(held);
    }
    let rows = ds.count_rows(None).await.map_err(external)? as u64;
    let width: u64 =
        schema.fields().iter().map(|f| f.data_type().primitive_width().unwrap_or(16) as u64).sum();
    let estimate: u64 = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            arrow::datatypes::DataType::FixedSizeList(item, n) => {
                item.data_type().primitive_width().unwrap_or(8) as u64 * *n as u64
            }
            _ => 0,
        })
        .sum::<u64>()
        + width;
    if rows * estimate > MAX_BYTES {
        HELD_BASES.put(key, None);
        return Ok(None);
    }
    let mut scanner = ds.scan();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    tarn_storage::blob::read_binary(&mut scanner).project(&names).map_err(external)?;
    scanner.with_row_address();
    let batches: Vec<RecordBatch> =
        scanner.try_into_stream().await.map_err(external)?.try_collect().await.map_err(external)?;
    let mut addresses = Vec::with_capacity(rows as usize);
    let mut parts = Vec::with_capacity(batches.len());
    for batch in &batches {
        let address = batch.column(batch.num_columns() - 1).as_primitive::<UInt64Type>();
        addresses.extend_from_slice(address.values());
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                let column = batch.column_by_name(f.name()).ok_or_else(|| {
                    DataFusionError::Internal(format!("column {} missing from the base", f.name()))
                })?;
                Ok(arrow::compute::cast(column, f.data_type())?)
            })
            .collect::<DfResult<Vec<_>>>()?;
        parts.push(RecordBatch::try_new_with_options(
            schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?);
    }
    let rows = concat_batches(schema, &parts)?;
    if rows.get_array_memory_size() as u64 > MAX_BYTES {
        // Wider than estimated (long text): searched through Lance from now on.
        tracing::debug!(
            table = ds.uri(),
            bytes = rows.get_array_memory_size(),
            "base too large to hold in memory"
        );
        HELD_BASES.put(key, None);
        return Ok(None);
    }
    let position = addresses.iter().enumerate().map(|(i, a)| (*a, i as u32)).collect();
    let held = Arc::new(BaseRows { rows, addresses, position });
    tracing::debug!(
        table = ds.uri(),
        version = key.1,
        rows = held.rows.num_rows(),
        bytes = held.rows.get_array_memory_size(),
        "base held in memory"
    );
    HELD_BASES.put(key, Some(held.clone()));
    Ok(Some(held))
}

fn external(e: lance::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
