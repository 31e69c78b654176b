#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# ocitree mount as an unprivileged user, through the setuid fusermount3:
# mount, read, unmount with `ocitree umount`.  Run as root, the test drops to
# nobody (setpriv) and lends it /dev/fuse for the duration of the test.
. "$top_srcdir/tests/fs/lib-fs.sh"
need_fuse
have fusermount3 || skip_all "fusermount3 is not installed"
[ -u "$(command -v fusermount3)" ] || skip_all "fusermount3 is not setuid root: unprivileged mounts are impossible"

as_user=()
if [ "$(id -u)" -eq 0 ]; then
	have setpriv || skip_all "setpriv is needed to drop privileges"
	as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$T/home" OCITREE_CACHE_DIR="$T/cache-user")
	# nobody must reach the binary under test
	setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$OCITREE" ||
		skip_all "$OCITREE is not executable by an unprivileged user"
	lend_fuse
	mkdir -p "$T/home" "$T/cache-user"
	chown 65534:65534 "$T/home" "$T/cache-user"
fi

$MKIMAGE "$T/l" img >/dev/null <<'SPEC' || { echo "Bail out! mkimage failed"; exit 1; }
layer gzip
dir etc
file etc/motd text:hello from the image\n
file etc/secret 0600 0 0 text:root only\n
file big 0644 0 0 random:5:3000000
file owned 0644 1000 1000 text:x
layer zstd
whiteout etc/motd
file etc/motd2 text:second\n
SPEC
chmod -R a+rX "$T/l"
M=$T/mnt
mkdir -p "$M"
[ "$(id -u)" -eq 0 ] && chown 65534:65534 "$M"
_mounts+=("$M")
user() { "${as_user[@]}" "$@"; }

ok "unprivileged mount" user "$OCITREE" mount --image "$T/l:img" "$M"
check "it is mounted" is_mounted "$M"
is "the mount belongs to the user" "$(findmnt -n -o OPTIONS "$M" | grep -o 'user_id=[0-9]*')" "user_id=$(user id -u)"
is "the user reads the merged tree" "$(user cat "$M/etc/motd2")" "second"
check "whiteout applied" '! user test -e "$M/etc/motd"'
is "owners are the image's" "$(user stat -c %u:%g "$M/owned")" "1000:1000"
is "big file" "$(user sha256sum "$M/big" | cut -d' ' -f1)" "$($MKIMAGE --content random:5:3000000 | sha256sum | cut -d' ' -f1)"
if [ "$(id -u)" -eq 0 ]; then
	fails 1 "Permission denied" "the image's modes are enforced" user cat "$M/etc/secret"
	check "other users cannot see the mount (no allow_other)" '! ls "$M/etc" >/dev/null 2>&1'
fi
ok "unprivileged unmount" user "$OCITREE" umount "$M"
for i in $(seq 100); do is_mounted "$M" || break; sleep 0.05; done
check "unmounted" '! is_mounted "$M"'

done_testing
