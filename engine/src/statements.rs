//! A statement's way from text to result, apart from DataFusion's own planning.
//!
//! - [`limits`]: how long and how deep a statement may be (54000, 54001), checked
//!   before anything recurses into it; the stack statements run on.
//! - [`parser`]: SQL text to statements (sqlparser's PostgreSQL dialect plus Tarn's
//!   words: `USING <format>`, `AS OF VERSION n`, `UNLOGGED`, `<+>`, `@@@`).
//! - [`literals`]: syntax rewrites for what Arrow cannot cast (vector, bytea, DEFAULT).
//! - [`pg_casts`]: a float, timestamp or array cast to text prints as in PostgreSQL
//!   (`1`, not `1.0`; `{1,2}`, not `[1, 2]`).
//! - [`pg_syntax`]: Postgres syntax of catalog queries DataFusion lacks (`COLLATE`,
//!   `OPERATOR(pg_catalog.~)`, `::regclass`, `ARRAY(SELECT ...)`).
//! - [`lateral_unnest`]: `FROM t CROSS JOIN unnest(t.a)`, an unnest reading the rows
//!   before it, as one plan.
//! - [`distinct_on`]: `DISTINCT ON` with a correlated subquery in its select list.
//! - [`scalar_subqueries`]: correlated scalar subqueries that are not aggregates;
//!   [`row_subqueries`]: those DataFusion cannot join, run per outer row.
//! - [`session`]: [`Session`](session::Session), one connection's statements: prepare
//!   (parameter and result types), execute; settings and transaction state.
//! - [`params`]: `$n` parameters: their types (declared, inferred, from context: LIMIT,
//!   `= ANY($1)`, CASE), their values bound into plans, and table-function arguments
//!   bound in the syntax tree.
//! - [`plan_cache`]: plans a statement keeps between executions, re-pinned to the
//!   snapshot each execute reads, and what makes them go (DDL, settings).
//! - [`plan_template`]: a prepared search's physical plan, kept with slots for its
//!   values and its searches.
//! - [`column_names`]: result columns named as PostgreSQL names them.
//! - [`lookup`]: `SELECT ... WHERE pk = $1` without DataFusion planning.
//! - [`dml`]: INSERT (ON CONFLICT), UPDATE, DELETE, TRUNCATE and COMMIT over the change
//!   store; [`transaction`]: a session's snapshots, own writes and savepoints.
//!   [`generated`]: stored generated columns, checked and computed per written batch.
//! - [`copy`]: `COPY ... FROM STDIN` / `TO STDOUT`; [`external`]: external tables
//!   (`CREATE EXTERNAL TABLE`, `REFRESH TABLE`) and `COPY ... TO 'file'` (Parquet).
//! - [`cursors`]: `DECLARE ... CURSOR`, `FETCH`, `CLOSE`.
//! - [`ddl`]: `CREATE TABLE` and friends, to storage's `TableDef`; [`views`]: `CREATE
//!   VIEW`, `DROP VIEW`, and DROPs of what views read (CASCADE).
//! - [`temp`]: temporary tables and views, in the session's own `pg_temp_<n>` schema,
//!   which its unqualified names find first.
//! - [`utility`]: statements the session carries out itself (DDL, SET/SHOW, BEGIN,
//!   VACUUM...); [`settings`]: `SET`/`SHOW` variables and their defaults.

pub mod column_names;
pub mod copy;
pub mod cursors;
pub mod ddl;
pub mod distinct_on;
pub mod dml;
pub mod external;
pub(crate) mod generated;
pub mod lateral_unnest;
pub mod limits;
pub mod literals;
pub mod lookup;
pub mod params;
pub mod parser;
pub mod pg_casts;
pub mod pg_syntax;
pub(crate) mod plan_cache;
pub(crate) mod plan_template;
pub mod row_subqueries;
pub mod scalar_subqueries;
pub mod session;
pub mod settings;
pub mod temp;
pub mod transaction;
pub mod utility;
pub mod views;
