/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The build plan (see ocitree/recipe.h): a recipe and its prerequisites
 * loaded, their images ordered so that each comes after what it needs,
 * cycles refused; and the cache key, the hash of what an image is built
 * from.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "ocitree/recipe.h"
#include "util.h"

/* ---- loading the recipes ---- */

struct loader {
	const struct ocitree_strmap *subst;
	struct ocitree_build_plan *p;
	char **stack; /* real paths of the recipes being loaded, for cycles */
	size_t depth, cap;
	struct strset done;
};

static int load_recipe(struct loader *ld, const char *path, const char *from, struct ocitree_error **err)
{
	_cleanup_free_ char *real = realpath(path, NULL);
	if (!real) {
		if (from)
			return ocitree_error_set(err, errno, "%s: prerequisite '%s'", from, path);
		return ocitree_error_set(err, errno, "read recipe '%s'", path);
	}
	for (size_t i = 0; i < ld->depth; i++) {
		if (strcmp(ld->stack[i], real) != 0)
			continue;
		_cleanup_buf_ struct buf b = BUF_INIT;
		for (size_t j = i; j < ld->depth; j++)
			buf_printf(&b, "%s -> ", ld->stack[j]);
		buf_puts(&b, real);
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "prerequisites form a cycle: %s", b.data);
	}
	if (strset_has(&ld->done, real))
		return 0;
	struct ocitree_recipe *r = ocitree_recipe_load(path, ld->subst, err);
	if (!r)
		return -1;
	GROW(ld->stack, ld->cap, ld->depth + 1);
	ld->stack[ld->depth++] = xstrdup(real);
	int ret = 0;
	for (size_t i = 0; r->prerequisites && r->prerequisites[i] && ret == 0; i++) {
		_cleanup_free_ char *at =
		    xasprintf("%s:%u:%u", r->path, r->prerequisite_pos[i].line, r->prerequisite_pos[i].column);
		ret = load_recipe(ld, r->prerequisites[i], at, err);
	}
	free(ld->stack[--ld->depth]);
	if (ret < 0) {
		ocitree_recipe_free(r);
		return -1;
	}
	strset_add(&ld->done, real);
	ld->p->recipes = xrealloc(ld->p->recipes, (ld->p->n_recipes + 1) * sizeof(*ld->p->recipes));
	ld->p->recipes[ld->p->n_recipes++] = r;
	return 0;
}

/* ---- ordering the images ---- */

struct node {
	struct ocitree_recipe_image *img;
	size_t *deps; /* indexes into the node array */
	size_t n_deps;
	size_t base;
	int color; /* 0 unvisited, 1 on the path, 2 placed */
	bool wanted;
	size_t pos; /* position in the plan */
};

struct graph {
	struct node *n;
	size_t count;
	size_t *order;
	size_t n_order;
	size_t *path; /* the walk's current path, for naming a cycle */
	size_t n_path;
};

static ssize_t find_node(const struct graph *g, const char *name)
{
	for (size_t i = 0; i < g->count; i++)
		if (strcmp(g->n[i].img->name, name) == 0)
			return (ssize_t)i;
	return -1;
}

static int add_dep(struct graph *g, size_t i, const char *name, struct ocitree_recipe_pos at, const char *why,
                   struct ocitree_error **err)
{
	struct node *nd = &g->n[i];
	ssize_t d = find_node(g, name);
	if (d < 0)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
		                          "%s:%u:%u: image '%s' %s '%s', which no recipe defines",
		                          nd->img->recipe->path, at.line, at.column, nd->img->name, why, name);
	for (size_t k = 0; k < nd->n_deps; k++)
		if (nd->deps[k] == (size_t)d)
			return (int)d;
	nd->deps = xrealloc(nd->deps, (nd->n_deps + 1) * sizeof(*nd->deps));
	nd->deps[nd->n_deps++] = (size_t)d;
	return (int)d;
}

static int visit(struct graph *g, size_t i, struct ocitree_error **err)
{
	struct node *nd = &g->n[i];
	if (nd->color == 2)
		return 0;
	if (nd->color == 1) {
		_cleanup_buf_ struct buf b = BUF_INIT;
		size_t k = 0;
		while (k < g->n_path && g->path[k] != i)
			k++;
		for (; k < g->n_path; k++)
			buf_printf(&b, "%s -> ", g->n[g->path[k]].img->name);
		buf_puts(&b, nd->img->name);
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s:%u:%u: images form a cycle: %s",
		                          nd->img->recipe->path, nd->img->pos.line, nd->img->pos.column, b.data);
	}
	nd->color = 1;
	g->path[g->n_path++] = i;
	for (size_t k = 0; k < nd->n_deps; k++)
		if (visit(g, nd->deps[k], err) < 0)
			return -1;
	g->n_path--;
	nd->color = 2;
	g->order[g->n_order++] = i;
	return 0;
}

static void want(struct graph *g, size_t i)
{
	if (g->n[i].wanted)
		return;
	g->n[i].wanted = true;
	for (size_t k = 0; k < g->n[i].n_deps; k++)
		want(g, g->n[i].deps[k]);
}

static int build_graph(struct graph *g, struct ocitree_build_plan *p, struct ocitree_error **err)
{
	for (size_t r = 0; r < p->n_recipes; r++)
		g->count += p->recipes[r]->n_images;
	g->n = xcalloc(g->count + 1, sizeof(*g->n));
	size_t k = 0;
	for (size_t r = 0; r < p->n_recipes; r++) {
		for (size_t i = 0; i < p->recipes[r]->n_images; i++) {
			struct ocitree_recipe_image *img = &p->recipes[r]->images[i];
			ssize_t other = find_node(&(struct graph){.n = g->n, .count = k}, img->name);
			if (other >= 0) {
				const struct ocitree_recipe_image *o = g->n[other].img;
				return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
				                          "%s:%u:%u: image '%s' is also defined at %s:%u:%u",
				                          img->recipe->path, img->pos.line, img->pos.column, img->name,
				                          o->recipe->path, o->pos.line, o->pos.column);
			}
			g->n[k].img = img;
			g->n[k].base = (size_t)-1;
			k++;
		}
	}
	for (size_t i = 0; i < g->count; i++) {
		struct ocitree_recipe_image *img = g->n[i].img;
		if (img->from.type == OCITREE_FROM_BUILT) {
			int d = add_dep(g, i, img->from.tag, img->from.pos, "is built on", err);
			if (d < 0)
				return -1;
			g->n[i].base = (size_t)d;
		}
		for (size_t m = 0; m < img->n_imports; m++)
			if (img->imports[m].image &&
			    add_dep(g, i, img->imports[m].image, img->imports[m].pos, "imports from", err) < 0)
				return -1;
		for (size_t m = 0; img->apply && img->apply[m]; m++)
			if (add_dep(g, i, img->apply[m], img->apply_pos[m], "applies", err) < 0)
				return -1;
	}
	return 0;
}

OCITREE_EXPORT struct ocitree_build_plan *ocitree_build_plan_new(const char *path, const struct ocitree_strmap *subst,
                                                                 const char *const *names, size_t n_names,
                                                                 struct ocitree_error **err)
{
	struct ocitree_build_plan *p = xcalloc(1, sizeof(*p));
	struct loader ld = {.subst = subst, .p = p};
	int ret = load_recipe(&ld, path, NULL, err);
	free(ld.stack);
	strset_free(&ld.done);
	struct graph g = {0};
	if (ret == 0)
		ret = build_graph(&g, p, err);
	if (ret == 0) {
		g.order = xcalloc(g.count + 1, sizeof(*g.order));
		g.path = xcalloc(g.count + 1, sizeof(*g.path));
		/* prerequisites' images first, each file's in its order, each
		 * image after what it needs */
		for (size_t i = 0; i < g.count && ret == 0; i++)
			ret = visit(&g, i, err);
	}
	for (size_t i = 0; ret == 0 && i < n_names; i++) {
		ssize_t k = find_node(&g, names[i]);
		if (k < 0)
			ret = ocitree_error_setk(err, OCITREE_ERROR_USAGE,
			                         "no image '%s' in recipe '%s' or its prerequisites", names[i], path);
		else
			want(&g, (size_t)k);
	}
	if (ret == 0) {
		p->items = xcalloc(g.count + 1, sizeof(*p->items));
		for (size_t o = 0; o < g.n_order; o++) {
			struct node *nd = &g.n[g.order[o]];
			if (n_names && !nd->wanted)
				continue;
			nd->pos = p->n_items;
			struct ocitree_build_plan_item *it = &p->items[p->n_items++];
			it->image = nd->img;
			it->base = (size_t)-1;
			it->deps = xcalloc(nd->n_deps + 1, sizeof(*it->deps));
			for (size_t k = 0; k < nd->n_deps; k++)
				it->deps[it->n_deps++] = g.n[nd->deps[k]].pos;
			if (nd->base != (size_t)-1)
				it->base = g.n[nd->base].pos;
		}
	}
	for (size_t i = 0; i < g.count; i++)
		free(g.n[i].deps);
	free(g.n);
	free(g.order);
	free(g.path);
	if (ret < 0) {
		ocitree_build_plan_free(p);
		return NULL;
	}
	return p;
}

OCITREE_EXPORT void ocitree_build_plan_free(struct ocitree_build_plan *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_items; i++)
		free(p->items[i].deps);
	free(p->items);
	for (size_t i = 0; i < p->n_recipes; i++)
		ocitree_recipe_free(p->recipes[i]);
	free(p->recipes);
	free(p);
}

/* ---- the cache key ---- */

static void feed(struct ocitree_hasher *h, const char *s)
{
	ocitree_hasher_update(h, s, strlen(s) + 1);
}

static int name_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int no_dots(const struct dirent *e)
{
	return strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
}

/* Hash a file or a tree: per entry its path below the import, type,
 * permission bits, and bytes or link target.  Times and owners are left
 * out: a checkout or a copy changes them, not what is imported. */
static int hash_tree(struct ocitree_hasher *h, int dirfd, const char *name, const char *rel, const char *what,
                     unsigned depth, struct ocitree_error **err)
{
	struct stat st;
	if (depth > 256)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "import '%s': tree nested too deeply at '%s'",
		                          what, rel);
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return ocitree_error_set(err, errno, "import '%s': stat '%s'", what, rel);
	char meta[64];
	snprintf(meta, sizeof(meta), "%o", (unsigned)st.st_mode);
	feed(h, rel);
	feed(h, meta);
	if (S_ISREG(st.st_mode)) {
		_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			return ocitree_error_set(err, errno, "import '%s': open '%s'", what, rel);
		char buf[65536];
		uint64_t total = 0;
		for (;;) {
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return ocitree_error_set(err, errno, "import '%s': read '%s'", what, rel);
			if (r == 0)
				break;
			ocitree_hasher_update(h, buf, (size_t)r);
			total += (uint64_t)r;
		}
		snprintf(meta, sizeof(meta), "%" PRIu64, total);
		feed(h, meta);
	} else if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlinkat(dirfd, name, target, sizeof(target) - 1);
		if (n < 0)
			return ocitree_error_set(err, errno, "import '%s': readlink '%s'", what, rel);
		target[n] = '\0';
		feed(h, target);
	} else if (S_ISDIR(st.st_mode)) {
		_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			return ocitree_error_set(err, errno, "import '%s': open '%s'", what, rel);
		struct dirent **ents = NULL;
		_cleanup_free_ char *self = xasprintf("/proc/self/fd/%d", fd);
		int n = scandir(self, &ents, no_dots, name_cmp);
		if (n < 0)
			return ocitree_error_set(err, errno, "import '%s': list '%s'", what, rel);
		int ret = 0;
		for (int i = 0; i < n; i++) {
			if (ret == 0) {
				_cleanup_free_ char *sub = xasprintf("%s/%s", rel, ents[i]->d_name);
				ret = hash_tree(h, fd, ents[i]->d_name, sub, what, depth + 1, err);
			}
			free(ents[i]);
		}
		free(ents);
		return ret;
	} else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
		snprintf(meta, sizeof(meta), "%ju", (uintmax_t)st.st_rdev);
		feed(h, meta);
	}
	return 0;
}

/* The sha256 hex of a file, for an import's expected hash. */
static int file_sha256(const char *path, char out[OCITREE_DIGEST_MAX], struct ocitree_error **err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ocitree_error_set(err, errno, "open '%s'", path);
	struct ocitree_hasher *h = ocitree_hasher_new("sha256");
	char buf[65536];
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ocitree_hasher_free(h);
			return ocitree_error_set(err, errno, "read '%s'", path);
		}
		if (r == 0)
			break;
		ocitree_hasher_update(h, buf, (size_t)r);
	}
	ocitree_hasher_final(h, out);
	ocitree_hasher_free(h);
	return 0;
}

OCITREE_EXPORT int ocitree_build_cache_key(const struct ocitree_recipe_image *img, const char *base,
                                           const char *const *deps, size_t n_deps, char out[OCITREE_DIGEST_MAX],
                                           struct ocitree_error **err)
{
	struct ocitree_hasher *h = ocitree_hasher_new("sha256");
	int ret = 0;
	feed(h, "ocitree-build-key-v1");
	feed(h, img->name);
	feed(h, base ? base : "");
	feed(h, img->canonical ? img->canonical : "");
	for (size_t i = 0; i < img->n_imports && ret == 0; i++) {
		const struct ocitree_recipe_import *im = &img->imports[i];
		feed(h, im->path);
		if (!im->source)
			continue;
		if (im->hash) {
			char d[OCITREE_DIGEST_MAX];
			ret = file_sha256(im->source, d, err);
			if (ret == 0 && strcmp(ocitree_digest_hex(d), im->hash) != 0)
				ret = ocitree_error_setk(err, OCITREE_ERROR_DIGEST,
				                         "%s:%u:%u: import '%s' has sha256 %s, the recipe expects %s",
				                         img->recipe ? img->recipe->path : "<recipe>", im->pos.line,
				                         im->pos.column, im->path, ocitree_digest_hex(d), im->hash);
			if (ret < 0)
				break;
		}
		ret = hash_tree(h, AT_FDCWD, im->source, "", im->path, 0, err);
	}
	for (size_t i = 0; i < n_deps && ret == 0; i++)
		feed(h, deps[i] ? deps[i] : "");
	if (ret == 0)
		ocitree_hasher_final(h, out);
	ocitree_hasher_free(h);
	return ret;
}
