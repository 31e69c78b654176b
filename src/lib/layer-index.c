/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Layer indexes (see ocitree/layer-index.h): opening one from the cache or
 * by an index pass, opening many in parallel, and what an open index tells.
 * The other parts are listed in layer-index-internal.h.
 */
#include "config.h"

#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "layer-index-internal.h"
#include "ring.h"

OCITREE_EXPORT char *ocitree_cache_dir_default(void)
{
	const char *e = getenv("OCITREE_CACHE_DIR");
	if (e && *e)
		return xstrdup(e);
	e = getenv("XDG_CACHE_HOME");
	if (e && *e == '/')
		return xasprintf("%s/ocitree", e);
	e = getenv("HOME");
	if (e && *e == '/')
		return xasprintf("%s/.cache/ocitree", e);
	return NULL;
}

int layer_index_cache_subdir(const char *cache_dir, const char *sub, const char *alg, bool create,
			     struct ocitree_error **err)
{
	_cleanup_free_ char *path = xasprintf("%s/%s/%s", cache_dir, sub, alg);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 || !create)
		return fd >= 0 ? fd : ocitree_error_set(err, errno, "open cache directory '%s'", path);
	if (mkdir_p(path, 0700) < 0)
		return ocitree_error_set(err, errno, "create cache directory '%s'", path);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return ocitree_error_set(err, errno, "open cache directory '%s'", path);
	return fd;
}

char *layer_index_digest_alg(const char *digest)
{
	return xstrndup(digest, (size_t)(strchr(digest, ':') - digest));
}

struct ocitree_layer_index *layer_index_alloc(const char *digest)
{
	struct ocitree_layer_index *idx = xcalloc(1, sizeof(*idx));
	snprintf(idx->digest, sizeof(idx->digest), "%s", digest);
	idx->blob_fd = -1;
	idx->data_fd = -1;
	return idx;
}

OCITREE_EXPORT struct ocitree_layer_index *ocitree_layer_index_open(struct ocitree_layout *l,
								    const struct ocitree_descriptor *layer,
								    const char *diff_id,
								    const struct ocitree_layer_index_opts *opts,
								    struct ocitree_error **err)
{
	enum ocitree_compression comp;
	if (ocitree_layer_compression(layer->media_type, &comp, err) < 0)
		return NULL;
	if (ocitree_digest_check(layer->digest, err) < 0)
		return NULL;
	if (diff_id && ocitree_digest_check(diff_id, err) < 0)
		return ocitree_error_prefix(err, "diff_id"), NULL;
	if (comp == OCITREE_COMPRESSION_NONE && diff_id && strcmp(diff_id, layer->digest) != 0)
		return ocitree_error_setk(err, OCITREE_ERROR_DIGEST,
					  "uncompressed layer %s does not match its diff_id %s", layer->digest, diff_id),
		       NULL;
	if (!opts || !opts->cache_dir)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "no cache directory for layer indexes"), NULL;
	_cleanup_free_ char *alg = layer_index_digest_alg(layer->digest);
	_cleanup_close_ int blob_fd = ocitree_blob_open_fd(l, layer->digest, err);
	if (blob_fd < 0)
		return NULL;
	struct ocitree_error *cerr = NULL;
	_cleanup_close_ int idx_dirfd = layer_index_cache_subdir(opts->cache_dir, IDX_DIR, alg, !opts->no_write, &cerr);
	if (idx_dirfd < 0) {
		log_info("layer %s: no index cache: %s", layer->digest, cerr->msg);
		ocitree_error_free(cerr);
		cerr = NULL;
	}
	struct ocitree_layer_index *idx = NULL;
	if (idx_dirfd >= 0 && !opts->rebuild) {
		idx = layer_index_load_cached(layer, comp, opts, idx_dirfd, &cerr);
		if (!idx) {
			if (cerr && cerr->kind != OCITREE_ERROR_NOT_FOUND)
				log_info("layer %s: rebuilding its index: %s", layer->digest, cerr->msg);
			ocitree_error_free(cerr);
			cerr = NULL;
		} else {
			idx->cached = true;
		}
	}
	if (!idx) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		idx = layer_index_build(l, layer, comp, diff_id, opts, idx_dirfd, err);
		if (!idx)
			return ocitree_error_prefix(err, "%s", layer->digest), NULL;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		log_info("layer %s: indexed %zu entries, %ju bytes, in %.3f s", layer->digest, idx->n_entries,
			 (uintmax_t)idx->tar_size, (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	}
	if (comp == OCITREE_COMPRESSION_NONE) {
		idx->data_fd = dup(blob_fd);
		if (idx->data_fd < 0) {
			ocitree_layer_index_free(idx);
			return ocitree_error_set(err, errno, "layer %s: dup", layer->digest), NULL;
		}
	}
	idx->blob_fd = steal_fd(&blob_fd);
	idx->chunks = opts->chunks;
	layer_index_map_blob(idx);
	return idx;
}

struct open_many_job {
	struct ocitree_layout *l;
	const struct ocitree_descriptor *layers;
	char *const *diff_ids;
	size_t n;
	const struct ocitree_layer_index_opts *opts;
	struct ocitree_layer_index **out;
	struct ocitree_error **errs;
	pthread_mutex_t lock;
	size_t next; /* lock */
	/* progress, summed over the layers: */
	size_t done;                /* lock: layers opened */
	struct ocitree_progress *per; /* lock: the last told of each layer */
};

struct open_many_layer {
	struct open_many_job *j;
	size_t i;
};

static void open_many_progress(const struct ocitree_progress *p, void *userdata)
{
	struct open_many_layer *ml = userdata;
	struct open_many_job *j = ml->j;
	pthread_mutex_lock(&j->lock);
	if (p)
		j->per[ml->i] = *p;
	struct ocitree_progress sum = {.phase = "index", .n_layers = j->n};
	sum.layer = j->done < j->n ? j->done + 1 : j->n;
	for (size_t i = 0; i < j->n; i++) {
		sum.bytes += j->per[i].bytes;
		sum.entries += j->per[i].entries;
	}
	j->opts->progress(&sum, j->opts->progress_data);
	pthread_mutex_unlock(&j->lock);
}

static void *open_many_worker(void *arg)
{
	struct open_many_job *j = arg;
	for (;;) {
		pthread_mutex_lock(&j->lock);
		size_t i = j->next++;
		pthread_mutex_unlock(&j->lock);
		if (i >= j->n)
			return NULL;
		struct ocitree_layer_index_opts o = *j->opts;
		struct open_many_layer ml = {.j = j, .i = i};
		if (o.progress) {
			o.progress = open_many_progress;
			o.progress_data = &ml;
		}
		j->out[i] = ocitree_layer_index_open(j->l, &j->layers[i], j->diff_ids ? j->diff_ids[i] : NULL, &o,
						     &j->errs[i]);
		if (o.progress) {
			/* a cached index is not worth a word */
			bool built = j->out[i] && !j->out[i]->cached;
			pthread_mutex_lock(&j->lock);
			j->done++;
			if (built)
				j->per[i] = (struct ocitree_progress){.bytes = j->out[i]->tar_size,
								      .entries = j->out[i]->n_entries};
			pthread_mutex_unlock(&j->lock);
			if (built)
				open_many_progress(NULL, &ml);
		}
	}
}

OCITREE_EXPORT int ocitree_layer_index_open_many(struct ocitree_layout *l, const struct ocitree_descriptor *layers,
						 char *const *diff_ids, size_t n,
						 const struct ocitree_layer_index_opts *opts, unsigned threads,
						 struct ocitree_layer_index **out, struct ocitree_error **err)
{
	struct open_many_job j = {.l = l, .layers = layers, .diff_ids = diff_ids, .n = n, .opts = opts, .out = out};
	j.errs = xcalloc(n ? n : 1, sizeof(*j.errs));
	j.per = xcalloc(n ? n : 1, sizeof(*j.per));
	pthread_mutex_init(&j.lock, NULL);
	for (size_t i = 0; i < n; i++)
		out[i] = NULL;
	/* largest layers first would balance better, but layers are usually
	 * few; order them by size descending through the shared counter */
	if (threads < 1)
		threads = 1;
	if (threads > n)
		threads = (unsigned)n;
	pthread_t *tids = xcalloc(threads ? threads : 1, sizeof(*tids));
	/* this thread works too; helpers are a bonus: when one cannot be
	 * started, those there are (at least this one) open every layer, and
	 * only threads that were started are joined, all of them before j
	 * goes away */
	unsigned started = 0;
	while (started + 1 < threads && thread_create(&tids[started], NULL, open_many_worker, &j) == 0)
		started++;
	open_many_worker(&j);
	for (unsigned t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	free(tids);
	pthread_mutex_destroy(&j.lock);
	int ret = 0;
	for (size_t i = 0; i < n; i++) {
		if (!out[i] && ret == 0) {
			ret = -1;
			if (err) {
				ocitree_error_free(*err);
				*err = j.errs[i];
				j.errs[i] = NULL;
				ocitree_error_prefix(err, "layer %zu", i + 1);
			}
		}
		ocitree_error_free(j.errs[i]);
	}
	free(j.errs);
	free(j.per);
#ifdef __GLIBC__
	/* An index pass frees megabytes (its buffers, the tar scan's tables)
	 * in the arenas of the threads that ran it, where glibc keeps them:
	 * a mount would carry them for its life. */
	(void)malloc_trim(0);
#endif
	if (ret < 0)
		for (size_t i = 0; i < n; i++) {
			ocitree_layer_index_free(out[i]);
			out[i] = NULL;
		}
	return ret;
}

OCITREE_EXPORT void ocitree_layer_index_free(struct ocitree_layer_index *idx)
{
	if (!idx)
		return;
	chunk_cache_forget_owner(idx->chunks, idx);
	layer_seek_free(idx);
	free(idx->live);
	if (idx->map)
		munmap(idx->map, idx->map_len);
	if (idx->blob_map)
		munmap((void *)idx->blob_map, idx->blob_map_len);
	for (size_t i = 0; i < ARRAY_SIZE(idx->owned); i++)
		free(idx->owned[i]);
	if (idx->blob_fd >= 0)
		close(idx->blob_fd);
	if (idx->data_fd >= 0)
		close(idx->data_fd);
	free(idx);
}

OCITREE_EXPORT bool ocitree_layer_index_was_cached(const struct ocitree_layer_index *idx)
{
	return idx->cached;
}

OCITREE_EXPORT size_t ocitree_layer_index_count(const struct ocitree_layer_index *idx)
{
	return idx->n_entries;
}

OCITREE_EXPORT const struct ocitree_layer_entry *ocitree_layer_index_entry(const struct ocitree_layer_index *idx,
									   size_t i)
{
	return i < idx->n_entries ? &idx->entries[i] : NULL;
}

OCITREE_EXPORT const char *ocitree_layer_index_string(const struct ocitree_layer_index *idx, uint32_t off)
{
	return off < idx->strings_len ? idx->strings + off : "";
}

OCITREE_EXPORT uint64_t ocitree_layer_index_tar_size(const struct ocitree_layer_index *idx)
{
	return idx->tar_size;
}

OCITREE_EXPORT const char *ocitree_layer_index_digest(const struct ocitree_layer_index *idx)
{
	return idx->digest;
}

OCITREE_EXPORT enum ocitree_compression ocitree_layer_index_compression(const struct ocitree_layer_index *idx)
{
	return idx->comp;
}

OCITREE_EXPORT size_t ocitree_layer_index_checkpoints(const struct ocitree_layer_index *idx)
{
	return idx->comp == OCITREE_COMPRESSION_GZIP ? idx->n_cps : 0;
}

OCITREE_EXPORT bool ocitree_layer_entry_xattr_next(const struct ocitree_layer_index *idx,
						   const struct ocitree_layer_entry *e, uint32_t *cursor,
						   const char **name, const void **value, size_t *len)
{
	if (!e->xattrs)
		return false;
	const unsigned char *base = idx->xattrs;
	size_t end = idx->xattrs_len;
	uint32_t count;
	memcpy(&count, base + e->xattrs, 4);
	/* the cursor counts records in its high bits and keeps the byte
	 * position in the low 32 bits of a 64-bit walk; records are few, so
	 * walk from the start each time */
	uint32_t want = *cursor;
	if (want >= count)
		return false;
	size_t pos = e->xattrs + 4;
	for (uint32_t i = 0;; i++) {
		uint32_t nl, vl;
		if (pos + 8 > end)
			return false;
		memcpy(&nl, base + pos, 4);
		memcpy(&vl, base + pos + 4, 4);
		if (nl > end - pos - 8 || vl > end - pos - 8 - nl - 1 || pos + 8 + nl + 1 + vl > end ||
		    base[pos + 8 + nl] != '\0') /* names are used as C strings */
			return false;
		if (i == want) {
			*name = (const char *)base + pos + 8;
			*value = base + pos + 8 + nl + 1;
			*len = vl;
			*cursor = want + 1;
			return true;
		}
		pos += 8 + nl + 1 + vl;
	}
}
