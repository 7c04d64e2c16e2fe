//! Row-level security: `ALTER TABLE ... ENABLE | DISABLE ROW LEVEL SECURITY`,
//! `CREATE POLICY` / `DROP POLICY`, and how a session's policies reach its scans.
//!
//! A table with row security on shows a role that is not a superuser (nor `BYPASSRLS`)
//! only the rows its policies let through: the `USING` expressions of the permissive
//! policies for the command and role, OR-ed (none: no row), AND the restrictive ones.
//! The session plans that expression once per security catalog, role and settings
//! ([`crate::access::Access`]) and the table's provider carries it
//! ([`crate::catalog::provider::TarnTable::with_row_filter`]):
//!
//! - a plain scan applies it in [`RowSecurityExec`], right above the scan; the scan
//!   itself also gets it as a filter, so Lance's indexes skip what it hides;
//! - the kNN and BM25 searches take it among their pre-filters (inside the index
//!   search), so a secured search still returns its k rows when k are visible.
//!
//! Policies go first: a user's predicate that could fail or leak on a row (a division,
//! a cast of a column, any function) is not [`leakproof`], and is evaluated only on the
//! rows the policies let through: the provider keeps it out of the scan, a kNN with one
//! is planned as an exact search above the secured scan, and a BM25 search leaves it
//! above the node. `RowSecurityExec` takes no filter from above (DataFusion's filter
//! pushdown stops there). PostgreSQL orders them the same way (its leakproof
//! functions, security-barrier quals).
//!
//! Writes: `INSERT` and `UPDATE` check their new rows against `WITH CHECK` (42501 for a
//! row that fails, as PostgreSQL); `UPDATE` and `DELETE` reach only the rows the
//! command's policies and the `SELECT` policies let through. Not yet under policies
//! (refused rather than done wrong): `UPDATE`/`DELETE` of a table without a primary key,
//! `INSERT ... ON CONFLICT DO UPDATE`, `TRUNCATE`, time travel and the change feed.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use datafusion::common::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::sql::sqlparser::ast;
use futures::StreamExt;
use tarn_storage::security::{PolicyCommand, PolicyDef, SecurityCatalog};
use tarn_storage::TableName;

use crate::error::{EngineError, Result};

/// The combined `USING` (or, with `check`, `WITH CHECK`) of the policies on `table`
/// for `command` that apply to `roles`, as SQL: `false` when no permissive policy
/// applies (row security on and no policy: no row).
pub(crate) fn policy_sql(
    security: &SecurityCatalog,
    table: &TableName,
    command: PolicyCommand,
    roles: &BTreeSet<String>,
    check: bool,
) -> String {
    let expr = |p: &PolicyDef| {
        let text = if check { p.with_check.as_ref().or(p.using.as_ref()) } else { p.using.as_ref() };
        text.map_or_else(|| "true".to_string(), |t| format!("({t})"))
    };
    let policies: Vec<&PolicyDef> = security.policies_for(table, command, roles).collect();
    let permissive: Vec<String> = policies.iter().filter(|p| p.permissive).map(|p| expr(p)).collect();
    if permissive.is_empty() {
        return "false".into();
    }
    let mut sql = format!("({})", permissive.join(" OR "));
    for restrictive in policies.iter().filter(|p| !p.permissive) {
        sql.push_str(" AND ");
        sql.push_str(&expr(restrictive));
    }
    sql
}

/// Whether evaluating `expr` on a row can neither fail nor tell anything about the row
/// but its result: columns, constants and parameters compared, combined with AND, OR,
/// NOT, IS [NOT] NULL, IN and BETWEEN, and casts of constants. Anything else (an
/// arithmetic operator, a cast of a column, a function) may raise an error that
/// depends on a row's value, so it runs only on rows the policies let through.
pub fn leakproof(expr: &Expr) -> bool {
    match expr {
        Expr::Column(_) | Expr::Literal(..) | Expr::Placeholder(_) => true,
        Expr::Alias(alias) => leakproof(&alias.expr),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            matches!(
                op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::And
                    | Operator::Or
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
            ) && leakproof(left)
                && leakproof(right)
        }
        Expr::Not(e)
        | Expr::IsNull(e)
        | Expr::IsNotNull(e)
        | Expr::IsTrue(e)
        | Expr::IsFalse(e)
        | Expr::IsNotTrue(e)
        | Expr::IsNotFalse(e)
        | Expr::IsUnknown(e)
        | Expr::IsNotUnknown(e) => leakproof(e),
        Expr::Between(b) => leakproof(&b.expr) && leakproof(&b.low) && leakproof(&b.high),
        Expr::InList(list) => leakproof(&list.expr) && list.list.iter().all(leakproof),
        Expr::Cast(cast) => matches!(cast.expr.as_ref(), Expr::Literal(..) | Expr::Placeholder(_)),
        Expr::TryCast(cast) => matches!(cast.expr.as_ref(), Expr::Literal(..) | Expr::Placeholder(_)),
        _ => false,
    }
}

/// A policy's expression as written in `CREATE POLICY` (`json_logic('...')` compiled
/// to SQL), checked for what a row filter may not hold.
pub(crate) fn policy_text(expr: &ast::Expr) -> Result<String> {
    let text = match json_logic_rule(expr) {
        Some(rule) => crate::access::json_logic::to_sql(&rule)?,
        None => expr.to_string(),
    };
    let subquery = ast::visit_expressions(expr, |e| match e {
        ast::Expr::Subquery(_) | ast::Expr::Exists { .. } | ast::Expr::InSubquery { .. } => {
            std::ops::ControlFlow::Break(())
        }
        _ => std::ops::ControlFlow::Continue(()),
    });
    if subquery.is_break() {
        return Err(EngineError::unsupported("a policy expression with a subquery is not supported yet"));
    }
    Ok(text)
}

/// The rule of a `json_logic('...')` call.
fn json_logic_rule(expr: &ast::Expr) -> Option<String> {
    let ast::Expr::Function(function) = expr else { return None };
    if !function.name.to_string().eq_ignore_ascii_case("json_logic") {
        return None;
    }
    let ast::FunctionArguments::List(list) = &function.args else { return None };
    let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Value(value)))] =
        list.args.as_slice()
    else {
        return None;
    };
    match &value.value {
        ast::Value::SingleQuotedString(rule) => Some(rule.clone()),
        ast::Value::DollarQuotedString(quoted) => Some(quoted.value.clone()),
        _ => None,
    }
}

/// The rows of its input that pass a table's row policies, projected to the columns
/// the scan was asked for. Evaluated before anything above it; no filter from above
/// passes through it.
#[derive(Debug)]
pub struct RowSecurityExec {
    input: Arc<dyn ExecutionPlan>,
    predicate: Arc<dyn PhysicalExpr>,
    /// Output columns, as positions in the input.
    projection: Vec<usize>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl RowSecurityExec {
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        predicate: Arc<dyn PhysicalExpr>,
        projection: Vec<usize>,
    ) -> DfResult<Self> {
        let schema = Arc::new(input.schema().project(&projection)?);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            input.properties().output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self { input, predicate, projection, schema, properties })
    }
}

impl DisplayAs for RowSecurityExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "RowSecurityExec: policy={}", self.predicate)
    }
}

impl ExecutionPlan for RowSecurityExec {
    fn name(&self) -> &str {
        "RowSecurityExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| datafusion::error::DataFusionError::Internal("one child".into()))?;
        Ok(Arc::new(RowSecurityExec::try_new(input, self.predicate.clone(), self.projection.clone())?))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let (predicate, projection) = (self.predicate.clone(), self.projection.clone());
        let stream = input.map(move |batch| {
            let batch = batch?;
            let passed = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
            // NULL is not true: the row stays hidden (the kernel drops it).
            let kept: RecordBatch = arrow::compute::filter_record_batch(&batch, passed.as_boolean())?;
            Ok(kept.project(&projection)?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream)))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    #[test]
    fn comparisons_are_leakproof_arithmetic_and_casts_of_columns_are_not() {
        assert!(leakproof(&col("a").eq(lit(1)).and(col("b").in_list(vec![lit("x")], false))));
        assert!(leakproof(&col("a").between(lit(1), lit(2)).or(col("c").is_null())));
        assert!(!leakproof(&(lit(1) / col("a")).gt(lit(0))));
        assert!(!leakproof(
            &datafusion::logical_expr::cast(col("t"), arrow::datatypes::DataType::Int32).eq(lit(1))
        ));
        assert!(leakproof(
            &col("a").eq(datafusion::logical_expr::cast(lit("1"), arrow::datatypes::DataType::Int32))
        ));
    }

    #[test]
    fn permissive_policies_are_ored_and_restrictive_ones_anded() {
        let t = TableName::new("public", "t");
        let mut security = SecurityCatalog::default();
        let roles: BTreeSet<String> = ["alice".to_string()].into();
        assert_eq!(policy_sql(&security, &t, PolicyCommand::Select, &roles, false), "false");
        let policy = |name: &str, permissive, using: &str, to: &[&str]| PolicyDef {
            name: name.into(),
            table: t.clone(),
            command: PolicyCommand::All,
            permissive,
            roles: to.iter().map(|r| r.to_string()).collect(),
            using: Some(using.into()),
            with_check: None,
        };
        security.policies.push(policy("a", true, "x = 1", &[]));
        security.policies.push(policy("b", true, "x = 2", &["alice"]));
        security.policies.push(policy("c", true, "x = 3", &["bob"]));
        security.policies.push(policy("d", false, "y > 0", &[]));
        assert_eq!(
            policy_sql(&security, &t, PolicyCommand::Select, &roles, false),
            "((x = 1) OR (x = 2)) AND (y > 0)"
        );
    }
}
