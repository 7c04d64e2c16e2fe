"""Suite `wire`: the floor of a statement over the wire. A prepared `SELECT 1` (psycopg 3,
`prepare=True`, so a server-side prepared statement: Bind/Execute only), p50/p99 latency
and QPS with 1 and 2 clients (threads, each with its own connection), Tarn vs PostgreSQL."""
from common import SuiteResult, expect, timed_clients, timing_table, wire_engines

NAME = "wire"
REQUIREMENTS = ["psycopg[binary]>=3.1,<4"]
SQL = "SELECT 1"


def one(cur, _):
    cur.execute(SQL, prepare=True)
    expect(SQL, cur.fetchall(), [(1,)])


def run(ctx):
    res = SuiteResult(NAME)
    n = 2_000 if ctx.quick else 20_000
    rows = []
    for clients in (1, 2):
        timings = {}
        for engine, dsn in wire_engines(ctx):
            t = res.attempt(engine, "prepared SELECT 1",
                            lambda: timed_clients(dsn, clients, list(range(n)), one, warmup=100), SQL)
            timings[engine] = t
            rows.append(("prepared `SELECT 1`", clients, engine, t))
        res.compare_timing("prepared SELECT 1", timings, clients)
    res.section(f"## wire: prepared `SELECT 1`\n\n{n:,} executions per row, split over the clients "
                "(threads, one connection each), after 100 untimed ones per client; latency measured "
                "in the client (psycopg 3 with `prepare=True`).\n\n" + timing_table(rows) + "\n")
    return res.as_dict()
