/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The layer codec: tar layers compressed with gzip, zstd or nothing.
 *
 * Reading streams a blob through its digest check, a decompressor and the
 * diff_id check, in a background thread that runs ahead of the consumer; tar
 * entries are parsed with libarchive.  Nothing read is trustworthy until the
 * stream has been read to its verified end: a digest or diff_id mismatch is
 * reported (as OCITREE_ERROR_DIGEST) by the call that reaches the end.
 *
 * Writing produces deterministic pax archives (entries in the order given,
 * fixed header fields, no atime/ctime, uname/gname empty) compressed in
 * independent 1 MiB pieces: gzip with a full flush after each piece (one
 * ordinary gzip member that a reader can restart at every flush point), zstd
 * as one frame per piece.  The pieces are compressed on all cores, yet the
 * output only depends on the input, so the same tree gives the same digest.
 */
#ifndef OCITREE_LAYER_H
#define OCITREE_LAYER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "ocitree/error.h"
#include "ocitree/layout.h"
#include "ocitree/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Uncompressed bytes in each independently compressed piece of a written
 * layer (and the distance between gzip flush points). */
#define OCITREE_LAYER_PIECE_SIZE (1u << 20)

/* At most this many bytes may follow the end-of-archive marker of a layer
 * (GNU tar pads to 10 KiB records); more is refused rather than decompressed
 * without end. */
#define OCITREE_LAYER_MAX_TRAILER (1u << 20)

/* ---- decompressed streams ---- */

struct ocitree_layer_reader;

/* Stream the layer desc of layout l: the blob is checked against
 * desc->digest and desc->size, decompressed according to desc->media_type,
 * and the result checked against diff_id (when not NULL) at the end.  A
 * thread reads and decompresses ahead of the caller. */
struct ocitree_layer_reader *ocitree_layer_reader_open(struct ocitree_layout *l, const struct ocitree_descriptor *desc,
						       const char *diff_id, struct ocitree_error **err);

/* The same for a file that is not a blob: fd (owned by the reader from now
 * on, even on failure) holds a stream compressed with comp.  what names it in
 * errors. */
struct ocitree_layer_reader *ocitree_layer_reader_open_fd(int fd, enum ocitree_compression comp, const char *diff_id,
							  const char *what, struct ocitree_error **err);

/* Limit the decompressed size of the stream (0: no limit, the default);
 * more is an OCITREE_ERROR_INVALID error.  Call before the first read. */
void ocitree_layer_reader_set_limit(struct ocitree_layer_reader *r, uint64_t max_bytes);

/* The next piece of decompressed data, without copying: *data stays valid
 * until the next call.  Returns its length, 0 at the verified end of the
 * stream, -1 on error. */
ssize_t ocitree_layer_reader_next(struct ocitree_layer_reader *r, const void **data, struct ocitree_error **err);

/* Copying variant of ocitree_layer_reader_next(). */
ssize_t ocitree_layer_reader_read(struct ocitree_layer_reader *r, void *buf, size_t len, struct ocitree_error **err);

/* Decompressed bytes handed out so far. */
uint64_t ocitree_layer_reader_offset(const struct ocitree_layer_reader *r);

/* The digest of the decompressed stream ("sha256:..."), known once the
 * reader reached the end; "" before. */
const char *ocitree_layer_reader_diff_id(const struct ocitree_layer_reader *r);

/* Stops the thread; accepts NULL. */
void ocitree_layer_reader_free(struct ocitree_layer_reader *r);

/* ---- tar entries ---- */

enum ocitree_tar_type {
	OCITREE_TAR_REG = 0,
	OCITREE_TAR_DIR,
	OCITREE_TAR_SYMLINK,
	OCITREE_TAR_HARDLINK,
	OCITREE_TAR_CHAR,
	OCITREE_TAR_BLOCK,
	OCITREE_TAR_FIFO,
};

struct ocitree_xattr {
	const char *name;
	const void *value;
	size_t len;
};

/* One archive entry.  For reading, the strings point into the reader and
 * stay valid until the next entry; for writing, they are the caller's. */
struct ocitree_tar_entry {
	const char *path;     /* as in the archive (no trailing '/' needed) */
	enum ocitree_tar_type type;
	uint32_t mode;        /* permission bits and setuid/setgid/sticky */
	int64_t uid, gid;
	int64_t size;         /* regular files only */
	struct timespec mtime;
	struct timespec atime; /* read only; tv_sec == 0 and tv_nsec == 0 when absent */
	const char *linkname; /* symlink target or hardlink target path; NULL otherwise */
	uint32_t devmajor, devminor;
	const struct ocitree_xattr *xattrs; /* SCHILY.xattr.* records */
	size_t n_xattrs;
};

struct ocitree_tar_reader;

/* Read the tar archive streamed by r (borrowed: it must outlive the tar
 * reader).  Archives are pax, GNU or ustar. */
struct ocitree_tar_reader *ocitree_tar_reader_new(struct ocitree_layer_reader *r, struct ocitree_error **err);

/* The next entry in *e (owned by the reader).  Returns 1, 0 at the end of the
 * archive (after the rest of the stream was read and verified), -1 on error.
 * Unread data of the previous entry is skipped.  Libarchive warnings are
 * logged and do not fail. */
int ocitree_tar_reader_next(struct ocitree_tar_reader *tr, const struct ocitree_tar_entry **e,
			    struct ocitree_error **err);

/* The next block of the current entry's data: *buf (owned by the reader,
 * valid until the next call) holds the bytes at *offset of the file (sparse
 * archives leave holes between blocks).  Returns the length, 0 at the end of
 * the entry, -1 on error. */
ssize_t ocitree_tar_reader_data(struct ocitree_tar_reader *tr, const void **buf, int64_t *offset,
				struct ocitree_error **err);

void ocitree_tar_reader_free(struct ocitree_tar_reader *tr);

/* ---- writing layers ---- */

struct ocitree_layer_writer;

struct ocitree_layer_writer_options {
	enum ocitree_compression compression;
	/* clamp newer mtimes in headers to this time when >= 0 (see
	 * ocitree_source_date_epoch()); -1 keeps them */
	int64_t clamp_mtime;
	/* compression level, 0 for the default (gzip 6, zstd 3) */
	int level;
	/* threads compressing pieces, 0 for one per online CPU */
	unsigned threads;
};

/* Start a new layer blob in layout l.  Entries are written in the order they
 * are added; the caller sorts them. */
struct ocitree_layer_writer *ocitree_layer_writer_new(struct ocitree_layout *l,
						      const struct ocitree_layer_writer_options *o,
						      struct ocitree_error **err);

/* Append the header of entry e.  A regular file's e->size bytes of data must
 * follow through ocitree_layer_writer_data() before the next entry. */
int ocitree_layer_writer_add(struct ocitree_layer_writer *w, const struct ocitree_tar_entry *e,
			     struct ocitree_error **err);

int ocitree_layer_writer_data(struct ocitree_layer_writer *w, const void *data, size_t len,
			      struct ocitree_error **err);

/* Append bytes of an existing, uncompressed tar stream as they are (raw
 * add-layer); not to be mixed with _add().  The caller ends with
 * ocitree_layer_writer_commit_raw(). */
int ocitree_layer_writer_raw(struct ocitree_layer_writer *w, const void *data, size_t len,
			     struct ocitree_error **err);

/* Finish the archive (end-of-archive blocks), the compression and the blob.
 * desc receives a new descriptor (media type, digest, size; the caller
 * clears it), diff_id the digest of the uncompressed archive. */
int ocitree_layer_writer_commit(struct ocitree_layer_writer *w, struct ocitree_descriptor *desc,
				char diff_id[OCITREE_DIGEST_MAX], struct ocitree_error **err);

/* Like commit, but writes no end-of-archive blocks: the raw stream has its
 * own. */
int ocitree_layer_writer_commit_raw(struct ocitree_layer_writer *w, struct ocitree_descriptor *desc,
				    char diff_id[OCITREE_DIGEST_MAX], struct ocitree_error **err);

/* Uncompressed bytes written so far. */
uint64_t ocitree_layer_writer_offset(const struct ocitree_layer_writer *w);

/* Abandons an uncommitted blob; accepts NULL. */
void ocitree_layer_writer_free(struct ocitree_layer_writer *w);

/* SOURCE_DATE_EPOCH as seconds, or -1 when unset or invalid. */
int64_t ocitree_source_date_epoch(void);

#ifdef __cplusplus
}
#endif
#endif
