/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: the JSON model.  The first byte picks the parser (index,
 * manifest, config), the rest is the document.  Whatever parses must
 * serialise, parse again, and serialise to the same bytes.
 */
#include "config.h"

#include <stdint.h>

#include "ocitree/model.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_same(char *a, char *b)
{
	if (!b || strcmp(a, b) != 0) {
		fprintf(stderr, "not idempotent:\n%s\n%s\n", a, b ? b : "(did not parse)");
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *json = (const char *)data + 1;
	size_t len = size - 1;
	struct ocitree_error *err = NULL;
	switch (data[0] % 3) {
	case 0: {
		struct ocitree_index *idx = ocitree_index_parse(json, len, &err);
		if (idx) {
			char *a = ocitree_index_to_json(idx);
			struct ocitree_index *again = ocitree_index_parse(a, strlen(a), NULL);
			char *b = again ? ocitree_index_to_json(again) : NULL;
			check_same(a, b);
			for (size_t i = 0; i < idx->n_manifests; i++)
				ocitree_descriptor_ref_name(&idx->manifests[i]);
			free(a), free(b);
			ocitree_index_free(again);
			ocitree_index_free(idx);
		}
		break;
	}
	case 1: {
		struct ocitree_manifest *m = ocitree_manifest_parse(json, len, &err);
		if (m) {
			char *a = ocitree_manifest_to_json(m);
			struct ocitree_manifest *again = ocitree_manifest_parse(a, strlen(a), NULL);
			char *b = again ? ocitree_manifest_to_json(again) : NULL;
			check_same(a, b);
			free(a), free(b);
			ocitree_manifest_free(again);
			ocitree_manifest_free(m);
		}
		break;
	}
	default: {
		struct ocitree_config *c = ocitree_config_parse(json, len, &err);
		if (c) {
			ocitree_config_set_env(c, "FUZZ", "1");
			char *a = ocitree_config_to_json(c);
			struct ocitree_config *again = ocitree_config_parse(a, strlen(a), NULL);
			char *b = again ? ocitree_config_to_json(again) : NULL;
			check_same(a, b);
			free(a), free(b);
			ocitree_config_free(again);
			ocitree_config_free(c);
		}
		break;
	}
	}
	if (err && (!err->msg || !*err->msg))
		abort(); /* every error has a message */
	ocitree_error_free(err);
	return 0;
}
