/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control protocol of a writable mount: how `ocitree commit MOUNTPOINT`
 * asks the mount's daemon to commit (it holds the upper directory and
 * freezes writes meanwhile).
 *
 * The daemon listens on a unix socket, OCITREE_CONTROL_SOCKET in the upper
 * directory's work directory (mode 0600; the daemon also checks the peer's
 * uid).  The mount root shows the work directory's path in the virtual
 * xattr OCITREE_CONTROL_XATTR, which is how a client finds the socket from
 * the mountpoint.  A client sends one request, a JSON object on one line,
 * and shuts down its writing side; the daemon answers with one JSON object
 * on one line and closes the connection:
 *   {"op":"commit","layout":"/abs/layout","tag":"t","compression":"gzip",
 *    "clear":false,"history":{"created":"...","created_by":"..."}}
 *   {"manifest":"sha256:..","layer":"sha256:..","tag":"t","entries":3,"ok":true}
 *   {"ok":false,"error":"message","kind":2}
 * Only a daemon of the same build is spoken to: there is no versioning.
 */
#ifndef OCITREE_CONTROL_H
#define OCITREE_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ocitree/error.h"
#include "ocitree/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The virtual xattr on the root of a writable mount: the work directory. */
#define OCITREE_CONTROL_XATTR "user.ocitree.workdir"
/* The socket's name in the work directory. */
#define OCITREE_CONTROL_SOCKET "control"

enum ocitree_control_op {
	OCITREE_CONTROL_COMMIT = 0, /* commit the upper directory (ocitree_upper_commit) */
};

/* A request.  Decoded ones own their strings (release them with
 * ocitree_control_request_clear()); one built for encoding may point at
 * the caller's strings and is not cleared. */
struct ocitree_control_request {
	enum ocitree_control_op op;
	char *layout; /* the layout to commit into; the daemon checks it is the mount's */
	char *tag;    /* the tag to set, NULL: the tag the image was mounted from */
	enum ocitree_compression compression;
	bool clear;   /* empty the upper directory and move the mount onto the new image */
	bool has_history;
	struct ocitree_history history; /* the entry to add when has_history (empty_layer is not sent) */
};
void ocitree_control_request_clear(struct ocitree_control_request *r);

/* The answer to a commit.  Decoded ones own their strings (release them
 * with ocitree_control_reply_clear()); one built for encoding may point at
 * the caller's strings. */
struct ocitree_control_reply {
	char *manifest;   /* the new image's manifest digest */
	char *layer;      /* its new layer, "" (or NULL) when nothing changed */
	char *tag;        /* the tag that now points at it */
	uint64_t entries; /* tar entries written */
};
void ocitree_control_reply_clear(struct ocitree_control_reply *r);

/* The request as one line of JSON, without the newline.  Caller frees. */
char *ocitree_control_request_encode(const struct ocitree_control_request *r);

/* Parse a request (text need not be NUL-terminated).  Malformed JSON or a
 * missing or mistyped field is an OCITREE_ERROR_INVALID error naming it
 * ("request: ..."), an unknown op OCITREE_ERROR_UNSUPPORTED, an unknown
 * compression OCITREE_ERROR_USAGE.  On failure *out is left cleared. */
int ocitree_control_request_decode(const char *text, size_t len, struct ocitree_control_request *out,
				   struct ocitree_error **err);

/* The answer as one line of JSON, without the newline: r when failure is
 * NULL, else the failure's message and kind (r is then ignored and may be
 * NULL).  Caller frees. */
char *ocitree_control_reply_encode(const struct ocitree_control_reply *r, const struct ocitree_error *failure);

/* Parse an answer.  An error answer becomes an error of the kind and with
 * the message the daemon sent (OCITREE_ERROR_FAILED when the kind is
 * missing or unknown).  Anything else that is not a well-formed answer is
 * an OCITREE_ERROR_INVALID error that says so ("the daemon's answer: ...").
 * On failure *out is left cleared. */
int ocitree_control_reply_decode(const char *text, size_t len, struct ocitree_control_reply *out,
				 struct ocitree_error **err);

/* ---- the client ---- */

/* Send req to the daemon of the writable mount at mountpoint and wait for
 * its answer, at most timeout_ms milliseconds after sending (<= 0: as long
 * as the daemon works; a commit takes time in proportion to the change).
 * Before sending, the mount is synced (so pages written through shared
 * mappings reach the daemon) and a relative req->layout is made absolute
 * (the daemon has another working directory).  A mountpoint that is not a
 * writable ocitree mount is an OCITREE_ERROR_INVALID error; an answer that
 * does not come in time, or a connection closed without one, an
 * OCITREE_ERROR_FAILED error; an error answer is returned as an error (see
 * ocitree_control_reply_decode()).  On success *out holds the answer. */
int ocitree_control_call(const char *mountpoint, const struct ocitree_control_request *req, int timeout_ms,
			 struct ocitree_control_reply *out, struct ocitree_error **err);

/* ---- the daemon ---- */

/* Listen on the control socket of the work directory work_fd (a stale
 * socket of a dead daemon is replaced).  Returns the listening fd (close
 * it, then ocitree_control_unlisten(), when done) or -1. */
int ocitree_control_listen(int work_fd, struct ocitree_error **err);

/* Remove the control socket from the work directory. */
void ocitree_control_unlisten(int work_fd);

/* Read one request from the connection fd (at most 1 MiB, waiting at most
 * 30 seconds for it) and decode it.  An empty request is an
 * OCITREE_ERROR_INVALID error; see ocitree_control_request_decode(). */
int ocitree_control_read_request(int fd, struct ocitree_control_request *out, struct ocitree_error **err);

/* Send the answer (see ocitree_control_reply_encode()) on the connection
 * fd.  Returns 0 or -1 with errno set (the client went away). */
int ocitree_control_send_reply(int fd, const struct ocitree_control_reply *r, const struct ocitree_error *failure);

#ifdef __cplusplus
}
#endif
#endif
