/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The layer store without FUSE: layers of images in two layouts found by
 * digest, a layout that gets an image or loses one (rm, gc) seen without a
 * new store, the record containers/storage reads, the blob, and one opening
 * for many threads asking at once.
 */
#include "config.h"

#include <inttypes.h>
#include <pthread.h>
#include <sys/stat.h>

#include "ocitree/layer-store.h"
#include "ocitree/ocitree.h"
#include "fixture.h"
#include "tap.h"
#include "util.h"

static char *tmpdir;

static int remove_tag(struct ocitree_index *idx, void *tag, struct ocitree_error **err)
{
	ocitree_index_remove_ref(idx, tag);
	return 0;
}

struct opener {
	struct ocitree_layer_store *s;
	const char *digest;
	struct ocitree_store_layer *got;
};

static void *open_thread(void *p)
{
	struct opener *o = p;
	o->got = ocitree_layer_store_open(o->s, o->digest, NULL);
	return NULL;
}

int main(void)
{
	char tmpl[] = "/tmp/ocitree-test-store.XXXXXX";
	tmpdir = mkdtemp(tmpl);
	if (!tmpdir)
		return 1;
	_cleanup_free_ char *pa = xasprintf("%s/a", tmpdir), *pb = xasprintf("%s/b", tmpdir);
	_cleanup_free_ char *cache = xasprintf("%s/cache", tmpdir);
	struct ocitree_error *err = NULL;
	struct ocitree_layout *a = NULL, *b = NULL;
	if (ocitree_layout_create(pa, &err) < 0 || ocitree_layout_create(pb, &err) < 0 ||
	    !(a = ocitree_layout_open(pa, &err)) || !(b = ocitree_layout_open(pb, &err))) {
		diag("layouts: %s", err->msg);
		return 1;
	}
	char one[OCITREE_DIGEST_MAX], one_diff[OCITREE_DIGEST_MAX], two[OCITREE_DIGEST_MAX],
	    two_diff[OCITREE_DIGEST_MAX];
	ok(fixture_add_image(a, NULL, "one", "one", one, one_diff) == 0, "layout a: image one");

	const char *layouts[] = {pb, pa};
	struct ocitree_layer_store_options so = {.layouts = layouts, .n_layouts = 2, .index = {.cache_dir = cache}};
	struct ocitree_layer_store *s = ocitree_layer_store_new(&so, &err);
	ok(s != NULL, "a store over two layouts");
	if (!s)
		return done_testing();
	int64_t size = -1;
	ok(ocitree_layer_store_has(s, one, &size) && size > 0, "it has the layer of the second layout");
	ok(!ocitree_layer_store_has(s, "sha256:0000000000000000000000000000000000000000000000000000000000000000", NULL),
	   "not a digest no layout has");
	ok(!ocitree_layer_store_open(s, "sha256:0000000000000000000000000000000000000000000000000000000000000000",
	                             &err) &&
	       err && err->kind == OCITREE_ERROR_NOT_FOUND,
	   "opening that is OCITREE_ERROR_NOT_FOUND");
	ocitree_error_free(err);
	err = NULL;

	struct ocitree_store_layer *sl = ocitree_layer_store_open(s, one, &err);
	ok(sl != NULL, "the layer opens");
	if (!sl)
		diag("%s", err->msg);
	const struct ocitree_tree *t = sl ? ocitree_store_layer_tree(sl) : NULL;
	ok(t && ocitree_tree_lookup_path(t, "one"), "its tree has its file");
	size_t len = 0;
	const char *info = sl ? ocitree_store_layer_info(sl, &len) : NULL;
	_cleanup_free_ char *want_diff = xasprintf("\"diff-digest\":\"%s\"", one_diff);
	_cleanup_free_ char *want_size = xasprintf("\"compressed-size\":%" PRId64, size);
	ok(info && len == strlen(info) && strstr(info, want_diff) && strstr(info, want_size) &&
	       strstr(info, "\"compression\":2") && strstr(info, "\"uidset\":[0]"),
	   "its record: diff-digest, compressed-size, compression, uidset");
	if (info)
		diag("%s", info);
	uint64_t bsize = 0;
	int fd = sl ? ocitree_store_layer_blob_fd(sl, &bsize) : -1;
	struct stat st;
	ok(fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size == bsize && (int64_t)bsize == size,
	   "its blob, of the descriptor's size");
	ok(ocitree_layer_store_open(s, one, NULL) == sl, "opening it again gives the same layer");

	/* a layout changed while the store runs */
	ok(fixture_add_image(b, NULL, "two", "two", two, two_diff) == 0, "layout b gets image two");
	ok(ocitree_layer_store_has(s, two, NULL), "the store sees it without a restart");
	struct opener op[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		op[i] = (struct opener){.s = s, .digest = two};
		pthread_create(&th[i], NULL, open_thread, &op[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	ok(op[0].got && op[0].got == op[1].got && op[1].got == op[2].got && op[2].got == op[3].got,
	   "four threads opening it at once get one layer");

	/* a layout that loses its image */
	char three[OCITREE_DIGEST_MAX], three_diff[OCITREE_DIGEST_MAX];
	ok(fixture_add_image(b, "two", "three", "three", three, three_diff) == 0, "layout b gets image three");
	ok(ocitree_layer_store_has(s, three, NULL), "the store has its top layer");
	struct ocitree_gc_stats gs;
	/* gc needs the layout that wrote blobs to let go of its blob lock */
	ocitree_layout_free(b);
	b = ocitree_layout_open(pb, NULL);
	ok(ocitree_layout_update_index(b, remove_tag, (char *)"three", &err) == 0 &&
	       ocitree_layout_gc(b, &gs, &err) == 0,
	   "rm three, gc");
	ok(!ocitree_layer_store_has(s, three, NULL) && !ocitree_layer_store_open(s, three, NULL),
	   "the store no longer has its top layer");
	ok(ocitree_layer_store_has(s, two, NULL), "but still two's");
	ok(ocitree_layout_update_index(b, remove_tag, (char *)"two", &err) == 0 && ocitree_layout_gc(b, &gs, &err) == 0,
	   "rm two, gc");
	ok(ocitree_layer_store_open(s, two, NULL) == op[0].got,
	   "a layer opened before stays open (its index holds the blob)");
	ocitree_layer_store_free(s);

	const char *bad[] = {tmpdir};
	so.layouts = bad;
	so.n_layouts = 1;
	ok(!ocitree_layer_store_new(&so, &err) && err, "a directory that is not a layout is an error");
	ocitree_error_free(err);
	ocitree_layout_free(a);
	ocitree_layout_free(b);
	_cleanup_free_ char *rm = xasprintf("rm -rf '%s'", tmpdir);
	if (system(rm) != 0)
		diag("cleanup failed");
	return done_testing();
}
