//! Values from Postgres' binary form, as each type's receive function reads them
//! (`int4recv`, `timestamp_recv`, `numeric_recv`, pgvector's `vector_recv`...): bind
//! parameters sent in binary, and the fields of `COPY ... (FORMAT binary)`.
//!
//! The send side (Arrow values to the binary form) is written only by the server, in
//! `tarn_server::encode`, for results and COPY TO alike.
//!
//! Big-endian throughout; dates and timestamps count from 2000-01-01.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use datafusion::common::ScalarValue;

use crate::error::{EngineError, Result};

/// Days between 1970-01-01 and 2000-01-01, Postgres' binary epoch.
pub const PG_EPOCH_DAYS: i64 = 10_957;
pub const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS * 86_400_000_000;

/// Postgres' `incorrect binary data format` (22P03): a value of the wrong length.
fn bad_format() -> EngineError {
    EngineError::InvalidBinary { message: "incorrect binary data format".into() }
}

/// One value of `data_type` from its binary form (not NULL).
pub fn decode_binary(bytes: &[u8], data_type: &DataType) -> Result<ScalarValue> {
    let fixed = |n: usize| -> Result<&[u8]> {
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(bad_format())
        }
    };
    let be2 = || fixed(2).map(|b| [b[0], b[1]]);
    let be4 = || fixed(4).map(|b| [b[0], b[1], b[2], b[3]]);
    let be8 = || fixed(8).map(|b| <[u8; 8]>::try_from(b).expect("eight bytes"));
    Ok(match data_type {
        DataType::Boolean => ScalarValue::Boolean(Some(fixed(1)?[0] != 0)),
        DataType::Int8 => ScalarValue::Int8(Some(fixed(1)?[0] as i8)),
        DataType::Int16 => ScalarValue::Int16(Some(i16::from_be_bytes(be2()?))),
        DataType::UInt32 => ScalarValue::UInt32(Some(u32::from_be_bytes(be4()?))),
        DataType::Int32 => ScalarValue::Int32(Some(i32::from_be_bytes(be4()?))),
        DataType::Int64 => ScalarValue::Int64(Some(i64::from_be_bytes(be8()?))),
        DataType::Float32 => ScalarValue::Float32(Some(f32::from_be_bytes(be4()?))),
        DataType::Float64 => ScalarValue::Float64(Some(f64::from_be_bytes(be8()?))),
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
            let text = std::str::from_utf8(bytes).map_err(|e| EngineError::InvalidText {
                message: format!(
                    "invalid byte sequence for encoding \"UTF8\": 0x{:02x}",
                    bytes[e.valid_up_to()]
                ),
            })?;
            match data_type {
                DataType::Utf8View => ScalarValue::Utf8View(Some(text.to_string())),
                DataType::LargeUtf8 => ScalarValue::LargeUtf8(Some(text.to_string())),
                _ => ScalarValue::Utf8(Some(text.to_string())),
            }
        }
        DataType::Binary => ScalarValue::Binary(Some(bytes.to_vec())),
        DataType::Date32 => {
            let days = i32::from_be_bytes(be4()?);
            ScalarValue::Date32(Some(days.saturating_add(PG_EPOCH_DAYS as i32)))
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let micros = i64::from_be_bytes(be8()?);
            ScalarValue::TimestampMicrosecond(Some(micros.saturating_add(PG_EPOCH_MICROS)), tz.clone())
        }
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
            let micros = i64::from_be_bytes(be8()?).saturating_add(PG_EPOCH_MICROS);
            let nanos = micros
                .checked_mul(1000)
                .ok_or_else(|| EngineError::OutOfRange { message: "timestamp out of range".into() })?;
            ScalarValue::TimestampNanosecond(Some(nanos), tz.clone())
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            ScalarValue::Time64Microsecond(Some(i64::from_be_bytes(be8()?)))
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let b = fixed(16)?;
            let micros = i64::from_be_bytes(b[..8].try_into().expect("eight bytes"));
            let days = i32::from_be_bytes(b[8..12].try_into().expect("four bytes"));
            let months = i32::from_be_bytes(b[12..].try_into().expect("four bytes"));
            let nanos = micros
                .checked_mul(1000)
                .ok_or_else(|| EngineError::OutOfRange { message: "interval out of range".into() })?;
            ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(months, days, nanos)))
        }
        DataType::Decimal128(p, s) => {
            let text = numeric_from_binary(bytes)?;
            ScalarValue::Utf8(Some(text.clone())).cast_to(&DataType::Decimal128(*p, *s)).map_err(|_| {
                EngineError::InvalidText {
                    message: format!("invalid input syntax for type numeric: \"{text}\""),
                }
            })?
        }
        DataType::FixedSizeList(item, dims) if item.data_type() == &DataType::Float32 => {
            vector_scalar(vector_from_binary(bytes, *dims as usize)?)
        }
        other => {
            return Err(EngineError::unsupported(format!(
                "binary input of type {other} is not supported; send it as text"
            )))
        }
    })
}

/// pgvector's `vector_recv` into a `vector(dims)`: uint16 dimensions, uint16 unused (0),
/// then each element as float4. Checked in pgvector's order.
fn vector_from_binary(bytes: &[u8], dims: usize) -> Result<Vec<f32>> {
    let [d0, d1, u0, u1, elements @ ..] = bytes else { return Err(bad_format()) };
    let n = u16::from_be_bytes([*d0, *d1]) as usize;
    if n == 0 {
        return Err(EngineError::DataException { message: "vector must have at least 1 dimension".into() });
    }
    if n != dims {
        return Err(EngineError::DataException { message: format!("expected {dims} dimensions, not {n}") });
    }
    let unused = u16::from_be_bytes([*u0, *u1]);
    if unused != 0 {
        return Err(EngineError::InvalidParameter {
            message: format!("expected unused to be 0, not {unused}"),
        });
    }
    if elements.len() != 4 * n {
        return Err(bad_format());
    }
    let values: Vec<f32> =
        elements.chunks_exact(4).map(|c| f32::from_be_bytes(c.try_into().expect("four bytes"))).collect();
    if values.iter().any(|v| v.is_nan()) {
        return Err(EngineError::DataException { message: "NaN not allowed in vector".into() });
    }
    if values.iter().any(|v| v.is_infinite()) {
        return Err(EngineError::DataException { message: "infinite value not allowed in vector".into() });
    }
    Ok(values)
}

/// A `vector(n)` value: a one-row `FixedSizeList<Float32, n>`.
pub fn vector_scalar(values: Vec<f32>) -> ScalarValue {
    ScalarValue::FixedSizeList(Arc::new(crate::search::vector::vector_array(values.len(), values, None)))
}

/// `numeric_recv`, as the number's text (`-12.50`, `NaN`): int16 digit count, int16
/// weight of the first base-10000 digit, uint16 sign, int16 display scale, the digits.
pub fn numeric_from_binary(bytes: &[u8]) -> Result<String> {
    if bytes.len() < 8 {
        return Err(bad_format());
    }
    let word = |i: usize| i16::from_be_bytes([bytes[i], bytes[i + 1]]);
    let (ndigits, weight, sign, dscale) = (word(0) as u16 as usize, word(2), word(4) as u16, word(6) as u16);
    // PostgreSQL's own limits: a display scale of at most 0x3FFF, base-10000 digits.
    if bytes.len() != 8 + 2 * ndigits || dscale > 0x3FFF || !matches!(sign, 0 | 0x4000 | 0xC000) {
        return Err(bad_format());
    }
    let dscale = dscale as usize;
    if sign == 0xC000 {
        return Ok("NaN".into());
    }
    let digits: Vec<i16> = (0..ndigits).map(|i| word(8 + 2 * i)).collect();
    if digits.iter().any(|d| !(0..10_000).contains(d)) {
        return Err(bad_format());
    }
    let mut int_part = String::new();
    for w in 0..=weight.max(-1) {
        let d = digits.get(w as usize).copied().unwrap_or(0);
        if int_part.is_empty() {
            int_part = d.to_string();
        } else {
            let _ = write!(int_part, "{d:04}");
        }
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let mut frac = String::new();
    let mut position = weight + 1;
    while frac.len() < dscale {
        let d = if position < 0 { 0 } else { digits.get(position as usize).copied().unwrap_or(0) };
        let _ = write!(frac, "{d:04}");
        position += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if frac.is_empty() { format!("{sign}{int_part}") } else { format!("{sign}{int_part}.{frac}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(dims: u16, unused: u16, values: &[f32]) -> Vec<u8> {
        let mut bytes = [dims.to_be_bytes(), unused.to_be_bytes()].concat();
        values.iter().for_each(|v| bytes.extend(v.to_be_bytes()));
        bytes
    }

    #[test]
    fn fixed_width_values_and_their_epochs() {
        assert_eq!(decode_binary(&[1], &DataType::Boolean).unwrap(), ScalarValue::Boolean(Some(true)));
        assert_eq!(decode_binary(&[0xff, 0xfe], &DataType::Int16).unwrap(), ScalarValue::Int16(Some(-2)));
        let big = decode_binary(&(1i64 << 40).to_be_bytes(), &DataType::Int64).unwrap();
        assert_eq!(big, ScalarValue::Int64(Some(1 << 40)));
        let half = decode_binary(&0.5f32.to_be_bytes(), &DataType::Float32).unwrap();
        assert_eq!(half, ScalarValue::Float32(Some(0.5)));
        // 2000-01-02 is day 1 after Postgres' epoch, day 10958 after Unix's.
        assert_eq!(
            decode_binary(&1i32.to_be_bytes(), &DataType::Date32).unwrap(),
            ScalarValue::Date32(Some(10_958))
        );
        let tz = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(
            decode_binary(&0i64.to_be_bytes(), &tz).unwrap(),
            ScalarValue::TimestampMicrosecond(Some(946_684_800_000_000), Some("UTC".into()))
        );
        for (bytes, data_type) in
            [(&[0u8; 3][..], DataType::Int32), (&[0; 9], DataType::Int64), (&[], DataType::Boolean)]
        {
            let e = decode_binary(bytes, &data_type).unwrap_err();
            assert!(matches!(&e, EngineError::InvalidBinary { .. }), "{data_type}: {e:?}");
            assert_eq!(e.to_string(), "incorrect binary data format");
        }
        assert!(matches!(decode_binary(b"ok\xff", &DataType::Utf8), Err(EngineError::InvalidText { .. })));
    }

    #[test]
    fn vectors_are_checked_as_pgvector_checks_them() {
        let dims3 = crate::types::vector_arrow_type(3);
        let value = decode_binary(&vector(3, 0, &[1.0, -2.0, 0.5]), &dims3).unwrap();
        assert_eq!(value, vector_scalar(vec![1.0, -2.0, 0.5]));
        for (bytes, want) in [
            (vector(2, 0, &[1.0, 2.0]), "expected 3 dimensions, not 2"),
            (vector(0, 0, &[]), "vector must have at least 1 dimension"),
            (vector(3, 7, &[1.0, 2.0, 3.0]), "expected unused to be 0, not 7"),
            (vector(3, 0, &[1.0, 2.0]), "incorrect binary data format"),
            (vector(3, 0, &[1.0, f32::NAN, 3.0]), "NaN not allowed in vector"),
            (vector(3, 0, &[1.0, f32::INFINITY, 3.0]), "infinite value not allowed in vector"),
            (vec![0, 3], "incorrect binary data format"),
        ] {
            assert_eq!(decode_binary(&bytes, &dims3).unwrap_err().to_string(), want);
        }
        let wrong_dims = decode_binary(&vector(2, 0, &[1.0, 2.0]), &dims3).unwrap_err();
        assert!(matches!(wrong_dims, EngineError::DataException { .. }));
    }

    #[test]
    fn numerics_read_as_their_text() {
        // 12345.67: digits 1, 2345, 6700 (base 10000), weight 1, display scale 2.
        let words: [i16; 7] = [3, 1, 0, 2, 1, 2345, 6700];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(numeric_from_binary(&bytes).unwrap(), "12345.67");
        let value = decode_binary(&bytes, &DataType::Decimal128(10, 2)).unwrap();
        assert_eq!(value, ScalarValue::Decimal128(Some(1_234_567), 10, 2));
        // -0.05: one digit 500 at weight -1.
        let words: [i16; 5] = [1, -1, 0x4000, 2, 500];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(numeric_from_binary(&bytes).unwrap(), "-0.05");
        assert!(matches!(numeric_from_binary(&bytes[..9]), Err(EngineError::InvalidBinary { .. })));
    }
}
