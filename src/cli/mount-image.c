/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Mounting an image: the set-up (layer indexes, tree, the upper directory's
 * record) before handing over to the driver in src/fs.  `ocitree mount`
 * calls it, and `ocitree run` and `build` in the process that serves their
 * mount (src/cli/run.c).
 */
#include "config.h"

#include <sys/stat.h>

#include "cli.h"
#include "fs.h"
#include "ocitree/mount.h"

int cli_layer_number(const char *opt, const char *s, long *out, struct ocitree_error **err)
{
	char *e = NULL;
	errno = 0;
	long v = strtol(s, &e, 10);
	if (errno || !e || *e || e == s || v < 1)
		return cli_usage_error(err, "invalid %s '%s': not a layer number (1 is the lowest layer)", opt, s);
	*out = v;
	return 0;
}

/* Is path a mount point right now?  The mount table names mount points in
 * canonical form. */
static bool is_mount_point(const char *path)
{
	_cleanup_free_ char *real = realpath(path, NULL);
	if (!real)
		return false;
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	while (!found && getline(&line, &cap, f) > 0) {
		/* id parent major:minor root mountpoint ... with octal escapes */
		char *save = NULL, *tok = strtok_r(line, " ", &save);
		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		if (!tok)
			continue;
		struct buf b = BUF_INIT;
		for (const char *p = tok; *p; p++) {
			if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] && p[3]) {
				char c = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
				buf_append(&b, &c, 1);
				p += 3;
			} else {
				buf_append(&b, p, 1);
			}
		}
		found = b.data && strcmp(b.data, real) == 0;
		buf_free(&b);
	}
	free(line);
	return found;
}

static int check_mountpoint(const char *mp, struct ocitree_error **err)
{
	struct stat st;
	if (stat(mp, &st) < 0)
		return ocitree_error_set(err, errno, "mountpoint '%s'", mp);
	if (!S_ISDIR(st.st_mode))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "mountpoint '%s' is not a directory", mp);
	if (is_mount_point(mp))
		return ocitree_error_setk(err, OCITREE_ERROR_EXISTS,
		                          "mountpoint '%s' is busy: something is mounted there", mp);
	return 0;
}

/* Which layers to mount: [*from, *to) of the manifest's layers. */
static int select_layers(const struct cli_mount_request *a, const struct ocitree_image *img, size_t *from, size_t *to,
                         struct ocitree_error **err)
{
	size_t n = img->manifest->n_layers;
	*from = 0;
	*to = n;
	if (a->layer) {
		if (strchr(a->layer, ':')) {
			for (size_t i = 0; i < n; i++) {
				if (strcmp(img->manifest->layers[i].digest, a->layer) == 0) {
					*from = i;
					*to = i + 1;
					return 0;
				}
			}
			return ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND,
			                          "--layer %s: no such layer in the image", a->layer);
		}
		long v;
		if (cli_layer_number("--layer", a->layer, &v, err) < 0)
			return -1;
		if ((size_t)v > n)
			return ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND, "--layer %ld: the image has %zu layers",
			                          v, n);
		*from = (size_t)v - 1;
		*to = (size_t)v;
		return 0;
	}
	if (a->upto) {
		if ((size_t)a->upto > n)
			return ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND, "--upto %ld: the image has %zu layers",
			                          a->upto, n);
		*to = (size_t)a->upto;
	}
	return 0;
}

int cli_mount_image(const struct cli_mount_request *a, const char *mountpoint, struct ocitree_error **err)
{
	int r = -1;
	_cleanup_free_ char *fsname = xasprintf("%s:%s", a->layout, a->tag);
	struct fs_opts fo = {.mountpoint = mountpoint,
	                     .foreground = a->foreground,
	                     .default_fsname = fsname,
	                     .mount_opts = a->mount_opts,
	                     .writable = a->upper != NULL,
	                     .ready = a->ready,
	                     .ready_data = a->ready_data};
	if (fs_check_options(&fo, err) < 0 || check_mountpoint(mountpoint, err) < 0)
		return -1;
	_cleanup_free_ char *cache_dir = a->cache_dir ? xstrdup(a->cache_dir) : ocitree_cache_dir_default();
	if (!cache_dir) {
		ocitree_error_setk(err, OCITREE_ERROR_USAGE,
		                   "no cache directory for layer indexes: use --cache-dir, OCITREE_CACHE_DIR or HOME");
		return -1;
	}
	/* the daemon is this process's child from here on, errors included */
	if (!fs_runs_in_foreground(&fo) && fs_fork_daemon(&fo, err) < 0)
		return -1;
	/* a writable mount's daemon commits into the layout: it needs the
	 * layout's absolute path once it has left the working directory */
	_cleanup_free_ char *layout_path = a->upper ? realpath(a->layout, NULL) : xstrdup(a->layout);
	if (!layout_path)
		return ocitree_error_set(err, errno, "open layout '%s'", a->layout);
	_cleanup_free_ char *abs_cache = a->upper ? realpath(cache_dir, NULL) : NULL;

	struct ocitree_layout *l = cli_open_layout(layout_path, err);
	if (!l)
		return -1;
	struct ocitree_image *img = cli_open_image(l, a->tag, a->platform, err);
	struct ocitree_chunk_cache *chunks = NULL;
	struct ocitree_upper *upper = NULL;
	struct ocitree_mount m = {0};
	struct ocitree_upper_probe_opts po;
	struct ocitree_mount_options mo = {.tree_flags = a->layer ? OCITREE_TREE_RAW : 0, .probe = &po};
	if (!img || select_layers(a, img, &mo.from, &mo.to, err) < 0)
		goto out;
	if (a->upper &&
	    (fs_upper_probe_opts(&fo, &po, err) < 0 || !(upper = ocitree_upper_open(a->upper, a->workdir, true, err))))
		goto out;
	chunks = ocitree_chunk_cache_new(fs_cache_bytes(&fo));
	mo.index = (struct ocitree_layer_index_opts){.cache_dir = abs_cache ? abs_cache : cache_dir,
	                                             .chunks = chunks,
	                                             .rebuild = a->rebuild,
	                                             .progress = cli_progress};
	mo.upper = upper;
	r = ocitree_mount_setup(l, img, &mo, &m, err);
	cli_progress_end();
	if (r < 0)
		goto out;
	r = -1;
	log_info("%u inodes, %zu bytes of tree", ocitree_tree_inodes(m.tree), ocitree_tree_memory(m.tree));
	/* nothing of the layout is needed any more: the indexes hold their fds */
	ocitree_image_free(img);
	img = NULL;
	ocitree_layout_free(l);
	l = NULL;
	if (upper) {
		/* the daemon's own index passes (a live commit) say nothing */
		struct ocitree_layer_index_opts io = mo.index;
		io.progress = NULL;
		const struct ocitree_upper_state *st = ocitree_upper_get_state(upper);
		fo.virtual_owners = st && st->format.virtual_owners;
		struct fs_rw_setup setup = {.upper = upper,
		                            .tree = m.tree,
		                            .layers = m.layers,
		                            .n_layers = m.n_layers,
		                            .index_opts = io,
		                            .layout = layout_path,
		                            .fresh = m.fresh};
		r = fs_run_rw(&setup, &fo, err);
	} else {
		r = fs_run(m.tree, &fo, err);
	}
out:
	ocitree_mount_clear(&m);
	ocitree_upper_free(upper);
	ocitree_chunk_cache_free(chunks);
	ocitree_image_free(img);
	ocitree_layout_free(l);
	return r;
}
