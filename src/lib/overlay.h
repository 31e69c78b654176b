/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writable-mount engine's own header: the state behind the opaque
 * struct ocitree_overlay and what the engine's files (overlay.c,
 * overlay-write.c, overlay-copyup.c) share.  The model, the locking and the
 * API a driver uses are in ocitree/overlay.h.
 */
#ifndef OCITREE_OVERLAY_INTERNAL_H
#define OCITREE_OVERLAY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "ocitree/overlay.h"
#include "ocitree/tree.h"
#include "ocitree/upper.h"
#include "upper-internal.h"
#include "util.h"

/* The state of ocitree/overlay.h's opaque struct. */
struct ocitree_overlay {
	/* immutable while serving */
	struct ocitree_upper *upper;
	struct ocitree_upper_format fmt;
	const struct ocitree_overlay_hooks *hooks; /* NULL: no live objects besides the ones passed in */
	void *hooks_data;
	struct ocitree_overlay_obj *root; /* the root directory: the upper directory itself */
	/* (ns) */
	struct ocitree_tree *tree; /* the current lower tree */
	uint32_t gen;              /* generation of st_ino of lower inodes */
	uint32_t *tparent, *tpos;  /* per tree inode: a parent directory and its position there */
	/* lock: warned_xattr; the first unsettable xattr is logged */
	pthread_mutex_t warn_lock;
	bool warned_xattr;
};

/* Initialise ov in place (ocitree_overlay_new() without the allocation),
 * and release what it holds. */
void overlay_init(struct ocitree_overlay *ov, struct ocitree_upper *upper, struct ocitree_tree *tree,
                  const struct ocitree_overlay_hooks *hooks, void *hooks_data);
void overlay_fini(struct ocitree_overlay *ov);

/* The tree changed (ns exclusive): forget what was derived from the old one. */
void overlay_tindex_free(struct ocitree_overlay *ov);

/* ocitree_overlay_getxattr() and _listxattr() into a growable buffer
 * (appended). */
int overlay_getxattr(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, const char *name, struct buf *out);
int overlay_listxattr(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, struct buf *out);

/* ---- between the engine's files (overlay*.c) ---- */

uint32_t overlay_lnlink(struct ocitree_tree *t, uint32_t k);
struct ocitree_overlay_obj *overlay_find_lower(struct ocitree_overlay *ov, uint32_t k);
void overlay_put(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o);
void overlay_set_upper(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, int fd, uint64_t uino);
void overlay_tindex_build(struct ocitree_overlay *ov);
bool overlay_has_opaque_marker(int dirfd);
bool overlay_wh_file_exists(int dirfd, const char *name);
int overlay_set_private(struct ocitree_overlay *ov, int fd, const char *which, const char *value);
void overlay_remove_private(struct ocitree_overlay *ov, int fd, const char *which);
int overlay_set_lower_meta(struct ocitree_overlay *ov, struct ocitree_tree *t, uint32_t k, int fd, const char *origin);
int overlay_set_lower_times(struct ocitree_tree *t, uint32_t k, int fd);
int overlay_set_opaque(struct ocitree_overlay *ov, int dirfd);
int overlay_place(struct ocitree_overlay *ov, const char *tmp, int dirfd, const char *name, bool dir, bool whiteout);
/* Make the special file (device, fifo, socket) name in dirfd: with
 * virtual owners an empty regular stand-in (its record says what it is),
 * else the node itself with permissions perm.  A 0/0 device is refused
 * (EPERM): it is how a whiteout looks.  Returns 0 or an errno. */
int overlay_mknod_at(const struct ocitree_overlay *ov, int dirfd, const char *name, mode_t type, mode_t perm,
                     dev_t rdev);
/* Whether the image file behind o (o->tree, o->lower) has xattr name: its
 * value (in the layer index) in *value and *len when they are not NULL. */
bool overlay_lower_xattr(const struct ocitree_overlay_obj *o, const char *name, const void **value, size_t *len);
/* Take the owner, mode and rdev of tree inode k as o's virtual ones. */
void overlay_obj_take_lower_owner(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, uint32_t k);

struct overlay_ptimes {
	struct timespec ts[2];
	bool ok;
};
/* Copy-up is not a change of the parent directory: its times are kept. */
void overlay_ptimes_save(int dfd, struct overlay_ptimes *p);
void overlay_ptimes_restore(int dfd, const struct overlay_ptimes *p);
/* Copy the subtree of directory object dir up and make it opaque (I2). */
int overlay_cu_tree(struct ocitree_overlay *ov, struct ocitree_overlay_obj *dir);

#endif
