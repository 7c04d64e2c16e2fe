//! What DataFusion and clients see of the warehouse: its tables, and the system
//! catalogs drivers read.
//!
//! - [`warehouse`]: the warehouse as DataFusion catalog (one per session, so a
//!   transaction reads its pinned snapshots).
//! - [`provider`]: `TarnTable`, a table merged on read (base, change store, deletion
//!   vector), point lookups, `tarn_as_of` and `table_changes`.
//! - [`pg_catalog`]: `pg_type` and friends, for drivers that look types up.
//! - [`system`]: `tarn_tables`, `tarn_indexes`.

pub mod pg_catalog;
pub mod provider;
pub mod system;
pub mod warehouse;
