//! The one place where errors become what a client sees: a SQLSTATE and a message a
//! person can act on. Internal detail (file paths, backtraces) goes to the log only.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use pgwire::error::{ErrorInfo, PgWireError};
use tarn_engine::EngineError;
use tarn_storage::StorageError;

/// SQLSTATE, message and optional DETAIL of an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
}

impl ClientError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), detail: None }
    }

    pub fn into_pgwire(self) -> PgWireError {
        let mut info = ErrorInfo::new("ERROR".to_string(), self.code.to_string(), self.message);
        info.detail = self.detail;
        PgWireError::UserError(Box::new(info))
    }

    pub fn fatal(code: &'static str, message: impl Into<String>) -> PgWireError {
        PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.into(), message.into())))
    }
}

/// Classifies an engine error.
pub fn client_error(error: &EngineError) -> ClientError {
    let client = match error {
        EngineError::Syntax { message } => ClientError::new("42601", message),
        EngineError::FeatureNotSupported { message } => ClientError::new("0A000", message),
        EngineError::InvalidText { message } => ClientError::new("22P02", message),
        EngineError::InvalidParameter { message } => ClientError::new("22023", message),
        EngineError::InvalidBinary { message } => ClientError::new("22P03", message),
        EngineError::DataException { message } => ClientError::new("22000", message),
        EngineError::InvalidDatetime { message } => ClientError::new("22007", message),
        EngineError::DatetimeOverflow { message } => ClientError::new("22008", message),
        EngineError::UndefinedColumn { .. } => ClientError::new("42703", error.to_string()),
        EngineError::UndefinedObject { message } => ClientError::new("42704", message),
        EngineError::DuplicateObject { message } => ClientError::new("42710", message),
        EngineError::ReservedName { message } => ClientError::new("42939", message),
        EngineError::InvalidGrantOperation { message } => ClientError::new("0LP01", message),
        EngineError::UndefinedType { .. } | EngineError::UndefinedParameter { .. } => {
            ClientError::new("42704", error.to_string())
        }
        EngineError::InFailedTransaction => ClientError::new("25P02", error.to_string()),
        EngineError::CardinalityViolation { message } => ClientError::new("21000", message),
        EngineError::InvalidOnConflict => ClientError::new("42P10", error.to_string()),
        EngineError::StackDepth { message } => ClientError::new("54001", message),
        EngineError::ProgramLimit { message } => ClientError::new("54000", message),
        EngineError::QueryCanceled { message } => ClientError::new("57014", message),
        EngineError::AdminShutdown => ClientError::new("57P01", error.to_string()),
        EngineError::WrongObjectType { message } => ClientError::new("42809", message),
        EngineError::InsufficientPrivilege { message } => ClientError::new("42501", message),
        EngineError::InfiniteRecursion { message } => ClientError::new("42P17", message),
        EngineError::InvalidObjectDefinition { message } => ClientError::new("42P17", message),
        EngineError::ReadOnlyTransaction { .. } => ClientError::new("25006", error.to_string()),
        EngineError::DatatypeMismatch { message } => ClientError::new("42804", message),
        EngineError::GeneratedAlways { message, detail } => {
            ClientError { code: "428C9", message: message.clone(), detail: Some(detail.clone()) }
        }
        EngineError::ObjectNotInPrerequisiteState { message } => ClientError::new("55000", message),
        EngineError::DependentObjects { message, detail } => {
            ClientError { code: "2BP01", message: message.clone(), detail: Some(detail.clone()) }
        }
        EngineError::ActiveTransaction { message } => ClientError::new("25001", message),
        EngineError::NoActiveTransaction { message } => ClientError::new("25P01", message),
        EngineError::UndefinedSavepoint { .. } => ClientError::new("3B001", error.to_string()),
        EngineError::UndefinedCursor { .. } => ClientError::new("34000", error.to_string()),
        EngineError::DuplicateCursor { .. } => ClientError::new("42P03", error.to_string()),
        EngineError::UndefinedDatabase { .. } => ClientError::new("3D000", error.to_string()),
        EngineError::OutOfRange { message } => ClientError::new("22003", message),
        EngineError::BadCopyFormat { message } => ClientError::new("22P04", message),
        EngineError::CopyData { source, .. } => client_error(source),
        EngineError::Storage(e) => storage_error(e),
        EngineError::DataFusion(e) => datafusion_error(e),
        EngineError::Model(e) => model_error(e),
        EngineError::Internal { .. } => internal(error),
    };
    client
}

/// Where an error happened, for the error's CONTEXT field (`COPY t, line 3, column id: "abc"`).
pub fn error_context(error: &EngineError) -> Option<&str> {
    match error {
        EngineError::CopyData { context, .. } => Some(context),
        _ => None,
    }
}

fn internal(error: &dyn std::fmt::Display) -> ClientError {
    // A condition of the data that reached us through a library's own error (Lance
    // evaluating a pushed-down filter wraps Arrow's division by zero in its text).
    if let Some(known) = known_condition(&error.to_string()) {
        return known;
    }
    tracing::error!(%error, "internal error");
    ClientError::new("XX000", "internal error; the server log has the details")
}

fn model_error(error: &tarn_models::ModelError) -> ClientError {
    use tarn_models::ModelError;
    match error {
        // As PostgreSQL answers for a missing extension's files.
        ModelError::NoModelsDir { .. } | ModelError::NotInstalled { .. } => {
            ClientError::new("58P01", error.to_string())
        }
        ModelError::BadName(_) => ClientError::new("22023", error.to_string()),
        ModelError::Load { .. } => ClientError::new("58000", error.to_string()),
        ModelError::Run { .. } => internal(error),
    }
}

fn storage_error(error: &StorageError) -> ClientError {
    match error {
        StorageError::TableExists { .. } | StorageError::IndexExists { .. } => {
            ClientError::new("42P07", error.to_string())
        }
        StorageError::IndexNotFound { .. } => ClientError::new("42704", error.to_string()),
        StorageError::TableNotFound { .. } => ClientError::new("42P01", error.to_string()),
        StorageError::SchemaExists { .. } => ClientError::new("42P06", error.to_string()),
        StorageError::SchemaNotFound { .. } => ClientError::new("3F000", error.to_string()),
        StorageError::UniqueViolation { detail, .. } => {
            ClientError { code: "23505", message: error.to_string(), detail: Some(detail.clone()) }
        }
        StorageError::NotNullViolation { .. } => ClientError::new("23502", error.to_string()),
        StorageError::DuplicateColumn { .. } => ClientError::new("42701", error.to_string()),
        StorageError::UndefinedColumn { .. } => ClientError::new("42703", error.to_string()),
        StorageError::SequenceExhausted { message } => ClientError::new("2200H", message),
        StorageError::SequenceOutOfRange { message } => ClientError::new("22003", message),
        StorageError::Unsupported { message } => ClientError::new("0A000", message),
        StorageError::ReadOnly { message } => ClientError::new("25006", message),
        StorageError::CommitConflict { .. } => ClientError::new(
            "40001",
            "could not serialize access due to a concurrent write; retry the statement",
        ),
        StorageError::SerializationFailure { detail } => {
            ClientError { code: "40001", message: error.to_string(), detail: Some(detail.clone()) }
        }
        StorageError::VersionNotFound { .. } => ClientError::new("22023", error.to_string()),
        StorageError::InvalidOption { message } => ClientError::new("22023", message),
        StorageError::InvalidDefinition { message } => ClientError::new("42P16", message),
        StorageError::Io { .. } | StorageError::ObjectStore { .. } => {
            tracing::error!(error = %error, "storage i/o failed");
            ClientError::new("58030", "storage i/o failed; the server log has the details")
        }
        StorageError::Arrow { source } => arrow_error(source),
        _ => internal(error),
    }
}

fn datafusion_error(error: &DataFusionError) -> ClientError {
    match error {
        DataFusionError::SQL(e, _)
            if matches!(
                e.as_ref(),
                datafusion::sql::sqlparser::parser::ParserError::RecursionLimitExceeded
            ) =>
        {
            client_error(&parser_recursion())
        }
        DataFusionError::SQL(e, _) => ClientError::new("42601", format!("syntax error: {e}")),
        DataFusionError::ArrowError(e, _) => arrow_error(e),
        DataFusionError::External(e) => {
            if let Some(engine) = e.downcast_ref::<EngineError>() {
                client_error(engine)
            } else if let Some(storage) = e.downcast_ref::<StorageError>() {
                storage_error(storage)
            } else if let Some(df) = e.downcast_ref::<DataFusionError>() {
                datafusion_error(df)
            } else if let Some(arrow) = e.downcast_ref::<ArrowError>() {
                arrow_error(arrow)
            } else {
                internal(e)
            }
        }
        DataFusionError::Context(_, inner) => datafusion_error(inner),
        DataFusionError::Shared(inner) => datafusion_error(inner),
        DataFusionError::Diagnostic(_, inner) => datafusion_error(inner),
        DataFusionError::Collection(errors) => match errors.first() {
            Some(first) => datafusion_error(first),
            None => internal(error),
        },
        DataFusionError::SchemaError(e, _) => {
            let message = e.to_string();
            if let datafusion::common::SchemaError::FieldNotFound { field, .. } = e.as_ref() {
                ClientError::new("42703", format!("column \"{}\" does not exist", field.name))
            } else if message.contains("Ambiguous") || message.contains("ambiguous") {
                ClientError::new("42702", message)
            } else {
                ClientError::new("42P10", message)
            }
        }
        DataFusionError::Plan(message) => plan_error(&public_message(message)),
        DataFusionError::NotImplemented(message) => ClientError::new("0A000", public_message(message)),
        DataFusionError::ResourcesExhausted(message) => ClientError::new("53200", message.clone()),
        DataFusionError::Execution(message) => execution_error(&public_message(message)),
        _ => internal(error),
    }
}

fn parser_recursion() -> EngineError {
    EngineError::from(datafusion::sql::sqlparser::parser::ParserError::RecursionLimitExceeded)
}

/// A message of DataFusion's as a client should read it: DataFusion sometimes prints
/// internal structures with `{:?}` (`Unsupported ast node in sqltorel: Collate { expr:
/// Value(ValueWithSpan { ... }) ... }`); the client gets the words before them (the
/// whole message is in the server's log at debug level).
pub fn public_message(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("Unsupported ast node in sqltorel: ") {
        let node: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        return format!("{} is not supported", words_of(&node));
    }
    const DEBUG_MARKERS: [&str; 6] = [" { ", "ValueWithSpan", "Span(", "Location {", "Ident {", "Some("];
    let cut = DEBUG_MARKERS.iter().filter_map(|m| message.find(m)).min();
    let mut text = match cut {
        // Back to the start of the word the structure's name begins with.
        Some(at) => {
            let start = message[..at].rfind(|c: char| c.is_whitespace()).map_or(0, |i| i + 1);
            message[..start].trim_end().trim_end_matches(':').trim_end().to_string()
        }
        None => message.to_string(),
    };
    if text.is_empty() {
        text = "statement not supported".to_string();
    }
    if text.len() > 1000 {
        let end = text.char_indices().nth(1000).map_or(text.len(), |(i, _)| i);
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// `CollateExpr` -> `collate expr`: a syntax node's name as words.
fn words_of(name: &str) -> String {
    let mut words = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            words.push(' ');
        }
        words.extend(c.to_lowercase());
    }
    if words.is_empty() {
        "this syntax".to_string()
    } else {
        words.to_uppercase()
    }
}

/// Conditions DataFusion reports only in message text, whatever the error's kind.
fn known_condition(message: &str) -> Option<ClientError> {
    if message.contains("Divide by zero") || message.contains("Division by zero") {
        return Some(ClientError::new("22012", "division by zero"));
    }
    None
}

fn plan_error(message: &str) -> ClientError {
    if let Some(known) = known_condition(message) {
        return known;
    }
    if let Some(rest) = message.strip_prefix("table '") {
        // "table 'tarn.public.x' not found"
        let name = rest.split('\'').next().unwrap_or(rest);
        let name = name.rsplit('.').next().unwrap_or(name);
        return ClientError::new("42P01", format!("relation \"{name}\" does not exist"));
    }
    if message.contains("Invalid function") || message.contains("Unknown function") {
        return ClientError::new("42883", message.to_string());
    }
    if message.contains("Cannot cast") || message.contains("Cannot automatically convert") {
        return ClientError::new("42846", message.to_string());
    }
    ClientError::new("42000", message.to_string())
}

fn execution_error(message: &str) -> ClientError {
    if let Some(known) = known_condition(message) {
        return known;
    }
    if message.contains("Cast error") || message.contains("Cannot cast") {
        return ClientError::new("22P02", message.to_string());
    }
    if message.contains("overflow") || message.contains("Overflow") {
        return ClientError::new("22003", message.to_string());
    }
    ClientError::new("XX000", message.to_string())
}

fn arrow_error(error: &ArrowError) -> ClientError {
    match error {
        ArrowError::DivideByZero => ClientError::new("22012", "division by zero"),
        ArrowError::CastError(m) | ArrowError::ParseError(m) => {
            ClientError::new("22P02", format!("invalid input syntax: {m}"))
        }
        ArrowError::ArithmeticOverflow(m) => ClientError::new("22003", format!("value out of range: {m}")),
        ArrowError::ComputeError(m) if m.contains("verflow") => {
            ClientError::new("22003", format!("value out of range: {m}"))
        }
        ArrowError::ExternalError(e) => {
            if let Some(df) = e.downcast_ref::<DataFusionError>() {
                datafusion_error(df)
            } else if let Some(engine) = e.downcast_ref::<EngineError>() {
                client_error(engine)
            } else {
                internal(e)
            }
        }
        other => ClientError::new("22000", other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_of_common_errors() {
        let plan =
            EngineError::DataFusion(DataFusionError::Plan("table 'tarn.public.nope' not found".into()));
        let e = client_error(&plan);
        assert_eq!((e.code, e.message.as_str()), ("42P01", "relation \"nope\" does not exist"));
        let div =
            EngineError::DataFusion(DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None));
        assert_eq!(client_error(&div).code, "22012");
        let wrapped =
            EngineError::DataFusion(DataFusionError::External(Box::new(EngineError::InvalidText {
                message: "bad".into(),
            })));
        assert_eq!(client_error(&wrapped).code, "22P02");
    }

    #[test]
    fn debug_structures_never_reach_clients() {
        let collate = "Unsupported ast node in sqltorel: Collate { expr: Value(ValueWithSpan { value: \
                       SingleQuotedString(\"x\"), span: Span(Location(1,8)..Location(1,11)) }), collation: ObjectName([]) }";
        let e = client_error(&EngineError::DataFusion(DataFusionError::NotImplemented(collate.into())));
        assert_eq!((e.code, e.message.as_str()), ("0A000", "COLLATE is not supported"));
        let plan = "Unsupported SQL type Custom(ObjectName([Identifier(Ident { value: \"x\" })]), [])";
        let e = client_error(&EngineError::DataFusion(DataFusionError::Plan(plan.into())));
        assert!(!e.message.contains('{') && e.message.starts_with("Unsupported SQL type"), "{}", e.message);
        let deep = client_error(&parser_recursion());
        assert_eq!(deep.code, "54001");
    }
}
