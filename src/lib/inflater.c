/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The decoder of compressed layers, one step at a time (see inflater.h):
 * gzip members and their padding, deflate through ISA-L or zlib, zstd
 * frames, plain copies.
 */
#include "config.h"

#ifdef HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

#include "inflater.h"

/* The engines take 32-bit lengths. */
#define STEP_MAX ((size_t)1 << 30)

void inflater_init(struct inflater *f, enum ocitree_compression comp, enum inflate_engine engine, unsigned flags)
{
	memset(f, 0, sizeof(*f));
	f->comp = comp;
	f->flags = flags;
	if (comp == OCITREE_COMPRESSION_GZIP) {
#ifdef HAVE_ISAL
		if (engine == INFLATE_ISAL) {
			f->isal = true;
			f->isal_state = flags & INFLATE_STATE_LOADED ? xmalloc(sizeof(struct inflate_state))
								     : xcalloc(1, sizeof(struct inflate_state));
			isal_inflate_init(f->isal_state);
		}
#else
		(void)engine;
#endif
	} else if (comp == OCITREE_COMPRESSION_ZSTD) {
		f->zd = ZSTD_createDStream();
		if (!f->zd) {
			fputs("ocitree: out of memory (zstd)\n", stderr);
			abort();
		}
		ZSTD_initDStream(f->zd);
	}
}

void inflater_end(struct inflater *f)
{
	if (f->z_init)
		inflateEnd(&f->z);
	free(f->isal_state);
	ZSTD_freeDStream(f->zd);
	memset(f, 0, sizeof(*f));
}

/* zlib for a gzip member (header and trailer) or a raw deflate stream. */
static void zlib_reset(struct inflater *f, int wbits)
{
	int r = f->z_init ? inflateReset2(&f->z, wbits) : inflateInit2(&f->z, wbits);
	if (r != Z_OK) {
		fputs("ocitree: cannot initialise zlib\n", stderr);
		abort();
	}
	f->z_init = true;
}

int inflater_resume_block(struct inflater *f, unsigned bits, uint8_t byte, const uint8_t *window, size_t window_len,
			  struct ocitree_error **err)
{
	f->started = f->member_open = f->raw = true;
#ifdef HAVE_ISAL
	if (f->isal) {
		struct inflate_state *st = f->isal_state;
		st->crc_flag = ISAL_DEFLATE;
		if (window_len && isal_inflate_set_dict(st, (uint8_t *)window, (uint32_t)window_len) != COMP_OK)
			return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "isal_inflate_set_dict failed");
		/* the partial byte's bits, primed into the bit buffer */
		if (bits) {
			st->read_in = (uint64_t)(byte >> (8 - bits));
			st->read_in_length = (int32_t)bits;
		}
		return 0;
	}
#endif
	zlib_reset(f, -15);
	if (bits)
		inflatePrime(&f->z, (int)bits, byte >> (8 - bits));
	if (window_len && inflateSetDictionary(&f->z, window, (uInt)window_len) != Z_OK)
		return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "inflateSetDictionary failed");
	return 0;
}

void *inflater_state(struct inflater *f, size_t *len)
{
#ifdef HAVE_ISAL
	if (f->isal) {
		*len = sizeof(struct inflate_state);
		return f->isal_state;
	}
#endif
	*len = 0;
	return NULL;
}

void *inflater_state_snapshot(struct inflater *f, size_t *len)
{
#ifdef HAVE_ISAL
	if (f->isal) {
		struct inflate_state *st = f->isal_state;
		/* the output buffer, which ends the state, holds the history
		 * (up to tmp_out_valid) and then bytes of earlier steps that
		 * ISA-L writes before it reads them again: left out (packing
		 * them, even zeroed, was a fifth of a checkpoint's cost), and
		 * zeroed again by inflater_resume_state().  Input past
		 * tmp_in_size is zeroed: it packs to next to nothing. */
		size_t valid = st->tmp_out_valid > 0 ? (size_t)st->tmp_out_valid : 0;
		if (valid > sizeof(st->tmp_out_buffer))
			valid = sizeof(st->tmp_out_buffer);
		size_t in_valid = st->tmp_in_size > 0 ? (size_t)st->tmp_in_size : 0;
		if (in_valid < sizeof(st->tmp_in_buffer))
			memset(st->tmp_in_buffer + in_valid, 0, sizeof(st->tmp_in_buffer) - in_valid);
		*len = offsetof(struct inflate_state, tmp_out_buffer) + valid;
		return st;
	}
#endif
	*len = 0;
	return NULL;
}

int inflater_resume_state(struct inflater *f, size_t len)
{
#ifdef HAVE_ISAL
	if (f->isal) {
		/* the len bytes written are the state up to its history, as
		 * inflater_state_snapshot() saved it */
		struct inflate_state *st = f->isal_state;
		size_t head = offsetof(struct inflate_state, tmp_out_buffer);
		size_t valid = st->tmp_out_valid > 0 ? (size_t)st->tmp_out_valid : 0;
		if (len < head || len > sizeof(*st) || valid != len - head)
			return -1;
		memset((unsigned char *)st + len, 0, sizeof(*st) - len);
	}
#else
	(void)len;
#endif
	/* the state was saved inside a member read with its gzip header */
	f->started = f->member_open = true;
	return 0;
}

static int fail(struct inflater *f, enum inflate_failure why, const char *detail, struct ocitree_error **err)
{
	const char *name = ocitree_compression_name(f->comp);
	f->failure = why;
	f->detail = detail;
	switch (why) {
	case INFLATE_FAIL_CORRUPT:
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "corrupt %s data (%s)", name, detail);
	case INFLATE_FAIL_TRUNCATED:
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "truncated %s stream", name);
	case INFLATE_FAIL_EMPTY:
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "empty %s stream", name);
	case INFLATE_FAIL_GARBAGE:
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "garbage after the gzip stream");
	default:
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "not a gzip stream");
	}
}

static void consume(struct inflate_io *io, size_t n)
{
	io->in += n;
	io->in_len -= n;
}

/* Between gzip members: skip what is left of a raw-resumed member's
 * trailer, then zero bytes up to the end are padding and anything else must
 * start a member.  Returns MEMBER_STARTED when a member was started (and is
 * not to be reported), else an event or -1. */
#define MEMBER_STARTED 100
static int between_members(struct inflater *f, struct inflate_io *io, struct ocitree_error **err)
{
	if (f->skip) {
		size_t n = io->in_len < f->skip ? io->in_len : f->skip;
		consume(io, n);
		f->skip -= (unsigned)n;
		if (f->skip)
			return io->eof ? fail(f, INFLATE_FAIL_TRUNCATED, NULL, err) : INFLATE_OK;
	}
	for (;;) {
		if (!io->in_len) {
			if (!io->eof)
				return INFLATE_OK;
			if (!f->started)
				return fail(f, INFLATE_FAIL_EMPTY, NULL, err);
			return INFLATE_END;
		}
		if (!f->padding && io->in[0] != 0)
			break;
		if (!f->started)
			return fail(f, INFLATE_FAIL_NOT_GZIP, NULL, err);
		f->padding = true;
		while (io->in_len && io->in[0] == 0)
			consume(io, 1);
		if (io->in_len)
			return fail(f, INFLATE_FAIL_GARBAGE, NULL, err);
	}
#ifdef HAVE_ISAL
	if (f->isal) {
		isal_inflate_reset(f->isal_state);
		((struct inflate_state *)f->isal_state)->crc_flag = ISAL_GZIP;
	} else
#endif
		zlib_reset(f, 15 + 16);
	bool later = f->started;
	f->started = f->member_open = true;
	f->raw = false;
	return later && (f->flags & INFLATE_MEMBERS) ? INFLATE_MEMBER : MEMBER_STARTED;
}

#ifdef HAVE_ISAL
static const char *isal_error(int r)
{
	switch (r) {
	case ISAL_INCORRECT_CHECKSUM: return "checksum mismatch";
	case ISAL_INVALID_WRAPPER: return "bad header";
	case ISAL_UNSUPPORTED_METHOD: return "unsupported method";
	default: return "invalid deflate stream";
	}
}
#endif

static int step_gzip(struct inflater *f, struct inflate_io *io, struct ocitree_error **err)
{
	if (!f->member_open) {
		int r = between_members(f, io, err);
		if (r != MEMBER_STARTED)
			return r;
	}
	if (!io->out_len)
		return INFLATE_OK;
	size_t in_len = io->in_len < STEP_MAX ? io->in_len : STEP_MAX;
	size_t out_len = io->out_len < STEP_MAX ? io->out_len : STEP_MAX;
	size_t in_left, out_left;
	bool finished, at_block = false;
#ifdef HAVE_ISAL
	if (f->isal) {
		struct inflate_state *st = f->isal_state;
		st->next_in = (uint8_t *)(uintptr_t)io->in;
		st->avail_in = (uint32_t)in_len;
		st->next_out = io->out;
		st->avail_out = (uint32_t)out_len;
		int r = isal_inflate(st);
		if (r != ISAL_DECOMP_OK)
			return fail(f, INFLATE_FAIL_CORRUPT, isal_error(r), err);
		in_left = st->avail_in;
		out_left = st->avail_out;
		finished = st->block_state == ISAL_BLOCK_FINISH;
	} else
#endif
	{
		z_stream *z = &f->z;
		z->next_in = (Bytef *)(uintptr_t)io->in;
		z->avail_in = (uInt)in_len;
		z->next_out = io->out;
		z->avail_out = (uInt)out_len;
		int r = inflate(z, (f->flags & INFLATE_BLOCKS) ? Z_BLOCK : Z_NO_FLUSH);
		if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR)
			return fail(f, INFLATE_FAIL_CORRUPT, z->msg ? z->msg : "invalid deflate stream", err);
		in_left = z->avail_in;
		out_left = z->avail_out;
		finished = r == Z_STREAM_END;
		/* as in zlib's zran.c: the end of a block, not the last one */
		at_block = (f->flags & INFLATE_BLOCKS) && (z->data_type & 128) && !(z->data_type & 64);
		f->bits = (unsigned)(z->data_type & 7);
	}
	size_t used = in_len - in_left, got = out_len - out_left;
	consume(io, used);
	io->out += got;
	io->out_len -= got;
	if (finished) {
		f->member_open = false;
		if (f->raw) {
			if (f->isal)
				return INFLATE_NEED_ZLIB;
			/* zlib read the raw stream to its end and no further: the
			 * member's CRC-32 and size follow (the chunk's own CRC-32
			 * covers the data) */
			f->skip = 8;
			f->raw = false;
		}
		return INFLATE_OK;
	}
	if (!used && !got) {
		if (io->eof && !io->in_len)
			return fail(f, INFLATE_FAIL_TRUNCATED, NULL, err);
		return INFLATE_OK;
	}
	return at_block ? INFLATE_BLOCK : INFLATE_OK;
}

static int step_zstd(struct inflater *f, struct inflate_io *io, struct ocitree_error **err)
{
	ZSTD_inBuffer ib = {io->in, io->in_len, 0};
	ZSTD_outBuffer ob = {io->out, io->out_len, 0};
	size_t r = ZSTD_decompressStream(f->zd, &ob, &ib);
	if (ZSTD_isError(r))
		return fail(f, INFLATE_FAIL_CORRUPT, ZSTD_getErrorName(r), err);
	consume(io, ib.pos);
	io->out += ob.pos;
	io->out_len -= ob.pos;
	if (ib.pos || ob.pos) {
		/* a call that moved nothing reports the next frame's header
		 * size, not the state of the one that ended */
		f->started = true;
		f->member_open = r != 0;
		return INFLATE_OK;
	}
	if (!io->eof || io->in_len || !io->out_len)
		return INFLATE_OK;
	if (!f->started)
		return fail(f, INFLATE_FAIL_EMPTY, NULL, err);
	return f->member_open ? fail(f, INFLATE_FAIL_TRUNCATED, NULL, err) : INFLATE_END;
}

int inflater_step(struct inflater *f, struct inflate_io *io, struct ocitree_error **err)
{
	switch (f->comp) {
	case OCITREE_COMPRESSION_GZIP: return step_gzip(f, io, err);
	case OCITREE_COMPRESSION_ZSTD: return step_zstd(f, io, err);
	case OCITREE_COMPRESSION_NONE:
	default: {
		if (!io->in_len)
			return io->eof ? INFLATE_END : INFLATE_OK;
		size_t n = io->in_len < io->out_len ? io->in_len : io->out_len;
		memcpy(io->out, io->in, n);
		consume(io, n);
		io->out += n;
		io->out_len -= n;
		return INFLATE_OK;
	}
	}
}
