#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Hostile layers for the tests of unpack, raw unpack, mount and insert,
made with Python's tarfile (neither ocitree nor umoci):

    hostile-tars.py DIR OUTSIDE

writes DIR/NAME.tar for every case below (OUTSIDE is a directory that
absolute names point into), DIR/complete.tar (a good archive of one
100000-byte file), DIR/padded-members.tar.gz (the good archive in two gzip
members with zero padding between them, which gzip(1) reads as one member
and trailing garbage) and DIR/bomb.tar.gz and, when zstd is installed,
DIR/bomb.tar.zst: the good archive followed by 64 MiB of zeros.
"""
import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ocitest import tar_bytes  # noqa: E402

d, out = sys.argv[1], sys.argv[2]
os.makedirs(d, exist_ok=True)


def tar(name, entries, fmt=tarfile.PAX_FORMAT):
    raw(name, tar_bytes(entries, fmt))


def raw(name, data):
    with open(os.path.join(d, name + ".tar"), "wb") as f:
        f.write(data)


REG, DIR, SYM, LNK, CHR = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE
# names
tar("traversal", [{"name": "ok"}, {"name": "../../escape-traversal", "data": b"x"}])
tar("absolute", [{"name": out + "/escape-absolute", "data": b"x"}])
tar("symlink-escape", [{"name": "link", "type": SYM, "linkname": "../../../../../../../../../.." + out},
                       {"name": "link/pwned", "data": b"x"}])
tar("symlink-escape-deep", [{"name": "a", "type": DIR}, {"name": "a/link", "type": SYM, "linkname": "../.."},
                            {"name": "a/link/pwned", "data": b"x"}])
tar("hardlink-escape", [{"name": "hl", "type": LNK, "linkname": "../../../../../../etc/passwd"}])
tar("hardlink-via-symlink", [{"name": "etclink", "type": SYM, "linkname": "/etc"},
                             {"name": "hl", "type": LNK, "linkname": "etclink/passwd"}])
tar("hardlink-absolute", [{"name": "hl", "type": LNK, "linkname": "/etc/passwd"}])
tar("hardlink-missing", [{"name": "hl", "type": LNK, "linkname": "no/such/file"}])
tar("hardlink-to-dir", [{"name": "dir", "type": DIR}, {"name": "hl", "type": LNK, "linkname": "dir"}])
tar("symlink-loop", [{"name": "l1", "type": SYM, "linkname": "l2"}, {"name": "l2", "type": SYM, "linkname": "l1"},
                     {"name": "l1/x", "data": b"x"}])
tar("root-symlink", [{"name": ".", "type": SYM, "linkname": "/"}])
tar("whiteout-dotdot", [{"name": "dir", "type": DIR}, {"name": "dir/.wh..."}])
tar("whiteout-escape", [{"name": "../.wh.outside"}])
tar("name-too-long", [{"name": "n" * 300, "data": b"x"}])
# a path longer than PATH_MAX made of names the filesystem allows
tar("path-too-long", [{"name": "/".join(["p" * 250] * 20) + "/deep", "data": b"x"}])
tar("link-too-long", [{"name": "longlink", "type": SYM, "linkname": "t" * 5000}])
# archives that lie about sizes
b = io.BytesIO()
with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
    ti = tarfile.TarInfo("big")
    ti.size = 5
    t.addfile(ti, io.BytesIO(b"12345"))
h = bytearray(b.getvalue())
# the ustar size field says 8 GiB - 1; the checksum is made right
h[124:136] = b"77777777777\0"
h[148:156] = b"        "
h[148:156] = ("%06o\0 " % sum(h[:512])).encode()
raw("absurd-size", bytes(h[:1024]))
# a pax header whose record claims an absurd length
h = bytearray(512)
h[0:14] = b"././@PaxHeader"
h[100:108] = b"0000644\0"
h[108:116] = b"0000000\0"
h[116:124] = b"0000000\0"
h[124:136] = b"77777777777\0"
h[136:148] = b"00000000000\0"
h[156:157] = b"x"
h[257:263] = b"ustar\0"
h[263:265] = b"00"
h[148:156] = b"        "
h[148:156] = ("%06o\0 " % sum(h)).encode()
raw("absurd-pax", bytes(h) + b"99999999999 path=" + b"a" * 495 + bytes(1024))
# a pax size record far beyond the archive
tar("pax-size", [{"name": "f", "data": b"abc", "pax_headers": {"size": "99999999999999"}}])
# a good archive, and the same cut in the middle of the file
b = io.BytesIO()
with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
    ti = tarfile.TarInfo("file")
    ti.size = 100000
    t.addfile(ti, io.BytesIO(bytes((i * 7 + i // 251) & 255 for i in range(100000))))
good = b.getvalue()
raw("complete", good)
raw("truncated", good[:50000])
with open(os.path.join(d, "padded-members.tar.gz"), "wb") as f:
    f.write(gzip.compress(good[:40960], mtime=0) + bytes(100) + gzip.compress(good[40960:], mtime=0))
# a device node (refused without privileges unless --rootless)
tar("dev", [{"name": "dev", "type": CHR, "devmajor": 1, "devminor": 3}])
# an absolute symlink is relative to the root, as inside a container
tar("abs-symlink", [{"name": "alink", "type": SYM, "linkname": out},
                    {"name": "alink/inside", "data": b"x"}])
# bombs: the good archive, then 64 MiB of zeros that compress to little
with gzip.open(os.path.join(d, "bomb.tar.gz"), "wb", compresslevel=9) as g:
    g.write(good)
    for _ in range(64):
        g.write(bytes(1 << 20))
if shutil.which("zstd"):
    with open(os.path.join(d, "bomb.tar.zst"), "wb") as f:
        p = subprocess.Popen(["zstd", "-q", "-c", "-19"], stdin=subprocess.PIPE, stdout=f)
        p.stdin.write(good)
        for _ in range(64):
            p.stdin.write(bytes(1 << 20))
        p.stdin.close()
        if p.wait() != 0:
            sys.exit("zstd failed")
