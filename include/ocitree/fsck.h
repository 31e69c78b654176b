/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checking a layout: every blob against its name, every ref down to its
 * layers, and (with OCITREE_FSCK_FULL) every layer against its diff_id.
 */
#ifndef OCITREE_FSCK_H
#define OCITREE_FSCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ocitree/layout.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ocitree_fsck_flags {
	/* Also decompress every layer a ref reaches and check it against the
	 * config's diff_id (each layer once, however many images share it). */
	OCITREE_FSCK_FULL = 1 << 0,
};

/* One problem: what it is about (a blob digest, a tag or a file name) and
 * what is wrong. */
struct ocitree_fsck_problem {
	char *object;
	char *message;
};

struct ocitree_fsck_report {
	struct ocitree_fsck_problem *problems; /* the layout is clean when n_problems is 0 */
	size_t n_problems;
	char **unreferenced; /* digests no ref reaches (NULL-terminated) */
	char **temporary;    /* stale temporary files, relative to the layout */
	size_t n_blobs;      /* blobs checked */
	uint64_t bytes;      /* bytes hashed */
	size_t n_refs;       /* entries of index.json walked */
	size_t n_layers;     /* layers decompressed (OCITREE_FSCK_FULL) */
	uint64_t uncompressed; /* bytes they decompressed to */
};

/* Check l and fill *report (the caller frees it with
 * ocitree_fsck_report_clear()).  Problems with the layout are reported, not
 * returned: the function fails only when it cannot run at all (the layout
 * cannot be read). */
int ocitree_layout_fsck(struct ocitree_layout *l, unsigned flags, struct ocitree_fsck_report *report,
			struct ocitree_error **err);
void ocitree_fsck_report_clear(struct ocitree_fsck_report *report);

#ifdef __cplusplus
}
#endif
#endif
