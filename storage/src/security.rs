//! The warehouse's security catalog: roles, the privileges granted on tables, which
//! tables have row-level security on, and their row policies (PostgreSQL's
//! `pg_authid`, `pg_auth_members`, `relacl`/`attacl`, `relrowsecurity` and
//! `pg_policy`, in one document); and the tags on columns (what the sensitive-data
//! detector found, or a user set) with the masking policies bound to tags.
//!
//! It is one JSON object, `_tarn/security.json`, written whole by each change under the
//! DDL lock and swapped in memory after the write ([`crate::Warehouse::update_security`]);
//! a replica reads it again when it follows the writer's catalog. Passwords are kept
//! only as SCRAM-SHA-256 verifiers, never in plain text (the SQL layer makes them).
//! A table's grants and policies go with it when it is dropped, and follow it when it
//! is renamed.
//!
//! Policies keep their expressions as SQL text: storage knows no SQL; the engine plans
//! them for each session (their `current_user` is the session's).

use std::collections::{BTreeMap, BTreeSet};

use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::table_def::TableName;

/// The grantee `PUBLIC`: every role.
pub const PUBLIC: &str = "public";

/// Where the document lives.
pub(crate) fn security_path() -> Path {
    Path::from("_tarn").join("security.json")
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecurityCatalog {
    /// Roles by name.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleDef>,
    /// Table privileges, one entry per table, grantee and privilege.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Tables with `ENABLE ROW LEVEL SECURITY`.
    #[serde(default)]
    pub row_security: BTreeSet<TableName>,
    /// Row policies, in creation order.
    #[serde(default)]
    pub policies: Vec<PolicyDef>,
    /// Tags on columns, at most one per column.
    #[serde(default)]
    pub column_tags: Vec<ColumnTag>,
    /// The columns the detector has looked at (tagged or not) or a user has tagged or
    /// untagged: the detector leaves them be.
    #[serde(default)]
    pub classified: BTreeSet<(TableName, String)>,
    /// Masking policies, by tag.
    #[serde(default)]
    pub masking_policies: Vec<MaskingPolicy>,
}

/// The predefined role whose members see masked columns unmasked (superusers do too).
pub const UNMASK_ROLE: &str = "tarn_unmask";

/// What a column holds, as the sensitive-data detector classified it or a user said
/// (`ALTER TABLE t ALTER COLUMN c SET (tag = '...')`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnTag {
    pub table: TableName,
    pub column: String,
    pub tag: String,
    /// The detector's confidence, 0 to 1; 1 for a user's tag.
    pub confidence: f64,
    pub source: TagSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagSource {
    Detector,
    User,
}

impl TagSource {
    pub fn name(self) -> &'static str {
        match self {
            TagSource::Detector => "detector",
            TagSource::User => "user",
        }
    }
}

/// `CREATE MASKING POLICY name ON TAG tag WITH (mask = '...')`: the columns with the
/// tag read masked for every role that is not a superuser nor in [`UNMASK_ROLE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskingPolicy {
    pub name: String,
    pub tag: String,
    pub mask: Mask,
}

/// How a masked value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mask {
    /// A hash of the value (equal values stay equal: joins and GROUP BY still work).
    Hash,
    /// Part of the value kept (an e-mail's domain, a number's last four digits).
    Partial,
    /// NULL.
    Null,
}

impl Mask {
    pub fn name(self) -> &'static str {
        match self {
            Mask::Hash => "hash",
            Mask::Partial => "partial",
            Mask::Null => "null",
        }
    }

    pub fn parse(name: &str) -> Option<Mask> {
        match name.to_ascii_lowercase().as_str() {
            "hash" => Some(Mask::Hash),
            "partial" => Some(Mask::Partial),
            "null" => Some(Mask::Null),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleDef {
    pub name: String,
    #[serde(default)]
    pub superuser: bool,
    #[serde(default)]
    pub login: bool,
    /// `BYPASSRLS`: row policies do not apply to the role.
    #[serde(default)]
    pub bypass_rls: bool,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    #[serde(default)]
    pub password: Option<String>,
    /// The roles this one is a member of (`GRANT group TO role`); it has their
    /// privileges.
    #[serde(default)]
    pub member_of: BTreeSet<String>,
}

impl RoleDef {
    pub fn new(name: &str) -> Self {
        RoleDef {
            name: name.to_string(),
            superuser: false,
            login: false,
            bypass_rls: false,
            password: None,
            member_of: BTreeSet::new(),
        }
    }
}

/// What a privilege allows on a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
}

impl Privilege {
    pub const ALL: [Privilege; 4] =
        [Privilege::Select, Privilege::Insert, Privilege::Update, Privilege::Delete];

    /// The SQL word.
    pub fn keyword(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
        }
    }

    /// Its letter in PostgreSQL's `aclitem` text (`\dp`).
    pub fn acl_letter(self) -> char {
        match self {
            Privilege::Select => 'r',
            Privilege::Insert => 'a',
            Privilege::Update => 'w',
            Privilege::Delete => 'd',
        }
    }
}

/// One privilege on one table for one grantee: on the whole table (`columns: None`)
/// or on some of its columns (`GRANT SELECT (a, b)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub table: TableName,
    /// A role's name, or [`PUBLIC`].
    pub grantee: String,
    pub privilege: Privilege,
    #[serde(default)]
    pub columns: Option<BTreeSet<String>>,
}

/// The command a policy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyCommand {
    All,
    Select,
    Insert,
    Update,
    Delete,
}

impl PolicyCommand {
    /// Whether a policy for this command applies to `command`.
    pub fn covers(self, command: PolicyCommand) -> bool {
        self == PolicyCommand::All || self == command
    }

    /// The SQL word (and `pg_policy.polcmd`'s letter).
    pub fn keyword(self) -> (&'static str, char) {
        match self {
            PolicyCommand::All => ("ALL", '*'),
            PolicyCommand::Select => ("SELECT", 'r'),
            PolicyCommand::Insert => ("INSERT", 'a'),
            PolicyCommand::Update => ("UPDATE", 'w'),
            PolicyCommand::Delete => ("DELETE", 'd'),
        }
    }
}

/// `CREATE POLICY name ON table [AS PERMISSIVE|RESTRICTIVE] [FOR command] [TO roles]
/// [USING (expr)] [WITH CHECK (expr)]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDef {
    pub name: String,
    pub table: TableName,
    pub command: PolicyCommand,
    /// Permissive policies are OR-ed together; restrictive ones AND-ed onto that.
    pub permissive: bool,
    /// The roles it applies to; empty for `PUBLIC`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Which existing rows are visible (SQL text).
    #[serde(default)]
    pub using: Option<String>,
    /// Which new rows may be written (SQL text); `using` when absent.
    #[serde(default)]
    pub with_check: Option<String>,
}

impl SecurityCatalog {
    /// `role` and every role it is a member of, directly or not.
    pub fn roles_of(&self, role: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![role.to_string()];
        while let Some(next) = todo.pop() {
            if !seen.insert(next.clone()) {
                continue;
            }
            if let Some(def) = self.roles.get(&next) {
                todo.extend(def.member_of.iter().cloned());
            }
        }
        seen
    }

    /// Whether `role` is a defined role that is a superuser. A name that is no role
    /// here is the server's: its configured users and the trusted local user are
    /// superusers (PostgreSQL's bootstrap superuser).
    pub fn is_superuser(&self, role: &str) -> bool {
        self.roles.get(role).is_none_or(|r| r.superuser)
    }

    /// The grants that hold for `roles` (a role and those it is in) on `table`, with
    /// `PUBLIC`'s.
    pub fn grants_for<'a>(
        &'a self,
        roles: &'a BTreeSet<String>,
        table: &'a TableName,
    ) -> impl Iterator<Item = &'a Grant> + 'a {
        self.grants
            .iter()
            .filter(move |g| &g.table == table && (g.grantee == PUBLIC || roles.contains(&g.grantee)))
    }

    /// The policies on `table` for `command` that apply to `roles`.
    pub fn policies_for<'a>(
        &'a self,
        table: &'a TableName,
        command: PolicyCommand,
        roles: &'a BTreeSet<String>,
    ) -> impl Iterator<Item = &'a PolicyDef> + 'a {
        self.policies.iter().filter(move |p| {
            &p.table == table
                && p.command.covers(command)
                && (p.roles.is_empty() || p.roles.iter().any(|r| r == PUBLIC || roles.contains(r)))
        })
    }

    /// The tag of `table.column`, if it has one.
    pub fn tag_of(&self, table: &TableName, column: &str) -> Option<&ColumnTag> {
        self.column_tags.iter().find(|t| &t.table == table && t.column == column)
    }

    /// Tags `table.column` (`None`: untags it); the detector leaves it be afterwards.
    pub fn set_tag(&mut self, table: &TableName, column: &str, tag: Option<ColumnTag>) {
        self.column_tags.retain(|t| !(&t.table == table && t.column == column));
        self.column_tags.extend(tag);
        self.classified.insert((table.clone(), column.to_string()));
    }

    /// The mask `roles` read `table.column` with, if a masking policy covers its tag and
    /// none of the roles is [`UNMASK_ROLE`].
    pub fn mask_of(&self, roles: &BTreeSet<String>, table: &TableName, column: &str) -> Option<Mask> {
        if roles.contains(UNMASK_ROLE) {
            return None;
        }
        let tag = self.tag_of(table, column)?;
        self.masking_policies.iter().find(|p| p.tag == tag.tag).map(|p| p.mask)
    }

    /// Whether any column of `table` reads masked for `roles`.
    pub fn has_masks(&self, roles: &BTreeSet<String>, table: &TableName) -> bool {
        !self.masking_policies.is_empty()
            && self
                .column_tags
                .iter()
                .any(|t| &t.table == table && self.mask_of(roles, table, &t.column).is_some())
    }

    /// Forgets a dropped table's grants, policies and tags.
    pub(crate) fn forget_table(&mut self, table: &TableName) -> bool {
        let size = |s: &Self| {
            (s.grants.len(), s.policies.len(), s.row_security.len(), s.column_tags.len(), s.classified.len())
        };
        let before = size(self);
        self.grants.retain(|g| &g.table != table);
        self.policies.retain(|p| &p.table != table);
        self.row_security.remove(table);
        self.column_tags.retain(|t| &t.table != table);
        self.classified.retain(|(t, _)| t != table);
        before != size(self)
    }

    /// Forgets a dropped column's tag.
    pub fn forget_column(&mut self, table: &TableName, column: &str) -> bool {
        let before = (self.column_tags.len(), self.classified.len());
        self.column_tags.retain(|t| !(&t.table == table && t.column == column));
        self.classified.retain(|(t, c)| !(t == table && c == column));
        before != (self.column_tags.len(), self.classified.len())
    }

    /// Moves a renamed column's tag to its new name.
    pub fn rename_column(&mut self, table: &TableName, from: &str, to: &str) -> bool {
        let mut changed = false;
        for tag in self.column_tags.iter_mut().filter(|t| &t.table == table && t.column == from) {
            tag.column = to.to_string();
            changed = true;
        }
        if self.classified.remove(&(table.clone(), from.to_string())) {
            self.classified.insert((table.clone(), to.to_string()));
            changed = true;
        }
        changed
    }

    /// Moves a renamed table's grants and policies to its new name.
    pub(crate) fn rename_table(&mut self, from: &TableName, to: &TableName) -> bool {
        let mut changed = false;
        for grant in self.grants.iter_mut().filter(|g| &g.table == from) {
            grant.table = to.clone();
            changed = true;
        }
        for policy in self.policies.iter_mut().filter(|p| &p.table == from) {
            policy.table = to.clone();
            changed = true;
        }
        if self.row_security.remove(from) {
            self.row_security.insert(to.clone());
            changed = true;
        }
        for tag in self.column_tags.iter_mut().filter(|t| &t.table == from) {
            tag.table = to.clone();
            changed = true;
        }
        let classified: Vec<_> = self.classified.iter().filter(|(t, _)| t == from).cloned().collect();
        for (_, column) in classified {
            self.classified.remove(&(from.clone(), column.clone()));
            self.classified.insert((to.clone(), column));
            changed = true;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_is_transitive_and_unknown_names_are_superusers() {
        let mut catalog = SecurityCatalog::default();
        let mut alice = RoleDef::new("alice");
        alice.member_of.insert("analysts".into());
        let mut analysts = RoleDef::new("analysts");
        analysts.member_of.insert("readers".into());
        catalog.roles.insert("alice".into(), alice);
        catalog.roles.insert("analysts".into(), analysts);
        let roles = catalog.roles_of("alice");
        assert_eq!(roles.into_iter().collect::<Vec<_>>(), ["alice", "analysts", "readers"]);
        assert!(!catalog.is_superuser("alice"));
        assert!(catalog.is_superuser("tarn"));
    }

    #[test]
    fn tags_carry_masks_to_roles_outside_unmask_and_follow_their_columns() {
        let t = TableName::new("public", "t");
        let mut catalog = SecurityCatalog::default();
        let tag = |column: &str, tag: &str| ColumnTag {
            table: t.clone(),
            column: column.into(),
            tag: tag.into(),
            confidence: 0.9,
            source: TagSource::Detector,
        };
        catalog.set_tag(&t, "mail", Some(tag("mail", "email")));
        let alice: BTreeSet<String> = ["alice".to_string()].into();
        let auditor: BTreeSet<String> = ["bob".to_string(), UNMASK_ROLE.to_string()].into();
        assert!(!catalog.has_masks(&alice, &t), "no policy yet");
        catalog.masking_policies.push(MaskingPolicy {
            name: "m".into(),
            tag: "email".into(),
            mask: Mask::Partial,
        });
        assert_eq!(catalog.mask_of(&alice, &t, "mail"), Some(Mask::Partial));
        assert!(catalog.has_masks(&alice, &t) && !catalog.has_masks(&auditor, &t));
        assert!(catalog.rename_column(&t, "mail", "email"));
        assert_eq!(catalog.mask_of(&alice, &t, "email"), Some(Mask::Partial));
        assert!(catalog.classified.contains(&(t.clone(), "email".to_string())));
        // Untagged by a user: no mask, and the detector stays away.
        catalog.set_tag(&t, "email", None);
        assert!(!catalog.has_masks(&alice, &t) && catalog.classified.contains(&(t.clone(), "email".into())));
        assert!(catalog.forget_column(&t, "email"));
        assert!(catalog.classified.is_empty());
    }

    #[test]
    fn a_dropped_table_takes_its_grants_and_policies() {
        let t = TableName::new("public", "t");
        let mut catalog = SecurityCatalog::default();
        catalog.grants.push(Grant {
            table: t.clone(),
            grantee: "alice".into(),
            privilege: Privilege::Select,
            columns: None,
        });
        catalog.row_security.insert(t.clone());
        let u = TableName::new("public", "u");
        assert!(catalog.rename_table(&t, &u));
        assert_eq!(catalog.grants[0].table, u);
        assert!(catalog.row_security.contains(&u));
        assert!(catalog.forget_table(&u));
        assert!(catalog.grants.is_empty() && catalog.row_security.is_empty());
    }
}
