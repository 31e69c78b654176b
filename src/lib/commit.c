/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Commit (see ocitree/upper.h): the upper directory already is the change,
 * so this walks it, and only it, in name order and hands each entry to the
 * layer writer.  The image below is read only for the data of metacopy
 * files.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/sysmacros.h>

#include "layout-internal.h"
#include "ocitree/bundle.h"
#include "ocitree/layer-index.h"
#include "ocitree/layer.h"
#include "upper-internal.h"

#define COPY_BUF (1u << 20)
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif

struct cw {
	struct ocitree_upper *u;
	const struct ocitree_upper_format *f;
	const struct ocitree_commit_options *o;
	struct ocitree_layout *l;
	struct ocitree_image *img;
	struct ocitree_layer_writer *w;
	/* the image's tree, for metacopy data */
	struct ocitree_tree *tree;
	struct ocitree_tree *own_tree;
	struct ocitree_layer_index **idx;
	size_t n_idx;
	struct inomap links; /* upper inode -> the layer path of its first name */
	char *buf;
	uint64_t entries;
};

/* The image's tree, opened on first use (its indexes come from the cache
 * when they are there). */
static struct ocitree_tree *lower_tree(struct cw *c, struct ocitree_error **err)
{
	if (c->tree)
		return c->tree;
	_cleanup_free_ char *cache = c->o->cache_dir ? xstrdup(c->o->cache_dir) : ocitree_cache_dir_default();
	if (!cache)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
					  "no cache directory for layer indexes (set OCITREE_CACHE_DIR or HOME)"),
		       NULL;
	struct ocitree_manifest *m = c->img->manifest;
	struct ocitree_layer_index_opts io = {
		.cache_dir = cache, .progress = c->o->progress, .progress_data = c->o->progress_data};
	c->idx = xcalloc(m->n_layers + 1, sizeof(*c->idx));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ocitree_layer_index_open_many(c->l, m->layers, c->img->config->diff_ids, m->n_layers, &io,
					  ncpu > 0 ? (unsigned)ncpu : 1, c->idx, err) < 0) {
		free(c->idx);
		c->idx = NULL;
		return NULL;
	}
	c->n_idx = m->n_layers;
	c->own_tree = ocitree_tree_build(c->idx, c->n_idx, 0, err);
	c->tree = c->own_tree;
	return c->tree;
}

/* Copy len bytes of data from fd, or from lower file k, to the writer. */
static int put_data(struct cw *c, int fd, uint32_t k, uint64_t len, const char *what, struct ocitree_error **err)
{
	uint64_t done = 0;
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = k ? ocitree_tree_entry(c->tree, k, &l) : NULL;
	while (done < len) {
		size_t chunk = (size_t)MIN(len - done, COPY_BUF);
		ssize_t r;
		if (fd >= 0) {
			r = pread_full(fd, c->buf, chunk, (off_t)done);
			if (r < 0)
				return ocitree_error_set(err, errno, "read '%s'", what);
		} else {
			uint64_t have = e && e->size > done ? e->size - done : 0;
			size_t want = (size_t)MIN(chunk, have);
			r = want ? ocitree_layer_index_pread(l, c->buf, want, e->data_off + done, err) : 0;
			if (r < 0)
				return ocitree_error_prefix(err, "read the image's data of '%s'", what);
			if ((size_t)r < chunk) {
				/* the image's file is shorter than the copy says */
				memset(c->buf + r, 0, chunk - (size_t)r);
				r = (ssize_t)chunk;
			}
		}
		if (r == 0)
			return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "'%s' shrank while it was read", what);
		if (ocitree_layer_writer_data(c->w, c->buf, (size_t)r, err) < 0)
			return -1;
		done += (uint64_t)r;
	}
	return 0;
}

struct xlist {
	struct ocitree_xattr *v;
	size_t n, cap;
	struct buf names;
	struct buf *values;
};

static void xlist_free(struct xlist *x)
{
	for (size_t i = 0; i < x->n; i++)
		buf_free(&x->values[i]);
	free(x->values);
	free(x->v);
	buf_free(&x->names);
}

static int cmp_xattr(const void *a, const void *b)
{
	return strcmp(((const struct ocitree_xattr *)a)->name, ((const struct ocitree_xattr *)b)->name);
}

/* The image xattrs of an upper object: private ones left out, escaped ones
 * under their own names, in name order.  user_ok: the entry may have
 * user.* xattrs (the kernel allows them on regular files and directories
 * only: a mount cannot show them elsewhere, nor can anyone unpack them). */
static int read_xattrs(struct cw *c, const struct upath *p, struct xlist *x, bool user_ok, const char *what,
		       struct ocitree_error **err)
{
	_cleanup_buf_ struct buf raw = BUF_INIT;
	if (upath_list_all(p, &raw) < 0)
		return ocitree_error_set(err, errno, "list the xattrs of '%s'", what);
	for (size_t off = 0; off < raw.len; off += strlen(raw.data + off) + 1) {
		const char *n = raw.data + off;
		const char *shown = upper_xattr_unescape(c->f, n);
		if (!shown || strcmp(shown, "security.selinux") == 0)
			continue;
		if (!user_ok && str_has_prefix(shown, "user.")) {
			log_warn("'%s': xattr '%s' on something that is neither a file nor a directory: left out", what,
				 shown);
			continue;
		}
		GROW(x->v, x->cap, x->n + 1);
		x->values = xrealloc(x->values, x->cap * sizeof(*x->values));
		x->values[x->n] = (struct buf)BUF_INIT;
		if (upath_get_all(p, n, &x->values[x->n]) < 0) {
			if (errno == ENODATA)
				continue;
			return ocitree_error_set(err, errno, "read xattr '%s' of '%s'", n, what);
		}
		size_t at = x->names.len;
		buf_append(&x->names, shown, strlen(shown) + 1);
		/* names are pointed to once the buffer stops moving */
		x->v[x->n] = (struct ocitree_xattr){(const char *)(uintptr_t)at, x->values[x->n].data ? x->values[x->n].data : "",
						    x->values[x->n].len};
		x->n++;
	}
	for (size_t i = 0; i < x->n; i++)
		x->v[i].name = x->names.data + (uintptr_t)x->v[i].name;
	if (x->n)
		qsort(x->v, x->n, sizeof(*x->v), cmp_xattr);
	return 0;
}

/* Write the entry of upper object name in dfd (lstat st) as tpath. */
static int put_entry(struct cw *c, int dfd, const char *name, const struct stat *real, const char *tpath,
		     struct ocitree_error **err)
{
	struct stat st = *real;
	struct upath p;
	upath_at(&p, dfd, name);
	struct upper_meta m;
	if (upper_meta_read(c->f, &p, &m) < 0)
		return ocitree_error_set(err, errno, "read the xattrs of '%s'", tpath);
	if (c->f->virtual_owners) {
		if (m.has_stat && ((m.mode & S_IFMT) == (st.st_mode & S_IFMT) ||
				   (S_ISREG(st.st_mode) && !S_ISDIR(m.mode) && !S_ISLNK(m.mode)))) {
			upper_meta_apply(&m, &st);
		} else {
			st.st_uid = 0;
			st.st_gid = 0;
		}
	}
	struct ocitree_tar_entry e = {.path = tpath, .mode = st.st_mode & 07777, .uid = st.st_uid, .gid = st.st_gid,
				      .mtime = st.st_mtim};
	struct xlist x = {0};
	_cleanup_free_ char *link = NULL;
	_cleanup_close_ int fd = -1;
	uint32_t lower = 0;
	int ret = -1;
	if (read_xattrs(c, &p, &x, S_ISREG(st.st_mode) || S_ISDIR(st.st_mode), tpath, err) < 0)
		goto out;
	e.xattrs = x.v;
	e.n_xattrs = x.n;
	switch (st.st_mode & S_IFMT) {
	case S_IFDIR:
		e.type = OCITREE_TAR_DIR;
		break;
	case S_IFLNK:
		link = xmalloc((size_t)st.st_size + 2);
		ssize_t ll = readlinkat(dfd, name, link, (size_t)st.st_size + 1);
		if (ll < 0 || ll > st.st_size) {
			ocitree_error_set(err, ll < 0 ? errno : EAGAIN, "read link '%s'", tpath);
			goto out;
		}
		link[ll] = '\0';
		e.type = OCITREE_TAR_SYMLINK;
		e.linkname = link;
		break;
	case S_IFCHR:
	case S_IFBLK:
		e.type = S_ISCHR(st.st_mode) ? OCITREE_TAR_CHAR : OCITREE_TAR_BLOCK;
		e.devmajor = major(st.st_rdev);
		e.devminor = minor(st.st_rdev);
		break;
	case S_IFIFO:
		e.type = OCITREE_TAR_FIFO;
		break;
	case S_IFREG: {
		const char *first = real->st_nlink > 1 ? inomap_get(&c->links, real->st_ino) : NULL;
		if (first) {
			e.type = OCITREE_TAR_HARDLINK;
			e.linkname = first;
			break;
		}
		e.type = OCITREE_TAR_REG;
		e.size = st.st_size;
		if (m.metacopy) {
			struct ocitree_tree *t = lower_tree(c, err);
			if (!t)
				goto out;
			lower = ocitree_tree_lookup_path(t, m.redirect + 1);
			struct stat lst;
			if (!lower || ocitree_tree_stat(t, lower, &lst) < 0 || !S_ISREG(lst.st_mode)) {
				ocitree_error_setk(err, OCITREE_ERROR_INVALID,
						   "'%s' is a metadata copy of '%s', which the image does not have", tpath,
						   m.redirect);
				goto out;
			}
		} else {
			fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0) {
				ocitree_error_set(err, errno, "open '%s'", tpath);
				goto out;
			}
		}
		if (real->st_nlink > 1)
			inomap_put(&c->links, real->st_ino, tpath);
		break;
	}
	default:
		log_warn("'%s': sockets cannot be stored in a layer; skipped", tpath);
		ret = 0;
		goto out;
	}
	if (ocitree_layer_writer_add(c->w, &e, err) < 0)
		goto out;
	if (e.type == OCITREE_TAR_REG && put_data(c, fd, lower, (uint64_t)e.size, tpath, err) < 0)
		goto out;
	c->entries++;
	if (c->o->progress && (c->entries & 255) == 0) {
		struct ocitree_progress pr = {.phase = "commit", .bytes = ocitree_layer_writer_offset(c->w),
					      .entries = c->entries};
		c->o->progress(&pr, c->o->progress_data);
	}
	ret = 0;
out:
	upper_meta_clear(&m);
	xlist_free(&x);
	if (ret < 0)
		ocitree_error_prefix(err, "commit '%s'", tpath);
	return ret;
}

static int put_marker(struct cw *c, const char *dir, const char *name, struct ocitree_error **err)
{
	_cleanup_free_ char *p = *dir ? xasprintf("%s/%s", dir, name) : xstrdup(name);
	struct ocitree_tar_entry e = {.path = p, .type = OCITREE_TAR_REG};
	c->entries++;
	return ocitree_layer_writer_add(c->w, &e, err);
}

struct item {
	char *tarname; /* the name in the layer: NAME, or .wh.NAME for a whiteout */
	char *name;    /* the upper entry, NULL for a whiteout file's target */
	bool whiteout;
	struct stat st;
};

static int cmp_item(const void *a, const void *b)
{
	return strcmp(((const struct item *)a)->tarname, ((const struct item *)b)->tarname);
}

static bool is_opaque(struct cw *c, int dfd, bool wh_beside)
{
	struct upath p;
	upath_fd(&p, dfd);
	struct upper_meta m;
	bool opaque = false;
	if (upper_meta_read(c->f, &p, &m) == 0)
		opaque = m.opaque;
	upper_meta_clear(&m);
	struct stat st;
	return opaque || wh_beside || fstatat(dfd, UPPER_WH_OPAQUE, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Write the entries below directory dfd (layer path dir, "" for the root). */
static int walk(struct cw *c, int dfd, const char *dir, struct ocitree_error **err)
{
	int fd2 = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd2 >= 0 ? fdopendir(fd2) : NULL;
	if (!d) {
		if (fd2 >= 0)
			close(fd2);
		return ocitree_error_set(err, errno, "read directory '%s'", *dir ? dir : "/");
	}
	struct item *v = NULL;
	size_t n = 0, cap = 0;
	_cleanup_(strset_free) struct strset present = {0};
	_cleanup_(strset_free) struct strset whiteouts = {0};
	struct dirent *de;
	int ret = 0;
	while ((de = readdir(d))) {
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strcmp(name, UPPER_WH_OPAQUE) == 0)
			continue;
		if (upper_name_reserved(name)) {
			strset_add(&whiteouts, name + strlen(UPPER_WH_PREFIX));
			continue;
		}
		struct stat st;
		if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			ret = ocitree_error_set(err, errno, "stat '%s/%s'", dir, name);
			break;
		}
		if (upper_is_whiteout(&st)) {
			strset_add(&whiteouts, name);
			continue;
		}
		GROW(v, cap, n + 1);
		v[n++] = (struct item){xstrdup(name), xstrdup(name), false, st};
		strset_add(&present, name);
	}
	closedir(d);
	/* 0/0 devices NAME and .wh.NAME files (one whiteout however many say
	 * so): a whiteout where NAME is not in the upper directory, else NAME
	 * replaces the image's entry (a directory then is opaque) */
	for (size_t i = 0; i < whiteouts.cap && ret == 0; i++) {
		const char *w = whiteouts.slots[i];
		if (!w || strset_has(&present, w))
			continue;
		if (!*w || strcmp(w, ".") == 0 || strcmp(w, "..") == 0 || upper_name_reserved(w)) {
			/* ".wh.", ".wh..", ".wh..." or ".wh..wh.X": the mount shows
			 * them hiding nothing; in a layer they would be invalid */
			log_warn("upper directory: '%s%s" UPPER_WH_PREFIX "%s' hides no name an image can have: ignored",
				 dir, *dir ? "/" : "", w);
			continue;
		}
		GROW(v, cap, n + 1);
		v[n++] = (struct item){xasprintf(UPPER_WH_PREFIX "%s", w), NULL, true, {0}};
	}
	if (ret == 0 && n)
		qsort(v, n, sizeof(*v), cmp_item);
	for (size_t i = 0; i < n && ret == 0; i++) {
		_cleanup_free_ char *tpath = *dir ? xasprintf("%s/%s", dir, v[i].tarname) : xstrdup(v[i].tarname);
		if (v[i].whiteout) {
			ret = put_marker(c, dir, v[i].tarname, err);
			continue;
		}
		if (c->o->visit)
			c->o->visit(tpath, &v[i].st, c->o->userdata);
		ret = put_entry(c, dfd, v[i].name, &v[i].st, tpath, err);
		if (ret == 0 && S_ISDIR(v[i].st.st_mode)) {
			int sub = openat(dfd, v[i].name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				ret = ocitree_error_set(err, errno, "open directory '%s'", tpath);
				continue;
			}
			if (is_opaque(c, sub, strset_has(&whiteouts, v[i].name)))
				ret = put_marker(c, tpath, UPPER_WH_OPAQUE, err);
			if (ret == 0)
				ret = walk(c, sub, tpath, err);
			close(sub);
		}
	}
	for (size_t i = 0; i < n; i++) {
		free(v[i].tarname);
		free(v[i].name);
	}
	free(v);
	return ret;
}

OCITREE_EXPORT int ocitree_upper_commit(struct ocitree_upper *u, struct ocitree_layout *l, const char *tag,
					 const struct ocitree_commit_options *o, struct ocitree_commit_result *res,
					 struct ocitree_error **err)
{
	memset(res, 0, sizeof(*res));
	if (ocitree_tag_check(tag, err) < 0)
		return -1;
	if (u->state.clearing)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
					  "upper directory '%s': an earlier commit --clear was interrupted; mount it, or "
					  "commit it again with --clear, to finish",
					  u->path);
	/* names the mount shows as one file are still apart in the upper
	 * directory: committed now, they would be two files in the image */
	struct stat jst;
	if (fstatat(u->work_fd, UPPER_LINKS_JOURNAL, &jst, AT_SYMLINK_NOFOLLOW) == 0)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
					  "upper directory '%s': the copy-up of a file with several names was left "
					  "half done ('%s/%s'); mount it (again) to finish it, then commit",
					  u->path, u->work_path, UPPER_LINKS_JOURNAL);
	struct cw c = {.u = u, .f = &u->state.format, .o = o, .l = l, .tree = o->lower};
	int ret = -1;
	if (ocitree_layout_hold_blobs(l, err) < 0)
		return -1;
	c.img = ocitree_upper_base_image(u, l, err);
	if (!c.img)
		return -1;
	/* a platform of an index: the new image replaces it in that index */
	if (image_attach_tag_index(c.img, tag, err) < 0 || image_attach_tag_index(c.img, u->state.tag, err) < 0) {
		ocitree_image_free(c.img);
		return -1;
	}
	struct ocitree_layer_writer_options wo = {.compression = ocitree_compression_resolve(o->compression,
											      c.img->manifest),
						  .clamp_mtime = ocitree_source_date_epoch()};
	c.w = ocitree_layer_writer_new(l, &wo, err);
	if (!c.w)
		goto out;
	c.buf = xmalloc(COPY_BUF);
	struct ocitree_descriptor desc = {0};
	bool changed = !ocitree_upper_is_empty(u);
	if (changed) {
		/* the root first: its metadata may have changed too */
		struct stat rst;
		if (fstat(u->fd, &rst) < 0) {
			ocitree_error_set(err, errno, "stat upper directory '%s'", u->path);
			goto out;
		}
		if (put_entry(&c, u->fd, ".", &rst, ".", err) < 0)
			goto out;
		if (is_opaque(&c, u->fd, false) && put_marker(&c, "", UPPER_WH_OPAQUE, err) < 0)
			goto out;
		if (walk(&c, u->fd, "", err) < 0)
			goto out;
		if (ocitree_layer_writer_commit(c.w, &desc, res->diff_id, err) < 0)
			goto out;
		snprintf(res->layer, sizeof(res->layer), "%s", desc.digest);
		res->layer_size = desc.size;
	}
	res->entries = c.entries;
	struct ocitree_write_options wopts = {.compression = o->compression, .history = o->history};
	ret = image_add_layer_commit(c.img, changed ? &desc : NULL, res->diff_id, tag, &wopts, err);
	ocitree_descriptor_clear(&desc);
	if (ret < 0)
		goto out;
	snprintf(res->manifest, sizeof(res->manifest), "%s", c.img->manifest_desc.digest);
	res->manifest_size = c.img->manifest_desc.size;
	if (o->clear) {
		/* the record names the new image first: an interrupted clear is
		 * then finished, never mistaken for changes */
		ocitree_descriptor_clear(&u->state.manifest);
		ocitree_descriptor_copy(&u->state.manifest, &c.img->manifest_desc);
		free(u->state.tag);
		u->state.tag = xstrdup(tag);
		u->state.clearing = true;
		ret = ocitree_upper_save_state(u, err);
		if (ret == 0)
			ret = ocitree_upper_clear(u, o->keep, o->userdata, err);
		if (ret < 0)
			ocitree_error_prefix(err, "image %s is tagged '%s', but", res->manifest, tag);
	}
out:
	ocitree_layer_writer_free(c.w);
	ocitree_image_free(c.img);
	ocitree_tree_free(c.own_tree);
	for (size_t i = 0; i < c.n_idx; i++)
		ocitree_layer_index_free(c.idx[i]);
	free(c.idx);
	inomap_free(&c.links);
	free(c.buf);
	return ret;
}
