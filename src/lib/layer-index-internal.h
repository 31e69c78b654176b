/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals of the layer index: what the tree tells the indexes it merges,
 * and, for the unit tests and the fuzz targets only, an index made from a
 * file image in memory and the knob that spaces gzip checkpoints.
 */
#ifndef OCITREE_LAYER_INDEX_INTERNAL_H
#define OCITREE_LAYER_INDEX_INTERNAL_H

#include "ocitree/layer-index.h"

/* The entries of idx that a merged tree shows: bit i of entries (i % 8 of
 * byte i / 8) is entry i.  Read-ahead then decodes only chunks holding the
 * data of such entries (an index never marked reads ahead everywhere).
 * Marks are only ever added, so a tree may be built while reads of another
 * tree of the same indexes go on. */
void layer_index_mark_live(struct ocitree_layer_index *idx, const uint8_t *entries);

/* Uncompressed bytes between two gzip checkpoints of an index being built
 * (1 MiB).  Tests and fuzzers lower it to get many checkpoints out of small
 * layers; set it before building, never while an index is being built. */
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

#endif
