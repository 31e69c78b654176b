/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Running a process in a container on a mounted image (`ocitree run`, and
 * each step of `ocitree build`): what the container is.  The library
 * decides, the front end acts:
 *
 *   - the runtime-spec config.json for runc or crun, from the image config
 *     and the caller's overrides (ocitree_container_config()): the image's
 *     process as umoci describes it, in the run environment of a builder
 *     (the host's network, /etc/resolv.conf, /proc, a read-only /sys, a
 *     minimal /dev, the caller's bind mounts);
 *   - the id mappings of the user namespace an unprivileged caller runs in
 *     (ocitree_subid_ranges(), ocitree_container_idmap()).
 *
 * Mounting, starting the runtime and writing the maps (newuidmap) are the
 * front end's (src/cli/run.h).
 */
#ifndef OCITREE_CONTAINER_H
#define OCITREE_CONTAINER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ocitree/bundle.h"
#include "ocitree/error.h"
#include "ocitree/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A bind mount into the container. */
struct ocitree_container_bind {
	const char *source;      /* a path on the host (made absolute by the caller) */
	const char *destination; /* an absolute path in the container */
	bool readonly;
};

/* Parse "SRC:DST[:ro|:rw]" (the --bind form).  The strings of *out point
 * into *buf, which the caller frees.  A malformed value (empty parts, a
 * relative DST, another option) is an OCITREE_ERROR_USAGE error. */
int ocitree_container_bind_parse(const char *spec, struct ocitree_container_bind *out, char **buf,
                                 struct ocitree_error **err);

/* What runs, and how; every field may be left zero for the image's own. */
struct ocitree_container_spec {
	/* the process; NULL: the image's entrypoint followed by its cmd
	 * ("sh" when the image has neither).  NULL-terminated. */
	const char *const *argv;
	/* NAME=VALUE entries set over the image's environment, in order;
	 * NULL-terminated, may be NULL */
	const char *const *env;
	const char *cwd;  /* NULL: the image's working directory, else "/" */
	const char *user; /* "user[:group]", names or ids; NULL: the image's */
	const struct ocitree_container_bind *binds;
	size_t n_binds;
	bool terminal; /* give the process a terminal (stdin is one) */
	/* the caller runs the runtime inside a user namespace it made (an
	 * unprivileged user): the container gets no namespace of its own for
	 * users, /sys is a read-only bind of the host's (a sysfs needs a
	 * network namespace of the user namespace's own), no cgroup mount and
	 * no device rules (the runtime bind-mounts the devices) */
	bool userns;
	const char *hostname; /* NULL: "ocitree" */
};

/* The runtime-spec config.json that runs s in a container whose root is
 * rootfs (an absolute path: the mounted image, read and written in place).
 * c is the image config; the user is looked up in rootfs's /etc/passwd
 * and /etc/group as runc does, and a name that is not there is an
 * OCITREE_ERROR_INVALID error naming it.
 *
 * The container: namespaces for pids, IPC, the hostname and mounts, the
 * host's network; /proc, /dev (a tmpfs the runtime fills with null, zero,
 * full, random, urandom and tty), /dev/pts, /dev/shm, /dev/mqueue, /sys
 * read-only, /etc/resolv.conf of the host read-only, then s->binds in
 * order; PATH set to the usual default unless the image sets one,
 * HOME=/root unless the image or the user's passwd entry gives another.
 * Root gets the capabilities a container engine gives by default (chown,
 * dac_override, fowner, fsetid, kill, mknod, net_bind_service, net_raw,
 * setfcap, setgid, setpcap, setuid, sys_chroot, audit_write); another user
 * none but in its bounding set.  The image's volumes are left to the image
 * (what is written there is a change like any other).  Returns the file's
 * text, which the caller frees; or NULL. */
char *ocitree_container_config(const struct ocitree_config *c, const char *rootfs,
                               const struct ocitree_container_spec *s, struct ocitree_error **err);

/* The subordinate id ranges of a user in an /etc/subuid or /etc/subgid
 * style file (lines "NAME_OR_ID:START:COUNT"): those whose first field is
 * name (may be NULL) or id, in file order, as maps whose container_id is
 * left 0.  A missing file is no range (0, *n = 0).  *out is the caller's
 * to free. */
int ocitree_subid_ranges(const char *path, const char *name, uint32_t id, struct ocitree_idmap **out, size_t *n,
                         struct ocitree_error **err);

/* The mapping of the user namespace an unprivileged user runs containers
 * in: container id 0 is host_id, the user's own, and the ranges follow it
 * one after the other from container id 1, so that every id a package
 * manager switches to (up to the ranges' total) is mapped.  Ranges that
 * contain host_id, or that would overflow the id space, are left out.
 * Returns the number of maps written to out (at most 1 + n_ranges). */
size_t ocitree_container_idmap(uint32_t host_id, const struct ocitree_idmap *ranges, size_t n_ranges,
                               struct ocitree_idmap *out);

#ifdef __cplusplus
}
#endif
#endif
