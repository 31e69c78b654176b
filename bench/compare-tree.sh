#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# compare-tree.sh A B: compare two directory trees exactly: every path with
# its type, mode, owner, size (regular files), link target, device numbers,
# mtime (seconds), hardlink grouping, xattrs (security.*, trusted.*, user.*)
# and the sha256 of every regular file.  Prints a diff and exits 1 when they
# differ.  Directory sizes and st_nlink of directories are not compared
# (they depend on the file system); mtimes of directories are compared
# unless COMPARE_DIR_MTIME=0.
#
#   bench/compare-tree.sh /tmp/umoci-bundle/rootfs /mnt/image
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 TREE-A TREE-B" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

listing() { # DIR OUT
	local dir=$1 out=$2
	(
		cd "$dir"
		# %y type %m mode %U:%G owner %s size %T@ mtime %l link target
		# %D:%i identify hardlinks (mapped to group numbers below)
		find . -mindepth 1 -printf '%P\0%y %#m %U:%G %s %T@ %l %n %i\0' |
			/usr/bin/python3 -c '
import sys, os, hashlib, stat
data = sys.stdin.buffer.read().split(b"\0")
groups = {}
rows = []
dir_mtime = os.environ.get("COMPARE_DIR_MTIME", "1") != "0"
for i in range(0, len(data) - 1, 2):
    path, meta = data[i], data[i + 1].decode("utf-8", "surrogateescape")
    t, mode, owner, size, mtime, rest = meta.split(" ", 5)
    link, nlink, ino = rest.rsplit(" ", 2)
    mtime = mtime.split(".")[0]
    st = os.lstat(path)
    extra = ""
    if t == "d":
        size = "-"
        if not dir_mtime:
            mtime = "-"
    if t in ("c", "b"):
        extra = "dev=%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
    if t == "f":
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                h.update(b)
        extra = "sha256=" + h.hexdigest()
        if int(nlink) > 1:
            groups[ino] = min(groups.get(ino, path), path)
            extra += " @HL" + ino + "@ nlink=" + nlink
    xattrs = []
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        names = []
    for n in sorted(names):
        if n.startswith("system.nfs4") or n == "security.selinux":
            continue
        try:
            v = os.getxattr(path, n, follow_symlinks=False)
        except OSError as e:
            v = ("<error %s>" % e.errno).encode()
        xattrs.append("%s=%s" % (n, v.hex()))
    rows.append("%s\t%s %s %s %s %s -> %s %s %s" % (path.decode("utf-8", "surrogateescape"), t, mode, owner, size,
                                                 mtime, link, extra, ",".join(xattrs)))
rows = [r.split("@HL")[0] + "hardlink-group=" + groups[r.split("@HL")[1].split("@")[0]].decode("utf-8", "surrogateescape") + r.split("@HL")[1].split("@", 1)[1] if "@HL" in r else r for r in rows]
rows.sort()
sys.stdout.write("\n".join(rows) + "\n")
'
	) >"$out"
}

listing "$1" "$work/a"
listing "$2" "$work/b"
if diff -u "$work/a" "$work/b" >"$work/diff"; then
	echo "identical: $(wc -l <"$work/a") entries"
	exit 0
fi
head -n 200 "$work/diff"
echo "trees differ ($(grep -c '^[-+][^-+]' "$work/diff") lines)" >&2
exit 1
