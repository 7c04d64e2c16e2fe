//! COPY FROM STDIN / TO STDOUT through the wire: tokio-postgres' `copy_in`/`copy_out`
//! (extended protocol) and its binary COPY reader and writer, and the simple protocol
//! byte for byte with a raw client, as psql and psycopg speak it. psql's `\copy` is in
//! `psql.rs`.

use std::collections::HashMap;
use std::io::Cursor;
use std::pin::pin;

use bytes::BytesMut;
use chrono::NaiveDate;
use futures::{SinkExt, TryStreamExt};
use tarn_tests::{Raw, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutRow, BinaryCopyOutStream};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, IsNull, Kind, ToSql, Type};
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
    // Refused before any data: files, unknown tables and columns, bad options. (Asked with
    // the simple protocol: tokio-postgres' copy_in loses its connection when the
    // statement fails before copy mode, against PostgreSQL too.)
    for (sql, code) in [
        ("COPY t FROM '/etc/passwd'", SqlState::FEATURE_NOT_SUPPORTED),
        ("COPY t FROM STDIN (FORMAT binary, HEADER)", SqlState::FEATURE_NOT_SUPPORTED),
        ("COPY t TO STDOUT (FORMAT binary, DELIMITER ',')", SqlState::SYNTAX_ERROR),
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

/// pgvector's `vector` as its client libraries send it: uint16 dimensions, uint16
/// unused, float4 elements, big-endian.
#[derive(Debug)]
struct Vector(Vec<f32>);

impl ToSql for Vector {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&(self.0.len() as u16).to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        for v in &self.0 {
            out.extend_from_slice(&v.to_be_bytes());
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector"
    }

    to_sql_checked!();
}

/// A value's binary form as it is, for the types tokio-postgres has no Rust type for
/// here (date, timestamps and numeric need features we do not enable; vector).
fn vector_type() -> Type {
    Type::new("vector".into(), 16385, Kind::Simple, "public".into())
}

/// Days and microseconds since 2000-01-01, Postgres' binary epoch.
fn pg_date(y: i32, m: u32, d: u32) -> Raw {
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
    let days = (NaiveDate::from_ymd_opt(y, m, d).unwrap() - epoch).num_days() as i32;
    Raw(days.to_be_bytes().to_vec())
}

fn pg_timestamp(y: i32, m: u32, d: u32, micros_of_day: i64) -> Raw {
    let days = i32::from_be_bytes(pg_date(y, m, d).0.try_into().unwrap()) as i64;
    Raw((days * 86_400_000_000 + micros_of_day).to_be_bytes().to_vec())
}

/// `numeric_send`: digit count, weight, sign, display scale, base-10000 digits.
fn pg_numeric(words: &[i16]) -> Raw {
    Raw(words.iter().flat_map(|w| w.to_be_bytes()).collect())
}

fn vector_bytes(values: &[f32]) -> Raw {
    let mut bytes = BytesMut::new();
    Vector(values.to_vec()).to_sql(&vector_type(), &mut bytes).unwrap();
    Raw(bytes.to_vec())
}

const EVERY_TYPE: &str = "CREATE TABLE every (
    id BIGINT PRIMARY KEY, b BOOLEAN, i2 SMALLINT, i4 INT, f4 REAL, f8 DOUBLE PRECISION, t TEXT,
    vc VARCHAR(20), by BYTEA, d DATE, ts TIMESTAMP, tz TIMESTAMPTZ, n NUMERIC(10,2), e VECTOR(3))";

fn every_type() -> Vec<Type> {
    vec![
        Type::INT8,
        Type::BOOL,
        Type::INT2,
        Type::INT4,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::TEXT,
        Type::VARCHAR,
        Type::BYTEA,
        Type::DATE,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::NUMERIC,
        vector_type(),
    ]
}

/// One row of `every` as tokio-postgres writes and reads it.
#[derive(Debug, PartialEq)]
struct Every {
    id: i64,
    b: Option<bool>,
    i2: Option<i16>,
    i4: Option<i32>,
    f4: Option<f32>,
    f8: Option<f64>,
    t: Option<String>,
    vc: Option<String>,
    by: Option<Vec<u8>>,
    /// date, timestamp, timestamptz, numeric, vector.
    raw: [Option<Raw>; 5],
}

impl Every {
    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut values: Vec<&(dyn ToSql + Sync)> =
            vec![&self.id, &self.b, &self.i2, &self.i4, &self.f4, &self.f8, &self.t, &self.vc, &self.by];
        values.extend(self.raw.iter().map(|v| v as &(dyn ToSql + Sync)));
        values
    }

    fn read(row: &BinaryCopyOutRow) -> Every {
        Every {
            id: row.get(0),
            b: row.get(1),
            i2: row.get(2),
            i4: row.get(3),
            f4: row.get(4),
            f8: row.get(5),
            t: row.get(6),
            vc: row.get(7),
            by: row.get(8),
            raw: [row.get(9), row.get(10), row.get(11), row.get(12), row.get(13)],
        }
    }
}

fn every_rows() -> Vec<Every> {
    let noon = 12 * 3_600_000_000 + 3 * 60_000_000 + 4_500_000; // 12:03:04.5
    vec![
        Every {
            id: 1,
            b: Some(true),
            i2: Some(-7),
            i4: Some(100_000),
            f4: Some(1.5),
            f8: Some(-2.25e10),
            t: Some("tab\there".into()),
            vc: Some("varchar".into()),
            by: Some(vec![0, 1, 255]),
            raw: [
                Some(pg_date(2026, 1, 2)),
                Some(pg_timestamp(2026, 1, 2, noon)),
                Some(pg_timestamp(2026, 1, 2, noon)),
                // 12345.67: digits 1, 2345, 6700 at weight 1, display scale 2.
                Some(pg_numeric(&[3, 1, 0, 2, 1, 2345, 6700])),
                Some(vector_bytes(&[1.0, -2.0, 0.5])),
            ],
        },
        Every {
            id: 2,
            b: None,
            i2: None,
            i4: None,
            f4: None,
            f8: None,
            t: None,
            vc: None,
            by: None,
            raw: [None, None, None, None, None],
        },
        Every {
            id: 3,
            b: Some(false),
            i2: Some(i16::MIN),
            i4: Some(0),
            f4: Some(3.25),
            f8: Some(f64::INFINITY),
            t: Some(String::new()),
            vc: Some("ünï".into()),
            by: Some(vec![]),
            raw: [
                Some(pg_date(1999, 12, 31)),
                Some(pg_timestamp(1970, 1, 1, 0)),
                Some(pg_timestamp(1970, 1, 1, 0)),
                // -0.05: one digit 500 at weight -1, negative.
                Some(pg_numeric(&[1, -1, 0x4000, 2, 500])),
                Some(vector_bytes(&[0.0, 0.0, 0.0])),
            ],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_copy_round_trips_every_type() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute(EVERY_TYPE).await.unwrap();

    let rows = every_rows();
    let sink = client.copy_in("COPY every FROM STDIN (FORMAT binary)").await.unwrap();
    let writer = BinaryCopyInWriter::new(sink, &every_type());
    let mut writer = pin!(writer);
    for row in &rows {
        writer.as_mut().write(&row.values()).await.unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), 3);

    // Read back in text: each value as its type's input would have read it.
    let text = copy_out(&client, "COPY (SELECT * FROM every ORDER BY id) TO STDOUT").await;
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec![
            "1\tt\t-7\t100000\t1.5\t-22500000000\ttab\\there\tvarchar\t\\\\x0001ff\t2026-01-02\t\
             2026-01-02 12:03:04.5\t2026-01-02 12:03:04.5+00\t12345.67\t[1,-2,0.5]",
            "2\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N",
            "3\tf\t-32768\t0\t3.25\tInfinity\t\tünï\t\\\\x\t1999-12-31\t\
             1970-01-01 00:00:00\t1970-01-01 00:00:00+00\t-0.05\t[0,0,0]",
        ]
    );

    // And in binary: the very bytes that went in.
    let stream =
        client.copy_out("COPY (SELECT * FROM every ORDER BY id) TO STDOUT (FORMAT binary)").await.unwrap();
    let got: Vec<BinaryCopyOutRow> =
        pin!(BinaryCopyOutStream::new(stream, &every_type())).try_collect().await.unwrap();
    assert_eq!(got.iter().map(Every::read).collect::<Vec<_>>(), rows);
    // A table with a column list; `BINARY` in the pre-9.0 spelling.
    let stream = client.copy_out("COPY every (e, id) TO STDOUT BINARY").await.unwrap();
    let got: Vec<BinaryCopyOutRow> =
        pin!(BinaryCopyOutStream::new(stream, &[vector_type(), Type::INT8])).try_collect().await.unwrap();
    let mut got: Vec<(i64, Option<Raw>)> = got.iter().map(|r| (r.get(1), r.get(0))).collect();
    got.sort_by_key(|(id, _)| *id);
    let want: Vec<(i64, Option<Raw>)> = rows.iter().map(|r| (r.id, r.raw[4].clone())).collect();
    assert_eq!(got, want);
    server.stop().await;
}

/// pgvector-python's example (`copy.set_types(["int8", "vector"])`, one `write_row` per
/// item), with tokio-postgres' writer in psycopg's place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_bulk_load_in_binary() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE items (id BIGINT PRIMARY KEY, embedding VECTOR(3), note TEXT)")
        .await
        .unwrap();

    let sink = client.copy_in("COPY items (id, embedding) FROM STDIN WITH (FORMAT BINARY)").await.unwrap();
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, vector_type()]);
    let mut writer = pin!(writer);
    for i in 0..1000i64 {
        let embedding = Vector(vec![i as f32, 1.0, -(i as f32) / 4.0]);
        writer.as_mut().write(&[&i, &embedding]).await.unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), 1000);

    assert_eq!(count(&client, "items").await, 1000);
    let row = copy_out(&client, "COPY (SELECT embedding, note FROM items WHERE id = 3) TO STDOUT").await;
    assert_eq!(row, "[3,1,-0.75]\t\\N\n", "a column left out is NULL");
    server.stop().await;
}

/// A binary COPY stream of `rows` (`None`: NULL), with the signature and trailer.
fn binary_stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
    let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
    out.extend(0i32.to_be_bytes());
    out.extend(0i32.to_be_bytes());
    for row in rows {
        out.extend((row.len() as i16).to_be_bytes());
        for field in row {
            match field {
                Some(bytes) => {
                    out.extend((bytes.len() as i32).to_be_bytes());
                    out.extend(bytes);
                }
                None => out.extend((-1i32).to_be_bytes()),
            }
        }
    }
    out.extend((-1i16).to_be_bytes());
    out
}

async fn copy_in_bytes(client: &Client, sql: &str, data: &[u8]) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, Cursor<Vec<u8>>>(sql).await?;
    let mut sink = pin!(sink);
    // Cut anywhere, as a client's buffers may cut it.
    for chunk in data.chunks(7) {
        sink.send(Cursor::new(chunk.to_vec())).await?;
    }
    sink.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_binary_data_writes_nothing() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE items (id BIGINT PRIMARY KEY, embedding VECTOR(3))").await.unwrap();
    client.batch_execute("INSERT INTO items VALUES (1, '[1,1,1]')").await.unwrap();
    let sql = "COPY items FROM STDIN (FORMAT binary)";
    let id = |i: i64| Some(i.to_be_bytes().to_vec());
    let vector = |values: &[f32]| Some(vector_bytes(values).0);
    let good = vec![id(2), vector(&[1.0, 2.0, 3.0])];

    let mut wrong_signature = binary_stream(std::slice::from_ref(&good));
    wrong_signature[0] = b'X';
    let err = copy_in_bytes(&client, sql, &wrong_signature).await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(
        (db.code(), db.message()),
        (&SqlState::BAD_COPY_FILE_FORMAT, "COPY file signature not recognized")
    );
    let err = copy_in_bytes(&client, sql, b"2\t[1,2,3]\n").await.unwrap_err();
    assert_eq!(
        err.as_db_error().unwrap().message(),
        "COPY file signature not recognized",
        "text sent as binary"
    );

    let data = binary_stream(&[good.clone(), vec![id(3)], vec![id(4), vector(&[4.0, 4.0, 4.0])]]);
    let err = copy_in_bytes(&client, sql, &data).await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(
        (db.code(), db.message()),
        (&SqlState::BAD_COPY_FILE_FORMAT, "row field count is 1, expected 2")
    );
    assert_eq!(db.where_(), Some("COPY items, line 2"));

    let data = binary_stream(&[good.clone(), vec![id(3), vector(&[1.0, 2.0])]]);
    let err = copy_in_bytes(&client, sql, &data).await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!((db.code(), db.message()), (&SqlState::DATA_EXCEPTION, "expected 3 dimensions, not 2"));
    assert_eq!(db.where_(), Some("COPY items, line 2, column embedding"));

    // A bigint sent as int4: Postgres' int8recv finds bytes left over.
    let data = binary_stream(&[vec![Some(5i32.to_be_bytes().to_vec()), vector(&[1.0, 2.0, 3.0])]]);
    let err = copy_in_bytes(&client, sql, &data).await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(
        (db.code(), db.message()),
        (&SqlState::INVALID_BINARY_REPRESENTATION, "incorrect binary data format")
    );
    assert_eq!(db.where_(), Some("COPY items, line 1, column id"));

    let mut cut = binary_stream(std::slice::from_ref(&good));
    cut.truncate(cut.len() - 4);
    let err = copy_in_bytes(&client, sql, &cut).await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!((db.code(), db.message()), (&SqlState::BAD_COPY_FILE_FORMAT, "unexpected EOF in COPY data"));
    let mut after = binary_stream(std::slice::from_ref(&good));
    after.extend(binary_stream(&[]));
    let err = copy_in_bytes(&client, sql, &after).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().message(), "received copy data after EOF marker");

    let rows = copy_out(&client, "COPY items TO STDOUT").await;
    assert_eq!(rows, "1\t[1,1,1]\n", "no row of a failed COPY is written");
    assert_eq!(copy_in_bytes(&client, sql, &binary_stream(&[good])).await.unwrap(), 1, "session goes on");
    assert_eq!(count(&client, "items").await, 2);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_protocol_binary_copy_messages() {
    let server = TestServer::start().await;
    let mut raw = RawClient::connect(&server).await;
    raw.query("CREATE TABLE t (id INT, v TEXT)").await;
    raw.until_ready().await;

    // COPY FROM: CopyInResponse says binary for the whole and for each column.
    raw.query("COPY t FROM STDIN (FORMAT binary)").await;
    let (kind, body) = raw.recv().await;
    assert_eq!(kind, b'G');
    assert_eq!(body, [1, 0, 2, 0, 1, 0, 1], "binary format, two binary columns");
    let rows = vec![
        vec![Some(1i32.to_be_bytes().to_vec()), Some(b"a".to_vec())],
        vec![Some(2i32.to_be_bytes().to_vec()), None],
    ];
    let data = binary_stream(&rows);
    raw.send(b'd', &data[..5]).await;
    raw.send(b'd', &data[5..]).await;
    raw.send(b'c', b"").await;
    let messages = raw.until_ready().await;
    assert_eq!(kinds(&messages), "CZ");
    assert_eq!(text(&messages[0].1), "COPY 2");

    // COPY TO: CopyOutResponse says binary too; the signature comes with the first row,
    // the trailer alone, as Postgres sends them.
    let sql = "COPY (SELECT id, v FROM t ORDER BY id) TO STDOUT (FORMAT binary)";
    raw.query(sql).await;
    let messages = raw.until_ready().await;
    assert_eq!(kinds(&messages), "HdddcCZ");
    assert_eq!(messages[0].1, [1, 0, 2, 0, 1, 0, 1]);
    let sent: Vec<u8> = messages[1..4].iter().flat_map(|(_, body)| body.clone()).collect();
    assert_eq!(sent, data);
    assert_eq!(messages[3].1, [0xff, 0xff]);
    assert_eq!(text(&messages[5].1), "COPY 2");

    // After another statement in the same query string (pgwire sends the rows).
    raw.query(&format!("SELECT 42; {sql}")).await;
    let messages = raw.until_ready().await;
    assert_eq!(kinds(&messages), "TDCHdddcCZ");
    let sent: Vec<u8> = messages[4..7].iter().flat_map(|(_, body)| body.clone()).collect();
    assert_eq!(sent, data);
    assert_eq!(text(&messages[8].1), "COPY 2");

    // No rows: the signature and the trailer.
    raw.query("COPY (SELECT id, v FROM t WHERE id > 9) TO STDOUT (FORMAT binary)").await;
    let messages = raw.until_ready().await;
    assert_eq!(kinds(&messages), "HddcCZ");
    let sent: Vec<u8> = messages[1..3].iter().flat_map(|(_, body)| body.clone()).collect();
    assert_eq!(sent, binary_stream(&[]));
    assert_eq!(text(&messages[4].1), "COPY 0");
    server.stop().await;
}
