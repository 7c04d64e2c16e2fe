//! Policy rules in JSON-Logic (<https://jsonlogic.com>), the rule format the lake
//! platforms' policy engines use: `CREATE POLICY p ON t USING json_logic('{"==":
//! [{"var": "region"}, {"var": "session.region"}]}')`. The rule is compiled once, to
//! SQL, when the policy is created; the session plans that SQL as any policy's (a
//! DataFusion expression the scans and searches take as a pre-filter), so nothing
//! interprets JSON per row. (JSON-Logic crates are interpreters of a rule over one
//! JSON document: the opposite of what a pre-filter needs.)
//!
//! `{"var": "column"}` is a column of the table; `{"var": "session.user"}` (or
//! `session.role`) is `current_user`, and `{"var": "session.name"}` the session's
//! setting `tarn.name` (`SET tarn.region = 'eu'`). Operators: `==` `===` `!=` `!==`
//! `<` `<=` `>` `>=` (three arguments: between), `and`, `or`, `!`, `!!`, `in` (in an
//! array of constants, or a substring of a string), `if`, `+` `-` `*` `/` `%`, `min`,
//! `max`, `cat`. Others (`some`, `all`, `map`, `missing`...) are refused (0A000).

use serde_json::Value;

use crate::error::{EngineError, Result};

/// The rule `text` as a SQL boolean expression.
pub fn to_sql(text: &str) -> Result<String> {
    let rule: Value = serde_json::from_str(text)
        .map_err(|e| EngineError::InvalidParameter { message: format!("json_logic: not JSON: {e}") })?;
    expr(&rule)
}

fn invalid(message: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter { message: format!("json_logic: {}", message.into()) }
}

fn expr(rule: &Value) -> Result<String> {
    match rule {
        Value::Null => Ok("NULL".into()),
        Value::Bool(b) => Ok(if *b { "TRUE" } else { "FALSE" }.into()),
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(literal(s)),
        Value::Array(_) => Err(invalid("an array stands only as the list of `in`")),
        Value::Object(map) => {
            let [(op, args)] = map.iter().collect::<Vec<_>>()[..] else {
                return Err(invalid("a rule is an object of one operator"));
            };
            let args: Vec<&Value> = match args {
                Value::Array(items) => items.iter().collect(),
                single => vec![single],
            };
            operation(op, &args)
        }
    }
}

fn operation(op: &str, args: &[&Value]) -> Result<String> {
    let sql = |i: usize| -> Result<String> {
        args.get(i).map(|a| expr(a)).unwrap_or_else(|| Err(invalid(format!("`{op}` needs more arguments"))))
    };
    let joined = |word: &str| -> Result<String> {
        if args.is_empty() {
            return Err(invalid(format!("`{op}` needs arguments")));
        }
        let parts = args.iter().map(|a| expr(a)).collect::<Result<Vec<_>>>()?;
        Ok(format!("({})", parts.join(&format!(" {word} "))))
    };
    Ok(match op {
        "var" => return var(args),
        "==" | "===" => format!("({} = {})", sql(0)?, sql(1)?),
        "!=" | "!==" => format!("({} <> {})", sql(0)?, sql(1)?),
        "<" | "<=" | ">" | ">=" if args.len() == 3 => {
            let sign = if op.starts_with('<') {
                op
            } else {
                return Err(invalid(format!("`{op}` takes two arguments")));
            };
            format!("({a} {sign} {b} AND {b} {sign} {c})", a = sql(0)?, b = sql(1)?, c = sql(2)?)
        }
        "<" | "<=" | ">" | ">=" => format!("({} {op} {})", sql(0)?, sql(1)?),
        "and" => joined("AND")?,
        "or" => joined("OR")?,
        "!" => format!("(NOT {})", sql(0)?),
        "!!" => format!("(({}) IS TRUE)", sql(0)?),
        "in" => match args.get(1) {
            Some(Value::Array(items)) => {
                let items = items.iter().map(expr).collect::<Result<Vec<_>>>()?;
                if items.is_empty() {
                    "FALSE".into()
                } else {
                    format!("({} IN ({}))", sql(0)?, items.join(", "))
                }
            }
            Some(_) => format!("(strpos({}, {}) > 0)", sql(1)?, sql(0)?),
            None => return Err(invalid("`in` needs two arguments")),
        },
        "if" | "?:" => {
            if args.len() < 2 {
                return Err(invalid("`if` needs a condition and a value"));
            }
            let mut out = String::from("(CASE");
            let mut i = 0;
            while i + 1 < args.len() {
                out.push_str(&format!(" WHEN {} THEN {}", sql(i)?, sql(i + 1)?));
                i += 2;
            }
            if i < args.len() {
                out.push_str(&format!(" ELSE {}", sql(i)?));
            }
            out.push_str(" END)");
            out
        }
        "+" | "*" => joined(op)?,
        "-" if args.len() == 1 => format!("(- {})", sql(0)?),
        "-" | "/" | "%" => format!("({} {op} {})", sql(0)?, sql(1)?),
        "min" | "max" => {
            let parts = args.iter().map(|a| expr(a)).collect::<Result<Vec<_>>>()?;
            format!("{}({})", if op == "min" { "LEAST" } else { "GREATEST" }, parts.join(", "))
        }
        "cat" => {
            let parts = args.iter().map(|a| expr(a)).collect::<Result<Vec<_>>>()?;
            format!("({})", parts.join(" || "))
        }
        other => {
            return Err(EngineError::unsupported(format!(
                "json_logic: the `{other}` operator is not supported"
            )))
        }
    })
}

/// `{"var": "name"}`: a column, or `session.*`.
fn var(args: &[&Value]) -> Result<String> {
    let Some(Value::String(name)) = args.first() else {
        return Err(invalid("`var` takes a name"));
    };
    let default = args.get(1);
    let found = match name.strip_prefix("session.") {
        Some("user" | "role") => "current_user".to_string(),
        // With a default, a setting the session has not set is that default (else an
        // error, as PostgreSQL's current_setting of an unknown name).
        Some(setting) if !setting.is_empty() => {
            let missing_ok = if default.is_some() { ", true" } else { "" };
            format!("current_setting({}{missing_ok})", literal(&format!("tarn.{setting}")))
        }
        _ if name.is_empty() || name.contains('.') => {
            return Err(invalid(format!("`var` \"{name}\" is neither a column nor session.<name>")))
        }
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    };
    Ok(match default {
        Some(default) => format!("COALESCE({found}, {})", expr(default)?),
        None => found,
    })
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_become_sql() {
        assert_eq!(
            to_sql(r#"{"==": [{"var": "region"}, {"var": "session.region"}]}"#).unwrap(),
            "(\"region\" = current_setting('tarn.region'))"
        );
        assert_eq!(
            to_sql(
                r#"{"and": [{"in": [{"var": "tier"}, ["gold", "silver"]]}, {"<": [0, {"var": "n"}, 10]}]}"#
            )
            .unwrap(),
            "((\"tier\" IN ('gold', 'silver')) AND (0 < \"n\" AND \"n\" < 10))"
        );
        assert_eq!(
            to_sql(r#"{"==": [{"var": "owner"}, {"var": "session.user"}]}"#).unwrap(),
            "(\"owner\" = current_user)"
        );
        assert_eq!(to_sql(r#"{"!": {"var": "hidden"}}"#).unwrap(), "(NOT \"hidden\")");
        assert_eq!(
            to_sql(r#"{"==": [{"var": "r"}, {"var": ["session.r", "eu"]}]}"#).unwrap(),
            "(\"r\" = COALESCE(current_setting('tarn.r', true), 'eu'))"
        );
        assert_eq!(to_sql(r#"{"if": [{"var": "a"}, 1, 2]}"#).unwrap(), "(CASE WHEN \"a\" THEN 1 ELSE 2 END)");
        assert_eq!(to_sql(r#"{"==": [{"var": "o'k"}, "it's"]}"#).unwrap(), "(\"o'k\" = 'it''s')");
    }

    #[test]
    fn what_cannot_compile_is_refused() {
        assert!(to_sql("not json").is_err());
        assert!(to_sql(r#"{"some": [{"var": "a"}, {"==": [1, 1]}]}"#).is_err());
        assert!(to_sql(r#"{"==": [1, 2], "!=": [1, 2]}"#).is_err());
        assert!(to_sql(r#"{"var": "a.b"}"#).is_err());
    }
}
