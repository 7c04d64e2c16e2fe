//! `tarn mcp` end to end: the real `tarn` binary serving a warehouse, and the same binary
//! as a child process speaking the Model Context Protocol on its standard input and
//! output, driven by rmcp's own client and reaching the server over the wire protocol as
//! any other client does.
//!
//! The test lives in the server's package so that `cargo test` builds the `tarn` binary
//! for it (`CARGO_BIN_EXE_tarn`) with the dependencies it builds for every other test.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};

const TARN: &str = env!("CARGO_BIN_EXE_tarn");

/// A port nothing listens on now (the kernel's pick, released).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// `tarn` serving a new warehouse in a temporary folder; stopped when dropped.
struct TarnServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TarnServer {
    async fn start() -> TarnServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Command::new(TARN)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data")
            .arg(dir.path().join("data"))
            .arg("--models")
            .arg(dir.path().join("models"))
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("starting tarn");
        let mut server = TarnServer { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio_postgres::connect(&server.connection_string(), tokio_postgres::NoTls).await.is_err() {
            if let Some(status) = server.child.try_wait().expect("tarn's status") {
                panic!("tarn exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "tarn did not accept connections within a minute");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    fn connection_string(&self) -> String {
        format!("host=127.0.0.1 port={} user=tarn dbname=tarn", self.port)
    }

    async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.connection_string(), tokio_postgres::NoTls)
            .await
            .expect("connects");
        tokio::spawn(connection);
        client
    }
}

impl Drop for TarnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type McpClient = RunningService<RoleClient, ()>;

/// Starts `tarn mcp` against `server` and completes the MCP handshake.
async fn start_mcp(server: &TarnServer) -> McpClient {
    let command = tokio::process::Command::new(TARN).configure(|command| {
        command.arg("mcp").arg("--connect").arg(server.connection_string()).env("RUST_LOG", "warn");
    });
    let transport = TokioChildProcess::new(command).expect("starting tarn mcp");
    ().serve(transport).await.expect("the MCP handshake")
}

/// Calls `tool` and returns whether it failed and its text.
async fn call(client: &McpClient, tool: &str, arguments: Value) -> (bool, String) {
    let Value::Object(arguments) = arguments else { panic!("arguments are an object") };
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
        .await
        .unwrap_or_else(|e| panic!("{tool} answered: {e}"));
    let text = result.content.iter().filter_map(|c| c.as_text()).map(|t| t.text.as_str()).collect();
    (result.is_error == Some(true), text)
}

/// Calls `tool`, which must succeed with JSON text.
async fn call_json(client: &McpClient, tool: &str, arguments: Value) -> Value {
    let (failed, text) = call(client, tool, arguments).await;
    assert!(!failed, "{tool} failed: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{tool} gave JSON ({e}): {text}"))
}

/// Calls `tool`, which must fail; returns its error text.
async fn call_error(client: &McpClient, tool: &str, arguments: Value) -> String {
    let (failed, text) = call(client, tool, arguments).await;
    assert!(failed, "{tool} should have failed, gave {text}");
    text
}

async fn doc_count(pg: &tokio_postgres::Client) -> i64 {
    pg.query_one("SELECT count(*) FROM docs", &[]).await.expect("count").get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn tools_explore_and_query_read_only() {
    let server = TarnServer::start().await;
    let pg = server.client().await;
    let rows: Vec<String> = (1..=150).map(|i| format!("({i}, 'title {i}', NULL)")).collect();
    pg.batch_execute(&format!(
        "CREATE TABLE docs (id BIGINT PRIMARY KEY, title TEXT NOT NULL, body TEXT);
         COMMENT ON TABLE docs IS 'Documents and their titles';
         COMMENT ON COLUMN docs.title IS 'The headline';
         CREATE SCHEMA sales;
         CREATE TABLE sales.orders (order_id INT PRIMARY KEY, amount DOUBLE PRECISION);
         COMMENT ON TABLE sales.orders IS 'One row per order';
         CREATE TABLE sales.docs (id INT);
         INSERT INTO docs VALUES {};",
        rows.join(", ")
    ))
    .await
    .expect("setup");
    let client = start_mcp(&server).await;

    let info = client.peer_info().expect("the server's initialize result");
    assert_eq!(info.server_info.as_ref().map(|server| server.name.as_str()), Some("tarn"));
    let mut tools: Vec<String> =
        client.list_all_tools().await.expect("tools/list").into_iter().map(|t| t.name.to_string()).collect();
    tools.sort();
    assert_eq!(tools, ["describe_table", "explain", "find_tables", "list_schemas", "list_tables", "query"]);

    let schemas = call_json(&client, "list_schemas", json!({})).await;
    assert_eq!(schemas, json!(["public", "sales"]));

    let tables = call_json(&client, "list_tables", json!({})).await;
    assert_eq!(
        tables,
        json!([
            { "schema": "public", "name": "docs", "kind": "table", "comment": "Documents and their titles" },
            { "schema": "sales", "name": "docs", "kind": "table" },
            { "schema": "sales", "name": "orders", "kind": "table", "comment": "One row per order" },
        ])
    );
    let sales = call_json(&client, "list_tables", json!({ "schema": "sales" })).await;
    assert_eq!(sales.as_array().map(Vec::len), Some(2), "{sales}");

    // Unqualified, a name in several schemas is public's, as the default search_path has it.
    let docs = call_json(&client, "describe_table", json!({ "table": "docs" })).await;
    assert_eq!(docs["schema"], "public");
    assert_eq!(docs["comment"], "Documents and their titles");
    assert_eq!(
        docs["columns"],
        json!([
            { "name": "id", "type": "bigint", "nullable": false, "comment": null },
            { "name": "title", "type": "text", "nullable": false, "comment": "The headline" },
            { "name": "body", "type": "text", "nullable": true, "comment": null },
        ])
    );
    assert_eq!(docs["primary_key"], json!(["id"]));
    assert_eq!(
        docs["ddl"],
        "-- Documents and their titles\nCREATE TABLE public.docs (\n  id bigint NOT NULL,\n  \
         title text NOT NULL, -- The headline\n  body text,\n  PRIMARY KEY (id)\n);"
    );
    let orders = call_json(&client, "describe_table", json!({ "table": "Sales.Orders" })).await;
    assert_eq!(orders["primary_key"], json!(["order_id"]));
    let missing = call_error(&client, "describe_table", json!({ "table": "nosuch" })).await;
    assert!(missing.starts_with("42P01:"), "{missing}");

    // Rows as text, at most `limit`, and whether more were there.
    let first = call_json(
        &client,
        "query",
        json!({ "sql": "SELECT id, title, body FROM docs ORDER BY id", "limit": 2 }),
    )
    .await;
    assert_eq!(
        first,
        json!({
            "columns": ["id", "title", "body"],
            "rows": [["1", "title 1", null], ["2", "title 2", null]],
            "more_rows": true,
        })
    );
    // The server's row limit (100) caps a bigger limit and applies without one.
    for arguments in
        [json!({ "sql": "SELECT id FROM docs" }), json!({ "sql": "SELECT id FROM docs", "limit": 1000 })]
    {
        let capped = call_json(&client, "query", arguments).await;
        assert_eq!(capped["rows"].as_array().map(Vec::len), Some(100));
        assert_eq!(capped["more_rows"], true);
    }
    let count = call_json(&client, "query", json!({ "sql": "SELECT count(*) AS n FROM docs" })).await;
    assert_eq!(count, json!({ "columns": ["n"], "rows": [["150"]], "more_rows": false }));

    // Refused before anything is sent: several statements; a syntax error, after which
    // the session goes on.
    let several = call_error(&client, "query", json!({ "sql": "SELECT 1; SELECT 2" })).await;
    assert!(several.starts_with("42601:"), "{several}");
    let syntax = call_error(&client, "query", json!({ "sql": "SELEC 1" })).await;
    assert!(syntax.starts_with("42601:"), "{syntax}");
    let after = call_json(&client, "query", json!({ "sql": "SELECT 'still here' AS answer" })).await;
    assert_eq!(after["rows"], json!([["still here"]]));
    // Failed by the server, inside the transaction: the next call starts afresh.
    let undefined = call_error(&client, "query", json!({ "sql": "SELECT * FROM nosuch" })).await;
    assert!(undefined.starts_with("42P01:"), "{undefined}");
    let after = call_json(&client, "query", json!({ "sql": "SELECT id FROM docs WHERE id = 7" })).await;
    assert_eq!(after["rows"], json!([["7"]]));

    let (failed, plan) =
        call(&client, "explain", json!({ "sql": "SELECT title FROM docs WHERE id = 1" })).await;
    assert!(!failed && plan.contains("physical_plan"), "{plan}");

    // A write attempt changes nothing.
    let write =
        call_error(&client, "query", json!({ "sql": "INSERT INTO docs VALUES (1000, 'new', NULL)" })).await;
    assert!(write.starts_with("25006:"), "{write}");
    assert_eq!(doc_count(&pg).await, 150);
    // One the local check lets through (a data-modifying WITH) runs in a READ ONLY
    // transaction that is rolled back: whatever the server answers, nothing changes.
    let sneaky = "WITH w AS (INSERT INTO docs VALUES (1001, 'new', NULL) RETURNING id) SELECT id FROM w";
    let _ = call(&client, "query", json!({ "sql": sneaky })).await;
    assert_eq!(doc_count(&pg).await, 150);

    client.cancel().await.expect("closing the MCP session");
}

/// A Tarn server that cannot be reached stops `tarn mcp` at start, with the reason on
/// standard error and nothing on standard output (which belongs to the protocol).
#[test]
fn unreachable_server_is_an_error_at_start() {
    let port = free_port();
    let output = Command::new(TARN)
        .args(["mcp", "--connect", &format!("host=127.0.0.1 port={port} user=tarn dbname=tarn")])
        .stdin(Stdio::null())
        .output()
        .expect("running tarn mcp");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&output.stdout));
    assert!(stderr.contains("connecting to the Tarn server"), "{stderr}");
}
