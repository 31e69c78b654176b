/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pushing files into the page cache ahead of a reader that walks a
 * read-only mount in listing order (see fs-push.c).
 */
#ifndef OCITREE_FS_PUSH_H
#define OCITREE_FS_PUSH_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>
#include <stdint.h>

#include "ocitree/tree.h"

struct fs_push;

/* A pusher over tree (borrowed: it must outlive the pusher).  Nothing runs
 * before fs_push_start. */
struct fs_push *fs_push_new(const struct ocitree_tree *tree);

/* Start the pushing thread, in the process that serves se.  Returns -1
 * (with nothing started) when the thread cannot be created. */
int fs_push_start(struct fs_push *p, struct fuse_session *se);

/* The kernel asked for data of inode ino: the reader's position, cheap
 * (one mutex), from any worker. */
void fs_push_saw_read(struct fs_push *p, uint32_t ino);

/* Stop and join the thread (before the session goes away), and free p.
 * Accepts NULL. */
void fs_push_free(struct fs_push *p);

#endif
