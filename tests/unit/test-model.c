/* SPDX-License-Identifier: Apache-2.0 */
#include "config.h"

#include "ocitree/model.h"
#include "tap.h"
#include "util.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static struct ocitree_error *err;

static void reset(void)
{
	ocitree_error_free(err);
	err = NULL;
}

static struct ocitree_manifest *manifest(const char *json)
{
	reset();
	return ocitree_manifest_parse(json, strlen(json), &err);
}

static void test_manifest(void)
{
	struct ocitree_manifest *m = manifest(
		"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
		"\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"digest\":\"" D1
		"\",\"size\":7023},\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
		"\"digest\":\"" D2 "\",\"size\":32654,\"urls\":[\"https://x/y\"]}]}");
	ok(m != NULL, "a Docker schema 2 manifest parses");
	if (m) {
		is_int(m->n_layers, 1, "one layer");
		is_int(m->layers[0].size, 32654, "layer size");
		is_str(m->layers[0].urls[0], "https://x/y", "urls kept");
		is_int(ocitree_media_type_kind(m->config.media_type), OCITREE_DOC_CONFIG, "docker config media type");
		enum ocitree_compression c;
		ok(ocitree_layer_compression(m->layers[0].media_type, &c, NULL) == 0 && c == OCITREE_COMPRESSION_GZIP,
		   "docker gzip layer");
		char *j = ocitree_manifest_to_json(m);
		struct ocitree_manifest *m2 = manifest(j);
		ok(m2 && m2->n_layers == 1 && strcmp(m2->layers[0].digest, D2) == 0 && m2->config.size == 7023,
		   "a manifest survives a round trip");
		ocitree_manifest_free(m2);
		free(j);
	}
	ocitree_manifest_free(m);

	m = manifest("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
		     "\"digest\":\"" D1 "\",\"size\":2},\"layers\":[],\"annotations\":{\"b\":\"2\",\"a\":\"1\"},"
		     "\"subject\":{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D2
		     "\",\"size\":3},\"artifactType\":\"application/x.test\"}");
	ok(m && m->subject && m->artifact_type && m->annotations.n == 2, "subject, artifactType, annotations");
	if (m) {
		char *j = ocitree_manifest_to_json(m);
		ok(strstr(j, "\"annotations\":{\"a\":\"1\",\"b\":\"2\"}") != NULL, "annotations written with sorted keys");
		free(j);
	}
	ocitree_manifest_free(m);

	static const struct {
		const char *json, *want, *what;
	} bad[] = {
		{"{\"schemaVersion\":1}", "unsupported schemaVersion", "schema version 1 refused"},
		{"{\"schemaVersion\":2,\"layers\":[]}", "missing 'config'", "missing config"},
		{"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":-1}}",
		 "negative size", "negative size"},
		{"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:../x\",\"size\":1}}",
		 "malformed digest", "malformed digest"},
		{"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":\"1\"}}",
		 "'size' is not an integer", "size as a string"},
		{"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":1.5}}",
		 "'size' is not an integer", "fractional size"},
		{"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":1},\"layers\":{}}",
		 "'layers' is not an array", "layers as an object"},
		{"{\"schemaVersion\":2} garbage", "unexpected data", "trailing garbage"},
		{"[1,2]", "not a JSON object", "an array document"},
		{"{\"schemaVersion\":2,", "invalid JSON", "truncated JSON"},
		{"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\"}", "is not a manifest",
		 "an index media type in a manifest"},
		{"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":1,\"size\":2}}",
		 "key 'size' appears twice", "a duplicated key (parsers disagree on which wins)"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		m = manifest(bad[i].json);
		ok(!m && err && err->kind != OCITREE_ERROR_FAILED && strstr(err->msg, bad[i].want), "manifest: %s",
		   bad[i].what);
		if (err && !strstr(err->msg, bad[i].want))
			diag("message: %s", err->msg);
		ocitree_manifest_free(m);
	}
	reset();
	ok(ocitree_manifest_parse("{\"a\":\"\0\"}", 10, &err) == NULL && strstr(err->msg, "NUL"),
	   "a NUL byte is refused");
	reset();
}

static void test_descriptor_json(void)
{
	struct ocitree_descriptor d = {.media_type = (char *)OCITREE_MT_OCI_MANIFEST, .size = 9007199254740993};
	snprintf(d.digest, sizeof(d.digest), "%s", D1);
	char *j = ocitree_descriptor_to_json(&d);
	is_str(j, "{\"mediaType\":\"" OCITREE_MT_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":9007199254740993}",
	       "a descriptor as JSON, its size exact beyond 2^53");
	free(j);
}

static void test_index(void)
{
	const char *json =
		"{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
		"\"digest\":\"" D1 "\",\"size\":10,\"annotations\":{\"org.opencontainers.image.ref.name\":\"a\"},"
		"\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}},"
		"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D2 "\",\"size\":11}]}";
	struct ocitree_index *idx = ocitree_index_parse(json, strlen(json), &err);
	ok(idx && idx->n_manifests == 2, "an index parses");
	if (!idx)
		return;
	ok(idx->manifests[0].platform && strcmp(idx->manifests[0].platform->variant, "v8") == 0, "platform variant");
	is_int(ocitree_index_find_ref(idx, "a"), 0, "find a tag");
	is_int(ocitree_index_find_ref(idx, "b"), -1, "a missing tag");
	ocitree_index_set_ref(idx, "b", &idx->manifests[1]);
	is_int(idx->n_manifests, 3, "a new tag adds an entry");
	ocitree_index_set_ref(idx, "a", &idx->manifests[1]);
	ok(idx->n_manifests == 3 && strcmp(idx->manifests[0].digest, D2) == 0, "retagging replaces in place");
	is_int(ocitree_index_remove_ref(idx, "a"), 1, "remove a tag");
	is_int(ocitree_index_remove_ref(idx, "a"), 0, "removing again removes nothing");
	char *out = ocitree_index_to_json(idx);
	struct ocitree_index *idx2 = ocitree_index_parse(out, strlen(out), &err);
	ok(idx2 && idx2->n_manifests == 2 && ocitree_index_find_ref(idx2, "b") == 1, "index round trip");
	ocitree_index_free(idx2);
	free(out);
	ocitree_index_free(idx);
	reset();
	idx = ocitree_index_parse("{\"schemaVersion\":2}", 19, &err);
	ok(!idx && strstr(err->msg, "missing 'manifests'"), "an index without manifests is refused");
	reset();
}

static void test_config(void)
{
	const char *json = "{\"created\":\"2024-01-02T03:04:05Z\",\"architecture\":\"amd64\",\"os\":\"linux\","
			   "\"docker_version\":\"20.10\",\"config\":{\"Env\":[\"PATH=/bin\",\"A=1\"],"
			   "\"Cmd\":null,\"ExposedPorts\":{\"80/tcp\":{}},\"Healthcheck\":{\"Test\":[\"NONE\"]}},"
			   "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1 "\"]},"
			   "\"history\":[{\"created_by\":\"x\",\"empty_layer\":true},{\"created_by\":\"y\"}]}";
	struct ocitree_config *c = ocitree_config_parse(json, strlen(json), &err);
	ok(c != NULL, "a config parses");
	if (!c)
		return;
	ok(c->config.cmd == NULL, "null Cmd is absent");
	is_int(c->n_history, 2, "history entries");
	ok(c->history[0].empty_layer && !c->history[1].empty_layer, "empty_layer flags");
	ocitree_config_set_env(c, "A", "2");
	ocitree_config_set_env(c, "B", "3");
	is_str(c->config.env[1], "A=2", "set_env replaces a variable");
	is_str(c->config.env[2], "B=3", "set_env appends a new one");
	ocitree_config_add_diff_id(c, D2);
	char *out = ocitree_config_to_json(c);
	ok(strstr(out, "\"docker_version\":\"20.10\"") && strstr(out, "\"Healthcheck\""),
	   "fields ocitree does not model are kept");
	ok(strstr(out, "\"diff_ids\":[\"" D1 "\",\"" D2 "\"]") != NULL, "diff_ids appended");
	ok(strstr(out, "\"ExposedPorts\":{\"80/tcp\":{}}") != NULL, "exposed ports written as a set");
	struct ocitree_config *c2 = ocitree_config_parse(out, strlen(out), &err);
	ok(c2 && strv_len(c2->diff_ids) == 2 && c2->n_history == 2, "config round trip");
	ocitree_config_free(c2);
	free(out);
	ocitree_config_free(c);

	static const struct {
		const char *json, *want;
	} bad[] = {
		{"{\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}", "missing 'architecture'"},
		{"{\"architecture\":\"amd64\",\"os\":\"linux\"}", "missing 'rootfs'"},
		{"{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"x\"]}}",
		 "diff_ids[0]"},
		{"{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"last week\",\"rootfs\":{\"type\":\"layers\"}}",
		 "not an RFC 3339 time"},
		{"{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[1]},\"rootfs\":{\"type\":\"layers\"}}",
		 "'Env' holds a non-string"},
		{"{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\"},\"history\":{}}",
		 "'history' is not an array"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		reset();
		c = ocitree_config_parse(bad[i].json, strlen(bad[i].json), &err);
		ok(!c && err && strstr(err->msg, bad[i].want), "config refused: %s", bad[i].want);
		if (err && !strstr(err->msg, bad[i].want))
			diag("message: %s", err->msg);
		ocitree_config_free(c);
	}
	reset();
	c = ocitree_config_new();
	ok(c && strcmp(c->os, "linux") == 0 && c->architecture && c->diff_ids && !c->diff_ids[0],
	   "a new config is for linux and has no layers");
	ocitree_config_free(c);
}

static void test_media_types(void)
{
	enum ocitree_compression c;
	ok(ocitree_layer_compression(OCITREE_MT_OCI_LAYER_ZSTD, &c, NULL) == 0 && c == OCITREE_COMPRESSION_ZSTD, "zstd");
	ok(ocitree_layer_compression(OCITREE_MT_OCI_LAYER_ND_GZIP, &c, NULL) == 0 && c == OCITREE_COMPRESSION_GZIP,
	   "non-distributable gzip");
	ok(ocitree_layer_compression("application/x-foo", &c, &err) < 0 && err->kind == OCITREE_ERROR_UNSUPPORTED,
	   "an unknown layer type is unsupported");
	reset();
	is_int(ocitree_media_type_kind(OCITREE_MT_DOCKER_LIST), OCITREE_DOC_INDEX, "docker list is an index");
	is_str(ocitree_layer_media_type(OCITREE_COMPRESSION_NONE, false), OCITREE_MT_OCI_LAYER, "plain tar type");
}

int main(void)
{
	test_manifest();
	test_descriptor_json();
	test_index();
	test_config();
	test_media_types();
	return done_testing();
}
