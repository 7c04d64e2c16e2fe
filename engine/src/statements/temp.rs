//! Temporary tables and views (`CREATE TEMP[ORARY] TABLE | VIEW`): real Tarn tables and
//! views in the session's own schema, `pg_temp_<n>`, which the session's unqualified
//! names find first (PostgreSQL's search path begins with `pg_temp`), and which goes
//! when the session ends (a server that stopped without ending it leaves the schema
//! for the next one to clear when it opens the warehouse).
//!
//! Names are resolved on the statement's syntax before it is planned: an unqualified
//! relation that is one of the session's temporary ones (and no CTE of the query)
//! becomes `pg_temp_<n>.name`, and `pg_temp.name` names the session's schema too. The
//! check is done as each statement runs, so a statement sees a temporary table made
//! by the one before it in the same simple query.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    self, Ident, ObjectName, ObjectNamePart, Statement, VisitMut, VisitorMut,
};
use tarn_storage::{StorageError, TableName, Warehouse};

use crate::error::Result;
use crate::statements::ddl;

/// What temporary schemas are called: `pg_temp_` and a number.
const PREFIX: &str = "pg_temp_";

/// A session's temporary schema.
#[derive(Debug, Clone)]
pub(crate) struct TempSchema {
    name: String,
    warehouse: Arc<Warehouse>,
}

impl TempSchema {
    /// The schema of the session numbered `n` (made when it first gets a relation).
    pub(crate) fn new(warehouse: Arc<Warehouse>, n: u64) -> Self {
        TempSchema { name: format!("{PREFIX}{n}"), warehouse }
    }

    /// Where `CREATE TEMP TABLE | VIEW name` puts the relation: the session's schema,
    /// made now if it is not yet. A name in another schema is 42P16, as in PostgreSQL.
    pub(crate) async fn place(&self, name: &ObjectName) -> Result<TableName> {
        let qualified = name.0.len() > 1;
        let name = ddl::table_name(name)?;
        if qualified && name.schema != "pg_temp" && name.schema != self.name {
            return Err(StorageError::InvalidDefinition {
                message: "cannot create temporary relation in non-temporary schema".into(),
            }
            .into());
        }
        self.warehouse.create_schema(&self.name, true).await?;
        Ok(TableName::new(self.name.clone(), name.table))
    }

    /// Whether the session has made its schema (and so may have temporary relations).
    /// The schema's name (`pg_temp_<n>`).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn exists(&self) -> bool {
        // A replica's sessions make none; a schema of this name is a writer's session's.
        !self.warehouse.is_read_only() && self.warehouse.schema_exists(&self.name)
    }

    /// `statement` with the session's temporary relations named by their schema;
    /// `None` when nothing changed (or the session has none).
    pub(crate) fn qualify(&self, statement: &Statement) -> Option<Statement> {
        if !self.exists() {
            return None;
        }
        let mut names: BTreeSet<String> = self.warehouse.tables(&self.name).into_iter().collect();
        names.extend(self.warehouse.views(&self.name));
        let mut statement = statement.clone();
        let mut visitor =
            Qualify { schema: &self.name, names: &names, ctes: BTreeSet::new(), changed: false };
        match &mut statement {
            // A new relation's own name is not a reference (only `AS query` is read).
            Statement::CreateTable(create) => {
                if let Some(query) = create.query.as_mut() {
                    let _ = query.visit(&mut visitor);
                }
            }
            Statement::CreateView(create) => {
                let _ = create.query.visit(&mut visitor);
            }
            Statement::Drop { names: dropped, .. } => dropped.iter_mut().for_each(|n| visitor.name(n)),
            Statement::Comment { object_name, object_type, .. } => {
                if matches!(object_type, ast::CommentObject::Column) {
                    // `table.column`: the table part.
                    let mut table =
                        ObjectName(object_name.0[..object_name.0.len().saturating_sub(1)].to_vec());
                    visitor.name(&mut table);
                    if visitor.changed {
                        let column = object_name.0.last().cloned();
                        object_name.0 = table.0.into_iter().chain(column).collect();
                    }
                } else {
                    visitor.name(object_name);
                }
            }
            Statement::Copy { source: ast::CopySource::Table { table_name, .. }, .. } => {
                visitor.name(table_name)
            }
            other => {
                let _ = other.visit(&mut visitor);
            }
        }
        visitor.changed.then_some(statement)
    }

    /// When the session ends: its relations and its schema go.
    pub(crate) async fn drop_all(&self) -> Result<()> {
        if !self.exists() {
            return Ok(());
        }
        drop_schema(&self.warehouse, &self.name).await
    }
}

/// Opening a warehouse (the temporary schemas sessions of a stopped server left), and
/// closing it (those of the sessions that just ended).
pub(crate) async fn drop_leftovers(warehouse: &Warehouse) -> Result<()> {
    if warehouse.is_read_only() {
        // The writer's: its sessions may be using them.
        return Ok(());
    }
    for schema in warehouse.schemas().into_iter().filter(|s| s.starts_with(PREFIX)) {
        tracing::info!(schema, "dropping a temporary schema a stopped server left");
        drop_schema(warehouse, &schema).await?;
    }
    Ok(())
}

async fn drop_schema(warehouse: &Warehouse, schema: &str) -> Result<()> {
    if !warehouse.schema_exists(schema) {
        return Ok(());
    }
    // Views first: they may read the tables.
    for view in warehouse.views(schema) {
        warehouse.drop_view(&TableName::new(schema, view), true).await?;
    }
    for table in warehouse.tables(schema) {
        warehouse.drop_table(&TableName::new(schema, table), true).await?;
    }
    warehouse.drop_schema(schema).await?;
    Ok(())
}

/// Whether a schema name is a session's temporary schema (`relpersistence = 't'`).
pub fn is_temp_schema(schema: &str) -> bool {
    schema.starts_with(PREFIX)
}

/// Qualifies references to the session's temporary relations.
struct Qualify<'a> {
    schema: &'a str,
    names: &'a BTreeSet<String>,
    /// CTE names of the statement: they shadow a relation of the same name.
    ctes: BTreeSet<String>,
    changed: bool,
}

impl Qualify<'_> {
    fn name(&mut self, name: &mut ObjectName) {
        let parts: Vec<Option<String>> = name
            .0
            .iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => Some(ddl::ident(i)),
                _ => None,
            })
            .collect();
        match parts.as_slice() {
            [Some(relation)] if self.names.contains(relation) && !self.ctes.contains(relation) => {
                name.0.insert(0, ObjectNamePart::Identifier(Ident::new(self.schema)));
                self.changed = true;
            }
            [Some(schema), Some(_)] if schema == "pg_temp" => {
                name.0[0] = ObjectNamePart::Identifier(Ident::new(self.schema));
                self.changed = true;
            }
            _ => {}
        }
    }
}

impl VisitorMut for Qualify<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.ctes.extend(with.cte_tables.iter().map(|cte| ddl::ident(&cte.alias.name)));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        self.name(relation);
        ControlFlow::Continue(())
    }
}
