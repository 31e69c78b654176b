/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON of the image model's own types, on top of the generic cJSON helpers
 * of cjson-util.h; implemented in model.c, which owns those types (so the
 * JSON helpers need not know the model and the model uses them: no circle).
 */
#ifndef OCITREE_JSON_H
#define OCITREE_JSON_H

#include "cjson-util.h"
#include "ocitree/model.h"
#include "util.h"

/* An object of string values. */
int json_get_strmap(const cJSON *obj, const char *key, struct ocitree_strmap *out, bool *present, const char *what,
		    struct ocitree_error **err);
/* An object used as a set ({"80/tcp": {}}): keys only. */
int json_get_keyset(const cJSON *obj, const char *key, struct ocitree_strmap *out, bool *present, const char *what,
		    struct ocitree_error **err);
cJSON *json_strmap(const struct ocitree_strmap *m);
cJSON *json_keyset(const struct ocitree_strmap *m);
/* A descriptor as the image spec writes it. */
cJSON *json_descriptor(const struct ocitree_descriptor *d);

#endif
