/* SPDX-License-Identifier: Apache-2.0 */
/* The layer codec: compression round trips, determinism, the seekable-gzip
 * property, corrupt and truncated streams, digest checks, tar encoding. */
#include "config.h"

#include <fcntl.h>
#include <nettle/sha2.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include "layer-internal.h"
#include "ring.h"
#include "sha256-pair.h"
#include "ocitree/digest.h"
#include "ocitree/image.h"
#include "tap.h"

/* ---- helpers ---- */

static int sink_buf(void *ctx, const void *data, size_t len, struct ocitree_error **err)
{
	buf_append(ctx, data, len);
	return 0;
}

struct memsrc {
	const uint8_t *data;
	size_t len, pos, step;
};

static ssize_t src_mem(void *ctx, const void **data, struct ocitree_error **err)
{
	struct memsrc *m = ctx;
	size_t n = m->len - m->pos;
	if (n > (1u << 20))
		n = 1u << 20;
	if (m->step && n > m->step)
		n = m->step; /* small pieces exercise the refill paths */
	*data = m->data + m->pos;
	m->pos += n;
	return (ssize_t)n;
}

/* Test data: compressible text, random bytes and zeros, not piece aligned. */
static uint8_t *make_data(size_t len)
{
	uint8_t *d = xmalloc(len);
	uint64_t x = 88172645463325252ULL;
	for (size_t i = 0; i < len; i++) {
		if ((i / 300000) % 3 == 0) {
			d[i] = (uint8_t)("the quick brown fox jumps over the lazy dog "[i % 44]);
		} else if ((i / 300000) % 3 == 1) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			d[i] = (uint8_t)x;
		} else {
			d[i] = 0;
		}
	}
	return d;
}

static void compress_all(enum ocitree_compression comp, unsigned threads, const uint8_t *data, size_t len,
			 struct buf *out, uint64_t **offsets, size_t *n_offsets)
{
	struct ocitree_error *err = NULL;
	struct compressor *c = compressor_new(comp, 0, threads, sink_buf, out);
	/* odd write sizes cross piece boundaries */
	for (size_t pos = 0; pos < len;) {
		size_t n = len - pos < 77777 ? len - pos : 77777;
		if (compressor_write(c, data + pos, n, &err) < 0)
			break;
		pos += n;
	}
	if (compressor_finish(c, &err) < 0)
		diag("compress: %s", err->msg);
	if (offsets) {
		const uint64_t *o = compressor_piece_offsets(c, n_offsets);
		*offsets = xmalloc((*n_offsets + 1) * sizeof(uint64_t));
		memcpy(*offsets, o, *n_offsets * sizeof(uint64_t));
	}
	compressor_free(c);
	ocitree_error_free(err);
}

/* Decompress through the decompressor; returns 0 or -1 with *err. */
static int decompress_all(enum ocitree_compression comp, const void *data, size_t len, size_t step, struct buf *out,
			  struct ocitree_error **err)
{
	struct memsrc m = {data, len, 0, step};
	struct decompressor *d = decompressor_new(comp, src_mem, &m, "test stream");
	int r = 0;
	for (;;) {
		buf_reserve(out, 65536);
		ssize_t n = decompressor_read(d, out->data + out->len, 65536, err);
		if (n < 0) {
			r = -1;
			break;
		}
		if (n == 0)
			break;
		out->len += (size_t)n;
	}
	decompressor_free(d);
	return r;
}

static bool same(const struct buf *b, const uint8_t *data, size_t len)
{
	return b->len == len && memcmp(b->data, data, len) == 0;
}

/* ---- compression ---- */

static void test_round_trips(void)
{
	const size_t len = 3 * OCITREE_LAYER_PIECE_SIZE + 12345;
	_cleanup_free_ uint8_t *data = make_data(len);
	const enum ocitree_compression comps[] = {OCITREE_COMPRESSION_GZIP, OCITREE_COMPRESSION_ZSTD,
						  OCITREE_COMPRESSION_NONE};
	for (size_t i = 0; i < ARRAY_SIZE(comps); i++) {
		const char *name = ocitree_compression_name(comps[i]);
		_cleanup_buf_ struct buf c0 = BUF_INIT, c2 = BUF_INIT, c2b = BUF_INIT, plain = BUF_INIT;
		compress_all(comps[i], 0, data, len, &c0, NULL, NULL);
		compress_all(comps[i], 2, data, len, &c2, NULL, NULL);
		compress_all(comps[i], 2, data, len, &c2b, NULL, NULL);
		ok(c0.len == c2.len && memcmp(c0.data, c2.data, c0.len) == 0,
		   "%s: output with 2 threads equals the single-threaded output", name);
		ok(c2.len == c2b.len && memcmp(c2.data, c2b.data, c2.len) == 0, "%s: output is deterministic", name);
		struct ocitree_error *err = NULL;
		ok(decompress_all(comps[i], c2.data, c2.len, 0, &plain, &err) == 0 && same(&plain, data, len),
		   "%s: round trip", name);
		buf_reset(&plain);
		ok(decompress_all(comps[i], c2.data, c2.len, 1000, &plain, &err) == 0 && same(&plain, data, len),
		   "%s: round trip with small input reads", name);
		if (comps[i] != OCITREE_COMPRESSION_NONE)
			ok(c2.len < len / 2, "%s: compresses (%zu -> %zu)", name, len, c2.len);
		ocitree_error_free(err);
	}
	/* empty streams are valid streams */
	for (size_t i = 0; i < 2; i++) {
		_cleanup_buf_ struct buf c = BUF_INIT, plain = BUF_INIT;
		compress_all(comps[i], 2, (const uint8_t *)"", 0, &c, NULL, NULL);
		struct ocitree_error *err = NULL;
		ok(c.len > 0 && decompress_all(comps[i], c.data, c.len, 0, &plain, &err) == 0 && plain.len == 0,
		   "%s: empty input gives a valid empty stream", ocitree_compression_name(comps[i]));
		ocitree_error_free(err);
	}
}

static void test_gzip_is_plain_and_seekable(void)
{
	const size_t len = 4 * OCITREE_LAYER_PIECE_SIZE + 999;
	_cleanup_free_ uint8_t *data = make_data(len);
	_cleanup_buf_ struct buf c = BUF_INIT;
	_cleanup_free_ uint64_t *offs = NULL;
	size_t n_offs = 0;
	compress_all(OCITREE_COMPRESSION_GZIP, 2, data, len, &c, &offs, &n_offs);
	is_int(n_offs, 5, "gzip: one flush point per piece");

	/* plain zlib in gzip mode reads it as one member */
	z_stream z = {0};
	inflateInit2(&z, 16 + MAX_WBITS);
	_cleanup_free_ uint8_t *out = xmalloc(len + 16);
	z.next_in = (Bytef *)c.data;
	z.avail_in = (uInt)c.len;
	z.next_out = out;
	z.avail_out = (uInt)len + 16;
	int r = inflate(&z, Z_FINISH);
	ok(r == Z_STREAM_END && z.total_out == len && memcmp(out, data, len) == 0 && z.avail_in == 0,
	   "gzip: zlib reads the whole stream as one gzip member");
	inflateEnd(&z);

	/* a raw inflate can start at every flush point with no history */
	bool all = true;
	for (size_t k = 0; k < n_offs; k++) {
		z_stream zr = {0};
		inflateInit2(&zr, -MAX_WBITS);
		size_t want = len - k * OCITREE_LAYER_PIECE_SIZE;
		zr.next_in = (Bytef *)c.data + offs[k];
		zr.avail_in = (uInt)(c.len - offs[k]);
		zr.next_out = out;
		zr.avail_out = (uInt)want;
		int rr = inflate(&zr, Z_SYNC_FLUSH);
		if ((rr != Z_OK && rr != Z_STREAM_END) || zr.total_out != want ||
		    memcmp(out, data + k * OCITREE_LAYER_PIECE_SIZE, want) != 0) {
			diag("restart at piece %zu (offset %ju) failed: %d, %lu bytes", k, (uintmax_t)offs[k], rr,
			     zr.total_out);
			all = false;
		}
		inflateEnd(&zr);
	}
	ok(all, "gzip: inflate restarts at each full-flush point");
	/* each flush point follows a sync marker 00 00 ff ff */
	bool markers = true;
	for (size_t k = 1; k < n_offs; k++)
		markers &= memcmp(c.data + offs[k] - 4, "\0\0\xff\xff", 4) == 0;
	ok(markers, "gzip: every piece ends with a full-flush marker");
}

static void test_zstd_frames(void)
{
	const size_t len = 3 * OCITREE_LAYER_PIECE_SIZE + 5;
	_cleanup_free_ uint8_t *data = make_data(len);
	_cleanup_buf_ struct buf c = BUF_INIT;
	_cleanup_free_ uint64_t *offs = NULL;
	size_t n_offs = 0;
	compress_all(OCITREE_COMPRESSION_ZSTD, 2, data, len, &c, &offs, &n_offs);
	is_int(n_offs, 4, "zstd: one frame per piece");
	bool all = true;
	_cleanup_free_ uint8_t *out = xmalloc(OCITREE_LAYER_PIECE_SIZE);
	for (size_t k = 0; k < n_offs; k++) {
		size_t fsz = ZSTD_findFrameCompressedSize(c.data + offs[k], c.len - offs[k]);
		size_t got = ZSTD_decompress(out, OCITREE_LAYER_PIECE_SIZE, c.data + offs[k], fsz);
		size_t want = k + 1 < n_offs ? OCITREE_LAYER_PIECE_SIZE : len - k * OCITREE_LAYER_PIECE_SIZE;
		if (ZSTD_isError(got) || got != want || memcmp(out, data + k * OCITREE_LAYER_PIECE_SIZE, want) != 0)
			all = false;
		if (k + 1 < n_offs && offs[k] + fsz != offs[k + 1])
			all = false;
	}
	ok(all, "zstd: every frame decompresses on its own to its piece");
}

static void test_multi_member_and_bad_streams(void)
{
	_cleanup_buf_ struct buf a = BUF_INIT, b = BUF_INIT, cat = BUF_INIT, plain = BUF_INIT;
	const char *s1 = "first member\n", *s2 = "second member\n";
	compress_all(OCITREE_COMPRESSION_GZIP, 0, (const uint8_t *)s1, strlen(s1), &a, NULL, NULL);
	compress_all(OCITREE_COMPRESSION_GZIP, 0, (const uint8_t *)s2, strlen(s2), &b, NULL, NULL);
	buf_append(&cat, a.data, a.len);
	buf_append(&cat, b.data, b.len);
	struct ocitree_error *err = NULL;
	ok(decompress_all(OCITREE_COMPRESSION_GZIP, cat.data, cat.len, 7, &plain, &err) == 0 &&
		   plain.len == strlen(s1) + strlen(s2) && memcmp(plain.data + strlen(s1), s2, strlen(s2)) == 0,
	   "gzip: concatenated members are read in full");

	buf_append(&cat, "\0\0\0\0\0\0\0\0", 8);
	buf_reset(&plain);
	ok(decompress_all(OCITREE_COMPRESSION_GZIP, cat.data, cat.len, 0, &plain, &err) == 0 &&
		   plain.len == strlen(s1) + strlen(s2),
	   "gzip: zero padding after the last member is accepted");

	buf_append(&cat, "junk", 4);
	buf_reset(&plain);
	ok(decompress_all(OCITREE_COMPRESSION_GZIP, cat.data, cat.len, 0, &plain, &err) < 0 && err &&
		   strstr(err->msg, "garbage after"),
	   "gzip: garbage after the padding is an error");
	ocitree_error_free(err);
	err = NULL;

	/* truncated and corrupt streams */
	const size_t len = 2 * OCITREE_LAYER_PIECE_SIZE;
	_cleanup_free_ uint8_t *data = make_data(len);
	const enum ocitree_compression comps[] = {OCITREE_COMPRESSION_GZIP, OCITREE_COMPRESSION_ZSTD};
	for (size_t i = 0; i < ARRAY_SIZE(comps); i++) {
		const char *name = ocitree_compression_name(comps[i]);
		_cleanup_buf_ struct buf c = BUF_INIT;
		compress_all(comps[i], 2, data, len, &c, NULL, NULL);
		buf_reset(&plain);
		int r = decompress_all(comps[i], c.data, c.len - 5, 0, &plain, &err);
		ok(r < 0 && err && err->kind == OCITREE_ERROR_INVALID &&
			   (strstr(err->msg, "truncated") || strstr(err->msg, "corrupt")),
		   "%s: a truncated stream is an error (%s)", name, err ? err->msg : "none");
		ocitree_error_free(err);
		err = NULL;
		buf_reset(&plain);
		ok(decompress_all(comps[i], c.data, c.len / 2, 0, &plain, &err) < 0 && err &&
			   strstr(err->msg, "truncated"),
		   "%s: a stream cut in the middle is truncated", name);
		ocitree_error_free(err);
		err = NULL;
		c.data[c.len / 3] ^= 0x55;
		c.data[c.len / 3 + 1] ^= 0x55;
		buf_reset(&plain);
		r = decompress_all(comps[i], c.data, c.len, 0, &plain, &err);
		ok(r < 0 && err && strstr(err->msg, "corrupt"), "%s: corrupt data is an error (%s)", name,
		   err ? err->msg : "none");
		ocitree_error_free(err);
		err = NULL;
		buf_reset(&plain);
		ok(decompress_all(comps[i], "", 0, 0, &plain, &err) < 0 && err && strstr(err->msg, "empty"),
		   "%s: an empty blob is not a stream", name);
		ocitree_error_free(err);
		err = NULL;
	}
}

/* ---- tar headers ---- */

static void test_tar_header(void)
{
	struct ocitree_error *err = NULL;
	_cleanup_buf_ struct buf b = BUF_INIT;
	struct ocitree_tar_entry e = {.path = "etc/hello", .type = OCITREE_TAR_REG, .mode = 04755, .uid = 1000,
				      .gid = 100, .size = 5, .mtime = {1700000000, 0}};
	ok(tar_encode_header(&b, &e, -1, &err) == 0 && b.len == 512, "a short entry is one ustar block");
	is_str(b.data, "etc/hello", "name field");
	is_str(b.data + 100, "0004755", "mode field keeps setuid");
	is_str(b.data + 124, "00000000005", "size field");
	is_str(b.data + 136, "14524770400", "mtime field");
	ok(memcmp(b.data + 257, "ustar\0" "00", 8) == 0, "ustar magic and version");
	is_str(b.data + 265, "", "uname is empty");
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += i >= 148 && i < 156 ? ' ' : (unsigned char)b.data[i];
	is_int(strtoul(b.data + 148, NULL, 8), sum, "header checksum");

	buf_reset(&b);
	char longname[300];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	struct ocitree_xattr xa[] = {{"user.b", "2", 1}, {"security.capability", "\x01\x00", 2}};
	e = (struct ocitree_tar_entry){.path = longname, .type = OCITREE_TAR_DIR, .mode = 0755,
				       .mtime = {1700000000, 500000000}, .xattrs = xa, .n_xattrs = 2};
	ok(tar_encode_header(&b, &e, -1, &err) == 0 && b.len == 3 * 512 && b.data[156] == 'x',
	   "a long name gets a pax header");
	const char *pax = b.data + 512;
	ok(strstr(pax, "path=xxx") != NULL && strstr(pax, "x/\n") != NULL, "pax path with the directory slash");
	ok(strstr(pax, "mtime=1700000000.5\n") != NULL, "pax mtime with nanoseconds");
	const char *cap = memmem(pax, 512, "SCHILY.xattr.security.capability=\x01\x00\n", 36);
	const char *ub = memmem(pax, 512, "SCHILY.xattr.user.b=2\n", 22);
	ok(cap && ub && cap < ub, "xattrs as sorted SCHILY.xattr records, values raw");
	ok(b.data[1024 + 156] == '5', "then the directory's ustar header");

	buf_reset(&b);
	e = (struct ocitree_tar_entry){.path = "f", .type = OCITREE_TAR_REG, .mtime = {2000000000, 7}};
	ok(tar_encode_header(&b, &e, 1600000000, &err) == 0 && b.len == 512 && strcmp(b.data + 136, "13727410000") == 0,
	   "mtimes newer than the clamp are clamped");
	buf_reset(&b);
	e = (struct ocitree_tar_entry){.path = "l", .type = OCITREE_TAR_SYMLINK};
	ok(tar_encode_header(&b, &e, -1, &err) < 0 && err->kind == OCITREE_ERROR_INVALID,
	   "a symlink needs a target");
	ocitree_error_free(err);
}

/* ---- layers in a layout ---- */

static char *tmpdir;

static struct ocitree_layout *make_layout(const char *name)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", tmpdir, name);
	struct ocitree_error *err = NULL;
	if (ocitree_layout_create(p, &err) < 0) {
		diag("create layout: %s", err->msg);
		ocitree_error_free(err);
		return NULL;
	}
	return ocitree_layout_open(p, NULL);
}

static const char big_content_char = 'b';

static int write_test_layer(struct ocitree_layout *l, enum ocitree_compression comp, struct ocitree_descriptor *d,
			    char diff_id[OCITREE_DIGEST_MAX])
{
	struct ocitree_error *err = NULL;
	struct ocitree_layer_writer_options o = {.compression = comp, .clamp_mtime = -1, .threads = 2};
	struct ocitree_layer_writer *w = ocitree_layer_writer_new(l, &o, &err);
	if (!w)
		return -1;
	char longname[200];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	struct ocitree_xattr xa[] = {{"user.mime", "text/plain", 10}};
	const size_t big = 2 * OCITREE_LAYER_PIECE_SIZE + 3;
	_cleanup_free_ char *bigdata = xmalloc(big);
	memset(bigdata, big_content_char, big);
	struct ocitree_tar_entry es[] = {
		{.path = "etc", .type = OCITREE_TAR_DIR, .mode = 0755, .mtime = {1000, 0}},
		{.path = "etc/hello", .type = OCITREE_TAR_REG, .mode = 0644, .uid = 1, .gid = 2, .size = 6,
		 .mtime = {1234, 5678}, .xattrs = xa, .n_xattrs = 1},
		{.path = "etc/link", .type = OCITREE_TAR_HARDLINK, .linkname = "etc/hello", .mode = 0644},
		{.path = "etc/sym", .type = OCITREE_TAR_SYMLINK, .linkname = "../x", .mode = 0777},
		{.path = longname, .type = OCITREE_TAR_REG, .mode = 0600, .size = (int64_t)big},
		{.path = "dev/null", .type = OCITREE_TAR_CHAR, .mode = 0666, .devmajor = 1, .devminor = 3},
		{.path = "fifo", .type = OCITREE_TAR_FIFO, .mode = 0600},
	};
	int r = 0;
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(es); i++) {
		r = ocitree_layer_writer_add(w, &es[i], &err);
		if (r == 0 && es[i].type == OCITREE_TAR_REG)
			r = ocitree_layer_writer_data(w, i == 1 ? "hello\n" : bigdata, (size_t)es[i].size, &err);
	}
	if (r == 0)
		r = ocitree_layer_writer_commit(w, d, diff_id, &err);
	if (r < 0)
		diag("write layer: %s", err->msg);
	ocitree_layer_writer_free(w);
	ocitree_error_free(err);
	return r;
}


/* Read layer d to its end: the read must fail with a digest error saying
 * what (test named what, for name). */
static void expect_digest_error(struct ocitree_layout *l, const struct ocitree_descriptor *d, const char *diff_id,
				const char *says, const char *what, const char *name)
{
	struct ocitree_error *err = NULL;
	struct ocitree_layer_reader *r = ocitree_layer_reader_open(l, d, diff_id, &err);
	struct ocitree_tar_reader *tr = ocitree_tar_reader_new(r, &err);
	const struct ocitree_tar_entry *e;
	while (tr && ocitree_tar_reader_next(tr, &e, &err) == 1)
		;
	ok(err && err->kind == OCITREE_ERROR_DIGEST && strstr(err->msg, says), "%s: %s (%s)", name, what,
	   err ? err->msg : "none");
	ocitree_tar_reader_free(tr);
	ocitree_layer_reader_free(r);
	ocitree_error_free(err);
}

static void test_layer_round_trip(struct ocitree_layout *l, enum ocitree_compression comp)
{
	const char *name = ocitree_compression_name(comp);
	struct ocitree_descriptor d = {0}, d2 = {0};
	char diff_id[OCITREE_DIGEST_MAX], diff_id2[OCITREE_DIGEST_MAX];
	ok(write_test_layer(l, comp, &d, diff_id) == 0, "%s: layer written", name);
	ok(write_test_layer(l, comp, &d2, diff_id2) == 0 && strcmp(d.digest, d2.digest) == 0 &&
		   strcmp(diff_id, diff_id2) == 0,
	   "%s: the same entries give the same digests", name);
	is_str(d.media_type, ocitree_layer_media_type(comp, false), "%s: media type", name);

	struct ocitree_error *err = NULL;
	struct ocitree_layer_reader *r = ocitree_layer_reader_open(l, &d, diff_id, &err);
	struct ocitree_tar_reader *tr = r ? ocitree_tar_reader_new(r, &err) : NULL;
	ok(tr != NULL, "%s: opened for reading", name);
	if (!tr)
		return;
	const struct ocitree_tar_entry *e;
	int n = 0, bad = 0;
	/* file digests made on the reader's hashing thread: a small file, one
	 * across many chunks, and one whose data is never read */
	uint8_t got_small[32], got_big[32], unread[32];
	while (ocitree_tar_reader_next(tr, &e, &err) == 1) {
		n++;
		if (n == 2)
			tar_reader_hash_entry(tr, got_small);
		else if (n == 5)
			tar_reader_hash_entry(tr, got_big);
		else if (n == 6)
			tar_reader_hash_entry(tr, unread);
		if (n == 2) {
			bad += strcmp(e->path, "etc/hello") != 0 || e->uid != 1 || e->gid != 2 || e->mtime.tv_sec != 1234 ||
			       e->mtime.tv_nsec != 5678 || e->n_xattrs != 1 || strcmp(e->xattrs[0].name, "user.mime") != 0 ||
			       e->xattrs[0].len != 10;
			const void *buf;
			int64_t off;
			ssize_t len = ocitree_tar_reader_data(tr, &buf, &off, &err);
			bad += len != 6 || memcmp(buf, "hello\n", 6) != 0;
		} else if (n == 3) {
			bad += e->type != OCITREE_TAR_HARDLINK || strcmp(e->linkname, "etc/hello") != 0;
		} else if (n == 4) {
			bad += e->type != OCITREE_TAR_SYMLINK || strcmp(e->linkname, "../x") != 0;
		} else if (n == 5) {
			bad += strlen(e->path) != 199 || e->size != 2 * OCITREE_LAYER_PIECE_SIZE + 3;
			int64_t total = 0, off = 0;
			const void *buf;
			ssize_t len;
			while ((len = ocitree_tar_reader_data(tr, &buf, &off, &err)) > 0) {
				for (ssize_t i = 0; i < len; i++)
					bad += ((const char *)buf)[i] != big_content_char;
				total += len;
			}
			bad += total != e->size;
		} else if (n == 6) {
			bad += e->type != OCITREE_TAR_CHAR || e->devmajor != 1 || e->devminor != 3;
		} else if (n == 7) {
			bad += e->type != OCITREE_TAR_FIFO;
		}
	}
	ok(n == 7 && bad == 0 && !err, "%s: entries read back as written (%d entries, %d differences)", name, n, bad);
	is_str(ocitree_layer_reader_diff_id(r), diff_id, "%s: diff_id of the stream", name);
	{
		const size_t big = 2 * OCITREE_LAYER_PIECE_SIZE + 3;
		_cleanup_free_ char *bigdata = xmalloc(big);
		memset(bigdata, big_content_char, big);
		uint8_t want_small[32], want_big[32];
		struct sha256_ctx md;
		sha256_init(&md);
		sha256_update(&md, 6, (const uint8_t *)"hello\n");
		sha256_digest(&md, SHA256_DIGEST_SIZE, want_small);
		sha256_update(&md, big, (const uint8_t *)bigdata);
		sha256_digest(&md, SHA256_DIGEST_SIZE, want_big);
		ok(memcmp(got_small, want_small, 32) == 0 && memcmp(got_big, want_big, 32) == 0,
		   "%s: file digests from the hashing thread", name);
	}
	ocitree_tar_reader_free(tr);
	ocitree_layer_reader_free(r);
	ocitree_error_free(err);
	err = NULL;

	/* a wrong diff_id is a digest error at the end */
	const char *wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
	r = ocitree_layer_reader_open(l, &d, wrong, &err);
	tr = ocitree_tar_reader_new(r, &err);
	int rr;
	while ((rr = ocitree_tar_reader_next(tr, &e, &err)) == 1)
		;
	ok(rr < 0 && err && err->kind == OCITREE_ERROR_DIGEST && strstr(err->msg, "diff_id"),
	   "%s: a wrong diff_id is a digest error (%s)", name, err ? err->msg : "none");
	ocitree_tar_reader_free(tr);
	ocitree_layer_reader_free(r);
	ocitree_error_free(err);
	err = NULL;

	/* a corrupted blob is a digest error, even when it still decompresses */
	if (comp == OCITREE_COMPRESSION_NONE) {
		_cleanup_free_ char *p = xasprintf("blobs/sha256/%s", ocitree_digest_hex(d.digest));
		int fd = openat(ocitree_layout_dirfd(l), p, O_RDWR);
		char c;
		pread(fd, &c, 1, 600);
		c ^= 1;
		pwrite(fd, &c, 1, 600);
		close(fd);
		r = ocitree_layer_reader_open(l, &d, diff_id, &err);
		tr = ocitree_tar_reader_new(r, &err);
		while ((rr = ocitree_tar_reader_next(tr, &e, &err)) == 1)
			;
		ok(rr < 0 && err && err->kind == OCITREE_ERROR_DIGEST && strstr(err->msg, d.digest) &&
			   strstr(err->msg, "does not match its digest"),
		   "%s: a changed blob is a digest error, the blob's before the diff_id's (%s)", name,
		   err ? err->msg : "none");
		ocitree_tar_reader_free(tr);
		ocitree_layer_reader_free(r);
		ocitree_error_free(err);
		err = NULL;
	}

	/* the blob is read through a mapping of its declared size: a byte
	 * more on disk, or a declared size larger than the file, are still
	 * caught as the read form catches them */
	if (comp == OCITREE_COMPRESSION_GZIP) {
		struct ocitree_descriptor d3 = {0};
		char diff_id3[OCITREE_DIGEST_MAX];
		write_test_layer(l, comp, &d3, diff_id3);
		/* the gzip header's mtime changed: the same content, only the
		 * blob's digest tells */
		_cleanup_free_ char *p = xasprintf("blobs/sha256/%s", ocitree_digest_hex(d3.digest));
		int fd = openat(ocitree_layout_dirfd(l), p, O_RDWR);
		char c = 0;
		ok(fd >= 0 && pread(fd, &c, 1, 4) == 1, "%s: the gzip header read", name);
		c ^= 1;
		pwrite(fd, &c, 1, 4);
		expect_digest_error(l, &d3, diff_id3, "does not match its digest",
		                    "a blob changed where it still decompresses is a digest error", name);
		c ^= 1;
		pwrite(fd, &c, 1, 4);
		close(fd);
		d3.size++;
		expect_digest_error(l, &d3, diff_id3, "smaller than its declared size",
		                    "a blob shorter than declared is a digest error", name);
		d3.size--;
		fd = openat(ocitree_layout_dirfd(l), p, O_WRONLY | O_APPEND);
		ok(fd >= 0 && write(fd, "x", 1) == 1, "%s: a byte appended to the blob", name);
		close(fd);
		expect_digest_error(l, &d3, diff_id3, "larger than its declared size",
		                    "a blob longer than declared is a digest error", name);
		/* the layout's blob is the test's only copy: put it back */
		fd = openat(ocitree_layout_dirfd(l), p, O_WRONLY);
		ok(fd >= 0 && ftruncate(fd, d3.size) == 0, "%s: the blob restored", name);
		close(fd);
		ocitree_descriptor_clear(&d3);
	}
	ocitree_descriptor_clear(&d);
	ocitree_descriptor_clear(&d2);
}

/* A raw tar followed by too much trailing data, and a size limit. */
static void test_trailer_and_limit(struct ocitree_layout *l)
{
	struct ocitree_error *err = NULL;
	struct ocitree_layer_writer_options o = {.compression = OCITREE_COMPRESSION_GZIP, .clamp_mtime = -1};
	struct ocitree_layer_writer *w = ocitree_layer_writer_new(l, &o, &err);
	_cleanup_buf_ struct buf hdr = BUF_INIT;
	struct ocitree_tar_entry e = {.path = "a", .type = OCITREE_TAR_REG, .size = 0};
	tar_encode_header(&hdr, &e, -1, &err);
	ocitree_layer_writer_raw(w, hdr.data, hdr.len, &err);
	_cleanup_free_ char *zeros = xcalloc(1, 65536);
	for (int i = 0; i < 40; i++)
		ocitree_layer_writer_raw(w, zeros, 65536, &err);
	struct ocitree_descriptor d = {0};
	char diff_id[OCITREE_DIGEST_MAX];
	ok(ocitree_layer_writer_commit_raw(w, &d, diff_id, &err) == 0, "raw tar with 2.5 MiB of zeros written");
	ocitree_layer_writer_free(w);

	struct ocitree_layer_reader *r = ocitree_layer_reader_open(l, &d, diff_id, &err);
	struct ocitree_tar_reader *tr = ocitree_tar_reader_new(r, &err);
	const struct ocitree_tar_entry *pe;
	int rr, n = 0;
	while ((rr = ocitree_tar_reader_next(tr, &pe, &err)) == 1)
		n++;
	ok(n == 1 && rr < 0 && err && strstr(err->msg, "after the end of the archive"),
	   "too much data after the end of the archive is refused (%s)", err ? err->msg : "none");
	ocitree_tar_reader_free(tr);
	ocitree_layer_reader_free(r);
	ocitree_error_free(err);
	err = NULL;

	r = ocitree_layer_reader_open(l, &d, diff_id, &err);
	ocitree_layer_reader_set_limit(r, 1 << 20);
	const void *data;
	ssize_t got;
	while ((got = ocitree_layer_reader_next(r, &data, &err)) > 0)
		;
	ok(got < 0 && err && strstr(err->msg, "limit"), "a stream expanding beyond the limit stops (%s)",
	   err ? err->msg : "none");
	ocitree_layer_reader_free(r);
	ocitree_error_free(err);
	ocitree_descriptor_clear(&d);
}

/* A stream that is not a blob: a gzip file read through an fd. */
static void test_reader_fd(void)
{
	const size_t len = OCITREE_LAYER_PIECE_SIZE + 4321;
	_cleanup_free_ uint8_t *data = make_data(len);
	_cleanup_buf_ struct buf c = BUF_INIT;
	compress_all(OCITREE_COMPRESSION_GZIP, 2, data, len, &c, NULL, NULL);
	_cleanup_free_ char *path = xasprintf("%s/stream.gz", tmpdir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	write_all(fd, c.data, c.len);
	char want[OCITREE_DIGEST_MAX];
	ocitree_digest_sha256(data, len, want);
	struct ocitree_error *err = NULL;
	for (int pass = 0; pass < 2; pass++) {
		lseek(fd, 0, SEEK_SET);
		const char *diff_id = pass ? "sha256:2222222222222222222222222222222222222222222222222222222222222222" : want;
		struct ocitree_layer_reader *r =
			ocitree_layer_reader_open_fd(dup(fd), OCITREE_COMPRESSION_GZIP, diff_id, "test stream", &err);
		_cleanup_buf_ struct buf out = BUF_INIT;
		ssize_t n;
		do {
			buf_reserve(&out, 7000);
			/* odd sizes: the copying reader splits chunks */
			n = ocitree_layer_reader_read(r, out.data + out.len, 7000, &err);
			if (n > 0)
				out.len += (size_t)n;
		} while (n > 0);
		if (!pass) {
			ok(n == 0 && same(&out, data, len), "fd reader: the whole stream, in odd sizes");
			is_str(ocitree_layer_reader_diff_id(r), want, "fd reader: diff_id");
			is_int(ocitree_layer_reader_offset(r), len, "fd reader: offset");
		} else {
			ok(n < 0 && err && err->kind == OCITREE_ERROR_DIGEST && strstr(err->msg, "test stream"),
			   "fd reader: a wrong diff_id is a digest error naming the stream");
			ocitree_error_free(err);
			err = NULL;
			ok(ocitree_layer_reader_read(r, out.data, 10, &err) < 0 && err, "and stays an error");
			ocitree_error_free(err);
			err = NULL;
		}
		ocitree_layer_reader_free(r);
	}
	close(fd);
}

/* ---- thread creation failing ---- */

static int create_calls, fail_from = -1; /* calls from fail_from on fail */

static int flaky_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	if (fail_from >= 0 && create_calls++ >= fail_from)
		return EAGAIN;
	return pthread_create(t, attr, fn, arg);
}

static void test_thread_failure(void)
{
	const size_t len = 3 * OCITREE_LAYER_PIECE_SIZE + 999;
	_cleanup_free_ uint8_t *data = make_data(len);
	thread_create = flaky_create;
	/* compression workers: none, or only some, can be started */
	for (int from = 0; from < 3; from += 2) {
		create_calls = 0;
		fail_from = from;
		_cleanup_buf_ struct buf c = BUF_INIT, d = BUF_INIT;
		compress_all(OCITREE_COMPRESSION_GZIP, 4, data, len, &c, NULL, NULL);
		struct ocitree_error *err = NULL;
		ok(decompress_all(OCITREE_COMPRESSION_GZIP, c.data, c.len, 0, &d, &err) == 0 && same(&d, data, len),
		   "compressor: %d of 4 workers started, the output is right", from);
		ocitree_error_free(err);
	}
	/* the reader's threads: the first, or the second cannot be started */
	_cleanup_buf_ struct buf c = BUF_INIT;
	compress_all(OCITREE_COMPRESSION_GZIP, 1, data, len, &c, NULL, NULL);
	_cleanup_free_ char *path = xasprintf("%s/threads.gz", tmpdir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	write_all(fd, c.data, c.len);
	for (int from = 0; from < 3; from++) {
		create_calls = 0;
		fail_from = from;
		lseek(fd, 0, SEEK_SET);
		struct ocitree_error *err = NULL;
		struct ocitree_layer_reader *r =
			ocitree_layer_reader_open_fd(dup(fd), OCITREE_COMPRESSION_GZIP, NULL, "test stream", &err);
		const void *p;
		ssize_t n = ocitree_layer_reader_next(r, &p, &err);
		ok(n < 0 && err && strstr(err->msg, "start reader threads"), "reader: thread %d cannot be started: an error (%s)",
		   from + 1, err ? err->msg : "none");
		ocitree_error_free(err);
		err = NULL;
		fail_from = -1;
		/* not a second try with a stream the first thread began to read */
		ok(ocitree_layer_reader_next(r, &p, &err) < 0 && err, "reader: and it stays an error");
		ocitree_error_free(err);
		ocitree_layer_reader_free(r);
	}
	close(fd);
	fail_from = -1;
	thread_create = pthread_create;
}

/* The reference: Nettle's SHA-256 of a then b. */
static void ref_sha256(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32])
{
	struct sha256_ctx md;
	sha256_init(&md);
	sha256_update(&md, alen, a);
	sha256_update(&md, blen, b);
	sha256_digest(&md, SHA256_DIGEST_SIZE, out);
}

/* Two digests of the same bytes in one pass, after different prefixes:
 * aligned as file data in a tar stream (a 512-byte multiple), at the same
 * offset modulo 64 but with different partial blocks, and not aligned;
 * fed in pieces of every size.  A third digest, of other bytes, goes
 * along in some of those passes (sha256p_update2_and, as an unpack's
 * blob), in pieces of its own between them that leave it off a block
 * boundary at times. */
static void test_sha256_pair(void)
{
	const size_t len = 1100000;
	_cleanup_free_ uint8_t *data = make_data(len);
	const size_t prefix_a[] = {0, 512, 1536, 64 + 10, 7, 1000};
	const size_t prefix_b[] = {0, 0, 0, 10, 0, 0};
	const size_t pieces[] = {1, 63, 64, 65, 4096, 131072, 1000000};
	uint64_t x = 1;
	int bad = 0, runs = 0;
	size_t taken_all = 0, taken_one = 0;
	for (size_t i = 0; i < ARRAY_SIZE(prefix_a); i++)
		for (size_t j = 0; j < ARRAY_SIZE(pieces); j++) {
			/* the prefixes come from the end of data: different bytes */
			size_t n = pieces[j] < 100 ? 20000 : len;
			struct sha256p a, b, c;
			sha256p_init(&a);
			sha256p_init(&b);
			sha256p_init(&c);
			const uint8_t *cdata = data + 4321;
			size_t cn = len - 4321, coff = 0, taken = 0;
			sha256p_update(&a, data + len - prefix_a[i], prefix_a[i]);
			sha256p_update(&b, data + len - 200 - prefix_b[i], prefix_b[i]);
			for (size_t off = 0; off < n;) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				size_t k = pieces[j] > 64 ? pieces[j] - x % 64 : pieces[j];
				if (k > n - off)
					k = n - off;
				if ((x & 768) == 768) {
					size_t cmax = x & 1024 ? cn - coff : (size_t)(x >> 11) % 4096;
					if (cmax > cn - coff)
						cmax = cn - coff;
					size_t t = sha256p_update2_and(&a, &b, data + off, k, &c, cdata + coff, cmax);
					bad += t > cmax || t % 64 != 0;
					coff += t;
					taken += t;
				} else if (x & 256) {
					sha256p_update2(&a, &b, data + off, k);
				} else if (x & 512) {
					/* c beside a alone (an index pass's blob) */
					size_t cmax = x & 1024 ? cn - coff : (size_t)(x >> 11) % 4096;
					if (cmax > cn - coff)
						cmax = cn - coff;
					size_t t = sha256p_update_and(&a, data + off, k, &c, cdata + coff, cmax);
					bad += t > cmax || t % 64 != 0;
					coff += t;
					taken_one += t;
					sha256p_update(&b, data + off, k);
				} else {
					if (x & 1024) {
						size_t t = (size_t)(x >> 11) % 100;
						if (t > cn - coff)
							t = cn - coff;
						sha256p_update(&c, cdata + coff, t);
						coff += t;
					}
					sha256p_update(&a, data + off, k);
					sha256p_update(&b, data + off, k);
				}
				off += k;
			}
			sha256p_update(&c, cdata + coff, cn - coff);
			uint8_t ga[32], gb[32], gc[32], wa[32], wb[32], wc[32];
			sha256p_final(&a, ga);
			sha256p_final(&b, gb);
			sha256p_final(&c, gc);
			ref_sha256(cdata, cn, "", 0, wc);
			bad += memcmp(gc, wc, 32) != 0;
			taken_all += taken;
			ref_sha256(data + len - prefix_a[i], prefix_a[i], data, n, wa);
			ref_sha256(data + len - 200 - prefix_b[i], prefix_b[i], data, n, wb);
			bad += memcmp(ga, wa, 32) != 0 || memcmp(gb, wb, 32) != 0;
			runs++;
		}
	is_int(bad, 0, "sha256 pair: the three digests match Nettle's in %d runs (SHA extensions: %s)", runs,
	       sha256p_available() ? "yes" : "no");
	ok(taken_all >= 65536, "sha256 pair: the third digest took %zu bytes beside the pair", taken_all);
	ok(taken_one >= 65536, "sha256 pair: another digest took %zu bytes beside one (sha256p_update_and)", taken_one);
	struct sha256p e;
	uint8_t ge[32], we[32];
	sha256p_init(&e);
	sha256p_final(&e, ge);
	ref_sha256("", 0, "", 0, we);
	ok(memcmp(ge, we, 32) == 0, "sha256 pair: the empty digest");
}

/* ring_next: a consumer that holds one slot gives it back on its next
 * call, so a ring of two slots never blocks a producer that pushes one
 * ahead. */
static void test_ring_next(void)
{
	struct ring r;
	ring_init(&r, 2);
	bool held = false;
	size_t k = 99;
	ok(ring_acquire(&r) == 0, "ring: first slot 0");
	ring_push(&r);
	ok(ring_acquire(&r) == 1, "ring: second slot 1");
	ring_push(&r);
	is_int(ring_next(&r, &held, &k, NULL), 1, "ring_next takes a pushed slot");
	ok(held && k == 0, "ring_next holds slot 0");
	is_int(ring_next(&r, &held, &k, NULL), 1, "ring_next takes the next");
	ok(held && k == 1, "ring_next holds slot 1");
	/* slot 0 was given back by the second call: the producer gets it
	 * without waiting */
	ok(ring_acquire(&r) == 0, "ring_next released the slot held before");
	ring_push(&r);
	ring_close(&r, NULL);
	is_int(ring_next(&r, &held, &k, NULL), 1, "ring_next: the slot pushed before the close");
	is_int(ring_next(&r, &held, &k, NULL), 0, "ring_next: end after the close");
	ok(!held, "nothing held at the end");
	ring_destroy(&r);
}

int main(void)
{
	test_ring_next();
	test_sha256_pair();
	test_round_trips();
	test_gzip_is_plain_and_seekable();
	test_zstd_frames();
	test_multi_member_and_bad_streams();
	test_tar_header();

	char tmpl[] = "/tmp/ocitree-test-layer.XXXXXX";
	tmpdir = mkdtemp(tmpl);
	struct ocitree_layout *l = make_layout("layout");
	ok(l != NULL, "test layout created");
	if (l) {
		test_layer_round_trip(l, OCITREE_COMPRESSION_GZIP);
		test_layer_round_trip(l, OCITREE_COMPRESSION_ZSTD);
		test_layer_round_trip(l, OCITREE_COMPRESSION_NONE);
		test_trailer_and_limit(l);
		test_reader_fd();
		test_thread_failure();
		ocitree_layout_free(l);
	}
	_cleanup_free_ char *rm = xasprintf("rm -rf '%s'", tmpdir);
	if (system(rm) != 0)
		diag("cleanup failed");
	return done_testing();
}
