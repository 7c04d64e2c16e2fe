#!/usr/bin/env bash
# Vector search benchmarks: the knn and filtered-knn suites of the runner (Tarn against
# PostgreSQL 15 + pgvector and in-process LanceDB, GloVe 6B 50-d). Kept as a name for
# `benchmarks/run.sh knn filtered-knn`; arguments and knobs are run.sh's (--quick, BUILD=0,
# TARN_BIN, ENGINES; ONLY=tarn,pg,lance is read as ENGINES). See benchmarks/README.md.
set -euo pipefail
[ -n "${ONLY:-}" ] && export ENGINES="$ONLY"
exec "$(dirname "$0")/run.sh" knn filtered-knn "$@"
