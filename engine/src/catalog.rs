//! What DataFusion and clients see of the warehouse: its tables, and the system
//! catalogs drivers read.
//!
//! - [`warehouse`]: the warehouse as DataFusion catalog (one per session, so a
//!   transaction reads its pinned snapshots).
//! - [`provider`]: `TarnTable`, a table merged on read (base, change store, deletion
//!   vector), point lookups, `tarn_as_of` and `table_changes`.
//! - [`pg_catalog`]: PostgreSQL's system catalogs and views (`pg_class`,
//!   `pg_attribute`, `pg_index`, `pg_type`...) built from the warehouse, and the
//!   catalog functions tools call.
//! - [`skipping`]: `BaseScanExec`, the scan of a Lance base with what data skipping
//!   (scalar indexes, clustering) saved, as `EXPLAIN ANALYZE` shows it.
//! - [`external`]: external tables (Parquet read where it lies) as DataFusion's
//!   Parquet reader over their files, and the check that a path is under the configured
//!   `external_locations`.
//! - [`iceberg`]: Iceberg external tables, read with the `iceberg` crate's Arrow scan
//!   (newest snapshot, or `AS OF VERSION` a snapshot id), filters as its predicate.
//! - [`views`]: `TarnView`, a view whose query is planned at each read.
//! - [`system`]: `tarn_tables`, `tarn_indexes`.

pub mod external;
pub mod iceberg;
pub mod pg_catalog;
pub mod provider;
pub mod skipping;
pub mod system;
pub mod views;
pub mod warehouse;
