/* SPDX-License-Identifier: Apache-2.0 */
/* libocitree: OCI image layouts, layers, trees and mounts. */
#ifndef OCITREE_H
#define OCITREE_H

#include "ocitree/bundle.h"
#include "ocitree/container.h"
#include "ocitree/control.h"
#include "ocitree/digest.h"
#include "ocitree/error.h"
#include "ocitree/fsck.h"
#include "ocitree/image.h"
#include "ocitree/layer.h"
#include "ocitree/layout.h"
#include "ocitree/layer-index.h"
#include "ocitree/log.h"
#include "ocitree/model.h"
#include "ocitree/mount.h"
#include "ocitree/progress.h"
#include "ocitree/tree.h"
#include "ocitree/upper.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version string, e.g. "0.1.0". */
const char *ocitree_version(void);

#ifdef __cplusplus
}
#endif
#endif
