#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Build an OCI image in a layout from layer files, independently of ocitree
and umoci, for tests:

  mkimage.py LAYOUT TAG [OPTIONS] LAYER...

Each LAYER is an uncompressed tar file, compressed as --compress says
(gzip, written by Python's gzip module, or none), unless --raw is given:
then each LAYER is used as the blob as it is, with the --media-type given.

  --compress gzip|none     (default gzip)
  --raw MEDIA_TYPE         take the files as finished blobs
  --diff-id N=DIGEST       use DIGEST as the diff_id of layer N (0-based),
                           right or wrong
  --config JSON            merged into the image config's "config" object
  --base TAG               start from the layers of TAG in LAYOUT
"""
import gzip
import io
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ocitest import blob_get, blob_put, index_load, index_tag, layout_init, sha256  # noqa: E402


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    layout, tag = args[0], args[1]
    args = args[2:]
    compress, raw, diff_ids, extra, base = "gzip", None, {}, {}, None
    layers = []
    while args:
        a = args.pop(0)
        if a == "--compress":
            compress = args.pop(0)
        elif a == "--raw":
            raw = args.pop(0)
        elif a == "--diff-id":
            n, d = args.pop(0).split("=", 1)
            diff_ids[int(n)] = d
        elif a == "--config":
            extra = json.loads(args.pop(0))
        elif a == "--base":
            base = args.pop(0)
        else:
            layers.append(a)

    layout_init(layout)
    index = index_load(layout)

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    config = {"architecture": arch, "os": "linux", "created": "2024-01-02T03:04:05Z",
              "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
              "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {}, "layers": []}
    if base:
        entry = [m for m in index["manifests"]
                 if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == base][0]
        manifest = json.loads(blob_get(layout, entry["digest"]))
        config = json.loads(blob_get(layout, manifest["config"]["digest"]))
    config["config"].update(extra)

    for i, path in enumerate(layers):
        with open(path, "rb") as f:
            data = f.read()
        if raw:
            blob, mt = data, raw
            diff_id = diff_ids.get(i)
            if diff_id is None:
                diff_id = sha256(gzip.decompress(data) if raw.endswith("gzip") else data)
        else:
            diff_id = diff_ids.get(i, sha256(data))
            if compress == "gzip":
                buf = io.BytesIO()
                with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
                    g.write(data)
                blob, mt = buf.getvalue(), "application/vnd.oci.image.layer.v1.tar+gzip"
            else:
                blob, mt = data, "application/vnd.oci.image.layer.v1.tar"
        manifest["layers"].append({"mediaType": mt, "digest": blob_put(layout, blob), "size": len(blob)})
        config["rootfs"]["diff_ids"].append(diff_id)
        config["history"].append({"created": "2024-01-02T03:04:05Z", "created_by": "mkimage.py"})

    cblob = json.dumps(config, sort_keys=True).encode()
    manifest["config"] = {"mediaType": "application/vnd.oci.image.config.v1+json",
                          "digest": blob_put(layout, cblob), "size": len(cblob)}
    mblob = json.dumps(manifest, sort_keys=True).encode()
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob_put(layout, mblob),
            "size": len(mblob)}
    index_tag(layout, index, tag, desc)
    print(desc["digest"])


main()
