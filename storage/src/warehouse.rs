//! The warehouse: every schema and table below one root.
//!
//! ```text
//! <root>/<schema>/_tarn_schema            marks a schema created with CREATE SCHEMA
//! <root>/<schema>/<table>/_tarn/manifest/ one file per committed version
//! <root>/<schema>/<table>/base/           Lance dataset, or Parquet files
//! ```
//!
//! The catalog is what the folders say: opening a warehouse lists them, so tables
//! survive a restart with nothing kept elsewhere. A folder without a manifest is not a
//! table (a crashed CREATE or DROP), and is cleared when a table of that name is created.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use futures::TryStreamExt;
use lance::session::Session;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use tracing::info;

use crate::error::{Result, StorageError};
use crate::io::{lance_store_registry, Location};
use crate::manifest::ManifestStore;
use crate::table::{delete_prefix, Table};
use crate::table_def::{TableDef, TableName};

const SCHEMA_MARKER: &str = "_tarn_schema";
pub const DEFAULT_SCHEMA: &str = "public";

/// Lance caches for index and file metadata, shared by every table.
const INDEX_CACHE_BYTES: usize = 512 << 20;
const METADATA_CACHE_BYTES: usize = 256 << 20;

pub struct Warehouse {
    location: Location,
    session: Arc<Session>,
    catalog: RwLock<Catalog>,
    /// Serializes CREATE/DROP so two sessions cannot create one table twice.
    ddl: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Catalog {
    schemas: BTreeSet<String>,
    tables: BTreeMap<TableName, Arc<Table>>,
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse").field("location", &self.location.url().as_str()).finish()
    }
}

impl Warehouse {
    /// Opens (creating if needed) the warehouse at a folder path or `file://` URL and
    /// loads every table in it.
    pub async fn open(location: &str) -> Result<Self> {
        let location = Location::parse(location)?;
        let session = Arc::new(Session::new(INDEX_CACHE_BYTES, METADATA_CACHE_BYTES, lance_store_registry()));
        let mut catalog = Catalog::default();
        catalog.schemas.insert(DEFAULT_SCHEMA.to_string());
        let store = location.store().clone();

        let top = store.list_with_delimiter(None).await?;
        for schema_dir in top.common_prefixes {
            let Some(schema) = schema_dir.filename().map(str::to_string) else { continue };
            let listing = store.list_with_delimiter(Some(&schema_dir)).await?;
            if listing.objects.iter().any(|o| o.location.filename() == Some(SCHEMA_MARKER)) {
                catalog.schemas.insert(schema.clone());
            }
            for table_dir in listing.common_prefixes {
                let manifests = ManifestStore::new(store.clone(), &table_dir);
                let Some(manifest) = manifests.latest().await? else { continue };
                let name = manifest.table.name.clone();
                let version = manifest.version;
                let table = Table::open(&location, &session, table_dir, manifest).await?;
                info!(table = %name, %version, "opened table");
                catalog.schemas.insert(name.schema.clone());
                catalog.tables.insert(name, Arc::new(table));
            }
        }
        Ok(Self { location, session, catalog: RwLock::new(catalog), ddl: tokio::sync::Mutex::new(()) })
    }

    pub fn url(&self) -> &str {
        self.location.url().as_str()
    }

    pub fn schemas(&self) -> Vec<String> {
        self.catalog.read().expect("catalog lock").schemas.iter().cloned().collect()
    }

    pub fn schema_exists(&self, schema: &str) -> bool {
        self.catalog.read().expect("catalog lock").schemas.contains(schema)
    }

    pub fn tables(&self, schema: &str) -> Vec<String> {
        let catalog = self.catalog.read().expect("catalog lock");
        catalog.tables.keys().filter(|n| n.schema == schema).map(|n| n.table.clone()).collect()
    }

    pub fn table(&self, name: &TableName) -> Option<Arc<Table>> {
        self.catalog.read().expect("catalog lock").tables.get(name).cloned()
    }

    /// `CREATE SCHEMA`. Returns false when it existed and `if_not_exists` was given.
    pub async fn create_schema(&self, schema: &str, if_not_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        if self.schema_exists(schema) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(StorageError::SchemaExists { name: schema.to_string() })
            };
        }
        let marker = Path::from(schema).join(SCHEMA_MARKER);
        self.location.store().put(&marker, PutPayload::from_static(b"{}\n")).await?;
        self.catalog.write().expect("catalog lock").schemas.insert(schema.to_string());
        Ok(true)
    }

    /// `CREATE TABLE`. Returns `None` when the table existed and `if_not_exists` was given.
    pub async fn create_table(&self, def: TableDef, if_not_exists: bool) -> Result<Option<Arc<Table>>> {
        let _ddl = self.ddl.lock().await;
        let name = def.name.clone();
        if !self.schema_exists(&name.schema) {
            return Err(StorageError::SchemaNotFound { name: name.schema.clone() });
        }
        if self.table(&name).is_some() {
            return if if_not_exists { Ok(None) } else { Err(StorageError::TableExists { name }) };
        }
        let dir = Path::from(name.schema.as_str()).join(name.table.as_str());
        let table = Arc::new(Table::create(&self.location, &self.session, dir, def).await?);
        self.catalog.write().expect("catalog lock").tables.insert(name, table.clone());
        Ok(Some(table))
    }

    /// `DROP TABLE`. Returns false when it did not exist and `if_exists` was given.
    pub async fn drop_table(&self, name: &TableName, if_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        let Some(table) = self.table(name) else {
            return if if_exists {
                Ok(false)
            } else {
                Err(StorageError::TableNotFound { name: name.clone() })
            };
        };
        // Manifests first: once they are gone the folder is no table, whatever remains.
        table.manifests().delete_all().await?;
        self.catalog.write().expect("catalog lock").tables.remove(name);
        delete_prefix(self.location.store(), table.dir()).await?;
        info!(table = %name, "dropped table");
        Ok(true)
    }

    /// Lists every object of the warehouse (for tests and diagnostics).
    pub async fn list_objects(&self) -> Result<Vec<String>> {
        Ok(self.location.store().list(None).map_ok(|m| m.location.to_string()).try_collect().await?)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::table::BaseSnapshot;
    use crate::table_def::{BaseFormat, ColumnMeta};

    fn def(format: BaseFormat) -> TableDef {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("title", DataType::Utf8, true),
        ]));
        TableDef {
            name: TableName::new("public", "items"),
            schema,
            columns: vec![
                ColumnMeta { name: "id".into(), ..Default::default() },
                ColumnMeta { name: "title".into(), ..Default::default() },
            ],
            primary_key: vec!["id".into()],
            format,
            bucket_count: 4,
            options: BTreeMap::new(),
        }
    }

    fn batch(def: &TableDef, ids: Vec<i64>) -> RecordBatch {
        let titles: Vec<String> = ids.iter().map(|i| format!("t{i}")).collect();
        RecordBatch::try_new(
            def.schema.clone(),
            vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(titles))],
        )
        .unwrap()
    }

    async fn count(table: &Table) -> usize {
        match &table.snapshot().base {
            BaseSnapshot::Lance(ds) => ds.count_rows(None).await.unwrap(),
            BaseSnapshot::Parquet(files) => files.len(),
        }
    }

    #[tokio::test]
    async fn tables_survive_reopening_and_reject_duplicate_keys() {
        for format in [BaseFormat::Lance, BaseFormat::Parquet] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().to_str().unwrap();
            let d = def(format);
            {
                let wh = Warehouse::open(root).await.unwrap();
                let table = wh.create_table(d.clone(), false).await.unwrap().unwrap();
                assert_eq!(table.append(vec![batch(&d, vec![1, 2, 3])]).await.unwrap()[0].num_rows(), 3);
                let err = table.append(vec![batch(&d, vec![4, 2])]).await.unwrap_err();
                assert!(matches!(err, StorageError::UniqueViolation { .. }), "{err}");
                let err = table.append(vec![batch(&d, vec![5, 5])]).await.unwrap_err();
                assert!(matches!(err, StorageError::UniqueViolation { .. }), "{err}");
                assert_eq!(table.snapshot().manifest.row_count, 3);
                if format == BaseFormat::Lance {
                    assert_eq!(count(&table).await, 3);
                }
            }
            let wh = Warehouse::open(root).await.unwrap();
            let table = wh.table(&d.name).expect("table reopened");
            assert_eq!(table.snapshot().manifest.row_count, 3);
            // The key index is rebuilt from the base after a restart.
            let err = table.append(vec![batch(&d, vec![3])]).await.unwrap_err();
            assert!(matches!(err, StorageError::UniqueViolation { .. }), "{err}");
            table.append(vec![batch(&d, vec![10])]).await.unwrap();
            assert_eq!(table.snapshot().manifest.row_count, 4);

            assert!(wh.drop_table(&d.name, false).await.unwrap());
            assert!(wh.list_objects().await.unwrap().is_empty());
            let wh = Warehouse::open(root).await.unwrap();
            assert!(wh.table(&d.name).is_none());
        }
    }

    #[tokio::test]
    async fn a_base_write_without_manifest_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let d = def(BaseFormat::Lance);
        let wh = Warehouse::open(root).await.unwrap();
        let table = wh.create_table(d.clone(), false).await.unwrap().unwrap();
        table.append(vec![batch(&d, vec![1])]).await.unwrap();
        // Simulate a crash between the base write and the manifest commit: append to the
        // Lance dataset directly, bypassing the manifest.
        let BaseSnapshot::Lance(ds) = &table.snapshot().base else { unreachable!() };
        let mut ds = ds.as_ref().clone();
        let reader = arrow::array::RecordBatchIterator::new(vec![Ok(batch(&d, vec![99]))], d.schema.clone());
        ds.append(reader, None).await.unwrap();
        drop(wh);

        let wh = Warehouse::open(root).await.unwrap();
        let table = wh.table(&d.name).unwrap();
        assert_eq!(count(&table).await, 1, "orphaned rows are not visible");
        table.append(vec![batch(&d, vec![99])]).await.unwrap();
        assert_eq!(count(&table).await, 2, "and not folded back in by the next write");
    }
}
