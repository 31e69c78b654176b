/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writable mount's nodes (see fs-rw.h): the maps that find a node
 * again by lower inode or upper inode number, reference counts the kernel
 * and the handles hold, and the hooks through which the engine gives a
 * live node its upper object.
 */
#include "config.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fs-rw.h"
#include "common.h"

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif

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

/* ================================================================ nodes */

struct node *node_of(struct rwfs *fs, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? fs->root : (struct node *)(uintptr_t)ino;
}

fuse_ino_t nodeid(struct rwfs *fs, struct node *n)
{
	return n == fs->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

struct node *node_new(mode_t type, uint64_t ino)
{
	struct node *n = xcalloc(1, sizeof(*n));
	ocitree_overlay_obj_init(&n->o, type, ino);
	n->rfd = n->wfd = -1;
	return n;
}

void dir_state_free(struct dir_state *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(d->l); i++) {
		for (size_t j = 0; j < d->l[i].n; j++)
			free(d->l[i].ents[j].name);
		free(d->l[i].ents);
	}
	pthread_mutex_destroy(&d->lock);
	free(d);
}

void node_destroy(struct node *n)
{
	ocitree_overlay_obj_clear(&n->o);
	dir_state_free(n->dir);
	node_close_fds_locked(n);
	free(n);
}

void node_unref_locked(struct rwfs *fs, struct node *n, uint64_t nlookup, uint32_t refs)
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

void node_pin(struct rwfs *fs, struct node *n)
{
	pthread_mutex_lock(&fs->nodes);
	n->refs++;
	pthread_mutex_unlock(&fs->nodes);
}

void node_lookup_inc(struct rwfs *fs, struct node *n)
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
	struct node *nn = node_new(0, 0);
	ocitree_overlay_obj_init_lower(fs->ov, &nn->o, k);
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

int node_get_upper(struct rwfs *fs, struct node *dir, const char *name, const struct stat *ust, uint32_t below,
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
	struct node *nn = node_new(0, 0);
	uint32_t origin = 0;
	int r = ocitree_overlay_obj_open_upper(fs->ov, &dir->o, name, below, &nn->o, &origin);
	if (r) {
		node_destroy(nn);
		return r;
	}
	nn->refs = 1;
	pthread_mutex_lock(&fs->nodes);
	n = map_find(&fs->by_upper, nn->o.uino, true);
	if (n) {
		n->refs++;
	} else {
		nn->ukey = nn->o.uino;
		map_insert(&fs->by_upper, nn, true);
		/* the same file under a lower name not yet copied up (a copy-up
		 * interrupted between two names) is the same node */
		if (origin && !S_ISDIR(nn->o.type) && !map_find(&fs->by_lower, origin, false)) {
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

int lookup_node(struct rwfs *fs, struct node *dir, const char *name, struct node **out,
                struct ocitree_overlay_found *fo)
{
	struct ocitree_overlay_found f;
	int r = ocitree_overlay_find(fs->ov, &dir->o, name, &f);
	if (fo)
		*fo = f;
	*out = NULL;
	if (r)
		return r;
	if (f.kind == OCITREE_OVERLAY_FOUND_UPPER)
		return node_get_upper(fs, dir, name, &f.ust, f.below, out);
	if (f.kind == OCITREE_OVERLAY_FOUND_LOWER) {
		*out = node_get_lower(fs, f.lower);
		return 0;
	}
	return ENOENT;
}

int node_read_fd(struct rwfs *fs, struct node *n)
{
	pthread_mutex_lock(&fs->nodes);
	if (n->rfd < 0)
		n->rfd = ocitree_overlay_obj_reopen(&n->o, O_RDONLY | O_CLOEXEC);
	int fd = n->rfd;
	pthread_mutex_unlock(&fs->nodes);
	return fd;
}

void node_keep_write_fd(struct rwfs *fs, struct node *n, int fd)
{
	pthread_mutex_lock(&fs->nodes);
	if (n->wfd < 0) {
		n->wfd = fd;
		fd = -1;
	}
	pthread_mutex_unlock(&fs->nodes);
	if (fd >= 0)
		close(fd);
}

int node_write_fd(struct rwfs *fs, struct node *n, int *fd)
{
	pthread_mutex_lock(&fs->nodes);
	*fd = n->wfd;
	pthread_mutex_unlock(&fs->nodes);
	if (*fd >= 0)
		return 0;
	/* the first write since the node was made: what open did before the
	 * kernel stopped sending it */
	pthread_rwlock_wrlock(&fs->ns);
	int r = S_ISREG(n->o.type) ? ocitree_overlay_copy_up(fs->ov, &n->o, OCITREE_OVERLAY_CU_DATA) : EINVAL;
	int nfd = -1;
	if (!r) {
		nfd = ocitree_overlay_obj_reopen(&n->o, O_WRONLY | O_CLOEXEC);
		if (nfd < 0)
			r = errno;
	}
	if (!r) {
		node_keep_write_fd(fs, n, nfd);
		pthread_mutex_lock(&fs->nodes);
		*fd = n->wfd;
		pthread_mutex_unlock(&fs->nodes);
	}
	pthread_rwlock_unlock(&fs->ns);
	return r;
}

void node_close_fds_locked(struct node *n)
{
	if (n->rfd >= 0)
		close(n->rfd);
	if (n->wfd >= 0)
		close(n->wfd);
	n->rfd = n->wfd = -1;
}

/* ================================================================ pushing */

/* The pusher (fs-push.c) stores image files in the page cache ahead of a
 * reader; here the writable mount says which files it may push, and keeps
 * a push from putting the image's bytes over a file whose data changed.
 * Node ids are nodes, so a push goes to the node of the lower inode, found
 * in by_lower: one the kernel looked up, untouched (no upper object, not
 * removed: a removed node's data is still the image's, but nobody reads it
 * in order), of the tree the pusher walks.
 *
 * The kernel changes its page cache before the daemon hears of it: a
 * write(2) copies the caller's bytes into the pages and only then sends
 * WRITE, whose data is read from those pages; a store between the two
 * would put the image's bytes in the cache and into the WRITE, and no lock
 * of the daemon's can order that.  What orders it is that the kernel asks
 * something first, with nothing of the file's page cache locked:
 *   - before each write(2) (and each truncate) it asks for the file's
 *     security.capability (file_remove_privs, on every write: FUSE mounts
 *     never mark inodes S_NOSEC), holding the inode lock;
 *   - a truncate and fallocate are SETATTR and FALLOCATE, answered before
 *     the kernel drops or changes pages;
 *   - a kernel that sends OPEN sends it before a write through the file.
 * Each of those calls node_data_changing with wait: push_off is set under
 * nodes, so no push of the node is claimed from then on, and a push already
 * claimed ends before the request goes on (its store lands before the
 * write's bytes, which are then written over it: the same as a copy-up and
 * the write).  WRITE itself, the create of an existing file and mmap's
 * write-back call it without wait (the writer may hold a locked page the
 * store waits for): a store that was under way is dropped again
 * (fuse_lowlevel_notify_inval_inode, from the pusher's thread).
 *
 * The wait cannot deadlock on a lock: the waiter holds no lock of ours and
 * no page of the file (the requests above come before the kernel touches
 * the pages); the store waits only for pages locked by READs of the file,
 * whose handlers wait for nothing but ns, which no waiter holds; and the
 * pusher holds no lock while it stores.  But those READs need a worker:
 * with every worker waiting (-o threads=1, or as many waiters on the one
 * file), or once the session is ending and the workers no longer read
 * requests (fs_push_free answers them, after the workers are joined), the
 * store would never end.  So the wait gives up when the session ends and
 * after a second (a store takes microseconds), and the change goes on as
 * one that does not wait.
 *
 * A node is pushed at most once, and never after a READ of it: its pages
 * came from the daemon then, and may be mapped and written through mmap
 * (which sends nothing until write-back) by the time a push would come; a
 * READ while the node's push is claimed calls its store off for the same
 * reason.  What is left: a page faulted in by a READ while the store is
 * already copying the file, and written through mmap between the READ's
 * reply and the store taking that page's lock (a window of the store's
 * few microseconds, which the READ must fall into), loses that write to
 * the image's bytes; and a kernel that stopped asking for
 * security.capability before writes would reopen the WRITE race above. */

void node_push_off(struct rwfs *fs, struct node *n)
{
	pthread_mutex_lock(&fs->nodes);
	n->push_off = true;
	if (fs->pushing == n)
		fs->push_cancel = true; /* the same bytes: nothing to drop if stored already */
	pthread_mutex_unlock(&fs->nodes);
}

void node_data_changing(struct rwfs *fs, struct node *n, bool wait)
{
	pthread_mutex_lock(&fs->nodes);
	n->push_off = true;
	if (fs->pushing == n) {
		fs->push_cancel = true;
		fs->push_changed = true;
		fs->push_raced++;
		fs->push_waited += wait;
		/* in steps, and a second at most: see above */
		for (int i = 0; wait && fs->pushing == n && i < 20 && !fuse_session_exited(fs->se); i++) {
			struct timespec ts = realtime_in_ms(50);
			pthread_cond_timedwait(&fs->push_done, &fs->nodes, &ts);
		}
	}
	pthread_mutex_unlock(&fs->nodes);
}

static bool push_claim(void *data, uint32_t k, uint64_t *nodeid_out, void **token)
{
	struct rwfs *fs = data;
	pthread_rwlock_rdlock(&fs->ns);
	struct node *n = ocitree_overlay_tree(fs->ov) == fs->push_tree ? node_find_lower(fs, k) : NULL;
	bool ok =
	    n && S_ISREG(n->o.type) && n->o.ufd < 0 && !n->o.unlinked && n->o.tree == fs->push_tree && n->o.lower == k;
	pthread_mutex_lock(&fs->nodes);
	ok = ok && !n->push_off && n->nlookup > 0 && !fs->pushing;
	if (ok) {
		n->push_off = true;
		fs->pushing = n;
		fs->push_cancel = fs->push_changed = false;
	}
	pthread_mutex_unlock(&fs->nodes);
	pthread_rwlock_unlock(&fs->ns);
	if (!ok) {
		node_put(fs, n);
		return false;
	}
	*nodeid_out = nodeid(fs, n);
	*token = n;
	return true;
}

static bool push_storing(void *data, void *token)
{
	struct rwfs *fs = data;
	pthread_mutex_lock(&fs->nodes);
	bool ok = !fs->push_cancel;
	pthread_mutex_unlock(&fs->nodes);
	return ok;
}

static bool push_end(void *data, void *token)
{
	struct rwfs *fs = data;
	pthread_mutex_lock(&fs->nodes);
	bool changed = fs->push_changed;
	fs->pushing = NULL;
	fs->push_cancel = fs->push_changed = false;
	pthread_cond_broadcast(&fs->push_done);
	pthread_mutex_unlock(&fs->nodes);
	return changed;
}

static void push_put(void *data, void *token)
{
	node_put(data, token);
}

const struct fs_push_driver rw_push_driver = {
    .claim = push_claim,
    .storing = push_storing,
    .end = push_end,
    .put = push_put,
};

/* ================================================================ the engine's hooks */

static struct ocitree_overlay_obj *hook_find_lower(void *data, uint32_t k)
{
	struct node *n = node_find_lower(data, k);
	return n ? &n->o : NULL;
}

static void hook_put(void *data, struct ocitree_overlay_obj *o)
{
	node_put(data, node_of_obj(o));
}

static void hook_set_upper(void *data, struct ocitree_overlay_obj *o, int fd, uint64_t uino)
{
	struct rwfs *fs = data;
	struct node *n = node_of_obj(o);
	pthread_mutex_lock(&fs->nodes);
	o->ufd = fd;
	o->uino = uino;
	n->ukey = uino;
	if (!n->in_upper && !map_find(&fs->by_upper, uino, true))
		map_insert(&fs->by_upper, n, true);
	pthread_mutex_unlock(&fs->nodes);
}

const struct ocitree_overlay_hooks rw_overlay_hooks = {
    .find_lower = hook_find_lower,
    .put = hook_put,
    .set_upper = hook_set_upper,
};

void free_nodes(struct rwfs *fs)
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
