#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# mount(8) integration: `mount -t fuse.ocitree LAYOUT:TAG DIR -o ...` and an
# fstab line of type fuse.ocitree, through the mount.fuse.ocitree helper.
. "$top_srcdir/tests/fs/lib-fs.sh"
need_fuse
[ "$(id -u)" -eq 0 ] || skip_all "mount(8) runs helpers from /sbin: needs root"
have mount || skip_all "mount(8) is not installed"
helper=/sbin/mount.fuse.ocitree
made_link=
if [ -e "$helper" ] || [ -L "$helper" ]; then
	[ "$(readlink -f "$helper")" = "$(readlink -f "$OCITREE")" ] ||
		skip_all "$helper belongs to another ocitree; not replacing it"
else
	ln -s "$(readlink -f "$OCITREE")" "$helper" || skip_all "cannot install $helper"
	at_exit "rm -f '$helper'"
	made_link=1
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
check "the helper's own option went to ocitree (cache_dir)" '[ -d "$T/cache1/index-v2" ]'
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

# Without the link, mount.fuse3 takes the mount and runs `ocitree SOURCE
# MOUNTPOINT -o OPTIONS` (what it passes after dropping nofail and _netdev;
# mount(8) drops noauto and x-*)
ok "ocitree SOURCE MOUNTPOINT -o OPTIONS (mount.fuse3's call)" \
	"$OCITREE" "$L:app" "$mp" -o ro,layer=2,cache_dir="$T/cache3",dev,suid
is "mounts the image with ocitree's options" "$(ls "$mp/etc")" second
is "as fuse.ocitree" "$(findmnt -n -o SOURCE,FSTYPE -M "$mp" | tr -s ' ')" "$L:app fuse.ocitree"
ok "umount" umount "$mp"
fails 2 "unknown command 'nope'" "a word that is neither a command nor an image stays an unknown command" \
	"$OCITREE" nope "$mp"

# After a plain `./configure && make && make install`: mount -t fuse.ocitree
# and an fstab line work, with the link make install puts in /sbin and,
# without it, through mount.fuse3.  This installs into /usr/local for real:
# only under CI=true, only where none of the files it writes exists, and
# `make uninstall` (and the removal of the directories it made) afterwards.
prefix=$(sed -n 's/^prefix = //p' "$top_builddir/Makefile")
real_install() {
	[ -z "$made_link" ] || rm -f "$helper"
	make -s -C "$top_builddir" install DESTDIR="$T/probe" >/dev/null 2>&1 || return 1
	files=$(cd "$T/probe" && find . ! -type d | sed 's/^\.//')
	dirs=$(cd "$T/probe" && find . -mindepth 1 -type d | sed 's/^\.//' | LC_ALL=C sort -r)
	local f d clash=
	for f in $files; do
		if [ -e "$f" ] || [ -L "$f" ]; then clash="$clash $f"; fi
	done
	if [ -n "$clash" ]; then
		skip "a real make install, then mount -t fuse.ocitree" "already installed here:$clash"
		return 0
	fi
	newdirs=
	for d in $dirs; do [ -d "$d" ] || newdirs="$newdirs $d"; done
	at_exit 'make -s -C "$top_builddir" uninstall >/dev/null 2>&1; for d in $newdirs; do rmdir "$d" 2>/dev/null; done'
	ok "make install (prefix $prefix)" make -s -C "$top_builddir" install
	is "the helper is in /sbin, a link to the installed ocitree" "$(readlink "$helper")" "$prefix/bin/ocitree"
	ok "mount -t fuse.ocitree after make install" mount -t fuse.ocitree "$L:app" "$mp" -o cache_dir="$T/cache4"
	is "the image is there" "$(cat "$mp/etc/motd" 2>/dev/null)" "hello from a helper"
	ok "umount" umount "$mp"
	ok "an fstab line after make install" mount -T "$T/fstab" "$mp"
	is "with its options (layer=2)" "$(ls "$mp/etc" 2>/dev/null)" second
	ok "umount" umount "$mp"
	if [ -x /sbin/mount.fuse3 ] || [ -x /sbin/mount.fuse ]; then
		rm -f "$helper"
		ok "without the /sbin link: mount -t fuse.ocitree through mount.fuse3" \
			mount -t fuse.ocitree "$L:app" "$mp" -o cache_dir="$T/cache4"
		is "the image is there" "$(cat "$mp/etc/motd" 2>/dev/null)" "hello from a helper"
		ok "umount" umount "$mp"
		ok "and the fstab line" mount -T "$T/fstab" "$mp"
		is "with its options (layer=2)" "$(ls "$mp/etc" 2>/dev/null)" second
		ok "umount" umount "$mp"
	else
		skip "without the /sbin link: mount -t fuse.ocitree through mount.fuse3" "no mount.fuse3 in /sbin"
	fi
	ok "make uninstall" make -s -C "$top_builddir" uninstall
	for d in $newdirs; do rmdir "$d" 2>/dev/null; done
	local left=
	for f in $files $newdirs; do
		if [ -e "$f" ] || [ -L "$f" ]; then left="$left $f"; fi
	done
	is "nothing of the installation is left" "$left" ""
}
if [ "${CI:-}" != true ]; then
	skip "a real make install, then mount -t fuse.ocitree" "installs into $prefix: only under CI=true"
elif [ "$prefix" != /usr/local ]; then
	skip "a real make install, then mount -t fuse.ocitree" "configured for the prefix $prefix, not the default"
elif ! real_install; then
	_result 1 "a real make install, then mount -t fuse.ocitree"
	diag "make install DESTDIR=$T/probe failed"
fi
done_testing
