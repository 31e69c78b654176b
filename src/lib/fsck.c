/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checking a layout (ocitree/fsck.h): every blob hashed against its name,
 * every ref walked down through indexes and manifests to its config and
 * layers, optionally every layer decompressed against its diff_id.  What is
 * wrong with blobs and refs goes into the report rather than being returned
 * as an error, so that one run lists every problem.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "layout-internal.h"
#include "ocitree/fsck.h"
#include "ocitree/layer.h"
#include "util.h"

struct fsck {
	struct ocitree_layout *l;
	unsigned flags;
	struct ocitree_fsck_report *r;
	struct strset ok;      /* blobs whose content matched their name */
	struct strset bad;     /* blobs that are missing or corrupt (reported once) */
	struct strset visited; /* descriptors walked from refs */
	struct strset diffed;  /* "layer diff_id" pairs already decompressed */
	size_t cap_problems;
};

static void problem(struct fsck *f, const char *object, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(struct fsck *f, const char *object, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *m = xvasprintf(fmt, ap);
	va_end(ap);
	GROW(f->r->problems, f->cap_problems, f->r->n_problems + 1);
	f->r->problems[f->r->n_problems].object = xstrdup(object);
	f->r->problems[f->r->n_problems].message = m;
	f->r->n_problems++;
}

static void push(char ***v, const char *s)
{
	size_t n = strv_len(*v);
	*v = xrealloc(*v, (n + 2) * sizeof(char *));
	(*v)[n] = xstrdup(s);
	(*v)[n + 1] = NULL;
}

/* Hash every file under blobs/<alg>/ and compare it with its name. */
static void check_blobs(struct fsck *f)
{
	DIR *top = fdopendir(openat(f->l->dirfd, "blobs", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	if (!top) {
		problem(f, "blobs", "cannot read the blobs directory: %s", strerror(errno));
		return;
	}
	struct dirent *a;
	while ((a = readdir(top))) {
		if (a->d_name[0] == '.')
			continue;
		_cleanup_free_ char *sub = xasprintf("blobs/%s", a->d_name);
		int dfd = openat(f->l->dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
		if (!d) {
			if (dfd >= 0)
				close(dfd);
			problem(f, sub, "not a directory of blobs");
			continue;
		}
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			_cleanup_free_ char *rel = xasprintf("%s/%s", sub, e->d_name);
			if (str_has_prefix(e->d_name, OCITREE_TMP_PREFIX)) {
				push(&f->r->temporary, rel);
				continue;
			}
			_cleanup_free_ char *digest = xasprintf("%s:%s", a->d_name, e->d_name);
			struct ocitree_error *err = NULL;
			if (ocitree_digest_check(digest, &err) < 0) {
				problem(f, rel, "not a blob: %s", err->msg);
				ocitree_error_free(err);
				continue;
			}
			struct ocitree_blob_reader *r = ocitree_blob_reader_open(f->l, digest, -1, &err);
			char buf[1 << 16];
			ssize_t n = r ? 1 : -1;
			while (r && (n = ocitree_blob_reader_read(r, buf, sizeof(buf), &err)) > 0)
				;
			if (r)
				f->r->bytes += (uint64_t)ocitree_blob_reader_offset(r);
			ocitree_blob_reader_free(r);
			f->r->n_blobs++;
			if (n < 0) {
				problem(f, digest, "%s", err->msg);
				strset_add(&f->bad, digest);
				ocitree_error_free(err);
			} else {
				strset_add(&f->ok, digest);
			}
		}
		closedir(d);
	}
	closedir(top);
}

/* A blob a ref needs: present, hashed clean, and of the declared size. */
static bool need_blob(struct fsck *f, const struct ocitree_descriptor *d, const char *what)
{
	struct ocitree_error *err = NULL;
	if (ocitree_digest_check(d->digest, &err) < 0) {
		problem(f, d->digest, "%s: %s", what, err->msg);
		ocitree_error_free(err);
		return false;
	}
	if (strset_has(&f->bad, d->digest))
		return false;
	if (!strset_has(&f->ok, d->digest)) {
		if (d->urls || strstr(d->media_type, "nondistributable") || strstr(d->media_type, "foreign"))
			return false; /* may live elsewhere */
		problem(f, d->digest, "%s is missing", what);
		strset_add(&f->bad, d->digest);
		return false;
	}
	_cleanup_free_ char *p = blob_path(d->digest);
	struct stat st;
	if (fstatat(f->l->dirfd, p, &st, 0) == 0 && st.st_size != d->size) {
		problem(f, d->digest, "%s is %jd bytes but its descriptor says %jd", what, (intmax_t)st.st_size,
			(intmax_t)d->size);
		return false;
	}
	return true;
}

static void walk(struct fsck *f, const struct ocitree_descriptor *d, const char *ref, int depth);

/* Decompress a layer to its end: the reader checks the blob digest on the
 * way and the uncompressed digest against diff_id at the end. */
static void check_diff_id(struct fsck *f, const struct ocitree_descriptor *l, const char *diff_id, const char *what)
{
	_cleanup_free_ char *key = xasprintf("%s %s", l->digest, diff_id);
	if (!strset_add(&f->diffed, key))
		return;
	struct ocitree_error *err = NULL;
	struct ocitree_layer_reader *r = ocitree_layer_reader_open(f->l, l, diff_id, &err);
	ssize_t n = r ? 1 : -1;
	const void *data;
	while (r && (n = ocitree_layer_reader_next(r, &data, &err)) > 0)
		;
	if (r) {
		f->r->uncompressed += ocitree_layer_reader_offset(r);
		f->r->n_layers++;
	}
	ocitree_layer_reader_free(r);
	if (n < 0) {
		problem(f, l->digest, "%s: %s", what, err->msg);
		ocitree_error_free(err);
	}
}

static void walk_manifest(struct fsck *f, const struct ocitree_descriptor *d, const char *ref)
{
	struct ocitree_error *err = NULL;
	struct ocitree_manifest *m = ocitree_blob_read_manifest(f->l, d, &err);
	if (!m) {
		problem(f, d->digest, "%s: %s", ref, err->msg);
		ocitree_error_free(err);
		return;
	}
	bool image = ocitree_media_type_kind(m->config.media_type) == OCITREE_DOC_CONFIG;
	struct ocitree_config *c = NULL;
	if (need_blob(f, &m->config, "config") && image) {
		c = ocitree_blob_read_config(f->l, &m->config, &err);
		if (!c) {
			problem(f, m->config.digest, "%s: %s", ref, err->msg);
			ocitree_error_free(err);
			err = NULL;
		}
	}
	strset_add(&f->visited, m->config.digest);
	if (c && strv_len(c->diff_ids) != m->n_layers)
		problem(f, d->digest, "%s: %zu layers but the config lists %zu diff_ids", ref, m->n_layers,
			strv_len(c->diff_ids));
	for (size_t i = 0; i < m->n_layers; i++) {
		const struct ocitree_descriptor *l = &m->layers[i];
		strset_add(&f->visited, l->digest);
		enum ocitree_compression comp;
		if (image && ocitree_layer_compression(l->media_type, &comp, NULL) < 0)
			problem(f, l->digest, "%s: layer %zu has media type '%s', not a layer", ref, i, l->media_type);
		_cleanup_free_ char *what = xasprintf("layer %zu of %s", i, ref);
		if (need_blob(f, l, what) && c && (f->flags & OCITREE_FSCK_FULL) && i < strv_len(c->diff_ids))
			check_diff_id(f, l, c->diff_ids[i], what);
	}
	if (m->subject)
		strset_add(&f->visited, m->subject->digest);
	ocitree_config_free(c);
	ocitree_manifest_free(m);
}

static void walk(struct fsck *f, const struct ocitree_descriptor *d, const char *ref, int depth)
{
	if (depth > 8) {
		problem(f, d->digest, "%s: image indexes nested deeper than 8", ref);
		return;
	}
	bool first = strset_add(&f->visited, d->digest);
	if (!need_blob(f, d, ref) || !first)
		return;
	switch (ocitree_media_type_kind(d->media_type)) {
	case OCITREE_DOC_INDEX: {
		struct ocitree_error *err = NULL;
		struct ocitree_index *idx = ocitree_blob_read_index(f->l, d, &err);
		if (!idx) {
			problem(f, d->digest, "%s: %s", ref, err->msg);
			ocitree_error_free(err);
			return;
		}
		for (size_t i = 0; i < idx->n_manifests; i++)
			walk(f, &idx->manifests[i], ref, depth + 1);
		ocitree_index_free(idx);
		break;
	}
	case OCITREE_DOC_MANIFEST:
		walk_manifest(f, d, ref);
		break;
	default:
		break; /* an artifact: present and intact is all we can say */
	}
}

static void collect_unreferenced(struct fsck *f)
{
	for (size_t i = 0; i < f->ok.cap; i++)
		if (f->ok.slots[i] && !strset_has(&f->visited, f->ok.slots[i]))
			push(&f->r->unreferenced, f->ok.slots[i]);
	DIR *d = fdopendir(dup(f->l->dirfd));
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (str_has_prefix(e->d_name, OCITREE_TMP_PREFIX))
			push(&f->r->temporary, e->d_name);
	if (d)
		closedir(d);
}

OCITREE_EXPORT int ocitree_layout_fsck(struct ocitree_layout *l, unsigned flags, struct ocitree_fsck_report *report,
				       struct ocitree_error **err)
{
	memset(report, 0, sizeof(*report));
	struct ocitree_index *idx = ocitree_layout_read_index(l, err);
	if (!idx)
		return -1;
	struct fsck f = {.l = l, .flags = flags, .r = report};
	check_blobs(&f);
	for (size_t i = 0; i < idx->n_manifests; i++) {
		const char *tag = ocitree_descriptor_ref_name(&idx->manifests[i]);
		_cleanup_free_ char *ref = tag ? xasprintf("tag '%s'", tag) : xasprintf("index.json entry %zu", i);
		walk(&f, &idx->manifests[i], ref, 0);
		report->n_refs++;
	}
	collect_unreferenced(&f);
	if (report->unreferenced)
		qsort(report->unreferenced, strv_len(report->unreferenced), sizeof(char *), strcmp_p);
	ocitree_index_free(idx);
	strset_free(&f.ok);
	strset_free(&f.bad);
	strset_free(&f.visited);
	strset_free(&f.diffed);
	return 0;
}

OCITREE_EXPORT void ocitree_fsck_report_clear(struct ocitree_fsck_report *r)
{
	for (size_t i = 0; i < r->n_problems; i++) {
		free(r->problems[i].object);
		free(r->problems[i].message);
	}
	free(r->problems);
	strv_free(r->unreferenced);
	strv_free(r->temporary);
	memset(r, 0, sizeof(*r));
}
