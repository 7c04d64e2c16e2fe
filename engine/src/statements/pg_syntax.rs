//! Postgres syntax that catalog queries (psql, JDBC, ODBC, SQLAlchemy) are written in
//! and DataFusion does not take, rewritten in the syntax tree before planning:
//!
//! - `x COLLATE "C"` / `COLLATE pg_catalog.default`: the collation is dropped (Tarn
//!   compares text by bytes, which is what `"C"` means).
//! - `OPERATOR(pg_catalog.~)` and friends: the operator itself.
//! - `'items'::regclass`, `'vector'::regtype`, `'public'::regnamespace`: the OID, looked
//!   up when the statement runs; `c.oid::regclass`, `t.oid::regtype`,
//!   `n.oid::regnamespace`: the name; `'pg_catalog.array_in'::regproc`: the function's
//!   name, which is what Tarn's `regproc` columns hold.
//! - `::pg_catalog.text`, `::pg_catalog.int2[]`: the type without its schema.
//! - `ARRAY(SELECT x FROM ... ORDER BY y)`: `array_agg(x ORDER BY y)` in a scalar
//!   subquery, `'{}'` when it has no rows.
//! - `generate_series` in `FROM`: bounds cast to `bigint`; over columns, an `unnest`.
//!   In a select list (a set-returning function there, psqlODBC's foreign keys): an
//!   `unnest` of the series, a row per value.
//! - `LATERAL unnest(t.a)`: `unnest(t.a)`, lateral anyway; `substring(s FROM
//!   'pattern')`: the regular expression's match.
//! - `pg_show_all_settings()` in `FROM`: `pg_settings`; `aclexplode(acl)` in a select
//!   list: a row per item of `tarn_aclexplode`'s list; `row_to_json(t)` of a derived
//!   table: `json_build_object` of its columns; `c.tableoid`: `c`'s table's OID;
//!   `ARRAY(SELECT generate_series(a, b))`: the series.
//! - `information_schema._pg_expandarray(a)`: `unnest` of its elements and positions;
//!   `(composite).field`: `get_field`; `generate_subscripts(a, 1)`: `unnest` of
//!   `1..cardinality(a)`.
//! - `substring(x FROM a FOR b)`: `substr(x, a, b)`, which takes `bytea` too;
//!   `length(x)`: `tarn_length(x)`, the same.
//! - `chunk_text(...)` in a select list: `unnest(tarn_chunk_text(...))`, a row per chunk.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, DataType as SqlType, Expr as SqlExpr, FunctionArg, FunctionArgExpr,
    FunctionArgumentClause, FunctionArguments, Ident, ObjectName, ObjectNamePart, OrderByKind, SelectItem,
    SetExpr, Statement, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::statements::ddl;
use crate::statements::literals::call;

/// Applies the rewrites above to every expression of `statement`, and takes
/// `pg_catalog.` off table functions (`FROM pg_catalog.unnest(...)`): Tarn's functions
/// have no schema.
pub fn rewrite(statement: &mut Statement) {
    let _ = ast::VisitMut::visit(statement, &mut Rewriter);
}

struct Rewriter;

impl ast::VisitorMut for Rewriter {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
        rewrite_expr(expr);
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        series_rows(query.body.as_mut());
        each_select(query.body.as_mut(), &mut |select| {
            rows_to_json(select);
            table_oids(select);
        });
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut ast::TableFactor) -> ControlFlow<()> {
        // `LATERAL unnest(t.a)`: an unnest in FROM reads the rows before it anyway
        // (PostgreSQL makes it lateral implicitly; see `lateral_unnest`).
        if let ast::TableFactor::Function { lateral: true, name, args, alias, with_ordinality: false } =
            factor
        {
            let last = name.0.last().map(|part| part.to_string());
            if last.is_some_and(|n| n.eq_ignore_ascii_case("unnest")) {
                *factor = unnest(plain_args(args), alias.take());
            }
        }
        if let ast::TableFactor::Table { name, args: Some(args), alias, .. } = factor {
            if matches!(name.0.as_slice(), [ObjectNamePart::Identifier(s), _] if s.value.eq_ignore_ascii_case("pg_catalog"))
            {
                name.0.remove(0);
                // `unnest` in FROM is its own construct to the planner.
                if name.to_string().eq_ignore_ascii_case("unnest") {
                    *factor = unnest(plain_args(&args.args), alias.take());
                }
            }
        }
        // `pg_show_all_settings()`: the function behind the `pg_settings` view.
        if let ast::TableFactor::Table { name, args: Some(_), alias, .. } = factor {
            if name.to_string().eq_ignore_ascii_case("pg_show_all_settings") {
                let alias = alias.take().unwrap_or_else(|| table_alias("pg_show_all_settings"));
                *factor = ast::TableFactor::Table {
                    name: ObjectName::from(vec![Ident::new("pg_catalog"), Ident::new("pg_settings")]),
                    alias: Some(alias),
                    args: None,
                    with_hints: vec![],
                    version: None,
                    with_ordinality: false,
                    partitions: vec![],
                    json_path: None,
                    sample: None,
                    index_hints: vec![],
                };
                return ControlFlow::Continue(());
            }
        }
        // `generate_series(0, array_upper(a, 1)) s` reading columns: the planner wants
        // constants for a table function, so it becomes `unnest` of the array one.
        if let ast::TableFactor::Table { name, args: Some(args), alias, .. } = factor {
            let is_series = name.to_string().eq_ignore_ascii_case("generate_series");
            let constant = |a: &FunctionArg| matches!(a, FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) if !has_column(e));
            if is_series && args.args.iter().all(constant) {
                // Its bounds may be `int4` (`array_upper(...)`); the table function
                // takes `bigint`.
                for arg in &mut args.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
                        if !matches!(e, SqlExpr::Value(_)) {
                            *e = bigint(take(e));
                        }
                    }
                }
                // An alias names its one column too (`generate_series(1, 3) g` reads
                // `g`), as in Postgres. (Without one it stays DataFusion's `value`.)
                if let Some(alias) = alias.as_mut().filter(|a| a.columns.is_empty()) {
                    alias
                        .columns
                        .push(ast::TableAliasColumnDef { name: alias.name.clone(), data_type: None });
                }
            } else if is_series {
                let alias = alias.take().unwrap_or_else(|| table_alias("generate_series"));
                *factor = unnest(vec![call("generate_series", plain_args(&args.args))], Some(alias));
            }
        }
        // `unnest(a)` alone is named `unnest`, table and column, as in Postgres.
        if let ast::TableFactor::UNNEST { alias: alias @ None, array_exprs, .. } = factor {
            if array_exprs.len() == 1 {
                *alias = Some(table_alias("unnest"));
            }
        }
        // `unnest(a) x`: `x` names the column too, as in Postgres.
        if let ast::TableFactor::UNNEST { alias: Some(alias), array_exprs, .. } = factor {
            if alias.columns.is_empty() && array_exprs.len() == 1 {
                alias.columns.push(ast::TableAliasColumnDef { name: alias.name.clone(), data_type: None });
            }
        }
        ControlFlow::Continue(())
    }
}

/// `SELECT generate_series(a, b) [AS x]`: a row per value, as the set-returning
/// function gives them in PostgreSQL (DataFusion's `generate_series` is an array).
fn series_rows(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for item in &mut select.projection {
                let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item else {
                    continue;
                };
                let SqlExpr::Function(f) = e else { continue };
                let name = f.name.0.last().map(|p| p.to_string().to_ascii_lowercase()).unwrap_or_default();
                if name == "generate_series" {
                    *e = call("unnest", vec![take(e)]);
                } else if name == "chunk_text" {
                    // A row per chunk (functions::text_prep).
                    f.name = ObjectName::from(vec![Ident::new("tarn_chunk_text")]);
                    *e = call("unnest", vec![take(e)]);
                } else if name == "aclexplode" {
                    // A row per ACL item (`(d).grantee` reads one's field).
                    f.name = ObjectName::from(vec![Ident::new("tarn_aclexplode")]);
                    *e = call("unnest", vec![take(e)]);
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            series_rows(left);
            series_rows(right);
        }
        _ => {}
    }
}

/// Every select of a set operation (`UNION ALL` of pgAdmin's dashboard charts).
fn each_select(body: &mut SetExpr, f: &mut impl FnMut(&mut ast::Select)) {
    match body {
        SetExpr::Select(select) => f(select),
        SetExpr::SetOperation { left, right, .. } => {
            each_select(left, f);
            each_select(right, f);
        }
        SetExpr::Query(query) => each_select(query.body.as_mut(), f),
        _ => {}
    }
}

/// The relations a select's `FROM` names, joined ones included.
fn from_factors(select: &ast::Select) -> impl Iterator<Item = &ast::TableFactor> {
    select
        .from
        .iter()
        .flat_map(|table| std::iter::once(&table.relation).chain(table.joins.iter().map(|j| &j.relation)))
}

/// `row_to_json(t)` of a derived table `t` whose columns are all named:
/// `json_build_object('a', t."a", ...)` (pgAdmin's dashboard charts). A whole-row
/// reference is otherwise not something DataFusion has.
fn rows_to_json(select: &mut ast::Select) {
    let mut derived: Vec<(String, Vec<String>)> = Vec::new();
    for factor in from_factors(select) {
        let ast::TableFactor::Derived { subquery, alias: Some(alias), .. } = factor else { continue };
        let SetExpr::Select(inner) = subquery.body.as_ref() else { continue };
        let names: Option<Vec<String>> = inner
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => Some(ddl::ident(alias)),
                SelectItem::UnnamedExpr(SqlExpr::Identifier(i)) => Some(ddl::ident(i)),
                SelectItem::UnnamedExpr(SqlExpr::CompoundIdentifier(parts)) => parts.last().map(ddl::ident),
                _ => None,
            })
            .collect();
        if let Some(names) = names {
            derived.push((ddl::ident(&alias.name), names));
        }
    }
    if derived.is_empty() {
        return;
    }
    let _ = ast::visit_expressions_mut(&mut select.projection, |e| {
        let SqlExpr::Function(f) = e else { return ControlFlow::<()>::Continue(()) };
        let is_row_to_json =
            f.name.0.last().is_some_and(|p| p.to_string().eq_ignore_ascii_case("row_to_json"));
        let FunctionArguments::List(list) = &f.args else { return ControlFlow::Continue(()) };
        let [FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Identifier(row)))] = list.args.as_slice()
        else {
            return ControlFlow::Continue(());
        };
        let found = derived.iter().find(|(alias, _)| *alias == ddl::ident(row)).filter(|_| is_row_to_json);
        if let Some((alias, names)) = found {
            let mut args = Vec::with_capacity(names.len() * 2);
            for name in names {
                args.push(SqlExpr::Value(Value::SingleQuotedString(name.clone()).into()));
                args.push(SqlExpr::CompoundIdentifier(vec![
                    Ident::with_quote('"', alias),
                    Ident::with_quote('"', name),
                ]));
            }
            *e = call("json_build_object", args);
        }
        ControlFlow::Continue(())
    });
}

/// `c.tableoid` (the system column naming the table a row came from) of a table in
/// this select's `FROM`: that table's OID, `tarn_regclass('pg_catalog.pg_class')`.
fn table_oids(select: &mut ast::Select) {
    let mut tables: Vec<(String, String)> = Vec::new();
    for factor in from_factors(select) {
        let ast::TableFactor::Table { name, alias, args: None, .. } = factor else { continue };
        let Some(ObjectNamePart::Identifier(last)) = name.0.last() else { continue };
        let called = ddl::ident(alias.as_ref().map_or(last, |a| &a.name));
        tables.push((called, name.to_string()));
    }
    if tables.is_empty() {
        return;
    }
    let _ = ast::visit_expressions_mut(select, |e| {
        if let SqlExpr::CompoundIdentifier(parts) = e {
            if let [qualifier, column] = parts.as_slice() {
                if column.value.eq_ignore_ascii_case("tableoid") {
                    if let Some((_, name)) =
                        tables.iter().find(|(called, _)| *called == ddl::ident(qualifier))
                    {
                        *e = call(
                            "tarn_regclass",
                            vec![SqlExpr::Value(Value::SingleQuotedString(name.clone()).into())],
                        );
                    }
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

fn rewrite_expr(expr: &mut SqlExpr) {
    match expr {
        // A reserved word in PostgreSQL (no column has that name unquoted) that the
        // parser takes for a column, unlike `current_user`.
        SqlExpr::Identifier(ident)
            if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("current_role") =>
        {
            *expr = call("current_role", vec![]);
        }
        // `substring(s FROM 'pattern')`: the part of `s` the POSIX pattern matches (its
        // first parenthesized group when it has one), as in PostgreSQL; a number after
        // FROM is a position, as before.
        SqlExpr::Substring { expr: inner, substring_from: Some(pattern), substring_for: None, .. } if matches!(pattern.as_ref(), SqlExpr::Value(v) if matches!(v.value, Value::SingleQuotedString(_))) =>
        {
            let matched = call("regexp_match", vec![take(inner), take(pattern)]);
            *expr = SqlExpr::CompoundFieldAccess {
                root: Box::new(matched),
                access_chain: vec![ast::AccessExpr::Subscript(ast::Subscript::Index {
                    index: SqlExpr::Value(Value::Number("1".into(), false).into()),
                })],
            };
        }
        // `length(x)`: DataFusion's planner makes it `character_length` whatever the
        // registry holds; `tarn_length` counts a `bytea`'s bytes too (`functions::bytea`).
        SqlExpr::Function(f) if f.name.0.len() == 1 && f.name.to_string().eq_ignore_ascii_case("length") => {
            f.name = ObjectName::from(vec![Ident::new("tarn_length")]);
        }
        // `substring(x FROM a [FOR b])` with a position: the `substr` function by name,
        // which takes `bytea` too (`functions::bytea`; DataFusion's planner would call
        // its text-only one directly).
        SqlExpr::Substring { expr: inner, substring_from: Some(from), substring_for, .. } => {
            let mut args = vec![take(inner), take(from)];
            if let Some(count) = substring_for {
                args.push(take(count));
            }
            *expr = call("substr", args);
        }
        SqlExpr::Substring { expr: inner, substring_from: None, substring_for: Some(count), .. } => {
            let one = SqlExpr::Value(Value::Number("1".into(), false).into());
            *expr = call("substr", vec![take(inner), one, take(count)]);
        }
        SqlExpr::Collate { expr: inner, collation } if is_byte_collation(collation) => {
            *expr = take(inner);
        }
        SqlExpr::BinaryOp { op: BinaryOperator::PGCustomBinaryOperator(parts), .. } => {
            if let Some(op) = parts.last().and_then(|symbol| operator(symbol)) {
                if let SqlExpr::BinaryOp { op: slot, .. } = expr {
                    *slot = op;
                }
            }
        }
        SqlExpr::Cast { expr: inner, data_type, .. } => {
            if let SqlType::Array(ast::ArrayElemTypeDef::SquareBracket(element, _)) = data_type {
                if let Some(plain) = custom_name(element).and_then(|name| unqualified_type(&name)) {
                    **element = plain;
                }
            }
            // `'pg_class'::regclass::text` is the name again.
            if matches!(data_type, SqlType::Text | SqlType::Varchar(_)) {
                if let Some(name_function) = name_of_oid_call(inner) {
                    *expr = call(name_function, vec![take(inner)]);
                    return;
                }
            }
            if let Some(name) = custom_name(data_type) {
                let literal = matches!(
                    inner.as_ref(),
                    SqlExpr::Value(v) if matches!(v.value, Value::SingleQuotedString(_) | Value::Placeholder(_))
                );
                let call_with = |function: &str, inner: &mut Box<SqlExpr>| call(function, vec![take(inner)]);
                match (name.as_str(), literal) {
                    ("regclass", true) => *expr = call_with("tarn_regclass", inner),
                    ("regclass", false) => *expr = call_with("tarn_regclass_name", inner),
                    ("regtype", true) => *expr = call_with("to_regtype", inner),
                    ("regtype", false) => *expr = call_with("tarn_regtype_name", inner),
                    ("regnamespace", true) => *expr = call_with("tarn_regnamespace", inner),
                    ("regnamespace", false) => *expr = call_with("tarn_regnamespace_name", inner),
                    ("regrole", false) => *expr = call_with("pg_get_userbyid", inner),
                    ("regproc" | "regprocedure", true) => {
                        if let SqlExpr::Value(v) = inner.as_mut() {
                            if let Value::SingleQuotedString(s) = &mut v.value {
                                let bare = s.strip_prefix("pg_catalog.").unwrap_or(s).to_string();
                                *s = bare;
                            }
                        }
                        *expr = take(inner);
                    }
                    ("regproc" | "regprocedure", false) => *expr = take(inner),
                    (other, _) => {
                        if let Some(plain) = unqualified_type(other) {
                            *data_type = plain;
                        }
                    }
                }
            }
        }
        // `LIKE 'a/_b' ESCAPE '/'` (SQLAlchemy): the pattern with backslash escapes,
        // the only ones DataFusion takes.
        SqlExpr::Like { pattern, escape_char, .. } | SqlExpr::ILike { pattern, escape_char, .. } => {
            let Some(escape) = escape_char.as_ref().and_then(|e| match &e.value {
                Value::SingleQuotedString(c) if c.chars().count() == 1 => c.chars().next(),
                _ => None,
            }) else {
                return;
            };
            if escape != '\\' {
                match pattern.as_mut() {
                    SqlExpr::Value(v) if matches!(v.value, Value::SingleQuotedString(_)) => {
                        if let Value::SingleQuotedString(text) = &mut v.value {
                            *text = with_backslash_escapes(text, escape);
                        }
                    }
                    // A parameter (`LIKE $1 ESCAPE '/'`) is rewritten when it has a value.
                    other => {
                        let escape = SqlExpr::value(Value::SingleQuotedString(escape.to_string()));
                        *other = call("tarn_like_escape", vec![take(other), escape]);
                    }
                }
            }
            *escape_char = None;
        }
        // `generate_subscripts(a, 1)` (SQLAlchemy's index columns): a row per position.
        SqlExpr::Function(f) if f.name.to_string().eq_ignore_ascii_case("generate_subscripts") => {
            let FunctionArguments::List(list) = &f.args else { return };
            let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(array))) = list.args.first() else { return };
            let length = bigint(call("cardinality", vec![array.clone()]));
            let one = SqlExpr::value(Value::Number("1".into(), false));
            *expr = call("unnest", vec![call("generate_series", vec![one, length])]);
        }
        // `(composite).field`: DataFusion's `get_field`.
        SqlExpr::CompoundFieldAccess { root, access_chain }
            if access_chain.iter().all(|a| matches!(a, ast::AccessExpr::Dot(SqlExpr::Identifier(_)))) =>
        {
            let mut value = take(root);
            for access in access_chain.iter() {
                if let ast::AccessExpr::Dot(SqlExpr::Identifier(field)) = access {
                    let name = SqlExpr::value(Value::SingleQuotedString(field.value.to_ascii_lowercase()));
                    value = call("get_field", vec![value, name]);
                }
            }
            *expr = value;
        }
        // `information_schema._pg_expandarray(a)` (pgJDBC's keys): a row per element,
        // `(...).x` the element and `(...).n` its position.
        SqlExpr::Function(f)
            if f.name.0.last().is_some_and(|p| p.to_string().eq_ignore_ascii_case("_pg_expandarray")) =>
        {
            f.name = ObjectName::from(vec![Ident::new("tarn_expandarray")]);
            let inner = take(expr);
            *expr = call("unnest", vec![inner]);
        }
        SqlExpr::Function(f) if is_array_subquery(f) => {
            let FunctionArguments::Subquery(query) = &mut f.args else { unreachable!("checked") };
            if let Some(rewritten) = array_of_subquery(query) {
                *expr = rewritten;
            }
        }
        _ => {}
    }
}

/// `FROM unnest(arrays) alias`.
fn unnest(array_exprs: Vec<SqlExpr>, alias: Option<ast::TableAlias>) -> ast::TableFactor {
    ast::TableFactor::UNNEST {
        alias,
        array_exprs,
        with_offset: false,
        with_offset_alias: None,
        with_ordinality: false,
    }
}

/// The `generate_series(a, b)` call in `unnest(generate_series(a, b))` (what
/// [`series_rows`] made of a select item), its bounds as `bigint`.
fn series_of(expr: &mut SqlExpr) -> Option<SqlExpr> {
    let SqlExpr::Function(unnest) = expr else { return None };
    let FunctionArguments::List(list) = &mut unnest.args else { return None };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Function(series)))] = list.args.as_mut_slice()
    else {
        return None;
    };
    let is_series = unnest.name.to_string().eq_ignore_ascii_case("unnest")
        && series.name.0.last().is_some_and(|p| p.to_string().eq_ignore_ascii_case("generate_series"));
    if !is_series {
        return None;
    }
    if let FunctionArguments::List(bounds) = &mut series.args {
        for bound in &mut bounds.args {
            if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = bound {
                *e = bigint(take(e));
            }
        }
    }
    Some(SqlExpr::Function(series.clone()))
}

/// `AS name`.
fn table_alias(name: &str) -> ast::TableAlias {
    ast::TableAlias { explicit: true, name: Ident::new(name), columns: Vec::new(), at: None }
}

/// A call's positional arguments.
fn plain_args(args: &[FunctionArg]) -> Vec<SqlExpr> {
    args.iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// `expr::bigint`.
fn bigint(expr: SqlExpr) -> SqlExpr {
    SqlExpr::Cast {
        kind: ast::CastKind::DoubleColon,
        expr: Box::new(expr),
        data_type: SqlType::BigInt(None),
        array: false,
        format: None,
    }
}

fn has_column(expr: &SqlExpr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(expr, |e| {
        if matches!(e, SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_)) {
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// A LIKE pattern escaped with `escape` as one escaped with a backslash.
pub(crate) fn with_backslash_escapes(pattern: &str, escape: char) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            out.push('\\');
            if let Some(escaped) = chars.next() {
                out.push(escaped);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// For a call that turns a name into an OID (`tarn_regclass('t')`), the function
/// that turns it back.
fn name_of_oid_call(expr: &SqlExpr) -> Option<&'static str> {
    let SqlExpr::Function(f) = expr else { return None };
    match f.name.to_string().as_str() {
        "tarn_regclass" => Some("tarn_regclass_name"),
        "to_regtype" => Some("tarn_regtype_name"),
        "tarn_regnamespace" => Some("tarn_regnamespace_name"),
        _ => None,
    }
}

fn take(expr: &mut SqlExpr) -> SqlExpr {
    std::mem::replace(expr, SqlExpr::value(Value::Null))
}

/// Collations that mean "compare bytes", which is how Tarn compares text.
fn is_byte_collation(collation: &ObjectName) -> bool {
    let name = collation.0.last().map(|p| p.to_string().trim_matches('"').to_ascii_lowercase());
    matches!(name.as_deref(), Some("default" | "c" | "posix" | "ucs_basic"))
}

fn operator(symbol: &str) -> Option<BinaryOperator> {
    Some(match symbol {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "~~" => BinaryOperator::PGLikeMatch,
        "~~*" => BinaryOperator::PGILikeMatch,
        "!~~" => BinaryOperator::PGNotLikeMatch,
        "!~~*" => BinaryOperator::PGNotILikeMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        "||" => BinaryOperator::StringConcat,
        "+" => BinaryOperator::Plus,
        "-" => BinaryOperator::Minus,
        "*" => BinaryOperator::Multiply,
        "/" => BinaryOperator::Divide,
        _ => return None,
    })
}

/// The lower-case name of a custom type without a `pg_catalog.` schema.
fn custom_name(data_type: &SqlType) -> Option<String> {
    if matches!(data_type, SqlType::Regclass) {
        return Some("regclass".into());
    }
    let SqlType::Custom(name, modifiers) = data_type else { return None };
    if !modifiers.is_empty() {
        return None;
    }
    let parts: Vec<String> =
        name.0.iter().map(|p| p.to_string().trim_matches('"').to_ascii_lowercase()).collect();
    match parts.as_slice() {
        [schema, name] if schema == "pg_catalog" => Some(name.clone()),
        [name] => Some(name.clone()),
        _ => None,
    }
}

/// `pg_catalog.text` (a custom type to the parser) as the standard type `text`.
fn unqualified_type(name: &str) -> Option<SqlType> {
    let parsed = Parser::new(&PostgreSqlDialect {}).try_with_sql(name).ok()?.parse_data_type().ok()?;
    (!matches!(parsed, SqlType::Custom(..))).then_some(parsed)
}

fn is_array_subquery(f: &ast::Function) -> bool {
    matches!(f.args, FunctionArguments::Subquery(_))
        && matches!(f.name.0.as_slice(), [ObjectNamePart::Identifier(i)] if i.value.eq_ignore_ascii_case("array"))
}

/// `ARRAY(SELECT x FROM ... ORDER BY y)` as `coalesce((SELECT array_agg(x ORDER BY y)
/// FROM ...), '{}')`, for a subquery of one plain select item; `None` for others.
fn array_of_subquery(query: &mut ast::Query) -> Option<SqlExpr> {
    let SetExpr::Select(select) = query.body.as_mut() else { return None };
    // `ARRAY(SELECT generate_series(1, n))` is the series itself, an array already.
    if select.from.is_empty() && select.selection.is_none() && select.projection.len() == 1 {
        if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } =
            &mut select.projection[0]
        {
            if let Some(series) = series_of(e) {
                return Some(series);
            }
        }
    }
    let plain = select.distinct.is_none()
        && select.having.is_none()
        && matches!(&select.group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
        && query.limit_clause.is_none()
        && query.fetch.is_none()
        && select.projection.len() == 1;
    if !plain {
        return None;
    }
    let item = match &mut select.projection[0] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => take(e),
        _ => return None,
    };
    let order = match query.order_by.take().map(|o| o.kind) {
        // `ORDER BY 1` is the one select item.
        Some(OrderByKind::Expressions(mut exprs)) => {
            for order in &mut exprs {
                if matches!(&order.expr, SqlExpr::Value(v) if v.value == Value::Number("1".into(), false)) {
                    order.expr = item.clone();
                }
            }
            exprs
        }
        Some(OrderByKind::All(_)) => return None,
        None => vec![],
    };
    let mut aggregate = call("array_agg", vec![item]);
    if let SqlExpr::Function(ast::Function { args: FunctionArguments::List(list), .. }) = &mut aggregate {
        if !order.is_empty() {
            list.clauses.push(FunctionArgumentClause::OrderBy(order));
        }
    }
    select.projection[0] = SelectItem::UnnamedExpr(aggregate);
    let subquery = SqlExpr::Subquery(Box::new(query.clone()));
    let empty = SqlExpr::Array(ast::Array { elem: vec![], named: true });
    Some(call("coalesce", vec![subquery, empty]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statement = crate::statements::parser::parse_sql(sql).unwrap().remove(0).statement;
        rewrite(&mut statement);
        statement.to_string()
    }

    #[test]
    fn catalog_syntax_becomes_datafusion_syntax() {
        assert_eq!(
            rewritten("SELECT 1 WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default"),
            "SELECT 1 WHERE c.relname ~ '^(t)$'"
        );
        assert_eq!(
            rewritten("SELECT c.oid::pg_catalog.regclass, 'items'::regclass, x::pg_catalog.text FROM pg_catalog.unnest(a) x"),
            "SELECT tarn_regclass_name(c.oid), tarn_regclass('items'), x::TEXT FROM UNNEST(a) x (x)"
        );
        assert_eq!(
            rewritten("SELECT 1 WHERE n LIKE 'pg/_%' ESCAPE '/' AND m LIKE 'a\\b'"),
            "SELECT 1 WHERE n LIKE 'pg\\_%' AND m LIKE 'a\\b'"
        );
        assert_eq!(
            rewritten("SELECT typinput = 'pg_catalog.array_in'::regproc FROM t"),
            "SELECT typinput = 'array_in' FROM t"
        );
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT b.rolname FROM r b WHERE b.x = a.y ORDER BY 1)"),
            "SELECT coalesce((SELECT array_agg(b.rolname ORDER BY b.rolname) FROM r b WHERE b.x = a.y), ARRAY[])"
        );
    }
}
