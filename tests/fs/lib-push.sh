# SPDX-License-Identifier: Apache-2.0
# The image the push tests walk (push.sh, writable-push.sh), as mkimage.py
# input: a gzip layer of three directories of small files, a few big ones
# (700000 bytes: read by the kernel's read-ahead, across chunk boundaries)
# and empty ones; over it a zstd layer with a whiteout, files replaced in
# a/b, and a directory d of small files.
#   . "$top_srcdir/tests/fs/lib-push.sh"
#   push_image_spec PER_DIR D_FILES D_SIZE_MOD | $MKIMAGE DIR TAG
# PER_DIR: small files in each of a, a/b, c; D_FILES: files in d, of up
# to D_SIZE_MOD bytes
push_image_spec() {
	local per_dir=$1 d_files=$2 d_size_mod=$3 d i
	echo "layer gzip"
	for d in a a/b c; do
		echo "dir $d"
		for i in $(seq 1 "$per_dir"); do
			echo "file $d/f$i 0644 0 0 random:$i:$((i * 337 % 9000 + 1))"
			[ $((i % 40)) -eq 0 ] && echo "file $d/big$i 0644 0 0 random:$i:700000"
			[ $((i % 50)) -eq 0 ] && echo "file $d/empty$i text:"
		done
	done
	echo "layer zstd"
	echo "whiteout a/f7"
	for i in $(seq 1 60); do echo "file a/b/f$((i * 2)) 0644 0 0 random:$((i + 1000)):$((i * 97 + 5))"; done
	echo "dir d"
	for i in $(seq 1 "$d_files"); do
		echo "file d/g$i 0644 0 0 random:$((i + 2000)):$((i * 211 % d_size_mod + 1))"
	done
}
