#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# mount(8) integration: `mount -t fuse.ocitree LAYOUT:TAG DIR -o ...` and an
# fstab line of type fuse.ocitree, through the mount.fuse.ocitree helper.
. "$top_srcdir/tests/fs/lib-fs.sh"
need_fuse
[ "$(id -u)" -eq 0 ] || skip_all "mount(8) runs helpers from /sbin: needs root"
have mount || skip_all "mount(8) is not installed"
helper=/sbin/mount.fuse.ocitree
if [ -e "$helper" ] || [ -L "$helper" ]; then
	[ "$(readlink -f "$helper")" = "$(readlink -f "$OCITREE")" ] ||
		skip_all "$helper belongs to another ocitree; not replacing it"
else
	ln -s "$(readlink -f "$OCITREE")" "$helper" || skip_all "cannot install $helper"
	at_exit "rm -f '$helper'"
fi

L=$T/layout
$MKIMAGE "$L" app >/dev/null <<'SPEC' || exit 1
layer gzip
dir etc 755
file etc/motd 644 text:hello from a helper\n
layer gzip
file etc/second 600 text:two\n
SPEC
mp=$T/mnt
mkdir -p "$mp"
_mounts+=("$mp")

ok "mount -t fuse.ocitree" mount -t fuse.ocitree "$L:app" "$mp" -o allow_other,cache_dir="$T/cache1"
is "the image is there" "$(cat "$mp/etc/motd")" "hello from a helper"
is "findmnt shows its source and type" "$(findmnt -n -o SOURCE,FSTYPE -M "$mp" | tr -s ' ')" "$L:app fuse.ocitree"
check "the helper's own option went to ocitree (cache_dir)" '[ -d "$T/cache1/index-v1" ]'
check "allow_other reached FUSE" 'findmnt -n -o OPTIONS -M "$mp" | grep -q allow_other'
ok "umount" umount "$mp"

cat >"$T/fstab" <<EOF2
# an image mounted at boot would read like this
$L:app  $mp  fuse.ocitree  ro,noauto,nofail,x-systemd.automount,_netdev,layer=2,cache_dir=$T/cache2  0 0
EOF2
ok "mount through an fstab line" mount -T "$T/fstab" "$mp"
is "layer=2 shows only the second layer" "$(ls "$mp/etc")" second
check "fstab-only options were dropped" '! findmnt -n -o OPTIONS -M "$mp" | grep -Eq "noauto|nofail|x-systemd|_netdev"'
ok "umount" umount "$mp"

ok "mount with defaults (mount(8) passes rw)" mount -t fuse.ocitree "$L:app" "$mp" -o defaults,cache_dir="$T/cache2"
fails 1 "Read-only file system" "the mount is read-only" touch "$mp/new"
umount "$mp"
mkdir -p "$T/upper"
ok "a writable mount through mount(8): upper=" mount -t fuse.ocitree "$L:app" "$mp" -o upper="$T/upper",cache_dir="$T/cache2"
ok "write into it" sh -c "echo written >'$mp/etc/new'"
check "the change lands in the upper directory" '[ "$(cat "$T/upper/etc/new")" = written ]'
ok "commit the live mount" $OCITREE commit --image "$L:app2" "$mp"
ok "umount" umount "$mp"
ok "the committed image has the change" $OCITREE mount --cache-dir "$T/cache2" --image "$L:app2" "$mp"
is "its content" "$(cat "$mp/etc/new")" written
do_umount "$mp"
fails 1 "not found" "a missing tag fails the mount" mount -t fuse.ocitree "$L:nope" "$mp"
check "and nothing is mounted" '! findmnt -M "$mp" >/dev/null'
done_testing
