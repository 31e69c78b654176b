/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The parts of `ocitree build` that decide what goes into a layout: the
 * base of an image (another layout's image copied in, a rootfs tarball,
 * scratch), the layers of applied images appended verbatim, the config a
 * recipe gives, the cache of built images, the imports staged for /stacker
 * and copied to their destinations, and the tags written at the end of a
 * build, all at once.  Running the steps (a writable mount, a container)
 * is the front end's; committing is ocitree_upper_commit()'s.
 *
 * Images made here are untagged until ocitree_build_set_tags(): their
 * blobs are written (the caller holds the layout's blobs, see
 * ocitree_layout_hold_blobs(), so gc keeps them) and their manifest
 * descriptors handed back.
 */
#ifndef OCITREE_BUILD_H
#define OCITREE_BUILD_H

#include <stdbool.h>
#include <stddef.h>

#include "ocitree/error.h"
#include "ocitree/layout.h"
#include "ocitree/model.h"
#include "ocitree/recipe.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Copy image tag of the layout at src (its manifest for the host platform,
 * config and layers, each verified; blobs l has already are not copied)
 * into l, and describe its manifest in *out (the caller clears it).  When
 * src is l's own directory nothing is copied. */
int ocitree_build_copy_image(struct ocitree_layout *l, const char *src, const char *tag, struct ocitree_descriptor *out,
                             struct ocitree_error **err);

/* The sha256 of a file ("sha256:..."), the cache's name for a tarball. */
int ocitree_build_file_digest(const char *path, char out[OCITREE_DIGEST_MAX], struct ocitree_error **err);

/* A new image in l whose one layer is the rootfs tarball path (plain,
 * gzip or zstd, told by its first bytes), stored as it is (recompressed
 * with gzip). */
int ocitree_build_tar_image(struct ocitree_layout *l, const char *path, struct ocitree_descriptor *out,
                            struct ocitree_error **err);

/* What an image of a recipe starts from, before its steps run. */
struct ocitree_build_base {
	const struct ocitree_recipe_image *image;
	const struct ocitree_descriptor *base; /* NULL: scratch */
	/* the images of `apply`, in the recipe's order, and their names */
	const struct ocitree_descriptor *const *apply;
	const char *const *apply_names;
	size_t n_apply;
	const char *key; /* the cache key, kept in an annotation */
	/* a history entry to add as an empty layer (an image whose steps
	 * change nothing, so that no commit follows), or NULL */
	const struct ocitree_history *history;
	const char *cache_dir; /* layer indexes, for comparing applied layers */
};

/* Write the image an image of a recipe is built on, untagged: the base
 * (or an empty image), then the layers of each applied image that neither
 * the base nor an earlier applied image has, verbatim (same digests and
 * diff_ids, with their history entries), then the recipe's config
 * (environment, labels, working_dir, volumes, cmd, entrypoint,
 * full_command, user), its annotations and the cache key on the
 * manifest, and the time (SOURCE_DATE_EPOCH or now) as created.  Two
 * applied layers that have the same path as different things (type,
 * mode, owner, link target, device, or bytes) are an OCITREE_ERROR_INVALID
 * error naming the path and both images.  *out describes the manifest. */
int ocitree_build_write_base(struct ocitree_layout *l, const struct ocitree_build_base *b,
                             struct ocitree_descriptor *out, struct ocitree_error **err);

/* The created_by of the history entry of an image's new layer: its run
 * steps, one after the other; without steps, a line naming its imports. */
char *ocitree_build_created_by(const struct ocitree_recipe_image *img);

/* ---- the cache ----
 * A built image is found again by its key: CACHE_DIR/build-v1/<key hex>
 * holds its manifest descriptor; the entry counts only while l has that
 * manifest and the manifest's key annotation is the key.  Without an
 * entry, the image tagged name in l counts when its annotation is the
 * key (a cache directory removed, another machine's layout). */
int ocitree_build_cache_lookup(struct ocitree_layout *l, const char *cache_dir, const char *name, const char *key,
                               struct ocitree_descriptor *out, struct ocitree_error **err);
int ocitree_build_cache_store(const char *cache_dir, const char *key, const struct ocitree_descriptor *d,
                              struct ocitree_error **err);

/* ---- imports ---- */

/* Put what img imports into dir (an empty directory; the caller shows it
 * at /stacker while the steps run): `imports` under dir/imports, the
 * older `import` in dir itself, each by its last path component (a
 * source ending in '/' contributes its contents).  Local files and trees
 * are copied (modes and link targets kept); stacker://IMAGE/PATH is read
 * from sources[i] (the manifest of IMAGE in l, for import i; NULL for
 * local ones) without extracting the image. */
int ocitree_build_stage_imports(struct ocitree_layout *l, const struct ocitree_recipe_image *img,
                                const struct ocitree_descriptor *const *sources, const char *cache_dir, const char *dir,
                                struct ocitree_error **err);

/* Copy the imports of img that have a `dest` from the staging directory
 * (see above) into rootfs (the mounted image): to dest itself, or into it
 * when dest ends in '/' or is a directory there.  Missing parents are made
 * (mode 0755). */
int ocitree_build_copy_dest_imports(const struct ocitree_recipe_image *img, const char *dir, const char *rootfs,
                                    struct ocitree_error **err);

/* ---- tags ---- */

/* In one update of index.json: point tags[i] at descs[i] (n of them) and
 * drop every tag in drop (n_drop).  Nothing changes on failure. */
int ocitree_build_set_tags(struct ocitree_layout *l, const char *const *tags,
                           const struct ocitree_descriptor *const *descs, size_t n, const char *const *drop,
                           size_t n_drop, struct ocitree_error **err);

#ifdef __cplusplus
}
#endif
#endif
