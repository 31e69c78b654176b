/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FUSE session both drivers run in (fs-session.c): the -o options they
 * share, mounting, the worker loop and unmounting, and the reply to a read,
 * used by the read-only (fs.c) and the writable (fs-rw.c) driver.
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

/* Mount, daemonize unless opts->foreground, serve with cfg->threads threads
 * until unmounted or signalled, unmount. */
int fs_session_run(const struct fuse_lowlevel_ops *ops, size_t ops_size, void *userdata, struct fuse_args *args,
		   const struct fs_config *cfg, const struct fs_opts *opts, const struct fs_hooks *hooks,
		   struct ocitree_error **err);

/* Reply to a read with the data of ocitree_tree_read(): spliced from its
 * fd, or from its iovecs without a copy.  Returns what fuse_reply_data or
 * fuse_reply_iov does: negative when the reply could not be sent (-ENOENT:
 * the request was interrupted). */
int fs_reply_data(fuse_req_t req, const struct ocitree_tree_data *d);

#endif
