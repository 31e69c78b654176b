/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Images the unit tests make for themselves: one written layer each, so a
 * test of the layer store or of the mount set-up has layers of known
 * content without a tar on disk.  Header-only, as tap.h, since each test
 * is one program.
 */
#ifndef OCITREE_TEST_FIXTURE_H
#define OCITREE_TEST_FIXTURE_H

#include <string.h>

#include "ocitree/ocitree.h"
#include "tap.h"

/* Tag tag in l as base (NULL: a new image) plus a layer holding one file,
 * path file, "hi\n"; the new layer's digest and diff_id go to digest and
 * diff_id where they are not NULL.  Returns 0, or -1 after a diag(). */
static inline int fixture_add_image(struct ocitree_layout *l, const char *base, const char *tag, const char *file,
                                    char *digest, char *diff_id)
{
	struct ocitree_error *err = NULL;
	struct ocitree_image *img = base ? ocitree_image_open(l, base, &err) : ocitree_image_new(l);
	struct ocitree_layer_writer_options o = {
	    .compression = OCITREE_COMPRESSION_GZIP, .clamp_mtime = -1, .threads = 1};
	struct ocitree_layer_writer *w = img ? ocitree_layer_writer_new(l, &o, &err) : NULL;
	struct ocitree_tar_entry e = {
	    .path = file, .type = OCITREE_TAR_REG, .mode = 0644, .size = 3, .mtime = {1000, 0}};
	struct ocitree_descriptor d = {0};
	char id[OCITREE_DIGEST_MAX];
	int r = -1;
	if (w && ocitree_layer_writer_add(w, &e, &err) == 0 && ocitree_layer_writer_data(w, "hi\n", 3, &err) == 0 &&
	    ocitree_layer_writer_commit(w, &d, id, &err) == 0) {
		if (digest)
			memcpy(digest, d.digest, OCITREE_DIGEST_MAX);
		if (diff_id)
			memcpy(diff_id, id, OCITREE_DIGEST_MAX);
		ocitree_manifest_add_layer(img->manifest, &d);
		ocitree_config_add_diff_id(img->config, id);
		r = ocitree_image_commit(img, tag, &err);
	}
	if (r < 0)
		diag("make image %s: %s", tag, err ? err->msg : "?");
	ocitree_descriptor_clear(&d);
	ocitree_layer_writer_free(w);
	ocitree_image_free(img);
	ocitree_error_free(err);
	return r;
}

#endif
