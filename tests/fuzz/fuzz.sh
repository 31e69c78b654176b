#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# `make fuzz`: build the fuzz targets with clang and libFuzzer (plus ASan and
# UBSan) in _build-fuzz beside the source, and run each for FUZZ_SECONDS
# (default 60) on a copy of its corpus (kept between runs in
# _build-fuzz/corpus-NAME, so that later runs go on from there).  New inputs
# that crash are saved in _build-fuzz/crashes/; copy them into
# tests/fuzz/corpus/NAME/ (named regress-*) once fixed, so `make check`
# replays them forever.  Each run adds a line to _build-fuzz/fuzz-results:
# date, target, seconds, executions, new crash files.
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
for t in "$@"; do
	make -s -C "$b" "$t"
done
status=0
for t in "$@"; do
	name=${t##*/fuzz-}
	work=$b/corpus-$name
	mkdir -p "$work"
	cp -n "$top/tests/fuzz/corpus/$name"/* "$work"/ 2>/dev/null || true
	before=$(ls "$b/crashes" | grep -c "^$name-" || true)
	start=$(date +%s)
	echo "fuzzing $name for ${secs}s" >&2
	# a slow input (over 60 s) is a hang; memory is bounded as in OSS-Fuzz
	"$b/$t" -max_total_time="$secs" -max_len=65536 -timeout=60 -rss_limit_mb=2560 -print_final_stats=1 \
		-artifact_prefix="$b/crashes/$name-" "$work" 2>"$b/$name.log" ||
		{ status=1; tail -30 "$b/$name.log" >&2; }
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$b/$name.log" | tail -1)
	took=$(($(date +%s) - start))
	after=$(ls "$b/crashes" | grep -c "^$name-" || true)
	echo "$(date -u +%FT%TZ) $name ${took}s ${runs:-?} executions, $((after - before)) new crashes" |
		tee -a "$b/fuzz-results" >&2
done
exit $status
