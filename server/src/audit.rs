//! Each statement's record in the audit trail (`tarn_storage::audit`): who ran it from
//! where, its text (literals redacted if the server says so), its SQLSTATE, its rows
//! and how long it took, rows streamed to the client included, and the tables it read
//! and wrote with their versions.
//!
//! A statement's [`StatementAudit`] starts with it; its outcome ends it: an error's
//! SQLSTATE, a command's row count, or a result whose rows are counted as the client
//! reads them and recorded when the stream ends or is dropped.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use tarn_engine::statements::transaction::Touched;
use tarn_engine::{EngineError, Output};
use tarn_storage::audit::{AuditLog, AuditRecord, TableAccess};

use crate::errors::client_error;

/// Who runs the session's statements.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub pid: i32,
    pub user: String,
    pub client: String,
}

/// A statement under way.
pub(crate) struct StatementAudit {
    log: Arc<AuditLog>,
    record: AuditRecord,
    started: Instant,
}

impl StatementAudit {
    pub(crate) fn start(
        log: Arc<AuditLog>,
        who: &Identity,
        application: &str,
        sql: &str,
        redact: bool,
    ) -> StatementAudit {
        let at_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
        let statement = if redact { tarn_engine::redact_literals(sql) } else { sql.to_string() };
        let record = AuditRecord {
            at_us,
            pid: who.pid,
            user: who.user.clone(),
            client: who.client.clone(),
            application: application.to_string(),
            statement,
            sqlstate: "00000".into(),
            rows: None,
            duration_us: 0,
            tables: Vec::new(),
        };
        StatementAudit { log, record, started: Instant::now() }
    }

    /// The tables it read and wrote (`Session::take_touched`).
    pub(crate) fn touched(mut self, touched: Vec<Touched>) -> Self {
        self.record.tables = touched
            .into_iter()
            .map(|t| TableAccess {
                table: format!("{}.{}", t.table.schema, t.table.table),
                version: t.version,
                write: t.write,
            })
            .collect();
        self
    }

    /// It failed with `error`.
    pub(crate) fn failed(mut self, error: &EngineError) {
        self.record.sqlstate = client_error(error).code.to_string();
        self.finish();
    }

    /// It failed with SQLSTATE `code` (an error the engine did not make).
    pub(crate) fn failed_with(mut self, code: &str) {
        self.record.sqlstate = code.to_string();
        self.finish();
    }

    /// It succeeded with `rows` (a COPY's count).
    pub(crate) fn done(mut self, rows: Option<u64>) {
        self.record.rows = rows;
        self.finish();
    }

    /// It returned `output`: a command is recorded now, a result once its rows have
    /// been read (or the client stopped reading them).
    pub(crate) fn succeeded(mut self, output: Output) -> Output {
        match output {
            Output::Command(tag) => {
                self.record.rows = tag.rows;
                self.finish();
                Output::Command(tag)
            }
            Output::Rows { schema, stream, command } => {
                let mut open = Open(Some(self));
                let counted = stream.map(move |batch| match batch {
                    Ok(batch) => {
                        open.add(batch.num_rows() as u64);
                        Ok(batch)
                    }
                    Err(e) => {
                        let error = EngineError::DataFusion(e);
                        open.fail(&error);
                        match error {
                            EngineError::DataFusion(e) => Err(e),
                            _ => unreachable!("made above"),
                        }
                    }
                });
                let stream = Box::pin(RecordBatchStreamAdapter::new(schema.clone(), counted));
                Output::Rows { schema, stream, command }
            }
        }
    }

    fn finish(mut self) {
        self.record.duration_us = self.started.elapsed().as_micros() as i64;
        self.log.record(self.record);
    }
}

/// A result's audit while its rows stream; recorded when dropped.
struct Open(Option<StatementAudit>);

impl Open {
    fn add(&mut self, rows: u64) {
        if let Some(audit) = &mut self.0 {
            *audit.record.rows.get_or_insert(0) += rows;
        }
    }

    fn fail(&mut self, error: &EngineError) {
        if let Some(audit) = self.0.take() {
            audit.failed(error);
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(mut audit) = self.0.take() {
            audit.record.rows.get_or_insert(0);
            audit.finish();
        }
    }
}
