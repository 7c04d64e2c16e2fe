//! Crash tests: a server process dies in the middle of a write load (SIGKILL at random
//! moments, or an abort at a named fail point), a new process opens the same folder, and
//! every acknowledged commit is there, no transaction is torn and no key is doubled.
//!
//! The server runs as a child process so that it can really die. By default the child is
//! this test executable itself, re-run with only the ignored [`child_server`] test
//! selected, which serves the folder exactly as the `tarn` binary's `main` does
//! (`Engine::open` + `tarn_server::run`): `cargo test` does not build other packages'
//! binaries, and a stale `target/debug/tarn` would test old code. Set `TARN_BIN` to a
//! `tarn` binary to run that instead (`--data DIR --listen ADDR`).
//!
//! The load: each of [`CLIENTS`] clients commits numbered transactions `1, 2, 3, ...`;
//! transaction `t` of client `c` inserts three rows `(c, t, 0..3)`, moves the client's
//! head row to `t` (an upsert), marks row `(c, t-1, 1)` (an update) and deletes row
//! `(c, t-1, 2)`. So the whole table is a function of each client's newest committed
//! transaction `h`, read from its head row, and any torn or lost transaction shows as a
//! difference from that function.
//!
//! `TARN_CRASH_SEED` replays the random kill rounds; `TARN_CRASH_ROUNDS` sets how many.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tarn_tests::describe;
use tarn_tests::rng::{env_u64, Rng};
use tokio_postgres::{Client, NoTls};

const CLIENTS: usize = 3;
const DDL: &str = "CREATE TABLE kv (k BIGINT PRIMARY KEY, client INT NOT NULL, txn BIGINT NOT NULL, part INT NOT NULL) \
                   WITH (bucket_count = 4, flush_rows = 20, compaction_threshold = 50, compaction_interval = '1s', \
                   history_retention = '0')";
/// The `part` of a row of transaction `t-1` after transaction `t` updated it.
const MARKED: i32 = 11;
/// The `part` of a client's head row.
const HEAD: i32 = -1;

/// The server process: runs only when a crash test starts this executable as its child.
#[test]
#[ignore = "the server of the crash tests; they start it as a child process"]
fn child_server() {
    let (Ok(data), Ok(listen)) =
        (std::env::var("TARN_CRASH_CHILD_DATA"), std::env::var("TARN_CRASH_CHILD_LISTEN"))
    else {
        return;
    };
    tarn_tests::init_logging();
    // The server's own runtime (its threads have the stacks statements need).
    let runtime = tarn_server::runtime().expect("server runtime");
    runtime.block_on(async move {
        // A warehouse on S3 comes with a configuration file (see `on_s3`).
        let config = match std::env::var("TARN_CRASH_CHILD_CONFIG") {
            Ok(file) => {
                tarn_server::ServerConfig::from_file(Path::new(&file)).expect("the child's configuration")
            }
            Err(_) => tarn_server::ServerConfig { data, ..Default::default() },
        };
        let engine = tarn_engine::Engine::open(config.engine_config()).await.expect("engine opens");
        let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
        tarn_server::run(listener, engine, tarn_server::Frontend::default(), std::future::pending())
            .await
            .expect("server runs");
    });
}

fn key(client: usize, txn: i64, part: i32) -> i64 {
    (client as i64 + 1) * 1_000_000_000 + txn * 4 + i64::from(part)
}

fn head_key(client: usize) -> i64 {
    -(client as i64 + 1)
}

/// A row as `(k, client, txn, part)`.
type KvRow = (i64, i32, i64, i32);

/// The table when each client's newest committed transaction is `heads[c]` (0: none).
fn expected_rows(heads: &[i64]) -> Vec<KvRow> {
    let mut rows = Vec::new();
    for (c, &h) in heads.iter().enumerate() {
        let ci = c as i32;
        if h >= 1 {
            rows.push((head_key(c), ci, h, HEAD));
        }
        for t in 1..=h {
            rows.push((key(c, t, 0), ci, t, 0));
            rows.push((key(c, t, 1), ci, t, if t < h { MARKED } else { 1 }));
            if t == h {
                rows.push((key(c, t, 2), ci, t, 2));
            }
        }
    }
    rows.sort();
    rows
}

/// A server child process over one data folder.
struct Server {
    child: std::process::Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn spawn(data: &Path, failpoint: Option<&str>) -> Server {
        let config = data.with_extension("toml");
        Self::spawn_configured(data, config.exists().then_some(&config), failpoint)
    }

    /// A server of `data` with the configuration file `config` (this test executable
    /// only, not `TARN_BIN`).
    fn spawn_configured(data: &Path, config: Option<&Path>, failpoint: Option<&str>) -> Server {
        let addr = {
            let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe");
            probe.local_addr().unwrap()
        };
        let log = data.with_extension("log");
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let mut command = match std::env::var_os("TARN_BIN") {
            Some(bin) => {
                let mut c = Command::new(bin);
                c.arg("--data").arg(data).arg("--listen").arg(addr.to_string());
                c
            }
            None => {
                let mut c = Command::new(std::env::current_exe().expect("test executable"));
                c.args(["child_server", "--exact", "--ignored", "--nocapture", "--test-threads", "1"]);
                c.env("TARN_CRASH_CHILD_DATA", data).env("TARN_CRASH_CHILD_LISTEN", addr.to_string());
                if let Some(config) = config {
                    c.env("TARN_CRASH_CHILD_CONFIG", config);
                }
                c
            }
        };
        match failpoint {
            Some(fp) => command.env("TARN_FAILPOINT", fp),
            None => command.env_remove("TARN_FAILPOINT"),
        };
        command.env("RUST_LOG", "warn").stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out);
        let child = command.spawn().expect("starting the server process");
        Server { child, addr, log }
    }

    fn conn(&self) -> String {
        format!("host={} port={} user=tarn dbname=tarn connect_timeout=10", self.addr.ip(), self.addr.port())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until the server accepts clients (recovery may take a while in debug).
    async fn ready(&mut self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited ({status}) before it served:\n{}", self.log_tail());
            }
            if let Ok(client) = connect(&self.conn()).await {
                return client;
            }
            assert!(Instant::now() < deadline, "the server did not come up in 120 s:\n{}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        self.child.wait().expect("reaping the server");
    }

    /// Waits for the process to die by itself (at a fail point).
    async fn exited(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(conn: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// What one client knows at the end of a round.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// The newest transaction whose COMMIT was acknowledged (or that a restart showed).
    acked: i64,
    /// A transaction was under way when the connection died: it may have committed.
    in_doubt: bool,
}

/// One client's load: transactions `from.acked + 1, ...` until `stop` or a lost
/// connection. A SQL error is a failure: clients touch disjoint keys, so nothing may
/// conflict.
async fn writer(
    conn: String,
    client: usize,
    from: Progress,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
) -> Result<Progress, String> {
    let mut progress = Progress { acked: from.acked, in_doubt: false };
    let Ok(db) = connect(&conn).await else { return Ok(progress) };
    let c = client as i32;
    while !stop.load(Ordering::Relaxed) {
        let t = progress.acked + 1;
        let mut statements = vec![
            "BEGIN".to_string(),
            format!(
                "INSERT INTO kv VALUES ({}, {c}, {t}, 0), ({}, {c}, {t}, 1), ({}, {c}, {t}, 2)",
                key(client, t, 0),
                key(client, t, 1),
                key(client, t, 2)
            ),
            format!(
                "INSERT INTO kv VALUES ({}, {c}, {t}, {HEAD}) ON CONFLICT (k) DO UPDATE SET txn = EXCLUDED.txn",
                head_key(client)
            ),
        ];
        if t > 1 {
            statements.push(format!("UPDATE kv SET part = {MARKED} WHERE k = {}", key(client, t - 1, 1)));
            statements.push(format!("DELETE FROM kv WHERE k = {}", key(client, t - 1, 2)));
        }
        statements.push("COMMIT".to_string());
        progress.in_doubt = true;
        let outcome = if rng.percent(30) {
            db.batch_execute(&statements.join("; ")).await
        } else {
            let mut outcome = Ok(());
            for s in &statements {
                outcome = db.batch_execute(s).await;
                if outcome.is_err() {
                    break;
                }
            }
            outcome
        };
        match outcome {
            Ok(()) => progress = Progress { acked: t, in_doubt: false },
            Err(e) if e.code().is_none() => return Ok(progress),
            Err(e) => return Err(format!("client {client}, transaction {t}: {}", describe(&e))),
        }
    }
    Ok(progress)
}

/// `VACUUM kv` now and then, so compactions, and vacuums of all history (the table
/// keeps none), run while the load runs.
async fn vacuumer(conn: String, stop: Arc<AtomicBool>) -> Result<u32, String> {
    let Ok(db) = connect(&conn).await else { return Ok(0) };
    let mut done = 0;
    while !stop.load(Ordering::Relaxed) {
        match db.batch_execute("VACUUM kv").await {
            Ok(()) => done += 1,
            Err(e) if e.code().is_none() => break,
            Err(e) => return Err(format!("VACUUM kv: {}", describe(&e))),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(done)
}

/// A running load against one server.
struct Load {
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<Result<Progress, String>>>,
    vacuum: tokio::task::JoinHandle<Result<u32, String>>,
}

impl Load {
    fn start(server: &Server, from: &[Progress], rng: &mut Rng) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let writers = (0..CLIENTS)
            .map(|c| tokio::spawn(writer(server.conn(), c, from[c], rng.fork(), stop.clone())))
            .collect();
        let vacuum = tokio::spawn(vacuumer(server.conn(), stop.clone()));
        Load { stop, writers, vacuum }
    }

    /// Stops the clients (each finishes or loses its transaction) and collects progress.
    async fn finish(self) -> Vec<Progress> {
        self.stop.store(true, Ordering::Relaxed);
        let mut progress = Vec::new();
        for w in self.writers {
            progress.push(w.await.expect("writer task").unwrap_or_else(|e| panic!("{e}")));
        }
        self.vacuum.await.expect("vacuum task").unwrap_or_else(|e| panic!("{e}"));
        progress
    }
}

/// Reads the table after a restart and checks it against what the clients were told.
/// Returns each client's newest committed transaction, the baseline for the next round.
async fn verify(db: &Client, progress: &[Progress], context: &str) -> Vec<Progress> {
    let scan: Vec<KvRow> = db
        .query("SELECT k, client, txn, part FROM kv ORDER BY k", &[])
        .await
        .unwrap_or_else(|e| panic!("{context}: full scan: {}", describe(&e)))
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    for pair in scan.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "{context}: key {} appears twice: {:?} and {:?}",
            pair[0].0,
            pair[0],
            pair[1]
        );
    }
    let count: i64 = db.query_one("SELECT count(*) FROM kv", &[]).await.unwrap().get(0);
    assert_eq!(count as usize, scan.len(), "{context}: count(*) disagrees with a full scan");
    let distinct: i64 = db.query_one("SELECT count(DISTINCT k) FROM kv", &[]).await.unwrap().get(0);
    assert_eq!(distinct, count, "{context}: count(DISTINCT k) disagrees with count(*)");

    let mut heads = Vec::new();
    for (c, p) in progress.iter().enumerate() {
        let head = scan.iter().find(|r| r.0 == head_key(c)).map_or(0, |r| r.2);
        // The same row through a point lookup.
        let point: Option<i64> = db
            .query_opt("SELECT txn FROM kv WHERE k = $1", &[&head_key(c)])
            .await
            .unwrap_or_else(|e| panic!("{context}: point lookup: {}", describe(&e)))
            .map(|r| r.get(0));
        assert_eq!(point.unwrap_or(0), head, "{context}: client {c}'s head row by point lookup vs full scan");
        let newest_possible = p.acked + i64::from(p.in_doubt);
        assert!(
            head >= p.acked,
            "{context}: client {c}'s transaction {} was acknowledged but the table is at {head} (progress {p:?})",
            p.acked
        );
        assert!(
            head <= newest_possible,
            "{context}: client {c} is at {head}, beyond what it sent (progress {p:?})"
        );
        heads.push(head);
    }
    let expected = expected_rows(&heads);
    if scan != expected {
        let got: BTreeMap<i64, KvRow> = scan.iter().map(|r| (r.0, *r)).collect();
        let want: BTreeMap<i64, KvRow> = expected.iter().map(|r| (r.0, *r)).collect();
        let missing: Vec<&KvRow> =
            want.iter().filter(|(k, r)| got.get(k) != Some(r)).map(|(_, r)| r).collect();
        let extra: Vec<&KvRow> = got.iter().filter(|(k, r)| want.get(k) != Some(r)).map(|(_, r)| r).collect();
        panic!(
            "{context}: torn or lost transaction (heads {heads:?}, progress {progress:?}):\n  \
             missing or different: {missing:?}\n  unexpected: {extra:?}"
        );
    }
    heads.into_iter().map(|acked| Progress { acked, in_doubt: false }).collect()
}

/// Restarts a clean server on `data` and verifies it.
async fn restart_and_verify(data: &Path, progress: &[Progress], context: &str) -> Vec<Progress> {
    let mut server = Server::spawn(data, None);
    let db = server.ready().await;
    let next = verify(&db, progress, context).await;
    drop(db);
    server.kill();
    next
}

/// A clean server, the table, a little history, a graceful end (then SIGKILL of an idle
/// server), and a check.
async fn setup(data: &Path, rng: &mut Rng) -> Vec<Progress> {
    let mut server = Server::spawn(data, None);
    let db = server.ready().await;
    db.batch_execute(DDL).await.unwrap();
    let load = Load::start(&server, &[Progress::default(); CLIENTS], rng);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let progress = load.finish().await;
    assert!(progress.iter().all(|p| p.acked > 0), "no transaction committed in 1.5 s: {progress:?}");
    drop(db);
    server.kill();
    restart_and_verify(data, &progress, "after setup").await
}

/// Writes with a clean server, ends gracefully and checks that exactly the acknowledged
/// transactions are there: the store is usable after the crash.
async fn continue_writing(data: &Path, from: &[Progress], rng: &mut Rng, context: &str) {
    let mut server = Server::spawn(data, None);
    let _db = server.ready().await;
    let load = Load::start(&server, from, rng);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let progress = load.finish().await;
    for (p, f) in progress.iter().zip(from) {
        assert!(
            p.acked > f.acked,
            "{context}: a client made no progress after recovery: {progress:?}\n{}",
            server.log_tail()
        );
    }
    server.kill();
    let heads = restart_and_verify(data, &progress, context).await;
    let acked: Vec<i64> = progress.iter().map(|p| p.acked).collect();
    let heads: Vec<i64> = heads.iter().map(|p| p.acked).collect();
    assert_eq!(heads, acked, "{context}: after a graceful end, exactly the acknowledged transactions");
}

/// A warehouse on an S3 server for the crash tests: the child servers read the
/// configuration written beside `data` (which keeps only their logs and the
/// write-ahead log's folder). The server runs while the returned value lives.
fn on_s3(data: &Path, prefix: &str) -> tarn_tests::moto::Moto {
    let moto = tarn_tests::moto::Moto::start(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(data.with_extension("toml"), moto.config_toml(prefix, &data.join("wal"))).unwrap();
    moto
}

/// The log in the bucket (`wal = "object"`): commits acknowledged once their object is
/// written survive SIGKILL, and a takeover by a process whose local folder is another
/// (a machine whose disk is gone) replays every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_log_in_the_bucket_a_takeover_elsewhere_loses_no_acknowledged_commit() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let moto = on_s3(&data, "objectlog");
    let config = |wal: &Path| {
        let toml = format!("wal = 'object'\nwriter_lease_ttl = '4s'\n{}", moto.config_toml("objectlog", wal));
        std::fs::write(data.with_extension("toml"), toml).unwrap();
    };
    config(&data.join("wal"));
    let mut rng = Rng::new(env_u64("TARN_CRASH_SEED", 0xC0FFEE));
    let mut progress = setup(&data, &mut rng).await;
    for round in 0..2 {
        let mut server = Server::spawn(&data, None);
        let _db = server.ready().await;
        let load = Load::start(&server, &progress, &mut rng);
        tokio::time::sleep(Duration::from_millis(rng.range(300, 1500) as u64)).await;
        server.kill();
        let sent = load.finish().await;
        // Another machine: its local folder has nothing of the first's.
        config(&temp.path().join(format!("elsewhere-{round}")));
        progress = restart_and_verify(&data, &sent, &format!("round {round}, taken over elsewhere")).await;
        println!("round {round}: clients at {:?}", progress.iter().map(|p| p.acked).collect::<Vec<_>>());
    }
    continue_writing(&data, &progress, &mut rng, "after the takeovers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_sigkill_at_random_moments() {
    let temp = tempfile::tempdir().unwrap();
    sigkill_rounds(&temp.path().join("data"), 6).await;
}

/// The same on a warehouse in an S3 server, the log on local disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_on_s3_survive_sigkill_at_random_moments() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let _s3 = on_s3(&data, "sigkill");
    sigkill_rounds(&data, 3).await;
}

async fn sigkill_rounds(data: &Path, default_rounds: u64) {
    let seed = env_u64("TARN_CRASH_SEED", 0xC0FFEE);
    let rounds = env_u64("TARN_CRASH_ROUNDS", default_rounds);
    println!("TARN_CRASH_SEED={seed} TARN_CRASH_ROUNDS={rounds}");
    let mut rng = Rng::new(seed);
    let data = data.to_path_buf();
    let mut progress = setup(&data, &mut rng).await;
    for round in 0..rounds {
        let mut server = Server::spawn(&data, None);
        let _db = server.ready().await;
        let load = Load::start(&server, &progress, &mut rng);
        let delay = Duration::from_millis(rng.range(200, 2500) as u64);
        tokio::time::sleep(delay).await;
        server.kill();
        let sent = load.finish().await;
        let mut context = format!("round {round} (TARN_CRASH_SEED={seed}), SIGKILL after {delay:?}");
        if rng.percent(40) {
            // Again while the next process opens the folder, perhaps mid-recovery.
            let early = Duration::from_millis(rng.range(20, 400) as u64);
            let server = Server::spawn(&data, None);
            tokio::time::sleep(early).await;
            server.kill();
            context.push_str(&format!(", and again {early:?} into the restart"));
        }
        progress = restart_and_verify(&data, &sent, &context).await;
        println!("{context}: clients at {:?}", progress.iter().map(|p| p.acked).collect::<Vec<_>>());
    }
    continue_writing(&data, &progress, &mut rng, &format!("after the kills (TARN_CRASH_SEED={seed})")).await;
}

/// Dies at `failpoint` (`name@n`: the n-th time the point is hit) under load, then
/// recovers, verifies and writes on.
async fn crash_at(name: &str, hits: std::ops::Range<i64>) {
    let temp = tempfile::tempdir().unwrap();
    crash_in(&temp.path().join("data"), name, hits).await;
}

async fn crash_in(data: &Path, name: &str, hits: std::ops::Range<i64>) {
    let seed = name
        .bytes()
        .fold(env_u64("TARN_CRASH_SEED", 0xC0FFEE), |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3));
    let mut rng = Rng::new(seed);
    let data = data.to_path_buf();
    let progress = setup(&data, &mut rng).await;

    let failpoint = format!("{name}@{}", rng.range(hits.start, hits.end));
    let mut server = Server::spawn(&data, Some(&failpoint));
    let _db = server.ready().await;
    let load = Load::start(&server, &progress, &mut rng);
    let status = server.exited(Duration::from_secs(60)).await;
    let log = server.log_tail();
    server.kill();
    let sent = load.finish().await;
    let Some(status) = status else {
        panic!("TARN_FAILPOINT={failpoint}: the server did not die within 60 s of load:\n{log}");
    };
    assert!(!status.success(), "TARN_FAILPOINT={failpoint}: the server exited cleanly ({status})");
    let context = format!("TARN_FAILPOINT={failpoint} ({status})");
    let progress = restart_and_verify(&data, &sent, &context).await;
    println!("{context}: sent {sent:?}, recovered {progress:?}");
    continue_writing(&data, &progress, &mut rng, &context).await;
}

/// Two processes on one warehouse: the second refuses to start (the write-ahead log is
/// the first's), and the first goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_a_warehouse_refuses_to_start() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut first = Server::spawn(&data, None);
    let db = first.ready().await;
    db.batch_execute(DDL).await.unwrap();
    let mut second = Server::spawn(&data, None);
    let status = second.exited(Duration::from_secs(60)).await.expect("the second process stops");
    assert!(!status.success(), "the second process ran: {status}");
    let log = std::fs::read_to_string(&second.log).unwrap_or_default();
    assert!(log.contains("in use by another Tarn process"), "{}", second.log_tail());
    db.batch_execute("INSERT INTO kv VALUES (1, 0, 1, 0)").await.unwrap();
    let count: i64 = db.query_one("SELECT count(*) FROM kv", &[]).await.unwrap().get(0);
    assert_eq!(count, 1);
}

/// The writer's lease, with two processes whose logs are apart (as on two machines): a
/// second writer refuses to start while the first renews its lease; when the first
/// stops renewing (SIGSTOP: a machine cut off, or a long pause) the second takes over,
/// and the first, woken up, refuses every write with 25006 and serves the second's
/// commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_stops_renewing_its_lease_is_fenced_and_another_takes_over() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let config = |name: &str| {
        let path = temp.path().join(format!("{name}.toml"));
        let toml = format!(
            "data = '{}'\nwal_dir = '{}'\nwriter_lease_ttl = '4s'\nfollow_interval = '200ms'\n",
            data.display(),
            temp.path().join(format!("{name}-wal")).display()
        );
        std::fs::write(&path, toml).unwrap();
        path
    };
    let (first_config, second_config) = (config("first"), config("second"));
    let mut first = Server::spawn_configured(&data, Some(&first_config), None);
    let db = first.ready().await;
    db.batch_execute(DDL).await.unwrap();
    db.batch_execute("INSERT INTO kv VALUES (1, 0, 1, 0)").await.unwrap();

    let mut second = Server::spawn_configured(&data, Some(&second_config), None);
    let status = second.exited(Duration::from_secs(60)).await.expect("the second writer stops");
    assert!(!status.success(), "the second writer ran: {status}");
    let log = std::fs::read_to_string(&second.log).unwrap_or_default();
    assert!(log.contains("another Tarn writes it"), "{}", second.log_tail());
    // Flushed to the warehouse (a takeover cannot see what is only in the first's log).
    db.batch_execute("INSERT INTO kv VALUES (2, 0, 1, 0); VACUUM kv").await.unwrap();

    let signal = |sig: &str| {
        let pid = first.child.id().to_string();
        let status = Command::new("kill").args([sig, &pid]).status().expect("kill runs");
        assert!(status.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let mut second = Server::spawn_configured(&data, Some(&second_config), None);
    let taken = Instant::now();
    let other = second.ready().await;
    println!("the second writer took over after {:?}", taken.elapsed());
    other.batch_execute("INSERT INTO kv VALUES (3, 0, 1, 0)").await.unwrap();
    signal("-CONT");

    let e =
        db.batch_execute("INSERT INTO kv VALUES (4, 0, 1, 0)").await.expect_err("the first writes no more");
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION),
        "{}",
        describe(&e)
    );
    // Acknowledged by the first before it was cut off, by the second after: all there.
    let started = Instant::now();
    loop {
        let seen: Vec<i64> =
            db.query("SELECT k FROM kv ORDER BY k", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        if seen == [1, 2, 3] {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the fenced writer does not follow: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen: Vec<i64> =
        other.query("SELECT k FROM kv ORDER BY k", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(seen, [1, 2, 3]);

    // The first's log holds commits the second never saw: it refuses to write again.
    first.kill();
    second.kill();
    let mut again = Server::spawn_configured(&data, Some(&first_config), None);
    let status = again.exited(Duration::from_secs(60)).await.expect("the first writer stops");
    assert!(!status.success(), "the first writer ran again: {status}");
    let log = std::fs::read_to_string(&again.log).unwrap_or_default();
    assert!(log.contains("cannot be applied"), "{}", again.log_tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_a_wal_append() {
    crash_at("wal-before-append", 2..20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_a_wal_append_before_the_acknowledgement() {
    crash_at("wal-after-append", 2..20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_a_flush_commits_its_manifest() {
    crash_at("flush-before-manifest", 1..3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_a_flush_commits_its_manifest() {
    crash_at("flush-after-manifest", 1..3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_a_compaction_commits() {
    crash_at("compaction-before-commit", 1..3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_a_compaction_commits() {
    crash_at("compaction-after-commit", 1..3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_on_s3_after_a_compaction_commits() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let _s3 = on_s3(&data, "compaction");
    crash_in(&data, "compaction-after-commit", 1..3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_a_vacuum_wrote_its_plan() {
    crash_at("vacuum-after-plan", 1..4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_a_vacuum_deleted_manifests_before_files() {
    crash_at("vacuum-after-manifests", 1..4).await;
}

/// A BM25 index through crashes: rows `(i, 'common w<i>')` are inserted one per
/// statement while compactions build text segments; the server is killed at a random
/// moment, then dies at a fail point after a compaction wrote its segment's files and
/// before its manifest named them. After each restart every acknowledged row is found
/// by its own word and by the common one, once, and an orphan segment is never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_index_survives_sigkill_and_a_crash_between_segment_and_manifest() {
    const TEXT_DDL: &str = "CREATE TABLE docs (id BIGINT PRIMARY KEY, body TEXT) \
                            WITH (bucket_count = 2, compaction_threshold = 40, compaction_interval = '1s'); \
                            CREATE INDEX docs_body ON docs USING bm25 (body)";
    let mut rng = Rng::new(env_u64("TARN_CRASH_SEED", 0xC0FFEE));
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");

    /// Inserts rows from `next` on until the connection dies or `stop` is set; returns
    /// the acknowledged ids and the one in doubt.
    async fn insert(conn: String, next: i64, stop: Arc<AtomicBool>) -> (Vec<i64>, Option<i64>) {
        let Ok(db) = connect(&conn).await else { return (Vec::new(), None) };
        let mut acked = Vec::new();
        for id in next.. {
            if stop.load(Ordering::Relaxed) {
                return (acked, None);
            }
            let sql = format!("INSERT INTO docs VALUES ({id}, 'common w{id}')");
            match db.batch_execute(&sql).await {
                Ok(()) => acked.push(id),
                Err(_) => return (acked, Some(id)),
            }
        }
        unreachable!()
    }

    /// Every acknowledged row is found once, by its word and by `common`; a row in
    /// doubt is found by both or by neither. Returns the ids found.
    async fn verify(db: &Client, acked: &[i64], in_doubt: &[i64], context: &str) -> Vec<i64> {
        let found: Vec<i64> = db
            .query("SELECT id FROM docs WHERE body @@@ 'common' ORDER BY id", &[])
            .await
            .unwrap_or_else(|e| panic!("{context}: {}", describe(&e)))
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut expected: Vec<i64> = acked.to_vec();
        expected.extend(in_doubt.iter().filter(|id| found.contains(id)));
        expected.sort_unstable();
        assert_eq!(found, expected, "{context}: the rows `common` finds");
        for id in found.iter().step_by(7) {
            let rows = db.query(&format!("SELECT id FROM docs WHERE body @@@ 'w{id}'"), &[]).await.unwrap();
            let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
            assert_eq!(ids, vec![*id], "{context}: the row of w{id}");
        }
        found
    }

    let mut server = Server::spawn(&data, None);
    server.ready().await.batch_execute(TEXT_DDL).await.unwrap();
    server.kill();
    let (mut acked, mut in_doubt) = (Vec::new(), Vec::new());
    let mut next = 0;
    for _ in 0..3 {
        let mut server = Server::spawn(&data, None);
        server.ready().await;
        let stop = Arc::new(AtomicBool::new(false));
        let load = tokio::spawn(insert(server.conn(), next, stop.clone()));
        tokio::time::sleep(Duration::from_millis(rng.range(1500, 4000) as u64)).await;
        server.kill();
        let (done, doubt) = load.await.unwrap();
        next = done.last().map_or(next, |id| id + 1).max(doubt.map_or(0, |id| id + 1));
        acked.extend(done);
        in_doubt.extend(doubt);
    }

    // Dies after the next compaction's segment files are written, before its manifest.
    let mut server = Server::spawn(&data, Some("compaction-before-commit@1"));
    server.ready().await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(insert(server.conn(), next, stop.clone()));
    let status = server.exited(Duration::from_secs(60)).await;
    let log = server.log_tail();
    server.kill();
    let (done, doubt) = load.await.unwrap();
    assert!(status.is_some_and(|s| !s.success()), "the server did not die at the fail point:\n{log}");
    next = done.last().map_or(next, |id| id + 1).max(doubt.map_or(0, |id| id + 1));
    acked.extend(done);
    in_doubt.extend(doubt);

    let mut server = Server::spawn(&data, None);
    let db = server.ready().await;
    let found = verify(&db, &acked, &in_doubt, "after the crashes").await;
    db.batch_execute(&format!("INSERT INTO docs VALUES ({next}, 'common w{next}'); VACUUM docs"))
        .await
        .unwrap();
    let segments: i32 = db
        .query_one("SELECT segments FROM tarn_indexes WHERE index_name = 'docs_body'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(segments >= 2, "compactions built segments: {segments}");
    let mut now_acked = found;
    now_acked.push(next);
    verify(&db, &now_acked, &[], "after a VACUUM").await;
    drop(db);
    server.kill();
}

/// A sequence never hands out a value twice across SIGKILLs: each kill comes while a
/// client takes values as fast as it can, and every value a client saw is below every
/// value taken after the restart. (And a killed session's temporary
/// table does not outlive the next start.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_values_never_repeat_after_sigkill() {
    let mut rng = Rng::new(env_u64("TARN_CRASH_SEED", 0x5E0));
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut server = Server::spawn(&data, None);
    // A temporary table of a killed server's session is cleared by the next server.
    server
        .ready()
        .await
        .batch_execute("CREATE SEQUENCE s; CREATE TEMP TABLE left_behind (v INT)")
        .await
        .unwrap();
    server.kill();
    let mut highest = 0;
    for round in 0..3 {
        let mut server = Server::spawn(&data, None);
        let db = server.ready().await;
        let first: i64 = db.query_one("SELECT nextval('s')", &[]).await.unwrap().get(0);
        assert!(first > highest, "round {round}: {first} came again (the highest before was {highest})");
        let stop = Arc::new(AtomicBool::new(false));
        let taker = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut last = first;
                while !stop.load(Ordering::Relaxed) {
                    match db
                        .query_one(
                            "SELECT max(v) FROM (SELECT nextval('s') AS v FROM generate_series(1, 7))",
                            &[],
                        )
                        .await
                    {
                        Ok(row) => last = row.get(0),
                        Err(_) => break,
                    }
                }
                last
            })
        };
        tokio::time::sleep(Duration::from_millis(rng.range(200, 800) as u64)).await;
        server.kill();
        stop.store(true, Ordering::Relaxed);
        let last = taker.await.unwrap();
        assert!(last >= first, "round {round}: values go up");
        // Values of a statement that never answered were never seen: only the ones
        // seen must not come again.
        highest = last;
    }
    let mut server = Server::spawn(&data, None);
    let db = server.ready().await;
    let next: i64 = db.query_one("SELECT nextval('s')", &[]).await.unwrap().get(0);
    assert!(next > highest, "after the last kill: {next} is not past {highest}");
    let temp: i64 = db
        .query_one("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pg_temp%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(temp, 0, "temporary schemas of killed servers' sessions remain");
    drop(db);
    server.kill();
}

#[test]
fn the_expected_table_follows_the_heads() {
    // The oracle itself: client 0 at transaction 2, client 1 at none.
    let rows = expected_rows(&[2, 0]);
    assert_eq!(
        rows,
        vec![
            (head_key(0), 0, 2, HEAD),
            (key(0, 1, 0), 0, 1, 0),
            (key(0, 1, 1), 0, 1, MARKED),
            (key(0, 2, 0), 0, 2, 0),
            (key(0, 2, 1), 0, 2, 1),
            (key(0, 2, 2), 0, 2, 2),
        ]
    );
}
