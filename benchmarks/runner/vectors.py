"""The engines of the knn and filtered-knn suites: loading the `items` table the way users
do, searching it over the wire (Tarn, PostgreSQL + pgvector: psycopg 3, prepared, binary
vector parameters by pgvector-python's `register_vector`) or in-process (LanceDB), and
remembering what is loaded, so that filtered-knn searches the table knn loaded.

The user's load path (`load_wire` with its defaults):
    CREATE TABLE items (id bigint PRIMARY KEY, category int, embedding vector(50))
    COPY items (id, category, embedding) FROM STDIN (FORMAT BINARY)   -- one statement, all rows
    CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops)     -- default options
(no VACUUM; PostgreSQL then gets `ANALYZE items`, which its autovacuum would do a minute
later anyway). Variants: the index created before the COPY; a VACUUM after the COPY.
"""
from __future__ import annotations

import asyncio
import dataclasses
import re
import time

from common import (PG, TARN, Failure, Timing, connect, error_text, execute, fmt, md_table,
                    numbered, percentile, timed_clients)

K = 10
CREATE_SQL = "CREATE TABLE {t} (id bigint PRIMARY KEY, category int, embedding vector({dim}))"
COPY_SQL = "COPY {t} (id, category, embedding) FROM STDIN (FORMAT BINARY)"
INDEX_SQL = "CREATE INDEX ON {t} USING hnsw (embedding vector_cosine_ops)"
KNN_SQL = "SELECT id FROM {t} ORDER BY embedding <=> %b LIMIT " + str(K)
FILTER_SQL = "SELECT id FROM {t} WHERE category = %s ORDER BY embedding <=> %b LIMIT " + str(K)
LANCE_INDEX = "IvfHnswFlat(distance_type='cosine', num_partitions=1, m=16, ef_construction=64)"


@dataclasses.dataclass
class Loaded:
    """How a table was loaded: the statements in order and the seconds of each timed one."""

    table: str
    steps: list
    seconds: dict

    def describe(self) -> str:
        return "; ".join(f"`{s}`" for s in self.steps)


# ---------------------------------------------------------------- wire engines
def copy_items(conn, table, data) -> None:
    """One binary COPY of every row, vectors dumped by pgvector-python (as its docs show)."""
    import psycopg
    from pgvector.psycopg import register_vector

    register_vector(conn)
    sql = COPY_SQL.format(t=table)
    try:
        with conn.cursor() as cur, cur.copy(sql) as cp:
            cp.set_types(["int8", "int4", "vector"])
            for i in range(data.rows):
                cp.write_row((int(data.ids[i]), int(data.category[i]), data.base[i]))
    except psycopg.Error as e:
        raise Failure(sql + " -- rows by write_row((int8, int4, numpy float32 array))", error_text(e)) from e


def load_wire(engine, dsn, data, table="items", index_first=False, vacuum=False) -> Loaded:
    """Creates and fills `table`, times the COPY, the index build (and VACUUM), checks the
    row count."""
    steps, secs = [], {}

    def step(conn, sql, key=None, fn=None):
        steps.append(sql)
        t0 = time.perf_counter()
        fn() if fn else execute(conn, sql)
        if key:
            secs[key] = time.perf_counter() - t0

    with connect(dsn) as conn:
        execute(conn, f"DROP TABLE IF EXISTS {table}")
        step(conn, CREATE_SQL.format(t=table, dim=data.dim))
        if index_first:
            step(conn, INDEX_SQL.format(t=table), "index_s")
        step(conn, COPY_SQL.format(t=table) + f" -- {data.rows:,} rows", "copy_s",
             lambda: copy_items(conn, table, data))
        if vacuum:
            step(conn, f"VACUUM {table}", "vacuum_s")
        if not index_first:
            step(conn, INDEX_SQL.format(t=table), "index_s")
        if engine == PG:
            step(conn, f"ANALYZE {table}")
        sql = f"SELECT count(*) FROM {table}"
        got = execute(conn, sql, fetch=True)[0][0]
        if int(got) != data.rows:
            raise Failure(sql, f"wrong answer: {got}, expected {data.rows}")
    return Loaded(table, steps, secs)


_loaded: dict = {}


def ensure_items(engine, dsn, data) -> Loaded:
    """`items` loaded the user's way, once per run and engine."""
    key = (engine, dsn, id(data))
    if key not in _loaded:
        _loaded[key] = load_wire(engine, dsn, data)
    return _loaded[key]


def wire_search(dsn, data, table, ef, idxs, clients=1, filtered=False, settings=None, warmup=5,
                budget_s=None):
    """Runs the queries idxs (prepared, binary vector parameter) at hnsw.ef_search = ef;
    returns ({query: [ids]}, Timing)."""
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg.types.numeric import Int4

    sql = (FILTER_SQL if filtered else KNN_SQL).format(t=table)
    sets = {"hnsw.ef_search": ef, **(settings or {})}
    shown = f"{numbered(sql)} (prepared, binary vector parameter; " + ", ".join(f"SET {k} = {v}" for k, v in sets.items()) + ")"
    results = {}

    def setup(conn):
        register_vector(conn)
        for k, v in sets.items():
            execute(conn, f"SET {k} = {v}")

    def one(cur, i):
        params = (Int4(int(data.qcategory[i])), data.queries[i]) if filtered else (data.queries[i],)
        try:
            cur.execute(sql, params, prepare=True)
            results[i] = [r[0] for r in cur.fetchall()]
        except psycopg.Error as e:
            raise Failure(shown, error_text(e)) from e

    t = timed_clients(dsn, clients, list(idxs), one, setup=setup, warmup=warmup, budget_s=budget_s)
    return results, t


def explain(dsn, data, table, filtered=False, settings=None) -> str:
    """EXPLAIN of the first query, vector written as a literal (elided in the text)."""
    q = "[" + ",".join("%.9g" % x for x in data.queries[0].tolist()) + "]"
    where = f"WHERE category = {int(data.qcategory[0])} " if filtered else ""
    sql = f"EXPLAIN SELECT id FROM {table} {where}ORDER BY embedding <=> '{q}' LIMIT {K}"
    with connect(dsn) as conn:
        for k, v in (settings or {}).items():
            execute(conn, f"SET {k} = {v}")
        rows = execute(conn, sql, fetch=True)
    text = "\n".join(str(r[0]) if len(r) == 1 else f"{r[0]}:\n{r[1]}" for r in rows)
    return re.sub(r"\[\s*-?[0-9][-0-9.e, ]*\]", "[...]", text)  # vector literals, in any float format


def execute_drop(dsn, table) -> None:
    with connect(dsn) as conn:
        execute(conn, f"DROP TABLE {table}")


def tarn_state(dsn, table) -> str:
    """The table's bases, change stores and indexes as Tarn's system views show them."""
    with connect(dsn) as conn:
        t = execute(conn, "SELECT sum(base_rows), sum(change_rows), sum(unflushed_rows), count(*) "
                    f"FROM tarn_tables WHERE table_name = '{table}'", fetch=True)[0]
        idx = execute(conn, "SELECT index_name, lance_index, m, ef_construction, built, build_stage "
                      f"FROM tarn_indexes WHERE table_name = '{table}'", fetch=True)
    text = (f"`tarn_tables`: base_rows {fmt(t[0])}, change_rows {fmt(t[1])}, unflushed_rows {fmt(t[2])} "
            f"over {t[3]} buckets; `tarn_indexes`: ")
    return text + ("; ".join(f"{r[0]} {r[1]} m={r[2]} ef_construction={r[3]} built={r[4]}"
                             + (f" stage={r[5]}" if r[5] else "") for r in idx) or "none")


# ---------------------------------------------------------------- LanceDB in-process
class Lance:
    """LanceDB in this process, async API on one event loop: N clients are N queries in
    flight (its sync API re-reads the table's schema per query, slower)."""

    def __init__(self, path, data):
        import lancedb
        import lancedb.index
        import pyarrow as pa

        self.data, self.path, self.version = data, str(path), lancedb.__version__
        table = pa.table({
            "id": pa.array(data.ids),
            "category": pa.array(data.category),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(data.base.ravel()), data.dim),
        })
        t0 = time.perf_counter()
        tbl = lancedb.connect(self.path).create_table("items", table, mode="overwrite")
        self.load_s = time.perf_counter() - t0
        if tbl.count_rows() != data.rows:
            raise Failure("count_rows()", f"wrong answer: {tbl.count_rows()}, expected {data.rows}")
        t0 = time.perf_counter()
        tbl.create_index("embedding", config=lancedb.index.IvfHnswFlat(
            distance_type="cosine", num_partitions=1, m=16, ef_construction=64))
        self.index_s = time.perf_counter() - t0
        self.tbl = tbl
        self.bitmap = False
        self.loop = asyncio.new_event_loop()
        self._open()

    def _open(self):
        import lancedb

        async def open_():
            return await (await lancedb.connect_async(self.path)).open_table("items")

        self.atable = self.loop.run_until_complete(open_())

    def add_category_index(self):
        """A Bitmap scalar index on category (for prefiltered search)."""
        if not self.bitmap:
            from lancedb.index import Bitmap

            self.tbl.create_index("category", config=Bitmap())
            self.bitmap = True
            self._open()

    @staticmethod
    def describe(filtered=False) -> str:
        q = "table.query().nearest_to(q).column('embedding').distance_type('cosine').ef(ef).nprobes(1)"
        return q + (".where('category = c')" if filtered else "") + f".select(['id', '_distance']).limit({K}).to_arrow()"

    def search(self, ef, idxs, clients=1, filtered=False, budget_s=None):
        d, tbl, results, lat = self.data, self.atable, {}, []
        stop = time.perf_counter() + budget_s if budget_s else None

        async def client(shard):
            for i in shard:
                t0 = time.perf_counter_ns()
                q = (tbl.query().nearest_to(d.queries[i]).column("embedding").distance_type("cosine")
                     .ef(ef).nprobes(1).select(["id", "_distance"]).limit(K))
                if filtered:
                    q = q.where(f"category = {int(d.qcategory[i])}")
                batch = await q.to_arrow()
                lat.append((time.perf_counter_ns() - t0) / 1e6)
                results[i] = batch.column("id").to_pylist()
                if stop and time.perf_counter() > stop:
                    break

        async def all_clients():
            await asyncio.gather(*[client(idxs[t::clients]) for t in range(clients)])

        try:
            t0 = time.perf_counter()
            self.loop.run_until_complete(all_clients())
            wall = time.perf_counter() - t0
        except Exception as e:
            raise Failure(self.describe(filtered), f"{type(e).__name__}: {e}") from e
        return results, Timing(len(lat), wall, percentile(lat, 50), percentile(lat, 99))

    def explain(self, filtered=False) -> str:
        """LanceDB's plan of the first query."""
        d = self.data
        q = self.tbl.search(d.queries[0], vector_column_name="embedding").distance_type("cosine").ef(100).nprobes(1).limit(K)
        if filtered:
            q = q.where(f"category = {int(d.qcategory[0])}", prefilter=True)
        return q.explain_plan(verbose=True)


_lance: dict = {}


def ensure_lance(ctx, data) -> Lance:
    """The LanceDB table of this data, made once per run under ctx.work."""
    if id(data) not in _lance:
        _lance[id(data)] = Lance(ctx.work / f"lance-{data.rows}", data)
    return _lance[id(data)]


def search(handle, data, ef, idxs, clients=1, filtered=False, settings=None, table="items", budget_s=None):
    """One timed run on any engine: handle is a dsn (wire) or a Lance."""
    if isinstance(handle, Lance):
        return handle.search(ef, list(idxs), clients, filtered, budget_s)
    return wire_search(handle, data, table, ef, idxs, clients, filtered, settings, budget_s=budget_s)


def sizes(quick: bool) -> tuple[int, int]:
    """(base rows, queries) of the knn and filtered-knn suites."""
    return (10_000, 100) if quick else (100_000, 1_000)


def engines(ctx) -> list[str]:
    """The vector engines of this run, Tarn first."""
    out = [TARN] if ctx.tarn_dsn else []
    if ctx.pg_dsn and ctx.pgvector:
        out.append(PG)
    return out + (["LanceDB"] if ctx.lance else [])


def plan_block(title, text) -> str:
    return f"{title}:\n\n```\n" + "\n".join(text.splitlines()[:40]) + "\n```\n"


def loads_table(loads: dict) -> str:
    """Markdown of {engine: Loaded}."""
    return md_table(["engine", "statements", "COPY s", "VACUUM s", "index build s"],
                    [(e, l.describe(), fmt(l.seconds.get("copy_s"), 2), fmt(l.seconds.get("vacuum_s"), 2),
                      fmt(l.seconds.get("index_s"), 2)) for e, l in loads.items()])

