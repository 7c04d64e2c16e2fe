//! Several servers on one warehouse, on a real S3 server (moto, [`tarn_tests::moto`]):
//! one writer and two read-only replicas while the writer commits transfers between
//! accounts and batches of events, flushes, compacts and vacuums. A replica's every
//! query sees a committed state (the accounts' total never changes, events come in
//! whole batches, versions never go back), replicas catch up within the flush and
//! follow intervals once the writer stops, the writer's DDL reaches them, and they
//! refuse every write with 25006. (`tests/crash.rs` has the writer's lease: a second
//! writer refused, and one taking over from a writer that stopped beating.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tarn_tests::moto::Moto;
use tarn_tests::{simple_rows, TestServer};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

const ACCOUNTS: i64 = 20;
const OPENING: i64 = 1000;
const BATCH: i64 = 10;
/// The writer's flush interval (set on the tables) and the replicas' poll.
const FLUSH: Duration = Duration::from_millis(300);
const FOLLOW: Duration = Duration::from_millis(200);

async fn rows(client: &Client, sql: &str) -> Vec<String> {
    simple_rows(
        &client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {}", tarn_tests::describe(&e))),
    )
}

async fn number(client: &Client, sql: &str) -> i64 {
    rows(client, sql).await[0].parse().unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// What a replica's reader saw.
#[derive(Debug, Default)]
struct Seen {
    queries: u64,
    versions: std::collections::BTreeSet<i64>,
}

/// Reads a replica until `stop`, checking that each query sees a committed state and
/// that nothing goes back in time.
async fn read_replica(client: Client, stop: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    let (mut events, mut version) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        let totals = rows(&client, "SELECT sum(balance), count(*) FROM accounts").await;
        assert_eq!(totals, vec![format!("{}|{ACCOUNTS}", ACCOUNTS * OPENING)], "a torn transfer");
        let now = number(&client, "SELECT count(*) FROM events").await;
        assert_eq!(now % BATCH, 0, "a torn batch of events: {now}");
        assert!(now >= events, "events went back from {events} to {now}");
        events = now;
        let v = number(&client, "SELECT max(version) FROM tarn_tables WHERE table_name = 'accounts'").await;
        assert!(v >= version, "the accounts went back from version {version} to {v}");
        version = v;
        seen.versions.insert(v);
        seen.queries += 1;
    }
    seen
}

/// Commits transfers (two updates in one transaction) and batches of events until
/// `stop`; returns how many transfers.
async fn write(client: Client, stop: Arc<AtomicBool>) -> u64 {
    let mut transfers = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let from = (transfers * 7) as i64 % ACCOUNTS + 1;
        let to = (transfers * 13 + 5) as i64 % ACCOUNTS + 1;
        let amount = (transfers % 50) as i64 + 1;
        client
            .batch_execute(&format!(
                "BEGIN;
                 UPDATE accounts SET balance = balance - {amount} WHERE id = {from};
                 UPDATE accounts SET balance = balance + {amount} WHERE id = {to};
                 COMMIT"
            ))
            .await
            .unwrap_or_else(|e| panic!("transfer {transfers}: {}", tarn_tests::describe(&e)));
        if transfers.is_multiple_of(4) {
            let batch: Vec<String> = (0..BATCH).map(|n| format!("({transfers}, {n})")).collect();
            client.batch_execute(&format!("INSERT INTO events VALUES {}", batch.join(", "))).await.unwrap();
        }
        if transfers % 60 == 59 {
            client.batch_execute("VACUUM accounts").await.unwrap();
        }
        transfers += 1;
    }
    transfers
}

/// Waits until `replica` answers `sql` as the writer does (an error, such as a table
/// it does not know yet, is no answer); returns how long that took.
async fn caught_up(replica: &Client, writer: &Client, sql: &str) -> Duration {
    let expected = rows(writer, sql).await;
    let started = Instant::now();
    loop {
        if replica.simple_query(sql).await.is_ok_and(|answer| simple_rows(&answer) == expected) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "a replica did not catch up with {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sqlstate(e: &tokio_postgres::Error) -> SqlState {
    e.code().cloned().unwrap_or_else(|| panic!("not a server error: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_see_committed_snapshots_and_catch_up_within_the_flush_interval() {
    let moto = Moto::start(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let wal = tempfile::tempdir().unwrap();
    let (url, config) = moto.config("replicas", wal.path());
    let writer = TestServer::start_at(&url, config.clone()).await;
    let w = writer.client().await;
    let opening: Vec<String> = (1..=ACCOUNTS).map(|id| format!("({id}, {OPENING})")).collect();
    let flush = format!("{}ms", FLUSH.as_millis());
    w.batch_execute(&format!(
        "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)
           WITH (bucket_count = 2, flush_interval = '{flush}', compaction_threshold = 60,
                 compaction_interval = '1s', history_retention = '1 min');
         INSERT INTO accounts VALUES {};
         CREATE TABLE events (batch BIGINT, n BIGINT);
         CREATE SEQUENCE ids;",
        opening.join(", ")
    ))
    .await
    .unwrap();

    let replica_config = tarn_server::ServerConfig {
        read_only: true,
        follow_interval: format!("{}ms", FOLLOW.as_millis()),
        ..config.clone()
    };
    let replicas = [
        TestServer::start_at(&url, replica_config.clone()).await,
        TestServer::start_at(&url, replica_config).await,
    ];
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(replica.client().await);
    }
    // What the writer had flushed when they opened, at the latest after a flush.
    for client in &clients {
        caught_up(client, &w, "SELECT count(*) FROM accounts").await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = replicas
        .iter()
        .map(|replica| {
            let stop = stop.clone();
            let connection = replica.connection_string();
            tokio::spawn(async move {
                let (client, conn) =
                    tokio_postgres::connect(&connection, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                read_replica(client, stop).await
            })
        })
        .collect();
    let writing = tokio::spawn(write(writer.client().await, stop.clone()));
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    let transfers = writing.await.unwrap();
    for (i, reader) in readers.into_iter().enumerate() {
        let seen = reader.await.unwrap();
        println!(
            "replica {i}: {} queries, {} versions of the accounts seen",
            seen.queries,
            seen.versions.len()
        );
        assert!(seen.versions.len() >= 3, "replica {i} did not follow the writer: {seen:?}");
    }
    let compactions = number(&w, "SELECT count(*) FROM tarn_tables WHERE last_compaction IS NOT NULL").await;
    println!("{transfers} transfers; compacted buckets: {compactions}");
    assert!(transfers > 20 && compactions > 0, "{transfers} transfers, {compactions} compacted buckets");

    // Once the writer stops, the replicas catch up within its flush interval and their poll.
    for client in &clients {
        let lag = caught_up(client, &w, "SELECT id, balance FROM accounts ORDER BY id").await;
        caught_up(client, &w, "SELECT count(*), sum(n) FROM events").await;
        println!("caught up in {lag:?}");
        assert!(lag < FLUSH + FOLLOW + Duration::from_secs(2), "caught up only after {lag:?}");
        let lag = number(client, "SELECT max(visible_lag_ms) FROM tarn_tables").await;
        assert!(lag < 2000, "visible_lag_ms {lag}");
    }

    // The writer's DDL reaches them (and plans made before it are made again).
    let r = &clients[0];
    w.batch_execute("CREATE TABLE late (x INT); INSERT INTO late VALUES (1)").await.unwrap();
    caught_up(r, &w, "SELECT x FROM late").await;
    w.batch_execute("ALTER TABLE late ADD COLUMN y TEXT; INSERT INTO late VALUES (2, 'two')").await.unwrap();
    caught_up(r, &w, "SELECT * FROM late ORDER BY x").await;
    w.batch_execute("DROP TABLE late").await.unwrap();
    let started = Instant::now();
    loop {
        match r.simple_query("SELECT * FROM late").await {
            Err(e) if sqlstate(&e) == SqlState::UNDEFINED_TABLE => break,
            _ => assert!(started.elapsed() < Duration::from_secs(10), "the drop did not reach the replica"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every write is refused, as on a PostgreSQL standby; nothing changes.
    for sql in [
        "INSERT INTO accounts VALUES (99, 1)",
        "UPDATE accounts SET balance = 0",
        "DELETE FROM events",
        "CREATE TABLE t (x INT)",
        "CREATE TEMP TABLE t (x INT)",
        "CREATE INDEX ON events USING bm25 (batch)",
        "DROP TABLE events",
        "VACUUM accounts",
        "SELECT nextval('ids')",
        "BEGIN READ WRITE; INSERT INTO events VALUES (0, 0); COMMIT",
    ] {
        let e = r.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), SqlState::READ_ONLY_SQL_TRANSACTION, "{sql}: {}", tarn_tests::describe(&e));
        let _ = r.batch_execute("ROLLBACK").await;
    }
    assert_eq!(rows(r, "SHOW transaction_read_only").await, vec!["on"]);
    assert_eq!(rows(r, "SHOW in_hot_standby").await, vec!["on"]);
    caught_up(r, &w, "SELECT id, balance FROM accounts ORDER BY id").await;
    caught_up(r, &w, "SELECT count(*) FROM events").await;

    drop(clients);
    for replica in replicas {
        replica.stop().await;
    }
    writer.stop().await;
}
