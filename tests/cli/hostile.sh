#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Hostile layers, crafted with Python's tarfile at test time
# (tests/tools/hostile-tars.py): unpack and raw unpack each fail with one
# line naming the entry and the reason, write nothing outside the bundle or
# rootfs, leave none behind and leave the layout as it was.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/tree-lib.sh"

L=$T/oci
OUT=$T/outside
mkdir -p "$OUT" "$T/tars"
passwd_links=$(stat -c %h /etc/passwd)

$PY "$top_srcdir/tests/tools/hostile-tars.py" "$T/tars" "$OUT" || exit 1

# every hostile layer alone, through unpack and raw unpack
cases=0
run_hostile() { # NAME PATTERN DESC
	cases=$((cases + 1))
	$MKIMAGE "$L" "$1" "$T/tars/$1.tar" >/dev/null || return 1
	snapshot "$L" >"$T/before"
	fails 1 "$2" "$3" $OCITREE unpack --image "$L:$1" "$T/bundle-$1"
	check "$1: one line of error" '[ "$(grep -c . "$T/err")" = 1 ]'
	check "$1: no bundle left behind" '[ ! -e "$T/bundle-$1" ]'
	fails 1 "ocitree raw: .*$2" "$3 (raw unpack)" $OCITREE raw unpack --image "$L:$1" "$T/rootfs-$1"
	check "$1: raw unpack: one line of error, no rootfs left behind" \
		'[ "$(grep -c . "$T/err")" = 1 ] && [ ! -e "$T/rootfs-$1" ]'
	check "$1: nothing written outside" '[ -z "$(ls -A "$OUT")" ] && [ ! -e "$T/escape-traversal" ] &&
		[ ! -e /tmp/escape-traversal ] && [ "$(stat -c %h /etc/passwd)" = "$passwd_links" ]'
	check "$1: the layout is unchanged" 'diff "$T/before" <(snapshot "$L") >&2'
}
run_hostile traversal "entry '../../escape-traversal': path climbs out of the root" "'..' above the root"
run_hostile absolute "entry '/.*/escape-absolute': absolute path" "an absolute path"
run_hostile symlink-escape "entry 'link/pwned': a symlink in its path leads out of the root" "a symlink out of the root, then a file through it"
run_hostile symlink-escape-deep "entry 'a/link/pwned': a symlink in its path leads out of the root" "a relative symlink above the root"
run_hostile hardlink-escape "entry 'hl': hardlink target '../../../../../../etc/passwd': path climbs out of the root" "a hardlink out of the root"
run_hostile hardlink-via-symlink "entry 'hl': hardlink target 'etclink/passwd' does not exist" "a hardlink through a symlink to /etc"
run_hostile hardlink-absolute "entry 'hl': hardlink target '/etc/passwd': absolute path" "a hardlink to an absolute path"
run_hostile symlink-loop "entry 'l1/x': resolve 'l1': Too many levels of symbolic links" "a symlink loop"
run_hostile root-symlink "entry '.': refusing to change the type of the root directory" "the root replaced by a symlink"
run_hostile whiteout-dotdot "entry 'dir/.wh...': invalid whiteout" "a whiteout of '..'"
run_hostile whiteout-escape "entry '../.wh.outside': path climbs out of the root" "a whiteout above the root"
run_hostile name-too-long "entry 'nnnn*': create: File name too long" "a name longer than the filesystem allows"
run_hostile absurd-size "layer sha256:[0-9a-f]+: entry 'big': Truncated tar archive" "a size far beyond the archive"
run_hostile absurd-pax "layer sha256:[0-9a-f]+: invalid tar archive" "an absurd pax header length"
run_hostile truncated "layer sha256:[0-9a-f]+: entry 'file': Truncated tar archive" "a truncated archive"
run_hostile pax-size "layer sha256:[0-9a-f]+: entry 'f': Truncated tar archive" "a pax size far beyond the archive"
run_hostile hardlink-missing "entry 'hl': hardlink target 'no/such/file' does not exist" "a hardlink to a missing file"
run_hostile hardlink-to-dir "entry 'hl': hardlink target 'dir' is a directory" "a hardlink to a directory"
run_hostile link-too-long "entry 'longlink': create symlink: File name too long" "a symlink target past PATH_MAX"

# a path past PATH_MAX made of names the filesystem allows is fine: it is
# created relative to directory fds
$MKIMAGE "$L" path-too-long "$T/tars/path-too-long.tar" >/dev/null
ok "a path longer than PATH_MAX" $OCITREE raw unpack --image "$L:path-too-long" "$T/deep"
check "lands inside the root, 20 levels down" \
	'[ "$(cd "$T/deep" && find . -name deep -type f | tr -cd / | wc -c)" = 21 ] && [ -z "$(ls -A "$OUT")" ]'
rm -rf "$T/deep"

# an absolute symlink is relative to the root, as inside a container
$MKIMAGE "$L" abs-symlink "$T/tars/abs-symlink.tar" >/dev/null
ok "a file through an absolute symlink" $OCITREE unpack --image "$L:abs-symlink" "$T/abs"
check "lands inside the root" '[ -f "$T/abs/rootfs$OUT/inside" ] && [ -z "$(ls -A "$OUT")" ]'
# a file named like a whiteout cannot go into a layer as a file
echo x >"$T/abs/rootfs/.wh.alink"
snapshot "$L" >"$T/before"
fails 1 "'.wh.alink': a name starting with '.wh.' is a whiteout in a layer" "repack refuses a file named like a whiteout" \
	$OCITREE repack --image "$L:abs-2" "$T/abs"
check "and leaves the layout as it was" 'diff "$T/before" <(snapshot "$L") >&2'
rm "$T/abs/rootfs/.wh.alink"

# names with a newline do not break the bundle's mtree: repack from it
# (without the state record) sees nothing changed
$PY - "$T/tars/newline.tar" <<'EOF2'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    for name, type in (("dir\nx size=0 type=file", tarfile.DIRTYPE), ("dir\nx size=0 type=file/f", tarfile.REGTYPE),
                       ("y\nz", tarfile.REGTYPE)):
        ti = tarfile.TarInfo(name)
        ti.type = type
        ti.mtime = 1700000000
        t.addfile(ti)
EOF2
$MKIMAGE "$L" newline "$T/tars/newline.tar" >/dev/null
ok "unpack names with newlines" $OCITREE unpack --image "$L:newline" "$T/nl"
rm -f "$T/nl/ocitree.state"
ok "repack from the mtree alone" $OCITREE repack --image "$L:newline-2" "$T/nl"
is "finds nothing changed" "$(image_json "$L" newline-2 config | jq -c '[.history[-1].empty_layer, (.rootfs.diff_ids | length)]')" \
	"[true,1]"

# streams and digests
run_image() { # LAYOUT TAG PATTERN DESC
	local lay=$1
	cases=$((cases + 1))
	snapshot "$lay" >"$T/before"
	fails 1 "$3" "$4" $OCITREE unpack --image "$1:$2" "$T/bx"
	check "$2: one line of error, naming the layer at most once" \
		'[ "$(grep -c . "$T/err")" = 1 ] && [ "$(grep -o "layer sha256" "$T/err" | wc -l)" -le 1 ]'
	check "$2: no bundle left behind" '[ ! -e "$T/bx" ]'
	fails 1 "$3" "$4 (raw unpack)" $OCITREE raw unpack --image "$1:$2" "$T/rx"
	check "$2: raw unpack: no rootfs left behind" '[ ! -e "$T/rx" ]'
	check "$2: the layout is unchanged" 'diff "$T/before" <(snapshot "$lay") >&2'
}
gzip -n -c "$T/tars/complete.tar" >"$T/complete.tar.gz"
head -c $(($(stat -c %s "$T/complete.tar.gz") - 20)) "$T/complete.tar.gz" >"$T/cut.tar.gz"
$MKIMAGE "$L" cut-gzip --raw application/vnd.oci.image.layer.v1.tar+gzip \
	--diff-id "0=sha256:$(sha256sum <"$T/tars/complete.tar" | cut -d' ' -f1)" "$T/cut.tar.gz" >/dev/null
run_image "$L" cut-gzip "layer sha256:[0-9a-f]+: truncated gzip stream" "a truncated gzip stream"

$MKIMAGE "$L" wrong-diffid --diff-id 0=sha256:1111111111111111111111111111111111111111111111111111111111111111 \
	"$T/tars/complete.tar" >/dev/null
run_image "$L" wrong-diffid \
	"layer sha256:[0-9a-f]+: uncompressed content sha256:[0-9a-f]+ does not match its diff_id sha256:1111" \
	"a wrong diff_id"

$MKIMAGE "$L" corrupt "$T/tars/complete.tar" >/dev/null
cp -a "$L" "$T/corrupt-layout"
blob=$T/corrupt-layout/blobs/sha256/$(image_json "$L" corrupt manifest | jq -r '.layers[0].digest' | cut -d: -f2)
chmod u+w "$blob" && printf 'X' | dd of="$blob" bs=1 seek=$(($(stat -c %s "$blob") / 2)) conv=notrunc status=none
run_image "$T/corrupt-layout" corrupt "blob sha256:[0-9a-f]+ does not match its digest" \
	"a changed blob is a digest error, not a gzip error"
$MKIMAGE "$T/corrupt-layout" corrupt-plain --compress none "$T/tars/complete.tar" >/dev/null
blob=$T/corrupt-layout/blobs/sha256/$(image_json "$T/corrupt-layout" corrupt-plain manifest | jq -r '.layers[0].digest' | cut -d: -f2)
chmod u+w "$blob" && printf 'X' | dd of="$blob" bs=1 seek=100 conv=notrunc status=none
run_image "$T/corrupt-layout" corrupt-plain "blob sha256:[0-9a-f]+ does not match its digest" \
	"a changed header is a digest error, not a tar error"

$MKIMAGE "$L" padded --raw application/vnd.oci.image.layer.v1.tar+gzip \
	--diff-id "0=sha256:$(sha256sum <"$T/tars/complete.tar" | cut -d' ' -f1)" "$T/tars/padded-members.tar.gz" >/dev/null
run_image "$L" padded "layer sha256:[0-9a-f]+: garbage after the gzip stream" "a gzip member after zero padding"

# a bomb: a small archive followed by endless zeros
$MKIMAGE "$L" bomb --raw application/vnd.oci.image.layer.v1.tar+gzip "$T/tars/bomb.tar.gz" >/dev/null
run_image "$L" bomb "more than 1048576 bytes of data after the end of the archive" "zeros after the archive stop early"

if have zstd; then
	$MKIMAGE "$L" bomb-zstd --raw application/vnd.oci.image.layer.v1.tar+zstd "$T/tars/bomb.tar.zst" >/dev/null
	run_image "$L" bomb-zstd "more than 1048576 bytes of data after the end of the archive" "a zstd bomb stops early"
else
	skip "a zstd bomb stops early" "zstd is not installed"
fi

# a device node without privileges: refused, unless --rootless (an empty file)
if is_root; then
	as_user() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
	have setpriv || as_user() { return 77; }
else
	as_user() { "$@"; }
fi
$MKIMAGE "$L" dev "$T/tars/dev.tar" >/dev/null
chmod -R a+rX "$L"
mkdir -m 0777 "$T/nb"
if as_user test -x "$OCITREE" && as_user test -r "$L/index.json"; then
	cases=$((cases + 1))
	fails 1 "not running as root \(see --rootless\)" "an image with a device node, without privileges" \
		as_user $OCITREE unpack --image "$L:dev" "$T/nb/b"
	check "no bundle left behind" '[ ! -e "$T/nb/b" ]'
	fails 1 "not running as root \(see --rootless\)" "the same, raw unpack" \
		as_user $OCITREE raw unpack --image "$L:dev" "$T/nb/r"
	check "no rootfs left behind" '[ ! -e "$T/nb/r" ]'
	ok "with --rootless it is an empty file" as_user $OCITREE raw unpack --rootless --image "$L:dev" "$T/nb/rl"
	check "an empty regular file" '[ -f "$T/nb/rl/dev" ] && [ ! -s "$T/nb/rl/dev" ]'
else
	skip "a device node without privileges" "no unprivileged user can run $OCITREE here"
fi
diag "hostile cases: $cases"
done_testing
