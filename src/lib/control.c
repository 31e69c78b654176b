/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control protocol of a writable mount (see ocitree/control.h): both
 * ends' encoding of requests and answers, the client, and the socket
 * plumbing of the daemon.  What a request does is the daemon's business.
 */
#include "config.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <time.h>

#include "json.h"
#include "ocitree/control.h"

/* what names the daemon's answer in errors */
#define ANSWER "the daemon's answer"
/* a request is a few paths and a history entry */
#define REQUEST_MAX       (1u << 20)
#define REQUEST_TIMEOUT_S 30

OCITREE_EXPORT void ocitree_control_request_clear(struct ocitree_control_request *r)
{
	if (!r)
		return;
	free(r->layout);
	free(r->tag);
	ocitree_history_clear(&r->history);
	*r = (struct ocitree_control_request){0};
}

OCITREE_EXPORT void ocitree_control_reply_clear(struct ocitree_control_reply *r)
{
	if (!r)
		return;
	free(r->manifest);
	free(r->layer);
	free(r->tag);
	*r = (struct ocitree_control_reply){0};
}

static const char *op_name(enum ocitree_control_op op)
{
	switch (op) {
	case OCITREE_CONTROL_COMMIT: return "commit";
	}
	return "unknown";
}

OCITREE_EXPORT char *ocitree_control_request_encode(const struct ocitree_control_request *r)
{
	_cleanup_json_ cJSON *req = json_object();
	json_add(req, "op", json_string(op_name(r->op)));
	json_add(req, "layout", json_string(r->layout));
	if (r->tag)
		json_add(req, "tag", json_string(r->tag));
	json_add(req, "compression", json_string(ocitree_compression_name(r->compression)));
	json_add(req, "clear", json_bool(r->clear));
	if (r->has_history) {
		const struct ocitree_history *h = &r->history;
		cJSON *hj = json_object();
		if (h->created)
			json_add(hj, "created", json_string(h->created));
		if (h->created_by)
			json_add(hj, "created_by", json_string(h->created_by));
		if (h->author)
			json_add(hj, "author", json_string(h->author));
		if (h->comment)
			json_add(hj, "comment", json_string(h->comment));
		json_add(req, "history", hj);
	}
	return json_print(req);
}

/* An optional string field, copied. */
static int dup_string(const cJSON *obj, const char *key, bool required, char **out, const char *what,
		      struct ocitree_error **err)
{
	const char *v = NULL;
	if (json_get_string(obj, key, required, &v, what, err) < 0)
		return -1;
	*out = xstrdup_or_null(v);
	return 0;
}

static int decode_request(const cJSON *req, struct ocitree_control_request *out, struct ocitree_error **err)
{
	const char *op = NULL, *comp = NULL;
	if (json_get_string(req, "op", true, &op, "request", err) < 0)
		return -1;
	if (strcmp(op, "commit") != 0)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "unknown request '%s'", op);
	out->op = OCITREE_CONTROL_COMMIT;
	if (dup_string(req, "layout", true, &out->layout, "request", err) < 0 ||
	    dup_string(req, "tag", false, &out->tag, "request", err) < 0 ||
	    json_get_string(req, "compression", true, &comp, "request", err) < 0 ||
	    json_get_bool(req, "clear", &out->clear, "request", err) < 0)
		return -1;
	if (ocitree_compression_parse(comp, &out->compression) < 0)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "unknown compression '%s'", comp);
	const cJSON *hj = cJSON_GetObjectItemCaseSensitive(req, "history");
	if (cJSON_IsObject(hj)) {
		struct ocitree_history *h = &out->history;
		out->has_history = true;
		if (dup_string(hj, "created", false, &h->created, "history", err) < 0 ||
		    dup_string(hj, "created_by", false, &h->created_by, "history", err) < 0 ||
		    dup_string(hj, "author", false, &h->author, "history", err) < 0 ||
		    dup_string(hj, "comment", false, &h->comment, "history", err) < 0)
			return -1;
	}
	return 0;
}

OCITREE_EXPORT int ocitree_control_request_decode(const char *text, size_t len, struct ocitree_control_request *out,
						  struct ocitree_error **err)
{
	*out = (struct ocitree_control_request){0};
	_cleanup_json_ cJSON *req = json_parse_object(text, len, "request", err);
	if (!req)
		return -1;
	if (decode_request(req, out, err) < 0) {
		ocitree_control_request_clear(out);
		return -1;
	}
	return 0;
}

OCITREE_EXPORT char *ocitree_control_reply_encode(const struct ocitree_control_reply *r,
						  const struct ocitree_error *failure)
{
	_cleanup_json_ cJSON *resp = json_object();
	if (failure) {
		json_add(resp, "ok", json_bool(false));
		json_add(resp, "error", json_string(failure->msg ? failure->msg : "the daemon failed"));
		json_add(resp, "kind", json_int64(failure->kind));
	} else {
		json_add(resp, "ok", json_bool(true));
		json_add(resp, "manifest", json_string(r->manifest));
		json_add(resp, "layer", json_string(r->layer ? r->layer : ""));
		json_add(resp, "tag", json_string(r->tag));
		json_add(resp, "entries", json_int64((int64_t)r->entries));
	}
	return json_print(resp);
}

static int decode_reply(const cJSON *resp, struct ocitree_control_reply *out, struct ocitree_error **err)
{
	const cJSON *okj = cJSON_GetObjectItemCaseSensitive(resp, "ok");
	if (!cJSON_IsBool(okj))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: '%s' is %s", ANSWER, "ok",
					  okj ? "not a boolean" : "missing");
	if (!cJSON_IsTrue(okj)) {
		/* the daemon's error, as it was there: its message says it all */
		const char *msg = NULL;
		int64_t kind = OCITREE_ERROR_FAILED;
		json_get_string(resp, "error", false, &msg, ANSWER, NULL);
		json_get_int64(resp, "kind", false, &kind, ANSWER, NULL);
		if (kind < OCITREE_ERROR_FAILED || kind > OCITREE_ERROR_USAGE)
			kind = OCITREE_ERROR_FAILED;
		return ocitree_error_setk(err, (enum ocitree_error_kind)kind, "%s",
					  msg && *msg ? msg : "the daemon failed");
	}
	int64_t entries = 0;
	if (dup_string(resp, "manifest", true, &out->manifest, ANSWER, err) < 0 ||
	    dup_string(resp, "tag", true, &out->tag, ANSWER, err) < 0 ||
	    dup_string(resp, "layer", false, &out->layer, ANSWER, err) < 0 ||
	    json_get_int64(resp, "entries", false, &entries, ANSWER, err) < 0)
		return -1;
	if (entries < 0)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: 'entries' is negative", ANSWER);
	out->entries = (uint64_t)entries;
	return 0;
}

OCITREE_EXPORT int ocitree_control_reply_decode(const char *text, size_t len, struct ocitree_control_reply *out,
						struct ocitree_error **err)
{
	*out = (struct ocitree_control_reply){0};
	_cleanup_json_ cJSON *resp = json_parse_object(text, len, ANSWER, err);
	if (!resp)
		return -1;
	if (decode_reply(resp, out, err) < 0) {
		ocitree_control_reply_clear(out);
		return -1;
	}
	return 0;
}

/* ---- the client ---- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Read the answer to its end (the daemon closes the connection). */
static int read_answer(int s, int timeout_ms, struct buf *b, const char *mountpoint, struct ocitree_error **err)
{
	int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
	for (;;) {
		if (deadline) {
			int64_t left = deadline - now_ms();
			struct pollfd p = {.fd = s, .events = POLLIN};
			int pr = left > 0 ? poll(&p, 1, (int)left) : 0;
			if (pr < 0 && errno == EINTR)
				continue;
			if (pr < 0)
				return ocitree_error_set(err, errno, "read the answer of the daemon of '%s'",
							 mountpoint);
			if (pr == 0)
				return ocitree_error_setk(err, OCITREE_ERROR_FAILED,
							  "the daemon of '%s' did not answer within %d ms", mountpoint,
							  timeout_ms);
		}
		buf_reserve(b, 4096);
		ssize_t r = read(s, b->data + b->len, 4096);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return ocitree_error_set(err, errno, "read the answer of the daemon of '%s'", mountpoint);
		if (r == 0)
			return 0;
		b->len += (size_t)r;
		b->data[b->len] = '\0';
	}
}

OCITREE_EXPORT int ocitree_control_call(const char *mountpoint, const struct ocitree_control_request *req,
					int timeout_ms, struct ocitree_control_reply *out, struct ocitree_error **err)
{
	*out = (struct ocitree_control_reply){0};
	_cleanup_close_ int mfd = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (mfd < 0)
		return ocitree_error_set(err, errno, "open '%s'", mountpoint);
	char workdir[PATH_MAX];
	ssize_t wl = fgetxattr(mfd, OCITREE_CONTROL_XATTR, workdir, sizeof(workdir) - 1);
	if (wl < 0)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
					  "'%s' is not a writable ocitree mount (use --upper DIR after unmounting)",
					  mountpoint);
	workdir[wl] = '\0';
	/* pages written through shared mappings reach the daemon now */
	if (syncfs(mfd) < 0)
		return ocitree_error_set(err, errno, "sync '%s'", mountpoint);
	_cleanup_close_ int wfd = open(workdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (wfd < 0)
		return ocitree_error_set(err, errno, "open work directory '%s'", workdir);
	_cleanup_free_ char *layout = realpath(req->layout, NULL);
	if (!layout)
		return ocitree_error_set(err, errno, "open layout '%s'", req->layout);
	struct ocitree_control_request abs = *req;
	abs.layout = layout;
	_cleanup_free_ char *text = ocitree_control_request_encode(&abs);

	_cleanup_close_ int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return ocitree_error_set(err, errno, "socket");
	/* through /proc: the work directory's path may be longer than sun_path */
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/" OCITREE_CONTROL_SOCKET, wfd);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return ocitree_error_set(err, errno, "connect to the daemon of '%s' (%s/" OCITREE_CONTROL_SOCKET ")",
					 mountpoint, workdir);
	if (write_all(s, text, strlen(text)) < 0 || write_all(s, "\n", 1) < 0)
		return ocitree_error_set(err, errno, "send the request to the daemon of '%s'", mountpoint);
	shutdown(s, SHUT_WR);
	_cleanup_buf_ struct buf b = BUF_INIT;
	if (read_answer(s, timeout_ms, &b, mountpoint, err) < 0)
		return -1;
	if (!b.len)
		return ocitree_error_setk(err, OCITREE_ERROR_FAILED,
					  "the daemon of '%s' ended the connection without an answer (did it die?)",
					  mountpoint);
	return ocitree_control_reply_decode(b.data, b.len, out, err);
}

/* ---- the daemon ---- */

OCITREE_EXPORT int ocitree_control_listen(int work_fd, struct ocitree_error **err)
{
	ocitree_control_unlisten(work_fd); /* a dead daemon's */
	_cleanup_close_ int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return ocitree_error_set(err, errno, "control socket");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/" OCITREE_CONTROL_SOCKET, work_fd);
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return ocitree_error_set(err, errno, "bind the control socket");
	if (fchmodat(work_fd, OCITREE_CONTROL_SOCKET, 0600, 0) < 0 || listen(s, 8) < 0) {
		int e = errno;
		ocitree_control_unlisten(work_fd);
		return ocitree_error_set(err, e, "listen on the control socket");
	}
	return steal_fd(&s);
}

OCITREE_EXPORT void ocitree_control_unlisten(int work_fd)
{
	unlinkat(work_fd, OCITREE_CONTROL_SOCKET, 0);
}

OCITREE_EXPORT int ocitree_control_read_request(int fd, struct ocitree_control_request *out, struct ocitree_error **err)
{
	*out = (struct ocitree_control_request){0};
	struct timeval tv = {REQUEST_TIMEOUT_S, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	_cleanup_buf_ struct buf b = BUF_INIT;
	/* up to the newline: a client need not shut down its side */
	while (b.len < REQUEST_MAX) {
		buf_reserve(&b, 4096);
		ssize_t r = read(fd, b.data + b.len, 4096);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		b.len += (size_t)r;
		b.data[b.len] = '\0';
		if (memchr(b.data, '\n', b.len))
			break;
	}
	if (!b.len)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "empty request");
	return ocitree_control_request_decode(b.data, b.len, out, err);
}

OCITREE_EXPORT int ocitree_control_send_reply(int fd, const struct ocitree_control_reply *r,
					      const struct ocitree_error *failure)
{
	_cleanup_free_ char *text = ocitree_control_reply_encode(r, failure);
	if (write_all(fd, text, strlen(text)) < 0 || write_all(fd, "\n", 1) < 0)
		return -1;
	return 0;
}
