/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree gc: remove the blobs no tag reaches.
 */
#include "config.h"

#include "cli.h"

int cmd_gc(int argc, char **argv, struct ocitree_error **err)
{
	_cleanup_free_ char *layout = NULL;
	int r = cli_parse_layout_opts(argc, argv, &layout, NULL, err);
	if (r != 0)
		return r;
	struct ocitree_layout *l = cli_open_layout(layout, err);
	if (!l)
		return -1;
	struct ocitree_gc_stats st;
	r = ocitree_layout_gc(l, &st, err);
	ocitree_layout_free(l);
	if (r < 0)
		return -1;
	_cleanup_free_ char *size = human_size((int64_t)st.bytes_removed);
	log_info("gc: removed %zu blobs (%s) and %zu temporary files; %zu blobs in use", st.blobs_removed, size,
		 st.tmp_removed, st.blobs_kept);
	return 0;
}
