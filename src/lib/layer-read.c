/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading layers: a thread reads the blob (hashing it), decompresses and
 * hashes the result into a ring of chunks; the consumer takes chunks without
 * copying, through libarchive for tar entries.
 */
#include "config.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>

#include "layer-internal.h"
#include "ocitree/digest.h"

#define CHUNK_SIZE (512u << 10)
#define N_CHUNKS 8

struct chunk {
	uint8_t *data;
	size_t len;
};

struct ocitree_layer_reader {
	char *what;
	struct ocitree_blob_reader *blob; /* or fd */
	int fd;
	struct decompressor *dec;
	char want_diff_id[OCITREE_DIGEST_MAX];
	char diff_id[OCITREE_DIGEST_MAX]; /* written by the thread before it sets end */
	uint64_t limit;

	pthread_mutex_t mu; /* protects produced, released, end, error, cancel */
	pthread_cond_t cv;
	struct chunk ring[N_CHUNKS];
	uint64_t produced; /* chunks filled by the thread */
	uint64_t released; /* chunks the consumer is done with */
	bool end;          /* the thread finished: verified end or error */
	struct ocitree_error *error;
	bool cancel;

	/* consumer side */
	pthread_t thread;
	bool started;
	bool holding; /* the consumer holds chunk `released` */
	uint64_t offset;
	struct ocitree_error *final_error; /* taken from the thread */
	bool finished;
};

static ssize_t src_blob(void *ctx, void *buf, size_t len, struct ocitree_error **err)
{
	return ocitree_blob_reader_read(ctx, buf, len, err);
}

static ssize_t src_fd(void *ctx, void *buf, size_t len, struct ocitree_error **err)
{
	struct ocitree_layer_reader *r = ctx;
	ssize_t n;
	do
		n = read(r->fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return ocitree_error_set(err, errno, "read %s", r->what);
	return n;
}

static struct ocitree_layer_reader *reader_new(const char *what, const char *diff_id)
{
	struct ocitree_layer_reader *r = xcalloc(1, sizeof(*r));
	r->what = xstrdup(what);
	r->fd = -1;
	if (diff_id)
		snprintf(r->want_diff_id, sizeof(r->want_diff_id), "%s", diff_id);
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	for (size_t i = 0; i < N_CHUNKS; i++)
		r->ring[i].data = xmalloc(CHUNK_SIZE);
	return r;
}

OCITREE_EXPORT struct ocitree_layer_reader *ocitree_layer_reader_open(struct ocitree_layout *l,
								      const struct ocitree_descriptor *desc,
								      const char *diff_id, struct ocitree_error **err)
{
	enum ocitree_compression comp;
	if (ocitree_layer_compression(desc->media_type, &comp, err) < 0)
		return ocitree_error_prefix(err, "layer %s", desc->digest), NULL;
	if (diff_id && ocitree_digest_check(diff_id, err) < 0)
		return ocitree_error_prefix(err, "layer %s: diff_id", desc->digest), NULL;
	struct ocitree_blob_reader *b = ocitree_blob_reader_open(l, desc->digest, desc->size, err);
	if (!b)
		return ocitree_error_prefix(err, "layer %s", desc->digest), NULL;
	_cleanup_free_ char *what = xasprintf("layer %s", desc->digest);
	struct ocitree_layer_reader *r = reader_new(what, diff_id);
	r->blob = b;
	r->dec = decompressor_new(comp, src_blob, b, what);
	return r;
}

OCITREE_EXPORT struct ocitree_layer_reader *ocitree_layer_reader_open_fd(int fd, enum ocitree_compression comp,
									 const char *diff_id, const char *what,
									 struct ocitree_error **err)
{
	if (diff_id && ocitree_digest_check(diff_id, err) < 0) {
		close(fd);
		return ocitree_error_prefix(err, "%s: diff_id", what), NULL;
	}
	struct ocitree_layer_reader *r = reader_new(what, diff_id);
	r->fd = fd;
	r->dec = decompressor_new(comp, src_fd, r, what);
	return r;
}

OCITREE_EXPORT void ocitree_layer_reader_set_limit(struct ocitree_layer_reader *r, uint64_t max_bytes)
{
	r->limit = max_bytes;
}

/* Undecompressable data is most often a damaged blob: read the rest of the
 * blob, and report its digest mismatch instead when there is one. */
static void blame_blob(struct ocitree_layer_reader *r, struct ocitree_error **err)
{
	if (!r->blob || (*err && (*err)->kind != OCITREE_ERROR_INVALID))
		return;
	struct ocitree_error *e = NULL;
	_cleanup_free_ void *scratch = xmalloc(CHUNK_SIZE);
	ssize_t n;
	while ((n = ocitree_blob_reader_read(r->blob, scratch, CHUNK_SIZE, &e)) > 0)
		;
	if (n < 0 && e->kind == OCITREE_ERROR_DIGEST) {
		ocitree_error_free(*err);
		*err = e;
	} else {
		ocitree_error_free(e);
	}
}

/* The producer: fills chunks until the end of the stream, an error or
 * cancellation; the last thing it does is to set end. */
static void *produce(void *arg)
{
	struct ocitree_layer_reader *r = arg;
	struct ocitree_hasher *h = ocitree_hasher_new("sha256");
	struct ocitree_error *err = NULL;
	uint64_t total = 0;
	for (uint64_t seq = 0;; seq++) {
		pthread_mutex_lock(&r->mu);
		while (seq - r->released >= N_CHUNKS && !r->cancel)
			pthread_cond_wait(&r->cv, &r->mu);
		bool cancel = r->cancel;
		pthread_mutex_unlock(&r->mu);
		if (cancel)
			break;
		struct chunk *c = &r->ring[seq % N_CHUNKS];
		c->len = 0;
		bool eos = false;
		while (c->len < CHUNK_SIZE) {
			ssize_t n = decompressor_read(r->dec, c->data + c->len, CHUNK_SIZE - c->len, &err);
			if (n < 0) {
				blame_blob(r, &err);
				goto out;
			}
			if (n == 0) {
				eos = true;
				break;
			}
			c->len += (size_t)n;
		}
		ocitree_hasher_update(h, c->data, c->len);
		total += c->len;
		if (r->limit && total > r->limit) {
			ocitree_error_setk(&err, OCITREE_ERROR_INVALID,
					   "%s: expands to more than %" PRIu64 " bytes (limit)", r->what, r->limit);
			goto out;
		}
		if (eos) {
			ocitree_hasher_final(h, r->diff_id);
			if (*r->want_diff_id && strcmp(r->diff_id, r->want_diff_id) != 0)
				ocitree_error_setk(&err, OCITREE_ERROR_DIGEST,
						   "%s: uncompressed content %s does not match its diff_id %s", r->what,
						   r->diff_id, r->want_diff_id);
		}
		if (c->len) {
			pthread_mutex_lock(&r->mu);
			r->produced++;
			pthread_cond_broadcast(&r->cv);
			pthread_mutex_unlock(&r->mu);
		}
		if (eos || err)
			break;
	}
out:
	ocitree_hasher_free(h);
	pthread_mutex_lock(&r->mu);
	r->end = true;
	r->error = err;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

OCITREE_EXPORT ssize_t ocitree_layer_reader_next(struct ocitree_layer_reader *r, const void **data,
						 struct ocitree_error **err)
{
	if (r->final_error) {
		/* every later call repeats the error */
		if (err) {
			ocitree_error_free(*err);
			*err = xmalloc(sizeof(**err));
			**err = *r->final_error;
			(*err)->msg = xstrdup(r->final_error->msg);
		}
		return -1;
	}
	if (r->finished)
		return 0;
	if (!r->started) {
		int e = pthread_create(&r->thread, NULL, produce, r);
		if (e != 0)
			return ocitree_error_set(err, e, "%s: start reader thread", r->what);
		r->started = true;
	}
	pthread_mutex_lock(&r->mu);
	if (r->holding) {
		r->released++;
		r->holding = false;
		pthread_cond_broadcast(&r->cv);
	}
	while (r->produced == r->released && !r->end)
		pthread_cond_wait(&r->cv, &r->mu);
	ssize_t ret;
	if (r->produced > r->released) {
		struct chunk *c = &r->ring[r->released % N_CHUNKS];
		*data = c->data;
		ret = (ssize_t)c->len;
		r->holding = true;
		r->offset += c->len;
	} else if (r->error) {
		r->final_error = r->error;
		r->error = NULL;
		ret = -2;
	} else {
		r->finished = true;
		ret = 0;
	}
	pthread_mutex_unlock(&r->mu);
	if (ret == -2)
		return ocitree_layer_reader_next(r, data, err);
	return ret;
}

OCITREE_EXPORT ssize_t ocitree_layer_reader_read(struct ocitree_layer_reader *r, void *buf, size_t len,
						 struct ocitree_error **err)
{
	if (len == 0)
		return 0;
	const void *d;
	ssize_t n = ocitree_layer_reader_next(r, &d, err);
	if (n <= 0)
		return n;
	/* a chunk larger than the caller's buffer is split by handing the rest
	 * back: the reader keeps holding it with an adjusted start */
	if ((size_t)n > len) {
		struct chunk *c = &r->ring[r->released % N_CHUNKS];
		memcpy(buf, d, len);
		memmove(c->data, c->data + len, (size_t)n - len);
		c->len = (size_t)n - len;
		r->offset -= c->len;
		pthread_mutex_lock(&r->mu);
		r->holding = false; /* not released: handed out again next time */
		pthread_mutex_unlock(&r->mu);
		return (ssize_t)len;
	}
	memcpy(buf, d, (size_t)n);
	return n;
}

OCITREE_EXPORT uint64_t ocitree_layer_reader_offset(const struct ocitree_layer_reader *r)
{
	return r->offset;
}

OCITREE_EXPORT const char *ocitree_layer_reader_diff_id(const struct ocitree_layer_reader *r)
{
	return r->finished ? r->diff_id : "";
}

OCITREE_EXPORT void ocitree_layer_reader_free(struct ocitree_layer_reader *r)
{
	if (!r)
		return;
	if (r->started) {
		pthread_mutex_lock(&r->mu);
		r->cancel = true;
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
		pthread_join(r->thread, NULL);
	}
	ocitree_error_free(r->error);
	ocitree_error_free(r->final_error);
	decompressor_free(r->dec);
	ocitree_blob_reader_free(r->blob);
	if (r->fd >= 0)
		close(r->fd);
	for (size_t i = 0; i < N_CHUNKS; i++)
		free(r->ring[i].data);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r->what);
	free(r);
}

/* ---- tar entries through libarchive ---- */

struct ocitree_tar_reader {
	struct ocitree_layer_reader *r;
	struct archive *a;
	struct ocitree_tar_entry e;
	struct ocitree_xattr *xattrs;
	size_t cap_xattrs;
	struct ocitree_error *cb_err; /* the reader's error behind a libarchive failure */
	bool at_end;
};

static la_ssize_t tar_read_cb(struct archive *a, void *ud, const void **buf)
{
	struct ocitree_tar_reader *tr = ud;
	ssize_t n = ocitree_layer_reader_next(tr->r, buf, &tr->cb_err);
	if (n < 0) {
		archive_set_error(a, EIO, "%s", tr->cb_err ? tr->cb_err->msg : "read error");
		return -1;
	}
	return n;
}

OCITREE_EXPORT struct ocitree_tar_reader *ocitree_tar_reader_new(struct ocitree_layer_reader *r,
								 struct ocitree_error **err)
{
	struct ocitree_tar_reader *tr = xcalloc(1, sizeof(*tr));
	tr->r = r;
	tr->a = archive_read_new();
	if (!tr->a) {
		free(tr);
		return ocitree_error_set(err, ENOMEM, "%s: libarchive", r->what), NULL;
	}
	archive_read_support_format_tar(tr->a);
	if (archive_read_open(tr->a, tr, NULL, tar_read_cb, NULL) != ARCHIVE_OK) {
		ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: %s", r->what, archive_error_string(tr->a));
		ocitree_tar_reader_free(tr);
		return NULL;
	}
	return tr;
}

/* A libarchive failure: the stream's own error when there is one (a digest
 * mismatch stays a digest mismatch), else libarchive's message. */
static int archive_failure(struct ocitree_tar_reader *tr, const char *ctx, struct ocitree_error **err)
{
	if (tr->cb_err) {
		if (err) {
			ocitree_error_free(*err);
			*err = tr->cb_err;
		} else {
			ocitree_error_free(tr->cb_err);
		}
		tr->cb_err = NULL;
		return -1;
	}
	_cleanup_free_ char *m = xstrdup_or_null(archive_error_string(tr->a));
	/* a damaged archive is most often a damaged blob: read on to the
	 * digest checks, whose error says more */
	struct ocitree_error *e = NULL;
	const void *d;
	ssize_t n;
	while ((n = ocitree_layer_reader_next(tr->r, &d, &e)) > 0)
		;
	if (n < 0 && e->kind == OCITREE_ERROR_DIGEST) {
		if (err) {
			ocitree_error_free(*err);
			*err = e;
		} else {
			ocitree_error_free(e);
		}
		return -1;
	}
	ocitree_error_free(e);
	return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: %s%s%s", tr->r->what, ctx, m ? ": " : "",
				  m ? m : "");
}

/* After the end-of-archive marker: read (and so verify) the rest of the
 * stream, which must be short. */
static int drain_trailer(struct ocitree_tar_reader *tr, struct ocitree_error **err)
{
	int64_t used = archive_filter_bytes(tr->a, 0);
	for (;;) {
		const void *d;
		ssize_t n = ocitree_layer_reader_next(tr->r, &d, err);
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if (used >= 0 && ocitree_layer_reader_offset(tr->r) - (uint64_t)used > OCITREE_LAYER_MAX_TRAILER)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
						  "%s: more than %u bytes of data after the end of the archive",
						  tr->r->what, OCITREE_LAYER_MAX_TRAILER);
	}
}

OCITREE_EXPORT int ocitree_tar_reader_next(struct ocitree_tar_reader *tr, const struct ocitree_tar_entry **out,
					   struct ocitree_error **err)
{
	if (tr->at_end)
		return 0;
	struct archive_entry *ae = NULL;
	int r = archive_read_next_header(tr->a, &ae);
	if (r == ARCHIVE_EOF) {
		tr->at_end = true;
		return drain_trailer(tr, err) < 0 ? -1 : 0;
	}
	if (r == ARCHIVE_WARN) {
		log_warn("%s: %s: %s", tr->r->what, ae && archive_entry_pathname(ae) ? archive_entry_pathname(ae) : "?",
			 archive_error_string(tr->a));
	} else if (r != ARCHIVE_OK) {
		return archive_failure(tr, "invalid tar archive", err);
	}
	struct ocitree_tar_entry *e = &tr->e;
	memset(e, 0, sizeof(*e));
	e->path = archive_entry_pathname(ae);
	if (!e->path)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: entry without a name", tr->r->what);
	const char *hl = archive_entry_hardlink(ae);
	if (hl) {
		e->type = OCITREE_TAR_HARDLINK;
		e->linkname = hl;
	} else {
		switch (archive_entry_filetype(ae)) {
		case AE_IFREG: e->type = OCITREE_TAR_REG; break;
		case AE_IFDIR: e->type = OCITREE_TAR_DIR; break;
		case AE_IFLNK:
			e->type = OCITREE_TAR_SYMLINK;
			e->linkname = archive_entry_symlink(ae);
			if (!e->linkname)
				e->linkname = "";
			break;
		case AE_IFCHR: e->type = OCITREE_TAR_CHAR; break;
		case AE_IFBLK: e->type = OCITREE_TAR_BLOCK; break;
		case AE_IFIFO: e->type = OCITREE_TAR_FIFO; break;
		default:
			return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "%s: entry '%s': unsupported file type",
						  tr->r->what, e->path);
		}
	}
	e->mode = archive_entry_perm(ae) & 07777;
	e->uid = archive_entry_uid(ae);
	e->gid = archive_entry_gid(ae);
	e->size = e->type == OCITREE_TAR_REG ? archive_entry_size(ae) : 0;
	if (e->size < 0)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: entry '%s': invalid size", tr->r->what,
					  e->path);
	e->mtime.tv_sec = archive_entry_mtime(ae);
	e->mtime.tv_nsec = archive_entry_mtime_nsec(ae);
	if (archive_entry_atime_is_set(ae)) {
		e->atime.tv_sec = archive_entry_atime(ae);
		e->atime.tv_nsec = archive_entry_atime_nsec(ae);
	}
	e->devmajor = (uint32_t)archive_entry_rdevmajor(ae);
	e->devminor = (uint32_t)archive_entry_rdevminor(ae);
	size_t n = (size_t)archive_entry_xattr_reset(ae);
	GROW(tr->xattrs, tr->cap_xattrs, n);
	const char *name;
	const void *value;
	size_t len;
	while (e->n_xattrs < n && archive_entry_xattr_next(ae, &name, &value, &len) == ARCHIVE_OK) {
		/* a pax record with an empty value unsets its key (POSIX), and Go's
		 * reader (umoci, Docker) drops it: so do we */
		if (len == 0) {
			n--;
			continue;
		}
		tr->xattrs[e->n_xattrs].name = name;
		tr->xattrs[e->n_xattrs].value = value;
		tr->xattrs[e->n_xattrs].len = len;
		e->n_xattrs++;
	}
	e->xattrs = tr->xattrs;
	*out = e;
	return 1;
}

OCITREE_EXPORT ssize_t ocitree_tar_reader_data(struct ocitree_tar_reader *tr, const void **buf, int64_t *offset,
					       struct ocitree_error **err)
{
	size_t size = 0;
	la_int64_t off = 0;
	int r = archive_read_data_block(tr->a, buf, &size, &off);
	if (r == ARCHIVE_EOF)
		return 0;
	if (r == ARCHIVE_WARN) {
		log_warn("%s: %s: %s", tr->r->what, tr->e.path, archive_error_string(tr->a));
	} else if (r != ARCHIVE_OK) {
		_cleanup_free_ char *ctx = xasprintf("entry '%s'", tr->e.path);
		return archive_failure(tr, ctx, err);
	}
	*offset = off;
	return (ssize_t)size;
}

OCITREE_EXPORT void ocitree_tar_reader_free(struct ocitree_tar_reader *tr)
{
	if (!tr)
		return;
	archive_read_free(tr->a);
	ocitree_error_free(tr->cb_err);
	free(tr->xattrs);
	free(tr);
}
