/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Layer indexes: random access into a layer blob without extracting it.
 *
 * One sequential pass over a layer (verifying the blob digest and, when
 * given, the diff_id of the uncompressed tar) records every tar entry with
 * its metadata and the offset of its data in the uncompressed stream, plus
 * what it takes to read that stream at any offset later:
 *
 *   - gzip: deflate checkpoints every ~1 MiB of output (input bit offset and
 *     the 32 KiB window before it, stored deflated), so a read inflates from
 *     the nearest checkpoint only.  Each chunk between two checkpoints also
 *     has a CRC-32 of its output, so a corrupt blob is an error, not wrong
 *     data.
 *   - zstd: a single-frame zstd stream cannot be resumed mid-frame, so the
 *     pass writes the uncompressed tar to a cache file next to the index and
 *     reads are served from it (the same as an uncompressed layer).
 *   - none: reads go straight to the blob.
 *
 * Index files are cached by blob digest in a cache directory:
 *   CACHE/index-v1/sha256/<hex>   the index (entries, strings, xattrs,
 *                                 checkpoints, windows) with a checksum
 *   CACHE/tar/sha256/<hex>        the uncompressed tar of a zstd layer
 * Both are written to temporary files and renamed into place; an index that
 * is missing, of another version or fails its checksum is rebuilt.
 *
 * Thread safety: a loaded index is immutable; reads (ocitree_layer_index_pread)
 * may run from any number of threads, sharing one chunk cache.
 */
#ifndef OCITREE_LAYER_INDEX_H
#define OCITREE_LAYER_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "ocitree/error.h"
#include "ocitree/layout.h"
#include "ocitree/model.h"
#include "ocitree/progress.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ocitree_entry_type {
	OCITREE_ENTRY_REG = 0,
	OCITREE_ENTRY_DIR,
	OCITREE_ENTRY_SYMLINK,
	OCITREE_ENTRY_HARDLINK, /* link names the target path, in this or a lower layer */
	OCITREE_ENTRY_CHR,
	OCITREE_ENTRY_BLK,
	OCITREE_ENTRY_FIFO,
};

/* One tar entry, as stored in the index file (host byte order). */
struct ocitree_layer_entry {
	uint64_t data_off; /* offset of the data in the uncompressed tar */
	uint64_t size;     /* size of the data (0 but for regular files) */
	int64_t mtime;
	uint32_t mtime_nsec;
	uint32_t mode; /* st_mode: file type bits and permissions */
	uint32_t uid, gid;
	uint32_t path;   /* string offset: normalised path ("" for the root, no "./", no trailing '/') */
	uint32_t link;   /* string offset of the symlink or hardlink target; 0 (the empty string) if none */
	uint32_t xattrs; /* offset into the xattr table, 0 if none */
	uint32_t rdev_major, rdev_minor;
	uint8_t type; /* enum ocitree_entry_type */
	uint8_t pad[3];
};

/* A bounded, thread-safe LRU cache of decompressed chunks, shared by every
 * index of a mount.  max_bytes bounds the memory of cached chunks (chunks
 * in use by a reader, and one being decoded per reading thread, are kept
 * until released, beyond the bound).
 *
 * Read-ahead: when reads of a layer go forward through its tar (a reader
 * of one big file, or of many files in tar order), a thread of the cache
 * decodes the next chunks of that layer before they are asked for, up to 4
 * chunks (~4 MiB) ahead and never more than a quarter of max_bytes.  The
 * thread is started on the first read-ahead (so after a daemon's fork) and
 * stopped by ocitree_chunk_cache_free(). */
struct ocitree_chunk_cache;
struct ocitree_chunk_cache *ocitree_chunk_cache_new(size_t max_bytes);
void ocitree_chunk_cache_free(struct ocitree_chunk_cache *c);

struct ocitree_layer_index;

struct ocitree_layer_index_opts {
	const char *cache_dir;              /* required: where index files live */
	struct ocitree_chunk_cache *chunks; /* for reads of gzip layers; may be NULL (no caching) */
	bool rebuild;                       /* ignore a cached index */
	bool no_write;                      /* build in memory only, do not write the cache */
	/* told now and then of an index being built (phase "index"; bytes and
	 * entries of the uncompressed layer so far); ocitree_layer_index_open_many
	 * sums its layers and calls it from one thread at a time.  May be NULL. */
	ocitree_progress_fn progress;
	void *progress_data;
};

/* Load the index of layer (a descriptor from a manifest) from the cache, or
 * build it with one verified pass and cache it.  diff_id, when not NULL, is
 * checked against the uncompressed stream while building.  A digest or
 * diff_id mismatch is an OCITREE_ERROR_DIGEST error; a broken tar or
 * compressed stream OCITREE_ERROR_INVALID.  The index keeps an fd of the
 * blob (and of the zstd cache file) open for reads; it does not keep l. */
struct ocitree_layer_index *ocitree_layer_index_open(struct ocitree_layout *l, const struct ocitree_descriptor *layer,
						     const char *diff_id, const struct ocitree_layer_index_opts *opts,
						     struct ocitree_error **err);

/* Open n layers with up to threads threads at once.  On success out[0..n)
 * hold the indexes; on failure none is left open and the error names the
 * layer (by position and digest). */
int ocitree_layer_index_open_many(struct ocitree_layout *l, const struct ocitree_descriptor *layers,
				  char *const *diff_ids, size_t n, const struct ocitree_layer_index_opts *opts,
				  unsigned threads, struct ocitree_layer_index **out, struct ocitree_error **err);

void ocitree_layer_index_free(struct ocitree_layer_index *idx);

/* Whether the last open used the cached index (false: it was built). */
bool ocitree_layer_index_was_cached(const struct ocitree_layer_index *idx);

size_t ocitree_layer_index_count(const struct ocitree_layer_index *idx);
const struct ocitree_layer_entry *ocitree_layer_index_entry(const struct ocitree_layer_index *idx, size_t i);
/* A string of the index (path or link target), valid while idx lives. */
const char *ocitree_layer_index_string(const struct ocitree_layer_index *idx, uint32_t off);
/* The size of the uncompressed tar. */
uint64_t ocitree_layer_index_tar_size(const struct ocitree_layer_index *idx);
const char *ocitree_layer_index_digest(const struct ocitree_layer_index *idx);
enum ocitree_compression ocitree_layer_index_compression(const struct ocitree_layer_index *idx);
/* Number of gzip checkpoints (0 for other compressions). */
size_t ocitree_layer_index_checkpoints(const struct ocitree_layer_index *idx);

/* Iterate over the xattrs of an entry: cursor starts at 0; each call sets
 * name (NUL-terminated), value and len and returns true, false at the end. */
bool ocitree_layer_entry_xattr_next(const struct ocitree_layer_index *idx, const struct ocitree_layer_entry *e,
				    uint32_t *cursor, const char **name, const void **value, size_t *len);

/* Read up to len bytes of the uncompressed tar at off; returns the count (short
 * only at the end of the tar) or -1.  A corrupt stream is OCITREE_ERROR_INVALID
 * (the FUSE driver answers EIO). */
ssize_t ocitree_layer_index_pread(struct ocitree_layer_index *idx, void *buf, size_t len, uint64_t off,
				  struct ocitree_error **err);

/* A read served in place from the chunk cache, for replies without a copy. */
#define OCITREE_LAYER_PIN_MAX 8
struct ocitree_layer_pin {
	struct iovec iov[OCITREE_LAYER_PIN_MAX]; /* the data, in order */
	size_t n;                                /* iovecs in use */
	/* private */
	struct ocitree_layer_index *idx;
	const void *held[OCITREE_LAYER_PIN_MAX];
};

/* Like ocitree_layer_index_pread, but point pin->iov at the decoded data in
 * the chunk cache instead of copying it; the chunks stay in the cache until
 * ocitree_layer_index_unpin(), which must come before idx or its cache is
 * freed.  Returns the byte count (short only at the
 * end of the tar), or 0 when the read cannot be served that way (no chunk
 * cache, not a gzip layer, off at the end, or more than
 * OCITREE_LAYER_PIN_MAX chunks): use ocitree_layer_index_pread() then.  -1
 * on error, with nothing held. */
ssize_t ocitree_layer_index_pin(struct ocitree_layer_index *idx, uint64_t off, size_t len,
				struct ocitree_layer_pin *pin, struct ocitree_error **err);
void ocitree_layer_index_unpin(struct ocitree_layer_pin *pin);

/* When the uncompressed tar is a plain file (uncompressed layer or the zstd
 * cache file), its fd (owned by idx) for zero-copy reads: tar offset off is at
 * file offset off + *base.  -1 otherwise. */
int ocitree_layer_index_data_fd(const struct ocitree_layer_index *idx, uint64_t *base);

/* The default cache directory: $OCITREE_CACHE_DIR, else $XDG_CACHE_HOME/ocitree,
 * else $HOME/.cache/ocitree.  NULL when none can be found (no HOME). */
char *ocitree_cache_dir_default(void);

#ifdef __cplusplus
}
#endif
#endif
