/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The in-memory tree of a root filesystem (rootfs-tree.h): nodes found by
 * (parent, name) through one hash table, their xattr lists, and filling a
 * node from stat(2)/statx(2) (with birth time where the kernel has it).
 */
#include "config.h"

#include <fcntl.h>
#include <sys/sysmacros.h>

#include "rootfs-tree.h"

void xattr_list_add(struct xattr_list **l, const char *name, const void *value, size_t len)
{
	if (!*l)
		*l = xcalloc(1, sizeof(**l));
	struct xattr_list *x = *l;
	for (size_t i = 0; i < x->n; i++) {
		if (strcmp(x->v[i].name, name) == 0) {
			free(x->v[i].value);
			x->v[i].value = xmalloc(len ? len : 1);
			memcpy(x->v[i].value, value, len);
			x->v[i].len = len;
			return;
		}
	}
	x->v = xrealloc(x->v, (x->n + 1) * sizeof(*x->v));
	x->v[x->n].name = xstrdup(name);
	x->v[x->n].value = xmalloc(len ? len : 1);
	memcpy(x->v[x->n].value, value, len);
	x->v[x->n].len = len;
	x->n++;
}

void xattr_list_free(struct xattr_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].name);
		free(l->v[i].value);
	}
	free(l->v);
	free(l);
}

static int cmp_item(const void *a, const void *b)
{
	return strcmp(((const struct xattr_item *)a)->name, ((const struct xattr_item *)b)->name);
}

void xattr_list_sort(struct xattr_list *l)
{
	if (l && l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), cmp_item);
}

bool xattr_list_equal(const struct xattr_list *a, const struct xattr_list *b)
{
	size_t na = a ? a->n : 0, nb = b ? b->n : 0;
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++) {
		const struct xattr_item *x = &a->v[i];
		bool found = false;
		for (size_t k = 0; k < nb && !found; k++) {
			const struct xattr_item *y = &b->v[k];
			found = strcmp(x->name, y->name) == 0 && x->len == y->len && memcmp(x->value, y->value, x->len) == 0;
		}
		if (!found)
			return false;
	}
	return true;
}

struct xattr_list *xattr_list_dup(const struct xattr_list *l)
{
	struct xattr_list *r = NULL;
	for (size_t i = 0; l && i < l->n; i++)
		xattr_list_add(&r, l->v[i].name, l->v[i].value, l->v[i].len);
	return r;
}

/* ---- the tree ---- */

static size_t bucket_of(const struct tree *t, const struct tnode *parent, const char *name)
{
	uint64_t h = hash_bytes(name, strlen(name)) ^ ((uint64_t)(uintptr_t)parent * 0x9e3779b97f4a7c15ULL);
	return (size_t)(h ^ (h >> 29)) & (t->n_buckets - 1);
}

struct tree *tree_new(void)
{
	struct tree *t = xcalloc(1, sizeof(*t));
	t->n_buckets = 1024;
	t->buckets = xcalloc(t->n_buckets, sizeof(*t->buckets));
	t->root = xcalloc(1, sizeof(*t->root));
	t->root->name = xstrdup("");
	t->root->mode = S_IFDIR | 0755;
	return t;
}

static void node_free(struct tnode *n)
{
	free(n->name);
	free(n->link);
	xattr_list_free(n->xattrs);
	free(n);
}

static void free_children(struct tnode *n)
{
	struct tnode *c = n->first_child;
	while (c) {
		struct tnode *next = c->next_sibling;
		free_children(c);
		node_free(c);
		c = next;
	}
}

void tree_free(struct tree *t)
{
	if (!t)
		return;
	free_children(t->root);
	node_free(t->root);
	free(t->buckets);
	free(t);
}

struct tnode *tree_child(const struct tree *t, const struct tnode *parent, const char *name)
{
	for (struct tnode *n = t->buckets[bucket_of(t, parent, name)]; n; n = n->hnext)
		if (n->parent == parent && strcmp(n->name, name) == 0)
			return n;
	return NULL;
}

static void rehash(struct tree *t)
{
	size_t old = t->n_buckets;
	struct tnode **ob = t->buckets;
	t->n_buckets *= 4;
	t->buckets = xcalloc(t->n_buckets, sizeof(*t->buckets));
	for (size_t i = 0; i < old; i++) {
		struct tnode *n = ob[i];
		while (n) {
			struct tnode *next = n->hnext;
			size_t b = bucket_of(t, n->parent, n->name);
			n->hnext = t->buckets[b];
			t->buckets[b] = n;
			n = next;
		}
	}
	free(ob);
}

struct tnode *tree_add(struct tree *t, struct tnode *parent, const char *name)
{
	if (t->count + 1 > t->n_buckets)
		rehash(t);
	struct tnode *n = xcalloc(1, sizeof(*n));
	n->name = xstrdup(name);
	n->parent = parent;
	n->next_sibling = parent->first_child;
	parent->first_child = n;
	size_t b = bucket_of(t, parent, name);
	n->hnext = t->buckets[b];
	t->buckets[b] = n;
	t->count++;
	return n;
}

static void unhash_subtree(struct tree *t, struct tnode *n)
{
	for (struct tnode *c = n->first_child; c; c = c->next_sibling)
		unhash_subtree(t, c);
	struct tnode **pp = &t->buckets[bucket_of(t, n->parent, n->name)];
	while (*pp && *pp != n)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = n->hnext;
	t->count--;
}

void tree_remove(struct tree *t, struct tnode *n)
{
	struct tnode **pp = &n->parent->first_child;
	while (*pp && *pp != n)
		pp = &(*pp)->next_sibling;
	if (*pp)
		*pp = n->next_sibling;
	unhash_subtree(t, n);
	free_children(n);
	node_free(n);
}

struct tnode *tree_lookup(const struct tree *t, const char *path)
{
	struct tnode *n = t->root;
	_cleanup_free_ char *copy = xstrdup(path);
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c && n; c = strtok_r(NULL, "/", &save))
		n = tree_child(t, n, c);
	return n;
}

void tree_path(const struct tnode *n, struct buf *b)
{
	if (!n->parent)
		return;
	if (n->parent->parent) {
		tree_path(n->parent, b);
		buf_puts(b, "/");
	}
	buf_puts(b, n->name);
}

static int cmp_node(const void *a, const void *b)
{
	return strcmp((*(struct tnode *const *)a)->name, (*(struct tnode *const *)b)->name);
}

size_t tree_sorted_children(const struct tnode *n, struct tnode ***out)
{
	size_t count = 0;
	for (struct tnode *c = n->first_child; c; c = c->next_sibling)
		count++;
	struct tnode **v = xmalloc((count ? count : 1) * sizeof(*v));
	size_t i = 0;
	for (struct tnode *c = n->first_child; c; c = c->next_sibling)
		v[i++] = c;
	qsort(v, count, sizeof(*v), cmp_node);
	*out = v;
	return count;
}

void tnode_set_stat(struct tnode *n, const struct stat *st)
{
	n->mode = st->st_mode;
	n->uid = st->st_uid;
	n->gid = st->st_gid;
	n->size = (uint64_t)st->st_size;
	n->ino = st->st_ino;
	n->nlink = st->st_nlink;
	n->rdev = st->st_rdev;
	n->mtime = st->st_mtim;
	n->ctime = st->st_ctim;
}

int tnode_stat_at(struct tnode *n, int dirfd, const char *name, struct stat *st)
{
	int flags = AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH);
#ifdef HAVE_STATX
	struct statx sx;
	if (statx(dirfd, name, flags, STATX_BASIC_STATS | STATX_BTIME, &sx) < 0)
		return -1;
	memset(st, 0, sizeof(*st));
	st->st_mode = sx.stx_mode;
	st->st_uid = sx.stx_uid;
	st->st_gid = sx.stx_gid;
	st->st_size = (off_t)sx.stx_size;
	st->st_ino = sx.stx_ino;
	st->st_nlink = sx.stx_nlink;
	st->st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
	st->st_rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
	st->st_mtim = (struct timespec){sx.stx_mtime.tv_sec, sx.stx_mtime.tv_nsec};
	st->st_ctim = (struct timespec){sx.stx_ctime.tv_sec, sx.stx_ctime.tv_nsec};
	st->st_atim = (struct timespec){sx.stx_atime.tv_sec, sx.stx_atime.tv_nsec};
	tnode_set_stat(n, st);
	n->has_btime = (sx.stx_mask & STATX_BTIME) != 0;
	if (n->has_btime)
		n->btime = (struct timespec){sx.stx_btime.tv_sec, sx.stx_btime.tv_nsec};
	return 0;
#else
	if (fstatat(dirfd, name, st, flags) < 0)
		return -1;
	tnode_set_stat(n, st);
	n->has_btime = false;
	return 0;
#endif
}
