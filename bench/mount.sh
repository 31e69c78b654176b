#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# bench/mount.sh [OCITREE] [CORPUS]: ocitree mount against umoci unpack, the
# bare decompress floor (igzip -dc / zstd -dc of the same layers), the
# extracted tree on the native file system, and squashfuse/archivemount
# where installed.  Root; drops the page cache between cold runs.  Each
# figure is the median of RUNS (default 5) runs alternating with its peer.
#
#   sudo bench/mount.sh _build/ocitree /var/tmp/ocitree-corpus
#   sudo RW_ONLY=1 bench/mount.sh ...   (only the writable against the read-only full read)
set -uo pipefail
OCITREE=$(realpath "${1:-_build/ocitree}")
CORPUS=${2:-/var/tmp/ocitree-corpus}
RUNS=${RUNS:-5}
W=${BENCH_DIR:-/var/tmp/ocitree-bench}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$W"
export OCITREE_CACHE_DIR=$W/cache

now() { date +%s.%N; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
layers() { # LAYOUT TAG: blob paths of the image's layers
	local m
	m=$(jq -r --arg t "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' "$1/index.json")
	jq -r '.layers[].digest' "$1/blobs/sha256/${m#sha256:}" | sed "s|sha256:|$1/blobs/sha256/|"
}
umnt() { "$OCITREE" umount "$1" 2>/dev/null || umount -l "$1" 2>/dev/null; for _ in $(seq 50); do findmnt -M "$1" >/dev/null || return 0; sleep 0.05; done; }
report() { printf '%-58s %s\n' "$1" "$2"; }

MP=$W/mnt
mkdir -p "$MP"
umnt "$MP"
echo "# ocitree mount benchmark: $(nproc) cores, $(date -u +%F), runs=$RUNS"

# ---- full read of slim through a writable mount vs the read-only one ----
# the read of the full-tree case below, through a mount with an empty
# upper directory and through a read-only one, alternating, each on a fresh
# mount (the index cached): cold (page cache dropped) and hot (blobs cached).
# RW_ONLY=1 stops after this case.
"$OCITREE" mount --image "$CORPUS/oci:slim" "$MP" && umnt "$MP"
full_read() { (cd "$MP" && find . -type f -print0 | xargs -0 -n 256 cat) >/dev/null; }
ro_t=() rw_t=() ro_hot=() rw_hot=()
for i in $(seq "$RUNS"); do
	for mode in ro rw; do
		args=()
		if [ $mode = rw ]; then
			rm -rf "$W/upper" "$W/upper.work" && mkdir -p "$W/upper"
			args=(--upper "$W/upper")
		fi
		drop
		"$OCITREE" mount "${args[@]}" --image "$CORPUS/oci:slim" "$MP"
		s=$(now); full_read; e=$(now)
		umnt "$MP"
		"$OCITREE" mount "${args[@]}" --image "$CORPUS/oci:slim" "$MP"
		s2=$(now); full_read; e2=$(now)
		umnt "$MP"
		if [ $mode = rw ]; then
			rw_t+=("$(echo "$e - $s" | bc)") rw_hot+=("$(echo "$e2 - $s2" | bc)")
			[ -z "$(ls -A "$W/upper")" ] || echo "# the read left entries in the upper directory" >&2
		else
			ro_t+=("$(echo "$e - $s" | bc)") ro_hot+=("$(echo "$e2 - $s2" | bc)")
		fi
	done
done
a=$(printf '%s\n' "${rw_t[@]}" | median); b=$(printf '%s\n' "${ro_t[@]}" | median)
report "full read of slim, writable mount, empty upper (s)" "$a"
report "full read of slim, read-only mount, alternating (s)" "$b"
report "  rw/ro (target <= 1.10)" "$(ratio "$a" "$b")"
a=$(printf '%s\n' "${rw_hot[@]}" | median); b=$(printf '%s\n' "${ro_hot[@]}" | median)
report "the same with the blobs in the page cache, writable (s)" "$a"
report "the same, read-only (s)" "$b"
report "  rw/ro" "$(ratio "$a" "$b")"
rm -rf "$W/upper" "$W/upper.work"
[ "${RW_ONLY:-}" = 1 ] && exit 0

# ---- cold mount of slim vs one bare decompress pass ----
slim_layers=$(layers "$CORPUS/oci" slim)
mount_t=() floor_t=()
for i in $(seq "$RUNS"); do
	rm -rf "$OCITREE_CACHE_DIR"
	drop
	s=$(now); "$OCITREE" mount --image "$CORPUS/oci:slim" "$MP"; e=$(now)
	mount_t+=("$(echo "$e - $s" | bc)")
	umnt "$MP"
	drop
	s=$(now); for l in $slim_layers; do igzip -dc <"$l"; done >/dev/null; e=$(now)
	floor_t+=("$(echo "$e - $s" | bc)")
done
cm=$(printf '%s\n' "${mount_t[@]}" | median)
fl=$(printf '%s\n' "${floor_t[@]}" | median)
report "cold mount slim, no cached index (s)" "$cm"
report "igzip -dc of slim's layers (s)" "$fl"
report "  ratio (target <= 1.3)" "$(ratio "$cm" "$fl")"

zl=$(layers "$CORPUS/oci-zstd" slim)
mount_t=() floor_t=()
for i in $(seq "$RUNS"); do
	rm -rf "$OCITREE_CACHE_DIR"
	drop
	s=$(now); "$OCITREE" mount --image "$CORPUS/oci-zstd:slim" "$MP"; e=$(now)
	mount_t+=("$(echo "$e - $s" | bc)")
	umnt "$MP"
	drop
	s=$(now); for l in $zl; do zstd -q -dc <"$l"; done >/dev/null; e=$(now)
	floor_t+=("$(echo "$e - $s" | bc)")
done
zm=$(printf '%s\n' "${mount_t[@]}" | median)
zf=$(printf '%s\n' "${floor_t[@]}" | median)
report "cold mount zstd slim, no cached index (s)" "$zm"
report "zstd -dc of slim's layers (s)" "$zf"
report "  ratio" "$(ratio "$zm" "$zf")"

# ---- warm mount + first read of /etc/os-release vs umoci unpack ----
"$OCITREE" mount --image "$CORPUS/oci:slim" "$MP" && umnt "$MP" # the index is cached now
warm_t=() umoci_t=()
for i in $(seq "$RUNS"); do
	drop
	s=$(now); "$OCITREE" mount --image "$CORPUS/oci:slim" "$MP" && cat "$MP/etc/os-release" >/dev/null; e=$(now)
	warm_t+=("$(echo "($e - $s) * 1000" | bc)")
	umnt "$MP"
	if [ "$i" -le 2 ]; then
		rm -rf "$W/umoci"
		drop
		s=$(now); umoci unpack --image "$CORPUS/oci:slim" "$W/umoci" >/dev/null 2>&1; e=$(now)
		umoci_t+=("$(echo "($e - $s) * 1000" | bc)")
	fi
done
wm=$(printf '%s\n' "${warm_t[@]}" | median)
um=$(printf '%s\n' "${umoci_t[@]}" | median)
report "warm mount + first read of /etc/os-release (ms)" "$wm"
report "umoci unpack slim (ms)" "$um"
report "  speed-up (target > 100x)" "$(ratio "$um" "$wm")"

# ---- first reads of 200 random files ----
(cd "$W/umoci/rootfs" && find . -type f -size +0 | shuf -n 200 --random-source=<(yes)) >"$W/files"
p50s=()
for i in $(seq "$RUNS"); do
	drop
	"$OCITREE" mount --image "$CORPUS/oci:slim" "$MP"
	p50s+=("$(/usr/bin/python3 - "$MP" "$W/files" <<'PY'
import os, sys, time
mp, lst = sys.argv[1], sys.argv[2]
ts = []
for p in open(lst).read().split("\n"):
    if not p:
        continue
    t = time.perf_counter()
    with open(os.path.join(mp, p), "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass
    ts.append((time.perf_counter() - t) * 1000)
ts.sort()
print("%.3f %.3f" % (ts[len(ts) // 2], ts[int(len(ts) * 0.9)]))
PY
)")
	umnt "$MP"
done
report "first read of 200 random files, p50 ms (target < 2)" "$(printf '%s\n' "${p50s[@]}" | cut -d' ' -f1 | median)"
report "first read of 200 random files, p90 ms" "$(printf '%s\n' "${p50s[@]}" | cut -d' ' -f2 | median)"

# ---- full-tree read vs bare decompress ----
# the floor again, alternating with these reads: on a shared machine the
# first one may have been taken under another load.  Then both again with
# the blobs in the page cache, which leaves the disk out
full_t=() warm_full=() native_t=() floor_t=() pipe_t=() hot_t=() hot_floor_t=()
for i in $(seq "$RUNS"); do
	drop
	"$OCITREE" mount --image "$CORPUS/oci:slim" "$MP"
	s=$(now); (cd "$MP" && find . -type f -print0 | xargs -0 -n 256 cat) >/dev/null; e=$(now)
	full_t+=("$(echo "$e - $s" | bc)")
	s=$(now); (cd "$MP" && find . -type f -print0 | xargs -0 -n 256 cat) >/dev/null; e=$(now)
	warm_full+=("$(echo "$e - $s" | bc)")
	umnt "$MP"
	(cd "$W/umoci/rootfs" && find . -type f -print0 | xargs -0 -n 256 cat) >/dev/null
	s=$(now); (cd "$W/umoci/rootfs" && find . -type f -print0 | xargs -0 -n 256 cat) >/dev/null; e=$(now)
	native_t+=("$(echo "$e - $s" | bc)")
	drop
	s=$(now); for l in $slim_layers; do igzip -dc <"$l"; done >/dev/null; e=$(now)
	floor_t+=("$(echo "$e - $s" | bc)")
	drop
	s=$(now); for l in $slim_layers; do igzip -dc <"$l"; done | cat >/dev/null; e=$(now)
	pipe_t+=("$(echo "$e - $s" | bc)")
	"$OCITREE" mount --image "$CORPUS/oci:slim" "$MP"
	s=$(now); (cd "$MP" && find . -type f -print0 | xargs -0 -n 256 cat) >/dev/null; e=$(now)
	hot_t+=("$(echo "$e - $s" | bc)")
	umnt "$MP"
	s=$(now); for l in $slim_layers; do igzip -dc <"$l"; done >/dev/null; e=$(now)
	hot_floor_t+=("$(echo "$e - $s" | bc)")
done
fl=$(printf '%s\n' "${floor_t[@]}" | median)
fr=$(printf '%s\n' "${full_t[@]}" | median)
wf=$(printf '%s\n' "${warm_full[@]}" | median)
nt=$(printf '%s\n' "${native_t[@]}" | median)
report "full read of slim through a fresh mount (s)" "$fr"
report "igzip -dc of slim's layers, alternating with it (s)" "$fl"
report "  vs igzip -dc (target <= 1.5)" "$(ratio "$fr" "$fl")"
# informational: the same decompress with the bytes copied once more into a
# second process (igzip -dc | cat), as a reader of the mount gets them (the
# kernel copies into the page cache, the reader copies out of it); the
# target stays against igzip -dc alone
pf=$(printf '%s\n' "${pipe_t[@]}" | median)
report "igzip -dc | cat of slim's layers, cold, info (s)" "$pf"
report "  vs igzip -dc | cat (info)" "$(ratio "$fr" "$pf")"
hr=$(printf '%s\n' "${hot_t[@]}" | median)
hf=$(printf '%s\n' "${hot_floor_t[@]}" | median)
report "the same with the blobs in the page cache (s)" "$hr"
report "igzip -dc of the cached blobs (s)" "$hf"
report "  ratio" "$(ratio "$hr" "$hf")"
# what FUSE costs of it: every chunk decoded already (a chunk cache that
# holds all of slim), the page cache dropped before each read
"$OCITREE" mount -o cache_size=1024 --image "$CORPUS/oci:slim" "$MP"
(cd "$MP" && find . -type f -print0 | xargs -0 -n 256 cat) >/dev/null
dec_t=()
for i in $(seq "$RUNS"); do
	drop
	s=$(now); (cd "$MP" && find . -type f -print0 | xargs -0 -n 256 cat) >/dev/null; e=$(now)
	dec_t+=("$(echo "$e - $s" | bc)")
done
umnt "$MP"
report "full read with every chunk decoded already (s)" "$(printf '%s\n' "${dec_t[@]}" | median)"
report "second full read through the mount (s)" "$wf"
report "second full read of the extracted tree (s)" "$nt"
report "  ratio (target <= 1.3)" "$(ratio "$wf" "$nt")"

# ---- find over node, and the daemon's memory ----
if [ ! -d "$W/node/rootfs" ]; then umoci unpack --image "$CORPUS/oci:node" "$W/node" >/dev/null 2>&1; fi
"$OCITREE" mount --image "$CORPUS/oci:node" "$MP" && umnt "$MP"
find_m=() find_n=() find_mw=() find_nw=()
for i in $(seq "$RUNS"); do
	drop
	"$OCITREE" mount --image "$CORPUS/oci:node" "$MP"
	s=$(now); find "$MP" >/dev/null; e=$(now)
	find_m+=("$(echo "$e - $s" | bc)")
	s=$(now); find "$MP" >/dev/null; e=$(now)
	find_mw+=("$(echo "$e - $s" | bc)")
	umnt "$MP"
	drop
	s=$(now); find "$W/node/rootfs" >/dev/null; e=$(now)
	find_n+=("$(echo "$e - $s" | bc)")
	s=$(now); find "$W/node/rootfs" >/dev/null; e=$(now)
	find_nw+=("$(echo "$e - $s" | bc)")
done
a=$(printf '%s\n' "${find_m[@]}" | median); b=$(printf '%s\n' "${find_n[@]}" | median)
report "find over mounted node, fresh mount (s)" "$a"
report "find over extracted node, cold cache (s)" "$b"
report "  ratio (target <= 1.5)" "$(ratio "$a" "$b")"
a=$(printf '%s\n' "${find_mw[@]}" | median); b=$(printf '%s\n' "${find_nw[@]}" | median)
report "find over mounted node, second run (s)" "$a"
report "find over extracted node, warm cache (s)" "$b"
report "  ratio" "$(ratio "$a" "$b")"

# first with node's index being built (no cached index): the index pass
# must not need more memory than what it builds
rm -rf "$OCITREE_CACHE_DIR"
drop
"$OCITREE" mount -f --image "$CORPUS/oci:node" "$MP" &
pid=$!
for _ in $(seq 600); do findmnt -M "$MP" >/dev/null && break; sleep 0.05; done
find "$MP" -printf '%s %m %U %l\n' >/dev/null
getfattr -R -d -m - "$MP" >/dev/null 2>&1
report "daemon peak RSS, first mount of node (index built) + metadata walk (MiB, target < 24)" \
	"$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' /proc/$pid/status)"
umnt "$MP"
wait $pid

# then with the index cached
"$OCITREE" mount -f --image "$CORPUS/oci:node" "$MP" &
pid=$!
for _ in $(seq 100); do findmnt -M "$MP" >/dev/null && break; sleep 0.05; done
find "$MP" -printf '%s %m %U %l\n' >/dev/null
getfattr -R -d -m - "$MP" >/dev/null 2>&1
report "daemon peak RSS on node (index cached) after walking all metadata (MiB, target < 24)" \
	"$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' /proc/$pid/status)"
(cd "$MP" && find . -type f -print0 | xargs -0 -n 256 cat) >/dev/null
report "  ... and after reading every file (MiB)" "$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' /proc/$pid/status)"
umnt "$MP"
wait $pid

# ---- runc with the mount as a read-only rootfs ----
if command -v runc >/dev/null; then
	rm -rf "$W/bundle" && mkdir -p "$W/bundle/rootfs"
	(cd "$W/bundle" && runc spec)
	jq '.root.path = "rootfs" | .root.readonly = true | .process.terminal = false | .process.args = ["/bin/sh", "-c", "grep PRETTY /etc/os-release"]' \
		"$W/bundle/config.json" >"$W/bundle/c" && mv "$W/bundle/c" "$W/bundle/config.json"
	"$OCITREE" mount --image "$CORPUS/oci:slim" "$W/bundle/rootfs"
	report "runc run on the mount" "$(cd "$W/bundle" && runc run "ocitree-bench-$$" 2>&1 | tr -d '\n')"
	umnt "$W/bundle/rootfs"
fi

# ---- peers ----
if command -v squashfuse >/dev/null && command -v mksquashfs >/dev/null; then
	[ -f "$W/slim.sqfs" ] || mksquashfs "$W/umoci/rootfs" "$W/slim.sqfs" -comp gzip -quiet -noappend >/dev/null
	mkdir -p "$W/sq"
	t=()
	for i in $(seq "$RUNS"); do
		drop
		s=$(now); squashfuse "$W/slim.sqfs" "$W/sq" && cat "$W/sq/etc/os-release" >/dev/null; e=$(now)
		t+=("$(echo "($e - $s) * 1000" | bc)")
		umnt "$W/sq"
	done
	report "squashfuse (gzip squashfs of slim): mount + first read (ms)" "$(printf '%s\n' "${t[@]}" | median)"
	drop
	squashfuse "$W/slim.sqfs" "$W/sq"
	s=$(now); (cd "$W/sq" && find . -type f -print0 | xargs -0 -n 256 cat) >/dev/null; e=$(now)
	report "squashfuse: full read of slim (s)" "$(echo "$e - $s" | bc)"
	umnt "$W/sq"
fi
if command -v archivemount >/dev/null; then
	mkdir -p "$W/am"
	first=$(echo "$slim_layers" | head -1)
	drop
	s=$(now); archivemount -o readonly "$first" "$W/am" && cat "$W/am/etc/os-release" >/dev/null; e=$(now)
	report "archivemount (base layer only): mount + first read (s)" "$(echo "$e - $s" | bc)"
	umnt "$W/am"
	rm -rf "$OCITREE_CACHE_DIR"
	drop
	s=$(now); "$OCITREE" mount --image "$CORPUS/oci:slim" --layer 1 "$MP" && cat "$MP/etc/os-release" >/dev/null; e=$(now)
	report "ocitree --layer 1, no cached index: mount + first read (s)" "$(echo "$e - $s" | bc)"
	umnt "$MP"
fi
