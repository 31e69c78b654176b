/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The image model (ocitree/model.h): media types, descriptors, image
 * indexes, manifests and image configs, their lifecycles and their JSON in
 * both directions, plus the host platform new configs are stamped with.
 * json.h's helpers for the model's own types live here too, as the owner
 * of those types.
 */
#include "config.h"

#include <sys/utsname.h>

#include "json.h"
#include "ocitree/model.h"

/* ---- media types ---- */

OCITREE_EXPORT enum ocitree_doc_kind ocitree_media_type_kind(const char *mt)
{
	if (!mt)
		return OCITREE_DOC_OTHER;
	if (strcmp(mt, OCITREE_MT_OCI_INDEX) == 0 || strcmp(mt, OCITREE_MT_DOCKER_LIST) == 0)
		return OCITREE_DOC_INDEX;
	if (strcmp(mt, OCITREE_MT_OCI_MANIFEST) == 0 || strcmp(mt, OCITREE_MT_DOCKER_MANIFEST) == 0)
		return OCITREE_DOC_MANIFEST;
	if (strcmp(mt, OCITREE_MT_OCI_CONFIG) == 0 || strcmp(mt, OCITREE_MT_DOCKER_CONFIG) == 0)
		return OCITREE_DOC_CONFIG;
	if (ocitree_layer_compression(mt, &(enum ocitree_compression){0}, NULL) == 0)
		return OCITREE_DOC_LAYER;
	return OCITREE_DOC_OTHER;
}

static const struct {
	const char *mt;
	enum ocitree_compression comp;
} layer_types[] = {
	{OCITREE_MT_OCI_LAYER, OCITREE_COMPRESSION_NONE},
	{OCITREE_MT_OCI_LAYER_GZIP, OCITREE_COMPRESSION_GZIP},
	{OCITREE_MT_OCI_LAYER_ZSTD, OCITREE_COMPRESSION_ZSTD},
	{OCITREE_MT_OCI_LAYER_ND, OCITREE_COMPRESSION_NONE},
	{OCITREE_MT_OCI_LAYER_ND_GZIP, OCITREE_COMPRESSION_GZIP},
	{OCITREE_MT_OCI_LAYER_ND_ZSTD, OCITREE_COMPRESSION_ZSTD},
	{OCITREE_MT_DOCKER_LAYER_GZIP, OCITREE_COMPRESSION_GZIP},
	{OCITREE_MT_DOCKER_LAYER_FOREIGN_GZIP, OCITREE_COMPRESSION_GZIP},
	{OCITREE_MT_DOCKER_LAYER, OCITREE_COMPRESSION_NONE},
};

OCITREE_EXPORT int ocitree_layer_compression(const char *mt, enum ocitree_compression *comp, struct ocitree_error **err)
{
	for (size_t i = 0; mt && i < ARRAY_SIZE(layer_types); i++) {
		if (strcmp(mt, layer_types[i].mt) == 0) {
			*comp = layer_types[i].comp;
			return 0;
		}
	}
	return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "unsupported layer media type '%s'", mt ? mt : "");
}

OCITREE_EXPORT const char *ocitree_layer_media_type(enum ocitree_compression comp, bool nondistributable)
{
	switch (comp) {
	case OCITREE_COMPRESSION_GZIP:
		return nondistributable ? OCITREE_MT_OCI_LAYER_ND_GZIP : OCITREE_MT_OCI_LAYER_GZIP;
	case OCITREE_COMPRESSION_ZSTD:
		return nondistributable ? OCITREE_MT_OCI_LAYER_ND_ZSTD : OCITREE_MT_OCI_LAYER_ZSTD;
	case OCITREE_COMPRESSION_NONE:
	default:
		return nondistributable ? OCITREE_MT_OCI_LAYER_ND : OCITREE_MT_OCI_LAYER;
	}
}

OCITREE_EXPORT enum ocitree_compression ocitree_compression_resolve(enum ocitree_compression comp,
								   const struct ocitree_manifest *m)
{
	if (comp != OCITREE_COMPRESSION_AUTO)
		return comp;
	/* umoci 0.6, mutate.PickDefaultCompressAlgorithm: the newest layer
	 * whose compression is known and not none */
	for (size_t i = m ? m->n_layers : 0; i-- > 0;) {
		enum ocitree_compression c;
		if (ocitree_layer_compression(m->layers[i].media_type, &c, NULL) == 0 && c != OCITREE_COMPRESSION_NONE)
			return c;
	}
	return OCITREE_COMPRESSION_GZIP;
}

OCITREE_EXPORT int ocitree_compression_parse(const char *name, enum ocitree_compression *comp)
{
	if (strcmp(name, "gzip") == 0)
		*comp = OCITREE_COMPRESSION_GZIP;
	else if (strcmp(name, "auto") == 0)
		*comp = OCITREE_COMPRESSION_AUTO;
	else if (strcmp(name, "zstd") == 0)
		*comp = OCITREE_COMPRESSION_ZSTD;
	else if (strcmp(name, "none") == 0)
		*comp = OCITREE_COMPRESSION_NONE;
	else
		return -1;
	return 0;
}

OCITREE_EXPORT const char *ocitree_compression_name(enum ocitree_compression comp)
{
	switch (comp) {
	case OCITREE_COMPRESSION_GZIP:
		return "gzip";
	case OCITREE_COMPRESSION_ZSTD:
		return "zstd";
	case OCITREE_COMPRESSION_AUTO:
		return "auto";
	default:
		return "none";
	}
}

/* ---- strmap ---- */

static ssize_t strmap_find(const struct ocitree_strmap *m, const char *key)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->keys[i], key) == 0)
			return (ssize_t)i;
	return -1;
}

OCITREE_EXPORT const char *ocitree_strmap_get(const struct ocitree_strmap *m, const char *key)
{
	ssize_t i = strmap_find(m, key);
	return i < 0 ? NULL : m->values[i];
}

OCITREE_EXPORT void ocitree_strmap_set(struct ocitree_strmap *m, const char *key, const char *value)
{
	ssize_t i = strmap_find(m, key);
	if (i >= 0) {
		free(m->values[i]);
		m->values[i] = xstrdup(value);
		return;
	}
	if (m->n == m->cap) {
		size_t cap = m->cap;
		GROW(m->keys, cap, m->n + 1);
		GROW(m->values, m->cap, m->n + 1);
	}
	m->keys[m->n] = xstrdup(key);
	m->values[m->n] = xstrdup(value);
	m->n++;
}

OCITREE_EXPORT bool ocitree_strmap_remove(struct ocitree_strmap *m, const char *key)
{
	ssize_t i = strmap_find(m, key);
	if (i < 0)
		return false;
	free(m->keys[i]);
	free(m->values[i]);
	memmove(m->keys + i, m->keys + i + 1, (m->n - (size_t)i - 1) * sizeof(char *));
	memmove(m->values + i, m->values + i + 1, (m->n - (size_t)i - 1) * sizeof(char *));
	m->n--;
	return true;
}

OCITREE_EXPORT void ocitree_strmap_clear(struct ocitree_strmap *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->keys[i]);
		free(m->values[i]);
	}
	free(m->keys);
	free(m->values);
	memset(m, 0, sizeof(*m));
}

OCITREE_EXPORT void ocitree_strmap_copy(struct ocitree_strmap *dst, const struct ocitree_strmap *src)
{
	memset(dst, 0, sizeof(*dst));
	for (size_t i = 0; i < src->n; i++)
		ocitree_strmap_set(dst, src->keys[i], src->values[i]);
}

static char **strv_dup(char *const *v)
{
	if (!v)
		return NULL;
	size_t n = strv_len(v);
	char **r = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		r[i] = xstrdup(v[i]);
	return r;
}

/* ---- descriptors ---- */

static void platform_free(struct ocitree_platform *p)
{
	if (!p)
		return;
	free(p->architecture);
	free(p->os);
	free(p->os_version);
	free(p->variant);
	strv_free(p->os_features);
	free(p);
}

OCITREE_EXPORT void ocitree_descriptor_clear(struct ocitree_descriptor *d)
{
	free(d->media_type);
	strv_free(d->urls);
	ocitree_strmap_clear(&d->annotations);
	platform_free(d->platform);
	free(d->artifact_type);
	free(d->data);
	memset(d, 0, sizeof(*d));
}

OCITREE_EXPORT void ocitree_descriptor_copy(struct ocitree_descriptor *dst, const struct ocitree_descriptor *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->media_type = xstrdup_or_null(src->media_type);
	memcpy(dst->digest, src->digest, sizeof(dst->digest));
	dst->size = src->size;
	dst->urls = strv_dup(src->urls);
	ocitree_strmap_copy(&dst->annotations, &src->annotations);
	if (src->platform) {
		dst->platform = xcalloc(1, sizeof(*dst->platform));
		dst->platform->architecture = xstrdup_or_null(src->platform->architecture);
		dst->platform->os = xstrdup_or_null(src->platform->os);
		dst->platform->os_version = xstrdup_or_null(src->platform->os_version);
		dst->platform->variant = xstrdup_or_null(src->platform->variant);
		dst->platform->os_features = strv_dup(src->platform->os_features);
	}
	dst->artifact_type = xstrdup_or_null(src->artifact_type);
	dst->data = xstrdup_or_null(src->data);
}

OCITREE_EXPORT const char *ocitree_descriptor_ref_name(const struct ocitree_descriptor *d)
{
	return ocitree_strmap_get(&d->annotations, OCITREE_ANNOTATION_REF_NAME);
}

/* Digests are checked for shape only here: an entry with an algorithm ocitree
 * cannot verify must not stop it from reading the rest of a layout. */
static int digest_shape_ok(const char *s)
{
	const char *c = strchr(s, ':');
	if (!c || c == s || !c[1] || strlen(s) >= OCITREE_DIGEST_MAX)
		return 0;
	for (const char *p = s; p < c; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("+._-", *p)))
			return 0;
	for (const char *p = c + 1; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '=' ||
		      *p == '_' || *p == '-'))
			return 0;
	return 1;
}

static int descriptor_from_json(const cJSON *j, struct ocitree_descriptor *d, const char *what,
				struct ocitree_error **err)
{
	const char *s;
	memset(d, 0, sizeof(*d));
	if (!cJSON_IsObject(j))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: not an object", what);
	if (json_get_string(j, "mediaType", true, &s, what, err) < 0)
		goto fail;
	d->media_type = xstrdup(s);
	if (json_get_string(j, "digest", true, &s, what, err) < 0)
		goto fail;
	if (!digest_shape_ok(s)) {
		ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: malformed digest '%s'", what, s);
		goto fail;
	}
	snprintf(d->digest, sizeof(d->digest), "%s", s);
	if (json_get_int64(j, "size", true, &d->size, what, err) < 0)
		goto fail;
	if (d->size < 0) {
		ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: negative size", what);
		goto fail;
	}
	if (json_get_strv(j, "urls", &d->urls, what, err) < 0)
		goto fail;
	if (json_get_strmap(j, "annotations", &d->annotations, NULL, what, err) < 0)
		goto fail;
	if (json_get_string(j, "artifactType", false, &s, what, err) < 0)
		goto fail;
	d->artifact_type = xstrdup_or_null(s);
	if (json_get_string(j, "data", false, &s, what, err) < 0)
		goto fail;
	d->data = xstrdup_or_null(s);
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "platform");
	if (p && !cJSON_IsNull(p)) {
		if (!cJSON_IsObject(p)) {
			ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: 'platform' is not an object", what);
			goto fail;
		}
		d->platform = xcalloc(1, sizeof(*d->platform));
		_cleanup_free_ char *pw = xasprintf("%s: platform", what);
		if (json_get_string(p, "architecture", true, &s, pw, err) < 0)
			goto fail;
		d->platform->architecture = xstrdup(s);
		if (json_get_string(p, "os", true, &s, pw, err) < 0)
			goto fail;
		d->platform->os = xstrdup(s);
		if (json_get_string(p, "os.version", false, &s, pw, err) < 0)
			goto fail;
		d->platform->os_version = xstrdup_or_null(s);
		if (json_get_string(p, "variant", false, &s, pw, err) < 0)
			goto fail;
		d->platform->variant = xstrdup_or_null(s);
		if (json_get_strv(p, "os.features", &d->platform->os_features, pw, err) < 0)
			goto fail;
	}
	return 0;
fail:
	ocitree_descriptor_clear(d);
	return -1;
}

/* ---- JSON of the model's maps (json.h) ---- */

static int get_map(const cJSON *obj, const char *key, struct ocitree_strmap *out, bool *present, bool keys_only,
		   const char *what, struct ocitree_error **err)
{
	const cJSON *v = json_get(obj, key);
	if (present)
		*present = v != NULL;
	if (!v)
		return 0;
	if (!cJSON_IsObject(v))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: '%s' is not an object", what, key);
	const cJSON *e;
	cJSON_ArrayForEach(e, v)
	{
		if (keys_only) {
			ocitree_strmap_set(out, e->string, "");
		} else {
			if (!cJSON_IsString(e))
				return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: '%s' value of '%s' is not a string",
							  what, key, e->string);
			ocitree_strmap_set(out, e->string, e->valuestring);
		}
	}
	return 0;
}

int json_get_strmap(const cJSON *obj, const char *key, struct ocitree_strmap *out, bool *present, const char *what,
		    struct ocitree_error **err)
{
	return get_map(obj, key, out, present, false, what, err);
}

int json_get_keyset(const cJSON *obj, const char *key, struct ocitree_strmap *out, bool *present, const char *what,
		    struct ocitree_error **err)
{
	return get_map(obj, key, out, present, true, what, err);
}

static cJSON *map_to_json(const struct ocitree_strmap *m, bool keys_only)
{
	cJSON *o = json_object();
	const char **keys = xcalloc(m->n, sizeof(char *));
	for (size_t i = 0; i < m->n; i++)
		keys[i] = m->keys[i];
	qsort(keys, m->n, sizeof(char *), strcmp_p);
	for (size_t i = 0; i < m->n; i++)
		json_add(o, keys[i], keys_only ? json_object() : json_string(ocitree_strmap_get(m, keys[i])));
	free(keys);
	return o;
}

cJSON *json_strmap(const struct ocitree_strmap *m)
{
	return map_to_json(m, false);
}

cJSON *json_keyset(const struct ocitree_strmap *m)
{
	return map_to_json(m, true);
}

cJSON *json_descriptor(const struct ocitree_descriptor *d)
{
	cJSON *j = json_object();
	json_add(j, "mediaType", json_string(d->media_type));
	json_add(j, "digest", json_string(d->digest));
	json_add(j, "size", json_int64(d->size));
	if (d->urls)
		json_add(j, "urls", json_strv(d->urls));
	if (d->annotations.n)
		json_add(j, "annotations", json_strmap(&d->annotations));
	if (d->data)
		json_add(j, "data", json_string(d->data));
	if (d->platform) {
		cJSON *p = json_object();
		json_add(p, "architecture", json_string(d->platform->architecture));
		json_add(p, "os", json_string(d->platform->os));
		if (d->platform->os_version)
			json_add(p, "os.version", json_string(d->platform->os_version));
		if (d->platform->os_features)
			json_add(p, "os.features", json_strv(d->platform->os_features));
		if (d->platform->variant)
			json_add(p, "variant", json_string(d->platform->variant));
		json_add(j, "platform", p);
	}
	if (d->artifact_type)
		json_add(j, "artifactType", json_string(d->artifact_type));
	return j;
}

OCITREE_EXPORT char *ocitree_descriptor_to_json(const struct ocitree_descriptor *d)
{
	_cleanup_json_ cJSON *j = json_descriptor(d);
	return json_print(j);
}

static int descriptors_from_json(const cJSON *arr, const char *key, struct ocitree_descriptor **out, size_t *n,
				 const char *what, struct ocitree_error **err)
{
	*out = NULL;
	*n = 0;
	if (!arr || cJSON_IsNull(arr))
		return 0;
	if (!cJSON_IsArray(arr))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: '%s' is not an array", what, key);
	size_t count = (size_t)cJSON_GetArraySize(arr), i = 0;
	struct ocitree_descriptor *d = xcalloc(count ? count : 1, sizeof(*d));
	const cJSON *e;
	cJSON_ArrayForEach(e, arr)
	{
		_cleanup_free_ char *w = xasprintf("%s: %s[%zu]", what, key, i);
		if (descriptor_from_json(e, &d[i], w, err) < 0) {
			for (size_t k = 0; k < i; k++)
				ocitree_descriptor_clear(&d[k]);
			free(d);
			return -1;
		}
		i++;
	}
	*out = d;
	*n = count;
	return 0;
}

static int schema_version(const cJSON *j, int *out, const char *what, struct ocitree_error **err)
{
	int64_t v = 0;
	if (json_get_int64(j, "schemaVersion", true, &v, what, err) < 0)
		return -1;
	if (v != 2)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "%s: unsupported schemaVersion %jd", what,
					  (intmax_t)v);
	*out = (int)v;
	return 0;
}

static int subject_from_json(const cJSON *j, struct ocitree_descriptor **out, const char *what,
			     struct ocitree_error **err)
{
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "subject");
	*out = NULL;
	if (!s || cJSON_IsNull(s))
		return 0;
	struct ocitree_descriptor *d = xcalloc(1, sizeof(*d));
	_cleanup_free_ char *w = xasprintf("%s: subject", what);
	if (descriptor_from_json(s, d, w, err) < 0) {
		free(d);
		return -1;
	}
	*out = d;
	return 0;
}

static void descriptor_free(struct ocitree_descriptor *d)
{
	if (d) {
		ocitree_descriptor_clear(d);
		free(d);
	}
}

/* ---- manifest ---- */

OCITREE_EXPORT void ocitree_manifest_free(struct ocitree_manifest *m)
{
	if (!m)
		return;
	free(m->media_type);
	free(m->artifact_type);
	ocitree_descriptor_clear(&m->config);
	for (size_t i = 0; i < m->n_layers; i++)
		ocitree_descriptor_clear(&m->layers[i]);
	free(m->layers);
	descriptor_free(m->subject);
	ocitree_strmap_clear(&m->annotations);
	free(m);
}

/* The fields manifests and indexes begin with: schemaVersion, mediaType
 * (which must be of kind when present; kind_name in the error) and
 * artifactType. */
static int doc_head(const cJSON *j, enum ocitree_doc_kind kind, const char *kind_name, int *schema, char **media_type,
		    char **artifact_type, const char *what, struct ocitree_error **err)
{
	const char *s;
	if (schema_version(j, schema, what, err) < 0)
		return -1;
	if (json_get_string(j, "mediaType", false, &s, what, err) < 0)
		return -1;
	*media_type = xstrdup_or_null(s);
	if (s && ocitree_media_type_kind(s) != kind)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: mediaType '%s' is not %s", what, s, kind_name);
	if (json_get_string(j, "artifactType", false, &s, what, err) < 0)
		return -1;
	*artifact_type = xstrdup_or_null(s);
	return 0;
}

/* The fields they end with: subject and annotations. */
static int doc_tail(const cJSON *j, struct ocitree_descriptor **subject, struct ocitree_strmap *annotations,
		    const char *what, struct ocitree_error **err)
{
	if (subject_from_json(j, subject, what, err) < 0)
		return -1;
	return json_get_strmap(j, "annotations", annotations, NULL, what, err);
}

/* The same two ends in JSON, in the order the spec lists the fields. */
static void json_doc_head(cJSON *j, int schema, const char *media_type, const char *artifact_type)
{
	json_add(j, "schemaVersion", json_int64(schema));
	if (media_type)
		json_add(j, "mediaType", json_string(media_type));
	if (artifact_type)
		json_add(j, "artifactType", json_string(artifact_type));
}

static void json_doc_tail(cJSON *j, const struct ocitree_descriptor *subject, const struct ocitree_strmap *annotations)
{
	if (subject)
		json_add(j, "subject", json_descriptor(subject));
	if (annotations->n)
		json_add(j, "annotations", json_strmap(annotations));
}

static cJSON *json_descriptors(const struct ocitree_descriptor *d, size_t n)
{
	cJSON *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_append(arr, json_descriptor(&d[i]));
	return arr;
}

OCITREE_EXPORT struct ocitree_manifest *ocitree_manifest_parse(const char *json, size_t len,
							       struct ocitree_error **err)
{
	const char *what = "manifest";
	_cleanup_json_ cJSON *j = json_parse_object(json, len, what, err);
	if (!j)
		return NULL;
	struct ocitree_manifest *m = xcalloc(1, sizeof(*m));
	if (doc_head(j, OCITREE_DOC_MANIFEST, "a manifest", &m->schema_version, &m->media_type, &m->artifact_type, what,
		     err) < 0)
		goto fail;
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "config");
	if (!c || cJSON_IsNull(c)) {
		ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: missing 'config'", what);
		goto fail;
	}
	if (descriptor_from_json(c, &m->config, "manifest: config", err) < 0)
		goto fail;
	const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "layers");
	if (descriptors_from_json(l, "layers", &m->layers, &m->n_layers, what, err) < 0)
		goto fail;
	if (doc_tail(j, &m->subject, &m->annotations, what, err) < 0)
		goto fail;
	return m;
fail:
	ocitree_manifest_free(m);
	return NULL;
}

OCITREE_EXPORT char *ocitree_manifest_to_json(const struct ocitree_manifest *m)
{
	_cleanup_json_ cJSON *j = json_object();
	json_doc_head(j, m->schema_version ? m->schema_version : 2, m->media_type, m->artifact_type);
	json_add(j, "config", json_descriptor(&m->config));
	json_add(j, "layers", json_descriptors(m->layers, m->n_layers));
	json_doc_tail(j, m->subject, &m->annotations);
	return json_encode(j, false);
}

OCITREE_EXPORT void ocitree_manifest_add_layer(struct ocitree_manifest *m, const struct ocitree_descriptor *layer)
{
	m->layers = xrealloc(m->layers, (m->n_layers + 1) * sizeof(*m->layers));
	ocitree_descriptor_copy(&m->layers[m->n_layers++], layer);
}

/* ---- index ---- */

OCITREE_EXPORT struct ocitree_index *ocitree_index_new(void)
{
	struct ocitree_index *idx = xcalloc(1, sizeof(*idx));
	idx->schema_version = 2;
	idx->media_type = xstrdup(OCITREE_MT_OCI_INDEX);
	return idx;
}

OCITREE_EXPORT void ocitree_index_free(struct ocitree_index *idx)
{
	if (!idx)
		return;
	free(idx->media_type);
	free(idx->artifact_type);
	for (size_t i = 0; i < idx->n_manifests; i++)
		ocitree_descriptor_clear(&idx->manifests[i]);
	free(idx->manifests);
	descriptor_free(idx->subject);
	ocitree_strmap_clear(&idx->annotations);
	free(idx);
}

OCITREE_EXPORT struct ocitree_index *ocitree_index_parse(const char *json, size_t len, struct ocitree_error **err)
{
	const char *what = "image index";
	_cleanup_json_ cJSON *j = json_parse_object(json, len, what, err);
	if (!j)
		return NULL;
	struct ocitree_index *idx = xcalloc(1, sizeof(*idx));
	if (doc_head(j, OCITREE_DOC_INDEX, "an image index", &idx->schema_version, &idx->media_type,
		     &idx->artifact_type, what, err) < 0)
		goto fail;
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "manifests");
	if (!m) {
		ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: missing 'manifests'", what);
		goto fail;
	}
	if (descriptors_from_json(m, "manifests", &idx->manifests, &idx->n_manifests, what, err) < 0)
		goto fail;
	if (doc_tail(j, &idx->subject, &idx->annotations, what, err) < 0)
		goto fail;
	return idx;
fail:
	ocitree_index_free(idx);
	return NULL;
}

OCITREE_EXPORT char *ocitree_index_to_json(const struct ocitree_index *idx)
{
	_cleanup_json_ cJSON *j = json_object();
	json_doc_head(j, 2, idx->media_type, idx->artifact_type);
	json_add(j, "manifests", json_descriptors(idx->manifests, idx->n_manifests));
	json_doc_tail(j, idx->subject, &idx->annotations);
	return json_encode(j, false);
}

OCITREE_EXPORT ssize_t ocitree_index_find_ref(const struct ocitree_index *idx, const char *name)
{
	for (size_t i = 0; i < idx->n_manifests; i++) {
		const char *r = ocitree_descriptor_ref_name(&idx->manifests[i]);
		if (r && strcmp(r, name) == 0)
			return (ssize_t)i;
	}
	return -1;
}

OCITREE_EXPORT size_t ocitree_index_remove_ref(struct ocitree_index *idx, const char *name)
{
	size_t w = 0, dropped = 0;
	for (size_t i = 0; i < idx->n_manifests; i++) {
		const char *r = ocitree_descriptor_ref_name(&idx->manifests[i]);
		if (r && strcmp(r, name) == 0) {
			ocitree_descriptor_clear(&idx->manifests[i]);
			dropped++;
			continue;
		}
		if (w != i)
			idx->manifests[w] = idx->manifests[i];
		w++;
	}
	idx->n_manifests = w;
	return dropped;
}

OCITREE_EXPORT void ocitree_index_set_ref(struct ocitree_index *idx, const char *name,
					  const struct ocitree_descriptor *desc)
{
	struct ocitree_descriptor d;
	ocitree_descriptor_copy(&d, desc);
	ocitree_strmap_set(&d.annotations, OCITREE_ANNOTATION_REF_NAME, name);
	ssize_t pos = ocitree_index_find_ref(idx, name);
	if (pos >= 0) {
		ocitree_descriptor_clear(&idx->manifests[pos]);
		idx->manifests[pos] = d;
		/* drop any later duplicates of the same tag */
		size_t w = (size_t)pos + 1;
		for (size_t i = (size_t)pos + 1; i < idx->n_manifests; i++) {
			const char *r = ocitree_descriptor_ref_name(&idx->manifests[i]);
			if (r && strcmp(r, name) == 0) {
				ocitree_descriptor_clear(&idx->manifests[i]);
				continue;
			}
			idx->manifests[w++] = idx->manifests[i];
		}
		idx->n_manifests = w;
		return;
	}
	idx->manifests = xrealloc(idx->manifests, (idx->n_manifests + 1) * sizeof(*idx->manifests));
	idx->manifests[idx->n_manifests++] = d;
}

/* ---- config ---- */

OCITREE_EXPORT void ocitree_history_clear(struct ocitree_history *h)
{
	free(h->created);
	free(h->created_by);
	free(h->author);
	free(h->comment);
	memset(h, 0, sizeof(*h));
}

static void exec_config_clear(struct ocitree_exec_config *e)
{
	free(e->user);
	ocitree_strmap_clear(&e->exposed_ports);
	strv_free(e->env);
	strv_free(e->entrypoint);
	strv_free(e->cmd);
	ocitree_strmap_clear(&e->volumes);
	free(e->working_dir);
	ocitree_strmap_clear(&e->labels);
	free(e->stop_signal);
	memset(e, 0, sizeof(*e));
}

OCITREE_EXPORT void ocitree_config_free(struct ocitree_config *c)
{
	if (!c)
		return;
	free(c->created);
	free(c->author);
	free(c->architecture);
	free(c->os);
	free(c->variant);
	free(c->os_version);
	exec_config_clear(&c->config);
	free(c->rootfs_type);
	strv_free(c->diff_ids);
	for (size_t i = 0; i < c->n_history; i++)
		ocitree_history_clear(&c->history[i]);
	free(c->history);
	cJSON_Delete(c->json);
	free(c);
}

static int dup_string(const cJSON *j, const char *key, bool required, char **out, const char *what,
		      struct ocitree_error **err)
{
	const char *s;
	if (json_get_string(j, key, required, &s, what, err) < 0)
		return -1;
	*out = xstrdup_or_null(s);
	return 0;
}

OCITREE_EXPORT struct ocitree_config *ocitree_config_parse(const char *json, size_t len, struct ocitree_error **err)
{
	const char *what = "image config";
	cJSON *j = json_parse_object(json, len, what, err);
	if (!j)
		return NULL;
	struct ocitree_config *c = xcalloc(1, sizeof(*c));
	c->json = j;
	if (dup_string(j, "created", false, &c->created, what, err) < 0 ||
	    dup_string(j, "author", false, &c->author, what, err) < 0 ||
	    dup_string(j, "architecture", true, &c->architecture, what, err) < 0 ||
	    dup_string(j, "os", true, &c->os, what, err) < 0 ||
	    dup_string(j, "variant", false, &c->variant, what, err) < 0 ||
	    dup_string(j, "os.version", false, &c->os_version, what, err) < 0)
		goto fail;
	if (c->created) {
		struct timespec ts;
		if (ocitree_time_parse(c->created, &ts) < 0) {
			ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: 'created' is not an RFC 3339 time: '%s'",
					   what, c->created);
			goto fail;
		}
	}
	const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(j, "config");
	if (cfg && !cJSON_IsNull(cfg)) {
		const char *w = "image config: config";
		struct ocitree_exec_config *e = &c->config;
		if (!cJSON_IsObject(cfg)) {
			ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: 'config' is not an object", what);
			goto fail;
		}
		if (dup_string(cfg, "User", false, &e->user, w, err) < 0 ||
		    json_get_keyset(cfg, "ExposedPorts", &e->exposed_ports, &e->has_exposed_ports, w, err) < 0 ||
		    json_get_strv(cfg, "Env", &e->env, w, err) < 0 ||
		    json_get_strv(cfg, "Entrypoint", &e->entrypoint, w, err) < 0 ||
		    json_get_strv(cfg, "Cmd", &e->cmd, w, err) < 0 ||
		    json_get_keyset(cfg, "Volumes", &e->volumes, &e->has_volumes, w, err) < 0 ||
		    dup_string(cfg, "WorkingDir", false, &e->working_dir, w, err) < 0 ||
		    json_get_strmap(cfg, "Labels", &e->labels, &e->has_labels, w, err) < 0 ||
		    dup_string(cfg, "StopSignal", false, &e->stop_signal, w, err) < 0)
			goto fail;
	}
	const cJSON *rootfs = cJSON_GetObjectItemCaseSensitive(j, "rootfs");
	if (!rootfs || !cJSON_IsObject(rootfs)) {
		ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: missing 'rootfs'", what);
		goto fail;
	}
	if (dup_string(rootfs, "type", true, &c->rootfs_type, "image config: rootfs", err) < 0)
		goto fail;
	if (strcmp(c->rootfs_type, "layers") != 0) {
		ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "%s: unsupported rootfs type '%s'", what,
				   c->rootfs_type);
		goto fail;
	}
	if (json_get_strv(rootfs, "diff_ids", &c->diff_ids, "image config: rootfs", err) < 0)
		goto fail;
	if (!c->diff_ids)
		c->diff_ids = xcalloc(1, sizeof(char *));
	for (size_t i = 0; c->diff_ids[i]; i++) {
		if (ocitree_digest_check(c->diff_ids[i], err) < 0) {
			ocitree_error_prefix(err, "%s: rootfs.diff_ids[%zu]", what, i);
			goto fail;
		}
	}
	const cJSON *hist = cJSON_GetObjectItemCaseSensitive(j, "history");
	if (hist && !cJSON_IsNull(hist)) {
		if (!cJSON_IsArray(hist)) {
			ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: 'history' is not an array", what);
			goto fail;
		}
		size_t n = (size_t)cJSON_GetArraySize(hist);
		c->history = xcalloc(n ? n : 1, sizeof(*c->history));
		const cJSON *h;
		cJSON_ArrayForEach(h, hist)
		{
			_cleanup_free_ char *w = xasprintf("image config: history[%zu]", c->n_history);
			struct ocitree_history *hh = &c->history[c->n_history++];
			if (!cJSON_IsObject(h)) {
				ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: not an object", w);
				goto fail;
			}
			if (dup_string(h, "created", false, &hh->created, w, err) < 0 ||
			    dup_string(h, "created_by", false, &hh->created_by, w, err) < 0 ||
			    dup_string(h, "author", false, &hh->author, w, err) < 0 ||
			    dup_string(h, "comment", false, &hh->comment, w, err) < 0 ||
			    json_get_bool(h, "empty_layer", &hh->empty_layer, w, err) < 0)
				goto fail;
		}
	}
	return c;
fail:
	ocitree_config_free(c);
	return NULL;
}

OCITREE_EXPORT const char *ocitree_host_architecture(void)
{
	static const struct {
		const char *uname, *oci;
	} map[] = {
		{"x86_64", "amd64"},  {"i386", "386"},	     {"i486", "386"},	  {"i586", "386"},
		{"i686", "386"},      {"aarch64", "arm64"},  {"armv7l", "arm"},	  {"armv6l", "arm"},
		{"armv5tel", "arm"},  {"ppc64le", "ppc64le"}, {"ppc64", "ppc64"},  {"s390x", "s390x"},
		{"riscv64", "riscv64"}, {"mips64", "mips64le"}, {"loongarch64", "loong64"},
	};
	static char machine[65];
	struct utsname u;
	if (uname(&u) < 0)
		return "amd64";
	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (strcmp(u.machine, map[i].uname) == 0)
			return map[i].oci;
	snprintf(machine, sizeof(machine), "%s", u.machine);
	return machine;
}

OCITREE_EXPORT const char *ocitree_host_variant(void)
{
	const char *a = ocitree_host_architecture();
	if (strcmp(a, "arm64") == 0)
		return "v8";
	return NULL;
}

OCITREE_EXPORT struct ocitree_config *ocitree_config_new(void)
{
	struct ocitree_config *c = xcalloc(1, sizeof(*c));
	struct timespec now = ocitree_time_now();
	c->created = ocitree_time_format(&now);
	c->architecture = xstrdup(ocitree_host_architecture());
	c->os = xstrdup("linux");
	c->rootfs_type = xstrdup("layers");
	c->diff_ids = xcalloc(1, sizeof(char *));
	c->json = json_object();
	return c;
}

/* Go's omitempty: an empty string is left out like an absent one. */
static cJSON *opt_string(const char *s)
{
	return s && *s ? json_string(s) : NULL;
}

/* A time as umoci writes it after reading it into a time.Time; text that
 * does not parse is kept as it is. */
static cJSON *opt_time(const char *s)
{
	if (!s)
		return NULL;
	_cleanup_free_ char *t = ocitree_time_canonical(s);
	return json_string(t ? t : s);
}

static cJSON *opt_strv(char *const *v)
{
	return v && v[0] ? json_strv(v) : NULL;
}

/* Move item (when not NULL) to the end of obj, which is its place in Go's
 * struct order when the keys are added in that order. */
static void put(cJSON *obj, const char *key, cJSON *item)
{
	cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
	if (item)
		json_add(obj, key, item);
}

/* Keys of from that to does not have yet, appended in from's order. */
static void put_rest(cJSON *to, const cJSON *from)
{
	const cJSON *item;
	cJSON_ArrayForEach(item, from)
	{
		if (!cJSON_GetObjectItemCaseSensitive(to, item->string))
			json_add(to, item->string, json_dup(item));
	}
}

OCITREE_EXPORT char *ocitree_config_to_json(const struct ocitree_config *c)
{
	_cleanup_json_ cJSON *j = c->json ? json_dup(c->json) : json_object();
	/* The fields umoci knows come first, in the order and with the
	 * omitempty rules of image-spec's Go structs, so that an image both
	 * tools edit the same way gets the same bytes; fields it does not
	 * know (Docker's Healthcheck, ...) are kept after them, where umoci
	 * would drop them. */
	_cleanup_json_ cJSON *rebuilt = json_object();
	put(rebuilt, "created", opt_time(c->created));
	put(rebuilt, "author", opt_string(c->author));
	put(rebuilt, "architecture", json_string(c->architecture));
	put(rebuilt, "os", json_string(c->os));
	put(rebuilt, "os.version", opt_string(c->os_version));
	const cJSON *features = cJSON_GetObjectItemCaseSensitive(j, "os.features");
	put(rebuilt, "os.features", cJSON_IsArray(features) && cJSON_GetArraySize(features) ? json_dup(features) : NULL);
	put(rebuilt, "variant", opt_string(c->variant));

	const cJSON *orig_cfg = cJSON_GetObjectItemCaseSensitive(j, "config");
	cJSON *cfg = json_object();
	const struct ocitree_exec_config *e = &c->config;
	put(cfg, "User", opt_string(e->user));
	put(cfg, "ExposedPorts", e->exposed_ports.n ? json_keyset(&e->exposed_ports) : NULL);
	put(cfg, "Env", opt_strv(e->env));
	put(cfg, "Entrypoint", opt_strv(e->entrypoint));
	put(cfg, "Cmd", opt_strv(e->cmd));
	put(cfg, "Volumes", e->volumes.n ? json_keyset(&e->volumes) : NULL);
	put(cfg, "WorkingDir", opt_string(e->working_dir));
	put(cfg, "Labels", e->labels.n ? json_strmap(&e->labels) : NULL);
	put(cfg, "StopSignal", opt_string(e->stop_signal));
	if (cJSON_IsObject(orig_cfg)) {
		const cJSON *ae = cJSON_GetObjectItemCaseSensitive(orig_cfg, "ArgsEscaped");
		put(cfg, "ArgsEscaped", cJSON_IsTrue(ae) ? json_bool(true) : NULL);
		/* the modelled keys this config left out stay out */
		static const char *const known[] = {"User",	  "ExposedPorts", "Env",    "Entrypoint", "Cmd",
						    "Volumes",	  "WorkingDir",	  "Labels", "StopSignal", "ArgsEscaped"};
		const cJSON *item;
		cJSON_ArrayForEach(item, orig_cfg)
		{
			bool modelled = false;
			for (size_t i = 0; i < ARRAY_SIZE(known); i++)
				modelled |= strcmp(item->string, known[i]) == 0;
			if (!modelled)
				json_add(cfg, item->string, json_dup(item));
		}
	}
	json_add(rebuilt, "config", cfg);

	const cJSON *orig_rootfs = cJSON_GetObjectItemCaseSensitive(j, "rootfs");
	cJSON *rootfs = json_object();
	json_add(rootfs, "type", json_string(c->rootfs_type ? c->rootfs_type : "layers"));
	json_add(rootfs, "diff_ids", json_strv(c->diff_ids));
	if (cJSON_IsObject(orig_rootfs))
		put_rest(rootfs, orig_rootfs);
	json_add(rebuilt, "rootfs", rootfs);

	if (c->n_history) {
		cJSON *hist = json_array();
		for (size_t i = 0; i < c->n_history; i++) {
			const struct ocitree_history *h = &c->history[i];
			cJSON *o = json_object();
			put(o, "created", opt_time(h->created));
			put(o, "created_by", opt_string(h->created_by));
			put(o, "author", opt_string(h->author));
			put(o, "comment", opt_string(h->comment));
			put(o, "empty_layer", h->empty_layer ? json_bool(true) : NULL);
			json_append(hist, o);
		}
		json_add(rebuilt, "history", hist);
	}
	/* then whatever else the original held, in its order; a modelled
	 * key left out above (empty, or cleared) stays out */
	static const char *const modelled[] = {"created", "author", "architecture", "os",      "os.version",
					       "os.features", "variant", "config",	 "rootfs", "history"};
	cJSON *item;
	cJSON_ArrayForEach(item, j)
	{
		bool known = false;
		for (size_t i = 0; i < ARRAY_SIZE(modelled); i++)
			known |= strcmp(item->string, modelled[i]) == 0;
		if (!known)
			json_add(rebuilt, item->string, json_dup(item));
	}
	return json_encode(rebuilt, false);
}

OCITREE_EXPORT void ocitree_config_add_diff_id(struct ocitree_config *c, const char *diff_id)
{
	size_t n = strv_len(c->diff_ids);
	c->diff_ids = xrealloc(c->diff_ids, (n + 2) * sizeof(char *));
	c->diff_ids[n] = xstrdup(diff_id);
	c->diff_ids[n + 1] = NULL;
}

OCITREE_EXPORT void ocitree_config_add_history(struct ocitree_config *c, const struct ocitree_history *h)
{
	c->history = xrealloc(c->history, (c->n_history + 1) * sizeof(*c->history));
	struct ocitree_history *d = &c->history[c->n_history++];
	d->created = xstrdup_or_null(h->created);
	d->created_by = xstrdup_or_null(h->created_by);
	d->author = xstrdup_or_null(h->author);
	d->comment = xstrdup_or_null(h->comment);
	d->empty_layer = h->empty_layer;
}

OCITREE_EXPORT void ocitree_config_set_env(struct ocitree_config *c, const char *name, const char *value)
{
	char *entry = xasprintf("%s=%s", name, value);
	size_t nl = strlen(name), n = strv_len(c->config.env);
	for (size_t i = 0; i < n; i++) {
		if (strncmp(c->config.env[i], name, nl) == 0 && c->config.env[i][nl] == '=') {
			free(c->config.env[i]);
			c->config.env[i] = entry;
			return;
		}
	}
	c->config.env = xrealloc(c->config.env, (n + 2) * sizeof(char *));
	c->config.env[n] = entry;
	c->config.env[n + 1] = NULL;
}
