/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ocitree program: the table of commands, the global options (--log,
 * --verbose, --help, --version), and the one place that prints an error
 * and picks the exit status.
 */
#include "config.h"

#include <locale.h>
#include <sys/stat.h>

#include "cli.h"
#include "fs.h"

static const struct command commands[] = {
	/* image */
	{"build", NULL, "image", "build images from a stacker.yaml recipe, one layer each",
	 "--layout LAYOUT [-f RECIPE] [OPTIONS] [NAME...]",
	 "  -f, --file=RECIPE                the recipe (default: stacker.yaml)\n"
	 "      --layout=LAYOUT              the layout the images are built in and tagged in\n"
	 "      --substitute=KEY=VALUE       a value for ${{KEY}} in the recipe (repeatable; wins over a file)\n"
	 "      --substitute-file=FILE       values for ${{KEY}} from a YAML map\n"
	 "      --no-cache                   build every image again, whatever the cache has\n"
	 "      --shell-fail                 when a step fails, open a shell in its container (on a terminal)\n"
	 "      --cache-dir=DIR              build cache and layer indexes (default: see ocitree-cache(5))\n"
	 "      --runtime=RUNTIME            runc (default), crun, or a path\n",
	 cmd_build},
	{"config", NULL, "image", "modify the configuration of an image",
	 "--image LAYOUT[:TAG] [--tag NEWTAG] [OPTIONS]",
	 "      --image=LAYOUT[:TAG]         the image to change (TAG defaults to latest)\n"
	 PLATFORM_OPTS_HELP
	 "      --tag=NEWTAG                 tag the result NEWTAG instead of replacing TAG\n"
	 "      --config.user=USER           set the user (and group) the process runs as\n"
	 "      --config.exposedports=PORT   add an exposed port (repeatable)\n"
	 "      --config.env=NAME=VALUE      set an environment variable (repeatable)\n"
	 "      --config.entrypoint=ARG      set the entrypoint, one argument per use\n"
	 "      --config.cmd=ARG             set the command, one argument per use\n"
	 "      --config.volume=PATH         add a volume (repeatable)\n"
	 "      --config.label=NAME=VALUE    set a label (repeatable)\n"
	 "      --config.workingdir=DIR      set the working directory\n"
	 "      --config.stopsignal=SIGNAL   set the stop signal\n"
	 "      --created=TIME               set the creation time (RFC 3339)\n"
	 "      --author=AUTHOR              set the author\n"
	 "      --platform.arch, --architecture=ARCH\n"
	 "                                   set the architecture\n"
	 "      --platform.os, --os=OS       set the operating system\n"
	 "      --platform.variant=VARIANT   set the architecture variant\n"
	 "      --platform.os.version=VER    set the operating system version\n"
	 "      --manifest.annotation=K=V    set a manifest annotation (repeatable)\n"
	 "      --clear=KEY                  clear config.labels, config.env, config.exposedports,\n"
	 "                                   config.volume, config.cmd, config.entrypoint or\n"
	 "                                   manifest.annotations before setting (repeatable)\n" HISTORY_OPTS_HELP,
	 cmd_config},
	{"insert", NULL, "image", "add a file or directory to an image as a new layer",
	 "--image LAYOUT[:TAG] [OPTIONS] SOURCE TARGET | --whiteout TARGET",
	 "      --image=LAYOUT[:TAG]         the image to change (TAG defaults to latest)\n"
	 PLATFORM_OPTS_HELP
	 "      --tag=NEWTAG                 tag the result NEWTAG instead of replacing TAG\n"
	 "      --whiteout                   add a whiteout that removes TARGET\n"
	 "      --opaque                     hide what lower layers have below the TARGET directory\n" MAP_OPTS_HELP
		 COMPRESS_OPTS_HELP HISTORY_OPTS_HELP,
	 cmd_insert},
	{"new", NULL, "image", "create a new, empty image", "--image LAYOUT:TAG",
	 "      --image=LAYOUT[:TAG]         where to create the image (TAG defaults to latest)\n", cmd_new},
	{"repack", NULL, "image", "write the changes of an unpacked bundle as a new layer",
	 "--image LAYOUT[:TAG] [OPTIONS] BUNDLE",
	 "      --image=LAYOUT[:TAG]         the layout of the bundle's image and the tag to write\n"
	 "                                   (TAG defaults to latest); when that tag (or the one\n"
	 "                                   unpacked) names an image index holding the bundle's\n"
	 "                                   platform, the new image replaces it there\n"
	 "      --refresh-bundle             make the bundle describe the new image\n"
	 "      --mask-path=PATH             ignore changes below PATH (repeatable)\n"
	 "      --no-mask-volumes            do not ignore changes in the image's volumes\n" COMPRESS_OPTS_HELP
		 HISTORY_OPTS_HELP,
	 cmd_repack},
	{"tag", NULL, "image", "give an image another tag", "--image LAYOUT[:TAG] NEWTAG",
	 "      --image=LAYOUT[:TAG]         the image to tag (TAG defaults to latest)\n"
	 PLATFORM_OPTS_HELP, cmd_tag},
	{"remove", "rm", "image", "remove a tag from a layout", "--image LAYOUT[:TAG]",
	 "      --image=LAYOUT[:TAG]         the tag to remove (TAG defaults to latest)\n", cmd_rm},
	{"stat", NULL, "image", "show the history and layers of an image", "--image LAYOUT[:TAG] [--json]",
	 "      --image=LAYOUT[:TAG]         the image to describe (TAG defaults to latest)\n"
	 PLATFORM_OPTS_HELP
	 "      --json                       print JSON (manifest, config and history)\n",
	 cmd_stat},
	{"unpack", NULL, "image", "unpack an image into a runtime bundle", "--image LAYOUT[:TAG] [OPTIONS] BUNDLE",
	 "      --image=LAYOUT[:TAG]         the image to unpack (TAG defaults to latest)\n"
	 PLATFORM_OPTS_HELP
	 "      --keep-dirlinks              unpack through symlinks to directories\n" MAP_OPTS_HELP,
	 cmd_unpack},
	/* layout */
	{"fsck", NULL, "layout", "check every blob and every image of a layout", "--layout LAYOUT [--full] [--json]",
	 "      --layout=LAYOUT              the layout to check\n"
	 "      --full                       also decompress every layer and check its diff_id\n"
	 "      --json                       print a JSON report (clean, problems, unreferenced, temporary)\n",
	 cmd_fsck},
	{"gc", NULL, "layout", "remove unreferenced blobs and stale temporary files", "--layout LAYOUT",
	 "      --layout=LAYOUT              the layout to clean\n", cmd_gc},
	{"init", NULL, "layout", "create a new, empty OCI image layout", "--layout LAYOUT",
	 "      --layout=LAYOUT              where to create the layout\n", cmd_init},
	{"list", "ls", "layout", "list the tags of a layout", "--layout LAYOUT [--json]",
	 "      --layout=LAYOUT              the layout to list\n"
	 "      --json                       print a JSON array of {tag, digest, mediaType, size}\n",
	 cmd_ls},
	/* raw */
	{"raw", NULL, "raw", "low-level commands: raw unpack, raw runtime-config, raw add-layer",
	 "unpack|runtime-config|add-layer [OPTIONS]",
	 "  unpack ROOTFS                    unpack an image's root filesystem only\n"
	 "  runtime-config CONFIG.json       generate a runtime-spec config from an image's config\n"
	 "  add-layer LAYER.tar              add an uncompressed tar archive as a new layer\n"
	 "Run 'ocitree raw SUBCOMMAND --help' for its options.\n",
	 cmd_raw},
	/* mount */
	{"mount", NULL, "mount", "mount an image (or one layer) without extracting it, read-only or writable",
	 "[OPTIONS] [--upper DIR] --image LAYOUT[:TAG] MOUNTPOINT",
	 "      --image=LAYOUT[:TAG]         the image to mount (TAG defaults to latest)\n"
	 PLATFORM_OPTS_HELP
	 "      --upper=DIR                  make the mount writable: changes go to DIR (see ocitree-upper(5))\n"
	 "      --workdir=DIR                the work directory of --upper, on its file system (default DIR.work)\n"
	 "      --layer=N|DIGEST             mount one layer as stored (1 is the lowest), whiteouts shown as files\n"
	 "      --upto=N                     mount the image merged up to layer N\n"
	 "      --cache-dir=DIR              where layer indexes are cached (default $OCITREE_CACHE_DIR,\n"
	 "                                   else $XDG_CACHE_HOME/ocitree, else ~/.cache/ocitree)\n"
	 "      --rebuild-index              ignore cached layer indexes and build them again\n"
	 "  -f, --foreground                 stay in the foreground (default: return once mounted)\n"
	 FS_MOUNT_OPTIONS_HELP,
	 cmd_mount},
	{"store", NULL, "mount", "serve the layers of layouts to podman and CRI-O (an additional layer store)",
	 "--layout LAYOUT... [OPTIONS] MOUNTPOINT",
	 "      --layout=LAYOUT              a layout whose images' layers are served (repeatable; searched\n"
	 "                                   in order)\n"
	 "      --cache-dir=DIR              where layer indexes are cached (default as for mount)\n"
	 "      --opaque-xattr=trusted|user  how opaque directories are marked (default: trusted for\n"
	 "                                   root, user otherwise, as rootless overlayfs reads)\n"
	 "  -f, --foreground                 stay in the foreground (default: return once mounted)\n"
	 "  -o OPTIONS                       mount options: debug, allow_other, threads=N, cache_size=MIB,\n"
	 "                                   timeout=SECONDS, and libfuse's\n",
	 cmd_store},
	{"umount", "unmount", "mount", "unmount a mounted image", "[--lazy] MOUNTPOINT",
	 "  -z, --lazy                       detach now, finish when the mount is no longer busy\n", cmd_umount},
	{"commit", NULL, "mount", "turn the changes of a writable mount into a new layer",
	 "[--upper DIR [--workdir DIR] | MOUNTPOINT] --image LAYOUT[:NEWTAG] [OPTIONS]",
	 "      --image=LAYOUT[:NEWTAG]      the layout of the mounted image, and the tag of the result\n"
	 "                                   (default: the tag that was mounted)\n"
	 "      --upper=DIR                  commit this upper directory (not mounted) instead of a mount\n"
	 "      --workdir=DIR                the work directory of --upper (default DIR.work)\n"
	 COMPRESS_OPTS_HELP
	 "      --clear                      empty the upper directory afterwards: the mount goes on\n"
	 "                                   showing the same tree, on top of the new image\n"
	 "      --cache-dir=DIR              with --upper: where layer indexes are cached (for metacopy data)\n"
	 HISTORY_OPTS_HELP,
	 cmd_commit},
	{"run", NULL, "mount", "run a command in a container on a writable mount of an image",
	 "--image LAYOUT[:TAG] [OPTIONS] [--] [COMMAND [ARG...]]",
	 "      --image=LAYOUT[:TAG]         the image to run (TAG defaults to latest)\n"
	 "      --upper=DIR                  keep the changes in DIR (default: a temporary directory, removed\n"
	 "                                   afterwards unless the command fails)\n"
	 "      --commit=LAYOUT:NEWTAG       when the command succeeds, commit its changes as NEWTAG\n"
	 "      --bind=SRC:DST[:ro]          bind-mount SRC at DST in the container (repeatable)\n"
	 "      --env=NAME=VALUE             set an environment variable (repeatable; NAME alone passes\n"
	 "                                   this environment's value on)\n"
	 "      --user=USER[:GROUP]          run as this user (names are looked up in the image)\n"
	 "      --workdir=DIR                the working directory in the container\n"
	 "      --runtime=runc|crun|PATH     the OCI runtime (default: runc, else crun)\n"
	 "      --cache-dir=DIR              where layer indexes are cached\n" PLATFORM_OPTS_HELP COMPRESS_OPTS_HELP
	 HISTORY_OPTS_HELP,
	 cmd_run},
	{NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};

int cli_exit_status;

static const char *const groups[][2] = {
	{"image", "Image commands"},
	{"layout", "Layout commands"},
	{"mount", "Mount commands"},
	{"raw", "Raw commands"},
};

static void print_main_help(FILE *f)
{
	fputs("Usage: ocitree [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]\n\n"
	      "ocitree works on OCI images in an OCI image layout directory: it unpacks and\n"
	      "repacks them, mounts them without extracting, and commits changes as layers.\n",
	      f);
	for (size_t g = 0; g < ARRAY_SIZE(groups); g++) {
		bool any = false;
		for (const struct command *c = commands; c->name; c++) {
			if (strcmp(c->group, groups[g][0]) != 0)
				continue;
			if (!any)
				fprintf(f, "\n%s:\n", groups[g][1]);
			any = true;
			_cleanup_free_ char *name = c->alias ? xasprintf("%s, %s", c->name, c->alias) : xstrdup(c->name);
			fprintf(f, "  %-16s %s\n", name, c->summary);
		}
	}
	fputs("\nGlobal options:\n"
	      "      --log=LEVEL   log level: debug, info, warn (default) or error\n"
	      "      --verbose     the same as --log=info\n"
	      "  -h, --help        show this help\n"
	      "  -v, --version     show the version\n"
	      "\nRun 'ocitree COMMAND --help' for the options of a command.\n",
	      f);
}

static void print_help(FILE *f)
{
	if (cli_as_umoci)
		umoci_print_main_help(f, commands);
	else
		print_main_help(f);
}

static void log_to_stderr(enum ocitree_log_level level, const char *msg, void *userdata)
{
	static const char *const names[] = {"debug", "info", "warning", "error"};
	fprintf(stderr, "ocitree: %s: %s\n", names[level], msg);
}

/* Without a mount.fuse.ocitree where mount(8) looks (/sbin), mount.fuse3
 * takes `mount -t fuse.ocitree` and runs `ocitree SOURCE MOUNTPOINT -o
 * OPTIONS` (found in the default PATH of /bin/sh, /usr/local/bin
 * included).  Such a call is told from a command by its first argument,
 * which is no command but an image (LAYOUT:TAG, or a LAYOUT directory),
 * and its second, an existing directory. */
static bool is_mount_helper_call(int argc, char **argv)
{
	struct stat st;
	if (argc < 3 || argv[1][0] == '-' || strcmp(argv[1], "help") == 0 || cli_find_command(commands, argv[1]))
		return false;
	if (!strchr(argv[1], ':') && !(stat(argv[1], &st) == 0 && S_ISDIR(st.st_mode)))
		return false;
	return stat(argv[2], &st) == 0 && S_ISDIR(st.st_mode);
}

/* Does the environment ask for C's messages (LC_ALL, else LC_MESSAGES, else
 * LANG: "C", "POSIX", "C.<codeset>" or nothing)? */
static bool messages_are_c(void)
{
	const char *v = getenv("LC_ALL");
	if (!v || !*v)
		v = getenv("LC_MESSAGES");
	if (!v || !*v)
		v = getenv("LANG");
	return !v || !*v || strcmp(v, "C") == 0 || strcmp(v, "POSIX") == 0 || strncmp(v, "C.", 2) == 0;
}

/* Take the locale's character set (libarchive converts the names it
 * extracts to it) and message language (strerror) from the environment, no
 * more: every category is a file to map at each start (twelve for LC_ALL),
 * and what is written for other programs (umoci's state files, JSON) keeps
 * C's dates and numbers.  C's messages need no LC_MESSAGES, and a command
 * that never extracts through libarchive (ctype false) no LC_CTYPE either
 * then: locale.alias, LC_CTYPE and gconv-modules.cache were a chain of a
 * dozen small reads at the start of a warm mount from a cold page cache.
 * Translated messages are converted to LC_CTYPE's character set: they get
 * both. */
static void set_locale(bool ctype)
{
	bool c_messages = messages_are_c();
	if (ctype || !c_messages)
		setlocale(LC_CTYPE, "");
	if (!c_messages)
		setlocale(LC_MESSAGES, "");
}

/* Commands that never extract a layer through libarchive (mounting serves
 * names as they are in the tar). */
static bool needs_ctype(const char *name)
{
	return strcmp(name, "mount") != 0 && strcmp(name, "umount") != 0 && strcmp(name, "store") != 0;
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	if (strcmp(base, "mount.fuse.ocitree") == 0 || is_mount_helper_call(argc, argv)) {
		set_locale(false);
		return mount_helper_main(argc, argv);
	}
	cli_as_umoci = strcmp(base, "umoci") == 0;
	ocitree_log_set_handler(log_to_stderr, NULL);
	struct ocitree_error *err = NULL;

	enum { OPT_LOG = 1, OPT_VERBOSE };
	static const struct option global[] = {
		{"log", required_argument, NULL, OPT_LOG},
		{"verbose", no_argument, NULL, OPT_VERBOSE},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'v'},
		{NULL, 0, NULL, 0},
	};
	/* global options stop at the command name */
	int c, longidx = -1;
	bool log_set = false, verbose = false;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:hv", global, &longidx)) != -1) {
		const char *abbrev = c != '?' && c != ':' ? cli_abbreviated(argc, argv, global, longidx) : NULL;
		longidx = -1;
		if (abbrev) {
			fprintf(stderr, "ocitree: unknown option '%s' (see 'ocitree --help')\n", abbrev);
			return 2;
		}
		switch (c) {
		case OPT_LOG: {
			enum ocitree_log_level lvl;
			if (ocitree_log_level_parse(optarg, &lvl) < 0) {
				fprintf(stderr, "ocitree: invalid --log level '%s': use debug, info, warn or error\n", optarg);
				return 2;
			}
			ocitree_log_set_level(lvl);
			log_set = true;
			break;
		}
		case OPT_VERBOSE:
			verbose = true;
			if (ocitree_log_get_level() > OCITREE_LOG_INFO)
				ocitree_log_set_level(OCITREE_LOG_INFO);
			break;
		case 'h':
			print_help(stdout);
			return 0;
		case 'v':
			if (cli_as_umoci)
				umoci_print_version(stdout);
			else
				printf("ocitree version %s\n", PACKAGE_VERSION);
			return 0;
		case ':':
			fprintf(stderr, "ocitree: option '%s' needs a value (see 'ocitree --help')\n", argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "ocitree: unknown option '%s' (see 'ocitree --help')\n", argv[optind - 1]);
			return 2;
		}
	}
	if (log_set && verbose) {
		/* as umoci: which of the two was meant is not ours to guess */
		fprintf(stderr, "ocitree: --log=* and --verbose are mutually exclusive\n");
		return 2;
	}
	if (optind >= argc) {
		print_help(stderr);
		return 2;
	}
	const char *name = argv[optind];
	if (strcmp(name, "help") == 0 || (cli_as_umoci && strcmp(name, "h") == 0)) {
		const struct command *cmd = optind + 1 < argc ? cli_find_command(commands, argv[optind + 1]) : NULL;
		if (cmd)
			cli_print_help(stdout, "ocitree", cmd);
		else
			print_help(stdout);
		return 0;
	}
	const struct command *cmd = cli_find_command(commands, name);
	if (!cmd) {
		fprintf(stderr, "ocitree: unknown command '%s' (see 'ocitree --help')\n", name);
		return 2;
	}
	cli_current = cmd;
	set_locale(needs_ctype(cmd->name));
	int cargc = argc - optind;
	char **cargv = argv + optind;
	optind = 0; /* a full reset of getopt for the command's options */
	int r = cmd->fn(cargc, cargv, &err);
	if (r < 0) {
		int status = err && err->kind == OCITREE_ERROR_USAGE ? 2 : 1;
		fprintf(stderr, "ocitree %s: %s\n", cmd->name, err ? err->msg : "failed");
		ocitree_error_free(err);
		return status;
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "ocitree %s: write output: %s\n", cmd->name, strerror(errno));
		return 1;
	}
	return cli_exit_status;
}
