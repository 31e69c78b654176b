/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: what repack reads from a bundle directory that a user may
 * have edited: the state record (ocitree.state) and umoci's mtree.  The
 * first byte picks the parser (even: state, odd: mtree), the rest is the
 * file.  A tree that parses must be a sane tree (names that are one path
 * component each, a directory at the root and above every child) and must
 * survive being written and read again: the second writing is the same as
 * the first.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>

#include "bundle-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static int dirfd_ = -1;

static void fail(const char *what)
{
	fprintf(stderr, "fuzz-state: %s\n", what);
	abort();
}

static void cleanup(void)
{
	if (dirfd_ < 0)
		return;
	DIR *d = fdopendir(dirfd_);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.' || (e->d_name[1] && strcmp(e->d_name, "..") != 0))
			unlinkat(dirfd(d), e->d_name, 0);
	if (d)
		closedir(d);
	rmdir(dir);
}

static void setup(void)
{
	if (dirfd_ >= 0)
		return;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(dir, sizeof(dir), "%.40s/fuzz-state.XXXXXX", base);
	if (!mkdtemp(dir) || (dirfd_ = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		fail("cannot make a scratch directory");
	atexit(cleanup);
}

static void check_node(const struct tnode *n, size_t depth)
{
	if (depth > 100000)
		fail("tree too deep");
	if (n->parent) {
		const char *s = n->name;
		if (!*s || strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strchr(s, '/'))
			fail("a node name that is not one path component");
		if (!S_ISDIR(n->parent->mode))
			fail("a child of a non-directory");
	} else if (!S_ISDIR(n->mode)) {
		fail("the root is not a directory");
	}
	for (const struct tnode *c = n->first_child; c; c = c->next_sibling)
		check_node(c, depth + 1);
}

/* Write t, read it back, write again: both writings must be the same. */
static void round_trip(struct tree *t, bool mtree, const char *digest)
{
	struct ocitree_error *err = NULL;
	char d2[OCITREE_DIGEST_MAX];
	struct buf a = BUF_INIT, b = BUF_INIT;
	int r = mtree ? mtree_write_at(dirfd_, "w1", t, "fuzz", &err) : state_write_at(dirfd_, "w1", t, digest, &err);
	if (r < 0)
		fail(err->msg);
	struct tree *t2 = mtree ? mtree_read_at(dirfd_, "w1", &err) : state_read_at(dirfd_, "w1", d2, &err);
	if (!t2) {
		fprintf(stderr, "%s\n", err->msg);
		fail("what was written does not read back");
	}
	if (!mtree && strcmp(d2, digest) != 0)
		fail("manifest digest changed");
	r = mtree ? mtree_write_at(dirfd_, "w2", t2, "fuzz", &err) : state_write_at(dirfd_, "w2", t2, digest, &err);
	if (r < 0)
		fail(err->msg);
	if (read_file_at(dirfd_, "w1", SIZE_MAX, &a, "w1", &err) < 0 || read_file_at(dirfd_, "w2", SIZE_MAX, &b, "w2", &err) < 0)
		fail("read back");
	/* an mtree's comment header has the date: compare what follows it */
	const char *pa = a.data, *pb = b.data;
	if (mtree) {
		pa = strstr(pa, "\n\n");
		pb = strstr(pb, "\n\n");
		if (!pa || !pb)
			fail("mtree without entries");
	}
	if (strcmp(pa, pb) != 0) {
		fprintf(stderr, "first:\n%s\nsecond:\n%s\n", pa, pb);
		fail("not idempotent");
	}
	tree_free(t2);
	buf_free(&a);
	buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	setup();
	bool mtree = data[0] & 1;
	int fd = openat(dirfd_, "in", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write_all(fd, data + 1, size - 1) < 0)
		fail("write input");
	close(fd);
	struct ocitree_error *err = NULL;
	char digest[OCITREE_DIGEST_MAX] = "";
	struct tree *t = mtree ? mtree_read_at(dirfd_, "in", &err) : state_read_at(dirfd_, "in", digest, &err);
	if (t) {
		check_node(t->root, 0);
		round_trip(t, mtree, digest);
		tree_free(t);
	} else if (!err || !err->msg || !*err->msg) {
		fail("an error without a message");
	}
	ocitree_error_free(err);
	return 0;
}
