/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An in-memory tree of a root filesystem: one node per path with what was
 * recorded about it (stat fields, link target, xattrs, content digest).
 * Unpack builds it while writing, the bundle state file stores it, repack
 * compares the disk against it, and the mtree is written from it.
 *
 * Children are kept in an unordered list per directory and in one hash table
 * keyed by (parent, name); tree_sorted_children() gives them in byte order.
 */
#ifndef OCITREE_ROOTFS_TREE_H
#define OCITREE_ROOTFS_TREE_H

#include <sys/stat.h>

#include "util.h"

struct xattr_list {
	size_t n;
	struct xattr_item {
		char *name;
		uint8_t *value;
		size_t len;
	} * v;
};

void xattr_list_add(struct xattr_list **l, const char *name, const void *value, size_t len);
void xattr_list_free(struct xattr_list *l);
/* Sort by name (the order records and mtrees are written in). */
void xattr_list_sort(struct xattr_list *l);
bool xattr_list_equal(const struct xattr_list *a, const struct xattr_list *b);
struct xattr_list *xattr_list_dup(const struct xattr_list *l);

struct tnode {
	struct tnode *parent;
	struct tnode *first_child, *next_sibling;
	struct tnode *hnext; /* hash chain */
	char *name;          /* one component; "" for the root */

	/* the record */
	uint32_t mode; /* st_mode: type and permissions */
	uint32_t uid, gid;
	uint64_t size, ino, nlink, rdev;
	struct timespec mtime, ctime;
	struct timespec btime; /* creation time, when the filesystem has one */
	bool has_btime;
	char *link;                /* symlink target */
	struct xattr_list *xattrs; /* NULL when none */
	uint8_t digest[32];        /* sha256 of a regular file's content */
	bool has_digest;
	uint8_t *digest_slot;      /* unpack: where the digest is being made, until the end of the layer */

	/* scratch for the users of the tree */
	uint32_t gen;       /* unpack: the layer that last created or kept it */
	bool pending;       /* unpack: directory times to set at the end of the layer */
	bool seen;          /* repack: found on disk */
	uint32_t want_mode; /* unpack (rootless): the directory mode to set at the end */
	struct timespec want_mtime, want_atime;
};

struct tree {
	struct tnode *root;
	struct tnode **buckets;
	size_t n_buckets, count;
};

struct tree *tree_new(void);
void tree_free(struct tree *t);

struct tnode *tree_child(const struct tree *t, const struct tnode *parent, const char *name);
/* Add a child named name (which must not exist) to parent. */
struct tnode *tree_add(struct tree *t, struct tnode *parent, const char *name);
/* Remove n and everything below it (n must not be the root). */
void tree_remove(struct tree *t, struct tnode *n);
/* Look a relative path ("a/b/c", "" for the root) up without following
 * symlinks; NULL when absent. */
struct tnode *tree_lookup(const struct tree *t, const char *path);

/* The path of n relative to the root ("" for the root), appended to b. */
void tree_path(const struct tnode *n, struct buf *b);
/* n's children sorted by name (bytes); *out is allocated (caller frees). */
size_t tree_sorted_children(const struct tnode *n, struct tnode ***out);

/* Fill a node's record from a stat (no creation time). */
void tnode_set_stat(struct tnode *n, const struct stat *st);
/* lstat name in dirfd (dirfd itself when name is "") into *st and n's
 * record, with the creation time where the filesystem keeps one: it tells a
 * directory that was removed and made again under a reused inode number
 * from the one that was there.  Returns -1 with errno. */
int tnode_stat_at(struct tnode *n, int dirfd, const char *name, struct stat *st);

#endif
