/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A bounded load on a mounted image, checked against a reference tree that
 * holds what the image should show:
 *
 *   fs-load [-t SECONDS] [-r READERS] [-w WALKERS] [-s STATTERS]
 *           [-x PREFIX] [-d PREFIX] [-W DIR,... [-E EXPECT]] [-k DAEMON-PID]
 *           REF MOUNTPOINT
 *   fs-load -V EXPECT MOUNTPOINT
 *
 * Readers open random files (half of them with O_DIRECT, past the page
 * cache) and read them whole or in random pieces at random offsets; walkers list every directory; statters lstat (and
 * readlink) random paths.  Every byte read, every listing and every stat is
 * compared with REF.  Paths under -x PREFIX are left alone; under
 * -d PREFIX (a layer damaged on purpose) a read may fail with EIO or stop
 * short, and is counted, but data it returns must still be right.
 *
 * On a writable mount, -W gives one writer thread to each directory of the
 * image it lists (the readers leave them alone): it creates files there and
 * in a new subdirectory, writes at random offsets (the first write to an
 * image file copies it up), appends, truncates, renames (over existing
 * names too, and between the two directories), links and unlinks, and
 * after every change reads the file back and compares it with its model in
 * memory (data, size, st_nlink).  With -E, the tree the writers left is
 * written into EXPECT, a copy of REF, at the end.  -V compares a mounted
 * tree with such a copy: names, types, data, link targets and st_nlink.
 *
 * Anything else that differs or fails, or a thread stuck for 30 s in one
 * operation (a deadlock), is an error; after a deadlock, -k kills the
 * daemon (its threads' wait channels are printed first), without which
 * the threads stuck in its requests could not end.  Prints one line of counts; exits 0
 * when all was right.
 */
#define _GNU_SOURCE /* O_DIRECT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
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
static char **owned; /* -W: the directories the writers own */
static size_t n_owned, cap_owned;
static char **paths; /* relative, every entry of REF but the root */
static size_t n_paths, cap_paths;
static char **files; /* the regular files among them */
static size_t n_files;
static char **dirs; /* the directories, "" for the root */
static size_t n_dirs;

static atomic_bool stop;
static atomic_bool no_direct; /* O_DIRECT is refused here */
static atomic_ulong reads, read_bytes, eio, listings, stats, errors;
static atomic_ulong writes, write_bytes, copyups, creates, truncates, renames, links, unlinks, checks;

/* the watchdog's view of each thread: when its current operation started
 * (0: between operations, or finished) */
#define MAX_THREADS 256
static _Atomic uint64_t busy_since[MAX_THREADS];
static __thread unsigned self; /* this thread's slot */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* An operation of this thread starts, or (done) ends. */
static void progress(void)
{
	atomic_store(&busy_since[self], now_ms());
}

static void idle(void)
{
	atomic_store(&busy_since[self], 0);
}

/* The first few errors are enough to see what is wrong: print while
 * seen (the errors before this one) is under 20. */
static void vreport(unsigned long seen, const char *fmt, va_list ap)
{
	if (seen >= 20)
		return;
	fputs("fs-load: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(atomic_fetch_add(&errors, 1), fmt, ap);
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

/* Whether rel is a writer's directory or below one. */
static bool is_owned(const char *rel)
{
	for (size_t i = 0; i < n_owned; i++) {
		size_t n = strlen(owned[i]);
		if (strncmp(rel, owned[i], n) == 0 && (rel[n] == '\0' || rel[n] == '/'))
			return true;
	}
	return false;
}

static int collect(const char *p, const struct stat *st, int type, struct FTW *f)
{
	const char *rel = p + strlen(ref);
	while (*rel == '/')
		rel++;
	if (has_prefix(rel, exclude) || is_owned(rel))
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
	self = (unsigned)(uintptr_t)arg;
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
	idle();
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
	self = (unsigned)(uintptr_t)arg;
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
	idle();
	return NULL;
}

/* ---- statters ---- */

static void *statter(void *arg)
{
	self = (unsigned)(uintptr_t)arg;
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
	idle();
	return NULL;
}

/* ---- writers: each owns an image directory, checked against a model ---- */

/* A file of the model: its data and how many names it has. */
struct mfile {
	unsigned char *data;
	size_t len, cap;
	unsigned nlink;
	bool image;       /* an image file not written yet: the first write copies it up */
	const char *done; /* -E: the path it was written to */
};

/* A name in the writer's directories. */
struct mname {
	char *rel;      /* relative to the mount */
	struct mfile *f; /* NULL for a symlink */
	char *target;   /* a symlink's */
};

struct writer {
	const char *dir;
	uint64_t seed;
	struct mname *v;
	size_t n, cap;
	unsigned fresh;
	unsigned char *buf, *back;
};

#define WRITE_MAX (1u << 20) /* files stay below this, so that reading one back is cheap */
#define BUF_MAX (WRITE_MAX + 65536)

static struct writer *writers;

static void mf_resize(struct mfile *f, size_t len)
{
	if (len > f->cap || !f->data) { /* data is never NULL, even when empty */
		f->cap = len + 4096;
		f->data = realloc(f->data, f->cap);
		if (!f->data)
			abort();
	}
	if (len > f->len)
		memset(f->data + f->len, 0, len - f->len);
	f->len = len;
}

static void mf_put(struct mfile *f, size_t off, const unsigned char *p, size_t len)
{
	mf_resize(f, off + len > f->len ? off + len : f->len);
	memcpy(f->data + off, p, len);
}

static void mf_unref(struct mfile *f)
{
	if (f && --f->nlink == 0) {
		free(f->data);
		free(f);
	}
}

static struct mname *w_add(struct writer *w, const char *rel, struct mfile *f, const char *target)
{
	if (w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 64;
		w->v = realloc(w->v, w->cap * sizeof(*w->v));
		if (!w->v)
			abort();
	}
	struct mname *m = &w->v[w->n++];
	m->rel = strdup(rel);
	m->f = f;
	m->target = target ? strdup(target) : NULL;
	if (f)
		f->nlink++;
	return m;
}

static struct mname *w_find(struct writer *w, const char *rel)
{
	for (size_t i = 0; i < w->n; i++)
		if (strcmp(w->v[i].rel, rel) == 0)
			return &w->v[i];
	return NULL;
}

static void w_remove(struct writer *w, struct mname *m)
{
	mf_unref(m->f);
	free(m->rel);
	free(m->target);
	*m = w->v[--w->n];
}

static void fill(uint64_t *seed, unsigned char *p, size_t len)
{
	uint64_t x = rng(seed);
	for (size_t i = 0; i < len; i++) {
		if ((i & 7) == 0)
			x = rng(seed);
		p[i] = (unsigned char)(x >> (8 * (i & 7)));
	}
}

/* The file at rel, whole, equals its model: size, st_nlink and data. */
static void w_check(struct writer *w, const char *rel, const struct mfile *f, const char *after)
{
	char *mp = join(mnt, rel);
	struct stat st;
	progress();
	atomic_fetch_add(&checks, 1);
	int fd = open(mp, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		report("after %s: open '%s': %s", after, rel, strerror(errno));
	} else if ((size_t)st.st_size != f->len || st.st_nlink != f->nlink) {
		report("after %s: '%s' has size %jd and %ju names, %zu and %u expected", after, rel,
		       (intmax_t)st.st_size, (uintmax_t)st.st_nlink, f->len, f->nlink);
	} else {
		ssize_t got = read(fd, w->back, f->len + 1);
		if (got != (ssize_t)f->len || memcmp(w->back, f->data, f->len) != 0)
			report("after %s: '%s' reads %zd bytes that differ from the %zu written", after, rel, got,
			       f->len);
	}
	if (fd >= 0)
		close(fd);
	free(mp);
	progress();
}

/* A name that does not exist yet, in the directory or its subdirectory. */
static char *w_fresh(struct writer *w)
{
	char *rel;
	if (asprintf(&rel, "%s%s/n%u", w->dir, rng(&w->seed) % 2 ? "/new" : "", w->fresh++) < 0)
		abort();
	return rel;
}

static struct mname *w_pick_file(struct writer *w)
{
	for (int tries = 0; tries < 8 && w->n; tries++) {
		struct mname *m = &w->v[rng(&w->seed) % w->n];
		if (m->f)
			return m;
	}
	return NULL;
}

static void w_copyup(struct mfile *f)
{
	if (f->image) {
		f->image = false;
		atomic_fetch_add(&copyups, 1);
	}
}

static void w_step(struct writer *w)
{
	unsigned op = (unsigned)(rng(&w->seed) % 100);
	struct mname *m = w_pick_file(w);
	if (op < 12 || !m) {
		/* create a file */
		char *rel = w_fresh(w), *mp = join(mnt, rel);
		size_t len = rng(&w->seed) % 4 ? rng(&w->seed) % 65536 : 0;
		fill(&w->seed, w->buf, len);
		progress();
		int fd = open(mp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0 || write(fd, w->buf, len) != (ssize_t)len) {
			report("create '%s': %s", rel, strerror(errno));
		} else {
			struct mfile *f = calloc(1, sizeof(*f));
			if (!f)
				abort();
			mf_put(f, 0, w->buf, len);
			w_add(w, rel, f, NULL);
			atomic_fetch_add(&creates, 1);
			atomic_fetch_add(&write_bytes, len);
		}
		if (fd >= 0)
			close(fd);
		struct mname *nm = w_find(w, rel);
		if (nm)
			w_check(w, rel, nm->f, "create");
		free(rel), free(mp);
		return;
	}
	char *mp = join(mnt, m->rel);
	struct mfile *f = m->f;
	char *rel = strdup(m->rel); /* m moves when names are removed */
	if (op < 42) {
		/* write at an offset, past the end at times (a hole) */
		size_t off = f->len ? rng(&w->seed) % (f->len + 8192) : rng(&w->seed) % 8192;
		size_t len = 1 + rng(&w->seed) % (rng(&w->seed) % 4 ? 4096 : 65536);
		if (off + len > WRITE_MAX)
			off = 0;
		fill(&w->seed, w->buf, len);
		progress();
		int fd = open(mp, O_WRONLY | O_CLOEXEC);
		ssize_t r = fd < 0 ? -1 : pwrite(fd, w->buf, len, (off_t)off);
		if (r == (ssize_t)len && rng(&w->seed) % 8 == 0 && fsync(fd) < 0)
			r = -1;
		if (r != (ssize_t)len) {
			report("write %zu at %zu of '%s': %s", len, off, rel, r < 0 ? strerror(errno) : "short");
		} else {
			w_copyup(f);
			mf_put(f, off, w->buf, len);
			atomic_fetch_add(&writes, 1);
			atomic_fetch_add(&write_bytes, len);
		}
		if (fd >= 0)
			close(fd);
		w_check(w, rel, f, "write");
	} else if (op < 55) {
		/* append */
		size_t len = f->len >= WRITE_MAX - 65536 ? 0 : 1 + rng(&w->seed) % 20000;
		fill(&w->seed, w->buf, len);
		progress();
		int fd = open(mp, O_WRONLY | O_APPEND | O_CLOEXEC);
		ssize_t r = fd < 0 ? -1 : write(fd, w->buf, len);
		if (r != (ssize_t)len) {
			report("append %zu to '%s': %s", len, rel, r < 0 ? strerror(errno) : "short");
		} else {
			w_copyup(f);
			mf_put(f, f->len, w->buf, len);
			atomic_fetch_add(&writes, 1);
			atomic_fetch_add(&write_bytes, len);
		}
		if (fd >= 0)
			close(fd);
		w_check(w, rel, f, "append");
	} else if (op < 65) {
		/* truncate, shorter or longer */
		size_t len = rng(&w->seed) % 2 ? rng(&w->seed) % (f->len + 1) : f->len + rng(&w->seed) % 100000;
		if (len > WRITE_MAX)
			len = WRITE_MAX;
		progress();
		if (truncate(mp, (off_t)len) < 0) {
			report("truncate '%s' to %zu: %s", rel, len, strerror(errno));
		} else {
			w_copyup(f);
			mf_resize(f, len);
			atomic_fetch_add(&truncates, 1);
		}
		w_check(w, rel, f, "truncate");
	} else if (op < 78) {
		/* rename: to a fresh name, or over another file */
		struct mname *over = rng(&w->seed) % 3 == 0 ? w_pick_file(w) : NULL;
		/* (a rename between two names of one file does nothing) */
		if (over && over->f == f)
			over = NULL;
		char *to = over ? strdup(over->rel) : w_fresh(w), *tp = join(mnt, to);
		progress();
		if (rename(mp, tp) < 0) {
			report("rename '%s' to '%s': %s", rel, to, strerror(errno));
		} else {
			struct mname *old = w_find(w, to);
			if (old)
				w_remove(w, old);
			m = w_find(w, rel);
			if (!m)
				abort();
			free(m->rel);
			m->rel = strdup(to);
			atomic_fetch_add(&renames, 1);
			struct stat st;
			if (lstat(mp, &st) == 0 || errno != ENOENT)
				report("rename '%s' to '%s': the old name is still there", rel, to);
		}
		m = w_find(w, to);
		if (m)
			w_check(w, to, m->f, "rename");
		free(to), free(tp);
	} else if (op < 84) {
		/* another name */
		char *to = w_fresh(w), *tp = join(mnt, to);
		progress();
		if (f->nlink >= 4) {
			/* enough names */
		} else if (link(mp, tp) < 0) {
			report("link '%s' to '%s': %s", to, rel, strerror(errno));
		} else {
			w_add(w, to, f, NULL);
			atomic_fetch_add(&links, 1);
			w_check(w, to, f, "link");
			w_check(w, rel, f, "link");
		}
		free(to), free(tp);
	} else if (op < 92) {
		/* unlink */
		progress();
		if (unlink(mp) < 0) {
			report("unlink '%s': %s", rel, strerror(errno));
		} else {
			struct stat st;
			if (lstat(mp, &st) == 0 || errno != ENOENT)
				report("unlink '%s': still there", rel);
			bool more = f->nlink > 1;
			struct mname *gone = w_find(w, rel);
			if (!gone)
				abort();
			w_remove(w, gone);
			atomic_fetch_add(&unlinks, 1);
			/* the other names of the file lost one */
			for (size_t i = 0; more && i < w->n; i++)
				if (w->v[i].f == f) {
					w_check(w, w->v[i].rel, f, "unlink");
					break;
				}
		}
	} else {
		w_check(w, rel, f, "nothing");
	}
	free(rel), free(mp);
}

/* The model starts as the image directory in REF. */
static void w_load(struct writer *w)
{
	char *rp = join(ref, w->dir);
	DIR *d = opendir(rp);
	if (!d) {
		report("open '%s': %s", rp, strerror(errno));
		free(rp);
		return;
	}
	struct seen {
		ino_t ino;
		struct mfile *f;
	} seen[256];
	size_t ns = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char *rel, *p;
		if (asprintf(&rel, "%s/%s", w->dir, e->d_name) < 0 || !(p = join(ref, rel)))
			abort();
		struct stat st;
		if (lstat(p, &st) < 0) {
			report("lstat '%s': %s", p, strerror(errno));
		} else if (S_ISLNK(st.st_mode)) {
			char t[4096];
			ssize_t tl = readlink(p, t, sizeof(t) - 1);
			t[tl < 0 ? 0 : tl] = '\0';
			w_add(w, rel, NULL, t);
		} else if (S_ISREG(st.st_mode) && st.st_size >= WRITE_MAX) {
			report("'%s': a writer's files must be smaller than %u bytes", rel, WRITE_MAX);
		} else if (S_ISREG(st.st_mode)) {
			struct mfile *f = NULL;
			for (size_t i = 0; i < ns; i++)
				if (seen[i].ino == st.st_ino)
					f = seen[i].f;
			if (!f) {
				f = calloc(1, sizeof(*f));
				int fd = open(p, O_RDONLY | O_CLOEXEC);
				if (!f || fd < 0)
					abort();
				mf_resize(f, (size_t)st.st_size);
				if (read(fd, f->data, f->len) != (ssize_t)f->len)
					abort();
				close(fd);
				f->image = true;
				if (ns < 256)
					seen[ns++] = (struct seen){st.st_ino, f};
			}
			w_add(w, rel, f, NULL);
		}
		free(rel), free(p);
	}
	closedir(d);
	free(rp);
}

static void *writer(void *arg)
{
	struct writer *w = arg;
	self = (unsigned)(w - writers) + 1;
	char *sub, *mp;
	if (asprintf(&sub, "%s/new", w->dir) < 0 || !(mp = join(mnt, sub)))
		abort();
	progress();
	if (mkdir(mp, 0755) < 0)
		report("mkdir '%s': %s", sub, strerror(errno));
	free(sub), free(mp);
	while (!atomic_load(&stop))
		w_step(w);
	idle();
	return NULL;
}

/* -E: the writers' directories as the model says, in expect (a copy of
 * REF). */
static int write_expect(const char *expect)
{
	for (size_t i = 0; i < n_owned; i++) {
		struct writer *w = &writers[i];
		char *cmd;
		if (asprintf(&cmd, "rm -rf '%s/%s' && mkdir -p '%s/%s/new'", expect, w->dir, expect, w->dir) < 0 ||
		    system(cmd) != 0)
			return -1;
		free(cmd);
		for (size_t k = 0; k < w->n; k++) {
			struct mname *m = &w->v[k];
			char *p = join(expect, m->rel);
			int r;
			if (!m->f) {
				r = symlink(m->target, p);
			} else if (m->f->done) {
				r = link(m->f->done, p);
			} else {
				int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
				r = fd < 0 || write(fd, m->f->data, m->f->len) != (ssize_t)m->f->len ? -1 : 0;
				if (fd >= 0)
					close(fd);
				m->f->done = p;
				p = NULL;
			}
			if (r < 0) {
				fprintf(stderr, "fs-load: write '%s' in '%s': %s\n", m->rel, expect, strerror(errno));
				return -1;
			}
			free(p);
		}
	}
	return 0;
}

/* ---- -V: a tree equals its expected copy ---- */

static unsigned long v_paths, v_differ;

static void v_differs(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void v_differs(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(v_differ++, fmt, ap);
	va_end(ap);
}

static bool same_data(const char *a, const char *b)
{
	FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
	bool same = x && y;
	char p[65536], q[65536];
	while (same) {
		size_t m = fread(p, 1, sizeof(p), x), n = fread(q, 1, sizeof(q), y);
		same = m == n && memcmp(p, q, m) == 0;
		if (m == 0 || !same)
			break;
	}
	if (x)
		fclose(x);
	if (y)
		fclose(y);
	return same;
}

static void verify(const char *exp, const char *got, const char *rel)
{
	char *ep = join(exp, rel), *gp = join(got, rel);
	char **ev, **gv;
	size_t en = list(ep, &ev), gn = list(gp, &gv);
	if (en == (size_t)-1 || gn == (size_t)-1) {
		v_differs("list '%s': %s", rel, strerror(errno));
		en = en == (size_t)-1 ? 0 : en, gn = gn == (size_t)-1 ? 0 : gn;
	}
	size_t i = 0, k = 0;
	while (i < en || k < gn) {
		int c = i == en ? 1 : k == gn ? -1 : strcmp(ev[i], gv[k]);
		if (c < 0) {
			v_differs("'%s%s%s' is missing", rel, *rel ? "/" : "", ev[i++]);
			continue;
		}
		if (c > 0) {
			v_differs("'%s%s%s' should not be there", rel, *rel ? "/" : "", gv[k++]);
			continue;
		}
		char *r = *rel ? join(rel, ev[i]) : strdup(ev[i]);
		char *a = join(exp, r), *b = join(got, r);
		struct stat sa, sb;
		v_paths++;
		if (lstat(a, &sa) < 0 || lstat(b, &sb) < 0) {
			v_differs("lstat '%s': %s", r, strerror(errno));
		} else if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT)) {
			v_differs("'%s': type %o, %o expected", r, sb.st_mode & S_IFMT, sa.st_mode & S_IFMT);
		} else if (S_ISREG(sa.st_mode)) {
			if (sa.st_size != sb.st_size || sa.st_nlink != sb.st_nlink || !same_data(a, b))
				v_differs("'%s': size %jd, %ju names, data %s; %jd and %ju expected", r,
					  (intmax_t)sb.st_size, (uintmax_t)sb.st_nlink,
					  same_data(a, b) ? "the same" : "differ", (intmax_t)sa.st_size,
					  (uintmax_t)sa.st_nlink);
		} else if (S_ISLNK(sa.st_mode)) {
			char x[4096], y[4096];
			ssize_t xl = readlink(a, x, sizeof(x)), yl = readlink(b, y, sizeof(y));
			if (xl != yl || xl < 0 || memcmp(x, y, (size_t)xl) != 0)
				v_differs("readlink '%s' differs", r);
		} else if (S_ISDIR(sa.st_mode)) {
			verify(exp, got, r);
		}
		free(r), free(a), free(b);
		i++, k++;
	}
	free_list(ev, en);
	free_list(gv, gn);
	free(ep), free(gp);
}

/* -k: after a deadlock, say where the daemon's threads wait and kill it:
 * until it is gone, threads stuck in its requests cannot end, nor can this
 * process */
static pid_t daemon_pid;

static void kill_daemon(void)
{
	if (!daemon_pid)
		return;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)daemon_pid);
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[384], comm[64] = "", wchan[64] = "";
		FILE *f;
		snprintf(p, sizeof(p), "%s/%s/comm", path, e->d_name);
		if ((f = fopen(p, "r"))) {
			if (!fgets(comm, sizeof(comm), f))
				comm[0] = '\0';
			fclose(f);
		}
		snprintf(p, sizeof(p), "%s/%s/wchan", path, e->d_name);
		if ((f = fopen(p, "r"))) {
			if (!fgets(wchan, sizeof(wchan), f))
				wchan[0] = '\0';
			fclose(f);
		}
		comm[strcspn(comm, "\n")] = '\0';
		fprintf(stderr, "fs-load: daemon thread %s (%s) waits in %s\n", e->d_name, comm, *wchan ? wchan : "?");
	}
	if (d)
		closedir(d);
	fprintf(stderr, "fs-load: killing the daemon (%d)\n", (int)daemon_pid);
	kill(daemon_pid, SIGKILL);
}

int main(int argc, char **argv)
{
	unsigned secs = 10, nr = 8, nw = 4, ns = 2;
	const char *expect = NULL, *check_against = NULL;
	int c;
	while ((c = getopt(argc, argv, "t:r:w:s:x:d:W:E:V:k:")) != -1) {
		switch (c) {
		case 't': secs = (unsigned)atoi(optarg); break;
		case 'r': nr = (unsigned)atoi(optarg); break;
		case 'w': nw = (unsigned)atoi(optarg); break;
		case 's': ns = (unsigned)atoi(optarg); break;
		case 'x': exclude = optarg; break;
		case 'd': damaged = optarg; break;
		case 'W':
			for (char *save = NULL, *d = strtok_r(optarg, ",", &save); d; d = strtok_r(NULL, ",", &save))
				add(&owned, &n_owned, &cap_owned, d);
			break;
		case 'E': expect = optarg; break;
		case 'V': check_against = optarg; break;
		case 'k': daemon_pid = (pid_t)atoi(optarg); break;
		default: return 2;
		}
	}
	if (check_against) {
		if (argc - optind != 1) {
			fputs("usage: fs-load -V EXPECT MOUNTPOINT\n", stderr);
			return 2;
		}
		verify(check_against, argv[optind], "");
		printf("%lu paths compared, %lu differ\n", v_paths, v_differ);
		return v_differ || !v_paths;
	}
	if (argc - optind != 2) {
		fputs("usage: fs-load [-t SECONDS] [-r N] [-w N] [-s N] [-x PREFIX] [-d PREFIX]\n"
		      "               [-W DIR,... [-E EXPECT]] [-k DAEMON-PID] REF MOUNTPOINT\n",
		      stderr);
		return 2;
	}
	ref = argv[optind];
	mnt = argv[optind + 1];
	if (nftw(ref, collect, 64, FTW_PHYS) != 0 || !n_paths || !n_dirs) {
		fprintf(stderr, "fs-load: cannot walk '%s'\n", ref);
		return 2;
	}
	pthread_t t[MAX_THREADS];
	unsigned n = 0;
	writers = calloc(n_owned + 1, sizeof(*writers));
	if (!writers)
		abort();
	for (size_t i = 0; i < n_owned && n + 1 < MAX_THREADS; i++) {
		struct writer *w = &writers[i];
		w->dir = owned[i];
		w->seed = (i + 1) * 0x2545f4914f6cdd1dULL + (uint64_t)time(NULL);
		w->buf = malloc(BUF_MAX);
		w->back = malloc(BUF_MAX);
		if (!w->buf || !w->back)
			abort();
		w_load(w);
		pthread_create(&t[n++], NULL, writer, w);
	}
	/* slot 0 is this thread; the writers have 1..n_owned */
	for (unsigned i = 0; i < nr && n + 1 < MAX_THREADS; i++, n++)
		pthread_create(&t[n], NULL, reader, (void *)(uintptr_t)(n + 1));
	for (unsigned i = 0; i < nw && n + 1 < MAX_THREADS; i++, n++)
		pthread_create(&t[n], NULL, walker, (void *)(uintptr_t)(n + 1));
	for (unsigned i = 0; i < ns && n + 1 < MAX_THREADS; i++, n++)
		pthread_create(&t[n], NULL, statter, (void *)(uintptr_t)(n + 1));
	uint64_t end = now_ms() + secs * 1000ull;
	int status = 0;
	/* the watchdog, until every thread has finished: one operation
	 * stuck for 30 s is a deadlock */
	for (;;) {
		usleep(100000);
		uint64_t now = now_ms();
		if (now >= end)
			atomic_store(&stop, true);
		bool running = false;
		for (unsigned i = 1; i <= n; i++) {
			uint64_t since = atomic_load(&busy_since[i]);
			running |= since != 0;
			if (since && now - since > 30000) {
				fprintf(stderr, "fs-load: thread %u stuck in one operation for 30 s: deadlock\n", i);
				printf("deadlock\n");
				fflush(stdout);
				kill_daemon();
				_exit(3);
			}
		}
		if (atomic_load(&stop) && !running)
			break;
	}
	for (unsigned i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	if (expect && write_expect(expect) < 0)
		status = 2;
	if (atomic_load(&errors))
		status = 1;
	if (n_owned)
		printf("%lu reads (%lu MiB), %lu writes (%lu MiB), %lu copy-ups, %lu creates, %lu truncates, "
		       "%lu renames, %lu links, %lu unlinks, %lu read-back checks, %lu listings, %lu stats, "
		       "%lu errors, %u threads, %u s\n",
		       atomic_load(&reads), atomic_load(&read_bytes) >> 20, atomic_load(&writes),
		       atomic_load(&write_bytes) >> 20, atomic_load(&copyups), atomic_load(&creates),
		       atomic_load(&truncates), atomic_load(&renames), atomic_load(&links), atomic_load(&unlinks),
		       atomic_load(&checks), atomic_load(&listings), atomic_load(&stats), atomic_load(&errors), n,
		       secs);
	else
		printf("%lu reads (%lu MiB), %lu EIO, %lu listings, %lu stats, %lu errors, %u threads, %u s\n",
		       atomic_load(&reads), atomic_load(&read_bytes) >> 20, atomic_load(&eio), atomic_load(&listings),
		       atomic_load(&stats), atomic_load(&errors), n, secs);
	return status;
}
