#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The hostile layers of tests/cli/hostile.sh (tests/tools/hostile-tars.py)
# under ocitree mount.  A mount has no file system to escape from: the
# question is what the view shows.  Names with '..' are dropped, absolute
# names are shown under the root, hardlinks to what the image does not have
# are dropped, each with a warning naming the entry; broken or lying
# streams, wrong digests and bombs refuse the mount with one clear line, and
# leave nothing mounted and no daemon behind.
. "$top_srcdir/tests/fs/lib-fs.sh"
. "$top_srcdir/tests/tree-lib.sh"
need_fuse
TARIMAGE="$PY $top_srcdir/tests/tools/mkimage.py"
L=$T/oci
OUT=$T/outside
M=$T/mnt
mkdir -p "$OUT" "$M"
$PY "$top_srcdir/tests/tools/hostile-tars.py" "$T/tars" "$OUT" || { echo "Bail out! hostile-tars.py failed"; exit 1; }
cases=0
daemons() { pgrep -f "ocitree mount .*$L:" | wc -l; }

# mount_case NAME WARNING DESC: the layer mounts; stderr names the entry
mount_case() {
	local warning=$2
	cases=$((cases + 1))
	$TARIMAGE "$L" "$1" "$T/tars/$1.tar" >/dev/null || return 1
	ok "$3: mounts" do_mount "$M" --image "$L:$1"
	if [ -n "$2" ]; then
		check "$1: a warning names the entry" 'grep -Eq -- "$warning" "$T/err" || { cat "$T/err" >&2; false; }'
	else
		check "$1: no warning" '[ ! -s "$T/err" ] || { cat "$T/err" >&2; false; }'
	fi
}
# listing: every path in the view, sorted
listing() { (cd "$M" && find . -mindepth 1 -printf '%y %P\n' | LC_ALL=C sort | tr '\n' ' '); }
unmount_case() {
	check "$1: nothing outside the view" '[ -z "$(ls -A "$OUT")" ] && [ ! -e "$T/escape-traversal" ]'
	ok "$1: unmounts" do_umount "$M"
}

mount_case traversal "tar entry '../../escape-traversal' has a '..' component: ignored" "'..' above the root"
is "traversal: only the harmless entry is shown" "$(listing)" "f ok "
unmount_case traversal

mount_case absolute "tar entry '/.*/escape-absolute' has an absolute name: shown as '.*/escape-absolute'" \
	"an absolute name"
is "absolute: shown under the root of the view" "$(cd "$M" && find . -name escape-absolute)" "./${OUT#/}/escape-absolute"
unmount_case absolute

mount_case symlink-escape "entry 'link/pwned': 'link' is a symlink: a directory takes its place" \
	"a symlink out of the root, then a file through it"
check "symlink-escape: the file is in a directory of the view" '[ -d "$M/link" ] && [ ! -L "$M/link" ] && [ -f "$M/link/pwned" ]'
unmount_case symlink-escape

mount_case symlink-escape-deep "entry 'a/link/pwned': 'a/link' is a symlink: a directory takes its place" \
	"a relative symlink above the root"
check "symlink-escape-deep: the file is in a directory of the view" '[ -d "$M/a/link" ] && [ -f "$M/a/link/pwned" ]'
unmount_case symlink-escape-deep

mount_case hardlink-escape "hardlink 'hl' has an invalid target '../../../../../../etc/passwd': ignored" \
	"a hardlink out of the root"
is "hardlink-escape: the view is empty" "$(listing)" ""
unmount_case hardlink-escape

mount_case hardlink-via-symlink "hardlink 'hl' to 'etclink/passwd': no such file in the image: ignored" \
	"a hardlink through a symlink to /etc"
is "hardlink-via-symlink: only the symlink" "$(listing)" "l etclink "
unmount_case hardlink-via-symlink

mount_case hardlink-absolute "hardlink 'hl' to 'etc/passwd': no such file in the image: ignored" \
	"a hardlink to an absolute path"
is "hardlink-absolute: the view is empty" "$(listing)" ""
unmount_case hardlink-absolute

mount_case hardlink-missing "hardlink 'hl' to 'no/such/file': no such file in the image: ignored" \
	"a hardlink to a missing file"
is "hardlink-missing: the view is empty" "$(listing)" ""
unmount_case hardlink-missing

mount_case hardlink-to-dir "hardlink 'hl' to 'dir': a directory: ignored" "a hardlink to a directory"
is "hardlink-to-dir: only the directory" "$(listing)" "d dir "
unmount_case hardlink-to-dir

mount_case symlink-loop "entry 'l1/x': 'l1' is a symlink: a directory takes its place" "a symlink loop"
is "symlink-loop: l1 is a directory" "$(listing)" "d l1 f l1/x l l2 "
unmount_case symlink-loop

mount_case root-symlink "entry '.': the root can only be a directory: ignored" "the root replaced by a symlink"
check "root-symlink: the root is a directory" '[ -d "$M" ] && [ ! -L "$M" ] && [ -z "$(listing)" ]'
unmount_case root-symlink

mount_case whiteout-dotdot "" "a whiteout of '..'"
is "whiteout-dotdot: it removes nothing" "$(listing)" "d dir "
unmount_case whiteout-dotdot
ok "whiteout-dotdot: the layer as stored" do_mount "$M" --layer 1 --image "$L:whiteout-dotdot"
is "whiteout-dotdot: shows the entry as a file in its directory" "$(listing)" "d dir f dir/.wh... "
unmount_case whiteout-dotdot-raw

mount_case whiteout-escape "tar entry '../.wh.outside' has a '..' component: ignored" "a whiteout above the root"
is "whiteout-escape: the view is empty" "$(listing)" ""
unmount_case whiteout-escape

mount_case name-too-long "entry 'n{300}': a name longer than 255 bytes: ignored" "a name longer than NAME_MAX"
is "name-too-long: the view is empty" "$(listing)" ""
unmount_case name-too-long

mount_case link-too-long "entry 'longlink': a symlink target of 5000 bytes \\(PATH_MAX is 4096\\): ignored" \
	"a symlink target past PATH_MAX"
is "link-too-long: the view is empty" "$(listing)" ""
unmount_case link-too-long

mount_case path-too-long "" "a path longer than PATH_MAX"
check "path-too-long: the file is there, 20 levels down" \
	'[ "$(cd "$M" && find . -name deep -type f | tr -cd / | wc -c)" = 21 ] &&
	 [ "$(cd "$M" && find . -name deep -type f -execdir cat {} +)" = x ]'
unmount_case path-too-long

if is_root; then
	mount_case dev "" "a device node"
	check "dev: shown as the image has it" '[ -c "$M/dev" ] && [ "$(stat -c %t:%T "$M/dev")" = 1:3 ]'
	unmount_case dev
fi

# refused: broken or lying archives and streams, wrong digests, bombs
refuse_case() { # LAYOUT TAG PATTERN DESC
	cases=$((cases + 1))
	fails 1 "$3" "$4: refused" "$OCITREE" mount --image "$1:$2" "$M"
	check "$2: one line of error" '[ "$(grep -c . "$T/err")" = 1 ]'
	check "$2: nothing mounted, no daemon left" '! is_mounted "$M" && [ "$(daemons)" = 0 ]'
	check "$2: no temporary file left in the cache" \
		'[ -z "$(find "$OCITREE_CACHE_DIR" -name ".ocitree-tmp*" 2>/dev/null)" ]'
}
for c in absurd-size pax-size truncated; do
	$TARIMAGE "$L" $c "$T/tars/$c.tar" >/dev/null
done
refuse_case "$L" absurd-size "layer 1: sha256:[0-9a-f]+: tar stream truncated at offset 1024" "a size far beyond the archive"
refuse_case "$L" pax-size "layer 1: sha256:[0-9a-f]+: tar stream truncated at offset" "a pax size far beyond the archive"
refuse_case "$L" truncated "layer 1: sha256:[0-9a-f]+: tar stream truncated at offset 50000" "a truncated archive"
$TARIMAGE "$L" absurd-pax "$T/tars/absurd-pax.tar" >/dev/null
refuse_case "$L" absurd-pax "extended tar header of 8589934591 bytes at offset 0 is too large" "an absurd pax header length"

good="0=sha256:$(sha256sum <"$T/tars/complete.tar" | cut -d' ' -f1)"
gzip -n -c "$T/tars/complete.tar" >"$T/complete.tar.gz"
head -c $(($(stat -c %s "$T/complete.tar.gz") - 20)) "$T/complete.tar.gz" >"$T/cut.tar.gz"
$TARIMAGE "$L" cut-gzip --raw application/vnd.oci.image.layer.v1.tar+gzip --diff-id "$good" "$T/cut.tar.gz" >/dev/null
refuse_case "$L" cut-gzip "gzip stream is truncated" "a truncated gzip stream"
$TARIMAGE "$L" padded --raw application/vnd.oci.image.layer.v1.tar+gzip --diff-id "$good" \
	"$T/tars/padded-members.tar.gz" >/dev/null
refuse_case "$L" padded "garbage after the gzip stream" "a gzip member after zero padding (as unpack reads it)"
cp "$T/complete.tar.gz" "$T/bad.tar.gz"
printf '\377\377\377\377' | dd of="$T/bad.tar.gz" bs=1 seek=200 conv=notrunc status=none
$TARIMAGE "$L" corrupt-gzip --raw application/vnd.oci.image.layer.v1.tar+gzip --diff-id "$good" "$T/bad.tar.gz" >/dev/null
refuse_case "$L" corrupt-gzip "corrupt gzip stream|tar stream truncated|bad tar header" "corrupt gzip data"
if have zstd; then
	zstd -q -c "$T/tars/complete.tar" >"$T/complete.tar.zst"
	head -c $(($(stat -c %s "$T/complete.tar.zst") - 10)) "$T/complete.tar.zst" >"$T/cut.tar.zst"
	$TARIMAGE "$L" cut-zstd --raw application/vnd.oci.image.layer.v1.tar+zstd --diff-id "$good" "$T/cut.tar.zst" >/dev/null
	refuse_case "$L" cut-zstd "zstd stream is truncated" "a truncated zstd stream"
	cp "$T/complete.tar.zst" "$T/bad.tar.zst"
	printf '\377\377\377\377' | dd of="$T/bad.tar.zst" bs=1 seek=100 conv=notrunc status=none
	$TARIMAGE "$L" corrupt-zstd --raw application/vnd.oci.image.layer.v1.tar+zstd --diff-id "$good" "$T/bad.tar.zst" >/dev/null
	refuse_case "$L" corrupt-zstd "corrupt zstd stream" "corrupt zstd data"
	$TARIMAGE "$L" bomb-zstd --raw application/vnd.oci.image.layer.v1.tar+zstd "$T/tars/bomb.tar.zst" >/dev/null
	refuse_case "$L" bomb-zstd "more than 1048576 bytes of data after the end of the archive" "a zstd bomb"
	check "bomb-zstd: no uncompressed copy left in the cache" '[ -z "$(ls -A "$OCITREE_CACHE_DIR/tar/sha256" 2>/dev/null)" ]'
else
	skip "truncated, corrupt and bomb zstd layers" "zstd is not installed"
fi
$TARIMAGE "$L" bomb --raw application/vnd.oci.image.layer.v1.tar+gzip "$T/tars/bomb.tar.gz" >/dev/null
refuse_case "$L" bomb "more than 1048576 bytes of data after the end of the archive" "a gzip bomb"

$TARIMAGE "$L" wrong-diffid --diff-id 0=sha256:1111111111111111111111111111111111111111111111111111111111111111 \
	--compress none "$T/tars/complete.tar" >/dev/null
refuse_case "$L" wrong-diffid "uncompressed layer sha256:[0-9a-f]+ does not match its diff_id sha256:1111" "a wrong diff_id"
$TARIMAGE "$L" wrong-diffid-gz --diff-id 0=sha256:1111111111111111111111111111111111111111111111111111111111111111 \
	--compress gzip "$T/tars/complete.tar" >/dev/null
refuse_case "$L" wrong-diffid-gz "does not match diff_id sha256:1111" "a wrong diff_id (gzip)"
cp -a "$L" "$T/corrupt"
blob=$T/corrupt/blobs/sha256/$(image_json "$L" wrong-diffid-gz manifest | jq -r '.layers[0].digest' | cut -d: -f2)
printf 'X' | dd of="$blob" bs=1 seek=$(($(stat -c %s "$blob") / 2)) conv=notrunc status=none
$TARIMAGE "$T/corrupt" corrupt --compress gzip "$T/tars/complete.tar" >/dev/null
refuse_case "$T/corrupt" wrong-diffid-gz "does not match its digest" "a blob that does not match its digest"
truncate -s -1 "$blob"
refuse_case "$T/corrupt" wrong-diffid-gz "smaller than its declared size|does not match its digest" "a blob shorter than its size"

check "no daemon is left" '[ "$(daemons)" = 0 ]'
diag "hostile cases: $cases"
done_testing
