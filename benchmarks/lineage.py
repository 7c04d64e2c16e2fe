"""Lineage's cost: the same statements against two Tarn servers, one emitting lineage
events (`lineage = true`, the default, with each session's `SET tarn.lineage_reads =
on`, so queries emit START and COMPLETE too: the most it does) and one not (`lineage =
false`), in alternating rounds so both see the same machine. Both keep the audit trail
(the default), so only lineage differs. The workloads are audit.py's, one client each,
prepared: `lookup` (a primary-key lookup), `insert` (one row), `knn` (exact, 5,000 x
32 dimensions), `scan` (a filtered count and sum over 100,000 rows).

Environment: ON_PORT, OFF_PORT, SECONDS_PER_ROUND (5), ROUNDS (3).
Prints a Markdown table: QPS with and without lineage and the overhead.
"""
from __future__ import annotations

import random
import statistics
import time

from audit import OFF, ON, ROUNDS, SECONDS, connect, load, statement


def qps(port: int, workload: str, seed: int, counter: list[int]) -> float:
    rng = random.Random(seed)
    with connect(port) as conn, conn.cursor() as cur:
        if port == ON:
            cur.execute("SET tarn.lineage_reads = on")
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


def main() -> None:
    for port in (ON, OFF):
        load(port)
    counters = {ON: [10_000_000], OFF: [10_000_000]}
    rows = []
    for workload in ("lookup", "insert", "knn", "scan"):
        on, off = [], []
        for r in range(ROUNDS):
            order = (ON, OFF) if r % 2 == 0 else (OFF, ON)
            for port in order:
                (on if port == ON else off).append(qps(port, workload, 100 + r, counters[port]))
        a, b = statistics.median(on), statistics.median(off)
        rows.append((workload, a, b, (b - a) / b * 100))
    with connect(ON) as conn:
        events = conn.execute(
            "SELECT event_type, count(*) FROM tarn_lineage_events GROUP BY 1 ORDER BY 1"
        ).fetchall()
    print("| workload | QPS, lineage on | QPS, lineage off | overhead |")
    print("|---|---|---|---|")
    for w, a, b, pct in rows:
        print(f"| {w} | {a:,.0f} | {b:,.0f} | {pct:+.1f}% |")
    kinds = ", ".join(f"{kind} {count:,}" for kind, count in events)
    print(f"\nMedian of {ROUNDS} alternating rounds of {SECONDS:g} s, one client, prepared statements. "
          f"The lineage log held {kinds} events afterwards.")


if __name__ == "__main__":
    main()
