//! COPY over the wire, around the engine's [`Copy`].
//!
//! - `COPY ... FROM STDIN`: the statement answers CopyInResponse (pgwire sends it for
//!   `Response::CopyIn` and enters copy mode). Each CopyData goes to [`CopyIn::push`];
//!   CopyDone to [`Session::finish_copy_in`], answered with CommandComplete `COPY n`;
//!   CopyFail ends the statement with 57014, as Postgres does. Errors in the data are
//!   reported at CopyDone, after which the client is back at the statement's end.
//! - `COPY ... TO STDOUT`: CopyOutResponse, one CopyData per row (the header line first),
//!   CopyDone, sent from the statement's handler; the statement then answers `COPY n`.
//! - `(FORMAT binary)`: both responses announce format 1 for the whole and for every
//!   column. COPY TO writes each row as a DataRow's fields in binary (`encode_batch`)
//!   behind the field count; the signature goes with the first row and the trailer in a
//!   CopyData of its own, as Postgres sends them.
//!
//! pgwire's copy mode and who ends it:
//!
//! - extended protocol (tokio-postgres): pgwire leaves copy mode to us. We answer
//!   CopyDone and set the connection back to ReadyForQuery; the client's Sync then gets
//!   ReadyForQuery with the transaction status we set. An error goes through pgwire's
//!   error path, which waits for that Sync.
//! - simple protocol (psql, psycopg): pgwire sends ReadyForQuery itself after CopyDone,
//!   with the connection's `transaction_status()`, which we keep up to date (inside
//!   `BEGIN` it must say so: psycopg 3 and pgJDBC decide on COMMIT from it).

use std::fmt::Debug;
use std::sync::Mutex;

use arrow::array::{Array, RecordBatch};
use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{Sink, SinkExt, Stream, StreamExt};
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::{CopyResponse, FieldInfo, Response, Tag};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail, CopyOutResponse};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::PgWireBackendMessage;
use tarn_engine::statements::copy::{Copy, CopyFormat, CopyIn, CopyKind, CopyOut};
use tarn_engine::statements::parser::ParsedStatement;
use tarn_engine::{EngineError, Session, TxStatus};

use crate::encode::{encode_batch, encode_text, field_infos};
use crate::errors::ClientError;
use crate::handler::{engine_error, Handler};

/// Runs a COPY statement up to its data. COPY FROM keeps its [`CopyIn`] in `pending` and
/// answers `Response::CopyIn`. COPY TO sends its rows now and answers `COPY n` when
/// `send_now` (nothing else of the query string waits to be sent before it), else
/// answers `Response::CopyOut` for pgwire to send in turn (whose tag counts the header
/// line as a row, and which adds binary's trailer itself).
pub(crate) async fn start_copy<C>(
    session: &mut Session,
    statement: &ParsedStatement,
    client: &mut C,
    pending: &Mutex<Option<CopyIn>>,
    send_now: bool,
) -> PgWireResult<Response>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    match session.copy(statement).await.map_err(engine_error)? {
        Copy::In(copy) => {
            let (columns, format) = (copy.columns(), wire_format(copy.kind()));
            *pending.lock().expect("copy state lock") = Some(copy);
            let no_rows = futures::stream::empty::<PgWireResult<CopyData>>();
            Ok(Response::CopyIn(CopyResponse::new(format, columns, no_rows)))
        }
        Copy::Out(copy) if send_now => {
            let rows = send_copy_out(client, copy).await.inspect_err(|_| session.note_error())?;
            Ok(Response::Execution(Tag::new("COPY").with_rows(rows)))
        }
        Copy::Out(copy) => {
            let (columns, format) = (copy.schema.fields().len(), wire_format(copy.format.kind));
            let data = copy_out_data(copy)
                .map(|chunk| chunk.map(|(data, _)| CopyData::new(data)).map_err(engine_error));
            Ok(Response::CopyOut(CopyResponse::new(format, columns, data)))
        }
    }
}

/// The format code of CopyInResponse and CopyOutResponse, for the whole and each column:
/// 1 binary, 0 textual.
fn wire_format(kind: CopyKind) -> i8 {
    i8::from(kind == CopyKind::Binary)
}

/// Sends a COPY TO's rows: CopyOutResponse, CopyData per line (binary: then the
/// trailer), CopyDone. Returns the number of rows.
async fn send_copy_out<C>(client: &mut C, copy: CopyOut) -> PgWireResult<usize>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let columns = copy.schema.fields().len();
    let format = wire_format(copy.format.kind);
    let response = CopyOutResponse::new(format, columns as i16, vec![format.into(); columns]);
    client.send(PgWireBackendMessage::CopyOutResponse(response)).await?;
    let mut trailer = Vec::new();
    copy.format.write_trailer(&mut trailer);
    let mut rows = 0;
    let mut data = std::pin::pin!(copy_out_data(copy));
    while let Some(chunk) = data.next().await {
        // Sending never waits while the socket takes it (or the extended protocol
        // buffers it): give the runtime its turn, so a cancel or statement_timeout
        // waiting beside this copy can fire.
        tokio::task::consume_budget().await;
        let (chunk, is_row) = chunk.map_err(engine_error)?;
        client.feed(PgWireBackendMessage::CopyData(CopyData::new(chunk))).await?;
        rows += usize::from(is_row);
    }
    if !trailer.is_empty() {
        client.feed(PgWireBackendMessage::CopyData(CopyData::new(Bytes::from(trailer)))).await?;
    }
    client.send(PgWireBackendMessage::CopyDone(CopyDone::new())).await?;
    Ok(rows)
}

/// A COPY TO's data, one CopyData each, and whether it holds a row: the header line
/// when asked for, then one per row. Binary's signature goes in front of the first row
/// (alone when there is none), as Postgres sends it: pgwire counts every CopyData of a
/// `Response::CopyOut` as a row.
fn copy_out_data(copy: CopyOut) -> impl Stream<Item = Result<(Bytes, bool), EngineError>> + Send {
    let CopyOut { schema, stream, format } = copy;
    let mut header = Vec::new();
    format.write_header(&mut header, schema.fields().iter().map(|f| f.name().as_str()));
    let header = (!header.is_empty()).then(|| Bytes::from(header));
    let binary = (format.kind == CopyKind::Binary).then(|| field_infos(&schema, |_| true));
    let separate_header = binary.is_none();
    let rows = stream.flat_map(move |batch| {
        let rows = batch.map_err(EngineError::DataFusion).and_then(|batch| match &binary {
            Some(fields) => encode_binary_rows(&batch, fields),
            None => Ok(encode_rows(&batch, &format)),
        });
        let rows = match rows {
            Ok(rows) => rows.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(rows)
    });
    futures::stream::unfold((Box::pin(rows), header), move |(mut rows, mut header)| async move {
        if separate_header {
            if let Some(line) = header.take() {
                return Some((Ok((line, false)), (rows, None)));
            }
        }
        let chunk = match rows.next().await {
            Some(Ok(row)) => match header.take() {
                Some(signature) => Ok((Bytes::from([signature, row].concat()), true)),
                None => Ok((row, true)),
            },
            Some(Err(e)) => Err(e),
            None => Ok((header.take()?, false)),
        };
        Some((chunk, (rows, header)))
    })
}

/// Every row of `batch` as a tuple of COPY's binary format: the field count, then the
/// fields as in a DataRow whose columns are all binary.
fn encode_binary_rows(batch: &RecordBatch, fields: &[FieldInfo]) -> Result<Vec<Bytes>, EngineError> {
    let rows = encode_batch(batch, fields).map_err(|message| EngineError::Internal { message })?;
    let mut buf = BytesMut::with_capacity(rows.iter().map(|row| 2 + row.data.len()).sum());
    Ok(rows
        .into_iter()
        .map(|row| {
            buf.put_i16(row.field_count);
            buf.put_slice(&row.data);
            buf.split().freeze()
        })
        .collect())
}

/// Every row of `batch` as one line, values in their Postgres text form (as in query
/// results), escaped or quoted by `format`. One buffer per batch, sliced per row.
fn encode_rows(batch: &RecordBatch, format: &CopyFormat) -> Vec<Bytes> {
    let mut buf = Vec::with_capacity(batch.num_rows() * 16 * batch.num_columns().max(1));
    let mut ends = Vec::with_capacity(batch.num_rows());
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        for (i, column) in batch.columns().iter().enumerate() {
            if column.is_null(row) {
                format.write_field(&mut buf, i, None);
            } else {
                text.clear();
                encode_text(column, row, &mut text);
                format.write_field(&mut buf, i, Some(&text));
            }
        }
        format.end_row(&mut buf);
        ends.push(buf.len());
    }
    let buf = Bytes::from(buf);
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let line = buf.slice(start..end);
            start = end;
            line
        })
        .collect()
}

/// The ReadyForQuery status of a session's transaction state.
fn wire_status(tx: TxStatus) -> TransactionStatus {
    match tx {
        TxStatus::Idle => TransactionStatus::Idle,
        TxStatus::InBlock => TransactionStatus::Transaction,
        TxStatus::Failed => TransactionStatus::Error,
    }
}

#[async_trait]
impl CopyHandler for Handler {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Never an error here: one would end copy mode in the middle of the client's data
        // (pgwire then waits for a Sync that a simple-protocol client never sends).
        if let Some(copy) = self.0.copy_in.lock().expect("copy state lock").as_mut() {
            copy.push(&copy_data.data);
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let extended = matches!(client.state(), PgWireConnectionState::CopyInProgress(true));
        let Some(copy) = self.0.copy_in.lock().expect("copy state lock").take() else {
            return Err(ClientError { code: "08P01", message: "no COPY in progress".into(), detail: None }
                .into_pgwire());
        };
        let (outcome, tx, touched) = self
            .0
            .with_session(async |session| {
                let outcome = Box::pin(session.finish_copy_in(copy)).await;
                (outcome, session.tx_status(), session.take_touched())
            })
            .await?;
        // pgwire's error path turns this into the failed state where it applies.
        client.set_transaction_status(wire_status(tx));
        if let Some(audit) = self.0.copy_in_audit.lock().expect("copy audit lock").take() {
            let audit = audit.touched(touched);
            match &outcome {
                Ok(tag) => audit.done(tag.rows),
                Err(e) => audit.failed(e),
            }
        }
        let tag = outcome.map_err(engine_error)?;
        let tag = Tag::new("COPY").with_rows(tag.rows.unwrap_or(0) as usize);
        client.send(PgWireBackendMessage::CommandComplete(tag.into())).await?;
        if extended {
            client.set_state(PgWireConnectionState::ReadyForQuery);
        }
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.0.copy_in.lock().expect("copy state lock").take();
        if let Some(audit) = self.0.copy_in_audit.lock().expect("copy audit lock").take() {
            // PostgreSQL's SQLSTATE for a COPY the client failed.
            audit.failed_with("57014");
        }
        let tx = self
            .0
            .with_session(async |session| {
                session.note_error();
                session.tx_status()
            })
            .await;
        if let Ok(tx) = tx {
            client.set_transaction_status(wire_status(tx));
        }
        ClientError {
            code: "57014",
            message: format!("COPY from stdin failed: {}", fail.message),
            detail: None,
        }
        .into_pgwire()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn rows_are_lines_in_query_text_form() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("v", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("a\tb"), Some("c,\"d\"")])),
                Arc::new(Float64Array::from(vec![Some(1e20), Some(0.5)])),
            ],
        )
        .unwrap();
        let text: Vec<Bytes> = encode_rows(&batch, &CopyFormat::text());
        assert_eq!(text, vec![Bytes::from("1\ta\\tb\t1e+20\n"), Bytes::from("\\N\tc,\"d\"\t0.5\n")]);
        let csv = CopyFormat { columns: 3, ..CopyFormat::csv() };
        let csv: Vec<Bytes> = encode_rows(&batch, &csv);
        assert_eq!(csv, vec![Bytes::from("1,a\tb,1e+20\n"), Bytes::from(",\"c,\"\"d\"\"\",0.5\n")]);
    }
}
