//! Rewrites on the SQL syntax tree, before planning, for what Arrow cannot cast:
//!
//! - `'[1,2,3]'::vector(3)` / `CAST(x AS vector(3))` become `to_vector(x, 3)`;
//! - `oid::regtype` becomes `tarn_regtype_name(oid)`, the type's name;
//! - `'\xdead'::bytea` becomes `bytea_in('\xdead')` (Postgres' hex and escape forms);
//! - in `INSERT ... VALUES`, a string literal aimed at a vector or bytea column gets the
//!   same treatment, and `DEFAULT` becomes the column's default (or NULL);
//! - a timestamp written without seconds (`'2024-01-01 10:00'::timestamp`, or inserted
//!   into a timestamp column) gets `:00`: PostgreSQL takes it, Arrow's parser does not
//!   ([`timestamp_with_seconds`]; comparisons with a timestamp column get the same in
//!   `CatalogLiterals`).

use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::array::{AsArray, BinaryArray};
use arrow::datatypes::DataType;
use datafusion::common::exec_err;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use datafusion::sql::sqlparser::ast::{
    self, visit_expressions_mut, DataType as SqlType, Expr as SqlExpr, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, SetExpr, Statement, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::EngineError;
use crate::search::vector::vector_dims;

/// Where one `INSERT ... VALUES` position goes.
#[derive(Debug, Clone)]
pub struct InsertTarget {
    pub data_type: Option<DataType>,
    /// The column's `DEFAULT` as SQL text.
    pub default: Option<String>,
}

/// `name(args...)` as a syntax tree.
pub(crate) fn call(name: &str, args: Vec<SqlExpr>) -> SqlExpr {
    let args = args.into_iter().map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a))).collect();
    SqlExpr::Function(ast::Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args,
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn number(n: i32) -> SqlExpr {
    SqlExpr::value(Value::Number(n.to_string(), false))
}

fn take(expr: &mut SqlExpr) -> SqlExpr {
    std::mem::replace(expr, SqlExpr::value(Value::Null))
}

/// What casts to array types (`x::real[]`) and parentheses wrap.
fn under_array_casts(expr: &SqlExpr) -> &SqlExpr {
    match expr {
        SqlExpr::Cast { expr, data_type: SqlType::Array(_), .. } | SqlExpr::Nested(expr) => {
            under_array_casts(expr)
        }
        other => other,
    }
}

/// `'{1,2,3}'` (an array's text form) as a vector's text form `[1,2,3]`.
fn array_text(value: &Value) -> Option<String> {
    let Value::SingleQuotedString(s) = value else { return None };
    let inner = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    (!inner.contains(['{', '"'])).then(|| format!("[{inner}]"))
}

fn vector_cast_dims(data_type: &SqlType) -> Option<Option<i32>> {
    match data_type {
        SqlType::Custom(name, modifiers) if name.to_string().to_ascii_lowercase().ends_with("vector") => {
            Some(modifiers.first().and_then(|m| m.trim().parse().ok()))
        }
        _ => None,
    }
}

/// Casts to `vector` and `bytea` become function calls (see the module docs). Casts of
/// arrays to vector stay casts: Arrow casts lists to fixed-size lists itself.
pub fn rewrite_typed_casts(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        strip_pg_catalog(expr);
        distance_call_as_operator(expr);
        if let SqlExpr::TypedString(typed) = expr {
            if matches!(typed.data_type, SqlType::Timestamp(..) | SqlType::TimestampNtz(_)) {
                add_seconds_to(&mut typed.value.value);
            }
        }
        if let SqlExpr::Cast { expr: inner, data_type, .. } = expr {
            if let (Some(None), false) = (vector_cast_dims(data_type), is_string_literal(inner)) {
                match under_array_casts(inner) {
                    // `ARRAY[1,2,3]::vector`, `ARRAY[...]::real[]::vector`: the
                    // constructor says the dimension.
                    SqlExpr::Array(array) => {
                        let dims = array.elem.len();
                        *data_type = SqlType::Custom(
                            ObjectName::from(vec![Ident::new("vector")]),
                            vec![dims.to_string()],
                        );
                    }
                    // `'{1,2,3}'::real[]::vector`: array text, read as the vector text.
                    SqlExpr::Value(v) if array_text(&v.value).is_some() => {
                        let text = array_text(&v.value).expect("checked");
                        **inner = SqlExpr::value(Value::SingleQuotedString(text));
                    }
                    // `$1::vector`, `col::vector`: no dimension to cast to; the value is
                    // typed where it is used (a vector column, the other side of `<->`).
                    _ => {
                        *expr = take(inner);
                        return ControlFlow::<()>::Continue(());
                    }
                }
            }
            if let Some(dims) = vector_cast_dims(data_type) {
                // `$1::vector(3)` stays a cast: the parameter takes the vector type.
                let is_parameter =
                    matches!(inner.as_ref(), SqlExpr::Value(v) if matches!(v.value, Value::Placeholder(_)));
                if !matches!(under_array_casts(inner), SqlExpr::Array(_)) && !is_parameter {
                    let mut args = vec![take(inner)];
                    args.extend(dims.map(number));
                    *expr = call("to_vector", args);
                }
            } else if matches!(data_type, SqlType::Bytea) && is_string_literal(inner) {
                *expr = call("bytea_in", vec![take(inner)]);
            } else if matches!(data_type, SqlType::Timestamp(..) | SqlType::TimestampNtz(_)) {
                add_seconds(inner);
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `pg_catalog.version()`: Postgres' functions live in `pg_catalog`, ours have no schema.
fn strip_pg_catalog(expr: &mut SqlExpr) {
    if let SqlExpr::Function(f) = expr {
        if let [ast::ObjectNamePart::Identifier(schema), _] = f.name.0.as_slice() {
            if schema.value.eq_ignore_ascii_case("pg_catalog") {
                f.name.0.remove(0);
            }
        }
    }
}

/// pgvector's distance functions with a text literal or a parameter for one vector
/// (`l2_distance(embedding, $1)`) become their operators, whose planner gives the text
/// or parameter the vector type of the other side, as pgvector's signatures do.
fn distance_call_as_operator(expr: &mut SqlExpr) {
    let SqlExpr::Function(f) = expr else { return };
    let name = match f.name.0.as_slice() {
        [ast::ObjectNamePart::Identifier(i)] => i.value.to_ascii_lowercase(),
        _ => return,
    };
    let (op, negate) = match name.as_str() {
        "l2_distance" => (ast::BinaryOperator::LtDashGt, false),
        "cosine_distance" => (ast::BinaryOperator::Spaceship, false),
        "l1_distance" => (ast::BinaryOperator::Custom("<+>".into()), false),
        "vector_negative_inner_product" => (ast::BinaryOperator::Custom("<#>".into()), false),
        "inner_product" => (ast::BinaryOperator::Custom("<#>".into()), true),
        _ => return,
    };
    let FunctionArguments::List(list) = &f.args else { return };
    let args: Vec<&SqlExpr> = list
        .args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect();
    let [left, right] = args.as_slice() else { return };
    let untyped = |e: &SqlExpr| {
        is_string_literal(e) || matches!(e, SqlExpr::Value(v) if matches!(v.value, Value::Placeholder(_)))
    };
    // One side must say what the vector type is.
    if untyped(left) == untyped(right) {
        return;
    }
    let operator = SqlExpr::Nested(Box::new(SqlExpr::BinaryOp {
        left: Box::new((*left).clone()),
        op,
        right: Box::new((*right).clone()),
    }));
    *expr = if negate {
        SqlExpr::UnaryOp { op: ast::UnaryOperator::Minus, expr: Box::new(operator) }
    } else {
        operator
    };
}

/// A string literal of a timestamp without seconds, given them.
fn add_seconds(expr: &mut SqlExpr) {
    if let SqlExpr::Value(v) = expr {
        add_seconds_to(&mut v.value);
    }
}

fn add_seconds_to(value: &mut Value) {
    if let Value::SingleQuotedString(text) = value {
        if let Some(with) = timestamp_with_seconds(text) {
            *text = with;
        }
    }
}

/// `YYYY-MM-DD HH:MM` (or with `T`), perhaps followed by a zone, with `:00` seconds;
/// `None` for any other text.
pub(crate) fn timestamp_with_seconds(text: &str) -> Option<String> {
    let text = text.trim();
    let b = text.as_bytes();
    let digits =
        |range: std::ops::Range<usize>| b.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 16
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b' ' | b'T')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16);
    match b.get(16) {
        _ if !shape => None,
        None | Some(b'+' | b'-' | b'Z' | b'z' | b' ') => Some(format!("{}:00{}", &text[..16], &text[16..])),
        Some(_) => None,
    }
}

fn is_string_literal(expr: &SqlExpr) -> bool {
    matches!(expr, SqlExpr::Value(v) if matches!(v.value, Value::SingleQuotedString(_) | Value::EscapedStringLiteral(_)))
}

/// Rewrites the rows of `INSERT ... VALUES` for their target columns.
pub fn rewrite_insert_values(source: &mut ast::Query, targets: &[InsertTarget]) {
    let SetExpr::Values(values) = source.body.as_mut() else { return };
    for row in &mut values.rows {
        for (value, target) in row.content.iter_mut().zip(targets) {
            let is_default = matches!(value, SqlExpr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"));
            if is_default {
                *value = target
                    .default
                    .as_deref()
                    .and_then(|sql| {
                        Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).ok()?.parse_expr().ok()
                    })
                    .unwrap_or_else(|| SqlExpr::value(Value::Null));
                continue;
            }
            if !is_string_literal(value) {
                continue;
            }
            match &target.data_type {
                Some(t) if vector_dims(t).is_some() => {
                    let dims = vector_dims(t).expect("checked");
                    *value = call("to_vector", vec![take(value), number(dims)]);
                }
                Some(DataType::Binary) => *value = call("bytea_in", vec![take(value)]),
                Some(DataType::Timestamp(..)) => add_seconds(value),
                _ => {}
            }
        }
    }
}

/// `bytea_in(text)`: Postgres' bytea input, hex (`\xdeadbeef`) or escape (`a\000b`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ByteaIn {
    signature: Signature,
}

impl Default for ByteaIn {
    fn default() -> Self {
        Self { signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable) }
    }
}

pub fn parse_bytea(text: &str) -> Result<Vec<u8>, EngineError> {
    let invalid =
        || EngineError::InvalidText { message: format!("invalid input syntax for type bytea: \"{text}\"") };
    if let Some(hex) = text.strip_prefix("\\x") {
        let hex: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if hex.len() % 2 != 0 {
            return Err(invalid());
        }
        return hex
            .chunks(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .ok_or_else(invalid)
            })
            .collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal =
                text.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok()).ok_or_else(invalid)?;
            out.push(octal);
            i += 4;
        }
    }
    Ok(out)
}

impl ScalarUDFImpl for ByteaIn {
    fn name(&self) -> &str {
        "bytea_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Binary)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let Some(text) = input.as_string_opt::<i32>() else { return exec_err!("bytea_in takes text") };
        let out: BinaryArray = text
            .iter()
            .map(|t| t.map(parse_bytea).transpose())
            .collect::<Result<Vec<_>, _>>()
            .map_err(EngineError::into_datafusion)?
            .into_iter()
            .collect();
        crate::functions::like_input(&args.args[0], Arc::new(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_without_seconds_get_them() {
        assert_eq!(timestamp_with_seconds("2024-01-01 10:00").as_deref(), Some("2024-01-01 10:00:00"));
        assert_eq!(
            timestamp_with_seconds(" 2024-01-01T10:00+02 ").as_deref(),
            Some("2024-01-01T10:00:00+02")
        );
        assert_eq!(
            timestamp_with_seconds("2024-01-01 10:00 UTC").as_deref(),
            Some("2024-01-01 10:00:00 UTC")
        );
        for unchanged in ["2024-01-01 10:00:05", "2024-01-01", "10:00", "2024-01-01 1:00", "soon"] {
            assert_eq!(timestamp_with_seconds(unchanged), None, "{unchanged}");
        }
    }

    #[test]
    fn bytea_input_forms() {
        assert_eq!(parse_bytea("\\xdeadBEEF").unwrap(), vec![0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(parse_bytea("a\\000b\\\\").unwrap(), vec![b'a', 0, b'b', b'\\']);
        assert!(parse_bytea("\\xabc").is_err());
    }
}
