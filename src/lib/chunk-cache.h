/* SPDX-License-Identifier: Apache-2.0 */
/* Internal side of the chunk cache (see ocitree/layer-index.h). */
#ifndef OCITREE_CHUNK_CACHE_H
#define OCITREE_CHUNK_CACHE_H

#include "ocitree/layer-index.h"
#include "util.h"

/* The size of most chunks (gzip ones: CHECKPOINT_SPAN), what read-ahead
 * depths are counted in against the cache's size. */
#define CHUNK_CACHE_CHUNK (256u << 10)

struct chunk_data {
	unsigned char *data; /* from chunk_cache_alloc(), owned by the cache once decoded */
	size_t len;          /* decoded bytes */
	size_t cap;          /* allocated bytes, what the cache accounts */
};

/* Fill out with chunk no of owner, out->data from chunk_cache_alloc(c, ...)
 * (or malloc'd when c is NULL); returns 0, or -1 with any buffer left in out
 * for the cache to free. */
typedef int (*chunk_decode_fn)(void *userdata, struct ocitree_chunk_cache *c, uint64_t no, struct chunk_data *out,
			       struct ocitree_error **err);

/* The chunk, decoded by decode on a miss (one decoder per chunk at a time; a
 * chunk queued for read-ahead but not started is decoded by the caller
 * instead of waiting its turn); the caller releases it with
 * chunk_cache_put().  NULL on error. */
const struct chunk_data *chunk_cache_get(struct ocitree_chunk_cache *c, const void *owner, uint64_t no,
					 chunk_decode_fn decode, void *userdata, struct ocitree_error **err);
void chunk_cache_put(struct ocitree_chunk_cache *c, const struct chunk_data *d);

/* A buffer of at least len bytes for a decoder to fill (out->data, out->cap).
 * When the cache is full the buffer of its least recently used chunk is
 * taken over, so a reader streaming through a layer reuses the same few
 * buffers instead of mapping fresh memory for every chunk. */
void chunk_cache_alloc(struct ocitree_chunk_cache *c, size_t len, struct chunk_data *out);

/* Queue chunk no for decoding by the cache's read-ahead thread, unless it is
 * cached, being decoded, or the queue is full.  Returns at once.  userdata
 * must stay valid until chunk_cache_forget_owner(owner). */
void chunk_cache_prefetch(struct ocitree_chunk_cache *c, const void *owner, uint64_t no, chunk_decode_fn decode,
			  void *userdata);
/* How many chunks ahead of a sequential reader to decode (0: no read-ahead);
 * bounded by a quarter of the cache so read-ahead cannot evict what readers
 * are using. */
unsigned chunk_cache_readahead(const struct ocitree_chunk_cache *c);
/* Chunks of read-ahead per reading stream (default 16); 0 turns it off.  For
 * tests; set it before reads start. */
void chunk_cache_set_readahead(struct ocitree_chunk_cache *c, unsigned chunks);

/* What the cache did, for tests and the debug log. */
struct chunk_cache_stats {
	uint64_t decodes;          /* chunks decoded, by readers and by read-ahead */
	uint64_t readahead;        /* ... of them by read-ahead */
	uint64_t readahead_used;   /* read-ahead chunks a reader found ready */
	uint64_t readahead_wasted; /* read-ahead chunks evicted before any reader came */
	size_t bytes;              /* memory of the cache now */
	size_t peak_bytes;         /* and at most */
	size_t pending;            /* chunks queued for read-ahead or being decoded by it now */
};
void chunk_cache_stats(struct ocitree_chunk_cache *c, struct chunk_cache_stats *st);
/* Drop the queued read-ahead and the unused chunks of owner (an index being
 * freed), waiting for a read-ahead decode of owner in progress. */
void chunk_cache_forget_owner(struct ocitree_chunk_cache *c, const void *owner);

#endif
