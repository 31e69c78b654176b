#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Multi-platform tags: a layout as `skopeo copy --all` writes it (a tag
# naming an image index over an amd64 and an arm64 image), built at run
# time; --platform on the commands that read an image, stat's platforms,
# and the commands that write an image replacing only their platform's
# entry of the index, which skopeo and oci-validate then accept.
. "$top_srcdir/tests/fs/lib-fs.sh"
have jq || skip_all "jq is needed to build the image index"

L=$T/oci
ref() { jq -c --arg t "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$t)' "$L/index.json"; }
blob() { cat "$L/blobs/sha256/${1#sha256:}"; }
# root_digest TAG: what index.json's entry names; entry TAG ARCH: the
# manifest digest of ARCH's entry in the index TAG names
root_digest() { ref "$1" | jq -r .digest; }
entry() { blob "$(root_digest "$1")" | jq -r --arg a "$2" '.manifests[] | select(.platform.architecture==$a) | .digest'; }

ok "init" $OCITREE init --layout "$L"
for a in amd64 arm64; do
	echo "$a" >"$T/f-$a"
	echo "common $a" >"$T/common"
	$OCITREE new --image "$L:$a" && $OCITREE insert --image "$L:$a" "$T/f-$a" "/etc/arch-$a" &&
		$OCITREE insert --image "$L:$a" "$T/common" /etc/common || { echo "Bail out! cannot build $a"; exit 1; }
done
$OCITREE config --image "$L:amd64" --platform.arch amd64 &&
	$OCITREE config --image "$L:arm64" --platform.arch arm64 --platform.variant v8 || { echo "Bail out! config"; exit 1; }

# the index as skopeo copy --all writes it: each entry with its platform,
# the index's own annotations, the tag naming the index (and no other)
INDEX_ANNOTATIONS='{"org.example.kept": "yes"}' index_tag "$L" multi amd64=linux/amd64 arm64=linux/arm64/v8 &&
	$OCITREE rm --image "$L:amd64" && $OCITREE rm --image "$L:arm64" || { echo "Bail out! index"; exit 1; }
IDX=$(root_digest multi)
blob "$IDX" >"$T/index"
AMD=$(entry multi amd64) ARM=$(entry multi arm64)
validated "the hand-made layout is valid to begin with" "$L"

# ---- reading ----
ok "stat of the index tag" $OCITREE stat --image "$L:multi" --platform linux/arm64
check "shows both platforms, the one shown marked" \
	'grep -q "^== PLATFORMS ==" "$T/out" && grep -q "^  linux/amd64: $AMD$" "$T/out" &&
	 grep -q "^  linux/arm64/v8: $ARM (shown)$" "$T/out"'
check "umoci's sections come first, unchanged" '[ "$(grep "^== " "$T/out" | tr "\n" " ")" = "== MANIFEST == == CONFIG == == HISTORY == == PLATFORMS == " ]'
ok "stat --json" $OCITREE stat --image "$L:multi" --json --platform linux/amd64
is "a platforms array" "$(jq -c '[.platforms[] | [.platform, .descriptor.digest == "'"$AMD"'", .selected]]' "$T/out")" \
	'[["linux/amd64",true,true],["linux/arm64/v8",false,false]]'
ok "a manifest tag" $OCITREE tag --image "$L:multi" --platform linux/arm64 armonly
ok "stat --json of it" $OCITREE stat --image "$L:armonly" --json
is "has no platforms key" "$(jq -c 'has("platforms")' "$T/out")" false
is "tag --platform names that platform's manifest" "$(root_digest armonly)" "$ARM"

fails 1 "no manifest for linux/s390x in tag 'multi'; it has linux/amd64, linux/arm64/v8" \
	"an unknown platform names those the index has" $OCITREE stat --image "$L:multi" --platform linux/s390x
fails 1 "no manifest for linux/arm64/v7 in tag 'multi'" "a variant must match" \
	$OCITREE unpack --image "$L:multi" --platform linux/arm64/v7 "$T/nope"
for bad in linux linux/ /amd64 linux/amd64/ Linux/amd64 linux/amd64/v8/x "linux/a md64"; do
	fails 2 "invalid platform '$bad'" "--platform '$bad' is a usage error" \
		$OCITREE stat --image "$L:multi" --platform "$bad"
done

for a in amd64 arm64; do
	other=arm64; [ $a = arm64 ] && other=amd64
	if [ "$(id -u)" = 0 ]; then u=; else u=--rootless; fi
	ok "unpack --platform linux/$a" $OCITREE unpack $u --image "$L:multi" --platform "linux/$a" "$T/b-$a"
	check "gives $a's files" '[ "$(cat "$T/b-$a/rootfs/etc/arch-$a")" = $a ] && [ ! -e "$T/b-$a/rootfs/etc/arch-$other" ] &&
		[ "$(cat "$T/b-$a/rootfs/etc/common")" = "common $a" ]'
	is "config.json of $a" "$(jq -r '.annotations["org.opencontainers.image.architecture"]' "$T/b-$a/config.json")" $a
	ok "raw unpack --platform linux/$a" $OCITREE raw unpack $u --image "$L:multi" --platform "linux/$a" "$T/r-$a"
	check "gives $a's files" '[ -f "$T/r-$a/etc/arch-$a" ] && [ ! -e "$T/r-$a/etc/arch-$other" ]'
	ok "raw runtime-config --platform linux/$a" $OCITREE raw runtime-config --image "$L:multi" --platform "linux/$a" "$T/rc-$a.json"
	is "for $a" "$(jq -r '.annotations["org.opencontainers.image.architecture"]' "$T/rc-$a.json")" $a
done

# ---- writing: only the platform written changes ----
ok "config --platform linux/arm64" $OCITREE config --image "$L:multi" --platform linux/arm64 --config.env A=arm
I1=$(root_digest multi)
check "the tag names a new index" '[ "$I1" != "$IDX" ] && [ "$(ref multi | jq -r .mediaType)" = application/vnd.oci.image.index.v1+json ]'
is "amd64's entry is untouched" "$(blob "$I1" | jq -c '.manifests[0]')" "$(jq -c '.manifests[0]' "$T/index")"
check "arm64's entry is a new manifest, its platform kept" \
	'[ "$(entry multi arm64)" != "$ARM" ] && [ "$(blob "$I1" | jq -c ".manifests[1].platform")" = "{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}" ]'
is "the index's annotations are kept" "$(blob "$I1" | jq -c .annotations)" '{"org.example.kept":"yes"}'
is "the new arm64 config has the change" "$($OCITREE stat --image "$L:multi" --platform linux/arm64 --json | jq -r '.config.blob.config.Env[0]')" A=arm
is "amd64's has not" "$($OCITREE stat --image "$L:multi" --platform linux/amd64 --json | jq -r '.config.blob.config.Env // [] | length')" 0

echo inserted >"$T/ins"
ok "insert --platform linux/amd64" $OCITREE insert --image "$L:multi" --platform linux/amd64 "$T/ins" /etc/ins
I2=$(root_digest multi)
is "arm64's entry stays as config left it" "$(blob "$I2" | jq -c '.manifests[1]')" "$(blob "$I1" | jq -c '.manifests[1]')"
check "amd64's is new" '[ "$(entry multi amd64)" != "$AMD" ]'

ok "raw add-layer --platform linux/arm64 --tag copy" sh -c 'tar -C "$1" -cf "$1/../l.tar" etc && $2 raw add-layer --image "$3:multi" --platform linux/arm64 --tag copy "$1/../l.tar"' \
	_ "$T/b-arm64/rootfs" "$OCITREE" "$L"
is "--tag: the new tag names an index too, with amd64's entry of multi" \
	"$(blob "$(root_digest copy)" | jq -c '.manifests[0]')" "$(blob "$I2" | jq -c '.manifests[0]')"
is "multi did not move" "$(root_digest multi)" "$I2"
ok "config --platform.variant on one platform" $OCITREE config --image "$L:copy" --platform linux/arm64 --platform.variant v9
is "its entry follows the config's platform" "$(blob "$(root_digest copy)" | jq -c '[.manifests[].platform]')" \
	'[{"architecture":"amd64","os":"linux"},{"architecture":"arm64","os":"linux","variant":"v9"}]'

echo repacked >"$T/b-arm64/rootfs/etc/repacked"
ok "repack of the arm64 bundle" $OCITREE repack --image "$L:multi" "$T/b-arm64"
I3=$(root_digest multi)
is "amd64's entry (as insert left it) is untouched" "$(blob "$I3" | jq -c '.manifests[0]')" "$(blob "$I2" | jq -c '.manifests[0]')"
ok "unpack arm64 again" $OCITREE unpack $u --image "$L:multi" --platform linux/arm64 "$T/b2-arm64"
# as umoci: the bundle's image (unpacked before the config change) plus
# the layer; the index entry it replaces is the platform's current one
check "has the repacked file" '[ -f "$T/b2-arm64/rootfs/etc/repacked" ] && [ -f "$T/b2-arm64/rootfs/etc/arch-arm64" ]'

# ---- mount and commit per platform ----
if [ -c /dev/fuse ] && [ "$(id -u)" = 0 ]; then
	for a in amd64 arm64; do
		other=arm64; [ $a = arm64 ] && other=amd64
		ok "mount --platform linux/$a" do_mount "$T/m-$a" --image "$L:multi" --platform "linux/$a"
		check "shows $a's files" '[ "$(cat "$T/m-$a/etc/arch-$a")" = $a ] && [ ! -e "$T/m-$a/etc/arch-$other" ]'
		ok "unmount" do_umount "$T/m-$a"
	done
	# the mount(8) helper's form, as mount.fuse3 calls it
	mkdir -p "$T/mh"
	_mounts+=("$T/mh")
	ok "mount helper: -o platform=linux/arm64" "$OCITREE" "$L:multi" "$T/mh" -o ro,platform=linux/arm64
	check "shows arm64's files" '[ -f "$T/mh/etc/arch-arm64" ] && [ ! -e "$T/mh/etc/arch-amd64" ]'
	ok "unmount" do_umount "$T/mh"
	I4=$(root_digest multi)
	mkdir -p "$T/up"
	ok "writable mount of amd64" do_mount "$T/mw" --image "$L:multi" --platform linux/amd64 --upper "$T/up"
	echo committed >"$T/mw/etc/committed"
	ok "commit" $OCITREE commit --image "$L:multi" "$T/mw"
	ok "unmount" do_umount "$T/mw"
	I5=$(root_digest multi)
	check "the tag names a new index" '[ "$I5" != "$I4" ] && [ "$(ref multi | jq -r .mediaType)" = application/vnd.oci.image.index.v1+json ]'
	is "arm64's entry is untouched" "$(blob "$I5" | jq -c '.manifests[1]')" "$(blob "$I4" | jq -c '.manifests[1]')"
	ok "unpack amd64" $OCITREE unpack --image "$L:multi" --platform linux/amd64 "$T/b3"
	check "has the committed file and insert's" '[ -f "$T/b3/rootfs/etc/committed" ] && [ -f "$T/b3/rootfs/etc/ins" ]'
else
	skip "mount and commit per platform" "needs root and /dev/fuse"
fi

# ---- what others make of it ----
if have skopeo; then
	ok "skopeo inspect --raw" skopeo inspect --raw "oci:$L:multi"
	is "shows the index ocitree wrote" "$(jq -c '[.mediaType, (.manifests | length), .annotations]' "$T/out")" \
		'["application/vnd.oci.image.index.v1+json",2,{"org.example.kept":"yes"}]'
	for a in amd64 arm64; do
		ok "skopeo copy of $a" skopeo --override-os linux --override-arch $a copy "oci:$L:multi" "dir:$T/d-$a"
		is "copies $a's manifest" "sha256:$(sha256sum <"$T/d-$a/manifest.json" | cut -d' ' -f1)" "$(entry multi $a)"
	done
else
	skip "skopeo reads what ocitree wrote" "skopeo is not installed"
fi
validated "oci-validate --full accepts the layout" "$L"
ok "fsck" $OCITREE fsck --layout "$L"
done_testing
