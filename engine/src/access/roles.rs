//! Roles: `CREATE ROLE | USER name [WITH] [LOGIN | NOLOGIN] [SUPERUSER | NOSUPERUSER]
//! [BYPASSRLS | NOBYPASSRLS] [PASSWORD 'p'] [IN ROLE r, ...]`, `ALTER ROLE` with the
//! same options or `RENAME TO`, `DROP ROLE | USER [IF EXISTS]`, and membership
//! (`GRANT role TO role`, `REVOKE role FROM role`).
//!
//! A password is kept as a SCRAM-SHA-256 verifier ([`scram_verifier`]), the text
//! PostgreSQL keeps in `pg_authid`; one given already in that form is kept as it is.
//! The server authenticates a role that has `LOGIN` against it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use datafusion::sql::sqlparser::ast;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};
use tarn_storage::security::{RoleDef, SecurityCatalog, PUBLIC};

use crate::error::{EngineError, Result};
use crate::statements::ddl;

/// PostgreSQL's default SCRAM iteration count (`scram_iterations`).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// 42704 for a role that does not exist.
pub fn no_such_role(name: &str) -> EngineError {
    EngineError::UndefinedObject { message: format!("role \"{name}\" does not exist") }
}

/// The SCRAM-SHA-256 verifier of `password` with a fresh salt, in PostgreSQL's text
/// form: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (RFC 5802/7677).
pub fn scram_verifier(password: &str) -> String {
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).expect("random salt");
    scram_verifier_with_salt(password, &salt)
}

/// [`scram_verifier`] with a given salt.
pub fn scram_verifier_with_salt(password: &str, salt: &[u8]) -> String {
    let mut salted = [0u8; 32];
    let iterations = std::num::NonZeroU32::new(SCRAM_ITERATIONS).expect("non-zero");
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, salt, password.as_bytes(), &mut salted);
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    format!(
        "SCRAM-SHA-256${SCRAM_ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key.as_ref()),
        STANDARD.encode(server_key.as_ref())
    )
}

/// What a `PASSWORD` clause keeps: a verifier given as one, else the password's.
fn verifier_of(password: &ast::Password) -> Result<Option<String>> {
    match password {
        ast::Password::NullPassword => Ok(None),
        ast::Password::Password(expr) => {
            let text = match expr {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    _ => return Err(EngineError::syntax("PASSWORD takes a string")),
                },
                _ => return Err(EngineError::syntax("PASSWORD takes a string")),
            };
            Ok(Some(if text.starts_with("SCRAM-SHA-256$") { text } else { scram_verifier(&text) }))
        }
    }
}

fn role_name(name: &ast::ObjectName) -> Result<String> {
    Ok(ddl::table_name(name)?.table)
}

/// A name no role may take.
fn check_new_name(name: &str) -> Result<()> {
    if name == PUBLIC || name.starts_with("pg_") {
        return Err(EngineError::ReservedName { message: format!("role name \"{name}\" is reserved") });
    }
    Ok(())
}

/// `CREATE ROLE`: the roles it adds.
pub fn create(security: &mut SecurityCatalog, create: &ast::CreateRole) -> Result<()> {
    if create.connection_limit.is_some() || create.valid_until.is_some() || !create.admin.is_empty() {
        return Err(EngineError::unsupported("CONNECTION LIMIT, VALID UNTIL and ADMIN are not supported"));
    }
    for name in &create.names {
        let name = role_name(name)?;
        check_new_name(&name)?;
        if security.roles.contains_key(&name) {
            if create.if_not_exists {
                continue;
            }
            return Err(EngineError::DuplicateObject { message: format!("role \"{name}\" already exists") });
        }
        let mut role = RoleDef::new(&name);
        role.login = create.login.unwrap_or(false);
        role.superuser = create.superuser.unwrap_or(false);
        role.bypass_rls = create.bypassrls.unwrap_or(false);
        if let Some(password) = &create.password {
            role.password = verifier_of(password)?;
        }
        for group in create.in_role.iter().chain(&create.in_group) {
            let group = ddl::ident(group);
            if !security.roles.contains_key(&group) {
                return Err(no_such_role(&group));
            }
            role.member_of.insert(group);
        }
        // `ROLE a, b` / `USER a, b`: they become members of the new role.
        for member in create.role.iter().chain(&create.user) {
            let member = ddl::ident(member);
            security
                .roles
                .get_mut(&member)
                .ok_or_else(|| no_such_role(&member))?
                .member_of
                .insert(name.clone());
        }
        security.roles.insert(name, role);
    }
    Ok(())
}

/// `ALTER ROLE name [WITH] options` or `RENAME TO`.
pub fn alter(
    security: &mut SecurityCatalog,
    name: &ast::Ident,
    operation: &ast::AlterRoleOperation,
) -> Result<()> {
    let name = ddl::ident(name);
    if !security.roles.contains_key(&name) {
        return Err(no_such_role(&name));
    }
    match operation {
        ast::AlterRoleOperation::RenameRole { role_name } => {
            let to = ddl::ident(role_name);
            check_new_name(&to)?;
            if security.roles.contains_key(&to) {
                return Err(EngineError::DuplicateObject {
                    message: format!("role \"{to}\" already exists"),
                });
            }
            let mut role = security.roles.remove(&name).expect("checked");
            role.name = to.clone();
            // PostgreSQL clears an MD5 password on rename; a SCRAM verifier does not
            // depend on the name and stays.
            security.roles.insert(to.clone(), role);
            for other in security.roles.values_mut() {
                if other.member_of.remove(&name) {
                    other.member_of.insert(to.clone());
                }
            }
            for grant in security.grants.iter_mut().filter(|g| g.grantee == name) {
                grant.grantee = to.clone();
            }
            for policy in &mut security.policies {
                for role in policy.roles.iter_mut().filter(|r| **r == name) {
                    *role = to.clone();
                }
            }
        }
        ast::AlterRoleOperation::WithOptions { options } => {
            let role = security.roles.get_mut(&name).expect("checked");
            for option in options {
                match option {
                    ast::RoleOption::Login(on) => role.login = *on,
                    ast::RoleOption::SuperUser(on) => role.superuser = *on,
                    ast::RoleOption::BypassRLS(on) => role.bypass_rls = *on,
                    ast::RoleOption::Password(password) => role.password = verifier_of(password)?,
                    other => {
                        return Err(EngineError::unsupported(format!(
                            "ALTER ROLE ... {other} is not supported"
                        )))
                    }
                }
            }
        }
        other => return Err(EngineError::unsupported(format!("ALTER ROLE ... {other} is not supported"))),
    }
    Ok(())
}

/// `DROP ROLE`: refused while a grant or policy names the role (2BP01), as PostgreSQL.
pub fn drop(security: &mut SecurityCatalog, names: &[ast::ObjectName], if_exists: bool) -> Result<()> {
    for name in names {
        let name = role_name(name)?;
        if !security.roles.contains_key(&name) {
            if if_exists {
                continue;
            }
            return Err(no_such_role(&name));
        }
        let granted = security.grants.iter().filter(|g| g.grantee == name).count();
        let policies = security.policies.iter().filter(|p| p.roles.contains(&name)).count();
        if granted + policies > 0 {
            return Err(EngineError::DependentObjects {
                message: format!("role \"{name}\" cannot be dropped because some objects depend on it"),
                detail: format!("{granted} privilege(s) granted to it, {policies} policy(ies) naming it"),
            });
        }
        security.roles.remove(&name);
        for other in security.roles.values_mut() {
            other.member_of.remove(&name);
        }
    }
    Ok(())
}

/// `GRANT group [, ...] TO role [, ...]` (`grant`), or `REVOKE ... FROM`.
pub fn membership(
    security: &mut SecurityCatalog,
    groups: &[String],
    members: &[String],
    grant: bool,
) -> Result<()> {
    for name in groups.iter().chain(members) {
        if !security.roles.contains_key(name) {
            return Err(no_such_role(name));
        }
    }
    for member in members {
        for group in groups {
            if grant && security.roles_of(group).contains(member) {
                return Err(EngineError::InvalidGrantOperation {
                    message: format!("role \"{member}\" is a member of role \"{group}\""),
                });
            }
            let role = security.roles.get_mut(member).expect("checked");
            if grant {
                role.member_of.insert(group.clone());
            } else {
                role.member_of.remove(group);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_has_postgres_form() {
        let verifier = scram_verifier("secret");
        let parts: Vec<&str> = verifier.split(['$', ':']).collect();
        assert_eq!(parts[0], "SCRAM-SHA-256");
        assert_eq!(parts[1], "4096");
        assert_eq!(STANDARD.decode(parts[3]).unwrap().len(), 32);
        assert_eq!(STANDARD.decode(parts[4]).unwrap().len(), 32);
        assert_ne!(verifier, scram_verifier("secret"), "a fresh salt each time");
    }

    #[test]
    fn membership_cannot_loop() {
        let mut security = SecurityCatalog::default();
        for name in ["a", "b"] {
            security.roles.insert(name.into(), RoleDef::new(name));
        }
        membership(&mut security, &["a".into()], &["b".into()], true).unwrap();
        assert!(membership(&mut security, &["b".into()], &["a".into()], true).is_err());
        membership(&mut security, &["a".into()], &["b".into()], false).unwrap();
        assert!(security.roles["b"].member_of.is_empty());
    }
}
