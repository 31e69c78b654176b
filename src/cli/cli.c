/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers every command shares: the command table lookup and --help text,
 * getopt with usage errors, and the --image/--layout/--tag arguments.
 */
#include "config.h"

#include <stdarg.h>

#include "cli.h"

const struct command *cli_current;

const struct command *cli_find_command(const struct command *table, const char *name)
{
	for (const struct command *c = table; c->name; c++)
		if (strcmp(c->name, name) == 0 || (c->alias && strcmp(c->alias, name) == 0))
			return c;
	return NULL;
}

void cli_print_help(FILE *f, const char *prefix, const struct command *cmd)
{
	if (cli_as_umoci) {
		umoci_print_command_help(f, cmd);
		return;
	}
	fprintf(f, "Usage: %s %s %s\n\n%s\n", prefix, cmd->name, cmd->usage, cmd->summary);
	if (cmd->alias)
		fprintf(f, "Alias: %s\n", cmd->alias);
	fprintf(f, "\nOptions:\n%s  -h, --help                       show this help\n", cmd->help ? cmd->help : "");
}

int cli_usage_error(struct ocitree_error **err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *m = xvasprintf(fmt, ap);
	va_end(ap);
	if (cli_current)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "%s (see 'ocitree %s --help')", m,
					  cli_current->name);
	return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "%s (see 'ocitree --help')", m);
}

const char *cli_abbreviated(int argc, char **argv, const struct option *opts, int longidx)
{
	if (longidx < 0 || optind < 1 || optind > argc)
		return NULL;
	/* the option's own word: the one before its value when the value was
	 * the next argument */
	int at = optind - 1;
	if (optarg && optarg == argv[at] && at > 0)
		at--;
	const char *word = argv[at];
	if (strncmp(word, "--", 2) != 0)
		return NULL;
	size_t n = strcspn(word + 2, "=");
	if (strlen(opts[longidx].name) == n && strncmp(opts[longidx].name, word + 2, n) == 0)
		return NULL;
	return word;
}

int cli_getopt(int argc, char **argv, const struct option *opts, struct ocitree_error **err)
{
	/* build the short option string from the table: ":" first so that a
	 * missing argument is told apart from an unknown option */
	char shortopts[64] = ":";
	size_t n = 1;
	for (const struct option *o = opts; o->name && n < sizeof(shortopts) - 3; o++) {
		if (o->val > 0 && o->val < 128 && !o->flag) {
			shortopts[n++] = (char)o->val;
			if (o->has_arg == required_argument)
				shortopts[n++] = ':';
		}
	}
	shortopts[n] = '\0';
	opterr = 0;
	int longidx = -1;
	int c = getopt_long(argc, argv, shortopts, opts, &longidx);
	if (c == '?') {
		if (optopt)
			return cli_usage_error(err, "unknown option '-%c'", optopt), '?';
		return cli_usage_error(err, "unknown option '%s'", argv[optind - 1]), '?';
	}
	if (c == ':') {
		return cli_usage_error(err, "option '%s' needs a value", argv[optind - 1]), '?';
	}
	const char *abbrev = cli_abbreviated(argc, argv, opts, longidx);
	if (abbrev)
		return cli_usage_error(err, "unknown option '%s'", abbrev), '?';
	return c;
}

int cli_expect_args(int argc, char **argv, int min, int max, struct ocitree_error **err)
{
	int n = argc - optind;
	if (n < min)
		return cli_usage_error(err, "missing argument%s", min - n > 1 ? "s" : "");
	if (max >= 0 && n > max)
		return cli_usage_error(err, "unexpected argument '%s'", argv[optind + max]);
	return 0;
}

void image_ref_clear(struct image_ref *r)
{
	free(r->path);
	free(r->tag);
	r->path = r->tag = NULL;
}

int cli_image_ref(const char *arg, struct image_ref *out, struct ocitree_error **err)
{
	image_ref_clear(out);
	if (ocitree_image_ref_parse(arg, &out->path, &out->tag, err) < 0)
		return -1;
	return 0;
}

int cli_layout_path(const char *arg, char **out, struct ocitree_error **err)
{
	if (*arg == '\0')
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid --layout '': path is empty");
	if (strchr(arg, ':'))
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid --layout '%s': path contains ':'", arg);
	free(*out);
	*out = xstrdup(arg);
	return 0;
}

struct ocitree_layout *cli_open_layout(const char *path, struct ocitree_error **err)
{
	return ocitree_layout_open(path, err);
}

bool history_opt(struct history_opts *h, int opt, const char *arg)
{
	switch (opt) {
	case OPT_NO_HISTORY:
		h->no_history = true;
		return true;
	case OPT_HISTORY_AUTHOR:
		h->author = arg;
		return true;
	case OPT_HISTORY_COMMENT:
		h->comment = arg;
		return true;
	case OPT_HISTORY_CREATED:
		h->created = arg;
		return true;
	case OPT_HISTORY_CREATED_BY:
		h->created_by = arg;
		return true;
	default:
		return false;
	}
}

int history_opts_check(const struct history_opts *h, struct ocitree_error **err)
{
	/* umoci refuses the pair rather than guessing which one was meant,
	 * naming the first --history.* flag in its own order
	 * (cmd/umoci/utils_ux.go, uxHistory) */
	if (h->no_history) {
		const char *set = h->author	 ? "history.author"
				  : h->comment	 ? "history.comment"
				  : h->created	 ? "history.created"
				  : h->created_by ? "history.created_by"
						 : NULL;
		if (set)
			return cli_usage_error(err, "--no-history and --%s may not be specified together", set);
	}
	_cleanup_free_ char *created = h->created ? ocitree_time_canonical(h->created) : NULL;
	if (h->created && !created)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
					  "invalid --history.created '%s': not an RFC 3339 time such as 2024-01-02T03:04:05Z",
					  h->created);
	return 0;
}

void history_opts_entry(const struct history_opts *h, const struct ocitree_config *c, const char *default_created_by,
			bool empty_layer, struct ocitree_history *out)
{
	memset(out, 0, sizeof(*out));
	if (h->created) {
		/* kept with its offset, as umoci does */
		out->created = ocitree_time_canonical(h->created);
	} else {
		struct timespec now = ocitree_time_now();
		out->created = ocitree_time_format(&now);
	}
	out->created_by = xstrdup(h->created_by ? h->created_by : default_created_by);
	out->author = xstrdup_or_null(h->author ? h->author : (c ? c->author : NULL));
	out->comment = xstrdup_or_null(h->comment);
	out->empty_layer = empty_layer;
}

char *human_size(int64_t bytes)
{
	static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
	double v = (double)bytes;
	size_t u = 0;
	while (v >= 1000 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1000;
		u++;
	}
	if (u == 0)
		return xasprintf("%jd B", (intmax_t)bytes);
	return xasprintf("%.3g %s", v, units[u]);
}

static int set_layout(const char *arg, void *out, struct ocitree_error **err)
{
	return cli_layout_path(arg, out, err);
}

static int set_image(const char *arg, void *out, struct ocitree_error **err)
{
	return cli_image_ref(arg, out, err);
}

/* The options of a command that takes only --NAME (given to set with out)
 * and --json when json is not NULL.  Returns 0, CLI_EXIT_HELP or -1. */
static int parse_single_opt(int argc, char **argv, const char *name,
			    int (*set)(const char *arg, void *out, struct ocitree_error **err), void *out, bool *json,
			    struct platform_opt *platform, struct ocitree_error **err)
{
	enum { OPT_VALUE = OPT_COMMAND_BASE, OPT_JSON };
	struct option opts[5] = {
		{name, required_argument, NULL, OPT_VALUE},
		CLI_HELP_OPTION,
	};
	size_t n = 2;
	if (json)
		opts[n++] = (struct option){"json", no_argument, NULL, OPT_JSON};
	if (platform)
		opts[n++] = (struct option)PLATFORM_OPTION;
	int c;
	while ((c = cli_getopt(argc, argv, opts, err)) != -1) {
		switch (c) {
		case OPT_VALUE:
			if (set(optarg, out, err) < 0)
				return -1;
			break;
		case OPT_JSON:
			*json = true;
			break;
		case OPT_PLATFORM:
			if (platform_opt(optarg, platform, err) < 0)
				return -1;
			break;
		CLI_HANDLE_HELP;
		default:
			return -1;
		}
	}
	return 0;
}

int cli_parse_layout_opts(int argc, char **argv, char **layout, bool *json, struct ocitree_error **err)
{
	int r = parse_single_opt(argc, argv, "layout", set_layout, layout, json, NULL, err);
	if (r != 0)
		return r;
	if (!*layout)
		return cli_usage_error(err, "missing mandatory option --layout");
	return cli_expect_args(argc, argv, 0, 0, err);
}

int cli_parse_image_opts(int argc, char **argv, struct image_ref *image, bool *json, struct platform_opt *platform,
			 struct ocitree_error **err)
{
	int r = parse_single_opt(argc, argv, "image", set_image, image, json, platform, err);
	return r != 0 ? r : cli_require_image(image, err);
}

int platform_opt(const char *arg, struct platform_opt *o, struct ocitree_error **err)
{
	platform_opt_clear(o);
	if (ocitree_platform_parse(arg, &o->p, err) < 0)
		return ocitree_error_prefix(err, "--platform");
	o->set = true;
	return 0;
}

const struct ocitree_platform *platform_opt_get(const struct platform_opt *o)
{
	return o && o->set ? &o->p : NULL;
}

void platform_opt_clear(struct platform_opt *o)
{
	ocitree_platform_clear(&o->p);
	o->set = false;
}

struct ocitree_image *cli_open_image(struct ocitree_layout *l, const char *tag, const struct platform_opt *o,
				     struct ocitree_error **err)
{
	return ocitree_image_open_platform(l, tag, platform_opt_get(o), err);
}

int cli_require_image(const struct image_ref *ref, struct ocitree_error **err)
{
	if (!ref->path)
		return cli_usage_error(err, "missing mandatory option --image");
	return 0;
}

int cli_tag_opt(const char *arg, const char **tag, struct ocitree_error **err)
{
	if (ocitree_tag_check(arg, err) < 0)
		return ocitree_error_prefix(err, "invalid --tag");
	*tag = arg;
	return 0;
}
