/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Running processes in containers on a writable mount of an image: the
 * steps `ocitree run` strings together, and `ocitree build` for each image
 * of a recipe (run.c).  What the container is (its config.json, the id
 * mappings) is the library's (ocitree/container.h); this starts and stops
 * processes.
 *
 * A build does, for one image:
 *
 *     if (geteuid() != 0 && run_userns_enter(err) < 0)   // once, first
 *             fail;
 *     struct run_mount *m = run_mount_start(&(struct run_mount_options){
 *             .layout = L, .tag = base, .upper = U, .mountpoint = MP}, err);
 *     for each step:
 *             spec = {.argv = {"/bin/sh", "-c", step}, .env, .binds, .userns = run_in_userns()};
 *             run_container(MP, image_config, &spec, &(struct run_options){0}, &status, err);
 *     run_mount_stop(m, err);
 *     ocitree_upper_commit(U, ...);                        // ocitree/upper.h
 *
 * Everything runs as root: the real one, or the root of the user namespace
 * run_userns_enter() made, in which the mount is made too, so that every
 * uid of the container can use it.
 */
#ifndef OCITREE_CLI_RUN_H
#define OCITREE_CLI_RUN_H

#include <stdbool.h>
#include <sys/types.h>

#include "cli.h"
#include "ocitree/container.h"

/* Make this process (an unprivileged user) root of a new user namespace
 * with a mount namespace of its own, where it can mount FUSE file systems
 * that every process of the namespace may use.  Ids: the user's own is
 * root; with a range in /etc/subuid and /etc/subgid, newuidmap and
 * newgidmap map it too from id 1 on (ocitree_container_idmap()), so that
 * package managers that switch users work; without one (or without those
 * programs, which is logged) only root exists.  Must be called before the
 * process has threads.  Mounts made afterwards vanish with the last
 * process of the namespace.  Errors: the kernel refuses user namespaces,
 * newuidmap fails. */
int run_userns_enter(struct ocitree_error **err);

/* Whether run_userns_enter() made this process's namespace (then
 * ocitree_container_spec.userns must be true). */
bool run_in_userns(void);

/* How many ids the namespace maps (1 when only root). */
unsigned long run_userns_ids(void);

/* A writable mount of an image served by a child process. */
struct run_mount_options {
	const char *layout;     /* the layout's path */
	const char *tag;        /* the image */
	const char *upper;      /* the upper directory (see ocitree-upper(5)); made when missing */
	const char *workdir;    /* its work directory; NULL: UPPER.work */
	const char *cache_dir;  /* layer indexes; NULL: the default (ocitree-cache(5)) */
	const char *mountpoint; /* an empty directory */
	const struct platform_opt *platform; /* of an index tag; NULL: the host's */
};
struct run_mount;

/* Mount the image writable at o->mountpoint, for every uid (allow_other),
 * in a child process that serves it; returns once the mount is in place
 * (building the layer indexes first when they are not cached, with
 * progress on a terminal).  The serving process ignores the terminal's
 * signals and ends when this process dies.  Errors: those of `ocitree
 * mount` (a busy mountpoint, an upper directory of another image, ...). */
struct run_mount *run_mount_start(const struct run_mount_options *o, struct ocitree_error **err);

/* Unmount (the containers on it must have ended) and wait for the serving
 * process; frees m, accepts NULL.  The upper directory is then complete
 * and unlocked: ready for ocitree_upper_commit(). */
int run_mount_stop(struct run_mount *m, struct ocitree_error **err);

/* How a container is started. */
struct run_options {
	/* "runc", "crun" or a path; NULL: runc, else crun when runc is
	 * missing.  A runtime that cannot be found is an error naming it. */
	const char *runtime;
	/* where its bundle and state go; NULL: a temporary directory, removed
	 * afterwards */
	const char *state_dir;
	/* leave the mount targets the runtime made because the image lacked
	 * them (/proc, /dev, /sys, /etc/resolv.conf, a bind's destination) in
	 * the tree; by default they are removed once the container ended (when
	 * still empty), so that they are no change of the command's, as
	 * buildah does */
	bool keep_mount_targets;
};

/* The runtime run_container() would use (a path, to free), or NULL with an
 * error: to refuse early, before any mount. */
char *run_find_runtime(const char *runtime, struct ocitree_error **err);

/* Run spec in a container whose root is mountpoint (absolute; a mount of
 * run_mount_start()), c being the image's config, and wait for it.  The
 * process inherits stdin, stdout and stderr (a terminal of its own when
 * spec->terminal).  *status is its exit status, 128+N when killed by
 * signal N (as the runtime reports it; a runtime that fails to start the
 * process says why on stderr and exits non-zero too).  SIGINT and SIGQUIT
 * are left to the container meanwhile; SIGTERM and SIGHUP are passed on to
 * the runtime.  Returns -1 when the runtime could not be started at all. */
int run_container(const char *mountpoint, const struct ocitree_config *c, const struct ocitree_container_spec *spec,
                  const struct run_options *o, int *status, struct ocitree_error **err);

/* Remove a directory tree (an upper directory, a state directory), not
 * crossing into mounts.  Errors are logged, not returned. */
void run_remove_tree(const char *path);

#endif
