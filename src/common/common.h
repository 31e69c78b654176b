/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Generic C helpers shared by libocitree and its front ends (src/cli,
 * src/fs): allocation that aborts on out-of-memory, cleanup attributes, a
 * growable buffer, string vectors and a string set, whole reads and
 * writes, and shorthands for the library's logging.
 *
 * Why a separate unit rather than public API or a copy per side: none of
 * this is about OCI images, so it has no place in libocitree's installed
 * headers (a program using the library brings its own), yet the library
 * and the command line both want the same few dozen lines.  It is built
 * once as a static convenience library (libocitree-common) that the
 * library and the programs link; nothing here is exported from
 * libocitree.so.  It depends on nothing but libc and the public logging
 * header, so it can never pull library internals into a front end.
 */
#ifndef OCITREE_COMMON_H
#define OCITREE_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "ocitree/log.h"

/* Marks a libocitree function as exported from the shared library (the
 * rest is built with -fvisibility=hidden). */
#define OCITREE_EXPORT __attribute__((visibility("default")))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define UNUSED __attribute__((unused))

/* ---- allocation: out of memory aborts ---- */
/* oom() is the one place that handles out-of-memory: it writes "ocitree:
 * out of memory" (with what ran out, when given) to stderr and aborts.
 * Aborting rather than returning an error is a decision of the whole
 * project (STYLE.md): no caller could do anything sensible with the error,
 * and an abort leaves a core to look at. */
void oom(const char *what) __attribute__((noreturn, cold));
/* p, or oom(what) when p is NULL: for the allocating calls of other
 * libraries (zstd, cJSON), which return NULL on out-of-memory. */
static inline void *xcheck(void *p, const char *what)
{
	if (!p)
		oom(what);
	return p;
}
void *xmalloc(size_t n) __attribute__((malloc, returns_nonnull));
void *xcalloc(size_t n, size_t size) __attribute__((malloc, returns_nonnull));
void *xrealloc(void *p, size_t n) __attribute__((returns_nonnull));
char *xstrdup(const char *s) __attribute__((returns_nonnull));
char *xstrndup(const char *s, size_t n) __attribute__((returns_nonnull));
/* NULL-tolerant strdup. */
char *xstrdup_or_null(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2), returns_nonnull));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0), returns_nonnull));

/* Grow *arr (of elements of size elem) so that it holds at least need
 * elements; *cap tracks the allocated count. */
void grow_array(void **arr, size_t *cap, size_t need, size_t elem);
#define GROW(arr, cap, need) grow_array((void **)&(arr), &(cap), (need), sizeof(*(arr)))

/* ---- cleanup attributes ---- */
static inline void cleanup_freep(void *p)
{
	free(*(void **)p);
}
static inline void cleanup_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
static inline void cleanup_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(cleanup_freep)
#define _cleanup_close_ _cleanup_(cleanup_closep)
#define _cleanup_fclose_ _cleanup_(cleanup_fclosep)

/* Hand ownership out of a cleanup variable. */
#define steal_pointer(pp)                                                                                          \
	({                                                                                                         \
		__typeof__(*(pp)) _p = *(pp);                                                                      \
		*(pp) = NULL;                                                                                      \
		_p;                                                                                                \
	})
#define steal_fd(fdp)                                                                                              \
	({                                                                                                         \
		int _fd = *(fdp);                                                                                  \
		*(fdp) = -1;                                                                                       \
		_fd;                                                                                               \
	})

/* ---- growable buffer ----
 * data is always NUL-terminated (when non-NULL) so text can be used as a
 * C string; len does not count the NUL.  The buffer owns data; buf_steal()
 * hands it to the caller. */
struct buf {
	char *data;
	size_t len;
	size_t cap;
};
#define BUF_INIT {NULL, 0, 0}
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_reset(struct buf *b);
/* The length of the UTF-8 sequence at s (at most len bytes) as Go's
 * utf8.DecodeRune takes it: shortest form only, no surrogates, at most
 * U+10FFFF; its code point in *cp.  0 when s does not start with one (or
 * len is 0). */
size_t utf8_decode(const char *s, size_t len, uint32_t *cp);

/* Append len bytes of d in base64 (RFC 4648, padded). */
void buf_put_base64(struct buf *b, const uint8_t *d, size_t len);
/* Decode base64 text s (up to its padding) into out, which is reset first;
 * -1 at a character that is not base64. */
int base64_decode(const char *s, struct buf *out);
char *buf_steal(struct buf *b);
void buf_free(struct buf *b);
static inline void cleanup_bufp(struct buf *b)
{
	buf_free(b);
}
#define _cleanup_buf_ _cleanup_(cleanup_bufp)

/* ---- strings ---- */
bool str_has_prefix(const char *s, const char *prefix);
bool str_has_suffix(const char *s, const char *suffix);
/* Free a NULL-terminated vector of strings; accepts NULL. */
void strv_free(char **v);
size_t strv_len(char *const *v);
/* qsort's comparator for an array of strings (char *). */
int strcmp_p(const void *a, const void *b);
bool strv_equal(char *const *a, char *const *b);
/* The names in directory fd (any fd of it, O_PATH too) but . and .., sorted,
 * as a strv; NULL with errno when it cannot be read. */
char **dir_names_sorted(int fd);
static inline void cleanup_strvp(char ***v)
{
	strv_free(*v);
}
#define _cleanup_strv_ _cleanup_(cleanup_strvp)

/* ---- I/O ---- */
/* The CLOCK_REALTIME time ms milliseconds from now: a deadline for
 * pthread_cond_timedwait. */
struct timespec realtime_in_ms(long ms);

/* write(2) the whole buffer, retrying on EINTR and short writes. */
int write_all(int fd, const void *data, size_t len);
/* read(2) until len bytes or end of file; returns bytes read or -1. */
ssize_t read_full(int fd, void *data, size_t len);
/* pread(2) until len bytes or end of file. */
ssize_t pread_full(int fd, void *data, size_t len, off_t off);
struct stat;
/* openat(2) name in dirfd with flags and fstat(2) what it opened into *st:
 * the fd, or -1 with errno set and nothing left open. */
int open_stat_at(int dirfd, const char *name, int flags, struct stat *st);
/* mkdir(2) path and every missing parent with mode; 0, or -1 with errno. */
int mkdir_p(const char *path, mode_t mode);
/* name itself when it has a slash, else the first regular file of that
 * name in PATH (or the default path when PATH is unset or empty) that may
 * be executed; NULL when none.  The caller frees it. */
char *find_program(const char *name);

/* ---- string set ----
 * Open addressing; owns copies of its strings. */
struct strset {
	char **slots;
	size_t cap, n;
};
/* Returns true when s was added, false when it was already there. */
bool strset_add(struct strset *set, const char *s);
bool strset_has(const struct strset *set, const char *s);
void strset_free(struct strset *set);
uint64_t hash_bytes(const void *data, size_t len);

/* ---- logging through the library's handler (ocitree/log.h) ---- */
#define log_debug(...) ocitree_log(OCITREE_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) ocitree_log(OCITREE_LOG_INFO, __VA_ARGS__)
#define log_warn(...) ocitree_log(OCITREE_LOG_WARN, __VA_ARGS__)

#endif
