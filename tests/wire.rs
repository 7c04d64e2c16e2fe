//! The wire protocol as a driver sees it (tokio-postgres: extended protocol, binary
//! parameters and results), plus startup, cancel and multi-statement behaviour.

use std::time::Duration;

use tarn_tests::{simple_counts, simple_rows, TestServer};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::SimpleQueryMessage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_in_binary_with_concrete_types() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE items (id BIGINT PRIMARY KEY, title TEXT, price DOUBLE PRECISION, ok BOOLEAN)",
        )
        .await
        .unwrap();

    let insert = client.prepare("INSERT INTO items VALUES ($1, $2, $3, $4)").await.unwrap();
    assert_eq!(insert.params(), &[Type::INT8, Type::TEXT, Type::FLOAT8, Type::BOOL]);
    assert!(insert.columns().is_empty(), "INSERT describes as NoData");
    for i in 0..5i64 {
        let n = client
            .execute(&insert, &[&i, &format!("item {i}"), &(i as f64 * 1.5), &(i % 2 == 0)])
            .await
            .unwrap();
        assert_eq!(n, 1);
    }

    let select = client
        .prepare("SELECT id, title, price FROM items WHERE price > $1 AND ok = $2 ORDER BY id")
        .await
        .unwrap();
    assert_eq!(select.params(), &[Type::FLOAT8, Type::BOOL]);
    let types: Vec<&Type> = select.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(types, vec![&Type::INT8, &Type::TEXT, &Type::FLOAT8]);
    let rows = client.query(&select, &[&2.0f64, &true]).await.unwrap();
    let got: Vec<(i64, String, f64)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(got, vec![(2, "item 2".to_string(), 3.0), (4, "item 4".to_string(), 6.0)]);

    // NULL parameters, and a prepared statement reads rows inserted after it was prepared.
    client.execute(&insert, &[&10i64, &None::<String>, &None::<f64>, &None::<bool>]).await.unwrap();
    let count = client.prepare("SELECT count(*) FROM items WHERE title IS NULL").await.unwrap();
    let n: i64 = client.query_one(&count, &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    client.execute(&insert, &[&11i64, &None::<String>, &None::<f64>, &None::<bool>]).await.unwrap();
    let n: i64 = client.query_one(&count, &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstate_and_the_session_goes_on() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT NOT NULL)").await.unwrap();
    client.execute("INSERT INTO t VALUES ($1, $2)", &[&1i32, &"a"]).await.unwrap();

    let cases: &[(&str, SqlState)] = &[
        ("SELEC 1", SqlState::SYNTAX_ERROR),
        ("SELECT * FROM missing", SqlState::UNDEFINED_TABLE),
        ("SELECT missing FROM t", SqlState::UNDEFINED_COLUMN),
        ("CREATE TABLE t (id INT)", SqlState::DUPLICATE_TABLE),
        ("SELECT 1 / 0", SqlState::DIVISION_BY_ZERO),
        ("INSERT INTO t VALUES (1, 'b')", SqlState::UNIQUE_VIOLATION),
        ("INSERT INTO t (id) VALUES (2)", SqlState::NOT_NULL_VIOLATION),
        ("UPDATE t SET v = NULL", SqlState::NOT_NULL_VIOLATION),
        ("INSERT INTO t VALUES (1, 'b') ON CONFLICT (v) DO NOTHING", SqlState::INVALID_COLUMN_REFERENCE),
        (
            "MERGE INTO t USING t AS s ON t.id = s.id WHEN MATCHED THEN DELETE",
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
    ];
    for (sql, code) in cases {
        // Extended protocol (prepare + execute) ...
        let err = client.query(*sql, &[]).await.unwrap_err();
        assert_eq!(err.code(), Some(code), "{sql}: {err}");
        // ... and simple protocol.
        let err = client.simple_query(sql).await.unwrap_err();
        assert_eq!(err.code(), Some(code), "{sql}: {err}");
    }
    let err = client.execute("INSERT INTO t VALUES ($1, $2)", &[&3i32, &"x"]).await;
    assert!(err.is_ok(), "session still usable: {err:?}");
    let n: i64 = client.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(n, 2, "failed statements wrote nothing");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_block_fails_until_rollback() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let tx = client.transaction().await.unwrap();
    let err = tx.query("SELECT 1 / 0", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO));
    let err = tx.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    tx.rollback().await.unwrap();
    let one: i64 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_query_runs_several_statements_in_order() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let messages = client
        .simple_query("CREATE TABLE s (x INT); INSERT INTO s VALUES (1), (2); SELECT sum(x) FROM s; SELECT x FROM s ORDER BY x")
        .await
        .unwrap();
    assert_eq!(simple_counts(&messages), vec![0, 2, 1, 2]);
    assert_eq!(simple_rows(&messages), vec!["3", "1", "2"]);
    // An empty query is answered, not refused.
    client.simple_query("").await.unwrap();
    client.simple_query(" ; ").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_is_refused_with_3d000() {
    let server = TestServer::start().await;
    let conn = format!("host={} port={} user=tarn dbname=nope", server.addr.ip(), server.addr.port());
    let err = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.err().expect("refused");
    assert_eq!(err.code(), Some(&SqlState::INVALID_CATALOG_NAME), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_query_can_be_cancelled() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let started = std::time::Instant::now();
    let err = client.simple_query("SELECT count(*) FROM range(0, 100000000000) a").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    canceller.await.unwrap();
    let one: i64 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1, "the session survives a cancel");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_reports_the_parameters_clients_check() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for (name, want) in [
        ("server_version", "16.4"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
    ] {
        let rows = client.simple_query(&format!("SHOW {name}")).await.unwrap();
        let value = rows.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
        assert_eq!(value.as_deref(), Some(want), "{name}");
    }
    let version: String = client.query_one("SELECT version()", &[]).await.unwrap().get(0);
    assert!(version.starts_with("PostgreSQL 16.4"), "{version}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_columns_are_named_as_postgres_names_them() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE t (id INT, price DOUBLE PRECISION)").await.unwrap();
    let statement = client
        .prepare("SELECT count(*), max(price) AS top, 1, upper('a'), id, id + 1, \"my col\".price, (SELECT max(id) FROM t), id FROM t AS \"my col\" GROUP BY id, price")
        .await
        .unwrap();
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, vec!["count", "top", "?column?", "upper", "id", "?column?", "price", "max", "id"]);
    // An alias is the name, even when it reads like a call (Superset's metric labels).
    let statement = client
        .prepare("SELECT sum(price) AS \"SUM(price)\", count(*) AS \"COUNT(*)\", count(*), max(id) AS \"max(id)\" FROM t")
        .await
        .unwrap();
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, vec!["SUM(price)", "COUNT(*)", "count", "max(id)"]);
    // A composite's field is named after the field (pgAdmin's `(d).grantee`).
    let statement = client
        .prepare(
            "SELECT (d).grantee, (d).privilege_type FROM (SELECT aclexplode(relacl) AS d FROM pg_class) a",
        )
        .await
        .unwrap();
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, vec!["grantee", "privilege_type"]);
    // DISTINCT ON's columns, a subquery among them (pgAdmin's index list), and an
    // output column beside an ORDER BY of the input's column of its name.
    let statement = client
        .prepare(
            "SELECT DISTINCT ON (id) id, price AS cost, (SELECT max(t2.id) FROM t t2 WHERE t2.id = t.id), 1 \
             FROM t ORDER BY id",
        )
        .await
        .unwrap();
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, vec!["id", "cost", "max", "?column?"]);
    let statement = client.prepare("SELECT t.price * 2 AS price FROM t ORDER BY t.price").await.unwrap();
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, vec!["price"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_suspend_and_resume_with_max_rows() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE n (v INT); INSERT INTO n SELECT CAST(value AS INT) FROM generate_series(1, 10)",
        )
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let statement = tx.prepare("SELECT v FROM n ORDER BY v").await.unwrap();
    let portal = tx.bind(&statement, &[]).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let rows = tx.query_portal(&portal, 4).await.unwrap();
        if rows.is_empty() {
            break;
        }
        assert!(rows.len() <= 4);
        seen.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
    }
    assert_eq!(seen, (1..=10).collect::<Vec<i32>>());
    tx.commit().await.unwrap();
    server.stop().await;
}

/// `MOVE` skips a cursor's rows and answers how many; a `BINARY` cursor's rows come in
/// binary format in the simple protocol (an int4 65 is the bytes 0 0 0 65).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_move_and_binary_cursors_fetch_binary_rows() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let messages = client
        .simple_query(
            "BEGIN; DECLARE c CURSOR FOR SELECT CAST(value AS INT) FROM generate_series(1, 10) ORDER BY 1; \
             MOVE 3 IN c; MOVE FORWARD 2 FROM c; FETCH 1 FROM c; MOVE ALL IN c; FETCH 1 FROM c; \
             DECLARE b BINARY CURSOR FOR SELECT CAST(65 AS INT) AS n, 'hi' AS t; FETCH ALL FROM b; COMMIT",
        )
        .await
        .unwrap();
    // BEGIN, DECLARE, MOVE 3, MOVE 2, FETCH 1, MOVE 4 (the rest), FETCH 0, DECLARE, FETCH 1, COMMIT.
    assert_eq!(simple_counts(&messages), vec![0, 0, 3, 2, 1, 4, 0, 0, 1, 0]);
    assert_eq!(simple_rows(&messages), vec!["6", "\0\0\0A|hi"]);
    server.stop().await;
}

/// A temporary table is its session's alone, and goes when the session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_tables_are_the_sessions_own_and_end_with_it() {
    let server = TestServer::start().await;
    let first = server.client().await;
    let second = server.client().await;
    first.batch_execute("CREATE TEMP TABLE scratch (v INT); INSERT INTO scratch VALUES (1)").await.unwrap();
    second
        .batch_execute("CREATE TEMP TABLE scratch (v INT); INSERT INTO scratch VALUES (2), (3)")
        .await
        .unwrap();
    let n: i64 = first.query_one("SELECT count(*) FROM scratch", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    let n: i64 = second.query_one("SELECT count(*) FROM scratch", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
    drop(first);
    // The first session's schema goes soon after it ends; the second's stays.
    let mut schemas = Vec::new();
    for _ in 0..100 {
        schemas = second
            .query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pg_temp%'", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        if schemas.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(schemas.len(), 1, "{schemas:?}");
    let n: i64 = second.query_one("SELECT count(*) FROM scratch", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
    server.stop().await;
}

/// A primary-key lookup goes to the key index (no scan of the base); other filters
/// merge the base, minus its deletion vector, with the change rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_point_lookups_and_merged_scans() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE kv (id BIGINT PRIMARY KEY, v TEXT) WITH (auto_compaction = off);
             INSERT INTO kv VALUES (1, 'a'), (2, 'b');
             VACUUM kv;
             UPDATE kv SET v = 'B' WHERE id = 2;",
        )
        .await
        .unwrap();
    let plan = |rows: Vec<tokio_postgres::Row>| {
        rows.iter().map(|r| r.get::<_, String>(1)).collect::<Vec<_>>().join("\n")
    };
    let lookup = plan(client.query("EXPLAIN SELECT v FROM kv WHERE id = $1", &[&2i64]).await.unwrap());
    assert!(lookup.contains("TarnPointLookupExec: table=kv, keys=1"), "{lookup}");
    assert!(!lookup.contains("TarnMergeExec"), "{lookup}");
    let scan = plan(client.query("EXPLAIN SELECT v FROM kv WHERE v > 'a'", &[]).await.unwrap());
    assert!(scan.contains("TarnMergeExec: table=kv, deleted_base_rows=1"), "{scan}");
    let row = client.query_one("SELECT v FROM kv WHERE id = $1", &[&2i64]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "B");
}
