/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Makes a seed for fuzz-index from a layer blob: builds its index (with
 * checkpoints every SPAN bytes, with ISA-L or zlib as OCITREE_INFLATE says)
 * in a scratch layout and cache, and writes the fuzz input: flags 0, the
 * blob digest, the index image and what reads go to (the blob for gzip, the
 * uncompressed tar otherwise).  Used by make-seeds.sh:
 *
 *   make-index-seed BLOB none|gzip|zstd SPAN OUT
 */
#include "config.h"

#include <fcntl.h>
#include <stdint.h>

#include "layer-index-internal.h"
#include "ocitree/digest.h"
#include "ocitree/layout.h"
#include "util.h"

static void die(const char *what, struct ocitree_error *err)
{
	fprintf(stderr, "make-index-seed: %s%s%s\n", what, err ? ": " : "", err ? err->msg : "");
	exit(1);
}

static void slurp(const char *path, struct buf *out)
{
	struct ocitree_error *err = NULL;
	if (read_file_at(AT_FDCWD, path, SIZE_MAX, out, "file", &err) < 0)
		die("read", err);
}

int main(int argc, char **argv)
{
	if (argc != 5)
		die("usage: make-index-seed BLOB none|gzip|zstd SPAN OUT", NULL);
	struct ocitree_error *err = NULL;
	struct buf blob = BUF_INIT, img = BUF_INIT, reads = BUF_INIT, out = BUF_INIT;
	slurp(argv[1], &blob);
	enum ocitree_compression comp = strcmp(argv[2], "gzip") == 0   ? OCITREE_COMPRESSION_GZIP
					: strcmp(argv[2], "zstd") == 0 ? OCITREE_COMPRESSION_ZSTD
								       : OCITREE_COMPRESSION_NONE;
	layer_index_checkpoint_span = (uint32_t)strtoul(argv[3], NULL, 10);
	char tmpl[] = "/tmp/make-index-seed.XXXXXX";
	if (!mkdtemp(tmpl))
		die("mkdtemp", NULL);
	char *lp = xasprintf("%s/layout", tmpl), *cache = xasprintf("%s/cache", tmpl);
	struct ocitree_layout *l = NULL;
	if (ocitree_layout_create(lp, &err) < 0 || !(l = ocitree_layout_open(lp, &err)))
		die("layout", err);
	struct ocitree_descriptor d = {.media_type = (char *)ocitree_layer_media_type(comp, false),
				       .size = (int64_t)blob.len};
	if (ocitree_blob_put(l, blob.data, blob.len, d.digest, &err) < 0)
		die("blob", err);
	struct ocitree_layer_index_opts o = {.cache_dir = cache};
	struct ocitree_layer_index *idx = ocitree_layer_index_open(l, &d, NULL, &o, &err);
	if (!idx)
		die("index", err);
	ocitree_layer_index_free(idx);
	char *ip = xasprintf("%s/index-v2/sha256/%s", cache, ocitree_digest_hex(d.digest));
	slurp(ip, &img);
	if (comp == OCITREE_COMPRESSION_ZSTD) {
		char *tp = xasprintf("%s/tar/sha256/%s", cache, ocitree_digest_hex(d.digest));
		slurp(tp, &reads);
		free(tp);
	} else {
		buf_append(&reads, blob.data, blob.len);
	}
	uint32_t n = (uint32_t)img.len;
	buf_append(&out, "", 1);
	buf_append(&out, d.digest, strlen(d.digest) + 1);
	buf_append(&out, &n, 4);
	buf_append(&out, img.data, img.len);
	buf_append(&out, reads.data, reads.len);
	int fd = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write_all(fd, out.data, out.len) < 0 || close(fd) < 0)
		die("write", NULL);
	ocitree_layout_free(l);
	char *cmd = xasprintf("rm -rf '%s'", tmpl);
	if (system(cmd) != 0)
		die("cleanup", NULL);
	free(cmd), free(ip), free(lp), free(cache);
	buf_free(&blob), buf_free(&img), buf_free(&reads), buf_free(&out);
	return 0;
}
