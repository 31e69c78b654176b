/* SPDX-License-Identifier: Apache-2.0 */
/* Internal side of the chunk cache (see ocitree/layer-index.h). */
#ifndef OCITREE_CHUNK_CACHE_H
#define OCITREE_CHUNK_CACHE_H

#include "ocitree/layer-index.h"
#include "util.h"

struct chunk_data {
	unsigned char *data; /* malloc'd, owned by the cache */
	size_t len;
};

/* Fill *out (data malloc'd) with chunk no of owner; returns 0 or -1. */
typedef int (*chunk_decode_fn)(void *userdata, uint64_t no, struct chunk_data *out, struct ocitree_error **err);

/* The chunk, decoded by decode on a miss (one decoder per chunk at a time);
 * the caller releases it with chunk_cache_put().  NULL on error. */
const struct chunk_data *chunk_cache_get(struct ocitree_chunk_cache *c, const void *owner, uint64_t no,
					 chunk_decode_fn decode, void *userdata, struct ocitree_error **err);
void chunk_cache_put(struct ocitree_chunk_cache *c, const struct chunk_data *d);
/* Start decoding chunk no in the background unless it is cached, being
 * decoded, or another read-ahead is running.  userdata must stay valid until
 * chunk_cache_forget_owner() (which waits for read-aheads). */
void chunk_cache_prefetch(struct ocitree_chunk_cache *c, const void *owner, uint64_t no, chunk_decode_fn decode,
			  void *userdata);
/* Drop the unused chunks of owner (an index being freed). */
void chunk_cache_forget_owner(struct ocitree_chunk_cache *c, const void *owner);

#endif
