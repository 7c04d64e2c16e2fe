#!/usr/bin/env python3
"""Change-store benchmark: Tarn against PostgreSQL 15, the same work in one run.

Started by benchmarks/change_store.sh, which runs both servers and passes their ports.
Phases (each engine in turn, Tarn first, inside every phase):

  1. upsert ingest over the wire, rows/s, into a fresh primary-key table per repetition:
     (a) COPY FROM STDIN of INGEST_ROWS rows in statements of COPY_CHUNK rows;
     (b) INSERT ... VALUES (...),... ON CONFLICT (id) DO UPDATE, UPSERT_BATCH rows per
         statement, half of the keys new and half existing.
  2. point lookups (prepared `SELECT * FROM events WHERE id = $1`, one client) on a table
     of ROWS rows loaded by COPY, compacted by VACUUM, then UPDATES rows upserted after
     that (on Tarn: `WITH (bucket_count = 8, auto_compaction = off)`, so they stay in the
     change store).
  3. full-scan aggregates on the same table, with the updates uncompacted and again
     after `VACUUM events`.

Every result is checked against what the program wrote (a wrong answer is reported as
an error, not timed). Environment: see benchmarks/README.md.
"""
import datetime
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import traceback

import psycopg
from psycopg.types.numeric import Int8


def env_int(name, default):
    return int(os.environ.get(name, default))


ROWS = env_int("ROWS", 1_000_000)  # rows of the lookup/scan table
UPDATES = env_int("UPDATES", ROWS // 10)  # rows upserted after the last compaction
LOOKUPS = env_int("LOOKUPS", 5_000)  # timed lookups per pass
LOOKUP_RUNS = env_int("LOOKUP_RUNS", 3)  # passes of LOOKUPS random keys
INGEST_ROWS = env_int("INGEST_ROWS", 200_000)  # phase 1 COPY rows
UPSERT_ROWS = env_int("UPSERT_ROWS", INGEST_ROWS)  # phase 1 upsert rows (half new)
INGEST_RUNS = env_int("INGEST_RUNS", 3)  # repetitions of phase 1
SCAN_RUNS = env_int("SCAN_RUNS", 5)  # timed repetitions of each aggregate query
COPY_CHUNK = env_int("COPY_CHUNK", 10_000)  # rows per COPY statement (phase 1)
LOAD_CHUNK = env_int("LOAD_CHUNK", 100_000)  # rows per COPY statement (loading ROWS)
UPSERT_BATCH = env_int("UPSERT_BATCH", 1_000)  # rows per INSERT ... ON CONFLICT
COPY_FORMAT = os.environ.get("COPY_FORMAT", "text")  # text | csv
SEED = env_int("SEED", 42)
BUDGET = env_int("BUDGET", 120)  # seconds: no further repetition starts after a phase took this long
ONLY = os.environ.get("ONLY", "")  # "", "pg" or "tarn"
TARN_PORT = env_int("TARN_PORT", 55435)
PG_PORT = env_int("PG_PORT", 55434)
TARN_DATA = os.environ.get("TARN_DATA", "")
REPORT = os.environ.get("REPORT", "")  # path for the report; "-" prints only

COLUMNS = "(id BIGINT PRIMARY KEY, user_id INT, kind TEXT, amount DOUBLE PRECISION)"
TARN_EVENTS_WITH = "WITH (bucket_count = 8, auto_compaction = off)"
KINDS = ["view", "click", "cart", "buy", "refund"]
LOOKUP_SQL = "SELECT * FROM events WHERE id = %s"
Q_TOTAL = "SELECT count(*), sum(amount), avg(amount) FROM events"
Q_GROUP = "SELECT kind, count(*), sum(amount) FROM events GROUP BY kind"


# ---------------------------------------------------------------- the data
# Row `id` at version `v` (0 = as loaded, 1 = after its upsert). Amounts are multiples of
# 0.25 below 10,000, so every sum is exact in a double whatever the order of addition.
def row(i, v=0):
    return (i, (i * 7919 + v) % 50_000, KINDS[(i + 3 * v) % 5], ((i * 37 + v * 10_007) % 40_000) * 0.25)


def copy_line(i, v=0):
    _, u, k, a = row(i, v)
    return f"{i},{u},{k},{a!r}\n" if COPY_FORMAT == "csv" else f"{i}\t{u}\t{k}\t{a!r}\n"


def copy_chunks(ids, size, v=0):
    return [
        "".join(copy_line(i, v) for i in ids[s : s + size]).encode() for s in range(0, len(ids), size)
    ]


def copy_sql(table):
    return f"COPY {table} FROM STDIN" + (" WITH (FORMAT csv)" if COPY_FORMAT == "csv" else "")


def upsert_sql(table, ids, v):
    values = ",".join(f"({i},{u},'{k}',{a!r})" for i, u, k, a in (row(i, v) for i in ids))
    return (
        f"INSERT INTO {table} (id, user_id, kind, amount) VALUES {values} "
        "ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount, kind = EXCLUDED.kind"
    )


def after_upsert(i, existed):
    """The row an upsert of `row(i, 1)` leaves: SET touches only amount and kind."""
    if not existed:
        return row(i, 1)
    _, u, _, _ = row(i, 0)
    _, _, k, a = row(i, 1)
    return (i, u, k, a)


class Expected:
    """What a table should hold: counts and sums, total and per kind."""

    def __init__(self):
        self.count = 0
        self.sum = 0.0
        self.kind_count = {k: 0 for k in KINDS}
        self.kind_sum = {k: 0.0 for k in KINDS}

    def add(self, r, sign=1):
        self.count += sign
        self.sum += sign * r[3]
        self.kind_count[r[2]] += sign
        self.kind_sum[r[2]] += sign * r[3]

    def total(self):
        return (self.count, self.sum, self.sum / self.count)

    def groups(self):
        return sorted((k, self.kind_count[k], self.kind_sum[k]) for k in KINDS if self.kind_count[k])


# ---------------------------------------------------------------- plumbing
class Failure(Exception):
    def __init__(self, engine, sql, error):
        super().__init__(f"{engine}: {error}")
        self.engine, self.sql, self.error = engine, sql, error


class Engine:
    def __init__(self, name, port, tarn):
        self.name, self.port, self.tarn = name, port, tarn
        self.conn = None
        self.failed = {}  # phase -> Failure
        self.version = ""

    def connect(self):
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(
                host="127.0.0.1", port=self.port, user="tarn", dbname="tarn", autocommit=True
            )
        return self.conn

    def execute(self, sql, params=None, fetch=False, prepare=None):
        try:
            with self.connect().cursor() as cur:
                cur.execute(sql, params, prepare=prepare)
                return cur.fetchall() if fetch else None
        except psycopg.Error as e:
            raise Failure(self.name, sql, error_text(e)) from e

    def copy(self, sql, chunk):
        try:
            with self.connect().cursor() as cur:
                with cur.copy(sql) as cp:
                    cp.write(chunk)
        except psycopg.Error as e:
            raise Failure(self.name, sql + "  -- then CopyData rows like: " + chunk[:80].decode(errors="replace").split("\n")[0], error_text(e)) from e

    def table_sql(self, name, events=False):
        return f"CREATE TABLE {name} {COLUMNS}" + (f" {TARN_EVENTS_WITH}" if events and self.tarn else "")

    def reset(self):
        """A fresh connection (after an error the old one may be in any state)."""
        try:
            if self.conn is not None:
                self.conn.close()
        except Exception:
            pass
        self.conn = None


def error_text(e):
    state = getattr(e, "sqlstate", None)
    text = str(e).strip()
    return f"{text} (SQLSTATE {state})" if state else text


def ms(seconds):
    return seconds * 1000.0


def median(xs):
    return statistics.median(xs) if xs else None


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def close(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def check_total(engine, got, exp, what):
    if len(got) != 1:
        raise Failure(engine.name, Q_TOTAL, f"wrong answer {what}: {got!r}")
    c, s, a = got[0]
    ec, es, ea = exp
    if int(c) != ec or not close(float(s), es) or not close(float(a), ea):
        raise Failure(engine.name, Q_TOTAL, f"wrong answer {what}: got {got[0]!r}, expected {exp!r}")


def check_groups(engine, got, exp, what):
    norm = sorted((k, int(c), float(s)) for k, c, s in got)
    if len(norm) != len(exp) or any(
        g[0] != e[0] or g[1] != e[1] or not close(g[2], e[2]) for g, e in zip(norm, exp)
    ):
        raise Failure(engine.name, Q_GROUP, f"wrong answer {what}: got {norm!r}, expected {exp!r}")


def fmt(x, digits=0):
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}"


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.{digits}f}x"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- phase 1
def phase_ingest(engine, res):
    rng = random.Random(SEED)
    ids = list(range(1, INGEST_ROWS + 1))
    chunks = copy_chunks(ids, COPY_CHUNK)
    n_old = min(UPSERT_ROWS // 2, INGEST_ROWS)
    n_new = UPSERT_ROWS - n_old
    old = rng.sample(ids, n_old)
    new = list(range(INGEST_ROWS + 1, INGEST_ROWS + n_new + 1))
    # Each statement: half existing keys, half new ones, shuffled together.
    h_old = UPSERT_BATCH // 2
    h_new = UPSERT_BATCH - h_old
    stmts_ids = []
    oi = ni = 0
    while oi < len(old) or ni < len(new):
        batch = old[oi : oi + h_old] + new[ni : ni + h_new]
        oi, ni = oi + h_old, ni + h_new
        rng.shuffle(batch)
        stmts_ids.append(batch)
    exp = Expected()
    for i in ids:
        exp.add(row(i))
    copy_exp = exp.total()
    for i in old:
        exp.add(row(i), -1)
        exp.add(after_upsert(i, True))
    for i in new:
        exp.add(after_upsert(i, False))
    upsert_exp = exp.total()

    res["copy_s"], res["upsert_s"] = [], []
    res["copy_statements"], res["upsert_statements"] = len(chunks), len(stmts_ids)
    phase_start = time.perf_counter()
    for rep in range(1, INGEST_RUNS + 1):
        if rep > 1 and time.perf_counter() - phase_start > BUDGET:
            res["cut"] = f"stopped after {rep - 1} of {INGEST_RUNS} repetitions (BUDGET={BUDGET} s)"
            log(f"{engine.name} ingest: {res['cut']}")
            break
        table = f"ingest_{rep}"
        engine.execute(f"DROP TABLE IF EXISTS {table}")
        engine.execute(engine.table_sql(table))
        t0 = time.perf_counter()
        for chunk in chunks:
            engine.copy(copy_sql(table), chunk)
        res["copy_s"].append(time.perf_counter() - t0)
        check_total(engine, engine.execute(Q_TOTAL.replace("events", table), fetch=True), copy_exp, f"after COPY into {table}")
        stmts = [upsert_sql(table, b, 1) for b in stmts_ids]
        t0 = time.perf_counter()
        for s in stmts:
            engine.execute(s)
        res["upsert_s"].append(time.perf_counter() - t0)
        check_total(engine, engine.execute(Q_TOTAL.replace("events", table), fetch=True), upsert_exp, f"after the upserts into {table}")
        log(f"{engine.name} ingest rep {rep}: COPY {INGEST_ROWS / res['copy_s'][-1]:,.0f} rows/s, "
            f"upsert {UPSERT_ROWS / res['upsert_s'][-1]:,.0f} rows/s")
        if engine.tarn and rep == INGEST_RUNS:
            try:
                res["tarn_tables"] = tarn_tables(engine)
            except Failure as f:
                res["tarn_tables_error"] = f
        engine.execute(f"DROP TABLE {table}")


# ---------------------------------------------------------------- phases 2 and 3
class EventsModel:
    """The lookup/scan table's expected contents, shared by both engines."""

    def __init__(self):
        rng = random.Random(SEED + 1)
        self.updated = rng.sample(range(1, ROWS + 1), UPDATES)
        self.updated_set = set(self.updated)
        self.update_batches = [self.updated[s : s + UPSERT_BATCH] for s in range(0, UPDATES, UPSERT_BATCH)]
        exp = Expected()
        for i in range(1, ROWS + 1):
            exp.add(after_upsert(i, True) if i in self.updated_set else row(i))
        self.total, self.groups = exp.total(), exp.groups()
        self.lookup_keys = [
            [rng.randint(1, ROWS) for _ in range(LOOKUPS)] for _ in range(LOOKUP_RUNS)
        ]
        self.updated_keys = [rng.choice(self.updated) for _ in range(LOOKUPS)] if self.updated else []
        self.warm_keys = [rng.randint(1, ROWS) for _ in range(min(500, LOOKUPS))]

    def expect(self, i):
        return after_upsert(i, True) if i in self.updated_set else row(i)


def tarn_tables(engine):
    try:
        with engine.connect().cursor() as cur:
            cur.execute("SELECT * FROM tarn_tables")
            cols = [d.name for d in cur.description]
            return cols, cur.fetchall()
    except psycopg.Error as e:
        raise Failure(engine.name, "SELECT * FROM tarn_tables", error_text(e)) from e


def phase_setup(engine, model, res):
    engine.execute("DROP TABLE IF EXISTS events")
    res["create_sql"] = engine.table_sql("events", events=True)
    engine.execute(res["create_sql"])
    chunks = copy_chunks(list(range(1, ROWS + 1)), LOAD_CHUNK)
    t0 = time.perf_counter()
    for chunk in chunks:
        engine.copy(copy_sql("events"), chunk)
    res["load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.execute("VACUUM events")
    res["vacuum_load_s"] = time.perf_counter() - t0
    stmts = [upsert_sql("events", b, 1) for b in model.update_batches]
    t0 = time.perf_counter()
    for s in stmts:
        engine.execute(s)
    res["update_s"] = time.perf_counter() - t0
    log(f"{engine.name} events: load {ROWS / res['load_s']:,.0f} rows/s, VACUUM {res['vacuum_load_s']:.2f} s, "
        f"{UPDATES} updates {UPDATES / res['update_s']:,.0f} rows/s")
    if engine.tarn:
        res["tarn_tables_before"] = tarn_tables(engine)
        if TARN_DATA:
            res["disk_before"] = du(TARN_DATA)
    else:
        res["disk_before"] = engine.execute("SELECT pg_total_relation_size('events')", fetch=True)[0][0]


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def phase_lookups(engine, model, res):
    conn = engine.connect()
    bad = []

    def run(keys):
        lat = []
        with conn.cursor() as cur:
            for k in keys:
                t0 = time.perf_counter_ns()
                cur.execute(LOOKUP_SQL, (Int8(k),), prepare=True)
                r = cur.fetchall()
                lat.append((time.perf_counter_ns() - t0) / 1e6)
                exp = model.expect(k)
                if len(r) != 1 or tuple(r[0][:3]) != exp[:3] or float(r[0][3]) != exp[3]:
                    bad.append((k, r, exp))
        return lat

    try:
        run(model.warm_keys)
        phase_start = time.perf_counter()
        passes = []
        for keys in model.lookup_keys:
            if passes and time.perf_counter() - phase_start > BUDGET:
                res["cut"] = f"stopped after {len(passes)} of {LOOKUP_RUNS} passes (BUDGET={BUDGET} s)"
                log(f"{engine.name} lookups: {res['cut']}")
                break
            passes.append(run(keys))
        upd = run(model.updated_keys)
    except psycopg.Error as e:
        raise Failure(engine.name, LOOKUP_SQL.replace("%s", "$1") + " (prepared, int8 parameter)", error_text(e)) from e
    if bad:
        raise Failure(engine.name, LOOKUP_SQL.replace("%s", "$1"),
                      f"wrong answer for {len(bad)} keys, e.g. id {bad[0][0]}: got {bad[0][1]!r}, expected {bad[0][2]!r}")
    res["p50"] = median([percentile(p, 50) for p in passes])
    res["p99"] = median([percentile(p, 99) for p in passes])
    res["mean"] = median([statistics.fmean(p) for p in passes])
    res["upd_p50"] = percentile(upd, 50)
    res["upd_p99"] = percentile(upd, 99)
    res["qps"] = 1000.0 / res["mean"]
    # The floor of this client and the wire: a prepared statement that reads no table.
    try:
        lat = []
        with conn.cursor() as cur:
            for _ in range(min(LOOKUPS, 2000)):
                t0 = time.perf_counter_ns()
                cur.execute("SELECT 1", prepare=True)
                cur.fetchall()
                lat.append((time.perf_counter_ns() - t0) / 1e6)
        res["floor_p50"] = percentile(lat, 50)
    except psycopg.Error as e:
        res["floor_error"] = error_text(e)
        engine.reset()
    log(f"{engine.name} lookups: p50 {res['p50']:.3f} ms, p99 {res['p99']:.3f} ms; updated keys p50 {res['upd_p50']:.3f} ms")


def phase_scans(engine, model, res, state):
    for name, sql, check, exp in (
        ("total", Q_TOTAL, check_total, model.total),
        ("group", Q_GROUP, check_groups, model.groups),
    ):
        times = []
        phase_start = time.perf_counter()
        for i in range(SCAN_RUNS + 1):  # the first one warms up and is not counted
            if len(times) >= 1 and time.perf_counter() - phase_start > BUDGET:
                res.setdefault("cut", []).append(f"{name} {state}: {len(times)} of {SCAN_RUNS} runs (BUDGET={BUDGET} s)")
                break
            t0 = time.perf_counter()
            got = engine.execute(sql, fetch=True)
            dt = time.perf_counter() - t0
            check(engine, got, exp, state)
            if i:
                times.append(dt)
        res[f"{name}_{state}"] = median(times)
    log(f"{engine.name} scans {state}: total {ms(res['total_' + state]):.1f} ms, group {ms(res['group_' + state]):.1f} ms")


def phase_vacuum(engine, res):
    t0 = time.perf_counter()
    engine.execute("VACUUM events")
    res["vacuum_s"] = time.perf_counter() - t0
    if engine.tarn:
        res["tarn_tables_after"] = tarn_tables(engine)


# ---------------------------------------------------------------- report
def md_rows(cols, rows):
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join("" if v is None else str(v) for v in r) + " |")
    return "\n".join(out)


def machine_info(engines):
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""

    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = sh("awk '/MemTotal/ {printf \"%.0f GiB\", $2/1048576}' /proc/meminfo")
    commit = sh("git rev-parse --short HEAD")
    dirty = sh("git status --porcelain --untracked-files=no | head -1")
    lines = [
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: nproc {os.cpu_count()} ({sh('nproc')} usable), {cpu}, {mem}, {platform.system()} {platform.release()}",
        f"- Tarn: release build, commit {commit}{' + uncommitted changes' if dirty else ''}"
        + (f", binary built {os.environ['TARN_BIN_MTIME']}" if os.environ.get("TARN_BIN_MTIME") else ""),
    ]
    for e in engines:
        if not e.tarn and e.version:
            lines.append(f"- PostgreSQL: {e.version}, default settings (fsync on, synchronous_commit on, shared_buffers 128MB)")
    lines.append(
        f"- client: Python {platform.python_version()}, psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), one connection per engine, loopback TCP, autocommit"
    )
    lines.append(
        f"- sizes: INGEST_ROWS={INGEST_ROWS} UPSERT_ROWS={UPSERT_ROWS} INGEST_RUNS={INGEST_RUNS} COPY_CHUNK={COPY_CHUNK} "
        f"UPSERT_BATCH={UPSERT_BATCH} ROWS={ROWS} UPDATES={UPDATES} LOOKUPS={LOOKUPS} LOOKUP_RUNS={LOOKUP_RUNS} "
        f"SCAN_RUNS={SCAN_RUNS} LOAD_CHUNK={LOAD_CHUNK} COPY_FORMAT={COPY_FORMAT} SEED={SEED} BUDGET={BUDGET}"
    )
    return "\n".join(lines)


def tarn_tables_md(tt):
    cols, rows = tt
    return md_rows(cols, rows)


def report(engines, results, elapsed):
    T = next((e for e in engines if e.tarn), None)
    P = next((e for e in engines if not e.tarn), None)
    rt = results.get("Tarn", {})
    rp = results.get("PostgreSQL", {})
    out = []
    today = datetime.date.today().isoformat()
    out.append(f"# {today}: change store (`benchmarks/change_store.sh`)\n")
    out.append(machine_info(engines) + "\n")

    def val(res, key, f=lambda x: x):
        v = res.get(key)
        return None if v is None else f(v)

    # ---- 1
    out.append("## 1. Upsert ingest over the wire (rows/s, median of %d fresh tables)\n" % INGEST_RUNS)
    rows = []
    for key, label, n in (
        ("copy_s", f"COPY FROM STDIN ({COPY_FORMAT}) of {INGEST_ROWS:,} rows into an empty PK table, {COPY_CHUNK:,} rows per statement", INGEST_ROWS),
        ("upsert_s", f"INSERT ... ON CONFLICT (id) DO UPDATE of {UPSERT_ROWS:,} rows, {UPSERT_BATCH} per statement, half new keys", UPSERT_ROWS),
    ):
        t = val(rt.get("ingest", {}), key, median)
        p = val(rp.get("ingest", {}), key, median)
        tr = n / t if t else None
        pr = n / p if p else None
        rows.append((label, fmt(tr), fmt(ms(t), 1) if t else "n/a", fmt(pr), fmt(ms(p), 1) if p else "n/a", ratio(tr, pr)))
    out.append(md_rows(["workload", "Tarn rows/s", "Tarn ms", "PostgreSQL rows/s", "PostgreSQL ms", "Tarn / PG (> 1: Tarn faster)"], rows))
    per = []
    for name, res in (("Tarn", rt), ("PostgreSQL", rp)):
        ing = res.get("ingest", {})
        if ing.get("copy_s"):
            per.append(f"- {name} per repetition, COPY ms: {', '.join(fmt(ms(x), 1) for x in ing['copy_s'])}; "
                       f"upsert ms: {', '.join(fmt(ms(x), 1) for x in ing.get('upsert_s', []))}")
    if per:
        out.append("\n" + "\n".join(per))
    verdicts = []
    for key, what, n in (("copy_s", "COPY", INGEST_ROWS), ("upsert_s", "upsert", UPSERT_ROWS)):
        t = val(rt.get("ingest", {}), key, median)
        p = val(rp.get("ingest", {}), key, median)
        if t:
            ok = n / t >= 100_000 and (p is None or t < p)
            verdicts.append(f"{what} {'met' if ok else 'missed'}")
    out.append("\nTarget (issue): ≥ 100,000 rows/s on 2 cores and ahead of PostgreSQL, for both"
               + (f": {', '.join(verdicts)}." if verdicts else "."))
    if "tarn_tables" in rt.get("ingest", {}):
        out.append(f"\nTarn `tarn_tables` after the last repetition's upserts (default table options):\n\n{tarn_tables_md(rt['ingest']['tarn_tables'])}")
    out.append("")

    # ---- 2
    st, sp = rt.get("setup", {}), rp.get("setup", {})
    out.append(f"## 2. Point lookups with uncompacted changes\n")
    out.append(
        f"Table `events` {COLUMNS}: {ROWS:,} rows by COPY ({LOAD_CHUNK:,} per statement), `VACUUM events`, then "
        f"{UPDATES:,} random rows ({100 * UPDATES / max(ROWS, 1):.0f}%) upserted by INSERT ... ON CONFLICT DO UPDATE "
        f"({UPSERT_BATCH} per statement). Tarn: `{st.get('create_sql', 'CREATE TABLE events ... ' + TARN_EVENTS_WITH)}`; "
        "PostgreSQL: the same without WITH.\n"
    )
    rows = []
    for label, key, n in (
        (f"load {ROWS:,} rows by COPY, rows/s", "load_s", ROWS),
        (f"{UPDATES:,} upserts of existing rows after VACUUM, rows/s", "update_s", UPDATES),
    ):
        t, p = st.get(key), sp.get(key)
        tr, pr = (n / t if t else None), (n / p if p else None)
        rows.append((label, fmt(tr), fmt(pr), ratio(tr, pr)))
    t, p = st.get("vacuum_load_s"), sp.get("vacuum_load_s")
    rows.append(("VACUUM after the load, s", fmt(t, 2), fmt(p, 2), ratio(t, p)))
    t, p = st.get("disk_before"), sp.get("disk_before")
    rows.append(("size with the updates, MiB (Tarn: data folder; PG: pg_total_relation_size)",
                 fmt(t / 2**20, 1) if t else "n/a", fmt(p / 2**20, 1) if p else "n/a", ratio(t, p)))
    out.append(md_rows(["setup", "Tarn", "PostgreSQL", "Tarn / PG"], rows))
    if "tarn_tables_before" in st:
        out.append(f"\nTarn `SELECT * FROM tarn_tables` before the lookups:\n\n{tarn_tables_md(st['tarn_tables_before'])}")
    lt, lp = rt.get("lookups", {}), rp.get("lookups", {})
    out.append(
        f"\nPrepared `SELECT * FROM events WHERE id = $1` (int8 parameter), one client, sequential; "
        f"{LOOKUP_RUNS} passes of {LOOKUPS:,} uniformly random keys (median of the passes' percentiles), "
        f"plus one pass of {LOOKUPS:,} keys drawn from the updated rows. Latency in ms, client-measured round trip.\n"
    )
    rows = []
    for label, key in (("random keys p50", "p50"), ("random keys p99", "p99"), ("random keys mean", "mean"),
                       ("updated keys p50", "upd_p50"), ("updated keys p99", "upd_p99")):
        t, p = lt.get(key), lp.get(key)
        rows.append((label, fmt(t, 3), fmt(p, 3), ratio(t, p)))
    rows.append(("prepared `SELECT 1` p50 (client + wire floor)", fmt(lt.get("floor_p50"), 3), fmt(lp.get("floor_p50"), 3),
                 ratio(lt.get("floor_p50"), lp.get("floor_p50"))))
    rows.append(("lookups/s (one client, 1 / mean)", fmt(lt.get("qps")), fmt(lp.get("qps")), "(see mean)"))
    out.append(md_rows(["latency, ms", "Tarn", "PostgreSQL", "Tarn / PG (< 1: Tarn faster)"], rows))
    for name, res in (("Tarn", lt), ("PostgreSQL", lp)):
        if res.get("floor_error"):
            out.append(f"\n{name}: prepared `SELECT 1` failed: `{res['floor_error']}`")
    p50 = lt.get("p50")
    out.append("\nTarget (issue): p50 < 0.5 ms" + (f": {'met' if p50 < 0.5 else 'missed'}.\n" if p50 else ".\n"))

    # ---- 3
    out.append("## 3. Full-scan aggregates, uncompacted vs compacted\n")
    sc_t, sc_p = rt.get("scans", {}), rp.get("scans", {})
    out.append(
        f"Median of {SCAN_RUNS} runs after one warm-up, ms. \"Uncompacted\": right after the {UPDATES:,} upserts "
        "(Tarn merges them on read); \"compacted\": after `VACUUM events` (Tarn folds them into the base; "
        "PostgreSQL vacuums its dead tuples). Ratios are of times: below 1 means faster.\n"
    )
    rows = []
    for label, name in (("`" + Q_TOTAL + "`", "total"), ("`" + Q_GROUP + "`", "group")):
        tu, tc = sc_t.get(f"{name}_uncompacted"), sc_t.get(f"{name}_compacted")
        pu, pc = sc_p.get(f"{name}_uncompacted"), sc_p.get(f"{name}_compacted")
        rows.append((label,
                     fmt(ms(tu), 1) if tu else "n/a", fmt(ms(tc), 1) if tc else "n/a", ratio(tu, tc),
                     fmt(ms(pu), 1) if pu else "n/a", fmt(ms(pc), 1) if pc else "n/a", ratio(pu, pc),
                     ratio(tu, pu), ratio(tc, pc)))
    out.append(md_rows(["query", "Tarn uncompacted", "Tarn compacted", "Tarn unc/comp",
                        "PG before VACUUM", "PG after VACUUM", "PG before/after",
                        "Tarn/PG uncompacted", "Tarn/PG compacted"], rows))
    t, p = sc_t.get("vacuum_s"), sc_p.get("vacuum_s")
    out.append(f"\n`VACUUM events` with the {UPDATES:,} changes: Tarn {fmt(t, 2)} s, PostgreSQL {fmt(p, 2)} s.")
    if "tarn_tables_after" in sc_t:
        out.append(f"\nTarn `tarn_tables` after that VACUUM:\n\n{tarn_tables_md(sc_t['tarn_tables_after'])}")
    verdicts = []
    for name in ("total", "group"):
        tu, tc = sc_t.get(f"{name}_uncompacted"), sc_t.get(f"{name}_compacted")
        if tu and tc:
            verdicts.append(f"{name} {'met' if tu / tc <= 1.3 else 'missed'}")
    out.append("\nTarget (issue): uncompacted / compacted ≤ 1.3x" + (f": {', '.join(verdicts)}.\n" if verdicts else ".\n"))

    # ---- errors
    errs = []
    for e in engines:
        for phase, f in e.failed.items():
            errs.append(f"- {e.name}, phase {phase}: `{f.error}`\n  SQL: `{truncate(f.sql)}`")
    if rt.get("ingest", {}).get("tarn_tables_error"):
        f = rt["ingest"]["tarn_tables_error"]
        errs.append(f"- Tarn, tarn_tables: `{f.error}`\n  SQL: `{f.sql}`")
    cuts = []
    for name, res in (("Tarn", rt), ("PostgreSQL", rp)):
        for phase in ("ingest", "lookups", "scans"):
            c = res.get(phase, {}).get("cut")
            if c:
                cuts.append(f"- {name}, {phase}: {'; '.join(c) if isinstance(c, list) else c}")
    if cuts:
        out.append("## Cut short by the time budget\n\n" + "\n".join(cuts) + "\n")
    if errs:
        out.append("## Errors\n\n" + "\n".join(errs) + "\n")
    out.append(
        "Every timed statement's effect was checked (row counts and exact sums after each ingest, every lookup's row, "
        f"every aggregate's result); a wrong answer is listed as an error. Whole run: {elapsed:.0f} s.\n"
    )
    return "\n".join(out)


def truncate(s, n=400):
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n] + f" ... ({len(s)} chars)"


# ---------------------------------------------------------------- main
def main():
    start = time.perf_counter()
    engines = []
    if ONLY in ("", "tarn"):
        engines.append(Engine("Tarn", TARN_PORT, True))
    if ONLY in ("", "pg"):
        engines.append(Engine("PostgreSQL", PG_PORT, False))
    results = {e.name: {} for e in engines}
    for e in engines:
        e.connect()
        if not e.tarn:
            e.version = e.execute("SHOW server_version", fetch=True)[0][0]

    def attempt(e, phase, fn, *args, needs=()):
        if any(p in e.failed for p in needs):
            return
        try:
            fn(e, *args)
        except Failure as f:
            e.failed[phase] = f
            log(f"{e.name} {phase} FAILED: {f.error}\n    SQL: {truncate(f.sql)}")
            e.reset()
        except Exception as x:  # a bug here, or a dropped connection
            e.failed[phase] = Failure(e.name, "(client)", f"{type(x).__name__}: {x}")
            log(f"{e.name} {phase} FAILED: {traceback.format_exc()}")
            e.reset()

    for e in engines:
        results[e.name]["ingest"] = {}
        attempt(e, "1 ingest", phase_ingest, results[e.name]["ingest"])
    log("building the events model")
    model = EventsModel()
    for e in engines:
        results[e.name]["setup"] = {}
        attempt(e, "2 setup", phase_setup, model, results[e.name]["setup"])
    for e in engines:
        results[e.name]["lookups"] = {}
        attempt(e, "2 lookups", phase_lookups, model, results[e.name]["lookups"], needs=("2 setup",))
    for e in engines:
        results[e.name]["scans"] = {}
        attempt(e, "3 scans uncompacted", phase_scans, model, results[e.name]["scans"], "uncompacted", needs=("2 setup",))
    for e in engines:
        attempt(e, "3 vacuum", phase_vacuum, results[e.name]["scans"], needs=("2 setup",))
    for e in engines:
        attempt(e, "3 scans compacted", phase_scans, model, results[e.name]["scans"], "compacted", needs=("2 setup", "3 vacuum"))

    text = report(engines, results, time.perf_counter() - start)
    print(text)
    path = REPORT
    if not path and ONLY == "":
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                            f"{datetime.date.today().isoformat()}-change_store.md")
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
