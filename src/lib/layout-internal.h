/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the library's other files need of layouts and images beyond the
 * public API: the layout struct itself (its directory fd and blobs lock),
 * blob paths for fsck, image_load() for the code that opens an image by a
 * recorded manifest rather than a tag (repack, upper directories), and
 * image_add_layer_commit() for the code that writes a new layer (repack,
 * insert, add-layer, commit).
 */
#ifndef OCITREE_LAYOUT_INTERNAL_H
#define OCITREE_LAYOUT_INTERNAL_H

#include <stdint.h>
#include <sys/stat.h>

#include "ocitree/layout.h"

struct ocitree_layout {
	int dirfd;
	int blobs_lock_fd; /* -1 until ocitree_layout_hold_blobs() */
	char *path;
	/* index.json as ocitree_layout_open() read it, for the first
	 * ocitree_layout_read_index() while the file is still the one read
	 * (same inode, size and change time), or NULL */
	struct ocitree_index *opened_index;
	struct stat opened_index_st;
};

/* "blobs/<alg>/<hex>" for a checked digest; caller frees. */
char *blob_path(const char *digest);

/* The first size bytes of the blob open on fd (all of it when size < 0),
 * mapped read-only and shared, with the access pattern advice
 * (MADV_SEQUENTIAL for a reader going front to back, MADV_RANDOM for
 * chunks decoded where they are asked for).  *len is what is mapped: less
 * than size when the file is shorter (a truncated blob, which callers
 * report when they need the bytes past *len).  NULL when nothing is mapped
 * (empty, not a regular file, too large, mmap failed): callers read the
 * blob instead.  Unmapped with munmap(p, *len). */
const uint8_t *blob_map(int fd, int64_t size, int advice, size_t *len);

/* ocitree_blob_reader_read() without the copy: *data points into a
 * read-only mapping of the blob, valid until the reader is freed (or
 * dropped with blob_reader_unmap()).  Returns the length (at most len),
 * 0 at the verified end as the read form does, -1; or -2, with nothing
 * read, when the blob cannot be mapped: read it instead. */
ssize_t blob_reader_map_next(struct ocitree_blob_reader *r, const void **data, size_t len,
			     struct ocitree_error **err);
/* The reader's file descriptor (to check that another one is the same
 * file). */
int blob_reader_fd(const struct ocitree_blob_reader *r);
/* Done with [data, data + len) of the mapping: its pages leave the
 * process (they stay in the page cache). */
void blob_reader_unmap(struct ocitree_blob_reader *r, const void *data, size_t len);

/* The blob's digest taken by the caller instead (an unpack hashes it
 * beside the content, sha256-pair.h): maps the blob, and from then on
 * blob_reader_map_next() and ocitree_blob_reader_read() hand out the bytes
 * without hashing them, nor checking anything at their end:
 * blob_reader_check_outside() must.  NULL
 * (and nothing changed) when the blob is not sha256 or cannot be mapped
 * whole. */
struct sha256p;
const uint8_t *blob_reader_hash_outside(struct ocitree_blob_reader *r, size_t *len);
/* The end of such a blob: s holds the digest of its first hashed bytes;
 * the rest is hashed here, then the digest is checked, then the size, as
 * the read form does (with its errors). */
int blob_reader_check_outside(struct ocitree_blob_reader *r, struct sha256p *s, size_t hashed,
			      struct ocitree_error **err);

struct ocitree_image;
/* Read img->manifest_desc's manifest and its config into img (whose
 * layout is set), checking that the config is an image config with a
 * diff_id per layer. */
int image_load(struct ocitree_image *img, struct ocitree_error **err);

/* When root (an index.json entry) is an image index holding
 * img->manifest_desc (or, by_platform, an entry for the platform of img's
 * config), remember it in img so that a commit writes into a copy of it
 * (see ocitree_image_commit); otherwise leave img alone.  For images opened
 * by a recorded manifest: repack's bundle, a mount's upper directory.  The
 * _tag form looks tag up in index.json first (by platform too). */
int image_attach_index(struct ocitree_image *img, const struct ocitree_descriptor *root, bool by_platform,
		       struct ocitree_error **err);
int image_attach_tag_index(struct ocitree_image *img, const char *tag, struct ocitree_error **err);

struct ocitree_write_options;
/* Append a layer (descriptor and diff_id; NULL for none, as when nothing
 * changed) and the history entry of o to img's manifest and config, then
 * commit img as tag.  The config's created time stays, as with umoci. */
int image_add_layer_commit(struct ocitree_image *img, const struct ocitree_descriptor *layer, const char *diff_id,
			   const char *tag, const struct ocitree_write_options *o, struct ocitree_error **err);

#endif
