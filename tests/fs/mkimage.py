#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Build an OCI image layout from a small text description, for tests.

    mkimage.py LAYOUT TAG < SPEC
    mkimage.py --content CONTENT    (print the bytes of a CONTENT spec)

SPEC has one directive per line ('#' starts a comment):

    layer gzip|zstd|none            start a new layer (lowest first)
    dir PATH [MODE [UID [GID]]]
    file PATH [MODE [UID [GID]]] CONTENT
    symlink PATH TARGET
    hardlink PATH TARGET
    fifo PATH
    chr PATH MAJOR MINOR | blk PATH MAJOR MINOR
    whiteout PATH                   the entry DIR/.wh.NAME
    opaque DIR                      the entry DIR/.wh..wh..opq
    xattr NAME VALUE                (on the previous entry; VALUE hex: 0x...)
    mtime SECONDS                   (for the entries that follow)

CONTENT is text:STRING (with \\n escapes), random:SEED:SIZE (deterministic
bytes that compress a little), zeros:SIZE, pattern:SIZE (repeating text),
or posixbig:SIZE (the big file of tests/fs/posix.c).  The layout gets an OCI config with the right diff_ids, a manifest
and an index.json entry tagged TAG (other tags are kept).
"""
import gzip
import io
import json
import os
import random
import subprocess
import sys
import tarfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from ocitest import blob_put, index_load, index_tag, layout_init, sha256  # noqa: E402


def content(spec):
    kind, _, rest = spec.partition(":")
    if kind == "text":
        return rest.encode().decode("unicode_escape").encode("latin-1")
    if kind == "zeros":
        return bytes(int(rest))
    if kind == "pattern":
        n = int(rest)
        unit = b"ocitree pattern line 0123456789 abcdefghijklmnopqrstuvwxyz\n"
        return (unit * (n // len(unit) + 1))[:n]
    if kind == "posixbig":
        # tests/fs/posix.c's big_content()
        n = int(rest)
        return bytes(97 + (i * 7 + i // 4093) % 26 for i in range(n))
    if kind == "random":
        seed, size = rest.split(":")
        rng = random.Random(int(seed))
        n = int(size)
        # words from a small alphabet: random but compressible, like binaries
        words = [bytes(rng.getrandbits(8) for _ in range(rng.randint(2, 12))) for _ in range(512)]
        out = bytearray()
        while len(out) < n:
            out += words[rng.getrandbits(9)]
        return bytes(out[:n])
    raise SystemExit("bad content spec: " + spec)


def main():
    layout, tag = sys.argv[1], sys.argv[2]
    layout_init(layout)
    layers = []  # (compression, [tarinfo, data])
    mtime = 1700000000
    for line in sys.stdin:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        w = line.split(" ")
        op = w[0]
        if op == "layer":
            layers.append((w[1], []))
            continue
        if op == "mtime":
            mtime = int(w[1])
            continue
        entries = layers[-1][1]
        if op == "xattr":
            ti = entries[-1][0]
            v = " ".join(w[2:])
            if v.startswith("0x"):
                v = bytes.fromhex(v[2:]).decode("utf-8", "surrogateescape")
            ti.pax_headers["SCHILY.xattr." + w[1]] = v
            continue
        ti = tarfile.TarInfo(w[1])
        ti.mtime = mtime
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        data = None
        if op in ("dir", "file"):
            args = w[2:]
            if op == "file":
                # the content is the rest of the line from its kind on
                k = next(i for i, a in enumerate(args)
                         if a.split(":")[0] in ("text", "random", "zeros", "pattern", "posixbig"))
                data = content(" ".join(args[k:]))
                args = args[:k]
            ti.type = tarfile.DIRTYPE if op == "dir" else tarfile.REGTYPE
            ti.mode = int(args[0], 8) if len(args) > 0 else (0o755 if op == "dir" else 0o644)
            ti.uid = int(args[1]) if len(args) > 1 else 0
            ti.gid = int(args[2]) if len(args) > 2 else 0
            if data is not None:
                ti.size = len(data)
        elif op == "symlink":
            ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, w[2], 0o777
        elif op == "hardlink":
            ti.type, ti.linkname, ti.mode = tarfile.LNKTYPE, w[2], 0o644
        elif op == "fifo":
            ti.type, ti.mode = tarfile.FIFOTYPE, 0o644
        elif op in ("chr", "blk"):
            ti.type = tarfile.CHRTYPE if op == "chr" else tarfile.BLKTYPE
            ti.mode, ti.devmajor, ti.devminor = 0o600, int(w[2]), int(w[3])
        elif op == "whiteout":
            d, _, n = w[1].rpartition("/")
            ti = tarfile.TarInfo((d + "/" if d else "") + ".wh." + n)
            ti.mtime, ti.mode = mtime, 0o644
        elif op == "opaque":
            ti = tarfile.TarInfo(w[1].rstrip("/") + "/.wh..wh..opq")
            ti.mtime, ti.mode = mtime, 0o644
        else:
            raise SystemExit("unknown directive: " + line)
        entries.append([ti, data])

    descs, diff_ids = [], []
    for comp, entries in layers:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
            for ti, data in entries:
                t.addfile(ti, io.BytesIO(data) if data is not None else None)
        tar = raw.getvalue()
        diff_ids.append(sha256(tar))
        if comp == "gzip":
            blob = gzip.compress(tar, compresslevel=6, mtime=0)
            mt = "application/vnd.oci.image.layer.v1.tar+gzip"
        elif comp == "zstd":
            blob = subprocess.run(["zstd", "-q", "-c", "-3"], input=tar, stdout=subprocess.PIPE, check=True).stdout
            mt = "application/vnd.oci.image.layer.v1.tar+zstd"
        else:
            blob = tar
            mt = "application/vnd.oci.image.layer.v1.tar"
        descs.append({"mediaType": mt, "digest": blob_put(layout, blob), "size": len(blob)})

    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "mkimage.py"} for _ in layers],
    }
    cblob = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob_put(layout, cblob),
                   "size": len(cblob)},
        "layers": descs,
    }
    mblob = json.dumps(manifest).encode()
    index_tag(layout, index_load(layout), tag,
              {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob_put(layout, mblob),
               "size": len(mblob)})
    for d in descs:
        print(d["digest"])


if len(sys.argv) == 3 and sys.argv[1] == "--content":
    # the bytes a CONTENT spec stands for, to check what a mount shows
    sys.stdout.buffer.write(content(sys.argv[2]))
else:
    main()
