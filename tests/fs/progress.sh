#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Progress on a terminal: unpack, the index pass of a mount and commit show
# a line that they rub out when done; a mount whose indexes are cached, and
# every command whose stderr is not a terminal, say nothing.  script(1)
# gives the commands a terminal.
. "$top_srcdir/tests/fs/lib-fs.sh"
need_fuse
have script || skip_all "script (bsdutils) is needed for a terminal"
[ "$(id -u)" -eq 0 ] || skip_all "needs root (the writable mount keeps owners)"

$MKIMAGE "$T/l" base >/dev/null <<'SPEC' || { echo "Bail out! mkimage failed"; exit 1; }
layer gzip
dir opt
file opt/a 0644 0 0 random:1:6000000
layer gzip
file opt/b 0644 0 0 random:2:6000000
SPEC

# on_tty OUT CMD...: run CMD on a terminal, its output in OUT.  The output
# starts with a line saying whether stderr was a terminal, so that a check
# that something is absent cannot pass on a capture that never happened.
on_tty() {
	local out=$1
	shift
	script -qec "if [ -t 2 ]; then echo tty: yes >&2; else echo tty: no >&2; fi; $(printf '%q ' "$@")" /dev/null \
		>"$out" 2>&1
}
captured() { grep -q '^tty: yes' "$1"; }

ok "unpack on a terminal" on_tty "$T/tty" "$OCITREE" unpack --image "$T/l:base" "$T/b"
check "script(1) gave it a terminal" 'captured "$T/tty"'
check "it shows the layers as it goes" 'grep -q "unpack: layer [12]/2: " "$T/tty"'
check "and rubs the line out at the end" 'tail -c 200 "$T/tty" | grep -q $'"'"'\r\e\[K'"'"''

M=$T/m U=$T/u
mkdir -p "$M" "$U"
ok "a first mount on a terminal" on_tty "$T/tty" "$OCITREE" mount --image "$T/l:base" "$M"
_mounts+=("$M")
check "it shows the index pass" 'grep -q "index: layer [123]/2: .*entries" "$T/tty"'
ok "unmount" do_umount "$M"
ok "a second mount on a terminal" on_tty "$T/tty" "$OCITREE" mount --image "$T/l:base" "$M"
check "with its indexes cached it says nothing (on a terminal)" 'captured "$T/tty" && ! grep -q "index:" "$T/tty"'
ok "unmount" do_umount "$M"
ok "a mount off a terminal" do_mount "$M" --rebuild-index --image "$T/l:base"
is "says nothing, index pass or not" "$(cat "$T/err")" ""
ok "unmount" do_umount "$M"

ok "a writable mount" do_mount "$M" --upper "$U" --image "$T/l:base"
chmod 600 "$M/opt/a" # its data comes from the layer: commit indexes it
mkdir "$M/many" && for i in $(seq 600); do echo "$i" >"$M/many/$i"; done
ok "unmount" do_umount "$M"
rm -rf "$OCITREE_CACHE_DIR"
ok "commit on a terminal, with no index cached" on_tty "$T/tty" "$OCITREE" commit --upper "$U" --image "$T/l:new"
check "it shows the index pass" 'grep -q "index: layer [123]/2: " "$T/tty"'
check "and the entries it writes" 'grep -q "commit: .*, [0-9]* entries" "$T/tty"'
check "then the result" 'grep -q "new: sha256:" "$T/tty"'
ok "the committed image checks" "$OCITREE" fsck --full --layout "$T/l"
done_testing
