/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: random access into gzip layers.  An index is built for a
 * gzip stream (with ISA-L or zlib, checkpoints every few KiB), then ranges
 * of the uncompressed tar are read through its checkpoints (with ISA-L or
 * zlib, with or without the chunk cache and its read-ahead); every byte
 * must equal what a straight decompression of the stream gives.
 *
 * Input: flags (1: build with zlib, 2: read with zlib, 4: chunk cache,
 * 8: the rest is the gzip stream as it is), the checkpoint span (in 512
 * byte units), then either the stream, or a program for one: deflate
 * parameters, a repeat count, and bytes that are both the file's content
 * and the places where the compressor flushes, ends a gzip member or pads
 * with zeros.  Streams the program makes are valid, so their index must
 * build; a raw stream may fail, but not differently from a straight
 * decompression.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <zlib.h>

#include "layer-index-internal.h"
#include "layer-internal.h"
#include "ocitree/digest.h"
#include "ocitree/layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz-gzip-seek: %s\n", what);
	abort();
}

static char dir[96];
static struct ocitree_layout *layout;

static void cleanup(void)
{
	ocitree_layout_free(layout);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	free(cmd);
}

static void setup(void)
{
	if (layout)
		return;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(dir, sizeof(dir), "%.40s/fuzz-gzip-seek.XXXXXX", base);
	if (!mkdtemp(dir))
		fail("mkdtemp");
	char *l = xasprintf("%s/layout", dir);
	struct ocitree_error *err = NULL;
	if (ocitree_layout_create(l, &err) < 0 || !(layout = ocitree_layout_open(l, &err)))
		fail(err->msg);
	free(l);
	atexit(cleanup);
}

/* ---- the program: a tar of one file, gzipped with flushes ---- */

static void tar_header(struct buf *out, size_t size)
{
	unsigned char h[512] = {0};
	memcpy(h, "file", 4);
	memcpy(h + 100, "0000644", 7);
	memcpy(h + 108, "0000000", 7);
	memcpy(h + 116, "0000000", 7);
	snprintf((char *)h + 124, 12, "%011zo", size);
	memcpy(h + 136, "00000000000", 11);
	h[156] = '0';
	memcpy(h + 257, "ustar\0" "00", 8);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (size_t i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	buf_append(out, h, 512);
}

static void deflate_some(z_stream *z, struct buf *out, const void *in, size_t len, int flush)
{
	z->next_in = (Bytef *)(uintptr_t)in;
	z->avail_in = (uInt)len;
	do {
		buf_reserve(out, 65536);
		z->next_out = (Bytef *)out->data + out->len;
		z->avail_out = (uInt)(out->cap - out->len - 1);
		int r = deflate(z, flush);
		if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR)
			fail("deflate");
		out->len = out->cap - 1 - z->avail_out;
		if (flush == Z_FINISH && r == Z_STREAM_END)
			break;
	} while (z->avail_in || z->avail_out == 0 || flush == Z_FINISH);
}

/* Make a gzip stream from the program p; *plain receives the tar. */
static void run_program(const uint8_t *p, size_t n, struct buf *gz, struct buf *plain)
{
	if (n < 5)
		return;
	int level = p[0] % 10, strategy = p[1] % 5, wbits = 9 + p[2] % 7, memlevel = 1 + p[3] % 9;
	unsigned repeat = 1 + p[4] % 32;
	p += 5, n -= 5;
	/* the file: the program bytes, repeated with a twist so that it does
	 * not all compress away */
	struct buf file = BUF_INIT;
	for (unsigned r = 0; r < repeat && file.len < (256u << 10); r++)
		for (size_t i = 0; i < n; i++) {
			uint8_t c = (uint8_t)(p[i] ^ (r & 1 ? (uint8_t)(i * 131 + r) : 0));
			buf_append(&file, &c, 1);
		}
	tar_header(plain, file.len);
	buf_append(plain, file.data ? file.data : "", file.len);
	static const char zeros[1024 + 512];
	buf_append(plain, zeros, (512 - file.len % 512) % 512 + 1024);
	buf_free(&file);

	z_stream z = {0};
	if (deflateInit2(&z, level, Z_DEFLATED, wbits + 16, memlevel, strategy) != Z_OK)
		fail("deflateInit2");
	size_t pos = 0, k = 0;
	static const int flushes[] = {Z_NO_FLUSH, Z_NO_FLUSH, Z_NO_FLUSH, Z_SYNC_FLUSH,
				      Z_FULL_FLUSH, Z_BLOCK,    Z_PARTIAL_FLUSH};
	while (pos < plain->len) {
		uint8_t c = n ? p[k++ % n] : 0;
		size_t piece = 1 + (size_t)c * 97;
		if (piece > plain->len - pos)
			piece = plain->len - pos;
		int flush = flushes[c % ARRAY_SIZE(flushes)];
		if (c == 0xfe && pos + piece < plain->len) {
			/* end this gzip member, start another */
			deflate_some(&z, gz, plain->data + pos, piece, Z_FINISH);
			deflateReset(&z);
		} else {
			deflate_some(&z, gz, plain->data + pos, piece, flush);
		}
		pos += piece;
	}
	deflate_some(&z, gz, "", 0, Z_FINISH);
	deflateEnd(&z);
	/* zeros after the last member are padding */
	if (n && p[n - 1] == 0xff)
		buf_append(gz, zeros, 100);
}

/* ---- the straight decompression ---- */

struct mem_src {
	const uint8_t *p;
	size_t len;
	bool given;
};

static ssize_t mem_next(void *ctx, const void **data, struct ocitree_error **err)
{
	struct mem_src *m = ctx;
	if (m->given)
		return 0;
	m->given = true;
	*data = m->p;
	return (ssize_t)m->len;
}

static int gunzip(const struct buf *gz, struct buf *out)
{
	struct mem_src m = {(const uint8_t *)gz->data, gz->len, false};
	struct decompressor *d = decompressor_new(OCITREE_COMPRESSION_GZIP, mem_next, &m, "oracle");
	struct ocitree_error *err = NULL;
	int ret = 0;
	for (;;) {
		buf_reserve(out, 65536);
		ssize_t n = decompressor_read(d, out->data + out->len, 65536, &err);
		if (n < 0) {
			ret = -1;
			break;
		}
		if (n == 0)
			break;
		out->len += (size_t)n;
		if (out->len > (64u << 20)) {
			ret = -1;
			break;
		}
	}
	ocitree_error_free(err);
	decompressor_free(d);
	return ret;
}

static uint64_t rng(uint64_t *x)
{
	*x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
	return *x;
}

static void check_read(struct ocitree_layer_index *idx, const struct buf *plain, uint64_t off, size_t len)
{
	_cleanup_free_ char *buf = xmalloc(len ? len : 1);
	struct ocitree_error *err = NULL;
	ssize_t n = ocitree_layer_index_pread(idx, buf, len, off, &err);
	if (n < 0) {
		fprintf(stderr, "pread %zu at %ju: %s\n", len, (uintmax_t)off, err->msg);
		fail("a read of a valid index failed");
	}
	size_t want = off >= plain->len ? 0 : plain->len - off < len ? plain->len - off : len;
	if ((size_t)n != want || memcmp(buf, plain->data + off, want) != 0) {
		fprintf(stderr, "pread %zu at %ju: got %zd bytes, want %zu\n", len, (uintmax_t)off, n, want);
		fail("read through the index differs from the straight decompression");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	setup();
	uint8_t flags = data[0];
	uint32_t span = 512u * (1 + data[1] % 64);
	_cleanup_buf_ struct buf gz = BUF_INIT;
	_cleanup_buf_ struct buf plain = BUF_INIT;
	_cleanup_buf_ struct buf straight = BUF_INIT;
	bool raw = flags & 8;
	if (raw)
		buf_append(&gz, data + 2, size - 2);
	else
		run_program(data + 2, size - 2, &gz, &plain);
	if (!gz.len)
		return 0;
	int sr = gunzip(&gz, &straight);
	if (!raw && (sr < 0 || straight.len != plain.len || memcmp(straight.data, plain.data, plain.len) != 0))
		fail("the straight decompression of a valid stream is wrong");

	struct ocitree_error *err = NULL;
	struct ocitree_descriptor desc = {.media_type = (char *)OCITREE_MT_OCI_LAYER_GZIP, .size = (int64_t)gz.len};
	if (ocitree_blob_put(layout, gz.data, gz.len, desc.digest, &err) < 0)
		fail(err->msg);
	if (flags & 1)
		setenv("OCITREE_INFLATE", "zlib", 1);
	else
		unsetenv("OCITREE_INFLATE");
	layer_index_checkpoint_span = span;
	char *cache_dir = xasprintf("%s/cache", dir);
	struct ocitree_chunk_cache *cache = flags & 4 ? ocitree_chunk_cache_new(1u << 20) : NULL;
	struct ocitree_layer_index_opts opts = {.cache_dir = cache_dir, .chunks = cache, .no_write = true};
	struct ocitree_layer_index *idx = ocitree_layer_index_open(layout, &desc, NULL, &opts, &err);
	if (!idx) {
		if (!raw) {
			fprintf(stderr, "%s\n", err->msg);
			fail("the index of a valid stream failed to build");
		}
	} else {
		if (sr < 0)
			fail("the index accepts a stream the straight decompression refuses");
		if (ocitree_layer_index_tar_size(idx) != straight.len)
			fail("the index has the wrong tar size");
		if (flags & 2)
			setenv("OCITREE_INFLATE", "zlib", 1);
		else
			unsetenv("OCITREE_INFLATE");
		uint64_t seed = hash_bytes(data, size) | 1;
		/* random ranges, some across checkpoints */
		for (int i = 0; i < 8; i++) {
			uint64_t off = rng(&seed) % (straight.len + 1);
			size_t len = (size_t)(rng(&seed) % (3 * span + 1));
			check_read(idx, &straight, off, len);
		}
		/* a sequential reader in odd sizes (read-ahead with a cache) */
		for (uint64_t off = 0; off < straight.len;) {
			size_t len = 1 + (size_t)(rng(&seed) % (span + 4096));
			check_read(idx, &straight, off, len);
			off += len;
		}
		ocitree_layer_index_free(idx);
	}
	ocitree_error_free(err);
	ocitree_chunk_cache_free(cache);
	free(cache_dir);
	layer_index_checkpoint_span = CHECKPOINT_SPAN;
	/* blobs do not pile up */
	char *blob = xasprintf("%s/layout/blobs/sha256/%s", dir, ocitree_digest_hex(desc.digest));
	unlink(blob);
	free(blob);
	return 0;
}
