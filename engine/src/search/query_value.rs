//! What a search node searches for when the statement gives it as a parameter.
//!
//! A prepared statement keeps one optimized plan for all its executions (see
//! `statements/plan_cache.rs`), made while its parameters have no values yet: the kNN
//! and BM25 rules then take a query that is a parameter (`$1`, or a cast of one) as
//! they take a constant. The node carries the expression among its
//! `expressions()`, so binding the values replaces the placeholder with a literal, and
//! the node's physical planner reads the value here.

use arrow::array::RecordBatchOptions;
use arrow::datatypes::Schema;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::expr::Placeholder;
use datafusion::logical_expr::{Expr, Volatility};
use std::sync::Arc;

/// Whether `expr` is made of parameters, constants, casts and immutable functions
/// alone (`$1`, `to_vector($1, 3)`), with at least one parameter: a value fixed for one
/// execution.
pub fn of_parameters(expr: &Expr) -> bool {
    let mut only = true;
    let mut any = false;
    expr.apply(|e| {
        match e {
            Expr::Placeholder(_) => any = true,
            Expr::Literal(..) | Expr::Cast(_) | Expr::TryCast(_) | Expr::Alias(_) => {}
            Expr::ScalarFunction(f) if f.func.signature().volatility == Volatility::Immutable => {}
            _ => only = false,
        }
        Ok(if only { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
    })
    .expect("infallible");
    only && any
}

/// `expr` with each typed parameter replaced by a `NULL` of its type: the same shape
/// with a constant, for questions that depend on the shape only (can Lance evaluate
/// this filter?).
pub fn with_typed_nulls(expr: &Expr) -> Expr {
    expr.clone()
        .transform(|e| match &e {
            Expr::Placeholder(Placeholder { field: Some(field), .. }) => {
                match ScalarValue::try_from(field.data_type()) {
                    Ok(null) => Ok(Transformed::yes(Expr::Literal(null, None))),
                    Err(_) => Ok(Transformed::no(e)),
                }
            }
            _ => Ok(Transformed::no(e)),
        })
        .expect("infallible")
        .data
}

/// The value of an expression without columns (a literal, or a bound parameter under
/// casts), computed as DataFusion computes it.
pub fn constant_value(expr: &Expr, state: &SessionState) -> DfResult<ScalarValue> {
    if let Expr::Literal(value, _) = expr {
        return Ok(value.clone());
    }
    if expr.exists(|e| Ok(matches!(e, Expr::Placeholder(_))))? {
        return Err(DataFusionError::Internal(format!("search query {expr} has no value yet")));
    }
    let empty = DFSchema::empty();
    let physical = state.create_physical_expr(expr.clone(), &empty)?;
    let one_row = arrow::array::RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    let value = physical.evaluate(&one_row)?.into_array(1)?;
    ScalarValue::try_from_array(&value, 0)
}
