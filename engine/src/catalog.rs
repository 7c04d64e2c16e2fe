//! The warehouse as DataFusion sees it: catalog `tarn`, one schema per warehouse schema,
//! one [`TarnTable`] per table. Nothing is cached here: each lookup reads the
//! warehouse, so DDL from any session is visible to the next statement of every other.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::Result as DfResult;
use tarn_storage::{TableName, Warehouse};

use crate::pg_catalog;
use crate::provider::{DefaultParser, TarnTable};

pub const CATALOG_NAME: &str = "tarn";

#[derive(Debug)]
pub struct TarnCatalog {
    warehouse: Arc<Warehouse>,
    defaults: DefaultParser,
    pg_catalog: Arc<dyn SchemaProvider>,
}

impl TarnCatalog {
    pub fn new(warehouse: Arc<Warehouse>, defaults: DefaultParser) -> Self {
        Self { warehouse, defaults, pg_catalog: pg_catalog::schema() }
    }
}

impl CatalogProvider for TarnCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.warehouse.schemas();
        names.push(pg_catalog::SCHEMA.to_string());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == pg_catalog::SCHEMA {
            return Some(self.pg_catalog.clone());
        }
        self.warehouse.schema_exists(name).then(|| {
            Arc::new(TarnSchema {
                warehouse: self.warehouse.clone(),
                defaults: self.defaults.clone(),
                pg_catalog: self.pg_catalog.clone(),
                name: name.to_string(),
            }) as Arc<dyn SchemaProvider>
        })
    }
}

#[derive(Debug)]
pub struct TarnSchema {
    warehouse: Arc<Warehouse>,
    defaults: DefaultParser,
    /// Searched first for unqualified names, as Postgres' search path does.
    pg_catalog: Arc<dyn SchemaProvider>,
    name: String,
}

#[async_trait]
impl SchemaProvider for TarnSchema {
    fn table_names(&self) -> Vec<String> {
        self.warehouse.tables(&self.name)
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(table) = self.pg_catalog.table(name).await? {
            return Ok(Some(table));
        }
        let name = TableName::new(&self.name, name);
        Ok(self
            .warehouse
            .table(&name)
            .map(|t| Arc::new(TarnTable::new(t, &self.defaults)) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.warehouse.table(&TableName::new(&self.name, name)).is_some()
    }
}
