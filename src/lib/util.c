/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The library's file helpers of util.h: bounded whole-file reads, atomic
 * replacement of a file in a directory (temporary file, fsync, rename,
 * fsync of the directory), directories opened without leaving a root
 * (unpack and build both resolve image paths that way), and the inode ->
 * path map.
 */
#include "config.h"

#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#ifdef HAVE_LINUX_OPENAT2_H
#include <linux/openat2.h>
#endif

#include "util.h"

int read_file_at(int dirfd, const char *name, size_t max, struct buf *out, const char *what,
		 struct ocitree_error **err)
{
	/* O_NONBLOCK: a FIFO put in place of the file is an error, not a wait
	 * for a writer that never comes */
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND, "open %s '%s': No such file or directory",
						  what, name);
		return ocitree_error_set(err, errno, "open %s '%s'", what, name);
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return ocitree_error_set(err, errno, "stat %s '%s'", what, name);
	if (!S_ISREG(st.st_mode))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s '%s' is not a regular file", what, name);
	if ((uint64_t)st.st_size > max)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s '%s' is too large (%jd bytes, limit %zu)",
					  what, name, (intmax_t)st.st_size, max);
	buf_reset(out);
	for (;;) {
		buf_reserve(out, 65536);
		ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return ocitree_error_set(err, errno, "read %s '%s'", what, name);
		}
		if (n == 0)
			break;
		out->len += (size_t)n;
		if (out->len > max)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s '%s' is too large (limit %zu bytes)",
						  what, name, max);
	}
	out->data[out->len] = '\0';
	return 0;
}

int open_tmpfile_at(int dirfd, const char *tag, char **name, struct ocitree_error **err)
{
	static const char chars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	for (int attempt = 0; attempt < 100; attempt++) {
		char rnd[13];
		unsigned char raw[12];
		int urfd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
		if (urfd < 0 || read_full(urfd, raw, sizeof(raw)) != (ssize_t)sizeof(raw)) {
			/* fall back on time and pid: names only need to be unique */
			uint64_t x = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20) ^ (uint64_t)attempt * 7919u;
			for (size_t i = 0; i < sizeof(raw); i++, x = x * 6364136223846793005ULL + 1)
				raw[i] = (unsigned char)(x >> 33);
		}
		if (urfd >= 0)
			close(urfd);
		for (size_t i = 0; i < 12; i++)
			rnd[i] = chars[raw[i] % (sizeof(chars) - 1)];
		rnd[12] = '\0';
		char *n = xasprintf(OCITREE_TMP_PREFIX "%s.%s", tag, rnd);
		int fd = openat(dirfd, n, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd >= 0) {
			*name = n;
			return fd;
		}
		int e = errno;
		free(n);
		if (e != EEXIST)
			return ocitree_error_set(err, e, "create temporary file for %s", tag);
	}
	return ocitree_error_set(err, EEXIST, "create temporary file for %s", tag);
}

int fsync_dir_at(int dirfd, const char *name)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	return fsync(fd);
}

static int write_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode, uid_t uid, gid_t gid,
			bool sync, struct ocitree_error **err);

int write_file_atomic_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			 struct ocitree_error **err)
{
	return write_atomic(dirfd, name, data, len, mode, (uid_t)-1, (gid_t)-1, true, err);
}

int write_file_nosync_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			 struct ocitree_error **err)
{
	return write_atomic(dirfd, name, data, len, mode, (uid_t)-1, (gid_t)-1, false, err);
}

int write_file_atomic_owned_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode, uid_t uid,
			       gid_t gid, struct ocitree_error **err)
{
	return write_atomic(dirfd, name, data, len, mode, uid, gid, true, err);
}

static int write_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode, uid_t uid, gid_t gid,
			bool sync, struct ocitree_error **err)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = open_tmpfile_at(dirfd, "file", &tmp, err);
	if (fd < 0)
		return -1;
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchown(fd, uid, gid) < 0) {
		int e = errno;
		unlinkat(dirfd, tmp, 0);
		return ocitree_error_set(err, e, "give '%s' to %jd:%jd", name, (intmax_t)uid, (intmax_t)gid);
	}
	if (write_all(fd, data, len) < 0 || fchmod(fd, mode) < 0 || (sync && fsync(fd) < 0)) {
		int e = errno;
		unlinkat(dirfd, tmp, 0);
		return ocitree_error_set(err, e, "write '%s'", name);
	}
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		int e = errno;
		unlinkat(dirfd, tmp, 0);
		return ocitree_error_set(err, e, "replace '%s'", name);
	}
	if (sync && fsync(dirfd) < 0 && errno != EINVAL)
		return ocitree_error_set(err, errno, "sync directory of '%s'", name);
	return 0;
}

int open_dir_in_root_at(int rootfd, const char *path, bool in_root)
{
#if defined(HAVE_LINUX_OPENAT2_H) && defined(SYS_openat2)
	/* set once openat2() failed with ENOSYS or EPERM, so that an unpack of
	 * many entries does not try it again for each */
	static atomic_bool no_openat2;
	if (!atomic_load_explicit(&no_openat2, memory_order_relaxed)) {
		struct open_how how = {
			.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
			.resolve = RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV |
				   (in_root ? RESOLVE_IN_ROOT : RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS),
		};
		int fd = (int)syscall(SYS_openat2, rootfd, *path ? path : ".", &how, sizeof(how));
		if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
			return fd;
		atomic_store_explicit(&no_openat2, true, memory_order_relaxed);
	}
#else
	(void)in_root;
#endif
	/* component by component, never following a symlink */
	int fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	_cleanup_free_ char *copy = xstrdup(path);
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c && fd >= 0; c = strtok_r(NULL, "/", &save)) {
		int next = openat(fd, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		close(fd);
		errno = e;
		fd = next;
	}
	return fd;
}

/* ---- inode map ---- */

static struct inomap_ent *inomap_slot(const struct inomap *m, uint64_t ino)
{
	size_t i = (size_t)(ino * 0x9e3779b97f4a7c15ULL) & (m->cap - 1);
	while (m->v[i].path && m->v[i].ino != ino)
		i = (i + 1) & (m->cap - 1);
	return &m->v[i];
}

void inomap_put(struct inomap *m, uint64_t ino, const char *path)
{
	if ((m->n + 1) * 2 > m->cap) {
		struct inomap nm = {.cap = m->cap ? m->cap * 2 : 64, .n = m->n};
		nm.v = xcalloc(nm.cap, sizeof(*nm.v));
		for (size_t i = 0; i < m->cap; i++)
			if (m->v[i].path)
				*inomap_slot(&nm, m->v[i].ino) = m->v[i];
		free(m->v);
		*m = nm;
	}
	struct inomap_ent *e = inomap_slot(m, ino);
	if (e->path)
		return;
	e->ino = ino;
	e->path = xstrdup(path);
	m->n++;
}

const char *inomap_get(const struct inomap *m, uint64_t ino)
{
	return m->cap ? inomap_slot(m, ino)->path : NULL;
}

void inomap_free(struct inomap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->v[i].path);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

void madvise_within(const void *p, size_t len, int advice)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), b = ((uintptr_t)p + len) & ~(page - 1);
	if (b > a)
		(void)madvise((void *)a, b - a, advice);
}
