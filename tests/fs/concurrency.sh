#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Commits among many commands on one layout at once: two offline commits of
# upper directories, two live commits of writable mounts (one --clear) while
# readers read through them, and config, tag, rm, gc and ls beside them.
# Every command succeeds, no tag is lost, each commit holds its own change
# and only that, no blob of a live image is removed, the layout validates.
. "$top_srcdir/tests/fs/lib-fs.sh"
need_fuse
[ "$(id -u)" -eq 0 ] || skip_all "needs root (writable mounts keep owners)"

L=$T/l
$MKIMAGE "$L" base >/dev/null <<'SPEC' || { echo "Bail out! mkimage failed"; exit 1; }
layer gzip
dir etc
file etc/hosts 0644 0 0 text:127.0.0.1 localhost\n
dir opt
file opt/big 0644 0 0 random:7:2000000
SPEC
for i in $(seq 1 4); do "$OCITREE" tag --image "$L:base" "old$i" || exit 1; done

# four sessions: 1 and 2 committed offline, 3 and 4 live
for i in 1 2 3 4; do
	mkdir -p "$T/u$i"
	do_mount "$T/m$i" --upper "$T/u$i" --image "$L:base" || { echo "Bail out! mount $i"; exit 1; }
	echo "session $i" >"$T/m$i/etc/session"
	echo "10.0.0.$i host$i" >>"$T/m$i/etc/hosts"
	chmod 600 "$T/m$i/opt/big" # metadata only: the data stays in the layer
done
for i in 1 2; do do_umount "$T/m$i" || { echo "Bail out! unmount $i"; exit 1; }; done

pids=() names=()
run() { # NAME CMD...: in the background, its output in $T/log.NAME
	local name=$1
	shift
	"$@" >"$T/log.$name" 2>&1 &
	pids+=($!) names+=("$name")
}
run commit1 "$OCITREE" commit --upper "$T/u1" --image "$L:c1"
run commit2 "$OCITREE" commit --upper "$T/u2" --image "$L:c2" --compress zstd
run commit3 "$OCITREE" commit "$T/m3" --image "$L:c3"
run commit4 "$OCITREE" commit "$T/m4" --image "$L:c4" --clear
for i in $(seq 1 12); do
	run "cfg$i" "$OCITREE" config --image "$L:base" --tag "cfg$i" --config.env "I=$i"
	run "tag$i" "$OCITREE" tag --image "$L:base" "tag$i"
	run "ls$i" "$OCITREE" ls --layout "$L"
	[ "$i" -le 4 ] && run "rm$i" "$OCITREE" rm --image "$L:old$i"
	[ $((i % 6)) -eq 0 ] && run "gc$i" "$OCITREE" gc --layout "$L"
	# readers through the live mounts while they commit
	run "read$i" sh -c "cat '$T/m3/opt/big' '$T/m4/opt/big' '$T/m$((3 + i % 2))/etc/session' >/dev/null"
done
failed=
for k in "${!pids[@]}"; do wait "${pids[$k]}" || failed="$failed ${names[$k]}"; done
is "every concurrent command succeeded" "$failed" ""
for n in $failed; do diag "$n: $(head -c 500 "$T/log.$n")"; done
diag "${#pids[@]} commands at once"

missing=
for t in c1 c2 c3 c4 $(seq -f cfg%g 1 12) $(seq -f tag%g 1 12); do
	"$OCITREE" stat --image "$L:$t" >/dev/null 2>&1 || missing="$missing $t"
done
is "no tag was lost" "$missing" ""
is "every removed tag is gone" "$("$OCITREE" ls --layout "$L" | grep -c '^old')" 0
ok "a final gc" "$OCITREE" gc --layout "$L"
for i in 1 2 3 4; do
	ok "c$i unpacks" "$OCITREE" unpack --image "$L:c$i" "$T/b$i"
	is "c$i has its own session" "$(cat "$T/b$i/rootfs/etc/session")" "session $i"
	is "c$i has its own hosts line only" "$(grep -c "^10\\.0\\.0\\." "$T/b$i/rootfs/etc/hosts")/$(tail -1 "$T/b$i/rootfs/etc/hosts")" \
		"1/10.0.0.$i host$i"
	is "c$i keeps the layer's data under the new mode" \
		"$(stat -c %a "$T/b$i/rootfs/opt/big") $(sha "$T/b$i/rootfs/opt/big")" "600 $(sha "$T/m3/opt/big")"
done
is "the --clear mount still shows its tree" "$(cat "$T/m4/etc/session")" "session 4"
check "and its upper directory is empty again" '[ -z "$(ls -A "$T/u4")" ]'
for i in 3 4; do ok "unmount $i" do_umount "$T/m$i"; done
ok "fsck --full" "$OCITREE" fsck --full --layout "$L"
validated "oci-validate --full" "$L"
check "no temporary files are left" '[ -z "$(find "$L" -name ".ocitree-tmp.*")" ]'
done_testing
