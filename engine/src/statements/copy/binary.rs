//! COPY's binary format, as PostgreSQL 15 reads and writes it (`copyfromparse.c`,
//! `copyto.c`):
//!
//! - a header: the 11-byte signature `PGCOPY\n\377\r\n\0`, an int32 of flags (bit 16:
//!   WITH OIDS, refused; other high bits are critical and refused), an int32 length of a
//!   header extension, which is skipped;
//! - per tuple an int16 field count (it must be the number of columns), then per field an
//!   int32 length (-1: NULL) and the value in its type's binary form
//!   ([`crate::binary::decode_binary`]);
//! - a trailer: the field count -1. Data that ends without it also ends the rows, as in
//!   Postgres; data after it is an error.
//!
//! Errors name the tuple as Postgres does, as a line (`COPY t, line 2, column id`), never
//! quoting the data.

use super::format::Fields;
use super::{CopyContext, RowReader, BATCH_ROWS};
use crate::error::{EngineError, Result};

/// The first bytes of COPY's binary format.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Flag bit 16 of the header: rows carry OIDs (Postgres before 12).
const WITH_OIDS: i32 = 1 << 16;

/// Appends the header COPY TO writes: the signature, no flags, no extension.
pub(super) fn write_header(out: &mut Vec<u8>) {
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
}

/// Appends the trailer that ends the data.
pub(super) fn write_trailer(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i16).to_be_bytes());
}

fn bad(message: impl Into<String>) -> EngineError {
    EngineError::BadCopyFormat { message: message.into() }
}

/// Cuts the client's bytes into tuples. CopyData messages may split a tuple (or the
/// header) anywhere, so the unfinished tail is kept for the next.
#[derive(Debug, Default)]
pub(super) struct TupleSplitter {
    buf: Vec<u8>,
    /// Start of the bytes not read yet.
    start: usize,
    header_read: bool,
}

/// What the next bytes hold.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Tuple {
    /// A tuple, now in the [`Fields`].
    Row,
    /// The trailer, or the end of the data.
    End,
    /// Not all of it yet.
    Pending,
}

/// Where in the data a format error is.
#[derive(Debug)]
pub(super) enum TupleError {
    /// The header: Postgres gives these no context.
    Header(EngineError),
    /// The tuple as a whole.
    Tuple(EngineError),
    /// The tuple's field for this column.
    Field(usize, EngineError),
}

impl TupleSplitter {
    pub(super) fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Whether bytes are left unread (after the trailer: an error).
    pub(super) fn has_more(&self) -> bool {
        self.start < self.buf.len()
    }

    /// Reads the header if not done yet, then the next tuple of `columns` fields into
    /// `fields`. `at_end`: no more data will come, so what is cut short is an error.
    pub(super) fn next(
        &mut self,
        columns: usize,
        at_end: bool,
        fields: &mut Fields,
    ) -> Result<Tuple, TupleError> {
        if !self.header_read {
            match read_header(&self.buf[self.start..], at_end).map_err(TupleError::Header)? {
                Some(length) => {
                    self.start += length;
                    self.header_read = true;
                }
                None => return Ok(Tuple::Pending),
            }
        }
        let bytes = &self.buf[self.start..];
        let Some(count) = bytes.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]])) else {
            if at_end {
                // Postgres takes a missing or cut field count for the end of the data.
                self.start = self.buf.len();
                return Ok(Tuple::End);
            }
            return Ok(Tuple::Pending);
        };
        if count == -1 {
            self.start += 2;
            return Ok(Tuple::End);
        }
        if i64::from(count) != columns as i64 {
            return Err(TupleError::Tuple(bad(format!("row field count is {count}, expected {columns}"))));
        }
        let cut = |column: usize| {
            if at_end {
                Err(TupleError::Field(column, bad("unexpected EOF in COPY data")))
            } else {
                Ok(Tuple::Pending)
            }
        };
        fields.clear();
        let mut at = 2;
        for column in 0..columns {
            let Some(length) = read_i32(bytes, at) else { return cut(column) };
            at += 4;
            if length == -1 {
                fields.push(None);
                continue;
            }
            let Ok(length) = usize::try_from(length) else {
                return Err(TupleError::Field(column, bad("invalid field size")));
            };
            let Some(value) = bytes.get(at..at + length) else { return cut(column) };
            fields.push(Some(value));
            at += length;
        }
        self.start += at;
        Ok(Tuple::Row)
    }
}

fn read_i32(bytes: &[u8], at: usize) -> Option<i32> {
    bytes.get(at..at + 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The header's length once all of it is there (`None` before), checked as Postgres
/// checks it.
fn read_header(bytes: &[u8], at_end: bool) -> Result<Option<usize>> {
    let cut = |message: &str| if at_end { Err(bad(message)) } else { Ok(None) };
    let seen = bytes.len().min(SIGNATURE.len());
    if bytes[..seen] != SIGNATURE[..seen] || (at_end && seen < SIGNATURE.len()) {
        return Err(bad("COPY file signature not recognized"));
    }
    let Some(flags) = read_i32(bytes, 11) else { return cut("invalid COPY file header (missing flags)") };
    if flags & WITH_OIDS != 0 {
        return Err(bad("invalid COPY file header (WITH OIDS)"));
    }
    if (flags & !WITH_OIDS) >> 16 != 0 {
        return Err(bad("unrecognized critical flags in COPY file header"));
    }
    let Some(extension) = read_i32(bytes, 15) else {
        return cut("invalid COPY file header (missing length)");
    };
    let Ok(extension) = usize::try_from(extension) else {
        return Err(bad("invalid COPY file header (missing length)"));
    };
    if bytes.len() < 19 + extension {
        return cut("invalid COPY file header (wrong length)");
    }
    Ok(Some(19 + extension))
}

impl RowReader {
    /// Binary: reads the tuples complete so far into the builders (`at_end`: all that is
    /// left). Tuples are counted as lines, the trailer included, as Postgres counts them.
    pub(super) fn read_tuples(&mut self, data: &[u8], at_end: bool) {
        if self.error.is_some() {
            return;
        }
        self.tuples.push(data);
        while self.error.is_none() {
            if self.ended {
                if self.tuples.has_more() {
                    self.error = Some(
                        self.binary_context(TupleError::Tuple(bad("received copy data after EOF marker"))),
                    );
                }
                return;
            }
            let tuple = self.tuples.next(self.builders.len(), at_end, &mut self.fields);
            if matches!(tuple, Ok(Tuple::Pending)) {
                return;
            }
            self.line += 1;
            match tuple.and_then(|tuple| self.push_tuple(tuple)) {
                Ok(Tuple::End) => self.ended = true,
                Ok(_) if self.rows_in_batch == BATCH_ROWS => self.error = self.flush().err(),
                Ok(_) => {}
                Err(e) => self.error = Some(self.binary_context(e)),
            }
        }
    }

    /// A [`Tuple::Row`]: the tuple in `fields` into the builders. On an error the builders
    /// may hold part of it (the whole COPY fails then).
    fn push_tuple(&mut self, tuple: Tuple) -> Result<Tuple, TupleError> {
        if tuple == Tuple::Row {
            for (i, builder) in self.builders.iter_mut().enumerate() {
                builder.push_binary(self.fields.get(i)).map_err(|e| TupleError::Field(i, e))?;
            }
            self.rows_in_batch += 1;
        }
        Ok(tuple)
    }

    /// `error` in the tuple at `self.line`.
    fn binary_context(&self, error: TupleError) -> EngineError {
        let (line, table) = (self.line, self.table_label.as_str());
        match error {
            TupleError::Header(e) => e,
            TupleError::Tuple(e) => CopyContext::Line(line).wrap(e, table),
            TupleError::Field(i, e) => CopyContext::Column { line, column: &self.names[i] }.wrap(e, table),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray, RecordBatch};
    use arrow::datatypes::{
        DataType, Decimal128Type, Field, Float32Type, Int64Type, Schema, SchemaRef, TimeUnit,
        TimestampMicrosecondType,
    };

    use super::*;
    use crate::statements::copy::CopyFormat;
    use crate::types::{vector_arrow_type, PG_TYPE_KEY};

    /// A tuple's fields, `None` for NULL.
    type Row = Vec<Option<Vec<u8>>>;

    /// A binary COPY stream of `rows`.
    fn stream(rows: &[Row]) -> Vec<u8> {
        let mut out = vec![];
        write_header(&mut out);
        for row in rows {
            out.extend((row.len() as i16).to_be_bytes());
            for field in row {
                match field {
                    Some(bytes) => {
                        out.extend((bytes.len() as i32).to_be_bytes());
                        out.extend(bytes);
                    }
                    None => out.extend((-1i32).to_be_bytes()),
                }
            }
        }
        write_trailer(&mut out);
        out
    }

    /// Every tuple of `chunks`, then what ends them.
    fn tuples(columns: usize, chunks: &[&[u8]]) -> (Vec<Row>, Result<(), String>) {
        let mut splitter = TupleSplitter::default();
        let mut fields = Fields::default();
        let mut out = vec![];
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.iter().enumerate() {
            splitter.push(chunk);
            loop {
                match splitter.next(columns, i == last, &mut fields) {
                    Ok(Tuple::Row) => {
                        out.push((0..fields.len()).map(|f| fields.get(f).map(<[u8]>::to_vec)).collect())
                    }
                    Ok(Tuple::Pending) => break,
                    Ok(Tuple::End) if splitter.has_more() => return (out, Err("data after the end".into())),
                    Ok(Tuple::End) => return (out, Ok(())),
                    Err(TupleError::Header(e) | TupleError::Tuple(e)) => return (out, Err(e.to_string())),
                    Err(TupleError::Field(column, e)) => return (out, Err(format!("column {column}: {e}"))),
                }
            }
        }
        (out, Err("no end".into()))
    }

    #[test]
    fn tuples_are_found_across_chunk_boundaries() {
        let rows = vec![
            vec![Some(1i64.to_be_bytes().to_vec()), Some(b"one".to_vec())],
            vec![None, Some(vec![])],
            vec![Some(3i64.to_be_bytes().to_vec()), None],
        ];
        let data = stream(&rows);
        assert_eq!(tuples(2, &[&data]), (rows.clone(), Ok(())));
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(tuples(2, &bytes), (rows.clone(), Ok(())));
        // A header extension is skipped.
        let mut extended = SIGNATURE.to_vec();
        extended.extend(0i32.to_be_bytes());
        extended.extend(3i32.to_be_bytes());
        extended.extend(b"abc");
        extended.extend_from_slice(&data[19..]);
        assert_eq!(tuples(2, &[&extended]), (rows.clone(), Ok(())));
        // Without the trailer, the data ends where the tuples do (and at a cut count).
        assert_eq!(tuples(2, &[&data[..data.len() - 2]]), (rows.clone(), Ok(())));
        assert_eq!(tuples(2, &[&data[..data.len() - 1]]), (rows, Ok(())));
    }

    #[test]
    fn format_errors_as_postgres_words_them() {
        let data = stream(&[vec![Some(vec![1, 2]), None]]);
        let error = |columns: usize, data: &[u8]| tuples(columns, &[data]).1.unwrap_err();
        assert_eq!(error(2, b"PGCOPY\n\xff\r\n\x01"), "COPY file signature not recognized");
        assert_eq!(error(2, b"PGCOP"), "COPY file signature not recognized");
        assert_eq!(error(2, b""), "COPY file signature not recognized");
        assert_eq!(error(2, &data[..13]), "invalid COPY file header (missing flags)");
        // The flags: bit 16 is WITH OIDS, the bits above are critical, those below not.
        let mut flags = data.clone();
        flags[13] = 1;
        assert_eq!(tuples(2, &[&flags]).1, Ok(()));
        flags[12] = 1;
        assert_eq!(error(2, &flags), "invalid COPY file header (WITH OIDS)");
        flags[12] = 2;
        assert_eq!(error(2, &flags), "unrecognized critical flags in COPY file header");
        assert_eq!(error(2, &data[..17]), "invalid COPY file header (missing length)");
        let mut long = data[..19].to_vec();
        long[18] = 5;
        assert_eq!(error(2, &long), "invalid COPY file header (wrong length)");
        assert_eq!(error(3, &data), "row field count is 2, expected 3");
        assert_eq!(error(2, &data[..data.len() - 3]), "column 1: unexpected EOF in COPY data");
        assert_eq!(error(2, &data[..24]), "column 0: unexpected EOF in COPY data");
        let mut negative = data.clone();
        negative[21..25].copy_from_slice(&(-2i32).to_be_bytes());
        assert_eq!(error(2, &negative), "column 0: invalid field size");
        let mut after = data.clone();
        after.push(0);
        assert_eq!(error(2, &after), "data after the end");
    }

    fn schema() -> SchemaRef {
        let mut jsonb = Field::new("doc", DataType::Utf8, true);
        jsonb.set_metadata([(PG_TYPE_KEY.to_string(), "jsonb".to_string())].into());
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
            Field::new("e", vector_arrow_type(3), true),
            Field::new("n", DataType::Decimal128(10, 2), true),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            jsonb,
        ]))
    }

    fn read(targets: Vec<usize>, chunks: &[&[u8]]) -> Result<Vec<RecordBatch>> {
        let mut reader = RowReader::new("t".into(), schema(), targets, CopyFormat::binary())?;
        for chunk in chunks {
            reader.push(chunk);
        }
        reader.finish()
    }

    fn vector(values: &[f32]) -> Option<Vec<u8>> {
        let mut bytes = [(values.len() as u16).to_be_bytes(), [0, 0]].concat();
        values.iter().for_each(|v| bytes.extend(v.to_be_bytes()));
        Some(bytes)
    }

    fn row(id: i64, v: &str, e: &[f32]) -> Row {
        // 12345.67: base-10000 digits 1, 2345, 6700 at weight 1, display scale 2.
        let numeric: Vec<u8> = [3i16, 1, 0, 2, 1, 2345, 6700].iter().flat_map(|w| w.to_be_bytes()).collect();
        let at = 86_400_000_000i64.to_be_bytes().to_vec(); // 2000-01-02 00:00:00+00
        vec![Some(id.to_be_bytes().to_vec()), Some(v.as_bytes().to_vec()), vector(e), Some(numeric), Some(at)]
    }

    #[test]
    fn tuples_become_rows_of_every_type() {
        let data = stream(&[row(1, "one", &[1.0, -2.0, 0.5]), vec![None; 5]]);
        let targets = vec![0, 1, 2, 3, 4];
        let batches = read(targets.clone(), &[&data]).unwrap();
        assert_eq!(batches.len(), 1);
        let batch = &batches[0];
        assert_eq!(batch.schema(), schema());
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(0), 1);
        assert_eq!(batch.column(1).as_string::<i32>().value(0), "one");
        let vector = batch.column(2).as_fixed_size_list().value(0);
        assert_eq!(vector.as_primitive::<Float32Type>().values(), &[1.0, -2.0, 0.5]);
        assert_eq!(batch.column(3).as_primitive::<Decimal128Type>().value(0), 1_234_567);
        let at = batch.column(4).as_primitive::<TimestampMicrosecondType>().value(0);
        assert_eq!(at, 946_771_200_000_000);
        assert!((0..6).all(|c| batch.column(c).is_null(1)), "the second row is NULL");
        assert!(batch.column(5).is_null(0), "a column left out");
        let bytes: Vec<&[u8]> = data.chunks(3).collect();
        assert_eq!(read(targets, &bytes).unwrap(), batches);
    }

    #[test]
    fn batches_hold_at_most_batch_rows() {
        let rows: Vec<_> = (0..BATCH_ROWS as i64 + 5).map(|i| vec![Some(i.to_be_bytes().to_vec())]).collect();
        let batches = read(vec![0], &[&stream(&rows)]).unwrap();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(), vec![BATCH_ROWS, 5]);
        assert_eq!(batches[1].column(0).as_primitive::<Int64Type>().value(4), BATCH_ROWS as i64 + 4);
    }

    fn error(targets: Vec<usize>, data: &[u8]) -> (EngineError, Option<String>) {
        match read(targets, &[data]).unwrap_err() {
            EngineError::CopyData { source, context } => (*source, Some(context)),
            other => (other, None),
        }
    }

    #[test]
    fn errors_name_the_tuple_and_column() {
        let good = row(1, "one", &[1.0, 2.0, 3.0]);
        let (e, context) = error(vec![0, 1, 2, 3, 4], &stream(&[good.clone(), row(2, "two", &[1.0, 2.0])]));
        assert!(matches!(e, EngineError::DataException { .. }));
        assert_eq!(e.to_string(), "expected 3 dimensions, not 2");
        assert_eq!(context.as_deref(), Some("COPY t, line 2, column e"));

        let (e, context) = error(vec![0, 1], &stream(&[good[..2].to_vec(), good[..1].to_vec()]));
        assert!(matches!(e, EngineError::BadCopyFormat { .. }));
        assert_eq!(e.to_string(), "row field count is 1, expected 2");
        assert_eq!(context.as_deref(), Some("COPY t, line 2"));

        let (e, context) = error(vec![0], b"PGCOPY\n\xff\r\n\x01");
        assert_eq!((e.to_string().as_str(), context), ("COPY file signature not recognized", None));

        let mut after = stream(&[good[..1].to_vec()]);
        after.extend(stream(&[good[..1].to_vec()]));
        let (e, context) = error(vec![0], &after);
        assert_eq!(e.to_string(), "received copy data after EOF marker");
        assert_eq!(context.as_deref(), Some("COPY t, line 2"));

        let (e, context) = error(vec![1, 0], &stream(&[vec![Some(b"a".to_vec()), Some(vec![0; 4])]]));
        assert!(matches!(e, EngineError::InvalidBinary { .. }));
        assert_eq!(e.to_string(), "incorrect binary data format");
        assert_eq!(context.as_deref(), Some("COPY t, line 1, column id"));

        let Err(e) = read(vec![0, 5], &[]) else { panic!("jsonb is not read in binary") };
        assert!(matches!(e, EngineError::FeatureNotSupported { .. }), "{e:?}");
    }
}
