"""Suite `ingest`: rows per second into fresh primary-key tables `(id bigint primary key,
payload text, amount double precision)`, Tarn vs PostgreSQL, each durable on commit:
  (a) one binary COPY of N rows (the COPY data encoded before the clock starts);
  (b) multi-row `INSERT ... VALUES ... ON CONFLICT (id) DO UPDATE` of 1,000 rows per
      statement into a table holding half of the keys: each statement has 500 existing
      keys (updated) and 500 new ones;
  (c) single-row prepared INSERTs, autocommit (one commit each), one client: rows/s and
      the commit latency p50/p99.
After each, count(*) and sum(amount) are checked against what was written."""
import numpy as np

import keyvalue as kv
from common import (SuiteResult, connect, execute, fmt, md_table, timed, timed_clients,
                    timing_table, wire_engines)

NAME = "ingest"
REQUIREMENTS = ["psycopg[binary]>=3.1,<4", "numpy"]
BATCH = 1_000


def fresh(conn, table):
    execute(conn, f"DROP TABLE IF EXISTS {table}")
    execute(conn, f"CREATE TABLE {table} {kv.COLUMNS}")


def big_copy(dsn, n):
    """(a): seconds of one COPY of n rows, checked."""
    ids = np.arange(1, n + 1, dtype=np.int64)
    blob = kv.copy_binary(ids)
    with connect(dsn) as conn:
        fresh(conn, "ingest_copy")
        secs, _ = timed(lambda: kv.copy_in(conn, "ingest_copy", blob))
        kv.check_table(conn, "ingest_copy", n, kv.amount_sum(ids))
        execute(conn, "DROP TABLE ingest_copy")
    return secs


def upserts(dsn, n):
    """(b): seconds of n rows upserted in statements of BATCH rows, half new, checked."""
    half = n // 2
    old = np.arange(1, half + 1, dtype=np.int64)  # loaded first, each updated once
    new = np.arange(half + 1, 2 * half + 1, dtype=np.int64)
    step = BATCH // 2
    stmts = [kv.values_sql("ingest_upsert", np.concatenate([old[s : s + step], new[s : s + step]]), 1, True)
             for s in range(0, half, step)]
    with connect(dsn) as conn:
        fresh(conn, "ingest_upsert")
        kv.copy_in(conn, "ingest_upsert", kv.copy_binary(old))

        def all_():
            for sql in stmts:
                execute(conn, sql)

        secs, _ = timed(all_)
        kv.check_table(conn, "ingest_upsert", 2 * half, kv.amount_sum(old, 1) + kv.amount_sum(new, 1))
        execute(conn, "DROP TABLE ingest_upsert")
    return secs, 2 * half


SINGLE_SQL = "INSERT INTO ingest_single (id, payload, amount) VALUES (%s, %s, %s)"


def single_rows(dsn, n):
    """(c): timing of n single-row autocommit INSERTs, checked."""
    from psycopg.types.numeric import Float8, Int8

    with connect(dsn) as conn:
        fresh(conn, "ingest_single")

    def one(cur, i):
        _, payload, amount = kv.row(i)
        cur.execute(SINGLE_SQL, (Int8(i), payload, Float8(amount)), prepare=True)

    t = timed_clients(dsn, 1, list(range(1, n + 1)), one)
    with connect(dsn) as conn:
        kv.check_table(conn, "ingest_single", n, kv.amount_sum(np.arange(1, n + 1)))
        execute(conn, "DROP TABLE ingest_single")
    return t


def run(ctx):
    res = SuiteResult(NAME)
    n_copy = 20_000 if ctx.quick else 1_000_000
    n_upsert = 20_000 if ctx.quick else 200_000
    n_single = 300 if ctx.quick else 2_000
    copy_rate, upsert_rate, single = {}, {}, {}
    for engine, dsn in wire_engines(ctx):
        s = res.attempt(engine, "ingest COPY", lambda: big_copy(dsn, n_copy))
        copy_rate[engine] = n_copy / s if s else None
        u = res.attempt(engine, "ingest upsert", lambda: upserts(dsn, n_upsert))
        upsert_rate[engine] = u[1] / u[0] if u else None
        single[engine] = res.attempt(engine, "ingest single-row INSERT", lambda: single_rows(dsn, n_single),
                                     SINGLE_SQL)
    res.compare("ingest: one binary COPY", "rows/s", copy_rate, "rows/s", "higher")
    res.compare("ingest: INSERT ... ON CONFLICT DO UPDATE, 1,000 rows/statement", "rows/s", upsert_rate,
                "rows/s", "higher")
    res.compare("ingest: single-row INSERT, autocommit", "rows/s",
                {e: t.qps if t else None for e, t in single.items()}, "rows/s", "higher")
    res.compare_timing("ingest: single-row INSERT, autocommit", single, 1)
    engines = [e for e, _ in wire_engines(ctx)]
    rows = [
        (f"(a) one binary COPY of {n_copy:,} rows", *[fmt(copy_rate.get(e)) for e in engines]),
        (f"(b) {n_upsert:,} rows by `INSERT ... VALUES (1,000 rows) ON CONFLICT (id) DO UPDATE`, half new keys",
         *[fmt(upsert_rate.get(e)) for e in engines]),
        (f"(c) {n_single:,} single-row prepared INSERTs, autocommit, one client",
         *[fmt(single[e].qps) if single.get(e) else "n/a" for e in engines]),
    ]
    res.section("## ingest: rows per second into a fresh primary-key table\n\n"
                f"`{kv.COLUMNS}`; every commit durable on both (Tarn: WAL fsync; PostgreSQL: defaults, "
                "fsync and synchronous_commit on). Counts and sums checked after each.\n\n"
                + md_table(["rows/s", *engines], rows) + "\n\nCommit latency of (c):\n\n"
                + timing_table([("single-row INSERT", 1, e, single.get(e)) for e in engines]) + "\n")
    return res.as_dict()
