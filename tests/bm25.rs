//! BM25 full-text search through a real driver: `CREATE INDEX ... USING bm25`, `@@@`,
//! `bm25_score`, the top-k search against an exact scoring of every match, filters that
//! never empty the top k, the query language, scores through joins, CTEs and windows,
//! errors, and freshness under merge-on-read (writes searchable at once, scores equal
//! before and after `VACUUM`, the index after a restart).

use std::collections::HashMap;

use tarn_tests::{explain, TestServer};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

const WORDS: [&str; 24] = [
    "river", "stone", "forest", "quick", "brown", "fox", "lazy", "dog", "planet", "planning", "harbor",
    "lantern", "winter", "garden", "copper", "silver", "meadow", "thunder", "valley", "ember", "glacier",
    "orchard", "falcon", "canyon",
];

/// Document `i`: eight words picked by a fixed sequence, each word's frequency skewed so
/// scores differ (`river` is in most documents, `falcon` and `glacier` in about 30%;
/// the last words of the list in none).
fn text_of(i: u64) -> String {
    let mut state = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..8)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = (state >> 33) as usize;
            // Squared: early words are common, late ones rare.
            WORDS[(r % 24) * (r % 24) / 24]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn load(client: &Client, table: &str, rows: std::ops::Range<u64>) {
    let values: Vec<String> =
        rows.map(|i| format!("({i}, '{}', {}, 'title {}')", text_of(i), i % 100, i % 7)).collect();
    for chunk in values.chunks(500) {
        client.batch_execute(&format!("INSERT INTO {table} VALUES {}", chunk.join(", "))).await.unwrap();
    }
}

/// `(id, score)` rows of a query.
async fn scored(client: &Client, sql: &str) -> Vec<(i64, f32)> {
    client.query(sql, &[]).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect()
}

async fn ids(client: &Client, sql: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = client.query(sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    ids.sort_unstable();
    ids
}

async fn error_code(client: &Client, sql: &str) -> SqlState {
    let error = client.simple_query(sql).await.expect_err(sql);
    error.code().unwrap_or_else(|| panic!("{sql}: {error}")).clone()
}

/// The ids whose text has `word` (the tokenizer's `default`: words as written).
fn having(rows: std::ops::Range<u64>, word: &str) -> Vec<i64> {
    rows.filter(|&i| text_of(i).split(' ').any(|w| w == word)).map(|i| i as i64).collect()
}

/// The top-k search must return the k best of the exact scoring of every match (the
/// same scores), under no filter and filters keeping 10%, 1% and fewer rows.
async fn check_top_k(client: &Client, table: &str, query: &str, filter: &str) {
    let all = scored(
        client,
        &format!(
            "SELECT id, bm25_score(body, '{query}') AS s FROM {table} WHERE body @@@ '{query}' {filter} \
             ORDER BY s DESC, id"
        ),
    )
    .await;
    let top = scored(
        client,
        &format!(
            "SELECT id, bm25_score(body, '{query}') AS s FROM {table} WHERE body @@@ '{query}' {filter} \
             ORDER BY s DESC LIMIT 10"
        ),
    )
    .await;
    assert!(!all.is_empty() || !filter.is_empty(), "{query} matches nothing: a vacuous check");
    assert_eq!(top.len(), all.len().min(10), "{query} {filter}: {top:?} against {all:?}");
    let exact: HashMap<i64, f32> = all.iter().copied().collect();
    for (i, (id, score)) in top.iter().enumerate() {
        assert_eq!(exact.get(id), Some(score), "{query} {filter}: row {id}");
        assert_eq!(*score, all[i].1, "{query} {filter}: rank {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_match_an_exact_scoring_and_keep_k_rows_under_filters() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE docs (id BIGINT PRIMARY KEY, body TEXT, bucket INT, title TEXT)")
        .await
        .unwrap();
    load(&client, "docs", 0..3000).await;
    client.batch_execute("CREATE INDEX docs_text ON docs USING bm25 (body, title)").await.unwrap();
    let indexes = client
        .query_one("SELECT method, segments, documents FROM tarn_indexes WHERE index_name = 'docs_text'", &[])
        .await
        .unwrap();
    assert_eq!(indexes.get::<_, &str>(0), "bm25");
    assert_eq!(indexes.get::<_, i32>(1), 1);
    assert_eq!(indexes.get::<_, i64>(2), 3000);

    // Matches are the documents with the word.
    for word in ["falcon", "glacier", "river", "stone"] {
        let found = ids(&client, &format!("SELECT id FROM docs WHERE body @@@ '{word}'")).await;
        assert_eq!(found, having(0..3000, word), "{word}");
    }
    for query in ["falcon", "meadow glacier", "river stone falcon", "\"quick brown\"", "+river -stone"] {
        for filter in ["", "AND bucket < 10", "AND bucket = 7", "AND bucket = 7 AND id < 1000"] {
            check_top_k(&client, "docs", query, filter).await;
        }
    }
    // A selective filter still fills the top k when k rows qualify.
    let one_percent = client
        .query("SELECT id FROM docs WHERE body @@@ 'river' AND bucket = 3 ORDER BY bm25_score(body, 'river') DESC LIMIT 10", &[])
        .await
        .unwrap();
    let qualifying = having(0..3000, "river").into_iter().filter(|i| i % 100 == 3).count();
    assert_eq!(one_percent.len(), qualifying.min(10));
    assert!(qualifying >= 10, "the corpus has {qualifying} rows for the 1% filter");

    let plan = explain(
        &client,
        "SELECT id FROM docs WHERE body @@@ 'river' AND bucket = 3 ORDER BY bm25_score(body, 'river') DESC LIMIT 10",
    )
    .await;
    assert!(plan.contains("TarnBm25Exec: mode=topk, index=docs_text, k=10"), "{plan}");
    assert!(plan.contains("prefilter=bucket = Int32(3)"), "{plan}");

    // The query language.
    let phrase = ids(&client, "SELECT id FROM docs WHERE body @@@ '\"quick brown\"'").await;
    let expected: Vec<i64> =
        (0..3000).filter(|&i| text_of(i).contains("quick brown")).map(|i| i as i64).collect();
    assert_eq!(phrase, expected);
    let not = ids(&client, "SELECT id FROM docs WHERE body @@@ 'falcon AND NOT river'").await;
    let expected: Vec<i64> = having(0..3000, "falcon")
        .into_iter()
        .filter(|i| !text_of(*i as u64).split(' ').any(|w| w == "river"))
        .collect();
    assert_eq!(not, expected);
    let prefix = ids(&client, "SELECT id FROM docs WHERE body @@@ 'plan*'").await;
    let mut expected = having(0..3000, "planet");
    expected.extend(having(0..3000, "planning"));
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(prefix, expected);
    let fuzzy = ids(&client, "SELECT id FROM docs WHERE body @@@ 'falcom~1'").await;
    assert_eq!(fuzzy, having(0..3000, "falcon"));
    let field = ids(&client, "SELECT id FROM docs WHERE body @@@ 'title:3'").await;
    assert_eq!(field, (0..3000).filter(|i| i % 7 == 3).collect::<Vec<i64>>());
    let boosted = scored(
        &client,
        "SELECT id, bm25_score(body, 'falcon^3 river') FROM docs WHERE body @@@ 'falcon^3 river' \
         ORDER BY 2 DESC LIMIT 1",
    )
    .await;
    assert!(text_of(boosted[0].0 as u64).contains("falcon"), "{boosted:?}");

    // Snippets: the matches between tags, ParadeDB's or one's own.
    let snippets = client
        .query(
            "SELECT id, snippet(body, 'falcon'), snippet(body, 'falcon river', '[', ']', 20), body FROM docs \
             WHERE body @@@ 'falcon' ORDER BY bm25_score(body, 'falcon') DESC LIMIT 5",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(snippets.len(), 5);
    for row in &snippets {
        let (plain, tagged, body): (&str, &str, &str) = (row.get(1), row.get(2), row.get(3));
        assert!(plain.contains("<b>falcon</b>"), "{plain}");
        assert_eq!(plain.replace("<b>", "").replace("</b>", ""), body.trim());
        assert!(tagged.contains("[falcon]") || tagged.contains("[river]"), "{tagged}");
        assert!(tagged.replace(['[', ']'], "").len() <= 20, "{tagged}");
    }

    // Scores are columns: through a join, a CTE, a window, a subquery.
    client.batch_execute("CREATE TABLE labels (id BIGINT, label TEXT)").await.unwrap();
    client.batch_execute("INSERT INTO labels SELECT id, 'l' || id FROM docs WHERE id % 2 = 0").await.unwrap();
    let direct =
        scored(&client, "SELECT id, bm25_score(body, 'glacier') FROM docs WHERE body @@@ 'glacier'").await;
    let direct: HashMap<i64, f32> = direct.into_iter().collect();
    let joined = scored(
        &client,
        "SELECT d.id, bm25_score(d.body, 'glacier') FROM docs d JOIN labels l ON l.id = d.id WHERE d.body @@@ 'glacier'",
    )
    .await;
    assert_eq!(joined.len(), direct.keys().filter(|id| *id % 2 == 0).count());
    for (id, score) in &joined {
        assert_eq!(direct[id], *score);
    }
    let windowed = client
        .query(
            "WITH s AS (SELECT id, bm25_score(body, 'glacier') AS score FROM docs WHERE body @@@ 'glacier') \
             SELECT id, score, rank() OVER (ORDER BY score DESC) FROM (SELECT * FROM s) sub",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(windowed.len(), direct.len());
    for row in &windowed {
        assert_eq!(direct[&row.get::<_, i64>(0)], row.get::<_, f32>(1));
    }

    // The plain-SQL RRF form: each CTE is one top-k search.
    let rrf = "WITH a AS (SELECT id, ROW_NUMBER() OVER (ORDER BY bm25_score(body, 'falcon') DESC) AS r \
                 FROM docs WHERE body @@@ 'falcon' ORDER BY bm25_score(body, 'falcon') DESC LIMIT 20), \
               b AS (SELECT id, ROW_NUMBER() OVER (ORDER BY bm25_score(body, 'glacier') DESC) AS r \
                 FROM docs WHERE body @@@ 'glacier' ORDER BY bm25_score(body, 'glacier') DESC LIMIT 20) \
               SELECT COALESCE(a.id, b.id) AS id, \
                 COALESCE(1.0 / (60 + a.r), 0.0) + COALESCE(1.0 / (60 + b.r), 0.0) AS score \
               FROM a FULL OUTER JOIN b ON a.id = b.id ORDER BY score DESC, id LIMIT 10";
    let plan = explain(&client, rrf).await;
    assert_eq!(plan.matches("TarnBm25Exec: mode=topk").count(), 2, "{plan}");
    assert_eq!(client.query(rrf, &[]).await.unwrap().len(), 10);

    // Parameters, as drivers send them.
    let prepared = client
        .prepare("SELECT id FROM docs WHERE body @@@ $1 AND bucket < $2 ORDER BY bm25_score(body, $1) DESC LIMIT $3")
        .await
        .unwrap();
    let rows = client.query(&prepared, &[&"falcon", &50i32, &5i64]).await.unwrap();
    assert_eq!(rows.len(), 5);
    let rows = client.query(&prepared, &[&"glacier", &50i32, &7i64]).await.unwrap();
    assert_eq!(rows.len(), 7);

    // Errors leave the session usable.
    assert_eq!(
        error_code(&client, "SELECT id FROM docs WHERE body @@@ 'a AND ('").await,
        SqlState::SYNTAX_ERROR
    );
    assert_eq!(
        error_code(&client, "SELECT id FROM docs WHERE bucket @@@ 'x'").await,
        SqlState::UNDEFINED_OBJECT
    );
    assert_eq!(
        error_code(&client, "SELECT id FROM docs WHERE body @@@ 'x' OR id = 1").await,
        SqlState::FEATURE_NOT_SUPPORTED
    );
    assert_eq!(
        error_code(&client, "SELECT bm25_score(body, 'x') FROM docs").await,
        SqlState::FEATURE_NOT_SUPPORTED
    );
    assert_eq!(
        error_code(&client, "CREATE INDEX bad ON docs USING bm25 (body) WITH (tokenizer = 'klingon')").await,
        SqlState::INVALID_PARAMETER_VALUE
    );
    assert_eq!(
        error_code(&client, "CREATE INDEX bad ON docs USING bm25 (bucket)").await,
        SqlState::FEATURE_NOT_SUPPORTED
    );
    assert_eq!(ids(&client, "SELECT id FROM docs WHERE body @@@ 'falcon'").await, having(0..3000, "falcon"));
    server.stop().await;
}

/// `kv` (with a primary key) and `log` (without), each with `rows` and a bm25 index on
/// `body`.
async fn kv_and_log(client: &Client, rows: std::ops::Range<u64>) {
    client
        .batch_execute(
            "CREATE TABLE kv (id BIGINT PRIMARY KEY, body TEXT, bucket INT, title TEXT);
             CREATE TABLE log (id BIGINT, body TEXT, bucket INT, title TEXT)",
        )
        .await
        .unwrap();
    for table in ["kv", "log"] {
        load(client, table, rows.clone()).await;
        client
            .batch_execute(&format!("CREATE INDEX {table}_body ON {table} USING bm25 (body)"))
            .await
            .unwrap();
    }
}

/// The scores of a query, by id, all matches.
async fn scores_of(client: &Client, table: &str, query: &str) -> Vec<(i64, f32)> {
    let mut rows = scored(
        client,
        &format!("SELECT id, bm25_score(body, '{query}') FROM {table} WHERE body @@@ '{query}'"),
    )
    .await;
    rows.sort_by_key(|r| r.0);
    rows
}

fn assert_close(a: &[(i64, f32)], b: &[(i64, f32)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?} against {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.0, y.0, "{what}");
        assert!((x.1 - y.1).abs() <= 1e-5 * x.1.abs().max(1.0), "{what}: {x:?} against {y:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_searchable_at_once_and_scores_survive_vacuum_and_restart() {
    let server = TestServer::start().await;
    let client = server.client().await;
    kv_and_log(&client, 0..1000).await;
    for table in ["kv", "log"] {
        // An insert, an update (old text no longer matches, new text does), a delete.
        client
            .batch_execute(&format!(
                "INSERT INTO {table} VALUES (5000, 'zephyr falcon zephyr', 1, 't');
                 UPDATE {table} SET body = 'zephyr only' WHERE id = 10;
                 DELETE FROM {table} WHERE id = 11"
            ))
            .await
            .unwrap();
        let zephyr = ids(&client, &format!("SELECT id FROM {table} WHERE body @@@ 'zephyr'")).await;
        assert_eq!(zephyr, vec![10, 5000], "{table}");
        let old = text_of(10);
        let first = old.split(' ').next().unwrap();
        let found = ids(&client, &format!("SELECT id FROM {table} WHERE body @@@ '{first}'")).await;
        assert!(!found.contains(&10) && !found.contains(&11), "{table}: {first}");
        let mut expected = having(0..1000, first);
        expected.retain(|&i| i != 10 && i != 11);
        assert_eq!(found, expected, "{table}");
    }
    // COPY is searchable by the next statement. (A keyless table's UPDATE and DELETE
    // rewrote its base, and so its index: the copied rows are the only ones in no segment.)
    for table in ["kv", "log"] {
        use futures::SinkExt;
        let sink = client.copy_in::<_, bytes::Bytes>(&format!("COPY {table} FROM STDIN")).await.unwrap();
        let mut sink = Box::pin(sink);
        sink.send(bytes::Bytes::from_static(b"6000\tcopied zephyr words\t2\tt\n")).await.unwrap();
        sink.as_mut().finish().await.unwrap();
        assert_eq!(
            ids(&client, &format!("SELECT id FROM {table} WHERE body @@@ 'zephyr'")).await,
            vec![10, 5000, 6000]
        );
    }

    let before: Vec<Vec<(i64, f32)>> = {
        let mut all = Vec::new();
        for table in ["kv", "log"] {
            for query in ["zephyr", "falcon river", "glacier"] {
                all.push(scores_of(&client, table, query).await);
            }
        }
        all
    };
    for table in ["kv", "log"] {
        client.batch_execute(&format!("VACUUM {table}")).await.unwrap();
        let segments: i32 = client
            .query_one(&format!("SELECT segments FROM tarn_indexes WHERE table_name = '{table}'"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(segments, 2, "{table}: VACUUM indexes the new rows in a segment of their own");
    }
    let mut i = 0;
    for table in ["kv", "log"] {
        for query in ["zephyr", "falcon river", "glacier"] {
            let after = scores_of(&client, table, query).await;
            assert_close(&before[i], &after, &format!("{table} {query} after VACUUM"));
            i += 1;
        }
    }
    drop(client);
    let server = server.restart().await;
    let client = server.client().await;
    let mut i = 0;
    for table in ["kv", "log"] {
        for query in ["zephyr", "falcon river", "glacier"] {
            let after = scores_of(&client, table, query).await;
            assert_close(&before[i], &after, &format!("{table} {query} after a restart"));
            i += 1;
        }
    }
    // Writes after the restart, and a dropped index.
    client.batch_execute("INSERT INTO kv VALUES (7000, 'zephyr again', 3, 't')").await.unwrap();
    assert_eq!(ids(&client, "SELECT id FROM kv WHERE body @@@ 'zephyr'").await, vec![10, 5000, 6000, 7000]);
    client.batch_execute("DROP INDEX kv_body").await.unwrap();
    assert_eq!(
        error_code(&client, "SELECT id FROM kv WHERE body @@@ 'zephyr'").await,
        SqlState::UNDEFINED_OBJECT
    );
    server.stop().await;
}

/// A deterministic 3-dimensional vector per row.
fn vector_of(i: u64) -> [f32; 3] {
    let x = i as f32;
    [(x * 0.37).sin(), (x * 0.11).cos(), ((x * 0.07).sin() + 1.5) / 2.0]
}

fn vector_text(v: &[f32]) -> String {
    format!("[{}]", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_search_fuses_the_two_searches() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE hy (id BIGINT PRIMARY KEY, body TEXT, category INT, emb VECTOR(3))")
        .await
        .unwrap();
    let values: Vec<String> = (0..1500u64)
        .map(|i| {
            // Lengths vary so that BM25 scores rarely tie.
            let text = text_of(i);
            let words: Vec<&str> = text.split(' ').take(3 + (i % 6) as usize).collect();
            format!("({i}, '{}', {}, '{}')", words.join(" "), i % 10, vector_text(&vector_of(i)))
        })
        .collect();
    for chunk in values.chunks(500) {
        client.batch_execute(&format!("INSERT INTO hy VALUES {}", chunk.join(", "))).await.unwrap();
    }
    client
        .batch_execute(
            "CREATE INDEX hy_text ON hy USING bm25 (body);
             CREATE INDEX hy_emb ON hy USING hnsw (emb vector_cosine_ops)",
        )
        .await
        .unwrap();
    let query = vector_text(&[0.2, 0.9, 0.4]);

    for filter in ["", "WHERE category = 3"] {
        let sql = format!(
            "SELECT id, score, text_rank, vector_rank, category FROM hybrid_search('hy', 'falcon river', '{query}', 10) {filter} \
             ORDER BY score DESC, id"
        );
        let rows = client.query(&sql, &[]).await.unwrap();
        assert_eq!(rows.len(), 10, "{sql}");
        // The branches' own results, as a user would run them.
        let and = if filter.is_empty() { String::new() } else { " AND category = 3".into() };
        let text: Vec<f32> = client
            .query(
                &format!(
                    "SELECT bm25_score(body, 'falcon river') AS s FROM hy WHERE body @@@ 'falcon river'{and} \
                     ORDER BY s DESC LIMIT 60"
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let vector: Vec<f64> = client
            .query(&format!("SELECT emb <=> '{query}' AS d FROM hy {filter} ORDER BY d LIMIT 60"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut previous = f64::INFINITY;
        for row in &rows {
            let (id, score): (i64, f64) = (row.get(0), row.get(1));
            let (text_rank, vector_rank): (Option<i64>, Option<i64>) = (row.get(2), row.get(3));
            if !filter.is_empty() {
                assert_eq!(row.get::<_, i32>(4), 3);
            }
            // The score is reciprocal-rank fusion of the ranks shown.
            let expected = text_rank.map_or(0.0, |r| 1.0 / (60.0 + r as f64))
                + vector_rank.map_or(0.0, |r| 1.0 / (60.0 + r as f64));
            assert!((score - expected).abs() < 1e-9, "{id}: {score} against {expected}");
            assert!(score <= previous);
            previous = score;
            // Each rank is the row's place in its branch's own result.
            if let Some(r) = text_rank {
                let own: f32 = client
                    .query_one(&format!("SELECT bm25_score(body, 'falcon river') FROM hy WHERE body @@@ 'falcon river' AND id = {id}"), &[])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(own, text[r as usize - 1], "{id}: text rank {r}");
            }
            if let Some(r) = vector_rank {
                let own: f64 = client
                    .query_one(&format!("SELECT emb <=> '{query}' FROM hy WHERE id = {id}"), &[])
                    .await
                    .unwrap()
                    .get(0);
                assert!((own - vector[r as usize - 1]).abs() < 1e-6, "{id}: vector rank {r}");
            }
        }
        // The best fused score is the best either branch's first row can have.
        assert!(rows[0].get::<_, f64>(1) >= 1.0 / 61.0);
        let plan = explain(&client, &sql).await;
        assert!(plan.contains("TarnBm25Exec: mode=topk"), "{plan}");
        assert!(plan.contains("TarnKnnExec"), "{plan}");
    }

    // Weighted fusion, parameters.
    let weighted = client
        .query(
            &format!(
                "SELECT id, score FROM hybrid_search('hy', 'glacier', '{query}', 5, fusion => 'weighted', text_weight => 0.3)"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(weighted.len(), 5);
    for row in &weighted {
        let score: f64 = row.get(1);
        assert!((0.0..=1.0).contains(&score), "{score}");
    }
    let prepared = client.prepare("SELECT id FROM hybrid_search('hy', $1, $2, $3)").await.unwrap();
    let rows = client.query(&prepared, &[&"falcon", &query, &7i64]).await.unwrap();
    assert_eq!(rows.len(), 7);
    // With k written in, the call keeps its plan: each execute's text and vector give
    // what the same call with them written in gives.
    let kept = client.prepare("SELECT id, score FROM hybrid_search('hy', $1, $2, 6)").await.unwrap();
    for (text, vector) in
        [("falcon", query.clone()), ("glacier", vector_text(&[0.9, 0.1, 0.3])), ("falcon", query.clone())]
    {
        let got: Vec<(i64, f64)> = client
            .query(&kept, &[&text, &vector])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let literal = format!("SELECT id, score FROM hybrid_search('hy', '{text}', '{vector}', 6)");
        let want: Vec<(i64, f64)> =
            client.query(literal.as_str(), &[]).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(got, want, "{text}");
        assert_eq!(got.len(), 6);
    }
    assert_eq!(
        error_code(&client, &format!("SELECT * FROM hybrid_search('hy', 'x', '{query}', 5, colour => 1)"))
            .await,
        SqlState::INVALID_PARAMETER_VALUE
    );
    server.stop().await;
}

/// A Chinese corpus of 420 sentences written for this test (every subject, verb,
/// object and ending combined), indexed with `tokenizer = 'chinese'`: a word is found
/// inside unsegmented text wherever it stands, a string that is not a word is not, and
/// rows in the change store are segmented as indexed ones are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chinese_words_are_found_inside_unsegmented_text() {
    const SUBJECTS: [&str; 6] = ["小明", "王老师", "我们的团队", "这家公司", "研究人员", "学生们"];
    const VERBS: [&str; 5] = ["正在研究", "昨天发布了", "打算购买", "非常喜欢", "重新设计了"];
    const OBJECTS: [&str; 7] = [
        "向量数据库",
        "全文检索系统",
        "人工智能模型",
        "新能源汽车",
        "智能手机",
        "机器学习平台",
        "北京的地铁线路",
    ];
    const ENDINGS: [&str; 2] = ["。", "，但是价格太高。"];
    let mut sentences = Vec::new();
    for s in SUBJECTS {
        for v in VERBS {
            for o in OBJECTS {
                for e in ENDINGS {
                    sentences.push(format!("{s}{v}{o}{e}"));
                }
            }
        }
    }
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE zh (id BIGINT PRIMARY KEY, body TEXT)").await.unwrap();
    let insert = |range: std::ops::Range<usize>| {
        let values: Vec<String> = range.map(|i| format!("({i}, '{}')", sentences[i])).collect();
        format!("INSERT INTO zh VALUES {}", values.join(", "))
    };
    // Most rows in the index, the last 60 in the change store.
    client.batch_execute(&insert(0..360)).await.unwrap();
    client
        .batch_execute("VACUUM zh; CREATE INDEX zh_body ON zh USING bm25 (body) WITH (tokenizer = 'chinese')")
        .await
        .unwrap();
    client.batch_execute(&insert(360..420)).await.unwrap();

    for word in [
        "数据库",
        "检索",
        "人工智能",
        "智能",
        "汽车",
        "手机",
        "学习",
        "地铁",
        "价格",
        "研究",
        "老师",
        "团队",
        "公司",
    ] {
        let expected: Vec<i64> =
            (0..sentences.len()).filter(|&i| sentences[i].contains(word)).map(|i| i as i64).collect();
        assert!(!expected.is_empty() && expected.len() < sentences.len(), "{word}");
        let found = ids(&client, &format!("SELECT id FROM zh WHERE body @@@ '{word}'")).await;
        assert_eq!(found, expected, "the sentences with {word}");
        let top = ids(
            &client,
            &format!(
                "SELECT id FROM zh WHERE body @@@ '{word}' ORDER BY bm25_score(body, '{word}') DESC LIMIT 5"
            ),
        )
        .await;
        assert_eq!(top.len(), 5, "{word}: top 5");
    }
    // Two words: both must be there with AND.
    let expected: Vec<i64> = (0..sentences.len())
        .filter(|&i| sentences[i].contains("汽车") && sentences[i].contains("价格"))
        .map(|i| i as i64)
        .collect();
    assert_eq!(ids(&client, "SELECT id FROM zh WHERE body @@@ '汽车 AND 价格'").await, expected);
    // Strings across word boundaries are not terms (an n-gram tokenizer would find
    // these; jieba's dictionary has none of them as a word).
    for piece in ["能汽", "量数", "索系", "能模"] {
        assert!(
            ids(&client, &format!("SELECT id FROM zh WHERE body @@@ '{piece}'")).await.is_empty(),
            "{piece}"
        );
    }
}

/// An index's segments and documents, from `tarn_indexes`.
async fn segments_of(client: &Client, index: &str) -> (i32, i64) {
    let row = client
        .query_one("SELECT segments, documents FROM tarn_indexes WHERE index_name = $1", &[&index])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Each compaction adds a segment; the tenth of a size tier merges the ten into one.
/// Nothing moves: the same rows match (an updated row only by its new text) with the
/// same scores, since a merge keeps every document and so the statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_merge_without_moving_scores() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE m (id BIGINT PRIMARY KEY, body TEXT, bucket INT, title TEXT) WITH (auto_compaction = off)")
        .await
        .unwrap();
    load(&client, "m", 0..20).await;
    client.batch_execute("CREATE INDEX m_body ON m USING bm25 (body)").await.unwrap();
    for round in 1..9 {
        load(&client, "m", round * 20..(round + 1) * 20).await;
        if round == 5 {
            client.batch_execute("UPDATE m SET body = 'falcon falcon' WHERE id = 3").await.unwrap();
        }
        client.batch_execute("VACUUM m").await.unwrap();
    }
    assert_eq!(segments_of(&client, "m_body").await.0, 9, "one segment per compaction");
    load(&client, "m", 180..200).await;
    let text = |i: u64| if i == 3 { "falcon falcon".to_string() } else { text_of(i) };
    let queries = ["river", "falcon", "glacier stone", "brown fox"];
    let mut before = Vec::new();
    for query in queries {
        before.push(scores_of(&client, "m", query).await);
    }
    client.batch_execute("VACUUM m").await.unwrap();
    // 10 of 20 documents, plus the updated row's new one: one merged segment.
    assert_eq!(segments_of(&client, "m_body").await, (1, 201), "ten segments merged into one");
    for (query, before) in queries.iter().zip(&before) {
        assert_close(&scores_of(&client, "m", query).await, before, query);
    }
    for word in ["river", "falcon", "stone"] {
        let expected: Vec<i64> =
            (0..200).filter(|&i| text(i).split(' ').any(|w| w == word)).map(|i| i as i64).collect();
        assert_eq!(
            ids(&client, &format!("SELECT id FROM m WHERE body @@@ '{word}'")).await,
            expected,
            "{word}"
        );
    }
}

/// While `CREATE INDEX ... USING bm25` indexes rows, another session sees the index in
/// `tarn_indexes`, not yet built, with its stage and progress; after, built, with no
/// stage, and its segments and documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tarn_indexes_shows_a_bm25_build_under_way() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE big (id BIGINT, body TEXT, bucket INT, title TEXT)").await.unwrap();
    load(&client, "big", 0..60_000).await;
    let builder = server.client().await;
    let create = tokio::spawn(async move {
        builder.batch_execute("CREATE INDEX big_body ON big USING bm25 (body, title)").await.unwrap();
    });
    let mut seen = Vec::new();
    while !create.is_finished() {
        let rows = client
            .query(
                "SELECT built, build_stage, build_progress FROM tarn_indexes WHERE index_name = 'big_body'",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = rows.first() {
            let (built, stage, progress): (bool, Option<String>, Option<String>) =
                (row.get(0), row.get(1), row.get(2));
            if !built {
                seen.push((stage.expect("a build has a stage"), progress.expect("and a progress")));
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    create.await.unwrap();
    assert!(
        seen.iter().any(|(stage, progress)| stage == "index_rows" && progress.ends_with("/60000 documents")),
        "the build's stages as seen: {seen:?}"
    );
    let row = client
        .query_one(
            "SELECT built, build_stage, segments, documents FROM tarn_indexes WHERE index_name = 'big_body'",
            &[],
        )
        .await
        .unwrap();
    let (built, stage, segments, documents): (bool, Option<String>, i32, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert!(built && stage.is_none(), "{built} {stage:?}");
    assert_eq!((segments, documents), (1, 60_000));
}

/// Inside a transaction, a search sees the transaction's own writes (new rows found, an
/// updated row only by its new text, a deleted row never), ranked as once committed;
/// a rollback leaves no trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_searches_its_own_writes() {
    let server = TestServer::start().await;
    let client = server.client().await;
    kv_and_log(&client, 0..500).await;
    load(&client, "kv", 500..600).await; // in the change store
    let falcons = having(0..600, "falcon");
    let (gone, changed) = (falcons[0], falcons[falcons.len() - 1]);
    assert!(changed >= 500, "a change-store row is updated");

    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO kv VALUES (1000, 'zebra river', 1, 't'), (1001, 'zebra', 2, 't');
             UPDATE kv SET body = 'zebra zebra' WHERE id = 7;
             UPDATE kv SET body = 'quiet zebra' WHERE id = {changed};
             DELETE FROM kv WHERE id = {gone}"
        ))
        .await
        .unwrap();
    let zebras = vec![7, changed, 1000, 1001];
    assert_eq!(ids(&client, "SELECT id FROM kv WHERE body @@@ 'zebra'").await, zebras);
    let mut expected: Vec<i64> =
        falcons.iter().copied().filter(|&i| i != gone && i != changed && i != 7).collect();
    expected.sort_unstable();
    assert_eq!(
        ids(&client, "SELECT id FROM kv WHERE body @@@ 'falcon'").await,
        expected,
        "falcon in the transaction"
    );
    let top = scored(
        &client,
        "SELECT id, bm25_score(body, 'zebra') FROM kv WHERE body @@@ 'zebra' AND id <> 1001 \
         ORDER BY bm25_score(body, 'zebra') DESC, id LIMIT 3",
    )
    .await;
    assert_eq!(top.len(), 3, "{top:?}");
    assert_eq!(top[0].0, 7, "the densest zebra first: {top:?}");
    let inside = scores_of(&client, "kv", "zebra").await;
    // A keyless table: the search sees what a scan sees.
    client.batch_execute("INSERT INTO log VALUES (2000, 'zebra', 1, 't')").await.unwrap();
    assert_eq!(
        ids(&client, "SELECT id FROM log WHERE body @@@ 'zebra'").await,
        ids(&client, "SELECT id FROM log WHERE body LIKE '%zebra%'").await
    );
    client.batch_execute("COMMIT").await.unwrap();
    // Once committed, the same rows and scores, but for one document: inside, the
    // change-store row the transaction replaced still counted in the statistics (as
    // replaced base rows always do); committed, the bucket holds only the new one.
    let committed = scores_of(&client, "kv", "zebra").await;
    assert_eq!(
        committed.iter().map(|r| r.0).collect::<Vec<_>>(),
        inside.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    for (a, b) in committed.iter().zip(&inside) {
        assert!((a.1 - b.1).abs() < 1e-3 * a.1, "zebra scores once committed: {a:?} against {b:?}");
    }
    assert_eq!(ids(&client, "SELECT id FROM log WHERE body @@@ 'zebra'").await, vec![2000]);

    client
        .batch_execute("BEGIN; DELETE FROM kv WHERE id = 1000; INSERT INTO kv VALUES (1002, 'zebra', 1, 't')")
        .await
        .unwrap();
    assert_eq!(ids(&client, "SELECT id FROM kv WHERE body @@@ 'zebra'").await, vec![7, changed, 1001, 1002]);
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(ids(&client, "SELECT id FROM kv WHERE body @@@ 'zebra'").await, zebras);
}

/// `AS OF VERSION` searches the table as it was: the index's segments and change rows
/// of that version, with their statistics, after later updates, deletes and a
/// compaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_version_searches_the_table_as_it_was() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE h (id BIGINT PRIMARY KEY, body TEXT, bucket INT, title TEXT)")
        .await
        .unwrap();
    load(&client, "h", 0..300).await;
    client.batch_execute("CREATE INDEX h_body ON h USING bm25 (body)").await.unwrap();
    load(&client, "h", 300..400).await; // change rows at that version
    let version: i64 = client
        .query_one("SELECT max(version) FROM tarn_tables WHERE table_name = 'h'", &[])
        .await
        .unwrap()
        .get(0);
    let falcon = scores_of(&client, "h", "falcon").await;
    let falcons = having(0..400, "falcon");
    let gone: Vec<i64> = falcons.iter().copied().filter(|&i| i >= 5).step_by(10).collect();
    client
        .batch_execute(&format!(
            "UPDATE h SET body = 'zebra' WHERE id < 5; DELETE FROM h WHERE id IN ({}); VACUUM h",
            gone.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
        ))
        .await
        .unwrap();
    let as_of = |query: &str| format!("SELECT id FROM h AS OF VERSION {version} WHERE body @@@ '{query}'");
    assert_eq!(ids(&client, &as_of("falcon")).await, falcons);
    assert!(ids(&client, &as_of("zebra")).await.is_empty());
    assert_eq!(ids(&client, "SELECT id FROM h WHERE body @@@ 'zebra'").await, vec![0, 1, 2, 3, 4]);
    let now: Vec<i64> = falcons.iter().copied().filter(|i| *i >= 5 && !gone.contains(i)).collect();
    assert_eq!(ids(&client, "SELECT id FROM h WHERE body @@@ 'falcon'").await, now);
    let mut then = scored(
        &client,
        &format!(
            "SELECT id, bm25_score(body, 'falcon') FROM h AS OF VERSION {version} WHERE body @@@ 'falcon'"
        ),
    )
    .await;
    then.sort_by_key(|r| r.0);
    assert_close(&then, &falcon, "falcon scores as of the version");
    let top = ids(
        &client,
        &format!(
            "SELECT id FROM h AS OF VERSION {version} WHERE body @@@ 'falcon' AND bucket < 50 \
             ORDER BY bm25_score(body, 'falcon') DESC LIMIT 5"
        ),
    )
    .await;
    assert_eq!(top.len(), 5);
    let plan = explain(&client, &as_of("falcon")).await;
    assert!(plan.contains("TarnBm25Exec"), "{plan}");
}
