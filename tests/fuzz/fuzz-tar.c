/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: the layer reader (decompression in its threads, the
 * trailer and size limits) and the tar reader over libarchive, on a stream
 * in memory.  The first byte picks the compression (none, gzip, zstd); the
 * rest is the stream, read through a memfd as `raw unpack` reads a file.
 * Every entry and all its data are read; what the reader hands out must
 * be consistent (names present, data offsets within the entry's size).
 */
#define _GNU_SOURCE
#include "config.h"

#include <stdint.h>
#include <sys/mman.h>

#include "layer-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz-tar: %s\n", what);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	static const enum ocitree_compression comps[] = {OCITREE_COMPRESSION_NONE, OCITREE_COMPRESSION_GZIP,
							 OCITREE_COMPRESSION_ZSTD};
	enum ocitree_compression comp = comps[data[0] % 3];
	int fd = memfd_create("fuzz-tar", MFD_CLOEXEC);
	if (fd < 0 || write_all(fd, data + 1, size - 1) < 0 || lseek(fd, 0, SEEK_SET) != 0)
		fail("memfd");
	struct ocitree_error *err = NULL;
	struct ocitree_layer_reader *r = ocitree_layer_reader_open_fd(fd, comp, NULL, "fuzz", &err);
	if (!r)
		fail("open_fd failed without a digest to check");
	/* a bomb is an error, not a long run */
	ocitree_layer_reader_set_limit(r, 64u << 20);
	struct ocitree_tar_reader *tr = ocitree_tar_reader_new(r, &err);
	int ret = -1;
	if (tr) {
		const struct ocitree_tar_entry *e;
		while ((ret = ocitree_tar_reader_next(tr, &e, &err)) == 1) {
			if (!e->path || ((e->type == OCITREE_TAR_SYMLINK || e->type == OCITREE_TAR_HARDLINK) && !e->linkname))
				fail("entry without a name or link target");
			if (e->size < 0 || (e->type != OCITREE_TAR_REG && e->size))
				fail("bad size");
			for (size_t i = 0; i < e->n_xattrs; i++)
				if (!e->xattrs[i].name || (e->xattrs[i].len && !e->xattrs[i].value))
					fail("bad xattr");
			/* touch the strings, as unpack does */
			volatile size_t sink = strlen(e->path) + (e->linkname ? strlen(e->linkname) : 0);
			(void)sink;
			const void *buf;
			int64_t off;
			ssize_t n;
			while ((n = ocitree_tar_reader_data(tr, &buf, &off, &err)) > 0) {
				if (off < 0)
					fail("negative data offset");
				volatile uint8_t first = ((const uint8_t *)buf)[0], last = ((const uint8_t *)buf)[n - 1];
				(void)first, (void)last;
			}
			if (n < 0) {
				ret = -1;
				break;
			}
		}
	}
	if (ret < 0 && (!err || !err->msg || !*err->msg))
		fail("an error without a message");
	if (ret == 0 && !*ocitree_layer_reader_diff_id(r))
		fail("a clean end without a diff_id");
	ocitree_error_free(err);
	ocitree_tar_reader_free(tr);
	ocitree_layer_reader_free(r);
	return 0;
}
