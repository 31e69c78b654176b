/* SPDX-License-Identifier: Apache-2.0 */
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

#endif
