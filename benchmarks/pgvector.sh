#!/usr/bin/env bash
# Builds pgvector 0.8 for PostgreSQL 15 into a private prefix and prints that prefix's bin
# folder (the only line on stdout); vector.sh calls it. Nothing of pgvector is kept in
# this repository and nothing is written into the system's PostgreSQL folders.
#
#   benchmarks/pgvector.sh            # prints e.g. /var/tmp/tarn-pgvector-pg15/lib/postgresql/15/bin
#
# pgvector is not packaged for Debian bookworm (the release this machine runs), but its
# source is in Debian: the `pgvector` source package of trixie (0.8.0-1), whose upstream
# tarball apt verifies against the signed Sources index. So:
#   1. apt-get install postgresql-15 postgresql-server-dev-15 make gcc (if missing);
#   2. `apt-get source --download-only pgvector/trixie` with a private sources list and
#      private lists/cache folders under the prefix (deb-src only: no binary package of
#      trixie is ever considered, and the system's apt configuration is left alone);
#   3. copy /usr/lib/postgresql/15 and /usr/share/postgresql/15 into the prefix with the
#      same relative layout (PostgreSQL finds its share and lib folders relative to the
#      binary it runs from, so the copy is a self-contained PostgreSQL 15);
#   4. `make` pgvector against the system pg_config (with pgvector's own -march=native,
#      as upstream builds it by default) and `make install DESTDIR=stage`, then copy the
#      extension's .so, .control and .sql files into the prefix.
# A second run reuses the prefix (PGVECTOR_REBUILD=1 builds it anew).
#
# Knobs: PGVECTOR_PREFIX (/var/tmp/tarn-pgvector-pg15), PGVECTOR_SUITE (trixie: the Debian
# suite whose source package is used), PG_MAJOR (15).
# Exit code 3 (with the reason on stderr) when pgvector cannot be obtained or built;
# vector.sh then skips pgvector with that note.
set -euo pipefail
PREFIX=${PGVECTOR_PREFIX:-/var/tmp/tarn-pgvector-pg15}
SUITE=${PGVECTOR_SUITE:-trixie}
PG_MAJOR=${PG_MAJOR:-15}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
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
[ -f "/usr/lib/postgresql/$PG_MAJOR/lib/pgxs/src/makefiles/pgxs.mk" ] || need+=("postgresql-server-dev-$PG_MAJOR")
command -v make >/dev/null || need+=(make)
command -v gcc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >&2 \
    || fail "could not install ${need[*]} with apt-get"
fi
PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config"

# 2. The source, from Debian's source package (verified by apt against the signed index).
case "$PREFIX" in /*/*) ;; *) fail "PGVECTOR_PREFIX must be an absolute path two levels deep or more, not '$PREFIX'" ;; esac
rm -rf "$PREFIX"
mkdir -p "$PREFIX/apt/lists/partial" "$PREFIX/apt/cache/archives/partial" "$PREFIX/src"
echo "deb-src $MIRROR $SUITE main" >"$PREFIX/apt/sources.list"
APT=(-o "Dir::Etc::SourceList=$PREFIX/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$PREFIX/apt/lists" -o "Dir::Cache=$PREFIX/apt/cache"
     -o APT::Sandbox::User=root)
say "fetching the pgvector source package of Debian $SUITE"
apt-get "${APT[@]}" -qq update >&2 || fail "apt-get update of deb-src $SUITE failed (no access to Debian's archive?)"
(cd "$PREFIX/src" && apt-get "${APT[@]}" -qq source --download-only "pgvector/$SUITE" >&2) \
  || fail "apt-get source pgvector/$SUITE failed"
orig=$(ls "$PREFIX"/src/pgvector_*.orig.tar.* 2>/dev/null | head -1)
[ -n "$orig" ] || fail "no pgvector_*.orig.tar.* in the source package"
version=$(basename "$orig" | sed -E 's/^pgvector_([0-9.]+)\.orig.*/\1/')
case "$version" in 0.8.*) ;; *) say "warning: Debian $SUITE has pgvector $version, not 0.8.x" ;; esac
tar -xf "$orig" -C "$PREFIX/src"
srcdir=$(find "$PREFIX/src" -maxdepth 1 -type d -name 'pgvector-*' | head -1)
[ -n "$srcdir" ] || fail "could not unpack $orig"

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
rm -rf "$PREFIX/stage" "$PREFIX/apt/cache"
echo "$version" >"$PREFIX/PGVECTOR_VERSION"
say "pgvector $version installed in $PREFIX"
echo "$BIN"
