#!/usr/bin/env bash
# Row-level security inside vector search, and the statement cost of access control:
# Tarn against PostgreSQL 15 + pgvector (built by benchmarks/pgvector.sh) in one run
# (see benchmarks/governance.py for what is measured).
#
#   benchmarks/governance.sh                     # about 5 minutes
#   N=5000 QUERIES=30 benchmarks/governance.sh   # a quick run
#   PG=0 benchmarks/governance.sh                # Tarn only
#
# BUILD=0 skips `cargo build --release -p tarn-server`; TARN_BIN picks the binary;
# KEEP=1 keeps the temporary folder. The report is printed and written to
# benchmarks/results/<date>-governance.md (REPORT=path to change it).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-1}
TARN_BIN=${TARN_BIN:-./target/release/tarn}
VENV=${VENV:-/var/tmp/tarn-bench-venv}
TARN_PORT=${TARN_PORT:-55461}
PG_PORT=${PG_PORT:-55462}
REPORT=${REPORT:-benchmarks/results/$(date +%F)-governance.md}

if [ "$BUILD" = 1 ]; then
  flock /tmp/tarn-cargo.lock cargo build --release -p tarn-server
fi
if ! "$VENV/bin/python" -c 'import sys, psycopg, numpy; sys.exit(psycopg.__version__[0] != "3")' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'psycopg[binary]>=3.1,<4' numpy
fi

WORK=$(mktemp -d /var/tmp/tarn-bench.XXXXXX)
chmod 755 "$WORK"
cleanup() {
  [ -n "${TARN_PID:-}" ] && kill "$TARN_PID" 2>/dev/null && wait "$TARN_PID" 2>/dev/null || true
  [ -f "$WORK/pg/PG_VERSION" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

"$TARN_BIN" --data "$WORK/tarn" --listen "127.0.0.1:$TARN_PORT" >"$WORK/tarn.log" 2>&1 &
TARN_PID=$!
if [ "${PG:-1}" = 1 ]; then
  PG_BIN=$(benchmarks/pgvector.sh)
  mkdir -p "$WORK/pg" && touch "$WORK/pg.log" && chown postgres "$WORK/pg" "$WORK/pg.log"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg" -A trust -U tarn >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" \
    -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1" -w start >/dev/null
  runuser -u postgres -- "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U tarn -d postgres -qc "CREATE DATABASE tarn" >/dev/null
else
  PG_PORT=0
fi
for _ in $(seq 100); do psql -h 127.0.0.1 -p "$TARN_PORT" -U tarn tarn -qc "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done

{
  echo "# Row-level security in vector search, and access control's statement cost, $(date +%F)"
  echo
  echo "Tarn $(git rev-parse --short HEAD), binary $TARN_BIN; $(nproc) cores; load average $(cut -d' ' -f1 /proc/loadavg) at the start."
  echo
  TARN_PORT="$TARN_PORT" PG_PORT="$PG_PORT" "$VENV/bin/python" benchmarks/governance.py
} | tee "$REPORT"
