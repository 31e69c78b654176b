# SPDX-License-Identifier: Apache-2.0
# Shared helpers for the shell tests: TAP output, a scratch directory, and
# the binary under test from $OCITREE (set by `make check`).
#
#   . "$top_srcdir/tests/lib.sh"
#   ok "init makes a layout" $OCITREE init --layout "$T/l"
#   fails 1 "no such layout" "missing layout is an error" $OCITREE ls --layout "$T/nope"
#   done_testing
set -u
: "${OCITREE:?set OCITREE to the ocitree binary under test}"
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
OCI_VALIDATE=${OCI_VALIDATE:-$top_srcdir/../shared/tools/oci-validate}

T=$(mktemp -d "${TMPDIR:-/tmp}/ocitree-test.XXXXXX")
chmod 755 "$T"
_tap_n=0
_tap_failed=0
_cleanups=()
at_exit() { _cleanups+=("$*"); }
_cleanup() {
	local c
	for c in "${_cleanups[@]}"; do eval "$c" || true; done
	rm -rf "$T"
}
trap _cleanup EXIT

_result() { # status description
	_tap_n=$((_tap_n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $_tap_n - $2"
	else
		echo "not ok $_tap_n - $2"
		_tap_failed=$((_tap_failed + 1))
	fi
}

# diag MESSAGE: a TAP comment
diag() { printf '%s\n' "$@" | sed 's/^/# /'; }

# ok DESC CMD...: CMD succeeds (its output goes to $T/out and $T/err)
ok() {
	local desc=$1
	shift
	if "$@" >"$T/out" 2>"$T/err"; then
		_result 0 "$desc"
	else
		local s=$?
		_result 1 "$desc"
		diag "command: $*" "exit status $s" "stderr:" "$(head -c 2000 "$T/err")"
	fi
}

# fails STATUS PATTERN DESC CMD...: CMD exits with STATUS and its stderr
# matches the extended regex PATTERN
fails() {
	local want=$1 pat=$2 desc=$3
	shift 3
	local s=0
	"$@" >"$T/out" 2>"$T/err" || s=$?
	if [ "$s" -eq "$want" ] && grep -Eq -- "$pat" "$T/err"; then
		_result 0 "$desc"
	else
		_result 1 "$desc"
		diag "command: $*" "exit status $s (want $want), stderr:" "$(head -c 2000 "$T/err")" "wanted: $pat"
	fi
}

# check DESC TEST-EXPRESSION...: a shell condition (eval'd)
check() {
	local desc=$1
	shift
	if eval "$@"; then
		_result 0 "$desc"
	else
		_result 1 "$desc"
		diag "condition: $*"
	fi
}

# is DESC GOT WANT: string equality
is() {
	if [ "$2" = "$3" ]; then
		_result 0 "$1"
	else
		_result 1 "$1"
		diag "got:  $2" "want: $3"
	fi
}

skip_all() {
	echo "1..0 # SKIP $*"
	exit 0
}

skip() { # DESC REASON
	_tap_n=$((_tap_n + 1))
	echo "ok $_tap_n - $1 # SKIP $2"
}

done_testing() {
	echo "1..$_tap_n"
	[ "$_tap_failed" -eq 0 ]
}

have() { command -v "$1" >/dev/null 2>&1; }

# validate LAYOUT [TAG...]: the independent validator, --full
validate() {
	"$OCI_VALIDATE" --full "$@"
}
have_validator() { [ -x "$OCI_VALIDATE" ] && /usr/bin/python3 -c 'import jsonschema' 2>/dev/null; }
# need_validator DESC: true when the validator can run; otherwise DESC is
# a skip, or a failure under CI=true, where every test dependency is
# installed and a skip would only hide that nothing was validated
need_validator() {
	have_validator && return 0
	local why="oci-validate ($OCI_VALIDATE) or python3-jsonschema missing"
	if [ "${CI:-}" = true ]; then
		_result 1 "$1"
		diag "$why, and CI=true: the validator is part of the test setup there"
	else
		skip "$1" "$why"
	fi
	return 1
}
# validated DESC LAYOUT [TAG...]: oci-validate --full accepts LAYOUT (see
# need_validator when it cannot run)
validated() {
	local desc=$1
	shift
	if need_validator "$desc"; then ok "$desc" validate "$@"; fi
}

# Prefix of a traced run of the build under test ($TRACED strace -f ...):
# LeakSanitizer (the sanitizer build) stops the world with ptrace at exit,
# which cannot work in a process strace already traces, and fails the run.
# Leaks are still checked by every run that is not traced.
TRACED="env ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

# ---- kill points (strace -e inject=SYSCALL:signal=KILL:when=K) ----
# strace counts the calls for `when` per thread, not per process: a kill
# at K fires only in a thread that makes at least K such calls.
#
# max_calls TRACE SYSCALL: the most calls of SYSCALL one thread made in
# TRACE (the output of strace -f -o), i.e. the largest K that fires
max_calls() {
	awk -v sc="$2(" 'substr($2, 1, length(sc)) == sc { n[$1]++ }
		END { m = 0; for (t in n) if (n[t] > m) m = n[t]; print m }' "$1"
}
# kill_sample MAX N: N of the points 1..MAX, always with 1 (the first call
# fires wherever the syscall is made at all), the rest a fixed random pick
kill_sample() {
	[ "$1" -gt 0 ] || return 0
	{
		echo 1
		if [ "$1" -gt 1 ] && [ "$2" -gt 1 ]; then seq 2 "$1" | shuf -n $(($2 - 1)) --random-source=<(yes); fi
	} | sort -n
}

# A snapshot of a layout's files and their contents, to prove a failed
# command changed nothing.
snapshot() { (cd "$1" && find . -type f ! -name '.ocitree-tmp.*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); }

# A listing of a tree for comparisons: type, mode, owner, size, link target,
# xattrs and a content digest for every path.
tree_listing() {
	(cd "$1" && find . -mindepth 1 -printf '%y %m %U:%G %s %P -> %l\n' | LC_ALL=C sort) | awk '
	{ if ($1 == "d") $4 = "-"; print }'
}

# index_tag LAYOUT NEWTAG TAG=OS/ARCH[/VARIANT]...: tag NEWTAG an image
# index of those tags' manifests, each with its platform, as `skopeo copy
# --all` writes one (needs jq); INDEX_ANNOTATIONS, a JSON object, becomes
# the index's own annotations
index_tag() {
	local l=$1 new=$2 entries=() spec t p os arch var ref idx d
	shift 2
	for spec; do
		t=${spec%%=*} p=${spec#*=}
		IFS=/ read -r os arch var <<<"$p"
		ref=$(jq -c --arg t "$t" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$t) |
			del(.annotations)' "$l/index.json")
		entries+=("$(jq -c --arg o "$os" --arg a "$arch" --arg v "$var" \
			'. + {platform: ({architecture: $a, os: $o} + (if $v == "" then {} else {variant: $v} end))}' <<<"$ref")")
	done
	idx=$(printf '%s\n' "${entries[@]}" | jq -sc --argjson ann "${INDEX_ANNOTATIONS:-null}" '{schemaVersion: 2,
		mediaType: "application/vnd.oci.image.index.v1+json", manifests: .} +
		(if $ann == null then {} else {annotations: $ann} end)' | tr -d '\n')
	d=$(printf %s "$idx" | sha256sum | cut -d' ' -f1)
	printf %s "$idx" >"$l/blobs/sha256/$d"
	jq -c --arg d "sha256:$d" --argjson s "${#idx}" --arg n "$new" '.manifests += [{mediaType:
		"application/vnd.oci.image.index.v1+json", digest: $d, size: $s,
		annotations: {"org.opencontainers.image.ref.name": $n}}]' "$l/index.json" >"$l/index.json.new" &&
		mv "$l/index.json.new" "$l/index.json"
}
