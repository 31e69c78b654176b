#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Many commands on one layout at once (config, tag, rm, repack, insert, gc
# and readers): no tag is lost, no blob that a tag reaches is removed,
# index.json is never corrupt.
. "$top_srcdir/tests/lib.sh"

L=$T/layout
$OCITREE init --layout "$L" && $OCITREE new --image "$L:base" || exit 1
for i in $(seq 1 8); do $OCITREE tag --image "$L:base" "old$i" || exit 1; done
# bundles to repack at the same time
for i in 1 2 3 4; do
	$OCITREE unpack --image "$L:base" "$T/bundle$i" >/dev/null && echo "repacked $i" >"$T/bundle$i/rootfs/file$i" || exit 1
done

N=${OCITREE_CONCURRENCY:-24}
pids=()
for i in $(seq 1 "$N"); do
	$OCITREE config --image "$L:base" --tag "cfg$i" --config.env "I=$i" >"$T/log.cfg$i" 2>&1 &
	pids+=($!)
	$OCITREE tag --image "$L:base" "tag$i" >"$T/log.tag$i" 2>&1 &
	pids+=($!)
	if [ "$i" -le 8 ]; then
		$OCITREE rm --image "$L:old$i" >"$T/log.rm$i" 2>&1 &
		pids+=($!)
	fi
	if [ "$i" -le 4 ]; then
		$OCITREE repack --image "$L:rep$i" "$T/bundle$i" >"$T/log.repack$i" 2>&1 &
		pids+=($!)
		$OCITREE insert --image "$L:base" --tag "ins$i" "$T/bundle$i/rootfs/file$i" "/inserted$i" >"$T/log.insert$i" 2>&1 &
		pids+=($!)
	fi
	if [ $((i % 6)) -eq 0 ]; then
		$OCITREE gc --layout "$L" >"$T/log.gc$i" 2>&1 &
		pids+=($!)
	fi
	# readers in between must always see a valid index.json
	$OCITREE ls --layout "$L" >"$T/log.ls$i" 2>&1 &
	pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
is "every concurrent command succeeded" "$failed" 0
[ "$failed" -eq 0 ] || diag "$(cat "$T"/log.* | sort | uniq -c | head -20)"

missing=
for i in $(seq 1 "$N"); do
	for t in "cfg$i" "tag$i"; do
		$OCITREE stat --image "$L:$t" >/dev/null 2>&1 || missing="$missing $t"
	done
done
for i in 1 2 3 4; do
	for t in "rep$i" "ins$i"; do
		$OCITREE stat --image "$L:$t" >/dev/null 2>&1 || missing="$missing $t"
	done
done
is "no tag was lost and every tag still opens" "$missing" ""
ok "a repacked image has its change" $OCITREE unpack --image "$L:rep3" "$T/check"
is "its file" "$(cat "$T/check/rootfs/file3")" "repacked 3"
is "every removed tag is gone" "$($OCITREE ls --layout "$L" | grep -c '^old')" 0
is "each cfg tag has its own config" "$($OCITREE stat --json --image "$L:cfg7" | jq -r '.config.blob.config.Env[0]')" I=7
ok "a final gc" $OCITREE gc --layout "$L"
validated "oci-validate --full accepts the layout" "$L"
ok "fsck --full accepts it" $OCITREE fsck --full --layout "$L"
check "no temporary files are left" '[ -z "$(find "$L" -name ".ocitree-tmp.*")" ]'
done_testing
