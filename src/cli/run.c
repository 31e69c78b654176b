/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The processes of `ocitree run` and `ocitree build` (see run.h): the user
 * namespace of an unprivileged user, the child that serves a writable
 * mount, the OCI runtime that runs a container on it.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cjson-util.h"
#include "fs.h"
#include "run.h"

/* ---- helpers ---- */

static int wait_child(pid_t pid, int *status)
{
	while (waitpid(pid, status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

/* The exit status of a child as a shell reports it. */
static int exit_code(int status)
{
	return WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}

/* Run argv and wait: its exit code, or -1 when it could not be run. */
static int spawn_wait(char *const *argv)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	if (wait_child(pid, &st) < 0)
		return -1;
	return exit_code(st);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	int r = type == FTW_DP ? rmdir(path) : unlink(path);
	if (r < 0 && errno != ENOENT)
		log_warn("cannot remove '%s': %s", path, strerror(errno));
	return 0;
}

void run_remove_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return;
	/* FTW_MOUNT: never into a mount left behind */
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* ---- the user namespace ---- */

static unsigned long userns_ids; /* 0: not in a namespace of ours */

bool run_in_userns(void)
{
	return userns_ids != 0;
}

unsigned long run_userns_ids(void)
{
	return userns_ids;
}

static int write_file(const char *path, const char *text, struct ocitree_error **err)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write_all(fd, text, strlen(text)) < 0)
		return ocitree_error_set(err, errno, "write '%s'", path);
	return 0;
}

/* newuidmap PID 0 ID 1 1 START COUNT ... */
static char **idmap_argv(const char *prog, pid_t pid, const struct ocitree_idmap *m, size_t n)
{
	char **v = xcalloc(2 + 3 * n + 1, sizeof(char *));
	size_t k = 0;
	v[k++] = xstrdup(prog);
	v[k++] = xasprintf("%ld", (long)pid);
	for (size_t i = 0; i < n; i++) {
		v[k++] = xasprintf("%" PRIu32, m[i].container_id);
		v[k++] = xasprintf("%" PRIu32, m[i].host_id);
		v[k++] = xasprintf("%" PRIu32, m[i].size);
	}
	return v;
}

int run_userns_enter(struct ocitree_error **err)
{
	uid_t uid = geteuid();
	gid_t gid = getegid();
	struct passwd *pw = getpwuid(uid);
	_cleanup_free_ char *user = pw ? xstrdup(pw->pw_name) : NULL;
	_cleanup_free_ struct ocitree_idmap *subu = NULL, *subg = NULL;
	size_t n_subu = 0, n_subg = 0;
	/* newgidmap looks the user up in /etc/subgid by the user's name */
	if (ocitree_subid_ranges("/etc/subuid", user, (uint32_t)uid, &subu, &n_subu, err) < 0 ||
	    ocitree_subid_ranges("/etc/subgid", user, (uint32_t)uid, &subg, &n_subg, err) < 0)
		return -1;
	_cleanup_free_ struct ocitree_idmap *umap = xcalloc(n_subu + 1, sizeof(*umap));
	_cleanup_free_ struct ocitree_idmap *gmap = xcalloc(n_subg + 1, sizeof(*gmap));
	size_t n_umap = ocitree_container_idmap((uint32_t)uid, subu, n_subu, umap);
	size_t n_gmap = ocitree_container_idmap((uint32_t)gid, subg, n_subg, gmap);
	_cleanup_free_ char *newuidmap = NULL, *newgidmap = NULL;
	bool helpers = false;
	if (n_umap > 1 && n_gmap > 1) {
		newuidmap = find_program("newuidmap");
		newgidmap = find_program("newgidmap");
		helpers = newuidmap && newgidmap;
		if (!helpers)
			log_warn("newuidmap or newgidmap not found (package uidmap): only your own id is mapped in the "
			         "container");
	} else if (n_umap > 1 || n_gmap > 1) {
		log_warn("'%s' has a range in only one of /etc/subuid and /etc/subgid: only your own id is mapped",
		         user ? user : "?");
	}

	/* newuidmap must run outside the namespace, on this process: a child
	 * waits until it exists */
	int go[2];
	if (pipe2(go, O_CLOEXEC) < 0)
		return ocitree_error_set(err, errno, "pipe");
	pid_t self = getpid(), helper = -1;
	if (helpers) {
		helper = fork();
		if (helper < 0) {
			close(go[0]);
			close(go[1]);
			return ocitree_error_set(err, errno, "fork");
		}
		if (helper == 0) {
			close(go[1]);
			char c;
			if (read(go[0], &c, 1) != 1)
				_exit(1);
			char **uv = idmap_argv(newuidmap, self, umap, n_umap);
			char **gv = idmap_argv(newgidmap, self, gmap, n_gmap);
			int r = spawn_wait(uv);
			if (r == 0)
				r = spawn_wait(gv) == 0 ? 0 : 2;
			_exit(r == 0 ? 0 : r == 2 ? 2 : 1);
		}
	}
	close(go[0]);
	int r = unshare(CLONE_NEWUSER | CLONE_NEWNS);
	int saved = errno;
	if (r < 0) {
		close(go[1]);
		if (helper > 0) {
			int st;
			wait_child(helper, &st);
		}
		return ocitree_error_set(err, saved,
		                         "cannot make a user namespace (unprivileged containers need them)");
	}
	if (helpers) {
		int st = 0;
		bool sent = write(go[1], "x", 1) == 1;
		close(go[1]);
		if (!sent || wait_child(helper, &st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "%s failed to map the ids of /etc/%s",
			                          WIFEXITED(st) && WEXITSTATUS(st) == 2 ? "newgidmap" : "newuidmap",
			                          WIFEXITED(st) && WEXITSTATUS(st) == 2 ? "subgid" : "subuid");
		/* the host's groups are not mapped: drop them */
		if (setgroups(0, NULL) < 0)
			log_debug("setgroups in the user namespace: %s", strerror(errno));
		userns_ids = 1;
		for (size_t i = 1; i < n_umap; i++)
			userns_ids += umap[i].size;
	} else {
		close(go[1]);
		_cleanup_free_ char *um = xasprintf("0 %lu 1\n", (unsigned long)uid);
		_cleanup_free_ char *gm = xasprintf("0 %lu 1\n", (unsigned long)gid);
		if (write_file("/proc/self/uid_map", um, err) < 0 ||
		    write_file("/proc/self/setgroups", "deny", err) < 0 ||
		    write_file("/proc/self/gid_map", gm, err) < 0)
			return -1;
		userns_ids = 1;
	}
	/* nothing mounted here may reach the host's mount namespace */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return ocitree_error_set(err, errno, "make the mounts of the user namespace private");
	return 0;
}

/* ---- the mount ---- */

struct run_mount {
	pid_t pid;
	char *mountpoint;
};

struct ready_pipe {
	int fd;
};

static void mount_ready(void *data)
{
	struct ready_pipe *p = data;
	if (p->fd >= 0) {
		(void)!write(p->fd, "R", 1);
		close(p->fd);
		p->fd = -1;
	}
}

/* The child that serves the mount; never returns. */
static void serve_mount(const struct run_mount_options *o, int fd)
{
	/* the terminal's ^C is for the container; the mount goes when the
	 * parent unmounts it, or when the parent dies */
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	struct ready_pipe rp = {.fd = fd};
	char allow_other[] = "allow_other";
	char *opts[] = {allow_other, NULL};
	struct cli_mount_request req = {.layout = o->layout,
	                                .tag = o->tag,
	                                .platform = o->platform,
	                                .cache_dir = o->cache_dir,
	                                .foreground = true,
	                                .mount_opts = opts,
	                                .upper = o->upper,
	                                .workdir = o->workdir,
	                                .ready = mount_ready,
	                                .ready_data = &rp};
	struct ocitree_error *e = NULL;
	int r = cli_mount_image(&req, o->mountpoint, &e);
	if (r < 0 && rp.fd >= 0) {
		const char *msg = e ? e->msg : "failed";
		(void)!write(rp.fd, "E", 1);
		(void)!write(rp.fd, msg, strlen(msg));
	}
	ocitree_error_free(e);
	fflush(NULL);
	_exit(r < 0 ? 1 : 0);
}

struct run_mount *run_mount_start(const struct run_mount_options *o, struct ocitree_error **err)
{
	if (mkdir(o->upper, 0755) < 0 && errno != EEXIST)
		return ocitree_error_set(err, errno, "create upper directory '%s'", o->upper), NULL;
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return ocitree_error_set(err, errno, "pipe"), NULL;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return ocitree_error_set(err, errno, "fork"), NULL;
	}
	if (pid == 0) {
		close(p[0]);
		serve_mount(o, p[1]);
	}
	close(p[1]);
	struct buf b = BUF_INIT;
	char chunk[512];
	ssize_t n;
	while ((n = read(p[0], chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		buf_append(&b, chunk, (size_t)n);
		if (b.len && b.data[0] == 'R')
			break;
	}
	close(p[0]);
	if (b.len && b.data[0] == 'R') {
		buf_free(&b);
		fs_raise_read_ahead(o->mountpoint);
		struct run_mount *m = xcalloc(1, sizeof(*m));
		m->pid = pid;
		m->mountpoint = xstrdup(o->mountpoint);
		return m;
	}
	int st;
	wait_child(pid, &st);
	if (b.len > 1 && b.data[0] == 'E') {
		buf_append(&b, "", 1);
		ocitree_error_setk(err, OCITREE_ERROR_FAILED, "%s", b.data + 1);
	} else {
		ocitree_error_setk(err, OCITREE_ERROR_FAILED, "mount '%s:%s': the mount process ended (status %d)",
		                   o->layout, o->tag, exit_code(st));
	}
	buf_free(&b);
	return NULL;
}

int run_mount_stop(struct run_mount *m, struct ocitree_error **err)
{
	if (!m)
		return 0;
	int r = 0;
	/* a process of the container may linger a moment after the runtime
	 * returned; then detach rather than leave the mount behind */
	int tries = 0;
	while (umount2(m->mountpoint, 0) < 0) {
		if (errno == EBUSY && ++tries < 40) {
			usleep(50000);
			continue;
		}
		if (errno == EBUSY) {
			log_warn("'%s' is still busy: detached", m->mountpoint);
			umount2(m->mountpoint, MNT_DETACH);
		} else if (errno != EINVAL && errno != ENOENT) {
			r = ocitree_error_set(err, errno, "unmount '%s'", m->mountpoint);
			kill(m->pid, SIGTERM);
		}
		break;
	}
	int st = 0;
	if (wait_child(m->pid, &st) < 0 && r == 0)
		r = ocitree_error_set(err, errno, "wait for the mount process");
	else if (r == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
		r = ocitree_error_setk(err, OCITREE_ERROR_FAILED, "the process that served '%s' failed (status %d)",
		                       m->mountpoint, exit_code(st));
	free(m->mountpoint);
	free(m);
	return r;
}

/* ---- the container ---- */

/* A mount target the runtime is about to make in the image because the
 * image lacks it (/proc, /sys, /etc/resolv.conf of a minimal image): it
 * would end up in the upper directory, and in a commit, as a change the
 * command never made. */
struct made_target {
	char *path;  /* relative to the root: the destination */
	size_t keep; /* the length of its prefix that exists in the image */
	/* that prefix's directory before the run: making the target in it
	 * changed its times, which a commit would carry as a change of the
	 * command's */
	struct timespec times[2];
	char **names; /* its entries, sorted */
};

/* Open the directory at the first n bytes of rel under root, never
 * following a symlink; -1 when it is not a plain directory path. */
static int open_dir_nofollow(int root, const char *rel, size_t n)
{
	int fd = fcntl(root, F_DUPFD_CLOEXEC, 3);
	_cleanup_free_ char *copy = xstrndup(rel, n);
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c && fd >= 0; c = strtok_r(NULL, "/", &save)) {
		int next = openat(fd, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		fd = next;
	}
	return fd;
}

/* Which destinations of config's mounts are missing under rootfs. */
static struct made_target *missing_targets(const char *rootfs, const char *config, size_t *n)
{
	*n = 0;
	_cleanup_json_ cJSON *spec = json_parse_object(config, strlen(config), "config.json", NULL);
	_cleanup_close_ int root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (!spec || root < 0)
		return NULL;
	struct made_target *t = NULL;
	const cJSON *m;
	cJSON_ArrayForEach (m, json_get(spec, "mounts")) {
		const cJSON *d = json_get(m, "destination");
		if (!cJSON_IsString(d))
			continue;
		const char *rel = d->valuestring;
		while (*rel == '/')
			rel++;
		/* walk down to the first component that is missing; a symlink on
		 * the way means the runtime resolves it, not us: left alone */
		int fd = fcntl(root, F_DUPFD_CLOEXEC, 3);
		size_t at = 0;
		bool missing = false;
		while (fd >= 0 && rel[at]) {
			size_t len = strcspn(rel + at, "/");
			_cleanup_free_ char *c = xstrndup(rel + at, len);
			struct stat st;
			if (fstatat(fd, c, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				missing = errno == ENOENT;
				break;
			}
			if (!S_ISDIR(st.st_mode))
				break;
			int next = openat(fd, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			close(fd);
			fd = next;
			at += len;
			while (rel[at] == '/')
				at++;
		}
		struct stat anchor;
		char **names = fd >= 0 && fstat(fd, &anchor) == 0 ? dir_names_sorted(fd) : NULL;
		if (fd >= 0)
			close(fd);
		if (!missing) {
			strv_free(names);
			continue;
		}
		t = xrealloc(t, (*n + 1) * sizeof(*t));
		t[*n] = (struct made_target){.path = xstrdup(rel), .keep = at, .names = names};
		if (names) {
			t[*n].times[0] = anchor.st_atim;
			t[*n].times[1] = anchor.st_mtim;
		}
		(*n)++;
	}
	return t;
}

/* Remove what the runtime made for the targets, deepest first, as long as
 * it is what the runtime makes: empty directories, an empty file last. */
static void remove_made_targets(const char *rootfs, struct made_target *t, size_t n)
{
	_cleanup_close_ int root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	for (size_t i = n; i-- > 0;) {
		char *p = t[i].path;
		size_t len = strlen(p);
		while (root >= 0 && len > t[i].keep) {
			while (len > 0 && p[len - 1] == '/')
				len--;
			size_t slash = len;
			while (slash > 0 && p[slash - 1] != '/')
				slash--;
			_cleanup_free_ char *name = xstrndup(p + slash, len - slash);
			_cleanup_close_ int dir = open_dir_nofollow(root, p, slash);
			struct stat st;
			if (dir < 0 || fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				break;
			int r = S_ISDIR(st.st_mode) ? unlinkat(dir, name, AT_REMOVEDIR)
			        : S_ISREG(st.st_mode) && st.st_size == 0 && len == strlen(p) ? unlinkat(dir, name, 0)
			                                                                     : -1;
			if (r < 0)
				break;
			len = slash;
		}
	}
	/* the directories the targets were made in get their times back when
	 * they hold what they held before: the run changed nothing there */
	for (size_t i = 0; root >= 0 && i < n; i++) {
		if (!t[i].names)
			continue;
		_cleanup_close_ int dir = open_dir_nofollow(root, t[i].path, t[i].keep);
		_cleanup_strv_ char **now = dir >= 0 ? dir_names_sorted(dir) : NULL;
		if (now && strv_equal(now, t[i].names)) {
			_cleanup_free_ char *self = xasprintf("/proc/self/fd/%d", dir);
			/* through the mount, so the daemon records them as it records
			 * any change of times */
			if (utimensat(AT_FDCWD, self, t[i].times, 0) < 0)
				log_debug("restore the times of '/%.*s': %s", (int)t[i].keep, t[i].path, strerror(errno));
		}
	}
	for (size_t i = 0; i < n; i++) {
		free(t[i].path);
		strv_free(t[i].names);
	}
	free(t);
}

char *run_find_runtime(const char *runtime, struct ocitree_error **err)
{
	if (runtime) {
		char *p = find_program(runtime);
		if (!p)
			ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND, "OCI runtime '%s' not found%s", runtime,
			                   strchr(runtime, '/') ? "" : " in PATH");
		return p;
	}
	char *p = find_program("runc");
	if (!p)
		p = find_program("crun");
	if (!p)
		ocitree_error_setk(
		    err, OCITREE_ERROR_NOT_FOUND,
		    "no OCI runtime: neither runc nor crun is in PATH (install one, or use --runtime PATH)");
	return p;
}

static volatile sig_atomic_t runtime_pid;

static void pass_on(int sig)
{
	if (runtime_pid > 0)
		kill((pid_t)runtime_pid, sig);
}

int run_container(const char *mountpoint, const struct ocitree_config *c, const struct ocitree_container_spec *spec,
                  const struct run_options *o, int *status, struct ocitree_error **err)
{
	static const struct run_options defaults = {0};
	static unsigned counter;
	if (!o)
		o = &defaults;
	*status = 1;
	_cleanup_free_ char *runtime = run_find_runtime(o->runtime, err);
	if (!runtime)
		return -1;
	_cleanup_free_ char *config = ocitree_container_config(c, mountpoint, spec, err);
	if (!config)
		return -1;
	_cleanup_free_ char *tmp = NULL;
	const char *dir = o->state_dir;
	if (!dir) {
		const char *t = getenv("TMPDIR");
		tmp = xasprintf("%s/ocitree-runtime.XXXXXX", t && *t ? t : "/tmp");
		if (!mkdtemp(tmp))
			return ocitree_error_set(err, errno, "create a directory in '%s'", t && *t ? t : "/tmp");
		dir = tmp;
	}
	int r = -1;
	_cleanup_free_ char *bundle = xasprintf("%s/bundle", dir);
	_cleanup_free_ char *state = xasprintf("%s/state", dir);
	_cleanup_free_ char *cfg_path = xasprintf("%s/config.json", bundle);
	_cleanup_free_ char *id = xasprintf("ocitree-%ld-%u", (long)getpid(), counter++);
	_cleanup_close_ int fd = -1;
	if ((mkdir(bundle, 0700) < 0 && errno != EEXIST) || (mkdir(state, 0700) < 0 && errno != EEXIST)) {
		ocitree_error_set(err, errno, "create the runtime's directories in '%s'", dir);
		goto out;
	}
	fd = open(cfg_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write_all(fd, config, strlen(config)) < 0) {
		ocitree_error_set(err, errno, "write '%s'", cfg_path);
		goto out;
	}
	close(fd);
	fd = -1;
	log_debug("running %s with the bundle %s", runtime, bundle);
	size_t n_made = 0;
	struct made_target *made = o->keep_mount_targets ? NULL : missing_targets(mountpoint, config, &n_made);

	struct sigaction ign = {.sa_handler = SIG_IGN}, fwd = {.sa_handler = pass_on}, old_int, old_quit, old_term,
	                 old_hup;
	sigemptyset(&ign.sa_mask);
	sigemptyset(&fwd.sa_mask);
	sigaction(SIGINT, &ign, &old_int);
	sigaction(SIGQUIT, &ign, &old_quit);
	sigaction(SIGTERM, &fwd, &old_term);
	sigaction(SIGHUP, &fwd, &old_hup);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGQUIT, &old_quit, NULL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		execl(runtime, runtime, "--root", state, "run", "--bundle", bundle, id, (char *)NULL);
		fprintf(stderr, "ocitree: cannot run '%s': %s\n", runtime, strerror(errno));
		_exit(127);
	}
	int saved = errno;
	if (pid > 0) {
		runtime_pid = pid;
		int st;
		if (wait_child(pid, &st) == 0) {
			*status = exit_code(st);
			r = 0;
		} else {
			ocitree_error_set(err, errno, "wait for '%s'", runtime);
		}
		runtime_pid = 0;
	} else {
		ocitree_error_set(err, saved, "fork");
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGQUIT, &old_quit, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	remove_made_targets(mountpoint, made, n_made);
out:
	if (tmp)
		run_remove_tree(tmp);
	return r;
}
