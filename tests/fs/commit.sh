#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# ocitree commit: a session of changes on a writable mount of an image made
# at run time, committed after unmounting and on the live mount; umoci
# unpack of the new tag equals the tree the mount showed, exactly; the layer
# holds only the change; --clear keeps the mount's tree on the new image;
# history, compression, determinism, errors, and a rootless commit.
. "$top_srcdir/tests/fs/lib-fs.sh"
need_fuse
[ "$(id -u)" -eq 0 ] || skip_all "needs root (devices, owners, trusted xattrs); rootless is tested below as root"
have umoci || skip_all "umoci is needed as the reference unpacker"
have getfattr || skip_all "getfattr (attr) is needed"

$MKIMAGE "$T/l" base >/dev/null <<'SPEC' || { echo "Bail out! mkimage failed"; exit 1; }
layer gzip
dir etc
file etc/hosts 0644 0 0 text:127.0.0.1 localhost\n
file etc/passwd 0644 0 0 text:root:x:0:0:root:/root:/bin/sh\n
file etc/group 0644 0 0 text:root:x:0:\n
dir etc/old
file etc/old/a text:a\n
dir etc/old/sub
file etc/old/sub/b text:b\n
dir usr
dir usr/bin
file usr/bin/tool 04755 0 0 random:3:300000
file usr/bin/other 0755 0 0 text:#!/bin/sh\necho other\n
hardlink usr/bin/other-link usr/bin/other
symlink usr/bin/tool-link tool
dir var
dir var/lib
dir var/lib/pkg
file var/lib/pkg/status text:installed\n
xattr user.note lower
file var/lib/pkg/list text:a\nb\n
dir opt
file opt/big 0644 0 0 random:5:3000000
xattr trusted.overlay.x 0x0001ff
fifo opt/fifo
chr opt/null 1 3
layer gzip
file etc/motd text:hello\n
file home 0644 1000 1000 text:was a file\n
SPEC

M=$T/mnt U=$T/upper
mkdir -p "$U"
ok "mount writable" do_mount "$M" --upper "$U" --image "$T/l:base"
echo "10.0.0.1 db" >>"$M/etc/hosts"
printf 'new file\n' >"$M/etc/new.conf"
chmod 600 "$M/etc/passwd"
chown 7:8 "$M/usr/bin/tool"
rm "$M/etc/motd"
mv "$M/usr/bin/tool" "$M/usr/bin/tool2"
ln "$M/etc/hosts" "$M/etc/hosts.hard"
rm -r "$M/etc/old"
mkdir "$M/etc/old"
echo fresh >"$M/etc/old/fresh"
mv "$M/var/lib/pkg" "$M/var/lib/pkg.bak"
mkdir -p "$M/var/lib/pkg/new"
setfattr -n user.added -v yes "$M/etc/passwd"
setfattr -n trusted.overlay.opaque -v y "$M/etc/group" # umoci drops trusted.overlay.*: checked on our mount
setfattr -n trusted.test -v t "$M/etc/hosts"
touch -d @1600000000 "$M/etc/group"
printf 'X' | dd of="$M/opt/big" bs=1 seek=1000000 conv=notrunc status=none
rm "$M/home" && mkdir "$M/home" && mkdir "$M/home/user" && chown 1000:1000 "$M/home/user"
mknod "$M/opt/tty" c 5 0
mkfifo "$M/opt/fifo2"
ln -s ../etc/hosts "$M/opt/hosts-link"
rm "$M/usr/bin/other-link"
chmod 4711 "$M/usr/bin/other"
mkdir -m 1777 "$M/tmp"
ok "unmount" do_umount "$M"

fails 2 "missing mandatory option --image" "--image is required" "$OCITREE" commit --upper "$U"
fails 2 "either --upper" "--upper and a mountpoint" "$OCITREE" commit --upper "$U" --image "$T/l" "$M"
ok "commit the upper directory after unmounting" "$OCITREE" commit --upper "$U" --image "$T/l:new1" \
	--history.comment "a test commit"
check "it names the new image and its layer" 'grep -q "^new1: sha256:.*(layer sha256:" "$T/out"'
validated "oci-validate --full of the layout" "$T/l"
ok "fsck of the layout" "$OCITREE" fsck --layout "$T/l"
is "the image has one layer more" "$("$OCITREE" stat --image "$T/l:new1" --json | jq '.manifest.blob.layers | length')" "3"
is "the history says ocitree commit" \
	"$("$OCITREE" stat --image "$T/l:new1" --json | jq -r '.config.blob.history[-1] | .created_by + "|" + .comment')" \
	"ocitree commit|a test commit"
is "the diff_ids follow the layers" "$("$OCITREE" stat --image "$T/l:new1" --json | jq '.config.blob.rootfs.diff_ids | length')" "3"
is "the base tag is untouched" "$("$OCITREE" stat --image "$T/l:base" --json | jq '.manifest.blob.layers | length')" "2"

# what the mount shows, what umoci unpacks
ok "mount the upper directory again" do_mount "$M" --upper "$U" --image "$T/l:base"
ok "umoci unpacks the new tag" umoci unpack --image "$T/l:new1" "$T/bundle"
# umoci leaves trusted.overlay.* xattrs out (it calls them forbidden): put
# back the two the image has, so that the rest compares exactly
setfattr -n trusted.overlay.opaque -v y "$T/bundle/rootfs/etc/group"
setfattr -n trusted.overlay.x -v 0x0001ff "$T/bundle/rootfs/opt/big"
ok "umoci's rootfs equals the mounted tree exactly" "$COMPARE_TREE" "$T/bundle/rootfs" "$M"
ok "ocitree unpacks the new tag" "$OCITREE" unpack --image "$T/l:new1" "$T/obundle"
ok "ocitree's rootfs equals the mounted tree exactly" "$COMPARE_TREE" "$T/obundle/rootfs" "$M"
ok "a read-only mount of the new tag equals it too" do_mount "$T/ro" --image "$T/l:new1"
ok "the same tree" "$COMPARE_TREE" "$T/ro" "$M"
is "trusted.overlay.* xattrs set in the mount are in the layer" \
	"$(getfattr --only-values -n trusted.overlay.opaque "$T/ro/etc/group")" "y"
is "(stored escaped in the upper directory)" \
	"$(getfattr --only-values -n trusted.overlay.overlay.opaque "$U/etc/group")" "y"
ok "unmount" do_umount "$T/ro"

# the layer holds the change, no more
layer=$("$OCITREE" stat --image "$T/l:new1" --json | jq -r '.manifest.blob.layers[-1].digest' | cut -d: -f2)
tar -tvzf "$T/l/blobs/sha256/$layer" >"$T/tarlist" || true
names=$(awk '{print $6}' "$T/tarlist" | LC_ALL=C sort | tr '\n' ' ')
check "removed files are whiteouts" 'grep -q " etc/.wh.motd$" "$T/tarlist" && grep -q " usr/bin/.wh.tool$" "$T/tarlist"'
check "a directory made again is opaque" 'grep -q " etc/old/.wh..wh..opq$" "$T/tarlist"'
check "a renamed image directory comes with its files" 'grep -q " var/lib/pkg.bak/status$" "$T/tarlist"'
check "a metadata-only copy has its data in the layer" 'grep -E -q "^-rw------- 0/0 +30 .* etc/passwd$" "$T/tarlist"'
check "a hardlink made in the mount is a hardlink" 'grep -q "etc/hosts.hard link to etc/hosts" "$T/tarlist"'
check "untouched files are not in the layer" '! grep -q " etc/hosts.deny\| opt/fifo$\| usr/bin/tool-link" "$T/tarlist"'
is "the layer holds the change and the directories above it, no more" "$names" \
	"./ etc/ etc/.wh.motd etc/group etc/hosts etc/hosts.hard etc/new.conf etc/old/ etc/old/.wh..wh..opq etc/old/fresh etc/passwd home/ home/user/ opt/ opt/big opt/fifo2 opt/hosts-link opt/tty tmp/ usr/ usr/bin/ usr/bin/.wh.other-link usr/bin/.wh.tool usr/bin/other usr/bin/tool2 var/ var/lib/ var/lib/pkg.bak/ var/lib/pkg.bak/.wh..wh..opq var/lib/pkg.bak/list var/lib/pkg.bak/status var/lib/pkg/ var/lib/pkg/.wh..wh..opq var/lib/pkg/new/ "

# the same upper directory commits to the same layer
ok "unmount" do_umount "$M"
ok "commit it again" "$OCITREE" commit --upper "$U" --image "$T/l:new1b" --history.created 2024-01-01T00:00:00Z
is "deterministic: the same layer digest" \
	"$("$OCITREE" stat --image "$T/l:new1b" --json | jq -r '.manifest.blob.layers[-1].digest')" "sha256:$layer"

# a live commit, with zstd and --clear
ok "mount again" do_mount "$M" --upper "$U" --image "$T/l:base"
exec 7>>"$M/etc/passwd" # a file open for writing across the clear
echo "live change" >"$M/live.txt"
ok "commit the live mount (zstd, --clear)" "$OCITREE" commit "$M" --image "$T/l:live" --compress zstd --clear
is "the layer is zstd" "$("$OCITREE" stat --image "$T/l:live" --json | jq -r '.manifest.blob.layers[-1].mediaType')" \
	"application/vnd.oci.image.layer.v1.tar+zstd"
is "the record names the new image" "$(jq -r .manifest.digest "$U.work/ocitree-upper.json")" \
	"$("$OCITREE" stat --image "$T/l:live" --json | jq -r .manifest.descriptor.digest)"
is "the upper directory keeps only the file open for writing" "$(cd "$U" && find . -mindepth 1 | LC_ALL=C sort | tr '\n' ' ')" "./etc ./etc/passwd "
ok "a read-only mount of the new tag" do_mount "$T/ro" --image "$T/l:live"
ok "the live mount still shows the same tree" "$COMPARE_TREE" "$T/ro" "$M"
ok "unmount" do_umount "$T/ro"
echo "through the open fd" >&7
exec 7>&-
echo "second change" >"$M/second.txt"
rm "$M/live.txt"
ok "commit again" "$OCITREE" commit "$M" --image "$T/l:live2"
layer2=$("$OCITREE" stat --image "$T/l:live2" --json | jq -r '.manifest.blob.layers[-1].digest' | cut -d: -f2)
tar -tvzf "$T/l/blobs/sha256/$layer2" >"$T/tarlist2"
is "the second layer holds only what changed since" "$(awk '{print $6}' "$T/tarlist2" | LC_ALL=C sort | tr '\n' ' ')" \
	"./ .wh.live.txt etc/ etc/passwd second.txt "
# (umoci 0.4.7 cannot read zstd layers: a read-only mount of ours is the reference)
ok "a read-only mount of it" do_mount "$T/ro" --image "$T/l:live2"
ok "equals the live mount" "$COMPARE_TREE" "$T/ro" "$M"
is "the write through the kept fd is in" "$(tail -1 "$T/ro/etc/passwd")" "through the open fd"
ok "unmount" do_umount "$T/ro"

# nothing changed: no layer
ok "commit --clear" "$OCITREE" commit "$M" --image "$T/l:live3" --clear
ok "commit with nothing changed" "$OCITREE" commit "$M" --image "$T/l:same"
check "no layer" 'grep -q "no changes" "$T/out"'
is "only a history entry" "$("$OCITREE" stat --image "$T/l:same" --json | jq -r '.config.blob.history[-1].empty_layer')" "true"

# errors
fails 1 "mounted" "an offline commit of a mounted upper directory is refused" \
	"$OCITREE" commit --upper "$U" --image "$T/l:x"
"$OCITREE" init --layout "$T/other" >/dev/null
fails 2 "commit there" "a live commit into another layout is refused" "$OCITREE" commit "$M" --image "$T/other:x"
fails 1 "not a writable ocitree mount" "a directory that is no mount" "$OCITREE" commit "$T" --image "$T/l:x"
ok "unmount" do_umount "$M"
fails 1 "work directory" "an upper directory that was never mounted" "$OCITREE" commit --upper "$T/bundle" --image "$T/l:x"

# commit --clear keeps the times of the directories that stay (the upper
# root at least): when it cannot, that is an error, not a silent new mtime
# the next commit would carry
if have strace && strace -qq -e trace=getpid -e inject=getpid:retval=1 true 2>/dev/null; then
	U3=$T/upper-times
	mkdir -p "$U3"
	ok "mount for a clear that fails" do_mount "$M" --upper "$U3" --image "$T/l:base"
	echo x >"$M/times.txt"
	ok "unmount" do_umount "$M"
	cp -a "$U3" "$T/upper-times.saved" && cp -a "$U3.work" "$T/upper-times.saved.work"
	$TRACED strace -f -qq -o "$T/trace" -e trace=utimensat "$OCITREE" commit --upper "$U3" --image "$T/l:t1" --clear >/dev/null
	n=$(grep -c 'utimensat(' "$T/trace")
	check "commit --clear restores times ($n utimensat calls)" '[ "$n" -gt 0 ]'
	rm -rf "$U3" "$U3.work" && cp -a "$T/upper-times.saved" "$U3" && cp -a "$T/upper-times.saved.work" "$U3.work"
	fails 1 "empty upper directory '$U3'.*Input/output error" "a failed restore of a directory's times is an error" \
		$TRACED strace -f -qq -o /dev/null -e trace=utimensat -e inject=utimensat:error=EIO:when=$n \
		"$OCITREE" commit --upper "$U3" --image "$T/l:t2" --clear
	ok "the next commit finishes the clear" "$OCITREE" commit --upper "$U3" --image "$T/l:t3"
	is "and the upper directory is empty" "$(ls -A "$U3")" ""
else
	skip "a failed restore of a directory's times is an error" "strace cannot inject faults here"
fi

# rootless: virtual owners committed as the tree showed them
if have setpriv && have fusermount3 && [ -u "$(command -v fusermount3)" ]; then
	lend_fuse
	R=$T/rootless
	mkdir -p "$R/mnt" "$R/upper" "$R/cache"
	cp -a "$T/l" "$R/l"
	chown -R 65534:65534 "$R"
	nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups env OCITREE_CACHE_DIR="$R/cache" "$@"; }
	_mounts+=("$R/mnt")
	ok "rootless: mount writable" nobody "$OCITREE" mount --upper "$R/upper" --image "$R/l:base" "$R/mnt"
	nobody sh -c "echo x > '$R/mnt/etc/by-nobody' && chown 33:44 '$R/mnt/etc/hosts' && chmod 700 '$R/mnt/usr/bin/other' && rm '$R/mnt/etc/motd' && mkdir '$R/mnt/srv' && chown 1000:1000 '$R/mnt/srv'"
	ok "rootless: commit the live mount" nobody "$OCITREE" commit "$R/mnt" --image "$R/l:rl"
	ok "rootless: unmount" nobody "$OCITREE" umount "$R/mnt"
	ok "umoci unpacks the rootless commit" umoci unpack --image "$R/l:rl" "$T/bundle3"
	is "owners chowned in the mount" "$(stat -c %u:%g "$T/bundle3/rootfs/etc/hosts" "$T/bundle3/rootfs/srv" | tr '\n' ' ')" "33:44 1000:1000 "
	is "a new file belongs to root" "$(stat -c %u:%g "$T/bundle3/rootfs/etc/by-nobody")" "0:0"
	is "modes as set" "$(stat -c %a "$T/bundle3/rootfs/usr/bin/other")" "700"
	check "a removed file is gone" '[ ! -e "$T/bundle3/rootfs/etc/motd" ]'
	is "the image's owners are kept" "$(stat -c %u:%g "$T/bundle3/rootfs/home" 2>/dev/null)" "1000:1000"
else
	skip "rootless commit" "needs setpriv and a setuid fusermount3"
fi
done_testing
