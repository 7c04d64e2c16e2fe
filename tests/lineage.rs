//! Lineage through a real driver: OpenLineage run events (START, COMPLETE, FAIL, ABORT)
//! for writes, `CREATE TABLE AS`, `COPY`, table DDL and, when a session asks, queries,
//! in `tarn_lineage_events`; the `columnLineage` facet's edges of every kind through
//! CTEs, subqueries, joins, unions, windows, `CASE` and the kNN and BM25 nodes;
//! `lineage()` upstream and downstream across statements; an endpoint that is down or
//! never answers holds no statement back, a live one gets every event; and every event
//! is checked against the spec by openlineage-python (`tests/lineage/`).

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::Value;
use tarn_tests::{python_venv, TestServer};
use tokio_postgres::{Client, CopyInSink};

/// A server that emits lineage (`lineage = true`), sending it to `url` if given.
async fn start(url: Option<&str>) -> TestServer {
    let config = tarn_server::ServerConfig {
        lineage: true,
        lineage_url: url.map(str::to_string),
        ..Default::default()
    };
    TestServer::start_configured(config).await
}

/// Every event so far, oldest first.
async fn events(client: &Client) -> Vec<Value> {
    client
        .query("SELECT event::text FROM tarn_lineage_events ORDER BY event_time", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
        .collect()
}

/// The events of the statements whose SQL contains `sql`.
fn of<'a>(events: &'a [Value], sql: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["job"]["facets"]["sql"]["query"].as_str().is_some_and(|q| q.contains(sql)))
        .collect()
}

fn types(events: &[&Value]) -> Vec<String> {
    events.iter().map(|e| e["eventType"].as_str().unwrap().to_string()).collect()
}

/// The one output's column lineage of a COMPLETE event: (output column, input
/// `table.column`, type, subtype) for every edge.
fn edges(event: &Value) -> BTreeSet<(String, String, String, String)> {
    let mut found = BTreeSet::new();
    let outputs = event["outputs"].as_array().unwrap();
    let Some(fields) = outputs[0]["facets"]["columnLineage"]["fields"].as_object() else { return found };
    for (column, lineage) in fields {
        for input in lineage["inputFields"].as_array().unwrap() {
            let from = format!("{}.{}", input["name"].as_str().unwrap(), input["field"].as_str().unwrap());
            for t in input["transformations"].as_array().unwrap() {
                found.insert((
                    column.clone(),
                    from.clone(),
                    t["type"].as_str().unwrap().to_string(),
                    t["subtype"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    found
}

fn edge(column: &str, from: &str, kind: &str, subtype: &str) -> (String, String, String, String) {
    (column.into(), from.into(), kind.into(), subtype.into())
}

/// The COMPLETE event of the statement whose SQL contains `sql` (there must be one).
fn completed<'a>(events: &'a [Value], sql: &str) -> &'a Value {
    let run = of(events, sql);
    assert_eq!(types(&run), ["START", "COMPLETE"], "{sql}: {run:#?}");
    run[1]
}

async fn setup(client: &Client) {
    client
        .batch_execute(
            "CREATE TABLE customers (id INT PRIMARY KEY, name TEXT, email TEXT, vip BOOLEAN, region TEXT);
             CREATE TABLE orders (id INT PRIMARY KEY, customer INT, amount DOUBLE PRECISION, region TEXT);
             INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com', true, 'eu'),
                 (2, 'Bob', 'bob@example.com', false, 'us'), (3, 'Cy', 'cy@example.com', false, 'eu');
             INSERT INTO orders VALUES (10, 1, 30, 'eu'), (11, 1, 5, 'eu'), (12, 2, 50, 'us'), (13, 3, 20, 'eu');",
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_ddl_and_copy_emit_runs_with_datasets_versions_and_column_lineage() {
    let server = start(None).await;
    let client = server.client_named("etl").await;
    setup(&client).await;
    let all = events(&client).await;

    // DDL: a CREATE lifecycle change, with the table's columns once it exists.
    let create = completed(&all, "CREATE TABLE orders");
    assert_eq!(create["job"]["name"], "etl");
    assert_eq!(create["job"]["namespace"], "tarn");
    assert_eq!(create["job"]["facets"]["jobType"]["jobType"], "DDL");
    let output = &create["outputs"][0];
    assert_eq!(output["name"], "public.orders");
    assert_eq!(output["facets"]["lifecycleStateChange"]["lifecycleStateChange"], "CREATE");
    let fields: Vec<&str> = output["facets"]["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["id", "customer", "amount", "region"]);
    assert_eq!(output["facets"]["schema"]["fields"][2]["type"], "float8");

    // INSERT ... VALUES: the table written at the version it made, with its row count.
    let insert = completed(&all, "INSERT INTO orders");
    let output = &insert["outputs"][0];
    assert_eq!(output["outputFacets"]["outputStatistics"]["rowCount"], 4);
    let version: u64 = output["facets"]["version"]["datasetVersion"].as_str().unwrap().parse().unwrap();
    assert!(version >= 1, "{output}");
    assert!(output["namespace"].as_str().unwrap().starts_with("file://"), "{output}");
    assert_eq!(output["facets"]["dataSource"]["uri"], output["namespace"]);
    assert_eq!(of(&all, "INSERT INTO orders")[0]["run"]["runId"], insert["run"]["runId"]);
    assert!(insert["inputs"].as_array().unwrap().is_empty());

    // CREATE TABLE AS through a CTE, a join, grouping, a window, CASE and a sort.
    client
        .batch_execute(
            "CREATE TABLE totals AS
             WITH big AS (SELECT * FROM orders WHERE amount > 10)
             SELECT c.name AS customer, upper(c.email) AS email, sum(b.amount) AS total,
                    rank() OVER (PARTITION BY b.region ORDER BY sum(b.amount) DESC) AS place,
                    CASE WHEN c.vip THEN 'vip' ELSE 'regular' END AS tier
             FROM big b JOIN customers c ON b.customer = c.id
             GROUP BY c.name, c.email, b.region, c.vip
             ORDER BY total DESC",
        )
        .await
        .unwrap();
    let all = events(&client).await;
    let ctas = completed(&all, "CREATE TABLE totals");
    let inputs: BTreeSet<&str> =
        ctas["inputs"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(inputs, BTreeSet::from(["public.orders", "public.customers"]));
    for input in ctas["inputs"].as_array().unwrap() {
        assert!(input["facets"]["version"]["datasetVersion"].is_string(), "{input}");
    }
    assert_eq!(ctas["outputs"][0]["facets"]["lifecycleStateChange"]["lifecycleStateChange"], "CREATE");
    assert_eq!(ctas["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"], 3);
    let found = edges(ctas);
    for wanted in [
        edge("customer", "public.customers.name", "DIRECT", "IDENTITY"),
        edge("email", "public.customers.email", "DIRECT", "TRANSFORMATION"),
        edge("total", "public.orders.amount", "DIRECT", "AGGREGATION"),
        edge("place", "public.orders.amount", "INDIRECT", "WINDOW"),
        edge("place", "public.orders.region", "INDIRECT", "WINDOW"),
        edge("tier", "public.customers.vip", "INDIRECT", "CONDITIONAL"),
        // Every column: the CTE's filter, the join's keys, the groups and the sort.
        edge("customer", "public.orders.amount", "INDIRECT", "FILTER"),
        edge("email", "public.orders.customer", "INDIRECT", "JOIN"),
        edge("email", "public.customers.id", "INDIRECT", "JOIN"),
        edge("total", "public.orders.region", "INDIRECT", "GROUP_BY"),
        edge("tier", "public.customers.name", "INDIRECT", "GROUP_BY"),
        edge("customer", "public.orders.amount", "INDIRECT", "SORT"),
    ] {
        assert!(found.contains(&wanted), "{wanted:?} not in {found:#?}");
    }
    // What decides only: no direct edge from a filter's, key's or condition's column.
    assert!(!found.contains(&edge("tier", "public.customers.vip", "DIRECT", "TRANSFORMATION")), "{found:#?}");
    assert!(!found.iter().any(|e| e.1 == "public.orders.id"), "{found:#?}");

    // INSERT ... SELECT with a union and an IN subquery (a semi join once optimized).
    client
        .batch_execute(
            "CREATE TABLE names (name TEXT);
             INSERT INTO names SELECT name FROM customers WHERE id IN (SELECT customer FROM orders WHERE amount > 40)
                 UNION ALL SELECT region FROM orders",
        )
        .await
        .unwrap();
    let all = events(&client).await;
    let found = edges(completed(&all, "INSERT INTO names"));
    for wanted in [
        edge("name", "public.customers.name", "DIRECT", "IDENTITY"),
        edge("name", "public.orders.region", "DIRECT", "IDENTITY"),
        edge("name", "public.orders.customer", "INDIRECT", "JOIN"),
        edge("name", "public.customers.id", "INDIRECT", "JOIN"),
    ] {
        assert!(found.contains(&wanted), "{wanted:?} not in {found:#?}");
    }

    // UPDATE ... FROM: the column it sets, from the other table; not the ones it keeps.
    client
        .batch_execute("UPDATE customers SET region = o.region FROM orders o WHERE o.customer = customers.id AND o.amount > 40")
        .await
        .unwrap();
    let all = events(&client).await;
    let update = completed(&all, "UPDATE customers");
    let found = edges(update);
    assert!(found.contains(&edge("region", "public.orders.region", "DIRECT", "IDENTITY")), "{found:#?}");
    assert!(found.contains(&edge("region", "public.orders.amount", "INDIRECT", "FILTER")), "{found:#?}");
    assert!(found.iter().all(|e| e.0 == "region"), "only the set column: {found:#?}");
    // A column set from its own value is a change too.
    client.batch_execute("UPDATE orders SET amount = amount * 2 WHERE region = 'us'").await.unwrap();
    let all = events(&client).await;
    let found = edges(completed(&all, "UPDATE orders SET amount"));
    assert!(
        found.contains(&edge("amount", "public.orders.amount", "DIRECT", "TRANSFORMATION")),
        "{found:#?}"
    );
    assert!(found.contains(&edge("amount", "public.orders.region", "INDIRECT", "FILTER")), "{found:#?}");
    assert!(found.iter().all(|e| e.0 == "amount"), "only the set column: {found:#?}");
    assert_eq!(update["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"], 1);

    // A statement that fails as it runs: START, then FAIL with its error.
    let error = client
        .batch_execute("INSERT INTO names SELECT (100 / (id - 10))::text FROM orders")
        .await
        .unwrap_err();
    assert!(tarn_tests::describe(&error).starts_with("22012"), "{error:?}");
    let all = events(&client).await;
    let failed = of(&all, "INSERT INTO names SELECT (100");
    assert_eq!(types(&failed), ["START", "FAIL"]);
    assert_eq!(failed[0]["run"]["runId"], failed[1]["run"]["runId"]);
    let message = failed[1]["run"]["facets"]["errorMessage"]["message"].as_str().unwrap();
    assert!(message.to_lowercase().contains("by zero"), "{message}");
    assert_eq!(failed[1]["run"]["facets"]["errorMessage"]["programmingLanguage"], "SQL");

    // COPY FROM STDIN: COMPLETE with the rows; a COPY the client fails: ABORT.
    let sink = client.copy_in("COPY names FROM STDIN").await.unwrap();
    let mut sink = pin!(sink);
    sink.send(Cursor::new(b"Dee\nEve\n".to_vec())).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    let sink: CopyInSink<Cursor<Vec<u8>>> = client.copy_in("COPY orders (id) FROM STDIN").await.unwrap();
    drop(sink);
    client.batch_execute("SELECT 1").await.unwrap_or(());
    let all = events(&client).await;
    let copied = completed(&all, "COPY names FROM STDIN");
    assert_eq!(copied["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"], 2);
    assert_eq!(copied["job"]["facets"]["jobType"]["jobType"], "COPY");
    assert_eq!(types(&of(&all, "COPY orders")), ["START", "ABORT"]);

    // The job's name: the session's tarn.job_name over its application_name.
    client
        .batch_execute("SET tarn.job_name = 'nightly'; DELETE FROM names WHERE name = 'Eve'")
        .await
        .unwrap();
    let all = events(&client).await;
    let delete = completed(&all, "DELETE FROM names");
    assert_eq!(delete["job"]["name"], "nightly");
    assert_eq!(delete["outputs"][0]["name"], "public.names");
    assert_eq!(delete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"], 1);

    // In a block: a write completes at COMMIT, with the version the commit made, and
    // is aborted by ROLLBACK.
    client.batch_execute("BEGIN; INSERT INTO names VALUES ('kept'); COMMIT").await.unwrap();
    client.batch_execute("BEGIN; INSERT INTO names VALUES ('undone'); ROLLBACK").await.unwrap();
    let all = events(&client).await;
    let kept = completed(&all, "INSERT INTO names VALUES ('kept')");
    assert!(kept["outputs"][0]["facets"]["version"]["datasetVersion"].is_string(), "{kept}");
    let commit = all.iter().position(|e| e["job"]["facets"]["sql"]["query"] == "COMMIT");
    assert!(commit.is_none(), "COMMIT is no run of its own");
    assert_eq!(types(&of(&all, "INSERT INTO names VALUES ('undone')")), ["START", "ABORT"]);

    // Rename, truncate and drop: lifecycle changes, a rename with the old name.
    client
        .batch_execute("ALTER TABLE names RENAME TO people; TRUNCATE people; DROP TABLE people")
        .await
        .unwrap();
    let all = events(&client).await;
    let renamed = &completed(&all, "RENAME TO people")["outputs"][0];
    assert_eq!(renamed["name"], "public.people");
    assert_eq!(renamed["facets"]["lifecycleStateChange"]["lifecycleStateChange"], "RENAME");
    assert_eq!(renamed["facets"]["lifecycleStateChange"]["previousIdentifier"]["name"], "public.names");
    let change = |sql: &str| {
        completed(&all, sql)["outputs"][0]["facets"]["lifecycleStateChange"]["lifecycleStateChange"].clone()
    };
    assert_eq!(change("TRUNCATE people"), "TRUNCATE");
    assert_eq!(change("DROP TABLE people"), "DROP");

    // Queries: nothing unless the session asks; then their inputs at their versions.
    client.query("SELECT sum(amount) FROM orders WHERE region = 'eu'", &[]).await.unwrap();
    assert!(of(&events(&client).await, "SELECT sum(amount)").is_empty());
    client.batch_execute("SET tarn.lineage_reads = on").await.unwrap();
    client.query("SELECT count(*) FROM orders WHERE region = 'us'", &[]).await.unwrap();
    let all = events(&client).await;
    let read = completed(&all, "SELECT count(*) FROM orders");
    assert_eq!(read["inputs"][0]["name"], "public.orders");
    assert!(read["inputs"][0]["facets"]["version"]["datasetVersion"].is_string());
    assert!(read["outputs"].as_array().unwrap().is_empty());

    // Every event carries what the spec requires.
    for event in &all {
        assert_eq!(event["producer"], "https://github.com/tarn-db/tarn");
        assert!(event["schemaURL"].as_str().unwrap().ends_with("OpenLineage.json#/$defs/RunEvent"));
        assert!(event["eventTime"].as_str().unwrap().ends_with('Z'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knn_and_bm25_searches_carry_column_lineage() {
    let server = start(None).await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE docs (id INT PRIMARY KEY, title TEXT, body TEXT, embedding VECTOR(3));
             INSERT INTO docs VALUES (1, 'Foxes', 'the quick brown fox', '[1,0,0]'),
                 (2, 'Dogs', 'the lazy dog', '[0,1,0]'), (3, 'Both', 'fox and dog', '[0.7,0.7,0]');
             CREATE INDEX ON docs USING bm25 (body);
             CREATE TABLE near AS SELECT id, title FROM docs ORDER BY embedding <-> '[1,0,0]' LIMIT 2;
             CREATE TABLE hits AS SELECT id, bm25_score(body, 'fox') AS score FROM docs
                 WHERE body @@@ 'fox' ORDER BY bm25_score(body, 'fox') DESC LIMIT 2",
        )
        .await
        .unwrap();
    let all = events(&client).await;
    let found = edges(completed(&all, "CREATE TABLE near"));
    assert!(found.contains(&edge("title", "public.docs.title", "DIRECT", "IDENTITY")), "{found:#?}");
    assert!(found.contains(&edge("title", "public.docs.embedding", "INDIRECT", "SORT")), "{found:#?}");
    assert!(found.contains(&edge("id", "public.docs.embedding", "INDIRECT", "SORT")), "{found:#?}");
    let found = edges(completed(&all, "CREATE TABLE hits"));
    assert!(found.contains(&edge("score", "public.docs.body", "DIRECT", "TRANSFORMATION")), "{found:#?}");
    assert!(found.contains(&edge("id", "public.docs.body", "INDIRECT", "FILTER")), "{found:#?}");
    assert!(found.contains(&edge("id", "public.docs.body", "INDIRECT", "SORT")), "{found:#?}");
    // The plans were the search nodes' (so their lineage is what was checked).
    let plan =
        tarn_tests::explain(&client, "SELECT id, title FROM docs ORDER BY embedding <-> '[1,0,0]' LIMIT 2")
            .await;
    assert!(plan.contains("TarnKnn"), "{plan}");
    let plan = tarn_tests::explain(
        &client,
        "SELECT id, bm25_score(body, 'fox') FROM docs WHERE body @@@ 'fox' ORDER BY bm25_score(body, 'fox') DESC LIMIT 2",
    )
    .await;
    assert!(plan.contains("TarnBm25"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_walks_columns_upstream_and_downstream_across_statements() {
    let server = start(None).await;
    let client = server.client().await;
    setup(&client).await;
    client
        .batch_execute(
            "CREATE TABLE spend AS SELECT customer, sum(amount) AS total, count(*) AS big FROM orders
                 WHERE amount > 1 GROUP BY customer;
             CREATE TABLE report (who TEXT, total DOUBLE PRECISION);
             INSERT INTO report SELECT c.name, s.total FROM spend s JOIN customers c ON c.id = s.customer;
             INSERT INTO report SELECT c.name, s.total FROM spend s JOIN customers c ON c.id = s.customer",
        )
        .await
        .unwrap();
    let rows = client
        .query(
            "SELECT depth, source_table || '.' || source_column, transformation_type, subtype, runs \
             FROM lineage('public.report.total') ORDER BY 1, 2, 3, 4",
            &[],
        )
        .await
        .unwrap();
    let walked: Vec<(i32, String, String, String, i64)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect();
    let has = |depth: i32, from: &str, kind: &str, subtype: &str| {
        walked.iter().any(|w| w.0 == depth && w.1 == from && w.2 == kind && w.3 == subtype)
    };
    assert!(has(1, "public.spend.total", "DIRECT", "IDENTITY"), "{walked:#?}");
    assert!(has(1, "public.spend.customer", "INDIRECT", "JOIN"), "{walked:#?}");
    assert!(has(2, "public.orders.amount", "DIRECT", "AGGREGATION"), "{walked:#?}");
    assert!(has(2, "public.orders.customer", "INDIRECT", "GROUP_BY"), "{walked:#?}");
    // A column named as the query names it; count(*) decided by the filter and groups.
    let rows = client
        .query("SELECT source_column, subtype FROM lineage('public.spend.big') ORDER BY 1, 2", &[])
        .await
        .unwrap();
    let big: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(big, [("amount".to_string(), "FILTER".to_string()), ("customer".into(), "GROUP_BY".into())]);
    let rows = client.query("SELECT * FROM lineage('public.spend.customer')", &[]).await.unwrap();
    assert!(!rows.is_empty(), "an unaliased column keeps its name");
    // The INSERT ran twice: one edge, two runs.
    assert!(walked.iter().any(|w| w.1 == "public.spend.total" && w.4 == 2), "{walked:#?}");

    let rows = client
        .query(
            "SELECT DISTINCT depth, target_table || '.' || target_column FROM lineage('orders.amount', 'downstream') \
             WHERE transformation_type = 'DIRECT' ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let down: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(down, [(1, "public.spend.total".to_string()), (2, "public.report.total".to_string())]);

    let error = client.query("SELECT * FROM lineage('nodots')", &[]).await.unwrap_err();
    assert!(tarn_tests::describe(&error).contains("lineage() takes a column"), "{error:?}");
}

/// A lineage endpoint at `url`, and a client.
async fn server_sending_to(url: &str) -> (TestServer, Client) {
    let server = start(Some(url)).await;
    let client = server.client().await;
    (server, client)
}

/// Runs 20 one-row inserts; none may take long (an endpoint in the way would hold
/// each past the seconds its retries take).
async fn inserts_stay_quick(client: &Client) {
    client.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)").await.unwrap();
    for i in 0..20 {
        let started = Instant::now();
        client.execute("INSERT INTO t VALUES ($1, 'x')", &[&i]).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "insert {i} took {:?}", started.elapsed());
    }
    let all = events(client).await;
    assert_eq!(of(&all, "INSERT INTO t").len(), 40, "every event is kept in the table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_down_or_never_answering_holds_no_statement_back() {
    // Down: nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (_server, client) = server_sending_to(&format!("http://127.0.0.1:{port}")).await;
    inserts_stay_quick(&client).await;

    // Never answering: connections are taken and left hanging.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let (_server, client) = server_sending_to(&format!("http://127.0.0.1:{port}/")).await;
    inserts_stay_quick(&client).await;
}

fn lineage_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lineage")
}

fn venv_python() -> PathBuf {
    python_venv(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "tarn-lineage-pyenv",
        &lineage_dir().join("requirements.txt"),
    )
    .unwrap_or_else(|e| panic!("the OpenLineage client could not be installed:\n{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_endpoint_gets_every_event_and_openlineage_python_accepts_them_all() {
    let python = venv_python();
    let dir = tempfile::tempdir().unwrap();
    let (port_file, received) = (dir.path().join("port"), dir.path().join("received.jsonl"));
    let mut receiver = std::process::Command::new(&python)
        .arg(lineage_dir().join("openlineage_check.py"))
        .arg("serve")
        .arg(&port_file)
        .arg(&received)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let port = loop {
        if let Ok(port) = std::fs::read_to_string(&port_file) {
            break port;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the receiver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (_server, client) = server_sending_to(&format!("http://127.0.0.1:{port}")).await;
    setup(&client).await;
    client
        .batch_execute(
            "CREATE TABLE totals AS SELECT c.region, sum(o.amount) AS total FROM orders o JOIN customers c \
                 ON c.id = o.customer GROUP BY c.region;
             ALTER TABLE totals RENAME TO sums;
             SET tarn.lineage_reads = on;
             SELECT * FROM sums ORDER BY total;",
        )
        .await
        .unwrap();
    client.batch_execute("INSERT INTO sums SELECT region, 100 / (id - 10) FROM orders").await.unwrap_err();
    let sink: CopyInSink<Cursor<Vec<u8>>> = client.copy_in("COPY sums FROM STDIN").await.unwrap();
    drop(sink);
    client.batch_execute("TRUNCATE sums; DROP TABLE sums").await.unwrap_or(());

    let kept = events(&client).await;
    let kinds: BTreeSet<&str> = kept.iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(kinds, BTreeSet::from(["START", "COMPLETE", "FAIL", "ABORT"]));
    let key = |e: &Value| {
        (e["run"]["runId"].as_str().unwrap().to_string(), e["eventType"].as_str().unwrap().to_string())
    };
    let wanted: BTreeSet<_> = kept.iter().map(key).collect();
    let started = Instant::now();
    let got = loop {
        let got: BTreeSet<_> = std::fs::read_to_string(&received)
            .unwrap_or_default()
            .lines()
            .map(|l| key(&serde_json::from_str(l).unwrap()))
            .collect();
        if wanted.is_subset(&got) || started.elapsed() > Duration::from_secs(30) {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = receiver.kill();
    // (It may have more: the events of the query that read the table.)
    let missing: Vec<_> = wanted.difference(&got).collect();
    assert!(missing.is_empty(), "the endpoint did not get (or refused as invalid) {missing:?}");

    // The table's events, as kept, validate too.
    let file = dir.path().join("kept.jsonl");
    std::fs::write(&file, kept.iter().map(|e| format!("{e}\n")).collect::<String>()).unwrap();
    let output = std::process::Command::new(&python)
        .arg(lineage_dir().join("openlineage_check.py"))
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains(&format!("{} events are valid", kept.len())), "{text}");
}
