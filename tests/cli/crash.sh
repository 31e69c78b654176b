#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Crash consistency: every command that writes is killed (SIGKILL, injected
# by strace before the syscall runs) at its openat, write, fsync, renameat
# and unlinkat calls (and fdatasync, renameat2, should it start making
# them) in turn; after each kill the layout must pass fsck --full, every
# tag that existed must still resolve, and running the command again must
# work. Each command must really have been killed at every kind of call
# it makes: a TAP comment per command says how often. Then a full disk:
# the same commands on a tiny tmpfs.
. "$top_srcdir/tests/lib.sh"
have strace || skip_all "strace is not installed"
strace -qq -e trace=getpid -e inject=getpid:retval=1 true 2>/dev/null || skip_all "strace cannot inject faults here (ptrace not permitted)"

# run a command that will be killed, without the shell's "Killed" notice;
# its status is 137 when the kill happened
killrun() { bash -c '"$@"; exit $?' _ "$@" >/dev/null 2>&1; }
SYSCALLS="openat write fsync fdatasync renameat renameat2 unlinkat"
MAX_POINTS=${OCITREE_CRASH_POINTS:-25} # kill points sampled per syscall and command
# the pristine state every run starts from: a layout (with an unreferenced
# image for gc to find), a bundle unpacked from it and changed, a directory
# to insert and a tar to add
P=$T/pristine
mkdir -p "$P/src/sub" && echo inserted >"$P/src/sub/file" &&
	tar -C "$P/src" -cf "$P/layer.tar" . &&
	$OCITREE init --layout "$P/l" && $OCITREE new --image "$P/l:a" && $OCITREE config --image "$P/l:a" --config.cmd sh &&
	$OCITREE insert --image "$P/l:a" "$P/src" /opt/src &&
	$OCITREE tag --image "$P/l:a" b && $OCITREE new --image "$P/l:orphan" && $OCITREE rm --image "$P/l:orphan" &&
	$OCITREE unpack --image "$P/l:a" "$P/bundle" >/dev/null &&
	echo changed >"$P/bundle/rootfs/opt/src/sub/file" && echo new >"$P/bundle/rootfs/newfile" || exit 1
# and a tag m naming an image index (a and an s390x image), as skopeo copy
# --all writes it, for the writes of one platform
if have jq; then
	$OCITREE new --image "$P/l:z" && $OCITREE config --image "$P/l:z" --platform.arch s390x || exit 1
	entry() { jq -c --arg t "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$t) | del(.annotations)' "$P/l/index.json"; }
	arch=$($OCITREE stat --image "$P/l:a" --json | jq -r .config.blob.architecture)
	jq -cn --argjson a "$(entry a)" --argjson z "$(entry z)" --arg arch "$arch" '{schemaVersion: 2,
		mediaType: "application/vnd.oci.image.index.v1+json",
		manifests: [$a + {platform: {architecture: $arch, os: "linux"}}, $z + {platform: {architecture: "s390x", os: "linux"}}]}' |
		tr -d '\n' >"$T/index"
	d=$(sha256sum <"$T/index" | cut -d' ' -f1)
	cp "$T/index" "$P/l/blobs/sha256/$d"
	jq -c --arg d "sha256:$d" --argjson s "$(stat -c %s "$T/index")" '.manifests += [{mediaType: "application/vnd.oci.image.index.v1+json",
		digest: $d, size: $s, annotations: {"org.opencontainers.image.ref.name": "m"}}]' "$P/l/index.json" >"$T/ij" &&
		mv "$T/ij" "$P/l/index.json" && $OCITREE rm --image "$P/l:z" || exit 1
fi
fresh() { rm -rf "$1" && cp -a "$P" "$1" && L=$1/l B=$1/bundle S=$1/src TAR=$1/layer.tar; }

# name | tags that must survive | command (L is the layout, B a bundle,
# S a directory, TAR a tar file)
commands=(
	"tag|a b|tag --image \$L:a c"
	"config|a b|config --image \$L:a --config.env X=1 --author crash"
	"config --tag|a b|config --image \$L:b --tag d --config.label l=v"
	"new|a b|new --image \$L:e"
	"rm|a|rm --image \$L:b"
	"gc|a b|gc --layout \$L"
	"repack|a b|repack --image \$L:a \$B"
	"repack --refresh-bundle|a b|repack --refresh-bundle --image \$L:b \$B"
	"insert|a b|insert --image \$L:a \$S /srv/copy"
	"raw add-layer|a b|raw add-layer --image \$L:b \$TAR"
)
have jq && commands+=("config --platform (into an index)|a b m|config --image \$L:m --platform linux/s390x --config.env X=1")
points_total=0
for entry in "${commands[@]}"; do
	IFS='|' read -r name keep cmd <<<"$entry"
	fresh "$T/count"
	if ! $TRACED strace -f -qq -o "$T/trace" -e trace=${SYSCALLS// /,} $OCITREE $(eval echo "$cmd") >/dev/null 2>"$T/count.err"
	then
		is "$name: runs under strace" "$(head -1 "$T/count.err")" ""
		continue
	fi
	bad=
	n=0
	tally=
	unkilled=
	unreached=0
	for sc in $SYSCALLS; do
		max=$(max_calls "$T/trace" "$sc")
		[ "$max" -gt 0 ] || continue
		fired=0
		for k in $(kill_sample "$max" "$MAX_POINTS"); do
			fresh "$T/run"
			s=0
			killrun $TRACED strace -f -qq -o /dev/null -e trace=$sc -e inject=$sc:signal=KILL:when=$k $OCITREE $(eval echo "$cmd") || s=$?
			if [ "$s" -eq 137 ]; then
				fired=$((fired + 1))
			else
				unreached=$((unreached + 1))
			fi
			if ! $OCITREE fsck --full --layout "$L" >"$T/fsck.out" 2>&1; then
				bad="$bad $sc#$k(fsck: $(grep -m1 problem "$T/fsck.out" || tail -1 "$T/fsck.out"))"
				continue
			fi
			for t in $keep; do
				$OCITREE stat --image "$L:$t" >/dev/null 2>&1 || bad="$bad $sc#$k(tag $t lost)"
			done
			# and the interrupted work can be done again (rm may have
			# removed its tag before it was killed)
			if ! $OCITREE $(eval echo "$cmd") >/dev/null 2>"$T/rerun.err" && [ "$name" != rm ]; then
				bad="$bad $sc#$k(rerun: $(head -1 "$T/rerun.err"))"
			elif ! $OCITREE fsck --layout "$L" >/dev/null 2>&1; then
				bad="$bad $sc#$k(fsck after rerun)"
			fi
		done
		n=$((n + fired))
		tally="$tally, $sc $fired"
		[ "$fired" -gt 0 ] || unkilled="$unkilled $sc"
	done
	[ "$n" -gt 0 ] || unkilled="$unkilled (no kill point at all)"
	diag "$name: $n kill points (${tally#, })$([ "$unreached" -eq 0 ] || echo "; $unreached sampled points not reached")"
	points_total=$((points_total + n))
	is "$name: layout valid, tags intact and the command repeatable after each of $n kill points" "$bad" ""
	is "$name: killed at least once at each kind of call it makes" "$unkilled" ""
done
diag "$points_total kill points survived"

# after a crash, gc removes what the killed command left behind
fresh "$T/leftover"
killrun $TRACED strace -f -qq -o /dev/null -e trace=renameat -e inject=renameat:signal=KILL:when=2 \
	$OCITREE config --image "$L:a" --author x
check "a killed command leaves temporary files" '[ -n "$(find "$L" -name ".ocitree-tmp.*")" ]'
ok "gc after the crash" $OCITREE gc --layout "$L"
check "gc removed them" '[ -z "$(find "$L" -name ".ocitree-tmp.*")" ]'
validated "oci-validate --full after the crash and gc" "$L"

# a full disk: a tiny tmpfs with 0 to 3 pages free
if [ "$(id -u)" -eq 0 ] && mkdir "$T/small" && mount -t tmpfs -o size=1m tmpfs "$T/small" 2>/dev/null; then
	at_exit "umount '$T/small'"
	bad=
	enospc=0
	for free in 0 1 2 3; do
		rm -rf "$T/small/filler"
		fresh "$T/small/p" || { bad="$bad copy"; break; }
		dd if=/dev/zero of="$T/small/filler" bs=4k status=none 2>/dev/null || true
		[ "$free" -gt 0 ] && truncate -s "-$((free * 4096))" "$T/small/filler"
		for entry in "${commands[@]}"; do
			IFS='|' read -r name keep cmd <<<"$entry"
			if ! $OCITREE $(eval echo "$cmd") >/dev/null 2>"$T/err"; then
				if grep -q "No space left on device" "$T/err"; then
					enospc=$((enospc + 1))
				else
					bad="$bad $name@$free(unexpected: $(head -1 "$T/err"))"
				fi
			fi
			$OCITREE fsck --layout "$L" >/dev/null 2>&1 || bad="$bad $name@$free(fsck)"
			for t in $keep; do
				$OCITREE stat --image "$L:$t" >/dev/null 2>&1 || bad="$bad $name@$free(tag $t lost)"
			done
		done
		[ -z "$(find "$L" -name '.ocitree-tmp.*')" ] || bad="$bad tmp-left@$free"
	done
	is "a full disk: every command fails cleanly or succeeds, nothing is lost" "$bad" ""
	check "the disk really was full for some ($enospc failed with ENOSPC)" '[ "$enospc" -gt 0 ]'
	diag "$enospc commands failed with ENOSPC"
else
	skip "a full disk" "needs root to mount a small tmpfs"
fi
done_testing
