//! pgAdmin 4 against Tarn: connect to the server, browse its database, schema, tables,
//! columns, indexes, views and sequences, read a table's properties and its
//! reverse-engineered `CREATE TABLE`, open the dashboard, and run a query in the Query
//! Tool, through pgAdmin's web API in-process (`tests/pgadmin/pgadmin_api.py`): the
//! catalog statements pgAdmin sends (`../shared/research/client_statements/pgadmin.sql`)
//! over psycopg 3, as its users' clicks do.
//!
//! Heavy, so it runs on request only (`cargo test -p tarn-tests --test pgadmin --
//! --ignored`; `cargo test` lists it as ignored): pgAdmin's venv is kept under Cargo's
//! target folder and made again only when `tests/pgadmin/requirements.txt` changes.

use std::path::{Path, PathBuf};
use std::process::Command;

use tarn_tests::{python_venv, TestServer};

fn pgadmin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pgadmin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy (pgAdmin 4's install): cargo test -p tarn-tests --test pgadmin -- --ignored"]
async fn pgadmin_connects_browses_and_queries() {
    let python = python_venv(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "tarn-pgadminenv",
        &pgadmin_dir().join("requirements.txt"),
    )
    .unwrap_or_else(|e| panic!("the pgAdmin environment could not be set up:\n{e}"));
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE acc_pgadmin (id BIGINT PRIMARY KEY, name TEXT NOT NULL, amount DOUBLE PRECISION, embedding VECTOR(3));
             INSERT INTO acc_pgadmin VALUES (1, 'a', 1.5, '[1,0,0]'), (2, 'b', 2, '[0,1,0]'), (3, 'c', 4, '[0,0,1]');
             CREATE INDEX acc_pgadmin_embedding ON acc_pgadmin USING hnsw (embedding vector_l2_ops);
             CREATE INDEX acc_pgadmin_name ON acc_pgadmin USING bm25 (name);
             COMMENT ON TABLE acc_pgadmin IS 'accounts';
             CREATE VIEW acc_pgadmin_view AS SELECT name, amount FROM acc_pgadmin;
             CREATE SEQUENCE acc_pgadmin_seq;",
        )
        .await
        .unwrap();
    // pgAdmin's store and config live beside its venv: they survive between runs.
    let home = python.parent().unwrap().parent().unwrap().join("pgadmin_home");
    let output = tarn_tests::run(
        Command::new(&python)
            .arg(pgadmin_dir().join("pgadmin_api.py"))
            .env("PGADMIN_HOME", &home)
            .env("TARN_HOST", server.addr.ip().to_string())
            .env("TARN_PORT", server.addr.port().to_string()),
    );
    match output {
        Ok(text) => println!("{text}"),
        Err(e) => panic!("pgAdmin failed:\n{e}"),
    }
    server.stop().await;
}
