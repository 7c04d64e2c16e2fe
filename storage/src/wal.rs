//! The write-ahead log: a commit is durable once its record is here and fsynced.
//!
//! A log is a folder of segments `<n, 20 digits>.wal`, each a run of records:
//!
//! ```text
//! record = payload length (u32 LE) | CRC-32 of payload (u32 LE) | payload
//! ```
//!
//! One thread owns the open segment. Appenders hand it their payload and wait; it
//! writes everything that queued up while it was busy, fsyncs once, and answers them
//! all (group commit: concurrent committers share one fsync). If an fsync fails the
//! process aborts: after a failed fsync the kernel may have dropped the dirty pages, so
//! retrying could acknowledge data that is gone (PostgreSQL's "fsyncgate").
//!
//! On open, the segments are replayed in order. A torn or corrupt record at the end of
//! the newest segment is a write that never completed (it was never acknowledged): the
//! segment is cut there. Anywhere else it is corruption and opening fails.
//!
//! Callers make the log's content obsolete with [`Wal::rotate`] (start a new segment)
//! and [`Wal::remove_segments_before`] once what the older segments hold is stored
//! elsewhere.
//!
//! In the object store instead (`wal = "object"`, [`Wal::open_in_store`]): each group
//! commit is one object, `_tarn/log/<n, 20 digits>.wal` in the warehouse, with the same
//! records, made put-if-absent (a second writer cannot take a number the first wrote),
//! and a commit is acknowledged once its object is. The warehouse is then the only
//! durable place: a writer taking over from one that died on another machine replays
//! every acknowledged commit. An object's number is its "segment": rotation starts the
//! next one. An object is whole or absent, so a bad record in one is corruption. A put
//! that fails stops the log (its waiting commits fail, and so do later ones) rather
//! than guess whether the object was written.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::sync::oneshot;
use tracing::{error, warn};

use crate::error::{Result, StorageError};

const HEADER: usize = 8;
/// Records larger than this are refused: a length field past it is corruption.
pub const MAX_RECORD_BYTES: usize = 1 << 30;

/// A segment's number; numbers only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentId(pub u64);

enum Request {
    Append { payload: Vec<u8>, done: oneshot::Sender<()> },
    Rotate { done: oneshot::Sender<Result<SegmentId>> },
}

/// Counters, for tests and the system views.
#[derive(Debug, Default)]
pub struct WalStats {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub fsyncs: AtomicU64,
}

pub struct Wal {
    place: Place,
    /// `LOCK` in the log's folder, locked while this process writes the log: a second
    /// process on the same warehouse (or log folder) refuses to start. (A log in the
    /// object store is kept to one writer by the warehouse's lease.)
    lock: Option<std::fs::File>,
    /// `None` once closing; the writer thread ends when every sender is gone.
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    stats: Arc<WalStats>,
}

/// Where a log lives.
#[derive(Debug, Clone)]
enum Place {
    Folder(PathBuf),
    Store(Arc<dyn ObjectStore>),
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("place", &self.place).finish_non_exhaustive()
    }
}

/// The folder of a log in the object store, below the warehouse's root.
fn log_prefix() -> ObjectPath {
    ObjectPath::from("_tarn").join("log")
}

fn log_object(n: u64) -> ObjectPath {
    log_prefix().join(format!("{n:020}.wal"))
}

/// Locks `dir/LOCK` for this process (released when the file closes, or the process
/// dies). A process that stopped a moment ago may still hold it: up to five seconds
/// are given to it.
pub(crate) fn lock_folder(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    let started = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock)
                if started.elapsed() < std::time::Duration::from_secs(5) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StorageError::InvalidWarehouse {
                    url: dir.display().to_string(),
                    message:
                        "its write-ahead log is in use by another Tarn process (one writer per warehouse)"
                            .into(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(&path, e)),
        }
    }
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`. Returns it with the payloads of every
    /// intact record, oldest first.
    pub fn open(dir: &Path) -> Result<(Wal, Vec<Vec<u8>>)> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let lock = lock_folder(dir)?;
        let segments = list_segments(dir)?;
        let mut records = Vec::new();
        for (i, (_, path)) in segments.iter().enumerate() {
            let newest = i + 1 == segments.len();
            read_segment(path, newest, &mut records)?;
        }
        let next = segments.last().map_or(SegmentId(1), |(id, _)| *id);
        let (file, id) = match segments.last() {
            Some((id, path)) => {
                (OpenOptions::new().append(true).open(path).map_err(|e| io_error(path, e))?, *id)
            }
            None => (create_segment(dir, next)?, next),
        };
        let sink = Sink::File { dir: dir.to_path_buf(), file, id };
        let wal = Wal::start(Place::Folder(dir.to_path_buf()), Some(lock), sink)?;
        Ok((wal, records))
    }

    /// Opens the log in the warehouse's object store (see the module). Returns it with
    /// the payloads of every record, oldest first. The caller holds the warehouse's
    /// lease, and `lock` (a local folder's, [`lock_folder`]) if it took one.
    pub async fn open_in_store(
        store: Arc<dyn ObjectStore>,
        lock: Option<File>,
    ) -> Result<(Wal, Vec<Vec<u8>>)> {
        let objects = list_objects(&store).await?;
        let mut records = Vec::new();
        for &(n, _) in &objects {
            let path = log_object(n);
            let bytes = store.get(&path).await?.bytes().await?;
            if let Some(at) = parse_records(&bytes, &mut records) {
                return Err(StorageError::CorruptLog {
                    path: path.to_string(),
                    message: format!("the record at offset {at} fails its checksum"),
                });
            }
        }
        let next = objects.last().map_or(1, |(n, _)| n + 1);
        let sink = Sink::Object { store: store.clone(), runtime: tokio::runtime::Handle::current(), next };
        let wal = Wal::start(Place::Store(store), lock, sink)?;
        Ok((wal, records))
    }

    fn start(place: Place, lock: Option<File>, sink: Sink) -> Result<Wal> {
        let stats = Arc::new(WalStats::default());
        let (tx, rx) = mpsc::channel();
        let writer = {
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("tarn-wal".into())
                .spawn(move || write_loop(sink, rx, stats))
                .map_err(|e| StorageError::internal(format!("starting the log's thread: {e}")))?
        };
        Ok(Wal { place, lock, requests: Some(tx), writer: Some(writer), stats })
    }

    /// Whether the log is in the warehouse's object store.
    pub fn in_store(&self) -> bool {
        matches!(self.place, Place::Store(_))
    }

    /// Lets another process open the log (at a clean close, after the last write).
    pub fn unlock(&self) {
        if let Some(lock) = &self.lock {
            let _ = lock.unlock();
        }
    }

    pub fn stats(&self) -> &WalStats {
        &self.stats
    }

    /// Appends one record; returns once it is on stable storage.
    pub async fn append(&self, payload: Vec<u8>) -> Result<()> {
        self.submit(payload)?.await.map_err(|_| StorageError::internal("the log writer stopped"))
    }

    /// Queues one record: records are written in the order they are submitted. The
    /// receiver answers once the record is on stable storage.
    pub fn submit(&self, payload: Vec<u8>) -> Result<oneshot::Receiver<()>> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(StorageError::Unsupported {
                message: format!("a single commit of {} bytes exceeds the log's record limit", payload.len()),
            });
        }
        let (done, wait) = oneshot::channel();
        self.send(Request::Append { payload, done })?;
        Ok(wait)
    }

    /// Starts a new segment for the records that follow; returns its id. Every record
    /// appended before the call is in an older segment.
    pub async fn rotate(&self) -> Result<SegmentId> {
        let (done, wait) = oneshot::channel();
        self.send(Request::Rotate { done })?;
        wait.await.map_err(|_| StorageError::internal("the log writer stopped"))?
    }

    /// Deletes the segments older than `id` (their records are stored elsewhere now).
    pub async fn remove_segments_before(&self, id: SegmentId) -> Result<()> {
        match &self.place {
            Place::Folder(dir) => {
                for (segment, path) in list_segments(dir)? {
                    if segment < id {
                        std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
                    }
                }
                sync_dir(dir)
            }
            Place::Store(store) => {
                for (n, path) in list_objects(store).await? {
                    if n < id.0 {
                        crate::io::delete_if_present(store, &path).await?;
                    }
                }
                Ok(())
            }
        }
    }

    fn send(&self, request: Request) -> Result<()> {
        self.requests
            .as_ref()
            .and_then(|tx| tx.send(request).ok())
            .ok_or_else(|| StorageError::internal("the log is closed"))
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Where the log's thread writes a group of records.
enum Sink {
    /// The open segment of a folder.
    File { dir: PathBuf, file: File, id: SegmentId },
    /// One object per group; `next` is the next one's number.
    Object { store: Arc<dyn ObjectStore>, runtime: tokio::runtime::Handle, next: u64 },
}

impl Sink {
    /// Makes `buffer` durable. A failed fsync aborts the process (see the module); a
    /// failed put is returned: the log stops.
    fn write(&mut self, buffer: &[u8]) -> std::result::Result<(), String> {
        match self {
            Sink::File { dir, file, .. } => {
                if let Err(e) = file.write_all(buffer).and_then(|()| file.sync_data()) {
                    error!(error = %e, dir = %dir.display(), "write-ahead log write or fsync failed; stopping");
                    std::process::abort();
                }
                Ok(())
            }
            Sink::Object { store, runtime, next } => {
                let options = PutOptions { mode: PutMode::Create, ..Default::default() };
                let payload = PutPayload::from(bytes::Bytes::copy_from_slice(buffer));
                runtime
                    .block_on(store.put_opts(&log_object(*next), payload, options))
                    .map_err(|e| e.to_string())?;
                *next += 1;
                Ok(())
            }
        }
    }

    /// Starts the next segment; returns its id.
    fn rotate(&mut self) -> Result<SegmentId> {
        match self {
            Sink::File { dir, file, id } => {
                let next = SegmentId(id.0 + 1);
                *file = create_segment(dir, next)?;
                *id = next;
                Ok(next)
            }
            // The next object is a segment of its own already.
            Sink::Object { next, .. } => Ok(SegmentId(*next)),
        }
    }
}

fn write_loop(mut sink: Sink, requests: mpsc::Receiver<Request>, stats: Arc<WalStats>) {
    let mut buffer = Vec::new();
    while let Ok(first) = requests.recv() {
        let mut waiting = Vec::new();
        let mut rotations = Vec::new();
        // Everything that queued up while we were busy goes into this one write.
        for request in std::iter::once(first).chain(requests.try_iter()) {
            match request {
                Request::Append { payload, done } => {
                    buffer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                    buffer.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
                    buffer.extend_from_slice(&payload);
                    stats.records.fetch_add(1, Ordering::Relaxed);
                    waiting.push(done);
                }
                Request::Rotate { done } => rotations.push(done),
            }
        }
        if !buffer.is_empty() {
            if let Err(e) = sink.write(&buffer) {
                // Whether the object was written is unknown: no commit is acknowledged
                // from here on (the waiting ones and later ones fail).
                error!(error = %e, "writing the log to the object store failed; the log stops");
                return;
            }
            stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            stats.bytes.fetch_add(buffer.len() as u64, Ordering::Relaxed);
            buffer.clear();
        }
        for done in waiting {
            let _ = done.send(());
        }
        for done in rotations {
            let _ = done.send(sink.rotate());
        }
    }
}

/// The log's objects in the store, by number.
async fn list_objects(store: &Arc<dyn ObjectStore>) -> Result<Vec<(u64, ObjectPath)>> {
    use futures::TryStreamExt;
    let mut objects: Vec<(u64, ObjectPath)> = store
        .list(Some(&log_prefix()))
        .map_ok(|meta| meta.location)
        .try_filter_map(|path| async move {
            let n = path.filename().and_then(|n| n.strip_suffix(".wal")).and_then(|n| n.parse::<u64>().ok());
            Ok(n.map(|n| (n, path)))
        })
        .try_collect()
        .await?;
    objects.sort();
    Ok(objects)
}

/// Appends the records of `bytes` to `out`; returns the offset of the first bad one.
fn parse_records(bytes: &[u8], out: &mut Vec<Vec<u8>>) -> Option<usize> {
    let mut at = 0;
    while at < bytes.len() {
        let record = bytes.get(at..at + HEADER).and_then(|header| {
            let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
            let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
            let payload = bytes.get(at + HEADER..at + HEADER + len).filter(|_| len <= MAX_RECORD_BYTES)?;
            (crc32fast::hash(payload) == crc).then_some(payload)
        });
        match record {
            Some(payload) => {
                out.push(payload.to_vec());
                at += HEADER + payload.len();
            }
            None => return Some(at),
        }
    }
    None
}

fn segment_path(dir: &Path, id: SegmentId) -> PathBuf {
    dir.join(format!("{:020}.wal", id.0))
}

fn create_segment(dir: &Path, id: SegmentId) -> Result<File> {
    let path = segment_path(dir, id);
    let file =
        OpenOptions::new().create_new(true).append(true).open(&path).map_err(|e| io_error(&path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

fn list_segments(dir: &Path) -> Result<Vec<(SegmentId, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let path = entry.map_err(|e| io_error(dir, e))?.path();
        let id = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(id) = id {
            segments.push((SegmentId(id), path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Reads a segment's records into `out`. In the newest segment a bad tail is cut off.
fn read_segment(path: &Path, newest: bool, out: &mut Vec<Vec<u8>>) -> Result<()> {
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| io_error(path, e))?;
    match parse_records(&bytes, out) {
        None => Ok(()),
        Some(at) if newest => {
            warn!(path = %path.display(), offset = at, dropped = bytes.len() - at, "cutting a torn record off the log");
            let file = OpenOptions::new().write(true).open(path).map_err(|e| io_error(path, e))?;
            file.set_len(at as u64).and_then(|()| file.sync_all()).map_err(|e| io_error(path, e))
        }
        Some(at) => Err(StorageError::CorruptLog {
            path: path.display().to_string(),
            message: format!("the record at offset {at} of a sealed segment fails its checksum"),
        }),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, e))
}

fn io_error(path: &Path, source: std::io::Error) -> StorageError {
    StorageError::Io { path: path.display().to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_survive_reopening_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, replayed) = Wal::open(dir.path()).unwrap();
            assert!(replayed.is_empty());
            for i in 0..10u8 {
                wal.append(vec![i; i as usize + 1]).await.unwrap();
            }
        }
        let (_wal, replayed) = Wal::open(dir.path()).unwrap();
        assert_eq!(replayed, (0..10u8).map(|i| vec![i; i as usize + 1]).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_later_records_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, _) = Wal::open(dir.path()).unwrap();
            wal.append(b"committed".to_vec()).await.unwrap();
        }
        // A crash in the middle of the next record: its header and half its payload.
        let (_, path) = list_segments(dir.path()).unwrap().pop().unwrap();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&20u32.to_le_bytes()).unwrap();
        file.write_all(&crc32fast::hash(b"never acknowledged!!").to_le_bytes()).unwrap();
        file.write_all(b"never ack").unwrap();
        drop(file);

        let (wal, replayed) = Wal::open(dir.path()).unwrap();
        assert_eq!(replayed, vec![b"committed".to_vec()]);
        wal.append(b"after".to_vec()).await.unwrap();
        drop(wal);
        let (_, replayed) = Wal::open(dir.path()).unwrap();
        assert_eq!(replayed, vec![b"committed".to_vec(), b"after".to_vec()]);
    }

    #[tokio::test]
    async fn corruption_in_a_sealed_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, _) = Wal::open(dir.path()).unwrap();
            wal.append(b"first segment".to_vec()).await.unwrap();
            wal.rotate().await.unwrap();
            wal.append(b"second segment".to_vec()).await.unwrap();
        }
        let (_, first) = list_segments(dir.path()).unwrap().remove(0);
        let mut bytes = std::fs::read(&first).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        assert!(matches!(Wal::open(dir.path()), Err(StorageError::CorruptLog { .. })));
    }

    #[tokio::test]
    async fn rotation_lets_old_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(b"old".to_vec()).await.unwrap();
        let newer = wal.rotate().await.unwrap();
        wal.append(b"new".to_vec()).await.unwrap();
        wal.remove_segments_before(newer).await.unwrap();
        drop(wal);
        let (_, replayed) = Wal::open(dir.path()).unwrap();
        assert_eq!(replayed, vec![b"new".to_vec()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_in_the_object_store_is_one_object_per_group_and_replays_in_order() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        {
            let (wal, replayed) = Wal::open_in_store(store.clone(), None).await.unwrap();
            assert!(replayed.is_empty() && wal.in_store());
            wal.append(b"one".to_vec()).await.unwrap();
            let rotated = wal.rotate().await.unwrap();
            wal.append(b"two".to_vec()).await.unwrap();
            wal.append(b"three".to_vec()).await.unwrap();
            wal.remove_segments_before(rotated).await.unwrap();
        }
        let (wal, replayed) = Wal::open_in_store(store.clone(), None).await.unwrap();
        assert_eq!(replayed, vec![b"two".to_vec(), b"three".to_vec()]);
        // Another writer took the next number: the put fails, and the log stops.
        store.put(&log_object(4), PutPayload::from_static(b"")).await.unwrap();
        assert!(wal.append(b"four".to_vec()).await.is_err());
        assert!(wal.append(b"five".to_vec()).await.is_err());
        drop(wal);
        // A damaged object is corruption.
        store.put(&log_object(9), PutPayload::from_static(b"\x05\0\0\0garbage")).await.unwrap();
        assert!(matches!(Wal::open_in_store(store, None).await, Err(StorageError::CorruptLog { .. })));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path()).unwrap();
        let wal = Arc::new(wal);
        let commits = 64;
        let tasks: Vec<_> = (0..commits)
            .map(|i| {
                let wal = wal.clone();
                tokio::spawn(async move { wal.append(vec![i as u8; 100]).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let fsyncs = wal.stats().fsyncs.load(Ordering::Relaxed);
        assert_eq!(wal.stats().records.load(Ordering::Relaxed), commits);
        assert!(fsyncs < commits, "{fsyncs} fsyncs for {commits} concurrent commits");
    }
}
