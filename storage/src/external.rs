//! External tables: Parquet files and Iceberg tables Tarn reads where they lie and
//! never writes (`CREATE EXTERNAL TABLE name [(columns)] STORED AS PARQUET | ICEBERG
//! LOCATION '...'`).
//!
//! The warehouse keeps only the definition, `_tarn/external/<schema>/<name>.json`: the
//! location as given (a file or a folder of Parquet files), the columns (declared, or
//! inferred from the files when the table was created or last refreshed). The engine
//! reads the files at each query (so new files in a folder are seen at once), checks
//! that the location is under one the server's configuration allows, and reads the
//! table's columns by name from each file.
//!
//! External tables share their schema's names with tables, views and sequences.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error::{Result, StorageError};
use crate::table_def::{Comments, TableName};
use crate::warehouse::{absent, Warehouse};

/// The files' format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExternalFormat {
    Parquet,
    /// An Apache Iceberg table: its folder, or one of its metadata files.
    Iceberg,
}

impl ExternalFormat {
    pub fn name(self) -> &'static str {
        match self {
            ExternalFormat::Parquet => "parquet",
            ExternalFormat::Iceberg => "iceberg",
        }
    }
}

/// An external table's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalDef {
    pub name: TableName,
    pub format: ExternalFormat,
    /// A file or a folder (a Parquet file or folder of them; an Iceberg table's folder
    /// or metadata file), resolved to an absolute local path.
    pub location: String,
    pub schema: SchemaRef,
    /// The columns were declared (else inferred, and `REFRESH TABLE` infers them again).
    pub declared: bool,
    #[serde(default, skip_serializing_if = "Comments::is_empty")]
    pub comments: Comments,
}

/// Where an external table's definition is kept.
pub(crate) fn external_path(name: &TableName) -> Path {
    Path::from("_tarn").join("external").join(name.schema.as_str()).join(format!("{}.json", name.table))
}

impl Warehouse {
    /// The external table `name`.
    pub fn external(&self, name: &TableName) -> Option<Arc<ExternalDef>> {
        self.catalog.read().expect("catalog lock").externals.get(name).cloned()
    }

    /// The external tables of every schema.
    pub fn all_externals(&self) -> Vec<Arc<ExternalDef>> {
        self.catalog.read().expect("catalog lock").externals.values().cloned().collect()
    }

    /// `CREATE EXTERNAL TABLE`: durable when it returns. Returns false when a relation
    /// of that name existed and `if_not_exists` was given.
    pub async fn create_external(&self, def: ExternalDef, if_not_exists: bool) -> Result<bool> {
        let _ddl = self.ddl_lock().await?;
        let name = def.name.clone();
        if !self.name_is_free(&name, if_not_exists)? {
            return Ok(false);
        }
        self.put_definition(&external_path(&name), &def).await?;
        info!(table = %name, location = %def.location, "created external table");
        self.catalog.write().expect("catalog lock").externals.insert(name, Arc::new(def));
        Ok(true)
    }

    /// `REFRESH TABLE`: the definition with its columns read again.
    pub async fn replace_external(&self, def: ExternalDef) -> Result<()> {
        let _ddl = self.ddl_lock().await?;
        if self.external(&def.name).is_none() {
            return Err(StorageError::TableNotFound { name: def.name.clone() });
        }
        self.put_definition(&external_path(&def.name), &def).await?;
        self.catalog.write().expect("catalog lock").externals.insert(def.name.clone(), Arc::new(def));
        Ok(())
    }

    /// `DROP TABLE` of an external table: its definition goes, its files stay.
    pub async fn drop_external(&self, name: &TableName, if_exists: bool) -> Result<bool> {
        let _ddl = self.ddl_lock().await?;
        if self.external(name).is_none() {
            return absent(name, if_exists);
        }
        self.location.store().delete(&external_path(name)).await?;
        self.catalog.write().expect("catalog lock").externals.remove(name);
        info!(table = %name, "dropped external table");
        Ok(true)
    }
}
