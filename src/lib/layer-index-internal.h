/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals of the layer index, shared by the files that make it up:
 *
 *   layer-index.c        opening (cache or build), open_many, accessors
 *   layer-index-file.c   the cache file format: write, load, check
 *   layer-index-build.c  the index pass over a layer blob
 *   layer-seek.c         decoding the gzip chunk after a checkpoint
 *   layer-index-read.c   reads of the tar: pread, pin, read-ahead policy
 *
 * The first part is also what the tree tells the indexes it merges, and, for
 * the unit tests and the fuzz targets only, an index made from a file image
 * in memory and the knob that spaces gzip checkpoints.
 */
#ifndef OCITREE_LAYER_INDEX_INTERNAL_H
#define OCITREE_LAYER_INDEX_INTERNAL_H

#include <sys/uio.h>

#include "chunk-cache.h"
#include "ocitree/digest.h"
#include "ocitree/layer-index.h"
#include "ocitree/layer.h"
#include "ocitree/layout.h"
#include "util.h"

/* The entries of idx that a merged tree shows: bit i of entries (i % 8 of
 * byte i / 8) is entry i.  Read-ahead then decodes only chunks holding the
 * data of such entries (an index never marked reads ahead everywhere).
 * Marks are only ever added, so a tree may be built while reads of another
 * tree of the same indexes go on. */
void layer_index_mark_live(struct ocitree_layer_index *idx, const uint8_t *entries);

/* Uncompressed bytes between two gzip checkpoints of an index being built
 * (256 KiB: a chunk, decoded and checked as one); every RESTORE_CHUNKS-th
 * one is a place to resume inflating.  Tests and fuzzers lower it to get
 * many checkpoints out of small layers; set it before building, never while
 * an index is being built. */
extern uint32_t layer_index_checkpoint_span;

/* An index from the image of an index file (len bytes at img, copied), with
 * every check a cached index file gets when it is loaded.  blob_fd (the
 * layer blob, for gzip reads) and data_fd (the uncompressed tar, or -1) are
 * owned by the index from now on, even on failure; data_fd is used for a
 * layer that is not gzip (closed for a gzip one); chunks may be NULL. */
struct ocitree_layer_index *layer_index_from_image(const void *img, size_t len, const char *digest, int blob_fd,
						    int data_fd, struct ocitree_chunk_cache *chunks,
						    struct ocitree_error **err);

/* Make the checksums of an index file image right again after it was
 * edited: those of the windows of zlib checkpoints whose window is in
 * range, then the one over the header and sections (when the header is in
 * range).  A hostile writer of the cache can do the same, so tests and
 * fuzzers use it to reach the checks behind the checksums.  ISA-L states are
 * left alone: they are opaque and only guarded by their checksum (see
 * layer-index.c). */
void layer_index_image_seal(void *img, size_t len);

/* ---- within the library only ---- */

#define IDX_DIR "index-v2"
/* what older programs cached, pruned by the index pass (layer-index-build.c) */
#define IDX_DIR_OLD "index-v1"
#define TAR_DIR "tar"
/* output between two gzip checkpoints (layer_index_checkpoint_span's
 * default): the chunk a first read inflates and checks before it is served */
#define CHECKPOINT_SPAN (256u << 10)
/* A resumable checkpoint (a window or an ISA-L state) every this many
 * chunks; the others only split the output for its checks (CP_CONT).
 * Packing an ISA-L state (its history and Huffman tables) costs ~0.1 ms and
 * ~20 KiB of index: one per 1 MiB was what the index pass paid before;
 * one per 512 KiB, packed faster (level 0, without the stale output),
 * costs about as much. */
#define RESTORE_CHUNKS 2u
/* How far a chunk may end past its resumable checkpoint (a check on index
 * files: the pass puts them RESTORE_CHUNKS spans apart, zlib a deflate
 * block more; what one chunk could span before CP_CONT) */
#define RESTORE_MAX_DIST (64u << 20)
/* the deflate history a zlib checkpoint keeps */
#define WINDOW_SIZE 32768u

/* A place to resume inflating: the deflate block starting at bit
 * (in_off * 8 - bits) of the blob produces tar byte out_off. */
struct idx_checkpoint {
	uint64_t out_off;
	uint64_t in_off;     /* first byte with whole bits of the block */
	uint64_t window_off; /* into windows */
	uint32_t window_len; /* deflated length; 0 at the start of the stream */
	uint32_t window_crc; /* CRC-32 of the deflated window */
	uint32_t chunk_crc;  /* CRC-32 of the output up to the next checkpoint */
	uint8_t bits;        /* bits of the block in the byte at in_off - 1 */
	uint8_t kind;        /* enum cp_kind */
	uint8_t pad[2];
};

enum cp_kind {
	CP_ZLIB = 0,   /* a block boundary: bits and window */
	CP_MEMBER = 1, /* in_off is the start of a gzip member (header included) */
	CP_ISAL = 2,   /* in_off is where ISA-L's saved state resumes reading */
	CP_CONT = 3,   /* no window: decoded from the resumable checkpoint before it; in_off is
			* where the pass had read to (the input the chunk before needs) */
};

struct ocitree_layer_index {
	char digest[OCITREE_DIGEST_MAX];
	enum ocitree_compression comp;
	int blob_fd;
	const unsigned char *blob_map; /* the gzip blob mapped read-only (see layer_index_map_blob), or NULL */
	size_t blob_map_len;
	int data_fd;       /* the uncompressed tar as a file, or -1 */
	uint64_t data_base;
	uint64_t blob_size, tar_size;
	bool cached;
	/* the index: either a mapping of the file or owned buffers */
	void *map;
	size_t map_len;
	void *owned[4];
	const struct ocitree_layer_entry *entries;
	size_t n_entries;
	const char *strings;
	size_t strings_len;
	const unsigned char *xattrs;
	size_t xattrs_len;
	const struct idx_checkpoint *cps;
	size_t n_cps;
	const unsigned char *windows;
	size_t windows_len;
	struct ocitree_chunk_cache *chunks; /* borrowed; may be NULL */
	uint64_t last_end; /* atomic: where the last read ended, to spot sequential readers */
	uint64_t ra_next;  /* atomic: the chunk after the last one read-ahead was asked for */
	uint8_t *live;     /* atomic: bitmap of the chunks holding data a tree shows (bits only added); NULL: all */
	uint32_t meta_crc; /* the index file's checksum of its metadata: names these entries */
	struct seek_stream *stream; /* layer-seek.c: the inflate after the last chunk decoded, or NULL */
};

/* The checkpoint whose chunk holds tar offset off (gzip), and where chunk i
 * ends. */
static inline size_t idx_find_checkpoint(const struct ocitree_layer_index *idx, uint64_t off)
{
	size_t lo = 0, hi = idx->n_cps;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (idx->cps[mid].out_off <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static inline uint64_t idx_chunk_end(const struct ocitree_layer_index *idx, size_t i)
{
	return i + 1 < idx->n_cps ? idx->cps[i + 1].out_off : idx->tar_size;
}

/* tree.c: make the checksum of a merged tree's cache file (of len bytes
 * at img) right, as a hostile writer of the cache could (fuzz-index). */
void tree_file_seal(void *img, size_t len);

/* layer-index.c */

/* A zeroed index for digest with no file descriptors. */
struct ocitree_layer_index *layer_index_alloc(const char *digest);
/* "sha256" of "sha256:...", malloc'd. */
char *layer_index_digest_alg(const char *digest);
/* cache_dir/sub/alg as a directory fd, made (mkdir -p) when create is set. */
int layer_index_cache_subdir(const char *cache_dir, const char *sub, const char *alg, bool create,
			     struct ocitree_error **err);

/* layer-index-file.c */

/* ISA-L for gzip (index pass, chunk decoding, checksums) unless it is
 * missing or OCITREE_INFLATE=zlib asks for zlib (tests compare both). */
bool layer_index_use_isal(void);
/* CRC-32 as zlib computes it; ISA-L's is many times faster. */
uint32_t layer_index_crc(uint32_t crc, const void *p, size_t n);
/* Append src raw-deflated (fast, level 1) to dst; *len gets its size and
 * *crc the CRC-32 of what was appended.  *scratch (NULL at first, the
 * caller frees it) keeps the compressor's work space between calls. */
void layer_index_pack_window(struct buf *dst, const void *src, size_t n, uint32_t *len, uint32_t *crc,
			     void **scratch);
/* Inflate what layer_index_pack_window() made into out (of exactly n
 * bytes, or up to n when got is set: it gets the count), checking crc
 * first. */
int layer_index_unpack_window(const unsigned char *in, size_t in_len, uint32_t crc, void *out, size_t n, size_t *got,
			      struct ocitree_error **err);

struct tar_scan;

/* What an index pass found, to be written as an index file. */
struct layer_index_parts {
	const struct tar_scan *tar; /* entries, strings, xattrs */
	const struct idx_checkpoint *cps;
	size_t n_cps;
	/* the windows: in memory, or the first windows_len bytes of the file
	 * windows_fd when that is not -1 */
	const struct buf *windows;
	int windows_fd;
	uint64_t windows_len;
	uint64_t tar_size;
	bool isal; /* the checkpoints hold ISA-L states */
};
/* The image of the index file of parts: its header and pieces of memory
 * (pointing into parts, which must outlive it). */
/* The header of an index file (the format is told in layer-index-file.c). */
struct idx_header {
	char magic[8];
	uint32_t version;
	uint32_t endian;
	uint32_t compression;
	uint32_t meta_crc;
	uint64_t blob_size;
	uint64_t tar_size;
	uint64_t n_entries;
	uint64_t strings_off, strings_len;
	uint64_t xattrs_off, xattrs_len;
	uint64_t checkpoints_off, n_checkpoints;
	uint64_t windows_off, windows_len;
	uint64_t entry_size, checkpoint_size; /* sizeof the records, as a format check */
	uint64_t isal_state_size; /* sizeof(struct inflate_state) of ISA-L checkpoints, else 0 */
	uint64_t isal_version;
	char digest[OCITREE_DIGEST_MAX];
};

/* The image of the index file of parts: its header and the pieces of
 * memory that follow it (pointing into parts, which must outlive it). */
struct layer_index_image {
	struct idx_header header;
	size_t n_iov;
	struct iovec iov[12];
	size_t len;          /* of the whole file */
	int windows_fd;      /* parts->windows_fd: the windows follow the iov */
	uint64_t windows_len;
};
void layer_index_serialise(const struct layer_index_parts *b, const char *digest, enum ocitree_compression comp,
			   uint64_t blob_size, struct layer_index_image *out);
/* The image in one malloc'd buffer (of im->len bytes, 8-aligned); NULL
 * with *err when the windows cannot be read back from their file. */
void *layer_index_image_flatten(const struct layer_index_image *im, struct ocitree_error **err);
/* Point idx's sections into an index file image (mapped or in memory,
 * 8-aligned, kept alive by idx), checking everything a reader relies on. */
int layer_index_attach(struct ocitree_layer_index *idx, const unsigned char *img, size_t len, const char *digest,
		       struct ocitree_error **err);
/* Write im as dirfd/name, atomically (no fsync: see the definition); the
 * file stays open as *fd_out when fd_out is set. */
int layer_index_write_file(int dirfd, const char *name, const struct layer_index_image *im, int *fd_out,
			   struct ocitree_error **err);
/* Load a cached index; NULL (with *err) when it is missing or unusable. */
struct ocitree_layer_index *layer_index_load_cached(const struct ocitree_descriptor *d, enum ocitree_compression comp,
						    const struct ocitree_layer_index_opts *opts, int idx_dirfd,
						    struct ocitree_error **err);

/* layer-index-build.c */

/* Build the index of a layer with one verified pass; write it (and the zstd
 * tar) to the cache unless opts->no_write. */
struct ocitree_layer_index *layer_index_build(struct ocitree_layout *l, const struct ocitree_descriptor *d,
					      enum ocitree_compression comp, const char *diff_id,
					      const struct ocitree_layer_index_opts *opts, int idx_dirfd,
					      struct ocitree_error **err);

/* layer-seek.c */

/* Map idx's gzip blob for the decoder (idx->blob_fd set, idx->comp and
 * idx->blob_size known); without a mapping (mmap failed, not a regular
 * file) chunks are read with pread.  Unmapped by ocitree_layer_index_free. */
void layer_index_map_blob(struct ocitree_layer_index *idx);

/* States restored so far (decodes not going on from the chunk before), for
 * the tests; atomic. */
extern uint64_t layer_seek_restores;

/* Free what decoding kept in idx (ocitree_layer_index_free). */
void layer_seek_free(struct ocitree_layer_index *idx);

/* The chunk_decode_fn of gzip layers (userdata: the index): chunk no, from
 * its checkpoint to the next, checked against its CRC-32. */
int layer_index_decode_chunk(void *userdata, struct ocitree_chunk_cache *cache, uint64_t no, struct chunk_data *out,
			     struct ocitree_error **err);

#endif
