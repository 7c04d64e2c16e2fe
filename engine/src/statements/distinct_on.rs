//! `SELECT DISTINCT ON (k) a, (SELECT ... WHERE x = t.y) AS s FROM t ...`: a correlated
//! subquery in the select list of a `DISTINCT ON` (pgAdmin's table and column lists).
//!
//! DataFusion keeps such a select list inside its `DistinctOn` node, where neither its
//! decorrelation nor ours ([`super::scalar_subqueries`]) looks, and then refuses the
//! plan. [`DistinctOnSubqueries`], an analyzer rule that runs before ours, computes the
//! select items that hold a subquery in a projection under the `DistinctOn` (beside
//! every input column, which `ON` and `ORDER BY` read) and has the `DistinctOn` pick
//! them by name: the same rows, with the subqueries where they can be planned.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::Column;
use datafusion::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Distinct, DistinctOn, Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::optimizer::AnalyzerRule;

/// The rule.
#[derive(Debug, Default)]
pub struct DistinctOnSubqueries;

impl AnalyzerRule for DistinctOnSubqueries {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::Distinct(Distinct::On(on)) = &node else {
                return Ok(Transformed::no(node));
            };
            if !on.select_expr.iter().any(has_subquery) {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(below(on)?))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tarn_distinct_on_subqueries"
    }
}

fn has_subquery(expr: &Expr) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        found = matches!(e, Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_));
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}

/// `on` with its subquery items computed in a projection under it.
fn below(on: &DistinctOn) -> DfResult<LogicalPlan> {
    let mut computed: Vec<Expr> = on.input.schema().columns().into_iter().map(Expr::Column).collect();
    let mut select = Vec::with_capacity(on.select_expr.len());
    for (i, item) in on.select_expr.iter().enumerate() {
        if !has_subquery(item) {
            select.push(item.clone());
            continue;
        }
        let (qualifier, name) = item.qualified_name();
        let inner = format!("__tarn_distinct_on_{i}");
        computed.push(item.clone().unalias().alias(inner.as_str()));
        let picked = Expr::Column(Column::new_unqualified(inner));
        select.push(picked.alias_qualified(qualifier, name));
    }
    let input =
        LogicalPlanBuilder::from(Arc::unwrap_or_clone(on.input.clone())).project(computed)?.build()?;
    let on = DistinctOn::try_new(on.on_expr.clone(), select, on.sort_expr.clone(), Arc::new(input))?;
    Ok(LogicalPlan::Distinct(Distinct::On(on)))
}
