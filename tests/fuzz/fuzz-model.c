/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: the JSON model.  The first byte picks the parser (index,
 * manifest, config), the rest is the document.  Whatever parses must
 * serialise, parse again, and serialise to the same bytes.  The one
 * exception is Go's: a string with bytes that are not UTF-8 is written with
 * \ufffd in their place, which parses back as U+FFFD and is then written
 * as itself (encoding/json does the same); from there on the bytes must not
 * change.
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

/* a and b are the first and second serialisation; c the third, or NULL
 * when a has no replacement character to settle */
static void check_settled(char *a, char *b, char *c)
{
	if (!b || !strstr(a, "\\ufffd")) {
		check_same(a, b);
		return;
	}
	check_same(b, c);
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
			struct ocitree_index *third = b ? ocitree_index_parse(b, strlen(b), NULL) : NULL;
			char *c3 = third ? ocitree_index_to_json(third) : NULL;
			check_settled(a, b, c3);
			free(c3);
			ocitree_index_free(third);
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
			struct ocitree_manifest *third = b ? ocitree_manifest_parse(b, strlen(b), NULL) : NULL;
			char *c3 = third ? ocitree_manifest_to_json(third) : NULL;
			check_settled(a, b, c3);
			free(c3);
			ocitree_manifest_free(third);
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
			struct ocitree_config *third = b ? ocitree_config_parse(b, strlen(b), NULL) : NULL;
			char *c3 = third ? ocitree_config_to_json(third) : NULL;
			check_settled(a, b, c3);
			free(c3);
			ocitree_config_free(third);
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
