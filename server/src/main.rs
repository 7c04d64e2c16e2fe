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
    /// Warehouse folder or file:// URL [default: ./tarn-data].
    #[arg(long)]
    data: Option<String>,
    /// TOML file with the same keys as the flags (flags win).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,lance=warn,datafusion=warn".into()),
        )
        .init();
    let args = Args::parse();
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
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data) = args.data {
        config.data = data;
    }
    if let Err(e) = config.validate() {
        error!("{e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tarn_server::runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: ServerConfig) -> Result<(), String> {
    let engine =
        Engine::open(config.engine_config()).await.map_err(|e| format!("opening {}: {e}", config.data))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", config.listen))?;
    info!(listen = %config.listen, data = %engine.warehouse().url(), database = engine.database(), "tarn is ready");
    tarn_server::run(listener, engine, shutdown_signal()).await.map_err(|e| e.to_string())?;
    info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
        _ = term.recv() => info!("SIGTERM received"),
    }
}
