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

#include "inflater.h"
#include "layer-index-internal.h"
#include "ring.h"
#include "tar-scan.h"

uint32_t layer_index_checkpoint_span = CHECKPOINT_SPAN;

struct builder {
	struct tar_scan tar;
	struct ocitree_hasher *diff_hasher; /* NULL when no diff_id is checked */
	uint64_t out;                       /* uncompressed bytes so far */
	/* gzip */
	struct idx_checkpoint *cps;
	size_t n_cps, cap_cps;
	struct buf windows;
	void *pack_scratch; /* layer_index_pack_window()'s */
	uint32_t chunk_crc;
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
 * inflating it: a second thread does it, fed through a ring of output
 * buffers, so that one big layer uses both cores. */
#define PIPE_SLOTS 8
struct hash_pipe {
	pthread_t thread;
	struct ring ring;
	struct ocitree_hasher *hasher;   /* used by the thread only */
	unsigned char *bufs[PIPE_SLOTS]; /* contents owned by whoever holds the slot */
	size_t len[PIPE_SLOTS];
	size_t cur; /* producer: the slot pipe_buffer() gave */
};

static void *pipe_thread(void *arg)
{
	struct hash_pipe *p = arg;
	size_t k;
	while (ring_take(&p->ring, &k, NULL) > 0) {
		ocitree_hasher_update(p->hasher, p->bufs[k], p->len[k]);
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

/* NULL when no thread can be started: then the caller hashes. */
static struct hash_pipe *pipe_start(struct ocitree_hasher *h, size_t buf_size)
{
	struct hash_pipe *p = xcalloc(1, sizeof(*p));
	ring_init(&p->ring, PIPE_SLOTS);
	p->hasher = h;
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

/* Hand the buffer pipe_buffer() gave, holding len bytes, to the hasher. */
static void pipe_submit(struct hash_pipe *p, size_t len)
{
	p->len[p->cur] = len;
	ring_push(&p->ring);
}

/* Wait for the hasher to finish everything queued and stop it. */
static void pipe_stop(struct hash_pipe *p)
{
	if (!p)
		return;
	ring_close(&p->ring, NULL);
	pthread_join(p->thread, NULL);
	pipe_free(p);
}

static int builder_output(struct builder *b, const unsigned char *p, size_t n, struct ocitree_error **err)
{
	if (!n)
		return 0;
	if (b->diff_hasher && !b->pipe)
		ocitree_hasher_update(b->diff_hasher, p, n);
	b->chunk_crc = layer_index_crc(b->chunk_crc, p, n);
	b->out += n;
	if (b->tar_fd >= 0 && write_all(b->tar_fd, p, n) < 0)
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

static void add_checkpoint(struct builder *b, uint64_t in_off, int bits, enum cp_kind kind, const unsigned char *win,
			   size_t win_len)
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
	cp->window_off = b->windows.len;
	if (win_len)
		layer_index_pack_window(&b->windows, win, win_len, &cp->window_len, &cp->window_crc,
					&b->pack_scratch);
}

#define IN_CHUNK (256u << 10)
#define OUT_CHUNK (256u << 10)

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

/* The pass over a compressed blob.  Gzip gets checkpoints, one at least
 * every layer_index_checkpoint_span of output:
 *
 * - with zlib, at the first deflate block boundary (INFLATE_BLOCKS) past
 *   the span, with the 32 KiB of output before it as the window;
 * - with ISA-L, which cannot stop at block boundaries but inflates 3-4x
 *   faster, a copy of its whole inflate state at exactly every span of
 *   output (the output of a step ends there);
 * - at a gzip member that starts a quarter span or more after the last
 *   checkpoint: a new member refers to nothing before it.
 *
 * zlib keeps its window in front of the output, which is hashed here;
 * otherwise the output goes through the hash pipe's buffers, hashed by its
 * thread (zstd inflates about as fast as SHA-256 hashes, ISA-L faster). */
static int build_stream(struct builder *b, struct ocitree_blob_reader *r, enum ocitree_compression comp, bool isal,
			struct ocitree_error **err)
{
	bool gzip = comp == OCITREE_COMPRESSION_GZIP;
	bool zlib_cps = gzip && !isal, isal_cps = gzip && isal;
	/* zeroed, as ISA-L's buffers were (memcheck cannot follow its SIMD
	 * code) */
	_cleanup_free_ unsigned char *in = xcalloc(1, IN_CHUNK);
	_cleanup_free_ unsigned char *own_out = NULL;
	size_t kept = 0; /* zlib: valid bytes in own_out, the window and new output */
	if (zlib_cps) {
		own_out = xmalloc(WINDOW_SIZE + OUT_CHUNK);
	} else {
		if (b->diff_hasher)
			b->pipe = pipe_start(b->diff_hasher, OUT_CHUNK);
		if (!b->pipe)
			own_out = xcalloc(1, OUT_CHUNK);
	}
	struct inflater f;
	inflater_init(&f, comp, isal ? INFLATE_ISAL : INFLATE_ZLIB, INFLATE_MEMBERS | (zlib_cps ? INFLATE_BLOCKS : 0));
	b->isal = isal_cps;
	uint64_t span = layer_index_checkpoint_span;
	uint64_t in_total = 0, next_cp = span, last_cp_out = 0;
	struct inflate_io io = {0};
	if (gzip)
		add_checkpoint(b, 0, 0, CP_MEMBER, NULL, 0);
	int ret;
	for (;;) {
		if (!io.in_len && !io.eof) {
			ssize_t n = ocitree_blob_reader_read(r, in, IN_CHUNK, err);
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
		io.out = out;
		int ev = inflater_step(&f, &io, err);
		if (ev < 0) {
			ret = pass_error(&f, comp, in_total - io.in_len, err);
			break;
		}
		size_t produced = (size_t)(io.out - out);
		if (builder_output(b, out, produced, err) < 0) {
			ret = -1;
			break;
		}
		if (b->pipe && produced)
			pipe_submit(b->pipe, produced);
		kept += produced;
		if (ev == INFLATE_END) {
			ret = 0;
			break;
		}
		uint64_t at = in_total - io.in_len;
		if (ev == INFLATE_MEMBER && b->out - last_cp_out >= span / 4) {
			/* no window needed, no bits */
			add_checkpoint(b, at, 0, CP_MEMBER, NULL, 0);
			last_cp_out = b->out;
			next_cp = b->out + span;
		} else if (ev == INFLATE_BLOCK && b->out - last_cp_out >= span) {
			size_t wl = kept < WINDOW_SIZE ? kept : WINDOW_SIZE;
			add_checkpoint(b, at, (int)f.bits, CP_ZLIB, own_out + kept - wl, wl);
			last_cp_out = b->out;
		}
		if (isal_cps && b->out == next_cp) {
			/* a state between members has nothing to resume */
			if (inflater_in_member(&f)) {
				size_t len;
				const unsigned char *st = inflater_state_snapshot(&f, &len);
				add_checkpoint(b, at, 0, CP_ISAL, st, len);
				last_cp_out = b->out;
			}
			next_cp += span;
		}
	}
	inflater_end(&f);
	if (ret < 0 || !gzip)
		return ret;
	/* an ISA-L checkpoint at the very end has nothing to resume */
	while (isal_cps && b->n_cps > 1 && b->cps[b->n_cps - 1].out_off == b->out)
		b->n_cps--;
	b->cps[b->n_cps - 1].chunk_crc = b->chunk_crc;
	return 0;
}

static int build_none(struct builder *b, struct ocitree_blob_reader *r, struct ocitree_error **err)
{
	_cleanup_free_ unsigned char *in = xmalloc(IN_CHUNK);
	for (;;) {
		ssize_t n = ocitree_blob_reader_read(r, in, IN_CHUNK, err);
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
	buf_free(&b->windows);
	free(b->pack_scratch);
	if (b->tar_fd >= 0)
		close(b->tar_fd);
}

struct ocitree_layer_index *layer_index_build(struct ocitree_layout *l, const struct ocitree_descriptor *d,
					 enum ocitree_compression comp, const char *diff_id,
					 const struct ocitree_layer_index_opts *opts, int idx_dirfd,
					 struct ocitree_error **err)
{
	_cleanup_free_ char *alg = layer_index_digest_alg(d->digest);
	const char *hex = ocitree_digest_hex(d->digest);
	struct builder b = {.opts = opts};
	b.tar_fd = -1;
	tar_scan_init(&b.tar);
	b.chunk_crc = (uint32_t)crc32(0, NULL, 0);
	if (diff_id && comp != OCITREE_COMPRESSION_NONE) {
		_cleanup_free_ char *dalg = layer_index_digest_alg(diff_id);
		b.diff_hasher = ocitree_hasher_new(dalg);
	}
	_cleanup_close_ int tar_dirfd = -1;
	_cleanup_free_ char *tar_tmp = NULL;
	_cleanup_free_ char *tar_path = NULL;
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
	if (comp == OCITREE_COMPRESSION_NONE)
		r = build_none(&b, rd, err);
	else
		r = build_stream(&b, rd, comp, comp == OCITREE_COMPRESSION_GZIP && layer_index_use_isal(), err);
	/* read to the verified end even if the tar ended early; and when the
	 * stream was bad, a digest mismatch is the better explanation */
	if (r == 0 || (err && *err && (*err)->kind == OCITREE_ERROR_INVALID)) {
		_cleanup_free_ char *tmp = xmalloc(IN_CHUNK);
		struct ocitree_error *rerr = NULL;
		ssize_t n;
		while ((n = ocitree_blob_reader_read(rd, tmp, IN_CHUNK, &rerr)) > 0)
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
	ocitree_blob_reader_free(rd);
	if (r == 0)
		r = tar_scan_finish(&b.tar, err);
	/* the hasher thread must have seen everything before the digest */
	pipe_stop(b.pipe);
	b.pipe = NULL;
	if (r == 0 && b.diff_hasher) {
		char got[OCITREE_DIGEST_MAX];
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
	_cleanup_close_ int idx_fd = -1;
	if (!opts->no_write && idx_dirfd >= 0) {
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
		idx->owned[0] = layer_index_image_flatten(&img);
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
	return r == 0 ? idx : NULL;
}
