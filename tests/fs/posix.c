/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A POSIX conformance suite in the spirit of pjdfstest: error codes and edge
 * cases of every operation a package manager or a build uses, run in a
 * directory and printed as TAP.
 *
 *   posix --fixture-spec            the fixture as a tests/fs/mkimage.py spec
 *   posix --make-fixture DIR        make the fixture natively in DIR
 *   posix DIR                       run the suite in DIR (which holds the
 *                                   fixture, as an image's lower layer or
 *                                   made natively), as root
 *
 * The fixture ("fx/...") is what the suite changes that existed before: on
 * a writable mount it is the image, so those tests cover copy-up, whiteouts
 * and opaque directories; on a native directory (tmpfs, ext4) the same
 * tests check the suite itself.  New objects go to "new/".  Permission tests
 * run in a child that drops to uid/gid 65534.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE (1 << 1)
#endif

static int D = -1; /* the directory under test */
/* --fakeroot: a rootless writable mount, where the user acts as root over
 * virtual owners: new files belong to 0:0 and symlinks keep no owner */
static bool fakeroot;
static int ntests, nfail;

static void result(bool pass, int line, const char *fmt, va_list ap)
{
	ntests++;
	if (!pass)
		nfail++;
	printf("%s %d - ", pass ? "ok" : "not ok", ntests);
	vprintf(fmt, ap);
	printf(" (line %d)\n", line);
	fflush(stdout);
}

static void check_(bool pass, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void check_(bool pass, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	result(pass, line, fmt, ap);
	va_end(ap);
}
#define CHECK(cond, ...) check_((cond), __LINE__, __VA_ARGS__)

/* A call that must succeed (returns >= 0). */
#define OK(call)                                                                                                   \
	({                                                                                                         \
		errno = 0;                                                                                         \
		long _r = (long)(call);                                                                            \
		int _e = errno;                                                                                    \
		check_(_r >= 0, __LINE__, "%s%s%s", #call, _r < 0 ? ": " : "", _r < 0 ? strerror(_e) : "");      \
		_r;                                                                                                \
	})
/* A call that must fail with errno e. */
#define ERR(call, e)                                                                                               \
	({                                                                                                         \
		errno = 0;                                                                                         \
		long _r = (long)(call);                                                                            \
		int _e = errno;                                                                                    \
		check_(_r < 0 && _e == (e), __LINE__, "%s fails with %s%s%s", #call, #e, _r < 0 ? ", got " : "",  \
		       _r < 0 ? strerror(_e) : ", but it succeeded");                                              \
		if (_r >= 0 && (e) != 0)                                                                           \
			close_if_fd(#call, _r);                                                                    \
	})

static const char *BASE; /* its path, for the calls without an *at form */

static char *full(const char *path)
{
	static __thread char buf[PATH_MAX * 2];
	snprintf(buf, sizeof(buf), "%s/%s", BASE, path);
	return buf;
}

static ssize_t getxattr_at(const char *path, const char *name, void *v, size_t n)
{
	return lgetxattr(full(path), name, v, n);
}

static int setxattr_at(const char *path, const char *name, const void *v, size_t n, int flags)
{
	return lsetxattr(full(path), name, v, n, flags);
}

static ssize_t listxattr_at(const char *path, char *list, size_t n)
{
	return llistxattr(full(path), list, n);
}

static int removexattr_at(const char *path, const char *name)
{
	return lremovexattr(full(path), name);
}

static int truncateat_helper(const char *path, off_t len);

static void close_if_fd(const char *call, long r)
{
	if (strncmp(call, "openat", 6) == 0 && r > 2)
		close((int)r);
}

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void diag(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("# ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
}

static struct stat st_of(const char *path)
{
	struct stat st;
	memset(&st, 0, sizeof(st));
	if (fstatat(D, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
		st.st_mode = 0;
	return st;
}

static bool exists(const char *path)
{
	struct stat st;
	return fstatat(D, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static char *read_all(const char *path, size_t *len)
{
	int fd = openat(D, path, O_RDONLY);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, n = 0;
	char *b = malloc(cap + 1);
	for (;;) {
		if (n == cap)
			b = realloc(b, (cap *= 2) + 1);
		ssize_t r = read(fd, b + n, cap - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	b[n] = '\0';
	if (len)
		*len = n;
	return b;
}

static bool content_is(const char *path, const char *want)
{
	size_t n;
	char *b = read_all(path, &n);
	bool r = b && n == strlen(want) && memcmp(b, want, n) == 0;
	if (!r)
		diag("%s holds '%.60s'", path, b ? b : "(unreadable)");
	free(b);
	return r;
}

static int write_file(const char *path, const char *data, mode_t mode)
{
	int fd = openat(D, path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, data, strlen(data));
	close(fd);
	return w == (ssize_t)strlen(data) ? 0 : -1;
}

static bool ts_after(struct timespec a, struct timespec b)
{
	return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec > b.tv_nsec);
}

static void pause_tick(void)
{
	/* timestamps must be able to move */
	struct timespec ts = {0, 20 * 1000 * 1000};
	nanosleep(&ts, NULL);
}

static int count_entries(const char *dir, const char *name, ino_t *ino)
{
	int fd = openat(D, dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return -1;
	DIR *d = fdopendir(fd);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!name || strcmp(de->d_name, name) == 0) {
			n++;
			if (ino)
				*ino = de->d_ino;
		}
	}
	closedir(d);
	return n;
}

/* ================================================================ the fixture */

struct fx {
	const char *kind; /* dir file symlink hardlink fifo chr */
	const char *path;
	unsigned mode, uid, gid;
	const char *content; /* text for files, target for links */
	const char *xattr;   /* "name=value" or NULL */
};

#define BIG_SIZE 3000000
static const struct fx fixture[] = {
	{"dir", "fx", 0755, 0, 0, NULL, NULL},
	{"dir", "fx/cu", 0755, 0, 0, NULL, NULL},
	{"file", "fx/cu/chmod", 0644, 0, 0, "chmod me\n", NULL},
	{"file", "fx/cu/chown", 0644, 0, 0, "chown me\n", NULL},
	{"file", "fx/cu/write", 0644, 0, 0, "0123456789abcdef\n", NULL},
	{"file", "fx/cu/trunc", 0644, 0, 0, "truncate me\n", NULL},
	{"file", "fx/cu/grow", 0644, 0, 0, "grow\n", NULL},
	{"file", "fx/cu/otrunc", 0644, 0, 0, "o_trunc\n", NULL},
	{"file", "fx/cu/append", 0644, 0, 0, "line1\n", NULL},
	{"file", "fx/cu/utime", 0644, 0, 0, "utime\n", NULL},
	{"file", "fx/cu/xattr", 0644, 0, 0, "xattr\n", "user.k=lower"},
	{"file", "fx/cu/keepx", 0644, 0, 0, "keepx\n", "user.keep=yes"},
	{"file", "fx/cu/big", 0644, 0, 0, "@big", NULL},
	{"file", "fx/cu/mmap", 0644, 0, 0, "mmap contents here\n", NULL},
	{"file", "fx/cu/readopen", 0644, 0, 0, "before\n", NULL},
	{"file", "fx/cu/suid", 04755, 0, 0, "#!/bin/sh\n", NULL},
	{"symlink", "fx/cu/sym", 0777, 0, 0, "chmod", NULL},
	{"fifo", "fx/cu/fifo", 0644, 0, 0, NULL, NULL},
	{"chr", "fx/cu/null", 0600, 0, 0, "1:3", NULL},
	{"dir", "fx/hl", 0755, 0, 0, NULL, NULL},
	{"file", "fx/hl/a", 0640, 0, 0, "hardlinked\n", NULL},
	{"hardlink", "fx/hl/b", 0, 0, 0, "fx/hl/a", NULL},
	{"file", "fx/hl/c", 0640, 0, 0, "three names\n", NULL},
	{"hardlink", "fx/hl/d", 0, 0, 0, "fx/hl/c", NULL},
	{"dir", "fx/hl/sub", 0755, 0, 0, NULL, NULL},
	{"hardlink", "fx/hl/sub/e", 0, 0, 0, "fx/hl/c", NULL},
	{"file", "fx/hl/u1", 0644, 0, 0, "unlink one name\n", NULL},
	{"hardlink", "fx/hl/u2", 0, 0, 0, "fx/hl/u1", NULL},
	{"file", "fx/hl/r1", 0644, 0, 0, "renamed over\n", NULL},
	{"hardlink", "fx/hl/r2", 0, 0, 0, "fx/hl/r1", NULL},
	{"file", "fx/hl/o1", 0644, 0, 0, "order\n", NULL},
	{"hardlink", "fx/hl/o2", 0, 0, 0, "fx/hl/o1", NULL},
	{"dir", "fx/unl", 0755, 0, 0, NULL, NULL},
	{"file", "fx/unl/open", 0644, 0, 0, "still readable\n", NULL},
	{"file", "fx/unl/gone", 0644, 0, 0, "gone\n", NULL},
	{"dir", "fx/ren", 0755, 0, 0, NULL, NULL},
	{"file", "fx/ren/file", 0644, 0, 0, "move me\n", NULL},
	{"file", "fx/ren/target", 0644, 0, 0, "replaced\n", NULL},
	{"dir", "fx/ren/dir", 0755, 0, 0, NULL, NULL},
	{"dir", "fx/ren/dir/sub", 0755, 0, 0, NULL, NULL},
	{"file", "fx/ren/dir/sub/x", 0644, 0, 0, "x\n", NULL},
	{"file", "fx/ren/dir/y", 0600, 0, 0, "y\n", NULL},
	{"file", "fx/ren/dir/gone", 0600, 0, 0, "removed before the move\n", NULL},
	{"dir", "fx/ren/empty", 0755, 0, 0, NULL, NULL},
	{"dir", "fx/ren/full", 0755, 0, 0, NULL, NULL},
	{"file", "fx/ren/full/f", 0644, 0, 0, "f\n", NULL},
	{"file", "fx/ren/xa", 0644, 0, 0, "xa\n", NULL},
	{"dir", "fx/ren/xb", 0755, 0, 0, NULL, NULL},
	{"file", "fx/ren/xb/z", 0644, 0, 0, "z\n", NULL},
	{"dir", "fx/ren/back", 0755, 0, 0, NULL, NULL},
	{"file", "fx/ren/back/f", 0644, 0, 0, "there and back\n", NULL},
	{"dir", "fx/rm", 0755, 0, 0, NULL, NULL},
	{"dir", "fx/rm/dir", 0755, 0, 0, NULL, NULL},
	{"file", "fx/rm/dir/a", 0644, 0, 0, "a\n", NULL},
	{"dir", "fx/rm/dir/sub", 0755, 0, 0, NULL, NULL},
	{"file", "fx/rm/dir/sub/b", 0644, 0, 0, "b\n", NULL},
	{"dir", "fx/rm/empty", 0755, 0, 0, NULL, NULL},
	{"dir", "fx/rm/notempty", 0755, 0, 0, NULL, NULL},
	{"file", "fx/rm/notempty/f", 0644, 0, 0, "f\n", NULL},
	{"dir", "fx/perm", 0755, 0, 0, NULL, NULL},
	{"file", "fx/perm/secret", 0600, 0, 0, "secret\n", NULL},
	{"file", "fx/perm/public", 0644, 0, 0, "public\n", NULL},
	{"file", "fx/perm/mine", 0644, 65534, 65534, "mine\n", NULL},
	{"dir", "fx/perm/rodir", 0755, 0, 0, NULL, NULL},
	{"dir", "fx/perm/sticky", 01777, 0, 0, NULL, NULL},
	{"file", "fx/perm/sticky/rootfile", 0666, 0, 0, "root's\n", NULL},
	{"dir", "fx/perm/sgid", 02775, 0, 4242, NULL, NULL},
	{"file", "fx/own", 0644, 1000, 1000, "owned\n", NULL},
};

static void big_content(char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)('a' + (i * 7 + i / 4093) % 26);
}

static void print_spec(void)
{
	printf("layer gzip\n");
	for (size_t i = 0; i < sizeof(fixture) / sizeof(*fixture); i++) {
		const struct fx *f = &fixture[i];
		if (strcmp(f->kind, "dir") == 0)
			printf("dir %s %o %u %u\n", f->path, f->mode, f->uid, f->gid);
		else if (strcmp(f->kind, "file") == 0) {
			if (strcmp(f->content, "@big") == 0) {
				printf("file %s %o %u %u posixbig:%d\n", f->path, f->mode, f->uid, f->gid, BIG_SIZE);
			} else {
				printf("file %s %o %u %u text:", f->path, f->mode, f->uid, f->gid);
				for (const char *c = f->content; *c; c++) {
					if (*c == '\n')
						printf("\\n");
					else
						putchar(*c);
				}
				printf("\n");
			}
		} else if (strcmp(f->kind, "symlink") == 0)
			printf("symlink %s %s\n", f->path, f->content);
		else if (strcmp(f->kind, "hardlink") == 0)
			printf("hardlink %s %s\n", f->path, f->content);
		else if (strcmp(f->kind, "fifo") == 0)
			printf("fifo %s\n", f->path);
		else if (strcmp(f->kind, "chr") == 0) {
			unsigned ma, mi;
			sscanf(f->content, "%u:%u", &ma, &mi);
			printf("chr %s %u %u\n", f->path, ma, mi);
		}
		if (f->xattr) {
			const char *eq = strchr(f->xattr, '=');
			printf("xattr %.*s %s\n", (int)(eq - f->xattr), f->xattr, eq + 1);
		}
	}
}

static int make_fixture(const char *dir)
{
	mkdir(dir, 0755);
	int d = open(dir, O_RDONLY | O_DIRECTORY);
	if (d < 0)
		return perror(dir), 1;
	for (size_t i = 0; i < sizeof(fixture) / sizeof(*fixture); i++) {
		const struct fx *f = &fixture[i];
		int r = 0;
		if (strcmp(f->kind, "dir") == 0) {
			r = mkdirat(d, f->path, 0700);
		} else if (strcmp(f->kind, "file") == 0) {
			int fd = openat(d, f->path, O_WRONLY | O_CREAT | O_EXCL, 0600);
			if (fd < 0)
				return perror(f->path), 1;
			if (strcmp(f->content, "@big") == 0) {
				char *b = malloc(BIG_SIZE);
				big_content(b, BIG_SIZE);
				r = write(fd, b, BIG_SIZE) == BIG_SIZE ? 0 : -1;
				free(b);
			} else {
				r = write(fd, f->content, strlen(f->content)) == (ssize_t)strlen(f->content) ? 0 : -1;
			}
			close(fd);
		} else if (strcmp(f->kind, "symlink") == 0) {
			r = symlinkat(f->content, d, f->path);
		} else if (strcmp(f->kind, "hardlink") == 0) {
			r = linkat(d, f->content, d, f->path, 0);
			continue;
		} else if (strcmp(f->kind, "fifo") == 0) {
			r = mkfifoat(d, f->path, 0600);
		} else if (strcmp(f->kind, "chr") == 0) {
			unsigned ma, mi;
			sscanf(f->content, "%u:%u", &ma, &mi);
			r = mknodat(d, f->path, S_IFCHR | 0600, makedev(ma, mi));
		}
		if (r < 0)
			return perror(f->path), 1;
		if (strcmp(f->kind, "symlink") != 0) {
			if (fchownat(d, f->path, f->uid, f->gid, AT_SYMLINK_NOFOLLOW) < 0 ||
			    fchmodat(d, f->path, f->mode, 0) < 0)
				return perror(f->path), 1;
		}
		if (f->xattr) {
			char name[64];
			const char *eq = strchr(f->xattr, '=');
			snprintf(name, sizeof(name), "%.*s", (int)(eq - f->xattr), f->xattr);
			char p[PATH_MAX];
			snprintf(p, sizeof(p), "%s/%s", dir, f->path);
			if (lsetxattr(p, name, eq + 1, strlen(eq + 1), 0) < 0)
				return perror(p), 1;
		}
	}
	/* mkimage stamps every entry with the same time */
	for (size_t i = sizeof(fixture) / sizeof(*fixture); i-- > 0;) {
		struct timespec ts[2] = {{1700000000, 0}, {1700000000, 0}};
		utimensat(d, fixture[i].path, ts, AT_SYMLINK_NOFOLLOW);
	}
	close(d);
	return 0;
}

/* ================================================================ tests */

static void t_names(void)
{
	char name[1100];
	memset(name, 'n', 255);
	name[255] = '\0';
	char path[1200];
	snprintf(path, sizeof(path), "new/%s", name);
	int fd = OK(openat(D, path, O_CREAT | O_WRONLY | O_EXCL, 0644));
	if (fd >= 0)
		close(fd);
	CHECK(exists(path), "a 255-byte name exists");
	OK(unlinkat(D, path, 0));
	memset(name, 'n', 256);
	name[256] = '\0';
	snprintf(path, sizeof(path), "new/%s", name);
	ERR(openat(D, path, O_CREAT | O_WRONLY, 0644), ENAMETOOLONG);
	ERR(mkdirat(D, path, 0755), ENAMETOOLONG);
	ERR(symlinkat("x", D, path), ENAMETOOLONG);
	ERR(fstatat(D, path, &(struct stat){0}, 0), ENAMETOOLONG);
	ERR(linkat(D, "fx/cu/chmod", D, path, 0), ENAMETOOLONG);
	ERR(renameat(D, "fx/ren/xa", D, path), ENAMETOOLONG);
	ERR(unlinkat(D, path, 0), ENAMETOOLONG);
	ERR(mknodat(D, path, S_IFIFO | 0644, 0), ENAMETOOLONG);
	memset(name, 'n', 1000);
	name[1000] = '\0';
	char longpath[1200];
	snprintf(longpath, sizeof(longpath), "new/%s", name);
	ERR(openat(D, longpath, O_CREAT | O_WRONLY, 0644), ENAMETOOLONG);
}

static void t_pathmax(void)
{
	/* a tree whose deepest path from the test directory is close to
	 * PATH_MAX, built and used relative to directory fds */
	OK(mkdirat(D, "new/deep", 0755));
	int cur = openat(D, "new/deep", O_RDONLY | O_DIRECTORY);
	char comp[201];
	memset(comp, 'd', 200);
	comp[200] = '\0';
	int depth = 0;
	size_t len = strlen("new/deep");
	while (len + 201 < PATH_MAX - 50 && cur >= 0) {
		if (mkdirat(cur, comp, 0755) < 0)
			break;
		int next = openat(cur, comp, O_RDONLY | O_DIRECTORY);
		close(cur);
		cur = next;
		depth++;
		len += 201;
	}
	CHECK(cur >= 0 && depth >= 19, "made %d levels of 200-byte names (%zu bytes of path)", depth, len);
	if (cur < 0)
		return;
	int fd = OK(openat(cur, "leaf", O_CREAT | O_WRONLY, 0644));
	if (fd >= 0) {
		CHECK(write(fd, "deep\n", 5) == 5, "write at the bottom");
		close(fd);
	}
	close(cur);
	/* the full path from D: below PATH_MAX, it works */
	char *p = malloc(PATH_MAX + 300);
	strcpy(p, "new/deep");
	for (int i = 0; i < depth; i++) {
		strcat(p, "/");
		strcat(p, comp);
	}
	strcat(p, "/leaf");
	CHECK(strlen(p) < PATH_MAX, "the path is %zu bytes", strlen(p));
	CHECK(content_is(p, "deep\n"), "read through the whole path");
	struct stat st;
	OK(fstatat(D, p, &st, 0));
	/* one more component crosses PATH_MAX */
	char *q = malloc(PATH_MAX + 600);
	strcpy(q, p);
	*strrchr(q, '/') = '\0';
	while (strlen(q) < PATH_MAX + 10) {
		strcat(q, "/");
		strcat(q, "x");
	}
	ERR(fstatat(D, q, &st, 0), ENAMETOOLONG);
	free(q);
	free(p);
}

static void t_create(void)
{
	struct stat before = st_of("new");
	pause_tick();
	int fd = OK(openat(D, "new/f", O_CREAT | O_RDWR | O_EXCL, 0640));
	if (fd >= 0) {
		CHECK(write(fd, "hello", 5) == 5, "write a new file");
		char b[8] = {0};
		CHECK(pread(fd, b, 5, 0) == 5 && memcmp(b, "hello", 5) == 0, "read it back through the same fd");
		close(fd);
	}
	struct stat st = st_of("new/f");
	CHECK(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0640, "mode 0640 (got %o)", st.st_mode & 07777);
	if (fakeroot)
		CHECK(st.st_uid == 0 && st.st_gid == 0, "owned by root (%u:%u)", st.st_uid, st.st_gid);
	else
		CHECK(st.st_uid == geteuid() && st.st_gid == getegid(), "owned by the creator (%u:%u)", st.st_uid,
		      st.st_gid);
	CHECK(st.st_nlink == 1 && st.st_size == 5, "nlink 1, size 5");
	struct stat after = st_of("new");
	CHECK(ts_after(after.st_mtim, before.st_mtim) && ts_after(after.st_ctim, before.st_ctim),
	      "creating updates the parent's mtime and ctime");
	ERR(openat(D, "new/f", O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);
	ERR(openat(D, "fx/cu/chmod", O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);
	ERR(openat(D, "new/missing/f", O_CREAT | O_WRONLY, 0644), ENOENT);
	ERR(openat(D, "new/f/x", O_CREAT | O_WRONLY, 0644), ENOTDIR);
	ERR(openat(D, "fx/cu/chmod/x", O_RDONLY), ENOTDIR);
	ERR(openat(D, "fx/cu", O_WRONLY), EISDIR);
	ERR(openat(D, "new/f", O_RDONLY | O_DIRECTORY), ENOTDIR);
	ERR(openat(D, "fx/cu/sym", O_RDONLY | O_NOFOLLOW), ELOOP);
	ERR(openat(D, "new/none", O_RDONLY), ENOENT);
	/* O_CREAT without O_EXCL opens what is there */
	fd = OK(openat(D, "new/f", O_CREAT | O_WRONLY | O_APPEND, 0600));
	if (fd >= 0) {
		CHECK(write(fd, "!", 1) == 1, "append");
		close(fd);
	}
	CHECK(content_is("new/f", "hello!"), "O_CREAT on an existing file keeps it; O_APPEND appends");
	fd = OK(openat(D, "new/f", O_WRONLY | O_TRUNC));
	if (fd >= 0)
		close(fd);
	CHECK(st_of("new/f").st_size == 0, "O_TRUNC truncates");
	/* a dangling symlink: O_CREAT makes its target, O_EXCL refuses */
	OK(symlinkat("target", D, "new/dangling"));
	ERR(openat(D, "new/dangling", O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);
	fd = OK(openat(D, "new/dangling", O_CREAT | O_WRONLY, 0644));
	if (fd >= 0)
		close(fd);
	CHECK(S_ISREG(st_of("new/target").st_mode), "O_CREAT through a dangling symlink makes its target");
}

static void t_copyup(void)
{
	struct stat s0 = st_of("fx/cu/chmod");
	OK(fchmodat(D, "fx/cu/chmod", 0600, 0));
	struct stat s1 = st_of("fx/cu/chmod");
	CHECK((s1.st_mode & 07777) == 0600, "chmod of an image file (got %o)", s1.st_mode & 07777);
	CHECK(s1.st_ino == s0.st_ino, "st_ino stays across copy-up (%ju, %ju)", (uintmax_t)s0.st_ino,
	      (uintmax_t)s1.st_ino);
	CHECK(!ts_after(s0.st_ctim, s1.st_ctim) && s1.st_mtim.tv_sec == s0.st_mtim.tv_sec,
	      "chmod changes ctime, not mtime");
	CHECK(content_is("fx/cu/chmod", "chmod me\n"), "the data is still there after a metadata change");
	CHECK(content_is("fx/cu/sym", "chmod me\n"), "a symlink to it reads it");

	OK(fchownat(D, "fx/cu/chown", 1234, 5678, 0));
	struct stat s = st_of("fx/cu/chown");
	CHECK(s.st_uid == 1234 && s.st_gid == 5678, "chown of an image file (%u:%u)", s.st_uid, s.st_gid);
	OK(fchownat(D, "fx/cu/chown", (uid_t)-1, 42, 0));
	s = st_of("fx/cu/chown");
	CHECK(s.st_uid == 1234 && s.st_gid == 42, "chown -1 keeps the owner");
	OK(fchownat(D, "fx/cu/sym", 77, 77, AT_SYMLINK_NOFOLLOW));
	s = st_of("fx/cu/sym");
	if (!fakeroot)
		CHECK(S_ISLNK(s.st_mode) && s.st_uid == 77, "lchown of an image symlink");
	CHECK(st_of("fx/cu/chmod").st_uid == 0, "lchown did not follow the link");

	s0 = st_of("fx/cu/write");
	int fd = OK(openat(D, "fx/cu/write", O_RDWR));
	if (fd >= 0) {
		CHECK(pwrite(fd, "XY", 2, 4) == 2, "write into an image file");
		char b[32] = {0};
		CHECK(pread(fd, b, sizeof(b) - 1, 0) == 17 && strcmp(b, "0123XY6789abcdef\n") == 0,
		      "the write shows in place");
		struct stat fst;
		fstat(fd, &fst);
		CHECK(fst.st_ino == s0.st_ino, "st_ino stays across a data copy-up");
		close(fd);
	}
	CHECK(content_is("fx/cu/write", "0123XY6789abcdef\n"), "and on reopening");

	OK(truncateat_helper("fx/cu/trunc", 4));
	CHECK(content_is("fx/cu/trunc", "trun"), "truncate an image file shorter");
	OK(truncateat_helper("fx/cu/grow", 10));
	size_t n;
	char *b = read_all("fx/cu/grow", &n);
	CHECK(b && n == 10 && memcmp(b, "grow\n\0\0\0\0\0", 10) == 0, "truncate an image file longer: zeros");
	free(b);
	fd = OK(openat(D, "fx/cu/otrunc", O_WRONLY | O_TRUNC));
	if (fd >= 0) {
		CHECK(write(fd, "new", 3) == 3, "write after O_TRUNC");
		close(fd);
	}
	CHECK(content_is("fx/cu/otrunc", "new"), "O_TRUNC of an image file");
	fd = OK(openat(D, "fx/cu/append", O_WRONLY | O_APPEND));
	if (fd >= 0) {
		CHECK(write(fd, "line2\n", 6) == 6, "append to an image file");
		close(fd);
	}
	CHECK(content_is("fx/cu/append", "line1\nline2\n"), "O_APPEND of an image file");

	struct timespec ts[2] = {{1000000000, 5}, {1200000000, 123456789}};
	OK(utimensat(D, "fx/cu/utime", ts, 0));
	s = st_of("fx/cu/utime");
	CHECK(s.st_mtim.tv_sec == 1200000000 && s.st_mtim.tv_nsec == 123456789 && s.st_atim.tv_sec == 1000000000,
	      "utimensat of an image file");
	struct timespec omit[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
	OK(utimensat(D, "fx/cu/utime", omit, 0));
	s = st_of("fx/cu/utime");
	CHECK(s.st_mtim.tv_sec == 1200000000 && s.st_atim.tv_sec > 1200000000, "UTIME_NOW and UTIME_OMIT");
	struct timespec lts[2] = {{1100000000, 0}, {1100000000, 0}};
	OK(utimensat(D, "fx/cu/sym", lts, AT_SYMLINK_NOFOLLOW));
	CHECK(st_of("fx/cu/sym").st_mtim.tv_sec == 1100000000 && st_of("fx/cu/chmod").st_mtim.tv_sec != 1100000000,
	      "utimensat AT_SYMLINK_NOFOLLOW sets the link's times only");

	/* a big file: metadata copy, then a write in the middle */
	OK(fchmodat(D, "fx/cu/big", 0600, 0));
	CHECK(st_of("fx/cu/big").st_size == BIG_SIZE, "a big file keeps its size after chmod");
	fd = OK(openat(D, "fx/cu/big", O_RDWR));
	if (fd >= 0) {
		char *want = malloc(BIG_SIZE);
		big_content(want, BIG_SIZE);
		memcpy(want + 1500000, "MIDDLE", 6);
		CHECK(pwrite(fd, "MIDDLE", 6, 1500000) == 6, "write in the middle of a big image file");
		close(fd);
		size_t got;
		char *data = read_all("fx/cu/big", &got);
		CHECK(data && got == BIG_SIZE && memcmp(data, want, BIG_SIZE) == 0, "every byte of it is right");
		free(data);
		free(want);
	}

	/* a reader opened before the copy-up sees the writes after it */
	int rfd = OK(openat(D, "fx/cu/readopen", O_RDONLY));
	int wfd = OK(openat(D, "fx/cu/readopen", O_WRONLY | O_TRUNC));
	if (rfd >= 0 && wfd >= 0) {
		CHECK(write(wfd, "after\n", 6) == 6, "write through a second fd");
		char rb[16] = {0};
		CHECK(pread(rfd, rb, sizeof(rb) - 1, 0) == 6 && strcmp(rb, "after\n") == 0,
		      "an fd opened before the copy-up reads the new data");
		struct stat a, c;
		fstat(rfd, &a);
		fstat(wfd, &c);
		CHECK(a.st_ino == c.st_ino && a.st_size == 6, "both fds are one file");
	}
	if (rfd >= 0)
		close(rfd);
	if (wfd >= 0)
		close(wfd);

	/* shared mmap */
	fd = OK(openat(D, "fx/cu/mmap", O_RDWR));
	if (fd >= 0) {
		char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		CHECK(m != MAP_FAILED, "mmap an image file shared");
		if (m != MAP_FAILED) {
			CHECK(memcmp(m, "mmap contents", 13) == 0, "mapped data");
			memcpy(m, "MMAP", 4);
			CHECK(msync(m, 4096, MS_SYNC) == 0, "msync");
			munmap(m, 4096);
		}
		close(fd);
		CHECK(content_is("fx/cu/mmap", "MMAP contents here\n"), "the mapped write is in the file");
	}

	/* setuid bit: chown drops it (the kernel asks for it) */
	OK(fchownat(D, "fx/cu/suid", 0, 0, 0));
	s = st_of("fx/cu/suid");
	CHECK(S_ISREG(s.st_mode), "suid file still there (mode %o)", s.st_mode & 07777);

	/* special files */
	OK(fchmodat(D, "fx/cu/fifo", 0600, 0));
	s = st_of("fx/cu/fifo");
	CHECK(S_ISFIFO(s.st_mode) && (s.st_mode & 0777) == 0600, "chmod of an image fifo");
	if (geteuid() == 0 || fakeroot) {
		OK(fchmodat(D, "fx/cu/null", 0666, 0));
		s = st_of("fx/cu/null");
		CHECK(S_ISCHR(s.st_mode) && s.st_rdev == makedev(1, 3) && (s.st_mode & 0777) == 0666,
		      "chmod of an image device keeps it a device");
	}
}

static int truncateat_helper(const char *path, off_t len)
{
	int fd = openat(D, path, O_WRONLY);
	if (fd < 0)
		return -1;
	int r = ftruncate(fd, len);
	close(fd);
	return r;
}

static void t_xattr(void)
{
	char b[64];
	ssize_t n = getxattr_at("fx/cu/xattr", "user.k", b, sizeof(b));
	CHECK(n == 5 && memcmp(b, "lower", 5) == 0, "an image xattr reads");
	OK(setxattr_at("fx/cu/xattr", "user.k", "upper", 5, XATTR_REPLACE));
	n = getxattr_at("fx/cu/xattr", "user.k", b, sizeof(b));
	CHECK(n == 5 && memcmp(b, "upper", 5) == 0, "replace an image xattr");
	ERR(setxattr_at("fx/cu/xattr", "user.k", "x", 1, XATTR_CREATE), EEXIST);
	ERR(setxattr_at("fx/cu/xattr", "user.none", "x", 1, XATTR_REPLACE), ENODATA);
	ERR(getxattr_at("fx/cu/xattr", "user.none", b, sizeof(b)), ENODATA);
	ERR(getxattr_at("fx/cu/xattr", "user.k", b, 2), ERANGE);
	OK(setxattr_at("fx/cu/xattr", "user.second", "2", 1, XATTR_CREATE));
	char list[256];
	n = listxattr_at("fx/cu/xattr", list, sizeof(list));
	bool has_k = false, has_2 = false;
	for (ssize_t off = 0; n > 0 && off < n; off += (ssize_t)strlen(list + off) + 1) {
		has_k |= strcmp(list + off, "user.k") == 0;
		has_2 |= strcmp(list + off, "user.second") == 0;
		CHECK(strstr(list + off, "overlay") == NULL, "listxattr shows no private xattr (%s)", list + off);
	}
	CHECK(has_k && has_2, "listxattr lists both");
	OK(removexattr_at("fx/cu/xattr", "user.k"));
	ERR(getxattr_at("fx/cu/xattr", "user.k", b, sizeof(b)), ENODATA);
	ERR(removexattr_at("fx/cu/xattr", "user.k"), ENODATA);
	/* an image file's xattrs survive a copy-up for another reason */
	OK(fchmodat(D, "fx/cu/keepx", 0600, 0));
	n = getxattr_at("fx/cu/keepx", "user.keep", b, sizeof(b));
	CHECK(n == 3 && memcmp(b, "yes", 3) == 0, "xattrs survive a copy-up");
	/* names in the overlay namespace are plain xattrs to users */
	if (geteuid() == 0) {
		OK(setxattr_at("new/f", "trusted.overlay.opaque", "y", 1, 0));
		n = getxattr_at("new/f", "trusted.overlay.opaque", b, sizeof(b));
		CHECK(n == 1 && b[0] == 'y', "a trusted.overlay.* xattr of a file reads back");
		OK(removexattr_at("new/f", "trusted.overlay.opaque"));
	}
	/* a new file */
	int fd = OK(openat(D, "new/xf", O_CREAT | O_WRONLY, 0644));
	if (fd >= 0) {
		OK(fsetxattr(fd, "user.a", "1", 1, 0));
		close(fd);
	}
	n = getxattr_at("new/xf", "user.a", b, sizeof(b));
	CHECK(n == 1, "xattr of a new file");
}

static void t_unlink(void)
{
	int fd = OK(openat(D, "fx/unl/open", O_RDONLY));
	struct stat dbefore = st_of("fx/unl");
	pause_tick();
	OK(unlinkat(D, "fx/unl/open", 0));
	CHECK(!exists("fx/unl/open"), "an unlinked image file is gone");
	if (fd >= 0) {
		struct stat st;
		fstat(fd, &st);
		CHECK(st.st_nlink == 0, "st_nlink of an unlinked open file is 0 (got %ju)", (uintmax_t)st.st_nlink);
		char b[32] = {0};
		CHECK(pread(fd, b, sizeof(b) - 1, 0) == 15 && strcmp(b, "still readable\n") == 0,
		      "an unlinked open file is still readable");
		close(fd);
	}
	struct stat dafter = st_of("fx/unl");
	CHECK(ts_after(dafter.st_mtim, dbefore.st_mtim), "unlink updates the parent's mtime");
	ERR(unlinkat(D, "fx/unl/open", 0), ENOENT);
	ERR(unlinkat(D, "fx/unl", 0), EISDIR);
	ERR(unlinkat(D, "fx/unl/gone/x", 0), ENOTDIR);
	/* a new file unlinked while open, written afterwards */
	fd = OK(openat(D, "new/tmp", O_CREAT | O_RDWR, 0600));
	OK(unlinkat(D, "new/tmp", 0));
	if (fd >= 0) {
		CHECK(write(fd, "abc", 3) == 3, "write to an unlinked new file");
		struct stat st;
		fstat(fd, &st);
		CHECK(st.st_nlink == 0 && st.st_size == 3, "its nlink is 0 and its size 3");
		close(fd);
	}
	/* re-create a deleted image name */
	OK(unlinkat(D, "fx/unl/gone", 0));
	OK(write_file("fx/unl/gone", "again\n", 0600));
	CHECK(content_is("fx/unl/gone", "again\n"), "a deleted image file made again");
	CHECK(count_entries("fx/unl", "gone", NULL) == 1, "listed once");
	OK(unlinkat(D, "fx/unl/gone", 0));
	CHECK(count_entries("fx/unl", "gone", NULL) == 0, "and gone again");
}

static void t_hardlinks(void)
{
	/* lookup order must not matter: the second name first */
	struct stat o2 = st_of("fx/hl/o2"), o1 = st_of("fx/hl/o1");
	CHECK(o1.st_ino == o2.st_ino && o1.st_nlink == 2 && o2.st_nlink == 2, "an image hardlink: one inode, nlink 2");
	struct stat a = st_of("fx/hl/a");
	int fd = OK(openat(D, "fx/hl/b", O_WRONLY | O_APPEND));
	if (fd >= 0) {
		CHECK(write(fd, "more\n", 5) == 5, "write through one name of an image hardlink");
		close(fd);
	}
	CHECK(content_is("fx/hl/a", "hardlinked\nmore\n"), "the other name sees it");
	struct stat a2 = st_of("fx/hl/a"), b2 = st_of("fx/hl/b");
	CHECK(a2.st_ino == a.st_ino && b2.st_ino == a.st_ino && a2.st_nlink == 2, "same inode, nlink 2 after copy-up");
	OK(fchmodat(D, "fx/hl/d", 0600, 0));
	struct stat c = st_of("fx/hl/c"), e = st_of("fx/hl/sub/e");
	CHECK((c.st_mode & 0777) == 0600 && (e.st_mode & 0777) == 0600 && c.st_nlink == 3 && e.st_ino == c.st_ino,
	      "chmod through one of three names shows through all (nlink %ju)", (uintmax_t)c.st_nlink);
	/* removing one name of an image hardlink */
	OK(unlinkat(D, "fx/hl/u2", 0));
	struct stat u1 = st_of("fx/hl/u1");
	CHECK(u1.st_nlink == 1, "unlink one name of an image hardlink: nlink 1 (got %ju)", (uintmax_t)u1.st_nlink);
	CHECK(content_is("fx/hl/u1", "unlink one name\n"), "the other name keeps the data");
	OK(write_file("new/repl", "replacement\n", 0644));
	OK(renameat(D, "new/repl", D, "fx/hl/r2"));
	CHECK(st_of("fx/hl/r1").st_nlink == 1, "renaming over one name of a hardlink: nlink 1");
	CHECK(content_is("fx/hl/r2", "replacement\n") && content_is("fx/hl/r1", "renamed over\n"),
	      "both names hold the right data");
	/* new links */
	OK(linkat(D, "fx/cu/chmod", D, "new/l1", 0));
	struct stat x = st_of("fx/cu/chmod"), l1 = st_of("new/l1");
	CHECK(x.st_ino == l1.st_ino && x.st_nlink == 2 && l1.st_nlink == 2, "link to an image file: nlink 2");
	OK(write_file("new/h", "h\n", 0644));
	OK(linkat(D, "new/h", D, "new/h2", 0));
	OK(linkat(D, "new/h", D, "fx/h3", 0));
	CHECK(st_of("new/h").st_nlink == 3 && st_of("fx/h3").st_ino == st_of("new/h").st_ino, "three names, one inode");
	OK(unlinkat(D, "new/h2", 0));
	CHECK(st_of("new/h").st_nlink == 2, "nlink back to 2");
	ERR(linkat(D, "new/h", D, "fx/h3", 0), EEXIST);
	ERR(linkat(D, "fx/hl", D, "new/dirlink", 0), EPERM);
	ERR(linkat(D, "new/nothing", D, "new/x", 0), ENOENT);
	/* rename between two names of one file does nothing */
	OK(renameat(D, "new/h", D, "fx/h3"));
	CHECK(exists("new/h") && exists("fx/h3"), "rename of a hardlink onto itself keeps both names");
}

static void t_mkdir_rmdir(void)
{
	struct stat p0 = st_of("new");
	OK(mkdirat(D, "new/d", 0750));
	struct stat d = st_of("new/d"), p1 = st_of("new");
	CHECK(S_ISDIR(d.st_mode) && (d.st_mode & 07777) == 0750 && d.st_nlink == 2, "mkdir: mode 0750, nlink 2");
	CHECK(p1.st_nlink == p0.st_nlink + 1, "mkdir raises the parent's nlink (%ju -> %ju)", (uintmax_t)p0.st_nlink,
	      (uintmax_t)p1.st_nlink);
	ERR(mkdirat(D, "new/d", 0755), EEXIST);
	ERR(mkdirat(D, "fx/cu", 0755), EEXIST);
	ERR(mkdirat(D, "new/none/d", 0755), ENOENT);
	ERR(mkdirat(D, "fx/cu/chmod/d", 0755), ENOTDIR);
	OK(unlinkat(D, "new/d", AT_REMOVEDIR));
	CHECK(st_of("new").st_nlink == p0.st_nlink, "rmdir lowers it again");
	ERR(unlinkat(D, "fx/rm/notempty", AT_REMOVEDIR), ENOTEMPTY);
	ERR(unlinkat(D, "fx/cu/chmod", AT_REMOVEDIR), ENOTDIR);
	ERR(unlinkat(D, "new/none", AT_REMOVEDIR), ENOENT);
	ERR(unlinkat(D, "fx/rm/empty/.", AT_REMOVEDIR), EINVAL);
	struct stat fxrm = st_of("fx/rm");
	OK(unlinkat(D, "fx/rm/empty", AT_REMOVEDIR));
	CHECK(!exists("fx/rm/empty"), "rmdir of an empty image directory");
	CHECK(st_of("fx/rm").st_nlink == fxrm.st_nlink - 1, "its parent's nlink drops");
	/* rm -rf of an image tree, then made again: nothing old shows */
	OK(unlinkat(D, "fx/rm/dir/sub/b", 0));
	OK(unlinkat(D, "fx/rm/dir/sub", AT_REMOVEDIR));
	ERR(unlinkat(D, "fx/rm/dir", AT_REMOVEDIR), ENOTEMPTY);
	OK(unlinkat(D, "fx/rm/dir/a", 0));
	OK(unlinkat(D, "fx/rm/dir", AT_REMOVEDIR));
	CHECK(!exists("fx/rm/dir"), "an image tree removed");
	OK(mkdirat(D, "fx/rm/dir", 0700));
	CHECK(count_entries("fx/rm/dir", NULL, NULL) == 2, "made again, it is empty");
	CHECK(!exists("fx/rm/dir/a") && !exists("fx/rm/dir/sub"), "the old children do not come back");
	OK(mkdirat(D, "fx/rm/dir/sub", 0755));
	CHECK(count_entries("fx/rm/dir/sub", NULL, NULL) == 2 && !exists("fx/rm/dir/sub/b"),
	      "nor in a subdirectory of the same name");
	CHECK((st_of("fx/rm/dir").st_mode & 0777) == 0700, "with the new mode");
	/* a directory removed while it is someone's cwd */
	OK(mkdirat(D, "new/cwd", 0755));
	int dfd = OK(openat(D, "new/cwd", O_RDONLY | O_DIRECTORY));
	OK(unlinkat(D, "new/cwd", AT_REMOVEDIR));
	if (dfd >= 0) {
		struct stat st;
		fstat(dfd, &st);
		CHECK(st.st_nlink == 0, "a removed directory held open has nlink 0 (got %ju)", (uintmax_t)st.st_nlink);
		ERR(openat(dfd, "x", O_CREAT | O_WRONLY, 0644), ENOENT);
		close(dfd);
	}
	/* setgid directories pass their group on */
	if (geteuid() == 0) {
		OK(mkdirat(D, "fx/perm/sgid/sub", 0755));
		struct stat sg = st_of("fx/perm/sgid/sub");
		CHECK(sg.st_gid == 4242 && (sg.st_mode & S_ISGID), "a directory in a setgid directory inherits (%u, %o)",
		      sg.st_gid, sg.st_mode & 07777);
		OK(write_file("fx/perm/sgid/f", "g\n", 0644));
		CHECK(st_of("fx/perm/sgid/f").st_gid == 4242, "so does a file");
	}
}

static void t_rename(void)
{
	struct stat f0 = st_of("fx/ren/file");
	struct stat p0 = st_of("fx/ren");
	pause_tick();
	OK(renameat(D, "fx/ren/file", D, "new/moved"));
	struct stat f1 = st_of("new/moved");
	CHECK(!exists("fx/ren/file") && S_ISREG(f1.st_mode), "rename an image file to another directory");
	CHECK(f1.st_ino == f0.st_ino, "st_ino stays across the rename");
	CHECK(content_is("new/moved", "move me\n"), "with its data");
	CHECK(ts_after(st_of("fx/ren").st_mtim, p0.st_mtim), "the old parent's mtime changes");
	CHECK(count_entries("fx/ren", "file", NULL) == 0, "the old name is not listed");
	/* over an existing file */
	struct stat t0 = st_of("fx/ren/target");
	OK(write_file("new/src", "source\n", 0600));
	struct stat s0 = st_of("new/src");
	int keep = OK(openat(D, "fx/ren/target", O_RDONLY));
	OK(renameat(D, "new/src", D, "fx/ren/target"));
	struct stat t1 = st_of("fx/ren/target");
	CHECK(t1.st_ino == s0.st_ino && t1.st_ino != t0.st_ino, "rename over an image file replaces it");
	CHECK(content_is("fx/ren/target", "source\n"), "with the source's data");
	if (keep >= 0) {
		struct stat kst;
		fstat(keep, &kst);
		CHECK(kst.st_nlink == 0, "the replaced file, still open, has nlink 0 (got %ju)", (uintmax_t)kst.st_nlink);
		char b[16] = {0};
		CHECK(pread(keep, b, 15, 0) == 9 && strcmp(b, "replaced\n") == 0, "and its old data");
		close(keep);
	}
	/* an image directory with content, across directories */
	struct stat d0 = st_of("fx/ren/dir"), x0 = st_of("fx/ren/dir/sub/x");
	OK(unlinkat(D, "fx/ren/dir/gone", 0));
	struct stat np0 = st_of("new"), op0 = st_of("fx/ren");
	OK(renameat(D, "fx/ren/dir", D, "new/dir"));
	CHECK(!exists("fx/ren/dir"), "an image directory renamed away");
	CHECK(st_of("new/dir").st_ino == d0.st_ino && st_of("new/dir/sub/x").st_ino == x0.st_ino,
	      "it and its children keep their inode numbers");
	CHECK(content_is("new/dir/sub/x", "x\n") && content_is("new/dir/y", "y\n"), "its files moved with it");
	CHECK((st_of("new/dir/y").st_mode & 0777) == 0600, "with their modes");
	CHECK(!exists("new/dir/gone"), "what was removed before the move stays removed");
	CHECK(count_entries("new/dir", NULL, NULL) == 4, "it lists ., .., sub and y");
	CHECK(st_of("new").st_nlink == np0.st_nlink + 1 && st_of("fx/ren").st_nlink == op0.st_nlink - 1,
	      "the parents' nlink follow");
	OK(mkdirat(D, "fx/ren/dir", 0755));
	CHECK(count_entries("fx/ren/dir", NULL, NULL) == 2, "a new directory in its old place is empty");
	/* and back: a renamed directory is not merged with what its old name had */
	OK(renameat(D, "fx/ren/back", D, "new/back"));
	OK(renameat(D, "new/back", D, "fx/ren/back"));
	CHECK(content_is("fx/ren/back/f", "there and back\n") && count_entries("fx/ren/back", NULL, NULL) == 3,
	      "a directory renamed and renamed back");
	/* directory over an empty directory, errors */
	OK(renameat(D, "new/dir", D, "fx/ren/empty"));
	CHECK(content_is("fx/ren/empty/sub/x", "x\n"), "a directory over an empty image directory");
	ERR(renameat(D, "fx/ren/empty", D, "fx/ren/full"), ENOTEMPTY);
	ERR(renameat(D, "fx/ren/empty", D, "fx/ren/xa"), ENOTDIR);
	ERR(renameat(D, "fx/ren/xa", D, "fx/ren/full"), EISDIR);
	ERR(renameat(D, "fx/ren/empty", D, "fx/ren/empty/sub/inside"), EINVAL);
	ERR(renameat(D, "fx/ren/none", D, "new/x"), ENOENT);
	ERR(renameat(D, "fx/ren/xa", D, "new/none/x"), ENOENT);
	/* RENAME_NOREPLACE and RENAME_EXCHANGE */
	OK(write_file("new/nr", "nr\n", 0644));
	ERR(renameat2(D, "new/nr", D, "fx/ren/xa", RENAME_NOREPLACE), EEXIST);
	OK(renameat2(D, "new/nr", D, "new/nr2", RENAME_NOREPLACE));
	struct stat xa = st_of("fx/ren/xa"), xb = st_of("fx/ren/xb");
	OK(renameat2(D, "fx/ren/xa", D, "fx/ren/xb", RENAME_EXCHANGE));
	CHECK(S_ISDIR(st_of("fx/ren/xa").st_mode) && S_ISREG(st_of("fx/ren/xb").st_mode),
	      "RENAME_EXCHANGE swaps an image file and an image directory");
	CHECK(st_of("fx/ren/xa").st_ino == xb.st_ino && st_of("fx/ren/xb").st_ino == xa.st_ino, "inodes swapped");
	CHECK(content_is("fx/ren/xa/z", "z\n") && content_is("fx/ren/xb", "xa\n"), "contents swapped");
	ERR(renameat2(D, "fx/ren/xa", D, "new/absent", RENAME_EXCHANGE), ENOENT);
	/* rename to the same name */
	OK(renameat(D, "new/nr2", D, "new/nr2"));
	CHECK(content_is("new/nr2", "nr\n"), "rename onto itself");
	/* a symlink */
	OK(symlinkat("somewhere", D, "new/sl"));
	OK(renameat(D, "new/sl", D, "new/sl2"));
	char lb[32] = {0};
	CHECK(readlinkat(D, "new/sl2", lb, sizeof(lb)) == 9 && strcmp(lb, "somewhere") == 0, "rename a symlink");
}

static void t_symlink_mknod(void)
{
	OK(symlinkat("../fx/cu/chmod", D, "new/s"));
	struct stat st = st_of("new/s");
	CHECK(S_ISLNK(st.st_mode) && st.st_size == 14, "symlink: type and size");
	char b[64] = {0};
	CHECK(readlinkat(D, "new/s", b, sizeof(b)) == 14 && strcmp(b, "../fx/cu/chmod") == 0, "readlink");
	CHECK(readlinkat(D, "fx/cu/sym", b, sizeof(b)) == 5, "readlink of an image symlink");
	ERR(readlinkat(D, "new/f", b, sizeof(b)), EINVAL);
	ERR(symlinkat("x", D, "new/s"), EEXIST);
	char *big = malloc(PATH_MAX + 10);
	memset(big, 'a', PATH_MAX + 5);
	big[PATH_MAX + 5] = '\0';
	ERR(symlinkat(big, D, "new/toolong"), ENAMETOOLONG);
	free(big);
	OK(mkfifoat(D, "new/fifo", 0640));
	st = st_of("new/fifo");
	CHECK(S_ISFIFO(st.st_mode) && (st.st_mode & 0777) == 0640, "mkfifo");
	OK(mknodat(D, "new/regnod", S_IFREG | 0600, 0));
	CHECK(S_ISREG(st_of("new/regnod").st_mode), "mknod of a regular file");
	if (geteuid() == 0) {
		OK(mknodat(D, "new/chr", S_IFCHR | 0600, makedev(1, 7)));
		st = st_of("new/chr");
		CHECK(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 7), "mknod of a character device");
		OK(mknodat(D, "new/blk", S_IFBLK | 0600, makedev(7, 0)));
		CHECK(S_ISBLK(st_of("new/blk").st_mode), "mknod of a block device");
	}
	ERR(mknodat(D, "new/fifo", S_IFIFO | 0600, 0), EEXIST);
}

static void t_truncate_io(void)
{
	OK(write_file("new/t", "0123456789", 0644));
	ERR(truncateat_helper("fx/cu", 0), EISDIR);
	int fd = OK(openat(D, "new/t", O_RDWR));
	if (fd < 0)
		return;
	ERR(ftruncate(fd, -1), EINVAL);
	struct stat a = st_of("new/t");
	pause_tick();
	OK(ftruncate(fd, 3));
	struct stat b = st_of("new/t");
	CHECK(b.st_size == 3 && ts_after(b.st_mtim, a.st_mtim), "ftruncate shrinks and sets mtime");
	/* a sparse file beyond 4 GiB */
	off_t far = (off_t)5 << 30;
	CHECK(pwrite(fd, "end", 3, far) == 3, "write at 5 GiB");
	CHECK(st_of("new/t").st_size == far + 3, "size is 5 GiB + 3");
	char z[4] = {1, 1, 1, 1};
	CHECK(pread(fd, z, 4, 1000) == 4 && !z[0] && !z[3], "the hole reads as zeros");
	CHECK(st_of("new/t").st_blocks < 1000, "and takes no space (%jd blocks)", (intmax_t)st_of("new/t").st_blocks);
	OK(fsync(fd));
	OK(fdatasync(fd));
	int r = fallocate(fd, 0, 0, 8192);
	CHECK(r == 0 || errno == EOPNOTSUPP, "fallocate works or is not supported");
	close(fd);
	int dfd = OK(openat(D, "new", O_RDONLY | O_DIRECTORY));
	if (dfd >= 0) {
		OK(fsync(dfd));
		close(dfd);
	}
	struct statvfs sv;
	OK(fstatvfs(D, &sv));
	CHECK(sv.f_namemax == 255, "statvfs: f_namemax 255 (got %lu)", sv.f_namemax);
	CHECK(!(sv.f_flag & ST_RDONLY) && sv.f_bsize > 0, "statvfs: writable, a block size");
	fd = openat(D, "new", O_TMPFILE | O_RDWR, 0600);
	if (fd >= 0) {
		CHECK(write(fd, "t", 1) == 1, "O_TMPFILE: write");
		close(fd);
	} else {
		CHECK(errno == EOPNOTSUPP || errno == EISDIR, "O_TMPFILE works or is refused cleanly (%s)",
		      strerror(errno));
	}
}

static void t_readdir(void)
{
	/* every entry once, d_ino equal to st_ino, created and removed names
	 * showing at once */
	OK(mkdirat(D, "new/rd", 0755));
	for (int i = 0; i < 300; i++) {
		char p[64];
		snprintf(p, sizeof(p), "new/rd/e%03d", i);
		write_file(p, "", 0644);
	}
	CHECK(count_entries("new/rd", NULL, NULL) == 302, "300 entries listed");
	for (int i = 0; i < 300; i += 2) {
		char p[64];
		snprintf(p, sizeof(p), "new/rd/e%03d", i);
		unlinkat(D, p, 0);
	}
	CHECK(count_entries("new/rd", NULL, NULL) == 152, "150 left after removing half");
	ino_t dino = 0;
	CHECK(count_entries("fx/cu", "chmod", &dino) == 1, "a copied-up file listed once");
	CHECK(dino == st_of("fx/cu/chmod").st_ino, "its d_ino is its st_ino");
	CHECK(count_entries("fx/hl", "u2", NULL) == 0, "a removed image name is not listed");
	/* seekdir/telldir over a changing directory: no entry twice */
	int fd = openat(D, "new/rd", O_RDONLY | O_DIRECTORY);
	DIR *d = fdopendir(fd);
	int seen = 0, dup = 0;
	char names[400][64];
	struct dirent *de;
	while ((de = readdir(d))) {
		for (int i = 0; i < seen; i++)
			dup += strcmp(names[i], de->d_name) == 0;
		if (seen < 400)
			snprintf(names[seen++], 64, "%.60s", de->d_name);
		if (seen == 50)
			write_file("new/rd/added", "", 0644);
	}
	closedir(d);
	CHECK(dup == 0, "no entry listed twice while the directory changes");
}

/* Run fn as uid/gid 65534 in a child; it prints its own TAP lines. */
static void as_nobody(void (*fn)(void))
{
	fflush(stdout);
	int pipefd[2];
	if (pipe(pipefd) < 0)
		return;
	pid_t pid = fork();
	if (pid == 0) {
		close(pipefd[0]);
		if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
			_exit(99);
		int base = ntests;
		fn();
		int counts[2] = {ntests - base, nfail};
		if (write(pipefd[1], counts, sizeof(counts)) != sizeof(counts))
			_exit(98);
		_exit(0);
	}
	close(pipefd[1]);
	int counts[2] = {0, 0};
	int st;
	ssize_t r = read(pipefd[0], counts, sizeof(counts));
	close(pipefd[0]);
	waitpid(pid, &st, 0);
	if (r != sizeof(counts) || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		CHECK(false, "the unprivileged child ran (status %d)", st);
		return;
	}
	ntests += counts[0];
	nfail = counts[1];
}

static void t_perm_child(void)
{
	ERR(openat(D, "fx/perm/secret", O_RDONLY), EACCES);
	ERR(openat(D, "fx/perm/public", O_WRONLY), EACCES);
	int fd = OK(openat(D, "fx/perm/public", O_RDONLY));
	if (fd >= 0)
		close(fd);
	ERR(openat(D, "fx/perm/rodir/f", O_CREAT | O_WRONLY, 0644), EACCES);
	ERR(mkdirat(D, "fx/perm/rodir/d", 0755), EACCES);
	ERR(fchmodat(D, "fx/perm/public", 0666, 0), EPERM);
	ERR(fchownat(D, "fx/perm/mine", 0, 0, 0), EPERM);
	ERR(unlinkat(D, "fx/perm/sticky/rootfile", 0), EPERM);
	ERR(renameat(D, "fx/perm/sticky/rootfile", D, "fx/perm/sticky/x"), EPERM);
	struct timespec ts[2] = {{1, 0}, {1, 0}};
	ERR(utimensat(D, "fx/perm/public", ts, 0), EPERM);
	ERR(setxattr_at("fx/perm/public", "user.x", "1", 1, 0), EACCES);
	/* what the user owns */
	OK(fchmodat(D, "fx/perm/mine", 0600, 0));
	CHECK((st_of("fx/perm/mine").st_mode & 0777) == 0600, "the owner may chmod an image file");
	OK(utimensat(D, "fx/perm/mine", ts, 0));
	fd = OK(openat(D, "fx/perm/sticky/userfile", O_CREAT | O_WRONLY, 0644));
	if (fd >= 0)
		close(fd);
	struct stat st = st_of("fx/perm/sticky/userfile");
	CHECK(st.st_uid == 65534 && st.st_gid == 65534, "a new file belongs to its creator (%u:%u)", st.st_uid, st.st_gid);
	OK(unlinkat(D, "fx/perm/sticky/userfile", 0));
	/* writing a file drops its setuid bit when done by someone else */
}

static void t_perm(void)
{
	if (geteuid() != 0) {
		diag("not root: no permission tests");
		return;
	}
	as_nobody(t_perm_child);
	/* chown of a setuid file by root keeps ... nothing more to check here */
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--fixture-spec") == 0) {
		print_spec();
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "--make-fixture") == 0)
		return make_fixture(argv[2]);
	if (argc == 3 && strcmp(argv[1], "--fakeroot") == 0) {
		fakeroot = true;
		argv++;
		argc--;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: posix --fixture-spec | --make-fixture DIR | [--fakeroot] DIR\n");
		return 2;
	}
	BASE = argv[1];
	D = open(BASE, O_RDONLY | O_DIRECTORY);
	if (D < 0) {
		perror(BASE);
		return 1;
	}
	umask(022);
	if (mkdirat(D, "new", 0755) < 0) {
		perror("new");
		return 1;
	}
	chmod(full("new"), 0777);
	t_names();
	t_pathmax();
	t_create();
	t_copyup();
	t_xattr();
	t_unlink();
	t_hardlinks();
	t_mkdir_rmdir();
	t_rename();
	t_symlink_mknod();
	t_truncate_io();
	t_readdir();
	t_perm();
	printf("1..%d\n", ntests);
	if (nfail)
		printf("# %d of %d failed\n", nfail, ntests);
	return nfail ? 1 : 0;
}
