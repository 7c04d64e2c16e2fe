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
//!   metrics=[fragments_read=3, fragments_skipped=7, rows_read=81920, rows_skipped=9918080, bytes_read=1.2 MB]
//! ```
//!
//! Rows read are those the first read stage decoded (Lance reads the filter columns
//! of the ranges the indexes left, then the other columns of the matching rows only).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::metrics::{Count, MetricBuilder, MetricValue, MetricsSet};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use tarn_storage::scalar_index::ScalarIndexDef;

/// What a Lance base holds, for the report.
#[derive(Debug, Clone)]
pub struct BaseShape {
    pub table: String,
    pub fragments: u64,
    /// Rows in the base's fragments (rows the deletion vector hides included: they are read).
    pub rows: u64,
    /// The declared scalar indexes over a column the scan's filters read.
    pub indexes: Vec<String>,
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
            .map(|d| format!("{} {}({})", d.name, d.kind.method(), d.columns.join(", ")))
            .collect();
        BaseShape { table, fragments: fragments.len() as u64, rows, indexes }
    }
}

#[derive(Debug)]
pub struct BaseScanExec {
    input: Arc<dyn ExecutionPlan>,
    shape: BaseShape,
}

impl BaseScanExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, shape: BaseShape) -> Self {
        BaseScanExec { input, shape }
    }
}

impl DisplayAs for BaseScanExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let BaseShape { table, fragments, rows, indexes } = &self.shape;
        write!(f, "TarnBaseScan: table={table}, fragments={fragments}, rows={rows}")?;
        if !indexes.is_empty() {
            write!(f, ", indexes=[{}]", indexes.join(", "))?;
        }
        Ok(())
    }
}

/// The largest value of metric `name` over the nodes of `plan`, and its sum.
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
        Ok(Arc::new(BaseScanExec::new(children.remove(0), self.shape.clone())))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    /// Computed from the read nodes below, once they ran.
    fn metrics(&self) -> Option<MetricsSet> {
        let (mut fragments, mut rows, mut bytes, mut unused) = (0, 0, 0, 0);
        metric(self.input.as_ref(), "fragments_scanned", &mut fragments, &mut unused);
        metric(self.input.as_ref(), "rows_scanned", &mut rows, &mut unused);
        metric(self.input.as_ref(), "bytes_read", &mut unused, &mut bytes);
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
