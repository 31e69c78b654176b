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

/* "linux/amd64, linux/arm64/v8": what an index offers, for the error
 * that says the wanted platform is not among them. */
static char *offered(const struct ocitree_index *idx)
{
	struct buf b = {0};
	buf_puts(&b, "");
	for (size_t i = 0; i < idx->n_manifests; i++) {
		if (ocitree_media_type_kind(idx->manifests[i].media_type) == OCITREE_DOC_OTHER)
			continue;
		_cleanup_free_ char *p = ocitree_platform_format(idx->manifests[i].platform);
		buf_printf(&b, "%s%s", b.len ? ", " : "", idx->manifests[i].platform ? p : "(no platform)");
	}
	if (b.len == 0)
		buf_puts(&b, "no manifests");
	return buf_steal(&b);
}

/* Pick the entry of an index that fits want.  An index with a single
 * entry without a platform is that entry (nothing to choose from). */
static int pick_manifest(const struct ocitree_index *idx, const char *tag, const struct ocitree_platform *want,
			 struct ocitree_error **err)
{
	for (size_t i = 0; i < idx->n_manifests; i++) {
		if (ocitree_media_type_kind(idx->manifests[i].media_type) == OCITREE_DOC_OTHER)
			continue;
		if (ocitree_platform_match(idx->manifests[i].platform, want))
			return (int)i;
	}
	if (idx->n_manifests == 1 && !idx->manifests[0].platform)
		return 0;
	_cleanup_free_ char *w = ocitree_platform_format(want);
	_cleanup_free_ char *has = offered(idx);
	return ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND, "no manifest for %s in tag '%s'; it has %s", w, tag,
				  has);
}

/* The host as a selector: its strings are borrowed, never freed. */
static struct ocitree_platform host_platform(void)
{
	struct ocitree_platform p = {0};
	p.os = (char *)"linux";
	p.architecture = (char *)ocitree_host_architecture();
	p.variant = (char *)ocitree_host_variant();
	return p;
}

/* Resolve tag for want down to a manifest; when it went through indexes,
 * *index_out gets the innermost one (owned by the caller), *pos_out the
 * position picked in it and *depth_out how many indexes there were. */
static int resolve(struct ocitree_layout *l, const char *tag, const struct ocitree_platform *want,
		   struct ocitree_descriptor *manifest_desc, struct ocitree_descriptor *root,
		   struct ocitree_index **index_out, size_t *pos_out, int *depth_out, struct ocitree_error **err)
{
	struct ocitree_platform host = host_platform();
	if (!want)
		want = &host;
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

	struct ocitree_index *last = NULL;
	size_t last_pick = 0;
	char chain[MAX_INDEX_DEPTH + 1][OCITREE_DIGEST_MAX];
	for (int depth = 0;; depth++) {
		enum ocitree_doc_kind kind = ocitree_media_type_kind(cur.media_type);
		if (kind == OCITREE_DOC_MANIFEST) {
			*manifest_desc = cur;
			if (index_out)
				*index_out = last;
			else
				ocitree_index_free(last);
			if (pos_out)
				*pos_out = last_pick;
			if (depth_out)
				*depth_out = depth;
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
		int pick = pick_manifest(idx, tag, want, err);
		if (pick < 0) {
			ocitree_index_free(idx);
			break;
		}
		ocitree_descriptor_clear(&cur);
		ocitree_descriptor_copy(&cur, &idx->manifests[pick]);
		ocitree_index_free(last);
		last = idx;
		last_pick = (size_t)pick;
	}
	ocitree_index_free(last);
	ocitree_descriptor_clear(&cur);
	if (root)
		ocitree_descriptor_clear(root);
	return -1;
}

OCITREE_EXPORT int ocitree_image_resolve_platform(struct ocitree_layout *l, const char *tag,
						  const struct ocitree_platform *want,
						  struct ocitree_descriptor *manifest_desc,
						  struct ocitree_descriptor *root, struct ocitree_error **err)
{
	return resolve(l, tag, want, manifest_desc, root, NULL, NULL, NULL, err);
}

OCITREE_EXPORT int ocitree_image_resolve(struct ocitree_layout *l, const char *tag,
					 struct ocitree_descriptor *manifest_desc, struct ocitree_descriptor *root,
					 struct ocitree_error **err)
{
	return resolve(l, tag, NULL, manifest_desc, root, NULL, NULL, NULL, err);
}

/* any: a manifest whose config is not an image config (an OCI 1.1
 * artifact) loads with config NULL instead of failing */
static int load(struct ocitree_image *img, bool any, struct ocitree_error **err)
{
	img->manifest = ocitree_blob_read_manifest(img->layout, &img->manifest_desc, err);
	if (!img->manifest)
		return -1;
	if (any && ocitree_media_type_kind(img->manifest->config.media_type) != OCITREE_DOC_CONFIG)
		return 0;
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

int image_load(struct ocitree_image *img, struct ocitree_error **err)
{
	return load(img, false, err);
}

static struct ocitree_image *open_image(struct ocitree_layout *l, const char *tag, const struct ocitree_platform *want,
				       bool any, struct ocitree_error **err)
{
	struct ocitree_image *img = xcalloc(1, sizeof(*img));
	img->layout = l;
	img->tag = xstrdup(tag);
	int depth = 0;
	if (resolve(l, tag, want, &img->manifest_desc, &img->root, &img->index, &img->index_pos, &depth, err) < 0)
		goto fail;
	img->index_is_root = depth == 1;
	if (load(img, any, err) < 0) {
		ocitree_error_prefix(err, "tag '%s'", tag);
		goto fail;
	}
	return img;
fail:
	ocitree_image_free(img);
	return NULL;
}

OCITREE_EXPORT struct ocitree_image *ocitree_image_open_platform(struct ocitree_layout *l, const char *tag,
								 const struct ocitree_platform *want,
								 struct ocitree_error **err)
{
	return open_image(l, tag, want, false, err);
}

OCITREE_EXPORT struct ocitree_image *ocitree_image_inspect(struct ocitree_layout *l, const char *tag,
							   const struct ocitree_platform *want,
							   struct ocitree_error **err)
{
	return open_image(l, tag, want, true, err);
}

OCITREE_EXPORT struct ocitree_image *ocitree_image_open(struct ocitree_layout *l, const char *tag,
							struct ocitree_error **err)
{
	return ocitree_image_open_platform(l, tag, NULL, err);
}

int image_attach_index(struct ocitree_image *img, const struct ocitree_descriptor *root, bool by_platform,
		       struct ocitree_error **err)
{
	if (img->index || ocitree_media_type_kind(root->media_type) != OCITREE_DOC_INDEX)
		return 0;
	struct ocitree_index *idx = ocitree_blob_read_index(img->layout, root, err);
	if (!idx)
		return -1;
	ssize_t found = -1;
	for (size_t i = 0; i < idx->n_manifests && found < 0; i++)
		if (strcmp(idx->manifests[i].digest, img->manifest_desc.digest) == 0)
			found = (ssize_t)i;
	/* the platform's entry moved on since (another commit of the same
	 * platform): the image still replaces that platform, and only it */
	struct ocitree_platform want = {.os = img->config->os,
					.architecture = img->config->architecture,
					.variant = img->config->variant};
	for (size_t i = 0; by_platform && i < idx->n_manifests && found < 0; i++)
		if (ocitree_media_type_kind(idx->manifests[i].media_type) == OCITREE_DOC_MANIFEST &&
		    ocitree_platform_match(idx->manifests[i].platform, &want))
			found = (ssize_t)i;
	if (found < 0) {
		ocitree_index_free(idx);
		return 0;
	}
	img->index = idx;
	img->index_pos = (size_t)found;
	img->index_is_root = true;
	ocitree_descriptor_clear(&img->root);
	ocitree_descriptor_copy(&img->root, root);
	return 0;
}

int image_attach_tag_index(struct ocitree_image *img, const char *tag, struct ocitree_error **err)
{
	if (img->index || !tag)
		return 0;
	struct ocitree_index *top = ocitree_layout_read_index(img->layout, err);
	if (!top)
		return -1;
	ssize_t pos = ocitree_index_find_ref(top, tag);
	int r = pos < 0 ? 0 : image_attach_index(img, &top->manifests[pos], true, err);
	ocitree_index_free(top);
	if (r == 0 && img->index) {
		/* the index came from this tag: a commit to it follows it */
		free(img->tag);
		img->tag = xstrdup(tag);
	}
	return r;
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
	ocitree_index_free(img->index);
	free(img);
}

static void set_string(char **mt, const char *to)
{
	free(*mt);
	*mt = xstrdup(to);
}

/* Docker schema 2 -> OCI: the bytes of layers stay the same, only their
 * names change. */
static void convert_to_oci(struct ocitree_manifest *m)
{
	set_string(&m->media_type, OCITREE_MT_OCI_MANIFEST);
	set_string(&m->config.media_type, OCITREE_MT_OCI_CONFIG);
	for (size_t i = 0; i < m->n_layers; i++) {
		struct ocitree_descriptor *d = &m->layers[i];
		if (strcmp(d->media_type, OCITREE_MT_DOCKER_LAYER_GZIP) == 0)
			set_string(&d->media_type, OCITREE_MT_OCI_LAYER_GZIP);
		else if (strcmp(d->media_type, OCITREE_MT_DOCKER_LAYER_FOREIGN_GZIP) == 0)
			set_string(&d->media_type, OCITREE_MT_OCI_LAYER_ND_GZIP);
		else if (strcmp(d->media_type, OCITREE_MT_DOCKER_LAYER) == 0)
			set_string(&d->media_type, OCITREE_MT_OCI_LAYER);
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

/* The new manifest m of img replaces img's entry in a copy of its index;
 * the copy is written as a blob and tag pointed at it, the tag's entry
 * keeping what the old one had besides digest, size and media type. */
static void config_freep(struct ocitree_config **c)
{
	ocitree_config_free(*c);
}

static bool streq_null(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

/* A copy of index from with entry at replaced by the manifest m, written
 * as a blob; *out gets the copy and *root its descriptor for index.json,
 * made from base (the tag's entry: its annotations are kept). */
static int write_index(struct ocitree_image *img, const struct ocitree_index *from, size_t at,
		       const struct ocitree_descriptor *base, const struct ocitree_descriptor *m,
		       const struct ocitree_config *old_cfg, struct ocitree_index **out, struct ocitree_descriptor *root,
		       struct ocitree_error **err)
{
	/* a deep copy through JSON: the writer is the one every index goes
	 * through, so what is kept is exactly what is written */
	_cleanup_free_ char *old = ocitree_index_to_json(from);
	struct ocitree_index *idx = ocitree_index_parse(old, strlen(old), err);
	if (!idx)
		return ocitree_error_prefix(err, "copy image index %s", base->digest);
	struct ocitree_descriptor *e = &idx->manifests[at];
	set_string(&e->media_type, OCITREE_MT_OCI_MANIFEST);
	memcpy(e->digest, m->digest, sizeof(e->digest));
	e->size = m->size;
	/* the entry follows a platform change of the config (`config
	 * --platform.arch`), when it described the old config; an entry that
	 * already disagreed with its config is left as it was */
	const struct ocitree_config *c = img->config;
	struct ocitree_platform *p = e->platform;
	if (p && old_cfg && p->os && p->architecture && old_cfg->os && old_cfg->architecture && c->os &&
	    c->architecture && strcmp(p->os, old_cfg->os) == 0 && strcmp(p->architecture, old_cfg->architecture) == 0 &&
	    (strcmp(c->os, old_cfg->os) != 0 || strcmp(c->architecture, old_cfg->architecture) != 0 ||
	     !streq_null(c->variant, old_cfg->variant) || !streq_null(c->os_version, old_cfg->os_version))) {
		set_string(&p->os, c->os);
		set_string(&p->architecture, c->architecture);
		free(p->variant);
		p->variant = c->variant && *c->variant ? xstrdup(c->variant) : NULL;
		free(p->os_version);
		p->os_version = c->os_version && *c->os_version ? xstrdup(c->os_version) : NULL;
	}
	/* a Docker list holding an OCI manifest is neither; an OCI index may
	 * hold both */
	if (idx->media_type)
		set_string(&idx->media_type, OCITREE_MT_OCI_INDEX);
	idx->schema_version = 2;
	_cleanup_free_ char *ijson = ocitree_index_to_json(idx);
	char idigest[OCITREE_DIGEST_MAX];
	if (ocitree_blob_put(img->layout, ijson, strlen(ijson), idigest, err) < 0) {
		ocitree_index_free(idx);
		return ocitree_error_prefix(err, "write image index");
	}
	ocitree_descriptor_copy(root, base);
	set_string(&root->media_type, OCITREE_MT_OCI_INDEX);
	memcpy(root->digest, idigest, sizeof(idigest));
	root->size = (int64_t)strlen(ijson);
	*out = idx;
	return 0;
}

struct index_tag {
	struct ocitree_image *img;
	const char *tag;
	const struct ocitree_descriptor *m;
	const struct ocitree_config *old_cfg;
	struct ocitree_index *idx; /* out: the new index */
	size_t at;                 /* out: img's entry in it */
	struct ocitree_descriptor root;
};

/* Under the layout lock: when the tag the image came from names another
 * index now (a concurrent write of another platform), the image replaces
 * its platform's entry in that one, so that neither write is lost. */
static int index_tag_fn(struct ocitree_index *top, void *ud, struct ocitree_error **err)
{
	struct index_tag *it = ud;
	struct ocitree_image *img = it->img;
	const struct ocitree_index *from = img->index;
	size_t at = img->index_pos;
	const struct ocitree_descriptor *base = &img->root;
	ssize_t pos = ocitree_index_find_ref(top, it->tag);
	struct ocitree_index *now = NULL;
	if (pos >= 0 && img->tag && strcmp(it->tag, img->tag) == 0 &&
	    strcmp(top->manifests[pos].digest, img->root.digest) != 0 &&
	    ocitree_media_type_kind(top->manifests[pos].media_type) == OCITREE_DOC_INDEX) {
		now = ocitree_blob_read_index(img->layout, &top->manifests[pos], err);
		if (!now)
			return -1;
		const struct ocitree_descriptor *was = &img->index->manifests[img->index_pos];
		/* the same platform (an index may list one manifest for two),
		 * else the same manifest */
		ssize_t found = -1;
		for (size_t i = 0; was->platform && i < now->n_manifests && found < 0; i++)
			if (ocitree_platform_match(now->manifests[i].platform, was->platform) &&
			    ocitree_platform_match(was->platform, now->manifests[i].platform))
				found = (ssize_t)i;
		for (size_t i = 0; !was->platform && i < now->n_manifests && found < 0; i++)
			if (strcmp(now->manifests[i].digest, was->digest) == 0)
				found = (ssize_t)i;
		if (found < 0) {
			_cleanup_free_ char *pf = ocitree_platform_format(was->platform);
			ocitree_index_free(now);
			return ocitree_error_setk(err, OCITREE_ERROR_FAILED,
						  "tag '%s' changed meanwhile and no longer has %s; try again", it->tag,
						  pf);
		}
		log_info("tag '%s' changed meanwhile: writing into its index as it is now", it->tag);
		from = now;
		at = (size_t)found;
		base = &top->manifests[pos];
	}
	int r = write_index(img, from, at, base, it->m, it->old_cfg, &it->idx, &it->root, err);
	ocitree_index_free(now);
	if (r < 0)
		return -1;
	it->at = at;
	ocitree_index_set_ref(top, it->tag, &it->root);
	return 0;
}

/* The new manifest m of img replaces img's entry in a copy of its index,
 * written as a blob before index.json names it. */
static int commit_into_index(struct ocitree_image *img, const char *tag, const struct ocitree_descriptor *m,
			     const struct ocitree_config *old_cfg, struct ocitree_error **err)
{
	struct index_tag it = {.img = img, .tag = tag, .m = m, .old_cfg = old_cfg};
	if (ocitree_layout_update_index(img->layout, index_tag_fn, &it, err) < 0) {
		ocitree_index_free(it.idx);
		ocitree_descriptor_clear(&it.root);
		return ocitree_error_prefix(err, "tag '%s'", tag);
	}
	ocitree_descriptor_clear(&img->root);
	img->root = it.root;
	ocitree_index_free(img->index);
	img->index = it.idx;
	img->index_pos = it.at;
	return 0;
}

OCITREE_EXPORT int ocitree_image_commit(struct ocitree_image *img, const char *tag, struct ocitree_error **err)
{
	struct ocitree_layout *l = img->layout;
	if (ocitree_tag_check(tag, err) < 0)
		return -1;
	/* the config as it was, for the platform of an index entry */
	struct ocitree_config *old_cfg = NULL;
	if (img->index && img->index_is_root && img->manifest->config.digest[0]) {
		old_cfg = ocitree_blob_read_config(l, &img->manifest->config, err);
		if (!old_cfg)
			return ocitree_error_prefix(err, "read the image's config");
	}
	_cleanup_(config_freep) struct ocitree_config *old_cfg_owned = old_cfg;
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
	if (img->index && !img->index_is_root)
		log_warn("tag '%s': the image comes from an index nested in an index; '%s' now names its manifest alone",
			 img->tag ? img->tag : "?", tag);
	if (img->index && img->index_is_root) {
		if (commit_into_index(img, tag, &d, old_cfg, err) < 0) {
			ocitree_descriptor_clear(&d);
			return -1;
		}
	} else {
		struct set_tag st = {tag, &d};
		if (ocitree_layout_update_index(l, set_tag_fn, &st, err) < 0) {
			ocitree_descriptor_clear(&d);
			return ocitree_error_prefix(err, "tag '%s'", tag);
		}
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
