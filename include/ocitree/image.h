/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Images: a tag resolved to one manifest and its config, and the way a
 * changed image is written back (config blob, manifest blob, tag).
 */
#ifndef OCITREE_IMAGE_H
#define OCITREE_IMAGE_H

#include "ocitree/layout.h"
#include "ocitree/model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ocitree_image {
	struct ocitree_layout *layout; /* borrowed */
	char *tag;                     /* the tag it was opened from, or NULL */
	struct ocitree_descriptor root;     /* the index.json entry of the tag */
	struct ocitree_descriptor manifest_desc;
	struct ocitree_manifest *manifest;
	struct ocitree_config *config;
};

/* Resolve tag to a manifest: index.json's entry for it, then through nested
 * image indexes (Docker manifest lists too) to the manifest for the host
 * platform.  Reads and verifies the manifest and the config.  A missing tag
 * is OCITREE_ERROR_NOT_FOUND ("tag 'x' not found in layout 'L'"). */
struct ocitree_image *ocitree_image_open(struct ocitree_layout *l, const char *tag, struct ocitree_error **err);

/* Resolve tag to its manifest descriptor only (same rules). */
int ocitree_image_resolve(struct ocitree_layout *l, const char *tag, struct ocitree_descriptor *manifest_desc,
			  struct ocitree_descriptor *root, struct ocitree_error **err);

/* A new image with no layers, a config for the host platform and no tag. */
struct ocitree_image *ocitree_image_new(struct ocitree_layout *l);

void ocitree_image_free(struct ocitree_image *img);

/* Write img's config and manifest as new blobs (OCI media types; Docker
 * ones are converted) and point tag at the manifest.  On success
 * img->manifest_desc describes the new manifest.  Nothing in index.json
 * changes on failure. */
int ocitree_image_commit(struct ocitree_image *img, const char *tag, struct ocitree_error **err);

/* Parse "path[:tag]" the way umoci does: split at the last ':', tag defaults
 * to "latest"; a ':' in path or an invalid tag is an OCITREE_ERROR_USAGE
 * error. *path and *tag are newly allocated. */
int ocitree_image_ref_parse(const char *ref, char **path, char **tag, struct ocitree_error **err);

#ifdef __cplusplus
}
#endif
#endif
