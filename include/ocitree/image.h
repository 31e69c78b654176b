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
	/* When the tag names an image index directly (what `skopeo copy --all`
	 * writes): that index and the position of manifest_desc in it.  A
	 * commit then writes a copy of this index with only that entry
	 * replaced.  NULL when the tag names a manifest; for indexes nested in
	 * indexes the innermost one, with index_is_root false. */
	struct ocitree_index *index;
	size_t index_pos;
	bool index_is_root;
};

/* A platform selector "OS/ARCH[/VARIANT]" (as `--platform`): each part
 * non-empty, of [a-z0-9._-] only ("linux/arm64/v8", "linux/amd64").  Fills
 * p (os, architecture, variant; the rest NULL), which the caller releases
 * with ocitree_platform_clear().  A bad selector is OCITREE_ERROR_USAGE. */
int ocitree_platform_parse(const char *s, struct ocitree_platform *p, struct ocitree_error **err);
void ocitree_platform_clear(struct ocitree_platform *p);

/* "os/arch[/variant]" of p, newly allocated ("?" for a missing os or
 * architecture). */
char *ocitree_platform_format(const struct ocitree_platform *p);

/* Whether an index entry's platform p is what want selects: same os and
 * architecture; a variant in want must be p's too (arm64 without a
 * variant counts as arm64/v8, as containerd has it); no variant in want
 * takes any. */
bool ocitree_platform_match(const struct ocitree_platform *p, const struct ocitree_platform *want);

/* Resolve tag to a manifest: index.json's entry for it, then through nested
 * image indexes (Docker manifest lists too) to the manifest for the host
 * platform.  Reads and verifies the manifest and the config.  A missing tag
 * is OCITREE_ERROR_NOT_FOUND ("tag 'x' not found in layout 'L'"). */
struct ocitree_image *ocitree_image_open(struct ocitree_layout *l, const char *tag, struct ocitree_error **err);

/* The same for the platform want selects (NULL: the host's).  When an
 * index has no entry for it, the error (OCITREE_ERROR_NOT_FOUND) lists
 * what the index has: "no manifest for linux/s390x in tag 't'; it has
 * linux/amd64, linux/arm64/v8".  A tag that names a manifest is opened
 * whatever want says. */
struct ocitree_image *ocitree_image_open_platform(struct ocitree_layout *l, const char *tag,
						  const struct ocitree_platform *want, struct ocitree_error **err);

/* The same, for looking at what a tag names without using it as an image:
 * a manifest whose config is not an image config (an OCI 1.1 artifact,
 * its config empty or of another media type) opens with config NULL.  For
 * `stat`; commands that unpack, mount or change an image use the calls
 * above, which refuse such a manifest. */
struct ocitree_image *ocitree_image_inspect(struct ocitree_layout *l, const char *tag,
					    const struct ocitree_platform *want, struct ocitree_error **err);

/* Resolve tag to its manifest descriptor only (same rules). */
int ocitree_image_resolve(struct ocitree_layout *l, const char *tag, struct ocitree_descriptor *manifest_desc,
			  struct ocitree_descriptor *root, struct ocitree_error **err);
int ocitree_image_resolve_platform(struct ocitree_layout *l, const char *tag, const struct ocitree_platform *want,
				   struct ocitree_descriptor *manifest_desc, struct ocitree_descriptor *root,
				   struct ocitree_error **err);

/* A new image with no layers, a config for the host platform and no tag. */
struct ocitree_image *ocitree_image_new(struct ocitree_layout *l);

void ocitree_image_free(struct ocitree_image *img);

/* Write img's config and manifest as new blobs (OCI media types; Docker
 * ones are converted) and point tag at the manifest.  When img came from
 * an image index (img->index, the tag's own entry), a copy of the index
 * with only img's entry replaced (its platform and annotations kept, the
 * other entries and the index's annotations untouched) is written as a
 * blob too, and tag points at that index (an OCI index; a Docker list
 * becomes one).  On success img->manifest_desc describes the new manifest
 * (img->root and img->index the new index).  Blobs are written first and
 * index.json last: nothing in index.json changes on failure. */
int ocitree_image_commit(struct ocitree_image *img, const char *tag, struct ocitree_error **err);

/* Parse "path[:tag]" the way umoci does: split at the last ':', tag defaults
 * to "latest"; a ':' in path or an invalid tag is an OCITREE_ERROR_USAGE
 * error. *path and *tag are newly allocated. */
int ocitree_image_ref_parse(const char *ref, char **path, char **tag, struct ocitree_error **err);

#ifdef __cplusplus
}
#endif
#endif
