//! The audit trail: every statement the server ran, in warehouse files never rewritten;
//! and the sealed log it is kept in, which the lineage events (`crate::lineage`) share.
//!
//! Records gather in memory and are sealed into a segment, `_tarn/<log>/<seq>.jsonl`
//! (`seq` counting from 1, zero-padded), within a second of the first of them, at 1,000
//! records, and when the server stops: one JSON record per line, then a seal line,
//! `{"seal":{"seq":n,"prev":"<hex>","records":k}}`, where `prev` is the SHA-256 of the
//! previous segment's bytes (64 zeros for the first). A segment is written put-if-absent
//! and never again, so changing a byte of one, removing one or putting one in another's
//! place breaks the chain at the next seal: [`AuditLog::verify`] walks it and names the
//! first segment that does not hold. (The newest segment has no successor to vouch for
//! it: its seal is checked against its own bytes and count only.)
//!
//! What is not sealed yet is lost if the process dies (at most a second of statements);
//! a read-only server keeps no trail (it may not write the warehouse).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::{Result, StorageError};

/// Records per segment at most; a full buffer is sealed at once.
const SEGMENT_RECORDS: usize = 1000;
/// How long a record waits in memory at most.
const SEAL_INTERVAL: Duration = Duration::from_secs(1);
const FIRST_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When it started, microseconds since the Unix epoch.
    pub at_us: i64,
    pub pid: i32,
    pub user: String,
    /// The client's address (`host:port`), or empty for a local socket.
    pub client: String,
    pub application: String,
    /// Its text, literals replaced by `?` when the server redacts them.
    pub statement: String,
    /// `00000` when it succeeded.
    pub sqlstate: String,
    /// Rows returned or written, when the statement has a count.
    pub rows: Option<u64>,
    pub duration_us: i64,
    /// The tables it read and wrote, with their versions (records of older servers
    /// have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableAccess>,
}

/// A table a statement read (at a version) or wrote (making a version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableAccess {
    /// `schema.table`.
    pub table: String,
    pub version: u64,
    pub write: bool,
}

impl std::fmt::Display for TableAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.write { "written" } else { "read" };
        write!(f, "{} v{} {how}", self.table, self.version)
    }
}

#[derive(Serialize, Deserialize)]
struct Seal {
    seq: u64,
    prev: String,
    records: usize,
}

#[derive(Serialize, Deserialize)]
struct SealLine {
    seal: Seal,
}

/// The sealed segments' chain as far as this server wrote it.
struct Head {
    next_seq: u64,
    prev: String,
}

/// A log of records of type `R` in a warehouse folder, sealed segment by segment.
pub struct SealedLog<R> {
    store: Arc<dyn ObjectStore>,
    folder: Path,
    pending: Mutex<Vec<R>>,
    head: tokio::sync::Mutex<Head>,
    wake: Arc<tokio::sync::Notify>,
}

/// What [`AuditLog::verify`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    pub segments: u64,
    pub records: u64,
    /// The first break of the chain, if any.
    pub problem: Option<String>,
}

/// A warehouse's audit trail.
pub type AuditLog = SealedLog<AuditRecord>;

/// The audit trail's folder under `_tarn`.
pub const AUDIT_FOLDER: &str = "audit";

fn segment_path(folder: &Path, seq: u64) -> Path {
    folder.clone().join(format!("{seq:012}.jsonl"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A segment's records and seal, or why it is not one.
fn parse_segment<R: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<(Vec<R>, Seal), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let mut lines: Vec<&str> = text.lines().collect();
    let seal_line = lines.pop().ok_or("empty")?;
    let seal: SealLine = serde_json::from_str(seal_line).map_err(|e| format!("no seal: {e}"))?;
    let records = lines
        .iter()
        .enumerate()
        .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("record {}: {e}", i + 1)))
        .collect::<std::result::Result<Vec<R>, String>>()?;
    Ok((records, seal.seal))
}

impl<R> SealedLog<R>
where
    R: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    /// The log in `_tarn/<name>` of the warehouse in `store`, continuing its newest
    /// segment's chain, with its sealing task started.
    pub async fn open(store: Arc<dyn ObjectStore>, name: &str) -> Result<Arc<Self>> {
        let folder = Path::from("_tarn").join(name);
        let newest = list_segments(store.as_ref(), &folder).await?.into_iter().next_back();
        let head = match newest {
            Some((seq, path)) => {
                let bytes = store.get(&path).await?.bytes().await?;
                Head { next_seq: seq + 1, prev: sha256_hex(&bytes) }
            }
            None => Head { next_seq: 1, prev: FIRST_PREV.to_string() },
        };
        let log = Arc::new(SealedLog {
            store,
            folder,
            pending: Mutex::default(),
            head: tokio::sync::Mutex::new(head),
            wake: Arc::default(),
        });
        let (weak, wake) = (Arc::downgrade(&log), log.wake.clone());
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(SEAL_INTERVAL, wake.notified()).await;
                let Some(log) = weak.upgrade() else { return };
                if let Err(e) = log.seal().await {
                    warn!(error = %e, log = %log.folder, "sealing a segment failed; the records wait for the next try");
                }
            }
        });
        Ok(log)
    }

    /// Adds a record (sealed within a second).
    pub fn record(&self, record: R) {
        let mut pending = self.pending.lock().expect("audit lock");
        pending.push(record);
        if pending.len() >= SEGMENT_RECORDS {
            self.wake.notify_one();
        }
    }

    /// Seals what waits into the next segment (nothing when nothing waits).
    pub async fn seal(&self) -> Result<()> {
        let mut head = self.head.lock().await;
        let records = std::mem::take(&mut *self.pending.lock().expect("audit lock"));
        if records.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for record in &records {
            serde_json::to_writer(&mut bytes, record).map_err(|e| StorageError::internal(e.to_string()))?;
            bytes.push(b'\n');
        }
        let seal =
            SealLine { seal: Seal { seq: head.next_seq, prev: head.prev.clone(), records: records.len() } };
        serde_json::to_writer(&mut bytes, &seal).map_err(|e| StorageError::internal(e.to_string()))?;
        bytes.push(b'\n');
        let hash = sha256_hex(&bytes);
        let put = PutOptions { mode: PutMode::Create, ..Default::default() };
        if let Err(e) = self
            .store
            .put_opts(&segment_path(&self.folder, head.next_seq), PutPayload::from(bytes), put)
            .await
        {
            // Back in front of what came since, for the next try.
            let mut pending = self.pending.lock().expect("audit lock");
            let later = std::mem::replace(&mut *pending, records);
            pending.extend(later);
            return Err(e.into());
        }
        head.next_seq += 1;
        head.prev = hash;
        Ok(())
    }

    /// Every record, sealed and waiting, oldest first, read from the segments each
    /// time (nothing sealed stays in memory). A segment that does not parse is an error
    /// (`verify` says more).
    pub async fn records(&self) -> Result<Vec<R>> {
        let mut all = Vec::new();
        for path in list_segments(self.store.as_ref(), &self.folder).await?.into_values() {
            let bytes = self.store.get(&path).await?.bytes().await?;
            let (records, _) = parse_segment::<R>(&bytes)
                .map_err(|e| StorageError::internal(format!("segment {path}: {e}")))?;
            all.extend(records);
        }
        all.extend(self.pending.lock().expect("audit lock").iter().cloned());
        Ok(all)
    }

    /// Walks the chain of sealed segments from the first: each must parse, carry its
    /// own sequence number and record count, and name the previous one's hash.
    pub async fn verify(&self) -> Result<Verification> {
        // No segment is sealed meanwhile: the listing and this server's head agree.
        let head = self.head.lock().await;
        let mut found = Verification { segments: 0, records: 0, problem: None };
        let mut prev = FIRST_PREV.to_string();
        let mut expected_seq = 1;
        for (seq, path) in list_segments(self.store.as_ref(), &self.folder).await? {
            let bytes = self.store.get(&path).await?.bytes().await?;
            let problem = match parse_segment::<R>(&bytes) {
                Err(e) => Some(format!("segment {seq} is not a sealed segment ({e})")),
                Ok((_, seal)) if seq != expected_seq => Some(format!(
                    "segment {expected_seq} is missing (the next is {seq}, sealed as {})",
                    seal.seq
                )),
                Ok((_, seal)) if seal.seq != seq => {
                    Some(format!("segment {seq} is sealed as segment {}", seal.seq))
                }
                Ok((records, seal)) if seal.records != records.len() => Some(format!(
                    "segment {seq} holds {} records, its seal says {}",
                    records.len(),
                    seal.records
                )),
                Ok((_, seal)) if seal.prev != prev => Some(format!(
                    "segment {seq} does not follow segment {}: its predecessor changed",
                    seq - 1
                )),
                Ok((records, _)) => {
                    found.records += records.len() as u64;
                    None
                }
            };
            found.segments += 1;
            if problem.is_some() {
                found.problem = problem;
                return Ok(found);
            }
            prev = sha256_hex(&bytes);
            expected_seq = seq + 1;
        }
        // The newest segment this server sealed must still be the newest there.
        if head.next_seq > expected_seq {
            found.problem = Some(format!("segments {expected_seq} to {} are missing", head.next_seq - 1));
        } else if head.next_seq == expected_seq && head.prev != prev && expected_seq > 1 {
            found.problem = Some(format!("segment {} changed after it was sealed", expected_seq - 1));
        }
        Ok(found)
    }
}

/// The sealed segments, by sequence number (other files in the folder are ignored).
async fn list_segments(store: &dyn ObjectStore, folder: &Path) -> Result<BTreeMap<u64, Path>> {
    let objects = store.list(Some(folder)).try_collect::<Vec<_>>().await?;
    Ok(objects
        .into_iter()
        .filter_map(|o| {
            let name = o.location.filename()?;
            let seq = name.strip_suffix(".jsonl")?.parse::<u64>().ok()?;
            Some((seq, o.location))
        })
        .collect())
}

impl<R> std::fmt::Debug for SealedLog<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedLog").field("folder", &self.folder).finish_non_exhaustive()
    }
}
