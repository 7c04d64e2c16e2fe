//! One table: its current snapshot and its single writer.
//!
//! A write is: validate the rows (types, NOT NULL, primary key), write new base files,
//! then commit the next manifest version. The manifest put is the commit point:
//! base files a crashed write left behind are referenced by no manifest and never read.
//! For Lance, such a write may have advanced the dataset past the version our manifest
//! names; [`Writer::head`] restores the named version before the next write, so the
//! orphaned rows can never be folded back in by Lance's commit rebasing.
//!
//! Readers take an `Arc<Snapshot>` and never wait for the writer.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, RecordBatchIterator};
use arrow::compute::cast;
use arrow::datatypes::{Field, Schema, SchemaRef};
use futures::TryStreamExt;
use lance::dataset::builder::DatasetBuilder;
use lance::dataset::{InsertBuilder, NewColumnTransform, WriteDestination, WriteMode, WriteParams};
use lance::session::Session;
use lance::Dataset;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tracing::{debug, info, warn};

use crate::error::{Result, StorageError};
use crate::io::Location;
use crate::key_index::KeyIndex;
use crate::manifest::{BaseRef, Manifest, ManifestStore, ParquetFile, Version};
use crate::table_def::{BaseFormat, ColumnMeta, TableDef, TableName};

/// What a reader sees: one committed version of a table.
#[derive(Debug)]
pub struct Snapshot {
    pub manifest: Arc<Manifest>,
    pub base: BaseSnapshot,
}

#[derive(Debug, Clone)]
pub enum BaseSnapshot {
    /// The Lance dataset checked out at the manifest's base version.
    Lance(Arc<Dataset>),
    /// Parquet files, as URLs a reader can open (`file:///...`), with their sizes.
    Parquet(Vec<(String, u64)>),
}

impl Snapshot {
    pub fn version(&self) -> Version {
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
    name: TableName,
    dir: Path,
    location: Location,
    manifests: ManifestStore,
    session: Arc<Session>,
    /// Replaced (never mutated) by the writer after each commit.
    current: RwLock<Arc<Snapshot>>,
    /// Held for the whole of a write: one writer per table at a time.
    writer: tokio::sync::Mutex<Writer>,
}

#[derive(Default)]
struct Writer {
    /// The Lance dataset appends go to. `None` until the first write after opening, or
    /// after a failed write, when it must be re-read (and possibly restored).
    head: Option<Dataset>,
    /// Built from the base on the first write to a table with a primary key.
    keys: Option<KeyIndex>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Lance writes a new file per this many rows.
const MAX_ROWS_PER_FILE: usize = 1 << 20;

impl Table {
    /// Creates the table's folder, its empty base and manifest version 1.
    pub(crate) async fn create(
        location: &Location,
        session: &Arc<Session>,
        dir: Path,
        def: TableDef,
    ) -> Result<Table> {
        let manifests = ManifestStore::new(location.store().clone(), &dir);
        // A folder without a manifest is debris of a crashed CREATE or DROP: clear it.
        delete_prefix(location.store(), &dir).await?;
        let base = match def.format {
            BaseFormat::Lance => {
                let uri = location.uri_of(&dir.clone().join("base"));
                let empty =
                    RecordBatchIterator::new(Vec::<Result<RecordBatch, _>>::new(), def.schema.clone());
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

    /// Opens a table at `manifest`, its newest version.
    pub(crate) async fn open(
        location: &Location,
        session: &Arc<Session>,
        dir: Path,
        manifest: Manifest,
    ) -> Result<Table> {
        let manifests = ManifestStore::new(location.store().clone(), &dir);
        let name = manifest.table.name.clone();
        let snapshot = load_snapshot(location, session, &dir, manifest).await?;
        Ok(Table {
            name,
            dir,
            location: location.clone(),
            manifests,
            session: session.clone(),
            current: RwLock::new(Arc::new(snapshot)),
            writer: tokio::sync::Mutex::new(Writer::default()),
        })
    }

    pub fn name(&self) -> &TableName {
        &self.name
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn manifests(&self) -> &ManifestStore {
        &self.manifests
    }

    /// The newest committed version.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().expect("snapshot lock poisoned").clone()
    }

    /// Appends rows as one atomic commit.
    ///
    /// The batches must have the table's column types (the SQL layer casts). Identity
    /// columns left NULL are filled from their sequence. Fails, writing nothing, on a
    /// NULL in a NOT NULL column or a primary key that exists or repeats. Returns the
    /// rows as written (with identity values filled in), for `RETURNING`.
    ///
    /// The write runs as its own task: a caller that goes away (a cancelled query, a
    /// closed connection) cannot stop it between the base write and the manifest commit.
    pub async fn append(self: &Arc<Self>, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let table = self.clone();
        tokio::spawn(async move { table.append_now(batches).await })
            .await
            .map_err(|e| StorageError::internal(format!("append task failed: {e}")))?
    }

    async fn append_now(&self, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let mut writer = self.writer.lock().await;
        let snapshot = self.snapshot();
        let def = snapshot.def();
        let mut manifest = snapshot.manifest.successor();

        let batches = batches
            .into_iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| conform(def, b, &mut manifest.sequences))
            .collect::<Result<Vec<_>>>()?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        if rows == 0 {
            return Ok(Vec::new());
        }

        let new_keys = if def.primary_key.is_empty() {
            None
        } else {
            let key_columns = def.primary_key_indices();
            let keyed: Vec<Vec<ArrayRef>> =
                batches.iter().map(|b| key_columns.iter().map(|&i| b.column(i).clone()).collect()).collect();
            let index = self.key_index(&mut writer, &snapshot).await?;
            match index.check_new(&def.primary_key, &keyed)? {
                Ok(keys) => Some(keys),
                Err(dup) => {
                    return Err(StorageError::UniqueViolation {
                        constraint: def.primary_key_constraint(),
                        detail: dup.detail,
                    })
                }
            }
        };

        let result = self.write_base(&mut writer, &snapshot, &mut manifest, batches.clone()).await;
        if let Err(e) = result {
            // The head may have moved past our manifest; re-read it before the next write.
            writer.head = None;
            return Err(e);
        }
        manifest.row_count += rows;
        if let Err(e) = self.manifests.commit(&manifest).await {
            writer.head = None;
            return Err(e);
        }
        if let (Some(index), Some(keys)) = (writer.keys.as_mut(), new_keys) {
            index.add(keys);
        }
        self.publish(manifest, &writer).await?;
        debug!(table = %self.name, rows, "appended");
        Ok(batches)
    }

    /// `ALTER TABLE ... ADD COLUMN`: existing rows read NULL in the new column.
    pub async fn add_column(self: &Arc<Self>, field: Field, meta: ColumnMeta) -> Result<()> {
        let table = self.clone();
        tokio::spawn(async move { table.add_column_now(field, meta).await })
            .await
            .map_err(|e| StorageError::internal(format!("add column task failed: {e}")))?
    }

    async fn add_column_now(&self, field: Field, meta: ColumnMeta) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let snapshot = self.snapshot();
        let def = snapshot.def();
        if def.column_index(field.name()).is_some() {
            return Err(StorageError::DuplicateColumn {
                table: def.name.to_string(),
                column: field.name().clone(),
            });
        }
        if snapshot.manifest.row_count > 0 && meta.identity.is_some() {
            return Err(StorageError::Unsupported {
                message: "adding an identity or serial column to a table that has rows is not supported yet"
                    .into(),
            });
        }
        if snapshot.manifest.row_count > 0 && !field.is_nullable() {
            return Err(StorageError::NotNullViolation {
                table: def.name.table.clone(),
                column: field.name().clone(),
            });
        }
        let mut manifest = snapshot.manifest.successor();
        let mut fields: Vec<Field> = def.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(field.clone());
        manifest.table.schema = Arc::new(Schema::new_with_metadata(fields, def.schema.metadata().clone()));
        manifest.table.columns.push(meta);
        if let BaseSnapshot::Lance(_) = snapshot.base {
            let mut head = self.head(&mut writer, &snapshot).await?;
            let added = Arc::new(Schema::new(vec![field.with_nullable(true)]));
            let result = head.add_columns(NewColumnTransform::AllNulls(added), None, None).await;
            if let Err(e) = result {
                writer.head = None;
                return Err(e.into());
            }
            manifest.base = BaseRef::Lance { version: head.version().version };
            writer.head = Some(head);
        }
        if let Err(e) = self.manifests.commit(&manifest).await {
            writer.head = None;
            return Err(e);
        }
        self.publish(manifest, &writer).await
    }

    async fn publish(&self, manifest: Manifest, writer: &Writer) -> Result<()> {
        let base = match (&manifest.base, &writer.head) {
            (BaseRef::Lance { version }, Some(head)) if head.version().version == *version => {
                BaseSnapshot::Lance(Arc::new(head.clone()))
            }
            _ => load_snapshot(&self.location, &self.session, &self.dir, manifest.clone()).await?.base,
        };
        let snapshot = Snapshot { manifest: Arc::new(manifest), base };
        *self.current.write().expect("snapshot lock poisoned") = Arc::new(snapshot);
        Ok(())
    }

    async fn write_base(
        &self,
        writer: &mut Writer,
        snapshot: &Snapshot,
        manifest: &mut Manifest,
        batches: Vec<RecordBatch>,
    ) -> Result<()> {
        match &mut manifest.base {
            BaseRef::Lance { version } => {
                let head = self.head(writer, snapshot).await?;
                let params = WriteParams {
                    mode: WriteMode::Append,
                    session: Some(self.session.clone()),
                    max_rows_per_file: MAX_ROWS_PER_FILE,
                    ..Default::default()
                };
                let new_head = InsertBuilder::new(WriteDestination::Dataset(Arc::new(head)))
                    .with_params(&params)
                    .execute(batches)
                    .await?;
                *version = new_head.version().version;
                writer.head = Some(new_head);
            }
            BaseRef::Parquet { files } => {
                let name = format!("part-{:020}.parquet", manifest.version.0);
                let bytes = encode_parquet(&snapshot.schema(), &batches)?;
                let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
                let size = bytes.len() as u64;
                let path = self.dir.clone().join("base").join(name.as_str());
                self.location.store().put(&path, PutPayload::from(bytes)).await?;
                files.push(ParquetFile { name, rows, bytes: size });
            }
        }
        Ok(())
    }

    /// The Lance dataset to append to, restored to the snapshot's version if a failed
    /// write left newer versions behind. It is taken out of the writer: only a write that
    /// succeeds puts its new head back, so after any failure the next write re-reads it.
    async fn head(&self, writer: &mut Writer, snapshot: &Snapshot) -> Result<Dataset> {
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
                table = %self.name, committed = version, found = latest.version().version,
                "base has versions no manifest committed (a write crashed); restoring"
            );
            let mut restored = latest.checkout_version(version).await?;
            restored.restore().await?;
            restored
        };
        Ok(head)
    }

    async fn key_index<'w>(&self, writer: &'w mut Writer, snapshot: &Snapshot) -> Result<&'w mut KeyIndex> {
        if writer.keys.is_none() {
            let def = snapshot.def();
            let fields: Vec<Field> =
                def.primary_key_indices().into_iter().map(|i| def.schema.field(i).clone()).collect();
            let mut index = KeyIndex::new(&fields)?;
            let started = std::time::Instant::now();
            for batch in read_columns(snapshot, &def.primary_key).await? {
                index.extend_committed(batch.columns())?;
            }
            info!(table = %self.name, keys = index.len(), elapsed = ?started.elapsed(), "loaded primary key index");
            writer.keys = Some(index);
        }
        Ok(writer.keys.as_mut().expect("just built"))
    }
}

/// Reads the named columns of every row of a snapshot.
async fn read_columns(snapshot: &Snapshot, columns: &[String]) -> Result<Vec<RecordBatch>> {
    match &snapshot.base {
        BaseSnapshot::Lance(ds) => {
            let mut scanner = ds.scan();
            scanner.project(columns)?;
            Ok(scanner.try_into_stream().await?.try_collect().await?)
        }
        BaseSnapshot::Parquet(files) => {
            let mut out = Vec::new();
            for (url, _) in files {
                let path = url::Url::parse(url)
                    .ok()
                    .and_then(|u| u.to_file_path().ok())
                    .ok_or_else(|| StorageError::internal(format!("not a local file: {url}")))?;
                let file = std::fs::File::open(&path)
                    .map_err(|source| StorageError::Io { path: path.display().to_string(), source })?;
                let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| StorageError::internal(format!("reading {url}: {e}")))?;
                let mask = parquet::arrow::ProjectionMask::columns(
                    builder.parquet_schema(),
                    columns.iter().map(String::as_str),
                );
                for batch in builder
                    .with_projection(mask)
                    .build()
                    .map_err(|e| StorageError::internal(format!("reading {url}: {e}")))?
                {
                    out.push(batch?);
                }
            }
            Ok(out)
        }
    }
}

async fn load_snapshot(
    location: &Location,
    session: &Arc<Session>,
    dir: &Path,
    manifest: Manifest,
) -> Result<Snapshot> {
    let base = match &manifest.base {
        BaseRef::Lance { version } => {
            let uri = location.uri_of(&dir.clone().join("base"));
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
                    (location.file_url_of(&path), f.bytes)
                })
                .collect(),
        ),
    };
    Ok(Snapshot { manifest: Arc::new(manifest), base })
}

/// Gives `batch` exactly the table's schema: casts where the types differ, fills NULL
/// identity values from their sequences, and checks NOT NULL columns.
fn conform(def: &TableDef, batch: RecordBatch, sequences: &mut BTreeMap<String, i64>) -> Result<RecordBatch> {
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
            return Err(StorageError::NotNullViolation {
                table: def.name.table.clone(),
                column: field.name().clone(),
            });
        }
        columns.push(column);
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

fn encode_parquet(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<bytes::Bytes> {
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

/// Deletes every object below `prefix`.
pub(crate) async fn delete_prefix(store: &Arc<dyn ObjectStore>, prefix: &Path) -> Result<()> {
    let paths: Vec<Path> = store.list(Some(prefix)).map_ok(|m| m.location).try_collect().await?;
    for path in paths {
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
