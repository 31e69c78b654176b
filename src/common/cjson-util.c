/* SPDX-License-Identifier: Apache-2.0 */
/* The cJSON helpers of cjson-util.h: see there why they are shared. */
#include "config.h"

#include <inttypes.h>
#include <math.h>

#include "cjson-util.h"

static void *check(void *p)
{
	return xcheck(p, "building JSON");
}

/* The first duplicated key in any object of j, or NULL.  Parsers disagree
 * on duplicates (cJSON keeps the first, Go's encoding/json the last), so a
 * document with them would mean different things to ocitree and to the
 * tools beside it: refuse it. */
static const char *find_duplicate_key(const cJSON *j)
{
	if (cJSON_IsObject(j)) {
		struct strset keys = {0};
		const cJSON *e;
		const char *dup = NULL;
		cJSON_ArrayForEach(e, j)
		{
			if (!strset_add(&keys, e->string)) {
				dup = e->string;
				break;
			}
		}
		strset_free(&keys);
		if (dup)
			return dup;
	}
	if (cJSON_IsObject(j) || cJSON_IsArray(j)) {
		const cJSON *e;
		cJSON_ArrayForEach(e, j)
		{
			const char *d = find_duplicate_key(e);
			if (d)
				return d;
		}
	}
	return NULL;
}

cJSON *json_parse_object(const char *data, size_t len, const char *what, struct ocitree_error **err)
{
	const char *end = NULL;
	if (memchr(data, '\0', len))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "parse %s: contains a NUL byte", what), NULL;
	cJSON *j = cJSON_ParseWithLengthOpts(data, len, &end, false);
	if (!j) {
		size_t off = end && end >= data && end <= data + len ? (size_t)(end - data) : 0;
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "parse %s: invalid JSON near byte %zu", what, off),
		       NULL;
	}
	/* only whitespace may follow the document */
	for (const char *p = end; p && p < data + len; p++) {
		if (!strchr(" \t\r\n", *p)) {
			cJSON_Delete(j);
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
						  "parse %s: unexpected data after the JSON document at byte %zu", what,
						  (size_t)(p - data)),
			       NULL;
		}
	}
	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "parse %s: not a JSON object", what), NULL;
	}
	const char *dup = find_duplicate_key(j);
	if (dup) {
		ocitree_error_setk(err, OCITREE_ERROR_INVALID, "parse %s: key '%.64s' appears twice in one object", what,
				   dup);
		cJSON_Delete(j);
		return NULL;
	}
	return j;
}

const cJSON *json_get(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	return v && !cJSON_IsNull(v) ? v : NULL;
}

int json_get_string(const cJSON *obj, const char *key, bool required, const char **out, const char *what,
		    struct ocitree_error **err)
{
	const cJSON *v = json_get(obj, key);
	*out = NULL;
	if (!v) {
		if (required)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: missing '%s'", what, key);
		return 0;
	}
	if (!cJSON_IsString(v))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: '%s' is not a string", what, key);
	*out = v->valuestring;
	return 0;
}

int json_get_int64(const cJSON *obj, const char *key, bool required, int64_t *out, const char *what,
		   struct ocitree_error **err)
{
	const cJSON *v = json_get(obj, key);
	if (!v) {
		if (required)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: missing '%s'", what, key);
		return 0;
	}
	double d = cJSON_GetNumberValue(v);
	if (!cJSON_IsNumber(v) || d != floor(d) || d < -9007199254740992.0 || d > 9007199254740992.0)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: '%s' is not an integer", what, key);
	*out = (int64_t)d;
	return 0;
}

int json_get_bool(const cJSON *obj, const char *key, bool *out, const char *what, struct ocitree_error **err)
{
	const cJSON *v = json_get(obj, key);
	*out = false;
	if (!v)
		return 0;
	if (!cJSON_IsBool(v))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: '%s' is not a boolean", what, key);
	*out = cJSON_IsTrue(v);
	return 0;
}

int json_get_strv(const cJSON *obj, const char *key, char ***out, const char *what, struct ocitree_error **err)
{
	const cJSON *v = json_get(obj, key);
	*out = NULL;
	if (!v)
		return 0;
	if (!cJSON_IsArray(v))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: '%s' is not an array", what, key);
	size_t n = (size_t)cJSON_GetArraySize(v), i = 0;
	char **r = xcalloc(n + 1, sizeof(char *));
	const cJSON *e;
	cJSON_ArrayForEach(e, v)
	{
		if (!cJSON_IsString(e)) {
			strv_free(r);
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: '%s' holds a non-string", what, key);
		}
		r[i++] = xstrdup(e->valuestring);
	}
	*out = r;
	return 0;
}

cJSON *json_object(void)
{
	return check(cJSON_CreateObject());
}

cJSON *json_array(void)
{
	return check(cJSON_CreateArray());
}

cJSON *json_string(const char *s)
{
	return check(cJSON_CreateString(s ? s : ""));
}

cJSON *json_int64(int64_t v)
{
	/* raw text: a cJSON number is a double, exact only up to 2^53 */
	char tmp[32];
	snprintf(tmp, sizeof(tmp), "%" PRId64, v);
	return json_raw(tmp);
}

cJSON *json_raw(const char *text)
{
	return check(cJSON_CreateRaw(text));
}

cJSON *json_bool(bool v)
{
	return check(cJSON_CreateBool(v));
}

cJSON *json_strv(char *const *v)
{
	cJSON *a = json_array();
	for (size_t i = 0; v && v[i]; i++)
		json_append(a, json_string(v[i]));
	return a;
}

void json_add(cJSON *obj, const char *key, cJSON *item)
{
	if (!cJSON_AddItemToObject(obj, key, item))
		check(NULL);
}

void json_set(cJSON *obj, const char *key, cJSON *item)
{
	if (cJSON_GetObjectItemCaseSensitive(obj, key)) {
		if (!cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item))
			check(NULL);
	} else {
		json_add(obj, key, item);
	}
}

void json_append(cJSON *arr, cJSON *item)
{
	if (!cJSON_AddItemToArray(arr, item))
		check(NULL);
}

char *json_print(const cJSON *j)
{
	char *s = check(cJSON_PrintUnformatted(j));
	/* cJSON allocates with its hooks (malloc by default); hand out a copy
	 * owned by plain malloc so callers can free() it */
	char *r = xstrdup(s);
	cJSON_free(s);
	return r;
}

cJSON *json_dup(const cJSON *j)
{
	return check(cJSON_Duplicate(j, true));
}
