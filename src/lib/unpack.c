/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Applying layers to a root directory, the way umoci does (whiteouts that
 * spare what the same layer created, opaque directories, directory times
 * restored after their contents change), but with every path resolved in an
 * in-memory tree that mirrors the disk and every change made relative to a
 * directory fd opened without following symlinks: nothing a layer says can
 * reach outside the root.
 *
 * Resolution rules (for the parent of an entry and for hardlink targets):
 * names are cleaned lexically first ('.', '//'); a leading '/' or a '..'
 * that climbs above the root is an error; symlinks met on the way are
 * followed inside the root (absolute targets start at the root), and a
 * symlink whose target climbs above the root is an error; missing
 * directories are created (0755, as umoci's MkdirAll).
 *
 * A directory a layer removes (a whiteout, or a path that changes type)
 * is renamed into a trash directory in the root and emptied there by a
 * second thread (and by the caller's thread at the end): the writer goes
 * on at once, and the unlinks, a tenth of an unpack of an image whose
 * last layer hides the documentation of the ones below, run on both
 * cores (unpack-trash.c).  The root's mtime is put back once the trash is
 * gone.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <nettle/sha2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#ifdef HAVE_LINUX_OPENAT2_H
#include <linux/openat2.h>
#endif

#include "bundle-internal.h"
#include "layer-internal.h"
#include "ring.h"
#include "unpack-trash.h"

#define FD_CACHE 16
#define MAX_SYMLINKS 40

struct digest_page {
	struct digest_page *next;
	size_t used;
	uint8_t d[1024][32];
};

struct unpacker {
	int rootfd;
	struct trash trash;
	struct tree *tree;
	const struct ocitree_unpack_options *o;
	uint32_t gen;
	uid_t euid;
	gid_t egid;
	mode_t umask;
	bool rootless;
	struct {
		struct tnode *node;
		int fd;
		uint64_t used;
	} cache[FD_CACHE];
	uint64_t tick;
	struct tnode **pending;
	size_t n_pending, cap_pending;
	struct digest_page *slots, *free_slots; /* digest slots of this layer, spare pages */
	uint64_t removals; /* nodes removed so far */
	struct tnode *last_parent; /* what last_parent_path resolved to, after last_removals */
	struct buf last_parent_path;
	uint64_t last_removals;
	bool enotsup_warned;
	size_t devices_as_files; /* rootless: device nodes written as empty files */
	bool reader_failed; /* the error came from the layer reader and names the layer */
	/* progress */
	size_t layer, n_layers;
	uint64_t entries;
	struct ocitree_layer_reader *reader;
};

/* ---- errors ---- */

static int entry_error(struct ocitree_error **err, int errnum, const char *entry, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int entry_error(struct ocitree_error **err, int errnum, const char *entry, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *m = xvasprintf(fmt, ap);
	va_end(ap);
	if (errnum)
		return ocitree_error_set(err, errnum, "entry '%s': %s", entry, m);
	return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "entry '%s': %s", entry, m);
}

/* ---- paths ---- */

const char *path_clean(const char *in, char **out)
{
	if (in[0] == '/')
		return "absolute path";
	_cleanup_free_ char *copy = xstrdup(in);
	size_t n = 0, cap = 0;
	_cleanup_free_ char **parts = NULL;
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (strcmp(c, ".") == 0)
			continue;
		if (strcmp(c, "..") == 0) {
			if (n == 0)
				return "path climbs out of the root ('..')";
			n--;
			continue;
		}
		GROW(parts, cap, n + 1);
		parts[n++] = c;
	}
	struct buf b = BUF_INIT;
	buf_puts(&b, "");
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_puts(&b, "/");
		buf_puts(&b, parts[i]);
	}
	*out = buf_steal(&b);
	return NULL;
}

/* Split a clean path at its last '/': *base points into path, which is cut. */
static void split_path(char *path, char **parent, char **base)
{
	char *slash = strrchr(path, '/');
	if (slash) {
		*slash = '\0';
		*parent = path;
		*base = slash + 1;
	} else {
		*parent = path + strlen(path);
		*base = path;
	}
}

/* ---- directory fds ---- */

static void cache_flush(struct unpacker *u)
{
	for (size_t i = 0; i < FD_CACHE; i++) {
		if (u->cache[i].node && u->cache[i].fd >= 0)
			close(u->cache[i].fd);
		u->cache[i].node = NULL;
		u->cache[i].fd = -1;
	}
}

static int open_beneath(int rootfd, const char *path)
{
	return open_dir_in_root_at(rootfd, path, false);
}

/* An O_PATH fd of directory node n (owned by the cache: do not close). */
static int node_fd(struct unpacker *u, struct tnode *n, struct ocitree_error **err)
{
	if (n == u->tree->root)
		return u->rootfd;
	size_t victim = 0;
	for (size_t i = 0; i < FD_CACHE; i++) {
		if (u->cache[i].node == n) {
			u->cache[i].used = ++u->tick;
			return u->cache[i].fd;
		}
		if (u->cache[i].used < u->cache[victim].used)
			victim = i;
	}
	int fd = -1;
	/* one step from a cached parent, else from the root */
	for (size_t i = 0; i < FD_CACHE && fd < 0; i++)
		if (u->cache[i].node && u->cache[i].node == n->parent)
			fd = openat(u->cache[i].fd, n->name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && n->parent == u->tree->root)
		fd = openat(u->rootfd, n->name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		_cleanup_buf_ struct buf p = BUF_INIT;
		tree_path(n, &p);
		fd = open_beneath(u->rootfd, p.data);
		if (fd < 0)
			return ocitree_error_set(err, errno, "open directory '%s'", p.data);
	}
	if (u->cache[victim].node && u->cache[victim].fd >= 0)
		close(u->cache[victim].fd);
	u->cache[victim].node = n;
	u->cache[victim].fd = fd;
	u->cache[victim].used = ++u->tick;
	return fd;
}

/* ---- bookkeeping ---- */

/* A 32-byte slot for a file digest the hashing thread fills; valid until
 * resolve_digests() at the end of the layer. */
static uint8_t *digest_slot(struct unpacker *u)
{
	struct digest_page *p = u->slots;
	if (!p || p->used == ARRAY_SIZE(p->d)) {
		p = u->free_slots;
		if (p)
			u->free_slots = p->next;
		else
			p = xmalloc(sizeof(*p));
		p->used = 0;
		p->next = u->slots;
		u->slots = p;
	}
	return p->d[p->used++];
}

static void resolve_node_digests(struct tnode *n)
{
	for (; n; n = n->next_sibling) {
		if (n->digest_slot) {
			memcpy(n->digest, n->digest_slot, sizeof(n->digest));
			n->has_digest = true;
			n->digest_slot = NULL;
		}
		resolve_node_digests(n->first_child);
	}
}

/* The layer reader reached its verified end: every digest is in its slot. */
static void resolve_digests(struct unpacker *u)
{
	resolve_node_digests(u->tree->root);
	while (u->slots) {
		struct digest_page *p = u->slots;
		u->slots = p->next;
		p->next = u->free_slots;
		u->free_slots = p;
	}
}

static void free_pages(struct digest_page *p)
{
	while (p) {
		struct digest_page *next = p->next;
		free(p);
		p = next;
	}
}

/* A directory's contents are about to change: keep its time to restore. */
static void touch_dir(struct unpacker *u, struct tnode *d)
{
	if (d->pending)
		return;
	d->pending = true;
	d->want_mtime = d->mtime;
	d->want_atime = d->mtime;
	GROW(u->pending, u->cap_pending, u->n_pending + 1);
	u->pending[u->n_pending++] = d;
}

/* n (and its ancestors) belong to the current layer: whiteouts of the same
 * layer spare them. */
static void mark_upper(struct unpacker *u, struct tnode *n)
{
	for (; n && n->gen != u->gen; n = n->parent)
		n->gen = u->gen;
}

/* Forget pending directories inside a subtree about to be freed. */
static void drop_pending_below(struct unpacker *u, struct tnode *top)
{
	size_t k = 0;
	for (size_t i = 0; i < u->n_pending; i++) {
		struct tnode *p = u->pending[i];
		bool below = false;
		for (struct tnode *a = p; a && !below; a = a->parent)
			below = a == top;
		if (!below)
			u->pending[k++] = p;
	}
	u->n_pending = k;
}

/* Remove node n from disk and from the tree. */
static int remove_node(struct unpacker *u, struct tnode *n, const char *entry, struct ocitree_error **err)
{
	struct tnode *parent = n->parent;
	int pfd = node_fd(u, parent, err);
	if (pfd < 0)
		return -1;
	touch_dir(u, parent);
	if (S_ISDIR(n->mode)) {
		cache_flush(u);
		pfd = node_fd(u, parent, err);
		if (pfd < 0)
			return -1;
		if (trash_put(&u->trash, u->rootfd, pfd, n->name) < 0 && rm_rf_at(pfd, n->name, err) < 0)
			return ocitree_error_prefix(err, "entry '%s': remove '%s'", entry, n->name);
		drop_pending_below(u, n);
	} else if (unlinkat(pfd, n->name, 0) < 0 && errno != ENOENT) {
		return entry_error(err, errno, entry, "remove '%s'", n->name);
	}
	tree_remove(u->tree, n);
	u->removals++;
	return 0;
}

/* ---- resolution ---- */

/* The directory node for a clean path, following symlinks inside the root
 * and, when create is set, creating missing directories.  Returns NULL
 * without an error when create is not set and the path does not exist. */
static struct tnode *resolve_dir(struct unpacker *u, const char *path, bool create, const char *entry,
				 struct ocitree_error **err)
{
	/* a stack of components still to walk, last element next */
	_cleanup_free_ char **todo = NULL;
	size_t n_todo = 0, cap_todo = 0;
	_cleanup_strv_ char **owned = NULL; /* strings allocated for symlink targets */
	size_t n_owned = 0;
	_cleanup_free_ char *copy = xstrdup(path);
	size_t count = 0;
	for (char *p = copy; *p; p++)
		count += *p == '/';
	/* push in reverse so that the first component is on top */
	char *save = NULL;
	_cleanup_free_ char **fwd = xcalloc(count + 2, sizeof(char *));
	size_t n_fwd = 0;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save))
		fwd[n_fwd++] = c;
	for (size_t i = n_fwd; i > 0; i--) {
		GROW(todo, cap_todo, n_todo + 1);
		todo[n_todo++] = fwd[i - 1];
	}

	struct tnode *cur = u->tree->root;
	int links = 0;
	while (n_todo > 0) {
		const char *c = todo[--n_todo];
		if (!*c || strcmp(c, ".") == 0)
			continue;
		if (strcmp(c, "..") == 0) {
			if (cur == u->tree->root) {
				entry_error(err, 0, entry, "a symlink in its path leads out of the root");
				return NULL;
			}
			cur = cur->parent;
			continue;
		}
		struct tnode *child = tree_child(u->tree, cur, c);
		if (!child) {
			if (!create)
				return NULL;
			int pfd = node_fd(u, cur, err);
			if (pfd < 0)
				return NULL;
			if (mkdirat(pfd, c, 0755) < 0) {
				entry_error(err, errno, entry, "create parent directory '%s'", c);
				return NULL;
			}
			struct stat st;
			if (fstatat(pfd, c, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				entry_error(err, errno, entry, "stat '%s'", c);
				return NULL;
			}
			touch_dir(u, cur);
			child = tree_add(u->tree, cur, c);
			tnode_set_stat(child, &st);
			child->want_mode = st.st_mode & 07777;
			cur = child;
			continue;
		}
		if (S_ISDIR(child->mode)) {
			cur = child;
			continue;
		}
		if (S_ISLNK(child->mode)) {
			if (++links > MAX_SYMLINKS) {
				entry_error(err, ELOOP, entry, "resolve '%s'", path);
				return NULL;
			}
			/* walk the target from here (or from the root) */
			char *target = xstrdup(child->link ? child->link : "");
			owned = xrealloc(owned, (n_owned + 2) * sizeof(char *));
			owned[n_owned++] = target;
			owned[n_owned] = NULL;
			if (target[0] == '/')
				cur = u->tree->root;
			size_t k = 0;
			char *parts[4096];
			char *s2 = NULL;
			for (char *t = strtok_r(target, "/", &s2); t; t = strtok_r(NULL, "/", &s2)) {
				if (k == ARRAY_SIZE(parts)) {
					entry_error(err, ENAMETOOLONG, entry, "resolve '%s'", path);
					return NULL;
				}
				parts[k++] = t;
			}
			for (size_t i = k; i > 0; i--) {
				GROW(todo, cap_todo, n_todo + 1);
				todo[n_todo++] = parts[i - 1];
			}
			continue;
		}
		if (!create)
			return NULL;
		entry_error(err, ENOTDIR, entry, "'%s' in its path is not a directory", c);
		return NULL;
	}
	return cur;
}

/* ---- metadata ---- */

struct owner {
	uid_t uid;
	gid_t gid;
	bool chown;
	uint8_t rootless[12];
	size_t rootless_len;
};

static int map_owner(struct unpacker *u, const struct ocitree_tar_entry *e, struct owner *o, const char *entry,
		     struct ocitree_error **err)
{
	const struct ocitree_map_options *m = &u->o->map;
	memset(o, 0, sizeof(*o));
	if (e->uid < 0 || e->uid > UINT32_MAX - 1 || e->gid < 0 || e->gid > UINT32_MAX - 1)
		return entry_error(err, 0, entry, "invalid owner %" PRId64 ":%" PRId64, e->uid, e->gid);
	if (u->rootless) {
		o->rootless_len = rootless_encode((uint32_t)e->uid, (uint32_t)e->gid, o->rootless);
		return 0;
	}
	int64_t uid = idmap_to_host(m->uid_map, m->n_uid_map, e->uid);
	int64_t gid = idmap_to_host(m->gid_map, m->n_gid_map, e->gid);
	if (uid < 0)
		return entry_error(err, 0, entry, "uid %" PRId64 " has no host mapping", e->uid);
	if (gid < 0)
		return entry_error(err, 0, entry, "gid %" PRId64 " has no host mapping", e->gid);
	o->uid = (uid_t)uid;
	o->gid = (gid_t)gid;
	o->chown = true;
	return 0;
}

enum xattr_target { XT_FD, XT_PROC };

/* Set one xattr on fd (a real fd), or through /proc for an O_PATH fd of
 * a special file.  Returns 1 when set, 0 when skipped, -1. */
static int set_xattr(struct unpacker *u, int fd, enum xattr_target how, const char *name, const void *value,
		     size_t len, const char *entry, struct ocitree_error **err)
{
	if (strcmp(name, "security.selinux") == 0) {
		log_warn("entry '%s': ignoring forbidden xattr '%s'", entry, name);
		return 0;
	}
	int r;
	if (how == XT_FD) {
		r = fsetxattr(fd, name, value, len, 0);
	} else {
		char p[64];
		snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
		r = setxattr(p, name, value, len, 0);
	}
	if (r == 0)
		return 1;
	if ((errno == EPERM || errno == EACCES) && u->rootless) {
		log_warn("rootless: entry '%s': ignoring %s when setting xattr '%s'", entry, strerror(errno), name);
		return 0;
	}
	if (errno == ENOTSUP || errno == EOPNOTSUPP) {
		if (!u->enotsup_warned)
			log_warn("entry '%s': the target filesystem does not support xattr '%s'; further warnings are suppressed",
				 entry, name);
		u->enotsup_warned = true;
		return 0;
	}
	return entry_error(err, errno, entry, "set xattr '%s'", name);
}

/* Apply the xattrs of e (and the rootless owner) to a node. */
static int apply_xattrs(struct unpacker *u, struct tnode *n, int fd, enum xattr_target how,
			const struct ocitree_tar_entry *e, const struct owner *o, const char *entry,
			struct ocitree_error **err)
{
	for (size_t i = 0; i < e->n_xattrs; i++) {
		const struct ocitree_xattr *x = &e->xattrs[i];
		if (strcmp(x->name, ROOTLESS_XATTR) == 0) {
			if (u->rootless) {
				log_warn("rootless: entry '%s': ignoring xattr '%s' stored in the layer", entry, x->name);
				continue;
			}
			log_warn("entry '%s': layer has the rootless xattr '%s' in a rootful unpack", entry, x->name);
		}
		int r = set_xattr(u, fd, how, x->name, x->value, x->len, entry, err);
		if (r < 0)
			return -1;
		if (r > 0)
			xattr_list_add(&n->xattrs, x->name, x->value, x->len);
	}
	if (o->rootless_len) {
		int r = set_xattr(u, fd, how, ROOTLESS_XATTR, o->rootless, o->rootless_len, entry, err);
		if (r < 0)
			return -1;
		if (r > 0)
			xattr_list_add(&n->xattrs, ROOTLESS_XATTR, o->rootless, o->rootless_len);
	}
	xattr_list_sort(n->xattrs);
	return 0;
}

static void entry_times(const struct ocitree_tar_entry *e, struct timespec ts[2])
{
	ts[1] = e->mtime;
	if (ts[1].tv_sec == 0 && ts[1].tv_nsec == 0)
		clock_gettime(CLOCK_REALTIME, &ts[1]);
	ts[0] = e->atime.tv_sec || e->atime.tv_nsec ? e->atime : ts[1];
}

/* ---- entries ---- */

/* The file's content goes to fd as the layer has it (holes stay holes); its
 * digest is made on the layer reader's hashing thread, into a slot that
 * resolve_digests() copies into the node at the end of the layer. */
static int write_data(struct unpacker *u, struct ocitree_tar_reader *tr, int fd, struct tnode *n,
		      const struct ocitree_tar_entry *e, const char *entry, struct ocitree_error **err)
{
	n->digest_slot = digest_slot(u);
	tar_reader_hash_entry(tr, n->digest_slot);
	int64_t pos = 0;
	bool sparse = false;
	for (;;) {
		const void *data;
		int64_t off = 0;
		ssize_t len = ocitree_tar_reader_data(tr, &data, &off, err);
		if (len < 0) {
			u->reader_failed = true;
			return -1;
		}
		if (len == 0)
			break;
		if (off < pos || off + len > e->size)
			return entry_error(err, 0, entry, "data outside the file's size");
		if (off > pos) {
			/* a hole: nothing on disk */
			if (lseek(fd, off, SEEK_SET) < 0)
				return entry_error(err, errno, entry, "seek");
			sparse = true;
			pos = off;
		}
		if (write_all(fd, data, (size_t)len) < 0)
			return entry_error(err, errno, entry, "write");
		pos += len;
	}
	if (pos < e->size)
		sparse = true;
	if (sparse && ftruncate(fd, e->size) < 0)
		return entry_error(err, errno, entry, "extend sparse file");
	return 0;
}

static int create_regular(struct unpacker *u, struct ocitree_tar_reader *tr, struct tnode *parent, int pfd,
			  const char *name, const struct ocitree_tar_entry *e, bool device_stub, const char *entry,
			  struct ocitree_error **err)
{
	struct owner o;
	if (map_owner(u, e, &o, entry, err) < 0)
		return -1;
	mode_t perm = e->mode & 07777;
	_cleanup_close_ int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, perm & 0777);
	if (fd < 0)
		return entry_error(err, errno, entry, "create");
	touch_dir(u, parent);
	struct tnode *n = tree_add(u->tree, parent, name);
	n->mode = S_IFREG | perm;
	if (device_stub) {
		struct sha256_ctx md; /* of no data */
		sha256_init(&md);
		sha256_digest(&md, SHA256_DIGEST_SIZE, n->digest);
		n->has_digest = true;
	} else if (write_data(u, tr, fd, n, e, entry, err) < 0) {
		return -1;
	}
	/* skip the calls that would change nothing: a new file is ours, with
	 * the mode less the umask (and the group of a setgid parent) */
	bool parent_setgid = (parent->mode & S_ISGID) != 0;
	if (o.chown && (o.uid != u->euid || o.gid != u->egid || parent_setgid) && fchown(fd, o.uid, o.gid) < 0)
		return entry_error(err, errno, entry, "chown");
	if (((perm & 07000) || (perm & u->umask & 0777)) && fchmod(fd, perm) < 0)
		return entry_error(err, errno, entry, "chmod");
	if (apply_xattrs(u, n, fd, XT_FD, e, &o, entry, err) < 0)
		return -1;
	struct timespec ts[2];
	entry_times(e, ts);
	if (futimens(fd, ts) < 0)
		return entry_error(err, errno, entry, "set times");
	struct stat st;
	if (fstat(fd, &st) < 0)
		return entry_error(err, errno, entry, "stat");
	tnode_set_stat(n, &st);
	if (close(steal_fd(&fd)) < 0)
		return entry_error(err, errno, entry, "close");
	mark_upper(u, n);
	return 0;
}

/* Owner, mode, xattrs and times of a node that has no open fd (symlinks,
 * devices, fifos), then its record.  A node just created is ours: its
 * owner changes only when the entry's differs (or a setgid parent gave it
 * another group). */
static int finish_special(struct unpacker *u, struct tnode *n, int pfd, const char *name, bool created,
			  const struct ocitree_tar_entry *e, const char *entry, struct ocitree_error **err)
{
	struct owner o;
	if (map_owner(u, e, &o, entry, err) < 0)
		return -1;
	bool is_link = S_ISLNK(n->mode);
	bool ours = created && o.uid == u->euid && o.gid == u->egid && !(n->parent->mode & S_ISGID);
	if (o.chown && !ours && fchownat(pfd, name, o.uid, o.gid, AT_SYMLINK_NOFOLLOW) < 0)
		return entry_error(err, errno, entry, "chown");
	if (!is_link && fchmodat(pfd, name, e->mode & 07777, 0) < 0)
		return entry_error(err, errno, entry, "chmod");
	if (e->n_xattrs || o.rootless_len) {
		_cleanup_close_ int fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return entry_error(err, errno, entry, "open");
		if (apply_xattrs(u, n, fd, XT_PROC, e, &o, entry, err) < 0)
			return -1;
	}
	struct timespec ts[2];
	entry_times(e, ts);
	if (utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return entry_error(err, errno, entry, "set times");
	struct stat st;
	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return entry_error(err, errno, entry, "stat");
	tnode_set_stat(n, &st);
	mark_upper(u, n);
	return 0;
}

/* Owner, mode and xattrs of a directory through an fd of its own, then
 * its stat into n. */
static int dir_attrs(struct unpacker *u, struct tnode *n, int pfd, const char *name, bool existed,
		     const struct owner *o, const struct ocitree_tar_entry *e, const char *entry,
		     struct ocitree_error **err)
{
	_cleanup_close_ int fd = n == u->tree->root ? fcntl(u->rootfd, F_DUPFD_CLOEXEC, 3)
						    : openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return entry_error(err, errno, entry, "open directory");
	if (o->chown && fchown(fd, o->uid, o->gid) < 0)
		return entry_error(err, errno, entry, "chown");
	mode_t perm = e->mode & 07777;
	/* rootless: keep the directory usable until the end */
	if (fchmod(fd, u->rootless ? perm | 0700 : perm) < 0)
		return entry_error(err, errno, entry, "chmod");
	if (existed) {
		/* only the layer's xattrs remain */
		char names[65536];
		ssize_t len = flistxattr(fd, names, sizeof(names));
		for (ssize_t i = 0; len > 0 && i < len; i += (ssize_t)strlen(names + i) + 1) {
			if (strcmp(names + i, "security.selinux") == 0)
				continue;
			if (fremovexattr(fd, names + i) < 0 && errno != ENODATA && !(u->rootless && errno == EPERM))
				return entry_error(err, errno, entry, "remove xattr '%s'", names + i);
		}
		xattr_list_free(n->xattrs);
		n->xattrs = NULL;
	}
	if (apply_xattrs(u, n, fd, XT_FD, e, o, entry, err) < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return entry_error(err, errno, entry, "stat");
	tnode_set_stat(n, &st);
	return 0;
}

/* Owner, mode, xattrs and wanted times of a directory (new or kept).  A
 * directory created ready (dir_ready()) only needs its stat. */
static int apply_dir(struct unpacker *u, struct tnode *n, int pfd, const char *name, bool existed, bool ready,
		     const struct ocitree_tar_entry *e, const char *entry, struct ocitree_error **err)
{
	struct owner o;
	if (map_owner(u, e, &o, entry, err) < 0)
		return -1;
	if (ready) {
		struct stat st;
		if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return entry_error(err, errno, entry, "stat");
		tnode_set_stat(n, &st);
	} else if (dir_attrs(u, n, pfd, name, existed, &o, e, entry, err) < 0) {
		return -1;
	}
	n->want_mode = e->mode & 07777;
	if (!n->pending) {
		n->pending = true;
		GROW(u->pending, u->cap_pending, u->n_pending + 1);
		u->pending[u->n_pending++] = n;
	}
	struct timespec ts[2];
	entry_times(e, ts);
	n->want_atime = ts[0];
	n->want_mtime = ts[1];
	mark_upper(u, n);
	return 0;
}

/* Whether a new directory for e in parent can be created with its final
 * owner and mode (ours, nothing the umask or a setgid parent changes, no
 * special bits, no xattrs): then mkdirat() and a stat are all it needs,
 * not four more calls. */
static bool dir_ready(struct unpacker *u, struct tnode *parent, const struct ocitree_tar_entry *e)
{
	if (u->rootless || e->n_xattrs || (parent->mode & S_ISGID) || (e->mode & 07000) || (e->mode & u->umask & 0777))
		return false;
	const struct ocitree_map_options *m = &u->o->map;
	if (e->uid < 0 || e->uid > UINT32_MAX - 1 || e->gid < 0 || e->gid > UINT32_MAX - 1)
		return false; /* map_owner() reports it */
	return idmap_to_host(m->uid_map, m->n_uid_map, e->uid) == (int64_t)u->euid &&
	       idmap_to_host(m->gid_map, m->n_gid_map, e->gid) == (int64_t)u->egid;
}

/* Whether symlink node l resolves (inside the root) to a directory. */
static bool is_dirlink(struct unpacker *u, struct tnode *l)
{
	_cleanup_buf_ struct buf p = BUF_INIT;
	tree_path(l, &p);
	struct ocitree_error *e = NULL;
	struct tnode *d = resolve_dir(u, p.data, false, p.data, &e);
	ocitree_error_free(e);
	return d != NULL;
}

static int whiteout(struct unpacker *u, const char *parent_path, const char *base, const char *entry,
		    struct ocitree_error **err);

static int apply_entry(struct unpacker *u, struct ocitree_tar_reader *tr, const struct ocitree_tar_entry *e,
		       struct ocitree_error **err)
{
	const char *entry = e->path;
	_cleanup_free_ char *path = NULL;
	const char *why = path_clean(e->path, &path);
	if (why)
		return entry_error(err, 0, entry, "%s", why);
	if (!*path) {
		if (e->type != OCITREE_TAR_DIR)
			return entry_error(err, 0, entry, "refusing to change the type of the root directory");
		return apply_dir(u, u->tree->root, u->rootfd, "", true, false, e, entry, err);
	}
	char *parent_path, *base;
	split_path(path, &parent_path, &base);
	if (str_has_prefix(base, ".wh."))
		return whiteout(u, parent_path, base, entry, err);

	/* entries come directory by directory: the parent is most often the
	 * last entry's, still valid unless a node was removed since */
	struct tnode *parent = u->last_parent;
	if (!parent || u->last_removals != u->removals || strcmp(parent_path, u->last_parent_path.data) != 0) {
		u->last_parent = NULL;
		parent = resolve_dir(u, parent_path, true, entry, err);
		if (!parent)
			return -1;
		buf_reset(&u->last_parent_path);
		buf_puts(&u->last_parent_path, parent_path);
		u->last_parent = parent;
		u->last_removals = u->removals;
	}
	int pfd = node_fd(u, parent, err);
	if (pfd < 0)
		return ocitree_error_prefix(err, "entry '%s'", entry);
	struct tnode *old = tree_child(u->tree, parent, base);
	if (old) {
		if (S_ISDIR(old->mode) && e->type == OCITREE_TAR_DIR)
			return apply_dir(u, old, pfd, base, true, false, e, entry, err);
		/* the directory's owner, xattrs and times go onto the kept
		 * symlink (its mode cannot), where umoci puts them too */
		if (u->o->keep_dirlinks && S_ISLNK(old->mode) && e->type == OCITREE_TAR_DIR && is_dirlink(u, old))
			return finish_special(u, old, pfd, base, false, e, entry, err);
		if (e->type == OCITREE_TAR_HARDLINK) {
			/* a hardlink to the path it replaces has nothing left to link to */
			_cleanup_free_ char *target = NULL;
			if (!path_clean(e->linkname, &target) && tree_lookup(u->tree, target) == old)
				return entry_error(err, 0, entry, "hardlink to itself");
		}
		if (remove_node(u, old, entry, err) < 0)
			return -1;
		pfd = node_fd(u, parent, err);
		if (pfd < 0)
			return ocitree_error_prefix(err, "entry '%s'", entry);
	}

	switch (e->type) {
	case OCITREE_TAR_REG:
		return create_regular(u, tr, parent, pfd, base, e, false, entry, err);
	case OCITREE_TAR_DIR: {
		/* 0700 until its owner and mode are set, unless it can be
		 * created with both */
		bool ready = dir_ready(u, parent, e);
		mode_t mode = ready ? e->mode & 0777 : 0700;
		if (mkdirat(pfd, base, mode) < 0)
			return entry_error(err, errno, entry, "create directory");
		touch_dir(u, parent);
		struct tnode *n = tree_add(u->tree, parent, base);
		n->mode = S_IFDIR | mode;
		return apply_dir(u, n, pfd, base, false, ready, e, entry, err);
	}
	case OCITREE_TAR_SYMLINK: {
		if (!e->linkname || !*e->linkname)
			return entry_error(err, 0, entry, "symlink without a target");
		if (symlinkat(e->linkname, pfd, base) < 0)
			return entry_error(err, errno, entry, "create symlink");
		touch_dir(u, parent);
		struct tnode *n = tree_add(u->tree, parent, base);
		n->mode = S_IFLNK | 0777;
		n->link = xstrdup(e->linkname);
		return finish_special(u, n, pfd, base, true, e, entry, err);
	}
	case OCITREE_TAR_HARDLINK: {
		_cleanup_free_ char *target = NULL;
		const char *twhy = path_clean(e->linkname ? e->linkname : "", &target);
		if (twhy)
			return entry_error(err, 0, entry, "hardlink target '%s': %s", e->linkname, twhy);
		if (!*target)
			return entry_error(err, 0, entry, "hardlink to the root directory");
		char *tparent_path, *tbase;
		split_path(target, &tparent_path, &tbase);
		struct tnode *tparent = resolve_dir(u, tparent_path, false, entry, err);
		if (!tparent && err && *err)
			return ocitree_error_prefix(err, "hardlink target '%s'", e->linkname);
		struct tnode *t = tparent ? tree_child(u->tree, tparent, tbase) : NULL;
		if (!t)
			return entry_error(err, 0, entry, "hardlink target '%s' does not exist", e->linkname);
		if (S_ISDIR(t->mode))
			return entry_error(err, 0, entry, "hardlink target '%s' is a directory", e->linkname);
		int tfd = node_fd(u, tparent, err);
		if (tfd < 0)
			return -1;
		pfd = node_fd(u, parent, err);
		if (pfd < 0)
			return -1;
		if (linkat(tfd, tbase, pfd, base, 0) < 0)
			return entry_error(err, errno, entry, "link to '%s'", e->linkname);
		touch_dir(u, parent);
		struct tnode *n = tree_add(u->tree, parent, base);
		struct stat st;
		if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return entry_error(err, errno, entry, "stat");
		tnode_set_stat(n, &st);
		tnode_set_stat(t, &st); /* the link count and ctime changed */
		n->link = xstrdup_or_null(t->link);
		n->xattrs = xattr_list_dup(t->xattrs);
		memcpy(n->digest, t->digest, sizeof(n->digest));
		n->has_digest = t->has_digest;
		n->digest_slot = t->digest_slot; /* t's content still being hashed */
		mark_upper(u, n);
		return 0;
	}
	case OCITREE_TAR_CHAR:
	case OCITREE_TAR_BLOCK:
		if (u->rootless) {
			log_info("rootless: entry '%s': creating an empty file in place of device %u:%u", entry,
				 e->devmajor, e->devminor);
			u->devices_as_files++;
			return create_regular(u, tr, parent, pfd, base, e, true, entry, err);
		}
		/* fallthrough */
	case OCITREE_TAR_FIFO: {
		mode_t type = e->type == OCITREE_TAR_CHAR ? S_IFCHR : e->type == OCITREE_TAR_BLOCK ? S_IFBLK : S_IFIFO;
		if (mknodat(pfd, base, type | (e->mode & 0777), makedev(e->devmajor, e->devminor)) < 0) {
			if (errno == EPERM && type != S_IFIFO)
				return entry_error(err, errno, entry, "create device node (unpack as root, or use --rootless)");
			return entry_error(err, errno, entry, "create %s", type == S_IFIFO ? "fifo" : "device node");
		}
		touch_dir(u, parent);
		struct tnode *n = tree_add(u->tree, parent, base);
		n->mode = type | (e->mode & 07777);
		return finish_special(u, n, pfd, base, true, e, entry, err);
	}
	}
	return entry_error(err, 0, entry, "unsupported entry type");
}

/* Remove n unless the current layer created it; of what it did create,
 * keep those parts. */
static int wipe(struct unpacker *u, struct tnode *n, const char *entry, struct ocitree_error **err)
{
	if (n->gen != u->gen)
		return remove_node(u, n, entry, err);
	if (!S_ISDIR(n->mode))
		return 0;
	_cleanup_free_ struct tnode **kids = NULL;
	size_t k = tree_sorted_children(n, &kids);
	for (size_t i = 0; i < k; i++)
		if (wipe(u, kids[i], entry, err) < 0)
			return -1;
	return 0;
}

static int whiteout(struct unpacker *u, const char *parent_path, const char *base, const char *entry,
		    struct ocitree_error **err)
{
	bool opaque = strcmp(base, ".wh..wh..opq") == 0;
	if (!opaque && str_has_prefix(base, ".wh..wh.")) {
		log_debug("entry '%s': ignoring aufs metadata", entry);
		return 0;
	}
	const char *name = base + 4;
	if (!opaque && (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0))
		return entry_error(err, 0, entry, "invalid whiteout");
	struct ocitree_error *e = NULL;
	struct tnode *parent = resolve_dir(u, parent_path, false, entry, &e);
	if (!parent) {
		if (e) {
			if (err) {
				ocitree_error_free(*err);
				*err = e;
			} else {
				ocitree_error_free(e);
			}
			return -1;
		}
		return 0; /* nothing there to hide */
	}
	if (opaque) {
		_cleanup_free_ struct tnode **kids = NULL;
		size_t k = tree_sorted_children(parent, &kids);
		for (size_t i = 0; i < k; i++)
			if (wipe(u, kids[i], entry, err) < 0)
				return -1;
		return 0;
	}
	struct tnode *t = tree_child(u->tree, parent, name);
	return t ? wipe(u, t, entry, err) : 0;
}

/* Restore the times of the directories the layer touched. */
static int finish_layer(struct unpacker *u, struct ocitree_error **err)
{
	for (size_t i = 0; i < u->n_pending; i++) {
		struct tnode *d = u->pending[i];
		struct timespec ts[2] = {d->want_atime, d->want_mtime};
		int r;
		if (d == u->tree->root) {
			r = futimens(u->rootfd, ts);
		} else {
			int pfd = node_fd(u, d->parent, err);
			if (pfd < 0)
				return -1;
			r = utimensat(pfd, d->name, ts, AT_SYMLINK_NOFOLLOW);
		}
		if (r < 0) {
			_cleanup_buf_ struct buf p = BUF_INIT;
			tree_path(d, &p);
			return ocitree_error_set(err, errno, "set times of '%s'", p.data);
		}
		d->mtime = d->want_mtime;
		d->pending = false;
	}
	u->n_pending = 0;
	return 0;
}

/* ---- the unpacker ---- */

struct unpacker *unpacker_new(int rootfd, const struct ocitree_unpack_options *o, struct ocitree_error **err)
{
	struct stat st;
	if (fstat(rootfd, &st) < 0)
		return ocitree_error_set(err, errno, "stat rootfs"), NULL;
	struct unpacker *u = xcalloc(1, sizeof(*u));
	u->rootfd = rootfd;
	u->o = o;
	u->tree = tree_new();
	tnode_set_stat(u->tree->root, &st);
	u->tree->root->want_mode = st.st_mode & 07777;
	u->euid = geteuid();
	u->egid = getegid();
	u->umask = umask(022);
	umask(u->umask);
	u->rootless = o->map.rootless;
	for (size_t i = 0; i < FD_CACHE; i++)
		u->cache[i].fd = -1;
	trash_init(&u->trash);
	return u;
}

static void report(struct unpacker *u)
{
	if (!u->o->progress)
		return;
	struct ocitree_progress p = {
		.phase = "unpack",
		.layer = u->layer,
		.n_layers = u->n_layers,
		.bytes = u->reader ? ocitree_layer_reader_offset(u->reader) : 0,
		.entries = u->entries,
	};
	u->o->progress(&p, u->o->progress_data);
}

int unpacker_apply(struct unpacker *u, struct ocitree_layout *l, const struct ocitree_descriptor *desc,
		   const char *diff_id, size_t idx, size_t n, struct ocitree_error **err)
{
	struct ocitree_layer_reader *r = ocitree_layer_reader_open(l, desc, diff_id, err);
	if (!r)
		return -1;
	struct ocitree_tar_reader *tr = ocitree_tar_reader_new(r, err);
	if (!tr) {
		ocitree_layer_reader_free(r);
		return -1;
	}
	u->gen++;
	u->layer = idx + 1;
	u->n_layers = n;
	u->entries = 0;
	u->reader = r;
	u->reader_failed = false;
	int ret;
	for (;;) {
		const struct ocitree_tar_entry *e;
		ret = ocitree_tar_reader_next(tr, &e, err);
		if (ret <= 0) {
			u->reader_failed = ret < 0;
			break;
		}
		ret = apply_entry(u, tr, e, err);
		if (ret < 0)
			break;
		if ((++u->entries & 255) == 0)
			report(u);
	}
	if (ret == 0) {
		resolve_digests(u);
		ret = finish_layer(u, err);
	}
	report(u);
	u->reader = NULL;
	ocitree_tar_reader_free(tr);
	ocitree_layer_reader_free(r);
	if (ret < 0 && !u->reader_failed)
		return ocitree_error_prefix(err, "layer %s", desc->digest);
	return ret < 0 ? -1 : 0;
}

/* Post-order: children first, so that a parent's final (rootless) mode
 * never blocks its children. */
static int finish_node(struct unpacker *u, struct tnode *n, struct ocitree_error **err)
{
	if (!S_ISDIR(n->mode)) {
		if (n->nlink <= 1)
			return 0;
	} else {
		for (struct tnode *c = n->first_child; c; c = c->next_sibling)
			if (finish_node(u, c, err) < 0)
				return -1;
	}
	struct stat st;
	int r;
	if (n == u->tree->root) {
		if (u->rootless && fchmod(u->rootfd, n->want_mode) < 0)
			return ocitree_error_set(err, errno, "chmod rootfs");
		r = tnode_stat_at(n, u->rootfd, "", &st);
	} else {
		int pfd = node_fd(u, n->parent, err);
		if (pfd < 0)
			return -1;
		if (u->rootless && S_ISDIR(n->mode) && (n->mode & 07777) != n->want_mode &&
		    fchmodat(pfd, n->name, n->want_mode, 0) < 0) {
			_cleanup_buf_ struct buf p = BUF_INIT;
			tree_path(n, &p);
			return ocitree_error_set(err, errno, "chmod '%s'", p.data);
		}
		r = tnode_stat_at(n, pfd, n->name, &st);
	}
	if (r < 0) {
		_cleanup_buf_ struct buf p = BUF_INIT;
		tree_path(n, &p);
		return ocitree_error_set(err, errno, "stat '%s'", p.data);
	}
	return 0;
}

int unpacker_finish(struct unpacker *u, struct ocitree_error **err)
{
	/* first: the links it removes change the link counts finish_node reads */
	if (trash_finish(&u->trash, u->rootfd, &u->tree->root->mtime, err) < 0)
		return -1;
	int r = finish_node(u, u->tree->root, err);
	cache_flush(u);
	/* one line for all of them: a rootless unpack of any distribution
	 * image meets /dev/null and friends */
	if (r == 0 && u->devices_as_files)
		log_warn("rootless: %zu device node%s became empty files (--verbose lists them)", u->devices_as_files,
			 u->devices_as_files == 1 ? "" : "s");
	return r;
}

struct tree *unpacker_take_tree(struct unpacker *u)
{
	return steal_pointer(&u->tree);
}

void unpacker_free(struct unpacker *u)
{
	if (!u)
		return;
	cache_flush(u);
	/* after a failure: the caller removes the rest */
	trash_free(&u->trash, u->rootfd);
	tree_free(u->tree);
	free(u->pending);
	free_pages(u->slots);
	free_pages(u->free_slots);
	buf_free(&u->last_parent_path);
	free(u);
}

/* ---- removal ---- */

static int remove_children(int dfd, struct ocitree_error **err)
{
	int fd2 = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
	DIR *d = fd2 >= 0 ? fdopendir(fd2) : NULL;
	if (!d) {
		if (fd2 >= 0)
			close(fd2);
		return ocitree_error_set(err, errno, "read directory");
	}
	struct dirent *de;
	int ret = 0;
	while (ret == 0 && (errno = 0, de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN) {
			if (rm_rf_at(dfd, de->d_name, err) < 0)
				ret = -1;
		} else if (unlinkat(dfd, de->d_name, 0) < 0 && errno != ENOENT) {
			ret = ocitree_error_set(err, errno, "remove '%s'", de->d_name);
		}
	}
	closedir(d);
	return ret;
}

int rm_rf_at(int dirfd, const char *name, struct ocitree_error **err)
{
	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return ocitree_error_set(err, errno, "remove '%s'", name);
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == EACCES && fchmodat(dirfd, name, 0700, 0) == 0)
		fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return ocitree_error_set(err, errno, "open '%s'", name);
	struct stat st;
	/* an unprivileged owner needs write and search permission to empty it */
	if (fstat(fd, &st) == 0 && (st.st_mode & 0300) != 0300 && geteuid() != 0)
		fchmod(fd, (st.st_mode & 07777) | 0700);
	if (remove_children(fd, err) < 0)
		return ocitree_error_prefix(err, "remove '%s'", name);
	if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return ocitree_error_set(err, errno, "remove '%s'", name);
	return 0;
}
