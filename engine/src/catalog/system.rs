//! System views: `tarn_tables`, the state of every table and bucket; `tarn_indexes`,
//! every vector and bm25 index and the progress of a vector index's build;
//! `tarn_storage`, what each table takes on storage and how much history it keeps;
//! `tarn_object_cache`, the object-range cache of an object-store warehouse;
//! `tarn_audit_log`, the statements of the audit trail, and `tarn_audit_verify()`, the
//! check of its hash chain; `tarn_lineage_events`, the statements' OpenLineage events
//! (`crate::lineage`); `tarn_column_tags`, what the sensitive-data detector found
//! in columns or users tagged them as, and `tarn_masking_policies`, the masks bound to
//! tags.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use tarn_storage::scalar_index::ScalarKind;
use tarn_storage::vector_index::{BuildStatus, IndexMethod};
use tarn_storage::Warehouse;

pub const TARN_TABLES: &str = "tarn_tables";
pub const TARN_INDEXES: &str = "tarn_indexes";
pub const TARN_STORAGE: &str = "tarn_storage";
pub const TARN_OBJECT_CACHE: &str = "tarn_object_cache";
pub const TARN_AUDIT_LOG: &str = "tarn_audit_log";
pub const TARN_LINEAGE_EVENTS: &str = "tarn_lineage_events";
pub const TARN_COLUMN_TAGS: &str = "tarn_column_tags";
pub const TARN_MASKING_POLICIES: &str = "tarn_masking_policies";
/// Every system view's name.
pub const VIEWS: [&str; 8] = [
    TARN_TABLES,
    TARN_INDEXES,
    TARN_STORAGE,
    TARN_OBJECT_CACHE,
    TARN_AUDIT_LOG,
    TARN_LINEAGE_EVENTS,
    TARN_COLUMN_TAGS,
    TARN_MASKING_POLICIES,
];

/// The system view `name` (one of [`VIEWS`]) as it is now.
pub async fn view(warehouse: &Warehouse, name: &str) -> DfResult<Arc<dyn TableProvider>> {
    match name {
        TARN_TABLES => tarn_tables(warehouse),
        TARN_INDEXES => tarn_indexes(warehouse),
        TARN_STORAGE => tarn_storage(warehouse).await,
        TARN_OBJECT_CACHE => tarn_object_cache(warehouse),
        TARN_AUDIT_LOG => tarn_audit_log(warehouse).await,
        TARN_LINEAGE_EVENTS => tarn_lineage_events(warehouse).await,
        TARN_COLUMN_TAGS => tarn_column_tags(warehouse),
        TARN_MASKING_POLICIES => tarn_masking_policies(warehouse),
        _ => Err(datafusion::error::DataFusionError::Internal(format!("{name} is no system view"))),
    }
}

/// One row per table and bucket (one row with a NULL bucket for a table without a
/// primary key): versions, base rows, change rows waiting, the base rows the bucket's
/// changes replace (`deleted_rows`), the base's own deletion vector (compacted
/// deletes, per table: `base_deleted_rows`), the last compaction, when the newest
/// manifest was committed (`flushed_at`: what read-only replicas can see), and how
/// stale this server's view of the table may be (`visible_lag_ms`: on the writer, the
/// age of its oldest change not yet flushed; on a replica, the time since it last read
/// the writer's manifests).
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
        Field::new("flushed_at", DataType::Timestamp(TimeUnit::Millisecond, None), false),
        Field::new("visible_lag_ms", DataType::Int64, false),
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
    let mut flushed_at = Vec::new();
    let mut lags = Vec::new();
    for table in warehouse.all_tables() {
        let snapshot = table.snapshot();
        let stats = table.stats();
        let lag = warehouse.visible_lag_ms(&stats) as i64;
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
            flushed_at.push(snapshot.manifest.committed_at_ms as i64);
            lags.push(lag);
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
        Arc::new(TimestampMillisecondArray::from(flushed_at)),
        Arc::new(Int64Array::from(lags)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// One row per table: bytes on storage, those its newest version reads (`live_bytes`)
/// and the rest (`history_bytes`: older versions kept for time travel, and files the
/// next vacuum deletes), the versions kept, the oldest one `AS OF VERSION` reaches,
/// and the table's history retention.
pub async fn tarn_storage(warehouse: &Warehouse) -> DfResult<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("live_bytes", DataType::Int64, false),
        Field::new("history_bytes", DataType::Int64, false),
        Field::new("versions", DataType::Int64, false),
        Field::new("oldest_version", DataType::Int64, false),
        Field::new("history_retention", DataType::Utf8, false),
    ]));
    let (mut schemas, mut tables, mut bytes, mut live, mut history, mut versions, mut oldest, mut retention) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for table in warehouse.all_tables() {
        let usage = match table.storage_usage().await {
            Ok(usage) => usage,
            // Dropped while it was measured.
            Err(_) if warehouse.table(&table.name()).is_none() => continue,
            Err(e) => return Err(crate::error::EngineError::from(e).into_datafusion()),
        };
        let name = table.name();
        schemas.push(name.schema);
        tables.push(name.table);
        bytes.push(usage.bytes as i64);
        live.push(usage.live_bytes as i64);
        history.push(usage.bytes.saturating_sub(usage.live_bytes) as i64);
        versions.push(usage.versions as i64);
        oldest.push(usage.oldest_version as i64);
        retention.push(duration_text(warehouse.history_retention_of(&table)));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(schemas)),
        Arc::new(StringArray::from(tables)),
        Arc::new(Int64Array::from(bytes)),
        Arc::new(Int64Array::from(live)),
        Arc::new(Int64Array::from(history)),
        Arc::new(Int64Array::from(versions)),
        Arc::new(Int64Array::from(oldest)),
        Arc::new(StringArray::from(retention)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// `7 days`, `12 hours`, `90 seconds`.
fn duration_text(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match seconds {
        s if s > 0 && s % 86_400 == 0 => plural(s / 86_400, "day"),
        s if s > 0 && s % 3_600 == 0 => plural(s / 3_600, "hour"),
        s if s > 0 && s % 60 == 0 => plural(s / 60, "minute"),
        s => plural(s, "second"),
    }
}

/// One row per index. A vector or scalar index (`btree`, `bitmap`, `brin`, `bloom`;
/// `opclass` shows a zone map's or Bloom filter's options): what was declared, which
/// Lance index serves it, whether it is built, and for a build under way its stage (`train_ivf`, `shuffle`,
/// `merge_partitions`...) with its progress. A bm25 index: its columns, their
/// tokenizers, its segments and the documents they hold, and while a `CREATE INDEX` or
/// a compaction indexes rows, the stage (`read_rows`, `index_rows`, `write_files`,
/// `merge_segments`) and its progress.
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
        Field::new("segments", DataType::Int32, true),
        Field::new("documents", DataType::Int64, true),
    ]));
    let mut rows: Vec<IndexRow> = Vec::new();
    for table in warehouse.all_tables() {
        let snapshot = table.snapshot();
        let (schema_name, table_name) = (table.name().schema.clone(), table.name().table.clone());
        for def in &snapshot.manifest.indexes {
            let hnsw = def.method == IndexMethod::Hnsw;
            rows.push(IndexRow {
                schema: schema_name.clone(),
                table: table_name.clone(),
                name: def.name.clone(),
                column: def.column.clone(),
                method: def.method.name().to_string(),
                opclass: def.metric.opclass().to_string(),
                served_by: def.method.lance_type().to_string(),
                m: hnsw.then_some(def.m as i32),
                ef_construction: hnsw.then_some(def.ef_construction as i32),
                lists: def.lists.map(|l| l as i32),
                built: def.built,
                build: table.index_build(&def.name),
                segments: None,
                documents: None,
            });
        }
        for def in &snapshot.manifest.scalar_indexes {
            let zone = matches!(def.kind, ScalarKind::ZoneMap | ScalarKind::Bloom)
                .then(|| def.rows_per_zone.unwrap_or(tarn_storage::scalar_index::DEFAULT_ROWS_PER_ZONE));
            let mut options: Vec<String> = zone.map(|n| format!("rows_per_zone={n}")).into_iter().collect();
            if def.kind == ScalarKind::Bloom {
                options.push(format!(
                    "false_positive_rate={}",
                    def.false_positive_rate
                        .unwrap_or(tarn_storage::scalar_index::DEFAULT_FALSE_POSITIVE_RATE)
                ));
            }
            rows.push(IndexRow {
                schema: schema_name.clone(),
                table: table_name.clone(),
                name: def.name.clone(),
                column: def.columns.join(", "),
                method: def.kind.method().to_string(),
                opclass: options.join(", "),
                served_by: def.kind.lance_type().to_string(),
                m: None,
                ef_construction: None,
                lists: None,
                built: def.built,
                build: table.index_build(&def.name),
                segments: None,
                documents: None,
            });
        }
        // Declared bm25 indexes (a compaction may be adding or merging segments), then
        // those a CREATE INDEX is building.
        let declared =
            snapshot.manifest.text_indexes.iter().map(|def| (def, table.index_build(&def.name), true));
        let creating = table.text_indexes_creating();
        let creating = creating
            .iter()
            .filter(|(def, _)| !snapshot.manifest.text_indexes.iter().any(|d| d.name == def.name))
            .map(|(def, build)| (def, Some(build.clone()), false));
        for (def, build, built) in declared.chain(creating) {
            rows.push(IndexRow {
                schema: schema_name.clone(),
                table: table_name.clone(),
                name: def.name.clone(),
                column: def.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>().join(", "),
                method: "bm25".to_string(),
                opclass: def.columns.iter().map(|c| c.tokenizer.describe()).collect::<Vec<_>>().join(", "),
                served_by: "tantivy".to_string(),
                m: None,
                ef_construction: None,
                lists: None,
                built,
                build,
                segments: Some(def.segments.len() as i32),
                documents: Some(def.segments.iter().map(|s| i64::from(s.docs)).sum()),
            });
        }
    }
    let text = |f: &dyn Fn(&IndexRow) -> Option<String>| {
        Arc::new(rows.iter().map(f).collect::<StringArray>()) as ArrayRef
    };
    let int = |f: &dyn Fn(&IndexRow) -> Option<i32>| {
        Arc::new(rows.iter().map(f).collect::<Int32Array>()) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|r| Some(r.schema.clone())),
        text(&|r| Some(r.table.clone())),
        text(&|r| Some(r.name.clone())),
        text(&|r| Some(r.column.clone())),
        text(&|r| Some(r.method.clone())),
        text(&|r| Some(r.opclass.clone())),
        text(&|r| Some(r.served_by.clone())),
        int(&|r| r.m),
        int(&|r| r.ef_construction),
        int(&|r| r.lists),
        Arc::new(rows.iter().map(|r| Some(r.built)).collect::<BooleanArray>()),
        text(&|r| r.build.as_ref().map(|b| b.stage.clone())),
        text(&|r| {
            r.build.as_ref().map(|b| match b.total {
                Some(total) => format!("{}/{} {}", b.completed, total, b.unit),
                None => format!("{} {}", b.completed, b.unit),
            })
        }),
        Arc::new(
            rows.iter()
                .map(|r| r.build.as_ref().and_then(|b| b.started).map(|t| t.elapsed().as_secs_f64()))
                .collect::<Float64Array>(),
        ),
        int(&|r| r.segments),
        Arc::new(rows.iter().map(|r| r.documents).collect::<Int64Array>()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// A row of `tarn_indexes`.
struct IndexRow {
    schema: String,
    table: String,
    name: String,
    column: String,
    method: String,
    opclass: String,
    served_by: String,
    m: Option<i32>,
    ef_construction: Option<i32>,
    lists: Option<i32>,
    built: bool,
    build: Option<BuildStatus>,
    segments: Option<i32>,
    documents: Option<i64>,
}

/// The object-range cache of an object-store warehouse (no row for a folder): its
/// capacity and use, hits and misses, and the bytes fetched on misses and served from it.
pub fn tarn_object_cache(warehouse: &Warehouse) -> DfResult<Arc<dyn TableProvider>> {
    let names = ["capacity_bytes", "used_bytes", "hits", "misses", "bytes_fetched", "bytes_served"];
    let schema = Arc::new(Schema::new(
        names.iter().map(|n| Field::new(*n, DataType::Int64, false)).collect::<Vec<_>>(),
    ));
    let values: Vec<i64> = match warehouse.object_cache() {
        Some(cache) => {
            let stats = cache.stats();
            let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed) as i64;
            vec![
                cache.capacity() as i64,
                cache.used() as i64,
                load(&stats.hits),
                load(&stats.misses),
                load(&stats.bytes_fetched),
                load(&stats.bytes_served),
            ]
        }
        None => Vec::new(),
    };
    let rows = usize::from(!values.is_empty());
    let columns: Vec<ArrayRef> = (0..names.len())
        .map(|i| Arc::new(Int64Array::from(values.get(i).map(|v| vec![*v]).unwrap_or_default())) as ArrayRef)
        .collect();
    debug_assert!(columns.iter().all(|c| c.len() == rows));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// One row per statement of the audit trail, sealed or not yet, oldest first: when it
/// started, who ran it from where, its text, SQLSTATE, rows, duration, and the tables
/// it read and wrote with their versions (`public.t v12 read, public.u v4 written`).
/// Empty when the server keeps no trail.
pub async fn tarn_audit_log(warehouse: &Warehouse) -> DfResult<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("started_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("pid", DataType::Int32, false),
        Field::new("user_name", DataType::Utf8, false),
        Field::new("client_addr", DataType::Utf8, false),
        Field::new("application_name", DataType::Utf8, false),
        Field::new("statement", DataType::Utf8, false),
        Field::new("sqlstate", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, true),
        Field::new("duration_ms", DataType::Float64, false),
        Field::new("tables", DataType::Utf8, false),
    ]));
    let records = match warehouse.audit() {
        Some(log) => log.records().await.map_err(|e| crate::EngineError::from(e).into_datafusion())?,
        None => Vec::new(),
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            arrow::array::TimestampMicrosecondArray::from(
                records.iter().map(|r| r.at_us).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(Int32Array::from(records.iter().map(|r| r.pid).collect::<Vec<_>>())),
        Arc::new(StringArray::from_iter_values(records.iter().map(|r| r.user.as_str()))),
        Arc::new(StringArray::from_iter_values(records.iter().map(|r| r.client.as_str()))),
        Arc::new(StringArray::from_iter_values(records.iter().map(|r| r.application.as_str()))),
        Arc::new(StringArray::from_iter_values(records.iter().map(|r| r.statement.as_str()))),
        Arc::new(StringArray::from_iter_values(records.iter().map(|r| r.sqlstate.as_str()))),
        Arc::new(Int64Array::from(records.iter().map(|r| r.rows.map(|n| n as i64)).collect::<Vec<_>>())),
        Arc::new(Float64Array::from(
            records.iter().map(|r| r.duration_us as f64 / 1000.0).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.tables.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// One row per lineage event, oldest first: when, its type (`START`, `COMPLETE`,
/// `FAIL`, `ABORT`), run and job, its input and output tables (`schema.table`, comma
/// separated) and the whole OpenLineage event as JSON. Empty when the server emits no
/// lineage.
pub async fn tarn_lineage_events(warehouse: &Warehouse) -> DfResult<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("job_namespace", DataType::Utf8, false),
        Field::new("job_name", DataType::Utf8, false),
        Field::new("inputs", DataType::Utf8, false),
        Field::new("outputs", DataType::Utf8, false),
        Field::new("event", DataType::Utf8, false),
    ]));
    let events = match warehouse.lineage() {
        Some(log) => log.records().await.map_err(|e| crate::EngineError::from(e).into_datafusion())?,
        None => Vec::new(),
    };
    let names = |datasets: &[tarn_storage::lineage::Dataset]| {
        datasets.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
    };
    let at = |e: &tarn_storage::lineage::RunEvent| {
        chrono::DateTime::parse_from_rfc3339(&e.event_time).map_or(0, |t| t.timestamp_micros())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            arrow::array::TimestampMicrosecondArray::from_iter_values(events.iter().map(at))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.event_type.as_str()))),
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.run.run_id.as_str()))),
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.job.namespace.as_str()))),
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.job.name.as_str()))),
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| names(&e.inputs)))),
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| names(&e.outputs)))),
        Arc::new(StringArray::from_iter_values(
            events.iter().map(|e| serde_json::to_string(e).unwrap_or_default()),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// `tarn_audit_verify()`: walks the audit trail's hash chain (`tarn_storage::audit`)
/// when read; one row: whether it holds, the segments and records it checked, and the
/// first break. Without a trail: not ok, and says so.
#[derive(Debug)]
pub struct AuditVerifyFunction(pub std::sync::Weak<Warehouse>);

impl datafusion::catalog::TableFunctionImpl for AuditVerifyFunction {
    fn call(&self, args: &[datafusion::logical_expr::Expr]) -> DfResult<Arc<dyn TableProvider>> {
        if !args.is_empty() {
            return Err(datafusion::error::DataFusionError::Plan(
                "tarn_audit_verify() takes no arguments".into(),
            ));
        }
        Ok(Arc::new(AuditVerify(self.0.clone())))
    }
}

#[derive(Debug)]
struct AuditVerify(std::sync::Weak<Warehouse>);

impl AuditVerify {
    fn schema() -> arrow::datatypes::SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ok", DataType::Boolean, false),
            Field::new("segments", DataType::Int64, false),
            Field::new("records", DataType::Int64, false),
            Field::new("problem", DataType::Utf8, true),
        ]))
    }
}

#[async_trait::async_trait]
impl TableProvider for AuditVerify {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        Self::schema()
    }

    fn table_type(&self) -> datafusion::logical_expr::TableType {
        datafusion::logical_expr::TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let found = match self.0.upgrade().as_ref().and_then(|w| w.audit().cloned()) {
            Some(log) => log.verify().await.map_err(|e| crate::EngineError::from(e).into_datafusion())?,
            None => tarn_storage::audit::Verification {
                segments: 0,
                records: 0,
                problem: Some("this server keeps no audit trail".into()),
            },
        };
        let schema = Self::schema();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(BooleanArray::from(vec![found.problem.is_none()])),
                Arc::new(Int64Array::from(vec![found.segments as i64])),
                Arc::new(Int64Array::from(vec![found.records as i64])),
                Arc::new(StringArray::from(vec![found.problem])),
            ],
        )?;
        let exec = datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            schema,
            projection.cloned(),
        )?;
        Ok(exec)
    }
}

/// One row per tagged column: its tag, the detector's confidence (1 for a user's tag),
/// who tagged it (`detector` or `user`), and the mask it reads with for roles without
/// `tarn_unmask`, if a masking policy covers the tag.
pub fn tarn_column_tags(warehouse: &Warehouse) -> DfResult<Arc<dyn TableProvider>> {
    let security = warehouse.security();
    let schema = Arc::new(Schema::new(vec![
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("tag", DataType::Utf8, false),
        Field::new("confidence", DataType::Float64, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("mask", DataType::Utf8, true),
    ]));
    let mut tags: Vec<&tarn_storage::security::ColumnTag> = security.column_tags.iter().collect();
    tags.sort_by(|a, b| (&a.table, &a.column).cmp(&(&b.table, &b.column)));
    let mask = |tag: &str| security.masking_policies.iter().find(|p| p.tag == tag).map(|p| p.mask.name());
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(tags.iter().map(|t| t.table.schema.as_str()))),
        Arc::new(StringArray::from_iter_values(tags.iter().map(|t| t.table.table.as_str()))),
        Arc::new(StringArray::from_iter_values(tags.iter().map(|t| t.column.as_str()))),
        Arc::new(StringArray::from_iter_values(tags.iter().map(|t| t.tag.as_str()))),
        Arc::new(Float64Array::from_iter_values(tags.iter().map(|t| t.confidence))),
        Arc::new(StringArray::from_iter_values(tags.iter().map(|t| t.source.name()))),
        Arc::new(StringArray::from_iter(tags.iter().map(|t| mask(&t.tag)))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// One row per masking policy: its name, the tag it covers and its mask.
pub fn tarn_masking_policies(warehouse: &Warehouse) -> DfResult<Arc<dyn TableProvider>> {
    let security = warehouse.security();
    let schema = Arc::new(Schema::new(vec![
        Field::new("policy_name", DataType::Utf8, false),
        Field::new("tag", DataType::Utf8, false),
        Field::new("mask", DataType::Utf8, false),
    ]));
    let policies = &security.masking_policies;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(policies.iter().map(|p| p.name.as_str()))),
        Arc::new(StringArray::from_iter_values(policies.iter().map(|p| p.tag.as_str()))),
        Arc::new(StringArray::from_iter_values(policies.iter().map(|p| p.mask.name()))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}
