/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pushing files into the page cache ahead of a reader that walks a mount
 * in listing order (see fs-push.c), for the read-only driver (fs.c) and the
 * writable one (fs-rw.c, whose files can change under a push: it says
 * through struct fs_push_driver which files may be pushed, and when).
 */
#ifndef OCITREE_FS_PUSH_H
#define OCITREE_FS_PUSH_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>

#include "ocitree/tree.h"

struct fs_push;

/* What a driver whose files can stop being the tree's (the writable mount)
 * tells the pusher; each is called on the pushing thread, one push at a
 * time, without the pusher's lock.  A driver without it (the read-only
 * mount) pushes tree inode ino to node id ino, whenever. */
struct fs_push_driver {
	/* Claim tree inode ino for one push: *nodeid its FUSE node id, *token
	 * what the other calls get.  False when it is not pushed (the kernel
	 * has no inode for it, its data is not the tree's, it was pushed or
	 * read before, or is being changed); then nothing else is called. */
	bool (*claim)(void *data, uint32_t ino, uint64_t *nodeid, void **token);
	/* Just before the store, with the data decoded: false when the file
	 * started changing since claim (nothing is stored). */
	bool (*storing)(void *data, void *token);
	/* The push is over (stored or not): true when the file started
	 * changing while the store was in flight, and the pusher must drop
	 * the pages it stored (fuse_lowlevel_notify_inval_inode). */
	bool (*end)(void *data, void *token);
	/* Release the claim, after end and that invalidation. */
	void (*put)(void *data, void *token);
};

/* A pusher over tree (borrowed: it must outlive the pusher); drv (static,
 * or NULL) and its data likewise.  Nothing runs before fs_push_start. */
struct fs_push *fs_push_new(const struct ocitree_tree *tree, const struct fs_push_driver *drv, void *data);

/* Start the pushing thread, in the process that serves se.  Returns -1
 * (with nothing started) when the thread cannot be created. */
int fs_push_start(struct fs_push *p, struct fuse_session *se);

/* The kernel asked for data of tree inode ino (a file of the tree the
 * pusher was made over, else nothing is said): the reader's position,
 * cheap (one mutex), from any worker. */
void fs_push_saw_read(struct fs_push *p, uint32_t ino);

/* Answer req, a READ of tree inode ino at off (size bytes at most), with
 * the last page of a sentinel the pusher kept back for it (read-only
 * mount): true when it did (the page is given once), false when the read
 * is the driver's to answer. */
bool fs_push_reply_held(struct fs_push *p, fuse_req_t req, uint32_t ino, uint64_t off, size_t size);

/* Stop and join the thread (before the session goes away), and free p.
 * Accepts NULL. */
void fs_push_free(struct fs_push *p);

#endif
