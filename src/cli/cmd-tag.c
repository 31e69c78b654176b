/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree tag: give an image another tag.
 */
#include "config.h"

#include "cli.h"

struct tag_args {
	const char *from, *to, *layout;
	/* with --platform: the tag's entry as resolved, and the manifest picked */
	const struct ocitree_descriptor *root, *manifest;
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
	if (a->root && strcmp(a->root->digest, idx->manifests[pos].digest) != 0)
		return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "tag '%s' changed while it was read; try again",
					  a->from);
	struct ocitree_descriptor d;
	ocitree_descriptor_copy(&d, a->manifest ? a->manifest : &idx->manifests[pos]);
	ocitree_index_set_ref(idx, a->to, &d);
	ocitree_descriptor_clear(&d);
	return 0;
}

int cmd_tag(int argc, char **argv, struct ocitree_error **err)
{
	struct image_ref ref = {0};
	struct platform_opt plat = {0};
	int r = cli_parse_image_opts(argc, argv, &ref, NULL, &plat, err);
	if (r == 0)
		r = cli_expect_args(argc, argv, 1, 1, err);
	if (r == 0)
		r = ocitree_tag_check(argv[optind], err);
	if (r != 0) {
		image_ref_clear(&ref);
		platform_opt_clear(&plat);
		return r;
	}
	struct ocitree_layout *l = cli_open_layout(ref.path, err);
	struct ocitree_descriptor root = {0}, manifest = {0};
	if (l && plat.set &&
	    ocitree_image_resolve_platform(l, ref.tag, platform_opt_get(&plat), &manifest, &root, err) < 0)
		r = -1;
	if (l && r == 0) {
		/* --platform: the new tag names that platform's manifest alone */
		struct tag_args a = {ref.tag, argv[optind], ref.path, plat.set ? &root : NULL,
				     plat.set ? &manifest : NULL};
		r = ocitree_layout_update_index(l, tag_fn, &a, err);
	} else {
		r = -1;
	}
	ocitree_descriptor_clear(&root);
	ocitree_descriptor_clear(&manifest);
	ocitree_layout_free(l);
	image_ref_clear(&ref);
	platform_opt_clear(&plat);
	return r;
}
