//! Errors of the SQL engine, grouped by who is at fault. The server turns each into a
//! SQLSTATE in one place (`tarn_server::errors`).

use datafusion::error::DataFusionError;
use tarn_storage::StorageError;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    // --- The statement is at fault. ---
    #[error("{message}")]
    Syntax { message: String },
    #[error("{message}")]
    FeatureNotSupported { message: String },
    #[error("{message}")]
    InvalidText { message: String },
    #[error("{message}")]
    InvalidParameter { message: String },
    /// A value in binary form that is not its type's (`incorrect binary data format`).
    #[error("{message}")]
    InvalidBinary { message: String },
    #[error("{message}")]
    DataException { message: String },
    #[error("column \"{column}\" does not exist")]
    UndefinedColumn { column: String },
    #[error("type \"{name}\" does not exist")]
    UndefinedType { name: String },
    /// An access method, operator class or other object named that does not exist.
    #[error("{message}")]
    UndefinedObject { message: String },
    /// A role or policy that exists already (42710).
    #[error("{message}")]
    DuplicateObject { message: String },
    /// A name reserved for the system: `public`, `pg_*` roles (42939).
    #[error("{message}")]
    ReservedName { message: String },
    /// A role membership that would loop (0LP01).
    #[error("{message}")]
    InvalidGrantOperation { message: String },
    #[error("unrecognized configuration parameter \"{name}\"")]
    UndefinedParameter { name: String },
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    InFailedTransaction,
    #[error("database \"{name}\" does not exist")]
    UndefinedDatabase { name: String },
    /// Text a date/time template does not describe (22007).
    #[error("{message}")]
    InvalidDatetime { message: String },
    /// A date/time field out of its range: month 13, February 30th (22008).
    #[error("{message}")]
    DatetimeOverflow { message: String },
    /// A value outside its type's range (`value "99999" is out of range for type smallint`).
    #[error("{message}")]
    OutOfRange { message: String },
    /// COPY data of the wrong shape: a missing or extra column, an open quote.
    #[error("{message}")]
    BadCopyFormat { message: String },
    /// An error in a COPY's data, and where it is (`COPY t, line 3, column id: "abc"`).
    #[error("{source}")]
    CopyData { source: Box<EngineError>, context: String },
    #[error("{message}")]
    CardinalityViolation { message: String },
    #[error("{message}")]
    ActiveTransaction { message: String },
    #[error("{message}")]
    NoActiveTransaction { message: String },
    #[error("savepoint \"{name}\" does not exist")]
    UndefinedSavepoint { name: String },
    #[error("cursor \"{name}\" does not exist")]
    UndefinedCursor { name: String },
    #[error("cursor \"{name}\" already exists")]
    DuplicateCursor { name: String },
    #[error("there is no unique or exclusion constraint matching the ON CONFLICT specification")]
    InvalidOnConflict,
    /// A statement nested deeper than the engine recurses safely (54001).
    #[error("{message}")]
    StackDepth { message: String },
    /// A statement past another of the engine's limits: its length, its size (54000).
    #[error("{message}")]
    ProgramLimit { message: String },
    /// A relation of the wrong kind: `DROP VIEW` of a table, a write to a view (42809).
    #[error("{message}")]
    WrongObjectType { message: String },
    /// A file outside the folders the server's configuration allows (42501).
    #[error("{message}")]
    InsufficientPrivilege { message: String },
    /// Something asked before its time: `currval` before `nextval` (55000).
    #[error("{message}")]
    ObjectNotInPrerequisiteState { message: String },
    /// A definition that cannot stand: a generation expression that reads a generated
    /// column or is not immutable (42P17).
    #[error("{message}")]
    InvalidObjectDefinition { message: String },
    /// An expression of another type than its place needs (42804).
    #[error("{message}")]
    DatatypeMismatch { message: String },
    /// A value given to a generated column (428C9).
    #[error("{message}")]
    GeneratedAlways { message: String, detail: String },
    /// A write in a read-only transaction (25006).
    #[error("cannot execute {command} in a read-only transaction")]
    ReadOnlyTransaction { command: String },
    /// A view that would read itself (42P17).
    #[error("{message}")]
    InfiniteRecursion { message: String },
    /// A DROP of what others depend on, without CASCADE (2BP01).
    #[error("{message}")]
    DependentObjects { message: String, detail: String },
    /// A cancel request or `statement_timeout` stopped the statement (57014).
    #[error("{message}")]
    QueryCanceled { message: String },
    /// `pg_terminate_backend` stopped the statement; the connection ends next (57P01).
    #[error("terminating connection due to administrator command")]
    AdminShutdown,

    // --- Raised below us: storage (constraints, I/O) and DataFusion (plans, execution). ---
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// An embedding model that is missing, unloadable or failed (`embed()`).
    #[error(transparent)]
    Model(#[from] tarn_models::ModelError),

    #[error("internal error: {message}")]
    Internal { message: String },
}

impl EngineError {
    pub fn unsupported(message: impl Into<String>) -> Self {
        EngineError::FeatureNotSupported { message: message.into() }
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        EngineError::Syntax { message: message.into() }
    }

    /// Errors raised inside DataFusion execution (our `Exec`s, UDFs) travel as
    /// `DataFusionError::External`; this recovers ours.
    pub fn into_datafusion(self) -> DataFusionError {
        match self {
            EngineError::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for EngineError {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        use datafusion::sql::sqlparser::parser::ParserError;
        let message = match e {
            ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
            ParserError::RecursionLimitExceeded => {
                return crate::statements::limits::stack_depth_exceeded(
                    crate::statements::limits::PARSER_RECURSION_LIMIT,
                )
            }
        };
        EngineError::Syntax { message: format!("syntax error: {message}") }
    }
}

impl From<arrow::error::ArrowError> for EngineError {
    fn from(e: arrow::error::ArrowError) -> Self {
        EngineError::DataFusion(DataFusionError::ArrowError(Box::new(e), None))
    }
}
