/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree tag: give an image another tag.
 */
#include "config.h"

#include "cli.h"

struct tag_args {
	const char *from, *to, *layout;
};

/* The new tag names the same index.json entry (a manifest or an index) as
 * the old one, read under the layout lock so that a concurrent change of
 * the old tag cannot be half-seen. */
static int tag_fn(struct ocitree_index *idx, void *ud, struct ocitree_error **err)
{
	struct tag_args *a = ud;
	ssize_t pos = ocitree_index_find_ref(idx, a->from);
	if (pos < 0)
		return ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND, "tag '%s' not found in layout '%s'", a->from,
					  a->layout);
	struct ocitree_descriptor d;
	ocitree_descriptor_copy(&d, &idx->manifests[pos]);
	ocitree_index_set_ref(idx, a->to, &d);
	ocitree_descriptor_clear(&d);
	return 0;
}

int cmd_tag(int argc, char **argv, struct ocitree_error **err)
{
	struct image_ref ref = {0};
	int r = cli_parse_image_opts(argc, argv, &ref, NULL, err);
	if (r == 0)
		r = cli_expect_args(argc, argv, 1, 1, err);
	if (r == 0)
		r = ocitree_tag_check(argv[optind], err);
	if (r != 0) {
		image_ref_clear(&ref);
		return r;
	}
	struct ocitree_layout *l = cli_open_layout(ref.path, err);
	if (l) {
		struct tag_args a = {ref.tag, argv[optind], ref.path};
		r = ocitree_layout_update_index(l, tag_fn, &a, err);
		ocitree_layout_free(l);
	} else {
		r = -1;
	}
	image_ref_clear(&ref);
	return r;
}
