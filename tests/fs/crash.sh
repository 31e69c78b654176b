#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Crash safety of writable mounts and commit.  strace kills the process
# (SIGKILL, injected before the syscall runs) at a sample of its writing
# syscalls, one point per run; strace is attached to the daemon once it
# has mounted, so that the points fall in the phase under test (strace
# counts calls per thread, and the daemon's set-up thread makes more calls
# than a worker makes in a session).  Each phase must really have been
# killed at every kind of call it makes; a TAP comment says how often.
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

# start the daemon in the foreground ($DAEMON: its pid)
start_daemon() {
	local m=$1 u=$2
	mkdir -p "$m"
	_mounts+=("$m")
	"$OCITREE" mount -f --upper "$u" --image "$T/l:base" "$m" >/dev/null 2>&1 &
	DAEMON=$!
	local i
	for i in $(seq 200); do
		is_mounted "$m" && return 0
		sleep 0.05
	done
	return 1
}
# attach OUT STRACE-OPTIONS...: trace the daemon from now on (every thread,
# and the threads it starts later); returns once every thread is traced,
# or the daemon is dead: a worker's blocked read of /dev/fuse (splice)
# restarts when strace attaches, and a kill at its first call fires then
attach() {
	local out=$1 i t all
	shift
	strace -f -qq -o "$out" "$@" -p "$DAEMON" >/dev/null 2>&1 &
	TRACER=$!
	for i in $(seq 200); do
		grep -qs '^State:[[:space:]]*[^Z]' "/proc/$DAEMON/status" || return 0
		all=1
		for t in /proc/"$DAEMON"/task/*/status; do
			grep -q '^TracerPid:[[:space:]]*[1-9]' "$t" 2>/dev/null || all=
		done
		[ -n "$all" ] && return 0
		sleep 0.05
	done
	return 1
}
# the daemon died (or is asked to go): detach the mount; $status is the
# daemon's exit status (137: it was killed)
stop_dead() {
	fusermount3 -u -z "$1" 2>/dev/null || umount -l "$1" 2>/dev/null
	status=0
	wait "$DAEMON" 2>/dev/null || status=$?
	wait "$TRACER" 2>/dev/null
}

SYSCALLS=renameat,renameat2,linkat,unlinkat,mknodat,mkdirat,openat,pwrite64,write,fsync,fsetxattr,setxattr,lsetxattr,fchownat,utimensat,ftruncate,copy_file_range,splice

# "SYSCALL K" lines: for each SYSCALL in TRACE, $POINTS kill points (see
# kill_sample)
kill_points() {
	local trace=$1 sc
	shift
	for sc in "$@"; do
		kill_sample "$(max_calls "$trace" "$sc")" "$POINTS" | sed "s/^/$sc /"
	done
}

# Counting the kills that happened: killed SYSCALL STATUS after each run,
# then tally_kills PHASE for the TAP comment and the check that every kind
# of call the phase makes was killed at least once.
declare -A sampled fired
killed() {
	sampled[$1]=$((${sampled[$1]:-0} + 1))
	[ "$2" -ne 137 ] || fired[$1]=$((${fired[$1]:-0} + 1))
}
tally_kills() {
	local phase=$1 sc n=0 unreached=0 line= unkilled=
	for sc in ${SYSCALLS//,/ }; do
		[ -n "${sampled[$sc]:-}" ] || continue
		n=$((n + ${fired[$sc]:-0}))
		unreached=$((unreached + ${sampled[$sc]} - ${fired[$sc]:-0}))
		line="$line, $sc ${fired[$sc]:-0}"
		[ "${fired[$sc]:-0}" -gt 0 ] || unkilled="$unkilled $sc"
	done
	[ "$n" -gt 0 ] || unkilled="$unkilled (no kill point at all)"
	diag "$phase: $n kill points (${line#, })$([ "$unreached" -eq 0 ] || echo "; $unreached sampled points not reached")"
	is "$phase: killed at least once at each kind of call it makes" "$unkilled" ""
	sampled=()
	fired=()
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
start_daemon "$M" "$U" && attach "$T/strace.count" -e trace=$SYSCALLS ||
	{ echo "Bail out! cannot mount and attach strace"; exit 1; }
session "$M"
sync
"$OCITREE" umount "$M"
wait
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
	start_daemon "$M" "$U" || { bad="$bad $sc#$k(mount)"; continue; }
	attach /dev/null -e trace=$sc -e inject=$sc:signal=KILL:when=$k || bad="$bad $sc#$k(attach)"
	session "$M"
	stop_dead "$M"
	killed "$sc" "$status"
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
done 3< <(kill_points "$T/strace.count" ${SYSCALLS//,/ })
is "a daemon killed at $runs points: the upper directory mounts, shows no half change, commits" "$bad" ""
tally_kills "daemon during changes"
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
$TRACED strace -f -qq -o "$T/strace.commit" -e trace=$SYSCALLS "$OCITREE" commit --upper "$U" --image "$T/l:new" --clear >/dev/null 2>&1
bad=
runs=0
while read -r sc k <&3; do
	runs=$((runs + 1))
	rm -rf "$T/l" "$U" "$U.work"
	cp -a "$T/pristine" "$T/l"
	cp -a "$T/cu-pristine" "$U"
	cp -a "$T/cu-pristine.work" "$U.work"
	status=0
	bash -c '"$@"; exit $?' _ $TRACED strace -f -qq -o /dev/null -e trace=$sc -e inject=$sc:signal=KILL:when=$k \
		"$OCITREE" commit --upper "$U" --image "$T/l:new" --clear >/dev/null 2>&1 || status=$?
	killed "$sc" "$status"
	after_clear_crash new || continue
	listing "$M" >"$T/tree2"
	diff -q "$T/tree" "$T/tree2" >/dev/null || bad="$bad $sc#$k(tree on $tag)"
	do_umount "$M"
	"$OCITREE" commit --upper "$U" --image "$T/l:again" >/dev/null 2>"$T/err" || bad="$bad $sc#$k(again: $(head -1 "$T/err"))"
done 3< <(kill_points "$T/strace.commit" ${SYSCALLS//,/ })
is "commit --clear killed at $runs points: layout valid, old tag intact, the tree kept, commit again works" "$bad" ""
tally_kills "commit --clear"
validated "oci-validate --full after the last one" "$T/l"

# the daemon killed during a live commit --clear (and its switch to the new
# image): the same promises
rm -rf "$T/l" && cp -a "$T/pristine" "$T/l"
cp -a "$T/l" "$T/pristine-live"
U=$T/lc
rm -rf "$U" "$U.work" && mkdir -p "$U"
start_daemon "$M" "$U" || { echo "Bail out! cannot mount"; exit 1; }
session "$M"
sync
attach "$T/strace.live" -e trace=$SYSCALLS || { echo "Bail out! cannot attach strace"; exit 1; }
"$OCITREE" commit "$M" --image "$T/l:live" --clear >/dev/null 2>"$T/err" || diag "live commit: $(cat "$T/err")"
"$OCITREE" umount "$M"
wait
bad=
runs=0
while read -r sc k <&3; do
	runs=$((runs + 1))
	rm -rf "$T/l" "$U" "$U.work"
	cp -a "$T/pristine-live" "$T/l"
	mkdir -p "$U"
	start_daemon "$M" "$U" || { bad="$bad $sc#$k(mount)"; continue; }
	session "$M"
	sync
	attach /dev/null -e trace=$sc -e inject=$sc:signal=KILL:when=$k || bad="$bad $sc#$k(attach)"
	"$OCITREE" commit "$M" --image "$T/l:live" --clear >/dev/null 2>&1
	stop_dead "$M"
	killed "$sc" "$status"
	after_clear_crash live || continue
	b=$(check_tree "$M")
	[ -z "$b" ] || bad="$bad $sc#$k(tree:$b)"
	do_umount "$M"
	"$OCITREE" commit --upper "$U" --image "$T/l:again" >/dev/null 2>"$T/err" || bad="$bad $sc#$k(again: $(head -1 "$T/err"))"
done 3< <(kill_points "$T/strace.live" renameat renameat2 unlinkat openat write fsync)
is "a daemon killed at $runs points of a live commit --clear: layout valid, old tag intact, the upper directory mounts and commits" "$bad" ""
tally_kills "daemon during a live commit --clear"
done_testing
