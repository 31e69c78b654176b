/* SPDX-License-Identifier: Apache-2.0 */
/* The error object of ocitree/error.h.  It needs only the allocators of
 * common.h, never util.h: util.c reports errors, so errors must not depend
 * on it. */
#include "config.h"

#include <stdarg.h>

#include "common.h"
#include "ocitree/error.h"

static int make(struct ocitree_error **err, enum ocitree_error_kind kind, int errnum, const char *fmt, va_list ap)
{
	if (!err)
		return -1;
	char *m = xvasprintf(fmt, ap);
	if (errnum) {
		char *full = xasprintf("%s: %s", m, strerror(errnum));
		free(m);
		m = full;
	}
	ocitree_error_free(*err);
	struct ocitree_error *e = xmalloc(sizeof(*e));
	e->kind = kind;
	e->errnum = errnum;
	e->msg = m;
	*err = e;
	return -1;
}

OCITREE_EXPORT int ocitree_error_set(struct ocitree_error **err, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	enum ocitree_error_kind kind = OCITREE_ERROR_FAILED;
	if (errnum == ENOENT)
		kind = OCITREE_ERROR_NOT_FOUND;
	else if (errnum == EEXIST)
		kind = OCITREE_ERROR_EXISTS;
	make(err, kind, errnum, fmt, ap);
	va_end(ap);
	return -1;
}

OCITREE_EXPORT int ocitree_error_setk(struct ocitree_error **err, enum ocitree_error_kind kind, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	make(err, kind, 0, fmt, ap);
	va_end(ap);
	return -1;
}

OCITREE_EXPORT int ocitree_error_prefix(struct ocitree_error **err, const char *fmt, ...)
{
	if (!err || !*err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	char *p = xvasprintf(fmt, ap);
	va_end(ap);
	char *m = xasprintf("%s: %s", p, (*err)->msg);
	free(p);
	free((*err)->msg);
	(*err)->msg = m;
	return -1;
}

OCITREE_EXPORT int ocitree_error_errno(const struct ocitree_error *e)
{
	if (!e)
		return EIO;
	if (e->errnum)
		return e->errnum;
	switch (e->kind) {
	case OCITREE_ERROR_NOT_FOUND:
		return ENOENT;
	case OCITREE_ERROR_INVALID:
		return EINVAL;
	case OCITREE_ERROR_EXISTS:
		return EEXIST;
	case OCITREE_ERROR_UNSUPPORTED:
		return ENOTSUP;
	case OCITREE_ERROR_USAGE:
		return EINVAL;
	case OCITREE_ERROR_DIGEST:
	case OCITREE_ERROR_FAILED:
	default:
		return EIO;
	}
}

OCITREE_EXPORT void ocitree_error_free(struct ocitree_error *e)
{
	if (!e)
		return;
	free(e->msg);
	free(e);
}
