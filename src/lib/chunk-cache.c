/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The chunk cache: decompressed chunks of gzip layers keyed by (owner,
 * chunk number), in an LRU bounded by bytes.  One mutex guards the whole
 * cache; decoding runs without it.
 *
 * A chunk is QUEUED (waiting for the read-ahead thread), LOADING (one
 * thread decodes it; other readers wait on cond instead of decoding it
 * twice) or READY.  A reader that needs a QUEUED chunk takes it out of the
 * queue and decodes it itself rather than wait behind other read-ahead.
 *
 * Memory: bytes counts every buffer the cache owns (READY chunks and those
 * being decoded).  Unused READY chunks are evicted, oldest first, while
 * bytes exceeds max_bytes; chunks held by readers (and at most one being
 * decoded per thread) can take it over the bound.  Read-ahead is limited to
 * a quarter of the bound, so it does not evict what readers still use.
 *
 * Read-ahead runs in one thread of the cache, started on the first
 * chunk_cache_prefetch() (so after a daemon's fork): on the two-core
 * machines this is made for, one core inflates the next chunks of a layer
 * while the other serves the current one.
 */
#include "config.h"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

#include "chunk-cache.h"

/* read-ahead requests waiting at most; more are dropped */
#define QUEUE_MAX 64u
/* buffers are sized in these steps, so a buffer taken over from an evicted
 * chunk fits the next one (gzip chunks are CHUNK_CACHE_CHUNK, some a
 * deflate block more with zlib) */
#define ALLOC_STEP (64u << 10)
/* 4 MiB ahead of a sequential reader */
#define DEFAULT_READAHEAD 16u

enum chunk_state {
	CHUNK_QUEUED,
	CHUNK_LOADING,
	CHUNK_READY,
};

struct chunk {
	const void *owner;
	uint64_t no;
	struct chunk *hnext;               /* hash chain */
	struct chunk *lru_prev, *lru_next; /* only while READY and refs == 0 */
	struct chunk *qnext;               /* read-ahead queue, while QUEUED */
	chunk_decode_fn decode;            /* while QUEUED */
	void *userdata;                    /* while QUEUED */
	unsigned refs;
	enum chunk_state state;
	bool ahead; /* decoded by read-ahead and not read yet */
	int error;  /* errno of a failed decode, for the waiters */
	bool bad;   /* a corrupt chunk, kept in the table so that it fails at once */
	char *why;  /* what the decoder said of it (bad chunks) */
	struct chunk_data data;
};

struct ocitree_chunk_cache {
	pthread_mutex_t lock;
	pthread_cond_t cond;    /* signalled when a chunk leaves LOADING or the read-ahead thread goes idle */
	pthread_cond_t work;    /* signalled when the queue gets a chunk, or on stop */
	size_t max_bytes;       /* immutable */
	unsigned readahead;     /* atomic: chunks of read-ahead per reader */
	size_t bytes;           /* lock: buffers owned by the cache */
	struct chunk **buckets; /* lock */
	size_t n_buckets;       /* immutable */
	struct chunk lru;       /* lock: sentinel; lru.lru_next is the oldest */
	struct chunk *qhead, *qtail; /* lock: read-ahead queue, oldest first */
	unsigned queued;        /* lock: chunks in the queue */
	bool started, stop;     /* lock: the read-ahead thread */
	const void *busy;       /* lock: owner of the chunk the read-ahead thread decodes, or NULL */
	pthread_t thread;       /* valid while started */
	struct chunk_cache_stats stats; /* lock */
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
	pthread_cond_init(&c->work, NULL);
	c->max_bytes = max_bytes;
	c->readahead = DEFAULT_READAHEAD;
	c->n_buckets = 1024;
	c->buckets = xcalloc(c->n_buckets, sizeof(*c->buckets));
	c->lru.lru_next = c->lru.lru_prev = &c->lru;
	return c;
}

void chunk_cache_set_readahead(struct ocitree_chunk_cache *c, unsigned chunks)
{
	__atomic_store_n(&c->readahead, chunks, __ATOMIC_RELAXED);
}

unsigned chunk_cache_readahead(const struct ocitree_chunk_cache *c)
{
	/* a relaxed read: the setting changes before reads start, if ever */
	unsigned n = __atomic_load_n(&c->readahead, __ATOMIC_RELAXED);
	size_t quarter = c->max_bytes / 4 / CHUNK_CACHE_CHUNK;
	return n < quarter ? n : (unsigned)quarter;
}

void chunk_cache_stats(struct ocitree_chunk_cache *c, struct chunk_cache_stats *st)
{
	pthread_mutex_lock(&c->lock);
	*st = c->stats;
	st->bytes = c->bytes;
	st->pending = c->queued + (c->busy ? 1 : 0);
	pthread_mutex_unlock(&c->lock);
}

static void lru_unlink(struct chunk *ch)
{
	if (ch->lru_next) {
		ch->lru_prev->lru_next = ch->lru_next;
		ch->lru_next->lru_prev = ch->lru_prev;
		ch->lru_next = ch->lru_prev = NULL;
	}
}

/* newest at the tail */
static void lru_append(struct ocitree_chunk_cache *c, struct chunk *ch)
{
	ch->lru_prev = c->lru.lru_prev;
	ch->lru_next = &c->lru;
	c->lru.lru_prev->lru_next = ch;
	c->lru.lru_prev = ch;
}

static void table_insert(struct ocitree_chunk_cache *c, struct chunk *ch)
{
	size_t b = bucket_of(c, ch->owner, ch->no);
	ch->hnext = c->buckets[b];
	c->buckets[b] = ch;
}

static void table_remove(struct ocitree_chunk_cache *c, struct chunk *ch)
{
	struct chunk **pp = &c->buckets[bucket_of(c, ch->owner, ch->no)];
	while (*pp && *pp != ch)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = ch->hnext;
}

static struct chunk *table_find(struct ocitree_chunk_cache *c, const void *owner, uint64_t no)
{
	for (struct chunk *ch = c->buckets[bucket_of(c, owner, no)]; ch; ch = ch->hnext)
		if (ch->owner == owner && ch->no == no)
			return ch;
	return NULL;
}

static void queue_remove(struct ocitree_chunk_cache *c, struct chunk *ch)
{
	struct chunk *prev = NULL;
	for (struct chunk *q = c->qhead; q; prev = q, q = q->qnext) {
		if (q != ch)
			continue;
		if (prev)
			prev->qnext = q->qnext;
		else
			c->qhead = q->qnext;
		if (c->qtail == q)
			c->qtail = prev;
		q->qnext = NULL;
		c->queued--;
		return;
	}
}

/* Free a chunk's buffer and the chunk.  Lock held. */
static void chunk_destroy(struct ocitree_chunk_cache *c, struct chunk *ch)
{
	if (ch->data.data)
		c->bytes -= ch->data.cap;
	if (ch->ahead)
		c->stats.readahead_wasted++;
	free(ch->data.data);
	free(ch->why);
	free(ch);
}

/* The unused chunk to evict first, NULL for none: the oldest, but for
 * read-ahead no reader has come for yet, up to a quarter of the cache (what
 * read-ahead may take).  Those are what readers will want next; a chunk a
 * reader went through seldom is (streams go forward: a full read of slim
 * with a 32 MiB cache decoded 37 read-ahead chunks twice, evicted by a big
 * file's stream in the same layer before their reader got to them).  Lock
 * held. */
static struct chunk *victim(struct ocitree_chunk_cache *c)
{
	size_t spared = 0;
	for (struct chunk *ch = c->lru.lru_next; ch != &c->lru; ch = ch->lru_next) {
		if (!ch->ahead || spared + ch->data.cap > c->max_bytes / 4)
			return ch;
		spared += ch->data.cap;
	}
	return c->lru.lru_next != &c->lru ? c->lru.lru_next : NULL;
}

/* Drop unused chunks, oldest first, until the cache fits.  Lock held. */
static void evict(struct ocitree_chunk_cache *c)
{
	struct chunk *ch;
	while (c->bytes > c->max_bytes && (ch = victim(c))) {
		lru_unlink(ch);
		table_remove(c, ch);
		chunk_destroy(c, ch);
	}
}

/* A new buffer of cap bytes, its pages mapped in one call: the decoder
 * would otherwise take a page fault every 4 KiB, which in a virtual machine
 * costs a good part of what inflating those bytes does.  Before Linux 5.14
 * the madvise fails and the faults happen. */
static unsigned char *new_buffer(size_t cap)
{
	unsigned char *p = xmalloc(cap);
#ifdef MADV_POPULATE_WRITE
	madvise_within(p, cap, MADV_POPULATE_WRITE);
#endif
	return p;
}

void chunk_cache_alloc(struct ocitree_chunk_cache *c, size_t len, struct chunk_data *out)
{
	size_t cap = (len + ALLOC_STEP - 1) / ALLOC_STEP * ALLOC_STEP;
	if (!cap)
		cap = ALLOC_STEP;
	pthread_mutex_lock(&c->lock);
	/* full: take over the buffer of the oldest unused chunk (its pages are
	 * already mapped), or free unused chunks until the new one fits */
	struct chunk *ch;
	while (c->bytes + cap > c->max_bytes && (ch = victim(c))) {
		lru_unlink(ch);
		table_remove(c, ch);
		if (ch->data.cap >= cap) {
			/* the buffer stays the cache's: bytes do not change */
			*out = (struct chunk_data){.data = steal_pointer(&ch->data.data), .cap = ch->data.cap};
			chunk_destroy(c, ch);
			pthread_mutex_unlock(&c->lock);
			return;
		}
		chunk_destroy(c, ch);
	}
	c->bytes += cap;
	if (c->bytes > c->stats.peak_bytes)
		c->stats.peak_bytes = c->bytes;
	pthread_mutex_unlock(&c->lock);
	*out = (struct chunk_data){.data = new_buffer(cap), .cap = cap};
}

static void wait_readahead_idle(struct ocitree_chunk_cache *c, const void *owner)
{
	while (c->busy && (!owner || c->busy == owner))
		pthread_cond_wait(&c->cond, &c->lock);
}

OCITREE_EXPORT void ocitree_chunk_cache_free(struct ocitree_chunk_cache *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_broadcast(&c->work);
	bool started = c->started;
	pthread_mutex_unlock(&c->lock);
	if (started)
		pthread_join(c->thread, NULL);
	log_debug("chunk cache: %ju chunks decoded, %ju by read-ahead (%ju used, %ju evicted unused), peak %zu KiB",
		  (uintmax_t)c->stats.decodes, (uintmax_t)c->stats.readahead, (uintmax_t)c->stats.readahead_used,
		  (uintmax_t)c->stats.readahead_wasted, c->stats.peak_bytes >> 10);
	for (size_t i = 0; i < c->n_buckets; i++) {
		struct chunk *ch = c->buckets[i];
		while (ch) {
			struct chunk *n = ch->hnext;
			chunk_destroy(c, ch);
			ch = n;
		}
	}
	free(c->buckets);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	pthread_cond_destroy(&c->work);
	free(c);
}

void chunk_cache_forget_owner(struct ocitree_chunk_cache *c, const void *owner)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	/* the read-ahead thread may be using owner */
	wait_readahead_idle(c, owner);
	for (size_t i = 0; i < c->n_buckets; i++) {
		struct chunk **pp = &c->buckets[i];
		while (*pp) {
			struct chunk *ch = *pp;
			if (ch->owner == owner && ch->refs == 0 && ch->state != CHUNK_LOADING) {
				*pp = ch->hnext;
				if (ch->state == CHUNK_QUEUED)
					queue_remove(c, ch);
				lru_unlink(ch);
				chunk_destroy(c, ch);
			} else {
				pp = &ch->hnext;
			}
		}
	}
	pthread_mutex_unlock(&c->lock);
}

/* The end of a decode of ch by this thread.  Lock held. */
static void finish_decode(struct ocitree_chunk_cache *c, struct chunk *ch, int r, struct ocitree_error *err)
{
	if (r < 0) {
		ch->error = err ? ocitree_error_errno(err) : EIO;
		if (!ch->error)
			ch->error = EIO;
		/* corrupt data stays corrupt (the blob does not change): the
		 * chunk stays in the table and later reads fail without
		 * decoding it again (the kernel retries a failed read page by
		 * page); any other failure may pass, and is forgotten */
		ch->bad = err && err->kind == OCITREE_ERROR_INVALID;
		if (ch->bad)
			ch->why = xstrdup(err->msg);
		if (!ch->bad)
			table_remove(c, ch);
		ch->ahead = false;
		if (ch->data.data) {
			c->bytes -= ch->data.cap;
			free(steal_pointer(&ch->data.data));
		}
		ch->state = CHUNK_READY; /* out of LOADING: waiters see the error */
	} else {
		ch->state = CHUNK_READY;
	}
	c->stats.decodes++;
	pthread_cond_broadcast(&c->cond);
}

const struct chunk_data *chunk_cache_get(struct ocitree_chunk_cache *c, const void *owner, uint64_t no,
					 chunk_decode_fn decode, void *userdata, struct ocitree_error **err)
{
	pthread_mutex_lock(&c->lock);
	struct chunk *ch;
	for (;;) {
		ch = table_find(c, owner, no);
		if (!ch) {
			ch = xcalloc(1, sizeof(*ch));
			ch->owner = owner;
			ch->no = no;
			table_insert(c, ch);
			break;
		}
		if (ch->state == CHUNK_QUEUED) {
			/* needed now: decode it here rather than wait for the
			 * read-ahead thread to get to it */
			queue_remove(c, ch);
			break;
		}
		if (ch->state == CHUNK_READY && ch->bad) {
			ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s", ch->why);
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		if (ch->state == CHUNK_READY) {
			if (ch->refs++ == 0)
				lru_unlink(ch);
			if (ch->ahead) {
				ch->ahead = false;
				c->stats.readahead_used++;
			}
			pthread_mutex_unlock(&c->lock);
			return &ch->data;
		}
		ch->refs++;
		while (ch->state == CHUNK_LOADING)
			pthread_cond_wait(&c->cond, &c->lock);
		ch->refs--;
		if (ch->error) {
			/* the decoder failed and took it out of the table; the
			 * last one to let go frees it */
			if (ch->bad)
				ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s", ch->why);
			else
				ocitree_error_setk(err, OCITREE_ERROR_INVALID, "decompress chunk %ju: %s",
						   (uintmax_t)no, strerror(ch->error));
			if (ch->refs == 0 && !ch->bad)
				chunk_destroy(c, ch);
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
	}
	ch->state = CHUNK_LOADING;
	ch->refs++;
	pthread_mutex_unlock(&c->lock);

	struct chunk_data d = {0};
	struct ocitree_error *derr = NULL; /* its kind decides if the chunk is corrupt */
	int r = decode(userdata, c, no, &d, &derr);
	if (r < 0 && err && !*err)
		*err = steal_pointer(&derr);

	pthread_mutex_lock(&c->lock);
	ch->data = d;
	finish_decode(c, ch, r, derr ? derr : err ? *err : NULL);
	ocitree_error_free(derr);
	if (r < 0) {
		if (--ch->refs == 0 && !ch->bad)
			chunk_destroy(c, ch);
		pthread_mutex_unlock(&c->lock);
		return NULL;
	}
	evict(c);
	pthread_mutex_unlock(&c->lock);
	return &ch->data;
}

void chunk_cache_put(struct ocitree_chunk_cache *c, const struct chunk_data *d)
{
	struct chunk *ch = (struct chunk *)((char *)d - offsetof(struct chunk, data));
	pthread_mutex_lock(&c->lock);
	if (--ch->refs == 0) {
		lru_append(c, ch);
		evict(c);
	}
	pthread_mutex_unlock(&c->lock);
}

static void *readahead_thread(void *arg)
{
	struct ocitree_chunk_cache *c = arg;
	/* a name of its own, for top -H, perf and /proc/PID/task */
	(void)pthread_setname_np(pthread_self(), "ocitree-ahead");
	/* work ahead of readers: when it wakes up it takes a CPU as it comes
	 * free, rather than preempting a reader (or the FUSE worker that
	 * answers one) */
	struct sched_param sp = {0};
	(void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (!c->stop && !c->qhead)
			pthread_cond_wait(&c->work, &c->lock);
		if (c->stop)
			break;
		struct chunk *ch = c->qhead;
		c->qhead = ch->qnext;
		if (!c->qhead)
			c->qtail = NULL;
		ch->qnext = NULL;
		c->queued--;
		ch->state = CHUNK_LOADING;
		c->busy = ch->owner;
		chunk_decode_fn decode = ch->decode;
		void *userdata = ch->userdata;
		pthread_mutex_unlock(&c->lock);

		struct ocitree_error *err = NULL;
		struct chunk_data d = {0};
		int r = decode(userdata, c, ch->no, &d, &err);

		pthread_mutex_lock(&c->lock);
		ch->data = d;
		c->stats.readahead++;
		finish_decode(c, ch, r, err);
		if (r < 0) {
			if (ch->refs == 0 && !ch->bad)
				chunk_destroy(c, ch);
		} else if (ch->refs == 0) {
			/* nobody waits for it: unused until a reader comes */
			ch->ahead = true;
			lru_append(c, ch);
			evict(c);
		}
		c->busy = NULL;
		pthread_cond_broadcast(&c->cond);
		ocitree_error_free(err);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

void chunk_cache_prefetch(struct ocitree_chunk_cache *c, const void *owner, uint64_t no, chunk_decode_fn decode,
			  void *userdata)
{
	pthread_mutex_lock(&c->lock);
	if (c->stop || c->queued >= QUEUE_MAX || table_find(c, owner, no))
		goto out;
	if (!c->started) {
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		/* the thread only calls decoders: a small stack will do */
		pthread_attr_setstacksize(&attr, 256u << 10);
		c->started = pthread_create(&c->thread, &attr, readahead_thread, c) == 0;
		pthread_attr_destroy(&attr);
		if (!c->started) {
			/* no read-ahead then; readers decode what they need */
			__atomic_store_n(&c->readahead, 0, __ATOMIC_RELAXED);
			goto out;
		}
	}
	struct chunk *ch = xcalloc(1, sizeof(*ch));
	ch->owner = owner;
	ch->no = no;
	ch->state = CHUNK_QUEUED;
	ch->decode = decode;
	ch->userdata = userdata;
	table_insert(c, ch);
	if (c->qtail)
		c->qtail->qnext = ch;
	else
		c->qhead = ch;
	c->qtail = ch;
	c->queued++;
	pthread_cond_signal(&c->work);
out:
	pthread_mutex_unlock(&c->lock);
}
