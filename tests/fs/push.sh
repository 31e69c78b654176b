#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A read-only mount read in listing order (find | xargs): the daemon pushes
# the next files into the page cache (src/fs/fs-push.c).  What a reader gets
# must be what an unpack writes, whichever way each file came (pushed, a
# READ, the last page of a sentinel kept back by the pusher, a big file read
# by the kernel's read-ahead, files of a gzip layer across chunk boundaries
# and of a zstd one); a reader out of order gets nothing pushed.
. "$top_srcdir/tests/fs/lib-fs.sh"
. "$top_srcdir/tests/fs/lib-push.sh"
need_fuse

push_image_spec 120 80 17000 | $MKIMAGE "$T/l" t >/dev/null || { echo "Bail out! mkimage failed"; exit 1; }
"$OCITREE" unpack --image "$T/l:t" "$T/ref" >/dev/null || { echo "Bail out! unpack failed"; exit 1; }
(cd "$T/ref/rootfs" && find . -type f -print0 | xargs -0 sha256sum | sort) >"$T/ref.sums"

# walk ORDER-FILTER LOG: one walk through a fresh foreground mount, its
# files in the order ORDER-FILTER leaves them in; the daemon's log in LOG
walk() {
	local mp=$T/mnt
	mkdir -p "$mp"
	_mounts+=("$mp")
	"$OCITREE" --log=debug mount -f --image "${3:-$T/l:t}" "$mp" 2>"$2" &
	local pid=$! i
	for i in $(seq 200); do is_mounted "$mp" && break; sleep 0.05; done
	(cd "$mp" && find . -type f -print0 | $1 | xargs -0 sha256sum | sort) >"$T/mnt.sums"
	do_umount "$mp"
	wait $pid
}

walk cat "$T/inorder.log"
ok "a walk in listing order reads every file as unpacked" cmp "$T/ref.sums" "$T/mnt.sums"
pushed=$(sed -n 's/.*pushed \([0-9]*\) files.*/\1/p' "$T/inorder.log")
ok "the daemon pushed files ahead of that walk ($pushed)" test "${pushed:-0}" -gt 100
# a sentinel (a file the pusher leaves for the reader to ask for, to learn
# where it is) is pushed but for its last page, which the daemon answers
# from what it kept back: the walk above compared those bytes too
held=$(sed -n 's/.* \([0-9]*\) sentinel pages answered.*/\1/p' "$T/inorder.log")
ok "sentinels' last pages were answered from the pusher ($held)" test "${held:-0}" -gt 5

walk "sort -rz" "$T/reverse.log"
ok "a walk in reverse order reads every file as unpacked" cmp "$T/ref.sums" "$T/mnt.sums"
pushed=$(sed -n 's/.*pushed \([0-9]*\) files.*/\1/p' "$T/reverse.log")
is "nothing is pushed ahead of a reader out of order" "${pushed:-none}" 0
# big files are pushed too, in pieces that meet at chunk seams (1 MiB of
# the uncompressed layer): a tree of nothing but files of 1.3 MiB
{
	echo "layer gzip"
	echo "dir e"
	for i in $(seq 1 12); do echo "file e/b$i 0644 0 0 random:$((i + 3000)):1300000"; done
} | $MKIMAGE "$T/big" t >/dev/null || { echo "Bail out! mkimage failed"; exit 1; }
"$OCITREE" unpack --image "$T/big:t" "$T/bigref" >/dev/null || { echo "Bail out! unpack failed"; exit 1; }
(cd "$T/bigref/rootfs" && find . -type f -print0 | xargs -0 sha256sum | sort) >"$T/ref.sums"
walk cat "$T/big.log" "$T/big:t"
ok "a walk over big files reads them as unpacked" cmp "$T/ref.sums" "$T/mnt.sums"
pushed=$(sed -n 's/.*pushed \([0-9]*\) files.*/\1/p' "$T/big.log")
ok "big files are pushed ahead of it ($pushed)" test "${pushed:-0}" -ge 5

# a mount by root reads ahead 1 MiB (READs of up to 1 MiB), not the
# kernel's 128 KiB: the mount command raises its device's read_ahead_kb
# after INIT, before it returns
if [ "$(id -u)" -eq 0 ]; then
	mkdir -p "$T/mnt"
	"$OCITREE" mount --image "$T/l:t" "$T/mnt"
	bdi=/sys/class/bdi/$(mountpoint -d "$T/mnt")/read_ahead_kb
	is "root's mount reads ahead 1 MiB once mount returns" "$(cat "$bdi")" 1024
	is "and serves a big file through it" "$(sha256sum <"$T/mnt/a/big40" | cut -d' ' -f1)" \
		"$(sha256sum <"$T/ref/rootfs/a/big40" | cut -d' ' -f1)"
	do_umount "$T/mnt"
fi
is "no error in the logs" "$(grep -i 'error' "$T/inorder.log" "$T/reverse.log" "$T/big.log" | head -20)" ""
done_testing
