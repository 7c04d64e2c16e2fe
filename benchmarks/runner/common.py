"""What every suite shares: the contract between the runner and its suites, and the small
helpers the suites use (connections, timed client threads, percentiles, result records).

CONTRACT (keep it small and stable; benchmarks/runner/main.py is the only caller)
========

A suite is a module `benchmarks/runner/suites/<name>.py` (a `-` in the suite's name is
`_` in the module's: `filtered-knn` is `suites/filtered_knn.py`) with:

    NAME = "wire"                     # the name given on the command line
    REQUIREMENTS = ["psycopg[binary]>=3.1,<4"]   # pip names it imports; run.sh installs
                                      # the missing ones before main.py starts (read with
                                      # `ast`, so keep it a literal list of strings)
    def run(ctx) -> dict: ...

`ctx` (a `Ctx`, below) has:
    ctx.quick      bool: the quick mode (a few minutes for the whole run on 2 cores)
    ctx.tarn_dsn   libpq conninfo of the Tarn server (None only when Tarn is left out with
                   `--engines`, in development runs)
    ctx.pg_dsn     libpq conninfo of PostgreSQL 15, None when PostgreSQL is absent
    ctx.pgvector   bool: the pgvector extension is installed in that PostgreSQL (the runner
                   has run `CREATE EXTENSION vector` in database `tarn`)
    ctx.lance      bool: LanceDB may be used in-process (False with `--engines` without it)
    ctx.work       pathlib.Path: a temporary folder for the suite's data (removed after)
    ctx.seed       int: seed every random generator with it (or with a fixed offset of it)
    ctx.tarn_data  pathlib.Path of Tarn's data folder (for sizes on disk)
    ctx.tarn_bin   pathlib.Path of the Tarn binary (None when Tarn is left out), for suites
                   that start servers of their own
    ctx.out        pathlib.Path: the results folder; plots go there
    ctx.note(s)    adds a line to the report's notes and skips (say what was skipped and why)

Both servers take user `tarn` and database `tarn`; Tarn and PostgreSQL run for the whole
run, so a suite names its tables after itself (`lookup_items`...) and drops them at its end.

`run(ctx)` returns a dict (make it with `SuiteResult(...).as_dict()`):
    "figures":  [{"workload": str, "engine": str, "metric": str, "value": float,
                  "unit": str, "clients": int | None}]
                 metric names the plots know: "p50" and "p99" (unit "ms") go into the
                 latency plot; others are free ("qps", "rows/s", "recall", "seconds"...)
    "ratios":   [{"workload": str, "metric": str, "tarn": float, "anchor": str,
                  "anchor_value": float, "ratio": float (tarn / anchor_value),
                  "better": "higher" | "lower"}]
    "failures": [{"engine": str, "workload": str, "sql": str, "error": str}]
                 a statement that fails or returns a wrong answer is a failure (never a slow
                 figure); any failure makes the run exit non-zero
    "markdown": str, the suite's own section of report.md (starts with a `## ` heading)
    "plots":    [file names the suite wrote into ctx.out]

A suite that raises is recorded by the runner as one failure of that suite; catch
per-engine errors yourself (`SuiteResult.attempt`) so the other engine still runs.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import re
import sys
import threading
import time
from typing import Callable, Iterable

TARN = "Tarn"
PG = "PostgreSQL"
LANCE = "LanceDB"


@dataclasses.dataclass
class Ctx:
    """The run as a suite sees it (see the module's docstring)."""

    quick: bool
    tarn_dsn: str | None
    pg_dsn: str | None
    pgvector: bool
    work: pathlib.Path
    seed: int
    tarn_data: pathlib.Path
    out: pathlib.Path
    lance: bool = True
    tarn_bin: pathlib.Path | None = None
    notes: list = dataclasses.field(default_factory=list)

    def note(self, text: str) -> None:
        """A line for the report's notes and skips."""
        self.notes.append(text)
        log(f"note: {text}")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def wire_engines(ctx: Ctx) -> list[tuple[str, str]]:
    """(engine name, dsn) of the servers that run, Tarn first."""
    return [(n, d) for n, d in ((TARN, ctx.tarn_dsn), (PG, ctx.pg_dsn)) if d]


def connect(dsn: str):
    """An autocommit psycopg 3 connection."""
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


class WrongAnswer(Exception):
    """A statement answered, but not what the data says it must."""


class Failure(Exception):
    """A failed or wrong statement, with the SQL that shows it."""

    def __init__(self, sql: str, error: str):
        super().__init__(error)
        self.sql, self.error = sql, error


def error_text(e: BaseException) -> str:
    state = getattr(e, "sqlstate", None)
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{text} (SQLSTATE {state})" if state else text


def numbered(sql: str) -> str:
    """psycopg's %s/%b/%t placeholders as the server sees them: $1, $2, ..."""
    n = iter(range(1, 1000))
    return re.sub(r"%[sbt]", lambda _: f"${next(n)}", sql)


def execute(conn, sql: str, params=None, fetch: bool = False):
    """One statement; a server error becomes a Failure naming the SQL."""
    import psycopg

    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if fetch else None
    except psycopg.Error as e:
        raise Failure(sql, error_text(e)) from e


def expect(sql: str, got, want) -> None:
    """Raises a wrong-answer Failure unless got == want."""
    if got != want:
        raise Failure(sql, f"wrong answer: got {got!r}, expected {want!r}")


# ---------------------------------------------------------------- timing
def percentile(xs: Iterable[float], p: float) -> float | None:
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


@dataclasses.dataclass
class Timing:
    """Latencies (ms, measured in the client) and throughput of one timed run."""

    n: int
    wall_s: float
    p50: float
    p99: float

    @property
    def qps(self) -> float:
        return self.n / self.wall_s if self.wall_s else float("nan")


def timed_clients(
    dsn: str,
    clients: int,
    items: list,
    one: Callable,
    setup: Callable | None = None,
    warmup: int = 0,
    budget_s: float | None = None,
) -> Timing:
    """Runs `one(cur, item)` for every item, the items dealt round-robin to `clients`
    threads, each with its own connection (`setup(conn)` first, then `warmup` untimed items
    of its share). The clock starts when every thread is ready; with budget_s, a thread
    stops taking items once that many seconds have passed (Timing.n says how many ran).
    `one` raises on a wrong answer; the first error of any thread is raised here."""
    shards = [items[t::clients] for t in range(clients)]
    ready = threading.Barrier(clients + 1)
    lat: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def body(shard):
        mine = []
        try:
            conn = connect(dsn)
        except BaseException as e:
            errors.append(e)
            ready.abort()
            return
        try:
            if setup:
                setup(conn)
            with conn.cursor() as cur:
                for item in shard[:warmup]:
                    one(cur, item)
                ready.wait()
                stop = time.perf_counter() + budget_s if budget_s else None
                for item in shard:
                    t0 = time.perf_counter_ns()
                    one(cur, item)
                    mine.append((time.perf_counter_ns() - t0) / 1e6)
                    if stop and time.perf_counter() > stop:
                        break
        except threading.BrokenBarrierError:
            pass
        except BaseException as e:
            errors.append(e)
            ready.abort()
        finally:
            conn.close()
            with lock:
                lat.extend(mine)

    threads = [threading.Thread(target=body, args=(s,)) for s in shards]
    for th in threads:
        th.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return Timing(len(lat), wall, percentile(lat, 50), percentile(lat, 99))


def timed(fn: Callable) -> tuple[float, object]:
    """(seconds, result) of fn()."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# ---------------------------------------------------------------- results
class SuiteResult:
    """Collects a suite's figures, ratios and failures; `as_dict()` is what run() returns."""

    def __init__(self, name: str):
        self.name = name
        self.figures: list[dict] = []
        self.ratios: list[dict] = []
        self.failures: list[dict] = []
        self.plots: list[str] = []
        self.md: list[str] = []

    def figure(self, workload, engine, metric, value, unit, clients=None):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        self.figures.append({"workload": workload, "engine": engine, "metric": metric,
                             "value": float(value), "unit": unit, "clients": clients})

    def compare(self, workload, metric, values: dict, unit, better, clients=None):
        """A figure per engine of `values` ({engine: value or None}) and the ratio of Tarn
        to every other engine that has a value."""
        for engine, v in values.items():
            self.figure(workload, engine, metric, v, unit, clients)
        tarn = values.get(TARN)
        if tarn is None:
            return
        for engine, v in values.items():
            if engine != TARN and v:
                label = workload if clients is None else f"{workload}, {clients} client{'s' * (clients > 1)}"
                self.ratios.append({"workload": label, "metric": metric, "tarn": float(tarn),
                                    "anchor": engine, "anchor_value": float(v),
                                    "ratio": float(tarn) / float(v), "better": better})

    def compare_timing(self, workload, timings: dict, clients):
        """p50, p99 (lower is better) and QPS (higher) of {engine: Timing or None}."""
        t = {e: x for e, x in timings.items() if x is not None}
        self.compare(workload, "p50", {e: x.p50 for e, x in t.items()}, "ms", "lower", clients)
        self.compare(workload, "p99", {e: x.p99 for e, x in t.items()}, "ms", "lower", clients)
        self.compare(workload, "qps", {e: x.qps for e, x in t.items()}, "queries/s", "higher", clients)

    def fail(self, engine, workload, sql, error):
        self.failures.append({"engine": engine, "workload": workload, "sql": " ".join(sql.split()),
                              "error": error})
        log(f"FAILED {engine} {workload}: {error}\n    SQL: {truncate(sql)}")

    def attempt(self, engine, workload, fn: Callable, sql: str = ""):
        """fn() or, when it raises, None with the failure recorded (a Failure names its
        own SQL; any other exception is charged to `sql`)."""
        try:
            return fn()
        except Failure as f:
            self.fail(engine, workload, f.sql, f.error)
        except Exception as e:  # a dropped connection, a client-side bug
            self.fail(engine, workload, sql or "(client)", f"{type(e).__name__}: {error_text(e)}")
        return None

    def section(self, text: str):
        self.md.append(text)

    def as_dict(self) -> dict:
        return {"figures": self.figures, "ratios": self.ratios, "failures": self.failures,
                "markdown": "\n".join(self.md), "plots": self.plots}


# ---------------------------------------------------------------- formatting
def fmt(x, digits=0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


def fmt_ratio(a, b) -> str:
    if a is None or not b:
        return "n/a"
    return f"{a / b:.2f}x"


def md_table(cols, rows) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join("" if v is None else str(v).replace("|", "\\|") for v in r) + " |")
    return "\n".join(out)


def truncate(s: str, n: int = 400) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n] + f" ... ({len(s)} chars)"


def timing_table(rows: list[tuple[str, int, str, Timing | None]]) -> str:
    """Markdown rows of (workload, clients, engine, timing)."""
    return md_table(["workload", "clients", "engine", "p50 ms", "p99 ms", "QPS", "statements"],
                    [(w, c, e, fmt(t.p50, 3), fmt(t.p99, 3), fmt(t.qps), fmt(t.n)) if t else
                     (w, c, e, "failed", "", "", "") for w, c, e, t in rows])
