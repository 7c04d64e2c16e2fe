#!/usr/bin/env bash
# The audit trail's overhead: the same statements against a Tarn server keeping the
# trail and one not, alternating rounds in one run (see benchmarks/audit.py).
#
#   benchmarks/audit.sh                          # about 2 minutes
#   SECONDS_PER_ROUND=2 ROUNDS=1 benchmarks/audit.sh   # a quick run
#
# BUILD=0 skips `cargo build --release -p tarn-server`; TARN_BIN picks the binary;
# KEEP=1 keeps the temporary folder (the servers' data and logs). The report is
# printed and written to benchmarks/results/<date>-audit.md (REPORT=path to change it).
# OVERHEAD_OF=lineage measures lineage instead (benchmarks/lineage.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-1}
TARN_BIN=${TARN_BIN:-./target/release/tarn}
VENV=${VENV:-/var/tmp/tarn-bench-venv}
OVERHEAD_OF=${OVERHEAD_OF:-audit}
export ON_PORT=${ON_PORT:-55451} OFF_PORT=${OFF_PORT:-55452}
REPORT=${REPORT:-benchmarks/results/$(date +%F)-$OVERHEAD_OF.md}

if [ "$BUILD" = 1 ]; then
  flock /tmp/tarn-cargo.lock cargo build --release -p tarn-server
fi
if ! "$VENV/bin/python" -c 'import sys, psycopg; sys.exit(psycopg.__version__[0] != "3")' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'psycopg[binary]>=3.1,<4'
fi

WORK=$(mktemp -d /var/tmp/tarn-bench.XXXXXX)
cleanup() {
  for pid in ${ON_PID:-} ${OFF_PID:-}; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
echo "$OVERHEAD_OF = false" > "$WORK/off.toml"
echo "$OVERHEAD_OF = true" > "$WORK/on.toml"
"$TARN_BIN" --data "$WORK/on" --listen "127.0.0.1:$ON_PORT" --config "$WORK/on.toml" > "$WORK/on.log" 2>&1 &
ON_PID=$!
"$TARN_BIN" --data "$WORK/off" --listen "127.0.0.1:$OFF_PORT" --config "$WORK/off.toml" > "$WORK/off.log" 2>&1 &
OFF_PID=$!
for port in "$ON_PORT" "$OFF_PORT"; do
  for _ in $(seq 1 100); do
    "$VENV/bin/python" -c "import psycopg; psycopg.connect('host=127.0.0.1 port=$port user=tarn dbname=tarn').close()" 2>/dev/null && break
    sleep 0.2
  done
done
{
  case "$OVERHEAD_OF" in
    audit) echo "# Audit trail overhead, $(date +%F)" ;;
    *) echo "# ${OVERHEAD_OF^} overhead, $(date +%F)" ;;
  esac
  echo
  echo "Tarn $(git rev-parse --short HEAD), binary $TARN_BIN; $(nproc) cores; load average $(cut -d' ' -f1 /proc/loadavg) at the start."
  echo
  "$VENV/bin/python" "benchmarks/$OVERHEAD_OF.py"
} | tee "$REPORT"
