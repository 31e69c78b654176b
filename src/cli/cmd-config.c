/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree config: change an image's configuration (user, ports, env,
 * entrypoint, labels, ...) and write it as a new image, the way umoci config
 * does.
 */
#include "config.h"

#include "cli.h"

enum {
	OPT_FIELD = OPT_COMMAND_BASE, /* OPT_FIELD + i: fields[i] */
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
	struct layer_opts lo; /* --image, --tag, --platform, the history options */
	const char *user, *workdir, *stopsignal, *created, *author, *arch, *os, *variant, *os_version;
	struct strv ports, env, entrypoint, cmd, volumes, labels, annotations, clear;
};

static void config_opts_clear(struct config_opts *o)
{
	layer_opts_clear(&o->lo);
	struct strv *all[] = {&o->ports, &o->env, &o->entrypoint, &o->cmd, &o->volumes, &o->labels, &o->annotations, &o->clear};
	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		strv_free(all[i]->v);
}

/* Most of umoci config's options each set one field of config_opts: a
 * string (the last one given wins) or a list (each one adds to it).  One
 * table says which, instead of an option table, an enum and a switch that
 * had to agree line for line. */
struct config_field {
	const char *option;
	size_t offset;
	bool list; /* a struct strv, else a const char * */
};
#define STR_FIELD(option, field)  {option, offsetof(struct config_opts, field), false}
#define LIST_FIELD(option, field) {option, offsetof(struct config_opts, field), true}
static const struct config_field fields[] = {
	STR_FIELD("config.user", user),
	LIST_FIELD("config.exposedports", ports),
	LIST_FIELD("config.env", env),
	LIST_FIELD("config.entrypoint", entrypoint),
	LIST_FIELD("config.cmd", cmd),
	LIST_FIELD("config.volume", volumes),
	LIST_FIELD("config.label", labels),
	STR_FIELD("config.workingdir", workdir),
	STR_FIELD("config.stopsignal", stopsignal),
	STR_FIELD("created", created),
	STR_FIELD("author", author),
	STR_FIELD("architecture", arch),
	STR_FIELD("os", os),
	/* umoci 0.6's names for the two above (cmd/umoci/config.go) */
	STR_FIELD("platform.arch", arch),
	STR_FIELD("platform.os", os),
	STR_FIELD("platform.variant", variant),
	STR_FIELD("platform.os.version", os_version),
	LIST_FIELD("manifest.annotation", annotations),
	LIST_FIELD("clear", clear),
};

/* layer_opts_parse()'s callback for the options of fields[]. */
static int field_opt(int opt, const char *arg, void *data, struct ocitree_error **err)
{
	if (opt < OPT_FIELD || opt >= OPT_FIELD + (int)ARRAY_SIZE(fields))
		return cli_usage_error(err, "unknown option");
	const struct config_field *f = &fields[opt - OPT_FIELD];
	void *field = (char *)data + f->offset;
	if (f->list)
		strv_push(field, arg);
	else
		*(const char **)field = arg;
	return 0;
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
	static const struct option common[] = {
		LAYER_IMAGE_OPTION,
		LAYER_TAG_OPTION,
		PLATFORM_OPTION,
		HISTORY_OPTIONS,
		CLI_HELP_OPTION,
		{NULL, 0, NULL, 0},
	};
	struct option opts[ARRAY_SIZE(fields) + ARRAY_SIZE(common)];
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
		opts[i] = (struct option){fields[i].option, required_argument, NULL, OPT_FIELD + (int)i};
	memcpy(opts + ARRAY_SIZE(fields), common, sizeof(common));
	int r = layer_opts_parse(argc, argv, opts, &o->lo, field_opt, o, err);
	if (r != 0)
		return r;
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
	return history_opts_check(&o->lo.hist, err);
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
	if (!o->lo.hist.no_history) {
		struct ocitree_history h;
		history_opts_entry(&o->lo.hist, c, "ocitree config", true, &h);
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
	struct ocitree_layout *l = cli_open_layout(o.lo.image.path, err);
	if (l && ocitree_layout_hold_blobs(l, err) == 0) {
		struct ocitree_image *img = cli_open_image(l, o.lo.image.tag, &o.lo.platform, err);
		if (img) {
			apply(&o, img);
			const char *tag = o.lo.tag ? o.lo.tag : o.lo.image.tag;
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
