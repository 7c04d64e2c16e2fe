//! A read-only replica follows the writer: every `follow_interval` it reads the
//! warehouse's catalog again and moves each table to its newest manifest.
//!
//! A table moves from one committed manifest to the next, so a query (which takes one
//! snapshot per table) never sees a torn version. What the writer has only in its log is
//! not visible until it flushes (its `flush_interval`, 10 s unless a table sets less);
//! `tarn_tables.visible_lag_ms` says how old a replica's view of each table is. A
//! statement that writes to several tables at once is one log record on the writer,
//! but its tables flush one by one: a replica may see one table's part of it before
//! another's.
//!
//! A replica never writes (its fence refuses every commit), takes no lease and deletes
//! nothing: the writer's history retention keeps what its readers read. A query that
//! runs longer than that retention may find its files gone.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::Result;
use crate::manifest::Manifest;
use crate::table::{load_snapshot, Table};
use crate::table_def::{TableDef, TableName, ViewDef};
use crate::warehouse::Warehouse;

impl Warehouse {
    /// Reads the catalog again and moves every table to its newest manifest (a
    /// read-only replica's poll).
    pub async fn follow(&self) -> Result<()> {
        let known = self.all_tables();
        let before = self.shape();
        let catalog = self.read_catalog(&known, false).await?;
        self.replace_catalog(catalog);
        if self.shape() != before {
            self.catalog_generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Changes whenever the writer's DDL reaches this replica (plans made before are
    /// made again); always 0 on the writer, whose own statements say when.
    pub fn catalog_generation(&self) -> u64 {
        self.catalog_generation.load(Ordering::Acquire)
    }

    /// What plans depend on: relations, their definitions and indexes.
    fn shape(&self) -> Shape {
        let tables = self
            .all_tables()
            .iter()
            .map(|table| {
                let manifest = table.snapshot().manifest.clone();
                let def = &manifest.table;
                (
                    def.name.clone(),
                    (table.id(), def.clone(), manifest.indexes.clone(), manifest.text_indexes.clone()),
                )
            })
            .collect();
        let views = self.all_views().iter().map(|v| (v.name.clone(), v.as_ref().clone())).collect();
        let sequences = self.all_sequences().iter().map(|s| s.def().clone()).collect();
        let externals = self.all_externals().iter().map(|e| (e.name.clone(), e.as_ref().clone())).collect();
        Shape { schemas: self.schemas(), tables, views, sequences, externals, security: self.security() }
    }

    /// Starts a read-only replica's polling: every `interval` until the warehouse is
    /// closed or dropped.
    pub fn start_following(self: &Arc<Self>, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(warehouse) = weak.upgrade() else { return };
                if warehouse.is_closed() {
                    return;
                }
                if let Err(e) = warehouse.follow().await {
                    tracing::warn!(error = %e, "could not follow the writer's manifests");
                }
            }
        })
    }
}

#[derive(PartialEq)]
struct Shape {
    schemas: Vec<String>,
    #[allow(clippy::type_complexity)]
    tables: BTreeMap<
        TableName,
        (u64, TableDef, Vec<crate::vector_index::IndexDef>, Vec<crate::text_index::TextIndexDef>),
    >,
    views: BTreeMap<TableName, ViewDef>,
    externals: BTreeMap<TableName, crate::external::ExternalDef>,
    sequences: Vec<crate::sequence::SequenceDef>,
    security: Arc<crate::security::SecurityCatalog>,
}

impl Table {
    /// Moves the table to `manifest`, a newer one the writer committed. What did not
    /// change (the base, its key index) is kept.
    pub(crate) async fn follow(&self, manifest: Manifest) -> Result<()> {
        let current = self.snapshot();
        if manifest.version <= current.manifest.version {
            return Ok(());
        }
        let next = load_snapshot(
            &self.location,
            &self.session,
            &self.dir,
            manifest,
            self.codec.as_ref(),
            Some(&current),
        )
        .await?;
        *self.current.write().expect("snapshot lock poisoned") = Arc::new(next);
        Ok(())
    }
}
