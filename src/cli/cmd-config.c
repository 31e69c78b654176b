/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree config: change an image's configuration (user, ports, env,
 * entrypoint, labels, ...) and write it as a new image, the way umoci config
 * does.
 */
#include "config.h"

#include "cli.h"

enum {
	OPT_IMAGE = OPT_COMMAND_BASE,
	OPT_TAG,
	OPT_USER,
	OPT_PORT,
	OPT_ENV,
	OPT_ENTRYPOINT,
	OPT_CMD,
	OPT_VOLUME,
	OPT_LABEL,
	OPT_WORKDIR,
	OPT_STOPSIGNAL,
	OPT_CREATED,
	OPT_AUTHOR,
	OPT_ARCH,
	OPT_OS,
	OPT_VARIANT,
	OPT_OS_VERSION,
	OPT_ANNOTATION,
	OPT_CLEAR,
};

/* Repeatable options collect into a NULL-terminated vector. */
struct strv {
	char **v;
	size_t n;
	bool set;
};

static void strv_push(struct strv *s, const char *v)
{
	s->v = xrealloc(s->v, (s->n + 2) * sizeof(char *));
	s->v[s->n++] = xstrdup(v);
	s->v[s->n] = NULL;
	s->set = true;
}

struct config_opts {
	struct image_ref image;
	const char *tag;
	const char *user, *workdir, *stopsignal, *created, *author, *arch, *os, *variant, *os_version;
	struct strv ports, env, entrypoint, cmd, volumes, labels, annotations, clear;
	struct history_opts history;
	struct platform_opt platform;
};

static void config_opts_clear(struct config_opts *o)
{
	image_ref_clear(&o->image);
	platform_opt_clear(&o->platform);
	struct strv *all[] = {&o->ports, &o->env, &o->entrypoint, &o->cmd, &o->volumes, &o->labels, &o->annotations, &o->clear};
	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		strv_free(all[i]->v);
}

/* "name=value" with a non-empty name. */
static int split_kv(const char *opt, const char *in, char **name, const char **value, struct ocitree_error **err)
{
	const char *eq = strchr(in, '=');
	if (!eq)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid --%s '%s': must be NAME=VALUE", opt, in);
	if (eq == in)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid --%s '%s': empty name", opt, in);
	*name = xstrndup(in, (size_t)(eq - in));
	*value = eq + 1;
	return 0;
}

static int parse(int argc, char **argv, struct config_opts *o, struct ocitree_error **err)
{
	static const struct option opts[] = {
		{"image", required_argument, NULL, OPT_IMAGE},
		{"tag", required_argument, NULL, OPT_TAG},
		{"config.user", required_argument, NULL, OPT_USER},
		{"config.exposedports", required_argument, NULL, OPT_PORT},
		{"config.env", required_argument, NULL, OPT_ENV},
		{"config.entrypoint", required_argument, NULL, OPT_ENTRYPOINT},
		{"config.cmd", required_argument, NULL, OPT_CMD},
		{"config.volume", required_argument, NULL, OPT_VOLUME},
		{"config.label", required_argument, NULL, OPT_LABEL},
		{"config.workingdir", required_argument, NULL, OPT_WORKDIR},
		{"config.stopsignal", required_argument, NULL, OPT_STOPSIGNAL},
		{"created", required_argument, NULL, OPT_CREATED},
		{"author", required_argument, NULL, OPT_AUTHOR},
		{"architecture", required_argument, NULL, OPT_ARCH},
		{"os", required_argument, NULL, OPT_OS},
		/* umoci 0.6's names for the two above (cmd/umoci/config.go) */
		{"platform.arch", required_argument, NULL, OPT_ARCH},
		{"platform.os", required_argument, NULL, OPT_OS},
		{"platform.variant", required_argument, NULL, OPT_VARIANT},
		{"platform.os.version", required_argument, NULL, OPT_OS_VERSION},
		{"manifest.annotation", required_argument, NULL, OPT_ANNOTATION},
		{"clear", required_argument, NULL, OPT_CLEAR},
		PLATFORM_OPTION,
		HISTORY_OPTIONS,
		CLI_HELP_OPTION,
		{NULL, 0, NULL, 0},
	};
	int c;
	while ((c = cli_getopt(argc, argv, opts, err)) != -1) {
		if (history_opt(&o->history, c, optarg))
			continue;
		switch (c) {
		case OPT_IMAGE:
			if (cli_image_ref(optarg, &o->image, err) < 0)
				return -1;
			break;
		case OPT_TAG:
			if (cli_tag_opt(optarg, &o->tag, err) < 0)
				return -1;
			break;
		case OPT_USER: o->user = optarg; break;
		case OPT_PORT: strv_push(&o->ports, optarg); break;
		case OPT_ENV: strv_push(&o->env, optarg); break;
		case OPT_ENTRYPOINT: strv_push(&o->entrypoint, optarg); break;
		case OPT_CMD: strv_push(&o->cmd, optarg); break;
		case OPT_VOLUME: strv_push(&o->volumes, optarg); break;
		case OPT_LABEL: strv_push(&o->labels, optarg); break;
		case OPT_WORKDIR: o->workdir = optarg; break;
		case OPT_STOPSIGNAL: o->stopsignal = optarg; break;
		case OPT_CREATED: o->created = optarg; break;
		case OPT_AUTHOR: o->author = optarg; break;
		case OPT_ARCH: o->arch = optarg; break;
		case OPT_OS: o->os = optarg; break;
		case OPT_VARIANT: o->variant = optarg; break;
		case OPT_OS_VERSION: o->os_version = optarg; break;
		case OPT_ANNOTATION: strv_push(&o->annotations, optarg); break;
		case OPT_CLEAR: strv_push(&o->clear, optarg); break;
		case OPT_PLATFORM:
			if (platform_opt(optarg, &o->platform, err) < 0)
				return -1;
			break;
		CLI_HANDLE_HELP;
		default:
			return -1;
		}
	}
	if (!o->image.path)
		return cli_usage_error(err, "missing mandatory option --image");
	if (cli_expect_args(argc, argv, 0, 0, err) < 0)
		return -1;
	_cleanup_free_ char *created = o->created ? ocitree_time_canonical(o->created) : NULL;
	if (o->created && !created)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
					  "invalid --created '%s': not an RFC 3339 time such as 2024-01-02T03:04:05Z",
					  o->created);
	static const char *const clearable[] = {"config.labels", "manifest.annotations", "config.exposedports",
						"config.env", "config.volume", "config.cmd", "config.entrypoint"};
	for (size_t i = 0; i < o->clear.n; i++) {
		bool ok = false;
		for (size_t k = 0; k < ARRAY_SIZE(clearable); k++)
			ok |= strcmp(o->clear.v[i], clearable[k]) == 0;
		if (strcmp(o->clear.v[i], "rootfs.diffids") == 0)
			return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
						  "invalid --clear 'rootfs.diffids': clearing the layer list is not safe");
		if (!ok)
			return cli_usage_error(err, "invalid --clear '%s': unknown key", o->clear.v[i]);
	}
	/* check the NAME=VALUE forms before anything is written */
	struct strv *kv[] = {&o->env, &o->labels, &o->annotations};
	const char *kvname[] = {"config.env", "config.label", "manifest.annotation"};
	for (size_t k = 0; k < ARRAY_SIZE(kv); k++) {
		for (size_t i = 0; i < kv[k]->n; i++) {
			_cleanup_free_ char *name = NULL;
			const char *value;
			if (split_kv(kvname[k], kv[k]->v[i], &name, &value, err) < 0)
				return -1;
		}
	}
	return history_opts_check(&o->history, err);
}

static bool clearing(const struct config_opts *o, const char *key)
{
	for (size_t i = 0; i < o->clear.n; i++)
		if (strcmp(o->clear.v[i], key) == 0)
			return true;
	return false;
}

static void replace(char **field, const char *value)
{
	free(*field);
	*field = xstrdup(value);
}

static void apply(struct config_opts *o, struct ocitree_image *img)
{
	struct ocitree_config *c = img->config;
	struct ocitree_exec_config *e = &c->config;
	if (clearing(o, "config.labels"))
		ocitree_strmap_clear(&e->labels);
	if (clearing(o, "manifest.annotations"))
		ocitree_strmap_clear(&img->manifest->annotations);
	if (clearing(o, "config.exposedports"))
		ocitree_strmap_clear(&e->exposed_ports);
	if (clearing(o, "config.env")) {
		strv_free(e->env);
		e->env = NULL;
	}
	if (clearing(o, "config.volume"))
		ocitree_strmap_clear(&e->volumes);
	if (clearing(o, "config.cmd")) {
		strv_free(e->cmd);
		e->cmd = NULL;
	}
	if (clearing(o, "config.entrypoint")) {
		strv_free(e->entrypoint);
		e->entrypoint = NULL;
	}
	if (o->created) {
		/* kept with its offset, as umoci does */
		free(c->created);
		c->created = ocitree_time_canonical(o->created);
	}
	if (o->author)
		replace(&c->author, o->author);
	if (o->arch)
		replace(&c->architecture, o->arch);
	if (o->os)
		replace(&c->os, o->os);
	if (o->variant)
		replace(&c->variant, o->variant);
	if (o->os_version)
		replace(&c->os_version, o->os_version);
	if (o->user)
		replace(&e->user, o->user);
	if (o->stopsignal)
		replace(&e->stop_signal, o->stopsignal);
	if (o->workdir)
		replace(&e->working_dir, o->workdir);
	for (size_t i = 0; i < o->ports.n; i++)
		ocitree_strmap_set(&e->exposed_ports, o->ports.v[i], "");
	for (size_t i = 0; i < o->env.n; i++) {
		_cleanup_free_ char *name = NULL;
		const char *value;
		split_kv("config.env", o->env.v[i], &name, &value, NULL);
		ocitree_config_set_env(c, name, value);
	}
	if (o->entrypoint.set) {
		strv_free(e->entrypoint);
		e->entrypoint = steal_pointer(&o->entrypoint.v);
		o->entrypoint.n = 0;
	}
	if (o->cmd.set) {
		strv_free(e->cmd);
		e->cmd = steal_pointer(&o->cmd.v);
		o->cmd.n = 0;
	}
	for (size_t i = 0; i < o->volumes.n; i++)
		ocitree_strmap_set(&e->volumes, o->volumes.v[i], "");
	for (size_t i = 0; i < o->labels.n; i++) {
		_cleanup_free_ char *name = NULL;
		const char *value;
		split_kv("config.label", o->labels.v[i], &name, &value, NULL);
		ocitree_strmap_set(&e->labels, name, value);
	}
	for (size_t i = 0; i < o->annotations.n; i++) {
		_cleanup_free_ char *name = NULL;
		const char *value;
		split_kv("manifest.annotation", o->annotations.v[i], &name, &value, NULL);
		ocitree_strmap_set(&img->manifest->annotations, name, value);
	}
	if (!o->history.no_history) {
		struct ocitree_history h;
		history_opts_entry(&o->history, c, "ocitree config", true, &h);
		ocitree_config_add_history(c, &h);
		ocitree_history_clear(&h);
	}
}

int cmd_config(int argc, char **argv, struct ocitree_error **err)
{
	struct config_opts o = {0};
	int r = parse(argc, argv, &o, err);
	if (r != 0) {
		config_opts_clear(&o);
		return r;
	}
	r = -1;
	struct ocitree_layout *l = cli_open_layout(o.image.path, err);
	if (l && ocitree_layout_hold_blobs(l, err) == 0) {
		struct ocitree_image *img = cli_open_image(l, o.image.tag, &o.platform, err);
		if (img) {
			apply(&o, img);
			const char *tag = o.tag ? o.tag : o.image.tag;
			r = ocitree_image_commit(img, tag, err);
			if (r == 0)
				log_info("tagged '%s' as %s", tag, img->manifest_desc.digest);
		}
		ocitree_image_free(img);
	}
	ocitree_layout_free(l);
	config_opts_clear(&o);
	return r;
}
