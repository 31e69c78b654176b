#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# ocitree run: a command in a container (runc, crun) on a writable mount of
# an image, as root and as an unprivileged user (in a user namespace, with
# and without a /etc/subuid range): exit status, --env/--user/--workdir,
# --bind, --commit (validated, and umoci unpack sees the change), a
# non-root uid of the container writing on the mount, a failing command
# keeping its changes, a missing runtime, the layout untouched by failures;
# and root's plain mounts, open to every uid by default.
. "$top_srcdir/tests/fs/lib-fs.sh"
need_fuse
[ "$(id -u)" -eq 0 ] || skip_all "the test runs as root (it drops to nobody for the unprivileged part)"
have runc || have crun || skip_all "neither runc nor crun is installed"
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] && file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' ||
	skip_all "a static busybox is needed for the test image (package busybox-static)"
PY=/usr/bin/python3
TARIMAGE="$PY $top_srcdir/tests/tools/mkimage.py"
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"

# the image: busybox, two users, files of several owners and modes
R=$T/img
mkdir -p "$R"/{bin,etc,root,tmp,data,home/app}
cp "$BUSYBOX" "$R/bin/busybox"
for c in sh cat echo id touch ls rm mkdir stat pwd true false chown printf test grep; do ln -s busybox "$R/bin/$c"; done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\napp:x:1000:\nnogroup:x:65534:\n' >"$R/etc/group"
echo hello >"$R/etc/motd"
: >"$R/etc/resolv.conf" # as distribution images have it (else the runtime makes it, copying /etc up)
echo secret >"$R/etc/secret" && chmod 600 "$R/etc/secret"
chmod 1777 "$R/tmp"
chown 1000:1000 "$R/home/app"
tar --format=pax --numeric-owner -C "$R" -cf "$T/img.tar" .
L=$T/l
$TARIMAGE "$L" base "$T/img.tar" --config '{"Cmd":["/bin/sh","-c","echo default cmd"],"Env":["GREETING=hi"]}' >/dev/null ||
	{ echo "Bail out! mkimage failed"; exit 1; }

run() { "$OCITREE" run "$@"; }
no_run_mounts() { ! findmnt -rn -o TARGET | grep -q "$T/"; }

# ---------------------------------------------------------------- as root
ok "run the image's command" run --image "$L:base"
is "its output" "$(cat "$T/out")" "default cmd"
ok "run a command" run --image "$L:base" -- sh -c 'id -u; echo $PATH; echo $HOME $GREETING; cat /etc/motd'
is "as root, default PATH and HOME, the image's env and files" "$(cat "$T/out")" \
	"$(printf '0\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/root hi\nhello')"
check "nothing stays mounted" no_run_mounts
check "no temporary directory stays" '[ -z "$(ls -A "$TMPDIR")" ]'

# the mount a run serves its rootfs from reads ahead 1 MiB, as root's
# ocitree mount does: the parent raises it once the mount is ready
ok "a command reads its rootfs' read-ahead" run --image "$L:base" -- sh -c \
	'while read -r _ _ mm _ mp _; do if [ "$mp" = / ]; then cat "/sys/class/bdi/$mm/read_ahead_kb"; fi; done </proc/self/mountinfo'
is "root's run reads ahead 1 MiB" "$(cat "$T/out")" 1024

ok "--env, --user, --workdir" run --image "$L:base" --env FOO=bar --env GREETING=over --user app --workdir /home/app \
	-- sh -c 'echo $FOO $GREETING $(id -u):$(id -g) $(pwd) $HOME'
is "take effect" "$(cat "$T/out")" "bar over 1000:1000 /home/app /home/app"
fails 1 "cannot find user 'nosuch'" "an unknown user is an error" run --image "$L:base" --user nosuch -- true

snap=$(snapshot "$L")
s=0
run --image "$L:base" -- sh -c 'echo changed >/etc/motd; exit 7' >"$T/out" 2>"$T/err" || s=$?
is "the command's exit status is ocitree's" "$s" 7
kept=$(sed -n 's/.*its changes are kept in \([^ ]*\).*/\1/p' "$T/err")
check "a failing command keeps its upper directory and prints its path" '[ -n "$kept" ] && [ -d "$kept" ]'
is "with the change in it" "$(cat "$kept/etc/motd" 2>/dev/null)" "changed"
check "nothing stays mounted after a failure" no_run_mounts
ok "the kept upper directory runs again" run --image "$L:base" --upper "$kept" -- cat /etc/motd
is "and shows the change" "$(cat "$T/out")" "changed"
rm -rf "$(dirname "$kept")"
s=0
run --image "$L:base" -- sh -c 'exit 4' >/dev/null 2>"$T/err" || s=$?
is "a failing command that changed nothing: its status, and nothing to say" "$s:$(cat "$T/err")" "4:"
check "no temporary directory stays then" '[ -z "$(ls -A "$TMPDIR")" ]'
s=0
run --image "$L:base" -- sh -c 'sh -c "kill -9 \$\$"; exit $?' >/dev/null 2>&1 || s=$?
is "a command whose child was killed: 128+9" "$s" 137
fails 1 "OCI runtime '/nonexistent/runc' not found" "a missing runtime is a clear error" \
	run --image "$L:base" --runtime /nonexistent/runc -- true
fails 1 "no OCI runtime: neither runc nor crun" "no runtime at all is a clear error" \
	env PATH=/nonexistent "$OCITREE" run --image "$L:base" -- true
fails 1 "not found" "a missing tag is an error" run --image "$L:nosuch" -- true
fails 2 "LAYOUT:NEWTAG" "--commit needs a tag" run --image "$L:base" --commit "$L" -- true
is "the layout is unchanged after the failures" "$(snapshot "$L")" "$snap"

mkdir -p "$T/share"
echo shared >"$T/share/f"
ok "--bind read-only" run --image "$L:base" --bind "$T/share:/share:ro" -- sh -c 'cat /share/f; ! touch /share/new'
is "reads the host's file" "$(cat "$T/out")" "shared"
check "and cannot write there" '[ ! -e "$T/share/new" ]'
ok "--bind read-write" run --image "$L:base" --bind "$T/share:/share" -- sh -c 'echo from-container >/share/rw'
is "writes to the host" "$(cat "$T/share/rw" 2>/dev/null)" "from-container"
fails 2 "absolute" "--bind needs an absolute destination" run --image "$L:base" --bind "$T/share:rel" -- true

U=$T/upper
ok "a non-root uid of the container uses the mount" run --image "$L:base" --upper "$U" --user 65534 -- \
	sh -c 'cat /etc/motd && echo by-nobody >/tmp/nobody && ! cat /etc/secret 2>/dev/null && ! touch /etc/x 2>/dev/null'
is "its file is in the upper directory, owned by it" "$(stat -c %u "$U/tmp/nobody" 2>/dev/null)" 65534
ok "root in the container chowns" run --image "$L:base" --upper "$U" -- sh -c 'chown 1000:1000 /etc/motd; stat -c %u:%g /etc/motd'
is "to any uid" "$(cat "$T/out")" "1000:1000"
check "the mount targets the runtime made are not left as changes" \
	'[ ! -e "$U/proc" ] && [ ! -e "$U/dev" ] && [ ! -e "$U/sys" ]'
ok "a bind whose destination the image lacks" run --image "$L:base" --upper "$U" --bind "$T/share:/mnt/deep/share:ro" -- cat /mnt/deep/share/f
check "leaves nothing of it behind" '[ ! -e "$U/mnt" ]'

ok "--commit" run --image "$L:base" --commit "$L:changed" -- sh -c 'echo new >/etc/new; rm /etc/motd; mkdir -p /opt/x; echo y >/opt/x/y'
validated "the committed image is valid" "$L"
if have umoci; then
	ok "umoci unpacks it" umoci unpack --image "$L:changed" "$T/bundle"
	check "with the command's changes" '[ "$(cat "$T/bundle/rootfs/etc/new")" = new ] && [ ! -e "$T/bundle/rootfs/etc/motd" ] &&
		[ "$(cat "$T/bundle/rootfs/opt/x/y")" = y ]'
	check "and nothing else" '[ ! -e "$T/bundle/rootfs/proc" ] && [ ! -e "$T/bundle/rootfs/sys" ]'
else
	skip "umoci unpacks it" "umoci is not installed"
fi
ok "the new tag runs" run --image "$L:changed" -- cat /etc/new
is "with the change" "$(cat "$T/out")" "new"
snap=$(snapshot "$L")
fails 3 "not committed" "a failing command commits nothing" run --image "$L:base" --commit "$L:failed" -- sh -c 'touch /f; exit 3'
is "and leaves the layout as it was" "$(snapshot "$L")" "$snap"
rm -rf "$TMPDIR"/ocitree-run.*

if have crun; then
	s=0
	run --image "$L:base" --runtime crun -- sh -c 'echo via crun; id -u' >"$T/out" 2>"$T/err" || s=$?
	if [ $s -ne 0 ] && grep -q "cgroups in hybrid mode not supported" "$T/err"; then
		# crun 1.8 runs no container at all on a host with v1 and v2 cgroups mounted
		skip "--runtime crun" "this crun cannot run containers on this host's hybrid cgroups"
	else
		is "--runtime crun runs the command" "$s:$(cat "$T/out")" "$(printf '0:via crun\n0')"
	fi
	rm -rf "$TMPDIR"/ocitree-run.*
else
	skip "--runtime crun" "crun is not installed"
fi

# root's plain mount is open to every uid (allow_other by default)
M=$T/mnt
mkdir -p "$T/u2"
ok "root mounts writable" do_mount "$M" --upper "$T/u2" --image "$L:base"
check "allow_other by default" 'findmnt -n -o OPTIONS -M "$M" | grep -q allow_other'
as_nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)
is "another uid reads" "$("${as_nobody[@]}" cat "$M/etc/motd" 2>&1)" "hello"
ok "another uid writes where the modes let it" "${as_nobody[@]}" sh -c "echo n >'$M/tmp/n'"
is "its file" "$(stat -c %u "$T/u2/tmp/n" 2>/dev/null)" 65534
check "the modes are enforced" '! "${as_nobody[@]}" cat "$M/etc/secret" 2>/dev/null'
ok "unmount" do_umount "$M"
ok "-o no_allow_other" do_mount "$M" -o no_allow_other --upper "$T/u2" --image "$L:base"
check "other uids cannot use it then" '! "${as_nobody[@]}" cat "$M/etc/motd" 2>/dev/null'
ok "unmount" do_umount "$M"
fails 2 "contradicts" "no_allow_other with allow_other is an error" do_mount "$M" -o allow_other,no_allow_other --image "$L:base"

# --platform: one platform of an index tag, --commit replacing only its entry
if have jq; then
	$OCITREE tag --image "$L:base" amd && $OCITREE tag --image "$L:base" arm &&
		$OCITREE config --image "$L:arm" --platform.arch arm64 --no-history &&
		echo arm >"$T/marker" && $OCITREE insert --image "$L:arm" "$T/marker" /marker --no-history &&
		index_tag "$L" multi amd=linux/amd64 arm=linux/arm64/v8 || { echo "Bail out! index"; exit 1; }
	entry() { jq -r --arg a "$1" '.manifests[] | select(.platform.architecture==$a) | .digest' \
		"$L/blobs/sha256/$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="multi") |
			.digest' "$L/index.json" | cut -d: -f2)"; }
	amd=$(entry amd64) arm=$(entry arm64)
	ok "run --platform linux/arm64 of an index tag" run --image "$L:multi" --platform linux/arm64 -- cat /marker
	is "runs that platform's image" "$(cat "$T/out")" arm
	fails 1 "No such file" "--platform linux/amd64 runs the other" run --image "$L:multi" --platform linux/amd64 -- cat /marker
	fails 1 "it has linux/amd64, linux/arm64/v8" "an unknown platform names those there are" \
		run --image "$L:multi" --platform linux/s390x -- true
	ok "--commit of one platform" run --image "$L:multi" --platform linux/arm64 --commit "$L:multi" -- touch /new
	check "replaces that platform's entry only" '[ "$(entry arm64)" != "$arm" ] && [ "$(entry amd64)" = "$amd" ]'
	ok "the change is in" run --image "$L:multi" --platform linux/arm64 -- test -e /new
	validated "the layout" "$L"
else
	skip "--platform" "jq is not installed"
fi

# ---------------------------------------------------------- unprivileged
have setpriv || { done_testing; exit; }
[ -u "$(command -v newuidmap 2>/dev/null)" ] || diag "newuidmap is not setuid: the unprivileged runs map one id"
if ! "${as_nobody[@]}" unshare --user true 2>/dev/null; then
	skip "unprivileged run" "user namespaces are not available to unprivileged users here"
	done_testing
	exit
fi
lend_fuse
H=$T/home
mkdir -p "$H/tmp" "$H/cache"
cp -a "$L" "$H/l"
chown -R 65534:65534 "$H"
chmod 755 "$T"
user() {
	"${as_nobody[@]}" env HOME="$H" TMPDIR="$H/tmp" OCITREE_CACHE_DIR="$H/cache" "$@"
}
LU=$H/l

# no subordinate ids: root only
for f in /etc/subuid /etc/subgid; do [ -e $f ] && cp -p $f "$T/$(basename $f).saved"; done
restore_subids() {
	local f
	for f in subuid subgid; do
		if [ -e "$T/$f.saved" ]; then cp -p "$T/$f.saved" /etc/$f; else rm -f /etc/$f; fi
	done
}
at_exit restore_subids
sed -i '/^nobody:/d;/^65534:/d' /etc/subuid /etc/subgid 2>/dev/null || true
ok "unprivileged run, no /etc/subuid range" user "$OCITREE" run --image "$LU:base" -- sh -c 'id -u; cat /etc/motd; echo x >/etc/x'
is "is root in the container" "$(cat "$T/out")" "$(printf '0\nhello')"
s=0
user "$OCITREE" run --image "$LU:base" -- sh -c 'echo x >/x; exit 5' >/dev/null 2>"$T/err" || s=$?
is "unprivileged: the exit status" "$s" 5
kept=$(sed -n 's/.*its changes are kept in \([^ ]*\).*/\1/p' "$T/err")
check "unprivileged: the failing command's upper directory is kept" '[ -n "$kept" ] && [ -d "$kept" ]'

# a range: every uid of the container is mapped and uses the mount
echo "nobody:300000:65536" >>/etc/subuid
echo "nobody:300000:65536" >>/etc/subgid
if [ -u "$(command -v newuidmap 2>/dev/null)" ]; then
	ok "unprivileged run with a /etc/subuid range" user "$OCITREE" run --image "$LU:base" --upper "$H/up" -- \
		sh -c 'chown 1000:1000 /etc/motd && stat -c %u:%g /etc/motd'
	is "root chowns to a mapped uid" "$(cat "$T/out")" "1000:1000"
	is "which is a subordinate id on the host" "$(stat -c %u "$H/up/etc/motd" 2>/dev/null)" $((300000 + 1000 - 1))
	ok "unprivileged: a non-root uid of the container uses the mount" user "$OCITREE" run --image "$LU:base" \
		--upper "$H/up" --user 65534 -- \
		sh -c 'cat /etc/passwd >/dev/null && echo by-nobody >/tmp/nobody && ! cat /etc/secret 2>/dev/null && ! touch /etc/x 2>/dev/null'
	is "its file belongs to it" "$(stat -c %u "$H/up/tmp/nobody" 2>/dev/null)" $((300000 + 65534 - 1))
else
	skip "unprivileged run with a /etc/subuid range" "newuidmap is not installed setuid (package uidmap)"
fi
ok "unprivileged --commit" user "$OCITREE" run --image "$LU:base" --commit "$LU:changed" --env V=v1 --workdir /tmp -- \
	sh -c 'echo $V >rel; rm /etc/motd'
validated "the unprivileged commit is valid" "$LU"
if have umoci; then
	ok "umoci unpacks it" umoci unpack --image "$LU:changed" "$T/ubundle"
	check "with the command's changes" '[ "$(cat "$T/ubundle/rootfs/tmp/rel")" = v1 ] && [ ! -e "$T/ubundle/rootfs/etc/motd" ]'
fi
ok "unprivileged --bind read-only" user "$OCITREE" run --image "$LU:base" --bind "$T/share:/share:ro" -- \
	sh -c 'cat /share/f; ! touch /share/new2'
check "nothing written through it" '[ ! -e "$T/share/new2" ]'
check "no unprivileged mount is left in the host's namespace" no_run_mounts

done_testing
