//! Process configuration: one struct, from a TOML file and flags (flags win).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::{Hba, HbaRule, Verifier};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Warehouse: a folder path, `file://` or `s3://bucket/prefix` URL.
    pub data: String,
    /// The database name clients connect to.
    pub database: String,
    /// Memory for query execution, in MiB.
    pub memory_limit_mb: usize,
    /// Sessions open at once; one more is refused with 53300, as PostgreSQL's
    /// `max_connections`.
    pub max_connections: usize,
    /// The largest message a client may send (a query, a Bind, a row of COPY data), in
    /// MiB. PostgreSQL's own ceiling is 1 GiB; a bigger message ends that connection.
    pub max_message_mb: usize,
    /// Users who log in with a password: SCRAM-SHA-256 verifiers, never plain text.
    pub users: Vec<User>,
    /// Who may connect how, first match wins (PostgreSQL's `pg_hba.conf`). Without
    /// rules: loopback clients are trusted when there are no users, and every client
    /// logs in with a password when there are.
    pub hba: Vec<HbaRule>,
    /// TLS: certificate chain and key, PEM files.
    pub tls: Option<Tls>,
    /// The folder `embed()` loads models from (`tarn models fetch` fills it).
    pub models_dir: PathBuf,
    /// How far back time travel reaches in tables that set no `history_retention`
    /// (`'7 days'`, `'12h'`, `0`); older versions' files are deleted.
    pub history_retention: String,
    /// An `s3://` warehouse's endpoint, region, credentials, `allow_http`...
    pub s3: tarn_storage::S3Options,
    /// The write-ahead log's folder: `<data>/_tarn/wal` for a local warehouse,
    /// `./tarn-wal` for an object-store one, unless set.
    pub wal_dir: Option<PathBuf>,
    /// Where the write-ahead log is: `local` (in `wal_dir`, an fsync per group commit)
    /// or `object` (in the warehouse, an object per group commit).
    pub wal: String,
    /// Serve a warehouse another Tarn writes, read-only (`--read-only`): follow its
    /// manifests, refuse writes with 25006.
    pub read_only: bool,
    /// How often a read-only server reads the writer's manifests (`'1s'`, `'500ms'`).
    pub follow_interval: String,
    /// How long the writer's lease on the warehouse lasts without a renewal; a writer
    /// starting after one that died waits this long (`'10s'`).
    pub writer_lease_ttl: String,
    /// Folders whose files `CREATE EXTERNAL TABLE` may read and `COPY ... TO` may write
    /// (absolute paths; anything else is 42501). Empty: none.
    pub external_locations: Vec<PathBuf>,
    /// Keep the audit trail of every statement in the warehouse (`tarn_audit_log`).
    pub audit: bool,
    /// The audit trail's statements with their literals replaced by `?`.
    pub audit_redact_literals: bool,
    /// Emit OpenLineage events of the statements that write (and, per session, read)
    /// into `tarn_lineage_events`. Off by default for now: with it on, a test server
    /// under heavy load (tests/limits.rs beside its siblings) missed its lease renewal.
    pub lineage: bool,
    /// The lineage events' job namespace.
    pub lineage_namespace: String,
    /// An OpenLineage HTTP endpoint the events are also POSTed to (`http://host:5000`,
    /// Marquez's API: `/api/v1/lineage` is added).
    pub lineage_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, as `tarn passwd`
    /// prints it (and PostgreSQL keeps it in `pg_authid.rolpassword`).
    pub password: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The server's certificate, then its chain, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:5433".parse().expect("valid address"),
            data: "./tarn-data".into(),
            database: "tarn".into(),
            memory_limit_mb: 4096,
            max_connections: 100,
            max_message_mb: 64,
            users: vec![],
            hba: vec![],
            tls: None,
            models_dir: "./tarn-models".into(),
            history_retention: "7 days".into(),
            s3: Default::default(),
            wal_dir: None,
            wal: "local".into(),
            read_only: false,
            follow_interval: "1s".into(),
            writer_lease_ttl: "10s".into(),
            external_locations: vec![],
            audit: true,
            audit_redact_literals: false,
            lineage: false,
            lineage_namespace: "tarn".into(),
            lineage_url: None,
        }
    }
}

impl ServerConfig {
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Refuses configurations that would expose data: without users or TLS every
    /// client would be trusted or refused, so listening beyond loopback needs one of
    /// them; `trust` rules cover loopback addresses only; passwords are verifiers.
    pub fn validate(&self) -> Result<(), String> {
        for user in &self.users {
            Verifier::parse(&user.password)
                .map_err(|e| format!("the password of user \"{}\" {e}", user.name))?;
        }
        for rule in &self.hba {
            rule.validate()?;
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if self.max_message_mb == 0 || self.max_message_mb > 1023 {
            return Err("max_message_mb must be between 1 and 1023".into());
        }
        if !["local", "object"].contains(&self.wal.as_str()) {
            return Err(format!("wal must be \"local\" or \"object\", not \"{}\"", self.wal));
        }
        for (key, value) in
            [("follow_interval", &self.follow_interval), ("writer_lease_ttl", &self.writer_lease_ttl)]
        {
            match tarn_storage::compaction::parse_duration(value) {
                Some(d) if !d.is_zero() => {}
                _ => return Err(format!("{key} must be a duration like '1s' or '500ms', not \"{value}\"")),
            }
        }
        if let Some(relative) = self.external_locations.iter().find(|p| !p.is_absolute()) {
            return Err(format!("external_locations must be absolute paths, not \"{}\"", relative.display()));
        }
        if !self.listen.ip().is_loopback() && self.users.is_empty() && self.tls.is_none() {
            return Err(format!(
                "refusing to listen on {} without users or TLS configured: every client would be trusted. \
                 Listen on 127.0.0.1 or ::1, or add [[users]] (see `tarn passwd`)",
                self.listen
            ));
        }
        Ok(())
    }

    /// The rules in force: the configured ones, or the defaults described at `hba`.
    pub fn hba(&self) -> Hba {
        if !self.hba.is_empty() {
            return Hba(self.hba.clone());
        }
        if self.users.is_empty() {
            Hba(vec![HbaRule::new("127.0.0.0/8", "trust"), HbaRule::new("::1/128", "trust")])
        } else {
            Hba(vec![HbaRule::new("all", "scram-sha-256")])
        }
    }

    /// The users' verifiers (checked by [`ServerConfig::validate`]).
    pub fn verifiers(&self) -> Result<HashMap<String, Verifier>, String> {
        self.users
            .iter()
            .map(|u| {
                Ok((
                    u.name.clone(),
                    Verifier::parse(&u.password).map_err(|e| format!("user {}: {e}", u.name))?,
                ))
            })
            .collect()
    }

    pub fn engine_config(&self) -> tarn_engine::EngineConfig {
        tarn_engine::EngineConfig {
            warehouse: self.data.clone(),
            database: self.database.clone(),
            memory_limit_bytes: self.memory_limit_mb << 20,
            models_dir: Some(self.models_dir.clone()),
            history_retention: self.history_retention.clone(),
            external_locations: self.external_locations.clone(),
            audit: self.audit,
            audit_redact_literals: self.audit_redact_literals,
            lineage: self.lineage.then(|| tarn_engine::lineage::LineageConfig {
                namespace: self.lineage_namespace.clone(),
                url: self.lineage_url.clone(),
            }),
            storage: tarn_storage::OpenOptions {
                s3: self.s3.clone(),
                wal_dir: self.wal_dir.clone(),
                read_only: self.read_only,
                follow_interval: tarn_storage::compaction::parse_duration(&self.follow_interval),
                lease_ttl: tarn_storage::compaction::parse_duration(&self.writer_lease_ttl),
                wal_in_store: self.wal == "object",
            },
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_without_users_or_tls_is_refused() {
        let mut config = ServerConfig::default();
        assert!(config.validate().is_ok());
        config.listen = "0.0.0.0:5433".parse().unwrap();
        assert!(config.validate().unwrap_err().contains("refusing"));
        config.users = vec![User { name: "a".into(), password: crate::auth::scram_verifier("pw") }];
        assert!(config.validate().is_ok());
        assert_eq!(config.hba().0.len(), 1);
        config.users[0].password = "pw".into();
        assert!(config.validate().unwrap_err().contains("tarn passwd"));
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        assert!(toml::from_str::<ServerConfig>("listne = '127.0.0.1:1'").is_err());
        let c: ServerConfig = toml::from_str("data = '/tmp/x'").unwrap();
        assert_eq!(c.data, "/tmp/x");
    }
}
