"""Suite `lookup`: primary-key point lookups on a compacted table. `lookup_items (id bigint
primary key, payload text, amount double precision)` gets N rows by one binary COPY, then
`VACUUM` (Tarn: folds the change store into the base; PostgreSQL: `VACUUM ANALYZE`), then
prepared `SELECT * FROM lookup_items WHERE id = $1` (int8 parameter) on random existing
keys, 1 and 2 clients. Every returned row is checked against the row that was written."""
import numpy as np

import keyvalue as kv
from common import (TARN, Failure, SuiteResult, connect, execute, fmt, md_table, timed,
                    timed_clients, timing_table, wire_engines)

NAME = "lookup"
REQUIREMENTS = ["psycopg[binary]>=3.1,<4", "numpy"]
TABLE = "lookup_items"
SQL = f"SELECT * FROM {TABLE} WHERE id = %s"


def load(dsn, n, vacuum_sql):
    """Creates and fills the table; returns (COPY seconds, VACUUM seconds)."""
    ids = np.arange(1, n + 1, dtype=np.int64)
    blob = kv.copy_binary(ids)
    with connect(dsn) as conn:
        execute(conn, f"DROP TABLE IF EXISTS {TABLE}")
        execute(conn, f"CREATE TABLE {TABLE} {kv.COLUMNS}")
        copy_s, _ = timed(lambda: kv.copy_in(conn, TABLE, blob))
        vacuum_s, _ = timed(lambda: execute(conn, vacuum_sql))
        kv.check_table(conn, TABLE, n, kv.amount_sum(ids))
    return copy_s, vacuum_s


def tarn_state(dsn):
    """Base and change-store rows of the table, as tarn_tables shows them."""
    sql = ("SELECT sum(base_rows), sum(change_rows), sum(unflushed_rows) FROM tarn_tables "
           f"WHERE table_name = '{TABLE}'")
    with connect(dsn) as conn:
        b, c, u = execute(conn, sql, fetch=True)[0]
    return f"Tarn's `tarn_tables` after VACUUM: base_rows {fmt(b)}, change_rows {fmt(c)}, unflushed_rows {fmt(u)}."


def one(cur, key):
    from psycopg.types.numeric import Int8

    cur.execute(SQL, (Int8(key),), prepare=True)
    got = cur.fetchall()
    if got != [kv.row(key)]:
        raise Failure(SQL.replace("%s", "$1") + f" with $1 = {key}",
                      f"wrong answer: {got!r}, expected {[kv.row(key)]!r}")


def run(ctx):
    res = SuiteResult(NAME)
    n = 20_000 if ctx.quick else 1_000_000
    lookups = 2_000 if ctx.quick else 20_000
    rng = np.random.default_rng(ctx.seed + 1)
    keys = [int(k) for k in rng.integers(1, n + 1, lookups)]
    loaded, load_rows, extra = {}, [], []
    for engine, dsn in wire_engines(ctx):
        vacuum = f"VACUUM {TABLE}" if engine == TARN else f"VACUUM ANALYZE {TABLE}"
        got = res.attempt(engine, "lookup load", lambda: load(dsn, n, vacuum))
        if got:
            loaded[engine] = dsn
            load_rows.append((engine, f"{got[0]:.2f}", fmt(n / got[0]), f"`{vacuum}`", f"{got[1]:.2f}"))
            if engine == TARN:
                extra.append(res.attempt(engine, "lookup load", lambda: tarn_state(dsn)) or "")
    rows = []
    for clients in (1, 2):
        timings = {}
        for engine, dsn in loaded.items():
            timings[engine] = res.attempt(engine, "point lookup",
                                          lambda: timed_clients(dsn, clients, keys, one, warmup=200), SQL)
            rows.append(("`SELECT * ... WHERE id = $1`", clients, engine, timings[engine]))
        res.compare_timing("point lookup", timings, clients)
    for engine, dsn in loaded.items():
        res.attempt(engine, "lookup cleanup", lambda: drop(dsn))
    res.section(
        f"## lookup: primary-key point lookups\n\n`{TABLE} {kv.COLUMNS}`, {n:,} rows by one binary "
        f"COPY, then VACUUM; then {lookups:,} prepared `{SQL.replace('%s', '$1')}` (int8 parameter) on "
        "random existing keys per row, split over the clients, 200 untimed per client first; every "
        "row returned is checked.\n\n"
        + md_table(["engine", "COPY s", "rows/s", "then", "s"], load_rows) + "\n\n"
        + ("\n".join(x for x in extra if x) + "\n\n" if any(extra) else "")
        + timing_table(rows) + "\n")
    return res.as_dict()


def drop(dsn):
    with connect(dsn) as conn:
        execute(conn, f"DROP TABLE {TABLE}")
