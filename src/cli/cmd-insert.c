/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree insert: a file or directory of the host (or a whiteout, or an
 * opaque directory) added to an image as a new layer, as umoci insert does.
 */
#include "config.h"

#include "cli.h"

enum { OPT_WHITEOUT = OPT_COMMAND_BASE, OPT_OPAQUE };

static int insert_opt(int opt, UNUSED const char *arg, void *data, UNUSED struct ocitree_error **err)
{
	struct ocitree_insert_options *o = data;
	if (opt == OPT_WHITEOUT)
		o->whiteout = true;
	else
		o->opaque = true;
	return 0;
}

int cmd_insert(int argc, char **argv, struct ocitree_error **err)
{
	static const struct option opts[] = {
		LAYER_IMAGE_OPTION,
		PLATFORM_OPTION,
		LAYER_TAG_OPTION,
		{"whiteout", no_argument, NULL, OPT_WHITEOUT},
		{"opaque", no_argument, NULL, OPT_OPAQUE},
		MAP_OPTIONS,
		COMPRESS_OPTION,
		HISTORY_OPTIONS,
		CLI_HELP_OPTION,
		{NULL, 0, NULL, 0},
	};
	struct layer_opts lo = {0};
	struct ocitree_insert_options o = {.write = {.progress = cli_progress}};
	int r = layer_opts_parse(argc, argv, opts, &lo, insert_opt, &o, err);
	if (r != 0)
		goto out;
	r = -1;
	if (o.whiteout && o.opaque) {
		cli_usage_error(err, "--whiteout and --opaque exclude each other");
		goto out;
	}
	if (cli_expect_args(argc, argv, o.whiteout ? 1 : 2, o.whiteout ? 1 : 2, err) < 0 ||
	    history_opts_check(&lo.hist, err) < 0)
		goto out;
	for (int i = optind; i < argc; i++)
		if (argv[i][0] == '\0') {
			/* umoci's words (cmd/umoci/insert.go): "" is no path */
			cli_usage_error(err, "invalid positional argument %d: arguments cannot be empty", i - optind);
			goto out;
		}
	const char *source = o.whiteout ? NULL : argv[optind];
	const char *target = argv[o.whiteout ? optind : optind + 1];
	o.write.compression = lo.compression;
	map_opts_get(&lo.maps, &o.map);
	struct ocitree_layout *l = cli_open_layout(lo.image.path, err);
	struct ocitree_image *img =
	    l && ocitree_layout_hold_blobs(l, err) == 0 ? cli_open_image(l, lo.image.tag, &lo.platform, err) : NULL;
	if (img) {
		struct ocitree_history h;
		if (!lo.hist.no_history) {
			history_opts_entry(&lo.hist, img->config, "ocitree insert", false, &h);
			o.write.history = &h;
		}
		r = ocitree_insert(img, source, target, lo.tag ? lo.tag : lo.image.tag, &o, err);
		cli_progress_end();
		if (o.write.history)
			ocitree_history_clear(&h);
	}
	ocitree_image_free(img);
	ocitree_layout_free(l);
out:
	layer_opts_clear(&lo);
	return r;
}
