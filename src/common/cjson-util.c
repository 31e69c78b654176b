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

char *json_utf8_sanitized(const char *s)
{
	size_t bad = 0, len = strlen(s);
	uint32_t r;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_decode(s + i, len - i, &r);
		i += n ? n : 1;
		bad += !n;
	}
	if (!bad)
		return NULL;
	char *out = cJSON_malloc(len + 2 * bad + 1), *w = out;
	check(out);
	for (size_t i = 0; i < len;) {
		size_t n = utf8_decode(s + i, len - i, &r);
		if (n) {
			memcpy(w, s + i, n);
			w += n;
			i += n;
		} else {
			memcpy(w, "\xef\xbf\xbd", 3);
			w += 3;
			i++;
		}
	}
	*w = '\0';
	return out;
}

/* Go's decoder replaces each byte of a string that is not UTF-8 by U+FFFD
 * (keys too); doing the same before anything looks at the document keeps
 * ocitree's reading of it Go's, duplicate keys included. */
static void sanitize_utf8(cJSON *j)
{
	for (cJSON *e = j; e; e = e->next) {
		char *fixed;
		if (e->string && !(e->type & cJSON_StringIsConst) && (fixed = json_utf8_sanitized(e->string))) {
			cJSON_free(e->string);
			e->string = fixed;
		}
		if (cJSON_IsString(e) && e->valuestring && (fixed = json_utf8_sanitized(e->valuestring))) {
			cJSON_free(e->valuestring);
			e->valuestring = fixed;
		}
		if (e->child)
			sanitize_utf8(e->child);
	}
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
	sanitize_utf8(j->child);
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

/* ---- Go's encoding/json output ---- */

/* A string as Go's json.Encoder writes it with its default HTML escaping:
 * <, > and & as \u003c..., U+2028/U+2029 escaped, a byte that is not UTF-8
 * replaced by \ufffd, \b \f \n \r \t in short form (Go >= 1.22), other
 * control bytes as \u00xx with lower-case hex. */
static void go_string(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	buf_puts(b, "\"");
	while (*p) {
		unsigned char c = *p;
		if (c < 0x80) {
			const char *esc = NULL;
			switch (c) {
			case '"':
				esc = "\\\"";
				break;
			case '\\':
				esc = "\\\\";
				break;
			case '\b':
				esc = "\\b";
				break;
			case '\f':
				esc = "\\f";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\r':
				esc = "\\r";
				break;
			case '\t':
				esc = "\\t";
				break;
			default:
				break;
			}
			if (esc) {
				buf_puts(b, esc);
			} else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
				char u[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf], '\0'};
				buf_puts(b, u);
			} else {
				buf_append(b, p, 1);
			}
			p++;
			continue;
		}
		uint32_t r;
		size_t n = utf8_decode((const char *)p, strnlen((const char *)p, 4), &r);
		if (!n) {
			buf_puts(b, "\\ufffd");
			p++;
			continue;
		}
		if (r == 0x2028 || r == 0x2029)
			buf_puts(b, r == 0x2028 ? "\\u2028" : "\\u2029");
		else
			buf_append(b, p, n);
		p += n;
	}
	buf_puts(b, "\"");
}

static void go_newline(struct buf *b, bool indent, int depth)
{
	if (!indent)
		return;
	buf_puts(b, "\n");
	for (int i = 0; i < depth; i++)
		buf_puts(b, "\t");
}

static void go_value(struct buf *b, const cJSON *j, bool indent, int depth)
{
	if (cJSON_IsObject(j) || cJSON_IsArray(j)) {
		bool obj = cJSON_IsObject(j);
		buf_puts(b, obj ? "{" : "[");
		const cJSON *e;
		bool first = true;
		cJSON_ArrayForEach(e, j)
		{
			if (!first)
				buf_puts(b, ",");
			first = false;
			go_newline(b, indent, depth + 1);
			if (obj) {
				go_string(b, e->string);
				buf_puts(b, indent ? ": " : ":");
			}
			go_value(b, e, indent, depth + 1);
		}
		/* Go's Indent leaves {} and [] on one line */
		if (!first)
			go_newline(b, indent, depth);
		buf_puts(b, obj ? "}" : "]");
	} else if (cJSON_IsString(j)) {
		go_string(b, j->valuestring);
	} else if (cJSON_IsRaw(j)) {
		buf_puts(b, j->valuestring);
	} else if (cJSON_IsTrue(j)) {
		buf_puts(b, "true");
	} else if (cJSON_IsFalse(j)) {
		buf_puts(b, "false");
	} else if (cJSON_IsNumber(j)) {
		double d = j->valuedouble;
		if (isfinite(d) && d == floor(d) && fabs(d) < 1e21) {
			buf_printf(b, "%.0f", d);
		} else {
			/* a fraction only survives from input we did not model;
			 * cJSON's shortest round-trip form is close enough */
			char *s = check(cJSON_PrintUnformatted(j));
			buf_puts(b, s);
			cJSON_free(s);
		}
	} else {
		buf_puts(b, "null");
	}
}

char *json_encode(const cJSON *j, bool indent)
{
	struct buf b = {0};
	go_value(&b, j, indent, 0);
	buf_puts(&b, "\n");
	return buf_steal(&b);
}

cJSON *json_dup(const cJSON *j)
{
	return check(cJSON_Duplicate(j, true));
}
