//! `embed()` with the real all-MiniLM-L6-v2 (fetched once into `target/tmp/models` by
//! `tarn_models::fetch_default_model`, what `tarn models fetch` runs): its vectors
//! against sentence-transformers' own, generated embedding columns, semantic and
//! hybrid search by text alone, through tokio-postgres and through psql.

use std::path::Path;
use std::process::Command;

use tarn_tests::{describe, simple_rows, TestServer};

async fn server_with_model() -> TestServer {
    TestServer::start_configured(tarn_server::ServerConfig {
        models_dir: tarn_tests::models_dir(Path::new(env!("CARGO_TARGET_TMPDIR"))),
        ..Default::default()
    })
    .await
}

fn parse_vector(text: &str) -> Vec<f32> {
    text.trim_matches(['[', ']']).split(',').map(|v| v.parse().expect("a float")).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Tarn's vectors for twelve sentences (an empty one, one past the 256-token limit,
/// accents, CJK and emoji among them) against the vectors sentence-transformers 6.3
/// computed for them (`embeddings/make_reference.py`): cosine at least 0.999 each,
/// whether a sentence is embedded alone or in one batch with the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_matches_sentence_transformers() {
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("embeddings/reference.json")).expect("reference json");
    let sentences: Vec<String> = reference["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| s.as_str().expect("text").to_string())
        .collect();
    let expected: Vec<Vec<f32>> = reference["embeddings"]
        .as_array()
        .expect("embeddings")
        .iter()
        .map(|v| v.as_array().expect("vector").iter().map(|x| x.as_f64().expect("float") as f32).collect())
        .collect();
    let server = server_with_model().await;
    let client = server.client().await;

    // One statement over all the sentences: one call, batched.
    let batched = client
        .query("SELECT s, embed(s)::text FROM unnest($1::text[]) AS u(s)", &[&sentences])
        .await
        .map_err(|e| describe(&e))
        .expect("batched embed");
    assert_eq!(batched.len(), sentences.len());
    let batched: std::collections::HashMap<String, Vec<f32>> =
        batched.iter().map(|r| (r.get::<_, String>(0), parse_vector(r.get::<_, &str>(1)))).collect();
    for (i, sentence) in sentences.iter().enumerate() {
        let got = batched[sentence].clone();
        assert_eq!(got.len(), 384, "dimensions");
        let cos = cosine(&got, &expected[i]);
        assert!(cos >= 0.999, "sentence {i} ({:?}): cosine {cos} with sentence-transformers", sentences[i]);
        let norm = cosine(&got, &got);
        assert!((norm - 1.0).abs() < 1e-6);
    }
    // Each alone (a constant, folded while planning): the same vector.
    for (i, sentence) in sentences.iter().enumerate() {
        let row = client.query_one("SELECT embed($1)::text", &[sentence]).await.expect("embed one");
        let alone = parse_vector(row.get::<_, &str>(0));
        let cos = cosine(&alone, &batched[sentence]);
        assert!(cos > 0.99999, "sentence {i} alone and in a batch differ: cosine {cos}");
    }
    assert_eq!(
        client
            .query_one("SELECT vector_dims(embed('x', 'all-MiniLM-L6-v2'))", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        384
    );
    let e = client.query_one("SELECT embed('x', 'no-such-model')", &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("58P01"), "{}", describe(&e));
    let e = client.query_one("SELECT embed('x', '../etc')", &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("22023"), "{}", describe(&e));
    assert_eq!(simple_rows(&client.simple_query("SELECT embed(NULL) IS NULL").await.unwrap()), ["t"]);
}

/// Without a model, `embed()` names the setting and everything else works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_model_embed_says_what_to_set() {
    let empty = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_configured(tarn_server::ServerConfig {
        models_dir: empty.path().to_path_buf(),
        ..Default::default()
    })
    .await;
    let client = server.client().await;
    let e = client.query_one("SELECT embed('hello')", &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("58P01"));
    assert!(describe(&e).contains("tarn models fetch"), "{}", describe(&e));
    let e = client
        .batch_execute("CREATE TABLE d (id int, e vector(384) GENERATED ALWAYS AS (embed('x')) STORED)")
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("58P01"));
    client.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)").await.unwrap();
    assert_eq!(simple_rows(&client.simple_query("SELECT count(*) FROM t").await.unwrap()), ["1"]);
}

/// A generated embedding column: computed on insert (`VALUES`, `INSERT ... SELECT`,
/// `COPY`), on the update of what it reads, searched by text alone (kNN and
/// `hybrid_search`), prepared with the question as a parameter; values given to it and
/// definitions that cannot hold are refused with PostgreSQL's SQLSTATEs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_embedding_columns_and_search_by_text() {
    let server = server_with_model().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text, \
               embedding vector(384) GENERATED ALWAYS AS (embed(title || ' ' || body)) STORED);
             INSERT INTO docs (id, title, body) VALUES
               (1, 'Cats', 'Cats are small furry pets that purr and chase mice'),
               (2, 'Rust', 'A systems programming language with memory safety and no garbage collector'),
               (3, 'Pasta', 'Boil spaghetti and serve it with tomato sauce and basil');
             CREATE TABLE staging (id bigint, title text, body text);
             INSERT INTO staging VALUES
               (4, 'Dogs', 'Loyal pets that bark and love long walks'),
               (5, 'Go', 'A programming language from Google with goroutines'),
               (6, 'Bread', 'Knead flour, water and yeast, then bake the loaf');
             INSERT INTO docs (id, title, body) SELECT id, title, body FROM staging;",
        )
        .await
        .map_err(|e| describe(&e))
        .expect("table with a generated column");
    // Stored values equal the function's.
    let same = client
        .query_one("SELECT bool_and(embedding = embed(title || ' ' || body)), count(*) FROM docs", &[])
        .await
        .unwrap();
    assert!(same.get::<_, bool>(0));
    assert_eq!(same.get::<_, i64>(1), 6);

    let nearest = |question: &'static str| {
        let client = &client;
        async move {
            let rows = client
                .query("SELECT id FROM docs ORDER BY embedding <=> embed($1) LIMIT 2", &[&question])
                .await
                .map_err(|e| describe(&e))
                .expect("semantic search");
            rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>()
        }
    };
    let mut pets = nearest("which animals make good companions at home?").await;
    pets.sort();
    assert_eq!(pets, [1, 4]);
    let mut languages = nearest("compilers and software development").await;
    languages.sort();
    assert_eq!(languages, [2, 5]);
    // A constant question is a kNN search too.
    let plan = tarn_tests::explain(
        &client,
        "SELECT id FROM docs ORDER BY embedding <=> embed('italian food') LIMIT 1",
    )
    .await;
    assert!(plan.contains("TarnKnnExec"), "{plan}");

    // Updating what the expression reads computes it again; other updates keep it.
    client
        .batch_execute("UPDATE docs SET body = 'Fresh tagliatelle with a slow-cooked ragu' WHERE id = 2")
        .await
        .unwrap();
    let mut italian = nearest("recipes for an italian dinner").await;
    italian.sort();
    assert_eq!(italian, [2, 3]);
    client
        .batch_execute("ALTER TABLE docs ADD COLUMN views int; UPDATE docs SET views = 7 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(
        simple_rows(
            &client
                .simple_query("SELECT embedding = embed(title || ' ' || body) FROM docs WHERE id = 1")
                .await
                .unwrap()
        ),
        ["t"]
    );

    // Hybrid search by text alone: the text is matched by BM25 and embedded for the
    // vector branch.
    client
        .batch_execute("CREATE INDEX ON docs USING bm25 (body); CREATE INDEX ON docs USING hnsw (embedding vector_cosine_ops)")
        .await
        .unwrap();
    let rows = client
        .query("SELECT id, text_rank, vector_rank FROM hybrid_search('docs', $1, 3)", &[&"pets that bark"])
        .await
        .map_err(|e| describe(&e))
        .expect("hybrid search by text");
    let first = &rows[0];
    assert_eq!(first.get::<_, i64>(0), 4, "both branches rank the dog document first");
    assert_eq!(first.get::<_, Option<i64>>(1), Some(1));
    assert_eq!(first.get::<_, Option<i64>>(2), Some(1));
    let rows = client
        .query(
            "SELECT id FROM hybrid_search('docs', 'baking loaves at home', 1, model => 'all-MiniLM-L6-v2')",
            &[],
        )
        .await
        .map_err(|e| describe(&e))
        .expect("hybrid search with a model");
    assert_eq!(rows[0].get::<_, i64>(0), 6);

    // What PostgreSQL refuses.
    let code = |sql: &'static str| {
        let client = &client;
        async move {
            let e = client.batch_execute(sql).await.expect_err(sql);
            e.code().map(|c| c.code().to_string()).unwrap_or_default()
        }
    };
    assert_eq!(code("INSERT INTO docs VALUES (9, 'a', 'b', '[1]')").await, "428C9");
    assert_eq!(code("UPDATE docs SET embedding = NULL").await, "428C9");
    assert_eq!(
        code("CREATE TABLE bad (id int, e vector(3) GENERATED ALWAYS AS (embed('x')) STORED)").await,
        "42804"
    );
    assert_eq!(
        code("CREATE TABLE bad (id int, r float8 GENERATED ALWAYS AS (random()) STORED)").await,
        "42P17"
    );
    assert_eq!(code("ALTER TABLE docs DROP COLUMN body").await, "2BP01");
    client
        .batch_execute("INSERT INTO docs (id, title, body, embedding) VALUES (9, 'a', 'b', DEFAULT)")
        .await
        .expect("DEFAULT is allowed");
}

/// The issue's session as a person types it into psql: a table with a generated
/// embedding column, text inserted, a semantic query and a hybrid search by text alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_semantic_and_hybrid_search_by_text() {
    let server = server_with_model().await;
    let session = "\
CREATE TABLE articles (
  id bigint PRIMARY KEY, title text, body text,
  embedding vector(384) GENERATED ALWAYS AS (embed(title || ' ' || body)) STORED
);
INSERT INTO articles (id, title, body) VALUES
  (1, 'Tides', 'The moon pulls the oceans and makes the tides rise and fall'),
  (2, 'Sourdough', 'A starter of wild yeast leavens the bread dough overnight'),
  (3, 'Transistors', 'Tiny switches etched in silicon make up every processor');
CREATE INDEX ON articles USING bm25 (body);
SELECT title FROM articles ORDER BY embedding <=> embed('why does the sea level change during the day?') LIMIT 1;
SELECT title FROM hybrid_search('articles', 'baking with yeast', 1);
";
    use std::io::Write;
    let mut child = Command::new("psql")
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(server.addr.ip().to_string())
        .args(["-p", &server.addr.port().to_string(), "-U", "tarn", "-d", "tarn", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql runs (the postgresql-client package; .ci/run installs it)");
    child.stdin.take().expect("stdin").write_all(session.as_bytes()).expect("writes");
    let out = child.wait_with_output().expect("psql finishes");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "psql failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["Tides", "Sourdough"], "{stdout}");
}

/// A small PNG, made here with the `image` crate's encoder.
fn png(width: u32, height: u32) -> Vec<u8> {
    let pixels = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(pixels).write_to(&mut out, image::ImageFormat::Png).expect("encodes");
    out.into_inner()
}

/// Preprocessing next to the data: text normalized and chunked into rows (then
/// embedded), images in `bytea` read and scaled down, and `bytea` itself through
/// `length`, `substring` and COPY in text, CSV and binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preprocessing_text_and_images() {
    let server = server_with_model().await;
    let client = server.client().await;
    assert_eq!(
        simple_rows(
            &client.simple_query("SELECT normalize_text('  \u{FB01}ne\tＡＢＣ\n end  ')").await.unwrap()
        ),
        ["fine ABC end"]
    );
    client
        .batch_execute(
            "CREATE TABLE pages (id bigint PRIMARY KEY, body text);
             INSERT INTO pages VALUES
               (1, 'Tarn keeps a change store. It merges it on read. Compaction folds it into the base later on.'),
               (2, 'Short page.');
             CREATE TABLE chunks (page bigint, chunk text, embedding vector(384));
             INSERT INTO chunks SELECT id, c, embed(c) FROM (SELECT id, chunk_text(body, 8, 2) AS c FROM pages) t;",
        )
        .await
        .map_err(|e| describe(&e))
        .expect("chunks made and embedded");
    let chunks = client.query("SELECT page, chunk FROM chunks", &[]).await.unwrap();
    let mut texts: Vec<(i64, String)> = chunks.iter().map(|r| (r.get(0), r.get(1))).collect();
    texts.sort();
    let mut expected = vec![
        (1, "Tarn keeps a change store.".to_string()),
        (1, "change store. It merges it on read.".to_string()),
        (1, "on read. Compaction folds it into the base".to_string()),
        (1, "the base later on.".to_string()),
        (2, "Short page.".to_string()),
    ];
    expected.sort();
    assert_eq!(texts, expected);
    let embedded =
        client.query_one("SELECT count(*) FROM chunks WHERE embedding = embed(chunk)", &[]).await.unwrap();
    assert_eq!(embedded.get::<_, i64>(0), 5);
    let named = client.query("SELECT chunk_text('a b c', 2, 0)", &[]).await.unwrap();
    assert_eq!(named.len(), 2);
    assert_eq!(named[0].columns()[0].name(), "chunk_text");
    let e = client.query("SELECT chunk_text('a b', 2, 2)", &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("22023"), "{}", describe(&e));

    // Images as bytea.
    client.batch_execute("CREATE TABLE photos (id bigint PRIMARY KEY, img bytea)").await.unwrap();
    let big = png(320, 200);
    client.execute("INSERT INTO photos VALUES (1, $1), (2, NULL)", &[&big]).await.unwrap();
    let row = client
        .query_one(
            "SELECT image_info(img), length(img), image_info(image_thumbnail(img, 64)), substring(img from 2 for 3) \
             FROM photos WHERE id = 1",
            &[],
        )
        .await
        .map_err(|e| describe(&e))
        .expect("image functions");
    assert_eq!(row.get::<_, String>(0), r#"{"format":"png","height":200,"width":320}"#);
    assert_eq!(row.get::<_, i32>(1) as usize, big.len());
    assert_eq!(row.get::<_, String>(2), r#"{"format":"png","height":40,"width":64}"#);
    assert_eq!(row.get::<_, Vec<u8>>(3), big[1..4].to_vec());
    assert_eq!(
        simple_rows(
            &client.simple_query("SELECT image_info(img) IS NULL FROM photos WHERE id = 2").await.unwrap()
        ),
        ["t"]
    );
    let e = client.query("SELECT image_info('\\x00010203'::bytea)", &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("22023"), "{}", describe(&e));
    let e = client.query("SELECT image_embed(img) FROM photos", &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{}", describe(&e));

    // bytea through COPY, each format, back into a table and compared.
    for format in ["text", "csv", "binary"] {
        let out = format!("COPY photos TO STDOUT (FORMAT {format})");
        let stream = client.copy_out(out.as_str()).await.unwrap();
        use futures::TryStreamExt;
        let data: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS photos2; CREATE TABLE photos2 (id bigint PRIMARY KEY, img bytea)"
            ))
            .await
            .unwrap();
        let sink =
            client.copy_in(format!("COPY photos2 FROM STDIN (FORMAT {format})").as_str()).await.unwrap();
        use futures::SinkExt;
        let mut sink = std::pin::pin!(sink);
        for chunk in data {
            sink.send(chunk).await.unwrap();
        }
        sink.as_mut().finish().await.map_err(|e| describe(&e)).expect("copy in");
        let same = client
            .query_one("SELECT count(*) FROM photos p JOIN photos2 q USING (id) WHERE p.img = q.img OR (p.img IS NULL AND q.img IS NULL)", &[])
            .await
            .unwrap();
        assert_eq!(same.get::<_, i64>(0), 2, "bytea through COPY {format}");
    }
}

/// Sizes of all Lance data files (`*.lance`) below `dir`, and of all Lance blob files
/// (`*.blob`).
fn lance_file_bytes(dir: &Path) -> (u64, u64) {
    let (mut data, mut blobs) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            let (d, b) = lance_file_bytes(&path);
            data += d;
            blobs += b;
        } else if path.extension().is_some_and(|x| x == "lance") {
            data += entry.metadata().unwrap().len();
        } else if path.extension().is_some_and(|x| x == "blob") {
            blobs += entry.metadata().unwrap().len();
        }
    }
    (data, blobs)
}

/// `bytea` values of every size (inline, packed, a file of their own) in a table with
/// a primary key (folded into the Lance base by VACUUM) and in one without: read back
/// whole by scans, point lookups, a filter and after an UPDATE; the base's data files
/// hold descriptors, not the values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytea_lives_in_lance_blobs() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let value = |i: i64, size: usize| -> Vec<u8> { (0..size).map(|j| (j as i64 * 31 + i) as u8).collect() };
    let sizes: [(i64, Option<usize>); 5] =
        [(1, Some(10)), (2, Some(100 << 10)), (3, Some(5 << 20)), (4, None), (5, Some(0))];
    client
        .batch_execute(
            "CREATE TABLE docs (id bigint PRIMARY KEY, name text, body bytea, v vector(2));
             CREATE TABLE files (id bigint, body bytea, name text)",
        )
        .await
        .unwrap();
    for (id, size) in sizes {
        let body = size.map(|s| value(id, s));
        for table in ["docs", "files"] {
            let sql = if table == "docs" {
                "INSERT INTO docs VALUES ($1, 'doc ' || $1::text, $2, ('[' || $1::text || ', 1]')::vector(2))"
            } else {
                "INSERT INTO files VALUES ($1, $2, 'file ' || $1::text)"
            };
            client.execute(sql, &[&id, &body]).await.map_err(|e| describe(&e)).expect("insert bytea");
        }
    }
    client.batch_execute("VACUUM docs").await.map_err(|e| describe(&e)).expect("vacuum");

    for table in ["docs", "files"] {
        let all = client
            .query(&format!("SELECT id, body, length(body) FROM {table} ORDER BY id"), &[])
            .await
            .map_err(|e| describe(&e))
            .expect("scan");
        assert_eq!(all.len(), sizes.len());
        for (row, (id, size)) in all.iter().zip(sizes) {
            assert_eq!(row.get::<_, i64>(0), id);
            assert_eq!(row.get::<_, Option<Vec<u8>>>(1), size.map(|s| value(id, s)), "{table} row {id}");
            assert_eq!(row.get::<_, Option<i32>>(2), size.map(|s| s as i32));
        }
        for (id, size) in sizes {
            let one = client
                .query_one(&format!("SELECT body FROM {table} WHERE id = $1"), &[&id])
                .await
                .map_err(|e| describe(&e))
                .expect("lookup");
            assert_eq!(one.get::<_, Option<Vec<u8>>>(0), size.map(|s| value(id, s)), "{table} lookup {id}");
        }
        let names = client
            .query(&format!("SELECT name FROM {table} WHERE length(body) > 1000 ORDER BY id"), &[])
            .await
            .unwrap();
        let names: Vec<String> = names.iter().map(|r| r.get(0)).collect();
        let kind = &table[..table.len() - 1];
        assert_eq!(names, [format!("{kind} 2"), format!("{kind} 3")]);
    }
    // Nearest neighbours with their blobs: an exact search, then one in an index.
    for index in ["", "CREATE INDEX ON docs USING hnsw (v vector_l2_ops)"] {
        client.batch_execute(index).await.unwrap();
        let near = client
            .query("SELECT id, body FROM docs ORDER BY v <-> '[3.2, 1]' LIMIT 2", &[])
            .await
            .map_err(|e| describe(&e))
            .expect("knn");
        assert_eq!(near[0].get::<_, i64>(0), 3);
        assert_eq!(near[0].get::<_, Option<Vec<u8>>>(1), Some(value(3, 5 << 20)), "{index}");
        assert_eq!(near[1].get::<_, Option<Vec<u8>>>(1), None, "row 4's NULL");
    }
    // An UPDATE: a change row over a base row (docs), the whole base rewritten (files).
    for table in ["docs", "files"] {
        client
            .execute(&format!("UPDATE {table} SET body = substring(body from 1 for 5) WHERE id = 3"), &[])
            .await
            .map_err(|e| describe(&e))
            .expect("update");
        let row = client.query_one(&format!("SELECT body FROM {table} WHERE id = 3"), &[]).await.unwrap();
        assert_eq!(row.get::<_, Vec<u8>>(0), value(3, 5));
        let row = client.query_one(&format!("SELECT body FROM {table} WHERE id = 2"), &[]).await.unwrap();
        assert_eq!(row.get::<_, Vec<u8>>(0), value(2, 100 << 10));
    }
    client.batch_execute("VACUUM docs").await.unwrap();
    let row = client.query_one("SELECT sum(length(body)) FROM docs", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 10 + (100 << 10) + 5);

    // A bytea column added later is a plain binary column in the base, beside the blob.
    client
        .batch_execute(
            "ALTER TABLE files ADD COLUMN thumb bytea;
             INSERT INTO files VALUES (6, '\\x0102', 'file 6', '\\x0a0b0c')",
        )
        .await
        .map_err(|e| describe(&e))
        .expect("add a bytea column");
    let row = client.query_one("SELECT body, thumb FROM files WHERE id = 6", &[]).await.unwrap();
    assert_eq!(row.get::<_, Vec<u8>>(0), [1, 2]);
    assert_eq!(row.get::<_, Vec<u8>>(1), [10, 11, 12]);

    // The 5 MiB value was written to both bases; their data files hold less than one
    // copy: the values are in blob files beside them.
    let (data, blobs) = lance_file_bytes(&server.data);
    assert!(data < 1 << 20, "data files: {data} bytes");
    assert!(blobs > 2 * (5 << 20), "blob files: {blobs} bytes");
}
