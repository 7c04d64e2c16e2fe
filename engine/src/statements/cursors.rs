//! SQL cursors: `DECLARE name [BINARY] [NO SCROLL] CURSOR [WITH HOLD] FOR query`,
//! `FETCH | MOVE [n | NEXT | ALL | FORWARD n | FORWARD ALL] [FROM | IN] name`, `CLOSE
//! name | ALL`. A cursor holds its
//! query's result stream, not its rows: each `FETCH` reads as many rows as it asks for
//! (psycopg2's named cursors, pandas' `chunksize`, SQLAlchemy's `stream_results`
//! read big results this way). The query reads the snapshot of its `DECLARE`, so a
//! `WITH HOLD` cursor reads the same rows after its transaction commits. Cursors are
//! forward-only (`NO SCROLL`): going back is 0A000. `MOVE` reads the rows it skips
//! and keeps none. A `BINARY` cursor's rows go in binary format in the simple
//! protocol (in the extended one the client's Bind chooses, as in PostgreSQL).

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{self, FetchDirection, Statement};
use futures::StreamExt;

use crate::error::{EngineError, Result};
use crate::statements::ddl;
use crate::statements::parser::ParsedStatement;
use crate::statements::session::{CommandTag, Output, RowsCommand, Session, TxStatus};

/// A session's open cursors, by name.
#[derive(Default)]
pub(crate) struct Cursors {
    open: HashMap<String, Cursor>,
}

struct Cursor {
    schema: SchemaRef,
    /// In a mutex only so a session can be shared between threads (a stream cannot);
    /// `FETCH` has the cursor to itself and reads it without locking.
    stream: std::sync::Mutex<SendableRecordBatchStream>,
    /// Rows read from the stream and not fetched yet.
    pending: Option<RecordBatch>,
    hold: bool,
    binary: bool,
}

impl Cursors {
    /// The columns `FETCH ... FROM name` returns, for Describe.
    pub(crate) fn schema(&self, name: &str) -> Option<SchemaRef> {
        self.open.get(name).map(|c| c.schema.clone())
    }

    /// At the end of a transaction: cursors without `WITH HOLD` close.
    pub(crate) fn end_transaction(&mut self) {
        self.open.retain(|_, cursor| cursor.hold);
    }
}

impl Session {
    pub(crate) async fn declare(&mut self, declares: &[ast::Declare]) -> Result<Output> {
        let [declare] = declares else {
            return Err(EngineError::unsupported("DECLARE of several cursors is not supported"));
        };
        let (Some(ast::DeclareType::Cursor), [name], Some(query)) =
            (&declare.declare_type, declare.names.as_slice(), &declare.for_query)
        else {
            return Err(EngineError::unsupported("only DECLARE name CURSOR FOR query is supported"));
        };
        let name = ddl::ident(name);
        let hold = declare.hold == Some(true);
        if declare.scroll == Some(true) {
            return Err(EngineError::unsupported(
                "SCROLL cursors are not supported (Tarn's cursors go forward)",
            ));
        }
        if !hold && self.tx == TxStatus::Idle {
            return Err(EngineError::NoActiveTransaction {
                message: "DECLARE CURSOR can only be used in transaction blocks".into(),
            });
        }
        if self.cursors.open.contains_key(&name) {
            return Err(EngineError::DuplicateCursor { name });
        }
        let statement = ParsedStatement::of(Statement::Query(query.clone()));
        let Output::Rows { schema, stream, .. } = Box::pin(self.execute_now(statement)).await? else {
            return Err(EngineError::unsupported("a cursor's query must return rows"));
        };
        let stream = std::sync::Mutex::new(stream);
        let binary = declare.binary == Some(true);
        self.cursors.open.insert(name, Cursor { schema, stream, pending: None, hold, binary });
        Ok(Output::Command(CommandTag::new("DECLARE CURSOR")))
    }

    /// `FETCH`, or with `moves` `MOVE`: its rows are counted, not returned.
    pub(crate) async fn fetch(
        &mut self,
        name: &ast::Ident,
        direction: &FetchDirection,
        moves: bool,
    ) -> Result<Output> {
        let name = ddl::ident(name);
        let count = rows_asked(direction)?;
        let cursor = self.cursors.open.get_mut(&name).ok_or(EngineError::UndefinedCursor { name })?;
        let mut batches = Vec::new();
        let mut moved = 0;
        let mut wanted = count;
        while wanted > 0 {
            let batch = match cursor.pending.take() {
                Some(batch) => batch,
                None => match cursor.stream.get_mut().unwrap_or_else(|e| e.into_inner()).next().await {
                    Some(batch) => batch?,
                    None => break,
                },
            };
            let batch = if batch.num_rows() > wanted {
                cursor.pending = Some(batch.slice(wanted, batch.num_rows() - wanted));
                batch.slice(0, wanted)
            } else {
                batch
            };
            wanted -= batch.num_rows();
            moved += batch.num_rows();
            if !moves {
                batches.push(batch);
            }
        }
        if moves {
            return Ok(Output::Command(CommandTag::with_rows("MOVE", moved as u64)));
        }
        let schema = cursor.schema.clone();
        let rows = futures::stream::iter(batches.into_iter().map(Ok));
        let stream = Box::pin(RecordBatchStreamAdapter::new(schema.clone(), rows));
        Ok(Output::Rows { schema, stream, command: RowsCommand::Fetch { binary: cursor.binary } })
    }

    pub(crate) fn close_cursor(&mut self, cursor: &ast::CloseCursor) -> Result<Output> {
        match cursor {
            ast::CloseCursor::All => self.cursors.open.clear(),
            ast::CloseCursor::Specific { name } => {
                let name = ddl::ident(name);
                self.cursors.open.remove(&name).ok_or(EngineError::UndefinedCursor { name })?;
            }
        }
        Ok(Output::Command(CommandTag::new(match cursor {
            ast::CloseCursor::All => "CLOSE CURSOR ALL",
            ast::CloseCursor::Specific { .. } => "CLOSE CURSOR",
        })))
    }
}

/// How many rows a forward `FETCH` asks for.
fn rows_asked(direction: &FetchDirection) -> Result<usize> {
    let number = |value: &ast::ValueWithSpan| match &value.value {
        ast::Value::Number(n, _) => {
            n.parse::<i64>().map_err(|_| EngineError::syntax(format!("invalid count {n}")))
        }
        other => Err(EngineError::syntax(format!("invalid count {other}"))),
    };
    let count = match direction {
        FetchDirection::Next => 1,
        FetchDirection::Count { limit } | FetchDirection::Forward { limit: Some(limit) } => number(limit)?,
        FetchDirection::Forward { limit: None } => 1,
        FetchDirection::All | FetchDirection::ForwardAll => i64::MAX,
        _ => return Err(EngineError::unsupported("cursors go forward only (NO SCROLL): FETCH NEXT, n, ALL")),
    };
    if count < 0 {
        return Err(EngineError::unsupported("cursors go forward only (NO SCROLL)"));
    }
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}
