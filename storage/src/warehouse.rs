//! The warehouse: every schema and table below one root.
//!
//! ```text
//! <root>/<schema>/_tarn_schema            marks a schema created with CREATE SCHEMA
//! <root>/<schema>/<table>/_tarn/manifest/ one file per committed version
//! <root>/<schema>/<table>/base/           Lance dataset, or Parquet files
//! <root>/<schema>/<table>/changes/<bucket>/ change files (primary-key tables)
//! <root>/_tarn/wal/                       the write-ahead log of every table (folders)
//! <root>/_tarn/log/<n>.wal                 or there, one object per group commit
//! <root>/_tarn/lease/<epoch>.json          the writer's lease ([`crate::lease`])
//! <root>/_tarn/views/<schema>/<view>.json   a view's definition
//! <root>/_tarn/sequences/<schema>/<name>.json a sequence (definition and state)
//! <root>/_tarn/external/<schema>/<name>.json an external table ([`crate::external`])
//! <root>/_tarn/security.json                 roles, grants, row policies ([`crate::security`])
//! ```
//!
//! The warehouse owns the write-ahead log: a commit to primary-key tables is one record
//! however many tables it writes ([`Warehouse::commit`]). Opening replays the records
//! newer than each table's manifest. A background task flushes and compacts tables
//! as their policy says and checkpoints the log. The writer holds the warehouse's lease
//! ([`crate::lease`]); a read-only replica opens without log or lease and follows the
//! writer's manifests instead ([`crate::follow`]).
//!
//! The catalog is what the folders say: opening a warehouse lists them, so tables
//! survive a restart with nothing kept elsewhere. A folder without a manifest is not a
//! table (a crashed CREATE or DROP), and is cleared when a table of that name is created.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures::TryStreamExt;
use lance::session::Session;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tracing::{info, warn};

use crate::commit::{Applied, TableWrite};
use crate::error::{Result, StorageError};
use crate::external::ExternalDef;
use crate::io::{delete_if_present, delete_prefix, lance_store_registry, Location, S3Options};
use crate::lease::{Predecessor, WriterLease, DEFAULT_LEASE_TTL};
use crate::manifest::{ManifestStore, Version};
use crate::security::{security_path, SecurityCatalog};
use crate::sequence::{sequence_path, Sequence, SequenceDef};
use crate::table::Table;
use crate::table_def::{TableDef, TableName, ViewDef};
use crate::wal::Wal;

const SCHEMA_MARKER: &str = "_tarn_schema";
pub const DEFAULT_SCHEMA: &str = "public";

/// Lance caches for index and file metadata, shared by every table.
const INDEX_CACHE_BYTES: usize = 512 << 20;
const METADATA_CACHE_BYTES: usize = 256 << 20;

pub struct Warehouse {
    pub(crate) location: Location,
    session: Arc<Session>,
    pub(crate) catalog: RwLock<Catalog>,
    /// Serializes CREATE/DROP so two sessions cannot create one table twice.
    ddl: tokio::sync::Mutex<()>,
    /// The writer's log; a read-only replica has none.
    wal: Option<Wal>,
    /// The writer's lease on the warehouse ([`crate::lease`]); a replica has none.
    lease: Option<Arc<WriterLease>>,
    /// A replica's poll interval ([`crate::follow`]).
    follow_interval: Duration,
    /// When a replica last read the writer's manifests (ms since the epoch).
    followed_at_ms: AtomicU64,
    /// Bumped when a replica sees the writer's DDL ([`Warehouse::catalog_generation`]).
    pub(crate) catalog_generation: AtomicU64,
    /// Held by the background task while it works; [`Warehouse::close`] waits for it.
    maintenance: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    /// Log bytes written when the last checkpoint began.
    checkpointed_bytes: AtomicU64,
    /// Log groups (objects, for a log in the store) written when it began.
    checkpointed_groups: AtomicU64,
    /// History retention of tables that do not name their own.
    history_retention: RwLock<Duration>,
    /// Folders of dropped tables that readers still read: deleted once they let go,
    /// and no new table's meanwhile.
    dropping: Arc<std::sync::Mutex<BTreeSet<Path>>>,
    /// The statements' audit trail, when the server keeps one ([`Warehouse::keep_audit`]).
    audit: std::sync::OnceLock<Arc<crate::audit::AuditLog>>,
    /// The statements' lineage events, when the server emits them
    /// ([`Warehouse::keep_lineage`]).
    lineage: std::sync::OnceLock<Arc<crate::lineage::LineageLog>>,
}

/// Start a checkpoint once the log has grown by this much since the last one.
const CHECKPOINT_BYTES: u64 = 64 << 20;
/// Or, for a log in the object store, by this many objects (opening reads each).
const CHECKPOINT_OBJECTS: u64 = 4096;
/// How often the background task looks at the tables.
const MAINTENANCE_TICK: Duration = Duration::from_millis(200);
/// How often a replica reads the writer's manifests, unless configured.
pub const DEFAULT_FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(crate) struct Catalog {
    schemas: BTreeSet<String>,
    tables: BTreeMap<TableName, Arc<Table>>,
    views: BTreeMap<TableName, Arc<ViewDef>>,
    sequences: BTreeMap<TableName, Arc<Sequence>>,
    pub(crate) externals: BTreeMap<TableName, Arc<ExternalDef>>,
    pub(crate) security: Arc<SecurityCatalog>,
}

impl Catalog {
    /// Tables, views, sequences and external tables share their schema's names (as in
    /// `pg_class`).
    pub(crate) fn relation_exists(&self, name: &TableName) -> bool {
        self.tables.contains_key(name)
            || self.views.contains_key(name)
            || self.sequences.contains_key(name)
            || self.externals.contains_key(name)
    }
}

/// A DROP of `name`, which does not exist: nothing to do with `IF EXISTS`, else 42P01.
pub(crate) fn absent(name: &TableName, if_exists: bool) -> Result<bool> {
    if if_exists {
        Ok(false)
    } else {
        Err(StorageError::TableNotFound { name: name.clone() })
    }
}

/// Every definition kept as JSON below `_tarn/<folder>/` (views, external tables);
/// `what` names them in the error for one that does not parse.
async fn read_definitions<T: serde::de::DeserializeOwned>(
    store: &dyn ObjectStore,
    folder: &str,
    what: &str,
) -> Result<Vec<T>> {
    let objects = store.list(Some(&Path::from("_tarn").join(folder))).try_collect::<Vec<_>>().await?;
    let mut defs = Vec::with_capacity(objects.len());
    for object in objects {
        let bytes = store.get(&object.location).await?.bytes().await?;
        defs.push(
            serde_json::from_slice(&bytes)
                .map_err(|e| StorageError::internal(format!("{what} {}: {e}", object.location)))?,
        );
    }
    Ok(defs)
}

/// Where a view's definition is kept.
fn view_path(name: &TableName) -> Path {
    Path::from("_tarn").join("views").join(name.schema.as_str()).join(format!("{}.json", name.table))
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse").field("location", &self.location.url().as_str()).finish()
    }
}

/// How to open a warehouse besides its location.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// An `s3://` warehouse's settings.
    pub s3: S3Options,
    /// The folder of the write-ahead log. A local warehouse keeps it in
    /// `<warehouse>/_tarn/wal` unless told otherwise; an object-store warehouse needs a
    /// local disk for it (low-latency durable appends): `./tarn-wal` unless told.
    pub wal_dir: Option<std::path::PathBuf>,
    /// A read-only replica: no log, no lease, no writes; it follows the writer's
    /// manifests every `follow_interval` ([`crate::follow`]).
    pub read_only: bool,
    /// How often a replica reads the writer's manifests (1 s unless set).
    pub follow_interval: Option<Duration>,
    /// How long the writer's lease lasts without a beat ([`crate::lease`]; 10 s
    /// unless set).
    pub lease_ttl: Option<Duration>,
    /// The write-ahead log in the warehouse's object store, one object per group
    /// commit (`wal = "object"`), rather than in `wal_dir` (which then holds only the
    /// process's lock).
    pub wal_in_store: bool,
}

impl Warehouse {
    /// Opens (creating if needed) the warehouse at a folder path or `file://` URL and
    /// loads every table in it.
    /// Opens the audit trail (`_tarn/audit`) for the server's statements; a read-only
    /// replica keeps none.
    pub async fn keep_audit(&self) -> Result<()> {
        if self.wal.is_none() || self.audit.get().is_some() {
            return Ok(());
        }
        let log =
            crate::audit::AuditLog::open(self.location.store().clone(), crate::audit::AUDIT_FOLDER).await?;
        let _ = self.audit.set(log);
        Ok(())
    }

    /// Opens the lineage log (`_tarn/lineage`); a read-only replica keeps none.
    pub async fn keep_lineage(&self) -> Result<()> {
        if self.wal.is_none() || self.lineage.get().is_some() {
            return Ok(());
        }
        let log =
            crate::lineage::LineageLog::open(self.location.store().clone(), crate::lineage::LINEAGE_FOLDER)
                .await?;
        let _ = self.lineage.set(log);
        Ok(())
    }

    /// The lineage log, when kept.
    pub fn lineage(&self) -> Option<&Arc<crate::lineage::LineageLog>> {
        self.lineage.get()
    }

    /// The audit trail, when kept.
    pub fn audit(&self) -> Option<&Arc<crate::audit::AuditLog>> {
        self.audit.get()
    }

    pub async fn open(location: &str) -> Result<Self> {
        Self::open_with(location, &OpenOptions::default()).await
    }

    /// Opens the warehouse at a folder path, `file://` or `s3://` URL: as its writer
    /// (taking the lease, replaying the log), or as a read-only replica.
    pub async fn open_with(location: &str, options: &OpenOptions) -> Result<Self> {
        let location = Location::open(location, &options.s3)?;
        let registry = lance_store_registry(&location);
        let session = Arc::new(Session::new(INDEX_CACHE_BYTES, METADATA_CACHE_BYTES, registry));
        let mut warehouse = Self {
            location,
            session,
            catalog: RwLock::default(),
            ddl: tokio::sync::Mutex::new(()),
            wal: None,
            lease: None,
            follow_interval: options.follow_interval.unwrap_or(DEFAULT_FOLLOW_INTERVAL),
            followed_at_ms: AtomicU64::new(0),
            catalog_generation: AtomicU64::new(0),
            maintenance: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            checkpointed_bytes: AtomicU64::new(0),
            checkpointed_groups: AtomicU64::new(0),
            history_retention: RwLock::new(crate::retention::DEFAULT_RETENTION),
            dropping: Arc::default(),
            audit: Default::default(),
            lineage: Default::default(),
        };
        if options.read_only {
            warehouse.location.fence().set_read_only();
            warehouse.follow().await?;
            info!(url = %warehouse.url(), "opened the warehouse read-only");
            return Ok(warehouse);
        }
        // The log first: its lock keeps a second process on this machine from touching
        // the warehouse; then the lease, which keeps out writers elsewhere (below,
        // folders without a manifest are deleted).
        let wal_dir = match (&options.wal_dir, warehouse.location.local_root()) {
            (Some(dir), _) => dir.clone(),
            (None, Some(root)) => root.join("_tarn").join("wal"),
            (None, None) => std::path::PathBuf::from("tarn-wal"),
        };
        // A log in the store is read once the lease is held (a writer before this one
        // may have written it until then); the local folder keeps the process's lock.
        let (local, lock) = match options.wal_in_store {
            false => (Some(Wal::open(&wal_dir)?), None),
            true => {
                std::fs::create_dir_all(&wal_dir)
                    .map_err(|e| StorageError::Io { path: wal_dir.display().to_string(), source: e })?;
                (None, Some(crate::wal::lock_folder(&wal_dir)?))
            }
        };
        let (lease, predecessor) = WriterLease::acquire(
            warehouse.location.store().clone(),
            warehouse.location.fence().clone(),
            &wal_dir,
            options.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL),
            warehouse.url(),
        )
        .await?;
        let (wal, records) = match local {
            Some(opened) => opened,
            None => Wal::open_in_store(warehouse.location.store().clone(), lock).await?,
        };
        // A log in the store is every writer's: a takeover replays it whole.
        if let (Predecessor::Other(holder), false, false) = (&predecessor, records.is_empty(), wal.in_store())
        {
            // Another writer wrote the warehouse after this log's commits: replaying
            // them would put them on top of versions they never saw.
            lease.release().await;
            return Err(StorageError::InvalidWarehouse {
                url: warehouse.url().to_string(),
                message: format!(
                    "the write-ahead log in {} holds commits, but {holder} wrote the warehouse since; \
                     those commits cannot be applied. Move the folder away to start (its commits that \
                     were never flushed are lost)",
                    wal_dir.display()
                ),
            });
        }
        lease.keep();
        warehouse.wal = Some(wal);
        warehouse.lease = Some(lease);
        let catalog = warehouse.read_catalog(&[], true).await?;
        warehouse.replace_catalog(catalog);
        let by_id: BTreeMap<u64, Arc<Table>> =
            warehouse.all_tables().into_iter().filter(|t| t.has_primary_key()).map(|t| (t.id, t)).collect();
        let mut replayed = 0;
        for record in records {
            for logged in crate::commit::decode_record(&record)? {
                // Entries of dropped tables (or of an earlier table of the same name) are skipped.
                if let Some(table) = by_id.get(&logged.table_id) {
                    table.replay(logged).await?;
                    replayed += 1;
                }
            }
        }
        if replayed > 0 {
            info!(replayed, "replayed commits from the write-ahead log");
        }
        Ok(warehouse)
    }

    /// What the warehouse's folders say: schemas, tables at their newest manifests,
    /// views and sequences. Tables of `known` (by folder) are moved to their newest
    /// manifest rather than opened again. The writer (`writer`) deletes folders without
    /// a manifest (what a crashed CREATE, or a DROP whose readers outlived the process,
    /// left behind); a replica skips them (a CREATE under way), and keeps a table it
    /// cannot read now as it was.
    pub(crate) async fn read_catalog(&self, known: &[Arc<Table>], writer: bool) -> Result<Catalog> {
        let known: BTreeMap<&Path, &Arc<Table>> = known.iter().map(|t| (t.dir(), t)).collect();
        let location = &self.location;
        let store = location.store().clone();
        let mut catalog = Catalog::default();
        catalog.schemas.insert(DEFAULT_SCHEMA.to_string());
        let top = store.list_with_delimiter(None).await?;
        for schema_dir in top.common_prefixes {
            let Some(schema) = schema_dir.filename().map(str::to_string) else { continue };
            if schema == "_tarn" {
                continue;
            }
            let listing = store.list_with_delimiter(Some(&schema_dir)).await?;
            if listing.objects.iter().any(|o| o.location.filename() == Some(SCHEMA_MARKER)) {
                catalog.schemas.insert(schema.clone());
            }
            for table_dir in listing.common_prefixes {
                let previous = known.get(&table_dir).copied();
                let manifests = ManifestStore::new(location, &table_dir);
                let Some(newest) = manifests.newest(previous.map(|t| t.snapshot().manifest.version)).await?
                else {
                    if writer {
                        info!(folder = %table_dir, "removing the files of a table that is gone");
                        delete_prefix(&store, &table_dir).await?;
                    }
                    continue;
                };
                let table = match self.table_at(previous, &table_dir, newest).await {
                    Ok(table) => table,
                    Err(e) if !writer => {
                        warn!(folder = %table_dir, error = %e, "could not follow a table; it stays as it was");
                        match previous {
                            Some(table) => table.clone(),
                            None => continue,
                        }
                    }
                    Err(e) => return Err(e),
                };
                let name = table.name();
                catalog.schemas.insert(name.schema.clone());
                catalog.tables.insert(name, table);
            }
        }
        for view in read_definitions::<ViewDef>(store.as_ref(), "views", "view definition").await? {
            catalog.schemas.insert(view.name.schema.clone());
            catalog.views.insert(view.name.clone(), Arc::new(view));
        }
        let sequences =
            store.list(Some(&Path::from("_tarn").join("sequences"))).try_collect::<Vec<_>>().await?;
        for object in sequences {
            let bytes = store.get(&object.location).await?.bytes().await?;
            let sequence = Sequence::load(store.clone(), location.fence().clone(), &bytes, &object.location)?;
            catalog.schemas.insert(sequence.def().name.schema.clone());
            catalog.sequences.insert(sequence.def().name.clone(), Arc::new(sequence));
        }
        for def in read_definitions::<ExternalDef>(store.as_ref(), "external", "external table").await? {
            catalog.schemas.insert(def.name.schema.clone());
            catalog.externals.insert(def.name.clone(), Arc::new(def));
        }
        catalog.security = match store.get(&security_path()).await {
            Ok(got) => Arc::new(
                serde_json::from_slice(&got.bytes().await?)
                    .map_err(|e| StorageError::internal(format!("{}: {e}", security_path())))?,
            ),
            Err(object_store::Error::NotFound { .. }) => Arc::default(),
            Err(e) => return Err(e.into()),
        };
        if !writer {
            self.followed_at_ms.store(crate::manifest::now_ms(), Ordering::Relaxed);
        }
        Ok(catalog)
    }

    /// The table in `dir` at manifest `newest`: `previous` (the same table, as this
    /// process knew it) moved there, or opened anew.
    async fn table_at(
        &self,
        previous: Option<&Arc<Table>>,
        dir: &Path,
        newest: Version,
    ) -> Result<Arc<Table>> {
        if let Some(table) = previous {
            if table.snapshot().manifest.version == newest {
                return Ok(table.clone());
            }
        }
        let manifest = ManifestStore::new(&self.location, dir).read(newest).await?;
        match previous {
            // The same table with the same key: only its snapshot moves.
            Some(table)
                if table.id == manifest.table_id
                    && table.snapshot().def().primary_key == manifest.table.primary_key =>
            {
                table.follow(manifest).await?;
                Ok(table.clone())
            }
            _ => {
                let (name, version) = (manifest.table.name.clone(), manifest.version);
                let table = Table::open(&self.location, &self.session, dir.clone(), manifest).await?;
                info!(table = %name, %version, "opened table");
                Ok(Arc::new(table))
            }
        }
    }

    pub(crate) fn replace_catalog(&self, catalog: Catalog) {
        *self.catalog.write().expect("catalog lock") = catalog;
    }

    /// Waits for the DDL lock, unless this server may not write.
    pub(crate) async fn ddl_lock(&self) -> Result<tokio::sync::MutexGuard<'_, ()>> {
        self.location.fence().check()?;
        Ok(self.ddl.lock().await)
    }

    /// The object-range cache of an object-store warehouse.
    pub fn object_cache(&self) -> Option<&Arc<crate::cache::CachedStore>> {
        self.location.cache()
    }

    /// Whether this server is a read-only replica.
    pub fn is_read_only(&self) -> bool {
        self.wal.is_none()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// How stale this server's view of `table` may be: on the writer, the age of its
    /// oldest change that is only in the log (a replica cannot see it yet); on a
    /// replica, the time since it last read the writer's manifests.
    /// (`stats`: the table's, [`Table::stats`].)
    pub fn visible_lag_ms(&self, stats: &crate::compaction::TableStats) -> u64 {
        if self.is_read_only() {
            return stats.now_ms.saturating_sub(self.followed_at_ms.load(Ordering::Relaxed));
        }
        let oldest = stats.buckets.iter().filter_map(|b| b.oldest_unflushed_ms).min();
        oldest.map_or(0, |t| stats.now_ms.saturating_sub(t))
    }

    /// Commits changes to primary-key tables atomically (see [`crate::commit`]).
    pub async fn commit(&self, writes: Vec<TableWrite>) -> Result<Vec<Applied>> {
        self.location.fence().check()?;
        let Some(wal) = &self.wal else { return Err(StorageError::internal("a replica has no log")) };
        crate::commit::commit(wal, writes).await
    }

    pub fn all_tables(&self) -> Vec<Arc<Table>> {
        self.catalog.read().expect("catalog lock").tables.values().cloned().collect()
    }

    /// Starts the background task that flushes, compacts and checkpoints. It stops at
    /// [`Warehouse::close`] or when the warehouse is dropped.
    pub fn start_maintenance(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        if self.is_read_only() {
            return self.start_following(self.follow_interval);
        }
        let weak: Weak<Warehouse> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(MAINTENANCE_TICK).await;
                let Some(warehouse) = weak.upgrade() else { return };
                if warehouse.closed.load(Ordering::Acquire) {
                    return;
                }
                let _working = warehouse.maintenance.lock().await;
                if warehouse.closed.load(Ordering::Acquire) {
                    return;
                }
                if warehouse.location.fence().check().is_err() {
                    // It lost its lease: it serves what the new writer commits, as a
                    // replica does (its own commits are refused).
                    let since = crate::manifest::now_ms()
                        .saturating_sub(warehouse.followed_at_ms.load(Ordering::Relaxed));
                    if since >= warehouse.follow_interval.as_millis() as u64 {
                        if let Err(e) = warehouse.follow().await {
                            warn!(error = %e, "could not follow the new writer's manifests");
                        }
                    }
                    continue;
                }
                for table in warehouse.all_tables() {
                    if let Err(e) = table.maintain().await {
                        warn!(table = %table.name(), error = %e, "background maintenance failed");
                    }
                    let last = table.last_vacuum_ms.load(Ordering::Relaxed);
                    let now = crate::manifest::now_ms();
                    if now.saturating_sub(last) >= crate::retention::VACUUM_INTERVAL.as_millis() as u64 {
                        table.last_vacuum_ms.store(now, Ordering::Relaxed);
                        if let Err(e) = warehouse.vacuum(&table).await {
                            warn!(table = %table.name(), error = %e, "vacuuming history failed");
                        }
                    }
                }
                let Some(wal) = &warehouse.wal else { return };
                let written = wal.stats().bytes.load(Ordering::Relaxed);
                let groups = wal.stats().fsyncs.load(Ordering::Relaxed);
                let objects = groups.saturating_sub(warehouse.checkpointed_groups.load(Ordering::Relaxed));
                if written.saturating_sub(warehouse.checkpointed_bytes.load(Ordering::Relaxed))
                    > CHECKPOINT_BYTES
                    || (wal.in_store() && objects > CHECKPOINT_OBJECTS)
                {
                    if let Err(e) = warehouse.checkpoint().await {
                        warn!(error = %e, "checkpoint failed");
                    }
                }
            }
        })
    }

    /// The history retention of tables that name none (`history_retention` in the
    /// server's configuration).
    pub fn set_history_retention(&self, retention: Duration) {
        *self.history_retention.write().expect("retention lock") = retention;
    }

    /// The history `table` keeps: its `history_retention`, or the warehouse's.
    pub fn history_retention_of(&self, table: &Table) -> Duration {
        table
            .policy()
            .history_retention
            .unwrap_or_else(|| *self.history_retention.read().expect("retention lock"))
    }

    /// Deletes the history `table` keeps no longer.
    pub async fn vacuum(&self, table: &Table) -> Result<crate::retention::Vacuumed> {
        table.vacuum_history(self.history_retention_of(table)).await
    }

    /// Flushes every table so the log can drop its older segments.
    pub async fn checkpoint(&self) -> Result<()> {
        let Some(wal) = &self.wal else { return Ok(()) };
        self.checkpointed_bytes.store(wal.stats().bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        self.checkpointed_groups.store(wal.stats().fsyncs.load(Ordering::Relaxed), Ordering::Relaxed);
        let segment = wal.rotate().await?;
        for table in self.all_tables() {
            table.flush().await?;
        }
        wal.remove_segments_before(segment).await?;
        info!("checkpoint: the log's older segments are in change files now");
        Ok(())
    }

    /// Stops background work, waiting for a flush or compaction under way, checkpoints
    /// the log (so the next open replays nothing: opening costs the same after a day of
    /// commits as after a minute), writes the sequences' exact state and unlocks the
    /// log for the next process.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _idle = self.maintenance.lock().await;
        let (Some(wal), Some(lease)) = (&self.wal, &self.lease) else { return };
        if let Err(e) = self.checkpoint().await {
            warn!(error = %e, "could not checkpoint the log at close");
        }
        for sequence in self.all_sequences() {
            if let Err(e) = sequence.write_exact().await {
                warn!(sequence = %sequence.def().name, error = %e, "could not write the sequence's state");
            }
        }
        // The next writer may take over now, even while this one winds down.
        lease.release().await;
        wal.unlock();
    }

    pub fn url(&self) -> &str {
        self.location.url().as_str()
    }

    pub fn schemas(&self) -> Vec<String> {
        self.catalog.read().expect("catalog lock").schemas.iter().cloned().collect()
    }

    pub fn schema_exists(&self, schema: &str) -> bool {
        self.catalog.read().expect("catalog lock").schemas.contains(schema)
    }

    pub fn tables(&self, schema: &str) -> Vec<String> {
        let catalog = self.catalog.read().expect("catalog lock");
        catalog.tables.keys().filter(|n| n.schema == schema).map(|n| n.table.clone()).collect()
    }

    pub fn table(&self, name: &TableName) -> Option<Arc<Table>> {
        self.catalog.read().expect("catalog lock").tables.get(name).cloned()
    }

    /// The views of a schema, by name.
    pub fn views(&self, schema: &str) -> Vec<String> {
        let catalog = self.catalog.read().expect("catalog lock");
        catalog.views.keys().filter(|n| n.schema == schema).map(|n| n.table.clone()).collect()
    }

    pub fn all_views(&self) -> Vec<Arc<ViewDef>> {
        self.catalog.read().expect("catalog lock").views.values().cloned().collect()
    }

    pub fn view(&self, name: &TableName) -> Option<Arc<ViewDef>> {
        self.catalog.read().expect("catalog lock").views.get(name).cloned()
    }

    /// `CREATE [OR REPLACE] VIEW`: durable when it returns. `check` sees the view it
    /// replaces (if any) and may refuse the new definition. Returns false when the view
    /// existed and `if_not_exists` was given.
    pub async fn create_view(
        &self,
        def: ViewDef,
        or_replace: bool,
        if_not_exists: bool,
        check: impl FnOnce(Option<&ViewDef>) -> Result<()>,
    ) -> Result<bool> {
        let _ddl = self.ddl_lock().await?;
        let name = def.name.clone();
        if !self.schema_exists(&name.schema) {
            return Err(StorageError::SchemaNotFound { name: name.schema.clone() });
        }
        let old = {
            let catalog = self.catalog.read().expect("catalog lock");
            let other = catalog.tables.contains_key(&name)
                || catalog.sequences.contains_key(&name)
                || catalog.externals.contains_key(&name);
            if other || (catalog.views.contains_key(&name) && !or_replace) {
                return if if_not_exists { Ok(false) } else { Err(StorageError::TableExists { name }) };
            }
            catalog.views.get(&name).cloned()
        };
        check(old.as_deref())?;
        // A replaced view is the same view: its comments stay.
        let def = match &old {
            Some(old) => ViewDef { comments: old.comments.clone(), ..def },
            None => def,
        };
        self.put_view(&def).await?;
        self.catalog.write().expect("catalog lock").views.insert(name.clone(), Arc::new(def));
        info!(view = %name, "created view");
        Ok(true)
    }

    /// `DROP VIEW`. Returns false when it did not exist and `if_exists` was given.
    pub async fn drop_view(&self, name: &TableName, if_exists: bool) -> Result<bool> {
        let _ddl = self.ddl_lock().await?;
        if self.view(name).is_none() {
            return absent(name, if_exists);
        }
        self.location.store().delete(&view_path(name)).await?;
        self.catalog.write().expect("catalog lock").views.remove(name);
        info!(view = %name, "dropped view");
        Ok(true)
    }

    pub fn sequence(&self, name: &TableName) -> Option<Arc<Sequence>> {
        self.catalog.read().expect("catalog lock").sequences.get(name).cloned()
    }

    pub fn all_sequences(&self) -> Vec<Arc<Sequence>> {
        self.catalog.read().expect("catalog lock").sequences.values().cloned().collect()
    }

    /// `CREATE SEQUENCE`: durable when it returns. Returns false when a relation of
    /// that name existed and `if_not_exists` was given.
    pub async fn create_sequence(&self, def: SequenceDef, if_not_exists: bool) -> Result<bool> {
        let _ddl = self.ddl_lock().await?;
        let name = def.name.clone();
        if !self.name_is_free(&name, if_not_exists)? {
            return Ok(false);
        }
        let sequence =
            Sequence::create(self.location.store().clone(), self.location.fence().clone(), def).await?;
        self.catalog.write().expect("catalog lock").sequences.insert(name.clone(), Arc::new(sequence));
        info!(sequence = %name, "created sequence");
        Ok(true)
    }

    /// `DROP SEQUENCE`. Returns false when it did not exist and `if_exists` was given.
    pub async fn drop_sequence(&self, name: &TableName, if_exists: bool) -> Result<bool> {
        let _ddl = self.ddl_lock().await?;
        if self.sequence(name).is_none() {
            return absent(name, if_exists);
        }
        self.location.store().delete(&sequence_path(name)).await?;
        self.catalog.write().expect("catalog lock").sequences.remove(name);
        info!(sequence = %name, "dropped sequence");
        Ok(true)
    }

    /// `CREATE SCHEMA`. Returns false when it existed and `if_not_exists` was given.
    pub async fn create_schema(&self, schema: &str, if_not_exists: bool) -> Result<bool> {
        let _ddl = self.ddl_lock().await?;
        if self.schema_exists(schema) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(StorageError::SchemaExists { name: schema.to_string() })
            };
        }
        let marker = Path::from(schema).join(SCHEMA_MARKER);
        self.location.store().put(&marker, PutPayload::from_static(b"{}\n")).await?;
        self.catalog.write().expect("catalog lock").schemas.insert(schema.to_string());
        Ok(true)
    }

    /// Drops an empty schema (a session's temporary schema when it ends). Refused while
    /// it holds a table, a view or a sequence.
    pub async fn drop_schema(&self, schema: &str) -> Result<()> {
        let _ddl = self.ddl_lock().await?;
        {
            let catalog = self.catalog.read().expect("catalog lock");
            let held = catalog
                .tables
                .keys()
                .chain(catalog.views.keys())
                .chain(catalog.sequences.keys())
                .chain(catalog.externals.keys());
            if let Some(name) = held.into_iter().find(|n| n.schema == schema) {
                return Err(StorageError::Unsupported {
                    message: format!("cannot drop schema {schema}: it holds {name}"),
                });
            }
        }
        let marker = Path::from(schema).join(SCHEMA_MARKER);
        delete_if_present(self.location.store(), &marker).await?;
        self.catalog.write().expect("catalog lock").schemas.remove(schema);
        Ok(())
    }

    /// Whether a new relation may take `name`: its schema must exist, and a relation
    /// already named so is 42P07, or `false` with `if_not_exists`. (The caller holds
    /// the DDL lock.)
    pub(crate) fn name_is_free(&self, name: &TableName, if_not_exists: bool) -> Result<bool> {
        if !self.schema_exists(&name.schema) {
            return Err(StorageError::SchemaNotFound { name: name.schema.clone() });
        }
        if self.catalog.read().expect("catalog lock").relation_exists(name) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(StorageError::TableExists { name: name.clone() })
            };
        }
        Ok(true)
    }

    /// `CREATE TABLE`. Returns `None` when the table existed and `if_not_exists` was given.
    pub async fn create_table(&self, def: TableDef, if_not_exists: bool) -> Result<Option<Arc<Table>>> {
        let _ddl = self.ddl_lock().await?;
        let name = def.name.clone();
        if !self.name_is_free(&name, if_not_exists)? {
            return Ok(None);
        }
        let dir = self.free_folder(&name);
        let table = Arc::new(Table::create(&self.location, &self.session, dir, def).await?);
        self.catalog.write().expect("catalog lock").tables.insert(name, table.clone());
        Ok(Some(table))
    }

    /// A folder for a new table: named after it, unless a renamed table still lives in
    /// that folder; then the name with the first free `_<n>` after it.
    fn free_folder(&self, name: &TableName) -> Path {
        let catalog = self.catalog.read().expect("catalog lock");
        let dropping = self.dropping.lock().expect("dropping lock");
        let taken: BTreeSet<&Path> =
            catalog.tables.values().map(|t| t.dir()).chain(dropping.iter()).collect();
        let schema = Path::from(name.schema.as_str());
        std::iter::once(name.table.clone())
            .chain((1..).map(|n| format!("{}_{n}", name.table)))
            .map(|folder| schema.clone().join(folder.as_str()))
            .find(|dir| !taken.contains(dir))
            .expect("an unbounded list has a free name")
    }

    /// `ALTER TABLE|VIEW ... RENAME TO`: the table or view `from` takes the name `to`
    /// (in its schema). `readers` are the views that read it, with their queries
    /// already naming it anew; they are written after it. A crash between the two
    /// leaves those views naming the old name (they fail when read; nothing else is
    /// lost); one inside a view's rename (its new file written, the old not yet
    /// deleted) leaves it under both names.
    pub async fn rename_relation(
        &self,
        from: &TableName,
        to: TableName,
        readers: Vec<ViewDef>,
    ) -> Result<()> {
        let _ddl = self.ddl_lock().await?;
        if self.catalog.read().expect("catalog lock").relation_exists(&to) {
            return Err(StorageError::TableExists { name: to });
        }
        if let Some(table) = self.table(from) {
            table.rename(to.clone()).await?;
            let mut catalog = self.catalog.write().expect("catalog lock");
            catalog.tables.remove(from);
            catalog.tables.insert(to.clone(), table);
        } else if let Some(view) = self.view(from) {
            let renamed = ViewDef { name: to.clone(), ..view.as_ref().clone() };
            self.put_view(&renamed).await?;
            self.location.store().delete(&view_path(from)).await?;
            let mut catalog = self.catalog.write().expect("catalog lock");
            catalog.views.remove(from);
            catalog.views.insert(to.clone(), Arc::new(renamed));
        } else {
            return Err(StorageError::TableNotFound { name: from.clone() });
        }
        self.change_security(|s| Ok(s.rename_table(from, &to))).await?;
        for reader in readers {
            self.put_view(&reader).await?;
            self.catalog.write().expect("catalog lock").views.insert(reader.name.clone(), Arc::new(reader));
        }
        info!(from = %from, to = %to, "renamed");
        Ok(())
    }

    /// `ALTER TABLE ... RENAME COLUMN`, with the views that read the table as they
    /// read it afterwards (`readers`, already rewritten by the SQL layer).
    pub async fn rename_column(
        &self,
        table: &TableName,
        from: &str,
        to: &str,
        readers: Vec<ViewDef>,
    ) -> Result<()> {
        let _ddl = self.ddl_lock().await?;
        let Some(found) = self.table(table) else {
            return Err(StorageError::TableNotFound { name: table.clone() });
        };
        found.rename_column(from, to).await?;
        for reader in readers {
            self.put_view(&reader).await?;
            self.catalog.write().expect("catalog lock").views.insert(reader.name.clone(), Arc::new(reader));
        }
        // Its tag follows it.
        self.change_security(|s| Ok(s.rename_column(table, from, to))).await?;
        Ok(())
    }

    /// Forgets a dropped column's tag ([`crate::Table::drop_column`] is the table's own).
    pub async fn forget_column(&self, table: &TableName, column: &str) -> Result<()> {
        let _ddl = self.ddl_lock().await?;
        self.change_security(|s| Ok(s.forget_column(table, column))).await
    }

    /// `COMMENT ON VIEW | COLUMN` of a view: its definition is written again with the
    /// comment (`None` removes it).
    pub async fn comment_on_view(
        &self,
        name: &TableName,
        column: Option<&str>,
        comment: Option<String>,
    ) -> Result<()> {
        let _ddl = self.ddl_lock().await?;
        let Some(view) = self.view(name) else {
            return Err(StorageError::TableNotFound { name: name.clone() });
        };
        let mut def = view.as_ref().clone();
        def.comments.set(column, comment);
        self.put_view(&def).await?;
        self.catalog.write().expect("catalog lock").views.insert(name.clone(), Arc::new(def));
        Ok(())
    }

    /// The security catalog as it stands ([`crate::security`]).
    pub fn security(&self) -> Arc<SecurityCatalog> {
        self.catalog.read().expect("catalog lock").security.clone()
    }

    /// Changes the security catalog: `change` edits a copy (and may refuse with an
    /// error), which is written whole and then replaces the one in memory. Durable when
    /// it returns.
    pub async fn update_security<T, E: From<StorageError>>(
        &self,
        change: impl FnOnce(&mut SecurityCatalog) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let _ddl = self.ddl_lock().await?;
        let mut security = self.security().as_ref().clone();
        let result = change(&mut security)?;
        self.put_security(security).await?;
        Ok(result)
    }

    /// [`Warehouse::update_security`] for a caller holding the DDL lock; `change` says
    /// whether it changed anything (nothing is written otherwise).
    async fn change_security(&self, change: impl FnOnce(&mut SecurityCatalog) -> Result<bool>) -> Result<()> {
        let mut security = self.security().as_ref().clone();
        if change(&mut security)? {
            self.put_security(security).await?;
        }
        Ok(())
    }

    /// Writes the security catalog whole, then makes it the one in memory.
    async fn put_security(&self, security: SecurityCatalog) -> Result<()> {
        self.put_definition(&security_path(), &security).await?;
        self.catalog.write().expect("catalog lock").security = Arc::new(security);
        Ok(())
    }

    /// Writes a view's definition (durable when it returns).
    async fn put_view(&self, def: &ViewDef) -> Result<()> {
        self.put_definition(&view_path(&def.name), def).await
    }

    /// Writes a definition (a view's, an external table's) as pretty JSON at `path`.
    pub(crate) async fn put_definition(&self, path: &Path, def: &impl serde::Serialize) -> Result<()> {
        let json = serde_json::to_vec_pretty(def).map_err(|e| StorageError::internal(e.to_string()))?;
        self.location.store().put(path, PutPayload::from(json)).await?;
        Ok(())
    }

    /// `DROP TABLE`. Returns false when it did not exist and `if_exists` was given.
    pub async fn drop_table(&self, name: &TableName, if_exists: bool) -> Result<bool> {
        let _ddl = self.ddl_lock().await?;
        let Some(table) = self.table(name) else {
            return absent(name, if_exists);
        };
        // Manifests first: once they are gone the folder is no table, whatever remains.
        table.manifests().delete_all().await?;
        self.catalog.write().expect("catalog lock").tables.remove(name);
        info!(table = %name, "dropped table");
        self.change_security(|s| Ok(s.forget_table(name))).await?;
        let dir = table.dir().clone();
        if table.unread() {
            delete_prefix(self.location.store(), &dir).await?;
            return Ok(true);
        }
        // Queries still read it: its files go when they are done.
        self.dropping.lock().expect("dropping lock").insert(dir.clone());
        let (store, dropping) = (self.location.store().clone(), self.dropping.clone());
        tokio::spawn(async move {
            while !table.unread() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop(table);
            if let Err(e) = delete_prefix(&store, &dir).await {
                warn!(folder = %dir, error = %e, "could not remove a dropped table's files");
            }
            dropping.lock().expect("dropping lock").remove(&dir);
        });
        Ok(true)
    }

    /// Lists every object of the warehouse (for tests and diagnostics).
    pub async fn list_objects(&self) -> Result<Vec<String>> {
        Ok(self.location.store().list(None).map_ok(|m| m.location.to_string()).try_collect().await?)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::changes::Lookup;
    use crate::commit::{Write, WriteKind};
    use crate::key::Key;
    use crate::table::BaseSnapshot;
    use crate::table_def::{BaseFormat, ColumnMeta};

    fn def(format: BaseFormat) -> TableDef {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("title", DataType::Utf8, true),
        ]));
        TableDef {
            name: TableName::new("public", "items"),
            schema,
            columns: vec![
                ColumnMeta { name: "id".into(), ..Default::default() },
                ColumnMeta { name: "title".into(), ..Default::default() },
            ],
            primary_key: vec!["id".into()],
            format,
            bucket_count: 4,
            options: BTreeMap::new(),
            comments: Default::default(),
        }
    }

    fn batch(def: &TableDef, ids: Vec<i64>) -> RecordBatch {
        let titles: Vec<String> = ids.iter().map(|i| format!("t{i}")).collect();
        RecordBatch::try_new(
            def.schema.clone(),
            vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(titles))],
        )
        .unwrap()
    }

    async fn count(table: &Table) -> usize {
        match &table.snapshot().base {
            BaseSnapshot::Lance(ds) => ds.count_rows(None).await.unwrap(),
            BaseSnapshot::Parquet(files) => files.len(),
        }
    }

    fn commit_of(table: &Arc<Table>, kind: WriteKind, rows: RecordBatch) -> TableWrite {
        TableWrite {
            table: table.clone(),
            read_seq: table.snapshot().seq,
            writes: vec![Write { kind, rows }],
        }
    }

    /// Every live row of a primary-key table at its newest version, by key.
    fn rows_of(table: &Table) -> Vec<(i64, String)> {
        let snapshot = table.snapshot();
        let epoch = snapshot.changes.clone().unwrap();
        let mut keys: Vec<i64> = epoch
            .base_keys
            .map
            .keys()
            .map(|k| match k {
                Key::Int(v) => *v,
                _ => unreachable!(),
            })
            .collect();
        for b in 0..epoch.bucket_count() {
            for chunk in epoch.chunks(b) {
                keys.extend(chunk.keys.iter().map(|k| match k {
                    Key::Int(v) => *v,
                    _ => unreachable!(),
                }));
            }
        }
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| match epoch.lookup(&Key::Int(k), snapshot.seq) {
                Lookup::Changed(Some(row)) => Some((
                    k,
                    row.column(1).as_any().downcast_ref::<StringArray>().unwrap().value(0).to_string(),
                )),
                Lookup::InBase(_) => Some((k, "base".to_string())),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn appends_survive_reopening() {
        for format in [BaseFormat::Lance, BaseFormat::Parquet] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().to_str().unwrap();
            let d = TableDef { primary_key: vec![], ..def(format) };
            {
                let wh = Warehouse::open(root).await.unwrap();
                let table = wh.create_table(d.clone(), false).await.unwrap().unwrap();
                assert_eq!(table.append(vec![batch(&d, vec![1, 2, 3])]).await.unwrap()[0].num_rows(), 3);
                assert_eq!(table.snapshot().manifest.row_count, 3);
                assert_eq!(table.snapshot().version(), 2);
            }
            let wh = Warehouse::open(root).await.unwrap();
            let table = wh.table(&d.name).expect("table reopened");
            assert_eq!(table.snapshot().manifest.row_count, 3);
            table.append(vec![batch(&d, vec![10])]).await.unwrap();
            assert_eq!(table.snapshot().manifest.row_count, 4);
            assert_eq!(table.snapshot_at(2).await.unwrap().manifest.row_count, 3, "time travel");

            drop(table);
            assert!(wh.drop_table(&d.name, false).await.unwrap());
            let left: Vec<String> =
                wh.list_objects().await.unwrap().into_iter().filter(|o| !o.starts_with("_tarn/")).collect();
            assert!(left.is_empty(), "{left:?}");
            drop(wh);
            let wh = Warehouse::open(root).await.unwrap();
            assert!(wh.table(&d.name).is_none());
        }
    }

    #[tokio::test]
    async fn changes_are_logged_flushed_compacted_and_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let d = def(BaseFormat::Lance);
        {
            let wh = Warehouse::open(root).await.unwrap();
            let table = wh.create_table(d.clone(), false).await.unwrap().unwrap();
            wh.commit(vec![commit_of(&table, WriteKind::Insert, batch(&d, vec![1, 2, 3]))]).await.unwrap();
            let err = wh
                .commit(vec![commit_of(&table, WriteKind::Insert, batch(&d, vec![4, 2]))])
                .await
                .unwrap_err();
            assert!(matches!(err, StorageError::UniqueViolation { .. }), "{err}");
            let err = wh
                .commit(vec![commit_of(&table, WriteKind::Insert, batch(&d, vec![5, 5]))])
                .await
                .unwrap_err();
            assert!(matches!(err, StorageError::UniqueViolation { .. }), "{err}");
            assert_eq!(table.snapshot().version(), 2);
            table.compact().await.unwrap();
            assert_eq!(rows_of(&table).len(), 3);
            assert!(rows_of(&table).iter().all(|(_, v)| v == "base"), "compacted into the base");

            // An update read at an old version conflicts with a newer commit of the key.
            let stale = table.snapshot().seq;
            let mut updated = batch(&d, vec![2]);
            updated = RecordBatch::try_new(
                d.schema.clone(),
                vec![updated.column(0).clone(), Arc::new(StringArray::from(vec!["two"]))],
            )
            .unwrap();
            wh.commit(vec![commit_of(&table, WriteKind::Update, updated.clone())]).await.unwrap();
            let late = TableWrite {
                table: table.clone(),
                read_seq: stale,
                writes: vec![Write { kind: WriteKind::Update, rows: updated.clone() }],
            };
            let err = wh.commit(vec![late]).await.unwrap_err();
            assert!(matches!(err, StorageError::SerializationFailure { .. }), "{err}");
            wh.commit(vec![commit_of(&table, WriteKind::Delete, batch(&d, vec![3]))]).await.unwrap();
            table.flush().await.unwrap();
            wh.commit(vec![commit_of(&table, WriteKind::InsertOrSkip, batch(&d, vec![1, 7]))]).await.unwrap();
            assert_eq!(rows_of(&table), vec![(1, "base".into()), (2, "two".into()), (7, "t7".into())]);
            assert_eq!(table.snapshot().version(), 5);
        }
        // Reopen: version 5 is only in the log; versions 3 and 4 are in change files.
        let wh = Warehouse::open(root).await.unwrap();
        let table = wh.table(&d.name).unwrap();
        assert_eq!(table.snapshot().version(), 5);
        assert_eq!(rows_of(&table), vec![(1, "base".into()), (2, "two".into()), (7, "t7".into())]);
        table.compact().await.unwrap();
        assert_eq!(rows_of(&table), vec![(1, "base".into()), (2, "base".into()), (7, "base".into())]);

        // Time travel to before the second compaction, and the change feed.
        let v3 = table.snapshot_at(3).await.unwrap();
        let epoch = v3.changes.clone().unwrap();
        assert!(
            matches!(epoch.lookup(&Key::Int(3), 3), Lookup::InBase(_)),
            "3 was deleted only in version 4"
        );
        assert!(matches!(epoch.lookup(&Key::Int(2), 3), Lookup::Changed(Some(_))));
        let feed = table.changes_between(3, 5).await.unwrap();
        let ops: Vec<String> = feed
            .iter()
            .flat_map(|b| {
                let ops = b
                    .column_by_name("_change_type")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone();
                (0..arrow::array::Array::len(&ops)).map(move |i| ops.value(i).to_string())
            })
            .collect();
        assert_eq!(ops, vec!["update", "delete", "insert"]);
    }

    /// Objects below a table's folder, relative to it, whose path starts with `under`.
    async fn objects(wh: &Warehouse, table: &str, under: &str) -> Vec<String> {
        let prefix = format!("public/{table}/{under}");
        let mut found: Vec<String> = wh
            .list_objects()
            .await
            .unwrap()
            .into_iter()
            .filter_map(|o| o.strip_prefix(&prefix).map(|rest| format!("{under}{rest}")))
            .collect();
        found.sort();
        found
    }

    /// A warehouse in `dir` with a primary-key table that keeps no history.
    async fn keeping_no_history(dir: &tempfile::TempDir) -> (Warehouse, Arc<Table>, TableDef) {
        let mut d = def(BaseFormat::Lance);
        d.options.insert("history_retention".into(), "0".into());
        let wh = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let table = wh.create_table(d.clone(), false).await.unwrap().unwrap();
        (wh, table, d)
    }

    #[tokio::test]
    async fn vacuum_deletes_history_past_retention_but_not_what_readers_hold() {
        let dir = tempfile::tempdir().unwrap();
        let (wh, table, d) = keeping_no_history(&dir).await;
        wh.commit(vec![commit_of(&table, WriteKind::Insert, batch(&d, vec![1, 2, 3]))]).await.unwrap();
        table.compact().await.unwrap();
        let first = table.snapshot().seq;
        wh.commit(vec![commit_of(&table, WriteKind::Update, batch(&d, vec![2]))]).await.unwrap();
        wh.commit(vec![commit_of(&table, WriteKind::Delete, batch(&d, vec![3]))]).await.unwrap();
        table.compact().await.unwrap();
        wh.commit(vec![commit_of(&table, WriteKind::Insert, batch(&d, vec![4]))]).await.unwrap();
        table.flush().await.unwrap();
        let live = rows_of(&table);
        assert!(table.snapshot().manifest.changes.iter().all(|f| f.max_seq > first + 2), "only live files");
        assert!(!objects(&wh, "items", "_tarn/history/").await.is_empty(), "folded files are in history");

        // A reader holding the first compaction's version keeps its files (and only
        // its version's: the versions after it go).
        let usage = table.storage_usage().await.unwrap();
        assert!(usage.live_bytes < usage.bytes, "{usage:?}");
        let held = table.snapshot_at(first).await.unwrap();
        let manifests_before = objects(&wh, "items", "_tarn/manifest/").await.len();
        let done = wh.vacuum(&table).await.unwrap();
        assert_eq!(
            objects(&wh, "items", "_tarn/manifest/").await.len(),
            2,
            "the held and the newest: {done:?}"
        );
        assert!(manifests_before > 2);
        let BaseSnapshot::Lance(ds) = &held.base else { unreachable!() };
        let batch = ds.scan().try_into_batch().await.unwrap();
        assert_eq!(batch.num_rows(), 3, "the held version's base is whole");
        let err = table.snapshot_at(first).await.unwrap_err();
        assert!(matches!(err, StorageError::VersionNotFound { .. }), "past retention: {err}");
        drop(held);

        let done = wh.vacuum(&table).await.unwrap();
        assert!(done.versions > 0 && done.files > 0 && done.lance_versions > 0, "{done:?}");
        assert_eq!(objects(&wh, "items", "_tarn/manifest/").await.len(), 1, "only the newest");
        assert!(objects(&wh, "items", "_tarn/history/").await.is_empty());
        assert_eq!(objects(&wh, "items", "deletes/").await.len(), 1, "the current deletion vector");
        let change_files = objects(&wh, "items", "changes/").await;
        assert_eq!(change_files.len(), table.snapshot().manifest.changes.len(), "{change_files:?}");
        assert!(objects(&wh, "items", "_tarn/vacuum.json").await.is_empty(), "the plan is gone");
        let err = table.snapshot_at(first).await.unwrap_err();
        assert!(matches!(err, StorageError::VersionNotFound { .. }), "{err}");
        let err = table.changes_between(first, first + 2).await.unwrap_err();
        assert!(matches!(err, StorageError::VersionNotFound { .. }), "{err}");
        let (oldest, kept) = table.history_extent().await.unwrap();
        assert_eq!(kept, 1);
        assert_eq!(oldest, table.snapshot().manifest.folded_seq);
        assert_eq!(rows_of(&table), live);
        assert_eq!(wh.vacuum(&table).await.unwrap(), Default::default(), "nothing left to do");
        let after = table.storage_usage().await.unwrap();
        assert_eq!(after.live_bytes, after.bytes, "{after:?}: {:?}", objects(&wh, "items", "").await);
        assert!(after.bytes < usage.bytes, "{after:?} after, {usage:?} before");
        assert_eq!((after.versions, after.oldest_version), (kept, oldest));

        drop(table);
        drop(wh);
        let wh = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let table = wh.table(&d.name).unwrap();
        assert_eq!(rows_of(&table), live, "reopened after the vacuum");
        table.compact().await.unwrap();
        assert_eq!(rows_of(&table).len(), live.len());
    }

    #[tokio::test]
    async fn a_base_mostly_replaced_is_rewritten_and_vacuum_frees_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let (wh, table, d) = keeping_no_history(&dir).await;
        let physical = |table: &Table| match &table.snapshot().base {
            BaseSnapshot::Lance(ds) => ds.clone(),
            BaseSnapshot::Parquet(_) => unreachable!(),
        };
        wh.commit(vec![commit_of(&table, WriteKind::Insert, batch(&d, (0..2000).collect()))]).await.unwrap();
        table.compact().await.unwrap();
        let before = table.snapshot().seq;
        // 900 of 2000 replaced (900 of 2900 hidden, under a third): appended, the old rows
        // hidden by the deletion vector.
        wh.commit(vec![commit_of(&table, WriteKind::Update, batch(&d, (0..900).collect()))]).await.unwrap();
        table.compact().await.unwrap();
        assert_eq!(physical(&table).count_rows(None).await.unwrap(), 2900);
        assert_eq!(table.snapshot().manifest.deletes.as_ref().unwrap().rows, 900);
        // 1000 more, and 100 deleted: 2000 of 3900 would be hidden (over a third); the
        // base is rewritten.
        wh.commit(vec![commit_of(&table, WriteKind::Update, batch(&d, (900..1900).collect()))])
            .await
            .unwrap();
        wh.commit(vec![commit_of(&table, WriteKind::Delete, batch(&d, (1900..2000).collect()))])
            .await
            .unwrap();
        table.compact().await.unwrap();
        assert_eq!(physical(&table).count_rows(None).await.unwrap(), 1900, "only live rows");
        assert_eq!(table.snapshot().manifest.deletes.as_ref().unwrap().rows, 0);
        assert_eq!(table.snapshot().manifest.row_count, 1900);
        let rows = rows_of(&table);
        assert_eq!(rows.len(), 1900);
        assert!(rows.iter().all(|(k, v)| v == "base" && *k < 1900), "every row in the base");
        let epoch = table.snapshot().changes.clone().unwrap();
        let Lookup::InBase(address) = epoch.lookup(&Key::Int(1500), table.snapshot().seq) else {
            panic!("1500 is in the base")
        };
        let row = table.take_base_rows(&table.snapshot(), &[address]).await.unwrap();
        assert_eq!(row.column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0), 1500);
        // Time travel reads the base from before the rewrite.
        let old = table.snapshot_at(before).await.unwrap();
        assert_eq!(old.manifest.row_count, 2000);
        drop(old);

        let usage = table.storage_usage().await.unwrap();
        wh.vacuum(&table).await.unwrap();
        let after = table.storage_usage().await.unwrap();
        assert!(after.bytes < usage.bytes, "{after:?} after, {usage:?} before");
        assert_eq!(after.live_bytes, after.bytes, "{after:?}");
        drop(table);
        drop(wh);
        let wh = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        assert_eq!(rows_of(&wh.table(&d.name).unwrap()).len(), 1900, "reopened");
    }

    #[tokio::test]
    async fn vacuum_drops_replaced_parquet_files_and_a_dropped_table_waits_for_its_readers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let mut d = TableDef { primary_key: vec![], ..def(BaseFormat::Parquet) };
        d.options.insert("history_retention".into(), "0s".into());
        let wh = Warehouse::open(root).await.unwrap();
        let table = wh.create_table(d.clone(), false).await.unwrap().unwrap();
        table.append(vec![batch(&d, vec![1, 2])]).await.unwrap();
        table.append(vec![batch(&d, vec![3])]).await.unwrap();
        table.overwrite(vec![batch(&d, vec![9])]).await.unwrap();
        assert_eq!(objects(&wh, "items", "base/").await.len(), 3);
        wh.vacuum(&table).await.unwrap();
        assert_eq!(objects(&wh, "items", "base/").await.len(), 1, "the overwritten parts are gone");
        assert_eq!(table.snapshot().manifest.row_count, 1);

        let reader = table.snapshot();
        drop(table);
        assert!(wh.drop_table(&d.name, false).await.unwrap());
        assert!(!objects(&wh, "items", "base/").await.is_empty(), "a reader still reads it");
        // A new table of the name gets a folder of its own meanwhile.
        let again = wh.create_table(d.clone(), false).await.unwrap().unwrap();
        assert_eq!(again.dir().as_ref(), "public/items_1");
        drop(reader);
        for _ in 0..50 {
            if objects(&wh, "items", "").await.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(objects(&wh, "items", "").await.is_empty(), "deleted once the reader let go");
    }

    #[tokio::test]
    async fn a_second_writer_of_a_warehouse_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let first = Warehouse::open(root).await.unwrap();
        let err = Warehouse::open(root).await.unwrap_err();
        assert!(err.to_string().contains("in use by another Tarn process"), "{err}");
        drop(first);
        Warehouse::open(root).await.expect("free again once the first has closed");
    }

    #[tokio::test]
    async fn a_base_write_without_manifest_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let d = def(BaseFormat::Lance);
        let wh = Warehouse::open(root).await.unwrap();
        let d = TableDef { primary_key: vec![], ..d };
        let table = wh.create_table(d.clone(), false).await.unwrap().unwrap();
        table.append(vec![batch(&d, vec![1])]).await.unwrap();
        // Simulate a crash between the base write and the manifest commit: append to the
        // Lance dataset directly, bypassing the manifest.
        let BaseSnapshot::Lance(ds) = &table.snapshot().base else { unreachable!() };
        let mut ds = ds.as_ref().clone();
        let reader = arrow::array::RecordBatchIterator::new(vec![Ok(batch(&d, vec![99]))], d.schema.clone());
        ds.append(reader, None).await.unwrap();
        drop(wh);

        let wh = Warehouse::open(root).await.unwrap();
        let table = wh.table(&d.name).unwrap();
        assert_eq!(count(&table).await, 1, "orphaned rows are not visible");
        table.append(vec![batch(&d, vec![99])]).await.unwrap();
        assert_eq!(count(&table).await, 2, "and not folded back in by the next write");
    }

    #[tokio::test]
    async fn a_replica_follows_flushes_compactions_and_new_tables_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let d = def(BaseFormat::Lance);
        let wh = Warehouse::open(root).await.unwrap();
        let table = wh.create_table(d.clone(), false).await.unwrap().unwrap();
        wh.commit(vec![commit_of(&table, WriteKind::Insert, batch(&d, vec![1, 2, 3]))]).await.unwrap();

        let replica =
            Warehouse::open_with(root, &OpenOptions { read_only: true, ..Default::default() }).await.unwrap();
        let seen = replica.table(&d.name).unwrap();
        assert!(rows_of(&seen).is_empty(), "what is only in the writer's log is not visible");

        table.flush().await.unwrap();
        replica.follow().await.unwrap();
        assert_eq!(rows_of(&seen), rows_of(&table), "the same table object moves on");
        assert_eq!(seen.snapshot().seq, table.snapshot().seq);

        wh.commit(vec![commit_of(&table, WriteKind::Update, batch(&d, vec![2]))]).await.unwrap();
        wh.commit(vec![commit_of(&table, WriteKind::Delete, batch(&d, vec![3]))]).await.unwrap();
        table.compact().await.unwrap();
        wh.commit(vec![commit_of(&table, WriteKind::Insert, batch(&d, vec![4]))]).await.unwrap();
        table.flush().await.unwrap();
        let other = TableDef { name: TableName::new("public", "other"), ..d.clone() };
        wh.create_table(other.clone(), false).await.unwrap();
        replica.follow().await.unwrap();
        assert_eq!(rows_of(&replica.table(&d.name).unwrap()), rows_of(&table));
        assert!(replica.table(&other.name).is_some());
        // Time travel reads the writer's history.
        let first = replica.table(&d.name).unwrap().snapshot_at(2).await.unwrap();
        assert_eq!(first.seq, 2);

        // Every write is refused, before anything is written.
        let objects = wh.list_objects().await.unwrap().len();
        let read_only = |e: StorageError| assert!(matches!(e, StorageError::ReadOnly { .. }), "{e}");
        let seen = replica.table(&d.name).unwrap();
        read_only(
            replica.commit(vec![commit_of(&seen, WriteKind::Insert, batch(&d, vec![9]))]).await.unwrap_err(),
        );
        read_only(replica.create_schema("s", false).await.unwrap_err());
        read_only(replica.drop_table(&d.name, false).await.unwrap_err());
        read_only(seen.compact().await.unwrap_err());
        read_only(replica.vacuum(&seen).await.unwrap_err());
        assert_eq!(wh.list_objects().await.unwrap().len(), objects);

        wh.drop_table(&other.name, false).await.unwrap();
        replica.follow().await.unwrap();
        assert!(replica.table(&other.name).is_none());
    }
}
