#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Every config flag, checked in the written config and manifest.
. "$top_srcdir/tests/lib.sh"

L=$T/layout
$OCITREE init --layout "$L" && $OCITREE new --image "$L:base" || exit 1
cfg() { # the config JSON of a tag
	$OCITREE stat --json --image "$L:$1" | jq -c ".config.blob$2"
}
man() {
	$OCITREE stat --json --image "$L:$1" | jq -c ".manifest.blob$2"
}

ok "config with many flags" $OCITREE config --image "$L:base" --tag full \
	--config.user 1000:1000 --config.exposedports 80/tcp --config.exposedports 53/udp \
	--config.env A=1 --config.env B=x=y --config.entrypoint /bin/sh --config.entrypoint -c \
	--config.cmd 'echo hi' --config.volume /data --config.label org.test=yes --config.workingdir /srv \
	--config.stopsignal SIGINT --created 2020-01-02T03:04:05Z --author 'A U Thor' --architecture arm64 \
	--os linux --platform.variant v8 --manifest.annotation note=hello \
	--history.comment 'a comment' --history.created 2021-02-03T04:05:06+01:00 --history.created_by 'make it'
is "user" "$(cfg full .config.User)" '"1000:1000"'
is "exposed ports" "$(cfg full .config.ExposedPorts)" '{"53/udp":{},"80/tcp":{}}'
is "env, values may hold '='" "$(cfg full .config.Env)" '["A=1","B=x=y"]'
is "entrypoint, one argument per flag (even one starting with '-')" "$(cfg full .config.Entrypoint)" '["/bin/sh","-c"]'
is "cmd" "$(cfg full .config.Cmd)" '["echo hi"]'
is "volumes" "$(cfg full .config.Volumes)" '{"/data":{}}'
is "labels" "$(cfg full .config.Labels)" '{"org.test":"yes"}'
is "working dir" "$(cfg full .config.WorkingDir)" '"/srv"'
is "stop signal" "$(cfg full .config.StopSignal)" '"SIGINT"'
is "created" "$(cfg full .created)" '"2020-01-02T03:04:05Z"'
is "author" "$(cfg full .author)" '"A U Thor"'
is "architecture and variant" "$(cfg full '|[.architecture,.variant]')" '["arm64","v8"]'
is "manifest annotation" "$(man full .annotations.note)" '"hello"'
is "history entry" "$(cfg full '.history[-1]|[.created,.created_by,.author,.comment,.empty_layer]')" \
	'["2021-02-03T04:05:06+01:00","make it","A U Thor","a comment",true]'
is "base was not changed (--tag)" "$(cfg base .config)" '{}'

ok "config replaces the tag by default" $OCITREE config --image "$L:full" --config.env A=2 --no-history
is "env var replaced in place" "$(cfg full .config.Env)" '["A=2","B=x=y"]'
is "--no-history adds no entry" "$(cfg full '.history|length')" 1

ok "clear several keys" $OCITREE config --image "$L:full" --clear config.labels --clear config.env \
	--clear config.exposedports --clear config.volume --clear config.cmd --clear config.entrypoint \
	--clear manifest.annotations --config.env C=3
is "cleared keys are empty, new values set" "$(cfg full '.config|[.Labels,.Env,.ExposedPorts,.Volumes,.Cmd,.Entrypoint]')" \
	'[null,["C=3"],null,null,null,null]'
is "annotations cleared" "$(man full .annotations)" 'null'

SOURCE_DATE_EPOCH=1000000000 $OCITREE config --image "$L:full" --config.user 0:0 >/dev/null
is "SOURCE_DATE_EPOCH sets the history time" "$(cfg full '.history[-1].created')" '"2001-09-09T01:46:40Z"'

before=$(snapshot "$L")
fails 2 "unknown key" "an unknown --clear key is a usage error" $OCITREE config --image "$L:full" --clear config.nope
fails 2 "not safe" "--clear rootfs.diffids is refused" $OCITREE config --image "$L:full" --clear rootfs.diffids
fails 2 "must be NAME=VALUE" "--config.env without '='" $OCITREE config --image "$L:full" --config.env NOVALUE
fails 2 "empty name" "--config.label with an empty name" $OCITREE config --image "$L:full" --config.label =x
fails 2 "invalid --created" "a bad --created" $OCITREE config --image "$L:full" --created yesterday
fails 2 "invalid --history.created" "a bad --history.created" $OCITREE config --image "$L:full" --history.created 2020
fails 2 "invalid --tag" "a bad --tag" $OCITREE config --image "$L:full" --tag 'a b'
fails 2 "unexpected argument" "a stray argument" $OCITREE config --image "$L:full" stray
is "failed config commands changed nothing" "$(snapshot "$L")" "$before"

if have umoci; then
	ok "umoci unpacks the configured image" umoci unpack --image "$L:full" "$T/b"
	is "umoci's runtime config has the user" "$(jq -c '.process.user|[.uid,.gid]' "$T/b/config.json")" '[0,0]'
else
	skip "umoci unpacks the configured image" "umoci is not installed"
fi
validated "oci-validate --full accepts every image" "$L"
done_testing
