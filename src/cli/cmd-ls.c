/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree list: the tags of a layout, one a line or as JSON.
 */
#include "config.h"

#include "cjson-util.h"
#include "cli.h"

int cmd_ls(int argc, char **argv, struct ocitree_error **err)
{
	_cleanup_free_ char *layout = NULL;
	bool json = false;
	int r = cli_parse_layout_opts(argc, argv, &layout, &json, err);
	if (r != 0)
		return r;
	struct ocitree_layout *l = cli_open_layout(layout, err);
	if (!l)
		return -1;
	struct ocitree_index *idx = ocitree_layout_read_index(l, err);
	ocitree_layout_free(l);
	if (!idx)
		return -1;
	_cleanup_json_ cJSON *arr = json_array();
	for (size_t i = 0; i < idx->n_manifests; i++) {
		const struct ocitree_descriptor *d = &idx->manifests[i];
		const char *tag = ocitree_descriptor_ref_name(d);
		/* a tag listed twice names the first entry, as for every lookup */
		if (!tag || ocitree_index_find_ref(idx, tag) != (ssize_t)i)
			continue;
		if (json) {
			cJSON *o = json_object();
			json_add(o, "tag", json_string(tag));
			json_add(o, "digest", json_string(d->digest));
			json_add(o, "mediaType", json_string(d->media_type));
			json_add(o, "size", json_int64(d->size));
			json_append(arr, o);
		} else {
			printf("%s\n", tag);
		}
	}
	if (json) {
		_cleanup_free_ char *s = json_print(arr);
		printf("%s\n", s);
	}
	ocitree_index_free(idx);
	return 0;
}
