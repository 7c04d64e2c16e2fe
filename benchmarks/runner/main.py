#!/usr/bin/env python3
"""The benchmark runner: starts Tarn and a throwaway PostgreSQL 15 (+ pgvector) in a
temporary folder under /var/tmp, runs the chosen suites against both (and LanceDB
in-process where a suite uses it), stops the servers and writes report.md, results.json and
PNG plots into benchmarks/results/<date>/ (a quick run: <date>/quick/). Exit code: 0, or 1
when any statement failed or answered wrongly (the report lists them), 2 for a usage error.

Normally started by benchmarks/run.sh, which builds the binary, the venv and pgvector:

    python benchmarks/runner/main.py [--quick] [suite ...] [--engines tarn,pg,lance]
        [--tarn-bin PATH] [--pg-bin DIR] [--out DIR] [--seed N] [--tarn-port N] [--pg-port N] [--keep]
    python benchmarks/runner/main.py --missing-requirements [suite ...]   # for run.sh: pip names to install

The suite contract is in common.py. Everything imported at the top is the standard library
(run.sh calls --missing-requirements before the venv has anything).
"""
from __future__ import annotations

import argparse
import ast
import datetime
import importlib
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
SUITES = ["wire", "lookup", "ingest", "knn", "filtered-knn", "fulltext", "analytics", "embed", "object-storage", "skipping"]
BASE_REQUIREMENTS = ["psycopg[binary]>=3.1,<4", "numpy", "matplotlib"]


def module_path(suite: str) -> pathlib.Path:
    return HERE / "suites" / (suite.replace("-", "_") + ".py")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="benchmarks/run.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("suites", nargs="*", help=f"any of {', '.join(SUITES)} (default: all)")
    p.add_argument("--quick", action="store_true", help="small sizes: the whole run in a few minutes")
    p.add_argument("--engines", default=os.environ.get("ENGINES", "tarn,pg,lance"),
                   help="comma list of tarn, pg, lance (default all; env ENGINES)")
    p.add_argument("--tarn-bin", default=os.environ.get("TARN_BIN", str(REPO / "target/release/tarn")))
    p.add_argument("--pg-bin", default=os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"),
                   help="PostgreSQL 15's bin folder (run.sh passes pgvector.sh's)")
    p.add_argument("--out", default=os.environ.get("OUT"), help="results folder (default results/<date>[/quick])")
    p.add_argument("--seed", type=int, default=int(os.environ.get("SEED", 42)))
    p.add_argument("--tarn-port", type=int, default=int(os.environ.get("TARN_PORT", 55441)))
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("PG_PORT", 55440)))
    p.add_argument("--keep", action="store_true", default=os.environ.get("KEEP") == "1",
                   help="keep the temporary folder (servers' data and logs)")
    p.add_argument("--note", action="append", default=[], help="a line for the report's notes (run.sh's skips)")
    p.add_argument("--missing-requirements", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_intermixed_args(argv)
    for s in a.suites:
        if s not in SUITES:
            p.error(f"unknown suite {s!r}: choose from {', '.join(SUITES)}")
    a.suites = a.suites or SUITES
    a.engines = [e for e in a.engines.replace(" ", "").split(",") if e]
    for e in a.engines:
        if e not in ("tarn", "pg", "lance"):
            p.error("--engines is a comma list of tarn, pg, lance")
    return a


# ---------------------------------------------------------------- requirements
def suite_requirements(suite: str) -> list[str]:
    """The suite's REQUIREMENTS, read without importing it."""
    path = module_path(suite)
    if not path.exists():
        return []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "REQUIREMENTS" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


def satisfied(req: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    m = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(\[[^\]]*\])?\s*(.*)", req)
    name, spec = m.group(1), m.group(3).strip()
    try:
        have = version(name)
    except PackageNotFoundError:
        return False
    if not spec:
        return True
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:
        try:
            from pip._vendor.packaging.specifiers import SpecifierSet
        except ImportError:
            return True  # installed; let pip judge the version if it ever runs
    return have in SpecifierSet(spec)


def missing_requirements(suites) -> list[str]:
    reqs = list(dict.fromkeys(BASE_REQUIREMENTS + [r for s in suites for r in suite_requirements(s)]))
    return [r for r in reqs if not satisfied(r)]


# ---------------------------------------------------------------- the run
class Runner:
    def __init__(self, args):
        from common import Ctx

        self.args = args
        self.start = time.time()
        self.load_start = os.getloadavg()[0]
        today = datetime.date.today().isoformat()
        self.out = pathlib.Path(args.out) if args.out else REPO / "benchmarks/results" / today / (
            "quick" if args.quick else "")
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = pathlib.Path(tempfile.mkdtemp(prefix="tarn-bench.", dir="/var/tmp"))
        self.work.chmod(0o755)  # PostgreSQL runs as user postgres
        self.tarn = self.pg = None
        self.versions = {"python": {}}
        self.ctx = Ctx(quick=args.quick, tarn_dsn=None, pg_dsn=None, pgvector=False, work=self.work,
                       seed=args.seed, tarn_data=self.work / "tarn", out=self.out)
        for n in args.note:
            self.ctx.note(n)
        self.results = {}

    def start_pg(self):
        import servers
        from common import connect, error_text

        if "pg" not in self.args.engines:
            self.ctx.note("PostgreSQL left out (--engines): no anchor for the wire suites")
            return
        self.pg = servers.Postgres(pathlib.Path(self.args.pg_bin), self.work, self.args.pg_port)
        try:
            self.pg.start()
        except Exception as e:
            err = getattr(e, "stderr", b"") or b""
            self.ctx.note(f"PostgreSQL skipped: it did not start ({e} {err.decode(errors='replace')[-300:]})")
            self.pg = None
            return
        self.ctx.pg_dsn = self.pg.dsn
        with connect(self.pg.dsn) as c:
            self.versions["postgresql"] = c.execute("SHOW server_version").fetchone()[0]
            self.versions["pg_settings"] = dict(servers.PG_SETTINGS)
            try:
                c.execute("CREATE EXTENSION IF NOT EXISTS vector")
                self.versions["pgvector"] = c.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
                self.ctx.pgvector = True
            except Exception as e:
                self.ctx.note(f"pgvector skipped: `CREATE EXTENSION vector` failed in {self.args.pg_bin}: "
                              f"{error_text(e)}; the vector suites run without PostgreSQL")

    def start_tarn(self):
        import servers

        if "tarn" not in self.args.engines:
            self.ctx.note("Tarn left out (--engines): a development run, no ratios")
            return
        binary = pathlib.Path(self.args.tarn_bin)
        if not binary.exists():
            raise SystemExit(f"no Tarn binary at {binary} (build it, or set TARN_BIN)")
        self.tarn = servers.Tarn(binary, self.ctx.tarn_data, self.args.tarn_port, self.work / "tarn.log")
        try:
            self.tarn.start()
        except Exception as e:
            raise SystemExit(f"Tarn did not start: {e}\n{self.tarn.log_tail()}")
        self.ctx.tarn_dsn = self.tarn.dsn
        self.ctx.tarn_bin = binary

    def check_lance(self):
        if "lance" not in self.args.engines:
            self.ctx.lance = False
            return
        try:
            import lancedb  # noqa: F401
        except ImportError as e:
            self.ctx.lance = False
            self.ctx.note(f"LanceDB skipped: {e}")

    def run_suite(self, name):
        from common import log

        if not module_path(name).exists():
            self.ctx.note(f"suite {name} skipped: {module_path(name).relative_to(REPO)} does not exist")
            return
        log(f"=== suite {name}")
        t0 = time.time()
        (self.work / name).mkdir(exist_ok=True)
        self.ctx.work = self.work / name
        try:
            mod = importlib.import_module("suites." + name.replace("-", "_"))
            r = mod.run(self.ctx)
            r = {k: r.get(k, [] if k != "markdown" else "") for k in ("figures", "ratios", "failures", "markdown", "plots")}
        except Exception as e:
            log(traceback.format_exc())
            r = {"figures": [], "ratios": [], "plots": [], "markdown": f"## {name}\n\nThe suite stopped: `{e}`\n",
                 "failures": [{"engine": "runner", "workload": name, "sql": "(suite code)",
                               "error": f"{type(e).__name__}: {e}"}]}
        if self.tarn and not self.tarn.alive():
            r["failures"].append({"engine": "Tarn", "workload": f"{name} (server)", "sql": "(the server process exited)",
                                  "error": f"exit code {self.tarn.proc.returncode}; log: {self.tarn.log_tail(15)}"})
            log("Tarn exited; restarting it on the same data folder for the next suite")
            try:
                self.tarn.start()
            except Exception as e:
                self.ctx.tarn_dsn = None
                self.ctx.note(f"Tarn could not be restarted after suite {name}: {e}")
        log(f"=== suite {name}: {time.time() - t0:.0f} s, {len(r['failures'])} failures")
        self.results[name] = r

    def stop(self):
        for s in (self.tarn, self.pg):
            if s:
                s.stop()
        if self.args.keep:
            print(f"kept {self.work}", file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def write(self):
        import report

        self.versions["python"] = report.python_versions()
        self.versions["tarn"] = report.tarn_version(REPO, pathlib.Path(self.args.tarn_bin) if self.tarn else None)
        meta = {"date": datetime.date.today().isoformat(), "mode": "quick" if self.args.quick else "full",
                "command": os.environ.get("BENCH_COMMAND") or "benchmarks/runner/main.py " + " ".join(sys.argv[1:]), "suites": list(self.results),
                "seed": self.args.seed, "engines": self.args.engines, "elapsed_s": time.time() - self.start,
                "load_start": self.load_start, "load_end": os.getloadavg()[0],
                "machine": report.machine(), "versions": self.versions}
        return report.write(self.out, meta, self.results, self.ctx.notes)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.missing_requirements:
        print("\n".join(missing_requirements(args.suites)))
        return 0
    sys.path.insert(0, str(HERE))
    runner = Runner(args)
    try:
        runner.start_pg()
        runner.start_tarn()
        runner.check_lance()
        for name in args.suites:
            runner.run_suite(name)
    finally:
        runner.stop()
    path = runner.write()
    failures = sum(len(r["failures"]) for r in runner.results.values())
    print(path.read_text())
    print(f"report: {path}\nfailures: {failures}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
