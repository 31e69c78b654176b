/* SPDX-License-Identifier: Apache-2.0 */
/* Internals of unpack, repack and the bundle metadata. */
#ifndef OCITREE_BUNDLE_INTERNAL_H
#define OCITREE_BUNDLE_INTERNAL_H

#include "ocitree/bundle.h"
#include "ocitree/layer.h"
#include "rootfs-tree.h"

#define ROOTLESS_XATTR "user.rootlesscontainers"
#define STATE_FILE "ocitree.state"
#define UMOCI_META_FILE "umoci.json"

/* ---- id mapping (idmap.c) ---- */

/* Container id to host id (identity without mappings); -1 when unmapped. */
int64_t idmap_to_host(const struct ocitree_idmap *m, size_t n, int64_t id);
/* Host id -> container id (identity without mappings); -1 when unmapped. */
int64_t idmap_to_container(const struct ocitree_idmap *m, size_t n, int64_t id);
/* Mappings as runtime-spec's linux.uidMappings (and umoci.json) write them. */
struct cJSON *idmap_json(const struct ocitree_idmap *m, size_t n);
/* The user.rootlesscontainers payload (protobuf: uid = 1, gid = 2, uint32,
 * where uint32(-1) means "unchanged") for an owner other than root;
 * returns its length (at most 12 bytes into out), 0 for root:root. */
size_t rootless_encode(uint32_t uid, uint32_t gid, uint8_t out[12]);
/* Decode a payload; fields that are absent or uint32(-1) leave *uid and *gid
 * alone.  Returns -1 for a malformed payload. */
int rootless_decode(const void *data, size_t len, uint32_t *uid, uint32_t *gid);

/* ---- unpacking into a tree (unpack.c) ---- */

/* Lexically clean a relative path into *out (allocated; "" for the root):
 * no '.', empty or trailing components, '..' resolved.  Returns NULL, or
 * the reason to refuse the path (absolute, or '..' above the root), and then
 * *out is not set. */
const char *path_clean(const char *in, char **out);

struct unpacker;

/* rootfd: the rootfs directory (O_RDONLY), borrowed. */
struct unpacker *unpacker_new(int rootfd, const struct ocitree_unpack_options *o, struct ocitree_error **err);
/* Apply the layer desc (index idx of n) of l, verifying it against diff_id. */
int unpacker_apply(struct unpacker *u, struct ocitree_layout *l, const struct ocitree_descriptor *desc,
		   const char *diff_id, size_t idx, size_t n, struct ocitree_error **err);
/* Final directory modes (rootless) and the last stat of each node. */
int unpacker_finish(struct unpacker *u, struct ocitree_error **err);
/* The tree as unpacked (owned by the unpacker; steal it with _take). */
struct tree *unpacker_take_tree(struct unpacker *u);
void unpacker_free(struct unpacker *u);

/* Remove name in dirfd and everything below it (as root or as the owner of
 * read-only directories). */
int rm_rf_at(int dirfd, const char *name, struct ocitree_error **err);

/* ---- bundle metadata (state.c) ---- */

/* The state record: see state.c for the format.  state_render() appends
 * it to b. */
void state_render(struct buf *b, const struct tree *t, const char *manifest_digest);
int state_write_at(int dirfd, const char *name, const struct tree *t, const char *manifest_digest,
		   struct ocitree_error **err);
/* Read a state record; *manifest_digest receives the digest it was made for. */
struct tree *state_read_at(int dirfd, const char *name, char manifest_digest[OCITREE_DIGEST_MAX],
			   struct ocitree_error **err);

/* The tree as a go-mtree spec with umoci's keywords (appended to b by
 * mtree_render()). */
void mtree_render(struct buf *b, const struct tree *t, const char *root_label);
int mtree_write_at(int dirfd, const char *name, const struct tree *t, const char *root_label,
		   struct ocitree_error **err);
/* Read a go-mtree spec into a tree (the stat fields it has; no ctime or
 * inode numbers). */
struct tree *mtree_read_at(int dirfd, const char *name, struct ocitree_error **err);
/* "sha256_<hex>.mtree" for a manifest digest. */
char *mtree_name(const char *manifest_digest);

struct umoci_meta {
	struct ocitree_descriptor *walk; /* from the index entry down to the manifest */
	size_t n_walk;
	struct ocitree_map_options map; /* arrays owned by the meta */
};
/* umoci.json's text (caller frees). */
char *umoci_meta_render(const struct umoci_meta *m);
int umoci_meta_write_at(int dirfd, const struct umoci_meta *m, struct ocitree_error **err);
int umoci_meta_read_at(int dirfd, struct umoci_meta *m, struct ocitree_error **err);
void umoci_meta_clear(struct umoci_meta *m);

/* ---- bundle metadata (bundle.c) ---- */

/* Write the mtree, ocitree.state and umoci.json of a bundle describing t as
 * the tree of img; durable (fsynced) when sync is set. */
int bundle_write_meta(int bfd, const char *bundle, struct ocitree_image *img, const struct tree *t,
		      const struct ocitree_map_options *map, bool sync, struct ocitree_error **err);

#endif
