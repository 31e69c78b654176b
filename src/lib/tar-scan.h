/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A push parser for tar streams that records, for each entry, its metadata
 * and the offset of its data in the stream (which libarchive does not
 * expose).  Understands ustar, GNU long names/links ('L', 'K') and pax
 * extended headers (path, linkpath, size, uid, gid, mtime, SCHILY.xattr.*,
 * LIBARCHIVE.xattr.*).  Internal to libocitree.
 */
#ifndef OCITREE_TAR_SCAN_H
#define OCITREE_TAR_SCAN_H

#include <stdint.h>

#include "ocitree/layer-index.h"
#include "util.h"

struct tar_scan {
	/* the results: entries and the string and xattr tables they point into */
	struct ocitree_layer_entry *entries;
	size_t n_entries, cap_entries;
	struct buf strings; /* offset 0 is the empty string */
	struct buf xattrs;  /* offset 0 is unused (0 means "none") */

	/* parser state */
	uint64_t pos; /* stream bytes consumed */
	int state;
	unsigned char hdr[512];
	size_t hdr_fill;
	uint64_t skip;      /* data (and padding) bytes still to skip */
	struct buf ext;     /* contents of a pax or GNU long-name entry being read */
	uint64_t ext_need;  /* its size */
	uint64_t ext_pad;   /* its padding */
	char ext_type;
	/* pending values from extended headers, for the next entry */
	char *long_name, *long_link;
	char *pax_path, *pax_link;
	bool pax_has_size, pax_has_uid, pax_has_gid, pax_has_mtime;
	uint64_t pax_size;
	uint32_t pax_uid, pax_gid;
	int64_t pax_mtime;
	uint32_t pax_mtime_nsec;
	struct buf pax_xattrs; /* pending records: u32 namelen, u32 vallen, name\0, value */
	uint32_t pax_n_xattrs;
	bool ended;
	uint64_t end_pos; /* where the end-of-archive block ended, once ended */
};

void tar_scan_init(struct tar_scan *t);
void tar_scan_free(struct tar_scan *t);
/* Feed the next len bytes of the stream. */
int tar_scan_feed(struct tar_scan *t, const void *data, size_t len, struct ocitree_error **err);
/* The stream is over: checks that it did not stop inside an entry. */
int tar_scan_finish(struct tar_scan *t, struct ocitree_error **err);

/* Normalise a tar path: drop leading '/' and "./", empty and "." components
 * and a trailing '/'.  Returns NULL for a path with a ".." component. */
char *tar_path_normalise(const char *p);

#endif
