#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The layout commands end to end: init, new, tag, rm, ls, stat, gc; the
# result is valid for the independent validator, skopeo and umoci.
. "$top_srcdir/tests/lib.sh"

L=$T/layout
ok "init creates a layout" $OCITREE init --layout "$L"
check "it has oci-layout, index.json and blobs/sha256" '[ -f "$L/oci-layout" ] && [ -f "$L/index.json" ] && [ -d "$L/blobs/sha256" ]'
fails 1 "already exists" "init refuses an existing layout" $OCITREE init --layout "$L"
mkdir "$T/empty"
ok "init accepts an empty directory" $OCITREE init --layout "$T/empty"

ok "new creates an image" $OCITREE new --image "$L:first"
ok "new without a tag means latest" $OCITREE new --image "$L"
ok "ls lists the tags" $OCITREE ls --layout "$L"
is "ls prints them in order" "$(cat "$T/out")" "$(printf 'first\nlatest')"
ok "list is an alias of ls" $OCITREE list --layout "$L"
ok "ls --json" $OCITREE ls --layout "$L" --json
is "ls --json names tags and digests" "$(jq -r '.[].tag' "$T/out" | tr '\n' ' ')" "first latest "

ok "tag adds a tag" $OCITREE tag --image "$L:first" second
d1=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="first") | .digest' "$L/index.json")
d2=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="second") | .digest' "$L/index.json")
is "the new tag names the same manifest" "$d2" "$d1"
ok "config changes an image" $OCITREE config --image "$L:second" --config.cmd /bin/true
ok "tag over an existing tag moves it" $OCITREE tag --image "$L:second" first
is "each tag appears once" "$(jq '[.manifests[].annotations["org.opencontainers.image.ref.name"]] | length' "$L/index.json")" 3

ok "stat prints a table" $OCITREE stat --image "$L:second"
check "the table has a history row" 'grep -q "ocitree config" "$T/out"'
ok "stat --json" $OCITREE stat --image "$L:second" --json
is "stat --json has manifest, config and history" "$(jq -c 'keys' "$T/out")" '["config","history","manifest"]'
is "stat --json manifest descriptor" "$(jq -r .manifest.descriptor.mediaType "$T/out")" application/vnd.oci.image.manifest.v1+json
is "stat --json history entry" "$(jq -c '.history[0] | [.layer, .created_by, .empty_layer]' "$T/out")" '[null,"ocitree config",true]'

ok "rm removes a tag" $OCITREE rm --image "$L:latest"
ok "remove is an alias of rm" $OCITREE remove --image "$L:first"
is "one tag left" "$($OCITREE ls --layout "$L")" second

before=$(ls "$L/blobs/sha256" | wc -l)
ok "gc runs" $OCITREE gc --layout "$L"
after=$(ls "$L/blobs/sha256" | wc -l)
check "gc removed the unreferenced blobs" '[ "$after" -lt "$before" ]'
ok "the remaining image still opens" $OCITREE stat --image "$L:second"

validated "oci-validate --full accepts the layout" "$L"
if have skopeo; then
	ok "skopeo copies the image out" skopeo copy --quiet "oci:$L:second" "oci:$T/copy:second"
	ok "and ocitree reads the copy" $OCITREE stat --image "$T/copy:second" --json
else
	skip "skopeo copies the image out" "skopeo missing"
fi
if have umoci; then
	ok "umoci stat reads the image" umoci stat --image "$L:second"
	ok "umoci unpack reads the image" umoci unpack --image "$L:second" "$T/bundle"
	is "umoci sees the configured command" "$(jq -c .process.args "$T/bundle/config.json")" '["/bin/true"]'
else
	skip "umoci reads the image" "umoci missing"
fi
done_testing
