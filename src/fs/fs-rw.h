/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the files of the writable mount share: the nodes the kernel holds
 * (each around an engine object, ocitree/overlay.h), the session, and the node
 * maps (fs-rw-nodes.c) that the handlers (fs-rw.c) and the control server
 * (fs-rw-control.c) use.
 *
 * Nodes.  A node is the in-memory inode the kernel holds (node id = its
 * address, the root is FUSE_ROOT_ID) around the engine object o; it lives
 * while the kernel has looked it up (nlookup) or something pins it (refs:
 * open handles, the running operation) and is found again by its lower
 * inode (by_lower, for the current tree) or its upper inode number
 * (by_upper), so that every name of a file gives the same node.
 *
 * Locking (order: freeze, ns, nodes):
 *   freeze  rwlock; every operation that changes the upper directory holds
 *           it shared, a live commit holds it exclusively while it reads
 *           the upper directory, so a commit sees every change that was
 *           answered before it started and none half-done;
 *   ns      rwlock over the namespace: the upper directory's structure,
 *           the engine's state and the fields of node objects marked (ns)
 *           in ocitree/overlay.h; lookups and reads share it, operations that
 *           change names or copy up take it exclusively; writes to an open
 *           upper file take only freeze;
 *   nodes   mutex over the maps, nlookup, refs, writers and rfd (and
 *           o.ufd is also set under it, see overlay_hooks.set_upper).
 */
#ifndef OCITREE_FS_RW_H
#define OCITREE_FS_RW_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fs-session.h"
#include "ocitree/overlay.h"

struct node {
	struct ocitree_overlay_obj o; /* what it is: the engine's (ns) */
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

static inline struct node *node_of_obj(struct ocitree_overlay_obj *o)
{
	return (struct node *)((char *)o - offsetof(struct node, o));
}

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
	struct ocitree_upper *upper; /* = ov.upper */
	double timeout;
	uid_t uid; /* the daemon's */
	gid_t gid;
	char *layout;
	struct ocitree_layer_index_opts index_opts;
	struct fuse_session *se;

	pthread_rwlock_t freeze;
	pthread_rwlock_t ns;
	pthread_mutex_t nodes;

	/* the engine: the current tree (ov.tree) and the upper directory (ns) */
	struct ocitree_overlay *ov;
	/* (ns) */
	struct ocitree_layer_index **layers; /* the tree's layers (the first n_base are the caller's) */
	size_t n_layers, n_base;
	struct old_tree *old; /* trees replaced by a live commit --clear, kept for detached nodes and
				 for reads that still use their layers */

	/* (nodes) */
	struct nodemap by_lower, by_upper;
	struct node *root;

	/* the control socket */
	int ctl_fd;
	int ctl_wake[2];
	pthread_t ctl_thread;
	bool ctl_running;
};

/* ---- the node maps (fs-rw-nodes.c) ---- */

struct node *map_find(const struct nodemap *m, uint64_t key, bool upper);
void map_insert(struct nodemap *m, struct node *n, bool upper);

/* What the engine asks of the maps. */
extern const struct ocitree_overlay_hooks rw_overlay_hooks;

struct node *node_of(struct rwfs *fs, fuse_ino_t ino);
fuse_ino_t nodeid(struct rwfs *fs, struct node *n);
struct node *node_new(mode_t type, uint64_t ino);
void node_destroy(struct node *n);
/* Drop counts (nodes locked); frees the node when nothing holds it. */
void node_unref_locked(struct rwfs *fs, struct node *n, uint64_t nlookup, uint32_t refs);
void node_put(struct rwfs *fs, struct node *n);
void node_pin(struct rwfs *fs, struct node *n);
/* Count a lookup the kernel will hold (a reply with this node's entry). */
void node_lookup_inc(struct rwfs *fs, struct node *n);
/* The node of the upper entry name in dir (ust: its lstat), pinned;
 * below: the lower entry of name in dir's lower directory, or 0. */
int node_get_upper(struct rwfs *fs, struct node *dir, const char *name, const struct stat *ust, uint32_t below,
		   struct node **out);
/* Look name up in dir (ns held): the node, pinned; fo (may be NULL) what
 * the engine found. */
int lookup_node(struct rwfs *fs, struct node *dir, const char *name, struct node **out,
                struct ocitree_overlay_found *fo);
/* The fd to read node n's upper file through when a handle has none. */
int node_read_fd(struct rwfs *fs, struct node *n);
/* At unmount: every node. */
void free_nodes(struct rwfs *fs);

/* the control server (fs-rw-control.c) */
extern const struct fs_hooks rw_hooks;

#endif
