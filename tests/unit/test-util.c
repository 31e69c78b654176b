/* SPDX-License-Identifier: Apache-2.0 */
#include "config.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "ocitree/digest.h"
#include "ocitree/model.h"
#include "tap.h"
#include "util.h"

static void test_buf(void)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, "abc");
	buf_printf(&b, "-%d-", 42);
	buf_append(&b, "xyz", 2);
	is_str(b.data, "abc-42-xy", "buf accumulates text");
	is_int(b.len, 9, "buf length");
	for (int i = 0; i < 10000; i++)
		buf_puts(&b, "0123456789");
	is_int(b.len, 100009, "buf grows");
	ok(b.data[b.len] == '\0', "buf stays NUL-terminated");
	char *s = buf_steal(&b);
	ok(b.data == NULL && b.len == 0, "buf_steal empties the buffer");
	free(s);
	buf_free(&b);
}

static void test_time(void)
{
	struct timespec ts;
	ok(ocitree_time_parse("2024-01-02T03:04:05Z", &ts) == 0 && ts.tv_sec == 1704164645 && ts.tv_nsec == 0,
	   "parse a plain UTC time");
	ok(ocitree_time_parse("2024-01-02T03:04:05.5Z", &ts) == 0 && ts.tv_nsec == 500000000, "parse a fraction");
	ok(ocitree_time_parse("2024-01-02T05:04:05+02:00", &ts) == 0 && ts.tv_sec == 1704164645,
	   "parse an offset");
	ok(ocitree_time_parse("1969-12-31T23:59:59Z", &ts) == 0 && ts.tv_sec == -1, "parse before the epoch");
	ok(ocitree_time_parse("2024-01-02 03:04:05", &ts) < 0, "reject a time without zone");
	ok(ocitree_time_parse("2024-13-02T03:04:05Z", &ts) < 0, "reject month 13");
	ok(ocitree_time_parse("2024-01-02T03:04:05Zjunk", &ts) < 0, "reject trailing junk");
	ok(ocitree_time_parse("yesterday", &ts) < 0, "reject prose");
	struct timespec t = {1704164645, 120000000};
	char *s = ocitree_time_format(&t);
	is_str(s, "2024-01-02T03:04:05.12Z", "format trims trailing zeros like Go");
	free(s);
	t.tv_nsec = 0;
	s = ocitree_time_format(&t);
	is_str(s, "2024-01-02T03:04:05Z", "format whole seconds");
	free(s);
	setenv("SOURCE_DATE_EPOCH", "1000", 1);
	ts = ocitree_time_now();
	ok(ts.tv_sec == 1000 && ts.tv_nsec == 0, "SOURCE_DATE_EPOCH sets now");
	unsetenv("SOURCE_DATE_EPOCH");
	/* a deadline: normalised, and as far ahead as asked */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct timespec d = realtime_in_ms(1950);
	long long ahead = (d.tv_sec - now.tv_sec) * 1000000000LL + (d.tv_nsec - now.tv_nsec);
	ok(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L && ahead >= 1950000000LL && ahead < 2950000000LL,
	   "realtime_in_ms: a normalised deadline 1.95 s ahead");
}

static void test_strset(void)
{
	struct strset s = {0};
	char name[32];
	int added = 0;
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "k%d", i % 2500);
		added += strset_add(&s, name);
	}
	is_int(added, 2500, "strset adds each string once");
	ok(strset_has(&s, "k0") && strset_has(&s, "k2499") && !strset_has(&s, "k2500"), "strset membership");
	strset_free(&s);
}

static void test_inomap(void)
{
	struct inomap m = {0};
	ok(inomap_get(&m, 1) == NULL, "inomap: empty");
	char path[32];
	/* inode numbers far apart and close together, each put twice */
	for (int round = 0; round < 2; round++) {
		for (uint64_t i = 0; i < 3000; i++) {
			snprintf(path, sizeof(path), "%s%ju", round ? "second-" : "p", (uintmax_t)i);
			inomap_put(&m, i * 0x100000001ULL, path);
		}
	}
	bool good = m.n == 3000;
	for (uint64_t i = 0; good && i < 3000; i++) {
		snprintf(path, sizeof(path), "p%ju", (uintmax_t)i);
		const char *got = inomap_get(&m, i * 0x100000001ULL);
		good = got && strcmp(got, path) == 0;
	}
	ok(good, "inomap: every inode keeps its first path (%zu entries)", m.n);
	ok(inomap_get(&m, 7) == NULL, "inomap: an inode never put is not there");
	inomap_free(&m);
	ok(m.n == 0 && inomap_get(&m, 0) == NULL, "inomap: freed is empty");
}

static void test_digest(void)
{
	char d[OCITREE_DIGEST_MAX];
	ocitree_digest_sha256("", 0, d);
	is_str(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha256 of nothing");
	ocitree_digest_sha256("abc", 3, d);
	is_str(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256 of abc");
	struct ocitree_hasher *h = ocitree_hasher_new("sha512");
	ocitree_hasher_update(h, "abc", 3);
	ocitree_hasher_final(h, d);
	ocitree_hasher_free(h);
	ok(str_has_prefix(d, "sha512:ddaf35a193617aba") && strlen(d) == 7 + 128, "sha512 of abc");
	ok(ocitree_hasher_new("md5") == NULL, "unknown hash algorithm refused");
	struct ocitree_error *err = NULL;
	ok(ocitree_digest_check("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", &err) == 0,
	   "valid digest accepted");
	ok(ocitree_digest_check("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", &err) < 0 &&
		   err->kind == OCITREE_ERROR_INVALID,
	   "upper-case hex refused");
	ocitree_error_free(err), err = NULL;
	ok(ocitree_digest_check("sha256:abc", &err) < 0 && strstr(err->msg, "64 hex digits"), "short digest refused");
	ocitree_error_free(err), err = NULL;
	ok(ocitree_digest_check("sha384:abcd", &err) < 0 && err->kind == OCITREE_ERROR_UNSUPPORTED,
	   "unknown algorithm is unsupported, not malformed");
	ocitree_error_free(err), err = NULL;
	ok(ocitree_digest_check("sha256:../../etc/passwd", &err) < 0, "path in a digest refused");
	ocitree_error_free(err), err = NULL;
	ok(ocitree_digest_check("nocolon", &err) < 0, "digest without algorithm refused");
	ocitree_error_free(err);
}

static void test_errors(void)
{
	struct ocitree_error *err = NULL;
	ok(ocitree_error_set(&err, ENOENT, "open '%s'", "x") == -1, "error_set returns -1");
	is_str(err->msg, "open 'x': No such file or directory", "errno text appended");
	is_int(err->kind, OCITREE_ERROR_NOT_FOUND, "ENOENT is not-found");
	ocitree_error_prefix(&err, "layout '%s'", "L");
	is_str(err->msg, "layout 'L': open 'x': No such file or directory", "context is prepended");
	is_int(ocitree_error_errno(err), ENOENT, "errno kept");
	ocitree_error_free(err);
	err = NULL;
	ocitree_error_setk(&err, OCITREE_ERROR_DIGEST, "bad");
	is_int(ocitree_error_errno(err), EIO, "a digest mismatch maps to EIO");
	ocitree_error_free(err);
	ok(ocitree_error_set(NULL, EIO, "ignored") == -1, "a NULL error pointer is allowed");
}

/* Out of memory: one message on stderr naming what ran out, then abort (a
 * core to look at, not an exit status a caller might take for an error). */
static void test_oom(void)
{
	int pfd[2];
	if (pipe(pfd) < 0) {
		ok(0, "pipe: %s", strerror(errno));
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		struct rlimit none = {0, 0};
		setrlimit(RLIMIT_CORE, &none);
		dup2(pfd[1], 2);
		xcheck(NULL, "test allocator");
		_exit(0); /* not reached when xcheck works */
	}
	close(pfd[1]);
	char msg[256] = "";
	ssize_t n = read_full(pfd[0], msg, sizeof(msg) - 1);
	close(pfd[0]);
	msg[n > 0 ? n : 0] = '\0';
	int status = 0;
	waitpid(pid, &status, 0);
	ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "xcheck(NULL) aborts (status %#x)", status);
	is_str(msg, "ocitree: out of memory (test allocator)\n", "and says what ran out");
}

int main(void)
{
	test_buf();
	test_time();
	test_strset();
	test_inomap();
	test_digest();
	test_errors();
	test_oom();
	return done_testing();
}
