//! The audit trail through a real driver: every statement recorded with who ran it,
//! its SQLSTATE, rows and duration, literals redacted when the server says so; sealed
//! segments chained by hash, so a changed or missing segment is found by
//! `tarn_audit_verify()`; the trail survives a restart.

use std::path::{Path, PathBuf};

use tarn_tests::TestServer;
use tokio_postgres::Client;

type Row = (String, String, String, Option<i64>);

/// application_name, statement, sqlstate, rows of the trail's records matching `like`.
async fn trail(client: &Client, like: &str) -> Vec<Row> {
    client
        .query(
            "SELECT application_name, statement, sqlstate, rows FROM tarn_audit_log \
             WHERE statement LIKE $1 ORDER BY started_at",
            &[&like],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

async fn verify(client: &Client) -> (bool, i64, i64, Option<String>) {
    let row = client
        .query_one("SELECT ok, segments, records, problem FROM tarn_audit_verify()", &[])
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

fn segments(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("_tarn/audit"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Waits until the trail has sealed `n` segments (records are sealed within a second).
async fn sealed(data: &Path, n: usize) {
    for _ in 0..100 {
        if segments(data).len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{n} audit segments were not sealed: {:?}", segments(data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_is_recorded_and_a_changed_segment_is_found() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path();
    let server = TestServer::start_in(data).await;
    let client = server.client_named("auditor").await;
    client.batch_execute("CREATE TABLE t (id INT, secret TEXT)").await.unwrap();
    client.execute("INSERT INTO t VALUES (1, 'hush'), (2, 'quiet')", &[]).await.unwrap();
    assert_eq!(client.query("SELECT * FROM t WHERE id > $1", &[&0i32]).await.unwrap().len(), 2);
    let e = client.query("SELECT id / 0 FROM t", &[]).await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "22012");
    let got = trail(&client, "%t%").await;
    let expect: Vec<Row> = vec![
        ("auditor".into(), "CREATE TABLE t (id INT, secret TEXT)".into(), "00000".into(), None),
        ("auditor".into(), "INSERT INTO t VALUES (1, 'hush'), (2, 'quiet')".into(), "00000".into(), Some(2)),
        ("auditor".into(), "SELECT * FROM t WHERE id > $1".into(), "00000".into(), Some(2)),
        ("auditor".into(), "SELECT id / 0 FROM t".into(), "22012".into(), None),
    ];
    assert_eq!(got[..4], expect[..], "{got:#?}");
    // A COPY FROM STDIN is recorded when its data is in, with the rows it wrote.
    {
        use futures::SinkExt;
        let sink = client.copy_in::<_, bytes::Bytes>("COPY t FROM STDIN").await.unwrap();
        let mut sink = Box::pin(sink);
        sink.send(bytes::Bytes::from_static(b"3\tcopied\n4\tcopied\n5\tcopied\n")).await.unwrap();
        sink.as_mut().finish().await.unwrap();
        let bad = client.copy_in::<_, bytes::Bytes>("COPY t FROM STDIN").await.unwrap();
        let mut bad = Box::pin(bad);
        bad.send(bytes::Bytes::from_static(b"six\tnot a number\n")).await.unwrap();
        assert_eq!(bad.as_mut().finish().await.unwrap_err().code().unwrap().code(), "22P02");
    }
    // The tables each read and wrote, with versions: the INSERT made one, the SELECT
    // read it, the COPY made the next.
    let tables: Vec<(String, String)> = client
        .query(
            "SELECT statement, tables FROM tarn_audit_log WHERE application_name = 'auditor' \
             AND (statement LIKE 'INSERT INTO t%' OR statement LIKE 'SELECT * FROM t%' OR statement LIKE 'COPY t%') \
             ORDER BY started_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // `public.t v12 read, public.t v13 written`: the version of the entry `how`.
    let version = |text: &str, how: &str| -> u64 {
        let entry = text.split(", ").find(|e| e.ends_with(how)).unwrap_or_else(|| panic!("{how} in {text}"));
        let rest = entry.strip_prefix("public.t v").unwrap_or_else(|| panic!("{text}"));
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(tables.len(), 4, "{tables:#?}");
    let inserted = version(&tables[0].1, "written");
    assert_eq!(version(&tables[1].1, "read"), inserted, "{tables:#?}");
    assert!(version(&tables[2].1, "written") > inserted, "{tables:#?}");
    let copies = trail(&client, "COPY t FROM STDIN").await;
    assert_eq!(
        copies,
        [
            ("auditor".into(), "COPY t FROM STDIN".into(), "00000".into(), Some(3)),
            ("auditor".into(), "COPY t FROM STDIN".into(), "22P02".into(), None),
        ],
        "{copies:#?}"
    );
    let who = client
        .query_one("SELECT DISTINCT user_name, client_addr LIKE '127.0.0.1:%', pid = pg_backend_pid() FROM tarn_audit_log WHERE application_name = 'auditor'", &[])
        .await
        .unwrap();
    assert_eq!((who.get::<_, String>(0), who.get(1), who.get(2)), ("tarn".to_string(), true, true));

    // Two sealed segments, chained.
    sealed(data, 1).await;
    client.batch_execute("SELECT 1; SELECT 2").await.unwrap();
    sealed(data, 2).await;
    let (ok, count, records, problem) = verify(&client).await;
    assert!(ok && count >= 2 && records >= 6, "{problem:?}");

    // A restart keeps the trail and its chain.
    let server = server.restart().await;
    let client = server.client_named("after").await;
    assert_eq!(trail(&client, "INSERT INTO t%").await.len(), 1);
    assert!(verify(&client).await.0);

    // One byte of the first segment changed (still valid JSON): the second's seal no
    // longer names it.
    let first = segments(data)[0].clone();
    let text = std::fs::read_to_string(&first).unwrap();
    std::fs::write(&first, text.replacen("'hush'", "'HUSH'", 1)).unwrap();
    let (ok, _, _, problem) = verify(&client).await;
    assert!(!ok, "a changed segment is found");
    assert_eq!(problem.as_deref(), Some("segment 2 does not follow segment 1: its predecessor changed"));
    std::fs::write(&first, text).unwrap();
    assert!(verify(&client).await.0, "restored, it holds again");

    // A segment removed: the gap is named.
    let second = segments(data)[1].clone();
    let kept = std::fs::read(&second).unwrap();
    std::fs::remove_file(&second).unwrap();
    let (ok, _, _, problem) = verify(&client).await;
    assert!(!ok);
    assert!(problem.as_deref().unwrap_or_default().starts_with("segment 2 is missing"), "{problem:?}");
    std::fs::write(&second, kept).unwrap();
    assert!(verify(&client).await.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literals_are_redacted_when_the_server_says_so_and_the_trail_can_be_off() {
    let config = tarn_server::ServerConfig { audit_redact_literals: true, ..Default::default() };
    let server = TestServer::start_configured(config).await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE p (id INT, card TEXT); INSERT INTO p VALUES (7, '4111 1111 1111 1111')")
        .await
        .unwrap();
    let got = trail(&client, "INSERT INTO p%").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, "INSERT INTO p VALUES (?, ?)");
    let all: Vec<String> = client
        .query("SELECT statement FROM tarn_audit_log", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(all.iter().all(|s| !s.contains("4111")), "{all:?}");
    server.stop().await;

    let config = tarn_server::ServerConfig { audit: false, ..Default::default() };
    let server = TestServer::start_configured(config).await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE q (id INT)").await.unwrap();
    assert_eq!(client.query("SELECT * FROM tarn_audit_log", &[]).await.unwrap().len(), 0);
    let (ok, _, _, problem) = verify(&client).await;
    assert!(!ok);
    assert_eq!(problem.as_deref(), Some("this server keeps no audit trail"));
    server.stop().await;
}
