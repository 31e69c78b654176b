/* SPDX-License-Identifier: Apache-2.0 */
#include "config.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "ocitree/image.h"
#include "ocitree/layout.h"
#include "tap.h"
#include "util.h"

static struct ocitree_error *err;
static char root[] = "/tmp/ocitree-unit.XXXXXX";

static void reset(void)
{
	ocitree_error_free(err);
	err = NULL;
}

static char *path(const char *rel)
{
	return xasprintf("%s/%s", root, rel);
}

static void write_file(const char *rel, const char *content)
{
	char *p = path(rel);
	FILE *f = fopen(p, "w");
	if (f) {
		fputs(content, f);
		fclose(f);
	}
	free(p);
}

static int count_blobs(const char *layout)
{
	char *cmd = xasprintf("ls -A %s/%s/blobs/sha256 | wc -l", root, layout);
	FILE *p = popen(cmd, "r");
	int n = -1;
	if (p) {
		if (fscanf(p, "%d", &n) != 1)
			n = -1;
		pclose(p);
	}
	free(cmd);
	return n;
}

static void test_create_open(void)
{
	char *l = path("l1");
	ok(ocitree_layout_create(l, &err) == 0, "create a layout");
	reset();
	ok(ocitree_layout_create(l, &err) < 0 && err->kind == OCITREE_ERROR_EXISTS, "creating it again fails");
	reset();
	struct ocitree_layout *lay = ocitree_layout_open(l, &err);
	ok(lay != NULL, "open it");
	struct ocitree_index *idx = lay ? ocitree_layout_read_index(lay, &err) : NULL;
	ok(idx && idx->n_manifests == 0, "a new layout has no tags");
	ocitree_index_free(idx);
	idx = lay ? ocitree_layout_read_index(lay, &err) : NULL;
	ok(idx && idx->n_manifests == 0, "index.json is read again");
	ocitree_index_free(idx);
	ocitree_layout_free(lay);
	/* the reading of index.json at open is only used while the file is
	 * still the one read: replaced (by rename, as writers do), it is read
	 * anew */
	lay = ocitree_layout_open(l, &err);
	write_file("l1/index.json.new", "{\"schemaVersion\":2,\"manifests\":[");
	char *from = path("l1/index.json.new"), *to = path("l1/index.json");
	ok(lay && rename(from, to) == 0, "index.json replaced after the open");
	reset();
	idx = lay ? ocitree_layout_read_index(lay, &err) : NULL;
	ok(!idx && err && strstr(err->msg, "invalid JSON"), "the replaced index.json is the one read");
	ocitree_index_free(idx);
	ocitree_layout_free(lay);
	write_file("l1/index.json.new", "{\"schemaVersion\":2,\"manifests\":[]}");
	ok(rename(from, to) == 0, "index.json repaired");
	free(from);
	free(to);
	free(l);

	char *missing = path("nope");
	reset();
	ok(!ocitree_layout_open(missing, &err) && err->kind == OCITREE_ERROR_NOT_FOUND, "a missing layout");
	free(missing);
	char *bad = path("bad");
	mkdir(bad, 0755);
	reset();
	ok(!ocitree_layout_open(bad, &err) && strstr(err->msg, "oci-layout"), "a directory without oci-layout");
	write_file("bad/oci-layout", "{\"imageLayoutVersion\":\"2.0.0\"}");
	reset();
	ok(!ocitree_layout_open(bad, &err) && strstr(err->msg, "unsupported imageLayoutVersion"),
	   "an unknown layout version");
	write_file("bad/oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
	char *blobs = path("bad/blobs");
	mkdir(blobs, 0755);
	free(blobs);
	write_file("bad/index.json", "{\"schemaVersion\":2,\"manifests\":[");
	reset();
	ok(!ocitree_layout_open(bad, &err) && strstr(err->msg, "index.json") && strstr(err->msg, "invalid JSON"),
	   "a corrupt index.json names the file");
	free(bad);
	reset();
}

static void test_blobs(void)
{
	char *l = path("l2");
	ocitree_layout_create(l, NULL);
	struct ocitree_layout *lay = ocitree_layout_open(l, &err);
	char d[OCITREE_DIGEST_MAX];
	ok(ocitree_blob_put(lay, "hello", 5, d, &err) == 0, "put a blob");
	is_str(d, "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "its digest");
	ok(ocitree_blob_exists(lay, d), "it exists");
	char *data = NULL;
	size_t len = 0;
	ok(ocitree_blob_read(lay, d, 5, 100, &data, &len, &err) == 0 && len == 5 && memcmp(data, "hello", 5) == 0,
	   "read it back verified");
	free(data);
	data = NULL;
	reset();
	ok(ocitree_blob_read(lay, d, 6, 100, &data, &len, &err) < 0 && err->kind == OCITREE_ERROR_DIGEST,
	   "a wrong declared size is a digest error");
	reset();
	ok(ocitree_blob_read(lay, d, 5, 3, &data, &len, &err) < 0 && strstr(err->msg, "too large"),
	   "the size limit holds");
	reset();
	/* corrupt the blob in place */
	write_file("l2/blobs/sha256/2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "jello");
	ok(ocitree_blob_read(lay, d, 5, 100, &data, &len, &err) < 0 && err->kind == OCITREE_ERROR_DIGEST &&
		   strstr(err->msg, "does not match its digest"),
	   "a corrupt blob is detected");
	reset();
	ok(ocitree_blob_read(lay, "sha256:0000000000000000000000000000000000000000000000000000000000000000", -1, 100,
			     &data, &len, &err) < 0 &&
		   err->kind == OCITREE_ERROR_NOT_FOUND,
	   "a missing blob is not-found");
	reset();
	struct ocitree_blob_writer *w = ocitree_blob_writer_new(lay, &err);
	ocitree_blob_writer_write(w, "partial", 7, &err);
	ok(count_blobs("l2") == 2, "an uncommitted writer has a temporary file");
	ocitree_blob_writer_free(w);
	is_int(count_blobs("l2"), 1, "freeing it removes the temporary file");
	ocitree_layout_free(lay);
	free(l);
	reset();
}

static int add_tag(struct ocitree_index *idx, void *ud, struct ocitree_error **e)
{
	ocitree_index_set_ref(idx, "t", ud);
	return 0;
}

static int add_tag3(struct ocitree_index *idx, void *ud, struct ocitree_error **e)
{
	ocitree_index_set_ref(idx, "t3", ud);
	return 0;
}

static int add_tag3a(struct ocitree_index *idx, void *ud, struct ocitree_error **e)
{
	ocitree_index_set_ref(idx, "t3a", ud);
	return 0;
}

static int refuse(struct ocitree_index *idx, void *ud, struct ocitree_error **e)
{
	ocitree_index_set_ref(idx, "x", ud);
	return ocitree_error_setk(e, OCITREE_ERROR_INVALID, "refused");
}

static void test_images_and_gc(void)
{
	char *l = path("l3");
	ocitree_layout_create(l, NULL);
	struct ocitree_layout *lay = ocitree_layout_open(l, &err);
	struct ocitree_image *img = ocitree_image_new(lay);
	ok(ocitree_image_commit(img, "a", &err) == 0, "commit a new image");
	ocitree_image_free(img);
	reset();
	img = ocitree_image_open(lay, "a", &err);
	ok(img && img->manifest->n_layers == 0 && strcmp(img->config->os, "linux") == 0, "open it by tag");
	reset();
	ok(!ocitree_image_open(lay, "b", &err) && err->kind == OCITREE_ERROR_NOT_FOUND && strstr(err->msg, "'b'"),
	   "a missing tag names the tag");
	reset();
	ok(ocitree_image_commit(img, "bad tag", &err) < 0 && err->kind == OCITREE_ERROR_USAGE, "a bad tag is refused");
	reset();

	/* an index pointing at a blob that is not there is refused */
	struct ocitree_descriptor ghost = {0};
	ghost.media_type = xstrdup(OCITREE_MT_OCI_MANIFEST);
	strcpy(ghost.digest, "sha256:0000000000000000000000000000000000000000000000000000000000000000");
	ok(ocitree_layout_update_index(lay, add_tag, &ghost, &err) < 0 && strstr(err->msg, "is missing"),
	   "a tag to a missing blob is refused");
	reset();
	char *before = xasprintf("cat %s/index.json", l);
	ok(ocitree_layout_update_index(lay, refuse, &img->manifest_desc, &err) < 0, "an update can be refused");
	reset();
	struct ocitree_index *idx = ocitree_layout_read_index(lay, &err);
	ok(idx && idx->n_manifests == 1, "a refused update leaves index.json as it was");
	ocitree_index_free(idx);
	free(before);
	ocitree_descriptor_clear(&ghost);

	/* a nested index for several platforms: the host's is picked */
	char *mjson = ocitree_manifest_to_json(img->manifest);
	char fmt[4096];
	snprintf(fmt, sizeof(fmt),
		 "{\"schemaVersion\":2,\"mediaType\":\"" OCITREE_MT_OCI_INDEX "\",\"manifests\":["
		 "{\"mediaType\":\"" OCITREE_MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":%jd,"
		 "\"platform\":{\"architecture\":\"not-%s\",\"os\":\"linux\"}},"
		 "{\"mediaType\":\"" OCITREE_MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":%jd,"
		 "\"platform\":{\"architecture\":\"%s\",\"os\":\"linux\"}}]}",
		 img->manifest_desc.digest, (intmax_t)img->manifest_desc.size, ocitree_host_architecture(),
		 img->manifest_desc.digest, (intmax_t)img->manifest_desc.size, ocitree_host_architecture());
	struct ocitree_descriptor nd = {0};
	nd.media_type = xstrdup(OCITREE_MT_OCI_INDEX);
	ocitree_blob_put(lay, fmt, strlen(fmt), nd.digest, &err);
	nd.size = (int64_t)strlen(fmt);
	ok(ocitree_layout_update_index(lay, add_tag, &nd, &err) == 0, "tag a nested index");
	struct ocitree_image *nested = ocitree_image_open(lay, "t", &err);
	ok(nested && strcmp(nested->manifest_desc.digest, img->manifest_desc.digest) == 0,
	   "a nested index resolves to the host's manifest");
	ok(nested && nested->index && nested->index_pos == 1 && nested->index_is_root &&
	       strcmp(nested->root.digest, nd.digest) == 0,
	   "and remembers the index and its entry");
	ocitree_image_free(nested);
	reset();

	/* --platform: the entry asked for, or an error listing what there is */
	struct ocitree_platform want = {0};
	char *other = xasprintf("linux/not-%s", ocitree_host_architecture());
	ocitree_platform_parse(other, &want, &err);
	nested = ocitree_image_open_platform(lay, "t", &want, &err);
	ok(nested && nested->index_pos == 0, "a platform selects its entry");
	ocitree_platform_clear(&want);
	ocitree_platform_parse("linux/s390x", &want, &err);
	if (strcmp(ocitree_host_architecture(), "s390x") != 0) {
		char *msg = xasprintf("no manifest for linux/s390x in tag 't'; it has %s, linux/%s", other,
				      ocitree_host_architecture());
		ok(!ocitree_image_open_platform(lay, "t", &want, &err) && err->kind == OCITREE_ERROR_NOT_FOUND &&
		       strcmp(err->msg, msg) == 0,
		   "a platform the index lacks: the error lists those it has");
		if (err)
			diag("%s", err->msg);
		free(msg);
		reset();
	}
	ocitree_platform_clear(&want);
	free(other);

	/* a commit of one platform: a new index, only that entry replaced */
	if (nested) {
		free(nested->config->author);
		nested->config->author = xstrdup("platform test");
		ok(ocitree_image_commit(nested, "t2", &err) == 0, "commit one platform of an index");
		struct ocitree_descriptor m2, r2;
		ok(ocitree_image_resolve(lay, "t2", &m2, &r2, &err) == 0 &&
		       strcmp(r2.media_type, OCITREE_MT_OCI_INDEX) == 0 && strcmp(r2.digest, nd.digest) != 0,
		   "the tag names a new index");
		struct ocitree_index *ni = ocitree_blob_read_index(lay, &r2, &err);
		ok(ni && ni->n_manifests == 2 && strcmp(ni->manifests[1].digest, img->manifest_desc.digest) == 0 &&
		       strcmp(ni->manifests[0].digest, nested->manifest_desc.digest) == 0 &&
		       strcmp(ni->manifests[0].digest, img->manifest_desc.digest) != 0 && ni->manifests[0].platform &&
		       strncmp(ni->manifests[0].platform->architecture, "not-", 4) == 0,
		   "the other entry is untouched, this one replaced with its platform kept");
		ok(strcmp(nested->root.digest, r2.digest) == 0, "the image now describes the new index");
		ocitree_index_free(ni);
		ocitree_descriptor_clear(&m2);
		ocitree_descriptor_clear(&r2);
		ocitree_image_free(nested);
	}
	reset();

	/* two platforms of one tag written one after the other, each opened
	 * before either was written: both changes stay */
	struct ocitree_descriptor t_root = {0}, t_m = {0};
	ocitree_image_resolve(lay, "t", &t_m, &t_root, &err);
	ocitree_layout_update_index(lay, add_tag3, &t_root, &err);
	struct ocitree_platform p0 = {0};
	char *p0s = xasprintf("linux/not-%s", ocitree_host_architecture());
	ocitree_platform_parse(p0s, &p0, &err);
	struct ocitree_image *i0 = ocitree_image_open_platform(lay, "t3", &p0, &err);
	struct ocitree_image *i1 = ocitree_image_open_platform(lay, "t3", NULL, &err);
	ok(i0 && i1 && i0->index_pos == 0 && i1->index_pos == 1, "open both platforms of a tag");
	if (i0 && i1) {
		free(i0->config->author);
		i0->config->author = xstrdup("zero");
		free(i1->config->author);
		i1->config->author = xstrdup("one");
		ok(ocitree_image_commit(i0, "t3", &err) == 0, "commit one platform");
		/* (kept by a tag: the gc test below counts what it removes) */
		ocitree_layout_update_index(lay, add_tag3a, &i0->root, &err);
		ok(ocitree_image_commit(i1, "t3", &err) == 0, "then the other, opened before");
		struct ocitree_descriptor m3, r3;
		ocitree_image_resolve(lay, "t3", &m3, &r3, &err);
		struct ocitree_index *ti = ocitree_blob_read_index(lay, &r3, &err);
		ok(ti && ti->n_manifests == 2 && strcmp(ti->manifests[0].digest, i0->manifest_desc.digest) == 0 &&
		       strcmp(ti->manifests[1].digest, i1->manifest_desc.digest) == 0,
		   "the second commit went into the index the first one wrote");
		ocitree_index_free(ti);
		ocitree_descriptor_clear(&m3);
		ocitree_descriptor_clear(&r3);
	}
	ocitree_image_free(i0);
	ocitree_image_free(i1);
	ocitree_platform_clear(&p0);
	free(p0s);
	ocitree_descriptor_clear(&t_root);
	ocitree_descriptor_clear(&t_m);
	reset();

	/* an index that contains itself cannot be written (content addressing),
	 * but two indexes naming each other can be faked by their digests */
	snprintf(fmt, sizeof(fmt),
		 "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" OCITREE_MT_OCI_INDEX
		 "\",\"digest\":\"%s\",\"size\":%jd}]}",
		 nd.digest, (intmax_t)nd.size);
	struct ocitree_descriptor outer = {0};
	outer.media_type = xstrdup(OCITREE_MT_OCI_INDEX);
	ocitree_blob_put(lay, fmt, strlen(fmt), outer.digest, &err);
	outer.size = (int64_t)strlen(fmt);
	ok(ocitree_layout_update_index(lay, add_tag, &outer, &err) == 0, "tag a twice-nested index");
	nested = ocitree_image_open(lay, "t", &err);
	ok(nested != NULL, "two levels of nesting resolve");
	ok(nested && nested->index && !nested->index_is_root, "to the inner index, which is not the tag's");
	ocitree_image_free(nested);
	reset();

	/* gc keeps everything reachable, drops the rest and stale temporaries */
	char junk[OCITREE_DIGEST_MAX];
	ocitree_blob_put(lay, "junk", 4, junk, &err);
	write_file("l3/blobs/sha256/.ocitree-tmp.blob.stale", "x");
	ocitree_layout_free(lay);
	lay = ocitree_layout_open(l, &err);
	int nblobs = count_blobs("l3");
	struct ocitree_gc_stats st;
	ok(ocitree_layout_gc(lay, &st, &err) == 0, "gc runs");
	is_int(st.blobs_removed, 1, "gc removed the unreferenced blob");
	is_int(st.tmp_removed, 1, "gc removed the stale temporary file");
	is_int(count_blobs("l3"), nblobs - 2, "everything else is kept");
	ok(!ocitree_blob_exists(lay, junk), "the junk blob is gone");
	nested = ocitree_image_open(lay, "t", &err);
	ok(nested != NULL, "the nested image still opens after gc");
	ocitree_image_free(nested);
	reset();

	/* gc refuses to sweep when a reachable manifest is unreadable */
	char *mpath = xasprintf("%s/blobs/sha256/%s", l, ocitree_digest_hex(img->manifest_desc.digest));
	unlink(mpath);
	ok(ocitree_layout_gc(lay, &st, &err) < 0 && strstr(err->msg, "is missing"),
	   "gc stops when a reachable manifest is missing");
	ok(ocitree_blob_exists(lay, nd.digest), "and removed nothing");
	free(mpath);
	free(mjson);
	ocitree_descriptor_clear(&nd);
	ocitree_descriptor_clear(&outer);
	ocitree_image_free(img);
	ocitree_layout_free(lay);
	free(l);
	reset();
}

static void test_tags(void)
{
	static const char *const good[] = {"latest", "v1.0", "a_b-c.d", "A9"};
	static const char *const bad[] = {"", "a:b", "a/b", "-x", ".x", "a b", "é"};
	for (size_t i = 0; i < ARRAY_SIZE(good); i++)
		ok(ocitree_tag_check(good[i], NULL) == 0, "tag '%s' accepted", good[i]);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		ok(ocitree_tag_check(bad[i], NULL) < 0, "tag '%s' refused", bad[i]);
	char *p = NULL, *t = NULL;
	ok(ocitree_image_ref_parse("some/dir", &p, &t, NULL) == 0 && !strcmp(p, "some/dir") && !strcmp(t, "latest"),
	   "--image without a tag means latest");
	free(p), free(t);
	ok(ocitree_image_ref_parse("dir:v2", &p, &t, NULL) == 0 && !strcmp(p, "dir") && !strcmp(t, "v2"),
	   "--image with a tag");
	free(p), free(t);
	ok(ocitree_image_ref_parse("a:b:c", &p, &t, &err) < 0 && strstr(err->msg, "path contains ':'"),
	   "a ':' in the path is refused");
	reset();
	ok(ocitree_image_ref_parse(":x", &p, &t, &err) < 0 && strstr(err->msg, "path is empty"), "an empty path");
	reset();
}

static void test_platforms(void)
{
	struct ocitree_platform p;
	ok(ocitree_platform_parse("linux/arm64/v8", &p, &err) == 0 && strcmp(p.os, "linux") == 0 &&
	       strcmp(p.architecture, "arm64") == 0 && strcmp(p.variant, "v8") == 0,
	   "parse OS/ARCH/VARIANT");
	char *f = ocitree_platform_format(&p);
	is_str(f, "linux/arm64/v8", "formatted back");
	free(f);
	struct ocitree_platform entry = {.os = (char *)"linux", .architecture = (char *)"arm64"};
	ok(ocitree_platform_match(&entry, &p), "arm64 without a variant is arm64/v8");
	entry.variant = (char *)"v7";
	ok(!ocitree_platform_match(&entry, &p), "a variant asked for must match");
	ocitree_platform_clear(&p);
	ok(ocitree_platform_parse("linux/arm64", &p, &err) == 0 && !p.variant, "parse OS/ARCH");
	ok(ocitree_platform_match(&entry, &p), "no variant asked for takes any");
	entry.os = (char *)"windows";
	ok(!ocitree_platform_match(&entry, &p), "the os must match");
	ocitree_platform_clear(&p);
	const char *bad[] = {"", "linux", "linux/", "/amd64", "linux//v8", "linux/amd64/", "linux/amd64/v8/x",
			     "Linux/amd64", "linux/am d64", "linux/amd64:x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		ok(ocitree_platform_parse(bad[i], &p, &err) < 0 && err->kind == OCITREE_ERROR_USAGE && !p.os,
		   "'%s' is refused", bad[i]);
		reset();
	}
}

int main(void)
{
	if (!mkdtemp(root)) {
		printf("1..0 # SKIP cannot create a temporary directory\n");
		return 0;
	}
	test_create_open();
	test_blobs();
	test_images_and_gc();
	test_tags();
	test_platforms();
	char *cmd = xasprintf("rm -rf %s", root);
	if (system(cmd) != 0)
		diag("could not remove %s", root);
	free(cmd);
	return done_testing();
}
