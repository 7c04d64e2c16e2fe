//! What a user declared in `CREATE TABLE`.

use std::collections::BTreeMap;
use std::fmt;

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

/// A schema-qualified table name, both parts already normalized by the SQL layer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableName {
    pub schema: String,
    pub table: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self { schema: schema.into(), table: table.into() }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.schema == "public" {
            write!(f, "{}", self.table)
        } else {
            write!(f, "{}.{}", self.schema, self.table)
        }
    }
}

/// The format of a table's immutable base files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BaseFormat {
    #[default]
    Lance,
    Parquet,
}

impl BaseFormat {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "lance" => Some(Self::Lance),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }
}

/// `GENERATED ... AS IDENTITY`, `SERIAL` and `BIGSERIAL`: the writer fills a missing
/// value from the table's sequence, which lives in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub start: i64,
    pub increment: i64,
}

/// What the Arrow field cannot say about a column.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnMeta {
    pub name: String,
    /// `DEFAULT` expression as SQL text; the SQL layer parses and evaluates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// `GENERATED ALWAYS AS (expression) STORED`: the expression as SQL text over the
    /// row's other columns; the SQL layer computes it for every row written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
}

/// A table definition. `schema` is the Arrow schema of the rows (field metadata carries
/// the Postgres type where Arrow alone is ambiguous, e.g. `jsonb`); `columns` is parallel
/// to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    pub name: TableName,
    pub schema: SchemaRef,
    pub columns: Vec<ColumnMeta>,
    /// Column names of the primary key, in key order; empty for an append-only table.
    pub primary_key: Vec<String>,
    pub format: BaseFormat,
    pub bucket_count: u32,
    /// Validated `WITH (...)` options other than `bucket_count`, as given.
    pub options: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Comments::is_empty")]
    pub comments: Comments,
}

/// `COMMENT ON TABLE | VIEW | COLUMN`: the relation's comment and its columns', by
/// column name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comments {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, String>,
}

impl Comments {
    pub fn is_empty(&self) -> bool {
        self.relation.is_none() && self.columns.is_empty()
    }

    /// Sets (or with `None`, removes) the comment of the relation (`column` `None`) or
    /// of one column.
    pub fn set(&mut self, column: Option<&str>, comment: Option<String>) {
        match (column, comment) {
            (None, comment) => self.relation = comment,
            (Some(column), Some(comment)) => {
                self.columns.insert(column.to_string(), comment);
            }
            (Some(column), None) => {
                self.columns.remove(column);
            }
        }
    }
}

/// A view: a named query, planned anew each time it is read. Its columns are fixed when
/// it is created, as PostgreSQL fixes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewDef {
    pub name: TableName,
    /// The query, as SQL text the SQL layer can parse again.
    pub query: String,
    /// Its columns: names (the view's own, if it named them) and types.
    pub schema: SchemaRef,
    /// The tables and views the query reads (a DROP of one of them needs CASCADE).
    pub depends_on: Vec<TableName>,
    #[serde(default, skip_serializing_if = "Comments::is_empty")]
    pub comments: Comments,
}

/// Options `WITH (...)` accepts, besides `bucket_count`. Anything else is an error so a
/// typo never silently does nothing.
pub const TABLE_OPTIONS: &[&str] = &[
    "compaction_interval",
    "compaction_threshold",
    "auto_compaction",
    "flush_rows",
    "flush_interval",
    "history_retention",
    "cluster_by",
];

pub const DEFAULT_BUCKET_COUNT: u32 = 4;

impl TableDef {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.schema.fields().iter().position(|f| f.name() == name)
    }

    pub fn primary_key_indices(&self) -> Vec<usize> {
        self.primary_key.iter().filter_map(|c| self.column_index(c)).collect()
    }

    /// The constraint name Postgres would give the primary key.
    pub fn primary_key_constraint(&self) -> String {
        format!("{}_pkey", self.name.table)
    }
}
