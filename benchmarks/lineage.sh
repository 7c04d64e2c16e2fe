#!/usr/bin/env bash
# Lineage's overhead: the same statements against a Tarn server emitting lineage events
# (its sessions' queries too) and one not (`lineage = false`), alternating rounds in one
# run (see benchmarks/lineage.py); audit.sh's machinery, its options.
#
#   benchmarks/lineage.sh                                  # about 2 minutes
#   SECONDS_PER_ROUND=2 ROUNDS=1 benchmarks/lineage.sh     # a quick run
exec env OVERHEAD_OF=lineage "$(dirname "$0")/audit.sh" "$@"
