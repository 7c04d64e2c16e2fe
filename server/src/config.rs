//! Process configuration: one struct, from a TOML file and flags (flags win).

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Warehouse: a folder path or `file://` URL.
    pub data: String,
    /// The database name clients connect to.
    pub database: String,
    /// Memory for query execution, in MiB.
    pub memory_limit_mb: usize,
    /// Users allowed to connect with a password. Password authentication is not built
    /// yet, so any entry here is refused at start rather than silently ignored.
    pub users: Vec<User>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub password: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:5433".parse().expect("valid address"),
            data: "./tarn-data".into(),
            database: "tarn".into(),
            memory_limit_mb: 4096,
            users: vec![],
        }
    }
}

impl ServerConfig {
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Refuses configurations that would expose data: without users every loopback
    /// client is trusted, so listening anywhere else needs users (and, until password
    /// authentication exists, is refused).
    pub fn validate(&self) -> Result<(), String> {
        if !self.users.is_empty() {
            return Err(
                "password authentication is not built yet: remove [[users]] and listen on a loopback address"
                    .into(),
            );
        }
        if !self.listen.ip().is_loopback() {
            return Err(format!(
                "refusing to listen on {} without users configured: every client would be trusted. \
                 Listen on 127.0.0.1 or ::1",
                self.listen
            ));
        }
        Ok(())
    }

    pub fn engine_config(&self) -> tarn_engine::EngineConfig {
        tarn_engine::EngineConfig {
            warehouse: self.data.clone(),
            database: self.database.clone(),
            memory_limit_bytes: self.memory_limit_mb << 20,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_without_users_is_refused() {
        let mut config = ServerConfig::default();
        assert!(config.validate().is_ok());
        config.listen = "0.0.0.0:5433".parse().unwrap();
        assert!(config.validate().unwrap_err().contains("refusing"));
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        assert!(toml::from_str::<ServerConfig>("listne = '127.0.0.1:1'").is_err());
        let c: ServerConfig = toml::from_str("data = '/tmp/x'").unwrap();
        assert_eq!(c.data, "/tmp/x");
    }
}
