//! Where a warehouse lives, and durable object-store access.
//!
//! Every byte goes through `object_store`. For a local folder the store is a
//! `LocalFileSystem` with fsync on: a put returns only once the file and its directory
//! entry are on stable storage, as a put to S3 does. Lance writes through the same kind
//! of store ([`DurableFileStoreProvider`]), so its data files and its manifests are
//! durable before a commit is acknowledged.

use std::path::Path as FsPath;
use std::sync::Arc;

use lance_io::object_store::{
    providers::local::FileStoreProvider, ObjectStore as LanceObjectStore, ObjectStoreParams,
    ObjectStoreProvider, ObjectStoreRegistry,
};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;
use url::Url;

use crate::error::{Result, StorageError};

/// The root of a warehouse: a URL, the store behind it, and the path of the root in
/// that store.
#[derive(Debug, Clone)]
pub struct Location {
    url: Url,
    store: Arc<dyn ObjectStore>,
}

impl Location {
    /// Accepts a folder path (relative or absolute; created if missing) or a `file://`
    /// URL.
    pub fn parse(location: &str) -> Result<Self> {
        let invalid = |message: String| StorageError::InvalidWarehouse { url: location.to_string(), message };
        let url = match Url::parse(location) {
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
        Ok(Self { url, store: Arc::new(store) })
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URI Lance opens for a path below the root. Local folders use Lance's
    /// `file-object-store` scheme, which sends every write through the object store
    /// (Lance's plain `file` scheme writes data files itself, without fsync).
    pub fn uri_of(&self, path: &Path) -> String {
        format!("{LANCE_DURABLE_SCHEME}://{}", self.url_of(path).path())
    }

    /// The `file://` URL of a path below the root, for readers outside Lance.
    pub fn file_url_of(&self, path: &Path) -> String {
        self.url_of(path).to_string()
    }

    fn url_of(&self, path: &Path) -> Url {
        let mut url = self.url.clone();
        {
            let mut segments = url.path_segments_mut().expect("file URLs have segments");
            segments.pop_if_empty();
            for part in path.parts() {
                segments.push(part.as_ref());
            }
        }
        url
    }
}

/// The scheme under which Lance reaches local folders through [`DurableFileStoreProvider`].
const LANCE_DURABLE_SCHEME: &str = "file-object-store";

/// Lance's registry of object stores, with local folders served by a fsync-ing store.
pub fn lance_store_registry() -> Arc<ObjectStoreRegistry> {
    let registry = ObjectStoreRegistry::default();
    registry.insert(LANCE_DURABLE_SCHEME, Arc::new(DurableFileStoreProvider));
    Arc::new(registry)
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
