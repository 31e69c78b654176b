/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree init: create an empty OCI image layout.
 */
#include "config.h"

#include "cli.h"

int cmd_init(int argc, char **argv, struct ocitree_error **err)
{
	_cleanup_free_ char *layout = NULL;
	int r = cli_parse_layout_opts(argc, argv, &layout, NULL, err);
	if (r != 0)
		return r;
	if (ocitree_layout_create(layout, err) < 0)
		return -1;
	log_info("created a new OCI image layout at '%s'", layout);
	return 0;
}
