/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal helpers of libocitree: cleanup attributes, allocation that aborts
 * on out-of-memory, a growable buffer, and small I/O helpers.  Not installed.
 */
#ifndef OCITREE_UTIL_H
#define OCITREE_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "ocitree/error.h"
#include "ocitree/log.h"

#define OCITREE_EXPORT __attribute__((visibility("default")))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define UNUSED __attribute__((unused))

/* ---- allocation: out of memory aborts ---- */
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
static inline void cleanup_errorp(struct ocitree_error **e)
{
	ocitree_error_free(*e);
}
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(cleanup_freep)
#define _cleanup_close_ _cleanup_(cleanup_closep)
#define _cleanup_fclose_ _cleanup_(cleanup_fclosep)
#define _cleanup_error_ _cleanup_(cleanup_errorp)

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
static inline void cleanup_strvp(char ***v)
{
	strv_free(*v);
}
#define _cleanup_strv_ _cleanup_(cleanup_strvp)

/* ---- I/O ---- */
/* write(2) the whole buffer, retrying on EINTR and short writes. */
int write_all(int fd, const void *data, size_t len);
/* read(2) until len bytes or end of file; returns bytes read or -1. */
ssize_t read_full(int fd, void *data, size_t len);
/* pread(2) until len bytes or end of file. */
ssize_t pread_full(int fd, void *data, size_t len, off_t off);
/* Read a whole file relative to dirfd, at most max bytes (a larger file, or
 * one that is not a regular file, is an OCITREE_ERROR_INVALID error naming
 * what; a FIFO fails at once). */
int read_file_at(int dirfd, const char *name, size_t max, struct buf *out, const char *what,
		 struct ocitree_error **err);
/* Create name in dirfd atomically: write to a temporary file in the same
 * directory, fsync, rename over name, fsync the directory. */
int write_file_atomic_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			 struct ocitree_error **err);
/* As write_file_atomic_at(), the new file given to uid:gid first (both
 * (uid_t)-1 / (gid_t)-1 to leave it the caller's). */
int write_file_atomic_owned_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode, uid_t uid,
			       gid_t gid, struct ocitree_error **err);
/* Open a new temporary file in dirfd named ".ocitree-tmp.<tag>.XXXXXX";
 * *name receives the name (caller frees).  Returns the fd or -1. */
int open_tmpfile_at(int dirfd, const char *tag, char **name, struct ocitree_error **err);
int fsync_dir_at(int dirfd, const char *name);

/* The prefix of every temporary file ocitree creates inside a layout. */
#define OCITREE_TMP_PREFIX ".ocitree-tmp."

/* ---- time ----
 * Timestamps in image JSON are RFC 3339 with optional fractional seconds.
 * ocitree writes UTC with nanoseconds trimmed of trailing zeros, as Go's
 * time.RFC3339Nano does. */
int time_parse_rfc3339(const char *s, struct timespec *out);
char *time_format_rfc3339(const struct timespec *ts);
/* s as umoci writes a time it was given (Go's time.Parse(RFC3339Nano)
 * then MarshalJSON): the offset kept as given ("+11:00" stays), a zero
 * offset written "Z", the fraction cut to nanoseconds and trimmed of
 * trailing zeros.  NULL when Go would refuse s: lower-case 't' or 'z', a
 * space for 'T', second 60, a day the month does not have.  The caller
 * frees the result. */
char *time_canonical_rfc3339(const char *s);
/* Now, or SOURCE_DATE_EPOCH when it is set (and valid). */
struct timespec time_now_or_source_date_epoch(void);

/* ---- logging (internal side) ---- */
#define log_debug(...) ocitree_log(OCITREE_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) ocitree_log(OCITREE_LOG_INFO, __VA_ARGS__)
#define log_warn(...) ocitree_log(OCITREE_LOG_WARN, __VA_ARGS__)


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

/* ---- inode number -> path ----
 * Open addressing; owns copies of its paths.  The first path put for an
 * inode stays (the first name of a hardlinked file). */
struct inomap {
	struct inomap_ent {
		uint64_t ino;
		char *path;
	} *v;
	size_t cap, n;
};
void inomap_put(struct inomap *m, uint64_t ino, const char *path);
/* The path of ino, or NULL. */
const char *inomap_get(const struct inomap *m, uint64_t ino);
void inomap_free(struct inomap *m);

#endif
