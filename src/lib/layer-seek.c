/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Random access into gzip layers: decoding the chunk of uncompressed tar
 * between two checkpoints of an index, resuming the inflate there.
 */
#include "config.h"

#include <pthread.h>
#include <sys/mman.h>
#include <zlib.h>
#ifdef HAVE_ISAL
#include <isa-l.h>
#include <isa-l/igzip_lib.h>
#endif

#include "layer-index-internal.h"

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

#ifdef HAVE_ISAL
/* ISA-L inflates 3-4x faster than zlib.  It resumes at a checkpoint given the
 * window as dictionary and the partial byte's bits primed into its bit
 * buffer.  Returns 1 when the chunk crosses the end of a gzip member (rare:
 * concatenated gzip files), which the zlib path handles. */
static int inflate_chunk_isal(const struct idx_checkpoint *cp, const unsigned char *in, size_t in_len,
			      const unsigned char *win, size_t win_len, unsigned char *out, size_t out_len,
			      struct ocitree_error **err)
{
	_cleanup_free_ struct inflate_state *st = xcalloc(1, sizeof(*st)); /* zeroed: its bytes are saved in checkpoints */
	isal_inflate_init(st);
	size_t pos = 0;
	if (cp->kind == CP_MEMBER) {
		st->crc_flag = ISAL_GZIP;
	} else if (cp->kind == CP_ISAL) {
		/* the saved state, as isal_inflate left it */
		if (layer_index_unpack_window(win, win_len, cp->window_crc, st, sizeof(*st), err) < 0)
			return -1;
	} else {
		st->crc_flag = ISAL_DEFLATE;
		if (win_len && isal_inflate_set_dict(st, (uint8_t *)win, (uint32_t)win_len) != COMP_OK)
			return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "isal_inflate_set_dict failed");
		if (cp->bits) {
			st->read_in = (uint64_t)(in[0] >> (8 - cp->bits));
			st->read_in_length = cp->bits;
			pos = 1;
		}
	}
	st->next_in = (uint8_t *)in + pos;
	st->avail_in = (uint32_t)(in_len - pos);
	st->next_out = out;
	st->avail_out = (uint32_t)out_len;
	for (;;) {
		int r = isal_inflate(st);
		if (r != ISAL_DECOMP_OK)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "corrupt gzip stream (ISA-L error %d)", r);
		if (st->avail_out == 0)
			return 0;
		if (st->block_state != ISAL_BLOCK_FINISH)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "gzip stream ends early");
		if (st->crc_flag == ISAL_DEFLATE)
			return 1; /* a raw resume cannot skip the trailer: zlib can */
		/* the next gzip member */
		while (st->avail_in && *st->next_in == 0) {
			st->next_in++;
			st->avail_in--;
		}
		uint8_t *ni = st->next_in, *no = st->next_out;
		uint32_t ai = st->avail_in, ao = st->avail_out;
		isal_inflate_reset(st);
		st->crc_flag = ISAL_GZIP;
		st->next_in = ni;
		st->avail_in = ai;
		st->next_out = no;
		st->avail_out = ao;
	}
}
#endif

static int inflate_chunk_zlib(const struct idx_checkpoint *cp, const unsigned char *in, size_t in_len,
			      const unsigned char *win, size_t win_len, unsigned char *out, size_t out_len,
			      struct ocitree_error **err)
{
	z_stream zs = {0};
	size_t pos = 0;
	if (cp->kind == CP_ISAL)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "checkpoint needs ISA-L");
	bool raw = cp->kind != CP_MEMBER;
	inflateInit2(&zs, raw ? -15 : 15 + 16);
	if (raw) {
		if (cp->bits) {
			inflatePrime(&zs, cp->bits, in[0] >> (8 - cp->bits));
			pos = 1;
		}
		if (win_len)
			inflateSetDictionary(&zs, win, (uInt)win_len);
	}
	zs.next_in = (Bytef *)in + pos;
	zs.avail_in = (uInt)(in_len - pos);
	zs.next_out = out;
	zs.avail_out = (uInt)out_len;
	int ret = 0;
	while (zs.avail_out) {
		int r = inflate(&zs, Z_NO_FLUSH);
		if (r == Z_STREAM_END) {
			if (raw) {
				/* the 8-byte gzip trailer of this member */
				if (zs.avail_in < 8) {
					ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "gzip stream ends early");
					break;
				}
				zs.next_in += 8;
				zs.avail_in -= 8;
			}
			while (zs.avail_in && *zs.next_in == 0) {
				zs.next_in++;
				zs.avail_in--;
			}
			raw = false;
			inflateReset2(&zs, 15 + 16);
			continue;
		}
		if (r != Z_OK) {
			ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "corrupt gzip stream: %s",
						 zs.msg ? zs.msg : "inflate error");
			break;
		}
		if (zs.avail_in == 0 && zs.avail_out) {
			ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "gzip stream ends early");
			break;
		}
	}
	inflateEnd(&zs);
	return ret;
}

/* Compressed input of a chunk is read into a buffer of the decoding thread,
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

int layer_index_decode_chunk(void *userdata, struct ocitree_chunk_cache *cache, uint64_t no, struct chunk_data *outd,
			struct ocitree_error **err)
{
	struct ocitree_layer_index *idx = userdata;
	const struct idx_checkpoint *cp = &idx->cps[no];
	uint64_t out_len = idx_chunk_end(idx, (size_t)no) - cp->out_off;
	uint64_t in_start = cp->bits ? cp->in_off - 1 : cp->in_off;
	/* a little past the next checkpoint: decoders may want lookahead */
	uint64_t in_end = no + 1 < idx->n_cps ? idx->cps[no + 1].in_off + 64 : idx->blob_size;
	if (in_end > idx->blob_size)
		in_end = idx->blob_size;
	if (in_end <= in_start || out_len > (64u << 20))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "bad checkpoint %ju", (uintmax_t)no);
	/* a chunk's input is never much more than its output (deflate adds a
	 * few bytes per stored block, fixed Huffman codes an eighth; member
	 * headers a little): read no more, whatever the checkpoints say, and a
	 * stream that needs more ends early */
	uint64_t in_max = out_len + out_len / 8 + (1u << 20);
	if (in_end - in_start > in_max)
		in_end = in_start + in_max;
	size_t in_len = (size_t)(in_end - in_start);
	_cleanup_free_ unsigned char *own_in = NULL;
	unsigned char *in = in_len <= SCRATCH_MAX ? scratch_input(in_len) : (own_in = xmalloc(in_len));
	ssize_t n = pread_full(idx->blob_fd, in, in_len, (off_t)in_start);
	if (n < 0)
		return ocitree_error_set(err, errno, "read blob %s", idx->digest);
	if ((size_t)n != in_len)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "blob %s is truncated", idx->digest);
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
#ifdef HAVE_ISAL
	if (cp->kind == CP_ISAL)
		r = inflate_chunk_isal(cp, in, in_len, window_bytes(idx, cp), cp->window_len, out, out_len,
				       err);
	else
		r = layer_index_use_isal() ? inflate_chunk_isal(cp, in, in_len, win, win_len, out, out_len, err) : 1;
	if (r == 1)
#else
	r = 1;
#endif
		r = inflate_chunk_zlib(cp, in, in_len, win, win_len, out, out_len, err);
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
