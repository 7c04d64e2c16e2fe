//! Where a warehouse lives, and durable object-store access.
//!
//! Every byte goes through `object_store`. For a local folder the store is a
//! `LocalFileSystem` with fsync on: a put returns only once the file and its directory
//! entry are on stable storage, as a put to S3 does. Lance writes through the same kind
//! of store ([`DurableFileStoreProvider`]), so its data files and its manifests are
//! durable before a commit is acknowledged.
//!
//! An `s3://bucket/prefix` warehouse is an `AmazonS3` store (object_store's S3 client
//! over reqwest and rustls, signing with ring, which the server's TLS already uses),
//! below the prefix for Tarn's own files; Lance reaches the same bucket through a
//! provider registered for `s3` ([`S3StoreProvider`]). Commits stay put-if-absent: a
//! `PUT` with `If-None-Match: *`. Both read through one cache of object ranges
//! ([`crate::cache`]).

use std::path::Path as FsPath;
use std::sync::Arc;

use futures::TryStreamExt;
use lance_io::object_store::{
    providers::local::FileStoreProvider, ObjectStore as LanceObjectStore, ObjectStoreParams,
    ObjectStoreProvider, ObjectStoreRegistry,
};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::cache::{CachedStore, DEFAULT_CACHE_BYTES};
use crate::error::{Result, StorageError};
use crate::lease::Fence;

/// How Tarn reaches an S3-compatible store (the `[s3]` section of the server's
/// configuration); what it leaves unset comes from the usual `AWS_*` environment
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
/// `AWS_ENDPOINT`, ...).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Plain HTTP to the endpoint (a test server on loopback); real S3 takes TLS.
    pub allow_http: bool,
    /// `bucket.endpoint/key` addressing; by default path style (`endpoint/bucket/key`),
    /// which S3-compatible servers expect.
    pub virtual_hosted_style: bool,
    /// The local cache of object ranges, in MiB ([`crate::cache`]; 512 unless set, 0
    /// for none).
    pub cache_mb: Option<u64>,
}

/// The root of a warehouse: a URL, the store behind it, and the path of the root in
/// that store.
#[derive(Debug, Clone)]
pub struct Location {
    url: Url,
    store: Arc<dyn ObjectStore>,
    /// An object-store warehouse's whole bucket (Lance addresses objects by their key
    /// in it); `None` for a local folder.
    bucket: Option<Arc<dyn ObjectStore>>,
    /// What may commit through this process ([`crate::lease`]).
    fence: Arc<Fence>,
    /// An object-store warehouse's range cache, below Tarn's and Lance's reads.
    cache: Option<Arc<CachedStore>>,
}

impl Location {
    /// Accepts a folder path (relative or absolute; created if missing) or a `file://`
    /// URL.
    pub fn parse(location: &str) -> Result<Self> {
        Self::open(location, &S3Options::default())
    }

    /// As [`Location::parse`], and `s3://bucket[/prefix]` with `s3`'s settings.
    pub fn open(location: &str, s3: &S3Options) -> Result<Self> {
        let invalid = |message: String| StorageError::InvalidWarehouse { url: location.to_string(), message };
        let url = match Url::parse(location) {
            Ok(url) if url.scheme() == "s3" => return Self::s3(url, s3).map_err(invalid),
            Ok(url) if url.scheme() == "file" => url,
            Ok(url) if url.scheme().len() > 1 => {
                return Err(invalid(format!(
                    "the {} scheme is not supported by this build; use a local folder or file:// URL",
                    url.scheme()
                )))
            }
            // A bare path (or a Windows drive letter, which parses as a one-letter scheme).
            _ => {
                let path = FsPath::new(location);
                std::fs::create_dir_all(path).map_err(|e| invalid(e.to_string()))?;
                let abs = path.canonicalize().map_err(|e| invalid(e.to_string()))?;
                Url::from_directory_path(&abs).map_err(|()| invalid("not an absolute path".to_string()))?
            }
        };
        let root = url.to_file_path().map_err(|()| invalid("not a local path".to_string()))?;
        std::fs::create_dir_all(&root).map_err(|e| invalid(e.to_string()))?;
        let store = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| invalid(e.to_string()))?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        let url = Url::from_directory_path(&root).map_err(|()| invalid("bad path".into()))?;
        Ok(Self { url, store: Arc::new(store), bucket: None, fence: Arc::default(), cache: None })
    }

    fn s3(mut url: Url, options: &S3Options) -> std::result::Result<Self, String> {
        // reqwest's TLS takes the process's provider (ring; a second install is a no-op).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bucket_name = url.host_str().filter(|b| !b.is_empty()).ok_or("no bucket in the URL")?.to_string();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket_name)
            .with_allow_http(options.allow_http)
            .with_virtual_hosted_style_request(options.virtual_hosted_style);
        let settings = [
            (AmazonS3ConfigKey::Endpoint, &options.endpoint),
            (AmazonS3ConfigKey::Region, &options.region),
            (AmazonS3ConfigKey::AccessKeyId, &options.access_key_id),
            (AmazonS3ConfigKey::SecretAccessKey, &options.secret_access_key),
            (AmazonS3ConfigKey::Token, &options.session_token),
        ];
        for (key, value) in settings {
            if let Some(value) = value {
                builder = builder.with_config(key, value);
            }
        }
        let mut bucket: Arc<dyn ObjectStore> = Arc::new(builder.build().map_err(|e| e.to_string())?);
        let cache_bytes = options.cache_mb.map_or(DEFAULT_CACHE_BYTES, |mb| mb << 20);
        let cache = (cache_bytes > 0).then(|| Arc::new(CachedStore::new(bucket.clone(), cache_bytes)));
        if let Some(cache) = &cache {
            bucket = cache.clone();
        }
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let prefix = Path::from_url_path(url.path()).map_err(|e| e.to_string())?;
        let store: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(bucket.clone(), prefix));
        Ok(Self { url, store, bucket: Some(bucket), fence: Arc::default(), cache })
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// What may commit to the warehouse through this process: every manifest commit
    /// and every acknowledged log record passes it.
    pub fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }

    /// The object-range cache (object-store warehouses).
    pub fn cache(&self) -> Option<&Arc<CachedStore>> {
        self.cache.as_ref()
    }

    /// The local folder of a folder warehouse.
    pub fn local_root(&self) -> Option<std::path::PathBuf> {
        self.bucket.is_none().then(|| self.url.to_file_path().ok()).flatten()
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URI Lance opens for a path below the root. Local folders use Lance's
    /// `file-object-store` scheme, which sends every write through the object store
    /// (Lance's plain `file` scheme writes data files itself, without fsync).
    pub fn uri_of(&self, path: &Path) -> String {
        match self.bucket {
            None => format!("{LANCE_DURABLE_SCHEME}://{}", self.url_of(path).path()),
            Some(_) => self.url_of(path).to_string(),
        }
    }

    /// The URL of a path below the root for readers (`file://` for a local folder, so
    /// Lance reads with its own file handles; `s3://` otherwise).
    pub fn read_url_of(&self, path: &Path) -> String {
        self.url_of(path).to_string()
    }

    /// The path below the root of a URL [`Location::read_url_of`] gave.
    pub fn path_of_url(&self, url: &str) -> Option<Path> {
        let rest = url.strip_prefix(self.url.as_str())?;
        Path::from_url_path(rest).ok()
    }

    fn url_of(&self, path: &Path) -> Url {
        let mut url = self.url.clone();
        {
            let mut segments = url.path_segments_mut().expect("warehouse URLs have segments");
            segments.pop_if_empty();
            for part in path.parts() {
                segments.push(part.as_ref());
            }
        }
        url
    }
}

/// Deletes the object at `path`; one already gone is no error (a delete repeated after
/// a crash, or raced by another).
pub(crate) async fn delete_if_present(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes every object below `prefix`.
pub(crate) async fn delete_prefix(store: &Arc<dyn ObjectStore>, prefix: &Path) -> Result<()> {
    let paths: Vec<Path> = store.list(Some(prefix)).map_ok(|m| m.location).try_collect().await?;
    for path in paths {
        delete_if_present(store, &path).await?;
    }
    Ok(())
}

/// The scheme under which Lance reaches local folders through [`DurableFileStoreProvider`].
const LANCE_DURABLE_SCHEME: &str = "file-object-store";

/// Lance's registry of object stores, with local folders served by a fsync-ing store
/// and an object-store warehouse's bucket by the store Tarn opened.
pub fn lance_store_registry(location: &Location) -> Arc<ObjectStoreRegistry> {
    let registry = ObjectStoreRegistry::default();
    registry.insert(LANCE_DURABLE_SCHEME, Arc::new(DurableFileStoreProvider));
    if let Some(bucket) = &location.bucket {
        registry.insert(location.url.scheme(), Arc::new(S3StoreProvider { bucket: bucket.clone() }));
    }
    Arc::new(registry)
}

/// Lance's datasets in an object-store warehouse, through the bucket's store.
#[derive(Debug)]
pub struct S3StoreProvider {
    bucket: Arc<dyn ObjectStore>,
}

/// Concurrent requests per Lance read, as Lance uses for cloud stores.
const CLOUD_IO_PARALLELISM: usize = 64;
/// Lance's read size for cloud stores.
const CLOUD_BLOCK_SIZE: usize = 64 << 10;

#[async_trait::async_trait]
impl ObjectStoreProvider for S3StoreProvider {
    async fn new_store(&self, base_path: Url, params: &ObjectStoreParams) -> lance::Result<LanceObjectStore> {
        Ok(LanceObjectStore::new(
            self.bucket.clone(),
            base_path,
            Some(params.block_size.unwrap_or(CLOUD_BLOCK_SIZE)),
            None,
            false,
            true,
            CLOUD_IO_PARALLELISM,
            3,
            params.storage_options(),
        ))
    }
}

/// Lance's local-file provider, with fsync on: Lance's defaults write local files without
/// fsync, which would acknowledge commits a power cut can take back.
#[derive(Debug, Default)]
pub struct DurableFileStoreProvider;

#[async_trait::async_trait]
impl ObjectStoreProvider for DurableFileStoreProvider {
    async fn new_store(&self, base_path: Url, params: &ObjectStoreParams) -> lance::Result<LanceObjectStore> {
        let mut store = FileStoreProvider.new_store(base_path, params).await?;
        store.inner = Arc::new(LocalFileSystem::new().with_fsync(true));
        Ok(store)
    }

    fn extract_path(&self, url: &Url) -> lance::Result<Path> {
        FileStoreProvider.extract_path(url)
    }

    fn calculate_object_store_prefix(
        &self,
        url: &Url,
        storage_options: Option<&std::collections::HashMap<String, String>>,
    ) -> lance::Result<String> {
        FileStoreProvider.calculate_object_store_prefix(url, storage_options)
    }
}
