//! `tarn mcp`: a Model Context Protocol server on standard input and output, whose tools
//! let an assistant find its way around a running Tarn server and query it.
//!
//! This module owns the tools (their names, input schemas and output shapes), the one
//! connection they share and its session settings, and the row limit. It is a client of
//! the Tarn server over the Postgres wire protocol (tokio-postgres) and never opens a
//! warehouse itself: it sees what the connection string's user may see (the operator
//! gives it a read-only user), its session has `default_transaction_read_only` on and a
//! `statement_timeout`, and every tool runs its statements in a `READ ONLY` transaction
//! that is then rolled back, so nothing it sends is ever committed.
//!
//! | tool             | input                   | output (JSON text)                        |
//! | ---------------- | ----------------------- | ----------------------------------------- |
//! | `list_schemas`   |                         | schema names                              |
//! | `list_tables`    | `schema?`               | schema, name, kind, comment per relation  |
//! | `describe_table` | `table`                 | columns, primary key, `CREATE TABLE` text |
//! | `find_tables`    | `question`, `k?` (5)    | `tarn_find_tables`' rows                  |
//! | `query`          | `sql`, `limit?`         | columns, rows as text, `more_rows`        |
//! | `explain`        | `sql`                   | the plan as plain text                    |
//!
//! `query` and `explain` take one query (SELECT, VALUES, TABLE, WITH): the text is parsed
//! here with the engine's parser first, so that several statements or a write are
//! refused before anything is sent. A query runs as a cursor (`DECLARE ... FOR <sql>`,
//! `FETCH limit+1`), so the server computes at most one row more than is returned. The
//! simple query protocol gives every value as text. A failed statement is a tool error
//! (`is_error`) with its SQLSTATE; the session goes on.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use datafusion::sql::sqlparser::ast::{SetExpr, Statement};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_handler, tool_router, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use tracing::{info, warn};

/// `tarn mcp`'s settings, from its flags.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// libpq-style connection string of the Tarn server (`host=... port=... user=...`).
    pub connect: String,
    /// The most rows `query` returns, whatever limit a call asks for.
    pub row_limit: usize,
    /// The session's `statement_timeout`.
    pub timeout: Duration,
}

/// The defaults of `tarn mcp`'s flags.
pub const DEFAULT_CONNECT: &str = "host=127.0.0.1 port=5433 user=tarn dbname=tarn";
pub const DEFAULT_ROW_LIMIT: usize = 100;
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            connect: DEFAULT_CONNECT.into(),
            row_limit: DEFAULT_ROW_LIMIT,
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("invalid connection string: {message}")]
    ConnectionString { message: String },
    #[error("connecting to the Tarn server: {message}")]
    Connect { message: String },
    #[error("serving MCP on standard input and output: {message}")]
    Transport { message: String },
}

/// Connects to the Tarn server, then serves MCP on standard input and output until the
/// client closes them. A Tarn server that cannot be reached is an error at start.
pub async fn serve_stdio(config: McpConfig) -> Result<(), McpError> {
    let tools = TarnTools::connect(&config).await?;
    let service = tools
        .serve(rmcp::transport::stdio_pipes())
        .await
        .map_err(|e| McpError::Transport { message: e.to_string() })?;
    let reason = service.waiting().await.map_err(|e| McpError::Transport { message: e.to_string() })?;
    info!(?reason, "MCP session ended");
    Ok(())
}

/// The MCP server: its tools and the connection they take turns on.
#[derive(Clone)]
pub struct TarnTools {
    connection: Arc<Connection>,
    row_limit: usize,
    tool_router: ToolRouter<Self>,
}

/// The one connection to the Tarn server. A tool holds it from `START TRANSACTION` to
/// `ROLLBACK`, so calls that arrive together run one after another; one that finds the
/// connection closed (the server restarted) opens a new one first.
struct Connection {
    config: tokio_postgres::Config,
    timeout: Duration,
    client: Mutex<Client>,
}

/// A tool's answer: JSON (or plan) text, or an error as the assistant reads it,
/// `SQLSTATE: message` with DETAIL and HINT on their own lines (rmcp sends it with
/// `is_error`).
type ToolResult = Result<String, String>;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListTablesInput {
    /// Only this schema's tables and views (all schemas when absent).
    pub schema: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DescribeTableInput {
    /// The table or view, as `name` or `schema.name` (double-quote names with capitals or
    /// punctuation, as in SQL).
    pub table: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct FindTablesInput {
    /// What the data should answer, in plain words.
    pub question: String,
    /// How many tables to return (default 5).
    pub k: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct QueryInput {
    /// One read-only query: SELECT, VALUES, TABLE or WITH ... SELECT (PostgreSQL dialect).
    pub sql: String,
    /// The most rows to return; the server's row limit caps it.
    pub limit: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExplainInput {
    /// The query to explain (without the EXPLAIN keyword).
    pub sql: String,
}

impl TarnTools {
    pub async fn connect(config: &McpConfig) -> Result<TarnTools, McpError> {
        let pg = tokio_postgres::Config::from_str(&config.connect)
            .map_err(|e| McpError::ConnectionString { message: e.to_string() })?;
        let client =
            open(&pg, config.timeout).await.map_err(|e| McpError::Connect { message: describe(&e) })?;
        let connection = Connection { config: pg, timeout: config.timeout, client: Mutex::new(client) };
        Ok(TarnTools {
            connection: Arc::new(connection),
            row_limit: config.row_limit,
            tool_router: Self::tool_router(),
        })
    }
}

/// Opens a session with the settings every tool relies on.
async fn open(config: &tokio_postgres::Config, timeout: Duration) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "the connection to the Tarn server ended");
        }
    });
    client.simple_query("SET default_transaction_read_only = on").await?;
    client.simple_query(&format!("SET statement_timeout = {}", timeout.as_millis())).await?;
    Ok(client)
}

impl Connection {
    /// Runs `statements` one after another in a read-only transaction, rolls it back, and
    /// returns each statement's messages. The first error ends the transaction.
    async fn read_only(&self, statements: &[String]) -> Result<Vec<Vec<SimpleQueryMessage>>, String> {
        let mut client = self.client.lock().await;
        if client.is_closed() {
            info!("reconnecting to the Tarn server");
            *client = open(&self.config, self.timeout).await.map_err(|e| describe(&e))?;
        }
        let transaction =
            client.build_transaction().read_only(true).start().await.map_err(|e| describe(&e))?;
        let mut results = Vec::with_capacity(statements.len());
        let mut failure = None;
        for statement in statements {
            match transaction.simple_query(statement).await {
                Ok(messages) => results.push(messages),
                Err(e) => {
                    failure = Some(describe(&e));
                    break;
                }
            }
        }
        let rolled_back = transaction.rollback().await;
        match (failure, rolled_back) {
            (Some(failure), _) => Err(failure),
            (None, Err(e)) => Err(describe(&e)),
            (None, Ok(())) => Ok(results),
        }
    }

    /// One statement's rows, each as an object of its columns' text values.
    async fn objects(&self, sql: String) -> Result<Vec<Map<String, Value>>, String> {
        let mut results = self.read_only(&[sql]).await?;
        let table = Table::from_messages(results.pop().unwrap_or_default());
        Ok(table.objects())
    }
}

#[tool_router]
impl TarnTools {
    /// Lists the schemas (namespaces) that hold tables and views.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn list_schemas(&self) -> ToolResult {
        let sql = "SELECT schema_name FROM information_schema.schemata \
                   WHERE left(schema_name, 3) <> 'pg_' AND schema_name <> 'information_schema' \
                   ORDER BY schema_name";
        let rows = self.connection.objects(sql.into()).await?;
        let names: Vec<Value> = rows.into_iter().filter_map(|mut row| row.remove("schema_name")).collect();
        Ok(Value::Array(names).to_string())
    }

    /// Lists tables and views with their comments (`COMMENT ON TABLE`), in every schema or
    /// in one.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn list_tables(&self, Parameters(input): Parameters<ListTablesInput>) -> ToolResult {
        let in_schema = match &input.schema {
            Some(schema) => format!("AND n.nspname = {}", quote_literal(schema)?),
            None => String::new(),
        };
        let sql = format!(
            "SELECT n.nspname AS schema, c.relname AS name, \
             CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'table' END AS kind, \
             obj_description(c.oid, 'pg_class') AS comment \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') \
             AND left(n.nspname, 3) <> 'pg_' AND n.nspname <> 'information_schema' {in_schema} \
             ORDER BY n.nspname, c.relname"
        );
        let rows = self.connection.objects(sql).await?;
        Ok(Value::Array(rows.into_iter().map(without_nulls).collect()).to_string())
    }

    /// Describes a table or view: its columns (name, type, nullable, comment), its
    /// primary key, and a compact CREATE TABLE (or CREATE VIEW) statement.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn describe_table(&self, Parameters(input): Parameters<DescribeTableInput>) -> ToolResult {
        let (schema, name) = relation_name(&input.table)?;
        let in_schema = match &schema {
            Some(schema) => format!("AND n.nspname = {}", quote_literal(schema)?),
            None => "AND left(n.nspname, 3) <> 'pg_' AND n.nspname <> 'information_schema'".into(),
        };
        let name_literal = quote_literal(&name)?;
        let from = format!(
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = {name_literal} AND c.relkind IN ('r', 'p', 'f', 'v', 'm') {in_schema}"
        );
        let statements = [
            format!(
                "SELECT n.nspname AS schema, c.relkind AS kind, obj_description(c.oid, 'pg_class') AS comment, \
                 pg_catalog.pg_get_viewdef(c.oid) AS definition {from} ORDER BY n.nspname"
            ),
            format!(
                "SELECT n.nspname AS schema, a.attnum, a.attname AS name, \
                 pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null, \
                 pg_catalog.col_description(a.attrelid, a.attnum) AS comment \
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relname = {name_literal} AND c.relkind IN ('r', 'p', 'f', 'v', 'm') {in_schema} \
                 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
            ),
            format!(
                "SELECT n.nspname AS schema, i.indkey AS key FROM pg_catalog.pg_index i \
                 JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE i.indisprimary AND c.relname = {name_literal} {in_schema}"
            ),
        ];
        let mut results = self.connection.read_only(&statements).await?.into_iter();
        let mut next = || Table::from_messages(results.next().unwrap_or_default()).objects();
        let (relations, columns, keys) = (next(), next(), next());
        let relation = match relations.as_slice() {
            [] => return Err(format!("42P01: relation \"{}\" does not exist", input.table)),
            [relation] => relation,
            // As PostgreSQL's default search_path would; elsewhere the name is ambiguous.
            several => match several.iter().find(|r| text(r, "schema") == "public") {
                Some(public) => public,
                None => {
                    let schemas: Vec<&str> = several.iter().map(|r| text(r, "schema")).collect();
                    return Err(format!(
                        "42P01: relation \"{name}\" is in several schemas ({}): name one, as schema.table",
                        schemas.join(", ")
                    ));
                }
            },
        };
        let schema = text(relation, "schema");
        let description = TableDescription::new(schema, &name, relation, &columns, &keys);
        Ok(description.to_json().to_string())
    }

    /// Finds the tables most likely to answer a question in plain words, by their names,
    /// comments and columns (Tarn's tarn_find_tables). Returns each table's name, score
    /// and CREATE TABLE statement.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn find_tables(&self, Parameters(input): Parameters<FindTablesInput>) -> ToolResult {
        let k = input.k.unwrap_or(5);
        let sql = format!("SELECT * FROM tarn_find_tables({}, {k})", quote_literal(&input.question)?);
        let rows = self.connection.objects(sql).await?;
        Ok(Value::Array(rows.into_iter().map(Value::Object).collect()).to_string())
    }

    /// Runs one read-only query (SELECT, VALUES, TABLE, WITH) and returns its column names,
    /// its first rows (values as text, null as null) and whether more rows were left out.
    /// Writes and several statements are refused.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn query(&self, Parameters(input): Parameters<QueryInput>) -> ToolResult {
        one_query(&input.sql)?;
        let limit = input.limit.map_or(self.row_limit, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let limit = limit.min(self.row_limit);
        let statements = [
            format!("DECLARE mcp_cursor NO SCROLL CURSOR FOR {}", input.sql),
            format!("FETCH {} FROM mcp_cursor", limit + 1),
        ];
        let mut results = self.connection.read_only(&statements).await?;
        let mut table = Table::from_messages(results.pop().unwrap_or_default());
        let more_rows = table.rows.len() > limit;
        table.rows.truncate(limit);
        Ok(json!({ "columns": table.columns, "rows": table.rows, "more_rows": more_rows }).to_string())
    }

    /// Shows how Tarn would run a query (EXPLAIN): its logical and physical plans. The
    /// query is not run.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn explain(&self, Parameters(input): Parameters<ExplainInput>) -> ToolResult {
        one_query(&input.sql)?;
        let mut results = self.connection.read_only(&[format!("EXPLAIN {}", input.sql)]).await?;
        let table = Table::from_messages(results.pop().unwrap_or_default());
        // Tarn's EXPLAIN has a row per plan (plan_type, plan); PostgreSQL's a row per line.
        let lines: Vec<String> = table
            .rows
            .iter()
            .map(|row| match row.as_slice() {
                [Some(kind), Some(plan)] => format!("{kind}:\n{}", plan.trim_end()),
                values => values.iter().flatten().cloned().collect::<Vec<_>>().join("\t"),
            })
            .collect();
        Ok(lines.join("\n"))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TarnTools {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        let instructions = format!(
            "Read-only access to a Tarn database (PostgreSQL dialect, with pgvector's distance \
             operators and BM25 search). Find tables with list_tables or find_tables, read their \
             columns with describe_table, then run SELECT queries with query (at most {} rows \
             each). Nothing you run is ever committed.",
            self.row_limit
        );
        rmcp::model::ServerConfig::new(rmcp::model::ServerCapabilities::builder().enable_tools().build())
            .with_server_info(rmcp::model::Implementation::new("tarn", env!("CARGO_PKG_VERSION")))
            .with_instructions(instructions)
    }
}

/// Checks that `sql` is exactly one query, with the parser the server uses, so that no
/// second statement or write is ever sent (the read-only transaction is the other guard).
fn one_query(sql: &str) -> Result<(), String> {
    let statements = tarn_engine::statements::parser::parse_sql(sql).map_err(|e| {
        let error = crate::errors::client_error(&e);
        format!("{}: {}", error.code, error.message)
    })?;
    let statement = match statements.as_slice() {
        [one] => &one.statement,
        [] => return Err("42601: no statement given".into()),
        several => {
            return Err(format!("42601: one statement at a time, please ({} were given)", several.len()))
        }
    };
    // The statement's keyword, for the messages.
    let verb = |statement: &Statement| {
        statement.to_string().split_whitespace().next().unwrap_or_default().to_uppercase()
    };
    let read_only =
        |write: &Statement| format!("25006: cannot run {}: this session is read-only", verb(write));
    match statement {
        Statement::Query(query) => match &*query.body {
            SetExpr::Insert(write)
            | SetExpr::Update(write)
            | SetExpr::Delete(write)
            | SetExpr::Merge(write) => Err(read_only(write)),
            _ => Ok(()),
        },
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) | Statement::Merge(_) => {
            Err(read_only(statement))
        }
        other => {
            Err(format!("0A000: only queries (SELECT, VALUES, TABLE, WITH) run here, not {}", verb(other)))
        }
    }
}

/// `SQLSTATE: message`, then DETAIL and HINT lines, as psql shows an error; a lost
/// connection as such.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("\nDETAIL: {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("\nHINT: {hint}"));
            }
            text
        }
        None => format!("08006: the connection to the Tarn server failed: {e}"),
    }
}

/// A string as an SQL literal. Tarn's strings are standard-conforming (a backslash is
/// itself), so doubling the quotes is all the escaping there is.
fn quote_literal(value: &str) -> Result<String, String> {
    if value.contains('\0') {
        return Err("22021: a name or text may not contain a NUL character".into());
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// `name` or `schema.name`, each part folded to lower case unless double-quoted, as SQL
/// reads a relation's name.
fn relation_name(written: &str) -> Result<(Option<String>, String), String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quoted = false;
    let mut chars = written.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                part.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut part)),
            c if quoted => part.push(c),
            c => part.extend(c.to_lowercase()),
        }
    }
    parts.push(part);
    match (quoted, parts.as_mut_slice()) {
        (false, [name]) if !name.is_empty() => Ok((None, std::mem::take(name))),
        (false, [schema, name]) if !schema.is_empty() && !name.is_empty() => {
            Ok((Some(std::mem::take(schema)), std::mem::take(name)))
        }
        _ => Err(format!("42602: invalid table name \"{written}\": give name or schema.name")),
    }
}

/// A name as it must be written in SQL: quoted unless it is lower case letters, digits
/// and underscores.
fn quote_ident(name: &str) -> String {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// One statement's result from the simple query protocol: column names and text values.
#[derive(Debug, Default)]
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

impl Table {
    fn from_messages(messages: Vec<SimpleQueryMessage>) -> Table {
        let mut table = Table::default();
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(columns) => {
                    table.columns = columns.iter().map(|c| c.name().to_string()).collect();
                }
                SimpleQueryMessage::Row(row) => {
                    if table.columns.is_empty() {
                        table.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                    }
                    table.rows.push((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect());
                }
                _ => {}
            }
        }
        table
    }

    fn objects(self) -> Vec<Map<String, Value>> {
        let columns = self.columns;
        self.rows
            .into_iter()
            .map(|row| {
                columns
                    .iter()
                    .cloned()
                    .zip(row.into_iter().map(|v| v.map_or(Value::Null, Value::String)))
                    .collect()
            })
            .collect()
    }
}

fn text<'a>(row: &'a Map<String, Value>, column: &str) -> &'a str {
    row.get(column).and_then(Value::as_str).unwrap_or_default()
}

fn without_nulls(mut row: Map<String, Value>) -> Value {
    row.retain(|_, v| !v.is_null());
    Value::Object(row)
}

/// What `describe_table` says of one relation.
struct TableDescription {
    schema: String,
    name: String,
    view: bool,
    comment: Option<String>,
    /// The view's query.
    definition: Option<String>,
    columns: Vec<ColumnDescription>,
    primary_key: Vec<String>,
}

struct ColumnDescription {
    attnum: String,
    name: String,
    data_type: String,
    nullable: bool,
    comment: Option<String>,
}

impl TableDescription {
    /// From the rows of the three catalog queries, where `columns` and `keys` may hold
    /// other schemas' relations of the same name (only `schema`'s are kept).
    fn new(
        schema: &str,
        name: &str,
        relation: &Map<String, Value>,
        columns: &[Map<String, Value>],
        keys: &[Map<String, Value>],
    ) -> TableDescription {
        let optional = |row: &Map<String, Value>, column: &str| {
            row.get(column).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
        };
        let view = matches!(text(relation, "kind"), "v" | "m");
        let columns: Vec<ColumnDescription> = columns
            .iter()
            .filter(|c| text(c, "schema") == schema)
            .map(|c| ColumnDescription {
                attnum: text(c, "attnum").to_string(),
                name: text(c, "name").to_string(),
                data_type: text(c, "type").to_string(),
                nullable: !matches!(text(c, "not_null"), "t" | "true"),
                comment: optional(c, "comment"),
            })
            .collect();
        // `indkey` is an int2vector: the key's column numbers, in key order, as "3 1".
        let key =
            keys.iter().find(|k| text(k, "schema") == schema).map(|k| text(k, "key")).unwrap_or_default();
        let primary_key = key
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|attnum| columns.iter().find(|c| c.attnum == attnum))
            .map(|c| c.name.clone())
            .collect();
        TableDescription {
            schema: schema.to_string(),
            name: name.to_string(),
            view,
            comment: optional(relation, "comment"),
            definition: optional(relation, "definition").filter(|_| view),
            columns,
            primary_key,
        }
    }

    fn to_json(&self) -> Value {
        let columns: Vec<Value> = self
            .columns
            .iter()
            .map(|c| json!({ "name": c.name, "type": c.data_type, "nullable": c.nullable, "comment": c.comment }))
            .collect();
        json!({
            "schema": self.schema,
            "name": self.name,
            "kind": if self.view { "view" } else { "table" },
            "comment": self.comment,
            "columns": columns,
            "primary_key": self.primary_key,
            "ddl": self.ddl(),
        })
    }

    /// `CREATE TABLE` with a line per column (its comment after it) and the primary key;
    /// a view's own query when the server gives it.
    fn ddl(&self) -> String {
        let one_line = |comment: &str| comment.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut ddl = String::new();
        if let Some(comment) = &self.comment {
            ddl.push_str(&format!("-- {}\n", one_line(comment)));
        }
        let qualified = format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name));
        if let Some(definition) = &self.definition {
            let definition = definition.trim().trim_end_matches(';').trim_end();
            ddl.push_str(&format!("CREATE VIEW {qualified} AS\n  {definition};"));
            return ddl;
        }
        let mut lines: Vec<(String, Option<&String>)> = self
            .columns
            .iter()
            .map(|c| {
                let not_null = if c.nullable { "" } else { " NOT NULL" };
                (format!("  {} {}{not_null}", quote_ident(&c.name), c.data_type), c.comment.as_ref())
            })
            .collect();
        if !self.primary_key.is_empty() && !self.view {
            let key: Vec<String> = self.primary_key.iter().map(|k| quote_ident(k)).collect();
            lines.push((format!("  PRIMARY KEY ({})", key.join(", ")), None));
        }
        ddl.push_str(&format!("CREATE {} {qualified} (\n", if self.view { "VIEW" } else { "TABLE" }));
        let last = lines.len().saturating_sub(1);
        for (i, (line, comment)) in lines.iter().enumerate() {
            ddl.push_str(line);
            if i < last {
                ddl.push(',');
            }
            if let Some(comment) = comment {
                ddl.push_str(&format!(" -- {}", one_line(comment)));
            }
            ddl.push('\n');
        }
        ddl.push_str(");");
        ddl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_names_fold_unless_quoted() {
        assert_eq!(relation_name("Docs"), Ok((None, "docs".into())));
        assert_eq!(relation_name("Sales.Orders"), Ok((Some("sales".into()), "orders".into())));
        assert_eq!(relation_name("\"Mixed Case\""), Ok((None, "Mixed Case".into())));
        assert_eq!(relation_name("s.\"a.b\"\"c\""), Ok((Some("s".into()), "a.b\"c".into())));
        for bad in ["", "a.", ".a", "a.b.c", "\"open"] {
            assert!(relation_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn literals_and_identifiers_are_quoted() {
        assert_eq!(quote_literal("it's a\\b"), Ok("'it''s a\\b'".to_string()));
        assert!(quote_literal("a\0b").is_err());
        assert_eq!(quote_ident("docs_2"), "docs_2");
        assert_eq!(quote_ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(quote_ident("2x"), "\"2x\"");
    }

    #[test]
    fn only_single_queries_pass() {
        assert_eq!(one_query("SELECT 1"), Ok(()));
        assert_eq!(one_query("WITH t AS (SELECT 1 AS a) SELECT a FROM t;"), Ok(()));
        assert_eq!(one_query("VALUES (1), (2)"), Ok(()));
        assert!(one_query("SELECT 1; SELECT 2").unwrap_err().starts_with("42601:"));
        assert!(one_query("SELECT 1; COMMIT; DELETE FROM t").unwrap_err().starts_with("42601:"));
        assert!(one_query("SELEC 1").unwrap_err().starts_with("42601:"));
        assert!(one_query("").unwrap_err().starts_with("42601:"));
        assert_eq!(
            one_query("insert into t values (1)"),
            Err("25006: cannot run INSERT: this session is read-only".into())
        );
        assert!(one_query("DELETE FROM t").unwrap_err().starts_with("25006:"));
        assert!(one_query("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x")
            .unwrap_err()
            .starts_with("25006: cannot run INSERT"));
        assert!(one_query("SET statement_timeout = 0").unwrap_err().starts_with("0A000:"));
        // A semicolon inside a string or a comment does not end the statement.
        assert_eq!(one_query("SELECT ';' -- ; DROP TABLE t\n"), Ok(()));
    }

    #[test]
    fn create_table_text_has_comments_and_key() {
        let row = |pairs: &[(&str, &str)]| -> Map<String, Value> {
            pairs.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect()
        };
        let relation = row(&[("schema", "public"), ("kind", "r"), ("comment", "Orders\nby day")]);
        let columns = [
            row(&[
                ("schema", "public"),
                ("attnum", "1"),
                ("name", "day"),
                ("type", "date"),
                ("not_null", "t"),
            ]),
            row(&[
                ("schema", "public"),
                ("attnum", "2"),
                ("name", "Total"),
                ("type", "numeric(10,2)"),
                ("not_null", "f"),
                ("comment", "in euros"),
            ]),
            row(&[("schema", "other"), ("attnum", "1"), ("name", "x"), ("type", "text"), ("not_null", "f")]),
        ];
        let keys = [row(&[("schema", "public"), ("key", "2 1")])];
        let description = TableDescription::new("public", "orders", &relation, &columns, &keys);
        assert_eq!(description.primary_key, ["Total", "day"]);
        assert_eq!(
            description.ddl(),
            "-- Orders by day\nCREATE TABLE public.orders (\n  day date NOT NULL,\n  \"Total\" numeric(10,2), -- in euros\n  PRIMARY KEY (\"Total\", day)\n);"
        );
    }
}
