/* SPDX-License-Identifier: Apache-2.0 */
/* unpack and raw unpack */
#include "config.h"

#include "cli.h"

enum { OPT_IMAGE = OPT_COMMAND_BASE, OPT_KEEP_DIRLINKS };

static int unpack_main(int argc, char **argv, bool raw, struct ocitree_error **err)
{
	static const struct option opts[] = {
		{"image", required_argument, NULL, OPT_IMAGE},
		{"keep-dirlinks", no_argument, NULL, OPT_KEEP_DIRLINKS},
		MAP_OPTIONS,
		CLI_HELP_OPTION,
		{NULL, 0, NULL, 0},
	};
	struct image_ref ref = {0};
	struct map_opts maps = {0};
	struct ocitree_unpack_options o = {.progress = cli_progress};
	int c, r = -1;
	while ((c = cli_getopt(argc, argv, opts, err)) != -1) {
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
		case OPT_KEEP_DIRLINKS:
			o.keep_dirlinks = true;
			break;
		CLI_HANDLE_HELP_GOTO(r, out);
		default:
			goto out;
		}
	}
	if (cli_require_image(&ref, err) < 0 || cli_expect_args(argc, argv, 1, 1, err) < 0)
		goto out;
	const char *dest = argv[optind];
	if (!*dest) {
		cli_usage_error(err, "%s path is empty", raw ? "rootfs" : "bundle");
		goto out;
	}
	map_opts_get(&maps, &o.map);
	struct ocitree_layout *l = cli_open_layout(ref.path, err);
	if (!l)
		goto out;
	struct ocitree_image *img = ocitree_layout_hold_blobs(l, err) == 0 ? ocitree_image_open(l, ref.tag, err) : NULL;
	if (img) {
		r = raw ? ocitree_unpack_rootfs(img, dest, &o, err) : ocitree_unpack_bundle(img, dest, &o, err);
		cli_progress_end();
		if (r < 0 && err && *err && (*err)->errnum == EPERM && geteuid() != 0 && !o.map.rootless)
			ocitree_error_prefix(err, "not running as root (see --rootless)");
		if (r == 0)
			log_info("unpacked '%s:%s' (%s) into '%s'", ref.path, ref.tag, img->manifest_desc.digest, dest);
	}
	ocitree_image_free(img);
	ocitree_layout_free(l);
out:
	image_ref_clear(&ref);
	map_opts_clear(&maps);
	return r;
}

int cmd_unpack(int argc, char **argv, struct ocitree_error **err)
{
	return unpack_main(argc, argv, false, err);
}

int cmd_raw_unpack(int argc, char **argv, struct ocitree_error **err)
{
	return unpack_main(argc, argv, true, err);
}
