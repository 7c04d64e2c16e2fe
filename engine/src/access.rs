//! Who may do what: roles, table privileges and row-level security, enforced in the
//! engine (the security catalog itself is storage's: [`tarn_storage::security`]).
//!
//! - [`roles`]: `CREATE | ALTER | DROP ROLE` (and `USER`), membership (`GRANT role TO
//!   role`), `SET ROLE`, passwords as SCRAM-SHA-256 verifiers.
//! - [`privileges`]: `GRANT | REVOKE` on tables and columns, and the check of every
//!   table a statement reads or writes (42501), made when the statement is planned, on
//!   its plan as written and optimized, so views, CTEs, subqueries, `hybrid_search` and
//!   the kNN and BM25 nodes are all seen.
//! - [`row_security`]: `ENABLE ROW LEVEL SECURITY`, `CREATE | DROP POLICY`, policies as
//!   pre-filters of scans and searches, `WITH CHECK` on written rows; [`json_logic`]:
//!   policy rules written in JSON-Logic, compiled to SQL.
//! - [`masking`]: column tags and the masks bound to them (`CREATE MASKING POLICY`);
//!   [`detector`]: the sensitive-data detector that tags columns as rows come in.
//!
//! [`Access`] is one session's side of it: who the session is (`session_user`, and
//! `current_user` after `SET ROLE`) and the row filters planned for that role. A
//! session user that was no role of the warehouse when it logged in is the server's
//! own (a configured user, the trusted local user): a superuser, to whom nothing here
//! applies, so the zero-config run is unchanged; a role dropped or renamed under an
//! open session leaves it with no rights at all. Plans depend on the role and the
//! catalog: `SET ROLE` and every statement here make the session's kept plans stale.

pub mod detector;
pub mod json_logic;
pub mod masking;
pub mod privileges;
pub mod roles;
pub mod row_security;
mod statements;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchema;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::Expr;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use tarn_storage::security::{Mask, PolicyCommand, SecurityCatalog};
use tarn_storage::{TableName, Warehouse};

use crate::error::{EngineError, Result};

/// A role that checks apply to: not a superuser.
#[derive(Debug, Clone)]
pub struct Subject {
    pub role: String,
    /// The role and every role it is a member of.
    pub roles: BTreeSet<String>,
    pub security: Arc<SecurityCatalog>,
    /// Row policies apply (not `BYPASSRLS`).
    pub row_security: bool,
    /// The session's temporary schema.
    pub temp_schema: String,
}

#[derive(Debug)]
pub struct Access {
    warehouse: Arc<Warehouse>,
    session_user: String,
    /// The session user was no role of the warehouse when it logged in: a server user
    /// (configured, or trusted), a superuser. A role that disappears later (dropped,
    /// renamed) does not become one.
    server_user: bool,
    /// The session's temporary schema (its own relations: every privilege on them).
    temp_schema: String,
    /// `current_user`: the session user, or the role `SET ROLE` took.
    role: RwLock<String>,
    filters: RwLock<RowFilters>,
}

/// The row filters planned for one role under one security catalog.
#[derive(Debug, Default)]
struct RowFilters {
    security: Option<Arc<SecurityCatalog>>,
    role: String,
    /// The session's settings generation (a policy may read a setting).
    settings: u64,
    /// A policy that does not plan now (it reads a setting the session has not set)
    /// fails the statements that read its table, not the others.
    by_table: HashMap<TableName, std::result::Result<Expr, Arc<datafusion::error::DataFusionError>>>,
}

impl Access {
    pub fn new(warehouse: Arc<Warehouse>, user: &str, temp_schema: String) -> Arc<Access> {
        let server_user = !warehouse.security().roles.contains_key(user);
        Arc::new(Access {
            warehouse,
            session_user: user.to_string(),
            server_user,
            temp_schema,
            role: RwLock::new(user.to_string()),
            filters: RwLock::default(),
        })
    }

    pub fn session_user(&self) -> &str {
        &self.session_user
    }

    pub fn role(&self) -> String {
        self.role.read().expect("role lock").clone()
    }

    pub(crate) fn set_role(&self, role: &str) {
        *self.role.write().expect("role lock") = role.to_string();
    }

    /// The session's role when checks apply to it; `None` for a superuser.
    pub fn subject(&self) -> Option<Subject> {
        let security = self.warehouse.security();
        let role = self.role();
        let superuser = match security.roles.get(&role) {
            Some(defined) => defined.superuser,
            // The server's own user; a role dropped or renamed since has no rights.
            None => self.server_user && role == self.session_user,
        };
        if superuser {
            return None;
        }
        let row_security = !security.roles.get(&role).is_some_and(|r| r.bypass_rls);
        let temp_schema = self.temp_schema.clone();
        Some(Subject { roles: security.roles_of(&role), role, security, row_security, temp_schema })
    }

    /// A statement that only a superuser may run.
    pub(crate) fn require_superuser(&self, what: &str) -> Result<()> {
        match self.subject() {
            None => Ok(()),
            Some(subject) => Err(EngineError::InsufficientPrivilege {
                message: format!(
                    "permission denied to {what}: only a superuser may (role \"{}\" is not one)",
                    subject.role
                ),
            }),
        }
    }

    /// The row filter of `table` for the session's role, if row security applies.
    pub fn row_filter(&self, table: &TableName) -> Result<Option<Expr>> {
        match self.filters.read().expect("filters lock").by_table.get(table) {
            None => Ok(None),
            Some(Ok(filter)) => Ok(Some(filter.clone())),
            Some(Err(error)) => {
                Err(EngineError::DataFusion(datafusion::error::DataFusionError::Shared(error.clone())))
            }
        }
    }

    /// The columns of `table` the session's role reads masked, by name (from the
    /// catalog as it is now: nothing to plan, nothing kept).
    pub fn masks(&self, table: &TableName) -> Vec<(String, Mask)> {
        let security = self.warehouse.security();
        if security.masking_policies.is_empty() {
            return Vec::new();
        }
        match self.subject() {
            Some(subject) => masking::masks_of(&security, &subject.roles, table),
            None => Vec::new(),
        }
    }

    /// Plans the row filters of the session's role again if the security catalog, the
    /// role or the settings (generation `settings`) changed since they were planned
    /// (`state` plans the policies' expressions: their `current_user` and
    /// `current_setting` are the session's, folded to constants).
    pub(crate) fn refresh_row_filters(&self, state: &SessionState, settings: u64) -> Result<()> {
        let security = self.warehouse.security();
        let role = self.role();
        {
            let filters = self.filters.read().expect("filters lock");
            if filters.role == role
                && filters.settings == settings
                && filters.security.as_ref().is_some_and(|s| Arc::ptr_eq(s, &security))
            {
                return Ok(());
            }
        }
        let mut by_table = HashMap::new();
        if let Some(subject) = self.subject().filter(|s| s.row_security) {
            for name in &security.row_security {
                let Some(table) = self.warehouse.table(name) else { continue };
                let sql =
                    row_security::policy_sql(&security, name, PolicyCommand::Select, &subject.roles, false);
                let schema = crate::catalog::provider::nullable_schema(&table.snapshot().schema());
                let filter = plan_row_filter(state, &sql, schema).map_err(|e| Arc::new(e.into_datafusion()));
                by_table.insert(name.clone(), filter);
            }
        }
        *self.filters.write().expect("filters lock") =
            RowFilters { security: Some(security), role, settings, by_table };
        Ok(())
    }
}

/// `sql` as an expression over a table's columns (unqualified), typed and simplified
/// (`current_user` becomes the session's name).
pub(crate) fn plan_expr(
    state: &SessionState,
    sql: &str,
    schema: arrow::datatypes::SchemaRef,
) -> Result<Expr> {
    let df_schema = Arc::new(DFSchema::try_from(schema)?);
    let expr = state.create_logical_expr(sql, &df_schema)?;
    let context = SimplifyContext::builder()
        .with_schema(df_schema.clone())
        .with_config_options(state.config_options().clone())
        // No clock: `now()` in a policy is each statement's, not the plan's.
        .build();
    let simplifier = ExprSimplifier::new(context);
    let expr = simplifier.coerce(expr, &df_schema)?;
    Ok(simplifier.simplify(expr)?)
}

/// A row filter planned by [`plan_expr`], its constant calls evaluated: the simplifier
/// leaves one it could not fold as it was (`current_setting` of a setting the session
/// has not set), whose error is then the filter's, here, rather than each row's (inside
/// a Lance scan, where it would lose its SQLSTATE).
fn plan_row_filter(state: &SessionState, sql: &str, schema: arrow::datatypes::SchemaRef) -> Result<Expr> {
    let expr = plan_expr(state, sql, schema)?;
    expr.apply(|e| {
        if matches!(e, Expr::ScalarFunction(_)) && e.column_refs().is_empty() && !e.is_volatile() {
            let constant = state.create_physical_expr(e.clone(), &DFSchema::empty())?;
            let one_row = arrow::array::RecordBatch::try_new_with_options(
                Arc::new(arrow::datatypes::Schema::empty()),
                vec![],
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
            )?;
            constant.evaluate(&one_row)?;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(expr)
}
