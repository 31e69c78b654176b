/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The chunk cache: decompressed chunks of gzip layers keyed by (owner,
 * chunk number), in an LRU bounded by bytes.  One mutex guards the whole
 * cache; a chunk being decoded is in the table with loading set, and other
 * readers of the same chunk wait on the condition variable instead of
 * decoding it twice.  Decoding itself runs without the lock.
 */
#include "config.h"

#include <pthread.h>

#include "chunk-cache.h"

struct chunk {
	const void *owner;
	uint64_t no;
	struct chunk *hnext;            /* hash chain */
	struct chunk *lru_prev, *lru_next; /* only while refs == 0 and loaded */
	unsigned refs;
	bool loading;
	int error; /* errno of a failed decode, for the waiters */
	struct chunk_data data;
};

struct ocitree_chunk_cache {
	pthread_mutex_t lock;
	pthread_cond_t cond;     /* signalled when a chunk finishes loading */
	size_t max_bytes;        /* immutable */
	size_t bytes;            /* lock: bytes of loaded chunks in the table */
	struct chunk **buckets;  /* lock */
	size_t n_buckets;        /* immutable */
	struct chunk lru;        /* lock: sentinel; lru.lru_next is the oldest */
	unsigned prefetching;    /* lock: read-ahead decoders running */
};

static size_t bucket_of(const struct ocitree_chunk_cache *c, const void *owner, uint64_t no)
{
	uint64_t h = ((uintptr_t)owner >> 4) * 0x9e3779b97f4a7c15ULL ^ (no * 0xff51afd7ed558ccdULL);
	return (size_t)(h ^ (h >> 29)) & (c->n_buckets - 1);
}

OCITREE_EXPORT struct ocitree_chunk_cache *ocitree_chunk_cache_new(size_t max_bytes)
{
	struct ocitree_chunk_cache *c = xcalloc(1, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->max_bytes = max_bytes;
	c->n_buckets = 1024;
	c->buckets = xcalloc(c->n_buckets, sizeof(*c->buckets));
	c->lru.lru_next = c->lru.lru_prev = &c->lru;
	return c;
}

static void lru_unlink(struct chunk *ch)
{
	if (ch->lru_next) {
		ch->lru_prev->lru_next = ch->lru_next;
		ch->lru_next->lru_prev = ch->lru_prev;
		ch->lru_next = ch->lru_prev = NULL;
	}
}

static void table_remove(struct ocitree_chunk_cache *c, struct chunk *ch)
{
	struct chunk **pp = &c->buckets[bucket_of(c, ch->owner, ch->no)];
	while (*pp && *pp != ch)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = ch->hnext;
}

static void chunk_destroy(struct chunk *ch)
{
	free(ch->data.data);
	free(ch);
}

/* Drop unused chunks, oldest first, until the cache fits.  Lock held. */
static void evict(struct ocitree_chunk_cache *c)
{
	while (c->bytes > c->max_bytes && c->lru.lru_next != &c->lru) {
		struct chunk *ch = c->lru.lru_next;
		lru_unlink(ch);
		table_remove(c, ch);
		c->bytes -= ch->data.len;
		chunk_destroy(ch);
	}
}

static void wait_prefetches(struct ocitree_chunk_cache *c)
{
	while (c->prefetching)
		pthread_cond_wait(&c->cond, &c->lock);
}

OCITREE_EXPORT void ocitree_chunk_cache_free(struct ocitree_chunk_cache *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	wait_prefetches(c);
	pthread_mutex_unlock(&c->lock);
	for (size_t i = 0; i < c->n_buckets; i++) {
		struct chunk *ch = c->buckets[i];
		while (ch) {
			struct chunk *n = ch->hnext;
			chunk_destroy(ch);
			ch = n;
		}
	}
	free(c->buckets);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c);
}

void chunk_cache_forget_owner(struct ocitree_chunk_cache *c, const void *owner)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	/* a read-ahead decoder may be using owner */
	wait_prefetches(c);
	for (size_t i = 0; i < c->n_buckets; i++) {
		struct chunk **pp = &c->buckets[i];
		while (*pp) {
			struct chunk *ch = *pp;
			if (ch->owner == owner && ch->refs == 0 && !ch->loading) {
				*pp = ch->hnext;
				lru_unlink(ch);
				c->bytes -= ch->data.len;
				chunk_destroy(ch);
			} else {
				pp = &ch->hnext;
			}
		}
	}
	pthread_mutex_unlock(&c->lock);
}

const struct chunk_data *chunk_cache_get(struct ocitree_chunk_cache *c, const void *owner, uint64_t no,
					 chunk_decode_fn decode, void *userdata, struct ocitree_error **err)
{
	pthread_mutex_lock(&c->lock);
	size_t b = bucket_of(c, owner, no);
	struct chunk *ch;
again:
	for (ch = c->buckets[b]; ch; ch = ch->hnext)
		if (ch->owner == owner && ch->no == no)
			break;
	if (ch) {
		if (ch->loading) {
			ch->refs++;
			while (ch->loading)
				pthread_cond_wait(&c->cond, &c->lock);
			ch->refs--;
			if (ch->error) {
				/* the decoder failed; the last waiter frees it */
				int e = ch->error;
				if (ch->refs == 0)
					chunk_destroy(ch);
				pthread_mutex_unlock(&c->lock);
				return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "decompress chunk %ju: %s",
							  (uintmax_t)no, strerror(e)),
				       NULL;
			}
			goto again;
		}
		if (ch->refs++ == 0)
			lru_unlink(ch);
		pthread_mutex_unlock(&c->lock);
		return &ch->data;
	}
	ch = xcalloc(1, sizeof(*ch));
	ch->owner = owner;
	ch->no = no;
	ch->loading = true;
	ch->refs = 1;
	ch->hnext = c->buckets[b];
	c->buckets[b] = ch;
	pthread_mutex_unlock(&c->lock);

	int r = decode(userdata, no, &ch->data, err);

	pthread_mutex_lock(&c->lock);
	ch->loading = false;
	if (r < 0) {
		table_remove(c, ch);
		ch->refs--;
		ch->error = err && *err ? ocitree_error_errno(*err) : EIO;
		if (ch->refs == 0)
			chunk_destroy(ch);
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		return NULL;
	}
	c->bytes += ch->data.len;
	pthread_cond_broadcast(&c->cond);
	evict(c);
	pthread_mutex_unlock(&c->lock);
	return &ch->data;
}

void chunk_cache_put(struct ocitree_chunk_cache *c, const struct chunk_data *d)
{
	struct chunk *ch = (struct chunk *)((char *)d - offsetof(struct chunk, data));
	pthread_mutex_lock(&c->lock);
	if (--ch->refs == 0) {
		/* newest at the tail */
		ch->lru_prev = c->lru.lru_prev;
		ch->lru_next = &c->lru;
		c->lru.lru_prev->lru_next = ch;
		c->lru.lru_prev = ch;
		evict(c);
	}
	pthread_mutex_unlock(&c->lock);
}

struct prefetch_job {
	struct ocitree_chunk_cache *c;
	struct chunk *ch;
	chunk_decode_fn decode;
	void *userdata;
};

static void *prefetch_thread(void *arg)
{
	struct prefetch_job *j = arg;
	struct ocitree_chunk_cache *c = j->c;
	struct chunk *ch = j->ch;
	struct ocitree_error *err = NULL;
	int r = j->decode(j->userdata, ch->no, &ch->data, &err);
	pthread_mutex_lock(&c->lock);
	ch->loading = false;
	if (r < 0) {
		table_remove(c, ch);
		ch->error = err ? ocitree_error_errno(err) : EIO;
		if (ch->refs == 0)
			chunk_destroy(ch);
	} else {
		c->bytes += ch->data.len;
		if (ch->refs == 0) {
			ch->lru_prev = c->lru.lru_prev;
			ch->lru_next = &c->lru;
			c->lru.lru_prev->lru_next = ch;
			c->lru.lru_prev = ch;
		}
		evict(c);
	}
	c->prefetching--;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	ocitree_error_free(err);
	free(j);
	return NULL;
}

void chunk_cache_prefetch(struct ocitree_chunk_cache *c, const void *owner, uint64_t no, chunk_decode_fn decode,
			  void *userdata)
{
	pthread_mutex_lock(&c->lock);
	/* one read-ahead at a time: enough to overlap decoding with the
	 * reader, without taking cores from other requests */
	if (c->prefetching) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	size_t b = bucket_of(c, owner, no);
	for (struct chunk *ch = c->buckets[b]; ch; ch = ch->hnext) {
		if (ch->owner == owner && ch->no == no) {
			pthread_mutex_unlock(&c->lock);
			return;
		}
	}
	struct chunk *ch = xcalloc(1, sizeof(*ch));
	ch->owner = owner;
	ch->no = no;
	ch->loading = true;
	ch->hnext = c->buckets[b];
	c->buckets[b] = ch;
	c->prefetching++;
	struct prefetch_job *j = xmalloc(sizeof(*j));
	*j = (struct prefetch_job){c, ch, decode, userdata};
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	if (pthread_create(&t, &attr, prefetch_thread, j) != 0) {
		table_remove(c, ch);
		free(ch);
		free(j);
		c->prefetching--;
		pthread_cond_broadcast(&c->cond);
	}
	pthread_attr_destroy(&attr);
	pthread_mutex_unlock(&c->lock);
}
