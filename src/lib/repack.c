/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writing layers from trees on disk: repack (the changes of a bundle since
 * it was unpacked), insert (a host file or directory) and add-layer (an
 * existing tar archive).
 *
 * Repack walks the rootfs in a fixed order (a directory, then the opaque
 * marker when the directory was replaced, then whiteouts of what is gone,
 * then its entries sorted by name) and compares every entry with the
 * recorded tree.  With ocitree's state record an entry whose type, mode,
 * owner, size, mtime, ctime and inode number are unchanged is unchanged, and
 * its content is never read.  With only umoci's mtree (no ctime or inode
 * numbers there) the comparison uses type, mode, owner, size, mtime seconds,
 * link target and xattrs, and hashes the content of the files whose mtime is
 * not older than the mtree itself, the racy ones (as git does).
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <nettle/sha2.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "bundle-internal.h"
#include "layout-internal.h"

#define READ_BUF (1u << 20)

/* (device, inode) -> the path a hardlinked file was first written as. */
struct inode_map {
	struct inode_slot {
		uint64_t dev, ino;
		char *path;
	} * slots;
	size_t cap, n;
};

static size_t inode_slot(const struct inode_map *m, uint64_t dev, uint64_t ino)
{
	size_t i = (size_t)((ino * 0x9e3779b97f4a7c15ULL) ^ dev) & (m->cap - 1);
	while (m->slots[i].path && (m->slots[i].dev != dev || m->slots[i].ino != ino))
		i = (i + 1) & (m->cap - 1);
	return i;
}

static const char *inode_get(const struct inode_map *m, uint64_t dev, uint64_t ino)
{
	return m->cap ? m->slots[inode_slot(m, dev, ino)].path : NULL;
}

static void inode_put(struct inode_map *m, uint64_t dev, uint64_t ino, const char *path)
{
	if ((m->n + 1) * 2 > m->cap) {
		struct inode_map nm = {xcalloc(m->cap ? m->cap * 2 : 64, sizeof(struct inode_slot)), m->cap ? m->cap * 2 : 64,
				       m->n};
		for (size_t i = 0; i < m->cap; i++)
			if (m->slots[i].path)
				nm.slots[inode_slot(&nm, m->slots[i].dev, m->slots[i].ino)] = m->slots[i];
		free(m->slots);
		*m = nm;
	}
	size_t i = inode_slot(m, dev, ino);
	m->slots[i] = (struct inode_slot){dev, ino, xstrdup(path)};
	m->n++;
}

static void inode_map_free(struct inode_map *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->slots[i].path);
	free(m->slots);
}

/* ---- writing entries from the disk ---- */

struct gen {
	struct ocitree_layer_writer *w;
	const struct ocitree_map_options *map;
	struct inode_map links;
	struct sha256_ctx md;
	uint8_t *buf;
	const char *phase;
	ocitree_progress_fn progress;
	void *progress_data;
	uint64_t entries;
	/* repack */
	int rootfd;
	const struct tree *old;
	bool exact;        /* the old tree is ocitree's state record */
	time_t racy;       /* mtree mode: files this new or newer are hashed */
	char **masks;
	size_t n_masks;
	struct tree *new;  /* the tree after the change (for --refresh-bundle) */
	uint64_t changes;
};

static void report(struct gen *g)
{
	if (!g->progress || (++g->entries & 255))
		return;
	struct ocitree_progress p = {.phase = g->phase, .bytes = ocitree_layer_writer_offset(g->w), .entries = g->entries};
	g->progress(&p, g->progress_data);
}

/* The xattrs of a file (through an O_PATH fd for anything but a symlink,
 * whose xattrs are read through its parent). */
static int read_xattrs(int dfd, const char *name, bool is_link, struct xattr_list **out, const char *what,
		       struct ocitree_error **err)
{
	char path[PATH_MAX];
	_cleanup_close_ int fd = -1;
	if (is_link) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dfd, name);
	} else {
		fd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return ocitree_error_set(err, errno, "open '%s'", what);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	char names[65536];
	ssize_t len = is_link ? llistxattr(path, names, sizeof(names)) : listxattr(path, names, sizeof(names));
	if (len < 0) {
		if (errno == ENOTSUP || errno == EOPNOTSUPP)
			return 0;
		return ocitree_error_set(err, errno, "list xattrs of '%s'", what);
	}
	_cleanup_free_ uint8_t *value = xmalloc(65536);
	for (ssize_t i = 0; i < len; i += (ssize_t)strlen(names + i) + 1) {
		const char *n = names + i;
		if (strcmp(n, "security.selinux") == 0)
			continue;
		ssize_t vl = is_link ? lgetxattr(path, n, value, 65536) : getxattr(path, n, value, 65536);
		if (vl < 0) {
			if (errno == ENODATA)
				continue;
			return ocitree_error_set(err, errno, "read xattr '%s' of '%s'", n, what);
		}
		xattr_list_add(out, n, value, (size_t)vl);
	}
	xattr_list_sort(*out);
	return 0;
}

/* Owner in the image for a file on disk. */
static int image_owner(struct gen *g, const struct stat *st, const struct xattr_list *xs, int64_t *uid, int64_t *gid,
		       const char *what, struct ocitree_error **err)
{
	if (g->map->rootless) {
		uint32_t u = 0, gg = 0;
		for (size_t i = 0; xs && i < xs->n; i++)
			if (strcmp(xs->v[i].name, ROOTLESS_XATTR) == 0 && rootless_decode(xs->v[i].value, xs->v[i].len, &u, &gg) < 0)
				return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "'%s': malformed %s xattr", what,
							  ROOTLESS_XATTR);
		*uid = u;
		*gid = gg;
		return 0;
	}
	*uid = idmap_to_container(g->map->uid_map, g->map->n_uid_map, st->st_uid);
	*gid = idmap_to_container(g->map->gid_map, g->map->n_gid_map, st->st_gid);
	if (*uid < 0 || *gid < 0)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "'%s': owner %u:%u has no mapping in the image", what,
					  (unsigned)st->st_uid, (unsigned)st->st_gid);
	return 0;
}

static int open_readable(struct gen *g, int dfd, const char *name, int flags)
{
	int fd = openat(dfd, name, flags | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == EACCES && g->map->rootless) {
		/* our own file without read permission: lend it one */
		struct stat st;
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_uid == geteuid() &&
		    fchmodat(dfd, name, (st.st_mode & 07777) | (S_ISDIR(st.st_mode) ? 0500 : 0400), 0) == 0) {
			fd = openat(dfd, name, flags | O_NOFOLLOW | O_CLOEXEC);
			int e = errno;
			fchmodat(dfd, name, st.st_mode & 07777, 0);
			errno = e;
		}
	}
	return fd;
}

/* Write the entry for name in dfd (stat st) as tarpath; fills n (when not
 * NULL) with its record, content digest included. */
static int put_entry(struct gen *g, int dfd, const char *name, const struct stat *st, const char *tarpath,
		     struct tnode *n, struct ocitree_error **err)
{
	struct ocitree_tar_entry e = {.path = tarpath, .mode = st->st_mode & 07777, .mtime = st->st_mtim};
	/* such a file would go into the layer as a whiteout and delete what it
	 * names instead of being added */
	const char *slash = strrchr(tarpath, '/');
	if (str_has_prefix(slash ? slash + 1 : tarpath, ".wh."))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
					  "'%s': a name starting with '.wh.' is a whiteout in a layer", tarpath);
	struct xattr_list *xs = NULL;
	_cleanup_free_ char *link = NULL;
	_cleanup_free_ struct ocitree_xattr *tx = NULL;
	_cleanup_close_ int fd = -1;
	int ret = -1;
	bool is_link = S_ISLNK(st->st_mode);
	if (read_xattrs(dfd, name, is_link, &xs, tarpath, err) < 0)
		goto out;
	if (image_owner(g, st, xs, &e.uid, &e.gid, tarpath, err) < 0)
		goto out;
	if (xs && xs->n) {
		tx = xcalloc(xs->n, sizeof(*tx));
		for (size_t i = 0; i < xs->n; i++) {
			if (g->map->rootless && strcmp(xs->v[i].name, ROOTLESS_XATTR) == 0)
				continue; /* a marker for us, not for the image */
			tx[e.n_xattrs++] = (struct ocitree_xattr){xs->v[i].name, xs->v[i].value, xs->v[i].len};
		}
		e.xattrs = tx;
	}
	switch (st->st_mode & S_IFMT) {
	case S_IFDIR: e.type = OCITREE_TAR_DIR; break;
	case S_IFLNK: {
		link = xmalloc((size_t)st->st_size + 2);
		ssize_t l = readlinkat(dfd, name, link, (size_t)st->st_size + 1);
		if (l < 0 || l > st->st_size) {
			ocitree_error_set(err, l < 0 ? errno : EAGAIN, "read link '%s'", tarpath);
			goto out;
		}
		link[l] = '\0';
		e.type = OCITREE_TAR_SYMLINK;
		e.linkname = link;
		break;
	}
	case S_IFCHR:
	case S_IFBLK:
		e.type = S_ISCHR(st->st_mode) ? OCITREE_TAR_CHAR : OCITREE_TAR_BLOCK;
		e.devmajor = major(st->st_rdev);
		e.devminor = minor(st->st_rdev);
		break;
	case S_IFIFO: e.type = OCITREE_TAR_FIFO; break;
	case S_IFSOCK:
		log_warn("'%s': sockets cannot be stored in a layer; skipped", tarpath);
		ret = 0;
		goto out;
	case S_IFREG: {
		const char *first = st->st_nlink > 1 ? inode_get(&g->links, st->st_dev, st->st_ino) : NULL;
		if (first) {
			e.type = OCITREE_TAR_HARDLINK;
			e.linkname = first;
			if (n) {
				struct tnode *fn = tree_lookup(g->new, first);
				if (fn) {
					memcpy(n->digest, fn->digest, sizeof(n->digest));
					n->has_digest = fn->has_digest;
				}
			}
			break;
		}
		e.type = OCITREE_TAR_REG;
		e.size = st->st_size;
		fd = open_readable(g, dfd, name, O_RDONLY);
		if (fd < 0) {
			ocitree_error_set(err, errno, "open '%s'", tarpath);
			goto out;
		}
		if (st->st_nlink > 1)
			inode_put(&g->links, st->st_dev, st->st_ino, tarpath);
		break;
	}
	default:
		break;
	}
	/* A symlink, device or fifo with more than one name goes in as one
	 * entry and hardlinks to it, as umoci's tar generator writes any inode
	 * it has seen before (oci/layer/tar_generate.go); two symlinks would
	 * come back as two inodes. */
	if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode) && st->st_nlink > 1) {
		const char *first = inode_get(&g->links, st->st_dev, st->st_ino);
		if (first) {
			e.type = OCITREE_TAR_HARDLINK;
			e.linkname = first;
			e.devmajor = e.devminor = 0;
		} else {
			inode_put(&g->links, st->st_dev, st->st_ino, tarpath);
		}
	}
	if (ocitree_layer_writer_add(g->w, &e, err) < 0)
		goto out;
	if (fd >= 0) {
		sha256_init(&g->md);
		int64_t left = st->st_size;
		while (left > 0) {
			ssize_t r = read(fd, g->buf, left < READ_BUF ? (size_t)left : READ_BUF);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				if (r == 0)
					ocitree_error_setk(err, OCITREE_ERROR_FAILED, "'%s' shrank while it was read", tarpath);
				else
					ocitree_error_set(err, errno, "read '%s'", tarpath);
				goto out;
			}
			sha256_update(&g->md, (size_t)r, g->buf);
			if (ocitree_layer_writer_data(g->w, g->buf, (size_t)r, err) < 0)
				goto out;
			left -= r;
		}
		if (n) {
			sha256_digest(&g->md, SHA256_DIGEST_SIZE, n->digest);
			n->has_digest = true;
		}
	}
	if (n) {
		n->link = steal_pointer(&link);
		xattr_list_free(n->xattrs);
		n->xattrs = steal_pointer(&xs);
	}
	report(g);
	ret = 0;
out:
	xattr_list_free(xs);
	return ret;
}

static int put_whiteout(struct gen *g, const char *dir, const char *name, struct ocitree_error **err)
{
	_cleanup_free_ char *p = *dir ? xasprintf("%s/.wh.%s", dir, name) : xasprintf(".wh.%s", name);
	struct ocitree_tar_entry e = {.path = p, .type = OCITREE_TAR_REG};
	report(g);
	return ocitree_layer_writer_add(g->w, &e, err);
}

/* ---- repack ---- */

static bool masked(const struct gen *g, const char *path)
{
	for (size_t i = 0; i < g->n_masks; i++) {
		size_t l = strlen(g->masks[i]);
		if (l == 0 || (strncmp(path, g->masks[i], l) == 0 && (path[l] == '\0' || path[l] == '/')))
			return true;
	}
	return false;
}

/* Sorted names in directory fd (without . and ..), a strv of *n. */
static int list_dir(int fd, char ***out, size_t *n, struct ocitree_error **err)
{
	*out = dir_names_sorted(fd);
	if (!*out)
		return ocitree_error_set(err, errno, "read directory");
	*n = strv_len(*out);
	return 0;
}

static bool same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Whether the entry on disk differs from its record. */
static int changed(struct gen *g, const struct tnode *o, int dfd, const char *name, const struct stat *st,
		   const char *path, bool *out, struct ocitree_error **err)
{
	*out = true;
	if (!o || (o->mode & S_IFMT) != (st->st_mode & S_IFMT) || (o->mode & 07777) != (st->st_mode & 07777) ||
	    o->uid != st->st_uid || o->gid != st->st_gid)
		return 0;
	if (g->exact) {
		*out = o->size != (uint64_t)st->st_size || !same_time(&o->mtime, &st->st_mtim) ||
		       !same_time(&o->ctime, &st->st_ctim) || o->ino != st->st_ino ||
		       ((S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) && o->rdev != st->st_rdev);
		return 0;
	}
	/* umoci's mtree: what go-mtree would compare, content only when racy */
	if (o->mtime.tv_sec != st->st_mtim.tv_sec || (!S_ISDIR(st->st_mode) && o->size != (uint64_t)st->st_size))
		return 0;
	if (S_ISLNK(st->st_mode)) {
		char buf[PATH_MAX + 1];
		ssize_t l = readlinkat(dfd, name, buf, sizeof(buf) - 1);
		if (l < 0)
			return ocitree_error_set(err, errno, "read link '%s'", path);
		buf[l] = '\0';
		if (!o->link || strcmp(o->link, buf) != 0)
			return 0;
	}
	struct xattr_list *xs = NULL;
	if (read_xattrs(dfd, name, S_ISLNK(st->st_mode), &xs, path, err) < 0)
		return -1;
	bool same_x = xattr_list_equal(xs, o->xattrs);
	xattr_list_free(xs);
	if (!same_x)
		return 0;
	if (S_ISREG(st->st_mode) && st->st_mtim.tv_sec >= g->racy) {
		_cleanup_close_ int fd = open_readable(g, dfd, name, O_RDONLY);
		if (fd < 0)
			return ocitree_error_set(err, errno, "open '%s'", path);
		sha256_init(&g->md);
		ssize_t r;
		while ((r = read(fd, g->buf, READ_BUF)) > 0)
			sha256_update(&g->md, (size_t)r, g->buf);
		if (r < 0)
			return ocitree_error_set(err, errno, "read '%s'", path);
		uint8_t d[32];
		sha256_digest(&g->md, SHA256_DIGEST_SIZE, d);
		if (!o->has_digest || memcmp(d, o->digest, 32) != 0)
			return 0;
	}
	*out = false;
	return 0;
}

/* Copy what the record knows (content digest, link, xattrs) to the new
 * tree's node of an unchanged entry. */
static void keep_record(struct tnode *n, const struct tnode *o)
{
	memcpy(n->digest, o->digest, sizeof(n->digest));
	n->has_digest = o->has_digest;
	free(n->link);
	n->link = xstrdup_or_null(o->link);
	xattr_list_free(n->xattrs);
	n->xattrs = xattr_list_dup(o->xattrs);
}

static int walk(struct gen *g, int dfd, const struct tnode *odir, struct tnode *ndir, struct buf *path,
		struct ocitree_error **err);

static int visit(struct gen *g, int dfd, const char *name, const struct tnode *odir, struct tnode *ndir,
		 struct buf *path, struct ocitree_error **err)
{
	struct stat st;
	struct tnode *n = tree_add(g->new, ndir, name);
	if (tnode_stat_at(n, dfd, name, &st) < 0)
		return ocitree_error_set(err, errno, "stat '%s'", path->data);
	const struct tnode *o = odir ? tree_child(g->old, odir, name) : NULL;
	bool ch;
	if (changed(g, o, dfd, name, &st, path->data, &ch, err) < 0)
		return -1;
	if (!ch) {
		keep_record(n, o);
	} else {
		g->changes++;
		if (put_entry(g, dfd, name, &st, path->data, n, err) < 0)
			return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return 0;
	/* a directory that is not the one recorded (another inode, or the same
	 * inode number born again) replaced it: nothing of the old one shows
	 * through */
	bool replaced = o && S_ISDIR(o->mode) && g->exact &&
			(o->ino != st.st_ino || (o->has_btime && n->has_btime && !same_time(&o->btime, &n->btime)));
	if (replaced) {
		_cleanup_free_ char *p = xasprintf("%s/.wh..wh..opq", path->data);
		struct ocitree_tar_entry e = {.path = p, .type = OCITREE_TAR_REG};
		if (ocitree_layer_writer_add(g->w, &e, err) < 0)
			return -1;
	}
	_cleanup_close_ int fd = open_readable(g, dfd, name, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return ocitree_error_set(err, errno, "open '%s'", path->data);
	return walk(g, fd, o && S_ISDIR(o->mode) && !replaced ? o : NULL, n, path, err);
}

static int walk(struct gen *g, int dfd, const struct tnode *odir, struct tnode *ndir, struct buf *path,
		struct ocitree_error **err)
{
	_cleanup_strv_ char **names = NULL;
	size_t n = 0;
	if (list_dir(dfd, &names, &n, err) < 0)
		return ocitree_error_prefix(err, "'%s'", path->len ? path->data : ".");
	/* a strv is NULL-terminated */
	size_t base = path->len;
	_cleanup_free_ char *dir = xstrdup(path->data ? path->data : "");
	/* whiteouts for what is gone */
	if (odir) {
		_cleanup_free_ struct tnode **kids = NULL;
		size_t k = tree_sorted_children(odir, &kids);
		for (size_t i = 0, j = 0; i < k; i++) {
			while (j < n && strcmp(names[j], kids[i]->name) < 0)
				j++;
			if (j < n && strcmp(names[j], kids[i]->name) == 0)
				continue;
			_cleanup_free_ char *p = *dir ? xasprintf("%s/%s", dir, kids[i]->name) : xstrdup(kids[i]->name);
			if (masked(g, p))
				continue;
			g->changes++;
			if (put_whiteout(g, dir, kids[i]->name, err) < 0)
				return -1;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (base)
			buf_puts(path, "/");
		buf_puts(path, names[i]);
		int r = masked(g, path->data) ? 0 : visit(g, dfd, names[i], odir, ndir, path, err);
		path->len = base;
		path->data[base] = '\0';
		if (r < 0)
			return -1;
	}
	return 0;
}

/* Read the manifest and config a bundle was made from. */
static struct ocitree_image *image_from_manifest(struct ocitree_layout *l, const struct ocitree_descriptor *md,
						 struct ocitree_error **err)
{
	if (ocitree_media_type_kind(md->media_type) != OCITREE_DOC_MANIFEST)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "the bundle's source %s is not a manifest (%s)",
					  md->digest, md->media_type),
		       NULL;
	struct ocitree_image *img = xcalloc(1, sizeof(*img));
	img->layout = l;
	ocitree_descriptor_copy(&img->manifest_desc, md);
	if (image_load(img, err) < 0) {
		ocitree_image_free(img);
		return NULL;
	}
	return img;
}

/* A writer for a new layer on top of img's layers. */
static struct ocitree_layer_writer *new_writer(const struct ocitree_image *img, const struct ocitree_write_options *o,
					       struct ocitree_error **err)
{
	struct ocitree_layer_writer_options wo = {
		.compression = ocitree_compression_resolve(o->compression, img->manifest),
		.clamp_mtime = ocitree_source_date_epoch(),
	};
	return ocitree_layer_writer_new(img->layout, &wo, err);
}

static void gen_init(struct gen *g, const char *phase, const struct ocitree_write_options *o)
{
	memset(g, 0, sizeof(*g));
	g->phase = phase;
	g->progress = o->progress;
	g->progress_data = o->progress_data;
	g->buf = xmalloc(READ_BUF);
	g->rootfd = -1;
}

/* Finish the layer (raw: the archive brought its own end) and add it to
 * img, committed as tag. */
static int gen_commit(struct gen *g, struct ocitree_image *img, const char *tag, const struct ocitree_write_options *o,
		      bool raw, struct ocitree_error **err)
{
	struct ocitree_descriptor desc;
	char diff_id[OCITREE_DIGEST_MAX];
	int r = raw ? ocitree_layer_writer_commit_raw(g->w, &desc, diff_id, err)
		    : ocitree_layer_writer_commit(g->w, &desc, diff_id, err);
	if (r < 0)
		return -1;
	r = image_add_layer_commit(img, &desc, diff_id, tag, o, err);
	ocitree_descriptor_clear(&desc);
	return r;
}

static void gen_clear(struct gen *g)
{
	ocitree_layer_writer_free(g->w);
	inode_map_free(&g->links);
	free(g->buf);
	strv_free(g->masks);
	tree_free(g->new);
}

OCITREE_EXPORT int ocitree_repack_bundle(struct ocitree_layout *l, const char *tag, const char *bundle,
					 const struct ocitree_repack_options *o, char manifest_digest[OCITREE_DIGEST_MAX],
					 struct ocitree_error **err)
{
	_cleanup_close_ int bfd = open(bundle, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (bfd < 0)
		return ocitree_error_set(err, errno, "open bundle '%s'", bundle);
	struct umoci_meta meta;
	if (umoci_meta_read_at(bfd, &meta, err) < 0)
		return ocitree_error_prefix(err, "bundle '%s'", bundle);
	struct gen g;
	gen_init(&g, "repack", &o->write);
	g.map = &meta.map;
	struct tree *old = NULL;
	struct ocitree_image *img = NULL;
	_cleanup_free_ char *old_mtree = NULL;
	_cleanup_buf_ struct buf path = BUF_INIT;
	int ret = -1;
	const struct ocitree_descriptor *md = &meta.walk[meta.n_walk - 1];
	if (ocitree_layout_hold_blobs(l, err) < 0)
		goto out;
	img = image_from_manifest(l, md, err);
	if (!img) {
		ocitree_error_prefix(err, "bundle '%s'", bundle);
		goto out;
	}
	/* a platform of an index: the new image replaces it in the tag's index
	 * as it is now (other platforms may have changed since the unpack),
	 * else in the index the bundle was unpacked from */
	if (image_attach_tag_index(img, tag, err) < 0 ||
	    (meta.n_walk > 1 && image_attach_index(img, &meta.walk[0], false, err) < 0))
		goto out;
	old_mtree = mtree_name(md->digest);

	/* the record: ocitree's when it describes this manifest, else umoci's */
	char state_digest[OCITREE_DIGEST_MAX] = "";
	struct ocitree_error *serr = NULL;
	old = state_read_at(bfd, STATE_FILE, state_digest, &serr);
	if (old && strcmp(state_digest, md->digest) == 0) {
		g.exact = true;
	} else {
		if (old || (serr && serr->kind != OCITREE_ERROR_NOT_FOUND))
			log_info("bundle '%s': %s; using the mtree", bundle,
				 old ? "the state record is for another manifest" : serr->msg);
		tree_free(old);
		old = mtree_read_at(bfd, old_mtree, err);
		if (!old) {
			ocitree_error_free(serr);
			ocitree_error_prefix(err, "bundle '%s'", bundle);
			goto out;
		}
		struct stat mst;
		g.racy = fstatat(bfd, old_mtree, &mst, 0) == 0 ? mst.st_mtim.tv_sec : 0;
	}
	ocitree_error_free(serr);
	g.old = old;

	/* masks are paths in the image, absolute or not */
	size_t nm = 0;
	g.masks = xcalloc(o->n_mask_paths + img->config->config.volumes.n + 1, sizeof(char *));
	for (size_t i = 0; i < o->n_mask_paths + img->config->config.volumes.n; i++) {
		bool vol = i >= o->n_mask_paths;
		if (vol && o->no_mask_volumes)
			break;
		const char *m = vol ? img->config->config.volumes.keys[i - o->n_mask_paths] : o->mask_paths[i];
		const char *why = path_clean(m + strspn(m, "/"), &g.masks[nm]);
		if (why) {
			ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid %s '%s': %s", vol ? "volume" : "mask path",
					   m, why);
			goto out;
		}
		nm++;
	}
	g.n_masks = nm;

	g.rootfd = openat(bfd, "rootfs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (g.rootfd < 0) {
		ocitree_error_set(err, errno, "open '%s/rootfs'", bundle);
		goto out;
	}
	g.w = new_writer(img, &o->write, err);
	if (!g.w)
		goto out;
	g.new = tree_new();
	struct stat rst;
	if (tnode_stat_at(g.new->root, g.rootfd, "", &rst) < 0) {
		ocitree_error_set(err, errno, "stat rootfs");
		goto out;
	}
	bool root_changed;
	if (changed(&g, old->root, bfd, "rootfs", &rst, ".", &root_changed, err) < 0)
		goto out;
	buf_puts(&path, ".");
	if (root_changed) {
		g.changes++;
		if (put_entry(&g, bfd, "rootfs", &rst, ".", g.new->root, err) < 0)
			goto out;
	} else {
		keep_record(g.new->root, old->root);
	}
	buf_reset(&path);
	buf_puts(&path, "");
	if (walk(&g, g.rootfd, old->root, g.new->root, &path, err) < 0)
		goto out;
	log_info("repack: %" PRIu64 " changed entries", g.changes);

	if (g.changes == 0) {
		/* as umoci: no empty layer, only an empty_layer history entry */
		ret = image_add_layer_commit(img, NULL, NULL, tag, &o->write, err);
	} else {
		ret = gen_commit(&g, img, tag, &o->write, false, err);
	}
	if (ret < 0)
		goto out;
	if (manifest_digest)
		snprintf(manifest_digest, OCITREE_DIGEST_MAX, "%s", img->manifest_desc.digest);
	if (o->refresh_bundle) {
		/* the bundle now describes the new image: its tree is the record */
		ocitree_descriptor_clear(&img->root);
		ret = bundle_write_meta(bfd, bundle, img, g.new, &meta.map, true, err);
		_cleanup_free_ char *new_mtree = mtree_name(img->manifest_desc.digest);
		if (ret == 0 && strcmp(new_mtree, old_mtree) != 0)
			unlinkat(bfd, old_mtree, 0);
	}
out:
	if (g.rootfd >= 0)
		close(g.rootfd);
	gen_clear(&g);
	tree_free(old);
	ocitree_image_free(img);
	umoci_meta_clear(&meta);
	if (ret < 0)
		return ocitree_error_prefix(err, "repack '%s'", bundle);
	return 0;
}

/* ---- insert ---- */

/* Every entry below dfd, as target/... */
static int insert_tree(struct gen *g, int dfd, struct buf *tpath, struct ocitree_error **err)
{
	_cleanup_strv_ char **names = NULL;
	size_t n = 0;
	if (list_dir(dfd, &names, &n, err) < 0)
		return ocitree_error_prefix(err, "'%s'", tpath->data);
	size_t base = tpath->len;
	for (size_t i = 0; i < n; i++) {
		if (base && tpath->data[base - 1] != '/')
			buf_puts(tpath, "/");
		buf_puts(tpath, names[i]);
		struct stat st;
		int r = fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW);
		if (r < 0)
			r = ocitree_error_set(err, errno, "stat '%s'", tpath->data);
		if (r == 0)
			r = put_entry(g, dfd, names[i], &st, tpath->data, NULL, err);
		if (r == 0 && S_ISDIR(st.st_mode)) {
			_cleanup_close_ int fd = open_readable(g, dfd, names[i], O_RDONLY | O_DIRECTORY);
			r = fd < 0 ? ocitree_error_set(err, errno, "open '%s'", tpath->data) : insert_tree(g, fd, tpath, err);
		}
		tpath->len = base;
		if (tpath->data)
			tpath->data[base] = '\0';
		if (r < 0)
			return -1;
	}
	return 0;
}

OCITREE_EXPORT int ocitree_insert(struct ocitree_image *img, const char *source, const char *target, const char *tag,
				  const struct ocitree_insert_options *o, struct ocitree_error **err)
{
	/* the target is a path in the image, absolute or not */
	_cleanup_free_ char *t = NULL;
	const char *why = path_clean(target + strspn(target, "/"), &t);
	if (why)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid target '%s': %s", target, why);
	if (o->whiteout && !*t)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "cannot white out the root directory");
	for (const char *c = t; *c; c += strcspn(c, "/"), c += *c == '/')
		if (str_has_prefix(c, ".wh."))
			return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
						  "invalid target '%s': a name starting with '.wh.' is a whiteout in a layer",
						  target);
	if (!o->whiteout && !source)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "insert needs a source");
	struct gen g;
	gen_init(&g, "insert", &o->write);
	g.map = &o->map;
	int ret = -1;
	_cleanup_close_ int pfd = -1;
	_cleanup_free_ char *sbase = NULL;
	g.w = new_writer(img, &o->write, err);
	if (!g.w)
		goto out;
	if (o->whiteout) {
		char *slash = strrchr(t, '/');
		if (slash) {
			*slash = '\0';
			ret = put_whiteout(&g, t, slash + 1, err);
		} else {
			ret = put_whiteout(&g, "", t, err);
		}
		if (ret < 0)
			goto out;
		ret = -1;
	} else {
		_cleanup_free_ char *c1 = xstrdup(source), *c2 = xstrdup(source);
		pfd = open(dirname(c1), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		sbase = xstrdup(basename(c2));
		struct stat st;
		if (pfd < 0 || fstatat(pfd, sbase, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			ocitree_error_set(err, errno, "source '%s'", source);
			goto out;
		}
		_cleanup_free_ char *tp = *t ? xstrdup(t) : xstrdup(".");
		_cleanup_free_ char *opq = !o->opaque ? NULL : *t ? xasprintf("%s/.wh..wh..opq", t) : xstrdup(".wh..wh..opq");
		struct ocitree_tar_entry marker = {.path = opq, .type = OCITREE_TAR_REG};
		/* a file replacing a directory: the marker first, so that what was
		 * below the target is gone before the file takes its place, as umoci
		 * 0.6 writes it (oci/layer/generate.go, GenerateInsertLayer) */
		if (opq && !S_ISDIR(st.st_mode) && ocitree_layer_writer_add(g.w, &marker, err) < 0)
			goto out;
		if (put_entry(&g, pfd, sbase, &st, tp, NULL, err) < 0)
			goto out;
		if (S_ISDIR(st.st_mode)) {
			if (opq && ocitree_layer_writer_add(g.w, &marker, err) < 0)
				goto out;
			_cleanup_close_ int fd = open_readable(&g, pfd, sbase, O_RDONLY | O_DIRECTORY);
			if (fd < 0) {
				ocitree_error_set(err, errno, "open '%s'", source);
				goto out;
			}
			_cleanup_buf_ struct buf tpath = BUF_INIT;
			buf_puts(&tpath, t);
			if (insert_tree(&g, fd, &tpath, err) < 0)
				goto out;
		}
	}
	ret = gen_commit(&g, img, tag, &o->write, false, err);
out:
	gen_clear(&g);
	if (ret < 0)
		return ocitree_error_prefix(err, "insert '%s'", target);
	return 0;
}

/* ---- add-layer ---- */

static bool tar_header_ok(const uint8_t *h)
{
	unsigned sum = 0;
	bool zero = true;
	for (int i = 0; i < 512; i++) {
		sum += i >= 148 && i < 156 ? ' ' : h[i];
		zero &= h[i] == 0;
	}
	if (zero)
		return true;
	char field[9];
	memcpy(field, h + 148, 8);
	field[8] = '\0';
	return strtoul(field, NULL, 8) == sum;
}

OCITREE_EXPORT int ocitree_add_layer(struct ocitree_image *img, int fd, const char *tag,
				     const struct ocitree_write_options *o, struct ocitree_error **err)
{
	struct gen g;
	gen_init(&g, "add-layer", o);
	int ret = -1;
	uint64_t total = 0;
	g.w = new_writer(img, o, err);
	if (!g.w)
		goto out;
	for (;;) {
		ssize_t n = read_full(fd, g.buf, READ_BUF);
		if (n < 0) {
			ocitree_error_set(err, errno, "read");
			goto out;
		}
		if (n == 0)
			break;
		if (total == 0 && (n < 512 || !tar_header_ok(g.buf))) {
			ocitree_error_setk(err, OCITREE_ERROR_INVALID, "not an uncompressed tar archive");
			goto out;
		}
		if (ocitree_layer_writer_raw(g.w, g.buf, (size_t)n, err) < 0)
			goto out;
		total += (uint64_t)n;
		if (g.progress) {
			struct ocitree_progress p = {.phase = g.phase, .bytes = total};
			g.progress(&p, g.progress_data);
		}
	}
	if (total == 0 || total % 512) {
		ocitree_error_setk(err, OCITREE_ERROR_INVALID, "not a tar archive (%" PRIu64 " bytes)", total);
		goto out;
	}
	ret = gen_commit(&g, img, tag, o, true, err);
out:
	gen_clear(&g);
	return ret;
}
