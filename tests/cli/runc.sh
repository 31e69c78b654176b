#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# runc starts a bundle that ocitree unpacked: the process, its arguments,
# environment, user and working directory come from the image config.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/tree-lib.sh"
is_root || skip_all "runc needs root here"
have runc || skip_all "runc is not installed"
have gcc || skip_all "gcc is needed to build a static test program"
have umoci || skip_all "umoci is not installed (it makes the reference bundle)"

mkdir -p "$T/img/work" "$T/img/etc"
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n' >"$T/img/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' >"$T/img/etc/group"
cat >"$T/hello.c" <<'EOF2'
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	char cwd[256];
	printf("hello from the image: uid=%d gid=%d cwd=%s GREETING=%s HOME=%s args=", (int)getuid(), (int)getgid(),
	       getcwd(cwd, sizeof(cwd)) ? cwd : "?", getenv("GREETING"), getenv("HOME"));
	for (int i = 1; i < argc; i++)
		printf("%s%s", argv[i], i + 1 < argc ? "," : "\n");
	return 0;
}
EOF2
gcc -static -O2 -o "$T/img/hello" "$T/hello.c" 2>"$T/gcc.err" || skip_all "cannot link a static program: $(head -1 "$T/gcc.err")"
tar_dir "$T/img" "$T/img.tar"
$MKIMAGE "$T/oci" app "$T/img.tar" --config \
	'{"Entrypoint":["/hello"],"Cmd":["one","two"],"Env":["GREETING=hi"],"User":"app","WorkingDir":"/work"}' >/dev/null

run_bundle() { # BUNDLE ID: run it without a terminal, output in $T/run.out
	jq '.process.terminal = false' "$1/config.json" >"$1/config.json.new" && mv "$1/config.json.new" "$1/config.json"
	timeout 60 runc --root "$T/runc-state" run --bundle "$1" "$2" >"$T/run.out" 2>"$T/run.err"
}
ok "umoci unpack (the reference)" umoci unpack --image "$T/oci:app" "$T/ub"
run_bundle "$T/ub" ocitree-test-u$$ || skip_all "runc cannot run containers here: $(tail -1 "$T/run.err")"
ok "ocitree unpack" $OCITREE unpack --image "$T/oci:app" "$T/ob"
check "runc runs the ocitree bundle" 'run_bundle "$T/ob" ocitree-test-o$$ || { cat "$T/run.err" >&2; false; }'
is "with the image's process" "$(cat "$T/run.out")" \
	"hello from the image: uid=1000 gid=1000 cwd=/work GREETING=hi HOME=/home/app args=one,two"
ok "ocitree raw runtime-config" $OCITREE raw runtime-config --image "$T/oci:app" --rootfs "$T/ob/rootfs" "$T/ob/config.json"
check "runc runs with it too" 'run_bundle "$T/ob" ocitree-test-r$$ && grep -q "args=one,two" "$T/run.out"'
done_testing
