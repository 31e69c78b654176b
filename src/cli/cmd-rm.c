/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree remove: drop a tag from a layout (its blobs stay until gc).
 */
#include "config.h"

#include "cli.h"

struct rm_args {
	const char *tag, *layout;
};

static int rm_fn(struct ocitree_index *idx, void *ud, struct ocitree_error **err)
{
	struct rm_args *a = ud;
	if (ocitree_index_remove_ref(idx, a->tag) == 0)
		return ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND, "tag '%s' not found in layout '%s'", a->tag,
					  a->layout);
	return 0;
}

int cmd_rm(int argc, char **argv, struct ocitree_error **err)
{
	struct image_ref ref = {0};
	int r = cli_parse_image_opts(argc, argv, &ref, NULL, NULL, err);
	if (r == 0)
		r = cli_expect_args(argc, argv, 0, 0, err);
	if (r != 0) {
		image_ref_clear(&ref);
		return r;
	}
	struct ocitree_layout *l = cli_open_layout(ref.path, err);
	if (l) {
		struct rm_args a = {ref.tag, ref.path};
		r = ocitree_layout_update_index(l, rm_fn, &a, err);
		ocitree_layout_free(l);
	} else {
		r = -1;
	}
	image_ref_clear(&ref);
	return r;
}
