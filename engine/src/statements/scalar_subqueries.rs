//! Correlated scalar subqueries that are not aggregates, as Postgres runs them:
//! `(SELECT d.adsrc FROM pg_attrdef d WHERE d.adrelid = a.attrelid)` is one value per
//! outer row, NULL when no row matches and error 21000 when more than one does.
//! DataFusion decorrelates only aggregated subqueries (it refuses the others), so
//! [`ScalarSubqueryRows`], an analyzer rule, makes the subquery an aggregate of
//! [`SingleValue`]: the one value, which fails on a second row with Postgres' error.
//! Conditions DataFusion cannot decorrelate move out of the subquery (see
//! [`one_value`]); a subquery that reads the outer row inside a derived table of its
//! own is left to [`row_subqueries`](super::row_subqueries). Catalog queries of psql,
//! JDBC and ODBC are full of these. The rule also makes an `EXISTS` outside a filter
//! (in a select list) a count of the subquery's rows, which DataFusion can join.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, UInt64Array};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::Column;
use datafusion::common::ScalarValue;
use datafusion::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::functions::core::expr_fn::{get_field, named_struct};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    lit, when, Accumulator, AggregateUDF, AggregateUDFImpl, Expr, Filter, LogicalPlan, LogicalPlanBuilder,
    Operator, Projection, Signature, Subquery, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::error::EngineError;

/// The name of the one column of a rewritten subquery.
const VALUE_NAME: &str = "__tarn_subquery_value";

/// The rule; `state` is what [`row_subqueries`](super::row_subqueries) plans with.
#[derive(Debug)]
pub struct ScalarSubqueryRows {
    pub state: Arc<std::sync::OnceLock<datafusion::execution::session_state::SessionState>>,
}

impl AnalyzerRule for ScalarSubqueryRows {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        let single = Arc::new(AggregateUDF::from(SingleValue::default()));
        plan.transform_up_with_subqueries(|node| {
            // A rewritten expression keeps its name: the plan above refers to it by name.
            let names = NamePreserver::new(&node);
            // DataFusion joins an EXISTS of a filter itself (a semi join).
            let in_filter = matches!(node, LogicalPlan::Filter(_));
            node.map_expressions(|e| {
                let name = names.save(&e);
                e.transform_up(|e| match e {
                    Expr::Exists(exists) if !in_filter => Ok(Transformed::yes(exists_as_count(exists)?)),
                    Expr::ScalarSubquery(subquery) => {
                        if reads_outer_row_in_derived_table(&subquery) {
                            // DataFusion would join it with its references left inside.
                            Ok(Transformed::yes(super::row_subqueries::row_subquery(&subquery, &self.state)))
                        } else if needs_aggregate(&subquery) {
                            Ok(Transformed::yes(one_value(subquery, &single)?))
                        } else {
                            Ok(Transformed::no(Expr::ScalarSubquery(subquery)))
                        }
                    }
                    e => Ok(Transformed::no(e)),
                })
                .map(|t| t.update_data(|e| name.restore(e)))
            })
            .and_then(recompute_if_changed)
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tarn_scalar_subquery_rows"
    }
}

/// `EXISTS (subquery)` outside a filter (`SELECT EXISTS(...) AS has_x`, which
/// DataFusion cannot plan there): whether the subquery's row count is above zero, an
/// aggregate subquery DataFusion joins (false for an outer row without rows).
fn exists_as_count(exists: datafusion::logical_expr::expr::Exists) -> DfResult<Expr> {
    use datafusion::functions::core::expr_fn::coalesce;
    use datafusion::functions_aggregate::expr_fn::count;
    let rows = "__tarn_exists_rows";
    let counted = LogicalPlanBuilder::from(Arc::unwrap_or_clone(exists.subquery.subquery))
        .aggregate(Vec::<Expr>::new(), vec![count(lit(1)).alias(rows)])?
        .project(vec![Expr::Column(Column::new_unqualified(rows)).gt(lit(0i64)).alias(VALUE_NAME)])?
        .build()?;
    let value = Expr::ScalarSubquery(Subquery {
        subquery: Arc::new(counted),
        outer_ref_columns: exists.subquery.outer_ref_columns,
        spans: exists.subquery.spans,
    });
    let value = coalesce(vec![value, lit(false)]);
    Ok(if exists.negated { !value } else { value })
}

/// A node whose expressions changed has its schema made again (the types of what it
/// outputs may have); the others are left as they are.
pub(crate) fn recompute_if_changed(node: Transformed<LogicalPlan>) -> DfResult<Transformed<LogicalPlan>> {
    if node.transformed {
        node.map_data(|plan| plan.recompute_schema())
    } else {
        Ok(node)
    }
}

/// The subquery as an aggregate of its one value. Conditions of its filter that
/// DataFusion cannot decorrelate move out of it into a CASE around it:
///
/// - conditions on the outer row alone (`a.atthasdef` in `(SELECT ... FROM d WHERE
///   d.k = a.k AND a.atthasdef)`), exactly;
/// - conditions other than equality between the outer row and the subquery's rows
///   (`a.attcollation <> t.typcollation`): the subquery then also returns the columns
///   they read (a struct of the value and those), and the CASE tests them. This is
///   exact when the rest of the filter matches at most one row; when it matches more,
///   the subquery fails with 21000 even if the moved conditions would have left one.
fn one_value(subquery: Subquery, single: &Arc<AggregateUDF>) -> DfResult<Expr> {
    let (plan, outer_only, mixed) = split_filter(subquery.subquery.as_ref().clone())?;
    let (plan, carried) = carry_columns(plan, &mixed)?;
    let plan = single_row(plan, single)?;
    let outer_ref_columns = plan.all_out_ref_exprs();
    let value = Expr::ScalarSubquery(Subquery { subquery: Arc::new(plan), outer_ref_columns, ..subquery });
    let mut conditions = outer_only.into_iter().map(strip_outer_refs).collect::<DfResult<Vec<_>>>()?;
    let value = match carried {
        None => value,
        Some(columns) => {
            for condition in mixed {
                let condition = strip_outer_refs(condition)?.transform(|e| match e {
                    Expr::Column(c) => match columns.iter().position(|carried| carried == &c) {
                        Some(i) => Ok(Transformed::yes(get_field(value.clone(), format!("c{i}")))),
                        None => Ok(Transformed::no(Expr::Column(c))),
                    },
                    e => Ok(Transformed::no(e)),
                })?;
                conditions.push(condition.data);
            }
            get_field(value, "v")
        }
    };
    Ok(match conjunction(conditions) {
        Some(condition) => when(condition, value).end()?,
        None => value,
    })
}

/// Whether the subquery reads the outer row inside a derived table of its own
/// (`(SELECT ... FROM unnest(tc.reloptions) x)`) or a recursive CTE: DataFusion then
/// joins it as if it did not, with the references left inside, and cannot run the
/// result.
fn reads_outer_row_in_derived_table(subquery: &Subquery) -> bool {
    let mut found = false;
    let _ = subquery.subquery.apply(|node| {
        match node {
            LogicalPlan::Subquery(derived) => found |= !derived.subquery.all_out_ref_exprs().is_empty(),
            // A recursive CTE that starts from the outer row (pgAdmin's role
            // memberships): DataFusion's decorrelation would add the correlated column
            // to its first term only.
            LogicalPlan::RecursiveQuery(recursive) => {
                found |= !recursive.static_term.all_out_ref_exprs().is_empty()
                    || !recursive.recursive_term.all_out_ref_exprs().is_empty()
            }
            _ => {}
        }
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}

/// Correlated, one column, and neither an aggregate nor known to give one row.
fn needs_aggregate(subquery: &Subquery) -> bool {
    let mut inner = subquery.subquery.as_ref();
    while let LogicalPlan::Projection(p) = inner {
        inner = p.input.as_ref();
    }
    !subquery.outer_ref_columns.is_empty()
        && subquery.subquery.schema().fields().len() == 1
        && !matches!(inner, LogicalPlan::Aggregate(_))
        && !matches!(inner, LogicalPlan::Filter(f) if matches!(f.input.as_ref(), LogicalPlan::Aggregate(_)))
        && subquery.subquery.max_rows().is_none_or(|rows| rows > 1)
}

/// Takes out of the subquery's filter (under its projections) the conjuncts that read
/// only the outer row, and those that compare the outer row with the subquery's rows
/// other than by equality: `(plan, outer only, mixed)`.
fn split_filter(plan: LogicalPlan) -> DfResult<(LogicalPlan, Vec<Expr>, Vec<Expr>)> {
    match plan {
        LogicalPlan::Projection(projection) => {
            let (input, outer_only, mixed) = split_filter(Arc::unwrap_or_clone(projection.input))?;
            let plan = LogicalPlan::Projection(Projection::try_new(projection.expr, Arc::new(input))?);
            Ok((plan, outer_only, mixed))
        }
        LogicalPlan::Filter(filter) => {
            let (mut outer_only, mut mixed, mut rest) = (vec![], vec![], vec![]);
            for conjunct in split_conjunction_owned(filter.predicate) {
                match reads(&conjunct) {
                    Reads::OuterOnly => outer_only.push(conjunct),
                    Reads::Both if !is_correlated_equality(&conjunct) => mixed.push(conjunct),
                    _ => rest.push(conjunct),
                }
            }
            // Without an equality to join on, moving them out would make the subquery
            // uncorrelated; they stay (and DataFusion refuses the subquery).
            if !rest.iter().any(is_correlated_equality) {
                rest.append(&mut mixed);
            }
            let plan = match conjunction(rest) {
                Some(predicate) => LogicalPlan::Filter(Filter::try_new(predicate, filter.input)?),
                None => Arc::unwrap_or_clone(filter.input),
            };
            Ok((plan, outer_only, mixed))
        }
        other => Ok((other, vec![], vec![])),
    }
}

/// `plan`'s one output as a struct `{v, c0, c1...}` of itself and the columns `mixed`
/// reads from the subquery's rows; `None` (and `plan` unchanged) without such
/// conditions. Only a projection of one expression straight over the filtered rows
/// can carry them.
fn carry_columns(plan: LogicalPlan, mixed: &[Expr]) -> DfResult<(LogicalPlan, Option<Vec<Column>>)> {
    if mixed.is_empty() {
        return Ok((plan, None));
    }
    let LogicalPlan::Projection(projection) = plan else {
        return datafusion::common::plan_err!("a correlated subquery of this shape is not supported");
    };
    let [value] = projection.expr.as_slice() else { unreachable!("one column, checked") };
    let mut columns: Vec<Column> = vec![];
    for condition in mixed {
        for column in condition.column_refs() {
            if !columns.contains(column) {
                columns.push(column.clone());
            }
        }
    }
    let mut fields = vec![lit("v"), value.clone().unalias()];
    for (i, column) in columns.iter().enumerate() {
        fields.push(lit(format!("c{i}")));
        fields.push(Expr::Column(column.clone()));
    }
    let plan = LogicalPlan::Projection(Projection::try_new(
        vec![named_struct(fields).alias(VALUE_NAME)],
        projection.input,
    )?);
    Ok((plan, Some(columns)))
}

enum Reads {
    OuterOnly,
    InnerOnly,
    Both,
}

fn reads(e: &Expr) -> Reads {
    let (mut outer, mut inner) = (false, false);
    let _ = e.apply(|e| {
        match e {
            Expr::OuterReferenceColumn(..) => outer = true,
            Expr::Column(_) | Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => inner = true,
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match (outer, inner) {
        (true, false) if !e.is_volatile() => Reads::OuterOnly,
        (true, _) => Reads::Both,
        _ => Reads::InnerOnly,
    }
}

/// `inner = outer` with each side reading one of them: what DataFusion joins on.
fn is_correlated_equality(e: &Expr) -> bool {
    match e {
        Expr::BinaryExpr(b) if b.op == Operator::Eq => matches!(
            (reads(&b.left), reads(&b.right)),
            (Reads::OuterOnly, Reads::InnerOnly) | (Reads::InnerOnly, Reads::OuterOnly)
        ),
        _ => false,
    }
}

/// An outer-row condition as the outer plan reads it.
pub(crate) fn strip_outer_refs(e: Expr) -> DfResult<Expr> {
    e.transform(|e| match e {
        Expr::OuterReferenceColumn(_, column) => Ok(Transformed::yes(Expr::Column(column))),
        e => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// `plan` (one column `c`) as `SELECT tarn_single_value(c) AS c FROM (plan)`.
fn single_row(plan: LogicalPlan, single: &Arc<AggregateUDF>) -> DfResult<LogicalPlan> {
    let (qualifier, field) = plan.schema().qualified_field(0);
    let column = Expr::Column(datafusion::common::Column::new(qualifier.cloned(), field.name()));
    // A name of its own: when DataFusion joins the subquery it adds the columns it
    // correlates on, which may share the value's name (`m.body <> n.body`).
    let name = VALUE_NAME;
    let aggregate = Expr::AggregateFunction(AggregateFunction::new_udf(
        single.clone(),
        vec![column],
        false,
        None,
        vec![],
        None,
    ))
    .alias(name);
    LogicalPlanBuilder::from(plan).aggregate(Vec::<Expr>::new(), vec![aggregate])?.build()
}

/// The one value of a group; a second row is Postgres' error 21000.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SingleValue {
    signature: Signature,
}

impl Default for SingleValue {
    fn default() -> Self {
        Self { signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl AggregateUDFImpl for SingleValue {
    fn name(&self) -> &str {
        "tarn_single_value"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        Ok(args[0].clone())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(Single { value: ScalarValue::try_from(args.return_field.data_type())?, rows: 0 }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new("value", args.return_field.data_type().clone(), true)),
            Arc::new(Field::new("rows", DataType::UInt64, true)),
        ])
    }
}

#[derive(Debug)]
struct Single {
    value: ScalarValue,
    rows: u64,
}

impl Single {
    fn add(&mut self, rows: u64, array: &ArrayRef, at: usize) -> DfResult<()> {
        if rows == 0 {
            return Ok(());
        }
        self.rows += rows;
        if self.rows > 1 {
            return Err(EngineError::CardinalityViolation {
                message: "more than one row returned by a subquery used as an expression".into(),
            }
            .into_datafusion());
        }
        self.value = ScalarValue::try_from_array(array, at)?;
        Ok(())
    }
}

impl Accumulator for Single {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let array = &values[0];
        if array.len() > 1 {
            return self.add(array.len() as u64, array, 0);
        }
        (0..array.len()).try_for_each(|i| self.add(1, array, i))
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let rows = states[1].as_any().downcast_ref::<UInt64Array>().expect("rows are UInt64");
        (0..rows.len())
            .try_for_each(|i| self.add(if rows.is_null(i) { 0 } else { rows.value(i) }, &states[0], i))
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![self.value.clone(), ScalarValue::UInt64(Some(self.rows))])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size()
    }
}
