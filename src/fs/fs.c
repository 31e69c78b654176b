/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FUSE driver (see fs.h).  Node ids are the tree's inode numbers
 * (FUSE_ROOT_ID is OCITREE_TREE_ROOT), so there is no lookup table and
 * forget has nothing to do.  The image is immutable: entries, attributes,
 * negative lookups, directory listings and file pages are cached by the
 * kernel for as long as it likes.
 */
#define FUSE_USE_VERSION 312
#include "config.h"

#include <fuse_lowlevel.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <syslog.h>

#include "fs-session.h"
#include "common.h"

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
	{"allow_root", offsetof(struct fs_config, allow_other), 1},
	FUSE_OPT_KEY("allow_root", KEY_KEEP),
	{"xattrs=%s", offsetof(struct fs_config, xattrs), 0},
	{"whiteout=%s", offsetof(struct fs_config, whiteout), 0},
	FUSE_OPT_END,
};

struct fs {
	/* immutable while the session runs */
	struct ocitree_tree *tree;
	double timeout;
	bool debug;
	uint64_t total_bytes;
	bool no_open; /* the kernel opens files and directories without asking us */
	/* lock: reported_eio; the first EIO of each run is logged, later ones
	 * counted, so a corrupt layer read in a loop cannot flood the log */
	pthread_mutex_t lock;
	unsigned long reported_eio;
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
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
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
	if (bad) {
		fuse_opt_free_args(args);
		fs_config_clear(cfg);
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "%s", bad);
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

int fs_upper_probe_opts(const struct fs_opts *opts, struct ocitree_upper_probe_opts *po, struct ocitree_error **err)
{
	struct fs_config cfg;
	struct fuse_args args;
	if (fs_parse_options(opts, &cfg, &args, err) < 0)
		return -1;
	fuse_opt_free_args(&args);
	po->force_xattrs = !cfg.xattrs ? -1
			   : strcmp(cfg.xattrs, "trusted") == 0 ? OCITREE_UPPER_XATTR_TRUSTED
			   : strcmp(cfg.xattrs, "user") == 0	 ? OCITREE_UPPER_XATTR_USER
								 : OCITREE_UPPER_XATTR_NONE;
	po->force_whiteout = !cfg.whiteout ? -1
			     : strcmp(cfg.whiteout, "file") == 0 ? OCITREE_UPPER_WHITEOUT_FILE
								 : OCITREE_UPPER_WHITEOUT_CHARDEV;
	fs_config_clear(&cfg);
	return 0;
}

/* ---------------------------------------------------------------- helpers */

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void fill_entry(struct fs *fs, uint32_t ino, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino;
	e->attr_timeout = fs->timeout;
	e->entry_timeout = fs->timeout;
	ocitree_tree_stat(fs->tree, ino, &e->attr);
}

static void report_eio(struct fs *fs, const char *what, uint64_t ino, struct ocitree_error *e)
{
	pthread_mutex_lock(&fs->lock);
	unsigned long n = fs->reported_eio++;
	pthread_mutex_unlock(&fs->lock);
	if (n < 10)
		ocitree_log(OCITREE_LOG_ERROR, "%s inode %ju: %s", what, (uintmax_t)ino, e ? e->msg : "I/O error");
}

/* ---------------------------------------------------------------- operations */

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	/* zero-copy reads of uncompressed data */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	/* readdirplus for every readdir: one round trip fills the dcache */
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/* the data never changes: never drop the page cache on attribute changes */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	conn->max_readahead = 1u << 20;
	/* zero-message open: answering ENOSYS to open and opendir makes the
	 * kernel open without asking, and keep the page cache and the cached
	 * directory listing (FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR), which is
	 * what an immutable tree wants; writes are refused by the ro mount */
	struct fs *fs = userdata;
	if ((conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) && (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT)) {
		conn->want |= FUSE_CAP_NO_OPEN_SUPPORT | FUSE_CAP_NO_OPENDIR_SUPPORT;
		fs->no_open = true;
	}
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;
	if (strlen(name) > 255) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	uint32_t ino = ocitree_tree_lookup(fs->tree, (uint32_t)parent, name);
	if (!ino) {
		/* a negative entry the kernel may cache as long as a positive one */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	fill_entry(fs, ino, &e);
	fuse_reply_entry(req, &e);
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	/* node ids are inode numbers of an immutable tree: nothing to release */
	fuse_reply_none(req);
}

static void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	fuse_reply_none(req);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct stat st;
	if (ocitree_tree_stat(fs->tree, (uint32_t)ino, &st) < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fuse_reply_attr(req, &st, fs->timeout);
}

static void fs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = ocitree_tree_entry(fs->tree, (uint32_t)ino, &l);
	if (!e || e->type != OCITREE_ENTRY_SYMLINK) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	fuse_reply_readlink(req, ocitree_layer_index_string(l, e->link));
}

static bool is_dir(struct fs *fs, fuse_ino_t ino)
{
	struct stat st;
	return ocitree_tree_stat(fs->tree, (uint32_t)ino, &st) == 0 && S_ISDIR(st.st_mode);
}

static void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	if (fs->no_open) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	if (!is_dir(fs, ino)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct fs *fs = fs_of(req);
	uint32_t n = ocitree_tree_dir_size(fs->tree, (uint32_t)ino);
	_cleanup_free_ char *buf = xmalloc(size);
	size_t used = 0;
	/* offsets: 0 start, 1 after ".", 2 after "..", 2 + i + 1 after child i */
	for (off_t pos = off; pos < (off_t)n + 2; pos++) {
		const char *name;
		uint32_t child;
		if (pos == 0) {
			name = ".";
			child = (uint32_t)ino;
		} else if (pos == 1) {
			name = "..";
			child = (uint32_t)ino; /* the kernel fills in the real parent */
		} else {
			name = ocitree_tree_dir_entry(fs->tree, (uint32_t)ino, (uint32_t)(pos - 2), &child);
			if (!name)
				break;
		}
		size_t r;
		if (plus) {
			struct fuse_entry_param e;
			fill_entry(fs, child, &e);
			r = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, pos + 1);
		} else {
			struct stat st = {0};
			ocitree_tree_stat(fs->tree, child, &st);
			r = fuse_add_direntry(req, buf + used, size - used, name, &st, pos + 1);
		}
		if (r > size - used)
			break;
		used += r;
	}
	fuse_reply_buf(req, buf, used);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, false);
}

static void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, true);
}

static void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct stat st;
	if (ocitree_tree_stat(fs->tree, (uint32_t)ino, &st) < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (fs->no_open) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->keep_cache = 1;
	fi->noflush = 1;
	fuse_reply_open(req, fi);
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

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	if (off < 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	_cleanup_error_ struct ocitree_error *err = NULL;
	struct ocitree_tree_data d;
	if (ocitree_tree_read(fs->tree, (uint32_t)ino, (uint64_t)off, size, &d, &err) < 0) {
		if (err->kind == OCITREE_ERROR_USAGE) {
			fuse_reply_err(req, err->errnum);
			return;
		}
		report_eio(fs, "read", ino, err);
		fuse_reply_err(req, EIO);
		return;
	}
	int r = fs_reply_data(req, &d);
	if (r < 0 && r != -ENOENT)
		report_eio(fs, "read", ino, NULL);
	ocitree_tree_data_release(&d);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs *fs = fs_of(req);
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = ocitree_tree_entry(fs->tree, (uint32_t)ino, &l);
	uint32_t cur = 0;
	const char *xn;
	const void *xv;
	size_t xl;
	while (e && ocitree_layer_entry_xattr_next(l, e, &cur, &xn, &xv, &xl)) {
		if (strcmp(xn, name) != 0)
			continue;
		if (size == 0)
			fuse_reply_xattr(req, xl);
		else if (size < xl)
			fuse_reply_err(req, ERANGE);
		else
			fuse_reply_buf(req, xv, xl);
		return;
	}
	fuse_reply_err(req, ENODATA);
}

static void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs *fs = fs_of(req);
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = ocitree_tree_entry(fs->tree, (uint32_t)ino, &l);
	_cleanup_buf_ struct buf b = BUF_INIT;
	uint32_t cur = 0;
	const char *xn;
	const void *xv;
	size_t xl;
	while (e && ocitree_layer_entry_xattr_next(l, e, &cur, &xn, &xv, &xl))
		buf_append(&b, xn, strlen(xn) + 1);
	if (size == 0)
		fuse_reply_xattr(req, b.len);
	else if (size < b.len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, b.data, b.len);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct statvfs sv = {0};
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = (fsblkcnt_t)((fs->total_bytes + 4095) / 4096);
	sv.f_files = ocitree_tree_inodes(fs->tree);
	sv.f_namemax = 255;
	sv.f_flag = ST_RDONLY;
	fuse_reply_statfs(req, &sv);
}

static void fs_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct fs *fs = fs_of(req);
	struct stat st;
	if (ocitree_tree_stat(fs->tree, (uint32_t)ino, &st) < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (mask & W_OK) {
		fuse_reply_err(req, EROFS);
		return;
	}
	/* without default_permissions the check is ours: owner, group or other
	 * bits; root may read anything and execute what someone may execute */
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	mode_t bits;
	if (ctx->uid == 0)
		bits = S_ISDIR(st.st_mode) || (st.st_mode & 0111) ? 7 : 6;
	else if (ctx->uid == st.st_uid)
		bits = (st.st_mode >> 6) & 7;
	else if (ctx->gid == st.st_gid)
		bits = (st.st_mode >> 3) & 7;
	else
		bits = st.st_mode & 7;
	if (((mask & R_OK) && !(bits & 4)) || ((mask & X_OK) && !(bits & 1)))
		fuse_reply_err(req, EACCES);
	else
		fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_init,
	.lookup = fs_lookup,
	.forget = fs_forget,
	.forget_multi = fs_forget_multi,
	.getattr = fs_getattr,
	.readlink = fs_readlink,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.readdirplus = fs_readdirplus,
	.releasedir = fs_releasedir,
	.open = fs_open,
	.read = fs_read,
	.release = fs_release,
	.getxattr = fs_getxattr,
	.listxattr = fs_listxattr,
	.statfs = fs_statfs,
	.access = fs_access,
};

/* ---------------------------------------------------------------- session */

int fs_check_options(const struct fs_opts *opts, struct ocitree_error **err)
{
	struct fs_config cfg;
	struct fuse_args args;
	if (fs_parse_options(opts, &cfg, &args, err) < 0)
		return -1;
	fs_config_clear(&cfg);
	/* let libfuse reject what it does not know now, before any work */
	struct fs dummy = {0};
	struct fuse_session *se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), &dummy);
	fuse_opt_free_args(&args);
	if (!se)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid mount options (see 'ocitree mount --help')");
	fuse_session_destroy(se);
	return 0;
}

size_t fs_cache_bytes(const struct fs_opts *opts)
{
	struct fs_config cfg;
	struct fuse_args args;
	if (fs_parse_options(opts, &cfg, &args, NULL) < 0)
		return 32u << 20;
	fuse_opt_free_args(&args);
	fs_config_clear(&cfg);
	return (size_t)cfg.cache_mib << 20;
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
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid mount options (see 'ocitree mount --help')");
	if (fuse_set_signal_handlers(se) != 0) {
		ocitree_error_set(err, errno, "install signal handlers");
		goto out_session;
	}
	if (fuse_session_mount(se, opts->mountpoint) != 0) {
		/* libfuse (or fusermount3) has said why on stderr */
		ocitree_error_setk(err, OCITREE_ERROR_FAILED, "cannot mount on '%s'", opts->mountpoint);
		goto out_signals;
	}
	if (fuse_daemonize(foreground) != 0) {
		ocitree_error_setk(err, OCITREE_ERROR_FAILED, "cannot run in the background");
		goto out_unmount;
	}
	if (!foreground) {
		openlog("ocitree", LOG_PID, LOG_DAEMON);
		ocitree_log_set_handler(log_to_syslog, NULL);
	}
	/* threads do not survive the fork of fuse_daemonize: start them now */
	if (hooks && hooks->started && hooks->started(userdata, se) < 0)
		ocitree_log(OCITREE_LOG_ERROR, "could not start the control thread: live commit is not available");
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
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
	return ret;
}

int fs_run(struct ocitree_tree *tree, const struct fs_opts *opts, struct ocitree_error **err)
{
	struct fs_config cfg;
	struct fuse_args args;
	if (fs_parse_options(opts, &cfg, &args, err) < 0)
		return -1;
	/* decompressed chunks (~1 MiB) come and go: a fixed mmap threshold
	 * hands them back to the system instead of letting glibc's dynamic
	 * threshold grow and keep them in per-thread arenas */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	struct fs fs = {.tree = tree, .timeout = cfg.timeout, .debug = cfg.debug};
	pthread_mutex_init(&fs.lock, NULL);
	for (uint32_t i = 1; i <= ocitree_tree_inodes(tree); i++) {
		struct stat st;
		if (ocitree_tree_stat(tree, i, &st) == 0 && S_ISREG(st.st_mode))
			fs.total_bytes += (uint64_t)st.st_size;
	}
	int ret = fs_session_run(&fs_ops, sizeof(fs_ops), &fs, &args, &cfg, opts, NULL, err);
	fuse_opt_free_args(&args);
	fs_config_clear(&cfg);
	pthread_mutex_destroy(&fs.lock);
	return ret;
}
