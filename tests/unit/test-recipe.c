/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of recipes: every directive of stacker.yaml, substitutions,
 * errors that name file, line and column, the build plan's order and its
 * cycles, and the cache key.
 */
#include "config.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "ocitree/recipe.h"
#include "tap.h"
#include "util.h"

static char tmp[64];

static void put(const char *name, const char *text)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", tmp, name);
	FILE *f = fopen(p, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		abort();
}

static struct ocitree_recipe *parse(const char *text, const struct ocitree_strmap *subst, char **msg)
{
	struct ocitree_error *err = NULL;
	_cleanup_free_ char *path = xasprintf("%s/stacker.yaml", tmp);
	struct ocitree_recipe *r = ocitree_recipe_parse(text, strlen(text), path, subst, &err);
	if (msg)
		*msg = NULL;
	if (!r && err) {
		/* drop the directory so the tests read as the user would */
		const char *m = err->msg;
		if (str_has_prefix(m, tmp))
			m += strlen(tmp) + 1;
		if (msg)
			*msg = xstrdup(m);
		else
			diag("%s", m);
	}
	ocitree_error_free(err);
	return r;
}

static void expect_error(const char *text, const char *want, const char *what)
{
	_cleanup_free_ char *msg = NULL;
	struct ocitree_recipe *r = parse(text, NULL, &msg);
	ok(!r, "%s: refused", what);
	is_str(msg, want, "%s: message", what);
	ocitree_recipe_free(r);
}

static void test_directives(void)
{
	const char *text = "config:\n"
	                   "  prerequisites: [pre.yaml]\n"
	                   "base:\n"
	                   "  from:\n"
	                   "    type: oci\n"
	                   "    url: layout:v1\n"
	                   "  import:\n"
	                   "    - files/a.txt\n"
	                   "    - path: dir/\n"
	                   "      dest: /opt/dir\n"
	                   "  run: |\n"
	                   "    echo hi\n"
	                   "  environment:\n"
	                   "    A: \"1\"\n"
	                   "    EMPTY:\n"
	                   "  labels: {l: v}\n"
	                   "  annotations:\n"
	                   "    org.example.a: x\n"
	                   "  working_dir: /srv\n"
	                   "  volumes: [/data, /cache]\n"
	                   "  cmd: \"/bin/sh -c 'echo a b'\"\n"
	                   "  entrypoint: [/usr/bin/env, X=1]\n"
	                   "  user: \"1000:1000\"\n"
	                   "  build_env:\n"
	                   "    B: two\n"
	                   "  build_env_passthrough: [\"^FOO$\", \"^HTTP\"]\n"
	                   "  binds:\n"
	                   "    - /tmp\n"
	                   "    - /etc/hosts -> /hosts\n"
	                   "    - source: rel\n"
	                   "      dest: /r\n"
	                   "child:\n"
	                   "  from: {type: built, tag: base}\n"
	                   "  imports:\n"
	                   "    - stacker://base/etc/os-release\n"
	                   "  run:\n"
	                   "    - echo one\n"
	                   "    - echo two\n"
	                   "  full_command: /bin/true --x\n"
	                   "  build_only: yes\n"
	                   "  runtime_user: nobody\n"
	                   "  apply: [base]\n"
	                   "s: {from: {type: scratch}}\n"
	                   "t: {from: {type: tar, url: /r.tar}}\n"
	                   "d: {from: {type: docker, url: \"docker.io/library/alpine:3\", insecure: true}}\n"
	                   "o: {from: {type: oci, url: \"oci:/l\"}}\n";
	struct ocitree_recipe *r = parse(text, NULL, NULL);
	ok(r, "a recipe with every directive parses");
	if (!r)
		return;
	is_int(r->n_images, 6, "six images, config is not one");
	_cleanup_free_ char *pre = xasprintf("%s/pre.yaml", tmp);
	is_str(r->prerequisites ? r->prerequisites[0] : NULL, pre, "prerequisites are relative to the recipe");
	is_int(r->prerequisite_pos[0].line, 2, "prerequisite line");
	struct ocitree_recipe_image *b = ocitree_recipe_find(r, "base");
	ok(b && b->from.type == OCITREE_FROM_OCI, "from oci");
	_cleanup_free_ char *layout = xasprintf("%s/layout", tmp);
	is_str(b->from.path, layout, "oci url: the layout, relative to the recipe");
	is_str(b->from.ref, "v1", "oci url: the tag");
	ok(b->legacy_import, "import (not imports)");
	is_int(b->n_imports, 2, "two imports");
	_cleanup_free_ char *a = xasprintf("%s/files/a.txt", tmp);
	is_str(b->imports[0].source, a, "a local import, resolved");
	ok(!b->imports[0].dest, "no dest");
	is_int(b->imports[0].pos.line, 8, "import line");
	is_int(b->imports[0].pos.column, 7, "import column");
	_cleanup_free_ char *dir = xasprintf("%s/dir/", tmp);
	is_str(b->imports[1].source, dir, "a directory import keeps its '/'");
	is_str(b->imports[1].dest, "/opt/dir", "import dest");
	ok(b->run && !b->run[1], "run as a string is one step");
	is_str(b->run[0], "echo hi\n", "run text");
	is_str(ocitree_strmap_get(&b->environment, "A"), "1", "environment");
	is_str(ocitree_strmap_get(&b->environment, "EMPTY"), "", "an empty environment value");
	is_str(ocitree_strmap_get(&b->labels, "l"), "v", "labels");
	is_str(ocitree_strmap_get(&b->annotations, "org.example.a"), "x", "annotations");
	is_str(b->working_dir, "/srv", "working_dir");
	ok(b->volumes && strv_len(b->volumes) == 2 && strcmp(b->volumes[1], "/cache") == 0, "volumes");
	ok(b->cmd && strv_len(b->cmd) == 3 && strcmp(b->cmd[2], "echo a b") == 0, "cmd split as a shell does");
	ok(b->entrypoint && strv_len(b->entrypoint) == 2 && strcmp(b->entrypoint[1], "X=1") == 0,
	   "entrypoint as a list");
	is_str(b->user, "1000:1000", "user");
	is_str(ocitree_strmap_get(&b->build_env, "B"), "two", "build_env");
	ok(b->build_env_passthrough && strv_len(b->build_env_passthrough) == 2, "build_env_passthrough");
	is_int(b->n_binds, 3, "three binds");
	is_str(b->binds[0].dest, "/tmp", "a bind 'SRC' binds to the same path");
	is_str(b->binds[1].source, "/etc/hosts", "'SRC -> DST' source");
	is_str(b->binds[1].dest, "/hosts", "'SRC -> DST' dest");
	_cleanup_free_ char *rel = xasprintf("%s/rel", tmp);
	is_str(b->binds[2].source, rel, "a bind map, relative source");
	ok(!b->build_only, "not build_only");

	struct ocitree_recipe_image *c = ocitree_recipe_find(r, "child");
	ok(c->from.type == OCITREE_FROM_BUILT, "from built");
	is_str(c->from.tag, "base", "built tag");
	ok(!c->legacy_import, "imports");
	is_str(c->imports[0].image, "base", "stacker:// image");
	is_str(c->imports[0].image_path, "/etc/os-release", "stacker:// path");
	ok(!c->imports[0].source, "stacker:// is not local");
	ok(c->run && strv_len(c->run) == 2, "run as a list");
	ok(c->full_command && strv_len(c->full_command) == 2, "full_command");
	ok(c->build_only, "build_only: yes");
	is_str(c->user, "nobody", "runtime_user is user");
	is_str(c->apply ? c->apply[0] : NULL, "base", "apply");
	ok(ocitree_recipe_find(r, "s")->from.type == OCITREE_FROM_SCRATCH, "from scratch");
	struct ocitree_recipe_image *t = ocitree_recipe_find(r, "t");
	ok(t->from.type == OCITREE_FROM_TAR && strcmp(t->from.path, "/r.tar") == 0, "from tar");
	struct ocitree_recipe_image *d = ocitree_recipe_find(r, "d");
	ok(d->from.type == OCITREE_FROM_DOCKER && d->from.insecure, "from docker, insecure");
	is_str(d->from.url, "docker://docker.io/library/alpine:3", "docker url gets its transport");
	struct ocitree_recipe_image *o = ocitree_recipe_find(r, "o");
	is_str(o->from.path, "/l", "oci: prefix, absolute path");
	is_str(o->from.ref, "latest", "oci url without tag: latest");
	ocitree_recipe_free(r);
}

static void test_substitutions(void)
{
	struct ocitree_strmap s = {0};
	struct ocitree_error *err = NULL;
	ok(ocitree_recipe_subst_add(&s, "TAG=v2", &err) == 0, "K=V");
	ok(ocitree_recipe_subst_add(&s, "EQ=a=b", &err) == 0, "a value with '='");
	ok(ocitree_recipe_subst_add(&s, "noequals", &err) < 0 && err->kind == OCITREE_ERROR_USAGE, "no '=' refused");
	ocitree_error_free(err);
	err = NULL;
	put("subst.yaml", "FILEVAR: from-file\nTAG: v3\n");
	_cleanup_free_ char *sf = xasprintf("%s/subst.yaml", tmp);
	ok(ocitree_recipe_subst_load(&s, sf, &err) == 0, "substitution file");
	struct ocitree_recipe *r = parse("x:\n  from: {type: oci, url: \"l:${{TAG}}\"}\n"
	                                 "  run: echo ${{FILEVAR}} ${{EQ}} ${{NONE:dflt}} ${{E:}}. $HOME ${PATH}\n",
	                                 &s, NULL);
	ok(r, "substituted recipe parses");
	if (r) {
		is_str(r->images[0].from.ref, "v3", "the file's value (read later) wins");
		is_str(r->images[0].run[0], "echo from-file a=b dflt . $HOME ${PATH}",
		       "values, defaults, shell left alone");
	}
	ocitree_recipe_free(r);
	_cleanup_free_ char *msg = NULL;
	r = parse("x:\n  from: {type: scratch}\n  run: echo ${{MISSING}}\n", &s, &msg);
	ok(!r, "a missing variable fails");
	is_str(msg, "stacker.yaml:3:13: no value for substitution 'MISSING'", "it is named, with line and column");
	free(msg);
	r = parse("x:\n  from: {type: scratch}\n  run: echo ${{OPEN\n", &s, &msg);
	ok(!r, "an unclosed placeholder fails");
	is_str(msg, "stacker.yaml:3:13: unclosed placeholder '${{'", "named with its place");
	ocitree_strmap_clear(&s);
}

static void test_errors(void)
{
	expect_error("a:\n  from: {type: scratch}\n  rnu: x\n",
	             "stacker.yaml:3:3: unknown directive 'rnu' in image 'a'", "unknown directive");
	expect_error("a:\n  from: {type: scratch}\n  overlay_dirs: []\n",
	             "stacker.yaml:3:3: directive 'overlay_dirs' of image 'a' is not supported by ocitree",
	             "stacker directive ocitree does not do");
	expect_error("a:\n  run: x\n", "stacker.yaml:2:3: image 'a' has no 'from'", "no from");
	expect_error(
	    "a:\n  from: {type: floppy}\n",
	    "stacker.yaml:2:9: 'from' of image 'a': unknown type 'floppy' (scratch, oci, built, tar or docker)",
	    "unknown from type");
	expect_error("a:\n  from: {type: built}\n",
	             "stacker.yaml:2:9: 'from' of image 'a': type built needs a 'tag' (the image it builds on)",
	             "built without tag");
	expect_error("a:\n  from: {type: oci}\n", "stacker.yaml:2:9: 'from' of image 'a': type oci needs a 'url'",
	             "oci without url");
	expect_error("a:\n  from: {type: scratch, colour: red}\n",
	             "stacker.yaml:2:25: unknown key 'colour' in 'from' of image 'a'", "unknown from key");
	expect_error("a:\n  from: {type: scratch}\n  run: {x: 1}\n",
	             "stacker.yaml:3:8: run: want a string or a list of strings, found a map", "run of wrong type");
	expect_error("a:\n  from: {type: scratch}\n  build_only: maybe\n",
	             "stacker.yaml:3:15: build_only: want true or false, found 'maybe'", "bad boolean");
	expect_error("a:\n  from: {type: scratch}\n  binds: [a -> b -> c]\n",
	             "stacker.yaml:3:11: a bind of image 'a': want 'SRC' or 'SRC -> DST'", "bad bind");
	expect_error("a:\n  from: {type: scratch}\n  imports: [{path: x, dest: rel}]\n",
	             "stacker.yaml:3:13: import 'x' of image 'a': 'dest' must be an absolute path", "relative dest");
	expect_error(
	    "a:\n  from: {type: scratch}\n  imports: [http://example.com/x]\n",
	    "stacker.yaml:3:13: import 'http://example.com/x' of image 'a': only local paths and stacker:// are "
	    "supported",
	    "remote import");
	expect_error("a:\n  from: {type: scratch}\n  import: [x]\n  imports: [y]\n",
	             "stacker.yaml:4:3: image 'a' has both 'import' and 'imports'", "import and imports");
	expect_error("a:\n  from: {type: scratch}\n  build_env_passthrough: [\"(\"]\n",
	             "stacker.yaml:3:26: build_env_passthrough of image 'a': bad regular expression '(': "
	             "Unmatched ( or \\(",
	             "bad regex");
	expect_error("a:\n  from: {type: scratch}\na:\n  from: {type: scratch}\n",
	             "stacker.yaml:3:1: image 'a' defined twice", "duplicate image");
	expect_error("a:\n  from: {type: scratch}\n  from: {type: scratch}\n",
	             "stacker.yaml:3:3: directive 'from' given twice in image 'a'", "duplicate directive");
	expect_error("\"a b\":\n  from: {type: scratch}\n",
	             "stacker.yaml:1:1: image name 'a b' cannot be a tag: invalid tag 'a b': only letters, digits, "
	             "'.', '_' and '-' are allowed",
	             "bad image name");
	expect_error("- a\n", "stacker.yaml:1:1: want a map of image names to images, found a list", "not a map");
	expect_error("", "stacker.yaml: the recipe is empty", "empty");
	expect_error("a: [\n", "stacker.yaml:2:1: while parsing a flow node: did not find expected node content",
	             "malformed YAML");
	expect_error("config:\n  colour: red\na: {from: {type: scratch}}\n",
	             "stacker.yaml:2:3: unknown key 'colour' in 'config' (prerequisites)", "unknown config key");
	expect_error("a: &x\n  from: {type: scratch}\n  labels: *x\n",
	             "stacker.yaml:2:9: labels: want a string, found a map", "alias of the image itself");
	expect_error("a:\n  from: {type: scratch}\n  cmd: \"sh -c 'x\"\n",
	             "stacker.yaml:3:8: cmd: unclosed quote in 'sh -c 'x'", "unclosed quote");
}

static struct ocitree_build_plan *plan(const char *file, const char *const *names, size_t n, char **msg)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", tmp, file);
	struct ocitree_error *err = NULL;
	struct ocitree_build_plan *pl = ocitree_build_plan_new(p, NULL, names, n, &err);
	*msg = NULL;
	if (!pl) {
		const char *m = err->msg;
		/* leave out the temporary directory wherever it appears */
		struct buf b = BUF_INIT;
		for (const char *q; (q = strstr(m, tmp)); m = q + strlen(tmp) + 1)
			buf_append(&b, m, (size_t)(q - m));
		buf_puts(&b, m);
		buf_append(&b, "", 1);
		*msg = buf_steal(&b);
	}
	ocitree_error_free(err);
	return pl;
}

static char *order(const struct ocitree_build_plan *p)
{
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < p->n_items; i++)
		buf_printf(&b, "%s%s", i ? " " : "", p->items[i].image->name);
	buf_append(&b, "", 1);
	return buf_steal(&b);
}

static void test_plan(void)
{
	put("pre.yaml", "lib: {from: {type: scratch}}\n");
	put("main.yaml", "config: {prerequisites: [pre.yaml]}\n"
	                 "app:\n  from: {type: built, tag: mid}\n  imports: [stacker://tool/bin/t]\n"
	                 "mid: {from: {type: built, tag: lib}, apply: [extra]}\n"
	                 "tool: {from: {type: scratch}}\n"
	                 "extra: {from: {type: scratch}}\n"
	                 "alone: {from: {type: scratch}}\n");
	char *msg = NULL;
	struct ocitree_build_plan *p = plan("main.yaml", NULL, 0, &msg);
	ok(p, "plan of a recipe with a prerequisite");
	if (p) {
		_cleanup_free_ char *o = order(p);
		is_str(o, "lib extra mid tool app alone", "each image after what it needs, prerequisites first");
		is_int(p->n_recipes, 2, "two recipes");
		const struct ocitree_build_plan_item *app = &p->items[4];
		is_int(app->n_deps, 2, "app needs its base and its import's image");
		is_int(app->base, 2, "app's base is mid");
		is_int(p->items[2].n_deps, 2, "mid needs lib and extra");
	}
	ocitree_build_plan_free(p);
	const char *names[] = {"mid"};
	p = plan("main.yaml", names, 1, &msg);
	if (p) {
		_cleanup_free_ char *o = order(p);
		is_str(o, "lib extra mid", "NAME: that image and what it needs only");
		is_int(p->items[2].base, 0, "positions refer to the restricted plan");
	}
	ocitree_build_plan_free(p);
	const char *bad[] = {"nope"};
	p = plan("main.yaml", bad, 1, &msg);
	ok(!p, "an unknown NAME fails");
	is_str(msg, "no image 'nope' in recipe 'main.yaml' or its prerequisites", "naming it");
	free(msg);

	put("cycle.yaml", "a: {from: {type: built, tag: b}}\nb: {from: {type: scratch}, apply: [c]}\n"
	                  "c: {from: {type: scratch}, imports: [stacker://a/x]}\n");
	p = plan("cycle.yaml", NULL, 0, &msg);
	ok(!p, "a cycle of images fails");
	is_str(msg, "cycle.yaml:1:1: images form a cycle: a -> b -> c -> a", "and names it");
	free(msg);
	put("self.yaml", "a: {from: {type: built, tag: a}}\n");
	p = plan("self.yaml", NULL, 0, &msg);
	is_str(msg, "self.yaml:1:1: images form a cycle: a -> a", "an image built on itself");
	free(msg);
	put("p1.yaml", "config: {prerequisites: [p2.yaml]}\nx: {from: {type: scratch}}\n");
	put("p2.yaml", "config: {prerequisites: [p1.yaml]}\ny: {from: {type: scratch}}\n");
	p = plan("p1.yaml", NULL, 0, &msg);
	ok(!p, "a cycle of prerequisites fails");
	is_str(msg, "prerequisites form a cycle: p1.yaml -> p2.yaml -> p1.yaml", "and names it");
	free(msg);
	put("missing.yaml", "a: {from: {type: built, tag: ghost}}\n");
	p = plan("missing.yaml", NULL, 0, &msg);
	is_str(msg, "missing.yaml:1:11: image 'a' is built on 'ghost', which no recipe defines", "an unknown base");
	free(msg);
	put("dup.yaml", "config: {prerequisites: [pre.yaml]}\nlib: {from: {type: scratch}}\n");
	p = plan("dup.yaml", NULL, 0, &msg);
	is_str(msg, "dup.yaml:2:1: image 'lib' is also defined at pre.yaml:1:1", "an image defined in two recipes");
	free(msg);
	p = plan("nofile.yaml", NULL, 0, &msg);
	ok(!p && msg && strstr(msg, "nofile.yaml"), "a missing recipe is named");
	free(msg);
}

static void key_of(const char *text, const char *base, char out[OCITREE_DIGEST_MAX])
{
	struct ocitree_recipe *r = parse(text, NULL, NULL);
	struct ocitree_error *err = NULL;
	const char *deps[] = {"sha256:1111"};
	out[0] = '\0';
	if (!r || ocitree_build_cache_key(&r->images[0], base, deps, 1, out, &err) < 0)
		diag("%s", err ? err->msg : "parse failed");
	ocitree_error_free(err);
	ocitree_recipe_free(r);
}

static void test_cache_key(void)
{
	_cleanup_free_ char *d = xasprintf("%s/imp", tmp);
	mkdir(d, 0755);
	put("imp/one", "1");
	put("imp/two", "2");
	const char *text = "a:\n  from: {type: scratch}\n  imports: [imp, imp/one]\n  run: x\n";
	char k1[OCITREE_DIGEST_MAX], k2[OCITREE_DIGEST_MAX], k3[OCITREE_DIGEST_MAX];
	key_of(text, "sha256:aa", k1);
	ok(str_has_prefix(k1, "sha256:"), "a key");
	key_of("a:\n  from:\n    type: scratch\n  imports:\n    - imp\n    - 'imp/one'\n  run: \"x\"\n", "sha256:aa",
	       k2);
	is_str(k2, k1, "the same entry spelled otherwise: the same key");
	key_of(text, "sha256:bb", k2);
	ok(strcmp(k1, k2) != 0, "another base: another key");
	key_of("a:\n  from: {type: scratch}\n  imports: [imp, imp/one]\n  run: y\n", "sha256:aa", k2);
	ok(strcmp(k1, k2) != 0, "another run: another key");
	put("imp/two", "22");
	key_of(text, "sha256:aa", k3);
	ok(strcmp(k1, k3) != 0, "a changed file in an imported directory: another key");
	put("imp/two", "2");
	_cleanup_free_ char *two = xasprintf("%s/imp/two", tmp);
	struct timespec ts[2] = {{0, UTIME_OMIT}, {12345, 0}};
	utimensat(AT_FDCWD, two, ts, 0);
	key_of(text, "sha256:aa", k3);
	is_str(k3, k1, "a file's time is not part of the key");
	chmod(two, 0600);
	key_of(text, "sha256:aa", k3);
	ok(strcmp(k1, k3) != 0, "its mode is");
	put("imp/hashed", "abc");
	struct ocitree_recipe *r = parse("a:\n  from: {type: scratch}\n  imports:\n    - path: imp/hashed\n      hash: "
	                                 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n",
	                                 NULL, NULL);
	struct ocitree_error *err = NULL;
	ok(r && ocitree_build_cache_key(&r->images[0], "", NULL, 0, k3, &err) == 0, "an import with its right hash");
	ocitree_recipe_free(r);
	r = parse("a:\n  from: {type: scratch}\n  imports:\n    - path: imp/hashed\n      hash: "
	          "0000000000000000000000000000000000000000000000000000000000000000\n",
	          NULL, NULL);
	ok(r && ocitree_build_cache_key(&r->images[0], "", NULL, 0, k3, &err) < 0 && err->kind == OCITREE_ERROR_DIGEST,
	   "an import with a wrong hash fails");
	ok(err && strstr(err->msg, "stacker.yaml:4:7: import 'imp/hashed' has sha256 ba7816bf"), "naming it: %s",
	   err ? err->msg : "");
	ocitree_error_free(err);
	err = NULL;
	ocitree_recipe_free(r);
	r = parse("a:\n  from: {type: scratch}\n  imports: [gone]\n", NULL, NULL);
	ok(r && ocitree_build_cache_key(&r->images[0], "", NULL, 0, k3, &err) < 0 && strstr(err->msg, "import 'gone'"),
	   "a missing import fails, named");
	ocitree_error_free(err);
	ocitree_recipe_free(r);
}

static void test_shell_split(void)
{
	struct ocitree_error *err = NULL;
	char **v = ocitree_shell_split("a 'b c' \"d \\\"e\\\"\" f\\ g ''", &err);
	ok(v && strv_len(v) == 5, "five words");
	if (v && strv_len(v) == 5) {
		is_str(v[1], "b c", "single quotes");
		is_str(v[2], "d \"e\"", "double quotes with escapes");
		is_str(v[3], "f g", "backslash");
		is_str(v[4], "", "an empty word");
	}
	strv_free(v);
}

int main(void)
{
	snprintf(tmp, sizeof(tmp), "/tmp/test-recipe.XXXXXX");
	if (!mkdtemp(tmp))
		abort();
	test_directives();
	test_substitutions();
	test_errors();
	test_plan();
	test_cache_key();
	test_shell_split();
	_cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		diag("could not remove %s", tmp);
	return done_testing();
}
