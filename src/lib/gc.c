/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Garbage collection of a layout (ocitree_layout_gc): mark every blob
 * reachable from index.json, then sweep blobs/ and stale temporary files,
 * under the exclusive blobs lock that keeps it from removing what a running
 * command is about to reference (see ocitree/layout.h).
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "layout-internal.h"
#include "util.h"

static int mark(struct ocitree_layout *l, struct strset *s, const struct ocitree_descriptor *d, int depth,
		struct ocitree_error **err);

static int mark_list(struct ocitree_layout *l, struct strset *s, const struct ocitree_descriptor *d, size_t n,
		     int depth, struct ocitree_error **err)
{
	for (size_t i = 0; i < n; i++)
		if (mark(l, s, &d[i], depth, err) < 0)
			return -1;
	return 0;
}

static int mark(struct ocitree_layout *l, struct strset *s, const struct ocitree_descriptor *d, int depth,
		struct ocitree_error **err)
{
	if (depth > 16)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "image indexes nested deeper than 16 at %s",
					  d->digest);
	if (ocitree_digest_check(d->digest, NULL) < 0 || !strset_add(s, d->digest))
		return 0;
	enum ocitree_doc_kind kind = ocitree_media_type_kind(d->media_type);
	if (kind == OCITREE_DOC_INDEX) {
		struct ocitree_index *idx = ocitree_blob_read_index(l, d, err);
		if (!idx)
			return -1;
		int r = mark_list(l, s, idx->manifests, idx->n_manifests, depth + 1, err);
		if (r == 0 && idx->subject && ocitree_blob_exists(l, idx->subject->digest))
			r = mark(l, s, idx->subject, depth + 1, err);
		ocitree_index_free(idx);
		return r;
	}
	if (kind == OCITREE_DOC_MANIFEST) {
		struct ocitree_manifest *m = ocitree_blob_read_manifest(l, d, err);
		if (!m)
			return -1;
		int r = mark(l, s, &m->config, depth + 1, err);
		if (r == 0)
			r = mark_list(l, s, m->layers, m->n_layers, depth + 1, err);
		if (r == 0 && m->subject && ocitree_blob_exists(l, m->subject->digest))
			r = mark(l, s, m->subject, depth + 1, err);
		ocitree_manifest_free(m);
		return r;
	}
	if (!ocitree_blob_exists(l, d->digest)) {
		/* foreign (non-distributable) layers may legitimately live elsewhere */
		if (d->urls || strstr(d->media_type, "nondistributable") || strstr(d->media_type, "foreign")) {
			log_warn("gc: non-distributable blob %s is not in the layout", d->digest);
			return 0;
		}
		return ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND,
					  "referenced blob %s (%s) is missing; refusing to collect garbage", d->digest,
					  d->media_type);
	}
	return 0;
}

static void remove_stale_tmp(int dirfd, struct ocitree_gc_stats *st)
{
	int fd = dup(dirfd);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (!dir) {
		if (fd >= 0)
			close(fd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(dir))) {
		if (str_has_prefix(e->d_name, OCITREE_TMP_PREFIX) && unlinkat(dirfd, e->d_name, 0) == 0)
			st->tmp_removed++;
	}
	closedir(dir);
}

static int sweep_alg(struct ocitree_layout *l, const char *alg, const struct strset *s,
		     struct ocitree_gc_stats *st, struct ocitree_error **err)
{
	_cleanup_free_ char *sub = xasprintf("blobs/%s", alg);
	int fd = openat(l->dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return ocitree_error_set(err, errno, "open '%s/%s'", l->path, sub);
	DIR *dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return ocitree_error_set(err, errno, "read '%s/%s'", l->path, sub);
	}
	struct dirent *e;
	int ret = 0;
	while ((e = readdir(dir))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (str_has_prefix(e->d_name, OCITREE_TMP_PREFIX)) {
			if (unlinkat(fd, e->d_name, 0) == 0)
				st->tmp_removed++;
			continue;
		}
		_cleanup_free_ char *digest = xasprintf("%s:%s", alg, e->d_name);
		if (ocitree_digest_check(digest, NULL) < 0) {
			log_warn("gc: leaving '%s/%s/%s', which is not a blob", l->path, sub, e->d_name);
			continue;
		}
		if (strset_has(s, digest)) {
			st->blobs_kept++;
			continue;
		}
		struct stat sb;
		if (fstatat(fd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(sb.st_mode))
			continue;
		if (unlinkat(fd, e->d_name, 0) < 0) {
			ret = ocitree_error_set(err, errno, "remove blob %s", digest);
			break;
		}
		log_info("gc: removed blob %s", digest);
		st->blobs_removed++;
		st->bytes_removed += (uint64_t)sb.st_size;
	}
	closedir(dir);
	return ret;
}

OCITREE_EXPORT int ocitree_layout_gc(struct ocitree_layout *l, struct ocitree_gc_stats *stats,
				     struct ocitree_error **err)
{
	struct ocitree_gc_stats st = {0};
	if (l->blobs_lock_fd >= 0)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "gc: the layout is held by this process");
	_cleanup_close_ int bfd = openat(l->dirfd, "blobs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_close_ int lfd = openat(l->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (bfd < 0 || lfd < 0)
		return ocitree_error_set(err, errno, "gc '%s'", l->path);
	/* blobs first, then the layout: the order every writer takes them in */
	if (flock(bfd, LOCK_NB | LOCK_EX) < 0) {
		log_info("gc: waiting for running commands to finish");
		while (flock(bfd, LOCK_EX) < 0)
			if (errno != EINTR)
				return ocitree_error_set(err, errno, "gc '%s': lock blobs", l->path);
	}
	while (flock(lfd, LOCK_EX) < 0)
		if (errno != EINTR)
			return ocitree_error_set(err, errno, "gc '%s': lock layout", l->path);

	struct ocitree_index *idx = ocitree_layout_read_index(l, err);
	if (!idx)
		return -1;
	struct strset s = {0};
	int r = mark_list(l, &s, idx->manifests, idx->n_manifests, 0, err);
	ocitree_index_free(idx);
	if (r == 0) {
		DIR *dir = fdopendir(dup(bfd));
		struct dirent *e;
		while (dir && r == 0 && (e = readdir(dir))) {
			if (e->d_name[0] == '.' || e->d_type == DT_REG)
				continue;
			r = sweep_alg(l, e->d_name, &s, &st, err);
		}
		if (dir)
			closedir(dir);
		remove_stale_tmp(l->dirfd, &st);
	}
	strset_free(&s);
	if (r < 0)
		return ocitree_error_prefix(err, "gc '%s'", l->path);
	if (stats)
		*stats = st;
	return 0;
}
