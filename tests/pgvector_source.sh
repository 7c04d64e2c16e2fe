#!/usr/bin/env bash
# Fetches pgvector's source from Debian's `pgvector` source package (of trixie: 0.8.x)
# and prints the unpacked source folder (the only line on stdout), e.g.
#
#   tests/pgvector_source.sh          # prints /var/tmp/tarn-pgvector-src/pgvector-0.8.0
#
# Used by tests/pgvector_regress.rs (pgvector's own test/sql and test/expected files) and
# by benchmarks/pgvector.sh (which builds the extension from it). Nothing of pgvector is
# kept in this repository.
#
# `apt-get source --download-only pgvector/<suite>` runs with a private sources list
# (deb-src only: no binary package of that suite is ever considered) and private
# lists/cache folders under the cache folder, so the system's apt configuration is left
# alone; apt verifies the upstream tarball against the signed Sources index. The result is
# cached: a second run prints the folder without touching the network
# (PGVECTOR_SOURCE_REFRESH=1 fetches it anew).
#
# Knobs: PGVECTOR_SOURCE_CACHE (/var/tmp/tarn-pgvector-src), PGVECTOR_SUITE (trixie),
# DEBIAN_MIRROR (http://deb.debian.org/debian).
# Exit code 3 (with the reason on stderr) when the source cannot be obtained.
set -euo pipefail
CACHE=${PGVECTOR_SOURCE_CACHE:-/var/tmp/tarn-pgvector-src}
SUITE=${PGVECTOR_SUITE:-trixie}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

fail() { echo "pgvector_source.sh: $*" >&2; exit 3; }
say() { echo "pgvector_source.sh: $*" >&2; }

case "$CACHE" in /*/*) ;; *) fail "PGVECTOR_SOURCE_CACHE must be an absolute path two levels deep or more, not '$CACHE'" ;; esac

# One run at a time per cache folder (two test runs, or a test beside the benchmark).
mkdir -p "$(dirname "$CACHE")"
if command -v flock >/dev/null; then
  exec 9>"$CACHE.lock"
  flock 9
fi

if [ "${PGVECTOR_SOURCE_REFRESH:-0}" != 1 ] && [ -f "$CACHE/SOURCE_DIR" ]; then
  srcdir=$(cat "$CACHE/SOURCE_DIR")
  if [ -f "$srcdir/Makefile" ] && [ -d "$srcdir/test/sql" ]; then
    echo "$srcdir"
    exit 0
  fi
fi

command -v apt-get >/dev/null || fail "apt-get not found (the source comes from Debian's archive)"
command -v tar >/dev/null || fail "tar not found"

# Build the new copy next to the old one and swap it in at the end, so an interrupted
# run never leaves a half-unpacked folder behind.
work=$(mktemp -d "$CACHE.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/src"
echo "deb-src $MIRROR $SUITE main" >"$work/apt/sources.list"
APT=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache"
     -o APT::Sandbox::User=root)
say "fetching the pgvector source package of Debian $SUITE"
apt-get "${APT[@]}" -qq update >&2 || fail "apt-get update of deb-src $SUITE failed (no access to Debian's archive at $MIRROR?)"
(cd "$work/src" && apt-get "${APT[@]}" -qq source --download-only "pgvector/$SUITE" >&2) \
  || fail "apt-get source pgvector/$SUITE failed"
orig=$(ls "$work"/src/pgvector_*.orig.tar.* 2>/dev/null | head -1)
[ -n "$orig" ] || fail "no pgvector_*.orig.tar.* in the source package"
version=$(basename "$orig" | sed -E 's/^pgvector_([0-9.]+)\.orig.*/\1/')
case "$version" in 0.8.*) ;; *) say "warning: Debian $SUITE has pgvector $version, not 0.8.x" ;; esac
mkdir -p "$work/unpacked"
tar -xf "$orig" -C "$work/unpacked" || fail "could not unpack $orig"
name=$(find "$work/unpacked" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' -printf '%f\n' | head -1)
[ -n "$name" ] || fail "no pgvector-* folder in $orig"

rm -rf "$CACHE.old"
[ -e "$CACHE" ] && mv "$CACHE" "$CACHE.old"
mkdir -p "$CACHE"
mv "$work/unpacked/$name" "$CACHE/$name"
echo "$version" >"$CACHE/PGVECTOR_VERSION"
echo "$CACHE/$name" >"$CACHE/SOURCE_DIR"
rm -rf "$CACHE.old"
say "pgvector $version source in $CACHE/$name"
echo "$CACHE/$name"
