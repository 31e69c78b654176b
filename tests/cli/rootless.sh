#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# unpack --rootless as an unprivileged user: no chown or mknod, owners in
# the user.rootlesscontainers xattr, the same tree, config and metadata as
# umoci --rootless; repack maps the xattr back to owners in the layer.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/tree-lib.sh"
have umoci || skip_all "umoci is not installed"
# volume mounts sorted (umoci's come in Go's map order); empty image-spec
# annotations dropped, as umoci 0.6 does (oci/config/convert/runtime.go:171-177)
NORM='.mounts |= sort_by(.destination) |
	.annotations |= with_entries(select(.value != "" or (.key | startswith("org.opencontainers.image.") | not)))'

if is_root; then
	have setpriv || skip_all "setpriv is not installed"
	as_user() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
	owner=65534
else
	as_user() { "$@"; }
	owner=$(id -u)
fi
# the user must reach the binary and the layout
if ! as_user test -x "$OCITREE"; then
	cp "$OCITREE" "$T/ocitree" && OCITREE=$T/ocitree
fi
L=$T/oci
special_layers "$T/src" >/dev/null
$MKIMAGE "$L" special "$T/src/l1.tar" "$T/src/l2.tar" >/dev/null || exit 1
chmod -R a+rX "$L"
mkdir -m 0777 "$T/nb"
as_user test -r "$L/index.json" || skip_all "the unprivileged user cannot read $L"

ok "ocitree unpack --rootless as an unprivileged user" as_user $OCITREE unpack --rootless --image "$L:special" "$T/nb/ob"
ok "umoci unpack --rootless as the same user" as_user umoci unpack --rootless --image "$L:special" "$T/nb/ub"
tree_dump "$T/nb/ub/rootfs" >"$T/want"
tree_dump "$T/nb/ob/rootfs" >"$T/got"
check "the tree is umoci's, xattrs included" 'diff -u "$T/want" "$T/got" >&2'
check "everything belongs to the user" '! grep -vE "^[a-z] [0-7]+ $owner:" <(grep -E "^[a-z] [0-7]+ [0-9]+:" "$T/got") >&2'
if is_root; then
	is "owners are kept in user.rootlesscontainers" \
		"$(getfattr -n user.rootlesscontainers -e hex "$T/nb/ob/rootfs/owners/mixed" 2>/dev/null | grep =)" \
		"user.rootlesscontainers=0x08ffffffff0f1064"
	check "device nodes are empty files" '[ -f "$T/nb/ob/rootfs/dev/null" ] && [ ! -s "$T/nb/ob/rootfs/dev/null" ]'
else
	skip "owners are kept in user.rootlesscontainers" "the image has no owners when not built as root"
	skip "device nodes are empty files" "the image has no devices when not built as root"
fi
is "read-only directories keep their mode" "$(stat -c %a "$T/nb/ob/rootfs/ro-dir")" 555
check "the mtree is umoci's" '$MTREE_DIFF "$T"/nb/ub/*.mtree "$T"/nb/ob/*.mtree >&2'
check "config.json is umoci's" \
	'diff -u <(jq -S "$NORM" "$T/nb/ub/config.json") <(jq -S "$NORM" "$T/nb/ob/config.json") >&2'
check "umoci.json is umoci's" 'diff -u <(jq -S . "$T/nb/ub/umoci.json") <(jq -S . "$T/nb/ob/umoci.json") >&2'

# repack as the user: owners come back from the xattr
cp -a "$L" "$T/nb/oci" && chmod -R a+rwX "$T/nb/oci"
as_user sh -c "echo edited >>'$T/nb/ob/rootfs/owners/mixed' && echo new >'$T/nb/ob/rootfs/new'" 2>/dev/null ||
	as_user sh -c "echo new >'$T/nb/ob/rootfs/new'"
ok "repack --rootless bundle as the user" as_user $OCITREE repack --image "$T/nb/oci:edited" "$T/nb/ob"
$PY - "$T/nb/oci" >"$T/layer" <<'EOF2'
import json, sys, tarfile
l = sys.argv[1]
idx = json.load(open(l + "/index.json"))
m = [d for d in idx["manifests"] if d["annotations"]["org.opencontainers.image.ref.name"] == "edited"][0]
man = json.load(open(l + "/blobs/sha256/" + m["digest"][7:]))
with tarfile.open(l + "/blobs/sha256/" + man["layers"][-1]["digest"][7:]) as t:
    for e in t:
        print(e.name, "%d:%d" % (e.uid, e.gid), " ".join(sorted(e.pax_headers)))
EOF2
check "new files belong to root in the image" 'grep -q "^new 0:0" "$T/layer"'
if is_root; then
	check "an edited file keeps its owner from the xattr" 'grep -q "^owners/mixed 0:100" "$T/layer"'
else
	skip "an edited file keeps its owner from the xattr" "the image has no owners when not built as root"
fi
check "the rootless xattr stays out of the layer" '! grep -q rootlesscontainers "$T/layer"'
ok "umoci unpacks the result" umoci unpack --image "$T/nb/oci:edited" "$T/check"
check "with the new file" '[ "$(cat "$T/check/rootfs/new")" = new ]'
done_testing
