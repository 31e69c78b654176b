#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A bounded multi-threaded load on a read-only mount (tests/fs/fs-load.c):
# readers of random files at random offsets, directory walkers and stat
# storms, every byte and listing checked against the tree the image was
# made from.  Half-way, a gzip layer is damaged on purpose: only reads of
# its damaged part may fail, with EIO, everything else keeps working.  Then
# the daemon still answers and unmounts cleanly; it runs in the foreground
# here so that its exit status and stderr (AddressSanitizer's and
# LeakSanitizer's reports in the sanitizer build) are seen.
#
# Then the same image (without the damaged layer) mounted writable: writer
# threads change four of its directories (copy-ups, new files, writes,
# appends, truncates, renames, links, unlinks, each read back against a
# model in memory) while the readers go on in the rest.  The tree must be
# what the model says, live and after a remount; its commit must pass fsck
# --full and unpack to exactly the remounted tree.
#
# OCITREE_LOAD_SECONDS (default 20) is the length of the read-only load,
# and of the load with writers.
. "$top_srcdir/tests/fs/lib-fs.sh"
. "$top_srcdir/tests/tree-lib.sh"
need_fuse
LOAD=${top_builddir:-.}/tests/fs/fs-load
[ -x "$LOAD" ] || { echo "Bail out! $LOAD is not built"; exit 1; }
have zstd || skip_all "zstd is needed to make a zstd layer"
secs=${OCITREE_LOAD_SECONDS:-20}
half=$(((secs + 1) / 2))
TARIMAGE="$PY $top_srcdir/tests/tools/mkimage.py"
R=$T/ref
M=$T/mnt

# the tree: random and compressible files, big ones across many
# checkpoints, hardlinks and symlinks; the damaged/ part gets its own layer
$PY - "$R" <<'PY' || { echo "Bail out! cannot make the tree"; exit 1; }
import os, random, sys
root = sys.argv[1]
rng = random.Random(6)
words = [bytes(rng.getrandbits(8) for _ in range(rng.randint(2, 9))) for _ in range(300)]
def data(n, kind):
    if kind == 0:
        return rng.randbytes(n)
    out = bytearray()
    while len(out) < n:
        out += words[rng.randrange(300)]
    return bytes(out[:n])
def write(path, n, kind):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data(n, kind))
for d in range(12):
    for i in range(25):
        write("%s/d%02d/f%02d" % (root, d, i), rng.choice([0, 1, 100, 4096, rng.randrange(300000)]), i % 2)
    os.symlink("f00", "%s/d%02d/link" % (root, d))
    os.link("%s/d%02d/f01" % (root, d), "%s/d%02d/hard" % (root, d))
for i in range(4):
    write("%s/big/b%d" % (root, i), 3000000 + i * 777777, i % 2)
    write("%s/plain/p%d" % (root, i), 200000 + i, 1)
    write("%s/zst/z%d" % (root, i), 1500000 + i, i % 2)
    write("%s/damaged/x%d" % (root, i), 1500000, i % 2)
os.makedirs("%s/deep/%s" % (root, "/".join("n%d" % i for i in range(30))))
PY
find "$R" -exec touch -h -d '2023-01-01 00:00:00' {} +
tar --format=pax --numeric-owner -C "$R" --exclude=./plain --exclude=./zst --exclude=./damaged -cf "$T/l1.tar" .
tar --format=pax --numeric-owner -C "$R" -cf "$T/l2.tar" ./plain
tar --format=pax --numeric-owner -C "$R" -cf "$T/l3.tar" ./zst
tar --format=pax --numeric-owner -C "$R" -cf "$T/l4.tar" ./damaged
zstd -q -c "$T/l3.tar" >"$T/l3.tar.zst"
# the image in $1, tagged img; with the damaged layer when $2 is set
make_image() {
	$TARIMAGE "$1" img --compress gzip "$T/l1.tar" &&
		$TARIMAGE "$1" img --base img --compress none "$T/l2.tar" &&
		$TARIMAGE "$1" img --base img --raw application/vnd.oci.image.layer.v1.tar+zstd \
			--diff-id "0=sha256:$(sha256sum <"$T/l3.tar" | cut -d' ' -f1)" "$T/l3.tar.zst" &&
		{ [ -z "${2:-}" ] || $TARIMAGE "$1" img --base img --compress gzip "$T/l4.tar"; }
}
{ make_image "$T/l" damaged && make_image "$T/lw"; } >/dev/null || { echo "Bail out! cannot make the image"; exit 1; }

# the daemon in the foreground, with a small chunk cache so that chunks are
# evicted and decoded again under the load, and no attribute or entry
# caching in the kernel, so that every lookup and stat reaches the daemon
mkdir -p "$M"
_mounts+=("$M")
"$OCITREE" mount -f -o cache_size=4,threads=8,timeout=0 --image "$T/l:img" "$M" 2>"$T/daemon.err" &
pid=$!
for i in $(seq 200); do
	is_mounted "$M" && break
	sleep 0.05
done
check "the mount is up" 'is_mounted "$M"'

ok "load without the damaged layer for ${half}s" "$LOAD" -t "$half" -k "$pid" -x damaged "$R" "$M"
diag "$(cat "$T/out")"

# damage the middle of the last layer's blob, which no read touched yet
blob=$T/l/blobs/sha256/$(image_json "$T/l" img manifest | jq -r '.layers[3].digest' | cut -d: -f2)
size=$(stat -c %s "$blob")
chmod u+w "$blob"
head -c 4096 /dev/urandom | dd of="$blob" bs=1 seek=$((size / 2)) conv=notrunc status=none
ok "load with the damaged layer for ${half}s: only its reads may fail, with EIO" \
	"$LOAD" -t "$half" -k "$pid" -d damaged "$R" "$M"
diag "$(cat "$T/out")"
check "reads of the damaged part did fail" '[ "$(sed -n "s/.* \([0-9]*\) EIO,.*/\1/p" "$T/out")" -gt 0 ]'
check "the daemon still answers" '[ "$(ls "$M")" = "$(ls "$R")" ] && cmp "$M/d00/f02" "$R/d00/f02"'
check "the damage was logged" 'grep -q "read inode .*does not match its checksum\|read inode .*corrupt" "$T/daemon.err"'

ok "unmount" do_umount "$M"
status=0
wait $pid || status=$?
is "the daemon exits cleanly" "$status" 0
check "no sanitizer report" '! grep -E "Sanitizer|runtime error|leak" "$T/daemon.err" >&2'
diag "daemon stderr: $(head -c 600 "$T/daemon.err")"

# ---- writers on a writable mount ----
U=$T/upper W=$T/mw
mkdir -p "$U" "$W"
_mounts+=("$W")
# start_rw ERRFILE: the writable daemon in the foreground, as above
start_rw() {
	"$OCITREE" mount -f -o cache_size=4,threads=8,timeout=0 --upper "$U" --image "$T/lw:img" "$W" 2>"$1" &
	pid=$!
	for i in $(seq 200); do
		is_mounted "$W" && break
		sleep 0.05
	done
	is_mounted "$W"
}
# stop_rw ERRFILE: unmount; the daemon exits cleanly, without a sanitizer report
stop_rw() {
	do_umount "$W" || return 1
	local s=0
	wait $pid || s=$?
	[ "$s" -eq 0 ] || { echo "the daemon exited with $s" >&2; return 1; }
	! grep -E "Sanitizer|runtime error|leak" "$1" >&2
}
# the writable image has no damaged/ layer
cp -a "$R" "$T/expect"
rm -rf "$T/expect/damaged"
check "the writable mount is up" start_rw "$T/daemon-rw.err"
owned=d00,d03,d06,d09
ok "load with 4 writers for ${secs}s: every change reads back as written" \
	"$LOAD" -t "$secs" -r 6 -w 2 -s 2 -k "$pid" -W "$owned" -E "$T/expect" "$T/expect" "$W"
diag "$(cat "$T/out")"
ok "the tree is what the writers' model says" "$LOAD" -V "$T/expect" "$W"
diag "$(cat "$T/out")"
check "unmount; the daemon exits cleanly" stop_rw "$T/daemon-rw.err"
check "the upper directory mounts again" start_rw "$T/daemon-rw2.err"
ok "after a remount, the tree is what the model says" "$LOAD" -V "$T/expect" "$W"
check "unmount" stop_rw "$T/daemon-rw2.err"
ok "commit" "$OCITREE" commit --upper "$U" --image "$T/lw:committed"
diag "$(cat "$T/out")"
ok "the committed layout passes fsck --full" "$OCITREE" fsck --full --layout "$T/lw"
ok "the committed image unpacks" "$OCITREE" unpack --image "$T/lw:committed" "$T/bundle"
check "the upper directory mounts once more" start_rw "$T/daemon-rw3.err"
if [ "$(id -u)" -eq 0 ]; then
	ok "the unpacked commit equals the mounted tree exactly" "$COMPARE_TREE" "$T/bundle/rootfs" "$W"
else
	skip "the unpacked commit equals the mounted tree exactly" "owners differ when unpacking without root"
fi
ok "and what the model says" "$LOAD" -V "$T/expect" "$T/bundle/rootfs"
check "unmount" stop_rw "$T/daemon-rw3.err"
diag "daemon stderr: $(cat "$T"/daemon-rw*.err | head -c 600)"
done_testing
