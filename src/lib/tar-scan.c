/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The push parser of tar-scan.h: header blocks, pax and GNU extended
 * headers turned into layer entries with the offset of their data, fed in
 * pieces of any size by the layer index builder.  Layers are untrusted: the
 * checksum and the numeric fields are checked, extended headers are bounded,
 * and names with a '..' component are dropped with a warning.
 */
#include "config.h"

#include <sys/stat.h>

#include "tar-scan.h"

enum { ST_HEADER, ST_SKIP, ST_EXT, ST_END };

void tar_scan_init(struct tar_scan *t)
{
	memset(t, 0, sizeof(*t));
	buf_append(&t->strings, "", 1);
	buf_append(&t->xattrs, "\0\0\0\0", 4);
}

static void clear_pending(struct tar_scan *t)
{
	free(t->long_name);
	free(t->long_link);
	free(t->pax_path);
	free(t->pax_link);
	t->long_name = t->long_link = t->pax_path = t->pax_link = NULL;
	t->pax_has_size = t->pax_has_uid = t->pax_has_gid = t->pax_has_mtime = false;
	buf_reset(&t->pax_xattrs);
	t->pax_n_xattrs = 0;
}

void tar_scan_free(struct tar_scan *t)
{
	clear_pending(t);
	free(t->entries);
	buf_free(&t->strings);
	buf_free(&t->xattrs);
	buf_free(&t->ext);
	buf_free(&t->pax_xattrs);
	t->entries = NULL;
}

char *tar_path_normalise(const char *p)
{
	struct buf b = BUF_INIT;
	buf_reserve(&b, strlen(p) + 1);
	b.data[0] = '\0';
	while (*p) {
		while (*p == '/')
			p++;
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);
		if (n == 0 || (n == 1 && p[0] == '.')) {
			p = e;
			continue;
		}
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			buf_free(&b);
			return NULL;
		}
		if (b.len)
			buf_append(&b, "/", 1);
		buf_append(&b, p, n);
		p = e;
	}
	return buf_steal(&b);
}

/* Numeric header fields: octal (space/NUL terminated) or base-256. */
static bool parse_num(const unsigned char *f, size_t n, uint64_t *out)
{
	if (f[0] & 0x80) {
		/* base-256: big-endian two's complement; negative values are not
		 * meaningful for the fields we read */
		if (f[0] & 0x40)
			return false;
		uint64_t v = f[0] & 0x3f;
		for (size_t i = 1; i < n; i++) {
			if (v >> 56)
				return false;
			v = (v << 8) | f[i];
		}
		*out = v;
		return true;
	}
	size_t i = 0;
	while (i < n && (f[i] == ' ' || f[i] == '\0'))
		i++;
	uint64_t v = 0;
	bool any = false;
	for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 61)
			return false;
		v = v * 8 + (uint64_t)(f[i] - '0');
		any = true;
	}
	for (; i < n; i++)
		if (f[i] != ' ' && f[i] != '\0')
			return false;
	*out = any ? v : 0;
	return true;
}

static bool header_checksum_ok(const unsigned char *h)
{
	uint64_t want;
	if (!parse_num(h + 148, 8, &want))
		return false;
	uint64_t u = 0;
	int64_t s = 0;
	for (size_t i = 0; i < 512; i++) {
		unsigned char c = (i >= 148 && i < 156) ? ' ' : h[i];
		u += c;
		s += (signed char)c;
	}
	return u == want || (uint64_t)s == want;
}

static char *field_str(const unsigned char *f, size_t n)
{
	return xstrndup((const char *)f, strnlen((const char *)f, n));
}

static uint32_t add_string(struct tar_scan *t, const char *s)
{
	if (!*s)
		return 0;
	size_t off = t->strings.len;
	buf_append(&t->strings, s, strlen(s) + 1);
	return (uint32_t)off;
}

/* Parse "%d key=value\n" records of a pax header. */
static int parse_pax(struct tar_scan *t, bool global, struct ocitree_error **err)
{
	const char *p = t->ext.data, *end = t->ext.data + t->ext.len;
	while (p < end) {
		char *sp = NULL;
		unsigned long long len = strtoull(p, &sp, 10);
		if (!sp || *sp != ' ' || len == 0 || len > (unsigned long long)(end - p) || p[len - 1] != '\n')
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "malformed pax header at offset %ju",
						  (uintmax_t)t->pos);
		const char *key = sp + 1, *rec_end = p + len - 1;
		const char *eq = memchr(key, '=', (size_t)(rec_end - key));
		if (!eq)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "malformed pax record at offset %ju",
						  (uintmax_t)t->pos);
		size_t klen = (size_t)(eq - key);
		const char *val = eq + 1;
		size_t vlen = (size_t)(rec_end - val);
		p += len;
		if (global)
			continue; /* global headers carry nothing a layer entry needs */
#define KEY(s) (klen == strlen(s) && memcmp(key, s, klen) == 0)
		if (KEY("path")) {
			free(t->pax_path);
			t->pax_path = xstrndup(val, vlen);
		} else if (KEY("linkpath")) {
			free(t->pax_link);
			t->pax_link = xstrndup(val, vlen);
		} else if (KEY("size") || KEY("uid") || KEY("gid")) {
			_cleanup_free_ char *v = xstrndup(val, vlen);
			char *e = NULL;
			errno = 0;
			unsigned long long n = strtoull(v, &e, 10);
			if (errno || !e || *e || e == v)
				return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "bad pax %.*s '%s'", (int)klen,
							  key, v);
			if (KEY("size")) {
				t->pax_size = n;
				t->pax_has_size = true;
			} else if (KEY("uid")) {
				t->pax_uid = (uint32_t)n;
				t->pax_has_uid = true;
			} else {
				t->pax_gid = (uint32_t)n;
				t->pax_has_gid = true;
			}
		} else if (KEY("mtime")) {
			_cleanup_free_ char *v = xstrndup(val, vlen);
			char *e = NULL;
			long long sec = strtoll(v, &e, 10);
			uint32_t nsec = 0;
			if (e && *e == '.') {
				uint32_t scale = 100000000;
				for (e++; *e >= '0' && *e <= '9'; e++) {
					nsec += (uint32_t)(*e - '0') * scale;
					scale /= 10;
				}
				if (v[0] == '-' && nsec) { /* -1.5 is 2s before, plus 0.5 */
					sec -= 1;
					nsec = 1000000000 - nsec;
				}
			}
			t->pax_mtime = sec;
			t->pax_mtime_nsec = nsec;
			t->pax_has_mtime = true;
		} else if (klen > 13 && memcmp(key, "SCHILY.xattr.", 13) == 0) {
			uint32_t nl = (uint32_t)(klen - 13), vl = (uint32_t)vlen;
			buf_append(&t->pax_xattrs, &nl, 4);
			buf_append(&t->pax_xattrs, &vl, 4);
			buf_append(&t->pax_xattrs, key + 13, nl);
			buf_append(&t->pax_xattrs, "", 1);
			buf_append(&t->pax_xattrs, val, vl);
			t->pax_n_xattrs++;
		}
#undef KEY
	}
	return 0;
}

/* What a tar type flag stands for. */
struct tar_type {
	char flag;
	enum ocitree_entry_type type;
	uint32_t format; /* the S_IFMT bits */
};

static const struct tar_type tar_types[] = {
	{'0', OCITREE_ENTRY_REG, S_IFREG},
	{'\0', OCITREE_ENTRY_REG, S_IFREG}, /* pre-POSIX regular file */
	{'7', OCITREE_ENTRY_REG, S_IFREG},  /* contiguous file */
	{'1', OCITREE_ENTRY_HARDLINK, S_IFREG},
	{'2', OCITREE_ENTRY_SYMLINK, S_IFLNK},
	{'3', OCITREE_ENTRY_CHR, S_IFCHR},
	{'4', OCITREE_ENTRY_BLK, S_IFBLK},
	{'5', OCITREE_ENTRY_DIR, S_IFDIR},
	{'6', OCITREE_ENTRY_FIFO, S_IFIFO},
};

static const struct tar_type *tar_type_of(char flag)
{
	for (size_t i = 0; i < ARRAY_SIZE(tar_types); i++)
		if (tar_types[i].flag == flag)
			return &tar_types[i];
	/* POSIX: an unknown type is read as a regular file */
	return &tar_types[0];
}

static int emit_entry(struct tar_scan *t, const unsigned char *h, uint64_t size, struct ocitree_error **err)
{
	char type = (char)h[156];
	bool ustar = memcmp(h + 257, "ustar", 5) == 0;
	bool posix = memcmp(h + 257, "ustar\0", 6) == 0;
	_cleanup_free_ char *raw_name = NULL;
	if (t->pax_path)
		raw_name = xstrdup(t->pax_path);
	else if (t->long_name)
		raw_name = xstrdup(t->long_name);
	else if (posix && h[345])
		raw_name = xasprintf("%.*s/%.*s", (int)strnlen((const char *)h + 345, 155), (const char *)h + 345,
				     (int)strnlen((const char *)h, 100), (const char *)h);
	else
		raw_name = field_str(h, 100);
	_cleanup_free_ char *raw_link =
		t->pax_link ? xstrdup(t->pax_link) : t->long_link ? xstrdup(t->long_link) : field_str(h + 157, 100);

	uint64_t mode = 0, uid = 0, gid = 0, mtime = 0, dmaj = 0, dmin = 0;
	if (!parse_num(h + 100, 8, &mode) || !parse_num(h + 108, 8, &uid) || !parse_num(h + 116, 8, &gid) ||
	    !parse_num(h + 136, 12, &mtime))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "bad numeric field in tar header of '%s'",
					  raw_name);
	if (ustar && (!parse_num(h + 329, 8, &dmaj) || !parse_num(h + 337, 8, &dmin)))
		dmaj = dmin = 0;

	if (type == 'S')
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "GNU sparse file '%s' is not supported",
					  raw_name);
	struct ocitree_layer_entry e = {0};
	const struct tar_type *tt = tar_type_of(type);
	e.type = tt->type;
	e.mode = (uint32_t)(mode & 07777) | tt->format;
	/* old tars mark directories by a trailing '/' on a regular entry */
	size_t rl = strlen(raw_name);
	if (e.type == OCITREE_ENTRY_REG && rl && raw_name[rl - 1] == '/') {
		e.type = OCITREE_ENTRY_DIR;
		e.mode = (e.mode & 07777) | S_IFDIR;
	}
	_cleanup_free_ char *path = tar_path_normalise(raw_name);
	if (!path) {
		log_warn("tar entry '%s' has a '..' component: ignored", raw_name);
		return 0;
	}
	if (raw_name[0] == '/' && *path)
		log_warn("tar entry '%s' has an absolute name: shown as '%s'", raw_name, path);
	e.path = add_string(t, path);
	if (e.type == OCITREE_ENTRY_HARDLINK) {
		_cleanup_free_ char *target = tar_path_normalise(raw_link);
		if (!target || !*target) {
			log_warn("hardlink '%s' has an invalid target '%s': ignored", raw_name, raw_link);
			return 0;
		}
		e.link = add_string(t, target);
	} else if (e.type == OCITREE_ENTRY_SYMLINK) {
		e.link = add_string(t, raw_link);
	}
	e.uid = (uint32_t)(t->pax_has_uid ? t->pax_uid : uid);
	e.gid = (uint32_t)(t->pax_has_gid ? t->pax_gid : gid);
	if (t->pax_has_mtime) {
		e.mtime = t->pax_mtime;
		e.mtime_nsec = t->pax_mtime_nsec;
	} else {
		e.mtime = (int64_t)mtime;
	}
	e.rdev_major = (uint32_t)dmaj;
	e.rdev_minor = (uint32_t)dmin;
	e.data_off = t->pos; /* the caller has consumed the header */
	e.size = e.type == OCITREE_ENTRY_REG ? size : 0;
	if (t->pax_n_xattrs) {
		/* 4-byte aligned records: u32 count, then the pending records */
		while (t->xattrs.len % 4)
			buf_append(&t->xattrs, "", 1);
		if (t->xattrs.len > UINT32_MAX - t->pax_xattrs.len - 8)
			return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "too many xattrs in layer");
		e.xattrs = (uint32_t)t->xattrs.len;
		buf_append(&t->xattrs, &t->pax_n_xattrs, 4);
		buf_append(&t->xattrs, t->pax_xattrs.data, t->pax_xattrs.len);
	}
	if (t->strings.len > UINT32_MAX - 65536)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "too many names in layer");
	GROW(t->entries, t->cap_entries, t->n_entries + 1);
	t->entries[t->n_entries++] = e;
	return 0;
}

static int handle_header(struct tar_scan *t, struct ocitree_error **err)
{
	const unsigned char *h = t->hdr;
	bool zero = true;
	for (size_t i = 0; i < 512 && zero; i++)
		zero = h[i] == 0;
	if (zero) {
		/* end of archive; what follows (the second zero block, padding) is
		 * not looked at */
		t->state = ST_END;
		t->ended = true;
		t->end_pos = t->pos;
		return 0;
	}
	if (!header_checksum_ok(h))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "bad tar header checksum at offset %ju",
					  (uintmax_t)(t->pos - 512));
	uint64_t size;
	if (!parse_num(h + 124, 12, &size))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "bad size in tar header at offset %ju",
					  (uintmax_t)(t->pos - 512));
	char type = (char)h[156];
	if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
		if (size > (64u << 20))
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
						  "extended tar header of %ju bytes at offset %ju is too large",
						  (uintmax_t)size, (uintmax_t)(t->pos - 512));
		t->ext_type = type;
		t->ext_need = size;
		t->ext_pad = (512 - size % 512) % 512;
		buf_reset(&t->ext);
		t->state = ST_EXT;
		return 0;
	}
	if (t->pax_has_size)
		size = t->pax_size;
	/* hardlinks, symlinks, directories and devices have no data in the
	 * stream, whatever their size field says (pax may give a hardlink a
	 * size, and then the data does follow) */
	uint64_t data = (type == '1' && !t->pax_has_size) || type == '2' || type == '3' || type == '4' ||
				type == '5' || type == '6'
			? 0
			: size;
	if (emit_entry(t, h, size, err) < 0)
		return -1;
	clear_pending(t);
	t->skip = data + (512 - data % 512) % 512;
	t->state = t->skip ? ST_SKIP : ST_HEADER;
	return 0;
}

static int handle_ext(struct tar_scan *t, struct ocitree_error **err)
{
	switch (t->ext_type) {
	case 'x':
		return parse_pax(t, false, err);
	case 'g':
		return parse_pax(t, true, err);
	case 'L':
		free(t->long_name);
		t->long_name = xstrndup(t->ext.data ? t->ext.data : "", t->ext.len);
		return 0;
	case 'K':
		free(t->long_link);
		t->long_link = xstrndup(t->ext.data ? t->ext.data : "", t->ext.len);
		return 0;
	}
	return 0;
}

int tar_scan_feed(struct tar_scan *t, const void *data, size_t len, struct ocitree_error **err)
{
	const unsigned char *p = data;
	while (len) {
		switch (t->state) {
		case ST_END:
			t->pos += len;
			return 0;
		case ST_HEADER: {
			size_t n = 512 - t->hdr_fill;
			if (n > len)
				n = len;
			memcpy(t->hdr + t->hdr_fill, p, n);
			t->hdr_fill += n;
			p += n;
			len -= n;
			t->pos += n;
			if (t->hdr_fill == 512) {
				t->hdr_fill = 0;
				if (handle_header(t, err) < 0)
					return -1;
			}
			break;
		}
		case ST_SKIP: {
			uint64_t n = t->skip < len ? t->skip : len;
			t->skip -= n;
			p += n;
			len -= (size_t)n;
			t->pos += n;
			if (!t->skip)
				t->state = ST_HEADER;
			break;
		}
		case ST_EXT: {
			uint64_t want = t->ext_need - t->ext.len;
			uint64_t n = want < len ? want : len;
			buf_append(&t->ext, p, (size_t)n);
			p += n;
			len -= (size_t)n;
			t->pos += n;
			if (t->ext.len == t->ext_need) {
				if (handle_ext(t, err) < 0)
					return -1;
				t->skip = t->ext_pad;
				t->state = t->skip ? ST_SKIP : ST_HEADER;
			}
			break;
		}
		}
	}
	return 0;
}

int tar_scan_finish(struct tar_scan *t, struct ocitree_error **err)
{
	if (t->state == ST_END || (t->state == ST_HEADER && t->hdr_fill == 0))
		return 0;
	return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "tar stream truncated at offset %ju",
				  (uintmax_t)t->pos);
}
