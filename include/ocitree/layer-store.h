/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A layer store: the layers of every image in one or more layouts, found
 * by their blob digest, each opened as an overlayfs lower directory (an
 * OCITREE_TREE_OVERLAY tree over its layer index) with the record a
 * containers/storage additional layer store gives for it.  `ocitree store`
 * serves one over FUSE.
 *
 * A layer is known when an image reachable from a layout's index.json
 * (through nested indexes) lists it and its blob is in that layout; the
 * first layout given wins.  The store re-reads a layout whose index.json
 * changed (a new tag, an rm before gc) on the next lookup, so a running
 * store sees layouts change.  Layers once opened stay open (their index
 * keeps the blob open) until the store is freed, whatever gc does.
 *
 * Thread safety: every function may be called from any number of threads;
 * opening a layer that is being opened waits for that opening.
 */
#ifndef OCITREE_LAYER_STORE_H
#define OCITREE_LAYER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ocitree/error.h"
#include "ocitree/layer-index.h"
#include "ocitree/tree.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ocitree_layer_store_options {
	const char *const *layouts; /* paths, searched in this order */
	size_t n_layouts;
	/* how layer indexes are found or built (index.cache_dir is required;
	 * index.progress is not used) */
	struct ocitree_layer_index_opts index;
	/* opaque directories carry user.overlay.opaque instead of
	 * trusted.overlay.opaque (OCITREE_TREE_OVERLAY_USER) */
	bool user_xattrs;
};

struct ocitree_layer_store;

/* Open every layout (an error names the one that is not a layout) and read
 * which layers they have.  Copies what it needs of o. */
struct ocitree_layer_store *ocitree_layer_store_new(const struct ocitree_layer_store_options *o,
                                                    struct ocitree_error **err);
void ocitree_layer_store_free(struct ocitree_layer_store *s);

/* Whether a layout has the layer of blob digest (re-reading layouts whose
 * index.json changed first).  *size, when not NULL, gets the blob's size. */
bool ocitree_layer_store_has(struct ocitree_layer_store *s, const char *digest, int64_t *size);

/* An opened layer: borrowed from the store, valid until it is freed. */
struct ocitree_store_layer;

/* The layer of blob digest, opened on the first call: its index loaded
 * from the cache or built (verifying the blob and its diff_id), its overlay
 * tree built and its record made.  OCITREE_ERROR_NOT_FOUND when no layout
 * has it; a layer that failed to open is tried again on the next call. */
struct ocitree_store_layer *ocitree_layer_store_open(struct ocitree_layer_store *s, const char *digest,
                                                     struct ocitree_error **err);

/* The layer as an overlay lower directory. */
const struct ocitree_tree *ocitree_store_layer_tree(const struct ocitree_store_layer *sl);

/* The layer's record for containers/storage (its `info` file): a JSON object
 * with compressed-diff-digest, compressed-size, diff-digest (the diff_id),
 * diff-size (of the tar), compression (containers/storage's number for it),
 * uidset and gidset; *len gets its length. */
const char *ocitree_store_layer_info(const struct ocitree_store_layer *sl, size_t *len);

/* The compressed blob (its `blob` file): an fd owned by the layer, and its
 * size. */
int ocitree_store_layer_blob_fd(const struct ocitree_store_layer *sl, uint64_t *size);

#ifdef __cplusplus
}
#endif
#endif
