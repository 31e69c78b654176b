/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal cJSON helpers: typed getters that validate and name the field in
 * their errors, and builders that abort on out-of-memory.
 */
#ifndef OCITREE_JSON_H
#define OCITREE_JSON_H

#include <cjson/cJSON.h>

#include "ocitree/model.h"
#include "util.h"

static inline void cleanup_jsonp(cJSON **j)
{
	cJSON_Delete(*j);
}
#define _cleanup_json_ _cleanup_(cleanup_jsonp)

/* Parse a JSON document that must be an object; what names it in errors. */
cJSON *json_parse_object(const char *data, size_t len, const char *what, struct ocitree_error **err);

/* Getters: a missing key is an error only when required; a JSON null counts
 * as missing.  *out points into obj (strings) or is newly allocated (strv,
 * maps). */
int json_get_string(const cJSON *obj, const char *key, bool required, const char **out, const char *what,
		    struct ocitree_error **err);
int json_get_int64(const cJSON *obj, const char *key, bool required, int64_t *out, const char *what,
		   struct ocitree_error **err);
int json_get_bool(const cJSON *obj, const char *key, bool *out, const char *what, struct ocitree_error **err);
/* An array of strings; *out is NULL when absent or null. */
int json_get_strv(const cJSON *obj, const char *key, char ***out, const char *what, struct ocitree_error **err);
/* An object of string values. */
int json_get_strmap(const cJSON *obj, const char *key, struct ocitree_strmap *out, bool *present, const char *what,
		    struct ocitree_error **err);
/* An object used as a set ({"80/tcp": {}}): keys only. */
int json_get_keyset(const cJSON *obj, const char *key, struct ocitree_strmap *out, bool *present, const char *what,
		    struct ocitree_error **err);

/* Builders; they never return NULL. */
cJSON *json_object(void);
cJSON *json_array(void);
cJSON *json_string(const char *s);
cJSON *json_int64(int64_t v);
cJSON *json_bool(bool v);
cJSON *json_strv(char *const *v);
cJSON *json_strmap(const struct ocitree_strmap *m);
cJSON *json_keyset(const struct ocitree_strmap *m);
void json_add(cJSON *obj, const char *key, cJSON *item);
/* Replace (or add) key in obj. */
void json_set(cJSON *obj, const char *key, cJSON *item);
void json_append(cJSON *arr, cJSON *item);
/* A descriptor as the image spec writes it. */
cJSON *json_descriptor(const struct ocitree_descriptor *d);
/* Compact text; the caller frees it with free(). */
char *json_print(const cJSON *j);
/* Text byte for byte as Go's json.Encoder writes it (umoci writes every blob,
 * index.json, oci-layout, umoci.json and config.json this way): HTML-safe
 * escaping, a trailing newline, and with indent one tab per level and ": "
 * after keys (SetIndent("", "\t")).  Keys keep j's order.  The caller frees
 * the text with free(). */
char *json_encode(const cJSON *j, bool indent);
cJSON *json_dup(const cJSON *j);

#endif
