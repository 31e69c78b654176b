#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The two things a newcomer needs, on a fresh Debian 12 machine:
#
#   ./run.sh demo    install what is missing, build, and run the demo on a
#                    small image this script makes itself
#   ./run.sh check   install what is missing, build (warnings are errors),
#                    run every test, again under ASan+UBSan, and the unit
#                    tests under valgrind; ends with "N passed, N failed"
#
# Installing packages needs root (or sudo). Builds go to _build/ (and
# _build-asan/ for the sanitizer run).
set -eu
cd "$(dirname "$0")"
top=$(pwd)

BUILD_DEPS="autoconf automake libtool pkg-config make gcc libfuse3-dev fuse3 libarchive-dev libzstd-dev
 libcjson-dev nettle-dev zlib1g-dev libisal-dev go-md2man bash-completion libyaml-dev"
TEST_DEPS="umoci skopeo runc jq python3 python3-jsonschema golang-github-opencontainers-image-spec-dev zstd isal
 attr libcap2-bin valgrind util-linux strace clang libclang-rt-14-dev
 crun podman buildah docker-registry fuse-overlayfs uidmap busybox-static"

say() { printf '==> %s\n' "$*" >&2; }

install_missing() {
	missing=
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	say "installing:$missing"
	if [ "$(id -u)" -eq 0 ]; then
		SUDO=
	elif command -v sudo >/dev/null 2>&1; then
		SUDO=sudo
	else
		echo "run.sh: missing packages:$missing; install them as root: apt-get install$missing" >&2
		exit 1
	fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

build() { # DIR CONFIGURE-ARGS...
	dir=$1
	shift
	[ -x configure ] || { say "autoreconf"; autoreconf -fi >/dev/null 2>&1; }
	mkdir -p "$dir"
	if [ ! -f "$dir/config.status" ] || [ "$(cat "$dir/.configured-with" 2>/dev/null)" != "$*" ]; then
		say "configure $*"
		(cd "$dir" && ../configure -q "$@" && echo "$*" >.configured-with)
	fi
	say "build in $dir"
	make -s -C "$dir" -j"$(nproc)" >/dev/null
}

# Count TAP results from the logs of a `make check` run.
tally() { # DIR
	awk '/^# (PASS|SKIP|XFAIL):/ {p += $3} /^# (FAIL|XPASS|ERROR):/ {f += $3} END {print p + 0, f + 0}' "$1/check.out"
}

run_check() { # DIR LABEL [MAKE VARS...]
	dir=$1
	label=$2
	shift 2
	say "make check ($label)"
	set +e
	make -C "$dir" -j"$(nproc)" check "$@" >"$dir/check.out" 2>&1
	status=$?
	set -e
	grep -E '^(# [A-Z]+:|FAIL:|ERROR:)' "$dir/check.out" | sed "s/^/[$label] /" >&2
	if [ $status -ne 0 ]; then
		for log in $(grep -lE '^(not ok|Bail out)' $(find "$dir/tests" -name '*.log') 2>/dev/null); do
			echo "---- $log" >&2
			grep -E -A6 '^(not ok|Bail out)' "$log" | head -60 >&2
		done
	fi
	set -- $(tally "$dir")
	passed=$((passed + $1))
	failed=$((failed + $2))
	[ $status -eq 0 ] || [ "$2" -gt 0 ] || failed=$((failed + 1))
}

cmd=${1:-}
case $cmd in
demo)
	install_missing $BUILD_DEPS umoci runc jq
	build _build
	exec sh "$top/contrib/demo.sh" "$top/_build/ocitree"
	;;
check)
	install_missing $BUILD_DEPS $TEST_DEPS
	passed=0
	failed=0
	build _build --enable-werror
	run_check _build "werror build"
	build _build-asan --enable-werror --enable-sanitizers
	run_check _build-asan "asan+ubsan" ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	# memcheck cannot follow ISA-L's SIMD code (its CRC and inflate results
	# look undefined), so this pass takes the zlib paths; the ASan run above
	# covers the ISA-L ones
	say "valgrind over the unit tests"
	for t in $(cd _build && ls tests/unit/test-* | grep -v '\.'); do
		if OCITREE_INFLATE=zlib valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
			--suppressions=tests/valgrind.supp \
			"_build/$t" >/dev/null 2>"_build/$(echo "$t" | tr / _).valgrind"; then
			passed=$((passed + 1))
		else
			echo "valgrind: $t" >&2
			cat "_build/$(echo "$t" | tr / _).valgrind" >&2
			failed=$((failed + 1))
		fi
	done
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	;;
*)
	echo "usage: ./run.sh demo|check" >&2
	exit 2
	;;
esac
