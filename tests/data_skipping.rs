//! Data skipping through a real driver: scalar indexes (`btree`, `bitmap`, `brin`,
//! `bloom`) and Z-order clustering must never change an answer, and must skip.
//!
//! Three tables get the same rows: `plain` (no index, no clustering: the reference),
//! `skipped` (indexes of every kind, clustered in Z-order) and `keyed` (the same, with a
//! primary key, so part of its rows are in the change store, updated or deleted after
//! the indexes were built). Seeded random predicates (equality, `IN`, ranges, `IS
//! NULL`, `AND`/`OR` of them) must return the same ids from all three, before and after
//! `CLUSTER`, and `EXPLAIN ANALYZE` must show rows skipped.
//!
//! `TARN_SKIPPING_SEED=n` replays a run.

use tarn_tests::rng::{env_u64, Rng};
use tarn_tests::{explain, TestServer};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

const ROWS: i64 = 40_000;
const KINDS: [&str; 5] = ["click", "view", "buy", "refund", "share"];

const COLUMNS: &str = "id BIGINT, user_id INT, ts BIGINT, kind TEXT, amount DOUBLE PRECISION";

/// Rows `lo..hi`: `user_id` of high cardinality, `ts` rising with the id, a few NULLs in
/// every column but the id.
fn rows_sql(table: &str, lo: i64, hi: i64) -> String {
    format!(
        "INSERT INTO {table} SELECT i, \
           CASE WHEN i % 101 = 0 THEN NULL ELSE ((i * 7919) % 5003)::int END, \
           CASE WHEN i % 211 = 0 THEN NULL ELSE i * 10 + (i * 13) % 7 END, \
           CASE WHEN i % 307 = 0 THEN NULL ELSE (ARRAY['click','view','buy','refund','share'])[1 + (i * 31) % 5] END, \
           CASE WHEN i % 401 = 0 THEN NULL ELSE ((i * 104729) % 100000)::double precision / 100 END \
         FROM generate_series({lo}, {hi} - 1) AS t(i)"
    )
}

async fn ids(client: &Client, table: &str, predicate: &str) -> Vec<i64> {
    let sql = format!("SELECT id FROM {table} WHERE {predicate} ORDER BY id");
    match client.query(&sql, &[]).await {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(e) => panic!("{sql}: {}", tarn_tests::describe(&e)),
    }
}

/// A random predicate over the indexed columns.
fn predicate(rng: &mut Rng) -> String {
    let one = |rng: &mut Rng| -> String {
        match rng.below(9) {
            0 => format!("user_id = {}", rng.range(0, 5003)),
            1 => {
                format!("user_id IN ({}, {}, {})", rng.range(0, 5003), rng.range(0, 5003), rng.range(0, 5003))
            }
            2 => {
                let lo = rng.range(0, 5003);
                format!("user_id BETWEEN {lo} AND {}", lo + rng.range(0, 40))
            }
            3 => {
                let lo = rng.range(0, ROWS * 10);
                format!("ts >= {lo} AND ts < {}", lo + rng.range(0, 3000))
            }
            4 => format!("ts = {}", rng.range(0, ROWS * 10)),
            5 => format!("kind = '{}'", rng.pick(&KINDS)),
            6 => format!("amount < {}", rng.range(0, 1000)),
            7 => ["user_id IS NULL", "ts IS NULL", "kind IS NULL", "amount IS NULL"][rng.below(4) as usize]
                .to_string(),
            _ => format!("kind IN ('{}', 'nope') AND amount >= {}", rng.pick(&KINDS), rng.range(0, 1000)),
        }
    };
    match rng.below(4) {
        0 => format!("({}) AND ({})", one(rng), one(rng)),
        1 => format!("({}) OR ({})", one(rng), one(rng)),
        _ => one(rng),
    }
}

async fn all_agree(client: &Client, rng: &mut Rng, queries: usize, seed: u64) {
    for _ in 0..queries {
        let p = predicate(rng);
        let expect = ids(client, "plain", &p).await;
        for table in ["skipped", "keyed"] {
            let got = ids(client, table, &p).await;
            assert_eq!(
                got,
                expect,
                "{table} WHERE {p}: {} ids, plain has {} (TARN_SKIPPING_SEED={seed})",
                got.len(),
                expect.len()
            );
        }
    }
}

/// `rows_read` and `rows_skipped` of the scan of `table` in an `EXPLAIN ANALYZE`.
async fn skipped(client: &Client, table: &str, sql: &str) -> (String, u64, u64) {
    let plan = explain(client, &format!("ANALYZE {sql}")).await;
    let scan = format!("TarnBaseScan: table={table},");
    let line = plan.lines().find(|l| l.contains(&scan)).unwrap_or_else(|| panic!("{sql}:\n{plan}"));
    let figure = |name: &str| -> u64 {
        let at =
            line.find(&format!("{name}=")).unwrap_or_else(|| panic!("no {name} in {line}")) + name.len() + 1;
        let text: String = line[at..].chars().take_while(|c| *c != ',' && *c != ']').collect();
        // DataFusion prints counts as `49.15 K`, `1.2 M`.
        let (number, scale) = match text.split_once(' ') {
            Some((n, "K")) => (n, 1e3),
            Some((n, "M")) => (n, 1e6),
            _ => (text.as_str(), 1.0),
        };
        (number.parse::<f64>().unwrap_or_else(|_| panic!("{name}={text} in {line}")) * scale) as u64
    };
    (line.to_string(), figure("rows_read"), figure("rows_skipped"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_and_clustering_skip_and_never_change_an_answer() {
    let seed = env_u64("TARN_SKIPPING_SEED", 0x5C1F_2026);
    let mut rng = Rng::new(seed);
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE plain ({COLUMNS}); \
             CREATE TABLE skipped ({COLUMNS}) WITH (cluster_by = 'zorder(user_id, ts)'); \
             CREATE TABLE keyed ({COLUMNS}, PRIMARY KEY (id)) WITH (cluster_by = 'zorder(user_id, ts)', auto_compaction = off); \
             {}; {}; {}",
            rows_sql("plain", 0, ROWS),
            rows_sql("skipped", 0, ROWS),
            rows_sql("keyed", 0, ROWS),
        ))
        .await
        .unwrap();
    for table in ["skipped", "keyed"] {
        client
            .batch_execute(&format!(
                "CREATE INDEX {table}_user ON {table} USING bloom (user_id) WITH (rows_per_zone = 256, false_positive_rate = 0.01); \
                 CREATE INDEX {table}_ts ON {table} USING brin (ts) WITH (rows_per_zone = 256); \
                 CREATE INDEX {table}_kind ON {table} USING bitmap (kind); \
                 CREATE INDEX ON {table} (amount)"
            ))
            .await
            .unwrap();
    }
    let listed = client
        .query(
            "SELECT index_name, method, lance_index, built FROM tarn_indexes WHERE table_name = 'keyed' ORDER BY index_name",
            &[],
        )
        .await
        .unwrap();
    let listed: Vec<(String, String, String, bool)> =
        listed.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert_eq!(
        listed,
        [
            ("keyed_amount_idx", "btree", "BTREE", true),
            ("keyed_kind", "bitmap", "BITMAP", true),
            ("keyed_ts", "brin", "ZONEMAP", true),
            ("keyed_user", "bloom", "BLOOMFILTER", true),
        ]
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d))
    );
    // Indexes on an unclustered table: every answer as without them.
    all_agree(&client, &mut rng, 60, seed).await;

    // Clustered: the rows in Z-order, the indexes built anew over them.
    client.batch_execute("CLUSTER skipped; VACUUM keyed (CLUSTER)").await.unwrap();
    all_agree(&client, &mut rng, 60, seed).await;
    let (line, read, skipped_rows) =
        skipped(&client, "skipped", "SELECT * FROM skipped WHERE user_id = 1234").await;
    assert!(line.contains("indexes=[skipped_user bloom(user_id)]"), "{line}");
    // Z-order on two columns: one value of one column spans about the square root of the
    // zones (about 12 of the 156 zones of 256 rows here), far fewer than all.
    assert!(skipped_rows >= 5 * read, "a Bloom filter over a clustered column skips most rows: {line}");
    let (line, read, skipped_rows) =
        skipped(&client, "skipped", "SELECT * FROM skipped WHERE ts BETWEEN 200000 AND 200500").await;
    assert!(skipped_rows >= 5 * read, "a zone map over a clustered column skips most rows: {line}");
    // Each index's share: what it skips alone, at most what they skip together.
    let (line, _, together) = skipped(
        &client,
        "skipped",
        "SELECT * FROM skipped WHERE user_id = 1234 AND ts BETWEEN 200000 AND 200500",
    )
    .await;
    let by_index = line.split("rows_skipped_by_index=[").nth(1).and_then(|r| r.split(']').next());
    let by_index: Vec<(&str, u64)> = by_index
        .unwrap_or_else(|| panic!("no rows_skipped_by_index in {line}"))
        .split(", ")
        .map(|f| f.split_once('=').map(|(n, v)| (n, v.parse().unwrap())).unwrap())
        .collect();
    assert_eq!(
        by_index.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        ["skipped_user", "skipped_ts"],
        "{line}"
    );
    for (name, rows) in by_index {
        assert!(rows > 0 && rows <= together, "{name} skips {rows} alone, {together} with the other: {line}");
    }

    // Writes after the indexes: new rows in the change store (and in the base of the
    // table without a key, not yet indexed), updated and deleted rows.
    for table in ["plain", "skipped", "keyed"] {
        client
            .batch_execute(&format!(
                "{}; \
                 UPDATE {table} SET user_id = 42, ts = 7 WHERE id % 97 = 3; \
                 DELETE FROM {table} WHERE id % 89 = 5",
                rows_sql(table, ROWS, ROWS + 3000)
            ))
            .await
            .unwrap();
    }
    let changes: i64 = client
        .query_one("SELECT sum(change_rows)::bigint FROM tarn_tables WHERE table_name = 'keyed'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(changes > 0, "keyed has rows in its change store");
    all_agree(&client, &mut rng, 60, seed).await;
    for predicate in ["user_id = 42", "ts = 7", "user_id = 42 AND ts = 7"] {
        let expect = ids(&client, "plain", predicate).await;
        assert!(expect.len() > 300, "{predicate}");
        assert_eq!(ids(&client, "keyed", predicate).await, expect, "{predicate}");
        assert_eq!(ids(&client, "skipped", predicate).await, expect, "{predicate}");
    }

    // Compaction folds the changes into the base in Z-order and indexes them; VACUUM
    // indexes the appended rows of the table without a key.
    client.batch_execute("VACUUM keyed; VACUUM skipped").await.unwrap();
    all_agree(&client, &mut rng, 40, seed).await;

    // A restart reads the same indexes.
    let server = server.restart().await;
    let client = server.client().await;
    all_agree(&client, &mut rng, 20, seed).await;
    let plan = explain(&client, "SELECT id FROM keyed WHERE kind = 'buy'").await;
    assert!(plan.contains("TarnBaseScan: table=keyed") && plan.contains("keyed_kind bitmap(kind)"), "{plan}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scalar_index_and_clustering_errors() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT, user_id INT, v vector(3)); \
             INSERT INTO t VALUES (1, 1, '[1,2,3]'); \
             CREATE INDEX t_user ON t USING bloom (user_id)",
        )
        .await
        .unwrap();
    let cases: [(&str, SqlState); 12] = [
        ("CREATE UNIQUE INDEX ON t (user_id)", SqlState::FEATURE_NOT_SUPPORTED),
        ("CREATE INDEX ON t USING brin (user_id)", SqlState::FEATURE_NOT_SUPPORTED),
        ("CREATE INDEX ON t USING gin (user_id)", SqlState::FEATURE_NOT_SUPPORTED),
        (
            "CREATE INDEX ON t USING brin (id) WITH (false_positive_rate = 0.1)",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "CREATE INDEX ON t USING bloom (id) WITH (false_positive_rate = 2)",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        ("CREATE INDEX ON t (nope)", SqlState::UNDEFINED_COLUMN),
        ("CREATE INDEX t_user ON t (id)", SqlState::DUPLICATE_TABLE),
        ("ALTER TABLE t SET (cluster_by = 'zorder(id, nope)')", SqlState::INVALID_PARAMETER_VALUE),
        ("ALTER TABLE t SET (cluster_by = 'zorder(v)')", SqlState::INVALID_PARAMETER_VALUE),
        ("ALTER TABLE t SET (flush_rows = 5)", SqlState::FEATURE_NOT_SUPPORTED),
        ("ALTER TABLE t SET (bucket_count = 4, cluster_by = 'id')", SqlState::FEATURE_NOT_SUPPORTED),
        ("CLUSTER t", SqlState::INVALID_PARAMETER_VALUE),
    ];
    for (sql, state) in cases {
        let e = client.batch_execute(sql).await.expect_err(sql);
        assert_eq!(e.code(), Some(&state), "{sql}: {}", tarn_tests::describe(&e));
    }
    // The session goes on; the table is as it was.
    client.batch_execute("ALTER TABLE t SET (cluster_by = 'zorder(id, user_id)'); CLUSTER t").await.unwrap();
    let n: i64 = client.query_one("SELECT count(*) FROM t WHERE user_id = 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    // \d's catalog shows the index as PostgreSQL writes it.
    let def: String = client
        .query_one("SELECT indexdef FROM pg_indexes WHERE indexname = 't_user'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(def, "CREATE INDEX t_user ON public.t USING bloom (user_id)");
    client.batch_execute("DROP INDEX t_user; CREATE INDEX t_user ON t USING brin (user_id)").await.unwrap();
    server.stop().await;
}

/// A kNN search's filter on a column with a scalar index (which Lance's scanner
/// answers from it, in the exact search as in the index's pre-filter): still `k` rows,
/// the ones an exact scan of every row finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_knn_search_filtered_on_an_indexed_column_finds_its_k_rows() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE items (id BIGINT, cat INT, embedding vector(3)) WITH (cluster_by = 'cat'); \
             INSERT INTO items SELECT i, i % 100, ARRAY[sin(i), cos(i), sin(i * 0.5)]::vector(3) FROM generate_series(1, 4000) AS t(i); \
             CLUSTER items; \
             CREATE INDEX items_cat ON items USING bitmap (cat); \
             CREATE INDEX items_embedding ON items USING hnsw (embedding)",
        )
        .await
        .unwrap();
    let search = "SELECT id FROM items WHERE cat = 7 ORDER BY embedding <-> '[0.5, 0.5, 0.5]' LIMIT 5";
    let plan = explain(&client, search).await;
    assert!(plan.contains("mode=index+prefilter") || plan.contains("mode=exact"), "{plan}");
    let got: Vec<i64> = client.query(search, &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    let exact: Vec<i64> = client
        .query(
            "SELECT id FROM items WHERE cat = 7 ORDER BY l2_distance(embedding, '[0.5, 0.5, 0.5]'::vector) + 0 LIMIT 5",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(got.len(), 5);
    assert_eq!(got, exact, "{plan}");
    server.stop().await;
}

/// Joins pass their build side's keys to the scan of the other side at run time
/// (DataFusion's dynamic filters: the keys' bounds, and the keys themselves when they
/// are few), which Lance answers from the scalar indexes: a join on a selective
/// dimension reads only its rows, and every join answers as the same query over
/// literal keys does, for a table without a key and one with rows in its change store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_skips_by_its_build_sides_keys_and_never_changes_an_answer() {
    let seed = env_u64("TARN_SKIPPING_SEED", 0x5C1F_2026);
    let mut rng = Rng::new(seed);
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE facts ({COLUMNS}); \
             CREATE TABLE keyed ({COLUMNS}, PRIMARY KEY (id)) WITH (auto_compaction = off); \
             {}; {}; \
             CREATE INDEX facts_user ON facts (user_id); \
             CREATE INDEX keyed_user ON keyed USING bloom (user_id) WITH (rows_per_zone = 256); \
             CREATE TABLE users (id INT PRIMARY KEY, tier INT); \
             INSERT INTO users SELECT u, u % 400 FROM generate_series(0, 5002) AS t(u); \
             UPDATE keyed SET user_id = 77 WHERE id % 97 = 3; \
             DELETE FROM keyed WHERE id % 89 = 5; \
             {}",
            rows_sql("facts", 0, ROWS),
            rows_sql("keyed", 0, ROWS),
            rows_sql("keyed", ROWS, ROWS + 2000),
        ))
        .await
        .unwrap();

    // Few keys (an IN list and its bounds) through a B-tree: most rows skipped.
    let join = "SELECT f.id FROM facts f JOIN users u ON f.user_id = u.id WHERE u.id IN (12, 345, 4000)";
    let (line, read, skipped_rows) = skipped(&client, "facts", join).await;
    assert!(line.contains("runtime_filter=[") && line.contains("IN"), "{line}");
    assert!(skipped_rows >= 100 * read.max(1), "a three-key join reads its rows only: {line}");

    for round in 0..24 {
        let (table, rows) = if round % 2 == 0 { ("facts", "facts") } else { ("keyed", "keyed") };
        // A tier holds about 12 users (an IN list); a range of tiers, hundreds (bounds only).
        let (condition, users) = if round % 4 < 2 {
            let tier = rng.range(0, 400);
            (format!("u.tier = {tier}"), format!("SELECT id FROM users WHERE tier = {tier}"))
        } else {
            let lo = rng.range(0, 5003);
            let hi = lo + rng.range(0, 600);
            (
                format!("u.id BETWEEN {lo} AND {hi}"),
                format!("SELECT id FROM users WHERE id BETWEEN {lo} AND {hi}"),
            )
        };
        let keys: Vec<i32> = client.query(&users, &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        let list = keys.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ");
        let expect = ids(&client, rows, &format!("user_id IN ({list})")).await;
        let sql = format!(
            "SELECT f.id FROM {table} f JOIN users u ON f.user_id = u.id WHERE {condition} ORDER BY f.id"
        );
        let got: Vec<i64> = client.query(&sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        assert_eq!(got, expect, "{sql} (TARN_SKIPPING_SEED={seed})");
        // The side that keeps every row takes no filter from the other.
        let outer = format!(
            "SELECT count(*) FROM {table} f LEFT JOIN (SELECT id FROM users WHERE {}) u ON f.user_id = u.id",
            condition.replace("u.", "")
        );
        let count: i64 = client.query_one(&outer, &[]).await.unwrap().get(0);
        let all: i64 = client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0);
        assert_eq!(count, all, "{outer}");
    }

    // A join whose NULL keys match (INTERSECT's) keeps the rows with a NULL key.
    for table in ["facts", "keyed"] {
        let intersect = format!(
            "SELECT count(*) FROM ((SELECT user_id FROM {table} WHERE id % 3 = 0) \
             INTERSECT (SELECT user_id FROM {table} WHERE id < 5000)) AS s"
        );
        let got: i64 = client.query_one(&intersect, &[]).await.unwrap().get(0);
        let nulls: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE id < 5000 AND id % 3 = 0 AND user_id IS NULL"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(nulls > 0, "{table} has NULL keys on both sides");
        let distinct: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM (SELECT DISTINCT user_id FROM {table} WHERE id < 5000 AND user_id IN \
                     (SELECT user_id FROM {table} WHERE id % 3 = 0)) AS s"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(got, distinct + 1, "{intersect} (the NULL key is one row of it)");
        let plan = explain(&client, &intersect).await;
        assert!(plan.contains("dynamic_filters=1 (NULLs kept)"), "{plan}");
    }
    server.stop().await;
}

/// A BM25 search's filter on a column with a scalar index (Lance answers it from the
/// index when it builds the search's allow set): still `k` rows when `k` qualify, the
/// same as the search over a table without the index, before and after writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bm25_search_filtered_on_an_indexed_column_finds_its_k_rows() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let words = "ARRAY['river', 'stone', 'falcon', 'meadow', 'harbor', 'lantern']";
    let rows = |table: &str, lo: i64, hi: i64| {
        format!(
            "INSERT INTO {table} SELECT i, i % 50, \
               {words}[1 + i % 6] || ' ' || {words}[1 + (i * 7) % 6] || ' ' || {words}[1 + (i / 6) % 6] \
             FROM generate_series({lo}, {hi}) AS t(i)"
        )
    };
    client
        .batch_execute(&format!(
            "CREATE TABLE docs (id BIGINT, cat INT, body TEXT) WITH (cluster_by = 'cat'); \
             CREATE TABLE bare (id BIGINT, cat INT, body TEXT); \
             {}; {}; \
             CLUSTER docs; \
             CREATE INDEX docs_cat ON docs USING bitmap (cat); \
             CREATE INDEX docs_body ON docs USING bm25 (body); \
             CREATE INDEX bare_body ON bare USING bm25 (body)",
            rows("docs", 1, 6000),
            rows("bare", 1, 6000)
        ))
        .await
        .unwrap();
    let search = |table: &str, cat: i64| {
        format!(
            "SELECT id FROM {table} WHERE cat = {cat} AND body @@@ 'falcon' \
             ORDER BY bm25_score(body, 'falcon') DESC, id LIMIT 7"
        )
    };
    let ids = |rows: Vec<tokio_postgres::Row>| -> Vec<i64> { rows.iter().map(|r| r.get(0)).collect() };
    for round in 0..2 {
        for cat in [0, 7, 33, 49] {
            let got = ids(client.query(&search("docs", cat), &[]).await.unwrap());
            let expect = ids(client.query(&search("bare", cat), &[]).await.unwrap());
            assert_eq!(got.len(), 7, "{} (round {round})", search("docs", cat));
            assert_eq!(got, expect, "{} (round {round})", search("docs", cat));
        }
        // Appended rows (not yet in either index's segments nor the scalar index).
        client
            .batch_execute(&format!("{}; {}", rows("docs", 6001, 6600), rows("bare", 6001, 6600)))
            .await
            .unwrap();
    }
    server.stop().await;
}
