#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# bench/build.sh [OCITREE] [CORPUS]: one recipe built on the corpus image node
# (82k entries) by every builder at hand:
#   from node; import a small file (into /etc); run: write two files and
#   remove one from the image (/etc/debian_version); set one variable.
#   (a)  the umoci + runc hand workflow: umoci unpack, the import copied in,
#        runc run, umoci repack, umoci config
#   (b)  buildah from the layout: buildah from oci:... (imports the base into
#        buildah's storage), buildah copy, buildah run, buildah config,
#        buildah commit (into its storage)
#   (b') the same with the base already in buildah's storage
#   (c)  ocitree build, the base's layer index not yet cached
#   (d)  ocitree build, the index cached (no build cache entry)
#   (e)  ocitree build again, the recipe unchanged (a cache hit)
# and the floor of (c): one bare decompress of the base's layer blobs to
# /dev/null, cold, plus the run step's own time (the runc run of (a), on the
# extracted rootfs).
# Targets: (d) >= 50x faster than (a), >= 20x than (b), >= 2x than (b');
# (c) within 1.5x of the floor; (e) under 200 ms.
#
# Root.  Every builder works on its own hard-linked copy of the corpus layout
# (made before the clock starts, so the base is in the layout for all); the
# ocitree caches, TMPDIR and buildah's storage (driver overlay, or
# STORAGE_DRIVER=vfs) are private, under $BENCH_DIR/build.  The page cache
# is dropped before each timed run (DROP=0 keeps it: a check of the script,
# not a measurement).  Each figure is the median of RUNS (default 3) runs,
# the cases alternating within each run.  IMAGE (default node) chooses
# another image of the corpus.
#
#   sudo bench/build.sh _build/ocitree /var/tmp/ocitree-corpus
set -uo pipefail
OCITREE=$(realpath "${1:-_build/ocitree}")
CORPUS=${2:-/var/tmp/ocitree-corpus}
RUNS=${RUNS:-3}
IMAGE=${IMAGE:-node}
DRIVER=${STORAGE_DRIVER:-overlay}
W=${BENCH_DIR:-/var/tmp/ocitree-bench}/build
[ "$(id -u)" -eq 0 ] || { echo "bench/build.sh: run as root" >&2; exit 1; }
for p in umoci runc buildah jq; do
	command -v "$p" >/dev/null || { echo "bench/build.sh: $p is not installed" >&2; exit 1; }
done
[ -x "$OCITREE" ] || { echo "bench/build.sh: no ocitree at $OCITREE" >&2; exit 1; }
[ -f "$CORPUS/oci/index.json" ] || { echo "bench/build.sh: no corpus in $CORPUS (see make-corpus.sh)" >&2; exit 1; }
MANIFEST=$(jq -r --arg t "$IMAGE" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' \
	"$CORPUS/oci/index.json" | cut -d: -f2)
[ -n "$MANIFEST" ] || { echo "bench/build.sh: no tag $IMAGE in $CORPUS/oci" >&2; exit 1; }

now() { date +%s.%N; }
drop() { [ "${DROP:-1}" = 0 ] || { sync; echo 3 >/proc/sys/vm/drop_caches; }; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a / b}'; }
# verdict OK-EXPRESSION (awk, over a and b)
verdict() { awk -v a="$1" -v b="$2" "BEGIN {exit !($3)}" && echo ok || echo MISSED; }
report() { printf '%-62s %s\n' "$1" "$2"; }
secs() { awk -v t="$1" 'BEGIN {printf "%.3f", t}'; }
# (cases run in command substitutions: a failure is a file)
failed() { echo "bench/build.sh: $*" >&2; : >"$W/failed"; }

# ---- a clean private state ----
export CONTAINERS_CONF=$W/containers.conf CONTAINERS_STORAGE_CONF=$W/storage.conf
export BUILDAH_RUNTIME=runc BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-oci} TMPDIR=$W/tmp
bh() { timeout 900 buildah "$@"; }
cleanup() {
	[ -f "$W/storage.conf" ] && { bh rm -a >/dev/null 2>&1; bh rmi -a -f >/dev/null 2>&1; }
	findmnt -rn -o TARGET | grep "^$W/" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
	return 0
}
cleanup
rm -rf "$W"
mkdir -p "$W/tmp" "$W/recipe"
trap 'cleanup; rm -rf "$W"' EXIT
cat >"$W/storage.conf" <<EOF
[storage]
driver = "$DRIVER"
graphroot = "$W/graph"
runroot = "$W/run"
EOF
cat >"$W/containers.conf" <<EOF
[containers]
netns = "none"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$W/events.log"
tmp_dir = "$W/tmp"
EOF

# ---- the recipe, the same for every builder ----
echo 'imported by the recipe' >"$W/recipe/hello.txt"
STEP='echo one >/root/bench-one; echo two >/root/bench-two; rm /etc/debian_version'
# the fresh layout of one case: the corpus layout, hard-linked
layout() {
	rm -rf "$W/l-$1"
	mkdir -p "$W/l-$1/blobs"
	cp "$CORPUS/oci/oci-layout" "$CORPUS/oci/index.json" "$W/l-$1/"
	cp -al "$CORPUS/oci/blobs/sha256" "$W/l-$1/blobs/"
}
cat >"$W/recipe/stacker.yaml" <<EOF
bench-built:
  from: {type: oci, url: "\${{BASE}}"}
  imports:
    - path: hello.txt
      dest: /etc/
  run: |
    $STEP
  environment: {BENCH: "1"}
EOF
# ocitree build in layout $1; prints the build's output line
ob() {
	"$OCITREE" build --layout "$W/l-$1" -f "$W/recipe/stacker.yaml" --substitute "BASE=$W/l-$1:$IMAGE" \
		--cache-dir "$W/cache" --runtime runc 2>"$W/ob.err" || { cat "$W/ob.err" >&2; return 1; }
}

# check L TAG WHO: the last layer of L:TAG holds what the recipe changed
check() {
	local m l list
	m=$(jq -r --arg t "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' \
		"$1/index.json" | cut -d: -f2)
	l=$(jq -r '.layers[-1].digest' "$1/blobs/sha256/$m" 2>/dev/null | cut -d: -f2)
	list=$(tar -tf "$1/blobs/sha256/$l" 2>/dev/null | sed 's|^\./||' | LC_ALL=C sort | tr '\n' ' ')
	case $list in
	*etc/.wh.debian_version*etc/hello.txt*root/bench-one*root/bench-two*) ;;
	*) failed "$3: the new layer lacks part of the change: $list" ;;
	esac
}
# (a): sets a_t (the whole) and r_t (runc run alone)
case_a() {
	local s e r0 r1 b=$W/bundle
	layout a
	rm -rf "$b"
	runc delete -f "ocitree-bench-$$" >/dev/null 2>&1
	drop
	s=$(now)
	umoci unpack --image "$W/l-a:$IMAGE" "$b" >/dev/null &&
		cp "$W/recipe/hello.txt" "$b/rootfs/etc/" &&
		jq --arg s "$STEP" '.root.readonly = false | .process.terminal = false | .process.args = ["/bin/sh", "-e", "-c", $s]' \
			"$b/config.json" >"$b/config.new" && mv "$b/config.new" "$b/config.json" &&
		r0=$(now) && runc run --bundle "$b" "ocitree-bench-$$" </dev/null && r1=$(now) &&
		umoci repack --image "$W/l-a:bench-built" "$b" >/dev/null &&
		umoci config --image "$W/l-a:bench-built" --config.env BENCH=1 >/dev/null || { failed "(a) failed"; return; }
	e=$(now)
	a_t+=("$(echo "$e - $s" | bc)")
	r_t+=("$(echo "$r1 - $r0" | bc)")
	check "$W/l-a" bench-built "(a)"
	rm -rf "$b" "$W/l-a"
}
# (b) and (b'): $1 is the image buildah starts from; prints the seconds
case_b() {
	local s e c
	drop
	s=$(now)
	c=$(bh from -q "$1") &&
		bh copy "$c" "$W/recipe/hello.txt" /etc/ >/dev/null &&
		bh run --runtime runc --network none "$c" -- /bin/sh -e -c "$STEP" </dev/null &&
		bh config --env BENCH=1 "$c" &&
		bh commit -q "$c" bench-built >/dev/null || { failed "buildah from $1 failed"; echo fail; return; }
	e=$(now)
	echo "$e - $s" | bc
	bh rm -a >/dev/null
	bh rmi -f bench-built >/dev/null 2>&1
}
# (c), (d), (e): ocitree build; $1: cached (e) or not
case_o() {
	local s e out
	drop
	s=$(now)
	out=$(ob o) || { failed "ocitree build failed"; echo fail; return; }
	e=$(now)
	case $1:$out in
	hit:*"(cached)"*) ;;
	hit:*) failed "the rebuild of an unchanged recipe was not a cache hit: $out" ;;
	miss:*"(cached)"*) failed "a build that should run was a cache hit: $out" ;;
	esac
	echo "$e - $s" | bc
}
# the bare decompress of the base's layers, cold
decompress() {
	local s e d t
	drop
	s=$(now)
	while read -r t d; do
		case $t in
		*zstd*) zstd -qdc "$CORPUS/oci/blobs/sha256/${d#sha256:}" ;;
		*gzip*) if command -v igzip >/dev/null; then igzip -dc "$CORPUS/oci/blobs/sha256/${d#sha256:}"; else gzip -dc "$CORPUS/oci/blobs/sha256/${d#sha256:}"; fi ;;
		*) cat "$CORPUS/oci/blobs/sha256/${d#sha256:}" ;;
		esac >/dev/null || failed "decompress of $d failed"
	done < <(jq -r '.layers[] | "\(.mediaType) \(.digest)"' "$CORPUS/oci/blobs/sha256/$MANIFEST")
	e=$(now)
	echo "$e - $s" | bc
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "# ocitree build benchmark: $IMAGE, $(nproc) cores, $(date -u '+%F %H:%M UTC'), runs=$RUNS, drop=${DROP:-1}"
echo "# buildah $(buildah --version | cut -d' ' -f3), storage driver $DRIVER, isolation $BUILDAH_ISOLATION, runtime runc; $(umoci --version)"
a_t=() r_t=() b_t=() b2_t=() c_t=() d_t=() e_t=() f_t=()
for i in $(seq "$RUNS"); do
	case_a
	# (b): nothing in buildah's storage
	cleanup
	layout b
	b_t+=("$(case_b "oci:$W/l-b:$IMAGE")")
	# (b'): the base is there now, pulled by (b)
	id=$(bh images -q --no-trunc | head -1)
	[ -n "$id" ] || failed "(b) left no base image in buildah's storage"
	b2_t+=("$(case_b "$id")")
	cleanup
	rm -rf "$W/l-b"
	# (c): no cached index
	rm -rf "$W/cache"
	layout o
	c_t+=("$(case_o miss)")
	# (d): the index cached, but neither the build cache nor the built tag
	rm -rf "$W/cache/build-v1"
	layout o
	d_t+=("$(case_o miss)")
	# (e): unchanged
	e_t+=("$(case_o hit)")
	check "$W/l-o" bench-built "ocitree build"
	rm -rf "$W/l-o"
	f_t+=("$(decompress)")
done
a=$(printf '%s\n' "${a_t[@]}" | median)
r=$(printf '%s\n' "${r_t[@]}" | median)
b=$(printf '%s\n' "${b_t[@]}" | median)
b2=$(printf '%s\n' "${b2_t[@]}" | median)
c=$(printf '%s\n' "${c_t[@]}" | median)
d=$(printf '%s\n' "${d_t[@]}" | median)
e=$(printf '%s\n' "${e_t[@]}" | median)
f=$(printf '%s\n' "${f_t[@]}" | median)
floor=$(echo "$f + $r" | bc)
report "(a) umoci unpack + runc run + umoci repack + config (s)" "$(secs "$a")"
report "    of which runc run, the run step alone (s)" "$(secs "$r")"
report "(b) buildah from oci: + copy + run + config + commit (s)" "$(secs "$b")"
report "(b') the same, the base already in buildah's storage (s)" "$(secs "$b2")"
report "(c) ocitree build, base's index not cached (s)" "$(secs "$c")"
report "(d) ocitree build, index cached (s)" "$(secs "$d")"
report "(e) ocitree build of the unchanged recipe (s)" "$(secs "$e")"
report "bare decompress of the base's layers, cold (s)" "$(secs "$f")"
report "floor of (c): decompress + run step (s)" "$(secs "$floor")"
report "  (a)/(d) (target >= 50)" "$(ratio "$a" "$d") $(verdict "$a" "$d" 'a >= 50 * b')"
report "  (b)/(d) (target >= 20)" "$(ratio "$b" "$d") $(verdict "$b" "$d" 'a >= 20 * b')"
report "  (b')/(d) (target >= 2)" "$(ratio "$b2" "$d") $(verdict "$b2" "$d" 'a >= 2 * b')"
report "  (c)/floor (target <= 1.5)" "$(ratio "$c" "$floor") $(verdict "$c" "$floor" 'a <= 1.5 * b')"
report "  (e) in ms (target < 200)" "$(awk -v e="$e" 'BEGIN {printf "%.0f", e * 1000}') $(verdict "$e" 0.2 'a < b')"
echo "# load at start $LOAD0, at end $(cut -d' ' -f1-3 /proc/loadavg)"
st=0
[ -e "$W/failed" ] && st=1
exit "$st"
