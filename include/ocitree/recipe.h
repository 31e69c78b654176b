/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recipes of `ocitree build`: stacker's stacker.yaml format (see
 * ocitree-recipe(5)), read with libyaml into a model, and the build plan
 * that orders the images of a recipe and of its prerequisites.
 *
 * A recipe is a YAML map of image names to image definitions, plus an
 * optional `config` key.  Substitutions (`${{VAR}}`, `${{VAR:default}}`)
 * are made in the text before it is parsed, as stacker does.  Every error
 * names the file, the line and column, and what was wrong:
 *   "stacker.yaml:4:3: unknown directive 'rnu' in image 'base'"
 *
 * Ownership: a recipe owns everything reachable from it; the plan borrows
 * the recipes it loaded and owns them too (ocitree_build_plan_free()).
 */
#ifndef OCITREE_RECIPE_H
#define OCITREE_RECIPE_H

#include <stdbool.h>
#include <stddef.h>

#include "ocitree/digest.h"
#include "ocitree/error.h"
#include "ocitree/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A place in a recipe file, 1-based. */
struct ocitree_recipe_pos {
	unsigned line, column;
};

enum ocitree_recipe_from_type {
	OCITREE_FROM_SCRATCH = 0, /* an empty rootfs */
	OCITREE_FROM_OCI,         /* url "LAYOUT:TAG" (or "oci:LAYOUT:TAG"), a local layout */
	OCITREE_FROM_BUILT,       /* tag: another image of the recipe or its prerequisites */
	OCITREE_FROM_TAR,         /* url: a local rootfs tarball (relative to the recipe) */
	OCITREE_FROM_DOCKER,      /* url "docker://...", copied with skopeo */
};

struct ocitree_recipe_from {
	enum ocitree_recipe_from_type type;
	char *url;     /* as written; NULL when absent */
	char *tag;     /* NULL when absent */
	char *path;    /* oci: the layout's path, tar: the tarball's (absolute) */
	char *ref;     /* oci: the tag in that layout ("latest" by default) */
	bool insecure; /* docker: plain http */
	struct ocitree_recipe_pos pos;
};

struct ocitree_recipe_import {
	char *path; /* as written */
	/* a local file or directory: its absolute path (a trailing '/' kept:
	 * the directory's contents, not the directory, are imported) */
	char *source;
	/* stacker://IMAGE/PATH: the image and the path in it (source NULL) */
	char *image;
	char *image_path;
	char *dest; /* an absolute path in the image where it is copied too, or NULL */
	char *hash; /* expected "sha256" hex of a file, or NULL */
	struct ocitree_recipe_pos pos;
};

/* A bind mount of the host into the build container. */
struct ocitree_recipe_bind {
	char *source; /* absolute (relative ones are taken from the recipe's directory) */
	char *dest;
	struct ocitree_recipe_pos pos;
};

struct ocitree_recipe_image {
	char *name;
	struct ocitree_recipe_pos pos;
	struct ocitree_recipe *recipe; /* the file it comes from (borrowed) */
	struct ocitree_recipe_from from;
	bool has_from;
	struct ocitree_recipe_import *imports;
	size_t n_imports;
	/* `import` (stacker's older form) shows imports at /stacker, `imports`
	 * at /stacker/imports */
	bool legacy_import;
	char **run; /* NULL-terminated steps; NULL when none */
	struct ocitree_strmap environment, labels, annotations, build_env;
	/* regular expressions (POSIX extended) of host variables passed to run;
	 * NULL when absent (then: the proxy variables and SOURCE_DATE_EPOCH) */
	char **build_env_passthrough;
	char *working_dir;
	char **volumes;
	/* a string is split as a shell would (quotes, backslashes); NULL when
	 * absent */
	char **cmd, **entrypoint, **full_command;
	char *user; /* `user` or `runtime_user` */
	bool build_only;
	struct ocitree_recipe_bind *binds;
	size_t n_binds;
	char **apply; /* names of images whose layers are appended; NULL when none */
	struct ocitree_recipe_pos *apply_pos;
	/* the entry as parsed (after substitution), in a canonical text form:
	 * what the cache key hashes */
	char *canonical;
};

struct ocitree_recipe {
	char *path; /* as given */
	char *dir;  /* the absolute directory it is in: relative paths start there */
	struct ocitree_recipe_image *images;
	size_t n_images;
	char **prerequisites; /* absolute paths of other recipes; NULL when none */
	struct ocitree_recipe_pos *prerequisite_pos;
};

/* ---- substitutions ---- */

/* Add "KEY=VALUE" to subst (a later value of a key wins).  No '=' or an
 * empty key is an OCITREE_ERROR_USAGE error. */
int ocitree_recipe_subst_add(struct ocitree_strmap *subst, const char *kv, struct ocitree_error **err);

/* Add the pairs of a substitution file (a YAML map of scalars) to subst. */
int ocitree_recipe_subst_load(struct ocitree_strmap *subst, const char *path, struct ocitree_error **err);

/* Replace every ${{VAR}} and ${{VAR:default}} of text by its value in
 * subst, else its default.  A variable without either is an
 * OCITREE_ERROR_INVALID error "WHAT:LINE:COL: no value for substitution
 * 'VAR'"; so is a placeholder that is not closed.  The result is newly
 * allocated. */
char *ocitree_recipe_substitute(const char *text, size_t len, const struct ocitree_strmap *subst, const char *what,
                                struct ocitree_error **err);

/* ---- recipes ---- */

/* Parse a recipe from memory.  path names it in errors and gives the
 * directory relative paths start from (NULL: "<recipe>" and the current
 * directory).  Errors are OCITREE_ERROR_INVALID, naming path, line and
 * column. */
struct ocitree_recipe *ocitree_recipe_parse(const char *text, size_t len, const char *path,
                                            const struct ocitree_strmap *subst, struct ocitree_error **err);

/* Read and parse the recipe file path. */
struct ocitree_recipe *ocitree_recipe_load(const char *path, const struct ocitree_strmap *subst,
                                           struct ocitree_error **err);

void ocitree_recipe_free(struct ocitree_recipe *r);

/* The image called name, or NULL. */
struct ocitree_recipe_image *ocitree_recipe_find(const struct ocitree_recipe *r, const char *name);

/* Split a command line as a POSIX shell does words (single and double
 * quotes, backslash escapes; no expansions).  An unclosed quote is an
 * OCITREE_ERROR_INVALID error.  Returns a NULL-terminated vector. */
char **ocitree_shell_split(const char *s, struct ocitree_error **err);

/* ---- the build plan ---- */

struct ocitree_build_plan_item {
	struct ocitree_recipe_image *image; /* borrowed from the plan's recipes */
	/* positions in the plan of the images this one needs (its `built`
	 * base, the sources of its stacker:// imports, its applied images),
	 * each earlier in the plan */
	size_t *deps;
	size_t n_deps;
	size_t base; /* the `built` base's position, or (size_t)-1 */
};

struct ocitree_build_plan {
	struct ocitree_recipe **recipes; /* prerequisites first, the main recipe last */
	size_t n_recipes;
	struct ocitree_build_plan_item *items; /* in build order */
	size_t n_items;
};

/* Load the recipe path and, recursively, its prerequisites, and order
 * their images so that each comes after what it needs: its `built` base,
 * the images its stacker:// imports read, the images it applies, and the
 * images of the recipes it has as prerequisites.  names (n_names of them,
 * may be 0) restricts the plan to those images and what they need.  A
 * cycle (of images or of prerequisites) is an OCITREE_ERROR_INVALID error
 * naming it ("a -> b -> a"); so is a reference to an image no recipe
 * defines, or an image defined twice, naming where. */
struct ocitree_build_plan *ocitree_build_plan_new(const char *path, const struct ocitree_strmap *subst,
                                                  const char *const *names, size_t n_names, struct ocitree_error **err);
void ocitree_build_plan_free(struct ocitree_build_plan *p);

/* ---- the cache key ---- */

/* The annotation of a built image's manifest holding its cache key. */
#define OCITREE_ANNOTATION_BUILD_KEY "org.ocitree.build.key"

/* The hash of everything an image is built from: base (the base image's
 * manifest digest, or for scratch "", for tar the tarball's digest), the
 * image's canonical entry, the contents of its local imports (names,
 * types, modes, link targets and bytes, not times or owners), and deps
 * (the manifest digests of the images it applies and imports from, in
 * the plan's order of its deps; n_deps of them).  out receives
 * "sha256:...".  An import that cannot be read is an error naming it. */
int ocitree_build_cache_key(const struct ocitree_recipe_image *img, const char *base, const char *const *deps,
                            size_t n_deps, char out[OCITREE_DIGEST_MAX], struct ocitree_error **err);

#ifdef __cplusplus
}
#endif
#endif
