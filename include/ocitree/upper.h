/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Upper directories: the changes made to a mounted image, kept on disk in
 * overlayfs form (see ocitree-upper(5) for the format), and turned into a
 * new layer by commit.
 *
 * An upper directory comes with a work directory on the same file system
 * that holds ocitree's record of it (ocitree-upper.json: the image it
 * changes, the tag it was mounted from, the format it uses), temporary files
 * of atomic copy-ups, and the control socket of a live mount.  Whoever opens
 * an upper directory holds an exclusive flock(2) on its work directory until
 * ocitree_upper_free(), so one mount (or one offline commit) uses it at a
 * time.
 *
 * Thread safety: an opened upper is not shared between threads by the
 * library; the FUSE driver serializes its own use.
 */
#ifndef OCITREE_UPPER_H
#define OCITREE_UPPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "ocitree/error.h"
#include "ocitree/image.h"
#include "ocitree/layout.h"
#include "ocitree/model.h"
#include "ocitree/progress.h"
#include "ocitree/tree.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How whiteouts are stored. */
enum ocitree_upper_whiteout {
	OCITREE_UPPER_WHITEOUT_CHARDEV = 0, /* a character device 0/0 named NAME (overlayfs) */
	OCITREE_UPPER_WHITEOUT_FILE,        /* an empty regular file .wh.NAME (OCI/AUFS) */
};

/* Where ocitree keeps its extended attributes (opaque, metacopy, redirect,
 * origin, stat). */
enum ocitree_upper_xattrs {
	OCITREE_UPPER_XATTR_NONE = 0, /* none: no metacopy, opaque as a .wh..wh..opq file */
	OCITREE_UPPER_XATTR_TRUSTED,  /* trusted.overlay.* (root) */
	OCITREE_UPPER_XATTR_USER,     /* user.overlay.* (rootless, overlayfs -o userxattr) */
};

struct ocitree_upper_format {
	enum ocitree_upper_whiteout whiteout;
	enum ocitree_upper_xattrs xattrs;
	/* owners, modes and device numbers are kept in the overlay.ocitree.stat
	 * xattr instead of on the files (an unprivileged user cannot chown) */
	bool virtual_owners;
};

/* The work directory's record of an upper directory. */
struct ocitree_upper_state {
	char *layout;                         /* absolute path of the layout */
	char *tag;                            /* the tag the image was mounted from */
	struct ocitree_descriptor manifest;   /* the image the upper directory changes */
	struct ocitree_upper_format format;
	bool clearing; /* a commit --clear was emptying the upper directory */
};

/* An opened upper directory (opaque). */
struct ocitree_upper;

/* The default work directory of an upper directory: "UPPER.work" next to it
 * (a trailing '/' of upper is ignored).  Caller frees. */
char *ocitree_upper_default_workdir(const char *upper);

/* Open an upper directory and its work directory (work NULL: the default),
 * creating the work directory (mode 0700) when create is set, lock it, and
 * read its record when there is one.  The two must be distinct directories
 * on one file system.  A work directory locked by someone else (a running
 * mount) for more than 3 seconds is an OCITREE_ERROR_EXISTS error. */
struct ocitree_upper *ocitree_upper_open(const char *upper, const char *work, bool create,
					 struct ocitree_error **err);
void ocitree_upper_free(struct ocitree_upper *u);

/* The upper directory as given to ocitree_upper_open(), and its work
 * directory (the default one when none was given).  Borrowed from u. */
const char *ocitree_upper_path(const struct ocitree_upper *u);
const char *ocitree_upper_work_path(const struct ocitree_upper *u);

/* The upper directory (O_RDONLY | O_DIRECTORY) and the work directory
 * (the one locked) as open fds, for *at() calls that must reach them
 * wherever the process runs (a daemon changes its directory).  Borrowed
 * from u: never closed by the caller. */
int ocitree_upper_fd(const struct ocitree_upper *u);
int ocitree_upper_work_fd(const struct ocitree_upper *u);

/* The work directory's record, or NULL when it has none (an upper directory
 * never mounted).  Borrowed from u: valid until the record changes
 * (ocitree_upper_set_state(), a commit, a clear) or ocitree_upper_free(). */
const struct ocitree_upper_state *ocitree_upper_get_state(const struct ocitree_upper *u);

/* Make a copy of st the record of u and write it to the work directory
 * atomically.  st may be (or point into) the current record.  On failure u
 * keeps its previous record. */
int ocitree_upper_set_state(struct ocitree_upper *u, const struct ocitree_upper_state *st,
			    struct ocitree_error **err);

/* Whether the upper directory holds nothing (a fresh one). */
bool ocitree_upper_is_empty(const struct ocitree_upper *u);

/* Find the format the file system of the upper directory allows, as the
 * current user: character-device whiteouts if mknod of 0/0 works, trusted
 * xattrs if they can be set and files can be given away (root), else user
 * xattrs and virtual owners.  Fields of want (may be NULL) that are >= 0 in
 * force_* override the probe.  An unprivileged user on a file system
 * without user xattrs is an OCITREE_ERROR_UNSUPPORTED error. */
struct ocitree_upper_probe_opts {
	int force_whiteout; /* enum ocitree_upper_whiteout or -1 */
	int force_xattrs;   /* enum ocitree_upper_xattrs or -1 */
};
int ocitree_upper_probe(struct ocitree_upper *u, const struct ocitree_upper_probe_opts *want,
			struct ocitree_upper_format *out, struct ocitree_error **err);

/* Remove what a killed user of the upper directory left in the work
 * directory (temporary objects of copy-ups and removals). */
void ocitree_upper_remove_stale(struct ocitree_upper *u);

/* Write the record u holds to the work directory again, atomically. */
int ocitree_upper_save_state(struct ocitree_upper *u, struct ocitree_error **err);

/* Empty the upper directory (after its changes were committed): every entry
 * is moved into the work directory and removed there, then the record's
 * clearing flag is dropped.  keep(dirfd, name, st, userdata), when not NULL,
 * may ask to keep a non-directory (a file still open for writing): it then
 * stays with its parents, which lose their opaque markers, and whiteouts
 * go.  Interrupted, it is finished by the next ocitree_upper_open() user
 * that sees state.clearing (ocitree_upper_finish_clear()). */
typedef bool (*ocitree_upper_keep_fn)(int dirfd, const char *name, const struct stat *st, void *userdata);
int ocitree_upper_clear(struct ocitree_upper *u, ocitree_upper_keep_fn keep, void *userdata,
			struct ocitree_error **err);
int ocitree_upper_finish_clear(struct ocitree_upper *u, struct ocitree_error **err);

/* Open the image an upper directory changes (state.manifest) in l. */
struct ocitree_image *ocitree_upper_base_image(struct ocitree_upper *u, struct ocitree_layout *l,
					       struct ocitree_error **err);

/* ---- commit ---- */

struct ocitree_commit_options {
	enum ocitree_compression compression;
	/* the history entry to add, or NULL for none; author NULL means the
	 * config's author */
	const struct ocitree_history *history;
	/* empty the upper directory once the new image is tagged; its record
	 * then names the new image */
	bool clear;
	/* the merged tree of the image the upper directory changes, for the
	 * data of metacopy files; NULL: built from the layout when needed, with
	 * layer indexes cached in cache_dir */
	struct ocitree_tree *lower;
	const char *cache_dir;
	/* called for every object of the upper directory (not whiteouts) with
	 * its path in the layer and its lstat, before the upper directory is
	 * cleared; may be NULL */
	void (*visit)(const char *path, const struct stat *st, void *userdata);
	/* with clear: see ocitree_upper_clear(); may be NULL */
	ocitree_upper_keep_fn keep;
	void *userdata;
	/* told of the bytes and entries written now and then; may be NULL */
	ocitree_progress_fn progress;
	void *progress_data;
};

struct ocitree_commit_result {
	char manifest[OCITREE_DIGEST_MAX]; /* the new image */
	int64_t manifest_size;
	char layer[OCITREE_DIGEST_MAX];    /* its new layer, "" when nothing changed */
	char diff_id[OCITREE_DIGEST_MAX];
	uint64_t entries;                  /* tar entries written */
	int64_t layer_size;
};

/* Turn the upper directory into a layer on top of the image it changes:
 * its entries in name order (whiteouts as ".wh.NAME", opaque directories
 * with ".wh..wh..opq"), metadata from the upper directory, data from it or,
 * for metacopy files, from the image; written by the layer writer, appended
 * to the image's manifest with its diff_id and the history entry, and
 * tagged tag in l (which must hold the image).  An upper directory without
 * changes adds no layer, only the history entry (marked empty_layer).  The
 * time is proportional to the size of the change.  An upper directory left
 * in the middle of the copy-up of a file with several names (a mount
 * finishes it) is an OCITREE_ERROR_INVALID error.  A failure leaves l as
 * it was (tags included), and the upper directory too. */
int ocitree_upper_commit(struct ocitree_upper *u, struct ocitree_layout *l, const char *tag,
			 const struct ocitree_commit_options *o, struct ocitree_commit_result *res,
			 struct ocitree_error **err);

#ifdef __cplusplus
}
#endif
#endif
