/* SPDX-License-Identifier: Apache-2.0 */
#include "config.h"

#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "util.h"

static void oom(void)
{
	fputs("ocitree: out of memory\n", stderr);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		oom();
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		oom();
	return p;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (!p)
		oom();
	return p;
}

char *xstrdup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

char *xvasprintf(const char *fmt, va_list ap)
{
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		oom();
	return s;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
	va_end(ap);
	return s;
}

void grow_array(void **arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return;
	size_t n = *cap ? *cap : 8;
	while (n < need) {
		if (n > SIZE_MAX / 2 / elem)
			oom();
		n *= 2;
	}
	*arr = xrealloc(*arr, n * elem);
	*cap = n;
}

/* ---- buffer ---- */

void buf_reserve(struct buf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	size_t n = b->cap ? b->cap : 64;
	while (n < b->len + extra + 1) {
		if (n > SIZE_MAX / 2)
			oom();
		n *= 2;
	}
	b->data = xrealloc(b->data, n);
	b->cap = n;
}

void buf_append(struct buf *b, const void *data, size_t len)
{
	buf_reserve(b, len);
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void buf_puts(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

char *buf_steal(struct buf *b)
{
	if (!b->data)
		buf_reserve(b, 0), b->data[0] = '\0';
	char *p = b->data;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* ---- strings ---- */

bool str_has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool str_has_suffix(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

size_t strv_len(char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

/* ---- I/O ---- */

int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t read_full(int fd, void *data, size_t len)
{
	char *p = data;
	size_t done = 0;
	while (done < len) {
		ssize_t n = read(fd, p + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

ssize_t pread_full(int fd, void *data, size_t len, off_t off)
{
	char *p = data;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, p + done, len - done, off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

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

int write_file_atomic_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			 struct ocitree_error **err)
{
	return write_file_atomic_owned_at(dirfd, name, data, len, mode, (uid_t)-1, (gid_t)-1, err);
}

int write_file_atomic_owned_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode, uid_t uid,
			       gid_t gid, struct ocitree_error **err)
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
	if (write_all(fd, data, len) < 0 || fchmod(fd, mode) < 0 || fsync(fd) < 0) {
		int e = errno;
		unlinkat(dirfd, tmp, 0);
		return ocitree_error_set(err, e, "write '%s'", name);
	}
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		int e = errno;
		unlinkat(dirfd, tmp, 0);
		return ocitree_error_set(err, e, "replace '%s'", name);
	}
	if (fsync(dirfd) < 0 && errno != EINVAL)
		return ocitree_error_set(err, errno, "sync directory of '%s'", name);
	return 0;
}

/* ---- time ---- */

static int parse_digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

int time_parse_rfc3339(const char *s, struct timespec *out)
{
	const char *p = s;
	int Y, M, D, h, m, sec;
	long nsec = 0;
	if (parse_digits(&p, 4, &Y) < 0 || *p++ != '-' || parse_digits(&p, 2, &M) < 0 || *p++ != '-' ||
	    parse_digits(&p, 2, &D) < 0 || (*p != 'T' && *p != 't' && *p != ' '))
		return -1;
	p++;
	if (parse_digits(&p, 2, &h) < 0 || *p++ != ':' || parse_digits(&p, 2, &m) < 0 || *p++ != ':' ||
	    parse_digits(&p, 2, &sec) < 0)
		return -1;
	if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
		return -1;
	if (*p == '.') {
		p++;
		int digits = 0;
		while (*p >= '0' && *p <= '9') {
			if (digits < 9)
				nsec = nsec * 10 + (*p - '0');
			digits++;
			p++;
		}
		if (digits == 0)
			return -1;
		for (int i = digits; i < 9; i++)
			nsec *= 10;
	}
	int64_t offset = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1, oh, om;
		p++;
		if (parse_digits(&p, 2, &oh) < 0 || *p++ != ':' || parse_digits(&p, 2, &om) < 0 || oh > 23 || om > 59)
			return -1;
		offset = sign * (oh * 3600 + om * 60);
	} else {
		return -1;
	}
	if (*p != '\0')
		return -1;
	int64_t t = days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 + h * 3600 + m * 60 + sec - offset;
	out->tv_sec = (time_t)t;
	out->tv_nsec = nsec;
	return 0;
}

static bool leap_year(int y)
{
	return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

char *time_canonical_rfc3339(const char *s)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	const char *p = s;
	int Y, M, D, h, m, sec;
	if (parse_digits(&p, 4, &Y) < 0 || *p++ != '-' || parse_digits(&p, 2, &M) < 0 || *p++ != '-' ||
	    parse_digits(&p, 2, &D) < 0 || *p++ != 'T' || parse_digits(&p, 2, &h) < 0 || *p++ != ':' ||
	    parse_digits(&p, 2, &m) < 0 || *p++ != ':' || parse_digits(&p, 2, &sec) < 0)
		return NULL;
	if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] + (M == 2 && leap_year(Y)) || h > 23 || m > 59 || sec > 59)
		return NULL;
	/* Go takes ',' as well as '.' before the fraction and keeps nine digits */
	char frac[11] = "";
	if ((*p == '.' || *p == ',') && p[1] >= '0' && p[1] <= '9') {
		size_t n = 0;
		frac[n++] = '.';
		for (p++; *p >= '0' && *p <= '9'; p++)
			if (n < 10)
				frac[n++] = *p;
		while (n > 1 && frac[n - 1] == '0')
			n--;
		frac[n > 1 ? n : 0] = '\0';
	}
	char zone[8] = "Z";
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		char sign = *p++;
		int oh, om;
		if (parse_digits(&p, 2, &oh) < 0 || *p++ != ':' || parse_digits(&p, 2, &om) < 0 || oh > 23 || om > 59)
			return NULL;
		if (oh || om)
			snprintf(zone, sizeof(zone), "%c%02d:%02d", sign, oh, om);
	} else {
		return NULL;
	}
	if (*p != '\0')
		return NULL;
	return xasprintf("%.19s%s%s", s, frac, zone);
}

char *time_format_rfc3339(const struct timespec *ts)
{
	struct tm tm;
	time_t t = ts->tv_sec;
	gmtime_r(&t, &tm);
	char base[64];
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	if (ts->tv_nsec == 0)
		return xasprintf("%sZ", base);
	char frac[16];
	snprintf(frac, sizeof(frac), "%09ld", ts->tv_nsec);
	for (int i = 8; i > 0 && frac[i] == '0'; i--)
		frac[i] = '\0';
	return xasprintf("%s.%sZ", base, frac);
}

struct timespec time_now_or_source_date_epoch(void)
{
	struct timespec ts = {0, 0};
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	if (sde && *sde) {
		char *end = NULL;
		errno = 0;
		long long v = strtoll(sde, &end, 10);
		if (errno == 0 && end && *end == '\0' && v >= 0) {
			ts.tv_sec = (time_t)v;
			return ts;
		}
		log_warn("ignoring invalid SOURCE_DATE_EPOCH '%s'", sde);
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

/* ---- string set ---- */

uint64_t hash_bytes(const void *data, size_t len)
{
	/* FNV-1a, 64 bit */
	const unsigned char *p = data;
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static size_t strset_slot(char *const *slots, size_t cap, const char *s)
{
	size_t i = (size_t)hash_bytes(s, strlen(s)) & (cap - 1);
	while (slots[i] && strcmp(slots[i], s) != 0)
		i = (i + 1) & (cap - 1);
	return i;
}

bool strset_has(const struct strset *set, const char *s)
{
	if (!set->cap)
		return false;
	return set->slots[strset_slot(set->slots, set->cap, s)] != NULL;
}

bool strset_add(struct strset *set, const char *s)
{
	if ((set->n + 1) * 2 > set->cap) {
		size_t ncap = set->cap ? set->cap * 2 : 64;
		char **ns = xcalloc(ncap, sizeof(char *));
		for (size_t i = 0; i < set->cap; i++)
			if (set->slots[i])
				ns[strset_slot(ns, ncap, set->slots[i])] = set->slots[i];
		free(set->slots);
		set->slots = ns;
		set->cap = ncap;
	}
	size_t i = strset_slot(set->slots, set->cap, s);
	if (set->slots[i])
		return false;
	set->slots[i] = xstrdup(s);
	set->n++;
	return true;
}

void strset_free(struct strset *set)
{
	for (size_t i = 0; i < set->cap; i++)
		free(set->slots[i]);
	free(set->slots);
	memset(set, 0, sizeof(*set));
}

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
