//! `pg_catalog`: the system catalogs and views tools read to learn what a database
//! holds (psql's `\d`, JDBC's `DatabaseMetaData`, SQLAlchemy's inspector, drivers
//! looking up a type), built from the warehouse at each lookup.
//!
//! - [`columns`]: each catalog's name, OID and columns, generated from PostgreSQL.
//! - [`table`]: how a catalog is declared and its rows built.
//! - [`relations`]: tables and indexes as the catalogs show them, with their OIDs.
//! - [`tables`]: the rows of each catalog.
//! - [`types`]: the types Tarn has, with their names (`format_type`, `::regtype`).
//! - [`functions`]: the catalog functions tools call (`format_type`, `pg_get_indexdef`...).
//! - [`catalog_literals`]: text literals compared with `"char"` and array columns.
//!
//! Unqualified names (`FROM pg_type`) resolve here first, as in Postgres.

pub mod catalog_literals;
pub mod columns;
pub mod functions;
pub mod relations;
pub mod security;
pub mod table;
pub mod tables;
pub mod types;

use crate::activity::Activity;
use std::sync::Arc;

use datafusion::catalog::{SchemaProvider, TableProvider};

use tarn_storage::Warehouse;

pub use catalog_literals::CatalogLiterals;
pub use types::{type_name, type_oid};

pub const SCHEMA: &str = "pg_catalog";
pub const PG_CATALOG_OID: u32 = 11;
pub const PUBLIC_OID: u32 = 2200;
pub const INFORMATION_SCHEMA_OID: u32 = 13_183;
/// The one role (the bootstrap superuser's OID in Postgres).
pub const OWNER_OID: u32 = 10;
pub const OWNER: &str = "tarn";
pub const DATABASE_OID: u32 = 16_384;
pub const VECTOR_EXTENSION_OID: u32 = 16_386;
/// The pgvector release whose SQL surface Tarn's vectors follow.
pub const PGVECTOR_VERSION: &str = "0.8.0";

/// The `pg_catalog` schema of a database.
pub fn schema(
    warehouse: Arc<Warehouse>,
    database: Arc<str>,
    activity: Arc<Activity>,
    reader: Arc<crate::access::Access>,
) -> Arc<dyn SchemaProvider> {
    Arc::new(PgCatalog { warehouse, database, activity, reader })
}

#[derive(Debug)]
struct PgCatalog {
    warehouse: Arc<Warehouse>,
    database: Arc<str>,
    activity: Arc<Activity>,
    /// The session reading (what `pg_stat_activity` shows it).
    reader: Arc<crate::access::Access>,
}

#[async_trait::async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        columns::ALL.iter().map(|d| d.name.to_string()).collect()
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        let source = tables::Source {
            warehouse: &self.warehouse,
            database: &self.database,
            owner: OWNER,
            activity: &self.activity,
            reader: Some(&self.reader),
        };
        Ok(tables::table(name, &source))
    }

    fn table_exist(&self, name: &str) -> bool {
        columns::ALL.iter().any(|d| d.name == name)
    }
}
