#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# ocitree mount: OCI semantics of the merged tree (whiteouts, opaque
# directories, file<->directory replacement, hardlinks across layers),
# metadata, xattrs, big files read at random offsets through the gzip
# checkpoints, the three compressions, --layer/--upto, read-only behaviour,
# the index cache and shutdown on SIGTERM.
. "$top_srcdir/tests/fs/lib-fs.sh"
need_fuse

deep=$(printf 'd%02d/' $(seq 1 40))
deep=${deep%/}
spec() { # COMPRESSION-OF-LAYER-1 COMPRESSION-OF-LAYER-2 COMPRESSION-OF-LAYER-3
	cat <<SPEC
layer $1
dir etc
file etc/hosts 0644 0 0 text:127.0.0.1 localhost\n
file etc/gone text:bye
dir etc/sub
file etc/sub/a text:a
dir opq
file opq/lower1 text:l1
dir opq/lowerdir
file opq/lowerdir/x text:x
file big 0644 0 0 random:1:6000000
file zeros 0644 0 0 zeros:20000000
file f2d text:file-becomes-dir
dir d2f
file d2f/child text:c
file hl1 0640 0 0 text:hardlink-data
hardlink hl2 hl1
symlink lnk etc/hosts
symlink abs /etc/hosts
file caps 0755 0 0 text:#!/bin/sh\n
xattr user.test hello
xattr trusted.overlay.x 0x0001ff
xattr security.capability 0x0100000200200000000000000000000000000000
fifo pipe
chr null 1 3
dir setuid 4755
$(p=""; for c in ${deep//\// }; do p=${p:+$p/}$c; echo "dir $p"; done)
file $deep/leaf text:deep
layer $2
whiteout etc/gone
opaque opq
file opq/upper text:u
dir f2d
file f2d/in text:in
file d2f text:now-a-file
hardlink hl3 hl1
file owned 0600 1234 5678 text:owned
layer $3
file etc/hosts text:changed\n
whiteout hl2
file tail 0644 0 0 pattern:3000000
SPEC
}

spec gzip zstd none | $MKIMAGE "$T/l" mixed >"$T/layers" || { echo "Bail out! mkimage failed"; exit 1; }
M=$T/mnt
# indexes of the format before are dead weight: the first build removes them
mkdir -p "$OCITREE_CACHE_DIR/index-v1/sha256" && echo old >"$OCITREE_CACHE_DIR/index-v1/sha256/0123"
ok "mount a gzip+zstd+uncompressed image" do_mount "$M" --image "$T/l:mixed"
check "the index build removed the old format's indexes" '[ ! -e "$OCITREE_CACHE_DIR/index-v1" ]'
check "it is mounted" is_mounted "$M"
is "findmnt shows the source and type" "$(findmnt -n -o SOURCE,FSTYPE "$M" | tr -s ' ')" "$T/l:mixed fuse.ocitree"
is "upper layer content wins" "$(cat "$M/etc/hosts")" "changed"
check "whiteout hides a lower file" '[ ! -e "$M/etc/gone" ]'
check "whiteout entries are not shown" '[ ! -e "$M/etc/.wh.gone" ] && ! ls -a "$M/etc" | grep -q wh'
is "opaque directory shows only the upper layer" "$(ls -A "$M/opq")" "upper"
check "file replaced by a directory" '[ -d "$M/f2d" ] && [ "$(cat "$M/f2d/in")" = in ]'
check "directory replaced by a file" '[ -f "$M/d2f" ] && [ "$(cat "$M/d2f")" = now-a-file ]'
is "hardlink across layers shares the inode" "$(stat -c %i "$M/hl1")" "$(stat -c %i "$M/hl3")"
is "nlink counts the names in the merged view" "$(stat -c %h "$M/hl1")" "2"
check "whited-out hardlink name is gone" '[ ! -e "$M/hl2" ]'
is "hardlink has the target's metadata" "$(stat -c '%a %s' "$M/hl3")" "640 13"
is "relative symlink" "$(readlink "$M/lnk")" "etc/hosts"
is "absolute symlink" "$(readlink "$M/abs")" "/etc/hosts"
is "owner and mode" "$(stat -c '%u %g %a' "$M/owned")" "1234 5678 600"
is "setuid directory mode" "$(stat -c '%a' "$M/setuid")" "4755"
is "mtime from the tar" "$(stat -c %Y "$M/owned")" "1700000000"
is "fifo" "$(stat -c %F "$M/pipe")" "fifo"
is "character device" "$(stat -c '%F %t %T' "$M/null")" "character special file 1 3"
is "user xattr" "$(getfattr --only-values -n user.test "$M/caps" 2>/dev/null)" "hello"
is "security.capability" "$(getfattr -e hex --only-values -n security.capability "$M/caps" 2>/dev/null | od -An -tx1 | tr -d ' \n')" \
	"0100000200200000000000000000000000000000"
is "listxattr" "$(getfattr -m - -d "$M/caps" 2>/dev/null | grep -c =)" "3"
is "deep tree" "$(cat "$M/$deep/leaf")" "deep"
is "big file content" "$(sha "$M/big")" "$($MKIMAGE --content random:1:6000000 | sha256sum | cut -d' ' -f1)"
is "sparse-ish file content" "$(sha "$M/zeros")" "$($MKIMAGE --content zeros:20000000 | sha256sum | cut -d' ' -f1)"
is "uncompressed layer file content" "$(sha "$M/tail")" "$($MKIMAGE --content pattern:3000000 | sha256sum | cut -d' ' -f1)"
$MKIMAGE --content random:1:6000000 >"$T/big.ref"
bad=0
for off in 0 4095 1048575 1048576 2097151 3333333 5999000 5999999; do
	a=$(dd if="$M/big" bs=1 skip=$off count=5000 iflag=skip_bytes,count_bytes 2>/dev/null | sha256sum)
	b=$(dd if="$T/big.ref" bs=1 skip=$off count=5000 iflag=skip_bytes,count_bytes 2>/dev/null | sha256sum)
	[ "$a" = "$b" ] || { bad=1; diag "offset $off differs"; }
done
is "reads at random offsets (across gzip checkpoints)" "$bad" "0"
fails 2 "Read-only file system" "writing is refused" sh -c "echo x > '$M/etc/hosts'"
fails 1 "Read-only file system" "creating is refused" touch "$M/newfile"
check "statfs reports the files" '[ "$(stat -f -c %c "$M")" -gt 60 ]'
# the root, 4 in etc, 2 in opq, 15 at the top, 40 deep directories and a leaf
is "find sees every entry" "$(find "$M" | wc -l)" "$((1 + 4 + 2 + 15 + 40 + 1))"
ok "unmount" do_umount "$M"
check "unmounted" '! is_mounted "$M"'

# the same image, gzip only, against umoci's rootfs
if have umoci && [ "$(id -u)" -eq 0 ]; then
	spec gzip gzip gzip | $MKIMAGE "$T/l" gz >/dev/null
	umoci unpack --image "$T/l:gz" "$T/bundle" >/dev/null 2>&1
	ok "mount the gzip image" do_mount "$T/mgz" --image "$T/l:gz"
	ok "the mount equals umoci's rootfs" "$COMPARE_TREE" "$T/bundle/rootfs" "$T/mgz"
	cat "$T/out" | tail -n 3 | sed 's/^/# /'
	ok "unmount" do_umount "$T/mgz"
else
	skip "the mount equals umoci's rootfs" "umoci unpack needs umoci and root"
fi

# the index cache: the second mount does not rebuild
ok "mount again with the cached index" do_mount "$M" --image "$T/l:mixed" -o fsname=mine,subtype=other
is "fsname and subtype are honoured" "$(findmnt -n -o SOURCE,FSTYPE "$M" | tr -s ' ')" "mine fuse.other"
is "content from the cached index" "$(sha "$M/big")" "$(sha "$T/big.ref")"
ok "unmount" do_umount "$M"
check "index files are cached by digest" '[ "$(ls "$OCITREE_CACHE_DIR/index-v2/sha256" | wc -l)" -ge 3 ]'

# layer inspection
l2=$(sed -n 2p "$T/layers")
ok "mount one layer" do_mount "$M" --image "$T/l:mixed" --layer 2
check "whiteouts are visible in a single layer" '[ -f "$M/etc/.wh.gone" ] && [ -f "$M/opq/.wh..wh..opq" ]'
check "the layer alone has no lower files" '[ ! -e "$M/big" ] && [ "$(cat "$M/opq/upper")" = u ]'
ok "unmount" do_umount "$M"
ok "mount one layer by digest" do_mount "$M" --image "$T/l:mixed" --layer "$l2"
check "it is the same layer" '[ -f "$M/etc/.wh.gone" ]'
ok "unmount" do_umount "$M"
ok "mount up to layer 1" do_mount "$M" --image "$T/l:mixed" --upto 1
check "lower state is shown" '[ -f "$M/etc/gone" ] && [ -f "$M/opq/lower1" ] && [ -f "$M/hl2" ] && [ "$(stat -c %h "$M/hl1")" = 2 ]'
is "lower content" "$(cat "$M/etc/hosts")" "127.0.0.1 localhost"
ok "unmount" do_umount "$M"

# foreground mode and SIGTERM
mkdir -p "$M"
_mounts+=("$M")
"$OCITREE" mount -f --image "$T/l:mixed" "$M" 2>"$T/fg.err" &
pid=$!
for i in $(seq 100); do is_mounted "$M" && break; sleep 0.05; done
check "foreground mount is up" is_mounted "$M"
kill -TERM $pid
wait $pid
is "SIGTERM ends the daemon cleanly" "$?" "0"
check "and unmounts" '! is_mounted "$M"'

done_testing
