#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# ocitree store: a containers/storage additional layer store, used by a real
# podman pulling from a real docker-registry on a loopback port.  podman's
# state (graphroot, runroot, tmp) lives under $T through a private
# storage.conf and containers.conf; the registry's log says which blobs
# podman fetched.
. "$top_srcdir/tests/fs/lib-fs.sh"
. "$top_srcdir/tests/podman-lib.sh"

need() { # PROGRAM...: skip without them (under CI=true they are installed: fail)
	local p
	for p in "$@"; do
		have "$p" && continue
		if [ "${CI:-}" = true ]; then
			_result 1 "$p is installed"
			done_testing
			exit 1
		fi
		skip_all "$p is not installed"
	done
}
[ "$(id -u)" -eq 0 ] || skip_all "the store is tested with podman as root (kernel overlayfs)"
need_fuse
need podman skopeo runc /usr/bin/docker-registry /usr/bin/busybox getfattr setfattr zstd
BUSYBOX=/usr/bin/busybox
file -L "$BUSYBOX" 2>/dev/null | grep -q "statically linked" || ldd "$BUSYBOX" 2>&1 | grep -q "not a dynamic" ||
	skip_all "$BUSYBOX is not statically linked (busybox-static)"

STORE=$T/store
mkdir -p "$STORE" "$T/graph" "$T/run" "$T/tmp" "$T/net"

# ---- the registry, on a free loopback port ----
at_exit registry_stop
if ! registry_start "$T" info; then
	_result 1 "docker-registry listens on $REG"
	diag "$(tail -5 "$T/registry.log")"
	done_testing
	exit 1
fi

# ---- podman, all of its state under $T ----
cat >"$T/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$T/graph"
runroot = "$T/run"
[storage.options]
additionallayerstores = ["$STORE:ref"]
EOF
podman_containers_conf "$T"
export CONTAINERS_STORAGE_CONF=$T/storage.conf CONTAINERS_CONF=$T/containers.conf
unset CONTAINERS_REGISTRIES_CONF
PODMAN_LOG=$T/podman.log
: >"$PODMAN_LOG"
# pm ARGS...: podman, bounded in time; its stderr is kept for the final check
pm() {
	timeout 120 podman "$@" 2> >(tee -a "$PODMAN_LOG" >&2)
}
cleanup_podman() {
	timeout 60 podman rm -a -f >/dev/null 2>&1
	timeout 60 podman rmi -a -f >/dev/null 2>&1
	# whatever podman left mounted under $T, innermost first (the store is
	# lib-fs.sh's)
	findmnt -rn -o TARGET | grep "^$T/" | grep -vx "$STORE" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
}
at_exit cleanup_podman

# ---- the images ----
# app: busybox and files in the lowest layer; a file deleted above it, a
# directory made opaque above it, a hardlink pair and a file with xattrs
mkdir -p "$T/src/root/bin" "$T/src/root/d" "$T/src/opq" "$T/src/top/hl" "$T/src/top/x"
cp "$BUSYBOX" "$T/src/root/bin/busybox"
for c in sh cat ls stat find wc test; do ln -s busybox "$T/src/root/bin/$c"; done
echo "kept from layer 1" >"$T/src/root/keep"
echo "deleted in layer 2" >"$T/src/root/gone"
echo "hidden by the opaque directory" >"$T/src/root/d/lower-only"
echo "the opaque directory's own" >"$T/src/opq/upper-file"
echo "one inode, two names" >"$T/src/top/hl/a"
ln "$T/src/top/hl/a" "$T/src/top/hl/b"
echo "with xattrs" >"$T/src/top/x/attr"
setfattr -n user.ocitree -v store-test "$T/src/top/x/attr"
ok "app: a layout" "$OCITREE" init --layout "$T/build"
ok "app: a new image" "$OCITREE" new --image "$T/build:app"
ok "app layer 1: busybox and files" "$OCITREE" insert --image "$T/build:app" "$T/src/root" /
ok "app layer 2: a whiteout" "$OCITREE" insert --image "$T/build:app" --whiteout /gone
ok "app layer 3: an opaque directory" "$OCITREE" insert --image "$T/build:app" --opaque "$T/src/opq" /d
ok "app layer 4 (zstd): a hardlink and xattrs" "$OCITREE" insert --compress zstd --image "$T/build:app" "$T/src/top" /
# other: an image no layout of the store has
mkdir -p "$T/src/other/bin"
cp "$BUSYBOX" "$T/src/other/bin/busybox"
ln -s busybox "$T/src/other/bin/cat"
echo "pulled the usual way" >"$T/src/other/other"
ok "other: an image the store does not have" sh -c "'$OCITREE' new --image '$T/build:other' &&
	'$OCITREE' insert --image '$T/build:other' '$T/src/other' /"

layers() { # TAG: the layer digests of an image of $T/build
	"$OCITREE" stat --image "$T/build:$1" --json | /usr/bin/python3 -c \
		'import json, sys; print("\n".join(l["digest"] for l in json.load(sys.stdin)["manifest"]["blob"]["layers"]))'
}
APP_LAYERS=$(layers app)
OTHER_LAYERS=$(layers other)
is "app has 4 layers" "$(echo "$APP_LAYERS" | wc -l)" 4
DIFF_IDS=$("$OCITREE" stat --image "$T/build:app" --json | /usr/bin/python3 -c \
	'import json, sys; print("\n".join(json.load(sys.stdin)["config"]["blob"]["rootfs"]["diff_ids"]))')

for img in app other; do
	ok "skopeo copy $img to the registry" timeout 120 skopeo copy -q --dest-tls-verify=false \
		"oci:$T/build:$img" "docker://$REG/$img:1"
done

# ---- the store: two layouts, app only in the second, and not yet ----
ok "a first layout (empty)" "$OCITREE" init --layout "$T/a"
ok "a second layout" "$OCITREE" init --layout "$T/b"
# in the foreground, logging what it is told (use, release) to a file this
# test reads; the daemon mode is the rootless part's
_mounts+=("$STORE")
"$OCITREE" --log=debug store -f --layout "$T/a" --layout "$T/b" --cache-dir "$T/cache" "$STORE" 2>"$T/store.log" &
STORE_PID=$!
for i in $(seq 200); do
	is_mounted "$STORE" && break
	kill -0 "$STORE_PID" 2>/dev/null || break
	sleep 0.05
done
check "ocitree store mounts" is_mounted "$STORE"
L1=$(echo "$APP_LAYERS" | sed -n 1p)
L2=$(echo "$APP_LAYERS" | sed -n 2p)
L3=$(echo "$APP_LAYERS" | sed -n 3p)
L4=$(echo "$APP_LAYERS" | sed -n 4p)
check "a layer no layout has yet is ENOENT" "[ ! -e '$STORE/$L1' ] && [ ! -e '$STORE/key/$L1/diff' ]"
# the layout gets the image while the store runs (as skopeo sync would)
ok "the second layout gets app" timeout 120 skopeo copy -q "oci:$T/build:app" "oci:$T/b:app"
check "... and the store sees it, flat and under any key" \
	"[ -d '$STORE/$L1/diff' ] && [ -f '$STORE/$L1/info' ] && [ -f '$STORE/k/e/y/$L1/blob' ]"
check "blob is the compressed blob" cmp -s "$STORE/$L1/blob" "$T/b/blobs/sha256/${L1#sha256:}"
info_field() { /usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
is "info: diff-digest is the diff_id" "$(info_field "$STORE/$L4/info" diff-digest)" "$(echo "$DIFF_IDS" | sed -n 4p)"
is "info: compressed-diff-digest" "$(info_field "$STORE/$L4/info" compressed-diff-digest)" "$L4"
is "info: compressed-size" "$(info_field "$STORE/$L4/info" compressed-size)" "$(stat -c %s "$STORE/$L4/blob")"
is "info: compression is gzip (2)" "$(info_field "$STORE/$L1/info" compression)" 2
is "info: compression is zstd (4)" "$(info_field "$STORE/$L4/info" compression)" 4
is "diff: a whiteout is a 0/0 character device" "$(stat -c '%F %t:%T' "$STORE/$L2/diff/gone")" "character special file 0:0"
is "diff: the opaque directory is marked" \
	"$(getfattr --absolute-names --only-values -n trusted.overlay.opaque "$STORE/$L3/diff/d" 2>&1)" y
check "diff: the whiteout entries themselves are not shown" "[ ! -e '$STORE/$L2/diff/.wh.gone' ] &&
	[ ! -e '$STORE/$L3/diff/d/.wh..wh..opq' ]"
is "diff: hardlinks share an inode" "$(stat -c %i "$STORE/$L4/diff/hl/a")" "$(stat -c %i "$STORE/$L4/diff/hl/b")"
is "diff: the xattr" "$(getfattr --absolute-names --only-values -n user.ocitree "$STORE/$L4/diff/x/attr" 2>&1)" store-test
check "files of different layers have different inode numbers" \
	"[ \"\$(stat -c %i '$STORE/$L1/diff')\" != \"\$(stat -c %i '$STORE/$L2/diff')\" ]"
# containers/storage's use file and rmdir: ENOENT, and nothing is removed
fails 1 "No such file" "creating the use file is ENOENT" bash -c "echo > '$STORE/$L1/use'"
fails 1 "No such file" "rmdir of a layer is ENOENT" rmdir "$STORE/$L1"
check "... and the layer is still there" "[ -f '$STORE/$L1/diff/keep' ]"
fails 1 "Read-only" "other changes are refused" touch "$STORE/$L1/diff/new"

# ---- podman pulls app: only the manifest and the config come from the registry ----
log_mark() { wc -l <"$T/registry.log"; }
blob_gets() { # MARK: digests of blobs GET from the registry since MARK
	tail -n +$(($1 + 1)) "$T/registry.log" | grep -o '"GET /v2/[^ ]*/blobs/sha256:[0-9a-f]*' | sed 's/.*blobs\///' | sort -u
}
layer_gets() { # MARK LAYERS: how many of LAYERS were fetched since MARK
	local got n=0 l
	got=$(blob_gets "$1")
	for l in $2; do
		echo "$got" | grep -qx "$l" && n=$((n + 1))
	done
	echo $n
}
m=$(log_mark)
ok "podman pull app" pm pull -q --tls-verify=false "$REG/app:1"
is "no layer blob of app was fetched" "$(layer_gets "$m" "$APP_LAYERS")" 0
check "the config was fetched (the registry log is read right)" "blob_gets $m | grep -q ."
ok "podman run app" pm run --rm "$REG/app:1" sh -c \
	'cat /keep /d/upper-file /hl/a /x/attr; ls /d; test -e /gone && echo GONE-IS-BACK; stat -c "%h %i" /hl/a /hl/b'
R=$T/run.out
cp "$T/out" "$R"
check "run: a file of layer 1" grep -qx "'kept from layer 1'" "$R"
check "run: the deleted file stays deleted" ! grep -q GONE-IS-BACK "$R"
check "run: the opaque directory shows its own file only" "grep -qx upper-file '$R' && ! grep -q lower-only '$R'"
check "run: the hardlinked file" grep -qx "'one inode, two names'" "$R"
check "run: the hardlink pair is one inode with two links" \
	"[ \$(grep -c '^2 ' '$R') -eq 2 ] && [ \$(grep '^2 ' '$R' | sort -u | wc -l) -eq 1 ]"
check "run: the file with xattrs" grep -qx "'with xattrs'" "$R"

# podman mount: the overlay's lower directories are the store's
ctr=$(pm create "$REG/app:1" /bin/true)
merged=$(pm mount "$ctr")
check "podman mount" "[ -d '$merged' ]"
lowers=$(grep " $merged " /proc/self/mountinfo | grep -o 'lowerdir=[^,]*' | sed 's/^lowerdir=//' | tr ':' '\n')
in_store=0
for d in $lowers; do
	case $(readlink -f "$d") in "$STORE"/*/diff) in_store=$((in_store + 1)) ;; esac
done
is "the 4 overlay lower directories are in the store" "$in_store" 4
is "the merged tree has the xattr" "$(getfattr --absolute-names --only-values -n user.ocitree "$merged/x/attr" 2>&1)" store-test
check "the merged tree: whiteout and opaque applied" "[ ! -e '$merged/gone' ] && [ ! -e '$merged/d/lower-only' ] &&
	[ -f '$merged/d/upper-file' ]"
pm umount "$ctr" >/dev/null
pm rm "$ctr" >/dev/null

# podman save rebuilds the layers from the store's blob files
ok "podman save app" pm save -q --format oci-archive -o "$T/app-save.tar" "$REG/app:1"
mkdir -p "$T/save"
tar -xf "$T/app-save.tar" -C "$T/save" 2>/dev/null
# (each blob as podman wrote it: gzip, zstd or plain, the layer's tar inside)
saved=$(find "$T/save" -type f | while read -r f; do
	case $(od -An -tx1 -N4 "$f" | tr -d ' ') in
	1f8b*) gzip -dc <"$f" ;;
	28b52ffd) zstd -dcq <"$f" ;;
	*) cat "$f" ;;
	esac | sha256sum | awk '{print "sha256:" $1}'
done | sort -u)
n=0
for d in $DIFF_IDS; do grep -qx "$d" <<<"$saved" && n=$((n + 1)); done
is "the saved archive has the 4 layers, byte for byte (their diff_ids)" "$n" 4

# the same with fuse-overlayfs as podman's mount program (its own graphroot)
if have fuse-overlayfs; then
	sed "s|$T/graph|$T/graph-fo|; s|$T/run|$T/run-fo|" "$T/storage.conf" >"$T/storage-fo.conf"
	printf '[storage.options.overlay]\nmount_program = "%s"\n' "$(command -v fuse-overlayfs)" >>"$T/storage-fo.conf"
	m=$(log_mark)
	ok "fuse-overlayfs: podman pull app" env CONTAINERS_STORAGE_CONF="$T/storage-fo.conf" \
		timeout 120 podman pull -q --tls-verify=false "$REG/app:1"
	is "fuse-overlayfs: no layer blob of app was fetched" "$(layer_gets "$m" "$APP_LAYERS")" 0
	ok "fuse-overlayfs: podman run app" env CONTAINERS_STORAGE_CONF="$T/storage-fo.conf" timeout 120 podman run \
		--rm "$REG/app:1" sh -c 'cat /keep /hl/b; ls /d; test -e /gone && echo GONE-IS-BACK; true'
	is "fuse-overlayfs: every layer, the whiteout and the opaque directory" "$(cat "$T/out")" \
		"kept from layer 1
one inode, two names
upper-file"
	env CONTAINERS_STORAGE_CONF="$T/storage-fo.conf" timeout 60 podman rmi -a -f >/dev/null 2>&1
else
	skip "fuse-overlayfs as podman's mount program" "fuse-overlayfs is not installed"
fi

# ---- an image the store does not have: pulled as usual ----
m=$(log_mark)
ok "podman pull other" pm pull -q --tls-verify=false "$REG/other:1"
is "its layer came from the registry" "$(layer_gets "$m" "$OTHER_LAYERS")" 1
ok "podman run other" pm run --rm "$REG/other:1" cat /other
is "run: other's file" "$(cat "$T/out")" "pulled the usual way"

# ---- podman rmi, and a second pull with the store alive ----
ok "podman rmi app" pm rmi "$REG/app:1"
check "the store is still mounted" is_mounted "$STORE"
check "the store still has the layers" "[ -f '$STORE/$L1/diff/keep' ]"
m=$(log_mark)
ok "podman pull app again" pm pull -q --tls-verify=false "$REG/app:1"
is "again no layer blob was fetched" "$(layer_gets "$m" "$APP_LAYERS")" 0
ok "podman run app again" pm run --rm "$REG/app:1" cat /keep
is "run: the file" "$(cat "$T/out")" "kept from layer 1"

# ---- a layout that drops the image (rm, gc) is seen too ----
ok "ocitree rm app in the layout" "$OCITREE" rm --image "$T/b:app"
ok "ocitree gc" "$OCITREE" gc --layout "$T/b"
check "a layer gone from the layouts is ENOENT under a new key" "[ ! -e '$STORE/after-gc/$L2' ]"

check "podman logged nothing about the additional layer store" \
	"! grep -i 'additional layer\\|additionallayer' '$PODMAN_LOG'"
[ -s "$PODMAN_LOG" ] && diag "podman's stderr:" "$(head -c 2000 "$PODMAN_LOG")"

cleanup_podman
ok "ocitree umount the store" do_umount "$STORE"
st=1
for i in $(seq 100); do
	if ! kill -0 "$STORE_PID" 2>/dev/null; then
		wait "$STORE_PID"
		st=$?
		break
	fi
	sleep 0.05
done
is "the store ends with status 0" "$st" 0
check "podman's use files reached the store" "grep -q 'used (1)' '$T/store.log'"
check "podman's rmdir (release) reached the store" "grep -q 'released' '$T/store.log'"
check "the store logged no warning or error" "! grep -E 'ocitree: (warn|error):|runtime error|Sanitizer' '$T/store.log'"
grep -E 'ocitree: (warn|error):|runtime error|Sanitizer' "$T/store.log" | head -5 | while read -r l; do diag "$l"; done

# ---- a rootless store: nobody, through the setuid fusermount3 ----
# (rootless podman needs subordinate ids this test cannot give nobody; what
# it relies on is checked on the store itself)
if have fusermount3 && [ -u "$(command -v fusermount3)" ] && have setpriv; then
	nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$T/home")
	# lent as the other tests lend it: a mode put back at exit by this test
	# alone would take /dev/fuse from the rootless tests running beside it
	lend_fuse
	mkdir -p "$T/home" "$T/cache-user" "$T/ustore"
	chown 65534:65534 "$T/home" "$T/cache-user" "$T/ustore"
	ok "a store as an unprivileged user" "${nobody[@]}" "$OCITREE" store --layout "$T/build" \
		--cache-dir "$T/cache-user" "$T/ustore"
	_mounts+=("$T/ustore")
	is "rootless: an opaque directory carries user.overlay.opaque" \
		"$("${nobody[@]}" getfattr --absolute-names --only-values -n user.overlay.opaque "$T/ustore/k/$L3/diff/d" 2>&1)" y
	fails 1 "No such file" "rootless: creating the use file is ENOENT (not EACCES)" \
		"${nobody[@]}" bash -c "echo > '$T/ustore/k/$L1/use'"
	fails 1 "No such file" "rootless: rmdir of a layer is ENOENT" "${nobody[@]}" rmdir "$T/ustore/k/$L1"
	ok "rootless: ocitree umount" "${nobody[@]}" "$OCITREE" umount "$T/ustore"
else
	skip "a store as an unprivileged user" "no setuid fusermount3 or no setpriv"
fi
done_testing
