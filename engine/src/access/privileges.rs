//! Table privileges: `GRANT | REVOKE { SELECT | INSERT | UPDATE | DELETE } [, ...] | ALL
//! [PRIVILEGES] ON [TABLE] t [, ...] | ALL TABLES IN SCHEMA s TO | FROM role | PUBLIC`,
//! `GRANT SELECT (a, b)` on columns, and their check.
//!
//! A statement's reads are checked on its plan, optimized ([`check_reads`]) and not
//! ([`check_named`], the columns it names): every scan (of a table, a view, through a
//! CTE, a subquery, `hybrid_search`'s branches, a kNN or BM25 node, `AS OF` and
//! `table_changes`) needs `SELECT` on the columns it reads
//! (those it returns and those its filters read), as PostgreSQL checks column
//! privileges; a scan of no column (`count(*)`) needs `SELECT` on one column at least.
//! Writes need their privilege on the target ([`check_write`]). The check runs when a
//! statement is planned; a kept plan is made again after any `GRANT` or `REVOKE`
//! (they change the catalog) or `SET ROLE`. A superuser is never checked.
//!
//! `ALL TABLES IN SCHEMA` grants on the tables, views and external tables there now, as
//! PostgreSQL does (a later table gets nothing); PostgreSQL's default privileges are
//! not modelled. A view needs `SELECT` on the view, not on its tables (its owner's
//! privileges read them, as in PostgreSQL; views are a superuser's yet), while the
//! reader's row policies apply inside it (as a `security_invoker` view's).

use std::collections::{BTreeSet, HashMap};

use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, LogicalPlan, TableScan};
use datafusion::sql::sqlparser::ast;
use tarn_storage::security::{Grant, Privilege, SecurityCatalog, PUBLIC};
use tarn_storage::{TableName, Warehouse};

use crate::access::Subject;
use crate::catalog::provider::{AsOfTable, ChangeFeedTable, TarnTable};
use crate::catalog::views::TarnView;
use crate::error::{EngineError, Result};
use crate::search::bm25::Bm25Node;
use crate::search::knn::KnnNode;
use crate::statements::ddl;

/// 42501 for `privilege` on `table`, in PostgreSQL's words.
pub fn denied(table: &TableName) -> EngineError {
    EngineError::InsufficientPrivilege { message: format!("permission denied for table {}", table.table) }
}

/// Checks that `subject` may read what the optimized `plan` reads. `whole_rows`: a
/// scan of no column reads rows (`count(*)`), which needs `SELECT` on some column; in
/// the reads of an `UPDATE`/`DELETE` it needs nothing.
pub fn check_reads(subject: &Subject, plan: &LogicalPlan, whole_rows: bool) -> Result<()> {
    let mut outcome = Ok(());
    let check = |name: TableName, columns: BTreeSet<String>| {
        if columns.is_empty() && !whole_rows {
            return Ok(());
        }
        check_select(subject, &name, &columns)
    };
    plan.apply_with_subqueries(|node| {
        let read = match node {
            LogicalPlan::TableScan(scan) => {
                scan_reads(subject, scan).map(|r| r.and_then(|(n, c)| check(n, c)))
            }
            LogicalPlan::Extension(extension) => {
                let any = extension.node.as_any();
                let read = if let Some(knn) = any.downcast_ref::<KnnNode>() {
                    Some(knn.columns_read())
                } else {
                    any.downcast_ref::<Bm25Node>().map(|bm25| bm25.columns_read())
                };
                read.and_then(|(scan, columns)| {
                    table_of(scan).map(|(name, current)| {
                        time_travel_under_policies(subject, &name, current)?;
                        check(name, columns)
                    })
                })
            }
            _ => None,
        };
        match read {
            Some(Err(e)) => {
                outcome = Err(e);
                Ok(TreeNodeRecursion::Stop)
            }
            _ => Ok(TreeNodeRecursion::Continue),
        }
    })?;
    outcome
}

/// Checks the columns a statement names, as PostgreSQL does, on its plan before
/// optimization (which may drop a column no result needs: `WITH x AS (SELECT secret
/// FROM t) SELECT count(*) FROM x` still names `secret`). Columns are matched to scans
/// by the name they are qualified with (the table's, or its alias's).
pub fn check_named(subject: &Subject, plan: &LogicalPlan) -> Result<()> {
    let mut named: HashMap<String, BTreeSet<String>> = HashMap::new();
    // Scans under an alias, by address (the walk lends each node for a moment only).
    let mut aliases: Vec<(String, *const TableScan)> = Vec::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::SubqueryAlias(alias) = node {
            if let LogicalPlan::TableScan(scan) = alias.input.as_ref() {
                aliases.push((alias.alias.table().to_string(), scan as *const TableScan));
            }
        }
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::Column(Column { relation: Some(relation), name, .. }) = e {
                    named.entry(relation.table().to_string()).or_default().insert(name.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    let mut outcome = Ok(());
    plan.apply_with_subqueries(|node| {
        let LogicalPlan::TableScan(scan) = node else { return Ok(TreeNodeRecursion::Continue) };
        let Some((table, _)) = table_of(scan) else { return Ok(TreeNodeRecursion::Continue) };
        let qualifier = aliases
            .iter()
            .find(|(_, s)| std::ptr::eq(*s, scan as *const TableScan))
            .map_or_else(|| scan.table_name.table().to_string(), |(a, _)| a.clone());
        let schema = scan.source.schema();
        let columns: BTreeSet<String> = named
            .get(&qualifier)
            .into_iter()
            .flatten()
            .filter(|c| schema.index_of(c).is_ok() && !feed_column(c))
            .cloned()
            .collect();
        if !columns.is_empty() {
            if let Err(e) = check_select(subject, &table, &columns) {
                outcome = Err(e);
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    outcome
}

/// The functions only a superuser calls: signals to other sessions (PostgreSQL lets a
/// role signal its own; roles of sessions are not told apart here yet).
const SUPERUSER_FUNCTIONS: [&str; 2] = ["pg_cancel_backend", "pg_terminate_backend"];

/// 42501 for a call of a function only a superuser may call.
pub fn check_functions(plan: &LogicalPlan) -> Result<()> {
    let mut called = None;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if SUPERUSER_FUNCTIONS.contains(&f.name()) {
                        called = Some(f.name().to_string());
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    match called {
        Some(name) => Err(EngineError::InsufficientPrivilege {
            message: format!("permission denied for function {name}: only a superuser may signal a backend"),
        }),
        None => Ok(()),
    }
}

/// Whether a plan reads a table anywhere (subqueries included).
pub fn reads_a_table(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        found = matches!(node, LogicalPlan::TableScan(_) | LogicalPlan::Extension(_));
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}

/// The table a scan reads, and whether it reads it at its current version.
fn table_of(scan: &TableScan) -> Option<(TableName, bool)> {
    let provider = source_as_provider(&scan.source).ok()?;
    if let Some(table) = provider.downcast_ref::<TarnTable>() {
        return Some((table.table().name(), true));
    }
    if let Some(table) = provider.downcast_ref::<AsOfTable>() {
        return Some((table.table().name(), false));
    }
    // A view is checked as PostgreSQL checks it: the reader needs SELECT on the view;
    // its tables are read with its owner's privileges (a superuser's: only superusers
    // create views yet), and with the reader's row policies.
    if let Some(view) = provider.downcast_ref::<TarnView>() {
        return Some((view.name().clone(), true));
    }
    if let Some(table) = provider.downcast_ref::<ChangeFeedTable>() {
        return Some((table.table().name(), false));
    }
    None
}

/// The table a scan reads and the columns it reads.
fn scan_reads(subject: &Subject, scan: &TableScan) -> Option<Result<(TableName, BTreeSet<String>)>> {
    let function = scan.table_name.table();
    if function.starts_with("tarn_find_tables")
        || (function.starts_with("tarn_as_of") && table_of(scan).is_none())
    {
        // `tarn_find_tables` shows sample values of every table; `tarn_as_of` of an
        // external table reads it past the check its name would get.
        return Some(Err(EngineError::InsufficientPrivilege {
            message: format!(
                "permission denied for function {}",
                function.split('(').next().unwrap_or(function)
            ),
        }));
    }
    let (name, current) = table_of(scan)?;
    if let Err(e) = time_travel_under_policies(subject, &name, current) {
        return Some(Err(e));
    }
    let mut columns = crate::search::knn::scan_columns(scan);
    columns.retain(|c| !feed_column(c));
    Some(Ok((name, columns)))
}

/// The change feed's own columns (`_change_type`, `_commit_version`): no privilege of
/// the table's covers them, and none is needed.
fn feed_column(name: &str) -> bool {
    name.starts_with("_change_") || name.starts_with("_commit_")
}

/// An earlier version or the change feed of a table whose row policies or masks apply:
/// they are planned for the table as it is now (0A000).
fn time_travel_under_policies(subject: &Subject, name: &TableName, current: bool) -> Result<()> {
    if !current && subject.row_security && subject.security.row_security.contains(name) {
        return Err(EngineError::unsupported(format!(
            "reading an earlier version or the change feed of \"{}\", which has row-level security, \
             is not supported yet",
            name.table
        )));
    }
    if !current && subject.security.has_masks(&subject.roles, name) {
        return Err(EngineError::unsupported(format!(
            "reading an earlier version or the change feed of \"{}\", which has masked columns, \
             is not supported yet",
            name.table
        )));
    }
    Ok(())
}

/// `SELECT` on `columns` of `table` (on one column at least when none is named).
pub fn check_select(subject: &Subject, table: &TableName, columns: &BTreeSet<String>) -> Result<()> {
    if own_temporary(subject, table) {
        return Ok(());
    }
    let grants: Vec<&Grant> = subject
        .security
        .grants_for(&subject.roles, table)
        .filter(|g| g.privilege == Privilege::Select)
        .collect();
    if grants.iter().any(|g| g.columns.is_none()) {
        return Ok(());
    }
    let allowed: BTreeSet<&String> = grants.iter().flat_map(|g| g.columns.iter().flatten()).collect();
    let ok = match columns.is_empty() {
        true => !allowed.is_empty(),
        false => columns.iter().all(|c| allowed.contains(c)),
    };
    if ok {
        Ok(())
    } else {
        Err(denied(table))
    }
}

/// `privilege` on `table` (on the table, or on some of its columns).
pub fn check_write(subject: &Subject, table: &TableName, privilege: Privilege) -> Result<()> {
    if own_temporary(subject, table) {
        return Ok(());
    }
    match subject.security.grants_for(&subject.roles, table).any(|g| g.privilege == privilege) {
        true => Ok(()),
        false => Err(denied(table)),
    }
}

/// The session's own temporary relation: it has every privilege on it (PostgreSQL's
/// owner). Another session's is checked as any table (and granted to no one).
fn own_temporary(subject: &Subject, table: &TableName) -> bool {
    table.schema == subject.temp_schema
}

/// What a `GRANT` or `REVOKE` on tables names.
pub struct TableGrant {
    pub privileges: Vec<(Privilege, Option<BTreeSet<String>>)>,
    pub tables: Vec<TableName>,
    pub grantees: Vec<String>,
}

impl TableGrant {
    /// Reads a `GRANT` or `REVOKE`'s privileges, objects and grantees.
    pub fn from_ast(
        warehouse: &Warehouse,
        privileges: &ast::Privileges,
        objects: &ast::GrantObjects,
        grantees: &[ast::Grantee],
    ) -> Result<TableGrant> {
        let privileges = match privileges {
            ast::Privileges::All { .. } => Privilege::ALL.iter().map(|p| (*p, None)).collect(),
            ast::Privileges::Actions(actions) => actions
                .iter()
                .map(|action| {
                    let (privilege, columns) = match action {
                        ast::Action::Select { columns } => (Privilege::Select, columns.as_ref()),
                        ast::Action::Insert { columns: Some(_) } | ast::Action::Update { columns: Some(_) } => {
                            return Err(EngineError::unsupported(
                                "column lists are supported for SELECT only (INSERT and UPDATE are granted on tables)",
                            ))
                        }
                        ast::Action::Insert { columns: None } => (Privilege::Insert, None),
                        ast::Action::Update { columns: None } => (Privilege::Update, None),
                        ast::Action::Delete => (Privilege::Delete, None),
                        other => {
                            return Err(EngineError::unsupported(format!(
                                "the {other} privilege is not supported (SELECT, INSERT, UPDATE, DELETE are)"
                            )))
                        }
                    };
                    let columns = columns.map(|c| c.iter().map(ddl::ident).collect());
                    Ok((privilege, columns))
                })
                .collect::<Result<_>>()?,
        };
        let tables = match objects {
            ast::GrantObjects::Tables(names) => {
                let mut tables = Vec::new();
                for name in names {
                    let name = ddl::table_name(name)?;
                    let exists = warehouse.table(&name).is_some()
                        || warehouse.view(&name).is_some()
                        || warehouse.external(&name).is_some();
                    if !exists {
                        return Err(tarn_storage::StorageError::TableNotFound { name }.into());
                    }
                    tables.push(name);
                }
                tables
            }
            ast::GrantObjects::AllTablesInSchema { schemas } => {
                let mut tables = Vec::new();
                for schema in schemas {
                    let schema = ddl::table_name(schema)?.table;
                    if !warehouse.schema_exists(&schema) {
                        return Err(tarn_storage::StorageError::SchemaNotFound { name: schema }.into());
                    }
                    // PostgreSQL's ALL TABLES takes views and foreign tables too.
                    let externals = warehouse.all_externals().into_iter().filter(|e| e.name.schema == schema);
                    tables.extend(
                        warehouse
                            .tables(&schema)
                            .into_iter()
                            .chain(warehouse.views(&schema))
                            .map(|t| TableName::new(&schema, t))
                            .chain(externals.map(|e| e.name.clone())),
                    );
                }
                tables
            }
            other => return Err(EngineError::unsupported(format!("GRANT ON {other} is not supported"))),
        };
        let grantees = grantees
            .iter()
            .map(|grantee| match (&grantee.grantee_type, &grantee.name) {
                (ast::GranteesType::Public, _) => Ok(PUBLIC.to_string()),
                (_, Some(ast::GranteeName::ObjectName(name))) => Ok(ddl::table_name(name)?.table),
                _ => Err(EngineError::unsupported(format!("grantee {grantee} is not supported"))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TableGrant { privileges, tables, grantees })
    }

    /// Adds the grants (a column grant adds to the columns already granted).
    pub fn grant(&self, security: &mut SecurityCatalog) -> Result<()> {
        self.known_grantees(security)?;
        for table in &self.tables {
            for grantee in &self.grantees {
                for (privilege, columns) in &self.privileges {
                    let same =
                        |g: &Grant| &g.table == table && &g.grantee == grantee && g.privilege == *privilege;
                    match security.grants.iter_mut().find(|g| same(g)) {
                        Some(existing) => match (&mut existing.columns, columns) {
                            (Some(had), Some(more)) => had.extend(more.iter().cloned()),
                            (had @ Some(_), None) => *had = None,
                            (None, _) => {}
                        },
                        None => security.grants.push(Grant {
                            table: table.clone(),
                            grantee: grantee.clone(),
                            privilege: *privilege,
                            columns: columns.clone(),
                        }),
                    }
                }
            }
        }
        Ok(())
    }

    /// Takes the grants back (a column revoke takes those columns only).
    pub fn revoke(&self, security: &mut SecurityCatalog) -> Result<()> {
        self.known_grantees(security)?;
        for table in &self.tables {
            for grantee in &self.grantees {
                for (privilege, columns) in &self.privileges {
                    security.grants.retain_mut(|g| {
                        if &g.table != table || &g.grantee != grantee || g.privilege != *privilege {
                            return true;
                        }
                        match (&mut g.columns, columns) {
                            (_, None) => false,
                            (Some(had), Some(gone)) => {
                                had.retain(|c| !gone.contains(c));
                                !had.is_empty()
                            }
                            // Revoking columns of a table-wide grant leaves it (as
                            // PostgreSQL: the table privilege still covers them).
                            (None, Some(_)) => true,
                        }
                    });
                }
            }
        }
        Ok(())
    }

    fn known_grantees(&self, security: &SecurityCatalog) -> Result<()> {
        match self.grantees.iter().find(|g| *g != PUBLIC && !security.roles.contains_key(*g)) {
            Some(unknown) => Err(super::roles::no_such_role(unknown)),
            None => Ok(()),
        }
    }
}
