/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the files of the writable mount share: the node and session
 * structures (see fs-rw.c for the model and the locking rules) and the
 * helpers the control server (fs-rw-control.c) uses.
 */
#ifndef OCITREE_FS_RW_H
#define OCITREE_FS_RW_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fs-internal.h"
#include "upper-internal.h"

struct node {
	/* fixed at creation */
	uint64_t ino;  /* st_ino */
	mode_t type;   /* S_IFMT bits */
	/* (ns) */
	struct ocitree_tree *tree; /* the tree lower refers to */
	uint32_t lower;            /* non-dirs without upper: the file; metacopy: its data; dirs: the lower
				      directory merged here (0: none or opaque) */
	int ufd;                   /* O_PATH fd of the upper object, -1 when there is none */
	uint64_t uino;             /* its inode number in the upper directory */
	bool metacopy;             /* the upper object has metadata only */
	bool unlinked;             /* no upper object, and its (only) name was removed */
	bool vstat;                /* virtual owners: v_* hold the owner, mode and rdev */
	uid_t v_uid;
	gid_t v_gid;
	mode_t v_mode;
	dev_t v_rdev;
	/* computed lazily under a shared ns lock; cleared under an exclusive one */
	_Atomic uint32_t dir_nlink; /* st_nlink of a merged directory, 0 when unknown */
	/* (nodes) */
	uint64_t nlookup;
	uint32_t refs;
	uint32_t writers; /* open handles that may write */
	int rfd; /* read fd of the upper file for handles opened on the lower one, -1 */
	bool in_lower, in_upper;
	uint32_t lkey; /* the key in by_lower: a lower inode of the current tree */
	uint64_t ukey; /* the key in by_upper: an upper inode number */
	struct node *lnext, *unext;
};

/* A hash of nodes by a 64-bit key, chained through the nodes. */
struct nodemap {
	struct node **b;
	size_t nb, n;
};

struct old_tree {
	struct ocitree_tree *tree;
	struct ocitree_layer_index **layers;
	size_t n_layers;
	struct old_tree *next;
};

struct rwfs {
	/* immutable while serving */
	struct ocitree_upper *upper;
	struct ocitree_upper_format fmt;
	double timeout;
	bool virtual_owners;
	uid_t uid; /* the daemon's */
	gid_t gid;
	char *layout;
	struct ocitree_layer_index_opts index_opts;
	struct fuse_session *se;

	pthread_rwlock_t freeze;
	pthread_rwlock_t ns;
	pthread_mutex_t nodes;

	/* (ns) */
	struct ocitree_tree *tree; /* the current lower tree */
	struct ocitree_layer_index **layers; /* its layers (the first n_base are the caller's) */
	size_t n_layers, n_base;
	uint32_t gen;              /* generation of st_ino of lower inodes */
	uint32_t *tparent, *tpos;  /* per tree inode: a parent directory and its position there */
	struct old_tree *old;      /* trees replaced by a live commit --clear, kept for detached nodes */

	/* (nodes) */
	struct nodemap by_lower, by_upper;
	struct node *root;

	/* the control socket */
	int ctl_fd;
	int ctl_wake[2];
	pthread_t ctl_thread;
	bool ctl_running;
	/* lock: warned; the first unsettable xattr of each kind is logged */
	pthread_mutex_t warn_lock;
	bool warned_xattr;
};

struct node *map_find(const struct nodemap *m, uint64_t key, bool upper);
void map_insert(struct nodemap *m, struct node *n, bool upper);
mode_t ltype(struct ocitree_tree *t, uint32_t k);
void tindex_free(struct rwfs *fs);
char *rw_tree_path(struct rwfs *fs, uint32_t k);
void node_put(struct rwfs *fs, struct node *n);

/* the control server (fs-rw-control.c) */
extern const struct fs_hooks rw_hooks;

#endif
