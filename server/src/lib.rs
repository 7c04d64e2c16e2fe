//! Tarn's Postgres front end: the wire protocol, sessions, and the `tarn` binary.
//!
//! # Layout
//!
//! - [`runtime`]: the Tokio runtime statements run on (deep stacks).
//! - [`run`]: the server as a function of a bound listener, an engine and a shutdown
//!   signal, so tests start one on `127.0.0.1:0`.
//! - [`frontend`]: what a client meets before its first statement, from the
//!   configuration: TLS, [`auth`] (`[[hba]]` rules, SCRAM users), connection and
//!   message-size limits.
//! - [`socket`]: one client socket: TLS negotiation and the message loop, with the
//!   message-size limit and idle timeouts.
//! - [`handler`]: one connection: startup (authentication, database check,
//!   ParameterStatus, cancel keys), simple and extended query protocol over an engine
//!   `Session`.
//! - [`interrupt`]: cancel requests and `statement_timeout`.
//! - [`flush`]: one write to the socket per Sync (pgwire flushes per message).
//! - [`copy`]: `COPY ... FROM STDIN` / `TO STDOUT` over the wire: copy mode around the
//!   engine's `Session::copy`.
//! - [`encode`]: Arrow values to Postgres text and binary wire values; parameters back.
//! - [`errors`]: the one mapping from errors to SQLSTATE and client messages.
//! - [`config`]: [`ServerConfig`], from flags and a TOML file.
//! - [`mcp`]: `tarn mcp`, a Model Context Protocol server on stdio whose tools explore and
//!   query a running Tarn server, read-only, as a client of it over the wire protocol.

// The write path's futures (statement, transaction, commit) nest deeply.
#![recursion_limit = "256"]

mod audit;
pub mod auth;
pub mod config;
pub mod copy;
pub mod encode;
pub mod errors;
pub mod flush;
pub mod frontend;
pub mod handler;
pub mod interrupt;
pub mod mcp;
pub mod socket;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use config::ServerConfig;
pub use frontend::Frontend;
use pgwire::api::RandomPidSecretKeyGenerator;
use tarn_engine::Engine;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{info, warn, Instrument};

use crate::handler::{ConnectionHandlers, Shared};

/// The runtime the server and its statements run on. Its threads (workers and blocking
/// ones) have stacks of [`tarn_engine::statements::limits::STATEMENT_STACK_BYTES`], what a statement
/// at the engine's depth limits needs; tests run their servers on one too.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tarn-worker")
        .thread_stack_size(tarn_engine::statements::limits::STATEMENT_STACK_BYTES)
        .build()
}

/// Serves connections from `listener`, as `frontend` admits them, until `shutdown` completes, then closes every
/// connection. A statement cut off by shutdown either committed (and was durable before
/// it was acknowledged) or did not: storage keeps no half-written state.
pub async fn run(
    listener: TcpListener,
    engine: Arc<Engine>,
    frontend: Frontend,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    frontend.users.attach(engine.warehouse().clone());
    let frontend = Arc::new(frontend);
    let shared =
        Arc::new(Shared { engine, frontend: frontend.clone(), pids: RandomPidSecretKeyGenerator::default() });
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let handlers = ConnectionHandlers::new(shared.clone());
                    let span = tracing::info_span!("connection", %peer);
                    let frontend = frontend.clone();
                    connections.spawn(async move {
                        if let Err(e) = socket::serve(stream, frontend, handlers).await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    }.instrument(span));
                }
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    info!(open = connections.len(), "shutting down; closing connections");
    connections.shutdown().await;
    shared.engine.close().await;
    Ok(())
}
