#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Make the seed corpora of the fuzz targets under tests/fuzz/corpus/ (files
# named seed-*; regress-* files are kept): make-seeds.py writes most, and
# fuzz-index gets real index files built by make-index-seed from a layer
# blob in each compression, with zlib and ISA-L checkpoints 4 KiB apart.
#
#   tests/fuzz/make-seeds.sh [BUILD-DIR]     (default: _build)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
b=$(cd "${1:-$top/_build}" && pwd)
c=$top/tests/fuzz/corpus
make -s -C "$b" tests/fuzz/make-index-seed
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -f "$c"/tar/seed-* "$c"/tarscan/seed-* "$c"/state/seed-* "$c"/gzip-seek/seed-* "$c"/index/seed-* \
	"$c"/upper/seed-*
/usr/bin/python3 "$top/tests/fuzz/make-seeds.py" "$c" "$tmp"
mkdir -p "$c/index"
for comp in none gzip zstd; do
	[ -f "$tmp/layer.$comp" ] || continue
	"$b/tests/fuzz/make-index-seed" "$tmp/layer.$comp" $comp 4096 "$c/index/seed-$comp"
done
OCITREE_INFLATE=zlib "$b/tests/fuzz/make-index-seed" "$tmp/layer.gzip" gzip 4096 "$c/index/seed-gzip-zlib"
"$b/tests/fuzz/make-index-seed" "$tmp/layer.gzip" gzip 1048576 "$c/index/seed-gzip-one-checkpoint"
ls -l "$c"/*/seed-* | awk '{ n++; s += $5 } END { printf "%d seeds, %d bytes\n", n, s }'
