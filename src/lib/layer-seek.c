/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Random access into gzip layers: decoding the chunk of uncompressed tar
 * between two checkpoints of an index, resuming the inflate there.
 */
#include "config.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "inflater.h"
#include "layer-index-internal.h"
#include "layout-internal.h"

/* A checkpoint's deflated window.  A cached index is mapped with
 * MADV_RANDOM (see load_cached): its pages are asked for in one request. */
static const unsigned char *window_bytes(const struct ocitree_layer_index *idx, const struct idx_checkpoint *cp)
{
	const unsigned char *p = idx->windows + cp->window_off;
	if (idx->map && cp->window_len) {
		uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
		uintptr_t start = (uintptr_t)p & ~(page - 1);
		(void)madvise((void *)start, (uintptr_t)p + cp->window_len - start, MADV_WILLNEED);
	}
	return p;
}

static int window_of(const struct ocitree_layer_index *idx, const struct idx_checkpoint *cp, unsigned char *win,
		     size_t *win_len, struct ocitree_error **err)
{
	*win_len = 0;
	if (!cp->window_len)
		return 0;
	/* a window is 32 KiB but at the start of a stream */
	size_t n = cp->out_off < WINDOW_SIZE ? (size_t)cp->out_off : WINDOW_SIZE;
	if (layer_index_unpack_window(window_bytes(idx, cp), cp->window_len, cp->window_crc, win, n, err) < 0)
		return -1;
	*win_len = n;
	return 0;
}

/* Inflate the out_len bytes of the chunk after cp from in (its compressed
 * bytes from cp->in_off, or from the byte before when cp->bits), with win
 * the window of a zlib checkpoint or the packed state of an ISA-L one.
 * Returns 1 when ISA-L cannot finish the chunk (INFLATE_NEED_ZLIB). */
static int inflate_chunk(enum inflate_engine engine, const struct idx_checkpoint *cp, const unsigned char *in,
			 size_t in_len, const unsigned char *win, size_t win_len, unsigned char *out, size_t out_len,
			 struct ocitree_error **err)
{
	struct inflater f;
	/* an ISA-L checkpoint's saved state replaces the engine's whole */
	inflater_init(&f, OCITREE_COMPRESSION_GZIP, engine, cp->kind == CP_ISAL ? INFLATE_STATE_LOADED : 0);
	/* the chunk's input is all there is: running out is an early end */
	struct inflate_io io = {.in = in, .in_len = in_len, .eof = true, .out = out, .out_len = out_len};
	int ret = 0;
	if (cp->kind == CP_ISAL) {
		size_t n;
		void *st = inflater_state(&f, &n);
		if (!st)
			ret = ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "checkpoint needs ISA-L");
		else if (layer_index_unpack_window(win, win_len, cp->window_crc, st, n, err) < 0)
			ret = -1;
		else
			inflater_resume_state(&f);
	} else if (cp->kind == CP_ZLIB) {
		ret = inflater_resume_block(&f, cp->bits, cp->bits ? in[0] : 0, win, win_len, err);
		if (cp->bits) {
			io.in++;
			io.in_len--;
		}
	}
	/* else a gzip member starts at in */
	while (ret == 0 && io.out_len) {
		int ev = inflater_step(&f, &io, err);
		/* worded as before the inflater was shared */
		if (ev < 0 && f.failure == INFLATE_FAIL_CORRUPT)
			ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "corrupt gzip stream: %s", f.detail);
		else if (ev < 0 && f.failure == INFLATE_FAIL_TRUNCATED)
			ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "gzip stream ends early");
		else if (ev < 0)
			ret = -1;
		else if (ev == INFLATE_NEED_ZLIB)
			ret = 1;
		else if (ev == INFLATE_END)
			ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "gzip stream ends early");
	}
	inflater_end(&f);
	return ret;
}

/* Without a mapping of the blob (see layer_index_map_blob), the
 * compressed input of a chunk is read into a buffer of the decoding thread,
 * kept for its next chunk: a fresh buffer per chunk costs more in page
 * faults than the copy itself.  A chunk that needs more than SCRATCH_MAX
 * (not one of the 1 MiB chunks ocitree writes) gets a buffer of its own,
 * so that no thread keeps a big one. */
#define SCRATCH_MAX (4u << 20)
struct scratch {
	unsigned char *in;
	size_t cap;
};
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
	struct scratch *s = p;
	if (s)
		free(s->in);
	free(s);
}

static void scratch_init(void)
{
	if (pthread_key_create(&scratch_key, scratch_free) != 0)
		abort();
}

static unsigned char *scratch_input(size_t len)
{
	pthread_once(&scratch_once, scratch_init);
	struct scratch *s = pthread_getspecific(scratch_key);
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		if (pthread_setspecific(scratch_key, s) != 0)
			abort();
	}
	if (s->cap < len) {
		free(s->in);
		s->cap = len < (1u << 20) ? 1u << 20 : len;
		s->in = xmalloc(s->cap);
	}
	return s->in;
}

/* The blob is mapped rather than read into a buffer: inflating straight
 * from the page cache saves the copy and the page faults of a buffer (the
 * faults cost most in a virtual machine).  This assumes what a layout
 * guarantees: a blob is written aside and renamed into place, never
 * rewritten or truncated in place, so the mapping cannot shrink under us
 * (which would be SIGBUS, where pread would fail).  A blob already shorter
 * than its index says is seen here, by fstat: only what is there is
 * mapped, and chunks past its end fail as truncated.  MADV_RANDOM: a page
 * fault must not read megabytes around it (the device's read-ahead); each
 * chunk asks for its input, and the next chunk's, itself. */
void layer_index_map_blob(struct ocitree_layer_index *idx)
{
	if (idx->comp != OCITREE_COMPRESSION_GZIP || idx->blob_fd < 0 || idx->blob_map || idx->blob_size > INT64_MAX)
		return;
	idx->blob_map = blob_map(idx->blob_fd, (int64_t)idx->blob_size, MADV_RANDOM, &idx->blob_map_len);
}

/* Ask for bytes [start, end) of the mapped blob: WILLNEED starts reading
 * them without waiting; populate maps them now, in one call instead of a
 * page fault per few pages (EINVAL before Linux 5.14: the faults happen). */
static void blob_prefetch(const struct ocitree_layer_index *idx, uint64_t start, uint64_t end, bool populate)
{
	if (end > idx->blob_map_len)
		end = idx->blob_map_len;
	if (start >= end)
		return;
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	start &= ~(page - 1);
	void *p = (void *)(idx->blob_map + start);
	(void)madvise(p, (size_t)(end - start), MADV_WILLNEED);
#ifdef MADV_POPULATE_READ
	if (populate)
		(void)madvise(p, (size_t)(end - start), MADV_POPULATE_READ);
#else
	(void)populate;
#endif
}

/* Unmap bytes [start, end) of the mapped blob from this process once
 * inflated: the page cache keeps them, but mapped they would count in the
 * daemon's RSS, which then grew to the size of the blobs read (314 MiB
 * after a full read of slim).  Mapping a page maps the pages of the page
 * cache around it too (the kernel's fault-around, 64 KiB by default), so
 * as much is unmapped on either side.  A page shared with a neighbouring
 * chunk being inflated by another thread is mapped again by its next
 * touch. */
#define FAULT_AROUND (64u << 10)
static void blob_release(const struct ocitree_layer_index *idx, uint64_t start, uint64_t end)
{
	/* the kernel aligns the addresses, not the offsets */
	uintptr_t base = (uintptr_t)idx->blob_map, limit = base + idx->blob_map_len;
	uintptr_t from = (base + (uintptr_t)start) & ~(uintptr_t)(FAULT_AROUND - 1);
	uintptr_t to = (base + (uintptr_t)end + FAULT_AROUND - 1) & ~(uintptr_t)(FAULT_AROUND - 1);
	if (from < base)
		from = base;
	if (to > limit)
		to = limit;
	if (from < to)
		(void)madvise((void *)from, to - from, MADV_DONTNEED);
}

/* Where chunk no's compressed input lies in the blob: [*start, *end). */
static int chunk_input(const struct ocitree_layer_index *idx, uint64_t no, uint64_t out_len, uint64_t *start,
		       uint64_t *end)
{
	const struct idx_checkpoint *cp = &idx->cps[no];
	uint64_t in_start = cp->bits ? cp->in_off - 1 : cp->in_off;
	/* a little past the next checkpoint: decoders may want lookahead */
	uint64_t in_end = no + 1 < idx->n_cps ? idx->cps[no + 1].in_off + 64 : idx->blob_size;
	if (in_end > idx->blob_size)
		in_end = idx->blob_size;
	if (in_end <= in_start || out_len > (64u << 20))
		return -1;
	/* a chunk's input is never much more than its output (deflate adds a
	 * few bytes per stored block, fixed Huffman codes an eighth; member
	 * headers a little): read no more, whatever the checkpoints say, and a
	 * stream that needs more ends early */
	uint64_t in_max = out_len + out_len / 8 + (1u << 20);
	if (in_end - in_start > in_max)
		in_end = in_start + in_max;
	*start = in_start;
	*end = in_end;
	return 0;
}

int layer_index_decode_chunk(void *userdata, struct ocitree_chunk_cache *cache, uint64_t no, struct chunk_data *outd,
			     struct ocitree_error **err)
{
	struct ocitree_layer_index *idx = userdata;
	const struct idx_checkpoint *cp = &idx->cps[no];
	uint64_t out_len = idx_chunk_end(idx, (size_t)no) - cp->out_off;
	uint64_t in_start, in_end;
	if (chunk_input(idx, no, out_len, &in_start, &in_end) < 0)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "bad checkpoint %ju", (uintmax_t)no);
	size_t in_len = (size_t)(in_end - in_start);
	_cleanup_free_ unsigned char *own_in = NULL;
	const unsigned char *in;
	if (idx->blob_map) {
		if (in_end > idx->blob_map_len)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "blob %s is truncated", idx->digest);
		blob_prefetch(idx, in_start, in_end, true);
		/* a reader going forward wants the next chunk's input soon:
		 * its reading overlaps this chunk's inflating */
		uint64_t next_start, next_end;
		if (no + 1 < idx->n_cps &&
		    chunk_input(idx, no + 1, idx_chunk_end(idx, (size_t)no + 1) - idx->cps[no + 1].out_off,
				&next_start, &next_end) == 0)
			blob_prefetch(idx, next_start, next_end, false);
		in = idx->blob_map + in_start;
	} else {
		unsigned char *buf = in_len <= SCRATCH_MAX ? scratch_input(in_len) : (own_in = xmalloc(in_len));
		ssize_t n = pread_full(idx->blob_fd, buf, in_len, (off_t)in_start);
		if (n < 0)
			return ocitree_error_set(err, errno, "read blob %s", idx->digest);
		if ((size_t)n != in_len)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "blob %s is truncated", idx->digest);
		in = buf;
	}
	unsigned char win[WINDOW_SIZE];
	size_t win_len = 0;
	if (cp->kind != CP_ISAL && window_of(idx, cp, win, &win_len, err) < 0)
		return -1;
	unsigned char *out;
	_cleanup_free_ unsigned char *own = NULL;
	if (cache) {
		/* the cache frees it if decoding fails */
		chunk_cache_alloc(cache, (size_t)out_len, outd);
		out = outd->data;
	} else {
		out = own = xmalloc(out_len ? out_len : 1);
	}
	int r;
	if (cp->kind == CP_ISAL)
		r = inflate_chunk(INFLATE_ISAL, cp, in, in_len, window_bytes(idx, cp), cp->window_len, out, out_len,
				  err);
	else
		r = inflate_chunk(layer_index_use_isal() ? INFLATE_ISAL : INFLATE_ZLIB, cp, in, in_len, win, win_len,
				  out, out_len, err);
	/* a raw resume that crosses the end of a gzip member (concatenated
	 * gzip files), which zlib handles */
	if (r == 1)
		r = inflate_chunk(INFLATE_ZLIB, cp, in, in_len, win, win_len, out, out_len, err);
	if (idx->blob_map)
		blob_release(idx, in_start, in_end);
	if (r < 0)
		return ocitree_error_prefix(err, "blob %s at offset %ju", idx->digest, (uintmax_t)cp->in_off);
	if (layer_index_crc(0, out, out_len) != cp->chunk_crc)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
					  "blob %s: data at offset %ju does not match its checksum", idx->digest,
					  (uintmax_t)cp->in_off);
	if (!cache)
		outd->data = steal_pointer(&own);
	outd->len = out_len;
	return 0;
}
