/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Content digests ("sha256:<64 hex>" or "sha512:<128 hex>"), computed with
 * Nettle.
 */
#ifndef OCITREE_DIGEST_H
#define OCITREE_DIGEST_H

#include <stddef.h>

#include "ocitree/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Room for the longest digest string ocitree handles, with its NUL. */
#define OCITREE_DIGEST_MAX 136

/* Check that digest is "sha256:" or "sha512:" followed by the right number of
 * lower-case hex digits.  Other algorithms are OCITREE_ERROR_UNSUPPORTED,
 * anything else OCITREE_ERROR_INVALID. */
int ocitree_digest_check(const char *digest, struct ocitree_error **err);

/* The hex part of a checked digest (the text after the ':'). */
const char *ocitree_digest_hex(const char *digest);

struct ocitree_hasher;

/* A running hash for "sha256" or "sha512" (NULL for any other name).
 * Not thread-safe; one hasher per stream. */
struct ocitree_hasher *ocitree_hasher_new(const char *alg);
void ocitree_hasher_update(struct ocitree_hasher *h, const void *data, size_t len);
/* Write "alg:hex" to out.  The hasher may not be updated afterwards. */
void ocitree_hasher_final(struct ocitree_hasher *h, char out[OCITREE_DIGEST_MAX]);
void ocitree_hasher_free(struct ocitree_hasher *h);

/* Digest of a buffer, as "sha256:..." */
void ocitree_digest_sha256(const void *data, size_t len, char out[OCITREE_DIGEST_MAX]);

#ifdef __cplusplus
}
#endif
#endif
