//! dbt-postgres, as an analytics engineer runs it: `dbt debug`, `seed`, `run` (a view
//! model and a table model, built beside the old ones and swapped in by `ALTER ...
//! RENAME`, all inside transactions), `test`, `docs generate`, `show` and a
//! `run-operation`, on the project in `tests/dbt/project` (whose `persist_docs` puts
//! its descriptions in by `COMMENT ON`).
//!
//! dbt goes into a venv of its own under Cargo's target folder (its pins in
//! `tests/dbt/requirements.txt`), made once like the Python tests' venv.

use std::path::{Path, PathBuf};
use std::process::Command;

use tarn_tests::{python_venv, TestServer};

fn dbt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dbt")
}

/// A copy of the project (dbt writes `target/` and `logs/` into it) and a
/// `profiles.yml` for `server`.
fn project_for(server: &TestServer, dir: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    copy(&dbt_dir().join("project"), dir);
    let profile = format!(
        "tarn:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: {}\n      port: {}\n      \
         user: tarn\n      password: \"\"\n      dbname: tarn\n      schema: public\n      threads: 1\n",
        server.addr.ip(),
        server.addr.port()
    );
    std::fs::write(dir.join("profiles.yml"), profile).unwrap();
}

/// Runs `dbt args...` in the project; its output, or the failure with its output.
fn dbt(bin: &Path, project: &Path, args: &[&str]) -> Result<String, String> {
    let output = tarn_tests::run(
        Command::new(bin)
            .args(args)
            .args(["--profiles-dir", project.to_str().unwrap(), "--no-use-colors"])
            .current_dir(project)
            .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            .env("DBT_NO_VERSION_CHECK", "true"),
    );
    if let Ok(text) = &output {
        println!("==== dbt {}\n{text}", args.join(" "));
    }
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbt_builds_tests_and_documents_a_project() {
    let python = python_venv(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "tarn-dbtenv",
        &dbt_dir().join("requirements.txt"),
    )
    .unwrap_or_else(|e| panic!("the dbt environment could not be set up:\n{e}"));
    let bin = python.with_file_name("dbt");
    let server = TestServer::start().await;
    let project = tempfile::tempdir().unwrap();
    let project = project.path();
    project_for(&server, project);
    let ok = |args: &[&str]| dbt(&bin, project, args).unwrap_or_else(|e| panic!("{e}"));

    assert!(ok(&["debug"]).contains("All checks passed!"));
    assert!(ok(&["seed", "--full-refresh"]).contains("PASS=1 WARN=0 ERROR=0"));
    // The first run creates the models; the second builds each beside the old one and
    // swaps it in by renames, dropping the old one after.
    for _ in 0..2 {
        assert!(ok(&["run"]).contains("PASS=2 WARN=0 ERROR=0"));
    }
    let client = server.client().await;
    let relations: Vec<(String, String)> = client
        .query("SELECT relname::text, relkind::text FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'v') ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected = [("customer_totals", "r"), ("orders", "r"), ("recent_orders", "v")];
    assert_eq!(
        relations,
        expected.map(|(n, k)| (n.to_string(), k.to_string())),
        "no __dbt_tmp or __dbt_backup left"
    );
    let totals: Vec<(String, i64, f64)> = client
        .query("SELECT customer, orders, total FROM customer_totals ORDER BY customer", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(totals, vec![("alice".into(), 1, 7.25), ("bob".into(), 2, 23.5), ("carol".into(), 1, 100.0)]);

    assert!(ok(&["test"]).contains("PASS=5 WARN=0 ERROR=0"));
    // A duplicate order: dbt's `unique` test of the view must find it.
    client.execute("INSERT INTO orders VALUES (2, 'dave', 1, '2024-02-01')", &[]).await.unwrap();
    let failed = dbt(&bin, project, &["test", "--select", "recent_orders"]).expect_err("a unique test fails");
    assert!(failed.contains("FAIL 1 unique_recent_orders_id"), "{failed}");

    ok(&["docs", "generate"]);
    let catalog: serde_json::Value =
        serde_json::from_slice(&std::fs::read(project.join("target").join("catalog.json")).unwrap()).unwrap();
    let node = |name: &str| &catalog["nodes"][name];
    assert_eq!(node("model.tarn_check.recent_orders")["metadata"]["type"], "VIEW");
    assert_eq!(node("model.tarn_check.customer_totals")["metadata"]["type"], "BASE TABLE");
    // persist_docs: the descriptions went in by COMMENT ON and come back from the catalog.
    let recent = node("model.tarn_check.recent_orders");
    assert_eq!(recent["metadata"]["comment"], "Orders from January 2nd on.");
    assert_eq!(recent["columns"]["id"]["comment"], "The order.");
    let columns = &node("seed.tarn_check.orders")["columns"];
    for (column, data_type) in [
        ("id", "integer"),
        ("customer", "text"),
        ("amount", "double precision"),
        ("ordered_at", "timestamp without time zone"),
    ] {
        assert_eq!(columns[column]["type"], data_type, "{column} in {columns}");
    }

    let shown = ok(&[
        "show",
        "--inline",
        "select customer, total from {{ ref('customer_totals') }} order by total desc",
    ]);
    assert!(shown.contains("| carol    | 100.00 |"), "{shown}");
    // A full refresh of the seed drops it with CASCADE, the view that reads it with it;
    // the next run makes the view again.
    ok(&["seed", "--full-refresh"]);
    assert!(ok(&["run"]).contains("PASS=2 WARN=0 ERROR=0"));
    ok(&["run-operation", "drop_models"]);
    let left: Vec<String> = client
        .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, vec!["orders".to_string()]);
    drop(client);
    server.stop().await;
}
