/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: the control protocol's decoders (src/lib/control.c), what a
 * mount's daemon reads from any client of its socket and what `ocitree
 * commit MOUNTPOINT` reads back from the daemon.  The first byte picks the
 * side (even: a request, odd: an answer), the rest is the text.  What
 * decodes must encode to text that decodes to the same again; what does
 * not must fail with a message and leave its output cleared.  A request is
 * also read the daemon's way, from a file descriptor, up to its newline.
 */
#include "config.h"

#include <stdint.h>
#include <sys/mman.h>

#include "ocitree/control.h"
#include "cjson-util.h"
#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz-control: %s\n", what);
	abort();
}

static bool same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static void check_failure(const struct ocitree_error *err)
{
	if (!err || !err->msg || !*err->msg)
		fail("a failure without a message");
}

static bool request_cleared(const struct ocitree_control_request *r)
{
	const struct ocitree_history *h = &r->history;
	return !r->layout && !r->tag && !r->clear && !r->has_history && !h->created && !h->created_by && !h->author &&
	       !h->comment;
}

static bool same_request(const struct ocitree_control_request *a, const struct ocitree_control_request *b)
{
	const struct ocitree_history *x = &a->history, *y = &b->history;
	return a->op == b->op && same(a->layout, b->layout) && same(a->tag, b->tag) &&
	       a->compression == b->compression && a->clear == b->clear && a->has_history == b->has_history &&
	       same(x->created, y->created) && same(x->created_by, y->created_by) && same(x->author, y->author) &&
	       same(x->comment, y->comment);
}

/* The request read from a descriptor as the daemon reads its socket:
 * what it holds up to the first newline, decoded. */
static void read_request_fd(const uint8_t *data, size_t size, const struct ocitree_control_request *direct,
                            bool direct_ok)
{
	int fd = memfd_create("fuzz-control", MFD_CLOEXEC);
	if (fd < 0 || write_all(fd, data, size) < 0 || lseek(fd, 0, SEEK_SET) < 0)
		fail("cannot make the request file");
	struct ocitree_control_request r;
	struct ocitree_error *err = NULL;
	int ok = ocitree_control_read_request(fd, &r, &err) == 0;
	close(fd);
	if (!ok) {
		check_failure(err);
		if (!request_cleared(&r))
			fail("a failed read left a request behind");
	}
	/* without a newline the whole text is the request */
	if (!memchr(data, '\n', size) && ok != direct_ok)
		fail("reading and decoding the same text disagree");
	if (!memchr(data, '\n', size) && ok && !same_request(&r, direct))
		fail("reading and decoding the same text give different requests");
	ocitree_control_request_clear(&r);
	ocitree_error_free(err);
}

static void fuzz_request(const char *text, size_t len, const uint8_t *raw, size_t raw_len)
{
	struct ocitree_control_request r, again;
	struct ocitree_error *err = NULL;
	bool ok = ocitree_control_request_decode(text, len, &r, &err) == 0;
	if (ok) {
		char *enc = ocitree_control_request_encode(&r);
		if (ocitree_control_request_decode(enc, strlen(enc), &again, &err) < 0) {
			fprintf(stderr, "%s\n%s\n", enc, err->msg);
			fail("an encoded request does not decode");
		}
		if (!same_request(&r, &again)) {
			fprintf(stderr, "%s\n", enc);
			fail("a request changed on its way through encoding");
		}
		ocitree_control_request_clear(&again);
		free(enc);
	} else {
		check_failure(err);
		if (!request_cleared(&r))
			fail("a failed decode left a request behind");
	}
	read_request_fd(raw, raw_len, &r, ok);
	ocitree_control_request_clear(&r);
	ocitree_error_free(err);
}

static bool same_reply(const struct ocitree_control_reply *a, const struct ocitree_control_reply *b)
{
	/* no layer and an empty one are the same answer (nothing changed) */
	const char *la = a->layer ? a->layer : "", *lb = b->layer ? b->layer : "";
	return same(a->manifest, b->manifest) && strcmp(la, lb) == 0 && same(a->tag, b->tag) &&
	       a->entries == b->entries;
}

static void fuzz_reply(const char *text, size_t len)
{
	struct ocitree_control_reply r, again;
	struct ocitree_error *err = NULL, *err2 = NULL;
	if (ocitree_control_reply_decode(text, len, &r, &err) == 0) {
		char *enc = ocitree_control_reply_encode(&r, NULL);
		if (ocitree_control_reply_decode(enc, strlen(enc), &again, &err) < 0) {
			fprintf(stderr, "%s\n%s\n", enc, err->msg);
			fail("an encoded answer does not decode");
		}
		if (!same_reply(&r, &again)) {
			fprintf(stderr, "%s\n", enc);
			fail("an answer changed on its way through encoding");
		}
		ocitree_control_reply_clear(&again);
		ocitree_control_reply_clear(&r);
		free(enc);
		return;
	}
	check_failure(err);
	if (r.manifest || r.layer || r.tag || r.entries)
		fail("a failed decode left an answer behind");
	/* the failure sent on as the daemon's error answer arrives as it was */
	char *enc = ocitree_control_reply_encode(NULL, err);
	if (ocitree_control_reply_decode(enc, strlen(enc), &again, &err2) == 0)
		fail("an error answer decodes as a success");
	/* up to what JSON carries: text, each byte that is not UTF-8 read as
	 * U+FFFD (a message may quote bytes of the input) */
	char *fixed = err->msg ? json_utf8_sanitized(err->msg) : NULL;
	const char *want = fixed ? fixed : err->msg;
	if (!err2 || err2->kind != err->kind || !same(err2->msg, want)) {
		fprintf(stderr, "%s\n%s\n", enc, err2 ? err2->msg : "(no error)");
		fail("an error changed on its way through an answer");
	}
	cJSON_free(fixed);
	free(enc);
	ocitree_error_free(err);
	ocitree_error_free(err2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* an exact copy, not NUL-terminated: a read past its end is caught */
	size_t len = size - 1;
	char *text = xmalloc(len ? len : 1);
	memcpy(text, data + 1, len);
	if (data[0] & 1)
		fuzz_reply(text, len);
	else
		fuzz_request(text, len, data + 1, len);
	free(text);
	return 0;
}
