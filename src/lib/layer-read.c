/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading layers: a thread reads the blob (hashing it), another decompresses
 * it into a ring of chunks; the consumer takes chunks without copying,
 * through libarchive for tar entries, and hands each back to a hashing
 * thread (the diff_id, and the content of the files it asked digests for).
 */
#include "config.h"

#include <archive.h>
#include <archive_entry.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <inttypes.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <sys/mman.h>

#include "layer-internal.h"
#include "layout-internal.h"
#include "ocitree/digest.h"
#include "ring.h"
#include "sha256-pair.h"

#define CHUNK_SIZE (512u << 10)
#define N_CHUNKS 16

/* ---- a bounded queue of chunks between two threads ---- */

struct chunk {
	uint8_t *data;          /* the chunk's own buffer (NULL until needed) */
	const uint8_t *mapped;  /* raw pipe: the bytes in the blob's mapping instead */
	size_t len;
	bool fresh;             /* data is mapped and not populated yet */
};

/* The ring hands out slots of chunks: the producer fills them, the
 * consumer reads them in place and releases each on its next call. */
struct pipe {
	struct ring ring;
	struct chunk chunks[N_CHUNKS];
	uint8_t *region; /* the chunks' buffers, when mapped in one piece */
	bool holding;    /* consumer side: it holds the oldest chunk */
};

/* Without buffers (alloc false), the producer makes them when it needs
 * them: the raw pipe of a mapped blob has none.  With them, they are
 * mapped, and each is populated when the producer first takes it
 * (chunk_populate): written first by the inflater, fresh pages took a
 * fault each, 2048 of them per layer (a fault is dear in this kind of
 * guest); populated, they are a call per chunk (page faults of an unpack
 * of slim 3100 against 6800), and a small layer still populates only
 * the chunks it fills. */
static void pipe_init(struct pipe *p, bool alloc)
{
	memset(p, 0, sizeof(*p));
	ring_init(&p->ring, N_CHUNKS);
	if (!alloc)
		return;
	void *m = mmap(NULL, (size_t)N_CHUNKS * CHUNK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m != MAP_FAILED)
		p->region = m;
	for (size_t i = 0; i < N_CHUNKS; i++) {
		p->chunks[i].data = p->region ? p->region + i * CHUNK_SIZE : xmalloc(CHUNK_SIZE);
		p->chunks[i].fresh = p->region != NULL;
	}
}

static void chunk_populate(struct chunk *c)
{
	if (!c->fresh)
		return;
	c->fresh = false;
#ifdef MADV_POPULATE_WRITE
	(void)madvise(c->data, CHUNK_SIZE, MADV_POPULATE_WRITE);
#endif
}

static void pipe_destroy(struct pipe *p)
{
	if (p->region)
		munmap(p->region, (size_t)N_CHUNKS * CHUNK_SIZE);
	else
		for (size_t i = 0; i < N_CHUNKS; i++)
			free(p->chunks[i].data);
	ring_destroy(&p->ring);
}

/* Producer: the next free chunk, or NULL when the consumer gave up. */
static struct chunk *pipe_slot(struct pipe *p)
{
	ssize_t k = ring_acquire(&p->ring);
	return k < 0 ? NULL : &p->chunks[k];
}

/* Consumer: release the chunk held, then wait for the next.  Returns its
 * length, 0 at a clean end (or once cancelled), -1 with the producer's
 * error. */
static ssize_t pipe_next(struct pipe *p, const uint8_t **data, struct ocitree_error **err)
{
	if (p->holding) {
		ring_release(&p->ring);
		p->holding = false;
	}
	size_t k;
	int r = ring_take(&p->ring, &k, err);
	if (r <= 0)
		return r;
	p->holding = true;
	*data = p->chunks[k].mapped ? p->chunks[k].mapped : p->chunks[k].data;
	return (ssize_t)p->chunks[k].len;
}

/* ---- the reader: fetch thread -> inflate thread -> consumer -> hasher ----
 *
 * The fetch thread reads the blob (which hashes it and checks its digest at
 * the end) into the raw pipe, a blob of a layout as slices of its mapping
 * (blob_reader_map_next), a file descriptor into buffers; the inflate thread decompresses from it into
 * the data pipe; the consumer takes chunks from the data pipe and, when it
 * is done with one, posts it to the hashing thread, which hashes it for the
 * diff_id check (and the parts of it the consumer marked as file content,
 * tar_reader_hash_entry()) and only then gives it back to the inflate
 * thread.  On two cores, the consumer of an unpack (libarchive and the
 * syscalls that write files) was the bottleneck with both SHA-256 passes on
 * it (a third of the CPU time of an unpack of the corpus image slim); the
 * hashes now run beside it.  The consumer batches what it posts and hands
 * the batch over once per chunk.
 *
 * File content lies in the chunk between the chunk's start and its release,
 * and file data starts at a 512-byte boundary of the stream: where the CPU
 * has the SHA extensions, the hashing thread walks the chunk and feeds
 * such content to the diff_id and the file's digest in one pass
 * (sha256-pair.h), a third less CPU time for those bytes. */

enum hash_op {
	H_BEGIN,    /* the consumer took a chunk: the diff_id goes on from its start */
	H_CHUNK,    /* the rest of the chunk, for the diff_id; then release it */
	H_FILE,     /* start a file digest */
	H_DATA,     /* file content */
	H_ZEROS,    /* file content: len zero bytes (a hole) */
	H_FILE_END, /* the file digest into out */
	H_END,      /* the stream is over: stop */
};

struct hash_msg {
	enum hash_op op;
	const uint8_t *data; /* H_CHUNK, H_DATA: in a chunk, or in copy */
	uint8_t *copy;       /* H_DATA: owned by the message (data libarchive had copied) */
	uint64_t len;        /* H_CHUNK, H_DATA, H_ZEROS */
	uint8_t *out;        /* H_FILE_END: 32 bytes */
};

struct hash_queue {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct hash_msg *v; /* mu: posted, not taken yet */
	size_t n, cap;      /* mu */
	bool stop;          /* mu: the reader is being freed */
	/* consumer side: the batch being put together */
	struct hash_msg *batch;
	size_t n_batch, cap_batch;
};

struct ocitree_layer_reader {
	char *what;
	struct ocitree_blob_reader *blob; /* or fd */
	int fd;
	struct decompressor *dec;
	char want_diff_id[OCITREE_DIGEST_MAX];
	char diff_id[OCITREE_DIGEST_MAX];
	uint64_t limit;
	struct pipe raw, data;
	pthread_t fetch_thread, inflate_thread, hash_thread;
	bool started, hash_joined;
	struct hash_queue hq;
	struct ocitree_hasher *hasher; /* the diff_id: the hashing thread's, until joined */
	bool pair;                     /* sha256p_available(): the diff_id in diff, not hasher */
	struct sha256p diff;
	/* The blob's digest, with pair and a mapped sha256 blob: taken by the
	 * hashing thread beside file content (sha256p_update2_and), not by
	 * the fetch thread in a pass of its own.  The fetch thread says how
	 * far the mapping is populated (bavail), the hashing thread how far
	 * it has hashed (bhashed_pub): pages are dropped behind both it and
	 * the inflater. */
	const uint8_t *bmap;
	size_t bmap_len;
	uint64_t bavail;      /* atomic: fetch thread */
	uint64_t bhashed_pub; /* atomic: hashing thread */
	size_t bdropped;      /* fetch thread */
	struct sha256p bsha;  /* the hashing thread's, until joined */
	size_t bhashed;       /* the hashing thread's, until joined */

	/* consumer */
	const struct chunk *held; /* the chunk of the data pipe held, or NULL */
	const uint8_t *cur; /* the unread part of the chunk held */
	size_t cur_left;
	uint64_t offset;
	struct ocitree_error *final_error; /* repeated by every later call */
	bool finished;
};

static void *fetch(void *arg)
{
	struct ocitree_layer_reader *r = arg;
	struct ocitree_error *err = NULL;
	bool map = r->blob != NULL;
	for (;;) {
		struct chunk *c = pipe_slot(&r->raw);
		if (!c)
			break;
		/* the inflater is done with what the slot held (and the
		 * hashing thread, with what it hashed of it) */
		if (c->mapped && r->bmap) {
			size_t end = (size_t)(c->mapped - r->bmap) + c->len;
			size_t h = (size_t)__atomic_load_n(&r->bhashed_pub, __ATOMIC_ACQUIRE);
			if (h < end)
				end = h;
			if (end > r->bdropped) {
				blob_reader_unmap(r->blob, r->bmap + r->bdropped, end - r->bdropped);
				r->bdropped = end;
			}
		} else if (c->mapped) {
			blob_reader_unmap(r->blob, c->mapped, c->len);
		}
		c->mapped = NULL;
		ssize_t n = -2;
		if (map) {
			const void *d = NULL;
			n = blob_reader_map_next(r->blob, &d, CHUNK_SIZE, &err);
			if (n > 0)
				c->mapped = d;
			if (n > 0 && r->bmap)
				__atomic_store_n(&r->bavail, (uint64_t)(c->mapped - r->bmap) + (uint64_t)n,
						 __ATOMIC_RELEASE);
			map = n != -2;
		}
		if (n == -2 && !c->data)
			c->data = xmalloc(CHUNK_SIZE);
		if (n != -2) {
			/* mapped: the bytes, the end or an error */
		} else if (r->blob) {
			n = ocitree_blob_reader_read(r->blob, c->data, CHUNK_SIZE, &err);
		} else {
			do
				n = read(r->fd, c->data, CHUNK_SIZE);
			while (n < 0 && errno == EINTR);
			if (n < 0)
				ocitree_error_set(&err, errno, "read %s", r->what);
		}
		if (n <= 0)
			break;
		c->len = (size_t)n;
		ring_push(&r->raw.ring);
	}
	ring_close(&r->raw.ring, err);
	return NULL;
}

/* The decompressor's source: the chunks of the raw pipe, not copied. */
static ssize_t src_pipe(void *ctx, const void **data, struct ocitree_error **err)
{
	struct ocitree_layer_reader *r = ctx;
	const uint8_t *d = NULL;
	ssize_t n = pipe_next(&r->raw, &d, err);
	*data = d;
	return n;
}

/* Undecompressable data is most often a damaged blob: read the rest, and
 * report the blob's digest mismatch instead when there is one. */
static void blame_blob(struct ocitree_layer_reader *r, struct ocitree_error **err)
{
	if (!r->blob || (*err && (*err)->kind != OCITREE_ERROR_INVALID))
		return;
	struct ocitree_error *e = NULL;
	const uint8_t *d;
	ssize_t n;
	while ((n = pipe_next(&r->raw, &d, &e)) > 0)
		;
	if (n == 0 && r->bmap) {
		/* the hashing thread has its own copy of the digest to go
		 * on with: this one starts from the blob's start */
		struct sha256p s;
		sha256p_init(&s);
		n = blob_reader_check_outside(r->blob, &s, 0, &e);
	}
	if (n < 0 && e->kind == OCITREE_ERROR_DIGEST) {
		ocitree_error_free(*err);
		*err = e;
	} else {
		ocitree_error_free(e);
	}
}

static void *inflate_stage(void *arg)
{
	struct ocitree_layer_reader *r = arg;
	struct ocitree_error *err = NULL;
	for (;;) {
		struct chunk *c = pipe_slot(&r->data);
		if (!c)
			break;
		chunk_populate(c);
		c->len = 0;
		bool eos = false;
		while (c->len < CHUNK_SIZE) {
			ssize_t n = decompressor_read(r->dec, c->data + c->len, CHUNK_SIZE - c->len, &err);
			if (n < 0) {
				blame_blob(r, &err);
				break;
			}
			if (n == 0) {
				eos = true;
				break;
			}
			c->len += (size_t)n;
		}
		if (c->len && !err)
			ring_push(&r->data.ring);
		if (eos || err)
			break;
	}
	/* let the fetch thread finish whatever happened here */
	ring_cancel(&r->raw.ring);
	ring_close(&r->data.ring, err);
	return NULL;
}

/* ---- the hashing stage ---- */

/* Consumer: add a message to the batch (posted by hash_flush). */
static void hash_post(struct ocitree_layer_reader *r, enum hash_op op, const void *data, uint64_t len, uint8_t *out)
{
	struct hash_queue *q = &r->hq;
	GROW(q->batch, q->cap_batch, q->n_batch + 1);
	q->batch[q->n_batch++] = (struct hash_msg){.op = op, .data = data, .len = len, .out = out};
}

/* Consumer: hand the batch to the hashing thread. */
static void hash_flush(struct ocitree_layer_reader *r)
{
	struct hash_queue *q = &r->hq;
	if (!q->n_batch)
		return;
	pthread_mutex_lock(&q->mu);
	GROW(q->v, q->cap, q->n + q->n_batch);
	memcpy(q->v + q->n, q->batch, q->n_batch * sizeof(*q->batch));
	q->n += q->n_batch;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	q->n_batch = 0;
}

static void free_copies(struct hash_msg *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].copy);
}

/* The hashing thread's digests: the diff_id (in r) and a file's. */
struct hash_state {
	struct ocitree_layer_reader *r;
	struct sha256_ctx md;     /* the file's, without r->pair */
	struct sha256p file;      /* the file's, with r->pair */
	const uint8_t *cur, *end; /* the chunk held: the part the diff_id has not had yet */
};

static void diff_update(struct hash_state *h, const uint8_t *p, size_t len)
{
	if (h->r->pair)
		sha256p_update(&h->r->diff, p, len);
	else
		ocitree_hasher_update(h->r->hasher, p, len);
}

static void file_update(struct hash_state *h, const uint8_t *p, size_t len)
{
	if (h->r->pair)
		sha256p_update(&h->file, p, len);
	else
		sha256_update(&h->md, len, p);
}

/* File content: where it lies in the chunk held, the diff_id gets the
 * bytes before it, then both digests get it. */
static void hash_data(struct hash_state *h, const uint8_t *p, size_t len, bool in_chunk)
{
	if (!in_chunk || !h->cur || p < h->cur || p + len > h->end) {
		file_update(h, p, len);
		return;
	}
	diff_update(h, h->cur, (size_t)(p - h->cur));
	struct ocitree_layer_reader *r = h->r;
	if (r->pair) {
		size_t avail = r->bmap ? (size_t)__atomic_load_n(&r->bavail, __ATOMIC_ACQUIRE) - r->bhashed : 0;
		r->bhashed += sha256p_update2_and(&r->diff, &h->file, p, len, &r->bsha, r->bmap + r->bhashed, avail);
	} else {
		ocitree_hasher_update(h->r->hasher, p, len);
		sha256_update(&h->md, len, p);
	}
	h->cur = p + len;
}

/* Content that does not come (a layer of empty files) leaves the blob's
 * digest behind, and the pages not hashed mapped: hashed alone past
 * lag bytes behind the fetch thread (most layers never are). */
#define BLOB_LAG_MAX (16u << 20)
static void blob_catch_up(struct ocitree_layer_reader *r, size_t lag)
{
	if (!r->bmap)
		return;
	size_t avail = (size_t)__atomic_load_n(&r->bavail, __ATOMIC_ACQUIRE);
	if (avail - r->bhashed > lag) {
		size_t n = avail - r->bhashed - lag;
		sha256p_update(&r->bsha, r->bmap + r->bhashed, n);
		r->bhashed += n;
	}
	__atomic_store_n(&r->bhashed_pub, (uint64_t)r->bhashed, __ATOMIC_RELEASE);
}

static void *hash_stage(void *arg)
{
	static const uint8_t zeros[65536];
	struct ocitree_layer_reader *r = arg;
	struct hash_queue *q = &r->hq;
	struct hash_state h = {.r = r};
	struct hash_msg *work = NULL;
	size_t cap_work = 0;
	for (bool end = false; !end;) {
		pthread_mutex_lock(&q->mu);
		while (!q->n && !q->stop)
			pthread_cond_wait(&q->cv, &q->mu);
		if (q->stop) {
			pthread_mutex_unlock(&q->mu);
			break;
		}
		/* take everything posted: swap the arrays */
		struct hash_msg *v = q->v;
		size_t n = q->n, cap = q->cap;
		q->v = work;
		q->cap = cap_work;
		q->n = 0;
		pthread_mutex_unlock(&q->mu);
		work = v;
		cap_work = cap;
		for (size_t i = 0; i < n; i++) {
			struct hash_msg *m = &v[i];
			switch (m->op) {
			case H_BEGIN:
				h.cur = m->data;
				h.end = m->data + m->len;
				break;
			case H_CHUNK:
				if (h.cur)
					diff_update(&h, h.cur, (size_t)(h.end - h.cur));
				h.cur = h.end = NULL;
				ring_release(&r->data.ring);
				blob_catch_up(r, BLOB_LAG_MAX);
				break;
			case H_FILE:
				if (r->pair)
					sha256p_init(&h.file);
				else
					sha256_init(&h.md);
				break;
			case H_DATA:
				hash_data(&h, m->data, (size_t)m->len, !m->copy);
				free(m->copy);
				m->copy = NULL;
				break;
			case H_ZEROS:
				for (uint64_t z = 0; z < m->len;) {
					size_t k = m->len - z < sizeof(zeros) ? (size_t)(m->len - z) : sizeof(zeros);
					file_update(&h, zeros, k);
					z += k;
				}
				break;
			case H_FILE_END:
				if (r->pair)
					sha256p_final(&h.file, m->out);
				else
					sha256_digest(&h.md, SHA256_DIGEST_SIZE, m->out);
				break;
			case H_END:
				blob_catch_up(r, 0);
				end = true;
				break;
			}
		}
	}
	free(work);
	return NULL;
}

/* Consumer: the next chunk of the data pipe, after posting the one held to
 * the hashing thread (which releases it).  As pipe_next(). */
static ssize_t data_next(struct ocitree_layer_reader *r, const uint8_t **data, struct ocitree_error **err)
{
	struct pipe *p = &r->data;
	if (p->holding) {
		hash_post(r, H_CHUNK, r->held->data, r->held->len, NULL);
		hash_flush(r);
		p->holding = false;
		r->held = NULL;
	}
	size_t k;
	int ret = ring_take(&p->ring, &k, err);
	if (ret <= 0)
		return ret;
	p->holding = true;
	r->held = &p->chunks[k];
	hash_post(r, H_BEGIN, r->held->data, r->held->len, NULL);
	*data = p->chunks[k].data;
	return (ssize_t)p->chunks[k].len;
}

/* Consumer, once the hashing thread is joined: r->diff_id. */
static void diff_id_final(struct ocitree_layer_reader *r)
{
	if (!r->pair) {
		ocitree_hasher_final(r->hasher, r->diff_id);
		return;
	}
	sha256p_final_digest(&r->diff, r->diff_id);
}

/* Consumer: the stream is over; wait for the hashing thread to finish. */
static void hash_finish(struct ocitree_layer_reader *r)
{
	hash_post(r, H_END, NULL, 0, NULL);
	hash_flush(r);
	pthread_join(r->hash_thread, NULL);
	r->hash_joined = true;
}

static struct ocitree_layer_reader *reader_new(const char *what, const char *diff_id)
{
	struct ocitree_layer_reader *r = xcalloc(1, sizeof(*r));
	r->what = xstrdup(what);
	r->fd = -1;
	if (diff_id)
		snprintf(r->want_diff_id, sizeof(r->want_diff_id), "%s", diff_id);
	pipe_init(&r->raw, false);
	pipe_init(&r->data, true);
	pthread_mutex_init(&r->hq.mu, NULL);
	pthread_cond_init(&r->hq.cv, NULL);
	r->hasher = ocitree_hasher_new("sha256");
	r->pair = sha256p_available();
	sha256p_init(&r->diff);
	return r;
}

OCITREE_EXPORT struct ocitree_layer_reader *ocitree_layer_reader_open(struct ocitree_layout *l,
								      const struct ocitree_descriptor *desc,
								      const char *diff_id, struct ocitree_error **err)
{
	enum ocitree_compression comp;
	if (ocitree_layer_compression(desc->media_type, &comp, err) < 0)
		return ocitree_error_prefix(err, "layer %s", desc->digest), NULL;
	if (diff_id && ocitree_digest_check(diff_id, err) < 0)
		return ocitree_error_prefix(err, "layer %s: diff_id", desc->digest), NULL;
	struct ocitree_blob_reader *b = ocitree_blob_reader_open(l, desc->digest, desc->size, err);
	if (!b)
		return ocitree_error_prefix(err, "layer %s", desc->digest), NULL;
	_cleanup_free_ char *what = xasprintf("layer %s", desc->digest);
	struct ocitree_layer_reader *r = reader_new(what, diff_id);
	r->blob = b;
	r->dec = decompressor_new(comp, src_pipe, r, what);
	if (r->pair) {
		r->bmap = blob_reader_hash_outside(b, &r->bmap_len);
		sha256p_init(&r->bsha);
	}
	return r;
}

OCITREE_EXPORT struct ocitree_layer_reader *ocitree_layer_reader_open_fd(int fd, enum ocitree_compression comp,
									 const char *diff_id, const char *what,
									 struct ocitree_error **err)
{
	if (diff_id && ocitree_digest_check(diff_id, err) < 0) {
		close(fd);
		return ocitree_error_prefix(err, "%s: diff_id", what), NULL;
	}
	struct ocitree_layer_reader *r = reader_new(what, diff_id);
	r->fd = fd;
	r->dec = decompressor_new(comp, src_pipe, r, what);
	return r;
}

OCITREE_EXPORT void ocitree_layer_reader_set_limit(struct ocitree_layer_reader *r, uint64_t max_bytes)
{
	r->limit = max_bytes;
}

static ssize_t fail_final(struct ocitree_layer_reader *r, struct ocitree_error **err)
{
	if (err) {
		ocitree_error_free(*err);
		*err = xmalloc(sizeof(**err));
		**err = *r->final_error;
		(*err)->msg = xstrdup(r->final_error->msg);
	}
	return -1;
}

OCITREE_EXPORT ssize_t ocitree_layer_reader_next(struct ocitree_layer_reader *r, const void **data,
						 struct ocitree_error **err)
{
	if (r->final_error)
		return fail_final(r, err);
	if (r->finished)
		return 0;
	if (r->cur_left) {
		/* the rest of a chunk ocitree_layer_reader_read() split */
		size_t n = r->cur_left;
		*data = r->cur;
		r->cur_left = 0;
		return (ssize_t)n;
	}
	if (!r->started) {
		int e = thread_create(&r->fetch_thread, NULL, fetch, r);
		if (e == 0 && (e = thread_create(&r->inflate_thread, NULL, inflate_stage, r)) != 0) {
			ring_cancel(&r->raw.ring);
			pthread_join(r->fetch_thread, NULL);
		} else if (e == 0 && (e = thread_create(&r->hash_thread, NULL, hash_stage, r)) != 0) {
			ring_cancel(&r->data.ring);
			ring_cancel(&r->raw.ring);
			pthread_join(r->inflate_thread, NULL);
			pthread_join(r->fetch_thread, NULL);
		}
		if (e != 0) {
			/* the fetch thread may have read some of the stream:
			 * starting again later would lose it */
			ocitree_error_set(&r->final_error, e, "%s: start reader threads", r->what);
			return fail_final(r, err);
		}
		r->started = true;
	}
	const uint8_t *d;
	ssize_t n = data_next(r, &d, &r->final_error);
	if (n < 0)
		return fail_final(r, err);
	if (n == 0) {
		hash_finish(r);
		/* the blob first, as when the fetch thread checks it */
		if (r->bmap && blob_reader_check_outside(r->blob, &r->bsha, r->bhashed, &r->final_error) < 0)
			return fail_final(r, err);
		diff_id_final(r);
		if (*r->want_diff_id && strcmp(r->diff_id, r->want_diff_id) != 0) {
			ocitree_error_setk(&r->final_error, OCITREE_ERROR_DIGEST,
					   "%s: uncompressed content %s does not match its diff_id %s", r->what, r->diff_id,
					   r->want_diff_id);
			return fail_final(r, err);
		}
		r->finished = true;
		return 0;
	}
	r->offset += (uint64_t)n;
	if (r->limit && r->offset > r->limit) {
		ocitree_error_setk(&r->final_error, OCITREE_ERROR_INVALID,
				   "%s: expands to more than %" PRIu64 " bytes (limit)", r->what, r->limit);
		return fail_final(r, err);
	}
	*data = d;
	return n;
}

OCITREE_EXPORT ssize_t ocitree_layer_reader_read(struct ocitree_layer_reader *r, void *buf, size_t len,
						 struct ocitree_error **err)
{
	if (len == 0)
		return 0;
	const void *d;
	ssize_t n = ocitree_layer_reader_next(r, &d, err);
	if (n <= 0)
		return n;
	if ((size_t)n > len) {
		/* keep the rest for the next call */
		r->cur = (const uint8_t *)d + len;
		r->cur_left = (size_t)n - len;
		n = (ssize_t)len;
	}
	memcpy(buf, d, (size_t)n);
	return n;
}

OCITREE_EXPORT uint64_t ocitree_layer_reader_offset(const struct ocitree_layer_reader *r)
{
	return r->offset - r->cur_left;
}

OCITREE_EXPORT const char *ocitree_layer_reader_diff_id(const struct ocitree_layer_reader *r)
{
	return r->finished ? r->diff_id : "";
}

OCITREE_EXPORT void ocitree_layer_reader_free(struct ocitree_layer_reader *r)
{
	if (!r)
		return;
	if (r->started) {
		ring_cancel(&r->data.ring);
		ring_cancel(&r->raw.ring);
		if (!r->hash_joined) {
			pthread_mutex_lock(&r->hq.mu);
			r->hq.stop = true;
			pthread_cond_signal(&r->hq.cv);
			pthread_mutex_unlock(&r->hq.mu);
			pthread_join(r->hash_thread, NULL);
		}
		pthread_join(r->inflate_thread, NULL);
		pthread_join(r->fetch_thread, NULL);
	}
	/* what the hashing thread did not take (it stopped early) */
	free_copies(r->hq.v, r->hq.n);
	free_copies(r->hq.batch, r->hq.n_batch);
	free(r->hq.v);
	free(r->hq.batch);
	pthread_mutex_destroy(&r->hq.mu);
	pthread_cond_destroy(&r->hq.cv);
	ocitree_error_free(r->final_error);
	decompressor_free(r->dec);
	ocitree_blob_reader_free(r->blob);
	if (r->fd >= 0)
		close(r->fd);
	pipe_destroy(&r->raw);
	pipe_destroy(&r->data);
	ocitree_hasher_free(r->hasher);
	free(r->what);
	free(r);
}

/* ---- tar entries through libarchive ---- */

/* libarchive is loaded on first use, not linked: through libxml2 it pulls
 * in ICU and libstdc++, a dozen libraries whose loading from a cold page
 * cache took 20 ms of every start (half of a warm mount), while only
 * unpack extracts layers with it.  Its soname has been .13 since
 * libarchive 3.0. */
#define LIBARCHIVE_SONAME "libarchive.so.13"
#define LA_SYMBOLS(X) \
	X(archive_read_new) \
	X(archive_read_support_format_tar) \
	X(archive_read_open) \
	X(archive_read_next_header) \
	X(archive_read_data_block) \
	X(archive_read_free) \
	X(archive_error_string) \
	X(archive_set_error) \
	X(archive_filter_bytes) \
	X(archive_entry_pathname) \
	X(archive_entry_hardlink) \
	X(archive_entry_filetype) \
	X(archive_entry_symlink) \
	X(archive_entry_perm) \
	X(archive_entry_uid) \
	X(archive_entry_gid) \
	X(archive_entry_size) \
	X(archive_entry_mtime) \
	X(archive_entry_mtime_nsec) \
	X(archive_entry_atime_is_set) \
	X(archive_entry_atime) \
	X(archive_entry_atime_nsec) \
	X(archive_entry_rdevmajor) \
	X(archive_entry_rdevminor) \
	X(archive_entry_xattr_reset) \
	X(archive_entry_xattr_next)

static struct {
#define X(f) __typeof__(&f) f;
	LA_SYMBOLS(X)
#undef X
} la;
static pthread_once_t la_once = PTHREAD_ONCE_INIT;
static char *la_failure; /* why loading failed, or NULL */

static void la_load(void)
{
	void *h = dlopen(LIBARCHIVE_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		la_failure = xasprintf("cannot load %s: %s", LIBARCHIVE_SONAME, dlerror());
		return;
	}
#define X(f)                                                                                           \
	if (!(*(void **)&la.f = dlsym(h, #f))) {                                                       \
		la_failure = xasprintf("%s has no symbol %s", LIBARCHIVE_SONAME, #f);                 \
		return;                                                                                \
	}
	LA_SYMBOLS(X)
#undef X
	/* the handle stays open for the process's lifetime */
}

struct ocitree_tar_reader {
	struct ocitree_layer_reader *r;
	struct archive *a;
	struct ocitree_tar_entry e;
	struct ocitree_xattr *xattrs;
	size_t cap_xattrs;
	struct ocitree_error *cb_err; /* the reader's error behind a libarchive failure */
	bool at_end;
	/* tar_reader_hash_entry(): the digest of the current entry goes there */
	uint8_t *hash_out;
	int64_t hash_pos; /* the entry's bytes posted so far */
};

static int archive_failure(struct ocitree_tar_reader *tr, const char *ctx, struct ocitree_error **err);

static la_ssize_t tar_read_cb(struct archive *a, void *ud, const void **buf)
{
	struct ocitree_tar_reader *tr = ud;
	ssize_t n = ocitree_layer_reader_next(tr->r, buf, &tr->cb_err);
	if (n < 0) {
		la.archive_set_error(a, EIO, "%s", tr->cb_err ? tr->cb_err->msg : "read error");
		return -1;
	}
	return n;
}

OCITREE_EXPORT struct ocitree_tar_reader *ocitree_tar_reader_new(struct ocitree_layer_reader *r,
								 struct ocitree_error **err)
{
	pthread_once(&la_once, la_load);
	if (la_failure)
		return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "%s: %s", r->what, la_failure), NULL;
	struct ocitree_tar_reader *tr = xcalloc(1, sizeof(*tr));
	tr->r = r;
	tr->a = la.archive_read_new();
	if (!tr->a) {
		free(tr);
		return ocitree_error_set(err, ENOMEM, "%s: libarchive", r->what), NULL;
	}
	la.archive_read_support_format_tar(tr->a);
	if (la.archive_read_open(tr->a, tr, NULL, tar_read_cb, NULL) != ARCHIVE_OK) {
		/* the stream's own error (which names the layer) when it failed */
		archive_failure(tr, "invalid tar archive", err);
		ocitree_tar_reader_free(tr);
		return NULL;
	}
	return tr;
}

/* A libarchive failure: the stream's own error when there is one (a digest
 * mismatch stays a digest mismatch), else libarchive's message. */
static int archive_failure(struct ocitree_tar_reader *tr, const char *ctx, struct ocitree_error **err)
{
	if (tr->cb_err) {
		if (err) {
			ocitree_error_free(*err);
			*err = tr->cb_err;
		} else {
			ocitree_error_free(tr->cb_err);
		}
		tr->cb_err = NULL;
		return -1;
	}
	_cleanup_free_ char *m = xstrdup_or_null(la.archive_error_string(tr->a));
	/* a damaged archive is most often a damaged blob: read on to the
	 * digest checks, whose error says more */
	struct ocitree_error *e = NULL;
	const void *d;
	ssize_t n;
	while ((n = ocitree_layer_reader_next(tr->r, &d, &e)) > 0)
		;
	if (n < 0 && e->kind == OCITREE_ERROR_DIGEST) {
		if (err) {
			ocitree_error_free(*err);
			*err = e;
		} else {
			ocitree_error_free(e);
		}
		return -1;
	}
	ocitree_error_free(e);
	return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: %s%s%s", tr->r->what, ctx, m ? ": " : "",
				  m ? m : "");
}

/* After the end-of-archive marker: read (and so verify) the rest of the
 * stream, which must be short. */
static int drain_trailer(struct ocitree_tar_reader *tr, struct ocitree_error **err)
{
	int64_t used = la.archive_filter_bytes(tr->a, 0);
	for (;;) {
		const void *d;
		ssize_t n = ocitree_layer_reader_next(tr->r, &d, err);
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if (used >= 0 && ocitree_layer_reader_offset(tr->r) - (uint64_t)used > OCITREE_LAYER_MAX_TRAILER)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
						  "%s: more than %u bytes of data after the end of the archive",
						  tr->r->what, OCITREE_LAYER_MAX_TRAILER);
	}
}

/* The digest of the entry being hashed is complete: the rest is zeros. */
static void hash_entry_end(struct ocitree_tar_reader *tr)
{
	if (!tr->hash_out)
		return;
	if (tr->hash_pos < tr->e.size)
		hash_post(tr->r, H_ZEROS, NULL, (uint64_t)(tr->e.size - tr->hash_pos), NULL);
	hash_post(tr->r, H_FILE_END, NULL, 0, tr->hash_out);
	tr->hash_out = NULL;
}

void tar_reader_hash_entry(struct ocitree_tar_reader *tr, uint8_t out[32])
{
	hash_entry_end(tr);
	hash_post(tr->r, H_FILE, NULL, 0, NULL);
	tr->hash_out = out;
	tr->hash_pos = 0;
}

/* Post a block of the entry's data, at off, to the digest. */
static void hash_block(struct ocitree_tar_reader *tr, const void *buf, size_t size, int64_t off)
{
	struct ocitree_layer_reader *r = tr->r;
	if (off > tr->hash_pos)
		hash_post(r, H_ZEROS, NULL, (uint64_t)(off - tr->hash_pos), NULL);
	const uint8_t *p = buf;
	if (r->held && p >= r->held->data && p + size <= r->held->data + r->held->len) {
		/* in the chunk held: it stays until the hashing thread is done */
		hash_post(r, H_DATA, p, size, NULL);
	} else if (size) {
		/* in libarchive's own buffer (a block across two chunks) */
		uint8_t *copy = xmalloc(size);
		memcpy(copy, p, size);
		hash_post(r, H_DATA, copy, size, NULL);
		r->hq.batch[r->hq.n_batch - 1].copy = copy;
	}
	tr->hash_pos = off + (int64_t)size;
}

OCITREE_EXPORT int ocitree_tar_reader_next(struct ocitree_tar_reader *tr, const struct ocitree_tar_entry **out,
					   struct ocitree_error **err)
{
	hash_entry_end(tr);
	if (tr->at_end)
		return 0;
	struct archive_entry *ae = NULL;
	int r = la.archive_read_next_header(tr->a, &ae);
	if (r == ARCHIVE_EOF) {
		tr->at_end = true;
		return drain_trailer(tr, err) < 0 ? -1 : 0;
	}
	if (r == ARCHIVE_WARN) {
		log_warn("%s: %s: %s", tr->r->what, ae && la.archive_entry_pathname(ae) ? la.archive_entry_pathname(ae) : "?",
			 la.archive_error_string(tr->a));
	} else if (r != ARCHIVE_OK) {
		return archive_failure(tr, "invalid tar archive", err);
	}
	struct ocitree_tar_entry *e = &tr->e;
	memset(e, 0, sizeof(*e));
	e->path = la.archive_entry_pathname(ae);
	if (!e->path)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: entry without a name", tr->r->what);
	const char *hl = la.archive_entry_hardlink(ae);
	if (hl) {
		e->type = OCITREE_TAR_HARDLINK;
		e->linkname = hl;
	} else {
		switch (la.archive_entry_filetype(ae)) {
		case AE_IFREG: e->type = OCITREE_TAR_REG; break;
		case AE_IFDIR: e->type = OCITREE_TAR_DIR; break;
		case AE_IFLNK:
			e->type = OCITREE_TAR_SYMLINK;
			e->linkname = la.archive_entry_symlink(ae);
			if (!e->linkname)
				e->linkname = "";
			break;
		case AE_IFCHR: e->type = OCITREE_TAR_CHAR; break;
		case AE_IFBLK: e->type = OCITREE_TAR_BLOCK; break;
		case AE_IFIFO: e->type = OCITREE_TAR_FIFO; break;
		default:
			return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "%s: entry '%s': unsupported file type",
						  tr->r->what, e->path);
		}
	}
	e->mode = la.archive_entry_perm(ae) & 07777;
	e->uid = la.archive_entry_uid(ae);
	e->gid = la.archive_entry_gid(ae);
	e->size = e->type == OCITREE_TAR_REG ? la.archive_entry_size(ae) : 0;
	if (e->size < 0)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: entry '%s': invalid size", tr->r->what,
					  e->path);
	e->mtime.tv_sec = la.archive_entry_mtime(ae);
	e->mtime.tv_nsec = la.archive_entry_mtime_nsec(ae);
	if (la.archive_entry_atime_is_set(ae)) {
		e->atime.tv_sec = la.archive_entry_atime(ae);
		e->atime.tv_nsec = la.archive_entry_atime_nsec(ae);
	}
	e->devmajor = (uint32_t)la.archive_entry_rdevmajor(ae);
	e->devminor = (uint32_t)la.archive_entry_rdevminor(ae);
	size_t n = (size_t)la.archive_entry_xattr_reset(ae);
	GROW(tr->xattrs, tr->cap_xattrs, n);
	const char *name;
	const void *value;
	size_t len;
	while (e->n_xattrs < n && la.archive_entry_xattr_next(ae, &name, &value, &len) == ARCHIVE_OK) {
		/* a pax record with an empty value unsets its key (POSIX), and Go's
		 * reader (umoci, Docker) drops it: so do we */
		if (len == 0) {
			n--;
			continue;
		}
		tr->xattrs[e->n_xattrs].name = name;
		tr->xattrs[e->n_xattrs].value = value;
		tr->xattrs[e->n_xattrs].len = len;
		e->n_xattrs++;
	}
	e->xattrs = tr->xattrs;
	*out = e;
	return 1;
}

OCITREE_EXPORT ssize_t ocitree_tar_reader_data(struct ocitree_tar_reader *tr, const void **buf, int64_t *offset,
					       struct ocitree_error **err)
{
	size_t size = 0;
	la_int64_t off = 0;
	int r = la.archive_read_data_block(tr->a, buf, &size, &off);
	if (r == ARCHIVE_EOF) {
		hash_entry_end(tr);
		return 0;
	}
	if (r == ARCHIVE_WARN) {
		log_warn("%s: %s: %s", tr->r->what, tr->e.path, la.archive_error_string(tr->a));
	} else if (r != ARCHIVE_OK) {
		_cleanup_free_ char *ctx = xasprintf("entry '%s'", tr->e.path);
		return archive_failure(tr, ctx, err);
	}
	if (tr->hash_out)
		hash_block(tr, *buf, size, off);
	*offset = off;
	return (ssize_t)size;
}

OCITREE_EXPORT void ocitree_tar_reader_free(struct ocitree_tar_reader *tr)
{
	if (!tr)
		return;
	la.archive_read_free(tr->a);
	ocitree_error_free(tr->cb_err);
	free(tr->xattrs);
	free(tr);
}
