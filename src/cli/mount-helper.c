/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `mount -t fuse.ocitree LAYOUT[:TAG] MOUNTPOINT -o OPTIONS` and fstab lines
 * of type fuse.ocitree: mount(8) runs /sbin/mount.fuse.ocitree (a link to
 * the ocitree binary) as
 *
 *   mount.fuse.ocitree SOURCE MOUNTPOINT [-o OPTIONS] [-n] [-s] [-v] [-f]
 *
 * or, where that link is missing, mount.fuse3 runs `ocitree SOURCE
 * MOUNTPOINT -o OPTIONS` (main() tells that call from a command).  This
 * turns either into `ocitree mount`: ocitree's own options are written
 * as upper=DIR, workdir=DIR, layer=N, upto=N, cache_dir=DIR, platform=P
 * and rebuild_index; the options that only mean something to mount(8) or fstab
 * (defaults, auto, noauto, user, nofail, _netdev, x-*, ...) are dropped; the
 * rest go to the FUSE mount as -o.
 */
#include "config.h"

#include "cli.h"

static const char *const fstab_only[] = {
	"defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group", "nofail", "_netdev", "sw", "xx",
};

static bool fstab_only_option(const char *o)
{
	for (size_t i = 0; i < ARRAY_SIZE(fstab_only); i++)
		if (strcmp(o, fstab_only[i]) == 0)
			return true;
	return str_has_prefix(o, "x-") || str_has_prefix(o, "comment=");
}

static const struct {
	const char *key; /* as written in -o, with its '=' when it takes a value */
	const char *flag;
} own[] = {
	{"upper=", "--upper"},	 {"workdir=", "--workdir"},	    {"layer=", "--layer"},
	{"upto=", "--upto"},	 {"cache_dir=", "--cache-dir"},	    {"rebuild_index", "--rebuild-index"},
	{"platform=", "--platform"},
};

static void push(char ***v, size_t *n, const char *s)
{
	*v = xrealloc(*v, (*n + 2) * sizeof(char *));
	(*v)[(*n)++] = xstrdup(s);
	(*v)[*n] = NULL;
}

int mount_helper_main(int argc, char **argv)
{
	const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	const char *source = NULL, *mountpoint = NULL;
	_cleanup_buf_ struct buf opts = BUF_INIT;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-o") == 0 && i + 1 < argc) {
			if (opts.len)
				buf_puts(&opts, ",");
			buf_puts(&opts, argv[++i]);
		} else if (strcmp(a, "-t") == 0 && i + 1 < argc) {
			i++; /* the type: fuse.ocitree */
		} else if (strcmp(a, "-n") == 0 || strcmp(a, "-s") == 0 || strcmp(a, "-v") == 0) {
			/* no mtab, sloppy, verbose: nothing to do */
		} else if (strcmp(a, "-f") == 0) {
			return 0; /* mount -f: fake it */
		} else if (a[0] == '-') {
			fprintf(stderr, "%s: unknown option '%s'\n", prog, a);
			return 2;
		} else if (!source) {
			source = a;
		} else if (!mountpoint) {
			mountpoint = a;
		} else {
			fprintf(stderr, "%s: unexpected argument '%s'\n", prog, a);
			return 2;
		}
	}
	if (!source || !mountpoint) {
		fprintf(stderr, "usage: %s LAYOUT[:TAG] MOUNTPOINT [-o OPTIONS]\n", prog);
		return 2;
	}
	char **args = NULL;
	size_t n = 0;
	push(&args, &n, "ocitree");
	push(&args, &n, "mount");
	_cleanup_buf_ struct buf fuse_opts = BUF_INIT;
	bool upper = strstr(opts.data ? opts.data : "", "upper=") != NULL;
	char *save = NULL;
	for (char *o = opts.data ? strtok_r(opts.data, ",", &save) : NULL; o; o = strtok_r(NULL, ",", &save)) {
		bool mine = false;
		for (size_t k = 0; k < ARRAY_SIZE(own) && !mine; k++) {
			size_t kl = strlen(own[k].key);
			bool takes_value = own[k].key[kl - 1] == '=';
			if (takes_value ? strncmp(o, own[k].key, kl) == 0 : strcmp(o, own[k].key) == 0) {
				push(&args, &n, own[k].flag);
				if (takes_value)
					push(&args, &n, o + kl);
				mine = true;
			}
		}
		/* mount(8) says rw unless told ro; without an upper directory the
		 * image is read-only whatever it says */
		if (mine || fstab_only_option(o) || (strcmp(o, "rw") == 0 && !upper))
			continue;
		if (fuse_opts.len)
			buf_puts(&fuse_opts, ",");
		buf_puts(&fuse_opts, o);
	}
	if (fuse_opts.len) {
		push(&args, &n, "-o");
		push(&args, &n, fuse_opts.data);
	}
	push(&args, &n, "--image");
	push(&args, &n, source);
	push(&args, &n, "--");
	push(&args, &n, mountpoint);
	execv("/proc/self/exe", args);
	fprintf(stderr, "%s: cannot run ocitree: %s\n", prog, strerror(errno));
	strv_free(args);
	return 1;
}
