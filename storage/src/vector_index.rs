//! Vector indexes: which ones a table has (in its manifest), building them on the Lance
//! base, and keeping them current as compaction appends rows.
//!
//! An index is a Lance ANN index on the base dataset, named as the user named it:
//!
//! | DDL | Lance index |
//! |---|---|
//! | `USING hnsw` | `IVF_HNSW_FLAT`: one HNSW graph per IVF partition (one partition up to a million rows), full vectors, no quantization loss |
//! | `USING ivfflat` | `IVF_FLAT` with `lists` partitions |
//! | `USING ivf_pq` | `IVF_PQ` (8-bit codes, `dim / 2` or fewer sub-vectors), searched with a refine step on the full vectors |
//!
//! Rows are indexed when they reach the base. Changes not yet compacted are searched
//! exactly by the reader, and base rows they replaced are masked by the deletion vector,
//! so an index is never stale to a query. A compaction indexes the rows it appended
//! (Lance's incremental `optimize_indices`: a delta index over the new fragments, never
//! a rebuild). An index declared on a table with too few base rows to train on is
//! recorded and built by the first compaction that brings enough rows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lance::dataset::Dataset;
use lance::index::vector::VectorIndexParams;
use lance::index::{DatasetIndexExt, IndexBuildProgress};
use lance_index::optimize::OptimizeOptions;
use lance_index::vector::hnsw::builder::HnswBuildParams;
use lance_index::vector::ivf::IvfBuildParams;
use lance_index::vector::pq::PQBuildParams;
use lance_index::IndexType;
use lance_linalg::distance::DistanceType;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error::{Result, StorageError};
use crate::manifest::{BaseRef, Manifest};
use crate::table::{BaseSnapshot, Table, Writer};

/// Fewer base rows than this and an index is not trained yet: an exact search of so
/// few rows is fast, and k-means needs rows to learn from.
pub const MIN_ROWS_TO_BUILD: u64 = 1_000;

/// Rows per IVF partition of an HNSW index: one graph up to this many rows.
const HNSW_ROWS_PER_PARTITION: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexMethod {
    Hnsw,
    IvfFlat,
    IvfPq,
}

impl IndexMethod {
    pub fn name(self) -> &'static str {
        match self {
            IndexMethod::Hnsw => "hnsw",
            IndexMethod::IvfFlat => "ivfflat",
            IndexMethod::IvfPq => "ivf_pq",
        }
    }

    /// The Lance index type that serves it.
    pub fn lance_type(self) -> &'static str {
        match self {
            IndexMethod::Hnsw => "IVF_HNSW_FLAT",
            IndexMethod::IvfFlat => "IVF_FLAT",
            IndexMethod::IvfPq => "IVF_PQ",
        }
    }
}

/// The distance an index orders by (pgvector's operator classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `<->`, `vector_l2_ops`.
    L2,
    /// `<=>`, `vector_cosine_ops`.
    Cosine,
    /// `<#>`, `vector_ip_ops`.
    InnerProduct,
}

impl Metric {
    pub fn opclass(self) -> &'static str {
        match self {
            Metric::L2 => "vector_l2_ops",
            Metric::Cosine => "vector_cosine_ops",
            Metric::InnerProduct => "vector_ip_ops",
        }
    }

    pub fn distance_type(self) -> DistanceType {
        match self {
            Metric::L2 => DistanceType::L2,
            Metric::Cosine => DistanceType::Cosine,
            Metric::InnerProduct => DistanceType::Dot,
        }
    }
}

/// One vector index as declared, and whether the base has it yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexDef {
    pub name: String,
    pub column: String,
    pub method: IndexMethod,
    pub metric: Metric,
    /// HNSW: neighbours per node (pgvector's `m`, default 16).
    pub m: usize,
    /// HNSW: candidate list while building (`ef_construction`, default 64).
    pub ef_construction: usize,
    /// IVF: partitions (`lists`); `None` picks one from the row count.
    pub lists: Option<usize>,
    /// The base at the manifest's version has this index (trained on its rows).
    #[serde(default)]
    pub built: bool,
}

impl IndexDef {
    pub fn new(name: String, column: String, method: IndexMethod, metric: Metric) -> Self {
        IndexDef { name, column, method, metric, m: 16, ef_construction: 64, lists: None, built: false }
    }

    fn params(&self, rows: u64, dims: usize) -> VectorIndexParams {
        let metric = self.metric.distance_type();
        match self.method {
            IndexMethod::Hnsw => {
                let partitions = self.lists.unwrap_or(rows.div_ceil(HNSW_ROWS_PER_PARTITION).max(1) as usize);
                let hnsw = HnswBuildParams::default().num_edges(self.m).ef_construction(self.ef_construction);
                VectorIndexParams::ivf_hnsw(metric, IvfBuildParams::new(partitions), hnsw)
            }
            IndexMethod::IvfFlat => VectorIndexParams::ivf_flat(self.partitions(rows), metric),
            IndexMethod::IvfPq => {
                let sub_vectors = pq_sub_vectors(dims);
                let pq = PQBuildParams::new(sub_vectors, 8);
                VectorIndexParams::with_ivf_pq_params(metric, IvfBuildParams::new(self.partitions(rows)), pq)
            }
        }
    }

    /// IVF partitions: as declared, else pgvector's advice (rows / 1000, at least 1,
    /// sqrt(rows) past a million rows).
    fn partitions(&self, rows: u64) -> usize {
        let rows = rows.max(1);
        let advised = if rows <= 1_000_000 { rows / 1_000 } else { (rows as f64).sqrt() as u64 };
        self.lists.unwrap_or(advised.max(1) as usize).min(rows as usize)
    }

    fn lance_index_type(&self) -> IndexType {
        match self.method {
            IndexMethod::Hnsw => IndexType::IvfHnswFlat,
            IndexMethod::IvfFlat => IndexType::IvfFlat,
            IndexMethod::IvfPq => IndexType::IvfPq,
        }
    }
}

/// The largest divisor of `dims` that gives sub-vectors of at least two dimensions,
/// and no more than 96 of them (Lance's PQ needs `dims % sub_vectors == 0`).
fn pq_sub_vectors(dims: usize) -> usize {
    (1..=dims.min(96)).rev().find(|s| dims.is_multiple_of(*s) && dims / s >= 2).unwrap_or(1)
}

/// What an index build is doing, for `tarn_indexes` and the log.
#[derive(Debug, Clone, Default)]
pub struct BuildStatus {
    pub stage: String,
    pub completed: u64,
    pub total: Option<u64>,
    pub unit: String,
    pub started: Option<Instant>,
    /// A bm25 index being created: what was declared (no manifest names it yet).
    pub creating: Option<crate::text_index::TextIndexDef>,
}

/// Builds under way, by index name (one table's).
#[derive(Debug, Default)]
pub struct Builds(Mutex<HashMap<String, BuildStatus>>);

impl Builds {
    pub fn status(&self, index: &str) -> Option<BuildStatus> {
        self.0.lock().expect("builds lock").get(index).cloned()
    }

    /// The builds of bm25 indexes being created.
    fn creating(&self) -> Vec<BuildStatus> {
        self.0.lock().expect("builds lock").values().filter(|b| b.creating.is_some()).cloned().collect()
    }

    pub(crate) fn update(&self, index: &str, f: impl FnOnce(&mut BuildStatus)) {
        let mut builds = self.0.lock().expect("builds lock");
        f(builds
            .entry(index.to_string())
            .or_insert_with(|| BuildStatus { started: Some(Instant::now()), ..Default::default() }));
    }

    pub(crate) fn finish(&self, index: &str) {
        self.0.lock().expect("builds lock").remove(index);
    }
}

/// An index build's stages and progress, kept in the table's [`Builds`] for
/// `tarn_indexes` and logged: Lance's vector builds report through it, text index
/// builds call it.
#[derive(Debug, Clone)]
pub(crate) struct BuildReport {
    table: String,
    index: String,
    builds: Arc<Builds>,
}

/// A text build logs its progress every this many documents.
const PROGRESS_LOG_DOCS: u64 = 100_000;

impl BuildReport {
    pub(crate) fn new(table: impl ToString, index: &str, builds: &Arc<Builds>) -> Self {
        BuildReport { table: table.to_string(), index: index.to_string(), builds: builds.clone() }
    }

    pub(crate) fn stage(&self, stage: &str, total: Option<u64>, unit: &str) {
        info!(table = %self.table, index = %self.index, stage, total, unit, "index build stage");
        self.builds.update(&self.index, |s| {
            s.stage = stage.to_string();
            s.completed = 0;
            s.total = total;
            s.unit = unit.to_string();
        });
    }

    /// `completed` documents indexed; logged every [`PROGRESS_LOG_DOCS`].
    pub(crate) fn progress(&self, completed: u64) {
        let mut log = false;
        self.builds.update(&self.index, |s| {
            log = completed / PROGRESS_LOG_DOCS > s.completed / PROGRESS_LOG_DOCS;
            s.completed = completed;
        });
        if log {
            info!(table = %self.table, index = %self.index, documents = completed, "index build progress");
        }
    }
}

#[async_trait::async_trait]
impl IndexBuildProgress for BuildReport {
    async fn stage_start(&self, stage: &str, total: Option<u64>, unit: &str) -> lance::Result<()> {
        self.stage(stage, total, unit);
        Ok(())
    }

    async fn stage_progress(&self, _stage: &str, completed: u64) -> lance::Result<()> {
        self.builds.update(&self.index, |s| s.completed = completed);
        Ok(())
    }

    async fn stage_complete(&self, stage: &str) -> lance::Result<()> {
        self.builds.update(&self.index, |s| {
            s.stage = format!("{stage} done");
            if let Some(total) = s.total {
                s.completed = total;
            }
        });
        Ok(())
    }
}

/// Trains `def` on every row of `ds` (a new Lance version). `rows` is the live row count.
pub(crate) async fn build(
    ds: &mut Dataset,
    def: &IndexDef,
    rows: u64,
    table: &str,
    builds: &Arc<Builds>,
) -> Result<()> {
    let dims = vector_dims(ds, &def.column)?;
    let params = def.params(rows, dims);
    let started = Instant::now();
    builds.update(&def.name, |s| s.stage = "starting".into());
    let progress = Arc::new(BuildReport::new(table, &def.name, builds));
    let result = ds
        .create_index_builder(&[def.column.as_str()], def.lance_index_type(), &params)
        .name(def.name.clone())
        .replace(true)
        .progress(progress)
        .await;
    builds.finish(&def.name);
    result?;
    info!(
        table, index = %def.name, method = def.method.name(), lance = def.method.lance_type(), rows,
        ms = started.elapsed().as_millis() as u64, "vector index built"
    );
    Ok(())
}

/// After a compaction appended rows to `ds`: indexes the new rows of every built index
/// (a delta over the new fragments) and builds the declared ones the base now has rows
/// enough for. Returns the definitions with `built` brought up to date.
pub(crate) async fn refresh(
    ds: &mut Dataset,
    defs: &[IndexDef],
    rows: u64,
    table: &str,
    builds: &Arc<Builds>,
) -> Result<Vec<IndexDef>> {
    let mut out = defs.to_vec();
    let built: Vec<String> = defs.iter().filter(|d| d.built).map(|d| d.name.clone()).collect();
    if !built.is_empty() {
        let started = Instant::now();
        let options = OptimizeOptions::new().index_names(built.clone());
        ds.optimize_indices(&options).await?;
        info!(table, indexes = ?built, ms = started.elapsed().as_millis() as u64, "vector indexes extended");
    }
    if rows >= MIN_ROWS_TO_BUILD {
        for def in out.iter_mut().filter(|d| !d.built) {
            build(ds, def, rows, table, builds).await?;
            def.built = true;
        }
    }
    Ok(out)
}

/// Removes the Lance index `name` from `ds` (a new version), if it was built.
pub(crate) async fn drop_built(ds: &mut Dataset, def: &IndexDef) -> Result<()> {
    if def.built {
        ds.drop_index(&def.name).await?;
    }
    Ok(())
}

fn vector_dims(ds: &Dataset, column: &str) -> Result<usize> {
    let field = ds.schema().field(column).ok_or_else(|| StorageError::Unsupported {
        message: format!("column \"{column}\" does not exist"),
    })?;
    match field.data_type() {
        arrow::datatypes::DataType::FixedSizeList(item, dims)
            if item.data_type() == &arrow::datatypes::DataType::Float32 =>
        {
            Ok(dims as usize)
        }
        other => Err(StorageError::Unsupported {
            message: format!("column \"{column}\" has type {other}; vector indexes need a vector column"),
        }),
    }
}

/// An index that lives in the Lance base, as `CREATE INDEX` declares it.
pub(crate) enum BaseIndex {
    Vector(IndexDef),
    Scalar(crate::scalar_index::ScalarIndexDef),
}

impl BaseIndex {
    fn name(&self) -> &str {
        match self {
            BaseIndex::Vector(def) => &def.name,
            BaseIndex::Scalar(def) => &def.name,
        }
    }

    /// Refuses what cannot be built on this base: a vector index on another column
    /// than a vector, a second scalar index on a column, any on a Parquet base.
    fn check(&self, snapshot: &crate::table::Snapshot) -> Result<()> {
        let BaseSnapshot::Lance(base) = &snapshot.base else {
            let kind = match self {
                BaseIndex::Vector(_) => "vector",
                BaseIndex::Scalar(def) => def.kind.method(),
            };
            return Err(StorageError::Unsupported {
                message: format!("{kind} indexes need a table stored as lance (USING lance)"),
            });
        };
        match self {
            BaseIndex::Vector(def) => vector_dims(base, &def.column).map(|_| ()),
            BaseIndex::Scalar(def) => crate::scalar_index::check_columns_free(def, &snapshot.manifest),
        }
    }

    /// Builds the index on `head` when the base has rows for it (a vector index
    /// [`MIN_ROWS_TO_BUILD`], a scalar one any); else a later compaction does.
    async fn build(
        &mut self,
        head: &mut Dataset,
        rows: u64,
        table: &str,
        builds: &Arc<Builds>,
    ) -> Result<()> {
        match self {
            BaseIndex::Vector(def) if rows >= MIN_ROWS_TO_BUILD => {
                build(head, def, rows, table, builds).await?;
                def.built = true;
            }
            BaseIndex::Scalar(def) if head.count_rows(None).await? > 0 => {
                crate::scalar_index::build(head, def, table, builds).await?;
                def.built = true;
            }
            _ => {}
        }
        Ok(())
    }

    fn declare(self, manifest: &mut Manifest) {
        match self {
            BaseIndex::Vector(def) => manifest.indexes.push(def),
            BaseIndex::Scalar(def) => manifest.scalar_indexes.push(def),
        }
    }
}

impl Table {
    /// The build of index `name` under way, if any.
    pub fn index_build(&self, name: &str) -> Option<BuildStatus> {
        self.builds.status(name)
    }

    /// The bm25 indexes a `CREATE INDEX` is building, as declared, with their builds.
    pub fn text_indexes_creating(&self) -> Vec<(crate::text_index::TextIndexDef, BuildStatus)> {
        self.builds.creating().into_iter().filter_map(|b| Some((b.creating.clone()?, b))).collect()
    }

    /// `CREATE INDEX`: declares `def` and trains it on the base now if the base has
    /// rows enough ([`MIN_ROWS_TO_BUILD`]). A primary-key table is compacted first, so
    /// the index covers every row committed before the statement. Returns false when
    /// an index of that name exists and `if_not_exists` was given.
    pub async fn create_index(self: &Arc<Self>, def: IndexDef, if_not_exists: bool) -> Result<bool> {
        self.create_base_index(BaseIndex::Vector(def), if_not_exists).await
    }

    /// `CREATE INDEX` of an index in the Lance base (vector or scalar): built beside
    /// running writes for a primary-key table (compacted first), under the writer
    /// lock for others.
    pub(crate) async fn create_base_index(
        self: &Arc<Self>,
        def: BaseIndex,
        if_not_exists: bool,
    ) -> Result<bool> {
        if self.has_primary_key() {
            self.compact().await?;
        }
        let table = self.clone();
        tokio::spawn(async move { table.create_base_index_now(def, if_not_exists).await })
            .await
            .map_err(|e| StorageError::internal(format!("index build task failed: {e}")))?
    }

    async fn create_base_index_now(&self, mut def: BaseIndex, if_not_exists: bool) -> Result<bool> {
        let _compacting = self.compacting.lock().await;
        let snapshot = self.snapshot();
        if snapshot.manifest.has_index(def.name()) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(StorageError::IndexExists { name: def.name().to_string() })
            };
        }
        def.check(&snapshot)?;
        // A primary-key table's base changes only under `compacting` (held): the build
        // runs without the writer lock, and writes go on meanwhile. Other tables write
        // their base directly, so they wait for the build.
        let mut held = if self.has_primary_key() { None } else { Some(self.writer.lock().await) };
        let mut head = match held.as_mut() {
            Some(writer) => self.head(writer, &snapshot).await?,
            None => self.head(&mut *self.writer.lock().await, &snapshot).await?,
        };
        // On failure the head stays out of the writer: the next write re-reads it.
        def.build(&mut head, snapshot.manifest.row_count, &self.name().to_string(), &self.builds).await?;
        let mut writer = match held.take() {
            Some(writer) => writer,
            None => self.writer.lock().await,
        };
        let latest = self.snapshot();
        let mut manifest = latest.manifest.successor();
        manifest.base = BaseRef::Lance { version: head.version().version };
        def.declare(&mut manifest);
        self.manifests.commit(&manifest).await?;
        writer.head = Some(head);
        // Same rows at the same addresses: the change epoch carries over.
        self.publish(manifest, &writer, latest.changes.clone()).await?;
        Ok(true)
    }

    /// `DROP INDEX` (vector, text or scalar).
    pub async fn drop_index(&self, name: &str) -> Result<()> {
        if self.snapshot().manifest.text_indexes.iter().any(|d| d.name == name) {
            return self.drop_text_index(name).await;
        }
        let _compacting = self.compacting.lock().await;
        let mut writer = self.writer.lock().await;
        let snapshot = self.snapshot();
        let vector = snapshot.manifest.indexes.iter().find(|d| d.name == name).cloned();
        let scalar = snapshot.manifest.scalar_indexes.iter().find(|d| d.name == name).cloned();
        if vector.is_none() && scalar.is_none() {
            return Err(StorageError::IndexNotFound { name: name.to_string() });
        }
        let mut head = self.head(&mut writer, &snapshot).await?;
        if let Some(def) = &vector {
            drop_built(&mut head, def).await?;
        }
        if let Some(def) = &scalar {
            crate::scalar_index::drop_built(&mut head, def).await?;
        }
        let mut manifest = snapshot.manifest.successor();
        manifest.base = BaseRef::Lance { version: head.version().version };
        manifest.indexes.retain(|d| d.name != name);
        manifest.scalar_indexes.retain(|d| d.name != name);
        self.manifests.commit(&manifest).await?;
        writer.head = Some(head);
        self.publish(manifest, &writer, snapshot.changes.clone()).await?;
        info!(table = %self.name(), index = name, "index dropped");
        Ok(())
    }

    /// Indexes the rows appended to the base of a table without a primary key since
    /// its indexes were last extended (`VACUUM`). Queries search such rows exactly
    /// until then. Returns false when there was nothing to do.
    pub async fn extend_indexes(&self) -> Result<bool> {
        let vectors = self.extend_lance_indexes().await?;
        let text = self.extend_text_indexes().await?;
        Ok(vectors || text)
    }

    async fn extend_lance_indexes(&self) -> Result<bool> {
        if self.has_primary_key() {
            return Ok(false);
        }
        let _compacting = self.compacting.lock().await;
        let mut writer = self.writer.lock().await;
        let snapshot = self.snapshot();
        if snapshot.manifest.indexes.is_empty() && snapshot.manifest.scalar_indexes.is_empty() {
            return Ok(false);
        }
        let mut manifest = snapshot.manifest.successor();
        let mut head = self.head(&mut writer, &snapshot).await?;
        let table = self.name().to_string();
        manifest.indexes =
            refresh(&mut head, &manifest.indexes, manifest.row_count, &table, &self.builds).await?;
        manifest.scalar_indexes =
            crate::scalar_index::refresh(&mut head, &manifest.scalar_indexes, &table, &self.builds).await?;
        manifest.base = BaseRef::Lance { version: head.version().version };
        self.manifests.commit(&manifest).await?;
        writer.head = Some(head);
        self.publish(manifest, &writer, None).await?;
        Ok(true)
    }

    /// After an overwrite of the base (the caller holds the writer, whose head is the
    /// new base): trains every declared vector and scalar index anew.
    pub(crate) async fn rebuild_indexes(&self, writer: &mut Writer, manifest: &mut Manifest) -> Result<()> {
        let mut head =
            writer.head.take().ok_or_else(|| StorageError::internal("no head after a base write"))?;
        manifest.indexes.iter_mut().for_each(|d| d.built = false);
        manifest.scalar_indexes.iter_mut().for_each(|d| d.built = false);
        let table = self.name().to_string();
        manifest.indexes =
            refresh(&mut head, &manifest.indexes, manifest.row_count, &table, &self.builds).await?;
        manifest.scalar_indexes =
            crate::scalar_index::refresh(&mut head, &manifest.scalar_indexes, &table, &self.builds).await?;
        manifest.base = BaseRef::Lance { version: head.version().version };
        writer.head = Some(head);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pq_sub_vectors_divide_the_dimension() {
        assert_eq!(pq_sub_vectors(50), 25);
        assert_eq!(pq_sub_vectors(768), 96);
        assert_eq!(pq_sub_vectors(3), 1);
        assert_eq!(pq_sub_vectors(128), 64);
    }

    #[test]
    fn partitions_follow_pgvector_advice() {
        let def = IndexDef::new("i".into(), "v".into(), IndexMethod::IvfFlat, Metric::L2);
        assert_eq!(def.partitions(100_000), 100);
        assert_eq!(def.partitions(500), 1);
        assert_eq!(def.partitions(4_000_000), 2000);
        let declared = IndexDef { lists: Some(7), ..def };
        assert_eq!(declared.partitions(100_000), 7);
    }
}
