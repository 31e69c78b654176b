/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree run: mount an image writable, run a command in a container on
 * the mount through runc or crun, optionally commit what it changed as a
 * new tag, unmount.  The steps are run.c's; this is their order, the
 * temporary directories, and what is kept when the command fails.
 */
#include "config.h"

#include <dirent.h>
#include <sys/stat.h>

#include "run.h"

struct run_args {
	struct image_ref image;
	const char *upper;
	struct image_ref commit; /* --commit, path NULL when not given */
	struct ocitree_container_bind *binds;
	char **bind_bufs;
	size_t n_binds;
	char **env;
	size_t n_env;
	const char *user, *cwd, *runtime, *cache_dir;
	enum ocitree_compression compression;
	struct history_opts history;
	char **cmd; /* NULL: the image's */
	struct platform_opt platform;
};

static void run_args_clear(struct run_args *a)
{
	image_ref_clear(&a->image);
	image_ref_clear(&a->commit);
	platform_opt_clear(&a->platform);
	for (size_t i = 0; i < a->n_binds; i++) {
		free(a->bind_bufs[i]);
		free((char *)a->binds[i].source);
	}
	free(a->bind_bufs);
	free(a->binds);
	strv_free(a->env);
}

/* The options that take a value, to find where the command starts. */
static bool takes_value(const struct option *opts, const char *arg)
{
	if (arg[0] != '-' || arg[1] != '-' || strchr(arg, '='))
		return false;
	for (const struct option *o = opts; o->name; o++)
		if (strcmp(o->name, arg + 2) == 0)
			return o->has_arg == required_argument;
	return false;
}

static int add_bind(struct run_args *a, const char *spec, struct ocitree_error **err)
{
	struct ocitree_container_bind b;
	char *buf = NULL;
	if (ocitree_container_bind_parse(spec, &b, &buf, err) < 0)
		return -1;
	char *src = realpath(b.source, NULL);
	if (!src) {
		int e = errno;
		free(buf);
		return ocitree_error_set(err, e, "--bind %s: source '%s'", spec, b.source);
	}
	b.source = src;
	a->binds = xrealloc(a->binds, (a->n_binds + 1) * sizeof(*a->binds));
	a->bind_bufs = xrealloc(a->bind_bufs, (a->n_binds + 1) * sizeof(*a->bind_bufs));
	a->binds[a->n_binds] = b;
	a->bind_bufs[a->n_binds++] = buf;
	return 0;
}

static void add_env(struct run_args *a, const char *kv)
{
	a->env = xrealloc(a->env, (a->n_env + 2) * sizeof(*a->env));
	/* NAME alone passes the variable on from here, as docker run -e does */
	const char *v = strchr(kv, '=') ? NULL : getenv(kv);
	a->env[a->n_env++] = v ? xasprintf("%s=%s", kv, v) : xstrdup(kv);
	a->env[a->n_env] = NULL;
}

static bool dir_empty(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return true;
	struct dirent *e;
	bool empty = true;
	while (empty && (e = readdir(d)))
		empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
	closedir(d);
	return empty;
}

static bool same_dir(const char *x, const char *y)
{
	struct stat a, b;
	return stat(x, &a) == 0 && stat(y, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* The history entry of a --commit: the command, as a build's run step. */
static char *command_line(const struct run_args *a, const struct ocitree_config *c)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, "ocitree run");
	if (a->cmd) {
		buf_puts(&b, " --");
		for (char **p = a->cmd; *p; p++)
			buf_printf(&b, " %s", *p);
	} else {
		for (char **p = c->config.entrypoint; p && *p; p++)
			buf_printf(&b, " %s", *p);
		for (char **p = c->config.cmd; p && *p; p++)
			buf_printf(&b, " %s", *p);
	}
	return buf_steal(&b);
}

static int commit_upper(const struct run_args *a, const char *upper, const char *layout, const struct ocitree_config *c,
                        struct ocitree_error **err)
{
	struct ocitree_upper *u = ocitree_upper_open(upper, NULL, false, err);
	if (!u)
		return -1;
	int r = -1;
	struct ocitree_history h = {0};
	struct ocitree_layout *l = cli_open_layout(layout, err);
	if (l) {
		_cleanup_free_ char *by = command_line(a, c);
		if (!a->history.no_history)
			history_opts_entry(&a->history, NULL, by, false, &h);
		struct ocitree_commit_options o = {.compression = a->compression,
		                                   .history = a->history.no_history ? NULL : &h,
		                                   .cache_dir = a->cache_dir,
		                                   .progress = cli_progress};
		struct ocitree_commit_result res;
		r = ocitree_upper_commit(u, l, a->commit.tag, &o, &res, err);
		cli_progress_end();
		if (r == 0)
			fprintf(stderr, "ocitree run: committed %s: %s (%s%s)\n", a->commit.tag, res.manifest,
			        *res.layer ? "layer " : "no changes: no layer", res.layer);
	}
	ocitree_history_clear(&h);
	ocitree_layout_free(l);
	ocitree_upper_free(u);
	return r;
}

static int do_run(struct run_args *a, int *status, struct ocitree_error **err)
{
	/* what can be refused is refused before anything is mounted */
	_cleanup_free_ char *runtime = run_find_runtime(a->runtime, err);
	if (!runtime)
		return -1;
	if (a->commit.path && !same_dir(a->commit.path, a->image.path))
		return cli_usage_error(err, "--commit %s:%s: the new tag goes into the layout of --image (%s)",
		                       a->commit.path, a->commit.tag, a->image.path);
	_cleanup_free_ char *layout = realpath(a->image.path, NULL);
	if (!layout)
		return ocitree_error_set(err, errno, "open layout '%s'", a->image.path);
	if (geteuid() != 0 && run_userns_enter(err) < 0)
		return -1;

	struct ocitree_layout *l = cli_open_layout(layout, err);
	if (!l)
		return -1;
	int r = -1;
	struct ocitree_image *img = cli_open_image(l, a->image.tag, &a->platform, err);
	struct run_mount *m = NULL;
	_cleanup_free_ char *tmp = NULL, *mp = NULL, *own_upper = NULL, *state = NULL;
	bool keep_upper = false;
	if (!img)
		goto out;
	const char *t = getenv("TMPDIR");
	const char *base = t && *t ? t : "/var/tmp";
	tmp = xasprintf("%s/ocitree-run.XXXXXX", base);
	if (!mkdtemp(tmp)) {
		ocitree_error_set(err, errno, "create a directory in '%s'", base);
		free(tmp);
		tmp = NULL;
		goto out;
	}
	mp = xasprintf("%s/rootfs", tmp);
	state = xasprintf("%s/runtime", tmp);
	if (mkdir(mp, 0755) < 0 || mkdir(state, 0700) < 0) {
		ocitree_error_set(err, errno, "create a directory in '%s'", tmp);
		goto out;
	}
	const char *upper = a->upper;
	if (!upper)
		upper = own_upper = xasprintf("%s/upper", tmp);
	struct run_mount_options mo = {
	    .layout = layout, .tag = a->image.tag, .upper = upper, .cache_dir = a->cache_dir, .mountpoint = mp,
	    .platform = &a->platform};
	m = run_mount_start(&mo, err);
	if (!m)
		goto out;
	struct ocitree_container_spec spec = {.argv = (const char *const *)a->cmd,
	                                      .env = (const char *const *)a->env,
	                                      .cwd = a->cwd,
	                                      .user = a->user,
	                                      .binds = a->binds,
	                                      .n_binds = a->n_binds,
	                                      .terminal = isatty(STDIN_FILENO),
	                                      .userns = run_in_userns()};
	struct run_options ro = {.runtime = runtime, .state_dir = state};
	r = run_container(mp, img->config, &spec, &ro, status, err);
	struct ocitree_error *stop_err = NULL;
	if (run_mount_stop(m, r < 0 ? &stop_err : err) < 0 && r == 0)
		r = -1;
	ocitree_error_free(stop_err);
	m = NULL;
	if (r < 0)
		goto out;
	if (*status != 0) {
		/* a command that changed nothing leaves nothing to look into */
		if (own_upper && !dir_empty(own_upper)) {
			keep_upper = true;
			fprintf(stderr,
			        "ocitree run: the command exited with status %d; its changes are kept in %s%s\n",
			        *status, own_upper, a->commit.path ? " (not committed)" : "");
		} else if (a->commit.path) {
			fprintf(stderr, "ocitree run: the command exited with status %d: not committed\n", *status);
		}
		goto out;
	}
	if (a->commit.path)
		r = commit_upper(a, upper, layout, img->config, err);
out:
	run_mount_stop(m, NULL);
	if (tmp && keep_upper) {
		run_remove_tree(mp);
		run_remove_tree(state);
	} else if (tmp) {
		run_remove_tree(tmp);
	}
	ocitree_image_free(img);
	ocitree_layout_free(l);
	return r;
}

int cmd_run(int argc, char **argv, struct ocitree_error **err)
{
	enum {
		OPT_IMAGE = OPT_COMMAND_BASE,
		OPT_UPPER,
		OPT_COMMIT,
		OPT_BIND,
		OPT_ENV,
		OPT_USER,
		OPT_WORKDIR,
		OPT_RUNTIME,
		OPT_CACHE_DIR,
	};
	static const struct option opts[] = {
	    {"image", required_argument, NULL, OPT_IMAGE},
	    {"upper", required_argument, NULL, OPT_UPPER},
	    {"commit", required_argument, NULL, OPT_COMMIT},
	    {"bind", required_argument, NULL, OPT_BIND},
	    {"env", required_argument, NULL, OPT_ENV},
	    {"user", required_argument, NULL, OPT_USER},
	    {"workdir", required_argument, NULL, OPT_WORKDIR},
	    {"runtime", required_argument, NULL, OPT_RUNTIME},
	    {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
	    PLATFORM_OPTION,
	    COMPRESS_OPTION,
	    HISTORY_OPTIONS,
	    CLI_HELP_OPTION,
	    {NULL, 0, NULL, 0},
	};
	/* the command's own options are not ours: options end at the first
	 * argument that is not one (or at --) */
	int end = 1;
	while (end < argc && argv[end][0] == '-' && strcmp(argv[end], "--") != 0)
		end += takes_value(opts, argv[end]) ? 2 : 1;
	if (end > argc)
		end = argc;
	struct run_args a = {.compression = OCITREE_COMPRESSION_GZIP};
	int c, r = -1, status = 0;
	while ((c = cli_getopt(end, argv, opts, err)) != -1) {
		if (history_opt(&a.history, c, optarg))
			continue;
		switch (c) {
		case OPT_IMAGE:
			image_ref_clear(&a.image);
			if (cli_image_ref(optarg, &a.image, err) < 0)
				goto out;
			break;
		case OPT_UPPER: a.upper = optarg; break;
		case OPT_COMMIT:
			image_ref_clear(&a.commit);
			if (!strchr(optarg, ':')) {
				cli_usage_error(err, "--commit %s: give LAYOUT:NEWTAG", optarg);
				goto out;
			}
			if (cli_image_ref(optarg, &a.commit, err) < 0)
				goto out;
			break;
		case OPT_BIND:
			if (add_bind(&a, optarg, err) < 0)
				goto out;
			break;
		case OPT_ENV: add_env(&a, optarg); break;
		case OPT_USER: a.user = optarg; break;
		case OPT_WORKDIR: a.cwd = optarg; break;
		case OPT_RUNTIME: a.runtime = optarg; break;
		case OPT_CACHE_DIR: a.cache_dir = optarg; break;
		case OPT_PLATFORM:
			if (platform_opt(optarg, &a.platform, err) < 0)
				goto out;
			break;
		case OPT_COMPRESS:
			if (compress_opt(optarg, &a.compression, err) < 0)
				goto out;
			break;
			CLI_HANDLE_HELP_GOTO(r, out);
		default: goto out;
		}
	}
	if (history_opts_check(&a.history, err) < 0)
		goto out;
	if (!a.image.path) {
		cli_usage_error(err, "missing mandatory option --image");
		goto out;
	}
	if (end < argc && strcmp(argv[end], "--") == 0)
		end++;
	if (end < argc)
		a.cmd = argv + end;
	if (a.cwd && a.cwd[0] != '/') {
		cli_usage_error(err, "--workdir %s: must be an absolute path in the container", a.cwd);
		goto out;
	}
	r = do_run(&a, &status, err);
	if (r == 0)
		cli_exit_status = status;
out:
	run_args_clear(&a);
	return r;
}
