//! The warehouse as DataFusion sees it: catalog `tarn`, one schema per warehouse schema,
//! one [`TarnTable`] per table. Nothing is cached here: each lookup reads the
//! warehouse, so DDL from any session is visible to the next statement of every other.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::Result as DfResult;
use tarn_storage::{TableName, Warehouse};

use crate::provider::{DefaultParser, TarnTable};

pub const CATALOG_NAME: &str = "tarn";

#[derive(Debug)]
pub struct TarnCatalog {
    warehouse: Arc<Warehouse>,
    defaults: DefaultParser,
}

impl TarnCatalog {
    pub fn new(warehouse: Arc<Warehouse>, defaults: DefaultParser) -> Self {
        Self { warehouse, defaults }
    }
}

impl CatalogProvider for TarnCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.warehouse.schemas()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.warehouse.schema_exists(name).then(|| {
            Arc::new(TarnSchema {
                warehouse: self.warehouse.clone(),
                defaults: self.defaults.clone(),
                name: name.to_string(),
            })
                as Arc<dyn SchemaProvider>
        })
    }
}

#[derive(Debug)]
pub struct TarnSchema {
    warehouse: Arc<Warehouse>,
    defaults: DefaultParser,
    name: String,
}

#[async_trait]
impl SchemaProvider for TarnSchema {
    fn table_names(&self) -> Vec<String> {
        self.warehouse.tables(&self.name)
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let name = TableName::new(&self.name, name);
        Ok(self.warehouse.table(&name).map(|t| Arc::new(TarnTable::new(t, &self.defaults)) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.warehouse.table(&TableName::new(&self.name, name)).is_some()
    }
}
