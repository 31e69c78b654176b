#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# unpack gives the tree umoci gives (paths, types, modes, owners, sizes,
# mtimes, contents, link targets, xattrs), the config.json umoci writes, and
# bundle metadata umoci reads; raw unpack and raw runtime-config likewise.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/tree-lib.sh"
have umoci || skip_all "umoci is not installed"
is_root || skip_all "the comparisons with umoci unpack need root (see rootless.sh)"

L=$T/oci
# umoci emits volume mounts in Go's random map order; ocitree sorts them.
# umoci 0.4.7 writes empty org.opencontainers.image.* annotations, which
# umoci 0.6 leaves out as ocitree does (oci/config/convert/runtime.go:171-177)
norm() {
	jq -S '.mounts |= sort_by(.destination) |
		.annotations |= with_entries(select(.value != "" or (.key | startswith("org.opencontainers.image.") | not)))' "$1"
}
special_layers "$T/src" >/dev/null
ok "test image built" $MKIMAGE "$L" special "$T/src/l1.tar" "$T/src/l2.tar"
ok "test image with uncompressed layers" $MKIMAGE "$L" plain --compress none "$T/src/l1.tar" "$T/src/l2.tar"

ok "ocitree unpack" $OCITREE unpack --image "$L:special" "$T/ob"
is "no progress when stderr is not a terminal" "$(cat "$T/err")" ""
ok "umoci unpack" umoci unpack --image "$L:special" "$T/ub"
tree_dump "$T/ub/rootfs" >"$T/want"
tree_dump "$T/ob/rootfs" >"$T/got"
check "the tree is umoci's: $(wc -l <"$T/want") lines of listing, digests and xattrs" 'diff -u "$T/want" "$T/got" >&2'
check "the listing is not trivial" 'grep -q "hello-hard2" "$T/got" && grep -q "user.mime=0x746578742f6368616e676564" "$T/got"'
check "devices, capabilities and trusted xattrs as root" \
	'grep -q "^c 644 0:0 .* dev/null" "$T/got" && grep -q "security.capability" "$T/got" && grep -q "trusted.note" "$T/got"'
check "owners" 'grep -q " 1000:1000 .* owners/user " "$T/got" && grep -q "^d 755 123:456 .* owners/dir " "$T/got"'
check "whiteouts, opaque directories and replacements applied" \
	'! grep -qE " (etc/deleted|deleted-dir|opaque/keep-not|opaque/sub|replace-dir/inner) " "$T/got" &&
	 grep -q "^f .* replace-dir " "$T/got" && grep -q "^d .* becomes-dir " "$T/got"'
is "hardlinks share an inode" "$(stat -c %i "$T/ob/rootfs/etc/hello-hard")" "$(stat -c %i "$T/ob/rootfs/data/hello-hard2")"
is "a file replaced in a later layer leaves its hardlinks" "$(stat -c %h "$T/ob/rootfs/etc/hello-hard")" 2
check "sparse files keep their holes" '[ "$(du -k "$T/ob/rootfs/data/sparse" | cut -f1)" -lt 100 ]'
check "empty xattr records are unset keys, as in Go's reader" '! getfattr -n user.empty "$T/ob/rootfs/etc/empty" 2>/dev/null' 

# bundle metadata: the same mtree (keywords and all) and config.json
check "the mtree has umoci's keywords and values" \
	'$MTREE_DIFF "$T"/ub/sha256_*.mtree "$T"/ob/sha256_*.mtree >&2'
is "the mtree is named after the manifest" "$(cd "$T/ob" && ls *.mtree)" "sha256_$(image_digest "$L" special | cut -d: -f2).mtree"
check "config.json is umoci's" 'diff -u <(norm "$T/ub/config.json") <(norm "$T/ob/config.json") >&2'
check "umoci.json is umoci's" 'diff -u <(jq -S . "$T/ub/umoci.json") <(jq -S . "$T/ob/umoci.json") >&2'
check "the state record lists every path" \
	'[ $(($(wc -l <"$T/ob/ocitree.state") - 2)) -eq $(find "$T/ob/rootfs" | wc -l) ]'
is "the bundle is private" "$(stat -c %a "$T/ob")" 700

ok "uncompressed layers" $OCITREE unpack --image "$L:plain" "$T/plain"
check "give the same tree" 'diff -u "$T/got" <(tree_dump "$T/plain/rootfs") >&2'

# an image config turned into config.json, user looked up in the rootfs
mkdir -p "$T/u/etc" "$T/u/home/app"
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/home/app:/bin/sh\n' >"$T/u/etc/passwd"
printf 'root:x:0:\napp:x:1234:\nextra:x:777:app,other\n' >"$T/u/etc/group"
tar_dir "$T/u" "$T/u.tar"
ok "image with a user and a config" $MKIMAGE "$L" cfg "$T/u.tar" --config \
	'{"User":"app","Env":["A=1","PATH=/x"],"Entrypoint":["/bin/app"],"Cmd":["--flag"],"WorkingDir":"/work",
	  "Volumes":{"/data":{},"/cache":{}},"ExposedPorts":{"80/tcp":{},"443/tcp":{}},"Labels":{"l":"v"},"StopSignal":"SIGINT"}'
ok "ocitree unpack of it" $OCITREE unpack --image "$L:cfg" "$T/oc"
ok "umoci unpack of it" umoci unpack --image "$L:cfg" "$T/uc"
check "config.json (user, groups, env, args, cwd, volumes, annotations) is umoci's" \
	'diff -u <(norm "$T/uc/config.json") <(norm "$T/oc/config.json") >&2'
is "the user's home and groups were found" "$(jq -c '[.process.user, (.process.env|map(select(startswith("HOME"))))]' "$T/oc/config.json")" \
	'[{"uid":1234,"gid":1234,"additionalGids":[777]},["HOME=/home/app"]]'
ok "uid and gid mappings" $OCITREE unpack --uid-map 0:100000:65536 --gid-map 0:200000:65536 --image "$L:cfg" "$T/om"
ok "umoci with the same mappings" umoci unpack --uid-map 0:100000:65536 --gid-map 0:200000:65536 --image "$L:cfg" "$T/um"
check "mapped config.json is umoci's" 'diff -u <(norm "$T/um/config.json") <(norm "$T/om/config.json") >&2'
check "mapped owners are umoci's" 'diff -u <(tree_dump "$T/um/rootfs") <(tree_dump "$T/om/rootfs") >&2'
is "the rootfs belongs to the mapped root" "$(stat -c %u:%g "$T/om/rootfs")" 100000:200000

# --keep-dirlinks: a symlink to a directory where a later layer has a
# directory.  umoci gives the symlink the owner, xattrs and times of the
# later directory's header (restoreMetadata on the path, which lstat finds
# to be a symlink): each part of the tree gets its own time and owner, so
# that the comparison sees which header each comes from, whatever the
# clock did while the layers were made
mkdir -p "$T/k1/usr/lib" "$T/k2/lib"
ln -s usr/lib "$T/k1/lib"; echo base >"$T/k1/usr/lib/base"; echo x >"$T/k2/lib/x"
chown -h 11:12 "$T/k1/lib"; chown 21:22 "$T/k2/lib"
touch -d '2020-01-01 00:00:01' "$T/k1/usr/lib/base" "$T/k1/usr/lib" "$T/k1/usr" "$T/k1"
touch -h -d '2020-01-01 00:00:02' "$T/k1/lib"
touch -d '2021-01-01 00:00:03' "$T/k2/lib/x" "$T/k2/lib" "$T/k2"
tar_dir "$T/k1" "$T/k1.tar"; tar_dir "$T/k2" "$T/k2.tar"
$MKIMAGE "$L" dirlinks "$T/k1.tar" "$T/k2.tar" >/dev/null
ok "unpack over a dirlink" $OCITREE unpack --image "$L:dirlinks" "$T/d1"
check "replaces the symlink by the directory" '[ -d "$T/d1/rootfs/lib" ] && [ ! -L "$T/d1/rootfs/lib" ] && [ -f "$T/d1/rootfs/lib/x" ]'
ok "unpack --keep-dirlinks" $OCITREE unpack --keep-dirlinks --image "$L:dirlinks" "$T/d2"
check "keeps the symlink and unpacks through it" '[ -L "$T/d2/rootfs/lib" ] && [ -f "$T/d2/rootfs/usr/lib/x" ] && [ -f "$T/d2/rootfs/usr/lib/base" ]'
ok "umoci unpack --keep-dirlinks" umoci unpack --keep-dirlinks --image "$L:dirlinks" "$T/d3"
check "as umoci does" 'diff -u <(tree_dump "$T/d3/rootfs") <(tree_dump "$T/d2/rootfs") >&2'
check "the symlink has the directory's owner and time, the directory its own" \
	'grep -q "^l 777 21:22 7 20210101000003 lib " <(tree_dump "$T/d2/rootfs") &&
	 grep -q "^d 755 0:0 - 20200101000001 usr/lib " <(tree_dump "$T/d2/rootfs")'
check "and the mtree agrees" '$MTREE_DIFF "$T"/d3/*.mtree "$T"/d2/*.mtree >&2'

# raw commands
ok "raw unpack" $OCITREE raw unpack --image "$L:special" "$T/rawroot"
check "raw unpack gives the same tree" 'diff -u "$T/got" <(tree_dump "$T/rawroot") >&2'
check "and no bundle metadata" '[ ! -e "$T/rawroot/config.json" ] && [ ! -e "$T/ocitree.state" ]'
ok "raw runtime-config" $OCITREE raw runtime-config --image "$L:cfg" --rootfs "$T/oc/rootfs" "$T/rc.json"
ok "umoci raw runtime-config" umoci raw runtime-config --image "$L:cfg" --rootfs "$T/oc/rootfs" "$T/urc.json"
check "raw runtime-config is umoci's" 'diff -u <(norm "$T/urc.json") <(norm "$T/rc.json") >&2'

# directories a layer removes are emptied in a trash directory by two
# threads: what stays is umoci's tree, link counts and root time, and no
# trash
w=$T/wh1
mkdir -p "$w/keep" "$w/gone/ro" "$w/replaced/in"
echo k >"$w/keep/file"
for i in $(seq 60); do mkdir -p "$w/gone/d$i/e/f" && echo "$i" >"$w/gone/d$i/e/f/file" && echo "$i" >"$w/gone/d$i/top"; done
ln "$w/keep/file" "$w/gone/d7/e/hard"
echo r >"$w/gone/ro/file" && chmod 555 "$w/gone/ro"
echo x >"$w/replaced/in/x"
tar_dir "$w" "$T/wh1.tar"
chmod 755 "$w/gone/ro"
w=$T/wh2
mkdir -p "$w/gone"
: >"$w/.wh.gone" && echo again >"$w/gone/again"
echo now-a-file >"$w/replaced"
tar_dir "$w" "$T/wh2.tar"
ok "image whose second layer removes directories" $MKIMAGE "$L" wh "$T/wh1.tar" "$T/wh2.tar"
ok "ocitree unpack of it" $OCITREE unpack --image "$L:wh" "$T/wo"
ok "umoci unpack of it" umoci unpack --image "$L:wh" "$T/wu"
check "the tree is umoci's" 'diff -u <(tree_dump "$T/wu/rootfs") <(tree_dump "$T/wo/rootfs") >&2'
check "the removed directories are gone, what the layer made is there" \
	'[ ! -e "$T/wo/rootfs/gone/d1" ] && [ "$(cat "$T/wo/rootfs/gone/again")" = again ] && [ -f "$T/wo/rootfs/replaced" ]'
is "a removed hardlink no longer counts" "$(stat -c %h "$T/wo/rootfs/keep/file")" 1
is "the root's time is umoci's" "$(stat -c %Y "$T/wo/rootfs")" "$(stat -c %Y "$T/wu/rootfs")"
is "no trash is left" "$(ls -A "$T/wo/rootfs" | tr '\n' ' ')" "gone keep replaced "
check "the mtree is umoci's" '$MTREE_DIFF "$T"/wu/sha256_*.mtree "$T"/wo/sha256_*.mtree >&2'

if have script; then
	script -qec "$OCITREE unpack --image $L:special $T/tty" /dev/null >"$T/tty.out" 2>&1
	check "progress on a terminal" 'grep -q "unpack: layer [12]/2" "$T/tty.out"'
else
	skip "progress on a terminal" "script(1) is not installed"
fi

# refusals
fails 1 "already has a config.json" "unpack into an unpacked bundle" $OCITREE unpack --image "$L:special" "$T/ob"
mkdir -p "$T/half/rootfs"
fails 1 "already has a rootfs" "unpack into a bundle that has a rootfs" $OCITREE unpack --image "$L:special" "$T/half"
check "which is left alone" '[ -d "$T/half/rootfs" ] && [ ! -e "$T/half/config.json" ]' 
fails 1 "already exists and is not empty" "raw unpack into a non-empty directory" \
	$OCITREE raw unpack --image "$L:special" "$T/ob"
fails 1 "tag 'nope' not found" "a missing tag" $OCITREE unpack --image "$L:nope" "$T/x"
check "a failed unpack leaves no bundle" '[ ! -e "$T/x" ]'
fails 2 "invalid id mapping" "a malformed --uid-map" $OCITREE unpack --uid-map 0:1 --image "$L:special" "$T/x"
fails 2 "missing argument" "no bundle" $OCITREE unpack --image "$L:special"
done_testing
