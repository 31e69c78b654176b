#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# ocitree mount refuses what it cannot serve with one clear line, and a
# read that hits a corrupt stream fails with EIO while the daemon keeps
# serving everything else.  A corrupt cached index is rebuilt.
. "$top_srcdir/tests/fs/lib-fs.sh"
need_fuse

$MKIMAGE "$T/l" img >"$T/layers" <<'SPEC' || { echo "Bail out! mkimage failed"; exit 1; }
layer gzip
file small text:small file\n
file big 0644 0 0 random:7:8000000
file after text:after\n
SPEC
M=$T/mnt
mkdir -p "$M"

fails 1 "tag 'nope' not found" "a missing tag is refused" "$OCITREE" mount --image "$T/l:nope" "$M"
fails 1 "open layout" "a missing layout is refused" "$OCITREE" mount --image "$T/none:img" "$M"
touch "$T/file"
fails 1 "mountpoint '.*' is not a directory" "a file as mountpoint is refused" "$OCITREE" mount --image "$T/l:img" "$T/file"
fails 1 "No such file" "a missing mountpoint is refused" "$OCITREE" mount --image "$T/l:img" "$T/absent"
fails 2 "invalid mount options" "an unknown -o option is a usage error" "$OCITREE" mount -o no_such_option --image "$T/l:img" "$M"
fails 2 "read-only" "-o rw is refused" "$OCITREE" mount -o rw --image "$T/l:img" "$M"
fails 1 "the image has 1 layers" "--layer beyond the image" "$OCITREE" mount --layer 5 --image "$T/l:img" "$M"
fails 2 "cannot be used together" "--layer with --upto" "$OCITREE" mount --layer 1 --upto 1 --image "$T/l:img" "$M"
fails 2 "missing MOUNTPOINT" "no mountpoint" "$OCITREE" mount --image "$T/l:img"

ok "mount" do_mount "$M" --image "$T/l:img"
fails 1 "busy" "a busy mountpoint is refused" "$OCITREE" mount --image "$T/l:img" "$M"
ok "unmount" do_umount "$M"

# a corrupt cached index is rebuilt, and the mount is right
idx=$(ls "$OCITREE_CACHE_DIR"/index-v2/sha256/*)
printf 'garbage' | dd of="$idx" bs=1 seek=300 conv=notrunc 2>/dev/null
ok "mount with a corrupt cached index" do_mount "$M" --image "$T/l:img"
is "the index was rebuilt" "$(sha "$M/big")" "$($MKIMAGE --content random:7:8000000 | sha256sum | cut -d' ' -f1)"
ok "unmount" do_umount "$M"
truncate -s 100 "$idx"
ok "mount with a truncated cached index" do_mount "$M" --image "$T/l:img"
is "content is right" "$(cat "$M/after")" "after"
ok "unmount" do_umount "$M"

# corrupt the blob in the middle of the big file: with the index cached the
# mount succeeds, the damaged chunk fails with EIO, the rest reads fine
blob=$T/l/blobs/sha256/$(sed -n 1p "$T/layers" | cut -d: -f2)
size=$(stat -c %s "$blob")
cp "$blob" "$T/blob.orig"
printf '\377\377\377\377\377\377\377\377' | dd of="$blob" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
ok "mount over a corrupt blob with a cached index" do_mount "$M" --image "$T/l:img"
fails 1 "Input/output error" "reading the damaged data is EIO" cat "$M/big"
is "data before the damage reads" "$(cat "$M/small")" "small file"
is "data after the damage reads" "$(cat "$M/after")" "after"
check "the daemon is still serving" 'is_mounted "$M" && [ "$(ls "$M" | wc -l)" = 3 ]'
ok "unmount" do_umount "$M"

# without a cached index the digest mismatch refuses the mount
fails 1 "does not match its digest" "a corrupt blob is refused when indexing" \
	"$OCITREE" mount --rebuild-index --image "$T/l:img" "$M"
check "nothing was mounted" '! is_mounted "$M"'
cp "$T/blob.orig" "$blob"

# a layer whose uncompressed content is not its diff_id
$MKIMAGE "$T/l2" img >/dev/null <<'SPEC'
layer gzip
file a text:a
SPEC
cfg=$(jq -r '.manifests[0].digest' "$T/l2/index.json" | cut -d: -f2)
cfg=$(jq -r '.config.digest' "$T/l2/blobs/sha256/$cfg" | cut -d: -f2)
if have jq; then
	jq -c '.rootfs.diff_ids[0] = "sha256:'"$(printf '%064d' 0)"'"' "$T/l2/blobs/sha256/$cfg" >"$T/cfg"
	new=$(sha256sum <"$T/cfg" | cut -d' ' -f1)
	cp "$T/cfg" "$T/l2/blobs/sha256/$new"
	m=$(jq -r '.manifests[0].digest' "$T/l2/index.json" | cut -d: -f2)
	jq -c '.config.digest = "sha256:'"$new"'" | .config.size = '"$(stat -c %s "$T/cfg")" "$T/l2/blobs/sha256/$m" >"$T/man"
	nm=$(sha256sum <"$T/man" | cut -d' ' -f1)
	cp "$T/man" "$T/l2/blobs/sha256/$nm"
	jq -c '.manifests[0].digest = "sha256:'"$nm"'" | .manifests[0].size = '"$(stat -c %s "$T/man")" "$T/l2/index.json" >"$T/idx"
	cp "$T/idx" "$T/l2/index.json"
	fails 1 "does not match diff_id" "a diff_id mismatch is refused" "$OCITREE" mount --image "$T/l2:img" "$M"
else
	skip "a diff_id mismatch is refused" "jq is not installed"
fi

# a truncated gzip stream
$MKIMAGE "$T/l3" img >"$T/layers3" <<'SPEC'
layer gzip
file a 0644 0 0 random:3:100000
SPEC
b3=$T/l3/blobs/sha256/$(cut -d: -f2 "$T/layers3")
head -c 1000 "$b3" >"$T/trunc"
# keep the descriptor honest about the new size and digest: the stream is what is broken
/usr/bin/python3 - "$T/l3" "$b3" "$T/trunc" <<'PY'
import hashlib, json, os, sys
layout, old, new = sys.argv[1:]
data = open(new, "rb").read()
d = hashlib.sha256(data).hexdigest()
open(os.path.join(layout, "blobs/sha256", d), "wb").write(data)
def put(obj):
    b = json.dumps(obj).encode()
    h = hashlib.sha256(b).hexdigest()
    open(os.path.join(layout, "blobs/sha256", h), "wb").write(b)
    return "sha256:" + h, len(b)
idx = json.load(open(os.path.join(layout, "index.json")))
m = json.load(open(os.path.join(layout, "blobs/sha256", idx["manifests"][0]["digest"][7:])))
m["layers"][0]["digest"], m["layers"][0]["size"] = "sha256:" + d, len(data)
idx["manifests"][0]["digest"], idx["manifests"][0]["size"] = put(m)
json.dump(idx, open(os.path.join(layout, "index.json"), "w"))
PY
fails 1 "gzip stream is truncated|corrupt gzip" "a truncated gzip layer is refused" "$OCITREE" mount --image "$T/l3:img" "$M"

done_testing
