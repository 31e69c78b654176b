#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# bench/commit.sh [OCITREE] [CORPUS]: writable mounts and commit, on the
# corpus.  Root.  Each figure is the median of RUNS (default 5) runs
# alternating with its peer.
#
#  1. a one-file change of oci:node (82k entries): ocitree commit of the
#     upper directory (offline, and live on the mount) against umoci repack
#     of the same change in a bundle umoci unpacked (the change made after
#     the unpack; repack has to find it)
#  2. writing a new 1 GiB file through the mount against the same write to
#     the upper directory's file system, with fsync, on the file system of
#     BENCH_DIR and on a tmpfs
#
#   sudo bench/commit.sh _build/ocitree /var/tmp/ocitree-corpus
set -uo pipefail
OCITREE=$(realpath "${1:-_build/ocitree}")
CORPUS=${2:-/var/tmp/ocitree-corpus}
RUNS=${RUNS:-5}
B=${BENCH_DIR:-/var/tmp/ocitree-bench}
W=$B/commit
export OCITREE_CACHE_DIR=$B/cache
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a / b}'; }
umnt() { "$OCITREE" umount "$1" 2>/dev/null || umount -l "$1" 2>/dev/null; for _ in $(seq 50); do findmnt -M "$1" >/dev/null || return 0; sleep 0.05; done; }
report() { printf '%-62s %s\n' "$1" "$2"; }
secs() { echo "$(now) - $1" | bc; }

rm -rf "$W"
mkdir -p "$W/l/blobs" "$W/mnt"
cp "$CORPUS/oci/oci-layout" "$CORPUS/oci/index.json" "$W/l/"
cp -al "$CORPUS/oci/blobs/sha256" "$W/l/blobs/"
L=$W/l M=$W/mnt
echo "# ocitree commit benchmark: $(nproc) cores, $(date -u +%F), runs=$RUNS"

# ---- 1. a one-file change of node ----
"$OCITREE" mount --image "$L:node" "$M" && umnt "$M" # layer indexes cached, as after any mount
echo "umoci unpack of node (once) ..."
s=$(now)
umoci unpack --image "$L:node" "$W/bundle" >/dev/null 2>&1 || { echo "umoci unpack failed"; exit 1; }
report "umoci unpack node (s, once)" "$(secs "$s")"
off_t=() live_t=() repack_t=()
for i in $(seq "$RUNS"); do
	# ocitree, offline: mount, change, unmount, commit
	rm -rf "$W/u" "$W/u.work" && mkdir -p "$W/u"
	"$OCITREE" mount --upper "$W/u" --image "$L:node" "$M"
	echo "change $i" >>"$M/app/package.json"
	umnt "$M"
	sync
	s=$(now)
	"$OCITREE" commit --upper "$W/u" --image "$L:node-off-$i" >/dev/null || exit 1
	off_t+=("$(secs "$s")")
	# ocitree, live
	rm -rf "$W/u" "$W/u.work" && mkdir -p "$W/u"
	"$OCITREE" mount --upper "$W/u" --image "$L:node" "$M"
	echo "change $i" >>"$M/app/package.json"
	sync
	s=$(now)
	"$OCITREE" commit "$M" --image "$L:node-live-$i" >/dev/null || exit 1
	live_t+=("$(secs "$s")")
	umnt "$M"
	# umoci: the same change in the unpacked bundle, then repack
	echo "change $i" >>"$W/bundle/rootfs/app/package.json"
	sync
	s=$(now)
	umoci repack --image "$L:node-umoci-$i" "$W/bundle" >/dev/null 2>&1 || exit 1
	repack_t+=("$(secs "$s")")
done
off=$(printf '%s\n' "${off_t[@]}" | median)
live=$(printf '%s\n' "${live_t[@]}" | median)
rep=$(printf '%s\n' "${repack_t[@]}" | median)
report "ocitree commit --upper, one-file change of node (s)" "$off"
report "ocitree commit MOUNTPOINT (live), the same (s)" "$live"
report "umoci repack of the same change (s)" "$rep"
report "  ratio umoci / ocitree offline (target >= 20)" "$(ratio "$rep" "$off")"
report "  ratio umoci / ocitree live" "$(ratio "$rep" "$live")"
rm -rf "$W/bundle"

# ---- 2. write throughput ----
write_bench() { # LABEL DIR (where the upper directory and the mount live)
	local label=$1 d=$2
	rm -rf "$d/u" "$d/u.work" && mkdir -p "$d/u" "$d/m"
	"$OCITREE" mount --upper "$d/u" --image "$L:slim" "$d/m" || return 1
	local mt=() nt=()
	for i in $(seq "$RUNS"); do
		sync
		s=$(now)
		dd if=/dev/zero of="$d/m/new" bs=1M count=1024 conv=fsync status=none
		mt+=("$(secs "$s")")
		rm -f "$d/m/new"
		sync
		s=$(now)
		dd if=/dev/zero of="$d/u/native" bs=1M count=1024 conv=fsync status=none
		nt+=("$(secs "$s")")
		rm -f "$d/u/native"
	done
	umnt "$d/m"
	local mm nn
	mm=$(printf '%s\n' "${mt[@]}" | median)
	nn=$(printf '%s\n' "${nt[@]}" | median)
	report "write 1 GiB + fsync through the mount, $label (MB/s)" "$(awk -v t="$mm" 'BEGIN {printf "%.0f", 1024 / t}')"
	report "the same write to the upper directory's $label (MB/s)" "$(awk -v t="$nn" 'BEGIN {printf "%.0f", 1024 / t}')"
	report "  ratio mount / native (target >= 0.5)" "$(awk -v a="$nn" -v b="$mm" 'BEGIN {printf "%.2f", a / b}')"
}
write_bench "$(stat -f -c %T "$W")" "$W"
mkdir -p "$W/tmpfs"
if mount -t tmpfs -o size=3g tmpfs "$W/tmpfs"; then
	write_bench tmpfs "$W/tmpfs"
	umount "$W/tmpfs"
fi
rm -rf "$W"
