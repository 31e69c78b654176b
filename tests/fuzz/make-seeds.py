#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Seed corpora of the fuzz targets, small and deterministic.

    make-seeds.py CORPUS-DIR BLOB-DIR

writes CORPUS-DIR/{tar,tarscan,state,gzip-seek}/seed-* and, for
make-seeds.sh to index, layer blobs BLOB-DIR/NAME.{none,gzip,zstd}.
Regression inputs (regress-*) are never touched.
"""
import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from ocitest import tar_bytes  # noqa: E402

corpus, blobs = sys.argv[1], sys.argv[2]
MTIME = 1700000000


def write(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def make_tar(entries, fmt=tarfile.PAX_FORMAT):
    raw = tar_bytes(entries, fmt, mtime=MTIME)
    # keep the end-of-archive blocks, not the padding to 10 KiB records
    end = len(raw)
    while end >= 512 and raw[end - 512:end] == bytes(512):
        end -= 512
    return raw[:end] + bytes(1024)


REG, DIR, SYM, LNK, CHR, FIFO = (tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                                 tarfile.CHRTYPE, tarfile.FIFOTYPE)
text = b"".join(b"line %d of a small text file\n" % i for i in range(60))
tars = {
    "basic": make_tar([
        {"name": "etc", "type": DIR, "mode": 0o755},
        {"name": "etc/hello", "data": b"hello\n", "mode": 0o644, "uid": 1000, "gid": 1000,
         "pax_headers": {"SCHILY.xattr.user.mime": "text/plain", "SCHILY.xattr.security.capability": "\x01\x00"}},
        {"name": "etc/link", "type": SYM, "linkname": "hello"},
        {"name": "etc/hard", "type": LNK, "linkname": "etc/hello"},
        {"name": "dev/null", "type": CHR, "devmajor": 1, "devminor": 3},
        {"name": "run/fifo", "type": FIFO},
        {"name": "usr/share/doc/text", "data": text},
        {"name": "d" * 120 + "/long-name", "data": b"x"},
        {"name": "longlink", "type": SYM, "linkname": "t" * 150},
        {"name": "frac", "data": b"y", "pax_headers": {"mtime": "-1.5"}},
    ]),
    "gnu": make_tar([
        {"name": "g" * 150, "data": b"gnu long name"},
        {"name": "gl", "type": SYM, "linkname": "l" * 140},
        {"name": "big-uid", "data": b"z", "uid": 0o777777777},
    ], fmt=tarfile.GNU_FORMAT),
    "ustar": make_tar([
        {"name": "p" * 90 + "/" + "n" * 60, "data": b"prefix"},
        {"name": "old-dir/", "type": tarfile.AREGTYPE},
    ], fmt=tarfile.USTAR_FORMAT),
    "whiteouts": make_tar([
        {"name": "etc/.wh.hello"},
        {"name": "opaque/.wh..wh..opq"},
        {"name": "opaque/new", "data": b"new"},
        {"name": "./dot/./slash//name", "data": b"n"},
    ]),
}
# a sparse file, as GNU tar writes it (pax 1.0 sparse map)
if shutil.which("tar"):
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "sparse")
        with open(p, "wb") as f:
            f.write(b"start")
            f.seek(200000)
            f.write(b"end")
        tars["sparse"] = subprocess.run(["tar", "--format=pax", "--sparse", "--mtime=@%d" % MTIME, "--owner=0",
                                         "--group=0", "-C", d, "-cf", "-", "sparse"], check=True,
                                        stdout=subprocess.PIPE).stdout
        while tars["sparse"].endswith(bytes(2048)):
            tars["sparse"] = tars["sparse"][:-512]
# hostile headers: a size far beyond the archive, an absurd pax length
h = bytearray(make_tar([{"name": "big", "data": b"12345"}], fmt=tarfile.USTAR_FORMAT)[:1024])
h[124:136] = b"77777777777\0"
h[148:156] = b"        "
h[148:156] = ("%06o\0 " % sum(h[:512])).encode()
tars["absurd-size"] = bytes(h)
h = bytearray(512)
h[0:14] = b"././@PaxHeader"
h[100:108] = b"0000644\0"
h[108:116] = b"0000000\0"
h[116:124] = b"0000000\0"
h[124:136] = b"00000001000\0"
h[136:148] = b"00000000000\0"
h[156:157] = b"x"
h[257:263] = b"ustar\0"
h[263:265] = b"00"
h[148:156] = b"        "
h[148:156] = ("%06o\0 " % sum(h)).encode()
tars["absurd-pax"] = bytes(h) + b"99999999999 path=" + b"a" * 495 + bytes(1024)

for name, raw in tars.items():
    write("tarscan", name, bytes([len(name)]) + raw)
    write("tar", name + "-none", b"\x00" + raw)
    write("tar", name + "-gzip", b"\x01" + gzip.compress(raw, mtime=0))
    if shutil.which("zstd"):
        z = subprocess.run(["zstd", "-q", "-c", "-3"], input=raw, check=True, stdout=subprocess.PIPE).stdout
        write("tar", name + "-zstd", b"\x02" + z)
# gzip members and padding, a truncated stream
raw = tars["basic"]
write("tar", "members-gzip", b"\x01" + gzip.compress(raw[:3072], mtime=0) + gzip.compress(raw[3072:], mtime=0) +
      bytes(64))
write("tar", "truncated-gzip", b"\x01" + gzip.compress(raw, mtime=0)[:700])

# layer blobs to index (make-seeds.sh turns them into fuzz-index seeds)
os.makedirs(blobs, exist_ok=True)
layer = make_tar([
    {"name": "etc", "type": DIR},
    {"name": "etc/os-release", "data": b"NAME=seed\n", "pax_headers": {"SCHILY.xattr.user.a": "1"}},
    {"name": "etc/.wh.gone"},
    {"name": "bin/sh", "type": SYM, "linkname": "/bin/busybox"},
    {"name": "bin/busybox", "data": text * 4, "mode": 0o755},
    {"name": "bin/ls", "type": LNK, "linkname": "bin/busybox"},
    {"name": "var/.wh..wh..opq"},
    {"name": "var/log/big", "data": text * 6},
])
with open(os.path.join(blobs, "layer.none"), "wb") as f:
    f.write(layer)
with open(os.path.join(blobs, "layer.gzip"), "wb") as f:
    # flushes make deflate blocks, where zlib checkpoints go
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    out = b""
    for i in range(0, len(layer), 4096):
        out += z.compress(layer[i:i + 4096]) + z.flush(zlib.Z_FULL_FLUSH)
    f.write(out + z.flush())
if shutil.which("zstd"):
    with open(os.path.join(blobs, "layer.zstd"), "wb") as f:
        f.write(subprocess.run(["zstd", "-q", "-c"], input=layer, check=True, stdout=subprocess.PIPE).stdout)

# bundle records: ocitree.state (first byte even) and umoci's mtree (odd)
D = "sha256:" + "ab" * 32
write("state", "state", b"\x00" + ("""ocitree-state 1
manifest %s
. d 755 0 0 4096 1700000000.000000000 1700000000.123456789 2 5 0 - - - 1699999999.000000000
bin d 755 0 0 4096 1700000000.000000000 1700000000.000000000 3 2 0 - - - -
bin/sh l 777 0 0 7 1700000000.000000000 1700000000.000000000 4 1 0 - busybox - -
bin/busybox f 4755 0 0 12 1700000000.000000000 1700000000.000000000 5 2 0 %s - user.a=MQ==,security.capability=AQAAAg== -
dev d 755 0 0 4096 1700000000.000000000 1700000000.000000000 6 2 0 - - - -
dev/null c 666 0 0 0 1700000000.000000000 1700000000.000000000 7 1 259 - - - -
name\\040with\\054comma f 644 1000 1000 0 1.5 2.000000001 8 1 0 - - - -
\\055 f 600 0 0 0 0.0 0.0 9 1 0 - - - -
""" % (D, "cd" * 32)).encode())
write("state", "mtree", b"\x01" + ("""#          user: root
#      keywords: size,type,uid,gid,mode,link,nlink,tar_time,sha256digest,xattr

# .
. size=4096 type=dir uid=0 gid=0 mode=0755 nlink=3 tar_time=1700000000.000000000
    file size=5 type=file uid=0 gid=0 mode=0644 nlink=1 tar_time=1700000000.000000000 sha256digest=%s xattr.user.a=MQ==
    link size=4 type=link uid=0 gid=0 mode=0777 link=file nlink=1 tar_time=1700000000.000000000
    odd\\040name\\043 size=0 type=file uid=1 gid=2 mode=0600 nlink=1 tar_time=0.000000000

# sub
sub size=4096 type=dir uid=0 gid=0 mode=0755 nlink=2 tar_time=1700000000.000000000
    in size=1 type=file mode=0644 nlink=1 time=1.0
..

/set type=file uid=0 gid=0 mode=0644
sub/full size=2
..
""" % ("ef" * 32)).encode())

# gzip-seek: programs (flags, span, level, strategy, wbits, memlevel, repeat, bytes)
for name, head, body in [
    ("isal-small-span", b"\x00\x07", bytes([6, 0, 6, 8, 8]) + text[:600]),
    ("zlib-build", b"\x01\x03", bytes([9, 0, 6, 8, 12]) + bytes(range(256))),
    ("zlib-read-cache", b"\x06\x01", bytes([1, 1, 6, 8, 20]) + text[:300] + b"\x03\x04\x05"),
    ("members", b"\x04\x02", bytes([6, 0, 6, 8, 10]) + b"\xfe" + text[:200] + b"\xfe\x05\xff"),
    ("huffman-only", b"\x05\x00", bytes([6, 2, 0, 1, 16]) + text[100:500]),
    ("stored", b"\x02\x05", bytes([0, 0, 6, 8, 4]) + bytes(range(255, 0, -1))),
    ("rle-fixed", b"\x00\x08", bytes([3, 3, 6, 8, 24]) + b"ab" * 100 + bytes([4, 6])),
]:
    write("gzip-seek", name, head + body)
write("gzip-seek", "raw-stream", b"\x08\x02" + gzip.compress(tars["basic"], mtime=0))

# upper: programs that build an upper directory and its work directory (see
# the top of fuzz-upper.c): a flags byte, then ops
import struct


class Upper:
    TRUSTED, USER, NONE = 1, 2, 0

    def __init__(self, xattrs=1, file_whiteouts=False, virtual=False, clear=False, keep=False, comp=1):
        self.b = bytearray([xattrs | file_whiteouts << 2 | virtual << 3 | clear << 4 | keep << 5 | comp << 6])
        self.n = 1  # objects: 0 is the upper directory

    @staticmethod
    def s8(v):
        v = v.encode() if isinstance(v, str) else v
        return bytes([len(v)]) + v

    @staticmethod
    def s16(v):
        v = v.encode() if isinstance(v, str) else v
        return struct.pack("<H", len(v)) + v

    def obj(self, code):
        self.b += code
        self.n += 1
        return self.n - 1

    def mkdir(self, p, name, mode=0o755):
        return self.obj(bytes([0, p]) + self.s8(name) + struct.pack("<H", mode))

    def file(self, p, name, data=b"", mode=0o644):
        return self.obj(bytes([1, p]) + self.s8(name) + struct.pack("<H", mode) + self.s16(data))

    def symlink(self, p, name, target):
        return self.obj(bytes([2, p]) + self.s8(name) + self.s8(target))

    def link(self, p, name, target):
        return self.obj(bytes([3, p]) + self.s8(name) + bytes([target]))

    def whiteout(self, p, name):
        return self.obj(bytes([4, p]) + self.s8(name))

    def node(self, p, name, kind, major=0, minor=0):
        return self.obj(bytes([5, p]) + self.s8(name) + bytes([kind, major, minor]))

    # KEY: 0-4 opaque, metacopy, redirect, origin, stat under the format's
    # prefix, 5-7 the first three under the other one, 8 escaped image
    # xattr, 9 user.RAW, 10 security.capability, 11 security.selinux, 12
    # trusted.RAW, 13 RAW, 14 doubly escaped, 15 PREFIX.ocitree.RAW
    def xattr(self, e, key, value, raw=""):
        self.b += bytes([6, e, key]) + (self.s8(raw) if key % 16 >= 8 else b"") + self.s8(value)

    def truncate(self, e, size):
        self.b += bytes([7, e]) + struct.pack("<I", size)[:3]

    def chown(self, e, uid, gid):
        self.b += bytes([8, e]) + struct.pack("<HH", uid, gid)

    def record(self, data):
        self.b += bytes([9]) + self.s16(data)

    def field(self, f, value, raw=False):
        self.b += bytes([10, f | (0x80 if raw else 0)]) + self.s8(value)

    def journal(self, data):
        self.b += bytes([11]) + self.s16(data)

    def workfile(self, name, kind, data=b""):
        self.b += bytes([12]) + self.s8(name) + bytes([kind]) + self.s16(data)

    def chmod(self, e, mode):
        self.b += bytes([13, e]) + struct.pack("<H", mode)

    def how(self, no_record=False, record_tag=False):
        self.b += bytes([14, no_record | record_tag << 1])

    def times(self, e, secs):
        self.b += bytes([15, e]) + struct.pack("<I", secs)


F_VERSION, F_LAYOUT, F_TAG, F_MANIFEST, F_WHITEOUT, F_XATTRS, F_OWNERS, F_CLEARING, F_MT, F_DIGEST, F_SIZE = range(11)
seeds = {}

# a session of changes on the base image (etc/hello, etc/hard, etc/link,
# d/x, d/sub/deep, big, empty), as a root mount writes them
u = Upper()
etc = u.mkdir(0, "etc")
hello = u.file(etc, "hello", "changed\n")
u.link(etc, "hard", hello)
u.xattr(hello, 3, "/etc/hello")
u.file(0, "new", "a new file\n", 0o600)
u.whiteout(0, "empty")
big = u.file(0, "big", mode=0o700)
u.truncate(big, 20000)
u.xattr(big, 1, "")
u.xattr(big, 2, "/big")
u.xattr(big, 3, "/big")
d = u.mkdir(0, "d", 0o750)
u.xattr(d, 0, "y")
u.file(d, "only", "in an opaque directory\n")
u.symlink(0, "link", "etc/hello")
u.node(0, "fifo", 2)
u.node(0, "null", 0, 1, 3)
u.xattr(hello, 9, "text/plain", "mime")
u.times(hello, 1700000000)
u.chown(hello, 1000, 1000)
seeds["session"] = u

# the forms without xattrs: .wh. files and opaque markers
u = Upper(xattrs=Upper.NONE, file_whiteouts=True, comp=0)
u.file(0, ".wh.empty")
d = u.mkdir(0, "d")
u.file(d, ".wh..wh..opq")
u.file(d, "x", "replaced\n")
u.file(0, ".wh.big")
u.mkdir(0, "big")
seeds["wh-files"] = u

# rootless: user xattrs and virtual owners
u = Upper(xattrs=Upper.USER, virtual=True, comp=2)
f = u.file(0, "owned", "owned by 1000\n")
u.xattr(f, 4, "1000:1000:0100640")
dev = u.file(0, "dev-null")
u.xattr(dev, 4, "0:0:020666:1:3")
bad = u.file(0, "bad-stat")
u.xattr(bad, 4, "0:0:0644")
d = u.mkdir(0, "dir")
u.xattr(d, 4, "0:0:0100644")
u.xattr(f, 8, "escaped", "user.x")
u.xattr(f, 14, "twice", "x")
u.xattr(f, 15, "unknown", "x")
seeds["rootless"] = u

# metacopy files that do not match the image
u = Upper()
for name, redirect in [("m1", "/no/such"), ("m2", "/d"), ("m3", "big"), ("m4", None), ("m5", "/etc/link")]:
    m = u.file(0, name)
    u.truncate(m, 100)
    u.xattr(m, 1, "")
    if redirect is not None:
        u.xattr(m, 2, redirect)
seeds["metacopy-bad"] = u
u = Upper(comp=0)
m = u.file(0, "big")
u.truncate(m, 30000)
u.xattr(m, 1, "")
u.xattr(m, 2, "/big")
h = u.link(0, "big2", m)
seeds["metacopy-longer"] = u

# the record: every field wrong in turn, and as it is
for name, f, value, raw in [("version", F_VERSION, "2", True), ("tag", F_TAG, "no tag!", False),
                            ("digest", F_DIGEST, "sha256:" + "0" * 64, False), ("size", F_SIZE, "-1", True),
                            ("media-type", F_MT, "application/vnd.oci.image.index.v1+json", False),
                            ("whiteout", F_WHITEOUT, "aufs", False), ("xattrs", F_XATTRS, "system", False),
                            ("owners", F_OWNERS, "virtual", False), ("manifest", F_MANIFEST, "[1]", True)]:
    u = Upper(xattrs=Upper.NONE if name == "owners" else 1)
    u.file(0, "f", "x")
    u.field(f, value, raw)
    seeds["record-" + name] = u
u = Upper()
u.record(b'{"ocitreeUpperVersion":1,"layout":"/x","tag":"base","manifest":{"mediaType":"application/'
         b'vnd.oci.image.manifest.v1+json","digest":"sha256:' + b"ab" * 32 + b'","size":1}}')
seeds["record-raw"] = u
u = Upper()
u.how(no_record=True)
seeds["record-none"] = u
# the record names another blob of the layout; commit to the record's tag
for i in range(3):
    u = Upper()
    u.file(0, "f", "x")
    u.field(F_DIGEST, "@" + chr(i))
    seeds["record-blob%d" % i] = u
u = Upper()
u.file(0, "f", "x")
u.field(F_TAG, "other")
u.how(record_tag=True)
seeds["record-tag"] = u

# an interrupted commit --clear, finished first; --clear keeping some files
u = Upper()
d = u.mkdir(0, "d")
u.file(d, "gone", "x")
u.whiteout(d, "x")
u.field(F_CLEARING, "true", True)
seeds["clearing"] = u
u = Upper(clear=True, keep=True)
for i in range(6):
    d = u.mkdir(0, "d%d" % i)
    u.xattr(d, 0, "y")
    u.file(d, "f%d" % i, "file %d\n" % i)
    u.whiteout(d, "w%d" % i)
seeds["clear-keep"] = u

# the work directory: a copy-up journal, one that leads out, stale objects
u = Upper()
etc = u.mkdir(0, "etc")
u.file(etc, "hello", "hello\n")
u.journal(b"/etc/hello\0/etc/hard\0")
seeds["journal"] = u
u = Upper()
u.journal(b"/../outside/canary\0/etc/x\0")
seeds["journal-out"] = u
u = Upper()
u.workfile("tmp.1.1", 2, "stale")
u.workfile("tmp.1.2", 0, "stale")
u.workfile("tmp.1.3", 3, "/etc/passwd")
u.workfile("control", 0)
seeds["work-stale"] = u

# names and links that lead elsewhere
u = Upper()
s = u.symlink(0, "out", "../outside/canary")
u.chmod(s, 0o777)
u.xattr(s, 0, "y")
d = u.mkdir(0, "d")
u.symlink(d, "abs", "/etc/passwd")
u.mkdir(0, "x" * 200)
n = 0
for i in range(20):
    n = u.mkdir(n, "n%d" % i)
u.file(n, "deep", "deep\n")
u.chmod(d, 0)
seeds["names"] = u

for name, u in seeds.items():
    write("upper", name, bytes(u.b))
