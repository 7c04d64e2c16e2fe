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

/// The change store's SQL from the issue, as a person types it into psql.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_the_change_store_session() {
    let server = TestServer::start().await;
    let session = "
        CREATE TABLE events (id BIGINT PRIMARY KEY, user_id INT, kind TEXT, amount DOUBLE PRECISION, embedding VECTOR(2))
          WITH (bucket_count = 8, compaction_interval = '30s');
        INSERT INTO events VALUES (1, 7, 'click', 1, '[1,0]'), (2, 7, 'test', 2, '[0,1]'), (3, 8, 'view', 3, NULL);
        INSERT INTO events VALUES (3, 8, 'buy', 30, NULL), (4, 9, 'new', 4, NULL)
          ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount, kind = EXCLUDED.kind;
        INSERT INTO events VALUES (4, 0, 'ignored', 0, NULL) ON CONFLICT (id) DO NOTHING;
        UPDATE events SET amount = amount * 2 WHERE user_id = 7 RETURNING id, amount;
        DELETE FROM events WHERE kind = 'test' RETURNING id;
        BEGIN; UPDATE events SET amount = 0 WHERE id = 1; DELETE FROM events WHERE id = 4; INSERT INTO events VALUES (5, 1, 'five', 5, NULL); COMMIT;
        BEGIN; DELETE FROM events; ROLLBACK;
        COPY events (id, user_id, kind, amount) FROM STDIN (FORMAT csv);
6,2,copied,6
7,2,copied,7
\\.
        SELECT id, kind, amount FROM events WHERE id = 3;
        VACUUM events;
        SELECT 'waiting', sum(change_rows) FROM tarn_tables WHERE table_name = 'events';
        SELECT 'v2', count(*) FROM events AS OF VERSION 2;
        SELECT 'feed', id, _change_type FROM table_changes('events', 3, 3) ORDER BY id;
        SELECT 'all', string_agg(id::text || ':' || amount::bigint::text, ',' ORDER BY id) FROM events;
        TRUNCATE events;
        SELECT 'left', count(*) FROM events;";
    let out = psql(&server, session);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "psql failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "1|2\n", // UPDATE ... RETURNING (rows in any order)
        "2|4\n",
        "2\n",         // DELETE ... RETURNING
        "3|buy|30\n",  // point lookup of an upserted key
        "waiting|0\n", // VACUUM folded every change
        "v2|3\n",      // time travel to the first insert
        "feed|3|update\nfeed|4|insert\n",
        "all|1:0,3:30,5:5,6:6,7:7\n",
        "left|0\n",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
}

/// Runs `script` through psql's default (aligned) output, as a person reads `\d`.
fn psql_aligned(server: &TestServer, script: &str) -> (bool, String, String) {
    let out = Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", &server.addr.ip().to_string()])
        .args(["-p", &server.addr.port().to_string(), "-U", "tarn", "-d", "tarn", "-c", script])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// psql's meta-commands read Tarn's `pg_catalog`: each one runs without error and
/// shows the tables, columns (`vector(3)`), indexes (bm25, hnsw, the primary key),
/// schemas and types it would show on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_meta_commands_describe_the_warehouse() {
    let server = TestServer::start().await;
    let setup = "
        CREATE TABLE items (id BIGINT PRIMARY KEY, title TEXT NOT NULL DEFAULT 'untitled',
          price NUMERIC(10,2), created TIMESTAMP, embedding VECTOR(3));
        CREATE INDEX items_title ON items USING bm25 (title);
        CREATE INDEX items_embedding ON items USING hnsw (embedding vector_cosine_ops);
        CREATE SCHEMA lake;
        CREATE TABLE lake.events (at TIMESTAMPTZ, payload JSONB) USING parquet;
        INSERT INTO items (id, embedding) VALUES (1, '[1,2,3]');";
    let out = psql(&server, setup);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let describe = |command: &str| {
        let (ok, stdout, stderr) = psql_aligned(&server, command);
        assert!(ok, "{command} failed: {stderr}\n{stdout}");
        // psql writes "Did not find any relations." to stderr.
        stdout + &stderr
    };
    let items = describe("\\d items");
    for expected in [
        "Table \"public.items\"",
        " id        | bigint                      |           | not null | ",
        " title     | text                        |           | not null | 'untitled'",
        " price     | numeric(10,2)               |",
        " created   | timestamp without time zone |",
        " embedding | vector(3)                   |",
        "\"items_pkey\" PRIMARY KEY, btree (id)",
        "\"items_embedding\" hnsw (embedding vector_cosine_ops) WITH (m='16', ef_construction='64')",
        "\"items_title\" bm25 (title)",
    ] {
        assert!(items.contains(expected), "\\d items lacks {expected:?}:\n{items}");
    }
    let verbose = describe("\\d+ items");
    assert!(verbose.contains("Access method: lance"), "{verbose}");
    assert!(verbose.contains("Options: bucket_count=4"), "{verbose}");
    let events = describe("\\d lake.events");
    assert!(events.contains(" at      | timestamp with time zone |"), "{events}");
    assert!(events.contains(" payload | jsonb"), "{events}");

    let tables = describe("\\dt *.*");
    assert!(tables.contains(" lake       | events "), "{tables}");
    assert!(tables.contains(" public     | items "), "{tables}");
    assert!(tables.contains(" pg_catalog | pg_class "), "{tables}");
    let plus = describe("\\dt+");
    assert!(plus.contains("| lance "), "{plus}");
    let indexes = describe("\\di");
    for index in ["items_embedding", "items_pkey", "items_title"] {
        assert!(indexes.contains(index), "{indexes}");
    }
    assert!(describe("\\dn").contains(" lake "), "\\dn");
    assert!(describe("\\l").contains(" tarn "), "\\l");
    assert!(describe("\\dT").contains(" vector "), "\\dT");
    assert!(describe("\\dx").contains(" vector | 0.8.0 "), "\\dx");
    assert!(describe("\\du").contains(" tarn "), "\\du");
    // No views yet, and psql says so rather than failing; then one, and its definition.
    assert!(describe("\\dv").contains("Did not find any relations"), "\\dv");
    let out = psql(&server, "CREATE VIEW lake.cheap AS SELECT id, title FROM items WHERE id < 10");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(describe("\\dv lake.*").contains(" lake   | cheap | view "), "\\dv");
    let view = describe("\\d+ lake.cheap");
    for expected in [
        "View \"lake.cheap\"",
        " id     | bigint |",
        "View definition:\n SELECT id, title FROM items WHERE id < 10;",
    ] {
        assert!(view.contains(expected), "\\d+ lake.cheap lacks {expected:?}:\n{view}");
    }
    let functions = describe("\\df");
    assert!(
        functions.contains(" public | l2_distance ") && functions.contains("| bm25_score "),
        "{functions}"
    );
    describe("\\dp items");
    describe("\\dS pg_attribute");

    // `\gdesc` describes a statement without running it.
    let out = psql(&server, "SELECT id, embedding FROM items \\gdesc\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("id|bigint\nembedding|vector(3)\n"), "{stdout}");

    // A name that is not there is psql's own message, not a server error.
    let (ok, _, stderr) = psql_aligned(&server, "\\d nothing_here");
    assert!(!ok && stderr.contains("Did not find any relation named \"nothing_here\""), "{stderr}");
    server.stop().await;
}
