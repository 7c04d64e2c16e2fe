//! COPY FROM STDIN / TO STDOUT through the wire: tokio-postgres' `copy_in`/`copy_out`
//! (extended protocol), and the simple protocol byte for byte with a raw client, as
//! psql and psycopg speak it. psql's `\copy` is in `psql.rs`.

use std::collections::HashMap;
use std::io::Cursor;
use std::pin::pin;

use futures::{SinkExt, TryStreamExt};
use tarn_tests::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, CopyInSink, GenericClient};

const ITEMS: &str = "CREATE TABLE items (
    id BIGINT PRIMARY KEY, title TEXT NOT NULL, price DOUBLE PRECISION, ok BOOLEAN,
    created TIMESTAMP, embedding VECTOR(3), amount NUMERIC(10,2), data BYTEA)";

/// Sends `chunks` as CopyData messages (rows cut anywhere) and ends the copy.
async fn write_all(sink: CopyInSink<Cursor<Vec<u8>>>, chunks: &[&str]) -> Result<u64, tokio_postgres::Error> {
    let mut sink = pin!(sink);
    for chunk in chunks {
        sink.send(Cursor::new(chunk.as_bytes().to_vec())).await?;
    }
    sink.finish().await
}

async fn copy_in(client: &Client, sql: &str, chunks: &[&str]) -> Result<u64, tokio_postgres::Error> {
    write_all(client.copy_in(sql).await?, chunks).await
}

async fn copy_out(client: &Client, sql: &str) -> String {
    let stream = client.copy_out(sql).await.unwrap();
    let chunks: Vec<_> = pin!(stream).try_collect().await.unwrap();
    chunks.iter().map(|c| String::from_utf8(c.to_vec()).unwrap()).collect()
}

async fn count(client: &impl GenericClient, table: &str) -> i64 {
    client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_text_and_csv_then_copy_out() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute(ITEMS).await.unwrap();

    // Text: tab-separated, \N is NULL, backslash escapes; the end marker is optional.
    let text = [
        "1\tlamp\t19.5\tt\t2026-01-02 03:04:05\t[1,2,3]\t2.5\t\\\\x0102\n2\tdesk\\twith tab\t\\N\toff\t",
        "\\N\t\\N\t-1.005\t\\N\n3\tline\\nbreak\t1e3\tyes\t2026-01-02\t[0,0.5,1]\t7\t\\\\x\n\\.\n",
    ];
    assert_eq!(copy_in(&client, "COPY items FROM STDIN", &text).await.unwrap(), 3);

    // CSV with a header, a column list (the rest NULL), quotes and the empty string.
    let csv = ["title,id\n\"a,\"\"quoted\"\"\",10\n\"\",11\n", "\"multi\nline\",12"];
    let sql = "COPY items (title, id) FROM STDIN WITH (FORMAT csv, HEADER)";
    assert_eq!(copy_in(&client, sql, &csv).await.unwrap(), 3);
    // The pre-9.0 spelling, another delimiter and NULL text.
    let sql = "COPY items (id, title, price) FROM STDIN WITH CSV DELIMITER ';' NULL 'NA'";
    assert_eq!(copy_in(&client, sql, &["20;semi;NA\n21;\"NA\";0.25\n"]).await.unwrap(), 2);

    let rows = client
        .query("SELECT id, title, price, ok, amount::text, data FROM items ORDER BY id", &[])
        .await
        .unwrap();
    type Row = (i64, String, Option<f64>, Option<bool>, Option<String>, Option<Vec<u8>>);
    let got: Vec<Row> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))).collect();
    let want: Vec<Row> = vec![
        (1, "lamp".into(), Some(19.5), Some(true), Some("2.50".into()), Some(vec![1, 2])),
        (2, "desk\twith tab".into(), None, Some(false), Some("-1.01".into()), None),
        (3, "line\nbreak".into(), Some(1000.0), Some(true), Some("7.00".into()), Some(vec![])),
        (10, "a,\"quoted\"".into(), None, None, None, None),
        (11, "".into(), None, None, None, None),
        (12, "multi\nline".into(), None, None, None, None),
        (20, "semi".into(), None, None, None, None),
        (21, "NA".into(), Some(0.25), None, None, None),
    ];
    assert_eq!(got, want);

    // Out, in the text form of query results: CSV with a header, then text.
    let csv = copy_out(
        &client,
        "COPY (SELECT id, title, price, created, embedding FROM items WHERE id <= 11 ORDER BY id) \
         TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .await;
    assert_eq!(
        csv,
        "id,title,price,created,embedding\n\
         1,lamp,19.5,2026-01-02 03:04:05,\"[1,2,3]\"\n\
         2,desk\twith tab,,,\n\
         3,\"line\nbreak\",1000,2026-01-02 00:00:00,\"[0,0.5,1]\"\n\
         10,\"a,\"\"quoted\"\"\",,,\n\
         11,\"\",,,\n"
    );
    // A table's rows come in no particular order.
    let text = copy_out(&client, "COPY items (id, title, ok, data) TO STDOUT").await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8);
    for line in ["1\tlamp\tt\t\\\\x0102", "2\tdesk\\twith tab\tf\t\\N", "3\tline\\nbreak\tt\t\\\\x"] {
        assert!(lines.contains(&line), "{line:?} in {lines:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_writes_nothing_and_names_the_line() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT NOT NULL)").await.unwrap();
    client.batch_execute("INSERT INTO t VALUES (1, 'one')").await.unwrap();

    let err = copy_in(&client, "COPY t FROM STDIN", &["2\ttwo\n3\tthr", "ee\nabc\tfour\n5\tfive\n"])
        .await
        .unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::INVALID_TEXT_REPRESENTATION);
    assert_eq!(db.message(), "invalid input syntax for type integer: \"abc\"");
    assert_eq!(db.where_(), Some("COPY t, line 3, column id: \"abc\""));
    assert_eq!(count(&client, "t").await, 1, "no row of the failed COPY is written");

    let err = copy_in(&client, "COPY t FROM STDIN", &["2\ttwo\n3\n"]).await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::BAD_COPY_FILE_FORMAT);
    assert_eq!(db.message(), "missing data for column \"v\"");
    assert_eq!(db.where_(), Some("COPY t, line 2: \"3\""));
    let err = copy_in(&client, "COPY t FROM STDIN (FORMAT csv)", &["2,two,extra\n"]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::BAD_COPY_FILE_FORMAT));

    // NOT NULL is checked when the rows are written, for the whole COPY.
    let err = copy_in(&client, "COPY t (id) FROM STDIN", &["7\n"]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::NOT_NULL_VIOLATION));
    // Refused before any data: binary, files, unknown tables and columns. (Asked with
    // the simple protocol: tokio-postgres' copy_in loses its connection when the
    // statement fails before copy mode, against PostgreSQL too.)
    for (sql, code) in [
        ("COPY t FROM '/etc/passwd'", SqlState::FEATURE_NOT_SUPPORTED),
        ("COPY t FROM STDIN (FORMAT binary)", SqlState::FEATURE_NOT_SUPPORTED),
        ("COPY t TO STDOUT (FORMAT binary)", SqlState::FEATURE_NOT_SUPPORTED),
        ("COPY missing FROM STDIN", SqlState::UNDEFINED_TABLE),
        ("COPY t (nope) FROM STDIN", SqlState::UNDEFINED_COLUMN),
        ("COPY t FROM STDIN (FORMAT xml)", SqlState::INVALID_PARAMETER_VALUE),
    ] {
        let err = client.simple_query(sql).await.unwrap_err();
        assert_eq!(err.code(), Some(&code), "{sql}: {err}");
    }
    assert_eq!(count(&client, "t").await, 1);
    assert_eq!(copy_in(&client, "COPY t FROM STDIN", &["2\ttwo\n"]).await.unwrap(), 1, "session goes on");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_write_nothing() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)").await.unwrap();
    client.batch_execute("INSERT INTO t VALUES (1, 'one')").await.unwrap();

    let err = copy_in(&client, "COPY t FROM STDIN", &["5\tfive\n6\tsix\n1\tagain\n"]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION), "{err}");
    let err = copy_in(&client, "COPY t FROM STDIN", &["7\tseven\n7\tseven again\n"]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION), "a key twice in one COPY: {err}");
    assert_eq!(count(&client, "t").await, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_inside_transactions() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)").await.unwrap();

    let tx = client.transaction().await.unwrap();
    let sink = tx.copy_in("COPY t FROM STDIN").await.unwrap();
    assert_eq!(write_all(sink, &["1\ta\n2\tb\n3\tc\n"]).await.unwrap(), 3);
    assert_eq!(count(&tx, "t").await, 3, "the transaction sees its own rows");
    tx.rollback().await.unwrap();
    assert_eq!(count(&client, "t").await, 0, "rolled back");

    let tx = client.transaction().await.unwrap();
    let sink = tx.copy_in("COPY t FROM STDIN").await.unwrap();
    assert_eq!(write_all(sink, &["1\ta\n2\tb\n"]).await.unwrap(), 2);
    tx.commit().await.unwrap();
    assert_eq!(count(&client, "t").await, 2, "committed");

    // A COPY the client abandons (tokio-postgres sends CopyFail) fails the block.
    let tx = client.transaction().await.unwrap();
    {
        let sink = tx.copy_in::<_, Cursor<Vec<u8>>>("COPY t FROM STDIN").await.unwrap();
        let mut sink = pin!(sink);
        sink.send(Cursor::new(b"9\tz\n".to_vec())).await.unwrap();
    }
    let err = tx.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    tx.rollback().await.unwrap();
    assert_eq!(count(&client, "t").await, 2);
    server.stop().await;
}

/// A client speaking the protocol by hand, to see the simple protocol's messages as
/// psql and psycopg get them.
struct RawClient(TcpStream);

type Message = (u8, Vec<u8>);

impl RawClient {
    async fn connect(server: &TestServer) -> RawClient {
        let mut client = RawClient(TcpStream::connect(server.addr).await.unwrap());
        let mut body = 196_608i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0tarn\0database\0tarn\0\0");
        let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        startup.extend(body);
        client.0.write_all(&startup).await.unwrap();
        client.until_ready().await;
        client
    }

    async fn send(&mut self, kind: u8, body: &[u8]) {
        let mut message = vec![kind];
        message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        message.extend_from_slice(body);
        self.0.write_all(&message).await.unwrap();
    }

    async fn query(&mut self, sql: &str) {
        self.send(b'Q', format!("{sql}\0").as_bytes()).await;
    }

    async fn recv(&mut self) -> Message {
        let kind = self.0.read_u8().await.unwrap();
        let len = self.0.read_i32().await.unwrap() as usize;
        let mut body = vec![0; len - 4];
        self.0.read_exact(&mut body).await.unwrap();
        (kind, body)
    }

    /// Messages up to and including ReadyForQuery.
    async fn until_ready(&mut self) -> Vec<Message> {
        let mut messages = vec![];
        loop {
            let message = self.recv().await;
            let ready = message.0 == b'Z';
            messages.push(message);
            if ready {
                return messages;
            }
        }
    }
}

fn kinds(messages: &[Message]) -> String {
    messages.iter().map(|(kind, _)| *kind as char).collect()
}

fn text(body: &[u8]) -> &str {
    std::str::from_utf8(body.strip_suffix(b"\0").unwrap_or(body)).unwrap()
}

fn error_fields(body: &[u8]) -> HashMap<char, &str> {
    body.split(|&b| b == 0).filter(|f| !f.is_empty()).map(|f| (f[0] as char, text(&f[1..]))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_protocol_copy_messages() {
    let server = TestServer::start().await;
    let mut raw = RawClient::connect(&server).await;
    raw.query("CREATE TABLE t (id INT, v TEXT)").await;
    raw.until_ready().await;

    // COPY FROM: CopyInResponse, data cut mid-row, CopyDone; then COPY n and ReadyForQuery.
    raw.query("COPY t FROM STDIN (FORMAT csv)").await;
    let (kind, body) = raw.recv().await;
    assert_eq!(kind, b'G');
    assert_eq!(body, [0, 0, 2, 0, 0, 0, 0], "text format, two text columns");
    raw.send(b'd', b"1,a\n2,").await;
    raw.send(b'd', b"b\n3,\"c\"").await;
    raw.send(b'c', b"").await;
    let messages = raw.until_ready().await;
    assert_eq!(kinds(&messages), "CZ");
    assert_eq!(text(&messages[0].1), "COPY 3");
    assert_eq!(messages[1].1, b"I");

    // Bad data: the error (with its CONTEXT) at CopyDone, then ReadyForQuery.
    raw.query("COPY t FROM STDIN").await;
    assert_eq!(raw.recv().await.0, b'G');
    raw.send(b'd', b"4\td\nx\te\n").await;
    raw.send(b'c', b"").await;
    let messages = raw.until_ready().await;
    assert_eq!(kinds(&messages), "EZ");
    let fields = error_fields(&messages[0].1);
    assert_eq!((fields[&'C'], fields[&'W']), ("22P02", "COPY t, line 2, column id: \"x\""));

    // CopyFail inside a transaction block: 57014, and the block has failed.
    raw.query("BEGIN").await;
    raw.until_ready().await;
    raw.query("COPY t FROM STDIN").await;
    assert_eq!(raw.recv().await.0, b'G');
    raw.send(b'd', b"5\tf\n").await;
    raw.send(b'f', b"client gave up\0").await;
    let messages = raw.until_ready().await;
    assert_eq!(kinds(&messages), "EZ");
    let fields = error_fields(&messages[0].1);
    assert_eq!((fields[&'C'], fields[&'M']), ("57014", "COPY from stdin failed: client gave up"));
    assert_eq!(messages[1].1, b"E", "failed transaction block");
    raw.query("ROLLBACK").await;
    assert_eq!(raw.until_ready().await.last().unwrap().1, b"I");

    // COPY inside a transaction block: ReadyForQuery says the block is still open, so
    // clients that decide on COMMIT from it (psycopg 3, pgJDBC) commit the rows.
    raw.query("BEGIN").await;
    raw.until_ready().await;
    raw.query("COPY t FROM STDIN").await;
    assert_eq!(raw.recv().await.0, b'G');
    raw.send(
        b'd', b"9	z
",
    )
    .await;
    raw.send(b'c', b"").await;
    let messages = raw.until_ready().await;
    assert_eq!(kinds(&messages), "CZ");
    assert_eq!(messages[1].1, b"T", "inside the transaction block");
    raw.query("ROLLBACK").await;
    assert_eq!(raw.until_ready().await.last().unwrap().1, b"I");

    // COPY TO: CopyOutResponse, one CopyData per line (header first), CopyDone, COPY n.
    raw.query("COPY (SELECT id, v FROM t ORDER BY id) TO STDOUT (FORMAT csv, HEADER)").await;
    let messages = raw.until_ready().await;
    assert_eq!(kinds(&messages), "HddddcCZ");
    let lines: Vec<&str> = messages[1..5].iter().map(|(_, body)| text(body)).collect();
    assert_eq!(lines, vec!["id,v\n", "1,a\n", "2,b\n", "3,c\n"]);
    assert_eq!(text(&messages[6].1), "COPY 3");

    // After another statement in the same query string, the rows still come in order.
    raw.query("SELECT 42; COPY (SELECT v FROM t WHERE id = 1) TO STDOUT").await;
    let messages = raw.until_ready().await;
    assert_eq!(kinds(&messages), "TDCHdcCZ");
    assert_eq!(text(&messages[4].1), "a\n");
    assert_eq!(text(&messages[6].1), "COPY 1");
    server.stop().await;
}
