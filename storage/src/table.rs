//! One table: its current snapshot and its single writer.
//!
//! A table with a primary key takes writes through the change store (`commit.rs`: log
//! record, then the in-memory [`Epoch`], later change files and compaction in
//! `compaction.rs`). A table without one appends straight to its base:
//! validate the rows (types, NOT NULL), write new base files, then commit the next
//! manifest version. The manifest put is the commit point:
//! base files a crashed write left behind are referenced by no manifest and never read.
//! For Lance, such a write may have advanced the dataset past the version our manifest
//! names; [`Writer::head`] restores the named version before the next write, so the
//! orphaned rows can never be folded back in by Lance's commit rebasing.
//!
//! Readers take an `Arc<Snapshot>` and never wait for the writer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, RecordBatchIterator};
use arrow::compute::cast;
use arrow::datatypes::{Field, Schema, SchemaRef};
use futures::TryStreamExt;
use lance::dataset::builder::DatasetBuilder;
use lance::dataset::fragment::{FragReadConfig, FragmentReader};
use lance::dataset::{InsertBuilder, WriteDestination, WriteMode, WriteParams};
use lance::session::Session;
use lance::Dataset;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use tracing::{debug, info, warn};

use crate::changes::Epoch;
use crate::compaction::Policy;
use crate::error::{Result, StorageError};
use crate::io::{delete_prefix, Location};
use crate::key::KeyCodec;
use crate::manifest::{BaseRef, Manifest, ManifestStore, ParquetFile, Version};
use crate::table_def::{BaseFormat, TableDef, TableName};

/// What a reader sees: one committed version of a table.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The newest manifest at or below `seq` (base files, change files, definition).
    pub manifest: Arc<Manifest>,
    pub base: BaseSnapshot,
    /// The table version read. For a primary-key table every change up to it is
    /// visible through `changes`; otherwise it is the manifest's.
    pub seq: u64,
    /// Changes since the base (primary-key tables only).
    pub changes: Option<Arc<Epoch>>,
}

#[derive(Debug, Clone)]
pub enum BaseSnapshot {
    /// The Lance dataset checked out at the manifest's base version.
    Lance(Arc<Dataset>),
    /// Parquet files, as URLs a reader can open (`file:///...`), with their sizes.
    Parquet(Vec<(String, u64)>),
}

impl Snapshot {
    /// The table version users see (`AS OF VERSION`, `tarn_tables.version`).
    pub fn version(&self) -> u64 {
        self.seq
    }

    pub fn manifest_version(&self) -> Version {
        self.manifest.version
    }

    pub fn def(&self) -> &TableDef {
        &self.manifest.table
    }

    pub fn schema(&self) -> SchemaRef {
        self.manifest.table.schema.clone()
    }
}

pub struct Table {
    /// The table's folder. Named after the table when it was created; a rename
    /// leaves it where it is (the name is the manifest's).
    pub(crate) dir: Path,
    pub(crate) location: Location,
    pub(crate) manifests: ManifestStore,
    pub(crate) session: Arc<Session>,
    pub(crate) id: u64,
    /// Primary-key tables only.
    pub(crate) codec: Option<KeyCodec>,
    pub(crate) policy: Policy,
    /// Replaced (never mutated) after each commit.
    pub(crate) current: RwLock<Arc<Snapshot>>,
    /// Held while a commit is checked and ordered, a flush, or a base write: one writer
    /// per table at a time.
    pub(crate) writer: tokio::sync::Mutex<Writer>,
    /// One compaction at a time (it runs mostly outside the writer lock).
    pub(crate) compacting: tokio::sync::Mutex<()>,
    /// Open readers of the base's fragments, for point lookups: opening one costs
    /// more than reading a row. For one Lance version at a time.
    base_readers: std::sync::Mutex<(u64, HashMap<u64, Arc<FragmentReader>>)>,
    /// Vector index builds under way.
    pub(crate) builds: Arc<crate::vector_index::Builds>,
    /// The manifests readers took snapshots of ([`crate::retention`]).
    pub(crate) pins: crate::retention::Pins,
    /// The oldest manifest version time travel may read; a vacuum holds it while it
    /// chooses what to delete.
    pub(crate) history_floor: tokio::sync::RwLock<Version>,
    /// When the background task last vacuumed the table's history.
    pub(crate) last_vacuum_ms: std::sync::atomic::AtomicU64,
}

pub(crate) struct Writer {
    /// The Lance dataset base writes go to. `None` until the first write after opening,
    /// or after a failed write, when it must be re-read (and possibly restored).
    pub(crate) head: Option<Dataset>,
    /// The version the next commit gets.
    pub(crate) next_seq: u64,
    /// Identity sequences, ahead of the manifest's by the commits still in the log.
    pub(crate) sequences: BTreeMap<String, i64>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("name", &self.name()).finish_non_exhaustive()
    }
}

/// Lance writes a new file per this many rows.
pub(crate) const MAX_ROWS_PER_FILE: usize = 1 << 20;

impl Table {
    /// Creates the table's folder, its empty base and manifest version 1.
    pub(crate) async fn create(
        location: &Location,
        session: &Arc<Session>,
        dir: Path,
        def: TableDef,
    ) -> Result<Table> {
        let manifests = ManifestStore::new(location, &dir);
        // A folder without a manifest is debris of a crashed CREATE or DROP: clear it.
        delete_prefix(location.store(), &dir).await?;
        if !def.primary_key.is_empty() && def.format == BaseFormat::Parquet {
            return Err(StorageError::Unsupported {
                message: "a table with a primary key needs the lance base format (USING lance, the default)"
                    .into(),
            });
        }
        Policy::from_options(&def.options)?;
        crate::cluster::ClusterBy::of(&def)?;
        let base = match def.format {
            BaseFormat::Lance => {
                let uri = location.uri_of(&dir.clone().join("base"));
                let empty = RecordBatchIterator::new(
                    Vec::<Result<RecordBatch, _>>::new(),
                    crate::blob::lance_schema(&def.schema),
                );
                let params = WriteParams {
                    mode: WriteMode::Create,
                    session: Some(session.clone()),
                    max_rows_per_file: MAX_ROWS_PER_FILE,
                    ..Default::default()
                };
                let ds = Dataset::write(empty, uri.as_str(), Some(params)).await?;
                BaseRef::Lance { version: ds.version().version }
            }
            BaseFormat::Parquet => BaseRef::Parquet { files: Vec::new() },
        };
        let manifest = Manifest::first(def, base);
        manifests.commit(&manifest).await?;
        info!(table = %manifest.table.name, format = ?manifest.table.format, "created table");
        Self::open(location, session, dir, manifest).await
    }

    /// Opens a table at `manifest`, its newest version. Changes still only in the
    /// write-ahead log are replayed afterwards ([`Table::replay`]).
    pub(crate) async fn open(
        location: &Location,
        session: &Arc<Session>,
        dir: Path,
        manifest: Manifest,
    ) -> Result<Table> {
        let manifests = ManifestStore::new(location, &dir);
        let codec =
            if manifest.table.primary_key.is_empty() { None } else { Some(KeyCodec::new(&manifest.table)?) };
        let policy = Policy::from_options(&manifest.table.options)?;
        let writer = Writer { head: None, next_seq: manifest.seq + 1, sequences: manifest.sequences.clone() };
        let snapshot = load_snapshot(location, session, &dir, manifest, codec.as_ref(), None).await?;
        Ok(Table {
            dir,
            location: location.clone(),
            manifests,
            session: session.clone(),
            id: snapshot.manifest.table_id,
            codec,
            policy,
            current: RwLock::new(Arc::new(snapshot)),
            writer: tokio::sync::Mutex::new(writer),
            compacting: tokio::sync::Mutex::new(()),
            base_readers: std::sync::Mutex::new((0, HashMap::new())),
            builds: Arc::default(),
            pins: Default::default(),
            history_floor: tokio::sync::RwLock::new(Version(0)),
            last_vacuum_ms: std::sync::atomic::AtomicU64::new(crate::manifest::now_ms()),
        })
    }

    /// The table's id: its own for its whole life, never another table's.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The table's name now (a rename commits a manifest with the new one).
    pub fn name(&self) -> TableName {
        self.snapshot().manifest.table.name.clone()
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn manifests(&self) -> &ManifestStore {
        &self.manifests
    }

    /// Whether writes go through the change store (the table has a primary key).
    pub fn has_primary_key(&self) -> bool {
        self.codec.is_some()
    }

    pub fn key_codec(&self) -> Option<&KeyCodec> {
        self.codec.as_ref()
    }

    /// Whether no one but the caller holds the table or a snapshot of it.
    pub(crate) fn unread(self: &Arc<Self>) -> bool {
        let current = self.current.read().expect("snapshot lock poisoned");
        Arc::strong_count(self) == 1
            && Arc::strong_count(&current) == 1
            && Arc::strong_count(&current.manifest) == 1
            && self.pins.held().is_empty()
    }

    /// The rows of a snapshot's Parquet base with `schema`'s columns (a projection of
    /// the table's), read through the warehouse's store.
    pub async fn read_parquet_base(
        &self,
        snapshot: &Snapshot,
        schema: &SchemaRef,
    ) -> Result<Vec<RecordBatch>> {
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        read_columns(&self.location, &snapshot.base, &columns, false)
            .await?
            .iter()
            .map(|batch| crate::commit::align_to_schema(batch, schema))
            .collect()
    }

    /// The newest committed version.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().expect("snapshot lock poisoned").clone()
    }

    /// The base rows at `addresses` (every column; in address order) of a snapshot's
    /// Lance base, through cached fragment readers.
    pub async fn take_base_rows(&self, snapshot: &Snapshot, addresses: &[u64]) -> Result<RecordBatch> {
        let BaseSnapshot::Lance(ds) = &snapshot.base else {
            return Err(StorageError::internal("row addresses are of lance bases"));
        };
        let version = ds.version().version;
        let mut sorted = addresses.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut batches = Vec::new();
        let mut start = 0;
        while start < sorted.len() {
            let fragment = sorted[start] >> 32;
            let end = start + sorted[start..].iter().take_while(|a| **a >> 32 == fragment).count();
            let offsets: Vec<u32> = sorted[start..end].iter().map(|a| *a as u32).collect();
            let reader = self.base_reader(ds, version, fragment).await?;
            batches.push(reader.take_as_batch(&offsets, None).await?);
            start = end;
        }
        // The readers read every column but the blobs; those are read by address.
        let read = crate::blob::without_blobs(ds.schema());
        let rows = arrow::compute::concat_batches(&Arc::new(Schema::from(read.as_ref())), &batches)?;
        crate::blob::take_blobs(ds, rows, &sorted).await
    }

    async fn base_reader(&self, ds: &Dataset, version: u64, fragment: u64) -> Result<Arc<FragmentReader>> {
        {
            let cache = self.base_readers.lock().expect("reader cache poisoned");
            if cache.0 == version {
                if let Some(reader) = cache.1.get(&fragment) {
                    return Ok(reader.clone());
                }
            }
        }
        let file = ds
            .get_fragment(fragment as usize)
            .ok_or_else(|| StorageError::internal(format!("the base has no fragment {fragment}")))?;
        let read = crate::blob::without_blobs(ds.schema());
        let reader = Arc::new(file.open(&read, FragReadConfig::default()).await?);
        let mut cache = self.base_readers.lock().expect("reader cache poisoned");
        if cache.0 != version {
            *cache = (version, HashMap::new());
        }
        cache.1.insert(fragment, reader.clone());
        Ok(reader)
    }

    /// Appends rows as one atomic commit (tables without a primary key).
    ///
    /// The batches must have the table's column types (the SQL layer casts). Identity
    /// columns left NULL are filled from their sequence. Fails, writing nothing, on a
    /// NULL in a NOT NULL column. Returns the rows as written (with identity values
    /// filled in), for `RETURNING`.
    ///
    /// The write runs as its own task: a caller that goes away (a cancelled query, a
    /// closed connection) cannot stop it between the base write and the manifest commit.
    pub async fn append(self: &Arc<Self>, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        if self.has_primary_key() {
            return Err(StorageError::internal("rows of a primary-key table are committed as changes"));
        }
        let table = self.clone();
        tokio::spawn(async move { table.write_base_now(batches, false).await })
            .await
            .map_err(|e| StorageError::internal(format!("append task failed: {e}")))?
    }

    /// Replaces every row (tables without a primary key: `UPDATE`/`DELETE` rewrite the
    /// table). One atomic commit.
    pub async fn overwrite(self: &Arc<Self>, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        if self.has_primary_key() {
            return Err(StorageError::internal("rows of a primary-key table are committed as changes"));
        }
        let table = self.clone();
        tokio::spawn(async move { table.write_base_now(batches, true).await })
            .await
            .map_err(|e| StorageError::internal(format!("overwrite task failed: {e}")))?
    }

    /// Gives rows the table's exact column types, fills identity columns left NULL
    /// (taking values from their sequences now, as Postgres does, whether or not the
    /// transaction commits) and checks NOT NULL. Writes nothing.
    pub async fn prepare_rows(&self, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let mut writer = self.writer.lock().await;
        let snapshot = self.snapshot();
        batches.into_iter().map(|b| conform(snapshot.def(), b, &mut writer.sequences)).collect()
    }

    async fn write_base_now(&self, batches: Vec<RecordBatch>, overwrite: bool) -> Result<Vec<RecordBatch>> {
        // Before any file is written: a replica (or a writer that lost its lease) writes none.
        self.location.fence().check()?;
        let mut writer = self.writer.lock().await;
        self.write_base_locked(&mut writer, batches, overwrite).await
    }

    /// [`Self::write_base_now`] for a caller that holds the writer. Rows are written in
    /// the table's clustering order, if it has one; returned as given.
    pub(crate) async fn write_base_locked(
        &self,
        writer: &mut Writer,
        batches: Vec<RecordBatch>,
        overwrite: bool,
    ) -> Result<Vec<RecordBatch>> {
        let snapshot = self.snapshot();
        let def = snapshot.def();
        let mut manifest = snapshot.manifest.successor();
        manifest.sequences = writer.sequences.clone();
        let batches = batches
            .into_iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| conform(def, b, &mut manifest.sequences))
            .collect::<Result<Vec<_>>>()?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        if rows == 0 && !overwrite {
            return Ok(Vec::new());
        }
        let ordered = match crate::cluster::ClusterBy::of(def)? {
            Some(cluster) if rows > 1 => cluster.sort(&batches)?,
            _ => batches.clone(),
        };
        let result = self.write_base(writer, &snapshot, &mut manifest, ordered, overwrite).await;
        if let Err(e) = result {
            // The head may have moved past our manifest; re-read it before the next write.
            writer.head = None;
            return Err(e);
        }
        manifest.row_count = if overwrite { rows } else { manifest.row_count + rows };
        if overwrite && !manifest.text_indexes.is_empty() {
            // The old fragments are gone: index the new ones from scratch.
            if let Err(e) = self.rebuild_text_indexes(writer, &mut manifest).await {
                writer.head = None;
                return Err(e);
            }
        }
        if overwrite && !(manifest.indexes.is_empty() && manifest.scalar_indexes.is_empty()) {
            // Lance drops the indexes of a dataset it overwrites: train them anew.
            if let Err(e) = self.rebuild_indexes(writer, &mut manifest).await {
                writer.head = None;
                return Err(e);
            }
        }
        manifest.seq = writer.next_seq;
        manifest.folded_seq = manifest.seq;
        if let Err(e) = self.manifests.commit(&manifest).await {
            writer.head = None;
            return Err(e);
        }
        writer.next_seq += 1;
        writer.sequences = manifest.sequences.clone();
        self.publish(manifest, writer, None).await?;
        debug!(table = %self.name(), rows, overwrite, "wrote base");
        Ok(batches)
    }

    /// `ALTER TABLE ... RENAME TO`: the next manifest carries the new name; the folder,
    /// the base, the change files and the indexes stay as they are. The warehouse's
    /// catalog follows ([`crate::Warehouse::rename_relation`]).
    pub(crate) async fn rename(&self, to: TableName) -> Result<()> {
        self.alter_def(|def| def.name = to).await
    }

    /// `COMMENT ON TABLE | COLUMN`: the next manifest carries the comment (`None`
    /// removes it).
    pub async fn set_comment(&self, column: Option<&str>, comment: Option<String>) -> Result<()> {
        self.alter_def(|def| def.comments.set(column, comment)).await
    }

    /// Commits a manifest whose table definition `change` altered; the data stays.
    pub(crate) async fn alter_def(&self, change: impl FnOnce(&mut TableDef)) -> Result<()> {
        let writer = self.writer.lock().await;
        let mut manifest = self.snapshot().manifest.successor();
        change(&mut manifest.table);
        self.manifests.commit(&manifest).await?;
        self.publish(manifest, &writer, None).await
    }

    /// Makes `manifest` the current state; the caller holds the writer lock. `epoch`
    /// replaces the change epoch (after a compaction); otherwise the current one carries
    /// over, or is built for a new base.
    pub(crate) async fn publish(
        &self,
        manifest: Manifest,
        _writer: &Writer,
        epoch: Option<Arc<Epoch>>,
    ) -> Result<()> {
        let current = self.snapshot();
        let base = if manifest.base == current.manifest.base {
            current.base.clone()
        } else {
            load_base(&self.location, &self.session, &self.dir, &manifest).await?
        };
        let changes = match (epoch, &current.changes) {
            (Some(epoch), _) => Some(epoch),
            (None, Some(epoch)) if manifest.base == current.manifest.base => Some(epoch.clone()),
            (None, _) => match &self.codec {
                Some(codec) => {
                    Some(Arc::new(build_epoch(&self.location, &self.dir, &manifest, &base, codec).await?))
                }
                None => None,
            },
        };
        // The newest snapshot now, not `current`: a commit acknowledged while the base
        // loaded has advanced it, and a snapshot that went back would hide that commit
        // from its own client's next transaction (and fail its next update with 40001).
        let mut slot = self.current.write().expect("snapshot lock poisoned");
        let seq = slot.seq.max(manifest.seq);
        self.pins.add(&slot.manifest);
        *slot = Arc::new(Snapshot { manifest: Arc::new(manifest), base, seq, changes });
        Ok(())
    }

    pub(crate) async fn write_base(
        &self,
        writer: &mut Writer,
        snapshot: &Snapshot,
        manifest: &mut Manifest,
        batches: Vec<RecordBatch>,
        overwrite: bool,
    ) -> Result<()> {
        match &mut manifest.base {
            BaseRef::Lance { version } => {
                let head = self.head(writer, snapshot).await?;
                let params = WriteParams {
                    mode: if overwrite { WriteMode::Overwrite } else { WriteMode::Append },
                    session: Some(self.session.clone()),
                    max_rows_per_file: MAX_ROWS_PER_FILE,
                    ..Default::default()
                };
                let new_head = if overwrite && batches.is_empty() {
                    let mut head = head;
                    head.truncate_table().await?;
                    head
                } else {
                    let batches = batches
                        .into_iter()
                        .map(|b| crate::blob::to_lance(head.schema(), b))
                        .collect::<Result<Vec<_>>>()?;
                    InsertBuilder::new(WriteDestination::Dataset(Arc::new(head)))
                        .with_params(&params)
                        .execute(batches)
                        .await?
                };
                *version = new_head.version().version;
                writer.head = Some(new_head);
            }
            BaseRef::Parquet { files } => {
                if overwrite {
                    files.clear();
                }
                let name = format!("part-{:020}.parquet", manifest.version.0);
                let bytes = encode_parquet(&manifest.table.schema, &batches)?;
                let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
                let size = bytes.len() as u64;
                let path = self.dir.clone().join("base").join(name.as_str());
                self.location.store().put(&path, PutPayload::from(bytes)).await?;
                files.push(ParquetFile { name, rows, bytes: size });
            }
        }
        Ok(())
    }

    /// The Lance dataset to write to, restored to the snapshot's version if a failed
    /// write left newer versions behind. It is taken out of the writer: only a write that
    /// succeeds puts its new head back, so after any failure the next write re-reads it.
    pub(crate) async fn head(&self, writer: &mut Writer, snapshot: &Snapshot) -> Result<Dataset> {
        if let Some(head) = writer.head.take() {
            return Ok(head);
        }
        let BaseRef::Lance { version } = snapshot.manifest.base else {
            return Err(StorageError::internal("lance head of a non-lance table"));
        };
        let uri = self.location.uri_of(&self.dir.clone().join("base"));
        let latest = DatasetBuilder::from_uri(uri).with_session(self.session.clone()).load().await?;
        let head = if latest.version().version == version {
            latest
        } else {
            warn!(
                table = %self.name(), committed = version, found = latest.version().version,
                "base has versions no manifest committed (a write crashed); restoring"
            );
            let mut restored = latest.checkout_version(version).await?;
            restored.restore().await?;
            restored
        };
        Ok(head)
    }
}

/// Reads the named columns of every row of a base, with the Lance row address last
/// when `with_address` (Lance bases only).
pub(crate) async fn read_columns(
    location: &Location,
    base: &BaseSnapshot,
    columns: &[String],
    with_address: bool,
) -> Result<Vec<RecordBatch>> {
    match base {
        BaseSnapshot::Lance(ds) => {
            let mut scanner = ds.scan();
            crate::blob::read_binary(&mut scanner).project(columns)?;
            if with_address {
                scanner.with_row_address();
            }
            let batches: Vec<RecordBatch> = scanner.try_into_stream().await?.try_collect().await?;
            batches.into_iter().map(|b| crate::blob::from_lance(ds.schema(), b)).collect()
        }
        BaseSnapshot::Parquet(files) => {
            let mut out = Vec::new();
            for (url, _) in files {
                let path = location
                    .path_of_url(url)
                    .ok_or_else(|| StorageError::internal(format!("{url} is outside the warehouse")))?;
                out.extend(read_parquet(location, &path, Some(columns)).await?);
            }
            Ok(out)
        }
    }
}

/// Reads a Parquet file below the warehouse's root, optionally only some columns.
pub(crate) async fn read_parquet(
    location: &Location,
    path: &Path,
    columns: Option<&[String]>,
) -> Result<Vec<RecordBatch>> {
    let bytes = location.store().get(path).await?.bytes().await?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| StorageError::internal(format!("reading {path}: {e}")))?;
    let builder = match columns {
        Some(columns) => {
            let mask = parquet::arrow::ProjectionMask::columns(
                builder.parquet_schema(),
                columns.iter().map(String::as_str),
            );
            builder.with_projection(mask)
        }
        None => builder,
    };
    let mut out = Vec::new();
    for batch in builder.build().map_err(|e| StorageError::internal(format!("reading {path}: {e}")))? {
        out.push(batch?);
    }
    Ok(out)
}

pub(crate) async fn load_base(
    location: &Location,
    session: &Arc<Session>,
    dir: &Path,
    manifest: &Manifest,
) -> Result<BaseSnapshot> {
    Ok(match &manifest.base {
        BaseRef::Lance { version } => {
            // Readers open the base through Lance's own local files (file handles kept
            // open per reader); only writers need the fsync-ing store.
            let uri = location.read_url_of(&dir.clone().join("base"));
            let ds = DatasetBuilder::from_uri(uri)
                .with_session(session.clone())
                .with_version(*version)
                .load()
                .await?;
            BaseSnapshot::Lance(Arc::new(ds))
        }
        BaseRef::Parquet { files } => BaseSnapshot::Parquet(
            files
                .iter()
                .map(|f| {
                    let path = dir.clone().join("base").join(f.name.as_str());
                    (location.read_url_of(&path), f.bytes)
                })
                .collect(),
        ),
    })
}

/// The snapshot of `manifest`: its base, and for a primary-key table the epoch with
/// the base's key index and the changes of its live change files.
pub(crate) async fn load_snapshot(
    location: &Location,
    session: &Arc<Session>,
    dir: &Path,
    manifest: Manifest,
    codec: Option<&KeyCodec>,
    previous: Option<&Snapshot>,
) -> Result<Snapshot> {
    // What did not change since `previous` (a replica following the writer) is kept:
    // the base, and its key index when the deletion vector and fold point are the same.
    let kept = previous.filter(|p| p.manifest.base == manifest.base);
    let base = match kept {
        Some(p) => p.base.clone(),
        None => load_base(location, session, dir, &manifest).await?,
    };
    let changes = match codec {
        Some(codec) => {
            let keys = kept
                .filter(|p| {
                    p.manifest.deletes == manifest.deletes && p.manifest.folded_seq == manifest.folded_seq
                })
                .and_then(|p| p.changes.as_ref());
            let epoch = match keys {
                Some(epoch) => {
                    Epoch::new(manifest.folded_seq, epoch.base_keys.clone(), manifest.table.bucket_count)
                }
                None => build_epoch(location, dir, &manifest, &base, codec).await?,
            };
            crate::compaction::load_change_files(location, dir, &manifest, &epoch, codec, u64::MAX).await?;
            Some(Arc::new(epoch))
        }
        None => None,
    };
    Ok(Snapshot { seq: manifest.seq, manifest: Arc::new(manifest), base, changes })
}

/// An epoch over `base` with its primary-key index and no changes yet.
pub(crate) async fn build_epoch(
    location: &Location,
    dir: &Path,
    manifest: &Manifest,
    base: &BaseSnapshot,
    codec: &KeyCodec,
) -> Result<Epoch> {
    let keys = crate::compaction::base_keys(location, dir, manifest, base, codec).await?;
    Ok(Epoch::new(manifest.folded_seq, Arc::new(keys), manifest.table.bucket_count))
}

/// Gives `batch` exactly the table's schema: casts where the types differ, fills NULL
/// identity values from their sequences, and checks NOT NULL columns (generated ones
/// are the engine's to compute and check: until then they may be NULL, and the batch
/// has them nullable).
pub(crate) fn conform(
    def: &TableDef,
    batch: RecordBatch,
    sequences: &mut BTreeMap<String, i64>,
) -> Result<RecordBatch> {
    let schema = &def.schema;
    if batch.num_columns() != schema.fields().len() {
        return Err(StorageError::internal(format!(
            "{} columns written to {} with {} columns",
            batch.num_columns(),
            def.name,
            schema.fields().len()
        )));
    }
    let rows = batch.num_rows();
    let mut columns = Vec::with_capacity(schema.fields().len());
    // Whether a NOT NULL generated column is still NULL: the batch is then returned with
    // the generated columns nullable.
    let mut not_yet_generated = false;
    for ((field, meta), column) in schema.fields().iter().zip(&def.columns).zip(batch.columns()) {
        let mut column = if column.data_type() == field.data_type() {
            column.clone()
        } else {
            cast(column, field.data_type())?
        };
        if let Some(identity) = &meta.identity {
            if column.null_count() > 0 {
                column = fill_identity(&column, field, identity, sequences.entry(meta.name.clone()))?;
            }
        }
        if !field.is_nullable() && column.null_count() > 0 {
            // A generated column is computed after this (it may read an identity) and
            // checked then.
            if meta.generated.is_none() {
                return Err(StorageError::NotNullViolation {
                    table: def.name.table.clone(),
                    column: field.name().clone(),
                });
            }
            not_yet_generated = true;
        }
        columns.push(column);
    }
    if not_yet_generated {
        let fields = schema.fields().iter().zip(&def.columns).map(|(field, meta)| {
            let nullable = field.is_nullable() || meta.generated.is_some();
            field.as_ref().clone().with_nullable(nullable)
        });
        let schema =
            Arc::new(Schema::new_with_metadata(fields.collect::<Vec<_>>(), schema.metadata().clone()));
        return Ok(RecordBatch::try_new(schema, columns)?);
    }
    if columns.is_empty() {
        return Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            vec![],
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )?);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn fill_identity(
    column: &ArrayRef,
    field: &Field,
    identity: &crate::table_def::Identity,
    last: std::collections::btree_map::Entry<'_, String, i64>,
) -> Result<ArrayRef> {
    let last = last.or_insert(identity.start - identity.increment);
    let as_i64 = cast(column, &arrow::datatypes::DataType::Int64)?;
    let as_i64 = as_i64.as_any().downcast_ref::<Int64Array>().expect("cast to Int64");
    let filled: Int64Array = as_i64
        .iter()
        .map(|value| {
            Some(value.unwrap_or_else(|| {
                *last += identity.increment;
                *last
            }))
        })
        .collect();
    Ok(cast(&(Arc::new(filled) as ArrayRef), field.data_type())?)
}

pub(crate) fn encode_parquet(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<bytes::Bytes> {
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, schema.clone(), Some(props))
        .map_err(|e| StorageError::internal(format!("parquet writer: {e}")))?;
    for batch in batches {
        writer.write(batch).map_err(|e| StorageError::internal(format!("parquet write: {e}")))?;
    }
    writer.close().map_err(|e| StorageError::internal(format!("parquet close: {e}")))?;
    Ok(bytes::Bytes::from(buffer))
}
