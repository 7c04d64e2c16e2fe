//! Apache Superset 6.1 against Tarn: its database, dataset, SQL Lab and chart paths
//! through its REST API in-process (`tests/superset/superset_api.py`), reflecting with
//! SQLAlchemy 1.4 over psycopg2, as its users' dashboards do.
//!
//! Heavy, so it runs on request only (`cargo test -p tarn-tests --test superset --
//! --ignored`; `cargo test` lists it as ignored): Superset's venv is 830 MB and its
//! first use initializes its own store (~3 minutes). Both are kept
//! under Cargo's target folder and made again only when `tests/superset/requirements.txt`
//! changes.

use std::path::{Path, PathBuf};
use std::process::Command;

use tarn_tests::{python_venv, TestServer};

fn superset_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("superset")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy (an 830 MB install): cargo test -p tarn-tests --test superset -- --ignored"]
async fn superset_connects_explores_queries_and_charts() {
    let python = python_venv(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "tarn-supersetenv",
        &superset_dir().join("requirements.txt"),
    )
    .unwrap_or_else(|e| panic!("the Superset environment could not be set up:\n{e}"));
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE acc_superset (id BIGINT PRIMARY KEY, name TEXT, amount DOUBLE PRECISION, created_at TIMESTAMP);
             INSERT INTO acc_superset VALUES (1, 'a', 1.5, '2023-12-01 10:00:00'), (2, 'b', 2, '2023-12-02 11:00:00'),
                                             (3, 'a', 4, '2024-01-05 00:00:00');
             CREATE INDEX acc_superset_name ON acc_superset USING bm25 (name);
             CREATE VIEW acc_superset_view AS SELECT name, amount FROM acc_superset;",
        )
        .await
        .unwrap();
    let uri = format!("postgresql+psycopg2://tarn@{}:{}/tarn", server.addr.ip(), server.addr.port());
    // Superset's store lives beside its venv: it survives between runs like the venv.
    let home = python.parent().unwrap().parent().unwrap().join("superset_home");
    let output = tarn_tests::run(
        Command::new(&python)
            .arg(superset_dir().join("superset_api.py"))
            .env("SUPERSET_HOME", &home)
            .env("TARN_URI", &uri),
    );
    match output {
        Ok(text) => println!("{text}"),
        Err(e) => panic!("Superset failed:\n{e}"),
    }
    server.stop().await;
}
