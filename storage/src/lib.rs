//! Tarn's table format: where a table's bytes live and how a write becomes durable.
//!
//! Storage knows Arrow and object storage; it knows nothing of SQL or Postgres.
//!
//! # Layout
//!
//! - [`warehouse`]: the root of all tables (a local folder or an object-store URL), the
//!   catalog of schemas and tables found in it, `CREATE`/`DROP`, the write-ahead log
//!   (replayed on open), commits, the background flush/compaction task.
//! - [`table`]: one table: its current [`Snapshot`], base writes of tables without a
//!   primary key, recovery of a base write that crashed half way.
//! - [`blob`]: `bytea` columns of a Lance base in Lance's blob encoding, converted at
//!   the base's boundary.
//! - [`alter`]: `ALTER TABLE`'s column changes (`ADD`, `RENAME`, `DROP COLUMN`) and the
//!   names that follow a column (key, sequences, comments, indexes).
//! - The change store of primary-key tables: [`commit`] (a statement or transaction to
//!   one log record, checked for 23505 and 40001), [`changes`] (the in-memory [`Epoch`]:
//!   every version of every changed key per bucket, the base's key index and deletion
//!   vector), [`compaction`] (flush to change files, fold into the base, the policy),
//!   [`history`] (time travel, change feed), [`key`] (keys and buckets).
//! - Indexes on the Lance base: [`vector_index`] (HNSW, IVF), [`text_index`] (BM25 on
//!   tantivy), [`scalar_index`] (B-tree, bitmap, zone map, Bloom filter: data
//!   skipping); [`cluster`]: the Z-order (or one column's order) base rows are
//!   written in.
//! - [`security`]: roles, privileges and row policies: the security catalog the SQL
//!   layer enforces.
//! - [`external`]: external tables (Parquet the warehouse reads where it lies): their
//!   definitions in the catalog.
//! - [`retention`]: history retention and the vacuum that deletes what no kept
//!   version and no reader needs; history records of folded change files.
//! - [`lease`]: one writer per warehouse: the writer's lease in the warehouse, and the
//!   fence every manifest commit and acknowledged log record passes (read-only replicas
//!   pass none); [`follow`]: a replica's catalog and tables following the writer's
//!   manifests.
//! - [`manifest`]: the table manifest, one immutable file per committed [`Version`],
//!   written with put-if-absent so a version number is never reused.
//! - [`table_def`]: the definition users gave in `CREATE TABLE`: schema, primary key,
//!   base format, buckets, options.
//! - [`sequence`]: `CREATE SEQUENCE`'s sequences: definitions, and values handed out
//!   of memory within a durable reservation.
//! - [`wal`]: the write-ahead log: group commit, fsync, replay that cuts a torn tail.
//! - [`failpoint`]: named points where crash tests stop the process.
//! - [`io`]: object-store access, with fsync for local folders (files and directories);
//!   [`cache`]: the object-range cache of an object-store warehouse.
//! - [`error`]: [`StorageError`], grouped by who is at fault.
//!
//! # Invariants
//!
//! 1. A table's state is its newest manifest plus the log records after it. Data files
//!    that no manifest references (a write that crashed before its manifest commit) are
//!    never read.
//! 2. A commit is acknowledged only after its log record (primary-key tables) or its
//!    data files, manifest and their directory entries (other tables) are durable.
//!    Checked by `tests/crash.rs` and `tests/restart.rs` at the wire level and by the
//!    unit tests here.
//! 3. Flushes and compactions never change what a reader sees (`tests/model.rs`).

pub mod alter;
pub mod audit;
pub mod blob;
pub mod cache;
pub mod changes;
pub mod cluster;
pub mod commit;
pub mod compaction;
pub mod error;
pub mod external;
pub mod failpoint;
pub mod follow;
pub mod history;
pub mod io;
pub mod key;
pub mod lease;
pub mod lineage;
pub mod manifest;
pub mod retention;
pub mod scalar_index;
pub mod security;
pub mod sequence;
pub mod table;
pub mod table_def;
pub mod text_index;
pub mod vector_index;
pub mod wal;
pub mod warehouse;

pub use changes::{ChangeOp, Epoch, Lookup};
pub use commit::{Applied, TableWrite, Write, WriteKind};
pub use error::{Result, StorageError};
pub use io::S3Options;
pub use manifest::{Manifest, Version};
pub use table::{Snapshot, Table};
pub use table_def::{BaseFormat, ColumnMeta, Comments, Identity, TableDef, TableName, ViewDef};
pub use warehouse::{OpenOptions, Warehouse};
