//! psql itself against the server: the session from the README, with
//! `ON_ERROR_STOP=1` so any error fails the test.

use std::process::Command;

use tarn_tests::TestServer;

/// Runs `script` through `psql -f -` (so meta-commands work too).
fn psql(server: &TestServer, script: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &server.addr.ip().to_string(),
            "-p",
            &server.addr.port().to_string(),
        ])
        .args(["-U", "tarn", "-d", "tarn", "-A", "-t", "-f", "-"])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql runs (the postgresql-client package; .ci/run installs it)");
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("script written");
    child.wait_with_output().expect("psql finishes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_the_readme_session() {
    let server = TestServer::start().await;
    let session = "
        CREATE TABLE items (
          id BIGINT PRIMARY KEY, title TEXT NOT NULL, price DOUBLE PRECISION,
          tags TEXT, created TIMESTAMP, embedding VECTOR(3)
        ) USING lance WITH (bucket_count = 4);
        INSERT INTO items VALUES (1, 'lamp', 19.5, 'home', '2026-01-02 03:04:05', '[1,2,3]'), (2, 'desk', 120, NULL, NULL, '[0,0.5,1]');
        INSERT INTO items SELECT id + 10, title, price * 2, tags, created, embedding FROM items;
        SELECT title, price FROM items WHERE price > 20 ORDER BY price;
        SELECT count(*), avg(price) FROM items;
        CREATE TABLE t2 AS SELECT id, title FROM items;
        DROP TABLE t2;";
    let out = psql(&server, session);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "psql failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("lamp|39\ndesk|120\ndesk|240\n"), "{stdout}");
    assert!(stdout.contains("4|104.625\n"), "{stdout}");

    // With ON_ERROR_STOP, an error stops psql with a failure status and its SQLSTATE's message.
    let out = psql(&server, "SELECT * FROM missing");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("relation \"missing\" does not exist"));

    // psql's own variables over the wire: \gset and meta-commands that need no catalog.
    let out = psql(&server, "SELECT count(*) AS n FROM items \\gset\n\\echo rows: :n\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("rows: 4"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copies_from_and_to_files() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "id,title\n1,lamp\n2,\"desk, large\"\n3,\n").expect("input written");
    let more = dir.path().join("more.txt");
    std::fs::write(&more, "5\tshelf\n6\t\\N\n").expect("input written");
    let output = dir.path().join("out.csv");
    let (input, more, output) = (input.display(), more.display(), output.display());
    // `\copy` is COPY FROM STDIN / TO STDOUT fed from psql's files; COPY FROM STDIN in a
    // script reads the lines after it, up to `\.`.
    let script = format!(
        "CREATE TABLE items (id BIGINT PRIMARY KEY, title TEXT);
\\copy items from '{input}' with (format csv, header)
COPY items FROM STDIN;
4\tinline
\\.
BEGIN;
\\copy items from '{more}'
COMMIT;
\\copy (SELECT id, title FROM items ORDER BY id) to '{output}' csv header
SELECT count(*), count(title) FROM items;
"
    );
    let out = psql(&server, &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "psql failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("COPY 3\nCOPY 1\n"), "{stdout}");
    assert!(stdout.contains("6|4\n"), "{stdout}");
    let copied = std::fs::read_to_string(dir.path().join("out.csv")).expect("output written");
    assert_eq!(copied, "id,title\n1,lamp\n2,\"desk, large\"\n3,\n4,inline\n5,shelf\n6,\n");

    // Bad data: psql shows the error and where it is; nothing of that COPY is written.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "7,fine\nx,broken\n").expect("input written");
    let out = psql(&server, &format!("\\copy items from '{}' csv\n", bad.display()));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid input syntax for type bigint: \"x\""), "{stderr}");
    assert!(stderr.contains("COPY items, line 2, column id: \"x\""), "{stderr}");
    let out = psql(&server, "SELECT count(*) FROM items");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "6");
    server.stop().await;
}
