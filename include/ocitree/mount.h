/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Mount set-up: what a mount of an image serves, made ready in one call.
 * The layer indexes are opened (or built and cached), merged into a tree,
 * and, for a writable mount, the upper directory is checked against the
 * image and its record made to name it.  `ocitree mount` uses it before it
 * starts serving; a writable mount's daemon uses it again to move onto the
 * image a live `commit --clear` made.
 */
#ifndef OCITREE_MOUNT_H
#define OCITREE_MOUNT_H

#include <stdbool.h>
#include <stddef.h>

#include "ocitree/error.h"
#include "ocitree/image.h"
#include "ocitree/layer-index.h"
#include "ocitree/layout.h"
#include "ocitree/tree.h"
#include "ocitree/upper.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ocitree_mount_options {
	/* how layer indexes are found or built (index.cache_dir is required) */
	struct ocitree_layer_index_opts index;
	unsigned threads; /* layers indexed at once; 0: one per CPU */
	/* the layers shown: [from, to) of the manifest's, lowest first;
	 * to == 0 means up to the top */
	size_t from, to;
	unsigned tree_flags; /* enum ocitree_tree_flags */
	/* already open indexes of the lowest n_reuse layers shown (a mount
	 * moving onto an image that extends its own): borrowed, not opened
	 * again; the caller vouches they are those layers' */
	struct ocitree_layer_index *const *reuse;
	size_t n_reuse;
	/* the upper directory of a writable mount, opened (so locked) by the
	 * caller; NULL for a read-only mount.  It changes the whole image:
	 * with an upper, from must be 0, to the top and tree_flags 0. */
	struct ocitree_upper *upper;
	/* the format a new upper directory is given (NULL: all probed), and
	 * that a recorded one must match */
	const struct ocitree_upper_probe_opts *probe;
	/* the upper directory's changes were just committed as img's top
	 * layer (a commit --clear): its record is made to name img with the
	 * clearing flag, for the caller to empty it (ocitree_upper_clear()),
	 * instead of being checked */
	bool clearing;
};

/* What a mount serves.  Owned by the caller: ocitree_mount_clear(). */
struct ocitree_mount {
	struct ocitree_layer_index **layers; /* n_layers indexes, lowest first */
	size_t n_layers;
	size_t n_reused; /* layers[0..n_reused) are the borrowed options.reuse */
	/* the merged tree of layers; NULL when every layer was reused (the
	 * image adds none to the tree the caller has) */
	struct ocitree_tree *tree;
	/* the upper directory was new (no record, empty): its root should be
	 * given the image's root's owner, mode, xattrs and times */
	bool fresh;
};

/* Set up a mount of img (opened from l; img->config, when not NULL, gives
 * the diff_ids the layers are checked against while their indexes are
 * built).  With o->upper, first (unless o->clearing): an interrupted
 * clearing onto img is finished, what a killed daemon left in the work
 * directory is removed, an upper directory holding changes to another
 * image is refused (OCITREE_ERROR_INVALID, naming both images), one whose
 * format differs from o->probe's forced fields too (OCITREE_ERROR_USAGE),
 * and a new one gets the format the file system allows
 * (ocitree_upper_probe()).  Then the indexes of the layers are opened
 * with up to o->threads threads (errors name the layer by its position
 * among those opened, see ocitree_layer_index_open_many()) and merged;
 * last the upper directory's record is made to name l, img->tag and img,
 * and saved, when it did not already.  A layer range outside the manifest
 * is an OCITREE_ERROR_USAGE error.  On failure nothing is left open and
 * *out is cleared; the upper directory may have been cleaned up and
 * probed, but its record is unchanged. */
int ocitree_mount_setup(struct ocitree_layout *l, const struct ocitree_image *img,
			const struct ocitree_mount_options *o, struct ocitree_mount *out, struct ocitree_error **err);

/* Free what m owns (the tree, the indexes it opened, the array) and zero
 * it; borrowed indexes are left alone.  Accepts a zeroed m. */
void ocitree_mount_clear(struct ocitree_mount *m);

#ifdef __cplusplus
}
#endif
#endif
