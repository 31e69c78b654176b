/* SPDX-License-Identifier: Apache-2.0 */
/* Options shared by the commands that unpack or write layers, and progress. */
#include "config.h"

#include <inttypes.h>

#include "cli.h"

int map_opt(struct map_opts *m, int opt, const char *arg, struct ocitree_error **err)
{
	struct ocitree_idmap map;
	switch (opt) {
	case OPT_ROOTLESS:
		m->rootless = true;
		return 1;
	case OPT_UID_MAP:
	case OPT_GID_MAP:
		if (ocitree_idmap_parse(arg, &map, err) < 0)
			return ocitree_error_prefix(err, "--%s", opt == OPT_UID_MAP ? "uid-map" : "gid-map");
		if (opt == OPT_UID_MAP) {
			m->uid = xrealloc(m->uid, (m->n_uid + 1) * sizeof(map));
			m->uid[m->n_uid++] = map;
		} else {
			m->gid = xrealloc(m->gid, (m->n_gid + 1) * sizeof(map));
			m->gid[m->n_gid++] = map;
		}
		return 1;
	default:
		return 0;
	}
}

void map_opts_get(struct map_opts *m, struct ocitree_map_options *out)
{
	if (m->rootless && !m->n_uid) {
		m->uid = xmalloc(sizeof(*m->uid));
		m->uid[0] = (struct ocitree_idmap){0, (uint32_t)geteuid(), 1};
		m->n_uid = 1;
	}
	if (m->rootless && !m->n_gid) {
		m->gid = xmalloc(sizeof(*m->gid));
		m->gid[0] = (struct ocitree_idmap){0, (uint32_t)getegid(), 1};
		m->n_gid = 1;
	}
	out->rootless = m->rootless;
	out->uid_map = m->uid;
	out->n_uid_map = m->n_uid;
	out->gid_map = m->gid;
	out->n_gid_map = m->n_gid;
}

void map_opts_clear(struct map_opts *m)
{
	free(m->uid);
	free(m->gid);
	memset(m, 0, sizeof(*m));
}

int compress_opt(const char *arg, enum ocitree_compression *c, struct ocitree_error **err)
{
	if (ocitree_compression_parse(arg, c) < 0)
		return cli_usage_error(err, "invalid --compress '%s': use gzip, zstd, none or auto", arg);
	return 0;
}

int layer_opts_parse(int argc, char **argv, const struct option *opts, struct layer_opts *o,
		     int (*own)(int opt, const char *arg, void *data, struct ocitree_error **err), void *data,
		     struct ocitree_error **err)
{
	o->compression = OCITREE_COMPRESSION_AUTO;
	int c;
	while ((c = cli_getopt(argc, argv, opts, err)) != -1) {
		if (history_opt(&o->hist, c, optarg))
			continue;
		int m = map_opt(&o->maps, c, optarg, err);
		if (m < 0)
			return -1;
		if (m > 0)
			continue;
		switch (c) {
		case OPT_LAYER_IMAGE:
			if (cli_image_ref(optarg, &o->image, err) < 0)
				return -1;
			break;
		case OPT_LAYER_TAG:
			if (cli_tag_opt(optarg, &o->tag, err) < 0)
				return -1;
			break;
		case OPT_COMPRESS:
			if (compress_opt(optarg, &o->compression, err) < 0)
				return -1;
			break;
		case OPT_PLATFORM:
			if (platform_opt(optarg, &o->platform, err) < 0)
				return -1;
			break;
		CLI_HANDLE_HELP;
		case '?': /* cli_getopt has set the usage error */
			return -1;
		default:
			if (!own || own(c, optarg, data, err) < 0)
				return -1;
		}
	}
	return cli_require_image(&o->image, err);
}

void layer_opts_clear(struct layer_opts *o)
{
	image_ref_clear(&o->image);
	map_opts_clear(&o->maps);
	platform_opt_clear(&o->platform);
}

static bool progress_shown;

void cli_progress(const struct ocitree_progress *p, void *userdata)
{
	static int tty = -1;
	static struct timespec last;
	static char last_phase[32];
	if (tty < 0)
		tty = isatty(STDERR_FILENO);
	if (!tty)
		return;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	/* ten lines a second at most, but a new phase at once */
	if (progress_shown && strcmp(p->phase, last_phase) == 0 &&
	    (now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000 < 100)
		return;
	last = now;
	snprintf(last_phase, sizeof(last_phase), "%s", p->phase);
	_cleanup_free_ char *size = human_size((int64_t)p->bytes);
	if (p->n_layers)
		fprintf(stderr, "\r\033[K%s: layer %zu/%zu: %s, %" PRIu64 " entries", p->phase, p->layer, p->n_layers, size,
			p->entries);
	else
		fprintf(stderr, "\r\033[K%s: %s, %" PRIu64 " entries", p->phase, size, p->entries);
	progress_shown = true;
}

void cli_progress_end(void)
{
	if (progress_shown)
		fputs("\r\033[K", stderr);
	progress_shown = false;
}
