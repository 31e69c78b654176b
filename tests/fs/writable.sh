#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# ocitree mount --upper: a scripted session of changes on an image made at
# run time (files created, changed, deleted, renamed, chmod-ed, hardlinked,
# directories removed and made again), the upper directory it leaves in
# overlayfs form, and the same tree after a remount.
. "$top_srcdir/tests/fs/lib-fs.sh"
need_fuse
[ "$(id -u)" -eq 0 ] || skip_all "the overlayfs form with trusted xattrs needs root (rootless: rw-rootless.sh)"
have getfattr || skip_all "getfattr (attr) is needed to look at the upper directory"

$MKIMAGE "$T/l" img >/dev/null <<'SPEC' || { echo "Bail out! mkimage failed"; exit 1; }
layer gzip
dir etc
file etc/hosts 0644 0 0 text:127.0.0.1 localhost\n
file etc/passwd 0644 0 0 text:root:x:0:0:root:/root:/bin/sh\n
file etc/shadow 0640 0 42 text:root:*:19000::::::\n
dir etc/old
file etc/old/a text:a\n
dir etc/old/sub
file etc/old/sub/b text:b\n
dir usr
dir usr/bin
file usr/bin/tool 0755 0 0 random:3:300000
file usr/bin/other 0755 0 0 text:#!/bin/sh\necho other\n
hardlink usr/bin/other-link usr/bin/other
symlink usr/bin/tool-link tool
dir var
dir var/lib
dir var/lib/pkg
file var/lib/pkg/status text:installed\n
xattr user.note lower
dir opt
file opt/big 0644 0 0 random:5:3000000
layer gzip
file etc/motd text:hello\n
SPEC

M=$T/mnt U=$T/upper
mkdir -p "$U"
ok "mount writable" do_mount "$M" --upper "$U" --image "$T/l:img"
is "findmnt shows a writable fuse.ocitree" "$(findmnt -n -o FSTYPE,OPTIONS "$M" | grep -o '^fuse.ocitree rw')" "fuse.ocitree rw"
check "the work directory is next to the upper directory" '[ -f "$U.work/ocitree-upper.json" ]'
is "the record names the image and the format" \
	"$(jq -r '[.tag, .whiteout, .xattrs, .owners] | join(" ")' "$U.work/ocitree-upper.json")" "img chardev trusted real"
check "a fresh upper directory is empty" '[ -z "$(ls -A "$U")" ]'
ino_hosts=$(stat -c %i "$M/etc/hosts")
ino_tool=$(stat -c %i "$M/usr/bin/tool")

# the session
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
touch -d @1600000000 "$M/etc/shadow"
printf 'X' | dd of="$M/opt/big" bs=1 seek=1000000 conv=notrunc status=none

listing() { (cd "$1" && find . -mindepth 1 -printf '%y %m %U:%G %s %n %i %p -> %l\n' | LC_ALL=C sort -k7); }
listing "$M" >"$T/before"
sum() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); }
sum "$M" >"$T/sums-before"

is "an appended image file" "$(cat "$M/etc/hosts")" "$(printf '127.0.0.1 localhost\n10.0.0.1 db')"
is "st_ino stays across copy-up" "$(stat -c %i "$M/etc/hosts")" "$ino_hosts"
is "st_ino stays across rename" "$(stat -c %i "$M/usr/bin/tool2")" "$ino_tool"
is "chown of an image file" "$(stat -c %u:%g "$M/usr/bin/tool2")" "7:8"
is "a hardlink to an image file" "$(stat -c '%h %i' "$M/etc/hosts.hard")" "2 $ino_hosts"
is "the image hardlink keeps 2 names" "$(stat -c %h "$M/usr/bin/other")" "2"
check "a removed image file is gone" '[ ! -e "$M/etc/motd" ]'
is "a removed and remade directory shows only what is new" "$(ls -A "$M/etc/old")" "fresh"
is "a renamed image directory keeps its files and xattrs" "$(getfattr --only-values -n user.note "$M/var/lib/pkg.bak/status")" "lower"
is "a directory made where one was renamed away is new" "$(ls -A "$M/var/lib/pkg")" "new"
is "a write in the middle of a big image file" "$(dd if="$M/opt/big" bs=1 skip=1000000 count=1 status=none)" "X"
is "the rest of it is the image's" "$(head -c 1000000 "$M/opt/big" | sha256sum | cut -d' ' -f1)" \
	"$($MKIMAGE --content random:5:3000000 | head -c 1000000 | sha256sum | cut -d' ' -f1)"
fails 1 "Invalid argument" "a name starting with .wh. cannot be made (layers reserve it)" touch "$M/etc/.wh.x"
long=$(printf 'x%.0s' $(seq 256))
fails 1 "File name too long" "a 256-byte name is ENAMETOOLONG" touch "$M/etc/$long"

# the upper directory: overlayfs form
is "a removed image file is a 0/0 character device" "$(stat -c '%F %t:%T' "$U/etc/motd")" "character special file 0:0"
is "a directory made over a removed one is opaque" "$(getfattr --only-values -n trusted.overlay.opaque "$U/etc/old")" "y"
check "a metadata change copies no data (metacopy)" 'getfattr -n trusted.overlay.metacopy "$U/etc/passwd" >/dev/null 2>&1'
is "a metacopy file says where its data is" "$(getfattr --only-values -n trusted.overlay.redirect "$U/etc/passwd")" "/etc/passwd"
is "a metacopy file has the size" "$(stat -c %s "$U/usr/bin/tool2")" "300000"
check "but (almost) no blocks" '[ "$(stat -c %b "$U/usr/bin/tool2")" -lt 64 ]'
check "a written file is a full copy" '! getfattr -n trusted.overlay.metacopy "$U/etc/hosts" >/dev/null 2>&1'
is "a copied-up file remembers its origin" "$(getfattr --only-values -n trusted.overlay.ocitree.origin "$U/usr/bin/tool2")" "/usr/bin/tool"
is "the old name of a renamed file is a whiteout" "$(stat -c '%F %t:%T' "$U/usr/bin/tool")" "character special file 0:0"
is "a renamed image directory is opaque" "$(getfattr --only-values -n trusted.overlay.opaque "$U/var/lib/pkg.bak")" "y"
is "user xattrs are the user's" "$(getfattr --only-values -n user.added "$U/etc/passwd")" "yes"
check "an untouched directory is not copied up" '[ ! -e "$U/opt/empty" ] && [ ! -e "$U/usr/bin/other" ]'
check "a copied-up directory keeps the image's mtime" '[ "$(stat -c %Y "$U/usr")" = "1700000000" ]'
check "nothing is left in the work directory but the record and the control socket" '[ "$(ls -A "$U.work" | tr "\n" " ")" = "control ocitree-upper.json " ]'

# the same tree after a remount
mkdir -p "$T/mnt2"
fails 1 "in use" "the upper directory cannot be mounted twice" "$OCITREE" mount --upper "$U" --image "$T/l:img" "$T/mnt2"
ok "unmount" do_umount "$M"
ok "mount the upper directory again" do_mount "$M" --upper "$U" --image "$T/l:img"
listing "$M" >"$T/after"
sum "$M" >"$T/sums-after"
check "the remounted tree is the same: types, modes, owners, sizes, links, inode numbers" 'diff "$T/before" "$T/after" >&2'
check "and the same contents" 'diff "$T/sums-before" "$T/sums-after" >&2'
ok "unmount" do_umount "$M"

# a metacopy file made longer while unmounted reads zeros past the image's
# data, as its copy-up and a commit fill it
truncate -s 300100 "$U/usr/bin/tool2"
ok "mount after a metacopy file was made longer" do_mount "$M" --upper "$U" --image "$T/l:img"
is "it has the longer size" "$(stat -c %s "$M/usr/bin/tool2")" "300100"
is "a read gets all of it" "$(wc -c <"$M/usr/bin/tool2")" "300100"
is "the image's data first" "$(head -c 300000 "$M/usr/bin/tool2" | sha256sum | cut -d' ' -f1)" \
	"$($MKIMAGE --content random:3:300000 | sha256sum | cut -d' ' -f1)"
is "then zeros" "$(tail -c 100 "$M/usr/bin/tool2" | tr -d '\0' | wc -c)" "0"
# the page cache zero-fills a short read: O_DIRECT sees what the daemon says
is "a direct read across the end of the image's data gets the zeros" \
	"$(dd if="$M/usr/bin/tool2" iflag=direct bs=4096 skip=73 status=none | wc -c)" "1092"
ok "unmount" do_umount "$M"
truncate -s 300000 "$U/usr/bin/tool2"

# another image under the same upper directory is refused while it holds changes
$MKIMAGE "$T/l" other >/dev/null <<'SPEC'
layer gzip
file x text:x
SPEC
fails 1 "holds changes to image" "an upper directory with changes to another image is refused" \
	"$OCITREE" mount --upper "$U" --image "$T/l:other" "$M"
fails 2 "cannot be used with --layer" "--upper with --layer" "$OCITREE" mount --layer 1 --upper "$U" --image "$T/l:img" "$M"
fails 2 "needs --upper" "--workdir without --upper" "$OCITREE" mount --workdir "$T/w" --image "$T/l:img" "$M"

# an explicit work directory, and the fallback forms of whiteouts and opaque directories
U2=$T/u2 W2=$T/w2
mkdir -p "$U2"
ok "mount with --workdir and -o whiteout=file,xattrs=none" do_mount "$M" -o whiteout=file,xattrs=none \
	--upper "$U2" --workdir "$W2" --image "$T/l:img"
rm "$M/etc/motd"
rm -r "$M/etc/old"
mkdir "$M/etc/old"
chmod 600 "$M/etc/passwd"
check "a whiteout is a .wh. file" '[ -f "$U2/etc/.wh.motd" ] && [ ! -e "$U2/etc/motd" ]'
check "an opaque directory holds .wh..wh..opq" '[ -f "$U2/etc/old/.wh..wh..opq" ]'
check "without xattrs there is no metacopy: the data is copied" '[ "$(stat -c %b "$U2/etc/passwd")" -gt 0 ]'
check "the markers do not show" '! ls -A "$M/etc" | grep -q wh && [ -z "$(ls -A "$M/etc/old")" ]'
is "the record is in the work directory" "$(jq -r '.whiteout + " " + .xattrs' "$W2/ocitree-upper.json")" "file none"
ok "unmount" do_umount "$M"
fails 2 "another format" "the format of an upper directory cannot change" \
	"$OCITREE" mount -o xattrs=trusted --upper "$U2" --workdir "$W2" --image "$T/l:img" "$M"
ok "mount it again" do_mount "$M" --upper "$U2" --workdir "$W2" --image "$T/l:img"
check "still removed" '[ ! -e "$M/etc/motd" ] && [ -z "$(ls -A "$M/etc/old")" ]'
ok "unmount" do_umount "$M"

# the copy-up journal of a hardlinked file (what a crash between linking its
# names leaves) is finished at mount time; one whose paths lead out of the
# upper directory must link nothing from there
U3=$T/upper3
mkdir -p "$U3" "$T/outside"
echo secret >"$T/outside/secret"
ok "mount a fresh upper directory" do_mount "$M" --upper "$U3" --image "$T/l:img"
ok "unmount" do_umount "$M"
printf '/../outside/secret\0/usr/bin/other-link\0' >"$U3.work/copyup-links"
ok "mount it on a journal that leads out of it" do_mount "$M" --upper "$U3" --image "$T/l:img"
is "nothing from outside shows" "$(cat "$M/usr/bin/other-link")" "$(printf '#!/bin/sh\necho other')"
check "nothing outside was linked" '[ "$(stat -c %h "$T/outside/secret")" = 1 ] && [ -z "$(ls -A "$U3")" ]'
check "the journal is gone" '[ ! -e "$U3.work/copyup-links" ]'
ok "unmount" do_umount "$M"

# a daemon killed between the names of a hardlinked file: the names are
# apart in the upper directory until a mount links the rest; committed
# before, they would be two files in the image
ok "mount" do_mount "$M" --upper "$U3" --image "$T/l:img"
chmod 700 "$M/usr/bin/other"
ok "unmount" do_umount "$M"
rm "$U3/usr/bin/other-link"
printf '/usr/bin/other\0/usr/bin/other-link\0' >"$U3.work/copyup-links"
fails 1 "left half done.*mount it" "commit refuses a copy-up left half done" \
	"$OCITREE" commit --upper "$U3" --image "$T/l:half"
ok "a mount finishes it" do_mount "$M" --upper "$U3" --image "$T/l:img"
is "the two names are one file again" "$(stat -c '%i %h %a' "$M/usr/bin/other-link")" \
	"$(stat -c '%i %h %a' "$M/usr/bin/other")"
ok "unmount" do_umount "$M"
ok "then it commits" "$OCITREE" commit --upper "$U3" --image "$T/l:half"
ok "and unpacks" "$OCITREE" unpack --image "$T/l:half" "$T/half"
is "with the two names one file" "$(stat -c '%i %h %a' "$T/half/rootfs/usr/bin/other-link")" \
	"$(stat -c '%i 2 700' "$T/half/rootfs/usr/bin/other")"

done_testing
