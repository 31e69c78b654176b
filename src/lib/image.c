/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Images (ocitree/image.h): a tag resolved through nested indexes to the
 * manifest for this host, that manifest and its config loaded and checked
 * against each other, a new layer and its history entry appended, and a
 * changed image written back (as OCI, whatever it was read as) as config
 * blob, manifest blob and tag.  Also the LAYOUT[:TAG] syntax of --image.
 */
#include "config.h"

#include "layout-internal.h"
#include "ocitree/bundle.h" /* struct ocitree_write_options */
#include "ocitree/image.h"
#include "util.h"

#define MAX_INDEX_DEPTH 8

static bool platform_matches(const struct ocitree_platform *p)
{
	if (!p || !p->os || !p->architecture)
		return false;
	if (strcmp(p->os, "linux") != 0 || strcmp(p->architecture, ocitree_host_architecture()) != 0)
		return false;
	const char *v = ocitree_host_variant();
	return !p->variant || !v || strcmp(p->variant, v) == 0;
}

/* Pick the entry of a nested index that fits this host. */
static int pick_manifest(const struct ocitree_index *idx, const char *digest, struct ocitree_error **err)
{
	ssize_t best = -1;
	for (size_t i = 0; i < idx->n_manifests; i++) {
		if (ocitree_media_type_kind(idx->manifests[i].media_type) == OCITREE_DOC_OTHER)
			continue;
		if (platform_matches(idx->manifests[i].platform)) {
			best = (ssize_t)i;
			break;
		}
	}
	if (best < 0 && idx->n_manifests == 1 && !idx->manifests[0].platform)
		best = 0;
	if (best < 0)
		return ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND, "image index %s has no manifest for linux/%s",
					  digest, ocitree_host_architecture());
	return (int)best;
}

OCITREE_EXPORT int ocitree_image_resolve(struct ocitree_layout *l, const char *tag,
					 struct ocitree_descriptor *manifest_desc, struct ocitree_descriptor *root,
					 struct ocitree_error **err)
{
	struct ocitree_index *top = ocitree_layout_read_index(l, err);
	if (!top)
		return -1;
	ssize_t pos = ocitree_index_find_ref(top, tag);
	if (pos < 0) {
		ocitree_index_free(top);
		return ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND, "tag '%s' not found in layout '%s'", tag,
					  ocitree_layout_path(l));
	}
	for (size_t i = (size_t)pos + 1; i < top->n_manifests; i++) {
		const char *r = ocitree_descriptor_ref_name(&top->manifests[i]);
		if (r && strcmp(r, tag) == 0 && strcmp(top->manifests[i].digest, top->manifests[pos].digest) != 0) {
			ocitree_index_free(top);
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
						  "tag '%s' is ambiguous in layout '%s': it names several images", tag,
						  ocitree_layout_path(l));
		}
	}
	struct ocitree_descriptor cur;
	ocitree_descriptor_copy(&cur, &top->manifests[pos]);
	if (root)
		ocitree_descriptor_copy(root, &top->manifests[pos]);
	ocitree_index_free(top);

	char chain[MAX_INDEX_DEPTH + 1][OCITREE_DIGEST_MAX];
	for (int depth = 0;; depth++) {
		enum ocitree_doc_kind kind = ocitree_media_type_kind(cur.media_type);
		if (kind == OCITREE_DOC_MANIFEST) {
			*manifest_desc = cur;
			return 0;
		}
		if (kind != OCITREE_DOC_INDEX) {
			ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "tag '%s': unsupported media type '%s' of %s",
					   tag, cur.media_type, cur.digest);
			break;
		}
		if (depth >= MAX_INDEX_DEPTH) {
			ocitree_error_setk(err, OCITREE_ERROR_INVALID, "tag '%s': image indexes nested deeper than %d",
					   tag, MAX_INDEX_DEPTH);
			break;
		}
		bool cycle = false;
		for (int i = 0; i < depth; i++)
			cycle |= strcmp(chain[i], cur.digest) == 0;
		if (cycle) {
			ocitree_error_setk(err, OCITREE_ERROR_INVALID, "tag '%s': image index %s refers to itself", tag,
					   cur.digest);
			break;
		}
		memcpy(chain[depth], cur.digest, OCITREE_DIGEST_MAX);
		struct ocitree_index *idx = ocitree_blob_read_index(l, &cur, err);
		if (!idx) {
			ocitree_error_prefix(err, "tag '%s'", tag);
			break;
		}
		int pick = pick_manifest(idx, cur.digest, err);
		if (pick < 0) {
			ocitree_index_free(idx);
			ocitree_error_prefix(err, "tag '%s'", tag);
			break;
		}
		ocitree_descriptor_clear(&cur);
		ocitree_descriptor_copy(&cur, &idx->manifests[pick]);
		ocitree_index_free(idx);
	}
	ocitree_descriptor_clear(&cur);
	if (root)
		ocitree_descriptor_clear(root);
	return -1;
}

int image_load(struct ocitree_image *img, struct ocitree_error **err)
{
	img->manifest = ocitree_blob_read_manifest(img->layout, &img->manifest_desc, err);
	if (!img->manifest)
		return -1;
	if (ocitree_media_type_kind(img->manifest->config.media_type) != OCITREE_DOC_CONFIG)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED,
					  "manifest %s: config has media type '%s', not an image config",
					  img->manifest_desc.digest, img->manifest->config.media_type);
	img->config = ocitree_blob_read_config(img->layout, &img->manifest->config, err);
	if (!img->config)
		return -1;
	if (strv_len(img->config->diff_ids) != img->manifest->n_layers)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
					  "manifest %s has %zu layers but its config lists %zu diff_ids",
					  img->manifest_desc.digest, img->manifest->n_layers,
					  strv_len(img->config->diff_ids));
	return 0;
}

OCITREE_EXPORT struct ocitree_image *ocitree_image_open(struct ocitree_layout *l, const char *tag,
							struct ocitree_error **err)
{
	struct ocitree_image *img = xcalloc(1, sizeof(*img));
	img->layout = l;
	img->tag = xstrdup(tag);
	if (ocitree_image_resolve(l, tag, &img->manifest_desc, &img->root, err) < 0)
		goto fail;
	if (image_load(img, err) < 0) {
		ocitree_error_prefix(err, "tag '%s'", tag);
		goto fail;
	}
	return img;
fail:
	ocitree_image_free(img);
	return NULL;
}

OCITREE_EXPORT struct ocitree_image *ocitree_image_new(struct ocitree_layout *l)
{
	struct ocitree_image *img = xcalloc(1, sizeof(*img));
	img->layout = l;
	img->manifest = xcalloc(1, sizeof(*img->manifest));
	img->manifest->schema_version = 2;
	img->manifest->media_type = xstrdup(OCITREE_MT_OCI_MANIFEST);
	img->manifest->config.media_type = xstrdup(OCITREE_MT_OCI_CONFIG);
	img->config = ocitree_config_new();
	return img;
}

OCITREE_EXPORT void ocitree_image_free(struct ocitree_image *img)
{
	if (!img)
		return;
	free(img->tag);
	ocitree_descriptor_clear(&img->root);
	ocitree_descriptor_clear(&img->manifest_desc);
	ocitree_manifest_free(img->manifest);
	ocitree_config_free(img->config);
	free(img);
}

static void set_media_type(char **mt, const char *to)
{
	free(*mt);
	*mt = xstrdup(to);
}

/* Docker schema 2 -> OCI: the bytes of layers stay the same, only their
 * names change. */
static void convert_to_oci(struct ocitree_manifest *m)
{
	set_media_type(&m->media_type, OCITREE_MT_OCI_MANIFEST);
	set_media_type(&m->config.media_type, OCITREE_MT_OCI_CONFIG);
	for (size_t i = 0; i < m->n_layers; i++) {
		struct ocitree_descriptor *d = &m->layers[i];
		if (strcmp(d->media_type, OCITREE_MT_DOCKER_LAYER_GZIP) == 0)
			set_media_type(&d->media_type, OCITREE_MT_OCI_LAYER_GZIP);
		else if (strcmp(d->media_type, OCITREE_MT_DOCKER_LAYER_FOREIGN_GZIP) == 0)
			set_media_type(&d->media_type, OCITREE_MT_OCI_LAYER_ND_GZIP);
		else if (strcmp(d->media_type, OCITREE_MT_DOCKER_LAYER) == 0)
			set_media_type(&d->media_type, OCITREE_MT_OCI_LAYER);
	}
}

struct set_tag {
	const char *tag;
	const struct ocitree_descriptor *desc;
};

static int set_tag_fn(struct ocitree_index *idx, void *ud, struct ocitree_error **err)
{
	struct set_tag *st = ud;
	ocitree_index_set_ref(idx, st->tag, st->desc);
	return 0;
}

OCITREE_EXPORT int ocitree_image_commit(struct ocitree_image *img, const char *tag, struct ocitree_error **err)
{
	struct ocitree_layout *l = img->layout;
	if (ocitree_tag_check(tag, err) < 0)
		return -1;
	convert_to_oci(img->manifest);
	_cleanup_free_ char *cjson = ocitree_config_to_json(img->config);
	char cdigest[OCITREE_DIGEST_MAX];
	if (ocitree_blob_put(l, cjson, strlen(cjson), cdigest, err) < 0)
		return ocitree_error_prefix(err, "write config");
	memcpy(img->manifest->config.digest, cdigest, sizeof(cdigest));
	img->manifest->config.size = (int64_t)strlen(cjson);
	_cleanup_free_ char *mjson = ocitree_manifest_to_json(img->manifest);
	char mdigest[OCITREE_DIGEST_MAX];
	if (ocitree_blob_put(l, mjson, strlen(mjson), mdigest, err) < 0)
		return ocitree_error_prefix(err, "write manifest");
	struct ocitree_descriptor d = {0};
	d.media_type = xstrdup(OCITREE_MT_OCI_MANIFEST);
	memcpy(d.digest, mdigest, sizeof(mdigest));
	d.size = (int64_t)strlen(mjson);
	struct set_tag st = {tag, &d};
	if (ocitree_layout_update_index(l, set_tag_fn, &st, err) < 0) {
		ocitree_descriptor_clear(&d);
		return ocitree_error_prefix(err, "tag '%s'", tag);
	}
	ocitree_descriptor_clear(&img->manifest_desc);
	img->manifest_desc = d;
	return 0;
}

int image_add_layer_commit(struct ocitree_image *img, const struct ocitree_descriptor *layer, const char *diff_id,
			   const char *tag, const struct ocitree_write_options *o, struct ocitree_error **err)
{
	if (layer) {
		ocitree_manifest_add_layer(img->manifest, layer);
		ocitree_config_add_diff_id(img->config, diff_id);
	}
	if (o->history) {
		struct ocitree_history h = *o->history;
		_cleanup_free_ char *created = NULL;
		if (!h.author)
			h.author = img->config->author;
		if (!h.created) {
			struct timespec now = ocitree_time_now();
			h.created = created = ocitree_time_format(&now);
		}
		h.empty_layer = layer == NULL;
		ocitree_config_add_history(img->config, &h);
	}
	return ocitree_image_commit(img, tag, err);
}

OCITREE_EXPORT int ocitree_image_ref_parse(const char *ref, char **path, char **tag, struct ocitree_error **err)
{
	const char *sep = strrchr(ref, ':');
	_cleanup_free_ char *p = sep ? xstrndup(ref, (size_t)(sep - ref)) : xstrdup(ref);
	_cleanup_free_ char *t = xstrdup(sep ? sep + 1 : "latest");
	if (*p == '\0')
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid --image '%s': path is empty", ref);
	if (strchr(p, ':'))
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid --image '%s': path contains ':'", ref);
	if (ocitree_tag_check(t, err) < 0)
		return ocitree_error_prefix(err, "invalid --image '%s'", ref);
	*path = steal_pointer(&p);
	*tag = steal_pointer(&t);
	return 0;
}
