//! Warehouses on S3-compatible object storage, against a real S3 server (moto's server
//! mode, [`tarn_tests::moto`]): tables of every kind with their indexes survive restarts,
//! the warehouse's bucket holds everything once the server has closed (the write-ahead
//! log is the only local state), and two writers racing for one manifest version never
//! both win. (`tests/sqllogictests.rs` runs the slt suite on S3 too.)

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::path::Path;
use tarn_storage::io::Location;
use tarn_storage::manifest::{BaseRef, Manifest, ManifestStore, Version};
use tarn_storage::table_def::{BaseFormat, ColumnMeta, TableDef, TableName};
use tarn_storage::StorageError;
use tarn_tests::moto::Moto;
use tarn_tests::{simple_rows, TestServer};

async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    simple_rows(
        &client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {}", tarn_tests::describe(&e))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warehouse_on_s3_survives_restarts_and_lives_in_its_bucket() {
    let moto = Moto::start(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let wal = tempfile::tempdir().unwrap();
    let (url, config) = moto.config("restarts", wal.path());
    let server = TestServer::start_at(&url, config.clone()).await;
    {
        let client = server.client().await;
        client
            .batch_execute(
                "CREATE TABLE docs (id BIGINT PRIMARY KEY, body TEXT, v VECTOR(2), raw BYTEA) WITH (history_retention = '0');
                 CREATE INDEX docs_text ON docs USING bm25 (body);
                 CREATE INDEX docs_vec ON docs USING hnsw (v vector_l2_ops);
                 INSERT INTO docs VALUES (1, 'red fox', '[1,1]', '\\x0102'), (2, 'blue whale', '[5,5]', NULL),
                                         (3, 'red panda', '[9,9]', '\\xff');
                 VACUUM docs;
                 UPDATE docs SET body = 'green turtle' WHERE id = 2;
                 CREATE TABLE logs (line TEXT) USING parquet;
                 INSERT INTO logs VALUES ('first'), ('second');
                 CREATE TABLE plain (n INT);
                 INSERT INTO plain VALUES (1), (2), (3);
                 DELETE FROM plain WHERE n = 2;",
            )
            .await
            .unwrap();
        assert_eq!(
            rows(&client, "SELECT id FROM docs WHERE body @@@ 'red' ORDER BY id").await,
            vec!["1", "3"]
        );
    }
    // A restart replays the log (the update is only there) over the bucket's files.
    let server = server.restart().await;
    let client = server.client().await;
    let check = |client: tokio_postgres::Client| async move {
        assert_eq!(
            rows(&client, "SELECT id, body, v, raw FROM docs ORDER BY id").await,
            vec!["1|red fox|[1,1]|\\x0102", "2|green turtle|[5,5]|NULL", "3|red panda|[9,9]|\\xff"]
        );
        assert_eq!(rows(&client, "SELECT id FROM docs WHERE body @@@ 'turtle'").await, vec!["2"]);
        assert_eq!(rows(&client, "SELECT id FROM docs ORDER BY v <-> '[8,8]' LIMIT 1").await, vec!["3"]);
        assert_eq!(rows(&client, "SELECT body FROM docs WHERE id = 2").await, vec!["green turtle"]);
        assert_eq!(
            rows(&client, "SELECT line FROM logs WHERE line <> 'third' ORDER BY line").await,
            vec!["first", "second"]
        );
        assert_eq!(rows(&client, "SELECT n FROM plain ORDER BY n").await, vec!["1", "3"]);
        client
    };
    let client = check(client).await;
    client.batch_execute("VACUUM docs; INSERT INTO logs VALUES ('third')").await.unwrap();
    assert_eq!(rows(&client, "SELECT versions FROM tarn_storage WHERE table_name = 'docs'").await, vec!["1"]);
    drop(client);
    server.stop().await;

    // A clean close checkpoints the log: a server with an empty log finds everything
    // in the bucket.
    let fresh_wal = tempfile::tempdir().unwrap();
    let (_, config) = moto.config("restarts", fresh_wal.path());
    let server = TestServer::start_at(&url, config).await;
    let client = check(server.client().await).await;
    assert_eq!(rows(&client, "SELECT count(*) FROM logs").await, vec!["3"]);
    // A warm query reads what it read before from the local cache of object ranges.
    let queries = "SELECT id, body, v, raw FROM docs ORDER BY id;
                   SELECT id FROM docs ORDER BY v <-> '[8,8]' LIMIT 1;
                   SELECT id FROM docs WHERE body @@@ 'turtle';
                   SELECT count(*) FROM logs";
    client.batch_execute(queries).await.unwrap();
    let cold = rows(&client, "SELECT hits, misses FROM tarn_object_cache").await;
    client.batch_execute(queries).await.unwrap();
    let warm = rows(&client, "SELECT hits, misses FROM tarn_object_cache").await;
    let parse = |row: &[String]| -> (i64, i64) {
        let (h, m) = row[0].split_once('|').unwrap();
        (h.parse().unwrap(), m.parse().unwrap())
    };
    let ((cold_hits, cold_misses), (warm_hits, warm_misses)) = (parse(&cold), parse(&warm));
    assert_eq!(warm_misses, cold_misses, "a warm query went back to the store: {cold:?} then {warm:?}");
    assert!(warm_hits > cold_hits, "{cold:?} then {warm:?}");
    client.batch_execute("INSERT INTO docs VALUES (4, 'red kite', '[2,2]', NULL)").await.unwrap();
    assert_eq!(
        rows(&client, "SELECT id FROM docs WHERE body @@@ 'red' ORDER BY id").await,
        vec!["1", "3", "4"]
    );
    server.stop().await;
}

fn race_def() -> TableDef {
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
        "n",
        arrow::datatypes::DataType::Int64,
        true,
    )]));
    TableDef {
        name: TableName::new("public", "race"),
        schema,
        columns: vec![ColumnMeta { name: "n".into(), ..Default::default() }],
        primary_key: vec![],
        format: BaseFormat::Parquet,
        bucket_count: 1,
        options: BTreeMap::new(),
        comments: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_for_a_version_on_s3_never_both_win() {
    let moto = Moto::start(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let wal = tempfile::tempdir().unwrap();
    let (url, config) = moto.config("race", wal.path());
    // Two clients of the bucket, as two processes would have.
    let one = Location::open(&url, &config.s3).unwrap();
    let two = Location::open(&url, &config.s3).unwrap();
    let dir = Path::from("public/race");
    let stores = [ManifestStore::new(&one, &dir), ManifestStore::new(&two, &dir)];
    let mut manifest = Manifest::first(race_def(), BaseRef::Parquet { files: vec![] });
    for round in 1..=20u64 {
        manifest.version = Version(round);
        let (a, b) = tokio::join!(stores[0].commit(&manifest), stores[1].commit(&manifest));
        let won = [a.is_ok(), b.is_ok()];
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: exactly one writer wins ({a:?}, {b:?})"
        );
        for lost in [a, b].into_iter().filter_map(Result::err) {
            assert!(matches!(lost, StorageError::CommitConflict { .. }), "round {round}: {lost}");
        }
    }
    assert_eq!(stores[1].versions().await.unwrap().len(), 20);
}
