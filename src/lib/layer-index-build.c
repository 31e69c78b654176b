/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The index pass: one sequential, verified read of a layer blob that
 * decompresses it, scans the tar for entries and, for gzip, places
 * checkpoints (see layer-index-file.c for what they hold); for zstd the
 * uncompressed tar goes to the cache instead.
 */
#include "config.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <zlib.h>

#include "bundle-internal.h"
#include "inflater.h"
#include "layer-index-internal.h"
#include "layout-internal.h"
#include "ring.h"
#include "sha256-pair.h"
#include "tar-scan.h"

uint32_t layer_index_checkpoint_span = CHECKPOINT_SPAN;

/* The blob's digest and the diff_id in one pass of two chains of the SHA
 * extensions (sha256-pair.h), where both are sha256: on the hash pipe's
 * thread, beside the uncompressed stream, the blob's bytes as far as the
 * inflater has consumed them, read again (from the page cache) into a
 * buffer of the thread's, through a file description of its own: reads a
 * megabyte behind the reader's leave its read-ahead state alone (a cold
 * mount of slim took 0.95 of the time of reading through the reader's).
 * Hashed apart, the two digests took 0.71 s of CPU of a cold mount of
 * slim, paired 0.55 s (perf).  Read from a mapping of the blob instead,
 * the pair was as slow as two passes (4 KiB pages walked in two streams);
 * and the inflater reading the mapping instead of its buffers inflated a
 * quarter slower. */
struct pair_hash {
	struct sha256p diff, blob;
	int fd;             /* the blob again, a file description of its own */
	unsigned char *buf; /* PAIR_BUF bytes: the blob at start, len of them */
	uint64_t start;
	size_t len;
	uint64_t hashed; /* blob bytes in blob */
	bool failed;     /* a read failed: the rest is left to
			  * blob_reader_check_outside(), which says why */
};

#define PAIR_BUF (1u << 20)

/* n bytes of the stream, and beside them blob bytes up to avail. */
static void pair_update(struct pair_hash *ph, const void *p, size_t n, uint64_t avail)
{
	uint64_t h = ph->hashed;
	if (ph->failed || avail <= h) {
		sha256p_update(&ph->diff, p, n);
		return;
	}
	/* what is hashed goes, the rest moves to the front, and the buffer
	 * is filled up to what the inflater has consumed */
	size_t done = (size_t)(h - ph->start);
	memmove(ph->buf, ph->buf + done, ph->len - done);
	ph->len -= done;
	ph->start = h;
	uint64_t end = avail - h < PAIR_BUF ? avail : h + PAIR_BUF;
	while (ph->start + ph->len < end) {
		ssize_t k = pread(ph->fd, ph->buf + ph->len, (size_t)(end - ph->start - ph->len),
				  (off_t)(ph->start + ph->len));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			ph->failed = true;
			break;
		}
		ph->len += (size_t)k;
	}
	size_t took = sha256p_update_and(&ph->diff, p, n, &ph->blob, ph->buf, ph->len);
	/* stored blocks inflate as fast as they come: the blob's bytes then
	 * outrun the stream's, and are hashed alone rather than at the end */
	if (ph->len - took > PAIR_BUF / 2) {
		size_t k = (ph->len - took - PAIR_BUF / 4) & ~(size_t)63;
		sha256p_update(&ph->blob, ph->buf + took, k);
		took += k;
	}
	ph->hashed = h + took;
}

/* A window packed on the hash pipe's thread, for checkpoint cp. */
struct packed {
	size_t cp;
	uint32_t len, crc;
};

struct builder {
	struct tar_scan tar;
	struct ocitree_hasher *diff_hasher; /* NULL when no diff_id is checked */
	struct pair_hash *pair;             /* or the diff_id hashed there */
	uint64_t consumed;                  /* pair: blob bytes the inflater has consumed */
	uint64_t out;                       /* uncompressed bytes so far */
	/* gzip */
	struct idx_checkpoint *cps;
	size_t n_cps, cap_cps;
	struct buf windows; /* all of them, or (win_fd) the one being packed */
	int win_fd;         /* the windows go to this unnamed file, or -1 */
	uint64_t win_len;   /* bytes in win_fd */
	void *pack_scratch; /* layer_index_pack_window()'s */
	uint32_t chunk_crc;
	bool crc; /* chunk_crc is kept (gzip: the chunks are checked by it) */
	/* ISA-L states packed by the hash pipe's thread (windows, win_fd,
	 * win_len and pack_scratch are its own while it runs): */
	struct packed *packed; /* per checkpoint packed there, in order */
	size_t n_packed, cap_packed;
	int pack_errno; /* the thread's first error reading the windows back */
	bool pack_in_pipe; /* the states go there (ISA-L with a hash pipe) */
	/* zstd: the tar cache file being written */
	int tar_fd;
	bool isal; /* gzip checkpoints are ISA-L states */
	struct hash_pipe *pipe; /* when set, diff_hasher runs in its thread */
	const struct ocitree_layer_index_opts *opts;
	uint64_t told; /* out when progress was last told */
};

/* Progress is told every this many uncompressed bytes. */
#define PROGRESS_SPAN (4u << 20)

/* Hashing the uncompressed stream (for the diff_id) costs half as much as
 * inflating it, and writing a zstd layer's tar to the cache about as much
 * again: a second thread does both, fed through a ring of output buffers,
 * so that one big layer uses both cores. */
#define PIPE_SLOTS 8
/* The tar's writeback is started every this many bytes, so that the
 * fdatasync at the end finds little left to write. */
#define WRITEBACK_SPAN (8u << 20)
struct hash_pipe {
	pthread_t thread;
	struct ring ring;
	struct ocitree_hasher *hasher;   /* used by the thread only; may be NULL */
	struct pair_hash *pair;          /* likewise, instead of hasher */
	uint64_t bavail[PIPE_SLOTS];     /* pair: the blob bytes consumed by then */
	/* a slot holds output, or (state_cp[k] != SIZE_MAX) the ISA-L state
	 * of that checkpoint, to pack into the windows of b */
	size_t state_cp[PIPE_SLOTS];
	struct builder *b;
	int fd;                          /* the thread writes the stream there, or -1 */
	int write_errno;                 /* the thread's first write error (read after the join) */
	uint64_t written, synced;        /* the thread's */
	unsigned char *bufs[PIPE_SLOTS]; /* contents owned by whoever holds the slot */
	size_t len[PIPE_SLOTS];
	size_t cur; /* producer: the slot pipe_buffer() gave */
};

static void pack_state(struct builder *b, size_t cp, const unsigned char *st, size_t len);

static void *pipe_thread(void *arg)
{
	struct hash_pipe *p = arg;
	size_t k;
	while (ring_take(&p->ring, &k, NULL) > 0) {
		if (p->state_cp[k] != SIZE_MAX) {
			pack_state(p->b, p->state_cp[k], p->bufs[k], p->len[k]);
			ring_release(&p->ring);
			continue;
		}
		if (p->pair)
			pair_update(p->pair, p->bufs[k], p->len[k], p->bavail[k]);
		else if (p->hasher)
			ocitree_hasher_update(p->hasher, p->bufs[k], p->len[k]);
		if (p->fd >= 0 && !p->write_errno) {
			if (write_all(p->fd, p->bufs[k], p->len[k]) < 0)
				p->write_errno = errno ? errno : EIO;
			p->written += p->len[k];
#ifdef SYNC_FILE_RANGE_WRITE
			if (p->written - p->synced >= WRITEBACK_SPAN) {
				(void)sync_file_range(p->fd, (off_t)p->synced, (off_t)(p->written - p->synced),
						      SYNC_FILE_RANGE_WRITE);
				p->synced = p->written;
			}
#endif
		}
		ring_release(&p->ring);
	}
	return NULL;
}

static void pipe_free(struct hash_pipe *p)
{
	for (size_t i = 0; i < PIPE_SLOTS; i++)
		free(p->bufs[i]);
	ring_destroy(&p->ring);
	free(p);
}

/* NULL when no thread can be started: then the caller hashes and writes. */
static struct hash_pipe *pipe_start(struct builder *b, struct ocitree_hasher *h, struct pair_hash *pair, int fd,
				     size_t buf_size)
{
	struct hash_pipe *p = xcalloc(1, sizeof(*p));
	ring_init(&p->ring, PIPE_SLOTS);
	p->b = b;
	p->hasher = h;
	p->pair = pair;
	p->fd = fd;
	for (size_t i = 0; i < PIPE_SLOTS; i++)
		p->bufs[i] = xcalloc(1, buf_size);
	if (thread_create(&p->thread, NULL, pipe_thread, p) != 0) {
		pipe_free(p);
		return NULL;
	}
	return p;
}

/* The next buffer to fill, once the hasher is done with it. */
static unsigned char *pipe_buffer(struct hash_pipe *p)
{
	/* the ring is never cancelled: the hasher takes everything */
	p->cur = (size_t)ring_acquire(&p->ring);
	return p->bufs[p->cur];
}

/* Hand the buffer pipe_buffer() gave, holding len bytes, to the hasher
 * (with the blob bytes consumed so far, for a pair). */
static void pipe_submit(struct hash_pipe *p, size_t len, uint64_t bavail)
{
	p->len[p->cur] = len;
	p->bavail[p->cur] = bavail;
	p->state_cp[p->cur] = SIZE_MAX;
	ring_push(&p->ring);
}

/* Wait for the thread to finish everything queued and stop it; its write
 * error, if any, is returned as an errno (else 0). */
static int pipe_stop(struct hash_pipe *p)
{
	if (!p)
		return 0;
	ring_close(&p->ring, NULL);
	pthread_join(p->thread, NULL);
	int e = p->write_errno;
	pipe_free(p);
	return e;
}

#define IN_CHUNK (256u << 10)
#define OUT_CHUNK (256u << 10)

/* The compressed blob, read and hashed (its digest) ahead of the inflater
 * by a thread of its own when one can be started: on 2 cores the inflater
 * is the pass's critical path, and reading plus SHA-256 was a tenth of it. */
#define READ_SLOTS 4
struct source {
	struct ocitree_blob_reader *rd;
	unsigned char *buf; /* without a thread: the one input buffer */
	/* with a thread: */
	bool threaded;
	pthread_t thread;
	struct ring ring;
	unsigned char *bufs[READ_SLOTS];
	size_t len[READ_SLOTS];
	bool held; /* the consumer holds the oldest slot taken */
};

static void *source_thread(void *arg)
{
	struct source *s = arg;
	for (;;) {
		ssize_t k = ring_acquire(&s->ring);
		if (k < 0)
			return NULL; /* the consumer gave up */
		struct ocitree_error *e = NULL;
		ssize_t n = ocitree_blob_reader_read(s->rd, s->bufs[k], IN_CHUNK, &e);
		if (n <= 0) {
			/* the end, verified, or why not */
			ring_close(&s->ring, n < 0 ? e : NULL);
			return NULL;
		}
		s->len[k] = (size_t)n;
		ring_push(&s->ring);
	}
}

static void source_init(struct source *s, struct ocitree_blob_reader *rd, bool thread)
{
	memset(s, 0, sizeof(*s));
	s->rd = rd;
	if (thread) {
		ring_init(&s->ring, READ_SLOTS);
		/* zeroed, as ISA-L's buffers were (memcheck cannot follow its
		 * SIMD code) */
		for (size_t i = 0; i < READ_SLOTS; i++)
			s->bufs[i] = xcalloc(1, IN_CHUNK);
		if (thread_create(&s->thread, NULL, source_thread, s) == 0) {
			s->threaded = true;
			return;
		}
		for (size_t i = 0; i < READ_SLOTS; i++)
			free(s->bufs[i]);
		ring_destroy(&s->ring);
		memset(s->bufs, 0, sizeof(s->bufs));
	}
	s->buf = xcalloc(1, IN_CHUNK);
}

/* The next bytes of the blob at *p (valid until the next call): their
 * count, 0 at its verified end, -1 with *err. */
static ssize_t source_read(struct source *s, const unsigned char **p, struct ocitree_error **err)
{
	if (!s->threaded) {
		*p = s->buf;
		return ocitree_blob_reader_read(s->rd, s->buf, IN_CHUNK, err);
	}
	size_t k;
	int r = ring_next(&s->ring, &s->held, &k, err);
	if (r <= 0)
		return r;
	*p = s->bufs[k];
	return (ssize_t)s->len[k];
}

/* Stop the thread (wherever it is) and free what the source holds; the
 * blob reader stays the caller's. */
static void source_end(struct source *s)
{
	if (s->threaded) {
		ring_cancel(&s->ring);
		pthread_join(s->thread, NULL);
		ring_destroy(&s->ring);
		for (size_t i = 0; i < READ_SLOTS; i++)
			free(s->bufs[i]);
	}
	free(s->buf);
	memset(s, 0, sizeof(*s));
}

static int builder_output(struct builder *b, const unsigned char *p, size_t n, struct ocitree_error **err)
{
	if (!n)
		return 0;
	if (b->diff_hasher && !b->pipe)
		ocitree_hasher_update(b->diff_hasher, p, n);
	if (b->pair && !b->pipe)
		pair_update(b->pair, p, n, b->consumed);
	if (b->crc)
		b->chunk_crc = layer_index_crc(b->chunk_crc, p, n);
	b->out += n;
	if (b->tar_fd >= 0 && !b->pipe && write_all(b->tar_fd, p, n) < 0)
		return ocitree_error_set(err, errno, "write uncompressed layer cache");
	if (tar_scan_feed(&b->tar, p, n, err) < 0)
		return -1;
	if (b->opts->progress && b->out - b->told >= PROGRESS_SPAN) {
		b->told = b->out;
		struct ocitree_progress pr = {.phase = "index", .bytes = b->out, .entries = b->tar.n_entries};
		b->opts->progress(&pr, b->opts->progress_data);
	}
	/* what follows the end of the archive is not looked at, but it is
	 * decompressed (and, for zstd, written to the cache): a little padding
	 * is normal, more is a bomb, refused as unpack refuses it */
	if (b->tar.ended && b->out - b->tar.end_pos > OCITREE_LAYER_MAX_TRAILER)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
					  "more than %u bytes of data after the end of the archive",
					  OCITREE_LAYER_MAX_TRAILER);
	return 0;
}

/* Read len bytes at offset 0 of fd into p. */
static int spill_read(int fd, void *p, uint64_t len)
{
	uint64_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)p + done, (size_t)(len - done), (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		done += (uint64_t)n;
	}
	return 0;
}

/* Pack a window (or ISA-L state) at the end of b's windows: *off, *len
 * and *crc get where it is.  An errno when the windows written so far
 * cannot be read back (after the cache filled up), else 0. */
static int pack_window(struct builder *b, const unsigned char *win, size_t win_len, uint64_t *off, uint32_t *len,
		       uint32_t *crc)
{
	if (b->win_fd >= 0)
		buf_reset(&b->windows);
	*off = b->win_fd >= 0 ? b->win_len : b->windows.len;
	layer_index_pack_window(&b->windows, win, win_len, len, crc, &b->pack_scratch);
	if (b->win_fd < 0)
		return 0;
	if (write_all(b->win_fd, b->windows.data, b->windows.len) == 0) {
		b->win_len += b->windows.len;
		return 0;
	}
	/* a full cache: the windows so far come back to memory, where the
	 * rest go (the index is written elsewhere or not at all) */
	struct buf all = BUF_INIT;
	buf_reserve(&all, b->win_len + b->windows.len);
	if (spill_read(b->win_fd, all.data, b->win_len) < 0) {
		int e = errno ? errno : EIO;
		buf_free(&all);
		return e;
	}
	memcpy(all.data + b->win_len, b->windows.data, b->windows.len);
	all.len = b->win_len + b->windows.len;
	buf_free(&b->windows);
	b->windows = all;
	close(b->win_fd);
	b->win_fd = -1;
	return 0;
}

/* On the hash pipe's thread: checkpoint cp's state, packed as
 * add_checkpoint() would have (fix_packed() puts it in place). */
static void pack_state(struct builder *b, size_t cp, const unsigned char *st, size_t len)
{
	GROW(b->packed, b->cap_packed, b->n_packed + 1);
	struct packed *pk = &b->packed[b->n_packed++];
	pk->cp = cp;
	uint64_t off;
	int e = pack_window(b, st, len, &off, &pk->len, &pk->crc);
	if (e && !b->pack_errno)
		b->pack_errno = e;
}

/* Once the pipe has stopped: the windows it packed into their checkpoints,
 * and every checkpoint's window_off as add_checkpoint() sets it (the
 * windows before it, in order). */
static int fix_packed(struct builder *b, struct ocitree_error **err)
{
	if (!b->pack_in_pipe)
		return 0;
	if (b->pack_errno)
		return ocitree_error_set(err, b->pack_errno, "read back index windows");
	uint64_t off = 0;
	size_t j = 0;
	for (size_t i = 0; i < b->n_cps; i++) {
		struct idx_checkpoint *cp = &b->cps[i];
		cp->window_off = off;
		if (j < b->n_packed && b->packed[j].cp == i) {
			cp->window_len = b->packed[j].len;
			cp->window_crc = b->packed[j].crc;
			j++;
		}
		off += cp->window_len;
	}
	return 0;
}

static int add_checkpoint(struct builder *b, uint64_t in_off, int bits, enum cp_kind kind, const unsigned char *win,
			  size_t win_len, struct ocitree_error **err)
{
	if (b->n_cps)
		b->cps[b->n_cps - 1].chunk_crc = b->chunk_crc;
	b->chunk_crc = 0;
	GROW(b->cps, b->cap_cps, b->n_cps + 1);
	struct idx_checkpoint *cp = &b->cps[b->n_cps++];
	memset(cp, 0, sizeof(*cp));
	cp->out_off = b->out;
	cp->in_off = in_off;
	cp->bits = (uint8_t)bits;
	cp->kind = (uint8_t)kind;
	if (b->pack_in_pipe) {
		/* packing a state costs a fifth of inflating its chunks: the
		 * hash pipe's thread does it, in turn with the output (the
		 * inflater, alone on the largest layer at the end, is the
		 * pass's critical path); the windows are its own until it
		 * stops, and fix_packed() sets every window_off then */
		if (!win_len)
			return 0;
		if (win_len > OUT_CHUNK)
			return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "ISA-L state of %zu bytes", win_len);
		unsigned char *slot = pipe_buffer(b->pipe);
		memcpy(slot, win, win_len);
		b->pipe->len[b->pipe->cur] = win_len;
		b->pipe->state_cp[b->pipe->cur] = b->n_cps - 1;
		ring_push(&b->pipe->ring);
		return 0;
	}
	uint64_t off;
	if (!win_len) {
		if (b->win_fd >= 0)
			buf_reset(&b->windows);
		cp->window_off = b->win_fd >= 0 ? b->win_len : b->windows.len;
		return 0;
	}
	int e = pack_window(b, win, win_len, &off, &cp->window_len, &cp->window_crc);
	cp->window_off = off;
	if (e)
		return ocitree_error_set(err, e, "read back index windows");
	return 0;
}

/* The index pass words a bad stream as it did before it shared the inflater
 * with unpack (scripts and tests match these). */
static int pass_error(const struct inflater *f, enum ocitree_compression comp, uint64_t at, struct ocitree_error **err)
{
	const char *name = ocitree_compression_name(comp);
	switch (f->failure) {
	case INFLATE_FAIL_CORRUPT:
		if (comp == OCITREE_COMPRESSION_GZIP)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "corrupt gzip stream at offset %ju: %s",
						  (uintmax_t)at, f->detail);
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "corrupt %s stream: %s", name, f->detail);
	case INFLATE_FAIL_TRUNCATED:
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s stream is truncated", name);
	case INFLATE_FAIL_EMPTY:
		if (comp == OCITREE_COMPRESSION_GZIP)
			return -1; /* "empty gzip stream" */
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s stream is truncated", name);
	default:
		return -1; /* garbage after the padding, not gzip: as worded */
	}
}

/* The pass over a compressed blob.  Gzip gets checkpoints, one every
 * layer_index_checkpoint_span of output (a step's output ends there): a
 * first read inflates and checks no more than that after its restore point.
 * Restore points, where inflating resumes, are every RESTORE_CHUNKS spans:
 *
 * - with zlib, at the first deflate block boundary (INFLATE_BLOCKS) a span
 *   or more after the last one, with the 32 KiB of output before it as the
 *   window: such a window costs little to pack, so every checkpoint is a
 *   restore point (and a chunk may run past a span to its block's end);
 * - with ISA-L, which cannot stop at block boundaries but inflates 3-4x
 *   faster, a copy of its whole inflate state at exactly every
 *   RESTORE_CHUNKS spans of output;
 * - at a gzip member that starts a quarter span or more after the last
 *   checkpoint: a new member refers to nothing before it.
 *
 * The checkpoints between them (CP_CONT) hold no state: packing one costs
 * as much as a quarter of a chunk's inflating, so a chunk after one is
 * inflated from the restore point before (or from the chunk before, by
 * a reader going forward: see layer-seek.c).
 *
 * zlib keeps its window in front of the output, which is hashed here;
 * otherwise the output goes through the hash pipe's buffers, hashed (and
 * for zstd written to the cache) by its thread (zstd inflates about as fast
 * as SHA-256 hashes, ISA-L faster). */
static int build_stream(struct builder *b, struct source *src, enum ocitree_compression comp, bool isal,
			struct ocitree_error **err)
{
	bool gzip = comp == OCITREE_COMPRESSION_GZIP;
	bool zlib_cps = gzip && !isal, isal_cps = gzip && isal;
	/* zeroed, as ISA-L's buffers were (memcheck cannot follow its SIMD
	 * code) */
	_cleanup_free_ unsigned char *own_out = NULL;
	size_t kept = 0; /* zlib: valid bytes in own_out, the window and new output */
	if (zlib_cps) {
		own_out = xmalloc(WINDOW_SIZE + OUT_CHUNK);
	} else {
		if (b->diff_hasher || b->pair || b->tar_fd >= 0)
			b->pipe = pipe_start(b, b->diff_hasher, b->pair, b->tar_fd, OUT_CHUNK);
		if (!b->pipe)
			own_out = xcalloc(1, OUT_CHUNK);
	}
	struct inflater f;
	inflater_init(&f, comp, isal ? INFLATE_ISAL : INFLATE_ZLIB, INFLATE_MEMBERS | (zlib_cps ? INFLATE_BLOCKS : 0));
	b->isal = isal_cps;
	b->pack_in_pipe = isal_cps && b->pipe;
	uint64_t span = layer_index_checkpoint_span, rspan = span * RESTORE_CHUNKS;
	/* next_cp: the next ISA-L state; next_cont: the next checkpoint of any
	 * kind; last_cp_out: the last checkpoint, last_rp_out: the last
	 * restore point */
	uint64_t in_total = 0, next_cp = rspan, next_cont = span, last_cp_out = 0, last_rp_out = 0;
	struct inflate_io io = {0};
	int ret = 0;
	if (gzip)
		ret = add_checkpoint(b, 0, 0, CP_MEMBER, NULL, 0, err);
	while (ret == 0) {
		if (!io.in_len && !io.eof) {
			const unsigned char *in;
			ssize_t n = source_read(src, &in, err);
			if (n < 0) {
				ret = -1;
				break;
			}
			io.in = in;
			io.in_len = (size_t)n;
			io.eof = n == 0;
			in_total += (uint64_t)n;
		}
		unsigned char *out;
		if (zlib_cps) {
			if (kept == WINDOW_SIZE + OUT_CHUNK) {
				memmove(own_out, own_out + kept - WINDOW_SIZE, WINDOW_SIZE);
				kept = WINDOW_SIZE;
			}
			out = own_out + kept;
			io.out_len = WINDOW_SIZE + OUT_CHUNK - kept;
		} else {
			out = b->pipe ? pipe_buffer(b->pipe) : own_out;
			io.out_len = OUT_CHUNK;
			if (isal_cps && next_cp - b->out < io.out_len)
				io.out_len = (size_t)(next_cp - b->out);
		}
		if (isal_cps && next_cont - b->out < io.out_len)
			io.out_len = (size_t)(next_cont - b->out);
		io.out = out;
		int ev = inflater_step(&f, &io, err);
		if (ev < 0) {
			ret = pass_error(&f, comp, in_total - io.in_len, err);
			break;
		}
		size_t produced = (size_t)(io.out - out);
		b->consumed = in_total - io.in_len;
		if (builder_output(b, out, produced, err) < 0) {
			ret = -1;
			break;
		}
		if (b->pipe && produced)
			pipe_submit(b->pipe, produced, b->consumed);
		kept += produced;
		if (ev == INFLATE_END) {
			ret = 0;
			break;
		}
		if (!gzip)
			continue;
		uint64_t at = in_total - io.in_len;
		if (ev == INFLATE_MEMBER && b->out - last_cp_out >= span / 4) {
			/* no window needed, no bits */
			ret = add_checkpoint(b, at, 0, CP_MEMBER, NULL, 0, err);
			last_cp_out = last_rp_out = b->out;
			next_cp = b->out + rspan;
		} else if (ev == INFLATE_BLOCK && b->out - last_rp_out >= span) {
			size_t wl = kept < WINDOW_SIZE ? kept : WINDOW_SIZE;
			ret = add_checkpoint(b, at, (int)f.bits, CP_ZLIB, own_out + kept - wl, wl, err);
			last_cp_out = last_rp_out = b->out;
		}
		if (ret == 0 && isal_cps && b->out == next_cp) {
			/* a state between members has nothing to resume */
			if (inflater_in_member(&f)) {
				size_t len;
				const unsigned char *st = inflater_state_snapshot(&f, &len);
				ret = add_checkpoint(b, at, 0, CP_ISAL, st, len, err);
				last_cp_out = last_rp_out = b->out;
			}
			next_cp += rspan;
		}
		if (last_cp_out == b->out) {
			next_cont = b->out + span;
		} else if (ret == 0 && isal_cps && b->out == next_cont) {
			ret = add_checkpoint(b, at, 0, CP_CONT, NULL, 0, err);
			last_cp_out = b->out;
			next_cont += span;
		}
	}
	inflater_end(&f);
	if (ret < 0 || !gzip)
		return ret;
	b->cps[b->n_cps - 1].chunk_crc = b->chunk_crc;
	/* a checkpoint at the very end has nothing to resume or check (the
	 * chunk before it got its CRC-32 when it was added) */
	while (b->n_cps > 1 && b->cps[b->n_cps - 1].out_off == b->out)
		b->n_cps--;
	return 0;
}

static int build_none(struct builder *b, struct source *src, struct ocitree_error **err)
{
	for (;;) {
		const unsigned char *in;
		ssize_t n = source_read(src, &in, err);
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if (builder_output(b, in, (size_t)n, err) < 0)
			return -1;
	}
}

static void builder_free(struct builder *b)
{
	pipe_stop(b->pipe);
	b->pipe = NULL;
	tar_scan_free(&b->tar);
	ocitree_hasher_free(b->diff_hasher);
	free(b->cps);
	free(b->packed);
	buf_free(&b->windows);
	free(b->pack_scratch);
	if (b->win_fd >= 0)
		close(b->win_fd);
	if (b->tar_fd >= 0)
		close(b->tar_fd);
}

/* The indexes of an older format in the cache are never read again, and
 * a program of that format finds its own missing and builds them (no
 * program has both): the first index this process writes to the cache
 * removes them.  A build is rare, and seconds long already; a mount that
 * finds its indexes does not look. */
static void prune_old_indexes(const char *cache_dir)
{
	static bool done;
	if (__atomic_exchange_n(&done, true, __ATOMIC_RELAXED))
		return;
	_cleanup_close_ int fd = open(cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct ocitree_error *e = NULL;
	if (fd >= 0 && rm_rf_at(fd, IDX_DIR_OLD, &e) < 0) {
		log_warn("cannot remove the old indexes in %s: %s", cache_dir, e->msg);
		ocitree_error_free(e);
	}
}

struct ocitree_layer_index *layer_index_build(struct ocitree_layout *l, const struct ocitree_descriptor *d,
					 enum ocitree_compression comp, const char *diff_id,
					 const struct ocitree_layer_index_opts *opts, int idx_dirfd,
					 struct ocitree_error **err)
{
	_cleanup_free_ char *alg = layer_index_digest_alg(d->digest);
	const char *hex = ocitree_digest_hex(d->digest);
	struct builder b = {.opts = opts};
	struct pair_hash pair = {.fd = -1};
	b.tar_fd = -1;
	b.win_fd = -1;
	/* The windows of a gzip layer are most of its index (12 MiB of
	 * node's): they go to an unnamed file beside the index as they are
	 * made, and from there to the index file, not through memory. */
	if (comp == OCITREE_COMPRESSION_GZIP && !opts->no_write && idx_dirfd >= 0)
		b.win_fd = openat(idx_dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	tar_scan_init(&b.tar);
	b.chunk_crc = (uint32_t)crc32(0, NULL, 0);
	b.crc = comp == OCITREE_COMPRESSION_GZIP;
	if (diff_id && comp != OCITREE_COMPRESSION_NONE) {
		_cleanup_free_ char *dalg = layer_index_digest_alg(diff_id);
		b.diff_hasher = ocitree_hasher_new(dalg);
	}
	_cleanup_close_ int tar_dirfd = -1;
	_cleanup_free_ char *tar_tmp = NULL;
	_cleanup_free_ char *tar_path = NULL;
	_cleanup_close_ int idx_fd = -1; /* the index file written */
	struct ocitree_layer_index *idx = NULL;
	int r = -1;
	if (comp == OCITREE_COMPRESSION_ZSTD) {
		/* the uncompressed tar goes to the cache, even with no_write:
		 * reads are served from it */
		tar_dirfd = layer_index_cache_subdir(opts->cache_dir, TAR_DIR, alg, true, err);
		if (tar_dirfd < 0)
			goto out;
		b.tar_fd = open_tmpfile_at(tar_dirfd, "tar", &tar_tmp, err);
		if (b.tar_fd < 0)
			goto out;
		tar_path = xasprintf("%s/%s/%s/%s", opts->cache_dir, TAR_DIR, alg, hex);
	}
	struct ocitree_blob_reader *rd = ocitree_blob_reader_open(l, d->digest, d->size, err);
	if (!rd)
		goto out;
	/* the two digests paired where the stream goes through the hash
	 * pipe (not zlib's checkpoints, which hash in front of their window) */
	bool isal = comp == OCITREE_COMPRESSION_GZIP && layer_index_use_isal();
	size_t map_len;
	if (b.diff_hasher && (isal || comp == OCITREE_COMPRESSION_ZSTD) && strncmp(diff_id, "sha256:", 7) == 0 &&
	    sha256p_available()) {
		/* the same file (the same bytes as the reader's, not another
		 * blob renamed over it since) */
		struct stat s1, s2;
		pair.fd = ocitree_blob_open_fd(l, d->digest, NULL);
		if (pair.fd >= 0 && (fstat(pair.fd, &s1) < 0 || fstat(blob_reader_fd(rd), &s2) < 0 ||
				     s1.st_dev != s2.st_dev || s1.st_ino != s2.st_ino)) {
			close(pair.fd);
			pair.fd = -1;
		}
	}
	/* (mapped for blob_reader_check_outside(), which reads the end) */
	if (pair.fd >= 0 && blob_reader_hash_outside(rd, &map_len)) {
		sha256p_init(&pair.diff);
		sha256p_init(&pair.blob);
		pair.buf = xmalloc(PAIR_BUF);
		b.pair = &pair;
		ocitree_hasher_free(b.diff_hasher);
		b.diff_hasher = NULL;
	}
	struct source src;
	/* an uncompressed layer is only hashed and scanned: no thread */
	source_init(&src, rd, comp != OCITREE_COMPRESSION_NONE);
	if (comp == OCITREE_COMPRESSION_NONE)
		r = build_none(&b, &src, err);
	else
		r = build_stream(&b, &src, comp, isal, err);
	/* read to the verified end even if the tar ended early; and when the
	 * stream was bad, a digest mismatch is the better explanation */
	if (r == 0 || (err && *err && (*err)->kind == OCITREE_ERROR_INVALID)) {
		struct ocitree_error *rerr = NULL;
		const unsigned char *rest;
		ssize_t n;
		while ((n = source_read(&src, &rest, &rerr)) > 0)
			;
		if (n < 0 && (r == 0 || rerr->kind == OCITREE_ERROR_DIGEST)) {
			r = -1;
			if (err) {
				ocitree_error_free(*err);
				*err = steal_pointer(&rerr);
			}
		}
		ocitree_error_free(rerr);
	}
	source_end(&src);
	/* the pipe's thread must have seen everything before the digest,
	 * and written everything before the tar is synced */
	int pipe_errno = pipe_stop(b.pipe);
	b.pipe = NULL;
	if (b.pair && (r == 0 || (err && *err && (*err)->kind == OCITREE_ERROR_INVALID))) {
		/* the blob's end: its digest (the rest hashed there), its size */
		struct ocitree_error *rerr = NULL;
		if (blob_reader_check_outside(rd, &pair.blob, (size_t)pair.hashed, &rerr) < 0 &&
		    (r == 0 || rerr->kind == OCITREE_ERROR_DIGEST)) {
			r = -1;
			if (err) {
				ocitree_error_free(*err);
				*err = steal_pointer(&rerr);
			}
		}
		ocitree_error_free(rerr);
	}
	ocitree_blob_reader_free(rd);
	if (r == 0)
		r = tar_scan_finish(&b.tar, err);
	if (r == 0 && pipe_errno)
		r = ocitree_error_set(err, pipe_errno, "write uncompressed layer cache");
	if (r == 0)
		r = fix_packed(&b, err);
	if (r == 0 && (b.diff_hasher || b.pair)) {
		char got[OCITREE_DIGEST_MAX];
		if (b.pair)
			sha256p_final_digest(&pair.diff, got);
		else
			ocitree_hasher_final(b.diff_hasher, got);
		if (strcmp(got, diff_id) != 0)
			r = ocitree_error_setk(err, OCITREE_ERROR_DIGEST,
					       "uncompressed content does not match diff_id %s (it is %s)", diff_id,
					       got);
	}
	if (r < 0)
		goto out;
	r = -1;
	struct layer_index_parts parts = {.tar = &b.tar,
					 .cps = b.cps,
					 .n_cps = b.n_cps,
					 .windows = &b.windows,
					 .windows_fd = b.win_fd,
					 .windows_len = b.win_len,
					 .tar_size = b.out,
					 .isal = b.isal};
	struct layer_index_image img;
	layer_index_serialise(&parts, d->digest, comp, d->size >= 0 ? (uint64_t)d->size : 0, &img);
	if (b.tar_fd >= 0) {
		/* the tar has no checksum of its own: make it durable before it
		 * gets its name */
		if (fdatasync(b.tar_fd) < 0 || renameat(tar_dirfd, tar_tmp, tar_dirfd, hex) < 0) {
			ocitree_error_set(err, errno, "write uncompressed layer cache '%s'", tar_path);
			goto out;
		}
		free(tar_tmp);
		tar_tmp = NULL;
	}
	if (!opts->no_write && idx_dirfd >= 0) {
		prune_old_indexes(opts->cache_dir);
		struct ocitree_error *werr = NULL;
		if (layer_index_write_file(idx_dirfd, hex, &img, &idx_fd, &werr) < 0) {
			/* a read-only cache costs speed next time, not this mount */
			log_warn("cannot cache the index of layer %s: %s", d->digest, werr->msg);
			ocitree_error_free(werr);
		}
	}
	idx = layer_index_alloc(d->digest);
	idx->map_len = img.len;
	/* The index is served from the file just written, as a cached one
	 * is: its pages are the page cache's, and those of the windows are
	 * not even touched until a chunk needs one, where a copy in memory
	 * doubled the pass's peak.  Without a file, from a copy. */
	void *map = idx_fd >= 0 ? mmap(NULL, img.len, PROT_READ, MAP_PRIVATE, idx_fd, 0) : MAP_FAILED;
	if (map != MAP_FAILED) {
		(void)madvise(map, img.len, MADV_RANDOM);
		idx->map = map;
	} else {
		idx->owned[0] = layer_index_image_flatten(&img, err);
		if (!idx->owned[0]) {
			ocitree_layer_index_free(idx);
			idx = NULL;
			goto out;
		}
	}
	/* what the image pointed into is not needed any more */
	tar_scan_free(&b.tar);
	tar_scan_init(&b.tar);
	buf_free(&b.windows);
	if (layer_index_attach(idx, idx->map ? idx->map : idx->owned[0], idx->map_len, d->digest, err) < 0) {
		ocitree_layer_index_free(idx);
		idx = NULL;
		goto out;
	}
	if (comp == OCITREE_COMPRESSION_ZSTD) {
		idx->data_fd = steal_fd(&b.tar_fd);
	}
	r = 0;
out:
	if (tar_tmp)
		unlinkat(tar_dirfd, tar_tmp, 0);
	builder_free(&b);
	free(pair.buf);
	if (pair.fd >= 0)
		close(pair.fd);
	return r == 0 ? idx : NULL;
}
