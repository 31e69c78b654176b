/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Mount set-up without FUSE: layer indexes and the merged tree of images
 * made here, an upper directory recorded for the image it changes, refused
 * for another one while it holds changes, and moved onto an image that
 * extends its own (a live commit --clear) with the open indexes reused.
 */
#include "config.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "ocitree/ocitree.h"
#include "fixture.h"
#include "tap.h"
#include "upper-internal.h"
#include "util.h"

static char *tmpdir;
static struct ocitree_layout *layout;
static char *cache_dir;

/* Tag tag in the test's layout as base (NULL: a new image) plus a layer
 * holding one file. */
static int add_image(const char *base, const char *tag, const char *file)
{
	return fixture_add_image(layout, base, tag, file, NULL, NULL);
}

static struct ocitree_mount_options options(void)
{
	return (struct ocitree_mount_options){.index = {.cache_dir = cache_dir}, .threads = 2};
}

static struct ocitree_upper *open_upper(const char *path)
{
	struct ocitree_error *err = NULL;
	struct ocitree_upper *u = ocitree_upper_open(path, NULL, true, &err);
	if (!u)
		diag("open upper '%s': %s", path, err->msg);
	ocitree_error_free(err);
	return u;
}

#define is_error(e, k, part, ...)                                                                                  \
	do {                                                                                                       \
		if (!ok((e) && (e)->kind == (k) && strstr((e)->msg, part), __VA_ARGS__))                         \
			diag("got kind %d '%s', want kind %d with '%s'", (e) ? (int)(e)->kind : -1,                \
			     (e) ? (e)->msg : "(no error)", (int)(k), part);                                         \
	} while (0)

static void test_read_only(struct ocitree_image *a, struct ocitree_image *b)
{
	struct ocitree_error *err = NULL;
	struct ocitree_mount m;
	struct ocitree_mount_options o = options();
	ok(ocitree_mount_setup(layout, b, &o, &m, &err) == 0, "a read-only mount of two layers");
	is_int(m.n_layers, 2, "  two indexes");
	ok(m.tree && ocitree_tree_lookup_path(m.tree, "one") && ocitree_tree_lookup_path(m.tree, "two"),
	   "  the tree has both layers' files");
	ok(!m.fresh && m.n_reused == 0, "  nothing fresh, nothing reused");
	ocitree_mount_clear(&m);
	ok(m.tree == NULL && m.layers == NULL, "clear zeroes it");

	o.from = 1;
	o.to = 2;
	o.tree_flags = OCITREE_TREE_RAW;
	ok(ocitree_mount_setup(layout, b, &o, &m, &err) == 0, "the second layer alone");
	ok(m.n_layers == 1 && m.tree && !ocitree_tree_lookup_path(m.tree, "one") &&
	       ocitree_tree_lookup_path(m.tree, "two"),
	   "  has only its own file");
	ocitree_mount_clear(&m);

	o.from = 1;
	o.to = 3;
	ok(ocitree_mount_setup(layout, b, &o, &m, &err) < 0, "layers beyond the image are refused");
	is_error(err, OCITREE_ERROR_USAGE, "has 2 layers", "  as a usage error");
	ok(m.tree == NULL && m.layers == NULL, "  and nothing is left");
	ocitree_error_free(err);
	err = NULL;

	/* a corrupt blob: the index is not built, nothing stays open */
	_cleanup_free_ char *blob = xasprintf("%s/blobs/sha256/%s", ocitree_layout_path(layout),
					      a->manifest->layers[0].digest + strlen("sha256:"));
	_cleanup_free_ char *other = xasprintf("%s/cache2", tmpdir);
	o = options();
	o.index.cache_dir = other;
	struct stat st;
	int fd = open(blob, O_WRONLY | O_CLOEXEC);
	ok(fd >= 0 && fstat(fd, &st) == 0 && pwrite(fd, "x", 1, st.st_size / 2) == 1, "damage the first layer's blob");
	if (fd >= 0)
		close(fd);
	ok(ocitree_mount_setup(layout, b, &o, &m, &err) < 0, "a damaged layer is refused");
	is_error(err, OCITREE_ERROR_DIGEST, "layer 1", "  as a digest error naming the layer");
	ocitree_error_free(err);
}

static void test_upper(struct ocitree_image *a, struct ocitree_image *b)
{
	struct ocitree_error *err = NULL;
	struct ocitree_mount m, mb;
	_cleanup_free_ char *up = xasprintf("%s/upper", tmpdir), *newfile = xasprintf("%s/upper/new", tmpdir);
	mkdir(up, 0755);
	struct ocitree_upper *u = open_upper(up);
	if (!u)
		return;
	struct ocitree_mount_options o = options();
	o.upper = u;
	ok(ocitree_mount_setup(layout, a, &o, &m, &err) == 0, "a new upper directory over image a");
	ok(m.fresh, "  is fresh");
	ok(u->has_state && strcmp(u->state.manifest.digest, a->manifest_desc.digest) == 0 &&
	       strcmp(u->state.tag, "a") == 0 && !u->state.clearing,
	   "  and its record names a");
	ocitree_upper_free(u);
	u = open_upper(up);
	ok(u && u->has_state && strcmp(u->state.manifest.digest, a->manifest_desc.digest) == 0,
	   "  on disk too");
	if (!u) {
		ocitree_mount_clear(&m);
		return;
	}

	o.upper = u;
	o.tree_flags = OCITREE_TREE_RAW;
	ok(ocitree_mount_setup(layout, a, &o, &mb, &err) < 0, "an upper directory over a raw layer is refused");
	is_error(err, OCITREE_ERROR_USAGE, "changes the whole image", "  as a usage error");
	ocitree_error_free(err);
	err = NULL;
	o.tree_flags = 0;

	int fd = open(newfile, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
	ok(ocitree_mount_setup(layout, b, &o, &mb, &err) < 0,
	   "an upper directory with changes to image a is refused for image b");
	is_error(err, OCITREE_ERROR_INVALID, "holds changes to image", "  as invalid");
	ok(err && strstr(err->msg, a->manifest_desc.digest) && strstr(err->msg, b->manifest_desc.digest),
	   "  naming both images");
	ok(strcmp(u->state.manifest.digest, a->manifest_desc.digest) == 0, "  its record still names a");
	ocitree_error_free(err);
	err = NULL;

	struct ocitree_upper_probe_opts force = {.force_whiteout = -1,
						 .force_xattrs = u->state.format.xattrs == OCITREE_UPPER_XATTR_NONE
									 ? OCITREE_UPPER_XATTR_USER
									 : OCITREE_UPPER_XATTR_NONE};
	o.probe = &force;
	ok(ocitree_mount_setup(layout, a, &o, &mb, &err) < 0, "another format than the recorded one is refused");
	is_error(err, OCITREE_ERROR_USAGE, "already uses another format", "  as a usage error");
	ocitree_error_free(err);
	err = NULL;
	o.probe = NULL;

	ok(ocitree_mount_setup(layout, a, &o, &mb, &err) == 0, "the same image again is fine");
	ok(!mb.fresh, "  and not fresh");
	ocitree_mount_clear(&mb);

	/* a live commit --clear made b from a: move onto it */
	o.reuse = m.layers;
	o.n_reuse = m.n_layers;
	o.clearing = true;
	o.threads = 1;
	ok(ocitree_mount_setup(layout, b, &o, &mb, &err) == 0, "moving onto image b, which extends a");
	if (err)
		diag("%s", err->msg);
	ok(mb.n_layers == 2 && mb.n_reused == 1 && mb.layers && mb.layers[0] == m.layers[0],
	   "  reuses the open index of a's layer");
	ok(mb.tree && ocitree_tree_lookup_path(mb.tree, "two"), "  with a tree that has b's new file");
	ok(strcmp(u->state.manifest.digest, b->manifest_desc.digest) == 0 && strcmp(u->state.tag, "b") == 0 &&
	       u->state.clearing,
	   "  and a record that names b, being cleared");
	ocitree_mount_clear(&mb); /* frees b's new index only */

	struct ocitree_mount_options ro = options();
	ro.reuse = m.layers;
	ro.n_reuse = m.n_layers;
	ok(ocitree_mount_setup(layout, a, &ro, &mb, &err) == 0 && mb.tree == NULL && mb.n_layers == 1,
	   "an image with no layer beyond the reused ones builds no tree");
	ocitree_mount_clear(&mb);
	ro.n_reuse = 2;
	ok(ocitree_mount_setup(layout, a, &ro, &mb, &err) < 0, "more reused indexes than layers are refused");
	is_error(err, OCITREE_ERROR_USAGE, "already open", "  as a usage error");
	ocitree_error_free(err);
	err = NULL;

	ok(ocitree_tree_lookup_path(m.tree, "one") != 0, "the first mount's tree and index are still alive");
	ocitree_mount_clear(&m);
	ocitree_upper_free(u);

	/* an interrupted clearing onto b is finished when b is mounted */
	u = open_upper(up);
	ok(u && u->state.clearing, "the record says clearing after a reopen");
	if (!u)
		return;
	o = options();
	o.upper = u;
	ok(ocitree_mount_setup(layout, b, &o, &m, &err) == 0, "mounting b");
	ok(!u->state.clearing && access(newfile, F_OK) < 0, "  finishes the clearing");
	ocitree_mount_clear(&m);
	ocitree_upper_free(u);
}

int main(void)
{
	char tmpl[] = "/tmp/ocitree-test-mount.XXXXXX";
	tmpdir = mkdtemp(tmpl);
	if (!tmpdir)
		return 1;
	_cleanup_free_ char *lp = xasprintf("%s/layout", tmpdir);
	cache_dir = xasprintf("%s/cache", tmpdir);
	struct ocitree_error *err = NULL;
	if (ocitree_layout_create(lp, &err) < 0 || !(layout = ocitree_layout_open(lp, &err))) {
		diag("layout: %s", err->msg);
		return 1;
	}
	ok(add_image(NULL, "a", "one") == 0 && add_image("a", "b", "two") == 0, "images a and b (a plus a layer)");
	struct ocitree_image *a = ocitree_image_open(layout, "a", NULL), *b = ocitree_image_open(layout, "b", NULL);
	if (a && b) {
		test_upper(a, b);
		test_read_only(a, b);
	}
	ocitree_image_free(a);
	ocitree_image_free(b);
	ocitree_layout_free(layout);
	free(cache_dir);
	_cleanup_free_ char *rm = xasprintf("rm -rf '%s'", tmpdir);
	if (system(rm) != 0)
		diag("cleanup failed");
	return done_testing();
}
