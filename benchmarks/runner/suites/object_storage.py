"""Suite `object-storage`: the same Tarn binary on a local folder and on an S3 server (moto's
server mode, started by the suite on loopback; the write-ahead log on local disk), each a
server of its own started by the suite. Per warehouse: commit latency of one-row INSERTs
into a primary-key table (a log append and fsync) and into a table without one (a base
write and a manifest put each); then a primary-key table of N rows is loaded and
compacted, the server restarted, and point lookups and a full scan timed cold (the first
ones after the restart: nothing cached) and warm. The anchor is the local folder: the
ratios say what the object store costs. A third server keeps its write-ahead log in the
bucket (`wal = "object"`: an object per group commit) instead of on local disk.

moto is a Python process on loopback: a request costs it about a millisecond and no
network, where S3 costs 10-30 ms to the first byte; the figures count round trips more
than they predict S3's latency."""
import os
import pathlib
import subprocess
import sys
import time
import urllib.request

from common import (SuiteResult, connect, execute, fmt, md_table, percentile)

NAME = "object-storage"
REQUIREMENTS = ["psycopg[binary]>=3.1,<4", "numpy", "moto[server]==5.2.5"]
FOLDER = "Tarn on a local folder"
S3 = "Tarn on S3 (moto)"
S3_LOG = "Tarn on S3, log in the bucket"
BUCKET = "bench"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    def __init__(self, log: pathlib.Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                      str(self.port)], stdout=open(log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{BUCKET}", method="PUT"))
                return
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("moto did not answer within 60 s")
                time.sleep(0.2)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def timed_ms(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000.0


def measure(dsn, restart, n_commits, n_rows, n_lookups, seed):
    """The figures of one warehouse: {workload: [ms, ...]}."""
    import numpy as np
    from psycopg.types.numeric import Int8

    rng = np.random.default_rng(seed)
    out = {}
    with connect(dsn) as conn:
        for t in ("os_kv", "os_log", "os_items"):
            execute(conn, f"DROP TABLE IF EXISTS {t}")
        execute(conn, "CREATE TABLE os_kv (id bigint PRIMARY KEY, v bigint)")
        execute(conn, "CREATE TABLE os_log (id bigint, v bigint)")
        cur = conn.cursor()
        out["commit, primary key"] = [
            timed_ms(lambda i=i: cur.execute("INSERT INTO os_kv VALUES (%s, %s)", (Int8(i), Int8(i)), prepare=True))
            for i in range(n_commits)]
        out["commit, no key"] = [
            timed_ms(lambda i=i: cur.execute("INSERT INTO os_log VALUES (%s, %s)", (Int8(i), Int8(i)), prepare=True))
            for i in range(max(20, n_commits // 5))]
        execute(conn, "CREATE TABLE os_items (id bigint PRIMARY KEY, v bigint, payload text)")
        out["load"] = [timed_ms(lambda: execute(
            conn, "INSERT INTO os_items SELECT value, value * 7, repeat(md5(value::text), 4) "
                  f"FROM generate_series(1, {n_rows}) AS g(value)"))]
        out["VACUUM (compaction)"] = [timed_ms(lambda: execute(conn, "VACUUM os_items"))]
    dsn = restart()
    keys = [int(k) for k in rng.integers(1, n_rows + 1, n_lookups)]
    with connect(dsn) as conn:
        cur = conn.cursor()

        def lookup(k):
            cur.execute("SELECT v FROM os_items WHERE id = %s", (Int8(k),), prepare=True)
            got = cur.fetchall()
            if got != [(k * 7,)]:
                raise RuntimeError(f"lookup {k}: {got!r}")

        def scan():
            got = execute(conn, "SELECT count(*), sum(v) FROM os_items", fetch=True)[0]
            if got != (n_rows, 7 * n_rows * (n_rows + 1) // 2):
                raise RuntimeError(f"scan: {got!r}")

        out["scan, cold"] = [timed_ms(scan)]
        cold = min(50, n_lookups // 4)
        out["lookup, cold"] = [timed_ms(lambda k=k: lookup(k)) for k in keys[:cold]]
        out["lookup, warm"] = [timed_ms(lambda k=k: lookup(k)) for k in keys[cold:]]
        out["scan, warm"] = [timed_ms(scan) for _ in range(5)]
        # The object-range cache (S3 only; no row on a folder).
        out["_cache"] = execute(
            conn, "SELECT hits, misses, bytes_fetched, bytes_served FROM tarn_object_cache", fetch=True)
    return out


def cache_note(rows) -> str:
    if not rows:
        return ""
    hits, misses, fetched, served = rows[0]
    return (f"\n\nS3's object-range cache after the restart: {hits} hits, {misses} misses; "
            f"{fetched / 2**20:.1f} MiB fetched from the store, {served / 2**20:.1f} MiB served from the cache.")


def run(ctx):
    import servers

    res = SuiteResult(NAME)
    if ctx.tarn_bin is None:
        ctx.note("object-storage skipped: Tarn left out")
        return res.as_dict()
    n_commits = 200 if ctx.quick else 1000
    n_rows = 20_000 if ctx.quick else 200_000
    n_lookups = 400 if ctx.quick else 2000
    moto = Moto(ctx.work / "moto.log")
    config = ctx.work / "tarn-s3.toml"
    config.write_text(
        f"wal_dir = '{ctx.work / 'os-wal'}'\n[s3]\nendpoint = '{moto.endpoint}'\nregion = 'us-east-1'\n"
        "access_key_id = 'testing'\nsecret_access_key = 'testing'\nallow_http = true\n")
    config_log = ctx.work / "tarn-s3-log.toml"
    config_log.write_text("wal = 'object'\n" + config.read_text())
    warehouses = [
        (FOLDER, str(ctx.work / "os-folder"), []),
        (S3, f"s3://{BUCKET}/warehouse", ["--config", str(config)]),
        (S3_LOG, f"s3://{BUCKET}/warehouse-log", ["--config", str(config_log)]),
    ]
    results = {}
    try:
        for i, (engine, data, extra) in enumerate(warehouses):
            port = free_port()
            server = servers.Tarn(ctx.tarn_bin, data, port, ctx.work / f"os-{i}.log", extra)

            def restart(server=server):
                server.stop()
                server.start()
                return server.dsn

            server.start()
            try:
                got = res.attempt(engine, "object-storage", lambda: measure(
                    server.dsn, restart, n_commits, n_rows, n_lookups, ctx.seed + 11))
            finally:
                server.stop()
            if got:
                results[engine] = got
    finally:
        moto.stop()

    rows = []
    for workload in ["commit, primary key", "commit, no key", "load", "VACUUM (compaction)",
                     "lookup, cold", "lookup, warm", "scan, cold", "scan, warm"]:
        p50 = {e: percentile(r[workload], 50) for e, r in results.items()}
        p99 = {e: percentile(r[workload], 99) for e, r in results.items()}
        for e in results:
            res.figure(workload, e, "p50", p50[e], "ms")
            res.figure(workload, e, "p99", p99[e], "ms")
        for engine in (S3, S3_LOG):
            if FOLDER in p50 and engine in p50 and p50[FOLDER]:
                res.ratios.append({"workload": f"{workload} ({'log in the bucket' if engine == S3_LOG else 'log on disk'})",
                                   "metric": "p50", "tarn": p50[engine], "anchor": FOLDER,
                                   "anchor_value": p50[FOLDER], "ratio": p50[engine] / p50[FOLDER], "better": "lower"})
        ratio = lambda e: f"{p50[e] / p50[FOLDER]:.2f}x" if p50.get(e) and p50.get(FOLDER) else "n/a"
        rows.append((workload, len(next(iter(results.values()))[workload]) if results else 0,
                     fmt(p50.get(FOLDER), 3), fmt(p99.get(FOLDER), 3), fmt(p50.get(S3), 3),
                     fmt(p99.get(S3), 3), ratio(S3), fmt(p50.get(S3_LOG), 3), fmt(p99.get(S3_LOG), 3),
                     ratio(S3_LOG)))
    res.section("## Object storage\n\n" + __doc__.split("\n\n")[0].replace("\n", " ") + "\n\n"
                + md_table(["workload", "runs", "folder p50 ms", "folder p99 ms", "S3 p50 ms", "S3 p99 ms",
                            "S3 / folder (p50)", "S3 log-in-bucket p50 ms", "p99 ms", "/ folder (p50)"], rows)
                + f"\n\n{fmt(n_rows)} rows loaded; `lookup, cold` is the first {min(50, n_lookups // 4)} "
                  "lookups after a restart, `scan, cold` the first scan. " + __doc__.split("\n\n")[1].replace("\n", " ")
                + cache_note(results.get(S3, {}).get("_cache")))
    return res.as_dict()
