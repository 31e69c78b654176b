/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Errors of libocitree.
 *
 * A fallible function takes `struct ocitree_error **err` as its last argument
 * and returns a negative value (or NULL) on failure, after storing a newly
 * allocated error in *err.  On success *err is left alone.  The caller owns
 * the error and releases it with ocitree_error_free().  err may be NULL when
 * the caller does not want the details.
 *
 * Messages follow git's style: lower case, what failed first, the subject
 * quoted, no full stop, context prepended on the way up:
 *   "open image 'oci:latest': read blob sha256:ab..: No such file or directory"
 */
#ifndef OCITREE_ERROR_H
#define OCITREE_ERROR_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What went wrong, coarsely: callers branch on this, people read msg. */
enum ocitree_error_kind {
	OCITREE_ERROR_FAILED = 0,  /* an operation failed; errnum says why */
	OCITREE_ERROR_NOT_FOUND,   /* a tag, blob, file or entry is missing */
	OCITREE_ERROR_INVALID,     /* malformed input: JSON, names, archives */
	OCITREE_ERROR_DIGEST,      /* content does not match its digest or size */
	OCITREE_ERROR_EXISTS,      /* the thing to create already exists */
	OCITREE_ERROR_UNSUPPORTED, /* valid, but not something ocitree handles */
	OCITREE_ERROR_USAGE,       /* the caller asked for something impossible */
};

struct ocitree_error {
	enum ocitree_error_kind kind;
	int errnum; /* an errno value (positive) or 0 */
	char *msg;  /* the full message, owned by the error */
};

/*
 * Store a new error of kind OCITREE_ERROR_FAILED in *err.  When errnum is
 * not 0, ": strerror(errnum)" is appended.  Returns -1 so that callers can
 * write `return ocitree_error_set(err, errno, "open '%s'", name);`.
 * An error already in *err is freed first.
 */
int ocitree_error_set(struct ocitree_error **err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like ocitree_error_set() with an explicit kind and no errno. */
int ocitree_error_setk(struct ocitree_error **err, enum ocitree_error_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepend context ("fmt: ") to the message of the error in *err, if any.
 * Returns -1. */
int ocitree_error_prefix(struct ocitree_error **err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* An errno value that best describes the error (EIO for a digest mismatch,
 * ENOENT for not found, ...); never 0. */
int ocitree_error_errno(const struct ocitree_error *e);

/* Free an error; accepts NULL. */
void ocitree_error_free(struct ocitree_error *e);

#ifdef __cplusplus
}
#endif
#endif
