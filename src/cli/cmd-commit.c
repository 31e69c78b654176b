/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree commit: the upper directory of a writable mount becomes a layer.
 * On a live mount the daemon does it (it holds the upper directory and
 * freezes writes meanwhile): the request goes over the control socket in
 * the work directory, found through the mount root's user.ocitree.workdir
 * xattr.  After unmounting, this process does it.
 */
#include "config.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>

#include "cli.h"
#include "json.h"

#define CONTROL_XATTR "user.ocitree.workdir"

struct commit_args {
	const char *layout;
	const char *tag; /* NULL: the tag the image was mounted from */
	const char *upper;
	const char *workdir;
	const char *cache_dir;
	enum ocitree_compression compression;
	bool clear;
	struct history_opts history;
};

static void print_result(const char *tag, const char *manifest, const char *layer, uint64_t entries)
{
	if (layer && *layer)
		printf("%s: %s (layer %s, %" PRIu64 " entries)\n", tag, manifest, layer, entries);
	else
		printf("%s: %s (no changes: no layer)\n", tag, manifest);
}

static int commit_offline(struct commit_args *a, struct ocitree_error **err)
{
	struct ocitree_upper *u = ocitree_upper_open(a->upper, a->workdir, false, err);
	if (!u) {
		if (err && *err && (*err)->kind == OCITREE_ERROR_EXISTS)
			ocitree_error_prefix(err, "it is mounted: commit through its mountpoint");
		return -1;
	}
	int r = -1;
	struct ocitree_layout *l = NULL;
	struct ocitree_history h = {0};
	if (!u->has_state) {
		ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND,
				   "upper directory '%s' was never mounted (its work directory '%s' has no record)",
				   a->upper, u->work_path);
		goto out;
	}
	ocitree_upper_remove_stale(u);
	if (u->state.clearing && ocitree_upper_finish_clear(u, err) < 0)
		goto out;
	const char *tag = a->tag ? a->tag : u->state.tag;
	l = cli_open_layout(a->layout, err);
	if (!l)
		goto out;
	if (!a->history.no_history)
		history_opts_entry(&a->history, NULL, "ocitree commit", false, &h);
	struct ocitree_commit_options o = {.compression = a->compression, .history = a->history.no_history ? NULL : &h,
					   .clear = a->clear, .cache_dir = a->cache_dir, .progress = cli_progress};
	struct ocitree_commit_result res;
	r = ocitree_upper_commit(u, l, tag, &o, &res, err);
	cli_progress_end();
	if (r == 0)
		print_result(tag, res.manifest, res.layer, res.entries);
out:
	ocitree_history_clear(&h);
	ocitree_layout_free(l);
	ocitree_upper_free(u);
	return r;
}

/* Send the request to the daemon of mountpoint and read its answer. */
static int commit_live(struct commit_args *a, const char *mountpoint, struct ocitree_error **err)
{
	_cleanup_close_ int mfd = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (mfd < 0)
		return ocitree_error_set(err, errno, "open '%s'", mountpoint);
	char workdir[PATH_MAX];
	ssize_t wl = fgetxattr(mfd, CONTROL_XATTR, workdir, sizeof(workdir) - 1);
	if (wl < 0)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
					  "'%s' is not a writable ocitree mount (use --upper DIR after unmounting)",
					  mountpoint);
	workdir[wl] = '\0';
	/* pages written through shared mappings reach the daemon now */
	if (syncfs(mfd) < 0)
		return ocitree_error_set(err, errno, "sync '%s'", mountpoint);
	_cleanup_close_ int wfd = open(workdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (wfd < 0)
		return ocitree_error_set(err, errno, "open work directory '%s'", workdir);
	_cleanup_free_ char *layout = realpath(a->layout, NULL);
	if (!layout)
		return ocitree_error_set(err, errno, "open layout '%s'", a->layout);

	_cleanup_json_ cJSON *req = json_object();
	json_add(req, "op", json_string("commit"));
	json_add(req, "layout", json_string(layout));
	if (a->tag)
		json_add(req, "tag", json_string(a->tag));
	json_add(req, "compression", json_string(ocitree_compression_name(a->compression)));
	json_add(req, "clear", json_bool(a->clear));
	if (!a->history.no_history) {
		struct ocitree_history h;
		history_opts_entry(&a->history, NULL, "ocitree commit", false, &h);
		cJSON *hj = json_object();
		json_add(hj, "created", json_string(h.created));
		json_add(hj, "created_by", json_string(h.created_by));
		if (h.author)
			json_add(hj, "author", json_string(h.author));
		if (h.comment)
			json_add(hj, "comment", json_string(h.comment));
		json_add(req, "history", hj);
		ocitree_history_clear(&h);
	}
	_cleanup_free_ char *text = json_print(req);

	_cleanup_close_ int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return ocitree_error_set(err, errno, "socket");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/control", wfd);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return ocitree_error_set(err, errno, "connect to the daemon of '%s' (%s/control)", mountpoint, workdir);
	if (write_all(s, text, strlen(text)) < 0 || write_all(s, "\n", 1) < 0)
		return ocitree_error_set(err, errno, "send the request to the daemon of '%s'", mountpoint);
	shutdown(s, SHUT_WR);
	_cleanup_buf_ struct buf b = BUF_INIT;
	for (;;) {
		buf_reserve(&b, 4096);
		ssize_t r = read(s, b.data + b.len, 4096);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return ocitree_error_set(err, errno, "read the answer of the daemon of '%s'", mountpoint);
		if (r == 0)
			break;
		b.len += (size_t)r;
		b.data[b.len] = '\0';
	}
	if (!b.len)
		return ocitree_error_setk(err, OCITREE_ERROR_FAILED,
					  "the daemon of '%s' ended the connection without an answer (did it die?)",
					  mountpoint);
	_cleanup_json_ cJSON *resp = json_parse_object(b.data, b.len, "the daemon's answer", err);
	if (!resp)
		return -1;
	bool okv = false;
	const char *msg = NULL, *manifest = NULL, *layer = NULL, *tag = NULL;
	int64_t entries = 0, kind = OCITREE_ERROR_FAILED;
	if (json_get_bool(resp, "ok", &okv, "the daemon's answer", err) < 0)
		return -1;
	if (!okv) {
		json_get_string(resp, "error", false, &msg, "the daemon's answer", NULL);
		json_get_int64(resp, "kind", false, &kind, "the daemon's answer", NULL);
		return ocitree_error_setk(err, (enum ocitree_error_kind)kind, "%s", msg ? msg : "the daemon failed");
	}
	if (json_get_string(resp, "manifest", true, &manifest, "the daemon's answer", err) < 0 ||
	    json_get_string(resp, "tag", true, &tag, "the daemon's answer", err) < 0 ||
	    json_get_string(resp, "layer", false, &layer, "the daemon's answer", err) < 0 ||
	    json_get_int64(resp, "entries", false, &entries, "the daemon's answer", err) < 0)
		return -1;
	print_result(tag, manifest, layer, (uint64_t)entries);
	return 0;
}

int cmd_commit(int argc, char **argv, struct ocitree_error **err)
{
	enum { OPT_IMAGE = OPT_COMMAND_BASE, OPT_UPPER, OPT_WORKDIR, OPT_CLEAR, OPT_CACHE_DIR };
	static const struct option opts[] = {
		{"image", required_argument, NULL, OPT_IMAGE},
		{"upper", required_argument, NULL, OPT_UPPER},
		{"workdir", required_argument, NULL, OPT_WORKDIR},
		COMPRESS_OPTION,
		{"clear", no_argument, NULL, OPT_CLEAR},
		{"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
		HISTORY_OPTIONS,
		CLI_HELP_OPTION,
		{NULL, 0, NULL, 0},
	};
	struct commit_args a = {.compression = OCITREE_COMPRESSION_GZIP};
	_cleanup_free_ char *layout = NULL, *tag = NULL;
	int c;
	while ((c = cli_getopt(argc, argv, opts, err)) != -1) {
		if (history_opt(&a.history, c, optarg))
			continue;
		switch (c) {
		case OPT_IMAGE: {
			/* the tag is optional here: without one, the mounted tag */
			const char *colon = strrchr(optarg, ':');
			free(layout);
			free(tag);
			layout = tag = NULL;
			if (colon) {
				if (ocitree_image_ref_parse(optarg, &layout, &tag, err) < 0)
					return -1;
			} else {
				if (!*optarg)
					return cli_usage_error(err, "invalid --image '': path is empty");
				layout = xstrdup(optarg);
			}
			break;
		}
		case OPT_UPPER:
			a.upper = optarg;
			break;
		case OPT_WORKDIR:
			a.workdir = optarg;
			break;
		case OPT_COMPRESS:
			if (compress_opt(optarg, &a.compression, err) < 0)
				return -1;
			break;
		case OPT_CLEAR:
			a.clear = true;
			break;
		case OPT_CACHE_DIR:
			a.cache_dir = optarg;
			break;
		CLI_HANDLE_HELP;
		default:
			return -1;
		}
	}
	if (history_opts_check(&a.history, err) < 0)
		return -1;
	if (!layout)
		return cli_usage_error(err, "missing mandatory option --image");
	a.layout = layout;
	a.tag = tag;
	if (a.workdir && !a.upper)
		return cli_usage_error(err, "--workdir needs --upper");
	int rest = argc - optind;
	if (a.upper && rest > 0)
		return cli_usage_error(err, "give either --upper DIR or a MOUNTPOINT, not both");
	if (!a.upper && rest != 1)
		return cli_usage_error(err, rest ? "unexpected argument '%s'" : "missing MOUNTPOINT (or --upper DIR)",
				       rest ? argv[optind + 1] : "");
	if (a.upper)
		return commit_offline(&a, err);
	if (a.cache_dir)
		return cli_usage_error(err, "--cache-dir is for --upper: a mount uses its own");
	return commit_live(&a, argv[optind], err);
}
