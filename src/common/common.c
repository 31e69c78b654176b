/* SPDX-License-Identifier: Apache-2.0 */
/* The generic helpers of common.h: see there why they are a unit of their own. */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "common.h"

void oom(const char *what)
{
	if (what)
		fprintf(stderr, "ocitree: out of memory (%s)\n", what);
	else
		fputs("ocitree: out of memory\n", stderr);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(NULL);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(NULL);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		oom(NULL);
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		oom(NULL);
	return p;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (!p)
		oom(NULL);
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
		oom(NULL);
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
			oom(NULL);
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
			oom(NULL);
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

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t utf8_decode(const char *s, size_t len, uint32_t *cp)
{
	const unsigned char *p = (const unsigned char *)s;
	if (!len)
		return 0;
	unsigned c = p[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	size_t n = 0;
	uint32_t r = 0, min = 0;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, r = c & 0x1f, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, r = c & 0x0f, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, r = c & 0x07, min = 0x10000;
	if (!n || n > len)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		r = (r << 6) | (p[i] & 0x3f);
	}
	if (r < min || r > 0x10ffff || (r >= 0xd800 && r <= 0xdfff))
		return 0;
	*cp = r;
	return n;
}

void buf_put_base64(struct buf *b, const uint8_t *d, size_t len)
{
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < len ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < len ? d[i + 2] : 0);
		char o[4] = {b64chars[v >> 18], b64chars[(v >> 12) & 63], i + 1 < len ? b64chars[(v >> 6) & 63] : '=',
			     i + 2 < len ? b64chars[v & 63] : '='};
		buf_append(b, o, 4);
	}
}

int base64_decode(const char *s, struct buf *out)
{
	uint32_t acc = 0;
	int bits = 0;
	buf_reset(out);
	for (; *s && *s != '='; s++) {
		const char *p = strchr(b64chars, *s);
		if (!p)
			return -1;
		acc = acc << 6 | (uint32_t)(p - b64chars);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			char c = (char)(acc >> bits);
			buf_append(out, &c, 1);
		}
	}
	return 0;
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

int strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

bool strv_equal(char *const *a, char *const *b)
{
	size_t i = 0;
	for (; a[i] && b[i]; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return !a[i] && !b[i];
}

char **dir_names_sorted(int fd)
{
	int fd2 = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd2 >= 0 ? fdopendir(fd2) : NULL;
	if (!d) {
		int e = errno;
		if (fd2 >= 0)
			close(fd2);
		errno = e;
		return NULL;
	}
	size_t n = 0, cap = 0;
	char **v = NULL;
	GROW(v, cap, 1);
	struct dirent *de;
	while ((errno = 0, de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		GROW(v, cap, n + 2);
		v[n++] = xstrdup(de->d_name);
	}
	int e = errno;
	closedir(d);
	v[n] = NULL;
	if (e) {
		strv_free(v);
		errno = e;
		return NULL;
	}
	qsort(v, n, sizeof(*v), strcmp_p);
	return v;
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

/* The loop of read_full() and pread_full(): off < 0 reads at the file
 * position. */
static ssize_t read_loop(int fd, void *data, size_t len, off_t off)
{
	char *p = data;
	size_t done = 0;
	while (done < len) {
		ssize_t n =
		    off < 0 ? read(fd, p + done, len - done) : pread(fd, p + done, len - done, off + (off_t)done);
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

ssize_t read_full(int fd, void *data, size_t len)
{
	return read_loop(fd, data, len, -1);
}

ssize_t pread_full(int fd, void *data, size_t len, off_t off)
{
	if (off < 0 && len > 0) {
		errno = EINVAL; /* what pread() says */
		return -1;
	}
	return read_loop(fd, data, len, off);
}

int open_stat_at(int dirfd, const char *name, int flags, struct stat *st)
{
	int fd = openat(dirfd, name, flags);
	if (fd < 0)
		return -1;
	if (fstat(fd, st) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int mkdir_p(const char *path, mode_t mode)
{
	_cleanup_free_ char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

char *find_program(const char *name)
{
	if (strchr(name, '/'))
		return access(name, X_OK) == 0 ? xstrdup(name) : NULL;
	const char *path = getenv("PATH");
	_cleanup_free_ char *copy =
	    xstrdup(path && *path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	char *save = NULL;
	for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char *p = xasprintf("%s/%s", *d ? d : ".", name);
		struct stat st;
		if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return NULL;
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

struct timespec realtime_in_ms(long ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}
