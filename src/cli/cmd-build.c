/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree build: a stacker.yaml recipe -> one image per entry.  For each
 * image of the plan (ocitree/recipe.h), in order: its cache key, and when
 * the cache has nothing for it, its base written with the applied layers
 * and the recipe's config (ocitree/build.h), its imports staged, its base
 * mounted writable (run.h), the imports with a destination copied in, the
 * run steps run in a container through /bin/sh, the mount stopped and the
 * upper directory committed as one layer.  The tags are written together
 * at the end, so a failure leaves the layout's tags as they were.
 */
#include "config.h"

#include <fcntl.h>
#include <regex.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cli.h"
#include "ocitree/build.h"
#include "ocitree/recipe.h"
#include "run.h"

extern char **environ;

struct build_args {
	const char *layout;
	const char *file;
	const char *cache_dir;
	const char *runtime;
	struct ocitree_strmap subst;
	bool no_cache;
	bool shell_fail;
	const char *const *names;
	size_t n_names;
};

/* What became of one image of the plan. */
struct built {
	struct ocitree_descriptor desc; /* its manifest */
	char tmp_tag[96];               /* its tag while the build runs, "" when none */
	bool cached;
};

struct build {
	struct build_args *a;
	struct ocitree_build_plan *plan;
	struct ocitree_layout *l;
	char *layout_abs;
	char *cache_dir;
	struct built *out;
	bool tty;
	bool kept; /* a failed image's directory is kept */
};

static void say(const struct build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const struct build *b, const char *fmt, ...)
{
	if (!b->tty)
		return;
	va_list ap;
	va_start(ap, fmt);
	fputs("build: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---- the base of an image ---- */

/* Run skopeo copy from ri's url into dst ("oci:DIR:TAG"). */
static int skopeo_copy(struct build *b, const char *skopeo, const struct ocitree_recipe_image *ri, const char *dst,
                       struct ocitree_error **err)
{
	pid_t pid = fork();
	if (pid < 0)
		return ocitree_error_set(err, errno, "fork");
	if (pid == 0) {
		/* skopeo's own messages say what the network or the registry
		 * refused; its progress goes away when not on a terminal */
		if (!b->tty)
			dup2(open("/dev/null", O_WRONLY), STDOUT_FILENO);
		else
			dup2(STDERR_FILENO, STDOUT_FILENO);
		if (ri->from.insecure)
			execl(skopeo, "skopeo", "copy", "--quiet", "--src-tls-verify=false", ri->from.url, dst,
			      (char *)NULL);
		else
			execl(skopeo, "skopeo", "copy", "--quiet", ri->from.url, dst, (char *)NULL);
		_exit(127);
	}
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return ocitree_error_setk(err, OCITREE_ERROR_FAILED,
		                          "image '%s': skopeo could not copy '%s' (no network, or no such image?)",
		                          ri->name, ri->from.url);
	return 0;
}

/* The base of a `from: docker` image, copied by skopeo into an OCI layout
 * of the cache directory (CACHE/docker, one tag per url), then from there
 * into the layout.  skopeo reuses the blobs that layout has already, so a
 * second build from the same url asks the registry for its manifest and
 * config only, and still sees a tag that moved.  After each copy the cache
 * layout keeps only what its tags reach.  A cache that fails (a blob
 * removed or damaged: the copy checks every digest) is removed and the
 * copy done once more from the registry.  Without a cache directory, the
 * copy goes through tmp. */
static int docker_base(struct build *b, const struct ocitree_recipe_image *ri, const char *tmp,
                       struct ocitree_descriptor *out, struct ocitree_error **err)
{
	_cleanup_free_ char *skopeo = find_program("skopeo");
	if (!skopeo)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED,
		                          "image '%s': from docker '%s' needs skopeo, which is not installed", ri->name,
		                          ri->from.url);
	if (!b->cache_dir) {
		say(b, "%s: copying %s with skopeo", ri->name, ri->from.url);
		_cleanup_free_ char *dst = xasprintf("oci:%s/docker:image", tmp);
		if (skopeo_copy(b, skopeo, ri, dst, err) < 0)
			return -1;
		_cleanup_free_ char *src = xasprintf("%s/docker", tmp);
		return ocitree_build_copy_image(b->l, src, "image", out, err);
	}
	/* one build at a time uses the cache layout: skopeo does not lock
	 * its index.json */
	if (mkdir_p(b->cache_dir, 0700) < 0)
		return ocitree_error_set(err, errno, "create cache directory '%s'", b->cache_dir);
	_cleanup_free_ char *lock = xasprintf("%s/docker.lock", b->cache_dir);
	_cleanup_close_ int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0)
		return ocitree_error_set(err, errno, "open '%s'", lock);
	while (flock(lfd, LOCK_EX) < 0)
		if (errno != EINTR)
			return ocitree_error_set(err, errno, "lock '%s'", lock);
	_cleanup_free_ char *dir = xasprintf("%s/docker", b->cache_dir);
	char key[OCITREE_DIGEST_MAX];
	ocitree_digest_sha256(ri->from.url, strlen(ri->from.url), key);
	/* "u" and 40 hex digits of the url's digest: a tag skopeo takes */
	_cleanup_free_ char *tag = xasprintf("u%.40s", key + strlen("sha256:"));
	_cleanup_free_ char *dst = xasprintf("oci:%s:%s", dir, tag);
	struct stat st;
	bool had = stat(dir, &st) == 0;
	for (int attempt = 0;; attempt++) {
		say(b, "%s: copying %s with skopeo", ri->name, ri->from.url);
		struct ocitree_error *e1 = NULL;
		int ret = skopeo_copy(b, skopeo, ri, dst, &e1);
		if (ret == 0)
			ret = ocitree_build_copy_image(b->l, dir, tag, out, &e1);
		if (ret == 0)
			break;
		if (!had || attempt > 0) {
			if (err)
				*err = e1;
			else
				ocitree_error_free(e1);
			return -1;
		}
		log_warn("image '%s': the cached copy of '%s' failed (%s): removing '%s' and copying again", ri->name,
		         ri->from.url, e1->msg, dir);
		ocitree_error_free(e1);
		run_remove_tree(dir);
	}
	/* what the tags no longer reach goes: one version per url stays */
	struct ocitree_error *e2 = NULL;
	struct ocitree_layout *cl = ocitree_layout_open(dir, &e2);
	if (!cl || ocitree_layout_gc(cl, NULL, &e2) < 0)
		log_warn("cache '%s': %s", dir, e2 ? e2->msg : "cannot open");
	ocitree_error_free(e2);
	ocitree_layout_free(cl);
	return 0;
}

/* The base's manifest (*has false for scratch) and the cache's name for
 * it. */
static int resolve_base(struct build *b, size_t k, const char *tmp, struct ocitree_descriptor *base, bool *has,
                        char key_base[OCITREE_DIGEST_MAX], struct ocitree_error **err)
{
	const struct ocitree_build_plan_item *it = &b->plan->items[k];
	const struct ocitree_recipe_image *ri = it->image;
	*has = true;
	key_base[0] = '\0';
	switch (ri->from.type) {
	case OCITREE_FROM_SCRATCH: *has = false; return 0;
	case OCITREE_FROM_BUILT: ocitree_descriptor_copy(base, &b->out[it->base].desc); break;
	case OCITREE_FROM_OCI:
		if (ocitree_build_copy_image(b->l, ri->from.path, ri->from.ref, base, err) < 0)
			return ocitree_error_prefix(err, "image '%s'", ri->name);
		break;
	case OCITREE_FROM_DOCKER:
		if (docker_base(b, ri, tmp, base, err) < 0)
			return -1;
		break;
	case OCITREE_FROM_TAR:
		/* the tarball's bytes name it; the image is made only when
		 * the cache has nothing */
		*has = false;
		if (ocitree_build_file_digest(ri->from.path, key_base, err) < 0)
			return ocitree_error_prefix(err, "image '%s': from tar", ri->name);
		return 0;
	}
	snprintf(key_base, OCITREE_DIGEST_MAX, "%s", base->digest);
	return 0;
}

/* ---- the run steps ---- */

static bool passes(const struct ocitree_recipe_image *ri, const char *name)
{
	static const char *const dflt[] = {"HTTP_PROXY",  "HTTPS_PROXY", "FTP_PROXY",        "http_proxy",
	                                   "https_proxy", "ftp_proxy",   "SOURCE_DATE_EPOCH"};
	if (!ri->build_env_passthrough) {
		for (size_t i = 0; i < ARRAY_SIZE(dflt); i++)
			if (strcmp(name, dflt[i]) == 0)
				return true;
		return false;
	}
	for (char **re = ri->build_env_passthrough; *re; re++) {
		regex_t rx;
		if (regcomp(&rx, *re, REG_EXTENDED | REG_NOSUB) != 0)
			continue;
		bool m = regexec(&rx, name, 0, NULL, 0) == 0;
		regfree(&rx);
		if (m)
			return true;
	}
	return false;
}

/* The environment of the steps: the host's variables the recipe lets
 * through, then build_env, then STACKER_LAYER_NAME as stacker sets it. */
static char **step_env(const struct ocitree_recipe_image *ri)
{
	size_t n = 0, cap = 0;
	char **v = NULL;
	GROW(v, cap, 1);
	for (char **e = environ; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		if (!eq)
			continue;
		_cleanup_free_ char *name = xstrndup(*e, (size_t)(eq - *e));
		if (!passes(ri, name) || ocitree_strmap_get(&ri->build_env, name))
			continue;
		GROW(v, cap, n + 2);
		v[n++] = xstrdup(*e);
	}
	for (size_t i = 0; i < ri->build_env.n; i++) {
		GROW(v, cap, n + 2);
		v[n++] = xasprintf("%s=%s", ri->build_env.keys[i], ri->build_env.values[i]);
	}
	GROW(v, cap, n + 2);
	v[n++] = xasprintf("STACKER_LAYER_NAME=%s", ri->name);
	v[n] = NULL;
	return v;
}

static int run_steps(struct build *b, const struct ocitree_recipe_image *ri, const char *mnt, const char *stage,
                     const struct ocitree_config *cfg, struct ocitree_error **err)
{
	/* the runtime's mount points the image lacks (/stacker, bind
	 * destinations, /proc...) are removed by run_container() */
	size_t nb = ri->n_binds + 1;
	struct ocitree_container_bind *binds = xcalloc(nb, sizeof(*binds));
	binds[0] = (struct ocitree_container_bind){.source = stage, .destination = "/stacker", .readonly = true};
	for (size_t i = 0; i < ri->n_binds; i++)
		binds[i + 1] =
		    (struct ocitree_container_bind){.source = ri->binds[i].source, .destination = ri->binds[i].dest};
	_cleanup_strv_ char **env = step_env(ri);
	struct run_options ro = {.runtime = b->a->runtime};
	int ret = 0;
	size_t steps = strv_len(ri->run);
	for (size_t i = 0; i < steps && ret == 0; i++) {
		say(b, "%s: step %zu/%zu", ri->name, i + 1, steps);
		const char *argv[] = {"/bin/sh", "-e", "-c", ri->run[i], NULL};
		struct ocitree_container_spec spec = {.argv = argv,
		                                      .env = (const char *const *)env,
		                                      .cwd = "/",
		                                      .user = "0:0",
		                                      .binds = binds,
		                                      .n_binds = nb,
		                                      .userns = run_in_userns()};
		int status = 0;
		fflush(stdout);
		if (run_container(mnt, cfg, &spec, &ro, &status, err) < 0) {
			ret = ocitree_error_prefix(err, "image '%s': step %zu", ri->name, i + 1);
			break;
		}
		if (status != 0) {
			if (b->a->shell_fail && isatty(STDIN_FILENO)) {
				fprintf(stderr,
				        "build: image '%s': step %zu failed (status %d); a shell in its container "
				        "(exit it to end the build)\n",
				        ri->name, i + 1, status);
				const char *sh[] = {"/bin/sh", NULL};
				struct ocitree_container_spec s2 = spec;
				s2.argv = sh;
				s2.terminal = true;
				int ignored;
				struct ocitree_error *e2 = NULL;
				if (run_container(mnt, cfg, &s2, &ro, &ignored, &e2) < 0)
					fprintf(stderr, "build: %s\n", e2->msg);
				ocitree_error_free(e2);
			}
			_cleanup_free_ char *first = xstrdup(ri->run[i]);
			char *nl = strchr(first, '\n');
			if (nl && nl[1])
				strcpy(nl, " ...");
			else if (nl)
				*nl = '\0';
			ret = ocitree_error_setk(err, OCITREE_ERROR_FAILED,
			                         "image '%s': step %zu (%s) exited with status %d", ri->name, i + 1,
			                         first, status);
		}
	}
	free(binds);
	return ret;
}

/* ---- one image ---- */

static const struct ocitree_descriptor *dep_desc(struct build *b, const char *name)
{
	for (size_t i = 0; i < b->plan->n_items; i++)
		if (strcmp(b->plan->items[i].image->name, name) == 0)
			return &b->out[i].desc;
	return NULL;
}

/* Mount the base, copy the imports with a destination, run the steps,
 * unmount, commit.  dir holds upper/, mnt/ and stacker/. */
static int run_and_commit(struct build *b, size_t k, const char *dir, const struct ocitree_descriptor *prepared,
                          const struct ocitree_history *h, struct ocitree_error **err)
{
	const struct ocitree_recipe_image *ri = b->plan->items[k].image;
	struct built *o = &b->out[k];
	_cleanup_free_ char *upper = xasprintf("%s/upper", dir), *mnt = xasprintf("%s/mnt", dir),
	                    *stage = xasprintf("%s/stacker", dir);
	if (mkdir(mnt, 0755) < 0)
		return ocitree_error_set(err, errno, "create '%s'", mnt);
	/* the mount names an image by tag: the prepared image gets one of
	 * its own until the build's tags are written */
	snprintf(o->tmp_tag, sizeof(o->tmp_tag), "ocitree-build-tmp-%ld-%zu", (long)getpid(), k);
	const char *tags[] = {o->tmp_tag};
	const struct ocitree_descriptor *descs[] = {prepared};
	if (ocitree_build_set_tags(b->l, tags, descs, 1, NULL, 0, err) < 0)
		return -1;
	struct ocitree_image *img = ocitree_image_open(b->l, o->tmp_tag, err);
	if (!img)
		return -1;
	int ret = 0;
	struct run_mount_options mo = {
	    .layout = b->layout_abs, .tag = o->tmp_tag, .upper = upper, .cache_dir = b->cache_dir, .mountpoint = mnt};
	say(b, "%s: mounting", ri->name);
	struct run_mount *m = run_mount_start(&mo, err);
	if (!m) {
		ocitree_image_free(img);
		return ocitree_error_prefix(err, "image '%s'", ri->name);
	}
	ret = ocitree_build_copy_dest_imports(ri, stage, mnt, err);
	if (ret < 0)
		ocitree_error_prefix(err, "image '%s'", ri->name);
	if (ret == 0 && ri->run)
		ret = run_steps(b, ri, mnt, stage, img->config, err);
	struct ocitree_error *e2 = NULL;
	if (run_mount_stop(m, ret < 0 ? &e2 : err) < 0 && ret == 0)
		ret = -1;
	ocitree_error_free(e2);
	ocitree_image_free(img);
	if (ret < 0)
		return -1;
	say(b, "%s: committing", ri->name);
	struct ocitree_upper *u = ocitree_upper_open(upper, NULL, false, err);
	if (!u)
		return -1;
	struct ocitree_commit_options co = {.compression = OCITREE_COMPRESSION_GZIP,
	                                    .history = h,
	                                    .cache_dir = b->cache_dir,
	                                    .progress = b->tty ? cli_progress : NULL};
	struct ocitree_commit_result res;
	ret = ocitree_upper_commit(u, b->l, o->tmp_tag, &co, &res, err);
	if (b->tty)
		cli_progress_end();
	ocitree_upper_free(u);
	if (ret < 0)
		return ocitree_error_prefix(err, "image '%s': commit", ri->name);
	ocitree_descriptor_clear(&o->desc);
	o->desc.media_type = xstrdup(OCITREE_MT_OCI_MANIFEST);
	snprintf(o->desc.digest, sizeof(o->desc.digest), "%s", res.manifest);
	o->desc.size = res.manifest_size;
	return 0;
}

static bool needs_rootfs(const struct ocitree_recipe_image *ri)
{
	if (ri->run)
		return true;
	for (size_t i = 0; i < ri->n_imports; i++)
		if (ri->imports[i].dest)
			return true;
	return false;
}

static int build_one(struct build *b, size_t k, struct ocitree_error **err)
{
	const struct ocitree_build_plan_item *it = &b->plan->items[k];
	const struct ocitree_recipe_image *ri = it->image;
	struct built *o = &b->out[k];
	const char *td = getenv("TMPDIR");
	_cleanup_free_ char *dir = xasprintf("%s/ocitree-build.XXXXXX", td && *td ? td : "/var/tmp");
	if (!mkdtemp(dir))
		return ocitree_error_set(err, errno, "create a directory like '%s'", dir);
	struct ocitree_descriptor base = {0}, prepared = {0};
	bool has_base = false;
	/* only steps and imports with a destination need the image's tree */
	bool rootfs = needs_rootfs(ri);
	char key_base[OCITREE_DIGEST_MAX], key[OCITREE_DIGEST_MAX];
	const char **deps = xcalloc(it->n_deps + 1, sizeof(*deps));
	const struct ocitree_descriptor **apply = xcalloc(strv_len(ri->apply) + 1, sizeof(*apply));
	const struct ocitree_descriptor **sources = xcalloc(ri->n_imports + 1, sizeof(*sources));
	struct ocitree_history h = {0};
	_cleanup_free_ char *by = ocitree_build_created_by(ri);
	_cleanup_free_ char *comment = xasprintf("ocitree build %s", ri->name);
	h.created_by = by;
	h.comment = comment;
	int ret = resolve_base(b, k, dir, &base, &has_base, key_base, err);
	for (size_t i = 0; i < it->n_deps; i++)
		deps[i] = b->out[it->deps[i]].desc.digest;
	if (ret == 0)
		ret = ocitree_build_cache_key(ri, key_base, deps, it->n_deps, key, err);
	if (ret == 0 && !b->a->no_cache) {
		int hit = ocitree_build_cache_lookup(b->l, b->cache_dir, ri->build_only ? NULL : ri->name, key,
		                                     &o->desc, err);
		if (hit < 0)
			ret = -1;
		if (hit > 0) {
			o->cached = true;
			printf("%s: %s (cached)\n", ri->name, o->desc.digest);
			goto out;
		}
	}
	if (ret == 0 && ri->from.type == OCITREE_FROM_TAR) {
		say(b, "%s: importing %s", ri->name, ri->from.path);
		ret = ocitree_build_tar_image(b->l, ri->from.path, &base, err);
		if (ret < 0)
			ocitree_error_prefix(err, "image '%s'", ri->name);
		has_base = ret == 0;
	}
	for (size_t i = 0; ret == 0 && ri->apply && ri->apply[i]; i++)
		apply[i] = dep_desc(b, ri->apply[i]);
	for (size_t i = 0; ret == 0 && i < ri->n_imports; i++)
		sources[i] = ri->imports[i].image ? dep_desc(b, ri->imports[i].image) : NULL;
	if (ret == 0) {
		struct ocitree_build_base bb = {.image = ri,
		                                .base = has_base ? &base : NULL,
		                                .apply = apply,
		                                .apply_names = (const char *const *)ri->apply,
		                                .n_apply = strv_len(ri->apply),
		                                .key = key,
		                                .cache_dir = b->cache_dir,
		                                .history = rootfs ? NULL : &h};
		say(b, "%s: preparing", ri->name);
		ret = ocitree_build_write_base(b->l, &bb, &prepared, err);
	}
	if (ret == 0 && rootfs) {
		_cleanup_free_ char *stage = xasprintf("%s/stacker", dir);
		if (mkdir(stage, 0755) < 0)
			ret = ocitree_error_set(err, errno, "create '%s'", stage);
		else if (ocitree_build_stage_imports(b->l, ri, sources, b->cache_dir, stage, err) < 0)
			ret = ocitree_error_prefix(err, "image '%s'", ri->name);
	}
	if (ret == 0 && rootfs) {
		ret = run_and_commit(b, k, dir, &prepared, &h, err);
	} else if (ret == 0) {
		ocitree_descriptor_clear(&o->desc);
		ocitree_descriptor_copy(&o->desc, &prepared);
	}
	if (ret == 0 && b->cache_dir) {
		struct ocitree_error *e2 = NULL;
		if (ocitree_build_cache_store(b->cache_dir, key, &o->desc, &e2) < 0)
			fprintf(stderr, "build: warning: %s\n", e2->msg);
		ocitree_error_free(e2);
	}
	if (ret == 0)
		printf("%s: %s%s\n", ri->name, o->desc.digest, ri->build_only ? " (build only, not tagged)" : "");
out:;
	_cleanup_free_ char *upper = xasprintf("%s/upper", dir);
	if (ret == 0 || !rootfs || access(upper, F_OK) != 0) {
		run_remove_tree(dir);
	} else {
		b->kept = true;
		fprintf(stderr, "build: the changes of image '%s' are kept in '%s/upper' (ocitree run --upper)\n",
		        ri->name, dir);
	}
	ocitree_descriptor_clear(&base);
	ocitree_descriptor_clear(&prepared);
	free(deps);
	free(apply);
	free(sources);
	return ret;
}

/* Temporary tags of builds that were killed (SIGKILL leaves them), to be
 * dropped with this build's tags.  A tag names its build's pid; one whose
 * process is gone is stale. */
static char **stale_tmp_tags(struct build *b)
{
	size_t n = 0, cap = 0;
	char **v = NULL;
	GROW(v, cap, 1);
	v[0] = NULL;
	struct ocitree_error *e = NULL;
	struct ocitree_index *idx = ocitree_layout_read_index(b->l, &e);
	ocitree_error_free(e);
	for (size_t i = 0; idx && i < idx->n_manifests; i++) {
		const char *t = ocitree_descriptor_ref_name(&idx->manifests[i]);
		long pid = 0;
		if (!t || sscanf(t, "ocitree-build-tmp-%ld-", &pid) != 1 || pid <= 0 || pid == (long)getpid())
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		GROW(v, cap, n + 2);
		v[n++] = xstrdup(t);
		v[n] = NULL;
	}
	ocitree_index_free(idx);
	return v;
}

static int build_all(struct build *b, struct ocitree_error **err)
{
	b->out = xcalloc(b->plan->n_items + 1, sizeof(*b->out));
	int ret = 0;
	for (size_t k = 0; k < b->plan->n_items && ret == 0; k++)
		ret = build_one(b, k, err);
	/* all tags at once: the built images, and the temporary ones gone */
	size_t n = b->plan->n_items;
	const char **tags = xcalloc(n + 1, sizeof(*tags));
	const struct ocitree_descriptor **descs = xcalloc(n + 1, sizeof(*descs));
	_cleanup_strv_ char **stale = stale_tmp_tags(b);
	size_t n_stale = strv_len(stale);
	const char **drop = xcalloc(n + n_stale + 1, sizeof(*drop));
	size_t nt = 0, nd = 0;
	for (size_t k = 0; k < n_stale; k++)
		drop[nd++] = stale[k];
	for (size_t k = 0; k < n; k++) {
		if (b->out[k].tmp_tag[0])
			drop[nd++] = b->out[k].tmp_tag;
		if (ret == 0 && !b->plan->items[k].image->build_only) {
			tags[nt] = b->plan->items[k].image->name;
			descs[nt++] = &b->out[k].desc;
		}
	}
	struct ocitree_error *e2 = NULL;
	if ((nt || nd) && ocitree_build_set_tags(b->l, tags, descs, nt, drop, nd, ret < 0 ? &e2 : err) < 0 && ret == 0)
		ret = -1;
	if (e2)
		fprintf(stderr, "build: %s\n", e2->msg);
	ocitree_error_free(e2);
	free(tags);
	free(descs);
	free(drop);
	for (size_t k = 0; k < n; k++)
		ocitree_descriptor_clear(&b->out[k].desc);
	free(b->out);
	return ret;
}

int cmd_build(int argc, char **argv, struct ocitree_error **err)
{
	enum {
		OPT_LAYOUT = OPT_COMMAND_BASE,
		OPT_SUBST,
		OPT_SUBST_FILE,
		OPT_NO_CACHE,
		OPT_SHELL_FAIL,
		OPT_CACHE_DIR,
		OPT_RUNTIME
	};
	static const struct option opts[] = {
	    {"layout", required_argument, NULL, OPT_LAYOUT},
	    {"file", required_argument, NULL, 'f'},
	    {"substitute", required_argument, NULL, OPT_SUBST},
	    {"substitute-file", required_argument, NULL, OPT_SUBST_FILE},
	    {"no-cache", no_argument, NULL, OPT_NO_CACHE},
	    {"shell-fail", no_argument, NULL, OPT_SHELL_FAIL},
	    {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
	    {"runtime", required_argument, NULL, OPT_RUNTIME},
	    CLI_HELP_OPTION,
	    {NULL, 0, NULL, 0},
	};
	struct build_args a = {.file = "stacker.yaml"};
	_cleanup_free_ char *layout = NULL;
	/* --substitute wins over --substitute-file, whatever the order */
	char **cli_subst = xcalloc((size_t)argc + 1, sizeof(char *));
	size_t n_cli = 0;
	int c, ret = -1;
	struct build b = {.a = &a};
	while ((c = cli_getopt(argc, argv, opts, err)) != -1) {
		switch (c) {
		case OPT_LAYOUT:
			free(layout);
			layout = NULL;
			if (cli_layout_path(optarg, &layout, err) < 0)
				goto out;
			break;
		case 'f': a.file = optarg; break;
		case OPT_SUBST: cli_subst[n_cli++] = optarg; break;
		case OPT_SUBST_FILE:
			if (ocitree_recipe_subst_load(&a.subst, optarg, err) < 0)
				goto out;
			break;
		case OPT_NO_CACHE: a.no_cache = true; break;
		case OPT_SHELL_FAIL: a.shell_fail = true; break;
		case OPT_CACHE_DIR: a.cache_dir = optarg; break;
		case OPT_RUNTIME:
			a.runtime = optarg;
			break;
			CLI_HANDLE_HELP_GOTO(ret, out);
		default: goto out;
		}
	}
	for (size_t i = 0; i < n_cli; i++)
		if (ocitree_recipe_subst_add(&a.subst, cli_subst[i], err) < 0)
			goto out;
	if (!layout) {
		cli_usage_error(err, "missing mandatory option --layout");
		goto out;
	}
	a.layout = layout;
	a.names = (const char *const *)argv + optind;
	a.n_names = (size_t)(argc - optind);
	b.plan = ocitree_build_plan_new(a.file, &a.subst, a.names, a.n_names, err);
	if (!b.plan)
		goto out;
	/* what can be refused is refused before anything is built: a missing
	 * runtime when a step will need one */
	bool steps = false;
	for (size_t k = 0; k < b.plan->n_items; k++)
		steps = steps || b.plan->items[k].image->run;
	if (steps) {
		char *rt = run_find_runtime(a.runtime, err);
		if (!rt)
			goto out;
		free(rt);
	}
	/* unprivileged, everything happens as root of a user namespace of
	 * our own, where the mounts are open to every uid of the containers;
	 * entered before anything starts a thread */
	if (geteuid() != 0 && run_userns_enter(err) < 0)
		goto out;
	b.l = cli_open_layout(a.layout, err);
	if (!b.l)
		goto out;
	b.layout_abs = realpath(a.layout, NULL);
	if (!b.layout_abs) {
		ocitree_error_set(err, errno, "layout '%s'", a.layout);
		goto out;
	}
	if (a.cache_dir && mkdir(a.cache_dir, 0700) < 0 && errno != EEXIST) {
		ocitree_error_set(err, errno, "create cache directory '%s'", a.cache_dir);
		goto out;
	}
	b.cache_dir = a.cache_dir ? realpath(a.cache_dir, NULL) : ocitree_cache_dir_default();
	if (!b.cache_dir && a.cache_dir) {
		ocitree_error_set(err, errno, "cache directory '%s'", a.cache_dir);
		goto out;
	}
	b.tty = isatty(STDERR_FILENO);
	/* the layout's blobs stay until the tags are written, whatever a gc
	 * running meanwhile thinks of the untagged images */
	if (ocitree_layout_hold_blobs(b.l, err) < 0)
		goto out;
	ret = build_all(&b, err);
out:
	free(cli_subst);
	ocitree_strmap_clear(&a.subst);
	ocitree_build_plan_free(b.plan);
	ocitree_layout_free(b.l);
	free(b.layout_abs);
	free(b.cache_dir);
	return ret;
}
