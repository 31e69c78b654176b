/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree_version(): the version libocitree.so was built as, which may be
 * newer than the headers a program was compiled against.  Its own file, as
 * it belongs to no other part of the library.
 */
#include "config.h"

#include "ocitree/ocitree.h"
#include "util.h"

OCITREE_EXPORT const char *ocitree_version(void)
{
	return PACKAGE_VERSION;
}
