#!/usr/bin/env bash
# The sensitive-data detector's precision and recall on Faker data in six locales, and
# its cost on ingest (COPY, one-row INSERTs) with it on and off, in one run (see
# benchmarks/detector.py). Tarn alone: no peer engine classifies columns.
#
#   benchmarks/detector.sh                          # about 2 minutes
#   ROWS=100 COPY_ROWS=10000 benchmarks/detector.sh # a quick run
#
# BUILD=0 skips `cargo build --release -p tarn-server`; TARN_BIN picks the binary;
# KEEP=1 keeps the temporary folder. The report is printed and written to
# benchmarks/results/<date>-detector.md (REPORT=path to change it).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-1}
TARN_BIN=${TARN_BIN:-./target/release/tarn}
VENV=${VENV:-/var/tmp/tarn-bench-venv}
TARN_PORT=${TARN_PORT:-55471}
REPORT=${REPORT:-benchmarks/results/$(date +%F)-detector.md}

if [ "$BUILD" = 1 ]; then
  flock /tmp/tarn-cargo.lock cargo build --release -p tarn-server
fi
if ! "$VENV/bin/python" -c 'import sys, psycopg, faker; sys.exit(psycopg.__version__[0] != "3")' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'psycopg[binary]>=3.1,<4' 'faker>=30'
fi

WORK=$(mktemp -d /var/tmp/tarn-bench.XXXXXX)
cleanup() {
  [ -n "${TARN_PID:-}" ] && kill "$TARN_PID" 2>/dev/null && wait "$TARN_PID" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

"$TARN_BIN" --data "$WORK/tarn" --listen "127.0.0.1:$TARN_PORT" >"$WORK/tarn.log" 2>&1 &
TARN_PID=$!
for _ in $(seq 100); do psql -h 127.0.0.1 -p "$TARN_PORT" -U tarn tarn -qc "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done

{
  echo "# The sensitive-data detector: precision, recall and ingest cost, $(date +%F)"
  echo
  echo "Tarn $(git rev-parse --short HEAD), binary $TARN_BIN; Faker $("$VENV/bin/python" -c 'import faker; print(faker.VERSION)'); $(nproc) cores; load average $(cut -d' ' -f1 /proc/loadavg) at the start."
  echo
  TARN_PORT="$TARN_PORT" "$VENV/bin/python" benchmarks/detector.py
} | tee "$REPORT"
