/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writable-mount engine (see overlay.h): what the merged view shows.
 * Objects made from upper entries, name lookups, attributes, directory
 * listings, xattrs, opening and the read path.  Changing the upper
 * directory is in overlay-write.c, copy-up and its journal in
 * overlay-copyup.c.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ocitree/log.h"
#include "overlay.h"

void overlay_init(struct ocitree_overlay *ov, struct ocitree_upper *upper, struct ocitree_tree *tree,
                  const struct ocitree_overlay_hooks *hooks, void *hooks_data)
{
	memset(ov, 0, sizeof(*ov));
	ov->upper = upper;
	ov->fmt = upper->state.format;
	ov->tree = tree;
	ov->hooks = hooks;
	ov->hooks_data = hooks_data;
	pthread_mutex_init(&ov->warn_lock, NULL);
}

void overlay_fini(struct ocitree_overlay *ov)
{
	overlay_tindex_free(ov);
	pthread_mutex_destroy(&ov->warn_lock);
}

OCITREE_EXPORT struct ocitree_overlay *ocitree_overlay_new(struct ocitree_upper *upper, struct ocitree_tree *tree,
                                                           const struct ocitree_overlay_hooks *hooks, void *hooks_data)
{
	struct ocitree_overlay *ov = xmalloc(sizeof(*ov));
	overlay_init(ov, upper, tree, hooks, hooks_data);
	return ov;
}

OCITREE_EXPORT void ocitree_overlay_free(struct ocitree_overlay *ov)
{
	if (!ov)
		return;
	overlay_fini(ov);
	free(ov);
}

OCITREE_EXPORT struct ocitree_tree *ocitree_overlay_tree(const struct ocitree_overlay *ov)
{
	return ov->tree;
}

OCITREE_EXPORT struct ocitree_tree *ocitree_overlay_set_tree(struct ocitree_overlay *ov, struct ocitree_tree *t)
{
	struct ocitree_tree *old = ov->tree;
	/* lower inodes of the new tree must not take the st_ino of another
	 * file of the old one that a live object still shows */
	ov->gen++;
	ov->tree = t;
	overlay_tindex_free(ov);
	return old;
}

OCITREE_EXPORT uint64_t ocitree_overlay_ino_lower(const struct ocitree_overlay *ov, uint32_t k)
{
	return ((uint64_t)ov->gen << 32) | k;
}

OCITREE_EXPORT void ocitree_overlay_obj_init(struct ocitree_overlay_obj *o, mode_t type, uint64_t ino)
{
	memset(o, 0, sizeof(*o));
	o->type = type;
	o->ino = ino;
	o->ufd = -1;
}

OCITREE_EXPORT void ocitree_overlay_obj_clear(struct ocitree_overlay_obj *o)
{
	if (o->ufd >= 0)
		close(o->ufd);
	o->ufd = -1;
}

OCITREE_EXPORT void ocitree_overlay_obj_init_lower(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o,
                                                   uint32_t k)
{
	ocitree_overlay_obj_init(o, ocitree_overlay_ltype(ov->tree, k), ocitree_overlay_ino_lower(ov, k));
	o->tree = ov->tree;
	o->lower = k;
}

OCITREE_EXPORT int ocitree_overlay_obj_reopen(const struct ocitree_overlay_obj *o, int flags)
{
	struct upath p;
	upath_fd(&p, o->ufd);
	return open(p.path, flags);
}

OCITREE_EXPORT void ocitree_overlay_obj_move(struct ocitree_overlay_obj *o, struct ocitree_tree *t, uint32_t k,
                                             bool dropped)
{
	/* the new image has its owners now */
	if (dropped)
		o->vstat = false;
	if (k) {
		o->tree = t;
		o->metacopy = false;
		o->lower = o->ufd < 0 || S_ISDIR(o->type) ? k : 0;
	}
	atomic_store(&o->dir_nlink, 0);
}

/* ================================================================ the driver's objects */

struct ocitree_overlay_obj *overlay_find_lower(struct ocitree_overlay *ov, uint32_t k)
{
	return ov->hooks && ov->hooks->find_lower ? ov->hooks->find_lower(ov->hooks_data, k) : NULL;
}

void overlay_put(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o)
{
	if (o && ov->hooks && ov->hooks->put)
		ov->hooks->put(ov->hooks_data, o);
}

void overlay_set_upper(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, int fd, uint64_t uino)
{
	if (ov->hooks && ov->hooks->set_upper) {
		ov->hooks->set_upper(ov->hooks_data, o, fd, uino);
		return;
	}
	o->ufd = fd;
	o->uino = uino;
}

/* ================================================================ the lower tree */

static uint64_t ino_upper(uint64_t u)
{
	return (1ULL << 63) | (u & ~(1ULL << 63));
}

OCITREE_EXPORT mode_t ocitree_overlay_ltype(struct ocitree_tree *t, uint32_t k)
{
	struct stat st;
	return ocitree_tree_stat(t, k, &st) == 0 ? st.st_mode & S_IFMT : 0;
}

uint32_t overlay_lnlink(struct ocitree_tree *t, uint32_t k)
{
	struct stat st;
	return ocitree_tree_stat(t, k, &st) == 0 ? (uint32_t)st.st_nlink : 0;
}

/* The parent index of the current tree: for each inode one directory that
 * names it and the position of the name there.  Built on first use (ns
 * exclusive). */
void overlay_tindex_build(struct ocitree_overlay *ov)
{
	if (ov->tparent)
		return;
	uint32_t n = ocitree_tree_inodes(ov->tree);
	ov->tparent = xcalloc((size_t)n + 1, sizeof(uint32_t));
	ov->tpos = xcalloc((size_t)n + 1, sizeof(uint32_t));
	for (uint32_t d = 1; d <= n; d++) {
		uint32_t c = ocitree_tree_dir_size(ov->tree, d);
		for (uint32_t i = 0; i < c; i++) {
			uint32_t child;
			ocitree_tree_dir_entry(ov->tree, d, i, &child);
			if (!ov->tparent[child]) {
				ov->tparent[child] = d;
				ov->tpos[child] = i;
			}
		}
	}
}

void overlay_tindex_free(struct ocitree_overlay *ov)
{
	free(ov->tparent);
	free(ov->tpos);
	ov->tparent = ov->tpos = NULL;
}

OCITREE_EXPORT char *ocitree_overlay_tree_path(struct ocitree_overlay *ov, uint32_t k)
{
	overlay_tindex_build(ov);
	const char *parts[4096];
	size_t np = 0;
	struct buf b = BUF_INIT;
	for (uint32_t c = k; c != OCITREE_TREE_ROOT && c; c = ov->tparent[c]) {
		if (np == ARRAY_SIZE(parts)) {
			/* absurdly deep: build it the slow way */
			_cleanup_free_ char *rest = ocitree_overlay_tree_path(ov, c);
			buf_puts(&b, rest);
			break;
		}
		parts[np++] = ocitree_tree_dir_entry(ov->tree, ov->tparent[c], ov->tpos[c], NULL);
	}
	while (np > 0) {
		buf_puts(&b, "/");
		buf_puts(&b, parts[--np]);
	}
	if (!b.len)
		buf_puts(&b, "/");
	return buf_steal(&b);
}

/* The inode of the current tree a lower path names, 0 when none of type. */
static uint32_t lower_by_path(struct ocitree_overlay *ov, const char *path, mode_t type)
{
	if (!path || path[0] != '/')
		return 0;
	uint32_t k = ocitree_tree_lookup_path(ov->tree, path + 1);
	return k && ocitree_overlay_ltype(ov->tree, k) == type ? k : 0;
}

/* ================================================================ objects from the upper directory */

/* With virtual owners, devices, fifos and sockets are empty regular files
 * whose stat xattr says what they are: user xattrs, which hold owners, are
 * only allowed on regular files and directories. */
static bool virtual_special(mode_t m)
{
	return S_ISCHR(m) || S_ISBLK(m) || S_ISFIFO(m) || S_ISSOCK(m);
}

/* Read the private xattrs of an upper object into an object being made. */
static int obj_read_meta(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, const struct upath *p,
                         struct upper_meta *m)
{
	if (upper_meta_read(&ov->fmt, p, m) < 0)
		return errno;
	if (m->has_stat && ov->fmt.virtual_owners) {
		o->vstat = true;
		o->v_uid = m->uid;
		o->v_gid = m->gid;
		o->v_mode = m->mode;
		o->v_rdev = m->rdev;
	}
	return 0;
}

void overlay_obj_take_lower_owner(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, uint32_t k)
{
	if (!ov->fmt.virtual_owners)
		return;
	struct stat lst;
	if (ocitree_tree_stat(o->tree, k, &lst) == 0 && !S_ISLNK(lst.st_mode)) {
		o->vstat = true;
		o->v_uid = lst.st_uid;
		o->v_gid = lst.st_gid;
		o->v_mode = lst.st_mode;
		o->v_rdev = lst.st_rdev;
	}
}

/* The opaque marker of formats without xattrs. */
bool overlay_has_opaque_marker(int dirfd)
{
	struct stat st;
	return fstatat(dirfd, UPPER_WH_OPAQUE, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

bool overlay_wh_file_exists(int dirfd, const char *name)
{
	char wh[NAME_MAX + 8];
	snprintf(wh, sizeof(wh), UPPER_WH_PREFIX "%s", name);
	struct stat st;
	return strlen(name) + strlen(UPPER_WH_PREFIX) <= NAME_MAX && fstatat(dirfd, wh, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Whether an object of this type can carry the origin xattr. */
static bool can_record_origin(const struct ocitree_overlay *ov, mode_t type)
{
	if (ov->fmt.xattrs == OCITREE_UPPER_XATTR_NONE)
		return false;
	if (ov->fmt.xattrs == OCITREE_UPPER_XATTR_USER)
		return S_ISREG(type) || S_ISDIR(type) || (ov->fmt.virtual_owners && !S_ISLNK(type));
	return true;
}

OCITREE_EXPORT int ocitree_overlay_obj_open_upper(struct ocitree_overlay *ov, struct ocitree_overlay_obj *dir,
                                                  const char *name, uint32_t below, struct ocitree_overlay_obj *o,
                                                  uint32_t *origin_out)
{
	struct stat st;
	int fd = open_stat_at(dir->ufd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC, &st);
	if (fd < 0)
		return errno;
	ocitree_overlay_obj_init(o, st.st_mode & S_IFMT, 0);
	o->ufd = fd;
	o->uino = st.st_ino;
	o->tree = ov->tree;
	struct upath p;
	upath_fd(&p, fd);
	struct upper_meta m;
	int r = obj_read_meta(ov, o, &p, &m);
	if (r) {
		ocitree_overlay_obj_clear(o);
		return r;
	}
	if (o->vstat && (o->v_mode & S_IFMT) != o->type) {
		/* a special file kept as a regular file (virtual owners) */
		if (S_ISREG(o->type) && virtual_special(o->v_mode))
			o->type = o->v_mode & S_IFMT;
		else
			o->vstat = false;
	}
	uint32_t origin = 0;
	if (S_ISREG(st.st_mode) && m.metacopy) {
		origin = lower_by_path(ov, m.redirect, S_IFREG);
		if (origin) {
			o->metacopy = true;
			o->lower = origin;
		} else {
			ocitree_log(OCITREE_LOG_WARN, "metacopy file '%s' points at '%s', which the image lacks", name,
				    m.redirect);
		}
	}
	if (!origin)
		origin = lower_by_path(ov, m.origin, o->type);
	if (!origin && !S_ISDIR(st.st_mode) && below && ocitree_overlay_ltype(dir->tree, below) == o->type &&
	    overlay_lnlink(dir->tree, below) == 1 && !can_record_origin(ov, o->type))
		origin = below; /* it could not record its origin: take the one it hides */
	if (S_ISDIR(st.st_mode)) {
		bool opaque = m.opaque || overlay_has_opaque_marker(fd) || overlay_wh_file_exists(dir->ufd, name);
		o->lower = !opaque && below && ocitree_overlay_ltype(dir->tree, below) == S_IFDIR ? below : 0;
		if (!origin)
			origin = o->lower;
	}
	upper_meta_clear(&m);
	o->ino = origin ? ocitree_overlay_ino_lower(ov, origin) : ino_upper(st.st_ino);
	*origin_out = origin;
	return 0;
}

OCITREE_EXPORT int ocitree_overlay_root_init(struct ocitree_overlay *ov, struct ocitree_overlay_obj *root, bool fresh,
                                             struct ocitree_error **err)
{
	struct ocitree_upper *u = ov->upper;
	int fd = openat(u->fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return ocitree_error_set(err, errno, "open upper directory '%s'", u->path);
	if (fresh) {
		/* the upper directory is the root of the tree: it gets the
		 * image's owner, mode, xattrs and times */
		int r = overlay_set_lower_meta(ov, ov->tree, OCITREE_TREE_ROOT, fd, NULL);
		if (!r)
			r = overlay_set_lower_times(ov->tree, OCITREE_TREE_ROOT, fd);
		if (r) {
			close(fd);
			return ocitree_error_set(err, r, "give upper directory '%s' the image's root", u->path);
		}
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return ocitree_error_set(err, errno, "stat upper directory '%s'", u->path);
	}
	ocitree_overlay_obj_init(root, S_IFDIR, ocitree_overlay_ino_lower(ov, OCITREE_TREE_ROOT));
	root->ufd = fd;
	root->uino = st.st_ino;
	root->tree = ov->tree;
	struct upath p;
	upath_fd(&p, fd);
	struct upper_meta m;
	if (obj_read_meta(ov, root, &p, &m)) {
		ocitree_overlay_obj_clear(root);
		return ocitree_error_set(err, errno, "read the xattrs of upper directory '%s'", u->path);
	}
	root->lower = m.opaque || overlay_has_opaque_marker(fd) ? 0 : OCITREE_TREE_ROOT;
	upper_meta_clear(&m);
	ov->root = root;
	return 0;
}

/* ================================================================ upper directories */

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

/* A visible entry of a merged directory: its name and type (S_IFMT bits). */
typedef int (*merged_entry_fn)(void *ctx, const char *name, mode_t type);

struct merged_walk {
	merged_entry_fn fn;
	void *ctx;
	int stop;
	struct strset names; /* of the upper directory, visible or hidden */
};

static int merged_upper_entry(void *ctx, const char *name, mode_t type, bool hides)
{
	struct merged_walk *w = ctx;
	strset_add(&w->names, name);
	if (!hides)
		w->stop = w->fn(w->ctx, name, type);
	return w->stop;
}

/* Call fn for each visible entry of directory n until it returns nonzero:
 * the upper directory's, then the image's it neither has nor hides; 0, or
 * an errno when the upper directory cannot be read. */
static int merged_dir_each(struct ocitree_overlay_obj *n, merged_entry_fn fn, void *ctx)
{
	struct merged_walk w = {.fn = fn, .ctx = ctx};
	int e = n->ufd >= 0 ? upper_dir_each(n->ufd, merged_upper_entry, &w) : 0;
	uint32_t nc = !e && n->lower ? ocitree_tree_dir_size(n->tree, n->lower) : 0;
	for (uint32_t i = 0; !w.stop && i < nc; i++) {
		uint32_t c;
		const char *name = ocitree_tree_dir_entry(n->tree, n->lower, i, &c);
		if (!strset_has(&w.names, name))
			w.stop = fn(ctx, name, ocitree_overlay_ltype(n->tree, c));
	}
	strset_free(&w.names);
	return e;
}

static int count_dir(void *ctx, const char *name, mode_t type)
{
	if (type == S_IFDIR)
		(*(uint32_t *)ctx)++;
	return 0;
}

/* st_nlink of a merged directory: 2 + the directories in it. */
static uint32_t dir_nlink(struct ocitree_overlay_obj *n)
{
	uint32_t cached = atomic_load_explicit(&n->dir_nlink, memory_order_relaxed);
	if (cached)
		return cached;
	uint32_t count = 2;
	if (merged_dir_each(n, count_dir, &count) != 0)
		return 2;
	atomic_store_explicit(&n->dir_nlink, count, memory_order_relaxed);
	return count;
}

OCITREE_EXPORT int ocitree_overlay_stat(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n, struct stat *st)
{
	if (n->ufd >= 0) {
		if (fstat(n->ufd, st) < 0)
			return errno;
		if (ov->fmt.virtual_owners) {
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
			st->st_nlink = dir_nlink(n);
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

/* ================================================================ names */

OCITREE_EXPORT int ocitree_overlay_check_name(const char *name)
{
	if (strlen(name) > NAME_MAX)
		return ENAMETOOLONG;
	return 0;
}

OCITREE_EXPORT int ocitree_overlay_check_new_name(const char *name)
{
	int r = ocitree_overlay_check_name(name);
	if (r)
		return r;
	return upper_name_reserved(name) ? EINVAL : 0;
}

OCITREE_EXPORT int ocitree_overlay_find(struct ocitree_overlay *ov, struct ocitree_overlay_obj *dir, const char *name,
                                        struct ocitree_overlay_found *f)
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
			f->kind = OCITREE_OVERLAY_FOUND_UPPER;
			return 0;
		}
		if (errno != ENOENT)
			return errno;
		if (ov->fmt.whiteout == OCITREE_UPPER_WHITEOUT_FILE && f->below &&
		    overlay_wh_file_exists(dir->ufd, name)) {
			f->whiteout = true;
			return 0;
		}
	}
	if (f->below) {
		f->kind = OCITREE_OVERLAY_FOUND_LOWER;
		f->lower = f->below;
	}
	return 0;
}

static int not_empty(void *ctx, const char *name, mode_t type)
{
	*(bool *)ctx = false;
	return 1;
}

OCITREE_EXPORT int ocitree_overlay_dir_is_empty(struct ocitree_overlay *ov, struct ocitree_overlay_obj *dir,
                                                bool *empty)
{
	bool e = true;
	int r = merged_dir_each(dir, not_empty, &e);
	if (!r)
		*empty = e;
	return r;
}

static int cmp_dent(const void *a, const void *b)
{
	return strcmp(((const struct ocitree_overlay_dent *)a)->name, ((const struct ocitree_overlay_dent *)b)->name);
}

struct list_walk {
	struct ocitree_overlay_dent **ents;
	size_t *n;
	size_t cap;
};

static int list_entry(void *ctx, const char *name, mode_t type)
{
	struct list_walk *w = ctx;
	GROW(*w->ents, w->cap, *w->n + 1);
	(*w->ents)[(*w->n)++] = (struct ocitree_overlay_dent){xstrdup(name), type};
	return 0;
}

OCITREE_EXPORT int ocitree_overlay_dir_list(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n,
                                            struct ocitree_overlay_dent **ents, size_t *count)
{
	struct list_walk w = {.ents = ents, .n = count, .cap = *count};
	int e = merged_dir_each(n, list_entry, &w);
	if (e)
		return e;
	if (*count)
		qsort(*ents, *count, sizeof(**ents), cmp_dent);
	return 0;
}

OCITREE_EXPORT int ocitree_overlay_readlink(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n, char *buf,
                                            size_t size)
{
	if (n->ufd >= 0) {
		ssize_t len = readlinkat(n->ufd, "", buf, size - 1);
		if (len < 0)
			return errno;
		buf[len] = '\0';
		return 0;
	}
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = ocitree_tree_entry(n->tree, n->lower, &l);
	if (!e || e->type != OCITREE_ENTRY_SYMLINK)
		return EINVAL;
	snprintf(buf, size, "%s", ocitree_layer_index_string(l, e->link));
	return 0;
}

/* ================================================================ xattrs */

bool overlay_lower_xattr(const struct ocitree_overlay_obj *o, const char *name, const void **value, size_t *len)
{
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = ocitree_tree_entry(o->tree, o->lower, &l);
	uint32_t cur = 0;
	const char *xn;
	const void *xv;
	size_t xl;
	while (e && ocitree_layer_entry_xattr_next(l, e, &cur, &xn, &xv, &xl)) {
		if (strcmp(xn, name) == 0) {
			if (value)
				*value = xv;
			if (len)
				*len = xl;
			return true;
		}
	}
	return false;
}

int overlay_getxattr(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n, const char *name, struct buf *out)
{
	if (n->ufd >= 0) {
		_cleanup_free_ char *uname = upper_xattr_escape(&ov->fmt, name);
		struct upath p;
		upath_fd(&p, n->ufd);
		if (upath_get_all(&p, uname, out) < 0)
			return errno == ENOTSUP ? ENODATA : errno;
		return 0;
	}
	const void *v;
	size_t len;
	if (!overlay_lower_xattr(n, name, &v, &len))
		return ENODATA;
	buf_append(out, v, len);
	return 0;
}

int overlay_listxattr(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n, struct buf *out)
{
	if (n->ufd >= 0) {
		struct upath p;
		upath_fd(&p, n->ufd);
		_cleanup_buf_ struct buf names = BUF_INIT;
		if (upath_list_all(&p, &names) < 0)
			return errno;
		for (size_t off = 0; off < names.len; off += strlen(names.data + off) + 1) {
			const char *shown = upper_xattr_unescape(&ov->fmt, names.data + off);
			if (shown)
				buf_append(out, shown, strlen(shown) + 1);
		}
		return 0;
	}
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = ocitree_tree_entry(n->tree, n->lower, &l);
	uint32_t cur = 0;
	const char *xn;
	const void *xv;
	size_t xl;
	while (e && ocitree_layer_entry_xattr_next(l, e, &cur, &xn, &xv, &xl))
		buf_append(out, xn, strlen(xn) + 1);
	return 0;
}

OCITREE_EXPORT int ocitree_overlay_getxattr(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, const char *name,
                                            void **value, size_t *len)
{
	struct buf b = BUF_INIT;
	int r = overlay_getxattr(ov, o, name, &b);
	*len = r ? 0 : b.len;
	*value = r ? NULL : buf_steal(&b);
	buf_free(&b);
	return r;
}

OCITREE_EXPORT int ocitree_overlay_listxattr(struct ocitree_overlay *ov, struct ocitree_overlay_obj *o, char **names,
                                             size_t *len)
{
	struct buf b = BUF_INIT;
	int r = overlay_listxattr(ov, o, &b);
	*len = r ? 0 : b.len;
	*names = r ? NULL : buf_steal(&b);
	buf_free(&b);
	return r;
}

/* ================================================================ opening and reading */

OCITREE_EXPORT int ocitree_overlay_open(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n, int flags, int *fd,
                                        bool *keep_cache)
{
	*fd = -1;
	*keep_cache = false;
	if (S_ISDIR(n->type))
		return EISDIR;
	if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)) {
		int r = ocitree_overlay_copy_up(ov, n,
		                                (flags & O_TRUNC) ? OCITREE_OVERLAY_CU_EMPTY : OCITREE_OVERLAY_CU_DATA);
		if (r)
			return r;
	}
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

OCITREE_EXPORT int ocitree_overlay_read_source(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n,
                                               struct ocitree_overlay_source *src)
{
	memset(src, 0, sizeof(*src));
	if (n->ufd >= 0 && !n->metacopy) {
		/* copied up since the handle was opened: the same file */
		src->upper = true;
		return 0;
	}
	src->tree = n->tree;
	src->k = n->lower;
	src->limit = UINT64_MAX;
	if (n->metacopy) {
		/* a metacopy file longer than the image's (truncated longer by
		 * hand: the mount copies up on truncate) reads zeros past the
		 * image's data, as its copy-up and a commit fill it */
		src->zero_fill = true;
		struct stat st;
		if (fstat(n->ufd, &st) == 0)
			src->limit = (uint64_t)st.st_size;
	}
	return 0;
}

/* Read lower file data (inode k of t) at off into buf. */
static ssize_t lower_pread(struct ocitree_tree *t, uint32_t k, void *buf, size_t len, uint64_t off,
			   struct ocitree_error **err)
{
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = ocitree_tree_entry(t, k, &l);
	if (!e || e->type != OCITREE_ENTRY_REG || off >= e->size)
		return 0;
	if (len > e->size - off)
		len = (size_t)(e->size - off);
	return ocitree_layer_index_pread(l, buf, len, e->data_off + off, err);
}

OCITREE_EXPORT int ocitree_overlay_read_lower(const struct ocitree_overlay_source *src, uint64_t off, size_t size,
                                              struct ocitree_tree_data *d)
{
	memset(d, 0, sizeof(*d));
	d->fd = -1;
	if (off >= src->limit)
		return 0;
	if (size > src->limit - off)
		size = (size_t)(src->limit - off);
	struct stat lst;
	if (ocitree_tree_stat(src->tree, src->k, &lst) < 0 || !S_ISREG(lst.st_mode))
		return EINVAL;
	uint64_t lsize = (uint64_t)lst.st_size;
	_cleanup_error_ struct ocitree_error *err = NULL;
	if (!src->zero_fill || off + size <= lsize) {
		if (ocitree_tree_read(src->tree, src->k, off, size, d, &err) == 0)
			return 0;
		if (err->kind == OCITREE_ERROR_USAGE)
			return err->errnum;
	} else {
		/* the image's bytes and zeros after them, in one buffer */
		size_t have = off < lsize ? (size_t)(lsize - off) : 0;
		d->buf = xcalloc(1, size ? size : 1);
		ssize_t got = have ? lower_pread(src->tree, src->k, d->buf, have, off, &err) : 0;
		if (got >= 0) {
			/* the image's data ending early is a short read */
			d->size = (size_t)got == have ? size : (size_t)got;
			d->iov[0] = (struct iovec){d->buf, d->size};
			d->n_iov = 1;
			return 0;
		}
		ocitree_tree_data_release(d);
	}
	ocitree_log(OCITREE_LOG_ERROR, "read: %s", err ? err->msg : "I/O error");
	return EIO;
}
