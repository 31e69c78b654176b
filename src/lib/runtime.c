/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image config -> runtime-spec config.json, field for field what umoci 0.4
 * generates (so that bundles are interchangeable and runc starts them);
 * and the same spec turned into the container `ocitree run` and `ocitree
 * build` run a process in, on a mounted image (ocitree/container.h).
 */
#include "config.h"

#include <fcntl.h>
#include <sys/syscall.h>
#ifdef HAVE_LINUX_OPENAT2_H
#include <linux/openat2.h>
#endif

#include "bundle-internal.h"
#include "json.h"
#include "ocitree/container.h"

#define MAX_ID 2147483647

/* Open a file of the rootfs for reading, resolving symlinks as if the rootfs
 * were "/" (or refusing them where openat2 is missing). */
static int open_in_root(const char *rootfs, const char *path)
{
	_cleanup_close_ int rfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rfd < 0)
		return -1;
#if defined(HAVE_LINUX_OPENAT2_H) && defined(SYS_openat2)
	struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY,
			       .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
	int fd = (int)syscall(SYS_openat2, rfd, path, &how, sizeof(how));
	if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
		return fd;
#endif
	int cur = fcntl(rfd, F_DUPFD_CLOEXEC, 3);
	_cleanup_free_ char *copy = xstrdup(path);
	char *save = NULL;
	char *c = strtok_r(copy, "/", &save);
	while (c && cur >= 0) {
		char *next = strtok_r(NULL, "/", &save);
		int fd2 = openat(cur, c, (next ? O_PATH | O_DIRECTORY : O_RDONLY | O_NOCTTY) | O_NOFOLLOW | O_CLOEXEC);
		close(cur);
		cur = fd2;
		c = next;
	}
	return cur;
}

static FILE *fopen_in_root(const char *rootfs, const char *path)
{
	if (!rootfs)
		return NULL;
	int fd = open_in_root(rootfs, path);
	if (fd < 0)
		return NULL;
	FILE *f = fdopen(fd, "r");
	if (!f)
		close(fd);
	return f;
}

static bool parse_id(const char *s, long *out)
{
	char *end = NULL;
	if (!*s)
		return false;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

struct exec_user {
	long uid, gid;
	long *sgids;
	size_t n_sgids;
	char *home;
};

/* Split a colon-separated line into at most n fields. */
static size_t fields(char *line, char **f, size_t n)
{
	size_t k = 0;
	line[strcspn(line, "\n")] = '\0';
	while (k < n) {
		f[k++] = line;
		char *c = strchr(line, ':');
		if (!c)
			break;
		*c = '\0';
		line = c + 1;
	}
	return k;
}

/* The user and groups a process runs as, the way runc's GetExecUser finds
 * them: "user[:group]", names looked up in the rootfs, numbers taken as
 * they are; the user's supplementary groups when no group is given. */
static int exec_user(const char *spec, const char *rootfs, struct exec_user *u, struct ocitree_error **err)
{
	memset(u, 0, sizeof(*u));
	_cleanup_free_ char *copy = xstrdup(spec ? spec : "");
	char *colon = strchr(copy, ':');
	const char *user_arg = copy, *group_arg = "";
	if (colon) {
		*colon = '\0';
		group_arg = colon + 1;
	}
	long uid_arg = 0, gid_arg = 0;
	bool uid_num = parse_id(user_arg, &uid_arg), gid_num = parse_id(group_arg, &gid_arg);

	_cleanup_free_ char *matched = NULL;
	char line[4096];
	_cleanup_fclose_ FILE *pw = fopen_in_root(rootfs, "etc/passwd");
	while (pw && fgets(line, sizeof(line), pw)) {
		char *f[7];
		size_t nf = fields(line, f, 7);
		if (line[0] == '#' || nf < 4)
			continue;
		long id, gid;
		if (!parse_id(f[2], &id) || !parse_id(f[3], &gid))
			continue;
		bool match = !*user_arg ? id == u->uid : uid_num ? id == uid_arg : strcmp(f[0], user_arg) == 0;
		if (!match)
			continue;
		matched = xstrdup(f[0]);
		u->uid = id;
		u->gid = gid;
		free(u->home);
		u->home = xstrdup(nf > 5 ? f[5] : "");
		break;
	}
	if (!matched && *user_arg) {
		if (!uid_num)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "cannot find user '%s' in the image",
						  user_arg);
		if (uid_arg < 0 || uid_arg > MAX_ID)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "user id %ld out of range", uid_arg);
		u->uid = uid_arg;
	}
	if (*group_arg || matched) {
		_cleanup_fclose_ FILE *gr = fopen_in_root(rootfs, "etc/group");
		bool found = false;
		while (gr && fgets(line, sizeof(line), gr)) {
			char *f[4];
			if (line[0] == '#' || fields(line, f, 4) < 3)
				continue;
			long gid;
			if (!parse_id(f[2], &gid))
				continue;
			if (*group_arg) {
				if (gid_num ? gid == gid_arg : strcmp(f[0], group_arg) == 0) {
					u->gid = gid;
					found = true;
					break;
				}
				continue;
			}
			char *save = NULL;
			for (char *m = f[3] ? strtok_r(f[3], ",", &save) : NULL; m; m = strtok_r(NULL, ",", &save)) {
				if (strcmp(m, matched) == 0) {
					u->sgids = xrealloc(u->sgids, (u->n_sgids + 1) * sizeof(long));
					u->sgids[u->n_sgids++] = gid;
					break;
				}
			}
		}
		if (*group_arg && !found) {
			if (!gid_num)
				return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "cannot find group '%s' in the image",
							  group_arg);
			if (gid_arg < 0 || gid_arg > MAX_ID)
				return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "group id %ld out of range", gid_arg);
			u->gid = gid_arg;
		}
	}
	return 0;
}

static cJSON *strings(const char *const *v)
{
	cJSON *a = json_array();
	for (; *v; v++)
		json_append(a, json_string(*v));
	return a;
}

static void add_mount(cJSON *mounts, const char *dest, const char *type, const char *src, const char *const *opts)
{
	cJSON *m = json_object();
	json_add(m, "destination", json_string(dest));
	json_add(m, "type", json_string(type));
	json_add(m, "source", json_string(src));
	if (opts && *opts)
		json_add(m, "options", strings(opts));
	json_append(mounts, m);
}

/* Bind mounts of the host's /sys (where sysfs cannot be mounted: in a user
 * namespace) and of read-only host files. */
static const char *const o_sys_bind[] = {"rbind", "nosuid", "noexec", "nodev", "ro", NULL};
static const char *const o_bind_ro[] = {"rbind", "ro", NULL};

/* The kernel file systems every container gets, as umoci 0.4 writes them:
 * /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, and /sys with its cgroup
 * unless in a user namespace (userns: the caller binds the host's /sys
 * where it wants it).  One list for both config.json writers, so that an
 * unpacked bundle and a container of ocitree run see the same devices. */
static void add_system_mounts(cJSON *mounts, bool userns)
{
	static const char *const o_dev[] = {"nosuid", "strictatime", "mode=755", "size=65536k", NULL};
	static const char *const o_pts[] = {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5", NULL};
	/* gid 5 (tty) may not be mapped in a user namespace */
	static const char *const o_pts_userns[] = {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", NULL};
	static const char *const o_shm[] = {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k", NULL};
	static const char *const o_mq[] = {"nosuid", "noexec", "nodev", NULL};
	static const char *const o_sys[] = {"nosuid", "noexec", "nodev", "ro", NULL};
	static const char *const o_cg[] = {"nosuid", "noexec", "nodev", "relatime", "ro", NULL};
	add_mount(mounts, "/proc", "proc", "proc", NULL);
	add_mount(mounts, "/dev", "tmpfs", "tmpfs", o_dev);
	add_mount(mounts, "/dev/pts", "devpts", "devpts", userns ? o_pts_userns : o_pts);
	add_mount(mounts, "/dev/shm", "tmpfs", "shm", o_shm);
	add_mount(mounts, "/dev/mqueue", "mqueue", "mqueue", o_mq);
	if (!userns) {
		add_mount(mounts, "/sys", "sysfs", "sysfs", o_sys);
		add_mount(mounts, "/sys/fs/cgroup", "cgroup", "cgroup", o_cg);
	}
}

/* Replace NAME= in env or append it. */
static void set_env(cJSON *env, const char *entry)
{
	size_t nl = strcspn(entry, "=");
	cJSON *e;
	cJSON_ArrayForEach(e, env)
	{
		if (strncmp(e->valuestring, entry, nl) == 0 && e->valuestring[nl] == '=') {
			cJSON_SetValuestring(e, entry);
			return;
		}
	}
	json_append(env, json_string(entry));
}

/* The runtime spec of c as umoci generates it, as a JSON tree. */
static cJSON *umoci_spec(const struct ocitree_config *c, const char *rootfs, const struct ocitree_map_options *m,
			 struct ocitree_error **err)
{
	static const struct ocitree_map_options none = {0};
	if (!m)
		m = &none;
	if (c->os && strcmp(c->os, "linux") != 0)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "unsupported os '%s' in the image config", c->os),
		       NULL;
	const struct ocitree_exec_config *x = &c->config;
	struct exec_user eu;
	struct ocitree_error *uerr = NULL;
	if (exec_user(x->user, rootfs, &eu, &uerr) < 0) {
		free(eu.sgids);
		free(eu.home);
		memset(&eu, 0, sizeof(eu));
		if (rootfs) {
			ocitree_error_prefix(&uerr, "config.User '%s'", x->user ? x->user : "");
			if (err)
				*err = uerr;
			else
				ocitree_error_free(uerr);
			return NULL;
		}
		/* with no rootfs to look names up in, umoci runs the process as
		 * root:root and says so (oci/config/convert/runtime.go) */
		log_warn("could not parse user spec '%s' without a rootfs: defaulting to root:root (%s)",
			 x->user ? x->user : "", uerr->msg);
		ocitree_error_free(uerr);
	}

	_cleanup_json_ cJSON *spec = json_object();
	json_add(spec, "ociVersion", json_string("1.0.0"));

	cJSON *proc = json_object();
	json_add(proc, "terminal", json_bool(true));
	cJSON *user = json_object();
	json_add(user, "uid", json_int64(eu.uid));
	json_add(user, "gid", json_int64(eu.gid));
	if (eu.n_sgids && !m->rootless) {
		cJSON *g = json_array();
		for (size_t i = 0; i < eu.n_sgids; i++)
			json_append(g, json_int64(eu.sgids[i]));
		json_add(user, "additionalGids", g);
	}
	json_add(proc, "user", user);
	cJSON *args = json_array();
	for (char **p = x->entrypoint; p && *p; p++)
		json_append(args, json_string(*p));
	for (char **p = x->cmd; p && *p; p++)
		json_append(args, json_string(*p));
	if (cJSON_GetArraySize(args) == 0)
		json_append(args, json_string("sh"));
	json_add(proc, "args", args);
	cJSON *env = json_array();
	json_append(env, json_string("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
	json_append(env, json_string("TERM=xterm"));
	for (char **p = x->env; p && *p; p++) {
		const char *eq = strchr(*p, '=');
		if (!eq || eq == *p) {
			free(eu.sgids);
			free(eu.home);
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "invalid environment variable '%s' in the image config",
						  *p),
			       NULL;
		}
		set_env(env, *p);
	}
	if (eu.home && *eu.home) {
		_cleanup_free_ char *h = xasprintf("HOME=%s", eu.home);
		set_env(env, h);
	}
	json_add(proc, "env", env);
	json_add(proc, "cwd", json_string(x->working_dir && *x->working_dir ? x->working_dir : "/"));
	static const char *const caps[] = {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", NULL};
	cJSON *cap = json_object();
	json_add(cap, "bounding", strings(caps));
	json_add(cap, "effective", strings(caps));
	json_add(cap, "inheritable", strings(caps));
	json_add(cap, "permitted", strings(caps));
	json_add(cap, "ambient", strings(caps));
	json_add(proc, "capabilities", cap);
	cJSON *rl = json_object();
	json_add(rl, "type", json_string("RLIMIT_NOFILE"));
	json_add(rl, "hard", json_int64(1024));
	json_add(rl, "soft", json_int64(1024));
	cJSON *rls = json_array();
	json_append(rls, rl);
	json_add(proc, "rlimits", rls);
	json_add(proc, "noNewPrivileges", json_bool(true));
	json_add(spec, "process", proc);
	free(eu.sgids);
	free(eu.home);

	cJSON *root = json_object();
	json_add(root, "path", json_string("rootfs"));
	json_add(spec, "root", root);
	/* umoci's name, so that bundles of either tool look the same */
	json_add(spec, "hostname", json_string("umoci-default"));

	cJSON *mounts = json_array();
	static const char *const o_vol[] = {"rw", "nosuid", "nodev", "noexec", "relatime", NULL};
	add_system_mounts(mounts, m->rootless);
	_cleanup_free_ char **vols = xcalloc(x->volumes.n + 1, sizeof(char *));
	for (size_t i = 0; i < x->volumes.n; i++)
		vols[i] = x->volumes.keys[i];
	qsort(vols, x->volumes.n, sizeof(char *), strcmp_p);
	for (size_t i = 0; i < x->volumes.n; i++)
		if (!m->rootless || !str_has_prefix(vols[i], "/sys"))
			add_mount(mounts, vols[i], "tmpfs", "none", o_vol);
	if (m->rootless) {
		add_mount(mounts, "/sys", "bind", "/sys", o_sys_bind);
		add_mount(mounts, "/etc/resolv.conf", "bind", "/etc/resolv.conf", o_bind_ro);
	}
	json_add(spec, "mounts", mounts);

	/* umoci 0.6 (oci/config/convert/runtime.go, MutateRuntimeSpec): the
	 * image-spec annotations first, an empty one left out, then the
	 * labels over them; the keys come out sorted as Go sorts a map */
	_cleanup_(ocitree_strmap_clear) struct ocitree_strmap ann = {0};
	_cleanup_free_ char *created = c->created ? ocitree_time_canonical(c->created) : NULL;
	_cleanup_free_ char **ports = xcalloc(x->exposed_ports.n + 1, sizeof(char *));
	for (size_t i = 0; i < x->exposed_ports.n; i++)
		ports[i] = x->exposed_ports.keys[i];
	qsort(ports, x->exposed_ports.n, sizeof(char *), strcmp_p);
	_cleanup_buf_ struct buf pj = BUF_INIT;
	buf_puts(&pj, "");
	for (size_t i = 0; i < x->exposed_ports.n; i++) {
		if (i)
			buf_puts(&pj, ",");
		buf_puts(&pj, ports[i]);
	}
	const char *auto_ann[][2] = {
		{"org.opencontainers.image.os", c->os ? c->os : "linux"},
		{"org.opencontainers.image.architecture", c->architecture},
		{"org.opencontainers.image.variant", c->variant},
		{"org.opencontainers.image.author", c->author},
		/* Go formats a missing time as its zero time */
		{"org.opencontainers.image.created", created ? created : c->created ? c->created : "0001-01-01T00:00:00Z"},
		{"org.opencontainers.image.stopSignal", x->stop_signal},
		{"org.opencontainers.image.exposedPorts", pj.data},
	};
	for (size_t i = 0; i < ARRAY_SIZE(auto_ann); i++)
		if (auto_ann[i][1] && *auto_ann[i][1])
			ocitree_strmap_set(&ann, auto_ann[i][0], auto_ann[i][1]);
	for (size_t i = 0; i < x->labels.n; i++)
		ocitree_strmap_set(&ann, x->labels.keys[i], x->labels.values[i]);
	json_add(spec, "annotations", json_strmap(&ann));

	cJSON *lnx = json_object();
	if (m->n_uid_map || m->n_gid_map || m->rootless) {
		json_add(lnx, "uidMappings", idmap_json(m->uid_map, m->n_uid_map));
		json_add(lnx, "gidMappings", idmap_json(m->gid_map, m->n_gid_map));
	}
	if (!m->rootless) {
		cJSON *res = json_object();
		cJSON *devs = json_array();
		cJSON *d = json_object();
		json_add(d, "allow", json_bool(false));
		json_add(d, "access", json_string("rwm"));
		json_append(devs, d);
		json_add(res, "devices", devs);
		json_add(lnx, "resources", res);
	}
	cJSON *ns = json_array();
	static const char *const nss[] = {"pid", "network", "ipc", "uts", "mount"};
	for (size_t i = 0; i < ARRAY_SIZE(nss); i++) {
		if (m->rootless && strcmp(nss[i], "network") == 0)
			continue;
		cJSON *o = json_object();
		json_add(o, "type", json_string(nss[i]));
		json_append(ns, o);
	}
	if (m->rootless || m->n_uid_map || m->n_gid_map) {
		cJSON *o = json_object();
		json_add(o, "type", json_string("user"));
		json_append(ns, o);
	}
	json_add(lnx, "namespaces", ns);
	static const char *const masked[] = {"/proc/kcore",	  "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
					     "/proc/sched_debug", "/sys/firmware",	 "/proc/scsi",	     NULL};
	static const char *const ro[] = {"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
					 NULL};
	json_add(lnx, "maskedPaths", strings(masked));
	json_add(lnx, "readonlyPaths", strings(ro));
	json_add(spec, "linux", lnx);
	return steal_pointer(&spec);
}

OCITREE_EXPORT char *ocitree_runtime_config(const struct ocitree_config *c, const char *rootfs,
					    const struct ocitree_map_options *m, struct ocitree_error **err)
{
	_cleanup_json_ cJSON *spec = umoci_spec(c, rootfs, m, err);
	if (!spec)
		return NULL;
	/* indented with tabs, as umoci's encoder does */
	return json_encode(spec, true);
}

/* ---- the container of ocitree run and build ---- */

static bool env_has(const cJSON *env, const char *name)
{
	size_t nl = strlen(name);
	const cJSON *e;
	cJSON_ArrayForEach(e, env)
	{
		if (strncmp(e->valuestring, name, nl) == 0 && e->valuestring[nl] == '=')
			return true;
	}
	return false;
}

static cJSON *container_mounts(const struct ocitree_container_spec *s)
{
	static const char *const o_bind_rw[] = {"rbind", "rw", NULL};
	cJSON *mounts = json_array();
	add_system_mounts(mounts, s->userns);
	if (s->userns)
		add_mount(mounts, "/sys", "bind", "/sys", o_sys_bind);
	/* the host's network, so the host's name servers */
	add_mount(mounts, "/etc/resolv.conf", "bind", "/etc/resolv.conf", o_bind_ro);
	for (size_t i = 0; i < s->n_binds; i++)
		add_mount(mounts, s->binds[i].destination, "bind", s->binds[i].source,
			  s->binds[i].readonly ? o_bind_ro : o_bind_rw);
	return mounts;
}

OCITREE_EXPORT char *ocitree_container_config(const struct ocitree_config *c, const char *rootfs,
					      const struct ocitree_container_spec *s, struct ocitree_error **err)
{
	static const struct ocitree_container_spec defaults = {0};
	if (!s)
		s = &defaults;
	if (!rootfs || rootfs[0] != '/')
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "the container's root '%s' is not an absolute path",
					  rootfs ? rootfs : ""),
		       NULL;
	for (const char *const *e = s->env; e && *e; e++)
		if (!strchr(*e, '=') || **e == '=')
			return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid environment variable '%s': use NAME=VALUE",
						  *e),
			       NULL;
	for (size_t i = 0; i < s->n_binds; i++)
		if (!s->binds[i].source || !s->binds[i].destination || s->binds[i].destination[0] != '/')
			return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "bind mount %zu: needs a source and an absolute destination",
						  i + 1),
			       NULL;
	if (s->cwd && s->cwd[0] != '/')
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "working directory '%s' is not an absolute path", s->cwd),
		       NULL;
	/* umoci's process (user, environment, cwd), looked up on the mount */
	struct ocitree_config uc = *c;
	if (s->user)
		uc.config.user = (char *)s->user;
	static const struct ocitree_map_options none = {0};
	_cleanup_json_ cJSON *spec = umoci_spec(&uc, rootfs, &none, err);
	if (!spec)
		return NULL;

	cJSON *proc = cJSON_GetObjectItemCaseSensitive(spec, "process");
	json_set(proc, "terminal", json_bool(s->terminal));
	if (s->argv && s->argv[0]) {
		cJSON *args = json_array();
		for (const char *const *a = s->argv; *a; a++)
			json_append(args, json_string(*a));
		json_set(proc, "args", args);
	}
	cJSON *env = cJSON_GetObjectItemCaseSensitive(proc, "env");
	if (!env_has(env, "HOME"))
		json_append(env, json_string("HOME=/root"));
	for (const char *const *e = s->env; e && *e; e++)
		set_env(env, *e);
	if (s->cwd)
		json_set(proc, "cwd", json_string(s->cwd));
	/* what a container engine gives root by default: enough for package
	 * managers (chown, setuid to their sandbox users, mknod); another user
	 * has them in its bounding set only, as under podman */
	static const char *const caps[] = {"CAP_AUDIT_WRITE", "CAP_CHOWN",	     "CAP_DAC_OVERRIDE", "CAP_FOWNER",
					   "CAP_FSETID",      "CAP_KILL",	     "CAP_MKNOD",	 "CAP_NET_BIND_SERVICE",
					   "CAP_NET_RAW",     "CAP_SETFCAP",	     "CAP_SETGID",	 "CAP_SETPCAP",
					   "CAP_SETUID",      "CAP_SYS_CHROOT",	     NULL};
	static const char *const no_caps[] = {NULL};
	const cJSON *uid = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(proc, "user"), "uid");
	/* ids are raw number text (json_int64) */
	bool root = cJSON_IsRaw(uid) && strcmp(uid->valuestring, "0") == 0;
	cJSON *cap = json_object();
	json_add(cap, "bounding", strings(caps));
	json_add(cap, "effective", strings(root ? caps : no_caps));
	json_add(cap, "inheritable", strings(no_caps));
	json_add(cap, "permitted", strings(root ? caps : no_caps));
	json_add(cap, "ambient", strings(no_caps));
	json_set(proc, "capabilities", cap);
	/* setuid programs (su, sudo) work as in any container */
	json_set(proc, "noNewPrivileges", json_bool(false));

	cJSON *root_obj = json_object();
	json_add(root_obj, "path", json_string(rootfs));
	json_add(root_obj, "readonly", json_bool(false));
	json_set(spec, "root", root_obj);
	json_set(spec, "hostname", json_string(s->hostname ? s->hostname : "ocitree"));
	json_set(spec, "mounts", container_mounts(s));

	cJSON *lnx = cJSON_GetObjectItemCaseSensitive(spec, "linux");
	cJSON_DeleteItemFromObjectCaseSensitive(lnx, "uidMappings");
	cJSON_DeleteItemFromObjectCaseSensitive(lnx, "gidMappings");
	/* a runtime in a user namespace cannot set up device rules: it
	 * bind-mounts the host's devices instead */
	if (s->userns)
		cJSON_DeleteItemFromObjectCaseSensitive(lnx, "resources");
	cJSON *ns = json_array();
	static const char *const nss[] = {"pid", "ipc", "uts", "mount"};
	for (size_t i = 0; i < ARRAY_SIZE(nss); i++) {
		cJSON *o = json_object();
		json_add(o, "type", json_string(nss[i]));
		json_append(ns, o);
	}
	json_set(lnx, "namespaces", ns);
	return json_encode(spec, true);
}
