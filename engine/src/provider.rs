//! [`TarnTable`]: a table, pinned at one snapshot, as a DataFusion `TableProvider`.
//!
//! Scans delegate to the base format's reader: Lance's scanner (projection, filter and
//! limit pushed down, filters evaluated exactly by Lance) or DataFusion's Parquet
//! reader. Writes do not go through here: the session executes `INSERT` itself, so it
//! can apply constraints and `RETURNING` (see `session::insert`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use lance::datafusion::LanceTableProvider;
use tarn_storage::table::BaseSnapshot;
use tarn_storage::{Snapshot, Table};

/// Turns a column's `DEFAULT` SQL text into an expression (built by the engine, which
/// knows the functions a default may call).
#[derive(Clone)]
pub struct DefaultParser(Arc<dyn Fn(&str) -> Option<Expr> + Send + Sync>);

impl DefaultParser {
    pub fn new(parse: impl Fn(&str) -> Option<Expr> + Send + Sync + 'static) -> Self {
        Self(Arc::new(parse))
    }

    pub fn parse(&self, sql: &str) -> Option<Expr> {
        (self.0)(sql)
    }
}

impl std::fmt::Debug for DefaultParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DefaultParser")
    }
}

#[derive(Debug)]
pub struct TarnTable {
    table: Arc<Table>,
    snapshot: Arc<Snapshot>,
    schema: SchemaRef,
    defaults: HashMap<String, Expr>,
}

impl TarnTable {
    pub fn new(table: Arc<Table>, parse_default: &DefaultParser) -> Self {
        let snapshot = table.snapshot();
        let defaults = snapshot
            .def()
            .columns
            .iter()
            .filter_map(|c| Some((c.name.clone(), parse_default.parse(c.default.as_deref()?)?)))
            .collect();
        let stored = snapshot.schema();
        let fields: Vec<arrow::datatypes::Field> =
            stored.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
        let schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(fields, stored.metadata().clone()));
        Self { table, snapshot, schema, defaults }
    }

    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    fn lance(&self) -> Option<LanceTableProvider> {
        match &self.snapshot.base {
            BaseSnapshot::Lance(ds) => Some(LanceTableProvider::new(ds.clone(), false, false)),
            BaseSnapshot::Parquet(_) => None,
        }
    }
}

#[async_trait]
impl TableProvider for TarnTable {
    /// Every column nullable: NOT NULL is enforced by the writer (with Postgres' error),
    /// not by DataFusion building batches (which would fail with an anonymous one).
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        match self.lance() {
            Some(lance) => lance.supports_filters_pushdown(filters),
            None => Ok(vec![TableProviderFilterPushDown::Unsupported; filters.len()]),
        }
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match &self.snapshot.base {
            BaseSnapshot::Lance(_) => {
                let lance = self.lance().expect("lance base");
                lance.scan(state, projection, filters, limit).await
            }
            BaseSnapshot::Parquet(files) => {
                let schema = self.schema();
                if files.is_empty() {
                    let projected = match projection {
                        Some(p) => Arc::new(schema.project(p)?),
                        None => schema,
                    };
                    return Ok(Arc::new(EmptyExec::new(projected)));
                }
                let source = Arc::new(ParquetSource::new(schema));
                let mut builder = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), source)
                    .with_limit(limit)
                    .with_projection_indices(projection.cloned())?;
                for (url, size) in files {
                    let path = url.strip_prefix("file://").unwrap_or(url);
                    builder = builder.with_file(PartitionedFile::new(path.to_string(), *size));
                }
                Ok(DataSourceExec::from_data_source(builder.build()))
            }
        }
    }
}
