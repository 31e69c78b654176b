/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Progress of a long operation (unpack, repack, insert, add-layer, commit,
 * the index pass of a mount), for a program that shows it.  The library
 * calls the function now and then; it never prints.
 */
#ifndef OCITREE_PROGRESS_H
#define OCITREE_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ocitree_progress {
	const char *phase;      /* "unpack", "repack", "insert", "add-layer", "commit", "index" */
	size_t layer, n_layers; /* 1-based; 0 when not per layer */
	uint64_t bytes;         /* uncompressed bytes done (in this layer, when per layer) */
	uint64_t entries;       /* entries done (likewise) */
};
typedef void (*ocitree_progress_fn)(const struct ocitree_progress *p, void *userdata);

#ifdef __cplusplus
}
#endif

#endif
