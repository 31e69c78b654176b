/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree new: create an empty image (no layers) under a tag.
 */
#include "config.h"

#include "cli.h"

int cmd_new(int argc, char **argv, struct ocitree_error **err)
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
		struct ocitree_image *img = ocitree_image_new(l);
		r = ocitree_image_commit(img, ref.tag, err);
		if (r == 0)
			log_info("created new image '%s' (%s)", ref.tag, img->manifest_desc.digest);
		ocitree_image_free(img);
		ocitree_layout_free(l);
	} else {
		r = -1;
	}
	image_ref_clear(&ref);
	return r;
}
