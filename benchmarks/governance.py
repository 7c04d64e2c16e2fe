"""Row-level security inside vector search, and what access control costs a statement:
Tarn against PostgreSQL 15 + pgvector, in one run on one machine.

Data: N rows of DIM-dimensional vectors (seeded normal), a `tenant` column that is
`t0` on a fraction SEL of the rows (spread evenly), an HNSW index on the vectors (both
engines, `vector_l2_ops`, m = 16, ef_construction = 64, pgvector's defaults). Role
`alice` may read the table; a row policy shows her only `tenant = 't0'`.

For each engine, QUERIES random query vectors, k = 10:

- `policy`: alice's `SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 10`;
- `where`: the superuser's same query with `WHERE tenant = 't0'` (equal selectivity);
- `unfiltered`: the superuser's query over every row (recall of the index alone).

Reported per form: mean rows returned (k expected), recall@10 against the exact answer
(computed here with numpy), p50 latency. Then the statement cost of access control:
the workloads of `benchmarks/audit.py` (primary-key lookup, one-row insert, scan; kNN is above)
run by the superuser and by a role with grants (its plans checked when made),
alternating rounds.

Environment: TARN_PORT, PG_PORT (0 skips PostgreSQL), N (20000), DIM (32), SEL (0.1),
QUERIES (100), SECONDS_PER_ROUND (3), ROUNDS (2).
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np

# The statement workloads and their loop are the audit benchmark's (same folder).
from audit import connect, qps

TARN = int(os.environ.get("TARN_PORT", "55461"))
PG = int(os.environ.get("PG_PORT", "0"))
N = int(os.environ.get("N", "20000"))
DIM = int(os.environ.get("DIM", "32"))
SEL = float(os.environ.get("SEL", "0.1"))
QUERIES = int(os.environ.get("QUERIES", "100"))
SECONDS = float(os.environ.get("SECONDS_PER_ROUND", "3"))
ROUNDS = int(os.environ.get("ROUNDS", "2"))
K = 10


def text(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.5f}" for x in v) + "]"


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((N, DIM)).astype(np.float32)
    every = round(1 / SEL)
    tenant0 = np.arange(N) % every == 0
    queries = rng.standard_normal((QUERIES, DIM)).astype(np.float32)
    return vectors, tenant0, queries


def load(port: int, vectors: np.ndarray, tenant0: np.ndarray, postgres: bool) -> None:
    with connect(port, "tarn") as conn:
        if postgres:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(f"CREATE TABLE items (id bigint PRIMARY KEY, tenant text, embedding vector({DIM}))")
        rows = [(i, "t0" if tenant0[i] else "t1", text(vectors[i])) for i in range(N)]
        with conn.cursor() as cur:
            for start in range(0, N, 2000):
                cur.executemany("INSERT INTO items VALUES (%s, %s, %s)", rows[start : start + 2000])
        if not postgres:
            conn.execute("VACUUM items")
        conn.execute("CREATE INDEX items_embedding ON items USING hnsw (embedding vector_l2_ops)")
        conn.execute("CREATE TABLE kv (id bigint PRIMARY KEY, v bigint, note text)")
        conn.execute("INSERT INTO kv SELECT i, (i * 7919) % 100000, 'note ' || i FROM generate_series(1, 100000) AS t(i)")
        conn.execute("CREATE TABLE log (id bigint, note text)")
        if not postgres:
            conn.execute("VACUUM kv")
        conn.execute("CREATE ROLE alice LOGIN")
        conn.execute("GRANT SELECT ON items TO alice")
        conn.execute("GRANT SELECT, INSERT ON kv, log TO alice")
        conn.execute("ALTER TABLE items ENABLE ROW LEVEL SECURITY")
        conn.execute("CREATE POLICY tenant0 ON items FOR SELECT TO alice USING (tenant = 't0')")
        if postgres:
            conn.execute("ANALYZE")


def exact(vectors: np.ndarray, mask: np.ndarray | None, q: np.ndarray) -> set[int]:
    ids = np.arange(N) if mask is None else np.flatnonzero(mask)
    d = np.linalg.norm(vectors[ids] - q, axis=1)
    return set(int(i) for i in ids[np.argsort(d, kind="stable")[:K]])


def searches(port: int, user: str, where: str, truths: list[set[int]], queries: np.ndarray) -> tuple[float, float, float]:
    """(mean rows, recall@10, p50 ms) of one search form."""
    sql = f"SELECT id FROM items {where} ORDER BY embedding <-> %s::vector({DIM}) LIMIT {K}"
    rows, recalls, times = [], [], []
    with connect(port, user) as conn, conn.cursor() as cur:
        for q in queries[:5]:  # warm-up
            cur.execute(sql, (text(q),), prepare=True)
            cur.fetchall()
        for q, truth in zip(queries, truths):
            t0 = time.perf_counter()
            cur.execute(sql, (text(q),), prepare=True)
            got = [r[0] for r in cur.fetchall()]
            times.append(time.perf_counter() - t0)
            rows.append(len(got))
            recalls.append(len(truth & set(got)) / K)
    return statistics.fmean(rows), statistics.fmean(recalls), statistics.median(times) * 1000


def main() -> None:
    vectors, tenant0, queries = data()
    engines = [("Tarn", TARN, "tarn", False)]
    if PG:
        engines.append(("PostgreSQL 15 + pgvector", PG, "tarn", True))
    for _, port, _, postgres in engines:
        load(port, vectors, tenant0, postgres)
    secured = [exact(vectors, tenant0, q) for q in queries]
    everything = [exact(vectors, None, q) for q in queries]
    print(f"{N} rows of {DIM} dimensions, policy selectivity {SEL:.0%} ({int(tenant0.sum())} rows visible to alice), "
          f"{QUERIES} queries, k = {K}; recall against numpy's exact answer.\n")
    print("| engine | form | rows returned (mean) | recall@10 | p50 ms |")
    print("|---|---|---|---|---|")
    for name, port, superuser, _ in engines:
        for form, user, where, truths in [
            ("policy (alice)", "alice", "", secured),
            ("WHERE tenant = 't0' (superuser)", superuser, "WHERE tenant = 't0'", secured),
            ("unfiltered (superuser)", superuser, "", everything),
        ]:
            rows, recall, p50 = searches(port, user, where, truths, queries)
            print(f"| {name} | {form} | {rows:.2f} | {recall:.3f} | {p50:.2f} |")
    print()
    print(f"Statement cost of access control on Tarn: the superuser (never checked) against alice "
          f"(grants checked when a statement is planned; a primary-key lookup keeps its fast path when the "
          f"grants cover it and no row policy applies), {ROUNDS} alternating rounds of "
          f"{SECONDS:.0f} s, one client, prepared statements.\n")
    print("| workload | superuser QPS | alice QPS | alice vs superuser |")
    print("|---|---|---|---|")
    counter = [10_000_000]
    for workload in ["lookup", "insert", "scan"]:
        by_user: dict[str, list[float]] = {"tarn": [], "alice": []}
        for r in range(ROUNDS):
            order = ["tarn", "alice"] if r % 2 == 0 else ["alice", "tarn"]
            for user in order:
                by_user[user].append(qps(TARN, workload, r, counter, user))
        su, al = statistics.fmean(by_user["tarn"]), statistics.fmean(by_user["alice"])
        print(f"| {workload} | {su:.0f} | {al:.0f} | {al / su - 1:+.1%} |")


if __name__ == "__main__":
    main()
