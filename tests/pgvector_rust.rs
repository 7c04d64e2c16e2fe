//! pgvector-rust (the `pgvector` crate, `postgres` feature) against the server, as a
//! Rust pgvector user writes it: `Vector` parameters and results in pgvector's binary
//! form, the type found through `pg_type` by tokio-postgres, distance operators and
//! functions with a vector parameter, an HNSW index.

use pgvector::Vector;
use tarn_tests::TestServer;

fn ids(rows: &[tokio_postgres::Row]) -> Vec<i64> {
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_rust_writes_reads_and_searches() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE items (id BIGINT PRIMARY KEY, embedding VECTOR(3))").await.unwrap();
    let vectors = [(1i64, vec![1.0f32, 1.0, 1.0]), (2, vec![2.0, 2.0, 2.0]), (3, vec![1.0, 1.0, 2.0])];
    let insert = client.prepare("INSERT INTO items (id, embedding) VALUES ($1, $2)").await.unwrap();
    for (id, v) in &vectors {
        client.execute(&insert, &[id, &Vector::from(v.clone())]).await.unwrap();
    }
    let null: Option<Vector> = None;
    client.execute(&insert, &[&4i64, &null]).await.unwrap();

    // Results in binary, read back as `Vector`.
    let rows = client.query("SELECT id, embedding FROM items ORDER BY id", &[]).await.unwrap();
    for (row, (id, v)) in rows.iter().zip(&vectors) {
        assert_eq!(row.get::<_, i64>(0), *id);
        assert_eq!(row.get::<_, Vector>(1).to_vec(), *v);
    }
    assert_eq!(rows[3].get::<_, Option<Vector>>(1), None);

    // The query vector as a parameter of an operator and of a function.
    let query = Vector::from(vec![1.0f32, 1.0, 1.1]);
    let search = "SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 3";
    assert_eq!(ids(&client.query(search, &[&query]).await.unwrap()), vec![1, 3, 2]);
    let distance: f64 = client
        .query_one("SELECT l2_distance(embedding, $1) FROM items WHERE id = 2", &[&query])
        .await
        .unwrap()
        .get(0);
    assert!((distance - (1.0f64 + 1.0 + 0.81).sqrt()).abs() < 1e-5, "{distance}");
    let cosine: f64 =
        client.query_one("SELECT embedding <=> $1 FROM items WHERE id = 2", &[&query]).await.unwrap().get(0);
    let expected = 1.0 - 6.2 / (12f64.sqrt() * 3.21f64.sqrt());
    assert!((cosine - expected).abs() < 1e-5, "{cosine} vs {expected}");

    // With an index (and rows enough to train it), the same answers.
    client
        .batch_execute(
            "INSERT INTO items SELECT i, ARRAY[10 + i % 17, 10 + i % 13, 10 + i % 11]::vector(3)
             FROM generate_series(100, 1500) AS t(i);
             CREATE INDEX items_embedding ON items USING hnsw (embedding vector_l2_ops)",
        )
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query(&format!("EXPLAIN {search}"), &[&query])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(1))
        .collect();
    assert!(plan.iter().any(|p| p.contains("TarnKnnExec: mode=index")), "{plan:?}");
    assert_eq!(ids(&client.query(search, &[&query]).await.unwrap()), vec![1, 3, 2]);

    // A vector of the wrong dimension is the client's error, not the server's.
    let wrong = Vector::from(vec![1.0f32, 2.0]);
    let error = client.query(search, &[&wrong]).await.unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("22000"), "{error}");
    server.stop().await;
}
