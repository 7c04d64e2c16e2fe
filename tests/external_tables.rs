//! External Parquet tables and `COPY ... TO 'file'` through a real driver, on a server
//! whose configuration allows one folder (`external_locations`): Parquet written by the
//! `parquet` crate (the writer DataFusion uses) and by Tarn's own `COPY`, schema
//! inference, filters pruned by statistics, joins with Tarn tables, new files seen at
//! once, `REFRESH TABLE`, read-only, the allow-list (42501 for anything outside it,
//! through `..` and symbolic links too), `CREATE TABLE ... AS SELECT` from one, and the
//! definition after a restart.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use tarn_tests::{explain, TestServer};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// `rows` rows from `first`: id, a group of ten, a price, a name, a flag.
fn write_events(path: &Path, first: i64, rows: i64, with_note: bool) {
    let ids: Vec<i64> = (first..first + rows).collect();
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("grp", DataType::Int64, true),
        Field::new("price", DataType::Float64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("flag", DataType::Boolean, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(Int64Array::from(ids.iter().map(|i| (i % 10 != 7).then_some(i / 10)).collect::<Vec<_>>())),
        Arc::new(Float64Array::from(ids.iter().map(|i| *i as f64 * 0.5).collect::<Vec<_>>())),
        Arc::new(StringArray::from(ids.iter().map(|i| format!("n{i}")).collect::<Vec<_>>())),
        Arc::new(BooleanArray::from(ids.iter().map(|i| i % 2 == 0).collect::<Vec<_>>())),
    ];
    if with_note {
        fields.push(Field::new("note", DataType::Utf8, true));
        columns
            .push(Arc::new(StringArray::from(ids.iter().map(|i| format!("note {i}")).collect::<Vec<_>>())));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(1000))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(properties)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

async fn one_i64(client: &Client, sql: &str) -> i64 {
    match client.query_one(sql, &[]).await {
        Ok(row) => row.get(0),
        Err(e) => panic!("{sql}: {}", tarn_tests::describe(&e)),
    }
}

/// A server that may read and write files under `lake`, and a client of it.
async fn lake_server(lake: &std::path::Path) -> (TestServer, Client) {
    let config =
        tarn_server::ServerConfig { external_locations: vec![lake.to_path_buf()], ..Default::default() };
    let server = TestServer::start_configured(config).await;
    let client = server.client().await;
    (server, client)
}

/// Asserts a relation's columns and their types, as `pg_attribute` lists them.
async fn assert_columns(client: &Client, relation: &str, expect: &[(&str, &str)]) {
    let rows = client
        .query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid WHERE c.relname = $1 AND a.attnum > 0 ORDER BY a.attnum",
            &[&relation],
        )
        .await
        .unwrap();
    let columns: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expect: Vec<(String, String)> = expect.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(columns, expect, "{relation}");
}

async fn refused(client: &Client, sql: &str, state: SqlState) {
    let e = client.batch_execute(sql).await.expect_err(sql);
    assert_eq!(e.code(), Some(&state), "{sql}: {}", tarn_tests::describe(&e));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_parquet_tables_and_copy_to_a_file() {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    std::fs::create_dir_all(lake.join("events")).unwrap();
    std::fs::write(root.path().join("secret.parquet"), b"not for clients").unwrap();
    write_events(&lake.join("events/part-0.parquet"), 0, 5000, false);
    let (server, client) = lake_server(&lake).await;
    let at = |p: &str| lake.join(p).display().to_string();

    // Columns inferred from the files.
    client
        .batch_execute(&format!("CREATE EXTERNAL TABLE events STORED AS PARQUET LOCATION '{}'", at("events")))
        .await
        .unwrap();
    assert_columns(
        &client,
        "events",
        &[
            ("id", "bigint"),
            ("grp", "bigint"),
            ("price", "double precision"),
            ("name", "text"),
            ("flag", "boolean"),
        ],
    )
    .await;
    assert_eq!(one_i64(&client, "SELECT count(*) FROM events").await, 5000);
    assert_eq!(one_i64(&client, "SELECT count(*) FROM events WHERE grp IS NULL").await, 500);
    assert_eq!(
        one_i64(&client, "SELECT sum(id) FROM events WHERE grp = 42 AND flag").await,
        420 + 422 + 424 + 426 + 428
    );
    let name: String = client.query_one("SELECT name FROM events WHERE id = 4321", &[]).await.unwrap().get(0);
    assert_eq!(name, "n4321");
    // The filter reaches the Parquet reader, which prunes by statistics.
    let plan = explain(&client, "SELECT * FROM events WHERE id = 4321").await;
    assert!(plan.contains("predicate=id@0 = 4321") && plan.contains("pruning_predicate"), "{plan}");

    // Joined with a Tarn table.
    client
        .batch_execute("CREATE TABLE groups (grp BIGINT PRIMARY KEY, label TEXT); INSERT INTO groups VALUES (1, 'one'), (2, 'two')")
        .await
        .unwrap();
    let rows = client
        .query("SELECT g.label, count(*) FROM events e JOIN groups g ON g.grp = e.grp GROUP BY g.label ORDER BY 1", &[])
        .await
        .unwrap();
    let rows: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(rows, [("one".to_string(), 9), ("two".to_string(), 9)]);

    // A new file in the folder is read by the next query; a new column appears after
    // REFRESH TABLE (the older file's rows have it NULL).
    write_events(&lake.join("events/part-1.parquet"), 5000, 1000, true);
    assert_eq!(one_i64(&client, "SELECT count(*) FROM events").await, 6000);
    refused(&client, "SELECT count(note) FROM events", SqlState::UNDEFINED_COLUMN).await;
    client.batch_execute("REFRESH TABLE events").await.unwrap();
    assert_eq!(one_i64(&client, "SELECT count(note) FROM events").await, 1000);

    // Declared columns: read by name, one the files lack is NULL.
    client
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE named (id BIGINT, missing TEXT) STORED AS PARQUET LOCATION '{}'",
            at("events/part-0.parquet")
        ))
        .await
        .unwrap();
    assert_eq!(one_i64(&client, "SELECT count(*) FROM named WHERE missing IS NULL AND id < 100").await, 100);

    // Read-only; the allow-list.
    refused(&client, "INSERT INTO events (id) VALUES (1)", SqlState::WRONG_OBJECT_TYPE).await;
    refused(&client, "DELETE FROM events", SqlState::WRONG_OBJECT_TYPE).await;
    let secret = root.path().join("secret.parquet").display().to_string();
    std::os::unix::fs::symlink(root.path().join("secret.parquet"), lake.join("link.parquet")).unwrap();
    for location in
        [secret.clone(), at("../secret.parquet"), at("link.parquet"), "/etc".into(), "events".into()]
    {
        refused(
            &client,
            &format!("CREATE EXTERNAL TABLE nope STORED AS PARQUET LOCATION '{location}'"),
            SqlState::INSUFFICIENT_PRIVILEGE,
        )
        .await;
        refused(
            &client,
            &format!("COPY groups TO '{location}' (FORMAT parquet)"),
            SqlState::INSUFFICIENT_PRIVILEGE,
        )
        .await;
    }
    refused(
        &client,
        &format!("COPY groups TO '{}' (FORMAT csv)", at("g.csv")),
        SqlState::FEATURE_NOT_SUPPORTED,
    )
    .await;
    refused(&client, &format!("COPY groups FROM '{}'", at("g.parquet")), SqlState::FEATURE_NOT_SUPPORTED)
        .await;
    refused(
        &client,
        "CREATE EXTERNAL TABLE events STORED AS PARQUET LOCATION '/x'",
        SqlState::INSUFFICIENT_PRIVILEGE,
    )
    .await;
    assert_eq!(std::fs::read(&secret).unwrap(), b"not for clients");

    // COPY out of Tarn, back in as an external table, and into a Tarn table.
    let copied = client
        .execute(
            &format!("COPY (SELECT id, name, price * 2 AS double_price FROM events WHERE id % 3 = 0) TO '{}' (FORMAT parquet)", at("out/thirds.parquet")),
            &[],
        )
        .await;
    assert!(copied.is_err(), "the folder out/ does not exist yet");
    std::fs::create_dir_all(lake.join("out")).unwrap();
    let copied = client
        .execute(
            &format!("COPY (SELECT id, name, price * 2 AS double_price FROM events WHERE id % 3 = 0) TO '{}' (FORMAT parquet)", at("out/thirds.parquet")),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(copied, 2000);
    let leftovers: Vec<_> =
        std::fs::read_dir(lake.join("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["thirds.parquet"], "no temporary file is left");
    client
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE thirds STORED AS PARQUET LOCATION '{}'; \
             CREATE TABLE kept USING lance AS SELECT * FROM thirds WHERE id < 3000",
            at("out")
        ))
        .await
        .unwrap();
    assert_eq!(one_i64(&client, "SELECT count(*) FROM thirds").await, 2000);
    assert_eq!(
        one_i64(&client, "SELECT sum(id) FROM kept").await,
        (0..3000).filter(|i| i % 3 == 0).sum::<i64>()
    );
    let price: f64 =
        client.query_one("SELECT double_price FROM thirds WHERE id = 300", &[]).await.unwrap().get(0);
    assert_eq!(price, 300.0);

    // The definitions outlive a restart; DROP TABLE leaves the files.
    let server = server.restart().await;
    let client = server.client().await;
    assert_eq!(one_i64(&client, "SELECT count(note) FROM events").await, 1000);
    client.batch_execute("DROP TABLE events; DROP TABLE thirds").await.unwrap();
    refused(&client, "SELECT count(*) FROM events", SqlState::UNDEFINED_TABLE).await;
    assert!(lake.join("events/part-0.parquet").exists() && lake.join("out/thirds.parquet").exists());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_allowed_locations_no_file_is_reachable() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let root = tempfile::tempdir().unwrap();
    write_events(&root.path().join("a.parquet"), 0, 10, false);
    let path = root.path().join("a.parquet").display().to_string();
    refused(
        &client,
        &format!("CREATE EXTERNAL TABLE a STORED AS PARQUET LOCATION '{path}'"),
        SqlState::INSUFFICIENT_PRIVILEGE,
    )
    .await;
    refused(
        &client,
        &format!("COPY (SELECT 1) TO '{}' (FORMAT parquet)", root.path().join("b.parquet").display()),
        SqlState::INSUFFICIENT_PRIVILEGE,
    )
    .await;
    assert!(!root.path().join("b.parquet").exists());
    // The session goes on.
    assert_eq!(one_i64(&client, "SELECT 1::bigint").await, 1);
    server.stop().await;
}

/// `make_table.py` in the test venv: appends `rows` rows from `first` to the Iceberg
/// table in `warehouse`; returns its folder, metadata file and snapshot ids.
fn pyiceberg_append(warehouse: &Path, first: i64, rows: i64) -> (String, String, Vec<i64>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("iceberg");
    let python = tarn_tests::python_venv(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "tarn-icebergenv",
        &dir.join("requirements.txt"),
    )
    .unwrap_or_else(|e| panic!("the pyiceberg environment could not be set up:\n{e}"));
    let out = tarn_tests::run(
        std::process::Command::new(python)
            .arg(dir.join("make_table.py"))
            .arg(warehouse)
            .arg(first.to_string())
            .arg(rows.to_string()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in:\n{out}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    let strip = |s: &str| s.strip_prefix("file://").unwrap_or(s).to_string();
    (
        strip(json["location"].as_str().unwrap()),
        strip(json["metadata"].as_str().unwrap()),
        json["snapshots"].as_array().unwrap().iter().map(|s| s.as_i64().unwrap()).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iceberg_table_written_by_pyiceberg() {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    let (folder, first_metadata, snapshots) = pyiceberg_append(&lake, 0, 1000);
    assert_eq!(snapshots.len(), 1);
    let (server, client) = lake_server(&lake).await;
    client
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE events STORED AS ICEBERG LOCATION '{folder}'; \
             CREATE EXTERNAL TABLE events_v1 STORED AS ICEBERG LOCATION '{first_metadata}'"
        ))
        .await
        .unwrap();
    assert_columns(
        &client,
        "events",
        &[
            ("id", "bigint"),
            ("grp", "bigint"),
            ("name", "text"),
            ("price", "double precision"),
            ("ts", "timestamp without time zone"),
        ],
    )
    .await;
    assert_eq!(one_i64(&client, "SELECT count(*) FROM events").await, 1000);
    assert_eq!(one_i64(&client, "SELECT count(*) FROM events WHERE grp IS NULL").await, 100);
    assert_eq!(
        one_i64(&client, "SELECT sum(id) FROM events WHERE grp = 42 AND id % 2 = 0").await,
        420 + 422 + 424 + 426 + 428
    );
    assert_eq!(
        one_i64(&client, "SELECT count(*) FROM events WHERE ts >= '2026-01-01 00:10:00' AND name IN ('n600', 'n999', 'n5')").await,
        2
    );
    // The filter is Iceberg's predicate.
    let plan = explain(&client, "SELECT name FROM events WHERE id = 42").await;
    assert!(plan.contains("IcebergScan") && plan.contains("predicate="), "{plan}");
    client
        .batch_execute("CREATE TABLE groups (grp BIGINT PRIMARY KEY, label TEXT); INSERT INTO groups VALUES (1, 'one'), (2, 'two')")
        .await
        .unwrap();
    let rows = client
        .query("SELECT g.label, count(*) FROM events e JOIN groups g ON g.grp = e.grp GROUP BY g.label ORDER BY 1", &[])
        .await
        .unwrap();
    let rows: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(rows, [("one".to_string(), 9), ("two".to_string(), 9)]);

    // A new snapshot: the folder's table reads it at the next query, the one named by
    // its first metadata file stays there; AS OF VERSION reads a snapshot by id.
    let (_, _, snapshots) = pyiceberg_append(&lake, 1000, 500);
    assert_eq!(snapshots.len(), 2);
    assert_eq!(one_i64(&client, "SELECT count(*) FROM events").await, 1500);
    assert_eq!(one_i64(&client, "SELECT count(*) FROM events_v1").await, 1000);
    let first = snapshots[0];
    assert_eq!(one_i64(&client, &format!("SELECT count(*) FROM events AS OF VERSION {first}")).await, 1000);
    // Spark's and Iceberg's spelling.
    assert_eq!(
        one_i64(&client, &format!("SELECT count(*) FROM events FOR VERSION AS OF {first}")).await,
        1000
    );
    let e = client.query_one("SELECT count(*) FROM events AS OF VERSION 12345", &[]).await.unwrap_err();
    assert!(tarn_tests::describe(&e).contains("no snapshot 12345"), "{}", tarn_tests::describe(&e));

    // Read-only, inside the allow-list, into a Tarn table.
    refused(&client, "INSERT INTO events (id) VALUES (1)", SqlState::WRONG_OBJECT_TYPE).await;
    let outside = tempfile::tempdir().unwrap();
    refused(
        &client,
        &format!("CREATE EXTERNAL TABLE nope STORED AS ICEBERG LOCATION '{}'", outside.path().display()),
        SqlState::INSUFFICIENT_PRIVILEGE,
    )
    .await;
    client.batch_execute("CREATE TABLE kept AS SELECT * FROM events WHERE id >= 1000").await.unwrap();
    assert_eq!(one_i64(&client, "SELECT count(*) FROM kept").await, 500);
    server.stop().await;
}
