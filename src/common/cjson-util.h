/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cJSON helpers shared by libocitree and its front ends: typed getters that
 * validate and name the field in their errors, and builders that abort on
 * out-of-memory (so a document is never silently missing a member).
 *
 * Like common.h, this is a static unit linked by the library and by the
 * programs rather than public API: cJSON is public itself, and libocitree's
 * installed headers do not expose cJSON types.  It knows nothing of the
 * image model (json.h of the library adds that).
 */
#ifndef OCITREE_CJSON_UTIL_H
#define OCITREE_CJSON_UTIL_H

#include <cjson/cJSON.h>

#include "common.h"
#include "ocitree/error.h"

static inline void cleanup_jsonp(cJSON **j)
{
	cJSON_Delete(*j);
}
#define _cleanup_json_ _cleanup_(cleanup_jsonp)

/* s with every byte that does not start or continue a valid UTF-8
 * sequence replaced by U+FFFD, as Go's decoder reads a string, in memory
 * from cJSON_malloc (free with cJSON_free); NULL when s is valid already. */
char *json_utf8_sanitized(const char *s);

/* Parse a JSON document that must be an object; what names it in errors. */
cJSON *json_parse_object(const char *data, size_t len, const char *what, struct ocitree_error **err);

/* The member key of obj, or NULL when it is absent or a JSON null. */
const cJSON *json_get(const cJSON *obj, const char *key);

/* Getters: a missing key is an error only when required; a JSON null counts
 * as missing.  *out points into obj (strings) or is newly allocated (strv). */
int json_get_string(const cJSON *obj, const char *key, bool required, const char **out, const char *what,
		    struct ocitree_error **err);
int json_get_int64(const cJSON *obj, const char *key, bool required, int64_t *out, const char *what,
		   struct ocitree_error **err);
int json_get_bool(const cJSON *obj, const char *key, bool *out, const char *what, struct ocitree_error **err);
/* An array of strings; *out is NULL when absent or null. */
int json_get_strv(const cJSON *obj, const char *key, char ***out, const char *what, struct ocitree_error **err);

/* Builders; they never return NULL. */
cJSON *json_object(void);
cJSON *json_array(void);
cJSON *json_string(const char *s);
cJSON *json_int64(int64_t v);
cJSON *json_bool(bool v);
cJSON *json_strv(char *const *v);
/* JSON text (valid, from a serializer such as ocitree_*_to_json()) inserted
 * as it is. */
cJSON *json_raw(const char *text);
void json_add(cJSON *obj, const char *key, cJSON *item);
/* Replace (or add) key in obj. */
void json_set(cJSON *obj, const char *key, cJSON *item);
void json_append(cJSON *arr, cJSON *item);
/* Compact text; the caller frees it with free(). */
char *json_print(const cJSON *j);
cJSON *json_dup(const cJSON *j);
/* Text byte for byte as Go's json.Encoder writes it (umoci writes every blob,
 * index.json, oci-layout, umoci.json and config.json this way): HTML-safe
 * escaping, a trailing newline, and with indent one tab per level and ": "
 * after keys (SetIndent("", "\t")).  Keys keep j's order.  The caller frees
 * the text with free(). */
char *json_encode(const cJSON *j, bool indent);

#endif
