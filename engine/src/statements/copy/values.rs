//! Text values to Arrow arrays, read as PostgreSQL's input functions read them: each
//! column of a COPY FROM parses straight into its builder, row by row. Binary values are
//! read by [`decode_binary`], the reader of binary parameters too.

use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::AsArray;
use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, FixedSizeListArray,
    Float32Array, Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder,
    IntervalMonthDayNanoBuilder, ListArray, NullBufferBuilder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::compute::kernels::cast_utils::{parse_interval_month_day_nano, string_to_datetime, Parser};
use arrow::datatypes::{
    DataType, Date32Type, Field, FieldRef, Float32Type, IntervalUnit, Time64MicrosecondType, TimeUnit,
};
use datafusion::common::ScalarValue;

use crate::binary::{decode_binary, numeric_from_binary};
use crate::error::{EngineError, Result};
use crate::search::vector::parse_vector_of;
use crate::statements::literals::parse_bytea;
use crate::types::PG_TYPE_KEY;

/// One column of a COPY FROM: its builder and the Postgres name of its type (for errors).
pub(crate) struct ColumnBuilder {
    kind: Kind,
    type_name: &'static str,
    /// What binary values are decoded as.
    data_type: DataType,
}

enum Kind {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal {
        builder: Decimal128Builder,
        precision: u8,
        scale: i8,
    },
    Text(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    /// `utc` reads text without an offset (the session time zone is always UTC).
    Timestamp {
        builder: TimestampMicrosecondBuilder,
        tz: Option<Arc<str>>,
        utc: Tz,
    },
    Interval(IntervalMonthDayNanoBuilder),
    /// pgvector's `vector(n)`: `FixedSizeList<Float32, n>`.
    Vector {
        values: Vec<f32>,
        nulls: NullBufferBuilder,
        dims: usize,
        item: FieldRef,
    },
    /// One-dimensional arrays, `{1,2,NULL}`.
    List {
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        item: FieldRef,
        items: Box<ColumnBuilder>,
    },
}

impl ColumnBuilder {
    /// A builder for a column of `field`'s type, or 0A000 for a type COPY cannot read.
    pub(crate) fn new(field: &Field) -> Result<Self> {
        let (kind, type_name) = match field.data_type() {
            DataType::Boolean => (Kind::Bool(BooleanBuilder::new()), "boolean"),
            DataType::Int16 => (Kind::Int16(Int16Builder::new()), "smallint"),
            DataType::Int32 => (Kind::Int32(Int32Builder::new()), "integer"),
            DataType::Int64 => (Kind::Int64(Int64Builder::new()), "bigint"),
            DataType::Float32 => (Kind::Float32(Float32Builder::new()), "real"),
            DataType::Float64 => (Kind::Float64(Float64Builder::new()), "double precision"),
            DataType::Decimal128(precision, scale) => (
                Kind::Decimal { builder: Decimal128Builder::new(), precision: *precision, scale: *scale },
                "numeric",
            ),
            DataType::Utf8 => {
                let name = match field.metadata().get(PG_TYPE_KEY).map(String::as_str) {
                    Some("jsonb") => "jsonb",
                    Some("json") => "json",
                    Some("uuid") => "uuid",
                    Some("varchar") => "character varying",
                    _ => "text",
                };
                (Kind::Text(StringBuilder::new()), name)
            }
            DataType::Binary => (Kind::Binary(BinaryBuilder::new()), "bytea"),
            DataType::Date32 => (Kind::Date(Date32Builder::new()), "date"),
            DataType::Time64(TimeUnit::Microsecond) => (Kind::Time(Time64MicrosecondBuilder::new()), "time"),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                let utc =
                    "+00:00".parse::<Tz>().map_err(|e| EngineError::Internal { message: e.to_string() })?;
                let name = if tz.is_some() { "timestamp with time zone" } else { "timestamp" };
                (Kind::Timestamp { builder: TimestampMicrosecondBuilder::new(), tz: tz.clone(), utc }, name)
            }
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                (Kind::Interval(IntervalMonthDayNanoBuilder::new()), "interval")
            }
            DataType::FixedSizeList(item, dims) if item.data_type() == &DataType::Float32 => (
                Kind::Vector {
                    values: Vec::new(),
                    nulls: NullBufferBuilder::new(0),
                    dims: *dims as usize,
                    item: item.clone(),
                },
                "vector",
            ),
            DataType::List(item) => (
                Kind::List {
                    offsets: vec![0],
                    nulls: NullBufferBuilder::new(0),
                    item: item.clone(),
                    items: Box::new(ColumnBuilder::new(item)?),
                },
                "array",
            ),
            other => {
                return Err(EngineError::unsupported(format!(
                    "COPY FROM into column \"{}\" of type {other} is not supported",
                    field.name()
                )))
            }
        };
        Ok(Self { kind, type_name, data_type: field.data_type().clone() })
    }

    /// Whether [`ColumnBuilder::push_binary`] reads this column's type: 0A000 for those
    /// whose binary form we do not read (arrays; `jsonb` and `uuid`, which are stored as
    /// text but sent otherwise).
    pub(crate) fn check_binary(&self, column: &str) -> Result<()> {
        let readable = match &self.kind {
            Kind::List { .. } => false,
            Kind::Text(_) => !matches!(self.type_name, "jsonb" | "uuid"),
            _ => true,
        };
        if readable {
            return Ok(());
        }
        Err(EngineError::unsupported(format!(
            "COPY FROM in binary format into column \"{column}\" of type {} is not supported; use FORMAT text or csv",
            self.type_name
        )))
    }

    /// Appends one field of COPY's binary format (`None`: NULL), in its type's binary
    /// form. The column passed [`ColumnBuilder::check_binary`].
    pub(crate) fn push_binary(&mut self, value: Option<&[u8]>) -> Result<()> {
        let Some(bytes) = value else {
            self.push_null();
            return Ok(());
        };
        if let Kind::Decimal { .. } = self.kind {
            // Through its text, to round to the column's scale and check its precision
            // as numeric_in does.
            return self.push_str(Some(&numeric_from_binary(bytes)?));
        }
        match (&mut self.kind, decode_binary(bytes, &self.data_type)?) {
            (Kind::Bool(b), ScalarValue::Boolean(Some(v))) => b.append_value(v),
            (Kind::Int16(b), ScalarValue::Int16(Some(v))) => b.append_value(v),
            (Kind::Int32(b), ScalarValue::Int32(Some(v))) => b.append_value(v),
            (Kind::Int64(b), ScalarValue::Int64(Some(v))) => b.append_value(v),
            (Kind::Float32(b), ScalarValue::Float32(Some(v))) => b.append_value(v),
            (Kind::Float64(b), ScalarValue::Float64(Some(v))) => b.append_value(v),
            (Kind::Text(b), ScalarValue::Utf8(Some(v))) => b.append_value(v),
            (Kind::Binary(b), ScalarValue::Binary(Some(v))) => b.append_value(v),
            (Kind::Date(b), ScalarValue::Date32(Some(v))) => b.append_value(v),
            (Kind::Time(b), ScalarValue::Time64Microsecond(Some(v))) => b.append_value(v),
            (Kind::Timestamp { builder, .. }, ScalarValue::TimestampMicrosecond(Some(v), _)) => {
                builder.append_value(v)
            }
            (Kind::Interval(b), ScalarValue::IntervalMonthDayNano(Some(v))) => b.append_value(v),
            (Kind::Vector { values, nulls, .. }, ScalarValue::FixedSizeList(list)) => {
                values.extend(list.values().as_primitive::<Float32Type>().values());
                nulls.append_non_null();
            }
            (_, other) => {
                return Err(EngineError::Internal {
                    message: format!("binary {} decoded as {}", self.type_name, other.data_type()),
                })
            }
        }
        Ok(())
    }

    /// Appends one field as read from the data (`None`: NULL).
    pub(crate) fn push(&mut self, value: Option<&[u8]>) -> Result<()> {
        let text = value
            .map(|bytes| {
                std::str::from_utf8(bytes).map_err(|e| {
                    let bad = bytes[e.valid_up_to()];
                    EngineError::InvalidText {
                        message: format!("invalid byte sequence for encoding \"UTF8\": 0x{bad:02x}"),
                    }
                })
            })
            .transpose()?;
        self.push_str(text)
    }

    fn push_str(&mut self, value: Option<&str>) -> Result<()> {
        let type_name = self.type_name;
        let Some(text) = value else {
            self.push_null();
            return Ok(());
        };
        match &mut self.kind {
            Kind::Bool(b) => b.append_value(parse_bool(text).ok_or_else(|| invalid(type_name, text))?),
            Kind::Int16(b) => b.append_value(parse_int(text, type_name)?),
            Kind::Int32(b) => b.append_value(parse_int(text, type_name)?),
            Kind::Int64(b) => b.append_value(parse_int(text, type_name)?),
            Kind::Float32(b) => {
                let value = parse_float(text, type_name)?;
                let narrowed = value as f32;
                if narrowed.is_infinite() && value.is_finite() {
                    return Err(out_of_range(format!("\"{}\" is out of range for type real", trim(text))));
                }
                b.append_value(narrowed)
            }
            Kind::Float64(b) => b.append_value(parse_float(text, type_name)?),
            Kind::Decimal { builder, precision, scale } => {
                builder.append_value(parse_decimal(text, *precision, *scale)?)
            }
            Kind::Text(b) => b.append_value(text),
            Kind::Binary(b) => b.append_value(parse_bytea(text)?),
            Kind::Date(b) => {
                b.append_value(Date32Type::parse(trim(text)).ok_or_else(|| invalid(type_name, text))?)
            }
            Kind::Time(b) => b.append_value(
                Time64MicrosecondType::parse(trim(text)).ok_or_else(|| invalid(type_name, text))?,
            ),
            Kind::Timestamp { builder, tz, utc } => {
                // `timestamp` ignores a zone in its input; `timestamptz` converts to UTC.
                let text_at = if tz.is_some() { trim(text) } else { without_zone(trim(text)) };
                let at = string_to_datetime(utc, text_at).map_err(|_| invalid(type_name, text))?;
                builder.append_value(at.timestamp_micros())
            }
            Kind::Interval(b) => b.append_value(
                parse_interval_month_day_nano(trim(text)).map_err(|_| invalid(type_name, text))?,
            ),
            Kind::Vector { values, nulls, dims, .. } => {
                values.extend(parse_vector_of(text, *dims)?);
                nulls.append_non_null();
            }
            Kind::List { offsets, nulls, items, .. } => {
                let count = parse_array(text, items)?;
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last + count as i32);
                nulls.append_non_null();
            }
        }
        Ok(())
    }

    fn push_null(&mut self) {
        match &mut self.kind {
            Kind::Bool(b) => b.append_null(),
            Kind::Int16(b) => b.append_null(),
            Kind::Int32(b) => b.append_null(),
            Kind::Int64(b) => b.append_null(),
            Kind::Float32(b) => b.append_null(),
            Kind::Float64(b) => b.append_null(),
            Kind::Decimal { builder, .. } => builder.append_null(),
            Kind::Text(b) => b.append_null(),
            Kind::Binary(b) => b.append_null(),
            Kind::Date(b) => b.append_null(),
            Kind::Time(b) => b.append_null(),
            Kind::Timestamp { builder, .. } => builder.append_null(),
            Kind::Interval(b) => b.append_null(),
            Kind::Vector { values, nulls, dims, .. } => {
                values.extend(std::iter::repeat_n(0.0, *dims));
                nulls.append_null();
            }
            Kind::List { offsets, nulls, .. } => {
                offsets.push(offsets.last().copied().unwrap_or(0));
                nulls.append_null();
            }
        }
    }

    /// The values appended since the last call, as one array of the column's type.
    pub(crate) fn finish(&mut self) -> Result<ArrayRef> {
        Ok(match &mut self.kind {
            Kind::Bool(b) => Arc::new(b.finish()),
            Kind::Int16(b) => Arc::new(b.finish()),
            Kind::Int32(b) => Arc::new(b.finish()),
            Kind::Int64(b) => Arc::new(b.finish()),
            Kind::Float32(b) => Arc::new(b.finish()),
            Kind::Float64(b) => Arc::new(b.finish()),
            Kind::Decimal { builder, precision, scale } => {
                Arc::new(builder.finish().with_precision_and_scale(*precision, *scale)?)
            }
            Kind::Text(b) => Arc::new(b.finish()),
            Kind::Binary(b) => Arc::new(b.finish()),
            Kind::Date(b) => Arc::new(b.finish()),
            Kind::Time(b) => Arc::new(b.finish()),
            Kind::Timestamp { builder, tz, .. } => Arc::new(builder.finish().with_timezone_opt(tz.clone())),
            Kind::Interval(b) => Arc::new(b.finish()),
            Kind::Vector { values, nulls, dims, item } => Arc::new(FixedSizeListArray::try_new(
                item.clone(),
                *dims as i32,
                Arc::new(Float32Array::from(std::mem::take(values))),
                nulls.finish(),
            )?),
            Kind::List { offsets, nulls, item, items } => {
                let offsets = std::mem::replace(offsets, vec![0]);
                Arc::new(ListArray::try_new(
                    item.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    items.finish()?,
                    nulls.finish(),
                )?)
            }
        })
    }
}

fn invalid(type_name: &str, text: &str) -> EngineError {
    EngineError::InvalidText { message: format!("invalid input syntax for type {type_name}: \"{text}\"") }
}

fn out_of_range(message: String) -> EngineError {
    EngineError::OutOfRange { message }
}

/// Postgres' input functions skip leading and trailing white space (`isspace`).
fn trim(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b')
}

/// A timestamp's text without its zone (`+02`, `-05:30`, `Z`), which `timestamp` ignores.
fn without_zone(text: &str) -> &str {
    // The date's own hyphens are in its first 10 characters.
    match text.get(10..).and_then(|time| time.rfind(['+', '-', 'Z', 'z'])) {
        Some(at) => text[..10 + at].trim_end(),
        None => text,
    }
}

fn parse_int<T: std::str::FromStr<Err = std::num::ParseIntError>>(text: &str, type_name: &str) -> Result<T> {
    trim(text).parse().map_err(|e: std::num::ParseIntError| match e.kind() {
        std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
            out_of_range(format!("value \"{text}\" is out of range for type {type_name}"))
        }
        _ => invalid(type_name, text),
    })
}

/// `float8in`: decimal or exponent notation, `NaN`, `Infinity`, `-inf` in any case.
fn parse_float(text: &str, type_name: &str) -> Result<f64> {
    let t = trim(text);
    let value: f64 = t.parse().map_err(|_| invalid(type_name, text))?;
    if value.is_infinite() && !t.to_ascii_lowercase().contains("inf") {
        return Err(out_of_range(format!("\"{t}\" is out of range for type {type_name}")));
    }
    Ok(value)
}

/// `boolin`: `t`/`true`/`yes`/`on`/`1` and their opposites, any case, any unique prefix.
fn parse_bool(text: &str) -> Option<bool> {
    let t = trim(text);
    let prefix_of = |word: &str, min: usize| {
        (min..=word.len()).contains(&t.len()) && word[..t.len()].eq_ignore_ascii_case(t)
    };
    match t.bytes().next()?.to_ascii_lowercase() {
        b't' if prefix_of("true", 1) => Some(true),
        b'y' if prefix_of("yes", 1) => Some(true),
        b'f' if prefix_of("false", 1) => Some(false),
        b'n' if prefix_of("no", 1) => Some(false),
        b'o' if prefix_of("on", 2) => Some(true),
        b'o' if prefix_of("off", 2) => Some(false),
        b'1' if t.len() == 1 => Some(true),
        b'0' if t.len() == 1 => Some(false),
        _ => None,
    }
}

/// `numeric_in` into `Decimal128(precision, scale)`: rounds half away from zero to the
/// scale, as Postgres does, and fails with 22003 when the integer digits do not fit.
fn parse_decimal(text: &str, precision: u8, scale: i8) -> Result<i128> {
    let bad = || invalid("numeric", text);
    let t = trim(text);
    if ["nan", "infinity", "+infinity", "-infinity", "inf", "+inf", "-inf"]
        .iter()
        .any(|w| t.eq_ignore_ascii_case(w))
    {
        return Err(EngineError::unsupported(format!(
            "numeric value \"{t}\" cannot be stored (no NaN or infinity)"
        )));
    }
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], body[at + 1..].parse::<i64>().map_err(|_| bad())?),
        None => (body, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !digits_only(int_part)
        || !digits_only(frac_part)
        || exponent.abs() > 1000
    {
        return Err(bad());
    }
    let overflow = || out_of_range("numeric field overflow".to_string());
    let lowest = -i64::from(scale);
    // The power of ten of the digit at hand, from the most significant down.
    let mut power = int_part.len() as i64 - 1 + exponent;
    let mut value: i128 = 0;
    let mut round_up = false;
    for digit in int_part.bytes().chain(frac_part.bytes()).map(|b| i128::from(b - b'0')) {
        if power < lowest {
            round_up = power == lowest - 1 && digit >= 5;
            break;
        }
        value = value.checked_mul(10).and_then(|v| v.checked_add(digit)).ok_or_else(overflow)?;
        power -= 1;
    }
    // Digits end above the scale: the rest are zeros.
    while power >= lowest && value != 0 {
        value = value.checked_mul(10).ok_or_else(overflow)?;
        power -= 1;
    }
    if round_up {
        value += 1;
    }
    if value >= 10i128.pow(u32::from(precision)) {
        return Err(overflow());
    }
    Ok(if negative { -value } else { value })
}

/// Postgres' array text form, one dimension: `{1, 2, NULL, "a \"b\""}`. Appends the
/// elements to `items`; returns how many.
fn parse_array(text: &str, items: &mut ColumnBuilder) -> Result<usize> {
    let malformed = || EngineError::InvalidText { message: format!("malformed array literal: \"{text}\"") };
    let inner = trim(text).strip_prefix('{').and_then(|t| t.strip_suffix('}')).ok_or_else(malformed)?;
    if trim(inner).is_empty() {
        return Ok(0);
    }
    let mut chars = inner.chars().peekable();
    let mut element = String::new();
    let mut count = 0;
    loop {
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        element.clear();
        let quoted = chars.next_if_eq(&'"').is_some();
        loop {
            match chars.next() {
                None if quoted => return Err(malformed()),
                None => break,
                Some('"') if quoted => break,
                Some('\\') => element.push(chars.next().ok_or_else(malformed)?),
                Some(',') if !quoted => break,
                Some('{') if !quoted => {
                    return Err(EngineError::unsupported("COPY of multidimensional arrays is not supported"))
                }
                Some('"' | '}') => return Err(malformed()),
                Some(c) => element.push(c),
            }
        }
        if quoted {
            while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
            match chars.next() {
                None | Some(',') => {}
                Some(_) => return Err(malformed()),
            }
        }
        let value = if quoted { element.as_str() } else { element.trim_end() };
        if !quoted && value.is_empty() {
            return Err(malformed());
        }
        let is_null = !quoted && value.eq_ignore_ascii_case("null");
        items.push_str((!is_null).then_some(value))?;
        count += 1;
        if chars.peek().is_none() && !inner.ends_with(',') {
            return Ok(count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Decimal128Type, Float64Type, Int32Type, TimestampMicrosecondType};

    fn column(data_type: DataType, values: &[Option<&str>]) -> Result<ArrayRef> {
        let mut builder = ColumnBuilder::new(&Field::new("c", data_type, true))?;
        for v in values {
            builder.push(v.map(str::as_bytes))?;
        }
        builder.finish()
    }

    fn message(e: EngineError) -> String {
        e.to_string()
    }

    #[test]
    fn integers_and_floats_like_int4in_and_float8in() {
        let ints = column(DataType::Int32, &[Some(" 42 "), Some("-7"), Some("+3"), None]).unwrap();
        let ints = ints.as_primitive::<Int32Type>();
        assert_eq!((ints.value(0), ints.value(1), ints.value(2), ints.is_null(3)), (42, -7, 3, true));
        let bad = column(DataType::Int32, &[Some("abc")]).unwrap_err();
        assert!(matches!(&bad, EngineError::InvalidText { .. }));
        assert_eq!(message(bad), "invalid input syntax for type integer: \"abc\"");
        let big = column(DataType::Int16, &[Some("40000")]).unwrap_err();
        assert!(matches!(&big, EngineError::OutOfRange { .. }));
        assert_eq!(message(big), "value \"40000\" is out of range for type smallint");
        assert!(column(DataType::Int64, &[Some("1.5")]).is_err());
        assert!(column(DataType::Int64, &[Some("")]).is_err());

        let floats =
            column(DataType::Float64, &[Some("1.5e3"), Some("NaN"), Some("-Infinity"), Some(".5")]).unwrap();
        let floats = floats.as_primitive::<Float64Type>();
        assert_eq!(floats.value(0), 1500.0);
        assert!(floats.value(1).is_nan());
        assert_eq!((floats.value(2), floats.value(3)), (f64::NEG_INFINITY, 0.5));
        assert!(matches!(column(DataType::Float64, &[Some("1e400")]), Err(EngineError::OutOfRange { .. })));
        assert!(matches!(column(DataType::Float32, &[Some("1e40")]), Err(EngineError::OutOfRange { .. })));
        assert!(matches!(column(DataType::Float64, &[Some("1e")]), Err(EngineError::InvalidText { .. })));
    }

    #[test]
    fn booleans_like_boolin() {
        for (text, want) in [
            ("t", true),
            ("TRUE", true),
            ("tr", true),
            ("yes", true),
            ("on", true),
            ("1", true),
            (" f ", false),
            ("no", false),
            ("of", false),
            ("off", false),
            ("0", false),
        ] {
            assert_eq!(parse_bool(text), Some(want), "{text}");
        }
        for text in ["o", "truex", "2", "", "onn"] {
            assert_eq!(parse_bool(text), None, "{text}");
        }
    }

    #[test]
    fn numeric_rounds_half_away_from_zero_and_checks_precision() {
        for (text, want) in [
            ("2.25", 225),
            ("2.255", 226),
            ("-2.255", -226),
            ("2.254", 225),
            ("1e2", 10000),
            ("1.5E-1", 15),
            ("0.004", 0),
            ("0.005", 1),
            ("  12  ", 1200),
            ("007", 700),
            (".5", 50),
        ] {
            assert_eq!(parse_decimal(text, 10, 2).unwrap(), want, "{text}");
        }
        assert_eq!(parse_decimal("99999999.994", 10, 2).unwrap(), 9_999_999_999);
        for text in ["99999999.995", "1e8", "123456789012345678901234567890123456789012"] {
            assert!(matches!(parse_decimal(text, 10, 2), Err(EngineError::OutOfRange { .. })), "{text}");
        }
        assert_eq!(parse_decimal("0e999", 10, 2).unwrap(), 0);
        for text in ["", ".", "1.2.3", "abc", "1e", "--1", "1e99999"] {
            assert!(matches!(parse_decimal(text, 10, 2), Err(EngineError::InvalidText { .. })), "{text}");
        }
        let array = column(DataType::Decimal128(10, 2), &[Some("3.14159")]).unwrap();
        assert_eq!(array.as_primitive::<Decimal128Type>().value(0), 314);
        assert_eq!(array.data_type(), &DataType::Decimal128(10, 2));
    }

    #[test]
    fn dates_times_bytea_vectors_and_arrays() {
        let ts = column(
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            &[Some("2026-01-02 03:04:05.5+00"), Some("2026-01-02 05:04:05.5+02:00"), Some("2026-01-02")],
        )
        .unwrap();
        assert_eq!(ts.data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        let ts = ts.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.value(0), 1_767_323_045_500_000);
        assert_eq!(ts.value(1), ts.value(0));
        assert_eq!(ts.value(2), 1_767_312_000_000_000);
        let naive = column(
            DataType::Timestamp(TimeUnit::Microsecond, None),
            &[
                Some("2026-01-02 03:04:05.5+02"),
                Some("2026-01-02T03:04:05.5Z"),
                Some("2026-01-02 03:04:05.5"),
            ],
        )
        .unwrap();
        let naive = naive.as_primitive::<TimestampMicrosecondType>();
        assert!(naive.iter().all(|v| v == Some(1_767_323_045_500_000)), "the zone is ignored: {naive:?}");
        let bad = column(DataType::Timestamp(TimeUnit::Microsecond, None), &[Some("soon")]).unwrap_err();
        assert_eq!(message(bad), "invalid input syntax for type timestamp: \"soon\"");
        assert!(column(DataType::Date32, &[Some("2026-02-30")]).is_err());

        let bytes = column(DataType::Binary, &[Some("\\x00ff"), Some("ab\\\\")]).unwrap();
        assert_eq!(bytes.as_binary::<i32>().value(0), &[0, 255]);
        assert_eq!(bytes.as_binary::<i32>().value(1), b"ab\\");

        let vector_type = crate::types::vector_arrow_type(3);
        let vectors = column(vector_type.clone(), &[Some("[1,2,3]"), None]).unwrap();
        assert_eq!(vectors.data_type(), &vector_type);
        assert!(vectors.is_null(1));
        let wrong = column(vector_type, &[Some("[1,2]")]).unwrap_err();
        assert_eq!(message(wrong), "expected 3 dimensions, not 2");

        let list_type = DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)));
        let lists = column(list_type, &[Some("{1, 2,NULL}"), Some("{}"), None, Some("{\"3\"}")]).unwrap();
        let lists = lists.as_list::<i32>();
        assert_eq!(lists.value_offsets(), &[0, 3, 3, 3, 4]);
        assert!(lists.is_null(2) && lists.values().is_null(2));
        let text_list = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
        let texts = column(text_list.clone(), &[Some("{\"a,b\",\"NULL\",c d ,\"x\\\"y\"}")]).unwrap();
        let values = texts.as_list::<i32>().values().as_string::<i32>().clone();
        assert_eq!(
            values.iter().collect::<Vec<_>>(),
            vec![Some("a,b"), Some("NULL"), Some("c d"), Some("x\"y")]
        );
        for bad in ["1,2", "{1,,2}", "{\"a\"b}", "{1,}"] {
            assert!(column(text_list.clone(), &[Some(bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_utf8_is_reported() {
        let mut builder = ColumnBuilder::new(&Field::new("c", DataType::Utf8, true)).unwrap();
        let e = builder.push(Some(b"ok\xff")).unwrap_err();
        assert_eq!(message(e), "invalid byte sequence for encoding \"UTF8\": 0xff");
    }
}
