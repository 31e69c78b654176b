#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# bench/runc-commit.sh [OCITREE] [CORPUS]: runc runs a container whose rootfs
# is a writable mount of the corpus image oci:slim; a command inside writes,
# changes and removes files; commit; the new tag has the change (checked
# through umoci unpack and a read-only mount) and nothing but it.  Root.
# (The images make check builds have no /bin/sh: this runs on the corpus.)
#
#   sudo bench/runc-commit.sh _build/ocitree /var/tmp/ocitree-corpus
set -uo pipefail
OCITREE=$(realpath "${1:-_build/ocitree}")
CORPUS=${2:-/var/tmp/ocitree-corpus}
W=${BENCH_DIR:-/var/tmp/ocitree-bench}/runc-commit
HERE=$(cd "$(dirname "$0")" && pwd)
export OCITREE_CACHE_DIR=${OCITREE_CACHE_DIR:-$(dirname "$W")/cache}
umnt() { "$OCITREE" umount "$1" 2>/dev/null || umount -l "$1" 2>/dev/null; for _ in $(seq 50); do findmnt -M "$1" >/dev/null || return 0; sleep 0.05; done; }
fail=0
step() { printf '%-64s ' "$1"; shift; if "$@" >"$W/out" 2>&1; then echo ok; else echo FAILED; tail -20 "$W/out"; fail=1; fi; }
expect() { printf '%-64s ' "$1"; if [ "$2" = "$3" ]; then echo ok; else echo "FAILED: got '$2', want '$3'"; fail=1; fi; }

umnt "$W/bundle/rootfs" 2>/dev/null
rm -rf "$W"
mkdir -p "$W/l/blobs" "$W/bundle/rootfs" "$W/upper"
cp "$CORPUS/oci/oci-layout" "$CORPUS/oci/index.json" "$W/l/"
cp -al "$CORPUS/oci/blobs/sha256" "$W/l/blobs/"
L=$W/l R=$W/bundle/rootfs

step "mount oci:slim writable as the bundle's rootfs" "$OCITREE" mount --upper "$W/upper" --image "$L:slim" "$R"
(cd "$W/bundle" && runc spec)
# a writable root, the command of the test, no terminal
jq '.root.readonly = false | .process.terminal = false | .process.args = ["/bin/sh", "-c",
  "echo hello from runc > /root/hello && mkdir -p /srv/data && seq 1 1000 > /srv/data/numbers && rm /etc/debian_version && chmod 600 /etc/hostname && ln -s /srv/data /data && id -u > /srv/uid && sync"]' \
	"$W/bundle/config.json" >"$W/config.json" && mv "$W/config.json" "$W/bundle/config.json"
step "runc run: the container writes into the mount" runc run --bundle "$W/bundle" ocitree-runc-$$
expect "the change shows in the mount" "$(cat "$R/root/hello")" "hello from runc"
step "commit the live mount" "$OCITREE" commit "$R" --image "$L:slim-runc"
cat "$W/out"
step "umoci unpack of the new tag" umoci unpack --image "$L:slim-runc" "$W/umoci"
U=$W/umoci/rootfs
expect "/root/hello is in the image" "$(cat "$U/root/hello")" "hello from runc"
expect "/srv/data/numbers is in the image" "$(wc -l <"$U/srv/data/numbers")" "1000"
expect "the process ran as root" "$(cat "$U/srv/uid")" "0"
expect "/etc/debian_version is gone" "$([ -e "$U/etc/debian_version" ] && echo there || echo gone)" "gone"
expect "/etc/hostname is 600" "$(stat -c %a "$U/etc/hostname")" "600"
expect "/data is a symlink" "$(readlink "$U/data")" "/srv/data"
step "the image equals the mounted tree exactly" "$HERE/compare-tree.sh" "$U" "$R"
layer=$("$OCITREE" stat --image "$L:slim-runc" --json | jq -r '.manifest.blob.layers[-1].digest' | cut -d: -f2)
echo "the new layer: $(tar -tzf "$L/blobs/sha256/$layer" | wc -l) entries, $(stat -c %s "$L/blobs/sha256/$layer") bytes:"
tar -tzf "$L/blobs/sha256/$layer" | sed 's/^/    /'
umnt "$R"
[ "$fail" -eq 0 ] && rm -rf "$W"
exit "$fail"
