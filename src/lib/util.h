/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal helpers of libocitree on top of the generic ones of common.h:
 * the error cleanup attribute, whole-file reads and atomic writes in a
 * directory, directories opened without leaving a root, and an inode map.  Not installed, and not for the front ends
 * (they use the public headers and common.h).
 */
#ifndef OCITREE_UTIL_H
#define OCITREE_UTIL_H

#include <sys/types.h>
#include <time.h>

#include "common.h"
#include "ocitree/error.h"

static inline void cleanup_errorp(struct ocitree_error **e)
{
	ocitree_error_free(*e);
}
#define _cleanup_error_ _cleanup_(cleanup_errorp)

/* madvise(advice) the whole pages inside [p, p + len), none if there are
 * none: the pages at the ends are shared with other data. */
void madvise_within(const void *p, size_t len, int advice);

/* Read a whole file relative to dirfd, at most max bytes (a larger file, or
 * one that is not a regular file, is an OCITREE_ERROR_INVALID error naming
 * what; a FIFO fails at once). */
int read_file_at(int dirfd, const char *name, size_t max, struct buf *out, const char *what,
		 struct ocitree_error **err);
/* Create name in dirfd atomically: write to a temporary file in the same
 * directory, fsync, rename over name, fsync the directory. */
int write_file_atomic_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			 struct ocitree_error **err);
/* As write_file_atomic_at() without the fsyncs: readers see the old file or
 * the new one, but a crash may leave neither (for files that describe
 * something not synced either, as a freshly unpacked rootfs). */
int write_file_nosync_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			 struct ocitree_error **err);
/* As write_file_atomic_at(), the new file given to uid:gid first (both
 * (uid_t)-1 / (gid_t)-1 to leave it the caller's). */
int write_file_atomic_owned_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode, uid_t uid,
			       gid_t gid, struct ocitree_error **err);
/* Open a new temporary file in dirfd named ".ocitree-tmp.<tag>.XXXXXX";
 * *name receives the name (caller frees).  Returns the fd or -1. */
int open_tmpfile_at(int dirfd, const char *tag, char **name, struct ocitree_error **err);
int fsync_dir_at(int dirfd, const char *name);

/* An O_PATH fd of directory path (relative; "" is rootfd itself) under
 * rootfd, resolved so that nothing outside rootfd can be reached: with
 * in_root, symlinks on the way are followed as if rootfd were "/"
 * (RESOLVE_IN_ROOT: an image's /bin -> usr/bin stays in the image); without,
 * any symlink on the way is refused (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS).
 * Where openat2() is missing (an old kernel, or seccomp), both walk one
 * component at a time with O_NOFOLLOW, refusing symlinks.  -1 with errno. */
int open_dir_in_root_at(int rootfd, const char *path, bool in_root);

/* The prefix of every temporary file ocitree creates inside a layout. */
#define OCITREE_TMP_PREFIX ".ocitree-tmp."

/* ---- inode number -> path ----
 * Open addressing; owns copies of its paths.  The first path put for an
 * inode stays (the first name of a hardlinked file). */
struct inomap {
	struct inomap_ent {
		uint64_t ino;
		char *path;
	} *v;
	size_t cap, n;
};
void inomap_put(struct inomap *m, uint64_t ino, const char *path);
/* The path of ino, or NULL. */
const char *inomap_get(const struct inomap *m, uint64_t ino);
void inomap_free(struct inomap *m);

#endif
