# SPDX-License-Identifier: Apache-2.0
# Helpers for the mount tests, on top of tests/lib.sh.
#   . "$top_srcdir/tests/fs/lib-fs.sh"
. "$top_srcdir/tests/lib.sh"
MKIMAGE="/usr/bin/python3 $top_srcdir/tests/fs/mkimage.py"
COMPARE_TREE="$top_srcdir/bench/compare-tree.sh"
export OCITREE_CACHE_DIR="$T/cache"

# Skip the whole test where FUSE cannot work at all: no /dev/fuse, or no
# way to mount (not root and no setuid fusermount3).
need_fuse() {
	[ -c /dev/fuse ] || skip_all "no /dev/fuse on this machine"
	if [ "$(id -u)" -ne 0 ]; then
		[ -r /dev/fuse ] && [ -w /dev/fuse ] || skip_all "/dev/fuse is not accessible to $(id -un)"
		have fusermount3 || skip_all "fusermount3 is not installed"
	fi
	have /usr/bin/python3 || skip_all "python3 is needed to build test images"
}

_mounts=()
_unmount_all() {
	local m
	for m in "${_mounts[@]}"; do
		if findmnt -n -M "$m" >/dev/null 2>&1; then
			fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		fi
	done
}
at_exit _unmount_all

# do_mount MOUNTPOINT ARGS...: ocitree mount ARGS MOUNTPOINT (daemon mode)
do_mount() {
	local mp=$1
	shift
	mkdir -p "$mp"
	_mounts+=("$mp")
	"$OCITREE" mount "$@" "$mp"
}

# do_umount MOUNTPOINT: unmount and wait until the kernel has let go
do_umount() {
	"$OCITREE" umount "$1" || return 1
	local i
	for i in $(seq 100); do
		is_mounted "$1" || return 0
		sleep 0.05
	done
	return 1
}

is_mounted() { findmnt -n -M "$1" >/dev/null 2>&1; }

sha() { sha256sum <"$1" | cut -d' ' -f1; }

# lend_fuse: let nobody (uid 65534) open /dev/fuse until the test ends.
# Tests that run at once (make -j) lend it together: each registers in
# a directory under a lock, and the last one to end puts the mode back
# (registrations of tests that were killed do not count).
_FUSE_LEND=/tmp/ocitree-test-fuse-lend
lend_fuse() {
	mkdir -p "$_FUSE_LEND"
	(
		flock 9
		_fuse_lenders_alive || stat -c %a /dev/fuse >"$_FUSE_LEND/mode"
		touch "$_FUSE_LEND/$$"
		chmod o+rw /dev/fuse
	) 9>"$_FUSE_LEND.lock"
	at_exit _unlend_fuse
}
_fuse_lenders_alive() { # true when a live test has lent /dev/fuse
	local f alive=1
	for f in "$_FUSE_LEND"/[0-9]*; do
		[ -e "$f" ] || continue
		if kill -0 "$(basename "$f")" 2>/dev/null; then alive=0; else rm -f "$f"; fi
	done
	return $alive
}
_unlend_fuse() {
	(
		flock 9
		rm -f "$_FUSE_LEND/$$"
		if ! _fuse_lenders_alive && [ -f "$_FUSE_LEND/mode" ]; then
			chmod "$(cat "$_FUSE_LEND/mode")" /dev/fuse
			rm -f "$_FUSE_LEND/mode"
		fi
	) 9>"$_FUSE_LEND.lock"
}
