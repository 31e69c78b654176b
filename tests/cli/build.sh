#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# ocitree build: recipes in stacker's format built with runc on writable
# mounts.  Every directive, built chains, stacker:// imports, apply of two
# images verbatim (and a conflict refused), build_only, substitutions,
# binds, from docker (a real docker-registry on a loopback port), --shell-fail,
# a failing step, an unknown directive, the cache (an unchanged
# recipe rebuilds nothing; a changed import rebuilds exactly what depends
# on it), reproducible digests, and every image valid and the same as
# umoci sees it.
# (lib-fs.sh for lend_fuse, shared with the mount tests that run at once)
. "$top_srcdir/tests/fs/lib-fs.sh"
. "$top_srcdir/tests/tree-lib.sh"
export OCITREE_CACHE_DIR=$T/cache

# ---- what needs no container ----
mkdir -p "$T/r0"
printf 'a:\n  from: {type: scratch}\n  rnu: echo x\n' >"$T/r0/stacker.yaml"
ok "init" $OCITREE init --layout "$T/l0"
fails 1 "stacker.yaml:3:3: unknown directive 'rnu' in image 'a'" "an unknown directive is named with its line" \
	$OCITREE build --layout "$T/l0" -f "$T/r0/stacker.yaml"
printf 'a:\n  from: {type: oci, url: "x:${{TAG}}"}\n' >"$T/r0/subst.yaml"
fails 1 "subst.yaml:2:29: no value for substitution 'TAG'" "a missing substitution is named" \
	$OCITREE build --layout "$T/l0" -f "$T/r0/subst.yaml"
fails 2 "missing mandatory option --layout" "--layout is needed" $OCITREE build -f "$T/r0/stacker.yaml"
fails 2 "invalid substitution 'nope'" "--substitute wants K=V" \
	$OCITREE build --layout "$T/l0" -f "$T/r0/stacker.yaml" --substitute nope
printf 'd:\n  from: {type: docker, url: "docker://127.0.0.1:9/none:latest"}\n' >"$T/r0/docker.yaml"
fails 1 "image 'd': skopeo could not copy 'docker://127.0.0.1:9/none:latest'" "from docker without a registry" \
	$OCITREE build --layout "$T/l0" -f "$T/r0/docker.yaml"
fails 1 "needs skopeo, which is not installed" "from docker without skopeo" \
	env PATH=/nonexistent $OCITREE build --layout "$T/l0" -f "$T/r0/docker.yaml"

# scratch + an import with a destination + config only: no container
mkdir -p "$T/r1/files"
echo data >"$T/r1/files/data.txt"
cat >"$T/r1/stacker.yaml" <<'EOF'
plain:
  from: {type: scratch}
  environment: {A: "1"}
  labels: {org.example.label: v}
  annotations: {org.example.note: "${{NOTE:none}}"}
  cmd: /bin/true
EOF
ok "a scratch image with config only" $OCITREE build --layout "$T/l0" -f "$T/r1/stacker.yaml" --substitute NOTE=hi
ok "it is tagged" $OCITREE stat --image "$T/l0:plain"
man=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "plain") | .digest' "$T/l0/index.json")
mj=$T/l0/blobs/sha256/${man#sha256:}
is "the annotation from the recipe, substituted" "$(jq -r '.annotations["org.example.note"]' "$mj")" hi
check "the cache key annotation" 'jq -e ".annotations[\"org.ocitree.build.key\"] | startswith(\"sha256:\")" "$mj" >/dev/null'
cfg=$T/l0/blobs/sha256/$(jq -r .config.digest "$mj" | cut -d: -f2)
is "environment" "$(jq -c .config.Env "$cfg")" '["A=1"]'
is "labels" "$(jq -r '.config.Labels["org.example.label"]' "$cfg")" v
is "cmd" "$(jq -c .config.Cmd "$cfg")" '["/bin/true"]'
is "no layers" "$(jq '.layers | length' "$mj")" 0
validated "the image is valid" "$T/l0"
ok "again" $OCITREE build --layout "$T/l0" -f "$T/r1/stacker.yaml" --substitute NOTE=hi
check "it comes from the cache" 'grep -q "^plain: sha256:.* (cached)" "$T/out"'
ok "another substitution" $OCITREE build --layout "$T/l0" -f "$T/r1/stacker.yaml" --substitute NOTE=ho
check "is another image" '! grep -q cached "$T/out"'
ok "from tar without steps" bash -c "cd '$T/r1' && mkdir -p root/etc && echo x >root/etc/x && tar -C root -cf root.tar . &&
	printf 't:\n  from: {type: tar, url: root.tar}\n' >tar.yaml && $OCITREE build --layout '$T/l0' -f tar.yaml"
ok "umoci unpacks it" umoci unpack --image "$T/l0:t" "$T/b-tar"
is "with the tarball's tree" "$(cat "$T/b-tar/rootfs/etc/x")" x

# ---- with containers ----
if ! is_root; then
	skip "builds with run steps" "runc as root only in this test (rootless: see tests/cli/rootless.sh)"
	done_testing
	exit
fi
have runc || { skip "builds with run steps" "runc is not installed"; done_testing; exit; }
[ -x /bin/busybox ] && LC_ALL=C ldd /bin/busybox 2>&1 | grep -q "not a dynamic" ||
	{ skip "builds with run steps" "a static busybox (busybox-static) makes the base image"; done_testing; exit; }

# the base: busybox, a passwd, a motd
mkdir -p "$T/base/bin" "$T/base/etc" "$T/base/usr/share"
cp /bin/busybox "$T/base/bin/busybox"
for c in sh cat cp rm echo mkdir ls true false test printf; do ln -s busybox "$T/base/bin/$c"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n' >"$T/base/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$T/base/etc/group"
echo 'welcome' >"$T/base/etc/motd"
tar_dir "$T/base" "$T/base.tar"
$MKIMAGE "$T/src" base "$T/base.tar" >/dev/null

R=$T/recipe
mkdir -p "$R/files/conf" "$R/pre" "$T/bindsrc"
echo hello >"$R/files/hello.txt"
echo 'key=value' >"$R/files/conf/app.conf"
echo bound >"$T/bindsrc/file"
cat >"$R/pre/stacker.yaml" <<'EOF'
tools:
  from: {type: scratch}
  import:
    - path: tool.txt
      dest: /opt/tool.txt
EOF
echo tool >"$R/pre/tool.txt"
cat >"$R/stacker.yaml" <<'EOF'
config:
  prerequisites: [pre/stacker.yaml]
base:
  from:
    type: oci
    url: ${{SRC}}:base
  import:
    - files/hello.txt
    - path: files/conf/
      dest: /etc/app/
  run: |
    cp /stacker/hello.txt /hello.txt
    rm /etc/motd
    echo "$GREETING $STACKER_LAYER_NAME" > /greeting
    test ! -e /stacker/imports
  build_env:
    GREETING: hi
  environment:
    APP: one
  labels:
    org.example.label: v
  annotations:
    org.example.note: x
  working_dir: /srv
  volumes: [/data]
  entrypoint: /bin/sh -c
  cmd: [echo, hi]
  user: nobody
  binds:
    - ${{BIND}} -> /mnt/bound
child:
  from: {type: built, tag: base}
  imports: [stacker://base/hello.txt]
  run:
    - cp /stacker/imports/hello.txt /from-base
    - cat /mnt/bound/file > /bound-copy
  binds:
    - ${{BIND}} -> /mnt/bound
  full_command: /bin/cat /from-base
builder:
  from: {type: built, tag: base}
  build_only: true
  run: echo artifact > /artifact
final:
  from: {type: scratch}
  imports:
    - path: stacker://builder/artifact
      dest: /artifact
one:
  from: {type: built, tag: base}
  run: echo one > /one
two:
  from: {type: built, tag: base}
  run: echo two > /two
merged:
  from: {type: built, tag: base}
  apply: [one, two]
EOF
build() { $OCITREE build --layout "$T/l" -f "$R/stacker.yaml" --substitute SRC="$T/src" --substitute BIND="$T/bindsrc" "$@"; }
digest_of() { jq -r --arg t "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' "$T/l/index.json"; }
manifest_of() { echo "$T/l/blobs/sha256/$(digest_of "$1" | cut -d: -f2)"; }
config_of() { echo "$T/l/blobs/sha256/$(jq -r .config.digest "$(manifest_of "$1")" | cut -d: -f2)"; }
layers_of() { jq -r '.layers[].digest' "$(manifest_of "$1")"; }

ok "init" $OCITREE init --layout "$T/l"
if ! build >"$T/build.out" 2>"$T/build.err"; then
	_result 1 "the recipe builds"
	diag "$(tail -20 "$T/build.err")"
	done_testing
	exit
fi
_result 0 "the recipe builds"
is "every image but the build-only one is tagged" "$(jq -r '.manifests[].annotations["org.opencontainers.image.ref.name"]' "$T/l/index.json" | sort | tr '\n' ' ')" \
	"base child final merged one tools two "
check "prerequisites first, each image after what it needs" \
	'[ "$(cut -d: -f1 "$T/build.out" | tr "\n" " ")" = "tools base child builder final one two merged " ]'
check "the build-only image is said to be so" 'grep -q "^builder: sha256:.*(build only, not tagged)" "$T/build.out"'
validated "every built image is valid" "$T/l"

ok "umoci unpacks base" umoci unpack --image "$T/l:base" "$T/b-base"
r=$T/b-base/rootfs
is "the run step's file" "$(cat "$r/hello.txt")" hello
is "build_env and STACKER_LAYER_NAME in the step" "$(cat "$r/greeting")" "hi base"
check "the step's removal" '[ ! -e "$r/etc/motd" ]'
is "an import with a destination" "$(cat "$r/etc/app/app.conf")" "key=value"
check "no /stacker in the image" '[ ! -e "$r/stacker" ]'
check "no bind mount point in the image" '[ ! -e "$r/mnt" ]'
check "nor the runtime's mount points the base did not have" \
	'[ ! -e "$r/proc" ] && [ ! -e "$r/sys" ] && [ ! -e "$r/dev" ] && [ ! -e "$r/etc/resolv.conf" ]'
check "the base's files are there" '[ -x "$r/bin/busybox" ] && [ -e "$r/etc/passwd" ]'
is "one new layer on the base's" "$(jq '.layers | length' "$(manifest_of base)")" 2
c=$(config_of base)
is "environment" "$(jq -r '.config.Env | map(select(startswith("APP="))) | .[0]' "$c")" APP=one
is "labels" "$(jq -r '.config.Labels["org.example.label"]' "$c")" v
is "working_dir" "$(jq -r .config.WorkingDir "$c")" /srv
is "volumes" "$(jq -c '.config.Volumes | keys' "$c")" '["/data"]'
is "entrypoint, split as a shell does" "$(jq -c .config.Entrypoint "$c")" '["/bin/sh","-c"]'
is "cmd" "$(jq -c .config.Cmd "$c")" '["echo","hi"]'
is "user" "$(jq -r .config.User "$c")" nobody
is "annotation" "$(jq -r '.annotations["org.example.note"]' "$(manifest_of base)")" x
check "the history entry's created_by is the run script" \
	'jq -r ".history[-1].created_by" "$c" | grep -q "^cp /stacker/hello.txt /hello.txt"'

ok "umoci unpacks child" umoci unpack --image "$T/l:child" "$T/b-child"
is "stacker:// import" "$(cat "$T/b-child/rootfs/from-base")" hello
is "a bind" "$(cat "$T/b-child/rootfs/bound-copy")" bound
check "built on base" '[ "$(layers_of child | head -2)" = "$(layers_of base)" ]'
is "full_command replaces entrypoint and cmd" "$(jq -c '[.config.Entrypoint, .config.Cmd]' "$(config_of child)")" \
	'[["/bin/cat","/from-base"],null]'

ok "umoci unpacks final" umoci unpack --image "$T/l:final" "$T/b-final"
is "an import from a build-only image" "$(cat "$T/b-final/rootfs/artifact")" artifact
is "from scratch: one layer" "$(jq '.layers | length' "$(manifest_of final)")" 1
ok "umoci unpacks tools" umoci unpack --image "$T/l:tools" "$T/b-tools"
is "the prerequisite's image" "$(cat "$T/b-tools/rootfs/opt/tool.txt")" tool

want=$( (layers_of base; layers_of one | tail -1; layers_of two | tail -1) | tr '\n' ' ')
is "apply: the layers of both images, verbatim" "$(layers_of merged | tr '\n' ' ')" "$want"
ok "umoci unpacks merged" umoci unpack --image "$T/l:merged" "$T/b-merged"
check "with both files" '[ "$(cat "$T/b-merged/rootfs/one" "$T/b-merged/rootfs/two")" = "$(printf "one\ntwo")" ]'

# runc runs a built image
if ok "ocitree unpack child" $OCITREE unpack --image "$T/l:child" "$T/ob"; then
	jq '.process.terminal = false' "$T/ob/config.json" >"$T/ob/c.json" && mv "$T/ob/c.json" "$T/ob/config.json"
	check "runc runs it" 'timeout 60 runc --root "$T/runc" run -b "$T/ob" ocitree-build-$$ >"$T/runc.out" 2>&1 &&
		grep -q hello "$T/runc.out"'
fi

# ---- the same as by hand: umoci unpack, runc run, umoci repack ----
ok "by hand: umoci unpack base" umoci unpack --image "$T/l:base" "$T/hand"
jq '.process.terminal = false | .process.args = ["/bin/sh", "-e", "-c", "echo one > /one"] | .process.user = {"uid": 0, "gid": 0} | .process.cwd = "/"' \
	"$T/hand/config.json" >"$T/hand/c.json" && mv "$T/hand/c.json" "$T/hand/config.json"
ok "by hand: runc run the step" timeout 60 runc --root "$T/runc" run -b "$T/hand" ocitree-hand-$$
ok "by hand: umoci repack" umoci repack --image "$T/l:by-hand" "$T/hand"
ok "umoci unpacks the hand-made image" umoci unpack --image "$T/l:by-hand" "$T/b-hand"
ok "umoci unpacks the built one" umoci unpack --image "$T/l:one" "$T/b-one"
# what the runtime made in the hand-made rootfs (the base has no /proc,
# /dev, /sys) is the difference the build removes on purpose
for d in proc dev sys etc/resolv.conf; do rm -rf "${T:?}/b-hand/rootfs/$d"; done
is "the built image's tree is the hand-made one's" "$(tree_listing "$T/b-one/rootfs")" "$(tree_listing "$T/b-hand/rootfs")"
# the runtime made /etc/resolv.conf in /etc, and the build removed it:
# /etc, unchanged by the step, keeps the times it has in the base
is "a directory the runtime made a target in keeps its mtime" "$(stat -c %y "$T/b-one/rootfs/etc")" \
	"$(stat -c %y "$T/b-base/rootfs/etc")"
ok "untag the hand-made image" $OCITREE rm --image "$T/l:by-hand"

# ---- the cache ----
snapshot "$T/l" >"$T/snap1"
ok "an unchanged recipe again" build
check "nothing rebuilt" '[ "$(grep -c "(cached)" "$T/out")" = 8 ]'
snapshot "$T/l" >"$T/snap2"
check "no digest changed" 'cmp -s "$T/snap1" "$T/snap2"'
echo changed >"$R/files/hello.txt"
ok "a changed import" build
is "rebuilds exactly the images that depend on it" "$(grep -v cached "$T/out" | cut -d: -f1 | tr '\n' ' ')" \
	"base child builder final one two merged "
is "and only those" "$(grep cached "$T/out" | cut -d: -f1 | tr '\n' ' ')" "tools "
ok "umoci unpacks the new child" umoci unpack --image "$T/l:child" "$T/b-child2"
is "with the new import" "$(cat "$T/b-child2/rootfs/from-base")" changed
ok "NAME builds one image and what it needs" build --no-cache tools
is "only it" "$(cut -d: -f1 "$T/out" | tr '\n' ' ')" "tools "

# ---- import destinations resolve symlinks inside the image ----
mkdir -p "$T/evil/usr/bin" "$T/hostdir"
ln -s "$T/hostdir" "$T/evil/escape"
ln -s usr/bin "$T/evil/bin"
cp /bin/busybox "$T/evil/usr/bin/"
tar_dir "$T/evil" "$T/evil.tar"
$MKIMAGE "$T/src" evil "$T/evil.tar" >/dev/null
cat >"$R/escape.yaml" <<'EOF'
e:
  from: {type: oci, url: "${{SRC}}:evil"}
  import:
    - path: files/hello.txt
      dest: /escape/
EOF
cat >"$R/merged-usr.yaml" <<'EOF'
m:
  from: {type: oci, url: "${{SRC}}:evil"}
  import:
    - path: files/hello.txt
      dest: /bin/
EOF
$OCITREE build --layout "$T/l" -f "$R/escape.yaml" --substitute SRC="$T/src" >/dev/null 2>&1
check "an import through an image's absolute symlink never reaches the host" '[ -z "$(ls -A "$T/hostdir")" ]'
ok "an import through a relative symlink (merged /usr)" \
	$OCITREE build --layout "$T/l" -f "$R/merged-usr.yaml" --substitute SRC="$T/src"
ok "umoci unpacks it" umoci unpack --image "$T/l:m" "$T/b-m"
is "the file is where the symlink leads in the image" "$(cat "$T/b-m/rootfs/usr/bin/hello.txt")" "$(cat "$R/files/hello.txt")"
check "and the symlink is still one" '[ -L "$T/b-m/rootfs/bin" ]'
ok "untag it" $OCITREE rm --image "$T/l:m"

# ---- apply conflicts ----
cat >"$R/conflict.yaml" <<'EOF'
a:
  from: {type: oci, url: "${{SRC}}:base"}
  run: echo a > /same
b:
  from: {type: oci, url: "${{SRC}}:base"}
  run: echo b > /same
c:
  from: {type: oci, url: "${{SRC}}:base"}
  apply: [a, b]
EOF
cp "$T/l/index.json" "$T/index.before"
fails 1 "apply: images 'a' and 'b' both change '/same', differently" "apply refuses two layers that disagree" \
	$OCITREE build --layout "$T/l" -f "$R/conflict.yaml" --substitute SRC="$T/src"
check "and tags nothing, not even the images it built" 'cmp -s "$T/index.before" "$T/l/index.json"'

# ---- from docker: a base copied from a registry with skopeo ----
if [ -x /usr/bin/docker-registry ] && command -v skopeo >/dev/null; then
	. "$top_srcdir/tests/podman-lib.sh"
	mkdir -p "$T/reg"
	at_exit registry_stop
	if check "docker-registry listens on a loopback port" registry_start "$T/reg" info; then
		ok "skopeo copies the base to the registry" timeout 120 skopeo copy -q --dest-tls-verify=false \
			"oci:$T/src:base" "docker://$REG/ocitree/base:1"
		cat >"$R/docker.yaml" <<EOF
fromdocker:
  from: {type: docker, url: "docker://$REG/ocitree/base:1", insecure: true}
  run: cat /etc/motd > /copied-motd
EOF
		ok "build from docker" timeout 300 $OCITREE build --layout "$T/l" -f "$R/docker.yaml"
		src_base=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "base") | .digest' "$T/src/index.json")
		is "on the base's layers, verbatim" "$(layers_of fromdocker | head -n -1)" \
			"$(jq -r '.layers[].digest' "$T/src/blobs/sha256/${src_base#sha256:}")"
		ok "umoci unpacks it" umoci unpack --image "$T/l:fromdocker" "$T/b-docker"
		is "its step ran on the base" "$(cat "$T/b-docker/rootfs/copied-motd")" welcome
		validated "the image from docker is valid" "$T/l"
		is "the copy left no tag behind" "$(jq -r '.manifests[].annotations["org.opencontainers.image.ref.name"]' "$T/l/index.json" | grep -c 'ocitree-build-tmp\|^image$')" 0
		# the cache's copy: a second build asks the registry for no layer
		base_layers=$(jq -r '.layers[].digest' "$T/src/blobs/sha256/${src_base#sha256:}")
		gets() { grep -a -c "GET /v2/ocitree/base/blobs/$1 " "$T/reg/registry.log"; }
		is "the first build fetched each layer once" "$(for d in $base_layers; do gets "$d"; done | sort -u)" 1
		printf 'again:\n  from: {type: docker, url: "docker://%s/ocitree/base:1", insecure: true}\n' "$REG" \
			>"$R/docker-again.yaml"
		ok "init a second layout" $OCITREE init --layout "$T/l2"
		ok "build from docker again, into another layout" timeout 300 $OCITREE build --layout "$T/l2" \
			-f "$R/docker-again.yaml"
		is "the registry gave no layer twice" "$(for d in $base_layers; do gets "$d"; done | sort -u)" 1
		is "on the same layers" "$(jq -r '.layers[].digest' "$T/l2/blobs/sha256/$(jq -r '.manifests[0].digest' "$T/l2/index.json" | cut -d: -f2)")" \
			"$base_layers"
		validated "that image is valid" "$T/l2"
		# a damaged cache is dropped and the copy made again
		first=$(echo "$base_layers" | head -n1)
		truncate -s 10 "$T/cache/docker/blobs/sha256/${first#sha256:}"
		ok "init a third layout" $OCITREE init --layout "$T/l3"
		ok "a damaged cache does not fail the build" timeout 300 $OCITREE build --layout "$T/l3" \
			-f "$R/docker-again.yaml"
		is "and says it copies again" "$(grep -c "the cached copy of 'docker://$REG/ocitree/base:1' failed" "$T/err")" 1
		is "the damaged layer came from the registry again" "$(gets "$first")" 2
		validated "that image is valid too" "$T/l3"
		is "the cache holds one copy per url" "$(jq '.manifests | length' "$T/cache/docker/index.json")" 1
		sed "s|ocitree/base:1|ocitree/none:1|" "$R/docker.yaml" >"$R/docker-none.yaml"
		fails 1 "image 'fromdocker': skopeo could not copy 'docker://$REG/ocitree/none:1'" "a missing image is named" \
			$OCITREE build --layout "$T/l" -f "$R/docker-none.yaml"
	fi
else
	skip "from docker" "docker-registry and skopeo make a registry to copy from"
fi

# ---- a failing step ----
cat >"$R/fail.yaml" <<'EOF'
good:
  from: {type: oci, url: "${{SRC}}:base"}
  run: echo fine > /fine
bad:
  from: {type: built, tag: good}
  run:
    - echo first > /first
    - echo "it went wrong" >&2; exit 3
EOF
cp "$T/l/index.json" "$T/index.before"
fails 1 "image 'bad': step 2 \(echo \"it went wrong\" >&2; exit 3\) exited with status 3" \
	"a failing step names the image and the step" $OCITREE build --layout "$T/l" -f "$R/fail.yaml" --substitute SRC="$T/src"
check "its output is shown" 'grep -q "it went wrong" "$T/err"'
check "index.json is as it was (no tag, not even the good image's)" 'cmp -s "$T/index.before" "$T/l/index.json"'
kept=$(sed -n "s/.*are kept in '\(.*\)' (ocitree run --upper)/\1/p" "$T/err")
check "the upper directory is kept, with the first step's change" '[ -n "$kept" ] && [ "$(cat "$kept/first")" = first ]'
[ -n "$kept" ] && rm -rf "$(dirname "$kept")"
ok "fsck --full after the failure" $OCITREE fsck --full --layout "$T/l"

# ---- --shell-fail: a shell in the failed step's container, on a terminal ----
if command -v script >/dev/null; then
	# script(1) gives the build a terminal and types into it what the pipe
	# says, once the shell is there (the runtime flushes what was typed
	# before); the shell must see the first step's file
	: >"$T/sf.out"
	{
		for _ in $(seq 300); do
			grep -q "a shell in its container" "$T/sf.out" && break
			sleep 0.1
		done
		sleep 1
		printf 'echo "inside $(cat /first)"; exit\n'
		# the pipe stays open until the build is over
		for _ in $(seq 300); do
			grep -q "exited with status" "$T/sf.out" && break
			sleep 0.1
		done
	} | timeout 120 script -qec "$OCITREE build --layout '$T/l' -f '$R/fail.yaml' --substitute SRC='$T/src' --shell-fail" \
			/dev/null >"$T/sf.out" 2>&1
	is "--shell-fail: the build still fails" "$?" 1
	check "a shell opens in the failed step's container" 'grep -q "^inside first" "$T/sf.out"'
	check "after it, the failure is named" 'grep -q "step 2 .* exited with status 3" "$T/sf.out"'
	check "and index.json is as it was" 'cmp -s "$T/index.before" "$T/l/index.json"'
	kept=$(sed -n "s/.*are kept in '\(.*\)' (ocitree run --upper).*/\1/p" "$T/sf.out" | tr -d '\r')
	[ -n "$kept" ] && rm -rf "$(dirname "$kept")"
	printf 'exit\n' | timeout 120 script -qec "$OCITREE build --layout '$T/l' -f '$R/fail.yaml' --substitute SRC='$T/src'" \
		/dev/null >"$T/sf2.out" 2>&1
	check "without --shell-fail no shell opens" '! grep -q "a shell in its container" "$T/sf2.out"'
	kept=$(sed -n "s/.*are kept in '\(.*\)' (ocitree run --upper).*/\1/p" "$T/sf2.out" | tr -d '\r')
	[ -n "$kept" ] && rm -rf "$(dirname "$kept")"
else
	skip "--shell-fail" "script(1) (util-linux) gives the build a terminal"
fi

# ---- kill -9 while a step runs ----
cat >"$R/slow.yaml" <<'EOF'
slow:
  from: {type: oci, url: "${{SRC}}:base"}
  run: echo started > /started; sleep 3; echo done > /done
EOF
mkdir -p "$T/ktmp"
TMPDIR=$T/ktmp $OCITREE build --layout "$T/l" -f "$R/slow.yaml" --substitute SRC="$T/src" >/dev/null 2>&1 &
kpid=$!
for _ in $(seq 100); do
	[ -n "$(find "$T/ktmp" -name started 2>/dev/null)" ] && break
	sleep 0.1
done
kill -9 $kpid
wait $kpid 2>/dev/null
sleep 3.5 # the step's container ends on its own
for mp in $(findmnt -rn -o TARGET | grep "^$T/ktmp" | sort -r); do umount -l "$mp"; done
ok "fsck --full after a build killed in a step" $OCITREE fsck --full --layout "$T/l"
check "its temporary tag is there" 'jq -r ".manifests[].annotations[\"org.opencontainers.image.ref.name\"]" "$T/l/index.json" | grep -q "^ocitree-build-tmp-$kpid-"'
ok "the next build" build tools
check "drops it" '! grep -q "ocitree-build-tmp-" "$T/l/index.json"'
check "and no tag of the killed build is left" '[ -z "$(digest_of slow)" ]'

# ---- reproducible ----
export SOURCE_DATE_EPOCH=1700000000
for n in 1 2; do
	$OCITREE init --layout "$T/rep$n"
	$OCITREE build --layout "$T/rep$n" -f "$R/stacker.yaml" --substitute SRC="$T/src" --substitute BIND="$T/bindsrc" \
		--cache-dir "$T/cache-rep$n" >"$T/rep$n.out" 2>"$T/rep$n.err" || diag "$(tail -5 "$T/rep$n.err")"
done
check "two builds from scratch with SOURCE_DATE_EPOCH give the same digests" \
	'[ -s "$T/rep1.out" ] && cmp -s "$T/rep1.out" "$T/rep2.out" && cmp -s "$T/rep1/index.json" "$T/rep2/index.json"'
unset SOURCE_DATE_EPOCH

# ---- unprivileged: in a user namespace, the mount made inside it ----
# (tests/fs/run.sh covers the uids of a /etc/subuid range; editing that
# file here would race with it)
as_nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)
if ! have setpriv || ! "${as_nobody[@]}" unshare --user true 2>/dev/null || [ ! -e /dev/fuse ]; then
	skip "unprivileged build" "setpriv, user namespaces or /dev/fuse are missing"
	done_testing
	exit
fi
lend_fuse
H=$T/home
mkdir -p "$H/tmp" "$H/cache" "$H/r"
cp -a "$T/src" "$H/src"
echo unprivileged >"$H/r/hello.txt"
cat >"$H/r/stacker.yaml" <<'EOF'
base:
  from: {type: oci, url: ../src:base}
  import: [hello.txt]
  run: |
    cp /stacker/hello.txt /hello.txt
    rm /etc/motd
child:
  from: {type: built, tag: base}
  run: echo child > /child
EOF
chown -R 65534:65534 "$H"
chmod 755 "$T"
user() { "${as_nobody[@]}" env HOME="$H" TMPDIR="$H/tmp" OCITREE_CACHE_DIR="$H/cache" "$@"; }
ok "unprivileged: init" user $OCITREE init --layout "$H/l"
ok "unprivileged: build" user $OCITREE build --layout "$H/l" -f "$H/r/stacker.yaml"
validated "unprivileged: the images are valid" "$H/l"
ok "umoci unpacks the unprivileged build" umoci unpack --image "$H/l:child" "$T/b-user"
r=$T/b-user/rootfs
check "unprivileged: the steps' changes" '[ "$(cat "$r/hello.txt" "$r/child")" = "$(printf "unprivileged\nchild")" ] && [ ! -e "$r/etc/motd" ]'
is "unprivileged: root's files stay root's" "$(stat -c %u "$r/hello.txt" 2>/dev/null)" 0
ok "unprivileged: again" user $OCITREE build --layout "$H/l" -f "$H/r/stacker.yaml"
check "unprivileged: from the cache" '[ "$(grep -c "(cached)" "$T/out")" = 2 ]'

done_testing
