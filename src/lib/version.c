/* SPDX-License-Identifier: Apache-2.0 */
#include "config.h"

#include "ocitree/ocitree.h"
#include "util.h"

OCITREE_EXPORT const char *ocitree_version(void)
{
	return PACKAGE_VERSION;
}
