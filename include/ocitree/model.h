/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The image model: descriptors, image indexes, manifests and image configs,
 * parsed from and written to JSON.  OCI and Docker schema 2 media types are
 * both read; ocitree writes OCI.
 *
 * Ownership: every struct owns its strings and arrays; *_free() releases
 * everything and accepts NULL.  Parsers validate types and required fields
 * and return OCITREE_ERROR_INVALID errors naming the field.
 */
#ifndef OCITREE_MODEL_H
#define OCITREE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "ocitree/digest.h"
#include "ocitree/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OCITREE_MT_OCI_LAYOUT_VERSION "1.0.0"
#define OCITREE_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define OCITREE_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCITREE_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define OCITREE_MT_OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define OCITREE_MT_OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define OCITREE_MT_OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define OCITREE_MT_OCI_LAYER_ND "application/vnd.oci.image.layer.nondistributable.v1.tar"
#define OCITREE_MT_OCI_LAYER_ND_GZIP "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
#define OCITREE_MT_OCI_LAYER_ND_ZSTD "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
#define OCITREE_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define OCITREE_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define OCITREE_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define OCITREE_MT_DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define OCITREE_MT_DOCKER_LAYER_FOREIGN_GZIP "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
#define OCITREE_MT_DOCKER_LAYER "application/vnd.docker.image.rootfs.diff.tar"

#define OCITREE_ANNOTATION_REF_NAME "org.opencontainers.image.ref.name"

/* Limits on JSON documents read from a layout (registries use 4 MiB). */
#define OCITREE_MAX_INDEX_SIZE (4u << 20)
#define OCITREE_MAX_MANIFEST_SIZE (4u << 20)
#define OCITREE_MAX_CONFIG_SIZE (16u << 20)

enum ocitree_doc_kind {
	OCITREE_DOC_OTHER = 0,
	OCITREE_DOC_INDEX,    /* OCI image index or Docker manifest list */
	OCITREE_DOC_MANIFEST, /* OCI or Docker schema 2 manifest */
	OCITREE_DOC_CONFIG,   /* OCI or Docker image config */
	OCITREE_DOC_LAYER,    /* any tar layer media type */
};

enum ocitree_compression {
	OCITREE_COMPRESSION_NONE = 0,
	OCITREE_COMPRESSION_GZIP,
	OCITREE_COMPRESSION_ZSTD,
	/* for writers only: the compression of the image's most recent
	 * compressed layer, gzip when it has none (never none: nothing gains
	 * from an uncompressed blob), as umoci 0.6 picks it */
	OCITREE_COMPRESSION_AUTO,
};

/* What a media type names.  NULL is OCITREE_DOC_OTHER. */
enum ocitree_doc_kind ocitree_media_type_kind(const char *media_type);

/* The compression of a layer media type; -1 (OCITREE_ERROR_UNSUPPORTED)
 * for anything that is not a tar layer ocitree can read. */
int ocitree_layer_compression(const char *media_type, enum ocitree_compression *comp, struct ocitree_error **err);

struct ocitree_manifest;
/* comp, or for OCITREE_COMPRESSION_AUTO the compression a new layer on top
 * of m gets (m may be NULL: gzip). */
enum ocitree_compression ocitree_compression_resolve(enum ocitree_compression comp, const struct ocitree_manifest *m);

/* The OCI layer media type for a compression. */
const char *ocitree_layer_media_type(enum ocitree_compression comp, bool nondistributable);

/* Parse "gzip", "zstd", "none" (and "auto" as gzip). */
int ocitree_compression_parse(const char *name, enum ocitree_compression *comp);
const char *ocitree_compression_name(enum ocitree_compression comp);

/* ---- string map (annotations, labels) ----
 * Keeps insertion order; written to JSON with keys sorted, as Go does. */
struct ocitree_strmap {
	size_t n, cap;
	char **keys;
	char **values;
};
const char *ocitree_strmap_get(const struct ocitree_strmap *m, const char *key);
void ocitree_strmap_set(struct ocitree_strmap *m, const char *key, const char *value);
bool ocitree_strmap_remove(struct ocitree_strmap *m, const char *key);
void ocitree_strmap_clear(struct ocitree_strmap *m);
void ocitree_strmap_copy(struct ocitree_strmap *dst, const struct ocitree_strmap *src);

struct ocitree_platform {
	char *architecture;
	char *os;
	char *os_version; /* NULL when absent */
	char *variant;    /* NULL when absent */
	char **os_features; /* NULL-terminated; NULL when absent */
};

struct ocitree_descriptor {
	char *media_type;
	char digest[OCITREE_DIGEST_MAX];
	int64_t size;
	char **urls; /* NULL-terminated; NULL when absent */
	struct ocitree_strmap annotations;
	struct ocitree_platform *platform; /* NULL when absent */
	char *artifact_type; /* NULL when absent */
	char *data; /* base64 text as found; NULL when absent */
};

/* Release what d owns and zero it (d itself is not freed). */
void ocitree_descriptor_clear(struct ocitree_descriptor *d);
/* Deep copy into dst (which is overwritten, not cleared). */
void ocitree_descriptor_copy(struct ocitree_descriptor *dst, const struct ocitree_descriptor *src);
/* The tag of a descriptor in index.json, or NULL. */
const char *ocitree_descriptor_ref_name(const struct ocitree_descriptor *d);
/* Compact JSON, as the image spec writes a descriptor; the caller frees the
 * result. */
char *ocitree_descriptor_to_json(const struct ocitree_descriptor *d);

struct ocitree_manifest {
	int schema_version;
	char *media_type;    /* NULL when absent (allowed by OCI) */
	char *artifact_type; /* NULL when absent */
	struct ocitree_descriptor config;
	struct ocitree_descriptor *layers;
	size_t n_layers;
	struct ocitree_descriptor *subject; /* NULL when absent */
	struct ocitree_strmap annotations;
};

struct ocitree_manifest *ocitree_manifest_parse(const char *json, size_t len, struct ocitree_error **err);
/* Compact JSON ending in a newline, byte for byte what umoci (Go's
 * json.Encoder) writes for the same manifest; the caller frees the result. */
char *ocitree_manifest_to_json(const struct ocitree_manifest *m);
void ocitree_manifest_free(struct ocitree_manifest *m);
/* Append a copy of layer. */
void ocitree_manifest_add_layer(struct ocitree_manifest *m, const struct ocitree_descriptor *layer);

struct ocitree_index {
	int schema_version;
	char *media_type;    /* NULL when absent */
	char *artifact_type; /* NULL when absent */
	struct ocitree_descriptor *manifests;
	size_t n_manifests;
	struct ocitree_descriptor *subject; /* NULL when absent */
	struct ocitree_strmap annotations;
};

/* An empty OCI index (schemaVersion 2, no manifests). */
struct ocitree_index *ocitree_index_new(void);
struct ocitree_index *ocitree_index_parse(const char *json, size_t len, struct ocitree_error **err);
/* As ocitree_manifest_to_json(). */
char *ocitree_index_to_json(const struct ocitree_index *idx);
void ocitree_index_free(struct ocitree_index *idx);
/* Entries of idx tagged name, as indexes into idx->manifests; returns the
 * first match or -1. */
ssize_t ocitree_index_find_ref(const struct ocitree_index *idx, const char *name);
/* Point tag name at a copy of desc: replaces every entry tagged name by one
 * entry (at the position of the first), or appends. */
void ocitree_index_set_ref(struct ocitree_index *idx, const char *name, const struct ocitree_descriptor *desc);
/* Drop every entry tagged name; returns how many were dropped. */
size_t ocitree_index_remove_ref(struct ocitree_index *idx, const char *name);

/* ---- image config ---- */

struct ocitree_history {
	char *created;    /* RFC 3339, NULL when absent */
	char *created_by; /* NULL when absent */
	char *author;     /* NULL when absent */
	char *comment;    /* NULL when absent */
	bool empty_layer;
};

void ocitree_history_clear(struct ocitree_history *h);

/* Times ("created" of configs and history entries) are RFC 3339 with an
 * optional fraction of a second.  Parse one into *out (UTC); -1 for
 * anything else (a time without zone, month 13, trailing text...). */
int ocitree_time_parse(const char *s, struct timespec *out);
/* Format ts as ocitree writes times: UTC, with nanoseconds trimmed of
 * trailing zeros (as Go's time.RFC3339Nano).  The caller frees the result. */
char *ocitree_time_format(const struct timespec *ts);
/* s as umoci writes a time it was given (Go's time.Parse(RFC3339Nano)
 * then MarshalJSON): the offset kept as given ("+11:00" stays), a zero
 * offset written "Z", the fraction cut to nanoseconds and trimmed of
 * trailing zeros.  NULL when Go would refuse s: lower-case 't' or 'z', a
 * space for 'T', second 60, a day the month does not have.  The caller
 * frees the result. */
char *ocitree_time_canonical(const char *s);
/* The time to stamp new objects with: SOURCE_DATE_EPOCH when it is set to a
 * valid number of seconds (reproducible builds), else now. */
struct timespec ocitree_time_now(void);

/* The runtime part ("config") of an image config.  Arrays are
 * NULL-terminated and NULL when absent (or null in the JSON); maps and
 * sets keep their keys (sets have empty values). */
struct ocitree_exec_config {
	char *user;
	struct ocitree_strmap exposed_ports; /* keys only */
	char **env;
	char **entrypoint;
	char **cmd;
	struct ocitree_strmap volumes; /* keys only */
	char *working_dir;
	struct ocitree_strmap labels;
	char *stop_signal;
	bool has_exposed_ports, has_volumes, has_labels;
};

struct ocitree_config {
	char *created; /* NULL when absent */
	char *author;
	char *architecture;
	char *os;
	char *variant;
	char *os_version;
	struct ocitree_exec_config config;
	char *rootfs_type; /* "layers" */
	char **diff_ids;   /* NULL-terminated, never NULL after parse */
	struct ocitree_history *history;
	size_t n_history;
	void *json; /* the parsed document (cJSON *), for fields not modelled */
};

struct ocitree_config *ocitree_config_parse(const char *json, size_t len, struct ocitree_error **err);
/* A new config for an empty image of the host platform. */
struct ocitree_config *ocitree_config_new(void);
/* Compact JSON ending in a newline: the modelled fields in the order and
 * with the omitempty rules of image-spec's Go structs (what umoci writes),
 * then the fields the original held that are not modelled, in its order. */
char *ocitree_config_to_json(const struct ocitree_config *c);
void ocitree_config_free(struct ocitree_config *c);
void ocitree_config_add_diff_id(struct ocitree_config *c, const char *diff_id);
/* Append a copy of h. */
void ocitree_config_add_history(struct ocitree_config *c, const struct ocitree_history *h);
/* Set or replace "NAME=value" in the environment. */
void ocitree_config_set_env(struct ocitree_config *c, const char *name, const char *value);

/* The host's platform in OCI terms ("amd64", "arm64", ... and "linux"). */
const char *ocitree_host_architecture(void);
const char *ocitree_host_variant(void); /* NULL when none */

#ifdef __cplusplus
}
#endif
#endif
