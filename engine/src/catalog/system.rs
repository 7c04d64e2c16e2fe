//! System views: `tarn_tables`, the state of every table and bucket; `tarn_indexes`,
//! every vector index and the progress of its build.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use tarn_storage::vector_index::{BuildStatus, IndexDef, IndexMethod};
use tarn_storage::Warehouse;

pub const TARN_TABLES: &str = "tarn_tables";
pub const TARN_INDEXES: &str = "tarn_indexes";

/// One row per table and bucket (one row with a NULL bucket for a table without a
/// primary key): versions, base rows, change rows waiting, the base rows the bucket's
/// changes replace (`deleted_rows`), the base's own deletion vector (compacted
/// deletes, per table: `base_deleted_rows`), the last compaction.
pub fn tarn_tables(warehouse: &Warehouse) -> DfResult<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("bucket", DataType::Int32, true),
        Field::new("version", DataType::Int64, false),
        Field::new("manifest_version", DataType::Int64, false),
        Field::new("base_rows", DataType::Int64, false),
        Field::new("change_rows", DataType::Int64, false),
        Field::new("unflushed_rows", DataType::Int64, false),
        Field::new("changed_keys", DataType::Int64, false),
        Field::new("deleted_rows", DataType::Int64, false),
        Field::new("base_deleted_rows", DataType::Int64, false),
        Field::new("last_compaction", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("last_compaction_ms", DataType::Int64, true),
    ]));
    let mut schema_names = Vec::new();
    let mut table_names = Vec::new();
    let mut buckets = Vec::new();
    let mut versions = Vec::new();
    let mut manifest_versions = Vec::new();
    let mut base_rows = Vec::new();
    let mut change_rows = Vec::new();
    let mut unflushed = Vec::new();
    let mut keys = Vec::new();
    let mut deleted = Vec::new();
    let mut base_deleted = Vec::new();
    let mut compacted_at = Vec::new();
    let mut compaction_ms = Vec::new();
    for table in warehouse.all_tables() {
        let snapshot = table.snapshot();
        let stats = table.stats();
        let compaction = snapshot.manifest.last_compaction;
        let rows: Vec<(Option<i32>, tarn_storage::changes::BucketStats)> = if stats.buckets.is_empty() {
            vec![(None, Default::default())]
        } else {
            stats.buckets.into_iter().enumerate().map(|(i, b)| (Some(i as i32), b)).collect()
        };
        let bucket_count = rows.len() as u64;
        for (bucket, b) in rows {
            schema_names.push(table.name().schema.clone());
            table_names.push(table.name().table.clone());
            buckets.push(bucket);
            versions.push(snapshot.version() as i64);
            manifest_versions.push(snapshot.manifest_version().0 as i64);
            // The base is not bucketed: its rows are shown once per bucket, divided.
            let base = snapshot.manifest.row_count / bucket_count
                + u64::from(bucket.is_some_and(|i| (i as u64) < snapshot.manifest.row_count % bucket_count));
            base_rows.push(base as i64);
            change_rows.push(b.change_rows as i64);
            unflushed.push(b.unflushed_rows as i64);
            keys.push(b.keys as i64);
            deleted.push(b.deleted_base_rows as i64);
            base_deleted.push(snapshot.manifest.deletes.as_ref().map_or(0, |d| d.rows as i64));
            compacted_at.push(compaction.map(|c| c.at_ms as i64));
            compaction_ms.push(compaction.map(|c| c.duration_ms as i64));
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(schema_names)),
        Arc::new(StringArray::from(table_names)),
        Arc::new(Int32Array::from(buckets)),
        Arc::new(Int64Array::from(versions)),
        Arc::new(Int64Array::from(manifest_versions)),
        Arc::new(Int64Array::from(base_rows)),
        Arc::new(Int64Array::from(change_rows)),
        Arc::new(Int64Array::from(unflushed)),
        Arc::new(Int64Array::from(keys)),
        Arc::new(Int64Array::from(deleted)),
        Arc::new(Int64Array::from(base_deleted)),
        Arc::new(TimestampMillisecondArray::from(compacted_at)),
        Arc::new(Int64Array::from(compaction_ms)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// One row per vector index: what was declared, which Lance index serves it, whether
/// it is built, and for a build under way its stage (`train_ivf`, `shuffle`,
/// `merge_partitions`...) with its progress.
pub fn tarn_indexes(warehouse: &Warehouse) -> DfResult<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("index_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("method", DataType::Utf8, false),
        Field::new("opclass", DataType::Utf8, false),
        Field::new("lance_index", DataType::Utf8, false),
        Field::new("m", DataType::Int32, true),
        Field::new("ef_construction", DataType::Int32, true),
        Field::new("lists", DataType::Int32, true),
        Field::new("built", DataType::Boolean, false),
        Field::new("build_stage", DataType::Utf8, true),
        Field::new("build_progress", DataType::Utf8, true),
        Field::new("build_seconds", DataType::Float64, true),
    ]));
    type Row = (String, String, IndexDef, Option<BuildStatus>);
    let mut rows: Vec<Row> = Vec::new();
    for table in warehouse.all_tables() {
        for def in &table.snapshot().manifest.indexes {
            rows.push((
                table.name().schema.clone(),
                table.name().table.clone(),
                def.clone(),
                table.index_build(&def.name),
            ));
        }
    }
    let text = |f: &dyn Fn(&Row) -> Option<String>| {
        Arc::new(rows.iter().map(f).collect::<StringArray>()) as ArrayRef
    };
    let hnsw = |d: &IndexDef| d.method == IndexMethod::Hnsw;
    let columns: Vec<ArrayRef> = vec![
        text(&|r| Some(r.0.clone())),
        text(&|r| Some(r.1.clone())),
        text(&|r| Some(r.2.name.clone())),
        text(&|r| Some(r.2.column.clone())),
        text(&|r| Some(r.2.method.name().to_string())),
        text(&|r| Some(r.2.metric.opclass().to_string())),
        text(&|r| Some(r.2.method.lance_type().to_string())),
        Arc::new(rows.iter().map(|r| hnsw(&r.2).then_some(r.2.m as i32)).collect::<Int32Array>()),
        Arc::new(
            rows.iter().map(|r| hnsw(&r.2).then_some(r.2.ef_construction as i32)).collect::<Int32Array>(),
        ),
        Arc::new(rows.iter().map(|r| r.2.lists.map(|l| l as i32)).collect::<Int32Array>()),
        Arc::new(rows.iter().map(|r| Some(r.2.built)).collect::<BooleanArray>()),
        text(&|r| r.3.as_ref().map(|b| b.stage.clone())),
        text(&|r| {
            r.3.as_ref().map(|b| match b.total {
                Some(total) => format!("{}/{} {}", b.completed, total, b.unit),
                None => format!("{} {}", b.completed, b.unit),
            })
        }),
        Arc::new(
            rows.iter()
                .map(|r| r.3.as_ref().and_then(|b| b.started).map(|t| t.elapsed().as_secs_f64()))
                .collect::<Float64Array>(),
        ),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}
