/* SPDX-License-Identifier: Apache-2.0 */
/* repack */
#include "config.h"

#include "cli.h"

enum { OPT_IMAGE = OPT_COMMAND_BASE, OPT_MASK_PATH, OPT_NO_MASK_VOLUMES, OPT_REFRESH_BUNDLE };

int cmd_repack(int argc, char **argv, struct ocitree_error **err)
{
	static const struct option opts[] = {
		{"image", required_argument, NULL, OPT_IMAGE},
		{"mask-path", required_argument, NULL, OPT_MASK_PATH},
		{"no-mask-volumes", no_argument, NULL, OPT_NO_MASK_VOLUMES},
		{"refresh-bundle", no_argument, NULL, OPT_REFRESH_BUNDLE},
		COMPRESS_OPTION,
		HISTORY_OPTIONS,
		CLI_HELP_OPTION,
		{NULL, 0, NULL, 0},
	};
	struct image_ref ref = {0};
	struct history_opts hist = {0};
	struct ocitree_repack_options o = {.write = {.compression = OCITREE_COMPRESSION_GZIP, .progress = cli_progress}};
	_cleanup_free_ const char **masks = NULL;
	int c, r = -1;
	while ((c = cli_getopt(argc, argv, opts, err)) != -1) {
		if (history_opt(&hist, c, optarg))
			continue;
		switch (c) {
		case OPT_IMAGE:
			if (cli_image_ref(optarg, &ref, err) < 0)
				goto out;
			break;
		case OPT_MASK_PATH:
			masks = xrealloc(masks, (o.n_mask_paths + 1) * sizeof(char *));
			masks[o.n_mask_paths++] = optarg;
			break;
		case OPT_NO_MASK_VOLUMES:
			o.no_mask_volumes = true;
			break;
		case OPT_REFRESH_BUNDLE:
			o.refresh_bundle = true;
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
	if (cli_require_image(&ref, err) < 0 || cli_expect_args(argc, argv, 1, 1, err) < 0 || history_opts_check(&hist, err) < 0)
		goto out;
	o.mask_paths = masks;
	struct ocitree_history h;
	if (!hist.no_history) {
		/* the author defaults to the image's, which the library knows */
		history_opts_entry(&hist, NULL, "ocitree repack", false, &h);
		o.write.history = &h;
	}
	struct ocitree_layout *l = cli_open_layout(ref.path, err);
	if (l) {
		char digest[OCITREE_DIGEST_MAX];
		r = ocitree_repack_bundle(l, ref.tag, argv[optind], &o, digest, err);
		cli_progress_end();
		if (r == 0)
			log_info("tagged '%s' as %s", ref.tag, digest);
	}
	if (o.write.history)
		ocitree_history_clear(&h);
	ocitree_layout_free(l);
out:
	image_ref_clear(&ref);
	return r;
}
