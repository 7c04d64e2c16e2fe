"""What the Python end-to-end scripts share: where the server is, and a small runner.

tests/python.rs starts a Tarn server and runs each script with its address in the
environment (TARN_HOST, TARN_PORT, TARN_USER, TARN_DB, TARN_DSN in libpq's keyword
form, TARN_URL as a postgresql:// URL). The runner runs every registered check, even
after one fails, so that one run lists every statement the server rejects; each
failure shows the error, its SQLSTATE and the script lines it came from. The script
exits 1 if any check failed.
"""

import asyncio
import inspect
import os
import sys
import time
import traceback

HOST = os.environ["TARN_HOST"]
PORT = int(os.environ["TARN_PORT"])
USER = os.environ.get("TARN_USER", "tarn")
DBNAME = os.environ.get("TARN_DB", "tarn")
DSN = os.environ.get("TARN_DSN", f"host={HOST} port={PORT} user={USER} dbname={DBNAME}")
URL = os.environ.get("TARN_URL", f"postgresql://{USER}@{HOST}:{PORT}/{DBNAME}")

_HERE = os.path.dirname(os.path.abspath(__file__))
_checks = []


def check(fn):
    """Registers `fn` (a function or a coroutine function) as a check, run in order."""
    _checks.append(fn)
    return fn


def sqlstate(error):
    """The SQLSTATE the server sent, if `error` carries one."""
    return (
        getattr(getattr(error, "diag", None), "sqlstate", None)  # psycopg 3
        or getattr(error, "pgcode", None)  # psycopg2
        or getattr(error, "sqlstate", None)  # asyncpg
        or (sqlstate(error.orig) if getattr(error, "orig", None) is not None else None)  # SQLAlchemy
    )


def describe(error):
    """One line for an exception: type, SQLSTATE when the driver tells it, message."""
    state = sqlstate(error)
    orig = getattr(error, "orig", None)  # SQLAlchemy wraps the driver's error
    if orig is not None:
        return f"{type(error).__name__} wrapping {describe(orig)}"
    message = " ".join(str(error).split())
    if len(message) > 600:
        message = message[:600] + " ..."
    state = f" [SQLSTATE {state}]" if state else ""
    return f"{type(error).__name__}{state}: {message}"


def _where(error):
    """The lines of the test scripts the error passed through (not the drivers')."""
    frames = traceback.extract_tb(error.__traceback__)
    lines = []
    for frame in frames:
        if os.path.dirname(os.path.abspath(frame.filename)) == _HERE and not frame.filename.endswith(
            "tarn_checks.py"
        ):
            lines.append(f"    at {os.path.basename(frame.filename)}:{frame.lineno}: {frame.line}")
    if frames and sqlstate(error) is None and os.path.dirname(os.path.abspath(frames[-1].filename)) != _HERE:
        # Raised inside a driver or adapter, not by the server: where (its message may be empty).
        last = frames[-1]
        package = last.filename.split("site-packages" + os.sep)[-1]
        lines.append(f"    raised in {package}:{last.lineno}: {last.line}")
    return lines


def run():
    """Runs every check; prints one line per check and a summary; exits 1 on a failure."""
    passed, failed = [], []
    for fn in _checks:
        name = fn.__name__
        print(f"--- {name}", flush=True)
        start = time.perf_counter()
        try:
            result = fn()
            if inspect.iscoroutine(result):
                asyncio.run(result)
        except Exception as error:  # noqa: BLE001 - every failure is reported, then the next check runs
            elapsed = time.perf_counter() - start
            failed.append(name)
            print(f"FAIL {name} ({elapsed:.2f} s): {describe(error)}", flush=True)
            for line in _where(error):
                print(line, flush=True)
            if os.environ.get("TARN_PY_TRACEBACK"):
                traceback.print_exc()
            continue
        passed.append(name)
        print(f"ok   {name} ({time.perf_counter() - start:.2f} s)", flush=True)
    print(f"\n{os.path.basename(sys.argv[0])}: {len(passed)} of {len(passed) + len(failed)} checks passed")
    if failed:
        print("failed checks: " + ", ".join(failed))
        sys.exit(1)
