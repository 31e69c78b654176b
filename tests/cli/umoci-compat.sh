#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# ocitree as a drop-in for umoci 0.6, where a script can tell: stat's text
# and JSON, refusals, flag names, --compress=auto, the bytes of
# blobs and config.json, times kept as given, runtime-config's user fallback
# and annotations, the mtree's encoding, hardlinked symlinks in a layer,
# blob checks in umoci's order and words, and who owns new layout files.
# Where the installed umoci (0.4.7) has the behaviour the test runs it and
# compares; where only umoci 0.6 has it, the comment cites its source.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/tree-lib.sh"
have umoci || skip_all "umoci is not installed"
have jq || skip_all "jq is not installed"
is_root || skip_all "the bundle comparisons and the ownership checks need root"

blob() { # LAYOUT TAG manifest|config: the file of that blob
	local m
	m=$(image_digest "$1" "$2")
	case $3 in
	manifest) echo "$1/blobs/sha256/${m#sha256:}" ;;
	config) echo "$1/blobs/sha256/$(jq -r .config.digest "$1/blobs/sha256/${m#sha256:}" | cut -d: -f2)" ;;
	esac
}

# ---- JSON bytes (Go's json.Encoder) ----
umoci init --layout "$T/ui" && $OCITREE init --layout "$T/oi" || exit 1
check "oci-layout is umoci's, newline and all" 'cmp "$T/ui/oci-layout" "$T/oi/oci-layout"'
check "index.json ends with a newline" '[ "$(tail -c1 "$T/oi/index.json" | od -An -c | tr -d " ")" = "\n" ]'

umoci init --layout "$T/a" && umoci new --image "$T/a:t" &&
	umoci config --image "$T/a:t" --created 2020-01-01T00:00:00Z --no-history || exit 1
cp -a "$T/a" "$T/b"
# values Go escapes (<, >, &, U+2028), a time with an offset, keys given
# out of image-spec's order, empty strings Go's omitempty leaves out
args=(--created '2024-01-02T03:04:05.500+11:00' --history.created '2024-01-02T03:04:05-00:00'
	--history.created_by 'make <it> & run' --history.comment c --author 'A <a@x>'
	--config.workingdir /w --config.env 'A=<1>&2' --config.user app --config.cmd sh
	--config.label "k=v$(printf '\342\200\250')é" --config.exposedports 80/tcp --config.volume /d
	--config.stopsignal SIGTERM --manifest.annotation n=1)
ok "umoci config" umoci config --image "$T/a:t" "${args[@]}"
ok "ocitree config, the same flags" $OCITREE config --image "$T/b:t" "${args[@]}"
check "the config blob is umoci's, byte for byte" 'cmp "$(blob "$T/a" t config)" "$(blob "$T/b" t config)"'
# umoci 0.6 sets the manifest's mediaType on every image it writes
# (mutate/mutate.go:229); 0.4.7 left it out
check "the manifest is umoci's but for the mediaType 0.6 adds" \
	'cmp "$(blob "$T/a" t manifest)" <(sed "s|\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",||" "$(blob "$T/b" t manifest)")'
check "blobs end with a newline" '[ "$(tail -c1 "$(blob "$T/b" t manifest)" | od -An -c | tr -d " ")" = "\n" ]'

# ---- times kept as given ----
for t in 2024-01-02T03:04:05+11:00 2024-01-02T03:04:05.500+00:00 2024-01-02T03:04:05.000000000Z \
	2024-01-02T03:04:05.123456789-05:30 2024-02-29T23:59:59-00:00; do
	umoci config --image "$T/a:t" --tag tm --created "$t" --history.created "$t" >/dev/null 2>&1
	$OCITREE config --image "$T/b:t" --tag tm --created "$t" --history.created "$t" >/dev/null 2>&1
	is "--created $t is stored as umoci stores it" \
		"$(jq -c '[.created, .history[-1].created]' "$(blob "$T/b" tm config)")" \
		"$(jq -c '[.created, .history[-1].created]' "$(blob "$T/a" tm config)")"
done
is "an offset is kept" "$(jq -r .created "$(blob "$T/b" t config)")" 2024-01-02T03:04:05.5+11:00
# umoci 0.6 is built with Go 1.24, whose time.Parse takes more than nine
# digits of fraction and keeps nine (parseRFC3339, parseNanoseconds); the
# older Go of umoci 0.4.7 refuses them
ok "a fraction longer than nanoseconds" $OCITREE config --image "$T/b:t" --tag tm --created 2024-01-02T03:04:05.1234567891Z
is "is cut to nanoseconds" "$(jq -r .created "$(blob "$T/b" tm config)")" 2024-01-02T03:04:05.123456789Z
for t in 2024-01-02t03:04:05Z 2024-01-02T03:04:05z "2024-01-02 03:04:05Z" 2024-01-02T03:04:60Z 2023-02-29T00:00:00Z \
	2024-01-02T03:04:05 2024-01-02T03:04:05+1100; do
	s=0
	umoci config --image "$T/a:t" --tag bad --created "$t" >/dev/null 2>&1 || s=$?
	check "umoci refuses --created '$t'" '[ "$s" -ne 0 ]'
	fails 2 "invalid --created" "so does ocitree" $OCITREE config --image "$T/b:t" --tag bad --created "$t"
	fails 2 "invalid --history.created" "and --history.created '$t'" \
		$OCITREE config --image "$T/b:t" --tag bad --history.created "$t"
done
valid "the layout ocitree changed passes oci-validate" "$T/b"

# ---- raw runtime-config ----
L=$T/img
mkdir -p "$T/u/etc" "$T/u/home/app"
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/home/app:/bin/sh\n' >"$T/u/etc/passwd"
printf 'root:x:0:\napp:x:1234:\nstaff:x:50:app\n' >"$T/u/etc/group"
tar_dir "$T/u" "$T/u.tar"
$MKIMAGE "$L" named "$T/u.tar" --config '{"User":"app:staff","Env":["HOME=/custom","A=1"]}' >/dev/null &&
	$MKIMAGE "$L" numeric "$T/u.tar" --config '{"User":"1000:2000"}' >/dev/null &&
	$MKIMAGE "$L" homeless "$T/u.tar" --config '{"User":"app"}' >/dev/null || exit 1
# without --rootfs a name cannot be looked up: umoci warns and runs the
# process as root:root (oci/config/convert/runtime.go:197-206, 0.4.7 too)
ok "raw runtime-config of a named user without --rootfs" $OCITREE raw runtime-config --image "$L:named" "$T/o-named.json"
check "warns that it defaults to root" 'grep -q "without a rootfs.*root:root" "$T/err"'
ok "umoci raw runtime-config, the same" umoci raw runtime-config --image "$L:named" "$T/u-named.json"
is "the process runs as root with no extra groups, as with umoci" "$(jq -c .process.user "$T/o-named.json")" \
	"$(jq -c .process.user "$T/u-named.json")"
is "that is 0:0" "$(jq -c .process.user "$T/o-named.json")" '{"uid":0,"gid":0}'
is "and no HOME is made up" "$(jq -c .process.env "$T/o-named.json")" "$(jq -c .process.env "$T/u-named.json")"
ok "numeric ids without --rootfs" $OCITREE raw runtime-config --image "$L:numeric" "$T/o-num.json"
umoci raw runtime-config --image "$L:numeric" "$T/u-num.json" 2>/dev/null
is "are taken as they are, as umoci does" "$(jq -c .process.user "$T/o-num.json")" "$(jq -c .process.user "$T/u-num.json")"
check "without a warning" '! grep -q "root:root" "$T/err"'
# with a rootfs, HOME from /etc/passwd replaces the image's (appendEnv in
# runtime.go:216-218 replaces an existing entry)
umoci raw unpack --image "$L:named" "$T/rootfs" >/dev/null 2>&1 || exit 1
ok "with --rootfs" $OCITREE raw runtime-config --image "$L:named" --rootfs "$T/rootfs" "$T/o-root.json"
umoci raw runtime-config --image "$L:named" --rootfs "$T/rootfs" "$T/u-root.json" 2>/dev/null
is "user, groups and env are umoci's" "$(jq -c '[.process.user, .process.env]' "$T/o-root.json")" \
	"$(jq -c '[.process.user, .process.env]' "$T/u-root.json")"
is "HOME is the passwd entry's" "$(jq -c '.process.env | map(select(startswith("HOME=")))' "$T/o-root.json")" '["HOME=/home/app"]'
# no empty annotation (0.4.7 writes those) and no volumes (Go's map order)
$OCITREE config --image "$L:named" --tag full --author 'A U' --config.exposedports 80/tcp --config.stopsignal SIGINT \
	--no-history >/dev/null || exit 1
$OCITREE raw runtime-config --image "$L:full" --rootfs "$T/rootfs" "$T/o-full.json" &&
	umoci raw runtime-config --image "$L:full" --rootfs "$T/rootfs" "$T/u-full.json" 2>/dev/null
check "the whole file is umoci's, byte for byte" 'cmp "$T/u-full.json" "$T/o-full.json"'
$OCITREE config --image "$L:numeric" --tag nogroup --config.user app:nogroup >/dev/null
fails 1 "cannot find group 'nogroup'" "a name missing from the rootfs is still an error" \
	$OCITREE raw runtime-config --image "$L:nogroup" --rootfs "$T/rootfs" "$T/x.json"

# annotations as umoci 0.6 writes them (runtime.go:171-186): empty
# image-spec ones left out, the variant added, the labels applied last
$OCITREE config --image "$L:homeless" --tag plat --architecture arm64 --platform.variant v8 --author "" \
	--created 2024-01-02T03:04:05+11:00 --no-history >/dev/null || exit 1
ok "raw runtime-config of an image with a variant" $OCITREE raw runtime-config --image "$L:plat" "$T/o-plat.json"
is "annotations: no empty ones, the variant, the time as given" "$(jq -c .annotations "$T/o-plat.json")" \
	'{"org.opencontainers.image.architecture":"arm64","org.opencontainers.image.created":"2024-01-02T03:04:05+11:00","org.opencontainers.image.os":"linux","org.opencontainers.image.variant":"v8"}'
umoci raw runtime-config --image "$L:plat" "$T/u-plat.json" 2>/dev/null
# umoci 0.4.7 still writes the empty ones and knows no variant
is "the others are umoci's" \
	"$(jq -c '.annotations | del(.["org.opencontainers.image.variant"])' "$T/o-plat.json")" \
	"$(jq -c '.annotations | with_entries(select(.value != ""))' "$T/u-plat.json")"
$OCITREE config --image "$L:plat" --tag label --config.label org.opencontainers.image.os=plan9 \
	--config.label other= --config.stopsignal SIGINT >/dev/null
ok "raw runtime-config with labels" $OCITREE raw runtime-config --image "$L:label" "$T/o-label.json"
is "a label wins over the generated annotation; an empty label stays" \
	"$(jq -c '.annotations | [.["org.opencontainers.image.os"], .other, .["org.opencontainers.image.stopSignal"]]' "$T/o-label.json")" \
	'["plan9","","SIGINT"]'

# ---- bundles: the mtree's encoding, hardlinked symlinks ----
mkdir -p "$T/s"
echo a >"$T/s/back\\slash"
ln -s 'to\target' "$T/s/sym"
tar_dir "$T/s" "$T/s.tar"
$MKIMAGE "$L" slash "$T/s.tar" >/dev/null || exit 1
ok "ocitree unpack" $OCITREE unpack --image "$L:slash" "$T/ob"
ok "umoci unpack" umoci unpack --image "$L:slash" "$T/ub"
mt() { grep -hoE '(^ *back[^ ]*| link=[^ ]*)' "$1"/*.mtree | tr -d ' ' | LC_ALL=C sort | tr '\n' ' '; }
is "a backslash in a name and a link target is go-mtree's \\\\" "$(mt "$T/ob")" 'back\\slash link=to\\target '
is "as umoci writes it" "$(mt "$T/ob")" "$(mt "$T/ub")"
# go-mtree compares link= as text: with \134 umoci saw the symlink changed
ok "umoci repacks ocitree's bundle" umoci repack --image "$L:slash-u" "$T/ob"
is "and sees no change (it adds no layer then)" "$(jq '.layers | length' "$(blob "$L" slash-u manifest)")" 1
rm -rf "$T/ob" "$T/ub"

$OCITREE unpack --image "$L:slash" "$T/ob" && umoci unpack --image "$L:slash" "$T/ub" >/dev/null 2>&1 || exit 1
for b in "$T/ob" "$T/ub"; do
	ln -s target "$b/rootfs/n1" && ln -P "$b/rootfs/n1" "$b/rootfs/n2" && echo f >"$b/rootfs/f"
done
ok "ocitree repack of a symlink with two names" $OCITREE repack --image "$L:hl-o" \
	--history.created 2024-05-06T07:08:09+02:00 "$T/ob"
ok "umoci repack of the same" umoci repack --image "$L:hl-u" "$T/ub"
is "one symlink entry and a hardlink to it" "$(last_layer_list "$L" hl-o | grep ' n[12]')" "$(printf '2 n1 target\n1 n2 n1')"
is "as umoci writes them" "$(last_layer_list "$L" hl-o | grep ' n[12]')" "$(last_layer_list "$L" hl-u | grep ' n[12]')"
is "repack keeps --history.created's offset" "$(jq -r '.history[-1].created' "$(blob "$L" hl-o config)")" \
	2024-05-06T07:08:09+02:00
rm -rf "$T/o2"
ok "the layer unpacks" $OCITREE unpack --image "$L:hl-o" "$T/o2"
is "to one inode with two names" "$(stat -c %i "$T/o2/rootfs/n1")" "$(stat -c %i "$T/o2/rootfs/n2")"
valid "the layout passes oci-validate" "$L"

# ---- blob checks: digest over the declared size first, length after ----
# (umoci 0.6 pkg/hardening/verified_reader.go:97-110 and Read's limit)
$MKIMAGE "$T/bc" t "$T/u.tar" >/dev/null || exit 1
corrupt() { # NAME HOW: a copy of the layout with its config blob changed
	rm -rf "$T/$1" && cp -a "$T/bc" "$T/$1"
	local f
	f=$(blob "$T/$1" t config)
	chmod u+w "$f"
	case $2 in
	append) printf x >>"$f" ;;
	change-append) printf 'x' | dd of="$f" bs=1 seek=1 conv=notrunc status=none && printf x >>"$f" ;;
	truncate) truncate -s -1 "$f" ;;
	esac
}
corrupt long append
fails 1 "verified reader size mismatch" "too long, the declared bytes right: the size is wrong" $OCITREE stat --image "$T/long:t"
corrupt longbad change-append
fails 1 "verified reader digest mismatch" "too long, the declared bytes wrong: the digest is wrong" $OCITREE stat --image "$T/longbad:t"
corrupt short truncate
fails 1 "verified reader digest mismatch" "too short: the digest is wrong" $OCITREE stat --image "$T/short:t"
rm -rf "$T/lay" && cp -a "$T/bc" "$T/lay"
lb=$T/lay/blobs/sha256/$(jq -r '.layers[0].digest' "$(blob "$T/lay" t manifest)" | cut -d: -f2)
chmod u+w "$lb" && printf garbage >>"$lb"
fails 1 "verified reader size mismatch" "a layer with trailing bytes: the size" $OCITREE unpack --image "$T/lay:t" "$T/lay-b"
truncate -s -20 "$lb"
fails 1 "verified reader digest mismatch" "a cut layer: the digest" $OCITREE unpack --image "$T/lay:t" "$T/lay-c"

# ---- new layout files belong to the layout's owner (umoci >= 0.5.1,
# oci/cas/dir/dir.go:115-133 fchown in PutBlob and PutIndex) ----
$OCITREE init --layout "$T/own" && $OCITREE new --image "$T/own:t" && chown -R 1234:2345 "$T/own" || exit 1
ok "config as root in a user's layout" $OCITREE config --image "$T/own:t" --config.env A=1
ok "unpack" $OCITREE unpack --image "$T/own:t" "$T/own-b"
echo new >"$T/own-b/rootfs/new"
ok "repack as root" $OCITREE repack --image "$T/own:t" "$T/own-b"
is "every file of the layout is still the user's" "$(find "$T/own" ! -user 1234 -o ! -group 2345 | wc -l)" 0
is "with new blobs among them" "$(ls "$T/own/blobs/sha256" | wc -l)" 7
valid "the layout passes oci-validate" "$T/own"

# ---- refusals in umoci's words (0.4.7 has them all: it runs beside us) ----
umoci init --layout "$T/rf" && umoci new --image "$T/rf:t" || exit 1
echo f >"$T/rf-file"
refuses() { # DESC WORDS ARGS...: umoci and ocitree both refuse, in those words
	local desc=$1 words=$2 s=0
	shift 2
	umoci "$@" >/dev/null 2>"$T/uerr" || s=$?
	check "umoci refuses $desc" '[ "$s" -ne 0 ] && grep -qF -- "$words" "$T/uerr"'
	fails 2 "$(printf '%s' "$words" | sed 's/[][\.*^$|+?(){}]/\\&/g')" "ocitree refuses $desc" $OCITREE "$@"
}
for cmd in config "insert --image $T/rf:t $T/rf-file /x" "raw add-layer --image $T/rf:t $T/rf-file"; do
	set -- $cmd
	[ "$1" = config ] && set -- config --image "$T/rf:t"
	refuses "--no-history with --history.author ($1)" "--no-history and --history.author may not be specified together" \
		"$@" --no-history --history.author a
done
refuses "--no-history with --history.created_by (repack)" \
	"--no-history and --history.created_by may not be specified together" \
	repack --image "$T/rf:t" --no-history --history.created_by x "$T/none"
refuses "an empty insert source" "invalid positional argument 0: arguments cannot be empty" \
	insert --image "$T/rf:t" "" /x
refuses "an empty insert target" "invalid positional argument 1: arguments cannot be empty" \
	insert --image "$T/rf:t" "$T/rf-file" ""
refuses "--log with --verbose" "--log=* and --verbose are mutually exclusive" --log info --verbose ls --layout "$T/rf"
# an abbreviation must not silently be another flag: umoci has none
# (urfave/cli matches names exactly); its words differ, ours name the word
fails 2 "unknown option '--config.wo'" "ocitree refuses an abbreviated --config.wo" \
	$OCITREE config --image "$T/rf:t" --config.wo /x
umoci config --image "$T/rf:t" --config.wo /x >/dev/null 2>&1
is "as umoci does" "$?" 1
fails 2 "unknown option '--verb'" "ocitree refuses an abbreviated global --verb" $OCITREE --verb ls --layout "$T/rf"
fails 2 "unknown option '--ima=" "and an abbreviation given with =" $OCITREE stat --ima="$T/rf:t"
ok "spelled out, the same flags work" $OCITREE config --image "$T/rf:t" --config.workingdir /x --no-history

# ---- umoci 0.6's flag names (cmd/umoci/config.go: "platform.os,os",
# "platform.arch,architecture") ----
cp -a "$T/rf" "$T/pn1" && cp -a "$T/rf" "$T/pn2" || exit 1
ok "config --platform.os/--platform.arch" $OCITREE config --image "$T/pn1:t" --platform.os freebsd --platform.arch arm64 \
	--created 2020-01-01T00:00:00Z --no-history
ok "config --os/--architecture" $OCITREE config --image "$T/pn2:t" --os freebsd --architecture arm64 \
	--created 2020-01-01T00:00:00Z --no-history
is "both spellings write the same image" "$(image_digest "$T/pn1" t)" "$(image_digest "$T/pn2" t)"
is "and it is the platform asked for" "$(jq -r '.os + "/" + .architecture' "$(blob "$T/pn1" t config)")" freebsd/arm64
fails 2 "unknown option '--platform.o'" "--platform.o is no abbreviation of --platform.os.version" \
	$OCITREE config --image "$T/pn1:t" --platform.o x

# ---- --compress=auto, the default: the newest compressed layer's
# compression, never none (umoci 0.6 mutate/mutate.go
# PickDefaultCompressAlgorithm; cmd/umoci/utils_ux.go uxCompress "auto") ----
layer_types() { jq -r '[.layers[].mediaType | sub(".*layer.v1.tar"; "tar")] | join(" ")' "$(blob "$1" "$2" manifest)"; }
$OCITREE init --layout "$T/ca" && $OCITREE new --image "$T/ca:t" || exit 1
ok "insert (default) into an image without layers" $OCITREE insert --image "$T/ca:t" "$T/rf-file" /a
ok "insert --compress=zstd" $OCITREE insert --image "$T/ca:t" --compress=zstd "$T/rf-file" /b
ok "insert --compress=none" $OCITREE insert --image "$T/ca:t" --compress=none "$T/rf-file" /c
ok "insert (default) over them" $OCITREE insert --image "$T/ca:t" "$T/rf-file" /d
mkdir -p "$T/ca-l" && echo l >"$T/ca-l/l" && tar -C "$T/ca-l" -cf "$T/ca-l.tar" l || exit 1
ok "raw add-layer --compress=auto" $OCITREE raw add-layer --image "$T/ca:t" --compress=auto "$T/ca-l.tar"
$OCITREE unpack --image "$T/ca:t" "$T/ca-b" >/dev/null && echo e >"$T/ca-b/rootfs/e" || exit 1
ok "repack (default)" $OCITREE repack --image "$T/ca:t" "$T/ca-b"
is "gzip without a compressed layer, then the newest compressed layer's, skipping none" \
	"$(layer_types "$T/ca" t)" "tar+gzip tar+zstd tar tar+zstd tar+zstd tar+zstd"
ok "--compress=gzip still wins" $OCITREE insert --image "$T/ca:t" --compress=gzip "$T/rf-file" /f
is "gzip on top" "$(layer_types "$T/ca" t | awk '{print $NF}')" tar+gzip
valid "the layout passes oci-validate" "$T/ca"

# ---- insert --opaque with a file source: the opaque marker, then the file
# (umoci 0.6 oci/layer/generate.go GenerateInsertLayer: AddOpaqueWhiteout
# before the walk of the source, whatever it is) ----
mkdir -p "$T/op-src/dir" && echo old >"$T/op-src/dir/old" || exit 1
$OCITREE init --layout "$T/op" && $OCITREE new --image "$T/op:t" &&
	$OCITREE insert --image "$T/op:t" "$T/op-src/dir" /dir || exit 1
ok "insert --opaque FILE over a directory" $OCITREE insert --image "$T/op:t" --opaque "$T/rf-file" /dir
check "the layer is the marker, then the file" \
	'[ "$(last_layer_list "$T/op" t | tr "\n" " ")" = "0 dir/.wh..wh..opq 0 dir " ]'
ok "unpack it" $OCITREE unpack --image "$T/op:t" "$T/op-b"
check "the directory is gone, the file in its place" '[ -f "$T/op-b/rootfs/dir" ] && [ "$(cat "$T/op-b/rootfs/dir")" = f ]'
valid "the layout passes oci-validate" "$T/op"

# ---- stat's text is umoci 0.6's (utils.go ManifestStat.Format); the
# expected texts are umoci 0.6's own snapshots, test/stat.bats "output
# snapshot: blank image" and "minimal image" ----
$OCITREE init --layout "$T/st" && $OCITREE new --image "$T/st:latest" &&
	$OCITREE config --no-history --created="2025-09-05T13:05:10.12345+10:00" --image "$T/st:latest" || exit 1
cat >"$T/st-want" <<'SNAP'
== MANIFEST ==
Schema Version: 2
Media Type: application/vnd.oci.image.manifest.v1+json
Config:
	Descriptor:
		Media Type: application/vnd.oci.image.config.v1+json
		Digest: sha256:e5101a46118c740a7709af8eaeec19cbc50a567f4fe7741f8420af39a3779a77
		Size: 135B
Descriptor:
	Media Type: application/vnd.oci.image.manifest.v1+json
	Digest: sha256:98a4b5d5fe4ea076a0a9059075dad54741e055fd0fa016903a8e2b858dcbad80
	Size: 249B
	Annotations:
		org.opencontainers.image.ref.name: latest

== CONFIG ==
Created: 2025-09-05T13:05:10.12345+10:00
Author: ""
Platform:
	OS: linux
	Architecture: amd64
Image Config:
	User: ""
	Command: (empty)
Descriptor:
	Media Type: application/vnd.oci.image.config.v1+json
	Digest: sha256:e5101a46118c740a7709af8eaeec19cbc50a567f4fe7741f8420af39a3779a77
	Size: 135B

== HISTORY ==
LAYER CREATED CREATED BY SIZE COMMENT
SNAP
$OCITREE stat --image "$T/st:latest" | sed 's/ *$//' >"$T/st-got"
if [ "$(uname -m)" = x86_64 ]; then
	check "stat of a blank image is umoci 0.6's snapshot, digests and all" 'diff -u "$T/st-want" "$T/st-got" >&2'
else
	check "stat of a blank image is umoci 0.6's snapshot (digests aside: not amd64)" \
		'diff -u <(sed "/Digest:\|Architecture:/d" "$T/st-want") <(sed "/Digest:\|Architecture:/d" "$T/st-got") >&2'
fi

# the minimal image: the same steps as umoci's test; the layer bytes are
# ours (so digests and sizes are compared as shapes), umoci's layer
# annotation ci.umo.uncompressed_blob_size is not written, and the default
# created_by names the program
I=$T/sm
$OCITREE init --layout "$I" && $OCITREE new --image "$I:latest" &&
	$OCITREE config --no-history --image "$I:latest" --author="Aleksa Sarai <cyphar@cyphar.com>" \
		--created="2025-09-05T13:05:10.12345+10:00" --os="gnu+linux" --architecture="riscv64" || exit 1
mkdir -p "$T/sm-l1/foo/bar/baz" "$T/sm-l2" && echo "dummy data" >"$T/sm-l1/file" && ln -s foo "$T/sm-l1/link" &&
	find "$T/sm-l1" -print0 | xargs -0 touch -h -d "1997-03-25T13:40:00" &&
	find "$T/sm-l2" -print0 | xargs -0 touch -h -d "1997-03-25T13:42:00" || exit 1
$OCITREE insert --image "$I:latest" --history.author='Aleksa Sarai <cyphar@cyphar.com>' \
	--history.comment="basic insert" --history.created="1997-03-25T13:40:00Z" "$T/sm-l1" / &&
	$OCITREE insert --image "$I:latest" --compress=zstd --history.author=$'Foo Bar <foo\tbar\nbaz@fake.email>' \
		--history.comment="whiteout /" --history.created_by="umoci insert --opaque" \
		--history.created="1997-03-25T13:42:00Z" --opaque "$T/sm-l2" /foo &&
	$OCITREE config --image "$I:latest" --config.user="foo:bar" --config.exposedports=80/tcp \
		--config.exposedports=8080/udp --config.env="HOME=/" --config.env="SHELL=/bin/false" \
		--config.env="AAA=1234" --config.env=$'ESCAPED=a\tb\nc\vd\re' --config.entrypoint="/bin/sh" \
		--config.entrypoint="-c" --config.cmd="true" --config.volume="/tmp" --config.volume="/var" \
		--config.volume="/with, comma" --config.workingdir="/tmp" --config.stopsignal="SIGKILL" \
		--manifest.annotation=$'ci.umo.abc=foobar\tbaz' --manifest.annotation="ci.umo.xyz=hello world" \
		--history.created="2025-09-05T13:05:10.12345+10:00" \
		--history.author="Hello World <another dummy email@foo.com>" \
		--history.comment="dummy configuration" || exit 1
cat >"$T/sm-want" <<'SNAP'
== MANIFEST ==
Schema Version: 2
Media Type: application/vnd.oci.image.manifest.v1+json
Config:
	Descriptor:
		Media Type: application/vnd.oci.image.config.v1+json
		Digest: sha256:01a6fc95c8afce1ebfaca585848ff2c42fe89ea0f5913c8e8fd6a0f8b691cd39
		Size: 1.107kB
Layers:
	Descriptor:
		Media Type: application/vnd.oci.image.layer.v1.tar+gzip
		Digest: sha256:088ca2b11e89a40e143aeb9d4564d0ffb69d26a380b3341af07fa28c2dbdaece
		Size: 238B
		Annotations:
			ci.umo.uncompressed_blob_size: 4608
	Descriptor:
		Media Type: application/vnd.oci.image.layer.v1.tar+zstd
		Digest: sha256:92226702a21491c696a910e56da759a2d6fe979211a7ad91c60ca715b89bc059
		Size: 119B
		Annotations:
			ci.umo.uncompressed_blob_size: 2048
Annotations:
	ci.umo.abc: "foobar\tbaz"
	ci.umo.xyz: "hello world"
Descriptor:
	Media Type: application/vnd.oci.image.manifest.v1+json
	Digest: sha256:58fa9705ecfc0ec7d1e8631a729c6cbab46206233d58e46fc55346ca9d25ed43
	Size: 737B
	Annotations:
		org.opencontainers.image.ref.name: latest

== CONFIG ==
Created: 2025-09-05T13:05:10.12345+10:00
Author: "Aleksa Sarai <cyphar@cyphar.com>"
Platform:
	OS: gnu+linux
	Architecture: riscv64
Image Config:
	User: foo:bar
	Entrypoint:
		/bin/sh
		-c
	Command:
		true
	Working Directory: /tmp
	Environment:
		HOME=/
		SHELL=/bin/false
		AAA=1234
		"ESCAPED=a\tb\nc\vd\re"
	Stop Signal: SIGKILL
	Exposed Ports: 80/tcp, 8080/udp
	Volumes: /tmp, /var, "/with, comma"
Descriptor:
	Media Type: application/vnd.oci.image.config.v1+json
	Digest: sha256:01a6fc95c8afce1ebfaca585848ff2c42fe89ea0f5913c8e8fd6a0f8b691cd39
	Size: 1.107kB

== HISTORY ==
LAYER                                                                   CREATED                         CREATED BY            SIZE   COMMENT
sha256:088ca2b11e89a40e143aeb9d4564d0ffb69d26a380b3341af07fa28c2dbdaece 1997-03-25T13:40:00Z            umoci insert          238B   basic insert
sha256:92226702a21491c696a910e56da759a2d6fe979211a7ad91c60ca715b89bc059 1997-03-25T13:42:00Z            umoci insert --opaque 119B   whiteout /
<none>                                                                  2025-09-05T13:05:10.12345+10:00 umoci config          <none> dummy configuration
SNAP
shape() { # digests and sizes as shapes; umoci's layer annotation and program name out
	sed -E 's/sha256:[0-9a-f]{64}/sha256:D/g; s/(Size: )[0-9.]+k?B$/\1S/; s/ [0-9.]+k?B( +)/ S\1/; s/ +/ /g; s/ $//' |
		sed -E 's/^(sha256:D [^ ]+ )ocitree /\1umoci /; s/^(<none> [^ ]+ )ocitree /\1umoci /' |
		awk '/^\t\tAnnotations:$/ { held = $0; next }
			/ci.umo.uncompressed_blob_size/ { held = ""; next }
			held != "" { print held; held = "" } { print }'
}
$OCITREE stat --image "$I:latest" >"$T/sm-got"
check "stat of umoci's minimal image: the same text, digests and sizes aside" \
	'diff -u <(shape <"$T/sm-want") <(shape <"$T/sm-got") >&2'
is "the history table's columns line up as text/tabwriter's" \
	"$(sed -n '/== HISTORY ==/,$p' "$T/sm-got" | awk 'NR > 1 { print index($0, "CREATED") ? index($0, "CREATED") : 0 }' | head -1)" 73

# stat --json: the config's history entries only, omitempty (historyStat)
is "stat --json history is umoci's" "$($OCITREE stat --image "$I:latest" --json | jq -c '[.history[] | del(.layer)]')" \
	'[{"diff_id":"'"$(jq -r '.rootfs.diff_ids[0]' "$(blob "$I" latest config)")"'","created":"1997-03-25T13:40:00Z","created_by":"ocitree insert","author":"Aleksa Sarai <cyphar@cyphar.com>","comment":"basic insert"},{"diff_id":"'"$(jq -r '.rootfs.diff_ids[1]' "$(blob "$I" latest config)")"'","created":"1997-03-25T13:42:00Z","created_by":"umoci insert --opaque","author":"Foo Bar <foo\tbar\nbaz@fake.email>","comment":"whiteout /"},{"diff_id":"","created":"2025-09-05T13:05:10.12345+10:00","created_by":"ocitree config","author":"Hello World <another dummy email@foo.com>","comment":"dummy configuration","empty_layer":true}]'
is "and names each layer it made" "$($OCITREE stat --image "$I:latest" --json | jq -c '[.history[].layer.digest]')" \
	"$(jq -c '[.layers[].digest, null]' "$(blob "$I" latest manifest)")"
umoci init --layout "$T/sj" && umoci new --image "$T/sj:t" &&
	umoci config --image "$T/sj:t" --history.comment c --history.created 2020-01-01T00:00:00Z --config.cmd sh || exit 1
is "stat --json history of umoci's image is what umoci prints" \
	"$($OCITREE stat --image "$T/sj:t" --json | jq -c .history)" "$(umoci stat --image "$T/sj:t" --json | jq -c .history)"

# an OCI 1.1 artifact (an empty config, embedded data) is shown, not
# refused: umoci 0.6's snapshot "pseudo-artifact w/o layers"
# (test/stat.bats), the manifest's digest and size filled in
$OCITREE init --layout "$T/art" || exit 1
jq -cSM . >"$T/art-m" <<'JSON'
{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
 "artifactType": "application/vnd.umoci.testing.fake-artifact+foobar",
 "config": {"mediaType": "application/vnd.oci.empty.v1+json",
  "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2, "data": "e30="},
 "layers": [{"mediaType": "application/vnd.oci.empty.v1+json",
  "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2, "data": "e30="}],
 "annotations": {"ci.umo.test-artifact.build-id": "1234567890", "ci.umo.test-artifact.data": "foobar"}}
JSON
ad=$(sha256sum <"$T/art-m" | cut -d' ' -f1) as=$(stat -c %s "$T/art-m")
cp "$T/art-m" "$T/art/blobs/sha256/$ad"
jq -cSM --arg d "sha256:$ad" --argjson s "$as" '.manifests += [{mediaType: "application/vnd.oci.image.manifest.v1+json",
	digest: $d, size: $s, annotations: {"org.opencontainers.image.ref.name": "latest"}}]' "$T/art/index.json" >"$T/art-i" &&
	mv "$T/art-i" "$T/art/index.json" || exit 1
cat >"$T/art-want" <<SNAP
== MANIFEST ==
Schema Version: 2
Media Type: application/vnd.oci.image.manifest.v1+json
Artifact Type: application/vnd.umoci.testing.fake-artifact+foobar
Config:
	Descriptor:
		Media Type: application/vnd.oci.empty.v1+json
		Digest: sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
		Size: 2B
		Data: (2 bytes)
			0000: 7b7d                                     {}
Layers:
	Descriptor:
		Media Type: application/vnd.oci.empty.v1+json
		Digest: sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
		Size: 2B
		Data: (2 bytes)
			0000: 7b7d                                     {}
Annotations:
	ci.umo.test-artifact.build-id: 1234567890
	ci.umo.test-artifact.data: foobar
Descriptor:
	Media Type: application/vnd.oci.image.manifest.v1+json
	Digest: sha256:$ad
	Size: ${as}B
	Annotations:
		org.opencontainers.image.ref.name: latest

== CONFIG ==
Descriptor:
	Media Type: application/vnd.oci.empty.v1+json
	Digest: sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
	Size: 2B
	Data: (2 bytes)
		0000: 7b7d                                     {}
SNAP
ok "stat of an artifact" $OCITREE stat --image "$T/art:latest"
check "is umoci 0.6's snapshot" 'diff -u "$T/art-want" <(sed "s/ *\$//" "$T/out") >&2'
ok "stat --json of it" $OCITREE stat --image "$T/art:latest" --json
is "the config by its descriptor, no history" "$(jq -c '[.config.descriptor.mediaType, has("history")]' "$T/out")" \
	'["application/vnd.oci.empty.v1+json",false]'
fails 1 "not an image config" "unpacking it is still refused" $OCITREE unpack --image "$T/art:latest" "$T/art-b"

# ---- installed as umoci (make install-umoci-link): umoci's --version and
# --help (cmd/umoci/main.go printVersion; urfave/cli's templates) ----
mkdir -p "$T/face" && ln -s "$OCITREE" "$T/face/umoci" || exit 1
U=$T/face/umoci
check "--version: 'umoci version', then the specs" \
	'[ "$("$U" --version | sed -n "1s/ [^ ]*$//p; 2s/: .*//p; 3s/: .*//p" | tr "\n" ,)" = "umoci version,image spec,runtime spec," ]'
check "the version is the umoci one ocitree follows" '"$U" --version | grep -q "^umoci version 0\.6\.0+ocitree\."'
is "--help has umoci's sections, in its order" "$("$U" --help | grep -E '^[A-Z ]+:$' | tr '\n' ' ')" \
	"$(umoci --help | grep -E '^[A-Z ]+:$' | grep -v AUTHOR | tr '\n' ' ')"
is "and umoci's first lines" "$("$U" --help | head -5)" "$(umoci --help | head -5)"
names() { sed -n "/^   $1:\$/,/^\$/p" | sed -n 's/^     \([a-z-]*\(, [a-z]*\)\?\)  .*/\1/p' | sort | tr '\n' ' '; }
is "the image commands are umoci's, aliases included" "$("$U" --help | names image)" "$(umoci --help | names image)"
is "the layout commands too" "$("$U" --help | names layout)" "$(umoci --help | names layout)"
for c in config unpack repack new tag stat insert gc init; do
	is "'umoci $c --help' starts as umoci's" "$("$U" $c --help | head -2)" "$(umoci $c --help | head -2)"
done
is "'umoci h stat' is 'umoci stat --help'" "$("$U" h stat | head -2)" "$(umoci h stat | head -2)"
ok "'umoci raw config' is raw runtime-config, as in umoci" "$U" raw config --image "$T/rf:t" "$T/face/config.json"
check "under its own name nothing changes" \
	'[ "$($OCITREE --version)" = "ocitree version $($OCITREE --version | cut -d" " -f3)" ] && $OCITREE --help | head -1 | grep -q "^Usage: ocitree"'

done_testing
