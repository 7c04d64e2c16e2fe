//! Tarn's SQL engine: DataFusion with Postgres' SQL surface over Tarn tables.
//!
//! Knows SQL and DataFusion; knows nothing of the wire protocol.
//!
//! # Layout
//!
//! - [`engine`]: [`Engine`], the warehouse plus the session template; the one place that
//!   registers every extension (catalog, types, functions, configuration).
//! - [`session`]: [`Session`], one connection's statements: prepare (parameter and
//!   result types), execute; settings and transaction state.
//! - [`utility`]: statements the session carries out itself (DDL, SET/SHOW, BEGIN,
//!   VACUUM...).
//! - [`dml`]: INSERT (ON CONFLICT), UPDATE, DELETE, TRUNCATE and COMMIT over the change
//!   store; [`transaction`]: a session's snapshots, own writes and savepoints.
//! - [`lookup`]: `SELECT ... WHERE pk = $1` without DataFusion planning.
//! - [`copy`]: `COPY ... FROM STDIN` / `TO STDOUT`.
//! - [`system`]: `tarn_tables`.
//! - [`limits`]: how long and how deep a statement may be (54000, 54001), checked
//!   before anything recurses into it; the stack statements run on.
//! - [`params`]: `$n` parameters: their types (declared, inferred, from context: LIMIT,
//!   `= ANY($1)`, CASE), their values bound into plans, and table-function arguments
//!   bound in the syntax tree.
//! - [`parser`]: SQL text to statements (sqlparser's PostgreSQL dialect plus Tarn's
//!   words: `USING <format>`, `AS OF VERSION n`, `<+>`, `@@@`).
//! - [`ddl`]: `CREATE TABLE` and friends, to storage's `TableDef`.
//! - [`column_names`]: result columns named as PostgreSQL names them.
//! - [`catalog`], [`provider`]: the warehouse as DataFusion catalog and tables.
//! - [`pg_catalog`]: `pg_type` and friends, for drivers that look types up.
//! - [`types`]: Postgres types <-> Arrow types and wire OIDs.
//! - [`binary`]: values from Postgres' binary form (binary parameters, COPY BINARY).
//! - [`vector`]: pgvector's `vector(n)`: text form and `to_vector`.
//! - [`vector_aggregates`]: `avg` and `sum` of vectors.
//! - [`distance`]: pgvector's distances, vector functions and operators.
//! - [`index_ddl`]: `CREATE INDEX ... USING hnsw|ivfflat|ivf_pq`, `DROP INDEX`.
//! - [`base_cache`]: base versions held in memory for kNN searches.
//! - [`knn`]: `ORDER BY <distance> LIMIT k` as an index search or an exact one.
//! - [`literals`]: syntax rewrites for what Arrow cannot cast (vector, bytea, DEFAULT).
//! - [`settings`]: `SET`/`SHOW` variables and their defaults.
//! - [`functions`]: `version()`, `current_database()` and other client-facing functions.
//! - [`error`]: [`EngineError`].

pub mod base_cache;
pub mod binary;
pub mod catalog;
pub mod column_names;
pub mod copy;
pub mod ddl;
pub mod distance;
pub mod dml;
pub mod engine;
pub mod error;
pub mod functions;
pub mod index_ddl;
pub mod knn;
pub mod limits;
pub mod literals;
pub mod lookup;
pub mod params;
pub mod parser;
pub mod pg_catalog;
pub mod provider;
pub mod session;
pub mod settings;
pub mod system;
pub mod transaction;
pub mod types;
pub mod utility;
pub mod vector;
pub mod vector_aggregates;

pub use engine::{Engine, EngineConfig};
pub use error::{EngineError, Result};
pub use session::{CommandTag, Output, Prepared, RowsCommand, Session, TxStatus};
