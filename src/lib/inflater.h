/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One decoder for compressed layers (internal to libocitree): gzip through
 * ISA-L or zlib, zstd, and uncompressed data, driven one step at a time by
 * its three users: the streaming decompressor (layer-compress.c), the index
 * pass (layer-index-build.c), which places checkpoints at deflate block
 * boundaries or at copies of ISA-L's state, and the chunk decoder
 * (layer-seek.c), which resumes at such a checkpoint.
 *
 * A gzip stream may hold several members; zero bytes after the last one are
 * padding, and nothing may follow them (as `gzip -d` reads it).  A zstd
 * stream may hold several frames.
 */
#ifndef OCITREE_INFLATER_H
#define OCITREE_INFLATER_H

#include <zlib.h>
#include <zstd.h>

#include "ocitree/layer.h"
#include "util.h"

enum inflate_engine {
	INFLATE_ZLIB,
	INFLATE_ISAL, /* zlib when built without ISA-L */
};

/* What a step ended with (besides -1, an error). */
enum inflate_event {
	INFLATE_OK = 0, /* went on; call again, with more input when in_len is 0 */
	INFLATE_END,    /* the stream ended: every member (or frame) was read, eof was given */
	/* with INFLATE_BLOCKS (zlib only): the output stops at the end of a
	 * deflate block that is not the last of its member; bits says how many
	 * bits of the next block are in the byte before io->in */
	INFLATE_BLOCK,
	/* with INFLATE_MEMBERS: a gzip member other than the first starts at
	 * io->in (nothing of it is read yet) */
	INFLATE_MEMBER,
	/* ISA-L resumed in the middle of a member (inflater_resume_block) got to
	 * the member's end: it may hold bytes of the gzip trailer in its bit
	 * buffer, so it cannot go on to the next member.  Start again with zlib. */
	INFLATE_NEED_ZLIB,
};

/* Why a step failed, for users that word the error their own way. */
enum inflate_failure {
	INFLATE_FAIL_NONE = 0,
	INFLATE_FAIL_CORRUPT,   /* detail says how */
	INFLATE_FAIL_TRUNCATED, /* the input ended inside a member or frame */
	INFLATE_FAIL_EMPTY,     /* no member or frame at all */
	INFLATE_FAIL_GARBAGE,   /* data after the zero padding of a gzip stream */
	INFLATE_FAIL_NOT_GZIP,  /* zero bytes where the first member should start */
};

#define INFLATE_BLOCKS 1u
#define INFLATE_MEMBERS 2u
/* The caller overwrites the whole engine state (inflater_state) before the
 * first step: it is not zeroed (87 KiB of ISA-L state, a memset per decoded
 * chunk otherwise). */
#define INFLATE_STATE_LOADED 4u

/* The buffers of a step, advanced by it past what it used and produced. */
struct inflate_io {
	const uint8_t *in;
	size_t in_len;
	bool eof; /* no input follows in_len: missing bytes are a truncated stream */
	uint8_t *out;
	size_t out_len;
};

struct inflater {
	enum ocitree_compression comp;
	bool isal; /* gzip through ISA-L */
	unsigned flags;
	bool started;     /* a member or frame began */
	bool member_open; /* inside a gzip member or zstd frame */
	bool padding;     /* zero bytes after the last gzip member */
	bool raw;         /* in a member resumed at a block: its trailer is not read by the engine */
	unsigned skip;    /* trailer bytes of such a member still to skip */
	unsigned bits;    /* at INFLATE_BLOCK */
	bool z_init;
	z_stream z;
	void *isal_state; /* struct inflate_state, zeroed (its bytes are saved in checkpoints) unless INFLATE_STATE_LOADED */
	ZSTD_DStream *zd;
	enum inflate_failure failure; /* of the last step that failed */
	const char *detail;           /* for INFLATE_FAIL_CORRUPT: the engine's word, static */
};

/* An inflater for comp (OCITREE_COMPRESSION_NONE copies) at the start of a
 * stream.  flags: INFLATE_BLOCKS, INFLATE_MEMBERS, INFLATE_STATE_LOADED. */
void inflater_init(struct inflater *f, enum ocitree_compression comp, enum inflate_engine engine, unsigned flags);
void inflater_end(struct inflater *f);

/* Resume a gzip stream inside a member at a deflate block boundary: bits
 * (0-7) bits of the block are the high bits of byte (the byte before the
 * input that follows), window (up to 32 KiB) is the output before it. */
int inflater_resume_block(struct inflater *f, unsigned bits, uint8_t byte, const uint8_t *window, size_t window_len,
			  struct ocitree_error **err);

/* ISA-L's whole inflate state (NULL for zlib): what the index pass saves
 * at a checkpoint, and where the chunk decoder puts it back before
 * inflater_resume_state().  Its size goes to *len. */
void *inflater_state(struct inflater *f, size_t *len);
/* inflater_state() of a running inflater, for saving: what ISA-L holds but
 * never reads again is zeroed first (stale input) or left out (stale
 * output: *len is what is worth saving, from the start). */
void *inflater_state_snapshot(struct inflater *f, size_t *len);
/* Go on from the state whose first len bytes, as a snapshot gave them, were
 * just written into inflater_state(); -1 when len does not fit the state. */
int inflater_resume_state(struct inflater *f, size_t len);

/* Inside a gzip member (ISA-L checkpoints are only taken there). */
static inline bool inflater_in_member(const struct inflater *f)
{
	return f->member_open;
}

/* Decode from io->in to io->out, stopping at the events asked for.
 * Returns an enum inflate_event, or -1 with *err (OCITREE_ERROR_INVALID for
 * a bad stream, worded as unpack reports it: "truncated gzip stream",
 * "corrupt zstd data (...)"; the caller adds which stream) and f->failure
 * saying why. */
int inflater_step(struct inflater *f, struct inflate_io *io, struct ocitree_error **err);

#endif
