/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals of the layer codec, shared by the readers, the writers and the
 * unit tests: streaming (de)compressors over callbacks and the tar header
 * encoder.
 */
#ifndef OCITREE_LAYER_INTERNAL_H
#define OCITREE_LAYER_INTERNAL_H

#include "ocitree/layer.h"
#include "util.h"

#define TAR_BLOCK 512

/* ---- decompression ---- */

/* Where compressed bytes come from: the next piece of input in *data, valid
 * until the next call (no copy); returns its length, 0 at the end, -1. */
typedef ssize_t (*source_next_fn)(void *ctx, const void **data, struct ocitree_error **err);

struct decompressor;

/* A decompressor for comp reading from src; what names the stream in errors
 * ("layer sha256:..").  Gzip streams may hold several members (zero padding
 * after the last is accepted), zstd streams several frames. */
struct decompressor *decompressor_new(enum ocitree_compression comp, source_next_fn src, void *src_ctx,
				      const char *what);
/* Up to len decompressed bytes into out: returns the count, 0 once the
 * compressed stream ended cleanly, -1 on corrupt or truncated input. */
ssize_t decompressor_read(struct decompressor *d, void *out, size_t len, struct ocitree_error **err);
void decompressor_free(struct decompressor *d);

/* ---- compression ---- */

/* Where compressed bytes go. */
typedef int (*sink_write_fn)(void *ctx, const void *data, size_t len, struct ocitree_error **err);

struct compressor;

/* Compress in independent pieces of OCITREE_LAYER_PIECE_SIZE input bytes
 * (see layer.h) with threads worker threads (<= 1: in the caller); level 0
 * is the default.  The output goes to sink in order, from the calling
 * thread. */
struct compressor *compressor_new(enum ocitree_compression comp, int level, unsigned threads, sink_write_fn sink,
				  void *sink_ctx);
int compressor_write(struct compressor *c, const void *data, size_t len, struct ocitree_error **err);
/* Flush the last piece and end the stream (gzip trailer). */
int compressor_finish(struct compressor *c, struct ocitree_error **err);
/* Compressed offset at which each piece starts, piece i covering input from
 * i * OCITREE_LAYER_PIECE_SIZE; valid after finish.  For gzip the first
 * offset is past the header: a raw inflate can start at every offset. */
const uint64_t *compressor_piece_offsets(const struct compressor *c, size_t *n);
void compressor_free(struct compressor *c);

/* Online CPUs, at least 1. */
unsigned cpu_count(void);

/* ---- tar ---- */

/* Append the header blocks of e (a pax extended header first when the
 * entry needs one) to out.  mtimes newer than clamp (when >= 0) are
 * clamped.  Invalid entries are OCITREE_ERROR_INVALID errors. */
int tar_encode_header(struct buf *out, const struct ocitree_tar_entry *e, int64_t clamp, struct ocitree_error **err);

/* ---- tar reading ---- */

/* Digest (sha256) the current entry's content, as ocitree_tar_reader_data()
 * hands it out, holes and a short end as zeros, on the layer reader's
 * hashing thread: call before the entry's first ocitree_tar_reader_data().
 * out must stay valid until the layer reader is freed, and holds the digest
 * once ocitree_tar_reader_next() returned 0 (the stream verified); an entry
 * whose data is not read to its end gets a meaningless digest. */
void tar_reader_hash_entry(struct ocitree_tar_reader *tr, uint8_t out[32]);

#endif
