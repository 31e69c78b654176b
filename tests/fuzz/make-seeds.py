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

corpus, blobs = sys.argv[1], sys.argv[2]
MTIME = 1700000000


def write(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def make_tar(entries, fmt=tarfile.PAX_FORMAT):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for e in entries:
            e = dict(e)
            data = e.pop("data", b"")
            ti = tarfile.TarInfo(e.pop("name"))
            ti.mtime = MTIME
            for k, v in e.items():
                setattr(ti, k, v)
            if ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data else None)
    raw = b.getvalue()
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
