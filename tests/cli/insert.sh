#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# insert (files, trees, whiteouts, opaque directories, id mappings) and raw
# add-layer, checked against umoci and Python's tarfile.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/tree-lib.sh"
have umoci || skip_all "umoci is not installed"
is_root || skip_all "the comparisons with umoci unpack need root (see rootless.sh)"

L=$T/oci
mkdir -p "$T/base/etc" "$T/base/opt/app/old"
echo hello >"$T/base/etc/hello"; echo old >"$T/base/opt/app/old/file"; echo keep >"$T/base/opt/app/keep"
tar_dir "$T/base" "$T/base.tar"
$MKIMAGE "$L" base "$T/base.tar" >/dev/null || exit 1

mkdir -p "$T/src/tree/sub"
printf 'inserted\n' >"$T/src/file" && chmod 640 "$T/src/file"
echo a >"$T/src/tree/a"; echo b >"$T/src/tree/sub/b"; ln -s a "$T/src/tree/link"; ln "$T/src/tree/a" "$T/src/tree/hard"
setfattr -n user.x -v y "$T/src/tree/a"
find "$T/src" -exec touch -h -d '2022-03-03 03:03:03' {} +

ok "insert a file" $OCITREE insert --image "$L:base" --tag f1 "$T/src/file" /etc/inserted
is "the layer holds the file alone" "$(last_layer_list "$L" f1)" "0 etc/inserted"
is "history" "$(image_json "$L" f1 config | jq -c '.history[-1] | [.created_by, .empty_layer]')" '["ocitree insert",null]'
ok "insert a tree" $OCITREE insert --image "$L:base" --tag t1 "$T/src/tree" /opt/new
is "the layer holds the tree, sorted, with a hardlink" "$(last_layer_list "$L" t1 | tr '\n' ' ')" \
	"5 opt/new 0 opt/new/a 1 opt/new/hard opt/new/a 2 opt/new/link a 5 opt/new/sub 0 opt/new/sub/b "
ok "umoci inserts the same tree" umoci insert --image "$L:base" --tag ut1 "$T/src/tree" /opt/new
ok "ocitree unpack of ocitree's" $OCITREE unpack --image "$L:t1" "$T/o1"
ok "umoci unpack of umoci's" umoci unpack --image "$L:ut1" "$T/u1"
check "give the same tree" 'diff -u <(tree_dump "$T/u1/rootfs") <(tree_dump "$T/o1/rootfs") >&2'

ok "insert --opaque" $OCITREE insert --opaque --image "$L:base" --tag op "$T/src/tree" /opt/app
check "the layer has the opaque marker after the directory" \
	'[ "$(last_layer_list "$L" op | head -2 | tr "\n" " ")" = "5 opt/app 0 opt/app/.wh..wh..opq " ]'
ok "unpack it" $OCITREE unpack --image "$L:op" "$T/o2"
check "the old contents are hidden" '[ ! -e "$T/o2/rootfs/opt/app/keep" ] && [ -f "$T/o2/rootfs/opt/app/sub/b" ]'

ok "insert --whiteout" $OCITREE insert --whiteout --image "$L:base" --tag wh /etc/hello
is "the layer is one whiteout" "$(last_layer_list "$L" wh)" "0 etc/.wh.hello"
ok "umoci unpacks it" umoci unpack --image "$L:wh" "$T/u3"
check "the file is gone" '[ ! -e "$T/u3/rootfs/etc/hello" ] && [ -d "$T/u3/rootfs/etc" ]'

if is_root; then
	chown 1000:1000 "$T/src/file"
	ok "insert with --uid-map/--gid-map" $OCITREE insert --uid-map 0:1000:1 --gid-map 0:1000:1 --image "$L:base" \
		--tag mapped "$T/src/file" /etc/mapped
	is "the host owner is mapped into the image" \
		"$($PY -c 'import sys,tarfile; m=tarfile.open(sys.argv[1]).getmembers()[0]; print(m.uid, m.gid)' \
		"$L/blobs/sha256/$(image_json "$L" mapped manifest | jq -r '.layers[-1].digest' | cut -d: -f2)")" "0 0"
	snapshot "$L" >"$T/before"
	fails 1 "has no mapping in the image" "an owner outside the mapping fails" \
		$OCITREE insert --uid-map 0:5000:1 --gid-map 0:5000:1 --image "$L:base" --tag bad "$T/src/file" /x
	check "and leaves the layout as it was" 'diff "$T/before" <(snapshot "$L") >&2'
else
	skip "insert with --uid-map/--gid-map" "not root"
fi
# --rootless: owners come from user.rootlesscontainers, which stays out
printf 'r\n' >"$T/src/rl" && setfattr -n user.rootlesscontainers -v 0x08e80710e807 "$T/src/rl"
ok "insert --rootless" $OCITREE insert --rootless --image "$L:base" --tag rl "$T/src/rl" /etc/rl
is "the owner comes from the rootless xattr, which is not stored" \
	"$($PY -c 'import sys,tarfile; m=tarfile.open(sys.argv[1]).getmembers()[0]; print(m.uid, m.gid, [k for k in m.pax_headers if "xattr" in k])' \
	"$L/blobs/sha256/$(image_json "$L" rl manifest | jq -r '.layers[-1].digest' | cut -d: -f2)")" "1000 1000 []"

ok "insert --compress zstd" $OCITREE insert --compress zstd --image "$L:base" --tag z "$T/src/tree" /z
ok "unpack the zstd layer" $OCITREE unpack --image "$L:z" "$T/o4"
check "round trip" 'diff -u <(tree_dump "$T/src/tree") <(tree_dump "$T/o4/rootfs/z") >&2'
fails 2 "needs a value|missing argument" "insert without a target" $OCITREE insert --image "$L:base" "$T/src/file"
fails 1 "source '$T/nope'" "insert of a missing source" $OCITREE insert --image "$L:base" "$T/nope" /x
fails 2 "invalid target '../x': path climbs out of the root" "a target above the root" $OCITREE insert --image "$L:base" "$T/src/file" ../x

# raw add-layer: an existing tar archive, as it is
tar_dir "$T/src/tree" "$T/tree.tar"
for c in gzip zstd none; do
	ok "raw add-layer --compress $c" $OCITREE raw add-layer --compress $c --image "$L:base" --tag raw-$c \
		--history.comment "added as $c" "$T/tree.tar"
	is "$c: the diff_id is the archive's digest" "$(image_json "$L" raw-$c config | jq -r '.rootfs.diff_ids[-1]')" \
		"sha256:$(sha256sum <"$T/tree.tar" | cut -d' ' -f1)"
	is "$c: the history comment" "$(image_json "$L" raw-$c config | jq -r '.history[-1].comment')" "added as $c"
done
ok "umoci unpacks the gzip one" umoci unpack --image "$L:raw-gzip" "$T/u5"
check "with the archive's tree on top of the base" \
	'diff -u <(tree_dump "$T/src/tree") <(tree_dump "$T/u5/rootfs" | grep -vE "(^| |\./)(etc|opt)(/| |$)") >&2'
is "the same archive gives the same layer" \
	"$($OCITREE raw add-layer --image "$L:base" --tag again "$T/tree.tar" >/dev/null && image_json "$L" again manifest | jq -r '.layers[-1].digest')" \
	"$(image_json "$L" raw-gzip manifest | jq -r '.layers[-1].digest')"
echo "not a tar" >"$T/junk"
snapshot "$L" >"$T/before"
fails 1 "add layer '$T/junk': not an uncompressed tar archive" "raw add-layer of something else" \
	$OCITREE raw add-layer --image "$L:base" "$T/junk"
gzip -c "$T/tree.tar" >"$T/tree.tar.gz"
fails 1 "not an uncompressed tar archive" "raw add-layer of a compressed archive" \
	$OCITREE raw add-layer --image "$L:base" "$T/tree.tar.gz"
check "failures leave the layout as it was" 'diff "$T/before" <(snapshot "$L") >&2'
fails 2 "unknown raw subcommand 'frobnicate'" "an unknown raw subcommand" $OCITREE raw frobnicate
valid "every image is valid" "$L"
done_testing
