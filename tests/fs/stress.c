/* SPDX-License-Identifier: Apache-2.0 */
/*
 * File system stress, printed as TAP:
 *
 *   stress fsx DIR FILE SECONDS SEED      random writes, reads, truncates,
 *                                         reopens and fsyncs of DIR/FILE,
 *                                         checked against a copy in memory
 *                                         after every read and at the end
 *   stress ns DIR SECONDS THREADS SEED    threads creating, renaming,
 *                                         linking, unlinking, making and
 *                                         removing directories over a small
 *                                         set of names, then checks that
 *                                         every name of an inode shows the
 *                                         same data and st_nlink counts them
 *   stress check DIR                      only the final check of ns (after
 *                                         a remount)
 *
 * FILE may exist (an image file: the first write copies it up).  Nothing
 * here uses mmap.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int ntests, nfail;

static void check(bool pass, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool pass, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	ntests++;
	if (!pass)
		nfail++;
	printf("%s %d - ", pass ? "ok" : "not ok", ntests);
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_next(uint64_t *s)
{
	/* splitmix64 */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t *s, uint64_t n)
{
	return n ? rng_next(s) % n : 0;
}

/* ================================================================ fsx */

#define FSX_MAX (8u << 20)

static int fsx(const char *dir, const char *file, double seconds, uint64_t seed)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	if (dfd < 0)
		return perror(dir), 1;
	int fd = openat(dfd, file, O_RDWR | O_CREAT, 0644);
	if (fd < 0)
		return perror(file), 1;
	unsigned char *model = calloc(1, FSX_MAX), *buf = malloc(FSX_MAX);
	struct stat st;
	fstat(fd, &st);
	size_t size = (size_t)st.st_size;
	if (size > FSX_MAX)
		size = FSX_MAX;
	/* the model starts as what the file holds (an image file's data) */
	if (pread(fd, model, size, 0) != (ssize_t)size)
		return fprintf(stderr, "initial read failed\n"), 1;
	uint64_t s = seed;
	unsigned long ops = 0, reads = 0, writes = 0, truncs = 0, reopens = 0, bad = 0;
	double end = now() + seconds;
	while (now() < end && bad == 0) {
		ops++;
		unsigned op = (unsigned)rnd(&s, 100);
		if (op < 40) {
			/* write */
			size_t off = (size_t)rnd(&s, FSX_MAX - 1);
			size_t len = 1 + (size_t)rnd(&s, rnd(&s, 4) == 0 ? 1u << 20 : 8192);
			if (off + len > FSX_MAX)
				len = FSX_MAX - off;
			for (size_t i = 0; i < len; i++)
				buf[i] = (unsigned char)(ops + i * 31);
			if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len) {
				check(false, "fsx: write %zu at %zu: %s", len, off, strerror(errno));
				bad++;
				break;
			}
			memcpy(model + off, buf, len);
			if (off + len > size)
				size = off + len;
			writes++;
		} else if (op < 75) {
			/* read and compare */
			size_t off = size ? (size_t)rnd(&s, size) : 0;
			size_t len = 1 + (size_t)rnd(&s, 65536);
			if (off + len > size)
				len = size - off;
			ssize_t r = pread(fd, buf, len, (off_t)off);
			if (r != (ssize_t)len || memcmp(buf, model + off, len) != 0) {
				size_t at = 0;
				while (r > 0 && at < (size_t)r && buf[at] == model[off + at])
					at++;
				check(false, "fsx: op %lu: read %zu at %zu got %zd bytes, first difference at %zu", ops,
				      len, off, r, off + at);
				bad++;
			}
			reads++;
		} else if (op < 85) {
			/* truncate shorter or longer */
			size_t ns = (size_t)rnd(&s, FSX_MAX);
			if (ftruncate(fd, (off_t)ns) < 0) {
				check(false, "fsx: truncate %zu: %s", ns, strerror(errno));
				bad++;
				break;
			}
			if (ns < size)
				memset(model + ns, 0, size - ns);
			size = ns;
			truncs++;
		} else if (op < 93) {
			/* the size the file system reports */
			fstat(fd, &st);
			if ((size_t)st.st_size != size) {
				check(false, "fsx: op %lu: st_size %jd, expected %zu", ops, (intmax_t)st.st_size, size);
				bad++;
			}
		} else if (op < 98) {
			/* close and open again */
			close(fd);
			fd = openat(dfd, file, rnd(&s, 2) ? O_RDWR : O_RDWR | O_APPEND);
			if (fd < 0) {
				check(false, "fsx: reopen: %s", strerror(errno));
				bad++;
				break;
			}
			if (fcntl(fd, F_GETFL) & O_APPEND) {
				/* one append, then back to positioned writes */
				size_t len = 1 + (size_t)rnd(&s, 100);
				if (size + len <= FSX_MAX) {
					memset(buf, 'A', len);
					if (write(fd, buf, len) != (ssize_t)len) {
						check(false, "fsx: append: %s", strerror(errno));
						bad++;
						break;
					}
					memcpy(model + size, buf, len);
					size += len;
				}
				close(fd);
				fd = openat(dfd, file, O_RDWR);
			}
			reopens++;
		} else {
			fsync(fd);
		}
	}
	if (!bad) {
		fstat(fd, &st);
		ssize_t r = pread(fd, buf, FSX_MAX, 0);
		check(r == (ssize_t)size && (size_t)st.st_size == size && memcmp(buf, model, size) == 0,
		      "fsx: the whole file equals the model at the end (%zu bytes)", size);
	}
	check(bad == 0, "fsx: %lu ops (%lu writes, %lu reads, %lu truncates, %lu reopens), no difference", ops, writes,
	      reads, truncs, reopens);
	close(fd);
	/* a fresh open sees it all too */
	fd = openat(dfd, file, O_RDONLY);
	ssize_t r = fd >= 0 ? pread(fd, buf, FSX_MAX, 0) : -1;
	check(r == (ssize_t)size && memcmp(buf, model, size) == 0, "fsx: a new open reads the same");
	if (fd >= 0)
		close(fd);
	close(dfd);
	free(model);
	free(buf);
	return nfail ? 1 : 0;
}

/* ================================================================ namespace */

#define NS_DIRS 4
#define NS_NAMES 24

struct ns_ctx {
	int dfd;
	double end;
	uint64_t seed;
	atomic_ulong ops, errors;
	atomic_int next_id;
	char unexpected[256];
	pthread_mutex_t lock;
};

static void ns_path(char *buf, size_t n, uint64_t *s)
{
	unsigned d = (unsigned)rnd(s, NS_DIRS + 1);
	unsigned f = (unsigned)rnd(s, NS_NAMES);
	if (d == NS_DIRS)
		snprintf(buf, n, "n%02u", f);
	else
		snprintf(buf, n, "d%u/n%02u", d, f);
}

static void ns_unexpected(struct ns_ctx *c, const char *what, int e)
{
	/* errors a racing namespace explains are fine; anything else is not */
	if (e == ENOENT || e == EEXIST || e == ENOTEMPTY || e == ENOTDIR || e == EISDIR || e == EINVAL ||
	    e == EPERM || e == EBUSY)
		return;
	atomic_fetch_add(&c->errors, 1);
	pthread_mutex_lock(&c->lock);
	if (!c->unexpected[0])
		snprintf(c->unexpected, sizeof(c->unexpected), "%s: %s", what, strerror(e));
	pthread_mutex_unlock(&c->lock);
}

static void *ns_thread(void *arg)
{
	struct ns_ctx *c = arg;
	uint64_t s = c->seed + (uint64_t)pthread_self();
	char a[64], b[64], buf[64];
	while (now() < c->end) {
		ns_path(a, sizeof(a), &s);
		ns_path(b, sizeof(b), &s);
		unsigned op = (unsigned)rnd(&s, 100);
		int r = 0;
		const char *what = "";
		if (op < 25) {
			/* a file whose data names it, so that its names can be checked */
			int id = atomic_fetch_add(&c->next_id, 1);
			int fd = openat(c->dfd, a, O_CREAT | O_EXCL | O_WRONLY, 0644);
			what = "create";
			if (fd >= 0) {
				int len = snprintf(buf, sizeof(buf), "file-%d\n", id);
				if (write(fd, buf, (size_t)len) != len)
					ns_unexpected(c, "write", errno);
				close(fd);
			} else {
				r = -1;
			}
		} else if (op < 45) {
			what = "rename";
			r = renameat(c->dfd, a, c->dfd, b);
		} else if (op < 55) {
			what = "link";
			r = linkat(c->dfd, a, c->dfd, b, 0);
		} else if (op < 70) {
			what = "unlink";
			r = unlinkat(c->dfd, a, 0);
		} else if (op < 76) {
			what = "mkdir";
			r = mkdirat(c->dfd, a, 0755);
		} else if (op < 82) {
			what = "rmdir";
			r = unlinkat(c->dfd, a, AT_REMOVEDIR);
		} else if (op < 86) {
			what = "renameat2";
			r = renameat2(c->dfd, a, c->dfd, b, RENAME_EXCHANGE);
		} else if (op < 93) {
			struct stat st;
			what = "stat";
			r = fstatat(c->dfd, a, &st, AT_SYMLINK_NOFOLLOW);
		} else {
			what = "readdir";
			int fd = openat(c->dfd, rnd(&s, 2) ? "." : "d1", O_RDONLY | O_DIRECTORY);
			if (fd >= 0) {
				DIR *d = fdopendir(fd);
				while (readdir(d))
					;
				closedir(d);
			}
		}
		if (r < 0)
			ns_unexpected(c, what, errno);
		atomic_fetch_add(&c->ops, 1);
	}
	return NULL;
}

static unsigned char d_type_of(mode_t m)
{
	return S_ISDIR(m) ? DT_DIR : S_ISREG(m) ? DT_REG : S_ISLNK(m) ? DT_LNK : DT_UNKNOWN;
}

struct seen {
	ino_t ino;
	nlink_t nlink;
	char data[32];
	int names;
};

static int ns_check(int dfd)
{
	struct seen v[NS_NAMES * (NS_DIRS + 1) * 2];
	size_t n = 0;
	int bad = 0;
	for (int d = -1; d < NS_DIRS; d++) {
		char dn[16];
		snprintf(dn, sizeof(dn), d < 0 ? "." : "d%d", d);
		int fd = openat(dfd, dn, O_RDONLY | O_DIRECTORY);
		if (fd < 0)
			continue;
		DIR *dir = fdopendir(fd);
		struct dirent *de;
		while ((de = readdir(dir))) {
			if (de->d_name[0] == '.' || (d < 0 && de->d_name[0] == 'd'))
				continue;
			struct stat st;
			if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				check(false, "ns: %s/%s is listed but cannot be stat()ed: %s", dn, de->d_name,
				      strerror(errno));
				bad++;
				continue;
			}
			if (d_type_of(st.st_mode) != de->d_type && de->d_type != DT_UNKNOWN) {
				check(false, "ns: %s/%s: d_type %d but st_mode %o", dn, de->d_name, de->d_type,
				      st.st_mode);
				bad++;
			}
			if (!S_ISREG(st.st_mode))
				continue;
			char data[32] = {0};
			int f = openat(dirfd(dir), de->d_name, O_RDONLY);
			if (f < 0 || read(f, data, sizeof(data) - 1) < 0) {
				check(false, "ns: read %s/%s: %s", dn, de->d_name, strerror(errno));
				bad++;
			}
			if (f >= 0)
				close(f);
			size_t i;
			for (i = 0; i < n && v[i].ino != st.st_ino; i++)
				;
			if (i == n) {
				if (n == sizeof(v) / sizeof(*v))
					continue;
				v[n++] = (struct seen){st.st_ino, st.st_nlink, "", 0};
				memcpy(v[i].data, data, sizeof(v[i].data));
			} else if (strcmp(v[i].data, data) != 0) {
				check(false, "ns: two names of inode %ju hold different data ('%s', '%s')",
				      (uintmax_t)st.st_ino, v[i].data, data);
				bad++;
			} else if (v[i].nlink != st.st_nlink) {
				check(false, "ns: two names of inode %ju report nlink %ju and %ju", (uintmax_t)st.st_ino,
				      (uintmax_t)v[i].nlink, (uintmax_t)st.st_nlink);
				bad++;
			}
			v[i].names++;
		}
		closedir(dir);
	}
	for (size_t i = 0; i < n; i++) {
		if ((nlink_t)v[i].names != v[i].nlink) {
			check(false, "ns: inode %ju ('%.*s') has %d names but st_nlink %ju", (uintmax_t)v[i].ino,
			      (int)strcspn(v[i].data, "\n"), v[i].data, v[i].names, (uintmax_t)v[i].nlink);
			bad++;
		}
	}
	check(bad == 0, "ns: %zu files: names, data and st_nlink agree", n);
	return bad;
}

static int ns(const char *dir, double seconds, int threads, uint64_t seed)
{
	struct ns_ctx c = {.seed = seed};
	pthread_mutex_init(&c.lock, NULL);
	c.dfd = open(dir, O_RDONLY | O_DIRECTORY);
	if (c.dfd < 0)
		return perror(dir), 1;
	for (int d = 0; d < NS_DIRS; d++) {
		char dn[16];
		snprintf(dn, sizeof(dn), "d%d", d);
		mkdirat(c.dfd, dn, 0755);
	}
	c.end = now() + seconds;
	pthread_t t[64];
	if (threads > 64)
		threads = 64;
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, ns_thread, &c);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	check(atomic_load(&c.errors) == 0, "ns: %lu operations in %d threads, no unexpected error%s%s",
	      atomic_load(&c.ops), threads, c.unexpected[0] ? ": " : "", c.unexpected);
	ns_check(c.dfd);
	close(c.dfd);
	return nfail ? 1 : 0;
}

int main(int argc, char **argv)
{
	int r;
	if (argc == 6 && strcmp(argv[1], "fsx") == 0)
		r = fsx(argv[2], argv[3], atof(argv[4]), strtoull(argv[5], NULL, 0));
	else if (argc == 6 && strcmp(argv[1], "ns") == 0)
		r = ns(argv[2], atof(argv[3]), atoi(argv[4]), strtoull(argv[5], NULL, 0));
	else if (argc == 3 && strcmp(argv[1], "check") == 0) {
		int dfd = open(argv[2], O_RDONLY | O_DIRECTORY);
		r = dfd < 0 ? 1 : ns_check(dfd) != 0;
	} else {
		fprintf(stderr, "usage: stress fsx DIR FILE SECONDS SEED | ns DIR SECONDS THREADS SEED | check DIR\n");
		return 2;
	}
	printf("1..%d\n", ntests);
	return r;
}
