//! External tables as DataFusion sees them, and the folders the server lets SQL read
//! and write files in.
//!
//! - [`allowed`]: a path given in SQL (`LOCATION '...'`, `COPY ... TO '...'`), resolved
//!   (symbolic links and `..` followed) and checked to lie under one of the
//!   configuration's `external_locations`; anything else is 42501, so a client cannot
//!   read or write the server's own files.
//! - [`provider`]: an external table as DataFusion reads it. Parquet: the files are
//!   listed at each query (a file added to the folder is read by the next one; names
//!   starting with `.` or `_` are left out), projections and filters reach DataFusion's
//!   Parquet reader (row groups and pages pruned by their statistics), as for a Parquet
//!   base. Iceberg: [`crate::catalog::iceberg`].
//! - [`infer_schema`]: the columns of the files at a location (at `CREATE EXTERNAL
//!   TABLE` without columns, and `REFRESH TABLE`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use tarn_storage::external::{ExternalDef, ExternalFormat};

use crate::catalog::provider::parquet_scan;
use crate::error::{EngineError, Result};

/// `location` as an absolute path under one of `allowed_folders`, or 42501. With
/// `must_exist` false (a file `COPY ... TO` makes), its folder must exist.
pub fn allowed(allowed_folders: &[PathBuf], location: &str, must_exist: bool) -> Result<PathBuf> {
    let refused = |why: &str| EngineError::InsufficientPrivilege {
        message: format!(
            "permission denied for location \"{location}\": {why} (the server's external_locations: {})",
            if allowed_folders.is_empty() {
                "none".to_string()
            } else {
                allowed_folders.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            }
        ),
    };
    let path = Path::new(location.strip_prefix("file://").unwrap_or(location));
    if !path.is_absolute() {
        return Err(refused("not an absolute path"));
    }
    let folders: Vec<PathBuf> = allowed_folders.iter().filter_map(|f| f.canonicalize().ok()).collect();
    let inside = |p: &Path| folders.iter().any(|folder| p.starts_with(folder));
    // What does not exist is refused alike outside the folders (nothing is learnt of
    // the server's files), and named as missing inside them.
    let missing = |what: &str, e: std::io::Error| {
        if inside(&lexical(path)) {
            EngineError::InvalidParameter { message: format!("could not open {what}\"{location}\": {e}") }
        } else {
            refused("outside the folders the server allows")
        }
    };
    let resolved = match path.canonicalize() {
        // An existing file (a link followed to where it leads).
        Ok(resolved) => resolved,
        Err(e) if must_exist => return Err(missing("", e)),
        Err(_) => {
            let (Some(parent), Some(file)) = (path.parent(), path.file_name()) else {
                return Err(refused("not a file name"));
            };
            parent.canonicalize().map_err(|e| missing("the folder of ", e))?.join(file)
        }
    };
    if inside(&resolved) {
        Ok(resolved)
    } else {
        Err(refused("outside the folders the server allows"))
    }
}

/// `path` with `.` and `..` taken out, without reading the file system.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The columns of the Parquet files at `path` (a file or a folder), merged (a column
/// some files lack is in the table). The files are listed here, not by DataFusion, whose
/// listing cache would hide a file added since.
pub async fn infer_schema(state: &dyn Session, path: &Path) -> Result<SchemaRef> {
    use datafusion::datasource::file_format::FileFormat;
    use datafusion::execution::object_store::ObjectStoreUrl;
    use datafusion::object_store::{path::Path as ObjectPath, ObjectMeta};

    let unreadable = |e: &dyn std::fmt::Display| EngineError::InvalidParameter {
        message: format!("reading {}: {e}", path.display()),
    };
    let files = parquet_files(path).map_err(|e| unreadable(&e))?;
    if files.is_empty() {
        return Err(EngineError::InvalidParameter {
            message: format!(
                "there are no Parquet files at {}: add some, or declare the columns",
                path.display()
            ),
        });
    }
    let mut objects = Vec::with_capacity(files.len());
    for (file, size) in &files {
        let modified = std::fs::metadata(file).and_then(|m| m.modified()).map_err(|e| unreadable(&e))?;
        objects.push(ObjectMeta {
            location: ObjectPath::from_filesystem_path(file).map_err(|e| unreadable(&e))?,
            last_modified: modified.into(),
            size: *size,
            e_tag: None,
            version: None,
        });
    }
    let store = state.runtime_env().object_store(ObjectStoreUrl::local_filesystem())?;
    // Strings as `Utf8` (Tarn's `text`), not views, so files written by any tool agree.
    let format = ParquetFormat::default().with_force_view_types(false);
    Ok(format.infer_schema(state, &store, &objects).await?)
}

/// `def` as a table DataFusion reads (an Iceberg table at `snapshot`, else its newest),
/// if its location is still allowed.
pub fn provider(
    def: &ExternalDef,
    allowed_folders: &[PathBuf],
    snapshot: Option<i64>,
) -> DfResult<Arc<dyn TableProvider>> {
    let path = allowed(allowed_folders, &def.location, true).map_err(|e| e.into_datafusion())?;
    match def.format {
        ExternalFormat::Parquet if snapshot.is_some() => Err(DataFusionError::Plan(format!(
            "\"{}\" is an external Parquet table: it has no versions to read AS OF",
            def.name.table
        ))),
        ExternalFormat::Parquet => Ok(Arc::new(ExternalTable { schema: def.schema.clone(), path })),
        ExternalFormat::Iceberg => Ok(Arc::new(crate::catalog::iceberg::IcebergTable {
            schema: def.schema.clone(),
            location: path,
            snapshot,
        })),
    }
}

/// An external table: its files listed at each scan, read by DataFusion's Parquet
/// reader as a Parquet base is ([`parquet_scan`]).
#[derive(Debug)]
struct ExternalTable {
    schema: SchemaRef,
    path: PathBuf,
}

#[async_trait::async_trait]
impl TableProvider for ExternalTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let files = parquet_files(&self.path).map_err(|e| {
            DataFusionError::External(Box::new(std::io::Error::new(
                e.kind(),
                format!("listing {}: {e}", self.path.display()),
            )))
        })?;
        parquet_scan(state, &self.schema, files, projection, filters, limit)
    }
}

/// The Parquet files at `path`: the file itself, or those below the folder (hidden
/// files, such as a `COPY ... TO` under way, left out), in name order.
fn parquet_files(path: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut files = Vec::new();
    let metadata = std::fs::metadata(path)?;
    if metadata.is_file() {
        files.push((path.display().to_string(), metadata.len()));
        return Ok(files);
    }
    let mut folders = vec![path.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                folders.push(entry.path());
            } else if name.ends_with(".parquet") {
                files.push((entry.path().display().to_string(), entry.metadata()?.len()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Types of files written by other tools as Tarn's columns hold them: view and large
/// strings as `text`, dictionaries as their values, timestamps in microseconds (an
/// instant in UTC).
pub fn tarn_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Dictionary(_, values) => tarn_type(values),
        // An instant (any zone) is `timestamptz`, which Tarn keeps in UTC.
        DataType::Timestamp(_, tz) => {
            DataType::Timestamp(TimeUnit::Microsecond, tz.as_ref().map(|_| "UTC".into()))
        }
        other => other.clone(),
    }
}

/// A schema as Tarn's columns hold it ([`tarn_type`]), every column nullable, with
/// only Tarn's own field metadata (its type hint; not, say, Parquet's field ids).
pub fn tarn_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let kept = f.metadata().iter().filter(|(k, _)| k.as_str() == crate::types::PG_TYPE_KEY);
            let metadata = kept.map(|(k, v)| (k.clone(), v.clone())).collect();
            Field::new(f.name(), tarn_type(f.data_type()), true).with_metadata(metadata)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_an_allowed_folder_pass() {
        let root = tempfile::tempdir().unwrap();
        let lake = root.path().join("lake");
        std::fs::create_dir_all(lake.join("events")).unwrap();
        std::fs::write(lake.join("events/a.parquet"), b"").unwrap();
        std::fs::write(root.path().join("secret"), b"").unwrap();
        let allowed_folders = vec![lake.clone()];
        let ok = |p: &Path, exist| allowed(&allowed_folders, p.to_str().unwrap(), exist);
        assert!(ok(&lake.join("events"), true).is_ok());
        assert!(ok(&lake.join("events/a.parquet"), true).is_ok());
        assert!(ok(&lake.join("new.parquet"), false).is_ok());
        for (path, exist) in [
            (root.path().join("secret"), true),
            (lake.join("../secret"), true),
            (lake.join("../out.parquet"), false),
        ] {
            let e = ok(&path, exist).unwrap_err();
            assert!(matches!(e, EngineError::InsufficientPrivilege { .. }), "{path:?}: {e}");
        }
        assert!(matches!(
            allowed(&allowed_folders, "events/a.parquet", true),
            Err(EngineError::InsufficientPrivilege { .. })
        ));
        assert!(matches!(
            allowed(&[], lake.to_str().unwrap(), true),
            Err(EngineError::InsufficientPrivilege { .. })
        ));
        // A symbolic link inside the lake to a file outside it is outside.
        std::os::unix::fs::symlink(root.path().join("secret"), lake.join("link")).unwrap();
        assert!(ok(&lake.join("link"), true).is_err());
    }
}
