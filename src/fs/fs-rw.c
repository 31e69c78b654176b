/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writable mount: an upper directory (ocitree-upper(5)) over the
 * immutable merged tree of an image, served on the libfuse low-level API.
 *
 * Model.  The lower side is the ocitree_tree; the upper directory is the
 * whole truth about changes and is read with *at() calls relative to
 * directory fds only (O_PATH fds kept on nodes; the few calls that have no
 * fd form go through /proc/self/fd).  Two invariants keep the lower side
 * simple:
 *   I1  a lower inode with several names is either untouched (every name
 *       where the tree has it) or copied up with all its names hardlinked
 *       in the upper directory: anything that would drop or move one name
 *       copies it up first;
 *   I2  a lower directory that is still visible is at its tree path:
 *       renaming one copies its subtree up (metadata only for files) and
 *       makes it opaque.
 * So a node without an upper object is always at its tree path, and its
 * names are the tree's.
 *
 * Nodes.  A node is the in-memory inode the kernel holds (node id = its
 * address, the root is FUSE_ROOT_ID); it lives while the kernel has looked
 * it up (nlookup) or something pins it (refs: open handles, the running
 * operation) and is found again by its lower inode (by_lower, for the
 * current tree) or its upper inode number (by_upper), so that every name of
 * a file gives the same node.  A node's st_ino never changes: the lower
 * inode number (plus a generation per tree) for anything that came from the
 * image, found again after a remount through the origin xattr written at
 * copy-up; bit 63 plus the upper inode number for what was created here.
 *
 * Kernel caches.  Every change of the tree comes through this mount, and
 * the kernel updates or drops what it caches for the inodes and directories
 * a request touches (attributes after a write or setattr, the parents of a
 * create, unlink or rename, their readdir caches).  What the daemon does
 * besides (copying up, whiteouts, linking the other names of a hardlinked
 * file, moving onto a new image after commit --clear) changes nothing the
 * tree shows: inode numbers, node ids, attributes and contents stay.  So
 * entries, attributes and negative lookups are cached as long as -o
 * timeout says (a day by default) and no invalidation is ever sent; the
 * page cache is kept across opens only for files that have no upper copy
 * (keep_cache), and directory listings only for untouched image
 * directories (cache_readdir).  The upper directory must not be changed
 * behind the mount's back.
 *
 * Locking (order: freeze, ns, nodes):
 *   freeze  rwlock; every operation that changes the upper directory holds
 *           it shared, a live commit holds it exclusively while it reads
 *           the upper directory, so a commit sees every change that was
 *           answered before it started and none half-done;
 *   ns      rwlock over the namespace: the upper directory's structure and
 *           the node fields marked (ns); lookups and reads share it,
 *           operations that change names or copy up take it exclusively;
 *           writes to an open upper file take only freeze;
 *   nodes   mutex over the maps, nlookup, refs and rfd.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>

#include "fs-rw.h"
#include "json.h"
#include "upper-internal.h"
#include "util.h"

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#ifndef RENAME_WHITEOUT
#define RENAME_WHITEOUT (1 << 2)
#endif

/* the virtual xattr on the root that tells `ocitree commit MOUNTPOINT`
 * where the control socket is */
#define CONTROL_XATTR "user.ocitree.workdir"


/* A file handle. */
struct fh {
	int fd; /* upper file, or -1: reads go through the node */
	struct node *node;
	bool write;
};

struct dent {
	char *name;
	mode_t type;
};

/* A directory handle: the listing as it was at the first readdir from
 * offset 0 (a snapshot, so that offsets stay valid). */
struct dirh {
	pthread_mutex_t lock;
	struct dent *ents;
	size_t n;
	bool loaded;
	struct node *node;
};

static struct rwfs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ================================================================ maps */

static size_t map_slot(const struct nodemap *m, uint64_t key)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 20) & (m->nb - 1);
}

struct node *map_find(const struct nodemap *m, uint64_t key, bool upper)
{
	if (!m->nb)
		return NULL;
	for (struct node *n = m->b[map_slot(m, key)]; n; n = upper ? n->unext : n->lnext) {
		if ((upper ? n->ukey : n->lkey) == key)
			return n;
	}
	return NULL;
}

static void map_grow(struct nodemap *m, bool upper)
{
	struct nodemap nm = {.nb = m->nb ? m->nb * 2 : 256};
	nm.b = xcalloc(nm.nb, sizeof(*nm.b));
	for (size_t i = 0; i < m->nb; i++) {
		struct node *n = m->b[i];
		while (n) {
			struct node *next = upper ? n->unext : n->lnext;
			map_insert(&nm, n, upper);
			n = next;
		}
	}
	free(m->b);
	*m = nm;
}

void map_insert(struct nodemap *m, struct node *n, bool upper)
{
	if (m->n + 1 > m->nb / 2 * 3 || !m->nb)
		map_grow(m, upper);
	size_t s = map_slot(m, upper ? n->ukey : n->lkey);
	if (upper) {
		n->unext = m->b[s];
		n->in_upper = true;
	} else {
		n->lnext = m->b[s];
		n->in_lower = true;
	}
	m->b[s] = n;
	m->n++;
}

static void map_remove(struct nodemap *m, struct node *n, bool upper)
{
	if (!(upper ? n->in_upper : n->in_lower))
		return;
	struct node **pp = &m->b[map_slot(m, upper ? n->ukey : n->lkey)];
	while (*pp) {
		if (*pp == n) {
			*pp = upper ? n->unext : n->lnext;
			m->n--;
			break;
		}
		pp = upper ? &(*pp)->unext : &(*pp)->lnext;
	}
	if (upper)
		n->in_upper = false;
	else
		n->in_lower = false;
}

/* ================================================================ the lower tree */

static uint64_t ino_lower(const struct rwfs *fs, uint32_t k)
{
	return ((uint64_t)fs->gen << 32) | k;
}

static uint64_t ino_upper(uint64_t u)
{
	return (1ULL << 63) | (u & ~(1ULL << 63));
}

static const struct ocitree_layer_entry *lentry(struct ocitree_tree *t, uint32_t k, struct ocitree_layer_index **l)
{
	return ocitree_tree_entry(t, k, l);
}

mode_t ltype(struct ocitree_tree *t, uint32_t k)
{
	struct stat st;
	return ocitree_tree_stat(t, k, &st) == 0 ? st.st_mode & S_IFMT : 0;
}

static uint32_t lnlink(struct ocitree_tree *t, uint32_t k)
{
	struct stat st;
	return ocitree_tree_stat(t, k, &st) == 0 ? (uint32_t)st.st_nlink : 0;
}

/* The parent index of the current tree: for each inode one directory that
 * names it and the position of the name there.  Built on first use (ns
 * exclusive). */
static void tindex_build(struct rwfs *fs)
{
	if (fs->tparent)
		return;
	uint32_t n = ocitree_tree_inodes(fs->tree);
	fs->tparent = xcalloc((size_t)n + 1, sizeof(uint32_t));
	fs->tpos = xcalloc((size_t)n + 1, sizeof(uint32_t));
	for (uint32_t d = 1; d <= n; d++) {
		uint32_t c = ocitree_tree_dir_size(fs->tree, d);
		for (uint32_t i = 0; i < c; i++) {
			uint32_t child;
			ocitree_tree_dir_entry(fs->tree, d, i, &child);
			if (!fs->tparent[child]) {
				fs->tparent[child] = d;
				fs->tpos[child] = i;
			}
		}
	}
}

void tindex_free(struct rwfs *fs)
{
	free(fs->tparent);
	free(fs->tpos);
	fs->tparent = fs->tpos = NULL;
}

/* "/a/b/c" for inode k of the current tree ("/" for the root). */
char *rw_tree_path(struct rwfs *fs, uint32_t k)
{
	tindex_build(fs);
	const char *parts[4096];
	size_t np = 0;
	struct buf b = BUF_INIT;
	for (uint32_t c = k; c != OCITREE_TREE_ROOT && c; c = fs->tparent[c]) {
		if (np == ARRAY_SIZE(parts)) {
			/* absurdly deep: build it the slow way */
			_cleanup_free_ char *rest = rw_tree_path(fs, c);
			buf_puts(&b, rest);
			break;
		}
		parts[np++] = ocitree_tree_dir_entry(fs->tree, fs->tparent[c], fs->tpos[c], NULL);
	}
	while (np > 0) {
		buf_puts(&b, "/");
		buf_puts(&b, parts[--np]);
	}
	if (!b.len)
		buf_puts(&b, "/");
	return buf_steal(&b);
}

struct tname {
	uint32_t dir;
	const char *name;
};

/* Every name of inode k in the current tree. */
static size_t tree_names(struct rwfs *fs, uint32_t k, struct tname **out)
{
	tindex_build(fs);
	size_t n = 0, cap = 0;
	struct tname *v = NULL;
	if (lnlink(fs->tree, k) <= 1 || ltype(fs->tree, k) == S_IFDIR) {
		v = xmalloc(sizeof(*v));
		v[0].dir = fs->tparent[k];
		v[0].name = ocitree_tree_dir_entry(fs->tree, fs->tparent[k], fs->tpos[k], NULL);
		*out = v;
		return fs->tparent[k] ? 1 : 0;
	}
	uint32_t ni = ocitree_tree_inodes(fs->tree);
	for (uint32_t d = 1; d <= ni; d++) {
		uint32_t c = ocitree_tree_dir_size(fs->tree, d);
		for (uint32_t i = 0; i < c; i++) {
			uint32_t child;
			const char *name = ocitree_tree_dir_entry(fs->tree, d, i, &child);
			if (child == k) {
				GROW(v, cap, n + 1);
				v[n++] = (struct tname){d, name};
			}
		}
	}
	*out = v;
	return n;
}

/* Read lower file data (inode k of t) at off. */
static ssize_t lower_pread(struct ocitree_tree *t, uint32_t k, void *buf, size_t len, uint64_t off,
			   struct ocitree_error **err)
{
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = lentry(t, k, &l);
	if (!e || e->type != OCITREE_ENTRY_REG)
		return 0;
	if (off >= e->size)
		return 0;
	if (len > e->size - off)
		len = (size_t)(e->size - off);
	return ocitree_layer_index_pread(l, buf, len, e->data_off + off, err);
}

/* Copy the first len bytes of lower file k into fd (at offset 0). */
static int copy_lower_data(struct ocitree_tree *t, uint32_t k, int fd, uint64_t len)
{
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = lentry(t, k, &l);
	if (!e || e->type != OCITREE_ENTRY_REG)
		return 0;
	if (len > e->size)
		len = e->size;
	uint64_t base = 0;
	int dfd = ocitree_layer_index_data_fd(l, &base);
	uint64_t done = 0;
	if (dfd >= 0) {
		while (done < len) {
			loff_t in = (loff_t)(base + e->data_off + done), outo = (loff_t)done;
			ssize_t r = copy_file_range(dfd, &in, fd, &outo, (size_t)MIN(len - done, 1u << 30), 0);
			if (r < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP))
				break;
			if (r < 0)
				return errno;
			if (r == 0)
				return EIO;
			done += (uint64_t)r;
		}
	}
	_cleanup_free_ char *buf = NULL;
	while (done < len) {
		if (!buf)
			buf = xmalloc(1u << 20);
		size_t chunk = (size_t)MIN(len - done, 1u << 20);
		_cleanup_error_ struct ocitree_error *err = NULL;
		ssize_t r = dfd >= 0 ? pread_full(dfd, buf, chunk, (off_t)(base + e->data_off + done))
				     : ocitree_layer_index_pread(l, buf, chunk, e->data_off + done, &err);
		if (r < 0) {
			ocitree_log(OCITREE_LOG_ERROR, "copy up: read the image: %s", err ? err->msg : strerror(errno));
			return EIO;
		}
		if (r == 0)
			return EIO;
		if (pwrite(fd, buf, (size_t)r, (off_t)done) != r)
			return errno ? errno : EIO;
		done += (uint64_t)r;
	}
	return 0;
}

/* ================================================================ nodes */

static struct node *node_of(struct rwfs *fs, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? fs->root : (struct node *)(uintptr_t)ino;
}

static fuse_ino_t nodeid(struct rwfs *fs, struct node *n)
{
	return n == fs->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

static struct node *node_new(mode_t type, uint64_t ino)
{
	struct node *n = xcalloc(1, sizeof(*n));
	n->type = type;
	n->ino = ino;
	n->ufd = -1;
	n->rfd = -1;
	return n;
}

static void node_destroy(struct node *n)
{
	if (n->ufd >= 0)
		close(n->ufd);
	if (n->rfd >= 0)
		close(n->rfd);
	free(n);
}

/* Drop counts (nodes locked); frees the node when nothing holds it. */
static void node_unref_locked(struct rwfs *fs, struct node *n, uint64_t nlookup, uint32_t refs)
{
	n->nlookup -= MIN(nlookup, n->nlookup);
	n->refs -= MIN(refs, n->refs);
	if (n->nlookup || n->refs || n == fs->root)
		return;
	map_remove(&fs->by_lower, n, false);
	map_remove(&fs->by_upper, n, true);
	node_destroy(n);
}

void node_put(struct rwfs *fs, struct node *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&fs->nodes);
	node_unref_locked(fs, n, 0, 1);
	pthread_mutex_unlock(&fs->nodes);
}

static void node_pin(struct rwfs *fs, struct node *n)
{
	pthread_mutex_lock(&fs->nodes);
	n->refs++;
	pthread_mutex_unlock(&fs->nodes);
}

/* Count a lookup the kernel will hold (a reply with this node's entry). */
static void node_lookup_inc(struct rwfs *fs, struct node *n)
{
	pthread_mutex_lock(&fs->nodes);
	n->nlookup++;
	pthread_mutex_unlock(&fs->nodes);
}

/* The live node of lower inode k of the current tree, pinned, or NULL. */
static struct node *node_find_lower(struct rwfs *fs, uint32_t k)
{
	pthread_mutex_lock(&fs->nodes);
	struct node *n = map_find(&fs->by_lower, k, false);
	if (n)
		n->refs++;
	pthread_mutex_unlock(&fs->nodes);
	return n;
}

/* The node of lower inode k, pinned (found or made). */
static struct node *node_get_lower(struct rwfs *fs, uint32_t k)
{
	struct node *n = node_find_lower(fs, k);
	if (n)
		return n;
	struct node *nn = node_new(ltype(fs->tree, k), ino_lower(fs, k));
	nn->tree = fs->tree;
	nn->lower = k;
	nn->lkey = k;
	nn->refs = 1;
	pthread_mutex_lock(&fs->nodes);
	n = map_find(&fs->by_lower, k, false);
	if (n) {
		n->refs++;
	} else {
		map_insert(&fs->by_lower, nn, false);
		n = nn;
		nn = NULL;
	}
	pthread_mutex_unlock(&fs->nodes);
	free(nn);
	return n;
}

/* With virtual owners, devices, fifos and sockets are empty regular files
 * whose stat xattr says what they are: user xattrs, which hold owners, are
 * only allowed on regular files and directories. */
static bool virtual_special(mode_t m)
{
	return S_ISCHR(m) || S_ISBLK(m) || S_ISFIFO(m) || S_ISSOCK(m);
}

/* Read the private xattrs of an upper object into a node being made. */
static int node_read_meta(struct rwfs *fs, struct node *n, const struct upath *p, struct upper_meta *m)
{
	if (upper_meta_read(&fs->fmt, p, m) < 0)
		return errno;
	if (m->has_stat && fs->virtual_owners) {
		n->vstat = true;
		n->v_uid = m->uid;
		n->v_gid = m->gid;
		n->v_mode = m->mode;
		n->v_rdev = m->rdev;
	}
	return 0;
}

static bool wh_file_exists(int dirfd, const char *name);

/* The opaque marker of formats without xattrs. */
static bool has_opaque_marker(int dirfd)
{
	struct stat st;
	return fstatat(dirfd, UPPER_WH_OPAQUE, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Whether an object of this type can carry the origin xattr. */
static bool can_record_origin(const struct rwfs *fs, mode_t type)
{
	if (fs->fmt.xattrs == OCITREE_UPPER_XATTR_NONE)
		return false;
	if (fs->fmt.xattrs == OCITREE_UPPER_XATTR_USER)
		return S_ISREG(type) || S_ISDIR(type) || (fs->virtual_owners && !S_ISLNK(type));
	return true;
}

/* The inode of the current tree a lower path names, 0 when none of type. */
static uint32_t lower_by_path(struct rwfs *fs, const char *path, mode_t type)
{
	if (!path || path[0] != '/')
		return 0;
	uint32_t k = ocitree_tree_lookup_path(fs->tree, path + 1);
	return k && ltype(fs->tree, k) == type ? k : 0;
}

/* The node of the upper object name in dir (ust: its lstat), pinned.
 * below: the lower entry of name in dir's lower directory, or 0. */
static int node_get_upper(struct rwfs *fs, struct node *dir, const char *name, const struct stat *ust, uint32_t below,
			  struct node **out)
{
	pthread_mutex_lock(&fs->nodes);
	struct node *n = map_find(&fs->by_upper, ust->st_ino, true);
	if (n)
		n->refs++;
	pthread_mutex_unlock(&fs->nodes);
	if (n) {
		*out = n;
		return 0;
	}
	int fd = openat(dir->ufd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return e;
	}
	struct node *nn = node_new(st.st_mode & S_IFMT, 0);
	nn->ufd = fd;
	nn->uino = st.st_ino;
	nn->tree = fs->tree;
	struct upath p;
	upath_fd(&p, fd);
	struct upper_meta m;
	int r = node_read_meta(fs, nn, &p, &m);
	if (r) {
		node_destroy(nn);
		return r;
	}
	if (nn->vstat && (nn->v_mode & S_IFMT) != nn->type) {
		/* a special file kept as a regular file (virtual owners) */
		if (S_ISREG(nn->type) && virtual_special(nn->v_mode))
			nn->type = nn->v_mode & S_IFMT;
		else
			nn->vstat = false;
	}
	uint32_t origin = 0;
	if (S_ISREG(st.st_mode) && m.metacopy) {
		origin = lower_by_path(fs, m.redirect, S_IFREG);
		if (origin) {
			nn->metacopy = true;
			nn->lower = origin;
		} else {
			ocitree_log(OCITREE_LOG_WARN, "metacopy file '%s' points at '%s', which the image lacks", name,
				    m.redirect);
		}
	}
	if (!origin)
		origin = lower_by_path(fs, m.origin, nn->type);
	if (!origin && !S_ISDIR(st.st_mode) && below && ltype(dir->tree, below) == nn->type &&
	    lnlink(dir->tree, below) == 1 && !can_record_origin(fs, nn->type))
		origin = below; /* it could not record its origin: take the one it hides */
	if (S_ISDIR(st.st_mode)) {
		bool opaque = m.opaque || has_opaque_marker(fd) || wh_file_exists(dir->ufd, name);
		nn->lower = !opaque && below && ltype(dir->tree, below) == S_IFDIR ? below : 0;
		if (!origin)
			origin = nn->lower;
	}
	upper_meta_clear(&m);
	nn->ino = origin ? ino_lower(fs, origin) : ino_upper(st.st_ino);
	nn->refs = 1;
	pthread_mutex_lock(&fs->nodes);
	n = map_find(&fs->by_upper, st.st_ino, true);
	if (n) {
		n->refs++;
	} else {
		nn->ukey = st.st_ino;
		map_insert(&fs->by_upper, nn, true);
		/* the same file under a lower name not yet copied up (a copy-up
		 * interrupted between two names) is the same node */
		if (origin && !S_ISDIR(st.st_mode) && !map_find(&fs->by_lower, origin, false)) {
			nn->lkey = origin;
			map_insert(&fs->by_lower, nn, false);
		}
		n = nn;
		nn = NULL;
	}
	pthread_mutex_unlock(&fs->nodes);
	if (nn)
		node_destroy(nn);
	*out = n;
	return 0;
}

/* ================================================================ attributes */

/* An entry of an upper directory as the merged view sees it: a visible
 * file of type (its S_IFMT bits), or (hides) a name it hides in the
 * image: a whiteout marker or device.  The opaque marker is not passed. */
typedef int (*upper_entry_fn)(void *ctx, const char *name, mode_t type, bool hides);

/* Call fn for the entries of the upper directory ufd until it returns
 * nonzero; 0, or an errno when the directory cannot be read. */
static int upper_dir_each(int ufd, upper_entry_fn fn, void *ctx)
{
	int dfd = openat(ufd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return errno;
	DIR *d = fdopendir(dfd);
	if (!d) {
		int e = errno;
		close(dfd);
		return e;
	}
	struct dirent *de;
	int stop = 0;
	while (!stop && (de = readdir(d))) {
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strcmp(name, UPPER_WH_OPAQUE) == 0)
			continue;
		if (upper_name_reserved(name)) {
			stop = fn(ctx, name + strlen(UPPER_WH_PREFIX), 0, true);
			continue;
		}
		mode_t type = (mode_t)DTTOIF(de->d_type);
		if (de->d_type == DT_CHR || de->d_type == DT_UNKNOWN) {
			struct stat st;
			if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue; /* gone since readdir */
			if (upper_is_whiteout(&st)) {
				stop = fn(ctx, name, 0, true);
				continue;
			}
			type = st.st_mode & S_IFMT;
		}
		stop = fn(ctx, name, type, false);
	}
	closedir(d);
	return 0;
}

/* Names of the upper directory, visible or hidden: the image's entries
 * by those names are not shown; the visible directories counted. */
struct upper_names {
	struct strset names;
	uint32_t dirs;
};

static int upper_names_add(void *ctx, const char *name, mode_t type, bool hides)
{
	struct upper_names *u = ctx;
	strset_add(&u->names, name);
	if (!hides && type == S_IFDIR)
		u->dirs++;
	return 0;
}

/* st_nlink of a merged directory: 2 + the directories in it. */
static uint32_t dir_nlink(struct rwfs *fs, struct node *n)
{
	uint32_t cached = atomic_load_explicit(&n->dir_nlink, memory_order_relaxed);
	if (cached)
		return cached;
	struct upper_names u = {0};
	if (upper_dir_each(n->ufd, upper_names_add, &u) != 0) {
		strset_free(&u.names);
		return 2;
	}
	uint32_t count = 2 + u.dirs;
	uint32_t nc = ocitree_tree_dir_size(n->tree, n->lower);
	for (uint32_t i = 0; i < nc; i++) {
		uint32_t c;
		const char *name = ocitree_tree_dir_entry(n->tree, n->lower, i, &c);
		if (ltype(n->tree, c) == S_IFDIR && !strset_has(&u.names, name))
			count++;
	}
	strset_free(&u.names);
	atomic_store_explicit(&n->dir_nlink, count, memory_order_relaxed);
	return count;
}

static void dir_changed(struct node *dir)
{
	atomic_store_explicit(&dir->dir_nlink, 0, memory_order_relaxed);
}

/* The attributes of a node (ns held). */
static int node_stat(struct rwfs *fs, struct node *n, struct stat *st)
{
	if (n->ufd >= 0) {
		if (fstat(n->ufd, st) < 0)
			return errno;
		if (fs->virtual_owners) {
			if (n->vstat) {
				st->st_uid = n->v_uid;
				st->st_gid = n->v_gid;
				st->st_mode = n->v_mode;
				st->st_rdev = n->v_rdev;
			} else {
				st->st_uid = 0;
				st->st_gid = 0;
			}
		}
		if (n->metacopy)
			st->st_blocks = (st->st_size + 511) / 512;
		if (S_ISDIR(n->type) && n->lower && st->st_nlink)
			st->st_nlink = dir_nlink(fs, n);
	} else {
		if (ocitree_tree_stat(n->tree, n->lower, st) < 0)
			return ENOENT;
		st->st_blksize = 4096;
		if (n->unlinked)
			st->st_nlink = 0;
	}
	st->st_ino = n->ino;
	return 0;
}

static int fill_entry(struct rwfs *fs, struct node *n, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	int r = node_stat(fs, n, &e->attr);
	if (r)
		return r;
	e->ino = nodeid(fs, n);
	e->attr_timeout = fs->timeout;
	e->entry_timeout = fs->timeout;
	return 0;
}

/* ================================================================ names */

static int check_name(const char *name)
{
	if (strlen(name) > NAME_MAX)
		return ENAMETOOLONG;
	return 0;
}

/* Names that cannot be created: ".wh." is how layers say "deleted". */
static int check_new_name(const char *name)
{
	int r = check_name(name);
	if (r)
		return r;
	return upper_name_reserved(name) ? EINVAL : 0;
}

enum { FOUND_NONE = 0, FOUND_UPPER, FOUND_LOWER };

/* What name is in the merged directory dir (ns held). */
struct found {
	int kind;
	struct stat ust;  /* FOUND_UPPER: its lstat */
	uint32_t lower;   /* FOUND_LOWER: the tree inode */
	uint32_t below;   /* the lower entry of name in dir's lower directory, visible or not */
	bool whiteout;    /* the upper directory has a whiteout for name */
};

static bool wh_file_exists(int dirfd, const char *name)
{
	char wh[NAME_MAX + 8];
	snprintf(wh, sizeof(wh), UPPER_WH_PREFIX "%s", name);
	struct stat st;
	return strlen(name) + strlen(UPPER_WH_PREFIX) <= NAME_MAX && fstatat(dirfd, wh, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static int find_entry(struct rwfs *fs, struct node *dir, const char *name, struct found *f)
{
	memset(f, 0, sizeof(*f));
	if (!S_ISDIR(dir->type))
		return ENOTDIR;
	f->below = dir->lower ? ocitree_tree_lookup(dir->tree, dir->lower, name) : 0;
	if (dir->ufd >= 0) {
		if (upper_name_reserved(name))
			return 0;
		if (fstatat(dir->ufd, name, &f->ust, AT_SYMLINK_NOFOLLOW) == 0) {
			if (upper_is_whiteout(&f->ust)) {
				f->whiteout = true;
				return 0;
			}
			f->kind = FOUND_UPPER;
			return 0;
		}
		if (errno != ENOENT)
			return errno;
		if (fs->fmt.whiteout == OCITREE_UPPER_WHITEOUT_FILE && f->below && wh_file_exists(dir->ufd, name)) {
			f->whiteout = true;
			return 0;
		}
	}
	if (f->below) {
		f->kind = FOUND_LOWER;
		f->lower = f->below;
	}
	return 0;
}

/* The node of what find_entry found, pinned. */
static int node_from_found(struct rwfs *fs, struct node *dir, const char *name, const struct found *f,
			   struct node **out)
{
	*out = NULL;
	if (f->kind == FOUND_UPPER)
		return node_get_upper(fs, dir, name, &f->ust, f->below, out);
	if (f->kind == FOUND_LOWER) {
		*out = node_get_lower(fs, f->lower);
		return 0;
	}
	return ENOENT;
}

/* Look name up in dir: the node, pinned. */
static int lookup_node(struct rwfs *fs, struct node *dir, const char *name, struct node **out, struct found *fo)
{
	struct found f;
	int r = find_entry(fs, dir, name, &f);
	if (fo)
		*fo = f;
	if (r)
		return r;
	return node_from_found(fs, dir, name, &f, out);
}

struct empty_walk {
	struct strset hidden;
	bool empty;
};

static int empty_entry(void *ctx, const char *name, mode_t type, bool hides)
{
	struct empty_walk *w = ctx;
	if (hides) {
		strset_add(&w->hidden, name);
		return 0;
	}
	w->empty = false;
	return 1;
}

/* Whether the merged directory dir is empty. */
static int dir_is_empty(struct rwfs *fs, struct node *dir, bool *empty)
{
	struct empty_walk w = {.empty = true};
	if (dir->ufd >= 0) {
		int e = upper_dir_each(dir->ufd, empty_entry, &w);
		if (e) {
			strset_free(&w.hidden);
			return e;
		}
	}
	*empty = w.empty;
	uint32_t nc = dir->lower ? ocitree_tree_dir_size(dir->tree, dir->lower) : 0;
	for (uint32_t i = 0; *empty && i < nc; i++) {
		const char *name = ocitree_tree_dir_entry(dir->tree, dir->lower, i, NULL);
		if (!strset_has(&w.hidden, name))
			*empty = false;
	}
	strset_free(&w.hidden);
	return 0;
}

/* ================================================================ writing the upper directory */

struct ptimes {
	struct timespec ts[2];
	bool ok;
};

static void ptimes_save(int dfd, struct ptimes *p)
{
	struct stat st;
	p->ok = fstat(dfd, &st) == 0;
	p->ts[0] = st.st_atim;
	p->ts[1] = st.st_mtim;
}

/* Copy-up is not a change of the parent directory: keep its times. */
static void ptimes_restore(int dfd, const struct ptimes *p)
{
	if (p->ok)
		utimensat(dfd, "", p->ts, AT_EMPTY_PATH);
}

static void warn_xattr(struct rwfs *fs, const char *name, int e)
{
	pthread_mutex_lock(&fs->warn_lock);
	bool first = !fs->warned_xattr;
	fs->warned_xattr = true;
	pthread_mutex_unlock(&fs->warn_lock);
	if (first)
		ocitree_log(OCITREE_LOG_WARN,
			    "cannot keep xattr '%s' in the upper directory (%s): copied-up files lose such xattrs", name,
			    strerror(e));
}

static int set_private(struct rwfs *fs, int fd, const char *which, const char *value)
{
	char n[UPPER_XATTR_NAME_MAX];
	if (!upper_xattr_name(&fs->fmt, which, n))
		return 0;
	struct upath p;
	upath_fd(&p, fd);
	return upath_setxattr(&p, n, value, strlen(value), 0) < 0 ? errno : 0;
}

static void remove_private(struct rwfs *fs, int fd, const char *which)
{
	char n[UPPER_XATTR_NAME_MAX];
	if (!upper_xattr_name(&fs->fmt, which, n))
		return;
	struct upath p;
	upath_fd(&p, fd);
	upath_removexattr(&p, n);
}

static int set_vstat(struct rwfs *fs, int fd, uid_t uid, gid_t gid, mode_t mode, dev_t rdev)
{
	char v[64];
	upper_stat_format(v, uid, gid, mode, rdev);
	return set_private(fs, fd, UPPER_X_STAT, v);
}

/* The permission bits an object has on disk: with virtual owners the
 * daemon's user must be able to use it whatever its mode says. */
static mode_t real_perm(struct rwfs *fs, mode_t mode)
{
	mode_t p = mode & 07777;
	if (fs->virtual_owners)
		p = (p & 0777) | (S_ISDIR(mode) ? 0700 : 0600);
	return p;
}

/* Owner, mode (with type) and device number of a new upper object (fd: an
 * O_PATH fd of it).  gid -1 keeps the group it got (from a setgid dir). */
static int set_owner_mode(struct rwfs *fs, int fd, uid_t uid, gid_t gid, mode_t mode, dev_t rdev)
{
	bool link = S_ISLNK(mode);
	if (fs->virtual_owners) {
		if (link)
			return 0; /* no user xattrs on symlinks: they show as root's */
		struct upath p;
		upath_fd(&p, fd);
		if (chmod(p.path, real_perm(fs, mode)) < 0)
			return errno;
		return set_vstat(fs, fd, uid, gid == (gid_t)-1 ? 0 : gid, mode, rdev);
	}
	if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return errno;
	if (!link) {
		struct upath p;
		upath_fd(&p, fd);
		if (chmod(p.path, mode & 07777) < 0)
			return errno;
	}
	return 0;
}

/* Give an upper object (fd: O_PATH) the metadata of lower inode k: owner,
 * mode, xattrs, origin; times are the caller's (after placing). */
static int set_lower_meta(struct rwfs *fs, struct ocitree_tree *t, uint32_t k, int fd, const char *origin)
{
	struct stat lst;
	if (ocitree_tree_stat(t, k, &lst) < 0)
		return EIO;
	int r = set_owner_mode(fs, fd, lst.st_uid, lst.st_gid, lst.st_mode, lst.st_rdev);
	if (r)
		return r;
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = lentry(t, k, &l);
	struct upath p;
	upath_fd(&p, fd);
	uint32_t cur = 0;
	const char *xn;
	const void *xv;
	size_t xl;
	while (e && ocitree_layer_entry_xattr_next(l, e, &cur, &xn, &xv, &xl)) {
		_cleanup_free_ char *name = upper_xattr_escape(&fs->fmt, xn);
		if (upath_setxattr(&p, name, xv, xl, 0) < 0) {
			if (errno == EPERM || errno == ENOTSUP || errno == EACCES || errno == EINVAL)
				warn_xattr(fs, xn, errno);
			else
				return errno;
		}
	}
	if (origin) {
		/* user xattrs are not allowed on symlinks: those go without */
		r = set_private(fs, fd, UPPER_X_ORIGIN, origin);
		if (r && r != EPERM && r != ENOTSUP)
			return r;
	}
	return 0;
}

static int set_lower_times(struct ocitree_tree *t, uint32_t k, int fd)
{
	struct stat lst;
	if (ocitree_tree_stat(t, k, &lst) < 0)
		return EIO;
	struct timespec ts[2] = {lst.st_mtim, lst.st_mtim};
	return utimensat(fd, "", ts, AT_EMPTY_PATH) < 0 ? errno : 0;
}

static int set_opaque(struct rwfs *fs, int dirfd)
{
	if (fs->fmt.xattrs != OCITREE_UPPER_XATTR_NONE)
		return set_private(fs, dirfd, UPPER_X_OPAQUE, "y");
	int fd = openat(dirfd, UPPER_WH_OPAQUE, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

/* Move name out of dirfd into the work directory and remove it there. */
static int move_out_and_remove(struct rwfs *fs, int dirfd, const char *name)
{
	char tmp[64];
	upper_tmp_name(tmp);
	if (renameat(dirfd, name, fs->upper->work_fd, tmp) < 0)
		return errno;
	if (upper_rm_rf_at(fs->upper->work_fd, tmp) < 0)
		ocitree_log(OCITREE_LOG_WARN, "remove '%s' from the work directory: %s", tmp, strerror(errno));
	return 0;
}

/* Make a whiteout for name in dirfd, where the upper directory has nothing. */
static int wh_make(struct rwfs *fs, int dirfd, const char *name)
{
	if (fs->fmt.whiteout == OCITREE_UPPER_WHITEOUT_CHARDEV)
		return mknodat(dirfd, name, S_IFCHR | 0000, 0) < 0 ? errno : 0;
	char wh[NAME_MAX + 8];
	if (strlen(name) + strlen(UPPER_WH_PREFIX) > NAME_MAX)
		return ENAMETOOLONG;
	snprintf(wh, sizeof(wh), UPPER_WH_PREFIX "%s", name);
	int fd = openat(dirfd, wh, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

/* Replace the upper entry name by a whiteout, in one step where the file
 * system allows. */
static int wh_replace(struct rwfs *fs, int dirfd, const char *name)
{
	int wfd = fs->upper->work_fd;
	char tmp[64];
	upper_tmp_name(tmp);
	if (fs->fmt.whiteout == OCITREE_UPPER_WHITEOUT_CHARDEV) {
		if (renameat2(dirfd, name, wfd, tmp, RENAME_WHITEOUT) == 0) {
			upper_rm_rf_at(wfd, tmp);
			return 0;
		}
		if (errno != EINVAL && errno != EPERM && errno != ENOSYS)
			return errno;
		if (mknodat(wfd, tmp, S_IFCHR | 0000, 0) < 0)
			return errno;
		if (renameat2(wfd, tmp, dirfd, name, RENAME_EXCHANGE) == 0) {
			upper_rm_rf_at(wfd, tmp);
			return 0;
		}
		unlinkat(wfd, tmp, 0);
		/* no atomic way: remove, then mark */
		int r = move_out_and_remove(fs, dirfd, name);
		return r ? r : wh_make(fs, dirfd, name);
	}
	/* the marker first: meanwhile the entry still wins over it */
	int r = wh_make(fs, dirfd, name);
	return r ? r : move_out_and_remove(fs, dirfd, name);
}

/* Remove upper entry name without leaving a whiteout. */
static int upper_remove(struct rwfs *fs, int dirfd, const char *name, bool dir)
{
	if (unlinkat(dirfd, name, dir ? AT_REMOVEDIR : 0) == 0)
		return 0;
	if (dir && (errno == ENOTEMPTY || errno == EEXIST))
		return move_out_and_remove(fs, dirfd, name);
	return errno;
}

/* Put the prepared object tmp of the work directory at name in dirfd, where
 * the upper directory has nothing or a whiteout. */
static int place(struct rwfs *fs, const char *tmp, int dirfd, const char *name, bool dir, bool whiteout)
{
	int wfd = fs->upper->work_fd;
	if (!whiteout || fs->fmt.whiteout == OCITREE_UPPER_WHITEOUT_FILE) {
		if (renameat2(wfd, tmp, dirfd, name, RENAME_NOREPLACE) < 0) {
			if (errno != EINVAL)
				return errno;
			struct stat st;
			if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
				return EEXIST;
			if (renameat(wfd, tmp, dirfd, name) < 0)
				return errno;
		}
		if (whiteout) {
			char wh[NAME_MAX + 8];
			snprintf(wh, sizeof(wh), UPPER_WH_PREFIX "%s", name);
			unlinkat(dirfd, wh, 0);
		}
		return 0;
	}
	if (!dir)
		return renameat(wfd, tmp, dirfd, name) < 0 ? errno : 0;
	/* a directory cannot be renamed over a device: swap them */
	if (renameat2(wfd, tmp, dirfd, name, RENAME_EXCHANGE) == 0) {
		unlinkat(wfd, tmp, 0);
		return 0;
	}
	if (errno != EINVAL && errno != ENOSYS)
		return errno;
	if (unlinkat(dirfd, name, 0) < 0)
		return errno;
	return renameat(wfd, tmp, dirfd, name) < 0 ? errno : 0;
}

/* ================================================================ copy-up */

enum cu {
	CU_META,  /* metadata only (metacopy where the format allows) */
	CU_DATA,  /* metadata and data */
	CU_EMPTY, /* metadata, and the data will be truncated to nothing */
};

/* Give live node k of the current tree the upper object name in dirfd. */
static int attach(struct rwfs *fs, struct node *n, int dirfd, const char *name, bool metacopy)
{
	if (n->ufd >= 0)
		return 0;
	int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return e;
	}
	uint32_t k = n->lower;
	if (fs->virtual_owners) {
		struct stat lst;
		if (ocitree_tree_stat(n->tree, k, &lst) == 0 && !S_ISLNK(lst.st_mode)) {
			n->vstat = true;
			n->v_uid = lst.st_uid;
			n->v_gid = lst.st_gid;
			n->v_mode = lst.st_mode;
			n->v_rdev = lst.st_rdev;
		}
	}
	n->metacopy = metacopy;
	if (!S_ISDIR(n->type) && !metacopy)
		n->lower = 0;
	pthread_mutex_lock(&fs->nodes);
	n->ufd = fd;
	n->uino = st.st_ino;
	n->ukey = st.st_ino;
	if (!n->in_upper && !map_find(&fs->by_upper, st.st_ino, true))
		map_insert(&fs->by_upper, n, true);
	pthread_mutex_unlock(&fs->nodes);
	return 0;
}

static void attach_lower(struct rwfs *fs, uint32_t k, int dirfd, const char *name, bool metacopy)
{
	struct node *n = node_find_lower(fs, k);
	if (!n)
		return;
	if (n->ufd < 0 && n->tree == fs->tree && n->lower == k) {
		int r = attach(fs, n, dirfd, name, metacopy);
		if (r)
			ocitree_log(OCITREE_LOG_WARN, "copy up '%s': %s", name, strerror(r));
	}
	node_put(fs, n);
}

/* Copy tree directory k up as name in dirfd (where the upper directory has
 * nothing); returns an O_PATH fd of it in *out. */
static int cu_dir(struct rwfs *fs, int dirfd, const char *name, uint32_t k, int *out)
{
	int wfd = fs->upper->work_fd;
	char tmp[64];
	upper_tmp_name(tmp);
	if (mkdirat(wfd, tmp, 0700) < 0)
		return errno;
	int fd = openat(wfd, tmp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		unlinkat(wfd, tmp, AT_REMOVEDIR);
		return e;
	}
	_cleanup_free_ char *origin = rw_tree_path(fs, k);
	int r = set_lower_meta(fs, fs->tree, k, fd, origin);
	struct ptimes pt;
	ptimes_save(dirfd, &pt);
	if (!r)
		r = place(fs, tmp, dirfd, name, true, false);
	ptimes_restore(dirfd, &pt);
	if (r) {
		close(fd);
		upper_rm_rf_at(wfd, tmp);
		return r;
	}
	set_lower_times(fs->tree, k, fd);
	attach_lower(fs, k, dirfd, name, false);
	*out = fd;
	return 0;
}

/* An O_PATH fd of the upper directory of tree directory k (at its tree path,
 * I2), copying it and its parents up as needed. */
static int upper_tree_dir(struct rwfs *fs, uint32_t k, int *out)
{
	tindex_build(fs);
	uint32_t chain[4096];
	size_t n = 0;
	int cur = -1;
	for (uint32_t c = k;; c = fs->tparent[c]) {
		if (c == OCITREE_TREE_ROOT) {
			cur = fcntl(fs->root->ufd, F_DUPFD_CLOEXEC, 3);
			break;
		}
		struct node *ln = node_find_lower(fs, c);
		if (ln && ln->ufd >= 0 && S_ISDIR(ln->type) && ln->tree == fs->tree) {
			cur = fcntl(ln->ufd, F_DUPFD_CLOEXEC, 3);
			node_put(fs, ln);
			break;
		}
		node_put(fs, ln);
		if (!fs->tparent[c] || n == ARRAY_SIZE(chain))
			return EIO;
		chain[n++] = c;
	}
	if (cur < 0)
		return errno;
	while (n > 0) {
		uint32_t c = chain[--n];
		const char *name = ocitree_tree_dir_entry(fs->tree, fs->tparent[c], fs->tpos[c], NULL);
		struct stat st;
		int next = -1;
		if (fstatat(cur, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (!S_ISDIR(st.st_mode)) {
				ocitree_log(OCITREE_LOG_ERROR, "upper directory: '%s' hides a visible directory", name);
				close(cur);
				return EIO;
			}
			next = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (next < 0) {
				int e = errno;
				close(cur);
				return e;
			}
			attach_lower(fs, c, cur, name, false);
		} else if (errno == ENOENT) {
			int r = cu_dir(fs, cur, name, c, &next);
			if (r) {
				close(cur);
				return r;
			}
		} else {
			int e = errno;
			close(cur);
			return e;
		}
		close(cur);
		cur = next;
	}
	*out = cur;
	return 0;
}

static int ensure_upper_dir(struct rwfs *fs, struct node *dir)
{
	if (dir->ufd >= 0)
		return 0;
	if (dir->tree != fs->tree || !dir->lower || dir->unlinked)
		return ENOENT;
	int fd = -1;
	int r = upper_tree_dir(fs, dir->lower, &fd);
	if (r)
		return r;
	close(fd);
	return dir->ufd >= 0 ? 0 : EIO;
}

/* The names of a hardlinked file are linked into the upper directory one
 * by one: the journal (upper_links_journal_write), written first, lists
 * them, so that a crash in between is finished at the next mount
 * (links_journal_replay) and the names stay one file. */
static int links_journal_write(struct rwfs *fs, const struct tname *names, size_t nn)
{
	char **paths = xcalloc(nn + 1, sizeof(*paths));
	for (size_t i = 0; i < nn; i++) {
		_cleanup_free_ char *dir = rw_tree_path(fs, names[i].dir);
		paths[i] = xasprintf("%s/%s", strcmp(dir, "/") == 0 ? "" : dir, names[i].name);
	}
	_cleanup_error_ struct ocitree_error *err = NULL;
	int r = upper_links_journal_write(fs->upper, (const char *const *)paths, nn, &err);
	strv_free(paths);
	if (r < 0) {
		ocitree_log(OCITREE_LOG_ERROR, "copy up: %s", err->msg);
		return err->errnum ? err->errnum : EIO;
	}
	return 0;
}

/* An O_PATH fd of the upper directory at image path dir ("/a/b"), without
 * copying anything up; -1 when it is not there. */
static int upper_dir_at(struct rwfs *fs, const char *dir)
{
	int cur = fcntl(fs->root->ufd, F_DUPFD_CLOEXEC, 3);
	_cleanup_free_ char *copy = xstrdup(dir);
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c && cur >= 0; c = strtok_r(NULL, "/", &save)) {
		int next = openat(cur, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(cur);
		cur = next;
	}
	return cur;
}

/* Finish the linking a crash interrupted (before serving). */
static void links_journal_replay(struct rwfs *fs)
{
	_cleanup_strv_ char **paths = NULL;
	_cleanup_error_ struct ocitree_error *err = NULL;
	if (upper_links_journal_read(fs->upper, &paths, &err) < 0) {
		ocitree_log(OCITREE_LOG_WARN, "%s: ignored", err->msg);
		upper_links_journal_remove(fs->upper);
		return;
	}
	if (!paths)
		return;
	/* every path is "/" and names that are not "." or "..": nothing here
	 * leads out of the upper directory */
	const char *first = paths[0];
	const char *slash0 = strrchr(first, '/');
	_cleanup_free_ char *dir0 = xstrndup(first, (size_t)(slash0 - first));
	int d0 = upper_dir_at(fs, dir0);
	struct stat st;
	if (d0 >= 0 && fstatat(d0, slash0 + 1, &st, AT_SYMLINK_NOFOLLOW) == 0 && !upper_is_whiteout(&st)) {
		for (size_t i = 1; paths[i]; i++) {
			const char *p = paths[i];
			const char *slash = strrchr(p, '/');
			_cleanup_free_ char *dir = xstrndup(p, (size_t)(slash - p));
			uint32_t k = *dir ? ocitree_tree_lookup_path(fs->tree, dir + 1) : OCITREE_TREE_ROOT;
			int dfd = -1;
			if (!k || upper_tree_dir(fs, k, &dfd))
				continue;
			if (fstatat(dfd, slash + 1, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
				if (linkat(d0, slash0 + 1, dfd, slash + 1, 0) == 0)
					ocitree_log(OCITREE_LOG_INFO, "copy-up of '%s' interrupted: '%s' linked now", first, p);
			}
			close(dfd);
		}
	}
	if (d0 >= 0)
		close(d0);
	upper_links_journal_remove(fs->upper);
}

/* Copy lower non-directory k of tree t up: the object is made in the work
 * directory, then renamed to its (first) name and hardlinked at the others
 * (I1); orphan: it has no name any more and stays unlinked.  *out: an O_PATH
 * fd of it; *metacopy whether only its metadata was copied. */
static int cu_file(struct rwfs *fs, struct ocitree_tree *t, uint32_t k, enum cu cu, bool orphan, int *out,
		   bool *metacopy)
{
	int wfd = fs->upper->work_fd;
	struct stat lst;
	if (ocitree_tree_stat(t, k, &lst) < 0)
		return EIO;
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = lentry(t, k, &l);
	char tmp[64];
	upper_tmp_name(tmp);
	_cleanup_free_ char *origin = orphan ? NULL : rw_tree_path(fs, k);
	*metacopy = false;
	int r = 0;
	switch (lst.st_mode & S_IFMT) {
	case S_IFREG: {
		_cleanup_close_ int fd = openat(wfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return errno;
		if (cu == CU_META && lst.st_size > 0 && fs->fmt.xattrs != OCITREE_UPPER_XATTR_NONE && origin) {
			/* metadata only: the size is right, the blocks are a hole,
			 * and the data is the lower file's */
			if (ftruncate(fd, lst.st_size) < 0 || (r = set_private(fs, fd, UPPER_X_METACOPY, "")) ||
			    (r = set_private(fs, fd, UPPER_X_REDIRECT, origin)))
				r = r ? r : errno;
			else
				*metacopy = true;
		} else if (cu != CU_EMPTY && lst.st_size > 0) {
			r = copy_lower_data(t, k, fd, (uint64_t)lst.st_size);
			if (!r && fsync(fd) < 0)
				r = errno;
		}
		break;
	}
	case S_IFLNK:
		if (symlinkat(e ? ocitree_layer_index_string(l, e->link) : "", wfd, tmp) < 0)
			return errno;
		break;
	case S_IFCHR:
	case S_IFBLK:
	case S_IFIFO:
	case S_IFSOCK:
		if (fs->virtual_owners) {
			int fd = openat(wfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (fd < 0)
				return errno;
			close(fd);
		} else if ((S_ISCHR(lst.st_mode) || S_ISBLK(lst.st_mode)) && lst.st_rdev == 0) {
			return EPERM; /* a 0/0 device would read as a whiteout */
		} else if (mknodat(wfd, tmp, (lst.st_mode & S_IFMT) | 0600, lst.st_rdev) < 0) {
			return errno;
		}
		break;
	default:
		return EIO;
	}
	int pfd = openat(wfd, tmp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0) {
		r = r ? r : errno;
		unlinkat(wfd, tmp, 0);
		return r;
	}
	if (!r)
		r = set_lower_meta(fs, t, k, pfd, origin);
	if (!r)
		r = set_lower_times(t, k, pfd);
	if (r) {
		close(pfd);
		unlinkat(wfd, tmp, 0);
		return r;
	}
	if (orphan) {
		unlinkat(wfd, tmp, 0);
		*out = pfd;
		return 0;
	}
	struct tname *names = NULL;
	size_t nn = tree_names(fs, k, &names);
	int d0 = -1;
	if (nn > 1)
		r = links_journal_write(fs, names, nn);
	for (size_t i = 0; i < nn && !r; i++) {
		int dfd = -1;
		r = upper_tree_dir(fs, names[i].dir, &dfd);
		if (r)
			break;
		struct ptimes pt;
		ptimes_save(dfd, &pt);
		if (i == 0) {
			r = place(fs, tmp, dfd, names[i].name, false, false);
			d0 = dfd;
		} else if (linkat(d0, names[0].name, dfd, names[i].name, 0) < 0) {
			r = errno;
		}
		ptimes_restore(dfd, &pt);
		if (i > 0)
			close(dfd);
	}
	free(names);
	if (d0 >= 0)
		close(d0);
	if (nn > 1 && !r)
		upper_links_journal_remove(fs->upper);
	if (r || nn == 0) {
		close(pfd);
		unlinkat(wfd, tmp, 0);
		return r ? r : EIO;
	}
	*out = pfd;
	return 0;
}

/* Fill a metacopy file with its data in place: its inode (and hardlinks)
 * stay; the metacopy xattr goes last, so that until then the lower data is
 * what shows. */
static int cu_fill(struct rwfs *fs, struct node *n, enum cu cu)
{
	struct upath p;
	upath_fd(&p, n->ufd);
	_cleanup_close_ int fd = open(p.path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return errno;
	int r = 0;
	if (cu == CU_EMPTY) {
		if (ftruncate(fd, 0) < 0)
			return errno;
	} else {
		r = copy_lower_data(n->tree, n->lower, fd, (uint64_t)st.st_size);
		if (!r && fsync(fd) < 0)
			r = errno;
	}
	if (r)
		return r;
	struct timespec ts[2] = {st.st_atim, st.st_mtim};
	futimens(fd, ts);
	remove_private(fs, fd, UPPER_X_METACOPY);
	remove_private(fs, fd, UPPER_X_REDIRECT);
	n->metacopy = false;
	n->lower = 0;
	return 0;
}

/* Make sure node n has an upper object (ns exclusive). */
static int copy_up(struct rwfs *fs, struct node *n, enum cu cu)
{
	if (n->ufd >= 0)
		return n->metacopy && cu != CU_META ? cu_fill(fs, n, cu) : 0;
	if (!n->lower)
		return EIO;
	if (S_ISDIR(n->type))
		return ensure_upper_dir(fs, n);
	if (!n->unlinked && n->tree != fs->tree)
		return EIO;
	int fd = -1;
	bool metacopy = false;
	int r = cu_file(fs, n->tree, n->lower, cu, n->unlinked, &fd, &metacopy);
	if (r)
		return r;
	if (n->ufd < 0) {
		struct stat st;
		if (fstat(fd, &st) < 0) {
			r = errno;
			close(fd);
			return r;
		}
		if (fs->virtual_owners) {
			struct stat lst;
			if (ocitree_tree_stat(n->tree, n->lower, &lst) == 0 && !S_ISLNK(lst.st_mode)) {
				n->vstat = true;
				n->v_uid = lst.st_uid;
				n->v_gid = lst.st_gid;
				n->v_mode = lst.st_mode;
				n->v_rdev = lst.st_rdev;
			}
		}
		n->metacopy = metacopy;
		if (!metacopy)
			n->lower = 0;
		n->unlinked = false;
		pthread_mutex_lock(&fs->nodes);
		n->ufd = fd;
		n->uino = st.st_ino;
		n->ukey = st.st_ino;
		if (!n->in_upper && !map_find(&fs->by_upper, st.st_ino, true))
			map_insert(&fs->by_upper, n, true);
		pthread_mutex_unlock(&fs->nodes);
	} else {
		close(fd);
	}
	return 0;
}

/* Copy up everything below merged directory dir and make it opaque, so that
 * it can move (I2). */
static int cu_subtree(struct rwfs *fs, int dfd, uint32_t ld)
{
	uint32_t nc = ocitree_tree_dir_size(fs->tree, ld);
	for (uint32_t i = 0; i < nc; i++) {
		uint32_t c;
		const char *name = ocitree_tree_dir_entry(fs->tree, ld, i, &c);
		struct stat st;
		int sub = -1;
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (!S_ISDIR(st.st_mode) || ltype(fs->tree, c) != S_IFDIR)
				continue; /* a whiteout, or the upper entry replaces the lower one */
			sub = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				return errno;
			struct upath p;
			upath_fd(&p, sub);
			struct upper_meta m;
			if (upper_meta_read(&fs->fmt, &p, &m) == 0 &&
			    (m.opaque || has_opaque_marker(sub) || wh_file_exists(dfd, name))) {
				upper_meta_clear(&m);
				close(sub);
				continue;
			}
			upper_meta_clear(&m);
		} else if (errno != ENOENT) {
			return errno;
		} else if (fs->fmt.whiteout == OCITREE_UPPER_WHITEOUT_FILE && wh_file_exists(dfd, name)) {
			continue;
		} else if (ltype(fs->tree, c) == S_IFDIR) {
			int r = cu_dir(fs, dfd, name, c, &sub);
			if (r)
				return r;
		} else {
			struct node *n = node_find_lower(fs, c);
			int r;
			if (n && n->ufd < 0 && n->tree == fs->tree) {
				r = copy_up(fs, n, CU_META);
			} else {
				int fd = -1;
				bool mc;
				r = cu_file(fs, fs->tree, c, CU_META, false, &fd, &mc);
				if (!r)
					close(fd);
			}
			node_put(fs, n);
			if (r)
				return r;
			continue;
		}
		int r = cu_subtree(fs, sub, c);
		close(sub);
		if (r)
			return r;
	}
	return 0;
}

static int cu_tree(struct rwfs *fs, struct node *dir)
{
	int r = ensure_upper_dir(fs, dir);
	if (r || !dir->lower)
		return r;
	if (dir->tree != fs->tree)
		return EIO;
	r = cu_subtree(fs, dir->ufd, dir->lower);
	if (!r)
		r = set_opaque(fs, dir->ufd);
	if (!r) {
		dir->lower = 0;
		dir_changed(dir);
	}
	return r;
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
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	/* the data of writes moves from the kernel to the upper file through
	 * a pipe, without a copy in between */
	if (conn->capable & FUSE_CAP_SPLICE_READ)
		conn->want |= FUSE_CAP_SPLICE_READ;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* the kernel clears setuid bits by sending us a mode change: the
	 * daemon (root) would not on its own */
	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
	/* writes go through to the upper file before they return, so that a
	 * commit sees each one that returned */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* page contents change only through this mount */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	conn->max_readahead = 1u << 20;
	if (conn->want & FUSE_CAP_SPLICE_READ)
		conn->max_write = splice_max_write(conn->max_write);
}

static void fs_rw_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct rwfs *fs = fs_of(req);
	struct fuse_entry_param e;
	int r = check_name(name);
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
	int r = node_stat(fs, node_of(fs, ino), &st);
	pthread_rwlock_unlock(&fs->ns);
	if (r)
		fuse_reply_err(req, r);
	else
		fuse_reply_attr(req, &st, fs->timeout);
}

static void fs_rw_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	char buf[PATH_MAX + 1];
	pthread_rwlock_rdlock(&fs->ns);
	int r = 0;
	if (n->ufd >= 0) {
		ssize_t len = readlinkat(n->ufd, "", buf, sizeof(buf) - 1);
		if (len < 0)
			r = errno;
		else
			buf[len] = '\0';
	} else {
		struct ocitree_layer_index *l = NULL;
		const struct ocitree_layer_entry *e = lentry(n->tree, n->lower, &l);
		if (!e || e->type != OCITREE_ENTRY_SYMLINK)
			r = EINVAL;
		else
			snprintf(buf, sizeof(buf), "%s", ocitree_layer_index_string(l, e->link));
	}
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

struct newobj {
	mode_t mode; /* with the file type */
	dev_t rdev;
	const char *link; /* symlink target */
	int flags;        /* regular files: open flags for the returned fd */
};

/* Make a new object name in dir (ns exclusive).  *fd receives an fd opened
 * with o->flags for regular files when fd is not NULL. */
static int make_object(struct rwfs *fs, fuse_req_t req, struct node *dir, const char *name, const struct newobj *o,
		       int *fd, struct node **out)
{
	int r = check_new_name(name);
	if (r)
		return r;
	struct found f;
	r = find_entry(fs, dir, name, &f);
	if (r)
		return r;
	if (f.kind != FOUND_NONE)
		return EEXIST;
	if (dir->unlinked)
		return ENOENT;
	r = ensure_upper_dir(fs, dir);
	if (r)
		return r;
	if (dir->ufd >= 0 && !f.whiteout) {
		/* not known before the parent was copied up */
		r = find_entry(fs, dir, name, &f);
		if (r)
			return r;
		if (f.kind != FOUND_NONE)
			return EEXIST;
	}
	mode_t type = o->mode & S_IFMT;
	if ((S_ISCHR(o->mode) || S_ISBLK(o->mode)) && o->rdev == 0)
		return EPERM; /* a 0/0 device is how whiteouts look */
	/* the owner: the caller's, the group of a setgid directory */
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat dst;
	if (node_stat(fs, dir, &dst))
		memset(&dst, 0, sizeof(dst));
	bool sgid = dst.st_mode & S_ISGID;
	uid_t uid;
	gid_t gid;
	mode_t mode = o->mode;
	if (fs->virtual_owners) {
		uid = 0;
		gid = sgid ? dst.st_gid : 0;
	} else {
		uid = ctx->uid;
		gid = sgid ? (gid_t)-1 : ctx->gid;
	}
	if (sgid && S_ISDIR(mode))
		mode |= S_ISGID;
	bool via_work = f.whiteout;
	int wfd = fs->upper->work_fd;
	char tmp[64];
	upper_tmp_name(tmp);
	int cdir = via_work ? wfd : dir->ufd;
	const char *cname = via_work ? tmp : name;
	mode_t rp = real_perm(fs, mode);
	_cleanup_close_ int ofd = -1;
	switch (type) {
	case S_IFREG: {
		int flags = (o->flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW | O_TRUNC | O_DIRECTORY)) | O_CREAT | O_EXCL |
			    O_CLOEXEC;
		if ((flags & O_ACCMODE) == O_RDONLY && !fd)
			flags = (flags & ~O_ACCMODE) | O_WRONLY;
		ofd = openat(cdir, cname, flags, rp);
		if (ofd < 0)
			return errno;
		break;
	}
	case S_IFDIR:
		if (mkdirat(cdir, cname, rp) < 0)
			return errno;
		break;
	case S_IFLNK:
		if (symlinkat(o->link, cdir, cname) < 0)
			return errno;
		break;
	case S_IFCHR:
	case S_IFBLK:
	case S_IFIFO:
	case S_IFSOCK:
		if (fs->virtual_owners) {
			int t = openat(cdir, cname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (t < 0)
				return errno;
			close(t);
			break;
		}
		if (mknodat(cdir, cname, type | rp, o->rdev) < 0)
			return errno;
		break;
	default:
		return EINVAL;
	}
	int pfd = openat(cdir, cname, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0) {
		r = errno;
		goto undo;
	}
	r = set_owner_mode(fs, pfd, uid, gid, mode, o->rdev);
	if (!r && type == S_IFDIR && f.below && ltype(dir->tree, f.below) == S_IFDIR)
		r = set_opaque(fs, pfd); /* the lower directory of that name was removed */
	close(pfd);
	if (!r && via_work)
		r = place(fs, tmp, dir->ufd, name, type == S_IFDIR, true);
	if (r)
		goto undo;
	dir_changed(dir);
	struct stat ust;
	if (fstatat(dir->ufd, name, &ust, AT_SYMLINK_NOFOLLOW) < 0)
		return errno;
	r = node_get_upper(fs, dir, name, &ust, f.below, out);
	if (r)
		return r;
	if (fd)
		*fd = steal_fd(&ofd);
	return 0;
undo:
	if (type == S_IFDIR)
		unlinkat(cdir, cname, AT_REMOVEDIR);
	else
		unlinkat(cdir, cname, 0);
	return r;
}

static void do_make(fuse_req_t req, fuse_ino_t parent, const char *name, const struct newobj *o)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = NULL;
	pthread_rwlock_rdlock(&fs->freeze);
	pthread_rwlock_wrlock(&fs->ns);
	int r = make_object(fs, req, node_of(fs, parent), name, o, NULL, &n);
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
	struct newobj o = {.mode = mode, .rdev = rdev, .flags = O_WRONLY};
	if (!(mode & S_IFMT))
		o.mode |= S_IFREG;
	do_make(req, parent, name, &o);
}

static void fs_rw_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct newobj o = {.mode = S_IFDIR | (mode & 07777)};
	do_make(req, parent, name, &o);
}

static void fs_rw_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct newobj o = {.mode = S_IFLNK | 0777, .link = link};
	do_make(req, parent, name, &o);
}

/* ================================================================ operations: removing */

/* Remove name (a node n, pinned) from dir (ns exclusive). */
static int remove_name(struct rwfs *fs, struct node *dir, const char *name, struct node *n, const struct found *f)
{
	bool isdir = S_ISDIR(n->type);
	int r;
	if (!isdir && n->ufd < 0 && lnlink(n->tree, n->lower) > 1) {
		r = copy_up(fs, n, CU_META); /* I1: all names move to the upper directory first */
		if (r)
			return r;
	}
	r = ensure_upper_dir(fs, dir);
	if (r)
		return r;
	bool need_wh = f->below != 0;
	struct stat ust;
	bool in_upper = fstatat(dir->ufd, name, &ust, AT_SYMLINK_NOFOLLOW) == 0 && !upper_is_whiteout(&ust);
	if (in_upper)
		r = need_wh ? wh_replace(fs, dir->ufd, name) : upper_remove(fs, dir->ufd, name, isdir);
	else
		r = wh_make(fs, dir->ufd, name);
	if (r)
		return r;
	if (n->ufd < 0)
		n->unlinked = true;
	dir_changed(dir);
	return 0;
}

static void do_remove(fuse_req_t req, fuse_ino_t parent, const char *name, bool rmdir)
{
	struct rwfs *fs = fs_of(req);
	int r = check_name(name);
	if (r) {
		fuse_reply_err(req, r);
		return;
	}
	pthread_rwlock_rdlock(&fs->freeze);
	pthread_rwlock_wrlock(&fs->ns);
	struct node *dir = node_of(fs, parent), *n = NULL;
	struct found f;
	r = lookup_node(fs, dir, name, &n, &f);
	if (!r && rmdir && !S_ISDIR(n->type))
		r = ENOTDIR;
	if (!r && !rmdir && S_ISDIR(n->type))
		r = EISDIR;
	if (!r && rmdir) {
		bool empty;
		r = dir_is_empty(fs, n, &empty);
		if (!r && !empty)
			r = ENOTEMPTY;
	}
	if (!r)
		r = remove_name(fs, dir, name, n, &f);
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
	struct found f;
	int r = check_new_name(newname);
	if (!r && S_ISDIR(n->type))
		r = EPERM;
	if (!r)
		r = find_entry(fs, dir, newname, &f);
	if (!r && f.kind != FOUND_NONE)
		r = EEXIST;
	if (!r && n->unlinked)
		r = ENOENT;
	if (!r)
		r = copy_up(fs, n, CU_META);
	if (!r)
		r = ensure_upper_dir(fs, dir);
	if (!r) {
		struct stat nst;
		if (fstat(n->ufd, &nst) == 0 && nst.st_nlink == 0)
			r = ENOENT; /* linking an unlinked file back is not allowed (without O_TMPFILE) */
	}
	if (!r) {
		struct upath p;
		upath_fd(&p, n->ufd);
		char tmp[64];
		upper_tmp_name(tmp);
		bool via_work = f.whiteout;
		int ddir = via_work ? fs->upper->work_fd : dir->ufd;
		const char *dname = via_work ? tmp : newname;
		if (linkat(AT_FDCWD, p.path, ddir, dname, AT_SYMLINK_FOLLOW) < 0)
			r = errno;
		else if (via_work && (r = place(fs, tmp, dir->ufd, newname, false, true)))
			unlinkat(ddir, dname, 0);
	}
	if (!r) {
		dir_changed(dir);
		reply_entry_node(req, fs, n);
	} else {
		fuse_reply_err(req, r);
	}
	pthread_rwlock_unlock(&fs->ns);
	pthread_rwlock_unlock(&fs->freeze);
}

/* Move the upper entry oldname of od to newname of nd, where the upper
 * directory has an entry, nothing or a whiteout; leave a whiteout at
 * oldname when need_wh. */
static int move_upper(struct rwfs *fs, struct node *od, const char *oldname, struct node *nd, const char *newname,
		      bool src_dir, bool need_wh)
{
	int ofd = od->ufd, nfd = nd->ufd, wfd = fs->upper->work_fd;
	struct stat dst;
	bool dst_wh = false, dst_dir = false, dst_present = false;
	if (fstatat(nfd, newname, &dst, AT_SYMLINK_NOFOLLOW) == 0) {
		dst_present = true;
		dst_wh = upper_is_whiteout(&dst);
		dst_dir = S_ISDIR(dst.st_mode);
	} else if (errno != ENOENT) {
		return errno;
	}
	bool file_wh = fs->fmt.whiteout == OCITREE_UPPER_WHITEOUT_FILE;
	char tmp[64];
	if (dst_dir) {
		/* the target directory is empty in the merged view, but may hold
		 * whiteouts: swap, then remove it from the old place */
		if (renameat2(ofd, oldname, nfd, newname, RENAME_EXCHANGE) < 0) {
			if (errno != EINVAL)
				return errno;
			int r = move_out_and_remove(fs, nfd, newname);
			if (r)
				return r;
			dst_present = false;
			goto plain;
		}
		if (need_wh)
			return wh_replace(fs, ofd, oldname);
		return move_out_and_remove(fs, ofd, oldname);
	}
	if (dst_wh && src_dir) {
		if (renameat2(ofd, oldname, nfd, newname, RENAME_EXCHANGE) == 0)
			return need_wh ? 0 : (unlinkat(ofd, oldname, 0) < 0 ? errno : 0);
		if (errno != EINVAL)
			return errno;
		if (unlinkat(nfd, newname, 0) < 0)
			return errno;
		dst_present = false;
	}
plain:
	if (need_wh && file_wh) {
		int r = wh_make(fs, ofd, oldname);
		if (r && r != EEXIST)
			return r;
		if (renameat(ofd, oldname, nfd, newname) < 0)
			return errno;
	} else if (need_wh) {
		if (renameat2(ofd, oldname, nfd, newname, RENAME_WHITEOUT) < 0) {
			if (errno != EINVAL && errno != EPERM && errno != ENOSYS)
				return errno;
			upper_tmp_name(tmp);
			if (mknodat(wfd, tmp, S_IFCHR | 0000, 0) < 0)
				return errno;
			if (renameat(ofd, oldname, nfd, newname) < 0) {
				int e = errno;
				unlinkat(wfd, tmp, 0);
				return e;
			}
			if (renameat(wfd, tmp, ofd, oldname) < 0)
				return errno;
		}
	} else if (renameat(ofd, oldname, nfd, newname) < 0) {
		return errno;
	}
	(void)dst_present;
	if (file_wh) {
		char wh[NAME_MAX + 8];
		if (strlen(newname) + strlen(UPPER_WH_PREFIX) <= NAME_MAX) {
			snprintf(wh, sizeof(wh), UPPER_WH_PREFIX "%s", newname);
			unlinkat(nfd, wh, 0);
		}
	}
	return 0;
}

/* Get a node ready to move to location (nd, newname): its upper object
 * exists, and a directory neither merges lower contents (I2) nor sees the
 * lower directory at its new place. */
static int prepare_move(struct rwfs *fs, struct node *n, struct node *nd, const char *newname)
{
	int r;
	if (!S_ISDIR(n->type))
		return copy_up(fs, n, CU_META);
	if (n->lower) {
		r = cu_tree(fs, n);
		if (r)
			return r;
	}
	uint32_t below = nd->lower ? ocitree_tree_lookup(nd->tree, nd->lower, newname) : 0;
	if (below && ltype(nd->tree, below) == S_IFDIR)
		return set_opaque(fs, n->ufd);
	return 0;
}

static void fs_rw_rename(fuse_req_t req, fuse_ino_t oldparent, const char *oldname, fuse_ino_t newparent,
			 const char *newname, unsigned int flags)
{
	struct rwfs *fs = fs_of(req);
	int r = check_name(oldname);
	if (!r)
		r = check_new_name(newname);
	if (!r && (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)))
		r = EINVAL;
	if (!r && (flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))
		r = EINVAL;
	if (r) {
		fuse_reply_err(req, r);
		return;
	}
	pthread_rwlock_rdlock(&fs->freeze);
	pthread_rwlock_wrlock(&fs->ns);
	struct node *od = node_of(fs, oldparent), *nd = node_of(fs, newparent);
	struct node *src = NULL, *dst = NULL;
	struct found sf, df;
	r = lookup_node(fs, od, oldname, &src, &sf);
	if (!r) {
		r = lookup_node(fs, nd, newname, &dst, &df);
		if (r == ENOENT)
			r = 0;
	}
	if (r)
		goto out;
	if (flags & RENAME_EXCHANGE) {
		if (!dst) {
			r = ENOENT;
			goto out;
		}
		if (src == dst)
			goto out;
		r = prepare_move(fs, src, nd, newname);
		if (!r)
			r = prepare_move(fs, dst, od, oldname);
		if (!r)
			r = ensure_upper_dir(fs, od);
		if (!r)
			r = ensure_upper_dir(fs, nd);
		if (!r && renameat2(od->ufd, oldname, nd->ufd, newname, RENAME_EXCHANGE) < 0)
			r = errno;
		if (!r) {
			dir_changed(od);
			dir_changed(nd);
		}
		goto out;
	}
	if (dst) {
		if (flags & RENAME_NOREPLACE) {
			r = EEXIST;
			goto out;
		}
		if (src == dst)
			goto out; /* two names of one file: nothing to do */
		if (S_ISDIR(src->type) && !S_ISDIR(dst->type)) {
			r = ENOTDIR;
			goto out;
		}
		if (!S_ISDIR(src->type) && S_ISDIR(dst->type)) {
			r = EISDIR;
			goto out;
		}
		if (S_ISDIR(dst->type)) {
			bool empty;
			r = dir_is_empty(fs, dst, &empty);
			if (!r && !empty)
				r = ENOTEMPTY;
			if (r)
				goto out;
		} else if (dst->ufd < 0 && lnlink(dst->tree, dst->lower) > 1) {
			r = copy_up(fs, dst, CU_META); /* I1 */
			if (r)
				goto out;
		}
	}
	r = prepare_move(fs, src, nd, newname);
	if (!r)
		r = ensure_upper_dir(fs, od);
	if (!r)
		r = ensure_upper_dir(fs, nd);
	if (r)
		goto out;
	r = move_upper(fs, od, oldname, nd, newname, S_ISDIR(src->type), sf.below != 0);
	if (r)
		goto out;
	if (dst && dst->ufd < 0)
		dst->unlinked = true;
	dir_changed(od);
	dir_changed(nd);
out:
	pthread_rwlock_unlock(&fs->ns);
	pthread_rwlock_unlock(&fs->freeze);
	node_put(fs, src);
	node_put(fs, dst);
	fuse_reply_err(req, r);
}

/* ================================================================ operations: attributes */

static void fs_rw_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	struct fh *h = fi ? (struct fh *)(uintptr_t)fi->fh : NULL;
	pthread_rwlock_rdlock(&fs->freeze);
	pthread_rwlock_wrlock(&fs->ns);
	enum cu cu = CU_META;
	if (to_set & FUSE_SET_ATTR_SIZE)
		cu = attr->st_size == 0 ? CU_EMPTY : CU_DATA;
	int r = copy_up(fs, n, cu);
	struct upath p;
	if (!r)
		upath_fd(&p, n->ufd);
	if (!r && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
		uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
		if (fs->virtual_owners) {
			if (!S_ISLNK(n->type)) {
				struct stat st;
				r = node_stat(fs, n, &st);
				if (!r) {
					uid_t nu = uid == (uid_t)-1 ? st.st_uid : uid;
					gid_t ng = gid == (gid_t)-1 ? st.st_gid : gid;
					mode_t m = st.st_mode;
					/* as chown(2) does for a regular file */
					if (S_ISREG(m) && !(to_set & FUSE_SET_ATTR_MODE))
						m &= ~(S_ISUID | ((m & S_IXGRP) ? S_ISGID : 0));
					r = set_vstat(fs, n->ufd, nu, ng, m, st.st_rdev);
					if (!r) {
						n->vstat = true;
						n->v_uid = nu;
						n->v_gid = ng;
						n->v_mode = m;
						n->v_rdev = st.st_rdev;
					}
				}
			}
		} else if (fchownat(n->ufd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
			r = errno;
		}
	}
	if (!r && (to_set & FUSE_SET_ATTR_MODE) && !S_ISLNK(n->type)) {
		if (fs->virtual_owners) {
			struct stat st;
			r = node_stat(fs, n, &st);
			mode_t m = (st.st_mode & S_IFMT) | (attr->st_mode & 07777);
			if (!r && chmod(p.path, real_perm(fs, m)) < 0)
				r = errno;
			if (!r)
				r = set_vstat(fs, n->ufd, st.st_uid, st.st_gid, m, st.st_rdev);
			if (!r) {
				n->vstat = true;
				n->v_uid = st.st_uid;
				n->v_gid = st.st_gid;
				n->v_mode = m;
				n->v_rdev = st.st_rdev;
			}
		} else if (chmod(p.path, attr->st_mode & 07777) < 0) {
			r = errno;
		}
	}
	if (!r && (to_set & FUSE_SET_ATTR_SIZE)) {
		if (h && h->fd >= 0) {
			if (ftruncate(h->fd, attr->st_size) < 0)
				r = errno;
		} else if (!S_ISREG(n->type)) {
			r = S_ISDIR(n->type) ? EISDIR : EINVAL;
		} else {
			int fd = open(p.path, O_WRONLY | O_CLOEXEC);
			if (fd < 0 || ftruncate(fd, attr->st_size) < 0)
				r = errno;
			if (fd >= 0)
				close(fd);
		}
	}
	if (!r && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
			     FUSE_SET_ATTR_MTIME_NOW))) {
		struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
		if (to_set & FUSE_SET_ATTR_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_ATIME)
			ts[0] = attr->st_atim;
		if (to_set & FUSE_SET_ATTR_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_MTIME)
			ts[1] = attr->st_mtim;
		if (utimensat(n->ufd, "", ts, AT_EMPTY_PATH) < 0)
			r = errno;
	}
	if (!r && (to_set & FUSE_SET_ATTR_CTIME) && !(to_set & ~FUSE_SET_ATTR_CTIME)) {
		/* ctime alone: touch it the only way there is */
		struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
		utimensat(n->ufd, "", ts, AT_EMPTY_PATH);
	}
	struct stat st;
	if (!r)
		r = node_stat(fs, n, &st);
	pthread_rwlock_unlock(&fs->ns);
	pthread_rwlock_unlock(&fs->freeze);
	if (r)
		fuse_reply_err(req, r);
	else
		fuse_reply_attr(req, &st, fs->timeout);
}

/* ================================================================ operations: files */

static void fh_pin(struct rwfs *fs, struct fh *h)
{
	pthread_mutex_lock(&fs->nodes);
	h->node->refs++;
	if (h->write)
		h->node->writers++;
	pthread_mutex_unlock(&fs->nodes);
}

static void fh_unpin(struct rwfs *fs, struct fh *h)
{
	pthread_mutex_lock(&fs->nodes);
	if (h->write)
		h->node->writers--;
	node_unref_locked(fs, h->node, 0, 1);
	pthread_mutex_unlock(&fs->nodes);
}

static void reply_open(fuse_req_t req, struct rwfs *fs, struct node *n, int fd, struct fuse_file_info *fi,
		       bool keep_cache)
{
	struct fh *h = xcalloc(1, sizeof(*h));
	h->fd = fd;
	h->node = n;
	h->write = fd >= 0 && (fi->flags & O_ACCMODE) != O_RDONLY;
	fh_pin(fs, h);
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->keep_cache = keep_cache;
	if (fuse_reply_open(req, fi) < 0) {
		if (fd >= 0)
			close(fd);
		fh_unpin(fs, h);
		free(h);
	}
}

/* Open node n (ns held as needed): an fd of its upper file, or -1 for a
 * handle that reads through the node. */
static int open_node(struct rwfs *fs, struct node *n, int flags, int *fd, bool *keep_cache)
{
	*fd = -1;
	*keep_cache = false;
	if (n->ufd < 0 || n->metacopy) {
		/* the page cache of an untouched lower file stays valid */
		*keep_cache = n->ufd < 0;
		return 0;
	}
	struct upath p;
	upath_fd(&p, n->ufd);
	flags &= ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW);
	*fd = open(p.path, flags | O_CLOEXEC);
	return *fd < 0 ? errno : 0;
}

static void fs_rw_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	bool write = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);
	int r, fd = -1;
	bool keep = false;
	if (S_ISDIR(n->type)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (write) {
		pthread_rwlock_rdlock(&fs->freeze);
		pthread_rwlock_wrlock(&fs->ns);
		r = copy_up(fs, n, (fi->flags & O_TRUNC) ? CU_EMPTY : CU_DATA);
		if (!r)
			r = open_node(fs, n, fi->flags, &fd, &keep);
		pthread_rwlock_unlock(&fs->ns);
		pthread_rwlock_unlock(&fs->freeze);
	} else {
		pthread_rwlock_rdlock(&fs->ns);
		r = open_node(fs, n, fi->flags, &fd, &keep);
		pthread_rwlock_unlock(&fs->ns);
	}
	if (r)
		fuse_reply_err(req, r);
	else
		reply_open(req, fs, n, fd, fi, keep);
}

static void fs_rw_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	struct node *dir = node_of(fs, parent), *n = NULL;
	pthread_rwlock_rdlock(&fs->freeze);
	pthread_rwlock_wrlock(&fs->ns);
	struct newobj o = {.mode = S_IFREG | (mode & 07777), .flags = fi->flags};
	int fd = -1;
	int r = make_object(fs, req, dir, name, &o, &fd, &n);
	if (r == EEXIST && !(fi->flags & O_EXCL)) {
		/* the kernel thought it missing: open what is there */
		r = lookup_node(fs, dir, name, &n, NULL);
		if (!r && S_ISDIR(n->type))
			r = EISDIR;
		bool keep;
		bool write = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);
		if (!r && write)
			r = copy_up(fs, n, (fi->flags & O_TRUNC) ? CU_EMPTY : CU_DATA);
		if (!r)
			r = open_node(fs, n, fi->flags, &fd, &keep);
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
	struct fh *h = xcalloc(1, sizeof(*h));
	h->fd = fd;
	h->node = n;
	h->write = fd >= 0 && (fi->flags & O_ACCMODE) != O_RDONLY;
	fh_pin(fs, h);
	node_put(fs, n); /* the pin of make_object or lookup_node: the handle has its own */
	fi->fh = (uint64_t)(uintptr_t)h;
	node_lookup_inc(fs, n);
	if (fuse_reply_create(req, &e, fi) < 0) {
		if (fd >= 0)
			close(fd);
		pthread_mutex_lock(&fs->nodes);
		node_unref_locked(fs, n, 1, 0);
		pthread_mutex_unlock(&fs->nodes);
		fh_unpin(fs, h);
		free(h);
	}
}

/* The fd to read node n's upper file through when a handle has none. */
static int node_read_fd(struct rwfs *fs, struct node *n)
{
	pthread_mutex_lock(&fs->nodes);
	if (n->rfd < 0) {
		struct upath p;
		upath_fd(&p, n->ufd);
		n->rfd = open(p.path, O_RDONLY | O_CLOEXEC);
	}
	int fd = n->rfd;
	pthread_mutex_unlock(&fs->nodes);
	return fd;
}

static void reply_fd_data(fuse_req_t req, int fd, size_t size, off_t off)
{
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
	bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv.buf[0].fd = fd;
	bv.buf[0].pos = off;
	fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
}

static void fs_rw_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	if (h->fd >= 0) {
		reply_fd_data(req, h->fd, size, off);
		return;
	}
	struct node *n = h->node;
	pthread_rwlock_rdlock(&fs->ns);
	if (n->ufd >= 0 && !n->metacopy) {
		/* copied up since this handle was opened: the same file */
		int fd = node_read_fd(fs, n);
		pthread_rwlock_unlock(&fs->ns);
		if (fd < 0)
			fuse_reply_err(req, errno);
		else
			reply_fd_data(req, fd, size, off);
		return;
	}
	uint64_t limit = UINT64_MAX;
	bool meta = n->metacopy;
	if (meta) {
		struct stat st;
		if (fstat(n->ufd, &st) == 0)
			limit = (uint64_t)st.st_size;
	}
	struct ocitree_tree *t = n->tree;
	uint32_t k = n->lower;
	pthread_rwlock_unlock(&fs->ns);
	if (off < 0 || (uint64_t)off >= limit) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > limit - (uint64_t)off)
		size = (size_t)(limit - (uint64_t)off);
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = lentry(t, k, &l);
	if (!e || e->type != OCITREE_ENTRY_REG) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* a metacopy file longer than the image's (truncated longer by hand:
	 * the mount copies up on truncate) reads zeros past the image's
	 * data, as its copy-up and a commit fill it */
	size_t zeros = 0;
	if ((uint64_t)off + size > e->size) {
		size_t have = (uint64_t)off < e->size ? (size_t)(e->size - (uint64_t)off) : 0;
		if (meta)
			zeros = size - have;
		size = have;
	}
	if (!size && !zeros) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	uint64_t base = 0;
	int dfd = ocitree_layer_index_data_fd(l, &base);
	if (dfd >= 0 && !zeros) {
		reply_fd_data(req, dfd, size, (off_t)(base + e->data_off + (uint64_t)off));
		return;
	}
	_cleanup_free_ char *buf = xcalloc(1, size + zeros);
	_cleanup_error_ struct ocitree_error *err = NULL;
	ssize_t got = size ? lower_pread(t, k, buf, size, (uint64_t)off, &err) : 0;
	if (got < 0) {
		ocitree_log(OCITREE_LOG_ERROR, "read: %s", err ? err->msg : "I/O error");
		fuse_reply_err(req, EIO);
		return;
	}
	fuse_reply_buf(req, buf, (size_t)got == size ? size + zeros : (size_t)got);
}

static void fs_rw_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
			    struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	if (h->fd < 0) {
		fuse_reply_err(req, EBADF);
		return;
	}
	struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
	out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	out.buf[0].fd = h->fd;
	out.buf[0].pos = off;
	pthread_rwlock_rdlock(&fs->freeze);
	ssize_t r = fuse_buf_copy(&out, in, 0);
	pthread_rwlock_unlock(&fs->freeze);
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_write(req, (size_t)r);
}

static void fs_rw_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			    struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	if (h->fd < 0) {
		fuse_reply_err(req, EBADF);
		return;
	}
	pthread_rwlock_rdlock(&fs->freeze);
	int r = fallocate(h->fd, mode, offset, length) < 0 ? errno : 0;
	pthread_rwlock_unlock(&fs->freeze);
	fuse_reply_err(req, r);
}

static void fs_rw_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void fs_rw_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	if (h->fd >= 0)
		close(h->fd);
	fh_unpin(fs, h);
	free(h);
	fuse_reply_err(req, 0);
}

static void fs_rw_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	int r = 0;
	if (h->fd >= 0 && (datasync ? fdatasync(h->fd) : fsync(h->fd)) < 0)
		r = errno;
	fuse_reply_err(req, r);
}

/* ================================================================ operations: xattrs */

static bool is_control_xattr(struct rwfs *fs, struct node *n, const char *name)
{
	return n == fs->root && strcmp(name, CONTROL_XATTR) == 0;
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
		const char *w = fs->upper->work_path;
		reply_xattr_value(req, w, strlen(w), size);
		return;
	}
	pthread_rwlock_rdlock(&fs->ns);
	if (n->ufd >= 0) {
		_cleanup_free_ char *uname = upper_xattr_escape(&fs->fmt, name);
		struct upath p;
		upath_fd(&p, n->ufd);
		struct buf b = BUF_INIT;
		int r = 0;
		if (upath_get_all(&p, uname, &b) < 0)
			r = errno == ENOTSUP ? ENODATA : errno;
		pthread_rwlock_unlock(&fs->ns);
		if (r)
			fuse_reply_err(req, r);
		else
			reply_xattr_value(req, b.data ? b.data : "", b.len, size);
		buf_free(&b);
		return;
	}
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = lentry(n->tree, n->lower, &l);
	uint32_t cur = 0;
	const char *xn;
	const void *xv;
	size_t xl;
	while (e && ocitree_layer_entry_xattr_next(l, e, &cur, &xn, &xv, &xl)) {
		if (strcmp(xn, name) == 0) {
			pthread_rwlock_unlock(&fs->ns);
			reply_xattr_value(req, xv, xl, size);
			return;
		}
	}
	pthread_rwlock_unlock(&fs->ns);
	fuse_reply_err(req, ENODATA);
}

static void fs_rw_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	_cleanup_buf_ struct buf out = BUF_INIT;
	int r = 0;
	pthread_rwlock_rdlock(&fs->ns);
	if (n->ufd >= 0) {
		struct upath p;
		upath_fd(&p, n->ufd);
		_cleanup_buf_ struct buf names = BUF_INIT;
		if (upath_list_all(&p, &names) < 0) {
			r = errno;
		} else {
			for (size_t off = 0; off < names.len; off += strlen(names.data + off) + 1) {
				const char *shown = upper_xattr_unescape(&fs->fmt, names.data + off);
				if (shown)
					buf_append(&out, shown, strlen(shown) + 1);
			}
		}
	} else {
		struct ocitree_layer_index *l = NULL;
		const struct ocitree_layer_entry *e = lentry(n->tree, n->lower, &l);
		uint32_t cur = 0;
		const char *xn;
		const void *xv;
		size_t xl;
		while (e && ocitree_layer_entry_xattr_next(l, e, &cur, &xn, &xv, &xl))
			buf_append(&out, xn, strlen(xn) + 1);
	}
	pthread_rwlock_unlock(&fs->ns);
	if (r)
		fuse_reply_err(req, r);
	else
		reply_xattr_value(req, out.data ? out.data : "", out.len, size);
}

static void fs_rw_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
			   int flags)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	if (is_control_xattr(fs, n, name)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	pthread_rwlock_rdlock(&fs->freeze);
	pthread_rwlock_wrlock(&fs->ns);
	int r = copy_up(fs, n, CU_META);
	if (!r) {
		_cleanup_free_ char *uname = upper_xattr_escape(&fs->fmt, name);
		struct upath p;
		upath_fd(&p, n->ufd);
		if (upath_setxattr(&p, uname, value, size, flags) < 0)
			r = errno;
	}
	pthread_rwlock_unlock(&fs->ns);
	pthread_rwlock_unlock(&fs->freeze);
	fuse_reply_err(req, r);
}

static void fs_rw_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	if (is_control_xattr(fs, n, name)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	pthread_rwlock_rdlock(&fs->freeze);
	pthread_rwlock_wrlock(&fs->ns);
	int r = 0;
	if (n->ufd < 0) {
		/* nothing to copy up for a name the file does not have */
		struct ocitree_layer_index *l = NULL;
		const struct ocitree_layer_entry *e = lentry(n->tree, n->lower, &l);
		uint32_t cur = 0;
		const char *xn;
		const void *xv;
		size_t xl;
		bool has = false;
		while (e && !has && ocitree_layer_entry_xattr_next(l, e, &cur, &xn, &xv, &xl))
			has = strcmp(xn, name) == 0;
		if (!has)
			r = ENODATA;
	}
	if (!r)
		r = copy_up(fs, n, CU_META);
	if (!r) {
		_cleanup_free_ char *uname = upper_xattr_escape(&fs->fmt, name);
		struct upath p;
		upath_fd(&p, n->ufd);
		if (upath_removexattr(&p, uname) < 0)
			r = errno;
	}
	pthread_rwlock_unlock(&fs->ns);
	pthread_rwlock_unlock(&fs->freeze);
	fuse_reply_err(req, r);
}

/* ================================================================ operations: directories */

static int cmp_dent(const void *a, const void *b)
{
	return strcmp(((const struct dent *)a)->name, ((const struct dent *)b)->name);
}

static void dirh_clear(struct dirh *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->ents[i].name);
	free(d->ents);
	d->ents = NULL;
	d->n = 0;
	d->loaded = false;
}

struct list_walk {
	struct upper_names u;
	struct dirh *d;
	size_t cap;
};

static int list_entry(void *ctx, const char *name, mode_t type, bool hides)
{
	struct list_walk *w = ctx;
	upper_names_add(&w->u, name, type, hides);
	if (!hides) {
		GROW(w->d->ents, w->cap, w->d->n + 1);
		w->d->ents[w->d->n++] = (struct dent){xstrdup(name), type};
	}
	return 0;
}

/* The merged listing of directory n (ns held). */
static int dir_list(struct rwfs *fs, struct node *n, struct dirh *d)
{
	struct list_walk w = {.d = d};
	if (n->ufd >= 0) {
		int e = upper_dir_each(n->ufd, list_entry, &w);
		if (e) {
			strset_free(&w.u.names);
			return e;
		}
	}
	size_t cap = w.cap;
	uint32_t nc = n->lower ? ocitree_tree_dir_size(n->tree, n->lower) : 0;
	for (uint32_t i = 0; i < nc; i++) {
		uint32_t c;
		const char *name = ocitree_tree_dir_entry(n->tree, n->lower, i, &c);
		if (strset_has(&w.u.names, name))
			continue;
		GROW(d->ents, cap, d->n + 1);
		d->ents[d->n++] = (struct dent){xstrdup(name), ltype(n->tree, c)};
	}
	strset_free(&w.u.names);
	if (d->n)
		qsort(d->ents, d->n, sizeof(*d->ents), cmp_dent);
	d->loaded = true;
	return 0;
}

static void fs_rw_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	if (!S_ISDIR(n->type)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	struct dirh *d = xcalloc(1, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	d->node = n;
	node_pin(fs, n);
	fi->fh = (uint64_t)(uintptr_t)d;
	pthread_rwlock_rdlock(&fs->ns);
	/* an untouched lower directory changes only through this mount, which
	 * makes the kernel drop its cached listing */
	fi->cache_readdir = n->ufd < 0;
	fi->keep_cache = n->ufd < 0;
	pthread_rwlock_unlock(&fs->ns);
	if (fuse_reply_open(req, fi) < 0) {
		node_put(fs, n);
		free(d);
	}
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi, bool plus)
{
	struct rwfs *fs = fs_of(req);
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
	struct node *dir = d->node;
	_cleanup_free_ char *buf = xmalloc(size);
	size_t used = 0;
	int r = 0;
	pthread_mutex_lock(&d->lock);
	pthread_rwlock_rdlock(&fs->ns);
	if (off == 0 || !d->loaded) {
		dirh_clear(d);
		r = dir_list(fs, dir, d);
	}
	/* offsets: 0 start, 1 after ".", 2 after "..", 3 + i after entry i */
	for (off_t pos = off; !r && pos < (off_t)d->n + 2; pos++) {
		const char *name;
		struct fuse_entry_param e;
		struct node *child = NULL;
		if (pos < 2) {
			name = pos == 0 ? "." : "..";
			memset(&e, 0, sizeof(e));
			e.attr.st_mode = S_IFDIR;
			e.attr.st_ino = dir->ino;
		} else {
			name = d->ents[pos - 2].name;
			int lr = lookup_node(fs, dir, name, &child, NULL);
			if (lr == 0)
				lr = fill_entry(fs, child, &e);
			if (lr) {
				/* gone since the listing was made */
				node_put(fs, child);
				if (used == 0 && pos + 1 >= (off_t)d->n + 2)
					break;
				continue;
			}
		}
		size_t len;
		if (plus) {
			if (!child) {
				/* "." and "..": no entry, the kernel knows them */
				struct fuse_entry_param z = {.attr = e.attr};
				len = fuse_add_direntry_plus(req, buf + used, size - used, name, &z, pos + 1);
			} else {
				len = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, pos + 1);
			}
		} else {
			e.attr.st_ino = child ? e.attr.st_ino : e.attr.st_ino;
			len = fuse_add_direntry(req, buf + used, size - used, name, &e.attr, pos + 1);
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
	pthread_rwlock_unlock(&fs->ns);
	pthread_mutex_unlock(&d->lock);
	if (r)
		fuse_reply_err(req, r);
	else
		fuse_reply_buf(req, buf, used);
}

static void fs_rw_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void fs_rw_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void fs_rw_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
	dirh_clear(d);
	pthread_mutex_destroy(&d->lock);
	node_put(fs, d->node);
	free(d);
	fuse_reply_err(req, 0);
}

static void fs_rw_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct rwfs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	int r = 0;
	pthread_rwlock_rdlock(&fs->ns);
	if (n->ufd >= 0) {
		int fd = openat(n->ufd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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
	if (fstatvfs(fs->upper->fd, &sv) < 0) {
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
	int r = node_stat(fs, node_of(fs, ino), &st);
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
	.flush = fs_rw_flush,
	.release = fs_rw_release,
	.fsync = fs_rw_fsync,
	.opendir = fs_rw_opendir,
	.readdir = fs_rw_readdir,
	.readdirplus = fs_rw_readdirplus,
	.releasedir = fs_rw_releasedir,
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

static void free_nodes(struct rwfs *fs)
{
	/* every node is in one of the maps (the root in by_upper) */
	for (size_t i = 0; i < fs->by_lower.nb; i++) {
		struct node *n = fs->by_lower.b[i];
		while (n) {
			struct node *next = n->lnext;
			n->in_lower = false;
			if (!n->in_upper)
				node_destroy(n);
			n = next;
		}
	}
	for (size_t i = 0; i < fs->by_upper.nb; i++) {
		struct node *n = fs->by_upper.b[i];
		while (n) {
			struct node *next = n->unext;
			node_destroy(n);
			n = next;
		}
	}
	free(fs->by_lower.b);
	free(fs->by_upper.b);
}

static int root_init(struct rwfs *fs, bool fresh, struct ocitree_error **err)
{
	int fd = openat(fs->upper->fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return ocitree_error_set(err, errno, "open upper directory '%s'", fs->upper->path);
	if (fresh) {
		/* the upper directory is the root of the tree: it gets the
		 * image's owner, mode, xattrs and times */
		int r = set_lower_meta(fs, fs->tree, OCITREE_TREE_ROOT, fd, NULL);
		if (!r)
			r = set_lower_times(fs->tree, OCITREE_TREE_ROOT, fd);
		if (r) {
			close(fd);
			return ocitree_error_set(err, r, "give upper directory '%s' the image's root", fs->upper->path);
		}
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return ocitree_error_set(err, errno, "stat upper directory '%s'", fs->upper->path);
	}
	struct node *root = node_new(S_IFDIR, ino_lower(fs, OCITREE_TREE_ROOT));
	root->ufd = fd;
	root->uino = st.st_ino;
	root->ukey = st.st_ino;
	root->tree = fs->tree;
	struct upath p;
	upath_fd(&p, fd);
	struct upper_meta m;
	if (node_read_meta(fs, root, &p, &m)) {
		node_destroy(root);
		return ocitree_error_set(err, errno, "read the xattrs of upper directory '%s'", fs->upper->path);
	}
	root->lower = m.opaque || has_opaque_marker(fd) ? 0 : OCITREE_TREE_ROOT;
	upper_meta_clear(&m);
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
	fs->fmt = s->upper->state.format;
	fs->virtual_owners = fs->fmt.virtual_owners;
	fs->timeout = cfg.timeout;
	fs->uid = geteuid();
	fs->gid = getegid();
	fs->layout = xstrdup(s->layout);
	fs->index_opts = s->index_opts;
	fs->tree = s->tree;
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
	pthread_mutex_init(&fs->warn_lock, NULL);
	int ret = root_init(fs, s->fresh, err);
	if (ret == 0)
		links_journal_replay(fs);
	if (ret == 0)
		ret = fs_session_run(&fs_rw_ops, sizeof(fs_rw_ops), fs, &args, &cfg, opts, &rw_hooks, err);
	fuse_opt_free_args(&args);
	fs_config_clear(&cfg);
	free_nodes(fs);
	tindex_free(fs);
	for (size_t i = fs->n_base; i < fs->n_layers; i++)
		ocitree_layer_index_free(fs->layers[i]);
	if (fs->tree != s->tree)
		ocitree_tree_free(fs->tree);
	while (fs->old) {
		struct old_tree *o = fs->old;
		fs->old = o->next;
		if (o->tree != s->tree)
			ocitree_tree_free(o->tree);
		free(o);
	}
	free(fs->layers);
	free(fs->layout);
	pthread_rwlock_destroy(&fs->freeze);
	pthread_rwlock_destroy(&fs->ns);
	pthread_mutex_destroy(&fs->nodes);
	pthread_mutex_destroy(&fs->warn_lock);
	free(fs);
	return ret;
}
