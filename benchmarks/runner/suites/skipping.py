"""Suite `skipping`: data skipping on a lake-scale table of events. One table of N events
`(id bigint, user_id bigint, ts timestamp, session_id bigint, amount double precision)`
(10M rows; 500k in quick mode), in arrival order (ts rising), `user_id` drawn from N/10
users, `session_id` a unique random non-key number, is loaded three times into Tarn by
binary COPY:

- `skip_plain`: no index, no clustering (what Tarn scanned before this suite's features);
- `skip_indexed`: `bloom (user_id)`, `brin (ts)`, `btree (session_id)`, not clustered;
- `skip_clustered`: the same indexes, `cluster_by = 'zorder(user_id, ts)'`, then `CLUSTER`;
- `skip_small_zones`: as `skip_clustered`, its Bloom filter and zone map over 2,048-row
  zones (`WITH (rows_per_zone = 2048)`; 8,192 by default).

A dimension of the N/10 users, `skip_users (id bigint PRIMARY KEY, segment bigint)` with
a B-tree on `segment` (ten users a segment), serves the join workload: its build side's
keys reach the events' scan at run time (DataFusion's dynamic filter, through the Bloom
filter on `user_id`).

The same rows go to Parquet files (pyarrow, DuckDB's row-group size of 122,880 rows)
that DuckDB reads in-process (its min/max statistics skip row groups). Each workload runs
the same random parameters on every engine, prepared, one client; every answer is
checked against DuckDB's. For Tarn, `EXPLAIN ANALYZE` of a few of the queries gives the
rows and bytes each scan read and skipped (`TarnBaseScan`'s figures)."""
from __future__ import annotations

import datetime
import time

import numpy as np

from common import (TARN, Failure, SuiteResult, Timing, connect, error_text, execute, fmt, log,
                    md_table, percentile, timed)

NAME = "skipping"
REQUIREMENTS = ["psycopg[binary]>=3.1,<4", "numpy", "duckdb>=1.1", "pyarrow"]
COLUMNS = "(id bigint, user_id bigint, ts timestamp, session_id bigint, amount double precision)"
TABLES = {
    "skip_plain": ("no index, no clustering", ""),
    "skip_indexed": ("Bloom + zone map + B-tree", ""),
    "skip_clustered": ("Z-order + the same indexes", " WITH (cluster_by = 'zorder(user_id, ts)')"),
    "skip_small_zones": ("Z-order + the same indexes, 2,048-row zones", " WITH (cluster_by = 'zorder(user_id, ts)')"),
}
CLUSTERED = ("skip_clustered", "skip_small_zones")
USERS_PER_SEGMENT = 10
DUCKDB = "DuckDB (Parquet)"
EPOCH = datetime.datetime(2026, 1, 1)
PG_EPOCH = datetime.datetime(2000, 1, 1)
STEP_US = 1_000  # one event per millisecond, in arrival order

WORKLOADS = {
    "user_id = $1": "SELECT count(*), sum(amount) FROM {t} WHERE user_id = %s",
    "ts in a 1-second window": "SELECT count(*), sum(amount) FROM {t} WHERE ts >= %s AND ts < %s",
    "user_id = $1 AND ts in a 10% window": "SELECT count(*), sum(amount) FROM {t} WHERE user_id = %s AND ts >= %s AND ts < %s",
    "session_id = $1 (non-key point lookup)": "SELECT id, user_id, ts, session_id, amount FROM {t} WHERE session_id = %s",
    "join with a 10-user segment": "SELECT count(*), sum(e.amount) FROM {t} e JOIN {u} u ON e.user_id = u.id WHERE u.segment = %s",
}


def columns(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.arange(n, dtype=np.int64)
    return {
        "id": ids,
        "user_id": rng.integers(0, max(n // 10, 1), n, dtype=np.int64),
        "ts_us": ids * STEP_US + rng.integers(0, STEP_US, n, dtype=np.int64),
        "session_id": rng.permutation(n).astype(np.int64) * 7 + 13,
        "amount": ((ids * 37) % 40_000) * 0.25,
    }


def copy_blob(c: dict, lo: int, hi: int) -> bytes:
    rec = np.dtype([("n", ">i2"), ("l1", ">i4"), ("id", ">i8"), ("l2", ">i4"), ("user_id", ">i8"),
                    ("l3", ">i4"), ("ts", ">i8"), ("l4", ">i4"), ("session_id", ">i8"),
                    ("l5", ">i4"), ("amount", ">f8")])
    a = np.empty(hi - lo, dtype=rec)
    a["n"] = 5
    a["l1"] = a["l2"] = a["l3"] = a["l4"] = a["l5"] = 8
    a["id"] = c["id"][lo:hi]
    a["user_id"] = c["user_id"][lo:hi]
    shift = int((EPOCH - PG_EPOCH).total_seconds() * 1_000_000)
    a["ts"] = c["ts_us"][lo:hi] + shift
    a["session_id"] = c["session_id"][lo:hi]
    a["amount"] = c["amount"][lo:hi]
    return a.tobytes()


def load_tarn(dsn: str, table: str, c: dict, n: int) -> float:
    """CREATE TABLE and one binary COPY; returns the COPY's seconds."""
    import psycopg

    options = TABLES[table][1]
    with connect(dsn) as conn:
        execute(conn, f"DROP TABLE IF EXISTS {table}")
        execute(conn, f"CREATE TABLE {table} {COLUMNS}{options}")
        sql = f"COPY {table} FROM STDIN (FORMAT BINARY)"
        t0 = time.perf_counter()
        try:
            with conn.cursor() as cur, cur.copy(sql) as cp:
                cp.write(b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8)
                for lo in range(0, n, 1_000_000):
                    cp.write(copy_blob(c, lo, min(n, lo + 1_000_000)))
                cp.write(b"\xff\xff")
        except psycopg.Error as e:
            raise Failure(sql, error_text(e)) from e
        return time.perf_counter() - t0


def prepare_tarn(dsn: str, table: str) -> list[tuple[str, float]]:
    """The indexes (and clustering) of `table`: [(statement, seconds)]."""
    steps = []
    if table == "skip_plain":
        return steps
    zones = " WITH (rows_per_zone = 2048)" if table == "skip_small_zones" else ""
    statements = [f"CREATE INDEX {table}_user ON {table} USING bloom (user_id){zones}",
                  f"CREATE INDEX {table}_ts ON {table} USING brin (ts){zones}",
                  f"CREATE INDEX {table}_session ON {table} (session_id)"]
    if table in CLUSTERED:
        statements.append(f"CLUSTER {table}")
    with connect(dsn) as conn:
        for sql in statements:
            s, _ = timed(lambda: execute(conn, sql))
            steps.append((sql, s))
    return steps


def users(n: int) -> dict[str, np.ndarray]:
    ids = np.arange(max(n // 10, 1), dtype=np.int64)
    return {"id": ids, "segment": ids // USERS_PER_SEGMENT}


def load_users(dsn: str, u: dict) -> float:
    """`skip_users` by binary COPY, its segment index built; returns the seconds."""
    import psycopg

    rec = np.dtype([("n", ">i2"), ("l1", ">i4"), ("id", ">i8"), ("l2", ">i4"), ("segment", ">i8")])
    a = np.empty(len(u["id"]), dtype=rec)
    a["n"] = 2
    a["l1"] = a["l2"] = 8
    a["id"], a["segment"] = u["id"], u["segment"]
    with connect(dsn) as conn:
        execute(conn, "DROP TABLE IF EXISTS skip_users")
        execute(conn, "CREATE TABLE skip_users (id bigint PRIMARY KEY, segment bigint)")
        t0 = time.perf_counter()
        sql = "COPY skip_users FROM STDIN (FORMAT BINARY)"
        try:
            with conn.cursor() as cur, cur.copy(sql) as cp:
                cp.write(b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + a.tobytes() + b"\xff\xff")
        except psycopg.Error as e:
            raise Failure(sql, error_text(e)) from e
        execute(conn, "CREATE INDEX skip_users_segment ON skip_users (segment)")
        return time.perf_counter() - t0


def write_parquet(c: dict, path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "id": c["id"], "user_id": c["user_id"],
        "ts": pa.array((c["ts_us"] + int((EPOCH - datetime.datetime(1970, 1, 1)).total_seconds() * 1e6)),
                       type=pa.timestamp("us")),
        "session_id": c["session_id"], "amount": c["amount"],
    })
    pq.write_table(table, path, row_group_size=122_880)


def params_for(workload: str, c: dict, n: int, rng) -> tuple:
    ts = lambda us: EPOCH + datetime.timedelta(microseconds=int(us))
    span = n * STEP_US
    if workload.startswith("user_id = $1 AND"):
        u = int(c["user_id"][rng.integers(0, n)])
        lo = int(rng.integers(0, span - span // 10))
        return (u, ts(lo), ts(lo + span // 10))
    if workload.startswith("user_id"):
        return (int(c["user_id"][rng.integers(0, n)]),)
    if workload.startswith("join"):
        return (int(c["user_id"][rng.integers(0, n)]) // USERS_PER_SEGMENT,)
    if workload.startswith("ts"):
        lo = int(rng.integers(0, span - 1_000_000))
        return (ts(lo), ts(lo + 1_000_000))
    return (int(c["session_id"][rng.integers(0, n)]),)


def normal(rows) -> list[tuple]:
    """Answers comparable across drivers: floats rounded, timestamps naive."""
    out = []
    for r in rows:
        out.append(tuple(round(v, 6) if isinstance(v, float) else v for v in r))
    return sorted(out, key=repr)


def literal(p) -> str:
    return f"'{p.isoformat(sep=' ')}'" if isinstance(p, datetime.datetime) else str(p)


def scan_figures(conn, table: str, sql: str, params: tuple) -> tuple[float, float, float]:
    """rows_read, rows_skipped, bytes_read of the query's TarnBaseScan of `table`."""
    text = sql
    for p in params:
        text = text.replace("%s", literal(p), 1)
    plan = "\n".join(r[1] for r in execute(conn, "EXPLAIN ANALYZE " + text, fetch=True))
    line = next(l for l in plan.splitlines() if f"TarnBaseScan: table={table}," in l)

    def figure(name):
        at = line.index(name + "=") + len(name) + 1
        value = line[at:].split(",")[0].split("]")[0].strip()
        number, _, unit = value.partition(" ")
        return float(number) * {"K": 1e3, "M": 1e6, "G": 1e9}.get(unit, 1)

    return figure("rows_read"), figure("rows_skipped"), figure("bytes_read")


def run(ctx):
    res = SuiteResult(NAME)
    n = 500_000 if ctx.quick else 10_000_000
    queries = 20 if ctx.quick else 40
    c = columns(n, ctx.seed + 15)
    rng = np.random.default_rng(ctx.seed + 16)
    params = {w: [params_for(w, c, n, rng) for _ in range(queries)] for w in WORKLOADS}

    parquet = ctx.work / "events.parquet"
    s, _ = timed(lambda: write_parquet(c, parquet))
    log(f"skipping: {n:,} rows written as Parquet in {s:.1f}s")
    import duckdb

    duck = duckdb.connect()
    duck.execute("SET threads = 2")
    duck.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{parquet}')")
    u = users(n)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(u), ctx.work / "users.parquet", row_group_size=122_880)
    duck.execute(f"CREATE VIEW users AS SELECT * FROM read_parquet('{ctx.work / 'users.parquet'}')")

    load_rows = []
    loaded, dimensions = [], []
    if ctx.tarn_dsn:
        got = res.attempt(TARN, "load skip_users", lambda: load_users(ctx.tarn_dsn, u))
        if got is not None:
            dimensions.append("skip_users")
            load_rows.append(("`skip_users`", "primary key, B-tree on segment", f"{got:.1f}",
                              fmt(len(u["id"]) / got), "-"))
        for table in TABLES:
            got = res.attempt(TARN, f"load {table}", lambda: load_tarn(ctx.tarn_dsn, table, c, n))
            if got is None:
                continue
            steps = res.attempt(TARN, f"index {table}", lambda: prepare_tarn(ctx.tarn_dsn, table))
            if steps is None:
                continue
            loaded.append(table)
            load_rows.append((f"`{table}`", TABLES[table][0], f"{got:.1f}", fmt(n / got),
                              "; ".join(f"`{sql}` {s:.1f}s" for sql, s in steps) or "-"))

    # Answers and latencies, workload by workload, engine by engine.
    timing_rows, scan_rows = [], []
    for workload, template in WORKLOADS.items():
        expected = {}
        lat = []
        t0 = time.perf_counter()
        for p in params[workload]:
            sql = template.format(t="events", u="users").replace("%s", "?")
            q0 = time.perf_counter_ns()
            expected[p] = normal(duck.execute(sql, list(p)).fetchall())
            lat.append((time.perf_counter_ns() - q0) / 1e6)
        duck_t = Timing(len(lat), time.perf_counter() - t0, percentile(lat, 50), percentile(lat, 99))
        timings = {DUCKDB: duck_t}
        timing_rows.append((workload, DUCKDB, duck_t, None))
        for table in loaded:
            sql = template.format(t=table, u="skip_users")

            def measure():
                with connect(ctx.tarn_dsn) as conn, conn.cursor() as cur:
                    for p in params[workload][:3]:  # warm-up, untimed
                        cur.execute(sql, p, prepare=True)
                        cur.fetchall()
                    lat = []
                    t0 = time.perf_counter()
                    for p in params[workload]:
                        q0 = time.perf_counter_ns()
                        cur.execute(sql, p, prepare=True)
                        got = normal(cur.fetchall())
                        lat.append((time.perf_counter_ns() - q0) / 1e6)
                        if got != expected[p]:
                            raise Failure(sql + f" with {p}", f"wrong answer: {got!r}, DuckDB: {expected[p]!r}")
                    wall = time.perf_counter() - t0
                    figures = [scan_figures(conn, table, sql, p) for p in params[workload][:3]]
                return Timing(len(lat), wall, percentile(lat, 50), percentile(lat, 99)), figures

            got = res.attempt(TARN, workload, measure, sql)
            if got is None:
                continue
            timing, figures = got
            label = f"Tarn `{table}`"
            timings[label] = timing
            mean = [sum(f[i] for f in figures) / len(figures) for i in range(3)]
            timing_rows.append((workload, label, timing, mean))
            res.figure(workload, label, "rows_read", mean[0], "rows")
            res.figure(workload, label, "bytes_read", mean[2], "bytes")
            scan_rows.append((workload, f"`{table}`", fmt(mean[0]), fmt(mean[1]), fmt(mean[2])))
        for engine, t in timings.items():
            res.figure(workload, engine, "p50", t.p50, "ms", 1)
            res.figure(workload, engine, "p99", t.p99, "ms", 1)
        plain = timings.get("Tarn `skip_plain`")
        for table in CLUSTERED:
            clustered = timings.get(f"Tarn `{table}`")
            if not clustered:
                continue
            res.ratios.append({"workload": f"{workload} (`{table}`)", "metric": "p50", "tarn": clustered.p50,
                               "anchor": DUCKDB, "anchor_value": duck_t.p50,
                               "ratio": clustered.p50 / duck_t.p50, "better": "lower"})
            if plain:
                res.ratios.append({"workload": f"{workload} (`{table}` vs plain Tarn)", "metric": "p50",
                                   "tarn": clustered.p50, "anchor": "Tarn `skip_plain`",
                                   "anchor_value": plain.p50, "ratio": clustered.p50 / plain.p50,
                                   "better": "lower"})
    for table in loaded + dimensions:
        res.attempt(TARN, "skipping cleanup", lambda: drop(ctx.tarn_dsn, table))
    duck.close()

    def cut(workload, column, table):
        by = {r[1]: r for r in scan_rows if r[0] == workload}
        plain, other = by.get("`skip_plain`"), by.get(f"`{table}`")
        if not plain or not other:
            return "n/a"
        a = float(plain[column].replace(",", ""))
        b = float(other[column].replace(",", ""))
        return f"{a / b:.0f}x" if b else "all skipped"

    cuts = [(w, *(cut(w, column, table) for table in CLUSTERED for column in (2, 4))) for w in WORKLOADS]
    res.section(
        f"## skipping: data skipping on {n:,} events\n\n"
        + __doc__.split("\n\n", 1)[1].replace("\n", " ").replace("  ", " ") + "\n\n"
        + md_table(["table", "layout", "COPY s", "rows/s", "then"], load_rows) + "\n\n"
        + md_table(["workload", "engine", "p50 ms", "p99 ms", "QPS"],
                   [(w, e, fmt(t.p50, 2), fmt(t.p99, 2), fmt(t.qps, 1)) for w, e, t, _ in timing_rows]) + "\n\n"
        + "What each Tarn scan read (mean of 3 queries' `EXPLAIN ANALYZE`):\n\n"
        + md_table(["workload", "table", "rows read", "rows skipped", "bytes read"], scan_rows) + "\n\n"
        + "Clustered and indexed against plain, fewer rows and bytes read:\n\n"
        + md_table(["workload", "rows", "bytes", "rows, 2,048-row zones", "bytes, 2,048-row zones"], cuts)
        + "\n")
    return res.as_dict()


def drop(dsn, table):
    with connect(dsn) as conn:
        execute(conn, f"DROP TABLE {table}")
