//! `COPY ... FROM STDIN` and `COPY ... TO STDOUT`, in PostgreSQL's text, CSV and binary
//! formats.
//!
//! The wire protocol is the server's business; here a COPY is two steps around it:
//!
//! - [`Session::copy`] starts the statement. For COPY FROM it resolves the table and
//!   columns and returns a [`CopyIn`], which the server feeds with the client's CopyData
//!   ([`CopyIn::push`]); each row is parsed straight into Arrow builders, one per column.
//!   [`Session::finish_copy_in`] then writes every row in one `insert_rows`, so a COPY
//!   is one atomic statement: a bad row anywhere writes nothing. For COPY TO it runs the
//!   query and returns a [`CopyOut`]: the rows, and the [`CopyFormat`] that writes them.
//! - Errors in the data name their line as Postgres does, in the error's context
//!   (`COPY t, line 3, column id: "abc"`).
//!
//! Text and CSV are read and written in `format`, binary in `binary`; values are read in
//! `values`. Programs are refused with 0A000; files are `statements::external`'s.

mod binary;
mod format;
mod options;
mod values;

use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::sqlparser::ast::{CopySource, CopyTarget, Ident, Statement};
use futures::TryStreamExt;
use tarn_storage::{StorageError, Table};
use tracing::debug;

use self::binary::TupleSplitter;
pub use self::format::{CopyFormat, CopyKind};
use self::format::{Fields, RowSplitter};
use self::options::{resolve_columns, CopyOptions};
use self::values::ColumnBuilder;
use crate::error::{EngineError, Result};
use crate::statements::ddl;
use crate::statements::parser::{parse_sql, ParsedStatement};
use crate::statements::session::{CommandTag, Output, Session, TxStatus};

/// Rows per batch handed to storage.
const BATCH_ROWS: usize = 8192;

/// The longest stretch of data quoted in an error's context (Postgres' limit too).
const MAX_CONTEXT_CHARS: usize = 100;

/// A started COPY statement.
pub enum Copy {
    /// `COPY ... FROM STDIN`: waiting for the client's data.
    In(CopyIn),
    /// `COPY ... TO STDOUT`: rows to send.
    Out(CopyOut),
}

/// `COPY ... TO STDOUT`: the query's rows and how to write each one.
pub struct CopyOut {
    pub schema: SchemaRef,
    pub stream: SendableRecordBatchStream,
    /// `format.header`: the first line holds the column names.
    pub format: CopyFormat,
}

impl ParsedStatement {
    /// Whether this is a `COPY` of the client's data, which the server runs through
    /// [`Session::copy`] (a `COPY ... TO 'file'` runs as other statements do).
    pub fn is_copy(&self) -> bool {
        matches!(self.statement, Statement::Copy { target: CopyTarget::Stdin | CopyTarget::Stdout, .. })
    }
}

/// What `COPY ... TO` writes: its query, or `SELECT columns FROM table`.
pub(crate) fn source_query(source: &CopySource) -> Result<ParsedStatement> {
    Ok(match source {
        CopySource::Query(query) => ParsedStatement::of(Statement::Query(query.clone())),
        CopySource::Table { table_name, columns } => {
            let list = if columns.is_empty() {
                "*".to_string()
            } else {
                columns.iter().map(Ident::to_string).collect::<Vec<_>>().join(", ")
            };
            parse_sql(&format!("SELECT {list} FROM {table_name}"))?.remove(0)
        }
    })
}

impl Session {
    /// Starts a `COPY` statement (see [`ParsedStatement::is_copy`]).
    pub async fn copy(&mut self, statement: &ParsedStatement) -> Result<Copy> {
        self.take_touched();
        let outcome = self.start_copy(statement).await;
        if outcome.is_err() {
            self.note_error();
        }
        outcome.map(|copy| self.copy_lineage(statement, copy))
    }

    /// A `COPY`'s lineage run (`crate::lineage`): from the client's data into a
    /// table, ended with the data; to the client, a query's.
    fn copy_lineage(&self, statement: &ParsedStatement, copy: Copy) -> Copy {
        use crate::lineage::Doing;
        if self.engine.lineage().is_none() {
            return copy;
        }
        let sql = statement.statement.to_string();
        match copy {
            Copy::In(mut copy_in) => {
                copy_in.lineage = self.lineage_run(&sql, Doing::Copies { table: copy_in.table.name() });
                Copy::In(copy_in)
            }
            Copy::Out(mut out) => {
                if let Some(run) = self.lineage_run(&sql, Doing::Reads) {
                    out.stream = run.watch(self.txn.touched_now(), out.stream);
                }
                Copy::Out(out)
            }
        }
    }

    /// Ends a `COPY ... FROM STDIN` whose data is complete: checks the last row and
    /// writes every row as one statement. Tag `COPY n`.
    pub async fn finish_copy_in(&mut self, mut copy: CopyIn) -> Result<CommandTag> {
        let run = copy.lineage.take();
        let outcome = async {
            let mut batches = copy.reader.finish()?;
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if rows == 0 {
                return Ok(CommandTag::with_rows("COPY", 0));
            }
            if !copy.defaults.is_empty() {
                batches = self.fill_defaults(&copy, batches, rows).await?;
            }
            let written = self.insert_rows(&copy.table, batches).await?;
            debug!(table = %copy.table.name(), rows = written, "copy in");
            Ok(CommandTag::with_rows("COPY", written))
        }
        .await;
        if outcome.is_err() {
            self.note_error();
        }
        if let Some(run) = run {
            match &outcome {
                Ok(tag) if self.tx_status() == TxStatus::InBlock => {
                    self.lineage_pending.push((run, tag.rows))
                }
                Ok(tag) => run.complete(&self.txn.touched_now(), tag.rows),
                Err(e) => run.fail(e),
            }
        }
        outcome
    }

    async fn start_copy(&mut self, parsed: &ParsedStatement) -> Result<Copy> {
        let Statement::Copy { source, to, target, options, legacy_options, values } = &parsed.statement
        else {
            return Err(EngineError::Internal { message: "not a COPY statement".into() });
        };
        if self.tx_status() == TxStatus::Failed {
            return Err(EngineError::InFailedTransaction);
        }
        match (target, to) {
            (CopyTarget::Stdin, false) | (CopyTarget::Stdout, true) => {}
            (CopyTarget::Stdin, true) => return Err(EngineError::syntax("COPY TO cannot write to STDIN")),
            (CopyTarget::Stdout, false) => return Err(EngineError::syntax("COPY FROM cannot read STDOUT")),
            (CopyTarget::File { .. } | CopyTarget::Program { .. }, _) => {
                return Err(EngineError::unsupported(
                    "COPY to or from a file or program is not supported; use STDIN or STDOUT (psql's \\copy)",
                ))
            }
        }
        if !values.is_empty() {
            // sqlparser reads whatever follows `COPY ... FROM STDIN;` as inline data.
            return Err(EngineError::unsupported(
                "COPY FROM STDIN must be the last statement of a query string",
            ));
        }
        let options = CopyOptions::parse(options, legacy_options, *to)?;
        if *to {
            self.start_copy_out(source, options).await.map(Copy::Out)
        } else {
            let CopySource::Table { table_name, columns } = source else {
                return Err(EngineError::syntax("COPY FROM needs a table"));
            };
            self.start_copy_in(&ddl::table_name(table_name)?, columns, options).map(Copy::In)
        }
    }

    async fn start_copy_out(&mut self, source: &CopySource, options: CopyOptions) -> Result<CopyOut> {
        let query = source_query(source)?;
        let Output::Rows { schema, stream, .. } = self.execute_now(query).await? else {
            return Err(EngineError::syntax("COPY TO needs a query that returns rows"));
        };
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let mut format = options.format;
        format.columns = names.len();
        format.force_quote = resolve_columns(&options.force_quote, &names, "FORCE_QUOTE")?;
        Ok(CopyOut { schema, stream, format })
    }

    fn start_copy_in(
        &self,
        name: &tarn_storage::TableName,
        columns: &[Ident],
        options: CopyOptions,
    ) -> Result<CopyIn> {
        let table = self
            .engine
            .warehouse()
            .table(name)
            .ok_or_else(|| EngineError::from(StorageError::TableNotFound { name: name.clone() }))?;
        let snapshot = table.snapshot();
        let def = snapshot.def();
        let schema = snapshot.schema();
        let mut targets = Vec::with_capacity(columns.len().max(schema.fields().len()));
        if columns.is_empty() {
            targets.extend(0..schema.fields().len());
        } else {
            for column in columns {
                let column = ddl::ident(column);
                let index = def
                    .column_index(&column)
                    .ok_or_else(|| EngineError::UndefinedColumn { column: column.clone() })?;
                if targets.contains(&index) {
                    return Err(EngineError::syntax(format!("column \"{column}\" specified more than once")));
                }
                targets.push(index);
            }
        }
        let names: Vec<&str> = targets.iter().map(|&i| schema.field(i).name().as_str()).collect();
        let mut format = options.format;
        format.columns = names.len();
        format.force_not_null = resolve_columns(&options.force_not_null, &names, "FORCE_NOT_NULL")?;
        format.force_null = resolve_columns(&options.force_null, &names, "FORCE_NULL")?;
        let defaults = (0..schema.fields().len())
            .filter(|i| !targets.contains(i))
            .filter_map(|i| def.columns.get(i)?.default.clone().map(|sql| (i, sql)))
            .collect();
        // Storage checks NOT NULL (23502) and fills identity columns, so the batches let
        // every column hold NULLs.
        let schema = crate::catalog::provider::nullable_schema(&schema);
        let reader = RowReader::new(name.table.clone(), schema, targets, format)?;
        Ok(CopyIn { table, defaults, reader, lineage: None })
    }

    /// Replaces the NULL columns a column list left out with their `DEFAULT`, evaluated
    /// per row (a volatile default such as `random()` differs from row to row).
    async fn fill_defaults(
        &mut self,
        copy: &CopyIn,
        batches: Vec<RecordBatch>,
        rows: usize,
    ) -> Result<Vec<RecordBatch>> {
        let list: Vec<&str> = copy.defaults.iter().map(|(_, sql)| sql.as_str()).collect();
        let sql = format!("SELECT {} FROM generate_series(1, {rows})", list.join(", "));
        let Output::Rows { stream, .. } = self.execute_now(parse_sql(&sql)?.remove(0)).await? else {
            return Err(EngineError::Internal { message: "defaults did not produce rows".into() });
        };
        let defaults: Vec<RecordBatch> = stream.try_collect().await?;
        let Some(first) = defaults.first() else {
            return Err(EngineError::Internal { message: "defaults did not produce rows".into() });
        };
        let defaults = arrow::compute::concat_batches(&first.schema(), &defaults)?;
        let mut offset = 0;
        batches
            .into_iter()
            .map(|batch| {
                let mut columns = batch.columns().to_vec();
                for (position, (column, _)) in copy.defaults.iter().enumerate() {
                    let values = defaults.column(position).slice(offset, batch.num_rows());
                    let data_type = copy.reader.schema.field(*column).data_type();
                    columns[*column] = arrow::compute::cast(&values, data_type)?;
                }
                offset += batch.num_rows();
                Ok(RecordBatch::try_new(copy.reader.schema.clone(), columns)?)
            })
            .collect()
    }
}

/// A `COPY ... FROM STDIN` receiving data. Errors in the data are kept and reported when
/// the data ends ([`Session::finish_copy_in`]); data after an error is ignored.
pub struct CopyIn {
    table: Arc<Table>,
    /// Columns left out of the column list that have a `DEFAULT` (its SQL).
    defaults: Vec<(usize, String)>,
    reader: RowReader,
    /// Its lineage run: complete with the data, aborted when the client fails it.
    lineage: Option<crate::lineage::LineageRun>,
}

impl CopyIn {
    /// Fields per row; what CopyInResponse announces.
    pub fn columns(&self) -> usize {
        self.reader.targets.len()
    }

    /// The data's format (CopyInResponse announces whether it is binary).
    pub fn kind(&self) -> CopyKind {
        self.reader.format.kind
    }

    /// Takes the next piece of the client's data (any length, rows may be cut anywhere).
    pub fn push(&mut self, data: &[u8]) {
        self.reader.push(data)
    }
}

/// Reads rows of text, CSV or binary into batches of a table's schema.
struct RowReader {
    /// How errors name the table (without its schema, as Postgres does).
    table_label: String,
    /// The table's schema, every column nullable.
    schema: SchemaRef,
    /// The table column each field of a row goes to, in the data's order.
    targets: Vec<usize>,
    /// Names of `targets`, for errors.
    names: Vec<String>,
    format: CopyFormat,
    /// Parallel to `targets`.
    builders: Vec<ColumnBuilder>,
    /// Text and CSV: cuts the data into lines.
    splitter: RowSplitter,
    /// Binary: cuts the data into tuples.
    tuples: TupleSplitter,
    fields: Fields,
    /// Lines (rows) read so far, the header included (binary: tuples, the trailer
    /// included).
    line: u64,
    header_pending: bool,
    rows_in_batch: usize,
    batches: Vec<RecordBatch>,
    /// The `\.` end marker was read: the rest is ignored. Binary: the trailer was read,
    /// and more data is an error.
    ended: bool,
    error: Option<EngineError>,
}

impl RowReader {
    fn new(table_label: String, schema: SchemaRef, targets: Vec<usize>, format: CopyFormat) -> Result<Self> {
        let names = targets.iter().map(|&i| schema.field(i).name().clone()).collect();
        let builders =
            targets.iter().map(|&i| ColumnBuilder::new(schema.field(i))).collect::<Result<Vec<_>>>()?;
        if format.kind == CopyKind::Binary {
            for (builder, &i) in builders.iter().zip(&targets) {
                builder.check_binary(schema.field(i).name())?;
            }
        }
        Ok(Self {
            table_label,
            schema,
            targets,
            names,
            header_pending: format.header,
            format,
            builders,
            splitter: RowSplitter::default(),
            tuples: TupleSplitter::default(),
            fields: Fields::default(),
            line: 0,
            rows_in_batch: 0,
            batches: vec![],
            ended: false,
            error: None,
        })
    }

    fn push(&mut self, data: &[u8]) {
        if self.format.kind == CopyKind::Binary {
            return self.read_tuples(data, false);
        }
        if self.ended || self.error.is_some() {
            return;
        }
        self.splitter.push(data);
        while let Some(row) = self.splitter.next_row(&self.format) {
            self.line += 1;
            let outcome = read_row(
                row,
                &self.format,
                &mut self.fields,
                &mut self.builders,
                &mut self.header_pending,
                &mut self.ended,
            );
            match outcome {
                Ok(true) => self.rows_in_batch += 1,
                Ok(false) => {}
                Err(e) => {
                    self.error =
                        Some(context(e, &self.table_label, self.line, row, &self.fields, &self.names));
                    return;
                }
            }
            if self.ended {
                return;
            }
            if self.rows_in_batch == BATCH_ROWS {
                if let Err(e) = self.flush() {
                    self.error = Some(e);
                    return;
                }
            }
        }
    }

    /// Ends the data: reads a last row without line end and returns every row, in
    /// batches of the table's schema (columns left out are NULL), or the first error.
    fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        if self.format.kind == CopyKind::Binary {
            self.read_tuples(&[], true);
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if !self.ended {
            let row = self
                .splitter
                .last_row(&self.format)
                .map_err(|e| CopyContext::Line(self.line + 1).wrap(e, &self.table_label))?;
            if let Some(row) = row {
                self.line += 1;
                let outcome = read_row(
                    row,
                    &self.format,
                    &mut self.fields,
                    &mut self.builders,
                    &mut self.header_pending,
                    &mut self.ended,
                );
                let added = outcome
                    .map_err(|e| context(e, &self.table_label, self.line, row, &self.fields, &self.names))?;
                self.rows_in_batch += usize::from(added);
            }
        }
        self.flush()?;
        Ok(std::mem::take(&mut self.batches))
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows_in_batch == 0 {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows_in_batch);
        let mut columns: Vec<ArrayRef> =
            self.schema.fields().iter().map(|f| new_null_array(f.data_type(), rows)).collect();
        for (builder, &column) in self.builders.iter_mut().zip(&self.targets) {
            columns[column] = builder.finish()?;
        }
        self.batches.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }
}

/// Parses one row into the builders: `false` for the header and the end marker. On an
/// error the builders may hold part of the row (the whole COPY fails then).
fn read_row(
    row: &[u8],
    format: &CopyFormat,
    fields: &mut Fields,
    builders: &mut [ColumnBuilder],
    header_pending: &mut bool,
    ended: &mut bool,
) -> Result<bool, RowError> {
    if row == b"\\." {
        *ended = true;
        return Ok(false);
    }
    if std::mem::take(header_pending) {
        return Ok(false);
    }
    format.split(row, fields).map_err(RowError::Row)?;
    if fields.len() < builders.len() {
        return Err(RowError::Missing(fields.len()));
    }
    if fields.len() > builders.len() {
        return Err(RowError::Row(EngineError::BadCopyFormat {
            message: "extra data after last expected column".into(),
        }));
    }
    for (i, builder) in builders.iter_mut().enumerate() {
        builder.push(fields.get(i)).map_err(|e| RowError::Value(i, e))?;
    }
    Ok(true)
}

/// What went wrong in a row, before it is given its context.
enum RowError {
    /// The row's shape.
    Row(EngineError),
    /// The row has this many fields, fewer than the columns.
    Missing(usize),
    /// A field's value.
    Value(usize, EngineError),
}

/// Where in the data an error is, worded as Postgres words it. Binary data is never
/// quoted: its errors name a `Line` or a `Column`.
enum CopyContext<'a> {
    Line(u64),
    Row { line: u64, row: &'a [u8] },
    Value { line: u64, column: &'a str, value: Option<&'a [u8]> },
    Column { line: u64, column: &'a str },
}

impl CopyContext<'_> {
    fn wrap(&self, source: EngineError, table: &str) -> EngineError {
        let context = match self {
            CopyContext::Line(line) => format!("COPY {table}, line {line}"),
            CopyContext::Row { line, row } => format!("COPY {table}, line {line}: \"{}\"", shorten(row)),
            CopyContext::Value { line, column, value: Some(value) } => {
                format!("COPY {table}, line {line}, column {column}: \"{}\"", shorten(value))
            }
            CopyContext::Value { line, column, value: None } => {
                format!("COPY {table}, line {line}, column {column}: null input")
            }
            CopyContext::Column { line, column } => format!("COPY {table}, line {line}, column {column}"),
        };
        EngineError::CopyData { source: Box::new(source), context }
    }
}

fn context(
    error: RowError,
    table: &str,
    line: u64,
    row: &[u8],
    fields: &Fields,
    names: &[String],
) -> EngineError {
    match error {
        RowError::Row(e) => CopyContext::Row { line, row }.wrap(e, table),
        RowError::Missing(have) => CopyContext::Row { line, row }.wrap(
            EngineError::BadCopyFormat { message: format!("missing data for column \"{}\"", names[have]) },
            table,
        ),
        RowError::Value(i, e) => {
            CopyContext::Value { line, column: &names[i], value: fields.get(i) }.wrap(e, table)
        }
    }
}

/// At most [`MAX_CONTEXT_CHARS`] characters of `bytes`, then `...`.
fn shorten(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(MAX_CONTEXT_CHARS) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("v", DataType::Utf8, true),
            Field::new("ok", DataType::Boolean, true),
        ]))
    }

    fn read(format: CopyFormat, targets: Vec<usize>, chunks: &[&[u8]]) -> Result<Vec<RecordBatch>> {
        let mut reader = RowReader::new("t".into(), schema(), targets, format)?;
        for chunk in chunks {
            reader.push(chunk);
        }
        reader.finish()
    }

    fn ids(batches: &[RecordBatch]) -> Vec<Option<i32>> {
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int32Type>().iter().collect::<Vec<_>>())
            .collect()
    }

    fn texts(batches: &[RecordBatch]) -> Vec<Option<String>> {
        batches
            .iter()
            .flat_map(|b| {
                b.column(1).as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn text_rows_go_to_their_columns_and_the_rest_is_null() {
        let batches = read(CopyFormat::text(), vec![1, 0], &[b"a\tb\t1\n\\N\t2\n\\\\N\t3"]).unwrap_err();
        assert_eq!(batches.to_string(), "extra data after last expected column");
        let batches = read(CopyFormat::text(), vec![1, 0], &[b"a\\tb\t1\n\\N\t2\n\\\\N\t3"]).unwrap();
        assert_eq!(ids(&batches), vec![Some(1), Some(2), Some(3)]);
        assert_eq!(texts(&batches), vec![Some("a\tb".into()), None, Some("\\N".into())]);
        assert_eq!(batches[0].column(2).null_count(), 3);
        assert_eq!(batches[0].schema(), schema());
    }

    #[test]
    fn csv_with_header_end_marker_and_any_chunking() {
        let data = b"id,v,ok\n1,\"a,\"\"b\"\"\",t\n2,,no\n3,\"\",\"on\"\n\\.\nnot data";
        let csv = || CopyFormat { header: true, ..CopyFormat::csv() };
        let whole = read(csv(), vec![0, 1, 2], &[data]).unwrap();
        assert_eq!(ids(&whole), vec![Some(1), Some(2), Some(3)]);
        assert_eq!(texts(&whole), vec![Some("a,\"b\"".into()), None, Some(String::new())]);
        let oks: Vec<Option<bool>> = whole[0].column(2).as_boolean().iter().collect();
        assert_eq!(oks, vec![Some(true), Some(false), Some(true)]);
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(read(csv(), vec![0, 1, 2], &bytes).unwrap(), whole);
    }

    #[test]
    fn batches_hold_at_most_batch_rows() {
        let data: String = (0..BATCH_ROWS + 5).map(|i| format!("{i}\n")).collect();
        let batches = read(CopyFormat::text(), vec![0], &[data.as_bytes()]).unwrap();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(), vec![BATCH_ROWS, 5]);
        assert_eq!(ids(&batches)[BATCH_ROWS + 4], Some(BATCH_ROWS as i32 + 4));
    }

    fn error(targets: Vec<usize>, data: &[u8]) -> (EngineError, String) {
        match read(CopyFormat::text(), targets, &[data]).unwrap_err() {
            EngineError::CopyData { source, context } => (*source, context),
            other => panic!("no context: {other:?}"),
        }
    }

    #[test]
    fn bad_data_names_its_line_as_postgres_does() {
        let (e, context) = error(vec![0, 1, 2], b"1\ta\tt\n2\tb\tf\nabc\tc\tt\n");
        assert!(matches!(e, EngineError::InvalidText { .. }));
        assert_eq!(e.to_string(), "invalid input syntax for type integer: \"abc\"");
        assert_eq!(context, "COPY t, line 3, column id: \"abc\"");

        let (e, context) = error(vec![0, 1, 2], b"1\ta");
        assert!(matches!(e, EngineError::BadCopyFormat { .. }));
        assert_eq!(e.to_string(), "missing data for column \"ok\"");
        assert_eq!(context, "COPY t, line 1: \"1\ta\"");

        let (e, _) = error(vec![0, 1], b"1\ta\tt\n");
        assert_eq!(e.to_string(), "extra data after last expected column");

        let (e, context) = error(vec![2], b"maybe\n");
        assert_eq!(e.to_string(), "invalid input syntax for type boolean: \"maybe\"");
        assert_eq!(context, "COPY t, line 1, column ok: \"maybe\"");

        let csv = read(CopyFormat::csv(), vec![0, 1], &[b"1,ok\n2,\"open\n"]).unwrap_err();
        assert_eq!(csv.to_string(), "unterminated CSV quoted field");
    }

    #[test]
    fn only_copy_statements_are_copies() {
        assert!(parse_sql("COPY t FROM STDIN").unwrap()[0].is_copy());
        assert!(!parse_sql("SELECT 1").unwrap()[0].is_copy());
    }
}
