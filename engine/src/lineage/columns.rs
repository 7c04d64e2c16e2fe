//! Column lineage from a logical plan: for each column a plan outputs, the table columns
//! it came from and how (the OpenLineage `columnLineage` facet's transformations).
//!
//! A column's value comes *directly* from the columns its expression reads: as is
//! (`IDENTITY`), computed (`TRANSFORMATION`) or summarised over rows (`AGGREGATION`,
//! aggregates and window functions); the strongest along the way wins, so `upper(a)`
//! of an identity is a transformation and `sum(upper(a))` an aggregation. Other
//! columns decide *which* rows there are or where a value goes, *indirectly*: a
//! filter's (`FILTER`, also a scan's pushed-down filters and a BM25 match), a join's
//! keys (`JOIN`), a sort's (`SORT`, also a kNN search's vector and a BM25 top k), group
//! keys (`GROUP_BY`), a window's partition and order (`WINDOW`, for its own column) and
//! a `CASE`'s conditions (`CONDITIONAL`). An indirect input is one of the columns the
//! deciding expression reads directly. What decides a node's rows decides every
//! column above it: a filter under a join decides the other side's columns too, a
//! filter under an aggregate decides `count(*)`; a window's and a `CASE`'s only their
//! own column.
//!
//! The walk knows DataFusion's nodes (CTEs and views are subquery aliases by then;
//! subqueries, joins or subquery expressions), Tarn's kNN and BM25 nodes, and reads
//! any other node's columns by name from its inputs. A column read through a mask
//! (`crate::access::masking`) is marked `masking`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Expr, LogicalPlan};
use tarn_storage::lineage::{Subtype, Transformation, TransformationType};
use tarn_storage::table_def::TableName;

use crate::catalog::provider::TarnTable;

/// A table column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    pub table: TableName,
    pub column: String,
}

/// One output column's inputs, each with how it was used.
pub type Edges = BTreeMap<Source, BTreeSet<Transformation>>;

fn direct(subtype: Subtype, masking: bool) -> Transformation {
    Transformation { kind: TransformationType::Direct, subtype, masking }
}

fn indirect(subtype: Subtype) -> Transformation {
    Transformation { kind: TransformationType::Indirect, subtype, masking: false }
}

/// The lineage of each column `plan` outputs, in order.
pub fn column_lineage(plan: &LogicalPlan) -> Vec<Edges> {
    let width = plan.schema().fields().len();
    let Flow { mut columns, rows } = walk(plan);
    columns.resize(width, Edges::new());
    for column in &mut columns {
        merge(column, &rows);
    }
    columns
}

/// How a direct input's use composes with what an expression does to it.
fn compose(before: Subtype, now: Subtype) -> Subtype {
    let rank = |s: Subtype| match s {
        Subtype::Identity => 0,
        Subtype::Transformation => 1,
        _ => 2,
    };
    if rank(now) > rank(before) {
        now
    } else {
        before
    }
}

/// What an expression reads: columns it computes from, columns that decide, and
/// subqueries (each read as a whole).
#[derive(Default)]
struct Reads<'a> {
    /// Columns read, and the indirect use when not direct.
    columns: Vec<(&'a Column, Option<Subtype>)>,
    /// Subquery plans, and the indirect use when not direct.
    subqueries: Vec<(&'a LogicalPlan, Option<Subtype>)>,
    aggregates: bool,
    masks: bool,
}

fn reads(expr: &Expr) -> Reads<'_> {
    let mut found = Reads::default();
    visit(expr, None, &mut found);
    found
}

fn visit<'a>(expr: &'a Expr, deciding: Option<Subtype>, found: &mut Reads<'a>) {
    match expr {
        Expr::Column(column) => found.columns.push((column, deciding)),
        Expr::Case(case) => {
            let conditional = deciding.or(Some(Subtype::Conditional));
            if let Some(operand) = &case.expr {
                visit(operand, conditional, found);
            }
            for (when, then) in &case.when_then_expr {
                visit(when, conditional, found);
                visit(then, deciding, found);
            }
            if let Some(otherwise) = &case.else_expr {
                visit(otherwise, deciding, found);
            }
        }
        Expr::WindowFunction(window) => {
            found.aggregates = true;
            let params = &window.params;
            for arg in &params.args {
                visit(arg, deciding, found);
            }
            let windowing = deciding.or(Some(Subtype::Window));
            for e in params.partition_by.iter().chain(params.order_by.iter().map(|s| &s.expr)) {
                visit(e, windowing, found);
            }
        }
        Expr::AggregateFunction(aggregate) => {
            found.aggregates = true;
            for arg in &aggregate.params.args {
                visit(arg, deciding, found);
            }
            if let Some(filter) = &aggregate.params.filter {
                visit(filter, deciding.or(Some(Subtype::Filter)), found);
            }
            for sort in &aggregate.params.order_by {
                visit(&sort.expr, deciding.or(Some(Subtype::Sort)), found);
            }
        }
        Expr::ScalarSubquery(subquery) => found.subqueries.push((subquery.subquery.as_ref(), deciding)),
        Expr::InSubquery(in_subquery) => {
            visit(&in_subquery.expr, deciding, found);
            found
                .subqueries
                .push((in_subquery.subquery.subquery.as_ref(), deciding.or(Some(Subtype::Filter))));
        }
        Expr::Exists(exists) => {
            found.subqueries.push((exists.subquery.subquery.as_ref(), deciding.or(Some(Subtype::Filter))))
        }
        _ => {
            if let Expr::ScalarFunction(f) = expr {
                let name = f.func.name();
                found.masks |=
                    matches!(name, "tarn_mask" | "sha256" | "sha224" | "sha384" | "sha512" | "md5");
            }
            let _ = expr.apply_children(|child| {
                visit(child, deciding, found);
                Ok(TreeNodeRecursion::Continue)
            });
        }
    }
}

/// Whether `expr` is a column, aliased or not.
fn is_column(expr: &Expr) -> bool {
    match expr {
        Expr::Column(_) => true,
        Expr::Alias(alias) => is_column(&alias.expr),
        _ => false,
    }
}

/// The columns of the plans an expression is evaluated over: each input's schema and
/// lineage, searched in order.
struct Scope<'a> {
    inputs: Vec<(&'a DFSchema, &'a [Edges])>,
}

impl<'a> Scope<'a> {
    fn of(schema: &'a DFSchema, lineage: &'a [Edges]) -> Scope<'a> {
        Scope { inputs: vec![(schema, lineage)] }
    }

    fn column(&self, column: &Column) -> Option<&'a Edges> {
        self.inputs.iter().find_map(|(schema, lineage)| lineage.get(schema.index_of_column(column).ok()?))
    }

    /// `expr`'s value: its direct inputs composed with what it does (`IDENTITY` for a
    /// bare column), and the indirect ones it carries or adds.
    fn value(&self, expr: &Expr) -> Edges {
        let bare = is_column(expr);
        let found = reads(expr);
        let doing = if bare {
            Subtype::Identity
        } else if found.aggregates {
            Subtype::Aggregation
        } else {
            Subtype::Transformation
        };
        let mut out = Edges::new();
        let mut add = |edges: &Edges, deciding: Option<Subtype>| {
            for (source, uses) in edges {
                for t in uses {
                    let now = match (t.kind, deciding) {
                        (TransformationType::Direct, None) => {
                            direct(compose(t.subtype, doing), t.masking || found.masks)
                        }
                        (TransformationType::Direct, Some(subtype)) => indirect(subtype),
                        (TransformationType::Indirect, _) => *t,
                    };
                    out.entry(source.clone()).or_default().insert(now);
                }
            }
        };
        for (column, deciding) in &found.columns {
            if let Some(edges) = self.column(column) {
                add(edges, *deciding);
            }
        }
        for (subquery, deciding) in &found.subqueries {
            // A scalar subquery's value is computed from its column; what decided
            // its rows decides the value too.
            let flow = walk(subquery);
            for edges in &flow.columns {
                add(edges, *deciding);
            }
            add(&flow.rows, None);
        }
        out
    }

    /// The direct inputs of `exprs`, as indirect inputs of kind `subtype`.
    fn deciding(&self, exprs: impl IntoIterator<Item = &'a Expr>, subtype: Subtype) -> Edges {
        let mut out = Edges::new();
        for expr in exprs {
            for (source, uses) in self.value(expr) {
                if uses.iter().any(|t| t.kind == TransformationType::Direct) {
                    out.entry(source).or_default().insert(indirect(subtype));
                }
            }
        }
        out
    }
}

fn merge(into: &mut Edges, from: &Edges) {
    for (source, uses) in from {
        into.entry(source.clone()).or_default().extend(uses.iter().copied());
    }
}

/// What a plan node outputs: each column's own inputs, and the indirect inputs that
/// decided its rows (which there are, in which order), which every column has.
#[derive(Default)]
struct Flow {
    columns: Vec<Edges>,
    rows: Edges,
}

impl Flow {
    /// The rows also decided by `deciding`.
    fn decided(mut self, deciding: Edges) -> Flow {
        merge(&mut self.rows, &deciding);
        self
    }

    fn empty(width: usize) -> Flow {
        Flow { columns: vec![Edges::new(); width], rows: Edges::new() }
    }

    /// Adds `other`'s columns, position by position, and rows (a union's inputs).
    fn absorb(&mut self, other: &Flow) {
        for (into, from) in self.columns.iter_mut().zip(&other.columns) {
            merge(into, from);
        }
        merge(&mut self.rows, &other.rows);
    }
}

fn walk(plan: &LogicalPlan) -> Flow {
    match plan {
        LogicalPlan::Projection(p) => {
            let input = walk(&p.input);
            let scope = Scope::of(p.input.schema(), &input.columns);
            let columns = p.expr.iter().map(|e| scope.value(e)).collect();
            Flow { columns, rows: input.rows }
        }
        LogicalPlan::Filter(f) => {
            let input = walk(&f.input);
            let deciding =
                Scope::of(f.input.schema(), &input.columns).deciding([&f.predicate], Subtype::Filter);
            input.decided(deciding)
        }
        LogicalPlan::Sort(s) => {
            let input = walk(&s.input);
            let scope = Scope::of(s.input.schema(), &input.columns);
            let deciding = scope.deciding(s.expr.iter().map(|e| &e.expr), Subtype::Sort);
            input.decided(deciding)
        }
        LogicalPlan::Aggregate(a) => {
            let input = walk(&a.input);
            let scope = Scope::of(a.input.schema(), &input.columns);
            let deciding = scope.deciding(&a.group_expr, Subtype::GroupBy);
            let columns = a.group_expr.iter().chain(&a.aggr_expr).map(|e| scope.value(e)).collect();
            Flow { columns, rows: input.rows }.decided(deciding)
        }
        LogicalPlan::Window(w) => {
            let input = walk(&w.input);
            let scope = Scope::of(w.input.schema(), &input.columns);
            let windows: Vec<Edges> = w.window_expr.iter().map(|e| scope.value(e)).collect();
            Flow { columns: input.columns.iter().cloned().chain(windows).collect(), rows: input.rows }
        }
        LogicalPlan::Join(join) => {
            use datafusion::common::JoinType;
            let (left, right) = (walk(&join.left), walk(&join.right));
            let scope = Scope {
                inputs: vec![
                    (join.left.schema().as_ref(), &left.columns[..]),
                    (join.right.schema().as_ref(), &right.columns[..]),
                ],
            };
            let keys = join.on.iter().flat_map(|(l, r)| [l, r]).chain(join.filter.iter());
            let deciding = scope.deciding(keys, Subtype::Join);
            let columns = match join.join_type {
                JoinType::LeftSemi | JoinType::LeftAnti => left.columns.clone(),
                JoinType::RightSemi | JoinType::RightAnti => right.columns.clone(),
                JoinType::LeftMark => left.columns.iter().cloned().chain([Edges::new()]).collect(),
                JoinType::RightMark => right.columns.iter().cloned().chain([Edges::new()]).collect(),
                _ => left.columns.iter().chain(&right.columns).cloned().collect(),
            };
            // Each side's rows decide the other's too.
            let mut rows = left.rows;
            merge(&mut rows, &right.rows);
            Flow { columns, rows }.decided(deciding)
        }
        LogicalPlan::Union(union) => {
            let mut flow = Flow::empty(plan.schema().fields().len());
            for input in &union.inputs {
                flow.absorb(&walk(input));
            }
            flow
        }
        LogicalPlan::RecursiveQuery(r) => {
            let mut flow = walk(&r.static_term);
            flow.absorb(&walk(&r.recursive_term));
            flow
        }
        LogicalPlan::TableScan(scan) => match provider(scan) {
            Some(table) => scan_lineage(tarn(&table), scan, &scan.filters, None),
            None => Flow::empty(scan.projected_schema.fields().len()),
        },
        LogicalPlan::Extension(extension) => {
            let node = extension.node.as_any();
            if let Some(knn) = node.downcast_ref::<crate::search::knn::KnnNode>() {
                let (scan, vector, filters) = knn.lineage_parts();
                let Some(table) = provider(scan) else { return generic(plan) };
                return scan_lineage(tarn(&table), scan, filters, Some(vector));
            }
            if let Some(bm25) = node.downcast_ref::<crate::search::bm25::Bm25Node>() {
                return bm25_lineage(bm25).unwrap_or_else(|| generic(plan));
            }
            generic(plan)
        }
        LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(_)) => positional(plan),
        _ => generic(plan),
    }
}

/// The scan's table, when it is Tarn's.
fn provider(scan: &datafusion::logical_expr::TableScan) -> Option<Arc<dyn TableProvider>> {
    let provider = datafusion::catalog::default_table_source::source_as_provider(&scan.source).ok()?;
    provider.downcast_ref::<TarnTable>().is_some().then_some(provider)
}

/// A scan's columns: each its table's column as is (a masked one transformed, and
/// marked); what its filters read decides its rows, and so does the vector column a
/// kNN search orders by (its position in the table).
fn scan_lineage(
    table: &TarnTable,
    scan: &datafusion::logical_expr::TableScan,
    filters: &[Expr],
    ordered_by: Option<usize>,
) -> Flow {
    let name = table.table().name();
    let source = |column: &str| Source { table: name.clone(), column: column.to_string() };
    let columns: Vec<Edges> = scan
        .projected_schema
        .fields()
        .iter()
        .map(|field| {
            let masked = table.is_masked(field.name());
            let subtype = if masked { Subtype::Transformation } else { Subtype::Identity };
            Edges::from([(source(field.name()), BTreeSet::from([direct(subtype, masked)]))])
        })
        .collect();
    let mut rows = Edges::new();
    for filter in filters {
        for column in filter.column_refs() {
            rows.entry(source(&column.name)).or_default().insert(indirect(Subtype::Filter));
        }
    }
    if let Some(field) = ordered_by.and_then(|position| table.schema().fields().get(position).cloned()) {
        rows.entry(source(field.name())).or_default().insert(indirect(Subtype::Sort));
    }
    Flow { columns, rows }
}

fn bm25_lineage(node: &crate::search::bm25::Bm25Node) -> Option<Flow> {
    let (scan, matches, scores, snippets, filters, top_k) = node.lineage_parts();
    let table = provider(scan)?;
    let table = tarn(&table);
    let name = table.table().name();
    let source = |column: &str| Source { table: name.clone(), column: column.to_string() };
    let mut flow = scan_lineage(table, scan, filters, None);
    let computed = |column: &str| {
        let masked = table.is_masked(column);
        Edges::from([(source(column), BTreeSet::from([direct(Subtype::Transformation, masked)]))])
    };
    flow.columns.extend(scores.iter().map(|term| computed(&term.column)));
    flow.columns.extend(snippets.iter().map(|snippet| computed(&snippet.term.column)));
    for term in matches {
        flow.rows.entry(source(&term.column)).or_default().insert(indirect(Subtype::Filter));
    }
    if let Some(term) = top_k.and_then(|(_, score)| scores.get(score)) {
        flow.rows.entry(source(&term.column)).or_default().insert(indirect(Subtype::Sort));
    }
    Some(flow)
}

fn tarn(provider: &Arc<dyn TableProvider>) -> &TarnTable {
    provider.downcast_ref::<TarnTable>().expect("checked by provider()")
}

/// A node whose columns are its input's, in order.
fn positional(plan: &LogicalPlan) -> Flow {
    match plan.inputs().first() {
        Some(input) => walk(input),
        None => Flow::default(),
    }
}

/// Any other node: each column is the input column of the same name (qualified, then
/// unqualified), or has no known inputs; its inputs' rows decide its rows.
fn generic(plan: &LogicalPlan) -> Flow {
    let inputs: Vec<(&LogicalPlan, Flow)> = plan.inputs().into_iter().map(|i| (i, walk(i))).collect();
    let columns = plan
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            let column = Column::new(qualifier.cloned(), field.name());
            inputs
                .iter()
                .find_map(|(input, flow)| {
                    let schema = input.schema();
                    let i = schema
                        .index_of_column(&column)
                        .ok()
                        .or_else(|| schema.index_of_column_by_name(None, field.name()))?;
                    flow.columns.get(i).cloned()
                })
                .unwrap_or_default()
        })
        .collect();
    let mut rows = Edges::new();
    for (_, flow) in &inputs {
        merge(&mut rows, &flow.rows);
    }
    Flow { columns, rows }
}
