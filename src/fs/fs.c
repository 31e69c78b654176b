/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The read-only FUSE driver (see fs.h; the session it runs in is
 * fs-session.c).  Node ids are the tree's inode numbers
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

#include "fs-push.h"
#include "fs-session.h"
#include "common.h"

struct fs {
	/* immutable while the session runs */
	struct ocitree_tree *tree;
	double timeout;
	bool debug;
	uint64_t total_bytes; /* atomic: the sum of file sizes, counted at the first statfs; 0 before */
	bool no_open; /* the kernel opens files and directories without asking us */
	struct fs_push *push; /* started in the serving process; NULL when it could not be */
	/* lock: reported_eio; the first EIO of each run is logged, later ones
	 * counted, so a corrupt layer read in a loop cannot flood the log */
	pthread_mutex_t lock;
	unsigned long reported_eio;
};

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
	fs_init_conn(conn);
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
		uint32_t child;
		const char *name = fs_tree_dirent(fs->tree, (uint32_t)ino, pos, &child);
		if (!name)
			break;
		struct fuse_entry_param e;
		fill_entry(fs, child, &e);
		if (!fs_add_dirent(req, buf, size, &used, name, &e, pos + 1, plus))
			break;
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

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct stat st;
	bool found = ocitree_tree_stat(fs->tree, (uint32_t)ino, &st) == 0;
	fs_reply_open_readonly(req, fi, found ? &st : NULL, fs->no_open);
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	if (off < 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	/* told before the reply: a reader's next read cannot be told first */
	fs_push_saw_read(fs->push, (uint32_t)ino);
	if (fs_push_reply_held(fs->push, req, (uint32_t)ino, (uint64_t)off, size))
		return;
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
		fs_reply_xattr(req, size, xv, xl);
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
	fs_reply_xattr(req, size, b.data, b.len);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct statvfs sv = {0};
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	/* counted when first asked, not at start-up: a mount that is never
	 * df'd does not walk every inode before it answers */
	uint64_t total = __atomic_load_n(&fs->total_bytes, __ATOMIC_RELAXED);
	if (!total) {
		for (uint32_t i = 1; i <= ocitree_tree_inodes(fs->tree); i++) {
			struct stat st;
			if (ocitree_tree_stat(fs->tree, i, &st) == 0 && S_ISREG(st.st_mode))
				total += (uint64_t)st.st_size;
		}
		__atomic_store_n(&fs->total_bytes, total, __ATOMIC_RELAXED);
	}
	sv.f_blocks = (fsblkcnt_t)((total + 4095) / 4096);
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

/* node ids are inode numbers of an immutable tree: forget has nothing to
 * release (FS_READ_ONLY_OPS) */
static const struct fuse_lowlevel_ops fs_ops = {
	FS_READ_ONLY_OPS,
	.access = fs_access,
};

/* ---------------------------------------------------------------- running */

static int fs_started(void *userdata, struct fuse_session *se)
{
	struct fs *fs = userdata;
	/* without the pusher, every read is a round trip: slower, not wrong */
	struct fs_push *p = fs_push_new(fs->tree, NULL, NULL);
	if (fs_push_start(p, se) < 0)
		fs_push_free(p);
	else
		fs->push = p;
	return 0;
}

static void fs_stopping(void *userdata)
{
	struct fs *fs = userdata;
	fs_push_free(fs->push);
	fs->push = NULL;
}

static const struct fs_hooks fs_hooks = {.started = fs_started, .stopping = fs_stopping};

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
	int ret = fs_session_run(&fs_ops, sizeof(fs_ops), &fs, &args, &cfg, opts, &fs_hooks, err);
	fuse_opt_free_args(&args);
	fs_config_clear(&cfg);
	pthread_mutex_destroy(&fs.lock);
	return ret;
}
