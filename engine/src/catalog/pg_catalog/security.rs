//! The catalogs of roles and privileges, from the warehouse's security catalog
//! ([`tarn_storage::security`]): `pg_roles` / `pg_authid` / `pg_user` (the bootstrap
//! superuser `tarn` and every role), `pg_auth_members`, `pg_policy`, and the access
//! lists `pg_class.relacl` / `pg_attribute.attacl` in PostgreSQL's `aclitem` text
//! (`alice=r/tarn`), which psql's `\du` and `\dp` read.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use tarn_storage::security::{SecurityCatalog, PUBLIC};
use tarn_storage::TableName;

use super::relations::oid_of;
use super::table::{Def, Rows, Value};
use super::tables::{text, Source};
use super::{OWNER, OWNER_OID};

/// A role's OID: the bootstrap superuser's is 10.
pub fn role_oid(name: &str) -> u32 {
    if name == OWNER {
        OWNER_OID
    } else {
        oid_of(&[b"role", name.as_bytes()])
    }
}

/// One row per role: the bootstrap superuser, then the warehouse's roles.
pub(super) fn pg_roles(def: &'static Def, source: &Source) -> Arc<dyn TableProvider> {
    let security = source.warehouse.security();
    let mut rows = Rows::new(def);
    let user = def.name == "pg_user";
    let bootstrap = (!security.roles.contains_key(OWNER)).then(|| {
        let mut role = tarn_storage::security::RoleDef::new(OWNER);
        (role.superuser, role.login, role.bypass_rls) = (true, true, true);
        role
    });
    for role in bootstrap.iter().chain(security.roles.values()) {
        let is_owner = role.name == OWNER;
        if user && !role.login {
            continue;
        }
        let password = if role.password.is_some() { text("********") } else { Value::Null };
        let row: Vec<(&str, Value)> = if user {
            vec![
                ("usename", text(&role.name)),
                ("usesysid", Value::Oid(role_oid(&role.name))),
                ("usecreatedb", Value::Bool(role.superuser)),
                ("usesuper", Value::Bool(role.superuser)),
                ("userepl", Value::Bool(is_owner)),
                ("usebypassrls", Value::Bool(role.bypass_rls || role.superuser)),
                ("passwd", password),
            ]
        } else {
            vec![
                ("oid", Value::Oid(role_oid(&role.name))),
                ("rolname", text(&role.name)),
                ("rolsuper", Value::Bool(role.superuser)),
                ("rolinherit", Value::Bool(true)),
                ("rolcreaterole", Value::Bool(role.superuser)),
                ("rolcreatedb", Value::Bool(role.superuser)),
                ("rolcanlogin", Value::Bool(role.login)),
                ("rolreplication", Value::Bool(is_owner)),
                ("rolbypassrls", Value::Bool(role.bypass_rls)),
                ("rolconnlimit", Value::Int(-1)),
                ("rolpassword", password),
            ]
        };
        rows.push(&row);
    }
    rows.table()
}

/// Who is a member of whom (`GRANT group TO role`).
pub(super) fn pg_auth_members(def: &'static Def, source: &Source) -> Arc<dyn TableProvider> {
    let security = source.warehouse.security();
    let mut rows = Rows::new(def);
    for role in security.roles.values() {
        for group in &role.member_of {
            rows.push(&[
                ("roleid", Value::Oid(role_oid(group))),
                ("member", Value::Oid(role_oid(&role.name))),
                ("grantor", Value::Oid(OWNER_OID)),
                ("admin_option", Value::Bool(false)),
            ]);
        }
    }
    rows.table()
}

/// Row policies, their expressions as written (`pg_get_expr` gives them back).
pub(super) fn pg_policy(def: &'static Def, source: &Source) -> Arc<dyn TableProvider> {
    let security = source.warehouse.security();
    let mut rows = Rows::new(def);
    for policy in &security.policies {
        let Some(table) = source.warehouse.table(&policy.table) else { continue };
        let roles = match policy.roles.is_empty() {
            true => vec![0],
            false => policy.roles.iter().map(|r| i64::from(role_oid(r))).collect(),
        };
        let optional = |t: &Option<String>| t.as_ref().map_or(Value::Null, |t| text(t));
        rows.push(&[
            (
                "oid",
                Value::Oid(oid_of(&[b"policy", table.name().to_string().as_bytes(), policy.name.as_bytes()])),
            ),
            ("polname", text(&policy.name)),
            ("polrelid", Value::Oid(super::relations::table_oid(table.id()))),
            ("polcmd", Value::Char(policy.command.keyword().1 as u8)),
            ("polpermissive", Value::Bool(policy.permissive)),
            ("polroles", Value::Ints(roles)),
            ("polqual", optional(&policy.using)),
            ("polwithcheck", optional(&policy.with_check)),
        ]);
    }
    rows.table()
}

/// `relacl`: NULL until something is granted on the table (the owner's default), then
/// the owner's entry and one per grantee, as PostgreSQL shows them.
pub(super) fn relacl(security: &SecurityCatalog, table: &TableName) -> Value {
    acl(security, table, None)
}

/// `attacl`: the column grants on `column`, or NULL.
pub(super) fn attacl(security: &SecurityCatalog, table: &TableName, column: &str) -> Value {
    acl(security, table, Some(column))
}

fn acl(security: &SecurityCatalog, table: &TableName, column: Option<&str>) -> Value {
    let mut entries: Vec<(String, String)> = Vec::new();
    for grant in security.grants.iter().filter(|g| &g.table == table) {
        let applies = match (column, &grant.columns) {
            (None, None) => true,
            (Some(column), Some(columns)) => columns.contains(column),
            _ => false,
        };
        if !applies {
            continue;
        }
        let grantee = if grant.grantee == PUBLIC { String::new() } else { grant.grantee.clone() };
        match entries.iter_mut().find(|(g, _)| *g == grantee) {
            Some((_, letters)) => letters.push(grant.privilege.acl_letter()),
            None => entries.push((grantee, grant.privilege.acl_letter().to_string())),
        }
    }
    if entries.is_empty() {
        return Value::Null;
    }
    let mut items = Vec::new();
    if column.is_none() {
        items.push(format!("{OWNER}=arwdDxt/{OWNER}"));
    }
    for (grantee, letters) in entries {
        // In PostgreSQL's order: a (INSERT), r (SELECT), w (UPDATE), d (DELETE).
        let ordered: String = "arwd".chars().filter(|c| letters.contains(*c)).collect();
        items.push(format!("{grantee}={ordered}/{OWNER}"));
    }
    Value::Texts(items)
}
