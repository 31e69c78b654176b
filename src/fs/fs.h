/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FUSE driver: serves a merged tree (read-only) over the libfuse3
 * low-level API.  fs_run() mounts, optionally daemonizes, runs the
 * multithreaded loop until unmount or SIGTERM/SIGINT/SIGHUP, and unmounts.
 *
 * fs_run_rw() serves the same tree with an upper directory in front of it
 * (fs-rw.c): a writable overlay whose changes commit turns into a layer.
 */
#ifndef OCITREE_FS_H
#define OCITREE_FS_H

#include <stdbool.h>
#include <stddef.h>

#include "ocitree/ocitree.h"

/* The -o options ocitree itself understands (the fuse_opt table in fs.c);
 * everything else in -o goes to libfuse and the kernel. */
#define FS_MOUNT_OPTIONS_HELP                                                                                      \
	"  -o OPTIONS                       comma-separated mount options (repeatable):\n"                         \
	"       ro, rw                      read-only, or writable with --upper (the default then)\n"               \
	"       debug                       log every FUSE request to stderr (implies -f)\n"                       \
	"       allow_other, allow_root     let other users (or root) see the mount (allow_other is the\n"         \
	"                                   default for root: a rootfs is used by every uid in it)\n"            \
	"       no_allow_other              as root, let no other user see the mount\n"                          \
	"       default_permissions         kernel permission checks on the image's modes (the default;\n"         \
	"                                   no_default_permissions turns it off)\n"                                \
	"       fsname=NAME                 the mount's source, as findmnt shows it (default LAYOUT:TAG)\n"        \
	"       subtype=NAME                the file system subtype (default ocitree: fuse.ocitree)\n"              \
	"       threads=N                   FUSE worker threads (default: one per CPU, 2 to 16)\n"               \
	"       cache_size=MIB              decompressed chunk cache, in MiB (default 32)\n"                      \
	"       timeout=SECONDS             entry and attribute cache timeout (default 86400)\n"                   \
	"       xattrs=trusted|user|none    with --upper: where ocitree keeps its xattrs (default: probed)\n"      \
	"       whiteout=chardev|file       with --upper: the form of whiteouts (default: probed)\n"              \
	"       other libfuse options (max_read=N, ...) are passed on\n"

struct fs_opts {
	const char *mountpoint;
	bool foreground;
	const char *default_fsname;
	char **mount_opts; /* the -o arguments as given, NULL-terminated; may be NULL */
	bool writable;       /* an upper directory is given */
	bool virtual_owners; /* its format keeps owners in xattrs (no default_permissions) */
	/* called in the process that serves, once the mount is in place and
	 * before it serves the first request (foreground or not); may be NULL.
	 * `ocitree run` waits for it (src/cli/run.c). */
	void (*ready)(void *data);
	void *ready_data;
	/* set by fs_check_options(): what the -o options ask for, so that the
	 * set-up's questions below need no parse of their own */
	bool checked;
	bool debug;                                /* -o debug */
	size_t cache_bytes;                        /* -o cache_size, in bytes */
	struct ocitree_upper_probe_opts probe;     /* -o xattrs=, whiteout= */
	/* set by fs_fork_daemon() in the child: the pipe its parent waits on */
	bool forked;
	int ready_fd;
};

/* Would the mount stay in the foreground (-f, -o debug)? */
bool fs_runs_in_foreground(const struct fs_opts *opts);

/* For a mount that is to run as a daemon: fork now, before the set-up, while
 * the process is small.  A fork after it copied the page tables of the
 * indexes and the tree, and the daemon then took a fault on every page it
 * wrote (2.5 ms of a warm `ocitree mount` from its 40).  Returns 0 in the
 * child, which goes on (opts->forked); the parent waits until the child
 * serves, raises the read-ahead (fs_raise_read_ahead) and exits 0, or, when
 * the child ends first (it has printed why), exits with the child's status.
 * Returns -1 (in the only process) if it cannot fork. */
int fs_fork_daemon(struct fs_opts *opts, struct ocitree_error **err);

/* Parse opts->mount_opts now (so that usage errors come before any work)
 * and keep what the set-up asks of them in opts (checked, debug,
 * cache_bytes, probe); returns 0 or -1 with an OCITREE_ERROR_USAGE error. */
int fs_check_options(struct fs_opts *opts, struct ocitree_error **err);

/* Serve tree on opts->mountpoint until it is unmounted.  chunks is the cache
 * the layer indexes read through; its size is set from -o cache_size before
 * the first read.  In daemon mode the parent exits (status 0) once the
 * child is about to serve and fs_raise_read_ahead() has run, and this
 * returns in the child when the mount ends; errors before the fork are
 * returned to the caller. */
int fs_run(struct ocitree_tree *tree, const struct fs_opts *opts, struct ocitree_error **err);

/* Raise the read-ahead of the FUSE mount on mountpoint to 1 MiB (its
 * device's read_ahead_kb in sysfs) unless it is higher already: root only,
 * failures ignored.  Waits for the mount's INIT to be answered: call it from
 * another process than the one serving, once that one is ready. */
void fs_raise_read_ahead(const char *mountpoint);

/* The mount options' chunk cache size in bytes (after fs_check_options). */
size_t fs_cache_bytes(const struct fs_opts *opts);

/* The upper directory format the -o xattrs= and whiteout= options ask for. */
int fs_upper_probe_opts(const struct fs_opts *opts, struct ocitree_upper_probe_opts *po, struct ocitree_error **err);

/* What a writable mount serves. */
struct fs_rw_setup {
	struct ocitree_upper *upper;                /* opened and locked; owned by the caller */
	struct ocitree_tree *tree;                  /* the image's merged tree; owned by the caller */
	struct ocitree_layer_index **layers;        /* the tree's layers; owned by the caller */
	size_t n_layers;
	struct ocitree_layer_index_opts index_opts; /* for layers added by a live commit --clear */
	const char *layout;                         /* absolute path of the layout */
	bool fresh;                                 /* the upper directory is new: give its root the image's */
};

/* Serve a writable mount (see fs_run for the life cycle).  Live commits come
 * in through the control socket in the work directory. */
int fs_run_rw(const struct fs_rw_setup *setup, const struct fs_opts *opts, struct ocitree_error **err);

/* Serve a layer store (fs-store.c) as a containers/storage additional layer
 * store (see fs_run for the life cycle).  The mount is read-write for the
 * kernel, so that containers/storage's "use" file and rmdir reach the
 * driver, which refuses every change. */
struct ocitree_layer_store;
int fs_run_store(struct ocitree_layer_store *store, const struct fs_opts *opts, struct ocitree_error **err);

#endif
