//! Node.js clients against the server: pgvector-node with node-postgres
//! (`tests/node/test_pgvector_node.mjs`), and the query builders knex and postgres.js with
//! their parameters (`tests/node/test_query_builders.mjs`).
//!
//! The packages pinned in `tests/node/package.json` are installed with the machine's npm
//! into `target/tmp/tarn-node` (again only when the package file or the Node version
//! changes: a marker holds both). A machine without `node`/`npm`, or a failed install,
//! fails the test with npm's output; nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use tarn_tests::{run, TestServer};

/// The folder with `node_modules` and the test script, installed if stale.
fn install() -> Result<PathBuf, String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("node");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tarn-node");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let package = std::fs::read_to_string(source.join("package.json")).map_err(|e| e.to_string())?;
    let version = run(Command::new("node").arg("--version"))
        .map_err(|e| format!("Node.js is needed for the pgvector-node test: {e}"))?;
    let marker_text = format!("{package}\n{}", version.trim());
    let lock = std::fs::File::create(dir.join("install.lock")).map_err(|e| format!("install lock: {e}"))?;
    lock.lock().map_err(|e| format!("install lock: {e}"))?;
    let marker = dir.join("tarn-installed");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(marker_text.as_str()) {
        std::fs::write(dir.join("package.json"), &package).map_err(|e| e.to_string())?;
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--no-package-lock"])
            .current_dir(&dir))?;
        std::fs::write(&marker, marker_text).map_err(|e| e.to_string())?;
    }
    for entry in std::fs::read_dir(&source).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|e| e == "mjs") {
            std::fs::copy(&path, dir.join(path.file_name().expect("a file"))).map_err(|e| e.to_string())?;
        }
    }
    Ok(dir)
}

/// Runs `script` from the installed folder against a fresh server; its output must end
/// with "all checks passed".
async fn run_script(script: &'static str) {
    let dir = install().unwrap_or_else(|e| panic!("{e}"));
    let server = TestServer::start().await;
    let addr = server.connection_string();
    let host_port: Vec<String> =
        addr.split_whitespace().take(2).map(|kv| kv.split_once('=').expect("k=v").1.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .current_dir(&dir)
            .env("TARN_HOST", &host_port[0])
            .env("TARN_PORT", &host_port[1])
            .output()
    })
    .await
    .expect("node task")
    .expect("node starts");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{text}");
    assert!(output.status.success(), "{script} failed:\n{text}");
    assert!(text.contains("all checks passed"), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_node_with_node_postgres() {
    run_script("test_pgvector_node.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knex_and_postgres_js_parameters() {
    run_script("test_query_builders.mjs").await;
}
