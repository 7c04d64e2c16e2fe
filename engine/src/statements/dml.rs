//! `INSERT` (with `ON CONFLICT`), `UPDATE`, `DELETE`, `TRUNCATE`, and `COMMIT`.
//!
//! Each statement is planned as a query DataFusion runs over the transaction's snapshot
//! (its own writes included): the rows to insert, the new and old rows of an update,
//! the rows a delete removes. For a primary-key table those rows become [`Write`]s in
//! the session's transaction; a statement outside `BEGIN` is its own transaction and
//! commits at once, retried on a write conflict (another commit changed a row it read
//! after it read it). A table without a primary key appends straight to its base, and
//! rewrites it for `UPDATE`/`DELETE`.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::SchemaRef;
use datafusion::common::{DFSchema, TableReference};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::execution_props::ExecutionProps;
use datafusion::sql::sqlparser::ast;
use tarn_storage::key::Key;
use tarn_storage::security::{PolicyCommand, Privilege};
use tarn_storage::{Lookup, StorageError, Table, TableName, TableWrite, Write, WriteKind};

use crate::access::{privileges, row_security};
use crate::catalog::provider::nullable_schema;
use crate::error::{EngineError, Result};
use crate::statements::ddl;
use crate::statements::generated::Generated;
use crate::statements::parser::ParsedStatement;
use crate::statements::session::{CommandTag, Output, RowsCommand, Session, TxStatus};
use crate::statements::settings::CLASSIFY_COLUMNS;

/// How many times a statement outside `BEGIN` is retried after a write conflict.
const CONFLICT_RETRIES: usize = 8;

/// A planned write statement.
#[derive(Debug, Clone)]
pub(crate) struct PlannedWrite {
    pub table: Arc<Table>,
    pub kind: DmlKind,
    /// Rows to insert; new then old rows of an update; rows a delete removes.
    pub input: LogicalPlan,
    /// Tables without a primary key: the rows an `UPDATE`/`DELETE` leaves alone.
    pub kept: Option<LogicalPlan>,
    pub returning: Option<LogicalPlan>,
    /// Types of parameters known from where they go (`SET column = $n`): 1-based.
    pub param_hints: Vec<(usize, arrow::datatypes::DataType)>,
}

#[derive(Debug, Clone)]
pub(crate) enum DmlKind {
    Insert { on_conflict: Option<OnConflict> },
    Update,
    Delete,
    Truncate,
}

#[derive(Debug, Clone)]
pub(crate) enum OnConflict {
    Nothing,
    /// `DO UPDATE SET column = expression, ... [WHERE ...]`, expressions as SQL over the
    /// target (named `alias`) and `excluded`.
    Update {
        alias: String,
        assignments: Vec<(usize, String)>,
        selection: Option<String>,
    },
}

/// Where a transaction's statement gets its plans from (planned again on a retry).
pub(crate) enum WriteSource<'a> {
    Statement(&'a ParsedStatement),
    Truncate(&'a ast::Truncate),
    /// Rows given whole (`COPY ... FROM STDIN`), inserted.
    Rows(PlannedWrite),
}

/// What a write statement did, before `RETURNING`.
struct Done {
    rows: u64,
    returned: Vec<RecordBatch>,
}

impl Session {
    /// Plans `UPDATE`: a query of the new rows followed by the old ones.
    pub(crate) async fn plan_update(&self, update: &ast::Update) -> Result<PlannedWrite> {
        let (name, alias) = target_of(&update.table.relation)?;
        let table = self.table(&name)?;
        let def = table.snapshot().def().clone();
        let qualifier = ast::Ident::with_quote('"', alias.clone().unwrap_or_else(|| name.table.clone()));
        let mut assigned: Vec<Option<String>> = vec![None; def.schema.fields().len()];
        let mut param_hints = Vec::new();
        for assignment in &update.assignments {
            let ast::AssignmentTarget::ColumnName(column) = &assignment.target else {
                return Err(EngineError::unsupported("UPDATE of a column tuple is not supported"));
            };
            let column = match column.0.last() {
                Some(ast::ObjectNamePart::Identifier(i)) => ddl::ident(i),
                _ => return Err(EngineError::syntax("bad column in SET")),
            };
            let index =
                def.column_index(&column).ok_or(EngineError::UndefinedColumn { column: column.clone() })?;
            if assigned[index].is_some() {
                return Err(EngineError::syntax(format!("multiple assignments to same column \"{column}\"")));
            }
            crate::statements::generated::check_update(&def, index, &assignment.value)?;
            let column_type = def.schema.field(index).data_type();
            if let Some(n) = crate::statements::params::placeholder_number(&assignment.value) {
                param_hints.push((n, column_type.clone()));
            }
            assigned[index] = Some(assigned_value(&assignment.value, column_type));
        }
        let old: Vec<String> = def
            .schema
            .fields()
            .iter()
            .map(|f| format!("{qualifier}.{}", ast::Ident::with_quote('"', f.name())))
            .collect();
        let new: Vec<String> = assigned
            .iter()
            .zip(&old)
            .map(|(value, old)| value.clone().unwrap_or_else(|| old.clone()))
            .collect();
        let items: Vec<String> =
            new.iter().chain(&old).enumerate().map(|(i, e)| format!("{e} AS \"__tarn_{i}\"")).collect();
        let mut from = update.table.to_string();
        if let Some(
            ast::UpdateTableFromKind::AfterSet(tables) | ast::UpdateTableFromKind::BeforeSet(tables),
        ) = &update.from
        {
            for t in tables {
                from.push_str(", ");
                from.push_str(&t.to_string());
            }
        }
        let mut filter = update.selection.as_ref().map(|s| format!(" WHERE ({s})")).unwrap_or_default();
        let mut reads: Vec<String> = update.assignments.iter().map(|a| a.value.to_string()).collect();
        reads.extend(update.returning.iter().flatten().map(|item| item.to_string()));
        self.secure_write(&table, Privilege::Update, &from, reads, &mut filter).await?;
        let input = self.plan_sql(&format!("SELECT {} FROM {from}{filter}", items.join(", "))).await?;
        let kept = self.plan_kept(&table, &update.table.to_string(), update.selection.as_ref()).await?;
        let returning = match &update.returning {
            Some(items) => Some(self.plan_returning_as(&name, alias.as_deref(), items.clone()).await?),
            None => None,
        };
        Ok(PlannedWrite { table, kind: DmlKind::Update, input, kept, returning, param_hints })
    }

    /// Plans `DELETE`: a query of the rows it removes.
    pub(crate) async fn plan_delete(&self, delete: &ast::Delete) -> Result<PlannedWrite> {
        let (ast::FromTable::WithFromKeyword(from) | ast::FromTable::WithoutKeyword(from)) = &delete.from;
        let [target] = from.as_slice() else {
            return Err(EngineError::unsupported("DELETE from more than one table is not supported"));
        };
        if delete.using.is_some() {
            return Err(EngineError::unsupported("DELETE ... USING is not supported yet"));
        }
        let (name, alias) = target_of(&target.relation)?;
        let table = self.table(&name)?;
        let mut filter = delete.selection.as_ref().map(|s| format!(" WHERE ({s})")).unwrap_or_default();
        let reads = delete.returning.iter().flatten().map(|item| item.to_string()).collect();
        self.secure_write(&table, Privilege::Delete, &target.to_string(), reads, &mut filter).await?;
        let input = self
            .plan_sql(&format!("SELECT {} FROM {target}{filter}", all_columns(&table, alias.as_deref())))
            .await?;
        let kept = self.plan_kept(&table, &target.to_string(), delete.selection.as_ref()).await?;
        let returning = match &delete.returning {
            Some(items) => Some(self.plan_returning_as(&name, alias.as_deref(), items.clone()).await?),
            None => None,
        };
        Ok(PlannedWrite { table, kind: DmlKind::Delete, input, kept, returning, param_hints: Vec::new() })
    }

    /// `TRUNCATE`: every row of each table goes.
    pub(crate) async fn truncate(&mut self, truncate: &ast::Truncate) -> Result<Output> {
        Box::pin(self.run_writes(&WriteSource::Truncate(truncate), vec![], None)).await?;
        Ok(Output::Command(CommandTag::new("TRUNCATE TABLE")))
    }

    async fn plan_truncate(&self, truncate: &ast::Truncate) -> Result<Vec<PlannedWrite>> {
        let mut planned = Vec::new();
        for target in &truncate.table_names {
            let name = ddl::table_name(&target.name)?;
            let table = match self.table(&name) {
                Ok(t) => t,
                Err(_) if truncate.if_exists => continue,
                Err(e) => return Err(e),
            };
            // PostgreSQL's TRUNCATE privilege is not its own here: DELETE's. TRUNCATE
            // passes over row policies in PostgreSQL; here a role they apply to may not.
            if let Some(subject) = self.access.subject() {
                privileges::check_write(&subject, &name, Privilege::Delete)?;
                if subject.row_security && subject.security.row_security.contains(&name) {
                    return Err(privileges::denied(&name));
                }
            }
            let quoted = format!(
                "{}.{}",
                ast::Ident::with_quote('"', &name.schema),
                ast::Ident::with_quote('"', &name.table)
            );
            let input = self.plan_sql(&format!("SELECT {} FROM {quoted}", all_columns(&table, None))).await?;
            let kept = if table.has_primary_key() {
                None
            } else {
                Some(
                    self.plan_sql(&format!("SELECT {} FROM {quoted} WHERE false", all_columns(&table, None)))
                        .await?,
                )
            };
            planned.push(PlannedWrite {
                table,
                kind: DmlKind::Truncate,
                input,
                kept,
                returning: None,
                param_hints: Vec::new(),
            });
        }
        Ok(planned)
    }

    async fn plan_source(&mut self, source: &WriteSource<'_>) -> Result<Vec<PlannedWrite>> {
        match source {
            WriteSource::Statement(statement) => match Box::pin(self.plan_write(statement)).await? {
                Some(planned) => Ok(vec![planned]),
                None => Err(EngineError::Internal {
                    message: "a write statement planned as something else".into(),
                }),
            },
            WriteSource::Truncate(truncate) => self.plan_truncate(truncate).await,
            WriteSource::Rows(planned) => Ok(vec![planned.clone()]),
        }
    }

    /// Inserts rows (with the table's columns) as one statement: `COPY ... FROM STDIN`.
    pub(crate) async fn insert_rows(&mut self, table: &Arc<Table>, batches: Vec<RecordBatch>) -> Result<u64> {
        if let Some(subject) = self.access.subject() {
            privileges::check_write(&subject, &table.name(), Privilege::Insert)?;
        }
        if batches.is_empty() {
            return Ok(0);
        }
        let input = rows_plan(batches)?;
        let planned = PlannedWrite {
            table: table.clone(),
            kind: DmlKind::Insert { on_conflict: None },
            input,
            kept: None,
            returning: None,
            param_hints: Vec::new(),
        };
        Ok(Box::pin(self.run_writes(&WriteSource::Rows(planned), vec![], None)).await?.rows)
    }

    /// For a table without a primary key, the rows an `UPDATE`/`DELETE` leaves alone.
    async fn plan_kept(
        &self,
        table: &Arc<Table>,
        from: &str,
        selection: Option<&ast::Expr>,
    ) -> Result<Option<LogicalPlan>> {
        if table.has_primary_key() {
            return Ok(None);
        }
        let filter =
            selection.map(|s| format!(" WHERE ({s}) IS NOT TRUE")).unwrap_or_else(|| " WHERE false".into());
        let alias = match from.split_whitespace().nth(1) {
            Some(a) if !a.eq_ignore_ascii_case("as") => Some(a.trim_matches('"').to_string()),
            _ => from.split_whitespace().nth(2).map(|a| a.trim_matches('"').to_string()),
        };
        Ok(Some(
            self.plan_sql(&format!("SELECT {} FROM {from}{filter}", all_columns(table, alias.as_deref())))
                .await?,
        ))
    }

    /// Runs a planned write: in the open transaction, or as its own (planned again once
    /// it is open, so it reads the snapshot it commits against).
    pub(crate) async fn run_write(
        &mut self,
        statement: &ParsedStatement,
        planned: PlannedWrite,
        params: Vec<datafusion::common::ScalarValue>,
    ) -> Result<Output> {
        let returning = planned.returning.clone();
        let tag = match planned.kind {
            DmlKind::Insert { .. } => "INSERT",
            DmlKind::Update => "UPDATE",
            DmlKind::Delete => "DELETE",
            DmlKind::Truncate => "TRUNCATE TABLE",
        };
        let table = planned.table.clone();
        let source = WriteSource::Statement(statement);
        let done = Box::pin(self.run_writes(&source, params, Some(vec![planned]))).await?;
        let Some(returning) = returning else {
            return Ok(Output::Command(CommandTag::with_rows(tag, done.rows)));
        };
        let output = self.returning_rows(&table, returning, done.returned).await?;
        let Output::Rows { schema, stream, .. } = output else { unreachable!("returning gives rows") };
        let command = match tag {
            "INSERT" => RowsCommand::Insert,
            "UPDATE" => RowsCommand::Update,
            _ => RowsCommand::Delete,
        };
        Ok(Output::Rows { schema, stream, command })
    }

    /// Runs the writes of `source` (`planned`: already planned inside the transaction).
    async fn run_writes(
        &mut self,
        source: &WriteSource<'_>,
        params: Vec<datafusion::common::ScalarValue>,
        planned: Option<Vec<PlannedWrite>>,
    ) -> Result<Done> {
        let mut first = planned;
        if self.tx_status() != TxStatus::Idle {
            let planned = match first {
                Some(planned) => planned,
                None => self.plan_source(source).await?,
            };
            let mut done = Done { rows: 0, returned: Vec::new() };
            for p in &planned {
                let d = Box::pin(self.apply(p, &params)).await?;
                done.rows += d.rows;
                done.returned.extend(d.returned);
            }
            return Ok(done);
        }
        let mut attempt = 0;
        loop {
            // Outside `BEGIN`: the statement's own transaction (opened before planning, or
            // here on a retry).
            if !self.txn.is_active() {
                self.txn.begin();
            }
            let planned = match first.take() {
                Some(planned) => planned,
                None => match self.plan_source(source).await {
                    Ok(p) => p,
                    Err(e) => {
                        self.txn.take();
                        return Err(e);
                    }
                },
            };
            let mut done = Done { rows: 0, returned: Vec::new() };
            let mut result = Ok(());
            for p in &planned {
                match Box::pin(self.apply(p, &params)).await {
                    Ok(d) => {
                        done.rows += d.rows;
                        done.returned.extend(d.returned);
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if let Err(e) = result {
                self.txn.take();
                return Err(e);
            }
            match Box::pin(self.commit_transaction()).await {
                Ok(()) => return Ok(done),
                Err(EngineError::Storage(StorageError::SerializationFailure { .. }))
                    if attempt < CONFLICT_RETRIES =>
                {
                    attempt += 1;
                    tokio::task::yield_now().await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Commits the open transaction's writes: one commit for every primary-key table,
    /// then the appends to tables without one.
    pub(crate) async fn commit_transaction(&mut self) -> Result<()> {
        let tables = self.txn.take();
        let mut writes = Vec::new();
        let mut appends = Vec::new();
        let mut brought = Vec::new();
        let warehouse = self.engine.warehouse();
        let classify = self.settings.get(CLASSIFY_COLUMNS).map_or(true, |v| v != "off");
        for (_, t) in tables {
            if classify {
                let rows: Vec<RecordBatch> = t
                    .writes
                    .iter()
                    .filter(|w| !matches!(w.kind, WriteKind::Delete))
                    .map(|w| w.rows.clone())
                    .chain(t.appends.iter().cloned())
                    .collect();
                if !rows.is_empty() {
                    brought.push((t.table.name(), rows));
                }
            }
            let written = !t.writes.is_empty() || !t.appends.is_empty();
            let current = warehouse.table(&t.table.name()).is_some_and(|now| Arc::ptr_eq(&now, &t.table));
            if written && !current {
                return Err(StorageError::SerializationFailure {
                    detail: format!("table {} was dropped while the transaction wrote to it", t.table.name()),
                }
                .into());
            }
            if !t.writes.is_empty() {
                writes.push(TableWrite {
                    table: t.table.clone(),
                    read_seq: t.snapshot.seq,
                    writes: t.writes,
                });
            }
            if !t.appends.is_empty() {
                appends.push((t.table, t.appends));
            }
        }
        if !writes.is_empty() {
            let tables: Vec<Arc<Table>> = writes.iter().map(|w| w.table.clone()).collect();
            let applied = self.engine.warehouse().commit(writes).await?;
            for (table, applied) in tables.iter().zip(applied) {
                if let Some(version) = applied.seq {
                    self.txn.note_touched(table, version, true);
                }
            }
        }
        for (table, rows) in appends {
            table.append(rows).await?;
            self.txn.note_touched(&table, table.snapshot().version(), true);
        }
        self.classify_columns(brought, false).await;
        Ok(())
    }

    /// Hands the rows a commit brought (or `ANALYZE` read, `settle`: decide on them
    /// whatever their number) to the sensitive-data detector and records the columns
    /// it classified (their tags, if any). The rows are committed: a failure to record
    /// is logged, not the statement's.
    pub(crate) async fn classify_columns(&self, brought: Vec<(TableName, Vec<RecordBatch>)>, settle: bool) {
        let warehouse = self.engine.warehouse();
        let security = warehouse.security();
        let mut decided = Vec::new();
        for (table, rows) in brought {
            for (column, finding) in self.engine.samples().observe(&security, &table, &rows, settle) {
                decided.push((table.clone(), column, finding));
            }
        }
        if decided.is_empty() {
            return;
        }
        let recorded = warehouse
            .update_security(|s| {
                for (table, column, finding) in decided {
                    let key = (table.clone(), column.clone());
                    // A user's tag (or a concurrent decision) stands.
                    if !s.classified.insert(key) {
                        continue;
                    }
                    if let Some(found) = finding {
                        s.column_tags.push(tarn_storage::security::ColumnTag {
                            table,
                            column,
                            tag: found.tag.to_string(),
                            confidence: found.confidence,
                            source: tarn_storage::security::TagSource::Detector,
                        });
                    }
                }
                Ok::<_, StorageError>(())
            })
            .await;
        match recorded {
            // Masks bound to the new tags apply to plans made from now on.
            Ok(()) => self.engine.catalog_changed(),
            Err(e) => tracing::warn!(error = %e, "could not record the detector's column tags"),
        }
    }

    /// Carries out one write statement inside the open transaction.
    async fn apply(
        &mut self,
        planned: &PlannedWrite,
        params: &[datafusion::common::ScalarValue],
    ) -> Result<Done> {
        let table = &planned.table;
        // Pin the table's snapshot before the statement reads it.
        let (snapshot, overlay) = self.txn.pinned(table)?.expect("a transaction is open");
        let input = crate::statements::params::with_params(planned.input.clone(), params)?;
        let batches = self.ctx.execute_logical_plan(input).await?.collect().await?;
        let schema = snapshot.schema();

        if !table.has_primary_key() {
            return self.apply_keyless(planned, params, batches).await;
        }
        let codec = table.key_codec().expect("primary-key table");
        let exists = |key: &Key| -> bool {
            if let Some(o) = &overlay {
                if let Some(row) = o.keys.get(key) {
                    return row.is_some();
                }
            }
            match snapshot.changes.as_ref().expect("epoch").lookup(key, snapshot.seq) {
                Lookup::Changed(row) => row.is_some(),
                Lookup::InBase(_) => true,
                Lookup::Absent => false,
            }
        };

        let mut writes: Vec<Write> = Vec::new();
        let mut returned = Vec::new();
        match &planned.kind {
            DmlKind::Insert { on_conflict } => {
                let rows = self.generate(table, table.prepare_rows(batches).await?, None)?;
                let Some(rows) = concat(&schema, rows)? else { return Ok(Done { rows: 0, returned }) };
                let keys = codec.keys(&rows)?;
                match on_conflict {
                    None => {
                        let mut seen = HashSet::with_capacity(keys.len());
                        for (r, key) in keys.iter().enumerate() {
                            if exists(key) || !seen.insert(key) {
                                return Err(StorageError::UniqueViolation {
                                    constraint: snapshot.def().primary_key_constraint(),
                                    detail: format!("{} already exists.", codec.describe(&rows, r)),
                                }
                                .into());
                            }
                        }
                        writes.push(Write { kind: WriteKind::Insert, rows: rows.clone() });
                        returned.push(rows);
                    }
                    Some(OnConflict::Nothing) => {
                        let mut seen = HashSet::with_capacity(keys.len());
                        let keep: BooleanArray =
                            keys.iter().map(|k| Some(!exists(k) && seen.insert(k.clone()))).collect();
                        let rows = filter_record_batch(&rows, &keep)?;
                        writes.push(Write { kind: WriteKind::InsertOrSkip, rows: rows.clone() });
                        returned.push(rows);
                    }
                    Some(OnConflict::Update { alias, assignments, selection }) => {
                        let mut seen = HashSet::with_capacity(keys.len());
                        for key in &keys {
                            if !seen.insert(key) {
                                return Err(EngineError::CardinalityViolation {
                                    message: "ON CONFLICT DO UPDATE command cannot affect row a second time"
                                        .into(),
                                });
                            }
                        }
                        let conflicting: Vec<bool> = keys.iter().map(exists).collect();
                        let fresh = filter_record_batch(
                            &rows,
                            &BooleanArray::from(conflicting.iter().map(|c| !c).collect::<Vec<_>>()),
                        )?;
                        let excluded = filter_record_batch(&rows, &BooleanArray::from(conflicting.clone()))?;
                        if fresh.num_rows() > 0 {
                            writes.push(Write { kind: WriteKind::UpsertInsert, rows: fresh.clone() });
                            returned.push(fresh);
                        }
                        if excluded.num_rows() > 0 {
                            let excluded_keys = codec.keys(&excluded)?;
                            let existing = crate::catalog::provider::lookup_rows(
                                &snapshot,
                                overlay.clone(),
                                &excluded_keys,
                                table,
                            )
                            .await?;
                            let updated = self.evaluate_conflict_update(
                                &schema,
                                alias,
                                assignments,
                                selection.as_deref(),
                                &existing,
                                &excluded,
                                params,
                            )?;
                            let updated = self.generate(table, vec![updated], Some(&existing))?;
                            let updated = table.prepare_rows(updated).await?.remove(0);
                            writes.push(Write { kind: WriteKind::Update, rows: updated.clone() });
                            returned.push(updated);
                        }
                    }
                }
            }
            DmlKind::Update => {
                let width = schema.fields().len();
                let Some(both) = concat_any(batches)? else { return Ok(Done { rows: 0, returned }) };
                let new = with_schema(&schema, both.columns()[..width].to_vec(), both.num_rows())?;
                let old = with_schema(&schema, both.columns()[width..].to_vec(), both.num_rows())?;
                let new = self.generate(table, vec![new], Some(&old))?;
                let new = table.prepare_rows(new).await?.remove(0);
                let old = table.prepare_rows(vec![old]).await?.remove(0);
                let (new_keys, old_keys) = (codec.keys(&new)?, codec.keys(&old)?);
                // A join in UPDATE ... FROM can meet a row twice: it is updated once.
                let mut seen = HashSet::new();
                let first: Vec<bool> = old_keys.iter().map(|k| seen.insert(k.clone())).collect();
                let same: Vec<bool> =
                    new_keys.iter().zip(&old_keys).zip(&first).map(|((n, o), f)| *f && n == o).collect();
                let moved: Vec<bool> =
                    new_keys.iter().zip(&old_keys).zip(&first).map(|((n, o), f)| *f && n != o).collect();
                let kept_new = filter_record_batch(&new, &BooleanArray::from(same))?;
                let moved_old = filter_record_batch(&old, &BooleanArray::from(moved.clone()))?;
                let moved_new = filter_record_batch(&new, &BooleanArray::from(moved))?;
                if moved_old.num_rows() > 0 {
                    writes.push(Write { kind: WriteKind::Delete, rows: moved_old });
                    for (r, key) in codec.keys(&moved_new)?.iter().enumerate() {
                        // `seen` holds every old key: a key this update moves away is free.
                        if exists(key) && !seen.contains(key) {
                            return Err(StorageError::UniqueViolation {
                                constraint: snapshot.def().primary_key_constraint(),
                                detail: format!("{} already exists.", codec.describe(&moved_new, r)),
                            }
                            .into());
                        }
                    }
                }
                writes.push(Write { kind: WriteKind::Update, rows: kept_new.clone() });
                returned.push(kept_new);
                if moved_new.num_rows() > 0 {
                    writes.push(Write { kind: WriteKind::Insert, rows: moved_new.clone() });
                    returned.push(moved_new);
                }
            }
            DmlKind::Delete | DmlKind::Truncate => {
                let Some(rows) = concat(&schema, batches)? else { return Ok(Done { rows: 0, returned }) };
                let rows = relabel(&schema, &rows)?;
                writes.push(Write { kind: WriteKind::Delete, rows: rows.clone() });
                returned.push(rows);
            }
        }
        writes.retain(|w| w.rows.num_rows() > 0);
        let command = match planned.kind {
            DmlKind::Insert { .. } => PolicyCommand::Insert,
            _ => PolicyCommand::Update,
        };
        let new_rows: Vec<&RecordBatch> =
            writes.iter().filter(|w| w.kind != WriteKind::Delete).map(|w| &w.rows).collect();
        self.check_new_rows(table, command, &new_rows)?;
        let rows = returned.iter().map(|b| b.num_rows() as u64).sum();
        if !writes.is_empty() {
            self.txn.add_writes(table, writes)?;
        }
        Ok(Done { rows, returned })
    }

    /// Tables without a primary key: inserts are appended at commit; `UPDATE`/`DELETE`
    /// rewrite the table, and only outside `BEGIN`.
    async fn apply_keyless(
        &mut self,
        planned: &PlannedWrite,
        params: &[datafusion::common::ScalarValue],
        batches: Vec<RecordBatch>,
    ) -> Result<Done> {
        let table = &planned.table;
        let schema = table.snapshot().schema();
        if let DmlKind::Insert { on_conflict: Some(_) } = planned.kind {
            return Err(EngineError::InvalidOnConflict);
        }
        if let DmlKind::Insert { .. } = planned.kind {
            let rows = self.generate(table, table.prepare_rows(batches).await?, None)?;
            self.check_new_rows(table, PolicyCommand::Insert, &rows.iter().collect::<Vec<_>>())?;
            let count = rows.iter().map(|b| b.num_rows() as u64).sum();
            self.txn.add_appends(table, rows.clone())?;
            return Ok(Done { rows: count, returned: rows });
        }
        if self.tx_status() != TxStatus::Idle {
            return Err(EngineError::unsupported(
                "UPDATE, DELETE and TRUNCATE of a table without a primary key are not supported inside BEGIN ... COMMIT yet",
            ));
        }
        let kept = match &planned.kept {
            Some(kept) => {
                self.ctx
                    .execute_logical_plan(crate::statements::params::with_params(kept.clone(), params)?)
                    .await?
                    .collect()
                    .await?
            }
            None => Vec::new(),
        };
        let width = schema.fields().len();
        let (changed, returned) = match planned.kind {
            DmlKind::Update => {
                let Some(both) = concat_any(batches)? else { return Ok(Done { rows: 0, returned: vec![] }) };
                let new = with_schema(&schema, both.columns()[..width].to_vec(), both.num_rows())?;
                let old = with_schema(&schema, both.columns()[width..].to_vec(), both.num_rows())?;
                let new = self.generate(table, vec![new], Some(&old))?;
                (new.clone(), new)
            }
            _ => (Vec::new(), batches),
        };
        let mut all = kept;
        all.extend(changed);
        table.overwrite(all).await?;
        let rows = returned.iter().map(|b| b.num_rows() as u64).sum();
        Ok(Done { rows, returned })
    }

    /// Row policies' `WITH CHECK` on rows an `INSERT` or `UPDATE` writes: 42501 for a
    /// row that fails it, as PostgreSQL (a role row security applies to only).
    fn check_new_rows(&self, table: &Table, command: PolicyCommand, batches: &[&RecordBatch]) -> Result<()> {
        let Some(subject) = self.access.subject().filter(|s| s.row_security) else { return Ok(()) };
        let name = table.name();
        let Some(first) = batches.first() else { return Ok(()) };
        if !subject.security.row_security.contains(&name) {
            return Ok(());
        }
        // Planned once for the statement's rows (they share the table's schema).
        let sql = row_security::policy_sql(&subject.security, &name, command, &subject.roles, true);
        let schema = nullable_schema(&first.schema());
        let expr = crate::access::plan_expr(&self.planning, &sql, schema.clone())?;
        let physical = self.planning.create_physical_expr(expr, &DFSchema::try_from(schema)?)?;
        for rows in batches {
            let passed = physical.evaluate(rows)?.into_array(rows.num_rows())?;
            let passed = arrow::array::AsArray::as_boolean(&passed);
            if arrow::array::Array::null_count(passed) > 0 || passed.false_count() > 0 {
                return Err(EngineError::InsufficientPrivilege {
                    message: format!(
                        "new row violates row-level security policy for table \"{}\"",
                        name.table
                    ),
                });
            }
        }
        Ok(())
    }

    /// The reads of an `UPDATE` or `DELETE` for a role privileges apply to: its
    /// privilege on the target, `SELECT` on the columns its `SET` values, `WHERE` and
    /// `RETURNING` read (of every table it names), and, under row security, the
    /// command's policies added to `filter` (its rows: those the `SELECT` policies and
    /// the command's pass). `None` for a superuser.
    async fn secure_write(
        &self,
        table: &Table,
        privilege: Privilege,
        from: &str,
        reads: Vec<String>,
        filter: &mut String,
    ) -> Result<()> {
        let Some(subject) = self.access.subject() else { return Ok(()) };
        let name = table.name();
        privileges::check_write(&subject, &name, privilege)?;
        let items = if reads.is_empty() { "1".to_string() } else { reads.join(", ") };
        let plan = self.plan_sql(&format!("SELECT {items} FROM {from}{filter}")).await?;
        privileges::check_named(&subject, &plan)?;
        let plan = self.planning.optimize(&plan).unwrap_or(plan);
        privileges::check_reads(&subject, &plan, false)?;
        if subject.row_security && subject.security.row_security.contains(&name) {
            if !table.has_primary_key() {
                return Err(EngineError::unsupported(format!(
                    "UPDATE and DELETE under row-level security need a primary key on \"{}\" yet",
                    name.table
                )));
            }
            let command = match privilege {
                Privilege::Update => PolicyCommand::Update,
                _ => PolicyCommand::Delete,
            };
            let policy = row_security::policy_sql(&subject.security, &name, command, &subject.roles, false);
            *filter = match filter.is_empty() {
                true => format!(" WHERE {policy}"),
                false => format!("{filter} AND ({policy})"),
            };
        }
        Ok(())
    }

    /// `rows` (identities filled) with the table's generated columns computed, in the
    /// table's schema (`old`: the rows before an update, in the same order).
    fn generate(
        &self,
        table: &Table,
        rows: Vec<RecordBatch>,
        old: Option<&RecordBatch>,
    ) -> Result<Vec<RecordBatch>> {
        let snapshot = table.snapshot();
        let def = snapshot.def();
        let state = self.ctx.state();
        let Some(generated) = Generated::plan(&state, def)? else {
            return Ok(rows);
        };
        rows.iter().map(|batch| generated.fill(batch, old)).collect()
    }

    /// The rows `ON CONFLICT DO UPDATE` writes for conflicting rows: the existing row
    /// with the `SET` columns replaced, where the `WHERE` holds.
    #[allow(clippy::too_many_arguments)]
    fn evaluate_conflict_update(
        &self,
        schema: &SchemaRef,
        alias: &str,
        assignments: &[(usize, String)],
        selection: Option<&str>,
        existing: &RecordBatch,
        excluded: &RecordBatch,
        params: &[datafusion::common::ScalarValue],
    ) -> Result<RecordBatch> {
        let df_schema = conflict_schema(schema, alias)?;
        let mut columns = existing.columns().to_vec();
        columns.extend(excluded.columns().iter().cloned());
        let arrow_schema: SchemaRef = Arc::new(df_schema.as_arrow().clone());
        let combined = RecordBatch::try_new(arrow_schema, columns)?;
        let state = self.ctx.state();
        let props = ExecutionProps::new();
        let evaluate = |sql: &str| -> Result<ArrayRef> {
            let expr =
                crate::statements::params::bind_expr(state.create_logical_expr(sql, &df_schema)?, params)?;
            let physical = datafusion::physical_expr::create_physical_expr(&expr, &df_schema, &props)?;
            Ok(physical.evaluate(&combined)?.into_array(combined.num_rows())?)
        };
        let mut out: Vec<ArrayRef> = existing.columns().to_vec();
        for (index, sql) in assignments {
            let value = evaluate(sql)?;
            out[*index] = cast(&value, schema.field(*index).data_type())?;
        }
        let updated = with_schema(schema, out, existing.num_rows())?;
        match selection {
            Some(sql) => {
                let keep = evaluate(sql)?;
                let keep = keep
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| EngineError::syntax("argument of WHERE must be type boolean"))?;
                let keep: BooleanArray = keep.iter().map(|v| Some(v == Some(true))).collect();
                Ok(filter_record_batch(&updated, &keep)?)
            }
            None => Ok(updated),
        }
    }
}

/// The row `ON CONFLICT DO UPDATE` expressions see: the existing row under the
/// target's name (or alias), the proposed one as `excluded`.
fn conflict_schema(schema: &SchemaRef, alias: &str) -> Result<DFSchema> {
    let mut fields = Vec::new();
    for name in [TableReference::bare(alias), TableReference::bare("excluded")] {
        for field in schema.fields() {
            fields.push((Some(name.clone()), Arc::new(field.as_ref().clone().with_nullable(true))));
        }
    }
    Ok(DFSchema::new_with_metadata(fields, Default::default())?)
}

/// The types of the parameters in `ON CONFLICT DO UPDATE SET ... [WHERE ...]`, from
/// where each stands (`SET score = score + $5`: a double).
pub(crate) fn conflict_param_hints(
    state: &datafusion::execution::SessionState,
    schema: &SchemaRef,
    on_conflict: &OnConflict,
) -> Result<Vec<(usize, arrow::datatypes::DataType)>> {
    let OnConflict::Update { alias, assignments, selection } = on_conflict else { return Ok(Vec::new()) };
    let df_schema = conflict_schema(schema, alias)?;
    let mut hints = crate::statements::params::ParamHints::new();
    for sql in assignments.iter().map(|(_, sql)| sql.as_str()).chain(selection.as_deref()) {
        let expr = state.create_logical_expr(sql, &df_schema)?;
        hints.extend(crate::statements::params::placeholder_types(expr, &df_schema)?);
    }
    Ok(hints.into_iter().collect())
}

/// The SQL of a `SET column = value`: a bare `$n` is cast to the column's type, so the
/// parameter's type is inferred from the column as Postgres does.
fn assigned_value(value: &ast::Expr, column: &arrow::datatypes::DataType) -> String {
    use arrow::datatypes::DataType as T;
    let is_parameter = matches!(value, ast::Expr::Value(v) if matches!(v.value, ast::Value::Placeholder(_)));
    let type_name = match column {
        T::Boolean => Some("BOOLEAN".to_string()),
        T::Int16 => Some("SMALLINT".into()),
        T::Int32 => Some("INT".into()),
        T::Int64 => Some("BIGINT".into()),
        T::Float32 => Some("REAL".into()),
        T::Float64 => Some("DOUBLE PRECISION".into()),
        T::Utf8 => Some("TEXT".into()),
        T::Date32 => Some("DATE".into()),
        T::Timestamp(_, None) => Some("TIMESTAMP".into()),
        T::Timestamp(_, Some(_)) => Some("TIMESTAMPTZ".into()),
        T::Decimal128(p, s) => Some(format!("NUMERIC({p}, {s})")),
        _ => None,
    };
    let is_text =
        matches!(value, ast::Expr::Value(v) if matches!(v.value, ast::Value::SingleQuotedString(_)));
    match (type_name, crate::search::vector::vector_dims(column)) {
        (Some(name), _) if is_parameter => format!("CAST({value} AS {name})"),
        // `SET embedding = '[1,2,3]'`: text to the column's vector type.
        (_, Some(dims)) if is_text => format!("to_vector({value}, {dims})"),
        _ => value.to_string(),
    }
}

/// A plan that yields `batches` (rows already computed).
pub(crate) fn rows_plan(batches: Vec<RecordBatch>) -> Result<LogicalPlan> {
    let schema = batches[0].schema();
    let source = datafusion::datasource::provider_as_source(Arc::new(
        datafusion::datasource::MemTable::try_new(schema, vec![batches])?,
    ));
    Ok(datafusion::logical_expr::LogicalPlanBuilder::scan("rows", source, None)?.build()?)
}

/// `INSERT ... VALUES` whose every value is a literal, as rows of the table, built
/// without DataFusion (planning a thousand-row `VALUES` costs more than writing it).
/// `positions[i]` is the table column of the i-th value of a row. `None` (fall back to
/// DataFusion, which gives Postgres' semantics and errors) for anything else: an
/// expression or parameter, a column left out that has a default, a type whose text
/// form Arrow reads differently from Postgres, a value that does not convert.
pub(crate) fn literal_rows(
    source: &ast::Query,
    positions: &[usize],
    def: &tarn_storage::TableDef,
) -> Option<RecordBatch> {
    use arrow::datatypes::DataType as T;
    if source.with.is_some() || source.order_by.is_some() || source.limit_clause.is_some() {
        return None;
    }
    let ast::SetExpr::Values(values) = source.body.as_ref() else { return None };
    let width = def.schema.fields().len();
    let mut seen = vec![false; width];
    for &p in positions {
        if std::mem::replace(&mut seen[p], true) {
            return None;
        }
    }
    if (0..width).any(|i| !seen[i] && def.columns[i].default.is_some()) {
        return None;
    }
    let types: Vec<&T> = positions.iter().map(|&p| def.schema.field(p).data_type()).collect();
    if !types.iter().all(|t| {
        matches!(
            t,
            T::Int16 | T::Int32 | T::Int64 | T::Float32 | T::Float64 | T::Utf8 | T::Boolean | T::Date32
        ) || matches!(t, T::Timestamp(_, None))
    }) {
        return None;
    }
    let mut texts: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(values.rows.len()); positions.len()];
    for row in &values.rows {
        if row.len() != positions.len() {
            return None;
        }
        for (i, expr) in row.iter().enumerate() {
            let text = match expr {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::Number(n, _) if *types[i] != T::Boolean => Some(n.clone()),
                    ast::Value::SingleQuotedString(s) => Some(s.clone()),
                    ast::Value::Boolean(b) if *types[i] == T::Boolean => Some(b.to_string()),
                    ast::Value::Null => None,
                    _ => return None,
                },
                ast::Expr::UnaryOp { op: ast::UnaryOperator::Minus, expr } => match expr.as_ref() {
                    ast::Expr::Value(v) => match &v.value {
                        ast::Value::Number(n, _) if *types[i] != T::Boolean => Some(format!("-{n}")),
                        _ => return None,
                    },
                    _ => return None,
                },
                _ => return None,
            };
            texts[i].push(text);
        }
    }
    let rows = values.rows.len();
    let strict = arrow::compute::CastOptions { safe: false, ..Default::default() };
    let mut columns: Vec<Option<ArrayRef>> = vec![None; width];
    for (i, &p) in positions.iter().enumerate() {
        let text: ArrayRef = Arc::new(arrow::array::StringArray::from(std::mem::take(&mut texts[i])));
        let column = if *types[i] == T::Utf8 {
            text
        } else {
            arrow::compute::cast_with_options(&text, types[i], &strict).ok()?
        };
        columns[p] = Some(column);
    }
    let columns: Vec<ArrayRef> = columns
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            c.unwrap_or_else(|| arrow::array::new_null_array(def.schema.field(i).data_type(), rows))
        })
        .collect();
    let schema = nullable_schema(&def.schema);
    RecordBatch::try_new_with_options(schema, columns, &RecordBatchOptions::new().with_row_count(Some(rows)))
        .ok()
}

/// The table an `UPDATE`/`DELETE` names, and its alias.
fn target_of(relation: &ast::TableFactor) -> Result<(TableName, Option<String>)> {
    match relation {
        ast::TableFactor::Table { name, alias, .. } => {
            Ok((ddl::table_name(name)?, alias.as_ref().map(|a| ddl::ident(&a.name))))
        }
        _ => Err(EngineError::unsupported("UPDATE and DELETE need a table name")),
    }
}

/// `"q"."a", "q"."b", ...`: every column of the table, qualified.
fn all_columns(table: &Table, alias: Option<&str>) -> String {
    let snapshot = table.snapshot();
    let name = snapshot.def().name.clone();
    let qualifier = match alias {
        Some(a) => ast::Ident::with_quote('"', a).to_string(),
        None => format!(
            "{}.{}",
            ast::Ident::with_quote('"', &name.schema),
            ast::Ident::with_quote('"', &name.table)
        ),
    };
    snapshot
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{qualifier}.{}", ast::Ident::with_quote('"', f.name())))
        .collect::<Vec<_>>()
        .join(", ")
}

fn with_schema(schema: &SchemaRef, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c) } else { cast(&c, f.data_type()) })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new_with_options(
        nullable_schema(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )?)
}

fn relabel(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    with_schema(schema, batch.columns().to_vec(), batch.num_rows())
}

fn concat(schema: &SchemaRef, batches: Vec<RecordBatch>) -> Result<Option<RecordBatch>> {
    let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
    if batches.is_empty() {
        return Ok(None);
    }
    let batches = batches.iter().map(|b| relabel(schema, b)).collect::<Result<Vec<_>>>()?;
    Ok(Some(concat_batches(&batches[0].schema(), &batches)?))
}

fn concat_any(batches: Vec<RecordBatch>) -> Result<Option<RecordBatch>> {
    let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
    if batches.is_empty() {
        return Ok(None);
    }
    Ok(Some(concat_batches(&batches[0].schema(), &batches)?))
}
