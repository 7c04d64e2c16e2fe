//! Python clients against the server: the scripts in `tests/python/` run with psycopg 3,
//! psycopg2, asyncpg, SQLAlchemy, pandas, pgvector-python and pyodbc over psqlODBC, as
//! their users do.
//!
//! The packages, pinned in `tests/python/requirements.txt`, go into a venv under Cargo's
//! target folder (`target/tmp/tarn-pyenv`). It is made once and made again only when the
//! requirements or the interpreter change: a marker file holds a hash of both. A machine
//! without `python3` or a failed `pip install` fails the tests with pip's output; nothing
//! is skipped.
//!
//! Each script gets a fresh server and finds it through `TARN_HOST`, `TARN_PORT`,
//! `TARN_USER`, `TARN_DB`, `TARN_DSN` (libpq keywords) and `TARN_URL`. It prints one
//! line per check and exits non-zero if any failed; its output is printed here
//! (shown by `cargo test` on failure, or always with `--nocapture`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tarn_tests::{python_venv, TestServer};

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// The venv's python, creating or refreshing the venv if its requirements changed.
fn make_venv() -> Result<PathBuf, String> {
    python_venv(Path::new(env!("CARGO_TARGET_TMPDIR")), "tarn-pyenv", &scripts().join("requirements.txt"))
}

/// The venv, made at most once per test binary even when tests run in parallel.
fn venv_python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(make_venv) {
        Ok(python) => python.clone(),
        Err(error) => panic!("the Python test environment could not be set up:\n{error}"),
    }
}

/// Runs `tests/python/{script}` against `server`, printing its output; panics if it
/// fails or runs past `limit`.
fn run_script(server: &TestServer, script: &str, limit: Duration) {
    // One script at a time: the recall script's timings mean little if another script
    // shares the two cores with it.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let python = venv_python();
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (host, port) = (server.addr.ip().to_string(), server.addr.port().to_string());
    let mut child = Command::new(&python)
        .arg(scripts().join(script))
        .current_dir(scripts())
        .env("TARN_HOST", &host)
        .env("TARN_PORT", &port)
        .env("TARN_USER", "tarn")
        .env("TARN_DB", "tarn")
        .env("TARN_DSN", server.connection_string())
        .env("TARN_URL", format!("postgresql://tarn@{host}:{port}/tarn"))
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} could not start: {e}", python.display()));
    // Read both pipes on their own threads so a chatty script never blocks on a full pipe.
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    }
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("script status") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (stdout.join().expect("stdout reader"), stderr.join().expect("stderr reader"));
    println!("==== {script} ({:.1?})\n{stdout}", started.elapsed());
    if !stderr.is_empty() {
        println!("==== {script} stderr\n{stderr}");
    }
    match status {
        None => panic!("{script} ran past its limit of {limit:?} and was stopped; its output is above"),
        Some(status) => assert!(status.success(), "{script} failed ({status}); its output is above"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_python_clients() {
    let server = TestServer::start().await;
    run_script(&server, "test_pgvector_clients.py", Duration::from_secs(180));
    server.stop().await;
}

/// GloVe 50d: HNSW recall@10 against exact numpy ground truth, filtered, after updates
/// and after compaction (see the script for the steps and their targets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glove_recall() {
    let server = TestServer::start().await;
    run_script(&server, "test_recall.py", Duration::from_secs(900));
    server.stop().await;
}

/// Parameters wherever PostgreSQL takes them, as psycopg 3 binds them on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bm25_agrees_with_tantivy() {
    let server = TestServer::start().await;
    run_script(&server, "test_bm25_parity.py", Duration::from_secs(600));
    server.stop().await;
}

/// SQLAlchemy's Inspector (reflection) and pandas' read_sql / to_sql.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_inspector_and_pandas() {
    let server = TestServer::start().await;
    run_script(&server, "test_sqlalchemy_pandas.py", Duration::from_secs(180));
    server.stop().await;
}

/// psqlODBC's catalog functions, parameters and transactions, through pyodbc.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psqlodbc_through_pyodbc() {
    let server = TestServer::start().await;
    run_script(&server, "test_odbc.py", Duration::from_secs(120));
    server.stop().await;
}

/// ADBC (catalog calls, binary COPY results, ingest in a transaction), pandas over
/// ADBC, polars through connectorx and ADBC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrow_readers() {
    let server = TestServer::start().await;
    run_script(&server, "test_arrow_readers.py", Duration::from_secs(180));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_parameters() {
    let server = TestServer::start().await;
    run_script(&server, "test_parameters.py", Duration::from_secs(120));
    server.stop().await;
}
