"""The audit trail's cost: the same statements against two Tarn servers, one keeping
the trail (`audit = true`, the default) and one not (`audit = false`), in alternating
rounds so both see the same machine. Workloads, one client each, prepared:

- `lookup`: `SELECT * FROM kv WHERE id = $1` on a primary-key table of 100,000 rows;
- `insert`: `INSERT INTO log VALUES ($1, $2)`, one row per statement;
- `knn`: `SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 10` over 5,000
  32-dimensional vectors (exact search);
- `scan`: `SELECT count(*), sum(v) FROM kv WHERE v > $1`.

Environment: ON_PORT, OFF_PORT (the two servers), SECONDS_PER_ROUND (5), ROUNDS (3).
Prints a Markdown table: QPS with and without the trail and the overhead.
"""
from __future__ import annotations

import os
import random
import statistics
import time

import psycopg

ON = int(os.environ.get("ON_PORT", "55451"))
OFF = int(os.environ.get("OFF_PORT", "55452"))
SECONDS = float(os.environ.get("SECONDS_PER_ROUND", "5"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DIM = 32


def connect(port: int, user: str = "tarn") -> psycopg.Connection:
    return psycopg.connect(f"host=127.0.0.1 port={port} user={user} dbname=tarn", autocommit=True)


def vector(rng: random.Random) -> str:
    return "[" + ",".join(f"{rng.uniform(-1, 1):.4f}" for _ in range(DIM)) + "]"


def load(port: int) -> None:
    rng = random.Random(7)
    with connect(port) as conn:
        conn.execute("CREATE TABLE kv (id bigint PRIMARY KEY, v bigint, note text)")
        conn.execute("INSERT INTO kv SELECT i, (i * 7919) % 100000, 'note ' || i FROM generate_series(1, 100000) AS t(i)")
        conn.execute("VACUUM kv")
        conn.execute("CREATE TABLE log (id bigint, note text)")
        conn.execute(f"CREATE TABLE items (id bigint PRIMARY KEY, embedding vector({DIM}))")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO items VALUES (%s, %s)", [(i, vector(rng)) for i in range(5000)])
        conn.execute("VACUUM items")


def statement(workload: str, rng: random.Random, counter: list[int]) -> tuple[str, tuple]:
    if workload == "lookup":
        return "SELECT * FROM kv WHERE id = %s", (rng.randint(1, 100000),)
    if workload == "insert":
        counter[0] += 1
        return "INSERT INTO log VALUES (%s, %s)", (counter[0], "x")
    if workload == "knn":
        return f"SELECT id FROM items ORDER BY embedding <-> %s::vector({DIM}) LIMIT 10", (vector(rng),)
    return "SELECT count(*), sum(v) FROM kv WHERE v > %s", (rng.randint(0, 100000),)


def qps(port: int, workload: str, seed: int, counter: list[int], user: str = "tarn",
        session: str | None = None) -> float:
    """Statements per second of `workload` on one connection (`session`: a statement it
    runs first)."""
    rng = random.Random(seed)
    with connect(port, user) as conn, conn.cursor() as cur:
        if session:
            cur.execute(session)
        for _ in range(20):  # warm-up
            sql, params = statement(workload, rng, counter)
            cur.execute(sql, params, prepare=True)
            if cur.description:
                cur.fetchall()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < SECONDS:
            sql, params = statement(workload, rng, counter)
            cur.execute(sql, params, prepare=True)
            if cur.description:
                cur.fetchall()
            n += 1
        return n / (time.perf_counter() - t0)


def compare(on_session: str | None = None) -> list[tuple[str, float, float, float]]:
    """Each workload's median QPS on the ON and OFF servers, alternating rounds, and
    ON's overhead in percent."""
    for port in (ON, OFF):
        load(port)
    counters = {ON: [10_000_000], OFF: [10_000_000]}
    rows = []
    for workload in ("lookup", "insert", "knn", "scan"):
        on, off = [], []
        for r in range(ROUNDS):
            # Alternate which goes first, so neither always runs on a warmer machine.
            order = (ON, OFF) if r % 2 == 0 else (OFF, ON)
            for port in order:
                session = on_session if port == ON else None
                (on if port == ON else off).append(qps(port, workload, 100 + r, counters[port], session=session))
        a, b = statistics.median(on), statistics.median(off)
        rows.append((workload, a, b, (b - a) / b * 100))
    return rows


def table(rows: list[tuple[str, float, float, float]], what: str) -> None:
    print(f"| workload | QPS, {what} on | QPS, {what} off | overhead |")
    print("|---|---|---|---|")
    for w, a, b, pct in rows:
        print(f"| {w} | {a:,.0f} | {b:,.0f} | {pct:+.1f}% |")


def main() -> None:
    rows = compare()
    with connect(ON) as conn:
        records = conn.execute("SELECT count(*) FROM tarn_audit_log").fetchone()[0]
        ok = conn.execute("SELECT ok FROM tarn_audit_verify()").fetchone()[0]
    table(rows, "audit")
    print(f"\nMedian of {ROUNDS} alternating rounds of {SECONDS:g} s, one client, prepared statements. "
          f"The trail held {records:,} records afterwards; tarn_audit_verify(): ok = {ok}.")


if __name__ == "__main__":
    main()
