#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The demo behind `./run.sh demo`: makes a small image from nothing and runs
# the main job on it: mount the image without extracting it, read from it,
# write into it through an upper directory, and commit the changes as a new
# layer; the umoci workflow (unpack, edit, repack) beside it; and, as root,
# a command run in a container and a recipe built.
# Usage: demo.sh PATH/TO/ocitree
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

# mount without extracting: the layers are read in place, lazily; writes go
# to an upper directory
mkdir mnt upper
step "$O" mount --cache-dir "$W/cache" --upper "$W/upper" --image demo:app "$W/mnt"
show "cat mnt/etc/motd && ls -l mnt/app"
show "findmnt -n -o SOURCE,FSTYPE mnt"
show "echo 'written through the mount' >>mnt/etc/motd && rm mnt/app/hello.sh && mkdir mnt/data && echo 42 >mnt/data/answer"
show "find upper | sort   # the upper directory holds only the changes (overlayfs format)"
step "$O" commit --image demo:app2 --history.comment "edited on a mount" "$W/mnt"
step "$O" umount "$W/mnt"
step "$O" stat --image demo:app2

# the new tag, mounted read-only; and its last layer as stored
mkdir mnt2 mnt3
step "$O" mount --cache-dir "$W/cache" --image demo:app2 "$W/mnt2"
show "cat mnt2/etc/motd mnt2/data/answer && ls mnt2/app"
step "$O" umount "$W/mnt2"
step "$O" mount --cache-dir "$W/cache" --layer 3 --image demo:app2 "$W/mnt3"
show "ls -la mnt3/app   # layer 3 as stored: the deletion is a whiteout"
step "$O" umount "$W/mnt3"

# the umoci workflow gives the same kind of result: unpack, edit, repack
step "$O" unpack --image demo:app2 bundle
show "echo 'edited in the bundle' >>bundle/rootfs/etc/motd"
step "$O" repack --image demo:app3 bundle

# run a command in a container on a writable mount and commit what it did
# (needs root or user namespaces, runc or crun, and a shell in the image:
# the demo copies a static busybox in when there is one)
if [ "$(id -u)" -eq 0 ] && command -v busybox >/dev/null && command -v runc >/dev/null; then
	mkdir -p tools/bin && cp "$(command -v busybox)" tools/bin/busybox && ln -s busybox tools/bin/sh && ln -s busybox tools/bin/cat
	step "$O" insert --image demo:app2 --tag with-sh tools/bin /bin
	step "$O" run --cache-dir "$W/cache" --image demo:with-sh --commit demo:ran -- \
		sh -c 'echo "hello from a container" >/data/ran'
	step "$O" run --cache-dir "$W/cache" --image demo:ran -- cat /data/ran

	# build from a stacker.yaml recipe: each image one layer on a writable
	# mount of its base; a second build finds everything in its cache
	mkdir recipe && echo "imported by the recipe" >recipe/note.txt
	cat >recipe/stacker.yaml <<'EOF'
greeter:
  from: {type: oci, url: "../demo:with-sh"}
  imports: [note.txt]
  run: |
    cp /stacker/imports/note.txt /etc/note
    echo "built by ${{WHO:nobody}}" >/etc/built-by
  environment: {GREETING: hello}
  full_command: [cat, /etc/note, /etc/built-by]
EOF
	show "cat recipe/stacker.yaml"
	step "$O" build --cache-dir "$W/cache" --layout demo -f recipe/stacker.yaml --substitute WHO=the-demo
	step "$O" run --cache-dir "$W/cache" --image demo:greeter
	step "$O" build --cache-dir "$W/cache" --layout demo -f recipe/stacker.yaml --substitute WHO=the-demo
fi

step "$O" fsck --full --layout demo
printf '\nThe layout in %s is a plain OCI layout: skopeo, umoci and runc read it.\n' "$W/demo"
