#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# bench/unpack-repack.sh: ocitree against umoci on the benchmark corpus
# (../shared/bench/make-corpus.sh), in one run:
#
#   unpack of slim and node (gzip), against umoci 0.4 and against the floor:
#   GNU tar extracting the same layers, decompressed beforehand (igzip -dc,
#   not timed), onto a brand-new filesystem as well; unpack of the zstd
#   images against zstd -dc (umoci 0.4 cannot read zstd layers);
#   repack after changing one file, against umoci repack;
#   verify: every corpus image unpacks to umoci's tree (bench/compare-tree.sh:
#   paths, types, modes, owners, sizes, mtimes, links, hardlinks, xattrs,
#   contents), mtree and config.json, and every zstd image to its gzip twin.
#
# Runs alternate between the tools; the table shows medians and ratios.
# Warm figures have the blobs in the page cache; cold ones drop the page
# cache before each run. Each run starts after a sync, so that the writeback
# of the previous one does not count, and unpacks into a brand-new ext4
# filesystem (a loop device, FS=loop, the default): on an aged filesystem
# the inode allocator's cost grows with what earlier runs left or deleted,
# and the figures drift by seconds. FS=dir unpacks into WORK instead.
#
# Environment: CORPUS (default /var/tmp/ocitree-corpus), OCITREE (default
# the build next to this script), WORK (default /var/tmp/ocitree-bench),
# FS (loop or dir), RUNS (warm runs, default 5), COLD_RUNS (default 3, 0 to
# skip),
# CASES (default "unpack-slim unpack-node unpack-zstd repack").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CORPUS=${CORPUS:-/var/tmp/ocitree-corpus}
OCITREE=${OCITREE:-$here/../_build/ocitree}
WORK=${WORK:-/var/tmp/ocitree-bench}
RUNS=${RUNS:-5}
FS=${FS:-loop}
COLD_RUNS=${COLD_RUNS:-3}
CASES=${CASES:-verify unpack-slim unpack-node unpack-zstd repack}
[ "$(id -u)" = 0 ] || { echo "run as root (unpack keeps owners and devices; cold runs drop caches)" >&2; exit 1; }
for t in umoci igzip zstd jq; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
[ -x "$OCITREE" ] || { echo "no ocitree at $OCITREE" >&2; exit 1; }
[ -d "$CORPUS/oci" ] || { echo "no corpus at $CORPUS (../shared/bench/make-corpus.sh)" >&2; exit 1; }
rm -rf "$WORK"
mkdir -p "$WORK/fs"
cleanup() {
	umount "$WORK/fs" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
[ "$FS" = dir ] || command -v mkfs.ext4 >/dev/null || { echo "FS=loop needs mkfs.ext4" >&2; exit 1; }

# fresh_target: a new empty directory to unpack into, on a brand-new
# filesystem with FS=loop; prints its path
fresh_target() {
	if [ "$FS" = dir ]; then
		mktemp -u -p "$WORK" t.XXXXXX
		return
	fi
	umount "$WORK/fs" 2>/dev/null || true
	rm -f "$WORK/fs.img"
	truncate -s 32G "$WORK/fs.img"
	mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$WORK/fs.img"
	mount -o loop "$WORK/fs.img" "$WORK/fs"
	echo "$WORK/fs/t"
}

now() { date +%s.%N; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# time_cmd FILE CMD...: append the wall time of CMD to FILE
time_cmd() {
	local f=$1 t0 t1
	shift
	sync
	t0=$(now)
	"$@" >/dev/null 2>"$WORK/err" || { echo "failed: $* ($(tail -1 "$WORK/err"))" >&2; exit 1; }
	t1=$(now)
	echo "$t1 - $t0" | bc >>"$f"
}
layers() { # LAYOUT TAG: the layer blob paths
	local m
	m=$(jq -r --arg t "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$t) | .digest' \
		"$1/index.json")
	jq -r '.layers[].digest' "$1/blobs/sha256/${m#sha256:}" | sed "s|sha256:|$1/blobs/sha256/|"
}
rows=()
row() { rows+=("$(printf '| %s | %s | %s | %s | %s | %s |' "$@")"); }
ratio() { echo "scale=2; $1 / $2" | bc; }

# bench_unpack NAME LAYOUT TAG PEER FLOOR_NAME FLOOR_CMD: FLOOR_CMD runs
# with T set to a fresh target directory
bench_unpack() {
	local name=$1 layout=$2 tag=$3 peer=$4 floor_name=$5 floor=$6 mode runs i
	for mode in warm cold; do
		runs=$RUNS
		[ $mode = cold ] && runs=$COLD_RUNS
		[ "$runs" -gt 0 ] || continue
		: >"$WORK/o" && : >"$WORK/p" && : >"$WORK/f"
		for ((i = 0; i < runs; i++)); do
			t=$(fresh_target)
			[ $mode = cold ] && drop_caches
			time_cmd "$WORK/o" "$OCITREE" unpack --image "$layout:$tag" "$t"
			if [ "$peer" = umoci ]; then
				t=$(fresh_target)
				[ $mode = cold ] && drop_caches
				time_cmd "$WORK/p" umoci unpack --image "$layout:$tag" "$t"
			fi
			T=$(fresh_target)
			[ $mode = cold ] && drop_caches
			time_cmd "$WORK/f" env T="$T" sh -c "$floor"
		done
		local o p f
		o=$(median <"$WORK/o")
		f=$(median <"$WORK/f")
		if [ "$peer" = umoci ]; then
			p=$(median <"$WORK/p")
			row "$name ($mode)" "$o s" "umoci $p s" "$(ratio "$p" "$o")x faster" "$floor_name $f s" "$(ratio "$o" "$f")x the floor"
		else
			row "$name ($mode)" "$o s" "-" "-" "$floor_name $f s" "$(ratio "$o" "$f")x the floor"
		fi
		echo "${rows[-1]}" >&2
	done
}

verified=()
for c in $CASES; do
	case $c in
	verify)
		t=$(fresh_target)
		mkdir -p "$t"
		for ref in $(jq -r '.manifests[].annotations["org.opencontainers.image.ref.name"]' "$CORPUS/oci/index.json"); do
			"$OCITREE" unpack --image "$CORPUS/oci:$ref" "$t/o-$ref" >/dev/null
			umoci unpack --image "$CORPUS/oci:$ref" "$t/u-$ref" >/dev/null 2>&1
			"$here/compare-tree.sh" "$t/u-$ref/rootfs" "$t/o-$ref/rootfs" >&2
			/usr/bin/python3 "$here/../tests/tools/mtree-diff.py" "$t/u-$ref"/*.mtree "$t/o-$ref"/*.mtree >&2
			diff <(jq -S '.mounts |= sort_by(.destination)' "$t/u-$ref/config.json") \
				<(jq -S '.mounts |= sort_by(.destination)' "$t/o-$ref/config.json") >&2
			verified+=("oci:$ref")
			rm -rf "$t/u-$ref"
			if [ -d "$CORPUS/oci-zstd" ] &&
				jq -e --arg r "$ref" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$r)' \
					"$CORPUS/oci-zstd/index.json" >/dev/null; then
				"$OCITREE" unpack --image "$CORPUS/oci-zstd:$ref" "$t/z-$ref" >/dev/null
				"$here/compare-tree.sh" "$t/o-$ref/rootfs" "$t/z-$ref/rootfs" >&2
				verified+=("oci-zstd:$ref")
				rm -rf "$t/z-$ref"
			fi
			rm -rf "$t/o-$ref"
		done
		echo "identical to umoci: ${verified[*]}" >&2
		;;
	unpack-slim | unpack-node)
		tag=${c#unpack-}
		# the floor's input: the layers decompressed, outside the target
		# filesystem (and outside the timing)
		tars=()
		for l in $(layers "$CORPUS/oci" "$tag"); do
			tars+=("$WORK/${l##*/}.tar")
			igzip -dc "$l" >"${tars[-1]}"
		done
		bench_unpack "unpack oci:$tag" "$CORPUS/oci" "$tag" umoci "tar -xf" \
			"mkdir \"\$T\" && for f in ${tars[*]}; do tar -xf \"\$f\" -C \"\$T\" || exit 1; done"
		rm -f "${tars[@]}"
		;;
	unpack-zstd)
		for tag in slim node; do
			bench_unpack "unpack oci-zstd:$tag" "$CORPUS/oci-zstd" "$tag" none "zstd -dc" \
				"zstd -dcq $(layers "$CORPUS/oci-zstd" "$tag" | tr '\n' ' ') >/dev/null"
		done
		;;
	repack)
		# each tool repacks its own bundle of the same image after one file
		# changed (appended to), into its own copy of the layout
		for tag in slim node; do
			t=$(fresh_target)
			mkdir -p "$t"
			cp -a "$CORPUS/oci" "$t/lo" && cp -a "$CORPUS/oci" "$t/lu"
			"$OCITREE" unpack --image "$t/lo:$tag" "$t/rb-o" >/dev/null
			umoci unpack --image "$t/lu:$tag" "$t/rb-u" >/dev/null 2>&1
			f=etc/debian_version
			: >"$WORK/o" && : >"$WORK/p"
			for ((i = 0; i < RUNS; i++)); do
				echo "change $i" >>"$t/rb-o/rootfs/$f"
				time_cmd "$WORK/o" "$OCITREE" repack --image "$t/lo:r$i" "$t/rb-o"
				echo "change $i" >>"$t/rb-u/rootfs/$f"
				time_cmd "$WORK/p" umoci repack --image "$t/lu:r$i" "$t/rb-u"
			done
			o=$(median <"$WORK/o")
			p=$(median <"$WORK/p")
			row "repack oci:$tag, one file changed" "$o s" "umoci $p s" "$(ratio "$p" "$o")x faster" "-" "-"
			echo "${rows[-1]}" >&2
			[ "$FS" = loop ] || rm -rf "$t"
		done
		;;
	*) echo "unknown case $c" >&2; exit 2 ;;
	esac
done

echo
echo "ocitree $("$OCITREE" --version | awk '{print $3}'), $(umoci --version), $(nproc) CPUs, $RUNS warm / $COLD_RUNS cold runs, medians, FS=$FS"
echo
[ ${#verified[@]} -eq 0 ] || { echo "Trees, mtrees and config.json identical to umoci's (zstd: to the gzip twin): ${verified[*]}"; echo; }
echo "| work | ocitree | peer | vs peer | floor | vs floor |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
