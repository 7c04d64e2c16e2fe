//! The statement path through a real driver: plans kept between executions (engine
//! `statements/plan_cache.rs`) and key lookups from a base held in memory. A prepared
//! statement (and a simple query sent again) must read what a freshly planned one
//! would, whatever happened since it was planned: new rows, a compaction, a dropped or
//! re-made table, a new column, a changed setting, its own transaction's writes, the
//! clock.

use std::time::Duration;

use tarn_tests::{explain, TestServer};
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

async fn count_of(client: &tokio_postgres::Client, statement: &tokio_postgres::Statement) -> i64 {
    client.query_one(statement, &[]).await.unwrap().get(0)
}

fn simple_values(messages: &[SimpleQueryMessage]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_plans_read_the_newest_snapshot() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let other = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT);
             CREATE TABLE plain (n INT);
             INSERT INTO t VALUES (1, 'a'), (2, 'b'); INSERT INTO plain VALUES (1)",
        )
        .await
        .unwrap();

    let count = client.prepare("SELECT count(*) FROM t").await.unwrap();
    let lookup = client.prepare("SELECT v FROM t WHERE id = $1").await.unwrap();
    let joined =
        client.prepare("SELECT count(*) FROM t WHERE id IN (SELECT n FROM plain) OR v = 'z'").await.unwrap();
    assert_eq!(count_of(&client, &count).await, 2);
    assert_eq!(count_of(&client, &joined).await, 1);

    // Rows another session commits are seen by the next execute, in the change store
    // and after compaction folds them into a new base version.
    other.batch_execute("INSERT INTO t VALUES (3, 'c'); INSERT INTO plain VALUES (2)").await.unwrap();
    assert_eq!(count_of(&client, &count).await, 3);
    assert_eq!(count_of(&client, &joined).await, 2);
    other
        .batch_execute("VACUUM t; INSERT INTO t VALUES (4, 'z'); UPDATE t SET v = 'B' WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(count_of(&client, &count).await, 4);
    assert_eq!(count_of(&client, &joined).await, 3);
    let v: String = client.query_one(&lookup, &[&2i64]).await.unwrap().get(0);
    assert_eq!(v, "B");
    other.batch_execute("DELETE FROM t WHERE id = 2").await.unwrap();
    assert!(client.query_opt(&lookup, &[&2i64]).await.unwrap().is_none());

    // The simple protocol's repeated text too.
    let sql = "SELECT count(*) FROM t";
    assert_eq!(simple_values(&client.simple_query(sql).await.unwrap()), ["3"]);
    other.batch_execute("INSERT INTO t VALUES (5, 'e')").await.unwrap();
    assert_eq!(simple_values(&client.simple_query(sql).await.unwrap()), ["4"]);

    // A transaction reads its pinned snapshot, then its own writes.
    client.batch_execute("BEGIN").await.unwrap();
    assert_eq!(count_of(&client, &count).await, 4);
    other.batch_execute("INSERT INTO t VALUES (6, 'f')").await.unwrap();
    assert_eq!(count_of(&client, &count).await, 4, "the transaction's snapshot");
    client.batch_execute("INSERT INTO t VALUES (7, 'g')").await.unwrap();
    assert_eq!(count_of(&client, &count).await, 5, "its own write");
    let v: String = client.query_one(&lookup, &[&7i64]).await.unwrap().get(0);
    assert_eq!(v, "g");
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(count_of(&client, &count).await, 5);
    assert!(client.query_opt(&lookup, &[&7i64]).await.unwrap().is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_plans_never_read_a_dropped_table() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let other = server.client().await;
    client
        .batch_execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'old')")
        .await
        .unwrap();
    let select = client.prepare("SELECT v FROM t WHERE v <> 'x'").await.unwrap();
    let lookup = client.prepare("SELECT v FROM t WHERE id = $1").await.unwrap();
    assert_eq!(client.query_one(&select, &[]).await.unwrap().get::<_, String>(0), "old");
    assert_eq!(client.query_one(&lookup, &[&1i64]).await.unwrap().get::<_, String>(0), "old");

    other.batch_execute("DROP TABLE t").await.unwrap();
    let e = client.query(&select, &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE), "{e:?}");
    let e = client.query(&lookup, &[&1i64]).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE), "{e:?}");
    let e = client.simple_query("SELECT v FROM t").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE));

    // Made again under the same name: the same statements read the new table.
    other
        .batch_execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'new')")
        .await
        .unwrap();
    assert_eq!(client.query_one(&select, &[]).await.unwrap().get::<_, String>(0), "new");
    assert_eq!(client.query_one(&lookup, &[&1i64]).await.unwrap().get::<_, String>(0), "new");

    // A new column changes `SELECT *`'s columns: PostgreSQL's error, not rows the client
    // was not told of; a statement prepared now sees the column.
    let star = client.prepare("SELECT * FROM t").await.unwrap();
    assert_eq!(client.query(&star, &[]).await.unwrap().len(), 1);
    other.batch_execute("ALTER TABLE t ADD COLUMN w INT").await.unwrap();
    let e = client.query(&star, &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED), "{e:?}");
    let star = client.prepare("SELECT * FROM t").await.unwrap();
    assert_eq!(star.columns().len(), 3);
    assert_eq!(client.query(&star, &[]).await.unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_plans_follow_settings_indexes_and_the_clock() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE items (id BIGINT PRIMARY KEY, embedding VECTOR(2));
             INSERT INTO items SELECT i, ARRAY[cos(i * 0.004), sin(i * 0.004)]::vector FROM generate_series(1, 1500) AS s(i)",
        )
        .await
        .unwrap();
    let nearest = "SELECT id FROM items ORDER BY embedding <-> '[1, 0.5]' LIMIT 1";
    let knn = client.prepare(nearest).await.unwrap();
    let exact: i64 = client.query_one(&knn, &[]).await.unwrap().get(0);
    let plan = explain(&client, nearest).await;
    assert!(plan.contains("mode=exact"), "{plan}");

    // An index made after the plan (1,000 rows at least: Lance trains on them): the kept
    // plan is made again and uses it.
    client
        .batch_execute("CREATE INDEX ON items USING hnsw (embedding vector_l2_ops); SET hnsw.ef_search = 10")
        .await
        .unwrap();
    let plan = explain(&client, nearest).await;
    assert!(plan.contains("mode=index") && plan.contains("ef_search=10"), "{plan}");
    assert_eq!(client.query_one(&knn, &[]).await.unwrap().get::<_, i64>(0), exact);
    client.batch_execute("SET hnsw.ef_search = 200").await.unwrap();
    let plan = explain(&client, nearest).await;
    assert!(plan.contains("ef_search=200"), "{plan}");
    // A row nearer than all, committed after: found by the same statement.
    client.batch_execute("INSERT INTO items VALUES (5000, '[1, 0.5]')").await.unwrap();
    assert_eq!(client.query_one(&knn, &[]).await.unwrap().get::<_, i64>(0), 5000);
    assert_eq!(simple_values(&client.simple_query(nearest).await.unwrap()), ["5000"]);

    // A statement that reads no table keeps its physical plan and runs it again.
    let constant = client.prepare("SELECT 1 + 1 AS two, 'x' || 'y' AS xy WHERE 2 > 1 LIMIT 5").await.unwrap();
    for _ in 0..3 {
        let row = client.query_one(&constant, &[]).await.unwrap();
        assert_eq!((row.get::<_, i64>(0), row.get::<_, String>(1)), (2, "xy".to_string()));
        assert_eq!(simple_values(&client.simple_query("SELECT 1").await.unwrap()), ["1"]);
    }

    // `now()` is read per statement, not when the plan was kept.
    let now = client.prepare("SELECT now()::text").await.unwrap();
    let first: String = client.query_one(&now, &[]).await.unwrap().get(0);
    let simple_first = simple_values(&client.simple_query("SELECT now()::text").await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second: String = client.query_one(&now, &[]).await.unwrap().get(0);
    assert_ne!(first, second);
    assert_ne!(simple_first, simple_values(&client.simple_query("SELECT now()::text").await.unwrap()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lookups_from_a_held_base_stay_fresh() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT, n DOUBLE PRECISION);
             INSERT INTO t SELECT i, 'v' || i, i * 0.5 FROM generate_series(1, 2000) AS s(i);
             VACUUM t",
        )
        .await
        .unwrap();
    let lookup = client.prepare("SELECT v, n FROM t WHERE id = $1").await.unwrap();
    let check = |id: i64, row: &tokio_postgres::Row, edited: bool| {
        let v: String = row.get(0);
        let n: f64 = row.get(1);
        let want = if edited { format!("e{id}") } else { format!("v{id}") };
        assert_eq!((v, n), (want, id as f64 * 0.5), "key {id}");
    };
    // Enough lookups of one base version for it to be held in memory (in the
    // background), then more, which read it from there.
    for round in 0..2 {
        for i in 0..400i64 {
            let id = (i * 37 + round) % 2000 + 1;
            check(id, &client.query_one(&lookup, &[&id]).await.unwrap(), false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Changes win over the held base; a compaction makes a new base version.
    client
        .batch_execute("UPDATE t SET v = 'e' || id WHERE id % 10 = 0; DELETE FROM t WHERE id % 10 = 5")
        .await
        .unwrap();
    for phase in ["changes", "compacted"] {
        for id in 1..=300i64 {
            match client.query_opt(&lookup, &[&id]).await.unwrap() {
                Some(row) => check(id, &row, id % 10 == 0),
                None => assert_eq!(id % 10, 5, "key {id} missing ({phase})"),
            }
        }
        client.batch_execute("VACUUM t").await.unwrap();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_scans_take_the_filters() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE p (id INT, v TEXT) USING parquet; INSERT INTO p VALUES (1, 'a'), (2, 'b')",
        )
        .await
        .unwrap();
    let plan = explain(&client, "SELECT v FROM p WHERE id >= 2").await;
    assert!(plan.contains("predicate=id@0 >= 2"), "{plan}");
    let select = client.prepare("SELECT v FROM p WHERE id >= $1").await.unwrap();
    let rows = client.query(&select, &[&2i32]).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>(), ["b"]);
    server.stop().await;
}

/// A prepared search keeps one generic plan (optimized with its parameters as
/// placeholders) and binds each execute's values into it: every execute returns what
/// the same statement with the values written in returns, whatever the values make
/// of the plan (a selective filter value turns an index search exact), and values the
/// generic plan cannot take (`NULL`, a narrower declared type, a `LIMIT` parameter) are
/// planned with the values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_plans_bind_each_executes_values() {
    use pgvector::Vector;
    use tokio_postgres::types::Type;
    let server = TestServer::start().await;
    let client = server.client().await;
    let words = ["red", "green", "blue", "amber", "violet"];
    let rows: Vec<String> = (0..1500)
        .map(|i| {
            let angle = i as f64 * 0.004;
            let body = format!("{} {} {}", words[i % 5], words[(i / 5) % 5], words[(i * 7) % 5]);
            // Category 0 is 1% of the rows: a filter on it makes an exact search.
            format!(
                "({i}, {}, '{body}', '[{:.4},{:.4}]')",
                if i % 100 == 0 { 0 } else { 1 + i % 7 },
                angle.cos(),
                angle.sin()
            )
        })
        .collect();
    client
        .batch_execute(&format!(
            "CREATE TABLE docs (id BIGINT PRIMARY KEY, cat INT, body TEXT, embedding VECTOR(2));
             INSERT INTO docs VALUES {};
             CREATE INDEX ON docs USING hnsw (embedding vector_l2_ops);
             CREATE INDEX docs_text ON docs USING bm25 (body);
             VACUUM docs;
             SET hnsw.ef_search = 10",
            rows.join(", ")
        ))
        .await
        .unwrap();
    let ids = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>();
    let literal_ids = |messages: Vec<SimpleQueryMessage>| {
        simple_values(&messages).iter().map(|v| v.parse::<i64>().unwrap()).collect::<Vec<_>>()
    };

    let knn = client
        .prepare("SELECT id FROM docs WHERE cat <= $2 ORDER BY embedding <-> $1 LIMIT 3")
        .await
        .unwrap();
    let plans = [
        explain(&client, "SELECT id FROM docs WHERE cat <= 0 ORDER BY embedding <-> '[1,0]' LIMIT 3").await,
        explain(&client, "SELECT id FROM docs WHERE cat <= 7 ORDER BY embedding <-> '[1,0]' LIMIT 3").await,
    ];
    assert!(plans[0].contains("mode=exact") && plans[1].contains("mode=index"), "{plans:#?}");
    for (step, cat) in [0, 7, 0, 4, 7].into_iter().enumerate() {
        let angle = step as f32 * 0.9;
        let query = vec![angle.cos(), angle.sin()];
        let got = ids(client.query(&knn, &[&Vector::from(query.clone()), &cat]).await.unwrap());
        let want = literal_ids(
            client
                .simple_query(&format!(
                    "SELECT id FROM docs WHERE cat <= {cat} ORDER BY embedding <-> '[{},{}]' LIMIT 3",
                    query[0], query[1]
                ))
                .await
                .unwrap(),
        );
        assert_eq!(got, want, "cat {cat}, query {query:?}");
        assert_eq!(got.len(), 3);
    }

    let text = client
        .prepare(
            "SELECT id, bm25_score(body, $1) AS s FROM docs WHERE body @@@ $1 AND id < $2 ORDER BY s DESC, id LIMIT 4",
        )
        .await
        .unwrap();
    for (query, below) in [("red", 1500i64), ("amber violet", 700), ("\"green blue\"", 1500), ("red", 40)] {
        let got = ids(client.query(&text, &[&query, &below]).await.unwrap());
        let want = literal_ids(
            client
                .simple_query(&format!(
                    "SELECT id, bm25_score(body, '{query}') AS s FROM docs WHERE body @@@ '{query}' AND id < {below} \
                     ORDER BY s DESC, id LIMIT 4"
                ))
                .await
                .unwrap(),
        );
        assert_eq!(got, want, "{query} below {below}");
        assert!(!got.is_empty());
    }
    // The score and the match may name different parameters (psycopg's `%s` twice).
    let split = client
        .prepare(
            "SELECT id, bm25_score(body, $1) AS s FROM docs WHERE body @@@ $2 ORDER BY s DESC, id LIMIT 4",
        )
        .await
        .unwrap();
    let want = literal_ids(
        client
            .simple_query("SELECT id, bm25_score(body, 'amber') AS s FROM docs WHERE body @@@ 'amber' ORDER BY s DESC, id LIMIT 4")
            .await
            .unwrap(),
    );
    assert_eq!(ids(client.query(&split, &[&"amber", &"amber"]).await.unwrap()), want);
    // A query the index cannot parse fails as the constant does, and the statement
    // goes on.
    let e = client.query(&text, &[&"\"unclosed", &10i64]).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::SYNTAX_ERROR), "{e:?}");
    assert_eq!(client.query(&text, &[&"red", &1500i64]).await.unwrap().len(), 4);

    // A NULL query vector orders nothing, as in PostgreSQL: any 3 rows.
    let none: Option<Vector> = None;
    assert_eq!(client.query(&knn, &[&none, &3]).await.unwrap().len(), 3);
    // A parameter declared narrower than its column, and a LIMIT parameter.
    let narrow = client
        .prepare_typed(
            "SELECT id FROM docs WHERE id >= $1 ORDER BY embedding <-> '[1,0]' LIMIT 2",
            &[Type::INT4],
        )
        .await
        .unwrap();
    assert_eq!(ids(client.query(&narrow, &[&1495i32]).await.unwrap()).len(), 2);
    assert!(ids(client.query(&narrow, &[&1495i32]).await.unwrap()).iter().all(|&id| id >= 1495));
    let limited =
        client.prepare("SELECT id FROM docs ORDER BY embedding <-> '[1,0]' LIMIT $1").await.unwrap();
    for k in [1i64, 4, 2] {
        assert_eq!(client.query(&limited, &[&k]).await.unwrap().len() as i64, k);
    }

    // The kept searches see the transaction's own rows, and a table dropped and made
    // again.
    let near = Vector::from(vec![0.6f32, 0.8]);
    client
        .batch_execute("BEGIN; INSERT INTO docs VALUES (9000, 0, 'red red red red', '[0.6,0.8]')")
        .await
        .unwrap();
    assert_eq!(ids(client.query(&knn, &[&near, &0]).await.unwrap())[0], 9000);
    assert_eq!(ids(client.query(&text, &[&"red", &10_000i64]).await.unwrap())[0], 9000);
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(ids(client.query(&knn, &[&near, &0]).await.unwrap())[0], 200);
    client.batch_execute("DROP TABLE docs").await.unwrap();
    let e = client.query(&text, &[&"red", &10i64]).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE), "{e:?}");
    client
        .batch_execute(
            "CREATE TABLE docs (id BIGINT PRIMARY KEY, cat INT, body TEXT, embedding VECTOR(2));
             INSERT INTO docs VALUES (1, 0, 'red', '[0,1]'), (2, 0, 'blue', '[1,0]');
             CREATE INDEX docs_text ON docs USING bm25 (body)",
        )
        .await
        .unwrap();
    assert_eq!(ids(client.query(&knn, &[&near, &0]).await.unwrap()), [1, 2]);
    assert_eq!(ids(client.query(&text, &[&"red", &10i64]).await.unwrap()), [1]);
    server.stop().await;
}
