//! Views: `CREATE [OR REPLACE] VIEW`, `DROP VIEW`, and what views change of other
//! relations' DDL: `DROP TABLE` of what views read, `ALTER TABLE|VIEW ... RENAME TO`,
//! `ALTER TABLE ... RENAME COLUMN | DROP COLUMN`;
//! `COMMENT ON TABLE | VIEW | COLUMN` of either kind.
//!
//! A view keeps its query as SQL text, its columns (fixed at creation, as in
//! PostgreSQL) and the relations it reads. Reading it plans the query anew
//! ([`plan_view_query`], from `catalog::views::TarnView`). `CREATE OR REPLACE` may add
//! columns at the end but not drop, rename or retype one (42P16), nor make a view read
//! itself (42P17). A DROP of a relation others read needs `CASCADE` (2BP01), which drops
//! those views too. A rename takes the views that read the relation along, as
//! PostgreSQL's (which hold OIDs) do: their queries are rewritten to the new name. So
//! does `ALTER TABLE ... RENAME COLUMN` (they read the table through a derived table
//! that keeps the old name), and `DROP COLUMN` of a column a view may read needs
//! `CASCADE`, as a `DROP TABLE` does.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use arrow::datatypes::{Field, Schema};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, Ident, ObjectName, ObjectNamePart, Statement, VisitorMut};
use std::sync::Arc;
use tarn_storage::table::Table;
use tarn_storage::{StorageError, TableName, ViewDef, Warehouse};

use crate::error::{EngineError, Result};
use crate::statements::column_names::{name_output_columns, result_schema};
use crate::statements::ddl;
use crate::statements::literals::rewrite_typed_casts;
use crate::statements::parser::parse_sql;
use crate::statements::session::Session;
use crate::CommandTag;

/// A view's query as a logical plan, planned with `state`: the reading session's, so
/// the view's tables are read at that session's snapshots.
pub(crate) async fn plan_view_query(state: &SessionState, sql: &str) -> Result<LogicalPlan> {
    let mut parsed = parse_sql(sql)?;
    let statement = match (parsed.pop(), parsed.is_empty()) {
        (Some(parsed), true) => parsed.statement,
        _ => {
            return Err(EngineError::Internal { message: format!("a view's query is one statement: {sql}") })
        }
    };
    let Statement::Query(mut query) = statement else {
        return Err(EngineError::Internal { message: format!("a view's query is a query: {sql}") });
    };
    name_output_columns(&mut query);
    let mut statement = Statement::Query(query);
    crate::statements::pg_syntax::rewrite(&mut statement);
    rewrite_typed_casts(&mut statement);
    Ok(state.statement_to_plan(DfStatement::Statement(Box::new(statement))).await?)
}

/// The warehouse relations a plan reads (its scans, in subqueries too).
fn relations_read(plan: &LogicalPlan, warehouse: &Warehouse, default_schema: &str) -> Vec<TableName> {
    let mut names = BTreeSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let reference = &scan.table_name;
            let name = TableName::new(reference.schema().unwrap_or(default_schema), reference.table());
            if warehouse.table(&name).is_some() || warehouse.view(&name).is_some() {
                names.insert(name);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names.into_iter().collect()
}

/// The views that read any of `names`, directly or through other views.
fn dependents(warehouse: &Warehouse, names: &[TableName]) -> Vec<Arc<ViewDef>> {
    let mut found: Vec<Arc<ViewDef>> = Vec::new();
    let mut frontier: Vec<TableName> = names.to_vec();
    while let Some(name) = frontier.pop() {
        for view in warehouse.all_views() {
            if view.depends_on.contains(&name) && !found.iter().any(|f| f.name == view.name) {
                frontier.push(view.name.clone());
                found.push(view);
            }
        }
    }
    found
}

impl Session {
    pub(crate) async fn create_view(&mut self, create: &ast::CreateView) -> Result<CommandTag> {
        if create.materialized {
            return Err(EngineError::unsupported("materialized views are not supported yet"));
        }
        let name = match create.temporary {
            true => self.temp.place(&create.name).await?,
            false => ddl::table_name(&create.name)?,
        };
        let sql = create.query.to_string();
        let plan = plan_view_query(&self.planning, &sql).await?;
        // Column names as PostgreSQL gives them (`?column?`, a function's name...).
        let planned = result_schema(&plan);
        if create.columns.len() > planned.fields().len() {
            return Err(EngineError::syntax("CREATE VIEW specifies more column names than columns"));
        }
        let fields: Vec<Field> = planned
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let name =
                    create.columns.get(i).map(|c| ddl::ident(&c.name)).unwrap_or_else(|| f.name().clone());
                Field::new(name, f.data_type().clone(), true)
            })
            .collect();
        let warehouse = self.engine.warehouse().clone();
        let default_schema = self.planning.config().options().catalog.default_schema.clone();
        let depends_on = relations_read(&plan, &warehouse, &default_schema);
        // A view of a temporary relation is temporary itself, as in PostgreSQL.
        let name = if depends_on.iter().any(|n| crate::statements::temp::is_temp_schema(&n.schema)) {
            self.temp.place(&create.name).await?
        } else {
            name
        };
        let def = ViewDef {
            name: name.clone(),
            query: sql,
            schema: Arc::new(Schema::new(fields)),
            depends_on,
            comments: Default::default(),
        };
        if dependents(&warehouse, &[name.clone()]).iter().any(|v| def.depends_on.contains(&v.name))
            || def.depends_on.contains(&name)
        {
            return Err(EngineError::InfiniteRecursion {
                message: format!("infinite recursion detected in rules for relation \"{}\"", name.table),
            });
        }
        let new_schema = def.schema.clone();
        let check = |old: Option<&ViewDef>| -> tarn_storage::Result<()> {
            let Some(old) = old else { return Ok(()) };
            replace_check(&old.schema, &new_schema)
                .map_err(|message| StorageError::InvalidDefinition { message })
        };
        warehouse.create_view(def, create.or_replace, create.if_not_exists, check).await?;
        Ok(CommandTag::new("CREATE VIEW"))
    }

    /// `DROP TABLE` (`views` false) or `DROP VIEW`: each name must be of that kind; the
    /// views that read them go too with `cascade`, else the DROP is refused.
    pub(crate) async fn drop_relations(
        &mut self,
        views: bool,
        names: &[ObjectName],
        if_exists: bool,
        cascade: bool,
    ) -> Result<CommandTag> {
        let warehouse = self.engine.warehouse().clone();
        let (kind, other, other_kind) =
            if views { ("view", "table", "TABLE") } else { ("table", "view", "VIEW") };
        let mut dropping = Vec::new();
        for name in names {
            let name = ddl::table_name(name)?;
            let is_table = warehouse.table(&name).is_some() || warehouse.external(&name).is_some();
            let is_view = warehouse.view(&name).is_some();
            if (views && is_table) || (!views && is_view) {
                return Err(EngineError::WrongObjectType {
                    message: format!(
                        "\"{}\" is not a {kind}; use DROP {other_kind} to drop a {other}",
                        name.table
                    ),
                });
            }
            if is_table || is_view {
                dropping.push(name);
            } else if !if_exists {
                return Err(StorageError::TableNotFound { name }.into());
            }
        }
        let readers: Vec<Arc<ViewDef>> =
            dependents(&warehouse, &dropping).into_iter().filter(|v| !dropping.contains(&v.name)).collect();
        if let Some(reader) = readers.first() {
            if !cascade {
                let read = reader.depends_on.iter().find(|n| dropping.contains(n)).unwrap_or(&dropping[0]);
                return Err(EngineError::DependentObjects {
                    message: format!("cannot drop {kind} {} because other objects depend on it", read.table),
                    detail: format!("view {} depends on {kind} {}", reader.name.table, read.table),
                });
            }
        }
        for reader in &readers {
            tracing::info!(view = %reader.name, "drop cascades to view");
            warehouse.drop_view(&reader.name, true).await?;
        }
        for name in &dropping {
            if views {
                warehouse.drop_view(name, true).await?;
            } else if warehouse.external(name).is_some() {
                warehouse.drop_external(name, true).await?;
            } else {
                warehouse.drop_table(name, true).await?;
                // A table made again under the name starts a sample of its own.
                self.engine.samples().forget(name);
            }
        }
        Ok(CommandTag::new(if views { "DROP VIEW" } else { "DROP TABLE" }))
    }

    /// `COMMENT ON TABLE | VIEW | COLUMN name IS 'text' | NULL` (`''` removes it too, as
    /// in PostgreSQL).
    pub(crate) async fn comment_on(
        &mut self,
        kind: &ast::CommentObject,
        name: &ObjectName,
        comment: Option<&str>,
    ) -> Result<CommandTag> {
        let warehouse = self.engine.warehouse().clone();
        let comment = comment.filter(|c| !c.is_empty()).map(str::to_string);
        let (relation, column) = match kind {
            ast::CommentObject::Table | ast::CommentObject::View => (ddl::table_name(name)?, None),
            ast::CommentObject::Column => {
                let mut parts = name.0.clone();
                let column = match parts.pop() {
                    Some(ObjectNamePart::Identifier(column)) if !parts.is_empty() => ddl::ident(&column),
                    _ => return Err(EngineError::syntax(format!("column name must be qualified: {name}"))),
                };
                (ddl::table_name(&ObjectName(parts))?, Some(column))
            }
            other => return Err(EngineError::unsupported(format!("COMMENT ON {other} is not supported"))),
        };
        let (table, view) = (warehouse.table(&relation), warehouse.view(&relation));
        let wrong_kind = match kind {
            ast::CommentObject::Table => view.is_some().then_some("table"),
            ast::CommentObject::View => table.is_some().then_some("view"),
            _ => None,
        };
        if let Some(kind) = wrong_kind {
            return Err(EngineError::WrongObjectType {
                message: format!("\"{}\" is not a {kind}", relation.table),
            });
        }
        if let Some(column) = &column {
            let schema = match (&table, &view) {
                (Some(table), _) => table.snapshot().schema(),
                (_, Some(view)) => view.schema.clone(),
                _ => return Err(StorageError::TableNotFound { name: relation }.into()),
            };
            if schema.field_with_name(column).is_err() {
                return Err(EngineError::UndefinedColumn { column: column.clone() });
            }
        }
        match (table, view) {
            (Some(table), _) => table.set_comment(column.as_deref(), comment).await?,
            (_, Some(_)) => warehouse.comment_on_view(&relation, column.as_deref(), comment).await?,
            _ => return Err(StorageError::TableNotFound { name: relation }.into()),
        }
        Ok(CommandTag::new("COMMENT"))
    }

    /// `ALTER TABLE|VIEW [IF EXISTS] name RENAME TO new`: a table or a view (`ALTER
    /// TABLE` may name a view, as in PostgreSQL; `ALTER VIEW` only a view). The views
    /// that read it read it under the new name.
    pub(crate) async fn rename_relation(
        &mut self,
        name: &ObjectName,
        to: &ObjectName,
        if_exists: bool,
        view_only: bool,
    ) -> Result<CommandTag> {
        let warehouse = self.engine.warehouse().clone();
        let tag = CommandTag::new(if view_only { "ALTER VIEW" } else { "ALTER TABLE" });
        let from = ddl::table_name(name)?;
        let to = match to.0.as_slice() {
            [ObjectNamePart::Identifier(to)] => TableName::new(from.schema.clone(), ddl::ident(to)),
            _ => {
                return Err(EngineError::syntax(format!(
                    "syntax error at or near \"{to}\": a new name has no schema"
                )))
            }
        };
        let is_table = warehouse.table(&from).is_some();
        if !is_table && warehouse.view(&from).is_none() {
            if if_exists {
                return Ok(tag);
            }
            return Err(StorageError::TableNotFound { name: from }.into());
        }
        if view_only && is_table {
            return Err(EngineError::WrongObjectType {
                message: format!("\"{}\" is not a view", from.table),
            });
        }
        let readers = warehouse
            .all_views()
            .iter()
            .filter(|v| v.depends_on.contains(&from))
            .map(|v| renamed_reads(v, &from, &to))
            .collect::<Result<Vec<_>>>()?;
        warehouse.rename_relation(&from, to, readers).await?;
        Ok(tag)
    }

    /// `ALTER TABLE t RENAME COLUMN from TO to`. The views that read `t` keep their
    /// columns and meaning, as PostgreSQL's (which hold column numbers) do: they read
    /// `t` through a derived table that gives `to` its old name.
    /// A column a generation expression reads keeps its name and stays (the
    /// expression is kept as text).
    fn refuse_if_generated_reads(&self, table: &Table, column: &str, what: &str) -> Result<()> {
        let snapshot = table.snapshot();
        let readers = crate::statements::generated::readers_of(&self.ctx.state(), snapshot.def(), column)?;
        match readers.first() {
            None => Ok(()),
            Some(reader) => Err(EngineError::DependentObjects {
                message: format!(
                    "cannot {what} column \"{column}\" of table \"{}\" because other objects depend on it",
                    table.name().table
                ),
                detail: format!("column {reader} of table {} depends on column {column}", table.name().table),
            }),
        }
    }

    pub(crate) async fn rename_column(&mut self, table: &Arc<Table>, from: &str, to: &str) -> Result<()> {
        let warehouse = self.engine.warehouse().clone();
        let name = table.name();
        let columns: Vec<String> =
            table.snapshot().schema().fields().iter().map(|f| f.name().clone()).collect();
        if !columns.iter().any(|c| c == from) {
            return Err(undefined_column(&name, from));
        }
        self.refuse_if_generated_reads(table, from, "rename")?;
        let readers = warehouse
            .all_views()
            .iter()
            .filter(|v| v.depends_on.contains(&name))
            .map(|v| column_renamed_reads(v, &name, &columns, from, to))
            .collect::<Result<Vec<_>>>()?;
        Box::pin(warehouse.rename_column(&name, from, to, readers)).await?;
        Ok(())
    }

    /// `ALTER TABLE t DROP COLUMN [IF EXISTS] c [CASCADE]`. A view that may read `c`
    /// (see [`Mentions`]) needs `CASCADE` (2BP01), which drops it and the views that
    /// read it.
    pub(crate) async fn drop_column(
        &mut self,
        table: &Arc<Table>,
        column: &str,
        if_exists: bool,
        cascade: bool,
    ) -> Result<()> {
        let warehouse = self.engine.warehouse().clone();
        let name = table.name();
        if table.snapshot().def().column_index(column).is_none() {
            return if if_exists { Ok(()) } else { Err(undefined_column(&name, column)) };
        }
        self.refuse_if_generated_reads(table, column, "drop")?;
        let mut readers = Vec::new();
        for view in warehouse.all_views().iter().filter(|v| v.depends_on.contains(&name)) {
            if mentions(view, column)? {
                readers.push(view.name.clone());
            }
        }
        if let (Some(reader), false) = (readers.first(), cascade) {
            return Err(EngineError::DependentObjects {
                message: format!(
                    "cannot drop column {column} of table {} because other objects depend on it",
                    name.table
                ),
                detail: format!("view {} depends on column {column} of table {}", reader.table, name.table),
            });
        }
        let mut dropping = dependents(&warehouse, &readers);
        dropping.extend(readers.iter().filter_map(|r| warehouse.view(r)));
        for view in &dropping {
            tracing::info!(view = %view.name, "drop cascades to view");
            warehouse.drop_view(&view.name, true).await?;
        }
        Box::pin(table.drop_column(column)).await?;
        warehouse.forget_column(&name, column).await?;
        Ok(())
    }
}

fn undefined_column(table: &TableName, column: &str) -> EngineError {
    StorageError::UndefinedColumn { table: table.table.clone(), column: column.to_string() }.into()
}

/// `view`'s query reading `to` where it read `from` (one name of one schema).
fn renamed_reads(view: &ViewDef, from: &TableName, to: &TableName) -> Result<ViewDef> {
    let query = rewrite_reads(view, from, |factor| {
        let ast::TableFactor::Table { name: relation, alias, .. } = factor else { return Ok(()) };
        // Columns the query qualified with the old name still find it under an alias.
        let old = relation.0.pop();
        if alias.is_none() {
            if let Some(ObjectNamePart::Identifier(old)) = old {
                *alias = Some(table_alias(old));
            }
        }
        relation.0.push(ObjectNamePart::Identifier(Ident::with_quote('"', to.table.as_str())));
        Ok(())
    })?;
    let depends_on = view.depends_on.iter().map(|n| if n == from { to.clone() } else { n.clone() }).collect();
    Ok(ViewDef { query, depends_on, ..view.clone() })
}

/// `view`'s query reading `table` through a derived table that names its columns as
/// they were before column `from` became `to` (`columns`: the names before).
fn column_renamed_reads(
    view: &ViewDef,
    table: &TableName,
    columns: &[String],
    from: &str,
    to: &str,
) -> Result<ViewDef> {
    let quoted = |name: &str| Ident::with_quote('"', name).to_string();
    let items: Vec<String> = columns
        .iter()
        .map(|c| if c == from { format!("{} AS {}", quoted(to), quoted(from)) } else { quoted(c) })
        .collect();
    let query = rewrite_reads(view, table, |factor| {
        let ast::TableFactor::Table { name: relation, alias, .. } = factor else { return Ok(()) };
        let sql = format!("SELECT {} FROM {relation}", items.join(", "));
        let Some(Statement::Query(subquery)) = parse_sql(&sql)?.pop().map(|p| p.statement) else {
            return Err(EngineError::Internal { message: format!("not a query: {sql}") });
        };
        // The derived table answers to the name the query used.
        let alias = alias.take().or_else(|| match relation.0.last() {
            Some(ObjectNamePart::Identifier(name)) => Some(table_alias(name.clone())),
            _ => None,
        });
        *factor = ast::TableFactor::Derived { lateral: false, subquery, alias, sample: None };
        Ok(())
    })?;
    Ok(ViewDef { query, ..view.clone() })
}

fn table_alias(name: Ident) -> ast::TableAlias {
    ast::TableAlias { explicit: true, name, columns: Vec::new(), at: None }
}

/// `view`'s query with `rewrite` applied to each of its `FROM` items that reads
/// `relation`, as SQL text.
fn rewrite_reads(
    view: &ViewDef,
    relation: &TableName,
    rewrite: impl FnMut(&mut ast::TableFactor) -> Result<()>,
) -> Result<String> {
    let mut parsed = parse_sql(&view.query)?;
    let Some(Statement::Query(mut query)) = parsed.pop().map(|p| p.statement) else {
        return Err(EngineError::Internal { message: format!("a view's query is a query: {}", view.query) });
    };
    let mut reads = Reads { relation, rewrite, ctes: BTreeSet::new(), failed: None };
    let _ = ast::VisitMut::visit(&mut query, &mut reads);
    match reads.failed {
        Some(error) => Err(error),
        None => Ok(query.to_string()),
    }
}

/// Finds the `FROM` items that read one relation. A CTE of the same name shadows it
/// where it is not schema-qualified (CTE names are gathered as queries are entered,
/// before the relations inside them). An item is rewritten after its own parts were
/// visited, so what replaces it is not visited again.
struct Reads<'a, F> {
    relation: &'a TableName,
    rewrite: F,
    ctes: BTreeSet<String>,
    failed: Option<EngineError>,
}

impl<F: FnMut(&mut ast::TableFactor) -> Result<()>> VisitorMut for Reads<'_, F> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.ctes.extend(with.cte_tables.iter().map(|cte| ddl::ident(&cte.alias.name)));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, factor: &mut ast::TableFactor) -> ControlFlow<()> {
        let ast::TableFactor::Table { name: relation, args: None, .. } = factor else {
            return ControlFlow::Continue(());
        };
        let name = match ddl::table_name(relation) {
            Ok(name) => name,
            Err(e) => {
                self.failed = Some(e);
                return ControlFlow::Break(());
            }
        };
        let shadowed = relation.0.len() == 1 && self.ctes.contains(&name.table);
        if &name != self.relation || shadowed {
            return ControlFlow::Continue(());
        }
        if let Err(e) = (self.rewrite)(factor) {
            self.failed = Some(e);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// Whether a query may read `column`: it names it (alone, qualified, or in a join's
/// `USING`), joins `NATURAL`ly, or selects `*` (a view's `*` stands for the columns it
/// had when made). Names are compared without regard to which relation they belong to,
/// so this errs towards "yes".
struct Mentions<'a> {
    column: &'a str,
    found: bool,
}

impl Mentions<'_> {
    fn select_mentions(&self, select: &ast::Select) -> bool {
        let wildcard = select.projection.iter().any(|item| {
            matches!(item, ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..))
        });
        let joined = select.from.iter().flat_map(|t| &t.joins).any(|join| {
            match join_constraint(join) {
            Some(ast::JoinConstraint::Natural) => true,
            Some(ast::JoinConstraint::Using(names)) => names.iter().any(|name| {
                matches!(name.0.last(), Some(ObjectNamePart::Identifier(i)) if ddl::ident(i) == self.column)
            }),
            _ => false,
        }
        });
        wildcard || joined
    }

    fn body_mentions(&self, body: &ast::SetExpr) -> bool {
        match body {
            ast::SetExpr::Select(select) => self.select_mentions(select),
            ast::SetExpr::SetOperation { left, right, .. } => {
                self.body_mentions(left) || self.body_mentions(right)
            }
            _ => false,
        }
    }
}

impl ast::Visitor for Mentions<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<()> {
        self.found |= self.body_mentions(&query.body);
        if self.found {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn pre_visit_expr(&mut self, expr: &ast::Expr) -> ControlFlow<()> {
        let name = match expr {
            ast::Expr::Identifier(name) => Some(name),
            ast::Expr::CompoundIdentifier(parts) => parts.last(),
            _ => None,
        };
        self.found |= name.is_some_and(|name| ddl::ident(name) == self.column);
        if self.found {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn join_constraint(join: &ast::Join) -> Option<&ast::JoinConstraint> {
    use ast::JoinOperator::*;
    match &join.join_operator {
        Join(c) | Inner(c) | Left(c) | LeftOuter(c) | Right(c) | RightOuter(c) | FullOuter(c)
        | CrossJoin(c) | Semi(c) | LeftSemi(c) | RightSemi(c) | Anti(c) | LeftAnti(c) | RightAnti(c)
        | StraightJoin(c) => Some(c),
        _ => None,
    }
}

/// Whether `view` may read `column` of the relations it reads (see [`Mentions`]).
fn mentions(view: &ViewDef, column: &str) -> Result<bool> {
    let mut mentions = Mentions { column, found: false };
    for parsed in parse_sql(&view.query)? {
        let _ = ast::Visit::visit(&parsed.statement, &mut mentions);
    }
    Ok(mentions.found)
}

/// `CREATE OR REPLACE VIEW` keeps the old columns, in order, with their names and
/// types; it may add columns after them (PostgreSQL's rule).
fn replace_check(old: &Schema, new: &Schema) -> std::result::Result<(), String> {
    if new.fields().len() < old.fields().len() {
        return Err("cannot drop columns from view".into());
    }
    for (old, new) in old.fields().iter().zip(new.fields()) {
        if old.name() != new.name() {
            return Err(format!(
                "cannot change name of view column \"{}\" to \"{}\"",
                old.name(),
                new.name()
            ));
        }
        if old.data_type() != new.data_type() {
            return Err(format!(
                "cannot change data type of view column \"{}\" from {} to {}",
                old.name(),
                crate::types::pg_type_of_arrow(old.data_type()).name,
                crate::types::pg_type_of_arrow(new.data_type()).name
            ));
        }
    }
    Ok(())
}
