//! Tarn's table format: where a table's bytes live and how a write becomes durable.
//!
//! Storage knows Arrow and object storage; it knows nothing of SQL or Postgres.
//!
//! # Layout
//!
//! - [`warehouse`]: the root of all tables (a local folder or an object-store URL), the
//!   catalog of schemas and tables found in it, `CREATE`/`DROP`.
//! - [`table`]: one table: its current [`Snapshot`], the writer that appends rows and
//!   commits new manifest versions, recovery of a write that crashed half way.
//! - [`manifest`]: the table manifest, one immutable file per committed [`Version`],
//!   written with put-if-absent so a version number is never reused.
//! - [`table_def`]: the definition users gave in `CREATE TABLE`: schema, primary key,
//!   base format, buckets, options.
//! - [`key_index`]: the primary-key index that rejects duplicate keys.
//! - [`wal`]: the write-ahead log: group commit, fsync, replay that cuts a torn tail.
//!   (Used by the change store, the next layer to land.)
//! - [`io`]: object-store access, with fsync for local folders (files and directories).
//! - [`error`]: [`StorageError`], grouped by who is at fault.
//!
//! # Invariants
//!
//! 1. A table's state is exactly its newest manifest. Data files that no manifest
//!    references (a write that crashed before its manifest commit) are never read.
//! 2. A commit is acknowledged only after its data files, its manifest and their
//!    directory entries are durable (fsync on local folders). Checked by
//!    `tests/restart.rs` at the wire level and by `table::tests`.

pub mod changes;
pub mod commit;
pub mod compaction;
pub mod error;
pub mod failpoint;
pub mod history;
pub mod io;
pub mod key;
pub mod manifest;
pub mod table;
pub mod table_def;
pub mod wal;
pub mod warehouse;

pub use changes::{ChangeOp, Epoch, Lookup};
pub use commit::{Applied, TableWrite, Write, WriteKind};
pub use error::{Result, StorageError};
pub use manifest::{Manifest, Version};
pub use table::{Snapshot, Table};
pub use table_def::{BaseFormat, ColumnMeta, Identity, TableDef, TableName};
pub use warehouse::Warehouse;
