#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Every error gets one line naming what is wrong, status 1 (2 for usage),
# and the layout is left exactly as it was.
. "$top_srcdir/tests/lib.sh"

L=$T/layout
$OCITREE init --layout "$L" && $OCITREE new --image "$L:good" && $OCITREE config --image "$L:good" --config.cmd x || exit 1

one_line() { check "$1: the message is one line" '[ "$(wc -l <"$T/err")" -eq 1 ]'; }

fails 1 "open layout '$T/nope': No such file or directory" "a missing layout" $OCITREE ls --layout "$T/nope"
one_line "missing layout"
fails 1 "open layout '$T/nope'" "stat on a missing layout" $OCITREE stat --image "$T/nope:x"
mkdir "$T/plain"
fails 1 "'$T/plain'.*oci-layout" "a directory that is not a layout" $OCITREE ls --layout "$T/plain"

before=$(snapshot "$L")
fails 2 "invalid tag 'bad tag'" "a bad tag name for new" $OCITREE new --image "$L:bad tag"
one_line "bad tag"
fails 2 "invalid tag '-x'" "a tag that looks like an option" $OCITREE tag --image "$L:good" -- -x
fails 2 "invalid tag 'a/b'" "a tag with a slash" $OCITREE tag --image "$L:good" a/b
fails 1 "tag 'missing' not found in layout '$L'" "stat of a missing tag" $OCITREE stat --image "$L:missing"
one_line "missing tag"
fails 1 "tag 'missing' not found" "tag from a missing tag" $OCITREE tag --image "$L:missing" other
fails 1 "tag 'missing' not found" "rm of a missing tag" $OCITREE rm --image "$L:missing"
fails 1 "tag 'missing' not found" "config of a missing tag" $OCITREE config --image "$L:missing" --author x
is "the failed commands changed nothing" "$(snapshot "$L")" "$before"

# usage errors
fails 2 "unknown option '--bogus'" "an unknown option" $OCITREE ls --layout "$L" --bogus
fails 2 "missing mandatory option --image" "a missing --image" $OCITREE stat
fails 2 "missing mandatory option --layout" "a missing --layout" $OCITREE gc
fails 2 "needs a value" "an option without its value" $OCITREE stat --image
fails 2 "unknown command 'frobnicate'" "an unknown command" $OCITREE frobnicate
fails 2 "missing argument" "tag without the new tag" $OCITREE tag --image "$L:good"
fails 2 "path contains ':'" "an --image path with ':'" $OCITREE stat --image "a:b:c"
fails 2 "invalid --log level" "a bad --log level" $OCITREE --log=loud ls --layout "$L"
ok "--help works" $OCITREE --help
ok "--version works" $OCITREE --version
check "--version prints the version" 'grep -q "ocitree version" "$T/out"'
ok "a command's --help works" $OCITREE config --help
check "config --help lists --config.env" 'grep -q -- "--config.env" "$T/out"'

# corrupt content
mdigest=$(jq -r '.manifests[0].digest' "$L/index.json")
mfile=$L/blobs/sha256/${mdigest#sha256:}
cp "$mfile" "$T/manifest.saved"
sed -i 's/"schemaVersion":2/"schemaVersion":2 /' "$mfile"
before=$(snapshot "$L")
fails 1 "blob $mdigest is [0-9]+ bytes|blob $mdigest.*(declared size|does not match)" "a modified manifest blob is caught" $OCITREE stat --image "$L:good"
one_line "modified blob"
fails 1 "blob $mdigest" "config refuses a corrupt image" $OCITREE config --image "$L:good" --author x
is "nothing was written" "$(snapshot "$L")" "$before"
cp "$T/manifest.saved" "$mfile"
printf 'X' | dd of="$mfile" bs=1 seek=3 conv=notrunc status=none
fails 1 "blob $mdigest does not match its digest" "a same-size corruption is a digest mismatch" $OCITREE stat --image "$L:good"
cp "$T/manifest.saved" "$mfile"

# a descriptor that lies about the size
cp "$L/index.json" "$T/index.saved"
jq -c '.manifests[0].size += 1' "$T/index.saved" >"$L/index.json"
fails 1 "smaller than its declared size" "a descriptor with the wrong size" $OCITREE stat --image "$L:good"
cp "$T/index.saved" "$L/index.json"

# a missing blob
cdigest=$($OCITREE stat --json --image "$L:good" | jq -r .config.descriptor.digest)
mv "$L/blobs/sha256/${cdigest#sha256:}" "$T/config.saved"
fails 1 "blob $cdigest is missing" "a missing config blob" $OCITREE stat --image "$L:good"
before=$(snapshot "$L")
fails 1 "blob $cdigest .*is missing" "gc refuses to run on a broken image" $OCITREE gc --layout "$L"
is "gc removed nothing" "$(snapshot "$L")" "$before"
mv "$T/config.saved" "$L/blobs/sha256/${cdigest#sha256:}"

# a corrupt index.json
echo '{"schemaVersion":2,"manifests":[' >"$L/index.json"
before=$(snapshot "$L")
fails 1 "'index.json'.*invalid JSON" "a corrupt index.json is named" $OCITREE ls --layout "$L"
one_line "corrupt index"
fails 1 "index.json" "new refuses a corrupt index.json" $OCITREE new --image "$L:x"
fails 1 "index.json" "gc refuses a corrupt index.json" $OCITREE gc --layout "$L"
is "the corrupt layout was left alone" "$(snapshot "$L")" "$before"
echo '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:abc","size":1,"annotations":{"org.opencontainers.image.ref.name":"good"}}]}' >"$L/index.json"
fails 1 "malformed digest 'sha256:abc'" "a malformed digest in index.json" $OCITREE stat --image "$L:good"
cp "$T/index.saved" "$L/index.json"
ok "the repaired layout works again" $OCITREE stat --image "$L:good"
# a failed sync is an error: init's last fsync is that of the directory the
# new layout was renamed into (without it the layout may vanish in a crash)
if have strace && strace -qq -e trace=getpid -e inject=getpid:retval=1 true 2>/dev/null; then
	$TRACED strace -f -qq -o "$T/trace" -e trace=fsync $OCITREE init --layout "$T/synced" || exit 1
	n=$(grep -c 'fsync(' "$T/trace")
	check "init syncs (it made $n fsync calls)" '[ "$n" -gt 0 ]'
	fails 1 "create layout '$T/eio': sync directory '$T': Input/output error" \
		"init reports a failed sync of the parent directory" \
		$TRACED strace -f -qq -o /dev/null -e trace=fsync -e inject=fsync:error=EIO:when=$n $OCITREE init --layout "$T/eio"
	one_line "failed directory sync"
else
	skip "a failed sync of the parent directory is an error" "strace cannot inject faults here"
fi
done_testing
