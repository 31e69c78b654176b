/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writable-mount engine: an upper directory (ocitree-upper(5)) over
 * the immutable merged tree of an image, for a file system driver (ocitree's
 * FUSE driver is one).  It decides what every name of the merged view is
 * (upper object, image file, whiteout, opaque directory), copies image files
 * up, and keeps the crash journal of hardlinked copy-ups; it knows nothing
 * of file system requests.
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
 * Objects.  A struct ocitree_overlay_obj is a file of the merged view: its
 * upper object, or the tree inode it shows.  The driver owns them (it
 * embeds them in its own inodes, so a lookup allocates once) and finds them
 * again by lower inode or upper inode number; the engine asks it through
 * struct ocitree_overlay_hooks when a copy-up gives a live object its upper
 * object.  An object's st_ino never changes: the lower inode number (plus a
 * generation per tree) for anything that came from the image, found again
 * after a remount through the origin xattr written at copy-up; bit 63 plus
 * the upper inode number for what was created here.
 *
 * Locking.  The engine takes no lock of its own but one that orders its
 * warnings.  The caller holds its namespace lock (here: ns) around every
 * call: shared for lookups, stat, listings and reads, exclusive for
 * anything that changes the upper directory or copies up (the functions
 * below say which); fields marked (ns) are protected by it.
 *
 * Errors are positive errno values (0 for success), the way a file system
 * driver replies; what only a log can explain is logged (ocitree/log.h).
 * Only set-up takes a struct ocitree_error.
 */
#ifndef OCITREE_OVERLAY_H
#define OCITREE_OVERLAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "ocitree/error.h"
#include "ocitree/tree.h"
#include "ocitree/upper.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A file of the merged view.  The fields are the engine's: a driver reads
 * them (under ns unless said otherwise) and writes them only where this
 * header says so. */
struct ocitree_overlay_obj {
	/* fixed at creation (type may be corrected while the object is made) */
	uint64_t ino; /* st_ino */
	mode_t type;  /* S_IFMT bits */
	/* (ns) */
	struct ocitree_tree *tree; /* the tree lower refers to */
	uint32_t lower;            /* non-dirs without upper: the file; metacopy: its data; dirs: the lower
	                              directory merged here (0: none or opaque) */
	int ufd;                   /* O_PATH fd of the upper object, -1 when there is none; set through
	                              ocitree_overlay_hooks.set_upper (so also under the driver's lock
	                              there), or dropped by the driver before ocitree_overlay_obj_move() */
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

/* What the engine asks of the driver that keeps the live objects.  Called
 * with ns held exclusively (during copy-ups and changes). */
struct ocitree_overlay_hooks {
	/* The live object of lower inode k of the current tree, held until
	 * put(), or NULL. */
	struct ocitree_overlay_obj *(*find_lower)(void *data, uint32_t k);
	void (*put)(void *data, struct ocitree_overlay_obj *o);
	/* Give o the upper object fd (an O_PATH fd the object now owns) with
	 * inode number uino, and make it findable by that number. */
	void (*set_upper)(void *data, struct ocitree_overlay_obj *o, int fd, uint64_t uino);
};

/* The engine's state for one upper directory over one tree (opaque). */
struct ocitree_overlay;

/* ---- set-up ---- */

/* Serve tree over upper (opened, with a record that names its format, see
 * ocitree_mount_setup()).  Both are borrowed and must outlive the engine;
 * hooks (NULL: no live objects besides the ones passed in) and hooks_data
 * too.  Never fails (out of memory aborts). */
struct ocitree_overlay *ocitree_overlay_new(struct ocitree_upper *upper, struct ocitree_tree *tree,
                                            const struct ocitree_overlay_hooks *hooks, void *hooks_data);
/* Free the engine's state (not the objects, the tree or the upper); NULL
 * is accepted. */
void ocitree_overlay_free(struct ocitree_overlay *ov);

/* Make root (an object of the caller's, zeroed) the root: the upper
 * directory itself, which gets the image root's owner, mode, xattrs and
 * times when fresh.  Before serving.  -1 with *err set on failure. */
int ocitree_overlay_root_init(struct ocitree_overlay *ov, struct ocitree_overlay_obj *root, bool fresh,
                              struct ocitree_error **err);

/* Finish the linking of a copy-up that a crash interrupted (before
 * serving; ns exclusive).  Problems are logged. */
void ocitree_overlay_links_journal_replay(struct ocitree_overlay *ov);

/* The current lower tree (ns), borrowed. */
struct ocitree_tree *ocitree_overlay_tree(const struct ocitree_overlay *ov);

/* Serve tree t from now on (ns exclusive; t borrowed, as for
 * ocitree_overlay_new()): lower inodes get st_ino of a new generation and
 * what was derived from the old tree is forgotten.  Live objects keep what
 * they are (see ocitree_overlay_obj_move()).  Returns the old tree, which
 * objects not moved may still refer to. */
struct ocitree_tree *ocitree_overlay_set_tree(struct ocitree_overlay *ov, struct ocitree_tree *t);

/* ---- objects ---- */

/* Make o (the caller's memory) an object with no upper object and no
 * lower inode yet. */
void ocitree_overlay_obj_init(struct ocitree_overlay_obj *o, mode_t type, uint64_t ino);
/* Make o the object of lower inode k of the current tree (ns). */
void ocitree_overlay_obj_init_lower(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, uint32_t k);
/* Close what the object holds (not o itself). */
void ocitree_overlay_obj_clear(struct ocitree_overlay_obj *o);

/* st_ino of lower inode k of the current tree (ns). */
uint64_t ocitree_overlay_ino_lower(const struct ocitree_overlay *ov, uint32_t k);

/* The S_IFMT bits of inode k of tree t, 0 when k is not one. */
mode_t ocitree_overlay_ltype(struct ocitree_tree *t, uint32_t k);

/* Make o (initialised) the object of the upper entry name of directory dir
 * (below: the lower entry of name in dir's lower directory, or 0): its fd,
 * type, owners, metacopy data and st_ino.  *origin: the lower inode of the
 * current tree it was copied up from, or 0 (ns shared). */
int ocitree_overlay_obj_open_upper(struct ocitree_overlay *ov, struct ocitree_overlay_obj *dir, const char *name,
                                   uint32_t below, struct ocitree_overlay_obj *o, uint32_t *origin);

/* An fd of o's upper object opened anew with open(2) flags (O_PATH fds
 * cannot read), or -1 with errno; the caller owns it. */
int ocitree_overlay_obj_reopen(const struct ocitree_overlay_obj *o, int flags);

/* "/a/b/c" for inode k of the current tree ("/" for the root; ns
 * exclusive, or shared once the index is built).  Caller frees. */
char *ocitree_overlay_tree_path(struct ocitree_overlay *ov, uint32_t k);

/* After the upper directory was committed and emptied (ocitree_upper_clear())
 * and before ocitree_overlay_set_tree(ov, t) (ns exclusive): o shows inode
 * k of the new tree t (0 when t has no such file).  dropped: the caller
 * closed o->ufd and set it to -1, because the clear removed the upper
 * object.  Its st_ino stays. */
void ocitree_overlay_obj_move(struct ocitree_overlay_obj *o, struct ocitree_tree *t, uint32_t k, bool dropped);

/* ---- looking up (ns shared) ---- */

/* ENAMETOOLONG for a name longer than NAME_MAX. */
int ocitree_overlay_check_name(const char *name);
/* And EINVAL for names that cannot be created: ".wh." is how layers say
 * "deleted". */
int ocitree_overlay_check_new_name(const char *name);

enum { OCITREE_OVERLAY_FOUND_NONE = 0, OCITREE_OVERLAY_FOUND_UPPER, OCITREE_OVERLAY_FOUND_LOWER };

/* What a name is in a merged directory. */
struct ocitree_overlay_found {
	int kind;
	struct stat ust; /* OCITREE_OVERLAY_FOUND_UPPER: its lstat */
	uint32_t lower;  /* OCITREE_OVERLAY_FOUND_LOWER: the tree inode */
	uint32_t below;  /* the lower entry of name in dir's lower directory, visible or not */
	bool whiteout;   /* the upper directory has a whiteout for name */
};
/* Find name in directory dir; a name that is not there is success with
 * kind OCITREE_OVERLAY_FOUND_NONE. */
int ocitree_overlay_find(struct ocitree_overlay *ov, struct ocitree_overlay_obj *dir, const char *name,
                         struct ocitree_overlay_found *f);

/* The attributes of an object. */
int ocitree_overlay_stat(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, struct stat *st);

/* Whether the merged directory dir is empty. */
int ocitree_overlay_dir_is_empty(struct ocitree_overlay *ov, struct ocitree_overlay_obj *dir, bool *empty);

struct ocitree_overlay_dent {
	char *name;
	mode_t type;
};
/* The merged listing of directory dir, sorted by name, appended to
 * *ents (*n of them; the caller frees each name and the array). */
int ocitree_overlay_dir_list(struct ocitree_overlay *ov, struct ocitree_overlay_obj *dir,
                             struct ocitree_overlay_dent **ents, size_t *n);

/* The directory's contents changed: its st_nlink is computed again. */
static inline void ocitree_overlay_dir_changed(struct ocitree_overlay_obj *dir)
{
	atomic_store_explicit(&dir->dir_nlink, 0, memory_order_relaxed);
}

/* The target of a symlink into buf (NUL-terminated). */
int ocitree_overlay_readlink(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, char *buf, size_t size);

/* An xattr value, or the NUL-separated list of names, as the merged view
 * shows them: *value (malloc()ed and NUL-terminated, caller frees) and
 * *len. */
int ocitree_overlay_getxattr(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, const char *name, void **value,
                             size_t *len);
int ocitree_overlay_listxattr(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, char **names, size_t *len);

/* ---- reading and opening ---- */

/* Open object o with open(2) flags: *fd an fd of its upper file (the
 * caller's), or -1 for a handle that reads through the object (an image
 * file, or a metacopy); *keep_cache when the page cache of an untouched
 * image file stays valid.  A write or O_TRUNC copies up first (ns
 * exclusive; else shared). */
int ocitree_overlay_open(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, int flags, int *fd,
                         bool *keep_cache);

/* Where a read through the object (a handle without fd) comes from (ns
 * shared): upper when the object has a complete upper file (read that),
 * else the image file k of tree, with limit the size the file shows
 * (UINT64_MAX: the image's) and zero_fill when bytes past the image's
 * data read as zeros (a metacopy file made longer). */
struct ocitree_overlay_source {
	bool upper;
	struct ocitree_tree *tree;
	uint32_t k;
	uint64_t limit;
	bool zero_fill;
};
int ocitree_overlay_read_source(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o,
                                struct ocitree_overlay_source *src);
/* Read size bytes at off of what src names; d as for ocitree_tree_read(),
 * in the cheapest form the layer allows (a copy only for the zeros of a
 * metacopy made longer).  Needs no lock, but src->tree and its layer
 * indexes must outlive d (ocitree_tree_data_release()).  0 or an errno
 * (EIO after logging a read error). */
int ocitree_overlay_read_lower(const struct ocitree_overlay_source *src, uint64_t off, size_t size,
                               struct ocitree_tree_data *d);

/* ---- changing (the caller's writers shared and ns exclusive) ---- */

enum ocitree_overlay_cu {
	OCITREE_OVERLAY_CU_META,  /* metadata only (metacopy where the format allows) */
	OCITREE_OVERLAY_CU_DATA,  /* metadata and data */
	OCITREE_OVERLAY_CU_EMPTY, /* metadata, and the data will be truncated to nothing */
};
/* Make sure o has an upper object. */
int ocitree_overlay_copy_up(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, enum ocitree_overlay_cu cu);
/* Make sure directory dir has an upper directory (at its tree path). */
int ocitree_overlay_ensure_upper_dir(struct ocitree_overlay *ov, struct ocitree_overlay_obj *dir);

/* A new object. */
struct ocitree_overlay_new {
	mode_t mode; /* with the file type */
	dev_t rdev;
	const char *link; /* symlink target */
	int flags;        /* regular files: open flags for the returned fd */
	uid_t uid;        /* the caller's */
	gid_t gid;
};
/* Make the new object name in dir; on success *below is the lower entry it
 * hides (for ocitree_overlay_obj_open_upper()), and *fd (when fd is not
 * NULL) an fd of a regular file opened with o->flags (the caller's). */
int ocitree_overlay_make(struct ocitree_overlay *ov, struct ocitree_overlay_obj *dir, const char *name,
                         const struct ocitree_overlay_new *o, int *fd, uint32_t *below);

/* Remove name, the object o that f found in dir (unlink, or rmdir when
 * rmdir: ENOTDIR, EISDIR, ENOTEMPTY as those say). */
int ocitree_overlay_remove(struct ocitree_overlay *ov, struct ocitree_overlay_obj *dir, const char *name,
                           struct ocitree_overlay_obj *o, const struct ocitree_overlay_found *f, bool rmdir);

/* Give o the new name newname in dir (which f says holds nothing). */
int ocitree_overlay_link(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, struct ocitree_overlay_obj *dir,
                         const char *newname, const struct ocitree_overlay_found *f);

#define OCITREE_OVERLAY_RENAME_NOREPLACE (1 << 0)
#define OCITREE_OVERLAY_RENAME_EXCHANGE  (1 << 1)
/* rename(2) of src (found as sf) at oldname in od to newname in nd, where
 * dst (or NULL) is. */
int ocitree_overlay_rename(struct ocitree_overlay *ov, struct ocitree_overlay_obj *od, const char *oldname,
                           struct ocitree_overlay_obj *nd, const char *newname, struct ocitree_overlay_obj *src,
                           const struct ocitree_overlay_found *sf, struct ocitree_overlay_obj *dst, unsigned flags);

/* What ocitree_overlay_setattr() changes. */
enum {
	OCITREE_OVERLAY_SET_MODE = 1 << 0,
	OCITREE_OVERLAY_SET_UID = 1 << 1,
	OCITREE_OVERLAY_SET_GID = 1 << 2,
	OCITREE_OVERLAY_SET_SIZE = 1 << 3,
	OCITREE_OVERLAY_SET_ATIME = 1 << 4,
	OCITREE_OVERLAY_SET_MTIME = 1 << 5,
	OCITREE_OVERLAY_SET_ATIME_NOW = 1 << 6,
	OCITREE_OVERLAY_SET_MTIME_NOW = 1 << 7,
	OCITREE_OVERLAY_SET_CTIME = 1 << 8,
};
/* Set what to_set names from attr; hfd: an fd of the upper file open for
 * writing (a truncate through a handle), or -1. */
int ocitree_overlay_setattr(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, const struct stat *attr,
                            unsigned to_set, int hfd);

/* setxattr(2) and removexattr(2) of the merged view (flags: XATTR_CREATE,
 * XATTR_REPLACE). */
int ocitree_overlay_setxattr(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, const char *name,
                             const void *value, size_t size, int flags);
int ocitree_overlay_removexattr(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, const char *name);

#ifdef __cplusplus
}
#endif
#endif
