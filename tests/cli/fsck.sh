#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# fsck finds every kind of damage, names it, and changes nothing.
. "$top_srcdir/tests/lib.sh"
have umoci || skip_all "umoci is not installed"
rootless=
[ "$(id -u)" -eq 0 ] || rootless=--rootless

L=$T/l
umoci init --layout "$L" && umoci new --image "$L:img" && umoci unpack $rootless --image "$L:img" "$T/b" >/dev/null &&
	echo data >"$T/b/rootfs/file" && umoci repack --image "$L:img" "$T/b" && rm -rf "$T/b" || exit 1
$OCITREE tag --image "$L:img" other || exit 1

ok "a clean layout" $OCITREE fsck --layout "$L"
cp -a "$L" "$T/clean"
check "says clean" 'grep -q "clean$" "$T/out"'
ok "--json" $OCITREE fsck --layout "$L" --json
is "--json says clean" "$(jq -c '[.clean, .refs, (.problems|length)]' "$T/out")" '[true,2,0]'

layer=$($OCITREE stat --json --image "$L:img" | jq -r '.manifest.blob.layers[0].digest')
lfile=$L/blobs/sha256/${layer#sha256:}
cp "$lfile" "$T/layer.saved"

printf 'X' | dd of="$lfile" bs=1 seek=20 conv=notrunc status=none
before=$(snapshot "$L")
fails 1 "has 1 problem" "a corrupt layer is found" $OCITREE fsck --layout "$L"
check "and named with its digest" 'grep -q "^problem: $layer: blob $layer does not match its digest" "$T/out"'
is "fsck changed nothing" "$(snapshot "$L")" "$before"
cp "$T/layer.saved" "$lfile"

rm "$lfile"
fails 1 "problem" "a missing layer is found" $OCITREE fsck --layout "$L" --json
is "named for both tags that need it" "$(jq -r '.problems[].message' "$T/out" | sort | tr '\n' '|')" "layer 0 of tag 'img' is missing|"
cp "$T/layer.saved" "$lfile"

unref=$($OCITREE fsck --layout "$L" --json | jq '.unreferenced|length')
echo junk >"$L/blobs/sha256/$(echo junk | sha256sum | cut -d' ' -f1)"
touch "$L/blobs/sha256/.ocitree-tmp.blob.x"
ok "unreferenced blobs and temporary files are not problems" $OCITREE fsck --layout "$L" --json
is "but they are reported" "$(jq -c '[(.unreferenced|length), .temporary]' "$T/out")" "[$((unref + 1)),[\"blobs/sha256/.ocitree-tmp.blob.x\"]]"
touch "$L/blobs/sha256/not-a-digest"
fails 1 "problem" "a stray file among the blobs is a problem" $OCITREE fsck --layout "$L"
check "named" 'grep -q "blobs/sha256/not-a-digest: not a blob" "$T/out"'
rm "$L/blobs/sha256/not-a-digest"

# a manifest whose layer has the wrong size and a config's media type
m=$($OCITREE stat --json --image "$L:img" | jq -c '.manifest.blob | .layers[0].size += 1')
printf '%s' "$m" >"$T/m.json"
h=$(sha256sum "$T/m.json" | cut -d' ' -f1)
cp "$T/m.json" "$L/blobs/sha256/$h"
jq -c --arg d "sha256:$h" --argjson s "$(stat -c %s "$T/m.json")" \
	'.manifests += [{mediaType:"application/vnd.oci.image.manifest.v1+json", digest:$d, size:$s, annotations:{"org.opencontainers.image.ref.name":"liar"}}]' \
	"$L/index.json" >"$T/i" && cp "$T/i" "$L/index.json"
fails 1 "problem" "a descriptor with the wrong size is found" $OCITREE fsck --layout "$L"
check "named" "grep -q \"layer 0 of tag 'liar' is [0-9]* bytes but its descriptor says\" \"\$T/out\""
fails 1 "layout '$L' has" "the summary line names the layout" $OCITREE fsck --layout "$L"

# a config whose diff_id does not match its layer: only --full decompresses
F=$T/full
cp -a "$T/clean" "$F"
ok "--full on a clean layout" $OCITREE fsck --full --layout "$F" --json
is "--full decompressed the layer" "$(jq -c '[.clean, .layers > 0, .uncompressed > 0]' "$T/out")" '[true,true,true]'
cfg=$($OCITREE stat --json --image "$F:img" | jq -c '.config.blob | .rootfs.diff_ids[0] = "sha256:'$(printf '%064d' 7)'"')
printf '%s' "$cfg" >"$T/c.json"
ch=$(sha256sum "$T/c.json" | cut -d' ' -f1)
cp "$T/c.json" "$F/blobs/sha256/$ch"
man=$($OCITREE stat --json --image "$F:img" | jq -c --arg d "sha256:$ch" --argjson s "$(stat -c %s "$T/c.json")" '.manifest.blob | .config.digest = $d | .config.size = $s')
printf '%s' "$man" >"$T/m2.json"
mh=$(sha256sum "$T/m2.json" | cut -d' ' -f1)
cp "$T/m2.json" "$F/blobs/sha256/$mh"
jq -c --arg d "sha256:$mh" --argjson s "$(stat -c %s "$T/m2.json")" \
	'.manifests += [{mediaType:"application/vnd.oci.image.manifest.v1+json", digest:$d, size:$s, annotations:{"org.opencontainers.image.ref.name":"wrongdiff"}}]' \
	"$F/index.json" >"$T/i" && cp "$T/i" "$F/index.json"
ok "without --full the wrong diff_id is not seen" $OCITREE fsck --layout "$F"
fails 1 "problem" "--full finds it" $OCITREE fsck --full --layout "$F"
check "naming the layer and the tag" "grep -q \"problem: $layer: layer 0 of tag 'wrongdiff': .*diff_id\" \"\$T/out\""
fails 1 "open layout" "a missing layout" $OCITREE fsck --layout "$T/nope"
done_testing
