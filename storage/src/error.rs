//! Errors of the storage layer, grouped by who is at fault.

use crate::table_def::TableName;

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    // --- The user's statement is at fault: the data was left alone. ---
    #[error("relation \"{name}\" already exists")]
    TableExists { name: TableName },
    #[error("relation \"{name}\" does not exist")]
    TableNotFound { name: TableName },
    #[error("schema \"{name}\" already exists")]
    SchemaExists { name: String },
    #[error("schema \"{name}\" does not exist")]
    SchemaNotFound { name: String },
    #[error("duplicate key value violates unique constraint \"{constraint}\"")]
    UniqueViolation { constraint: String, detail: String },
    #[error("null value in column \"{column}\" of relation \"{table}\" violates not-null constraint")]
    NotNullViolation { table: String, column: String },
    #[error("column \"{column}\" of relation \"{table}\" already exists")]
    DuplicateColumn { table: String, column: String },
    #[error("column \"{column}\" of relation \"{table}\" does not exist")]
    UndefinedColumn { table: String, column: String },
    #[error("relation \"{name}\" already exists")]
    IndexExists { name: String },
    #[error("index \"{name}\" does not exist")]
    IndexNotFound { name: String },
    #[error("{message}")]
    Unsupported { message: String },
    #[error("{message}")]
    InvalidOption { message: String },
    /// A definition that cannot replace the one it names (a view losing a column).
    #[error("{message}")]
    InvalidDefinition { message: String },

    /// `nextval` past a sequence's bound (2200H).
    #[error("{message}")]
    SequenceExhausted { message: String },
    /// `setval` out of a sequence's bounds (22003).
    #[error("{message}")]
    SequenceOutOfRange { message: String },

    /// A write on a read-only replica, or on a writer that lost its lease (25006).
    #[error("{message}")]
    ReadOnly { message: String },

    #[error("version {version} of table {table} does not exist or is no longer retained")]
    VersionNotFound { table: TableName, version: u64 },

    // --- Another writer won a race; the operation may be retried. ---
    #[error("could not serialize access due to concurrent update")]
    SerializationFailure { detail: String },
    #[error("concurrent commit of version {version} of table {table}")]
    CommitConflict { table: TableName, version: u64 },

    // --- Storage failed or holds something we cannot read. ---
    #[error("lance: {source}")]
    Lance {
        #[from]
        source: lance::Error,
    },
    #[error("object store: {source}")]
    ObjectStore {
        #[from]
        source: object_store::Error,
    },
    #[error("arrow: {source}")]
    Arrow {
        #[from]
        source: arrow::error::ArrowError,
    },
    #[error("text index: {source}")]
    Tantivy {
        #[from]
        source: tantivy::TantivyError,
    },
    #[error("i/o on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("manifest {path} is unreadable: {message}")]
    CorruptManifest { path: String, message: String },
    #[error("write-ahead log {path} is damaged: {message}")]
    CorruptLog { path: String, message: String },
    #[error("invalid warehouse location {url}: {message}")]
    InvalidWarehouse { url: String, message: String },

    // --- A bug of ours. ---
    #[error("internal error: {message}")]
    Internal { message: String },
}

impl StorageError {
    pub fn internal(message: impl Into<String>) -> Self {
        StorageError::Internal { message: message.into() }
    }
}
