//! The statements of [`crate::access`], carried out for a session: roles, grants,
//! row security and policies, column tags and masking policies, `SET ROLE`. Each changes the warehouse's security
//! catalog in one durable write; only a superuser may run them (Tarn has no table
//! owners yet, who in PostgreSQL may grant on and secure their own tables).

use datafusion::sql::sqlparser::ast::{self, ObjectType, Reset, Set, Statement};
use tarn_storage::security::{PolicyCommand, PolicyDef, PUBLIC};
use tarn_storage::StorageError;

use crate::access::privileges::TableGrant;
use crate::access::{masking, roles, row_security};
use crate::error::{EngineError, Result};
use crate::statements::ddl;
use crate::statements::parser::ParsedStatement;
use crate::statements::session::{CommandTag, Session};

impl Session {
    /// Carries out `statement` if it is one of access control's; `None` otherwise.
    pub(crate) async fn run_access(&mut self, parsed: &ParsedStatement) -> Result<Option<CommandTag>> {
        let warehouse = self.engine.warehouse().clone();
        let statement = &parsed.statement;
        let tag = match statement {
            Statement::CreatePolicy(create) if parsed.masking_policy => {
                self.access.require_superuser("create masking policy")?;
                warehouse.update_security(|s| masking::create_policy(s, create)).await?;
                "CREATE MASKING POLICY"
            }
            Statement::DropPolicy(drop) if parsed.masking_policy => {
                self.access.require_superuser("drop masking policy")?;
                warehouse.update_security(|s| masking::drop_policy(s, drop)).await?;
                "DROP MASKING POLICY"
            }
            Statement::AlterTable(alter) if parsed.column_options.is_some() => {
                let [ast::AlterTableOperation::SetOptionsParens { options }] = alter.operations.as_slice()
                else {
                    return Err(EngineError::syntax(
                        "ALTER COLUMN ... SET (...) must be the only change of its ALTER TABLE",
                    ));
                };
                self.access.require_superuser("tag a column")?;
                let name = ddl::table_name(&alter.name)?;
                let column = parsed.column_options.clone().expect("matched");
                let Some(table) = warehouse.table(&name) else {
                    if alter.if_exists {
                        return Ok(Some(CommandTag::new("ALTER TABLE")));
                    }
                    return Err(StorageError::TableNotFound { name }.into());
                };
                if table.snapshot().def().column_index(&column).is_none() {
                    return Err(EngineError::UndefinedColumn { column });
                }
                warehouse
                    .update_security(|s| masking::set_column_options(s, &name, &column, options))
                    .await?;
                "ALTER TABLE"
            }
            Statement::CreateRole(create) => {
                self.access.require_superuser("create role")?;
                warehouse.update_security(|s| roles::create(s, create)).await?;
                "CREATE ROLE"
            }
            Statement::AlterRole { name, operation } => {
                self.access.require_superuser("alter role")?;
                warehouse.update_security(|s| roles::alter(s, name, operation)).await?;
                "ALTER ROLE"
            }
            Statement::Drop {
                object_type: object_type @ (ObjectType::Role | ObjectType::User),
                if_exists,
                names,
                ..
            } => {
                self.access.require_superuser("drop role")?;
                let current = [self.access.session_user().to_string(), self.access.role()];
                let mut named = names.iter().filter_map(|n| ddl::table_name(n).ok().map(|n| n.table));
                if let Some(name) = named.find(|n| current.contains(n)) {
                    return Err(EngineError::ObjectNotInPrerequisiteState {
                        message: format!("current user \"{name}\" cannot be dropped"),
                    });
                }
                warehouse.update_security(|s| roles::drop(s, names, *if_exists)).await?;
                if *object_type == ObjectType::User {
                    "DROP USER"
                } else {
                    "DROP ROLE"
                }
            }
            Statement::Grant(grant) => {
                self.grant_or_revoke(&grant.privileges, grant.objects.as_ref(), &grant.grantees, true).await?
            }
            Statement::Revoke(revoke) => {
                self.grant_or_revoke(&revoke.privileges, revoke.objects.as_ref(), &revoke.grantees, false)
                    .await?
            }
            Statement::AlterTable(alter) if is_row_security(&alter.operations) => {
                self.access.require_superuser("alter row security")?;
                let name = ddl::table_name(&alter.name)?;
                if warehouse.table(&name).is_none() {
                    if alter.if_exists {
                        return Ok(Some(CommandTag::new("ALTER TABLE")));
                    }
                    return Err(StorageError::TableNotFound { name }.into());
                }
                warehouse
                    .update_security(|s| {
                        for operation in &alter.operations {
                            match operation {
                                ast::AlterTableOperation::EnableRowLevelSecurity => {
                                    s.row_security.insert(name.clone());
                                }
                                ast::AlterTableOperation::DisableRowLevelSecurity => {
                                    s.row_security.remove(&name);
                                }
                                // Owners are not modelled: every role but a superuser is
                                // subject to the policies already, as FORCE makes them.
                                _ => {}
                            }
                        }
                        Ok::<_, EngineError>(())
                    })
                    .await?;
                "ALTER TABLE"
            }
            Statement::CreatePolicy(create) => {
                self.access.require_superuser("create policy")?;
                let policy = self.policy_def(create)?;
                warehouse
                    .update_security(|s| {
                        if s.policies.iter().any(|p| p.table == policy.table && p.name == policy.name) {
                            return Err(EngineError::DuplicateObject {
                                message: format!(
                                    "policy \"{}\" for table \"{}\" already exists",
                                    policy.name, policy.table.table
                                ),
                            });
                        }
                        if let Some(role) =
                            policy.roles.iter().find(|r| *r != PUBLIC && !s.roles.contains_key(*r))
                        {
                            return Err(roles::no_such_role(role));
                        }
                        s.policies.push(policy);
                        Ok(())
                    })
                    .await?;
                "CREATE POLICY"
            }
            Statement::DropPolicy(drop) => {
                self.access.require_superuser("drop policy")?;
                let (name, table) = (ddl::ident(&drop.name), ddl::table_name(&drop.table_name)?);
                warehouse
                    .update_security(|s| {
                        let before = s.policies.len();
                        s.policies.retain(|p| !(p.table == table && p.name == name));
                        if before == s.policies.len() && !drop.if_exists {
                            return Err(EngineError::UndefinedObject {
                                message: format!(
                                    "policy \"{name}\" for table \"{}\" does not exist",
                                    table.table
                                ),
                            });
                        }
                        Ok(())
                    })
                    .await?;
                "DROP POLICY"
            }
            Statement::Set(Set::SetRole { role_name, .. }) => {
                let role = match role_name {
                    Some(name) => ddl::ident(name),
                    None => self.access.session_user().to_string(),
                };
                self.set_role(&role)?;
                "SET"
            }
            Statement::Reset(reset) if matches!(&reset.reset, Reset::ConfigurationParameter(name) if name.to_string().eq_ignore_ascii_case("role")) =>
            {
                self.reset_role();
                "RESET"
            }
            _ => return Ok(None),
        };
        Ok(Some(CommandTag::new(tag)))
    }

    /// `GRANT` (`grant`) or `REVOKE`: of privileges on tables, or of role membership
    /// (no `ON`). Returns the command tag.
    async fn grant_or_revoke(
        &self,
        privileges: &ast::Privileges,
        objects: Option<&ast::GrantObjects>,
        grantees: &[ast::Grantee],
        grant: bool,
    ) -> Result<&'static str> {
        self.access.require_superuser(if grant { "grant" } else { "revoke" })?;
        let warehouse = self.engine.warehouse();
        match objects {
            None => {
                let (groups, members) = membership_names(privileges, grantees)?;
                warehouse.update_security(|s| roles::membership(s, &groups, &members, grant)).await?;
                Ok(if grant { "GRANT ROLE" } else { "REVOKE ROLE" })
            }
            Some(objects) => {
                let change = TableGrant::from_ast(warehouse, privileges, objects, grantees)?;
                match grant {
                    true => warehouse.update_security(|s| change.grant(s)).await?,
                    false => warehouse.update_security(|s| change.revoke(s)).await?,
                }
                Ok(if grant { "GRANT" } else { "REVOKE" })
            }
        }
    }

    /// Back to the session user (`RESET ROLE`, `RESET ALL`, `DISCARD ALL`).
    pub(crate) fn reset_role(&mut self) {
        if self.access.role() != self.access.session_user() {
            let user = self.access.session_user().to_string();
            self.set_role(&user).expect("the session user may always be itself");
        }
    }

    /// `SET ROLE`: to a role the session user is a member of (any role, for a
    /// superuser), or back to the session user.
    fn set_role(&mut self, role: &str) -> Result<()> {
        let security = self.engine.warehouse().security();
        let session_user = self.access.session_user().to_string();
        if role != session_user {
            if !security.roles.contains_key(role) {
                return Err(roles::no_such_role(role));
            }
            if !security.is_superuser(&session_user) && !security.roles_of(&session_user).contains(role) {
                return Err(EngineError::InsufficientPrivilege {
                    message: format!("permission denied to set role \"{role}\""),
                });
            }
        }
        self.access.set_role(role);
        crate::functions::register_user(&self.ctx, &session_user, role);
        self.refresh_planning_state();
        // Plans kept under the other role go.
        self.settings.renew();
        Ok(())
    }

    /// A `CREATE POLICY`'s definition.
    fn policy_def(&self, create: &ast::CreatePolicy) -> Result<PolicyDef> {
        let table = ddl::table_name(&create.table_name)?;
        if self.engine.warehouse().table(&table).is_none() {
            return Err(StorageError::TableNotFound { name: table }.into());
        }
        let command = match create.command {
            None | Some(ast::CreatePolicyCommand::All) => PolicyCommand::All,
            Some(ast::CreatePolicyCommand::Select) => PolicyCommand::Select,
            Some(ast::CreatePolicyCommand::Insert) => PolicyCommand::Insert,
            Some(ast::CreatePolicyCommand::Update) => PolicyCommand::Update,
            Some(ast::CreatePolicyCommand::Delete) => PolicyCommand::Delete,
        };
        // As PostgreSQL: SELECT and DELETE policies have no WITH CHECK, INSERT ones no USING.
        if create.with_check.is_some() && matches!(command, PolicyCommand::Select | PolicyCommand::Delete) {
            return Err(EngineError::syntax("WITH CHECK cannot be applied to SELECT or DELETE"));
        }
        if create.using.is_some() && command == PolicyCommand::Insert {
            return Err(EngineError::syntax("only WITH CHECK expression allowed for INSERT"));
        }
        let roles = create
            .to
            .iter()
            .flatten()
            .map(|owner| match owner {
                ast::Owner::Ident(ident) => Ok(ddl::ident(ident)),
                other => {
                    Err(EngineError::unsupported(format!("TO {other} is not supported in CREATE POLICY")))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let policy = PolicyDef {
            name: ddl::ident(&create.name),
            table: table.clone(),
            command,
            permissive: !matches!(create.policy_type, Some(ast::CreatePolicyType::Restrictive)),
            roles: roles.into_iter().filter(|r| r != PUBLIC).collect(),
            using: create.using.as_ref().map(row_security::policy_text).transpose()?,
            with_check: create.with_check.as_ref().map(row_security::policy_text).transpose()?,
        };
        // The expressions must plan over the table's columns now.
        let schema = crate::catalog::provider::nullable_schema(
            &self.engine.warehouse().table(&table).expect("checked").snapshot().schema(),
        );
        for sql in policy.using.iter().chain(&policy.with_check) {
            crate::access::plan_expr(&self.planning, sql, schema.clone())?;
        }
        Ok(policy)
    }
}

fn is_row_security(operations: &[ast::AlterTableOperation]) -> bool {
    !operations.is_empty()
        && operations.iter().all(|o| {
            matches!(
                o,
                ast::AlterTableOperation::EnableRowLevelSecurity
                    | ast::AlterTableOperation::DisableRowLevelSecurity
                    | ast::AlterTableOperation::ForceRowLevelSecurity
                    | ast::AlterTableOperation::NoForceRowLevelSecurity
            )
        })
}

/// `GRANT ROLE g TO m` (the parser's form of `GRANT g TO m`): groups and members.
fn membership_names(
    privileges: &ast::Privileges,
    grantees: &[ast::Grantee],
) -> Result<(Vec<String>, Vec<String>)> {
    let ast::Privileges::Actions(actions) = privileges else {
        return Err(EngineError::syntax("GRANT ALL needs ON a table"));
    };
    let groups = actions
        .iter()
        .map(|a| match a {
            ast::Action::Role { role } => Ok(ddl::table_name(role)?.table),
            other => Err(EngineError::syntax(format!("GRANT {other} needs ON a table"))),
        })
        .collect::<Result<Vec<_>>>()?;
    let members = grantees
        .iter()
        .map(|g| match &g.name {
            Some(ast::GranteeName::ObjectName(name)) => Ok(ddl::table_name(name)?.table),
            _ => Err(EngineError::syntax(format!("cannot grant a role to {g}"))),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((groups, members))
}
