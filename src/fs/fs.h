/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FUSE driver: serves a merged tree (read-only) over the libfuse3
 * low-level API.  fs_run() mounts, optionally daemonizes, runs the
 * multithreaded loop until unmount or SIGTERM/SIGINT/SIGHUP, and unmounts.
 *
 * The writable mount (an upper directory with copy-up, issue 5) will sit in
 * front of the same tree: the lower side of every operation stays here.
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
	"       ro                          read-only (always; rw is refused)\n"                                   \
	"       debug                       log every FUSE request to stderr (implies -f)\n"                       \
	"       allow_other, allow_root     let other users (or root) see the mount\n"                             \
	"       default_permissions         kernel permission checks on the image's modes (the default;\n"         \
	"                                   no_default_permissions turns it off)\n"                                \
	"       fsname=NAME                 the mount's source, as findmnt shows it (default LAYOUT:TAG)\n"        \
	"       subtype=NAME                the file system subtype (default ocitree: fuse.ocitree)\n"              \
	"       threads=N                   FUSE worker threads (default 4)\n"                                     \
	"       cache_size=MIB              decompressed chunk cache, in MiB (default 32)\n"                      \
	"       timeout=SECONDS             entry and attribute cache timeout (default 86400)\n"                   \
	"       other libfuse options (max_read=N, ...) are passed on\n"

struct fs_opts {
	const char *mountpoint;
	bool foreground;
	const char *default_fsname;
	char **mount_opts; /* the -o arguments as given, NULL-terminated; may be NULL */
};

/* Parse opts->mount_opts now (so that usage errors come before any work);
 * returns 0 or -1 with an OCITREE_ERROR_USAGE error. */
int fs_check_options(const struct fs_opts *opts, struct ocitree_error **err);

/* Serve tree on opts->mountpoint until it is unmounted.  chunks is the cache
 * the layer indexes read through; its size is set from -o cache_size before
 * the first read.  In daemon mode this returns in the parent once the mount
 * is in place (0), and the child serves and then _exit()s; errors before
 * that point are returned to the caller. */
int fs_run(struct ocitree_tree *tree, const struct fs_opts *opts, struct ocitree_error **err);

/* The mount options' chunk cache size in bytes (after fs_check_options). */
size_t fs_cache_bytes(const struct fs_opts *opts);

#endif
