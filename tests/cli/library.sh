#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# libocitree as a library: the example program, built against the shared
# library with only public symbols, lists the tags of a layout; and once
# installed, pkg-config finds it.
. "$top_srcdir/tests/lib.sh"
EX=$top_builddir/contrib/examples/list-tags
L=$T/l
$OCITREE init --layout "$L" && $OCITREE new --image "$L:one" && $OCITREE tag --image "$L:one" two || exit 1
ok "the example program runs" "$EX" "$L"
is "it lists both tags" "$(cut -f1 "$T/out" | tr '\n' ' ')" "one two "
check "with digests and platforms" 'grep -q "sha256:.*linux/" "$T/out"'
fails 1 "list-tags: open layout" "and reports errors" "$EX" "$T/nope"

lib=$top_builddir/.libs/libocitree.so
if [ -f "$lib" ]; then
	bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ && $3 !~ /^ocitree_/ && $3 !~ /^_/ {print $3}')
	is "the shared library exports only ocitree_* symbols" "$bad" ""
else
	skip "the shared library exports only ocitree_* symbols" "no shared library was built"
fi
if have pkg-config && have cc && [ -z "${OCITREE_SKIP_INSTALL_TEST:-}" ]; then
	D=$T/destdir
	ok "make install DESTDIR=..." make -s -C "$top_builddir" install DESTDIR="$D"
	prefix=$(sed -n 's/^prefix=//p' "$top_builddir/src/lib/ocitree.pc")
	libdir=$(PKG_CONFIG_SYSROOT_DIR= pkg-config --variable=libdir "$top_builddir/src/lib/ocitree.pc")
	check "the binary, mount helper, library, headers, pkg-config file, man pages and completion are installed" \
		'[ -x "$D$prefix/bin/ocitree" ] && ls "$D$libdir"/libocitree.so.* >/dev/null && [ -f "$D$prefix/include/ocitree/ocitree.h" ] &&
		 [ -f "$D$libdir/pkgconfig/ocitree.pc" ] && [ -f "$D$prefix/share/man/man1/ocitree.1" ] &&
		 [ -f "$D$prefix/share/bash-completion/completions/ocitree" ] && [ -n "$(find "$D" -name mount.fuse.ocitree)" ]'
	missing=
	for md in "$top_srcdir"/man/*.md; do
		page=$(basename "$md" .md)
		[ -f "$D$prefix/share/man/man${page##*.}/$page" ] || missing="$missing $page"
	done
	for h in "$top_srcdir"/include/ocitree/*.h; do
		[ -f "$D$prefix/include/ocitree/${h##*/}" ] || missing="$missing ${h##*/}"
	done
	is "every man page (sections 1 and 5) and every header is installed" "$missing" ""
	# the mount helper: where mount(8) looks for it (libmount: /sbin,
	# /sbin/fs.d, /sbin/fs, whatever the prefix) when the prefix is a system
	# one; in the prefix's own sbin when it is private (distcheck's)
	helper=$(cd "$D" && find . -name mount.fuse.ocitree | sed 's/^\.//')
	configured=$(sed -n 's/^MOUNT_HELPER_DIR = //p' "$top_builddir/Makefile")
	case $configured in
	/sbin | '${sbindir}') # configure's own choice
		case $prefix in
		/usr | /usr/local) want=/sbin ;;
		*) want=$prefix/sbin ;;
		esac
		;;
	*) want=$configured ;; # --with-mount-helper-dir
	esac
	is "the mount helper is installed where mount(8) looks for it" "$helper" "$want/mount.fuse.ocitree"
	is "and it is a link to the installed ocitree" "$(readlink "$D$helper" 2>/dev/null)" "$prefix/bin/ocitree"
	export PKG_CONFIG_PATH=$D$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$D
	ok "pkg-config --cflags --libs ocitree works" pkg-config --cflags --libs ocitree
	san=
	ldd "$lib" 2>/dev/null | grep -q libasan && san="-fsanitize=address,undefined" # a sanitizer build
	ok "the example builds with pkg-config" cc $san "$top_srcdir/contrib/examples/list-tags.c" $(pkg-config --cflags --libs ocitree) -o "$T/list-tags"
	ok "and runs against the installed library" env LD_LIBRARY_PATH="$D$libdir" "$T/list-tags" "$L"
	# Static linking: pkg-config --static must name all that libocitree
	# needs (ISA-L, cJSON, Nettle, zstd, zlib, pthread, dl).  The default
	# build installs no libocitree.a (shared only): the build tree's archive
	# of the same objects stands in for it then.
	S=$T/static
	mkdir -p "$S"
	a=$D$libdir/libocitree.a
	[ -f "$a" ] || a=$top_builddir/.libs/libocitree-core.a
	cp "$a" "$S/libocitree.a"
	ok "the example links statically with pkg-config --static" cc $san "$top_srcdir/contrib/examples/list-tags.c" \
		$(pkg-config --cflags ocitree) -L"$S" $(pkg-config --static --libs ocitree) -o "$T/list-tags-static"
	check "without the shared library" '! ldd "$T/list-tags-static" | grep -q libocitree'
	ok "and runs" "$T/list-tags-static" "$L"
	is "listing the same tags" "$(cut -f1 "$T/out" | tr '\n' ' ')" "one two "
	ok "make uninstall DESTDIR=..." make -s -C "$top_builddir" uninstall DESTDIR="$D"
	is "and uninstall removes every file, the mount helper too" "$(cd "$D" && find . ! -type d)" ""
else
	skip "install and pkg-config" "pkg-config or cc missing, or OCITREE_SKIP_INSTALL_TEST set"
fi
done_testing
