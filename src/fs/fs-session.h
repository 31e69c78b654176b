/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FUSE session both drivers run in (fs-session.c): the -o options they
 * share, mounting, the worker loop and unmounting, and the reply to a read,
 * used by the read-only (fs.c, fs-store.c) and the writable (fs-rw.c)
 * drivers; and the replies the read-only drivers build the same way.
 */
#ifndef OCITREE_FS_SESSION_H
#define OCITREE_FS_SESSION_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "common.h"
#include "fs.h"

static inline void fs_cleanup_errorp(struct ocitree_error **e)
{
	ocitree_error_free(*e);
}
#define _cleanup_error_ _cleanup_(fs_cleanup_errorp)

struct fs_config {
	unsigned threads;
	unsigned cache_mib;
	double timeout;
	int debug;
	int rw;
	int no_default_permissions;
	int allow_other;
	int no_allow_other;
	char *xattrs;   /* -o xattrs=, allocated by fuse_opt */
	char *whiteout; /* -o whiteout= */
};

/* Parse the -o options into cfg (release with fs_config_clear) and the
 * argument vector for libfuse (fuse_opt_free_args). */
int fs_parse_options(const struct fs_opts *opts, struct fs_config *cfg, struct fuse_args *args,
		     struct ocitree_error **err);
void fs_config_clear(struct fs_config *cfg);

struct fs_hooks {
	/* in the process that serves, before the loop starts; se is the session */
	int (*started)(void *userdata, struct fuse_session *se);
	/* after the loop ended, before unmounting */
	void (*stopping)(void *userdata);
};

/* Mount, detach as a daemon when fs_fork_daemon() forked this process (and
 * not opts->foreground nor -o debug), serve with cfg->threads threads
 * until unmounted or signalled, unmount. */
int fs_session_run(const struct fuse_lowlevel_ops *ops, size_t ops_size, void *userdata, struct fuse_args *args,
		   const struct fs_config *cfg, const struct fs_opts *opts, const struct fs_hooks *hooks,
		   struct ocitree_error **err);

/* What every driver asks of the kernel in its init handler: image files
 * read the same way through each (zero-copy replies, readdirplus for every
 * readdir, cached symlinks, parallel directory operations, page caches
 * that only the driver invalidates, 1 MiB of read-ahead). */
void fs_init_conn(struct fuse_conn_info *conn);

/* Reply to a read with the data of ocitree_tree_read(): spliced from its
 * fd, or from its iovecs without a copy.  Returns what fuse_reply_data or
 * fuse_reply_iov does: negative when the reply could not be sent (-ENOENT:
 * the request was interrupted). */
int fs_reply_data(fuse_req_t req, const struct ocitree_tree_data *d);

/* What the read-only drivers (fs.c, fs-store.c) answer alike is written
 * once, from here on.
 *
 * The operations both read-only drivers serve, each from its own fs_<op>
 * (the same names in fs.c and fs-store.c) but for the shared handlers
 * below: one list, so that what one answers the other does too.  Their
 * ops tables start with it and add what is theirs alone. */
#define FS_READ_ONLY_OPS                                                                                               \
	.init = fs_init, .lookup = fs_lookup, .forget = fs_forget_none, .forget_multi = fs_forget_multi_none,          \
	.getattr = fs_getattr, .readlink = fs_readlink, .opendir = fs_opendir, .readdir = fs_readdir,                  \
	.readdirplus = fs_readdirplus, .releasedir = fs_release_none, .open = fs_open, .read = fs_read,                \
	.release = fs_release_none, .getxattr = fs_getxattr, .listxattr = fs_listxattr, .statfs = fs_statfs

/* forget for nodes that live as long as the mount: nothing to release. */
void fs_forget_none(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void fs_forget_multi_none(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
/* release and releasedir where an open file or directory holds nothing. */
void fs_release_none(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

/* Reply to open of a node of a read-only driver with attributes st (NULL:
 * there is no such node): ENOENT, EISDIR for a directory, EROFS for an open
 * that would write, ENOSYS when no_open (the driver asked the kernel to
 * open files without asking, FUSE_CAP_NO_OPEN_SUPPORT), else opened with
 * the page cache kept. */
void fs_reply_open_readonly(fuse_req_t req, struct fuse_file_info *fi, const struct stat *st, bool no_open);

/* The name at readdir offset pos of directory dir of t, and its inode in
 * *child: offset 0 is ".", 1 "..", 2 + i child i.  NULL past the end. */
const char *fs_tree_dirent(const struct ocitree_tree *t, uint32_t dir, off_t pos, uint32_t *child);

/* Add the entry name (next: the offset after it) to the readdir reply
 * being built in buf (size bytes, *used of them taken): with plus e whole,
 * without only e->attr's inode number and type.  False, adding nothing,
 * when it does not fit. */
bool fs_add_dirent(fuse_req_t req, char *buf, size_t size, size_t *used, const char *name,
		   const struct fuse_entry_param *e, off_t next, bool plus);

/* Reply to getxattr or listxattr with value (len bytes): its length when
 * size is 0 (the caller asks how much to allocate), ERANGE when it does not
 * fit in size. */
void fs_reply_xattr(fuse_req_t req, size_t size, const void *value, size_t len);

#endif
