#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# `make fuzz`: build the fuzz targets with clang and libFuzzer (plus ASan and
# UBSan) in _build-fuzz beside the source, and run each for FUZZ_SECONDS
# (default 60) on a copy of its corpus.  New inputs that crash are saved in
# _build-fuzz/crashes/; copy them into tests/fuzz/corpus/NAME/ (named
# regress-*) once fixed, so `make check` replays them forever.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
b=$top/_build-fuzz
secs=${FUZZ_SECONDS:-60}
mkdir -p "$b" "$b/crashes"
if [ ! -f "$b/config.status" ]; then
	(cd "$b" && "$top/configure" -q CC=clang \
		CFLAGS="-g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" \
		LDFLAGS="-fsanitize=address,undefined" --enable-fuzzing)
fi
status=0
for t in "$@"; do
	name=${t##*/fuzz-}
	make -s -C "$b" "$t"
	work=$b/corpus-$name
	mkdir -p "$work"
	cp -n "$top/tests/fuzz/corpus/$name"/* "$work"/ 2>/dev/null || true
	echo "fuzzing $name for ${secs}s" >&2
	"$b/$t" -max_total_time="$secs" -max_len=65536 -artifact_prefix="$b/crashes/$name-" "$work" 2>"$b/$name.log" ||
		{ status=1; tail -30 "$b/$name.log" >&2; }
	grep -h '^Done\|^#[0-9]*.*DONE' "$b/$name.log" | tail -1 >&2 || true
done
exit $status
