#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# insert with hostile targets and sources: targets above the root or named
# like whiteouts are refused; targets through symlinks of the image give a
# layer that unpack and mount keep inside the root; source symlinks are
# stored as symlinks, never followed; device nodes and paths past PATH_MAX
# work as an unprivileged user and as root.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/tree-lib.sh"

L=$T/oci
OUT=$T/outside
mkdir -p "$OUT"
cases=0
$PY - "$T/base.tar" "$OUT" <<'PY' || exit 1
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    for name, kind, target in (("etc", tarfile.DIRTYPE, ""), ("etc/hello", tarfile.REGTYPE, ""),
                               ("abs", tarfile.SYMTYPE, sys.argv[2]), ("up", tarfile.SYMTYPE, "../../../../.." + sys.argv[2]),
                               ("etclink", tarfile.SYMTYPE, "/etc")):
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname = kind, target
        t.addfile(ti)
PY
$MKIMAGE "$L" base "$T/base.tar" >/dev/null || exit 1
echo inserted >"$T/file"
snapshot "$L" >"$T/before"

# targets
refuse() { # STATUS PATTERN DESC ARGS...
	cases=$((cases + 1))
	local st=$1 pat=$2 desc=$3
	shift 3
	fails "$st" "$pat" "$desc" $OCITREE insert --image "$L:base" --tag bad "$@"
}
refuse 2 "invalid target '../x': path climbs out of the root" "'..' above the root" "$T/file" ../x
refuse 2 "invalid target '/../../x': path climbs out of the root" "an absolute target with '..' above the root" "$T/file" /../../x
refuse 2 "invalid target 'etc/../../x': path climbs out of the root" "'..' above the root, deeper" "$T/file" etc/../../x
refuse 2 "invalid target '/etc/.wh.hello': a name starting with '.wh.' is a whiteout in a layer" \
	"a target named like a whiteout" "$T/file" /etc/.wh.hello
refuse 2 "invalid target '.wh..wh..opq/x': a name starting with '.wh.'" "a target under a whiteout name" "$T/file" .wh..wh..opq/x
refuse 2 "cannot white out the root directory" "a whiteout of the root" --whiteout /etc/..
mkdir -p "$T/whsrc" && echo x >"$T/whsrc/.wh.hello"
refuse 1 "'etc/.wh.hello': a name starting with '.wh.' is a whiteout in a layer" "a source file named like a whiteout" \
	"$T/whsrc" /etc
check "refusals leave the layout as it was" 'diff "$T/before" <(snapshot "$L") >&2'

ok "an absolute target is a path in the image" $OCITREE insert --image "$L:base" --tag t-abs "$T/file" //etc//./x/../inserted
is "the layer" "$(last_layer_list "$L" t-abs)" "0 etc/inserted"

# through symlinks of the image: insert writes the layer as asked; applying
# it never leaves the root
cases=$((cases + 1))
ok "a target through an absolute symlink" $OCITREE insert --image "$L:base" --tag t-abs-link "$T/file" /abs/pwned
ok "unpack it" $OCITREE unpack --image "$L:t-abs-link" "$T/b1"
check "the file lands inside the root" '[ -f "$T/b1/rootfs$OUT/pwned" ] && [ -z "$(ls -A "$OUT")" ]'
cases=$((cases + 1))
ok "a target through a symlink that climbs out" $OCITREE insert --image "$L:base" --tag t-up "$T/file" /up/pwned
fails 1 "entry 'up/pwned': a symlink in its path leads out of the root" "unpack refuses it" \
	$OCITREE unpack --image "$L:t-up" "$T/b2"
check "nothing written outside" '[ -z "$(ls -A "$OUT")" ] && [ ! -e "$T/b2" ]'
cases=$((cases + 1))
ok "a target through a symlink to /etc" $OCITREE insert --image "$L:base" --tag t-etc "$T/file" /etclink/passwd
ok "unpack it" $OCITREE unpack --image "$L:t-etc" "$T/b3"
check "it is the image's /etc/passwd, not the host's" \
	'[ "$(cat "$T/b3/rootfs/etc/passwd")" = inserted ] && grep -q "^root:" /etc/passwd'
if [ -c /dev/fuse ] && is_root; then
	export OCITREE_CACHE_DIR=$T/cache
	mkdir -p "$T/mnt"
	ok "mount it" $OCITREE mount --image "$L:t-up" "$T/mnt"
	check "the view shows the file inside its root" '[ -f "$T/mnt/up/pwned" ] && [ -z "$(ls -A "$OUT")" ]'
	check "and says why 'up' is a directory there" 'grep -q "entry '"'"'up/pwned'"'"': '"'"'up'"'"' is a symlink" "$T/err"'
	ok "unmount" $OCITREE umount "$T/mnt"
else
	skip "mount it" "no FUSE as root here"
fi

# sources: symlinks are stored, not followed
mkdir -p "$T/src/sub"
ln -s /etc "$T/src/etc-out"
ln -s ../../../../../etc/passwd "$T/src/sub/rel-out"
ln -s /etc/passwd "$T/src/passwd-out"
cases=$((cases + 1))
ok "a source tree with symlinks out of it" $OCITREE insert --image "$L:base" --tag s-links "$T/src" /opt/src
is "they are stored as symlinks" "$(last_layer_list "$L" s-links | tr '\n' ' ')" \
	"5 opt/src 2 opt/src/etc-out /etc 2 opt/src/passwd-out /etc/passwd 5 opt/src/sub 2 opt/src/sub/rel-out ../../../../../etc/passwd "
ok "a source that is a symlink" $OCITREE insert --image "$L:base" --tag s-link "$T/src/etc-out" /etc/link
is "is stored as the symlink" "$(last_layer_list "$L" s-link)" "2 etc/link /etc"

# names near and past the limits
cases=$((cases + 1))
n255=$(printf 'n%.0s' $(seq 255))
d240=$(printf 'd%.0s' $(seq 240))
mkdir -p "$T/deep"
# 18 levels of 242-byte names: past PATH_MAX, made one level at a time
(cd "$T/deep" && for i in $(seq 10 27); do mkdir "$i$d240" && cd "$i$d240" || exit 1; done && echo bottom >"$n255") ||
	echo "Bail out! cannot make the deep tree"
ok "a source tree with paths past PATH_MAX" $OCITREE insert --image "$L:base" --tag deep "$T/deep" /deep
ok "unpack it" $OCITREE raw unpack --image "$L:deep" "$T/b4"
check "the deep file came through" '[ "$(cd "$T/b4/deep" && find . -name "$n255" -type f -execdir cat {} +)" = bottom ]'
cases=$((cases + 1))
long=$(for i in $(seq 10 26); do printf "$i$d240/"; done)x
ok "a target past PATH_MAX" $OCITREE insert --image "$L:base" --tag long-target "$T/file" "/$long"
ok "unpack it" $OCITREE raw unpack --image "$L:long-target" "$T/b5"
check "the file is at the target" '[ "$(cd "$T/b5" && find . -name x -type f -execdir cat {} +)" = inserted ]'
cases=$((cases + 1))
ok "a target name longer than NAME_MAX is written" $OCITREE insert --image "$L:base" --tag long-name "$T/file" \
	"/$(printf 'n%.0s' $(seq 300))"
fails 1 "entry 'n+': create: File name too long" "and refused by unpack" $OCITREE raw unpack --image "$L:long-name" "$T/b6"

# device nodes: as root they are made, as a user they are only read
if is_root && have setpriv; then
	cases=$((cases + 1))
	mkdir -p "$T/devsrc" && mknod "$T/devsrc/null" c 1 3 && mknod "$T/devsrc/loop9" b 7 9
	cp -a "$L" "$T/user-oci" && chown -R 65534:65534 "$T/user-oci" && chmod a+rx "$T" "$T/devsrc"
	as_user() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
	ok "insert device nodes as an unprivileged user" as_user $OCITREE insert --image "$T/user-oci:base" --tag dev \
		"$T/devsrc" /dev
	is "stored as device nodes" "$(last_layer_list "$T/user-oci" dev | tr '\n' ' ')" "5 dev 4 dev/loop9 3 dev/null "
	mkdir -m 0777 "$T/nb"
	fails 1 "not running as root \(see --rootless\)" "the same user cannot unpack them without --rootless" \
		as_user $OCITREE unpack --image "$T/user-oci:dev" "$T/nb/b"
	ok "with --rootless they are empty files" as_user $OCITREE raw unpack --rootless --image "$T/user-oci:dev" "$T/nb/r"
	check "empty regular files" '[ -f "$T/nb/r/dev/null" ] && [ ! -s "$T/nb/r/dev/null" ] && [ -f "$T/nb/r/dev/loop9" ]'
else
	skip "insert device nodes as an unprivileged user" "needs root and setpriv to make device nodes"
fi
valid "every image is valid" "$L"
diag "hostile cases: $cases"
done_testing
