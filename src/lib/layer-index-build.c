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
#include <zlib.h>
#include <zstd.h>
#ifdef HAVE_ISAL
#include <isa-l.h>
#include <isa-l/igzip_lib.h>
#endif

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
		layer_index_pack_window(&b->windows, win, win_len, &cp->window_len, &cp->window_crc);
}

#define IN_CHUNK (256u << 10)
#define OUT_CHUNK (256u << 10)

/* Inflate the blob with zlib, stopping at every deflate block boundary
 * (Z_BLOCK) to place a checkpoint when CHECKPOINT_SPAN of output has passed
 * since the last one.  Gzip members may be concatenated. */
static int build_gzip(struct builder *b, struct ocitree_blob_reader *r, struct ocitree_error **err)
{
	_cleanup_free_ unsigned char *in = xmalloc(IN_CHUNK);
	/* output: the last WINDOW_SIZE bytes stay in front of the new output */
	_cleanup_free_ unsigned char *out = xmalloc(WINDOW_SIZE + OUT_CHUNK);
	size_t out_len = 0; /* valid bytes in out */
	z_stream zs = {0};
	if (inflateInit2(&zs, 15 + 16) != Z_OK)
		return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "inflateInit2 failed");
	uint64_t in_total = 0; /* compressed bytes given to zlib */
	bool eof = false, member_done = false, any_member = false, padding = false;
	uint64_t last_cp_out = 0;
	int ret = 0;
	add_checkpoint(b, 0, 0, CP_MEMBER, NULL, 0);
	for (;;) {
		if (zs.avail_in == 0 && !eof) {
			ssize_t n = ocitree_blob_reader_read(r, in, IN_CHUNK, err);
			if (n < 0) {
				ret = -1;
				break;
			}
			if (n == 0)
				eof = true;
			zs.next_in = in;
			zs.avail_in = (uInt)n;
			in_total += (uint64_t)n;
		}
		if (member_done) {
			/* another gzip member may follow; trailing zeros are padding,
			 * and nothing comes after them (as unpack reads it) */
			while (zs.avail_in && *zs.next_in == 0) {
				zs.next_in++;
				zs.avail_in--;
				padding = true;
			}
			if (zs.avail_in == 0) {
				if (eof)
					break;
				continue;
			}
			if (padding) {
				ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "garbage after the gzip stream");
				break;
			}
			inflateReset(&zs);
			member_done = false;
			/* a member boundary is a natural checkpoint: no window needed
			 * (a new member cannot refer back), no bits */
			if (b->out - last_cp_out >= layer_index_checkpoint_span / 4) {
				add_checkpoint(b, in_total - zs.avail_in, 0, CP_MEMBER, NULL, 0);
				last_cp_out = b->out;
			}
		}
		if (zs.avail_in == 0 && eof) {
			ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "gzip stream is truncated");
			break;
		}
		if (out_len == WINDOW_SIZE + OUT_CHUNK) {
			memmove(out, out + out_len - WINDOW_SIZE, WINDOW_SIZE);
			out_len = WINDOW_SIZE;
		}
		zs.next_out = out + out_len;
		zs.avail_out = (uInt)(WINDOW_SIZE + OUT_CHUNK - out_len);
		int z = inflate(&zs, Z_BLOCK);
		size_t produced = (size_t)(zs.next_out - (out + out_len));
		if (z != Z_OK && z != Z_STREAM_END && z != Z_BUF_ERROR) {
			ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "corrupt gzip stream at offset %ju: %s",
						 (uintmax_t)(in_total - zs.avail_in), zs.msg ? zs.msg : "inflate error");
			break;
		}
		if (builder_output(b, out + out_len, produced, err) < 0) {
			ret = -1;
			break;
		}
		out_len += produced;
		if (z == Z_STREAM_END) {
			member_done = true;
			any_member = true;
			continue;
		}
		/* at the end of a block that is not the last one */
		if ((zs.data_type & 128) && !(zs.data_type & 64) && b->out - last_cp_out >= layer_index_checkpoint_span) {
			size_t wl = out_len < WINDOW_SIZE ? out_len : WINDOW_SIZE;
			add_checkpoint(b, in_total - zs.avail_in, zs.data_type & 7, CP_ZLIB, out + out_len - wl, wl);
			last_cp_out = b->out;
		}
	}
	inflateEnd(&zs);
	if (ret == 0 && !any_member)
		ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "empty gzip stream");
	if (ret == 0)
		b->cps[b->n_cps - 1].chunk_crc = b->chunk_crc;
	return ret;
}

#ifdef HAVE_ISAL
/* The gzip pass with ISA-L: a checkpoint (a copy of the inflate state) at
 * exactly every CHECKPOINT_SPAN of output.  Gzip members may be
 * concatenated. */
static int build_gzip_isal(struct builder *b, struct ocitree_blob_reader *r, struct ocitree_error **err)
{
	_cleanup_free_ unsigned char *in = xcalloc(1, IN_CHUNK);
	_cleanup_free_ unsigned char *own_out = NULL;
	_cleanup_free_ struct inflate_state *st = xcalloc(1, sizeof(*st)); /* zeroed: its bytes are saved in checkpoints */
	isal_inflate_init(st);
	st->crc_flag = ISAL_GZIP;
	if (b->diff_hasher)
		b->pipe = pipe_start(b->diff_hasher, OUT_CHUNK);
	if (!b->pipe)
		own_out = xcalloc(1, OUT_CHUNK);
	uint64_t span = layer_index_checkpoint_span;
	uint64_t in_total = 0, next_cp = span, last_cp_out = 0;
	bool eof = false, any = false, padding = false;
	b->isal = true;
	add_checkpoint(b, 0, 0, CP_MEMBER, NULL, 0);
	for (;;) {
		if (st->avail_in == 0 && !eof) {
			ssize_t n = ocitree_blob_reader_read(r, in, IN_CHUNK, err);
			if (n < 0)
				return -1;
			if (n == 0)
				eof = true;
			st->next_in = in;
			st->avail_in = (uint32_t)n;
			in_total += (uint64_t)n;
		}
		if (st->block_state == ISAL_BLOCK_FINISH) {
			any = true;
			/* another member may follow; trailing zeros are padding, and
			 * nothing comes after them (as unpack reads it) */
			while (st->avail_in && *st->next_in == 0) {
				st->next_in++;
				st->avail_in--;
				padding = true;
			}
			if (st->avail_in == 0) {
				if (eof)
					break;
				continue;
			}
			if (padding)
				return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "garbage after the gzip stream");
			isal_inflate_reset(st);
			st->crc_flag = ISAL_GZIP;
			if (b->out - last_cp_out >= span / 4) {
				add_checkpoint(b, in_total - st->avail_in, 0, CP_MEMBER, NULL, 0);
				last_cp_out = b->out;
				next_cp = b->out + span;
			}
		}
		if (st->avail_in == 0 && eof)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "gzip stream is truncated");
		uint64_t room = next_cp - b->out;
		unsigned char *out = b->pipe ? pipe_buffer(b->pipe) : own_out;
		st->next_out = out;
		st->avail_out = (uint32_t)(room < OUT_CHUNK ? room : OUT_CHUNK);
		int z = isal_inflate(st);
		if (z != ISAL_DECOMP_OK)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "corrupt gzip stream at offset %ju (ISA-L error %d)",
						  (uintmax_t)(in_total - st->avail_in), z);
		size_t produced = (size_t)(st->next_out - out);
		if (builder_output(b, out, produced, err) < 0)
			return -1;
		if (b->pipe && produced) {
			pipe_submit(b->pipe, produced);
		}
		if (b->out == next_cp) {
			if (st->block_state != ISAL_BLOCK_FINISH) {
				add_checkpoint(b, in_total - st->avail_in, 0, CP_ISAL, (const unsigned char *)st,
					       sizeof(*st));
				last_cp_out = b->out;
			}
			next_cp += span;
		}
	}
	if (!any)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "empty gzip stream");
	/* a checkpoint at the very end has nothing to resume */
	while (b->n_cps > 1 && b->cps[b->n_cps - 1].out_off == b->out)
		b->n_cps--;
	b->cps[b->n_cps - 1].chunk_crc = b->chunk_crc;
	return 0;
}
#endif

static int build_zstd(struct builder *b, struct ocitree_blob_reader *r, struct ocitree_error **err)
{
	_cleanup_free_ unsigned char *in = xmalloc(IN_CHUNK);
	_cleanup_free_ unsigned char *own_out = NULL;
	/* zstd inflates about as fast as SHA-256 hashes: the diff_id is
	 * hashed in a second thread, as for gzip */
	if (b->diff_hasher)
		b->pipe = pipe_start(b->diff_hasher, OUT_CHUNK);
	if (!b->pipe)
		own_out = xmalloc(OUT_CHUNK);
	ZSTD_DStream *zd = ZSTD_createDStream();
	if (!zd)
		return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "ZSTD_createDStream failed");
	ZSTD_initDStream(zd);
	int ret = 0;
	size_t last = 1;
	bool any = false;
	for (;;) {
		ssize_t n = ocitree_blob_reader_read(r, in, IN_CHUNK, err);
		if (n < 0) {
			ret = -1;
			break;
		}
		if (n == 0)
			break;
		ZSTD_inBuffer ib = {in, (size_t)n, 0};
		bool full;
		do {
			unsigned char *out = b->pipe ? pipe_buffer(b->pipe) : own_out;
			ZSTD_outBuffer ob = {out, OUT_CHUNK, 0};
			size_t before = ib.pos;
			size_t z = ZSTD_decompressStream(zd, &ob, &ib);
			if (ZSTD_isError(z)) {
				ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "corrupt zstd stream: %s",
							 ZSTD_getErrorName(z));
				goto out;
			}
			/* a call that moved nothing reports the next frame's
			 * header size, not the state of the one that ended */
			if (ob.pos || ib.pos != before)
				last = z;
			any = true;
			if (builder_output(b, out, ob.pos, err) < 0) {
				ret = -1;
				goto out;
			}
			if (b->pipe && ob.pos) {
				pipe_submit(b->pipe, ob.pos);
			}
			full = ob.pos == OUT_CHUNK;
		} while (ib.pos < ib.size || full);
	}
	if (ret == 0 && (!any || last != 0))
		ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "zstd stream is truncated");
out:
	ZSTD_freeDStream(zd);
	return ret;
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
	_cleanup_buf_ struct buf img = BUF_INIT;
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
	switch (comp) {
	case OCITREE_COMPRESSION_GZIP:
#ifdef HAVE_ISAL
		if (layer_index_use_isal()) {
			r = build_gzip_isal(&b, rd, err);
			break;
		}
#endif
		r = build_gzip(&b, rd, err);
		break;
	case OCITREE_COMPRESSION_ZSTD:
		r = build_zstd(&b, rd, err);
		break;
	default:
		r = build_none(&b, rd, err);
		break;
	}
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
		struct ocitree_error *werr = NULL;
		if (layer_index_write_file(idx_dirfd, hex, &img, &werr) < 0) {
			/* a read-only cache costs speed next time, not this mount */
			log_warn("cannot cache the index of layer %s: %s", d->digest, werr->msg);
			ocitree_error_free(werr);
		}
	}
	idx = layer_index_alloc(d->digest);
	idx->map_len = img.len;
	idx->owned[0] = buf_steal(&img);
	if (layer_index_attach(idx, idx->owned[0], idx->map_len, d->digest, err) < 0) {
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
