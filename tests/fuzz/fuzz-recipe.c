/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: recipes (stacker.yaml) as `ocitree build` reads them.  The
 * input is the recipe text, substituted with one known variable.  A recipe
 * that parses must be a sane model (every image named, with a canonical
 * form, imports with a path, binds with both ends); one that does not must
 * say why and where ("FILE:LINE:COL: ...").
 */
#include "config.h"

#include <stdint.h>

#include "ocitree/recipe.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz-recipe: %s\n", what);
	abort();
}

static void check(const struct ocitree_recipe *r)
{
	if (r->n_images == 0)
		fail("a recipe without images");
	for (size_t i = 0; i < r->n_images; i++) {
		const struct ocitree_recipe_image *img = &r->images[i];
		if (!img->name || !*img->name || !img->canonical || img->recipe != r || !img->has_from)
			fail("an image without name, canonical form or from");
		if (ocitree_recipe_find(r, img->name) != img)
			fail("two images of one name");
		for (size_t k = 0; k < img->n_imports; k++) {
			const struct ocitree_recipe_import *im = &img->imports[k];
			if (!im->path || (!im->source) == (!im->image))
				fail("an import that is neither local nor stacker://");
			if (im->dest && im->dest[0] != '/')
				fail("a relative import dest");
		}
		for (size_t k = 0; k < img->n_binds; k++)
			if (!img->binds[k].source || !img->binds[k].dest || img->binds[k].dest[0] != '/')
				fail("a bind without both ends");
		if (img->from.type == OCITREE_FROM_BUILT && !img->from.tag)
			fail("built without a tag");
		if ((img->from.type == OCITREE_FROM_OCI || img->from.type == OCITREE_FROM_TAR) && !img->from.path)
			fail("oci or tar without a path");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ocitree_strmap subst = {0};
	ocitree_strmap_set(&subst, "VAR", "value");
	struct ocitree_error *err = NULL;
	struct ocitree_recipe *r = ocitree_recipe_parse((const char *)data, size, "fuzz.yaml", &subst, &err);
	if (r) {
		check(r);
		ocitree_recipe_free(r);
	} else if (!err || !err->msg || !str_has_prefix(err->msg, "fuzz.yaml:")) {
		fprintf(stderr, "%s\n", err && err->msg ? err->msg : "(no error)");
		fail("an error that does not name the file");
	}
	ocitree_error_free(err);
	ocitree_strmap_clear(&subst);
	return 0;
}
