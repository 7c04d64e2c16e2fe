#!/usr/bin/env bash
# Change-store benchmark: upsert ingest (COPY, INSERT ... ON CONFLICT), point lookups and
# full-scan aggregates over uncompacted changes, Tarn against PostgreSQL 15 on the same
# machine in one run (ratios matter: these machines are shared and noisy).
#
#   benchmarks/change_store.sh                 # defaults: about 5-10 minutes
#   ROWS=200000 LOOKUPS=1000 benchmarks/change_store.sh   # a quick run
#   ONLY=pg benchmarks/change_store.sh         # PostgreSQL only (ONLY=tarn: Tarn only)
#
# Sizes and knobs are environment variables read by change_store.py (see the README).
# BUILD=0 skips `cargo build --release -p tarn-server` (it runs under
# `flock /tmp/tarn-cargo.lock` so it never overlaps another build); TARN_BIN picks the
# binary; KEEP=1 keeps the temporary folder (servers' data and logs).
# The report is printed and, for a run of both engines, appended to
# benchmarks/results/<date>-change_store.md (REPORT=path or REPORT=- to change that).
set -euo pipefail
cd "$(dirname "$0")/.."
ONLY=${ONLY:-}
BUILD=${BUILD:-1}
TARN_PORT=${TARN_PORT:-55435}
PG_PORT=${PG_PORT:-55434}
TARN_BIN=${TARN_BIN:-./target/release/tarn}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
VENV=${VENV:-/var/tmp/tarn-bench-venv}
case "$ONLY" in ""|pg|tarn) ;; *) echo "ONLY must be empty, pg or tarn" >&2; exit 2 ;; esac

# psycopg 3 in a venv of its own, made once.
if ! "$VENV/bin/python" -c 'import sys, psycopg; sys.exit(psycopg.__version__[0] != "3")' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'psycopg[binary]>=3.1,<4'
fi

WORK=$(mktemp -d /var/tmp/tarn-bench.XXXXXX)
chmod 755 "$WORK"
cleanup() {
  [ -n "${TARN_PID:-}" ] && kill "$TARN_PID" 2>/dev/null && wait "$TARN_PID" 2>/dev/null || true
  [ -f "$WORK/pg/PG_VERSION" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if [ "$ONLY" != pg ]; then
  if [ "$BUILD" = 1 ]; then
    flock /tmp/tarn-cargo.lock cargo build --release -p tarn-server >/dev/null
  fi
  "$TARN_BIN" --data "$WORK/tarn" --listen "127.0.0.1:$TARN_PORT" >"$WORK/tarn.log" 2>&1 &
  TARN_PID=$!
  export TARN_DATA="$WORK/tarn" TARN_BIN_MTIME="$(date -r "$TARN_BIN" '+%Y-%m-%d %H:%M')"
fi

if [ "$ONLY" != tarn ]; then
  mkdir -p "$WORK/pg" && touch "$WORK/pg.log" && chown postgres "$WORK/pg" "$WORK/pg.log"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg" -A trust -U tarn >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" \
    -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1" -w start >/dev/null
  runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U tarn -d postgres -qc "CREATE DATABASE tarn" >/dev/null
fi

if [ "$ONLY" != pg ]; then
  for _ in $(seq 100); do psql -h 127.0.0.1 -p "$TARN_PORT" -U tarn tarn -qc "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
  if ! psql -h 127.0.0.1 -p "$TARN_PORT" -U tarn tarn -qc "SELECT 1" >/dev/null; then
    echo "Tarn did not come up; its log:" >&2; tail -20 "$WORK/tarn.log" >&2; exit 1
  fi
fi

STATUS=0
ONLY="$ONLY" TARN_PORT="$TARN_PORT" PG_PORT="$PG_PORT" "$VENV/bin/python" benchmarks/change_store.py || STATUS=$?
if [ "$STATUS" != 0 ] && [ -n "${TARN_PID:-}" ]; then
  echo "--- last lines of Tarn's log ---" >&2; tail -20 "$WORK/tarn.log" >&2
fi
exit "$STATUS"
