#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# bench/store.sh [OCITREE] [CORPUS]: from `podman pull` to the first output
# of `podman run IMAGE cat /app/package.json`, for the corpus image node
# pushed to a loopback docker-registry:
#   (a) podman alone (pull and extract every layer)
#   (b) podman with `ocitree store` over the corpus layout, no cached index
#   (c) the same with the layer indexes cached (the store restarted)
# and the time of `podman run IMAGE find / -xdev | wc -l` for (a) and (c).
# Targets: (c) at least 20x faster than (a), (b) faster than (a).
#
# Root.  podman's state is private (CONTAINERS_STORAGE_CONF, CONTAINERS_CONF,
# everything under $BENCH_DIR/store); the page cache is dropped before each
# timed run.  Each figure is the median of RUNS (default 3) runs, the three
# cases alternating.  IMAGE (default node) and CMD (default
# "cat /app/package.json") choose another image of the corpus; DROP=0 keeps
# the page cache (a quick check of the script, not a measurement).
#
#   sudo bench/store.sh _build/ocitree /var/tmp/ocitree-corpus
set -uo pipefail
. "$(dirname "$0")/../tests/podman-lib.sh"
OCITREE=$(realpath "${1:-_build/ocitree}")
CORPUS=${2:-/var/tmp/ocitree-corpus}
RUNS=${RUNS:-3}
IMAGE=${IMAGE:-node}
CMD=${CMD:-cat /app/package.json}
W=${BENCH_DIR:-/var/tmp/ocitree-bench}/store
[ "$(id -u)" -eq 0 ] || { echo "bench/store.sh: run as root" >&2; exit 1; }
for p in podman skopeo runc /usr/bin/docker-registry; do
	command -v "$p" >/dev/null || { echo "bench/store.sh: $p is not installed" >&2; exit 1; }
done
[ -f "$CORPUS/oci/index.json" ] || { echo "bench/store.sh: no corpus in $CORPUS (see make-corpus.sh)" >&2; exit 1; }

now() { date +%s.%N; }
drop() { [ "${DROP:-1}" = 0 ] || { sync; echo 3 >/proc/sys/vm/drop_caches; }; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a / b}'; }
report() { printf '%-62s %s\n' "$1" "$2"; }
STORE=$W/mnt
umnt() { "$OCITREE" umount "$1" 2>/dev/null || umount -l "$1" 2>/dev/null; for _ in $(seq 50); do findmnt -M "$1" >/dev/null || return 0; sleep 0.05; done; }

# ---- a clean private state ----
cleanup() {
	[ -f "$W/conf-store/storage.conf" ] || return 0
	for c in plain store; do
		CONTAINERS_STORAGE_CONF=$W/conf-$c/storage.conf CONTAINERS_CONF=$W/containers.conf \
			timeout 120 podman rmi -a -f >/dev/null 2>&1
	done
	findmnt -rn -o TARGET | grep "^$W/" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
	registry_stop
	return 0
}
cleanup
rm -rf "$W"
mkdir -p "$W/mnt" "$W/tmp" "$W/net" "$W/conf-plain" "$W/conf-store"
trap 'cleanup; rm -rf "$W"' EXIT

# ---- the registry ----
registry_start "$W" warn || { echo "bench/store.sh: docker-registry does not start (see $W/registry.log)" >&2; exit 1; }
timeout 600 skopeo copy -q --dest-tls-verify=false "oci:$CORPUS/oci:$IMAGE" "docker://$REG/$IMAGE:1" ||
	{ echo "bench/store.sh: skopeo copy to the registry failed" >&2; exit 1; }
REF=$REG/$IMAGE:1

# ---- podman, with and without the store ----
for c in plain store; do
	cat >"$W/conf-$c/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$W/graph-$c"
runroot = "$W/run-$c"
EOF
done
cat >>"$W/conf-store/storage.conf" <<EOF
[storage.options]
additionallayerstores = ["$STORE:ref"]
EOF
podman_containers_conf "$W"
export CONTAINERS_CONF=$W/containers.conf
pm() { # CASE ARGS...
	local c=$1
	shift
	CONTAINERS_STORAGE_CONF=$W/conf-$c/storage.conf timeout 600 podman "$@"
}
start_store() {
	umnt "$STORE"
	"$OCITREE" store --layout "$CORPUS/oci" --cache-dir "$W/cache" "$STORE"
}

# pull_run CASE: seconds from podman pull to the end of the command's output
pull_run() {
	local c=$1 s e out
	pm "$c" rmi -a -f >/dev/null 2>&1
	drop
	s=$(now)
	pm "$c" pull -q --tls-verify=false "$REF" >/dev/null &&
		out=$(pm "$c" run --rm "$REF" $CMD) || { echo "bench/store.sh: $c: pull or run failed" >&2; echo fail; return; }
	e=$(now)
	[ -n "$out" ] || echo "bench/store.sh: $c: '$CMD' printed nothing" >&2
	echo "$e - $s" | bc
}
# find_run CASE: seconds of podman run IMAGE find / -xdev | wc -l (image pulled)
find_run() {
	local c=$1 s e n
	drop
	s=$(now)
	n=$(pm "$c" run --rm "$REF" find / -xdev | wc -l)
	e=$(now)
	echo "$c: find / -xdev: $n entries" >&2
	echo "$e - $s" | bc
}

echo "# ocitree store benchmark: $IMAGE, $(nproc) cores, $(date -u +%F), runs=$RUNS"
a_t=() b_t=() c_t=() fa_t=() fc_t=()
for i in $(seq "$RUNS"); do
	a_t+=("$(pull_run plain)")
	fa_t+=("$(find_run plain)")
	rm -rf "$W/cache"
	start_store
	b_t+=("$(pull_run store)")
	start_store # the indexes are on disk now; the store starts afresh
	c_t+=("$(pull_run store)")
	fc_t+=("$(find_run store)")
	pm store rmi -a -f >/dev/null 2>&1
	umnt "$STORE"
done
a=$(printf '%s\n' "${a_t[@]}" | median)
b=$(printf '%s\n' "${b_t[@]}" | median)
c=$(printf '%s\n' "${c_t[@]}" | median)
fa=$(printf '%s\n' "${fa_t[@]}" | median)
fc=$(printf '%s\n' "${fc_t[@]}" | median)
report "(a) podman alone: pull + run $CMD (s)" "$a"
report "(b) with ocitree store, index not cached (s)" "$b"
report "(c) with ocitree store, index cached (s)" "$c"
report "  (a)/(b) (target > 1)" "$(ratio "$a" "$b")"
report "  (a)/(c) (target >= 20)" "$(ratio "$a" "$c")"
report "podman run find / -xdev | wc -l, (a) extracted (s)" "$fa"
report "podman run find / -xdev | wc -l, (c) store (s)" "$fc"
report "  (c)/(a)" "$(ratio "$fc" "$fa")"
