# SPDX-License-Identifier: Apache-2.0
"""What the test tools that write tars and layouts share (tests/fs/mkimage.py,
tests/tools/mkimage.py, tests/tools/hostile-tars.py, tests/fuzz/make-seeds.py):
written with Python's own tarfile, hashlib and json, never with ocitree."""
import hashlib
import io
import json
import os
import tarfile

REF_NAME = "org.opencontainers.image.ref.name"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_bytes(entries, fmt=tarfile.PAX_FORMAT, mtime=None):
    """A tar of entries: dicts of TarInfo attributes with "name" and, for
    regular files, "data"; mtime, when given, for every entry first."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for e in entries:
            e = dict(e)
            data = e.pop("data", b"")
            ti = tarfile.TarInfo(e.pop("name"))
            if mtime is not None:
                ti.mtime = mtime
            for k, v in e.items():
                setattr(ti, k, v)
            if ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data else None)
    return b.getvalue()


def layout_init(layout):
    """Make layout an OCI image layout if it is not one yet."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    if not os.path.exists(os.path.join(layout, "oci-layout")):
        with open(os.path.join(layout, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')


def blob_put(layout, data):
    """Store data as a blob of layout; its digest."""
    d = sha256(data)
    p = os.path.join(layout, "blobs", "sha256", d.split(":")[1])
    if not os.path.exists(p):
        with open(p + ".tmp", "wb") as f:
            f.write(data)
        os.rename(p + ".tmp", p)
    return d


def blob_get(layout, digest):
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":")[1]), "rb") as f:
        return f.read()


def index_load(layout):
    p = os.path.join(layout, "index.json")
    if not os.path.exists(p):
        return {"schemaVersion": 2, "manifests": []}
    with open(p) as f:
        return json.load(f)


def index_tag(layout, index, tag, desc):
    """Write index (from index_load) with desc, a manifest descriptor, as
    tag in place of what had that tag."""
    desc = dict(desc, annotations={REF_NAME: tag})
    index["manifests"] = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != tag]
    index["manifests"].append(desc)
    p = os.path.join(layout, "index.json")
    with open(p + ".tmp", "w") as f:
        json.dump(index, f)
    os.rename(p + ".tmp", p)
