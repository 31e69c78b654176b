/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FUSE session both drivers (fs.c, fs-rw.c) run in: the -o options of
 * ocitree itself and what goes on to libfuse, mounting, daemonizing, the
 * multithreaded loop, unmounting; the reply to a read, and the replies
 * the read-only drivers (fs.c, fs-store.c) build the same way: open,
 * directory entries of a tree, xattr values.
 */
#include "config.h"

#include <stddef.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <syslog.h>

#include "common.h"
#include "fs-session.h"

enum { KEY_KEEP = 1 };

/* -o options for ocitree itself, documented in FS_MOUNT_OPTIONS_HELP */
static const struct fuse_opt fs_opt_table[] = {
    {"threads=%u", offsetof(struct fs_config, threads), 0},
    {"cache_size=%u", offsetof(struct fs_config, cache_mib), 0},
    {"timeout=%lf", offsetof(struct fs_config, timeout), 0},
    {"debug", offsetof(struct fs_config, debug), 1},
    FUSE_OPT_KEY("debug", KEY_KEEP),
    {"rw", offsetof(struct fs_config, rw), 1},
    FUSE_OPT_KEY("ro", FUSE_OPT_KEY_DISCARD),
    {"no_default_permissions", offsetof(struct fs_config, no_default_permissions), 1},
    FUSE_OPT_KEY("default_permissions", FUSE_OPT_KEY_DISCARD),
    {"allow_other", offsetof(struct fs_config, allow_other), 1},
    FUSE_OPT_KEY("allow_other", KEY_KEEP),
    {"no_allow_other", offsetof(struct fs_config, no_allow_other), 1},
    {"allow_root", offsetof(struct fs_config, allow_other), 1},
    FUSE_OPT_KEY("allow_root", KEY_KEEP),
    {"xattrs=%s", offsetof(struct fs_config, xattrs), 0},
    {"whiteout=%s", offsetof(struct fs_config, whiteout), 0},
    FUSE_OPT_END,
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	return 1; /* keep: KEY_KEEP, unknown options and non-options go to libfuse */
}

static char *escape_opt_value(const char *s)
{
	struct buf b = BUF_INIT;
	buf_reserve(&b, strlen(s) * 2 + 1);
	for (; *s; s++) {
		if (*s == ',' || *s == '\\')
			buf_append(&b, "\\", 1);
		buf_append(&b, s, 1);
	}
	if (!b.data)
		buf_append(&b, "", 0);
	return buf_steal(&b);
}

void fs_config_clear(struct fs_config *cfg)
{
	free(cfg->xattrs);
	free(cfg->whiteout);
	cfg->xattrs = cfg->whiteout = NULL;
}

/* Parse the -o options into cfg and the argument vector for libfuse. */
int fs_parse_options(const struct fs_opts *opts, struct fs_config *cfg, struct fuse_args *args,
                     struct ocitree_error **err)
{
	/* a worker per CPU, at least 2: more workers than CPUs only add
	 * wakeups (find over a fresh mount of node on 2 CPUs, 7 runs each:
	 * 492 ms with 2 workers, 558 ms with 4, 781 ms with 1) */
	static long ncpu; /* a read of /sys/devices/system/cpu/online each time */
	if (!ncpu)
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned workers = ncpu < 2 ? 2 : ncpu > 16 ? 16 : (unsigned)ncpu;
	*cfg = (struct fs_config){.threads = workers, .cache_mib = 32, .timeout = 86400};
	struct fuse_args in = FUSE_ARGS_INIT(0, NULL);
	fuse_opt_add_arg(&in, "ocitree");
	_cleanup_free_ char *fsname = escape_opt_value(opts->default_fsname ? opts->default_fsname : "ocitree");
	_cleanup_free_ char *defaults = xasprintf("subtype=ocitree,fsname=%s", fsname);
	fuse_opt_add_arg(&in, "-o");
	fuse_opt_add_arg(&in, defaults);
	for (char **o = opts->mount_opts; o && *o; o++) {
		fuse_opt_add_arg(&in, "-o");
		fuse_opt_add_arg(&in, *o);
	}
	*args = (struct fuse_args)FUSE_ARGS_INIT(0, NULL);
	int r = fuse_opt_parse(&in, cfg, fs_opt_table, opt_proc);
	if (r < 0) {
		fuse_opt_free_args(&in);
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid mount options");
	}
	*args = in;
	const char *bad = NULL;
	if (cfg->rw && !opts->writable)
		bad = "-o rw: the mount is read-only (a writable mount needs an upper directory, --upper)";
	else if (cfg->threads < 1 || cfg->threads > 256)
		bad = "-o threads: use 1 to 256";
	else if (!(cfg->timeout >= 0))
		bad = "-o timeout: must be a number of seconds";
	else if ((cfg->xattrs || cfg->whiteout) && !opts->writable)
		bad = "-o xattrs= and -o whiteout= are options of a writable mount (--upper)";
	else if (cfg->xattrs && strcmp(cfg->xattrs, "trusted") != 0 && strcmp(cfg->xattrs, "user") != 0 &&
	         strcmp(cfg->xattrs, "none") != 0)
		bad = "-o xattrs: use trusted, user or none";
	else if (cfg->whiteout && strcmp(cfg->whiteout, "chardev") != 0 && strcmp(cfg->whiteout, "file") != 0)
		bad = "-o whiteout: use chardev or file";
	else if (cfg->allow_other && cfg->no_allow_other)
		bad = "-o no_allow_other contradicts -o allow_other and allow_root";
	if (bad) {
		fuse_opt_free_args(args);
		fs_config_clear(cfg);
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "%s", bad);
	}
	/* root mounts an image for every uid in it (a container's, a
	 * chroot's): the kernel checks permissions on the image's modes */
	if (geteuid() == 0 && !cfg->allow_other && !cfg->no_allow_other) {
		cfg->allow_other = 1;
		fuse_opt_add_arg(args, "-o");
		fuse_opt_add_arg(args, "allow_other");
	}
	/* a writable mount whose owners are virtual (an unprivileged user)
	 * is the mounting user's alone: every request is theirs, made as if by
	 * root, and the daemon checks nothing but the execute bit; with
	 * allow_other the kernel checks permissions as usual */
	bool perms = !cfg->no_default_permissions && !(opts->writable && opts->virtual_owners && !cfg->allow_other);
	fuse_opt_add_arg(args, "-o");
	fuse_opt_add_arg(args, opts->writable ? (perms ? "rw,default_permissions" : "rw")
	                                      : (perms ? "ro,default_permissions" : "ro"));
	return 0;
}

/* The upper directory format cfg's -o xattrs= and whiteout= ask for. */
static void probe_opts(const struct fs_config *cfg, struct ocitree_upper_probe_opts *po)
{
	po->force_xattrs = !cfg->xattrs                          ? -1
	                   : strcmp(cfg->xattrs, "trusted") == 0 ? OCITREE_UPPER_XATTR_TRUSTED
	                   : strcmp(cfg->xattrs, "user") == 0    ? OCITREE_UPPER_XATTR_USER
	                                                         : OCITREE_UPPER_XATTR_NONE;
	po->force_whiteout = !cfg->whiteout                       ? -1
	                     : strcmp(cfg->whiteout, "file") == 0 ? OCITREE_UPPER_WHITEOUT_FILE
	                                                          : OCITREE_UPPER_WHITEOUT_CHARDEV;
}

int fs_upper_probe_opts(const struct fs_opts *opts, struct ocitree_upper_probe_opts *po, struct ocitree_error **err)
{
	if (opts->checked) {
		*po = opts->probe;
		return 0;
	}
	struct fs_config cfg;
	struct fuse_args args;
	if (fs_parse_options(opts, &cfg, &args, err) < 0)
		return -1;
	fuse_opt_free_args(&args);
	probe_opts(&cfg, po);
	fs_config_clear(&cfg);
	return 0;
}

/* ---------------------------------------------------------------- session */

int fs_check_options(struct fs_opts *opts, struct ocitree_error **err)
{
	struct fs_config cfg;
	struct fuse_args args;
	if (fs_parse_options(opts, &cfg, &args, err) < 0)
		return -1;
	/* what the set-up asks before the session parses them again */
	opts->checked = true;
	opts->debug = cfg.debug != 0;
	opts->cache_bytes = (size_t)cfg.cache_mib << 20;
	probe_opts(&cfg, &opts->probe);
	fs_config_clear(&cfg);
	/* let libfuse reject what it does not know now, before any work */
	static const struct fuse_lowlevel_ops no_ops = {0};
	struct fuse_session *se = fuse_session_new(&args, &no_ops, sizeof(no_ops), NULL);
	fuse_opt_free_args(&args);
	if (!se)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
		                          "invalid mount options (see 'ocitree mount --help')");
	fuse_session_destroy(se);
	return 0;
}

size_t fs_cache_bytes(const struct fs_opts *opts)
{
	if (opts->checked)
		return opts->cache_bytes;
	struct fs_config cfg;
	struct fuse_args args;
	if (fs_parse_options(opts, &cfg, &args, NULL) < 0)
		return 32u << 20;
	fuse_opt_free_args(&args);
	fs_config_clear(&cfg);
	return (size_t)cfg.cache_mib << 20;
}

/* What the kernel may read ahead of a reader, and the most a READ asks for
 * (libfuse asks for 256 pages a request) */
#define READ_AHEAD (1u << 20)

/* The kernel takes the lower of the read-ahead a new FUSE mount's device
 * has (128 KiB) and the one the daemon asks for at INIT: a big file comes
 * in 128-256 KiB READs, each a round trip.  The device's read_ahead_kb can
 * be raised once INIT is answered, by root alone; files opened from then
 * on read ahead READ_AHEAD, in READs of up to 1 MiB.  Not by the process
 * that serves: a request to the mount waits for INIT, which its loop
 * answers, so the process that waits for the mount to be ready does it
 * (fs_fork_daemon() below, `ocitree run`'s parent in
 * src/cli/run.c). */
void fs_raise_read_ahead(const char *mountpoint)
{
	if (geteuid() != 0)
		return; /* sysfs is root's: a user's mount keeps the kernel's value */
	/* the mount's root (GETATTR: after INIT) */
	_cleanup_free_ char *mp = realpath(mountpoint, NULL);
	if (!mp)
		return;
	_cleanup_free_ char *parent = xstrdup(mp);
	char *slash = strrchr(parent, '/');
	if (!slash || slash == parent)
		return; /* over /: leave it */
	*slash = '\0';
	struct stat st, pst;
	/* another device than its parent's, or the mount is gone already and
	 * this is the directory under it, whose device is not ours to tune */
	if (stat(mp, &st) < 0 || stat(parent, &pst) < 0 || st.st_dev == pst.st_dev)
		return;
	_cleanup_free_ char *path = xasprintf("/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev), minor(st.st_dev));
	_cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC);
	char cur[32];
	ssize_t n = fd >= 0 ? pread(fd, cur, sizeof(cur) - 1, 0) : -1;
	if (n <= 0) {
		log_debug("read-ahead stays as it is: %s: %s", path, strerror(n < 0 ? errno : EIO));
		return; /* root of a user namespace: EACCES */
	}
	cur[n] = '\0';
	if (strtoul(cur, NULL, 10) >= READ_AHEAD / 1024)
		return; /* an administrator's higher value stays */
	char val[32];
	int len = snprintf(val, sizeof(val), "%u\n", READ_AHEAD / 1024);
	if (pwrite(fd, val, (size_t)len, 0) != len)
		log_debug("read-ahead stays as it is: %s: %s", path, strerror(errno));
}

/* What a daemon leaves behind: the session of its terminal, the working
 * directory (which would stay busy), the standard streams. */
static void detach(void)
{
	setsid();
	(void)!chdir("/");
	int null = open("/dev/null", O_RDWR); /* no O_CLOEXEC: it may become 0-2 */
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
}

/* Fork with a pipe from the child to its parent: returns the child's pid
 * in the parent (*fd the pipe's read end), 0 in the child (*fd the write
 * end), or -1 if it cannot. */
static pid_t fork_with_pipe(int *fd, struct ocitree_error **err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return ocitree_error_set(err, errno, "pipe");
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		return ocitree_error_set(err, e, "fork");
	}
	close(pid > 0 ? p[1] : p[0]);
	*fd = pid > 0 ? p[0] : p[1];
	return pid;
}

/* In the parent: has the child written that it serves (before it ended)? */
static bool child_serves(int fd)
{
	char c;
	ssize_t n;
	while ((n = read(fd, &c, 1)) < 0 && errno == EINTR)
		;
	return n == 1;
}

bool fs_runs_in_foreground(const struct fs_opts *opts)
{
	if (opts->foreground || (opts->checked && opts->debug))
		return true;
	if (opts->checked)
		return false;
	struct fs_config cfg;
	struct fuse_args args;
	if (fs_parse_options(opts, &cfg, &args, NULL) < 0)
		return false;
	fuse_opt_free_args(&args);
	fs_config_clear(&cfg);
	return cfg.debug != 0;
}

int fs_fork_daemon(struct fs_opts *opts, struct ocitree_error **err)
{
	int fd = -1;
	pid_t pid = fork_with_pipe(&fd, err);
	if (pid < 0)
		return -1;
	if (pid == 0) {
		opts->forked = true;
		opts->ready_fd = fd;
		return 0;
	}
	if (child_serves(fd)) {
		fs_raise_read_ahead(opts->mountpoint);
		_exit(0);
	}
	/* the child ended before serving, and has said why on stderr */
	int st;
	pid_t w;
	while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	if (w < 0)
		_exit(1);
	_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0));
}

static void log_to_syslog(enum ocitree_log_level level, const char *msg, void *userdata)
{
	static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
	syslog(prio[level], "%s", msg);
}

int fs_session_run(const struct fuse_lowlevel_ops *ops, size_t ops_size, void *userdata, struct fuse_args *args,
                   const struct fs_config *cfg, const struct fs_opts *opts, const struct fs_hooks *hooks,
                   struct ocitree_error **err)
{
	bool foreground = opts->foreground || cfg->debug;
	int ret = -1;
	struct fuse_loop_config *loop = NULL;
	struct fuse_session *se = fuse_session_new(args, ops, ops_size, userdata);
	if (!se)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
		                          "invalid mount options (see 'ocitree mount --help')");
	if (fuse_set_signal_handlers(se) != 0) {
		ocitree_error_set(err, errno, "install signal handlers");
		goto out_session;
	}
	if (fuse_session_mount(se, opts->mountpoint) != 0) {
		/* libfuse (or fusermount3) has said why on stderr */
		ocitree_error_setk(err, OCITREE_ERROR_FAILED, "cannot mount on '%s'", opts->mountpoint);
		goto out_signals;
	}
	/* a daemon was forked before the set-up (fs_fork_daemon): without
	 * that fork the process serves where it is, as in the foreground */
	int ready_fd = -1;
	bool daemon = !foreground && opts->forked;
	if (daemon) {
		detach();
		ready_fd = opts->ready_fd;
		openlog("ocitree", LOG_PID, LOG_DAEMON);
		ocitree_log_set_handler(log_to_syslog, NULL);
	} else {
		(void)!chdir("/");
	}
	/* in the process that serves, whatever forked before: start them now */
	if (hooks && hooks->started && hooks->started(userdata, se) < 0)
		ocitree_log(OCITREE_LOG_ERROR, "could not start the control thread: live commit is not available");
	if (ready_fd >= 0) {
		(void)!write(ready_fd, "R", 1);
		close(ready_fd);
	}
	if (opts->ready)
		opts->ready(opts->ready_data);
	loop = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(loop, 0);
	fuse_loop_cfg_set_max_threads(loop, cfg->threads);
	fuse_loop_cfg_set_idle_threads(loop, cfg->threads);
	if (fuse_session_loop_mt(se, loop) != 0)
		ocitree_log(OCITREE_LOG_ERROR, "the FUSE session ended with an error");
	ret = 0;
	fuse_loop_cfg_destroy(loop);
	if (hooks && hooks->stopping)
		hooks->stopping(userdata);
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
	return ret;
}

void fs_init_conn(struct fuse_conn_info *conn)
{
	/* zero-copy replies to reads */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	/* readdirplus for every readdir: one round trip fills the dcache */
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	/* a symlink's target never changes (a new one is a new node) */
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/* file data changes only through the mount: never drop the page
	 * cache because attributes changed */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	conn->max_readahead = READ_AHEAD;
}

int fs_reply_data(fuse_req_t req, const struct ocitree_tree_data *d)
{
	if (d->fd >= 0) {
		/* the data is in a plain file: let the kernel splice it */
		struct fuse_bufvec bv = FUSE_BUFVEC_INIT(d->size);
		bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
		bv.buf[0].fd = d->fd;
		bv.buf[0].pos = (off_t)d->pos;
		return fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
	}
	if (!d->n_iov)
		return fuse_reply_buf(req, NULL, 0);
	return fuse_reply_iov(req, d->iov, (int)d->n_iov);
}

void fs_forget_none(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fuse_reply_none(req);
}

void fs_forget_multi_none(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	fuse_reply_none(req);
}

void fs_release_none(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

void fs_reply_open_readonly(fuse_req_t req, struct fuse_file_info *fi, const struct stat *st, bool no_open)
{
	int e = !st                                                            ? ENOENT
	        : S_ISDIR(st->st_mode)                                         ? EISDIR
	        : (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC) ? EROFS
	        : no_open                                                      ? ENOSYS
	                                                                       : 0;
	if (e) {
		fuse_reply_err(req, e);
		return;
	}
	/* the file never changes, and there is nothing to write back */
	fi->keep_cache = 1;
	fi->noflush = 1;
	fuse_reply_open(req, fi);
}

const char *fs_tree_dirent(const struct ocitree_tree *t, uint32_t dir, off_t pos, uint32_t *child)
{
	if (pos < 2) {
		*child = dir; /* for "..", the kernel fills in the real parent */
		return pos == 0 ? "." : "..";
	}
	return ocitree_tree_dir_entry(t, dir, (uint32_t)(pos - 2), child);
}

bool fs_add_dirent(fuse_req_t req, char *buf, size_t size, size_t *used, const char *name,
		   const struct fuse_entry_param *e, off_t next, bool plus)
{
	size_t r = plus ? fuse_add_direntry_plus(req, buf + *used, size - *used, name, e, next)
	                : fuse_add_direntry(req, buf + *used, size - *used, name, &e->attr, next);
	if (r > size - *used)
		return false;
	*used += r;
	return true;
}

void fs_reply_xattr(fuse_req_t req, size_t size, const void *value, size_t len)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, value, len);
}
