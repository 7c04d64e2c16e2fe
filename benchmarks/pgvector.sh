#!/usr/bin/env bash
# Builds pgvector 0.8 for PostgreSQL 15 into a private prefix and prints that prefix's bin
# folder (the only line on stdout); run.sh calls it. Nothing of pgvector is kept in
# this repository and nothing is written into the system's PostgreSQL folders.
#
#   benchmarks/pgvector.sh            # prints e.g. /var/tmp/tarn-pgvector-pg15/lib/postgresql/15/bin
#
# pgvector is not packaged for Debian bookworm (the release this machine runs), but its
# source is in Debian: the `pgvector` source package of trixie (0.8.0-1), whose upstream
# tarball apt verifies against the signed Sources index. So:
#   1. apt-get install postgresql-15 postgresql-server-dev-15 make gcc (if missing);
#   2. the source from tests/pgvector_source.sh: `apt-get source --download-only
#      pgvector/trixie` with a private sources list and private lists/cache folders (deb-src
#      only: no binary package of trixie is ever considered, and the system's apt
#      configuration is left alone), cached under /var/tmp/tarn-pgvector-src;
#   3. copy /usr/lib/postgresql/15 and /usr/share/postgresql/15 into the prefix with the
#      same relative layout (PostgreSQL finds its share and lib folders relative to the
#      binary it runs from, so the copy is a self-contained PostgreSQL 15);
#   4. `make` pgvector against the system pg_config (with pgvector's own -march=native,
#      as upstream builds it by default) and `make install DESTDIR=stage`, then copy the
#      extension's .so, .control and .sql files into the prefix.
# A second run reuses the prefix (PGVECTOR_REBUILD=1 builds it anew).
#
# Knobs: PGVECTOR_PREFIX (/var/tmp/tarn-pgvector-pg15), PG_MAJOR (15); PGVECTOR_SUITE
# (trixie: the Debian suite whose source package is used), DEBIAN_MIRROR and
# PGVECTOR_SOURCE_CACHE are tests/pgvector_source.sh's.
# Exit code 3 (with the reason on stderr) when pgvector cannot be obtained or built;
# run.sh then runs PostgreSQL without pgvector and the report says why.
set -euo pipefail
PREFIX=${PGVECTOR_PREFIX:-/var/tmp/tarn-pgvector-pg15}
PG_MAJOR=${PG_MAJOR:-15}
BIN="$PREFIX/lib/postgresql/$PG_MAJOR/bin"
LIB="$PREFIX/lib/postgresql/$PG_MAJOR/lib"
SHARE="$PREFIX/share/postgresql/$PG_MAJOR"

fail() { echo "pgvector.sh: $*" >&2; exit 3; }
say() { echo "pgvector.sh: $*" >&2; }

if [ "${PGVECTOR_REBUILD:-0}" != 1 ] && [ -f "$LIB/vector.so" ] && [ -f "$SHARE/extension/vector.control" ] \
   && [ -x "$BIN/postgres" ]; then
  echo "$BIN"
  exit 0
fi

# 1. PostgreSQL 15 and what building an extension for it needs.
need=()
[ -x "/usr/lib/postgresql/$PG_MAJOR/bin/postgres" ] || need+=("postgresql-$PG_MAJOR")
# pgxs.mk alone is not enough (postgresql-client-15 ships it without the server headers).
{ [ -f "/usr/lib/postgresql/$PG_MAJOR/lib/pgxs/src/makefiles/pgxs.mk" ] \
  && [ -f "/usr/include/postgresql/$PG_MAJOR/server/postgres.h" ]; } || need+=("postgresql-server-dev-$PG_MAJOR")
command -v make >/dev/null || need+=(make)
command -v gcc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >&2 \
    || fail "could not install ${need[*]} with apt-get"
fi
PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config"

# 2. The source, from Debian's source package (verified by apt against the signed index):
#    tests/pgvector_source.sh fetches and caches it (the regression test uses it too); the
#    build works on a copy, so the cached source stays as Debian shipped it.
case "$PREFIX" in /*/*) ;; *) fail "PGVECTOR_PREFIX must be an absolute path two levels deep or more, not '$PREFIX'" ;; esac
cached=$("$(dirname "$0")/../tests/pgvector_source.sh") || fail "could not fetch pgvector's source (tests/pgvector_source.sh failed)"
version=$(cat "$(dirname "$cached")/PGVECTOR_VERSION" 2>/dev/null || echo '?')
rm -rf "$PREFIX"
mkdir -p "$PREFIX/src"
cp -a "$cached" "$PREFIX/src/"
srcdir="$PREFIX/src/$(basename "$cached")"

# 3. A private copy of PostgreSQL 15 (relocatable: paths are found relative to the binary).
mkdir -p "$PREFIX/lib/postgresql" "$PREFIX/share/postgresql"
cp -a "/usr/lib/postgresql/$PG_MAJOR" "$PREFIX/lib/postgresql/"
cp -a "/usr/share/postgresql/$PG_MAJOR" "$PREFIX/share/postgresql/"
[ "$("$BIN/pg_config" --sharedir)" = "$SHARE" ] \
  || fail "the copied PostgreSQL does not relocate: its share folder is $("$BIN/pg_config" --sharedir)"

# 4. Build and install pgvector into the copy.
say "building pgvector $version against $("$PG_CONFIG" --version)"
make -C "$srcdir" -j"$(nproc)" PG_CONFIG="$PG_CONFIG" >"$PREFIX/build.log" 2>&1 \
  || { tail -20 "$PREFIX/build.log" >&2; fail "make failed (log: $PREFIX/build.log)"; }
make -C "$srcdir" -s install PG_CONFIG="$PG_CONFIG" DESTDIR="$PREFIX/stage" >&2 \
  || fail "make install failed"
cp "$PREFIX/stage$("$PG_CONFIG" --pkglibdir)"/vector.so "$LIB/"
cp "$PREFIX/stage$("$PG_CONFIG" --sharedir)"/extension/vector* "$SHARE/extension/"
rm -rf "$PREFIX/stage"
echo "$version" >"$PREFIX/PGVECTOR_VERSION"
say "pgvector $version installed in $PREFIX"
echo "$BIN"
