//! Tarn's SQL engine: DataFusion with Postgres' SQL surface over Tarn tables.
//!
//! Knows SQL and DataFusion; knows nothing of the wire protocol.
//!
//! # Layout
//!
//! - [`engine`]: [`Engine`], the warehouse plus the session template; the one place that
//!   registers every extension (catalog, types, functions, configuration).
//! - [`activity`]: what every session is doing (`pg_stat_activity`) and the signals
//!   `pg_cancel_backend` / `pg_terminate_backend` send.
//! - [`access`]: roles, table privileges and row-level security, checked on every
//!   statement's plan (42501) and applied inside scans and searches.
//! - [`statements`]: a statement's way from text to result: limits, parsing and
//!   rewrites, the session (prepare, execute), parameters, result-column names, key
//!   lookups, writes and transactions, COPY, DDL, SET/SHOW.
//! - [`catalog`]: the warehouse as DataFusion catalog and tables (merged on read), and
//!   the system catalogs (`pg_type`..., `tarn_tables`, `tarn_indexes`).
//! - [`search`]: pgvector's type, distances, operators and indexes, and kNN planning.
//! - [`types`]: Postgres types <-> Arrow types and wire OIDs.
//! - [`binary`]: values from Postgres' binary form (binary parameters, COPY BINARY).
//! - [`lineage`]: OpenLineage run events of the statements, with column lineage from
//!   their plans, to the warehouse's lineage log and an HTTP endpoint; `lineage()`.
//! - [`functions`]: `version()`, `current_database()` and other client-facing functions.
//! - [`error`]: [`EngineError`].

pub mod access;
pub mod activity;
pub mod binary;
pub mod catalog;
pub mod engine;
pub mod error;
pub mod functions;
pub mod lineage;
pub mod search;
pub mod statements;
pub mod types;

pub use engine::{Engine, EngineConfig};
pub use error::{EngineError, Result};
pub use statements::parser::redact_literals;
pub use statements::session::{CommandTag, Output, Prepared, RowsCommand, Session, TxStatus};
