/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Mount set-up (see ocitree/mount.h): layer indexes -> merged tree, and the
 * check of an upper directory against the image it is mounted over.
 */
#include "config.h"

#include "ocitree/mount.h"
#include "upper-internal.h"
#include "util.h"

static bool str_eq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* May u be mounted over img?  Cleans up after a killed user, and gives a
 * new upper directory its format (in u->state, saved later). */
static int check_upper(struct ocitree_upper *u, const struct ocitree_image *img,
		       const struct ocitree_upper_probe_opts *probe, struct ocitree_layout *l, bool *fresh,
		       struct ocitree_error **err)
{
	struct ocitree_upper_probe_opts all = {.force_whiteout = -1, .force_xattrs = -1};
	const struct ocitree_upper_probe_opts *po = probe ? probe : &all;
	const char *digest = img->manifest_desc.digest;
	if (u->has_state && u->state.clearing && str_eq(u->state.manifest.digest, digest) &&
	    ocitree_upper_finish_clear(u, err) < 0)
		return -1;
	/* copy-ups and removals a killed daemon left half-done: nothing else
	 * uses the work directory while the caller holds its lock */
	ocitree_upper_remove_stale(u);
	bool empty = ocitree_upper_is_empty(u);
	*fresh = !u->has_state && empty;
	if (u->has_state && !str_eq(u->state.manifest.digest, digest) && !empty)
		return ocitree_error_setk(
		    err, OCITREE_ERROR_INVALID,
		    "upper directory '%s' holds changes to image %s, but '%s:%s' is %s now: commit "
		    "them (ocitree commit --upper), or empty it",
		    u->path, u->state.manifest.digest, ocitree_layout_path(l), img->tag, digest);
	if (u->has_state) {
		const struct ocitree_upper_format *f = &u->state.format;
		if ((po->force_xattrs >= 0 && po->force_xattrs != (int)f->xattrs) ||
		    (po->force_whiteout >= 0 && po->force_whiteout != (int)f->whiteout))
			return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
						  "upper directory '%s' already uses another format than -o "
						  "xattrs=/whiteout= ask for",
						  u->path);
		return 0;
	}
	return ocitree_upper_probe(u, po, &u->state.format, err);
}

/* Make u's record name img (in l, as tag img->tag). */
static int record_upper(struct ocitree_upper *u, struct ocitree_layout *l, const struct ocitree_image *img,
			bool clearing, struct ocitree_error **err)
{
	if (u->has_state && !clearing && str_eq(u->state.manifest.digest, img->manifest_desc.digest) &&
	    str_eq(u->state.tag, img->tag))
		return 0;
	free(u->state.layout);
	u->state.layout = xstrdup(ocitree_layout_path(l));
	free(u->state.tag);
	u->state.tag = xstrdup(img->tag);
	ocitree_descriptor_clear(&u->state.manifest);
	ocitree_descriptor_copy(&u->state.manifest, &img->manifest_desc);
	u->state.clearing = clearing;
	return ocitree_upper_save_state(u, err);
}

OCITREE_EXPORT int ocitree_mount_setup(struct ocitree_layout *l, const struct ocitree_image *img,
				       const struct ocitree_mount_options *o, struct ocitree_mount *out,
				       struct ocitree_error **err)
{
	*out = (struct ocitree_mount){0};
	size_t n = img->manifest->n_layers;
	size_t from = o->from, to = o->to ? o->to : n;
	if (from > to || to > n)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "layers %zu to %zu: image %s has %zu layers",
					  from + 1, to, img->manifest_desc.digest, n);
	if (o->n_reuse > to - from)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
					  "image %s has %zu layers, fewer than the %zu already open",
					  img->manifest_desc.digest, to - from, o->n_reuse);
	struct ocitree_upper *u = o->upper;
	if (u && (from != 0 || to != n || o->tree_flags))
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
					  "an upper directory changes the whole image: it cannot be mounted over some "
					  "of its layers");
	if (u && !img->tag)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
					  "an upper directory records the tag of its image: image %s has none",
					  img->manifest_desc.digest);
	bool fresh = false;
	if (u && !o->clearing && check_upper(u, img, o->probe, l, &fresh, err) < 0)
		return -1;

	size_t count = to - from, first = from + o->n_reuse, n_new = to - first;
	struct ocitree_layer_index **layers = xcalloc(count + 1, sizeof(*layers));
	for (size_t i = 0; i < o->n_reuse; i++)
		layers[i] = o->reuse[i];
	if (n_new) {
		size_t n_diff = img->config ? strv_len(img->config->diff_ids) : 0;
		char **diff_ids = xcalloc(n_new + 1, sizeof(*diff_ids));
		for (size_t i = first; i < to; i++)
			diff_ids[i - first] = i < n_diff ? img->config->diff_ids[i] : NULL;
		unsigned threads = o->threads;
		if (!threads) {
			long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
			threads = ncpu > 0 ? (unsigned)ncpu : 1;
		}
		int r = ocitree_layer_index_open_many(l, img->manifest->layers + first, diff_ids, n_new, &o->index,
						      threads, layers + o->n_reuse, err);
		free(diff_ids);
		if (r < 0) {
			free(layers);
			return -1;
		}
	}
	struct ocitree_mount m = {.layers = layers, .n_layers = count, .n_reused = o->n_reuse, .fresh = fresh};
	/* a tree of the reused layers only is the one the caller has */
	if (n_new || !o->n_reuse) {
		m.tree =
		    ocitree_tree_open_cached(layers, count, o->tree_flags, o->index.cache_dir, o->index.rebuild, err);
		if (!m.tree)
			goto fail;
	}
	if (u && record_upper(u, l, img, o->clearing, err) < 0)
		goto fail;
	*out = m;
	return 0;
fail:
	ocitree_mount_clear(&m);
	return -1;
}

OCITREE_EXPORT void ocitree_mount_clear(struct ocitree_mount *m)
{
	if (!m)
		return;
	ocitree_tree_free(m->tree);
	for (size_t i = m->n_reused; i < m->n_layers; i++)
		ocitree_layer_index_free(m->layers[i]);
	free(m->layers);
	*m = (struct ocitree_mount){0};
}
