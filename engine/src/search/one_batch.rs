//! The physical form of a search node: a plan with no inputs that yields one batch, the
//! search's result (the kNN and BM25 nodes run this way).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};

/// A search that computes its whole result at once.
pub trait Search: fmt::Debug + Clone + Send + Sync + 'static {
    /// The plan node's name (`EXPLAIN` shows it before [`Search::describe`]'s text).
    const NAME: &'static str;

    fn schema(&self) -> SchemaRef;

    /// What `EXPLAIN` shows after the name and a colon.
    fn describe(&self, f: &mut fmt::Formatter) -> fmt::Result;

    fn run(self) -> impl Future<Output = DfResult<RecordBatch>> + Send;
}

/// Runs a [`Search`]: one partition, one batch.
#[derive(Debug)]
pub struct OneBatchExec<S> {
    search: S,
    properties: Arc<PlanProperties>,
}

impl<S: Search> OneBatchExec<S> {
    pub fn new(search: S) -> Self {
        let properties = properties(search.schema());
        Self { search, properties }
    }
}

/// What a search node's physical plan promises whatever it searches for: its columns,
/// one partition, no order, its result at the end.
pub fn properties(schema: SchemaRef) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(1),
        EmissionType::Final,
        Boundedness::Bounded,
    ))
}

impl<S: Search> DisplayAs for OneBatchExec<S> {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: ", S::NAME)?;
        self.search.describe(f)
    }
}

impl<S: Search> ExecutionPlan for OneBatchExec<S> {
    fn name(&self) -> &'static str {
        S::NAME
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
        let stream = futures::stream::once(self.search.clone().run());
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.search.schema(), stream)))
    }
}
