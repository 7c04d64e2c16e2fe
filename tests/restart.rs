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

/// What the soak measures at the end of each tenth of its run.
#[derive(Debug, Clone, Copy)]
struct Soaked {
    storage_bytes: i64,
    manifest_bytes: u64,
    versions: i64,
    open: std::time::Duration,
    lookup: std::time::Duration,
    scan: std::time::Duration,
}

/// The median of `runs` timings of `work`.
async fn median<F: std::future::Future<Output = ()>>(
    runs: usize,
    mut work: impl FnMut() -> F,
) -> std::time::Duration {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = std::time::Instant::now();
        work().await;
        times.push(started.elapsed());
    }
    times.sort();
    times[runs / 2]
}

/// Soak, run only with `TARN_SOAK=1` (`TARN_SOAK_COMMITS`, default 20,000, sets its
/// length): 2,000 rows, then one upsert of a random key per commit into the table, with
/// compaction and a one-second history retention. At each tenth of the run the table
/// is vacuumed and checked against a model, then measured: bytes on storage, the newest
/// manifest's size, versions kept, point lookup and full scan latency (medians), and
/// the time a restarted server takes to open the warehouse. Each stays within 1.5x of
/// its value at the first tenth (latencies with 2 ms of slack for a noisy machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_table_stays_small_and_fast() {
    if std::env::var("TARN_SOAK").is_err() {
        println!("skipped: set TARN_SOAK=1 to run the soak");
        return;
    }
    let commits: u64 = std::env::var("TARN_SOAK_COMMITS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    const KEYS: i64 = 2_000;
    let data = tempfile::tempdir().unwrap();
    let manifests = data.path().join("public").join("soak").join("_tarn").join("manifest");
    let mut server = TestServer::start_in(data.path()).await;
    let mut client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE soak (id BIGINT PRIMARY KEY, v BIGINT NOT NULL, pad TEXT) \
             WITH (history_retention = '1s', flush_rows = 1000, compaction_threshold = 5000, compaction_interval = '10s')",
        )
        .await
        .unwrap();
    // Every key from the start, so the table's live size is what it will stay.
    client
        .batch_execute(&format!(
            "INSERT INTO soak SELECT value, 0, repeat(md5(value::text), 5) \
                 FROM generate_series(0, {}) AS g(value); VACUUM soak",
            KEYS - 1
        ))
        .await
        .unwrap();
    let mut rng = tarn_tests::rng::Rng::new(0x50A4);
    let mut model: std::collections::BTreeMap<i64, i64> = (0..KEYS).map(|k| (k, 0)).collect();
    let mut figures: Vec<Soaked> = Vec::new();
    let started = std::time::Instant::now();
    for tenth in 1..=10u64 {
        let upsert = client
            .prepare(
                "INSERT INTO soak VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET v = excluded.v, pad = excluded.pad",
            )
            .await
            .unwrap();
        for i in 0..commits / 10 {
            let (key, value) = (rng.range(0, KEYS), (tenth * commits + i) as i64);
            // 160 bytes that do not compress away.
            let pad: String = (0..10).map(|_| format!("{:016x}", rng.next_u64())).collect();
            client.execute(&upsert, &[&key, &value, &pad]).await.unwrap();
            model.insert(key, value);
        }
        // The first vacuum compacts (its commits are within the retention); past the
        // retention again, the second keeps only the newest version.
        for _ in 0..2 {
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            client.batch_execute("VACUUM soak").await.unwrap();
        }
        let rows: Vec<(i64, i64)> = client
            .query("SELECT id, v FROM soak ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(rows, model.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), "tenth {tenth}: the model");

        let storage = client
            .query_one("SELECT bytes, versions FROM tarn_storage WHERE table_name = 'soak'", &[])
            .await
            .unwrap();
        let newest = std::fs::read_dir(&manifests).unwrap().map(|e| e.unwrap().path()).max().unwrap();
        let lookup_stmt = client.prepare("SELECT v FROM soak WHERE id = $1").await.unwrap();
        let lookup = median(200, || {
            let (client, stmt, key) = (&client, &lookup_stmt, rng.range(0, KEYS));
            async move {
                client.query_opt(stmt, &[&key]).await.unwrap();
            }
        })
        .await;
        let scan = median(11, || async {
            client.query_one("SELECT count(*), sum(v) FROM soak", &[]).await.unwrap();
        })
        .await;
        drop(client);
        server.stop().await;
        let opening = std::time::Instant::now();
        server = TestServer::start_in(data.path()).await;
        let open = opening.elapsed();
        client = server.client().await;
        let soaked = Soaked {
            storage_bytes: storage.get(0),
            manifest_bytes: std::fs::metadata(&newest).unwrap().len(),
            versions: storage.get(1),
            open,
            lookup,
            scan,
        };
        println!("soak: {} commits in {:?}: {soaked:?}", tenth * commits / 10, started.elapsed());
        figures.push(soaked);
    }
    let first = figures[0];
    let slack = std::time::Duration::from_millis(2);
    for (i, f) in figures.iter().enumerate() {
        let at = format!("at tenth {} ({f:?}; first {first:?})", i + 1);
        assert!(f.storage_bytes * 2 <= first.storage_bytes * 3, "storage grew {at}");
        assert!(f.manifest_bytes * 2 <= first.manifest_bytes * 3, "the manifest grew {at}");
        assert!(f.versions <= first.versions.max(2), "versions piled up {at}");
        assert!(f.lookup <= first.lookup.mul_f64(1.5) + slack, "point lookups slowed {at}");
        assert!(f.scan <= first.scan.mul_f64(1.5) + slack, "scans slowed {at}");
        assert!(f.open <= first.open.mul_f64(1.5) + slack * 10, "opening slowed {at}");
    }
}
