/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Random access into gzip layers: decoding the chunk of uncompressed tar
 * between two checkpoints of an index, resuming the inflate at the
 * resumable checkpoint before it, or going on with the inflate that
 * decoded the chunk before.
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
	if (layer_index_unpack_window(window_bytes(idx, cp), cp->window_len, cp->window_crc, win, n, NULL, err) < 0)
		return -1;
	*win_len = n;
	return 0;
}

/* Start f at the resumable checkpoint cp, io->in at its compressed bytes
 * (from cp->in_off, or from the byte before when cp->bits), with win the
 * window of a zlib checkpoint or the packed state of an ISA-L one. */
static int inflate_start(struct inflater *f, enum inflate_engine engine, const struct idx_checkpoint *cp,
			 struct inflate_io *io, const unsigned char *win, size_t win_len, struct ocitree_error **err)
{
	/* an ISA-L checkpoint's saved state replaces the engine's whole */
	inflater_init(f, OCITREE_COMPRESSION_GZIP, engine, cp->kind == CP_ISAL ? INFLATE_STATE_LOADED : 0);
	if (cp->kind == CP_ISAL) {
		size_t n;
		void *st = inflater_state(f, &n);
		if (!st)
			return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "checkpoint needs ISA-L");
		size_t got;
		if (layer_index_unpack_window(win, win_len, cp->window_crc, st, n, &got, err) < 0)
			return -1;
		if (inflater_resume_state(f, got) < 0)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "index checkpoint data is corrupt");
	} else if (cp->kind == CP_ZLIB) {
		if (!io->in_len)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "gzip stream ends early");
		if (inflater_resume_block(f, cp->bits, cp->bits ? io->in[0] : 0, win, win_len, err) < 0)
			return -1;
		if (cp->bits) {
			io->in++;
			io->in_len--;
		}
	}
	/* else a gzip member starts at in */
	return 0;
}

/* Inflate exactly n bytes into out from io's input (all there is: running
 * out is an early end).  Returns 1 when ISA-L cannot go on
 * (INFLATE_NEED_ZLIB). */
static int inflate_produce(struct inflater *f, struct inflate_io *io, unsigned char *out, size_t n,
			   struct ocitree_error **err)
{
	io->out = out;
	io->out_len = n;
	while (io->out_len) {
		int ev = inflater_step(f, io, err);
		/* worded as before the inflater was shared */
		if (ev < 0 && f->failure == INFLATE_FAIL_CORRUPT)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "corrupt gzip stream: %s", f->detail);
		if (ev < 0 && f->failure == INFLATE_FAIL_TRUNCATED)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "gzip stream ends early");
		if (ev < 0)
			return -1;
		if (ev == INFLATE_NEED_ZLIB)
			return 1;
		if (ev == INFLATE_END)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "gzip stream ends early");
	}
	return 0;
}

/* Output skipped between a resumable checkpoint and the chunk wanted goes
 * through a buffer of this size at least (the chunk's own, if as big). */
#define SKIP_BUF (64u << 10)

/* Decode into out (out_len bytes) the chunk that starts skip bytes after the
 * resumable checkpoint cp, with in[0, in_len) from the checkpoint's first
 * byte on: f is started there and left running (the caller ends it); *used
 * gets the input it read.  Returns 1 for INFLATE_NEED_ZLIB. */
static int inflate_chunk(struct inflater *f, enum inflate_engine engine, const struct idx_checkpoint *cp,
			 const unsigned char *in, size_t in_len, const unsigned char *win, size_t win_len,
			 uint64_t skip, unsigned char *out, size_t out_len, size_t *used, struct ocitree_error **err)
{
	struct inflate_io io = {.in = in, .in_len = in_len, .eof = true};
	int ret = inflate_start(f, engine, cp, &io, win, win_len, err);
	_cleanup_free_ unsigned char *own = NULL;
	unsigned char *sink = out;
	size_t sink_len = out_len;
	if (ret == 0 && skip && out_len < SKIP_BUF) {
		sink = own = xmalloc(SKIP_BUF);
		sink_len = SKIP_BUF;
	}
	while (ret == 0 && skip) {
		size_t n = skip < sink_len ? (size_t)skip : sink_len;
		ret = inflate_produce(f, &io, sink, n, err);
		skip -= n;
	}
	if (ret == 0)
		ret = inflate_produce(f, &io, out, out_len, err);
	*used = (size_t)(io.in - in);
	return ret;
}

/* The inflate that decoded the last chunk, kept in the index to go on with
 * the next: a reader going forward (the read-ahead thread above all) then
 * inflates every byte once, restoring no state at checkpoints.  One per
 * index: a decode of another chunk takes it over when it is free. */
struct seek_stream {
	pthread_mutex_t lock;
	uint64_t next;  /* atomic: the chunk it goes on with, or is decoding the one before */
	bool ok;        /* f is running, at chunk next, its input at blob byte in_pos */
	uint64_t in_pos;
	uint64_t kept;  /* the blob from here to in_pos may still be mapped (see stream_release) */
	uint64_t populated; /* the blob is mapped up to here (see stream_prefetch) */
	uint64_t asked;     /* and asked for (WILLNEED) up to here */
	uint64_t window;    /* how far ahead it asks, doubling up to STREAM_AHEAD */
	struct inflater f;
};

/* The input a stream went through is unmapped (blob_release) in steps of
 * this many bytes: a DONTNEED is a TLB flush on every CPU the daemon's
 * threads ran on, which per 256 KiB chunk was 7% of a full read's CPU. */
#define RELEASE_STEP (2u << 20)

static void blob_release(const struct ocitree_layer_index *idx, uint64_t start, uint64_t end);

/* Unmap what st went through, if it is RELEASE_STEP or more (or anything,
 * when all). */
static void stream_release(const struct ocitree_layer_index *idx, struct seek_stream *st, bool all)
{
	if (st->in_pos > st->kept && (all || st->in_pos - st->kept >= RELEASE_STEP)) {
		blob_release(idx, st->kept, st->in_pos);
		st->kept = st->in_pos;
	}
}

void layer_seek_free(struct ocitree_layer_index *idx)
{
	struct seek_stream *st = idx->stream;
	if (!st)
		return;
	if (st->ok)
		inflater_end(&st->f);
	pthread_mutex_destroy(&st->lock);
	free(st);
	idx->stream = NULL;
}

/* The index's stream, locked, for decoding chunk no, or NULL when another
 * thread is decoding with it (one going on from chunk no - 1 is waited
 * for: it will be at chunk no). */
static struct seek_stream *stream_take(struct ocitree_layer_index *idx, uint64_t no)
{
	struct seek_stream *st = __atomic_load_n(&idx->stream, __ATOMIC_ACQUIRE);
	if (!st) {
		struct seek_stream *fresh = xcalloc(1, sizeof(*fresh));
		pthread_mutex_init(&fresh->lock, NULL);
		fresh->next = UINT64_MAX;
		if (__atomic_compare_exchange_n(&idx->stream, &st, fresh, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			st = fresh;
		} else {
			pthread_mutex_destroy(&fresh->lock);
			free(fresh);
		}
	}
	if (__atomic_load_n(&st->next, __ATOMIC_RELAXED) == no)
		pthread_mutex_lock(&st->lock);
	else if (pthread_mutex_trylock(&st->lock) != 0)
		return NULL;
	return st;
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
 * them without waiting (when willneed); populate maps them now, in one call
 * instead of a page fault per few pages (EINVAL before Linux 5.14: the
 * faults happen), reading what is not read yet. */
static void blob_prefetch_as(const struct ocitree_layer_index *idx, uint64_t start, uint64_t end, bool willneed,
			     bool populate)
{
	if (end > idx->blob_map_len)
		end = idx->blob_map_len;
	if (start >= end)
		return;
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	start &= ~(page - 1);
	void *p = (void *)(idx->blob_map + start);
	if (willneed)
		(void)madvise(p, (size_t)(end - start), MADV_WILLNEED);
#ifdef MADV_POPULATE_READ
	if (populate)
		(void)madvise(p, (size_t)(end - start), MADV_POPULATE_READ);
#else
	(void)populate;
#endif
}

static void blob_prefetch(const struct ocitree_layer_index *idx, uint64_t start, uint64_t end, bool populate)
{
	blob_prefetch_as(idx, start, end, true, populate);
}

/* A stream going on (a reader going forward through the layer) asks for
 * the blob far ahead, a window at a time once it is within half of it of
 * where it asked up to (the window doubles each time from 1 MiB up to
 * STREAM_AHEAD, so that a stream that soon jumps, over chunks of files an
 * upper layer hides, has not asked for much for nothing), and maps its
 * input POPULATE_STEP at a time: per
 * chunk, a WILLNEED of the next chunk's input and a populate of its own
 * were three system calls, and reads of 128-256 KiB from the disk where
 * gzip -d reads 8 MiB ahead (slim's full read: 2200 reads of the device,
 * 0.2 s of the daemon's CPU in madvise).  A decode from a restore point
 * (a random read) still asks for its own input and the next chunk's
 * alone. */
#define STREAM_AHEAD (8u << 20)
#define STREAM_AHEAD_FIRST (512u << 10) /* doubled before its first use */
#define POPULATE_STEP (1u << 20)
static void stream_prefetch(const struct ocitree_layer_index *idx, struct seek_stream *st, uint64_t in_end)
{
	if (st->asked < in_end + st->window / 2) {
		uint64_t from = st->asked > st->in_pos ? st->asked : st->in_pos;
		if (st->window < STREAM_AHEAD)
			st->window *= 2;
		st->asked = in_end + st->window;
		blob_prefetch_as(idx, from, st->asked, true, false);
	}
	if (st->populated < in_end) {
		uint64_t from = st->populated > st->in_pos ? st->populated : st->in_pos;
		uint64_t to = from + POPULATE_STEP > in_end ? from + POPULATE_STEP : in_end;
		blob_prefetch_as(idx, from, to, false, true);
		st->populated = to;
	}
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

/* Where the compressed input of chunk no ends: a little past the next
 * checkpoint (decoders may want lookahead). */
static uint64_t input_end(const struct ocitree_layer_index *idx, size_t no)
{
	uint64_t end = no + 1 < idx->n_cps ? idx->cps[no + 1].in_off + 64 : idx->blob_size;
	return end < idx->blob_size ? end : idx->blob_size;
}

/* The resumable checkpoint chunk no is decoded from (attach() checked that
 * it is not far). */
static size_t restore_point(const struct ocitree_layer_index *idx, size_t no)
{
	while (no && idx->cps[no].kind == CP_CONT)
		no--;
	return no;
}

/* Where the compressed input of chunks r to no (r resumable) lies in the
 * blob: [*start, *end). */
static int chunk_input(const struct ocitree_layer_index *idx, size_t r, size_t no, uint64_t *start, uint64_t *end)
{
	const struct idx_checkpoint *cp = &idx->cps[r];
	uint64_t in_start = cp->bits ? cp->in_off - 1 : cp->in_off;
	uint64_t in_end = input_end(idx, no);
	uint64_t out_len = idx_chunk_end(idx, no) - cp->out_off;
	if (in_end <= in_start || out_len > RESTORE_MAX_DIST)
		return -1;
	/* the input is never much more than the output (deflate adds a few
	 * bytes per stored block, fixed Huffman codes an eighth; member
	 * headers a little): read no more, whatever the checkpoints say, and a
	 * stream that needs more ends early */
	uint64_t in_max = out_len + out_len / 8 + (1u << 20);
	if (in_end - in_start > in_max)
		in_end = in_start + in_max;
	*start = in_start;
	*end = in_end;
	return 0;
}

/* Go on with the stream at chunk no (its input up to in_end): 0 when out
 * holds the chunk, checked; else the stream is ended. */
static int stream_go_on(struct ocitree_layer_index *idx, struct seek_stream *st, const struct idx_checkpoint *cp,
			uint64_t in_end, unsigned char *out, size_t out_len)
{
	uint64_t from = st->in_pos;
	struct inflate_io io = {.in = idx->blob_map + from, .in_len = (size_t)(in_end - from), .eof = true};
	struct ocitree_error *e = NULL;
	stream_prefetch(idx, st, in_end);
	int r = inflate_produce(&st->f, &io, out, out_len, &e);
	ocitree_error_free(e);
	st->in_pos = (uint64_t)(io.in - idx->blob_map);
	if (r == 0 && layer_index_crc(0, out, out_len) == cp->chunk_crc) {
		stream_release(idx, st, false);
		return 0;
	}
	/* whatever went wrong, decoding from the checkpoint says it best */
	stream_release(idx, st, true);
	inflater_end(&st->f);
	st->ok = false;
	return -1;
}

static int decode_from(struct ocitree_layer_index *idx, struct seek_stream *st, size_t rno, size_t no,
		       uint64_t in_start, uint64_t in_end, unsigned char *out, size_t out_len,
		       struct ocitree_error **err);

uint64_t layer_seek_restores;

int layer_index_decode_chunk(void *userdata, struct ocitree_chunk_cache *cache, uint64_t no, struct chunk_data *outd,
			     struct ocitree_error **err)
{
	struct ocitree_layer_index *idx = userdata;
	size_t rno = restore_point(idx, (size_t)no);
	const struct idx_checkpoint *cp = &idx->cps[no];
	uint64_t out_len = idx_chunk_end(idx, (size_t)no) - cp->out_off;
	uint64_t in_start, in_end;
	if (chunk_input(idx, rno, (size_t)no, &in_start, &in_end) < 0)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "bad checkpoint %ju", (uintmax_t)no);
	if (idx->blob_map && in_end > idx->blob_map_len)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "blob %s is truncated", idx->digest);
	unsigned char *out;
	_cleanup_free_ unsigned char *own = NULL;
	if (cache) {
		/* the cache frees it if decoding fails */
		chunk_cache_alloc(cache, (size_t)out_len, outd);
		out = outd->data;
	} else {
		out = own = xmalloc(out_len ? out_len : 1);
	}
	/* with a mapping, the stream of the chunk before goes on, or this
	 * decode becomes the stream */
	struct seek_stream *st = idx->blob_map ? stream_take(idx, no) : NULL;
	bool go_on = st && st->ok && __atomic_load_n(&st->next, __ATOMIC_RELAXED) == no && st->in_pos < in_end;
	if (idx->blob_map && no + 1 < idx->n_cps && !go_on) {
		/* a reader going forward wants the next chunk's input soon:
		 * its reading overlaps this chunk's inflating (a stream going
		 * on has asked for it already, see stream_prefetch) */
		blob_prefetch(idx, input_end(idx, (size_t)no), input_end(idx, (size_t)no + 1), false);
	}
	int r = 0;
	if (st) {
		__atomic_store_n(&st->next, no + 1, __ATOMIC_RELAXED);
		if (!go_on || stream_go_on(idx, st, cp, in_end, out, (size_t)out_len) < 0)
			r = decode_from(idx, st, rno, (size_t)no, in_start, in_end, out, (size_t)out_len, err);
		pthread_mutex_unlock(&st->lock);
	} else {
		r = decode_from(idx, NULL, rno, (size_t)no, in_start, in_end, out, (size_t)out_len, err);
	}
	if (r < 0)
		return -1;
	if (!cache)
		outd->data = steal_pointer(&own);
	outd->len = out_len;
	return 0;
}

/* Decode chunk no into out from its resumable checkpoint rno, the input
 * [in_start, in_end); the inflate becomes st's when st is set. */
static int decode_from(struct ocitree_layer_index *idx, struct seek_stream *st, size_t rno, size_t no,
		       uint64_t in_start, uint64_t in_end, unsigned char *out, size_t out_len,
		       struct ocitree_error **err)
{
	const struct idx_checkpoint *cp = &idx->cps[no], *rp = &idx->cps[rno];
	__atomic_fetch_add(&layer_seek_restores, 1, __ATOMIC_RELAXED);
	if (st && st->ok) {
		stream_release(idx, st, true);
		inflater_end(&st->f);
	}
	if (st)
		st->ok = false;
	size_t in_len = (size_t)(in_end - in_start);
	_cleanup_free_ unsigned char *own_in = NULL;
	const unsigned char *in;
	if (idx->blob_map) {
		blob_prefetch(idx, in_start, in_end, true);
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
	const unsigned char *w = win;
	int r = 0;
	if (rp->kind == CP_ISAL) {
		w = window_bytes(idx, rp);
		win_len = rp->window_len;
	} else {
		r = window_of(idx, rp, win, &win_len, err);
	}
	struct inflater local = {0};
	struct inflater *f = st ? &st->f : &local;
	uint64_t skip = cp->out_off - rp->out_off;
	size_t used = 0;
	if (r == 0) {
		enum inflate_engine engine = rp->kind == CP_ISAL || layer_index_use_isal() ? INFLATE_ISAL : INFLATE_ZLIB;
		r = inflate_chunk(f, engine, rp, in, in_len, w, win_len, skip, out, out_len, &used, err);
		/* a raw resume that crosses the end of a gzip member
		 * (concatenated gzip files), which zlib handles */
		if (r == 1) {
			inflater_end(f);
			r = inflate_chunk(f, INFLATE_ZLIB, rp, in, in_len, w, win_len, skip, out, out_len, &used,
					  err);
		}
		if (r == 0 && layer_index_crc(0, out, out_len) != cp->chunk_crc)
			r = ocitree_error_setk(err, OCITREE_ERROR_INVALID,
					       "blob %s: data at offset %ju does not match its checksum", idx->digest,
					       (uintmax_t)cp->in_off);
		else if (r < 0)
			r = ocitree_error_prefix(err, "blob %s at offset %ju", idx->digest, (uintmax_t)rp->in_off);
	}
	if (r == 0 && st) {
		/* what it read stays mapped while the stream may go on */
		st->ok = true;
		st->in_pos = in_start + used;
		st->kept = in_start;
		st->populated = in_end;
		st->asked = no + 1 < idx->n_cps ? input_end(idx, no + 1) : in_end;
		st->window = STREAM_AHEAD_FIRST;
		stream_release(idx, st, false);
	} else if (idx->blob_map) {
		blob_release(idx, in_start, in_end);
	}
	if (r != 0 || !st) {
		/* started, or not (then nothing is held but its state) */
		inflater_end(f);
	}
	return r == 0 ? 0 : -1;
}
