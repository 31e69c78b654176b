/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An example of libocitree: open a layout and list its tags with the
 * digest and platform of the image each names.
 *
 *   cc list-tags.c $(pkg-config --cflags --libs ocitree) -o list-tags
 *   ./list-tags LAYOUT
 */
#include <stdio.h>

#include <ocitree/ocitree.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s LAYOUT\n", argv[0]);
		return 2;
	}
	struct ocitree_error *err = NULL;
	struct ocitree_layout *layout = ocitree_layout_open(argv[1], &err);
	if (!layout) {
		fprintf(stderr, "list-tags: %s\n", err->msg);
		ocitree_error_free(err);
		return 1;
	}
	struct ocitree_index *index = ocitree_layout_read_index(layout, &err);
	int status = 0;
	for (size_t i = 0; index && i < index->n_manifests; i++) {
		const char *tag = ocitree_descriptor_ref_name(&index->manifests[i]);
		if (!tag)
			continue;
		struct ocitree_image *img = ocitree_image_open(layout, tag, &err);
		if (!img) {
			fprintf(stderr, "list-tags: %s\n", err->msg);
			ocitree_error_free(err);
			err = NULL;
			status = 1;
			continue;
		}
		printf("%s\t%s\t%s/%s\t%zu layers\n", tag, img->manifest_desc.digest, img->config->os,
		       img->config->architecture, img->manifest->n_layers);
		ocitree_image_free(img);
	}
	if (!index) {
		fprintf(stderr, "list-tags: %s\n", err->msg);
		ocitree_error_free(err);
		status = 1;
	}
	ocitree_index_free(index);
	ocitree_layout_free(layout);
	return status;
}
