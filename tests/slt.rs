//! sqllogictest over the wire: the same `.slt` file runs through the simple query
//! protocol (text results) and the extended protocol (prepared statements, binary
//! results decoded here), and both must give the expected output.

use std::fmt::Write;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate};
use sqllogictest::{DBOutput, DefaultColumnType};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage};

/// How long one statement of a file may take (the slowest take about a second).
const STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Simple,
    Extended,
}

pub struct Wire {
    pub client: Client,
    pub protocol: Protocol,
}

/// A statement's error as `SQLSTATE: message`, so `.slt` files can match the code.
#[derive(Debug)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

impl From<tokio_postgres::Error> for WireError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => WireError(format!("{}: {}", db.code().code(), db.message())),
            None => WireError(e.to_string()),
        }
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for Wire {
    type Error = WireError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, WireError> {
        let run = async {
            match self.protocol {
                Protocol::Simple => run_simple(&self.client, sql).await,
                Protocol::Extended => run_extended(&self.client, sql).await,
            }
        };
        // A statement that hangs fails its file, named, instead of the whole run.
        tokio::time::timeout(STATEMENT_TIMEOUT, run).await.unwrap_or_else(|_| {
            Err(WireError(format!(
                "no answer in {} s ({:?} protocol)",
                STATEMENT_TIMEOUT.as_secs(),
                self.protocol
            )))
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tarn"
    }
}

async fn run_simple(client: &Client, sql: &str) -> Result<DBOutput<DefaultColumnType>, WireError> {
    let messages = client.simple_query(sql).await?;
    let mut columns = None;
    let mut rows = Vec::new();
    let mut count = 0;
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(c) => columns = Some(c.len()),
            SimpleQueryMessage::Row(row) => {
                let cells =
                    (0..row.len()).map(|i| row.get(i).map_or("NULL".to_string(), text_cell)).collect();
                rows.extend(one_row_per_line(cells));
            }
            SimpleQueryMessage::CommandComplete(n) => count = n,
            _ => {}
        }
    }
    Ok(match columns {
        Some(n) => DBOutput::Rows { types: vec![DefaultColumnType::Any; n], rows },
        None => DBOutput::StatementComplete(count),
    })
}

/// A row whose last cell has several lines (an EXPLAIN plan) as one row per line, the
/// other cells repeated: a record's result lines are its rows.
fn one_row_per_line(cells: Vec<String>) -> Vec<Vec<String>> {
    let Some((last, rest)) = cells.split_last() else { return vec![cells] };
    if !last.contains('\n') {
        return vec![cells];
    }
    last.lines().map(|line| rest.iter().cloned().chain([line.to_string()]).collect()).collect()
}

/// Empty strings print as `(empty)`, as in DataFusion's test files. A value of several
/// lines (an EXPLAIN plan) has its indentation drawn with `-` (the runner trims
/// leading blanks) and no trailing line break (which would end the record).
fn text_cell(value: &str) -> String {
    let value = value.trim_end_matches('\n');
    if value.is_empty() {
        return "(empty)".to_string();
    }
    if !value.contains('\n') {
        return value.to_string();
    }
    value
        .lines()
        .map(|line| {
            let text = line.trim_start();
            format!("{}{text}", "-".repeat(line.len() - text.len()))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn run_extended(client: &Client, sql: &str) -> Result<DBOutput<DefaultColumnType>, WireError> {
    let statement = client.prepare(sql).await?;
    if statement.columns().is_empty() {
        return Ok(DBOutput::StatementComplete(client.execute(&statement, &[]).await?));
    }
    let rows = client.query(&statement, &[]).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut cells = Vec::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            let raw: Option<Raw> = row.try_get(i)?;
            cells.push(match raw {
                None => "NULL".to_string(),
                Some(raw) => text_cell(&binary_to_text(column.type_(), &raw.0).map_err(WireError)?),
            });
        }
        out.extend(one_row_per_line(cells));
    }
    Ok(DBOutput::Rows { types: vec![DefaultColumnType::Any; statement.columns().len()], rows: out })
}

/// Any value's bytes as sent.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Postgres' binary send format to its text form, written independently of the server.
pub fn binary_to_text(ty: &Type, raw: &[u8]) -> Result<String, String> {
    let fixed = |n: usize| -> Result<&[u8], String> {
        (raw.len() == n).then_some(raw).ok_or_else(|| format!("{} bytes for {ty}", raw.len()))
    };
    let pg_epoch = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
    Ok(match ty.name() {
        "bool" => if fixed(1)?[0] != 0 { "t" } else { "f" }.to_string(),
        // One byte; the zero byte is the empty string.
        "char" => fixed(1)?.iter().filter(|&&b| b != 0).map(|&b| b as char).collect(),
        "int2" => i16::from_be_bytes(fixed(2)?.try_into().unwrap()).to_string(),
        "int4" => i32::from_be_bytes(fixed(4)?.try_into().unwrap()).to_string(),
        "int8" => i64::from_be_bytes(fixed(8)?.try_into().unwrap()).to_string(),
        "oid" => u32::from_be_bytes(fixed(4)?.try_into().unwrap()).to_string(),
        "float4" => float_text(f32::from_be_bytes(fixed(4)?.try_into().unwrap()) as f64, true),
        "float8" => float_text(f64::from_be_bytes(fixed(8)?.try_into().unwrap()), false),
        "text" | "varchar" | "json" | "name" | "bpchar" | "uuid" => {
            String::from_utf8(raw.to_vec()).map_err(|e| e.to_string())?
        }
        "jsonb" => String::from_utf8(raw.get(1..).unwrap_or_default().to_vec()).map_err(|e| e.to_string())?,
        "bytea" => {
            let mut s = "\\x".to_string();
            for b in raw {
                let _ = write!(s, "{b:02x}");
            }
            s
        }
        "date" => {
            let days = i32::from_be_bytes(fixed(4)?.try_into().unwrap());
            (pg_epoch + chrono::Duration::days(days as i64)).format("%Y-%m-%d").to_string()
        }
        "timestamp" | "timestamptz" => {
            let micros = i64::from_be_bytes(fixed(8)?.try_into().unwrap());
            let ts: DateTime<chrono::Utc> = pg_epoch + chrono::Duration::microseconds(micros);
            let mut s = ts.format("%Y-%m-%d %H:%M:%S").to_string();
            let fraction = micros.rem_euclid(1_000_000);
            if fraction != 0 {
                let _ = write!(s, ".{}", format!("{fraction:06}").trim_end_matches('0'));
            }
            if ty.name() == "timestamptz" {
                s.push_str("+00");
            }
            s
        }
        "numeric" => numeric_text(raw)?,
        "vector" => {
            let dims = u16::from_be_bytes([raw[0], raw[1]]) as usize;
            let values: Vec<String> = (0..dims)
                .map(|i| {
                    let v = f32::from_be_bytes(raw[4 + 4 * i..8 + 4 * i].try_into().unwrap());
                    format!("{v}")
                })
                .collect();
            format!("[{}]", values.join(","))
        }
        other => return Err(format!("the test client cannot decode type {other}")),
    })
}

fn float_text(value: f64, single: bool) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let abs = value.abs();
    if abs != 0.0 && !(1e-4..1e15).contains(&abs) {
        let s = if single { format!("{:e}", value as f32) } else { format!("{value:e}") };
        let (m, e) = s.split_once('e').unwrap();
        let (sign, digits) = e.strip_prefix('-').map_or(('+', e), |d| ('-', d));
        format!("{m}e{sign}{digits:0>2}")
    } else if single {
        format!("{}", value as f32)
    } else {
        format!("{value}")
    }
}

fn numeric_text(raw: &[u8]) -> Result<String, String> {
    let word = |i: usize| i16::from_be_bytes([raw[i], raw[i + 1]]);
    let (n, weight, sign, dscale) = (word(0) as usize, word(2) as i32, word(4) as u16, word(6) as usize);
    let digits: Vec<i32> = (0..n).map(|i| word(8 + 2 * i) as i32).collect();
    let digit =
        |position: i32| if position < 0 { 0 } else { digits.get(position as usize).copied().unwrap_or(0) };
    let mut int_part = String::new();
    for p in 0..=weight {
        if int_part.is_empty() {
            int_part = digit(p).to_string();
        } else {
            let _ = write!(int_part, "{:04}", digit(p));
        }
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let mut frac = String::new();
    let mut p = weight + 1;
    while frac.len() < dscale {
        let _ = write!(frac, "{:04}", digit(p));
        p += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if frac.is_empty() { format!("{sign}{int_part}") } else { format!("{sign}{int_part}.{frac}") })
}
