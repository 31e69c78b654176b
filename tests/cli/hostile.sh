#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Hostile layers, crafted with Python's tarfile at test time: each fails with
# one line naming the entry and the reason, writes nothing outside the
# bundle, leaves no bundle behind and leaves the layout as it was.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/tree-lib.sh"

L=$T/oci
OUT=$T/outside
mkdir -p "$OUT" "$T/tars"
passwd_links=$(stat -c %h /etc/passwd)

$PY - "$T/tars" "$OUT" <<'EOF2' || exit 1
import io, os, sys, tarfile
d, out = sys.argv[1], sys.argv[2]
def tar(name, entries, fmt=tarfile.PAX_FORMAT):
    with tarfile.open(os.path.join(d, name + ".tar"), "w", format=fmt) as t:
        for e in entries:
            data = e.pop("data", b"")
            ti = tarfile.TarInfo(e.pop("name"))
            for k, v in e.items():
                setattr(ti, k, v)
            if ti.type == tarfile.REGTYPE:
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data else None)
REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
tar("traversal", [{"name": "ok"}, {"name": "../../escape-traversal", "data": b"x"}])
tar("absolute", [{"name": out + "/escape-absolute", "data": b"x"}])
tar("symlink-escape", [{"name": "link", "type": SYM, "linkname": "../../../../../../../../../.." + out},
                       {"name": "link/pwned", "data": b"x"}])
tar("symlink-escape-deep", [{"name": "a", "type": DIR}, {"name": "a/link", "type": SYM, "linkname": "../.."},
                            {"name": "a/link/pwned", "data": b"x"}])
tar("hardlink-escape", [{"name": "hl", "type": LNK, "linkname": "../../../../../../etc/passwd"}])
tar("hardlink-via-symlink", [{"name": "etclink", "type": SYM, "linkname": "/etc"},
                             {"name": "hl", "type": LNK, "linkname": "etclink/passwd"}])
tar("hardlink-absolute", [{"name": "hl", "type": LNK, "linkname": "/etc/passwd"}])
tar("symlink-loop", [{"name": "l1", "type": SYM, "linkname": "l2"}, {"name": "l2", "type": SYM, "linkname": "l1"},
                     {"name": "l1/x", "data": b"x"}])
tar("root-symlink", [{"name": ".", "type": SYM, "linkname": "/"}])
tar("whiteout-dotdot", [{"name": "dir", "type": DIR}, {"name": "dir/.wh..."}])
tar("whiteout-escape", [{"name": "../.wh.outside"}])
tar("name-too-long", [{"name": "n" * 300, "data": b"x"}])
# a file claims far more data than the archive has
with open(os.path.join(d, "absurd-size.tar"), "wb") as f:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo("big")
        ti.size = 5
        t.addfile(ti, io.BytesIO(b"12345"))
    raw = bytearray(b.getvalue())
    # rewrite the ustar size field to 8 GiB - 1 and fix the checksum
    raw[124:136] = b"77777777777\0"
    raw[148:156] = b"        "
    raw[148:156] = ("%06o\0 " % sum(raw[:512])).encode()
    f.write(bytes(raw[:1024]))
# a pax header that claims an absurd length
with open(os.path.join(d, "absurd-pax.tar"), "wb") as f:
    h = bytearray(512)
    h[0:14] = b"././@PaxHeader"
    h[100:108] = b"0000644\0"; h[108:116] = b"0000000\0"; h[116:124] = b"0000000\0"
    h[124:136] = b"77777777777\0"; h[136:148] = b"00000000000\0"; h[156:157] = b"x"
    h[257:263] = b"ustar\0"; h[263:265] = b"00"; h[148:156] = b"        "
    h[148:156] = ("%06o\0 " % sum(h)).encode()
    f.write(bytes(h) + b"99999999999 path=" + b"a" * 495 + bytes(1024))
# a truncated archive: the data stops in the middle of a file
with open(os.path.join(d, "complete.tar"), "wb") as f:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo("file")
        ti.size = 100000
        t.addfile(ti, io.BytesIO(os.urandom(100000)))
    f.write(b.getvalue())
    with open(os.path.join(d, "truncated.tar"), "wb") as g:
        g.write(b.getvalue()[:50000])
EOF2

# every hostile layer alone, as an uncompressed and as a gzip layer
run_hostile() { # NAME PATTERN DESC
	$MKIMAGE "$L" "$1" "$T/tars/$1.tar" >/dev/null || return 1
	snapshot "$L" >"$T/before"
	fails 1 "$2" "$3" $OCITREE unpack --image "$L:$1" "$T/bundle-$1"
	check "$1: one line of error" '[ "$(grep -c . "$T/err")" = 1 ]'
	check "$1: no bundle left behind" '[ ! -e "$T/bundle-$1" ]'
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

# an absolute symlink is relative to the root, as inside a container
$PY - "$T/tars" "$OUT" <<'EOF2'
import io, sys, tarfile
with tarfile.open(sys.argv[1] + "/abs-symlink.tar", "w", format=tarfile.PAX_FORMAT) as t:
    ti = tarfile.TarInfo("alink"); ti.type = tarfile.SYMTYPE; ti.linkname = sys.argv[2]; t.addfile(ti)
    ti = tarfile.TarInfo("alink/inside"); ti.size = 1; t.addfile(ti, io.BytesIO(b"x"))
EOF2
$MKIMAGE "$L" abs-symlink "$T/tars/abs-symlink.tar" >/dev/null
ok "a file through an absolute symlink" $OCITREE unpack --image "$L:abs-symlink" "$T/abs"
check "lands inside the root" '[ -f "$T/abs/rootfs$OUT/inside" ] && [ -z "$(ls -A "$OUT")" ]'

# streams and digests
run_image() { # LAYOUT TAG PATTERN DESC
	local lay=$1
	snapshot "$lay" >"$T/before"
	fails 1 "$3" "$4" $OCITREE unpack --image "$1:$2" "$T/bx"
	check "$2: one line of error" '[ "$(grep -c . "$T/err")" = 1 ]'
	check "$2: no bundle left behind" '[ ! -e "$T/bx" ]'
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
chmod u+w "$blob" && printf 'X' | dd of="$blob" bs=1 seek=5000 conv=notrunc status=none
run_image "$T/corrupt-layout" corrupt "blob sha256:[0-9a-f]+ does not match its digest" \
	"a changed blob is a digest error, not a gzip error"
$MKIMAGE "$T/corrupt-layout" corrupt-plain --compress none "$T/tars/complete.tar" >/dev/null
blob=$T/corrupt-layout/blobs/sha256/$(image_json "$T/corrupt-layout" corrupt-plain manifest | jq -r '.layers[0].digest' | cut -d: -f2)
chmod u+w "$blob" && printf 'X' | dd of="$blob" bs=1 seek=100 conv=notrunc status=none
run_image "$T/corrupt-layout" corrupt-plain "blob sha256:[0-9a-f]+ does not match its digest" \
	"a changed header is a digest error, not a tar error"

# a bomb: a small archive followed by endless zeros
$PY - "$T/tars/complete.tar" "$T/bomb.tar.gz" <<'EOF2'
import gzip, sys
with gzip.open(sys.argv[2], "wb", compresslevel=9) as g:
    g.write(open(sys.argv[1], "rb").read())
    for _ in range(64):
        g.write(bytes(1 << 20))
EOF2
$MKIMAGE "$L" bomb --raw application/vnd.oci.image.layer.v1.tar+gzip "$T/bomb.tar.gz" >/dev/null
run_image "$L" bomb "more than 1048576 bytes of data after the end of the archive" "zeros after the archive stop early"

if ! is_root; then
	$PY -c "
import tarfile, sys
with tarfile.open(sys.argv[1], 'w') as t:
    ti = tarfile.TarInfo('dev'); ti.type = tarfile.CHRTYPE; ti.devmajor = 1; ti.devminor = 3; t.addfile(ti)
" "$T/tars/dev.tar"
	$MKIMAGE "$L" dev "$T/tars/dev.tar" >/dev/null
	fails 1 "entry 'dev': create device node .*--rootless" "a device node without privileges" \
		$OCITREE unpack --image "$L:dev" "$T/bx"
else
	skip "a device node without privileges" "running as root"
fi
done_testing
