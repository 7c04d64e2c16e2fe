//! A session: one client connection's settings, transaction state and statements.
//!
//! A statement is planned by [`Session::prepare`] (for the extended protocol's Describe:
//! parameter types and result columns); [`Session::execute`] runs it with the plan the
//! statement keeps (`plan_cache.rs`), re-pinned to the newest snapshot (or, inside a
//! transaction, the one it pinned), or plans it again when the catalog or a setting
//! changed. The texts a session sees again (Parse of the same SQL, simple queries) keep
//! their prepared statements too. Queries go to DataFusion, except primary-key lookups (`lookup.rs`);
//! writes are planned here and carried out in `dml.rs`; DDL, `SET`/`SHOW` and
//! transaction control in `utility.rs`.
//!
//! Transactions: `tx` is the block's state as the wire reports it (an error inside a
//! block gives 25P02 until `ROLLBACK`); `txn` holds its snapshots and writes, committed
//! as one at `COMMIT`. A write outside a block is a transaction of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::ScalarValue;
use datafusion::datasource::{provider_as_source, MemTable};
use datafusion::execution::context::SQLOptions;
use datafusion::execution::session_state::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{DmlStatement, LogicalPlan, TableScan, WriteOp};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{execute_stream, ExecutionPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, SelectItem, Statement, TableObject};
use tarn_storage::{StorageError, Table, TableName};

use crate::catalog::provider::TarnTable;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::statements::column_names::{arrow_schema, name_output_columns, result_schema, typed_as};
use crate::statements::ddl;
use crate::statements::dml::{DmlKind, OnConflict, PlannedWrite};
use crate::statements::literals::{rewrite_insert_values, rewrite_typed_casts, InsertTarget};
use crate::statements::lookup::{KeyLookup, KeyValue};
use crate::statements::params::{
    bind_params, bind_table_function_args, param_types, type_cast_parameters, with_params, ParamHints,
};
use crate::statements::parser::{parse_sql, ParsedStatement};
use crate::statements::plan_cache::{
    keepable, optimizable_ahead, reads_no_table, repin, reusable_physical, typed_placeholders, KeptPlan,
    Optimized, PlanSlot, PlanStamp, TextCache,
};
use crate::statements::plan_template;
use crate::statements::settings::Settings;
use crate::statements::transaction::TxState;
use crate::statements::utility::{changes_catalog, show_schema};

/// Where the session stands with respect to `BEGIN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Idle,
    InBlock,
    /// An error happened inside the block: only `COMMIT`/`ROLLBACK` are accepted.
    Failed,
}

/// A statement, planned once for its parameter types and result columns.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The SQL text it came from (for logs).
    pub sql: Arc<str>,
    /// `sql` held other statements too (a simple query of several).
    pub shared_text: bool,
    pub statement: ParsedStatement,
    /// Types the client declared for the parameters (`None`: let us infer).
    pub declared: Vec<Option<DataType>>,
    /// One type per parameter, `$1` first.
    pub param_types: Vec<DataType>,
    /// Result columns; `None` when the statement returns no rows.
    pub result: Option<SchemaRef>,
    /// The plan kept between executions (shared by clones).
    plans: Arc<PlanSlot>,
}

impl Prepared {
    /// A statement to run without describing it first (the simple protocol's).
    fn unprepared(sql: Arc<str>, statement: ParsedStatement) -> Self {
        Prepared {
            sql,
            shared_text: false,
            statement,
            declared: Vec::new(),
            param_types: Vec::new(),
            result: None,
            plans: Arc::default(),
        }
    }
}

/// What a statement produced.
pub enum Output {
    Rows { schema: SchemaRef, stream: SendableRecordBatchStream, command: RowsCommand },
    Command(CommandTag),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsCommand {
    /// Tag `SELECT n`.
    Select,
    /// `INSERT ... RETURNING`: tag `INSERT 0 n`.
    Insert,
    /// `UPDATE ... RETURNING`: tag `UPDATE n`.
    Update,
    /// `DELETE ... RETURNING`: tag `DELETE n`.
    Delete,
    /// `SHOW`: tag `SHOW`.
    Show,
    /// `FETCH` from a cursor: tag `FETCH n`. Rows of a `BINARY` cursor go in binary
    /// format where the client did not choose one (the simple protocol).
    Fetch { binary: bool },
}

/// A CommandComplete tag: `CREATE TABLE`, `INSERT 0 5` (rows given), ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTag {
    pub command: String,
    pub rows: Option<u64>,
}

impl CommandTag {
    pub(crate) fn new(command: &str) -> Self {
        Self { command: command.to_string(), rows: None }
    }

    pub(crate) fn with_rows(command: &str, rows: u64) -> Self {
        Self { command: command.to_string(), rows: Some(rows) }
    }
}

/// A statement after planning, ready to run.
enum Planned {
    Query(LogicalPlan),
    /// A query optimized before its run, its parameters' values bound.
    Optimized(LogicalPlan),
    /// A query that reads no table, planned to the end before its run; `named` are its
    /// result columns.
    Physical {
        named: SchemaRef,
        plan: Arc<dyn ExecutionPlan>,
    },
    /// `SELECT ... FROM t WHERE pk = value`, answered without DataFusion.
    Lookup(KeyLookup),
    Write(PlannedWrite),
    CreateTableAs {
        name: TableName,
        if_not_exists: bool,
        query: LogicalPlan,
    },
    Other,
}

pub struct Session {
    pub(crate) engine: Arc<Engine>,
    pub(crate) ctx: SessionContext,
    /// `ctx`'s state, copied once (a copy per statement costs more than a small
    /// statement) and again when a setting changes it; its clock is set per statement.
    pub(crate) planning: SessionState,
    /// The execution context made from `planning`.
    task: Arc<TaskContext>,
    /// Statements by SQL text: the extended protocol's (with the stamp they were
    /// described under and the declared parameter types) and the simple protocol's.
    described: TextCache<(PlanStamp, Vec<Option<DataType>>, Arc<Prepared>)>,
    simple: TextCache<Arc<[Arc<Prepared>]>>,
    pub(crate) settings: Settings,
    pub(crate) tx: TxStatus,
    /// Set by a result stream that failed after `execute` returned (rows are computed
    /// as the client reads them); the next statement folds it into `tx`.
    stream_failed: Arc<AtomicBool>,
    /// Snapshots and uncommitted writes of the open transaction (shared with this
    /// session's catalog).
    pub(crate) txn: Arc<TxState>,
    /// Open cursors (`DECLARE`).
    pub(crate) cursors: crate::statements::cursors::Cursors,
    /// What `set_config()` set during the statement, applied when it ends.
    set_config: crate::statements::settings::PendingSettings,
    /// The session's temporary tables and views.
    pub(crate) temp: crate::statements::temp::TempSchema,
    /// The open transaction block is `READ ONLY` (`BEGIN READ ONLY`, `SET TRANSACTION
    /// READ ONLY`, or `default_transaction_read_only` when it began).
    pub(crate) block_read_only: bool,
    /// Who the session is, and its row filters (shared with its catalog).
    pub(crate) access: Arc<crate::access::Access>,
    /// The lineage runs of the open block's writes, with their row counts: completed
    /// by its `COMMIT`, aborted (dropped) by its `ROLLBACK` or failure.
    pub(crate) lineage_pending: Vec<(crate::lineage::LineageRun, Option<u64>)>,
}

impl Drop for Session {
    /// The session's temporary relations go with it (in the background: a drop cannot
    /// wait; a server that stops first leaves them to the next one's start).
    fn drop(&mut self) {
        if !self.temp.exists() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let temp = self.temp.clone();
            runtime.spawn(async move {
                if let Err(e) = temp.drop_all().await {
                    tracing::warn!(error = %e, "could not drop a session's temporary relations");
                }
            });
        }
    }
}

impl Session {
    pub(crate) fn new(
        engine: Arc<Engine>,
        ctx: SessionContext,
        user: &str,
        txn: Arc<TxState>,
        access: Arc<crate::access::Access>,
        number: u64,
    ) -> Self {
        let mut settings = Settings::new(user);
        if engine.warehouse().is_read_only() {
            settings = settings.on_standby();
        }
        ctx.register_udf(crate::catalog::pg_catalog::functions::current_setting(settings.all()));
        let set_config = crate::statements::settings::PendingSettings::default();
        ctx.register_udf(crate::statements::settings::set_config(set_config.clone()));
        crate::functions::register_user(&ctx, user, user);
        crate::functions::sequences::register(&ctx, Arc::downgrade(engine.warehouse()));
        let planning = ctx.state();
        let task = planning.task_ctx();
        let temp = crate::statements::temp::TempSchema::new(engine.warehouse().clone(), number);
        Self {
            engine,
            ctx,
            planning,
            task,
            described: TextCache::default(),
            simple: TextCache::default(),
            settings,
            tx: TxStatus::Idle,
            stream_failed: Arc::default(),
            txn,
            cursors: Default::default(),
            set_config,
            temp,
            block_read_only: false,
            access,
            lineage_pending: Vec::new(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Applies what `set_config()` set during the statement that just ended (checked
    /// already), as `SET` would. The server calls it before it reports changed settings.
    pub fn apply_set_config(&mut self) {
        let pending =
            std::mem::take(&mut *self.set_config.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        // A statement whose rows failed takes its settings with it (see `note_error`).
        if pending.is_empty() || self.stream_failed.load(Ordering::Relaxed) {
            return;
        }
        for (name, value) in pending {
            if let Err(e) = self.settings.set(&name, &value) {
                tracing::warn!(setting = name, error = %e, "set_config value no longer applies");
            }
        }
        self.sync_search_settings();
    }

    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    pub fn tx_status(&self) -> TxStatus {
        if self.stream_failed.load(Ordering::Relaxed) && self.tx == TxStatus::InBlock {
            return TxStatus::Failed;
        }
        self.tx
    }

    /// The statements of a simple query, to run one by one with [`Session::execute`]
    /// (no parameters). A text seen before gives the same statements, with their plans.
    pub fn simple_statements(&mut self, sql: &str) -> Result<Arc<[Arc<Prepared>]>> {
        if let Some(statements) = self.simple.get(sql) {
            return Ok(statements.clone());
        }
        let text: Arc<str> = sql.into();
        let parsed = parse_sql(sql)?;
        let shared_text = parsed.len() > 1;
        let statements: Arc<[Arc<Prepared>]> = parsed
            .into_iter()
            .map(|statement| {
                Arc::new(Prepared { shared_text, ..Prepared::unprepared(text.clone(), statement) })
            })
            .collect();
        self.simple.put(sql, statements.clone());
        Ok(statements)
    }

    /// Parses and plans one statement (the extended protocol's Parse) to learn its
    /// parameter and result types; runs nothing. `None` for an empty query. The same
    /// text with the same declared types, seen again under the same catalog and
    /// settings, gives the statement described before (with its plan).
    pub async fn prepare_sql(
        &mut self,
        sql: &str,
        declared: Vec<Option<DataType>>,
    ) -> Result<Option<Arc<Prepared>>> {
        let stamp = self.plan_stamp();
        if let Some((described, types, prepared)) = self.described.get(sql) {
            if *described == stamp && *types == declared {
                let prepared = prepared.clone();
                self.check_not_failed(&prepared.statement.statement)?;
                return Ok(Some(prepared));
            }
        }
        let mut statements = parse_sql(sql).inspect_err(|_| self.note_error())?;
        if statements.len() > 1 {
            self.note_error();
            return Err(EngineError::syntax("cannot insert multiple commands into a prepared statement"));
        }
        let Some(statement) = statements.pop() else { return Ok(None) };
        // A FETCH's columns are its cursor's, which a DECLARE may change: not kept.
        let kept = !matches!(statement.statement, Statement::Fetch { .. });
        let prepared = Arc::new(self.prepare(sql.into(), statement, declared.clone()).await?);
        if kept {
            self.described.put(sql, (stamp, declared, prepared.clone()));
        }
        Ok(Some(prepared))
    }

    /// Plans a statement to learn its parameter and result types. Runs nothing.
    async fn prepare(
        &mut self,
        sql: Arc<str>,
        statement: ParsedStatement,
        declared: Vec<Option<DataType>>,
    ) -> Result<Prepared> {
        self.planning.mark_start_execution();
        let statement = match self.temp.qualify(&statement.statement) {
            Some(qualified) => ParsedStatement { statement: qualified, ..statement },
            None => statement,
        };
        let outcome = self.describe(sql, statement, declared).await;
        self.note(&outcome);
        outcome
    }

    /// Runs a prepared statement with parameter values (already of `param_types`).
    pub async fn execute(&mut self, prepared: &Prepared, params: Vec<ScalarValue>) -> Result<Output> {
        // A `set_config()` whose rows were read after the statement returned.
        self.apply_set_config();
        self.txn.take_touched();
        let outcome = self.run(prepared, params).await;
        self.note(&outcome);
        outcome
    }

    /// The tables the last statement read and wrote, with their versions (noted only
    /// when the server keeps an audit trail); taking them forgets them.
    pub fn take_touched(&self) -> Vec<crate::statements::transaction::Touched> {
        self.txn.take_touched()
    }

    /// What a plan kept now is made under (see `plan_cache.rs`).
    fn plan_stamp(&self) -> PlanStamp {
        PlanStamp { catalog: self.engine.catalog_epoch(), settings: self.settings.generation() }
    }

    /// Copies `ctx`'s state again after a setting changed it.
    pub(crate) fn refresh_planning_state(&mut self) {
        self.planning = self.ctx.state();
        self.task = self.planning.task_ctx();
    }

    /// Forgets the statements kept by text (`DISCARD`).
    pub(crate) fn forget_statements(&mut self) {
        self.described.clear();
        self.simple.clear();
    }

    /// A statement failed: an explicit block fails (25P02 until `ROLLBACK`); outside
    /// one, the transaction the statement opened for itself is dropped (it normally is
    /// already; not when the statement panicked halfway, which the server turns into an
    /// error too). Also for errors outside `prepare`/`execute` (decoding a parameter).
    pub fn note_error(&mut self) {
        // The failed statement's `set_config()` calls go with it, as in PostgreSQL.
        self.set_config.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        match self.tx {
            TxStatus::InBlock => self.tx = TxStatus::Failed,
            TxStatus::Idle if self.txn.is_active() => {
                self.txn.take();
            }
            _ => {}
        }
    }

    fn note<T>(&mut self, outcome: &Result<T>) {
        if outcome.is_err() {
            self.note_error();
        }
    }

    fn check_not_failed(&mut self, statement: &Statement) -> Result<()> {
        if self.stream_failed.swap(false, Ordering::Relaxed) {
            self.note_error();
        }
        let ends_block = matches!(statement, Statement::Commit { .. } | Statement::Rollback { .. });
        if self.tx == TxStatus::Failed && !ends_block {
            return Err(EngineError::InFailedTransaction);
        }
        Ok(())
    }

    /// Whether the statement about to run is in a read-only transaction: the open
    /// block's mode, or for a statement outside one, `default_transaction_read_only`.
    pub(crate) fn read_only(&self) -> bool {
        if self.engine.warehouse().is_read_only() {
            return true;
        }
        match self.tx {
            TxStatus::Idle => self.settings.get("default_transaction_read_only").is_ok_and(|v| v == "on"),
            _ => self.block_read_only,
        }
    }

    /// A read-only transaction reads: writes and DDL other than of temporary relations
    /// are 25006, as in PostgreSQL.
    fn check_read_only(&self, statement: &Statement) -> Result<()> {
        if !self.read_only() {
            return Ok(());
        }
        // A replica writes nothing at all: not even temporary relations (they live in
        // the warehouse) or a VACUUM.
        let command = if self.engine.warehouse().is_read_only() {
            crate::statements::transaction::replica_write_command(statement)
        } else {
            crate::statements::transaction::write_command(statement)
        };
        match command {
            Some(command) => Err(EngineError::ReadOnlyTransaction { command: command.to_string() }),
            None => Ok(()),
        }
    }

    async fn describe(
        &mut self,
        sql: Arc<str>,
        statement: ParsedStatement,
        declared: Vec<Option<DataType>>,
    ) -> Result<Prepared> {
        self.check_not_failed(&statement.statement)?;
        let stamp = self.plan_stamp();
        let (planned, hints) = self.plan_with(&statement, &[]).await?;
        let (mut param_types, result) = match &planned {
            Planned::Query(plan) | Planned::Optimized(plan) => {
                (param_types(plan, &declared)?, Some(self.described_schema(plan)))
            }
            Planned::Physical { .. } => unreachable!("planned from SQL, not kept"),
            Planned::Lookup(lookup) => {
                let count = match lookup.key {
                    KeyValue::Param(n) => n.max(declared.len()),
                    KeyValue::Literal(_) => declared.len(),
                };
                let types = (1..=count)
                    .map(|i| match (declared.get(i - 1).cloned().flatten(), &lookup.key) {
                        (Some(t), _) => t,
                        (None, KeyValue::Param(n)) if *n == i => lookup.key_type(),
                        (None, _) => DataType::Utf8,
                    })
                    .collect();
                (types, Some(lookup.schema.clone()))
            }
            Planned::Write(write) => {
                let mut types = param_types(&write.input, &declared)?;
                for (n, hint) in &write.param_hints {
                    if types.len() < *n {
                        types.resize(*n, DataType::Utf8);
                    }
                    if declared.get(n - 1).cloned().flatten().is_none() {
                        types[n - 1] = hint.clone();
                    }
                }
                (types, write.returning.as_ref().map(arrow_schema))
            }
            Planned::CreateTableAs { query, .. } => (param_types(query, &declared)?, None),
            Planned::Other => (
                declared.iter().map(|t| t.clone().unwrap_or(DataType::Utf8)).collect(),
                match &statement.statement {
                    Statement::Fetch { .. } if statement.moves => None,
                    Statement::Fetch { name, .. } => {
                        self.cursors.schema(&crate::statements::ddl::ident(name))
                    }
                    other => show_schema(other),
                },
            ),
        };
        let plans = Arc::new(PlanSlot::default());
        if let Some(kept) = kept_plan(&planned).filter(|_| hints.is_empty()) {
            plans.put(stamp, self.optimized_ahead(kept, &param_types).await);
        }
        for (n, hint) in hints {
            if param_types.len() < n {
                param_types.resize(n, DataType::Utf8);
            }
            if declared.get(n - 1).cloned().flatten().is_none() {
                param_types[n - 1] = hint;
            }
        }
        Ok(Prepared { sql, shared_text: false, statement, declared, param_types, result, plans })
    }

    /// Plans and runs a statement without parameters in one go (SQL the engine made).
    pub(crate) async fn execute_now(&mut self, statement: ParsedStatement) -> Result<Output> {
        let prepared = Prepared::unprepared(Arc::from(""), statement);
        self.execute(&prepared, vec![]).await
    }

    async fn run(&mut self, prepared: &Prepared, params: Vec<ScalarValue>) -> Result<Output> {
        tarn_storage::failpoint::failpoint("statement");
        self.check_not_failed(&prepared.statement.statement)?;
        self.check_read_only(&prepared.statement.statement)?;
        self.planning.mark_start_execution();
        let params = bind_params(params, &prepared.param_types);
        // Names of the session's temporary relations: the statement as it reads them,
        // planned for this run only.
        if let Some(statement) = self.temp.qualify(&prepared.statement.statement) {
            let qualified = Prepared {
                statement: ParsedStatement { statement, ..prepared.statement.clone() },
                plans: Arc::default(),
                ..prepared.clone()
            };
            return Box::pin(self.plan_and_run(&qualified, params)).await;
        }
        Box::pin(self.plan_and_run(prepared, params)).await
    }

    /// A write outside `BEGIN` opens its own transaction before it is planned, so its
    /// reads pin the snapshot it commits against; whatever happens, it is closed after.
    async fn plan_and_run(&mut self, prepared: &Prepared, params: Vec<ScalarValue>) -> Result<Output> {
        let statement = &prepared.statement;
        let implicit = self.tx == TxStatus::Idle
            && matches!(
                statement.statement,
                Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
            );
        if implicit {
            self.txn.begin();
        }
        let outcome = match self.planned(prepared, &params).await {
            Ok(planned) => {
                let run = self.lineage_of(prepared, &planned);
                let outcome = self.run_planned(statement, planned, params).await;
                match (run, outcome) {
                    (Some(run), Ok(Output::Command(tag))) if self.tx == TxStatus::InBlock && run.writes() => {
                        self.lineage_pending.push((run, tag.rows));
                        Ok(Output::Command(tag))
                    }
                    (Some(run), outcome) => run.finish(self.txn.touched_now(), outcome),
                    (None, outcome) => outcome,
                }
            }
            Err(e) => Err(e),
        };
        if implicit && self.txn.is_active() {
            self.txn.take();
        }
        if changes_catalog(&statement.statement) {
            self.engine.catalog_changed();
        }
        outcome
    }

    /// The lineage run of a planned statement, started (see [`crate::lineage`]): writes
    /// and table DDL, queries when the session asks; none for SQL the engine made. A
    /// write's rows are followed through their optimized plan.
    fn lineage_of(&self, prepared: &Prepared, planned: &Planned) -> Option<crate::lineage::LineageRun> {
        use crate::lineage::Doing;
        self.engine.lineage()?;
        if prepared.sql.is_empty() {
            return None;
        }
        let optimized = |plan: &LogicalPlan| {
            crate::access::privileges::reads_a_table(plan)
                .then(|| self.planning.optimize(plan).ok())
                .flatten()
        };
        let better = match planned {
            Planned::Write(write) if matches!(write.kind, DmlKind::Insert { .. } | DmlKind::Update) => {
                optimized(&write.input)
            }
            Planned::CreateTableAs { query, .. } => optimized(query),
            _ => None,
        };
        let doing = match planned {
            Planned::Query(_) | Planned::Optimized(_) | Planned::Physical { .. } | Planned::Lookup(_) => {
                Doing::Reads
            }
            Planned::Write(write) => {
                let snapshot = write.table.snapshot();
                Doing::Writes {
                    table: write.table.name(),
                    columns: snapshot.def().schema.fields().iter().map(|f| f.name().clone()).collect(),
                    input: match write.kind {
                        DmlKind::Insert { .. } | DmlKind::Update => {
                            Some(better.as_ref().unwrap_or(&write.input))
                        }
                        DmlKind::Delete | DmlKind::Truncate => None,
                    },
                    update: matches!(write.kind, DmlKind::Update),
                }
            }
            Planned::CreateTableAs { name, query, .. } => Doing::Creates {
                table: name.clone(),
                columns: result_schema(query).fields().iter().map(|f| f.name().clone()).collect(),
                query: better.as_ref().unwrap_or(query),
            },
            Planned::Other => crate::lineage::table_changes(&prepared.statement.statement)?,
        };
        // The statement's own text when the client's held several.
        let own;
        let sql = match prepared.shared_text {
            true => {
                own = prepared.statement.statement.to_string();
                own.as_str()
            }
            false => &prepared.sql,
        };
        self.lineage_run(sql, doing)
    }

    /// The statement's plan: the one it keeps, re-pinned to the snapshots read now, when
    /// it is still good; else made now (and kept when it can be).
    async fn planned(&self, prepared: &Prepared, params: &[ScalarValue]) -> Result<Planned> {
        let stamp = self.plan_stamp();
        let replanned = match prepared.plans.get() {
            Some((kept_under, kept)) => {
                if kept_under == stamp {
                    if let Some(planned) = self.reuse(&kept, params).await? {
                        return Ok(planned);
                    }
                }
                true
            }
            None => false,
        };
        let (planned, hints) = self.plan_with(&prepared.statement, params).await?;
        if let (true, Planned::Query(plan), Some(described)) = (replanned, &planned, &prepared.result) {
            // The client decodes rows by the columns it was told of (as PostgreSQL does).
            let now = self.described_schema(plan);
            let types = |s: &SchemaRef| s.fields().iter().map(|f| f.data_type().clone()).collect::<Vec<_>>();
            if types(&now) != types(described) {
                return Err(EngineError::FeatureNotSupported {
                    message: "cached plan must not change result type".into(),
                });
            }
        }
        match kept_plan(&planned).filter(|_| hints.is_empty()) {
            Some(kept) => {
                let kept = self.optimized_ahead(kept, &prepared.param_types).await;
                prepared.plans.put(stamp, kept.clone());
                // Planned again from what is kept, so the first execute runs what the
                // next ones will.
                Ok(self.reuse(&kept, params).await?.unwrap_or(planned))
            }
            None => {
                prepared.plans.clear();
                Ok(planned)
            }
        }
    }

    /// A kept plan, with each table read at the snapshot the statement reads now (and
    /// an optimized one with the values bound); `None` when a table is no longer the
    /// one planned with.
    async fn reuse(&self, kept: &KeptPlan, params: &[ScalarValue]) -> Result<Option<Planned>> {
        Ok(match kept {
            KeptPlan::Query { physical: Some((named, plan)), .. } => {
                Some(Planned::Physical { named: named.clone(), plan: plan.clone() })
            }
            KeptPlan::Query { plan, optimized, template, .. } => {
                let current = |old: &TarnTable| self.current_table(old);
                let bound = optimized.as_ref().and_then(|o| Some((o, o.bind(params)?)));
                if let (Some(template), Some((_, values))) = (template, &bound) {
                    return Ok(template
                        .bind(values, &self.planning, &current)
                        .await?
                        .map(|plan| Planned::Physical { named: template.named.clone(), plan }));
                }
                match bound {
                    Some((optimized, values)) => match repin(&optimized.plan, &current)? {
                        Some(plan) => Some(Planned::Optimized(with_params(plan, &values)?)),
                        None => None,
                    },
                    None => repin(plan, &current)?.map(Planned::Query),
                }
            }
            KeptPlan::Lookup(lookup) => {
                let same = self.engine.warehouse().table(&lookup.table.name());
                same.is_some_and(|t| Arc::ptr_eq(&t, &lookup.table)).then(|| Planned::Lookup(lookup.clone()))
            }
        })
    }

    /// `old`'s table at the snapshot this session reads now; `None` when it was
    /// dropped (or made again), changed its columns, or the transaction's own writes to
    /// it came or went since `old` was planned.
    fn current_table(&self, old: &TarnTable) -> Result<Option<TarnTable>> {
        let table = old.table();
        match self.engine.warehouse().table(&table.name()) {
            Some(now) if Arc::ptr_eq(&now, table) => {}
            _ => return Ok(None),
        }
        let (snapshot, overlay) = match self.txn.pinned(table)? {
            Some(pinned) => pinned,
            None => (table.snapshot(), None),
        };
        if overlay.is_some() != old.has_overlay() || snapshot.schema() != old.snapshot().schema() {
            return Ok(None);
        }
        self.txn.note_touched(table, snapshot.version(), false);
        Ok(Some(old.repinned(snapshot, overlay)))
    }

    /// A kept query with its optimized plan too, when that can be made before the
    /// values are known (see [`optimizable_ahead`]), and its physical plan when it has
    /// no parameters, reads no table and can run again (see [`reusable_physical`]).
    async fn optimized_ahead(&self, kept: KeptPlan, param_types: &[DataType]) -> KeptPlan {
        let KeptPlan::Query { plan, optimized: None, physical: None, template: None } = kept else {
            return kept;
        };
        let optimized = typed_placeholders(&plan, param_types)
            .filter(|(typed, _)| optimizable_ahead(typed))
            .and_then(|(typed, param_types)| {
                Some(Optimized { plan: self.planning.optimize(&typed).ok()?, param_types })
            });
        let mut physical = None;
        if let Some(optimized) =
            optimized.as_ref().filter(|o| o.param_types.is_empty() && reads_no_table(&o.plan))
        {
            let planner = self.planning.query_planner();
            if let Ok(executable) = planner.create_physical_plan(&optimized.plan, &self.planning).await {
                physical =
                    reusable_physical(&executable).then(|| (result_schema(&optimized.plan), executable));
            }
        }
        let mut template = None;
        if let Some(optimized) = optimized.as_ref().filter(|_| physical.is_none()) {
            let named = result_schema(&optimized.plan);
            template = plan_template::make(&optimized.plan, named, &self.planning).await;
        }
        KeptPlan::Query { plan, optimized, physical, template }
    }

    async fn run_planned(
        &mut self,
        statement: &ParsedStatement,
        planned: Planned,
        params: Vec<ScalarValue>,
    ) -> Result<Output> {
        match planned {
            Planned::Lookup(lookup) => self.run_key_lookup(&lookup, &params).await,
            Planned::Query(plan) => {
                let plan = with_params(plan, &params)?;
                let named = result_schema(&plan);
                let physical = self.planning.create_physical_plan(&plan).await?;
                self.rows(&named, physical)
            }
            Planned::Optimized(plan) => {
                let named = result_schema(&plan);
                let physical =
                    self.planning.query_planner().create_physical_plan(&plan, &self.planning).await?;
                self.rows(&named, physical)
            }
            Planned::Physical { named, plan } => self.rows(&named, plan),
            Planned::Write(write) => self.run_write(statement, write, params).await,
            Planned::CreateTableAs { name, if_not_exists, query } => {
                let query = with_params(query, &params)?;
                self.create_table_as(statement, name, if_not_exists, query).await
            }
            Planned::Other => self.run_other(statement).await,
        }
    }

    /// A query's rows, in columns named as `named` names them.
    fn rows(&self, named: &SchemaRef, physical: Arc<dyn ExecutionPlan>) -> Result<Output> {
        let schema = typed_as(named, &physical.schema());
        let stream = self.watch(execute_stream(physical, self.task.clone())?);
        Ok(Output::Rows { schema, stream, command: RowsCommand::Select })
    }

    /// A query's result columns as a client is told of them before it runs: named as
    /// Postgres names them, typed as DataFusion's analyzer (type coercion) leaves them,
    /// which is what execution produces (`CASE` of int2 and int8 branches is int8).
    fn described_schema(&self, plan: &LogicalPlan) -> SchemaRef {
        let named = result_schema(plan);
        let state = &self.planning;
        match state.analyzer().execute_and_check(plan.clone(), state.config_options(), |_, _| {}) {
            Ok(analyzed) => typed_as(&named, analyzed.schema().as_arrow()),
            Err(_) => named,
        }
    }

    /// Passes a result stream through, noting if it fails.
    fn watch(&self, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
        let failed = self.stream_failed.clone();
        let schema = stream.schema();
        let watched = stream.inspect(move |item| {
            if item.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, watched))
    }

    /// Plans a write statement (`INSERT`, `UPDATE`, `DELETE`); `None` for any other.
    pub(crate) async fn plan_write(&self, parsed: &ParsedStatement) -> Result<Option<PlannedWrite>> {
        match self.plan(parsed).await? {
            Planned::Write(write) => Ok(Some(write)),
            _ => Ok(None),
        }
    }

    async fn plan(&self, parsed: &ParsedStatement) -> Result<Planned> {
        Ok(self.plan_with(parsed, &[]).await?.0)
    }

    /// Plans a statement; `params` are the values when executing (empty when
    /// describing). Also returns the types of parameters bound in the syntax tree
    /// (`params::bind_table_function_args`), which the plan no longer shows.
    async fn plan_with(
        &self,
        parsed: &ParsedStatement,
        params: &[ScalarValue],
    ) -> Result<(Planned, ParamHints)> {
        self.access.refresh_row_filters(&self.planning, self.settings.generation())?;
        if let Statement::Insert(insert) = &parsed.statement {
            if let TableObject::TableName(name) = &insert.table {
                let table = self.table(&ddl::table_name(name)?)?;
                let def = table.snapshot().def().clone();
                let positions = insert_positions(&def, insert);
                crate::statements::generated::check_insert(&def, &positions, insert.source.as_deref())?;
            }
            if let Some(write) = self.plan_literal_insert(insert).await? {
                let planned = Planned::Write(write);
                self.check_access(&planned)?;
                return Ok((planned, ParamHints::new()));
            }
        }
        let mut statement = parsed.statement.clone();
        let hints = bind_table_function_args(&mut statement, params);
        crate::search::hybrid::rewrite(&mut statement, &|name| self.table(name))?;
        let planned = self.plan_statement(statement).await?;
        self.check_access(&planned)?;
        Ok((planned, hints))
    }

    /// The privileges a planned statement needs, for a role they apply to (see
    /// [`crate::access::privileges`]); `UPDATE` and `DELETE` are checked as they are
    /// planned (`dml.rs`).
    fn check_access(&self, planned: &Planned) -> Result<()> {
        use crate::access::privileges::{
            check_functions, check_named, check_reads, check_write, reads_a_table,
        };
        let Some(subject) = self.access.subject() else { return Ok(()) };
        // Optimized, the scans say which columns they read (a plan that cannot be
        // optimized yet, its parameters untyped, is checked as it is: every column). A
        // plan that reads no table (`INSERT ... VALUES`) has nothing to check.
        let check = |plan: &LogicalPlan| -> Result<()> {
            check_functions(plan)?;
            if !reads_a_table(plan) {
                return Ok(());
            }
            check_named(&subject, plan)?;
            let optimized = self.planning.optimize(plan).unwrap_or_else(|_| plan.clone());
            check_reads(&subject, &optimized, true)
        };
        match planned {
            Planned::Query(plan) => check(plan),
            Planned::Optimized(plan) => check_reads(&subject, plan, true),
            Planned::Write(write) if rewrites_masked(&subject, write) => Err(EngineError::unsupported(format!(
                "UPDATE, DELETE and INSERT ... ON CONFLICT DO UPDATE of \"{}\" by a role that reads some of its \
                 columns masked are not supported yet (they would write the masks back)",
                write.table.name().table
            ))),
            Planned::Write(write) => match write.kind {
                DmlKind::Insert { ref on_conflict } => {
                    use tarn_storage::security::Privilege;
                    let name = write.table.name();
                    check_write(&subject, &name, Privilege::Insert)?;
                    if let Some(OnConflict::Update { .. }) = on_conflict {
                        // It updates rows it has not read through a checked scan.
                        check_write(&subject, &name, Privilege::Update)?;
                        if subject.row_security && subject.security.row_security.contains(&name) {
                            return Err(EngineError::unsupported(
                                "INSERT ... ON CONFLICT DO UPDATE under row-level security is not supported yet",
                            ));
                        }
                    }
                    if let Some(returning) = &write.returning {
                        check(returning)?;
                    }
                    check(&write.input)
                }
                _ => Ok(()),
            },
            Planned::CreateTableAs { .. } => self.access.require_superuser("run CREATE TABLE AS"),
            Planned::Lookup(_) | Planned::Physical { .. } | Planned::Other => Ok(()),
        }
    }

    async fn plan_statement(&self, mut statement: Statement) -> Result<Planned> {
        if let Statement::Query(query) = &mut statement {
            if let Some(lookup) = self.plan_key_lookup(query) {
                return Ok(Planned::Lookup(lookup));
            }
            // Named before the rewrites, which may turn a call into an operator.
            name_output_columns(query);
        }
        // An INSERT's rows are taken by position; their names need only be unique
        // (`INSERT INTO t SELECT i, i ...`).
        if let Statement::Insert(ast::Insert { source: Some(source), .. }) = &mut statement {
            name_output_columns(source);
        }
        crate::statements::pg_syntax::rewrite(&mut statement);
        rewrite_typed_casts(&mut statement);
        match statement {
            Statement::Query(query) => {
                Ok(Planned::Query(self.datafusion_plan(Statement::Query(query)).await?))
            }
            Statement::Explain { .. } => Ok(Planned::Query(self.datafusion_plan(statement).await?)),
            Statement::Update(update) => Ok(Planned::Write(self.plan_update(&update).await?)),
            Statement::Delete(delete) => Ok(Planned::Write(self.plan_delete(&delete).await?)),
            Statement::Insert(mut insert) => {
                let TableObject::TableName(name) = &insert.table else {
                    return Err(EngineError::unsupported("INSERT INTO a table function is not supported"));
                };
                let name = ddl::table_name(name)?;
                let table = self.table(&name)?;
                let snapshot = table.snapshot();
                let def = snapshot.def();
                let targets = insert_positions(def, &insert);
                let targets: Vec<InsertTarget> = targets
                    .into_iter()
                    .map(|i| match i {
                        Some(i) => InsertTarget {
                            data_type: Some(def.schema.field(i).data_type().clone()),
                            default: def.columns[i].default.clone(),
                        },
                        None => InsertTarget { data_type: None, default: None },
                    })
                    .collect();
                if let Some(source) = insert.source.as_mut() {
                    rewrite_insert_values(source, &targets);
                }
                let returning = insert.returning.take();
                let alias = insert.table_alias.take().map(|a| ddl::ident(&a.alias));
                let on_conflict = match insert.on.take() {
                    None => None,
                    Some(ast::OnInsert::OnConflict(on)) => {
                        Some(on_conflict(def, &name, alias.as_deref().unwrap_or(&name.table), on)?)
                    }
                    Some(_) => {
                        return Err(EngineError::unsupported(
                            "ON DUPLICATE KEY UPDATE is MySQL's; use ON CONFLICT",
                        ))
                    }
                };
                let param_hints = match &on_conflict {
                    Some(on) => crate::statements::dml::conflict_param_hints(
                        &self.ctx.state(),
                        &snapshot.schema(),
                        on,
                    )?,
                    None => Vec::new(),
                };
                let plan = self.datafusion_plan(Statement::Insert(insert)).await?;
                let LogicalPlan::Dml(DmlStatement { op: WriteOp::Insert(_), input, .. }) = plan else {
                    return Err(EngineError::Internal { message: "INSERT did not plan as an insert".into() });
                };
                let mut input = Arc::unwrap_or_clone(input);
                let calls_sequence =
                    |d: &str| crate::functions::sequences::NAMES.iter().any(|f| d.contains(f));
                if def.columns.iter().any(|c| c.default.as_deref().is_some_and(calls_sequence)) {
                    input = self.session_sequence_functions(input)?;
                }
                let returning = match returning {
                    Some(items) => Some(self.plan_returning_as(&name, alias.as_deref(), items).await?),
                    None => None,
                };
                Ok(Planned::Write(PlannedWrite {
                    table,
                    kind: DmlKind::Insert { on_conflict },
                    input,
                    kept: None,
                    returning,
                    param_hints,
                }))
            }
            Statement::CreateTable(create) if create.query.is_some() => {
                let name = match create.temporary {
                    true => Box::pin(self.temp.place(&create.name)).await?,
                    false => ddl::table_name(&create.name)?,
                };
                if !create.columns.is_empty() {
                    return Err(EngineError::unsupported(
                        "CREATE TABLE AS with a column list is not supported yet",
                    ));
                }
                let mut query = create.query.clone().expect("checked");
                name_output_columns(&mut query);
                let plan = self.datafusion_plan(Statement::Query(query)).await?;
                Ok(Planned::CreateTableAs { name, if_not_exists: create.if_not_exists, query: plan })
            }
            _ => Ok(Planned::Other),
        }
    }

    async fn datafusion_plan(&self, statement: Statement) -> Result<LogicalPlan> {
        let state = &self.planning;
        let plan = state.statement_to_plan(DfStatement::Statement(Box::new(statement))).await?;
        // DataFusion's own DDL (CREATE EXTERNAL TABLE, COPY TO a file, SET datafusion.*)
        // must never run on behalf of a client.
        SQLOptions::new().with_allow_ddl(false).with_allow_statements(false).verify_plan(&plan)?;
        crate::statements::params::infer_types(type_cast_parameters(plan)?)
    }

    /// `RETURNING items` as a query over the table (named `alias` if given); at run
    /// time its scan is swapped for the rows the statement wrote or removed.
    pub(crate) async fn plan_returning_as(
        &self,
        name: &TableName,
        alias: Option<&str>,
        items: Vec<SelectItem>,
    ) -> Result<LogicalPlan> {
        let mut from = format!(
            "SELECT 1 FROM {}.{}",
            ast::Ident::with_quote('"', &name.schema),
            ast::Ident::with_quote('"', &name.table)
        );
        if let Some(alias) = alias {
            from.push_str(&format!(" AS {}", ast::Ident::with_quote('"', alias)));
        }
        let Statement::Query(mut query) = parse_sql(&from)?.remove(0).statement else {
            unreachable!("a SELECT parses as a query")
        };
        if let ast::SetExpr::Select(select) = query.body.as_mut() {
            select.projection = items;
        }
        self.datafusion_plan(Statement::Query(query)).await
    }

    /// `plan` with the sequence functions of column defaults (parsed once per table,
    /// without a session) made this session's, so `currval` sees their values.
    fn session_sequence_functions(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        use datafusion::execution::FunctionRegistry;
        use datafusion::logical_expr::expr::ScalarFunction;
        use datafusion::logical_expr::Expr;
        let plan = plan.transform_up_with_subqueries(|node| {
            node.map_expressions(|expr| {
                expr.transform_up(|e| match e {
                    Expr::ScalarFunction(ScalarFunction { func, args })
                        if crate::functions::sequences::NAMES.contains(&func.name()) =>
                    {
                        let func = self.ctx.udf(func.name())?;
                        Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction { func, args })))
                    }
                    other => Ok(Transformed::no(other)),
                })
            })
        })?;
        Ok(plan.data)
    }

    /// Plans SQL text we built (from parts of a parsed statement).
    pub(crate) async fn plan_sql(&self, sql: &str) -> Result<LogicalPlan> {
        let mut statement = parse_sql(sql)?.remove(0).statement;
        crate::statements::pg_syntax::rewrite(&mut statement);
        rewrite_typed_casts(&mut statement);
        self.datafusion_plan(statement).await
    }

    /// `INSERT ... VALUES` of literals only (the bulk of ingest): the rows become Arrow
    /// arrays directly, without copying the statement or planning it with DataFusion.
    /// `None` for any other insert.
    async fn plan_literal_insert(&self, insert: &ast::Insert) -> Result<Option<PlannedWrite>> {
        let TableObject::TableName(name) = &insert.table else { return Ok(None) };
        let name = ddl::table_name(name)?;
        let table = self.table(&name)?;
        let snapshot = table.snapshot();
        let def = snapshot.def();
        let positions: Option<Vec<usize>> = insert_positions(def, insert).into_iter().collect();
        let (Some(positions), Some(source)) = (positions, insert.source.as_deref()) else { return Ok(None) };
        let Some(rows) = crate::statements::dml::literal_rows(source, &positions, def) else {
            return Ok(None);
        };
        let alias = insert.table_alias.as_ref().map(|a| ddl::ident(&a.alias));
        let on_conflict = match &insert.on {
            None => None,
            Some(ast::OnInsert::OnConflict(on)) => {
                Some(on_conflict(def, &name, alias.as_deref().unwrap_or(&name.table), on.clone())?)
            }
            Some(_) => return Ok(None),
        };
        let returning = match &insert.returning {
            Some(items) => Some(self.plan_returning_as(&name, alias.as_deref(), items.clone()).await?),
            None => None,
        };
        Ok(Some(PlannedWrite {
            table: table.clone(),
            kind: DmlKind::Insert { on_conflict },
            input: crate::statements::dml::rows_plan(vec![rows])?,
            kept: None,
            returning,
            param_hints: Vec::new(),
        }))
    }

    pub(crate) fn table(&self, name: &TableName) -> Result<Arc<Table>> {
        let warehouse = self.engine.warehouse();
        if let Some(table) = warehouse.table(name) {
            return Ok(table);
        }
        if warehouse.view(name).is_some() {
            return Err(EngineError::WrongObjectType {
                message: format!("\"{}\" is a view, not a table: views are read-only", name.table),
            });
        }
        if warehouse.external(name).is_some() {
            return Err(EngineError::WrongObjectType {
                message: format!("\"{}\" is an external table: external tables are read-only", name.table),
            });
        }
        Err(StorageError::TableNotFound { name: name.clone() }.into())
    }

    /// Runs a `RETURNING` plan over `rows` (the rows written, or removed).
    pub(crate) async fn returning_rows(
        &self,
        table: &Arc<Table>,
        returning: LogicalPlan,
        rows: Vec<RecordBatch>,
    ) -> Result<Output> {
        let schema = crate::catalog::provider::nullable_schema(&table.snapshot().schema());
        let rows = rows
            .into_iter()
            .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let source =
            provider_as_source(Arc::new(MemTable::try_new(schema, vec![rows])?) as Arc<dyn TableProvider>);
        let plan = returning
            .transform_up(|node| match node {
                LogicalPlan::TableScan(scan) => {
                    Ok(Transformed::yes(LogicalPlan::TableScan(TableScan { source: source.clone(), ..scan })))
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        let df = self.ctx.execute_logical_plan(plan).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        Ok(Output::Rows {
            schema,
            stream: self.watch(df.execute_stream().await?),
            command: RowsCommand::Insert,
        })
    }

    async fn create_table_as(
        &self,
        statement: &ParsedStatement,
        name: TableName,
        if_not_exists: bool,
        query: LogicalPlan,
    ) -> Result<Output> {
        let Statement::CreateTable(create) = &statement.statement else { unreachable!("planned as CTAS") };
        let schema = result_schema(&query);
        let def = ddl::table_def_from_schema(
            name.clone(),
            &schema,
            statement.table_format.as_deref(),
            &create.table_options,
        )?;
        let warehouse = self.engine.warehouse();
        let Some(table) = warehouse.create_table(def, if_not_exists).await? else {
            return Ok(Output::Command(CommandTag::new("CREATE TABLE AS")));
        };
        let copied = crate::access::masking::copied_columns(&query);
        let result = async {
            let batches = self.ctx.execute_logical_plan(query).await?.collect().await?;
            let written = table.append(batches).await?;
            // Columns copied from tagged ones keep their tags (and so their masks).
            let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            let inherited = |s: &tarn_storage::security::SecurityCatalog| {
                copied
                    .iter()
                    .zip(&columns)
                    .filter_map(|(source, column)| {
                        let (from, from_column) = source.as_ref()?;
                        let tag = s.tag_of(from, from_column)?;
                        Some((
                            column.clone(),
                            tarn_storage::security::ColumnTag {
                                table: name.clone(),
                                column: column.clone(),
                                ..tag.clone()
                            },
                        ))
                    })
                    .collect::<Vec<_>>()
            };
            if !inherited(&warehouse.security()).is_empty() {
                warehouse
                    .update_security(|s| {
                        for (column, tag) in inherited(s) {
                            s.set_tag(&name, &column, Some(tag));
                        }
                        Ok::<_, EngineError>(())
                    })
                    .await?;
            }
            Ok::<_, EngineError>(written)
        }
        .await;
        match result {
            Ok(written) => {
                let rows = written.iter().map(|b| b.num_rows() as u64).sum();
                Ok(Output::Command(CommandTag::with_rows("SELECT", rows)))
            }
            Err(e) => {
                // The statement is atomic: no table is left behind.
                let _ = warehouse.drop_table(&name, true).await;
                Err(e)
            }
        }
    }
}

/// The part of a plan a statement can keep (see `plan_cache.rs`).
fn kept_plan(planned: &Planned) -> Option<KeptPlan> {
    match planned {
        Planned::Query(plan) if !matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) => {
            keepable(plan).then(|| KeptPlan::Query {
                plan: plan.clone(),
                optimized: None,
                physical: None,
                template: None,
            })
        }
        Planned::Lookup(lookup) => Some(KeptPlan::Lookup(lookup.clone())),
        _ => None,
    }
}

/// The table column each `VALUES` position of an insert goes to (`None`: no such
/// column; DataFusion reports it).
fn insert_positions(def: &tarn_storage::TableDef, insert: &ast::Insert) -> Vec<Option<usize>> {
    if insert.columns.is_empty() {
        return (0..def.schema.fields().len()).map(Some).collect();
    }
    insert
        .columns
        .iter()
        .map(|c| match c.0.last() {
            Some(ast::ObjectNamePart::Identifier(i)) => def.column_index(&ddl::ident(i)),
            _ => None,
        })
        .collect()
}

/// `ON CONFLICT`, checked against the table's primary key.
fn on_conflict(
    def: &tarn_storage::TableDef,
    name: &TableName,
    alias: &str,
    on: ast::OnConflict,
) -> Result<OnConflict> {
    if def.primary_key.is_empty() {
        return Err(EngineError::InvalidOnConflict);
    }
    match &on.conflict_target {
        Some(ast::ConflictTarget::Columns(columns)) => {
            let mut named: Vec<String> = columns.iter().map(ddl::ident).collect();
            let mut key = def.primary_key.clone();
            named.sort();
            key.sort();
            if named != key {
                return Err(EngineError::InvalidOnConflict);
            }
        }
        Some(ast::ConflictTarget::OnConstraint(constraint)) => {
            let given = constraint.0.last().map(|p| p.to_string().trim_matches('"').to_string());
            if given.as_deref() != Some(def.primary_key_constraint().as_str()) {
                return Err(EngineError::syntax(format!(
                    "constraint \"{}\" for table \"{}\" does not exist",
                    constraint, name.table
                )));
            }
        }
        None => {}
    }
    match on.action {
        ast::OnConflictAction::DoNothing => Ok(OnConflict::Nothing),
        ast::OnConflictAction::DoUpdate(update) => {
            if on.conflict_target.is_none() {
                return Err(EngineError::syntax(
                    "ON CONFLICT DO UPDATE requires inference specification or constraint name",
                ));
            }
            let mut assignments = Vec::new();
            for assignment in update.assignments {
                let ast::AssignmentTarget::ColumnName(column) = &assignment.target else {
                    return Err(EngineError::unsupported("SET of a column tuple is not supported"));
                };
                let column = match column.0.last() {
                    Some(ast::ObjectNamePart::Identifier(i)) => ddl::ident(i),
                    _ => return Err(EngineError::syntax("bad column in SET")),
                };
                let index = def.column_index(&column).ok_or(EngineError::UndefinedColumn { column })?;
                assignments.push((index, assignment.value.to_string()));
            }
            Ok(OnConflict::Update {
                alias: alias.to_string(),
                assignments,
                selection: update.selection.map(|s| s.to_string()),
            })
        }
    }
}

/// Whether `write` rewrites rows it did not bring (an `UPDATE`, a `DELETE`, an upsert)
/// of a table with columns masked for `subject`: it reads them through the masked scan,
/// so the rows it writes (and those the change feed keeps of a delete) would hold the
/// masks in place of the values.
fn rewrites_masked(subject: &crate::access::Subject, write: &PlannedWrite) -> bool {
    let brought = matches!(write.kind, DmlKind::Insert { on_conflict: None | Some(OnConflict::Nothing) });
    !brought && subject.security.has_masks(&subject.roles, &write.table.name())
}
