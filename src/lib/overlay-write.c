/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writable-mount engine (see overlay.h): changing the upper directory.
 * Private xattrs and owners of upper objects, whiteouts and opaque
 * markers in the format's form, and the operations of the merged view that
 * change names or attributes: make, remove, link, rename, setattr and the
 * xattrs.  Objects are prepared in the work directory and renamed into
 * place, so that a crash leaves either the old or the new state.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ocitree/log.h"
#include "overlay.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#ifndef RENAME_WHITEOUT
#define RENAME_WHITEOUT (1 << 2)
#endif

void overlay_ptimes_save(int dfd, struct overlay_ptimes *p)
{
	struct stat st;
	p->ok = fstat(dfd, &st) == 0;
	p->ts[0] = st.st_atim;
	p->ts[1] = st.st_mtim;
}

/* Copy-up is not a change of the parent directory: keep its times. */
void overlay_ptimes_restore(int dfd, const struct overlay_ptimes *p)
{
	if (p->ok)
		utimensat(dfd, "", p->ts, AT_EMPTY_PATH);
}

static void warn_xattr(struct ocitree_overlay *ov, const char *name, int e)
{
	pthread_mutex_lock(&ov->warn_lock);
	bool first = !ov->warned_xattr;
	ov->warned_xattr = true;
	pthread_mutex_unlock(&ov->warn_lock);
	if (first)
		ocitree_log(OCITREE_LOG_WARN,
			    "cannot keep xattr '%s' in the upper directory (%s): copied-up files lose such xattrs", name,
			    strerror(e));
}

int overlay_set_private(struct ocitree_overlay *ov, int fd, const char *which, const char *value)
{
	char n[UPPER_XATTR_NAME_MAX];
	if (!upper_xattr_name(&ov->fmt, which, n))
		return 0;
	struct upath p;
	upath_fd(&p, fd);
	return upath_setxattr(&p, n, value, strlen(value), 0) < 0 ? errno : 0;
}

void overlay_remove_private(struct ocitree_overlay *ov, int fd, const char *which)
{
	char n[UPPER_XATTR_NAME_MAX];
	if (!upper_xattr_name(&ov->fmt, which, n))
		return;
	struct upath p;
	upath_fd(&p, fd);
	upath_removexattr(&p, n);
}

static int set_vstat(struct ocitree_overlay *ov, int fd, uid_t uid, gid_t gid, mode_t mode, dev_t rdev)
{
	char v[64];
	upper_stat_format(v, uid, gid, mode, rdev);
	return overlay_set_private(ov, fd, UPPER_X_STAT, v);
}

/* The permission bits an object has on disk: with virtual owners the
 * daemon's user must be able to use it whatever its mode says. */
static mode_t real_perm(struct ocitree_overlay *ov, mode_t mode)
{
	mode_t p = mode & 07777;
	if (ov->fmt.virtual_owners)
		p = (p & 0777) | (S_ISDIR(mode) ? 0700 : 0600);
	return p;
}

/* Owner, mode (with type) and device number of a new upper object (fd: an
 * O_PATH fd of it).  gid -1 keeps the group it got (from a setgid dir). */
static int set_owner_mode(struct ocitree_overlay *ov, int fd, uid_t uid, gid_t gid, mode_t mode, dev_t rdev)
{
	bool link = S_ISLNK(mode);
	if (ov->fmt.virtual_owners) {
		if (link)
			return 0; /* no user xattrs on symlinks: they show as root's */
		struct upath p;
		upath_fd(&p, fd);
		if (chmod(p.path, real_perm(ov, mode)) < 0)
			return errno;
		return set_vstat(ov, fd, uid, gid == (gid_t)-1 ? 0 : gid, mode, rdev);
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
int overlay_set_lower_meta(struct ocitree_overlay *ov, struct ocitree_tree *t, uint32_t k, int fd, const char *origin)
{
	struct stat lst;
	if (ocitree_tree_stat(t, k, &lst) < 0)
		return EIO;
	int r = set_owner_mode(ov, fd, lst.st_uid, lst.st_gid, lst.st_mode, lst.st_rdev);
	if (r)
		return r;
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = ocitree_tree_entry(t, k, &l);
	struct upath p;
	upath_fd(&p, fd);
	uint32_t cur = 0;
	const char *xn;
	const void *xv;
	size_t xl;
	while (e && ocitree_layer_entry_xattr_next(l, e, &cur, &xn, &xv, &xl)) {
		_cleanup_free_ char *name = upper_xattr_escape(&ov->fmt, xn);
		if (upath_setxattr(&p, name, xv, xl, 0) < 0) {
			if (errno == EPERM || errno == ENOTSUP || errno == EACCES || errno == EINVAL)
				warn_xattr(ov, xn, errno);
			else
				return errno;
		}
	}
	if (origin) {
		/* user xattrs are not allowed on symlinks: those go without */
		r = overlay_set_private(ov, fd, UPPER_X_ORIGIN, origin);
		if (r && r != EPERM && r != ENOTSUP)
			return r;
	}
	return 0;
}

int overlay_set_lower_times(struct ocitree_tree *t, uint32_t k, int fd)
{
	struct stat lst;
	if (ocitree_tree_stat(t, k, &lst) < 0)
		return EIO;
	struct timespec ts[2] = {lst.st_mtim, lst.st_mtim};
	return utimensat(fd, "", ts, AT_EMPTY_PATH) < 0 ? errno : 0;
}

/* Create the empty file name in dirfd (mode 0600; excl: it must not exist
 * yet): a marker, or a stand-in.  Returns 0 or an errno. */
static int make_empty_at(int dirfd, const char *name, bool excl)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | (excl ? O_EXCL : 0) | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

int overlay_set_opaque(struct ocitree_overlay *ov, int dirfd)
{
	if (ov->fmt.xattrs != OCITREE_UPPER_XATTR_NONE)
		return overlay_set_private(ov, dirfd, UPPER_X_OPAQUE, "y");
	return make_empty_at(dirfd, UPPER_WH_OPAQUE, false);
}

int overlay_mknod_at(const struct ocitree_overlay *ov, int dirfd, const char *name, mode_t type, mode_t perm,
                     dev_t rdev)
{
	if (ov->fmt.virtual_owners)
		return make_empty_at(dirfd, name, true);
	if ((S_ISCHR(type) || S_ISBLK(type)) && rdev == 0)
		return EPERM;
	return mknodat(dirfd, name, type | perm, rdev) < 0 ? errno : 0;
}

/* Move name out of dirfd into the work directory and remove it there. */
static int move_out_and_remove(struct ocitree_overlay *ov, int dirfd, const char *name)
{
	char tmp[64];
	upper_tmp_name(tmp);
	if (renameat(dirfd, name, ov->upper->work_fd, tmp) < 0)
		return errno;
	if (upper_rm_rf_at(ov->upper->work_fd, tmp) < 0)
		ocitree_log(OCITREE_LOG_WARN, "remove '%s' from the work directory: %s", tmp, strerror(errno));
	return 0;
}

/* Make a whiteout for name in dirfd, where the upper directory has nothing. */
static int wh_make(struct ocitree_overlay *ov, int dirfd, const char *name)
{
	if (ov->fmt.whiteout == OCITREE_UPPER_WHITEOUT_CHARDEV)
		return mknodat(dirfd, name, S_IFCHR | 0000, 0) < 0 ? errno : 0;
	char wh[NAME_MAX + 8];
	if (strlen(name) + strlen(UPPER_WH_PREFIX) > NAME_MAX)
		return ENAMETOOLONG;
	snprintf(wh, sizeof(wh), UPPER_WH_PREFIX "%s", name);
	return make_empty_at(dirfd, wh, false);
}

/* Replace the upper entry name by a whiteout, in one step where the file
 * system allows. */
static int wh_replace(struct ocitree_overlay *ov, int dirfd, const char *name)
{
	int wfd = ov->upper->work_fd;
	char tmp[64];
	upper_tmp_name(tmp);
	if (ov->fmt.whiteout == OCITREE_UPPER_WHITEOUT_CHARDEV) {
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
		int r = move_out_and_remove(ov, dirfd, name);
		return r ? r : wh_make(ov, dirfd, name);
	}
	/* the marker first: meanwhile the entry still wins over it */
	int r = wh_make(ov, dirfd, name);
	return r ? r : move_out_and_remove(ov, dirfd, name);
}

/* Remove upper entry name without leaving a whiteout. */
static int upper_remove(struct ocitree_overlay *ov, int dirfd, const char *name, bool dir)
{
	if (unlinkat(dirfd, name, dir ? AT_REMOVEDIR : 0) == 0)
		return 0;
	if (dir && (errno == ENOTEMPTY || errno == EEXIST))
		return move_out_and_remove(ov, dirfd, name);
	return errno;
}

/* Put the prepared object tmp of the work directory at name in dirfd, where
 * the upper directory has nothing or a whiteout. */
int overlay_place(struct ocitree_overlay *ov, const char *tmp, int dirfd, const char *name, bool dir, bool whiteout)
{
	int wfd = ov->upper->work_fd;
	if (!whiteout || ov->fmt.whiteout == OCITREE_UPPER_WHITEOUT_FILE) {
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

/* Make a new object name in dir (ns exclusive).  *fd receives an fd opened
 * with o->flags for regular files when fd is not NULL. */
OCITREE_EXPORT int ocitree_overlay_make(struct ocitree_overlay *ov, struct ocitree_overlay_obj *dir, const char *name,
                                        const struct ocitree_overlay_new *o, int *fd, uint32_t *below)
{
	int r = ocitree_overlay_check_new_name(name);
	if (r)
		return r;
	struct ocitree_overlay_found f;
	r = ocitree_overlay_find(ov, dir, name, &f);
	if (r)
		return r;
	if (f.kind != OCITREE_OVERLAY_FOUND_NONE)
		return EEXIST;
	if (dir->unlinked)
		return ENOENT;
	r = ocitree_overlay_ensure_upper_dir(ov, dir);
	if (r)
		return r;
	if (dir->ufd >= 0 && !f.whiteout) {
		/* not known before the parent was copied up */
		r = ocitree_overlay_find(ov, dir, name, &f);
		if (r)
			return r;
		if (f.kind != OCITREE_OVERLAY_FOUND_NONE)
			return EEXIST;
	}
	mode_t type = o->mode & S_IFMT;
	if ((S_ISCHR(o->mode) || S_ISBLK(o->mode)) && o->rdev == 0)
		return EPERM; /* a 0/0 device is how whiteouts look */
	/* the owner: the caller's, the group of a setgid directory */
	struct stat dst;
	if (ocitree_overlay_stat(ov, dir, &dst))
		memset(&dst, 0, sizeof(dst));
	bool sgid = dst.st_mode & S_ISGID;
	uid_t uid;
	gid_t gid;
	mode_t mode = o->mode;
	if (ov->fmt.virtual_owners) {
		uid = 0;
		gid = sgid ? dst.st_gid : 0;
	} else {
		uid = o->uid;
		gid = sgid ? (gid_t)-1 : o->gid;
	}
	if (sgid && S_ISDIR(mode))
		mode |= S_ISGID;
	bool via_work = f.whiteout;
	int wfd = ov->upper->work_fd;
	char tmp[64];
	upper_tmp_name(tmp);
	int cdir = via_work ? wfd : dir->ufd;
	const char *cname = via_work ? tmp : name;
	mode_t rp = real_perm(ov, mode);
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
		r = overlay_mknod_at(ov, cdir, cname, type, rp, o->rdev);
		if (r)
			return r;
		break;
	default:
		return EINVAL;
	}
	int pfd = openat(cdir, cname, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0) {
		r = errno;
		goto undo;
	}
	r = set_owner_mode(ov, pfd, uid, gid, mode, o->rdev);
	if (!r && type == S_IFDIR && f.below && ocitree_overlay_ltype(dir->tree, f.below) == S_IFDIR)
		r = overlay_set_opaque(ov, pfd); /* the lower directory of that name was removed */
	close(pfd);
	if (!r && via_work)
		r = overlay_place(ov, tmp, dir->ufd, name, type == S_IFDIR, true);
	if (r)
		goto undo;
	ocitree_overlay_dir_changed(dir);
	*below = f.below;
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

OCITREE_EXPORT int ocitree_overlay_remove(struct ocitree_overlay *ov, struct ocitree_overlay_obj *dir, const char *name,
                                          struct ocitree_overlay_obj *n, const struct ocitree_overlay_found *f,
                                          bool rmdir)
{
	bool isdir = S_ISDIR(n->type);
	if (rmdir && !isdir)
		return ENOTDIR;
	if (!rmdir && isdir)
		return EISDIR;
	int r;
	if (rmdir) {
		bool empty;
		r = ocitree_overlay_dir_is_empty(ov, n, &empty);
		if (r)
			return r;
		if (!empty)
			return ENOTEMPTY;
	}
	if (!isdir && n->ufd < 0 && overlay_lnlink(n->tree, n->lower) > 1) {
		r = ocitree_overlay_copy_up(
		    ov, n, OCITREE_OVERLAY_CU_META); /* I1: all names move to the upper directory first */
		if (r)
			return r;
	}
	r = ocitree_overlay_ensure_upper_dir(ov, dir);
	if (r)
		return r;
	bool need_wh = f->below != 0;
	struct stat ust;
	bool in_upper = fstatat(dir->ufd, name, &ust, AT_SYMLINK_NOFOLLOW) == 0 && !upper_is_whiteout(&ust);
	if (in_upper)
		r = need_wh ? wh_replace(ov, dir->ufd, name) : upper_remove(ov, dir->ufd, name, isdir);
	else
		r = wh_make(ov, dir->ufd, name);
	if (r)
		return r;
	if (n->ufd < 0)
		n->unlinked = true;
	ocitree_overlay_dir_changed(dir);
	return 0;
}

/* Move the upper entry oldname of od to newname of nd, where the upper
 * directory has an entry, nothing or a whiteout; leave a whiteout at
 * oldname when need_wh. */
static int move_upper(struct ocitree_overlay *ov, struct ocitree_overlay_obj *od, const char *oldname,
                      struct ocitree_overlay_obj *nd, const char *newname, bool src_dir, bool need_wh)
{
	int ofd = od->ufd, nfd = nd->ufd, wfd = ov->upper->work_fd;
	struct stat dst;
	bool dst_wh = false, dst_dir = false, dst_present = false;
	if (fstatat(nfd, newname, &dst, AT_SYMLINK_NOFOLLOW) == 0) {
		dst_present = true;
		dst_wh = upper_is_whiteout(&dst);
		dst_dir = S_ISDIR(dst.st_mode);
	} else if (errno != ENOENT) {
		return errno;
	}
	bool file_wh = ov->fmt.whiteout == OCITREE_UPPER_WHITEOUT_FILE;
	char tmp[64];
	if (dst_dir) {
		/* the target directory is empty in the merged view, but may hold
		 * whiteouts: swap, then remove it from the old place */
		if (renameat2(ofd, oldname, nfd, newname, RENAME_EXCHANGE) < 0) {
			if (errno != EINVAL)
				return errno;
			int r = move_out_and_remove(ov, nfd, newname);
			if (r)
				return r;
			dst_present = false;
			goto plain;
		}
		if (need_wh)
			return wh_replace(ov, ofd, oldname);
		return move_out_and_remove(ov, ofd, oldname);
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
		int r = wh_make(ov, ofd, oldname);
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

/* Get an object ready to move to location (nd, newname): its upper object
 * exists, and a directory neither merges lower contents (I2) nor sees the
 * lower directory at its new place. */
static int prepare_move(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n, struct ocitree_overlay_obj *nd,
                        const char *newname)
{
	int r;
	if (!S_ISDIR(n->type))
		return ocitree_overlay_copy_up(ov, n, OCITREE_OVERLAY_CU_META);
	if (n->lower) {
		r = overlay_cu_tree(ov, n);
		if (r)
			return r;
	}
	uint32_t below = nd->lower ? ocitree_tree_lookup(nd->tree, nd->lower, newname) : 0;
	if (below && ocitree_overlay_ltype(nd->tree, below) == S_IFDIR)
		return overlay_set_opaque(ov, n->ufd);
	return 0;
}

OCITREE_EXPORT int ocitree_overlay_link(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n,
                                        struct ocitree_overlay_obj *dir, const char *newname,
                                        const struct ocitree_overlay_found *f)
{
	if (S_ISDIR(n->type))
		return EPERM;
	if (f->kind != OCITREE_OVERLAY_FOUND_NONE)
		return EEXIST;
	if (n->unlinked)
		return ENOENT;
	int r = ocitree_overlay_copy_up(ov, n, OCITREE_OVERLAY_CU_META);
	if (!r)
		r = ocitree_overlay_ensure_upper_dir(ov, dir);
	if (r)
		return r;
	struct stat nst;
	if (fstat(n->ufd, &nst) == 0 && nst.st_nlink == 0)
		return ENOENT; /* linking an unlinked file back is not allowed (without O_TMPFILE) */
	struct upath p;
	upath_fd(&p, n->ufd);
	char tmp[64];
	upper_tmp_name(tmp);
	bool via_work = f->whiteout;
	int ddir = via_work ? ov->upper->work_fd : dir->ufd;
	const char *dname = via_work ? tmp : newname;
	if (linkat(AT_FDCWD, p.path, ddir, dname, AT_SYMLINK_FOLLOW) < 0)
		return errno;
	if (via_work && (r = overlay_place(ov, tmp, dir->ufd, newname, false, true))) {
		unlinkat(ddir, dname, 0);
		return r;
	}
	ocitree_overlay_dir_changed(dir);
	return 0;
}

OCITREE_EXPORT int ocitree_overlay_rename(struct ocitree_overlay *ov, struct ocitree_overlay_obj *od,
                                          const char *oldname, struct ocitree_overlay_obj *nd, const char *newname,
                                          struct ocitree_overlay_obj *src, const struct ocitree_overlay_found *sf,
                                          struct ocitree_overlay_obj *dst, unsigned flags)
{
	int r;
	if (flags & OCITREE_OVERLAY_RENAME_EXCHANGE) {
		if (!dst)
			return ENOENT;
		if (src == dst)
			return 0;
		r = prepare_move(ov, src, nd, newname);
		if (!r)
			r = prepare_move(ov, dst, od, oldname);
		if (!r)
			r = ocitree_overlay_ensure_upper_dir(ov, od);
		if (!r)
			r = ocitree_overlay_ensure_upper_dir(ov, nd);
		if (!r && renameat2(od->ufd, oldname, nd->ufd, newname, RENAME_EXCHANGE) < 0)
			r = errno;
		if (!r) {
			ocitree_overlay_dir_changed(od);
			ocitree_overlay_dir_changed(nd);
		}
		return r;
	}
	if (dst) {
		if (flags & OCITREE_OVERLAY_RENAME_NOREPLACE)
			return EEXIST;
		if (src == dst)
			return 0; /* two names of one file: nothing to do */
		if (S_ISDIR(src->type) && !S_ISDIR(dst->type))
			return ENOTDIR;
		if (!S_ISDIR(src->type) && S_ISDIR(dst->type))
			return EISDIR;
		if (S_ISDIR(dst->type)) {
			bool empty;
			r = ocitree_overlay_dir_is_empty(ov, dst, &empty);
			if (!r && !empty)
				r = ENOTEMPTY;
			if (r)
				return r;
		} else if (dst->ufd < 0 && overlay_lnlink(dst->tree, dst->lower) > 1) {
			r = ocitree_overlay_copy_up(ov, dst, OCITREE_OVERLAY_CU_META); /* I1 */
			if (r)
				return r;
		}
	}
	r = prepare_move(ov, src, nd, newname);
	if (!r)
		r = ocitree_overlay_ensure_upper_dir(ov, od);
	if (!r)
		r = ocitree_overlay_ensure_upper_dir(ov, nd);
	if (r)
		return r;
	r = move_upper(ov, od, oldname, nd, newname, S_ISDIR(src->type), sf->below != 0);
	if (r)
		return r;
	if (dst && dst->ufd < 0)
		dst->unlinked = true;
	ocitree_overlay_dir_changed(od);
	ocitree_overlay_dir_changed(nd);
	return 0;
}

/* Owner, group and mode through the virtual stat xattr, as chown(2) and
 * chmod(2) would set them. */
static int set_virtual(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n, uid_t nu, gid_t ng, mode_t m,
                       dev_t rdev)
{
	int r = set_vstat(ov, n->ufd, nu, ng, m, rdev);
	if (!r) {
		n->vstat = true;
		n->v_uid = nu;
		n->v_gid = ng;
		n->v_mode = m;
		n->v_rdev = rdev;
	}
	return r;
}

OCITREE_EXPORT int ocitree_overlay_setattr(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n,
                                           const struct stat *attr, unsigned to_set, int hfd)
{
	enum ocitree_overlay_cu cu = OCITREE_OVERLAY_CU_META;
	if (to_set & OCITREE_OVERLAY_SET_SIZE)
		cu = attr->st_size == 0 ? OCITREE_OVERLAY_CU_EMPTY : OCITREE_OVERLAY_CU_DATA;
	int r = ocitree_overlay_copy_up(ov, n, cu);
	if (r)
		return r;
	struct upath p;
	upath_fd(&p, n->ufd);
	if (to_set & (OCITREE_OVERLAY_SET_UID | OCITREE_OVERLAY_SET_GID)) {
		uid_t uid = (to_set & OCITREE_OVERLAY_SET_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (to_set & OCITREE_OVERLAY_SET_GID) ? attr->st_gid : (gid_t)-1;
		if (ov->fmt.virtual_owners) {
			if (!S_ISLNK(n->type)) {
				struct stat st;
				r = ocitree_overlay_stat(ov, n, &st);
				if (!r) {
					uid_t nu = uid == (uid_t)-1 ? st.st_uid : uid;
					gid_t ng = gid == (gid_t)-1 ? st.st_gid : gid;
					mode_t m = st.st_mode;
					/* as chown(2) does for a regular file */
					if (S_ISREG(m) && !(to_set & OCITREE_OVERLAY_SET_MODE))
						m &= ~(S_ISUID | ((m & S_IXGRP) ? S_ISGID : 0));
					r = set_virtual(ov, n, nu, ng, m, st.st_rdev);
				}
			}
		} else if (fchownat(n->ufd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
			r = errno;
		}
	}
	if (!r && (to_set & OCITREE_OVERLAY_SET_MODE) && !S_ISLNK(n->type)) {
		if (ov->fmt.virtual_owners) {
			struct stat st;
			r = ocitree_overlay_stat(ov, n, &st);
			mode_t m = (st.st_mode & S_IFMT) | (attr->st_mode & 07777);
			if (!r && chmod(p.path, real_perm(ov, m)) < 0)
				r = errno;
			if (!r)
				r = set_virtual(ov, n, st.st_uid, st.st_gid, m, st.st_rdev);
		} else if (chmod(p.path, attr->st_mode & 07777) < 0) {
			r = errno;
		}
	}
	if (!r && (to_set & OCITREE_OVERLAY_SET_SIZE)) {
		if (hfd >= 0) {
			if (ftruncate(hfd, attr->st_size) < 0)
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
	if (!r && (to_set & (OCITREE_OVERLAY_SET_ATIME | OCITREE_OVERLAY_SET_MTIME | OCITREE_OVERLAY_SET_ATIME_NOW |
	                     OCITREE_OVERLAY_SET_MTIME_NOW))) {
		struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
		if (to_set & OCITREE_OVERLAY_SET_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		else if (to_set & OCITREE_OVERLAY_SET_ATIME)
			ts[0] = attr->st_atim;
		if (to_set & OCITREE_OVERLAY_SET_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		else if (to_set & OCITREE_OVERLAY_SET_MTIME)
			ts[1] = attr->st_mtim;
		if (utimensat(n->ufd, "", ts, AT_EMPTY_PATH) < 0)
			r = errno;
	}
	if (!r && (to_set & OCITREE_OVERLAY_SET_CTIME) && !(to_set & ~OCITREE_OVERLAY_SET_CTIME)) {
		/* ctime alone: touch it the only way there is */
		struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
		utimensat(n->ufd, "", ts, AT_EMPTY_PATH);
	}
	return r;
}

OCITREE_EXPORT int ocitree_overlay_setxattr(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n, const char *name,
                                            const void *value, size_t size, int flags)
{
	int r = ocitree_overlay_copy_up(ov, n, OCITREE_OVERLAY_CU_META);
	if (r)
		return r;
	_cleanup_free_ char *uname = upper_xattr_escape(&ov->fmt, name);
	struct upath p;
	upath_fd(&p, n->ufd);
	return upath_setxattr(&p, uname, value, size, flags) < 0 ? errno : 0;
}

OCITREE_EXPORT int ocitree_overlay_removexattr(struct ocitree_overlay *ov, struct ocitree_overlay_obj *n,
                                               const char *name)
{
	/* nothing to copy up for a name the file does not have */
	if (n->ufd < 0 && !overlay_lower_xattr(n, name, NULL, NULL))
		return ENODATA;
	int r = ocitree_overlay_copy_up(ov, n, OCITREE_OVERLAY_CU_META);
	if (r)
		return r;
	_cleanup_free_ char *uname = upper_xattr_escape(&ov->fmt, name);
	struct upath p;
	upath_fd(&p, n->ufd);
	return upath_removexattr(&p, uname) < 0 ? errno : 0;
}
