/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writable-mount engine: an upper directory (ocitree-upper(5)) over
 * the immutable merged tree of an image, as the FUSE driver (src/fs/fs-rw.c)
 * and the unit tests use it.  It decides what every name of the merged view
 * is (upper object, image file, whiteout, opaque directory), copies image
 * files up, and keeps the crash journal of hardlinked copy-ups; it knows
 * nothing of FUSE requests.
 *
 * Model.  The lower side is the ocitree_tree; the upper directory is the
 * whole truth about changes and is read with *at() calls relative to
 * directory fds only (O_PATH fds kept on objects; the few calls that have
 * no fd form go through /proc/self/fd).  Two invariants keep the lower side
 * simple:
 *   I1  a lower inode with several names is either untouched (every name
 *       where the tree has it) or copied up with all its names hardlinked
 *       in the upper directory: anything that would drop or move one name
 *       copies it up first;
 *   I2  a lower directory that is still visible is at its tree path:
 *       renaming one copies its subtree up (metadata only for files) and
 *       makes it opaque.
 * So an object without an upper object is always at its tree path, and its
 * names are the tree's.
 *
 * Objects.  A struct overlay_obj is a file of the merged view: its upper
 * object, or the tree inode it shows.  The driver owns them (embedded in
 * its nodes) and finds them again by lower inode or upper inode number;
 * the engine asks it through struct overlay_hooks when a copy-up gives a
 * live object its upper object.  An object's st_ino never changes: the
 * lower inode number (plus a generation per tree) for anything that came
 * from the image, found again after a remount through the origin xattr
 * written at copy-up; bit 63 plus the upper inode number for what was
 * created here.
 *
 * Locking.  The engine takes no lock of its own but warn_lock.  The caller
 * holds its namespace lock (ns) around every call: shared for lookups,
 * stat, listings and reads, exclusive for anything that changes the upper
 * directory or copies up (the functions below say which); fields marked
 * (ns) are protected by it.
 *
 * Errors are positive errno values (0 for success), the way the driver
 * replies; what only a log can explain is logged.
 */
#ifndef OCITREE_OVERLAY_H
#define OCITREE_OVERLAY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "ocitree/tree.h"
#include "ocitree/upper.h"
#include "upper-internal.h"
#include "util.h"

/* A file of the merged view. */
struct overlay_obj {
	/* fixed at creation (type may be corrected while the object is made) */
	uint64_t ino; /* st_ino */
	mode_t type;  /* S_IFMT bits */
	/* (ns) */
	struct ocitree_tree *tree; /* the tree lower refers to */
	uint32_t lower;            /* non-dirs without upper: the file; metacopy: its data; dirs: the lower
				      directory merged here (0: none or opaque) */
	int ufd;                   /* O_PATH fd of the upper object, -1 when there is none; set through
				      overlay_hooks.set_upper (also under the driver's map lock) */
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
};

struct overlay_hooks {
	/* The live object of lower inode k of the current tree, held until
	 * put(), or NULL. */
	struct overlay_obj *(*find_lower)(void *data, uint32_t k);
	void (*put)(void *data, struct overlay_obj *o);
	/* Give o the upper object fd (an O_PATH fd the object now owns) with
	 * inode number uino, and make it findable by that number. */
	void (*set_upper)(void *data, struct overlay_obj *o, int fd, uint64_t uino);
};

struct overlay {
	/* immutable while serving */
	struct ocitree_upper *upper;
	struct ocitree_upper_format fmt;
	const struct overlay_hooks *hooks; /* NULL: no live objects besides the ones passed in */
	void *hooks_data;
	struct overlay_obj *root; /* the root directory: the upper directory itself */
	/* (ns) */
	struct ocitree_tree *tree;  /* the current lower tree */
	uint32_t gen;               /* generation of st_ino of lower inodes */
	uint32_t *tparent, *tpos;   /* per tree inode: a parent directory and its position there */
	/* lock: warned_xattr; the first unsettable xattr is logged */
	pthread_mutex_t warn_lock;
	bool warned_xattr;
};

/* ---- set-up ---- */

/* Serve tree (borrowed) over upper (borrowed, opened with its format). */
void overlay_init(struct overlay *ov, struct ocitree_upper *upper, struct ocitree_tree *tree,
		  const struct overlay_hooks *hooks, void *hooks_data);
void overlay_fini(struct overlay *ov);

/* Make ov->root (an object of the caller's, zeroed) the root: the upper
 * directory itself, which gets the image root's owner, mode, xattrs and
 * times when fresh. */
int overlay_root_init(struct overlay *ov, struct overlay_obj *root, bool fresh, struct ocitree_error **err);

/* Finish the linking of a copy-up that a crash interrupted (before
 * serving; ns exclusive). */
void overlay_links_journal_replay(struct overlay *ov);

/* The tree changed (ns exclusive): forget what was derived from the old one. */
void overlay_tindex_free(struct overlay *ov);

/* ---- objects ---- */

void overlay_obj_init(struct overlay_obj *o, mode_t type, uint64_t ino);
/* Close what the object holds. */
void overlay_obj_clear(struct overlay_obj *o);

/* st_ino of lower inode k of the current tree. */
static inline uint64_t overlay_ino_lower(const struct overlay *ov, uint32_t k)
{
	return ((uint64_t)ov->gen << 32) | k;
}

/* The S_IFMT bits of tree inode k, 0 when invalid. */
mode_t overlay_ltype(struct ocitree_tree *t, uint32_t k);

/* Make o (initialised) the object of the upper entry name of directory dir
 * (below: the lower entry of name in dir's lower directory, or 0): its fd,
 * type, owners, metacopy data and st_ino.  *origin: the lower inode of the
 * current tree it was copied up from, or 0. */
int overlay_obj_open_upper(struct overlay *ov, struct overlay_obj *dir, const char *name, uint32_t below,
			   struct overlay_obj *o, uint32_t *origin);

/* "/a/b/c" for inode k of the current tree ("/" for the root; ns
 * exclusive, or shared once the index is built). */
char *overlay_tree_path(struct overlay *ov, uint32_t k);

/* ---- looking up (ns shared) ---- */

/* ENAMETOOLONG for a name longer than NAME_MAX. */
int overlay_check_name(const char *name);
/* And EINVAL for names that cannot be created: ".wh." is how layers say
 * "deleted". */
int overlay_check_new_name(const char *name);

enum { OVERLAY_FOUND_NONE = 0, OVERLAY_FOUND_UPPER, OVERLAY_FOUND_LOWER };

/* What a name is in a merged directory. */
struct overlay_found {
	int kind;
	struct stat ust; /* OVERLAY_FOUND_UPPER: its lstat */
	uint32_t lower;  /* OVERLAY_FOUND_LOWER: the tree inode */
	uint32_t below;  /* the lower entry of name in dir's lower directory, visible or not */
	bool whiteout;   /* the upper directory has a whiteout for name */
};
int overlay_find(struct overlay *ov, struct overlay_obj *dir, const char *name, struct overlay_found *f);

/* The attributes of an object. */
int overlay_stat(struct overlay *ov, struct overlay_obj *o, struct stat *st);

/* Whether the merged directory dir is empty. */
int overlay_dir_is_empty(struct overlay *ov, struct overlay_obj *dir, bool *empty);

struct overlay_dent {
	char *name;
	mode_t type;
};
/* The merged listing of directory dir, sorted by name, appended to
 * *ents (*n of them; free each name and the array). */
int overlay_dir_list(struct overlay *ov, struct overlay_obj *dir, struct overlay_dent **ents, size_t *n);

/* The directory's contents changed: its st_nlink is computed again. */
static inline void overlay_dir_changed(struct overlay_obj *dir)
{
	atomic_store_explicit(&dir->dir_nlink, 0, memory_order_relaxed);
}

/* The target of a symlink into buf (NUL-terminated). */
int overlay_readlink(struct overlay *ov, struct overlay_obj *o, char *buf, size_t size);

/* An xattr value (out, appended) or the NUL-separated list of names as the
 * merged view shows them. */
int overlay_getxattr(struct overlay *ov, struct overlay_obj *o, const char *name, struct buf *out);
int overlay_listxattr(struct overlay *ov, struct overlay_obj *o, struct buf *out);

/* ---- reading and opening ---- */

/* Open object o with open(2) flags: *fd an fd of its upper file, or -1 for
 * a handle that reads through the object (an image file, or a metacopy);
 * *keep_cache when the page cache of an untouched image file stays valid.
 * A write or O_TRUNC copies up first (ns exclusive; else shared). */
int overlay_open(struct overlay *ov, struct overlay_obj *o, int flags, int *fd, bool *keep_cache);

/* Where a read through the object (a handle without fd) comes from (ns
 * shared): *upper when the object has a complete upper file (read that),
 * else the image file in *t, *k, with *limit the size the file shows
 * (UINT64_MAX: the image's) and *zero_fill when bytes past the image's
 * data read as zeros (a metacopy file made longer). */
struct overlay_source {
	bool upper;
	struct ocitree_tree *tree;
	uint32_t k;
	uint64_t limit;
	bool zero_fill;
};
int overlay_read_source(struct overlay *ov, struct overlay_obj *o, struct overlay_source *src);
/* Read size bytes at off of what src names; d as for ocitree_tree_read(),
 * in the cheapest form the layer allows (a copy only for the zeros of a
 * metacopy made longer).  Needs no lock, but src->tree and its layer
 * indexes must outlive d (ocitree_tree_data_release()).  0 or an errno
 * (EIO after logging a read error). */
int overlay_read_lower(const struct overlay_source *src, uint64_t off, size_t size, struct ocitree_tree_data *d);

/* ---- changing (freeze shared and ns exclusive) ---- */

enum overlay_cu {
	OVERLAY_CU_META,  /* metadata only (metacopy where the format allows) */
	OVERLAY_CU_DATA,  /* metadata and data */
	OVERLAY_CU_EMPTY, /* metadata, and the data will be truncated to nothing */
};
/* Make sure o has an upper object. */
int overlay_copy_up(struct overlay *ov, struct overlay_obj *o, enum overlay_cu cu);
/* Make sure directory dir has an upper directory (at its tree path). */
int overlay_ensure_upper_dir(struct overlay *ov, struct overlay_obj *dir);

/* A new object. */
struct overlay_new {
	mode_t mode;      /* with the file type */
	dev_t rdev;
	const char *link; /* symlink target */
	int flags;        /* regular files: open flags for the returned fd */
	uid_t uid;        /* the caller's */
	gid_t gid;
};
/* Make the new object name in dir; on success *ust is its lstat and *below
 * the lower entry it hides (for overlay_obj_open_upper()), and *fd (when
 * fd is not NULL) an fd of a regular file opened with o->flags. */
int overlay_make(struct overlay *ov, struct overlay_obj *dir, const char *name, const struct overlay_new *o,
		 int *fd, uint32_t *below);

/* Remove name, the object o that f found in dir (unlink, or rmdir when
 * rmdir: ENOTDIR, EISDIR, ENOTEMPTY as those say). */
int overlay_remove(struct overlay *ov, struct overlay_obj *dir, const char *name, struct overlay_obj *o,
		   const struct overlay_found *f, bool rmdir);

/* Give o the new name newname in dir (which f says holds nothing). */
int overlay_link(struct overlay *ov, struct overlay_obj *o, struct overlay_obj *dir, const char *newname,
		 const struct overlay_found *f);

#define OVERLAY_RENAME_NOREPLACE (1 << 0)
#define OVERLAY_RENAME_EXCHANGE (1 << 1)
/* rename(2) of src (found as sf) at oldname in od to newname in nd, where
 * dst (or NULL) is. */
int overlay_rename(struct overlay *ov, struct overlay_obj *od, const char *oldname, struct overlay_obj *nd,
		   const char *newname, struct overlay_obj *src, const struct overlay_found *sf,
		   struct overlay_obj *dst, unsigned flags);

/* What overlay_setattr() changes. */
enum {
	OVERLAY_SET_MODE = 1 << 0,
	OVERLAY_SET_UID = 1 << 1,
	OVERLAY_SET_GID = 1 << 2,
	OVERLAY_SET_SIZE = 1 << 3,
	OVERLAY_SET_ATIME = 1 << 4,
	OVERLAY_SET_MTIME = 1 << 5,
	OVERLAY_SET_ATIME_NOW = 1 << 6,
	OVERLAY_SET_MTIME_NOW = 1 << 7,
	OVERLAY_SET_CTIME = 1 << 8,
};
/* Set what to_set names from attr; hfd: an fd of the upper file open for
 * writing (a truncate through a handle), or -1. */
int overlay_setattr(struct overlay *ov, struct overlay_obj *o, const struct stat *attr, unsigned to_set, int hfd);

int overlay_setxattr(struct overlay *ov, struct overlay_obj *o, const char *name, const void *value, size_t size,
		     int flags);
int overlay_removexattr(struct overlay *ov, struct overlay_obj *o, const char *name);

/* ---- between the engine's files (overlay*.c) ---- */

uint32_t overlay_lnlink(struct ocitree_tree *t, uint32_t k);
struct overlay_obj *overlay_find_lower(struct overlay *ov, uint32_t k);
void overlay_put(struct overlay *ov, struct overlay_obj *o);
void overlay_set_upper(struct overlay *ov, struct overlay_obj *o, int fd, uint64_t uino);
void overlay_tindex_build(struct overlay *ov);
bool overlay_has_opaque_marker(int dirfd);
bool overlay_wh_file_exists(int dirfd, const char *name);
int overlay_set_private(struct overlay *ov, int fd, const char *which, const char *value);
void overlay_remove_private(struct overlay *ov, int fd, const char *which);
int overlay_set_lower_meta(struct overlay *ov, struct ocitree_tree *t, uint32_t k, int fd, const char *origin);
int overlay_set_lower_times(struct ocitree_tree *t, uint32_t k, int fd);
int overlay_set_opaque(struct overlay *ov, int dirfd);
int overlay_place(struct overlay *ov, const char *tmp, int dirfd, const char *name, bool dir, bool whiteout);
/* Take the owner, mode and rdev of tree inode k as o's virtual ones. */
void overlay_obj_take_lower_owner(struct overlay *ov, struct overlay_obj *o, uint32_t k);

struct overlay_ptimes {
	struct timespec ts[2];
	bool ok;
};
/* Copy-up is not a change of the parent directory: its times are kept. */
void overlay_ptimes_save(int dfd, struct overlay_ptimes *p);
void overlay_ptimes_restore(int dfd, const struct overlay_ptimes *p);
/* Copy the subtree of directory object dir up and make it opaque (I2). */
int overlay_cu_tree(struct overlay *ov, struct overlay_obj *dir);

#endif
