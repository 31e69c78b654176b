#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Crash safety of writable mounts and commit.  strace kills the process
# (SIGKILL, injected before the syscall runs) at a sample of its writing
# syscalls, one point per run:
#   - the daemon, while a script of changes runs through the mount (copy-up
#     of metadata and of data, a renamed image directory, a removed name of
#     a hardlink, new files, a directory removed and made again): the upper
#     directory must mount again and show every file either as it was or as
#     it became, never half-copied; it must commit, and umoci's unpack of
#     that commit must equal the remounted tree;
#   - commit (offline, with --clear), and the daemon during a live commit
#     --clear: the layout must pass fsck with the old tag intact, the upper
#     directory must mount and show the tree, and commit again.
# OCITREE_CRASH_POINTS sets the points sampled per syscall (default 3).
. "$top_srcdir/tests/fs/lib-fs.sh"
need_fuse
[ "$(id -u)" -eq 0 ] || skip_all "needs root (the daemon runs under strace)"
have strace || skip_all "strace is not installed"
strace -qq -e trace=getpid -e inject=getpid:retval=1 true 2>/dev/null || skip_all "strace cannot inject faults here"
have umoci || skip_all "umoci is needed as the reference unpacker"
POINTS=${OCITREE_CRASH_POINTS:-3}

$MKIMAGE "$T/l" base >/dev/null <<'SPEC' || { echo "Bail out! mkimage failed"; exit 1; }
layer gzip
file a 0644 0 0 text:small file\n
file big 0644 0 0 random:8:2000000
file hl1 0644 0 0 text:hardlinked\n
hardlink hl2 hl1
dir d
file d/x text:x\n
dir d/sub
file d/sub/y text:y\n
file keep text:untouched\n
SPEC
big_sum=$($MKIMAGE --content random:8:2000000 | sha256sum | cut -d' ' -f1)
big_sum2=$({ $MKIMAGE --content random:8:2000000; echo x; } | sha256sum | cut -d' ' -f1)

# the changes, made through mountpoint $1; errors are expected once the
# daemon is dead
session() {
	local m=$1
	chmod 600 "$m/a"
	echo x >>"$m/big"
	mv "$m/d" "$m/d2"
	rm "$m/hl1"
	mkdir "$m/newdir" && echo n >"$m/newdir/f"
	rm -r "$m/d2/sub" && mkdir "$m/d2/sub"
	ln -s a "$m/link"
} 2>/dev/null

# check_tree MOUNTPOINT: every file is as it was or as it became
check_tree() {
	local m=$1 bad=
	[ "$(cat "$m/a")" = "small file" ] || bad="$bad a"
	case "$(stat -c %a "$m/a")" in 644 | 600) ;; *) bad="$bad a-mode" ;; esac
	case "$(sha256sum <"$m/big" | cut -d' ' -f1)" in "$big_sum" | "$big_sum2") ;; *) bad="$bad big" ;; esac
	if [ -e "$m/d" ] && [ -e "$m/d2" ]; then bad="$bad d-and-d2"; fi
	local d=$m/d
	[ -e "$d" ] || d=$m/d2
	[ "$(cat "$d/x" 2>/dev/null)" = "x" ] || bad="$bad x"
	if [ -e "$d/sub/y" ]; then [ "$(cat "$d/sub/y")" = "y" ] || bad="$bad y"; fi
	[ "$(cat "$m/hl2")" = "hardlinked" ] || bad="$bad hl2"
	if [ -e "$m/hl1" ]; then
		[ "$(cat "$m/hl1")" = "hardlinked" ] || bad="$bad hl1"
		# still one file with two names, however far its copy-up got
		[ "$(stat -c '%i %h' "$m/hl1")" = "$(stat -c '%i %h' "$m/hl2")" ] || bad="$bad hl-apart"
		[ "$(stat -c %h "$m/hl2")" = 2 ] || bad="$bad hl-nlink"
	else
		[ "$(stat -c %h "$m/hl2")" = 1 ] || bad="$bad hl2-nlink"
	fi
	if [ -e "$m/newdir/f" ]; then case "$(cat "$m/newdir/f")" in "" | n) ;; *) bad="$bad newdir/f" ;; esac; fi
	[ "$(cat "$m/keep")" = "untouched" ] || bad="$bad keep"
	[ -z "$(ls -A "$m" | grep -v -x -e a -e big -e d -e d2 -e hl1 -e hl2 -e newdir -e keep -e link)" ] || bad="$bad extra"
	echo "$bad"
}

# start the daemon in the foreground under strace ($@: strace options)
start_daemon() {
	local m=$1 u=$2
	shift 2
	mkdir -p "$m"
	_mounts+=("$m")
	strace -f -qq -o "$T/strace.out" "$@" "$OCITREE" mount -f --upper "$u" --image "$T/l:base" "$m" \
		>/dev/null 2>&1 &
	local i
	for i in $(seq 200); do
		is_mounted "$m" && return 0
		sleep 0.05
	done
	return 1
}
stop_dead() { # the daemon died (or is asked to go): detach the mount
	fusermount3 -u -z "$1" 2>/dev/null || umount -l "$1" 2>/dev/null
	wait 2>/dev/null
}

SYSCALLS=renameat,renameat2,linkat,unlinkat,mknodat,mkdirat,openat,pwrite64,write,fsync,fsetxattr,setxattr,lsetxattr,fchownat,utimensat,ftruncate,copy_file_range,splice

# "SYSCALL K" lines: for each SYSCALL, up to $POINTS of its calls in the
# strace output AFTER that come after the ones in BEFORE (/dev/null: all)
kill_points() {
	local before=$1 after=$2 sc total from
	shift 2
	for sc in "$@"; do
		total=$(grep -c "^[0-9]* *$sc(" "$after" || true)
		from=$(grep -c "^[0-9]* *$sc(" "$before" || true)
		[ "$total" -gt "$from" ] || continue
		seq $((from + 1)) "$total" | shuf -n "$POINTS" --random-source=<(yes) | sed "s/^/$sc /"
	done
}

# What a commit --clear killed at $sc#$k must leave: a valid layout, the
# base tag intact, and $U mounted at $M on the image its record names
# ($tag: NEWTAG when the commit got as far as switching to it, else base).
# Adds to $bad; false when it does not mount.
after_clear_crash() {
	"$OCITREE" fsck --layout "$T/l" >/dev/null 2>&1 || bad="$bad $sc#$k(fsck)"
	"$OCITREE" stat --image "$T/l:base" >/dev/null 2>&1 || bad="$bad $sc#$k(base lost)"
	tag=base
	[ "$(jq -r .manifest.digest "$U.work/ocitree-upper.json")" = \
		"$("$OCITREE" stat --image "$T/l:$1" --json 2>/dev/null | jq -r .manifest.descriptor.digest)" ] && tag=$1
	if ! do_mount "$M" --upper "$U" --image "$T/l:$tag" 2>"$T/err"; then
		bad="$bad $sc#$k(mount $tag: $(head -1 "$T/err"))"
		return 1
	fi
}

# count the daemon's syscalls during the session
M=$T/mnt
U=$T/count
mkdir -p "$U"
start_daemon "$M" "$U" -e trace=$SYSCALLS || { echo "Bail out! cannot mount under strace"; exit 1; }
sleep 0.3
: >"$T/strace.out.before"
cp "$T/strace.out" "$T/strace.out.before"
session "$M"
sync
"$OCITREE" umount "$M"
wait
cp "$T/strace.out" "$T/strace.count"
ok "mount the result" do_mount "$M" --upper "$U" --image "$T/l:base"
is "the whole session under strace: every change is there" \
	"$(check_tree "$M") $(stat -c %a "$M/a") $(ls -A "$M" | tr '\n' ' ')$(ls -A "$M/d2/sub" | wc -l) $(cat "$M/newdir/f")" \
	" 600 a big d2 hl2 keep link newdir 0 n"
ok "unmount" do_umount "$M"

bad=
runs=0
while read -r sc k <&3; do
	runs=$((runs + 1))
	U=$T/u-$sc-$k
	rm -rf "$U" "$U.work" && mkdir -p "$U"
	start_daemon "$M" "$U" -e trace=$sc -e inject=$sc:signal=KILL:when=$k || { bad="$bad $sc#$k(mount)"; continue; }
	session "$M"
	stop_dead "$M"
	if ! do_mount "$M" --upper "$U" --image "$T/l:base" 2>"$T/err"; then
		bad="$bad $sc#$k(remount: $(head -1 "$T/err"))"
		continue
	fi
	b=$(check_tree "$M")
	[ -z "$b" ] || bad="$bad $sc#$k(tree:$b)"
	do_umount "$M" || bad="$bad $sc#$k(umount)"
	if ! "$OCITREE" commit --upper "$U" --image "$T/l:c-$sc-$k" >/dev/null 2>"$T/err"; then
		bad="$bad $sc#$k(commit: $(head -1 "$T/err"))"
		continue
	fi
	rm -rf "$T/b"
	umoci unpack --image "$T/l:c-$sc-$k" "$T/b" >/dev/null 2>&1 || bad="$bad $sc#$k(umoci)"
	do_mount "$M" --upper "$U" --image "$T/l:base" 2>/dev/null
	"$COMPARE_TREE" "$T/b/rootfs" "$M" >/dev/null 2>&1 || bad="$bad $sc#$k(commit differs)"
	do_umount "$M"
done 3< <(kill_points "$T/strace.out.before" "$T/strace.count" ${SYSCALLS//,/ })
is "a daemon killed at $runs points: the upper directory mounts, shows no half change, commits" "$bad" ""
ok "fsck after all that" "$OCITREE" fsck --layout "$T/l"

# commit killed at each of its writing syscalls
U=$T/cu
mkdir -p "$U"
ok "mount" do_mount "$M" --upper "$U" --image "$T/l:base"
session "$M"
# (directory sizes depend on where a directory is: not compared)
listing() { (cd "$1" && find . -mindepth 1 -printf '%y %m %s %p -> %l\n' | awk '$1 == "d" { $3 = "-" } 1' | LC_ALL=C sort -k4); }
listing "$M" >"$T/tree"
ok "unmount" do_umount "$M"
(cd "$U" && find . | LC_ALL=C sort) >"$T/upper-before"
cp -a "$T/l" "$T/pristine"
cp -a "$U" "$T/cu-pristine"
cp -a "$U.work" "$T/cu-pristine.work"
strace -f -qq -o "$T/strace.commit" -e trace=$SYSCALLS "$OCITREE" commit --upper "$U" --image "$T/l:new" --clear >/dev/null 2>&1
bad=
runs=0
while read -r sc k <&3; do
	runs=$((runs + 1))
	rm -rf "$T/l" "$U" "$U.work"
	cp -a "$T/pristine" "$T/l"
	cp -a "$T/cu-pristine" "$U"
	cp -a "$T/cu-pristine.work" "$U.work"
	bash -c '"$@"; true' _ strace -f -qq -o /dev/null -e trace=$sc -e inject=$sc:signal=KILL:when=$k \
		"$OCITREE" commit --upper "$U" --image "$T/l:new" --clear >/dev/null 2>&1
	after_clear_crash new || continue
	listing "$M" >"$T/tree2"
	diff -q "$T/tree" "$T/tree2" >/dev/null || bad="$bad $sc#$k(tree on $tag)"
	do_umount "$M"
	"$OCITREE" commit --upper "$U" --image "$T/l:again" >/dev/null 2>"$T/err" || bad="$bad $sc#$k(again: $(head -1 "$T/err"))"
done 3< <(kill_points /dev/null "$T/strace.commit" ${SYSCALLS//,/ })
is "commit --clear killed at $runs points: layout valid, old tag intact, the tree kept, commit again works" "$bad" ""
validated "oci-validate --full after the last one" "$T/l"

# the daemon killed during a live commit --clear (and its switch to the new
# image): the same promises
rm -rf "$T/l" && cp -a "$T/pristine" "$T/l"
cp -a "$T/l" "$T/pristine-live"
U=$T/lc
rm -rf "$U" "$U.work" && mkdir -p "$U"
start_daemon "$M" "$U" -e trace=$SYSCALLS || { echo "Bail out! cannot mount under strace"; exit 1; }
session "$M"
sync
cp "$T/strace.out" "$T/strace.mid"
"$OCITREE" commit "$M" --image "$T/l:live" --clear >/dev/null 2>"$T/err" || diag "live commit: $(cat "$T/err")"
"$OCITREE" umount "$M"
wait
cp "$T/strace.out" "$T/strace.live"
bad=
runs=0
while read -r sc k <&3; do
	runs=$((runs + 1))
	rm -rf "$T/l" "$U" "$U.work"
	cp -a "$T/pristine-live" "$T/l"
	mkdir -p "$U"
	start_daemon "$M" "$U" -e trace=$sc -e inject=$sc:signal=KILL:when=$k || { bad="$bad $sc#$k(mount)"; continue; }
	session "$M"
	"$OCITREE" commit "$M" --image "$T/l:live" --clear >/dev/null 2>&1
	stop_dead "$M"
	after_clear_crash live || continue
	b=$(check_tree "$M")
	[ -z "$b" ] || bad="$bad $sc#$k(tree:$b)"
	do_umount "$M"
	"$OCITREE" commit --upper "$U" --image "$T/l:again" >/dev/null 2>"$T/err" || bad="$bad $sc#$k(again: $(head -1 "$T/err"))"
done 3< <(kill_points "$T/strace.mid" "$T/strace.live" renameat renameat2 unlinkat openat write fsync)
is "a daemon killed at $runs points of a live commit --clear: layout valid, old tag intact, the upper directory mounts and commits" "$bad" ""
done_testing
