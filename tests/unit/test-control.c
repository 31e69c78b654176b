/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control protocol of a writable mount: requests and answers survive
 * encoding, bad ones give errors that say what is wrong, and the client
 * talks to a daemon stand-in listening in a work directory, found through
 * the xattr on a directory that plays the mount root.
 */
#include "config.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "ocitree/control.h"
#include "tap.h"
#include "util.h"

static bool has(const struct ocitree_error *e, const char *part)
{
	return e && e->msg && strstr(e->msg, part);
}

#define is_error(e, k, part, ...)                                                                                  \
	do {                                                                                                       \
		if (!ok((e) && (e)->kind == (k) && has(e, part), __VA_ARGS__))                                   \
			diag("got kind %d '%s', want kind %d with '%s'", (e) ? (int)(e)->kind : -1,                \
			     (e) ? (e)->msg : "(no error)", (int)(k), part);                                         \
	} while (0)

static void test_request(void)
{
	struct ocitree_control_request r = {.op = OCITREE_CONTROL_COMMIT, .layout = (char *)"/l", .tag = (char *)"t1",
					    .compression = OCITREE_COMPRESSION_ZSTD, .clear = true, .has_history = true,
					    .history = {.created = (char *)"2024-01-02T03:04:05Z", .created_by = (char *)"me",
							.comment = (char *)"a\nb \"q\""}};
	_cleanup_free_ char *text = ocitree_control_request_encode(&r);
	ok(text && !strchr(text, '\n'), "a request is one line");
	struct ocitree_control_request d;
	struct ocitree_error *err = NULL;
	ok(ocitree_control_request_decode(text, strlen(text), &d, &err) == 0, "it decodes");
	is_int(d.op, OCITREE_CONTROL_COMMIT, "op");
	is_str(d.layout, "/l", "layout");
	is_str(d.tag, "t1", "tag");
	is_int(d.compression, OCITREE_COMPRESSION_ZSTD, "compression");
	ok(d.clear && d.has_history, "clear and history");
	is_str(d.history.created, "2024-01-02T03:04:05Z", "history created");
	is_str(d.history.created_by, "me", "history created_by");
	ok(d.history.author == NULL, "no author");
	is_str(d.history.comment, "a\nb \"q\"", "history comment, escaped on the wire");
	ocitree_control_request_clear(&d);

	struct ocitree_control_request r2 = {.op = OCITREE_CONTROL_COMMIT, .layout = (char *)"/l",
					     .compression = OCITREE_COMPRESSION_GZIP};
	_cleanup_free_ char *text2 = ocitree_control_request_encode(&r2);
	ok(ocitree_control_request_decode(text2, strlen(text2), &d, &err) == 0, "a minimal request decodes");
	ok(!d.tag && !d.clear && !d.has_history && d.compression == OCITREE_COMPRESSION_GZIP,
	   "without tag, clear or history");
	ocitree_control_request_clear(&d);

	static const struct {
		const char *text;
		enum ocitree_error_kind kind;
		const char *msg;
	} bad[] = {
		{"{\"op\":", OCITREE_ERROR_INVALID, "parse request: invalid JSON"},
		{"[1]", OCITREE_ERROR_INVALID, "request"},
		{"{}", OCITREE_ERROR_INVALID, "request: missing 'op'"},
		{"{\"op\":\"umount\"}", OCITREE_ERROR_UNSUPPORTED, "unknown request 'umount'"},
		{"{\"op\":\"commit\",\"compression\":\"gzip\"}", OCITREE_ERROR_INVALID, "request: missing 'layout'"},
		{"{\"op\":\"commit\",\"layout\":1,\"compression\":\"gzip\"}", OCITREE_ERROR_INVALID,
		 "request: 'layout' is not a string"},
		{"{\"op\":\"commit\",\"layout\":\"/l\",\"compression\":\"lz4\"}", OCITREE_ERROR_USAGE,
		 "unknown compression 'lz4'"},
		{"{\"op\":\"commit\",\"layout\":\"/l\",\"compression\":\"gzip\",\"clear\":\"yes\"}",
		 OCITREE_ERROR_INVALID, "request: 'clear' is not a boolean"},
		{"{\"op\":\"commit\",\"layout\":\"/l\",\"compression\":\"gzip\",\"history\":{\"author\":[]}}",
		 OCITREE_ERROR_INVALID, "history: 'author' is not a string"},
		{"{\"op\":\"commit\",\"layout\":\"/l\",\"compression\":\"gzip\"} x", OCITREE_ERROR_INVALID,
		 "unexpected data"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		d.layout = (char *)"stale";
		ok(ocitree_control_request_decode(bad[i].text, strlen(bad[i].text), &d, &err) < 0, "refused: %s",
		   bad[i].text);
		is_error(err, bad[i].kind, bad[i].msg, "  with the error that says why");
		ok(!d.layout && !d.tag, "  and nothing left in the request");
		ocitree_error_free(err);
		err = NULL;
	}
}

static void test_reply(void)
{
	struct ocitree_control_reply r = {.manifest = (char *)"sha256:m", .layer = (char *)"sha256:l", .tag = (char *)"t", .entries = 42};
	_cleanup_free_ char *text = ocitree_control_reply_encode(&r, NULL);
	struct ocitree_control_reply d;
	struct ocitree_error *err = NULL;
	ok(text && !strchr(text, '\n'), "an answer is one line");
	ok(ocitree_control_reply_decode(text, strlen(text), &d, &err) == 0, "it decodes");
	is_str(d.manifest, "sha256:m", "manifest");
	is_str(d.layer, "sha256:l", "layer");
	is_str(d.tag, "t", "tag");
	is_int(d.entries, 42, "entries");
	ocitree_control_reply_clear(&d);

	struct ocitree_error *fail = NULL;
	ocitree_error_setk(&fail, OCITREE_ERROR_NOT_FOUND, "tag 'x' not found in layout '/l'");
	_cleanup_free_ char *etext = ocitree_control_reply_encode(NULL, fail);
	ok(ocitree_control_reply_decode(etext, strlen(etext), &d, &err) < 0, "an error answer is an error");
	is_error(err, OCITREE_ERROR_NOT_FOUND, "tag 'x' not found in layout '/l'", "  of the daemon's kind and message");
	ok(err && strcmp(err->msg, fail->msg) == 0, "  the message unchanged");
	ocitree_error_free(err);
	err = NULL;
	ocitree_error_free(fail);

	static const struct {
		const char *text;
		enum ocitree_error_kind kind;
		const char *msg;
	} bad[] = {
		{"", OCITREE_ERROR_INVALID, "parse the daemon's answer"},
		{"Segmentation fault", OCITREE_ERROR_INVALID, "parse the daemon's answer: invalid JSON"},
		{"{\"manifest\":\"sha256:m\",\"tag\":\"t\"}", OCITREE_ERROR_INVALID, "the daemon's answer: 'ok' is missing"},
		{"{\"ok\":1}", OCITREE_ERROR_INVALID, "the daemon's answer: 'ok' is not a boolean"},
		{"{\"ok\":true,\"tag\":\"t\"}", OCITREE_ERROR_INVALID, "the daemon's answer: missing 'manifest'"},
		{"{\"ok\":true,\"manifest\":\"m\",\"tag\":\"t\",\"entries\":-1}", OCITREE_ERROR_INVALID,
		 "'entries' is negative"},
		{"{\"ok\":true,\"manifest\":\"m\",\"tag\":\"t\",\"entries\":\"3\"}", OCITREE_ERROR_INVALID,
		 "'entries' is not an integer"},
		{"{\"ok\":false}", OCITREE_ERROR_FAILED, "the daemon failed"},
		{"{\"ok\":false,\"error\":\"boom\",\"kind\":99}", OCITREE_ERROR_FAILED, "boom"},
		{"{\"ok\":false,\"error\":\"no\",\"kind\":6}", OCITREE_ERROR_USAGE, "no"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		ok(ocitree_control_reply_decode(bad[i].text, strlen(bad[i].text), &d, &err) < 0, "answer refused: %s",
		   bad[i].text);
		is_error(err, bad[i].kind, bad[i].msg, "  with the error that says why");
		ok(!d.manifest && !d.tag && !d.layer, "  and nothing left in the answer");
		ocitree_error_free(err);
		err = NULL;
	}
}

/* ---- a daemon stand-in ---- */

enum daemon_mode { ANSWER_OK, ANSWER_ERROR, HANG_UP, SILENT, GARBAGE };

struct daemon {
	int lfd;
	enum daemon_mode mode;
	struct ocitree_control_request got; /* what it received */
	int read_ok;
};

static void *daemon_main(void *arg)
{
	struct daemon *d = arg;
	int c = accept4(d->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return NULL;
	struct ocitree_error *err = NULL;
	d->read_ok = ocitree_control_read_request(c, &d->got, &err) == 0;
	ocitree_error_free(err);
	err = NULL;
	struct ocitree_control_reply r = {.manifest = (char *)"sha256:new", .layer = (char *)"", .tag = (char *)"mounted", .entries = 7};
	switch (d->mode) {
	case ANSWER_OK:
		ocitree_control_send_reply(c, &r, NULL);
		break;
	case ANSWER_ERROR:
		ocitree_error_setk(&err, OCITREE_ERROR_USAGE, "the mount's image is in layout 'a', not 'b'");
		ocitree_control_send_reply(c, NULL, err);
		ocitree_error_free(err);
		break;
	case HANG_UP:
		break;
	case SILENT:
		/* longer than the client waits */
		usleep(600 * 1000);
		break;
	case GARBAGE:
		if (write_all(c, "<html>\n", 7) < 0)
			diag("write: %s", strerror(errno));
		break;
	}
	close(c);
	return NULL;
}

static int call(const char *mount, int lfd, enum daemon_mode mode, const struct ocitree_control_request *req,
		int timeout_ms, struct ocitree_control_reply *out, struct ocitree_control_request *got,
		struct ocitree_error **err)
{
	struct daemon d = {.lfd = lfd, .mode = mode};
	pthread_t t;
	if (pthread_create(&t, NULL, daemon_main, &d) != 0)
		return -2;
	int r = ocitree_control_call(mount, req, timeout_ms, out, err);
	pthread_join(t, NULL);
	if (got && d.read_ok)
		*got = d.got;
	else
		ocitree_control_request_clear(&d.got);
	return r;
}

static void test_client(const char *tmp)
{
	_cleanup_free_ char *work = xasprintf("%s/work", tmp), *mnt = xasprintf("%s/mnt", tmp),
			    *plain = xasprintf("%s/plain", tmp);
	mkdir(work, 0700);
	mkdir(mnt, 0755);
	mkdir(plain, 0755);
	struct ocitree_error *err = NULL;
	struct ocitree_control_request req = {.op = OCITREE_CONTROL_COMMIT, .layout = (char *)".", .tag = NULL,
					      .compression = OCITREE_COMPRESSION_GZIP};
	struct ocitree_control_reply rep;

	ok(ocitree_control_call(plain, &req, 0, &rep, &err) < 0, "a directory without the xattr is refused");
	is_error(err, OCITREE_ERROR_INVALID, "is not a writable ocitree mount", "  as no writable mount");
	ocitree_error_free(err);
	err = NULL;

	if (setxattr(mnt, OCITREE_CONTROL_XATTR, work, strlen(work), 0) < 0) {
		diag("setxattr %s: %s", OCITREE_CONTROL_XATTR, strerror(errno));
		ok(1, "# SKIP no user xattrs in %s: no client tests", tmp);
		return;
	}
	ok(ocitree_control_call(mnt, &req, 0, &rep, &err) < 0, "no daemon listening: an error");
	is_error(err, OCITREE_ERROR_NOT_FOUND, "connect to the daemon of", "  that says it could not connect");
	ocitree_error_free(err);
	err = NULL;

	_cleanup_close_ int wfd = open(work, O_PATH | O_DIRECTORY | O_CLOEXEC);
	int lfd = ocitree_control_listen(wfd, &err);
	ok(lfd >= 0, "the daemon side listens in the work directory");
	if (lfd < 0) {
		diag("%s", err->msg);
		ocitree_error_free(err);
		return;
	}
	struct stat st;
	ok(fstatat(wfd, OCITREE_CONTROL_SOCKET, &st, 0) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0600,
	   "a socket of mode 0600");

	struct ocitree_control_request got = {0};
	int r = call(mnt, lfd, ANSWER_OK, &req, 0, &rep, &got, &err);
	ok(r == 0, "a commit is answered");
	if (r < 0)
		diag("%s", err->msg);
	is_str(rep.manifest, "sha256:new", "  the manifest comes back");
	is_str(rep.tag, "mounted", "  the tag");
	is_str(rep.layer, "", "  no layer");
	is_int(rep.entries, 7, "  entries");
	_cleanup_free_ char *cwd = realpath(".", NULL);
	is_str(got.layout, cwd, "the daemon gets the layout's absolute path");
	ok(got.tag == NULL, "and no tag when none was given");
	ocitree_control_request_clear(&got);
	ocitree_control_reply_clear(&rep);

	r = call(mnt, lfd, ANSWER_ERROR, &req, 0, &rep, NULL, &err);
	ok(r < 0, "an error answer fails the call");
	is_error(err, OCITREE_ERROR_USAGE, "the mount's image is in layout 'a', not 'b'", "  with the daemon's error");
	ocitree_error_free(err);
	err = NULL;

	r = call(mnt, lfd, HANG_UP, &req, 0, &rep, NULL, &err);
	ok(r < 0, "a daemon that hangs up fails the call");
	is_error(err, OCITREE_ERROR_FAILED, "ended the connection without an answer", "  saying so");
	ocitree_error_free(err);
	err = NULL;

	r = call(mnt, lfd, GARBAGE, &req, 0, &rep, NULL, &err);
	ok(r < 0, "a garbled answer fails the call");
	is_error(err, OCITREE_ERROR_INVALID, "parse the daemon's answer", "  saying so");
	ocitree_error_free(err);
	err = NULL;

	r = call(mnt, lfd, SILENT, &req, 200, &rep, NULL, &err);
	ok(r < 0, "a daemon that does not answer in time fails the call");
	is_error(err, OCITREE_ERROR_FAILED, "did not answer within 200 ms", "  saying so");
	ocitree_error_free(err);
	err = NULL;

	close(lfd);
	ocitree_control_unlisten(wfd);
	ok(fstatat(wfd, OCITREE_CONTROL_SOCKET, &st, 0) < 0 && errno == ENOENT, "the socket is gone after unlisten");
}

static void test_read_request(void)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		diag("socketpair: %s", strerror(errno));
		return;
	}
	struct ocitree_control_request req = {0}, d;
	struct ocitree_error *err = NULL;
	shutdown(sv[1], SHUT_WR);
	ok(ocitree_control_read_request(sv[0], &d, &err) < 0, "an empty request is refused");
	is_error(err, OCITREE_ERROR_INVALID, "empty request", "  as empty");
	ocitree_error_free(err);
	close(sv[0]);
	close(sv[1]);

	/* a client that keeps its side open: the newline ends the request */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	req.layout = (char *)"/x";
	_cleanup_free_ char *text = ocitree_control_request_encode(&req);
	if (write_all(sv[1], text, strlen(text)) < 0 || write_all(sv[1], "\n", 1) < 0)
		diag("write: %s", strerror(errno));
	ok(ocitree_control_read_request(sv[0], &d, &err) == 0, "a request ends at its newline");
	is_str(d.layout, "/x", "  and decodes");
	ocitree_control_request_clear(&d);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	test_request();
	test_reply();
	test_read_request();
	char tmpl[] = "/tmp/ocitree-test-control.XXXXXX";
	char *tmp = mkdtemp(tmpl);
	if (!tmp) {
		diag("mkdtemp: %s", strerror(errno));
		return 1;
	}
	test_client(tmp);
	_cleanup_free_ char *rm = xasprintf("rm -rf '%s'", tmp);
	if (system(rm) != 0)
		diag("cleanup failed");
	return done_testing();
}
