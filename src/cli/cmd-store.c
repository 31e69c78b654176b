/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree store: the layers of the images in some layouts, served as a
 * containers/storage additional layer store (podman, CRI-O) over FUSE;
 * the options and the layer store before handing over to the driver in
 * src/fs (fs-store.c).
 */
#include "config.h"

#include <sys/stat.h>

#include "cli.h"
#include "fs.h"
#include "ocitree/layer-store.h"

struct store_args {
	char **layouts; /* --layout, absolute paths, NULL-terminated */
	size_t n_layouts;
	const char *cache_dir;
	const char *opaque; /* --opaque-xattr */
	bool foreground;
	char **mount_opts; /* -o, NULL-terminated */
	size_t n_mount_opts;
};

static void store_args_clear(struct store_args *a)
{
	strv_free(a->layouts);
	free(a->mount_opts);
}

static int do_store(struct store_args *a, const char *mountpoint, struct ocitree_error **err)
{
	_cleanup_free_ char *fsname = xasprintf("ocitree-store:%s", a->layouts[0]);
	struct fs_opts fo = {.mountpoint = mountpoint,
	                     .foreground = a->foreground,
	                     .default_fsname = fsname,
	                     .mount_opts = a->mount_opts,
	                     .writable = true};
	if (fs_check_options(&fo, err) < 0)
		return -1;
	struct stat st;
	if (stat(mountpoint, &st) < 0)
		return ocitree_error_set(err, errno, "mountpoint '%s'", mountpoint);
	if (!S_ISDIR(st.st_mode))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "mountpoint '%s' is not a directory", mountpoint);
	_cleanup_free_ char *cache = a->cache_dir ? xstrdup(a->cache_dir) : ocitree_cache_dir_default();
	if (!cache)
		return ocitree_error_setk(
		    err, OCITREE_ERROR_USAGE,
		    "no cache directory for layer indexes: use --cache-dir, OCITREE_CACHE_DIR or HOME");
	/* the daemon leaves the working directory: keep absolute paths */
	if (mkdir(cache, 0700) < 0 && errno != EEXIST)
		return ocitree_error_set(err, errno, "cache directory '%s'", cache);
	_cleanup_free_ char *abs_cache = realpath(cache, NULL);
	if (!abs_cache)
		return ocitree_error_set(err, errno, "cache directory '%s'", cache);
	/* rootless engines mount overlayfs with userxattr: they read
	 * user.overlay.opaque, and only root may read trusted.* */
	bool user_xattrs = a->opaque ? strcmp(a->opaque, "user") == 0 : geteuid() != 0;
	/* the daemon is this process's child from here on, errors included:
	 * forked while the process is small, as for ocitree mount */
	if (!fs_runs_in_foreground(&fo) && fs_fork_daemon(&fo, err) < 0)
		return -1;
	struct ocitree_chunk_cache *chunks = ocitree_chunk_cache_new(fs_cache_bytes(&fo));
	struct ocitree_layer_store_options so = {
	    .layouts = (const char *const *)a->layouts,
	    .n_layouts = a->n_layouts,
	    .index = {.cache_dir = abs_cache, .chunks = chunks},
	    .user_xattrs = user_xattrs,
	};
	struct ocitree_layer_store *s = ocitree_layer_store_new(&so, err);
	int r = -1;
	if (s)
		r = fs_run_store(s, &fo, err);
	ocitree_layer_store_free(s);
	ocitree_chunk_cache_free(chunks);
	return r;
}

int cmd_store(int argc, char **argv, struct ocitree_error **err)
{
	enum { OPT_LAYOUT = OPT_COMMAND_BASE, OPT_CACHE_DIR, OPT_OPAQUE };
	static const struct option opts[] = {
	    {"layout", required_argument, NULL, OPT_LAYOUT},
	    {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
	    {"opaque-xattr", required_argument, NULL, OPT_OPAQUE},
	    {"foreground", no_argument, NULL, 'f'},
	    {"options", required_argument, NULL, 'o'},
	    CLI_HELP_OPTION,
	    {NULL, 0, NULL, 0},
	};
	struct store_args a = {0};
	int c, r = -1;
	while ((c = cli_getopt(argc, argv, opts, err)) != -1) {
		switch (c) {
		case OPT_LAYOUT: {
			char *abs = realpath(optarg, NULL);
			if (!abs) {
				ocitree_error_set(err, errno, "open layout '%s'", optarg);
				goto out;
			}
			a.layouts = xrealloc(a.layouts, (a.n_layouts + 2) * sizeof(*a.layouts));
			a.layouts[a.n_layouts++] = abs;
			a.layouts[a.n_layouts] = NULL;
			break;
		}
		case OPT_CACHE_DIR: a.cache_dir = optarg; break;
		case OPT_OPAQUE:
			if (strcmp(optarg, "trusted") != 0 && strcmp(optarg, "user") != 0) {
				cli_usage_error(err, "--opaque-xattr: use trusted or user");
				goto out;
			}
			a.opaque = optarg;
			break;
		case 'f': a.foreground = true; break;
		case 'o':
			a.mount_opts = xrealloc(a.mount_opts, (a.n_mount_opts + 2) * sizeof(*a.mount_opts));
			a.mount_opts[a.n_mount_opts++] = optarg;
			a.mount_opts[a.n_mount_opts] = NULL;
			break;
		case 'h':
			cli_print_help(stdout, "ocitree", cli_current);
			r = CLI_EXIT_HELP;
			goto out;
		default: goto out;
		}
	}
	if (!a.n_layouts) {
		cli_usage_error(err, "missing mandatory option --layout");
		goto out;
	}
	if (argc - optind != 1) {
		cli_usage_error(err, argc - optind < 1 ? "missing MOUNTPOINT" : "unexpected argument '%s'",
		                argv[optind + 1]);
		goto out;
	}
	r = do_store(&a, argv[optind], err);
out:
	store_args_clear(&a);
	return r;
}
