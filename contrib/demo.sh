#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The demo behind `./run.sh demo`: makes a small image from nothing and runs
# the main job on it: build, unpack and repack like umoci, then mount the
# image without extracting it and read from it.  Usage: demo.sh PATH/TO/ocitree
set -eu
O=${1:-ocitree}
W=$(mktemp -d /tmp/ocitree-demo.XXXXXX)
cleanup() {
	for m in "$W"/mnt*; do
		[ -d "$m" ] && "$O" umount "$m" 2>/dev/null || true
	done
	rm -rf "$W"
}
trap cleanup EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; sh -c "$*"; }

cd "$W"
mkdir -p src/etc src/app
echo "Welcome to the ocitree demo image" >src/etc/motd
printf '#!/bin/sh\necho "hello from the image"\n' >src/app/hello.sh && chmod 755 src/app/hello.sh

step "$O" init --layout demo
step "$O" new --image demo:base
step "$O" insert --image demo:base src/etc /etc
step "$O" insert --image demo:base --history.comment "the app" src/app /app
step "$O" config --image demo:base --tag app --config.env GREETING=hello --config.entrypoint /app/hello.sh \
	--author "ocitree demo"

# the umoci workflow: unpack to a runtime bundle, edit, repack as a layer
step "$O" unpack --image demo:app bundle
show "echo 'edited in the bundle' >>bundle/rootfs/etc/motd && rm bundle/rootfs/app/hello.sh && echo data >bundle/rootfs/app/data"
step "$O" repack --image demo:app2 bundle
step "$O" stat --image demo:app2

# mount without extracting: the layers are read in place, lazily
mkdir mnt
step "$O" mount --cache-dir "$W/cache" --image demo:app2 "$W/mnt"
show "ls -l mnt/app && cat mnt/etc/motd"
show "findmnt -n -o SOURCE,FSTYPE,OPTIONS mnt"
step "$O" umount "$W/mnt"
mkdir mnt2
step "$O" mount --cache-dir "$W/cache" --layer 3 --image demo:app2 "$W/mnt2"
show "ls -la mnt2/app   # layer 3 as stored: the deletion is a whiteout"
step "$O" umount "$W/mnt2"

step "$O" fsck --full --layout demo
printf '\nThe layout in %s is a plain OCI layout: skopeo, umoci and runc read it.\n' "$W/demo"
