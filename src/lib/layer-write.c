/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writing layers: a deterministic pax tar encoder feeding the piecewise
 * compressor, hashed on both sides (diff_id and blob digest).
 */
#include "config.h"

#include <inttypes.h>

#include "layer-internal.h"
#include "ocitree/digest.h"

/* ---- tar headers ---- */

#define USTAR_MAX_SIZE 077777777777LL /* 11 octal digits */
#define USTAR_MAX_ID 07777777LL       /* 7 octal digits */

static void put_octal(char *field, size_t width, uint64_t v)
{
	/* width - 1 digits, zero padded, NUL terminated */
	char tmp[32];
	snprintf(tmp, sizeof(tmp), "%0*" PRIo64, (int)(width - 1), v);
	memcpy(field, tmp, width - 1);
	field[width - 1] = '\0';
}

static void pax_record(struct buf *b, const char *key, const void *value, size_t vlen)
{
	/* "<len> <key>=<value>\n", where len counts itself */
	size_t base = 1 + strlen(key) + 1 + vlen + 1;
	size_t len = base + 1;
	while (len != base + (size_t)snprintf(NULL, 0, "%zu", len))
		len = base + (size_t)snprintf(NULL, 0, "%zu", len);
	buf_printf(b, "%zu %s=", len, key);
	buf_append(b, value, vlen);
	buf_puts(b, "\n");
}

static bool valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2 : (*p & 0xf8) == 0xf0 ? 3 : -1;
		if (n < 0 || (n == 1 && *p < 0xc2))
			return false;
		p++;
		for (int i = 0; i < n; i++, p++)
			if ((*p & 0xc0) != 0x80)
				return false;
	}
	return true;
}

static void fill_ustar(char *h, const char *name, uint32_t mode, int64_t uid, int64_t gid, int64_t size,
		       int64_t mtime, char type, const char *linkname, uint32_t major, uint32_t minor)
{
	memset(h, 0, TAR_BLOCK);
	strncpy(h, name, 100);
	put_octal(h + 100, 8, mode);
	put_octal(h + 108, 8, (uint64_t)(uid > USTAR_MAX_ID ? USTAR_MAX_ID : uid));
	put_octal(h + 116, 8, (uint64_t)(gid > USTAR_MAX_ID ? USTAR_MAX_ID : gid));
	put_octal(h + 124, 12, (uint64_t)(size > USTAR_MAX_SIZE ? 0 : size));
	put_octal(h + 136, 12, (uint64_t)(mtime < 0 ? 0 : mtime > USTAR_MAX_SIZE ? USTAR_MAX_SIZE : mtime));
	h[156] = type;
	if (linkname)
		strncpy(h + 157, linkname, 100);
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	put_octal(h + 329, 8, major);
	put_octal(h + 337, 8, minor);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < TAR_BLOCK; i++)
		sum += (unsigned char)h[i];
	snprintf(h + 148, 8, "%06o", sum);
	h[155] = ' ';
}

static void append_blocks(struct buf *out, const void *data, size_t len)
{
	buf_append(out, data, len);
	size_t pad = (TAR_BLOCK - len % TAR_BLOCK) % TAR_BLOCK;
	buf_reserve(out, pad);
	memset(out->data + out->len, 0, pad);
	out->len += pad;
	out->data[out->len] = '\0';
}

static int cmp_xattr(const void *a, const void *b)
{
	return strcmp(((const struct ocitree_xattr *)a)->name, ((const struct ocitree_xattr *)b)->name);
}

int tar_encode_header(struct buf *out, const struct ocitree_tar_entry *e, int64_t clamp, struct ocitree_error **err)
{
	static const char types[] = {
		[OCITREE_TAR_REG] = '0',  [OCITREE_TAR_DIR] = '5',   [OCITREE_TAR_SYMLINK] = '2', [OCITREE_TAR_HARDLINK] = '1',
		[OCITREE_TAR_CHAR] = '3', [OCITREE_TAR_BLOCK] = '4', [OCITREE_TAR_FIFO] = '6',
	};
	if ((unsigned)e->type >= ARRAY_SIZE(types))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "tar entry '%s': unknown type", e->path);
	if (!e->path || !*e->path)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "tar entry with an empty name");
	bool is_link = e->type == OCITREE_TAR_SYMLINK || e->type == OCITREE_TAR_HARDLINK;
	if (is_link && (!e->linkname || !*e->linkname))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "tar entry '%s': empty link target", e->path);
	if (e->uid < 0 || e->gid < 0 || e->size < 0 || (e->type != OCITREE_TAR_REG && e->size != 0))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "tar entry '%s': invalid owner or size", e->path);
	if (e->devmajor > USTAR_MAX_ID || e->devminor > USTAR_MAX_ID)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "tar entry '%s': device number too large",
					  e->path);

	/* directories are named with a trailing '/', as every tar does */
	_cleanup_free_ char *name = NULL;
	size_t plen = strlen(e->path);
	if (e->type == OCITREE_TAR_DIR && e->path[plen - 1] != '/')
		name = xasprintf("%s/", e->path);
	else
		name = xstrdup(e->path);

	struct timespec mt = e->mtime;
	if (clamp >= 0 && (mt.tv_sec > clamp || (mt.tv_sec == clamp && mt.tv_nsec > 0))) {
		mt.tv_sec = (time_t)clamp;
		mt.tv_nsec = 0;
	}

	_cleanup_buf_ struct buf pax = BUF_INIT;
	bool binary = !valid_utf8(name) || (is_link && !valid_utf8(e->linkname));
	if (binary && (strlen(name) > 100 || (is_link && strlen(e->linkname) > 100)))
		pax_record(&pax, "hdrcharset", "BINARY", 6);
	if (strlen(name) > 100)
		pax_record(&pax, "path", name, strlen(name));
	if (is_link && strlen(e->linkname) > 100)
		pax_record(&pax, "linkpath", e->linkname, strlen(e->linkname));
	if (e->size > USTAR_MAX_SIZE) {
		char v[32];
		snprintf(v, sizeof(v), "%" PRId64, e->size);
		pax_record(&pax, "size", v, strlen(v));
	}
	if (e->uid > USTAR_MAX_ID) {
		char v[32];
		snprintf(v, sizeof(v), "%" PRId64, e->uid);
		pax_record(&pax, "uid", v, strlen(v));
	}
	if (e->gid > USTAR_MAX_ID) {
		char v[32];
		snprintf(v, sizeof(v), "%" PRId64, e->gid);
		pax_record(&pax, "gid", v, strlen(v));
	}
	if (mt.tv_nsec != 0 || mt.tv_sec < 0 || mt.tv_sec > USTAR_MAX_SIZE) {
		char v[48];
		if (mt.tv_nsec) {
			int64_t s = mt.tv_sec;
			long ns = mt.tv_nsec;
			if (s < 0 && ns) { /* pax wants -1.5 for 1.5 s before the epoch */
				s += 1;
				ns = 1000000000L - ns;
			}
			snprintf(v, sizeof(v), "%s%" PRId64 ".%09ld", s == 0 && mt.tv_sec < 0 ? "-" : "", s, ns);
			for (size_t i = strlen(v) - 1; v[i] == '0'; i--)
				v[i] = '\0';
		} else {
			snprintf(v, sizeof(v), "%" PRId64, (int64_t)mt.tv_sec);
		}
		pax_record(&pax, "mtime", v, strlen(v));
	}
	if (e->n_xattrs) {
		struct ocitree_xattr *xs = xmalloc(e->n_xattrs * sizeof(*xs));
		memcpy(xs, e->xattrs, e->n_xattrs * sizeof(*xs));
		qsort(xs, e->n_xattrs, sizeof(*xs), cmp_xattr);
		for (size_t i = 0; i < e->n_xattrs; i++) {
			if (!*xs[i].name || strchr(xs[i].name, '=')) {
				free(xs);
				return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "tar entry '%s': invalid xattr name",
							  e->path);
			}
			_cleanup_free_ char *key = xasprintf("SCHILY.xattr.%s", xs[i].name);
			pax_record(&pax, key, xs[i].value, xs[i].len);
		}
		free(xs);
	}

	char h[TAR_BLOCK];
	if (pax.len) {
		fill_ustar(h, "././@PaxHeader", 0644, 0, 0, (int64_t)pax.len, 0, 'x', NULL, 0, 0);
		buf_append(out, h, TAR_BLOCK);
		append_blocks(out, pax.data, pax.len);
	}
	fill_ustar(h, name, e->mode & 07777, e->uid, e->gid, e->type == OCITREE_TAR_REG ? e->size : 0, mt.tv_sec,
		   types[e->type], is_link ? e->linkname : NULL,
		   e->type == OCITREE_TAR_CHAR || e->type == OCITREE_TAR_BLOCK ? e->devmajor : 0,
		   e->type == OCITREE_TAR_CHAR || e->type == OCITREE_TAR_BLOCK ? e->devminor : 0);
	buf_append(out, h, TAR_BLOCK);
	return 0;
}

/* ---- layer writer ---- */

struct ocitree_layer_writer {
	struct ocitree_layout *layout;
	struct ocitree_layer_writer_options opts;
	struct ocitree_blob_writer *blob;
	struct compressor *comp;
	struct ocitree_hasher *diff_hasher;
	struct buf hdr;
	uint64_t offset;
	int64_t data_left; /* of the current regular file */
	bool raw, failed;
};

static int blob_sink(void *ctx, const void *data, size_t len, struct ocitree_error **err)
{
	return ocitree_blob_writer_write(ctx, data, len, err);
}

OCITREE_EXPORT int64_t ocitree_source_date_epoch(void)
{
	const char *s = getenv("SOURCE_DATE_EPOCH");
	if (!s || !*s)
		return -1;
	char *end = NULL;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < 0)
		return -1;
	return v;
}

OCITREE_EXPORT struct ocitree_layer_writer *ocitree_layer_writer_new(struct ocitree_layout *l,
								     const struct ocitree_layer_writer_options *o,
								     struct ocitree_error **err)
{
	struct ocitree_blob_writer *b = ocitree_blob_writer_new(l, err);
	if (!b)
		return NULL;
	struct ocitree_layer_writer *w = xcalloc(1, sizeof(*w));
	w->layout = l;
	w->opts = *o;
	/* without an image to follow, auto is gzip */
	w->opts.compression = ocitree_compression_resolve(o->compression, NULL);
	w->blob = b;
	unsigned threads = o->threads ? o->threads : cpu_count();
	w->comp = compressor_new(w->opts.compression, o->level, threads, blob_sink, b);
	w->diff_hasher = ocitree_hasher_new("sha256");
	return w;
}

/* Everything uncompressed goes through here: hashed, then compressed. */
static int put(struct ocitree_layer_writer *w, const void *data, size_t len, struct ocitree_error **err)
{
	if (w->failed)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "layer writer already failed");
	ocitree_hasher_update(w->diff_hasher, data, len);
	w->offset += len;
	if (compressor_write(w->comp, data, len, err) < 0) {
		w->failed = true;
		return -1;
	}
	return 0;
}

static int end_data(struct ocitree_layer_writer *w, struct ocitree_error **err)
{
	static const char zeros[TAR_BLOCK];
	if (w->data_left > 0) {
		w->failed = true;
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "layer writer: %" PRId64 " bytes of data missing",
					  w->data_left);
	}
	size_t pad = (TAR_BLOCK - w->offset % TAR_BLOCK) % TAR_BLOCK;
	return pad ? put(w, zeros, pad, err) : 0;
}

OCITREE_EXPORT int ocitree_layer_writer_add(struct ocitree_layer_writer *w, const struct ocitree_tar_entry *e,
					    struct ocitree_error **err)
{
	if (w->raw)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "layer writer: entries added to a raw stream");
	if (end_data(w, err) < 0)
		return -1;
	buf_reset(&w->hdr);
	if (tar_encode_header(&w->hdr, e, w->opts.clamp_mtime, err) < 0)
		return -1;
	w->data_left = e->type == OCITREE_TAR_REG ? e->size : 0;
	return put(w, w->hdr.data, w->hdr.len, err);
}

OCITREE_EXPORT int ocitree_layer_writer_data(struct ocitree_layer_writer *w, const void *data, size_t len,
					     struct ocitree_error **err)
{
	if ((int64_t)len > w->data_left) {
		w->failed = true;
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "layer writer: more data than the entry's size");
	}
	w->data_left -= (int64_t)len;
	return put(w, data, len, err);
}

OCITREE_EXPORT int ocitree_layer_writer_raw(struct ocitree_layer_writer *w, const void *data, size_t len,
					    struct ocitree_error **err)
{
	if (w->offset && !w->raw)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "layer writer: raw data after entries");
	w->raw = true;
	return put(w, data, len, err);
}

static int commit(struct ocitree_layer_writer *w, struct ocitree_descriptor *desc, char diff_id[OCITREE_DIGEST_MAX],
		  struct ocitree_error **err)
{
	if (compressor_finish(w->comp, err) < 0)
		return -1;
	char digest[OCITREE_DIGEST_MAX];
	int64_t size = 0;
	if (ocitree_blob_writer_commit(w->blob, digest, &size, err) < 0)
		return -1;
	memset(desc, 0, sizeof(*desc));
	desc->media_type = xstrdup(ocitree_layer_media_type(w->opts.compression, false));
	memcpy(desc->digest, digest, sizeof(digest));
	desc->size = size;
	ocitree_hasher_final(w->diff_hasher, diff_id);
	return 0;
}

OCITREE_EXPORT int ocitree_layer_writer_commit(struct ocitree_layer_writer *w, struct ocitree_descriptor *desc,
					       char diff_id[OCITREE_DIGEST_MAX], struct ocitree_error **err)
{
	static const char zeros[2 * TAR_BLOCK];
	if (end_data(w, err) < 0 || put(w, zeros, sizeof(zeros), err) < 0)
		return -1;
	return commit(w, desc, diff_id, err);
}

OCITREE_EXPORT int ocitree_layer_writer_commit_raw(struct ocitree_layer_writer *w, struct ocitree_descriptor *desc,
						   char diff_id[OCITREE_DIGEST_MAX], struct ocitree_error **err)
{
	return commit(w, desc, diff_id, err);
}

OCITREE_EXPORT uint64_t ocitree_layer_writer_offset(const struct ocitree_layer_writer *w)
{
	return w->offset;
}

OCITREE_EXPORT void ocitree_layer_writer_free(struct ocitree_layer_writer *w)
{
	if (!w)
		return;
	compressor_free(w->comp);
	ocitree_blob_writer_free(w->blob);
	ocitree_hasher_free(w->diff_hasher);
	buf_free(&w->hdr);
	free(w);
}
