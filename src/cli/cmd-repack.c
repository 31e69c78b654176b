/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree repack: the changes of an unpacked bundle since its unpack
 * written as a new layer of its image, as umoci repack does.
 */
#include "config.h"

#include "cli.h"

enum { OPT_MASK_PATH = OPT_COMMAND_BASE, OPT_NO_MASK_VOLUMES, OPT_REFRESH_BUNDLE };

/* What repack's own options set. */
struct repack_args {
	struct ocitree_repack_options o;
	const char **masks; /* --mask-path, growing; o.mask_paths once parsed */
};

static int repack_opt(int opt, const char *arg, void *data, UNUSED struct ocitree_error **err)
{
	struct repack_args *a = data;
	switch (opt) {
	case OPT_MASK_PATH:
		a->masks = xrealloc(a->masks, (a->o.n_mask_paths + 1) * sizeof(char *));
		a->masks[a->o.n_mask_paths++] = arg;
		break;
	case OPT_NO_MASK_VOLUMES:
		a->o.no_mask_volumes = true;
		break;
	default: /* OPT_REFRESH_BUNDLE */
		a->o.refresh_bundle = true;
		break;
	}
	return 0;
}

int cmd_repack(int argc, char **argv, struct ocitree_error **err)
{
	static const struct option opts[] = {
		LAYER_IMAGE_OPTION,
		{"mask-path", required_argument, NULL, OPT_MASK_PATH},
		{"no-mask-volumes", no_argument, NULL, OPT_NO_MASK_VOLUMES},
		{"refresh-bundle", no_argument, NULL, OPT_REFRESH_BUNDLE},
		COMPRESS_OPTION,
		HISTORY_OPTIONS,
		CLI_HELP_OPTION,
		{NULL, 0, NULL, 0},
	};
	struct layer_opts lo = {0};
	struct repack_args a = {.o = {.write = {.progress = cli_progress}}};
	int r = layer_opts_parse(argc, argv, opts, &lo, repack_opt, &a, err);
	if (r != 0)
		goto out;
	r = -1;
	if (cli_expect_args(argc, argv, 1, 1, err) < 0 || history_opts_check(&lo.hist, err) < 0)
		goto out;
	a.o.write.compression = lo.compression;
	a.o.mask_paths = a.masks;
	struct ocitree_history h;
	if (!lo.hist.no_history) {
		/* the author defaults to the image's, which the library knows */
		history_opts_entry(&lo.hist, NULL, "ocitree repack", false, &h);
		a.o.write.history = &h;
	}
	struct ocitree_layout *l = cli_open_layout(lo.image.path, err);
	if (l) {
		char digest[OCITREE_DIGEST_MAX];
		r = ocitree_repack_bundle(l, lo.image.tag, argv[optind], &a.o, digest, err);
		cli_progress_end();
		if (r == 0)
			log_info("tagged '%s' as %s", lo.image.tag, digest);
	}
	if (a.o.write.history)
		ocitree_history_clear(&h);
	ocitree_layout_free(l);
out:
	free(a.masks);
	layer_opts_clear(&lo);
	return r;
}
