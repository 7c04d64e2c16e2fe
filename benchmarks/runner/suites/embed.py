"""Suite `embed`: embeddings inside SQL. (1) `embed()` throughput: N English sentences
(8-20 words from a fixed 200-word list, `random.Random(seed)`) embedded by Tarn in one
statement (`SELECT sum(vector_norm(embed(s))) FROM embed_sentences`, every vector checked
to be normalized) against sentence-transformers' `model.encode(batch_size=64)` on the same
CPU (a subprocess: `ST_PYTHON`, else this venv's python with sentence-transformers), both
all-MiniLM-L6-v2 on 2 cores. (2) End-to-end latency of `ORDER BY v <=> embed($1) LIMIT 10`
over a table of random unit vectors with an HNSW index, prepared, 1 client, each
execution a question not asked before; beside it the
same search with the question's vector given as a literal (the search alone) and
sentence-transformers' encode of one question (what a client would pay to compute the
vector itself)."""
import itertools
import json
import os
import random
import subprocess
import sys
import time

from common import TARN, SuiteResult, Timing, connect, execute, log, md_table, fmt, timed, timed_clients

NAME = "embed"
REQUIREMENTS = ["psycopg[binary]>=3.1,<4", "numpy", "sentence-transformers"]

WORDS = ("time person year way day thing man world life hand part child eye woman place work week case point "
         "government company number group problem fact water money story month lot right study book job word "
         "business issue side kind head house service friend father power hour game line end member law car city "
         "community name president team minute idea kid body information back parent face others level office "
         "door health art war history party result change morning reason research girl guy moment air teacher "
         "force education foot boy age policy music market sense nation plan college interest death experience "
         "effect class control care field development role effort rate heart drug show leader light voice wife "
         "police mind price report decision son view relationship town road arm difference value building action "
         "model season society tax director position player record paper space ground form event official matter "
         "center couple site project activity star table need court oil situation cost industry figure street image "
         "phone data picture practice piece land product doctor wall patient worker news test movie north love "
         "support technology step baby computer type attention film tree source organization hair window evidence "
         "population").split()

QUESTIONS = ["which players improved the most this season", "news about the government tax policy",
             "a doctor talks to a patient about health", "music and film for kids", "price of oil and the market",
             "a walk in the city at night", "research on education and teachers", "the team lost the game"]


def sentences(n, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))) for _ in range(n)]


ST_SCRIPT = r"""
import json, sys, time
import torch
from sentence_transformers import SentenceTransformer
model_dir, path, question = sys.argv[1], sys.argv[2], sys.argv[3]
texts = open(path).read().split("\n")
model = SentenceTransformer(model_dir, device="cpu")
model.encode(texts[:64], batch_size=64)
best = None
for _ in range(2):
    t0 = time.perf_counter(); model.encode(texts, batch_size=64, normalize_embeddings=True)
    dt = time.perf_counter() - t0; best = dt if best is None else min(best, dt)
one = []
for _ in range(30):
    t0 = time.perf_counter(); model.encode([question]); one.append(time.perf_counter() - t0)
one.sort()
print(json.dumps({"seconds": best, "n": len(texts), "threads": torch.get_num_threads(),
                  "one_p50_ms": one[len(one) // 2] * 1000, "version": __import__("sentence_transformers").__version__}))
"""


def sentence_transformers(ctx, texts, res):
    """sentence-transformers on the same CPU: (seconds for all texts, one question's p50 ms)."""
    python = os.environ.get("ST_PYTHON", sys.executable)
    models = os.environ.get("TARN_MODELS", "/var/tmp/tarn-bench-models")
    path = ctx.work / "sentences.txt"
    path.write_text("\n".join(texts))
    script = ctx.work / "st.py"
    script.write_text(ST_SCRIPT)
    try:
        out = subprocess.run([python, str(script), f"{models}/all-MiniLM-L6-v2", str(path), QUESTIONS[0]],
                             capture_output=True, text=True, timeout=1800)
    except Exception as e:
        ctx.note(f"embed: sentence-transformers did not run ({e}); no anchor for throughput")
        return None
    if out.returncode != 0:
        ctx.note(f"embed: sentence-transformers failed: {out.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(ctx):
    import numpy as np

    res = SuiteResult(NAME)
    if not ctx.tarn_dsn:
        ctx.note("embed: Tarn left out; nothing to measure")
        return res.as_dict()
    n = 500 if ctx.quick else 2000
    rows = 10_000 if ctx.quick else 100_000
    texts = sentences(n, ctx.seed)
    conn = connect(ctx.tarn_dsn)
    execute(conn, "DROP TABLE IF EXISTS embed_sentences")
    execute(conn, "CREATE TABLE embed_sentences (id bigint PRIMARY KEY, s text)")
    with conn.cursor() as cur:
        with cur.copy("COPY embed_sentences (id, s) FROM STDIN") as copy:
            for i, s in enumerate(texts):
                copy.write_row((i, s))
    execute(conn, "VACUUM embed_sentences")
    execute(conn, "SELECT embed('warm up')", fetch=True)
    sql = "SELECT count(*), sum(vector_norm(embed(s))) FROM embed_sentences"
    best = None
    for _ in range(2):
        seconds, got = timed(lambda: execute(conn, sql, fetch=True))
        count, norms = got[0]
        if count != n or abs(norms - n) > 1e-3 * n:
            res.fail(TARN, "embed throughput", sql, f"wrong answer: {count} rows, norms sum {norms}")
            return res.as_dict()
        best = seconds if best is None else min(best, seconds)
    tarn_rate = n / best
    st = sentence_transformers(ctx, texts, res)
    st_rate = st["n"] / st["seconds"] if st else None
    res.compare("embed() throughput", "sentences/s", {TARN: tarn_rate, "sentence-transformers": st_rate},
                "sentences/s", "higher")

    # Latency over `rows` random unit vectors.
    log(f"embed: loading {rows:,} vectors")
    rng = np.random.default_rng(ctx.seed)
    vectors = rng.standard_normal((rows, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    execute(conn, "DROP TABLE IF EXISTS embed_items")
    execute(conn, "CREATE TABLE embed_items (id bigint PRIMARY KEY, v vector(384))")
    with conn.cursor() as cur:
        with cur.copy("COPY embed_items (id, v) FROM STDIN") as copy:
            for i in range(rows):
                copy.write_row((i, "[" + ",".join(f"{x:.6f}" for x in vectors[i]) + "]"))
    execute(conn, "VACUUM embed_items")
    load_s, _ = timed(lambda: execute(conn, "CREATE INDEX ON embed_items USING hnsw (v vector_cosine_ops)"))
    log(f"embed: index built in {load_s:.1f} s")
    by_text = "SELECT id FROM embed_items ORDER BY v <=> embed(%s) LIMIT 10"
    by_vector = "SELECT id FROM embed_items ORDER BY v <=> %s::vector LIMIT 10"
    literals = {q: execute(conn, "SELECT embed(%s)::text", (q,), fetch=True)[0][0] for q in QUESTIONS}
    executions = 50 if ctx.quick else 200

    asked = itertools.count()

    def text_one(cur, i):
        # A question never asked before, warm-up included (Tarn remembers recent
        # questions' vectors).
        cur.execute(by_text, (f"{QUESTIONS[i % len(QUESTIONS)]} ({next(asked)})",), prepare=True)
        if len(cur.fetchall()) != 10:
            raise RuntimeError("not 10 rows")

    def vector_one(cur, i):
        cur.execute(by_vector, (literals[QUESTIONS[i % len(QUESTIONS)]],), prepare=True)
        if len(cur.fetchall()) != 10:
            raise RuntimeError("not 10 rows")

    timings = {}
    for workload, one, sql in (("ORDER BY v <=> embed($1) LIMIT 10", text_one, by_text),
                               ("ORDER BY v <=> $1::vector LIMIT 10", vector_one, by_vector)):
        t = res.attempt(TARN, workload, lambda: timed_clients(ctx.tarn_dsn, 1, list(range(executions)), one,
                                                                warmup=8), sql)
        timings[workload] = t
        if t:
            res.figure(workload, TARN, "p50", t.p50, "ms", 1)
            res.figure(workload, TARN, "p99", t.p99, "ms", 1)
    if st:
        res.figure("sentence-transformers encode of one question", "sentence-transformers", "p50",
                   st["one_p50_ms"], "ms", 1)
    execute(conn, "DROP TABLE embed_sentences")
    execute(conn, "DROP TABLE embed_items")
    conn.close()
    table = [("embed() throughput, sentences/s", fmt(tarn_rate), fmt(st_rate) if st_rate else "n/a")]
    lat = [(w, fmt(t.p50, 2) if t else "failed", fmt(t.p99, 2) if t else "") for w, t in timings.items()]
    if st:
        lat.append(("sentence-transformers: encode one question (client side)", fmt(st["one_p50_ms"], 2), ""))
    res.section(
        f"## embed: embeddings in SQL\n\nall-MiniLM-L6-v2, 384 dimensions, CPU. Throughput over {n:,} sentences "
        f"(best of 2; sentence-transformers {st['version'] if st else 'absent'}, batch 64, "
        f"{st['threads'] if st else '?'} torch threads):\n\n"
        + md_table(["workload", "Tarn", "sentence-transformers"], table)
        + f"\n\nLatency over {rows:,} random unit vectors with an HNSW index (cosine), prepared, 1 client, "
        f"{executions} executions over {len(QUESTIONS)} questions:\n\n"
        + md_table(["workload", "p50 ms", "p99 ms"], lat) + "\n")
    return res.as_dict()
