/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reads of an indexed layer's uncompressed tar: pread and pin (zero-copy)
 * through the chunk cache, and the read-ahead policy that decodes the chunks
 * a sequential reader will want next (only those a merged tree shows).
 */
#include "config.h"

#include "layer-index-internal.h"

/* Chunk c of a gzip layer, from the cache (to give back with release_chunk)
 * or decoded into *local. */
static const struct chunk_data *get_chunk(struct ocitree_layer_index *idx, size_t c, struct chunk_data *local,
					  struct ocitree_error **err)
{
	if (idx->chunks)
		return chunk_cache_get(idx->chunks, idx, c, layer_index_decode_chunk, idx, err);
	*local = (struct chunk_data){0};
	if (layer_index_decode_chunk(idx, NULL, c, local, err) < 0)
		return NULL;
	return local;
}

static void release_chunk(struct ocitree_layer_index *idx, const struct chunk_data *d)
{
	if (idx->chunks)
		chunk_cache_put(idx->chunks, d);
	else
		free(d->data);
}

/* A read of [off, off + len) is about to be served: when reads go forward
 * through the layer, have the cache decode the chunks that follow c. */
static void read_ahead(struct ocitree_layer_index *idx, uint64_t off, size_t len, size_t c)
{
	if (!idx->chunks)
		return;
	unsigned depth = chunk_cache_readahead(idx->chunks);
	/* sequential: this read starts near where the previous one ended (the
	 * next file in tar order is a header away, or a few files further when
	 * an upper layer hides some; the kernel's read-ahead requests may
	 * arrive a little out of order) */
	uint64_t near = (uint64_t)(depth + 1) * CHECKPOINT_SPAN;
	uint64_t prev = __atomic_load_n(&idx->last_end, __ATOMIC_RELAXED);
	bool sequential = prev && off + near >= prev && off <= prev + near;
	/* a read a little behind the furthest one (the reader behind the
	 * daemon's own pushes of the next files, see src/fs/fs-push.c) does
	 * not move the stream back; 0 is no read yet, and a first read is
	 * not a stream: a mount that reads one file decodes one chunk */
	if (!sequential || off + len > prev)
		__atomic_store_n(&idx->last_end, off + len, __ATOMIC_RELAXED);
	if (!depth || !sequential)
		return;
	uint64_t last = c + depth < idx->n_cps ? c + depth : idx->n_cps - 1;
	/* ra_next: the chunk after the last one asked for, to ask for each
	 * chunk once as the reader moves on (a stale value only costs lookups) */
	uint64_t from = __atomic_load_n(&idx->ra_next, __ATOMIC_RELAXED);
	if (from <= c || from > last + 1)
		from = c + 1;
	if (from > last)
		return;
	__atomic_store_n(&idx->ra_next, last + 1, __ATOMIC_RELAXED);
	const uint8_t *live = __atomic_load_n(&idx->live, __ATOMIC_ACQUIRE);
	for (uint64_t k = from; k <= last; k++)
		if (!live || (__atomic_load_n(&live[k / 8], __ATOMIC_RELAXED) & (1u << (k % 8))))
			chunk_cache_prefetch(idx->chunks, idx, k, layer_index_decode_chunk, idx);
}

void layer_index_mark_live(struct ocitree_layer_index *idx, const uint8_t *entries)
{
	if (idx->comp != OCITREE_COMPRESSION_GZIP || !idx->n_cps)
		return;
	/* a writable mount's live commit marks for its new tree while the
	 * old one is read: bits are only ever added, and a reader that sees
	 * some too early only reads ahead less */
	uint8_t *live = __atomic_load_n(&idx->live, __ATOMIC_ACQUIRE);
	if (!live) {
		uint8_t *fresh = xcalloc(1, (idx->n_cps + 7) / 8);
		if (__atomic_compare_exchange_n(&idx->live, &live, fresh, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			live = fresh;
		else
			free(fresh);
	}
	/* entries are in tar order: the chunk of one is mostly that of the
	 * one before, or the next (a search over the checkpoints per entry
	 * cost node's 82k entries 5-9 ms of mount time) */
	size_t k = 0;
	for (size_t i = 0; i < idx->n_entries; i++) {
		const struct ocitree_layer_entry *e = &idx->entries[i];
		if (!(entries[i / 8] & (1u << (i % 8))) || e->type != OCITREE_ENTRY_REG || !e->size)
			continue;
		uint64_t first = e->data_off, last = e->data_off + e->size - 1;
		if (first < idx->cps[k].out_off || first >= idx_chunk_end(idx, k))
			k = idx_find_checkpoint(idx, first);
		for (;;) {
			uint8_t bit = (uint8_t)(1u << (k % 8));
			if (!(__atomic_load_n(&live[k / 8], __ATOMIC_RELAXED) & bit))
				__atomic_fetch_or(&live[k / 8], bit, __ATOMIC_RELAXED);
			if (k + 1 >= idx->n_cps || idx->cps[k + 1].out_off > last)
				break;
			k++;
		}
	}
}

OCITREE_EXPORT ssize_t ocitree_layer_index_pread(struct ocitree_layer_index *idx, void *buf, size_t len,
						 uint64_t off, struct ocitree_error **err)
{
	if (off >= idx->tar_size)
		return 0;
	if (len > idx->tar_size - off)
		len = (size_t)(idx->tar_size - off);
	if (idx->data_fd >= 0) {
		ssize_t n = pread_full(idx->data_fd, buf, len, (off_t)(off + idx->data_base));
		if (n < 0)
			return ocitree_error_set(err, errno, "read layer %s", idx->digest);
		return n;
	}
	if (idx->comp != OCITREE_COMPRESSION_GZIP)
		return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "layer %s has no data source", idx->digest);
	size_t done = 0;
	read_ahead(idx, off, len, idx_find_checkpoint(idx, off));
	while (done < len) {
		uint64_t pos = off + done;
		size_t c = idx_find_checkpoint(idx, pos);
		struct chunk_data local;
		const struct chunk_data *d = get_chunk(idx, c, &local, err);
		if (!d)
			return -1;
		size_t skip = (size_t)(pos - idx->cps[c].out_off);
		size_t n = d->len > skip ? d->len - skip : 0;
		if (n > len - done)
			n = len - done;
		memcpy((char *)buf + done, d->data + skip, n);
		done += n;
		release_chunk(idx, d);
		if (n == 0)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "layer %s: bad chunk %zu", idx->digest, c);
	}
	return (ssize_t)done;
}

OCITREE_EXPORT ssize_t ocitree_layer_index_pin(struct ocitree_layer_index *idx, uint64_t off, size_t len,
					       struct ocitree_layer_pin *pin, struct ocitree_error **err)
{
	pin->n = 0;
	pin->idx = idx;
	if (!idx->chunks || idx->data_fd >= 0 || idx->comp != OCITREE_COMPRESSION_GZIP || off >= idx->tar_size)
		return 0;
	if (len > idx->tar_size - off)
		len = (size_t)(idx->tar_size - off);
	size_t first = idx_find_checkpoint(idx, off);
	if (idx_find_checkpoint(idx, off + len - 1) - first >= OCITREE_LAYER_PIN_MAX)
		return 0;
	read_ahead(idx, off, len, first);
	size_t done = 0;
	while (done < len) {
		uint64_t pos = off + done;
		size_t c = idx_find_checkpoint(idx, pos);
		const struct chunk_data *d = chunk_cache_get(idx->chunks, idx, c, layer_index_decode_chunk, idx, err);
		if (!d) {
			ocitree_layer_index_unpin(pin);
			return -1;
		}
		pin->held[pin->n] = d;
		size_t skip = (size_t)(pos - idx->cps[c].out_off);
		size_t n = d->len > skip ? d->len - skip : 0;
		if (n > len - done)
			n = len - done;
		pin->iov[pin->n].iov_base = d->data + skip;
		pin->iov[pin->n].iov_len = n;
		pin->n++;
		done += n;
		if (n == 0 || (done < len && pin->n == OCITREE_LAYER_PIN_MAX)) {
			ocitree_layer_index_unpin(pin);
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "layer %s: bad chunk %zu", idx->digest, c);
		}
	}
	return (ssize_t)done;
}

OCITREE_EXPORT void ocitree_layer_index_unpin(struct ocitree_layer_pin *pin)
{
	for (size_t i = 0; i < pin->n; i++)
		chunk_cache_put(pin->idx->chunks, pin->held[i]);
	pin->n = 0;
}

OCITREE_EXPORT int ocitree_layer_index_data_fd(const struct ocitree_layer_index *idx, uint64_t *base)
{
	if (base)
		*base = idx->data_base;
	return idx->data_fd;
}
