//! Session settings: what `SET` (and `set_config()`) changes and `SHOW` reads, with
//! Postgres' defaults for the ones clients ask about. Statements answered here never
//! reach DataFusion.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, ObjectName, Value};

use crate::error::{EngineError, Result};

/// The Postgres version we answer as: clients parse it to pick their SQL dialect.
pub const SERVER_VERSION: &str = "16.4";
pub const SERVER_VERSION_NUM: &str = "160004";

/// Defaults of the vector-search knobs (`crate::search::knn::DEFAULT_EF_SEARCH`, `DEFAULT_PROBES`).
const DEFAULT_EF_SEARCH: &str = "100";
const DEFAULT_PROBES: &str = "10";

/// Integer settings and their ranges (pgvector's). Of pgvector's iterative-scan knobs
/// (`hnsw.max_scan_tuples`, `hnsw.scan_mem_multiplier`, `ivfflat.max_probes`, and the
/// `*.iterative_scan` modes below) Tarn needs none: its filtered searches always return
/// `LIMIT` rows when enough match. They are accepted and checked as pgvector checks
/// them, so scripts written for pgvector run unchanged.
const INTEGER_RANGES: &[(&str, i64, i64)] = &[
    ("hnsw.ef_search", 1, 1000),
    ("ivfflat.probes", 1, 32_768),
    ("hnsw.max_scan_tuples", 1, 2_147_483_647),
    ("hnsw.scan_mem_multiplier", 1, 1000),
    ("ivfflat.max_probes", 1, 32_768),
];

/// Settings that are durations in milliseconds (`0` is none), as PostgreSQL's.
const DURATIONS: &[&str] =
    &["statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "idle_session_timeout"];

/// Whether the sensitive-data detector sees the session's writes
/// (`crate::access::detector`).
pub const CLASSIFY_COLUMNS: &str = "tarn.classify_columns";

/// Whether the session's queries emit lineage events too, not only its writes
/// (`crate::lineage`).
pub const LINEAGE_READS: &str = "tarn.lineage_reads";

/// The lineage events' job name (else `application_name`).
pub const JOB_NAME: &str = "tarn.job_name";

/// Settings that take one of a few words (pgvector's, and Tarn's own).
const ENUMS: &[(&str, &[&str])] = &[
    (CLASSIFY_COLUMNS, &["on", "off"]),
    (LINEAGE_READS, &["on", "off"]),
    ("hnsw.iterative_scan", &["off", "relaxed_order", "strict_order"]),
    ("ivfflat.iterative_scan", &["off", "relaxed_order"]),
];

/// Settings reported to the client at startup (ParameterStatus), in this order.
pub const REPORTED_AT_STARTUP: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
];

fn defaults() -> BTreeMap<String, (String, String)> {
    let pairs: &[(&str, &str)] = &[
        ("application_name", ""),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("default_transaction_read_only", "off"),
        ("default_transaction_isolation", "read committed"),
        ("transaction_isolation", "read committed"),
        ("transaction_read_only", "off"),
        ("in_hot_standby", "off"),
        ("integer_datetimes", "on"),
        ("IntervalStyle", "postgres"),
        ("is_superuser", "on"),
        ("server_encoding", "UTF8"),
        ("server_version", SERVER_VERSION),
        ("server_version_num", SERVER_VERSION_NUM),
        ("session_authorization", "tarn"),
        ("standard_conforming_strings", "on"),
        ("TimeZone", "Etc/UTC"),
        ("search_path", "\"$user\", public"),
        ("extra_float_digits", "1"),
        ("client_min_messages", "notice"),
        ("statement_timeout", "0"),
        ("lock_timeout", "0"),
        ("idle_in_transaction_session_timeout", "0"),
        ("idle_session_timeout", "0"),
        ("max_identifier_length", "63"),
        ("max_index_keys", "32"),
        ("max_function_args", "100"),
        ("block_size", "8192"),
        ("default_table_access_method", "lance"),
        ("default_tablespace", ""),
        ("temp_tablespaces", ""),
        ("lc_messages", "C.UTF-8"),
        ("lc_collate", "C.UTF-8"),
        ("lc_ctype", "C.UTF-8"),
        ("bytea_output", "hex"),
        ("jit", "off"),
        ("hnsw.ef_search", DEFAULT_EF_SEARCH),
        ("ivfflat.probes", DEFAULT_PROBES),
        ("hnsw.iterative_scan", "off"),
        ("hnsw.max_scan_tuples", "20000"),
        ("hnsw.scan_mem_multiplier", "1"),
        ("ivfflat.iterative_scan", "off"),
        ("ivfflat.max_probes", "32768"),
        (CLASSIFY_COLUMNS, "on"),
        (LINEAGE_READS, "off"),
        (JOB_NAME, ""),
    ];
    pairs.iter().map(|(k, v)| (k.to_lowercase(), (k.to_string(), v.to_string()))).collect()
}

/// Settings that only the server may change: the rest of Tarn relies on them.
const READ_ONLY: &[&str] = &[
    "server_version",
    "server_version_num",
    "server_encoding",
    "integer_datetimes",
    "is_superuser",
    "in_hot_standby",
    "max_identifier_length",
    "max_index_keys",
    "max_function_args",
    "block_size",
];

#[derive(Debug, Clone)]
pub struct Settings {
    /// Lower-cased name -> (name as Postgres spells it, value).
    values: BTreeMap<String, (String, String)>,
    /// New (unique in the process) after every change: plans kept under other
    /// settings are made again.
    generation: u64,
}

/// The source of [`Settings::generation`].
static GENERATIONS: AtomicU64 = AtomicU64::new(0);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed) + 1
}

impl Settings {
    /// Every setting as (name, value), sorted by name: `pg_settings`' rows.
    pub fn all(&self) -> Vec<(String, String)> {
        self.values.values().cloned().collect()
    }

    pub fn new(user: &str) -> Self {
        let mut settings = Settings { values: defaults(), generation: next_generation() };
        settings.values.get_mut("session_authorization").expect("default").1 = user.to_string();
        settings
    }

    /// A read-only replica's session, as a PostgreSQL hot standby's: every transaction
    /// is read-only.
    pub fn on_standby(mut self) -> Self {
        for name in ["in_hot_standby", "default_transaction_read_only", "transaction_read_only"] {
            self.values.get_mut(name).expect("default").1 = "on".to_string();
        }
        self
    }

    /// Changes whenever a setting does (see the field).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn get(&self, name: &str) -> Result<&str> {
        self.values
            .get(&name.to_lowercase())
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| EngineError::UndefinedParameter { name: name.to_string() })
    }

    /// Name as Postgres spells it and value, for ParameterStatus.
    pub fn reported(&self) -> Vec<(String, String)> {
        REPORTED_AT_STARTUP.iter().filter_map(|k| self.values.get(&k.to_lowercase()).cloned()).collect()
    }

    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let value = Self::checked(name, value)?;
        let key = name.to_lowercase();
        let spelled = self.values.get(&key).map(|(s, _)| s.clone()).unwrap_or_else(|| name.to_string());
        self.values.insert(key, (spelled, value));
        self.generation = next_generation();
        Ok(())
    }

    /// `value` as `name` keeps it (`'UTF-8'` is `UTF8`, `'5s'` is `5000ms`), or why it
    /// cannot be that setting's value.
    pub fn checked(name: &str, value: &str) -> Result<String> {
        let key = name.to_lowercase();
        if READ_ONLY.contains(&key.as_str()) {
            return Err(EngineError::InvalidParameter {
                message: format!("parameter \"{name}\" cannot be changed"),
            });
        }
        if key.starts_with("datafusion.") {
            return Err(EngineError::UndefinedParameter { name: name.to_string() });
        }
        let value = match key.as_str() {
            "client_encoding" => {
                let normalized = value.trim_matches('\'').to_ascii_uppercase().replace('-', "");
                if normalized != "UTF8" && normalized != "UNICODE" {
                    return Err(EngineError::FeatureNotSupported {
                        message: format!("client encoding \"{value}\" is not supported; Tarn speaks UTF8"),
                    });
                }
                "UTF8".to_string()
            }
            "timezone" => match value.to_ascii_lowercase().as_str() {
                "utc" | "etc/utc" | "gmt" | "z" | "zulu" | "+00" | "00:00" | "0" => value.to_string(),
                _ => {
                    return Err(EngineError::FeatureNotSupported {
                        message: format!("time zone \"{value}\" is not supported yet; Tarn runs in UTC"),
                    })
                }
            },
            _ if DURATIONS.contains(&key.as_str()) => format_millis(parse_millis(name, value)?),
            _ if ENUMS.iter().any(|(n, _)| *n == key) => {
                let (_, allowed) = ENUMS.iter().find(|(n, _)| *n == key).expect("checked");
                let text = value.trim_matches('\'').to_ascii_lowercase();
                if !allowed.contains(&text.as_str()) {
                    return Err(EngineError::InvalidParameter {
                        message: format!(
                            "invalid value for parameter \"{name}\": \"{text}\" (available values: {})",
                            allowed.join(", ")
                        ),
                    });
                }
                text
            }
            _ => {
                match INTEGER_RANGES.iter().find(|(n, _, _)| *n == key) {
                    Some(&(_, min, max)) => {
                        let text = value.trim_matches('\'');
                        let n: i64 = text.parse().map_err(|_| EngineError::InvalidParameter {
                            message: format!("invalid value for parameter \"{name}\": \"{text}\""),
                        })?;
                        if !(min..=max).contains(&n) {
                            return Err(EngineError::InvalidParameter {
                            message: format!("{n} is outside the valid range for parameter \"{name}\" ({min} .. {max})"),
                        });
                        }
                        n.to_string()
                    }
                    None => value.to_string(),
                }
            }
        };
        Ok(value)
    }

    /// A duration setting (`statement_timeout`, `idle_session_timeout`, ...); `None`
    /// when it is 0, that is off.
    pub fn duration(&self, name: &str) -> Option<Duration> {
        let millis = parse_millis(name, self.get(name).ok()?).ok()?;
        (millis > 0).then(|| Duration::from_millis(millis as u64))
    }

    pub fn reset(&mut self, name: &str) {
        self.generation = next_generation();
        let key = name.to_lowercase();
        match defaults().remove(&key) {
            Some(default) if key != "session_authorization" => {
                self.values.insert(key, default);
            }
            Some(_) => {}
            None => {
                self.values.remove(&key);
            }
        }
    }

    /// A new generation without a change (plans kept under the old one go).
    pub fn renew(&mut self) {
        self.generation = next_generation();
    }

    pub fn reset_all(&mut self) {
        let user = self.values.get("session_authorization").map(|(_, v)| v.clone()).unwrap_or_default();
        *self = Settings::new(&user);
    }
}

/// Milliseconds from a duration setting's text: a number of milliseconds, or a number
/// with one of PostgreSQL's units (`us`, `ms`, `s`, `min`, `h`, `d`), rounded to a
/// millisecond.
fn parse_millis(name: &str, value: &str) -> Result<i64> {
    let text = value.trim().trim_matches('\'').trim();
    let invalid = || EngineError::InvalidParameter {
        message: format!("invalid value for parameter \"{name}\": \"{text}\""),
    };
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = (text[..split].trim(), text[split..].trim());
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let scale = match unit {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(invalid()),
    };
    let millis = (number * scale).round();
    if !(0.0..=i32::MAX as f64).contains(&millis) {
        return Err(EngineError::InvalidParameter {
            message: format!(
                "{millis} ms is outside the valid range for parameter \"{name}\" (0 .. 2147483647)"
            ),
        });
    }
    Ok(millis as i64)
}

/// A duration as PostgreSQL shows it: in the largest unit that divides it.
fn format_millis(millis: i64) -> String {
    if millis == 0 {
        return "0".into();
    }
    let units = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1_000, "s")];
    match units.iter().find(|(size, _)| millis % size == 0) {
        Some((size, unit)) => format!("{}{unit}", millis / size),
        None => format!("{millis}ms"),
    }
}

/// The text of a `SET` value: `'x'`, `x`, `1`, `DEFAULT` (None).
pub fn set_value_text(values: &[SqlExpr]) -> Option<String> {
    let parts: Vec<String> = values
        .iter()
        .map(|v| match v {
            SqlExpr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                Value::Number(n, _) => n.clone(),
                Value::Boolean(b) => if *b { "on" } else { "off" }.to_string(),
                other => other.to_string(),
            },
            SqlExpr::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect();
    if parts.len() == 1 && parts[0].eq_ignore_ascii_case("default") {
        return None;
    }
    Some(parts.join(", "))
}

pub fn variable_name(name: &ObjectName) -> String {
    name.0.iter().map(|p| p.to_string().trim_matches('"').to_string()).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_show_reset() {
        let mut s = Settings::new("alice");
        assert_eq!(s.get("DATESTYLE").unwrap(), "ISO, MDY");
        assert_eq!(s.get("session_authorization").unwrap(), "alice");
        s.set("application_name", "psql").unwrap();
        assert_eq!(s.get("application_name").unwrap(), "psql");
        s.set("client_encoding", "'utf-8'").unwrap();
        assert_eq!(s.get("client_encoding").unwrap(), "UTF8");
        assert!(s.set("server_version", "1").is_err());
        assert!(s.set("datafusion.execution.batch_size", "1").is_err());
        assert!(matches!(s.get("nope"), Err(EngineError::UndefinedParameter { .. })));
        s.set("statement_timeout", "5000").unwrap();
        assert_eq!(s.get("statement_timeout").unwrap(), "5s");
        assert_eq!(s.duration("statement_timeout"), Some(Duration::from_secs(5)));
        s.set("statement_timeout", "'1500ms'").unwrap();
        assert_eq!(s.get("statement_timeout").unwrap(), "1500ms");
        s.set("statement_timeout", "2 min").unwrap();
        assert_eq!(s.get("statement_timeout").unwrap(), "2min");
        assert!(s.set("statement_timeout", "-1").is_err());
        assert!(s.set("statement_timeout", "5 parsecs").is_err());
        s.set("statement_timeout", "0").unwrap();
        assert_eq!(s.duration("statement_timeout"), None);
        s.reset_all();
        assert_eq!(s.get("application_name").unwrap(), "");
        assert_eq!(s.get("session_authorization").unwrap(), "alice");
    }
}

/// Settings `set_config()` calls made during a statement, applied by the session when
/// the statement ends ([`crate::statements::session::Session::apply_set_config`]).
pub type PendingSettings = Arc<Mutex<Vec<(String, String)>>>;

/// `set_config(name, value, is_local)`: checks the value as `SET` would, records it in
/// `pending`, and returns it (pgAdmin sets `bytea_output` this way on connect). It
/// takes effect when its statement ends; `is_local` is taken as `SET LOCAL` is (for the
/// session).
pub fn set_config(pending: PendingSettings) -> ScalarUDF {
    create_udf(
        "set_config",
        vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = args.iter().find_map(|a| match a {
                ColumnarValue::Array(a) => Some(a.len()),
                ColumnarValue::Scalar(_) => None,
            });
            let arrays = args.iter().map(|a| a.to_array(rows.unwrap_or(1))).collect::<DfResult<Vec<_>>>()?;
            let names = arrays[0].as_any().downcast_ref::<StringArray>().expect("coerced to Utf8");
            let values = arrays[1].as_any().downcast_ref::<StringArray>().expect("coerced to Utf8");
            let mut out = Vec::with_capacity(names.len());
            for (name, value) in names.iter().zip(values.iter()) {
                let (Some(name), Some(value)) = (name, value) else {
                    out.push(None);
                    continue;
                };
                let value = Settings::checked(name, value).map_err(EngineError::into_datafusion)?;
                pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((name.to_string(), value.clone()));
                out.push(Some(value));
            }
            let out: ArrayRef = Arc::new(StringArray::from(out));
            Ok(match rows {
                Some(_) => ColumnarValue::Array(out),
                None => ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?),
            })
        }),
    )
}
