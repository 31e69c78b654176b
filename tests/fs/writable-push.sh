#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A writable mount read in listing order: the daemon pushes the next image
# files into the page cache (src/fs/fs-push.c, fs-rw-nodes.c) as the
# read-only mount does.  A walk reads what an unpack writes; and while a
# reader walks, writers change files around it (writes of part of a page
# and of whole pages, appends, O_TRUNC, truncates, mmap, fallocate, chmod,
# renames over, unlink and create): every file read after that shows what
# was written, never the image's bytes, and so does the upper directory.
. "$top_srcdir/tests/fs/lib-fs.sh"
. "$top_srcdir/tests/fs/lib-push.sh"
need_fuse
[ "$(id -u)" -eq 0 ] || skip_all "the upper directory with trusted xattrs needs root"

push_image_spec 150 150 12000 | $MKIMAGE "$T/l" t >/dev/null || { echo "Bail out! mkimage failed"; exit 1; }
"$OCITREE" unpack --image "$T/l:t" "$T/ref" >/dev/null || { echo "Bail out! unpack failed"; exit 1; }
(cd "$T/ref/rootfs" && find . -type f -print0 | xargs -0 sha256sum | sort) >"$T/ref.sums"

M=$T/mnt U=$T/upper
# start_mount LOG [DELAY]: a fresh foreground mount over an empty upper
# directory, its debug log in LOG; DELAY: microseconds each push waits
# between decoding and storing its file, to widen the window in which a
# change meets a push under way
start_mount() {
	rm -rf "$U" "$U.work"
	mkdir -p "$U" "$M"
	_mounts+=("$M")
	OCITREE_TEST_PUSH_DELAY_US=${2:-0} "$OCITREE" --log=debug mount -f --upper "$U" --image "$T/l:t" "$M" 2>"$1" &
	mount_pid=$!
	local i
	for i in $(seq 200); do is_mounted "$M" && return 0; sleep 0.05; done
	return 1
}
stop_mount() {
	do_umount "$M"
	wait "$mount_pid"
}
pushed() { sed -n 's/.*pushed \([0-9]*\) files.*/\1/p' "$1"; }

# ---- a walk in listing order
start_mount "$T/walk.log" || { echo "Bail out! mount failed"; exit 1; }
(cd "$M" && find . -type f -print0 | xargs -0 sha256sum | sort) >"$T/mnt.sums"
stop_mount
ok "a walk in listing order reads every file as unpacked" cmp "$T/ref.sums" "$T/mnt.sums"
n=$(pushed "$T/walk.log")
ok "the daemon pushed files ahead of that walk ($n)" test "${n:-0}" -gt 300
is "reading copied nothing up" "$(ls -A "$U")" ""

# ---- walks with writers around the reader
# change.py ROOT REF EXPECT DIRECTION: change files of the mount at ROOT in
# listing order (forward or backward, one in a few), each the way its
# place picks; what each must read afterwards goes under EXPECT.  Forward,
# it chases the pusher: it changes a file as soon as the one before it is
# in the page cache (mincore, which asks the daemon nothing), when the
# pusher is likely to be at the file it changes.
cat >"$T/change.py" <<'EOF'
import ctypes, mmap, os, random, sys, time, zlib
root, ref, expect, direction = sys.argv[1:5]
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]

def cached(path):
    # whether the first page of path is in the page cache
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True
    try:
        if os.fstat(fd).st_size == 0:
            return True
        a = libc.mmap(None, 4096, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if a in (None, ctypes.c_void_p(-1).value):
            return True
        v = ctypes.create_string_buffer(1)
        libc.mincore(a, 4096, v)
        libc.munmap(a, 4096)
        return bool(v.raw[0] & 1)
    finally:
        os.close(fd)

files = []
for d, dirs, names in os.walk(ref):
    dirs.sort()
    for n in sorted(names):
        files.append(os.path.relpath(os.path.join(d, n), ref))
files.sort(key=lambda p: p.split('/'))
if direction == 'backward':
    files.reverse()
rnd = random.Random(os.getpid())
ops = ['head', 'page', 'append', 'otrunc', 'shrink', 'grow', 'mmap', 'fallocate', 'chmod', 'rename', 'recreate', 'pages']
def mine(rel):
    return (zlib.crc32(rel.encode()) + (direction == 'backward')) % 2 == 0

def targets():
    if direction == 'backward':
        step = rnd.randint(2, 4)
        yield from (rel for rel in files[rnd.randint(0, 5)::step] if mine(rel))
        return
    # the pusher's front: the first file not in the page cache; once it
    # is, the pusher is likely at the next one
    j = 0
    while j + 1 < len(files):
        while j + 1 < len(files) and cached(os.path.join(root, files[j])):
            j += 1
        t = time.monotonic() + 0.05
        while not cached(os.path.join(root, files[j])) and time.monotonic() < t:
            pass
        j += 1
        if j < len(files) and mine(files[j]):
            yield files[j]
            j += 1

open(os.path.join(expect, '.ready-' + direction), 'w').close()
while not os.path.exists(os.path.join(expect, '.go')):
    time.sleep(0.001)
for i, rel in enumerate(targets()):
    p = os.path.join(root, rel)
    with open(os.path.join(ref, rel), 'rb') as f:
        data = f.read()
    mark = ('<%s %s %d>' % (direction, rel, i)).encode()
    op = ops[(i + len(rel)) % len(ops)]
    if op == 'head':
        with open(p, 'r+b') as f:
            f.write(mark)
        want = mark + data[len(mark):]
    elif op == 'page':
        page = (mark * (4096 // len(mark) + 1))[:4096]
        with open(p, 'r+b') as f:
            f.write(page)
        want = page + data[4096:]
    elif op == 'pages':
        body = (mark * (16384 // len(mark) + 1))[:max(len(data), 1)]
        with open(p, 'r+b') as f:
            f.write(body)
        want = body + data[len(body):]
    elif op == 'append':
        with open(p, 'ab') as f:
            f.write(mark)
        want = data + mark
    elif op == 'otrunc':
        with open(p, 'wb') as f:
            f.write(mark)
        want = mark
    elif op == 'shrink':
        os.truncate(p, len(data) // 2)
        want = data[:len(data) // 2]
    elif op == 'grow':
        os.truncate(p, len(data) + 5000)
        want = data + bytes(5000)
    elif op == 'mmap':
        if not data:
            continue
        with open(p, 'r+b') as f:
            m = mmap.mmap(f.fileno(), 0)
            n = min(len(mark), len(data))
            m[0:n] = mark[:n]
            m.flush()
            m.close()
        want = mark[:len(data)] + data[len(mark):]
    elif op == 'fallocate':
        fd = os.open(p, os.O_WRONLY)
        os.posix_fallocate(fd, 0, len(data) + 9000)
        os.close(fd)
        want = data + bytes(9000)
    elif op == 'chmod':
        os.chmod(p, 0o600)
        want = data
    elif op == 'rename':
        tmp = p + '.new'
        with open(tmp, 'wb') as f:
            f.write(mark * 3)
        os.rename(tmp, p)
        want = mark * 3
    elif op == 'recreate':
        os.unlink(p)
        with open(p, 'wb') as f:
            f.write(mark * 2)
        want = mark * 2
    out = os.path.join(expect, rel)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, 'wb') as f:
        f.write(want)
    with open(os.path.join(expect, '.ops'), 'a') as f:
        f.write('%s %s\n' % (op, rel))
EOF

ROUNDS=${ROUNDS:-10}
start=$SECONDS
bad=0 rounds=0 total_pushed=0 raced=0 checked=0
for r in $(seq "$ROUNDS"); do
	[ $((SECONDS - start)) -lt 60 ] || break
	rounds=$r
	# every other round with pushes slowed down
	start_mount "$T/race$r.log" $((r % 2 ? 10000 : 0)) || { bad=$((bad + 1)); break; }
	rm -rf "$T/expect"
	mkdir -p "$T/expect"
	: >"$T/expect/.ops"
	/usr/bin/python3 "$T/change.py" "$M" "$T/ref/rootfs" "$T/expect" forward 2>"$T/w1.err" &
	w1=$!
	/usr/bin/python3 "$T/change.py" "$M" "$T/ref/rootfs" "$T/expect" backward 2>"$T/w2.err" &
	w2=$!
	for i in $(seq 600); do [ -e "$T/expect/.ready-forward" ] && [ -e "$T/expect/.ready-backward" ] && break; sleep 0.05; done
	# the reader: a few files at a time, for the walk to last while the
	# writers work
	(cd "$M" && find . -type f -print0 | xargs -0 -n 4 cat >/dev/null 2>&1) &
	reader=$!
	sleep "0.0$((RANDOM % 8))"
	touch "$T/expect/.go"
	wait $reader
	wait $w1 || { bad=$((bad + 1)); echo "# round $r: writer: $(head -5 "$T/w1.err")"; }
	wait $w2 || { bad=$((bad + 1)); echo "# round $r: writer: $(head -5 "$T/w2.err")"; }
	# every changed file, through the mount and in the upper directory
	while read -r op rel; do
		checked=$((checked + 1))
		if ! cmp -s "$T/expect/$rel" "$M/$rel"; then
			bad=$((bad + 1))
			echo "# round $r: $op $rel reads other bytes than were written"
		fi
		if [ "$op" != chmod ] && ! cmp -s "$T/expect/$rel" "$U/$rel"; then
			bad=$((bad + 1))
			echo "# round $r: $op $rel: the upper file is not what was written"
		fi
	done <"$T/expect/.ops"
	# and every other file as the image has it
	(cd "$M" && find . -type f ! -name '*.new' -print0 | xargs -0 sha256sum | sort) >"$T/after.sums"
	(cd "$T/expect" && find . -type f ! -name '.*' -print0 | xargs -0 sha256sum) >"$T/changed.sums"
	awk 'NR == FNR { c[$2] = $1; next } { print ($2 in c ? c[$2] : $1) "  " $2 }' "$T/changed.sums" "$T/ref.sums" |
		sort >"$T/want.sums"
	if ! cmp -s "$T/want.sums" "$T/after.sums"; then
		bad=$((bad + 1))
		echo "# round $r: the tree differs:"
		diff "$T/want.sums" "$T/after.sums" | head -5 | sed 's/^/#   /'
	fi
	stop_mount
	n=$(pushed "$T/race$r.log")
	total_pushed=$((total_pushed + ${n:-0}))
	n=$(sed -n 's/.*: \([0-9]*\) pushes met a change.*/\1/p' "$T/race$r.log")
	raced=$((raced + ${n:-0}))
	if grep -qi error "$T/race$r.log"; then
		bad=$((bad + 1))
		echo "# round $r: $(grep -i error "$T/race$r.log" | head -3)"
	fi
done
echo "# $rounds rounds, $checked changed files checked, $total_pushed files pushed, $raced pushes met a change of their file"
is "every file read after a writer changed it shows the change, in $rounds rounds" "$bad" 0
ok "files were pushed while the writers worked ($total_pushed)" test "$total_pushed" -gt 0
ok "and changes met pushes under way ($raced)" test "$raced" -gt 0
is "no error in the walk's log" "$(grep -i 'error' "$T/walk.log" | head -20)" ""
done_testing
