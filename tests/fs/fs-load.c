/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A bounded load on a mounted image, checked against a reference tree that
 * holds what the image should show:
 *
 *   fs-load [-t SECONDS] [-r READERS] [-w WALKERS] [-s STATTERS]
 *           [-x PREFIX] [-d PREFIX] REF MOUNTPOINT
 *
 * Readers open random files (half of them with O_DIRECT, past the page
 * cache) and read them whole or in random pieces at random offsets; walkers list every directory; statters lstat (and
 * readlink) random paths.  Every byte read, every listing and every stat is
 * compared with REF.  Paths under -x PREFIX are left alone; under
 * -d PREFIX (a layer damaged on purpose) a read may fail with EIO or stop
 * short, and is counted, but data it returns must still be right.  Anything else that
 * differs or fails, or an operation stuck for 30 s (a deadlock), is an
 * error.  Prints one line of counts; exits 0 when all was right.
 */
#define _GNU_SOURCE /* O_DIRECT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *ref, *mnt, *exclude, *damaged;
static char **paths; /* relative, every entry of REF but the root */
static size_t n_paths, cap_paths;
static char **files; /* the regular files among them */
static size_t n_files;
static char **dirs; /* the directories, "" for the root */
static size_t n_dirs;

static atomic_bool stop;
static atomic_bool no_direct; /* O_DIRECT is refused here */
static atomic_ulong reads, read_bytes, eio, listings, stats, errors;
static _Atomic uint64_t last_progress; /* ms, any thread */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void progress(void)
{
	atomic_store(&last_progress, now_ms());
}

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
	/* the first few errors are enough to see what is wrong */
	if (atomic_fetch_add(&errors, 1) >= 20)
		return;
	va_list ap;
	va_start(ap, fmt);
	fputs("fs-load: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static bool has_prefix(const char *p, const char *prefix)
{
	return prefix && strncmp(p, prefix, strlen(prefix)) == 0;
}

static void add(char ***v, size_t *n, size_t *cap, const char *s)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 256;
		*v = realloc(*v, *cap * sizeof(**v));
		if (!*v)
			abort();
	}
	(*v)[(*n)++] = strdup(s);
}

static int collect(const char *p, const struct stat *st, int type, struct FTW *f)
{
	const char *rel = p + strlen(ref);
	while (*rel == '/')
		rel++;
	if (has_prefix(rel, exclude))
		return 0;
	static size_t cap_files, cap_dirs;
	if (*rel)
		add(&paths, &n_paths, &cap_paths, rel);
	if (S_ISREG(st->st_mode))
		add(&files, &n_files, &cap_files, rel);
	else if (S_ISDIR(st->st_mode))
		add(&dirs, &n_dirs, &cap_dirs, rel);
	return 0;
}

static uint64_t rng(uint64_t *x)
{
	*x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
	return *x;
}

static char *join(const char *a, const char *b)
{
	char *s;
	if (asprintf(&s, "%s%s%s", a, *b ? "/" : "", b) < 0)
		abort();
	return s;
}

/* ---- readers ---- */

static void read_check(int mfd, int rfd, const char *rel, uint64_t off, size_t len, char *a, char *b)
{
	ssize_t got = pread(mfd, a, len, (off_t)off);
	progress();
	if (got < 0) {
		if (errno == EIO && has_prefix(rel, damaged)) {
			atomic_fetch_add(&eio, 1);
			return;
		}
		report("read '%s' (%zu at %ju): %s", rel, len, (uintmax_t)off, strerror(errno));
		return;
	}
	ssize_t want = pread(rfd, b, len, (off_t)off);
	atomic_fetch_add(&reads, 1);
	atomic_fetch_add(&read_bytes, (unsigned long)got);
	/* the kernel splits a big read into several requests: when one fails
	 * after others succeeded, read returns what came before it */
	if (got < want && has_prefix(rel, damaged) && memcmp(a, b, (size_t)got) == 0) {
		atomic_fetch_add(&eio, 1);
		return;
	}
	if (want != got || memcmp(a, b, (size_t)got) != 0)
		report("read '%s' (%zu at %ju): %zd bytes that differ from the %zd expected", rel, len, (uintmax_t)off,
		       got, want);
}

static void *reader(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 0x9e3779b97f4a7c15ULL + (uint64_t)time(NULL);
	size_t cap = 1u << 20;
	char *a = NULL, *b = malloc(cap);
	if (posix_memalign((void **)&a, 4096, cap) != 0 || !b)
		abort();
	while (!atomic_load(&stop) && n_files) {
		const char *rel = files[rng(&seed) % n_files];
		char *mp = join(mnt, rel), *rp = join(ref, rel);
		/* half the files bypass the page cache, so that the reads reach
		 * the daemon every time */
		int direct = atomic_load(&no_direct) || rng(&seed) % 2 ? 0 : O_DIRECT;
		int mfd = open(mp, O_RDONLY | O_CLOEXEC | direct), rfd = open(rp, O_RDONLY | O_CLOEXEC);
		if (mfd < 0 && direct && errno == EINVAL) {
			atomic_store(&no_direct, true);
			mfd = open(mp, O_RDONLY | O_CLOEXEC);
		}
		progress();
		struct stat st;
		if (mfd < 0 || rfd < 0 || fstat(rfd, &st) < 0) {
			report("open '%s': %s", rel, strerror(errno));
		} else if (rng(&seed) % 4 == 0) {
			/* the whole file, in pieces of varying size */
			for (uint64_t off = 0; off <= (uint64_t)st.st_size && !atomic_load(&stop);) {
				size_t len = 1 + rng(&seed) % cap;
				read_check(mfd, rfd, rel, off, len, a, b);
				off += len;
			}
		} else {
			for (int i = 0; i < 4; i++) {
				uint64_t off = st.st_size ? rng(&seed) % ((uint64_t)st.st_size + 100) : 0;
				size_t len = 1 + rng(&seed) % (128u << 10);
				read_check(mfd, rfd, rel, off, len, a, b);
			}
		}
		if (mfd >= 0)
			close(mfd);
		if (rfd >= 0)
			close(rfd);
		free(mp), free(rp);
	}
	free(a), free(b);
	return NULL;
}

/* ---- walkers: every listing equals the reference's ---- */

static int cmp(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

static size_t list(const char *path, char ***out)
{
	DIR *d = opendir(path);
	size_t n = 0, cap = 0;
	*out = NULL;
	if (!d)
		return (size_t)-1;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			add(out, &n, &cap, e->d_name);
	closedir(d);
	if (n)
		qsort(*out, n, sizeof(char *), cmp);
	return n;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n && n != (size_t)-1; i++)
		free(v[i]);
	free(v);
}

static void *walker(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 0xff51afd7ed558ccdULL + 1;
	while (!atomic_load(&stop)) {
		/* all directories, from a random starting point */
		size_t start = rng(&seed) % n_dirs;
		for (size_t k = 0; k < n_dirs && !atomic_load(&stop); k++) {
			const char *rel = dirs[(start + k) % n_dirs];
			char *mp = join(mnt, rel), *rp = join(ref, rel);
			char **mv, **rv;
			size_t mn = list(mp, &mv), rn = list(rp, &rv);
			progress();
			atomic_fetch_add(&listings, 1);
			if (mn == (size_t)-1)
				report("list '%s': %s", rel, strerror(errno));
			else if (rn != (size_t)-1) {
				bool same = mn == rn;
				for (size_t i = 0; same && i < mn; i++)
					same = strcmp(mv[i], rv[i]) == 0;
				if (!same)
					report("list '%s': %zu names, %zu expected", rel, mn, rn);
			}
			free_list(mv, mn);
			free_list(rv, rn);
			free(mp), free(rp);
		}
	}
	return NULL;
}

/* ---- statters ---- */

static void *statter(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 0xc4ceb9fe1a85ec53ULL + 7;
	while (!atomic_load(&stop)) {
		const char *rel = paths[rng(&seed) % n_paths];
		char *mp = join(mnt, rel), *rp = join(ref, rel);
		struct stat ms, rs;
		int a = lstat(mp, &ms), b = lstat(rp, &rs);
		progress();
		atomic_fetch_add(&stats, 1);
		if (a < 0 || b < 0) {
			report("lstat '%s': %s", rel, strerror(errno));
		} else if (ms.st_mode != rs.st_mode || ms.st_uid != rs.st_uid || ms.st_gid != rs.st_gid ||
			   (!S_ISDIR(rs.st_mode) && (ms.st_size != rs.st_size || ms.st_nlink != rs.st_nlink)) ||
			   ms.st_mtim.tv_sec != rs.st_mtim.tv_sec) {
			report("lstat '%s': mode %o/%o size %jd/%jd nlink %ju/%ju mtime %jd/%jd", rel, ms.st_mode,
			       rs.st_mode, (intmax_t)ms.st_size, (intmax_t)rs.st_size, (uintmax_t)ms.st_nlink,
			       (uintmax_t)rs.st_nlink, (intmax_t)ms.st_mtim.tv_sec, (intmax_t)rs.st_mtim.tv_sec);
		} else if (S_ISLNK(rs.st_mode)) {
			char x[4096], y[4096];
			ssize_t xl = readlink(mp, x, sizeof(x)), yl = readlink(rp, y, sizeof(y));
			if (xl != yl || xl < 0 || memcmp(x, y, (size_t)xl) != 0)
				report("readlink '%s' differs", rel);
		}
		free(mp), free(rp);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned secs = 10, nr = 8, nw = 4, ns = 2;
	int c;
	while ((c = getopt(argc, argv, "t:r:w:s:x:d:")) != -1) {
		switch (c) {
		case 't': secs = (unsigned)atoi(optarg); break;
		case 'r': nr = (unsigned)atoi(optarg); break;
		case 'w': nw = (unsigned)atoi(optarg); break;
		case 's': ns = (unsigned)atoi(optarg); break;
		case 'x': exclude = optarg; break;
		case 'd': damaged = optarg; break;
		default: return 2;
		}
	}
	if (argc - optind != 2) {
		fputs("usage: fs-load [-t SECONDS] [-r N] [-w N] [-s N] [-x PREFIX] [-d PREFIX] REF MOUNTPOINT\n", stderr);
		return 2;
	}
	ref = argv[optind];
	mnt = argv[optind + 1];
	if (nftw(ref, collect, 64, FTW_PHYS) != 0 || !n_paths || !n_dirs) {
		fprintf(stderr, "fs-load: cannot walk '%s'\n", ref);
		return 2;
	}
	pthread_t t[256];
	unsigned n = 0;
	progress();
	for (unsigned i = 0; i < nr && n < 256; i++)
		pthread_create(&t[n++], NULL, reader, (void *)(uintptr_t)(i + 1));
	for (unsigned i = 0; i < nw && n < 256; i++)
		pthread_create(&t[n++], NULL, walker, (void *)(uintptr_t)(i + 1));
	for (unsigned i = 0; i < ns && n < 256; i++)
		pthread_create(&t[n++], NULL, statter, (void *)(uintptr_t)(i + 1));
	uint64_t end = now_ms() + secs * 1000ull;
	int status = 0;
	while (now_ms() < end) {
		usleep(100000);
		if (now_ms() - atomic_load(&last_progress) > 30000) {
			/* nothing moved for 30 s: the daemon is stuck */
			fprintf(stderr, "fs-load: no operation finished for 30 s: deadlock\n");
			printf("deadlock\n");
			fflush(stdout);
			_exit(3);
		}
	}
	atomic_store(&stop, true);
	for (unsigned i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	if (atomic_load(&errors))
		status = 1;
	printf("%lu reads (%lu MiB), %lu EIO, %lu listings, %lu stats, %lu errors, %u threads, %u s\n",
	       atomic_load(&reads), atomic_load(&read_bytes) >> 20, atomic_load(&eio), atomic_load(&listings),
	       atomic_load(&stats), atomic_load(&errors), n, secs);
	return status;
}
