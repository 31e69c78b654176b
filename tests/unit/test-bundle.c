/* SPDX-License-Identifier: Apache-2.0 */
/* Bundle internals: the rootless ownership xattr, id mappings, and the state
 * record, mtree and umoci.json round trips (odd names included). */
#include "config.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "bundle-internal.h"
#include "tap.h"

static bool bytes_are(const uint8_t *got, size_t n, const char *want_hex)
{
	char hex[64] = "";
	for (size_t i = 0; i < n && 2 * i + 2 < sizeof(hex); i++)
		snprintf(hex + 2 * i, 3, "%02x", got[i]);
	if (strcmp(hex, want_hex) != 0) {
		diag("got %s, want %s", hex, want_hex);
		return false;
	}
	return true;
}

static void test_rootless(void)
{
	uint8_t b[12];
	/* the values umoci 0.4.7 wrote for these owners */
	size_t n = rootless_encode(1000, 1000, b);
	ok(bytes_are(b, n, "08e80710e807"), "rootless payload of 1000:1000");
	n = rootless_encode(0, 100, b);
	ok(bytes_are(b, n, "08ffffffff0f1064"), "root uid is written as uint32(-1)");
	n = rootless_encode(65534, 65534, b);
	ok(bytes_are(b, n, "08feff0310feff03"), "rootless payload of 65534:65534");
	is_int(rootless_encode(0, 0, b), 0, "no payload for root:root");

	uint32_t uid = 7, gid = 7;
	n = rootless_encode(0, 100, b);
	ok(rootless_decode(b, n, &uid, &gid) == 0 && uid == 7 && gid == 100, "uint32(-1) leaves the owner alone");
	uid = gid = 0;
	n = rootless_encode(123456, 654321, b);
	ok(rootless_decode(b, n, &uid, &gid) == 0 && uid == 123456 && gid == 654321, "round trip");
	ok(rootless_decode("\x08", 1, &uid, &gid) < 0, "a truncated varint is refused");
	ok(rootless_decode("\x0a\x01\x00", 3, &uid, &gid) < 0, "a length-delimited field is refused");
	ok(rootless_decode("\x08\xff\xff\xff\xff\x1f", 6, &uid, &gid) < 0, "a value above uint32 is refused");
	ok(rootless_decode("", 0, &uid, &gid) == 0, "an empty payload is root");
}

static void test_idmap(void)
{
	struct ocitree_idmap m;
	struct ocitree_error *err = NULL;
	ok(ocitree_idmap_parse("0:1000:65536", &m, &err) == 0 && m.container_id == 0 && m.host_id == 1000 &&
		   m.size == 65536,
	   "parse C:H:S");
	const char *bad[] = {"0:1000", "a:b:c", "0:1:0", "4294967295:0:2", "1:2:3:4", "-1:0:1", "", "0::1"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		ok(ocitree_idmap_parse(bad[i], &m, &err) < 0 && err->kind == OCITREE_ERROR_USAGE, "refuse '%s'", bad[i]);
		ocitree_error_free(err);
		err = NULL;
	}
	struct ocitree_idmap maps[] = {{0, 100000, 1000}, {1000, 5000, 1}};
	is_int(idmap_to_host(maps, 2, 0), 100000, "to host: start of a range");
	is_int(idmap_to_host(maps, 2, 999), 100999, "to host: end of a range");
	is_int(idmap_to_host(maps, 2, 1000), 5000, "to host: second range");
	is_int(idmap_to_host(maps, 2, 1001), -1, "to host: unmapped");
	is_int(idmap_to_container(maps, 2, 5000), 1000, "to container");
	is_int(idmap_to_container(maps, 2, 4999), -1, "to container: unmapped");
	is_int(idmap_to_host(NULL, 0, 42), 42, "no mappings: identity");
}

/* A tree with the names and values that need escaping. */
static struct tree *odd_tree(void)
{
	struct tree *t = tree_new();
	t->root->mode = S_IFDIR | 0755;
	t->root->nlink = 3;
	const char *names[] = {"plain", "with space", "back\\slash", "comma,equals=", "new\nline", "-", "#hash",
			       "\xff\xfe latin", "ünï", "*?[glob"};
	struct tnode *dir = tree_add(t, t->root, "dir");
	dir->mode = S_IFDIR | 02775;
	dir->uid = 1;
	dir->gid = 2;
	dir->nlink = 2;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		struct tnode *n = tree_add(t, i % 2 ? dir : t->root, names[i]);
		n->mode = S_IFREG | 04755;
		n->uid = 1000 + (uint32_t)i;
		n->gid = 2000;
		n->size = i * 1000;
		n->ino = 100 + i;
		n->nlink = 1;
		n->mtime = (struct timespec){1700000000 + (time_t)i, 123456789};
		n->ctime = (struct timespec){1800000000, 5};
		n->has_btime = i % 3 != 0;
		n->btime = (struct timespec){n->has_btime ? 1500000000 + (time_t)i : 0, n->has_btime ? 77 : 0};
		for (int k = 0; k < 32; k++)
			n->digest[k] = (uint8_t)(i * 32 + (size_t)k);
		n->has_digest = true;
		if (i == 3) {
			xattr_list_add(&n->xattrs, "user.a,b=c", "\x00\x01\xff", 3);
			xattr_list_add(&n->xattrs, "security.capability", "\x01\x00\x00\x02", 4);
		}
	}
	struct tnode *l = tree_add(t, dir, "link");
	l->mode = S_IFLNK | 0777;
	l->link = xstrdup("../with space/-,=\\x");
	l->size = strlen(l->link);
	struct tnode *d = tree_add(t, t->root, "dev");
	d->mode = S_IFCHR | 0600;
	d->rdev = 259;
	return t;
}

static int compare_nodes(const struct tnode *a, const struct tnode *b, bool stat_fields, struct buf *path)
{
	int bad = 0;
	if ((a->mode != b->mode) || a->uid != b->uid || a->gid != b->gid || a->mtime.tv_sec != b->mtime.tv_sec ||
	    (a->link == NULL) != (b->link == NULL) || (a->link && strcmp(a->link, b->link) != 0) ||
	    a->has_digest != b->has_digest || (a->has_digest && memcmp(a->digest, b->digest, 32) != 0) ||
	    !xattr_list_equal(a->xattrs, b->xattrs)) {
		diag("'%s' differs", path->data ? path->data : "");
		bad++;
	}
	if (stat_fields && (a->size != b->size || a->ino != b->ino || a->nlink != b->nlink || a->rdev != b->rdev ||
			    a->mtime.tv_nsec != b->mtime.tv_nsec || a->ctime.tv_sec != b->ctime.tv_sec ||
			    a->ctime.tv_nsec != b->ctime.tv_nsec || a->has_btime != b->has_btime ||
			    a->btime.tv_sec != b->btime.tv_sec || a->btime.tv_nsec != b->btime.tv_nsec)) {
		diag("'%s': stat fields differ", path->data ? path->data : "");
		bad++;
	}
	return bad;
}

static int compare_trees(const struct tree *ta, const struct tnode *a, const struct tree *tb, const struct tnode *b,
			 bool stat_fields, struct buf *path)
{
	int bad = compare_nodes(a, b, stat_fields, path);
	_cleanup_free_ struct tnode **ka = NULL, **kb = NULL;
	size_t na = tree_sorted_children(a, &ka), nb = tree_sorted_children(b, &kb);
	if (na != nb) {
		diag("'%s': %zu children, want %zu", path->data ? path->data : "", nb, na);
		return bad + 1;
	}
	for (size_t i = 0; i < na; i++) {
		size_t base = path->len;
		buf_printf(path, "/%s", ka[i]->name);
		if (strcmp(ka[i]->name, kb[i]->name) != 0) {
			diag("child '%s' is '%s'", ka[i]->name, kb[i]->name);
			bad++;
		} else {
			bad += compare_trees(ta, ka[i], tb, kb[i], stat_fields, path);
		}
		path->len = base;
		path->data[base] = '\0';
	}
	return bad;
}

static void test_records(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	struct ocitree_error *err = NULL;
	struct tree *t = odd_tree();
	const char *m = "sha256:0123456789012345678901234567890123456789012345678901234567890123";
	ok(state_write_at(dfd, "state", t, m, &err) == 0, "state record written");
	char got_m[OCITREE_DIGEST_MAX] = "";
	struct tree *back = state_read_at(dfd, "state", got_m, &err);
	ok(back != NULL, "state record read back%s%s", err ? ": " : "", err ? err->msg : "");
	is_str(got_m, m, "with its manifest digest");
	struct buf p = BUF_INIT;
	if (back)
		is_int(compare_trees(t, t->root, back, back->root, true, &p), 0, "every field of every path survives");
	tree_free(back);

	ok(mtree_write_at(dfd, "spec.mtree", t, "bundle/rootfs", &err) == 0, "mtree written");
	back = mtree_read_at(dfd, "spec.mtree", &err);
	ok(back != NULL, "mtree read back%s%s", err ? ": " : "", err ? err->msg : "");
	buf_reset(&p);
	if (back)
		is_int(compare_trees(t, t->root, back, back->root, false, &p), 0,
		       "names, types, modes, owners, times, links, digests and xattrs survive");
	tree_free(back);
	buf_free(&p);

	/* a hand-written spec with /set, full paths and escapes, as go-mtree writes */
	const char *spec = "#mtree\n/set type=file uid=0 gid=0 mode=0644 nlink=1\n"
			   ". type=dir mode=0755 tar_time=5.000000000\n"
			   "    a\\040b size=3 sha256digest=0000000000000000000000000000000000000000000000000000000000000000\n"
			   "sub type=dir mode=0700\n    l type=link link=../a\\040b mode=0777\n..\n"
			   "sub/full mode=0600 uid=7 xattr.user.x=eHl6\n..\n";
	write_file_atomic_at(dfd, "hand.mtree", spec, strlen(spec), 0644, &err);
	back = mtree_read_at(dfd, "hand.mtree", &err);
	ok(back != NULL, "a go-mtree spec with /set and full paths is read");
	if (back) {
		struct tnode *a = tree_lookup(back, "a b"), *l = tree_lookup(back, "sub/l"), *f = tree_lookup(back, "sub/full");
		ok(a && a->mode == (S_IFREG | 0644) && a->size == 3 && a->has_digest, "/set values apply");
		ok(l && S_ISLNK(l->mode) && l->link && strcmp(l->link, "../a b") == 0, "relative entries and escapes");
		ok(f && f->uid == 7 && (f->mode & 0777) == 0600 && f->xattrs && f->xattrs->n == 1 &&
			   memcmp(f->xattrs->v[0].value, "xyz", 3) == 0,
		   "full paths, overrides and xattrs");
		ok(back->root->mtime.tv_sec == 5 && S_ISDIR(back->root->mode), "the root entry");
	}
	tree_free(back);

	const char *bad = "ocitree-state 1\nmanifest sha256:x\n. d 755 0 0 1 0.0 0.0 1 1 0 - - - -\nmissing/parent f 644 0 0 "
			  "0 0.0 0.0 1 1 0 - - - -\n";
	write_file_atomic_at(dfd, "bad", bad, strlen(bad), 0644, &err);
	ocitree_error_free(err);
	err = NULL;
	back = state_read_at(dfd, "bad", got_m, &err);
	ok(!back && err && err->kind == OCITREE_ERROR_INVALID && strstr(err->msg, "line 4"),
	   "a state record with an orphan line is refused (%s)", err ? err->msg : "none");
	ocitree_error_free(err);
	err = NULL;

	/* umoci.json */
	struct umoci_meta um = {0};
	um.walk = xcalloc(1, sizeof(*um.walk));
	um.n_walk = 1;
	um.walk[0].media_type = xstrdup(OCITREE_MT_OCI_MANIFEST);
	snprintf(um.walk[0].digest, sizeof(um.walk[0].digest), "%s", m);
	um.walk[0].size = 42;
	ocitree_strmap_set(&um.walk[0].annotations, OCITREE_ANNOTATION_REF_NAME, "tag");
	struct ocitree_idmap maps[] = {{0, 1000, 1}};
	um.map.rootless = true;
	um.map.uid_map = maps;
	um.map.n_uid_map = 1;
	ok(umoci_meta_write_at(dfd, &um, &err) == 0, "umoci.json written");
	um.map = (struct ocitree_map_options){0};
	umoci_meta_clear(&um);
	struct umoci_meta rb;
	ok(umoci_meta_read_at(dfd, &rb, &err) == 0 && rb.n_walk == 1 && strcmp(rb.walk[0].digest, m) == 0 &&
		   rb.walk[0].size == 42 && rb.map.rootless && rb.map.n_uid_map == 1 && rb.map.uid_map[0].host_id == 1000 &&
		   rb.map.n_gid_map == 0,
	   "umoci.json read back");
	umoci_meta_clear(&rb);
	tree_free(t);
	close(dfd);
}

int main(void)
{
	test_rootless();
	test_idmap();
	char tmpl[] = "/tmp/ocitree-test-bundle.XXXXXX";
	char *dir = mkdtemp(tmpl);
	test_records(dir);
	_cleanup_free_ char *rm = xasprintf("rm -rf '%s'", dir);
	if (system(rm) != 0)
		diag("cleanup failed");
	return done_testing();
}
