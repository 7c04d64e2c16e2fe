//! One writer per warehouse: the writer's lease, and the fence every commit passes.
//!
//! The writer holds lease number `epoch`: the object `_tarn/lease/<epoch>.json`, made
//! put-if-absent (two processes never hold one epoch) and rewritten every `ttl / 5`
//! with a beat counter. A process that starts to write reads the newest lease:
//!
//! - none, one released at a clean close, or one held by a process that is gone (this
//!   host and this log folder, whose lock the starting process holds now): it makes the
//!   next epoch at once;
//! - else it watches the beat for `ttl`. A beat means a live writer: the start is
//!   refused. Silence means the holder died or is cut off: it makes the next epoch, then
//!   waits `ttl` before writing, by which time the old holder has fenced itself.
//!
//! The fence: after each beat the holder looks for the next epoch's object. It may
//! commit (a manifest, or a log record it acknowledges) only within `ttl` of the start
//! of its last beat that found none: past that its commits are refused (25006) until a
//! beat renews it, and once a successor exists it has lost the lease for good. A beat
//! that started before the successor's object was made may have missed it, but the
//! successor writes only `ttl` after making it, when that beat's window has closed: the
//! two never write at once however their clocks are set (they need only run at about
//! the same rate). A holder that stalls (a slow store, a starved process) for most of
//! `ttl` keeps its lease; a takeover takes `2 * ttl`.
//!
//! A read-only replica holds no lease; its fence refuses every commit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::{Result, StorageError};

/// How long a writer's lease lasts without a beat, unless configured.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// What may commit to a warehouse through this process.
#[derive(Debug, Default)]
pub struct Fence {
    state: Mutex<FenceState>,
}

#[derive(Debug, Default)]
enum FenceState {
    /// No lease taken (a warehouse opened without one, by unit tests of one table).
    #[default]
    Open,
    /// A read-only replica.
    ReadOnly,
    /// The writer, until `valid_until`.
    Leased { epoch: u64, valid_until: Instant },
    /// The writer lost its lease (or closed): no more commits.
    Lost { why: String },
}

impl Fence {
    /// Fails unless this process may commit now.
    pub fn check(&self) -> Result<()> {
        let state = self.state.lock().expect("fence lock");
        match &*state {
            FenceState::Open => Ok(()),
            FenceState::Leased { valid_until, .. } if Instant::now() < *valid_until => Ok(()),
            // Not renewed in time (the store did not answer, or this process stalled):
            // no commit until a renewal finds that no one took over meanwhile.
            FenceState::Leased { epoch, valid_until } => Err(StorageError::ReadOnly {
                message: format!(
                    "the writer lease (epoch {epoch}) has not been renewed for {:?}; commits wait for its renewal",
                    valid_until.elapsed()
                ),
            }),
            FenceState::ReadOnly => Err(StorageError::ReadOnly {
                message: "this server is a read-only replica of the warehouse".into(),
            }),
            FenceState::Lost { why } => Err(lost(why)),
        }
    }

    pub(crate) fn set_read_only(&self) {
        *self.state.lock().expect("fence lock") = FenceState::ReadOnly;
    }

    pub fn is_read_only(&self) -> bool {
        matches!(*self.state.lock().expect("fence lock"), FenceState::ReadOnly)
    }

    /// Extends the lease to `until`, unless it is lost already.
    fn extend(&self, epoch: u64, until: Instant) {
        let mut state = self.state.lock().expect("fence lock");
        match &mut *state {
            FenceState::Leased { epoch: held, valid_until } if *held == epoch => {
                *valid_until = (*valid_until).max(until)
            }
            FenceState::Open => *state = FenceState::Leased { epoch, valid_until: until },
            _ => {}
        }
    }

    fn lose(&self, why: String) {
        warn!("this server stops writing: {why}");
        *self.state.lock().expect("fence lock") = FenceState::Lost { why };
    }
}

fn lost(why: &str) -> StorageError {
    StorageError::ReadOnly { message: format!("this server no longer writes the warehouse: {why}") }
}

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The host's name and machine id.
    pub host: String,
    pub pid: u32,
    /// The holder's write-ahead log folder.
    pub wal_dir: String,
}

impl Holder {
    fn this_process(wal_dir: &std::path::Path) -> Self {
        let read =
            |path: &str| std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default();
        let host = format!("{}/{}", read("/proc/sys/kernel/hostname"), read("/etc/machine-id"));
        let wal_dir = wal_dir.canonicalize().unwrap_or_else(|_| wal_dir.to_path_buf());
        Holder { host, pid: std::process::id(), wal_dir: wal_dir.display().to_string() }
    }

    /// Whether `self` is a process of this host writing the same log folder.
    fn same_log(&self, other: &Holder) -> bool {
        self.host == other.host && self.wal_dir == other.wal_dir
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.host.split('/').next().unwrap_or_default();
        write!(f, "process {} on {host}", self.pid)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseRecord {
    epoch: u64,
    holder: Holder,
    beat: u64,
    /// Set at a clean close: the next writer need not wait.
    released: bool,
}

/// The writer's lease on a warehouse.
#[derive(Debug)]
pub struct WriterLease {
    store: Arc<dyn ObjectStore>,
    fence: Arc<Fence>,
    ttl: Duration,
    record: tokio::sync::Mutex<LeaseRecord>,
}

/// What the writer before this one was.
#[derive(Debug, PartialEq, Eq)]
pub enum Predecessor {
    /// No writer took a lease before.
    None,
    /// This host's process on the same log folder.
    SameLog,
    /// Another process (its log is not this one).
    Other(Holder),
}

fn lease_dir() -> Path {
    Path::from("_tarn").join("lease")
}

fn lease_path(epoch: u64) -> Path {
    lease_dir().join(format!("{epoch:020}.json"))
}

impl WriterLease {
    /// Takes the warehouse's writer lease for this process, whose log is in `wal_dir`
    /// (locked by it), as the module describes; `fence` lets commits through while it is
    /// held. Fails when another writer holds it.
    pub async fn acquire(
        store: Arc<dyn ObjectStore>,
        fence: Arc<Fence>,
        wal_dir: &std::path::Path,
        ttl: Duration,
        url: &str,
    ) -> Result<(Arc<WriterLease>, Predecessor)> {
        let me = Holder::this_process(wal_dir);
        let refused = |message: String| StorageError::InvalidWarehouse { url: url.to_string(), message };
        let newest = newest_lease(&store).await?;
        let mut wait_after = Duration::ZERO;
        let predecessor = match &newest {
            None => Predecessor::None,
            Some(lease) if lease.released || lease.holder.same_log(&me) => {
                if lease.holder.same_log(&me) {
                    Predecessor::SameLog
                } else {
                    Predecessor::Other(lease.holder.clone())
                }
            }
            Some(lease) => {
                info!(holder = %lease.holder, epoch = lease.epoch, "the warehouse has a writer lease; watching it for {ttl:?}");
                let started = Instant::now();
                let mut released = false;
                while started.elapsed() < ttl && !released {
                    tokio::time::sleep(ttl / 10).await;
                    let now = read_lease(&store, lease.epoch).await?;
                    released = now.released;
                    if now.beat != lease.beat && !released {
                        return Err(refused(format!(
                            "another Tarn writes it ({}, lease {}); one writer per warehouse: start this \
                             server with --read-only to serve reads beside it",
                            lease.holder, lease.epoch
                        )));
                    }
                }
                if !released {
                    warn!(holder = %lease.holder, epoch = lease.epoch, "the writer lease was not renewed for {ttl:?}; taking it over");
                    wait_after = ttl;
                }
                Predecessor::Other(lease.holder.clone())
            }
        };
        let epoch = newest.as_ref().map_or(1, |l| l.epoch + 1);
        let record = LeaseRecord { epoch, holder: me, beat: 0, released: false };
        let options = PutOptions { mode: PutMode::Create, ..Default::default() };
        match store.put_opts(&lease_path(epoch), payload(&record)?, options).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(refused(format!(
                    "another Tarn took its writer lease (epoch {epoch}) at the same moment"
                )))
            }
            Err(e) => return Err(e.into()),
        }
        if !wait_after.is_zero() {
            // A beat of the old holder that missed the new epoch lets it commit for ttl at most.
            tokio::time::sleep(wait_after).await;
        }
        let lease = Arc::new(WriterLease { store, fence, ttl, record: tokio::sync::Mutex::new(record) });
        // The first beat opens the fence (unless a successor came meanwhile).
        if !lease.beat().await? {
            return Err(refused(format!(
                "another Tarn took its writer lease (epoch {}) meanwhile",
                epoch + 1
            )));
        }
        let store = &lease.store;
        // Leases before the predecessor's are of no use to anyone.
        if epoch > 2 {
            for old in list_epochs(store).await?.into_iter().filter(|e| *e + 1 < epoch) {
                crate::io::delete_if_present(store, &lease_path(old)).await?;
            }
        }
        info!(epoch, "took the warehouse's writer lease");
        Ok((lease, predecessor))
    }

    /// Renews the lease every `ttl / 5` until it is lost or this process lets go of it.
    pub fn keep(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let every = self.ttl / 5;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(lease) = weak.upgrade() else { return };
                match lease.beat().await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => warn!(error = %e, "could not renew the writer lease"),
                }
            }
        })
    }

    /// One beat. Returns false once the lease is lost or released.
    async fn beat(&self) -> Result<bool> {
        let mut record = self.record.lock().await;
        if record.released {
            return Ok(false);
        }
        let started = Instant::now();
        record.beat += 1;
        self.store.put(&lease_path(record.epoch), payload(&record)?).await?;
        match self.store.head(&lease_path(record.epoch + 1)).await {
            Err(object_store::Error::NotFound { .. }) => {
                self.fence.extend(record.epoch, started + self.ttl);
                Ok(true)
            }
            Ok(_) => {
                self.fence.lose(format!(
                    "another Tarn took over the warehouse's writer lease (epoch {})",
                    record.epoch + 1
                ));
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Lets go of the lease at a clean close (after the last commit): the next writer
    /// need not wait for it to run out.
    pub async fn release(&self) {
        let mut record = self.record.lock().await;
        if record.released || self.fence.check().is_err() {
            return;
        }
        record.released = true;
        *self.fence.state.lock().expect("fence lock") = FenceState::Lost { why: "it closed".into() };
        let written = match payload(&record) {
            Ok(bytes) => self.store.put(&lease_path(record.epoch), bytes).await.map_err(StorageError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            warn!(error = %e, "could not release the writer lease; the next writer waits for it to run out");
        }
    }
}

fn payload(record: &LeaseRecord) -> Result<PutPayload> {
    let json = serde_json::to_vec(record).map_err(|e| StorageError::internal(format!("lease: {e}")))?;
    Ok(PutPayload::from(Bytes::from(json)))
}

async fn list_epochs(store: &Arc<dyn ObjectStore>) -> Result<Vec<u64>> {
    use futures::TryStreamExt;
    let mut epochs: Vec<u64> = store
        .list(Some(&lease_dir()))
        .map_ok(|meta| meta.location)
        .try_filter_map(|path| async move {
            Ok(path.filename().and_then(|n| n.strip_suffix(".json")).and_then(|d| d.parse::<u64>().ok()))
        })
        .try_collect()
        .await?;
    epochs.sort_unstable();
    Ok(epochs)
}

async fn read_lease(store: &Arc<dyn ObjectStore>, epoch: u64) -> Result<LeaseRecord> {
    let path = lease_path(epoch);
    let bytes = store.get(&path).await?.bytes().await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| StorageError::CorruptManifest { path: path.to_string(), message: e.to_string() })
}

async fn newest_lease(store: &Arc<dyn ObjectStore>) -> Result<Option<LeaseRecord>> {
    match list_epochs(store).await?.last() {
        Some(&epoch) => Ok(Some(read_lease(store, epoch).await?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder_store(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap())
    }

    #[tokio::test]
    async fn a_live_lease_refuses_a_second_writer_and_a_silent_one_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = folder_store(dir.path());
        let ttl = Duration::from_millis(600);
        let (wal_a, wal_b) = (dir.path().join("wal-a"), dir.path().join("wal-b"));
        std::fs::create_dir_all(&wal_a).unwrap();
        std::fs::create_dir_all(&wal_b).unwrap();

        let fence_a = Arc::new(Fence::default());
        let (a, before) =
            WriterLease::acquire(store.clone(), fence_a.clone(), &wal_a, ttl, "w").await.unwrap();
        assert_eq!(before, Predecessor::None);
        let keeping = a.keep();
        fence_a.check().unwrap();

        // A second writer (another log folder) sees the beat and refuses.
        let fence_b = Arc::new(Fence::default());
        let refused =
            WriterLease::acquire(store.clone(), fence_b.clone(), &wal_b, ttl, "w").await.unwrap_err();
        assert!(refused.to_string().contains("--read-only"), "{refused}");
        fence_a.check().unwrap();

        // The first stops beating (cut off): the second takes over, and the first's
        // fence closes before the second may commit.
        keeping.abort();
        let (b, before) =
            WriterLease::acquire(store.clone(), fence_b.clone(), &wal_b, ttl, "w").await.unwrap();
        assert!(matches!(before, Predecessor::Other(_)));
        fence_b.check().unwrap();
        let error = fence_a.check().unwrap_err();
        assert!(matches!(error, StorageError::ReadOnly { .. }), "{error}");
        // A late beat of the first finds the successor and keeps it fenced.
        assert!(!a.beat().await.unwrap());
        assert!(fence_a.check().is_err());

        // A clean close releases: the next writer takes over at once.
        b.release().await;
        assert!(fence_b.check().is_err());
        let started = Instant::now();
        let fence_c = Arc::new(Fence::default());
        let (_c, before) =
            WriterLease::acquire(store.clone(), fence_c.clone(), &wal_a, ttl, "w").await.unwrap();
        assert!(matches!(before, Predecessor::Other(_)));
        assert!(started.elapsed() < ttl / 2, "{:?}", started.elapsed());
        assert_eq!(list_epochs(&store).await.unwrap(), vec![2, 3], "older leases are deleted");
    }

    #[tokio::test]
    async fn the_same_log_restarting_takes_its_lease_back_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = folder_store(dir.path());
        let wal = dir.path().join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        let ttl = Duration::from_secs(30);
        let (_crashed, _) =
            WriterLease::acquire(store.clone(), Arc::new(Fence::default()), &wal, ttl, "w").await.unwrap();
        let started = Instant::now();
        let (_again, before) =
            WriterLease::acquire(store.clone(), Arc::new(Fence::default()), &wal, ttl, "w").await.unwrap();
        assert_eq!(before, Predecessor::SameLog);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
