/* SPDX-License-Identifier: Apache-2.0 */
/* insert */
#include "config.h"

#include "cli.h"

enum { OPT_IMAGE = OPT_COMMAND_BASE, OPT_TAG, OPT_WHITEOUT, OPT_OPAQUE };

int cmd_insert(int argc, char **argv, struct ocitree_error **err)
{
	static const struct option opts[] = {
		{"image", required_argument, NULL, OPT_IMAGE},
		{"tag", required_argument, NULL, OPT_TAG},
		{"whiteout", no_argument, NULL, OPT_WHITEOUT},
		{"opaque", no_argument, NULL, OPT_OPAQUE},
		MAP_OPTIONS,
		COMPRESS_OPTION,
		HISTORY_OPTIONS,
		CLI_HELP_OPTION,
		{NULL, 0, NULL, 0},
	};
	struct image_ref ref = {0};
	struct history_opts hist = {0};
	struct map_opts maps = {0};
	struct ocitree_insert_options o = {.write = {.compression = OCITREE_COMPRESSION_GZIP, .progress = cli_progress}};
	const char *tag = NULL;
	int c, r = -1;
	while ((c = cli_getopt(argc, argv, opts, err)) != -1) {
		if (history_opt(&hist, c, optarg))
			continue;
		int m = map_opt(&maps, c, optarg, err);
		if (m < 0)
			goto out;
		if (m > 0)
			continue;
		switch (c) {
		case OPT_IMAGE:
			if (cli_image_ref(optarg, &ref, err) < 0)
				goto out;
			break;
		case OPT_TAG:
			if (cli_tag_opt(optarg, &tag, err) < 0)
				goto out;
			break;
		case OPT_WHITEOUT:
			o.whiteout = true;
			break;
		case OPT_OPAQUE:
			o.opaque = true;
			break;
		case OPT_COMPRESS:
			if (compress_opt(optarg, &o.write.compression, err) < 0)
				goto out;
			break;
		CLI_HANDLE_HELP_GOTO(r, out);
		default:
			goto out;
		}
	}
	if (cli_require_image(&ref, err) < 0)
		goto out;
	if (o.whiteout && o.opaque) {
		cli_usage_error(err, "--whiteout and --opaque exclude each other");
		goto out;
	}
	if (cli_expect_args(argc, argv, o.whiteout ? 1 : 2, o.whiteout ? 1 : 2, err) < 0 ||
	    history_opts_check(&hist, err) < 0)
		goto out;
	const char *source = o.whiteout ? NULL : argv[optind];
	const char *target = argv[o.whiteout ? optind : optind + 1];
	map_opts_get(&maps, &o.map);
	struct ocitree_layout *l = cli_open_layout(ref.path, err);
	struct ocitree_image *img = l && ocitree_layout_hold_blobs(l, err) == 0 ? ocitree_image_open(l, ref.tag, err) : NULL;
	if (img) {
		struct ocitree_history h;
		if (!hist.no_history) {
			history_opts_entry(&hist, img->config, "ocitree insert", false, &h);
			o.write.history = &h;
		}
		r = ocitree_insert(img, source, target, tag ? tag : ref.tag, &o, err);
		cli_progress_end();
		if (o.write.history)
			ocitree_history_clear(&h);
	}
	ocitree_image_free(img);
	ocitree_layout_free(l);
out:
	image_ref_clear(&ref);
	map_opts_clear(&maps);
	return r;
}
