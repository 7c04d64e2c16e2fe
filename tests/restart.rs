//! Tables and rows survive a restart: write, stop the server, start a new one on the
//! same folder, read the same rows; then keep writing.

use tarn_tests::{simple_rows, TestServer};
use tokio_postgres::error::SqlState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_and_rows_survive_a_restart() {
    let server = TestServer::start().await;
    {
        let client = server.client().await;
        client
            .batch_execute(
                "CREATE TABLE items (id BIGINT PRIMARY KEY, title TEXT NOT NULL, embedding VECTOR(2)) USING lance WITH (bucket_count = 2);
                 INSERT INTO items VALUES (1, 'a', '[1,2]'), (2, 'b', '[3,4]');
                 CREATE TABLE logs (seq BIGSERIAL, line TEXT) USING parquet;
                 INSERT INTO logs (line) VALUES ('first'), ('second');
                 CREATE SCHEMA archive;
                 CREATE TABLE archive.old AS SELECT id, title FROM items;
                 CREATE VIEW archive.recent AS SELECT * FROM items WHERE id > 1;
                 CREATE TABLE dropped (x INT);
                 DROP TABLE dropped;
                 ALTER TABLE items ADD COLUMN note TEXT;
                 INSERT INTO items VALUES (3, 'c', '[5,6]', 'noted');
                 CREATE TABLE renamed (id BIGINT PRIMARY KEY, v TEXT);
                 INSERT INTO renamed VALUES (1, 'one');
                 CREATE VIEW kept_values AS SELECT v FROM renamed;
                 ALTER TABLE renamed RENAME TO kept;
                 ALTER VIEW kept_values RENAME TO kv;
                 COMMENT ON TABLE kept IS 'kept';
                 COMMENT ON COLUMN kv.v IS 'a value';
                 CREATE TABLE renamed (x INT);
                 INSERT INTO renamed VALUES (9);
                 INSERT INTO kept VALUES (2, 'two');
                 CREATE TABLE columns_changed (id BIGINT PRIMARY KEY, a TEXT, b TEXT, c TEXT);
                 INSERT INTO columns_changed VALUES (1, 'a1', 'b1', 'c1');
                 ALTER TABLE columns_changed RENAME COLUMN a TO alpha;
                 ALTER TABLE columns_changed DROP COLUMN b;
                 INSERT INTO columns_changed VALUES (2, 'a2', 'c2');
                 CREATE SEQUENCE counter START WITH 10;
                 SELECT nextval('counter');
                 CREATE SEQUENCE exact START WITH 5;
                 SELECT setval('exact', 50);
                 CREATE TEMP TABLE scratch (v INT);
                 INSERT INTO scratch VALUES (1);",
            )
            .await
            .unwrap();
    }
    let server = server.restart().await;
    let client = server.client().await;

    let rows = client.simple_query("SELECT id, title, embedding, note FROM items ORDER BY id").await.unwrap();
    assert_eq!(simple_rows(&rows), vec!["1|a|[1,2]|NULL", "2|b|[3,4]|NULL", "3|c|[5,6]|noted"]);

    let lines: Vec<(i64, String)> = client
        .query("SELECT seq, line FROM logs ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(lines, vec![(1, "first".into()), (2, "second".into())]);
    let n: i64 = client.query_one("SELECT count(*) FROM archive.old", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
    // A view survives too, with the columns its `*` had when it was made.
    let recent = client.query("SELECT * FROM archive.recent ORDER BY id", &[]).await.unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(
        recent[0].columns().iter().map(|c| c.name()).collect::<Vec<_>>(),
        ["id", "title", "embedding"]
    );
    // A renamed table keeps its name and rows (the last insert only in the log, replayed
    // by the table's id), a new table of its old name its own; a renamed view too.
    let kept: Vec<String> =
        client.query("SELECT v FROM kv ORDER BY v", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(kept, ["one", "two"]);
    let comments: (String, String) = client
        .query_one(
            "SELECT obj_description('kept'::regclass, 'pg_class'), col_description('kv'::regclass, 1)",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(comments, ("kept".to_string(), "a value".to_string()));
    let x: i32 = client.query_one("SELECT x FROM renamed", &[]).await.unwrap().get(0);
    assert_eq!(x, 9);
    let err = client.query("SELECT * FROM dropped", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE));

    // Constraints and sequences carry over: keys are still unique, serials continue.
    let err = client.execute("INSERT INTO items (id, title) VALUES (2, 'dup')", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION));
    let seq: i64 =
        client.query_one("INSERT INTO logs (line) VALUES ('third') RETURNING seq", &[]).await.unwrap().get(0);
    assert_eq!(seq, 3);
    // Temporary tables end with their session, or at the latest with the server.
    let temp: i64 = client
        .query_one("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pg_temp%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(temp, 0);
    let err = client.query("SELECT * FROM scratch", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE));
    // Renamed and dropped columns stay so (the last insert replayed from the log).
    let changed = client.simple_query("SELECT * FROM columns_changed ORDER BY id").await.unwrap();
    assert_eq!(simple_rows(&changed), ["1|a1|c1", "2|a2|c2"]);
    // A sequence goes on from where a clean stop left it (after a crash, from the 32
    // values it reserved: tests/crash.rs).
    let next: (i64, i64) = client
        .query_one("SELECT nextval('counter'), nextval('exact')", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(next, (11, 51));
    server.stop().await;
}
