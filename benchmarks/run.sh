#!/usr/bin/env bash
# One command for every benchmark: Tarn side by side with its anchors (PostgreSQL 15 with
# pgvector, LanceDB in-process, and what the analytics suite brings), in one run, on this
# machine. Writes benchmarks/results/<date>/ (a --quick run: <date>/quick/): report.md,
# results.json and PNG plots.
#
#   benchmarks/run.sh                       # every suite, full sizes (well under an hour)
#   benchmarks/run.sh --quick               # every suite, small sizes (a few minutes)
#   benchmarks/run.sh --quick wire lookup   # some suites: wire lookup ingest knn filtered-knn fulltext analytics embed object-storage skipping
#   BUILD=0 TARN_BIN=/path/to/tarn benchmarks/run.sh --quick
#   ENGINES=pg,lance benchmarks/run.sh --quick knn        # leave engines out (development)
#
# Steps: (1) the release binary: `flock /tmp/tarn-cargo.lock cargo build --release -p
# tarn-server` unless BUILD=0; TARN_BIN picks the binary (default
# $CARGO_TARGET_DIR/release/tarn, or ./target/release/tarn); (2) the venv at $VENV
# (/var/tmp/tarn-bench-venv), made if missing, with what the runner and the chosen suites'
# REQUIREMENTS name, installed only when missing; (3) PostgreSQL 15 with pgvector from
# benchmarks/pgvector.sh (if that fails: the system's PostgreSQL 15 without pgvector, and the
# report says so); (4) benchmarks/runner/main.py, which starts the servers, runs the suites
# and writes the report. Other knobs (main.py's): SEED, TARN_PORT, PG_PORT, OUT, KEEP=1.
# Exit code: 0, or 1 when a statement failed or answered wrongly (listed in the report).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-1}
VENV=${VENV:-/var/tmp/tarn-bench-venv}
ENGINES=${ENGINES:-tarn,pg,lance}
export ENGINES
TARN_BIN=${TARN_BIN:-${CARGO_TARGET_DIR:-./target}/release/tarn}
case "$TARN_BIN" in /*) ;; *) TARN_BIN="$PWD/$TARN_BIN" ;; esac
for a in "$@"; do case "$a" in -h|--help) exec python3 benchmarks/runner/main.py --help ;; esac; done
want() { [[ ",$ENGINES," == *",$1,"* ]]; }

# (1) Tarn
if want tarn; then
  if [ "$BUILD" = 1 ]; then
    echo "run.sh: cargo build --release -p tarn-server" >&2
    flock /tmp/tarn-cargo.lock cargo build --release -p tarn-server >&2
  fi
  [ -x "$TARN_BIN" ] || { echo "run.sh: no Tarn binary at $TARN_BIN (BUILD=1 builds it; TARN_BIN picks one)" >&2; exit 2; }
fi

# (2) the venv, and what the chosen suites need (main.py reads their REQUIREMENTS)
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
mapfile -t missing < <("$VENV/bin/python" benchmarks/runner/main.py --missing-requirements "$@")
if [ ${#missing[@]} -gt 0 ] && [ -n "${missing[0]}" ]; then
  echo "run.sh: installing into $VENV: ${missing[*]}" >&2
  "$VENV/bin/pip" install -q "${missing[@]}" >&2
fi

# (3) PostgreSQL 15 with pgvector
notes=()
PG_BIN=${PG_BIN:-}
if want pg && [ -z "$PG_BIN" ]; then
  log=$(mktemp)
  if PG_BIN=$(benchmarks/pgvector.sh 2>"$log"); then
    notes+=(--note "pgvector built by benchmarks/pgvector.sh from Debian's source package (pgvector $(cat "${PGVECTOR_PREFIX:-/var/tmp/tarn-pgvector-pg15}/PGVECTOR_VERSION" 2>/dev/null || echo '?'), -march=native) into a private copy of PostgreSQL 15")
  else
    cat "$log" >&2
    PG_BIN=/usr/lib/postgresql/15/bin
    notes+=(--note "PostgreSQL + pgvector skipped: benchmarks/pgvector.sh failed ($(grep 'pgvector.sh:' "$log" | tail -1)); PostgreSQL 15 runs without pgvector")
  fi
  rm -f "$log"
fi

# (4) the run
args=(--tarn-bin "$TARN_BIN")
[ -n "$PG_BIN" ] && args+=(--pg-bin "$PG_BIN")
export BENCH_COMMAND="benchmarks/run.sh $*"
exec "$VENV/bin/python" benchmarks/runner/main.py "${args[@]}" "${notes[@]}" "$@"
