/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The merged tree of an image: layer indexes merged with OCI semantics
 * (whiteouts ".wh.NAME", opaque directories ".wh..wh..opq", a file replacing
 * a directory and back, hardlinks sharing one inode), in a compact,
 * immutable form: an inode array, sorted child arrays and a name arena,
 * about 30-40 bytes per entry on top of the layer indexes it points into.
 *
 * Inode numbers run from 1 (the root, OCITREE_TREE_ROOT) to
 * ocitree_tree_inodes(), assigned breadth-first in name order, so the same
 * image always gets the same numbers.  st_nlink is the number of names of an
 * inode in the merged view (2 + subdirectories for a directory).
 *
 * The tree borrows the layer indexes: they must outlive it.  A built tree is
 * read-only and may be used from any number of threads.
 */
#ifndef OCITREE_TREE_H
#define OCITREE_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <sys/stat.h>

#include "ocitree/error.h"
#include "ocitree/layer-index.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OCITREE_TREE_ROOT 1u

enum ocitree_tree_flags {
	/* Show the layers as stored: whiteout entries are plain files (for
	 * inspecting a single layer). */
	OCITREE_TREE_RAW = 1 << 0,
	/* One layer as an overlayfs lower directory (the form a containers/
	 * storage additional layer store serves): entries as stored, each
	 * ".wh.NAME" turned into a whiteout inode NAME (stat: a 0/0 character
	 * device; it cannot be read), each ".wh..wh..opq" into an opaque mark
	 * on its directory (also a directory of the layer that a whiteout of
	 * the same name hides lower contents of).  Exactly one layer. */
	OCITREE_TREE_OVERLAY = 1 << 1,
	/* With OCITREE_TREE_OVERLAY: opaque directories carry
	 * user.overlay.opaque (overlayfs mounted with userxattr, as rootless
	 * engines do) instead of trusted.overlay.opaque. */
	OCITREE_TREE_OVERLAY_USER = 1 << 2,
};

struct ocitree_tree;

/* Merge layers[0..n) (lowest first).  At most 255 layers of at most 2^24
 * entries each (OCITREE_ERROR_UNSUPPORTED beyond).  Entries that cannot be
 * placed (a hardlink to a missing file) are skipped with a warning. */
struct ocitree_tree *ocitree_tree_build(struct ocitree_layer_index *const *layers, size_t n, unsigned flags,
					struct ocitree_error **err);

/* As ocitree_tree_build, through the cache of merged trees in cache_dir
 * (CACHE/tree-v1, see ocitree-cache(5)): the tree merged before from the
 * same layer indexes with the same flags is mapped from its file, after its
 * checksum and every entry number, child range and name in it are checked;
 * a missing, damaged or outdated file (or rebuild) means a merge, whose
 * result is written for the next time.  Warnings of the merge are given
 * only when it runs.  Overlay trees and a NULL cache_dir are merged without
 * the cache; a cache that cannot be written is noted at log level info. */
struct ocitree_tree *ocitree_tree_open_cached(struct ocitree_layer_index *const *layers, size_t n, unsigned flags,
                                              const char *cache_dir, bool rebuild, struct ocitree_error **err);
void ocitree_tree_free(struct ocitree_tree *t);

/* The number of inodes; valid inode numbers are 1..ocitree_tree_inodes(). */
uint32_t ocitree_tree_inodes(const struct ocitree_tree *t);
/* Bytes of memory the tree itself uses (not the layer indexes). */
size_t ocitree_tree_memory(const struct ocitree_tree *t);

/* The child name of directory dir, or 0. */
uint32_t ocitree_tree_lookup(const struct ocitree_tree *t, uint32_t dir, const char *name);
/* A relative path ("a/b/c", "" for the root) without following symlinks, or 0. */
uint32_t ocitree_tree_lookup_path(const struct ocitree_tree *t, const char *path);

/* Fill st (st_dev, st_blksize aside) for ino; -1 for an invalid ino. */
int ocitree_tree_stat(const struct ocitree_tree *t, uint32_t ino, struct stat *st);

/* Children of a directory, in name order: count, and the i-th name and inode. */
uint32_t ocitree_tree_dir_size(const struct ocitree_tree *t, uint32_t dir);
const char *ocitree_tree_dir_entry(const struct ocitree_tree *t, uint32_t dir, uint32_t i, uint32_t *child);

/* The tar entry an inode shows and the layer it is in; NULL for a directory
 * that no layer lists (made for its children), or an invalid ino. */
const struct ocitree_layer_entry *ocitree_tree_entry(const struct ocitree_tree *t, uint32_t ino,
						     struct ocitree_layer_index **layer);

/* Where the bytes of a read of a regular file come from, for replies
 * without a copy: either size bytes at pos in fd (fd >= 0: the layer's
 * plain data file, owned by its index: splice it), or the iovecs (decoded
 * data pinned in the chunk cache, or a buffer of the caller's).  Release
 * with ocitree_tree_data_release(), which must come before the tree's
 * layer indexes are freed. */
struct ocitree_tree_data {
	size_t size; /* bytes read: short only at the end of the file */
	int fd;
	uint64_t pos;
	struct iovec iov[OCITREE_LAYER_PIN_MAX];
	size_t n_iov;
	/* private */
	struct ocitree_layer_pin pin;
	void *buf;
};

/* Read up to size bytes of regular file ino at off into d, in the cheapest
 * form the layer allows: 0 (d->size is 0 at or past the end of the file),
 * or -1 with nothing held: an OCITREE_ERROR_USAGE error with errnum EISDIR
 * or EINVAL when ino is a directory or not a regular file, else the layer's
 * (OCITREE_ERROR_INVALID for a corrupt stream).  This is the one place
 * that chooses where the bytes of an image file come from, for every
 * driver. */
int ocitree_tree_read(const struct ocitree_tree *t, uint32_t ino, uint64_t off, size_t size,
		      struct ocitree_tree_data *d, struct ocitree_error **err);
void ocitree_tree_data_release(struct ocitree_tree_data *d);

/* Whether directory ino of an overlay tree is opaque (false for other trees). */
bool ocitree_tree_is_opaque(const struct ocitree_tree *t, uint32_t ino);

/* The xattrs an inode shows: cursor starts at 0; each call sets name
 * (NUL-terminated), value and len (valid while the tree lives) and returns
 * true, false at the end.  Those of its tar entry; in an overlay tree
 * without the entry's trusted.overlay.* and user.overlay.* ones (overlayfs
 * would obey them) and with the opaque mark where there is one. */
bool ocitree_tree_xattr_next(const struct ocitree_tree *t, uint32_t ino, uint32_t *cursor, const char **name,
			     const void **value, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
