/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The layer store (see ocitree/layer-store.h): which layers the layouts
 * have, kept per layout and read again when its index.json changes, and the
 * layers opened so far, each an index, an overlay tree, a record and the
 * blob.
 */
#include "config.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sys/stat.h>

#include "ocitree/layer-store.h"
#include "ocitree/layout.h"
#include "util.h"

/* A layer a layout's images list, with what opening it needs. */
struct known {
	char digest[OCITREE_DIGEST_MAX];
	char *media_type;
	int64_t size;
	char *diff_id;
};

struct lay {
	struct ocitree_layout *l;
	/* index.json as last read: a change of any of these reads it again */
	bool scanned;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	struct known *known;
	size_t n_known, cap_known;
};

struct ocitree_store_layer {
	char digest[OCITREE_DIGEST_MAX];
	/* lock: the fields below while the layer is opened; once ready they
	 * never change and are read without it */
	pthread_mutex_t lock;
	bool ready;
	struct ocitree_layer_index *idx;
	struct ocitree_tree *tree;
	char *info;
	size_t info_len;
	int blob_fd;
	uint64_t blob_size;
};

struct ocitree_layer_store {
	/* lock: the layouts' lists of layers (lays[].known, scans) and the
	 * array of layers; a layer record, once in it, stays at its address */
	pthread_mutex_t lock;
	struct lay *lays;
	size_t n_lays;
	struct ocitree_store_layer **layers;
	size_t n_layers, cap_layers;
	struct ocitree_layer_index_opts index;
	char *cache_dir;
	unsigned tree_flags;
};

static void known_clear(struct lay *y)
{
	for (size_t i = 0; i < y->n_known; i++) {
		free(y->known[i].media_type);
		free(y->known[i].diff_id);
	}
	y->n_known = 0;
}

static int cmp_known(const void *a, const void *b)
{
	return strcmp(((const struct known *)a)->digest, ((const struct known *)b)->digest);
}

/* y->known is sorted by digest once a scan is done */
static const struct known *known_find(const struct lay *y, const char *digest)
{
	struct known key;
	if (!y->n_known || strlen(digest) >= sizeof(key.digest))
		return NULL;
	memcpy(key.digest, digest, strlen(digest) + 1);
	return bsearch(&key, y->known, y->n_known, sizeof(*y->known), cmp_known);
}

/* Sort y->known and drop repeated layers (the same blob in two images). */
static void known_sort(struct lay *y)
{
	if (!y->n_known)
		return; /* (qsort of NULL is undefined, even of no elements) */
	qsort(y->known, y->n_known, sizeof(*y->known), cmp_known);
	size_t out = 0;
	for (size_t i = 0; i < y->n_known; i++) {
		if (out && strcmp(y->known[out - 1].digest, y->known[i].digest) == 0) {
			free(y->known[i].media_type);
			free(y->known[i].diff_id);
			continue;
		}
		y->known[out++] = y->known[i];
	}
	y->n_known = out;
}

static void add_manifest(struct lay *y, const struct ocitree_descriptor *d)
{
	_cleanup_error_ struct ocitree_error *e = NULL;
	struct ocitree_manifest *m = ocitree_blob_read_manifest(y->l, d, &e);
	if (!m) {
		log_warn("layout '%s': manifest %s: %s: its layers are not served", ocitree_layout_path(y->l),
		         d->digest, e->msg);
		return;
	}
	struct ocitree_config *c = ocitree_blob_read_config(y->l, &m->config, &e);
	if (!c) {
		/* podman needs the diff_id of every layer it is given */
		log_warn("layout '%s': config %s: %s: its layers are not served", ocitree_layout_path(y->l),
		         m->config.digest, e->msg);
		ocitree_manifest_free(m);
		return;
	}
	size_t n_diff = strv_len(c->diff_ids);
	for (size_t i = 0; i < m->n_layers && i < n_diff; i++) {
		const struct ocitree_descriptor *ld = &m->layers[i];
		enum ocitree_compression comp;
		if (ocitree_layer_compression(ld->media_type, &comp, NULL) < 0 ||
		    !ocitree_blob_exists(y->l, ld->digest))
			continue;
		GROW(y->known, y->cap_known, y->n_known + 1);
		struct known *k = &y->known[y->n_known++];
		memcpy(k->digest, ld->digest, sizeof(k->digest));
		k->media_type = xstrdup(ld->media_type);
		k->size = ld->size;
		k->diff_id = xstrdup(c->diff_ids[i]);
	}
	ocitree_config_free(c);
	ocitree_manifest_free(m);
}

static void add_list(struct lay *y, const struct ocitree_descriptor *d, size_t n, int depth)
{
	for (size_t i = 0; i < n; i++) {
		enum ocitree_doc_kind kind = ocitree_media_type_kind(d[i].media_type);
		if (kind == OCITREE_DOC_MANIFEST) {
			add_manifest(y, &d[i]);
		} else if (kind == OCITREE_DOC_INDEX && depth < 16) {
			_cleanup_error_ struct ocitree_error *e = NULL;
			struct ocitree_index *idx = ocitree_blob_read_index(y->l, &d[i], &e);
			if (!idx) {
				log_warn("layout '%s': index %s: %s: its images are not served",
				         ocitree_layout_path(y->l), d[i].digest, e->msg);
				continue;
			}
			add_list(y, idx->manifests, idx->n_manifests, depth + 1);
			ocitree_index_free(idx);
		}
	}
}

/* Read y's layers again when its index.json is not the one last read. */
static void refresh(struct lay *y)
{
	struct stat st;
	if (fstatat(ocitree_layout_dirfd(y->l), "index.json", &st, 0) < 0) {
		log_warn("layout '%s': index.json: %s", ocitree_layout_path(y->l), strerror(errno));
		known_clear(y);
		y->scanned = false;
		return;
	}
	if (y->scanned && st.st_dev == y->dev && st.st_ino == y->ino && st.st_size == y->size &&
	    st.st_mtim.tv_sec == y->mtime.tv_sec && st.st_mtim.tv_nsec == y->mtime.tv_nsec)
		return;
	known_clear(y);
	_cleanup_error_ struct ocitree_error *e = NULL;
	struct ocitree_index *idx = ocitree_layout_read_index(y->l, &e);
	if (!idx) {
		log_warn("layout '%s': %s", ocitree_layout_path(y->l), e->msg);
		y->scanned = false;
		return;
	}
	add_list(y, idx->manifests, idx->n_manifests, 0);
	ocitree_index_free(idx);
	known_sort(y);
	y->scanned = true;
	y->dev = st.st_dev;
	y->ino = st.st_ino;
	y->size = st.st_size;
	y->mtime = st.st_mtim;
	log_debug("layout '%s': %zu layers", ocitree_layout_path(y->l), y->n_known);
}

/* Under s->lock: the first layout's record of digest, after a refresh. */
static const struct known *find_locked(struct ocitree_layer_store *s, const char *digest, struct lay **in)
{
	for (size_t i = 0; i < s->n_lays; i++) {
		refresh(&s->lays[i]);
		const struct known *k = known_find(&s->lays[i], digest);
		if (k) {
			*in = &s->lays[i];
			return k;
		}
	}
	return NULL;
}

OCITREE_EXPORT struct ocitree_layer_store *ocitree_layer_store_new(const struct ocitree_layer_store_options *o,
                                                                   struct ocitree_error **err)
{
	if (!o->index.cache_dir)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "a layer store needs a cache directory"), NULL;
	struct ocitree_layer_store *s = xcalloc(1, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->cache_dir = xstrdup(o->index.cache_dir);
	s->index = o->index;
	s->index.cache_dir = s->cache_dir;
	s->index.progress = NULL;
	s->index.progress_data = NULL;
	s->tree_flags = OCITREE_TREE_OVERLAY | (o->user_xattrs ? OCITREE_TREE_OVERLAY_USER : 0);
	s->lays = xcalloc(o->n_layouts ? o->n_layouts : 1, sizeof(*s->lays));
	for (size_t i = 0; i < o->n_layouts; i++) {
		s->lays[i].l = ocitree_layout_open(o->layouts[i], err);
		if (!s->lays[i].l) {
			ocitree_layer_store_free(s);
			return NULL;
		}
		s->n_lays++;
		refresh(&s->lays[i]);
	}
	return s;
}

static void layer_free(struct ocitree_store_layer *sl)
{
	ocitree_tree_free(sl->tree);
	ocitree_layer_index_free(sl->idx);
	free(sl->info);
	if (sl->blob_fd >= 0)
		close(sl->blob_fd);
	pthread_mutex_destroy(&sl->lock);
	free(sl);
}

OCITREE_EXPORT void ocitree_layer_store_free(struct ocitree_layer_store *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_layers; i++)
		layer_free(s->layers[i]);
	free(s->layers);
	for (size_t i = 0; i < s->n_lays; i++) {
		known_clear(&s->lays[i]);
		free(s->lays[i].known);
		ocitree_layout_free(s->lays[i].l);
	}
	free(s->lays);
	free(s->cache_dir);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

OCITREE_EXPORT bool ocitree_layer_store_has(struct ocitree_layer_store *s, const char *digest, int64_t *size)
{
	pthread_mutex_lock(&s->lock);
	struct lay *y = NULL;
	const struct known *k = find_locked(s, digest, &y);
	if (k && size)
		*size = k->size;
	pthread_mutex_unlock(&s->lock);
	return k != NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Append the distinct values of ids[0..n) as a JSON array. */
static void put_idset(struct buf *b, uint32_t *ids, size_t n)
{
	qsort(ids, n, sizeof(*ids), cmp_u32);
	buf_puts(b, "[");
	for (size_t i = 0; i < n; i++)
		if (i == 0 || ids[i] != ids[i - 1])
			buf_printf(b, "%s%u", i ? "," : "", ids[i]);
	buf_puts(b, "]");
}

/* containers/storage's record of a layer (its Layer type, as JSON). */
static char *make_info(const struct known *k, struct ocitree_layer_index *idx, size_t *len)
{
	/* containers/storage's archive.Compression: Uncompressed 0, Bzip2 1,
	 * Gzip 2, Xz 3, Zstd 4 */
	enum ocitree_compression comp = ocitree_layer_index_compression(idx);
	int number = comp == OCITREE_COMPRESSION_GZIP ? 2 : comp == OCITREE_COMPRESSION_ZSTD ? 4 : 0;
	size_t n = ocitree_layer_index_count(idx);
	uint32_t *uids = xmalloc((n ? n : 1) * sizeof(*uids)), *gids = xmalloc((n ? n : 1) * sizeof(*gids));
	for (size_t i = 0; i < n; i++) {
		const struct ocitree_layer_entry *e = ocitree_layer_index_entry(idx, i);
		uids[i] = e->uid;
		gids[i] = e->gid;
	}
	struct buf b = BUF_INIT;
	buf_printf(&b,
	           "{\"compressed-diff-digest\":\"%s\",\"compressed-size\":%" PRId64 ",\"diff-digest\":\"%s\","
	           "\"diff-size\":%" PRIu64 ",\"compression\":%d,\"uidset\":",
	           k->digest, k->size, k->diff_id, ocitree_layer_index_tar_size(idx), number);
	put_idset(&b, uids, n);
	buf_puts(&b, ",\"gidset\":");
	put_idset(&b, gids, n);
	buf_puts(&b, "}\n");
	free(uids);
	free(gids);
	*len = b.len;
	return buf_steal(&b);
}

static int open_layer(struct ocitree_layer_store *s, struct ocitree_store_layer *sl, struct lay *y,
                      const struct known *k, struct ocitree_error **err)
{
	struct ocitree_descriptor d = {.media_type = k->media_type, .size = k->size};
	memcpy(d.digest, k->digest, sizeof(d.digest));
	sl->idx = ocitree_layer_index_open(y->l, &d, k->diff_id, &s->index, err);
	if (!sl->idx)
		goto fail;
	sl->tree = ocitree_tree_build(&sl->idx, 1, s->tree_flags, err);
	if (!sl->tree)
		goto fail;
	sl->blob_fd = ocitree_blob_open_fd(y->l, k->digest, err);
	if (sl->blob_fd < 0)
		goto fail;
	sl->blob_size = (uint64_t)k->size;
	sl->info = make_info(k, sl->idx, &sl->info_len);
	log_info("layer %s: %zu entries, index %s", k->digest, ocitree_layer_index_count(sl->idx),
	         ocitree_layer_index_was_cached(sl->idx) ? "cached" : "built");
	return 0;
fail:
	ocitree_tree_free(sl->tree);
	ocitree_layer_index_free(sl->idx);
	sl->tree = NULL;
	sl->idx = NULL;
	sl->blob_fd = -1;
	return ocitree_error_prefix(err, "layer %s", k->digest);
}

OCITREE_EXPORT struct ocitree_store_layer *ocitree_layer_store_open(struct ocitree_layer_store *s, const char *digest,
                                                                    struct ocitree_error **err)
{
	pthread_mutex_lock(&s->lock);
	struct ocitree_store_layer *sl = NULL;
	for (size_t i = 0; i < s->n_layers && !sl; i++)
		if (strcmp(s->layers[i]->digest, digest) == 0)
			sl = s->layers[i];
	if (sl && sl->ready) {
		/* ready records never change: no need for its lock */
		pthread_mutex_unlock(&s->lock);
		return sl;
	}
	struct lay *y = NULL;
	const struct known *found = find_locked(s, digest, &y);
	if (!found) {
		pthread_mutex_unlock(&s->lock);
		return ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND, "layer %s: no layout has it", digest), NULL;
	}
	/* a copy: a refresh by another thread may replace the list while
	 * this one builds the index without the store's lock */
	struct known k = *found;
	k.media_type = xstrdup(found->media_type);
	k.diff_id = xstrdup(found->diff_id);
	if (!sl) {
		sl = xcalloc(1, sizeof(*sl));
		memcpy(sl->digest, k.digest, sizeof(sl->digest));
		pthread_mutex_init(&sl->lock, NULL);
		sl->blob_fd = -1;
		GROW(s->layers, s->cap_layers, s->n_layers + 1);
		s->layers[s->n_layers++] = sl;
	}
	pthread_mutex_unlock(&s->lock);

	pthread_mutex_lock(&sl->lock);
	int r = 0;
	if (!sl->ready) {
		r = open_layer(s, sl, y, &k, err);
		if (r == 0) {
			/* published under the store's lock, which the fast path
			 * above reads it under */
			pthread_mutex_lock(&s->lock);
			sl->ready = true;
			pthread_mutex_unlock(&s->lock);
		}
	}
	pthread_mutex_unlock(&sl->lock);
	free(k.media_type);
	free(k.diff_id);
	return r < 0 ? NULL : sl;
}

OCITREE_EXPORT const struct ocitree_tree *ocitree_store_layer_tree(const struct ocitree_store_layer *sl)
{
	return sl->tree;
}

OCITREE_EXPORT const char *ocitree_store_layer_info(const struct ocitree_store_layer *sl, size_t *len)
{
	*len = sl->info_len;
	return sl->info;
}

OCITREE_EXPORT int ocitree_store_layer_blob_fd(const struct ocitree_store_layer *sl, uint64_t *size)
{
	*size = sl->blob_size;
	return sl->blob_fd;
}
