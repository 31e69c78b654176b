# SPDX-License-Identifier: Apache-2.0
# Helpers for the unpack/repack/insert tests: images built at run time by a
# tool that is neither ocitree nor umoci (tests/tools/mkimage.py over GNU tar
# or Python tarfile archives), and tree dumps to compare unpacked trees.
#
#   . "$top_srcdir/tests/lib.sh"; . "$top_srcdir/tests/tree-lib.sh"
PY=/usr/bin/python3
MKIMAGE="$PY $top_srcdir/tests/tools/mkimage.py"
MTREE_DIFF="$PY $top_srcdir/tests/tools/mtree-diff.py"
is_root() { [ "$(id -u)" = 0 ]; }

# tar_dir DIR OUT: a pax archive of DIR's contents with numeric owners,
# xattrs and sparse files, as image builders write them
tar_dir() {
	tar --format=pax --xattrs --xattrs-include='*' --numeric-owner --sparse -C "$1" -cf "$2" .
}

# special_layers DIR: DIR/l1.tar and DIR/l2.tar, the edge cases of a real
# image (root-only parts are left out when not root)
special_layers() {
	local d=$1 r=$1/l1 i
	mkdir -p "$r"/{bin,etc,data,dev,opaque/sub,replace-dir,deep,owners,times,names,ro-dir}
	printf 'hello\n' >"$r/etc/hello"
	: >"$r/etc/empty"
	head -c 300000 /dev/urandom >"$r/data/random.bin"
	printf 'start' >"$r/data/sparse" && truncate -s 3M "$r/data/sparse" && printf 'end' >>"$r/data/sparse"
	printf '#!/bin/sh\necho hi\n' >"$r/bin/tool" && chmod 4755 "$r/bin/tool"
	cp "$r/bin/tool" "$r/bin/capped" && chmod 755 "$r/bin/capped"
	setfattr -n user.mime -v text/plain "$r/etc/hello"
	setfattr -n user.empty "$r/etc/empty"
	ln "$r/etc/hello" "$r/etc/hello-hard" && ln "$r/etc/hello" "$r/data/hello-hard2"
	ln -s ../etc/hello "$r/data/rel-link" && ln -s /etc/hello "$r/data/abs-link" && ln -s /nonexistent "$r/data/dangling"
	mkfifo "$r/dev/fifo"
	mkdir -m 1777 "$r/tmp" && mkdir -m 2775 "$r/data/setgid"
	echo x >"$r/names/name with spaces"; echo x >"$r/names/ünïcødé-名前"; echo x >"$r/names/back\\slash"
	echo x >"$r/names/hash#and=equals"; echo x >"$r/names/$(printf 'n%.0s' $(seq 255))"
	local p=$r/deep; for i in $(seq 40); do p=$p/d$i; done; mkdir -p "$p" && echo bottom >"$p/file"
	printf 'nobody may read\n' >"$r/data/noperm" && chmod 000 "$r/data/noperm"
	echo old >"$r/times/old" && touch -d '1971-02-03 04:05:06' "$r/times/old"
	echo new >"$r/times/future" && touch -d '2099-12-31 23:59:59' "$r/times/future"
	echo 1 >"$r/opaque/keep-not"; echo 2 >"$r/opaque/sub/gone"; echo 3 >"$r/ro-dir/inside"
	echo f >"$r/replace-dir/inner"; echo g >"$r/becomes-dir"
	echo del >"$r/etc/deleted"; mkdir -p "$r/deleted-dir/x" && echo y >"$r/deleted-dir/x/y"
	if is_root; then
		setcap cap_net_raw+ep "$r/bin/capped"
		setfattr -n trusted.note -v secret "$r/etc/empty"
		mknod "$r/dev/null" c 1 3 && mknod "$r/dev/loop9" b 7 9
		echo a >"$r/owners/user" && chown 1000:1000 "$r/owners/user"
		echo b >"$r/owners/nobody" && chown 65534:65534 "$r/owners/nobody"
		echo c >"$r/owners/mixed" && chown 0:100 "$r/owners/mixed" && chmod 640 "$r/owners/mixed"
		mkdir "$r/owners/dir" && chown 123:456 "$r/owners/dir"
	fi
	chmod 0555 "$r/ro-dir"
	# whole seconds: umoci rounds sub-second mtimes when it writes a layer
	find "$r" ! -path "$r/times/*" -exec touch -h -d '2023-05-05 05:05:05' {} +
	touch -d '2020-01-01 00:00:00' "$r/ro-dir" "$r/deep" "$r/names"
	tar_dir "$r" "$d/l1.tar"

	r=$d/l2
	mkdir -p "$r"/{etc,data,opaque,becomes-dir}
	: >"$r/etc/.wh.deleted"; : >"$r/.wh.deleted-dir"
	: >"$r/opaque/.wh..wh..opq"; echo fresh >"$r/opaque/fresh"
	echo now-a-file >"$r/replace-dir"; echo in >"$r/becomes-dir/in"
	printf 'hello\nchanged\n' >"$r/etc/hello" && setfattr -n user.mime -v text/changed "$r/etc/hello"
	head -c 1000 /dev/urandom >"$r/data/random.bin" && chmod 600 "$r/data/random.bin"
	ln -s /etc/other "$r/data/abs-link"
	printf 'layer2\n' >"$r/etc/layer2"
	find "$r" -exec touch -h -d '2021-06-01 12:00:00' {} +
	tar_dir "$r" "$d/l2.tar"
}

# tree_dump ROOT: every path with type, mode, owner, size, mtime, link
# target, content digest and xattrs, sorted; comparable between unpackers
tree_dump() {
	(
		cd "$1" || exit 1
		find . -mindepth 1 -printf '%y %m %U:%G %s %TY%Tm%Td%TH%TM%TS %P -> %l\n' | LC_ALL=C sort |
			awk '{ if ($1 == "d") $4 = "-"; sub(/\.[0-9]+$/, "", $5); print }'
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum
		getfattr -R -h -d -m - -e hex . 2>/dev/null | awk '/^# file:/ {f=$3; next} /=/ {print f, $0}' | LC_ALL=C sort
	)
}

# image_digest LAYOUT TAG: the manifest digest a tag points at
image_digest() {
	jq -r --arg t "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$t) | .digest' \
		"$1/index.json"
}

# image_json LAYOUT TAG manifest|config: a document of an image
image_json() {
	local m
	m=$(image_digest "$1" "$2")
	case $3 in
	manifest) cat "$1/blobs/sha256/${m#sha256:}" ;;
	config) cat "$1/blobs/sha256/$(jq -r .config.digest "$1/blobs/sha256/${m#sha256:}" | cut -d: -f2)" ;;
	esac
}

# last_layer_list LAYOUT TAG: "type path" of every entry of the top layer,
# read by Python's tarfile (neither ocitree nor umoci)
last_layer_list() {
	local d
	d=$(image_json "$1" "$2" manifest | jq -r '.layers[-1].digest' | cut -d: -f2)
	$PY - "$1/blobs/sha256/$d" <<'EOF'
import signal, sys, tarfile
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
with tarfile.open(sys.argv[1], "r:*") as t:
    for m in t:
        print(" ".join(x for x in (m.type.decode() if m.type else "0", m.name.lstrip("./") or ".", m.linkname) if x))
EOF
}

# valid DESC LAYOUT: oci-validate --full accepts LAYOUT (see need_validator)
valid() {
	local lay=$2
	if need_validator "$1"; then
		check "$1" 'validate "$lay" >&2'
	fi
}
