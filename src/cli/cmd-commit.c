/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree commit: the upper directory of a writable mount becomes a layer.
 * On a live mount the daemon does it (it holds the upper directory and
 * freezes writes meanwhile): the request goes over the control socket in
 * the work directory (ocitree/control.h).  After unmounting, this process
 * does it.
 */
#include "config.h"

#include <inttypes.h>

#include "cli.h"
#include "ocitree/control.h"

struct commit_args {
	const char *layout;
	const char *tag; /* NULL: the tag the image was mounted from */
	const char *upper;
	const char *workdir;
	const char *cache_dir;
	enum ocitree_compression compression;
	bool clear;
	struct history_opts history;
};

static void print_result(const char *tag, const char *manifest, const char *layer, uint64_t entries)
{
	if (layer && *layer)
		printf("%s: %s (layer %s, %" PRIu64 " entries)\n", tag, manifest, layer, entries);
	else
		printf("%s: %s (no changes: no layer)\n", tag, manifest);
}

static int commit_offline(struct commit_args *a, struct ocitree_error **err)
{
	struct ocitree_upper *u = ocitree_upper_open(a->upper, a->workdir, false, err);
	if (!u) {
		if (err && *err && (*err)->kind == OCITREE_ERROR_EXISTS)
			ocitree_error_prefix(err, "it is mounted: commit through its mountpoint");
		return -1;
	}
	int r = -1;
	struct ocitree_layout *l = NULL;
	struct ocitree_history h = {0};
	const struct ocitree_upper_state *st = ocitree_upper_get_state(u);
	if (!st) {
		ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND,
				   "upper directory '%s' was never mounted (its work directory '%s' has no record)",
				   a->upper, ocitree_upper_work_path(u));
		goto out;
	}
	ocitree_upper_remove_stale(u);
	if (st->clearing && ocitree_upper_finish_clear(u, err) < 0)
		goto out;
	/* finishing the clear may have written the record again */
	st = ocitree_upper_get_state(u);
	const char *tag = a->tag ? a->tag : st->tag;
	l = cli_open_layout(a->layout, err);
	if (!l)
		goto out;
	if (!a->history.no_history)
		history_opts_entry(&a->history, NULL, "ocitree commit", false, &h);
	struct ocitree_commit_options o = {.compression = a->compression, .history = a->history.no_history ? NULL : &h,
					   .clear = a->clear, .cache_dir = a->cache_dir, .progress = cli_progress};
	struct ocitree_commit_result res;
	r = ocitree_upper_commit(u, l, tag, &o, &res, err);
	cli_progress_end();
	if (r == 0)
		print_result(tag, res.manifest, res.layer, res.entries);
out:
	ocitree_history_clear(&h);
	ocitree_layout_free(l);
	ocitree_upper_free(u);
	return r;
}

/* Ask the daemon of mountpoint to commit. */
static int commit_live(struct commit_args *a, const char *mountpoint, struct ocitree_error **err)
{
	struct ocitree_control_request req = {.op = OCITREE_CONTROL_COMMIT, .layout = (char *)a->layout,
					      .tag = (char *)a->tag, .compression = a->compression,
					      .clear = a->clear, .has_history = !a->history.no_history};
	if (req.has_history)
		history_opts_entry(&a->history, NULL, "ocitree commit", false, &req.history);
	struct ocitree_control_reply rep;
	/* no time limit: a commit takes as long as the change is big */
	int r = ocitree_control_call(mountpoint, &req, 0, &rep, err);
	ocitree_history_clear(&req.history);
	if (r == 0)
		print_result(rep.tag, rep.manifest, rep.layer, rep.entries);
	ocitree_control_reply_clear(&rep);
	return r;
}

int cmd_commit(int argc, char **argv, struct ocitree_error **err)
{
	enum { OPT_IMAGE = OPT_COMMAND_BASE, OPT_UPPER, OPT_WORKDIR, OPT_CLEAR, OPT_CACHE_DIR };
	static const struct option opts[] = {
		{"image", required_argument, NULL, OPT_IMAGE},
		{"upper", required_argument, NULL, OPT_UPPER},
		{"workdir", required_argument, NULL, OPT_WORKDIR},
		COMPRESS_OPTION,
		{"clear", no_argument, NULL, OPT_CLEAR},
		{"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
		HISTORY_OPTIONS,
		CLI_HELP_OPTION,
		{NULL, 0, NULL, 0},
	};
	struct commit_args a = {.compression = OCITREE_COMPRESSION_AUTO};
	_cleanup_free_ char *layout = NULL, *tag = NULL;
	int c;
	while ((c = cli_getopt(argc, argv, opts, err)) != -1) {
		if (history_opt(&a.history, c, optarg))
			continue;
		switch (c) {
		case OPT_IMAGE: {
			/* the tag is optional here: without one, the mounted tag */
			const char *colon = strrchr(optarg, ':');
			free(layout);
			free(tag);
			layout = tag = NULL;
			if (colon) {
				if (ocitree_image_ref_parse(optarg, &layout, &tag, err) < 0)
					return -1;
			} else {
				if (!*optarg)
					return cli_usage_error(err, "invalid --image '': path is empty");
				layout = xstrdup(optarg);
			}
			break;
		}
		case OPT_UPPER:
			a.upper = optarg;
			break;
		case OPT_WORKDIR:
			a.workdir = optarg;
			break;
		case OPT_COMPRESS:
			if (compress_opt(optarg, &a.compression, err) < 0)
				return -1;
			break;
		case OPT_CLEAR:
			a.clear = true;
			break;
		case OPT_CACHE_DIR:
			a.cache_dir = optarg;
			break;
		CLI_HANDLE_HELP;
		default:
			return -1;
		}
	}
	if (history_opts_check(&a.history, err) < 0)
		return -1;
	if (!layout)
		return cli_usage_error(err, "missing mandatory option --image");
	a.layout = layout;
	a.tag = tag;
	if (a.workdir && !a.upper)
		return cli_usage_error(err, "--workdir needs --upper");
	int rest = argc - optind;
	if (a.upper && rest > 0)
		return cli_usage_error(err, "give either --upper DIR or a MOUNTPOINT, not both");
	if (!a.upper && rest != 1)
		return cli_usage_error(err, rest ? "unexpected argument '%s'" : "missing MOUNTPOINT (or --upper DIR)",
				       rest ? argv[optind + 1] : "");
	if (a.upper)
		return commit_offline(&a, err);
	if (a.cache_dir)
		return cli_usage_error(err, "--cache-dir is for --upper: a mount uses its own");
	return commit_live(&a, argv[optind], err);
}
