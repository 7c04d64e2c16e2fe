//! Statements the session carries out itself, matched on the parsed statement, never
//! reaching DataFusion: DDL, transaction control, `SET`/`SHOW`/`RESET`/`DISCARD`, and the
//! statements that are not built yet (answered with 0A000, never a wrong answer).

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{self, ObjectType, Reset, SchemaName, Set, Statement};
use tarn_storage::StorageError;

use crate::error::{EngineError, Result};
use crate::search::index_ddl;
use crate::statements::ddl;
use crate::statements::parser::{parse_sql, ParsedStatement};
use crate::statements::session::{CommandTag, Output, RowsCommand, Session, TxStatus};
use crate::statements::settings::{set_value_text, variable_name};

impl Session {
    /// A new column's `DEFAULT` for the rows a table has: evaluated once, as a one-row
    /// array of the column's type. A volatile one (`random()`, `nextval`), which
    /// PostgreSQL evaluates per row, is refused.
    async fn default_value(
        &mut self,
        default: &str,
        sql_type: &ast::DataType,
        field: &Field,
    ) -> Result<arrow::array::ArrayRef> {
        if self.engine.default_parser().parse(default).is_some_and(|e| e.is_volatile()) {
            return Err(EngineError::unsupported(format!(
                "ADD COLUMN with a volatile DEFAULT ({default}) on a table that has rows is not supported yet"
            )));
        }
        let query = parse_sql(&format!("SELECT CAST(({default}) AS {sql_type})"))?.remove(0);
        let Output::Rows { stream, .. } = Box::pin(self.execute_now(query)).await? else {
            return Err(EngineError::Internal { message: "a DEFAULT evaluated to no rows".into() });
        };
        let batches: Vec<RecordBatch> = futures::TryStreamExt::try_collect(stream).await?;
        let value = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .map(|b| b.column(0).slice(0, 1))
            .ok_or_else(|| EngineError::Internal { message: "a DEFAULT evaluated to no row".into() })?;
        Ok(arrow::compute::cast(&value, field.data_type())?)
    }

    /// Statements carried out without DataFusion.
    pub(crate) async fn run_other(&mut self, parsed: &ParsedStatement) -> Result<Output> {
        let warehouse = self.engine.warehouse().clone();
        let statement = &parsed.statement;
        if let Some(tag) = self.run_access(parsed).await? {
            return Ok(Output::Command(tag));
        }
        // Tarn has no table owners yet: only a superuser changes the catalog, but any
        // role makes and drops its session's temporary relations (as PostgreSQL's TEMP
        // privilege, PUBLIC's by default, lets it).
        let catalog_change =
            changes_catalog(statement) || matches!(statement, Statement::Drop { .. } | Statement::Vacuum(_));
        if catalog_change && !own_temporary(statement, self.temp.name()) {
            self.access.require_superuser(&format!("run {}", command_name(statement)))?;
        }
        let tag = match statement {
            Statement::CreateTable(create) if create.external => {
                let iceberg = parsed.table_format.as_deref() == Some("iceberg");
                Box::pin(self.create_external(create, iceberg)).await?
            }
            Statement::CreateTable(create) => {
                if create.or_replace {
                    return Err(EngineError::unsupported("CREATE OR REPLACE TABLE is not supported"));
                }
                if create.on_commit.is_some() {
                    return Err(EngineError::unsupported(
                        "ON COMMIT of temporary tables is not supported yet",
                    ));
                }
                let mut def = ddl::table_def(create, parsed.table_format.as_deref())?;
                crate::statements::generated::check_definition(&self.ctx.state(), &def)?;
                if create.temporary {
                    def.name = Box::pin(self.temp.place(&create.name)).await?;
                }
                warehouse.create_table(def, create.if_not_exists).await?;
                CommandTag::new("CREATE TABLE")
            }
            Statement::Drop { object_type: ObjectType::Table, if_exists, names, cascade, .. } => {
                self.drop_relations(false, names, *if_exists, *cascade).await?
            }
            Statement::Drop { object_type: ObjectType::View, if_exists, names, cascade, .. } => {
                self.drop_relations(true, names, *if_exists, *cascade).await?
            }
            Statement::CreateView(create) => self.create_view(create).await?,
            Statement::Comment { object_type, object_name, comment, .. } => {
                self.comment_on(object_type, object_name, comment.as_deref()).await?
            }
            Statement::Drop { object_type: ObjectType::Index, if_exists, names, .. } => {
                for name in names {
                    let name = ddl::table_name(name)?;
                    match index_ddl::find_index(&warehouse, &name.schema, &name.table) {
                        Some(table) => table.drop_index(&name.table).await?,
                        None if *if_exists => {}
                        None => return Err(StorageError::IndexNotFound { name: name.table }.into()),
                    }
                }
                CommandTag::new("DROP INDEX")
            }
            Statement::Drop { object_type: ObjectType::Sequence, if_exists, names, .. } => {
                for name in names {
                    let name = ddl::table_name(name)?;
                    if let Some(e) = crate::functions::sequences::not_a_sequence(&warehouse, &name) {
                        return Err(e);
                    }
                    Box::pin(warehouse.drop_sequence(&name, *if_exists)).await?;
                }
                CommandTag::new("DROP SEQUENCE")
            }
            Statement::Drop { object_type, .. } => {
                return Err(EngineError::unsupported(format!("DROP {object_type} is not supported yet")))
            }
            Statement::CreateSequence {
                temporary,
                if_not_exists,
                name,
                data_type,
                sequence_options,
                owned_by,
            } => {
                if *temporary || owned_by.is_some() {
                    return Err(EngineError::unsupported(
                        "temporary sequences and OWNED BY are not supported yet",
                    ));
                }
                let def = ddl::sequence_def(name, data_type.as_ref(), sequence_options)?;
                Box::pin(warehouse.create_sequence(def, *if_not_exists)).await?;
                CommandTag::new("CREATE SEQUENCE")
            }
            Statement::CreateIndex(create) => {
                let (name, declared) = index_ddl::index_def(create, &warehouse)?;
                let table =
                    warehouse.table(&name).ok_or(StorageError::TableNotFound { name: name.clone() })?;
                let exists = table.snapshot().manifest.has_index(declared.name());
                if exists && create.if_not_exists {
                    return Ok(Output::Command(CommandTag::new("CREATE INDEX")));
                }
                index_ddl::check_name_free(&warehouse, &name, declared.name())?;
                let def = match declared {
                    index_ddl::Declared::Vector(def) => def,
                    index_ddl::Declared::Scalar(def) => {
                        for column in &def.columns {
                            if table.snapshot().def().column_index(column).is_none() {
                                return Err(EngineError::UndefinedColumn { column: column.clone() });
                            }
                        }
                        table.create_scalar_index(def, create.if_not_exists).await?;
                        return Ok(Output::Command(CommandTag::new("CREATE INDEX")));
                    }
                    index_ddl::Declared::Text(def) => {
                        for column in &def.columns {
                            if table.snapshot().def().column_index(&column.name).is_none() {
                                return Err(EngineError::UndefinedColumn { column: column.name.clone() });
                            }
                        }
                        table.create_text_index(def, create.if_not_exists).await?;
                        return Ok(Output::Command(CommandTag::new("CREATE INDEX")));
                    }
                };
                {
                    let column = table.snapshot().def().column_index(&def.column);
                    let Some(column) = column else {
                        return Err(EngineError::UndefinedColumn { column: def.column });
                    };
                    let data_type = table.snapshot().schema().field(column).data_type().clone();
                    if crate::search::vector::vector_dims(&data_type).is_none() {
                        return Err(EngineError::UndefinedObject {
                            message: format!(
                                "data type {} has no default operator class for access method \"{}\"",
                                crate::types::pg_type_of_arrow(&data_type).name,
                                def.method.name()
                            ),
                        });
                    }
                    table.create_index(def, create.if_not_exists).await?;
                }
                CommandTag::new("CREATE INDEX")
            }
            Statement::AlterTable(alter) => {
                if let [ast::AlterTableOperation::RenameTable { table_name }] = alter.operations.as_slice() {
                    let (ast::RenameTableNameKind::To(to) | ast::RenameTableNameKind::As(to)) = table_name;
                    let tag =
                        self.rename_relation(&alter.name, to, alter.if_exists, parsed.alter_view).await?;
                    return Ok(Output::Command(tag));
                }
                let name = ddl::table_name(&alter.name)?;
                let Some(table) = warehouse.table(&name) else {
                    if warehouse.view(&name).is_some() {
                        return Err(EngineError::unsupported(format!(
                            "ALTER {} of a view is not supported yet (only RENAME TO)",
                            if parsed.alter_view { "VIEW" } else { "TABLE" }
                        )));
                    }
                    if alter.if_exists {
                        return Ok(Output::Command(CommandTag::new("ALTER TABLE")));
                    }
                    return Err(StorageError::TableNotFound { name }.into());
                };
                if parsed.alter_view {
                    return Err(EngineError::WrongObjectType {
                        message: format!("\"{}\" is not a view", name.table),
                    });
                }
                self.txn.unpin_for_alter(&table)?;
                for operation in &alter.operations {
                    match operation {
                        ast::AlterTableOperation::AddColumn { if_not_exists, column_def, .. } => {
                            let (field, meta, is_key) = ddl::column_def(column_def)?;
                            if is_key {
                                return Err(EngineError::unsupported(
                                    "adding a primary key column is not supported",
                                ));
                            }
                            if meta.generated.is_some() {
                                return Err(EngineError::unsupported(
                                    "ADD COLUMN ... GENERATED ALWAYS AS is not supported yet: create the table with it",
                                ));
                            }
                            let exists = table.snapshot().def().column_index(field.name()).is_some();
                            if exists && *if_not_exists {
                                continue;
                            }
                            // Rows there get the default, evaluated once, as PostgreSQL
                            // does for a non-volatile one.
                            let snapshot = table.snapshot();
                            let has_rows = snapshot.manifest.row_count > 0
                                || snapshot.seq > snapshot.manifest.folded_seq;
                            let fill = match &meta.default {
                                Some(default) if has_rows => {
                                    Some(self.default_value(default, &column_def.data_type, &field).await?)
                                }
                                _ => None,
                            };
                            table.add_column(field, meta, fill).await?;
                        }
                        ast::AlterTableOperation::RenameColumn { old_column_name, new_column_name } => {
                            let (from, to) = (ddl::ident(old_column_name), ddl::ident(new_column_name));
                            Box::pin(self.rename_column(&table, &from, &to)).await?;
                        }
                        ast::AlterTableOperation::DropColumn {
                            column_names,
                            if_exists,
                            drop_behavior,
                            ..
                        } => {
                            let cascade = matches!(drop_behavior, Some(ast::DropBehavior::Cascade));
                            for column in column_names {
                                Box::pin(self.drop_column(&table, &ddl::ident(column), *if_exists, cascade))
                                    .await?;
                            }
                        }
                        ast::AlterTableOperation::SetOptionsParens { options } => {
                            // Only the clustering changes after CREATE TABLE.
                            for option in options {
                                let ast::SqlOption::KeyValue { key, .. } = option else { continue };
                                let key = ddl::ident(key);
                                if key != tarn_storage::cluster::OPTION {
                                    return Err(EngineError::unsupported(format!(
                                        "option \"{key}\" is set at CREATE TABLE only (ALTER TABLE SET takes cluster_by)"
                                    )));
                                }
                            }
                            let given = ast::CreateTableOptions::With(options.clone());
                            for (_, value) in ddl::table_options(&given)?.1 {
                                table.set_cluster_by(&value).await?;
                            }
                        }
                        other => {
                            return Err(EngineError::unsupported(format!(
                                "ALTER TABLE {other} is not supported yet"
                            )))
                        }
                    }
                }
                CommandTag::new("ALTER TABLE")
            }
            Statement::CreateSchema { schema_name, if_not_exists, .. } => {
                let name = match schema_name {
                    SchemaName::Simple(name) => name.0.last().map(|p| match p {
                        ast::ObjectNamePart::Identifier(i) => ddl::ident(i),
                        other => other.to_string(),
                    }),
                    _ => None,
                }
                .ok_or_else(|| EngineError::unsupported("CREATE SCHEMA AUTHORIZATION is not supported"))?;
                warehouse.create_schema(&name, *if_not_exists).await?;
                CommandTag::new("CREATE SCHEMA")
            }
            Statement::StartTransaction { modes, .. } => {
                if self.tx == TxStatus::Idle {
                    self.block_read_only = match access_mode(modes) {
                        Some(read_only) => read_only,
                        None => self.read_only(),
                    };
                    self.tx = TxStatus::InBlock;
                    self.txn.begin();
                }
                CommandTag::new("BEGIN")
            }
            Statement::Commit { .. } => {
                let failed = self.tx == TxStatus::Failed;
                let open = self.tx != TxStatus::Idle;
                self.tx = TxStatus::Idle;
                self.cursors.end_transaction();
                // The block's writes' lineage runs end with it: complete with the
                // versions the commit made, or aborted with the writes.
                let runs = std::mem::take(&mut self.lineage_pending);
                if failed || !open {
                    self.txn.take();
                } else {
                    // A failed commit ends the transaction too (its writes are gone).
                    Box::pin(self.commit_transaction()).await?;
                    let touched = self.txn.touched_now();
                    for (run, rows) in runs {
                        run.complete(&touched, rows);
                    }
                }
                CommandTag::new(if failed { "ROLLBACK" } else { "COMMIT" })
            }
            Statement::Rollback { savepoint: Some(name), .. } => {
                if self.tx == TxStatus::Idle {
                    return Err(EngineError::NoActiveTransaction {
                        message: "ROLLBACK TO SAVEPOINT can only be used in transaction blocks".into(),
                    });
                }
                self.txn.rollback_to(&ddl::ident(name))?;
                self.tx = TxStatus::InBlock;
                CommandTag::new("ROLLBACK")
            }
            Statement::Rollback { .. } => {
                self.tx = TxStatus::Idle;
                self.cursors.end_transaction();
                self.txn.take();
                self.lineage_pending.clear();
                CommandTag::new("ROLLBACK")
            }
            Statement::Savepoint { name } => {
                if self.tx == TxStatus::Idle {
                    return Err(EngineError::NoActiveTransaction {
                        message: "SAVEPOINT can only be used in transaction blocks".into(),
                    });
                }
                self.txn.savepoint(&ddl::ident(name));
                CommandTag::new("SAVEPOINT")
            }
            Statement::ReleaseSavepoint { name } => {
                if self.tx == TxStatus::Idle {
                    return Err(EngineError::NoActiveTransaction {
                        message: "RELEASE SAVEPOINT can only be used in transaction blocks".into(),
                    });
                }
                self.txn.release(&ddl::ident(name))?;
                CommandTag::new("RELEASE")
            }
            Statement::Set(set) => {
                self.run_set(set)?;
                CommandTag::new("SET")
            }
            Statement::Reset(reset) => {
                match &reset.reset {
                    Reset::ALL => {
                        self.reset_role();
                        self.settings.reset_all()
                    }
                    Reset::ConfigurationParameter(name) => self.settings.reset(&variable_name(name)),
                }
                self.sync_search_settings();
                CommandTag::new("RESET")
            }
            Statement::ShowVariable { variable } => {
                let name = variable.iter().map(|i| i.value.clone()).collect::<Vec<_>>().join(" ");
                let key = match name.to_lowercase().as_str() {
                    "transaction isolation level" => "transaction_isolation".to_string(),
                    "time zone" => "TimeZone".to_string(),
                    // `SHOW hnsw.ef_search`: an extension's dotted name.
                    _ if variable.len() == 2 => {
                        variable.iter().map(|i| i.value.clone()).collect::<Vec<_>>().join(".")
                    }
                    _ => name.clone(),
                };
                let value = self.settings.get(&key)?.to_string();
                let schema = show_schema(statement).expect("SHOW has a result");
                let batch =
                    RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec![value]))])?;
                let stream =
                    RecordBatchStreamAdapter::new(schema.clone(), futures::stream::iter(vec![Ok(batch)]));
                return Ok(Output::Rows { schema, stream: Box::pin(stream), command: RowsCommand::Show });
            }
            Statement::Discard { object_type } => {
                // Plans are kept per statement: DISCARD PLANS (and ALL) makes them anew.
                if matches!(object_type, ast::DiscardObject::ALL) {
                    // A pooled connection's next client is the session user again.
                    self.reset_role();
                    self.settings.reset_all();
                } else {
                    self.settings.renew();
                }
                self.sync_search_settings();
                self.forget_statements();
                CommandTag::new(&format!("DISCARD {object_type}"))
            }
            Statement::Close { cursor } => return self.close_cursor(cursor),
            Statement::Declare { stmts } => return self.declare(stmts).await,
            Statement::Fetch { name, direction, into: None, .. } => {
                return self.fetch(name, direction, parsed.moves).await
            }
            Statement::Deallocate { .. } => CommandTag::new("DEALLOCATE"),
            Statement::LISTEN { .. } => CommandTag::new("LISTEN"),
            Statement::UNLISTEN { .. } => CommandTag::new("UNLISTEN"),
            Statement::Truncate(truncate) => return self.truncate(truncate).await,
            Statement::Vacuum(vacuum) => {
                let tables = match &vacuum.table_name {
                    Some(name) => {
                        let name = ddl::table_name(name)?;
                        vec![warehouse.table(&name).ok_or(StorageError::TableNotFound { name })?]
                    }
                    None => warehouse.all_tables(),
                };
                if self.tx != TxStatus::Idle {
                    return Err(EngineError::ActiveTransaction {
                        message: "VACUUM cannot run inside a transaction block".into(),
                    });
                }
                for table in tables {
                    if vacuum.recluster {
                        // `CLUSTER t`, `VACUUM t (CLUSTER)`: every table that has a clustering.
                        if vacuum.table_name.is_none()
                            && tarn_storage::cluster::ClusterBy::of(table.snapshot().def())?.is_none()
                        {
                            continue;
                        }
                        table.cluster().await?;
                    } else {
                        table.compact().await?;
                        table.extend_indexes().await?;
                    }
                    warehouse.vacuum(&table).await?;
                }
                CommandTag::new(if vacuum.recluster { "CLUSTER" } else { "VACUUM" })
            }
            Statement::Merge(_) => return Err(EngineError::unsupported("MERGE is not supported yet")),
            Statement::Copy { target: ast::CopyTarget::File { .. }, .. } => {
                // As PostgreSQL's pg_write_server_files: the server's files are a
                // superuser's to write.
                self.access.require_superuser("COPY to a file")?;
                Box::pin(self.copy_to_file(statement)).await?
            }
            Statement::Copy { .. } => return Err(EngineError::unsupported("COPY is not supported yet")),
            Statement::Analyze(analyze) => Box::pin(self.refresh(analyze)).await?,
            other => {
                let text = other.to_string();
                let words: Vec<&str> = text.split_whitespace().take(2).collect();
                return Err(EngineError::unsupported(format!("{} is not supported", words.join(" "))));
            }
        };
        Ok(Output::Command(tag))
    }

    fn run_set(&mut self, set: &Set) -> Result<()> {
        let outcome = self.apply_set(set);
        self.sync_search_settings();
        outcome
    }

    /// Hands the vector-search knobs to the planner (see [`crate::search::knn::SearchSettings`])
    /// and the settings to `current_setting()`.
    pub(crate) fn sync_search_settings(&mut self) {
        let knob = |name: &str, default: usize| {
            self.settings.get(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
        };
        let settings = crate::search::knn::SearchSettings {
            ef_search: knob("hnsw.ef_search", crate::search::knn::DEFAULT_EF_SEARCH),
            probes: knob("ivfflat.probes", crate::search::knn::DEFAULT_PROBES),
        };
        self.ctx.state_ref().write().config_mut().set_extension(Arc::new(settings));
        self.ctx.register_udf(crate::catalog::pg_catalog::functions::current_setting(self.settings.all()));
        self.refresh_planning_state();
    }

    /// Tells the session the process id its client knows it by (`pg_backend_pid()`).
    pub fn set_backend_pid(&mut self, pid: i32) {
        self.ctx.register_udf(crate::catalog::pg_catalog::functions::pg_backend_pid(pid));
        self.refresh_planning_state();
    }

    fn apply_set(&mut self, set: &Set) -> Result<()> {
        match set {
            Set::SingleAssignment { variable, values, .. } => {
                let name = variable_name(variable);
                match set_value_text(values) {
                    Some(value) => self.settings.set(&name, &value),
                    None => {
                        self.settings.reset(&name);
                        Ok(())
                    }
                }
            }
            Set::SetTimeZone { value, .. } => {
                let value = set_value_text(std::slice::from_ref(value)).unwrap_or_else(|| "Etc/UTC".into());
                self.settings.set("TimeZone", &value)
            }
            Set::SetNames { charset_name, .. } => {
                self.settings.set("client_encoding", &charset_name.to_string())
            }
            Set::SetNamesDefault {} => Ok(()),
            Set::SetTransaction { modes, session, .. } => {
                match (access_mode(modes), session) {
                    (Some(read_only), true) => self
                        .settings
                        .set("default_transaction_read_only", if read_only { "on" } else { "off" })?,
                    (Some(read_only), false) if self.tx != TxStatus::Idle => {
                        // PostgreSQL: a read-only transaction cannot become read-write.
                        if self.block_read_only && !read_only {
                            return Err(EngineError::ReadOnlyTransaction {
                                command: "SET TRANSACTION READ WRITE".into(),
                            });
                        }
                        self.block_read_only = read_only;
                    }
                    _ => {}
                }
                Ok(())
            }
            Set::SetSessionParam(_) | Set::SetRole { .. } => Ok(()),
            Set::SetSessionAuthorization(_) => {
                Err(EngineError::unsupported("SET SESSION AUTHORIZATION is not supported"))
            }
            Set::MultipleAssignments { assignments } => {
                for assignment in assignments {
                    let name = variable_name(&assignment.name);
                    let value = set_value_text(std::slice::from_ref(&assignment.value)).unwrap_or_default();
                    self.settings.set(&name, &value)?;
                }
                Ok(())
            }
            other => Err(EngineError::unsupported(format!("{other} is not supported"))),
        }
    }
}

/// Whether a statement changes the catalog (tables, columns, indexes, schemas), so
/// plans kept from before it must be made again.
pub(crate) fn changes_catalog(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::CreateTable(_)
            | Statement::Drop { .. }
            | Statement::CreateIndex(_)
            | Statement::AlterTable(_)
            | Statement::AlterIndex { .. }
            | Statement::CreateSchema { .. }
            | Statement::CreateView(_)
            | Statement::Comment { .. }
            | Statement::CreateSequence { .. }
            // Privileges and policies: plans are checked and filtered when made.
            | Statement::CreateRole(_)
            | Statement::AlterRole { .. }
            | Statement::Grant(_)
            | Statement::Revoke(_)
            | Statement::CreatePolicy(_)
            | Statement::DropPolicy(_)
            // `REFRESH TABLE`: an external table's columns may have changed.
            | Statement::Analyze(_)
    )
}

/// A statement on the session's own temporary tables only (names are qualified with
/// the temporary schema by then). Not a temporary view: its query would be read with
/// no check of the reader's privileges.
fn own_temporary(statement: &Statement, temp_schema: &str) -> bool {
    let temporary = |name: &ast::ObjectName| ddl::table_name(name).is_ok_and(|n| n.schema == temp_schema);
    match statement {
        Statement::CreateTable(create) => create.temporary && create.query.is_none(),
        Statement::Drop { object_type: ObjectType::Table, names, .. } => {
            !names.is_empty() && names.iter().all(temporary)
        }
        _ => false,
    }
}

/// A statement's first two words (`CREATE TABLE`), for messages.
fn command_name(statement: &Statement) -> String {
    statement.to_string().split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// The result column of `SHOW name`, or `None` for any other statement.
pub(crate) fn show_schema(statement: &Statement) -> Option<SchemaRef> {
    let Statement::ShowVariable { variable } = statement else { return None };
    let words: Vec<String> = variable.iter().map(|i| i.value.to_lowercase()).collect();
    // `SHOW hnsw.ef_search` is a dotted name (the column is `hnsw.ef_search`); `SHOW
    // transaction isolation level` is words.
    let dotted = words.len() == 2 && matches!(words[0].as_str(), "hnsw" | "ivfflat");
    let name = words.join(if dotted { "." } else { "_" });
    Some(Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)])))
}

/// `READ ONLY` (true) or `READ WRITE` (false) among a transaction's modes.
fn access_mode(modes: &[ast::TransactionMode]) -> Option<bool> {
    modes.iter().rev().find_map(|mode| match mode {
        ast::TransactionMode::AccessMode(ast::TransactionAccessMode::ReadOnly) => Some(true),
        ast::TransactionMode::AccessMode(ast::TransactionAccessMode::ReadWrite) => Some(false),
        _ => None,
    })
}
