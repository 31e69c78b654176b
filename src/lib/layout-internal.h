/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the library's other files need of a layout beyond the public API:
 * the struct itself (its directory fd and blobs lock), blob paths for
 * fsck, and image_load() for the code that opens an image by a recorded
 * manifest rather than a tag (repack, upper directories).
 */
#ifndef OCITREE_LAYOUT_INTERNAL_H
#define OCITREE_LAYOUT_INTERNAL_H

#include "ocitree/layout.h"

struct ocitree_layout {
	int dirfd;
	int blobs_lock_fd; /* -1 until ocitree_layout_hold_blobs() */
	char *path;
};

/* "blobs/<alg>/<hex>" for a checked digest; caller frees. */
char *blob_path(const char *digest);

struct ocitree_image;
/* Read img->manifest_desc's manifest and its config into img (whose
 * layout is set), checking that the config is an image config with a
 * diff_id per layer. */
int image_load(struct ocitree_image *img, struct ocitree_error **err);

#endif
