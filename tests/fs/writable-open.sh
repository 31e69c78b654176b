#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The writable mount's files have no handles (src/fs/fs-rw.h): the kernel
# opens them without asking the daemon, so a write, O_TRUNC, O_APPEND or an
# mmap write reaches the daemon naming the inode only.  Each must still
# copy up before it changes anything, a file only read must stay an image
# file, and what one fd writes every other fd of the file must see.
. "$top_srcdir/tests/fs/lib-fs.sh"
need_fuse
[ "$(id -u)" -eq 0 ] || skip_all "the upper directory with trusted xattrs needs root"
PY=/usr/bin/python3

{ cat; for d in d1 d2; do for i in $(seq 1000 2499); do echo "file $d/entry-with-a-long-name-$i text:$i"; done; done; } >"$T/spec" <<'SPEC'
layer gzip
dir f
file f/read text:only read\n
file f/rw text:0123456789\n
file f/shared text:0123456789\n
file f/trunc text:to be truncated\n
file f/append text:first\n
file f/append2 text:0123456789\n
file f/mmap text:0123456789\n
file f/two text:0123456789\n
file f/ftrunc text:0123456789\n
file f/gone text:0123456789\n
file f/big 0644 0 0 random:7:1000000
dir d1
dir d2
SPEC
$MKIMAGE "$T/l" img <"$T/spec" >/dev/null || { echo "Bail out! mkimage failed"; exit 1; }

M=$T/mnt U=$T/upper
mkdir -p "$U"
ok "mount writable" do_mount "$M" --upper "$U" --image "$T/l:img"
upper_has() { [ -e "$U/f/$1" ] && [ ! -c "$U/f/$1" ]; }

cat "$M/f/read" "$M/f/big" >/dev/null
check "a file only read is not copied up" '! upper_has read && ! upper_has big'

ino=$(stat -c %i "$M/f/rw")
is "open O_RDWR, fstat, write, fstat again" "$($PY - "$M/f/rw" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
a = os.fstat(fd)
os.pwrite(fd, b"AB", 2)
b = os.fstat(fd)
print(a.st_size, b.st_size, a.st_ino == b.st_ino, os.pread(fd, 100, 0))
os.close(fd)
PY
)" "11 11 True b'01AB456789\\n'"
is "the inode number stays" "$(stat -c %i "$M/f/rw")" "$ino"
check "written: copied up" 'upper_has rw && [ "$(cat "$U/f/rw")" = 01AB456789 ]'

is "a read-only fd opened first sees a write made through another" "$($PY - "$M/f/shared" <<'PY'
import os, sys
r = os.open(sys.argv[1], os.O_RDONLY)
before = os.pread(r, 100, 0)
w = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(w, b"XY", 0)
os.close(w)
print(before, os.pread(r, 100, 0))
os.close(r)
PY
)" "b'0123456789\\n' b'XY23456789\\n'"
check "and the upper file has it" '[ "$(cat "$U/f/shared")" = XY23456789 ]'

: >"$M/f/trunc"
is "O_TRUNC empties the file" "$(stat -c %s "$M/f/trunc")" 0
check "in the upper directory too" 'upper_has trunc && [ ! -s "$U/f/trunc" ]'

echo more >>"$M/f/append"
is "O_APPEND writes at the end" "$(cat "$M/f/append")" "first
more"
is "an O_APPEND fd and a positioned one on the same file" "$($PY - "$M/f/append2" <<'PY'
import os, sys
a = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
p = os.open(sys.argv[1], os.O_RDWR)
os.write(a, b"tail")
os.pwrite(p, b"Z", 0)
os.write(a, b"!")
os.close(a)
print(os.pread(p, 100, 0))
os.close(p)
PY
)" "b'Z123456789\\ntail!'"

is "a shared writable mapping writes through" "$($PY - "$M/f/mmap" <<'PY'
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 11, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:3] = b"MAP"
m.flush()
m.close()
os.close(fd)
print(open(sys.argv[1], "rb").read())
PY
)" "b'MAP3456789\\n'"
check "the mapping's write is in the upper file" '[ "$(cat "$U/f/mmap")" = MAP3456789 ]'

is "two processes with the file open O_RDWR write their parts" "$($PY - "$M/f/two" <<'PY'
import os, sys
r, w = os.pipe()
pid = os.fork()
fd = os.open(sys.argv[1], os.O_RDWR)
if pid == 0:
    os.read(r, 1)  # both are open before either writes
    os.pwrite(fd, b"CHILD", 5)
    os.fsync(fd)
    os.close(fd)
    os._exit(0)
os.write(w, b"x")
os.pwrite(fd, b"P", 0)
os.waitpid(pid, 0)
print(os.pread(fd, 100, 0))
os.close(fd)
PY
)" "b'P1234CHILD\\n'"

is "ftruncate through an fd of an image file" "$($PY - "$M/f/ftrunc" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.ftruncate(fd, 4)
os.fsync(fd)
print(os.fstat(fd).st_size, os.pread(fd, 100, 0))
os.close(fd)
PY
)" "4 b'0123'"

is "a write through an fd of a file removed since" "$($PY - "$M/f/gone" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.unlink(sys.argv[1])
os.pwrite(fd, b"still", 0)
print(os.path.exists(sys.argv[1]), os.pread(fd, 100, 0))
os.close(fd)
PY
)" "False b'still56789\\n'"
check "leaves only a whiteout" '[ -c "$U/f/gone" ]'

# directories have no handles either: a reader goes on in the listing it
# started with, while the directory changes and other readers start over
# (on directories never read before, so that the kernel has no listing)
is "removing entries while a directory is read skips none of the others" "$($PY - "$M/d1" <<'PY'
import os, sys
d = sys.argv[1]
names = ["entry-with-a-long-name-%d" % i for i in range(1000, 2500)]
seen, removed = [], set()
with os.scandir(d) as it:
    for e in it:
        seen.append(e.name)
        if len(seen) == 1:
            for n in names[::3]:
                if n != e.name:
                    os.unlink(os.path.join(d, n))
                    removed.add(n)
        if len(seen) == 700:
            open(os.path.join(d, "new-file"), "w").close()
rest = [n for n in names if n not in removed]
missing = set(rest) - set(seen)
dups = len(seen) - len(set(seen))
print(len(removed), len(missing), dups, sorted(os.listdir(d)) == sorted(rest + ["new-file"]))
PY
)" "499 0 0 True"
is "two readers, the directory changed between their starts" "$($PY - "$M/d2" <<'PY'
import os, sys
d = sys.argv[1]
names = ["entry-with-a-long-name-%d" % i for i in range(1000, 2500)]
a = os.scandir(d)
first = [next(a).name for _ in range(10)]
for n in names[:100]:
    os.unlink(os.path.join(d, n))
open(os.path.join(d, "zz-another"), "w").close()
b = set(os.listdir(d))  # from the start: the new listing
rest = [e.name for e in a]
a.close()
seen = first + rest
print(len(seen) == len(set(seen)), set(seen) >= set(names[100:]), b == set(names[100:]) | {"zz-another"})
PY
)" "True True True"

# the upper directory alone holds all of it
sums=$(cd "$M" && sha256sum -- f/* && ls d1 d2 | LC_ALL=C sort)
ok "unmount" do_umount "$M"
ok "mount again" do_mount "$M" --upper "$U" --image "$T/l:img"
is "the same contents after a remount" "$(cd "$M" && sha256sum -- f/* && ls d1 d2 | LC_ALL=C sort)" "$sums"
ok "unmount" do_umount "$M"

# what makes the writable mount as cheap to read as the read-only one:
# no OPEN or RELEASE per file (one OPEN, answered ENOSYS, switches them off)
"$OCITREE" mount -o debug --upper "$U" --image "$T/l:img" "$M" 2>"$T/debug" &
pid=$!
_mounts+=("$M")
for _ in $(seq 100); do is_mounted "$M" && break; sleep 0.05; done
for f in read rw shared big; do cat "$M/f/$f" >/dev/null; done
echo x >>"$M/f/rw"
do_umount "$M"
wait $pid
is "reading and writing four files sends one OPEN and no RELEASE" \
	"$(grep -o 'opcode: \(OPEN\|RELEASE\) ' "$T/debug" | sort | uniq -c | awk '{print $3 "=" $1}' | tr '\n' ' ')" "OPEN=1 "

done_testing
