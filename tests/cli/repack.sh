#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# repack writes exactly the edits made to a bundle; bundles move between
# ocitree and umoci in both directions; repack is reproducible.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/tree-lib.sh"
have umoci || skip_all "umoci is not installed"
is_root || skip_all "the test image has devices and owners: run as root"

L=$T/oci
special_layers "$T/src" >/dev/null
$MKIMAGE "$L" special "$T/src/l1.tar" "$T/src/l2.tar" >/dev/null || exit 1

# edits of every kind, the same each time (fixed times where it matters)
edit() {
	local r=$1/rootfs
	printf 'edited\n' >>"$r/etc/hello"
	printf 'more\n' >>"$r/data/hello-hard2"
	rm "$r/data/random.bin"
	rm -rf "$r/deep/d1"
	chmod 700 "$r/etc/layer2"
	chown 2000:2000 "$r/owners/user"
	setfattr -n user.new -v value "$r/etc/empty"
	rm "$r/data/rel-link" && ln -s ../etc/layer2 "$r/data/rel-link"
	mkdir "$r/newdir" && echo new >"$r/newdir/file" && mkfifo "$r/newdir/fifo" && ln "$r/newdir/file" "$r/newdir/link"
	rm -rf "$r/opaque" && mkdir "$r/opaque" && echo brand-new >"$r/opaque/brand-new"
	rm "$r/times/old" && mkdir "$r/times/old" && echo x >"$r/times/old/x"
	rm -rf "$r/names" && echo now-a-file >"$r/names"
	echo future >"$r/future" && touch -d '2099-01-01' "$r/future"
	touch -h -d '2022-02-02 02:02:02' "$r/etc/hello" "$r/data/hello-hard2" "$r/newdir/file" "$r/opaque/brand-new" \
		"$r/times/old/x" "$r/names" "$r/newdir" "$r/opaque" "$r/times/old" "$r/data" "$r/etc" "$r/deep" "$r/times" \
		"$r/data/rel-link" "$r/newdir/fifo" "$r"
}

ok "unpack" $OCITREE unpack --image "$L:special" "$T/b"
edit "$T/b"
tree_dump "$T/b/rootfs" >"$T/edited"
ok "repack after the edits" $OCITREE repack --image "$L:edited" "$T/b"
cat >"$T/want-layer" <<'LIST'
5 .
5 data
0 data/.wh.random.bin
0 data/hello-hard2
2 data/rel-link ../etc/layer2
5 deep
0 deep/.wh.d1
5 etc
0 etc/empty
0 etc/hello
1 etc/hello-hard data/hello-hard2
0 etc/layer2
0 future
0 names
5 newdir
6 newdir/fifo
0 newdir/file
1 newdir/link newdir/file
5 opaque
0 opaque/.wh..wh..opq
0 opaque/brand-new
0 owners/user
5 times
5 times/old
0 times/old/x
LIST
check "the layer holds exactly the edits, in order" 'diff -u "$T/want-layer" <(last_layer_list "$L" edited) >&2'
valid "the image is valid" "$L"
ok "umoci unpacks the repacked image" umoci unpack --image "$L:edited" "$T/u1"
check "umoci sees exactly the edited tree" 'diff -u "$T/edited" <(tree_dump "$T/u1/rootfs") >&2'
ok "and so does ocitree" $OCITREE unpack --image "$L:edited" "$T/o1"
check "ocitree sees exactly the edited tree" 'diff -u "$T/edited" <(tree_dump "$T/o1/rootfs") >&2'
is "history entry" "$(image_json "$L" edited config | jq -c '.history[-1] | [.created_by, .empty_layer]')" '["ocitree repack",null]'
is "diff_ids and layers agree" "$(image_json "$L" edited config | jq '.rootfs.diff_ids | length')" \
	"$(image_json "$L" edited manifest | jq '.layers | length')"

# nothing changed (the bundle still describes "special"): as umoci does
ok "unpack again" $OCITREE unpack --image "$L:special" "$T/same"
ok "repack without changes" $OCITREE repack --image "$L:same" "$T/same"
is "adds no layer" "$(image_json "$L" same manifest | jq '.layers | length')" 2
is "and an empty_layer history entry" "$(image_json "$L" same config | jq -c '.history[-1].empty_layer')" true

# umoci repack on an ocitree bundle
ok "unpack for umoci" $OCITREE unpack --image "$L:special" "$T/b2"
edit "$T/b2"
ok "umoci repack of the ocitree bundle" umoci repack --image "$L:by-umoci" "$T/b2"
ok "ocitree unpacks umoci's image" $OCITREE unpack --image "$L:by-umoci" "$T/o2"
check "with exactly the edits" 'diff -u "$T/edited" <(tree_dump "$T/o2/rootfs") >&2'
check "umoci did not rewrite unchanged files" '! last_layer_list "$L" by-umoci | grep -qE " (bin/tool|data/sparse|deep/d1/d2)$"'

# ocitree repack on a umoci bundle (no ocitree.state: the mtree is the record)
ok "umoci unpack" umoci unpack --image "$L:special" "$T/b3"
edit "$T/b3"
ok "ocitree repack of the umoci bundle" $OCITREE repack --image "$L:from-umoci" "$T/b3"
ok "umoci unpacks it" umoci unpack --image "$L:from-umoci" "$T/u3"
check "with exactly the edits" 'diff -u "$T/edited" <(tree_dump "$T/u3/rootfs") >&2'
check "only the edited entries are in the layer" \
	'diff -u <(grep -v opq "$T/want-layer" | cut -d" " -f2 | sort) <(last_layer_list "$L" from-umoci | cut -d" " -f2 | grep -v opq | grep -v opaque/.wh.fresh | sort) >&2'
check "where an mtree cannot tell a replaced directory, whiteouts stand for the opaque marker" \
	'last_layer_list "$L" from-umoci | grep -q "opaque/.wh.fresh"'

# --refresh-bundle: the next repack starts from the new image
ok "repack --refresh-bundle" $OCITREE repack --refresh-bundle --image "$L:r1" "$T/b"
check "umoci.json names the new manifest" \
	'[ "$(jq -r ".from_descriptor_path.descriptor_walk[-1].digest" "$T/b/umoci.json")" = "$(image_digest "$L" r1)" ]'
check "the mtree was renamed" '[ -f "$T/b/sha256_$(image_digest "$L" r1 | cut -d: -f2).mtree" ] && [ $(ls "$T/b"/*.mtree | wc -l) = 1 ]'
echo second >"$T/b/rootfs/second"
ok "second repack" $OCITREE repack --refresh-bundle --image "$L:r2" "$T/b"
is "holds only the second edit" "$(last_layer_list "$L" r2 | cut -d' ' -f2 | tr '\n' ' ')" ". second "
echo third >"$T/b/rootfs/third"
ok "umoci repack after ocitree's refresh" umoci repack --image "$L:r3" "$T/b"
is "umoci sees only the third edit" "$(last_layer_list "$L" r3 | cut -d' ' -f2 | grep -v '^\.$' | tr '\n' ' ')" "third "

# masks
ok "unpack for masks" $OCITREE unpack --image "$L:special" "$T/m"
echo a >"$T/m/rootfs/tmp/scratch"; echo b >"$T/m/rootfs/etc/kept"; rm "$T/m/rootfs/bin/tool"
ok "repack --mask-path" $OCITREE repack --mask-path /tmp --mask-path bin --image "$L:masked" "$T/m"
fails 2 "invalid mask path '../etc': path climbs out of the root" "a mask above the root is refused" \
	$OCITREE repack --mask-path ../etc --image "$L:masked-bad" "$T/m"
is "masked paths are left out" "$(last_layer_list "$L" masked | cut -d' ' -f2 | tr '\n' ' ')" "etc etc/kept "
$MKIMAGE "$L" vol --base special --config '{"Volumes":{"/data":{}}}' >/dev/null
ok "unpack an image with a volume" $OCITREE unpack --image "$L:vol" "$T/v"
echo x >"$T/v/rootfs/data/in-volume"; echo y >"$T/v/rootfs/outside"
ok "repack it" $OCITREE repack --image "$L:vol2" "$T/v"
is "volumes are masked" "$(last_layer_list "$L" vol2 | cut -d' ' -f2 | tr '\n' ' ')" ". outside "
ok "repack --no-mask-volumes" $OCITREE repack --no-mask-volumes --image "$L:vol3" "$T/v"
check "includes the volume" 'last_layer_list "$L" vol3 | grep -q "data/in-volume"'

# reproducible: the same tree and flags give the same digests
export SOURCE_DATE_EPOCH=1700000000
for i in 1 2; do
	$OCITREE unpack --image "$L:special" "$T/r$i" && edit "$T/r$i" || exit 1
	touch -d '2022-02-02 02:02:02' "$T/r$i/rootfs/owners" "$T/r$i/rootfs/owners/user"
done
ok "repack one" $OCITREE repack --image "$L:rep1" "$T/r1"
ok "repack the other" $OCITREE repack --image "$L:rep2" "$T/r2"
is "same layer digest" "$(image_json "$L" rep1 manifest | jq -r '.layers[-1].digest')" \
	"$(image_json "$L" rep2 manifest | jq -r '.layers[-1].digest')"
is "same image" "$(image_digest "$L" rep1)" "$(image_digest "$L" rep2)"
is "history.created is SOURCE_DATE_EPOCH" "$(image_json "$L" rep1 config | jq -r '.history[-1].created')" "2023-11-14T22:13:20Z"
check "newer mtimes are clamped to it" \
	'$PY -c "import sys,tarfile; t=tarfile.open(sys.argv[1]); sys.exit(t.getmember(\"future\").mtime != 1700000000)" \
	 "$L/blobs/sha256/$(image_json "$L" rep1 manifest | jq -r ".layers[-1].digest" | cut -d: -f2)"'
unset SOURCE_DATE_EPOCH

# compression
for c in zstd none; do
	ok "unpack for --compress $c" $OCITREE unpack --image "$L:special" "$T/c-$c"
	edit "$T/c-$c"
	ok "repack --compress $c" $OCITREE repack --compress $c --image "$L:c-$c" "$T/c-$c"
	is "$c media type" "$(image_json "$L" c-$c manifest | jq -r '.layers[-1].mediaType')" \
		"application/vnd.oci.image.layer.v1.tar$([ $c = none ] || echo +$c)"
	ok "unpack the $c image" $OCITREE unpack --image "$L:c-$c" "$T/cu-$c"
	check "$c round trip" 'diff -u "$T/edited" <(tree_dump "$T/cu-$c/rootfs") >&2'
done
valid "every image written is valid" "$L"

# failures leave the layout as it was
snapshot "$L" >"$T/before"
ok "unpack with a mapping" $OCITREE unpack --uid-map 0:100000:65536 --gid-map 0:100000:65536 --image "$L:special" "$T/mapped"
touch "$T/mapped/rootfs/unmapped" && chown 7:7 "$T/mapped/rootfs/unmapped"
fails 1 "unmapped': owner 7:7 has no mapping" "an owner outside the mapping fails" \
	$OCITREE repack --image "$L:bad" "$T/mapped"
fails 1 "open bundle" "a missing bundle fails" $OCITREE repack --image "$L:bad" "$T/nope"
rm "$T/o1/umoci.json"
fails 1 "umoci.json" "a bundle without metadata fails" $OCITREE repack --image "$L:bad" "$T/o1"
check "the layout is unchanged" 'diff -u "$T/before" <(snapshot "$L") >&2'
check "and has no temporary files" '[ -z "$(find "$L" -name ".ocitree-tmp.*")" ]'
done_testing
