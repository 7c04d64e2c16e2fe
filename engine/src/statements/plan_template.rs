//! Physical plans a prepared search keeps, with slots for its parameters and its
//! searches.
//!
//! A generic plan (see `plan_cache.rs`) still costs a physical planning per execute:
//! DataFusion's planner and physical optimizer rules, more than the search itself for a
//! top-10. A statement whose generic plan is made of searches under projections,
//! filters, sorts, limits, windows, joins, unions and repartitions (`SELECT ... WHERE
//! body @@@ $1 ORDER BY score DESC LIMIT 10`, the kNN form, `hybrid_search`) keeps a
//! [`Template`] instead: its physical plan made once, in which
//!
//! - each parameter outside the search nodes is a slot (`tarn_param(n)`, typed as the
//!   parameter), replaced by its value in each execute's copy of the nodes that hold
//!   it (projections, filters, sorts: a plan with a slot anywhere else is not kept);
//! - each search node is a [`DeferredSearchExec`] that holds the logical node: each
//!   execute binds the values into the node, re-pins its table to the snapshot read
//!   now and plans that node alone (its planner makes every choice that depends on
//!   values or on the snapshot: index or exact, the index itself);
//! - every other node is copied with its new children and its state reset.
//!
//! The search node's output has the same schema, one partition and no order whatever
//! it searches, so the rest of the plan stays right for every execute.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{exec_err, Result as DfResult, ScalarValue};
use datafusion::execution::context::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr::{Placeholder, ScalarFunction};
use datafusion::logical_expr::{
    ColumnarValue, Expr, Extension, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, UserDefinedLogicalNode, Volatility,
};
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr, ScalarFunctionExpr};
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::future::BoxFuture;

use crate::catalog::provider::TarnTable;
use crate::error::Result;
use crate::search::bm25::Bm25Node;
use crate::search::knn::{search_planners, KnnNode};
use crate::statements::params::with_params;
use crate::statements::plan_cache::repin;

/// A kept physical plan with its result columns as the client was told of them.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub named: SchemaRef,
    plan: Arc<dyn ExecutionPlan>,
}

/// The nodes a template may have besides its searches: each is copied with its state
/// reset, and projections, filters and sorts with their slots filled ([`fill_slots`]).
const KEPT_NODES: &[&str] = &[
    "ProjectionExec",
    "FilterExec",
    "SortExec",
    "SortExec(TopK)",
    "GlobalLimitExec",
    "LocalLimitExec",
    "CoalesceBatchesExec",
    "CooperativeExec",
    "CoalescePartitionsExec",
    "SortPreservingMergeExec",
    "RepartitionExec",
    "HashJoinExec",
    "BoundedWindowAggExec",
    "WindowAggExec",
    "UnionExec",
];

/// The nodes whose slots [`fill_slots`] fills.
const FILLED_NODES: &[&str] = &["ProjectionExec", "FilterExec", "SortExec", "SortExec(TopK)"];

/// The template of an optimized (generic) plan, when it is a search under the
/// [`KEPT_NODES`] alone.
pub(crate) async fn make(
    optimized: &LogicalPlan,
    named: SchemaRef,
    state: &SessionState,
) -> Option<Template> {
    let slotted = with_slots(optimized).ok()?;
    let planner = DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(DeferSearches)]);
    let plan = planner.create_physical_plan(&slotted, state).await.ok()?;
    let mut searches = 0;
    let mut kept = true;
    plan.apply(|node| {
        if node.is::<DeferredSearchExec>() {
            searches += 1;
        } else if !KEPT_NODES.contains(&node.name()) {
            kept = false;
        } else if !FILLED_NODES.contains(&node.name()) {
            // A slot in another node (a window's order, a join's filter) would stay
            // unfilled: its one-line form shows its expressions.
            let line = datafusion::physical_plan::displayable(node.as_ref()).one_line().to_string();
            kept = !line.contains(&format!("{SLOT}("));
        }
        Ok(if kept { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
    })
    .ok()?;
    (kept && searches > 0).then_some(Template { named, plan })
}

impl Template {
    /// The plan to run for `values` (cast to the parameters' types), its searches over
    /// the tables as `current` gives them now; `None` when a table is no longer the one
    /// planned with.
    pub async fn bind(
        &self,
        values: &[ScalarValue],
        state: &SessionState,
        current: &(dyn Fn(&TarnTable) -> Result<Option<TarnTable>> + Sync),
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        bind_node(self.plan.clone(), values, state, current).await
    }
}

fn bind_node<'a>(
    node: Arc<dyn ExecutionPlan>,
    values: &'a [ScalarValue],
    state: &'a SessionState,
    current: &'a (dyn Fn(&TarnTable) -> Result<Option<TarnTable>> + Sync),
) -> BoxFuture<'a, Result<Option<Arc<dyn ExecutionPlan>>>> {
    Box::pin(async move {
        if let Some(deferred) = node.downcast_ref::<DeferredSearchExec>() {
            return deferred.plan(values, state, current).await;
        }
        let mut children = Vec::with_capacity(node.children().len());
        for child in node.children() {
            match bind_node(child.clone(), values, state, current).await? {
                Some(bound) => children.push(bound),
                None => return Ok(None),
            }
        }
        Ok(Some(fill_slots(node, children, values)?))
    })
}

/// `node` over `children`, its slots filled with `values` and its state fresh.
fn fill_slots(
    node: Arc<dyn ExecutionPlan>,
    children: Vec<Arc<dyn ExecutionPlan>>,
    values: &[ScalarValue],
) -> DfResult<Arc<dyn ExecutionPlan>> {
    if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
        if projection.expr().iter().any(|e| has_slot(&e.expr)) {
            let exprs = projection
                .expr()
                .iter()
                .map(|e| Ok(ProjectionExpr { expr: filled(&e.expr, values)?, alias: e.alias.clone() }))
                .collect::<DfResult<Vec<_>>>()?;
            let input = children.into_iter().next().expect("a projection has an input");
            return Ok(Arc::new(ProjectionExec::try_new(exprs, input)?));
        }
    } else if let Some(filter) = node.downcast_ref::<FilterExec>() {
        if has_slot(filter.predicate()) {
            let input = children.into_iter().next().expect("a filter has an input");
            let predicate = filled(filter.predicate(), values)?;
            return Ok(Arc::new(
                FilterExecBuilder::from(filter).with_input(input).with_predicate(predicate).build()?,
            ));
        }
    } else if let Some(sort) = node.downcast_ref::<SortExec>() {
        if sort.expr().iter().any(|e| has_slot(&e.expr)) {
            let exprs = sort
                .expr()
                .iter()
                .map(|e| Ok(PhysicalSortExpr { expr: filled(&e.expr, values)?, options: e.options }))
                .collect::<DfResult<Vec<_>>>()?;
            let ordering = LexOrdering::new(exprs).expect("a sort has keys");
            let input = children.into_iter().next().expect("a sort has an input");
            let sorted = SortExec::new(ordering, input)
                .with_fetch(sort.fetch())
                .with_preserve_partitioning(sort.preserve_partitioning());
            return Ok(Arc::new(sorted));
        }
    }
    node.with_new_children(children)?.reset_state()
}

/// The parameter slot: `tarn_param(n, <NULL of the type>)`.
const SLOT: &str = "tarn_param";

#[derive(Debug, PartialEq, Eq, Hash)]
struct ParamSlot {
    signature: Signature,
}

impl ScalarUDFImpl for ParamSlot {
    fn name(&self) -> &str {
        SLOT
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        Ok(args.get(1).cloned().unwrap_or(DataType::Null))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let ty = args.arg_fields.get(1).map_or(DataType::Null, |f| f.data_type().clone());
        Ok(Arc::new(Field::new(SLOT, ty, true)))
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        exec_err!("a statement parameter was not bound")
    }
}

/// `plan` with each placeholder outside the search nodes a slot.
fn with_slots(plan: &LogicalPlan) -> DfResult<LogicalPlan> {
    let slot = Arc::new(ScalarUDF::from(ParamSlot { signature: Signature::any(2, Volatility::Volatile) }));
    Ok(plan
        .clone()
        .transform_up(|node| {
            if matches!(node, LogicalPlan::Extension(_)) {
                return Ok(Transformed::no(node));
            }
            node.map_expressions(|expr| {
                expr.transform(|e| match e {
                    Expr::Placeholder(Placeholder { id, field: Some(field) }) => {
                        let n: i64 = id[1..].parse().map_err(|_| {
                            datafusion::error::DataFusionError::Plan(format!("parameter {id} is not $n"))
                        })?;
                        let typed_null = ScalarValue::try_from(field.data_type())?;
                        Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                            slot.clone(),
                            vec![
                                Expr::Literal(ScalarValue::Int64(Some(n)), None),
                                Expr::Literal(typed_null, None),
                            ],
                        ))))
                    }
                    other => Ok(Transformed::no(other)),
                })
            })
        })?
        .data)
}

/// `n` of a slot expression.
fn slot_number(expr: &Arc<dyn PhysicalExpr>) -> Option<usize> {
    let call = expr.downcast_ref::<ScalarFunctionExpr>()?;
    if call.name() != SLOT {
        return None;
    }
    let n = call.args().first()?.downcast_ref::<Literal>()?;
    match n.value() {
        ScalarValue::Int64(Some(n)) if *n > 0 => Some(*n as usize),
        _ => None,
    }
}

fn has_slot(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.exists(|e| Ok(slot_number(e).is_some())).unwrap_or(true)
}

fn filled(expr: &Arc<dyn PhysicalExpr>, values: &[ScalarValue]) -> DfResult<Arc<dyn PhysicalExpr>> {
    Ok(expr
        .clone()
        .transform(|e| match slot_number(&e) {
            Some(n) => match values.get(n - 1) {
                Some(value) => {
                    Ok(Transformed::yes(Arc::new(Literal::new(value.clone())) as Arc<dyn PhysicalExpr>))
                }
                None => exec_err!("no value for parameter ${n}"),
            },
            None => Ok(Transformed::no(e)),
        })?
        .data)
}

/// Plans every search node as a [`DeferredSearchExec`].
#[derive(Debug)]
struct DeferSearches;

#[async_trait::async_trait]
impl ExtensionPlanner for DeferSearches {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        _state: &SessionState,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let any = node.as_any();
        let search: Arc<dyn UserDefinedLogicalNode> = if let Some(knn) = any.downcast_ref::<KnnNode>() {
            Arc::new(knn.clone())
        } else if let Some(bm25) = any.downcast_ref::<Bm25Node>() {
            Arc::new(bm25.clone())
        } else {
            return Ok(None);
        };
        let properties = crate::search::one_batch::properties(Arc::new(node.schema().as_arrow().clone()));
        let search = LogicalPlan::Extension(Extension { node: search });
        Ok(Some(Arc::new(DeferredSearchExec { search, properties })))
    }
}

/// A search node of a template: planned for each execute (see the module docs). Its
/// properties are those of the search it becomes (`search/one_batch.rs`).
#[derive(Debug)]
pub(crate) struct DeferredSearchExec {
    /// The logical search node, as a plan of that node alone.
    search: LogicalPlan,
    properties: Arc<PlanProperties>,
}

impl DeferredSearchExec {
    /// The search for `values` over the table as `current` gives it now (re-pinned as
    /// a kept logical plan is); `None` when the table is no longer the one planned with.
    async fn plan(
        &self,
        values: &[ScalarValue],
        state: &SessionState,
        current: &(dyn Fn(&TarnTable) -> Result<Option<TarnTable>> + Sync),
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(repinned) = repin(&self.search, current)? else { return Ok(None) };
        let LogicalPlan::Extension(Extension { node }) = with_params(repinned, values)? else {
            unreachable!("a search node stays one when re-pinned and bound")
        };
        let planner = DefaultPhysicalPlanner::default();
        for search in search_planners() {
            if let Some(planned) = search.plan_extension(&planner, node.as_ref(), &[], &[], state).await? {
                return Ok(Some(planned));
            }
        }
        Ok(None)
    }
}

impl DisplayAs for DeferredSearchExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DeferredSearchExec")
    }
}

impl ExecutionPlan for DeferredSearchExec {
    fn name(&self) -> &'static str {
        "DeferredSearchExec"
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

    fn execute(&self, _: usize, _: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        exec_err!("a kept search was run before its parameters were bound")
    }
}
