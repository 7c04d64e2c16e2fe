//! Result columns as PostgreSQL names them. DataFusion names a column after its
//! expression's text (`Int64(1)`) and refuses two of one name; PostgreSQL shows
//! `?column?`, a function's or type's name, and allows `SELECT 1, 1`. Unnamed select
//! items get unique aliases carrying PostgreSQL's name ([`name_output_columns`], its
//! `FigureColname`), which [`result_schema`] turns back into the names clients see.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{self, SelectItem};

use crate::statements::ddl;

/// Marks aliases given by [`name_output_columns`]: `__tarn_<position>_<name>`.
const OUTPUT_ALIAS_PREFIX: &str = "__tarn_";

/// Gives every unaliased item of the outermost `SELECT` list an alias that is unique
/// (DataFusion refuses two output columns of one name; Postgres allows `SELECT 1, 1`)
/// and carries the name Postgres would show, restored by [`result_schema`].
pub(crate) fn name_output_columns(query: &mut ast::Query) {
    name_set_expr(query.body.as_mut());
    order_set_by_output_names(query);
    alias_apart_from_ordered_columns(query);
}

/// `SELECT CASE a.kind ... END AS kind ... ORDER BY a.kind`: a qualified name in
/// `ORDER BY` is the input's column (PostgreSQL's rule), which DataFusion adds to the
/// select list beside the output column of the same name and then finds ambiguous. The
/// output column takes one of our aliases instead (its name restored for the client),
/// unless `ORDER BY` also names it bare (then the bare name means the output column).
/// Also in a parenthesized query (pgAdmin's default privileges).
fn alias_apart_from_ordered_columns(query: &mut ast::Query) {
    if let ast::SetExpr::Query(inner) = query.body.as_mut() {
        alias_apart_from_ordered_columns(inner);
    }
    let Some(ast::OrderBy { kind: ast::OrderByKind::Expressions(exprs), .. }) = &query.order_by else {
        return;
    };
    let (mut qualified, mut bare) = (Vec::new(), Vec::new());
    for order in exprs {
        match &order.expr {
            ast::Expr::CompoundIdentifier(parts) if parts.len() > 1 => {
                qualified.extend(parts.last().map(ddl::ident));
            }
            ast::Expr::Identifier(name) => bare.push(ddl::ident(name)),
            _ => {}
        }
    }
    let ast::SetExpr::Select(select) = query.body.as_mut() else { return };
    for (position, item) in select.projection.iter_mut().enumerate() {
        let SelectItem::ExprWithAlias { expr, alias } = item else { continue };
        let name = ddl::ident(alias);
        let is_that_column = matches!(expr, ast::Expr::CompoundIdentifier(p) if p.last().map(ddl::ident).as_ref() == Some(&name));
        if qualified.contains(&name) && !bare.contains(&name) && !is_that_column {
            *alias = ast::Ident::with_quote('"', format!("{OUTPUT_ALIAS_PREFIX}{position}_{name}"));
        }
    }
}

/// `... UNION SELECT b.x ... ORDER BY x`: the `ORDER BY` of a set operation names its
/// output columns, which now carry our aliases; a bare name there becomes the alias of
/// the first select's column of that name (DataFusion would look for `x` among the
/// aliased outputs, or find it ambiguous across the branches).
fn order_set_by_output_names(query: &mut ast::Query) {
    let mut first = query.body.as_ref();
    while let ast::SetExpr::SetOperation { left, .. } = first {
        first = left.as_ref();
    }
    let ast::SetExpr::Select(select) = first else { return };
    if !matches!(query.body.as_ref(), ast::SetExpr::SetOperation { .. }) {
        return;
    }
    let outputs: Vec<(String, ast::Ident)> = select
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => {
                Some((output_alias_name(&ddl::ident(alias)), alias.clone()))
            }
            _ => None,
        })
        .collect();
    let Some(ast::OrderBy { kind: ast::OrderByKind::Expressions(exprs), .. }) = &mut query.order_by else {
        return;
    };
    for order in exprs {
        if let ast::Expr::Identifier(name) = &order.expr {
            if let Some((_, alias)) = outputs.iter().find(|(output, _)| *output == ddl::ident(name)) {
                order.expr = ast::Expr::Identifier(alias.clone());
            }
        }
    }
}

/// Every select of a `UNION`/`INTERSECT`/`EXCEPT` is named: DataFusion checks each,
/// and the first one's names are the result's, as in Postgres.
fn name_set_expr(body: &mut ast::SetExpr) {
    let select = match body {
        ast::SetExpr::Select(select) => select,
        ast::SetExpr::SetOperation { left, right, .. } => {
            name_set_expr(left);
            name_set_expr(right);
            return;
        }
        _ => return,
    };
    for (position, item) in select.projection.iter_mut().enumerate() {
        if let SelectItem::UnnamedExpr(expr) = item {
            let name = pg_name_of_sql(expr);
            let alias = ast::Ident::with_quote('"', format!("{OUTPUT_ALIAS_PREFIX}{position}_{name}"));
            *item = SelectItem::ExprWithAlias { expr: expr.clone(), alias };
        }
    }
}

/// The column name Postgres gives an unaliased select item.
pub(crate) fn pg_name_of_sql(expr: &ast::Expr) -> String {
    pg_name_and_strength(expr).0
}

/// PostgreSQL's `FigureColname`: a name and how strongly the expression holds it (2 for
/// a column, function or array constructor, 1 for a type's or `case`, 0 for none). A
/// cast names its column after its type unless what it casts has a strong name.
fn pg_name_and_strength(expr: &ast::Expr) -> (String, u8) {
    use ast::Expr as E;
    let none = || ("?column?".to_string(), 0);
    match expr {
        E::Identifier(ident) => (ddl::ident(ident), 2),
        E::CompoundIdentifier(parts) => (parts.last().map(ddl::ident).unwrap_or_default(), 2),
        E::Function(f) => match f.name.0.last() {
            Some(ast::ObjectNamePart::Identifier(i)) => (ddl::ident(i), 2),
            _ => none(),
        },
        // `(d).grantee`: the field's name.
        E::CompoundFieldAccess { access_chain, .. } => match access_chain.last() {
            Some(ast::AccessExpr::Dot(E::Identifier(field))) => (ddl::ident(field), 2),
            _ => none(),
        },
        E::Array(_) => ("array".to_string(), 2),
        E::Exists { .. } => ("exists".to_string(), 2),
        E::Case { .. } => ("case".to_string(), 1),
        E::Nested(expr) | E::Collate { expr, .. } => pg_name_and_strength(expr),
        E::Cast { expr, data_type, .. } => match pg_name_and_strength(expr) {
            (_, strength) if strength <= 1 => (pg_type_name(data_type), 1),
            strong => strong,
        },
        E::Subquery(query) => match query.body.as_ref() {
            ast::SetExpr::Select(select) => match select.projection.first() {
                Some(SelectItem::UnnamedExpr(inner)) => pg_name_and_strength(inner),
                Some(SelectItem::ExprWithAlias { alias, .. }) => (ddl::ident(alias), 2),
                _ => none(),
            },
            _ => none(),
        },
        _ => none(),
    }
}

/// The name PostgreSQL shows for a type in a cast's column (`1::int` is `int4`,
/// `'[1,2]'::vector(2)` is `vector`, `x::real[]` is `float4`).
fn pg_type_name(data_type: &ast::DataType) -> String {
    use ast::DataType as T;
    match data_type {
        T::Array(
            ast::ArrayElemTypeDef::SquareBracket(inner, _) | ast::ArrayElemTypeDef::AngleBracket(inner),
        )
        | T::Array(ast::ArrayElemTypeDef::Parenthesis(inner)) => pg_type_name(inner),
        T::SmallInt(_) | T::Int2(_) => "int2".into(),
        T::Int(_) | T::Integer(_) | T::Int4(_) => "int4".into(),
        T::BigInt(_) | T::Int8(_) => "int8".into(),
        T::Real | T::Float4 => "float4".into(),
        T::DoublePrecision | T::Float8 | T::Double(_) => "float8".into(),
        T::Boolean | T::Bool => "bool".into(),
        T::Varchar(_) | T::CharacterVarying(_) => "varchar".into(),
        T::Char(_) | T::Character(_) => "bpchar".into(),
        T::Numeric(_) | T::Decimal(_) => "numeric".into(),
        T::Timestamp(_, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) => "timestamptz".into(),
        T::Custom(name, _) => {
            name.0.last().map(|p| p.to_string().trim_matches('"').to_lowercase()).unwrap_or_default()
        }
        other => {
            let text = other.to_string().to_lowercase();
            text.split('(').next().unwrap_or(&text).trim().to_string()
        }
    }
}

/// The result columns of a query, named as Postgres names them: `?column?` for an
/// expression, the function's name for a call (`count`, `avg`), the column's or alias's
/// name otherwise. DataFusion names columns after the expression text (`Int64(1)`).
pub(crate) fn result_schema(plan: &LogicalPlan) -> SchemaRef {
    let schema = arrow_schema(plan);
    let mut node = plan;
    let exprs: Option<Vec<&datafusion::logical_expr::Expr>> = loop {
        match node {
            LogicalPlan::Projection(p) => break Some(p.expr.iter().collect()),
            LogicalPlan::Aggregate(a) => break Some(a.group_expr.iter().chain(&a.aggr_expr).collect()),
            // `DISTINCT ON`'s select list is its own.
            LogicalPlan::Distinct(datafusion::logical_expr::Distinct::On(on)) => {
                break Some(on.select_expr.iter().collect())
            }
            LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::SubqueryAlias(_) => {
                node = node.inputs()[0];
            }
            _ => break None,
        }
    };
    let Some(exprs) = exprs.filter(|e| e.len() == schema.fields().len()) else { return schema };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(exprs)
        .map(|(field, expr)| field.as_ref().clone().with_name(pg_column_name(expr)))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn pg_column_name(expr: &datafusion::logical_expr::Expr) -> String {
    use datafusion::logical_expr::Expr;
    match expr {
        // DataFusion itself aliases `count(*)` (lower case); a user's alias stays as
        // written, even when it is a call's text (Superset's `AS "SUM(amount)"`).
        Expr::Alias(alias) if matches!(alias.expr.as_ref(), Expr::AggregateFunction(f) if alias.name == format!("{}(*)", f.func.name())) => {
            pg_column_name(&alias.expr)
        }
        Expr::Alias(alias) => output_alias_name(&alias.name),
        // A projection above a sort on columns not selected refers to our aliases.
        Expr::Column(column) if column.name.starts_with(OUTPUT_ALIAS_PREFIX) => {
            output_alias_name(&column.name)
        }
        Expr::Column(column) => {
            let name = &column.name;
            let simple = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
            if simple {
                name.clone()
            } else if let Some((function, _)) = name
                .split_once('(')
                .filter(|(f, _)| !f.is_empty() && f.chars().all(|c| c.is_alphanumeric() || c == '_'))
            {
                function.to_lowercase()
            } else {
                "?column?".to_string()
            }
        }
        Expr::ScalarFunction(f) => f.func.name().to_string(),
        Expr::AggregateFunction(f) => f.func.name().to_string(),
        Expr::WindowFunction(f) => f.fun.name().to_string(),
        Expr::Cast(c) => match c.expr.as_ref() {
            Expr::Column(_) | Expr::ScalarFunction(_) => pg_column_name(&c.expr),
            _ => "?column?".to_string(),
        },
        _ => "?column?".to_string(),
    }
}

/// `named`'s columns with the types (and nullability) of `typed`'s, when both have the
/// same columns.
pub(crate) fn typed_as(named: &SchemaRef, typed: &Schema) -> SchemaRef {
    if named.fields().len() != typed.fields().len()
        || named.fields().iter().zip(typed.fields()).all(|(n, t)| n.data_type() == t.data_type())
    {
        return named.clone();
    }
    let fields: Vec<Field> = named
        .fields()
        .iter()
        .zip(typed.fields())
        .map(|(n, t)| n.as_ref().clone().with_data_type(t.data_type().clone()).with_nullable(t.is_nullable()))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, named.metadata().clone()))
}

/// The name an alias of [`name_output_columns`] carries; any other alias as it is.
fn output_alias_name(alias: &str) -> String {
    match alias.strip_prefix(OUTPUT_ALIAS_PREFIX) {
        Some(numbered) => numbered.split_once('_').map_or(numbered, |(_, name)| name).to_string(),
        None => alias.to_string(),
    }
}

pub(crate) fn arrow_schema(plan: &LogicalPlan) -> SchemaRef {
    Arc::new(plan.schema().as_arrow().clone())
}
