/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree stat: an image's history and layers, as a table or JSON.
 */
#include "config.h"

#include "cjson-util.h"
#include "cli.h"

/* One row of the history: a history entry and the layer it made, if any.
 * Layers beyond what the history describes get rows of their own. */
struct row {
	const struct ocitree_history *h; /* NULL for a layer without history */
	const struct ocitree_descriptor *layer;
	const char *diff_id;
};

static size_t build_rows(const struct ocitree_image *img, struct row **out)
{
	const struct ocitree_manifest *m = img->manifest;
	const struct ocitree_config *c = img->config;
	struct row *rows = xcalloc(c->n_history + m->n_layers + 1, sizeof(*rows));
	size_t n = 0, layer = 0;
	for (size_t i = 0; i < c->n_history; i++) {
		rows[n].h = &c->history[i];
		if (!c->history[i].empty_layer && layer < m->n_layers) {
			rows[n].layer = &m->layers[layer];
			rows[n].diff_id = c->diff_ids[layer];
			layer++;
		}
		n++;
	}
	for (; layer < m->n_layers; layer++, n++) {
		rows[n].layer = &m->layers[layer];
		rows[n].diff_id = c->diff_ids[layer];
	}
	*out = rows;
	return n;
}

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
		cJSON_Delete(mblob);
		return -1;
	}
	cJSON *m = json_object();
	json_add(m, "descriptor", descriptor_json(&img->manifest_desc));
	json_add(m, "blob", mblob);
	json_add(root, "manifest", m);
	cJSON *c = json_object();
	json_add(c, "descriptor", descriptor_json(&img->manifest->config));
	json_add(c, "blob", cblob);
	json_add(root, "config", c);
	struct row *rows = NULL;
	size_t n = build_rows(img, &rows);
	cJSON *hist = json_array();
	for (size_t i = 0; i < n; i++) {
		cJSON *o = json_object();
		json_add(o, "layer", rows[i].layer ? descriptor_json(rows[i].layer) : cJSON_CreateNull());
		json_add(o, "diff_id", json_string(rows[i].diff_id ? rows[i].diff_id : ""));
		const struct ocitree_history *h = rows[i].h;
		json_add(o, "created", json_string(h && h->created ? h->created : ""));
		json_add(o, "created_by", json_string(h && h->created_by ? h->created_by : ""));
		json_add(o, "author", json_string(h && h->author ? h->author : ""));
		json_add(o, "comment", json_string(h && h->comment ? h->comment : ""));
		json_add(o, "empty_layer", json_bool(rows[i].layer == NULL));
		json_append(hist, o);
	}
	free(rows);
	json_add(root, "history", hist);
	_cleanup_free_ char *s = json_print(root);
	printf("%s\n", s);
	return 0;
}

static void print_table(struct ocitree_image *img)
{
	const struct ocitree_config *c = img->config;
	_cleanup_free_ char *msize = human_size(img->manifest_desc.size);
	printf("Image:     %s:%s\n", ocitree_layout_path(img->layout), img->tag);
	printf("Manifest:  %s (%s)\n", img->manifest_desc.digest, msize);
	printf("Config:    %s\n", img->manifest->config.digest);
	printf("Platform:  %s/%s%s%s\n", c->os, c->architecture, c->variant ? "/" : "", c->variant ? c->variant : "");
	if (c->created)
		printf("Created:   %s\n", c->created);
	if (c->author)
		printf("Author:    %s\n", c->author);
	printf("\n");

	struct row *rows = NULL;
	size_t n = build_rows(img, &rows);
	const char *hdr[5] = {"LAYER", "CREATED", "CREATED BY", "SIZE", "COMMENT"};
	char **cells = xcalloc(n * 5, sizeof(char *));
	size_t width[5];
	for (int k = 0; k < 5; k++)
		width[k] = strlen(hdr[k]);
	for (size_t i = 0; i < n; i++) {
		const struct ocitree_history *h = rows[i].h;
		cells[i * 5 + 0] = xstrdup(rows[i].layer ? rows[i].layer->digest : "<none>");
		cells[i * 5 + 1] = xstrdup(h && h->created ? h->created : "<unknown>");
		/* keep the table on one line per row */
		char *by = xstrdup(h && h->created_by ? h->created_by : "");
		for (char *p = by; *p; p++)
			if (*p == '\n' || *p == '\t')
				*p = ' ';
		cells[i * 5 + 2] = by;
		cells[i * 5 + 3] = rows[i].layer ? human_size(rows[i].layer->size) : xstrdup("<none>");
		cells[i * 5 + 4] = xstrdup(h && h->comment ? h->comment : "");
		for (int k = 0; k < 5; k++)
			if (strlen(cells[i * 5 + k]) > width[k])
				width[k] = strlen(cells[i * 5 + k]);
	}
	printf("%-*s  %-*s  %-*s  %-*s  %s\n", (int)width[0], hdr[0], (int)width[1], hdr[1], (int)width[2], hdr[2],
	       (int)width[3], hdr[3], hdr[4]);
	for (size_t i = 0; i < n; i++) {
		char **r = &cells[i * 5];
		printf("%-*s  %-*s  %-*s  %-*s  %s\n", (int)width[0], r[0], (int)width[1], r[1], (int)width[2], r[2],
		       (int)width[3], r[3], r[4]);
		for (int k = 0; k < 5; k++)
			free(r[k]);
	}
	free(cells);
	free(rows);
}

int cmd_stat(int argc, char **argv, struct ocitree_error **err)
{
	struct image_ref ref = {0};
	bool json = false;
	int r = cli_parse_image_opts(argc, argv, &ref, &json, err);
	if (r == 0)
		r = cli_expect_args(argc, argv, 0, 0, err);
	if (r != 0) {
		image_ref_clear(&ref);
		return r;
	}
	struct ocitree_layout *l = cli_open_layout(ref.path, err);
	struct ocitree_image *img = l ? ocitree_image_open(l, ref.tag, err) : NULL;
	r = -1;
	if (img) {
		if (json)
			r = print_json(img, err);
		else {
			print_table(img);
			r = 0;
		}
	}
	ocitree_image_free(img);
	ocitree_layout_free(l);
	image_ref_clear(&ref);
	return r;
}
