//! Running a statement on one engine (simple protocol: text results; extended protocol:
//! typed parameters and binary results decoded to Postgres' text form), and comparing two
//! results: ordered or as multisets, numbers as decimals, floats within a tolerance.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::gen::Value;

pub type Row = Vec<Option<String>>;

#[derive(Debug, Clone)]
pub enum Outcome {
    Rows(Vec<Row>),
    Error(String),
}

fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

pub async fn run_simple(client: &Client, sql: &str) -> Outcome {
    match client.simple_query(sql).await {
        Err(e) => Outcome::Error(error_text(&e)),
        Ok(messages) => Outcome::Rows(
            messages
                .into_iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(row) => {
                        Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect())
                    }
                    _ => None,
                })
                .collect(),
        ),
    }
}

/// Any value's bytes as sent.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A generated value sent as whatever type the server inferred for its parameter, in
/// binary, the way a typed client would (an integer goes into int2/4/8, float or
/// numeric; any value into a text parameter as its text).
#[derive(Debug)]
pub struct Param<'a>(pub &'a Value);

fn days_since_2000(date: &str) -> Result<i64, Box<dyn Error + Sync + Send>> {
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")?;
    Ok((d - chrono::NaiveDate::from_ymd_opt(2000, 1, 1).expect("date")).num_days())
}

fn micros_since_2000(ts: &str) -> Result<i64, Box<dyn Error + Sync + Send>> {
    let t = chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S%.f")?;
    let epoch =
        chrono::NaiveDate::from_ymd_opt(2000, 1, 1).expect("date").and_hms_opt(0, 0, 0).expect("time");
    Ok((t - epoch).num_microseconds().expect("in range"))
}

/// A decimal string in Postgres' binary numeric form.
pub fn encode_numeric(text: &str, out: &mut BytesMut) {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    let int_part = int_part.trim_start_matches('0');
    let dscale = frac_part.len() as u16;
    let int_padded = format!("{}{int_part}", "0".repeat((4 - int_part.len() % 4) % 4));
    let frac_padded = format!("{frac_part}{}", "0".repeat((4 - frac_part.len() % 4) % 4));
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("ascii").parse().expect("digits"))
            .collect()
    };
    let int_groups = group(&int_padded);
    let mut weight = int_groups.len() as i16 - 1;
    let mut groups: Vec<i16> = int_groups.into_iter().chain(group(&frac_padded)).collect();
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let sign: u16 = if negative && !groups.is_empty() { 0x4000 } else { 0 };
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(sign);
    out.put_u16(dscale);
    for g in groups {
        out.put_i16(g);
    }
}

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let v = self.0;
        let mismatch = || -> Box<dyn Error + Sync + Send> {
            format!("the test cannot send {v:?} as a parameter of type {ty}").into()
        };
        match (ty.name(), v) {
            ("int2", Value::Int(i)) => out.put_i16(i16::try_from(*i)?),
            ("int4", Value::Int(i)) => out.put_i32(i32::try_from(*i)?),
            ("int8", Value::Int(i)) => out.put_i64(*i),
            ("float8", Value::Int(i)) => out.put_f64(*i as f64),
            ("float8", Value::Float(f)) => out.put_f64(*f),
            ("float8", Value::Num(n)) => out.put_f64(n.parse()?),
            ("float4", Value::Float(f)) => out.put_f32(*f as f32),
            ("numeric", Value::Int(i)) => encode_numeric(&i.to_string(), out),
            ("numeric", Value::Num(n)) => encode_numeric(n, out),
            ("numeric", Value::Float(f)) => encode_numeric(&format!("{f}"), out),
            ("text" | "varchar" | "bpchar" | "name" | "unknown", v) => out.put_slice(
                match v {
                    Value::Int(i) => i.to_string(),
                    Value::Float(f) => format!("{f}"),
                    Value::Num(s) | Value::Text(s) | Value::Date(s) | Value::Ts(s) => s.clone(),
                    Value::Bool(b) => if *b { "t" } else { "f" }.to_string(),
                }
                .as_bytes(),
            ),
            ("bool", Value::Bool(b)) => out.put_u8(u8::from(*b)),
            ("date", Value::Date(d)) => out.put_i32(days_since_2000(d)? as i32),
            ("timestamp", Value::Ts(t)) => out.put_i64(micros_since_2000(t)?),
            ("timestamp", Value::Date(d)) => out.put_i64(days_since_2000(d)? * 86_400_000_000),
            _ => return Err(mismatch()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

pub async fn run_extended(client: &Client, sql: &str, params: &[Value]) -> Outcome {
    let statement = match client.prepare(sql).await {
        Ok(s) => s,
        Err(e) => return Outcome::Error(error_text(&e)),
    };
    let wrapped: Vec<Param> = params.iter().map(Param).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = wrapped.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let rows = match client.query(&statement, &refs).await {
        Ok(rows) => rows,
        Err(e) => {
            let types: Vec<String> = statement.params().iter().map(|t| t.name().to_string()).collect();
            return Outcome::Error(format!("{} (parameter types {types:?})", error_text(&e)));
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut cells = Vec::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            let raw: Option<Raw> = match row.try_get(i) {
                Ok(r) => r,
                Err(e) => return Outcome::Error(format!("decoding column {i}: {e}")),
            };
            cells.push(match raw {
                None => None,
                Some(raw) => match tarn_tests::slt::binary_to_text(column.type_(), &raw.0) {
                    Ok(text) => Some(text),
                    Err(e) => return Outcome::Error(format!("decoding column {i}: {e}")),
                },
            });
        }
        out.push(cells);
    }
    Outcome::Rows(out)
}

/// A number's digits without sign, leading and trailing zeros: `007.50` -> `75` (with
/// the point's place kept separately), so `1.5` and `1.50` compare equal.
fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let all = format!("{int_part}{frac_part}");
    let leading = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_start_matches('0').trim_end_matches('0').to_string();
    // Exponent of the first significant digit, so equal values have equal triples.
    let exponent = int_part.len() as i64 - leading as i64;
    if digits.is_empty() {
        return Some((false, String::new(), 0));
    }
    Some((neg, digits, exponent))
}

fn number(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b"+-.eEInfinityNa".contains(&b)) {
        return None;
    }
    t.parse().ok()
}

pub fn cell_eq(pg: &Option<String>, tarn: &Option<String>, approx: bool) -> bool {
    let (a, b) = match (pg, tarn) {
        (None, None) => return true,
        (Some(a), Some(b)) => (a, b),
        _ => return false,
    };
    if a == b {
        return true;
    }
    if let (Some(x), Some(y)) = (decimal(a), decimal(b)) {
        if x == y {
            return true;
        }
    }
    let (Some(x), Some(y)) = (number(a), number(b)) else { return false };
    // Floats are compared within the tolerance; decimals (numeric, integers) exactly.
    let inexact = approx || a.contains(['e', 'E']) || b.contains(['e', 'E']);
    if !inexact {
        return false;
    }
    if x == y {
        return true;
    }
    let scale = x.abs().max(y.abs());
    (x - y).abs() <= 1e-9 * scale || (x - y).abs() < 1e-12
}

/// Orders cells for the multiset comparison: numbers (numerically), then text, then
/// NULL, so values equal within the tolerance sit in the same place on both sides.
fn cell_order(a: &Option<String>, b: &Option<String>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => match (number(x), number(y)) {
            (Some(p), Some(q)) => p.total_cmp(&q),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => x.cmp(y),
        },
    }
}

fn row_order(a: &Row, b: &Row) -> std::cmp::Ordering {
    a.iter().zip(b).map(|(x, y)| cell_order(x, y)).find(|o| o.is_ne()).unwrap_or(a.len().cmp(&b.len()))
}

fn show(rows: &[Row], limit: usize) -> String {
    let mut out: Vec<String> = rows
        .iter()
        .take(limit)
        .map(|r| r.iter().map(|c| c.clone().unwrap_or_else(|| "NULL".into())).collect::<Vec<_>>().join(" | "))
        .collect();
    if rows.len() > limit {
        out.push(format!("... ({} rows)", rows.len()));
    }
    out.join("\n      ")
}

/// `None` when the two results agree; else a description of the difference.
pub fn compare(pg: &[Row], tarn: &[Row], ordered: bool, approx: &[bool]) -> Option<String> {
    let describe = |what: String| {
        Some(format!(
            "{what}\n    pg   ({} rows): {}\n    tarn ({} rows): {}",
            pg.len(),
            show(pg, 12),
            tarn.len(),
            show(tarn, 12)
        ))
    };
    if pg.len() != tarn.len() {
        return describe(format!("row counts differ: {} vs {}", pg.len(), tarn.len()));
    }
    let sorted = |rows: &[Row]| -> Vec<Row> {
        let mut v = rows.to_vec();
        if !ordered {
            v.sort_by(row_order);
        }
        v
    };
    let (a, b) = (sorted(pg), sorted(tarn));
    for (i, (ra, rb)) in a.iter().zip(&b).enumerate() {
        if ra.len() != rb.len() {
            return describe(format!("column counts differ: {} vs {}", ra.len(), rb.len()));
        }
        for (j, (ca, cb)) in ra.iter().zip(rb).enumerate() {
            if !cell_eq(ca, cb, approx.get(j).copied().unwrap_or(false)) {
                return describe(format!(
                    "{} row {i} column {}: {ca:?} vs {cb:?}",
                    if ordered { "ordered" } else { "sorted" },
                    j + 1
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_as_decimals() {
        let s = |x: &str| Some(x.to_string());
        assert!(cell_eq(&s("1.50"), &s("1.5"), false));
        assert!(cell_eq(&s("0.0"), &s("0"), false));
        assert!(cell_eq(&s("-0.00"), &s("0"), false));
        assert!(cell_eq(&s("100"), &s("100.000"), false));
        assert!(!cell_eq(&s("100"), &s("10"), false));
        assert!(!cell_eq(&s("2"), &s("3"), false));
        assert!(cell_eq(&s("3.3333333333333333"), &s("3.3333333333333335"), true));
        assert!(!cell_eq(&s("0.3"), &s("0.30000000000000004"), false));
        assert!(cell_eq(&s("1e+20"), &s("100000000000000000000"), false));
        assert!(cell_eq(&s("0.1"), &s("0.10000000000000002"), true));
        assert!(!cell_eq(&s("0.1"), &s("0.2"), true));
        assert!(!cell_eq(&s("abc"), &s("abd"), false));
        let mut buf = BytesMut::new();
        encode_numeric("-12.3400", &mut buf);
        assert_eq!(tarn_tests::slt::binary_to_text(&Type::NUMERIC, &buf).unwrap(), "-12.3400");
        let mut buf = BytesMut::new();
        encode_numeric("0.05", &mut buf);
        assert_eq!(tarn_tests::slt::binary_to_text(&Type::NUMERIC, &buf).unwrap(), "0.05");
        let mut buf = BytesMut::new();
        encode_numeric("12345678.9", &mut buf);
        assert_eq!(tarn_tests::slt::binary_to_text(&Type::NUMERIC, &buf).unwrap(), "12345678.9");
    }
}
