//! The warehouse as DataFusion sees it: catalog `tarn`, one schema per warehouse schema,
//! one [`TarnTable`] per table, one [`TarnView`] per view and one external table
//! provider per external table ([`crate::catalog::external`]). Nothing is cached here: each lookup reads the
//! warehouse, so DDL from any session is visible to the next statement of every other.
//! Each session has its own catalog: inside a transaction a table is read at the
//! snapshot the transaction pinned, with its own writes on top. `tarn_tables` (the
//! change store's state per table and bucket) resolves in every schema.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::Result as DfResult;
use tarn_storage::{TableName, Warehouse};

use crate::access::Access;
use crate::catalog::pg_catalog;
use crate::catalog::provider::{DefaultParser, TarnTable};
use crate::catalog::views::TarnView;
use crate::statements::transaction::TxState;

pub const CATALOG_NAME: &str = "tarn";

#[derive(Debug)]
pub struct TarnCatalog {
    warehouse: Arc<Warehouse>,
    defaults: DefaultParser,
    pg_catalog: Arc<dyn SchemaProvider>,
    tx: Arc<TxState>,
    access: Arc<Access>,
    external_locations: Arc<[PathBuf]>,
}

impl TarnCatalog {
    pub fn new(
        warehouse: Arc<Warehouse>,
        database: Arc<str>,
        defaults: DefaultParser,
        tx: Arc<TxState>,
        access: Arc<Access>,
        activity: Arc<crate::activity::Activity>,
        external_locations: Arc<[PathBuf]>,
    ) -> Self {
        Self {
            pg_catalog: pg_catalog::schema(warehouse.clone(), database, activity, access.clone()),
            warehouse,
            defaults,
            tx,
            access,
            external_locations,
        }
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
                tx: self.tx.clone(),
                access: self.access.clone(),
                external_locations: self.external_locations.clone(),
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
    tx: Arc<TxState>,
    /// The session's role: its row filters, and its privileges on external tables.
    access: Arc<Access>,
    external_locations: Arc<[PathBuf]>,
}

#[async_trait]
impl SchemaProvider for TarnSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.warehouse.tables(&self.name);
        names.extend(self.warehouse.views(&self.name));
        let externals = self.warehouse.all_externals();
        names.extend(externals.iter().filter(|e| e.name.schema == self.name).map(|e| e.name.table.clone()));
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(table) = self.pg_catalog.table(name).await? {
            return Ok(Some(table));
        }
        let name = TableName::new(&self.name, name);
        // The system views, unless a table of the schema has the name. The audit log
        // and the lineage events hold every session's statements: a superuser's to read.
        if crate::catalog::system::VIEWS.contains(&name.table.as_str())
            && self.warehouse.table(&name).is_none()
        {
            use crate::catalog::system::{TARN_AUDIT_LOG, TARN_LINEAGE_EVENTS};
            if name.table == TARN_AUDIT_LOG || name.table == TARN_LINEAGE_EVENTS {
                let reading = format!("read {}", name.table);
                self.access.require_superuser(&reading).map_err(|e| e.into_datafusion())?;
            }
            return crate::catalog::system::view(&self.warehouse, &name.table).await.map(Some);
        }
        if let Some(view) = self.warehouse.view(&name) {
            return Ok(Some(Arc::new(TarnView::new(view))));
        }
        if let Some(external) = self.warehouse.external(&name) {
            // An external table has no scan of Tarn's to check later: its privilege is
            // checked here, on the whole table.
            if let Some(subject) = self.access.subject() {
                crate::access::privileges::check_select(&subject, &name, &Default::default())
                    .map_err(|e| e.into_datafusion())?;
            }
            return crate::catalog::external::provider(&external, &self.external_locations, None).map(Some);
        }
        let Some(table) = self.warehouse.table(&name) else { return Ok(None) };
        let pinned = self.tx.pinned(&table).map_err(|e| e.into_datafusion())?;
        let provider = match pinned {
            Some((snapshot, overlay)) => TarnTable::at(table, snapshot, overlay, &self.defaults),
            None => TarnTable::new(table, &self.defaults),
        };
        let provider = match self.access.row_filter(&name).map_err(|e| e.into_datafusion())? {
            Some(filter) => provider.with_row_filter(filter),
            None => provider,
        };
        self.tx.note_touched(provider.table(), provider.snapshot().version(), false);
        Ok(Some(Arc::new(provider.with_masks(self.access.masks(&name)))))
    }

    fn table_exist(&self, name: &str) -> bool {
        let name = TableName::new(&self.name, name);
        self.warehouse.table(&name).is_some()
            || self.warehouse.view(&name).is_some()
            || self.warehouse.external(&name).is_some()
    }
}
