//! Nearest-neighbour search: `ORDER BY <distance>(col, constant) [ASC] LIMIT k`.
//!
//! [`KnnRule`] (a logical optimizer rule) finds a top-k sort on a distance to a constant
//! vector above a scan of a Tarn table, through any projections and `WHERE`, and puts a
//! [`KnnNode`] in place of the scan and its filters: the node yields the k rows nearest
//! to the query among those that pass every filter. The sort and projections above it
//! stay (they cost k rows), so OFFSET, the distance in the select list and any
//! expression on it work as they did.
//!
//! [`KnnPlanner`] picks the way the node runs, from the table's indexes, the session's
//! knobs and a sample of the table (the selectivity of the filters):
//!
//! - `index`: the Lance ANN index of the column (built for this distance), no filter;
//! - `index+prefilter`: the same, with the filters as a pre-filter inside the index
//!   search (a row mask Lance computes first), so a filter never empties the top k;
//! - `exact`: a flat scan of the rows that pass the filters, when no index serves the
//!   distance or when the filters leave few rows (cheaper than the index, and exact).
//!
//! In every mode the base rows that changes replaced or deleted are dropped by the
//! deletion vector (an index search asks for as many more rows as the deleted share of
//! the base suggests, and again for more while too few survive), and the change store's
//! rows (not yet in the base, so in no index) are searched exactly and merged: a row is
//! found the moment its commit is visible. When an index search returns fewer than k
//! rows the node searches again exactly, so a query returns fewer than k rows only when
//! fewer qualify. A base held in memory ([`crate::search::base_cache`]) is searched exactly
//! there, and supplies the rows an index search names; with it, an unfiltered HNSW
//! search asks Lance's index for a graph search per segment instead of planning a scan.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float32Array, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{Float32Type, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DFSchemaRef, Result as DfResult, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, Projection, Sort, TableScan, UserDefinedLogicalNode,
    UserDefinedLogicalNodeCore,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::TryStreamExt;
use lance::dataset::scanner::MaterializationStyle;
use lance::Dataset;
use roaring::RoaringTreemap;
use tarn_storage::blob;
use tarn_storage::table::BaseSnapshot;
use tarn_storage::vector_index::{IndexDef, IndexMethod, Metric};

use crate::catalog::provider::{unqualify, TarnTable};
use crate::search::base_cache::{self, BaseRows, PerBase};
use crate::search::distance::{row, values, Distance};
use crate::search::one_batch::{OneBatchExec, Search};

/// The session's search knobs (`SET hnsw.ef_search`, `SET ivfflat.probes`), carried
/// to the planner in DataFusion's session config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchSettings {
    /// Candidates an HNSW search keeps (pgvector's `hnsw.ef_search`).
    pub ef_search: usize,
    /// IVF partitions searched (pgvector's `ivfflat.probes`).
    pub probes: usize,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings { ef_search: DEFAULT_EF_SEARCH, probes: DEFAULT_PROBES }
    }
}

/// Higher than pgvector's 40: recall@10 on GloVe-50 (100k rows, cosine) is 0.94 at 64
/// and 0.97 at 100, for about the same latency (`tests/python/test_recall.py`).
pub const DEFAULT_EF_SEARCH: usize = 100;
/// pgvector's default is 1 probe, which rarely reaches 0.95 recall.
pub const DEFAULT_PROBES: usize = 10;

/// The column Lance adds for `with_row_address` (`lance_core::ROW_ADDR`).
const ROW_ADDR: &str = "_rowaddr";

/// The logical rule (see the module docs).
#[derive(Debug, Default)]
pub struct KnnRule;

impl OptimizerRule for KnnRule {
    fn name(&self) -> &str {
        "tarn_knn"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(&self, plan: LogicalPlan, _: &dyn OptimizerConfig) -> DfResult<Transformed<LogicalPlan>> {
        let LogicalPlan::Sort(sort) = &plan else { return Ok(Transformed::no(plan)) };
        match knn_below(sort)? {
            Some(input) => Ok(Transformed::yes(LogicalPlan::Sort(Sort {
                expr: sort.expr.clone(),
                input: Arc::new(input),
                fetch: sort.fetch,
            }))),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// The sort's input with its scan replaced by a [`KnnNode`], if the sort is a kNN.
fn knn_below(sort: &Sort) -> DfResult<Option<LogicalPlan>> {
    let (Some(k), [key]) = (sort.fetch, sort.expr.as_slice()) else { return Ok(None) };
    if !key.asc {
        return Ok(None);
    }
    // Follow the sort key down to the scan, through projections (which may name it).
    let mut expr = key.expr.clone().unalias_nested().data;
    let mut node = sort.input.as_ref();
    let mut filters = Vec::new();
    let scan = loop {
        match node {
            LogicalPlan::Projection(p) => {
                expr = expr
                    .transform(|e| match e {
                        Expr::Column(c) => match p.schema.index_of_column(&c) {
                            Ok(i) => Ok(Transformed::yes(p.expr[i].clone().unalias_nested().data)),
                            Err(_) => Ok(Transformed::no(Expr::Column(c))),
                        },
                        other => Ok(Transformed::no(other)),
                    })?
                    .data;
                node = p.input.as_ref();
            }
            LogicalPlan::Filter(f) => {
                filters.extend(split_conjunction(&f.predicate).into_iter().cloned());
                node = f.input.as_ref();
            }
            // The plain-SQL RRF form ranks in a window below its LIMIT: a ranking by the
            // same order has the same values on the k nearest rows as on all rows.
            LogicalPlan::Window(w) if w.window_expr.iter().all(|e| ranks_by(e, &expr, true)) => {
                node = w.input.as_ref();
            }
            // `FROM items AS i`: the same columns under the table's own name below.
            LogicalPlan::SubqueryAlias(a) => {
                expr = expr
                    .transform(|e| match e {
                        Expr::Column(c) => match unaliased(a, &c) {
                            Some(inner) => Ok(Transformed::yes(Expr::Column(inner))),
                            None => Ok(Transformed::no(Expr::Column(c))),
                        },
                        other => Ok(Transformed::no(other)),
                    })?
                    .data;
                node = a.input.as_ref();
            }
            LogicalPlan::TableScan(scan) => break scan,
            _ => return Ok(None),
        }
    };
    let Some((distance, column, query)) = knn_target(&expr) else { return Ok(None) };
    let Ok(provider) = source_as_provider(&scan.source) else { return Ok(None) };
    let Some(table) = provider.downcast_ref::<TarnTable>() else { return Ok(None) };
    if table.has_overlay() || !matches!(table.snapshot().base, BaseSnapshot::Lance(_)) {
        // A transaction's own writes, or a Parquet base: DataFusion's exact top-k.
        return Ok(None);
    }
    let Some(column_index) = table.schema().index_of(&column).ok() else { return Ok(None) };
    for filter in &scan.filters {
        if !filters.contains(filter) {
            filters.push(filter.clone());
        }
    }
    // Row policies are pre-filters like the others, so a secured search still finds
    // its k rows. A user's filter that could fail or leak on a hidden row must not
    // run beside them: then DataFusion's exact top-k over the secured scan.
    // A masked column reads its mask: the index holds the values, so a search over
    // one, or a filter on one, is DataFusion's exact top-k over the masked scan.
    if table.is_masked(&column) || filters.iter().any(|f| table.reads_masked(f)) {
        return Ok(None);
    }
    if let Some(row_filter) = table.row_filter() {
        if !filters.iter().all(crate::access::row_security::leakproof) {
            return Ok(None);
        }
        filters.push(row_filter.clone());
    }
    if filters.iter().any(|f| !lance_can_filter(table, f)) {
        return Ok(None);
    }
    let knn = KnnNode { scan: scan.clone(), distance, column: column_index, query, k, filters };
    let extension = LogicalPlan::Extension(Extension { node: Arc::new(knn) });
    Ok(Some(replace_scan(sort.input.as_ref(), extension)?))
}

/// The chain from the sort down with `knn` in place of the scan and without the
/// filters (the node applies them).
fn replace_scan(plan: &LogicalPlan, knn: LogicalPlan) -> DfResult<LogicalPlan> {
    Ok(match plan {
        LogicalPlan::Projection(p) => LogicalPlan::Projection(Projection::try_new_with_schema(
            p.expr.clone(),
            Arc::new(replace_scan(&p.input, knn)?),
            p.schema.clone(),
        )?),
        LogicalPlan::Filter(f) => replace_scan(&f.input, knn)?,
        LogicalPlan::SubqueryAlias(a) => {
            LogicalPlan::SubqueryAlias(datafusion::logical_expr::SubqueryAlias::try_new(
                Arc::new(replace_scan(&a.input, knn)?),
                a.alias.clone(),
            )?)
        }
        LogicalPlan::Window(w) => LogicalPlan::Window(datafusion::logical_expr::Window::try_new(
            w.window_expr.clone(),
            Arc::new(replace_scan(&w.input, knn)?),
        )?),
        _ => knn,
    })
}

/// The column of an alias's input that `column` (of the alias) is.
pub(crate) fn unaliased(
    alias: &datafusion::logical_expr::SubqueryAlias,
    column: &datafusion::common::Column,
) -> Option<datafusion::common::Column> {
    let i = alias.schema.index_of_column(column).ok()?;
    let (qualifier, field) = alias.input.schema().qualified_field(i);
    Some(datafusion::common::Column::new(qualifier.cloned(), field.name()))
}

/// Whether `window` is `row_number()`, `rank()` or `dense_rank()` over `ORDER BY key`
/// (ascending or not, as `asc` says) with no partitions: on the first k rows of that
/// order its values are the same as on all rows.
pub(crate) fn ranks_by(window: &Expr, key: &Expr, asc: bool) -> bool {
    use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionParams};
    let Expr::WindowFunction(function) = window.clone().unalias_nested().data else { return false };
    let WindowFunction { fun, params } = function.as_ref();
    let WindowFunctionParams { args, partition_by, order_by, .. } = params;
    let ranking = matches!(fun.name().to_ascii_lowercase().as_str(), "row_number" | "rank" | "dense_rank");
    let ordered = matches!(order_by.as_slice(),
        [sort] if sort.asc == asc && sort.expr.clone().unalias_nested().data == *key);
    ranking && args.is_empty() && partition_by.is_empty() && ordered
}

/// `distance(column, query)` (either order), the query a constant vector or a
/// parameter: the distance, the column name and the query.
fn knn_target(expr: &Expr) -> Option<(Distance, String, Expr)> {
    let Expr::ScalarFunction(f) = expr else { return None };
    let distance = Distance::from_function_name(f.func.name())?;
    if distance == Distance::InnerProduct {
        // Ascending inner product is the farthest first: not a nearest-neighbour order.
        return None;
    }
    let (column, query) = match f.args.as_slice() {
        [Expr::Column(c), q] | [q, Expr::Column(c)] if !matches!(q, Expr::Column(_)) => (c, q),
        _ => return None,
    };
    let searchable = match query {
        Expr::Literal(value, _) => query_vector(value).is_ok(),
        other => crate::search::query_value::of_parameters(other),
    };
    searchable.then(|| (distance, column.name.clone(), query.clone()))
}

/// A query vector's values; an error for a NULL or a value that is not a vector of reals.
fn query_vector(value: &ScalarValue) -> DfResult<Vec<f32>> {
    let not_vector = || {
        crate::error::EngineError::DataException {
            message: format!("a nearest-neighbour search needs a vector to search for, not {value}"),
        }
        .into_datafusion()
    };
    let ScalarValue::FixedSizeList(list) = value else { return Err(not_vector()) };
    if list.is_null(0) {
        return Err(not_vector());
    }
    let values = list.value(0);
    Ok(values.as_primitive_opt::<Float32Type>().ok_or_else(not_vector)?.values().to_vec())
}

/// Whether Lance can evaluate `filter` inside its search (its pre-filter planner knows
/// comparisons, IN, IS NULL, LIKE and boolean logic on columns; not our functions).
fn lance_can_filter(table: &TarnTable, filter: &Expr) -> bool {
    use datafusion::logical_expr::TableProviderFilterPushDown as P;
    let BaseSnapshot::Lance(ds) = &table.snapshot().base else { return false };
    let lance = lance::datafusion::LanceTableProvider::new(ds.clone(), false, false);
    let unqualified = unqualify(crate::search::query_value::with_typed_nulls(filter));
    let has_udf = unqualified.exists(|e| Ok(matches!(e, Expr::ScalarFunction(_)))).unwrap_or(true);
    !has_udf
        && !table.reads_blob(filter)
        && matches!(
            TableProvider::supports_filters_pushdown(&lance, &[&unqualified]).as_deref(),
            Ok([P::Exact | P::Inexact])
        )
}

impl KnnNode {
    /// The scan it replaces and the columns it reads: the scan's, the vector and the
    /// user's filters' (for the privilege check; the row policies' are not the user's).
    pub(crate) fn columns_read(&self) -> (&TableScan, std::collections::BTreeSet<String>) {
        let schema = self.scan.source.schema();
        let mut columns = scan_columns(&self.scan);
        columns.insert(schema.field(self.column).name().clone());
        let row_filter = row_filter_of(&self.scan);
        for filter in self.filters.iter().filter(|f| Some(*f) != row_filter.as_ref()) {
            columns.extend(filter.column_refs().into_iter().map(|c| c.name.clone()));
        }
        (&self.scan, columns)
    }
}

/// The row policies' filter of a scan's table, if any.
pub(crate) fn row_filter_of(scan: &TableScan) -> Option<Expr> {
    let provider = source_as_provider(&scan.source).ok()?;
    provider.downcast_ref::<TarnTable>()?.row_filter().cloned()
}

/// The columns a scan returns and its filters read.
pub(crate) fn scan_columns(scan: &TableScan) -> std::collections::BTreeSet<String> {
    let schema = scan.source.schema();
    let mut columns: std::collections::BTreeSet<String> = match &scan.projection {
        Some(projection) => projection.iter().map(|&i| schema.field(i).name().clone()).collect(),
        None => schema.fields().iter().map(|f| f.name().clone()).collect(),
    };
    for filter in &scan.filters {
        columns.extend(filter.column_refs().into_iter().map(|c| c.name.clone()));
    }
    columns
}

/// The k rows of a table scan nearest to a query vector, among those passing `filters`.
#[derive(Debug, Clone)]
pub struct KnnNode {
    scan: TableScan,
    distance: Distance,
    /// Position of the vector column in the table.
    column: usize,
    /// The vector searched for: a constant, or (in a plan kept for a prepared
    /// statement) an expression of its parameters, which have values by the time the
    /// node is planned physically.
    query: Expr,
    k: usize,
    filters: Vec<Expr>,
}

impl PartialEq for KnnNode {
    fn eq(&self, other: &Self) -> bool {
        self.scan == other.scan
            && self.distance == other.distance
            && self.column == other.column
            && self.k == other.k
            && self.filters == other.filters
            && self.query == other.query
    }
}

impl Eq for KnnNode {}

impl Hash for KnnNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.scan.hash(state);
        self.distance.hash(state);
        self.k.hash(state);
        self.query.hash(state);
    }
}

impl PartialOrd for KnnNode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (self == other).then_some(std::cmp::Ordering::Equal)
    }
}

impl KnnNode {
    /// The scan the node reads (for re-pinning a kept plan to a newer snapshot).
    pub(crate) fn scan(&self) -> &TableScan {
        &self.scan
    }

    /// The same search over `scan` (the same table, at another snapshot).
    pub(crate) fn with_scan(&self, scan: TableScan) -> Self {
        KnnNode { scan, ..self.clone() }
    }
}

impl KnnNode {
    /// What column lineage needs (`crate::lineage::columns`): the scan, the vector
    /// column's position in the table and the filters.
    pub(crate) fn lineage_parts(&self) -> (&TableScan, usize, &[Expr]) {
        (&self.scan, self.column, &self.filters)
    }
}

impl UserDefinedLogicalNodeCore for KnnNode {
    fn name(&self) -> &str {
        "TarnKnn"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.scan.projected_schema
    }

    /// The query and the filters: a prepared statement's parameter values reach the
    /// node through them.
    fn expressions(&self) -> Vec<Expr> {
        let mut exprs = vec![self.query.clone()];
        exprs.extend(self.filters.iter().cloned());
        exprs
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "TarnKnn: table={}, order={}, k={}, filters=[{}]",
            self.scan.table_name,
            self.distance.function_name(),
            self.k,
            self.filters.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ")
        )
    }

    fn with_exprs_and_inputs(&self, mut exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        if exprs.len() != 1 + self.filters.len() {
            return Err(DataFusionError::Internal("kNN node rebuilt with other expressions".into()));
        }
        let filters = exprs.split_off(1);
        let query = exprs.pop().expect("one query");
        Ok(KnnNode { query, filters, ..self.clone() })
    }
}

/// How a kNN node runs.
#[derive(Debug, Clone, PartialEq)]
enum Mode {
    /// The ANN index (with the filters as its pre-filter when there are any).
    Index {
        def: IndexDef,
        ef: usize,
        probes: usize,
    },
    Exact,
}

/// Plans [`KnnNode`]s (see the module docs for the choice).
#[derive(Debug, Default)]
pub struct KnnPlanner;

#[async_trait]
impl ExtensionPlanner for KnnPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        state: &SessionState,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<KnnNode>() else { return Ok(None) };
        let provider = source_as_provider(&node.scan.source)?;
        let table = provider
            .downcast_ref::<TarnTable>()
            .ok_or_else(|| DataFusionError::Internal("kNN over a table that is not Tarn's".into()))?;
        let snapshot = table.snapshot().clone();
        let BaseSnapshot::Lance(ds) = &snapshot.base else {
            return Err(DataFusionError::Internal("kNN over a base that is not Lance".into()));
        };
        let query = query_vector(&crate::search::query_value::constant_value(&node.query, state)?)?;
        let dims = crate::search::vector::vector_dims(table.schema().field(node.column).data_type());
        if dims != Some(query.len() as i32) {
            return Err(crate::error::EngineError::DataException {
                message: format!("different vector dimensions {} and {}", dims.unwrap_or(0), query.len()),
            }
            .into_datafusion());
        }
        let settings = state.config().get_extension::<SearchSettings>().map(|s| *s).unwrap_or_default();
        let column = table.schema().field(node.column).name().clone();
        let index = usable_index(&snapshot.manifest.indexes, &column, node.distance);

        // The columns read: the scan's, the vector column, the filters' columns.
        let schema = table.schema();
        let output: Vec<usize> =
            node.scan.projection.clone().unwrap_or_else(|| (0..schema.fields().len()).collect());
        let mut read = output.clone();
        let mut need = vec![node.column];
        for filter in &node.filters {
            for c in filter.column_refs() {
                need.push(schema.index_of(&c.name)?);
            }
        }
        for c in need {
            if !read.contains(&c) {
                read.push(c);
            }
        }
        let table_df = DFSchema::try_from(schema.as_ref().clone())?;
        let filter = conjunction(node.filters.iter().cloned().map(unqualify));
        let physical_filter = match &filter {
            Some(f) => Some(state.create_physical_expr(f.clone(), &table_df)?),
            None => None,
        };

        let (mode, selectivity) = match index {
            None => (Mode::Exact, None),
            Some(def) => {
                let selectivity = match &physical_filter {
                    Some(predicate) => Some(
                        estimate_selectivity(snapshot.manifest.table_id, ds.as_ref(), &schema, predicate)
                            .await?,
                    ),
                    None => None,
                };
                // A selective filter leaves fewer matches per step of the index walk:
                // widen the walk in proportion.
                let widen = selectivity.map_or(1.0, |s| (1.0 / s.max(1e-3)).sqrt());
                let ef = ((settings.ef_search as f64 * widen) as usize).max(node.k);
                let probes = ((settings.probes as f64 * widen) as usize).max(1);
                let rows = snapshot.manifest.row_count as f64;
                let exact = selectivity.is_some_and(|s| exact_is_cheaper(&def, rows, s, ef, probes));
                if exact {
                    (Mode::Exact, selectivity)
                } else {
                    (Mode::Index { def, ef, probes }, selectivity)
                }
            }
        };
        let output_schema: SchemaRef = Arc::new(node.scan.projected_schema.as_arrow().clone());
        let masks = table.masks().to_vec();
        let search = Arc::new(OneBatchExec::new(KnnSearch {
            table: provider.clone(),
            mode,
            selectivity,
            distance: node.distance,
            column: node.column,
            query,
            k: node.k,
            filter,
            physical_filter,
            base_rows: snapshot.manifest.row_count
                + snapshot.changes.as_ref().map_or(0, |epoch| epoch.base_keys.deleted.len()),
            read,
            output,
            output_schema,
        }));
        Ok(Some(crate::access::masking::mask_output(search, &masks)?))
    }
}

/// The segments of an HNSW index searched graph by graph: the index opened once per
/// base version (its segments, each a single graph), `None` when one is not (several
/// partitions) or some base rows are in no segment yet.
type GraphSegments = Option<Arc<[Arc<dyn lance_index::vector::VectorIndex>]>>;

/// Opened indexes, by table, base version and index name.
static GRAPHS: PerBase<GraphSegments, (u64, u64, String)> = PerBase::new(8);

async fn graph_segments(table_id: u64, ds: &Dataset, name: &str, column: &str) -> DfResult<GraphSegments> {
    use lance::index::{DatasetIndexExt, DatasetIndexInternalExt};
    use lance_index::metrics::NoOpMetricsCollector;
    let key = (table_id, ds.version().version, name.to_string());
    if let Some(segments) = GRAPHS.get(&key) {
        return Ok(segments);
    }
    let metadata = ds.load_indices_by_name(name).await.map_err(lance_error)?;
    let mut covered = roaring::RoaringBitmap::new();
    let mut whole = !metadata.is_empty();
    for segment in &metadata {
        match &segment.fragment_bitmap {
            Some(fragments) => covered |= fragments,
            None => whole = false,
        }
    }
    whole &= ds.get_fragments().iter().all(|f| covered.contains(f.id() as u32));
    let mut segments = Vec::with_capacity(metadata.len());
    if whole {
        for segment in &metadata {
            let index = ds
                .open_vector_index(column, &segment.uuid, &NoOpMetricsCollector)
                .await
                .map_err(lance_error)?;
            if index.total_partitions() != 1 {
                whole = false;
                break;
            }
            segments.push(index);
        }
    }
    let segments: GraphSegments = whole.then(|| segments.into());
    GRAPHS.put(key, segments.clone());
    Ok(segments)
}

/// Whether comparing the query with every row that passes a filter of selectivity
/// `s` costs fewer distance computations than the index walk: an HNSW search visits
/// about `ef * m` nodes, of which a fraction `s` counts toward the result; an IVF
/// search reads `probes` partitions of `rows / lists` vectors, and keeps the fraction
/// `s` of them.
fn exact_is_cheaper(def: &IndexDef, rows: f64, s: f64, ef: usize, probes: usize) -> bool {
    let exact = s * rows;
    let index = match def.method {
        IndexMethod::Hnsw => (ef * def.m) as f64 / s,
        IndexMethod::IvfFlat | IndexMethod::IvfPq => {
            let lists = def.lists.unwrap_or(((rows / 1000.0) as usize).max(1)) as f64;
            probes as f64 * rows / lists / s
        }
    };
    exact <= index
}

/// The index of `column` that orders by `distance`, if it is built.
fn usable_index(indexes: &[IndexDef], column: &str, distance: Distance) -> Option<IndexDef> {
    let metric = match distance {
        Distance::L2 => Metric::L2,
        Distance::Cosine => Metric::Cosine,
        Distance::NegativeInnerProduct => Metric::InnerProduct,
        Distance::InnerProduct | Distance::L1 => return None,
    };
    indexes.iter().find(|d| d.built && d.column == column && d.metric == metric).cloned()
}

/// Rows sampled per base version to estimate how many rows a filter keeps.
const SAMPLE_ROWS: usize = 2_048;

/// Samples of base versions (every column but vectors).
static SAMPLES: PerBase<RecordBatch> = PerBase::new(16);

/// The fraction of the base's rows that pass `predicate`, from an evenly spread
/// sample of the base (cached per version). Never zero: a filter that no sampled row
/// passes may still keep a few.
async fn estimate_selectivity(
    table_id: u64,
    ds: &Dataset,
    schema: &SchemaRef,
    predicate: &Arc<dyn PhysicalExpr>,
) -> DfResult<f64> {
    let key = (table_id, ds.version().version);
    let sample = match SAMPLES.get(&key) {
        Some(sample) => sample,
        None => {
            let sample = take_sample(ds, schema).await?;
            SAMPLES.put(key, sample.clone());
            sample
        }
    };
    if sample.num_rows() == 0 {
        return Ok(1.0);
    }
    let passed = predicate.evaluate(&sample)?.into_array(sample.num_rows())?;
    let passed = passed.as_boolean();
    let kept = passed.true_count() as f64;
    Ok((kept.max(0.5)) / sample.num_rows() as f64)
}

/// Up to [`SAMPLE_ROWS`] rows spread evenly over the base, the vector and blob columns
/// read as NULL (a kNN's filters never need the vectors: Lance cannot filter on them;
/// blobs are not worth reading for an estimate).
async fn take_sample(ds: &Dataset, schema: &SchemaRef) -> DfResult<RecordBatch> {
    let rows = ds.count_rows(None).await.map_err(lance_error)? as u64;
    let step = (rows / SAMPLE_ROWS as u64).max(1);
    let offsets: Vec<u64> = (0..rows).step_by(step as usize).take(SAMPLE_ROWS).collect();
    let scalar: Vec<&str> = schema
        .fields()
        .iter()
        .filter(|f| crate::search::vector::vector_dims(f.data_type()).is_none())
        .filter(|f| !blob::is_blob(ds.schema(), f.name()))
        .map(|f| f.name().as_str())
        .collect();
    let taken = if offsets.is_empty() || scalar.is_empty() {
        RecordBatch::new_empty(Arc::new(arrow::datatypes::Schema::empty()))
    } else {
        let projection = ds.schema().project(&scalar).map_err(lance_error)?;
        ds.take(&offsets, projection).await.map_err(lance_error)?
    };
    // Lay the sample out in the table's schema (vector columns NULL).
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match taken.column_by_name(f.name()) {
            Some(c) => arrow::compute::cast(c, f.data_type()).map_err(DataFusionError::from),
            None => Ok(arrow::array::new_null_array(f.data_type(), taken.num_rows())),
        })
        .collect::<DfResult<_>>()?;
    Ok(RecordBatch::try_new_with_options(
        crate::catalog::provider::nullable_schema(schema),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(taken.num_rows())),
    )?)
}

fn lance_error(e: lance::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Everything a kNN search needs at run time.
#[derive(Debug, Clone)]
struct KnnSearch {
    table: Arc<dyn TableProvider>,
    mode: Mode,
    /// The sampled fraction of rows passing the filters, when there are filters and
    /// the choice needed it.
    selectivity: Option<f64>,
    distance: Distance,
    column: usize,
    query: Vec<f32>,
    k: usize,
    /// The filters, unqualified (for Lance), and as a physical expression over the
    /// table's schema (for change rows).
    filter: Option<Expr>,
    physical_filter: Option<Arc<dyn PhysicalExpr>>,
    /// Rows in the base's files, the deleted ones included.
    base_rows: u64,
    /// Table columns read: `output` first, then what the vector and filters need.
    read: Vec<usize>,
    output: Vec<usize>,
    output_schema: SchemaRef,
}

impl KnnSearch {
    fn tarn(&self) -> &TarnTable {
        self.table.downcast_ref::<TarnTable>().expect("checked when planned")
    }

    /// Where the vector column is among the columns read.
    fn vector_position(&self) -> usize {
        self.read.iter().position(|&c| c == self.column).expect("the vector column is read")
    }

    /// The k nearest rows, nearest first, in the output schema.
    async fn search(self) -> DfResult<RecordBatch> {
        let table = self.tarn();
        let snapshot = table.snapshot().clone();
        let BaseSnapshot::Lance(ds) = &snapshot.base else {
            return Err(DataFusionError::Internal("kNN over a base that is not Lance".into()));
        };
        let schema = table.schema();
        let read_schema = Arc::new(schema.project(&self.read)?);

        let started = std::time::Instant::now();
        // Change rows: every live row of the change store, searched exactly.
        let mut deleted = RoaringTreemap::new();
        let mut candidates: Vec<RecordBatch> = Vec::new();
        if let Some(epoch) = &snapshot.changes {
            deleted = epoch.base_keys.deleted.as_ref().clone();
            for bucket in 0..epoch.bucket_count() {
                let view =
                    epoch.view(bucket, snapshot.seq).map_err(|e| DataFusionError::External(Box::new(e)))?;
                deleted |= &view.deleted;
                let Some(rows) = &view.rows else { continue };
                let rows = RecordBatch::try_new(schema.clone(), rows.columns().to_vec())?;
                let rows = match &self.physical_filter {
                    Some(predicate) => {
                        let keep = predicate.evaluate(&rows)?.into_array(rows.num_rows())?;
                        arrow::compute::filter_record_batch(&rows, keep.as_boolean())?
                    }
                    None => rows,
                };
                candidates.push(rows.project(&self.read)?);
            }
        }
        let from_changes: usize = candidates.iter().map(|b| b.num_rows()).sum();

        // Base rows: the index (or an exact scan), the deletion vector as a block list.
        let changes_done = started.elapsed();
        let held = base_cache::base_rows(snapshot.manifest.table_id, ds, &schema).await?;
        let held = held.as_deref();
        let mut base = self.search_base(ds, held, &read_schema, &deleted, false).await?;
        let mut searched_again = false;
        if base.num_rows() < self.k && matches!(self.mode, Mode::Index { .. }) {
            // The index found fewer than k: search exactly (a short result means few
            // rows qualify, which an exact search finds cheaply).
            base = self.search_base(ds, held, &read_schema, &deleted, true).await?;
            searched_again = true;
        }
        tracing::debug!(
            mode = ?self.mode, from_changes, from_base = base.num_rows(), searched_again,
            changes_us = changes_done.as_micros() as u64, total_us = started.elapsed().as_micros() as u64,
            "kNN search"
        );
        candidates.push(base);
        let all = concat_batches(&read_schema, &candidates)?;
        let nearest = self.nearest(&all)?;
        let output: Vec<usize> = (0..self.output.len()).collect();
        let projected = nearest.project(&output)?;
        Ok(RecordBatch::try_new_with_options(
            self.output_schema.clone(),
            projected.columns().to_vec(),
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(projected.num_rows())),
        )?)
    }

    /// The nearest `k` base rows passing the filters, not in `deleted`, in
    /// `read_schema`: through the index, or (`exact`) by comparing every such row.
    async fn search_base(
        &self,
        ds: &Arc<Dataset>,
        held: Option<&BaseRows>,
        read_schema: &SchemaRef,
        deleted: &RoaringTreemap,
        exact: bool,
    ) -> DfResult<RecordBatch> {
        let index = match &self.mode {
            Mode::Index { def, ef, probes } if !exact => (def, ef, probes),
            _ => {
                return match held {
                    Some(held) => self.exact_in_memory(held, deleted),
                    None => self.exact_scan(ds, read_schema, deleted).await,
                }
            }
        };
        let (def, ef, probes) = index;
        // Base rows the deletion vector masks are dropped after the search, not
        // inside it (a mask lookup per visited node costs more than the search): the
        // index is asked for as many more rows as the masked share of the base
        // suggests, and again for twice as many while too few survive.
        let masked = (deleted.len() as f64 / self.base_rows.max(1) as f64).min(0.9);
        let mut fetch = ((self.k as f64 / (1.0 - masked)).ceil() as usize
            + if deleted.is_empty() { 0 } else { 4 })
        .max(self.k);
        loop {
            let (rows, found) = match held {
                // Only the addresses from Lance; the rows from memory.
                Some(held) => {
                    let addresses = match self.search_graph(ds, def, *ef, fetch).await? {
                        Some(addresses) => addresses,
                        None => {
                            let empty = Arc::new(arrow::datatypes::Schema::empty());
                            let found = self.search_index(ds, &empty, def, *ef, *probes, fetch, true).await?;
                            found.column(0).as_primitive::<arrow::datatypes::UInt64Type>().values().to_vec()
                        }
                    };
                    let found = addresses.len();
                    let kept = addresses.into_iter().filter(|a| !deleted.contains(*a));
                    (held.take(kept)?.project(&self.read)?, found)
                }
                None => {
                    let rows = self
                        .search_index(ds, read_schema, def, *ef, *probes, fetch, !deleted.is_empty())
                        .await?;
                    let found = rows.num_rows();
                    (drop_deleted(rows, deleted, read_schema)?, found)
                }
            };
            if rows.num_rows() >= self.k || found < fetch || fetch >= 4096 {
                return Ok(rows);
            }
            fetch *= 2;
        }
    }

    /// The row addresses of the nearest `fetch` rows by an HNSW index, asked of Lance's
    /// index directly: one graph search per index segment, on this thread, without the
    /// scan plan Lance builds around a search or a hop to its CPU pool (most of a
    /// query's time otherwise). `None` where that does not apply (a filter, another
    /// method, a segment of several partitions, rows no segment covers yet): the
    /// caller goes through the scanner.
    async fn search_graph(
        &self,
        ds: &Arc<Dataset>,
        def: &IndexDef,
        ef: usize,
        fetch: usize,
    ) -> DfResult<Option<Vec<u64>>> {
        use lance_index::metrics::NoOpMetricsCollector;
        use lance_index::vector::Query;
        if self.filter.is_some() || def.method != IndexMethod::Hnsw {
            return Ok(None);
        }
        let column = self.tarn().schema().field(self.column).name().clone();
        let table_id = self.tarn().snapshot().manifest.table_id;
        let Some(segments) = graph_segments(table_id, ds, &def.name, &column).await? else { return Ok(None) };
        let mut key = self.query.clone();
        if def.metric == Metric::Cosine {
            // As Lance's own search does for a cosine index.
            let norm = key.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                key.iter_mut().for_each(|v| *v /= norm);
            }
        }
        let query = Query {
            column,
            key: Arc::new(Float32Array::from(key)),
            k: fetch,
            lower_bound: None,
            upper_bound: None,
            minimum_nprobes: 1,
            maximum_nprobes: Some(1),
            search_effort: 0.5,
            ef: Some(ef.max(fetch)),
            refine_factor: None,
            metric_type: Some(def.metric.distance_type()),
            use_index: true,
            query_parallelism: 0,
            dist_q_c: 0.0,
            approx_mode: Default::default(),
        };
        let mut addresses = Vec::with_capacity(fetch * segments.len());
        for index in segments.iter() {
            let no_filter = Arc::new(lance_index::prefilter::NoFilter);
            let found = if index.supports_prepared_partition_search() {
                let prepared = index
                    .prepare_partition_search(0, &query, no_filter, &NoOpMetricsCollector)
                    .await
                    .map_err(lance_error)?;
                index.search_prepared_partition(prepared, &NoOpMetricsCollector).map_err(lance_error)?
            } else {
                index
                    .search_in_partition(0, &query, no_filter, &NoOpMetricsCollector)
                    .await
                    .map_err(lance_error)?
            };
            let Some(ids) = found.column_by_name("_rowid") else { return Ok(None) };
            addresses.extend_from_slice(ids.as_primitive::<arrow::datatypes::UInt64Type>().values());
        }
        Ok(Some(addresses))
    }

    /// One search of the index for the nearest `fetch` rows passing the filters, in
    /// `read_schema`, with the row address last when `with_address`.
    #[allow(clippy::too_many_arguments)]
    async fn search_index(
        &self,
        ds: &Arc<Dataset>,
        read_schema: &SchemaRef,
        def: &IndexDef,
        ef: usize,
        probes: usize,
        fetch: usize,
        with_address: bool,
    ) -> DfResult<RecordBatch> {
        let names: Vec<&str> = read_schema.fields().iter().map(|f| f.name().as_str()).collect();
        let column = self.tarn().schema().field(self.column).name().clone();
        let mut scanner = ds.scan();
        blob::read_binary(&mut scanner).project(&names).map_err(lance_error)?;
        scanner.disable_scoring_autoprojection();
        if with_address {
            scanner.with_row_address();
        }
        if let Some(filter) = &self.filter {
            scanner.filter_expr(filter.clone());
            scanner.prefilter(true);
        }
        let query = Float32Array::from(self.query.clone());
        scanner.nearest(&column, &query, fetch).map_err(lance_error)?;
        scanner.distance_metric(def.metric.distance_type());
        match def.method {
            IndexMethod::Hnsw => scanner.ef(ef.max(fetch)),
            IndexMethod::IvfFlat => scanner.nprobes(probes),
            IndexMethod::IvfPq => scanner.nprobes(probes).refine(4),
        };
        let batches: Vec<RecordBatch> =
            scanner.try_into_stream().await.map_err(lance_error)?.try_collect().await.map_err(lance_error)?;
        let schema = if with_address { with_row_address(read_schema) } else { read_schema.clone() };
        let batches = batches.iter().map(|b| in_schema(b, &schema)).collect::<DfResult<Vec<_>>>()?;
        Ok(concat_batches(&schema, &batches)?)
    }

    /// Compares the query with every base row that passes the filters (Lance reads the
    /// filter columns first and the vectors of the rows that pass) and is not deleted.
    async fn exact_scan(
        &self,
        ds: &Arc<Dataset>,
        read_schema: &SchemaRef,
        deleted: &RoaringTreemap,
    ) -> DfResult<RecordBatch> {
        let names: Vec<&str> = read_schema.fields().iter().map(|f| f.name().as_str()).collect();
        let mut scanner = ds.scan();
        blob::read_binary(&mut scanner).project(&names).map_err(lance_error)?;
        scanner.with_row_address();
        if let Some(filter) = &self.filter {
            scanner.filter_expr(filter.clone());
            // Reading the vectors of the rows that pass one by one (Lance's default
            // for wide columns) costs a read per row; past a few rows in a thousand,
            // reading them all in order is cheaper.
            if self.selectivity.is_none_or(|s| s > 0.002) {
                scanner.materialization_style(MaterializationStyle::AllEarly);
            }
        }
        let mut stream = scanner.try_into_stream().await.map_err(lance_error)?;
        let mut best: Vec<RecordBatch> = Vec::new();
        let with_address = with_row_address(read_schema);
        while let Some(batch) = stream.try_next().await.map_err(lance_error)? {
            let rows = drop_deleted(in_schema(&batch, &with_address)?, deleted, read_schema)?;
            best.push(self.nearest(&rows)?);
        }
        let all = concat_batches(read_schema, &best)?;
        self.nearest(&all)
    }

    /// [`Self::exact_scan`] over a base held in memory: the filters over every row, the
    /// distance for those that pass, the deletion vector for those that would enter the
    /// top k.
    fn exact_in_memory(&self, held: &BaseRows, deleted: &RoaringTreemap) -> DfResult<RecordBatch> {
        let rows = &held.rows;
        let passing = match &self.physical_filter {
            Some(predicate) => Some(predicate.evaluate(rows)?.into_array(rows.num_rows())?),
            None => None,
        };
        let vectors = rows.column(self.column).as_fixed_size_list();
        let is_live = |i: usize| !deleted.contains(held.addresses[i]);
        let nearest = match &passing {
            // Only the rows that pass (NULL is not a pass).
            Some(passing) => {
                let passing = passing.as_boolean();
                let set = match passing.nulls() {
                    Some(nulls) => passing.values() & nulls.inner(),
                    None => passing.values().clone(),
                };
                self.top_k(vectors, set.set_indices(), is_live)
            }
            None => self.top_k(vectors, 0..rows.num_rows(), is_live),
        };
        Ok(take_record_batch(rows, &nearest)?.project(&self.read)?)
    }

    /// The `k` rows of `batch` (in the read schema) nearest to the query, nearest first.
    fn nearest(&self, batch: &RecordBatch) -> DfResult<RecordBatch> {
        let vectors = batch.column(self.vector_position()).as_fixed_size_list();
        let nearest = self.top_k(vectors, 0..batch.num_rows(), |_| true);
        Ok(take_record_batch(batch, &nearest)?)
    }

    /// The positions of the `k` vectors among `candidates` nearest to the query, nearest
    /// first; `keep` (asked only of those that would enter the top k) can drop one.
    /// NULL vectors and NaN distances (a zero vector under cosine) are left out.
    fn top_k(
        &self,
        vectors: &arrow::array::FixedSizeListArray,
        candidates: impl Iterator<Item = usize>,
        keep: impl Fn(usize) -> bool,
    ) -> UInt32Array {
        let dims = vectors.value_length() as usize;
        let all = values(vectors);
        // A max-heap of the best k so far, by distance.
        let mut best: std::collections::BinaryHeap<Scored> =
            std::collections::BinaryHeap::with_capacity(self.k + 1);
        for i in candidates {
            if vectors.is_null(i) {
                continue;
            }
            let distance = self.distance.eval(row(all, dims, i), &self.query);
            let beaten = best.len() == self.k && distance >= best.peek().expect("k > 0").0;
            if distance.is_nan() || beaten || !keep(i) {
                continue;
            }
            best.push(Scored(distance, i as u32));
            if best.len() > self.k {
                best.pop();
            }
        }
        best.into_sorted_vec().into_iter().map(|s| s.1).collect()
    }
}

/// A distance and a row, ordered by distance.
struct Scored(f64, u32);

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// `read_schema` with Lance's row address column last.
fn with_row_address(read_schema: &SchemaRef) -> SchemaRef {
    let address = Arc::new(arrow::datatypes::Field::new(ROW_ADDR, arrow::datatypes::DataType::UInt64, true));
    Arc::new(arrow::datatypes::Schema::new(
        read_schema.fields().iter().cloned().chain([address]).collect::<Vec<_>>(),
    ))
}

/// `rows` (in the read schema, maybe with the row address last) without the rows in
/// `deleted`, in the read schema.
fn drop_deleted(
    rows: RecordBatch,
    deleted: &RoaringTreemap,
    read_schema: &SchemaRef,
) -> DfResult<RecordBatch> {
    let width = read_schema.fields().len();
    let kept = if rows.num_columns() > width && !deleted.is_empty() {
        let addresses = rows.column(width).as_primitive::<arrow::datatypes::UInt64Type>();
        let keep: arrow::array::BooleanArray =
            addresses.values().iter().map(|a| Some(!deleted.contains(*a))).collect();
        arrow::compute::filter_record_batch(&rows, &keep)?
    } else {
        rows
    };
    Ok(kept.project(&(0..width).collect::<Vec<_>>())?)
}

/// `batch` (Lance's output: the read columns, maybe more) in the read schema.
fn in_schema(batch: &RecordBatch, read_schema: &SchemaRef) -> DfResult<RecordBatch> {
    // Blobs come back as `LargeBinary`: cast to the table's `Binary`.
    let columns: Vec<ArrayRef> = read_schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => Ok(arrow::compute::cast(c, f.data_type())?),
            None => Err(DataFusionError::Internal("kNN: a column is missing from Lance's result".into())),
        })
        .collect::<DfResult<_>>()?;
    Ok(RecordBatch::try_new_with_options(
        read_schema.clone(),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

impl Search for KnnSearch {
    const NAME: &'static str = "TarnKnnExec";

    fn schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    fn describe(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mode = match (&self.mode, &self.filter) {
            (Mode::Index { .. }, None) => "index",
            (Mode::Index { .. }, Some(_)) => "index+prefilter",
            (Mode::Exact, _) => "exact",
        };
        write!(f, "mode={mode}, order={}, k={}", self.distance.function_name(), self.k)?;
        if let Mode::Index { def, ef, probes } = &self.mode {
            write!(f, ", index={} ({}, {})", def.name, def.method.name(), def.method.lance_type())?;
            match def.method {
                IndexMethod::Hnsw => write!(f, ", ef_search={ef}")?,
                IndexMethod::IvfFlat | IndexMethod::IvfPq => write!(f, ", probes={probes}")?,
            }
        }
        if let Some(filter) = &self.filter {
            write!(f, ", filter={filter}")?;
        }
        if let Some(selectivity) = self.selectivity {
            write!(f, ", estimated_selectivity={selectivity:.4}")?;
        }
        Ok(())
    }

    fn run(self) -> impl std::future::Future<Output = DfResult<RecordBatch>> + Send {
        self.search()
    }
}

/// DataFusion's physical planner with the kNN and BM25 nodes.
#[derive(Debug, Default)]
pub struct TarnQueryPlanner;

#[async_trait]
impl QueryPlanner for TarnQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &SessionState,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let planner = DefaultPhysicalPlanner::with_extension_planners(search_planners());
        let plan = planner.create_physical_plan(logical_plan, session_state).await?;
        if matches!(logical_plan, LogicalPlan::Analyze(_)) {
            crate::catalog::skipping::analyzing(&plan);
        }
        Ok(plan)
    }
}

/// The planners of the search nodes (kNN, BM25).
pub(crate) fn search_planners() -> Vec<Arc<dyn ExtensionPlanner + Send + Sync>> {
    vec![Arc::new(KnnPlanner), Arc::new(crate::search::text_search::Bm25Planner)]
}
