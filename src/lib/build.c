/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What `ocitree build` writes into a layout (see ocitree/build.h): bases,
 * applied layers, the recipe's config, the cache of built images, staged
 * imports, and the tags of a build.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#ifdef HAVE_LINUX_OPENAT2_H
#include <linux/openat2.h>
#endif

#include "layout-internal.h"
#include "ocitree/build.h"
#include "ocitree/image.h"
#include "ocitree/layer-index.h"
#include "ocitree/layer.h"
#include "ocitree/mount.h"
#include "ocitree/tree.h"
#include "util.h"

#define COPY_BUF (1u << 20)

/* ---- bases ---- */

static int copy_blob(struct ocitree_layout *dst, struct ocitree_layout *src, const struct ocitree_descriptor *d,
                     struct ocitree_error **err)
{
	if (ocitree_blob_exists(dst, d->digest))
		return 0;
	struct ocitree_blob_reader *r = ocitree_blob_reader_open(src, d->digest, d->size, err);
	if (!r)
		return -1;
	struct ocitree_blob_writer *w = ocitree_blob_writer_new(dst, err);
	_cleanup_free_ char *buf = xmalloc(COPY_BUF);
	int ret = w ? 0 : -1;
	while (ret == 0) {
		ssize_t n = ocitree_blob_reader_read(r, buf, COPY_BUF, err);
		if (n < 0)
			ret = -1;
		else if (n == 0)
			break;
		else
			ret = ocitree_blob_writer_write(w, buf, (size_t)n, err);
	}
	char got[OCITREE_DIGEST_MAX];
	if (ret == 0)
		ret = ocitree_blob_writer_commit(w, got, NULL, err);
	ocitree_blob_writer_free(w);
	ocitree_blob_reader_free(r);
	if (ret < 0)
		return ocitree_error_prefix(err, "copy blob %s", d->digest);
	return 0;
}

OCITREE_EXPORT int ocitree_build_copy_image(struct ocitree_layout *l, const char *src, const char *tag,
                                            struct ocitree_descriptor *out, struct ocitree_error **err)
{
	memset(out, 0, sizeof(*out));
	struct stat a, b;
	bool same = stat(src, &a) == 0 && fstat(ocitree_layout_dirfd(l), &b) == 0 && a.st_dev == b.st_dev &&
	            a.st_ino == b.st_ino;
	struct ocitree_layout *sl = same ? l : ocitree_layout_open(src, err);
	if (!sl)
		return ocitree_error_prefix(err, "base layout '%s'", src);
	int ret = -1;
	struct ocitree_image *img = ocitree_image_open(sl, tag, err);
	if (!img) {
		ocitree_error_prefix(err, "base layout '%s'", src);
		goto out;
	}
	if (!same) {
		if (ocitree_layout_hold_blobs(l, err) < 0)
			goto out;
		for (size_t i = 0; i < img->manifest->n_layers; i++)
			if (copy_blob(l, sl, &img->manifest->layers[i], err) < 0)
				goto out;
		if (copy_blob(l, sl, &img->manifest->config, err) < 0 || copy_blob(l, sl, &img->manifest_desc, err) < 0)
			goto out;
	}
	ocitree_descriptor_copy(out, &img->manifest_desc);
	ret = 0;
out:
	ocitree_image_free(img);
	if (!same)
		ocitree_layout_free(sl);
	return ret;
}

OCITREE_EXPORT int ocitree_build_file_digest(const char *path, char out[OCITREE_DIGEST_MAX], struct ocitree_error **err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ocitree_error_set(err, errno, "open '%s'", path);
	struct ocitree_hasher *h = ocitree_hasher_new("sha256");
	_cleanup_free_ char *buf = xmalloc(COPY_BUF);
	for (;;) {
		ssize_t n = read_full(fd, buf, COPY_BUF);
		if (n < 0) {
			ocitree_hasher_free(h);
			return ocitree_error_set(err, errno, "read '%s'", path);
		}
		if (n == 0)
			break;
		ocitree_hasher_update(h, buf, (size_t)n);
	}
	ocitree_hasher_final(h, out);
	ocitree_hasher_free(h);
	return 0;
}

/* Write img's config and manifest as blobs, untagged. */
static int write_untagged(struct ocitree_image *img, struct ocitree_descriptor *out, struct ocitree_error **err)
{
	struct ocitree_layout *l = img->layout;
	_cleanup_free_ char *cjson = ocitree_config_to_json(img->config);
	char cdigest[OCITREE_DIGEST_MAX];
	if (ocitree_blob_put(l, cjson, strlen(cjson), cdigest, err) < 0)
		return ocitree_error_prefix(err, "write config");
	free(img->manifest->config.media_type);
	img->manifest->config.media_type = xstrdup(OCITREE_MT_OCI_CONFIG);
	memcpy(img->manifest->config.digest, cdigest, sizeof(cdigest));
	img->manifest->config.size = (int64_t)strlen(cjson);
	free(img->manifest->media_type);
	img->manifest->media_type = xstrdup(OCITREE_MT_OCI_MANIFEST);
	_cleanup_free_ char *mjson = ocitree_manifest_to_json(img->manifest);
	memset(out, 0, sizeof(*out));
	if (ocitree_blob_put(l, mjson, strlen(mjson), out->digest, err) < 0)
		return ocitree_error_prefix(err, "write manifest");
	out->media_type = xstrdup(OCITREE_MT_OCI_MANIFEST);
	out->size = (int64_t)strlen(mjson);
	return 0;
}

static struct ocitree_image *open_desc(struct ocitree_layout *l, const struct ocitree_descriptor *d,
                                       struct ocitree_error **err)
{
	struct ocitree_image *img = xcalloc(1, sizeof(*img));
	img->layout = l;
	ocitree_descriptor_copy(&img->manifest_desc, d);
	if (image_load(img, err) < 0) {
		ocitree_image_free(img);
		return NULL;
	}
	return img;
}

static bool is_gzip(const unsigned char *b, size_t n)
{
	return n >= 2 && b[0] == 0x1f && b[1] == 0x8b;
}

static bool is_zstd(const unsigned char *b, size_t n)
{
	return n >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd;
}

OCITREE_EXPORT int ocitree_build_tar_image(struct ocitree_layout *l, const char *path, struct ocitree_descriptor *out,
                                           struct ocitree_error **err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ocitree_error_set(err, errno, "open tarball '%s'", path);
	unsigned char magic[4] = {0};
	ssize_t mn = pread_full(fd, magic, sizeof(magic), 0);
	enum ocitree_compression comp = is_gzip(magic, mn > 0 ? (size_t)mn : 0)   ? OCITREE_COMPRESSION_GZIP
	                                : is_zstd(magic, mn > 0 ? (size_t)mn : 0) ? OCITREE_COMPRESSION_ZSTD
	                                                                          : OCITREE_COMPRESSION_NONE;
	struct ocitree_layer_reader *r = ocitree_layer_reader_open_fd(fd, comp, NULL, path, err);
	if (!r)
		return -1;
	struct ocitree_layer_writer_options wo = {.compression = OCITREE_COMPRESSION_GZIP,
	                                          .clamp_mtime = ocitree_source_date_epoch()};
	struct ocitree_layer_writer *w = ocitree_layer_writer_new(l, &wo, err);
	struct ocitree_image *img = NULL;
	struct ocitree_descriptor desc = {0};
	char diff_id[OCITREE_DIGEST_MAX];
	int ret = w ? 0 : -1;
	uint64_t total = 0;
	while (ret == 0) {
		const void *data;
		ssize_t n = ocitree_layer_reader_next(r, &data, err);
		if (n < 0)
			ret = -1;
		else if (n == 0)
			break;
		else
			ret = ocitree_layer_writer_raw(w, data, (size_t)n, err);
		total += n > 0 ? (uint64_t)n : 0;
	}
	if (ret == 0 && (total == 0 || total % 512))
		ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "tarball '%s' is not a tar archive", path);
	if (ret == 0)
		ret = ocitree_layer_writer_commit_raw(w, &desc, diff_id, err);
	if (ret == 0) {
		img = ocitree_image_new(l);
		ocitree_manifest_add_layer(img->manifest, &desc);
		ocitree_config_add_diff_id(img->config, diff_id);
		struct timespec now = ocitree_time_now();
		_cleanup_free_ char *created = ocitree_time_format(&now);
		_cleanup_free_ char *by = xasprintf("ocitree build: from tar %s", path);
		struct ocitree_history h = {.created = created, .created_by = by};
		ocitree_config_add_history(img->config, &h);
		free(img->config->created);
		img->config->created = xstrdup(created);
		ret = write_untagged(img, out, err);
	}
	if (ret < 0)
		ocitree_error_prefix(err, "from tar '%s'", path);
	ocitree_descriptor_clear(&desc);
	ocitree_image_free(img);
	ocitree_layer_writer_free(w);
	ocitree_layer_reader_free(r);
	return ret;
}

/* ---- apply ---- */

/* One path of an applied layer: what it is, to compare with another
 * layer's. */
struct seen {
	size_t layer; /* index into the applied layers */
	const struct ocitree_layer_entry *e;
	bool whiteout;
};

struct applied {
	struct ocitree_layer_index **idx;
	const char **owner; /* the image name of each applied layer */
	size_t n;
};

static int same_data(struct ocitree_layer_index *a, const struct ocitree_layer_entry *ea, struct ocitree_layer_index *b,
                     const struct ocitree_layer_entry *eb, bool *same, struct ocitree_error **err)
{
	*same = ea->size == eb->size;
	_cleanup_free_ char *ba = xmalloc(65536), *bb = xmalloc(65536);
	for (uint64_t off = 0; *same && off < ea->size;) {
		size_t chunk = ea->size - off < 65536 ? (size_t)(ea->size - off) : 65536;
		ssize_t ra = ocitree_layer_index_pread(a, ba, chunk, ea->data_off + off, err);
		if (ra < 0)
			return -1;
		ssize_t rb = ocitree_layer_index_pread(b, bb, chunk, eb->data_off + off, err);
		if (rb < 0)
			return -1;
		if (ra != rb || ra == 0 || memcmp(ba, bb, (size_t)ra) != 0)
			*same = false;
		off += (uint64_t)(ra > 0 ? ra : 1);
	}
	return 0;
}

/* Refuse two applied layers that make one path two different things: the
 * result would depend on the order of apply, which a recipe does not mean
 * to say. */
static int check_conflicts(struct applied *ap, struct ocitree_error **err)
{
	/* a simple table: path -> first entry seen; applied layers are few */
	size_t cap = 0, n = 0;
	char **paths = NULL;
	struct seen *seen = NULL;
	int ret = 0;
	for (size_t li = 0; li < ap->n && ret == 0; li++) {
		struct ocitree_layer_index *idx = ap->idx[li];
		size_t cnt = ocitree_layer_index_count(idx);
		for (size_t i = 0; i < cnt && ret == 0; i++) {
			const struct ocitree_layer_entry *e = ocitree_layer_index_entry(idx, i);
			const char *p = ocitree_layer_index_string(idx, e->path);
			const char *base = strrchr(p, '/');
			base = base ? base + 1 : p;
			bool wh = str_has_prefix(base, ".wh.") && strcmp(base, ".wh..wh..opq") != 0;
			_cleanup_free_ char *key = wh ? xasprintf("%.*s%s", (int)(base - p), p, base + 4) : xstrdup(p);
			if (e->type == OCITREE_ENTRY_DIR && !wh) {
				/* directories are parents of what layers add: only
				 * their own metadata can differ */
			}
			size_t k = 0;
			while (k < n && strcmp(paths[k], key) != 0)
				k++;
			if (k == n) {
				GROW(paths, cap, n + 1);
				seen = xrealloc(seen, cap * sizeof(*seen));
				paths[n] = steal_pointer(&key);
				seen[n++] = (struct seen){li, e, wh};
				continue;
			}
			struct seen *s = &seen[k];
			if (s->layer == li)
				continue;
			struct ocitree_layer_index *oidx = ap->idx[s->layer];
			const struct ocitree_layer_entry *o = s->e;
			bool same = s->whiteout == wh;
			if (same && !wh) {
				const char *la = ocitree_layer_index_string(oidx, o->link);
				const char *lb = ocitree_layer_index_string(idx, e->link);
				same = o->type == e->type && o->mode == e->mode && o->uid == e->uid &&
				       o->gid == e->gid && strcmp(la, lb) == 0 && o->rdev_major == e->rdev_major &&
				       o->rdev_minor == e->rdev_minor;
				if (same && e->type == OCITREE_ENTRY_REG &&
				    same_data(oidx, o, idx, e, &same, err) < 0) {
					ret = -1;
					break;
				}
			}
			if (!same)
				ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID,
				                         "apply: images '%s' and '%s' both change '/%s', differently",
				                         ap->owner[s->layer], ap->owner[li], paths[k]);
		}
	}
	for (size_t k = 0; k < n; k++)
		free(paths[k]);
	free(paths);
	free(seen);
	return ret;
}

static bool has_layer(const struct ocitree_manifest *m, const char *digest)
{
	for (size_t i = 0; i < m->n_layers; i++)
		if (strcmp(m->layers[i].digest, digest) == 0)
			return true;
	return false;
}

/* The history entry of each layer of c: the i-th entry that is not an
 * empty layer, when the counts agree. */
static const struct ocitree_history *layer_history(const struct ocitree_config *c, size_t layer)
{
	size_t k = 0;
	for (size_t i = 0; i < c->n_history; i++) {
		if (c->history[i].empty_layer)
			continue;
		if (k++ == layer)
			return &c->history[i];
	}
	return NULL;
}

static int apply_images(struct ocitree_layout *l, struct ocitree_image *img, const struct ocitree_build_base *b,
                        struct ocitree_error **err)
{
	struct applied ap = {0};
	struct ocitree_image **srcs = xcalloc(b->n_apply + 1, sizeof(*srcs));
	size_t cap = 0;
	int ret = 0;
	struct ocitree_layer_index_opts io = {.cache_dir = b->cache_dir};
	for (size_t a = 0; a < b->n_apply && ret == 0; a++) {
		srcs[a] = open_desc(l, b->apply[a], err);
		if (!srcs[a]) {
			ret = ocitree_error_prefix(err, "apply '%s'", b->apply_names[a]);
			break;
		}
		struct ocitree_manifest *m = srcs[a]->manifest;
		for (size_t i = 0; i < m->n_layers && ret == 0; i++) {
			if (has_layer(img->manifest, m->layers[i].digest))
				continue;
			const char *diff_id = srcs[a]->config->diff_ids[i];
			if (b->cache_dir) {
				struct ocitree_layer_index *idx =
				    ocitree_layer_index_open(l, &m->layers[i], diff_id, &io, err);
				if (!idx) {
					ret = ocitree_error_prefix(err, "apply '%s': layer %zu", b->apply_names[a],
					                           i + 1);
					break;
				}
				GROW(ap.idx, cap, ap.n + 1);
				ap.owner = xrealloc(ap.owner, cap * sizeof(*ap.owner));
				ap.idx[ap.n] = idx;
				ap.owner[ap.n++] = b->apply_names[a];
			}
			ocitree_manifest_add_layer(img->manifest, &m->layers[i]);
			ocitree_config_add_diff_id(img->config, diff_id);
			const struct ocitree_history *h =
			    srcs[a]->config->n_history ? layer_history(srcs[a]->config, i) : NULL;
			_cleanup_free_ char *by = xasprintf("ocitree build: apply %s", b->apply_names[a]);
			struct ocitree_history nh = {.created_by = by};
			ocitree_config_add_history(img->config, h ? h : &nh);
		}
	}
	if (ret == 0)
		ret = check_conflicts(&ap, err);
	for (size_t i = 0; i < ap.n; i++)
		ocitree_layer_index_free(ap.idx[i]);
	free(ap.idx);
	free(ap.owner);
	for (size_t a = 0; a < b->n_apply; a++)
		ocitree_image_free(srcs[a]);
	free(srcs);
	return ret;
}

/* ---- the recipe's config ---- */

static void set_strv(char ***dst, char *const *src)
{
	strv_free(*dst);
	size_t n = strv_len(src);
	*dst = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		(*dst)[i] = xstrdup(src[i]);
}

static void apply_config(struct ocitree_image *img, const struct ocitree_recipe_image *ri, const char *key)
{
	struct ocitree_config *c = img->config;
	struct ocitree_exec_config *x = &c->config;
	for (size_t i = 0; i < ri->environment.n; i++)
		ocitree_config_set_env(c, ri->environment.keys[i], ri->environment.values[i]);
	for (size_t i = 0; i < ri->labels.n; i++) {
		ocitree_strmap_set(&x->labels, ri->labels.keys[i], ri->labels.values[i]);
		x->has_labels = true;
	}
	for (size_t i = 0; ri->volumes && ri->volumes[i]; i++) {
		ocitree_strmap_set(&x->volumes, ri->volumes[i], "");
		x->has_volumes = true;
	}
	if (ri->working_dir) {
		free(x->working_dir);
		x->working_dir = xstrdup(ri->working_dir);
	}
	if (ri->user) {
		free(x->user);
		x->user = xstrdup(ri->user);
	}
	if (ri->full_command) {
		/* the whole command: nothing of the base's cmd or entrypoint stays */
		set_strv(&x->entrypoint, ri->full_command);
		strv_free(x->cmd);
		x->cmd = NULL;
	}
	if (ri->entrypoint)
		set_strv(&x->entrypoint, ri->entrypoint);
	if (ri->cmd)
		set_strv(&x->cmd, ri->cmd);
	struct timespec now = ocitree_time_now();
	free(c->created);
	c->created = ocitree_time_format(&now);
	for (size_t i = 0; i < ri->annotations.n; i++)
		ocitree_strmap_set(&img->manifest->annotations, ri->annotations.keys[i], ri->annotations.values[i]);
	if (key)
		ocitree_strmap_set(&img->manifest->annotations, OCITREE_ANNOTATION_BUILD_KEY, key);
	else
		ocitree_strmap_remove(&img->manifest->annotations, OCITREE_ANNOTATION_BUILD_KEY);
}

OCITREE_EXPORT int ocitree_build_write_base(struct ocitree_layout *l, const struct ocitree_build_base *b,
                                            struct ocitree_descriptor *out, struct ocitree_error **err)
{
	memset(out, 0, sizeof(*out));
	struct ocitree_image *img = b->base ? open_desc(l, b->base, err) : ocitree_image_new(l);
	if (!img)
		return ocitree_error_prefix(err, "image '%s': base", b->image->name);
	/* a base's annotations describe the base (its build key, its
	 * ref.name), not this image */
	ocitree_strmap_clear(&img->manifest->annotations);
	int ret = apply_images(l, img, b, err);
	if (ret == 0) {
		apply_config(img, b->image, b->key);
		if (b->history) {
			struct ocitree_history h = *b->history;
			h.empty_layer = true;
			_cleanup_free_ char *created = NULL;
			if (!h.created)
				h.created = created = xstrdup(img->config->created);
			ocitree_config_add_history(img->config, &h);
		}
		ret = write_untagged(img, out, err);
	}
	ocitree_image_free(img);
	if (ret < 0)
		return ocitree_error_prefix(err, "image '%s'", b->image->name);
	return 0;
}

OCITREE_EXPORT char *ocitree_build_created_by(const struct ocitree_recipe_image *img)
{
	struct buf b = BUF_INIT;
	for (size_t i = 0; img->run && img->run[i]; i++) {
		buf_puts(&b, img->run[i]);
		if (!str_has_suffix(img->run[i], "\n") && img->run[i + 1])
			buf_puts(&b, "\n");
	}
	if (!img->run) {
		buf_puts(&b, "ocitree build: import");
		for (size_t i = 0; i < img->n_imports; i++)
			buf_printf(&b, " %s%s%s", img->imports[i].path, img->imports[i].dest ? " -> " : "",
			           img->imports[i].dest ? img->imports[i].dest : "");
	}
	buf_append(&b, "", 1);
	return buf_steal(&b);
}

/* ---- the cache ---- */

static char *cache_entry(const char *cache_dir, const char *key)
{
	return xasprintf("%s/build-v1/%s", cache_dir, ocitree_digest_hex(key));
}

static bool key_matches(struct ocitree_layout *l, const struct ocitree_descriptor *d, const char *key)
{
	if (!ocitree_blob_exists(l, d->digest))
		return false;
	struct ocitree_error *e = NULL;
	struct ocitree_image *img = open_desc(l, d, &e);
	ocitree_error_free(e);
	if (!img)
		return false;
	const char *k = ocitree_strmap_get(&img->manifest->annotations, OCITREE_ANNOTATION_BUILD_KEY);
	/* every layer must be there too: a gc may have taken an untagged
	 * image's layers */
	bool ok = k && strcmp(k, key) == 0;
	for (size_t i = 0; ok && i < img->manifest->n_layers; i++)
		ok = ocitree_blob_exists(l, img->manifest->layers[i].digest);
	ok = ok && ocitree_blob_exists(l, img->manifest->config.digest);
	ocitree_image_free(img);
	return ok;
}

OCITREE_EXPORT int ocitree_build_cache_lookup(struct ocitree_layout *l, const char *cache_dir, const char *name,
                                              const char *key, struct ocitree_descriptor *out,
                                              struct ocitree_error **err)
{
	memset(out, 0, sizeof(*out));
	if (cache_dir) {
		_cleanup_free_ char *p = cache_entry(cache_dir, key);
		_cleanup_buf_ struct buf b = BUF_INIT;
		struct ocitree_error *e = NULL;
		if (read_file_at(AT_FDCWD, p, 65536, &b, p, &e) == 0) {
			char digest[OCITREE_DIGEST_MAX];
			long long size = -1;
			if (sscanf(b.data, "%135s %lld", digest, &size) == 2 &&
			    ocitree_digest_check(digest, NULL) == 0) {
				struct ocitree_descriptor d = {.media_type = (char *)OCITREE_MT_OCI_MANIFEST,
				                               .size = size};
				memcpy(d.digest, digest, sizeof(digest));
				if (key_matches(l, &d, key)) {
					ocitree_descriptor_copy(out, &d);
					return 1;
				}
			}
		}
		ocitree_error_free(e);
	}
	if (!name)
		return 0;
	struct ocitree_descriptor m = {0}, root = {0};
	struct ocitree_error *e = NULL;
	if (ocitree_image_resolve(l, name, &m, &root, &e) < 0) {
		bool missing = e->kind == OCITREE_ERROR_NOT_FOUND;
		if (!missing) {
			if (err)
				*err = e;
			else
				ocitree_error_free(e);
			return -1;
		}
		ocitree_error_free(e);
		return 0;
	}
	int hit = key_matches(l, &m, key);
	if (hit)
		*out = m;
	else
		ocitree_descriptor_clear(&m);
	ocitree_descriptor_clear(&root);
	return hit;
}

OCITREE_EXPORT int ocitree_build_cache_store(const char *cache_dir, const char *key, const struct ocitree_descriptor *d,
                                             struct ocitree_error **err)
{
	_cleanup_free_ char *dir = xasprintf("%s/build-v1", cache_dir);
	if (mkdir_p(dir, 0700) < 0)
		return ocitree_error_set(err, errno, "create '%s'", dir);
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return ocitree_error_set(err, errno, "open '%s'", dir);
	_cleanup_free_ char *text = xasprintf("%s %lld\n", d->digest, (long long)d->size);
	return write_file_atomic_at(dfd, ocitree_digest_hex(key), text, strlen(text), 0600, err);
}

/* ---- imports ---- */

/* Copy src (a file, symlink or tree of the host) to dst, which must not
 * exist; a directory dst that exists is merged into. */
static int copy_tree_at(int sfd, const char *sname, int dfd, const char *dname, const char *what, unsigned depth,
                        struct ocitree_error **err)
{
	struct stat st;
	if (depth > 256)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "import '%s': nested too deeply", what);
	if (fstatat(sfd, sname, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return ocitree_error_set(err, errno, "import '%s': stat '%s'", what, sname);
	if (S_ISDIR(st.st_mode)) {
		if (mkdirat(dfd, dname, 0700) < 0 && errno != EEXIST)
			return ocitree_error_set(err, errno, "import '%s': mkdir '%s'", what, dname);
		_cleanup_close_ int s = openat(sfd, sname, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		_cleanup_close_ int d = openat(dfd, dname, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (s < 0 || d < 0)
			return ocitree_error_set(err, errno, "import '%s': open '%s'", what, sname);
		int dup_s = dup(s);
		DIR *dir = dup_s >= 0 ? fdopendir(dup_s) : NULL;
		if (!dir) {
			if (dup_s >= 0)
				close(dup_s);
			return ocitree_error_set(err, errno, "import '%s': list '%s'", what, sname);
		}
		int ret = 0;
		struct dirent *e;
		while (ret == 0 && (e = readdir(dir)))
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
				ret = copy_tree_at(s, e->d_name, d, e->d_name, what, depth + 1, err);
		closedir(dir);
		/* "." is a directory merged into, which keeps its own mode */
		if (ret == 0 && strcmp(dname, ".") != 0 && fchmod(d, st.st_mode & 07777) < 0)
			ret = ocitree_error_set(err, errno, "import '%s': chmod '%s'", what, dname);
		return ret;
	}
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlinkat(sfd, sname, target, sizeof(target) - 1);
		if (n < 0)
			return ocitree_error_set(err, errno, "import '%s': readlink '%s'", what, sname);
		target[n] = '\0';
		unlinkat(dfd, dname, 0);
		if (symlinkat(target, dfd, dname) < 0)
			return ocitree_error_set(err, errno, "import '%s': symlink '%s'", what, dname);
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED,
		                          "import '%s': '%s' is not a file, directory or symlink", what, sname);
	_cleanup_close_ int in = openat(sfd, sname, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0)
		return ocitree_error_set(err, errno, "import '%s': open '%s'", what, sname);
	unlinkat(dfd, dname, 0);
	_cleanup_close_ int out = openat(dfd, dname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (out < 0)
		return ocitree_error_set(err, errno, "import '%s': create '%s'", what, dname);
	_cleanup_free_ char *buf = xmalloc(COPY_BUF);
	for (;;) {
		ssize_t n = read_full(in, buf, COPY_BUF);
		if (n < 0)
			return ocitree_error_set(err, errno, "import '%s': read '%s'", what, sname);
		if (n == 0)
			break;
		if (write_all(out, buf, (size_t)n) < 0)
			return ocitree_error_set(err, errno, "import '%s': write '%s'", what, dname);
	}
	if (fchmod(out, st.st_mode & 07777) < 0)
		return ocitree_error_set(err, errno, "import '%s': chmod '%s'", what, dname);
	return 0;
}

/* The last component of a path ("" for "dir/": its contents). */
static const char *last_name(const char *path)
{
	size_t n = strlen(path);
	if (n && path[n - 1] == '/')
		return "";
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* Copy ino of tree t, and below it, to dname in dfd. */
static int extract_at(const struct ocitree_tree *t, uint32_t ino, int dfd, const char *dname, const char *what,
                      unsigned depth, struct ocitree_error **err)
{
	struct stat st;
	if (depth > 256 || ocitree_tree_stat(t, ino, &st) < 0)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "import '%s': bad tree", what);
	if (S_ISDIR(st.st_mode)) {
		if (mkdirat(dfd, dname, 0700) < 0 && errno != EEXIST)
			return ocitree_error_set(err, errno, "import '%s': mkdir '%s'", what, dname);
		_cleanup_close_ int d = openat(dfd, dname, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (d < 0)
			return ocitree_error_set(err, errno, "import '%s': open '%s'", what, dname);
		uint32_t n = ocitree_tree_dir_size(t, ino);
		for (uint32_t i = 0; i < n; i++) {
			uint32_t child;
			const char *name = ocitree_tree_dir_entry(t, ino, i, &child);
			if (extract_at(t, child, d, name, what, depth + 1, err) < 0)
				return -1;
		}
		if (fchmod(d, st.st_mode & 07777) < 0)
			return ocitree_error_set(err, errno, "import '%s': chmod '%s'", what, dname);
		return 0;
	}
	if (S_ISLNK(st.st_mode)) {
		const struct ocitree_layer_entry *e;
		struct ocitree_layer_index *li = NULL;
		e = ocitree_tree_entry(t, ino, &li);
		if (!e || !li)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "import '%s': bad symlink", what);
		if (symlinkat(ocitree_layer_index_string(li, e->link), dfd, dname) < 0)
			return ocitree_error_set(err, errno, "import '%s': symlink '%s'", what, dname);
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return 0; /* devices and FIFOs of an image are not something to import */
	_cleanup_close_ int out = openat(dfd, dname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (out < 0)
		return ocitree_error_set(err, errno, "import '%s': create '%s'", what, dname);
	for (uint64_t off = 0; off < (uint64_t)st.st_size;) {
		struct ocitree_tree_data d;
		if (ocitree_tree_read(t, ino, off, COPY_BUF, &d, err) < 0)
			return ocitree_error_prefix(err, "import '%s'", what);
		if (d.size == 0) {
			ocitree_tree_data_release(&d);
			break;
		}
		int ret = 0;
		if (d.fd >= 0) {
			_cleanup_free_ char *buf = xmalloc(d.size);
			ret = pread_full(d.fd, buf, d.size, (off_t)d.pos) == (ssize_t)d.size
			          ? write_all(out, buf, d.size)
			          : -1;
		} else {
			for (size_t i = 0; i < d.n_iov && ret == 0; i++)
				ret = write_all(out, d.iov[i].iov_base, d.iov[i].iov_len);
		}
		off += d.size;
		ocitree_tree_data_release(&d);
		if (ret < 0)
			return ocitree_error_set(err, errno, "import '%s': write '%s'", what, dname);
	}
	if (fchmod(out, st.st_mode & 07777) < 0)
		return ocitree_error_set(err, errno, "import '%s': chmod '%s'", what, dname);
	return 0;
}

static int stage_from_image(struct ocitree_layout *l, const struct ocitree_recipe_import *im,
                            const struct ocitree_descriptor *src, const char *cache_dir, int dfd, const char *dname,
                            struct ocitree_error **err)
{
	struct ocitree_image *img = open_desc(l, src, err);
	if (!img)
		return ocitree_error_prefix(err, "import '%s'", im->path);
	_cleanup_free_ char *cache = cache_dir ? xstrdup(cache_dir) : ocitree_cache_dir_default();
	struct ocitree_mount_options mo = {.index = {.cache_dir = cache}};
	struct ocitree_mount m = {0};
	int ret = ocitree_mount_setup(l, img, &mo, &m, err);
	if (ret == 0) {
		const char *p = im->image_path;
		while (*p == '/')
			p++;
		_cleanup_free_ char *rel = xstrdup(p);
		size_t n = strlen(rel);
		while (n && rel[n - 1] == '/')
			rel[--n] = '\0';
		uint32_t ino = ocitree_tree_lookup_path(m.tree, rel);
		if (!ino)
			ret = ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND, "import '%s': no '%s' in image '%s'",
			                         im->path, im->image_path, im->image);
		else
			ret = extract_at(m.tree, ino, dfd, dname, im->path, 0, err);
	} else {
		ocitree_error_prefix(err, "import '%s'", im->path);
	}
	ocitree_mount_clear(&m);
	ocitree_image_free(img);
	return ret;
}

OCITREE_EXPORT int ocitree_build_stage_imports(struct ocitree_layout *l, const struct ocitree_recipe_image *img,
                                               const struct ocitree_descriptor *const *sources, const char *cache_dir,
                                               const char *dir, struct ocitree_error **err)
{
	if (!img->n_imports)
		return 0;
	_cleanup_free_ char *target = img->legacy_import ? xstrdup(dir) : xasprintf("%s/imports", dir);
	if (mkdir(target, 0755) < 0 && errno != EEXIST)
		return ocitree_error_set(err, errno, "create '%s'", target);
	_cleanup_close_ int dfd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return ocitree_error_set(err, errno, "open '%s'", target);
	for (size_t i = 0; i < img->n_imports; i++) {
		const struct ocitree_recipe_import *im = &img->imports[i];
		if (im->image) {
			const char *name = last_name(im->image_path);
			if (!*name)
				name = ".";
			if (stage_from_image(l, im, sources[i], cache_dir, dfd, name, err) < 0)
				return -1;
			continue;
		}
		const char *name = last_name(im->source);
		if (copy_tree_at(AT_FDCWD, im->source, dfd, *name ? name : ".", im->path, 0, err) < 0)
			return -1;
	}
	return 0;
}

/* Open path (relative) of the tree at rootfd as a directory, resolving
 * symlinks as if rootfd were "/": an image's /bin -> usr/bin is followed
 * inside the image, an absolute or ".." link never reaches the host. */
static int open_dir_in_root(int rootfd, const char *path)
{
	return open_dir_in_root_at(rootfd, path, true);
}

/* open_dir_in_root(), making what is missing (mode 0755, as a package
 * would) one component at a time. */
static int make_dir_in_root(int rootfd, const char *path)
{
	_cleanup_free_ char *copy = xstrdup(path);
	int cur = open_dir_in_root(rootfd, "");
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c && cur >= 0; c = strtok_r(NULL, "/", &save)) {
		/* the prefix up to and with c */
		_cleanup_free_ char *prefix = xstrndup(path, (size_t)(c - copy) + strlen(c));
		int next = open_dir_in_root(rootfd, prefix);
		if (next < 0 && errno == ENOENT && mkdirat(cur, c, 0755) == 0)
			next = open_dir_in_root(rootfd, prefix);
		int e = errno;
		close(cur);
		cur = next;
		errno = e;
	}
	return cur;
}

OCITREE_EXPORT int ocitree_build_copy_dest_imports(const struct ocitree_recipe_image *img, const char *dir,
                                                   const char *rootfs, struct ocitree_error **err)
{
	_cleanup_free_ char *staged = img->legacy_import ? xstrdup(dir) : xasprintf("%s/imports", dir);
	_cleanup_close_ int rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return ocitree_error_set(err, errno, "open '%s'", rootfs);
	for (size_t i = 0; i < img->n_imports; i++) {
		const struct ocitree_recipe_import *im = &img->imports[i];
		if (!im->dest)
			continue;
		const char *name = last_name(im->image ? im->image_path : im->source);
		_cleanup_free_ char *src = *name ? xasprintf("%s/%s", staged, name) : xstrdup(staged);
		/* dest without its leading and trailing '/' */
		const char *d = im->dest;
		while (*d == '/')
			d++;
		_cleanup_free_ char *rel = xstrdup(d);
		size_t rl = strlen(rel);
		while (rl && rel[rl - 1] == '/')
			rel[--rl] = '\0';
		int probe = open_dir_in_root(rootfd, rel);
		bool into = str_has_suffix(im->dest, "/") || !*name || !*rel || probe >= 0;
		if (probe >= 0)
			close(probe);
		/* the directory the copy lands in, and the name it gets there */
		char *slash = strrchr(rel, '/');
		_cleanup_free_ char *dname = xstrdup(into ? name : slash ? slash + 1 : rel);
		if (!into) {
			if (slash)
				*slash = '\0';
			else
				rel[0] = '\0';
		}
		_cleanup_close_ int pfd = make_dir_in_root(rootfd, rel);
		if (pfd < 0)
			return ocitree_error_set(err, errno, "import '%s': create '%s'", im->path, im->dest);
		/* a directory's contents are merged into dest */
		if (copy_tree_at(AT_FDCWD, src, pfd, *dname ? dname : ".", im->path, 0, err) < 0)
			return -1;
	}
	return 0;
}

/* ---- tags ---- */

struct tags {
	const char *const *tags;
	const struct ocitree_descriptor *const *descs;
	size_t n;
	const char *const *drop;
	size_t n_drop;
};

static int tags_fn(struct ocitree_index *idx, void *ud, struct ocitree_error **err)
{
	struct tags *t = ud;
	for (size_t i = 0; i < t->n_drop; i++)
		ocitree_index_remove_ref(idx, t->drop[i]);
	for (size_t i = 0; i < t->n; i++) {
		if (ocitree_tag_check(t->tags[i], err) < 0)
			return -1;
		ocitree_index_set_ref(idx, t->tags[i], t->descs[i]);
	}
	return 0;
}

OCITREE_EXPORT int ocitree_build_set_tags(struct ocitree_layout *l, const char *const *tags,
                                          const struct ocitree_descriptor *const *descs, size_t n,
                                          const char *const *drop, size_t n_drop, struct ocitree_error **err)
{
	struct tags t = {tags, descs, n, drop, n_drop};
	return ocitree_layout_update_index(l, tags_fn, &t, err);
}
