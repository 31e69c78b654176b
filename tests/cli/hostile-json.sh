#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Hostile JSON, made at run time: oversized and malformed index.json,
# manifests and configs, unknown media types, nesting too deep, descriptors
# that lie. Each is refused with one line naming the culprit, exit status 1,
# and the layout is left as it was.
. "$top_srcdir/tests/lib.sh"
have jq || skip_all "jq is not installed"

L=$T/l
$OCITREE init --layout "$L" && $OCITREE new --image "$L:good" || exit 1
cp "$L/index.json" "$T/index.orig"

put() { # store stdin as a blob, print "digest size"
	cat >"$T/blob"
	local h
	h=$(sha256sum "$T/blob" | cut -d' ' -f1)
	cp "$T/blob" "$L/blobs/sha256/$h"
	echo "sha256:$h $(stat -c %s "$T/blob")"
}
tag() { # TAG MEDIATYPE DIGEST SIZE: add an index.json entry
	jq -c --arg t "$1" --arg m "$2" --arg d "$3" --argjson s "$4" \
		'.manifests += [{mediaType:$m, digest:$d, size:$s, annotations:{"org.opencontainers.image.ref.name":$t}}]' \
		"$L/index.json" >"$T/i" && cp "$T/i" "$L/index.json"
}
MT_M=application/vnd.oci.image.manifest.v1+json
MT_I=application/vnd.oci.image.index.v1+json
good_config=$($OCITREE stat --json --image "$L:good" | jq -c .manifest.blob.config)

cases=0
try() { # DESC PATTERN TAG: stat, config and tag must all refuse TAG
	local desc=$1 pat=$2 t=$3 before
	cases=$((cases + 1))
	before=$(snapshot "$L")
	fails 1 "$pat" "$desc: stat" $OCITREE stat --image "$L:$t"
	check "$desc: one line" '[ "$(wc -l <"$T/err")" -eq 1 ]'
	fails 1 "$pat" "$desc: config" $OCITREE config --image "$L:$t" --tag copy --author x
	is "$desc: layout unchanged" "$(snapshot "$L")" "$before"
}

# a manifest that is really an image index
read d s < <(echo '{"schemaVersion":2,"manifests":[]}' | put)
tag liar-type $MT_M "$d" "$s"
try "an index posing as a manifest" "missing 'config'" liar-type

# unknown media types
read d s < <(echo '{}' | put)
tag unknown application/x-surprise "$d" "$s"
try "an unknown media type" "unsupported media type 'application/x-surprise'" unknown
read d s < <(jq -nc --argjson c "$good_config" '{schemaVersion:2, config:($c + {mediaType:"application/x-not-a-config"}), layers:[]}' | put)
tag odd-config $MT_M "$d" "$s"
# a config of another media type makes the manifest an artifact (OCI
# 1.1): stat shows it, as umoci 0.6 does; what would use it as an image
# refuses it
before=$(snapshot "$L")
ok "a config of an unknown media type: stat shows it as an artifact" $OCITREE stat --image "$L:odd-config"
check "its config by its descriptor only, no history" \
	'grep -q "Media Type: application/x-not-a-config" "$T/out" && ! grep -q "== HISTORY ==" "$T/out"'
fails 1 "not an image config" "a config of an unknown media type: config" \
	$OCITREE config --image "$L:odd-config" --tag copy --author x
fails 1 "not an image config" "a config of an unknown media type: unpack" $OCITREE unpack --image "$L:odd-config" "$T/odd-b"
is "a config of an unknown media type: layout unchanged" "$(snapshot "$L")" "$before"

# nesting too deep: 9 indexes, each pointing at the next
mdesc=$(jq -c '.manifests[0] | del(.annotations)' "$T/index.orig")
cur=$mdesc
for i in $(seq 1 9); do
	read d s < <(jq -nc --argjson m "$cur" '{schemaVersion:2, mediaType:"'$MT_I'", manifests:[$m]}' | put)
	cur=$(jq -nc --arg d "$d" --argjson s "$s" '{mediaType:"'$MT_I'", digest:$d, size:$s}')
done
tag deep $MT_I "$d" "$s"
try "indexes nested nine deep" "nested deeper than 8" deep

# an index whose only manifest is for another platform
read d s < <(jq -nc --argjson m "$mdesc" '{schemaVersion:2, manifests:[$m + {platform:{architecture:"s390x-none", os:"plan9"}}]}' | put)
tag foreign $MT_I "$d" "$s"
try "no manifest for this platform" "no manifest for linux/[a-z0-9]+(/[a-z0-9]+)? in tag 'foreign'; it has plan9/s390x-none" foreign

# JSON nested beyond the parser's limit
read d s < <( (printf '{"schemaVersion":2,"config":'; for i in $(seq 2000); do printf '['; done; for i in $(seq 2000); do printf ']'; done; printf '}') | put)
tag nested-json $MT_M "$d" "$s"
try "JSON nested 2000 deep" "invalid JSON" nested-json

# a descriptor claiming an absurd size is refused before reading
read d s < <(echo '{"schemaVersion":2}' | put)
tag huge $MT_M "$d" 9000000000000000
try "a manifest claiming 9 PB" "too large" huge

# an oversized manifest (5 MiB of layers)
read d s < <( (printf '{"schemaVersion":2,"config":%s,"layers":[' "$good_config"; head -c 5300000 /dev/zero | tr '\0' ' '; printf ']}') | put)
tag big $MT_M "$d" "$s"
try "a 5 MiB manifest" "too large" big

# configs with wrong types
n=0
for bad in '{"architecture":1,"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' \
	'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["md5:x"]}}' \
	'{"architecture":"amd64","os":"linux","config":{"Cmd":"sh"},"rootfs":{"type":"layers","diff_ids":[]}}'; do
	read cd cs < <(printf '%s' "$bad" | put)
	read d s < <(jq -nc --arg d "$cd" --argjson s "$cs" '{schemaVersion:2, config:{mediaType:"application/vnd.oci.image.config.v1+json", digest:$d, size:$s}, layers:[]}' | put)
	t=badcfg$((++n))
	tag "$t" $MT_M "$d" "$s"
	try "config $n with a wrong type" "image config" "$t"
done

# a layer count that does not match the diff_ids
read d s < <(jq -nc --argjson c "$good_config" '{schemaVersion:2, config:$c, layers:[{mediaType:"application/vnd.oci.image.layer.v1.tar", digest:"sha256:'$(printf '%064d' 0)'", size:0}]}' | put)
tag mismatch $MT_M "$d" "$s"
try "more layers than diff_ids" "1 layers but its config lists 0 diff_ids" mismatch

ok "the good image still works beside all of them" $OCITREE stat --image "$L:good"

# a hostile index.json itself
for bad in '{"schemaVersion":2,"manifests":[{"mediaType":"'$MT_M'","digest":"sha256:../../../etc/passwd","size":1}]}' \
	'{"schemaVersion":2,"manifests":{}}' '{"schemaVersion":3,"manifests":[]}' '{"schemaVersion":2,"manifests":[],"manifests":[]}'; do
	printf '%s' "$bad" >"$L/index.json"
	cases=$((cases + 1))
	before=$(snapshot "$L")
	fails 1 "index.json" "a hostile index.json is refused: $(head -c 60 <<<"$bad")" $OCITREE ls --layout "$L"
	fails 1 "index.json" "and gc will not touch the layout" $OCITREE gc --layout "$L"
	is "nothing changed" "$(snapshot "$L")" "$before"
done
head -c 5000000 /dev/zero | tr '\0' ' ' >"$L/index.json"
fails 1 "'index.json' is too large" "a 5 MB index.json" $OCITREE ls --layout "$L"
cases=$((cases + 1))
cp "$T/index.orig" "$L/index.json"
diag "hostile cases: $cases"
done_testing
