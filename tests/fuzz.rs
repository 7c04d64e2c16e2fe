//! A query-shape fuzzer: malformed, huge, deeply nested and random statements, garbage
//! parameters in binary form, and garbage bytes on the socket. Whatever it sends, the
//! server must answer with an error or a result (never drop the session for a bad
//! statement), and a fresh connection must still get `SELECT 1` back.
//!
//! Seeded: `TARN_FUZZ_SEED` (default fixed), `TARN_FUZZ_STATEMENTS` (default 1,000,
//! about a minute in a debug build; more in a long run), `TARN_FUZZ_TRACE=1` prints each
//! statement before it is sent. A failure prints the seed and the statement.

use std::time::Duration;

use tarn_tests::rng::{env_u64, Rng};
use tarn_tests::{Raw, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::Client;

const SETUP: &str = "CREATE TABLE f (id BIGINT PRIMARY KEY, n INT, x DOUBLE PRECISION, s TEXT, \
                     d DATE, ts TIMESTAMP, b BOOLEAN, v VECTOR(3)); \
                     INSERT INTO f SELECT i, i % 7, i / 3.0, 'row ' || i, DATE '2026-01-01' + i, \
                     TIMESTAMP '2026-01-01 00:00:00', i % 2 = 0, '[1,2,3]'::vector(3) FROM generate_series(1, 200) AS t(i); \
                     CREATE TABLE g (n INT, s TEXT); INSERT INTO g VALUES (1, 'a'), (NULL, NULL), (3, 'c')";

/// Pieces statements are made of: real SQL words and operators, so that random
/// sequences reach past the tokenizer into the parser, planner and executor.
const WORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "HAVING",
    "ORDER BY",
    "LIMIT",
    "OFFSET",
    "JOIN",
    "LEFT JOIN",
    "ON",
    "USING",
    "UNION",
    "UNION ALL",
    "INTERSECT",
    "EXCEPT",
    "AND",
    "OR",
    "NOT",
    "IS NULL",
    "IN",
    "BETWEEN",
    "LIKE",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "AS",
    "DISTINCT",
    "EXISTS",
    "ANY",
    "ALL",
    "WITH",
    "OVER",
    "PARTITION BY",
    "CAST",
    "::",
    "(",
    ")",
    "(",
    ")",
    ",",
    ",",
    "+",
    "-",
    "*",
    "/",
    "%",
    "||",
    "=",
    "<>",
    "<",
    ">",
    "<=",
    ">=",
    "<->",
    "<=>",
    "<#>",
    "<+>",
    "@@@",
    "[",
    "]",
    "f",
    "g",
    "f.id",
    "n",
    "x",
    "s",
    "d",
    "ts",
    "b",
    "v",
    "id",
    "count(*)",
    "sum(",
    "avg(",
    "min(",
    "max(",
    "lower(",
    "coalesce(",
    "generate_series(",
    "unnest(",
    "row_number()",
    "1",
    "0",
    "-1",
    "2.5",
    "1e308",
    "NULL",
    "TRUE",
    "'a'",
    "'[1,2,3]'",
    "'2026-01-01'",
    "$1",
    "$2",
    "INT",
    "TEXT",
    "BIGINT",
    "VECTOR(3)",
    "INTERVAL '1 day'",
    "DATE",
    "*",
    "INSERT INTO f",
    "VALUES",
    "UPDATE f SET",
    "DELETE FROM g",
    ";",
    "'",
    "\"",
    "$$",
    "/*",
    "--",
    "\\",
    "E'\\x'",
    "9999999999999999999999",
    "9223372036854775807",
];

fn random_statement(rng: &mut Rng) -> String {
    match rng.below(10) {
        // Random word salad.
        0..=4 => {
            let n = 1 + rng.below(40) as usize;
            (0..n).map(|_| *rng.pick(WORDS)).collect::<Vec<_>>().join(" ")
        }
        // A valid prefix with a random tail.
        5..=6 => {
            let head = *rng.pick(&[
                "SELECT * FROM f WHERE",
                "SELECT n, count(*) FROM f GROUP BY",
                "SELECT id FROM f ORDER BY v <-> '[1,1,1]' LIMIT",
                "SELECT s FROM f JOIN g ON",
                "WITH q AS (SELECT * FROM f) SELECT",
                "INSERT INTO g SELECT",
            ]);
            let n = rng.below(12) as usize;
            let tail = (0..n).map(|_| *rng.pick(WORDS)).collect::<Vec<_>>().join(" ");
            format!("{head} {tail}")
        }
        // Deep: nested parentheses or long chains, around and past the limits.
        7 => {
            let depth = rng.range(100, 12_000) as usize;
            match rng.below(4) {
                0 => format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth)),
                1 => format!("SELECT {}", vec!["x"; depth].join(" + ")) + " FROM f",
                2 => format!("SELECT count(*) FROM f WHERE {}", vec!["n = 1"; depth / 2].join(" OR ")),
                _ => format!(
                    "SELECT {}",
                    "ARRAY[".repeat(depth.min(3000)) + "1" + &"]".repeat(depth.min(3000))
                ),
            }
        }
        // Huge literals and lists.
        8 => match rng.below(3) {
            0 => format!("SELECT '{}'", "y".repeat(rng.range(1, 2_000_000) as usize)),
            1 => format!(
                "SELECT n IN ({}) FROM g",
                (0..rng.range(1, 20_000)).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
            ),
            _ => format!(
                "SELECT {}",
                (0..rng.range(1, 3_000)).map(|i| format!("{i} AS c{i}")).collect::<Vec<_>>().join(",")
            ),
        },
        // Random bytes as text (valid UTF-8: the wire carries text).
        _ => {
            let n = rng.range(1, 200) as usize;
            (0..n).map(|_| char::from_u32(rng.range(1, 0x2FF) as u32).unwrap_or('?')).collect()
        }
    }
}

async fn alive(server: &TestServer, context: &str) {
    let client = tokio::time::timeout(Duration::from_secs(30), server.client())
        .await
        .unwrap_or_else(|_| panic!("no new connection within 30 s after {context}"));
    let rows =
        client.simple_query("SELECT 1").await.unwrap_or_else(|e| panic!("SELECT 1 after {context}: {e}"));
    assert!(rows.len() >= 2, "SELECT 1 after {context}: {rows:?}");
}

async fn still_answers(client: &Client) -> bool {
    client.simple_query("SELECT 1").await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_statements_never_take_the_server_down() {
    let seed = env_u64("TARN_FUZZ_SEED", 0x7a42_2026);
    let count = env_u64("TARN_FUZZ_STATEMENTS", 1_000);
    let mut rng = Rng::new(seed);
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.batch_execute(SETUP).await.expect("setup");
    let (mut ok, mut failed, mut internal) = (0u64, 0u64, 0u64);
    for i in 0..count {
        let sql = random_statement(&mut rng);
        let shown: String = sql.chars().take(300).collect();
        if std::env::var_os("TARN_FUZZ_TRACE").is_some() {
            eprintln!("fuzz statement {i}: {shown}");
        }
        // tokio-postgres checks the parameter count itself: `$n` goes the simple way.
        let prepared = rng.percent(30) && !sql.contains('$');
        let outcome = if prepared {
            client.query(&sql, &[]).await.map(|_| ())
        } else {
            client.simple_query(&sql).await.map(|_| ())
        };
        match outcome {
            Ok(()) => ok += 1,
            Err(e) if e.as_db_error().is_some() => {
                failed += 1;
                let db = e.as_db_error().expect("checked");
                let message = db.message();
                assert!(
                    !message.contains("ValueWithSpan") && !message.contains("Span(") && message.len() < 2_000,
                    "seed {seed:#x}, statement {i}: internal text in the error {}: {message}\n{shown}",
                    db.code().code()
                );
                if db.code().code() == "XX000" {
                    internal += 1;
                    println!("XX000 for statement {i}: {message}\n  {shown}");
                }
            }
            Err(e) => panic!("seed {seed:#x}, statement {i} ended the session ({e}):\n{shown}"),
        }
        // An open transaction block (a random BEGIN) or a failed one is ended.
        if !still_answers(&client).await {
            let _ = client.batch_execute("ROLLBACK").await;
            if !still_answers(&client).await {
                client = server.client().await;
                client.batch_execute("SELECT 1").await.expect("a new session");
            }
        }
        if i % 250 == 249 {
            alive(&server, &format!("statement {i} (seed {seed:#x})")).await;
        }
    }
    println!(
        "fuzz: {count} statements (seed {seed:#x}): {ok} ran, {failed} refused with an error \
         ({internal} of them internal errors, XX000)"
    );
    alive(&server, "the statements").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_parameters_get_errors() {
    let seed = env_u64("TARN_FUZZ_SEED", 0x7a42_2026);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute(SETUP).await.expect("setup");
    let statements = [
        "SELECT $1::bigint",
        "SELECT $1::int + 1",
        "SELECT $1::double precision",
        "SELECT $1::numeric(10,2)",
        "SELECT $1::text",
        "SELECT $1::date",
        "SELECT $1::timestamp",
        "SELECT $1::timestamptz",
        "SELECT $1::boolean",
        "SELECT $1::bytea",
        "SELECT $1::vector(3)",
        "SELECT id FROM f WHERE v <-> $1 < 10 LIMIT 1",
        "SELECT * FROM f WHERE id = $1",
        "SELECT * FROM f WHERE id = ANY($1)",
        "SELECT $1::jsonb",
        "INSERT INTO g VALUES ($1, 'p')",
    ];
    let mut errors = 0;
    for round in 0..400 {
        let sql = *rng.pick(&statements);
        let len = *rng.pick(&[0usize, 1, 2, 3, 4, 7, 8, 9, 12, 16, 17, 64, 1000]);
        let bytes: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        match client.query(sql, &[&Raw(bytes.clone())]).await {
            Ok(_) => {}
            Err(e) => {
                let db = e.as_db_error().unwrap_or_else(|| {
                    panic!("seed {seed:#x} round {round}: {sql} with {bytes:?} ended the session: {e}")
                });
                assert_ne!(db.code().code(), "XX000", "{sql} with {bytes:?}: {}", db.message());
                errors += 1;
            }
        }
    }
    println!("fuzz: 400 binary parameters, {errors} refused with an error");
    alive(&server, "garbage parameters").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_socket_closes_that_connection_only() {
    let seed = env_u64("TARN_FUZZ_SEED", 0x7a42_2026);
    let mut rng = Rng::new(seed ^ 0xbad);
    let server = TestServer::start().await;
    let survivor = server.client().await;
    for round in 0..60 {
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
        let mut bytes: Vec<u8> = Vec::new();
        match round % 4 {
            // Garbage instead of a startup packet.
            0 => bytes.extend((0..rng.range(1, 4096)).map(|_| rng.below(256) as u8)),
            // A startup packet claiming a huge length.
            1 => bytes.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]),
            // A valid startup, then garbage messages.
            _ => {
                let mut startup = Vec::new();
                startup.extend_from_slice(&196608u32.to_be_bytes());
                for part in ["user", "tarn", "database", "tarn", ""] {
                    startup.extend_from_slice(part.as_bytes());
                    startup.push(0);
                }
                bytes.extend_from_slice(&((startup.len() + 4) as u32).to_be_bytes());
                bytes.extend(startup);
                if round % 4 == 2 {
                    // A message with a random type and a length far past its body.
                    bytes.push(*rng.pick(b"QPBEDSHCXdcfp"));
                    bytes.extend_from_slice(&(rng.range(4, 1 << 30) as u32).to_be_bytes());
                }
                bytes.extend((0..rng.range(1, 2048)).map(|_| rng.below(256) as u8));
            }
        }
        let _ = socket.write_all(&bytes).await;
        let mut sink = vec![0u8; 8192];
        // The server answers, closes, or waits for more: none of it may hang the test.
        let _ = tokio::time::timeout(Duration::from_millis(200), socket.read(&mut sink)).await;
        drop(socket);
        if round % 10 == 9 {
            alive(&server, &format!("socket garbage round {round} (seed {seed:#x})")).await;
        }
    }
    assert!(still_answers(&survivor).await, "a connection open throughout still works");
    alive(&server, "socket garbage").await;
    server.stop().await;
}
