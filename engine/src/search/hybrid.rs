//! `hybrid_search(table, text, [vector,] k [, option => value ...])`: keyword relevance and
//! vector similarity fused in one statement.
//!
//! The call is a macro over the plain-SQL form users write for PostgreSQL: in the syntax
//! tree it becomes a derived table of two branches, one ranking by `bm25_score` under
//! `@@@` and one by the vector distance, each `LIMIT`ed to the window and ranked by
//! `ROW_NUMBER()`, fused with a `FULL OUTER JOIN` on the primary key. Each branch is then
//! planned by its own rule ([`crate::search::bm25`], [`crate::search::knn`]) as a top-k
//! search of its index, so `EXPLAIN` shows both. A `WHERE` on the call's own columns
//! (not on `score`, `text_rank` or `vector_rank`) moves into both branches as their
//! filter, so a filtered hybrid query still fills its k rows when k rows match.
//!
//! Output: the table's columns, `score`, `text_rank` and `vector_rank` (NULL for a row
//! the branch did not return), the best `k` by score. Options: `rrf_k` (60), `window`
//! (rows per branch, at least k; 60), `fusion` (`'rrf'`, or `'weighted'`: min-max
//! normalized BM25 score and similarity, `text_weight` (0.5) and its complement),
//! `text_column`, `vector_column` (found from the table's indexes otherwise, or the one
//! vector column of a table without a vector index), `model`.
//!
//! `hybrid_search(table, text, k [, ...])`, without a vector, embeds the text
//! (`embed(text)`, with the model of the vector column's generation expression unless
//! `model` names one), so a table with a generated embedding column is searched by
//! text alone.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    self, Expr as SqlExpr, FunctionArg, FunctionArgExpr, SetExpr, Statement, TableFactor, Value, VisitMut,
    VisitorMut,
};
use tarn_storage::vector_index::Metric;
use tarn_storage::{Table, TableName};

use crate::error::{EngineError, Result};
use crate::statements::ddl;

const NAME: &str = "hybrid_search";
/// The output columns a `WHERE` that stays outside the branches may name.
const OWN_COLUMNS: [&str; 3] = ["score", "text_rank", "vector_rank"];

/// Rewrites every `hybrid_search(...)` in `statement`; `table` finds a table by name.
pub fn rewrite(statement: &mut Statement, table: &dyn Fn(&TableName) -> Result<Arc<Table>>) -> Result<()> {
    struct Rewriter<'a> {
        table: &'a dyn Fn(&TableName) -> Result<Arc<Table>>,
        error: Option<EngineError>,
    }
    impl VisitorMut for Rewriter<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
            let SetExpr::Select(select) = query.body.as_mut() else { return ControlFlow::Continue(()) };
            // The WHERE moves into the branches when the call is the only relation and
            // the WHERE names none of the call's own columns.
            let alone = select.from.len() == 1 && select.from[0].joins.is_empty();
            let movable = alone && select.selection.as_ref().is_some_and(|w| !names_own_columns(w));
            for from in select.from.iter_mut() {
                for factor in
                    std::iter::once(&mut from.relation).chain(from.joins.iter_mut().map(|j| &mut j.relation))
                {
                    if !is_call(factor) {
                        continue;
                    }
                    let filter = if movable { select.selection.take() } else { None };
                    match derived(factor, filter.as_ref(), self.table) {
                        Ok(derived) => *factor = derived,
                        Err(e) => {
                            self.error = Some(e);
                            return ControlFlow::Break(());
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut rewriter = Rewriter { table, error: None };
    let _ = statement.visit(&mut rewriter);
    match rewriter.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn is_call(factor: &TableFactor) -> bool {
    matches!(factor, TableFactor::Table { name, args: Some(_), .. }
        if name.0.len() == 1 && name.to_string().eq_ignore_ascii_case(NAME))
}

fn names_own_columns(expr: &SqlExpr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(expr, |e| {
        let name = match e {
            SqlExpr::Identifier(i) => Some(&i.value),
            SqlExpr::CompoundIdentifier(parts) => parts.last().map(|i| &i.value),
            _ => None,
        };
        if name.is_some_and(|n| OWN_COLUMNS.contains(&n.to_ascii_lowercase().as_str())) {
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// The call's arguments.
struct Call {
    table: TableName,
    text: Query,
    /// `None`: the text's embedding.
    vector: Option<Query>,
    k: u64,
    rrf_k: f64,
    window: u64,
    weighted: bool,
    text_weight: f64,
    text_column: Option<String>,
    vector_column: Option<String>,
    /// The model that embeds the text when no vector is given: this option, else the
    /// model of the vector column's generation expression, else `embed()`'s default.
    model: Option<String>,
}

/// The text or the vector searched for.
enum Query {
    Constant(String),
    /// A statement parameter (`$n`), left in the expansion for the plan to bind.
    Param(usize),
    /// `NULL` (also a parameter when describing before values are bound).
    Null,
}

impl Query {
    fn of(expr: &SqlExpr) -> Result<Query> {
        Ok(match crate::statements::params::placeholder_number(expr) {
            Some(n) => Query::Param(n),
            None => constant(expr)?.map_or(Query::Null, Query::Constant),
        })
    }
}

fn invalid(message: String) -> EngineError {
    EngineError::InvalidParameter { message }
}

/// A constant argument as text (NULL, when describing a statement whose parameters are
/// not bound yet, is `None`).
fn constant(expr: &SqlExpr) -> Result<Option<String>> {
    match expr {
        SqlExpr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => Ok(Some(s.clone())),
            Value::Null => Ok(None),
            other => Err(invalid(format!("{NAME}: unexpected argument {other}"))),
        },
        SqlExpr::Identifier(i) => Ok(Some(i.value.clone())),
        SqlExpr::Cast { expr, .. } | SqlExpr::Nested(expr) => constant(expr),
        SqlExpr::UnaryOp { op: ast::UnaryOperator::Minus, expr } => {
            Ok(constant(expr)?.map(|s| format!("-{s}")))
        }
        other => Err(EngineError::unsupported(format!(
            "{NAME}'s arguments must be constants or parameters, not {other}"
        ))),
    }
}

fn call_of(factor: &TableFactor) -> Result<(Call, Option<ast::TableAlias>)> {
    let TableFactor::Table { args: Some(args), alias, .. } = factor else {
        unreachable!("checked by is_call")
    };
    let mut positional = Vec::new();
    let mut named = Vec::new();
    for arg in &args.args {
        match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => positional.push(e),
            FunctionArg::Named { name, arg: FunctionArgExpr::Expr(e), .. } => {
                named.push((name.value.to_ascii_lowercase(), constant(e)?))
            }
            FunctionArg::ExprNamed {
                name: SqlExpr::Identifier(name), arg: FunctionArgExpr::Expr(e), ..
            } => named.push((name.value.to_ascii_lowercase(), constant(e)?)),
            other => return Err(invalid(format!("{NAME}: unexpected argument {other}"))),
        }
    }
    // Without a query vector, the text's embedding is the vector searched for.
    let (table, text, vector, k) = match positional.as_slice() {
        [table, text, vector, k] => (table, text, Some(vector), k),
        [table, text, k] => (table, text, None, k),
        _ => {
            return Err(invalid(format!(
                "{NAME} takes (table, text query, [query vector,] k [, option => value ...]), given {} positional arguments",
                positional.len()
            )))
        }
    };
    let table = constant(table)?.ok_or_else(|| invalid(format!("{NAME}: the table must not be NULL")))?;
    let table =
        ddl::table_name(&ast::ObjectName::from(table.split('.').map(ast::Ident::new).collect::<Vec<_>>()))?;
    let number = |name: &str, value: &Option<String>| -> Result<f64> {
        value
            .as_deref()
            .unwrap_or("0")
            .parse::<f64>()
            .map_err(|_| invalid(format!("{NAME}: {name} must be a number, not {value:?}")))
    };
    let k = number("k", &constant(k)?)?;
    if !(0.0..=10_000.0).contains(&k) || k.fract() != 0.0 {
        return Err(invalid(format!("{NAME}: k must be a whole number from 0 to 10000, not {k}")));
    }
    let mut call = Call {
        table,
        text: Query::of(text)?,
        vector: vector.map(|v| Query::of(v)).transpose()?,
        k: k as u64,
        rrf_k: 60.0,
        window: 60,
        weighted: false,
        text_weight: 0.5,
        text_column: None,
        vector_column: None,
        model: None,
    };
    for (name, value) in &named {
        match name.as_str() {
            "rrf_k" => call.rrf_k = number(name, value)?,
            "window" => call.window = number(name, value)?.clamp(1.0, 10_000.0) as u64,
            "text_weight" => call.text_weight = number(name, value)?.clamp(0.0, 1.0),
            "fusion" => {
                call.weighted = match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    Some("rrf") | None => false,
                    Some("weighted") | Some("linear") => true,
                    Some(other) => return Err(invalid(format!("{NAME}: fusion is 'rrf' or 'weighted', not '{other}'"))),
                }
            }
            "text_column" => call.text_column = value.clone(),
            "vector_column" => call.vector_column = value.clone(),
            "model" => call.model = value.clone(),
            other => {
                return Err(invalid(format!(
                    "{NAME}: unknown option \"{other}\" (rrf_k, window, fusion, text_weight, text_column, vector_column, model)"
                )))
            }
        }
    }
    Ok((call, alias.clone()))
}

/// The names of the vector columns of a table.
fn vector_columns(schema: &arrow::datatypes::Schema) -> Vec<String> {
    schema
        .fields()
        .iter()
        .filter(|f| crate::search::vector::vector_dims(f.data_type()).is_some())
        .map(|f| f.name().clone())
        .collect()
}

/// The model a generation expression embeds with: `embed(..., 'model')`'s constant.
fn generation_model(sql: &str) -> Option<String> {
    use datafusion::sql::sqlparser::{dialect::PostgreSqlDialect, parser::Parser};
    let expr = Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).ok()?.parse_expr().ok()?;
    let mut model = None;
    let _ = ast::visit_expressions(&expr, |e| {
        if let SqlExpr::Function(f) = e {
            if f.name.to_string().eq_ignore_ascii_case("embed") {
                if let ast::FunctionArguments::List(list) = &f.args {
                    if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))) = list.args.get(1) {
                        model = constant(arg).ok().flatten();
                    }
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    model
}

/// A SQL string literal.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn ident(name: &str) -> String {
    ast::Ident::with_quote('"', name).to_string()
}

/// The derived table the call stands for.
fn derived(
    factor: &TableFactor,
    filter: Option<&SqlExpr>,
    table_of: &dyn Fn(&TableName) -> Result<Arc<Table>>,
) -> Result<TableFactor> {
    let (call, alias) = call_of(factor)?;
    let table = table_of(&call.table)?;
    let snapshot = table.snapshot();
    let manifest = &snapshot.manifest;
    let def = &manifest.table;
    let [key] = def.primary_key.as_slice() else {
        return Err(EngineError::unsupported(format!(
            "{NAME} fuses the two searches on the primary key: table \"{}\" needs a one-column primary key",
            call.table.table
        )));
    };
    let text_column = match &call.text_column {
        Some(c) => c.clone(),
        None => {
            manifest.text_indexes.first().and_then(|d| d.columns.first()).map(|c| c.name.clone()).ok_or_else(
                || EngineError::UndefinedObject {
                    message: format!("table \"{}\" has no bm25 index for {NAME}", call.table.table),
                },
            )?
        }
    };
    let (vector_column, metric) = match (&call.vector_column, manifest.indexes.first()) {
        (Some(c), index) => {
            let metric = manifest
                .indexes
                .iter()
                .find(|d| &d.column == c)
                .or(index)
                .map_or(Metric::Cosine, |d| d.metric);
            (c.clone(), metric)
        }
        (None, Some(index)) => (index.column.clone(), index.metric),
        // Without a vector index, the table's one vector column, searched exactly.
        (None, None) if vector_columns(&snapshot.schema()).len() == 1 => {
            (vector_columns(&snapshot.schema()).remove(0), Metric::Cosine)
        }
        (None, None) => {
            return Err(EngineError::UndefinedObject {
                message: format!(
                    "table \"{}\" has no vector index for {NAME}: create one or name vector_column",
                    call.table.table
                ),
            })
        }
    };
    let operator = match metric {
        Metric::L2 => "<->",
        Metric::Cosine => "<=>",
        Metric::InnerProduct => "<#>",
    };
    let dims = snapshot
        .schema()
        .field_with_name(&vector_column)
        .ok()
        .and_then(|f| crate::search::vector::vector_dims(f.data_type()))
        .unwrap_or(1);
    let q = match &call.text {
        Query::Constant(text) => quoted(text),
        Query::Param(n) => format!("${n}"),
        Query::Null => quoted(""),
    };
    let zeros = || quoted(&format!("[{}]", vec!["0"; dims as usize].join(",")));
    let v = match &call.vector {
        // A constant is read as a vector where it meets the column.
        Some(Query::Constant(vector)) => quoted(vector),
        // A parameter is text, as the other arguments.
        Some(Query::Param(n)) => format!("to_vector(${n}, {dims})"),
        // Any vector of the right size.
        Some(Query::Null) => zeros(),
        None => {
            let model = call
                .model
                .clone()
                .or_else(|| {
                    let column = &def.columns[def.column_index(&vector_column)?];
                    generation_model(column.generated.as_deref()?)
                })
                .map(|m| format!(", {}", quoted(&m)))
                .unwrap_or_default();
            match &call.text {
                Query::Null => zeros(),
                _ => format!("embed({q}{model})"),
            }
        }
    };
    let alias_name = alias.as_ref().map_or(NAME.to_string(), |a| a.name.value.clone());
    let from = format!("{} AS {}", call.table, ident(&alias_name));
    let t = ident(&text_column);
    let extra = filter.map(|f| format!(" AND ({f})")).unwrap_or_default();
    let window = call.window.max(call.k);
    let score = format!("bm25_score({t}, {q})");
    let distance = format!("{} {operator} {v}", ident(&vector_column));
    let text_branch = format!(
        "SELECT {a}.*, ROW_NUMBER() OVER (ORDER BY {score} DESC) AS __rank, {score} AS __score FROM {from} \
         WHERE {t} @@@ {q}{extra} ORDER BY {score} DESC LIMIT {window}",
        a = ident(&alias_name)
    );
    // Ranked by the distance column of the k nearest, not by the distance again: the
    // window then holds no parameter (a prepared call keeps its physical plan, see
    // `statements/plan_template.rs`).
    let vector_branch = format!(
        "SELECT {a}.*, ROW_NUMBER() OVER (ORDER BY __distance) AS __rank FROM (SELECT {a}.*, {distance} AS \
         __distance FROM {from} WHERE TRUE{extra} ORDER BY {distance} LIMIT {window}) AS {a}",
        a = ident(&alias_name)
    );
    let columns: Vec<String> =
        def.columns.iter().map(|c| format!("COALESCE(a.{n}, b.{n}) AS {n}", n = ident(&c.name))).collect();
    let fused = if call.weighted {
        let normalized = |column: &str, lower_is_better: bool| {
            let (lo, hi) = (format!("MIN({column}) OVER ()"), format!("MAX({column}) OVER ()"));
            let scaled = format!("({column} - {lo}) / NULLIF({hi} - {lo}, 0)");
            let scaled = if lower_is_better { format!("1.0 - {scaled}") } else { scaled };
            format!("CASE WHEN {column} IS NULL THEN 0.0 ELSE COALESCE({scaled}, 1.0) END")
        };
        format!(
            "{} * ({}) + {} * ({})",
            call.text_weight,
            normalized("a.__score", false),
            1.0 - call.text_weight,
            normalized("b.__distance", true)
        )
    } else {
        format!(
            "COALESCE(1.0 / ({rrf} + a.__rank), 0.0) + COALESCE(1.0 / ({rrf} + b.__rank), 0.0)",
            rrf = call.rrf_k
        )
    };
    let key = ident(key);
    let sql = format!(
        "SELECT * FROM (SELECT {columns}, CAST({fused} AS DOUBLE PRECISION) AS score, a.__rank AS text_rank, \
         b.__rank AS vector_rank FROM ({text_branch}) a FULL OUTER JOIN ({vector_branch}) b ON a.{key} = b.{key}) \
         AS fused ORDER BY score DESC, {key} LIMIT {k}",
        columns = columns.join(", "),
        k = call.k
    );
    let mut statements = crate::statements::parser::parse_sql(&sql)?;
    let Some(Statement::Query(query)) = statements.pop().map(|p| p.statement) else {
        return Err(EngineError::Internal { message: format!("{NAME} expands to no query: {sql}") });
    };
    let alias = alias.unwrap_or(ast::TableAlias {
        explicit: true,
        name: ast::Ident::new(NAME),
        columns: Vec::new(),
        at: None,
    });
    Ok(TableFactor::Derived { lateral: false, subquery: query, alias: Some(alias), sample: None })
}
