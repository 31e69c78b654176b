/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writable mount's FUSE handlers: an upper directory (ocitree-upper(5))
 * over the immutable merged tree of an image, served on the libfuse
 * low-level API.  Each handler decodes the request, takes the locks
 * (fs-rw.h), finds its nodes (fs-rw-nodes.c), asks the engine (overlay.h:
 * copy-up, whiteouts, opaque directories, where bytes come from) and
 * replies; the session set-up is at the end.
 *
 * Kernel caches.  Every change of the tree comes through this mount, and
 * the kernel updates or drops what it caches for the inodes and directories
 * a request touches (attributes after a write or setattr, the parents of a
 * create, unlink or rename, their readdir caches).  What the daemon does
 * besides (copying up, whiteouts, linking the other names of a hardlinked
 * file, moving onto a new image after commit --clear) changes nothing the
 * tree shows: inode numbers, node ids, attributes and contents stay.  So
 * entries, attributes and negative lookups are cached as long as -o
 * timeout says (a day by default) and no invalidation is ever sent (but
 * the pages of a push that a write caught under way, fs-rw-nodes.c).  A
 * kernel that opens files and directories without asking (fs-rw.h) keeps
 * the page cache and the listing of each; one that sends OPEN and OPENDIR
 * is told to keep them for untouched image files and directories only.
 * The upper directory must not be changed behind the mount's back.
 */
#include "config.h"

#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "fs-rw.h"
#include "ocitree/control.h"
#include "common.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static struct rwfs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static int fill_entry(struct rwfs *fs, struct node *n, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	int r = ocitree_overlay_stat(fs->ov, &n->o, &e->attr);
	if (r)
		return r;
	e->ino = nodeid(fs, n);
	e->attr_timeout = fs->timeout;
	e->entry_timeout = fs->timeout;
	return 0;
}

/* ================================================================ operations: lookups */

/* libfuse splices a request from the kernel only when its pipe holds the
 * largest request whole: the write size plus a page of header.  Pipes are
 * limited to /proc/sys/fs/pipe-max-size (1 MiB by default) unless the
 * daemon may exceed it: then the biggest power of two that fits. */
static unsigned splice_max_write(unsigned want)
{
	if (want > (1u << 20))
		want = 1u << 20; /* 256 pages: what the kernel sends at most */
	int p[2];
	if (pipe(p) < 0)
		return want;
	long ok = fcntl(p[0], F_SETPIPE_SZ, (int)(want + 4096));
	close(p[0]);
	close(p[1]);
	if (ok >= 0)
		return want;
	unsigned long pmax = 1u << 20;
	FILE *f = fopen("/proc/sys/fs/pipe-max-size", "re");
	if (f) {
		if (fscanf(f, "%lu", &pmax) != 1)
			pmax = 1u << 20;
		fclose(f);
	}
	unsigned w = 128u << 10;
	while ((unsigned long)w * 2 + 4096 <= pmax && w * 2 <= want)
		w *= 2;
	return w;
}

static void fs_rw_init(void *userdata, struct fuse_conn_info *conn)
{
	fs_init_conn(conn);
	/* the data of writes moves from the kernel to the upper file through
	 * a pipe, without a copy in between */
	if (conn->capable & FUSE_CAP_SPLICE_READ)
		conn->want |= FUSE_CAP_SPLICE_READ;
	/* zero-message opens (fs-rw.h): the first OPEN is answered ENOSYS,
	 * and reading a file costs no OPEN and RELEASE, as on the read-only
	 * mount.  O_TRUNC then comes as a setattr: with ATOMIC_O_TRUNC the
	 * kernel would leave it to the OPEN it does not send */
	struct rwfs *fs = userdata;
	fs->no_open = (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) != 0;
	if (fs->no_open)
		conn->want |= FUSE_CAP_NO_OPEN_SUPPORT;
	fs->no_opendir = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
	if (fs->no_opendir)
		conn->want |= FUSE_CAP_NO_OPENDIR_SUPPORT;
	if ((conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) && !fs->no_open)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	else
		conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
	/* the kernel clears setuid bits by sending us a mode change: the
	 * daemon (root) would not on its own */
	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
	/* writes go through to the upper file before they return, so that a
	 * commit sees each one that returned */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	if (conn->want & FUSE_CAP_SPLICE_READ)
		conn->max_write = splice_max_write(conn->max_write);
}

static void fs_rw_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct rwfs *fs = fs_of(req);
	struct fuse_entry_param e;
	int r = ocitree_overlay_check_name(name);
	if (r) {
		fuse_reply_err(req, r);
		return;
	}
	pthread_rwlock_rdlock(&fs->ns);
	struct node *n = NULL;
	r = lookup_node(fs, node_of(fs, parent), name, &n, NULL);
	if (!r)
		r = fill_entry(fs, n, &e);
	if (!r)
		node_lookup_inc(fs, n);
	pthread_rwlock_unlock(&fs->ns);
	node_put(fs, n);
	if (r == ENOENT) {
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->timeout;
		fuse_reply_entry(req, &e);
	} else if (r) {
		fuse_reply_err(req, r);
	} else {
		fuse_reply_entry(req, &e);
	}
}

static void fs_rw_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct rwfs *fs = fs_of(req);
	pthread_mutex_lock(&fs->nodes);
	node_unref_locked(fs, node_of(fs, ino), nlookup, 0);
	pthread_mutex_unlock(&fs->nodes);
	fuse_reply_none(req);
}

static void fs_rw_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct rwfs *fs = fs_of(req);
	pthread_mutex_lock(&fs->nodes);
	for (size_t i = 0; i < count; i++)
		node_unref_locked(fs, node_of(fs, forgets[i].ino), forgets[i].nlookup, 0);
	pthread_mutex_unlock(&fs->nodes);
	fuse_reply_none(req);
}

static void fs_rw_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	struct stat st;
	pthread_rwlock_rdlock(&fs->ns);
	int r = ocitree_overlay_stat(fs->ov, &node_of(fs, ino)->o, &st);
	pthread_rwlock_unlock(&fs->ns);
	if (r)
		fuse_reply_err(req, r);
	else
		fuse_reply_attr(req, &st, fs->timeout);
}

static void fs_rw_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct rwfs *fs = fs_of(req);
	char buf[PATH_MAX + 1];
	pthread_rwlock_rdlock(&fs->ns);
	int r = ocitree_overlay_readlink(fs->ov, &node_of(fs, ino)->o, buf, sizeof(buf));
	pthread_rwlock_unlock(&fs->ns);
	if (r)
		fuse_reply_err(req, r);
	else
		fuse_reply_readlink(req, buf);
}

/* ================================================================ operations: creating */

/* A reply for a node made or found by a namespace operation: counts the
 * lookup the kernel will hold. */
static void reply_entry_node(fuse_req_t req, struct rwfs *fs, struct node *n)
{
	struct fuse_entry_param e;
	int r = fill_entry(fs, n, &e);
	if (r) {
		fuse_reply_err(req, r);
		return;
	}
	node_lookup_inc(fs, n);
	if (fuse_reply_entry(req, &e) < 0) {
		pthread_mutex_lock(&fs->nodes);
		node_unref_locked(fs, n, 1, 0);
		pthread_mutex_unlock(&fs->nodes);
	}
}

/* Make a new object name in dir (ns exclusive): its node, pinned. */
static int make_node(struct rwfs *fs, fuse_req_t req, struct node *dir, const char *name, struct ocitree_overlay_new *o,
                     int *fd, struct node **out)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	o->uid = ctx->uid;
	o->gid = ctx->gid;
	uint32_t below = 0;
	_cleanup_close_ int ofd = -1;
	int r = ocitree_overlay_make(fs->ov, &dir->o, name, o, fd ? &ofd : NULL, &below);
	if (r)
		return r;
	struct stat ust;
	if (fstatat(dir->o.ufd, name, &ust, AT_SYMLINK_NOFOLLOW) < 0)
		return errno;
	r = node_get_upper(fs, dir, name, &ust, below, out);
	if (r)
		return r;
	if (fd)
		*fd = steal_fd(&ofd);
	return 0;
}

static void do_make(fuse_req_t req, fuse_ino_t parent, const char *name, struct ocitree_overlay_new *o)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = NULL;
	pthread_rwlock_rdlock(&fs->freeze);
	pthread_rwlock_wrlock(&fs->ns);
	int r = make_node(fs, req, node_of(fs, parent), name, o, NULL, &n);
	if (r)
		fuse_reply_err(req, r);
	else
		reply_entry_node(req, fs, n);
	pthread_rwlock_unlock(&fs->ns);
	pthread_rwlock_unlock(&fs->freeze);
	node_put(fs, n);
}

static void fs_rw_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct ocitree_overlay_new o = {.mode = mode, .rdev = rdev, .flags = O_WRONLY};
	if (!(mode & S_IFMT))
		o.mode |= S_IFREG;
	do_make(req, parent, name, &o);
}

static void fs_rw_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct ocitree_overlay_new o = {.mode = S_IFDIR | (mode & 07777)};
	do_make(req, parent, name, &o);
}

static void fs_rw_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct ocitree_overlay_new o = {.mode = S_IFLNK | 0777, .link = link};
	do_make(req, parent, name, &o);
}

/* ================================================================ operations: removing */

static void do_remove(fuse_req_t req, fuse_ino_t parent, const char *name, bool rmdir)
{
	struct rwfs *fs = fs_of(req);
	int r = ocitree_overlay_check_name(name);
	if (r) {
		fuse_reply_err(req, r);
		return;
	}
	pthread_rwlock_rdlock(&fs->freeze);
	pthread_rwlock_wrlock(&fs->ns);
	struct node *dir = node_of(fs, parent), *n = NULL;
	struct ocitree_overlay_found f;
	r = lookup_node(fs, dir, name, &n, &f);
	if (!r)
		r = ocitree_overlay_remove(fs->ov, &dir->o, name, &n->o, &f, rmdir);
	pthread_rwlock_unlock(&fs->ns);
	pthread_rwlock_unlock(&fs->freeze);
	node_put(fs, n);
	fuse_reply_err(req, r);
}

static void fs_rw_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	do_remove(req, parent, name, false);
}

static void fs_rw_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	do_remove(req, parent, name, true);
}

/* ================================================================ operations: links and renames */

static void fs_rw_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = node_of(fs, ino), *dir = node_of(fs, newparent);
	pthread_rwlock_rdlock(&fs->freeze);
	pthread_rwlock_wrlock(&fs->ns);
	struct ocitree_overlay_found f;
	int r = ocitree_overlay_check_new_name(newname);
	if (!r)
		r = ocitree_overlay_find(fs->ov, &dir->o, newname, &f);
	if (!r)
		r = ocitree_overlay_link(fs->ov, &n->o, &dir->o, newname, &f);
	if (!r)
		reply_entry_node(req, fs, n);
	else
		fuse_reply_err(req, r);
	pthread_rwlock_unlock(&fs->ns);
	pthread_rwlock_unlock(&fs->freeze);
}

static void fs_rw_rename(fuse_req_t req, fuse_ino_t oldparent, const char *oldname, fuse_ino_t newparent,
			 const char *newname, unsigned int flags)
{
	struct rwfs *fs = fs_of(req);
	int r = ocitree_overlay_check_name(oldname);
	if (!r)
		r = ocitree_overlay_check_new_name(newname);
	if (!r && (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)))
		r = EINVAL;
	if (!r && (flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))
		r = EINVAL;
	if (r) {
		fuse_reply_err(req, r);
		return;
	}
	unsigned oflags = ((flags & RENAME_NOREPLACE) ? OCITREE_OVERLAY_RENAME_NOREPLACE : 0) |
	                  ((flags & RENAME_EXCHANGE) ? OCITREE_OVERLAY_RENAME_EXCHANGE : 0);
	pthread_rwlock_rdlock(&fs->freeze);
	pthread_rwlock_wrlock(&fs->ns);
	struct node *od = node_of(fs, oldparent), *nd = node_of(fs, newparent);
	struct node *src = NULL, *dst = NULL;
	struct ocitree_overlay_found sf, df;
	r = lookup_node(fs, od, oldname, &src, &sf);
	if (!r) {
		r = lookup_node(fs, nd, newname, &dst, &df);
		if (r == ENOENT)
			r = 0;
	}
	if (!r)
		r = ocitree_overlay_rename(fs->ov, &od->o, oldname, &nd->o, newname, &src->o, &sf, dst ? &dst->o : NULL,
		                           oflags);
	pthread_rwlock_unlock(&fs->ns);
	pthread_rwlock_unlock(&fs->freeze);
	node_put(fs, src);
	node_put(fs, dst);
	fuse_reply_err(req, r);
}

/* ================================================================ operations: attributes */

static void fs_rw_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
	static const struct {
		int fuse;
		unsigned ov;
	} map[] = {
	    {FUSE_SET_ATTR_MODE, OCITREE_OVERLAY_SET_MODE},
	    {FUSE_SET_ATTR_UID, OCITREE_OVERLAY_SET_UID},
	    {FUSE_SET_ATTR_GID, OCITREE_OVERLAY_SET_GID},
	    {FUSE_SET_ATTR_SIZE, OCITREE_OVERLAY_SET_SIZE},
	    {FUSE_SET_ATTR_ATIME, OCITREE_OVERLAY_SET_ATIME},
	    {FUSE_SET_ATTR_MTIME, OCITREE_OVERLAY_SET_MTIME},
	    {FUSE_SET_ATTR_ATIME_NOW, OCITREE_OVERLAY_SET_ATIME_NOW},
	    {FUSE_SET_ATTR_MTIME_NOW, OCITREE_OVERLAY_SET_MTIME_NOW},
	    {FUSE_SET_ATTR_CTIME, OCITREE_OVERLAY_SET_CTIME},
	};
	struct rwfs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	unsigned set = 0;
	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (to_set & map[i].fuse)
			set |= map[i].ov;
	/* what the engine does not know: the ctime-only check must see it */
	if (to_set &
	    ~(FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME |
	      FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME))
		set |= 1u << 31;
	/* before any lock: the kernel drops the pages past the new size after
	 * the reply, and no push may come after that (fs-rw-nodes.c) */
	if (to_set & FUSE_SET_ATTR_SIZE)
		node_data_changing(fs, n, true);
	pthread_rwlock_rdlock(&fs->freeze);
	pthread_rwlock_wrlock(&fs->ns);
	/* a truncate through the fd writes go through, if there is one */
	pthread_mutex_lock(&fs->nodes);
	int wfd = n->wfd;
	pthread_mutex_unlock(&fs->nodes);
	int r = ocitree_overlay_setattr(fs->ov, &n->o, attr, set, wfd);
	struct stat st;
	if (!r)
		r = ocitree_overlay_stat(fs->ov, &n->o, &st);
	pthread_rwlock_unlock(&fs->ns);
	pthread_rwlock_unlock(&fs->freeze);
	if (r)
		fuse_reply_err(req, r);
	else
		fuse_reply_attr(req, &st, fs->timeout);
}

/* ================================================================ operations: files */

static void fs_rw_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	if (fs->no_open) {
		/* the first open: from now on the kernel opens without asking */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	/* a kernel that sends OPEN: copy up here what may be written (the
	 * reads, writes and truncates that follow name the node, as they do
	 * without OPEN) */
	struct node *n = node_of(fs, ino);
	bool write = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);
	int fd = -1;
	bool keep = false;
	if (write) {
		node_data_changing(fs, n, true);
		pthread_rwlock_rdlock(&fs->freeze);
		pthread_rwlock_wrlock(&fs->ns);
	} else {
		pthread_rwlock_rdlock(&fs->ns);
	}
	int r = ocitree_overlay_open(fs->ov, &n->o, fi->flags, &fd, &keep);
	pthread_rwlock_unlock(&fs->ns);
	if (write)
		pthread_rwlock_unlock(&fs->freeze);
	if (fd >= 0)
		close(fd);
	if (r) {
		fuse_reply_err(req, r);
		return;
	}
	fi->fh = 0;
	fi->keep_cache = keep;
	/* no FLUSH on close: writes reach the upper file before they return,
	 * and the kernel writes dirty mmap pages back on close either way */
	fi->noflush = 1;
	fuse_reply_open(req, fi);
}

static void fs_rw_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	struct node *dir = node_of(fs, parent), *n = NULL;
	pthread_rwlock_rdlock(&fs->freeze);
	pthread_rwlock_wrlock(&fs->ns);
	/* the fd made with the file becomes the node's write fd */
	struct ocitree_overlay_new o = {.mode = S_IFREG | (mode & 07777), .flags = O_WRONLY};
	int fd = -1;
	int r = make_node(fs, req, dir, name, &o, &fd, &n);
	if (r == EEXIST && !(fi->flags & O_EXCL)) {
		/* the kernel thought it missing: open what is there (which copies
		 * up and truncates for O_TRUNC: the kernel leaves that to us) */
		r = lookup_node(fs, dir, name, &n, NULL);
		bool keep;
		if (!r && ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)))
			node_data_changing(fs, n, false); /* under ns: no wait */
		if (!r)
			r = ocitree_overlay_open(fs->ov, &n->o, fi->flags, &fd, &keep);
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	struct fuse_entry_param e;
	if (!r)
		r = fill_entry(fs, n, &e);
	pthread_rwlock_unlock(&fs->ns);
	pthread_rwlock_unlock(&fs->freeze);
	if (r) {
		if (fd >= 0)
			close(fd);
		node_put(fs, n);
		fuse_reply_err(req, r);
		return;
	}
	if (fd >= 0)
		node_keep_write_fd(fs, n, fd);
	fi->fh = 0;
	fi->noflush = 1;
	node_lookup_inc(fs, n);
	if (fuse_reply_create(req, &e, fi) < 0) {
		pthread_mutex_lock(&fs->nodes);
		node_unref_locked(fs, n, 1, 0);
		pthread_mutex_unlock(&fs->nodes);
	}
	node_put(fs, n);
}

static void reply_fd_data(fuse_req_t req, int fd, size_t size, off_t off)
{
	struct ocitree_tree_data d = {.size = size, .fd = fd, .pos = (uint64_t)off};
	int r = fs_reply_data(req, &d);
	if (r < 0 && r != -ENOENT)
		ocitree_log(OCITREE_LOG_ERROR, "read: reply: %s", strerror(-r));
}

static void fs_rw_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	struct ocitree_overlay_source src;
	pthread_rwlock_rdlock(&fs->ns);
	int r = ocitree_overlay_read_source(fs->ov, &n->o, &src);
	if (!r && fs->push) {
		/* the reader's position, told before the reply (a reader's next
		 * read cannot be told first); a copied-up file is still at its
		 * place in the order */
		uint32_t k = 0;
		if (!src.upper && src.tree == fs->push_tree) {
			k = src.k;
			node_push_off(fs, n);
		} else if (src.upper && ocitree_overlay_tree(fs->ov) == fs->push_tree) {
			pthread_mutex_lock(&fs->nodes);
			k = n->in_lower ? n->lkey : 0;
			pthread_mutex_unlock(&fs->nodes);
		}
		if (k)
			fs_push_saw_read(fs->push, k);
	}
	if (!r && src.upper) {
		/* under ns: a commit --clear closes the fd under it */
		int fd = node_read_fd(fs, n);
		if (fd < 0)
			fuse_reply_err(req, errno);
		else
			reply_fd_data(req, fd, size, off);
		pthread_rwlock_unlock(&fs->ns);
		return;
	}
	pthread_rwlock_unlock(&fs->ns);
	if (r) {
		fuse_reply_err(req, r);
		return;
	}
	if (off < 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	/* the tree of src and its layers stay until unmount (a live commit
	 * --clear keeps the trees it replaces): no lock is needed while the
	 * reply uses pinned chunks or the layer's data file */
	struct ocitree_tree_data d;
	r = ocitree_overlay_read_lower(&src, (uint64_t)off, size, &d);
	if (r) {
		fuse_reply_err(req, r);
		return;
	}
	int sent = fs_reply_data(req, &d);
	if (sent < 0 && sent != -ENOENT)
		ocitree_log(OCITREE_LOG_ERROR, "read: reply: %s", strerror(-sent));
	ocitree_tree_data_release(&d);
}

static void fs_rw_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
			    struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	int fd = -1;
	/* no wait: the writer may hold a page a push waits for (fs-rw-nodes.c) */
	node_data_changing(fs, node_of(fs, ino), false);
	pthread_rwlock_rdlock(&fs->freeze);
	int r = node_write_fd(fs, node_of(fs, ino), &fd);
	ssize_t w = 0;
	if (!r) {
		struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
		out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
		out.buf[0].fd = fd;
		out.buf[0].pos = off;
		w = fuse_buf_copy(&out, in, 0);
		if (w < 0)
			r = (int)-w;
	}
	pthread_rwlock_unlock(&fs->freeze);
	if (r)
		fuse_reply_err(req, r);
	else
		fuse_reply_write(req, (size_t)w);
}

static void fs_rw_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			    struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	int fd = -1;
	node_data_changing(fs, node_of(fs, ino), true);
	pthread_rwlock_rdlock(&fs->freeze);
	int r = node_write_fd(fs, node_of(fs, ino), &fd);
	if (!r && fallocate(fd, mode, offset, length) < 0)
		r = errno;
	pthread_rwlock_unlock(&fs->freeze);
	fuse_reply_err(req, r);
}

static void fs_rw_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	int r = 0;
	pthread_rwlock_rdlock(&fs->ns);
	pthread_mutex_lock(&fs->nodes);
	int fd = n->wfd >= 0 ? n->wfd : n->rfd;
	pthread_mutex_unlock(&fs->nodes);
	/* an upper file changed without a write fd (a truncate) */
	_cleanup_close_ int own = -1;
	if (fd < 0 && n->o.ufd >= 0 && S_ISREG(n->o.type))
		fd = own = ocitree_overlay_obj_reopen(&n->o, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && (datasync ? fdatasync(fd) : fsync(fd)) < 0)
		r = errno;
	pthread_rwlock_unlock(&fs->ns);
	fuse_reply_err(req, r);
}

/* ================================================================ operations: xattrs */

static bool is_control_xattr(struct rwfs *fs, struct node *n, const char *name)
{
	return n == fs->root && strcmp(name, OCITREE_CONTROL_XATTR) == 0;
}

static void reply_xattr_value(fuse_req_t req, const void *v, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, v, len);
}

static void fs_rw_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	if (is_control_xattr(fs, n, name)) {
		const char *w = ocitree_upper_work_path(fs->upper);
		reply_xattr_value(req, w, strlen(w), size);
		return;
	}
	/* the kernel asks for it before each write(2) and truncate of a file,
	 * before it touches the file's pages: the sign that keeps a push from
	 * writing the image's bytes over the write's (fs-rw-nodes.c) */
	if (S_ISREG(n->o.type) && strcmp(name, "security.capability") == 0)
		node_data_changing(fs, n, true);
	_cleanup_free_ void *v = NULL;
	size_t len = 0;
	pthread_rwlock_rdlock(&fs->ns);
	int r = ocitree_overlay_getxattr(fs->ov, &n->o, name, &v, &len);
	pthread_rwlock_unlock(&fs->ns);
	if (r)
		fuse_reply_err(req, r);
	else
		reply_xattr_value(req, v, len, size);
}

static void fs_rw_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct rwfs *fs = fs_of(req);
	_cleanup_free_ char *names = NULL;
	size_t len = 0;
	pthread_rwlock_rdlock(&fs->ns);
	int r = ocitree_overlay_listxattr(fs->ov, &node_of(fs, ino)->o, &names, &len);
	pthread_rwlock_unlock(&fs->ns);
	if (r)
		fuse_reply_err(req, r);
	else
		reply_xattr_value(req, names, len, size);
}

/* setxattr, or removexattr when value is NULL */
static void change_xattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	if (is_control_xattr(fs, n, name)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	pthread_rwlock_rdlock(&fs->freeze);
	pthread_rwlock_wrlock(&fs->ns);
	int r = value ? ocitree_overlay_setxattr(fs->ov, &n->o, name, value, size, flags)
	              : ocitree_overlay_removexattr(fs->ov, &n->o, name);
	pthread_rwlock_unlock(&fs->ns);
	pthread_rwlock_unlock(&fs->freeze);
	fuse_reply_err(req, r);
}

static void fs_rw_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
			   int flags)
{
	change_xattr(req, ino, name, value, size, flags); /* libfuse's value is never NULL */
}

static void fs_rw_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	change_xattr(req, ino, name, NULL, 0, 0);
}

/* ================================================================ operations: directories */

static void fs_rw_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	if (fs->no_opendir) {
		/* the kernel opens directories without asking from now on, and
		 * keeps their listings: every change comes through the mount,
		 * which makes it drop them */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	struct node *n = node_of(fs, ino);
	if (!S_ISDIR(n->o.type)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fi->fh = 0;
	pthread_rwlock_rdlock(&fs->ns);
	/* an untouched lower directory changes only through this mount, which
	 * makes the kernel drop its cached listing */
	fi->cache_readdir = n->o.ufd < 0;
	fi->keep_cache = n->o.ufd < 0;
	pthread_rwlock_unlock(&fs->ns);
	fuse_reply_open(req, fi);
}

/* Offsets: the listing's generation in the bits above DIR_POS_BITS, and
 * below them 0 for the start, 1 after ".", 2 after "..", 3 + i after entry i. */
#define DIR_POS_BITS 40
#define DIR_POS_MASK ((UINT64_C(1) << DIR_POS_BITS) - 1)
#define DIR_GEN_MAX  ((UINT32_C(1) << (63 - DIR_POS_BITS)) - 1)

static struct dir_state *dir_state_of(struct rwfs *fs, struct node *n)
{
	pthread_mutex_lock(&fs->nodes);
	if (!n->dir) {
		n->dir = xcalloc(1, sizeof(*n->dir));
		pthread_mutex_init(&n->dir->lock, NULL);
	}
	struct dir_state *d = n->dir;
	pthread_mutex_unlock(&fs->nodes);
	return d;
}

static void dir_listing_clear(struct dir_listing *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->ents[i].name);
	free(l->ents);
	*l = (struct dir_listing){0};
}

/* The listing that offset off is in (d locked, ns held): the one of its
 * generation, else a new one (a reader from the start, or one whose
 * listing is gone: it goes on at the same position) in place of an empty
 * or the older one. */
static int dir_listing_for(struct rwfs *fs, struct node *dir, struct dir_state *d, uint64_t off,
                           struct dir_listing **out)
{
	uint32_t gen = (uint32_t)(off >> DIR_POS_BITS);
	for (size_t i = 0; off && gen && i < ARRAY_SIZE(d->l); i++) {
		if (d->l[i].gen == gen) {
			*out = &d->l[i];
			return 0;
		}
	}
	unsigned slot = !d->l[d->newest].gen ? d->newest : !d->newest;
	struct dir_listing *l = &d->l[slot];
	dir_listing_clear(l);
	int r = ocitree_overlay_dir_list(fs->ov, &dir->o, &l->ents, &l->n);
	if (r) {
		dir_listing_clear(l);
		return r;
	}
	d->next_gen = d->next_gen >= DIR_GEN_MAX ? 1 : d->next_gen + 1;
	l->gen = d->next_gen;
	d->newest = slot;
	*out = l;
	return 0;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct rwfs *fs = fs_of(req);
	struct node *dir = node_of(fs, ino);
	struct dir_state *d = dir_state_of(fs, dir);
	_cleanup_free_ char *buf = xmalloc(size);
	size_t used = 0;
	struct dir_listing *l = NULL;
	pthread_mutex_lock(&d->lock);
	pthread_rwlock_rdlock(&fs->ns);
	int r = dir_listing_for(fs, dir, d, (uint64_t)off, &l);
	uint64_t genbits = r ? 0 : (uint64_t)l->gen << DIR_POS_BITS;
	for (uint64_t pos = (uint64_t)off & DIR_POS_MASK; !r && pos < l->n + 2; pos++) {
		const char *name;
		struct fuse_entry_param e;
		struct node *child = NULL;
		if (pos < 2) {
			name = pos == 0 ? "." : "..";
			memset(&e, 0, sizeof(e));
			e.attr.st_mode = S_IFDIR;
			e.attr.st_ino = dir->o.ino;
		} else {
			name = l->ents[pos - 2].name;
			int lr = lookup_node(fs, dir, name, &child, NULL);
			if (lr == 0)
				lr = fill_entry(fs, child, &e);
			if (lr) {
				/* gone since the listing was made */
				node_put(fs, child);
				continue;
			}
		}
		size_t len;
		off_t next = (off_t)(genbits | (pos + 1));
		if (plus) {
			if (!child) {
				/* "." and "..": no entry, the kernel knows them */
				struct fuse_entry_param z = {.attr = e.attr};
				len = fuse_add_direntry_plus(req, buf + used, size - used, name, &z, next);
			} else {
				len = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, next);
			}
		} else {
			len = fuse_add_direntry(req, buf + used, size - used, name, &e.attr, next);
		}
		if (len > size - used) {
			node_put(fs, child);
			break;
		}
		if (child && plus)
			node_lookup_inc(fs, child);
		node_put(fs, child);
		used += len;
	}
	/* the end: nobody reads on in this listing (a seekdir back makes a new one) */
	if (!r && used == 0)
		dir_listing_clear(l);
	pthread_rwlock_unlock(&fs->ns);
	pthread_mutex_unlock(&d->lock);
	if (r)
		fuse_reply_err(req, r);
	else
		fuse_reply_buf(req, buf, used);
}

static void fs_rw_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, false);
}

static void fs_rw_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, true);
}

static void fs_rw_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	int r = 0;
	pthread_rwlock_rdlock(&fs->ns);
	if (n->o.ufd >= 0) {
		int fd = openat(n->o.ufd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || fsync(fd) < 0)
			r = errno;
		if (fd >= 0)
			close(fd);
	}
	pthread_rwlock_unlock(&fs->ns);
	fuse_reply_err(req, r);
}

static void fs_rw_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct rwfs *fs = fs_of(req);
	struct statvfs sv;
	if (fstatvfs(ocitree_upper_fd(fs->upper), &sv) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	sv.f_namemax = NAME_MAX;
	sv.f_flag &= ~(unsigned long)ST_RDONLY;
	fuse_reply_statfs(req, &sv);
}

static void fs_rw_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct rwfs *fs = fs_of(req);
	struct stat st;
	pthread_rwlock_rdlock(&fs->ns);
	int r = ocitree_overlay_stat(fs->ov, &node_of(fs, ino)->o, &st);
	pthread_rwlock_unlock(&fs->ns);
	if (!r && (mask & X_OK) && !S_ISDIR(st.st_mode) && !(st.st_mode & 0111))
		r = EACCES;
	fuse_reply_err(req, r);
}

static const struct fuse_lowlevel_ops fs_rw_ops = {
	.init = fs_rw_init,
	.lookup = fs_rw_lookup,
	.forget = fs_rw_forget,
	.forget_multi = fs_rw_forget_multi,
	.getattr = fs_rw_getattr,
	.setattr = fs_rw_setattr,
	.readlink = fs_rw_readlink,
	.mknod = fs_rw_mknod,
	.mkdir = fs_rw_mkdir,
	.unlink = fs_rw_unlink,
	.rmdir = fs_rw_rmdir,
	.symlink = fs_rw_symlink,
	.rename = fs_rw_rename,
	.link = fs_rw_link,
	.open = fs_rw_open,
	.read = fs_rw_read,
	.write_buf = fs_rw_write_buf,
	.fsync = fs_rw_fsync,
	.opendir = fs_rw_opendir,
	.readdir = fs_rw_readdir,
	.readdirplus = fs_rw_readdirplus,
	.fsyncdir = fs_rw_fsyncdir,
	.statfs = fs_rw_statfs,
	.setxattr = fs_rw_setxattr,
	.getxattr = fs_rw_getxattr,
	.listxattr = fs_rw_listxattr,
	.removexattr = fs_rw_removexattr,
	.access = fs_rw_access,
	.create = fs_rw_create,
	.fallocate = fs_rw_fallocate,
};

/* ================================================================ session */

static int rw_started(void *userdata, struct fuse_session *se)
{
	struct rwfs *fs = userdata;
	if (rw_control_start(fs, se) < 0)
		return -1;
	/* without the pusher, every read is a round trip: slower, not wrong */
	struct fs_push *p = fs_push_new(fs->push_tree, &rw_push_driver, fs);
	if (fs_push_start(p, se) < 0)
		fs_push_free(p);
	else
		fs->push = p;
	return 0;
}

static void rw_stopping(void *userdata)
{
	struct rwfs *fs = userdata;
	fs_push_free(fs->push);
	fs->push = NULL;
	log_debug("%ju pushes met a change of their file (%ju waited for)", (uintmax_t)fs->push_raced,
	          (uintmax_t)fs->push_waited);
	rw_control_stop(fs);
}

static const struct fs_hooks rw_hooks = {.started = rw_started, .stopping = rw_stopping};

static int root_init(struct rwfs *fs, bool fresh, struct ocitree_error **err)
{
	struct node *root = node_new(S_IFDIR, 0);
	if (ocitree_overlay_root_init(fs->ov, &root->o, fresh, err) < 0) {
		node_destroy(root);
		return -1;
	}
	root->ukey = root->o.uino;
	root->nlookup = 1;
	map_insert(&fs->by_upper, root, true);
	fs->root = root;
	return 0;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int fs_run_rw(const struct fs_rw_setup *s, const struct fs_opts *opts, struct ocitree_error **err)
{
	struct fs_config cfg;
	struct fuse_args args;
	if (fs_parse_options(opts, &cfg, &args, err) < 0)
		return -1;
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	/* modes come from the kernel with the caller's umask applied */
	umask(0);
	raise_fd_limit();
	struct rwfs *fs = xcalloc(1, sizeof(*fs));
	fs->upper = s->upper;
	fs->ov = ocitree_overlay_new(s->upper, s->tree, &rw_overlay_hooks, fs);
	fs->timeout = cfg.timeout;
	fs->uid = geteuid();
	fs->gid = getegid();
	fs->layout = xstrdup(s->layout);
	fs->mountpoint = realpath(opts->mountpoint, NULL);
	fs->index_opts = s->index_opts;
	fs->layers = xcalloc(s->n_layers + 1, sizeof(*s->layers));
	if (s->n_layers)
		memcpy(fs->layers, s->layers, s->n_layers * sizeof(*s->layers));
	fs->n_layers = fs->n_base = s->n_layers;
	fs->ctl_fd = -1;
	fs->ctl_wake[0] = fs->ctl_wake[1] = -1;
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	/* a waiting writer (a commit, a rename) must not starve behind readers */
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&fs->freeze, &ra);
	pthread_rwlock_init(&fs->ns, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&fs->nodes, NULL);
	pthread_cond_init(&fs->push_done, NULL);
	fs->push_tree = s->tree;
	int ret = root_init(fs, s->fresh, err);
	if (ret == 0)
		ocitree_overlay_links_journal_replay(fs->ov);
	if (ret == 0)
		ret = fs_session_run(&fs_rw_ops, sizeof(fs_rw_ops), fs, &args, &cfg, opts, &rw_hooks, err);
	fuse_opt_free_args(&args);
	fs_config_clear(&cfg);
	free_nodes(fs);
	for (size_t i = fs->n_base; i < fs->n_layers; i++)
		ocitree_layer_index_free(fs->layers[i]);
	if (ocitree_overlay_tree(fs->ov) != s->tree)
		ocitree_tree_free(ocitree_overlay_tree(fs->ov));
	while (fs->old) {
		struct old_tree *o = fs->old;
		fs->old = o->next;
		if (o->tree != s->tree)
			ocitree_tree_free(o->tree);
		free(o);
	}
	ocitree_overlay_free(fs->ov);
	free(fs->layers);
	free(fs->layout);
	free(fs->mountpoint);
	pthread_rwlock_destroy(&fs->freeze);
	pthread_rwlock_destroy(&fs->ns);
	pthread_mutex_destroy(&fs->nodes);
	pthread_cond_destroy(&fs->push_done);
	free(fs);
	return ret;
}
