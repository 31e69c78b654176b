/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree unpack and raw unpack: an image into a runtime bundle (rootfs,
 * config.json and the state repack reads), or its root filesystem alone.
 */
#include "config.h"

#include "cli.h"

enum { OPT_KEEP_DIRLINKS = OPT_COMMAND_BASE };

static int unpack_opt(UNUSED int opt, UNUSED const char *arg, void *data, UNUSED struct ocitree_error **err)
{
	struct ocitree_unpack_options *o = data;
	o->keep_dirlinks = true; /* --keep-dirlinks, the one option of its own */
	return 0;
}

static int unpack_main(int argc, char **argv, bool raw, struct ocitree_error **err)
{
	static const struct option opts[] = {
		LAYER_IMAGE_OPTION,
		PLATFORM_OPTION,
		{"keep-dirlinks", no_argument, NULL, OPT_KEEP_DIRLINKS},
		MAP_OPTIONS,
		CLI_HELP_OPTION,
		{NULL, 0, NULL, 0},
	};
	struct layer_opts lo = {0};
	struct ocitree_unpack_options o = {.progress = cli_progress};
	int r = layer_opts_parse(argc, argv, opts, &lo, unpack_opt, &o, err);
	if (r != 0)
		goto out;
	r = -1;
	if (cli_expect_args(argc, argv, 1, 1, err) < 0)
		goto out;
	const char *dest = argv[optind];
	if (!*dest) {
		cli_usage_error(err, "%s path is empty", raw ? "rootfs" : "bundle");
		goto out;
	}
	map_opts_get(&lo.maps, &o.map);
	struct ocitree_layout *l = cli_open_layout(lo.image.path, err);
	if (!l)
		goto out;
	struct ocitree_image *img =
	    ocitree_layout_hold_blobs(l, err) == 0 ? cli_open_image(l, lo.image.tag, &lo.platform, err) : NULL;
	if (img) {
		r = raw ? ocitree_unpack_rootfs(img, dest, &o, err) : ocitree_unpack_bundle(img, dest, &o, err);
		cli_progress_end();
		if (r < 0 && err && *err && (*err)->errnum == EPERM && geteuid() != 0 && !o.map.rootless)
			ocitree_error_prefix(err, "not running as root (see --rootless)");
		if (r == 0)
			log_info("unpacked '%s:%s' (%s) into '%s'", lo.image.path, lo.image.tag,
				 img->manifest_desc.digest, dest);
	}
	ocitree_image_free(img);
	ocitree_layout_free(l);
out:
	layer_opts_clear(&lo);
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
