//! `CREATE INDEX ... USING hnsw|ivfflat|ivf_pq|bm25|btree|hash|bitmap|brin|bloom`,
//! `DROP INDEX`, and the short form
//! `ALTER TABLE t ADD VECTOR INDEX [name] ON col` (rewritten by the parser into the
//! `CREATE INDEX` it means), to storage's [`IndexDef`], [`TextIndexDef`] and
//! [`ScalarIndexDef`] (PostgreSQL's B-tree, hash and BRIN names, and `bitmap` and
//! `bloom`, on Lance's scalar indexes; no `USING` is a B-tree, as in PostgreSQL).
//!
//! A bm25 index's options apply to every column (`tokenizer`, `stemmer`, `stopwords`,
//! `lowercase`, `ascii_folding`, `min_gram`, `max_gram`, `prefix_only`) or, prefixed
//! with a column's name and a dot (`"title.tokenizer" = 'raw'`), to that column.

use datafusion::sql::sqlparser::ast::{self, CreateIndex, Expr as SqlExpr, IndexType, Value};
use tarn_storage::scalar_index::{ScalarIndexDef, ScalarKind};
use tarn_storage::text_index::{TextColumn, TextIndexDef, Tokenizer, TokenizerKind};
use tarn_storage::vector_index::{IndexDef, IndexMethod, Metric};
use tarn_storage::{StorageError, TableName, Warehouse};

use crate::error::{EngineError, Result};
use crate::statements::ddl;

/// An index a `CREATE INDEX` declares.
pub enum Declared {
    Vector(IndexDef),
    Text(TextIndexDef),
    Scalar(ScalarIndexDef),
}

impl Declared {
    pub fn name(&self) -> &str {
        match self {
            Declared::Vector(def) => &def.name,
            Declared::Text(def) => &def.name,
            Declared::Scalar(def) => &def.name,
        }
    }
}

/// The scalar index kind a `CREATE INDEX` names (`USING btree | hash | bitmap | brin
/// | bloom`, or no `USING`: PostgreSQL's default, a B-tree).
fn scalar_kind(create: &CreateIndex) -> Option<ScalarKind> {
    match &create.using {
        None => Some(ScalarKind::BTree),
        Some(IndexType::BTree) => Some(ScalarKind::BTree),
        Some(IndexType::Hash) => Some(ScalarKind::BTree),
        Some(IndexType::BRIN) => Some(ScalarKind::ZoneMap),
        Some(IndexType::Bloom) => Some(ScalarKind::Bloom),
        Some(IndexType::Custom(name)) => ScalarKind::from_method(&name.value),
        Some(_) => None,
    }
}

/// Whether a `CREATE INDEX` is `USING bm25`.
fn is_bm25(create: &CreateIndex) -> bool {
    matches!(&create.using, Some(IndexType::Custom(name)) if name.value.eq_ignore_ascii_case("bm25"))
}

/// The index a `CREATE INDEX` declares, with the table it is on.
pub fn index_def(create: &CreateIndex, warehouse: &Warehouse) -> Result<(TableName, Declared)> {
    if is_bm25(create) {
        let (table, def) = text_index_def(create, warehouse)?;
        return Ok((table, Declared::Text(def)));
    }
    if let Some(kind) = scalar_kind(create) {
        let (table, def) = scalar_index_def(create, kind, warehouse)?;
        return Ok((table, Declared::Scalar(def)));
    }
    let (table, def) = vector_index_def(create, warehouse)?;
    Ok((table, Declared::Vector(def)))
}

/// The columns an index is declared on (named columns only, at least one); `what`
/// names the index in the error for none.
fn column_names(create: &CreateIndex, what: &str) -> Result<Vec<String>> {
    let columns = create
        .columns
        .iter()
        .map(|column| match &column.column.expr {
            SqlExpr::Identifier(ident) => Ok(ddl::ident(ident)),
            other => {
                Err(EngineError::unsupported(format!("indexes on expressions ({other}) are not supported")))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    if columns.is_empty() {
        return Err(EngineError::syntax(format!("{what} needs at least one column")));
    }
    Ok(columns)
}

/// `CREATE INDEX [name] ON t USING bm25 (col, ...) [WITH (...)]`.
fn text_index_def(create: &CreateIndex, warehouse: &Warehouse) -> Result<(TableName, TextIndexDef)> {
    let table = ddl::table_name(&create.table_name)?;
    if create.unique || create.predicate.is_some() || !create.include.is_empty() {
        return Err(EngineError::unsupported("UNIQUE, partial and INCLUDE bm25 indexes are not supported"));
    }
    let columns = column_names(create, "a bm25 index")?;
    // Options for all columns first, then per column.
    let mut shared = Vec::new();
    let mut per_column: Vec<(String, String, String)> = Vec::new();
    for option in &create.with {
        let (key, value) = text_option(option)?;
        match key.split_once('.') {
            Some((column, key)) => {
                if !columns.iter().any(|c| c == column) {
                    return Err(EngineError::InvalidParameter {
                        message: format!("option \"{column}.{key}\" names a column the index does not cover"),
                    });
                }
                per_column.push((column.to_string(), key.to_string(), value));
            }
            None => shared.push((key, value)),
        }
    }
    let mut defs = Vec::with_capacity(columns.len());
    for column in &columns {
        let mut options: Vec<(String, String)> = shared.clone();
        options.extend(
            per_column.iter().filter(|(c, _, _)| c == column).map(|(_, k, v)| (k.clone(), v.clone())),
        );
        defs.push(TextColumn::new(column.clone(), tokenizer(&options)?));
    }
    let name = match &create.name {
        Some(name) => ddl::table_name(name)?.table,
        None => default_name(warehouse, &table, &format!("{}_bm25", columns.join("_"))),
    };
    Ok((table, TextIndexDef { name, columns: defs, segments: Vec::new() }))
}

/// `CREATE INDEX [name] ON t [USING btree | hash | bitmap | brin | bloom] (col, ...)
/// [WITH (rows_per_zone = n, false_positive_rate = p)]`.
fn scalar_index_def(
    create: &CreateIndex,
    kind: ScalarKind,
    warehouse: &Warehouse,
) -> Result<(TableName, ScalarIndexDef)> {
    let table = ddl::table_name(&create.table_name)?;
    if create.unique {
        return Err(EngineError::unsupported(
            "UNIQUE indexes are not supported: declare a PRIMARY KEY (its uniqueness is enforced)",
        ));
    }
    if create.predicate.is_some() || !create.include.is_empty() {
        return Err(EngineError::unsupported("partial and INCLUDE indexes are not supported"));
    }
    if create.columns.iter().any(|c| c.operator_class.is_some()) {
        return Err(EngineError::unsupported("operator classes of scalar indexes are not supported"));
    }
    let columns = column_names(create, "an index")?;
    let name = match &create.name {
        Some(name) => ddl::table_name(name)?.table,
        None => default_name(warehouse, &table, &columns.join("_")),
    };
    let mut def = ScalarIndexDef::new(name, columns, kind);
    let zoned = matches!(kind, ScalarKind::ZoneMap | ScalarKind::Bloom);
    for option in &create.with {
        let (key, value) = text_option(option)?;
        let invalid = || EngineError::InvalidParameter {
            message: format!("invalid value for parameter \"{key}\": \"{value}\""),
        };
        match key.as_str() {
            "rows_per_zone" if zoned => {
                def.rows_per_zone = Some(
                    value.parse::<u64>().ok().filter(|n| (64..=1 << 20).contains(n)).ok_or_else(invalid)?,
                )
            }
            "false_positive_rate" if kind == ScalarKind::Bloom => {
                def.false_positive_rate =
                    Some(value.parse::<f64>().ok().filter(|p| *p > 0.0 && *p < 1.0).ok_or_else(invalid)?)
            }
            _ => {
                return Err(EngineError::InvalidParameter {
                    message: format!("unrecognized parameter \"{key}\" for {} indexes", kind.method()),
                })
            }
        }
    }
    Ok((table, def))
}

/// A column's tokenizer from its options.
fn tokenizer(options: &[(String, String)]) -> Result<Tokenizer> {
    let mut tokenizer = Tokenizer::default();
    let (mut min, mut max, mut prefix_only) = (2, 3, false);
    let mut ngram = false;
    let invalid = |key: &str, value: &str| EngineError::InvalidParameter {
        message: format!("invalid value for parameter \"{key}\": \"{value}\""),
    };
    let flag = |key: &str, value: &str| match value.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        _ => Err(invalid(key, value)),
    };
    let number = |key: &str, value: &str| value.parse::<usize>().map_err(|_| invalid(key, value));
    for (key, value) in options {
        match key.as_str() {
            "tokenizer" => match value.to_ascii_lowercase().as_str() {
                "default" | "simple" => tokenizer.kind = TokenizerKind::Default,
                "whitespace" => tokenizer.kind = TokenizerKind::Whitespace,
                "raw" | "keyword" => tokenizer.kind = TokenizerKind::Raw,
                "ngram" => ngram = true,
                "en_stem" => {
                    tokenizer.kind = TokenizerKind::Default;
                    tokenizer.stemmer = Some("english".into());
                }
                "chinese" | "jieba" => tokenizer.kind = TokenizerKind::Chinese,
                other => match other.strip_suffix("_stem") {
                    Some(language) => {
                        tokenizer.stemmer = Some(stemmer_language(language)?);
                    }
                    None => {
                        return Err(EngineError::InvalidParameter {
                            message: format!(
                                "unknown tokenizer \"{other}\" (default, whitespace, raw, ngram, chinese, en_stem, <language>_stem)"
                            ),
                        })
                    }
                },
            },
            "stemmer" => tokenizer.stemmer = Some(stemmer_language(value)?),
            "stopwords" => tokenizer.stopwords = Some(stemmer_language(value)?),
            "lowercase" => tokenizer.lowercase = flag(key, value)?,
            "ascii_folding" => tokenizer.ascii_folding = flag(key, value)?,
            "min_gram" => min = number(key, value)?,
            "max_gram" => max = number(key, value)?,
            "prefix_only" => prefix_only = flag(key, value)?,
            other => {
                return Err(EngineError::InvalidParameter {
                    message: format!("unrecognized parameter \"{other}\" for bm25 indexes"),
                })
            }
        }
    }
    if ngram {
        tokenizer.kind = TokenizerKind::Ngram { min, max, prefix_only };
    }
    tokenizer.analyzer().map_err(|e| EngineError::InvalidParameter { message: e.to_string() })?;
    Ok(tokenizer)
}

fn stemmer_language(name: &str) -> Result<String> {
    let name = name.to_ascii_lowercase();
    let name = match name.as_str() {
        "en" => "english".to_string(),
        _ => name,
    };
    if tarn_storage::text_index::LANGUAGES.iter().any(|(n, _)| *n == name) {
        Ok(name)
    } else {
        Err(EngineError::InvalidParameter {
            message: format!(
                "unknown language \"{name}\" (one of {})",
                tarn_storage::text_index::LANGUAGES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

/// `key = value` of a bm25 index: a key (maybe `column.key`), a text value.
fn text_option(option: &SqlExpr) -> Result<(String, String)> {
    let SqlExpr::BinaryOp { left, op: ast::BinaryOperator::Eq, right } = option else {
        return Err(EngineError::syntax(format!("invalid index option {option}")));
    };
    let key = match left.as_ref() {
        SqlExpr::Identifier(i) => i.value.to_ascii_lowercase(),
        SqlExpr::CompoundIdentifier(parts) => {
            parts.iter().map(|i| i.value.to_ascii_lowercase()).collect::<Vec<_>>().join(".")
        }
        other => return Err(EngineError::syntax(format!("invalid index option {other}"))),
    };
    let value = match right.as_ref() {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n.clone(),
            Value::SingleQuotedString(s) => s.clone(),
            Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(EngineError::InvalidParameter {
                    message: format!("invalid value for parameter \"{key}\": \"{right}\""),
                })
            }
        },
        SqlExpr::Identifier(i) => i.value.clone(),
        _ => {
            return Err(EngineError::InvalidParameter {
                message: format!("invalid value for parameter \"{key}\": \"{right}\""),
            })
        }
    };
    Ok((key, value))
}

fn vector_index_def(create: &CreateIndex, warehouse: &Warehouse) -> Result<(TableName, IndexDef)> {
    let table = ddl::table_name(&create.table_name)?;
    let method = match &create.using {
        Some(IndexType::Custom(name)) => match name.value.to_ascii_lowercase().as_str() {
            "hnsw" => IndexMethod::Hnsw,
            "ivfflat" => IndexMethod::IvfFlat,
            "ivf_pq" | "ivfpq" => IndexMethod::IvfPq,
            other => return Err(EngineError::UndefinedObject { message: format!("access method \"{other}\" does not exist") }),
        },
        other => {
            return Err(EngineError::unsupported(format!(
                "index method {} is not supported: Tarn indexes vectors (USING hnsw, ivfflat or ivf_pq), text (USING bm25) and scalars (USING btree, hash, bitmap, brin or bloom)",
                other.as_ref().map(|m| m.to_string()).unwrap_or_default()
            )))
        }
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
    warehouse.all_tables().into_iter().find(|t| {
        let manifest = &t.snapshot().manifest;
        t.name().schema == schema && manifest.has_index(name)
    })
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
