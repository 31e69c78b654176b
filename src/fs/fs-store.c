/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The layer store driver (see fs.h): a containers/storage additional layer
 * store over an ocitree_layer_store.  The tree it shows:
 *
 *   /                      any name that is not a digest is a key directory
 *   KEY.../                (podman's base64 of an image reference, which may
 *                          itself hold '/': key directories nest freely)
 *   [KEY.../]DIGEST/       a layer some layout has; any other digest is
 *                          ENOENT, not cached, so new images are seen
 *   DIGEST/diff/           the layer's overlay tree (whiteouts, opaque marks)
 *   DIGEST/info            its containers/storage record
 *   DIGEST/blob            its compressed blob
 *
 * containers/storage tells a store it uses a layer by creating DIGEST/use,
 * and that it let go by rmdir of DIGEST: both are answered ENOENT, the
 * answer that it takes silently and that removes nothing.
 *
 * Node ids: the directories and files above are "virtual nodes" numbered
 * from 1 (the root) in the order they are first looked up, and never
 * forgotten.  A node of a layer's diff tree is (layer directory's id << 32 |
 * tree inode): each DIGEST directory, under whichever key, has its own
 * copy, so no directory has two parents in the kernel's eyes.  st_ino is
 * the node id too, so files of different layers never share an inode number
 * in an overlay mount that stacks them.
 */
#define FUSE_USE_VERSION 312
#include "config.h"

#include <fuse_lowlevel.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>

#include "common.h"
#include "fs-session.h"
#include "ocitree/layer-store.h"

enum vkind { V_ROOT = 1, V_KEY, V_LAYER, V_INFO, V_BLOB };

struct vnode {
	/* immutable once in the table */
	uint32_t parent;
	enum vkind kind;
	char *name;
	uint32_t hnext; /* the (parent, name) hash chain */
	/* V_LAYER: the opened layer (V_INFO and V_BLOB use their parent's);
	 * set once, under the table's lock */
	struct ocitree_store_layer *layer;
	atomic_long uses; /* V_LAYER: "use" creations minus rmdirs, for the log */
};

#define N_BUCKETS 4096u
#define NONE      0u

struct fs_store {
	struct ocitree_layer_store *store;
	double timeout;
	uid_t uid;
	gid_t gid;
	/* lock: the table; vnodes, once added, stay at their address */
	pthread_mutex_t lock;
	struct vnode **nodes; /* [0] unused: ids start at 1 */
	size_t n_nodes, cap_nodes;
	uint32_t buckets[N_BUCKETS];
};

static struct fs_store *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ---------------------------------------------------------------- node ids */

static bool is_tree_id(fuse_ino_t id)
{
	return (id >> 32) != 0;
}

static uint32_t tree_ino(fuse_ino_t id)
{
	return (uint32_t)id;
}

static fuse_ino_t tree_id(uint32_t layer_dir, uint32_t ino)
{
	return (fuse_ino_t)layer_dir << 32 | ino;
}

static uint32_t name_hash(uint32_t parent, const char *name)
{
	uint32_t h = 2166136261u ^ parent;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % N_BUCKETS;
}

/* The virtual node id, or NULL. */
static struct vnode *vnode_get(struct fs_store *fs, fuse_ino_t id)
{
	if (is_tree_id(id))
		return NULL;
	pthread_mutex_lock(&fs->lock);
	struct vnode *v = id >= 1 && id < fs->n_nodes ? fs->nodes[id] : NULL;
	pthread_mutex_unlock(&fs->lock);
	return v;
}

/* The child name of parent, made with kind when it is new. */
static uint32_t vnode_child(struct fs_store *fs, uint32_t parent, const char *name, enum vkind kind)
{
	uint32_t b = name_hash(parent, name);
	pthread_mutex_lock(&fs->lock);
	for (uint32_t i = fs->buckets[b]; i != NONE; i = fs->nodes[i]->hnext) {
		if (fs->nodes[i]->parent == parent && strcmp(fs->nodes[i]->name, name) == 0) {
			pthread_mutex_unlock(&fs->lock);
			return i;
		}
	}
	GROW(fs->nodes, fs->cap_nodes, fs->n_nodes + 1);
	uint32_t id = (uint32_t)fs->n_nodes++;
	struct vnode *v = xcalloc(1, sizeof(*v));
	*v = (struct vnode){.parent = parent, .kind = kind, .name = xstrdup(name), .hnext = fs->buckets[b]};
	fs->nodes[id] = v;
	fs->buckets[b] = id;
	pthread_mutex_unlock(&fs->lock);
	return id;
}

static struct ocitree_store_layer *vnode_layer(struct fs_store *fs, struct vnode *v)
{
	pthread_mutex_lock(&fs->lock);
	struct ocitree_store_layer *sl =
	    v->kind == V_INFO || v->kind == V_BLOB ? fs->nodes[v->parent]->layer : v->layer;
	pthread_mutex_unlock(&fs->lock);
	return sl;
}

/* "sha256:" and 64 lower-case hex digits, or "sha512:" and 128 */
static bool is_digest(const char *name)
{
	size_t n;
	if (str_has_prefix(name, "sha256:"))
		n = 64;
	else if (str_has_prefix(name, "sha512:"))
		n = 128;
	else
		return false;
	const char *hex = name + 7;
	if (strlen(hex) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
			return false;
	return true;
}

/* ---------------------------------------------------------------- attributes */

static const struct ocitree_tree *tree_of(struct fs_store *fs, fuse_ino_t id)
{
	struct vnode *v = vnode_get(fs, id >> 32);
	struct ocitree_store_layer *sl = v && v->kind == V_LAYER ? vnode_layer(fs, v) : NULL;
	return sl ? ocitree_store_layer_tree(sl) : NULL;
}

/* Attributes of node id; -1 for a node that does not exist. */
static int node_stat(struct fs_store *fs, fuse_ino_t id, struct stat *st)
{
	if (is_tree_id(id)) {
		const struct ocitree_tree *t = tree_of(fs, id);
		if (!t || ocitree_tree_stat(t, tree_ino(id), st) < 0)
			return -1;
		st->st_ino = id;
		return 0;
	}
	struct vnode *v = vnode_get(fs, id);
	if (!v)
		return -1;
	memset(st, 0, sizeof(*st));
	st->st_ino = id;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 4096;
	/* writable by the owner: containers/storage's "use" file and rmdir
	 * must reach the store, not be refused by the kernel's checks */
	switch (v->kind) {
	case V_ROOT:
	case V_KEY:
	case V_LAYER:
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = v->kind == V_LAYER ? 3 : 2;
		break;
	case V_INFO: {
		size_t len = 0;
		struct ocitree_store_layer *sl = vnode_layer(fs, v);
		if (sl)
			ocitree_store_layer_info(sl, &len);
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)len;
		break;
	}
	case V_BLOB: {
		uint64_t size = 0;
		struct ocitree_store_layer *sl = vnode_layer(fs, v);
		if (sl)
			ocitree_store_layer_blob_fd(sl, &size);
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)size;
		break;
	}
	}
	st->st_blocks = (st->st_size + 511) / 512;
	return 0;
}

static void fill_entry(struct fs_store *fs, fuse_ino_t id, double timeout, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = id;
	e->attr_timeout = timeout;
	e->entry_timeout = timeout;
	node_stat(fs, id, &e->attr);
}

/* ENOENT the kernel does not remember: the name may exist on the next
 * lookup (a layout got the layer) */
static void reply_enoent(fuse_req_t req)
{
	fuse_reply_err(req, ENOENT);
}

/* ---------------------------------------------------------------- operations */

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* the same requests as the image mounts: layers never change */
	fs_init_conn(conn);
}

/* The opened layer of layer directory v, opening it (its index may be
 * built now); replies the error and returns NULL when it cannot. */
static struct ocitree_store_layer *open_layer(fuse_req_t req, struct fs_store *fs, struct vnode *v)
{
	struct ocitree_store_layer *sl = vnode_layer(fs, v);
	if (sl)
		return sl;
	_cleanup_error_ struct ocitree_error *err = NULL;
	sl = ocitree_layer_store_open(fs->store, v->name, &err);
	if (!sl) {
		if (err->kind == OCITREE_ERROR_NOT_FOUND) {
			reply_enoent(req);
		} else {
			ocitree_log(OCITREE_LOG_ERROR, "%s", err->msg);
			fuse_reply_err(req, EIO);
		}
		return NULL;
	}
	pthread_mutex_lock(&fs->lock);
	v->layer = sl;
	pthread_mutex_unlock(&fs->lock);
	return sl;
}

static void lookup_virtual(fuse_req_t req, struct fs_store *fs, uint32_t parent, struct vnode *p, const char *name)
{
	struct fuse_entry_param e;
	switch (p->kind) {
	case V_ROOT:
	case V_KEY:
		if (is_digest(name)) {
			if (!ocitree_layer_store_has(fs->store, name, NULL)) {
				reply_enoent(req);
				return;
			}
			fill_entry(fs, vnode_child(fs, parent, name, V_LAYER), fs->timeout, &e);
		} else {
			fill_entry(fs, vnode_child(fs, parent, name, V_KEY), fs->timeout, &e);
		}
		fuse_reply_entry(req, &e);
		return;
	case V_LAYER: {
		enum vkind kind;
		if (strcmp(name, "diff") == 0)
			kind = 0;
		else if (strcmp(name, "info") == 0)
			kind = V_INFO;
		else if (strcmp(name, "blob") == 0)
			kind = V_BLOB;
		else {
			/* "use" among them: containers/storage creates it */
			reply_enoent(req);
			return;
		}
		if (!open_layer(req, fs, p))
			return;
		if (!kind)
			fill_entry(fs, tree_id(parent, OCITREE_TREE_ROOT), fs->timeout, &e);
		else
			fill_entry(fs, vnode_child(fs, parent, name, kind), fs->timeout, &e);
		fuse_reply_entry(req, &e);
		return;
	}
	case V_INFO:
	case V_BLOB: fuse_reply_err(req, ENOTDIR); return;
	}
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_store *fs = fs_of(req);
	if (strlen(name) > 255) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	if (!is_tree_id(parent)) {
		struct vnode *p = vnode_get(fs, parent);
		if (!p)
			fuse_reply_err(req, ENOENT);
		else
			lookup_virtual(req, fs, (uint32_t)parent, p, name);
		return;
	}
	const struct ocitree_tree *t = tree_of(fs, parent);
	if (!t) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	struct fuse_entry_param e;
	uint32_t ino = ocitree_tree_lookup(t, tree_ino(parent), name);
	if (!ino) {
		/* a layer never changes: the kernel may remember this */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	fill_entry(fs, tree_id((uint32_t)(parent >> 32), ino), fs->timeout, &e);
	fuse_reply_entry(req, &e);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_store *fs = fs_of(req);
	struct stat st;
	if (node_stat(fs, ino, &st) < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fuse_reply_attr(req, &st, fs->timeout);
}

static void fs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs_store *fs = fs_of(req);
	const struct ocitree_tree *t = is_tree_id(ino) ? tree_of(fs, ino) : NULL;
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = t ? ocitree_tree_entry(t, tree_ino(ino), &l) : NULL;
	if (!e || e->type != OCITREE_ENTRY_SYMLINK) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	fuse_reply_readlink(req, ocitree_layer_index_string(l, e->link));
}

static void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_store *fs = fs_of(req);
	struct stat st;
	if (node_stat(fs, ino, &st) < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	/* a layer's directories never change; the virtual ones list what
	 * they have, which is nothing or the same three names */
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

/* Add one entry; false when the buffer is full. */
static bool add_dirent(fuse_req_t req, struct fs_store *fs, char *buf, size_t size, size_t *used, const char *name,
                       fuse_ino_t id, fuse_ino_t ino, mode_t type, off_t next, bool plus)
{
	struct fuse_entry_param e;
	if (plus && id) {
		fill_entry(fs, id, fs->timeout, &e);
	} else {
		/* no node id: a name only, looked up when it is used (and an
		 * inode number, without which ls takes it for a hole); a plain
		 * readdir needs no more */
		memset(&e, 0, sizeof(e));
		e.attr.st_mode = type;
		e.attr.st_ino = ino;
	}
	return fs_add_dirent(req, buf, size, used, name, &e, next, plus);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct fs_store *fs = fs_of(req);
	_cleanup_free_ char *buf = xmalloc(size);
	size_t used = 0;
	if (!is_tree_id(ino)) {
		struct vnode *v = vnode_get(fs, ino);
		static const char *const layer_names[] = {"diff", "info", "blob"};
		size_t n = v && v->kind == V_LAYER ? 3 : 0;
		/* offsets: 0 start, 1 after ".", 2 after "..", 2 + i + 1 after name i */
		for (off_t pos = off; pos < (off_t)n + 2; pos++) {
			const char *name = pos == 0 ? "." : pos == 1 ? ".." : layer_names[pos - 2];
			mode_t type = pos < 3 ? S_IFDIR : S_IFREG;
			fuse_ino_t child = pos < 2 ? ino
			                   : pos == 2
			                       ? tree_id((uint32_t)ino, OCITREE_TREE_ROOT)
			                       : vnode_child(fs, (uint32_t)ino, name, pos == 3 ? V_INFO : V_BLOB);
			if (!add_dirent(req, fs, buf, size, &used, name, 0, child, type, pos + 1, plus))
				break;
		}
		fuse_reply_buf(req, buf, used);
		return;
	}
	const struct ocitree_tree *t = tree_of(fs, ino);
	uint32_t dir = tree_ino(ino), layer_dir = (uint32_t)(ino >> 32);
	uint32_t n = t ? ocitree_tree_dir_size(t, dir) : 0;
	for (off_t pos = off; t && pos < (off_t)n + 2; pos++) {
		uint32_t child;
		const char *name = fs_tree_dirent(t, dir, pos, &child);
		if (!name)
			break;
		struct stat st;
		ocitree_tree_stat(t, child, &st);
		fuse_ino_t id = pos < 2 && plus ? 0 : tree_id(layer_dir, child);
		if (!add_dirent(req, fs, buf, size, &used, name, id, tree_id(layer_dir, child), st.st_mode & S_IFMT,
		                pos + 1, plus))
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
	struct fs_store *fs = fs_of(req);
	struct stat st;
	bool found = node_stat(fs, ino, &st) == 0;
	fs_reply_open_readonly(req, fi, found ? &st : NULL, false);
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs_store *fs = fs_of(req);
	if (off < 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	_cleanup_error_ struct ocitree_error *err = NULL;
	struct ocitree_tree_data d;
	if (!is_tree_id(ino)) {
		struct vnode *v = vnode_get(fs, ino);
		struct ocitree_store_layer *sl = v ? vnode_layer(fs, v) : NULL;
		if (!sl || (v->kind != V_INFO && v->kind != V_BLOB)) {
			fuse_reply_err(req, EISDIR);
			return;
		}
		if (v->kind == V_INFO) {
			size_t len;
			const char *info = ocitree_store_layer_info(sl, &len);
			size_t n = (uint64_t)off >= len ? 0 : len - (size_t)off < size ? len - (size_t)off : size;
			fuse_reply_buf(req, n ? info + off : NULL, n);
			return;
		}
		uint64_t bsize;
		memset(&d, 0, sizeof(d));
		d.fd = ocitree_store_layer_blob_fd(sl, &bsize);
		d.pos = (uint64_t)off;
		d.size = (uint64_t)off >= bsize         ? 0
		         : bsize - (uint64_t)off < size ? (size_t)(bsize - (uint64_t)off)
		                                        : size;
		if (!d.size)
			fuse_reply_buf(req, NULL, 0);
		else
			fs_reply_data(req, &d);
		return;
	}
	const struct ocitree_tree *t = tree_of(fs, ino);
	if (!t) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (ocitree_tree_read(t, tree_ino(ino), (uint64_t)off, size, &d, &err) < 0) {
		if (err->kind == OCITREE_ERROR_USAGE) {
			fuse_reply_err(req, err->errnum);
			return;
		}
		ocitree_log(OCITREE_LOG_ERROR, "read inode %u: %s", tree_ino(ino), err->msg);
		fuse_reply_err(req, EIO);
		return;
	}
	fs_reply_data(req, &d);
	ocitree_tree_data_release(&d);
}

static void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs_store *fs = fs_of(req);
	const struct ocitree_tree *t = is_tree_id(ino) ? tree_of(fs, ino) : NULL;
	uint32_t cur = 0;
	const char *xn;
	const void *xv;
	size_t xl;
	while (t && ocitree_tree_xattr_next(t, tree_ino(ino), &cur, &xn, &xv, &xl)) {
		if (strcmp(xn, name) != 0)
			continue;
		fs_reply_xattr(req, size, xv, xl);
		return;
	}
	fuse_reply_err(req, ENODATA);
}

static void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs_store *fs = fs_of(req);
	const struct ocitree_tree *t = is_tree_id(ino) ? tree_of(fs, ino) : NULL;
	_cleanup_buf_ struct buf b = BUF_INIT;
	uint32_t cur = 0;
	const char *xn;
	const void *xv;
	size_t xl;
	while (t && ocitree_tree_xattr_next(t, tree_ino(ino), &cur, &xn, &xv, &xl))
		buf_append(&b, xn, strlen(xn) + 1);
	fs_reply_xattr(req, size, b.data, b.len);
}

/* containers/storage's "use" file: it marks a layer in use by creating it
 * and takes ENOENT as "the store counts uses itself" */
static void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
	struct fs_store *fs = fs_of(req);
	struct vnode *p = vnode_get(fs, parent);
	if (p && p->kind == V_LAYER && strcmp(name, "use") == 0) {
		long n = atomic_fetch_add(&p->uses, 1) + 1;
		ocitree_log(OCITREE_LOG_DEBUG, "layer %s: used (%ld)", p->name, n);
		reply_enoent(req);
		return;
	}
	fuse_reply_err(req, EROFS);
}

/* containers/storage lets go of a layer by removing its directory, and
 * takes ENOENT as done: the layer stays, for the next user */
static void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_store *fs = fs_of(req);
	struct vnode *p = vnode_get(fs, parent);
	if (p && (p->kind == V_ROOT || p->kind == V_KEY) && is_digest(name)) {
		uint32_t b = name_hash((uint32_t)parent, name);
		struct vnode *v = NULL;
		pthread_mutex_lock(&fs->lock);
		for (uint32_t i = fs->buckets[b]; i != NONE && !v; i = fs->nodes[i]->hnext)
			if (fs->nodes[i]->parent == parent && strcmp(fs->nodes[i]->name, name) == 0)
				v = fs->nodes[i];
		pthread_mutex_unlock(&fs->lock);
		if (v) {
			long n = atomic_fetch_sub(&v->uses, 1) - 1;
			ocitree_log(OCITREE_LOG_DEBUG, "layer %s: released (%ld)", name, n);
		}
		reply_enoent(req);
		return;
	}
	fuse_reply_err(req, EROFS);
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	fuse_reply_err(req, EROFS);
}

static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	fuse_reply_err(req, EROFS);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	fuse_reply_err(req, EROFS);
}

static void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname,
                      unsigned int flags)
{
	fuse_reply_err(req, EROFS);
}

static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags)
{
	fuse_reply_err(req, EROFS);
}

static void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv = {0};
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

/* nodes live as long as the store: forget has nothing to release
 * (FS_READ_ONLY_OPS); of the changes, only the two containers/storage
 * makes get an answer other than EROFS */
static const struct fuse_lowlevel_ops fs_store_ops = {
    FS_READ_ONLY_OPS,
    .create = fs_create,
    .rmdir = fs_rmdir,
    .setattr = fs_setattr,
    .mknod = fs_mknod,
    .mkdir = fs_mkdir,
    .unlink = fs_unlink,
    .symlink = fs_symlink,
    .rename = fs_rename,
    .link = fs_link,
    .write = fs_write,
    .setxattr = fs_setxattr,
    .removexattr = fs_removexattr,
};

/* ---------------------------------------------------------------- running */

int fs_run_store(struct ocitree_layer_store *store, const struct fs_opts *opts, struct ocitree_error **err)
{
	struct fs_opts o = *opts;
	/* mounted read-write: a read-only mount would refuse containers/
	 * storage's "use" file and rmdir in the kernel, which it logs as
	 * errors; every change is refused here instead */
	o.writable = true;
	o.virtual_owners = false;
	struct fs_config cfg;
	struct fuse_args args;
	if (fs_parse_options(&o, &cfg, &args, err) < 0)
		return -1;
	if (cfg.xattrs || cfg.whiteout) {
		fuse_opt_free_args(&args);
		fs_config_clear(&cfg);
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
		                          "-o xattrs= and -o whiteout= are options of a writable mount (--upper)");
	}
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	struct fs_store *fs = xcalloc(1, sizeof(*fs));
	fs->store = store;
	fs->timeout = cfg.timeout;
	fs->uid = getuid();
	fs->gid = getgid();
	pthread_mutex_init(&fs->lock, NULL);
	GROW(fs->nodes, fs->cap_nodes, 2);
	fs->nodes[0] = NULL;
	fs->nodes[1] = xcalloc(1, sizeof(*fs->nodes[1]));
	fs->nodes[1]->kind = V_ROOT;
	fs->nodes[1]->name = xstrdup("");
	fs->n_nodes = 2;
	int ret = fs_session_run(&fs_store_ops, sizeof(fs_store_ops), fs, &args, &cfg, &o, NULL, err);
	fuse_opt_free_args(&args);
	fs_config_clear(&cfg);
	for (size_t i = 1; i < fs->n_nodes; i++) {
		free(fs->nodes[i]->name);
		free(fs->nodes[i]);
	}
	free(fs->nodes);
	pthread_mutex_destroy(&fs->lock);
	free(fs);
	return ret;
}
