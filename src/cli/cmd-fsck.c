/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree fsck: check a layout's blobs and references, and report the
 * problems as text or JSON.
 */
#include "config.h"

#include "cjson-util.h"
#include "cli.h"
#include "ocitree/fsck.h"

static void print_json(const struct ocitree_fsck_report *r)
{
	_cleanup_json_ cJSON *o = json_object();
	json_add(o, "clean", json_bool(r->n_problems == 0));
	json_add(o, "blobs", json_int64((int64_t)r->n_blobs));
	json_add(o, "bytes", json_int64((int64_t)r->bytes));
	json_add(o, "refs", json_int64((int64_t)r->n_refs));
	json_add(o, "layers", json_int64((int64_t)r->n_layers));
	json_add(o, "uncompressed", json_int64((int64_t)r->uncompressed));
	cJSON *p = json_array();
	for (size_t i = 0; i < r->n_problems; i++) {
		cJSON *e = json_object();
		json_add(e, "object", json_string(r->problems[i].object));
		json_add(e, "message", json_string(r->problems[i].message));
		json_append(p, e);
	}
	json_add(o, "problems", p);
	json_add(o, "unreferenced", json_strv(r->unreferenced));
	json_add(o, "temporary", json_strv(r->temporary));
	_cleanup_free_ char *s = json_print(o);
	printf("%s\n", s);
}

static void print_text(const struct ocitree_fsck_report *r)
{
	_cleanup_free_ char *size = human_size((int64_t)r->bytes);
	for (size_t i = 0; i < r->n_problems; i++)
		printf("problem: %s: %s\n", r->problems[i].object, r->problems[i].message);
	for (size_t i = 0; r->unreferenced && r->unreferenced[i]; i++)
		printf("unreferenced: %s\n", r->unreferenced[i]);
	for (size_t i = 0; r->temporary && r->temporary[i]; i++)
		printf("temporary: %s\n", r->temporary[i]);
	if (r->n_layers) {
		_cleanup_free_ char *usize = human_size((int64_t)r->uncompressed);
		printf("decompressed %zu layers (%s) against their diff_ids\n", r->n_layers, usize);
	}
	printf("checked %zu blobs (%s) and %zu refs: %s\n", r->n_blobs, size, r->n_refs,
	       r->n_problems ? "problems found" : "clean");
}

int cmd_fsck(int argc, char **argv, struct ocitree_error **err)
{
	enum { OPT_LAYOUT = OPT_COMMAND_BASE, OPT_JSON, OPT_FULL };
	static const struct option opts[] = {
		{"layout", required_argument, NULL, OPT_LAYOUT},
		{"json", no_argument, NULL, OPT_JSON},
		{"full", no_argument, NULL, OPT_FULL},
		CLI_HELP_OPTION,
		{NULL, 0, NULL, 0},
	};
	_cleanup_free_ char *layout = NULL;
	bool json = false;
	unsigned flags = 0;
	int c, r;
	while ((c = cli_getopt(argc, argv, opts, err)) != -1) {
		switch (c) {
		case OPT_LAYOUT:
			if (cli_layout_path(optarg, &layout, err) < 0)
				return -1;
			break;
		case OPT_JSON:
			json = true;
			break;
		case OPT_FULL:
			flags |= OCITREE_FSCK_FULL;
			break;
		CLI_HANDLE_HELP;
		default:
			return -1;
		}
	}
	if (!layout)
		return cli_usage_error(err, "missing mandatory option --layout");
	if (cli_expect_args(argc, argv, 0, 0, err) < 0)
		return -1;
	struct ocitree_layout *l = cli_open_layout(layout, err);
	if (!l)
		return -1;
	struct ocitree_fsck_report rep;
	r = ocitree_layout_fsck(l, flags, &rep, err);
	ocitree_layout_free(l);
	if (r < 0)
		return -1;
	if (json)
		print_json(&rep);
	else
		print_text(&rep);
	if (rep.n_problems)
		r = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "layout '%s' has %zu problem%s", layout,
				       rep.n_problems, rep.n_problems == 1 ? "" : "s");
	ocitree_fsck_report_clear(&rep);
	return r;
}
