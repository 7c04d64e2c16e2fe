//! Lineage: OpenLineage run events for every statement that writes the warehouse
//! (`INSERT`, `UPDATE`, `DELETE`, `CREATE TABLE AS`, `COPY ... FROM`, table DDL) and,
//! with `SET tarn.lineage_reads = on`, every query.
//!
//! A statement is a run of a job: the job's namespace is the server's
//! (`lineage_namespace`), its name the session's `tarn.job_name`, else its
//! `application_name`, else `tarn`. A [`LineageRun`] emits `START` once the statement
//! is planned (its inputs, the tables it reads at their versions, and outputs known),
//! then `COMPLETE` (with the versions it wrote and its row count) or `FAIL` (with its
//! error's message), or `ABORT` when it is dropped unfinished (a client that stopped
//! reading a result, a `COPY` it failed). A write inside a transaction block completes
//! with the block: its `COMPLETE` comes at `COMMIT`, with the versions the commit made;
//! a `ROLLBACK` (or a failed block, or a failed commit) aborts it. Datasets are
//! `schema.table` in the warehouse URL's namespace, with the `schema`, `dataSource` and
//! `version` facets; an output has the `columnLineage` facet ([`columns`], from the
//! optimized plan), and DDL the `lifecycleStateChange` facet.
//!
//! Events go to the warehouse's lineage log (`tarn_storage::lineage`, read by
//! `tarn_lineage_events` and [`graph`]'s `lineage()`) and, when the server names an
//! endpoint, to it ([`transport`]): never in a statement's way.

pub mod columns;
pub mod graph;
mod transport;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement;
use tarn_storage::lineage::{
    ColumnLineage, DataSource, Dataset, DatasetFacets, DatasetVersion, ErrorMessage, EventType, Facet,
    FieldLineage, InputField, Job, JobFacets, JobType, LifecycleStateChange, LineageLog, OutputFacets,
    OutputStatistics, PreviousIdentifier, ProcessingEngine, Run, RunEvent, RunFacets, Schema, SchemaField,
    Shared, SqlJob, Subtype, TransformationType,
};
use tarn_storage::table_def::TableName;
use tarn_storage::Warehouse;

use crate::error::EngineError;
use crate::statements::session::{Output, Session};
use crate::statements::settings::{JOB_NAME, LINEAGE_READS};
use crate::statements::transaction::Touched;

/// Where a server's lineage goes.
#[derive(Debug, Clone)]
pub struct LineageConfig {
    /// The jobs' namespace.
    pub namespace: String,
    /// An OpenLineage HTTP endpoint (Marquez: `http://host:5000`); events are POSTed
    /// to `<url>/api/v1/lineage`.
    pub url: Option<String>,
}

/// A server's lineage: the log, the datasets' namespace and the endpoint's queue.
pub struct Lineage {
    namespace: String,
    /// The warehouse's URL: the datasets' namespace.
    datasets: String,
    /// The `dataSource` facet every dataset has.
    data_source: Shared<Facet<DataSource>>,
    /// Each table's `schema` facet, made once per definition (by the address of its
    /// Arrow schema, held here so it is not reused).
    schemas: std::sync::Mutex<HashMap<TableName, (SchemaRef, Shared<Facet<Schema>>)>>,
    log: Arc<LineageLog>,
    transport: Option<transport::Transport>,
}

impl std::fmt::Debug for Lineage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lineage").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

/// What a statement does, for its events.
pub(crate) enum Doing<'a> {
    /// A query (only with `tarn.lineage_reads`).
    Reads,
    /// `INSERT`, `UPDATE`, `DELETE`: `input` the rows written (for `UPDATE`, new values
    /// first), `None` for a delete.
    Writes { table: TableName, columns: Vec<String>, input: Option<&'a LogicalPlan>, update: bool },
    /// `CREATE TABLE AS`: the new table's columns (as the query names them) and the
    /// query's (optimized) plan.
    Creates { table: TableName, columns: Vec<String>, query: &'a LogicalPlan },
    /// `COPY ... FROM STDIN`.
    Copies { table: TableName },
    /// Table DDL: a lifecycle change of each table named (and the old name of a
    /// renamed one).
    Changes { tables: Vec<(TableName, Option<TableName>)>, change: &'static str },
}

impl Lineage {
    /// Opens the warehouse's lineage log (none on a read-only replica, which may not
    /// write).
    pub async fn open(
        warehouse: &Warehouse,
        config: &LineageConfig,
    ) -> crate::error::Result<Option<Arc<Lineage>>> {
        warehouse.keep_lineage().await?;
        let Some(log) = warehouse.lineage() else { return Ok(None) };
        let transport = config.url.as_deref().map(transport::Transport::start).transpose()?;
        let datasets = warehouse.url().to_string();
        let data_source = Shared::new(Facet::new(DataSource { name: "tarn".into(), uri: datasets.clone() }));
        Ok(Some(Arc::new(Lineage {
            namespace: config.namespace.clone(),
            datasets,
            data_source,
            schemas: Default::default(),
            log: log.clone(),
            transport,
        })))
    }

    fn emit(&self, event: RunEvent) {
        if let Some(transport) = &self.transport {
            transport.send(&event);
        }
        self.log.record(event);
    }

    fn dataset(&self, warehouse: &Warehouse, table: &TableName, version: Option<u64>) -> Dataset {
        Dataset {
            namespace: self.datasets.clone(),
            name: dataset_name(table),
            facets: DatasetFacets {
                schema: warehouse.table(table).map(|t| self.schema_facet(table, &t.snapshot().def().schema)),
                data_source: Some(self.data_source.clone()),
                version: version.map(|v| Facet::new(DatasetVersion { dataset_version: v.to_string() })),
                ..Default::default()
            },
            output_facets: None,
        }
    }

    /// The `schema` facet of `table`'s columns, `schema`.
    fn schema_facet(&self, table: &TableName, schema: &SchemaRef) -> Shared<Facet<Schema>> {
        let mut schemas = self.schemas.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((known, facet)) = schemas.get(table) {
            if Arc::ptr_eq(known, schema) {
                return facet.clone();
            }
        }
        let facet = Shared::new(Facet::new(Schema {
            fields: schema
                .fields()
                .iter()
                .map(|f| SchemaField {
                    name: f.name().clone(),
                    data_type: crate::types::pg_type_of(f).name.to_string(),
                })
                .collect(),
        }));
        schemas.insert(table.clone(), (schema.clone(), facet.clone()));
        facet
    }

    /// The `columnLineage` facet of `columns` (named as the output's columns are) from
    /// the rows that fill them; an update leaves out a column it writes as it was (its
    /// own value unchanged, whatever decided the rows).
    fn column_facet(
        &self,
        names: &[String],
        input: &LogicalPlan,
        updated: Option<&TableName>,
    ) -> Option<Facet<ColumnLineage>> {
        let mut facet = ColumnLineage::default();
        for (name, edges) in names.iter().zip(columns::column_lineage(input)) {
            let unchanged = updated.is_some_and(|table| {
                edges.iter().all(|(source, uses)| {
                    let itself = &source.table == table && &source.column == name;
                    uses.iter().all(|t| {
                        t.kind == TransformationType::Indirect || (itself && t.subtype == Subtype::Identity)
                    })
                })
            });
            if edges.is_empty() || unchanged {
                continue;
            }
            let input_fields = edges
                .into_iter()
                .map(|(source, uses)| InputField {
                    namespace: self.datasets.clone(),
                    name: dataset_name(&source.table),
                    field: source.column,
                    transformations: uses.into_iter().collect(),
                })
                .collect();
            facet.fields.insert(name.clone(), FieldLineage { input_fields });
        }
        (!facet.fields.is_empty()).then(|| Facet::new(facet))
    }
}

/// A table's dataset name: `schema.table`, the schema always named.
fn dataset_name(table: &TableName) -> String {
    format!("{}.{}", table.schema, table.table)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A UUID of version 7: milliseconds since the epoch, then 74 bits of a generator
/// seeded once from the system's randomness (SplitMix64: unique per process, cheap).
fn run_id() -> String {
    static STATE: LazyLock<AtomicU64> = LazyLock::new(|| {
        use ring::rand::SecureRandom;
        let mut seed = [0u8; 8];
        let _ = ring::rand::SystemRandom::new().fill(&mut seed);
        AtomicU64::new(
            u64::from_le_bytes(seed) ^ chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64,
        )
    });
    let next = || {
        let mut z =
            STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let millis = chrono::Utc::now().timestamp_millis() as u64 & 0xffff_ffff_ffff;
    let (a, b) = (next(), next());
    format!(
        "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
        millis >> 16,
        millis & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

/// A statement's run (see the module docs): `START` is out; one of `COMPLETE`, `FAIL`
/// or (dropped) `ABORT` follows.
pub struct LineageRun {
    lineage: Arc<Lineage>,
    warehouse: Arc<Warehouse>,
    /// It makes its outputs' versions outside a transaction (`CREATE TABLE AS`, DDL):
    /// their versions once it completed are the ones it made.
    makes: bool,
    /// It writes rows in a transaction (`INSERT`, `UPDATE`, `DELETE`, `COPY`): inside a
    /// block it completes with the block's `COMMIT`.
    writes: bool,
    /// The `START` event, the others' template.
    event: Option<RunEvent>,
    /// The tables of its outputs, in the event's order.
    outputs: Vec<TableName>,
}

/// What a run is, when it starts.
pub(crate) struct Started<'a> {
    pub job: String,
    pub sql: &'a str,
    pub doing: Doing<'a>,
    /// The tables read so far (planning resolved them), at their versions.
    pub touched: Vec<Touched>,
}

impl LineageRun {
    pub(crate) fn start(
        lineage: &Arc<Lineage>,
        warehouse: &Arc<Warehouse>,
        started: Started<'_>,
    ) -> LineageRun {
        let makes = matches!(started.doing, Doing::Creates { .. } | Doing::Changes { .. });
        let writes = matches!(started.doing, Doing::Writes { .. } | Doing::Copies { .. });
        let job_type = match &started.doing {
            Doing::Reads | Doing::Writes { .. } | Doing::Creates { .. } => "QUERY",
            Doing::Copies { .. } => "COPY",
            Doing::Changes { .. } => "DDL",
        };
        let job = Shared::new(Job {
            namespace: lineage.namespace.clone(),
            name: started.job,
            facets: JobFacets {
                sql: Some(Facet::new(SqlJob { query: started.sql.to_string(), dialect: "postgres".into() })),
                job_type: Some(Facet::new(JobType {
                    processing_type: "BATCH".into(),
                    integration: "TARN".into(),
                    job_type: job_type.into(),
                })),
            },
        });
        let run = Run {
            run_id: run_id(),
            facets: RunFacets {
                processing_engine: Some(Facet::new(ProcessingEngine {
                    version: env!("CARGO_PKG_VERSION").into(),
                    name: "tarn".into(),
                })),
                error_message: None,
            },
        };
        let outputs: Vec<TableName> = match &started.doing {
            Doing::Reads => Vec::new(),
            Doing::Writes { table, .. } | Doing::Creates { table, .. } | Doing::Copies { table } => {
                vec![table.clone()]
            }
            Doing::Changes { tables, .. } => tables.iter().map(|(table, _)| table.clone()).collect(),
        };
        let mut event = RunEvent::new(EventType::Start, now(), run, job);
        event.inputs = started
            .touched
            .iter()
            .filter(|t| !t.write)
            .map(|t| lineage.dataset(warehouse, &t.table, Some(t.version)))
            .collect();
        event.outputs = match started.doing {
            Doing::Reads => Vec::new(),
            Doing::Writes { table, columns, input, update } => {
                let mut output = lineage.dataset(warehouse, &table, None);
                output.facets.column_lineage =
                    input.and_then(|input| lineage.column_facet(&columns, input, update.then_some(&table)));
                vec![output]
            }
            Doing::Creates { table, columns, query } => {
                let mut output = lineage.dataset(warehouse, &table, None);
                output.facets.column_lineage = lineage.column_facet(&columns, query, None);
                output.facets.lifecycle_state_change = Some(lifecycle("CREATE", None, lineage));
                vec![output]
            }
            Doing::Copies { table } => vec![lineage.dataset(warehouse, &table, None)],
            Doing::Changes { tables, change } => tables
                .iter()
                .map(|(table, previous)| {
                    let mut output = lineage.dataset(warehouse, table, None);
                    output.facets.lifecycle_state_change =
                        Some(lifecycle(change, previous.as_ref(), lineage));
                    output
                })
                .collect(),
        };
        lineage.emit(event.clone());
        LineageRun {
            outputs,
            lineage: lineage.clone(),
            warehouse: warehouse.clone(),
            makes,
            writes,
            event: Some(event),
        }
    }

    /// Whether it writes rows in a transaction (see the field).
    pub(crate) fn writes(&self) -> bool {
        self.writes
    }

    /// The statement succeeded (or, in a block, the block committed): `touched` are
    /// the tables it read and wrote, `rows` its count.
    pub(crate) fn complete(mut self, touched: &[Touched], rows: Option<u64>) {
        let Some(mut event) = self.event.take() else { return };
        event.event_type = EventType::Complete;
        event.event_time = now();
        for (output, table) in event.outputs.iter_mut().zip(&self.outputs) {
            let written = touched.iter().find(|t| t.write && &t.table == table);
            // What the statement made: the table's columns and version as they are now.
            let now = self.warehouse.table(table);
            let version = written
                .map(|t| t.version)
                .or_else(|| self.makes.then(|| now.as_ref().map(|t| t.snapshot().version())).flatten());
            if let Some(now) = &now {
                output.facets.schema = Some(self.lineage.schema_facet(table, &now.snapshot().def().schema));
            }
            if let Some(version) = version {
                output.facets.version =
                    Some(Facet::new(DatasetVersion { dataset_version: version.to_string() }));
            }
            if let Some(rows) = rows {
                output.output_facets = Some(OutputFacets {
                    output_statistics: Some(Facet::new(OutputStatistics { row_count: rows })),
                });
            }
        }
        // Tables read once the statement ran (a write's, planned again in its own
        // transaction).
        for t in touched.iter().filter(|t| !t.write) {
            let name = dataset_name(&t.table);
            if !event.inputs.iter().any(|i| i.name == name) {
                event.inputs.push(self.lineage.dataset(&self.warehouse, &t.table, Some(t.version)));
            }
        }
        self.lineage.emit(event);
    }

    /// The statement failed with `error`.
    pub(crate) fn fail(mut self, error: &dyn std::fmt::Display) {
        let Some(mut event) = self.event.take() else { return };
        event.event_type = EventType::Fail;
        event.event_time = now();
        event.run.facets.error_message =
            Some(Facet::new(ErrorMessage { message: error.to_string(), programming_language: "SQL".into() }));
        self.lineage.emit(event);
    }

    /// Ends the run as `outcome` says: a command now, a result when its rows have been
    /// read (`FAIL` if they fail, `ABORT` if the client stops reading).
    pub(crate) fn finish(
        self,
        touched: Vec<Touched>,
        outcome: Result<Output, EngineError>,
    ) -> Result<Output, EngineError> {
        match outcome {
            Err(e) => {
                self.fail(&e);
                Err(e)
            }
            Ok(Output::Command(tag)) => {
                self.complete(&touched, tag.rows);
                Ok(Output::Command(tag))
            }
            Ok(Output::Rows { schema, stream, command }) => {
                let stream = self.watch(touched, stream);
                Ok(Output::Rows { schema, stream, command })
            }
        }
    }

    /// `stream`, ending the run when it ends.
    pub(crate) fn watch(
        self,
        touched: Vec<Touched>,
        stream: datafusion::execution::SendableRecordBatchStream,
    ) -> datafusion::execution::SendableRecordBatchStream {
        let schema = stream.schema();
        let watched = Watched { inner: stream, run: Some(self), touched, rows: 0 };
        Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, watched))
    }
}

/// A result's rows on their way, with the run they end.
struct Watched {
    inner: datafusion::execution::SendableRecordBatchStream,
    run: Option<LineageRun>,
    touched: Vec<Touched>,
    rows: u64,
}

impl futures::Stream for Watched {
    type Item = datafusion::error::Result<arrow::array::RecordBatch>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        let polled = this.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(batch))) => this.rows += batch.num_rows() as u64,
            Poll::Ready(Some(Err(e))) => {
                if let Some(run) = this.run.take() {
                    run.fail(e);
                }
            }
            Poll::Ready(None) => {
                if let Some(run) = this.run.take() {
                    run.complete(&this.touched, Some(this.rows));
                }
            }
            Poll::Pending => {}
        }
        polled
    }
}

impl Session {
    /// The run of a statement doing `doing`, started; `None` when the server emits no
    /// lineage, or `doing` reads and the session did not ask for reads.
    pub(crate) fn lineage_run(&self, sql: &str, doing: Doing<'_>) -> Option<LineageRun> {
        let lineage = self.engine.lineage()?;
        if matches!(doing, Doing::Reads) && self.settings.get(LINEAGE_READS).ok() != Some("on") {
            return None;
        }
        let redacted;
        let sql = match self.engine.audit_redacts_literals() {
            true => {
                redacted = crate::redact_literals(sql);
                redacted.as_str()
            }
            false => sql,
        };
        let started = Started { job: self.job_name(), sql, doing, touched: self.txn.touched_now() };
        Some(LineageRun::start(lineage, self.engine.warehouse(), started))
    }

    /// `tarn.job_name`, else `application_name`, else `tarn`.
    fn job_name(&self) -> String {
        for setting in [JOB_NAME, "application_name"] {
            if let Ok(name) = self.settings.get(setting) {
                if !name.is_empty() {
                    return name.to_string();
                }
            }
        }
        "tarn".to_string()
    }
}

impl Drop for LineageRun {
    fn drop(&mut self) {
        if let Some(mut event) = self.event.take() {
            event.event_type = EventType::Abort;
            event.event_time = now();
            self.lineage.emit(event);
        }
    }
}

fn lifecycle(change: &str, previous: Option<&TableName>, lineage: &Lineage) -> Facet<LifecycleStateChange> {
    Facet::new(LifecycleStateChange {
        lifecycle_state_change: change.to_string(),
        previous_identifier: previous
            .map(|p| PreviousIdentifier { namespace: lineage.datasets.clone(), name: dataset_name(p) }),
    })
}

/// The table DDL `statement` is, for its events: the tables and the change.
pub(crate) fn table_changes(statement: &Statement) -> Option<Doing<'static>> {
    use datafusion::sql::sqlparser::ast::{AlterTableOperation, ObjectType, RenameTableNameKind};
    let name = |n: &datafusion::sql::sqlparser::ast::ObjectName| crate::statements::ddl::table_name(n).ok();
    let (tables, change) = match statement {
        Statement::CreateTable(create) if create.query.is_none() && !create.temporary => {
            (vec![(name(&create.name)?, None)], "CREATE")
        }
        Statement::AlterTable(alter) => {
            let old = name(&alter.name)?;
            match alter.operations.as_slice() {
                [AlterTableOperation::RenameTable { table_name }] => {
                    let new = match table_name {
                        RenameTableNameKind::As(n) | RenameTableNameKind::To(n) => n,
                    };
                    let mut new = name(new)?;
                    if new.schema != old.schema {
                        new.schema = old.schema.clone();
                    }
                    (vec![(new, Some(old))], "RENAME")
                }
                _ => (vec![(old, None)], "ALTER"),
            }
        }
        Statement::Drop { object_type: ObjectType::Table, names, temporary: false, .. } => {
            (names.iter().filter_map(|n| Some((name(n)?, None))).collect(), "DROP")
        }
        Statement::Truncate(truncate) => {
            (truncate.table_names.iter().filter_map(|t| Some((name(&t.name)?, None))).collect(), "TRUNCATE")
        }
        _ => return None,
    };
    (!tables.is_empty()).then_some(Doing::Changes { tables, change })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_version_7_uuids_in_time_order() {
        let (a, b) = (run_id(), run_id());
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(a, b);
        assert!(a[..8] <= b[..8]);
    }
}
