/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: the layer index file loader and everything a mount does
 * with an index: entries and their strings, xattrs, the merged tree built
 * from it (lookups, listings, stat) and reads of file data through the
 * checkpoint table (gzip) or the uncompressed tar (the others).
 *
 * Input: a flags byte (1: make the checksums right first, as a hostile
 * writer of the cache could; 2: read through a chunk cache; 4: inflate
 * with zlib instead of ISA-L), the blob digest the index must be for
 * (NUL-terminated), the length of the index image (u32, little endian),
 * the image, and the rest: the layer blob (for gzip) or its uncompressed
 * tar (for the others).  tests/fuzz/make-seeds.sh makes seeds of this form
 * from real indexes.
 *
 * The merged tree goes through its cache file too: written, then damaged
 * at a few places the input chooses (the checksum made right or not), and
 * mapped back or merged again; either way a tree a reader can walk.
 */
#define _GNU_SOURCE
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>

#include "layer-index-internal.h"
#include "ocitree/tree.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz-index: %s\n", what);
	abort();
}

static uint64_t rng(uint64_t *x)
{
	*x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
	return *x;
}

static void walk_tree(struct ocitree_tree *t, struct ocitree_layer_index *idx, uint64_t *seed, size_t *budget)
{
	uint32_t n = ocitree_tree_inodes(t);
	if (n < 1)
		fail("a tree without a root");
	for (uint32_t ino = 1; ino <= n; ino++) {
		struct stat st;
		if (ocitree_tree_stat(t, ino, &st) < 0)
			fail("stat of a valid inode failed");
		uint32_t k = ocitree_tree_dir_size(t, ino);
		if (k && !S_ISDIR(st.st_mode))
			fail("children under a non-directory");
		const char *prev = NULL;
		for (uint32_t i = 0; i < k; i++) {
			uint32_t child = 0;
			const char *name = ocitree_tree_dir_entry(t, ino, i, &child);
			if (!name || !*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strchr(name, '/'))
				fail("a directory entry that is not a plain name");
			if (prev && strcmp(prev, name) >= 0)
				fail("directory entries out of order");
			prev = name;
			if (child < 2 || child > n)
				fail("a directory entry with a bad inode");
			if (ocitree_tree_lookup(t, ino, name) != child)
				fail("lookup does not find a listed name");
		}
		struct ocitree_layer_index *l = NULL;
		const struct ocitree_layer_entry *e = ocitree_tree_entry(t, ino, &l);
		if (!e)
			continue;
		if (l != idx)
			fail("an entry from nowhere");
		if (e->type == OCITREE_ENTRY_SYMLINK) {
			volatile size_t len = strlen(ocitree_layer_index_string(l, e->link));
			(void)len;
		}
		if (e->type != OCITREE_ENTRY_REG || !*budget)
			continue;
		/* the data, as fs_read reads it: a piece at a random offset */
		size_t want = e->size < 65536 ? (size_t)e->size : 65536;
		if (want > *budget)
			want = *budget;
		*budget -= want;
		uint64_t off = e->size > want ? rng(seed) % (e->size - want + 1) : 0;
		_cleanup_free_ char *buf = xmalloc(want ? want : 1);
		struct ocitree_error *err = NULL;
		ssize_t got = ocitree_layer_index_pread(l, buf, want, e->data_off + off, &err);
		if (got < 0 && (!err || !err->msg || !*err->msg))
			fail("a read error without a message");
		if (got > (ssize_t)want)
			fail("read more than asked");
		ocitree_error_free(err);
	}
}

/* What a reader does with a tree that need not make sense (a damaged cache
 * file with its checksum made right): every inode, entry and name is
 * followed; nothing may be out of bounds. */
static void touch_tree(struct ocitree_tree *t)
{
	for (uint32_t ino = 1; ino <= ocitree_tree_inodes(t); ino++) {
		struct stat st;
		if (ocitree_tree_stat(t, ino, &st) < 0)
			fail("stat of a valid inode failed");
		for (uint32_t i = 0; i < ocitree_tree_dir_size(t, ino); i++) {
			uint32_t child = 0;
			const char *name = ocitree_tree_dir_entry(t, ino, i, &child);
			if (!name || child < 1 || child > ocitree_tree_inodes(t))
				fail("a directory entry out of range");
			volatile uint32_t found = ocitree_tree_lookup(t, ino, name);
			(void)found;
		}
	}
}

/* The one cache file of a merged tree under cache, or NULL. */
static char *tree_file(const char *root)
{
	_cleanup_free_ char *dir = xasprintf("%s/tree-v1/sha256", root);
	DIR *d = opendir(dir);
	char *found = NULL;
	for (struct dirent *e; d && (e = readdir(d));)
		if (e->d_name[0] != '.' && !found)
			found = xasprintf("%s/%s", dir, e->d_name);
	if (d)
		closedir(d);
	return found;
}

static char tree_cache[] = "/tmp/fuzz-index-trees.XXXXXX";
static bool cache_made;

static void remove_cache(void)
{
	_cleanup_free_ char *sub = xasprintf("%s/tree-v1/sha256", tree_cache),
	                    *top = xasprintf("%s/tree-v1", tree_cache);
	rmdir(sub);
	rmdir(top);
	rmdir(tree_cache);
}

static void cached_tree(struct ocitree_layer_index *idx, uint64_t *seed)
{
	if (!cache_made) {
		if (!mkdtemp(tree_cache))
			fail("mkdtemp");
		cache_made = true;
		atexit(remove_cache);
	}
	struct ocitree_error *err = NULL;
	struct ocitree_tree *t = ocitree_tree_open_cached(&idx, 1, 0, tree_cache, true, &err);
	if (!t)
		fail("a cached tree of one valid index failed");
	walk_tree(t, idx, seed, &(size_t){0});
	ocitree_tree_free(t);
	_cleanup_free_ char *file = tree_file(tree_cache);
	if (!file)
		return; /* not written: /tmp is full or read-only */
	_cleanup_buf_ struct buf b = BUF_INIT;
	if (read_file_at(AT_FDCWD, file, 1u << 30, &b, "tree", &err) < 0)
		fail("read back the tree file");
	t = ocitree_tree_open_cached(&idx, 1, 0, tree_cache, false, &err);
	if (!t)
		fail("the cached tree failed to map");
	walk_tree(t, idx, seed, &(size_t){0});
	ocitree_tree_free(t);
	unsigned k = 1 + (unsigned)(rng(seed) % 4);
	for (unsigned i = 0; i < k && b.len; i++)
		b.data[rng(seed) % b.len] ^= (char)(1u << (rng(seed) % 8));
	if (rng(seed) & 1)
		tree_file_seal(b.data, b.len);
	if (write_file_nosync_at(AT_FDCWD, file, b.data, b.len, 0644, &err) < 0)
		fail("write the damaged tree file");
	t = ocitree_tree_open_cached(&idx, 1, 0, tree_cache, false, &err);
	if (!t)
		fail("a damaged cached tree was neither mapped nor merged again");
	touch_tree(t);
	ocitree_tree_free(t);
	unlink(file);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t flags = data[0];
	const char *digest = (const char *)data + 1;
	const uint8_t *nul = memchr(data + 1, 0, size - 1 < 128 ? size - 1 : 128);
	if (!nul || (size_t)(nul + 1 - data) + 4 > size)
		return 0;
	const uint8_t *p = nul + 1;
	uint32_t img_len;
	memcpy(&img_len, p, 4);
	p += 4;
	size_t left = size - (size_t)(p - data);
	if (img_len > left)
		img_len = (uint32_t)left;
	_cleanup_free_ uint8_t *img = xmalloc(img_len ? img_len : 1);
	memcpy(img, p, img_len);
	const uint8_t *blob = p + img_len;
	size_t blob_len = left - img_len;
	if (flags & 1)
		layer_index_image_seal(img, img_len);
	if (flags & 4)
		setenv("OCITREE_INFLATE", "zlib", 1);
	else
		unsetenv("OCITREE_INFLATE");

	int fd = memfd_create("fuzz-index", MFD_CLOEXEC);
	if (fd < 0 || write_all(fd, blob, blob_len) < 0)
		fail("memfd");
	int data_fd = dup(fd);
	struct ocitree_chunk_cache *cache = flags & 2 ? ocitree_chunk_cache_new(4u << 20) : NULL;
	struct ocitree_error *err = NULL;
	struct ocitree_layer_index *idx = layer_index_from_image(img, img_len, digest, fd, data_fd, cache, &err);
	if (!idx) {
		if (!err || !err->msg || !*err->msg)
			fail("an error without a message");
		ocitree_error_free(err);
		ocitree_chunk_cache_free(cache);
		return 0;
	}
	uint64_t seed = hash_bytes(data, size) | 1;
	size_t n = ocitree_layer_index_count(idx);
	for (size_t i = 0; i < n; i++) {
		const struct ocitree_layer_entry *e = ocitree_layer_index_entry(idx, i);
		if (!e)
			fail("a counted entry is missing");
		volatile size_t len = strlen(ocitree_layer_index_string(idx, e->path)) +
				      strlen(ocitree_layer_index_string(idx, e->link));
		(void)len;
		uint32_t cur = 0;
		const char *xn;
		const void *xv;
		size_t xl;
		while (ocitree_layer_entry_xattr_next(idx, e, &cur, &xn, &xv, &xl)) {
			volatile size_t s = strlen(xn) + (xl ? ((const uint8_t *)xv)[xl - 1] : 0);
			(void)s;
		}
	}
	(void)ocitree_layer_index_string(idx, (uint32_t)rng(&seed));
	(void)ocitree_layer_index_checkpoints(idx);

	/* the merged tree, and reads through it */
	size_t budget = 1u << 20;
	for (unsigned raw = 0; raw < 2; raw++) {
		struct ocitree_tree *t = ocitree_tree_build(&idx, 1, raw ? OCITREE_TREE_RAW : 0, &err);
		if (!t)
			fail("a tree of one valid index failed");
		walk_tree(t, idx, &seed, &budget);
		ocitree_tree_free(t);
	}
	cached_tree(idx, &seed);
	/* reads anywhere in the tar */
	uint64_t tar = ocitree_layer_index_tar_size(idx);
	for (int i = 0; i < 4 && tar; i++) {
		char buf[4096];
		uint64_t off = rng(&seed) % tar;
		ssize_t got = ocitree_layer_index_pread(idx, buf, sizeof(buf), off, &err);
		if (got < 0 && (!err || !err->msg || !*err->msg))
			fail("a read error without a message");
		ocitree_error_free(err);
		err = NULL;
	}
	ocitree_layer_index_free(idx);
	ocitree_chunk_cache_free(cache);
	return 0;
}
