//! Postgres types on the SQL side: declared column types to Arrow fields, and Arrow
//! fields back to the Postgres type (OID, name) a client sees.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, IntervalUnit, TimeUnit};
use datafusion::sql::sqlparser::ast::{ArrayElemTypeDef, DataType as SqlType, ExactNumberInfo, TimezoneInfo};

use crate::error::{EngineError, Result};

/// Field metadata key naming the Postgres type when the Arrow type alone is ambiguous
/// (`jsonb` and `json` are stored as text).
pub const PG_TYPE_KEY: &str = "tarn.pg_type";

/// pgvector's type has no fixed OID (it gets one at CREATE EXTENSION); ours is fixed and
/// listed in `pg_type`, where pgvector clients look it up by name.
pub const VECTOR_OID: u32 = 16385;
pub const VECTOR_ARRAY_OID: u32 = 16390;

/// Decimal precision and scale used for `NUMERIC` without a declared precision.
pub const DEFAULT_NUMERIC: (u8, i8) = (38, 10);

/// A Postgres type as the wire sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgType {
    pub oid: u32,
    pub name: &'static str,
}

macro_rules! pg_types {
    ($($id:ident = $oid:expr, $name:expr;)*) => {
        impl PgType { $(pub const $id: PgType = PgType { oid: $oid, name: $name };)* }
    };
}

pg_types! {
    BOOL = 16, "bool"; BYTEA = 17, "bytea"; CHAR = 18, "char"; INT8 = 20, "int8"; INT2 = 21, "int2"; INT4 = 23, "int4";
    TEXT = 25, "text"; OID = 26, "oid"; JSON = 114, "json"; FLOAT4 = 700, "float4"; FLOAT8 = 701, "float8";
    BOOL_ARRAY = 1000, "_bool"; INT2_ARRAY = 1005, "_int2"; INT4_ARRAY = 1007, "_int4";
    TEXT_ARRAY = 1009, "_text"; INT8_ARRAY = 1016, "_int8"; FLOAT4_ARRAY = 1021, "_float4";
    FLOAT8_ARRAY = 1022, "_float8"; VARCHAR = 1043, "varchar"; DATE = 1082, "date"; TIME = 1083, "time";
    TIMESTAMP = 1114, "timestamp"; TIMESTAMPTZ = 1184, "timestamptz"; INTERVAL = 1186, "interval";
    NUMERIC = 1700, "numeric"; UUID = 2950, "uuid"; JSONB = 3802, "jsonb";
    VECTOR = VECTOR_OID, "vector"; UNKNOWN = 705, "unknown"; INT2VECTOR = 22, "int2vector";
    OIDVECTOR = 30, "oidvector";
}

/// The Postgres type a result column of this field is sent as.
pub fn pg_type_of(field: &Field) -> PgType {
    match field.metadata().get(PG_TYPE_KEY).map(String::as_str) {
        Some("jsonb") => return PgType::JSONB,
        Some("json") => return PgType::JSON,
        Some("uuid") => return PgType::UUID,
        Some("varchar") => return PgType::VARCHAR,
        // Still a list: a cast to text keeps the field's metadata, not its type.
        Some("int2vector") if matches!(field.data_type(), DataType::List(_)) => return PgType::INT2VECTOR,
        Some("oidvector") if matches!(field.data_type(), DataType::List(_)) => return PgType::OIDVECTOR,
        _ => {}
    }
    pg_type_of_arrow(field.data_type())
}

/// A timestamp (microseconds since the epoch) as PostgreSQL prints it: `2024-01-01
/// 10:00:00`, `...:00.5` with a fraction, and `+00` after a `timestamptz` (Tarn's
/// sessions are in UTC). `false` (nothing written) outside the range it can print.
pub fn write_timestamp(out: &mut String, micros: i64, with_zone: bool) -> bool {
    use std::fmt::Write;
    let Some(ts) = arrow::temporal_conversions::timestamp_us_to_datetime(micros) else { return false };
    let _ = write!(out, "{}", ts.format("%Y-%m-%d %H:%M:%S"));
    let fraction = micros.rem_euclid(1_000_000);
    if fraction > 0 {
        let digits = format!("{fraction:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    if with_zone {
        out.push_str("+00");
    }
    true
}

/// One element of an array's text (`{1,"a b",NULL}`), quoted as PostgreSQL quotes it:
/// when empty, `NULL`-like, or holding braces, commas, quotes, backslashes or blanks.
fn push_array_element(out: &mut String, element: &str) {
    let needs_quotes = element.is_empty()
        || element.eq_ignore_ascii_case("null")
        || element.chars().any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace());
    if !needs_quotes {
        out.push_str(element);
        return;
    }
    out.push('"');
    for c in element.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// How an array's element (`array`'s value at a position, not NULL) is written.
pub type ElementWriter<'a> = &'a dyn Fn(&mut String, &arrow::array::ArrayRef, usize);

/// An array value (one row of a list column) as PostgreSQL prints it: `{1,2}`,
/// `{"a b",NULL}`, `{{1,2},{3,4}}`, or `1 2` for an `int2vector`/`oidvector`
/// (`spaced`), each element as `element` writes it (the wire's encoder, or
/// [`write_element`] for a cast to text).
pub fn write_array(out: &mut String, list: &arrow::array::ArrayRef, spaced: bool, element: ElementWriter) {
    let mut text = String::new();
    if !spaced {
        out.push('{');
    }
    for i in 0..list.len() {
        if i > 0 {
            out.push(if spaced { ' ' } else { ',' });
        }
        if list.is_null(i) {
            out.push_str("NULL");
            continue;
        }
        text.clear();
        element(&mut text, list, i);
        // A nested array's braces are its own, not an element's text to quote.
        if spaced || matches!(list.data_type(), DataType::List(_)) {
            out.push_str(&text);
        } else {
            push_array_element(out, &text);
        }
    }
    if !spaced {
        out.push('}');
    }
}

/// An array's element as PostgreSQL prints it: booleans `t`/`f`, floats and timestamps
/// as [`write_float`] and [`write_timestamp`] do, nested arrays in braces, anything else
/// as Arrow prints it.
pub fn write_element(out: &mut String, array: &arrow::array::ArrayRef, i: usize) {
    use arrow::array::AsArray;
    use arrow::datatypes::{Float32Type, Float64Type};
    match array.data_type() {
        DataType::Boolean => out.push(if array.as_boolean().value(i) { 't' } else { 'f' }),
        DataType::Float32 => write_float(out, f64::from(array.as_primitive::<Float32Type>().value(i)), true),
        DataType::Float64 => write_float(out, array.as_primitive::<Float64Type>().value(i), false),
        DataType::Timestamp(_, zone) => {
            let one = array.slice(i, 1);
            let micros = arrow::compute::cast(&one, &DataType::Timestamp(TimeUnit::Microsecond, None))
                .ok()
                .map(|a| a.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().value(0));
            if !micros.is_some_and(|m| write_timestamp(out, m, zone.is_some())) {
                out.push_str(&arrow::util::display::array_value_to_string(array, i).unwrap_or_default());
            }
        }
        DataType::List(_) => write_array(out, &array.as_list::<i32>().value(i), false, &write_element),
        _ => out.push_str(&arrow::util::display::array_value_to_string(array, i).unwrap_or_default()),
    }
}

/// A float as PostgreSQL prints it with its default `extra_float_digits` (1): `1`,
/// `0.1`, `1e+20`, `1.5e-07`, `NaN`, `Infinity`; the shortest text that reads back as
/// the same value, in exponent form below 1e-4 and from 1e15. `single` prints it as a
/// `real`.
pub fn write_float(out: &mut String, value: f64, single: bool) {
    use std::fmt::Write;
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        let abs = value.abs();
        let exponent_form = abs != 0.0 && !(1e-4..1e15).contains(&abs);
        let text = match (exponent_form, single) {
            (false, true) => format!("{}", value as f32),
            (false, false) => format!("{value}"),
            (true, true) => format!("{:e}", value as f32),
            (true, false) => format!("{value:e}"),
        };
        match text.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = match exp.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', exp),
                };
                let _ = write!(out, "{mantissa}e{sign}{digits:0>2}");
            }
            None => out.push_str(&text),
        }
    }
}

/// `atttypmod` of a column of this field, and the type modifier RowDescription
/// carries: what the declared type said beyond its name (`vector(3)`: 3,
/// `numeric(10,2)`: `(10 << 16 | 2) + 4`, `timestamp(3)`: 3), -1 for nothing.
pub fn type_modifier(field: &Field) -> i32 {
    match field.data_type() {
        DataType::FixedSizeList(_, n) if pg_type_of(field) == PgType::VECTOR => *n,
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            ((i32::from(*p) << 16) | i32::from(*s)) + 4
        }
        DataType::Timestamp(TimeUnit::Second, _) | DataType::Time32(TimeUnit::Second) => 0,
        DataType::Timestamp(TimeUnit::Millisecond, _) | DataType::Time32(TimeUnit::Millisecond) => 3,
        _ => -1,
    }
}

pub fn pg_type_of_arrow(data_type: &DataType) -> PgType {
    match data_type {
        DataType::Boolean => PgType::BOOL,
        // Postgres' one-byte "char" (pg_type.typtype); SQL never declares Int8 columns.
        DataType::Int8 => PgType::CHAR,
        DataType::Int16 | DataType::UInt8 => PgType::INT2,
        DataType::Int32 | DataType::UInt16 => PgType::INT4,
        // Object identifiers (pg_catalog's oid columns); SQL never declares UInt32.
        DataType::UInt32 => PgType::OID,
        DataType::Int64 | DataType::UInt64 => PgType::INT8,
        DataType::Float16 | DataType::Float32 => PgType::FLOAT4,
        DataType::Float64 => PgType::FLOAT8,
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => PgType::NUMERIC,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            PgType::BYTEA
        }
        DataType::Date32 | DataType::Date64 => PgType::DATE,
        DataType::Time32(_) | DataType::Time64(_) => PgType::TIME,
        DataType::Timestamp(_, None) => PgType::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => PgType::TIMESTAMPTZ,
        DataType::Interval(_) | DataType::Duration(_) => PgType::INTERVAL,
        DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Float32 => PgType::VECTOR,
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            match pg_type_of_arrow(item.data_type()) {
                PgType::BOOL => PgType::BOOL_ARRAY,
                PgType::INT2 => PgType::INT2_ARRAY,
                PgType::INT4 => PgType::INT4_ARRAY,
                PgType::INT8 => PgType::INT8_ARRAY,
                PgType::FLOAT4 => PgType::FLOAT4_ARRAY,
                PgType::FLOAT8 => PgType::FLOAT8_ARRAY,
                _ => PgType::TEXT_ARRAY,
            }
        }
        _ => PgType::TEXT,
    }
}

/// The Arrow type a parameter announced with this OID is decoded into, if we know it.
pub fn arrow_type_of_oid(oid: u32) -> Option<DataType> {
    Some(match oid {
        16 => DataType::Boolean,
        17 => DataType::Binary,
        20 => DataType::Int64,
        21 => DataType::Int16,
        18 => DataType::Int8,
        26 => DataType::UInt32,
        23 => DataType::Int32,
        25 | 1043 | 114 | 3802 | 2950 | 1042 => DataType::Utf8,
        700 => DataType::Float32,
        701 => DataType::Float64,
        1700 => DataType::Decimal128(DEFAULT_NUMERIC.0, DEFAULT_NUMERIC.1),
        1082 => DataType::Date32,
        1083 => DataType::Time64(TimeUnit::Microsecond),
        1114 => DataType::Timestamp(TimeUnit::Microsecond, None),
        1184 => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        1186 => DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
        // One-dimensional arrays of the element types above (`= ANY($1)`).
        1000 | 1005 | 1007 | 1016 | 1021 | 1022 | 1009 | 1015 | 1231 | 1182 | 1115 => {
            let element = match oid {
                1000 => 16,
                1005 => 21,
                1007 => 23,
                1016 => 20,
                1021 => 700,
                1022 => 701,
                1231 => 1700,
                1182 => 1082,
                1115 => 1114,
                _ => 25,
            };
            let element = arrow_type_of_oid(element)?;
            DataType::List(std::sync::Arc::new(arrow::datatypes::Field::new_list_field(element, true)))
        }
        _ => return None,
    })
}

/// A declared column type, as the Arrow type we store it as.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnType {
    pub data_type: DataType,
    /// Postgres type name when Arrow cannot say it (see [`PG_TYPE_KEY`]).
    pub pg_name: Option<&'static str>,
    /// `SERIAL`, `BIGSERIAL`, `SMALLSERIAL`: an integer with an identity sequence.
    pub serial: bool,
}

impl ColumnType {
    fn plain(data_type: DataType) -> Self {
        Self { data_type, pg_name: None, serial: false }
    }

    pub fn field(&self, name: &str, nullable: bool) -> Field {
        let field = Field::new(name, self.data_type.clone(), nullable);
        match self.pg_name {
            Some(pg) => field.with_metadata(HashMap::from([(PG_TYPE_KEY.to_string(), pg.to_string())])),
            None => field,
        }
    }
}

/// Maps a type as written in SQL to the column type we store.
pub fn column_type(sql: &SqlType) -> Result<ColumnType> {
    use SqlType as S;
    let plain = |t| Ok(ColumnType::plain(t));
    match sql {
        S::Bool | S::Boolean => plain(DataType::Boolean),
        S::SmallInt(_) | S::Int2(_) => plain(DataType::Int16),
        S::Int(_) | S::Integer(_) | S::Int4(_) => plain(DataType::Int32),
        S::BigInt(_) | S::Int8(_) => plain(DataType::Int64),
        S::Real | S::Float4 => plain(DataType::Float32),
        S::Float(ExactNumberInfo::Precision(p)) if *p <= 24 => plain(DataType::Float32),
        S::DoublePrecision | S::Float8 | S::Float(_) | S::Double(_) => plain(DataType::Float64),
        S::Numeric(info) | S::Decimal(info) | S::Dec(info) => plain(decimal(info)?),
        S::Text | S::String(_) | S::Char(_) | S::Character(_) => plain(DataType::Utf8),
        S::Varchar(_) | S::CharVarying(_) | S::CharacterVarying(_) => {
            Ok(ColumnType { data_type: DataType::Utf8, pg_name: Some("varchar"), serial: false })
        }
        S::Bytea => plain(DataType::Binary),
        S::Date => plain(DataType::Date32),
        S::Time(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            plain(DataType::Time64(TimeUnit::Microsecond))
        }
        S::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            plain(DataType::Timestamp(TimeUnit::Microsecond, None))
        }
        S::Timestamp(_, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone) => {
            plain(DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())))
        }
        S::Interval { .. } => plain(DataType::Interval(IntervalUnit::MonthDayNano)),
        S::JSON => Ok(ColumnType { data_type: DataType::Utf8, pg_name: Some("json"), serial: false }),
        S::JSONB => Ok(ColumnType { data_type: DataType::Utf8, pg_name: Some("jsonb"), serial: false }),
        S::Uuid => Ok(ColumnType { data_type: DataType::Utf8, pg_name: Some("uuid"), serial: false }),
        S::Array(ArrayElemTypeDef::SquareBracket(inner, _) | ArrayElemTypeDef::AngleBracket(inner)) => {
            let inner = column_type(inner)?;
            plain(DataType::List(Arc::new(Field::new_list_field(inner.data_type, true))))
        }
        S::Custom(name, modifiers) => {
            let name = name.to_string().to_ascii_lowercase();
            let name = name.trim_start_matches("pg_catalog.").trim_start_matches("public.");
            match name {
                "vector" => plain(vector_type(modifiers)?),
                "serial" | "serial4" => {
                    Ok(ColumnType { data_type: DataType::Int32, pg_name: None, serial: true })
                }
                "bigserial" | "serial8" => {
                    Ok(ColumnType { data_type: DataType::Int64, pg_name: None, serial: true })
                }
                "smallserial" | "serial2" => {
                    Ok(ColumnType { data_type: DataType::Int16, pg_name: None, serial: true })
                }
                "timestamptz" => plain(DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))),
                "bpchar" | "name" | "citext" => plain(DataType::Utf8),
                // Object identifiers, as the catalogs hold them.
                "oid" | "regclass" | "regtype" | "regnamespace" | "regrole" => plain(DataType::UInt32),
                "int2vector" => plain(DataType::List(Arc::new(Field::new_list_field(DataType::Int16, true)))),
                "oidvector" => plain(DataType::List(Arc::new(Field::new_list_field(DataType::UInt32, true)))),
                "regproc" | "regprocedure" => plain(DataType::Utf8),
                _ => Err(EngineError::UndefinedType { name: name.to_string() }),
            }
        }
        other => Err(EngineError::unsupported(format!("type {other} is not supported"))),
    }
}

fn decimal(info: &ExactNumberInfo) -> Result<DataType> {
    let (precision, scale) = match *info {
        ExactNumberInfo::None => return Ok(DataType::Decimal128(DEFAULT_NUMERIC.0, DEFAULT_NUMERIC.1)),
        ExactNumberInfo::Precision(p) => (p, 0),
        ExactNumberInfo::PrecisionAndScale(p, s) => (p, s),
    };
    if !(1..=38).contains(&precision) || scale < 0 || scale as u64 > precision {
        return Err(EngineError::DataException {
            message: format!("NUMERIC precision {precision} and scale {scale} are out of range (precision 1 to 38, scale 0 to precision)"),
        });
    }
    Ok(DataType::Decimal128(precision as u8, scale as i8))
}

/// `VECTOR(n)`: pgvector's type, stored as Arrow `FixedSizeList<Float32, n>`.
pub fn vector_type(modifiers: &[String]) -> Result<DataType> {
    let dims = match modifiers {
        [n] => n.trim().parse::<i32>().ok().filter(|&n| n >= 1),
        [] => return Err(EngineError::unsupported("vector columns need a dimension: declare vector(n)")),
        _ => None,
    };
    let dims = dims.ok_or_else(|| EngineError::syntax(format!("invalid vector dimension {modifiers:?}")))?;
    if dims > crate::search::vector::MAX_DIMENSIONS {
        return Err(EngineError::DataException {
            message: format!(
                "vector cannot have more than {} dimensions",
                crate::search::vector::MAX_DIMENSIONS
            ),
        });
    }
    Ok(vector_arrow_type(dims))
}

pub fn vector_arrow_type(dims: i32) -> DataType {
    DataType::FixedSizeList(Arc::new(Field::new_list_field(DataType::Float32, true)), dims)
}

/// DataFusion's hook for types in expressions (`CAST(x AS vector(3))`, `'{}'::jsonb`).
#[derive(Debug, Default)]
pub struct TarnTypePlanner;

impl datafusion::logical_expr::planner::TypePlanner for TarnTypePlanner {
    fn plan_type_field(&self, sql: &SqlType) -> datafusion::error::Result<Option<FieldRef>> {
        let planned = match sql {
            SqlType::Custom(..) | SqlType::JSON | SqlType::JSONB | SqlType::Uuid => column_type(sql),
            // A `timestamptz` is UTC microseconds, as Tarn stores it (DataFusion's own is
            // zoneless unless a session time zone is set, and prints without a zone).
            SqlType::Timestamp(_, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone) => column_type(sql),
            _ => return Ok(None),
        };
        match planned {
            Ok(t) => Ok(Some(Arc::new(t.field("", true)))),
            Err(e) => Err(e.into_datafusion()),
        }
    }
}
