"""Lineage's cost: the same statements against two Tarn servers, one emitting lineage
events (`lineage = true`, with each session's `SET tarn.lineage_reads =
on`, so queries emit START and COMPLETE too: the most it does) and one not (`lineage =
false`), in alternating rounds so both see the same machine. Both keep the audit trail
(the default), so only lineage differs. The workloads are audit.py's, one client each,
prepared: `lookup` (a primary-key lookup), `insert` (one row), `knn` (exact, 5,000 x
32 dimensions), `scan` (a filtered count and sum over 100,000 rows).

Environment: ON_PORT, OFF_PORT, SECONDS_PER_ROUND (5), ROUNDS (3); READS=off leaves the
sessions' queries out (only writes emit events).
Prints a Markdown table: QPS with and without lineage and the overhead.
"""
from __future__ import annotations

import os

from audit import ON, ROUNDS, SECONDS, compare, connect, table

READS = os.environ.get("READS", "on") != "off"


def main() -> None:
    rows = compare(on_session="SET tarn.lineage_reads = on" if READS else None)
    with connect(ON) as conn:
        events = conn.execute(
            "SELECT event_type, count(*) FROM tarn_lineage_events GROUP BY 1 ORDER BY 1"
        ).fetchall()
    table(rows, "lineage")
    kinds = ", ".join(f"{kind} {count:,}" for kind, count in events)
    reads = "queries too (tarn.lineage_reads = on)" if READS else "writes only"
    print(f"\nMedian of {ROUNDS} alternating rounds of {SECONDS:g} s, one client, prepared statements; "
          f"events of {reads}. The lineage log held {kinds} events afterwards.")


if __name__ == "__main__":
    main()
