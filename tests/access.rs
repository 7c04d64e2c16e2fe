//! Who may connect, and what bounds a session, through real clients: SCRAM-SHA-256
//! passwords and `[[hba]]` rules with psql and tokio-postgres; TLS with psql's
//! `sslmode=require` and `verify-full` against a certificate made by the openssl
//! command; the connection limit (53300), the message-size limit, `statement_timeout`
//! and cancel (57014), idle timeouts, and garbage on the socket.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tarn_server::auth::scram_verifier;
use tarn_server::config::{Tls, User};
use tarn_server::{Frontend, ServerConfig};
use tarn_tests::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

/// A verifier PostgreSQL 15 made: `CREATE ROLE carol PASSWORD 'correct horse battery'`,
/// then `SELECT rolpassword FROM pg_authid`. Tarn takes PostgreSQL's verifiers as they are.
const POSTGRES_VERIFIER: &str = "SCRAM-SHA-256$4096:6IpyBE9PwPtOyf+UITipDQ==$b07V/OfxV2NsgI7KNt4ysoMyrNkyRbIDwLNQdkl0mVE=:DlshtJCyIBlorwm4zHsi7J2cabP31R5bpwcgw3gCd+Q=";

fn user(name: &str, verifier: String) -> User {
    User { name: name.into(), password: verifier }
}

/// psql with `conninfo` and `password`, running `sql`: (success, stdout, stderr).
fn psql(conninfo: &str, password: Option<&str>, sql: &str) -> (bool, String, String) {
    let mut command = Command::new("psql");
    command
        .args(["-X", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1", "-c", sql, conninfo])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null());
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let out = command.output().expect("psql runs (the postgresql-client package; .ci/run installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn conninfo(server: &TestServer, user: &str, extra: &str) -> String {
    format!("host=127.0.0.1 port={} dbname=tarn user={user} {extra}", server.addr.port())
}

async fn connect(
    server: &TestServer,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) =
        tokio_postgres::connect(&conninfo(server, user, &format!("password='{password}'")), NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_checked_with_scram_and_unknown_users_look_like_wrong_passwords() {
    let config = ServerConfig {
        users: vec![user("alice", scram_verifier("s3cret")), user("carol", POSTGRES_VERIFIER.into())],
        ..Default::default()
    };
    let server = TestServer::start_configured(config).await;

    let (ok, out, err) = psql(&conninfo(&server, "alice", ""), Some("s3cret"), "SELECT current_user");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "alice");
    // PostgreSQL's own verifier logs in with its password.
    let (ok, _, err) = psql(&conninfo(&server, "carol", ""), Some("correct horse battery"), "SELECT 1");
    assert!(ok, "{err}");

    // Wrong password and unknown user: one error, 28P01, with nothing telling them apart.
    let wrong = connect(&server, "alice", "guess").await.map(drop).expect_err("refused");
    let unknown = connect(&server, "mallory", "s3cret").await.map(drop).expect_err("refused");
    for (e, name) in [(&wrong, "alice"), (&unknown, "mallory")] {
        let db = e.as_db_error().expect("a server error");
        assert_eq!(db.code(), &SqlState::INVALID_PASSWORD, "{db:?}");
        assert_eq!(db.message(), format!("password authentication failed for user \"{name}\""));
        assert_eq!(db.severity(), "FATAL");
    }
    let (ok, _, err) = psql(&conninfo(&server, "alice", ""), Some("guess"), "SELECT 1");
    assert!(!ok && err.contains("password authentication failed for user \"alice\""), "{err}");
    // No password at all: psql cannot answer the server's SASL request.
    let (ok, _, err) = psql(&conninfo(&server, "alice", ""), None, "SELECT 1");
    assert!(!ok && err.contains("no password supplied"), "{err}");

    // The session goes on as any other after a password login.
    let client = connect(&server, "alice", "s3cret").await.expect("logs in");
    let row = client.query_one("SELECT $1::bigint + 1", &[&41i64]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hba_rules_pick_the_method_and_refuse_what_they_do_not_match() {
    use tarn_server::auth::HbaRule;
    let config = ServerConfig {
        users: vec![user("alice", scram_verifier("s3cret"))],
        hba: vec![
            HbaRule { user: "bob".into(), ..HbaRule::new("127.0.0.1/32", "reject") },
            HbaRule { user: "tarn".into(), ..HbaRule::new("127.0.0.1/32", "trust") },
            HbaRule::new("127.0.0.0/8", "scram-sha-256"),
        ],
        ..Default::default()
    };
    let server = TestServer::start_configured(config).await;
    // `tarn` is trusted on loopback: no password asked.
    let (ok, out, err) = psql(&conninfo(&server, "tarn", ""), None, "SELECT current_user");
    assert!(ok && out.trim() == "tarn", "{err}");
    // alice needs her password.
    assert!(psql(&conninfo(&server, "alice", ""), Some("s3cret"), "SELECT 1").0);
    // bob is rejected by rule, before any password exchange.
    let e = connect(&server, "bob", "whatever").await.map(drop).expect_err("rejected");
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
    assert!(
        db.message().contains("rejects connection for host \"127.0.0.1\", user \"bob\""),
        "{}",
        db.message()
    );

    // A rule that would trust clients beyond loopback stops the server at start.
    let open = ServerConfig { hba: vec![HbaRule::new("0.0.0.0/0", "trust")], ..Default::default() };
    let refused = Frontend::new(&open).map(drop).expect_err("refused");
    assert!(refused.contains("trust is only for"), "{refused}");
    // As does a plain-text password in the config.
    let plain = ServerConfig { users: vec![user("alice", "s3cret".into())], ..Default::default() };
    assert!(Frontend::new(&plain).map(drop).expect_err("refused").contains("tarn passwd"));
    server.stop().await;
}

/// A CA and a certificate for `localhost` / 127.0.0.1 signed by it, made by the openssl
/// command in `dir`: (ca.pem, server.pem, server.key).
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out =
            Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl command runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Tarn test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_require_verify_full_and_channel_binding() {
    use tarn_server::auth::HbaRule;
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let tls = Tls { cert: certs.path().join("server.pem"), key: certs.path().join("server.key") };
    let config = ServerConfig {
        users: vec![user("alice", scram_verifier("s3cret"))],
        // TLS required of everyone: plain connections match no rule.
        hba: vec![HbaRule { kind: "hostssl".into(), ..HbaRule::new("all", "scram-sha-256") }],
        tls: Some(tls.clone()),
        ..Default::default()
    };
    let server = TestServer::start_configured(config).await;
    let ca = certs.path().join("ca.pem");

    let (ok, out, err) = psql(&conninfo(&server, "alice", "sslmode=require"), Some("s3cret"), "\\conninfo");
    assert!(ok, "{err}");
    assert!(out.contains("SSL connection (protocol: TLSv1.3"), "{out}");

    let verify_full = format!(
        "host=localhost port={} dbname=tarn user=alice sslmode=verify-full sslrootcert={}",
        server.addr.port(),
        ca.display()
    );
    let (ok, out, err) = psql(&verify_full, Some("s3cret"), "SELECT 'verified'");
    assert!(ok && out.trim() == "verified", "{err}");
    // SCRAM-SHA-256-PLUS: the password exchange is bound to the server's certificate.
    let (ok, _, err) = psql(&format!("{verify_full} channel_binding=require"), Some("s3cret"), "SELECT 1");
    assert!(ok, "{err}");

    // Without TLS no rule matches.
    let (ok, _, err) = psql(&conninfo(&server, "alice", "sslmode=disable"), Some("s3cret"), "SELECT 1");
    assert!(
        !ok && err.contains(
            "no hba entry for host \"127.0.0.1\", user \"alice\", database \"tarn\", no encryption"
        ),
        "{err}"
    );
    // verify-full against a CA that did not sign the certificate fails on the client.
    let (ok, _, err) = psql(
        &format!(
            "host=localhost port={} dbname=tarn user=alice sslmode=verify-full sslrootcert={}",
            server.addr.port(),
            certs.path().join("server.pem").display()
        ),
        Some("s3cret"),
        "SELECT 1",
    );
    assert!(!ok && err.contains("certificate verify failed"), "{err}");

    // A key that is not the certificate's, or a missing file, stops the server at start.
    let mismatched = ServerConfig {
        tls: Some(Tls { cert: tls.cert.clone(), key: certs.path().join("ca.key") }),
        ..Default::default()
    };
    let e = Frontend::new(&mismatched).map(drop).expect_err("refused");
    assert!(e.contains("do not make a server identity"), "{e}");
    let missing = ServerConfig {
        tls: Some(Tls { cert: certs.path().join("nope.pem"), key: tls.key.clone() }),
        ..Default::default()
    };
    assert!(Frontend::new(&missing).map(drop).expect_err("refused").contains("reading the TLS certificate"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_connections_get_53300() {
    let server =
        TestServer::start_configured(ServerConfig { max_connections: 2, ..Default::default() }).await;
    let first = server.client().await;
    let second = server.client().await;
    let e = tokio_postgres::connect(&server.connection_string(), NoTls).await.map(drop).expect_err("refused");
    assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e}");
    assert_eq!(e.as_db_error().unwrap().message(), "sorry, too many clients already");
    drop(first);
    // The slot comes back when a session ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    let third = loop {
        match tokio_postgres::connect(&server.connection_string(), NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                break client;
            }
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("no slot came back: {e}"),
        }
    };
    third.simple_query("SELECT 1").await.unwrap();
    second.simple_query("SELECT 1").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_limit_ends_that_connection_only() {
    let server = TestServer::start_configured(ServerConfig { max_message_mb: 1, ..Default::default() }).await;
    let client = server.client().await;
    // Under the limit: a 900 kB literal.
    let big = format!("SELECT length('{}')", "x".repeat(900_000));
    client.simple_query(&big).await.expect("under the limit");
    let huge = format!("SELECT length('{}')", "x".repeat(2 << 20));
    let e = client.simple_query(&huge).await.expect_err("over the limit");
    if let Some(db) = e.as_db_error() {
        assert_eq!(db.code(), &SqlState::PROGRAM_LIMIT_EXCEEDED);
        assert!(db.message().contains("larger than the server's limit of 1048576 bytes"), "{}", db.message());
    }
    assert!(client.is_closed() || client.simple_query("SELECT 1").await.is_err(), "that connection is over");
    let other = server.client().await;
    other.simple_query("SELECT 1").await.expect("the server goes on");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_the_memory_limit_gets_53200_and_the_server_goes_on() {
    let server =
        TestServer::start_configured(ServerConfig { memory_limit_mb: 32, ..Default::default() }).await;
    let client = server.client().await;
    // A hash join's build side cannot spill: 5 million keys do not fit in 32 MiB.
    let join = "SELECT count(*) FROM range(0, 5000000) a JOIN range(0, 5000000) b ON a.value = b.value";
    let e = client.simple_query(join).await.expect_err("out of memory");
    assert_eq!(e.code(), Some(&SqlState::OUT_OF_MEMORY), "{e}");
    // A smaller one fits, in the same session.
    let rows = client
        .simple_query("SELECT count(*) FROM range(0, 1000) a JOIN range(0, 1000) b ON a.value = b.value")
        .await
        .expect("fits");
    assert!(rows
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("1000"))));
    server.stop().await;
}

/// Rows enough to keep a count busy for minutes.
const SLOW: &str = "SELECT count(*) FROM range(0, 100000000000) a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_stops_the_statement_with_57014() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("SET statement_timeout = 300").await.unwrap();
    let shown = client.query_one("SHOW statement_timeout", &[]).await.unwrap();
    assert_eq!(shown.get::<_, String>(0), "300ms");
    let started = Instant::now();
    let e = client.simple_query(SLOW).await.expect_err("timed out");
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    assert_eq!(e.as_db_error().unwrap().message(), "canceling statement due to statement timeout");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    // A COPY TO STDOUT, stopped while its rows go out.
    let copy = client.copy_out("COPY (SELECT value FROM range(0, 100000000000)) TO STDOUT").await;
    let e = match copy {
        Err(e) => e,
        Ok(stream) => {
            futures::pin_mut!(stream);
            loop {
                match futures::StreamExt::next(&mut stream).await {
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break e,
                    None => panic!("the copy ended without its timeout"),
                }
            }
        }
    };
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    // Prepared statements too, and the session goes on.
    let e = client.query(SLOW, &[]).await.expect_err("timed out");
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    assert_eq!(client.query_one("SELECT 1::int", &[]).await.unwrap().get::<_, i32>(0), 1);
    // Inside a transaction block the timeout fails the block, as any error does.
    client.batch_execute("BEGIN").await.unwrap();
    client.simple_query(SLOW).await.expect_err("timed out");
    let e = client.simple_query("SELECT 1").await.expect_err("block failed");
    assert_eq!(e.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION), "{e}");
    client.batch_execute("ROLLBACK; SET statement_timeout = 0").await.unwrap();
    assert_eq!(client.query_one("SELECT 2::int", &[]).await.unwrap().get::<_, i32>(0), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_stops_a_prepared_statement_and_needs_the_right_key() {
    let server = TestServer::start().await;
    let server_addr = server.addr;
    let client = server.client().await;
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await.unwrap();
    });
    let e = client.query(SLOW, &[]).await.expect_err("cancelled");
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    assert_eq!(e.as_db_error().unwrap().message(), "canceling statement due to user request");
    canceller.await.unwrap();

    // A cancel request naming the session's pid with a wrong key stops nothing: the
    // slow statement runs on until its timeout.
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    client.batch_execute("SET statement_timeout = '1500ms'").await.unwrap();
    let wrong_key = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut request = 16u32.to_be_bytes().to_vec();
        request.extend_from_slice(&80877102u32.to_be_bytes());
        request.extend_from_slice(&pid.to_be_bytes());
        request.extend_from_slice(&7u32.to_be_bytes());
        let mut socket = tokio::net::TcpStream::connect(server_addr).await.unwrap();
        socket.write_all(&request).await.unwrap();
        let mut sink = Vec::new();
        socket.read_to_end(&mut sink).await.unwrap();
    });
    let e = client.simple_query(SLOW).await.expect_err("timed out");
    assert_eq!(e.as_db_error().unwrap().message(), "canceling statement due to statement timeout");
    wrong_key.await.unwrap();
    server.stop().await;
}

/// `pg_stat_activity` shows every session as it is now; `pg_cancel_backend` stops one's
/// statement and `pg_terminate_backend` ends one, busy or idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_stat_activity_and_the_backend_signals() {
    let server = TestServer::start().await;
    let admin = server.client().await;
    let busy = Arc::new(server.client().await);
    busy.batch_execute("SET application_name = 'busy'").await.unwrap();
    let idle = server.client().await;
    idle.batch_execute("SET application_name = 'waiting'; BEGIN; SELECT 1").await.unwrap();
    let running = {
        let busy = busy.clone();
        tokio::spawn(async move { busy.simple_query(SLOW).await })
    };
    // The busy session is seen running its statement.
    let started = Instant::now();
    let busy_pid = loop {
        let row = admin
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'busy' AND state = 'active'",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            break row.get::<_, i32>(0);
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the busy session never showed as active");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rows = admin
        .query(
            "SELECT application_name, state, query, usename, client_addr, backend_type, xact_start IS NOT NULL
             FROM pg_stat_activity ORDER BY pid",
            &[],
        )
        .await
        .unwrap();
    let seen: Vec<(String, String, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.contains(&("busy".into(), "active".into(), SLOW.into())), "{seen:?}");
    // A simple query's whole text, as in PostgreSQL.
    let last = "SET application_name = 'waiting'; BEGIN; SELECT 1";
    assert!(seen.contains(&("waiting".into(), "idle in transaction".into(), last.into())), "{seen:?}");
    for row in &rows {
        assert_eq!(row.get::<_, String>(3), "tarn");
        assert_eq!(row.get::<_, String>(4), "127.0.0.1");
        assert_eq!(row.get::<_, String>(5), "client backend");
    }

    let cancelled: bool = admin.query_one("SELECT pg_cancel_backend($1)", &[&busy_pid]).await.unwrap().get(0);
    assert!(cancelled);
    let e = running.await.unwrap().expect_err("cancelled");
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    busy.simple_query("SELECT 1").await.expect("a cancelled session goes on");

    let idle_pid: i32 = admin
        .query_one("SELECT pid FROM pg_stat_activity WHERE application_name = 'waiting'", &[])
        .await
        .unwrap()
        .get(0);
    let terminated: bool =
        admin.query_one("SELECT pg_terminate_backend($1)", &[&idle_pid]).await.unwrap().get(0);
    assert!(terminated);
    let e = idle.simple_query("SELECT 1").await.expect_err("the session was ended");
    assert!(idle.is_closed() || e.code() == Some(&SqlState::ADMIN_SHUTDOWN), "{e}");
    let started = Instant::now();
    while admin.query_one("SELECT count(*) FROM pg_stat_activity", &[]).await.unwrap().get::<_, i64>(0) != 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "the ended session stayed in pg_stat_activity");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No session has that pid: false, as in PostgreSQL.
    let none: bool = admin.query_one("SELECT pg_terminate_backend(1)", &[]).await.unwrap().get(0);
    assert!(!none);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_closed_after_idle_session_timeout() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("SET idle_session_timeout = '200ms'").await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(client.simple_query("SELECT 1").await.is_err(), "the idle session was closed");
    let client = server.client().await;
    client.batch_execute("SET idle_in_transaction_session_timeout = 200; BEGIN").await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(client.simple_query("SELECT 1").await.is_err(), "the idle transaction was closed");
    // A busy session is not idle.
    let client = server.client().await;
    client.batch_execute("SET idle_session_timeout = '500ms'").await.unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.simple_query("SELECT 1").await.expect("still open");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_a_socket_closes_that_connection_and_nothing_else() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..20 {
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut garbage = vec![0u8; 64 + round * 50];
        for byte in garbage.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *byte = seed as u8;
        }
        if round % 2 == 1 {
            // A valid startup, then garbage where typed messages belong.
            let mut startup = Vec::new();
            startup.extend_from_slice(&196608u32.to_be_bytes());
            startup.extend_from_slice(b"user\0tarn\0database\0tarn\0\0");
            let mut framed = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
            framed.extend(startup);
            framed.extend(garbage);
            garbage = framed;
        }
        let _ = socket.write_all(&garbage).await;
        let _ = socket.shutdown().await;
        // The server answers and closes the connection at once.
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut sink)).await;
        assert!(read.is_ok(), "round {round}: the server held on to a garbage connection");
    }
    client.simple_query("SELECT 1").await.expect("the other session goes on");
    server.client().await.simple_query("SELECT 1").await.expect("new sessions start");
    server.stop().await;
}
