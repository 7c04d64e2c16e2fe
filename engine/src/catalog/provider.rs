//! [`TarnTable`]: a table, pinned at one snapshot, as a DataFusion `TableProvider`.
//!
//! - A table without a primary key scans its base: Lance's scanner (projection and
//!   filters pushed down) or DataFusion's Parquet reader; a transaction's own appends
//!   are scanned beside it (and its filters then all `Inexact`).
//! - A primary-key table merges on read: the base scan, with each row's address, drops
//!   the rows in the deletion vector ([`MergeFilterExec`]); the newest change rows of
//!   every bucket are added as one partition per bucket. A transaction's own writes
//!   (its [`Overlay`]) hide the keys they touch and add their rows.
//! - A filter naming every primary-key column with `=` or `IN` becomes a point lookup
//!   ([`PointLookupExec`]): overlay, then the bucket's changes, then the base's key
//!   index and Lance's `take`. No scan.
//!
//! Filters are passed to the base scan for pruning (Lance's scanner, or the Parquet
//! reader's row-group and page pruning) and reported `Inexact`, so
//! DataFusion applies them once more above the merge (the change rows need it).
//! Writes do not go through here: the session plans them (see `dml.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions, UInt64Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::TableFunctionImpl;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{ScalarValue, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{BinaryExpr, Operator};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter_pushdown::{FilterDescription, FilterPushdownPhase};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Partitioning, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use lance::datafusion::LanceTableProvider;
use roaring::RoaringTreemap;
use tarn_storage::key::Key;
use tarn_storage::security::Mask;
use tarn_storage::table::BaseSnapshot;
use tarn_storage::Lookup;
use tarn_storage::{Snapshot, Table};

use crate::catalog::skipping::{BaseScanExec, BaseShape, ScanRequest};

/// Turns a column's `DEFAULT` SQL text into an expression (built by the engine, which
/// knows the functions a default may call).
#[derive(Clone)]
pub struct DefaultParser(Arc<dyn Fn(&str) -> Option<Expr> + Send + Sync>);

impl DefaultParser {
    pub fn new(parse: impl Fn(&str) -> Option<Expr> + Send + Sync + 'static) -> Self {
        Self(Arc::new(parse))
    }

    pub fn parse(&self, sql: &str) -> Option<Expr> {
        (self.0)(sql)
    }
}

impl std::fmt::Debug for DefaultParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DefaultParser")
    }
}

/// A column's default as its column's type where a plain cast cannot make it: a
/// vector's text (`DEFAULT '[1,2]'`) goes through `to_vector`, as the text of a vector in
/// `VALUES` does.
fn typed_default(default: Expr, column: &arrow::datatypes::DataType) -> Expr {
    let text = matches!(
        &default,
        Expr::Literal(
            ScalarValue::Utf8(Some(_)) | ScalarValue::LargeUtf8(Some(_)) | ScalarValue::Utf8View(Some(_)),
            _
        )
    );
    match column {
        arrow::datatypes::DataType::FixedSizeList(_, dims) if text => {
            datafusion::logical_expr::ScalarUDF::from(crate::search::vector::ToVector::default())
                .call(vec![default, datafusion::prelude::lit(i64::from(*dims))])
        }
        _ => default,
    }
}

/// `expr` with its columns unqualified, to be read against a table's own schema (Lance
/// and the Parquet reader resolve bare column names).
pub(crate) fn unqualify(expr: Expr) -> Expr {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    expr.transform(|e| match e {
        Expr::Column(c) if c.relation.is_some() => {
            Ok(Transformed::yes(Expr::Column(datafusion::common::Column::new_unqualified(c.name))))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
    .expect("infallible")
}

/// `schema` with every field nullable: the shape of every batch a table reads or
/// writes in the engine (NOT NULL is the writer's check, with Postgres' error).
pub(crate) fn nullable_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<arrow::datatypes::Field> =
        schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A transaction's own, uncommitted writes to one table, as its reads see them.
#[derive(Debug, Default)]
pub struct Overlay {
    /// The newest row of every key the transaction wrote and did not delete; for a
    /// table without a primary key, the rows it appended.
    pub rows: Option<RecordBatch>,
    /// Every key written: `Some(row in rows)`, or `None` when deleted (empty for a
    /// table without a primary key: its writes only add rows).
    pub keys: HashMap<Key, Option<usize>>,
}

#[derive(Debug)]
pub struct TarnTable {
    table: Arc<Table>,
    snapshot: Arc<Snapshot>,
    schema: SchemaRef,
    defaults: HashMap<String, Expr>,
    overlay: Option<Arc<Overlay>>,
    /// The session's row policies on the table ([`crate::access::row_security`]): only
    /// rows passing it are read, before any other filter.
    row_filter: Option<Expr>,
    /// The session's masked columns of the table ([`crate::access::masking`]): they
    /// read masked, and no filter on one goes into the scan.
    masks: Vec<(String, Mask)>,
}

impl TarnTable {
    /// The table at its newest version.
    pub fn new(table: Arc<Table>, parse_default: &DefaultParser) -> Self {
        let snapshot = table.snapshot();
        Self::at(table, snapshot, None, parse_default)
    }

    /// The table at `snapshot`, with a transaction's own writes on top.
    pub fn at(
        table: Arc<Table>,
        snapshot: Arc<Snapshot>,
        overlay: Option<Arc<Overlay>>,
        parse_default: &DefaultParser,
    ) -> Self {
        let def = snapshot.def();
        let defaults = def
            .columns
            .iter()
            .zip(def.schema.fields())
            .filter_map(|(c, field)| {
                let default = parse_default.parse(c.default.as_deref()?)?;
                Some((c.name.clone(), typed_default(default, field.data_type())))
            })
            .collect();
        let schema = nullable_schema(&snapshot.schema());
        Self { table, snapshot, schema, defaults, overlay, row_filter: None, masks: Vec::new() }
    }

    /// The table as a role under row-level security reads it: the rows `filter` passes.
    pub fn with_row_filter(self, filter: Expr) -> Self {
        Self { row_filter: Some(filter), ..self }
    }

    /// The row policies' filter, when they apply (unqualified columns).
    pub fn row_filter(&self) -> Option<&Expr> {
        self.row_filter.as_ref()
    }

    /// The table as a role reads it with `masks` on its columns.
    pub fn with_masks(self, masks: Vec<(String, Mask)>) -> Self {
        Self { masks, ..self }
    }

    /// The columns that read masked, by name.
    pub fn masks(&self) -> &[(String, Mask)] {
        &self.masks
    }

    /// Whether the column `name` reads masked.
    pub fn is_masked(&self, name: &str) -> bool {
        self.masks.iter().any(|(m, _)| m == name)
    }

    /// Whether `expr` reads a masked column.
    pub fn reads_masked(&self, expr: &Expr) -> bool {
        !self.masks.is_empty() && expr.column_refs().iter().any(|c| self.is_masked(&c.name))
    }

    /// The same table at another snapshot of the same definition (its defaults are
    /// not parsed again).
    pub fn repinned(&self, snapshot: Arc<Snapshot>, overlay: Option<Arc<Overlay>>) -> Self {
        Self {
            table: self.table.clone(),
            snapshot,
            schema: self.schema.clone(),
            defaults: self.defaults.clone(),
            overlay,
            row_filter: self.row_filter.clone(),
            masks: self.masks.clone(),
        }
    }

    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// Whether the reading transaction has written to this table.
    pub fn has_overlay(&self) -> bool {
        self.overlay.is_some()
    }

    /// The reading transaction's own writes to this table.
    pub fn overlay(&self) -> Option<&Arc<Overlay>> {
        self.overlay.as_ref()
    }

    /// How far each filter can go into the scan, blobs aside.
    fn pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // The rows a transaction appended are scanned beside the base, unfiltered.
        if self.snapshot.changes.is_some() || self.overlay.is_some() {
            return Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()]);
        }
        match self.lance() {
            // A prepared statement's plan is made before its parameters have values:
            // whether Lance takes a filter depends on its shape, the same with a constant.
            Some(lance) => {
                let shaped: Vec<Expr> =
                    filters.iter().map(|f| crate::search::query_value::with_typed_nulls(f)).collect();
                lance.supports_filters_pushdown(&shaped.iter().collect::<Vec<_>>())
            }
            // Parquet: the filters prune row groups and pages; DataFusion applies them
            // to the rows that remain.
            None => Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()]),
        }
    }

    /// Whether `filter` reads a column the Lance base stores as a blob.
    pub(crate) fn reads_blob(&self, filter: &Expr) -> bool {
        let BaseSnapshot::Lance(ds) = &self.snapshot.base else { return false };
        filter.column_refs().iter().any(|c| tarn_storage::blob::is_blob(ds.schema(), &c.name))
    }

    fn lance(&self) -> Option<LanceTableProvider> {
        match &self.snapshot.base {
            BaseSnapshot::Lance(ds) => Some(LanceTableProvider::new(ds.clone(), false, false)),
            BaseSnapshot::Parquet(_) => None,
        }
    }
}

#[async_trait]
impl TableProvider for TarnTable {
    /// Every column nullable: NOT NULL is enforced by the writer (with Postgres' error),
    /// not by DataFusion building batches (which would fail with an anonymous one).
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let pushdown = self.pushdown(filters)?;
        // Lance would filter a blob column by its descriptors, not its bytes: a filter
        // that reads one stays above the scan. Under row policies, so does one that
        // could fail or leak on a hidden row: it runs on the rows the policies pass.
        // One on a masked column reads the mask, above the scan.
        let secured = self.row_filter.is_some();
        Ok(pushdown
            .into_iter()
            .zip(filters)
            .map(|(p, f)| {
                if self.reads_blob(f)
                    || (secured && !crate::access::row_security::leakproof(f))
                    || self.reads_masked(f)
                {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    p
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let scan = match &self.row_filter {
            None => self.scan_rows(state, projection, filters, limit).await?,
            Some(row_filter) => self.scan_secured(state, row_filter, projection, filters).await?,
        };
        crate::access::masking::mask_output(scan, &self.masks)
    }
}

impl TarnTable {
    /// A scan under row policies: the columns asked for and those the policies read,
    /// filtered by the policies (also given to the scan, for its indexes to skip by)
    /// in a [`RowSecurityExec`], then projected; no limit below the policies.
    async fn scan_secured(
        &self,
        state: &dyn Session,
        row_filter: &Expr,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let asked: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let mut read = asked.clone();
        for column in row_filter.column_refs() {
            let index = self.schema.index_of(&column.name)?;
            if !read.contains(&index) {
                read.push(index);
            }
        }
        let mut with_policy = filters.to_vec();
        with_policy.push(row_filter.clone());
        let input = self.scan_rows(state, Some(&read), &with_policy, None).await?;
        let read_schema = datafusion::common::DFSchema::try_from(input.schema())?;
        let predicate = state.create_physical_expr(row_filter.clone(), &read_schema)?;
        let output: Vec<usize> = (0..asked.len()).collect();
        Ok(Arc::new(crate::access::row_security::RowSecurityExec::try_new(input, predicate, output)?))
    }

    /// A scan of the rows (no row policy).
    async fn scan_rows(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let columns: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        if self.snapshot.changes.is_some() {
            if let Some(keys) = self.point_lookup_keys(filters)? {
                return Ok(Arc::new(PointLookupExec::new(self, keys, columns)));
            }
            return self.scan_merged(state, columns, filters).await;
        }
        let base = self.scan_base(state, projection, filters, limit).await?;
        match self.overlay.as_ref().and_then(|o| o.rows.as_ref()) {
            // A transaction's appends to a table without a primary key, beside its base.
            Some(rows) => {
                let output = base.schema();
                let rows = project_batch(&relabel(rows, &self.schema)?, &columns, &output)?;
                let appended = MemorySourceConfig::try_new_exec(&[vec![rows]], output, None)?;
                UnionExec::try_new(vec![base, appended])
            }
            None => Ok(base),
        }
    }
}

impl TarnTable {
    /// The base of a table without a primary key, as its format reads it.
    async fn scan_base(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match &self.snapshot.base {
            BaseSnapshot::Lance(ds) => {
                let request = ScanRequest {
                    ds: ds.clone(),
                    with_address: false,
                    projection: projection.cloned(),
                    filters: filters.to_vec(),
                    limit,
                };
                self.reported(state, request).await
            }
            BaseSnapshot::Parquet(files) => {
                let schema = self.schema();
                if files.first().is_some_and(|(url, _)| !url.starts_with("file:")) {
                    // An object-store warehouse. DataFusion's S3 client is another
                    // object_store release than Lance's and Tarn's: the files are read
                    // through Tarn's store (the projected columns, whole files).
                    let projected = match projection {
                        Some(p) => Arc::new(schema.project(p)?),
                        None => schema,
                    };
                    let batches = self
                        .table
                        .read_parquet_base(&self.snapshot, &projected)
                        .await
                        .map_err(|e| crate::EngineError::from(e).into_datafusion())?;
                    return Ok(MemorySourceConfig::try_new_exec(&[batches], projected, None)?);
                }
                let files = files
                    .iter()
                    .map(|(url, size)| (url.strip_prefix("file://").unwrap_or(url).to_string(), *size));
                parquet_scan(state, &schema, files.collect(), projection, filters, limit)
            }
        }
    }
}

/// DataFusion's Parquet reader over local `files` (path, size) of a table with
/// `schema`: the projection read, the filters as one predicate that prunes row groups
/// and pages by their statistics (DataFusion still applies every filter above), files
/// whose columns differ adapted to `schema` (missing columns NULL).
pub(crate) fn parquet_scan(
    state: &dyn Session,
    schema: &SchemaRef,
    files: Vec<(String, u64)>,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    if files.is_empty() {
        let projected = match projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema.clone(),
        };
        return Ok(Arc::new(EmptyExec::new(projected)));
    }
    let mut source = ParquetSource::new(schema.clone());
    if let Some(predicate) = parquet_predicate(state, schema, filters) {
        source = source.with_predicate(predicate);
    }
    let mut builder = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
        .with_limit(limit)
        .with_projection_indices(projection.cloned())?;
    for (path, size) in files {
        builder = builder.with_file(PartitionedFile::new(path, size));
    }
    Ok(DataSourceExec::from_data_source(builder.build()))
}

/// The filters as one predicate over the table's columns, for the Parquet reader's
/// pruning; `None` when there are none (or one it cannot take: DataFusion applies every
/// filter above the scan anyway).
fn parquet_predicate(
    state: &dyn Session,
    schema: &SchemaRef,
    filters: &[Expr],
) -> Option<Arc<dyn datafusion::physical_expr::PhysicalExpr>> {
    let filter = datafusion::logical_expr::utils::conjunction(filters.iter().cloned().map(unqualify))?;
    let table = datafusion::common::DFSchema::try_from(schema.as_ref().clone()).ok()?;
    state.create_physical_expr(filter, &table).ok()
}

impl TarnTable {
    /// Lance's scan of `request` under a [`BaseScanExec`], which reports what its
    /// filters let it skip and takes the dynamic filters of the plan above.
    async fn reported(&self, state: &dyn Session, request: ScanRequest) -> DfResult<Arc<dyn ExecutionPlan>> {
        let scan = request.plan(state, &request.filters).await?;
        let filtered: HashSet<String> =
            request.filters.iter().flat_map(|f| f.column_refs()).map(|c| c.name.clone()).collect();
        let table = self.table.name().to_string();
        let shape = BaseShape::of(table, &request.ds, &self.snapshot.manifest.scalar_indexes, &filtered);
        Ok(Arc::new(BaseScanExec::new(scan, shape, request)))
    }

    /// The keys of a filter that pins every primary-key column (`id = 42`,
    /// `id IN (1, 2)`), or `None` when the filters do not.
    fn point_lookup_keys(&self, filters: &[Expr]) -> DfResult<Option<Vec<Key>>> {
        let Some(codec) = self.table.key_codec() else { return Ok(None) };
        let [index] = codec.indices() else { return Ok(None) };
        let field = self.schema.field(*index);
        for filter in filters {
            let values: Vec<ScalarValue> = match filter {
                Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
                    match (left.as_ref(), right.as_ref()) {
                        (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c))
                            if c.name == *field.name() =>
                        {
                            vec![v.clone()]
                        }
                        _ => continue,
                    }
                }
                Expr::InList(list) if !list.negated => match list.expr.as_ref() {
                    Expr::Column(c) if c.name == *field.name() => {
                        let literals: Option<Vec<ScalarValue>> = list
                            .list
                            .iter()
                            .map(|e| match e {
                                Expr::Literal(v, _) => Some(v.clone()),
                                _ => None,
                            })
                            .collect();
                        match literals {
                            Some(values) => values,
                            None => continue,
                        }
                    }
                    _ => continue,
                },
                _ => continue,
            };
            // NULL never equals a key; a value that does not fit the key's type matches nothing.
            let values: Vec<ScalarValue> = values.into_iter().filter(|v| !v.is_null()).collect();
            let mut keys = Vec::with_capacity(values.len());
            for value in values {
                let Ok(cast) = value.cast_to(field.data_type()) else { continue };
                if cast.is_null() {
                    continue;
                }
                let array = cast.to_array()?;
                keys.extend(codec.keys_of(&[array]).map_err(|e| DataFusionError::External(Box::new(e)))?);
            }
            keys.sort();
            keys.dedup();
            return Ok(Some(keys));
        }
        Ok(None)
    }

    async fn scan_merged(
        &self,
        state: &dyn Session,
        projection: Vec<usize>,
        filters: &[Expr],
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let epoch = self.snapshot.changes.clone().expect("merged scans are of primary-key tables");
        let BaseSnapshot::Lance(ds) = &self.snapshot.base else {
            return Err(DataFusionError::Internal("a primary-key table has a lance base".into()));
        };
        let codec = self.table.key_codec().expect("primary-key table");
        // Read the key columns too when the transaction's overlay must hide keys.
        let mut read = projection.clone();
        let mut key_positions = Vec::new();
        if self.overlay.is_some() {
            for &k in codec.indices() {
                let at = read.iter().position(|&c| c == k).unwrap_or_else(|| {
                    read.push(k);
                    read.len() - 1
                });
                key_positions.push(at);
            }
        }
        let output = Arc::new(self.schema.project(&projection)?);

        let views = (0..epoch.bucket_count())
            .map(|b| epoch.view(b, self.snapshot.seq))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        // The base's deletion vector (compacted deletes) and the changes' (not yet).
        let mut deleted = epoch.base_keys.deleted.as_ref().clone();
        for view in &views {
            deleted |= &view.deleted;
        }

        let address_column = self.snapshot.schema().fields().len();
        let mut base_projection = read.clone();
        base_projection.push(address_column);
        let request = ScanRequest {
            ds: ds.clone(),
            with_address: true,
            projection: Some(base_projection),
            filters: filters.to_vec(),
            limit: None,
        };
        let base = self.reported(state, request).await?;
        let hidden = self.overlay.as_ref().map(|o| o.keys.keys().cloned().collect::<HashSet<Key>>());
        let hide = match hidden.clone() {
            Some(keys) => {
                let fields: Vec<&arrow::datatypes::Field> =
                    codec.indices().iter().map(|&i| self.schema.field(i)).collect();
                let codec = tarn_storage::key::KeyCodec::for_fields(key_positions.clone(), &fields)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                Some(HiddenKeys { keys, codec: Arc::new(codec) })
            }
            None => None,
        };
        let base: Arc<dyn ExecutionPlan> = Arc::new(MergeFilterExec::new(
            base,
            output.clone(),
            Arc::new(deleted),
            hide,
            self.table.name().to_string(),
        ));

        let nullable = self.schema.clone();
        let mut partitions: Vec<Vec<RecordBatch>> = Vec::new();
        for view in &views {
            let Some(rows) = &view.rows else { continue };
            let rows = relabel(rows, &nullable)?;
            partitions.push(vec![project_hiding(&rows, &projection, &output, hidden.as_ref(), codec)?]);
        }
        if let Some(rows) = self.overlay.as_ref().and_then(|o| o.rows.as_ref()) {
            let rows = relabel(rows, &nullable)?;
            partitions.push(vec![project_batch(&rows, &projection, &output)?]);
        }
        if partitions.is_empty() {
            return Ok(base);
        }
        let changes = MemorySourceConfig::try_new_exec(&partitions, output, None)?;
        UnionExec::try_new(vec![base, changes])
    }
}

/// Lance's scan of a base (with each row's address last when `with_address`), its blob
/// columns read as their bytes and cast back to the table's `Binary` by a projection
/// above the scan (none when no blob column is read).
pub(crate) async fn lance_scan(
    ds: &Arc<lance::Dataset>,
    with_address: bool,
    state: &dyn Session,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    use datafusion::physical_expr::expressions::{CastExpr, Column};
    use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
    let lance = LanceTableProvider::new(ds.clone(), false, with_address)
        .with_blob_handling(lance::datatypes::BlobHandling::AllBinary);
    let scan = lance.scan(state, projection, filters, limit).await?;
    let is_blob = |name: &str| tarn_storage::blob::is_blob(ds.schema(), name);
    let schema = scan.schema();
    if !schema.fields().iter().any(|f| is_blob(f.name())) {
        return Ok(scan);
    }
    let exprs: Vec<ProjectionExpr> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let column: Arc<dyn datafusion::physical_expr::PhysicalExpr> = Arc::new(Column::new(f.name(), i));
            let expr = if is_blob(f.name()) {
                Arc::new(CastExpr::new(column, arrow::datatypes::DataType::Binary, None))
            } else {
                column
            };
            ProjectionExpr { expr, alias: f.name().clone() }
        })
        .collect();
    Ok(Arc::new(ProjectionExec::try_new(exprs, scan)?))
}

/// `batch` under `schema` (same types; the table's nullable view of them).
fn relabel(batch: &RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        batch.columns().to_vec(),
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

fn project_batch(batch: &RecordBatch, projection: &[usize], output: &SchemaRef) -> DfResult<RecordBatch> {
    let columns: Vec<ArrayRef> = projection.iter().map(|&i| batch.column(i).clone()).collect();
    Ok(RecordBatch::try_new_with_options(
        output.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

/// Change rows without the keys a transaction's overlay replaces, projected.
fn project_hiding(
    rows: &RecordBatch,
    projection: &[usize],
    output: &SchemaRef,
    hidden: Option<&HashSet<Key>>,
    codec: &tarn_storage::key::KeyCodec,
) -> DfResult<RecordBatch> {
    let rows = match hidden {
        Some(hidden) if !hidden.is_empty() => {
            let keys = codec.keys(rows).map_err(|e| DataFusionError::External(Box::new(e)))?;
            let keep: BooleanArray = keys.iter().map(|k| Some(!hidden.contains(k))).collect();
            filter_record_batch(rows, &keep)?
        }
        _ => rows.clone(),
    };
    project_batch(&rows, projection, output)
}

/// Keys to drop from the base scan, and where their columns are in its batches.
#[derive(Debug, Clone)]
struct HiddenKeys {
    keys: HashSet<Key>,
    /// Reads the keys of the base scan's batches (key columns at their positions there).
    codec: Arc<tarn_storage::key::KeyCodec>,
}

/// The base side of a merge: drops rows in the deletion vector (by the row address,
/// the input's last column) and rows whose key a transaction rewrote, then keeps the
/// first `output` columns.
#[derive(Debug)]
struct MergeFilterExec {
    input: Arc<dyn ExecutionPlan>,
    output: SchemaRef,
    deleted: Arc<RoaringTreemap>,
    hidden: Option<HiddenKeys>,
    table: String,
    properties: Arc<PlanProperties>,
}

impl MergeFilterExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        output: SchemaRef,
        deleted: Arc<RoaringTreemap>,
        hidden: Option<HiddenKeys>,
        table: String,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(output.clone()),
            input.properties().partitioning.clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self { input, output, deleted, hidden, table, properties }
    }
}

impl DisplayAs for MergeFilterExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "TarnMergeExec: table={}, deleted_base_rows={}", self.table, self.deleted.len())?;
        if let Some(hidden) = &self.hidden {
            write!(f, ", transaction_keys={}", hidden.keys.len())?;
        }
        Ok(())
    }
}

impl ExecutionPlan for MergeFilterExec {
    fn name(&self) -> &'static str {
        "TarnMergeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(MergeFilterExec::new(
            children.remove(0),
            self.output.clone(),
            self.deleted.clone(),
            self.hidden.clone(),
            self.table.clone(),
        )))
    }

    /// The base scan's row count (a bound).
    fn partition_statistics(&self, partition: Option<usize>) -> DfResult<Arc<Statistics>> {
        let mut statistics = Statistics::new_unknown(&self.output);
        statistics.num_rows = self.input.partition_statistics(partition)?.num_rows.to_inexact();
        Ok(Arc::new(statistics))
    }

    /// Filters above go down to the base scan: the output is its first columns, and
    /// dropping base rows early changes nothing the merge decides (change rows win over
    /// base rows, deleted rows are dropped anyway).
    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> DfResult<FilterDescription> {
        FilterDescription::from_children(parent_filters, &self.children())
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let output = self.output.clone();
        let deleted = self.deleted.clone();
        let hidden = self.hidden.clone();
        let width = output.fields().len();
        let stream = input.map(move |batch| {
            let batch = batch?;
            let addresses = batch
                .column(batch.num_columns() - 1)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .ok_or_else(|| DataFusionError::Internal("row address column is not u64".into()))?
                .clone();
            let mut keep: Vec<bool> = if deleted.is_empty() {
                vec![true; batch.num_rows()]
            } else {
                addresses.values().iter().map(|a| !deleted.contains(*a)).collect()
            };
            if let Some(hidden) = hidden.as_ref().filter(|h| !h.keys.is_empty()) {
                let keys = hidden.codec.keys(&batch).map_err(|e| DataFusionError::External(Box::new(e)))?;
                for (k, key) in keys.iter().enumerate() {
                    keep[k] &= !hidden.keys.contains(key);
                }
            }
            let columns: Vec<ArrayRef> = batch.columns()[..width].to_vec();
            let projected = RecordBatch::try_new_with_options(
                output.clone(),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )?;
            if keep.iter().all(|&k| k) {
                Ok(projected)
            } else {
                Ok(filter_record_batch(&projected, &BooleanArray::from(keep))?)
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.output.clone(), stream)))
    }
}

/// A primary-key lookup: the transaction's overlay, the bucket's changes, then the
/// base's key index and a Lance `take` of the addressed rows.
#[derive(Debug)]
struct PointLookupExec {
    table: Arc<Table>,
    snapshot: Arc<Snapshot>,
    overlay: Option<Arc<Overlay>>,
    keys: Vec<Key>,
    projection: Vec<usize>,
    /// The table's schema, every column nullable.
    schema: SchemaRef,
    output: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl PointLookupExec {
    fn new(table: &TarnTable, keys: Vec<Key>, projection: Vec<usize>) -> Self {
        let output = Arc::new(table.schema.project(&projection).expect("projection in range"));
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(output.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            table: table.table.clone(),
            snapshot: table.snapshot.clone(),
            overlay: table.overlay.clone(),
            keys,
            projection,
            schema: table.schema.clone(),
            output,
            properties,
        }
    }

    async fn lookup(
        table: Arc<Table>,
        snapshot: Arc<Snapshot>,
        overlay: Option<Arc<Overlay>>,
        keys: Vec<Key>,
        schema: SchemaRef,
        projection: Vec<usize>,
        output: SchemaRef,
    ) -> DfResult<RecordBatch> {
        let epoch = snapshot.changes.clone().expect("lookups are of primary-key tables");
        let mut found: Vec<RecordBatch> = Vec::new();
        let mut addresses: Vec<u64> = Vec::new();
        for key in &keys {
            if let Some(overlay) = &overlay {
                match overlay.keys.get(key) {
                    Some(Some(row)) => {
                        found.push(overlay.rows.as_ref().expect("overlay rows").slice(*row, 1));
                        continue;
                    }
                    Some(None) => continue,
                    None => {}
                }
            }
            match epoch.lookup(key, snapshot.seq) {
                Lookup::Changed(Some(row)) => found.push(row),
                Lookup::Changed(None) | Lookup::Absent => {}
                Lookup::InBase(address) => addresses.push(address),
            }
        }
        let mut batches: Vec<RecordBatch> = found
            .iter()
            .map(|row| project_batch(&relabel(row, &schema)?, &projection, &output))
            .collect::<DfResult<_>>()?;
        if !addresses.is_empty() {
            let held = match &snapshot.base {
                BaseSnapshot::Lance(ds) => {
                    let table_id = snapshot.manifest.table_id;
                    let held = crate::search::base_cache::held(table_id, ds);
                    if held.is_none() {
                        crate::search::base_cache::note_lookup(table_id, ds, &schema);
                    }
                    held
                }
                BaseSnapshot::Parquet(_) => None,
            };
            let taken = match held {
                // A base held in memory: its rows without a read.
                Some(held) => held.take(addresses.iter().copied())?,
                None => table
                    .take_base_rows(&snapshot, &addresses)
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?,
            };
            let taken = relabel(&taken, &schema)?;
            batches.push(project_batch(&taken, &projection, &output)?);
        }
        Ok(arrow::compute::concat_batches(&output, &batches)?)
    }
}

impl DisplayAs for PointLookupExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "TarnPointLookupExec: table={}, keys={}, version={}",
            self.table.name(),
            self.keys.len(),
            self.snapshot.seq
        )
    }
}

impl ExecutionPlan for PointLookupExec {
    fn name(&self) -> &'static str {
        "TarnPointLookupExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let future = Self::lookup(
            self.table.clone(),
            self.snapshot.clone(),
            self.overlay.clone(),
            self.keys.clone(),
            self.schema.clone(),
            self.projection.clone(),
            self.output.clone(),
        );
        let stream = futures::stream::once(future);
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.output.clone(), stream)))
    }
}

/// The rows of `keys` that exist at `snapshot` (with the transaction's `overlay`),
/// `projection` of `schema` (the table's columns, nullable) as `output`.
pub(crate) async fn lookup_projected(
    table: Arc<Table>,
    snapshot: Arc<Snapshot>,
    overlay: Option<Arc<Overlay>>,
    keys: Vec<Key>,
    schema: SchemaRef,
    projection: Vec<usize>,
    output: SchemaRef,
) -> DfResult<RecordBatch> {
    PointLookupExec::lookup(table, snapshot, overlay, keys, schema, projection, output).await
}

/// The rows of `keys` (all of which exist) at `snapshot` with the transaction's
/// `overlay`, in the order of `keys`.
pub(crate) async fn lookup_rows(
    snapshot: &Arc<Snapshot>,
    overlay: Option<Arc<Overlay>>,
    keys: &[Key],
    table: &Arc<Table>,
) -> DfResult<RecordBatch> {
    let schema = nullable_schema(&snapshot.schema());
    let projection: Vec<usize> = (0..schema.fields().len()).collect();
    let rows = PointLookupExec::lookup(
        table.clone(),
        snapshot.clone(),
        overlay,
        keys.to_vec(),
        schema.clone(),
        projection,
        schema,
    )
    .await?;
    let codec = table.key_codec().expect("primary-key table");
    let found = codec.keys(&rows).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let at: HashMap<&Key, u32> = found.iter().enumerate().map(|(i, k)| (k, i as u32)).collect();
    let order: Vec<u32> = keys
        .iter()
        .map(|k| {
            at.get(k).copied().ok_or_else(|| DataFusionError::Internal("a looked-up key has no row".into()))
        })
        .collect::<DfResult<_>>()?;
    Ok(arrow::compute::take_record_batch(&rows, &arrow::array::UInt32Array::from(order))?)
}

/// A table read at an older version: `FROM t AS OF VERSION 17` is rewritten to
/// `FROM tarn_as_of('t', 17) AS t`. The version is resolved when the scan is planned.
#[derive(Debug)]
pub struct AsOfTable {
    table: Arc<Table>,
    version: u64,
    schema: SchemaRef,
    defaults: DefaultParser,
}

#[async_trait]
impl TableProvider for AsOfTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let pinned = self.pinned_as_it_was().await?;
        let then = pinned.schema();
        if then.fields() == self.schema.fields() {
            return pinned.scan(state, projection, filters, limit).await;
        }
        // The table's columns now, from the version's by name; one added since reads
        // NULL (it did not exist), one dropped since is not read. A rename cannot be told
        // by name (nor from a drop and an add): then the read is refused. The filters
        // (inexact) are applied above the scan, where every column is.
        let named = |schema: &Schema, name: &str| schema.index_of(name).is_ok();
        let gone = then.fields().iter().any(|f| !named(&self.schema, f.name()));
        let added = self.schema.fields().iter().any(|f| !named(&then, f.name()));
        if gone && added {
            return Err(DataFusionError::External(Box::new(tarn_storage::StorageError::Unsupported {
                message: format!(
                    "reading version {} of {}: a column was renamed (or dropped and another added) since, \
                     which is not supported yet",
                    self.version,
                    self.table.name()
                ),
            })));
        }
        let wanted: Vec<usize> =
            projection.cloned().unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let mut read: Vec<usize> =
            wanted.iter().filter_map(|&i| then.index_of(self.schema.field(i).name()).ok()).collect();
        read.sort_unstable();
        read.dedup();
        let scan = pinned.scan(state, Some(&read), &[], None).await?;
        let columns = wanted
            .iter()
            .map(|&i| {
                let field = self.schema.field(i);
                let expr: Arc<dyn PhysicalExpr> = match then.index_of(field.name()) {
                    Ok(at) => {
                        let position = read.iter().position(|r| *r == at).expect("read above");
                        Arc::new(Column::new(field.name(), position))
                    }
                    Err(_) => Arc::new(Literal::new(ScalarValue::try_from(field.data_type())?)),
                };
                Ok((expr, field.name().clone()))
            })
            .collect::<DfResult<Vec<_>>>()?;
        Ok(Arc::new(ProjectionExec::try_new(columns, scan)?))
    }
}

impl AsOfTable {
    pub(crate) fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// The table pinned at the version, with the columns it had then.
    async fn pinned_as_it_was(&self) -> DfResult<TarnTable> {
        let snapshot =
            self.table.snapshot_at(self.version).await.map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(TarnTable::at(self.table.clone(), snapshot, None, &self.defaults))
    }

    /// The table pinned at the version, for a search over it: the version must have
    /// the table's columns now.
    pub async fn pinned(&self) -> DfResult<TarnTable> {
        let pinned = self.pinned_as_it_was().await?;
        if pinned.schema().fields() != self.schema.fields() {
            return Err(DataFusionError::External(Box::new(tarn_storage::StorageError::Unsupported {
                message:
                    "a search of a version from before a column was added or dropped is not supported yet"
                        .into(),
            })));
        }
        Ok(pinned)
    }
}

/// Finds a table by the name a table function was given (`'events'`, `'s.events'`).
pub type TableResolver = Arc<dyn Fn(&str) -> Option<Arc<Table>> + Send + Sync>;

fn string_and_version_args(args: &[Expr], function: &str, count: usize) -> DfResult<(String, Vec<u64>)> {
    let usage =
        || DataFusionError::Plan(format!("{function} takes a table name and {} version number(s)", count));
    let name = match args.first() {
        Some(Expr::Literal(
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
            _,
        )) => s.clone(),
        _ => return Err(usage()),
    };
    let versions = args[1..]
        .iter()
        .map(|e| match e {
            Expr::Literal(v, _) => v.cast_to(&arrow::datatypes::DataType::Int64).ok().and_then(|v| match v {
                ScalarValue::Int64(Some(n)) if n >= 0 => Some(n as u64),
                _ => None,
            }),
            _ => None,
        })
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(usage)?;
    if versions.len() != count {
        return Err(usage());
    }
    Ok((name, versions))
}

/// The table a table function names in its first argument, and its version arguments.
fn table_and_versions(
    resolve: &TableResolver,
    args: &[Expr],
    function: &str,
    count: usize,
) -> DfResult<(Arc<Table>, Vec<u64>)> {
    let (name, versions) = string_and_version_args(args, function, count)?;
    let table =
        resolve(&name).ok_or_else(|| DataFusionError::Plan(format!("table \"{name}\" does not exist")))?;
    Ok((table, versions))
}

/// `tarn_as_of('table', version)`: the table function behind `AS OF VERSION`.
#[derive(Clone)]
pub struct AsOfFunction {
    pub resolve: TableResolver,
    pub defaults: DefaultParser,
    /// An external table named so, at a version (an Iceberg snapshot).
    pub external_at: ExternalResolver,
}

/// An external table by name (`schema.table` or `table`) at a version, if there is one.
pub type ExternalResolver = Arc<dyn Fn(&str, i64) -> Option<DfResult<Arc<dyn TableProvider>>> + Send + Sync>;

impl std::fmt::Debug for AsOfFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AsOfFunction")
    }
}

impl TableFunctionImpl for AsOfFunction {
    fn call(&self, args: &[Expr]) -> DfResult<Arc<dyn TableProvider>> {
        let (name, versions) = string_and_version_args(args, "AS OF VERSION", 1)?;
        if self.resolve.as_ref()(&name).is_none() {
            let version = i64::try_from(versions[0])
                .map_err(|_| DataFusionError::Plan(format!("version {} is out of range", versions[0])))?;
            if let Some(external) = self.external_at.as_ref()(&name, version) {
                return external;
            }
        }
        let (table, versions) = table_and_versions(&self.resolve, args, "AS OF VERSION", 1)?;
        let current = TarnTable::new(table.clone(), &self.defaults);
        Ok(Arc::new(AsOfTable {
            table,
            version: versions[0],
            schema: current.schema(),
            defaults: self.defaults.clone(),
        }))
    }
}

/// `table_changes('table', from_version, to_version)`: the change feed, a row per
/// changed key and version with `_change_type` and `_commit_version`.
#[derive(Clone)]
pub struct TableChangesFunction {
    pub resolve: TableResolver,
}

impl std::fmt::Debug for TableChangesFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TableChangesFunction")
    }
}

impl TableFunctionImpl for TableChangesFunction {
    fn call(&self, args: &[Expr]) -> DfResult<Arc<dyn TableProvider>> {
        let (table, versions) = table_and_versions(&self.resolve, args, "table_changes", 2)?;
        Ok(Arc::new(ChangeFeedTable {
            schema: table.change_feed_schema(),
            table,
            from: versions[0],
            to: versions[1],
        }))
    }
}

#[derive(Debug)]
pub(crate) struct ChangeFeedTable {
    table: Arc<Table>,
    schema: SchemaRef,
    from: u64,
    to: u64,
}

impl ChangeFeedTable {
    pub(crate) fn table(&self) -> &Arc<Table> {
        &self.table
    }
}

#[async_trait]
impl TableProvider for ChangeFeedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batches = self
            .table
            .changes_between(self.from, self.to)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let batches: Vec<RecordBatch> =
            batches.iter().map(|b| relabel(b, &self.schema)).collect::<DfResult<_>>()?;
        Ok(MemorySourceConfig::try_new_exec(&[batches], self.schema.clone(), projection.cloned())?)
    }
}
