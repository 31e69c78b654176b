#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Layouts written by umoci and skopeo (gzip, zstd, Docker media types,
# nested indexes) are read and changed by ocitree, and gc never removes a
# blob that a ref reaches.
. "$top_srcdir/tests/lib.sh"
have umoci || skip_all "umoci is not installed"
have skopeo || skip_all "skopeo is not installed"
have jq || skip_all "jq is not installed"
rootless=
[ "$(id -u)" -eq 0 ] || rootless=--rootless

# an image made by umoci: two layers and a config
U=$T/umoci
umoci init --layout "$U" && umoci new --image "$U:img" &&
	umoci config --image "$U:img" --config.cmd /bin/sh --config.env FOO=bar &&
	umoci unpack $rootless --image "$U:img" "$T/b" >/dev/null &&
	mkdir -p "$T/b/rootfs/etc" && echo one >"$T/b/rootfs/etc/one" &&
	umoci repack --refresh-bundle --image "$U:img" "$T/b" &&
	echo two >"$T/b/rootfs/etc/two" && rm "$T/b/rootfs/etc/one" &&
	umoci repack --image "$U:img" "$T/b" && rm -rf "$T/b" || exit 1

S=$T/skopeo-zstd
D=$T/skopeo-docker
ok "skopeo recompresses it with zstd" skopeo copy --quiet --dest-compress-format zstd "oci:$U:img" "oci:$S:img"
ok "skopeo writes it with Docker media types" skopeo copy --quiet --format v2s2 "oci:$U:img" "oci:$D:img"

for L in "$U" "$S" "$D"; do
	name=${L##*/}
	ok "$name: ls" $OCITREE ls --layout "$L"
	is "$name: ls shows the tag" "$(cat "$T/out")" img
	ok "$name: stat --json" $OCITREE stat --json --image "$L:img"
	is "$name: two layers in the history" "$(jq '[.history[] | select(.layer != null)] | length' "$T/out")" 2
	ok "$name: stat table" $OCITREE stat --image "$L:img"
	ok "$name: config writes a new tag" $OCITREE config --image "$L:img" --tag changed --config.env X=1 --config.label l=v
	ok "$name: the changed image opens" $OCITREE stat --json --image "$L:changed"
	is "$name: env kept and added" "$(jq -c .config.blob.config.Env "$T/out")" '["FOO=bar","X=1"]'
	is "$name: layers unchanged" "$(jq -c '[.manifest.blob.layers[].digest]' "$T/out")" \
		"$($OCITREE stat --json --image "$L:img" | jq -c '[.manifest.blob.layers[].digest]')"
	is "$name: written as OCI" "$(jq -r .manifest.descriptor.mediaType "$T/out")" application/vnd.oci.image.manifest.v1+json
	ok "$name: tag" $OCITREE tag --image "$L:changed" also
	ok "$name: gc" $OCITREE gc --layout "$L"
	for t in img changed also; do
		ok "$name: $t still opens after gc" $OCITREE stat --image "$L:$t"
	done
	validated "$name: oci-validate --full after ocitree's changes" "$L"
done
ok "umoci unpacks the image ocitree changed" umoci unpack $rootless --image "$U:changed" "$T/ub"
check "with both layers applied" '[ -f "$T/ub/rootfs/etc/two" ] && [ ! -e "$T/ub/rootfs/etc/one" ]'
is "and the new config" "$(jq -c .process.env "$T/ub/config.json" | grep -o 'X=1')" X=1
ok "umoci unpacks the converted Docker image" umoci unpack $rootless --image "$D:changed" "$T/db"
ok "skopeo copies the zstd image ocitree changed" skopeo copy --quiet "oci:$S:changed" "oci:$T/out-zstd:changed"

# a nested, multi-platform index (as `skopeo copy --all` of a registry image leaves)
N=$T/nested
cp -a "$U" "$N"
mdesc=$(jq -c '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="img") | del(.annotations)' "$N/index.json")
arch=$($OCITREE stat --json --image "$N:img" | jq -r .config.blob.architecture)
jq -nc --argjson d "$mdesc" --arg a "$arch" '{schemaVersion:2, mediaType:"application/vnd.oci.image.index.v1+json",
	manifests:[($d + {platform:{architecture:"riscv-none",os:"linux"}}), ($d + {platform:{architecture:$a,os:"linux"}})]}' >"$T/idx.json"
h=$(sha256sum "$T/idx.json" | cut -d' ' -f1)
cp "$T/idx.json" "$N/blobs/sha256/$h"
jq -c --arg h "sha256:$h" --argjson s "$(stat -c %s "$T/idx.json")" '.manifests += [{mediaType:"application/vnd.oci.image.index.v1+json",
	digest:$h, size:$s, annotations:{"org.opencontainers.image.ref.name":"multi"}}]' "$N/index.json" >"$T/i" && mv "$T/i" "$N/index.json"
ok "nested: stat resolves the host platform" $OCITREE stat --json --image "$N:multi"
is "nested: the host's manifest" "$(jq -c .manifest.descriptor.digest "$T/out")" "$(jq -c .digest <<<"$mdesc")"
ok "nested: tag copies the index entry" $OCITREE tag --image "$N:multi" multi2
is "nested: the new tag names the index" "$(jq -r '.manifests[-1].mediaType' "$N/index.json")" application/vnd.oci.image.index.v1+json
ok "nested: config of a nested image" $OCITREE config --image "$N:multi" --tag flat --author me
$OCITREE rm --image "$N:img" && $OCITREE rm --image "$N:changed" 2>/dev/null
$OCITREE rm --image "$N:also" 2>/dev/null
ok "nested: gc" $OCITREE gc --layout "$N"
ok "nested: the index and its manifests survive gc" $OCITREE stat --image "$N:multi"
check "nested: the index blob is kept" '[ -f "$N/blobs/sha256/$h" ]'

# gc keeps exactly what refs reach: compare with an independent walk in jq
reachable() {
	local L=$1 d
	local -a todo
	mapfile -t todo < <(jq -r '.manifests[] | "\(.mediaType) \(.digest)"' "$L/index.json")
	declare -A seen
	while [ ${#todo[@]} -gt 0 ]; do
		local item=${todo[0]}
		todo=("${todo[@]:1}")
		local mt=${item% *}
		d=${item#* }
		[ -n "${seen[$d]:-}" ] && continue
		seen[$d]=1
		echo "${d#sha256:}"
		case $mt in
		*index*|*manifest.list*) mapfile -t -O ${#todo[@]} todo < <(jq -r '.manifests[] | "\(.mediaType) \(.digest)"' "$L/blobs/sha256/${d#sha256:}") ;;
		*manifest*) mapfile -t -O ${#todo[@]} todo < <(jq -r '(.config, .layers[]) | "\(.mediaType) \(.digest)"' "$L/blobs/sha256/${d#sha256:}") ;;
		esac
	done
}
G=$T/gc
cp -a "$U" "$G"
for i in 1 2 3; do $OCITREE config --image "$G:img" --tag "t$i" --config.env "N=$i" >/dev/null; done
$OCITREE config --image "$G:t1" --author orphan >/dev/null # the old t1 becomes garbage
echo junk >"$G/blobs/sha256/$(echo junk | sha256sum | cut -d' ' -f1)"
ok "gc on a layout with shared and orphaned blobs" $OCITREE gc --layout "$G"
is "gc leaves exactly the reachable blobs" "$(ls "$G/blobs/sha256" | sort)" "$(reachable "$G" | sort -u)"
done_testing
