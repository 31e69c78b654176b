#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# bench/session-slim.sh [OCITREE] [CORPUS]: the scripted session of
# tests/fs/commit.sh on the corpus image oci:slim (12.6k entries, 3 layers,
# whiteouts): mount it writable, create, change, delete, rename, chmod,
# chown, hardlink, remove and make again directories (also big image
# directories), commit, and compare what umoci (and ocitree, when it has
# unpack) unpack from the new tag with the mounted tree, exactly.  Prints
# the times; exits 1 on any difference.  Root.  Works on a copy of the
# layout (blobs hardlinked), so the corpus is left alone.
#
#   sudo bench/session-slim.sh _build/ocitree /var/tmp/ocitree-corpus
set -uo pipefail
OCITREE=$(realpath "${1:-_build/ocitree}")
CORPUS=${2:-/var/tmp/ocitree-corpus}
W=${BENCH_DIR:-/var/tmp/ocitree-bench}/session-slim
HERE=$(cd "$(dirname "$0")" && pwd)
export OCITREE_CACHE_DIR=${OCITREE_CACHE_DIR:-$(dirname "$W")/cache}
umnt() { "$OCITREE" umount "$1" 2>/dev/null || umount -l "$1" 2>/dev/null; for _ in $(seq 50); do findmnt -M "$1" >/dev/null || return 0; sleep 0.05; done; }
now() { date +%s.%N; }
fail=0
step() { printf '%-60s ' "$1"; shift; if "$@" >"$W/out" 2>&1; then echo ok; else echo FAILED; tail -20 "$W/out"; fail=1; fi; }

umnt "$W/mnt" 2>/dev/null
rm -rf "$W"
mkdir -p "$W/l/blobs" "$W/mnt" "$W/upper"
cp "$CORPUS/oci/oci-layout" "$CORPUS/oci/index.json" "$W/l/"
cp -al "$CORPUS/oci/blobs/sha256" "$W/l/blobs/"
L=$W/l M=$W/mnt U=$W/upper

s=$(now)
step "mount oci:slim writable" "$OCITREE" mount --upper "$U" --image "$L:slim" "$M"
echo "  mount: $(echo "$(now) - $s" | bc) s"

# the changes; run by bash -e, so that the first failure stops it
read -r -d '' SESSION <<'EOS'
M=$1
# files: new, changed, appended, truncated
printf 'new file\n' >"$M/etc/ocitree-test.conf"
echo "10.0.0.1 db.example" >>"$M/etc/hosts"
sed -i 's/^root:.*/root:x:0:0:root:\/root:\/bin\/bash/' "$M/etc/passwd"
: >"$M/etc/motd"
dd if=/dev/urandom of="$M/var/tmp/blob" bs=1M count=5 status=none
# deleted files and directories
rm "$M/etc/debian_version"
rm -r "$M/usr/lib/python3/dist-packages/pkg_resources"
# renamed: a file, image directories (one of them big), across directories
mv "$M/usr/bin/perl" "$M/usr/bin/perl.moved"
mv "$M/usr/share/perl5" "$M/usr/share/perl5.moved"
mv "$M/usr/lib/python3/dist-packages" "$M/usr/lib/python3/dist-packages.moved"
mv "$M/etc/default" "$M/opt/default"
# modes and owners
chmod 700 "$M/etc/ssl"
chmod u+s "$M/usr/bin/env"
chown 1000:1000 "$M/var/tmp/blob"
chown -R 33:33 "$M/var/cache/debconf"
touch -d @1500000000 "$M/etc/os-release"
setfattr -n user.ocitree -v test "$M/etc/hostname"
# hardlinks: new ones, and to image files
ln "$M/etc/hosts" "$M/etc/hosts.link"
ln "$M/usr/bin/env" "$M/usr/local/bin/env-link"
# directories removed and made again
rm -r "$M/var/lib/apt/lists"
mkdir -p "$M/var/lib/apt/lists/partial"
rm -r "$M/root"
mkdir -m 700 "$M/root"
echo 'export X=1' >"$M/root/.profile"
# symlinks, fifos, devices
ln -s /etc/hosts "$M/etc/hosts.sym"
mkfifo "$M/run/fifo"
mknod "$M/dev/null2" c 1 3
# a file made, written and removed: nothing of it in the layer
echo tmp >"$M/tmp/gone"
rm "$M/tmp/gone"
EOS
s=$(now)
step "the session of changes" bash -ec "$SESSION" session "$M"
echo "  session: $(echo "$(now) - $s" | bc) s, upper directory: $(du -sh "$U" | cut -f1), $(find "$U" | wc -l) entries"

s=$(now)
step "live commit to slim-changed" "$OCITREE" commit "$M" --image "$L:slim-changed"
echo "  commit: $(echo "$(now) - $s" | bc) s ($(cat "$W/out"))"
step "oci-validate --full" "${OCI_VALIDATE:-$HERE/../../shared/tools/oci-validate}" --full "$L"

s=$(now)
step "umoci unpack of slim-changed" umoci unpack --image "$L:slim-changed" "$W/umoci"
echo "  umoci unpack: $(echo "$(now) - $s" | bc) s"
step "umoci's rootfs equals the mounted tree exactly" "$HERE/compare-tree.sh" "$W/umoci/rootfs" "$M"
if "$OCITREE" unpack --help >/dev/null 2>&1; then
	step "ocitree unpack of slim-changed" "$OCITREE" unpack --image "$L:slim-changed" "$W/ocitree"
	step "ocitree's rootfs equals the mounted tree exactly" "$HERE/compare-tree.sh" "$W/ocitree/rootfs" "$M"
else
	echo "ocitree unpack: not in this build (the unpack work is not merged yet)"
fi
mkdir -p "$W/ro"
step "a read-only mount of slim-changed" "$OCITREE" mount --image "$L:slim-changed" "$W/ro"
step "equals the mounted tree exactly" "$HERE/compare-tree.sh" "$W/ro" "$M"
umnt "$W/ro"
umnt "$M"
[ "$fail" -eq 0 ] && rm -rf "$W"
exit "$fail"
