/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming decompression over a source callback (the decoding itself is
 * the inflater's) and piecewise, multi-threaded compression (see layer.h
 * for the output format).
 */
#include "config.h"

#include <pthread.h>
#include <zlib.h>
#include <zstd.h>

#include "inflater.h"
#include "layer-internal.h"
#include "ring.h"

unsigned cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

/* ---- decompression ---- */

struct decompressor {
	source_next_fn src;
	void *src_ctx;
	char *what;
	struct inflater f;
	struct inflate_io io; /* the input: the source's current piece, borrowed */
	bool done;
};

struct decompressor *decompressor_new(enum ocitree_compression comp, source_next_fn src, void *src_ctx,
				      const char *what)
{
	struct decompressor *d = xcalloc(1, sizeof(*d));
	d->src = src;
	d->src_ctx = src_ctx;
	d->what = xstrdup(what);
	/* ISA-L whenever there is one: it inflates 3-4x faster */
	inflater_init(&d->f, comp, INFLATE_ISAL, 0);
	return d;
}

void decompressor_free(struct decompressor *d)
{
	if (!d)
		return;
	inflater_end(&d->f);
	free(d->what);
	free(d);
}

ssize_t decompressor_read(struct decompressor *d, void *out, size_t len, struct ocitree_error **err)
{
	if (d->done || len == 0)
		return 0;
	struct inflate_io *io = &d->io;
	io->out = out;
	io->out_len = len;
	for (;;) {
		if (!io->in_len && !io->eof) {
			const void *data = NULL;
			ssize_t n = d->src(d->src_ctx, &data, err);
			if (n < 0)
				return -1;
			io->in = data;
			io->in_len = (size_t)n;
			io->eof = n == 0;
		}
		int ev = inflater_step(&d->f, io, err);
		if (ev < 0)
			return ocitree_error_prefix(err, "%s", d->what);
		size_t got = len - io->out_len;
		if (ev == INFLATE_END)
			d->done = true;
		if (got || d->done)
			return (ssize_t)got;
	}
}

/* ---- compression ---- */

struct piece {
	uint8_t *in;
	size_t in_len;
	uint8_t *out;
	size_t out_len, out_cap;
	uint32_t crc;
	char *error; /* set by whoever compressed it, on failure */
};

struct worker_ctx {
	z_stream z;
	bool z_init;
	ZSTD_CCtx *zc;
};

struct compressor {
	enum ocitree_compression comp;
	int level;
	sink_write_fn sink;
	void *sink_ctx;
	/* pieces, in a ring: cur is being filled by the caller, tail is the
	 * oldest piece not yet written out; both only move forward and belong
	 * to the caller.  With workers, queue orders them: cur is its push
	 * count and tail its release count (submit and drain keep the ring
	 * from filling up, so a slot is free whenever the caller wants one). */
	struct piece *ring;
	size_t n_ring;
	uint64_t cur, tail;
	struct ring queue; /* when workers were asked for */
	pthread_t *threads;
	unsigned n_threads;
	/* caller only */
	struct worker_ctx inline_ctx; /* when there are no worker threads */
	uint32_t crc;
	uint64_t total_in, total_out;
	uint64_t *offsets;
	size_t n_offsets, cap_offsets;
	bool header_written, finished;
};

static int default_level(enum ocitree_compression comp, int level)
{
	if (level > 0)
		return level;
	return comp == OCITREE_COMPRESSION_ZSTD ? 3 : 6;
}

/* Compress one piece on its own: a raw deflate stream ending in a full flush
 * (and not final), or one zstd frame.  Returns NULL or an error message. */
static char *compress_piece(enum ocitree_compression comp, int level, struct worker_ctx *w, struct piece *p)
{
	if (comp == OCITREE_COMPRESSION_GZIP) {
		if (!w->z_init) {
			memset(&w->z, 0, sizeof(w->z));
			if (deflateInit2(&w->z, level, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
				return xstrdup("cannot initialise zlib");
			w->z_init = true;
		} else {
			deflateReset(&w->z);
		}
		size_t need = deflateBound(&w->z, (uLong)p->in_len) + 16;
		if (p->out_cap < need) {
			p->out = xrealloc(p->out, need);
			p->out_cap = need;
		}
		w->z.next_in = p->in;
		w->z.avail_in = (uInt)p->in_len;
		w->z.next_out = p->out;
		w->z.avail_out = (uInt)p->out_cap;
		int r = deflate(&w->z, Z_FULL_FLUSH);
		if (r != Z_OK || w->z.avail_in != 0)
			return xasprintf("gzip compression failed (%d)", r);
		p->out_len = p->out_cap - w->z.avail_out;
		p->crc = (uint32_t)crc32(0, p->in, (uInt)p->in_len);
		return NULL;
	}
	if (!w->zc) {
		w->zc = ZSTD_createCCtx();
		if (!w->zc)
			return xstrdup("out of memory (zstd)");
	}
	ZSTD_CCtx_reset(w->zc, ZSTD_reset_session_and_parameters);
	ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(w->zc, ZSTD_c_checksumFlag, 1);
	size_t need = ZSTD_compressBound(p->in_len);
	if (p->out_cap < need) {
		p->out = xrealloc(p->out, need);
		p->out_cap = need;
	}
	size_t r = ZSTD_compress2(w->zc, p->out, p->out_cap, p->in, p->in_len);
	if (ZSTD_isError(r))
		return xasprintf("zstd compression failed: %s", ZSTD_getErrorName(r));
	p->out_len = r;
	return NULL;
}

static void worker_ctx_clear(struct worker_ctx *w)
{
	if (w->z_init)
		deflateEnd(&w->z);
	ZSTD_freeCCtx(w->zc);
}

static void *worker(void *arg)
{
	struct compressor *c = arg;
	struct worker_ctx w = {0};
	size_t k;
	/* pieces are taken oldest first, so that output flows in order */
	while (ring_take(&c->queue, &k, NULL) > 0) {
		struct piece *p = &c->ring[k];
		p->error = compress_piece(c->comp, c->level, &w, p);
		ring_finish(&c->queue, k);
	}
	worker_ctx_clear(&w);
	return NULL;
}

struct compressor *compressor_new(enum ocitree_compression comp, int level, unsigned threads, sink_write_fn sink,
				  void *sink_ctx)
{
	struct compressor *c = xcalloc(1, sizeof(*c));
	c->comp = comp;
	c->level = default_level(comp, level);
	c->sink = sink;
	c->sink_ctx = sink_ctx;
	c->crc = (uint32_t)crc32(0, NULL, 0);
	if (comp == OCITREE_COMPRESSION_NONE)
		return c;
	if (threads > 64)
		threads = 64;
	c->n_threads = threads > 1 ? threads : 0;
	c->n_ring = c->n_threads ? 2 * c->n_threads + 1 : 1;
	c->ring = xcalloc(c->n_ring, sizeof(*c->ring));
	for (size_t i = 0; i < c->n_ring; i++)
		c->ring[i].in = xmalloc(OCITREE_LAYER_PIECE_SIZE);
	if (c->n_threads) {
		ring_init(&c->queue, c->n_ring);
		c->threads = xcalloc(c->n_threads, sizeof(pthread_t));
		for (unsigned i = 0; i < c->n_threads; i++) {
			if (thread_create(&c->threads[i], NULL, worker, c) != 0) {
				/* fewer workers still work; none means inline */
				c->n_threads = i;
				break;
			}
		}
	}
	return c;
}

static int emit(struct compressor *c, const void *data, size_t len, struct ocitree_error **err)
{
	c->total_out += len;
	return c->sink(c->sink_ctx, data, len, err);
}

static int write_header(struct compressor *c, struct ocitree_error **err)
{
	if (c->header_written)
		return 0;
	c->header_written = true;
	if (c->comp == OCITREE_COMPRESSION_GZIP) {
		/* fixed fields (no name, mtime 0, OS unknown) keep the output
		 * reproducible */
		static const uint8_t hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
		return emit(c, hdr, sizeof(hdr), err);
	}
	return 0;
}

/* Write out finished pieces in order, waiting for them when wait is set
 * (until all pieces before upto are out). */
static int drain(struct compressor *c, uint64_t upto, struct ocitree_error **err)
{
	while (c->tail < upto) {
		struct piece *p = &c->ring[c->tail % c->n_ring];
		if (c->n_threads)
			ring_oldest_finished(&c->queue, true);
		if (p->error) {
			ocitree_error_set(err, 0, "%s", p->error);
			return -1;
		}
		if (write_header(c, err) < 0)
			return -1;
		GROW(c->offsets, c->cap_offsets, c->n_offsets + 1);
		c->offsets[c->n_offsets++] = c->total_out;
		if (c->comp == OCITREE_COMPRESSION_GZIP)
			c->crc = (uint32_t)crc32_combine(c->crc, p->crc, (z_off_t)p->in_len);
		if (emit(c, p->out, p->out_len, err) < 0)
			return -1;
		p->in_len = 0;
		if (c->n_threads)
			ring_release(&c->queue);
		c->tail++;
	}
	return 0;
}

/* Hand the current piece to the workers (or compress it here). */
static int submit(struct compressor *c, struct ocitree_error **err)
{
	struct piece *p = &c->ring[c->cur % c->n_ring];
	if (p->in_len == 0)
		return 0;
	if (!c->n_threads) {
		p->error = compress_piece(c->comp, c->level, &c->inline_ctx, p);
		c->cur++;
		return drain(c, c->cur, err);
	}
	ring_push(&c->queue);
	c->cur++;
	/* write out what is done; make room for the next piece */
	while (c->tail < c->cur) {
		bool ready = ring_oldest_finished(&c->queue, false);
		if (!ready && c->cur - c->tail < c->n_ring)
			break;
		if (drain(c, c->tail + 1, err) < 0)
			return -1;
	}
	return 0;
}

int compressor_write(struct compressor *c, const void *data, size_t len, struct ocitree_error **err)
{
	c->total_in += len;
	if (c->comp == OCITREE_COMPRESSION_NONE)
		return emit(c, data, len, err);
	const uint8_t *d = data;
	while (len > 0) {
		struct piece *p = &c->ring[c->cur % c->n_ring];
		size_t n = OCITREE_LAYER_PIECE_SIZE - p->in_len;
		if (n > len)
			n = len;
		memcpy(p->in + p->in_len, d, n);
		p->in_len += n;
		d += n;
		len -= n;
		if (p->in_len == OCITREE_LAYER_PIECE_SIZE && submit(c, err) < 0)
			return -1;
	}
	return 0;
}

int compressor_finish(struct compressor *c, struct ocitree_error **err)
{
	if (c->finished)
		return 0;
	c->finished = true;
	if (c->comp == OCITREE_COMPRESSION_NONE)
		return 0;
	if (submit(c, err) < 0 || drain(c, c->cur, err) < 0)
		return -1;
	if (write_header(c, err) < 0)
		return -1;
	if (c->comp == OCITREE_COMPRESSION_GZIP) {
		/* an empty final fixed-Huffman block, then CRC-32 and ISIZE */
		uint8_t t[10] = {0x03, 0x00};
		uint32_t isize = (uint32_t)c->total_in;
		for (int i = 0; i < 4; i++) {
			t[2 + i] = (uint8_t)(c->crc >> (8 * i));
			t[6 + i] = (uint8_t)(isize >> (8 * i));
		}
		return emit(c, t, sizeof(t), err);
	}
	if (c->total_in == 0) {
		/* zstd: an empty stream is still one frame */
		uint8_t buf[64];
		size_t r = ZSTD_compress(buf, sizeof(buf), "", 0, c->level);
		if (ZSTD_isError(r))
			return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "zstd compression failed: %s",
						  ZSTD_getErrorName(r));
		return emit(c, buf, r, err);
	}
	return 0;
}

const uint64_t *compressor_piece_offsets(const struct compressor *c, size_t *n)
{
	*n = c->n_offsets;
	return c->offsets;
}

void compressor_free(struct compressor *c)
{
	if (!c)
		return;
	if (c->threads) {
		/* what is queued and not written out is of no use any more */
		ring_cancel(&c->queue);
		for (unsigned i = 0; i < c->n_threads; i++)
			pthread_join(c->threads[i], NULL);
		ring_destroy(&c->queue);
	}
	if (c->ring) {
		for (size_t i = 0; i < c->n_ring; i++) {
			free(c->ring[i].in);
			free(c->ring[i].out);
			free(c->ring[i].error);
		}
	}
	worker_ctx_clear(&c->inline_ctx);
	free(c->ring);
	free(c->threads);
	free(c->offsets);
	free(c);
}
