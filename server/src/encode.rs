//! Arrow values to Postgres wire values (text and binary), and parameter bytes back
//! to typed values.
//!
//! Text output follows Postgres' own formatting (booleans `t`/`f`, `Infinity`, bytea as
//! `\x..`, timestamps without trailing zeros, vectors as `[1,2,3]`). Binary output is
//! Postgres' send format for every type we emit, since drivers such as tokio-postgres
//! ask for binary results on every column.

use std::fmt::Write as _;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, IntervalMonthDayNanoType, IntervalUnit, Time64MicrosecondType, TimeUnit, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use arrow::util::display::array_value_to_string;
use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use datafusion::common::ScalarValue;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::messages::data::DataRow;
use tarn_engine::binary::{decode_binary, vector_scalar, PG_EPOCH_DAYS, PG_EPOCH_MICROS};
use tarn_engine::search::vector::{format_vector, parse_vector_of};
use tarn_engine::types::{
    pg_type_of, type_modifier, write_array, write_float, write_timestamp, PgType, DEFAULT_NUMERIC, VECTOR_OID,
};
use tarn_engine::EngineError;

/// The pgwire type of a Postgres type.
pub fn wire_type(pg: PgType) -> Type {
    Type::from_oid(pg.oid).unwrap_or_else(|| {
        let kind =
            if pg.oid == VECTOR_OID { postgres_types::Kind::Simple } else { postgres_types::Kind::Pseudo };
        Type::new(pg.name.to_string(), pg.oid, kind, "public".to_string())
    })
}

/// Row description of a result schema; `binary(i)` tells column i's format.
pub fn field_infos(schema: &arrow::datatypes::Schema, binary: impl Fn(usize) -> bool) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let format = if binary(i) { FieldFormat::Binary } else { FieldFormat::Text };
            let pg = pg_type_of(f);
            let size = tarn_engine::catalog::pg_catalog::types::by_oid(pg.oid).map_or(-1, |t| t.len);
            FieldInfo::new(f.name().clone(), None, None, wire_type(pg), format)
                .with_type_modifier(type_modifier(f))
                .with_type_size(size)
        })
        .collect()
}

/// Encodes every row of `batch`.
pub fn encode_batch(batch: &RecordBatch, fields: &[FieldInfo]) -> Result<Vec<DataRow>, String> {
    // (column, binary, jsonb, vector of int2/oid): the announced type decides jsonb's
    // version byte, and that `int2vector`/`oidvector` text is `1 2`, not `{1,2}`.
    let columns: Vec<(ArrayRef, bool, bool, bool)> = batch
        .columns()
        .iter()
        .zip(fields)
        .map(|(c, info)| {
            let binary = info.format() == FieldFormat::Binary;
            let oid = info.datatype().oid();
            (
                c.clone(),
                binary,
                oid == PgType::JSONB.oid,
                // (A list: what a cast left under the field's metadata is not.)
                (oid == PgType::INT2VECTOR.oid || oid == PgType::OIDVECTOR.oid)
                    && matches!(c.data_type(), DataType::List(_)),
            )
        })
        .collect();
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut buf = BytesMut::with_capacity(batch.num_rows() * 16 * columns.len().max(1));
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        for (column, binary, jsonb, spaced) in &columns {
            if column.is_null(row) {
                buf.put_i32(-1);
                continue;
            }
            let at = buf.len();
            buf.put_i32(0);
            if *binary {
                if *jsonb {
                    buf.put_u8(1);
                }
                encode_binary(column, row, &mut buf)?;
            } else {
                text.clear();
                if *spaced {
                    write_array(&mut text, &column.as_list::<i32>().value(row), true, &element_text);
                } else {
                    encode_text(column, row, &mut text);
                }
                buf.put_slice(text.as_bytes());
            }
            let len = (buf.len() - at - 4) as i32;
            buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        rows.push(DataRow::new(buf.split(), columns.len() as i16));
    }
    Ok(rows)
}

/// Postgres' text form of one value (not NULL).
pub fn encode_text(column: &ArrayRef, row: usize, out: &mut String) {
    match column.data_type() {
        DataType::Boolean => out.push(if column.as_boolean().value(row) { 't' } else { 'f' }),
        // Postgres' "char": the letter; the zero byte is the empty string.
        DataType::Int8 => match column.as_primitive::<Int8Type>().value(row) {
            0 => {}
            byte => out.push(byte as u8 as char),
        },
        DataType::Int16 => write_display(out, column.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => write_display(out, column.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => write_display(out, column.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => write_display(out, column.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => write_display(out, column.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => write_display(out, column.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => write_display(out, column.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => write_float(out, column.as_primitive::<Float32Type>().value(row) as f64, true),
        DataType::Float64 => write_float(out, column.as_primitive::<Float64Type>().value(row), false),
        DataType::Decimal128(precision, scale) => {
            let value = column.as_primitive::<Decimal128Type>().value(row);
            let trim = (*precision, *scale) == DEFAULT_NUMERIC;
            out.push_str(&decimal_text(value, *scale, trim));
        }
        DataType::Utf8 => out.push_str(column.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => out.push_str(column.as_string::<i64>().value(row)),
        DataType::Utf8View => out.push_str(column.as_string_view().value(row)),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            out.push_str("\\x");
            for byte in binary_value(column, row) {
                let _ = write!(out, "{byte:02x}");
            }
        }
        DataType::Date32 => {
            let days = column.as_primitive::<Date32Type>().value(row);
            match days.checked_add(719_163).and_then(NaiveDate::from_num_days_from_ce_opt) {
                Some(date) => {
                    let _ = write!(out, "{}", date.format("%Y-%m-%d"));
                }
                None => write_display(out, days),
            }
        }
        DataType::Timestamp(unit, tz) => {
            let micros = timestamp_micros(column, unit, row);
            if !write_timestamp(out, micros, tz.is_some()) {
                write_display(out, micros);
            }
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            let micros = column.as_primitive::<Time64MicrosecondType>().value(row);
            let secs = (micros / 1_000_000) as u32;
            let nanos = ((micros % 1_000_000) * 1000) as u32;
            match NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos) {
                Some(time) => write_time(out, time),
                None => write_display(out, micros),
            }
        }
        DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Float32 => {
            let list = column.as_fixed_size_list().value(row);
            format_vector(list.as_primitive::<Float32Type>().values().iter().copied(), out);
        }
        DataType::List(_) => {
            write_array(out, &column.as_list::<i32>().value(row), false, &element_text);
        }
        DataType::LargeList(_) => {
            write_array(out, &column.as_list::<i64>().value(row), false, &element_text);
        }
        _ => out.push_str(&array_value_to_string(column, row).unwrap_or_default()),
    }
}

fn write_display(out: &mut String, value: impl std::fmt::Display) {
    let _ = write!(out, "{value}");
}

/// Floats as Postgres prints them: shortest exact digits, `e+NN` exponents.
fn decimal_text(value: i128, scale: i8, trim: bool) -> String {
    let negative = value < 0;
    let digits = value.unsigned_abs().to_string();
    let scale = scale.max(0) as usize;
    let mut text = if scale == 0 {
        digits
    } else if digits.len() > scale {
        format!("{}.{}", &digits[..digits.len() - scale], &digits[digits.len() - scale..])
    } else {
        format!("0.{}{}", "0".repeat(scale - digits.len()), digits)
    };
    if trim && text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    if negative {
        text.insert(0, '-');
    }
    text
}

fn write_time(out: &mut String, time: NaiveTime) {
    let _ = write!(out, "{}", time.format("%H:%M:%S"));
    let micros = time.nanosecond() / 1000;
    if micros > 0 {
        let fraction = format!("{micros:06}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
}

/// An array's element as the wire writes it (the text of its own type).
fn element_text(out: &mut String, array: &ArrayRef, i: usize) {
    encode_text(array, i, out);
}

fn binary_value(column: &ArrayRef, row: usize) -> &[u8] {
    match column.data_type() {
        DataType::Binary => column.as_binary::<i32>().value(row),
        DataType::LargeBinary => column.as_binary::<i64>().value(row),
        DataType::BinaryView => column.as_binary_view().value(row),
        DataType::FixedSizeBinary(_) => column.as_fixed_size_binary().value(row),
        _ => &[],
    }
}

fn timestamp_micros(column: &ArrayRef, unit: &TimeUnit, row: usize) -> i64 {
    use arrow::datatypes::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
    };
    match unit {
        TimeUnit::Second => column.as_primitive::<TimestampSecondType>().value(row).saturating_mul(1_000_000),
        TimeUnit::Millisecond => {
            column.as_primitive::<TimestampMillisecondType>().value(row).saturating_mul(1000)
        }
        TimeUnit::Microsecond => column.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => column.as_primitive::<TimestampNanosecondType>().value(row) / 1000,
    }
}

/// Postgres' binary send format of one value (not NULL).
pub fn encode_binary(column: &ArrayRef, row: usize, out: &mut BytesMut) -> Result<(), String> {
    match column.data_type() {
        DataType::Boolean => out.put_u8(column.as_boolean().value(row) as u8),
        DataType::Int8 => out.put_i8(column.as_primitive::<Int8Type>().value(row)),
        DataType::UInt8 => out.put_i16(column.as_primitive::<UInt8Type>().value(row) as i16),
        DataType::Int16 => out.put_i16(column.as_primitive::<Int16Type>().value(row)),
        DataType::UInt16 => out.put_i32(column.as_primitive::<UInt16Type>().value(row) as i32),
        DataType::Int32 => out.put_i32(column.as_primitive::<Int32Type>().value(row)),
        DataType::UInt32 => out.put_u32(column.as_primitive::<UInt32Type>().value(row)),
        DataType::Int64 => out.put_i64(column.as_primitive::<Int64Type>().value(row)),
        DataType::UInt64 => out.put_i64(column.as_primitive::<UInt64Type>().value(row) as i64),
        DataType::Float32 => out.put_f32(column.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => out.put_f64(column.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, scale) => {
            let value = column.as_primitive::<Decimal128Type>().value(row);
            numeric_binary(value, *scale, out);
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = match column.data_type() {
                DataType::Utf8 => column.as_string::<i32>().value(row),
                DataType::LargeUtf8 => column.as_string::<i64>().value(row),
                _ => column.as_string_view().value(row),
            };
            out.put_slice(text.as_bytes());
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            out.put_slice(binary_value(column, row))
        }
        DataType::Date32 => {
            out.put_i32(column.as_primitive::<Date32Type>().value(row).saturating_sub(PG_EPOCH_DAYS as i32))
        }
        DataType::Timestamp(unit, _) => {
            out.put_i64(timestamp_micros(column, unit, row).saturating_sub(PG_EPOCH_MICROS))
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            out.put_i64(column.as_primitive::<Time64MicrosecondType>().value(row))
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = column.as_primitive::<IntervalMonthDayNanoType>().value(row);
            out.put_i64(v.nanoseconds / 1000);
            out.put_i32(v.days);
            out.put_i32(v.months);
        }
        DataType::FixedSizeList(item, dims) if item.data_type() == &DataType::Float32 => {
            let list = column.as_fixed_size_list().value(row);
            out.put_u16(*dims as u16);
            out.put_u16(0);
            for v in list.as_primitive::<Float32Type>().values() {
                out.put_f32(*v);
            }
        }
        DataType::List(item) => array_binary(&column.as_list::<i32>().value(row), item, out)?,
        DataType::LargeList(item) => array_binary(&column.as_list::<i64>().value(row), item, out)?,
        _ => {
            // Sent as text (their type on the wire is text).
            out.put_slice(array_value_to_string(column, row).unwrap_or_default().as_bytes())
        }
    }
    Ok(())
}

fn array_binary(list: &ArrayRef, item: &Field, out: &mut BytesMut) -> Result<(), String> {
    let element = pg_type_of(item);
    out.put_i32(1); // dimensions
    out.put_i32(list.null_count().min(1) as i32);
    out.put_u32(element.oid);
    out.put_i32(list.len() as i32);
    out.put_i32(1); // lower bound
    for i in 0..list.len() {
        if list.is_null(i) {
            out.put_i32(-1);
            continue;
        }
        let at = out.len();
        out.put_i32(0);
        encode_binary(list, i, out)?;
        let len = (out.len() - at - 4) as i32;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

/// Postgres' binary `numeric`: base-10000 digits around the decimal point.
fn numeric_binary(value: i128, scale: i8, out: &mut BytesMut) {
    let scale = scale.max(0) as usize;
    let negative = value < 0;
    let digits = value.unsigned_abs().to_string();
    let (int_part, frac_part) = if digits.len() > scale {
        (digits[..digits.len() - scale].to_string(), digits[digits.len() - scale..].to_string())
    } else {
        (String::new(), format!("{}{}", "0".repeat(scale - digits.len()), digits))
    };
    // Pad the integer part on the left and the fraction on the right to groups of 4.
    let int_padded = format!("{}{}", "0".repeat((4 - int_part.len() % 4) % 4), int_part);
    let frac_padded = format!("{}{}", frac_part, "0".repeat((4 - frac_part.len() % 4) % 4));
    let mut groups: Vec<i16> = int_padded
        .as_bytes()
        .chunks(4)
        .chain(frac_padded.as_bytes().chunks(4))
        .map(|c| std::str::from_utf8(c).unwrap_or("0").parse::<i16>().unwrap_or(0))
        .collect();
    let mut weight = (int_padded.len() / 4) as i16 - 1;
    while groups.first() == Some(&0) && !groups.is_empty() {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(if negative { 0x4000 } else { 0 });
    out.put_i16(scale as i16);
    for g in groups {
        out.put_i16(g);
    }
}

/// Decodes one parameter into a value of `data_type` (`None` bytes are NULL); on failure
/// the SQLSTATE and message: 22P03 for binary data not in its type's form, 22000 for a
/// vector of the wrong dimension (pgvector's), 22P02 for text that does not parse.
pub fn decode_param(
    bytes: Option<&[u8]>,
    binary: bool,
    data_type: &DataType,
) -> Result<ScalarValue, (&'static str, String)> {
    let Some(bytes) = bytes else {
        return ScalarValue::try_from(data_type).map_err(|e| ("22P02", e.to_string()));
    };
    if let DataType::List(item) = data_type {
        return decode_array(bytes, binary, item.data_type());
    }
    if binary {
        decode_binary(bytes, data_type).map_err(|e| match e {
            EngineError::InvalidBinary { message } => {
                ("22P03", format!("{message} in bind parameter ({} bytes for {data_type})", bytes.len()))
            }
            EngineError::DataException { message } => ("22000", message),
            other => ("22P02", other.to_string()),
        })
    } else {
        let text =
            std::str::from_utf8(bytes).map_err(|_| ("22P02", "parameter is not valid UTF-8".to_string()))?;
        if let Some(dims) = tarn_engine::search::vector::vector_dims(data_type) {
            return parse_vector_of(text, dims as usize).map(vector_scalar).map_err(|e| match e {
                EngineError::DataException { message } => ("22000", message),
                other => ("22P02", other.to_string()),
            });
        }
        decode_text(text, data_type).map_err(|message| ("22P02", message))
    }
}

/// An array parameter (one dimension), in text (`{1,2,NULL,"a b"}`) or binary form.
fn decode_array(bytes: &[u8], binary: bool, item: &DataType) -> Result<ScalarValue, (&'static str, String)> {
    let elements: Vec<Option<Vec<u8>>> = if binary {
        binary_array_elements(bytes)
            .ok_or_else(|| ("22P03", "incorrect binary data format in array parameter".to_string()))?
    } else {
        let text =
            std::str::from_utf8(bytes).map_err(|_| ("22P02", "parameter is not valid UTF-8".to_string()))?;
        text_array_elements(text)
            .ok_or_else(|| ("22P02", format!("malformed array literal: \"{text}\"")))?
            .into_iter()
            .map(|e| e.map(String::into_bytes))
            .collect()
    };
    let values =
        elements.iter().map(|e| decode_param(e.as_deref(), binary, item)).collect::<Result<Vec<_>, _>>()?;
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(&values, item)))
}

/// The elements of a one-dimensional array's text form; `None` if malformed.
fn text_array_elements(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut elements = Vec::new();
    if inner.trim().is_empty() {
        return Some(elements);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut element = String::new();
        let quoted = chars.next_if_eq(&'"').is_some();
        if quoted {
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => element.push(chars.next()?),
                    c => element.push(c),
                }
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                if c == '{' || c == '"' {
                    return None; // nested arrays are not taken
                }
                element.push(c);
            }
            element = element.trim().to_string();
        }
        let is_null = !quoted && element.eq_ignore_ascii_case("null");
        elements.push((!is_null).then_some(element));
        match chars.next() {
            None => return Some(elements),
            Some(',') => continue,
            Some(_) => return None,
        }
    }
}

/// The elements of a one-dimensional array's binary form (ndim, has-null flag, element
/// type, then length and lower bound per dimension, then length-prefixed elements).
fn binary_array_elements(bytes: &[u8]) -> Option<Vec<Option<Vec<u8>>>> {
    let mut at = 0usize;
    fn int(bytes: &[u8], at: &mut usize) -> Option<i32> {
        let v = i32::from_be_bytes(bytes.get(*at..*at + 4)?.try_into().ok()?);
        *at += 4;
        Some(v)
    }
    let ndim = int(bytes, &mut at)?;
    let _has_null = int(bytes, &mut at)?;
    let _element_type = int(bytes, &mut at)?;
    if ndim == 0 {
        return Some(Vec::new());
    }
    if ndim != 1 {
        return None;
    }
    let len = usize::try_from(int(bytes, &mut at)?).ok()?;
    let _lower = int(bytes, &mut at)?;
    let mut elements = Vec::with_capacity(len.min(bytes.len()));
    for _ in 0..len {
        let n = int(bytes, &mut at)?;
        if n < 0 {
            elements.push(None);
        } else {
            let n = n as usize;
            elements.push(Some(bytes.get(at..at + n)?.to_vec()));
            at += n;
        }
    }
    Some(elements)
}

fn invalid(text: &str, ty: &str) -> String {
    format!("invalid input syntax for type {ty}: \"{text}\"")
}

fn decode_text(text: &str, data_type: &DataType) -> Result<ScalarValue, String> {
    let t = text.trim();
    Ok(match data_type {
        DataType::Boolean => ScalarValue::Boolean(Some(match t.to_ascii_lowercase().as_str() {
            "t" | "true" | "1" | "yes" | "y" | "on" => true,
            "f" | "false" | "0" | "no" | "n" | "off" => false,
            _ => return Err(invalid(text, "boolean")),
        })),
        // `"char"` (`relkind = ANY($1)` with `{r,v}`): the byte of its text, as charin reads it.
        DataType::Int8 => ScalarValue::Int8(Some(text.as_bytes().first().copied().unwrap_or(0) as i8)),
        DataType::Int16 => ScalarValue::Int16(Some(t.parse().map_err(|_| invalid(text, "smallint"))?)),
        DataType::UInt32 => ScalarValue::UInt32(Some(t.parse().map_err(|_| invalid(text, "oid"))?)),
        DataType::Int32 => ScalarValue::Int32(Some(t.parse().map_err(|_| invalid(text, "integer"))?)),
        DataType::Int64 => ScalarValue::Int64(Some(t.parse().map_err(|_| invalid(text, "bigint"))?)),
        DataType::Float32 => {
            ScalarValue::Float32(Some(parse_float(t).ok_or_else(|| invalid(text, "real"))? as f32))
        }
        DataType::Float64 => {
            ScalarValue::Float64(Some(parse_float(t).ok_or_else(|| invalid(text, "double precision"))?))
        }
        DataType::Decimal128(p, s) => {
            let value = ScalarValue::Utf8(Some(t.to_string()));
            value.cast_to(&DataType::Decimal128(*p, *s)).map_err(|_| invalid(text, "numeric"))?
        }
        DataType::Binary => {
            let hex = t.strip_prefix("\\x").ok_or_else(|| invalid(text, "bytea"))?;
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| invalid(text, "bytea"))?;
            ScalarValue::Binary(Some(bytes))
        }
        DataType::Date32 => {
            let date = NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| invalid(text, "date"))?;
            ScalarValue::Date32(Some(chrono::Datelike::num_days_from_ce(&date) - 719_163))
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let micros = parse_timestamp(t).ok_or_else(|| invalid(text, "timestamp"))?;
            ScalarValue::TimestampMicrosecond(Some(micros), tz.clone())
        }
        DataType::Utf8 => ScalarValue::Utf8(Some(text.to_string())),
        other => ScalarValue::Utf8(Some(text.to_string()))
            .cast_to(other)
            .map_err(|_| invalid(text, &other.to_string()))?,
    })
}

fn parse_float(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// Microseconds since the Unix epoch of a timestamp literal, with or without zone.
fn parse_timestamp(text: &str) -> Option<i64> {
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(ts) = DateTime::parse_from_str(text, format) {
            return Some(ts.timestamp_micros());
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(ts) = NaiveDateTime::parse_from_str(text, format) {
            return Some(ts.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_parameters_in_text_form() {
        let parsed = text_array_elements(r#"{1, "a b",NULL,"NULL","q\"x"}"#).unwrap();
        let want = [Some("1"), Some("a b"), None, Some("NULL"), Some("q\"x")];
        assert_eq!(parsed, want.map(|w| w.map(String::from)));
        assert_eq!(text_array_elements("{}").unwrap(), vec![]);
        assert!(text_array_elements("{1,{2}}").is_none() && text_array_elements("1,2").is_none());
        let list = decode_param(
            Some(b"{1,2,3}"),
            false,
            &DataType::List(std::sync::Arc::new(Field::new_list_field(DataType::Int64, true))),
        )
        .unwrap();
        assert_eq!(list.to_string(), "[1, 2, 3]");
    }

    #[test]
    fn numeric_binary_round_trips() {
        for (value, scale) in [(12345678i128, 2i8), (-5, 3), (0, 0), (100000000, 0), (1, 10)] {
            let mut buf = BytesMut::new();
            numeric_binary(value, scale, &mut buf);
            let text = tarn_engine::binary::numeric_from_binary(&buf).unwrap();
            assert_eq!(text, decimal_text(value, scale, false), "{value} scale {scale}");
        }
    }
}
