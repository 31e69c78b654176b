/* SPDX-License-Identifier: Apache-2.0 */
/* The writable-mount engine without FUSE: copy-up of an image file (data
 * and metadata only), the links of a hardlinked file (I1), whiteouts over
 * image names, an opaque directory made where an image directory was, the
 * rename of an image directory (I2), the replay of an interrupted
 * hardlink copy-up, and the read path of image files (ocitree_tree_read)
 * for plain and gzip layers. */
#include "config.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "ocitree/ocitree.h"
#include "overlay.h"
#include "tap.h"
#include "upper-internal.h"
#include "util.h"

static char tmpdir[] = "/tmp/ocitree-overlay.XXXXXX";
static struct ocitree_layout *layout;

struct ent {
	const char *path;
	char type; /* 'f' file, 'd' dir, 'h' hardlink */
	const char *link;
	size_t size;
};

static const struct ent image[] = {
	{"etc", 'd', NULL, 0},
	{"etc/passwd", 'f', NULL, 3000},
	{"etc/hosts", 'f', NULL, 200000},
	{"lib", 'd', NULL, 0},
	{"lib/x", 'f', NULL, 10},
	{"usr", 'd', NULL, 0},
	{"usr/bin", 'd', NULL, 0},
	{"usr/bin/a", 'f', NULL, 5000},
	{"usr/bin/b", 'h', "usr/bin/a", 0},
};

/* Reproducible contents from the name. */
static unsigned char *gen(const char *seed, size_t n)
{
	unsigned char *p = xmalloc(n ? n : 1);
	uint64_t x = hash_bytes(seed, strlen(seed));
	for (size_t i = 0; i < n; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		p[i] = (unsigned char)("abcdefgh\n"[(x >> 33) % 9]);
	}
	return p;
}

static void make_tar(struct buf *out)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	size_t used = 0, cap = 4u << 20;
	buf_reserve(out, cap);
	archive_write_open_memory(a, out->data, cap, &used);
	for (size_t i = 0; i < ARRAY_SIZE(image); i++) {
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, image[i].path);
		archive_entry_set_mtime(e, 1700000000, 0);
		archive_entry_set_uid(e, 0);
		archive_entry_set_gid(e, 0);
		unsigned char *data = NULL;
		if (image[i].type == 'd') {
			archive_entry_set_filetype(e, AE_IFDIR);
			archive_entry_set_perm(e, 0755);
		} else if (image[i].type == 'h') {
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_perm(e, 0644);
			archive_entry_set_hardlink(e, image[i].link);
		} else {
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_perm(e, 0640);
			archive_entry_set_size(e, (la_int64_t)image[i].size);
			data = gen(image[i].path, image[i].size);
		}
		archive_write_header(a, e);
		if (data)
			archive_write_data(a, data, image[i].size);
		free(data);
		archive_entry_free(e);
	}
	archive_write_close(a);
	archive_write_free(a);
	out->len = used;
}

/* The image as one layer, gzip or not; its index reads through cc. */
static struct ocitree_layer_index *open_layer(bool gzip, struct ocitree_chunk_cache *cc)
{
	struct buf tar = BUF_INIT, blob = BUF_INIT;
	make_tar(&tar);
	char diff_id[OCITREE_DIGEST_MAX];
	ocitree_digest_sha256(tar.data, tar.len, diff_id);
	struct ocitree_descriptor d = {0};
	if (gzip) {
		z_stream zs = {0};
		deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
		size_t bound = deflateBound(&zs, (uLong)tar.len) + 64;
		buf_reserve(&blob, bound);
		zs.next_in = (Bytef *)tar.data;
		zs.avail_in = (uInt)tar.len;
		zs.next_out = (Bytef *)blob.data;
		zs.avail_out = (uInt)bound;
		deflate(&zs, Z_FINISH);
		blob.len = zs.total_out;
		deflateEnd(&zs);
		d.media_type = xstrdup(OCITREE_MT_OCI_LAYER_GZIP);
	} else {
		buf_append(&blob, tar.data, tar.len);
		d.media_type = xstrdup(OCITREE_MT_OCI_LAYER);
	}
	ocitree_blob_put(layout, blob.data, blob.len, d.digest, NULL);
	d.size = (int64_t)blob.len;
	_cleanup_free_ char *cache = xasprintf("%s/cache", tmpdir);
	struct ocitree_layer_index_opts o = {.cache_dir = cache, .chunks = cc};
	struct ocitree_error *err = NULL;
	struct ocitree_layer_index *idx = ocitree_layer_index_open(layout, &d, diff_id, &o, &err);
	if (!idx)
		diag("open index: %s", err->msg);
	ocitree_error_free(err);
	ocitree_descriptor_clear(&d);
	buf_free(&tar);
	buf_free(&blob);
	return idx;
}

/* What ocitree_tree_read gives, copied out. */
static bool tree_read_is(struct ocitree_tree *t, const char *path, const char *seed, size_t size, uint64_t off,
			 size_t len, bool want_fd)
{
	uint32_t k = ocitree_tree_lookup_path(t, path);
	struct ocitree_tree_data d;
	if (!k || ocitree_tree_read(t, k, off, len, &d, NULL) < 0)
		return false;
	size_t want_len = off >= size ? 0 : len > size - off ? size - off : len;
	unsigned char *want = gen(seed, size);
	unsigned char *got = xmalloc(d.size + 1);
	bool good = d.size == want_len && (d.fd >= 0) == (want_fd && want_len > 0);
	if (good && d.fd >= 0) {
		good = pread_full(d.fd, got, d.size, (off_t)d.pos) == (ssize_t)d.size;
	} else if (good) {
		size_t at = 0;
		for (size_t i = 0; i < d.n_iov; i++) {
			memcpy(got + at, d.iov[i].iov_base, d.iov[i].iov_len);
			at += d.iov[i].iov_len;
		}
		good = at == d.size;
	}
	good = good && memcmp(got, want + (off < size ? off : size), d.size) == 0;
	ocitree_tree_data_release(&d);
	free(want);
	free(got);
	return good;
}

static void test_read_path(void)
{
	struct ocitree_layer_index *plain = open_layer(false, NULL);
	struct ocitree_tree *t = plain ? ocitree_tree_build(&plain, 1, 0, NULL) : NULL;
	ok(t, "a plain layer's tree");
	if (t) {
		ok(tree_read_is(t, "etc/hosts", "etc/hosts", 200000, 1000, 65536, true), "plain layer: spliced from the data file");
		ok(tree_read_is(t, "etc/hosts", "etc/hosts", 200000, 199000, 65536, true), "plain layer: short at the end");
		ok(tree_read_is(t, "etc/hosts", "etc/hosts", 200000, 300000, 10, true), "plain layer: nothing past the end");
		struct ocitree_tree_data d;
		struct ocitree_error *err = NULL;
		ok(ocitree_tree_read(t, ocitree_tree_lookup_path(t, "etc"), 0, 10, &d, &err) < 0 && err &&
			   err->kind == OCITREE_ERROR_USAGE && err->errnum == EISDIR,
		   "a directory is refused with EISDIR");
		ocitree_error_free(err);
	}
	ocitree_tree_free(t);
	ocitree_layer_index_free(plain);

	struct ocitree_chunk_cache *cc = ocitree_chunk_cache_new(8u << 20);
	struct ocitree_layer_index *gz = open_layer(true, cc);
	t = gz ? ocitree_tree_build(&gz, 1, 0, NULL) : NULL;
	ok(t, "a gzip layer's tree");
	if (t) {
		ok(tree_read_is(t, "etc/hosts", "etc/hosts", 200000, 5, 131072, false), "gzip layer: from the chunk cache");
		ok(tree_read_is(t, "usr/bin/b", "usr/bin/a", 5000, 0, 4096, false), "gzip layer: a hardlink reads its file");
	}
	ocitree_tree_free(t);
	ocitree_layer_index_free(gz);
	ocitree_chunk_cache_free(cc);
}

/* ---------------------------------------------------------------- the engine */

static struct ocitree_layer_index *idx;
static struct ocitree_tree *tree;

/* The objects a driver holds, found by the lower inode they were made for:
 * the engine gives them their upper objects as it copies up. */
static struct {
	struct ocitree_overlay_obj *o;
	uint32_t k;
} live[8];
static size_t n_live;

static void live_add(struct ocitree_overlay_obj *o, uint32_t k)
{
	live[n_live].o = o;
	live[n_live++].k = k;
}

static void live_clear(void)
{
	n_live = 0;
}

static struct ocitree_overlay_obj *live_find(void *data, uint32_t k)
{
	for (size_t i = 0; i < n_live; i++)
		if (live[i].k == k)
			return live[i].o;
	return NULL;
}

static void live_put(void *data, struct ocitree_overlay_obj *o)
{
}

static const struct ocitree_overlay_hooks live_hooks = {.find_lower = live_find, .put = live_put};

struct mount {
	struct ocitree_upper *u;
	struct ocitree_overlay ov;
	struct ocitree_overlay_obj root;
	char *upper;
};

static bool mount_open(struct mount *m, const char *name, bool file_whiteouts)
{
	memset(m, 0, sizeof(*m));
	m->upper = xasprintf("%s/%s", tmpdir, name);
	mkdir(m->upper, 0755);
	struct ocitree_error *err = NULL;
	m->u = ocitree_upper_open(m->upper, NULL, true, &err);
	struct ocitree_upper_probe_opts want = {.force_whiteout = file_whiteouts ? OCITREE_UPPER_WHITEOUT_FILE : -1,
						.force_xattrs = -1};
	if (!m->u || ocitree_upper_probe(m->u, &want, &m->u->state.format, &err) < 0) {
		diag("upper: %s", err->msg);
		ocitree_error_free(err);
		return false;
	}
	overlay_init(&m->ov, m->u, tree, &live_hooks, NULL);
	if (ocitree_overlay_root_init(&m->ov, &m->root, true, &err) < 0) {
		diag("root: %s", err->msg);
		ocitree_error_free(err);
		return false;
	}
	return true;
}

static void mount_close(struct mount *m)
{
	ocitree_overlay_obj_clear(&m->root);
	overlay_fini(&m->ov);
	ocitree_upper_free(m->u);
	free(m->upper);
}

/* The object of a merged path ("a/b"), as a driver would make it. */
static bool obj_at(struct mount *m, const char *path, struct ocitree_overlay_obj *o)
{
	struct ocitree_overlay_obj dir = m->root;
	dir.ufd = m->root.ufd >= 0 ? dup(m->root.ufd) : -1;
	_cleanup_free_ char *copy = xstrdup(path);
	char *save = NULL;
	bool good = true;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		struct ocitree_overlay_found f;
		if (ocitree_overlay_find(&m->ov, &dir, c, &f) != 0 || f.kind == OCITREE_OVERLAY_FOUND_NONE) {
			good = false;
			break;
		}
		struct ocitree_overlay_obj next;
		if (f.kind == OCITREE_OVERLAY_FOUND_UPPER) {
			uint32_t origin;
			if (ocitree_overlay_obj_open_upper(&m->ov, &dir, c, f.below, &next, &origin) != 0) {
				good = false;
				break;
			}
		} else {
			ocitree_overlay_obj_init(&next, ocitree_overlay_ltype(tree, f.lower),
			                         ocitree_overlay_ino_lower(&m->ov, f.lower));
			next.tree = tree;
			next.lower = f.lower;
		}
		ocitree_overlay_obj_clear(&dir);
		dir = next;
	}
	if (!good)
		ocitree_overlay_obj_clear(&dir);
	*o = dir;
	return good;
}

static bool upper_has(struct mount *m, const char *path, struct stat *st)
{
	struct stat tmp;
	return fstatat(m->u->fd, path, st ? st : &tmp, AT_SYMLINK_NOFOLLOW) == 0;
}

static bool upper_is_wh(struct mount *m, const char *dir, const char *name)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
	_cleanup_free_ char *w = xasprintf("%s/" UPPER_WH_PREFIX "%s", dir, name);
	struct stat st;
	if (m->u->state.format.whiteout == OCITREE_UPPER_WHITEOUT_FILE)
		return upper_has(m, w, &st) && S_ISREG(st.st_mode) && !upper_has(m, p, NULL);
	return upper_has(m, p, &st) && upper_is_whiteout(&st);
}

static bool file_is(int dirfd, const char *path, const char *seed, size_t size)
{
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	unsigned char *got = xmalloc(size + 1);
	unsigned char *want = gen(seed, size);
	bool good = read_full(fd, got, size + 1) == (ssize_t)size && memcmp(got, want, size) == 0;
	close(fd);
	free(got);
	free(want);
	return good;
}

static bool listing_has(struct mount *m, struct ocitree_overlay_obj *dir, const char *name)
{
	struct ocitree_overlay_dent *ents = NULL;
	size_t n = 0;
	bool has = false;
	if (ocitree_overlay_dir_list(&m->ov, dir, &ents, &n) == 0)
		for (size_t i = 0; i < n; i++)
			has = has || strcmp(ents[i].name, name) == 0;
	for (size_t i = 0; i < n; i++)
		free(ents[i].name);
	free(ents);
	return has;
}

static void test_copy_up(bool file_whiteouts)
{
	const char *fw = file_whiteouts ? " (file whiteouts)" : "";
	struct mount m;
	if (!ok(mount_open(&m, file_whiteouts ? "upper-fw" : "upper", file_whiteouts), "an upper directory%s", fw))
		return;
	bool metacopy = m.u->state.format.xattrs != OCITREE_UPPER_XATTR_NONE;

	/* data: the file's bytes and mode, in its tree directory */
	struct ocitree_overlay_obj o;
	ok(obj_at(&m, "etc/passwd", &o) && o.ufd < 0, "etc/passwd is an image file%s", fw);
	is_int(ocitree_overlay_copy_up(&m.ov, &o, OCITREE_OVERLAY_CU_DATA), 0, "copy etc/passwd up%s", fw);
	struct stat st;
	ok(o.ufd >= 0 && !o.metacopy && o.lower == 0, "the object has its upper file%s", fw);
	ok(upper_has(&m, "etc/passwd", &st) && st.st_size == 3000 && (st.st_mode & 07777) == 0640,
	   "upper etc/passwd: size and mode of the image's%s", fw);
	ok(file_is(m.u->fd, "etc/passwd", "etc/passwd", 3000), "upper etc/passwd: the image's bytes%s", fw);
	ocitree_overlay_obj_clear(&o);

	/* metadata only: a hole of the right size that reads as the image */
	ok(obj_at(&m, "etc/hosts", &o), "etc/hosts%s", fw);
	is_int(ocitree_overlay_copy_up(&m.ov, &o, OCITREE_OVERLAY_CU_META), 0, "copy etc/hosts up, metadata only%s",
	       fw);
	ok(upper_has(&m, "etc/hosts", &st) && st.st_size == 200000, "upper etc/hosts has the size%s", fw);
	if (metacopy) {
		ok(o.metacopy, "upper etc/hosts is a metacopy%s", fw);
		struct ocitree_overlay_source src;
		struct ocitree_tree_data d;
		ok(ocitree_overlay_read_source(&m.ov, &o, &src) == 0 && !src.upper && src.k &&
		       ocitree_overlay_read_lower(&src, 100, 50, &d) == 0 && d.size == 50,
		   "a metacopy reads from the image%s", fw);
		unsigned char *want = gen("etc/hosts", 200000);
		unsigned char got[50];
		ok(d.fd >= 0 && pread_full(d.fd, got, 50, (off_t)d.pos) == 50 && memcmp(got, want + 100, 50) == 0,
		   "  its bytes%s", fw);
		ocitree_tree_data_release(&d);
		free(want);
		is_int(ocitree_overlay_copy_up(&m.ov, &o, OCITREE_OVERLAY_CU_DATA), 0, "fill it for a write%s", fw);
		ok(!o.metacopy && file_is(m.u->fd, "etc/hosts", "etc/hosts", 200000), "  now it holds the data%s", fw);
	} else {
		ok(!o.metacopy && file_is(m.u->fd, "etc/hosts", "etc/hosts", 200000),
		   "without xattrs the data is copied%s", fw);
	}
	ocitree_overlay_obj_clear(&o);

	/* I1: every name of a hardlinked file, one inode */
	ok(obj_at(&m, "usr/bin/b", &o), "usr/bin/b%s", fw);
	is_int(ocitree_overlay_copy_up(&m.ov, &o, OCITREE_OVERLAY_CU_DATA), 0, "copy the hardlinked usr/bin/b up%s",
	       fw);
	struct stat sa, sb;
	ok(upper_has(&m, "usr/bin/a", &sa) && upper_has(&m, "usr/bin/b", &sb) && sa.st_ino == sb.st_ino &&
		   sa.st_nlink == 2,
	   "both names are in the upper directory, linked%s", fw);
	ok(faccessat(m.u->work_fd, UPPER_LINKS_JOURNAL, F_OK, 0) < 0, "no journal is left%s", fw);
	ocitree_overlay_obj_clear(&o);

	/* a whiteout hides the image's file */
	struct ocitree_overlay_obj lib, x;
	ok(obj_at(&m, "lib", &lib) && obj_at(&m, "lib/x", &x), "lib/x%s", fw);
	live_add(&lib, lib.lower);
	struct ocitree_overlay_found f;
	ocitree_overlay_find(&m.ov, &lib, "x", &f);
	is_int(ocitree_overlay_remove(&m.ov, &lib, "x", &x, &f, false), 0, "unlink lib/x%s", fw);
	ok(upper_is_wh(&m, "lib", "x"), "a whiteout is at lib/x%s", fw);
	ok(ocitree_overlay_find(&m.ov, &lib, "x", &f) == 0 && f.kind == OCITREE_OVERLAY_FOUND_NONE && f.whiteout &&
	       f.below,
	   "lib/x is gone from the merged view%s", fw);
	ok(!listing_has(&m, &lib, "x"), "and from the listing of lib%s", fw);
	bool empty = false;
	ok(ocitree_overlay_dir_is_empty(&m.ov, &lib, &empty) == 0 && empty, "lib is empty%s", fw);
	ocitree_overlay_obj_clear(&x);

	/* an opaque directory where the image's was */
	ocitree_overlay_find(&m.ov, &m.root, "lib", &f);
	is_int(ocitree_overlay_remove(&m.ov, &m.root, "lib", &lib, &f, true), 0, "rmdir lib%s", fw);
	ok(upper_is_wh(&m, ".", "lib"), "a whiteout is at lib%s", fw);
	live_clear();
	ocitree_overlay_obj_clear(&lib);
	struct ocitree_overlay_new nd = {.mode = S_IFDIR | 0755};
	uint32_t below = 0;
	is_int(ocitree_overlay_make(&m.ov, &m.root, "lib", &nd, NULL, &below), 0, "mkdir lib again%s", fw);
	ok(below && obj_at(&m, "lib", &lib) && lib.lower == 0, "the new lib merges nothing of the image's%s", fw);
	if (m.u->state.format.xattrs == OCITREE_UPPER_XATTR_NONE) {
		ok(upper_has(&m, "lib/" UPPER_WH_OPAQUE, NULL), "lib has the opaque marker%s", fw);
	} else {
		struct upath p;
		upath_at(&p, m.u->fd, "lib");
		struct upper_meta um;
		ok(upper_meta_read(&m.u->state.format, &p, &um) == 0 && um.opaque, "lib has the opaque xattr%s", fw);
		upper_meta_clear(&um);
	}
	ok(ocitree_overlay_find(&m.ov, &lib, "x", &f) == 0 && f.kind == OCITREE_OVERLAY_FOUND_NONE,
	   "lib/x does not come back%s", fw);
	ocitree_overlay_obj_clear(&lib);

	/* I2: a renamed image directory takes its subtree and turns opaque */
	struct ocitree_overlay_obj src;
	ok(obj_at(&m, "usr", &src), "usr%s", fw);
	live_add(&src, src.lower);
	struct ocitree_overlay_found sf;
	ocitree_overlay_find(&m.ov, &m.root, "usr", &sf);
	is_int(ocitree_overlay_rename(&m.ov, &m.root, "usr", &m.root, "usr2", &src, &sf, NULL, 0), 0,
	       "rename usr usr2%s", fw);
	ok(upper_is_wh(&m, ".", "usr"), "a whiteout is at usr%s", fw);
	ok(upper_has(&m, "usr2/bin/a", NULL) && upper_has(&m, "usr2/bin/b", NULL), "usr2 holds the subtree%s", fw);
	ok(src.lower == 0, "usr2 merges nothing of the image's any more%s", fw);
	struct ocitree_overlay_obj bin;
	ok(obj_at(&m, "usr2/bin", &bin) && listing_has(&m, &bin, "a") && listing_has(&m, &bin, "b"),
	   "usr2/bin lists a and b%s", fw);
	ocitree_overlay_obj_clear(&bin);
	live_clear();
	ocitree_overlay_obj_clear(&src);
	mount_close(&m);
}

/* A crash between the names of a hardlinked file's copy-up: the journal
 * lists them, the next mount links the missing ones. */
static void test_journal_replay(void)
{
	struct mount m;
	if (!ok(mount_open(&m, "upper-journal", false), "an upper directory for the journal"))
		return;
	struct ocitree_overlay_obj o;
	ok(obj_at(&m, "usr/bin/a", &o) && ocitree_overlay_copy_up(&m.ov, &o, OCITREE_OVERLAY_CU_DATA) == 0,
	   "copy usr/bin/a up");
	ocitree_overlay_obj_clear(&o);
	/* as if the crash came before the second link */
	ok(unlinkat(m.u->fd, "usr/bin/b", 0) == 0, "usr/bin/b not linked yet");
	const char *paths[] = {"/usr/bin/a", "/usr/bin/b"};
	ok(upper_links_journal_write(m.u, paths, 2, NULL) == 0, "the journal of that copy-up");
	mount_close(&m);

	ok(mount_open(&m, "upper-journal", false), "mount again");
	ocitree_overlay_links_journal_replay(&m.ov);
	struct stat sa, sb;
	ok(upper_has(&m, "usr/bin/a", &sa) && upper_has(&m, "usr/bin/b", &sb) && sa.st_ino == sb.st_ino,
	   "the replay linked usr/bin/b to usr/bin/a");
	ok(faccessat(m.u->work_fd, UPPER_LINKS_JOURNAL, F_OK, 0) < 0, "and removed the journal");
	mount_close(&m);
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 1;
	_cleanup_free_ char *lp = xasprintf("%s/layout", tmpdir);
	struct ocitree_error *err = NULL;
	if (ocitree_layout_create(lp, &err) < 0 || !(layout = ocitree_layout_open(lp, &err))) {
		printf("Bail out! %s\n", err ? err->msg : "layout");
		return 1;
	}
	test_read_path();
	idx = open_layer(false, NULL);
	tree = idx ? ocitree_tree_build(&idx, 1, 0, NULL) : NULL;
	if (!tree) {
		printf("Bail out! no tree\n");
		return 1;
	}
	test_copy_up(false);
	test_copy_up(true);
	test_journal_replay();
	ocitree_tree_free(tree);
	ocitree_layer_index_free(idx);
	ocitree_layout_free(layout);
	_cleanup_free_ char *rm = xasprintf("rm -rf '%s'", tmpdir);
	if (system(rm) != 0)
		diag("could not remove %s", tmpdir);
	return done_testing();
}
