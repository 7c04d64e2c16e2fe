//! Data definition: `CREATE TABLE` (with `USING`, `WITH`, keys, defaults, identities),
//! `CREATE TABLE AS`, `DROP TABLE`, `ALTER TABLE ... ADD COLUMN`, `CREATE SCHEMA`, turned
//! from SQL syntax into storage's [`TableDef`]; `CREATE SEQUENCE` into its
//! [`SequenceDef`].

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use datafusion::sql::sqlparser::ast::{
    ColumnDef, ColumnOption, CreateTable, CreateTableOptions, Expr as SqlExpr, GeneratedAs,
    GeneratedExpressionMode, Ident, ObjectName, ObjectNamePart, SequenceOptions, SqlOption, TableConstraint,
    Value,
};
use tarn_storage::sequence::{SequenceDef, SequenceOptions as SequenceDefaults, SequenceType};
use tarn_storage::table_def::{DEFAULT_BUCKET_COUNT, TABLE_OPTIONS};
use tarn_storage::{BaseFormat, ColumnMeta, Identity, TableDef, TableName};

use crate::error::{EngineError, Result};
use crate::types::column_type;

pub const DEFAULT_SCHEMA: &str = "public";

/// An identifier as Postgres folds it: unquoted to lower case, quoted as written.
pub fn ident(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// `[schema.]table` with the schema defaulting to `public`.
pub fn table_name(name: &ObjectName) -> Result<TableName> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(i) => Ok(ident(i)),
            other => Err(EngineError::syntax(format!("unexpected name part {other}"))),
        })
        .collect::<Result<_>>()?;
    match parts.as_slice() {
        [table] => Ok(TableName::new(DEFAULT_SCHEMA, table)),
        [schema, table] => Ok(TableName::new(schema, table)),
        [_database, schema, table] => Ok(TableName::new(schema, table)),
        _ => Err(EngineError::syntax(format!("improper qualified name: {name}"))),
    }
}

/// The table definition of a `CREATE TABLE` with a column list.
pub fn table_def(create: &CreateTable, format: Option<&str>) -> Result<TableDef> {
    let name = table_name(&create.name)?;
    if create.columns.is_empty() {
        return Err(EngineError::unsupported("a table needs at least one column"));
    }
    let mut primary_key: Vec<String> = Vec::new();
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for column in &create.columns {
        let (field, meta, is_key) = column_def(column)?;
        if fields.iter().any(|f: &Field| f.name() == field.name()) {
            return Err(EngineError::DataException {
                message: format!("column \"{}\" specified more than once", field.name()),
            });
        }
        if is_key {
            if !primary_key.is_empty() {
                return Err(multiple_keys(&name));
            }
            primary_key.push(field.name().clone());
        }
        fields.push(field);
        columns.push(meta);
    }
    for constraint in &create.constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) => {
                if !primary_key.is_empty() {
                    return Err(multiple_keys(&name));
                }
                for column in &pk.columns {
                    match &column.column.expr {
                        SqlExpr::Identifier(i) => primary_key.push(ident(i)),
                        other => {
                            return Err(EngineError::unsupported(format!(
                                "primary keys on expressions ({other}) are not supported"
                            )))
                        }
                    }
                }
            }
            other => {
                return Err(EngineError::unsupported(format!(
                    "table constraint {other} is not supported yet (only PRIMARY KEY)"
                )))
            }
        }
    }
    // Key columns are NOT NULL, as in Postgres.
    for key in &primary_key {
        let Some(i) = fields.iter().position(|f| f.name() == key) else {
            return Err(EngineError::UndefinedColumn { column: key.clone() });
        };
        fields[i] = fields[i].clone().with_nullable(false);
    }
    let format = match format {
        None => BaseFormat::Lance,
        Some(f) => BaseFormat::parse(f).ok_or_else(|| {
            EngineError::unsupported(format!("table format \"{f}\" is not supported (use lance or parquet)"))
        })?,
    };
    let (bucket_count, options) = table_options(&create.table_options)?;
    Ok(TableDef {
        name,
        schema: Arc::new(Schema::new(fields)),
        columns,
        primary_key,
        format,
        bucket_count,
        options,
        comments: Default::default(),
    })
}

fn multiple_keys(name: &TableName) -> EngineError {
    EngineError::DataException {
        message: format!("multiple primary keys for table \"{name}\" are not allowed"),
    }
}

/// One column: its field, what the field cannot say, and whether it is the key.
pub fn column_def(column: &ColumnDef) -> Result<(Field, ColumnMeta, bool)> {
    let name = ident(&column.name);
    let ty = column_type(&column.data_type)?;
    let mut nullable = true;
    let mut is_key = false;
    let mut meta = ColumnMeta { name: name.clone(), ..Default::default() };
    if ty.serial {
        meta.identity = Some(Identity { start: 1, increment: 1 });
        nullable = false;
    }
    for option in &column.options {
        match &option.option {
            ColumnOption::Null => nullable = true,
            ColumnOption::NotNull => nullable = false,
            ColumnOption::Default(expr) => meta.default = Some(expr.to_string()),
            ColumnOption::PrimaryKey(_) => {
                is_key = true;
                nullable = false;
            }
            ColumnOption::Generated {
                generation_expr: Some(expr),
                generation_expr_mode,
                generated_as: GeneratedAs::ExpStored,
                ..
            } => {
                if generation_expr_mode != &Some(GeneratedExpressionMode::Stored) {
                    return Err(EngineError::unsupported(
                        "virtual generated columns are not supported: use GENERATED ALWAYS AS (...) STORED",
                    ));
                }
                meta.generated = Some(expr.to_string());
            }
            ColumnOption::Generated { generated_as, sequence_options, generation_expr: None, .. }
                if matches!(generated_as, GeneratedAs::Always | GeneratedAs::ByDefault) =>
            {
                if !ty.data_type.is_integer() {
                    return Err(EngineError::DataException {
                        message: format!("identity column type must be smallint, integer, or bigint"),
                    });
                }
                let mut identity = Identity { start: 1, increment: 1 };
                for option in sequence_options.iter().flatten() {
                    match option {
                        SequenceOptions::StartWith(e, _) => identity.start = integer_literal(e)?,
                        SequenceOptions::IncrementBy(e, _) => identity.increment = integer_literal(e)?,
                        _ => {}
                    }
                }
                if identity.increment == 0 {
                    return Err(EngineError::DataException { message: "INCREMENT must not be zero".into() });
                }
                meta.identity = Some(identity);
                nullable = false;
            }
            other => {
                return Err(EngineError::unsupported(format!("column option {other} is not supported yet")))
            }
        }
    }
    Ok((ty.field(&name, nullable), meta, is_key))
}

fn integer_literal(expr: &SqlExpr) -> Result<i64> {
    let text = match expr {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n.clone(),
            _ => String::new(),
        },
        SqlExpr::UnaryOp { op, expr } if op.to_string() == "-" => format!("-{}", integer_literal(expr)?),
        _ => String::new(),
    };
    text.parse().map_err(|_| EngineError::syntax(format!("expected an integer, found {expr}")))
}

/// `CREATE SEQUENCE name [AS type] [INCREMENT [BY] n] [MINVALUE n | NO MINVALUE]
/// [MAXVALUE n | NO MAXVALUE] [START [WITH] n] [CACHE n] [[NO] CYCLE]`.
pub fn sequence_def(
    name: &ObjectName,
    data_type: Option<&datafusion::sql::sqlparser::ast::DataType>,
    options: &[SequenceOptions],
) -> Result<SequenceDef> {
    use datafusion::sql::sqlparser::ast::DataType as SqlType;
    let data_type = match data_type {
        None => SequenceType::Bigint,
        Some(SqlType::SmallInt(_) | SqlType::Int2(_)) => SequenceType::Smallint,
        Some(SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_)) => SequenceType::Integer,
        Some(SqlType::BigInt(_) | SqlType::Int8(_)) => SequenceType::Bigint,
        Some(other) => {
            return Err(EngineError::InvalidParameter {
                message: "sequence type must be smallint, integer, or bigint".to_string()
                    + &format!(" (not {other})"),
            })
        }
    };
    let mut given = SequenceDefaults::default();
    for option in options {
        match option {
            SequenceOptions::IncrementBy(e, _) => given.increment = Some(integer_literal(e)?),
            SequenceOptions::MinValue(e) => given.min_value = e.as_ref().map(integer_literal).transpose()?,
            SequenceOptions::MaxValue(e) => given.max_value = e.as_ref().map(integer_literal).transpose()?,
            SequenceOptions::StartWith(e, _) => given.start = Some(integer_literal(e)?),
            SequenceOptions::Cache(e) => given.cache = Some(integer_literal(e)?),
            SequenceOptions::Cycle(no) => given.cycle = !no,
        }
    }
    Ok(SequenceDef::new(table_name(name)?, data_type, given)?)
}

/// Splits `WITH (...)` into the bucket count and the other known options.
pub fn table_options(options: &CreateTableOptions) -> Result<(u32, BTreeMap<String, String>)> {
    let list = match options {
        CreateTableOptions::None => return Ok((DEFAULT_BUCKET_COUNT, BTreeMap::new())),
        CreateTableOptions::With(list) => list,
        other => return Err(EngineError::unsupported(format!("table options {other} are not supported"))),
    };
    let mut bucket_count = DEFAULT_BUCKET_COUNT;
    let mut rest = BTreeMap::new();
    for option in list {
        let SqlOption::KeyValue { key, value } = option else {
            return Err(EngineError::syntax(format!("expected key = value, found {option}")));
        };
        let key = ident(key);
        let text = match value {
            SqlExpr::Value(v) => match &v.value {
                Value::Number(n, _) => n.clone(),
                Value::SingleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            SqlExpr::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        };
        if key == "bucket_count" {
            bucket_count = text.parse::<u32>().ok().filter(|n| (1..=1024).contains(n)).ok_or_else(|| {
                EngineError::InvalidParameter {
                    message: format!("bucket_count must be an integer from 1 to 1024, not {text}"),
                }
            })?;
        } else if TABLE_OPTIONS.contains(&key.as_str()) {
            rest.insert(key, text);
        } else {
            return Err(EngineError::InvalidParameter {
                message: format!(
                    "unrecognized table option \"{key}\" (known: bucket_count, {})",
                    TABLE_OPTIONS.join(", ")
                ),
            });
        }
    }
    Ok((bucket_count, rest))
}

/// The definition of a table made by `CREATE TABLE AS`: the query's columns, all nullable.
pub fn table_def_from_schema(
    name: TableName,
    schema: &Schema,
    format: Option<&str>,
    options: &CreateTableOptions,
) -> Result<TableDef> {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), f.data_type().clone(), true).with_metadata(f.metadata().clone()))
        .collect();
    let columns =
        fields.iter().map(|f| ColumnMeta { name: f.name().clone(), ..Default::default() }).collect();
    let format = match format {
        None => BaseFormat::Lance,
        Some(f) => BaseFormat::parse(f)
            .ok_or_else(|| EngineError::unsupported(format!("table format \"{f}\" is not supported")))?,
    };
    let (bucket_count, options) = table_options(options)?;
    Ok(TableDef {
        name,
        schema: Arc::new(Schema::new(fields)),
        columns,
        primary_key: vec![],
        format,
        bucket_count,
        options,
        comments: Default::default(),
    })
}
