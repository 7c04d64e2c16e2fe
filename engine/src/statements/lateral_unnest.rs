//! An unnest in `FROM` that reads the relations before it: `FROM pg_constraint con
//! CROSS JOIN UNNEST(con.conkey) AS k`, `FROM t, unnest(t.tags) tag` (ADBC's
//! constraint query, and how Postgres users spread an array into rows). PostgreSQL
//! makes such a function implicitly LATERAL: one set of rows per row of the left side.
//!
//! DataFusion plans it as a cross join with a subquery whose unnest reads outer
//! references, which it cannot run. [`LateralUnnest`], an analyzer rule, puts the
//! subquery's projections and unnest on top of the left side instead, carrying the
//! left side's columns through them: the same rows, as one plan DataFusion runs.

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::Column;
use datafusion::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, LogicalPlanBuilder};
use datafusion::optimizer::AnalyzerRule;

use super::scalar_subqueries::strip_outer_refs;

/// The rule.
#[derive(Debug, Default)]
pub struct LateralUnnest;

impl AnalyzerRule for LateralUnnest {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::Join(join) = &node else {
                return Ok(Transformed::no(node));
            };
            let is_cross = join.join_type == JoinType::Inner && join.on.is_empty() && join.filter.is_none();
            if !is_cross {
                return Ok(Transformed::no(node));
            }
            match unnest_over(&join.left, &join.right)? {
                Some(plan) => Ok(Transformed::yes(plan)),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tarn_lateral_unnest"
    }
}

/// `left CROSS JOIN right` as the unnest of `right` over `left`, when `right` is a
/// subquery of projections and unnests over one empty row whose outer references all
/// name columns of `left`; `None` for any other join.
fn unnest_over(left: &Arc<LogicalPlan>, right: &LogicalPlan) -> DfResult<Option<LogicalPlan>> {
    let inner = match right {
        LogicalPlan::SubqueryAlias(alias) => alias.input.as_ref(),
        other => other,
    };
    let LogicalPlan::Subquery(subquery) = inner else {
        return Ok(None);
    };
    // Top to bottom: projections and unnests, then the one empty row they start from.
    let mut chain = Vec::new();
    let mut at = subquery.subquery.as_ref();
    loop {
        match at {
            LogicalPlan::Projection(p) => {
                chain.push(at);
                at = p.input.as_ref();
            }
            LogicalPlan::Unnest(u) => {
                chain.push(at);
                at = u.input.as_ref();
            }
            LogicalPlan::EmptyRelation(e) if e.produce_one_row => break,
            _ => return Ok(None),
        }
    }
    let has_unnest = chain.iter().any(|node| matches!(node, LogicalPlan::Unnest(_)));
    let reads_only_left = subquery
        .outer_ref_columns
        .iter()
        .all(|e| matches!(e, Expr::OuterReferenceColumn(_, c) if left.schema().has_column(c)));
    if !has_unnest || !reads_only_left {
        return Ok(None);
    }

    let carried: Vec<Expr> = left.schema().columns().into_iter().map(Expr::Column).collect();
    let mut plan = LogicalPlanBuilder::from(Arc::clone(left));
    for node in chain.into_iter().rev() {
        plan = match node {
            LogicalPlan::Projection(p) => {
                let own = p.expr.iter().cloned().map(strip_outer_refs).collect::<DfResult<Vec<_>>>()?;
                plan.project(carried.iter().cloned().chain(own))?
            }
            LogicalPlan::Unnest(u) => {
                plan.unnest_columns_with_options(u.exec_columns.clone(), u.options.clone())?
            }
            _ => unreachable!("the chain holds projections and unnests"),
        };
    }
    // The subquery's columns under the names (and the alias) the join gave them.
    let plan = plan.build()?;
    let own: Vec<Expr> = (carried.len()..plan.schema().fields().len())
        .map(|i| Expr::Column(Column::from(plan.schema().qualified_field(i))))
        .collect();
    let named = own
        .into_iter()
        .zip(right.schema().iter())
        .map(|(e, (qualifier, field))| e.alias_qualified(qualifier.cloned(), field.name()));
    let plan = LogicalPlanBuilder::from(plan).project(carried.iter().cloned().chain(named))?.build()?;
    Ok(Some(plan))
}
