/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The upper directory format (ocitree-upper(5)), shared by the FUSE driver
 * that writes it and commit that reads it.
 *
 * Private extended attributes live under the format's prefix
 * ("trusted.overlay." or "user.overlay."):
 *   opaque          "y" on a directory whose lower contents are hidden
 *   metacopy        "" on a regular file that holds metadata only: its data
 *                   is the lower file named by redirect
 *   redirect        "/absolute/lower/path" of a metacopy file's data
 *   ocitree.origin  "/absolute/lower/path" the object was copied up from
 *                   (it gives copied-up objects their lower inode number)
 *   ocitree.stat    "UID:GID:MODE[:MAJOR:MINOR]" (MODE octal, with the file
 *                   type) where the format has virtual owners
 * An xattr of the image whose name starts with the prefix is stored with
 * "overlay." inserted after it, as overlayfs escapes nested xattrs.
 */
#ifndef OCITREE_UPPER_INTERNAL_H
#define OCITREE_UPPER_INTERNAL_H

#include <limits.h>
#include <sys/stat.h>

#include "ocitree/upper.h"
#include "util.h"

/* The opaque struct ocitree_upper of ocitree/upper.h. */
struct ocitree_upper {
	char *path;      /* the upper directory, as given */
	char *work_path; /* the work directory */
	int fd;          /* the upper directory (O_RDONLY | O_DIRECTORY) */
	int work_fd;     /* the work directory, flock()ed */
	bool has_state;  /* state was read from (or written to) the work directory */
	struct ocitree_upper_state state;
};

#define UPPER_X_OPAQUE "opaque"
#define UPPER_X_METACOPY "metacopy"
#define UPPER_X_REDIRECT "redirect"
#define UPPER_X_ORIGIN "ocitree.origin"
#define UPPER_X_STAT "ocitree.stat"

#define UPPER_WH_PREFIX ".wh."
#define UPPER_WH_OPAQUE ".wh..wh..opq"
#define UPPER_STATE_FILE "ocitree-upper.json"
#define UPPER_TMP_PREFIX "tmp."

/* Longest private xattr name plus NUL. */
#define UPPER_XATTR_NAME_MAX 48

/* The prefix of private xattrs, or NULL when the format has none. */
const char *upper_xattr_prefix(const struct ocitree_upper_format *f);
/* The full name of private xattr which (UPPER_X_*) into buf; NULL when the
 * format keeps no xattrs. */
const char *upper_xattr_name(const struct ocitree_upper_format *f, const char *which,
			     char buf[UPPER_XATTR_NAME_MAX]);
/* The name an image xattr is stored under (escaped); caller frees. */
char *upper_xattr_escape(const struct ocitree_upper_format *f, const char *name);
/* The image name of an xattr found in the upper directory, in out (a
 * borrowed pointer into name or into out's storage), or NULL when it is a
 * private one that must not be shown. */
const char *upper_xattr_unescape(const struct ocitree_upper_format *f, const char *name);

static inline bool upper_is_whiteout(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == 0;
}

/* A path that reaches an object through /proc/self/fd, for the *xattr and
 * chmod calls that have no fd form usable with O_PATH fds.  upath_fd: the
 * object an fd refers to (follow the magic link); upath_at: name in dirfd
 * (do not follow name itself). */
struct upath {
	char path[48 + NAME_MAX];
	bool follow;
};
void upath_fd(struct upath *p, int fd);
void upath_at(struct upath *p, int dirfd, const char *name);
ssize_t upath_getxattr(const struct upath *p, const char *name, void *buf, size_t size);
int upath_setxattr(const struct upath *p, const char *name, const void *value, size_t size, int flags);
int upath_removexattr(const struct upath *p, const char *name);
ssize_t upath_listxattr(const struct upath *p, char *buf, size_t size);
/* All xattr names (NUL-separated, in out) of p; 0 or -1 with errno. */
int upath_list_all(const struct upath *p, struct buf *out);
/* A whole xattr value into out; 0, or -1 with errno (ENODATA when absent). */
int upath_get_all(const struct upath *p, const char *name, struct buf *out);

/* What the private xattrs of an upper object say. */
struct upper_meta {
	bool opaque;
	bool metacopy;
	char *redirect; /* the lower path of a metacopy file's data, or NULL */
	char *origin;   /* the lower path the object was copied up from, or NULL */
	bool has_stat;  /* virtual owners: the fields below are set */
	uid_t uid;
	gid_t gid;
	mode_t mode; /* with the file type */
	dev_t rdev;
};
/* Read them (absent ones are false/NULL).  -1 with errno on failure other
 * than "not supported". */
int upper_meta_read(const struct ocitree_upper_format *f, const struct upath *p, struct upper_meta *m);
void upper_meta_clear(struct upper_meta *m);

/* "UID:GID:MODE[:MAJOR:MINOR]" */
void upper_stat_format(char buf[64], uid_t uid, gid_t gid, mode_t mode, dev_t rdev);
int upper_stat_parse(const char *s, size_t len, uid_t *uid, gid_t *gid, mode_t *mode, dev_t *rdev);

/* Apply a virtual stat to st (owners, mode with type, rdev). */
void upper_meta_apply(const struct upper_meta *m, struct stat *st);

/* Remove name in dirfd and everything below it. */
int upper_rm_rf_at(int dirfd, const char *name);

/* A fresh unique name for a temporary object in the work directory. */
void upper_tmp_name(char buf[64]);

/* The journal of the copy-up of a file with several names (in the work
 * directory): the names are linked into the upper directory one by one, so
 * their paths in the image ("/a/b"), the one placed first first, are
 * written here before and removed after; a mount finishes what a crash
 * left half done. */
#define UPPER_LINKS_JOURNAL "copyup-links"

/* Write the journal (n >= 2 paths) atomically. */
int upper_links_journal_write(struct ocitree_upper *u, const char *const *paths, size_t n,
			      struct ocitree_error **err);
/* Read the journal: *paths receives its paths (NULL-terminated; free with
 * strv_free()), at least two, each "/" and one or more names that are not
 * "", "." or ".." (so that no path leads out of the upper directory).  0
 * with *paths NULL when there is none; an unreadable or malformed journal
 * is an error (OCITREE_ERROR_INVALID when malformed). */
int upper_links_journal_read(struct ocitree_upper *u, char ***paths, struct ocitree_error **err);
void upper_links_journal_remove(struct ocitree_upper *u);

/* Whether name is one the format reserves (".wh." prefix): such names cannot
 * be in an image either (OCI whiteouts). */
static inline bool upper_name_reserved(const char *name)
{
	return strncmp(name, UPPER_WH_PREFIX, sizeof(UPPER_WH_PREFIX) - 1) == 0;
}

#endif
