/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writable-mount engine (see overlay.h): copy-up.  Image files and
 * directories get their upper objects here (data, or metadata only where
 * the format has metacopy), made in the work directory and renamed into
 * place; a file with several names is hardlinked at each of them under the
 * links journal, which the next mount replays after a crash; a directory
 * about to move takes its whole subtree up and turns opaque (I2).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ocitree/log.h"
#include "overlay.h"

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif

struct tname {
	uint32_t dir;
	const char *name;
};

/* Every name of inode k in the current tree. */
static size_t tree_names(struct ocitree_overlay *ov, uint32_t k, struct tname **out)
{
	overlay_tindex_build(ov);
	size_t n = 0, cap = 0;
	struct tname *v = NULL;
	if (overlay_lnlink(ov->tree, k) <= 1 || ocitree_overlay_ltype(ov->tree, k) == S_IFDIR) {
		v = xmalloc(sizeof(*v));
		v[0].dir = ov->tparent[k];
		v[0].name = ocitree_tree_dir_entry(ov->tree, ov->tparent[k], ov->tpos[k], NULL);
		*out = v;
		return ov->tparent[k] ? 1 : 0;
	}
	uint32_t ni = ocitree_tree_inodes(ov->tree);
	for (uint32_t d = 1; d <= ni; d++) {
		uint32_t c = ocitree_tree_dir_size(ov->tree, d);
		for (uint32_t i = 0; i < c; i++) {
			uint32_t child;
			const char *name = ocitree_tree_dir_entry(ov->tree, d, i, &child);
			if (child == k) {
				GROW(v, cap, n + 1);
				v[n++] = (struct tname){d, name};
			}
		}
	}
	*out = v;
	return n;
}

/* Copy the first len bytes of lower file k into fd (at offset 0). */
static int copy_lower_data(struct ocitree_tree *t, uint32_t k, int fd, uint64_t len)
{
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = ocitree_tree_entry(t, k, &l);
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

/* Give the live object n of tree inode n->lower the upper object name in dirfd. */
static int attach(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n, int dirfd, const char *name, bool metacopy)
{
	if (n->ufd >= 0)
		return 0;
	struct stat st;
	int fd = open_stat_at(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC, &st);
	if (fd < 0)
		return errno;
	overlay_obj_take_lower_owner(ov, n, n->lower);
	n->metacopy = metacopy;
	if (!S_ISDIR(n->type) && !metacopy)
		n->lower = 0;
	overlay_set_upper(ov, n, fd, st.st_ino);
	return 0;
}

static void attach_lower(struct ocitree_overlay *ov, uint32_t k, int dirfd, const char *name, bool metacopy)
{
	struct ocitree_overlay_obj *n = overlay_find_lower(ov, k);
	if (!n)
		return;
	if (n->ufd < 0 && n->tree == ov->tree && n->lower == k) {
		int r = attach(ov, n, dirfd, name, metacopy);
		if (r)
			ocitree_log(OCITREE_LOG_WARN, "copy up '%s': %s", name, strerror(r));
	}
	overlay_put(ov, n);
}

/* Copy tree directory k up as name in dirfd (where the upper directory has
 * nothing); returns an O_PATH fd of it in *out. */
static int cu_dir(struct ocitree_overlay *ov, int dirfd, const char *name, uint32_t k, int *out)
{
	int wfd = ov->upper->work_fd;
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
	_cleanup_free_ char *origin = ocitree_overlay_tree_path(ov, k);
	int r = overlay_set_lower_meta(ov, ov->tree, k, fd, origin);
	struct overlay_ptimes pt;
	overlay_ptimes_save(dirfd, &pt);
	if (!r)
		r = overlay_place(ov, tmp, dirfd, name, true, false);
	overlay_ptimes_restore(dirfd, &pt);
	if (r) {
		close(fd);
		upper_rm_rf_at(wfd, tmp);
		return r;
	}
	overlay_set_lower_times(ov->tree, k, fd);
	attach_lower(ov, k, dirfd, name, false);
	*out = fd;
	return 0;
}

/* An O_PATH fd of the upper directory of tree directory k (at its tree path,
 * I2), copying it and its parents up as needed. */
static int upper_tree_dir(struct ocitree_overlay *ov, uint32_t k, int *out)
{
	overlay_tindex_build(ov);
	uint32_t chain[4096];
	size_t n = 0;
	int cur = -1;
	for (uint32_t c = k;; c = ov->tparent[c]) {
		if (c == OCITREE_TREE_ROOT) {
			cur = fcntl(ov->root->ufd, F_DUPFD_CLOEXEC, 3);
			break;
		}
		struct ocitree_overlay_obj *ln = overlay_find_lower(ov, c);
		if (ln && ln->ufd >= 0 && S_ISDIR(ln->type) && ln->tree == ov->tree) {
			cur = fcntl(ln->ufd, F_DUPFD_CLOEXEC, 3);
			overlay_put(ov, ln);
			break;
		}
		overlay_put(ov, ln);
		if (!ov->tparent[c] || n == ARRAY_SIZE(chain))
			return EIO;
		chain[n++] = c;
	}
	if (cur < 0)
		return errno;
	while (n > 0) {
		uint32_t c = chain[--n];
		const char *name = ocitree_tree_dir_entry(ov->tree, ov->tparent[c], ov->tpos[c], NULL);
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
			attach_lower(ov, c, cur, name, false);
		} else if (errno == ENOENT) {
			int r = cu_dir(ov, cur, name, c, &next);
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

OCITREE_EXPORT int ocitree_overlay_ensure_upper_dir(struct ocitree_overlay *ov, struct ocitree_overlay_obj *dir)
{
	if (dir->ufd >= 0)
		return 0;
	if (dir->tree != ov->tree || !dir->lower || dir->unlinked)
		return ENOENT;
	int fd = -1;
	int r = upper_tree_dir(ov, dir->lower, &fd);
	if (r)
		return r;
	close(fd);
	return dir->ufd >= 0 ? 0 : EIO;
}

/* The names of a hardlinked file are linked into the upper directory one
 * by one: the journal (upper_links_journal_write), written first, lists
 * them, so that a crash in between is finished at the next mount
 * (links_journal_replay) and the names stay one file. */
static int links_journal_write(struct ocitree_overlay *ov, const struct tname *names, size_t nn)
{
	char **paths = xcalloc(nn + 1, sizeof(*paths));
	for (size_t i = 0; i < nn; i++) {
		_cleanup_free_ char *dir = ocitree_overlay_tree_path(ov, names[i].dir);
		paths[i] = xasprintf("%s/%s", strcmp(dir, "/") == 0 ? "" : dir, names[i].name);
	}
	_cleanup_error_ struct ocitree_error *err = NULL;
	int r = upper_links_journal_write(ov->upper, (const char *const *)paths, nn, &err);
	strv_free(paths);
	if (r < 0) {
		ocitree_log(OCITREE_LOG_ERROR, "copy up: %s", err->msg);
		return err->errnum ? err->errnum : EIO;
	}
	return 0;
}

/* An O_PATH fd of the upper directory at image path dir ("/a/b"), without
 * copying anything up; -1 when it is not there. */
static int upper_dir_at(struct ocitree_overlay *ov, const char *dir)
{
	int cur = fcntl(ov->root->ufd, F_DUPFD_CLOEXEC, 3);
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
OCITREE_EXPORT void ocitree_overlay_links_journal_replay(struct ocitree_overlay *ov)
{
	_cleanup_strv_ char **paths = NULL;
	_cleanup_error_ struct ocitree_error *err = NULL;
	if (upper_links_journal_read(ov->upper, &paths, &err) < 0) {
		ocitree_log(OCITREE_LOG_WARN, "%s: ignored", err->msg);
		upper_links_journal_remove(ov->upper);
		return;
	}
	if (!paths)
		return;
	/* every path is "/" and names that are not "." or "..": nothing here
	 * leads out of the upper directory */
	const char *first = paths[0];
	const char *slash0 = strrchr(first, '/');
	_cleanup_free_ char *dir0 = xstrndup(first, (size_t)(slash0 - first));
	int d0 = upper_dir_at(ov, dir0);
	struct stat st;
	if (d0 >= 0 && fstatat(d0, slash0 + 1, &st, AT_SYMLINK_NOFOLLOW) == 0 && !upper_is_whiteout(&st)) {
		for (size_t i = 1; paths[i]; i++) {
			const char *p = paths[i];
			const char *slash = strrchr(p, '/');
			_cleanup_free_ char *dir = xstrndup(p, (size_t)(slash - p));
			uint32_t k = *dir ? ocitree_tree_lookup_path(ov->tree, dir + 1) : OCITREE_TREE_ROOT;
			int dfd = -1;
			if (!k || upper_tree_dir(ov, k, &dfd))
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
	upper_links_journal_remove(ov->upper);
}

/* Copy lower non-directory k of tree t up: the object is made in the work
 * directory, then renamed to its (first) name and hardlinked at the others
 * (I1); orphan: it has no name any more and stays unlinked.  *out: an O_PATH
 * fd of it; *metacopy whether only its metadata was copied. */
static int cu_file(struct ocitree_overlay *ov, struct ocitree_tree *t, uint32_t k, enum ocitree_overlay_cu cu,
                   bool orphan, int *out, bool *metacopy)
{
	int wfd = ov->upper->work_fd;
	struct stat lst;
	if (ocitree_tree_stat(t, k, &lst) < 0)
		return EIO;
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = ocitree_tree_entry(t, k, &l);
	char tmp[64];
	upper_tmp_name(tmp);
	_cleanup_free_ char *origin = orphan ? NULL : ocitree_overlay_tree_path(ov, k);
	*metacopy = false;
	int r = 0;
	switch (lst.st_mode & S_IFMT) {
	case S_IFREG: {
		_cleanup_close_ int fd = openat(wfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return errno;
		if (cu == OCITREE_OVERLAY_CU_META && lst.st_size > 0 && ov->fmt.xattrs != OCITREE_UPPER_XATTR_NONE &&
		    origin) {
			/* metadata only: the size is right, the blocks are a hole,
			 * and the data is the lower file's */
			if (ftruncate(fd, lst.st_size) < 0 || (r = overlay_set_private(ov, fd, UPPER_X_METACOPY, "")) ||
			    (r = overlay_set_private(ov, fd, UPPER_X_REDIRECT, origin)))
				r = r ? r : errno;
			else
				*metacopy = true;
		} else if (cu != OCITREE_OVERLAY_CU_EMPTY && lst.st_size > 0) {
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
		r = overlay_mknod_at(ov, wfd, tmp, lst.st_mode & S_IFMT, 0600, lst.st_rdev);
		if (r)
			return r;
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
		r = overlay_set_lower_meta(ov, t, k, pfd, origin);
	if (!r)
		r = overlay_set_lower_times(t, k, pfd);
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
	size_t nn = tree_names(ov, k, &names);
	int d0 = -1;
	if (nn > 1)
		r = links_journal_write(ov, names, nn);
	for (size_t i = 0; i < nn && !r; i++) {
		int dfd = -1;
		r = upper_tree_dir(ov, names[i].dir, &dfd);
		if (r)
			break;
		struct overlay_ptimes pt;
		overlay_ptimes_save(dfd, &pt);
		if (i == 0) {
			r = overlay_place(ov, tmp, dfd, names[i].name, false, false);
			d0 = dfd;
		} else if (linkat(d0, names[0].name, dfd, names[i].name, 0) < 0) {
			r = errno;
		}
		overlay_ptimes_restore(dfd, &pt);
		if (i > 0)
			close(dfd);
	}
	free(names);
	if (d0 >= 0)
		close(d0);
	if (nn > 1 && !r)
		upper_links_journal_remove(ov->upper);
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
static int cu_fill(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n, enum ocitree_overlay_cu cu)
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
	if (cu == OCITREE_OVERLAY_CU_EMPTY) {
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
	overlay_remove_private(ov, fd, UPPER_X_METACOPY);
	overlay_remove_private(ov, fd, UPPER_X_REDIRECT);
	n->metacopy = false;
	n->lower = 0;
	return 0;
}

/* Make sure object n has an upper object (ns exclusive). */
OCITREE_EXPORT int ocitree_overlay_copy_up(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n,
                                           enum ocitree_overlay_cu cu)
{
	if (n->ufd >= 0)
		return n->metacopy && cu != OCITREE_OVERLAY_CU_META ? cu_fill(ov, n, cu) : 0;
	if (!n->lower)
		return EIO;
	if (S_ISDIR(n->type))
		return ocitree_overlay_ensure_upper_dir(ov, n);
	if (!n->unlinked && n->tree != ov->tree)
		return EIO;
	int fd = -1;
	bool metacopy = false;
	int r = cu_file(ov, n->tree, n->lower, cu, n->unlinked, &fd, &metacopy);
	if (r)
		return r;
	if (n->ufd < 0) {
		struct stat st;
		if (fstat(fd, &st) < 0) {
			r = errno;
			close(fd);
			return r;
		}
		overlay_obj_take_lower_owner(ov, n, n->lower);
		n->metacopy = metacopy;
		if (!metacopy)
			n->lower = 0;
		n->unlinked = false;
		overlay_set_upper(ov, n, fd, st.st_ino);
	} else {
		close(fd);
	}
	return 0;
}

/* Copy up everything below merged directory dir and make it opaque, so that
 * it can move (I2). */
static int cu_subtree(struct ocitree_overlay *ov, int dfd, uint32_t ld)
{
	uint32_t nc = ocitree_tree_dir_size(ov->tree, ld);
	for (uint32_t i = 0; i < nc; i++) {
		uint32_t c;
		const char *name = ocitree_tree_dir_entry(ov->tree, ld, i, &c);
		struct stat st;
		int sub = -1;
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (!S_ISDIR(st.st_mode) || ocitree_overlay_ltype(ov->tree, c) != S_IFDIR)
				continue; /* a whiteout, or the upper entry replaces the lower one */
			sub = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				return errno;
			struct upath p;
			upath_fd(&p, sub);
			struct upper_meta m;
			if (upper_meta_read(&ov->fmt, &p, &m) == 0 &&
			    (m.opaque || overlay_has_opaque_marker(sub) || overlay_wh_file_exists(dfd, name))) {
				upper_meta_clear(&m);
				close(sub);
				continue;
			}
			upper_meta_clear(&m);
		} else if (errno != ENOENT) {
			return errno;
		} else if (ov->fmt.whiteout == OCITREE_UPPER_WHITEOUT_FILE && overlay_wh_file_exists(dfd, name)) {
			continue;
		} else if (ocitree_overlay_ltype(ov->tree, c) == S_IFDIR) {
			int r = cu_dir(ov, dfd, name, c, &sub);
			if (r)
				return r;
		} else {
			struct ocitree_overlay_obj *n = overlay_find_lower(ov, c);
			int r;
			if (n && n->ufd < 0 && n->tree == ov->tree) {
				r = ocitree_overlay_copy_up(ov, n, OCITREE_OVERLAY_CU_META);
			} else {
				int fd = -1;
				bool mc;
				r = cu_file(ov, ov->tree, c, OCITREE_OVERLAY_CU_META, false, &fd, &mc);
				if (!r)
					close(fd);
			}
			overlay_put(ov, n);
			if (r)
				return r;
			continue;
		}
		int r = cu_subtree(ov, sub, c);
		close(sub);
		if (r)
			return r;
	}
	return 0;
}

int overlay_cu_tree(struct ocitree_overlay *ov, struct ocitree_overlay_obj *dir)
{
	int r = ocitree_overlay_ensure_upper_dir(ov, dir);
	if (r || !dir->lower)
		return r;
	if (dir->tree != ov->tree)
		return EIO;
	r = cu_subtree(ov, dir->ufd, dir->lower);
	if (!r)
		r = overlay_set_opaque(ov, dir->ufd);
	if (!r) {
		dir->lower = 0;
		ocitree_overlay_dir_changed(dir);
	}
	return r;
}

