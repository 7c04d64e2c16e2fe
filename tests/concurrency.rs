//! Writers, readers and the compactor on one table at once.
//!
//! - Transfers between accounts keep the total constant; readers must always see that
//!   total (each statement reads one snapshot), a transaction's reads must not move while
//!   others commit, and the final balances must equal the committed transfers, with
//!   `VACUUM` compacting all along and a restart at the end.
//! - Writers on disjoint keys never conflict, compaction or not.
//! - Two transactions writing the same key: the one that commits second gets 40001 and
//!   none of its writes remain.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tarn_tests::describe;
use tarn_tests::rng::{env_u64, Rng};
use tarn_tests::TestServer;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

const ACCOUNTS: i64 = 10;
const OPENING: i64 = 1000;
const OPTIONS: &str =
    "WITH (bucket_count = 4, flush_rows = 20, compaction_threshold = 50, compaction_interval = '1s')";

async fn create_accounts(client: &Client, n: i64) {
    client
        .batch_execute(&format!(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL) {OPTIONS}"
        ))
        .await
        .unwrap();
    if n > 0 {
        let values: Vec<String> = (0..n).map(|i| format!("({i}, {OPENING})")).collect();
        client.batch_execute(&format!("INSERT INTO accounts VALUES {}", values.join(", "))).await.unwrap();
    }
}

async fn balances(client: &Client) -> Vec<(i64, i64)> {
    client
        .query("SELECT id, balance FROM accounts ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn version(client: &Client, table: &str) -> i64 {
    client
        .query_one("SELECT max(version) FROM tarn_tables WHERE table_name = $1", &[&table])
        .await
        .unwrap()
        .get(0)
}

fn is_serialization_failure(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
}

/// One committed transfer: `amount` from `from` to `to`.
type Transfer = (i64, i64, i64);

/// Moves money until `count` transfers committed, retrying each on 40001. Returns the
/// committed transfers and the number of 40001s.
async fn transfer_writer(
    client: Client,
    mut rng: Rng,
    accounts: std::ops::Range<i64>,
    count: usize,
    deadline: Instant,
) -> Result<(Vec<Transfer>, usize), String> {
    let mut done = Vec::new();
    let mut conflicts = 0;
    while done.len() < count {
        if Instant::now() > deadline {
            return Err(format!("only {} of {count} transfers in time ({conflicts} conflicts)", done.len()));
        }
        let from = rng.range(accounts.start, accounts.end);
        let mut to = rng.range(accounts.start, accounts.end - 1);
        if to >= from {
            to += 1;
        }
        let amount = rng.range(1, 50);
        client.batch_execute("BEGIN").await.map_err(|e| format!("BEGIN: {}", describe(&e)))?;
        let mut failed_at = None;
        for sql in [
            format!("UPDATE accounts SET balance = balance - {amount} WHERE id = {from}"),
            format!("UPDATE accounts SET balance = balance + {amount} WHERE id = {to}"),
        ] {
            match client.execute(sql.as_str(), &[]).await {
                Ok(1) => {}
                Ok(n) => return Err(format!("{sql}: {n} rows")),
                Err(e) if is_serialization_failure(&e) => {
                    failed_at = Some(sql);
                    break;
                }
                Err(e) => return Err(format!("{sql}: {}", describe(&e))),
            }
        }
        if failed_at.is_some() {
            conflicts += 1;
            client.batch_execute("ROLLBACK").await.map_err(|e| format!("ROLLBACK: {}", describe(&e)))?;
            continue;
        }
        match client.batch_execute("COMMIT").await {
            Ok(()) => done.push((from, to, amount)),
            Err(e) if is_serialization_failure(&e) => conflicts += 1,
            Err(e) => return Err(format!("COMMIT: {}", describe(&e))),
        }
    }
    Ok((done, conflicts))
}

/// `VACUUM accounts` in a loop until `stop`. Returns how many ran.
async fn vacuum_loop(client: Client, stop: Arc<AtomicBool>) -> Result<usize, String> {
    let mut runs = 0;
    while !stop.load(Ordering::Relaxed) {
        client
            .batch_execute("VACUUM accounts")
            .await
            .map_err(|e| format!("VACUUM accounts: {}", describe(&e)))?;
        runs += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(runs)
}

/// Reads until `stop`: every statement must see the constant total, and a
/// transaction's two reads must agree. Returns how many reads ran.
async fn reader(client: Client, total: i64, stop: Arc<AtomicBool>) -> Result<usize, String> {
    let mut reads = 0;
    while !stop.load(Ordering::Relaxed) {
        let row = client
            .query_one("SELECT CAST(sum(balance) AS BIGINT), count(*) FROM accounts", &[])
            .await
            .map_err(|e| format!("sum: {}", describe(&e)))?;
        let (sum, count): (i64, i64) = (row.get(0), row.get(1));
        if (sum, count) != (total, ACCOUNTS) {
            return Err(format!("sum(balance), count(*) = ({sum}, {count}), want ({total}, {ACCOUNTS})"));
        }
        let scan = balances(&client).await;
        let ids: Vec<i64> = scan.iter().map(|r| r.0).collect();
        if ids != (0..ACCOUNTS).collect::<Vec<_>>() {
            return Err(format!("a full scan shows ids {ids:?}"));
        }
        let scan_sum: i64 = scan.iter().map(|r| r.1).sum();
        if scan_sum != total {
            return Err(format!("a full scan sums to {scan_sum}: {scan:?}"));
        }
        // Inside a transaction the snapshot holds while transfers commit around it.
        client.batch_execute("BEGIN").await.map_err(|e| format!("BEGIN: {}", describe(&e)))?;
        let first = balances(&client).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let second = balances(&client).await;
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| format!("COMMIT of a read-only block: {}", describe(&e)))?;
        if first != second {
            return Err(format!("one transaction read {first:?} and then {second:?}"));
        }
        reads += 4;
    }
    Ok(reads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_keep_the_total_while_vacuum_compacts() {
    let seed = env_u64("TARN_CONCURRENCY_SEED", 42);
    println!("TARN_CONCURRENCY_SEED={seed}");
    let mut rng = Rng::new(seed);
    let server = TestServer::start().await;
    let admin = server.client().await;
    create_accounts(&admin, ACCOUNTS).await;
    let total = ACCOUNTS * OPENING;
    let start_version = version(&admin, "accounts").await;

    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut writers = Vec::new();
    for _ in 0..3 {
        writers.push(tokio::spawn(transfer_writer(
            server.client().await,
            rng.fork(),
            0..ACCOUNTS,
            40,
            deadline,
        )));
    }
    let vacuum = tokio::spawn(vacuum_loop(server.client().await, stop.clone()));
    let mut readers = Vec::new();
    for _ in 0..2 {
        readers.push(tokio::spawn(reader(server.client().await, total, stop.clone())));
    }

    let mut committed = Vec::new();
    let mut conflicts = 0;
    let mut failures = Vec::new();
    for w in writers {
        match w.await.unwrap() {
            Ok((done, c)) => {
                committed.extend(done);
                conflicts += c;
            }
            Err(e) => failures.push(format!("writer: {e}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut reads = 0;
    for r in readers {
        match r.await.unwrap() {
            Ok(n) => reads += n,
            Err(e) => failures.push(format!("reader: {e}")),
        }
    }
    let vacuums = vacuum.await.unwrap().unwrap_or_else(|e| {
        failures.push(e);
        0
    });
    assert!(failures.is_empty(), "TARN_CONCURRENCY_SEED={seed}: {failures:#?}");
    println!("{} transfers, {conflicts} retried on 40001, {reads} reads, {vacuums} VACUUMs", committed.len());
    assert!(reads > 0 && vacuums > 0, "the readers and the compactor must have run alongside the writers");

    // The final balances are exactly the committed transfers: no lost update, no
    // leftover of a transaction that got 40001.
    let mut want: BTreeMap<i64, i64> = (0..ACCOUNTS).map(|i| (i, OPENING)).collect();
    for (from, to, amount) in &committed {
        *want.get_mut(from).unwrap() -= amount;
        *want.get_mut(to).unwrap() += amount;
    }
    let want: Vec<(i64, i64)> = want.into_iter().collect();
    assert_eq!(balances(&admin).await, want, "TARN_CONCURRENCY_SEED={seed}: balances vs committed transfers");
    // One version per committed transfer; failed ones and compactions make none.
    assert_eq!(version(&admin, "accounts").await, start_version + committed.len() as i64);

    drop(admin);
    let server = server.restart().await;
    let admin = server.client().await;
    assert_eq!(balances(&admin).await, want, "after a restart");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_on_disjoint_keys_never_conflict_under_compaction() {
    let server = TestServer::start().await;
    let admin = server.client().await;
    create_accounts(&admin, 12).await;
    let stop = Arc::new(AtomicBool::new(false));
    let vacuum = tokio::spawn(vacuum_loop(server.client().await, stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rng = Rng::new(7);
    let mut writers = Vec::new();
    // Each writer moves money inside its own four accounts.
    for w in 0..3i64 {
        let client = server.client().await;
        writers.push(tokio::spawn(transfer_writer(client, rng.fork(), w * 4..w * 4 + 4, 30, deadline)));
    }
    let mut committed = Vec::new();
    for w in writers {
        let (done, conflicts) = w.await.unwrap().unwrap();
        assert_eq!(conflicts, 0, "writers on disjoint keys got 40001");
        committed.extend(done);
    }
    stop.store(true, Ordering::Relaxed);
    assert!(vacuum.await.unwrap().unwrap() > 0);
    let mut want: BTreeMap<i64, i64> = (0..12).map(|i| (i, OPENING)).collect();
    for (from, to, amount) in &committed {
        *want.get_mut(from).unwrap() -= amount;
        *want.get_mut(to).unwrap() += amount;
    }
    assert_eq!(balances(&admin).await, want.into_iter().collect::<Vec<_>>());
    server.stop().await;
}

/// A transaction that stays open while other keys change and are compacted, several
/// times over, commits: compactions keep what they folded for conflict checks. A key
/// it wrote that was also changed and compacted meanwhile still gets 40001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_open_across_compactions_conflicts_only_on_its_keys() {
    let server = TestServer::start().await;
    let admin = server.client().await;
    create_accounts(&admin, 4).await;
    let long = server.client().await;
    for (other, expect_conflict) in [(2, false), (1, true)] {
        run(&long, "BEGIN").await.unwrap();
        balance(&long, 3).await;
        for _ in 0..3 {
            run(&admin, &format!("UPDATE accounts SET balance = balance + 1 WHERE id = {other}"))
                .await
                .unwrap();
            run(&admin, "VACUUM accounts").await.unwrap();
        }
        run(&long, "UPDATE accounts SET balance = balance - 5 WHERE id = 1").await.unwrap();
        let outcome = run(&long, "COMMIT").await;
        match (outcome, expect_conflict) {
            (Ok(()), false) => {}
            (Err(e), true) if is_serialization_failure(&e) => {}
            (outcome, _) => panic!("id {other} changed meanwhile: COMMIT gave {outcome:?}"),
        }
    }
    assert_eq!(balance(&admin, 1).await, Some(OPENING - 5 + 3));
    assert_eq!(balance(&admin, 2).await, Some(OPENING + 3));
    server.stop().await;
}

/// Two transactions upsert the same new key: neither sees the other's row, so both
/// insert; the later committer gets 40001 (never 23505: ON CONFLICT covers that key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_upserts_of_one_new_key() {
    let server = TestServer::start().await;
    let admin = server.client().await;
    create_accounts(&admin, 0).await;
    let (a, b) = (server.client().await, server.client().await);
    let upsert = |n: i64| {
        format!(
            "INSERT INTO accounts VALUES (1, {n}) ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + {n}"
        )
    };
    run(&a, "BEGIN").await.unwrap();
    run(&b, "BEGIN").await.unwrap();
    run(&a, &upsert(5)).await.unwrap();
    run(&b, &upsert(7)).await.unwrap();
    assert_eq!(balance(&b, 1).await, Some(7), "B reads its own insert");
    run(&a, "COMMIT").await.unwrap();
    let err = run(&b, "COMMIT").await.expect_err("B committed second over A's insert");
    assert_eq!(err.code(), Some(&SqlState::T_R_SERIALIZATION_FAILURE), "B's COMMIT: {}", describe(&err));
    assert_eq!(balance(&admin, 1).await, Some(5));
    server.stop().await;
}

/// Single statements (each its own transaction) incrementing shared counters, by
/// upsert and by UPDATE: every acknowledged increment is counted exactly once, the
/// losers of a conflict retrying on 40001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_in_autocommit_lose_nothing() {
    const KEYS: i64 = 4;
    let server = TestServer::start().await;
    let admin = server.client().await;
    admin
        .batch_execute(&format!("CREATE TABLE counters (id BIGINT PRIMARY KEY, n BIGINT NOT NULL) {OPTIONS}"))
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let vacuum = tokio::spawn({
        let client = server.client().await;
        let stop = stop.clone();
        async move {
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                client
                    .batch_execute("VACUUM counters")
                    .await
                    .map_err(|e| format!("VACUUM: {}", describe(&e)))?;
                runs += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok::<usize, String>(runs)
        }
    });
    let mut rng = Rng::new(env_u64("TARN_CONCURRENCY_SEED", 42));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let client = server.client().await;
        let mut rng = rng.fork();
        tasks.push(tokio::spawn(async move {
            let mut counted: BTreeMap<i64, i64> = BTreeMap::new();
            let mut conflicts = 0;
            let deadline = Instant::now() + Duration::from_secs(60);
            while counted.values().sum::<i64>() < 60 {
                assert!(Instant::now() < deadline, "60 increments did not finish in 60 s");
                let id = rng.range(0, KEYS);
                // The UPDATE form counts only once the row exists.
                let sql = if rng.percent(50) {
                    format!("INSERT INTO counters VALUES ({id}, 1) ON CONFLICT (id) DO UPDATE SET n = counters.n + 1")
                } else {
                    format!("UPDATE counters SET n = n + 1 WHERE id = {id}")
                };
                match client.execute(sql.as_str(), &[]).await {
                    Ok(1) => *counted.entry(id).or_default() += 1,
                    Ok(0) if sql.starts_with("UPDATE") => {}
                    Ok(n) => panic!("{sql}: {n} rows"),
                    Err(e) if is_serialization_failure(&e) => conflicts += 1,
                    Err(e) => panic!("{sql}: {}", describe(&e)),
                }
            }
            (counted, conflicts)
        }));
    }
    let mut want: BTreeMap<i64, i64> = BTreeMap::new();
    let mut conflicts = 0;
    for t in tasks {
        let (counted, c) = t.await.unwrap();
        for (id, n) in counted {
            *want.entry(id).or_default() += n;
        }
        conflicts += c;
    }
    stop.store(true, Ordering::Relaxed);
    assert!(vacuum.await.unwrap().unwrap() > 0);
    println!("{} increments, {conflicts} retried on 40001", want.values().sum::<i64>());
    let got: BTreeMap<i64, i64> = admin
        .query("SELECT id, n FROM counters", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(got, want, "counters vs acknowledged increments");
    server.stop().await;
}

/// Runs `sql` with a time limit: the contract is optimistic (conflicts show at COMMIT),
/// so a statement that waits on another transaction is a failure, not a hang.
async fn run(client: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    match tokio::time::timeout(Duration::from_secs(20), client.batch_execute(sql)).await {
        Ok(outcome) => outcome,
        Err(_) => panic!("{sql}: still waiting after 20 s"),
    }
}

async fn balance(client: &Client, id: i64) -> Option<i64> {
    client.query_opt("SELECT balance FROM accounts WHERE id = $1", &[&id]).await.unwrap().map(|r| r.get(0))
}

/// Two transactions write the same key; the one that commits second gets 40001 and
/// every write it made (the conflicting one and another) is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_later_committer_of_a_write_write_conflict_gets_40001() {
    struct Case {
        a: &'static str,
        b: &'static str,
        /// Row 1 after A commits and B fails.
        after: Option<i64>,
        /// Whether B also may fail with 23505 (two inserts of one new key).
        unique_too: bool,
    }
    let cases = [
        Case {
            a: "UPDATE accounts SET balance = balance + 10 WHERE id = 1",
            b: "UPDATE accounts SET balance = balance + 20 WHERE id = 1",
            after: Some(110),
            unique_too: false,
        },
        Case {
            a: "UPDATE accounts SET balance = balance + 10 WHERE id = 1",
            b: "DELETE FROM accounts WHERE id = 1",
            after: Some(110),
            unique_too: false,
        },
        Case {
            a: "DELETE FROM accounts WHERE id = 1",
            b: "UPDATE accounts SET balance = balance + 20 WHERE id = 1",
            after: None,
            unique_too: false,
        },
        Case {
            a: "INSERT INTO accounts VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + 5",
            b: "UPDATE accounts SET balance = balance * 3 WHERE id = 1",
            after: Some(105),
            unique_too: false,
        },
        Case {
            a: "UPDATE accounts SET balance = balance + 10 WHERE id = 1",
            b: "INSERT INTO accounts VALUES (1, 7) ON CONFLICT (id) DO UPDATE SET balance = EXCLUDED.balance",
            after: Some(110),
            unique_too: false,
        },
        Case {
            a: "DELETE FROM accounts WHERE id = 1; INSERT INTO accounts VALUES (1, 1)",
            b: "DELETE FROM accounts WHERE id = 1",
            after: Some(1),
            unique_too: false,
        },
        Case {
            a: "DELETE FROM accounts WHERE id = 1",
            b: "DELETE FROM accounts WHERE id = 1; INSERT INTO accounts VALUES (1, 2)",
            after: None,
            unique_too: true,
        },
    ];
    let server = TestServer::start().await;
    let admin = server.client().await;
    create_accounts(&admin, 0).await;
    let (a, b) = (server.client().await, server.client().await);
    for (i, case) in cases.iter().enumerate() {
        for b_starts_first in [false, true] {
            let what = format!("case {i} (A: {}; B: {}; B began first: {b_starts_first})", case.a, case.b);
            admin
                .batch_execute("DELETE FROM accounts; INSERT INTO accounts VALUES (1, 100), (2, 200)")
                .await
                .unwrap();
            let before = version(&admin, "accounts").await;
            let (first, second) = if b_starts_first { (&b, &a) } else { (&a, &b) };
            run(first, "BEGIN").await.unwrap();
            run(second, "BEGIN").await.unwrap();
            // Take both snapshots before either writes.
            balance(first, 2).await;
            balance(second, 2).await;
            run(&a, case.a).await.unwrap_or_else(|e| panic!("{what}: A's write: {}", describe(&e)));
            run(&b, case.b).await.unwrap_or_else(|e| panic!("{what}: B's write: {}", describe(&e)));
            run(
                &b,
                "UPDATE accounts SET balance = balance + 1 WHERE id = 2; INSERT INTO accounts VALUES (99, 9)",
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: B's other writes: {}", describe(&e)));
            // B reads its own writes; nobody else sees them.
            assert_eq!(balance(&b, 99).await, Some(9), "{what}");
            assert_eq!(balance(&admin, 99).await, None, "{what}: B's uncommitted row is visible outside it");
            assert_eq!(balance(&admin, 2).await, Some(200), "{what}");

            run(&a, "COMMIT").await.unwrap_or_else(|e| panic!("{what}: A commits first: {}", describe(&e)));
            let err =
                run(&b, "COMMIT").await.expect_err(&format!("{what}: B committed second over A's write"));
            let code = err.code();
            let expected = code == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
                || (case.unique_too && code == Some(&SqlState::UNIQUE_VIOLATION));
            assert!(expected, "{what}: B's COMMIT: {}", describe(&err));

            // B's session goes on outside any transaction; none of B's writes remain.
            let n: i64 = b.query_one("SELECT count(*) FROM accounts", &[]).await.unwrap().get(0);
            assert_eq!(n, 1 + i64::from(case.after.is_some()), "{what}: rows after");
            assert_eq!(balance(&b, 1).await, case.after, "{what}: row 1");
            assert_eq!(balance(&b, 2).await, Some(200), "{what}: B's update of row 2 survived its failure");
            assert_eq!(balance(&b, 99).await, None, "{what}: B's insert survived its failure");
            assert_eq!(version(&admin, "accounts").await, before + 1, "{what}: only A made a version");
        }
    }

    // Different keys: both commit, in either order.
    admin
        .batch_execute("DELETE FROM accounts; INSERT INTO accounts VALUES (1, 100), (2, 200)")
        .await
        .unwrap();
    run(&a, "BEGIN").await.unwrap();
    run(&b, "BEGIN").await.unwrap();
    run(&a, "UPDATE accounts SET balance = balance + 10 WHERE id = 1").await.unwrap();
    run(&b, "UPDATE accounts SET balance = balance + 20 WHERE id = 2; INSERT INTO accounts VALUES (3, 3)")
        .await
        .unwrap();
    run(&b, "COMMIT").await.unwrap();
    run(&a, "COMMIT").await.unwrap();
    assert_eq!(balances(&admin).await, vec![(1, 110), (2, 220), (3, 3)]);
    server.stop().await;
}
