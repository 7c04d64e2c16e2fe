//! Correlated scalar subqueries DataFusion cannot turn into joins (a non-equality
//! with an aggregate, `unnest` of an outer column, `= ANY(outer array)`), run once
//! per distinct outer row instead of failing: psql's `\d+` asks
//! `array(select 'toast.' || x from unnest(tc.reloptions) x)`.
//!
//! [`RowSubqueries`], an optimizer rule that runs after DataFusion's decorrelation,
//! replaces each correlated subquery still in the plan (and `scalar_subqueries`, at
//! analysis, those whose outer references DataFusion would not see) by
//! [`RowSubquery`], a function
//! of the outer columns it reads. For each distinct set of their values it binds them
//! into the subquery's plan as constants, plans and runs it: no row gives NULL, one
//! row its value, more than one Postgres' error 21000. This is slower than a join, and
//! only used where DataFusion has no join for the subquery.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Subquery,
    Volatility,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::error::EngineError;

/// The rule; `state` is the session template the subqueries are planned with (their
/// tables are already resolved in the plan, so they read the session's snapshots).
#[derive(Debug, Default)]
pub struct RowSubqueries {
    pub state: Arc<OnceLock<SessionState>>,
}

impl OptimizerRule for RowSubqueries {
    fn name(&self) -> &str {
        "tarn_row_subqueries"
    }

    fn rewrite(&self, plan: LogicalPlan, _: &dyn OptimizerConfig) -> DfResult<Transformed<LogicalPlan>> {
        plan.transform_up_with_subqueries(|node| {
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let name = names.save(&e);
                e.transform_up(|e| match e {
                    Expr::ScalarSubquery(subquery) if !subquery.outer_ref_columns.is_empty() => {
                        Ok(Transformed::yes(row_subquery(&subquery, &self.state)))
                    }
                    e => Ok(Transformed::no(e)),
                })
                .map(|t| t.update_data(|e| name.restore(e)))
            })
            .and_then(crate::statements::scalar_subqueries::recompute_if_changed)
        })
    }

    fn supports_rewrite(&self) -> bool {
        true
    }
}

/// `subquery` as a call of [`RowSubquery`] with the outer columns it reads.
pub fn row_subquery(subquery: &Subquery, state: &Arc<OnceLock<SessionState>>) -> Expr {
    let outer: Vec<(FieldRef, Column)> = subquery
        .outer_ref_columns
        .iter()
        .filter_map(|e| match e {
            Expr::OuterReferenceColumn(field, column) => Some((field.clone(), column.clone())),
            _ => None,
        })
        .collect();
    let args = outer.iter().map(|(_, c)| Expr::Column(c.clone())).collect();
    let returns = subquery.subquery.schema().field(0).data_type().clone();
    let function = RowSubquery {
        plan: subquery.subquery.as_ref().clone(),
        outer,
        returns,
        signature: Signature::variadic_any(Volatility::Volatile),
        state: state.clone(),
    };
    Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(ScalarUDF::from(function)), args))
}

/// A correlated subquery as a function of the outer columns it reads.
#[derive(Debug)]
pub struct RowSubquery {
    plan: LogicalPlan,
    outer: Vec<(FieldRef, Column)>,
    returns: DataType,
    signature: Signature,
    state: Arc<OnceLock<SessionState>>,
}

impl PartialEq for RowSubquery {
    fn eq(&self, other: &Self) -> bool {
        self.plan == other.plan
    }
}

impl Eq for RowSubquery {}

impl std::hash::Hash for RowSubquery {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.plan.hash(state);
    }
}

impl ScalarUDFImpl for RowSubquery {
    fn name(&self) -> &str {
        "tarn_row_subquery"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut done: HashMap<Vec<ScalarValue>, ScalarValue> = HashMap::new();
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let key =
                arrays.iter().map(|a| ScalarValue::try_from_array(a, row)).collect::<DfResult<Vec<_>>>()?;
            let value = match done.get(&key) {
                Some(value) => value.clone(),
                None => {
                    let value = self.run(&key)?;
                    done.insert(key, value.clone());
                    value
                }
            };
            out.push(value);
        }
        if out.is_empty() {
            return Ok(ColumnarValue::Array(arrow::array::new_empty_array(&self.returns)));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
    }
}

impl RowSubquery {
    /// The subquery's value for one outer row.
    fn run(&self, outer: &[ScalarValue]) -> DfResult<ScalarValue> {
        let Some(state) = self.state.get() else {
            return Err(
                EngineError::Internal { message: "no session to run a subquery in".into() }.into_datafusion()
            );
        };
        let bound = self
            .plan
            .clone()
            .transform_up_with_subqueries(|node| {
                // A derived table that read the outer row is an ordinary one now.
                let node = match node {
                    LogicalPlan::Subquery(derived) => Arc::unwrap_or_clone(derived.subquery),
                    node => node,
                };
                node.map_expressions(|e| {
                    e.transform_up(|e| match e {
                        // A reference to a row of a query inside this one stays.
                        Expr::OuterReferenceColumn(field, column) => {
                            match self.outer.iter().position(|(_, c)| c == &column) {
                                Some(i) => Ok(Transformed::yes(Expr::Literal(outer[i].clone(), None))),
                                None => Ok(Transformed::no(Expr::OuterReferenceColumn(field, column))),
                            }
                        }
                        e => Ok(Transformed::no(e)),
                    })
                })
            })?
            .data;
        let state = state.clone();
        let returns = self.returns.clone();
        let run = async move {
            let plan = state.create_physical_plan(&bound).await?;
            let batches = datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            match rows {
                0 => ScalarValue::try_from(&returns),
                1 => {
                    let batch = batches.iter().find(|b| b.num_rows() == 1).expect("one row");
                    ScalarValue::try_from_array(batch.column(0), 0)
                }
                _ => Err(EngineError::CardinalityViolation {
                    message: "more than one row returned by a subquery used as an expression".into(),
                }
                .into_datafusion()),
            }
        };
        // Statements run on a multi-threaded runtime: this worker waits while the
        // subquery runs (its tasks may use the others).
        let handle = tokio::runtime::Handle::try_current().map_err(|e| {
            EngineError::Internal { message: format!("a correlated subquery needs a runtime: {e}") }
                .into_datafusion()
        })?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(EngineError::unsupported("this correlated subquery needs a multi-threaded runtime")
                .into_datafusion());
        }
        tokio::task::block_in_place(|| handle.block_on(run))
    }
}
