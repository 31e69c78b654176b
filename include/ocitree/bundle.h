/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The umoci workflow: unpack an image into a runtime bundle (rootfs,
 * config.json and the metadata that repack needs), repack the changes as a
 * new layer, insert files as a layer, generate runtime configs.
 *
 * A bundle holds:
 *   rootfs/                     the tree
 *   config.json                 an OCI runtime-spec config for runc
 *   umoci.json                  the source manifest and mapping options, as
 *                               umoci writes it
 *   sha256_<manifest hex>.mtree the tree in go-mtree form, as umoci writes it
 *   ocitree.state               ocitree's record of the tree (stat fields per
 *                               path, see man/ocitree-unpack.1), which lets
 *                               repack find changes without hashing files
 * so that umoci repack works on a bundle ocitree unpacked and the other way
 * round.
 *
 * Paths in layers are hostile: every entry is created relative to the rootfs
 * directory; absolute names, '..' that leaves the root, symlinks that lead
 * out of it and hardlinks to outside are errors naming the entry.
 */
#ifndef OCITREE_BUNDLE_H
#define OCITREE_BUNDLE_H

#include <stdbool.h>
#include <stdint.h>

#include "ocitree/error.h"
#include "ocitree/image.h"
#include "ocitree/layout.h"
#include "ocitree/model.h"
#include "ocitree/progress.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One range of an id mapping, as in runtime-spec linux.uidMappings. */
struct ocitree_idmap {
	uint32_t container_id;
	uint32_t host_id;
	uint32_t size;
};

/* Parse "CONTAINER:HOST:SIZE" (umoci's --uid-map form); a malformed value
 * is an OCITREE_ERROR_USAGE error. */
int ocitree_idmap_parse(const char *spec, struct ocitree_idmap *out, struct ocitree_error **err);

/* How owners on disk relate to owners in the image.  The arrays are the
 * caller's. */
struct ocitree_map_options {
	/* an unprivileged user unpacks: no chown or mknod; owners other than
	 * root are kept in the "user.rootlesscontainers" xattr (as umoci does)
	 * and device nodes become empty files */
	bool rootless;
	const struct ocitree_idmap *uid_map;
	size_t n_uid_map;
	const struct ocitree_idmap *gid_map;
	size_t n_gid_map;
};

struct ocitree_unpack_options {
	struct ocitree_map_options map;
	/* keep a symlink to a directory where a layer has a directory, and
	 * unpack through it (umoci's --keep-dirlinks) */
	bool keep_dirlinks;
	ocitree_progress_fn progress; /* may be NULL */
	void *progress_data;
};

/* Unpack img's layers into rootfs, which must not exist or be an empty
 * directory.  Nothing but the tree is written (raw unpack).  On failure the
 * partial tree is removed. */
int ocitree_unpack_rootfs(struct ocitree_image *img, const char *rootfs, const struct ocitree_unpack_options *o,
			  struct ocitree_error **err);

/* Unpack img into the bundle directory (created when missing; it must not
 * hold a config.json or rootfs already): rootfs, config.json, umoci.json,
 * the mtree and ocitree.state.  On failure nothing of it is left. */
int ocitree_unpack_bundle(struct ocitree_image *img, const char *bundle, const struct ocitree_unpack_options *o,
			  struct ocitree_error **err);

/* The runtime-spec config.json for image config c, as umoci generates it
 * (process args/env/cwd/user, annotations, default mounts, namespaces and
 * capabilities; rootless and mapped variants).  The user is looked up in
 * rootfs's /etc/passwd and /etc/group when rootfs is not NULL; when it is
 * NULL, a user or group given by name cannot be looked up and the process
 * runs as 0:0 with a warning logged (umoci does the same).  Returns the
 * file's text, tab-indented and ending in a newline byte for byte as
 * umoci writes it, which the caller frees; or NULL. */
char *ocitree_runtime_config(const struct ocitree_config *c, const char *rootfs, const struct ocitree_map_options *m,
			     struct ocitree_error **err);

struct ocitree_write_options {
	enum ocitree_compression compression;
	/* the history entry to add, or NULL for none; author NULL means the
	 * config's author */
	const struct ocitree_history *history;
	ocitree_progress_fn progress;
	void *progress_data;
};

struct ocitree_repack_options {
	struct ocitree_write_options write;
	const char *const *mask_paths; /* changes below these are ignored */
	size_t n_mask_paths;
	bool no_mask_volumes; /* do not mask the image's volumes */
	bool refresh_bundle;  /* make the bundle describe the new image */
};

/* Find what changed in bundle's rootfs since it was unpacked (from
 * ocitree.state, or from umoci's mtree for a bundle umoci unpacked), write
 * it as a new layer on top of the bundle's image, and tag the result tag in
 * l.  The new manifest's digest goes to manifest_digest when not NULL. */
int ocitree_repack_bundle(struct ocitree_layout *l, const char *tag, const char *bundle,
			  const struct ocitree_repack_options *o, char manifest_digest[OCITREE_DIGEST_MAX],
			  struct ocitree_error **err);

struct ocitree_insert_options {
	struct ocitree_write_options write;
	struct ocitree_map_options map;
	bool whiteout; /* add a whiteout for target instead of content */
	bool opaque;   /* hide what lower layers have below target */
};

/* Add a layer to img that puts source (a file or a directory tree of the
 * host; NULL with o->whiteout) at target (an absolute or relative path in
 * the image), and tag the result tag. */
int ocitree_insert(struct ocitree_image *img, const char *source, const char *target, const char *tag,
		   const struct ocitree_insert_options *o, struct ocitree_error **err);

/* Add the uncompressed tar archive in fd (read to its end) to img as a new
 * layer, compressed as o asks, and tag the result tag. */
int ocitree_add_layer(struct ocitree_image *img, int fd, const char *tag, const struct ocitree_write_options *o,
		      struct ocitree_error **err);

#ifdef __cplusplus
}
#endif
#endif
