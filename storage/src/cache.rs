//! A local, size-bounded cache of object ranges for object-store warehouses.
//!
//! [`CachedStore`] wraps the bucket's store, below both Tarn's own reads and Lance's: a
//! ranged or whole read of an immutable object (Lance data, index and deletion files,
//! change files, deletion vectors, BM25 segments, Parquet base files, Tarn's manifests)
//! is kept by path and range, so a warm query (the footers, indexes and pages it read
//! before) does not go back to object storage. Objects that are rewritten in place (the
//! writer's lease, views, sequences, a vacuum's plan, Lance's version hints) and
//! conditional reads pass through. Nothing is invalidated: the cached objects are never
//! rewritten, only deleted, and a deleted one is read by no manifest. The least recently
//! used ranges go first once the cache is full (moka's TinyLFU admission).
//!
//! `tarn_object_cache` shows its size and its hits and misses.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// The cache's size unless configured.
pub const DEFAULT_CACHE_BYTES: u64 = 512 << 20;

/// Hits, misses and size of a [`CachedStore`].
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Bytes read from the store on misses (and kept).
    pub bytes_fetched: AtomicU64,
    /// Bytes served from the cache.
    pub bytes_served: AtomicU64,
}

/// What a cache holds for one (path, range): the bytes and the object's metadata.
#[derive(Clone)]
struct Entry {
    meta: ObjectMeta,
    range: Range<u64>,
    bytes: Bytes,
}

/// An object store whose reads of immutable objects are cached (see the module).
#[derive(Debug)]
pub struct CachedStore {
    inner: Arc<dyn ObjectStore>,
    entries: moka::sync::Cache<(Path, String), Entry>,
    capacity: u64,
    stats: Arc<CacheStats>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.meta.location, self.range)
    }
}

impl std::fmt::Display for CachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cached({})", self.inner)
    }
}

impl CachedStore {
    pub fn new(inner: Arc<dyn ObjectStore>, capacity: u64) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|key: &(Path, String), entry: &Entry| {
                (entry.bytes.len() + key.0.as_ref().len() + key.1.len() + 64).try_into().unwrap_or(u32::MAX)
            })
            .build();
        CachedStore { inner, entries, capacity, stats: Arc::default() }
    }

    pub fn stats(&self) -> &Arc<CacheStats> {
        &self.stats
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes held now (approximately: moka settles its count lazily).
    pub fn used(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }

    /// The key of a plain (unconditional) read of an immutable object, else `None`.
    fn key(location: &Path, options: &GetOptions) -> Option<(Path, String)> {
        let plain = options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none()
            && !options.head;
        let range = match &options.range {
            None => "all".to_string(),
            Some(GetRange::Bounded(r)) => format!("{}-{}", r.start, r.end),
            Some(GetRange::Offset(o)) => format!("{o}-"),
            Some(GetRange::Suffix(n)) => format!("-{n}"),
        };
        (plain && immutable(location)).then(|| (location.clone(), range))
    }
}

/// Whether the object at `location` is never rewritten: Lance's data, index and
/// deletion files, and Tarn's change files, deletion vectors, BM25 segments, Parquet
/// base files and manifests, told by the folders above the file (named from the end:
/// the warehouse's prefix may be anything).
fn immutable(location: &Path) -> bool {
    let parts: Vec<String> = location.parts().map(|p| p.as_ref().to_string()).collect();
    let up = |n: usize| parts.len().checked_sub(n + 1).map_or("", |i| parts[i].as_str());
    let file = up(0);
    // The warehouse's own mutable objects (views and sequences of a schema named like
    // one of the folders below, the lease).
    let catalog =
        parts.windows(2).any(|w| w[0] == "_tarn" && ["views", "sequences", "lease"].contains(&w[1].as_str()));
    !catalog
        && ((up(2) == "base" && ["data", "_deletions"].contains(&up(1)))
            || (up(3) == "base" && up(2) == "_indices")
            || up(2) == "changes"
            || up(1) == "deletes"
            || up(3) == "text"
            || (up(1) == "base" && file.ends_with(".parquet"))
            || (up(2) == "_tarn" && up(1) == "manifest" && file.ends_with(".json")))
}

#[async_trait::async_trait]
impl ObjectStore for CachedStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let Some(key) = Self::key(location, &options) else {
            return self.inner.get_opts(location, options).await;
        };
        let entry = match self.entries.get(&key) {
            Some(entry) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes_served.fetch_add(entry.bytes.len() as u64, Ordering::Relaxed);
                entry
            }
            None => {
                let result = self.inner.get_opts(location, options).await?;
                let (meta, range) = (result.meta.clone(), result.range.clone());
                let bytes = result.bytes().await?;
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes_fetched.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let entry = Entry { meta, range, bytes };
                self.entries.insert(key, entry.clone());
                entry
            }
        };
        let bytes = entry.bytes;
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(bytes) }).boxed()),
            meta: entry.meta,
            range: entry.range,
            attributes: Default::default(),
            extensions: Default::default(),
        })
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;

    use super::*;

    #[test]
    fn only_immutable_objects_are_cached() {
        for (path, cached) in [
            ("w/public/t/base/data/abc.lance", true),
            ("w/public/t/base/_indices/uuid/index.idx", true),
            ("w/public/t/base/_deletions/0-1-2.arrow", true),
            ("w/public/t/deletes/5.roaring", true),
            ("w/public/t/changes/0/001-002.parquet", true),
            ("w/public/t/text/body/seg1/meta.json", true),
            ("w/public/t/base/part-1.parquet", true),
            ("w/public/t/_tarn/manifest/00000000000000000003.json", true),
            ("w/public/t/base/_versions/18446744073709551614.manifest", false),
            ("w/_tarn/lease/00000000000000000001.json", false),
            ("w/_tarn/views/public/v.json", false),
            ("w/_tarn/sequences/public/s.json", false),
            ("w/_tarn/views/changes/v.json", false),
            ("data/_tarn/lease/00000000000000000001.json", false),
            ("w/public/t/_tarn/vacuum.json", false),
        ] {
            assert_eq!(immutable(&Path::from(path)), cached, "{path}");
        }
    }

    #[tokio::test]
    async fn a_second_read_of_a_range_is_a_hit() {
        let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let store = CachedStore::new(inner.clone(), 1 << 20);
        let path = Path::from("w/public/t/base/data/a.lance");
        inner.put(&path, PutPayload::from_static(b"0123456789")).await.unwrap();
        assert_eq!(store.get_range(&path, 2..5).await.unwrap().as_ref(), b"234");
        assert_eq!(store.get_range(&path, 2..5).await.unwrap().as_ref(), b"234");
        assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap().as_ref(), b"0123456789");
        let stats = store.stats();
        assert_eq!((stats.hits.load(Ordering::Relaxed), stats.misses.load(Ordering::Relaxed)), (1, 2));
        assert!(store.used() > 13);
        // A conditional read, or a read of an object rewritten in place, goes through.
        let lease = Path::from("w/_tarn/lease/1.json");
        inner.put(&lease, PutPayload::from_static(b"a")).await.unwrap();
        store.get(&lease).await.unwrap();
        inner.put(&lease, PutPayload::from_static(b"b")).await.unwrap();
        assert_eq!(store.get(&lease).await.unwrap().bytes().await.unwrap().as_ref(), b"b");
        assert_eq!(stats.misses.load(Ordering::Relaxed), 2);
    }
}
