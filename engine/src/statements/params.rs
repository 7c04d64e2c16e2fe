//! Statement parameters (`$1`, `$2`, ...) wherever PostgreSQL takes them.
//!
//! DataFusion plans most placeholders itself and infers the type of one compared with a
//! column. What it leaves out, PostgreSQL users send every day:
//!
//! - [`bind_table_function_args`]: arguments of table functions (`generate_series(0,
//!   $2)`): DataFusion calls a table function with its arguments at planning time, so a
//!   placeholder there is replaced in the syntax tree by the value (when executing) or
//!   by a typed `NULL` (when describing, recording the type the parameter gets).
//! - [`infer_types`]: an untyped placeholder takes its type from where it stands, as an
//!   unknown-typed parameter does in PostgreSQL: `LIMIT`/`OFFSET` (bigint), `= ANY($1)`
//!   (an array of the other side's type), `CASE WHEN $1` and `AND`/`OR`/`NOT` operands
//!   (boolean), `CASE x WHEN $1` (x's type), `THEN $2` (the type of the other branches),
//!   the other side of a comparison or of arithmetic on numbers wherever it stands
//!   (`HAVING`, join conditions: DataFusion does it for `WHERE` only), and a function's
//!   argument the function takes as a number or boolean (`pg_cancel_backend($1)`).
//!   Placeholders no rule reaches stay text, as PostgreSQL's unknown does.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::expr::{Placeholder, ScalarFunction};
use datafusion::logical_expr::{Case, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::sql::sqlparser::ast::{self, VisitMut, VisitorMut};

use crate::error::Result;

/// Types learned for parameters DataFusion will not see (`$n` -> type).
pub type ParamHints = BTreeMap<usize, DataType>;

/// Replaces the placeholders among table functions' arguments: by the parameter's value
/// if `params` has it (executing), else the whole argument by `NULL` (describing: table
/// functions take a bare `NULL` for any argument, and DataFusion folds `NULL::T` into a
/// typed null they refuse). Returns the types the parameters get: a bare `$n` is a
/// number (`generate_series`, `range`), one inside an expression (`$1::text::bigint`)
/// is text, as PostgreSQL types an unknown under a cast.
pub fn bind_table_function_args(statement: &mut ast::Statement, params: &[ScalarValue]) -> ParamHints {
    struct Binder<'a> {
        params: &'a [ScalarValue],
        hints: ParamHints,
    }
    impl VisitorMut for Binder<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut ast::TableFactor) -> ControlFlow<()> {
            let ast::TableFactor::Table { name, args: Some(args), .. } = factor else {
                return ControlFlow::Continue(());
            };
            // hybrid_search(table, text, vector, k, ...): its first three are text; a
            // bare parameter as its text or vector stays one (the call expands to SQL
            // that searches for it, planned as any statement's parameter).
            // hybrid_search(table, text, k, ...) (no vector) has two, and
            // tarn_find_tables(question, k) one.
            let name = name.to_string();
            let hybrid = name.eq_ignore_ascii_case("hybrid_search");
            let positional = args.args.iter().filter(|a| matches!(a, ast::FunctionArg::Unnamed(_))).count();
            let texts = match () {
                _ if hybrid && positional == 3 => 2,
                _ if hybrid => 3,
                _ if name.eq_ignore_ascii_case("tarn_find_tables") => 1,
                _ => 0,
            };
            for (position, arg) in args.args.iter_mut().enumerate() {
                let unnamed = matches!(arg, ast::FunctionArg::Unnamed(_));
                let expr = match arg {
                    ast::FunctionArg::Named { arg: ast::FunctionArgExpr::Expr(e), .. }
                    | ast::FunctionArg::ExprNamed { arg: ast::FunctionArgExpr::Expr(e), .. }
                    | ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => e,
                    _ => continue,
                };
                let bare = placeholder_number(expr).is_some();
                if hybrid && bare && unnamed && position >= 1 && position < texts {
                    continue;
                }
                let mut found = Vec::new();
                let _ = expr.visit(&mut PlaceholderBinder { params: self.params, found: &mut found });
                for n in found {
                    let ty = match self.params.get(n - 1) {
                        Some(value) if !value.is_null() => value.data_type(),
                        _ if bare && position < texts => DataType::Utf8,
                        _ if bare => DataType::Int64,
                        _ => DataType::Utf8,
                    };
                    self.hints.insert(n, ty);
                    if self.params.get(n - 1).is_none() {
                        *expr = ast::Expr::value(ast::Value::Null);
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    /// Replaces each placeholder that has a value by it; notes every one it meets.
    struct PlaceholderBinder<'a, 'f> {
        params: &'a [ScalarValue],
        found: &'f mut Vec<usize>,
    }
    impl VisitorMut for PlaceholderBinder<'_, '_> {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut ast::Expr) -> ControlFlow<()> {
            if let Some(n) = placeholder_number(expr) {
                self.found.push(n);
                if let Some(value) = self.params.get(n - 1) {
                    *expr = literal(value);
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut binder = Binder { params, hints: ParamHints::new() };
    let _ = statement.visit(&mut binder);
    binder.hints
}

/// `n` of a `$n` in the syntax tree.
pub(crate) fn placeholder_number(expr: &ast::Expr) -> Option<usize> {
    let ast::Expr::Value(value) = expr else { return None };
    let ast::Value::Placeholder(name) = &value.value else { return None };
    param_number(name)
}

/// `n` of a placeholder named `$n` (1-based).
fn param_number(name: &str) -> Option<usize> {
    name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0)
}

/// A value as SQL the planner reads back as the same value.
fn literal(value: &ScalarValue) -> ast::Expr {
    use ScalarValue as S;
    if value.is_null() {
        return null_of(&value.data_type());
    }
    let number = |text: String| ast::Expr::value(ast::Value::Number(text, false));
    match value {
        S::Int8(_)
        | S::Int16(_)
        | S::Int32(_)
        | S::Int64(_)
        | S::UInt8(_)
        | S::UInt16(_)
        | S::UInt32(_)
        | S::UInt64(_)
        | S::Float32(_)
        | S::Float64(_)
        | S::Decimal128(..) => number(value.to_string()),
        S::Boolean(Some(b)) => ast::Expr::value(ast::Value::Boolean(*b)),
        S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => {
            ast::Expr::value(ast::Value::SingleQuotedString(s.clone()))
        }
        other => match sql_type(&other.data_type()) {
            Some(data_type) => ast::Expr::Cast {
                kind: ast::CastKind::DoubleColon,
                expr: Box::new(ast::Expr::value(ast::Value::SingleQuotedString(other.to_string()))),
                data_type,
                array: false,
                format: None,
            },
            None => ast::Expr::value(ast::Value::SingleQuotedString(other.to_string())),
        },
    }
}

fn null_of(ty: &DataType) -> ast::Expr {
    let null = ast::Expr::value(ast::Value::Null);
    match sql_type(ty) {
        Some(data_type) => ast::Expr::Cast {
            kind: ast::CastKind::DoubleColon,
            expr: Box::new(null),
            data_type,
            array: false,
            format: None,
        },
        None => null,
    }
}

/// The SQL type a value of `ty` is read back as, for the types table functions take.
fn sql_type(ty: &DataType) -> Option<ast::DataType> {
    Some(match ty {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => ast::DataType::BigInt(None),
        DataType::Float32 | DataType::Float64 => ast::DataType::DoublePrecision,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ast::DataType::Text,
        DataType::Boolean => ast::DataType::Boolean,
        DataType::Date32 | DataType::Date64 => ast::DataType::Date,
        DataType::Timestamp(_, None) => ast::DataType::Timestamp(None, ast::TimezoneInfo::None),
        DataType::Timestamp(_, Some(_)) => ast::DataType::Timestamp(None, ast::TimezoneInfo::WithTimeZone),
        DataType::Interval(_) => ast::DataType::Interval { fields: None, precision: None },
        _ => return None,
    })
}

/// The types the placeholders of one expression get from where they stand.
pub fn placeholder_types(expr: Expr, schema: &DFSchema) -> Result<ParamHints> {
    let typed = expr.transform_up(|e| type_in_context(e, schema))?.data;
    let mut hints = ParamHints::new();
    typed.apply(|e| {
        if let Expr::Placeholder(Placeholder { id, field: Some(field) }) = e {
            if let Some(n) = param_number(id) {
                if field.data_type() != &DataType::Null {
                    hints.insert(n, field.data_type().clone());
                }
            }
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    Ok(hints)
}

/// A parameter's value as its placeholder's type takes it: Arrow's cast, except that
/// text of one letter (or none) is the byte a `"char"` placeholder (`relkind = $1`)
/// holds, as Postgres reads it.
pub fn cast_param(value: &ScalarValue, ty: &DataType) -> datafusion::error::Result<ScalarValue> {
    match (value, ty) {
        (
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
            DataType::Int8,
        ) if s.len() <= 1 => Ok(ScalarValue::Int8(Some(s.as_bytes().first().copied().unwrap_or(0) as i8))),
        _ => value.cast_to(ty),
    }
}

/// Replaces the placeholders of an expression DataFusion evaluates outside a plan
/// (`ON CONFLICT DO UPDATE SET`) by their values, cast to a placeholder's type.
pub fn bind_expr(expr: Expr, params: &[ScalarValue]) -> Result<Expr> {
    let bound = expr.transform_up(|e| match e {
        Expr::Placeholder(Placeholder { id, field }) => {
            let Some(value) = param_number(&id).and_then(|n| params.get(n - 1)) else {
                return Err(datafusion::error::DataFusionError::Plan(format!("there is no parameter {id}")));
            };
            let value = match field.as_ref().map(|f| f.data_type()) {
                Some(ty) if ty != &DataType::Null && ty != &value.data_type() => cast_param(value, ty)?,
                _ => value.clone(),
            };
            Ok(Transformed::yes(Expr::Literal(value, None)))
        }
        other => Ok(Transformed::no(other)),
    })?;
    Ok(bound.data)
}

/// Gives untyped placeholders the type their place in the plan implies (module docs).
pub fn infer_types(plan: LogicalPlan) -> Result<LogicalPlan> {
    let typed = plan.transform_up_with_subqueries(|node| {
        let node = match node {
            LogicalPlan::Limit(mut limit) => {
                let mut changed = false;
                for e in [&mut limit.skip, &mut limit.fetch].into_iter().flatten() {
                    changed |= type_placeholder(e.as_mut(), &DataType::Int64);
                }
                let node = LogicalPlan::Limit(limit);
                if changed {
                    return Ok(Transformed::yes(node));
                }
                node
            }
            other => other,
        };
        // Expressions are typed against the node's input schema (a join's, merged).
        let schema = match node.inputs().as_slice() {
            [] => Arc::new(DFSchema::empty()),
            [one] => one.schema().clone(),
            many => {
                let mut merged = DFSchema::empty();
                for input in many {
                    merged.merge(input.schema());
                }
                Arc::new(merged)
            }
        };
        node.map_expressions(|e| e.transform_up(|e| type_in_context(e, &schema)))
    })?;
    Ok(typed.data)
}

fn type_in_context(mut expr: Expr, schema: &DFSchema) -> datafusion::error::Result<Transformed<Expr>> {
    let type_of = |e: &Expr| match e {
        Expr::Placeholder(p) => {
            p.field.as_ref().map(|f| f.data_type().clone()).filter(|t| t != &DataType::Null)
        }
        e => e.get_type(schema).ok().filter(|t| t != &DataType::Null),
    };
    let changed = match &mut expr {
        Expr::BinaryExpr(b) if matches!(b.op, Operator::And | Operator::Or) => {
            type_placeholder(b.left.as_mut(), &DataType::Boolean)
                | type_placeholder(b.right.as_mut(), &DataType::Boolean)
        }
        // DataFusion types `x = $1` in WHERE, not in HAVING or join conditions: the same
        // rule everywhere (comparisons, and arithmetic on numbers and text).
        Expr::BinaryExpr(b) if is_comparison(b.op) || is_plain_arithmetic(b.op) => {
            let (left, right) = (type_of(&b.left), type_of(&b.right));
            let usable = |t: &DataType| is_comparison(b.op) || t.is_numeric();
            match (left, right) {
                (None, Some(t)) if usable(&t) => type_placeholder(b.left.as_mut(), &t),
                (Some(t), None) if usable(&t) => type_placeholder(b.right.as_mut(), &t),
                _ => false,
            }
        }
        Expr::Not(e) | Expr::IsTrue(e) | Expr::IsFalse(e) | Expr::IsNotTrue(e) | Expr::IsNotFalse(e) => {
            type_placeholder(e.as_mut(), &DataType::Boolean)
        }
        Expr::Case(Case { expr: operand, when_then_expr, else_expr }) => {
            let mut changed = false;
            let when_type = match operand {
                Some(operand) => type_of(operand),
                None => Some(DataType::Boolean),
            };
            let then_type = when_then_expr
                .iter()
                .map(|(_, then)| then.as_ref())
                .chain(else_expr.as_deref())
                .find_map(|e| (!matches!(e, Expr::Placeholder(_))).then(|| type_of(e)).flatten());
            for (when, then) in when_then_expr.iter_mut() {
                if let Some(t) = &when_type {
                    changed |= type_placeholder(when.as_mut(), t);
                }
                if let Some(t) = &then_type {
                    changed |= type_placeholder(then.as_mut(), t);
                }
            }
            if let (Some(e), Some(t)) = (else_expr.as_deref_mut(), &then_type) {
                changed |= type_placeholder(e, t);
            }
            changed
        }
        // `x = ANY($1)` is planned as `array_has($1, x)` (and its siblings).
        Expr::ScalarFunction(ScalarFunction { func, args })
            if matches!(func.name(), "array_has" | "array_has_all" | "array_has_any") && args.len() == 2 =>
        {
            match type_of(&args[1]) {
                Some(element) if func.name() == "array_has" => {
                    let list = DataType::List(Arc::new(Field::new_list_field(element, true)));
                    type_placeholder(&mut args[0], &list)
                }
                _ => false,
            }
        }
        // A function's argument takes the number or boolean type the function coerces
        // an unknown to (`pg_cancel_backend($1)`: an integer); text stays text anyway.
        Expr::ScalarFunction(ScalarFunction { func, args })
            if args.iter().any(|a| matches!(a, Expr::Placeholder(_)) && type_of(a).is_none()) =>
        {
            let given: Vec<DataType> = args.iter().map(|a| type_of(a).unwrap_or(DataType::Null)).collect();
            match func.coerce_types(&given) {
                Ok(wanted) if wanted.len() == args.len() => {
                    args.iter_mut().zip(wanted).fold(false, |changed, (arg, t)| {
                        let concrete = t.is_integer() || t == DataType::Boolean;
                        changed | (concrete && type_placeholder(arg, &t))
                    })
                }
                _ => false,
            }
        }
        _ => false,
    };
    Ok(if changed { Transformed::yes(expr) } else { Transformed::no(expr) })
}

fn is_comparison(op: Operator) -> bool {
    use Operator::*;
    matches!(op, Eq | NotEq | Lt | LtEq | Gt | GtEq | IsDistinctFrom | IsNotDistinctFrom)
}

fn is_plain_arithmetic(op: Operator) -> bool {
    matches!(op, Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Divide | Operator::Modulo)
}

/// Types `expr` as `ty` if it is a placeholder without a type; whether it was.
fn type_placeholder(expr: &mut Expr, ty: &DataType) -> bool {
    match expr {
        // DataFusion types a placeholder compared with another one as `Null`: untyped.
        Expr::Placeholder(Placeholder { field, .. })
            if field.as_ref().is_none_or(|f| f.data_type() == &DataType::Null) =>
        {
            *field = Some(Arc::new(Field::new("", ty.clone(), true)));
            true
        }
        _ => false,
    }
}

/// Parameter types: the client's where declared, else what DataFusion inferred, else
/// text (as Postgres does for an unknown-typed parameter).
/// `$1::T`: a parameter DataFusion left untyped takes the type it is cast to, as in
/// Postgres (`$1::vector(3)` is a vector, not text to be parsed).
pub(crate) fn type_cast_parameters(plan: LogicalPlan) -> Result<LogicalPlan> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::expr::Placeholder;
    use datafusion::logical_expr::Expr;
    let typed = plan.transform_up_with_subqueries(|node| {
        node.map_expressions(|e| {
            e.transform_up(|e| match e {
                Expr::Cast(mut cast) if matches!(cast.expr.as_ref(), Expr::Placeholder(p) if p.field.is_none()) => {
                    let Expr::Placeholder(p) = cast.expr.as_ref() else { unreachable!("matched") };
                    let field = Arc::new(Field::new("", cast.field.data_type().clone(), true));
                    cast.expr = Box::new(Expr::Placeholder(Placeholder { id: p.id.clone(), field: Some(field) }));
                    Ok(Transformed::yes(Expr::Cast(cast)))
                }
                other => Ok(Transformed::no(other)),
            })
        })
    })?;
    Ok(typed.data)
}

pub(crate) fn param_types(plan: &LogicalPlan, declared: &[Option<DataType>]) -> Result<Vec<DataType>> {
    let inferred = plan.get_parameter_types()?;
    let count = inferred
        .keys()
        .filter_map(|k| k.trim_start_matches('$').parse::<usize>().ok())
        .max()
        .unwrap_or(0)
        .max(declared.len());
    Ok((1..=count)
        .map(|i| {
            declared
                .get(i - 1)
                .cloned()
                .flatten()
                .or_else(|| inferred.get(&format!("${i}")).cloned().flatten())
                .unwrap_or(DataType::Utf8)
        })
        .collect())
}

/// Casts each value to its parameter's type (the wire decoded it as the client's type).
pub(crate) fn bind_params(params: Vec<ScalarValue>, types: &[DataType]) -> Vec<ScalarValue> {
    params
        .into_iter()
        .zip(types.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(value, ty)| match ty {
            Some(ty) if &value.data_type() != ty && !value.is_null() => {
                cast_param(&value, ty).unwrap_or(value)
            }
            Some(ty) if value.is_null() => ScalarValue::try_from(ty).unwrap_or(value),
            _ => value,
        })
        .collect()
}

pub(crate) fn with_params(plan: LogicalPlan, params: &[ScalarValue]) -> Result<LogicalPlan> {
    if params.is_empty() {
        return Ok(plan);
    }
    Ok(plan.with_param_values(params.to_vec())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::parser::parse_sql;

    #[test]
    fn table_function_placeholders_take_values_or_typed_nulls() {
        let mut statement =
            parse_sql("SELECT i, $1 FROM generate_series(0, $2) AS t(i)").unwrap().remove(0).statement;
        let mut described = statement.clone();
        let hints = bind_table_function_args(&mut described, &[]);
        assert_eq!(hints.get(&2), Some(&DataType::Int64));
        assert!(!hints.contains_key(&1));
        assert!(described.to_string().contains("generate_series(0, NULL)"), "{described}");
        bind_table_function_args(&mut statement, &[ScalarValue::from("x"), ScalarValue::Int64(Some(-5))]);
        let text = statement.to_string();
        assert!(text.contains("generate_series(0, -5)") && text.contains("i, $1"), "{text}");
    }
}
