//! Runs every `tests/slt/*.slt` file against a fresh server (one data folder per file),
//! once over the simple query protocol and once over the extended protocol, and once
//! more (simple protocol) on a warehouse in an S3 server ([`tarn_tests::moto`]).
//!
//! Regenerate expected output after an intended change with
//! `TARN_SLT_COMPLETE=1 cargo test -p tarn-tests --test sqllogictests` (simple protocol),
//! then review the diff.

use std::path::PathBuf;

use tarn_tests::slt::{Protocol, Wire};
use tarn_tests::TestServer;

fn slt_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

/// Where each file's server keeps its warehouse.
enum Warehouse<'a> {
    Folder,
    /// A prefix of its own in the S3 server's bucket, the log in a local folder.
    S3(&'a tarn_tests::moto::Moto, &'a std::path::Path),
}

async fn run_all(protocol: Protocol) {
    run_on(protocol, Warehouse::Folder).await
}

async fn run_on(protocol: Protocol, warehouse: Warehouse<'_>) {
    let complete = std::env::var_os("TARN_SLT_COMPLETE").is_some()
        && protocol == Protocol::Simple
        && matches!(warehouse, Warehouse::Folder);
    let mut failures = Vec::new();
    for (n, file) in slt_files().into_iter().enumerate() {
        let server = match &warehouse {
            Warehouse::Folder => TestServer::start().await,
            Warehouse::S3(moto, wal) => {
                let (url, config) = moto.config(&format!("slt-{n}"), &wal.join(format!("slt-{n}")));
                TestServer::start_at(&url, config).await
            }
        };
        let conn = server.connection_string();
        let mut runner = sqllogictest::Runner::new(move || {
            let conn = conn.clone();
            async move {
                let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                    .await
                    .map_err(tarn_tests::slt::WireError::from)?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok::<_, tarn_tests::slt::WireError>(Wire { client, protocol })
            }
        });
        runner.add_label(match protocol {
            Protocol::Simple => "simple",
            Protocol::Extended => "extended",
        });
        if complete {
            let col_separator = " ";
            let validator = sqllogictest::default_validator;
            runner
                .update_test_file(
                    &file,
                    col_separator,
                    validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap_or_else(|e| panic!("completing {}: {e}", file.display()));
        } else if let Err(e) = runner.run_file_async(&file).await {
            let on = if matches!(warehouse, Warehouse::Folder) { "" } else { ", on S3" };
            failures.push(format!("{} ({protocol:?}{on}):\n{}", file.display(), e.display(false)));
        }
        // A server that does not stop fails the run, named, instead of hanging it.
        if tokio::time::timeout(std::time::Duration::from_secs(60), server.stop()).await.is_err() {
            failures.push(format!("{} ({protocol:?}): the server did not stop within 60 s", file.display()));
        }
    }
    assert!(failures.is_empty(), "{} slt failures:\n{}", failures.len(), failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_simple_protocol() {
    run_all(Protocol::Simple).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_extended_protocol() {
    run_all(Protocol::Extended).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_on_object_storage() {
    let moto = tarn_tests::moto::Moto::start(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let wal = tempfile::tempdir().unwrap();
    run_on(Protocol::Simple, Warehouse::S3(&moto, wal.path())).await;
}
