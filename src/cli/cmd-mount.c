/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree mount: an image (or some of its layers) as a FUSE mount, read-only
 * or writable with an upper directory: the options; the mount itself is
 * mount-image.c's.
 */
#include "config.h"

#include "cli.h"

int cmd_mount(int argc, char **argv, struct ocitree_error **err)
{
	enum { OPT_IMAGE = OPT_COMMAND_BASE, OPT_LAYER, OPT_UPTO, OPT_CACHE_DIR, OPT_REBUILD, OPT_UPPER, OPT_WORKDIR };
	static const struct option opts[] = {
		{"image", required_argument, NULL, OPT_IMAGE},
		{"layer", required_argument, NULL, OPT_LAYER},
		{"upto", required_argument, NULL, OPT_UPTO},
		{"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
		{"rebuild-index", no_argument, NULL, OPT_REBUILD},
		{"upper", required_argument, NULL, OPT_UPPER},
		{"workdir", required_argument, NULL, OPT_WORKDIR},
		{"foreground", no_argument, NULL, 'f'},
		{"options", required_argument, NULL, 'o'},
		CLI_HELP_OPTION,
		{NULL, 0, NULL, 0},
	};
	struct cli_mount_request a = {0};
	struct image_ref image = {0};
	size_t n_mount_opts = 0;
	int c, r = -1;
	while ((c = cli_getopt(argc, argv, opts, err)) != -1) {
		switch (c) {
		case OPT_IMAGE:
			image_ref_clear(&image);
			if (cli_image_ref(optarg, &image, err) < 0)
				goto out;
			a.layout = image.path;
			a.tag = image.tag;
			break;
		case OPT_LAYER:
			a.layer = optarg;
			break;
		case OPT_UPTO:
			if (cli_layer_number("--upto", optarg, &a.upto, err) < 0)
				goto out;
			break;
		case OPT_CACHE_DIR:
			a.cache_dir = optarg;
			break;
		case OPT_REBUILD:
			a.rebuild = true;
			break;
		case OPT_UPPER:
			a.upper = optarg;
			break;
		case OPT_WORKDIR:
			a.workdir = optarg;
			break;
		case 'f':
			a.foreground = true;
			break;
		case 'o':
			a.mount_opts = xrealloc(a.mount_opts, (n_mount_opts + 2) * sizeof(*a.mount_opts));
			a.mount_opts[n_mount_opts++] = optarg;
			a.mount_opts[n_mount_opts] = NULL;
			break;
		case 'h':
			cli_print_help(stdout, "ocitree", cli_current);
			r = CLI_EXIT_HELP;
			goto out;
		default:
			goto out;
		}
	}
	if (!a.layout) {
		cli_usage_error(err, "missing mandatory option --image");
		goto out;
	}
	if (a.layer && a.upto) {
		cli_usage_error(err, "--layer and --upto cannot be used together");
		goto out;
	}
	if (a.upper && (a.layer || a.upto)) {
		cli_usage_error(err, "--upper changes the whole image: it cannot be used with --layer or --upto");
		goto out;
	}
	if (a.workdir && !a.upper) {
		cli_usage_error(err, "--workdir needs --upper");
		goto out;
	}
	if (argc - optind != 1) {
		cli_usage_error(err, argc - optind < 1 ? "missing MOUNTPOINT" : "unexpected argument '%s'",
				argv[optind + 1]);
		goto out;
	}
	r = cli_mount_image(&a, argv[optind], err);
out:
	image_ref_clear(&image);
	free(a.mount_opts);
	return r;
}
