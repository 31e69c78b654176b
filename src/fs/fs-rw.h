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
 *   nodes   mutex over the maps, nlookup, refs, rfd and wfd (and o.ufd
 *           is also set under it, see overlay_hooks.set_upper).
 *
 * Files have no handles.  Where the kernel supports it, it opens files
 * without asking (FUSE_CAP_NO_OPEN_SUPPORT): a read, write, setattr or fsync
 * names the inode only.  So what an open did moves to the first request that
 * needs it: a write copies up (node_write_fd), O_TRUNC arrives as a setattr
 * of size 0, and the fds of a node's upper file (rfd, wfd) are opened when
 * first used and kept until the kernel forgets the node, the way its O_PATH
 * fd is.  Kernels that send OPEN get the same, after a copy-up there for
 * opens that may write.  Directories likewise: readdir keeps the listings
 * on the node (struct dir_state).
 */
#ifndef OCITREE_FS_RW_H
#define OCITREE_FS_RW_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fs-push.h"
#include "fs-session.h"
#include "ocitree/overlay.h"

/* A directory's listings, for readdir without handles: the one made at
 * the latest readdir from offset 0 and the one before, each with the
 * generation its offsets carry, so that a reader that started before the
 * directory changed goes on in the listing it started with.  A listing is
 * dropped when a reader reaches its end. */
struct dir_listing {
	uint32_t gen; /* 0: none */
	struct ocitree_overlay_dent *ents;
	size_t n;
};
struct dir_state {
	pthread_mutex_t lock; /* the listings; taken before ns */
	struct dir_listing l[2];
	unsigned newest; /* the index in l of the latest */
	uint32_t next_gen;
};
void dir_state_free(struct dir_state *d);

struct node {
	struct ocitree_overlay_obj o; /* what it is: the engine's (ns) */
	struct dir_state *dir;        /* a directory's listings, made at its first readdir (nodes) */
	/* (nodes) */
	uint64_t nlookup;
	uint32_t refs;
	/* fds of the upper file (not a metacopy), opened when first needed, or
	 * -1; they stay valid while freeze or ns is held (only a commit --clear
	 * under both, and the node's end, close them) */
	int rfd; /* read-only */
	int wfd; /* write-only, without O_APPEND: the kernel gives each write its offset */
	/* never to be pushed (fs-rw-nodes.c): pushed once already, read
	 * through a READ, or its data has started to change (nodes) */
	bool push_off;
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
	bool no_open;    /* the kernel opens files without asking (set at init) */
	bool no_opendir; /* and directories */
	uid_t uid; /* the daemon's */
	gid_t gid;
	char *layout;
	char *mountpoint; /* absolute, or NULL */
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

	/* the pusher (fs-push.c), started with the session, over push_tree
	 * (the tree the mount started with: after a live commit --clear it
	 * pushes nothing); (nodes): the node a push is under way for, whether
	 * its store is called off (a READ or a change came), and whether its
	 * data started changing meanwhile; push_done is signalled when a push
	 * ends */
	struct fs_push *push;
	const struct ocitree_tree *push_tree;
	struct node *pushing;
	bool push_cancel, push_changed;
	pthread_cond_t push_done;
	uint64_t push_raced, push_waited; /* changes that met their node's push under way, for the log */

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
/* The fd to read node n's upper file through (ns held: a complete upper
 * file), or -1 with errno. */
int node_read_fd(struct rwfs *fs, struct node *n);
/* The fd to write node n's data through (freeze held shared, not ns): the
 * first one copies the file up (ns taken exclusively for that); 0 or an
 * errno. */
int node_write_fd(struct rwfs *fs, struct node *n, int *fd);
/* Keep fd (the caller's, a write-only fd of n's upper file) as n's wfd
 * unless n has one already. */
void node_keep_write_fd(struct rwfs *fs, struct node *n, int fd);
/* What the pusher asks of the writable mount (fs-push.h). */
extern const struct fs_push_driver rw_push_driver;
/* Node n's data is about to stop being the image's, or may (a write, a
 * truncate, an open for writing): it is never pushed from now on, and a
 * push of it under way is called off.  wait: and wait until that push is
 * over, which the caller may only do holding no lock and no page of n (see
 * fs-rw-nodes.c). */
void node_data_changing(struct rwfs *fs, struct node *n, bool wait);
/* The kernel asked for data of n, an image file: n is not pushed from now
 * on, and a push of it that has not stored yet is called off (nodes not
 * held). */
void node_push_off(struct rwfs *fs, struct node *n);

/* Close the fds of n's upper file (nodes locked): it is not n's any more. */
void node_close_fds_locked(struct node *n);
/* At unmount: every node. */
void free_nodes(struct rwfs *fs);

/* the control server (fs-rw-control.c), started and stopped with the
 * session */
int rw_control_start(struct rwfs *fs, struct fuse_session *se);
void rw_control_stop(struct rwfs *fs);

#endif
