#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Stress on a writable mount: fsx-style random writes, reads and truncates of
# an image file and a new one, checked against a copy in memory; threads
# racing creates, renames, links, unlinks and directory changes over names
# the image already has.  No difference, no daemon crash, and the same
# state after a remount.  OCITREE_STRESS_SECONDS sets the time of each run
# (default 3).
. "$top_srcdir/tests/fs/lib-fs.sh"
need_fuse
STRESS=$top_builddir/tests/fs/stress
[ -x "$STRESS" ] || skip_all "tests/fs/stress is not built"
S=${OCITREE_STRESS_SECONDS:-3}
SEED=${OCITREE_STRESS_SEED:-$(date +%s)}
# data: an image file in a gzip layer; zdata: in a zstd layer; newfile: new
diag "seed $SEED, $S seconds per run"

{
	echo "layer gzip"
	echo "file data 0644 0 0 random:9:2500000"
	echo "dir ns"
	for d in 0 1 2 3; do
		echo "dir ns/d$d"
		for f in 00 03 07 11; do echo "file ns/d$d/n$f text:file-lower$d$f\\n"; done
	done
	echo "file ns/n05 text:file-lowerh\\n"
	echo "hardlink ns/d2/n20 ns/n05"
	echo "hardlink ns/d3/n21 ns/n05"
	echo "layer zstd"
	echo "file zdata 0644 0 0 random:4:1500000"
} | $MKIMAGE "$T/l" img >/dev/null || { echo "Bail out! mkimage failed"; exit 1; }

M=$T/mnt U=$T/upper
mkdir -p "$U"
ok "mount writable" do_mount "$M" --upper "$U" --image "$T/l:img"
pid=$(pgrep -n -f "ocitree mount --upper $U")

# run_stress DESC ARGS...: one TAP line for a stress run
run_stress() {
	local desc=$1
	shift
	if "$STRESS" "$@" >"$T/stress.out" 2>&1; then
		_result 0 "$desc: $(grep -o '[0-9]* ops\|[0-9]* operations' "$T/stress.out" | head -1)"
	else
		_result 1 "$desc"
		diag "$(grep -v '^ok' "$T/stress.out" | head -20)"
	fi
}

# three fsx runs at once, reported in order
for f in data zdata newfile; do
	"$STRESS" fsx "$M" "$f" "$S" "$((SEED + ${#f}))" >"$T/fsx-$f.out" 2>&1 &
done
wait
for f in data zdata newfile; do
	if grep -q "^not ok" "$T/fsx-$f.out" || ! grep -q "^1\.\." "$T/fsx-$f.out"; then
		_result 1 "fsx on $f"
		diag "$(grep -v '^ok' "$T/fsx-$f.out" | head -20)"
	else
		_result 0 "fsx on $f: $(grep -o '[0-9]* ops' "$T/fsx-$f.out")"
	fi
done
run_stress "8 threads racing over the image's names" ns "$M/ns" "$S" 8 "$SEED"
check "the daemon is alive" 'kill -0 "$pid"'
listing() { (cd "$1" && find . -mindepth 1 -printf '%y %m %s %n %i %p -> %l\n' | LC_ALL=C sort -k6); }
sums() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); }
listing "$M" >"$T/before"
sums "$M" >"$T/sums-before"
ok "unmount" do_umount "$M"
ok "mount again" do_mount "$M" --upper "$U" --image "$T/l:img"
listing "$M" >"$T/after"
sums "$M" >"$T/sums-after"
check "the same tree after a remount" 'diff "$T/before" "$T/after" >&2'
check "the same contents after a remount" 'diff "$T/sums-before" "$T/sums-after" >&2'
run_stress "names, data and st_nlink still agree" check "$M/ns"
ok "unmount" do_umount "$M"
done_testing
