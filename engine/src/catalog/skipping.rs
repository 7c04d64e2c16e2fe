//! [`BaseScanExec`]: the scan of a Lance base as `EXPLAIN` shows it, with what data
//! skipping saved.
//!
//! It passes its input (Lance's scan) through unchanged. `EXPLAIN` shows the base's
//! fragments and rows and the scalar indexes the scan's filters can use; `EXPLAIN
//! ANALYZE` adds, from the metrics of Lance's read nodes below it, the fragments and
//! rows read and skipped, and the bytes read:
//!
//! ```text
//! TarnBaseScan: table=events, fragments=10, rows=10000000, indexes=[events_user_bloom bloom(user_id)],
//!   rows_skipped_by_index=[events_user_bloom=9918080],
//!   metrics=[fragments_read=3, fragments_skipped=7, rows_read=81920, rows_skipped=9918080, bytes_read=1.2 MB]
//! ```
//!
//! Rows read are those the first read stage decoded (Lance reads the filter columns
//! of the ranges the indexes left, then the other columns of the matching rows only).
//! Lance reports only what its indexes skip together; under `EXPLAIN ANALYZE` each
//! index's own figure is measured after the scan with a scan of no column under that
//! index's filters alone ([`skipped_by_index`]).
//!
//! It also takes the dynamic filters DataFusion pushes down at run time (a hash join's
//! bounds and key list from its build side, a TopK's current cut-off): when its stream
//! starts, the part of their current value Lance's scanner can use (comparisons and IN
//! lists of a column with constants) is added to the scan's filters and the scan is
//! planned again, so a join with a selective build side reads only the fragments and
//! zones its keys can be in, through the same scalar indexes as a written filter.
//! `EXPLAIN ANALYZE` shows the filter that was added (`runtime_filter=...`).
//! [`NullMatchingJoins`], a physical optimizer rule, marks the scans under a join whose
//! NULL keys match, whose run-time filters must then let NULLs through.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::NullEquality;
use datafusion::common::{ScalarValue, Statistics};
use datafusion::error::Result as DfResult;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, Operator};
use datafusion::physical_expr::expressions::{BinaryExpr, CaseExpr, Column, InListExpr, Literal};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_common::physical_expr::{is_dynamic_physical_expr, snapshot_physical_expr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::metrics::{Count, MetricBuilder, MetricValue, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use tarn_storage::scalar_index::ScalarIndexDef;

/// What a Lance base holds, for the report.
#[derive(Debug, Clone)]
pub struct BaseShape {
    pub table: String,
    pub fragments: u64,
    /// Rows in the base's fragments (rows the deletion vector hides included: they are read).
    pub rows: u64,
    /// The declared scalar indexes over a column the scan's filters read.
    pub indexes: Vec<IndexShape>,
}

/// A scalar index as a scan's report names it.
#[derive(Debug, Clone)]
pub struct IndexShape {
    pub name: String,
    pub columns: Vec<String>,
    /// `name method(columns)`.
    pub label: String,
}

impl BaseShape {
    /// The shape of `ds`, and the indexes of `defs` over `filtered` columns.
    pub fn of(
        table: String,
        ds: &lance::Dataset,
        defs: &[ScalarIndexDef],
        filtered: &HashSet<String>,
    ) -> Self {
        let fragments = ds.get_fragments();
        let rows = fragments.iter().map(|f| f.metadata().physical_rows.unwrap_or(0) as u64).sum();
        let indexes = defs
            .iter()
            .filter(|d| d.built && d.columns.iter().any(|c| filtered.contains(c)))
            .map(|d| IndexShape {
                name: d.name.clone(),
                columns: d.columns.clone(),
                label: format!("{} {}({})", d.name, d.kind.method(), d.columns.join(", ")),
            })
            .collect();
        BaseShape { table, fragments: fragments.len() as u64, rows, indexes }
    }
}

/// The scan as it was asked for, to plan it again with more filters.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    pub ds: Arc<lance::Dataset>,
    /// Each row's address last (the base side of a merge).
    pub with_address: bool,
    pub projection: Option<Vec<usize>>,
    pub filters: Vec<Expr>,
    pub limit: Option<usize>,
}

impl ScanRequest {
    /// Lance's scan as asked for, with `filters` (the request's, or more).
    pub async fn plan(
        &self,
        state: &dyn datafusion::catalog::Session,
        filters: &[Expr],
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        crate::catalog::provider::lance_scan(
            &self.ds,
            self.with_address,
            state,
            self.projection.as_ref(),
            filters,
            self.limit,
        )
        .await
    }
}

#[derive(Debug)]
pub struct BaseScanExec {
    input: Arc<dyn ExecutionPlan>,
    shape: BaseShape,
    request: ScanRequest,
    /// Filters DataFusion pushed down to fill in at run time (see the module's doc).
    dynamic: Vec<Arc<dyn PhysicalExpr>>,
    /// Under a join whose NULL keys match ([`NullMatchingJoins`]): rows with a NULL in
    /// a dynamic filter's columns are read whatever the filter says.
    keep_nulls: bool,
    /// The scans planned again at run time, for the metrics, and the filter each added.
    runs: Arc<Mutex<Vec<(Arc<dyn ExecutionPlan>, String)>>>,
    /// Set under `EXPLAIN ANALYZE` ([`analyzing`]): the scan then also measures, once
    /// it is done, what each index's part of the filters alone lets it skip.
    analyze: Arc<AtomicBool>,
    by_index: Arc<Mutex<Vec<(String, u64)>>>,
}

impl BaseScanExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, shape: BaseShape, request: ScanRequest) -> Self {
        BaseScanExec {
            input,
            shape,
            request,
            dynamic: Vec::new(),
            keep_nulls: false,
            runs: Arc::default(),
            analyze: Arc::default(),
            by_index: Arc::default(),
        }
    }

    /// This scan over `input` with these dynamic filters, its run-time state afresh.
    fn rebuilt(
        &self,
        input: Arc<dyn ExecutionPlan>,
        dynamic: Vec<Arc<dyn PhysicalExpr>>,
        keep_nulls: bool,
    ) -> Self {
        BaseScanExec { dynamic, keep_nulls, ..Self::new(input, self.shape.clone(), self.request.clone()) }
    }
}

/// Marks the base scans under the probe side of a hash join whose NULL keys match
/// (`INTERSECT`, `EXCEPT`, `IS NOT DISTINCT FROM`): the bounds and key list DataFusion
/// passes down from its build side are comparisons no NULL passes, but that join keeps
/// NULL keys. Other scans skip NULL keys with them (a NULL key matches nothing there),
/// which a Bloom filter, having no NULL entries, needs to skip at all.
#[derive(Debug)]
pub struct NullMatchingJoins;

impl PhysicalOptimizerRule for NullMatchingJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        mark_null_matching(plan, false)
    }

    fn name(&self) -> &str {
        "tarn_null_matching_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn mark_null_matching(plan: Arc<dyn ExecutionPlan>, below: bool) -> DfResult<Arc<dyn ExecutionPlan>> {
    if let Some(scan) = plan.downcast_ref::<BaseScanExec>() {
        if below && !scan.dynamic.is_empty() && !scan.keep_nulls {
            return Ok(Arc::new(scan.rebuilt(scan.input.clone(), scan.dynamic.clone(), true)));
        }
        return Ok(plan);
    }
    let nulls_match = plan
        .downcast_ref::<HashJoinExec>()
        .is_some_and(|j| j.null_equality() == NullEquality::NullEqualsNull);
    let children: Vec<Arc<dyn ExecutionPlan>> = plan.children().into_iter().cloned().collect();
    let mut changed = false;
    let mut marked = Vec::with_capacity(children.len());
    for (i, child) in children.into_iter().enumerate() {
        // A hash join's probe side is its second child.
        let new = mark_null_matching(child.clone(), below || (nulls_match && i == 1))?;
        changed |= !Arc::ptr_eq(&new, &child);
        marked.push(new);
    }
    if changed {
        plan.with_new_children(marked)
    } else {
        Ok(plan)
    }
}

impl DisplayAs for BaseScanExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let BaseShape { table, fragments, rows, indexes } = &self.shape;
        write!(f, "TarnBaseScan: table={table}, fragments={fragments}, rows={rows}")?;
        if !indexes.is_empty() {
            let labels: Vec<&str> = indexes.iter().map(|i| i.label.as_str()).collect();
            write!(f, ", indexes=[{}]", labels.join(", "))?;
        }
        if !self.dynamic.is_empty() {
            write!(f, ", dynamic_filters={}", self.dynamic.len())?;
            if self.keep_nulls {
                write!(f, " (NULLs kept)")?;
            }
        }
        let runs = self.runs.lock().expect("runs lock");
        if let Some((_, filter)) = runs.first() {
            write!(f, ", runtime_filter=[{}]", shorten(filter, 200))?;
        }
        let by_index = self.by_index.lock().expect("by_index lock");
        if !by_index.is_empty() {
            let figures: Vec<String> = by_index.iter().map(|(name, rows)| format!("{name}={rows}")).collect();
            write!(f, ", rows_skipped_by_index=[{}]", figures.join(", "))?;
        }
        Ok(())
    }
}

/// `text` cut to about `max` characters, on a character boundary.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// The part of `expr` (a dynamic filter's current value over the scan's output
/// columns) that Lance's scanner can use, as a filter over the table's columns:
/// comparisons and IN lists of a column with constants. Parts under AND it cannot use
/// are left out (a weaker filter skips less and stays right); an OR, or a hash join's
/// CASE over its partitions, is used only when every branch is.
fn lance_filter(expr: &Arc<dyn PhysicalExpr>) -> Option<Expr> {
    let any = expr.as_ref();
    if let Some(literal) = any.downcast_ref::<Literal>() {
        return match literal.value() {
            ScalarValue::Boolean(Some(false)) => Some(Expr::Literal(ScalarValue::Boolean(Some(false)), None)),
            _ => None,
        };
    }
    if let Some(binary) = any.downcast_ref::<BinaryExpr>() {
        let op = *binary.op();
        match op {
            Operator::And => {
                return match (lance_filter(binary.left()), lance_filter(binary.right())) {
                    (Some(l), Some(r)) => Some(both(l, r)),
                    (one, None) | (None, one) => one,
                }
            }
            Operator::Or => {
                return Some(either(vec![lance_filter(binary.left())?, lance_filter(binary.right())?]))
            }
            _ => {}
        }
        let (column, value, op) = match (column_of(binary.left()), literal_of(binary.right())) {
            (Some(c), Some(v)) => (c, v, op),
            _ => (column_of(binary.right())?, literal_of(binary.left())?, op.swap()?),
        };
        return match op {
            Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq => Some(Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
                Box::new(column),
                op,
                Box::new(Expr::Literal(value, None)),
            ))),
            _ => None,
        };
    }
    if let Some(list) = any.downcast_ref::<InListExpr>() {
        if list.negated() {
            return None;
        }
        let values: Option<Vec<Expr>> =
            list.list().iter().map(|e| literal_of(e).map(|v| Expr::Literal(v, None))).collect();
        return Some(column_of(list.expr())?.in_list(values?, false));
    }
    if let Some(case) = any.downcast_ref::<CaseExpr>() {
        // A partitioned hash join's filter: `CASE hash % n WHEN 0 THEN ... ELSE false END`.
        let otherwise_false = case.else_expr().is_none_or(|e| {
            e.downcast_ref::<Literal>().is_some_and(|l| l.value() == &ScalarValue::Boolean(Some(false)))
        });
        if !otherwise_false {
            return None;
        }
        let branches: Vec<Expr> =
            case.when_then_expr().iter().map(|(_, then)| lance_filter(then)).collect::<Option<_>>()?;
        return (!branches.is_empty()).then(|| either(branches));
    }
    None
}

/// `filter`, or any of its columns NULL (for [`NullMatchingJoins`]).
fn or_nulls(filter: Expr) -> Expr {
    let mut columns: Vec<datafusion::common::Column> = filter.column_refs().into_iter().cloned().collect();
    columns.sort_by(|a, b| a.name.cmp(&b.name));
    columns.dedup();
    columns.into_iter().fold(filter, |f, c| f.or(Expr::Column(c).is_null()))
}

/// `l AND r`, where a hash join's key list makes its bounds (the list's own minimum
/// and maximum) redundant: the list alone, which a Bloom filter answers (it answers no
/// range, and Lance then leaves an `OR` of such branches to a full scan).
fn both(l: Expr, r: Expr) -> Expr {
    let ranges_of = |e: &Expr, column: &datafusion::common::Column| {
        let mut only_ranges = true;
        e.apply(|e| {
            match e {
                Expr::BinaryExpr(b) if b.op == Operator::And => {}
                Expr::BinaryExpr(b)
                    if matches!(b.op, Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq) =>
                {
                    only_ranges &= matches!(b.left.as_ref(), Expr::Column(c) if c == column);
                    return Ok(TreeNodeRecursion::Jump);
                }
                _ => only_ranges = false,
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .expect("infallible");
        only_ranges
    };
    match (&l, &r) {
        (bounds, Expr::InList(list)) | (Expr::InList(list), bounds) if matches!(list.expr.as_ref(), Expr::Column(c) if ranges_of(bounds, c)) => {
            Expr::InList(list.clone())
        }
        _ => l.and(r),
    }
}

/// `OR` of `branches`; key lists of one column (a partitioned join's, one per
/// partition) become one list.
fn either(branches: Vec<Expr>) -> Expr {
    let column = match branches.first() {
        Some(Expr::InList(list)) if !list.negated => list.expr.clone(),
        _ => return branches.into_iter().reduce(Expr::or).expect("a branch at least"),
    };
    let mut values = Vec::new();
    for branch in &branches {
        match branch {
            Expr::InList(list) if !list.negated && list.expr == column => {
                values.extend(list.list.iter().cloned())
            }
            _ => return branches.into_iter().reduce(Expr::or).expect("a branch at least"),
        }
    }
    column.in_list(values, false)
}

fn column_of(expr: &Arc<dyn PhysicalExpr>) -> Option<Expr> {
    let column = expr.downcast_ref::<Column>()?;
    Some(Expr::Column(datafusion::common::Column::new_unqualified(column.name())))
}

fn literal_of(expr: &Arc<dyn PhysicalExpr>) -> Option<ScalarValue> {
    let literal = expr.downcast_ref::<Literal>()?;
    (!literal.value().is_null()).then(|| literal.value().clone())
}

impl BaseScanExec {
    /// Partition `partition` of the scan, with what the dynamic filters let it skip.
    fn scan(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        if self.dynamic.is_empty() {
            return self.input.execute(partition, context);
        }
        let (input, request, runs) = (self.input.clone(), self.request.clone(), self.runs.clone());
        let (dynamic, keep_nulls) = (self.dynamic.clone(), self.keep_nulls);
        let partitions = input.output_partitioning().partition_count();
        // Started when first polled: a hash join polls its probe side once its build
        // side is in and the filter has its final value.
        let stream = futures::stream::once(async move {
            let mut added = Vec::new();
            for filter in dynamic {
                let filter = lance_filter(&snapshot_physical_expr(filter)?);
                added.extend(if keep_nulls { filter.map(or_nulls) } else { filter });
            }
            let Some(added) = added.into_iter().reduce(Expr::and) else {
                return input.execute(partition, context);
            };
            let mut filters = request.filters.clone();
            filters.push(added.clone());
            let state = session_of(&context);
            let planned = request.plan(&state, &filters).await;
            // A filter Lance's planner refuses (a type it does not compare) only costs
            // the saving: the scan runs as planned.
            let Ok(plan) = planned else {
                return input.execute(partition, context);
            };
            runs.lock().expect("runs lock").push((plan.clone(), added.to_string()));
            // This partition's share of the new scan's partitions (their number may differ).
            let streams = (partition..plan.output_partitioning().partition_count())
                .step_by(partitions)
                .map(|p| plan.execute(p, context.clone()))
                .collect::<DfResult<Vec<_>>>()?;
            let schema = input.schema();
            Ok(Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::iter(streams).flatten()))
                as SendableRecordBatchStream)
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.input.schema(), stream)))
    }
}

/// A session for planning a Lance scan at run time (its settings and memory pool).
fn session_of(context: &TaskContext) -> datafusion::execution::SessionState {
    SessionStateBuilder::new()
        .with_config(context.session_config().clone())
        .with_runtime_env(context.runtime_env())
        .build()
}

/// Marks the base scans of an `EXPLAIN ANALYZE`'s plan: each then reports the rows
/// each of its indexes would skip alone (see [`skipped_by_index`]).
pub fn analyzing(plan: &Arc<dyn ExecutionPlan>) {
    if let Some(scan) = plan.downcast_ref::<BaseScanExec>() {
        scan.analyze.store(true, Ordering::Relaxed);
    }
    for child in plan.children() {
        analyzing(child);
    }
}

/// For each index column the scan's filters read, the base rows Lance skips with only
/// the filters on that column: a scan of no column under them, its `rows_scanned`
/// against the base's rows. (Lance combines the indexes' answers into one set of row
/// ranges and reports only that; this measures each on its own, for `EXPLAIN ANALYZE`.)
async fn skipped_by_index(
    request: &ScanRequest,
    shape: &BaseShape,
    context: &Arc<TaskContext>,
) -> DfResult<Vec<(String, u64)>> {
    let state = session_of(context);
    let conjuncts: Vec<Expr> = request
        .filters
        .iter()
        .flat_map(|f| datafusion::logical_expr::utils::split_conjunction(f).into_iter().cloned())
        .collect();
    let mut figures = Vec::new();
    for index in &shape.indexes {
        for column in &index.columns {
            let own: Vec<Expr> = conjuncts
                .iter()
                .filter(|f| {
                    let refs = f.column_refs();
                    !refs.is_empty() && refs.iter().all(|c| &c.name == column)
                })
                .cloned()
                .collect();
            if own.is_empty() {
                continue;
            }
            let plan = crate::catalog::provider::lance_scan(
                &request.ds,
                false,
                &state,
                Some(&Vec::new()),
                &own,
                None,
            )
            .await?;
            for partition in 0..plan.output_partitioning().partition_count() {
                let mut stream = plan.execute(partition, context.clone())?;
                while stream.try_next().await?.is_some() {}
            }
            let (mut scanned, mut unused) = (0, 0);
            metric(plan.as_ref(), "rows_scanned", &mut scanned, &mut unused);
            let name = match index.columns.len() {
                1 => index.name.clone(),
                _ => format!("{}({column})", index.name),
            };
            figures.push((name, shape.rows.saturating_sub(scanned as u64)));
        }
    }
    Ok(figures)
}

/// The largest value of metric `name` over the nodes of `plan` (fragments and rows:
/// Lance's read nodes nest), and its sum (bytes).
fn metric(plan: &dyn ExecutionPlan, name: &str, max: &mut usize, sum: &mut usize) {
    if let Some(metrics) = plan.metrics() {
        let value = match metrics.sum_by_name(name) {
            Some(MetricValue::Count { count, .. }) => count.value(),
            Some(MetricValue::Gauge { gauge, .. }) => gauge.value(),
            _ => 0,
        };
        *max = (*max).max(value);
        *sum += value;
    }
    for child in plan.children() {
        metric(child.as_ref(), name, max, sum);
    }
}

impl ExecutionPlan for BaseScanExec {
    fn name(&self) -> &'static str {
        "TarnBaseScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// A pass-through: the plan above sees the scan's own partitions and order (no
    /// repartition is put between them for this node's sake).
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(self.rebuilt(children.remove(0), self.dynamic.clone(), self.keep_nulls)))
    }

    /// The base's rows (a bound: the filters and the deletion vector leave fewer), so
    /// a join builds its hash table on the smaller side.
    fn partition_statistics(&self, partition: Option<usize>) -> DfResult<Arc<Statistics>> {
        let mut statistics = Statistics::new_unknown(&self.schema());
        let share = match partition {
            Some(_) => self.input.output_partitioning().partition_count().max(1),
            None => 1,
        };
        statistics.num_rows = Precision::Inexact(self.shape.rows as usize / share);
        Ok(Arc::new(statistics))
    }

    /// Without the dynamic filters: their producers start afresh, and these would keep
    /// the values of the run before.
    fn reset_state(self: Arc<Self>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(self.rebuilt(self.input.clone(), Vec::new(), false)))
    }

    /// Parent filters stop here (Lance's nodes below take none); dynamic ones are kept
    /// for [`Self::execute`]. Every filter stays where it was above (`PushedDown::No`):
    /// what the scan skips with them is a saving, never a change to the answer.
    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> DfResult<FilterDescription> {
        Ok(FilterDescription::all_unsupported(&parent_filters, &self.children()))
    }

    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> DfResult<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        let dynamic: Vec<Arc<dyn PhysicalExpr>> = match phase {
            FilterPushdownPhase::Post => child_pushdown_result
                .parent_filters
                .iter()
                .map(|f| f.filter.clone())
                .filter(is_dynamic_physical_expr)
                .collect(),
            FilterPushdownPhase::Pre => Vec::new(),
        };
        let unsupported = vec![PushedDown::No; child_pushdown_result.parent_filters.len()];
        let propagation = FilterPushdownPropagation::with_parent_pushdown_result(unsupported);
        if dynamic.is_empty() {
            return Ok(propagation);
        }
        let mut all = self.dynamic.clone();
        all.extend(dynamic);
        Ok(propagation.with_updated_node(Arc::new(self.rebuilt(self.input.clone(), all, self.keep_nulls))))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let stream = self.scan(partition, context.clone())?;
        if partition != 0 || !self.analyze.load(Ordering::Relaxed) {
            return Ok(stream);
        }
        let (request, shape, by_index) = (self.request.clone(), self.shape.clone(), self.by_index.clone());
        let after = futures::stream::once(async move {
            // A figure it cannot get leaves the report without it, not the query failing.
            if let Ok(figures) = skipped_by_index(&request, &shape, &context).await {
                *by_index.lock().expect("by_index lock") = figures;
            }
            None
        })
        .filter_map(futures::future::ready);
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.input.schema(), stream.chain(after))))
    }

    /// Computed from the read nodes below (and the scans planned again), once they ran.
    fn metrics(&self) -> Option<MetricsSet> {
        let (mut fragments, mut rows, mut bytes) = (0, 0, 0);
        let runs = self.runs.lock().expect("runs lock");
        let plans = std::iter::once(&self.input).chain(runs.iter().map(|(plan, _)| plan));
        for plan in plans {
            let (mut plan_fragments, mut plan_rows, mut unused) = (0, 0, 0);
            metric(plan.as_ref(), "fragments_scanned", &mut plan_fragments, &mut unused);
            metric(plan.as_ref(), "rows_scanned", &mut plan_rows, &mut unused);
            metric(plan.as_ref(), "bytes_read", &mut unused, &mut bytes);
            fragments += plan_fragments;
            rows += plan_rows;
        }
        let metrics = datafusion::physical_plan::metrics::ExecutionPlanMetricsSet::new();
        let count = |name: &'static str, value: usize| {
            let c = Count::new();
            c.add(value);
            MetricBuilder::new(&metrics).build(MetricValue::Count { name: name.into(), count: c });
        };
        count("fragments_read", fragments);
        count("fragments_skipped", (self.shape.fragments as usize).saturating_sub(fragments));
        count("rows_read", rows);
        count("rows_skipped", (self.shape.rows as usize).saturating_sub(rows));
        count("bytes_read", bytes);
        Some(metrics.clone_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::{col, in_list, lit};

    fn schema() -> Schema {
        Schema::new(vec![Field::new("a", DataType::Int64, true), Field::new("b", DataType::Utf8, true)])
    }

    fn binary(l: Arc<dyn PhysicalExpr>, op: Operator, r: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(l, op, r))
    }

    fn shown(expr: &Arc<dyn PhysicalExpr>) -> Option<String> {
        lance_filter(expr).map(|e| e.to_string())
    }

    #[test]
    fn a_join_filter_becomes_lance_filters_it_can_take() {
        let s = schema();
        let a = col("a", &s).unwrap();
        let b = col("b", &s).unwrap();
        let bounds = binary(
            binary(a.clone(), Operator::GtEq, lit(3i64)),
            Operator::And,
            binary(lit(9i64), Operator::GtEq, a.clone()),
        );
        assert_eq!(shown(&bounds).unwrap(), "a >= Int64(3) AND a <= Int64(9)");
        let keys = in_list(a.clone(), vec![lit(3i64), lit(9i64)], &false, &s).unwrap();
        assert_eq!(shown(&keys).unwrap(), "a IN ([Int64(3), Int64(9)])");
        // What it cannot take under AND is left out; under OR it takes nothing.
        let opaque = binary(binary(a.clone(), Operator::Plus, lit(1i64)), Operator::Eq, lit(4i64));
        assert_eq!(
            shown(&binary(keys.clone(), Operator::And, opaque.clone())).unwrap(),
            "a IN ([Int64(3), Int64(9)])"
        );
        assert_eq!(shown(&binary(keys.clone(), Operator::Or, opaque.clone())), None);
        assert_eq!(shown(&in_list(a.clone(), vec![lit(3i64)], &true, &s).unwrap()), None);
        assert_eq!(shown(&lit(true)), None);
        assert_eq!(shown(&binary(b.clone(), Operator::Eq, lit("x"))).unwrap(), "b = Utf8(\"x\")");
        // A partitioned join's filter: every partition's branch, or nothing.
        let hash = binary(a.clone(), Operator::Modulo, lit(2i64));
        let case =
            |otherwise: Arc<dyn PhysicalExpr>, second: Arc<dyn PhysicalExpr>| -> Arc<dyn PhysicalExpr> {
                Arc::new(
                    CaseExpr::try_new(
                        Some(hash.clone()),
                        vec![(lit(0i64), bounds.clone()), (lit(1i64), second)],
                        Some(otherwise),
                    )
                    .unwrap(),
                )
            };
        assert_eq!(
            shown(&case(lit(false), keys.clone())).unwrap(),
            "a >= Int64(3) AND a <= Int64(9) OR a IN ([Int64(3), Int64(9)])"
        );
        assert_eq!(shown(&case(lit(true), keys.clone())), None);
        // A key list makes its bounds redundant; a partitioned join's lists are one.
        let bounded = |list: Vec<i64>| {
            let keys = in_list(a.clone(), list.into_iter().map(lit).collect(), &false, &s).unwrap();
            binary(bounds.clone(), Operator::And, keys)
        };
        assert_eq!(shown(&bounded(vec![3, 9])).unwrap(), "a IN ([Int64(3), Int64(9)])");
        let partitioned: Arc<dyn PhysicalExpr> = Arc::new(
            CaseExpr::try_new(
                Some(hash.clone()),
                vec![(lit(0i64), bounded(vec![4])), (lit(1i64), bounded(vec![3, 9]))],
                Some(lit(false)),
            )
            .unwrap(),
        );
        assert_eq!(shown(&partitioned).unwrap(), "a IN ([Int64(4), Int64(3), Int64(9)])");
        assert_eq!(
            or_nulls(lance_filter(&bounds).unwrap()).to_string(),
            "a >= Int64(3) AND a <= Int64(9) OR a IS NULL"
        );
        assert_eq!(shown(&case(lit(false), opaque)), None);
    }
}
