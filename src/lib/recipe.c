/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recipes (see ocitree/recipe.h): stacker.yaml text -> substitutions ->
 * libyaml's document tree -> the recipe model, with every error naming the
 * file, line and column.  The build plan and the cache key are in
 * recipe-plan.c.
 */
#include "config.h"

#include <ctype.h>
#include <fcntl.h>
#include <regex.h>
#include <yaml.h>

#include "ocitree/layout.h"
#include "ocitree/recipe.h"
#include "util.h"

/* A recipe is a few kilobytes; this bounds what a mistaken path reads. */
#define RECIPE_MAX_SIZE (16u << 20)
/* libyaml expands aliases by reference: a walk over them is bounded so a
 * "billion laughs" document, or an alias of a node inside itself, ends in
 * an error instead of exhausting memory or the stack. */
#define WALK_BUDGET 1000000u
#define WALK_DEPTH  64

/* ---- substitutions ---- */

static void line_col(const char *text, size_t off, unsigned *line, unsigned *col)
{
	unsigned l = 1, c = 1;
	for (size_t i = 0; i < off; i++) {
		if (text[i] == '\n') {
			l++;
			c = 1;
		} else {
			c++;
		}
	}
	*line = l;
	*col = c;
}

OCITREE_EXPORT char *ocitree_recipe_substitute(const char *text, size_t len, const struct ocitree_strmap *subst,
                                               const char *what, struct ocitree_error **err)
{
	_cleanup_buf_ struct buf out = BUF_INIT;
	size_t i = 0;
	buf_reserve(&out, len + 1);
	while (i < len) {
		const char *p = len - i >= 3 ? memmem(text + i, len - i, "${{", 3) : NULL;
		if (!p) {
			buf_append(&out, text + i, len - i);
			break;
		}
		size_t start = (size_t)(p - text);
		buf_append(&out, text + i, start - i);
		size_t j = start + 3;
		while (j < len && text[j] != '}' && text[j] != '\n')
			j++;
		unsigned line, col;
		if (j + 1 >= len || text[j] != '}' || text[j + 1] != '}') {
			line_col(text, start, &line, &col);
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s:%u:%u: unclosed placeholder '${{'",
			                          what, line, col),
			       NULL;
		}
		_cleanup_free_ char *inner = xstrndup(text + start + 3, j - start - 3);
		char *def = strchr(inner, ':');
		if (def)
			*def++ = '\0';
		const char *v = subst ? ocitree_strmap_get(subst, inner) : NULL;
		if (!v)
			v = def;
		if (!v) {
			line_col(text, start, &line, &col);
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
			                          "%s:%u:%u: no value for substitution '%s'", what, line, col, inner),
			       NULL;
		}
		buf_puts(&out, v);
		i = j + 2;
	}
	buf_append(&out, "", 1);
	return buf_steal(&out);
}

OCITREE_EXPORT int ocitree_recipe_subst_add(struct ocitree_strmap *subst, const char *kv, struct ocitree_error **err)
{
	const char *eq = strchr(kv, '=');
	if (!eq || eq == kv)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid substitution '%s': want KEY=VALUE", kv);
	_cleanup_free_ char *k = xstrndup(kv, (size_t)(eq - kv));
	ocitree_strmap_set(subst, k, eq + 1);
	return 0;
}

/* ---- the YAML document ---- */

struct parser {
	const char *what;
	yaml_document_t doc;
	bool have_doc;
	struct ocitree_recipe *r;
	size_t budget;
};

static struct ocitree_recipe_pos pos_of(const yaml_node_t *n)
{
	return (struct ocitree_recipe_pos){(unsigned)n->start_mark.line + 1, (unsigned)n->start_mark.column + 1};
}

static int perr(struct parser *p, const yaml_node_t *n, struct ocitree_error **err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int perr(struct parser *p, const yaml_node_t *n, struct ocitree_error **err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *m = xvasprintf(fmt, ap);
	va_end(ap);
	struct ocitree_recipe_pos at = pos_of(n);
	return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s:%u:%u: %s", p->what, at.line, at.column, m);
}

static yaml_node_t *node(struct parser *p, int id)
{
	return yaml_document_get_node(&p->doc, id);
}

static const char *kind_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE: return "a string";
	case YAML_SEQUENCE_NODE: return "a list";
	case YAML_MAPPING_NODE: return "a map";
	default: return "nothing";
	}
}

static bool is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *s = (const char *)n->data.scalar.value;
	return n->data.scalar.length == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
	       strcmp(s, "NULL") == 0;
}

/* A scalar's text; an embedded NUL is refused, so that what the model
 * holds is what the file says. */
static char *scalar(struct parser *p, const yaml_node_t *n, const char *what, struct ocitree_error **err)
{
	if (n->type != YAML_SCALAR_NODE)
		return perr(p, n, err, "%s: want a string, found %s", what, kind_name(n)), NULL;
	if (memchr(n->data.scalar.value, '\0', n->data.scalar.length))
		return perr(p, n, err, "%s: a NUL byte in a string", what), NULL;
	return xstrndup((const char *)n->data.scalar.value, n->data.scalar.length);
}

static int boolean(struct parser *p, const yaml_node_t *n, const char *what, bool *out, struct ocitree_error **err)
{
	static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
	static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
	_cleanup_free_ char *s = scalar(p, n, what, err);
	if (!s)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcmp(s, yes[i]) == 0)
			return *out = true, 0;
		if (strcmp(s, no[i]) == 0)
			return *out = false, 0;
	}
	return perr(p, n, err, "%s: want true or false, found '%s'", what, s);
}

/* A list of strings, or one string as a list of one (split as a shell
 * would when split is set). */
static char **string_list(struct parser *p, const yaml_node_t *n, const char *what, bool split,
                          struct ocitree_error **err)
{
	size_t cap = 0, k = 0;
	char **v = NULL;
	if (n->type == YAML_SCALAR_NODE) {
		_cleanup_free_ char *s = scalar(p, n, what, err);
		if (!s)
			return NULL;
		if (split) {
			struct ocitree_error *e = NULL;
			char **w = ocitree_shell_split(s, &e);
			if (!w) {
				perr(p, n, err, "%s: %s", what, e->msg);
				ocitree_error_free(e);
			}
			return w;
		}
		v = xcalloc(2, sizeof(*v));
		v[0] = steal_pointer(&s);
		return v;
	}
	if (n->type != YAML_SEQUENCE_NODE)
		return perr(p, n, err, "%s: want a string or a list of strings, found %s", what, kind_name(n)), NULL;
	GROW(v, cap, 1);
	v[0] = NULL;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		char *s = scalar(p, node(p, *it), what, err);
		if (!s) {
			strv_free(v);
			return NULL;
		}
		GROW(v, cap, k + 2);
		v[k++] = s;
		v[k] = NULL;
	}
	return v;
}

static int string_map(struct parser *p, const yaml_node_t *n, const char *what, struct ocitree_strmap *m,
                      struct ocitree_error **err)
{
	if (is_null(n))
		return 0;
	if (n->type != YAML_MAPPING_NODE)
		return perr(p, n, err, "%s: want a map of strings, found %s", what, kind_name(n));
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
		_cleanup_free_ char *k = scalar(p, node(p, pr->key), what, err);
		if (!k)
			return -1;
		const yaml_node_t *vn = node(p, pr->value);
		_cleanup_free_ char *v = is_null(vn) ? xstrdup("") : scalar(p, vn, what, err);
		if (!v)
			return -1;
		if (ocitree_strmap_get(m, k))
			return perr(p, node(p, pr->key), err, "%s: '%s' given twice", what, k);
		ocitree_strmap_set(m, k, v);
	}
	return 0;
}

/* A path from the recipe: absolute as it is, else from the recipe's
 * directory.  A trailing '/' is kept. */
static char *resolve(struct parser *p, const char *path)
{
	if (path[0] == '/')
		return xstrdup(path);
	return xasprintf("%s/%s", p->r->dir, path);
}

/* The canonical text of a node: JSON-like, in document order.  What the
 * cache key hashes, so two spellings of the same entry (quoting, flow or
 * block style, comments) give the same key. */
static int canon(struct parser *p, const yaml_node_t *n, struct buf *b, unsigned depth, struct ocitree_error **err)
{
	if (depth > WALK_DEPTH)
		return perr(p, n, err, "nested too deeply");
	if (p->budget-- == 0)
		return perr(p, n, err, "too many nodes (aliases expanding without end?)");
	switch (n->type) {
	case YAML_SCALAR_NODE:
		buf_puts(b, "\"");
		for (size_t i = 0; i < n->data.scalar.length; i++) {
			unsigned char c = n->data.scalar.value[i];
			if (c == '"' || c == '\\' || c < 0x20)
				buf_printf(b, "\\x%02x", c);
			else
				buf_append(b, &c, 1);
		}
		buf_puts(b, "\"");
		return 0;
	case YAML_SEQUENCE_NODE:
		buf_puts(b, "[");
		for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
			if (it != n->data.sequence.items.start)
				buf_puts(b, ",");
			if (canon(p, node(p, *it), b, depth + 1, err) < 0)
				return -1;
		}
		buf_puts(b, "]");
		return 0;
	case YAML_MAPPING_NODE:
		buf_puts(b, "{");
		for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
			if (pr != n->data.mapping.pairs.start)
				buf_puts(b, ",");
			if (canon(p, node(p, pr->key), b, depth + 1, err) < 0)
				return -1;
			buf_puts(b, ":");
			if (canon(p, node(p, pr->value), b, depth + 1, err) < 0)
				return -1;
		}
		buf_puts(b, "}");
		return 0;
	default: return perr(p, n, err, "an empty node");
	}
}

/* ---- directives ---- */

static int parse_from(struct parser *p, struct ocitree_recipe_image *img, const yaml_node_t *n,
                      struct ocitree_error **err)
{
	struct ocitree_recipe_from *f = &img->from;
	f->pos = pos_of(n);
	if (n->type != YAML_MAPPING_NODE)
		return perr(p, n, err, "'from' of image '%s': want a map (type, url, tag), found %s", img->name,
		            kind_name(n));
	_cleanup_free_ char *type = NULL;
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
		const yaml_node_t *kn = node(p, pr->key), *vn = node(p, pr->value);
		_cleanup_free_ char *k = scalar(p, kn, "from", err);
		if (!k)
			return -1;
		char **slot = strcmp(k, "type") == 0  ? &type
		              : strcmp(k, "url") == 0 ? &f->url
		              : strcmp(k, "tag") == 0 ? &f->tag
		                                      : NULL;
		if (slot) {
			if (*slot)
				return perr(p, kn, err, "'from' of image '%s': '%s' given twice", img->name, k);
			if (!(*slot = scalar(p, vn, k, err)))
				return -1;
		} else if (strcmp(k, "insecure") == 0) {
			if (boolean(p, vn, "insecure", &f->insecure, err) < 0)
				return -1;
		} else {
			return perr(p, kn, err, "unknown key '%s' in 'from' of image '%s'", k, img->name);
		}
	}
	if (!type)
		return perr(p, n, err, "'from' of image '%s' has no 'type'", img->name);
	static const char *const types[] = {"scratch", "oci", "built", "tar", "docker"};
	size_t t = 0;
	while (t < ARRAY_SIZE(types) && strcmp(type, types[t]) != 0)
		t++;
	if (t == ARRAY_SIZE(types))
		return perr(p, n, err, "'from' of image '%s': unknown type '%s' (scratch, oci, built, tar or docker)",
		            img->name, type);
	f->type = (enum ocitree_recipe_from_type)t;
	if ((t == OCITREE_FROM_OCI || t == OCITREE_FROM_TAR || t == OCITREE_FROM_DOCKER) && (!f->url || !*f->url))
		return perr(p, n, err, "'from' of image '%s': type %s needs a 'url'", img->name, type);
	if (t == OCITREE_FROM_BUILT && (!f->tag || !*f->tag))
		return perr(p, n, err, "'from' of image '%s': type built needs a 'tag' (the image it builds on)",
		            img->name);
	if (t == OCITREE_FROM_OCI) {
		const char *u = str_has_prefix(f->url, "oci:") ? f->url + 4 : f->url;
		const char *c = strrchr(u, ':');
		_cleanup_free_ char *path = c ? xstrndup(u, (size_t)(c - u)) : xstrdup(u);
		if (!*path)
			return perr(p, n, err, "'from' of image '%s': url '%s' has no layout path", img->name, f->url);
		f->ref = xstrdup(c && c[1] ? c + 1 : f->tag ? f->tag : "latest");
		f->path = resolve(p, path);
	} else if (t == OCITREE_FROM_TAR) {
		if (strstr(f->url, "://"))
			return perr(p, n, err, "'from' of image '%s': tar url '%s': only local files are supported",
			            img->name, f->url);
		f->path = resolve(p, f->url);
	} else if (t == OCITREE_FROM_DOCKER && !str_has_prefix(f->url, "docker://")) {
		char *u = xasprintf("docker://%s", f->url);
		free(f->url);
		f->url = u;
	}
	return 0;
}

static int parse_import(struct parser *p, struct ocitree_recipe_image *img, const yaml_node_t *n,
                        struct ocitree_recipe_import *im, struct ocitree_error **err)
{
	im->pos = pos_of(n);
	if (n->type == YAML_SCALAR_NODE) {
		if (!(im->path = scalar(p, n, "import", err)))
			return -1;
	} else if (n->type == YAML_MAPPING_NODE) {
		for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
			const yaml_node_t *kn = node(p, pr->key), *vn = node(p, pr->value);
			_cleanup_free_ char *k = scalar(p, kn, "import", err);
			if (!k)
				return -1;
			char **slot = strcmp(k, "path") == 0   ? &im->path
			              : strcmp(k, "dest") == 0 ? &im->dest
			              : strcmp(k, "hash") == 0 ? &im->hash
			                                       : NULL;
			if (!slot)
				return perr(p, kn, err,
				            "unknown key '%s' in an import of image '%s' (path, dest, hash)", k,
				            img->name);
			if (*slot)
				return perr(p, kn, err, "'%s' given twice in an import of image '%s'", k, img->name);
			if (!(*slot = scalar(p, vn, k, err)))
				return -1;
		}
	} else {
		return perr(p, n, err, "an import of image '%s': want a path or a map (path, dest, hash), found %s",
		            img->name, kind_name(n));
	}
	if (!im->path || !*im->path)
		return perr(p, n, err, "an import of image '%s' has no 'path'", img->name);
	if (im->dest && im->dest[0] != '/')
		return perr(p, n, err, "import '%s' of image '%s': 'dest' must be an absolute path", im->path,
		            img->name);
	if (im->hash) {
		size_t hl = strlen(im->hash);
		for (size_t i = 0; i < hl; i++)
			im->hash[i] = (char)tolower((unsigned char)im->hash[i]);
		if (hl != 64 || strspn(im->hash, "0123456789abcdef") != 64)
			return perr(p, n, err, "import '%s' of image '%s': 'hash' must be 64 hex digits (sha256)",
			            im->path, img->name);
	}
	if (str_has_prefix(im->path, "stacker://")) {
		const char *s = im->path + strlen("stacker://");
		const char *slash = strchr(s, '/');
		if (!slash || slash == s || !slash[1])
			return perr(p, n, err, "import '%s' of image '%s': want stacker://IMAGE/PATH", im->path,
			            img->name);
		im->image = xstrndup(s, (size_t)(slash - s));
		im->image_path = xstrdup(slash);
	} else if (strstr(im->path, "://")) {
		return perr(p, n, err, "import '%s' of image '%s': only local paths and stacker:// are supported",
		            im->path, img->name);
	} else {
		im->source = resolve(p, im->path);
	}
	return 0;
}

static int parse_imports(struct parser *p, struct ocitree_recipe_image *img, const yaml_node_t *n,
                         struct ocitree_error **err)
{
	if (is_null(n))
		return 0;
	const yaml_node_t *one[1] = {n};
	size_t cnt = 1;
	if (n->type == YAML_SEQUENCE_NODE)
		cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	img->imports = xcalloc(cnt ? cnt : 1, sizeof(*img->imports));
	for (size_t i = 0; i < cnt; i++) {
		const yaml_node_t *in =
		    n->type == YAML_SEQUENCE_NODE ? node(p, n->data.sequence.items.start[i]) : one[0];
		img->n_imports++;
		if (parse_import(p, img, in, &img->imports[i], err) < 0)
			return -1;
	}
	return 0;
}

static int parse_bind(struct parser *p, struct ocitree_recipe_image *img, const yaml_node_t *n,
                      struct ocitree_recipe_bind *b, struct ocitree_error **err)
{
	b->pos = pos_of(n);
	_cleanup_free_ char *src = NULL, *dst = NULL;
	if (n->type == YAML_SCALAR_NODE) {
		_cleanup_free_ char *s = scalar(p, n, "binds", err);
		if (!s)
			return -1;
		/* stacker's forms: "SRC" or "SRC -> DST", split at blanks */
		char *words[4] = {0};
		size_t nw = 0;
		for (char *save = NULL, *w = strtok_r(s, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
			if (nw == 4)
				break;
			words[nw++] = w;
		}
		if (nw == 1) {
			src = xstrdup(words[0]);
		} else if (nw == 3 && strcmp(words[1], "->") == 0) {
			src = xstrdup(words[0]);
			dst = xstrdup(words[2]);
		} else {
			return perr(p, n, err, "a bind of image '%s': want 'SRC' or 'SRC -> DST'", img->name);
		}
	} else if (n->type == YAML_MAPPING_NODE) {
		for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
			const yaml_node_t *kn = node(p, pr->key);
			_cleanup_free_ char *k = scalar(p, kn, "binds", err);
			if (!k)
				return -1;
			char **slot = strcmp(k, "source") == 0 ? &src : strcmp(k, "dest") == 0 ? &dst : NULL;
			if (!slot)
				return perr(p, kn, err, "unknown key '%s' in a bind of image '%s' (source, dest)", k,
				            img->name);
			if (*slot)
				return perr(p, kn, err, "'%s' given twice in a bind of image '%s'", k, img->name);
			if (!(*slot = scalar(p, node(p, pr->value), k, err)))
				return -1;
		}
		if (!src || !*src)
			return perr(p, n, err, "a bind of image '%s' has no 'source'", img->name);
	} else {
		return perr(p, n, err, "a bind of image '%s': want a string or a map, found %s", img->name,
		            kind_name(n));
	}
	b->source = resolve(p, src);
	if (!dst || !*dst)
		b->dest = xstrdup(b->source);
	else if (dst[0] != '/')
		return perr(p, n, err, "a bind of image '%s': destination '%s' must be an absolute path", img->name,
		            dst);
	else
		b->dest = steal_pointer(&dst);
	return 0;
}

static int parse_binds(struct parser *p, struct ocitree_recipe_image *img, const yaml_node_t *n,
                       struct ocitree_error **err)
{
	if (is_null(n))
		return 0;
	if (n->type != YAML_SEQUENCE_NODE)
		return perr(p, n, err, "'binds' of image '%s': want a list, found %s", img->name, kind_name(n));
	size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	img->binds = xcalloc(cnt ? cnt : 1, sizeof(*img->binds));
	for (size_t i = 0; i < cnt; i++) {
		img->n_binds++;
		if (parse_bind(p, img, node(p, n->data.sequence.items.start[i]), &img->binds[i], err) < 0)
			return -1;
	}
	return 0;
}

static int parse_passthrough(struct parser *p, struct ocitree_recipe_image *img, const yaml_node_t *n,
                             struct ocitree_error **err)
{
	if (!(img->build_env_passthrough = string_list(p, n, "build_env_passthrough", false, err)))
		return -1;
	for (char **re = img->build_env_passthrough; *re; re++) {
		regex_t rx;
		int rc = regcomp(&rx, *re, REG_EXTENDED | REG_NOSUB);
		if (rc != 0) {
			char msg[128];
			regerror(rc, &rx, msg, sizeof(msg));
			return perr(p, n, err, "build_env_passthrough of image '%s': bad regular expression '%s': %s",
			            img->name, *re, msg);
		}
		regfree(&rx);
	}
	return 0;
}

static int parse_apply(struct parser *p, struct ocitree_recipe_image *img, const yaml_node_t *n,
                       struct ocitree_error **err)
{
	if (!(img->apply = string_list(p, n, "apply", false, err)))
		return -1;
	size_t cnt = strv_len(img->apply);
	img->apply_pos = xcalloc(cnt + 1, sizeof(*img->apply_pos));
	for (size_t i = 0; i < cnt; i++)
		img->apply_pos[i] =
		    n->type == YAML_SEQUENCE_NODE ? pos_of(node(p, n->data.sequence.items.start[i])) : pos_of(n);
	return 0;
}

/* stacker directives ocitree does not carry out: refused by name, so a
 * recipe never builds something other than what it says */
static const char *const unsupported[] = {"overlay_dirs", "generate_labels", "os", "arch", "bom"};

static int parse_directive(struct parser *p, struct ocitree_recipe_image *img, const char *k, const yaml_node_t *kn,
                           const yaml_node_t *vn, struct ocitree_error **err)
{
	if (strcmp(k, "from") == 0) {
		img->has_from = true;
		return parse_from(p, img, vn, err);
	}
	if (strcmp(k, "import") == 0 || strcmp(k, "imports") == 0) {
		if (img->imports)
			return perr(p, kn, err, "image '%s' has both 'import' and 'imports'", img->name);
		img->legacy_import = strcmp(k, "import") == 0;
		return parse_imports(p, img, vn, err);
	}
	if (strcmp(k, "run") == 0) {
		if (is_null(vn))
			return 0;
		return (img->run = string_list(p, vn, "run", false, err)) ? 0 : -1;
	}
	if (strcmp(k, "environment") == 0)
		return string_map(p, vn, "environment", &img->environment, err);
	if (strcmp(k, "labels") == 0)
		return string_map(p, vn, "labels", &img->labels, err);
	if (strcmp(k, "annotations") == 0)
		return string_map(p, vn, "annotations", &img->annotations, err);
	if (strcmp(k, "build_env") == 0)
		return string_map(p, vn, "build_env", &img->build_env, err);
	if (strcmp(k, "build_env_passthrough") == 0)
		return parse_passthrough(p, img, vn, err);
	if (strcmp(k, "working_dir") == 0)
		return (img->working_dir = scalar(p, vn, k, err)) ? 0 : -1;
	if (strcmp(k, "user") == 0 || strcmp(k, "runtime_user") == 0) {
		if (img->user)
			return perr(p, kn, err, "image '%s' has both 'user' and 'runtime_user'", img->name);
		return (img->user = scalar(p, vn, k, err)) ? 0 : -1;
	}
	if (strcmp(k, "volumes") == 0)
		return (img->volumes = string_list(p, vn, k, false, err)) ? 0 : -1;
	if (strcmp(k, "cmd") == 0)
		return (img->cmd = string_list(p, vn, k, true, err)) ? 0 : -1;
	if (strcmp(k, "entrypoint") == 0)
		return (img->entrypoint = string_list(p, vn, k, true, err)) ? 0 : -1;
	if (strcmp(k, "full_command") == 0)
		return (img->full_command = string_list(p, vn, k, true, err)) ? 0 : -1;
	if (strcmp(k, "build_only") == 0)
		return boolean(p, vn, k, &img->build_only, err);
	if (strcmp(k, "binds") == 0)
		return parse_binds(p, img, vn, err);
	if (strcmp(k, "apply") == 0)
		return parse_apply(p, img, vn, err);
	for (size_t i = 0; i < ARRAY_SIZE(unsupported); i++)
		if (strcmp(k, unsupported[i]) == 0)
			return perr(p, kn, err, "directive '%s' of image '%s' is not supported by ocitree", k,
			            img->name);
	return perr(p, kn, err, "unknown directive '%s' in image '%s'", k, img->name);
}

static int parse_image(struct parser *p, struct ocitree_recipe_image *img, const yaml_node_t *n,
                       struct ocitree_error **err)
{
	if (n->type != YAML_MAPPING_NODE)
		return perr(p, n, err, "image '%s': want a map of directives, found %s", img->name, kind_name(n));
	struct strset seen = {0};
	int ret = 0;
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top && ret == 0; pr++) {
		const yaml_node_t *kn = node(p, pr->key);
		_cleanup_free_ char *k = scalar(p, kn, "directive", err);
		if (!k)
			ret = -1;
		else if (!strset_add(&seen, k))
			ret = perr(p, kn, err, "directive '%s' given twice in image '%s'", k, img->name);
		else
			ret = parse_directive(p, img, k, kn, node(p, pr->value), err);
	}
	strset_free(&seen);
	if (ret < 0)
		return -1;
	if (!img->has_from)
		return perr(p, n, err, "image '%s' has no 'from'", img->name);
	struct buf b = BUF_INIT;
	if (canon(p, n, &b, 0, err) < 0) {
		buf_free(&b);
		return -1;
	}
	buf_append(&b, "", 1);
	img->canonical = buf_steal(&b);
	return 0;
}

static int parse_config(struct parser *p, const yaml_node_t *n, struct ocitree_error **err)
{
	if (is_null(n))
		return 0;
	if (n->type != YAML_MAPPING_NODE)
		return perr(p, n, err, "'config': want a map, found %s", kind_name(n));
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
		const yaml_node_t *kn = node(p, pr->key), *vn = node(p, pr->value);
		_cleanup_free_ char *k = scalar(p, kn, "config", err);
		if (!k)
			return -1;
		if (strcmp(k, "prerequisites") != 0)
			return perr(p, kn, err, "unknown key '%s' in 'config' (prerequisites)", k);
		if (p->r->prerequisites)
			return perr(p, kn, err, "'prerequisites' given twice");
		char **v = string_list(p, vn, "prerequisites", false, err);
		if (!v)
			return -1;
		size_t cnt = strv_len(v);
		p->r->prerequisites = xcalloc(cnt + 1, sizeof(char *));
		p->r->prerequisite_pos = xcalloc(cnt + 1, sizeof(*p->r->prerequisite_pos));
		for (size_t i = 0; i < cnt; i++) {
			p->r->prerequisites[i] = resolve(p, v[i]);
			p->r->prerequisite_pos[i] = vn->type == YAML_SEQUENCE_NODE
			                                ? pos_of(node(p, vn->data.sequence.items.start[i]))
			                                : pos_of(vn);
		}
		strv_free(v);
	}
	return 0;
}

static int parse_root(struct parser *p, struct ocitree_error **err)
{
	yaml_node_t *root = yaml_document_get_root_node(&p->doc);
	if (!root)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: the recipe is empty", p->what);
	if (root->type != YAML_MAPPING_NODE)
		return perr(p, root, err, "want a map of image names to images, found %s", kind_name(root));
	size_t cnt = (size_t)(root->data.mapping.pairs.top - root->data.mapping.pairs.start);
	p->r->images = xcalloc(cnt ? cnt : 1, sizeof(*p->r->images));
	bool had_config = false;
	for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++) {
		const yaml_node_t *kn = node(p, pr->key), *vn = node(p, pr->value);
		_cleanup_free_ char *name = scalar(p, kn, "image name", err);
		if (!name)
			return -1;
		if (strcmp(name, "config") == 0) {
			if (had_config)
				return perr(p, kn, err, "'config' given twice");
			had_config = true;
			if (parse_config(p, vn, err) < 0)
				return -1;
			continue;
		}
		struct ocitree_error *e = NULL;
		if (ocitree_tag_check(name, &e) < 0) {
			perr(p, kn, err, "image name '%s' cannot be a tag: %s", name, e->msg);
			ocitree_error_free(e);
			return -1;
		}
		if (ocitree_recipe_find(p->r, name))
			return perr(p, kn, err, "image '%s' defined twice", name);
		struct ocitree_recipe_image *img = &p->r->images[p->r->n_images++];
		img->name = steal_pointer(&name);
		img->pos = pos_of(kn);
		img->recipe = p->r;
		if (parse_image(p, img, vn, err) < 0)
			return -1;
	}
	if (p->r->n_images == 0)
		return perr(p, root, err, "the recipe defines no image");
	return 0;
}

static char *dir_of(const char *path)
{
	_cleanup_free_ char *cwd = getcwd(NULL, 0);
	if (!cwd)
		cwd = xstrdup("/");
	const char *slash = path ? strrchr(path, '/') : NULL;
	if (!slash)
		return steal_pointer(&cwd);
	_cleanup_free_ char *d = slash == path ? xstrdup("/") : xstrndup(path, (size_t)(slash - path));
	if (d[0] == '/')
		return steal_pointer(&d);
	return xasprintf("%s/%s", cwd, d);
}

OCITREE_EXPORT struct ocitree_recipe *ocitree_recipe_parse(const char *text, size_t len, const char *path,
                                                           const struct ocitree_strmap *subst,
                                                           struct ocitree_error **err)
{
	const char *what = path ? path : "<recipe>";
	_cleanup_free_ char *t = ocitree_recipe_substitute(text, len, subst, what, err);
	if (!t)
		return NULL;
	struct ocitree_recipe *r = xcalloc(1, sizeof(*r));
	r->path = xstrdup(what);
	r->dir = dir_of(path);
	struct parser p = {.what = what, .r = r, .budget = WALK_BUDGET};
	yaml_parser_t yp;
	if (!yaml_parser_initialize(&yp))
		oom("yaml parser");
	yaml_parser_set_input_string(&yp, (const unsigned char *)t, strlen(t));
	if (!yaml_parser_load(&yp, &p.doc)) {
		const yaml_mark_t *m = yp.problem ? &yp.problem_mark : &yp.context_mark;
		ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s:%zu:%zu: %s%s%s", what, m->line + 1, m->column + 1,
		                   yp.context ? yp.context : "", yp.context ? ": " : "",
		                   yp.problem ? yp.problem : "malformed YAML");
		yaml_parser_delete(&yp);
		ocitree_recipe_free(r);
		return NULL;
	}
	/* one document: stacker reads one, and a second would be ignored
	 * silently */
	yaml_document_t extra;
	bool more = false;
	if (yaml_parser_load(&yp, &extra)) {
		more = yaml_document_get_root_node(&extra) != NULL;
		if (more) {
			yaml_node_t *n = yaml_document_get_root_node(&extra);
			ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s:%zu:%zu: a second YAML document", what,
			                   n->start_mark.line + 1, n->start_mark.column + 1);
		}
		yaml_document_delete(&extra);
	} else {
		more = true;
		const yaml_mark_t *m = &yp.problem_mark;
		ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s:%zu:%zu: %s", what, m->line + 1, m->column + 1,
		                   yp.problem ? yp.problem : "malformed YAML");
	}
	yaml_parser_delete(&yp);
	int ret = more ? -1 : parse_root(&p, err);
	yaml_document_delete(&p.doc);
	if (ret < 0) {
		ocitree_recipe_free(r);
		return NULL;
	}
	return r;
}

OCITREE_EXPORT struct ocitree_recipe *ocitree_recipe_load(const char *path, const struct ocitree_strmap *subst,
                                                          struct ocitree_error **err)
{
	_cleanup_buf_ struct buf b = BUF_INIT;
	if (read_file_at(AT_FDCWD, path, RECIPE_MAX_SIZE, &b, path, err) < 0)
		return ocitree_error_prefix(err, "read recipe"), NULL;
	return ocitree_recipe_parse(b.data ? b.data : "", b.len, path, subst, err);
}

OCITREE_EXPORT int ocitree_recipe_subst_load(struct ocitree_strmap *subst, const char *path, struct ocitree_error **err)
{
	_cleanup_buf_ struct buf b = BUF_INIT;
	if (read_file_at(AT_FDCWD, path, RECIPE_MAX_SIZE, &b, path, err) < 0)
		return ocitree_error_prefix(err, "read substitution file");
	struct ocitree_recipe dummy = {0};
	struct parser p = {.what = path, .r = &dummy, .budget = WALK_BUDGET};
	yaml_parser_t yp;
	if (!yaml_parser_initialize(&yp))
		oom("yaml parser");
	yaml_parser_set_input_string(&yp, (const unsigned char *)(b.data ? b.data : ""), b.len);
	if (!yaml_parser_load(&yp, &p.doc)) {
		ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s:%zu:%zu: %s", path, yp.problem_mark.line + 1,
		                   yp.problem_mark.column + 1, yp.problem ? yp.problem : "malformed YAML");
		yaml_parser_delete(&yp);
		return -1;
	}
	yaml_parser_delete(&yp);
	int ret = 0;
	yaml_node_t *root = yaml_document_get_root_node(&p.doc);
	if (root && !is_null(root)) {
		struct ocitree_strmap m = {0};
		ret = string_map(&p, root, "substitutions", &m, err);
		for (size_t i = 0; ret == 0 && i < m.n; i++)
			ocitree_strmap_set(subst, m.keys[i], m.values[i]);
		ocitree_strmap_clear(&m);
	}
	yaml_document_delete(&p.doc);
	return ret;
}

/* ---- the model ---- */

static void image_clear(struct ocitree_recipe_image *img)
{
	free(img->name);
	free(img->from.url);
	free(img->from.tag);
	free(img->from.path);
	free(img->from.ref);
	for (size_t i = 0; i < img->n_imports; i++) {
		struct ocitree_recipe_import *im = &img->imports[i];
		free(im->path);
		free(im->source);
		free(im->image);
		free(im->image_path);
		free(im->dest);
		free(im->hash);
	}
	free(img->imports);
	strv_free(img->run);
	ocitree_strmap_clear(&img->environment);
	ocitree_strmap_clear(&img->labels);
	ocitree_strmap_clear(&img->annotations);
	ocitree_strmap_clear(&img->build_env);
	strv_free(img->build_env_passthrough);
	free(img->working_dir);
	strv_free(img->volumes);
	strv_free(img->cmd);
	strv_free(img->entrypoint);
	strv_free(img->full_command);
	free(img->user);
	for (size_t i = 0; i < img->n_binds; i++) {
		free(img->binds[i].source);
		free(img->binds[i].dest);
	}
	free(img->binds);
	strv_free(img->apply);
	free(img->apply_pos);
	free(img->canonical);
}

OCITREE_EXPORT void ocitree_recipe_free(struct ocitree_recipe *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_images; i++)
		image_clear(&r->images[i]);
	free(r->images);
	strv_free(r->prerequisites);
	free(r->prerequisite_pos);
	free(r->path);
	free(r->dir);
	free(r);
}

OCITREE_EXPORT struct ocitree_recipe_image *ocitree_recipe_find(const struct ocitree_recipe *r, const char *name)
{
	for (size_t i = 0; i < r->n_images; i++)
		if (strcmp(r->images[i].name, name) == 0)
			return &r->images[i];
	return NULL;
}

OCITREE_EXPORT char **ocitree_shell_split(const char *s, struct ocitree_error **err)
{
	char **v = NULL;
	size_t cap = 0, n = 0;
	GROW(v, cap, 1);
	v[0] = NULL;
	struct buf w = BUF_INIT;
	bool in_word = false;
	for (const char *c = s;; c++) {
		if (*c == '\0' || *c == ' ' || *c == '\t' || *c == '\n') {
			if (in_word) {
				buf_append(&w, "", 1);
				GROW(v, cap, n + 2);
				v[n++] = buf_steal(&w);
				v[n] = NULL;
				in_word = false;
			}
			if (*c == '\0')
				break;
			continue;
		}
		in_word = true;
		if (*c == '\'') {
			const char *end = strchr(c + 1, '\'');
			if (!end)
				goto unclosed;
			buf_append(&w, c + 1, (size_t)(end - c - 1));
			c = end;
		} else if (*c == '"') {
			for (c++; *c && *c != '"'; c++) {
				if (*c == '\\' && (c[1] == '"' || c[1] == '\\' || c[1] == '$' || c[1] == '`'))
					c++;
				buf_append(&w, c, 1);
			}
			if (!*c)
				goto unclosed;
		} else if (*c == '\\' && c[1]) {
			c++;
			buf_append(&w, c, 1);
		} else {
			buf_append(&w, c, 1);
		}
	}
	buf_free(&w);
	return v;
unclosed:
	buf_free(&w);
	strv_free(v);
	return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "unclosed quote in '%s'", s), NULL;
}
