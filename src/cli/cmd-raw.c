/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree raw: umoci's low-level commands, dispatched by their subcommand
 * word: runtime-config and add-layer (of a ready tar) here, raw unpack
 * beside unpack in cmd-unpack.c.
 */
#include "config.h"

#include <fcntl.h>

#include "cli.h"

enum { OPT_ROOTFS = OPT_COMMAND_BASE };

static int runtime_config_opt(UNUSED int opt, const char *arg, void *data, UNUSED struct ocitree_error **err)
{
	*(const char **)data = arg; /* --rootfs, the one option of its own */
	return 0;
}

static int cmd_raw_runtime_config(int argc, char **argv, struct ocitree_error **err)
{
	static const struct option opts[] = {
		LAYER_IMAGE_OPTION,
		PLATFORM_OPTION,
		{"rootfs", required_argument, NULL, OPT_ROOTFS},
		MAP_OPTIONS,
		CLI_HELP_OPTION,
		{NULL, 0, NULL, 0},
	};
	struct layer_opts lo = {0};
	const char *rootfs = NULL;
	int r = layer_opts_parse(argc, argv, opts, &lo, runtime_config_opt, &rootfs, err);
	if (r != 0)
		goto out;
	r = -1;
	if (cli_expect_args(argc, argv, 1, 1, err) < 0)
		goto out;
	const char *dest = argv[optind];
	struct ocitree_map_options mo;
	map_opts_get(&lo.maps, &mo);
	struct ocitree_layout *l = cli_open_layout(lo.image.path, err);
	struct ocitree_image *img = l ? cli_open_image(l, lo.image.tag, &lo.platform, err) : NULL;
	char *json = img ? ocitree_runtime_config(img->config, rootfs, &mo, err) : NULL;
	if (json) {
		const char *text = json;
		if (strcmp(dest, "-") == 0) {
			r = fputs(text, stdout) < 0 ? ocitree_error_set(err, errno, "write config") : 0;
		} else {
			int fd = open(dest, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
			if (fd < 0 || write_all(fd, text, strlen(text)) < 0 || close(fd) < 0)
				r = ocitree_error_set(err, errno, "write '%s'", dest);
			else
				r = 0;
		}
	}
	free(json);
	ocitree_image_free(img);
	ocitree_layout_free(l);
out:
	layer_opts_clear(&lo);
	return r;
}

static int cmd_raw_add_layer(int argc, char **argv, struct ocitree_error **err)
{
	static const struct option opts[] = {
		LAYER_IMAGE_OPTION,
		PLATFORM_OPTION,
		LAYER_TAG_OPTION,
		COMPRESS_OPTION,
		HISTORY_OPTIONS,
		CLI_HELP_OPTION,
		{NULL, 0, NULL, 0},
	};
	struct layer_opts lo = {0};
	int r = layer_opts_parse(argc, argv, opts, &lo, NULL, NULL, err);
	if (r != 0)
		goto out;
	r = -1;
	if (cli_expect_args(argc, argv, 1, 1, err) < 0 || history_opts_check(&lo.hist, err) < 0)
		goto out;
	struct ocitree_write_options wo = {.compression = lo.compression, .progress = cli_progress};
	const char *file = argv[optind];
	int fd = strcmp(file, "-") == 0 ? dup(STDIN_FILENO) : open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ocitree_error_set(err, errno, "open '%s'", file);
		goto out;
	}
	struct ocitree_layout *l = cli_open_layout(lo.image.path, err);
	struct ocitree_image *img =
	    l && ocitree_layout_hold_blobs(l, err) == 0 ? cli_open_image(l, lo.image.tag, &lo.platform, err) : NULL;
	if (img) {
		struct ocitree_history h;
		if (!lo.hist.no_history) {
			history_opts_entry(&lo.hist, img->config, "ocitree raw add-layer", false, &h);
			wo.history = &h;
		}
		r = ocitree_add_layer(img, fd, lo.tag ? lo.tag : lo.image.tag, &wo, err);
		cli_progress_end();
		if (r < 0)
			ocitree_error_prefix(err, "add layer '%s'", file);
		if (wo.history)
			ocitree_history_clear(&h);
	}
	close(fd);
	ocitree_image_free(img);
	ocitree_layout_free(l);
out:
	layer_opts_clear(&lo);
	return r;
}

static const struct command raw_commands[] = {
	{"raw unpack", NULL, "raw", "unpack an image's root filesystem only (no bundle metadata)",
	 "--image LAYOUT[:TAG] [OPTIONS] ROOTFS",
	 "      --image=LAYOUT[:TAG]         the image to unpack (TAG defaults to latest)\n"
	 PLATFORM_OPTS_HELP
	 "      --keep-dirlinks              unpack through symlinks to directories\n" MAP_OPTS_HELP,
	 cmd_raw_unpack},
	{"raw runtime-config", "raw config", "raw", "generate a runtime-spec config.json from an image's config",
	 "--image LAYOUT[:TAG] [--rootfs ROOTFS] [OPTIONS] CONFIG.json",
	 "      --image=LAYOUT[:TAG]         the image (TAG defaults to latest)\n"
	 PLATFORM_OPTS_HELP
	 "      --rootfs=ROOTFS              look the user up in this root filesystem\n" MAP_OPTS_HELP,
	 cmd_raw_runtime_config},
	{"raw add-layer", NULL, "raw", "add an uncompressed tar archive to an image as a new layer",
	 "--image LAYOUT[:TAG] [--tag NEWTAG] [OPTIONS] LAYER.tar",
	 "      --image=LAYOUT[:TAG]         the image to change (TAG defaults to latest)\n"
	 PLATFORM_OPTS_HELP
	 "      --tag=NEWTAG                 tag the result NEWTAG instead of replacing TAG\n" COMPRESS_OPTS_HELP
		 HISTORY_OPTS_HELP,
	 cmd_raw_add_layer},
	{NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};

int cmd_raw(int argc, char **argv, struct ocitree_error **err)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		if (argc < 2)
			return cli_usage_error(err, "missing subcommand: unpack, runtime-config or add-layer");
		cli_print_help(stdout, "ocitree", cli_current);
		return CLI_EXIT_HELP;
	}
	_cleanup_free_ char *name = xasprintf("raw %s", argv[1]);
	const struct command *sub = cli_find_command(raw_commands, name);
	if (!sub)
		return cli_usage_error(err, "unknown raw subcommand '%s'", argv[1]);
	cli_current = sub;
	optind = 0;
	return sub->fn(argc - 1, argv + 1, err);
}
