#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# bench/ab.sh OLD NEW [CORPUS]: two ocitree binaries against each other on
# the corpus, alternating run by run in the same cache state, so that a
# refactoring or an optimisation can show "unchanged or better" on a noisy
# machine.  Root (drops the page cache).  Each figure is the median of RUNS
# (default 5) runs of each binary; the last column is NEW/OLD.
#
#   sudo bench/ab.sh /tmp/old/ocitree _build/ocitree /var/tmp/ocitree-corpus
#
# What it times, on corpus image slim (3 gzip layers, 12.6k entries) unless
# said otherwise:
#   cold mount     no cached index, page cache dropped: mount + read os-release
#   warm mount     index cached, page cache dropped: mount + read os-release
#   full read ro   every file of a fresh read-only mount, index cached, cold
#   full read rw   the same through a fresh writable mount (empty upper)
#   commit node    a one-file change of node (82k entries), offline commit
#   unpack         ocitree unpack of slim onto BENCH_DIR's file system
#   random reads   first reads of 200 random files of a warm mount (p50, ms)
set -uo pipefail
OLD=$(realpath "$1")
NEW=$(realpath "$2")
CORPUS=${3:-/var/tmp/ocitree-corpus}
RUNS=${RUNS:-5}
B=${BENCH_DIR:-/var/tmp/ocitree-bench}/ab
CASES=${CASES:-"cold warm fullro fullrw commit unpack random"}
mkdir -p "$B"

now() { date +%s.%N; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
umnt() { "$NEW" umount "$1" 2>/dev/null || umount -l "$1" 2>/dev/null; for _ in $(seq 50); do findmnt -M "$1" >/dev/null || return 0; sleep 0.05; done; }
readall() { (cd "$1" && find . -type f -print0 | xargs -0 -n 256 cat) >/dev/null; }
MP=$B/mnt
mkdir -p "$MP"
umnt "$MP"

# one case: NAME SETUP-FN TIMED-FN; each fn gets the binary and its cache dir
declare -A res
run_case() {
	local name=$1 setup=$2 timed=$3 i bin tag s e
	local -a t_old=() t_new=()
	for i in $(seq "$RUNS"); do
		for tag in old new; do
			bin=$OLD
			[ $tag = new ] && bin=$NEW
			export OCITREE_CACHE_DIR=$B/cache-$tag
			"$setup" "$bin"
			s=$(now)
			"$timed" "$bin" || echo "  ($name: $tag run $i failed)" >&2
			e=$(now)
			if [ $tag = old ]; then t_old+=("$(echo "$e - $s" | bc)"); else t_new+=("$(echo "$e - $s" | bc)"); fi
			umnt "$MP"
		done
	done
	local mo mn
	mo=$(printf '%s\n' "${t_old[@]}" | median)
	mn=$(printf '%s\n' "${t_new[@]}" | median)
	printf '%-16s %10.3f %10.3f %8.2f\n' "$name" "$mo" "$mn" "$(echo "$mn / $mo" | bc -l)"
}

cold_setup() { rm -rf "$OCITREE_CACHE_DIR"; drop; }
warm_setup() { "$1" mount --image "$CORPUS/oci:slim" "$MP" && umnt "$MP"; drop; }
mount_read() { "$1" mount --image "$CORPUS/oci:slim" "$MP" && cat "$MP/etc/os-release" >/dev/null; }
fullro() { "$1" mount --image "$CORPUS/oci:slim" "$MP" && readall "$MP"; }
fullrw() {
	rm -rf "$B/upper" && mkdir "$B/upper"
	"$1" mount --upper "$B/upper" --image "$CORPUS/oci:slim" "$MP" && readall "$MP"
}
commit_setup() {
	rm -rf "$B/l" "$B/cu"
	mkdir -p "$B/l/blobs" "$B/cu"
	cp "$CORPUS/oci/oci-layout" "$CORPUS/oci/index.json" "$B/l/"
	cp -al "$CORPUS/oci/blobs/sha256" "$B/l/blobs/"
	"$1" mount --upper "$B/cu" --image "$B/l:node" "$MP" && echo changed >"$MP/app/package.json" && umnt "$MP"
	drop
}
commit_node() { "$1" commit --upper "$B/cu" --image "$B/l:node-changed" >/dev/null; }
unpack_setup() { rm -rf "$B/bundle"; drop; }
unpack_slim() { "$1" unpack --image "$CORPUS/oci:slim" "$B/bundle" >/dev/null; }

echo "# ocitree A/B: $(nproc) cores, $(date -u '+%F %H:%M UTC'), runs=$RUNS, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# old: $OLD"
echo "# new: $NEW"
printf '%-16s %10s %10s %8s\n' case "old (s)" "new (s)" new/old
for c in $CASES; do
	case $c in
	cold) run_case "cold mount" cold_setup mount_read ;;
	warm) run_case "warm mount" warm_setup mount_read ;;
	fullro) run_case "full read ro" warm_setup fullro ;;
	fullrw) run_case "full read rw" warm_setup fullrw ;;
	commit) run_case "commit node" commit_setup commit_node ;;
	unpack) run_case "unpack slim" unpack_setup unpack_slim ;;
	random)
		# p50 of 200 first reads of random files, a fresh warm mount each
		files=$B/files
		"$NEW" mount --image "$CORPUS/oci:slim" "$MP" && (cd "$MP" && find . -type f -size +0 | shuf -n 200 --random-source=<(yes)) >"$files"
		umnt "$MP"
		declare -a p_old=() p_new=()
		for i in $(seq "$RUNS"); do
			for tag in old new; do
				bin=$OLD
				[ $tag = new ] && bin=$NEW
				export OCITREE_CACHE_DIR=$B/cache-$tag
				warm_setup "$bin"
				"$bin" mount --image "$CORPUS/oci:slim" "$MP"
				p=$(while read -r f; do
					s=$(now); head -c 1 "$MP/$f" >/dev/null; e=$(now)
					echo "($e - $s) * 1000" | bc
				done <"$files" | median)
				umnt "$MP"
				if [ $tag = old ]; then p_old+=("$p"); else p_new+=("$p"); fi
			done
		done
		mo=$(printf '%s\n' "${p_old[@]}" | median)
		mn=$(printf '%s\n' "${p_new[@]}" | median)
		printf '%-16s %10.3f %10.3f %8.2f   (ms, p50)\n' "random reads" "$mo" "$mn" "$(echo "$mn / $mo" | bc -l)"
		;;
	esac
done
rm -rf "$B/l" "$B/cu" "$B/upper" "$B/bundle"
