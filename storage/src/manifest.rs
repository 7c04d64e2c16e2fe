//! The table manifest: one immutable JSON file per committed version.
//!
//! `<table>/_tarn/manifest/<version, 20 digits>.json`. A commit is one put-if-absent of
//! the next version's file: two writers racing for a version cannot both win, and a
//! version number is never reused. The newest file is the table's state.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::table_def::TableDef;

/// Written into every manifest so a later release can tell which layout it reads.
pub const FORMAT_VERSION: u32 = 1;

/// A committed version of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version(pub u64);

impl Version {
    pub fn next(self) -> Self {
        Version(self.0 + 1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which immutable base files hold the table's rows at this version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum BaseRef {
    /// A version of the Lance dataset in `base/`.
    Lance { version: u64 },
    /// Parquet files in `base/`, in the order they were written.
    Parquet { files: Vec<ParquetFile> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParquetFile {
    /// File name below `base/`.
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub version: Version,
    /// Tells this table from an earlier one of the same name (log records carry it).
    #[serde(default)]
    pub table_id: u64,
    pub table: TableDef,
    pub base: BaseRef,
    /// The last value handed out by each identity column's sequence.
    #[serde(default)]
    pub sequences: BTreeMap<String, i64>,
    /// Rows in the base (for a primary-key table, changes not yet compacted aside).
    pub row_count: u64,
    /// Milliseconds since the Unix epoch.
    pub committed_at_ms: u64,
    /// The table version (sequence number of its last commit) this manifest's files
    /// hold: base plus change files reach it. Later commits are in the write-ahead log.
    #[serde(default)]
    pub seq: u64,
    /// Every change up to this table version is folded into the base.
    #[serde(default)]
    pub folded_seq: u64,
    /// The change files with changes not yet in the base (`max_seq > folded_seq`),
    /// oldest first. A compaction moves the ones it folds to the table's history
    /// ([`crate::retention`]); manifests written before that kept every one here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ChangeFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_compaction: Option<CompactionInfo>,
    /// The base's deletion vector: `deletes/<name>`, a roaring bitmap of the base row
    /// addresses compactions replaced or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes: Option<DeleteFile>,
    /// Vector indexes declared on the table; `built` ones are in the base.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<crate::vector_index::IndexDef>,
    /// BM25 indexes declared on the table, with the segments that cover the base.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub text_indexes: Vec<crate::text_index::TextIndexDef>,
    /// Scalar indexes (`btree`, `bitmap`, `brin`, `bloom`) declared on the table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scalar_indexes: Vec<crate::scalar_index::ScalarIndexDef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteFile {
    pub name: String,
    /// Base rows it marks deleted.
    pub rows: u64,
}

/// A change file `changes/<bucket>/<name>`, the changes of one bucket from table
/// versions `min_seq..=max_seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeFile {
    pub bucket: u32,
    pub name: String,
    pub min_seq: u64,
    pub max_seq: u64,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CompactionInfo {
    pub at_ms: u64,
    pub duration_ms: u64,
    /// Change rows folded into the base.
    pub rows: u64,
}

impl Manifest {
    /// Whether the table has an index (of any kind) named `name`.
    pub fn has_index(&self, name: &str) -> bool {
        self.indexes.iter().any(|d| d.name == name)
            || self.text_indexes.iter().any(|d| d.name == name)
            || self.scalar_indexes.iter().any(|d| d.name == name)
    }

    pub fn first(table: TableDef, base: BaseRef) -> Self {
        Manifest {
            format_version: FORMAT_VERSION,
            version: Version(1),
            table_id: new_table_id(),
            table,
            base,
            sequences: BTreeMap::new(),
            row_count: 0,
            committed_at_ms: now_ms(),
            seq: 1,
            folded_seq: 1,
            changes: Vec::new(),
            last_compaction: None,
            deletes: None,
            indexes: Vec::new(),
            text_indexes: Vec::new(),
            scalar_indexes: Vec::new(),
        }
    }

    /// The manifest of the next version: same content, to be changed by the caller.
    pub fn successor(&self) -> Self {
        Manifest { version: self.version.next(), committed_at_ms: now_ms(), ..self.clone() }
    }

    /// What this version reads below the table's folder besides the Lance base (Lance
    /// keeps its own versions): change files, the deletion vector, Parquet base files
    /// and BM25 segments (folders).
    pub(crate) fn files(&self) -> BTreeSet<Path> {
        let mut files = BTreeSet::new();
        for file in &self.changes {
            files.insert(Path::from("changes").join(file.bucket.to_string()).join(file.name.as_str()));
        }
        if let Some(deletes) = &self.deletes {
            files.insert(Path::from("deletes").join(deletes.name.as_str()));
        }
        if let BaseRef::Parquet { files: parts } = &self.base {
            files.extend(parts.iter().map(|f| Path::from("base").join(f.name.as_str())));
        }
        for index in &self.text_indexes {
            for segment in &index.segments {
                files.insert(Path::from("text").join(index.name.as_str()).join(segment.id.as_str()));
            }
        }
        files
    }

    /// The oldest table version this manifest can show: its base's for a primary-key
    /// table (changes after it are in its change files), its own otherwise.
    pub(crate) fn reaches_back_to(&self) -> u64 {
        if self.table.primary_key.is_empty() {
            self.seq
        } else {
            self.folded_seq
        }
    }
}

/// A table id no other table of this warehouse has had: the creation time in
/// nanoseconds, mixed with a process-wide counter.
fn new_table_id() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos.wrapping_add(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) | 1
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Reads and commits the manifests of one table.
#[derive(Debug, Clone)]
pub struct ManifestStore {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    /// Passed by every commit: only the lease's holder commits ([`crate::lease`]).
    fence: Arc<crate::lease::Fence>,
}

impl ManifestStore {
    pub fn new(location: &crate::io::Location, table_dir: &Path) -> Self {
        Self {
            store: location.store().clone(),
            dir: table_dir.clone().join("_tarn").join("manifest"),
            fence: location.fence().clone(),
        }
    }

    fn path_of(&self, version: Version) -> Path {
        self.dir.clone().join(format!("{:020}.json", version.0))
    }

    /// All committed versions, oldest first.
    pub async fn versions(&self) -> Result<Vec<Version>> {
        Self::listed(self.store.list(Some(&self.dir))).await
    }

    /// The newest committed version, or `None` when the folder holds no committed
    /// table. Given `known` (a version this process read), only the manifests after it
    /// are listed, so a replica's poll costs the same however much history the table
    /// keeps; if `known` is gone (the table was dropped), all are.
    pub async fn newest(&self, known: Option<Version>) -> Result<Option<Version>> {
        if let Some(known) = known {
            let path = self.path_of(known);
            if let Some(&newest) =
                Self::listed(self.store.list_with_offset(Some(&self.dir), &path)).await?.last()
            {
                return Ok(Some(newest));
            }
            match self.store.head(&path).await {
                Ok(_) => return Ok(Some(known)),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(self.versions().await?.last().copied())
    }

    /// The versions of listed manifests, oldest first.
    async fn listed(
        listing: futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>,
    ) -> Result<Vec<Version>> {
        let mut versions: Vec<Version> = listing
            .map_ok(|meta| meta.location)
            .try_filter_map(|path| async move {
                Ok(path
                    .filename()
                    .and_then(|name| name.strip_suffix(".json"))
                    .and_then(|digits| digits.parse::<u64>().ok())
                    .map(Version))
            })
            .try_collect()
            .await?;
        versions.sort();
        Ok(versions)
    }

    pub async fn read(&self, version: Version) -> Result<Manifest> {
        let path = self.path_of(version);
        let bytes = self.store.get(&path).await?.bytes().await?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| StorageError::CorruptManifest { path: path.to_string(), message: e.to_string() })?;
        if manifest.format_version > FORMAT_VERSION {
            return Err(StorageError::CorruptManifest {
                path: path.to_string(),
                message: format!(
                    "written by a newer Tarn (format {}, this build reads up to {FORMAT_VERSION})",
                    manifest.format_version
                ),
            });
        }
        Ok(manifest)
    }

    /// Commits `manifest` as its version. Fails with [`StorageError::CommitConflict`]
    /// if that version exists already. Durable when it returns (the store fsyncs).
    pub async fn commit(&self, manifest: &Manifest) -> Result<()> {
        let json = serde_json::to_vec_pretty(manifest)
            .map_err(|e| StorageError::internal(format!("serializing manifest: {e}")))?;
        self.fence.check()?;
        let options = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self
            .store
            .put_opts(&self.path_of(manifest.version), PutPayload::from(Bytes::from(json)), options)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(StorageError::CommitConflict {
                table: manifest.table.name.clone(),
                version: manifest.version.0,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes one version's manifest (history retention: the oldest go first).
    pub(crate) async fn delete(&self, version: Version) -> Result<()> {
        crate::io::delete_if_present(&self.store, &self.path_of(version)).await
    }

    /// The newest of `versions` (oldest first) whose manifest satisfies `holds`, a
    /// condition true for every version up to some point and false after it; reads
    /// O(log n) manifests.
    pub(crate) async fn newest_where(
        &self,
        versions: &[Version],
        holds: impl Fn(&Manifest) -> bool,
    ) -> Result<Option<Manifest>> {
        let (mut low, mut high) = (0, versions.len());
        let mut found = None;
        while low < high {
            let mid = low + (high - low) / 2;
            let manifest = self.read(versions[mid]).await?;
            if holds(&manifest) {
                found = Some(manifest);
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        Ok(found)
    }

    /// Deletes every manifest, oldest first, so that until the last one goes the folder
    /// still reads as the newest committed state, never as an older one.
    pub async fn delete_all(&self) -> Result<()> {
        for version in self.versions().await? {
            self.store.delete(&self.path_of(version)).await?;
        }
        Ok(())
    }
}
