//! `CREATE INDEX ... USING hnsw|ivfflat|ivf_pq`, `DROP INDEX`, and the short form
//! `ALTER TABLE t ADD VECTOR INDEX [name] ON col` (rewritten by the parser into the
//! `CREATE INDEX` it means), to storage's [`IndexDef`].

use datafusion::sql::sqlparser::ast::{self, CreateIndex, Expr as SqlExpr, IndexType, Value};
use tarn_storage::vector_index::{IndexDef, IndexMethod, Metric};
use tarn_storage::{StorageError, TableName, Warehouse};

use crate::error::{EngineError, Result};
use crate::statements::ddl;

/// The index a `CREATE INDEX` declares, with the table it is on.
pub fn index_def(create: &CreateIndex, warehouse: &Warehouse) -> Result<(TableName, IndexDef)> {
    let table = ddl::table_name(&create.table_name)?;
    let method = match &create.using {
        Some(IndexType::Custom(name)) => match name.value.to_ascii_lowercase().as_str() {
            "hnsw" => IndexMethod::Hnsw,
            "ivfflat" => IndexMethod::IvfFlat,
            "ivf_pq" | "ivfpq" => IndexMethod::IvfPq,
            other => return Err(EngineError::UndefinedObject { message: format!("access method \"{other}\" does not exist") }),
        },
        Some(other) => {
            return Err(EngineError::unsupported(format!(
                "index method {other} is not supported: Tarn indexes vectors (USING hnsw, ivfflat or ivf_pq)"
            )))
        }
        None => return Err(EngineError::unsupported(
            "indexes other than vector indexes are not supported: name the method (USING hnsw, ivfflat or ivf_pq)",
        )),
    };
    if create.unique || create.predicate.is_some() || !create.include.is_empty() {
        return Err(EngineError::unsupported("UNIQUE, partial and INCLUDE vector indexes are not supported"));
    }
    let [column] = create.columns.as_slice() else {
        return Err(EngineError::unsupported("a vector index covers exactly one column"));
    };
    let column_name = match &column.column.expr {
        SqlExpr::Identifier(ident) => ddl::ident(ident),
        other => {
            return Err(EngineError::unsupported(format!(
                "indexes on expressions ({other}) are not supported"
            )))
        }
    };
    let metric = match &column.operator_class {
        None => Metric::L2,
        Some(class) => match class.to_string().to_ascii_lowercase().trim_start_matches("public.") {
            "vector_l2_ops" => Metric::L2,
            "vector_cosine_ops" => Metric::Cosine,
            "vector_ip_ops" => Metric::InnerProduct,
            "vector_l1_ops" => {
                return Err(EngineError::unsupported(
                    "vector_l1_ops indexes are not supported (Lance's indexes have no L1 distance); <+> searches exactly",
                ))
            }
            other => {
                return Err(EngineError::UndefinedObject {
                    message: format!("operator class \"{other}\" does not exist for access method \"{}\"", method.name()),
                })
            }
        },
    };
    let name = match &create.name {
        Some(name) => ddl::table_name(name)?.table,
        None => default_name(warehouse, &table, &column_name),
    };
    let mut def = IndexDef::new(name, column_name, method, metric);
    for option in &create.with {
        let (key, value) = option_pair(option)?;
        match (method, key.as_str()) {
            (IndexMethod::Hnsw, "m") => def.m = bounded(&key, value, 2, 100)?,
            (IndexMethod::Hnsw, "ef_construction") => def.ef_construction = bounded(&key, value, 4, 1000)?,
            (IndexMethod::IvfFlat | IndexMethod::IvfPq, "lists") => {
                def.lists = Some(bounded(&key, value, 1, 32_768)?)
            }
            _ => {
                return Err(EngineError::InvalidParameter {
                    message: format!("unrecognized parameter \"{key}\" for {} indexes", method.name()),
                })
            }
        }
    }
    if method == IndexMethod::Hnsw && def.ef_construction < 2 * def.m {
        return Err(EngineError::InvalidParameter {
            message: "ef_construction must be greater than or equal to 2 * m".into(),
        });
    }
    Ok((table, def))
}

/// Postgres' default name: `<table>_<column>_idx`, numbered if taken.
fn default_name(warehouse: &Warehouse, table: &TableName, column: &str) -> String {
    let base = format!("{}_{}_idx", table.table, column);
    (0..)
        .map(|n| if n == 0 { base.clone() } else { format!("{base}{n}") })
        .find(|candidate| find_index(warehouse, &table.schema, candidate).is_none())
        .expect("some name is free")
}

/// The table of schema `schema` that has index `name`.
pub fn find_index(
    warehouse: &Warehouse,
    schema: &str,
    name: &str,
) -> Option<std::sync::Arc<tarn_storage::Table>> {
    warehouse
        .all_tables()
        .into_iter()
        .find(|t| t.name().schema == schema && t.snapshot().manifest.indexes.iter().any(|d| d.name == name))
}

/// Index names share the namespace of relations, per schema.
pub fn check_name_free(warehouse: &Warehouse, table: &TableName, name: &str) -> Result<()> {
    let relation = TableName::new(&table.schema, name);
    if warehouse.table(&relation).is_some() || find_index(warehouse, &table.schema, name).is_some() {
        return Err(StorageError::IndexExists { name: name.to_string() }.into());
    }
    Ok(())
}

fn option_pair(option: &SqlExpr) -> Result<(String, i64)> {
    let SqlExpr::BinaryOp { left, op: ast::BinaryOperator::Eq, right } = option else {
        return Err(EngineError::syntax(format!("invalid index option {option}")));
    };
    let key = match left.as_ref() {
        SqlExpr::Identifier(i) => i.value.to_ascii_lowercase(),
        other => return Err(EngineError::syntax(format!("invalid index option {other}"))),
    };
    let value = match right.as_ref() {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<i64>().ok(),
            Value::SingleQuotedString(s) => s.parse::<i64>().ok(),
            _ => None,
        },
        _ => None,
    };
    let value = value.ok_or_else(|| EngineError::InvalidParameter {
        message: format!("invalid value for parameter \"{key}\": \"{right}\""),
    })?;
    Ok((key, value))
}

fn bounded(key: &str, value: i64, min: i64, max: i64) -> Result<usize> {
    if !(min..=max).contains(&value) {
        return Err(EngineError::InvalidParameter {
            message: format!("value {value} out of bounds for option \"{key}\" (valid range {min} to {max})"),
        });
    }
    Ok(value as usize)
}
