/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree stat: an image's manifest, config and history, as umoci 0.6 prints
 * them (the text in stat-text.c) or as JSON; for a tag that names an image
 * index, also the platforms it offers.
 */
#include "config.h"

#include "cjson-util.h"
#include "cli.h"

static int blob_json(struct ocitree_layout *l, const struct ocitree_descriptor *d, size_t max, cJSON **out,
		     struct ocitree_error **err)
{
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	if (ocitree_blob_read(l, d->digest, d->size, max, &data, &len, err) < 0)
		return -1;
	*out = json_parse_object(data, len, d->digest, err);
	return *out ? 0 : -1;
}

static cJSON *descriptor_json(const struct ocitree_descriptor *d)
{
	_cleanup_free_ char *text = ocitree_descriptor_to_json(d);
	return json_raw(text);
}

static int print_json(struct ocitree_image *img, struct ocitree_error **err)
{
	_cleanup_json_ cJSON *root = json_object();
	cJSON *mblob = NULL, *cblob = NULL;
	if (blob_json(img->layout, &img->manifest_desc, OCITREE_MAX_MANIFEST_SIZE, &mblob, err) < 0)
		return -1;
	if (blob_json(img->layout, &img->manifest->config, OCITREE_MAX_CONFIG_SIZE, &cblob, err) < 0) {
		if (img->config) {
			cJSON_Delete(mblob);
			return -1;
		}
		/* an artifact's config need not be JSON: shown by its descriptor */
		ocitree_error_free(*err);
		*err = NULL;
	}
	cJSON *m = json_object();
	json_add(m, "descriptor", descriptor_json(&img->manifest_desc));
	json_add(m, "blob", mblob);
	json_add(root, "manifest", m);
	cJSON *c = json_object();
	json_add(c, "descriptor", descriptor_json(&img->manifest->config));
	if (cblob)
		json_add(c, "blob", cblob);
	json_add(root, "config", c);
	if (!img->config)
		goto platforms; /* an artifact has no history (umoci: omitzero) */
	/* umoci 0.6's historyStat: the config's entries only, each with the
	 * layer it made (null for an empty layer) and the fields of the entry
	 * under Go's omitempty */
	cJSON *hist = json_array();
	const struct ocitree_config *cf = img->config;
	for (size_t i = 0, layer = 0; i < cf->n_history; i++) {
		const struct ocitree_history *h = &cf->history[i];
		bool made = !h->empty_layer && layer < img->manifest->n_layers;
		cJSON *o = json_object();
		json_add(o, "layer", made ? descriptor_json(&img->manifest->layers[layer]) : cJSON_CreateNull());
		json_add(o, "diff_id", json_string(made && cf->diff_ids[layer] ? cf->diff_ids[layer] : ""));
		layer += made;
		if (h->created) {
			_cleanup_free_ char *t = ocitree_time_canonical(h->created);
			json_add(o, "created", json_string(t ? t : h->created));
		}
		if (h->created_by && *h->created_by)
			json_add(o, "created_by", json_string(h->created_by));
		if (h->author && *h->author)
			json_add(o, "author", json_string(h->author));
		if (h->comment && *h->comment)
			json_add(o, "comment", json_string(h->comment));
		if (h->empty_layer)
			json_add(o, "empty_layer", json_bool(true));
		json_append(hist, o);
	}
	json_add(root, "history", hist);
platforms:
	/* ocitree's own: what the tag's image index offers */
	if (img->index) {
		cJSON *plats = json_array();
		for (size_t i = 0; i < img->index->n_manifests; i++) {
			const struct ocitree_descriptor *d = &img->index->manifests[i];
			cJSON *o = json_object();
			_cleanup_free_ char *p = d->platform ? ocitree_platform_format(d->platform) : NULL;
			json_add(o, "platform", p ? json_string(p) : cJSON_CreateNull());
			json_add(o, "descriptor", descriptor_json(d));
			json_add(o, "selected", json_bool(i == img->index_pos));
			json_append(plats, o);
		}
		json_add(root, "platforms", plats);
	}
	_cleanup_free_ char *s = json_print(root);
	printf("%s\n", s);
	return 0;
}

int cmd_stat(int argc, char **argv, struct ocitree_error **err)
{
	struct image_ref ref = {0};
	bool json = false;
	struct platform_opt plat = {0};
	int r = cli_parse_image_opts(argc, argv, &ref, &json, &plat, err);
	if (r == 0)
		r = cli_expect_args(argc, argv, 0, 0, err);
	if (r != 0) {
		image_ref_clear(&ref);
		platform_opt_clear(&plat);
		return r;
	}
	struct ocitree_layout *l = cli_open_layout(ref.path, err);
	struct ocitree_image *img = l ? ocitree_image_inspect(l, ref.tag, platform_opt_get(&plat), err) : NULL;
	r = -1;
	if (img) {
		if (json)
			r = print_json(img, err);
		else {
			stat_print_text(stdout, img);
			r = 0;
		}
	}
	ocitree_image_free(img);
	ocitree_layout_free(l);
	image_ref_clear(&ref);
	platform_opt_clear(&plat);
	return r;
}
