/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An OCI image layout on disk and its content-addressed blob store.
 *
 * Concurrency: index.json is only ever replaced atomically (rename), under
 * an exclusive flock(2) on the layout directory, by
 * ocitree_layout_update_index(); readers need no lock.  Every command that
 * writes blobs holds a shared flock on the blobs/ directory from its first
 * blob until its index.json update (taken by the first blob writer and kept
 * until ocitree_layout_free()); gc holds it exclusively while it sweeps, so
 * it never removes a blob that a running command is about to reference.
 * No lock file is created: other tools see a plain layout.
 *
 * Temporary files are named ".ocitree-tmp.*" in the directory of their
 * final name; gc removes stale ones.
 */
#ifndef OCITREE_LAYOUT_H
#define OCITREE_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ocitree/error.h"
#include "ocitree/model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ocitree_layout;

/* Open an existing layout: checks oci-layout (imageLayoutVersion 1.x),
 * index.json (parsed and validated) and the blobs directory.  Errors name the
 * file at fault. */
struct ocitree_layout *ocitree_layout_open(const char *path, struct ocitree_error **err);

/* Create a new, empty layout at path (which must not exist, or be an empty
 * directory).  On failure nothing is left behind. */
int ocitree_layout_create(const char *path, struct ocitree_error **err);

void ocitree_layout_free(struct ocitree_layout *l);

const char *ocitree_layout_path(const struct ocitree_layout *l);
/* The layout's directory fd, owned by the layout. */
int ocitree_layout_dirfd(const struct ocitree_layout *l);

/* Read and parse index.json now (a fresh copy each call; caller frees). */
struct ocitree_index *ocitree_layout_read_index(struct ocitree_layout *l, struct ocitree_error **err);

/* Read-modify-write index.json under the exclusive layout lock: fn gets
 * the current index and changes it; returning <0 aborts with its error and
 * leaves index.json untouched.  When fn succeeds, every descriptor in the
 * new index is checked to exist as a blob, and index.json is replaced
 * atomically. */
typedef int (*ocitree_index_update_fn)(struct ocitree_index *idx, void *userdata, struct ocitree_error **err);
int ocitree_layout_update_index(struct ocitree_layout *l, ocitree_index_update_fn fn, void *userdata,
				struct ocitree_error **err);

/* Tag name rules: 1-128 characters of [A-Za-z0-9._-] (umoci's rule, which
 * every tool reading a layout accepts), not starting with '.' or '-'. */
int ocitree_tag_check(const char *tag, struct ocitree_error **err);

/* ---- blobs ---- */

/* Whether the blob exists (as a regular file). */
bool ocitree_blob_exists(struct ocitree_layout *l, const char *digest);

/* Read a whole blob of at most max bytes into *data (NUL-terminated,
 * caller frees), verifying digest and, when size >= 0, size.  A mismatch is
 * an OCITREE_ERROR_DIGEST error. */
int ocitree_blob_read(struct ocitree_layout *l, const char *digest, int64_t size, size_t max, char **data,
		      size_t *len, struct ocitree_error **err);

/* Read a blob by descriptor and parse it as what the descriptor says. */
struct ocitree_manifest *ocitree_blob_read_manifest(struct ocitree_layout *l, const struct ocitree_descriptor *d,
						    struct ocitree_error **err);
struct ocitree_index *ocitree_blob_read_index(struct ocitree_layout *l, const struct ocitree_descriptor *d,
					      struct ocitree_error **err);
struct ocitree_config *ocitree_blob_read_config(struct ocitree_layout *l, const struct ocitree_descriptor *d,
						struct ocitree_error **err);

/* Open a blob for reading without verification (for random access; the
 * caller verifies the content some other way).  Returns an fd or -1. */
int ocitree_blob_open_fd(struct ocitree_layout *l, const char *digest, struct ocitree_error **err);

/* A streaming reader that hashes what it reads: at end of file it checks the
 * digest and size and fails with OCITREE_ERROR_DIGEST on a mismatch, so a
 * consumer that reads to the end has read verified data.  As umoci's
 * verified reader does, it hashes at most the declared size and checks the
 * digest before the length: a blob too long or too short whose declared
 * bytes are wrong reports the digest ("verified reader digest mismatch"),
 * one whose declared bytes are right reports the length ("verified reader
 * size mismatch"). */
struct ocitree_blob_reader;
struct ocitree_blob_reader *ocitree_blob_reader_open(struct ocitree_layout *l, const char *digest, int64_t size,
						     struct ocitree_error **err);
/* Returns bytes read, 0 at a verified end, -1 on error. */
ssize_t ocitree_blob_reader_read(struct ocitree_blob_reader *r, void *buf, size_t len, struct ocitree_error **err);
/* Bytes read so far. */
int64_t ocitree_blob_reader_offset(const struct ocitree_blob_reader *r);
void ocitree_blob_reader_free(struct ocitree_blob_reader *r);

/* A new blob, written to a temporary file in blobs/sha256/ and hashed on the
 * way; commit fsyncs it and renames it to its digest.  Freeing an
 * uncommitted writer removes the temporary file. */
struct ocitree_blob_writer;
struct ocitree_blob_writer *ocitree_blob_writer_new(struct ocitree_layout *l, struct ocitree_error **err);
int ocitree_blob_writer_write(struct ocitree_blob_writer *w, const void *data, size_t len,
			      struct ocitree_error **err);
/* digest receives "sha256:...", size the byte count (either may be NULL). */
int ocitree_blob_writer_commit(struct ocitree_blob_writer *w, char digest[OCITREE_DIGEST_MAX], int64_t *size,
			       struct ocitree_error **err);
void ocitree_blob_writer_free(struct ocitree_blob_writer *w);

/* Write a whole blob from memory. */
int ocitree_blob_put(struct ocitree_layout *l, const void *data, size_t len, char digest[OCITREE_DIGEST_MAX],
		     struct ocitree_error **err);

/* Take the shared blob lock (see above) now; idempotent.  Blob writers take
 * it themselves; call it first when a command will reference existing blobs
 * it must not lose to a concurrent gc. */
int ocitree_layout_hold_blobs(struct ocitree_layout *l, struct ocitree_error **err);

/* ---- garbage collection ---- */

struct ocitree_gc_stats {
	size_t blobs_removed;
	uint64_t bytes_removed;
	size_t tmp_removed;
	size_t blobs_kept;
};

/* Remove every blob not reachable from index.json (through nested indexes,
 * manifests, configs, layers and subjects) and every stale temporary file.
 * A reachable blob that is missing or unreadable aborts gc before it removes
 * anything.  The layout must not be held (ocitree_layout_hold_blobs). */
int ocitree_layout_gc(struct ocitree_layout *l, struct ocitree_gc_stats *stats, struct ocitree_error **err);

#ifdef __cplusplus
}
#endif
#endif
