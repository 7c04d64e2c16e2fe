"""TPC-H "analytics" suite: the 22 TPC-H queries on the same data in five engines.

Data: TPC-H at SF 1 (full) or SF 0.1 (quick) from `tpchgen-cli` (the Rust port of dbgen:
the spec's deterministic generator, so the data does not depend on ctx.seed), written as
Parquet (one file per table, the generator's defaults) and generated once per data folder.

Engines, each on those Parquet files (all loaded first, then run side by side):
  DuckDB          in-process, views over read_parquet(); the reference answer
  DataFusion      in-process (PyPI `datafusion`, the major version of Tarn's DataFusion),
                  the files registered as tables; the anchor of the headline ratio
  PostgreSQL      ctx.pg_dsn, schema `analytics`: COPY (CSV made by pyarrow), then
                  primary keys, one index lineitem (l_partkey, l_suppkey), VACUUM ANALYZE
  Tarn (lance)    ctx.tarn_dsn, schema `analytics_lance`: keyless tables `USING lance`
                  (the default base), loaded by COPY ... FROM STDIN (CSV)
  Tarn (parquet)  same, schema `analytics_parquet`, tables `USING parquet`

Query by query, each engine runs it once to warm up (its answer is checked against DuckDB's:
row count, values with a tolerance, order where ORDER BY fixes it), then 1 (quick) or 3
(full) timed rounds over the engines (order reversed every other round); the median is the
query's time. Interleaving the engines spreads the load of anything else on the machine
(the 2-core boxes are shared) evenly over them. A query that fails, times out or answers wrong is a failure, and
takes no part in any total. Totals and ratios are over the queries both sides answered.

Standalone (no runner):
    /var/tmp/tarn-bench-venv/bin/python benchmarks/runner/suites/analytics.py [--quick]
        [--sf 0.1] [--engines duckdb,datafusion,postgres,tarn-lance,tarn-parquet]
        [--tarn-bin PATH | --tarn-dsn DSN] [--pg-dsn DSN] [--work DIR] [--out DIR] [--keep]
It starts a throwaway PostgreSQL 15 (port 57432) and a Tarn (port 57433, from
--tarn-bin, default /work/target-main/release/tarn when it exists) unless DSNs are given,
through the runner's servers.py (so with the runner's settings), and stops them after.

Knobs (environment): TARN_TPCH_SF (scale factor), TARN_TPCH_DATA (a folder that keeps the
generated data between runs), TARN_TPCH_RUNS (timed runs), TARN_TPCH_TIMEOUT (seconds per
statement on the wire engines), TARN_TPCH_COPY_ROWS (rows per COPY statement),
TARN_TPCH_ENGINES (as --engines), TARN_TPCH_PK=1 (adds "Tarn (lance, pk)": the same tables
with their primary keys, i.e. the change store, compacted by VACUUM before the queries).
"""
from __future__ import annotations

import datetime as _dt
import decimal
import io
import json
import math
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import common  # noqa: E402  (benchmarks/runner/common.py)
from common import SuiteResult, error_text, log, md_table, truncate  # noqa: E402

NAME = "analytics"
REQUIREMENTS = [
    "psycopg[binary]>=3.1,<4",
    "pyarrow>=15",
    "duckdb>=1.1",
    "datafusion>=54,<55",
    "tpchgen-cli>=2",
    "matplotlib>=3.5",
]

TPCH_DIR = pathlib.Path(__file__).resolve().parents[1] / "tpch"
QUERY_DIR = TPCH_DIR / "queries"

DUCKDB = "DuckDB"
DATAFUSION = "DataFusion"
PG = common.PG
TARN_LANCE = "Tarn (lance)"
TARN_PARQUET = "Tarn (parquet)"
TARN_PK = "Tarn (lance, pk)"
ENGINE_KEYS = {
    "duckdb": DUCKDB,
    "datafusion": DATAFUSION,
    "postgres": PG,
    "tarn-lance": TARN_LANCE,
    "tarn-parquet": TARN_PARQUET,
    "tarn-pk": TARN_PK,
}
# Reference answers: the first of these that answered a query.
REFERENCE_ORDER = [DUCKDB, DATAFUSION, PG]

# ------------------------------------------------------------------ schema
# The dbgen DDL (dss.ddl) with PostgreSQL types that every engine here takes: keys BIGINT
# (tpchgen writes int64), small integers INT, money and quantities NUMERIC(15,2), dates
# DATE, CHAR(n)/VARCHAR(n) as TEXT (no blank padding anywhere).
B, I, N, D, T = "BIGINT", "INT", "NUMERIC(15,2)", "DATE", "TEXT"
TABLES = {
    "region": ([("r_regionkey", B), ("r_name", T), ("r_comment", T)], ["r_regionkey"]),
    "nation": ([("n_nationkey", B), ("n_name", T), ("n_regionkey", B), ("n_comment", T)],
               ["n_nationkey"]),
    "supplier": ([("s_suppkey", B), ("s_name", T), ("s_address", T), ("s_nationkey", B),
                  ("s_phone", T), ("s_acctbal", N), ("s_comment", T)], ["s_suppkey"]),
    "customer": ([("c_custkey", B), ("c_name", T), ("c_address", T), ("c_nationkey", B),
                  ("c_phone", T), ("c_acctbal", N), ("c_mktsegment", T), ("c_comment", T)],
                 ["c_custkey"]),
    "part": ([("p_partkey", B), ("p_name", T), ("p_mfgr", T), ("p_brand", T), ("p_type", T),
              ("p_size", I), ("p_container", T), ("p_retailprice", N), ("p_comment", T)],
             ["p_partkey"]),
    "partsupp": ([("ps_partkey", B), ("ps_suppkey", B), ("ps_availqty", I),
                  ("ps_supplycost", N), ("ps_comment", T)], ["ps_partkey", "ps_suppkey"]),
    "orders": ([("o_orderkey", B), ("o_custkey", B), ("o_orderstatus", T), ("o_totalprice", N),
                ("o_orderdate", D), ("o_orderpriority", T), ("o_clerk", T),
                ("o_shippriority", I), ("o_comment", T)], ["o_orderkey"]),
    "lineitem": ([("l_orderkey", B), ("l_partkey", B), ("l_suppkey", B), ("l_linenumber", I),
                  ("l_quantity", N), ("l_extendedprice", N), ("l_discount", N), ("l_tax", N),
                  ("l_returnflag", T), ("l_linestatus", T), ("l_shipdate", D),
                  ("l_commitdate", D), ("l_receiptdate", D), ("l_shipinstruct", T),
                  ("l_shipmode", T), ("l_comment", T)], ["l_orderkey", "l_linenumber"]),
}
# PostgreSQL only: the foreign key Q17's and Q20's correlated subqueries probe. Without it
# PostgreSQL runs them as a scan of lineitem per outer row (hours at SF 1).
PG_EXTRA_INDEXES = ["CREATE INDEX lineitem_part_supp ON lineitem (l_partkey, l_suppkey)"]

# ORDER BY of each query as (result column index, descending); [] = one row or no order.
ORDER_KEYS = {
    1: [(0, False), (1, False)],
    2: [(0, True), (2, False), (1, False), (3, False)],
    3: [(1, True), (2, False)],
    4: [(0, False)],
    5: [(1, True)],
    6: [],
    7: [(0, False), (1, False), (2, False)],
    8: [(0, False)],
    9: [(0, False), (1, True)],
    10: [(2, True)],
    11: [(1, True)],
    12: [(0, False)],
    13: [(1, True), (0, True)],
    14: [],
    15: [(0, False)],
    16: [(3, True), (0, False), (1, False), (2, False)],
    17: [],
    18: [(4, True), (3, False)],
    19: [],
    20: [(0, False)],
    21: [(1, True), (0, False)],
    22: [(0, False)],
}
REL_TOL, ABS_TOL = 1e-6, 1e-5


def ddl(table: str, qualified: str, using: str = "", pk: bool = False) -> str:
    cols, key = TABLES[table]
    parts = [f"{c} {t} NOT NULL" for c, t in cols]
    if pk:
        parts.append(f"PRIMARY KEY ({', '.join(key)})")
    return f"CREATE TABLE {qualified} ({', '.join(parts)}){' ' + using if using else ''}"


def load_queries(sf: float) -> dict[int, str]:
    """The 22 query texts (header comments dropped), Q11's FRACTION = 0.0001 / SF."""
    out = {}
    for n in range(1, 23):
        text = (QUERY_DIR / f"q{n:02d}.sql").read_text()
        lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
        sql = "\n".join(lines).strip().rstrip(";")
        if n == 11:
            sql = sql.replace("{fraction}", f"{0.0001 / sf:.10f}".rstrip("0"))
        out[n] = sql
    return out


def qualify(sql: str, schema: str) -> str:
    """The query with every TPC-H table it reads prefixed by `schema.`: a name is a table
    where it starts an item of a FROM list or follows JOIN (a column alias such as Q8's and
    Q9's `nation` stays as it is; the FROM of extract() or substring() lists no table)."""
    out, last = [], 0
    depth, from_depths, expect = 0, [], False
    for m in re.finditer(r"'[^']*'|[A-Za-z_][A-Za-z0-9_]*|\S", sql):
        tok = m.group(0)
        low = tok.lower()
        in_from = bool(from_depths) and from_depths[-1] == depth
        if tok == "(":
            depth += 1
        elif tok == ")":
            if in_from:
                from_depths.pop()
            depth -= 1
        elif low in ("from", "join"):
            if low == "from" and not in_from:
                from_depths.append(depth)
            expect = True
            continue
        elif tok == "," and in_from:
            expect = True
            continue
        elif in_from and low in ("where", "group", "order", "having", "limit", "union"):
            from_depths.pop()
        elif expect and low in TABLES:
            out.append(sql[last:m.start()] + f"{schema}.{tok}")
            last = m.end()
        expect = False
    out.append(sql[last:])
    return "".join(out)


# ------------------------------------------------------------------ data
def tpchgen_bin() -> str:
    here = pathlib.Path(sys.executable).parent / "tpchgen-cli"
    return str(here) if here.exists() else (shutil.which("tpchgen-cli") or "tpchgen-cli")


def ensure_data(root: pathlib.Path, sf: float) -> pathlib.Path:
    """Parquet files of every table at scale factor sf under root/sf<sf>, made once."""
    d = root / f"sf{sf:g}"
    marker = d / "_complete"
    if marker.exists() and all((d / f"{t}.parquet").exists() for t in TABLES):
        log(f"analytics: TPC-H SF {sf:g} data reused from {d}")
        return d
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cmd = [tpchgen_bin(), "parquet", "-s", f"{sf:g}", "-o", str(d), "--overwrite", "-q"]
    log(f"analytics: generating TPC-H SF {sf:g}: {' '.join(cmd)}")
    subprocess.run(cmd, check=True)
    version = subprocess.run([tpchgen_bin(), "--version"], capture_output=True, text=True).stdout.strip()
    marker.write_text(json.dumps({"sf": sf, "generator": version,
                                  "seconds": round(time.perf_counter() - t0, 1)}))
    return d


def table_rows(data: pathlib.Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    return {t: pq.ParquetFile(data / f"{t}.parquet").metadata.num_rows for t in TABLES}


def csv_chunks(path: pathlib.Path, rows_per_chunk: int):
    """Yields lists of CSV byte blocks, each list holding about rows_per_chunk rows."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    # pyarrow's CSV writer takes no string_view (what tpchgen writes): cast to string.
    schema = pa.schema([pa.field(x.name, pa.string() if pa.types.is_string_view(x.type) else x.type)
                        for x in f.schema_arrow])
    opts = pcsv.WriteOptions(include_header=False, quoting_style="needed")
    chunk, n = [], 0
    for batch in f.iter_batches(batch_size=min(100_000, rows_per_chunk)):
        buf = io.BytesIO()
        pcsv.write_csv(batch.cast(schema), buf, opts)
        chunk.append(buf.getvalue())
        n += batch.num_rows
        if n >= rows_per_chunk:
            yield chunk
            chunk, n = [], 0
    if chunk:
        yield chunk


def copy_table(conn, qualified: str, path: pathlib.Path, rows_per_copy: int) -> int:
    """COPY qualified FROM STDIN (csv), rows_per_copy rows per statement; returns bytes sent.
    A failure is a common.Failure naming the statement and the rows it carried."""
    sent, first = 0, 0
    for chunk in csv_chunks(path, rows_per_copy):
        sql = f"COPY {qualified} FROM STDIN WITH (FORMAT csv)"
        lines = sum(block.count(b"\n") for block in chunk)  # one line per row: no newline in TPC-H text
        try:
            with conn.cursor() as cur:
                with cur.copy(sql) as cp:
                    for block in chunk:
                        cp.write(block)
                        sent += len(block)
        except Exception as e:  # noqa: BLE001
            raise common.Failure(f"{sql} -- rows {first + 1}..{first + lines} of {path.name}",
                                 f"{type(e).__name__}: {error_text(e)}") from e
        first += lines
    return sent


def dir_size(p: pathlib.Path) -> int | None:
    if not p.exists():
        return None
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


# ------------------------------------------------------------------ results
def norm(v):
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float, decimal.Decimal)):
        return float(v)
    if isinstance(v, (_dt.date, _dt.datetime)):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return a == b


def cmp(a, b) -> int:
    """-1, 0 or 1, with `same` as equality (for checking an engine's own order)."""
    if same(a, b):
        return 0
    if a is None or b is None:  # NULLs: not in TPC-H results; order them last
        return 1 if a is None else -1
    try:
        return -1 if a < b else 1
    except TypeError:
        return -1 if str(a) < str(b) else 1


def sort_key(row, keys):
    def k(v):
        if isinstance(v, float):
            return (0, round(v, 4), "")
        if v is None:
            return (2, 0.0, "")
        return (1, 0.0, str(v))
    return tuple(k(row[i]) for i, _ in keys) + tuple(k(v) for v in row)


def check_answer(q: int, got: list[tuple], want: list[tuple]) -> str | None:
    """None when got matches want, else what differs."""
    if len(got) != len(want):
        return f"wrong answer: {len(got)} rows, expected {len(want)}"
    if got and len(got[0]) != len(want[0]):
        return f"wrong answer: {len(got[0])} columns, expected {len(want[0])}"
    if all(all(same(a, b) for a, b in zip(g, w)) for g, w in zip(got, want)):
        return None
    keys = ORDER_KEYS[q]
    for i in range(1, len(got)):  # the engine's own rows must follow ORDER BY
        for col, desc in keys:
            c = cmp(got[i - 1][col], got[i][col])
            if c == 0:
                continue
            if (c > 0) != desc:
                return (f"wrong answer: rows {i} and {i + 1} out of ORDER BY order: "
                        f"{got[i - 1]!r} then {got[i]!r}")
            break
    # Rows equal in their ORDER BY keys may come in any order: compare canonically sorted.
    gs, ws = sorted(got, key=lambda r: sort_key(r, keys)), sorted(want, key=lambda r: sort_key(r, keys))
    for i, (g, w) in enumerate(zip(gs, ws)):
        if not all(same(a, b) for a, b in zip(g, w)):
            return f"wrong answer: row {i + 1} (sorted) is {g!r}, expected {w!r}"
    return None


# ------------------------------------------------------------------ engines
class Engine:
    name = "?"
    version = ""

    def setup(self) -> None: ...

    def query(self, sql: str) -> list[tuple]: ...

    def close(self) -> None: ...

    def sql_for(self, sql: str) -> str:
        return sql


class DuckDBEngine(Engine):
    name = DUCKDB

    def __init__(self, data: pathlib.Path):
        self.data = data

    def setup(self):
        import duckdb

        self.version = duckdb.__version__
        self.con = duckdb.connect()
        self.con.execute(f"SET threads = {os.cpu_count() or 2}")
        for t in TABLES:
            self.con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{self.data / (t + '.parquet')}')")

    def query(self, sql):
        return self.con.execute(sql).fetchall()

    def close(self):
        self.con.close()


class DataFusionEngine(Engine):
    """DataFusion as Tarn configures it where that is a setting: PostgreSQL dialect,
    target partitions = cores, a 4 GiB fair spill pool (Tarn's default memory_limit_mb)."""

    name = DATAFUSION

    def __init__(self, data: pathlib.Path):
        self.data = data

    def setup(self):
        import datafusion
        from datafusion import RuntimeEnvBuilder, SessionConfig, SessionContext

        self.version = datafusion.__version__
        config = (SessionConfig({"datafusion.sql_parser.dialect": "PostgreSQL"})
                  .with_target_partitions(os.cpu_count() or 2))
        runtime = RuntimeEnvBuilder().with_fair_spill_pool(4 << 30)
        self.ctx = SessionContext(config, runtime)
        for t in TABLES:
            self.ctx.register_parquet(t, str(self.data / f"{t}.parquet"))

    def query(self, sql):
        batches = self.ctx.sql(sql).collect()
        self._batches = batches
        return batches

    def rows(self, batches):
        import pyarrow as pa

        if not batches:
            return []
        table = pa.Table.from_batches(batches)
        cols = [c.to_pylist() for c in table.columns]
        return list(zip(*cols))

    def close(self):
        self.ctx = None


class WireEngine(Engine):
    """A server over psycopg 3: statements cancelled (cancel request) after `timeout` s."""

    def __init__(self, name, dsn, timeout):
        self.name, self.dsn, self.timeout = name, dsn, timeout
        self.conn = None

    def connect(self):
        import psycopg

        if self.conn is not None and not self.conn.closed:
            return self.conn
        self.conn = psycopg.connect(self.dsn, autocommit=True)
        self.after_connect(self.conn)
        return self.conn

    def after_connect(self, conn): ...

    def execute(self, sql, fetch=False):
        """One setup statement; a failure is a common.Failure naming it."""
        try:
            conn = self.connect()
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if fetch else None
        except Exception as e:  # noqa: BLE001
            raise common.Failure(sql, f"{type(e).__name__}: {error_text(e)}") from e

    def query(self, sql):
        import psycopg

        conn = self.connect()
        timer = threading.Timer(self.timeout, self._cancel, args=(conn,))
        self.cancelled = False
        timer.start()
        try:
            with conn.cursor() as cur:
                cur.execute(self.sql_for(sql))
                return cur.fetchall()
        except psycopg.errors.QueryCanceled as e:
            if self.cancelled:
                raise TimeoutError(f"timed out after {self.timeout:g} s (cancelled); "
                                   f"server said: {error_text(e)}") from e
            raise
        except psycopg.OperationalError:
            try:
                conn.close()
            finally:
                self.conn = None
            raise
        finally:
            timer.cancel()

    def _cancel(self, conn):
        self.cancelled = True
        try:
            conn.cancel_safe(timeout=10)
        except Exception as e:  # noqa: BLE001
            log(f"analytics: cancel on {self.name} failed: {e}")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class PostgresEngine(WireEngine):
    SCHEMA = "analytics"

    def after_connect(self, conn):
        with conn.cursor() as cur:
            cur.execute(f"SET search_path TO {self.SCHEMA}")
            # A session setting, not the server's: hash joins and sorts of SF 1 in memory.
            cur.execute("SET work_mem = '256MB'")

    def version_string(self):
        return self.execute("SHOW server_version", fetch=True)[0][0]

    def load(self, data, rows_per_copy):
        self.version = self.version_string()
        self.execute(f"DROP SCHEMA IF EXISTS {self.SCHEMA} CASCADE")
        self.execute(f"CREATE SCHEMA {self.SCHEMA}")
        t0 = time.perf_counter()
        for t in TABLES:
            self.execute(ddl(t, t))
            copy_table(self.connect(), t, data / f"{t}.parquet", 10**9)
        copy_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        for t, (_, key) in TABLES.items():
            self.execute(f"ALTER TABLE {t} ADD PRIMARY KEY ({', '.join(key)})")
        for stmt in PG_EXTRA_INDEXES:
            self.execute(stmt)
        self.execute("VACUUM ANALYZE")
        index_s = time.perf_counter() - t1
        size = self.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
            f"ON n.oid = c.relnamespace WHERE n.nspname = '{self.SCHEMA}' AND c.relkind = 'r'",
            fetch=True)[0][0]
        return {"copy_s": copy_s, "index_s": index_s, "bytes": int(size or 0)}

    def drop(self):
        self.execute(f"DROP SCHEMA IF EXISTS {self.SCHEMA} CASCADE")


class TarnEngine(WireEngine):
    def __init__(self, name, dsn, timeout, schema, using, pk=False):
        super().__init__(name, dsn, timeout)
        self.schema, self.using, self.pk = schema, using, pk

    def sql_for(self, sql):
        return qualify(sql, self.schema)

    def load(self, data, rows_per_copy):
        self.version = self.execute("SELECT version()", fetch=True)[0][0]
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
        for t in TABLES:
            self.execute(f"DROP TABLE IF EXISTS {self.schema}.{t}")
        t0 = time.perf_counter()
        for t in TABLES:
            self.execute(ddl(t, f"{self.schema}.{t}", self.using, pk=self.pk))
            copy_table(self.connect(), f"{self.schema}.{t}", data / f"{t}.parquet", rows_per_copy)
        copy_s = time.perf_counter() - t0
        out = {"copy_s": copy_s}
        if self.pk:  # fold the change store into the Lance base
            t1 = time.perf_counter()
            for t in TABLES:
                self.execute(f"VACUUM {self.schema}.{t}")
            out["index_s"] = time.perf_counter() - t1
        return out

    def drop(self):
        for t in TABLES:
            self.execute(f"DROP TABLE IF EXISTS {self.schema}.{t}")


# ------------------------------------------------------------------ the run
class Run:
    def __init__(self, ctx, res: SuiteResult):
        self.ctx, self.res = ctx, res
        self.quick = bool(ctx.quick)
        self.sf = float(os.environ.get("TARN_TPCH_SF") or (0.1 if self.quick else 1))
        self.runs = int(os.environ.get("TARN_TPCH_RUNS") or (1 if self.quick else 3))
        self.timeout = float(os.environ.get("TARN_TPCH_TIMEOUT") or (120 if self.quick else 300))
        self.rows_per_copy = int(os.environ.get("TARN_TPCH_COPY_ROWS") or 1_000_000)
        # A query whose warm-up took longer than this gets one timed run, not `runs`.
        self.slow_s = 30.0
        self.workload = f"TPC-H SF{self.sf:g}"
        self.times: dict[str, dict[int, float]] = {}  # engine -> query -> median seconds
        self.all_times: dict[str, dict[int, list[float]]] = {}
        self.answers: dict[str, dict[int, list[tuple]]] = {}
        self.failed: dict[str, dict[int, str]] = {}
        self.loads: dict[str, dict] = {}
        self.versions: dict[str, str] = {}
        self.engines: list[str] = []
        self.single_run: dict[str, list[int]] = {}
        self.down: dict[str, str] = {}

    def wanted(self) -> list[str]:
        spec = os.environ.get("TARN_TPCH_ENGINES")
        if spec:
            keys = [k.strip() for k in spec.split(",") if k.strip()]
            unknown = [k for k in keys if k not in ENGINE_KEYS]
            if unknown:
                raise ValueError(f"unknown engines {unknown}; known: {list(ENGINE_KEYS)}")
            names = [ENGINE_KEYS[k] for k in keys]
        else:
            names = [DUCKDB, DATAFUSION, PG, TARN_LANCE, TARN_PARQUET]
            if os.environ.get("TARN_TPCH_PK") == "1":
                names.append(TARN_PK)
        return names

    def fail(self, engine, q, sql, error):
        self.failed.setdefault(engine, {})[q] = error
        self.res.fail(engine, f"{self.workload} Q{q}", sql, error)

    def one(self, eng: Engine, q: int, sql: str):
        """Seconds and result of one run of query q on eng; None after a failure (recorded)."""
        try:
            t0 = time.perf_counter()
            out = eng.query(sql)
            return time.perf_counter() - t0, out
        except Exception as e:  # noqa: BLE001
            text = str(e) if isinstance(e, TimeoutError) else error_text(e)
            self.fail(eng.name, q, eng.sql_for(sql), f"{type(e).__name__}: {text}")
            if isinstance(eng, WireEngine):
                try:
                    eng.connect()
                except Exception as e2:  # noqa: BLE001
                    self.down[eng.name] = f"server unreachable after Q{q}: {error_text(e2)}"
            return None

    def bench(self, engines: list[Engine], queries: dict[int, str]):
        """Query by query, every engine in turn: the warm-ups, then the timed runs in rounds
        (the engines' order reversed every other round), so that whatever else loads the
        machine meanwhile falls on every engine alike."""
        for eng in engines:
            self.times[eng.name], self.all_times[eng.name], self.answers[eng.name] = {}, {}, {}
        for q, sql in queries.items():
            live = []
            for eng in engines:
                if eng.name in self.down:
                    self.fail(eng.name, q, eng.sql_for(sql), f"not run: {self.down[eng.name]}")
                    continue
                r = self.one(eng, q, sql)
                if r is None:
                    continue
                warm, out = r
                rows = eng.rows(out) if isinstance(eng, DataFusionEngine) else out
                self.answers[eng.name][q] = [tuple(norm(v) for v in row) for row in rows]
                self.all_times[eng.name][q] = []
                if warm > self.slow_s:
                    self.single_run.setdefault(eng.name, []).append(q)
                live.append((eng, warm))
            for rnd in range(self.runs):
                order = live if rnd % 2 == 0 else live[::-1]
                for eng, warm in order:
                    ts = self.all_times[eng.name]
                    if q not in ts or (warm > self.slow_s and ts[q]):
                        continue
                    r = self.one(eng, q, sql)
                    if r is None:
                        del ts[q]
                    else:
                        ts[q].append(r[0])
            for eng, warm in live:
                ts = self.all_times[eng.name].get(q)
                if ts:
                    self.times[eng.name][q] = statistics.median(ts)
            log(f"analytics: Q{q}: " + ", ".join(
                f"{eng.name} {self.times[eng.name][q] * 1e3:.1f} ms" if q in self.times[eng.name]
                else f"{eng.name} failed" for eng in engines))

    def check(self, queries):
        """Every engine's answers against the reference (DuckDB's, else the next)."""
        for q, sql in queries.items():
            ref_engine = next((e for e in REFERENCE_ORDER if q in self.answers.get(e, {})), None)
            if ref_engine is None:
                continue
            want = self.answers[ref_engine][q]
            for e in self.engines:
                if e == ref_engine or q not in self.answers.get(e, {}):
                    continue
                bad = check_answer(q, self.answers[e][q], want)
                if bad:
                    self.times[e].pop(q, None)
                    eng_sql = qualify(sql, self.schema_of.get(e)) if self.schema_of.get(e) else sql
                    self.fail(e, q, eng_sql, f"{bad} (reference: {ref_engine})")

    def go(self):
        ctx, res = self.ctx, self.res
        names = self.wanted()
        data_root = pathlib.Path(os.environ.get("TARN_TPCH_DATA") or (ctx.work / "tpch"))
        t0 = time.perf_counter()
        data = ensure_data(data_root, self.sf)
        self.gen_s = time.perf_counter() - t0
        self.rows = table_rows(data)
        self.parquet_bytes = sum((data / f"{t}.parquet").stat().st_size for t in TABLES)
        queries = load_queries(self.sf)
        self.queries = queries
        self.schema_of = {TARN_LANCE: "analytics_lance", TARN_PARQUET: "analytics_parquet",
                          TARN_PK: "analytics_lance_pk"}

        plan = []
        for n in names:
            if n in (DUCKDB, DATAFUSION):
                plan.append(n)
            elif n == PG:
                if ctx.pg_dsn:
                    plan.append(n)
                else:
                    ctx.note("analytics: PostgreSQL skipped (no PostgreSQL in this run)")
            elif ctx.tarn_dsn:
                plan.append(n)
            else:
                ctx.note(f"analytics: {n} skipped (no Tarn in this run)")

        engines = []
        for n in plan:
            log(f"analytics: {self.workload}: setting up {n}")
            if n == DUCKDB:
                eng = DuckDBEngine(data)
            elif n == DATAFUSION:
                eng = DataFusionEngine(data)
            elif n == PG:
                eng = PostgresEngine(PG, ctx.pg_dsn, self.timeout)
            else:
                using = "USING parquet" if n == TARN_PARQUET else "USING lance"
                eng = TarnEngine(n, ctx.tarn_dsn, self.timeout, self.schema_of[n], using, pk=(n == TARN_PK))
            self.engines.append(n)
            try:
                if isinstance(eng, WireEngine):
                    t1 = time.perf_counter()
                    info = eng.load(data, self.rows_per_copy)
                    info["total_s"] = time.perf_counter() - t1
                    if isinstance(eng, TarnEngine):
                        tarn_data = getattr(ctx, "tarn_data", None)
                        if tarn_data:
                            info["bytes"] = dir_size(pathlib.Path(tarn_data) / eng.schema)
                    self.loads[n] = info
                    log(f"analytics: {n} loaded in {info['total_s']:.1f} s")
                else:
                    eng.setup()
                engines.append(eng)
                version = getattr(eng, "version", "")
                short = re.search(r"\(Tarn [^)]*\)", version) if isinstance(eng, TarnEngine) else None
                self.versions[n] = short.group(0).strip("()") if short else version
            except Exception as e:  # noqa: BLE001
                if isinstance(e, common.Failure):
                    res.fail(n, f"{self.workload} load", e.sql, e.error)
                else:
                    res.fail(n, f"{self.workload} load", "(load)", f"{type(e).__name__}: {error_text(e)}")
                for q in queries:
                    self.failed.setdefault(n, {})[q] = "not run: load failed"
                self.times[n], self.answers[n] = {}, {}
                self.cleanup(eng)
        try:
            t1 = time.perf_counter()
            self.bench(engines, queries)
            log(f"analytics: queries took {time.perf_counter() - t1:.0f} s")
        finally:
            for eng in engines:
                self.cleanup(eng)
        self.check(queries)
        self.report()

    def cleanup(self, eng):
        try:
            if isinstance(eng, (TarnEngine, PostgresEngine)) and not os.environ.get("TARN_TPCH_KEEP"):
                eng.drop()
        except Exception as e:  # noqa: BLE001
            log(f"analytics: dropping {eng.name}'s tables failed: {e}")
        try:
            eng.close()
        except Exception:  # noqa: BLE001
            pass

    # -------------------------------------------------------------- report
    def total(self, engine, qs):
        return sum(self.times[engine][q] for q in qs)

    def report(self):
        res, wl = self.res, self.workload
        engines = self.engines
        ok = {e: set(self.times.get(e, {})) for e in engines}
        for e in engines:
            if ok[e]:
                res.figure(wl, e, "total", self.total(e, ok[e]), "s")
                res.figure(wl, e, "queries answered", len(ok[e]), "of 22")
                res.figure(wl, e, "geomean", geomean([self.times[e][q] * 1e3 for q in ok[e]]), "ms")
            for q in sorted(ok[e]):
                res.figure(f"{wl} Q{q}", e, "time", self.times[e][q] * 1e3, "ms")
            if e in self.loads and self.loads[e].get("total_s"):
                total_rows = sum(self.rows.values())
                res.figure(f"{wl} load (COPY)", e, "rows/s", total_rows / self.loads[e]["copy_s"], "rows/s")
        ratio_rows = []
        for tarn in (TARN_LANCE, TARN_PARQUET, TARN_PK):
            if tarn not in engines:
                continue
            for anchor in (DATAFUSION, DUCKDB, PG):
                if anchor not in engines:
                    continue
                both = ok[tarn] & ok[anchor]
                if not both:
                    continue
                t, a = self.total(tarn, both), self.total(anchor, both)
                g = geomean([self.times[tarn][q] / self.times[anchor][q] for q in both])
                kind = {TARN_LANCE: "lance", TARN_PARQUET: "parquet", TARN_PK: "lance + primary key"}[tarn]
                res.ratios.append({"workload": f"{wl} total of {len(both)} queries, Tarn {kind} tables",
                                   "metric": "total time", "tarn": t, "anchor": anchor,
                                   "anchor_value": a, "ratio": t / a, "better": "lower"})
                ratio_rows.append((tarn, anchor, len(both), f"{t:.3f}", f"{a:.3f}", f"{t / a:.2f}x",
                                   f"{g:.2f}x"))

        md = [f"## Analytics: TPC-H SF {self.sf:g}, 22 queries", ""]
        md.append(
            f"Data: `tpchgen-cli` SF {self.sf:g} Parquet ({fmt_bytes(self.parquet_bytes)}, "
            f"{sum(self.rows.values()):,} rows, lineitem {self.rows['lineitem']:,}), the same files "
            "for every engine, all loaded before the first query. Per query, every engine in turn: one "
            "warm-up run (its answer checked against DuckDB's), then "
            f"{self.runs} timed round{'s' * (self.runs > 1)} over the engines (order reversed every "
            "other round), median; times measured in the client "
            "(in-process for DuckDB and DataFusion, over psycopg 3 on loopback for the servers, "
            "rows fetched). Totals and ratios count only queries both sides answered right.")
        md.append("")
        md.append("Engines: " + "; ".join(f"{e} {self.versions.get(e, '')}".strip() for e in engines) + ".")
        md.append("")
        head = ["query"] + engines
        tarns = [e for e in (TARN_LANCE, TARN_PARQUET, TARN_PK) if e in engines]
        if DATAFUSION in engines:
            head += [f"{e} / DataFusion" for e in tarns]
        rows = []
        for q in self.queries:
            r = [f"Q{q}"]
            for e in engines:
                if q in self.times.get(e, {}):
                    r.append(f"{self.times[e][q] * 1e3:,.1f}")
                elif q in self.failed.get(e, {}):
                    r.append("**failed**")
                else:
                    r.append("n/a")
            if DATAFUSION in engines:
                for t in tarns:
                    if q in self.times[t] and q in self.times[DATAFUSION]:
                        r.append(f"{self.times[t][q] / self.times[DATAFUSION][q]:.2f}x")
                    else:
                        r.append("")
            rows.append(r)
        tot = ["total (answered) s"] + [f"{self.total(e, ok[e]):,.3f}" if ok[e] else "n/a" for e in engines]
        ans = ["answered"] + [f"{len(ok[e])}/22" for e in engines]
        geo = ["geomean ms"] + [f"{geomean([self.times[e][q] * 1e3 for q in ok[e]]):,.1f}" if ok[e] else "n/a"
                                for e in engines]
        if DATAFUSION in engines:
            tot += [""] * len(tarns)
            ans += [""] * len(tarns)
            geo += [""] * len(tarns)
        md.append("Per-query time, ms:")
        md.append("")
        md.append(md_table(head, rows + [tot, geo, ans]))
        md.append("")
        if ratio_rows:
            md.append("Ratios (total time over the queries both answered; geomean of per-query ratios; "
                      "lower is better, target for Tarn / DataFusion: <= 1.1x):")
            md.append("")
            md.append(md_table(["Tarn", "anchor", "queries", "Tarn s", "anchor s", "total ratio",
                                "geomean ratio"], ratio_rows))
            md.append("")
        if self.loads:
            lrows = []
            total_rows = sum(self.rows.values())
            for e, info in self.loads.items():
                lrows.append((e, f"{info['copy_s']:.1f}", f"{total_rows / info['copy_s']:,.0f}",
                              f"{info['index_s']:.1f}" if "index_s" in info else "",
                              fmt_bytes(info.get("bytes"))))
            md.append("Load (COPY FROM STDIN, CSV made from the Parquet files by pyarrow; PostgreSQL's "
                      "keys and index and Tarn pk's VACUUM are the 'after' column):")
            md.append("")
            md.append(md_table(["engine", "COPY s", "rows/s", "after s", "size on disk"], lrows))
            md.append("")
        for e, qs in self.single_run.items():
            md.append(f"- {e}: Q{', Q'.join(map(str, qs))} took over {self.slow_s:g} s in the warm-up: "
                      "one timed run.")
        fails = [(e, q, self.failed[e][q]) for e in engines for q in sorted(self.failed.get(e, {}))]
        if fails:
            md.append("")
            md.append("Failures (failed, timed out or wrong; SQL in the failures list):")
            md.append("")
            md.append(md_table(["engine", "query", "error"], [(e, f"Q{q}", truncate(err, 300))
                                                                 for e, q, err in fails]))
        md.append("")
        md.append(
            "Method notes: Q15's view is a WITH clause (one statement, every engine); Q11's "
            f"FRACTION is 0.0001/SF; column types BIGINT keys, INT, NUMERIC(15,2), DATE, TEXT on "
            "PostgreSQL and Tarn (DuckDB and DataFusion read the Parquet types: int64, int32, "
            "decimal(15,2), date32, string_view); Tarn's tables have no primary key (keyless base"
            f"{'; Tarn (lance, pk) has them and is compacted by VACUUM' if TARN_PK in engines else ''}); "
            "PostgreSQL has primary keys, an index on lineitem (l_partkey, l_suppkey) and "
            "work_mem = 256MB for the session; DataFusion runs with the PostgreSQL dialect, "
            f"target_partitions = {os.cpu_count()} and a 4 GiB fair spill pool like Tarn's default. "
            f"Statements on the servers are cancelled after {self.timeout:g} s.")
        plot = self.plot()
        if plot:
            md.append("")
            md.append(f"![TPC-H per-query times]({plot})")
        res.section("\n".join(md))

    def plot(self):
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except Exception as e:  # noqa: BLE001
            self.ctx.note(f"analytics: no plot ({e})")
            return None
        engines = [e for e in self.engines if self.times.get(e)]
        if not engines:
            return None
        qs = list(self.queries)
        fig, ax = plt.subplots(figsize=(15, 5.5))
        w = 0.8 / len(engines)
        for i, e in enumerate(engines):
            xs = [q - 0.4 + w * (i + 0.5) for q in qs]
            ys = [self.times[e].get(q, float("nan")) * 1e3 for q in qs]
            ax.bar(xs, ys, width=w, label=e)
            for x, q in zip(xs, qs):
                if q in self.failed.get(e, {}):
                    ax.text(x, 0.01, "x", ha="center", va="bottom", color="red", fontsize=9,
                            transform=ax.get_xaxis_transform())
        ax.set_yscale("log")
        ax.set_xticks(qs)
        ax.set_xticklabels([f"Q{q}" for q in qs])
        ax.set_ylabel("time per query, ms (log)")
        ax.set_title(f"TPC-H SF {self.sf:g}, median of {self.runs} run{'s' * (self.runs > 1)} "
                     "after a warm-up (x = failed)")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(ncol=len(engines), fontsize=8)
        fig.tight_layout()
        name = f"analytics_tpch_sf{self.sf:g}.png"
        self.ctx.out.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.ctx.out / name, dpi=110)
        plt.close(fig)
        self.res.plots.append(name)
        return name


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def fmt_bytes(n):
    if n is None:
        return "n/a"
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.1f} kB"


def run(ctx) -> dict:
    res = SuiteResult(NAME)
    Run(ctx, res).go()
    return res.as_dict()


# ------------------------------------------------------------------ standalone
# The runner's own servers.py starts the servers, so a standalone run sets them up as a
# run of benchmarks/run.sh does.


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(description="TPC-H on DuckDB, DataFusion, PostgreSQL and Tarn")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sf", type=float)
    p.add_argument("--engines", help=",".join(ENGINE_KEYS))
    p.add_argument("--tarn-bin", default=os.environ.get("TARN_BIN", "/work/target-main/release/tarn"))
    p.add_argument("--tarn-dsn", default=os.environ.get("TARN_DSN"))
    p.add_argument("--pg-dsn", default=os.environ.get("PG_DSN"))
    p.add_argument("--no-pg", action="store_true")
    p.add_argument("--no-tarn", action="store_true")
    p.add_argument("--work", help="folder for servers and data (default /var/tmp/tarn-tpch-<pid>)")
    p.add_argument("--out", help="results folder (default <work>/out)")
    p.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin")
    p.add_argument("--pg-port", type=int, default=57432)
    p.add_argument("--tarn-port", type=int, default=57433)
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    a = p.parse_args(argv)
    if a.sf:
        os.environ["TARN_TPCH_SF"] = str(a.sf)
    if a.engines:
        os.environ["TARN_TPCH_ENGINES"] = a.engines
    work = pathlib.Path(a.work or f"/var/tmp/tarn-tpch-{os.getpid()}")
    work.mkdir(parents=True, exist_ok=True)
    out = pathlib.Path(a.out) if a.out else work / "out"
    import servers  # benchmarks/runner/servers.py

    work.chmod(0o755)  # PostgreSQL runs as user postgres
    stops = []
    tarn_data = work / "tarn-data"
    try:
        pg_dsn = None if a.no_pg else a.pg_dsn
        if not a.no_pg and not pg_dsn:
            (work / "pgbase").mkdir(exist_ok=True)
            pg = servers.Postgres(pathlib.Path(a.pg_bin), work / "pgbase", a.pg_port)
            stops.append(pg.stop)
            pg.start()
            pg_dsn = pg.dsn
        tarn_dsn = None if a.no_tarn else a.tarn_dsn
        if not a.no_tarn and not tarn_dsn:
            if os.path.exists(a.tarn_bin):
                tarn = servers.Tarn(pathlib.Path(a.tarn_bin), tarn_data, a.tarn_port, work / "tarn.log")
                stops.append(tarn.stop)
                tarn.start()
                tarn_dsn = tarn.dsn
            else:
                log(f"analytics: no Tarn binary at {a.tarn_bin}: Tarn left out")
        ctx = common.Ctx(quick=a.quick, tarn_dsn=tarn_dsn, pg_dsn=pg_dsn, pgvector=False,
                         work=work / "suite", seed=1, tarn_data=tarn_data, out=out)
        ctx.work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        result = run(ctx)
        took = time.perf_counter() - t0
        out.mkdir(parents=True, exist_ok=True)
        (out / "analytics.json").write_text(json.dumps(result, indent=1))
        (out / "analytics.md").write_text(result["markdown"] + "\n")
        print(result["markdown"])
        print(f"\n{len(result['failures'])} failures; suite took {took:.0f} s; notes: {ctx.notes}; "
              f"results in {out}")
        return 1 if result["failures"] else 0
    finally:
        for stop in reversed(stops):
            try:
                stop()
            except Exception as e:  # noqa: BLE001
                log(f"stopping a server failed: {e}")
        if not a.keep:
            for sub in ("pgbase", "tarn-data", "suite"):
                shutil.rmtree(work / sub, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
