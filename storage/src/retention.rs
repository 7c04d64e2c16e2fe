//! What a table keeps of its past, and the vacuum that deletes the rest.
//!
//! - **History**: a compaction moves the change files it folds out of the manifest
//!   into a history record, `_tarn/history/<min>-<max>.json` (the files, oldest first),
//!   so a manifest names only live files and costs the same to write in a table's
//!   first hour and its thousandth. The change feed reads the records it needs.
//! - **Retention** (`history_retention`, per table or the warehouse's default): the
//!   oldest version kept is the one that was current at `now - retention` (time travel
//!   reaches every moment of the window); older ones go unless a reader still holds
//!   them: every manifest a snapshot was made of is [`Pins`]'d by a weak reference, so
//!   a query that took a snapshot keeps its version's files until it lets go (and only
//!   that version's: a session idle on an old snapshot holds back nothing else).
//! - **Vacuum** ([`Table::vacuum_history`]): the files that the versions it deletes
//!   read and the kept ones do not (files are immutable, and once a version stops
//!   reading a file no later one reads it again), the history records of changes the
//!   oldest kept version has folded, those manifests, and the Lance versions before its
//!   base but those of held versions (Lance's `cleanup_old_versions`, which also drops
//!   data and index files no kept version reads). Its plan is written first (`_tarn/vacuum.json`), manifests go
//!   before files, and a vacuum that died half way is finished by the next one: a
//!   manifest never outlives the files it names.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use lance::dataset::builder::DatasetBuilder;
use lance::dataset::cleanup::{cleanup_old_versions, CleanupPolicy};
use lance::index::DatasetIndexExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use crate::error::{Result, StorageError};
use crate::failpoint::failpoint;
use crate::io::{delete_if_present, delete_prefix};
use crate::manifest::{now_ms, BaseRef, ChangeFile, Manifest, Version};
use crate::table::{BaseSnapshot, Table};

/// History retention when neither the table nor the warehouse names one.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// How often the background task vacuums a table's history.
pub const VACUUM_INTERVAL: Duration = Duration::from_secs(60);

/// The manifests snapshots were made of, held weakly: one still alive is a reader's.
#[derive(Debug, Default)]
pub(crate) struct Pins {
    held: Mutex<Vec<Weak<Manifest>>>,
}

impl Pins {
    /// Remembers a manifest readers may hold (a replaced current one, a time travel's).
    pub(crate) fn add(&self, manifest: &Arc<Manifest>) {
        let mut held = self.held.lock().expect("pins lock");
        if held.len() >= 64 {
            held.retain(|weak| weak.strong_count() > 0);
        }
        held.push(Arc::downgrade(manifest));
    }

    /// The versions readers still hold.
    pub(crate) fn held(&self) -> BTreeSet<Version> {
        let mut held = self.held.lock().expect("pins lock");
        held.retain(|weak| weak.strong_count() > 0);
        held.iter().filter_map(|weak| weak.upgrade()).map(|m| m.version).collect()
    }
}

/// What [`Table::vacuum_history`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vacuumed {
    /// Manifests (versions) deleted.
    pub versions: u64,
    /// Change files, deletion vectors, Parquet base files, BM25 segments and history
    /// records deleted.
    pub files: u64,
    /// Lance versions deleted, and the bytes Lance freed.
    pub lance_versions: u64,
    pub lance_bytes: u64,
}

impl std::ops::AddAssign for Vacuumed {
    fn add_assign(&mut self, other: Vacuumed) {
        self.versions += other.versions;
        self.files += other.files;
        self.lance_versions += other.lance_versions;
        self.lance_bytes += other.lance_bytes;
    }
}

/// What [`Table::storage_usage`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageUsage {
    /// Bytes of every file below the table's folder.
    pub bytes: u64,
    /// Bytes of the files its newest version reads.
    pub live_bytes: u64,
    /// Manifest versions kept.
    pub versions: u64,
    /// The oldest table version time travel reaches.
    pub oldest_version: u64,
}

/// The files of a Lance dataset's newest version, by the names they have in it.
#[derive(Default)]
struct LanceLive {
    /// Data file names without `.lance` (blob files are in a folder of that name).
    data: BTreeSet<String>,
    /// `<fragment>-<read version>-<id>.` of deletion files.
    deletions: BTreeSet<String>,
    indexes: BTreeSet<String>,
    manifest: Option<String>,
    transaction: Option<String>,
}

impl LanceLive {
    /// Whether the newest version reads `path` (below the dataset's folder).
    fn reads(&self, path: &str) -> bool {
        let (folder, rest) = path.split_once('/').unwrap_or(("", path));
        let first = rest.split('/').next().unwrap_or(rest);
        match folder {
            "data" => self.data.contains(first.strip_suffix(".lance").unwrap_or(first)),
            "_deletions" => self.deletions.iter().any(|d| rest.starts_with(d.as_str())),
            "_indices" => self.indexes.contains(first),
            // Lance's hint of its newest version is read with it.
            "_versions" => self.manifest.as_deref() == Some(rest) || rest == "latest_version_hint.json",
            "_transactions" => self.transaction.as_deref() == Some(rest),
            _ => false,
        }
    }
}

/// A vacuum's plan, written before it deletes anything.
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    /// Manifests to delete, oldest first.
    manifests: Vec<Version>,
    /// Paths below the table's folder; each a file or a folder (BM25 segments).
    files: Vec<String>,
    /// Lance versions before this one go,
    lance_before: Option<u64>,
    /// but these (readers hold them).
    #[serde(default)]
    lance_held: Vec<u64>,
}

fn plan_path(dir: &Path) -> Path {
    dir.clone().join("_tarn").join("vacuum.json")
}

fn history_dir(dir: &Path) -> Path {
    dir.clone().join("_tarn").join("history")
}

/// `(min_seq, max_seq)` of a history record's name.
fn record_range(path: &Path) -> Option<(u64, u64)> {
    let (min, max) = path.filename()?.strip_suffix(".json")?.split_once('-')?;
    Some((min.parse().ok()?, max.parse().ok()?))
}

impl Table {
    /// Writes the history record of the change files a compaction folds; before its
    /// manifest commits (a record a crash left without one lists files the next
    /// compaction's record lists again: readers take each file once).
    pub(crate) async fn write_history(&self, folded: &[ChangeFile]) -> Result<()> {
        let (Some(min), Some(max)) =
            (folded.iter().map(|f| f.min_seq).min(), folded.iter().map(|f| f.max_seq).max())
        else {
            return Ok(());
        };
        let json = serde_json::to_vec(folded).map_err(|e| StorageError::internal(format!("history: {e}")))?;
        let path = history_dir(&self.dir).join(format!("{min:020}-{max:020}.json"));
        self.location.store().put(&path, PutPayload::from(Bytes::from(json))).await?;
        Ok(())
    }

    /// The table's history records, with the range of versions each holds.
    async fn history_records(&self) -> Result<Vec<(Path, (u64, u64))>> {
        let records: Vec<Path> = self
            .location
            .store()
            .list(Some(&history_dir(&self.dir)))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        Ok(records.into_iter().filter_map(|path| Some((path.clone(), record_range(&path)?))).collect())
    }

    /// The folded change files that hold changes of versions `from` and later (those
    /// still live are the manifest's).
    pub(crate) async fn history_files(&self, from: u64) -> Result<Vec<ChangeFile>> {
        let store = self.location.store();
        let mut files = Vec::new();
        for (path, (_, max)) in self.history_records().await? {
            if max >= from {
                let bytes = store.get(&path).await?.bytes().await?;
                let record: Vec<ChangeFile> = serde_json::from_slice(&bytes)
                    .map_err(|e| StorageError::internal(format!("history record {path}: {e}")))?;
                files.extend(record);
            }
        }
        Ok(files)
    }

    /// The manifest versions time travel may read, oldest first.
    async fn kept_versions(&self) -> Result<Vec<Version>> {
        let floor = *self.history_floor.read().await;
        Ok(self.manifests.versions().await?.into_iter().filter(|v| *v >= floor).collect())
    }

    /// The oldest manifest time travel may read (`None` only when none is left: the
    /// table was dropped).
    pub(crate) async fn oldest_manifest(&self) -> Result<Option<Manifest>> {
        match self.kept_versions().await?.first() {
            Some(&oldest) => Ok(Some(self.manifests.read(oldest).await?)),
            None => Ok(None),
        }
    }

    /// The oldest table version time travel can still reach, and how many manifest
    /// versions are kept.
    pub async fn history_extent(&self) -> Result<(u64, u64)> {
        let versions = self.kept_versions().await?;
        let oldest = match versions.first() {
            Some(&oldest) => self.manifests.read(oldest).await?.reaches_back_to().max(1),
            None => self.snapshot().seq,
        };
        Ok((oldest, versions.len() as u64))
    }

    /// What the table's files take on storage: all of them, and those its newest
    /// version reads (the rest is history kept for time travel, or garbage a vacuum
    /// will delete); how many versions are kept and the oldest one time travel reaches.
    pub async fn storage_usage(&self) -> Result<StorageUsage> {
        let snapshot = self.snapshot();
        let manifest = &snapshot.manifest;
        let mut live: BTreeSet<String> = manifest.files().into_iter().map(|p| p.to_string()).collect();
        live.insert(format!("_tarn/manifest/{:020}.json", manifest.version.0));
        let mut lance = LanceLive::default();
        if let BaseSnapshot::Lance(ds) = &snapshot.base {
            for fragment in ds.get_fragments() {
                let meta = fragment.metadata();
                for file in &meta.files {
                    let name = file.path.rsplit('/').next().unwrap_or(&file.path);
                    lance.data.insert(name.strip_suffix(".lance").unwrap_or(name).to_string());
                }
                if let Some(deletion) = &meta.deletion_file {
                    lance.deletions.insert(format!("{}-{}-{}.", meta.id, deletion.read_version, deletion.id));
                }
            }
            lance.indexes = ds.load_indices().await?.iter().map(|i| i.uuid.to_string()).collect();
            lance.manifest = ds.manifest_location().path.filename().map(str::to_string);
            lance.transaction = ds.manifest().transaction_file.clone();
        }
        let prefix = format!("{}/", self.dir);
        let objects: Vec<object_store::ObjectMeta> =
            self.location.store().list(Some(&self.dir)).try_collect().await?;
        let mut usage = StorageUsage::default();
        for object in objects {
            let Some(path) = object.location.as_ref().strip_prefix(&prefix) else { continue };
            usage.bytes += object.size;
            let reads = match path.strip_prefix("base/") {
                Some(base) if matches!(snapshot.base, BaseSnapshot::Lance(_)) => lance.reads(base),
                _ => {
                    live.contains(path)
                        || live.iter().any(|l| l.starts_with("text/") && path.starts_with(&format!("{l}/")))
                }
            };
            if reads {
                usage.live_bytes += object.size;
            }
        }
        (usage.oldest_version, usage.versions) = self.history_extent().await?;
        Ok(usage)
    }

    /// Deletes what no version within `retention` and no reader needs (see the
    /// module's comment). Runs with compactions held off.
    pub async fn vacuum_history(&self, retention: Duration) -> Result<Vacuumed> {
        self.location.fence().check()?;
        let _one = self.compacting.lock().await;
        let mut done = self.finish_vacuum().await?;
        let versions = self.manifests.versions().await?;
        let horizon = now_ms().saturating_sub(retention.as_millis() as u64);
        let plan = {
            // Time travel waits while the oldest kept version is chosen, so it cannot
            // take a snapshot of a version this vacuum is about to delete.
            let mut floor = self.history_floor.write().await;
            let current = self.snapshot().manifest.version;
            let by_time = self.manifests.newest_where(&versions, |m| m.committed_at_ms <= horizon).await?;
            let Some(by_time) = by_time else { return Ok(done) };
            let kept = by_time.version.min(current);
            // Older versions a reader holds stay (only those: an idle session's
            // snapshot does not hold back the versions after it).
            let pinned: BTreeSet<Version> = self.pins.held().into_iter().filter(|v| *v < kept).collect();
            let old: Vec<Version> =
                versions.iter().copied().filter(|v| *v < kept && !pinned.contains(v)).collect();
            if old.is_empty() {
                return Ok(done);
            }
            let mut held = vec![self.manifests.read(kept).await?];
            for &version in &pinned {
                held.push(self.manifests.read(version).await?);
            }
            let plan = self.plan(&old, &held).await?;
            *floor = kept;
            plan
        };
        let json =
            serde_json::to_vec(&plan).map_err(|e| StorageError::internal(format!("vacuum plan: {e}")))?;
        self.location.store().put(&plan_path(&self.dir), PutPayload::from(Bytes::from(json))).await?;
        failpoint("vacuum-after-plan");
        done += self.carry_out(plan).await?;
        info!(table = %self.name(), ?done, "vacuumed history");
        Ok(done)
    }

    /// What deleting versions `old` leaves the versions `held` without: the oldest one
    /// kept, then those readers hold.
    async fn plan(&self, old: &[Version], held: &[Manifest]) -> Result<Plan> {
        let kept = &held[0];
        let keep: BTreeSet<Path> = held.iter().flat_map(Manifest::files).collect();
        let mut garbage = BTreeSet::new();
        for &version in old {
            let manifest = self.manifests.read(version).await?;
            garbage.extend(manifest.files().into_iter().filter(|f| !keep.contains(f)));
        }
        // History records of changes the kept version has folded: no kept version reads
        // them, and the change feed reaches no further back than the kept version.
        let table_prefix = format!("{}/", self.dir);
        for (record, (_, max)) in self.history_records().await? {
            if max <= kept.folded_seq {
                if let Some(relative) = record.as_ref().strip_prefix(&table_prefix) {
                    garbage.insert(Path::from(relative));
                }
            }
        }
        let lance_version = |m: &Manifest| match m.base {
            BaseRef::Lance { version } => Some(version),
            BaseRef::Parquet { .. } => None,
        };
        Ok(Plan {
            manifests: old.to_vec(),
            files: garbage.into_iter().map(|p| p.to_string()).collect(),
            lance_before: lance_version(kept),
            lance_held: held.iter().filter_map(lance_version).collect(),
        })
    }

    /// Carries out the plan a vacuum that died half way left behind, if any.
    async fn finish_vacuum(&self) -> Result<Vacuumed> {
        let path = plan_path(&self.dir);
        let bytes = match self.location.store().get(&path).await {
            Ok(found) => found.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vacuumed::default()),
            Err(e) => return Err(e.into()),
        };
        let plan: Plan = serde_json::from_slice(&bytes)
            .map_err(|e| StorageError::internal(format!("vacuum plan {path}: {e}")))?;
        info!(table = %self.name(), "finishing a vacuum that stopped half way");
        if let Some(&newest) = plan.manifests.last() {
            let mut floor = self.history_floor.write().await;
            *floor = (*floor).max(newest.next());
        }
        self.carry_out(plan).await
    }

    /// Manifests first (oldest first), so none is left naming a deleted file; then the
    /// files and Lance's old versions; the plan last.
    async fn carry_out(&self, plan: Plan) -> Result<Vacuumed> {
        let mut done = Vacuumed::default();
        for &version in &plan.manifests {
            self.manifests.delete(version).await?;
            done.versions += 1;
        }
        failpoint("vacuum-after-manifests");
        let store = self.location.store();
        for file in &plan.files {
            let path: Path = self.dir.parts().chain(Path::from(file.as_str()).parts()).collect();
            if file.starts_with("text/") {
                delete_prefix(store, &path).await?;
            } else {
                delete_if_present(store, &path).await?;
            }
            done.files += 1;
        }
        if let Some(before) = plan.lance_before {
            let uri = self.location.uri_of(&self.dir.clone().join("base"));
            let dataset = DatasetBuilder::from_uri(uri).with_session(self.session.clone()).load().await?;
            let gone: std::collections::HashSet<u64> = dataset
                .versions()
                .await?
                .into_iter()
                .map(|v| v.version)
                .filter(|v| *v < before && !plan.lance_held.contains(v))
                .collect();
            if !gone.is_empty() {
                // Files written but not yet committed (a write under way) are Lance's
                // "unverified" ones: it keeps them.
                let policy = CleanupPolicy {
                    before_version: Some(before),
                    versions: Some(gone),
                    ..CleanupPolicy::default()
                };
                let removed = cleanup_old_versions(&dataset, policy).await?;
                done.lance_versions = removed.old_versions;
                done.lance_bytes = removed.bytes_removed;
            }
        }
        delete_if_present(store, &plan_path(&self.dir)).await?;
        debug!(table = %self.name(), ?done, "vacuum carried out");
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_hold_what_readers_hold() {
        let pins = Pins::default();
        let def = crate::table_def::TableDef {
            name: crate::table_def::TableName::new("public", "t"),
            schema: Arc::new(arrow::datatypes::Schema::empty()),
            columns: Vec::new(),
            primary_key: Vec::new(),
            format: crate::table_def::BaseFormat::Parquet,
            bucket_count: 1,
            options: Default::default(),
            comments: Default::default(),
        };
        let first = Arc::new(Manifest::first(def, BaseRef::Parquet { files: Vec::new() }));
        let second = Arc::new(first.successor());
        pins.add(&first);
        pins.add(&second);
        assert_eq!(pins.held(), BTreeSet::from([Version(1), Version(2)]));
        drop(first);
        assert_eq!(pins.held(), BTreeSet::from([Version(2)]));
        drop(second);
        assert!(pins.held().is_empty());
    }

    #[test]
    fn history_records_name_their_range() {
        let path = Path::from("public/t/_tarn/history/00000000000000000003-00000000000000000017.json");
        assert_eq!(record_range(&path), Some((3, 17)));
        assert_eq!(record_range(&Path::from("public/t/_tarn/history/notes.txt")), None);
    }
}
