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
import hashlib
import io
import json
import os
import platform
import sys


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_blob(layout, data):
    d = sha256(data)
    path = os.path.join(layout, "blobs", "sha256", d.split(":")[1])
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.rename(path + ".tmp", path)
    return d


def get_blob(layout, digest):
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":")[1]), "rb") as f:
        return f.read()


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

    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    if not os.path.exists(os.path.join(layout, "oci-layout")):
        with open(os.path.join(layout, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
    index_path = os.path.join(layout, "index.json")
    index = {"schemaVersion": 2, "manifests": []}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    config = {"architecture": arch, "os": "linux", "created": "2024-01-02T03:04:05Z",
              "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
              "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {}, "layers": []}
    if base:
        entry = [m for m in index["manifests"]
                 if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == base][0]
        manifest = json.loads(get_blob(layout, entry["digest"]))
        config = json.loads(get_blob(layout, manifest["config"]["digest"]))
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
        manifest["layers"].append({"mediaType": mt, "digest": put_blob(layout, blob), "size": len(blob)})
        config["rootfs"]["diff_ids"].append(diff_id)
        config["history"].append({"created": "2024-01-02T03:04:05Z", "created_by": "mkimage.py"})

    cblob = json.dumps(config, sort_keys=True).encode()
    manifest["config"] = {"mediaType": "application/vnd.oci.image.config.v1+json",
                          "digest": put_blob(layout, cblob), "size": len(cblob)}
    mblob = json.dumps(manifest, sort_keys=True).encode()
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put_blob(layout, mblob),
            "size": len(mblob), "annotations": {"org.opencontainers.image.ref.name": tag}}
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append(desc)
    with open(index_path + ".tmp", "w") as f:
        json.dump(index, f)
    os.rename(index_path + ".tmp", index_path)
    print(desc["digest"])


main()
