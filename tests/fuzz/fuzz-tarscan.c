/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: the mount's own tar header parser (tar-scan.c), on raw tar
 * bytes.  The first byte seeds the sizes of the pieces the stream is fed
 * in; the rest is the stream.  Fed whole or in pieces, the parser must come
 * to the same result, and what it records must be safe to follow: string
 * and xattr offsets in range, normalised paths, data inside the stream.
 */
#include "config.h"

#include <stdint.h>

#include "tar-scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz-tarscan: %s\n", what);
	abort();
}

static int scan(struct tar_scan *t, const uint8_t *p, size_t len, unsigned seed, struct ocitree_error **err)
{
	tar_scan_init(t);
	uint32_t x = seed * 2654435761u + 1;
	while (len) {
		size_t n = len;
		if (seed) {
			x ^= x << 13, x ^= x >> 17, x ^= x << 5;
			n = 1 + x % (seed % 4 == 0 ? 7 : seed % 4 == 1 ? 513 : 4096);
			if (n > len)
				n = len;
		}
		if (tar_scan_feed(t, p, n, err) < 0)
			return -1;
		p += n;
		len -= n;
	}
	return tar_scan_finish(t, err);
}

/* A path as tar_path_normalise() leaves it: no leading or trailing '/', no
 * empty, "." or ".." component. */
static bool normalised(const char *p)
{
	if (!*p)
		return true;
	if (*p == '/')
		return false;
	for (;;) {
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (!*e)
			return true;
		p = e + 1;
	}
}

static void check(const struct tar_scan *t)
{
	if (!t->strings.len || t->strings.data[t->strings.len - 1] != '\0')
		fail("string table not terminated");
	for (size_t i = 0; i < t->n_entries; i++) {
		const struct ocitree_layer_entry *e = &t->entries[i];
		if (e->path >= t->strings.len || e->link >= t->strings.len)
			fail("string offset out of range");
		if (!normalised(t->strings.data + e->path))
			fail("path not normalised");
		if (e->type == OCITREE_ENTRY_HARDLINK &&
		    (!*(t->strings.data + e->link) || !normalised(t->strings.data + e->link)))
			fail("hardlink target not normalised");
		if (e->type > OCITREE_ENTRY_FIFO)
			fail("bad type");
		if (e->type != OCITREE_ENTRY_REG && e->size)
			fail("size on a non-regular entry");
		if (e->data_off > t->pos || e->size > t->pos - e->data_off)
			fail("data beyond the stream");
		if (e->xattrs) {
			if (e->xattrs % 4 || e->xattrs + 4 > t->xattrs.len)
				fail("xattr offset out of range");
			uint32_t count;
			memcpy(&count, t->xattrs.data + e->xattrs, 4);
			size_t pos = e->xattrs + 4;
			for (uint32_t k = 0; k < count; k++) {
				uint32_t nl, vl;
				if (pos + 8 > t->xattrs.len)
					fail("xattr record out of range");
				memcpy(&nl, t->xattrs.data + pos, 4);
				memcpy(&vl, t->xattrs.data + pos + 4, 4);
				if ((uint64_t)pos + 8 + nl + 1 + vl > t->xattrs.len || t->xattrs.data[pos + 8 + nl] != '\0')
					fail("xattr record malformed");
				pos += 8 + nl + 1 + vl;
			}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct tar_scan a, b;
	struct ocitree_error *ea = NULL, *eb = NULL;
	int ra = scan(&a, data + 1, size - 1, 0, &ea);
	int rb = scan(&b, data + 1, size - 1, data[0] ? data[0] : 1, &eb);
	if (ra != rb)
		fail("whole and piecewise feeding disagree");
	if (ra == 0) {
		check(&a);
		if (a.n_entries != b.n_entries ||
		    (a.n_entries && memcmp(a.entries, b.entries, a.n_entries * sizeof(*a.entries)) != 0) ||
		    a.strings.len != b.strings.len || memcmp(a.strings.data, b.strings.data, a.strings.len) != 0 ||
		    a.xattrs.len != b.xattrs.len || memcmp(a.xattrs.data, b.xattrs.data, a.xattrs.len) != 0)
			fail("whole and piecewise feeding give different entries");
	} else if (!ea || !ea->msg || !*ea->msg || !eb || strcmp(ea->msg, eb->msg) != 0) {
		fail("errors differ or have no message");
	}
	ocitree_error_free(ea);
	ocitree_error_free(eb);
	tar_scan_free(&a);
	tar_scan_free(&b);
	return 0;
}
