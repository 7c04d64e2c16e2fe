//! BM25 full-text search, planned: `col @@@ 'query'`, `bm25_score(col, 'query')`, and
//! `ORDER BY bm25_score(col, 'query') DESC LIMIT k` as one top-k search of the index.
//!
//! `@@@` is planned as the function `bm25_match`. [`Bm25Rule`] (a logical optimizer
//! rule, as [`crate::search::knn::KnnRule`]) finds the `bm25_match` terms among the
//! filters on a scan of a Tarn table and puts a [`Bm25Node`] in place of the scan and
//! its filters. The node yields the rows that match every term and pass every other
//! filter, with one more column per `bm25_score(col, q)` the statement uses anywhere,
//! and every such call above becomes a reference to that column. A score is then an
//! ordinary column: it keeps its value through projections, joins, CTEs, windows and
//! subqueries (the bug class of a score computed out of the scan's reach cannot
//! occur). A `Sort` with a fetch on one score, descending, through projections and
//! ranking windows over the same order, makes the node a top-k search (the plain-SQL
//! RRF form ranks in a window below its `LIMIT`).
//!
//! A `bm25_score` or `@@@` the rule cannot serve (no `@@@` on the table, no bm25 index
//! on the column, an `OR` around it) reaches execution and fails with a clear error:
//! there is no row-at-a-time evaluation that would re-tokenize every row per query.
//! The search itself is [`crate::search::text_search`].

use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DFSchemaRef, Result as DfResult, ScalarValue, TableReference};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, Extension, LogicalPlan, Projection, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, TableScan, UserDefinedLogicalNodeCore, Volatility,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::catalog::provider::{AsOfTable, TarnTable};
use crate::error::EngineError;

/// `col @@@ query`.
pub const MATCH: &str = "bm25_match";
/// `bm25_score(col, query)`.
pub const SCORE: &str = "bm25_score";
/// `snippet(col, query [, start_tag, end_tag, max_chars])`.
pub const SNIPPET: &str = "snippet";

/// The functions: `bm25_match` (what `@@@` plans to) and `bm25_score`. Each runs only
/// as part of a search the rule plans; evaluated on its own it explains why not.
pub fn functions() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(Bm25Function::new(MATCH, DataType::Boolean)),
        ScalarUDF::from(Bm25Function::new(SCORE, DataType::Float32)),
        ScalarUDF::from(Bm25Function::new(SNIPPET, DataType::Utf8)),
    ]
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bm25Function {
    name: &'static str,
    returns: DataType,
    signature: Signature,
}

impl Bm25Function {
    fn new(name: &'static str, returns: DataType) -> Self {
        let signature = if name == SNIPPET {
            Signature::variadic_any(Volatility::Immutable)
        } else {
            Signature::any(2, Volatility::Immutable)
        };
        Bm25Function { name, returns, signature }
    }
}

impl ScalarUDFImpl for Bm25Function {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let what = match self.name {
            MATCH => "col @@@ query",
            SCORE => "bm25_score(col, query)",
            _ => "snippet(col, query, ...)",
        };
        Err(EngineError::unsupported(format!(
            "{what} runs only as a search of a bm25 index: the column must be a column of a Tarn table \
             with a bm25 index (CREATE INDEX ... USING bm25), the table must have `col @@@ query` \
             among the AND-ed conditions of its WHERE clause, and the query must be a constant or a parameter"
        ))
        .into_datafusion())
    }
}

/// Plans ParadeDB's `@@@` as `bm25_match`.
#[derive(Debug, Default)]
pub struct TextOperators;

impl ExprPlanner for TextOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        _schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let is_match = match &expr.op {
            BinaryOperator::Custom(s) => s == "@@@",
            BinaryOperator::PGCustomBinaryOperator(path) => path.last().is_some_and(|s| s == "@@@"),
            _ => false,
        };
        if !is_match {
            return Ok(PlannerResult::Original(expr));
        }
        let udf = functions().into_iter().find(|f| f.name() == MATCH).expect("bm25_match exists");
        Ok(PlannerResult::Planned(Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::new(udf),
            vec![expr.left, expr.right],
        ))))
    }
}

/// A call of `name` on a column and a constant or parameter query: the column and the
/// query.
fn call_of<'a>(expr: &'a Expr, name: &str) -> Option<(&'a Column, QueryText)> {
    let Expr::ScalarFunction(f) = expr else { return None };
    if f.func.name() != name {
        return None;
    }
    match f.args.as_slice() {
        [Expr::Column(column), query] => Some((column, QueryText::of(query)?)),
        _ => None,
    }
}

/// What a term searches for: the query's text, or a parameter of a prepared
/// statement whose plan is kept (named as the plan shows it, `$1`), whose text the
/// node's physical planner reads once it has a value (see [`Bm25Node::bound`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueryText {
    Text(String),
    Param(String),
}

impl QueryText {
    fn of(expr: &Expr) -> Option<QueryText> {
        match expr {
            Expr::Literal(value, _) => Some(QueryText::Text(literal_text(value)?.to_string())),
            other if crate::search::query_value::of_parameters(other) => {
                Some(QueryText::Param(other.to_string()))
            }
            _ => None,
        }
    }

    /// The text searched for (an error for a parameter not bound yet).
    pub fn text(&self) -> DfResult<&str> {
        match self {
            QueryText::Text(text) => Ok(text),
            QueryText::Param(name) => Err(internal(&format!("query {name} has no value"))),
        }
    }
}

impl fmt::Display for QueryText {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            QueryText::Text(text) => write!(f, "{text:?}"),
            QueryText::Param(name) => f.write_str(name),
        }
    }
}

fn literal_text(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
            Some(s)
        }
        _ => None,
    }
}

/// The name of the node's column holding `bm25_score(column, query)`.
fn score_column_name(column: &str, query: &QueryText) -> String {
    format!("bm25_score({column}, {query})")
}

/// `snippet(column, query [, start_tag, end_tag, max_chars])` with constant arguments:
/// the column and the snippet asked for.
fn snippet_call(expr: &Expr) -> Option<(&Column, Snippet)> {
    let Expr::ScalarFunction(f) = expr else { return None };
    if f.func.name() != SNIPPET {
        return None;
    }
    let (Expr::Column(column), query) = (f.args.first()?, f.args.get(1)?) else {
        return None;
    };
    let text = |i: usize, default: &str| match f.args.get(i) {
        None => Some(default.to_string()),
        Some(Expr::Literal(v, _)) => literal_text(v).map(str::to_string),
        Some(_) => None,
    };
    let max_chars = match f.args.get(4) {
        None => DEFAULT_SNIPPET_CHARS,
        Some(Expr::Literal(v, _)) => match v {
            ScalarValue::Int64(Some(n)) => *n,
            ScalarValue::Int32(Some(n)) => i64::from(*n),
            _ => return None,
        },
        Some(_) => return None,
    };
    if f.args.len() > 5 {
        return None;
    }
    let snippet = Snippet {
        term: Term { column: column.name.clone(), query: QueryText::of(query)? },
        start: text(2, "<b>")?,
        end: text(3, "</b>")?,
        max_chars: max_chars.clamp(1, 1 << 20) as usize,
    };
    Some((column, snippet))
}

/// Characters a snippet has at most, by default (ParadeDB's).
const DEFAULT_SNIPPET_CHARS: i64 = 150;

/// A snippet asked for: the best fragment of a column's text for a query, its
/// matches between two tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Snippet {
    pub term: Term,
    pub start: String,
    pub end: String,
    pub max_chars: usize,
}

impl Snippet {
    fn column_name(&self) -> String {
        format!(
            "snippet({}, {}, {:?}, {:?}, {})",
            self.term.column, self.term.query, self.start, self.end, self.max_chars
        )
    }
}

/// The calls a statement makes: scores and snippets, and the parameter expressions
/// their queries name.
#[derive(Debug, Default)]
struct Calls {
    scores: BTreeSet<Term>,
    snippets: BTreeSet<Snippet>,
    params: Vec<Expr>,
}

impl Calls {
    fn note_param(&mut self, query: &Expr) {
        if crate::search::query_value::of_parameters(query) && !self.params.contains(query) {
            self.params.push(query.clone());
        }
    }
}

/// One `(column, query)` of a search.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Term {
    /// The indexed column (unqualified).
    pub column: String,
    pub query: QueryText,
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}", self.column, self.query)
    }
}

/// The logical rule (see the module docs).
#[derive(Debug, Default)]
pub struct Bm25Rule;

impl OptimizerRule for Bm25Rule {
    fn name(&self) -> &str {
        "tarn_bm25"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        None
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(&self, plan: LogicalPlan, _: &dyn OptimizerConfig) -> DfResult<Transformed<LogicalPlan>> {
        // Every score and snippet the statement asks for, by column name.
        let mut calls = Calls::default();
        let mut any_match = false;
        plan.apply(|node| {
            node.apply_expressions(|expr| {
                expr.apply(|e| {
                    if let Some((column, query)) = call_of(e, SCORE) {
                        calls.scores.insert(Term { column: column.name.clone(), query });
                    }
                    if let Some((_, snippet)) = snippet_call(e) {
                        calls.snippets.insert(snippet);
                    }
                    any_match |= call_of(e, MATCH).is_some();
                    if let Expr::ScalarFunction(f) = e {
                        if [MATCH, SCORE, SNIPPET].contains(&f.func.name()) {
                            if let Some(query) = f.args.get(1) {
                                calls.note_param(query);
                            }
                        }
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        })?;
        // A call on a renamed column (`body AS b`, and the names the session gives
        // output columns) is a call on the column renamed.
        let mut renames: Vec<(String, String)> = Vec::new();
        plan.apply(|node| {
            if let LogicalPlan::Projection(p) = node {
                for expr in &p.expr {
                    if let Expr::Alias(alias) = expr {
                        if let Expr::Column(c) = alias.expr.as_ref() {
                            renames.push((alias.name.clone(), c.name.clone()));
                        }
                    }
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        for _ in 0..4 {
            let scores: Vec<Term> = calls.scores.iter().cloned().collect();
            for term in scores {
                for (_, inner) in renames.iter().filter(|(outer, _)| *outer == term.column) {
                    calls.scores.insert(Term { column: inner.clone(), ..term.clone() });
                }
            }
            let snippets: Vec<Snippet> = calls.snippets.iter().cloned().collect();
            for snippet in snippets {
                for (_, inner) in renames.iter().filter(|(outer, _)| *outer == snippet.term.column) {
                    let term = Term { column: inner.clone(), ..snippet.term.clone() };
                    calls.snippets.insert(Snippet { term, ..snippet.clone() });
                }
            }
        }
        if !any_match {
            if let Some(term) = calls.scores.first().or(calls.snippets.first().map(|s| &s.term)) {
                return Err(not_served(&format!(
                    "bm25_score({}, ...) and snippet need `{} @@@ query` among the AND-ed conditions of \
                     the WHERE clause on the same table",
                    term.column, term.column
                )));
            }
            return Ok(Transformed::no(plan));
        }
        let original = plan.schema().clone();
        // Top-down, so a filter is seen with the scan below it.
        let replaced = plan.transform_down(|node| replace_scan(node, &calls))?;
        let plan = if replaced.transformed {
            with_top_k(replaced.data.transform_up(|node| refer_to_scores(node, &calls))?.data)?
        } else {
            replaced.data
        };
        // A call no node serves would fail on every row: say why now.
        let mut left = None;
        plan.apply(|node| {
            node.apply_expressions(|expr| {
                expr.apply(|e| {
                    let column = call_of(e, MATCH)
                        .or_else(|| call_of(e, SCORE))
                        .map(|(c, _)| c)
                        .or_else(|| snippet_call(e).map(|(c, _)| c))
                        .or_else(|| match e {
                            Expr::ScalarFunction(f) if [MATCH, SCORE, SNIPPET].contains(&f.func.name()) => {
                                f.args.first().and_then(|a| match a {
                                    Expr::Column(c) => Some(c),
                                    _ => None,
                                })
                            }
                            _ => None,
                        });
                    if let Some(column) = column {
                        left = Some(column.name.clone());
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        })?;
        if let Some(column) = left {
            return Err(not_served(&format!(
                "`{column} @@@ query` and bm25_score({column}, ...) run as a search of a bm25 index: \
                 the @@@ must be among the AND-ed conditions of the WHERE clause (not under OR or NOT), \
                 on a column of a Tarn table, with a constant or parameter query"
            )));
        }
        // Score columns carried up for the calls above may reach the top: keep the
        // statement's own columns only.
        let plan = if plan.schema().fields().len() != original.fields().len() {
            let columns = original.columns().into_iter().map(Expr::Column).collect();
            LogicalPlan::Projection(Projection::try_new_with_schema(columns, Arc::new(plan), original)?)
        } else {
            plan
        };
        Ok(Transformed::yes(plan))
    }
}

/// A scan (with the filter right above it) with `@@@` terms becomes a [`Bm25Node`].
fn replace_scan(node: LogicalPlan, calls: &Calls) -> DfResult<Transformed<LogicalPlan>> {
    match node {
        LogicalPlan::TableScan(scan) => match Bm25Node::over(&scan, Vec::new(), calls)? {
            Some(bm25) => Ok(Transformed::yes(bm25)),
            None => Ok(Transformed::no(LogicalPlan::TableScan(scan))),
        },
        LogicalPlan::Filter(filter) if matches!(filter.input.as_ref(), LogicalPlan::TableScan(_)) => {
            let LogicalPlan::TableScan(scan) = filter.input.as_ref() else { unreachable!() };
            let conjuncts = split_conjunction(&filter.predicate).into_iter().cloned().collect();
            match Bm25Node::over(scan, conjuncts, calls)? {
                Some(bm25) => Ok(Transformed::yes(bm25)),
                None => Ok(Transformed::no(LogicalPlan::Filter(filter))),
            }
        }
        other => Ok(Transformed::no(other)),
    }
}

/// One step of the bottom-up rewrite above the nodes: each `bm25_score(col, q)` whose
/// column an input carries becomes a reference to it; a projection passes the score
/// columns of the text columns it passes through; a union's sides drop them.
fn refer_to_scores(node: LogicalPlan, calls: &Calls) -> DfResult<Transformed<LogicalPlan>> {
    match node {
        LogicalPlan::Union(union) => {
            // A side that carries score columns up loses them: a union's sides have
            // the union's columns.
            let width = union.schema.fields().len();
            let mut changed = false;
            let inputs = union
                .inputs
                .iter()
                .map(|input| {
                    if input.schema().fields().len() == width {
                        return Ok(input.clone());
                    }
                    changed = true;
                    let columns =
                        input.schema().columns().into_iter().take(width).map(Expr::Column).collect();
                    Ok(Arc::new(LogicalPlan::Projection(Projection::try_new(columns, input.clone())?)))
                })
                .collect::<DfResult<Vec<_>>>()?;
            let union = LogicalPlan::Union(datafusion::logical_expr::Union { inputs, schema: union.schema });
            Ok(if changed { Transformed::yes(union) } else { Transformed::no(union) })
        }
        LogicalPlan::Extension(_) | LogicalPlan::TableScan(_) => Ok(Transformed::no(node)),
        other => carry_scores(other, calls),
    }
}

fn carry_scores(node: LogicalPlan, calls: &Calls) -> DfResult<Transformed<LogicalPlan>> {
    let inputs: Vec<DFSchemaRef> = node.inputs().iter().map(|i| i.schema().clone()).collect();
    let derived = |f: &Arc<Field>| f.name().starts_with("bm25_score(") || f.name().starts_with("snippet(");
    if !inputs.iter().any(|s| s.fields().iter().any(derived)) {
        return Ok(Transformed::no(node));
    }
    // The input column named `name`, of the relation `of` is of.
    let carried = |of: &Column, name: String| -> Option<Column> {
        let wanted = Column::new(of.relation.clone(), name);
        inputs.iter().any(|s| s.has_column(&wanted)).then_some(wanted)
    };
    let replacement = |e: &Expr| -> Option<Column> {
        if let Some((column, query)) = call_of(e, SCORE) {
            return carried(column, score_column_name(&column.name, &query));
        }
        let (column, snippet) = snippet_call(e)?;
        carried(column, snippet.column_name())
    };
    // The statement's column names stay as they were (`bm25_score(t.body,Utf8("q"))`).
    let names = NamePreserver::new(&node);
    let node = node
        .map_expressions(|expr| {
            let name = names.save(&expr);
            let rewritten = expr.transform_up(|e| match replacement(&e) {
                Some(found) => Ok(Transformed::yes(Expr::Column(found))),
                None => Ok(Transformed::no(e)),
            })?;
            Ok(rewritten.update_data(|e| name.restore(e)))
        })?
        .data;
    let node = match node {
        LogicalPlan::Projection(projection) => {
            let mut exprs = projection.expr.clone();
            for expr in &projection.expr {
                // A text column passed through, maybe renamed: its score and snippet
                // columns go along, renamed alike.
                let (column, name) = match expr {
                    Expr::Column(c) => (c, None),
                    Expr::Alias(alias) => match alias.expr.as_ref() {
                        Expr::Column(c) => (c, Some(alias.name.as_str())),
                        _ => continue,
                    },
                    _ => continue,
                };
                let outer = name.unwrap_or(&column.name);
                let wanted = calls
                    .scores
                    .iter()
                    .filter(|t| t.column == outer)
                    .map(|t| (score_column_name(&column.name, &t.query), score_column_name(outer, &t.query)))
                    .chain(calls.snippets.iter().filter(|s| s.term.column == outer).map(|s| {
                        let inner = Snippet {
                            term: Term { column: column.name.clone(), ..s.term.clone() },
                            ..s.clone()
                        };
                        (inner.column_name(), s.column_name())
                    }));
                for (inner, renamed) in wanted {
                    if let Some(found) = carried(column, inner) {
                        let found = match name {
                            None => Expr::Column(found),
                            Some(_) => Expr::Column(found).alias(renamed),
                        };
                        if !exprs.contains(&found) {
                            exprs.push(found);
                        }
                    }
                }
            }
            LogicalPlan::Projection(Projection::try_new(exprs, projection.input)?)
        }
        other => other.recompute_schema()?,
    };
    Ok(Transformed::yes(node))
}

/// `plan` with each [`Bm25Node`] under a `Sort` with a fetch on one of its scores
/// (descending) made a top-k search.
fn with_top_k(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    Ok(plan
        .transform_down(|node| {
            let LogicalPlan::Sort(sort) = &node else { return Ok(Transformed::no(node)) };
            let (Some(k), [key]) = (sort.fetch, sort.expr.as_slice()) else {
                return Ok(Transformed::no(node));
            };
            let Expr::Column(score) = key.expr.clone().unalias_nested().data else {
                return Ok(Transformed::no(node));
            };
            if key.asc {
                return Ok(Transformed::no(node));
            }
            match top_k_below(&sort.input, &score, k)? {
                Some(input) => Ok(Transformed::yes(LogicalPlan::Sort(datafusion::logical_expr::Sort {
                    expr: sort.expr.clone(),
                    input: Arc::new(input),
                    fetch: sort.fetch,
                }))),
                None => Ok(Transformed::no(node)),
            }
        })?
        .data)
}

/// `plan` (below a top-k sort on `score`) with the node that makes `score` searching for
/// its top k, if only projections and ranking windows over the same order are between.
fn top_k_below(plan: &LogicalPlan, score: &Column, k: usize) -> DfResult<Option<LogicalPlan>> {
    match plan {
        LogicalPlan::Projection(p) => {
            // Follow the score through the projection (which may rename it).
            let Ok(i) = p.schema.index_of_column(score) else { return Ok(None) };
            let Expr::Column(inner) = p.expr[i].clone().unalias_nested().data else { return Ok(None) };
            let Some(input) = top_k_below(&p.input, &inner, k)? else { return Ok(None) };
            Ok(Some(LogicalPlan::Projection(Projection::try_new_with_schema(
                p.expr.clone(),
                Arc::new(input),
                p.schema.clone(),
            )?)))
        }
        LogicalPlan::Window(w) => {
            let key = Expr::Column(score.clone());
            if !w.window_expr.iter().all(|e| crate::search::knn::ranks_by(e, &key, false)) {
                return Ok(None);
            }
            let Some(input) = top_k_below(&w.input, score, k)? else { return Ok(None) };
            Ok(Some(LogicalPlan::Window(datafusion::logical_expr::Window::try_new(
                w.window_expr.clone(),
                Arc::new(input),
            )?)))
        }
        LogicalPlan::SubqueryAlias(a) => {
            let Some(inner) = crate::search::knn::unaliased(a, score) else { return Ok(None) };
            let Some(input) = top_k_below(&a.input, &inner, k)? else { return Ok(None) };
            Ok(Some(LogicalPlan::SubqueryAlias(datafusion::logical_expr::SubqueryAlias::try_new(
                Arc::new(input),
                a.alias.clone(),
            )?)))
        }
        LogicalPlan::Extension(Extension { node }) => {
            let Some(bm25) = node.as_any().downcast_ref::<Bm25Node>() else { return Ok(None) };
            let Some(position) = bm25.score_position(score) else { return Ok(None) };
            Ok(Some(LogicalPlan::Extension(Extension {
                node: Arc::new(Bm25Node { top_k: Some((position, k)), ..bm25.clone() }),
            })))
        }
        _ => Ok(None),
    }
}

/// The rows of a Tarn table that match every `@@@` term and pass every other filter,
/// with a score column per term asked for; the top k by one score when `top_k` is set.
#[derive(Debug, Clone)]
pub struct Bm25Node {
    scan: TableScan,
    /// `col @@@ query` terms: a row must match them all.
    pub(crate) matches: Vec<Term>,
    /// The score columns, after the scan's columns, in this order.
    pub(crate) scores: Vec<Term>,
    /// The snippet columns, after the scores.
    pub(crate) snippets: Vec<Snippet>,
    /// The other filters (on the table's columns).
    pub(crate) filters: Vec<Expr>,
    /// Only the `k` rows with the highest score `scores[i]`, best first.
    pub(crate) top_k: Option<(usize, usize)>,
    /// The parameters the terms' queries name ([`QueryText::Param`]), by name: the
    /// expressions as the plan was made, bound to values before it is run.
    params: Vec<(String, Expr)>,
    schema: DFSchemaRef,
}

impl PartialEq for Bm25Node {
    fn eq(&self, other: &Self) -> bool {
        self.scan == other.scan
            && self.matches == other.matches
            && self.scores == other.scores
            && self.snippets == other.snippets
            && self.filters == other.filters
            && self.top_k == other.top_k
            && self.params == other.params
    }
}

impl Eq for Bm25Node {}

impl Hash for Bm25Node {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.scan.hash(state);
        self.matches.hash(state);
        self.scores.hash(state);
        self.snippets.hash(state);
        self.top_k.hash(state);
    }
}

impl PartialOrd for Bm25Node {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (self == other).then_some(std::cmp::Ordering::Equal)
    }
}

impl Bm25Node {
    /// The node in place of `scan` and `conjuncts` (a filter right above it), if they
    /// have `@@@` terms on the table; every score in `scores` on one of the table's
    /// columns is computed.
    fn over(scan: &TableScan, conjuncts: Vec<Expr>, calls: &Calls) -> DfResult<Option<LogicalPlan>> {
        let Ok(provider) = source_as_provider(&scan.source) else { return Ok(None) };
        // A Tarn table, now or `AS OF VERSION` (pinned when planned physically).
        if provider.downcast_ref::<TarnTable>().is_none() && provider.downcast_ref::<AsOfTable>().is_none() {
            return Ok(None);
        }
        let mut filters: Vec<Expr> = conjuncts;
        for filter in &scan.filters {
            if !filters.contains(filter) {
                filters.push(filter.clone());
            }
        }
        let of_table = |c: &Column| c.relation.as_ref().is_none_or(|r| r.resolved_eq(&scan.table_name));
        let mut matches = Vec::new();
        filters.retain(|f| match call_of(f, MATCH) {
            Some((column, query)) if of_table(column) => {
                let term = Term { column: column.name.clone(), query };
                if !matches.contains(&term) {
                    matches.push(term);
                }
                false
            }
            _ => true,
        });
        if matches.is_empty() {
            return Ok(None);
        }
        // Row policies join the filters inside the search (a secured top k stays
        // complete); a user's filter that could fail or leak on a hidden row stays
        // above the node, where it sees only the rows the policies pass.
        let mut residual = Vec::new();
        // A masked column reads its mask: its index holds the values, so no search
        // over it, and a filter on one stays above the node (which masks its output).
        if let Some(table) = provider.downcast_ref::<TarnTable>().filter(|t| !t.masks().is_empty()) {
            let searched = matches.iter().chain(&calls.scores).chain(calls.snippets.iter().map(|s| &s.term));
            for term in searched {
                if table.is_masked(&term.column) {
                    return Err(EngineError::InsufficientPrivilege {
                        message: format!(
                            "column \"{}\" is masked for the current role: a text search over it would read its values",
                            term.column
                        ),
                    }
                    .into_datafusion());
                }
            }
            let (kept, above): (Vec<Expr>, Vec<Expr>) =
                filters.into_iter().partition(|f| !table.reads_masked(f));
            filters = kept;
            residual = above;
        }
        if let Some(row_filter) = provider.downcast_ref::<TarnTable>().and_then(|t| t.row_filter()) {
            let (kept, above): (Vec<Expr>, Vec<Expr>) =
                filters.into_iter().partition(crate::access::row_security::leakproof);
            filters = kept;
            residual.extend(above);
            filters.push(row_filter.clone());
        }
        let schema = provider.schema();
        let scores: Vec<Term> =
            calls.scores.iter().filter(|t| schema.index_of(&t.column).is_ok()).cloned().collect();
        let snippets: Vec<Snippet> =
            calls.snippets.iter().filter(|s| schema.index_of(&s.term.column).is_ok()).cloned().collect();
        let mut fields: Vec<(Option<TableReference>, Arc<Field>)> =
            scan.projected_schema.iter().map(|(q, f)| (q.cloned(), f.clone())).collect();
        for term in &scores {
            let name = score_column_name(&term.column, &term.query);
            fields.push((Some(scan.table_name.clone()), Arc::new(Field::new(name, DataType::Float32, true))));
        }
        for snippet in &snippets {
            fields.push((
                Some(scan.table_name.clone()),
                Arc::new(Field::new(snippet.column_name(), DataType::Utf8, true)),
            ));
        }
        let schema = Arc::new(DFSchema::new_with_metadata(fields, Default::default())?);
        // The parameters this node's terms name.
        let named: BTreeSet<&QueryText> = matches
            .iter()
            .chain(&scores)
            .chain(snippets.iter().map(|s| &s.term))
            .map(|t| &t.query)
            .filter(|q| matches!(q, QueryText::Param(_)))
            .collect();
        let params = calls
            .params
            .iter()
            .map(|p| (p.to_string(), p.clone()))
            .filter(|(name, _)| named.contains(&QueryText::Param(name.clone())))
            .collect();
        let node =
            Bm25Node { scan: scan.clone(), matches, scores, snippets, filters, top_k: None, params, schema };
        let node = LogicalPlan::Extension(Extension { node: Arc::new(node) });
        match datafusion::logical_expr::utils::conjunction(residual) {
            Some(predicate) => Ok(Some(LogicalPlan::Filter(datafusion::logical_expr::Filter::try_new(
                predicate,
                Arc::new(node),
            )?))),
            None => Ok(Some(node)),
        }
    }

    /// The scan it replaces and the columns it reads: the scan's, the searched ones and
    /// the user's filters' (for the privilege check; the row policies' are not the
    /// user's).
    pub(crate) fn columns_read(&self) -> (&TableScan, BTreeSet<String>) {
        let mut columns = crate::search::knn::scan_columns(&self.scan);
        let terms = self.matches.iter().chain(&self.scores).chain(self.snippets.iter().map(|s| &s.term));
        columns.extend(terms.map(|t| t.column.clone()));
        let row_filter = crate::search::knn::row_filter_of(&self.scan);
        for filter in self.filters.iter().filter(|f| Some(*f) != row_filter.as_ref()) {
            columns.extend(filter.column_refs().into_iter().map(|c| c.name.clone()));
        }
        (&self.scan, columns)
    }

    /// The scan the node reads (for re-pinning a kept plan to a newer snapshot).
    pub(crate) fn scan(&self) -> &TableScan {
        &self.scan
    }

    /// The same search over `scan` (the same table, at another snapshot).
    pub(crate) fn with_scan(&self, scan: TableScan) -> Self {
        Bm25Node { scan, ..self.clone() }
    }

    /// Which score `column` (one of the node's) is.
    fn score_position(&self, column: &Column) -> Option<usize> {
        let width = self.scan.projected_schema.fields().len();
        let i = self.schema.index_of_column(column).ok()?;
        i.checked_sub(width).filter(|&i| i < self.scores.len())
    }
}

/// What column lineage needs (`crate::lineage::columns`).
pub(crate) type Bm25Parts<'a> =
    (&'a TableScan, &'a [Term], &'a [Term], &'a [Snippet], &'a [Expr], Option<(usize, usize)>);

impl Bm25Node {
    /// The scan, the match terms, score terms, snippets, other filters and top k.
    pub(crate) fn lineage_parts(&self) -> Bm25Parts<'_> {
        (&self.scan, &self.matches, &self.scores, &self.snippets, &self.filters, self.top_k)
    }
}

impl UserDefinedLogicalNodeCore for Bm25Node {
    fn name(&self) -> &str {
        "TarnBm25"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    /// The other filters and the parameters: a prepared statement's parameter values
    /// reach the node through them.
    fn expressions(&self) -> Vec<Expr> {
        let mut exprs = self.filters.clone();
        exprs.extend(self.params.iter().map(|(_, e)| e.clone()));
        exprs
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let list = |terms: &[Term]| terms.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
        write!(f, "TarnBm25: table={}, match=[{}]", self.scan.table_name, list(&self.matches))?;
        if !self.scores.is_empty() {
            write!(f, ", scores=[{}]", list(&self.scores))?;
        }
        if !self.snippets.is_empty() {
            let snippets: Vec<String> = self.snippets.iter().map(|s| s.term.to_string()).collect();
            write!(f, ", snippets=[{}]", snippets.join(", "))?;
        }
        if let Some((i, k)) = self.top_k {
            write!(f, ", top_k={k} by {}", self.scores[i])?;
        }
        if !self.filters.is_empty() {
            let filters: Vec<String> = self.filters.iter().map(|e| e.to_string()).collect();
            write!(f, ", filters=[{}]", filters.join(", "))?;
        }
        Ok(())
    }

    fn with_exprs_and_inputs(&self, mut exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        if exprs.len() != self.filters.len() + self.params.len() {
            return Err(internal("node rebuilt with other expressions"));
        }
        let bound = exprs.split_off(self.filters.len());
        let params = self.params.iter().zip(bound).map(|((name, _), e)| (name.clone(), e)).collect();
        Ok(Bm25Node { filters: exprs, params, ..self.clone() })
    }
}

impl Bm25Node {
    /// The node with every parameter query replaced by its text (the parameters
    /// have values by the time it is planned physically). A query that is not text
    /// (a `NULL`) cannot be searched for.
    pub(crate) fn bound(&self, state: &datafusion::execution::context::SessionState) -> DfResult<Bm25Node> {
        if self.params.is_empty() {
            return Ok(self.clone());
        }
        let mut texts = Vec::with_capacity(self.params.len());
        for (name, expr) in &self.params {
            let value = crate::search::query_value::constant_value(expr, state)?;
            let text = literal_text(&value).ok_or_else(|| {
                not_served(&format!("a bm25 search needs a text to search for, not {value}"))
            })?;
            texts.push((QueryText::Param(name.clone()), QueryText::Text(text.to_string())));
        }
        let bind = |term: &Term| match texts.iter().find(|(param, _)| *param == term.query) {
            Some((_, text)) => Term { column: term.column.clone(), query: text.clone() },
            None => term.clone(),
        };
        Ok(Bm25Node {
            matches: self.matches.iter().map(bind).collect(),
            scores: self.scores.iter().map(bind).collect(),
            snippets: self.snippets.iter().map(|s| Snippet { term: bind(&s.term), ..s.clone() }).collect(),
            params: Vec::new(),
            ..self.clone()
        })
    }

    pub(crate) fn table(&self) -> DfResult<Arc<dyn datafusion::catalog::TableProvider>> {
        source_as_provider(&self.scan.source)
    }

    /// The columns of the table the node outputs (before the scores).
    pub(crate) fn projection(&self, table_width: usize) -> Vec<usize> {
        self.scan.projection.clone().unwrap_or_else(|| (0..table_width).collect())
    }

    pub(crate) fn output_schema(&self) -> arrow::datatypes::SchemaRef {
        Arc::new(self.schema.as_arrow().clone())
    }
}

/// A search the statement asks for that no node can serve (0A000).
fn not_served(message: &str) -> DataFusionError {
    EngineError::unsupported(message).into_datafusion()
}

/// An internal error for a plan the rule made wrong.
pub(crate) fn internal(message: &str) -> DataFusionError {
    DataFusionError::Internal(format!("bm25: {message}"))
}
