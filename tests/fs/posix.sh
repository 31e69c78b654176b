#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The POSIX conformance suite (tests/fs/posix.c) on native directories, as a
# check of the suite itself, and on writable mounts of an image holding its
# fixture: the overlayfs form, the fallback forms, and rootless.
. "$top_srcdir/tests/fs/lib-fs.sh"
need_fuse
POSIX=$top_builddir/tests/fs/posix
[ -x "$POSIX" ] || skip_all "tests/fs/posix is not built"
[ "$(id -u)" -eq 0 ] || skip_all "the suite runs as root (and drops privileges for its permission tests)"

# run_suite DESC DIR [--fakeroot] [AS-USER...]: one TAP line for a whole run
run_suite() {
	local desc=$1 dir=$2 fake=$3
	shift 3
	if "$@" "$POSIX" $fake "$dir" >"$T/posix.out" 2>&1; then
		_result 0 "$desc ($(grep -c '^ok' "$T/posix.out") checks)"
	else
		_result 1 "$desc"
		diag "$(grep -v '^ok' "$T/posix.out" | head -40)"
	fi
}

"$POSIX" --fixture-spec | $MKIMAGE "$T/l" fx >/dev/null || { echo "Bail out! mkimage failed"; exit 1; }

"$POSIX" --make-fixture "$T/native" || { echo "Bail out! cannot make the fixture"; exit 1; }
run_suite "the suite passes on a native directory ($(stat -f -c %T "$T/native"))" "$T/native" ""
if mkdir "$T/tmpfs" && mount -t tmpfs tmpfs "$T/tmpfs" 2>/dev/null; then
	at_exit "umount '$T/tmpfs'"
	"$POSIX" --make-fixture "$T/tmpfs/d" && run_suite "the suite passes on tmpfs" "$T/tmpfs/d" ""
else
	skip "the suite on tmpfs" "cannot mount a tmpfs here"
fi

listing() { (cd "$1" && find . -mindepth 1 -printf '%y %m %U:%G %s %n %i %p -> %l\n' | LC_ALL=C sort -k7); }
# without xattrs, copied-up hardlinks and moved directories cannot record
# where they came from: their inode numbers may change across a remount
listing_noino() { listing "$1" | cut -d' ' -f1-5,7-; }
M=$T/mnt
for opts in "" "whiteout=file,xattrs=none" "xattrs=user"; do
	U=$T/upper-${opts:-default}
	mkdir -p "$U"
	ok "mount writable ${opts:+(-o $opts)}" do_mount "$M" -o "allow_other${opts:+,$opts}" --upper "$U" --image "$T/l:fx"
	run_suite "the suite passes on a writable mount ${opts:+(-o $opts)}" "$M" ""
	l=listing
	[ "$opts" = "whiteout=file,xattrs=none" ] && l=listing_noino
	$l "$M" >"$T/before"
	ok "unmount" do_umount "$M"
	ok "mount again" do_mount "$M" -o allow_other --upper "$U" --image "$T/l:fx"
	$l "$M" >"$T/after"
	check "what the suite left is the same after a remount" 'diff "$T/before" "$T/after" >&2'
	ok "unmount" do_umount "$M"
done

# rootless: virtual owners in user xattrs, the user acting as root
if have setpriv && have fusermount3 && [ -u "$(command -v fusermount3)" ] &&
	setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$POSIX"; then
	lend_fuse
	R=$T/rootless
	mkdir -p "$R/mnt" "$R/upper" "$R/cache"
	chown -R 65534:65534 "$R"
	chmod -R a+rX "$T/l"
	nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups env OCITREE_CACHE_DIR="$R/cache")
	_mounts+=("$R/mnt")
	ok "mount writable as an unprivileged user" "${nobody[@]}" "$OCITREE" mount --upper "$R/upper" --image "$T/l:fx" "$R/mnt"
	run_suite "the suite passes on a rootless writable mount (--fakeroot)" "$R/mnt" --fakeroot "${nobody[@]}"
	listing "$R/mnt" >"$T/before"
	ok "unmount" "${nobody[@]}" "$OCITREE" umount "$R/mnt"
	for i in $(seq 100); do is_mounted "$R/mnt" || break; sleep 0.05; done
	ok "mount again" "${nobody[@]}" "$OCITREE" mount --upper "$R/upper" --image "$T/l:fx" "$R/mnt"
	listing "$R/mnt" >"$T/after"
	check "the same after a remount" 'diff "$T/before" "$T/after" >&2'
	ok "unmount" "${nobody[@]}" "$OCITREE" umount "$R/mnt"
else
	skip "the suite on a rootless mount" "needs setpriv and a setuid fusermount3"
fi

done_testing
