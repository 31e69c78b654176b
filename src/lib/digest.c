/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Content digests (ocitree/digest.h): checking that a digest string is
 * well formed and of an algorithm ocitree supports, and an opaque hasher
 * over Nettle that formats its result as "alg:hex".
 *
 * Nettle, not OpenSSL: the same speed (SHA-NI where the CPU has it, within
 * a few per cent on SHA-256), but libcrypto is 4.5 MiB with 21,000
 * relocations that every start of ocitree paid for, from the disk when
 * the page cache is cold (a warm mount: read, relocated, for the two small
 * digests of a manifest and a config); libnettle is 0.3 MiB with a few
 * hundred.
 */
#include "config.h"

#include <nettle/sha2.h>

#include "ocitree/digest.h"
#include "util.h"

struct ocitree_hasher {
	bool sha512;
	union {
		struct sha256_ctx s256;
		struct sha512_ctx s512;
	} u;
	char alg[8];
};

OCITREE_EXPORT int ocitree_digest_check(const char *digest, struct ocitree_error **err)
{
	const char *colon = digest ? strchr(digest, ':') : NULL;
	if (!colon || colon == digest)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "malformed digest '%s'", digest ? digest : "");
	size_t alglen = (size_t)(colon - digest), want;
	if (alglen == 6 && memcmp(digest, "sha256", 6) == 0)
		want = 64;
	else if (alglen == 6 && memcmp(digest, "sha512", 6) == 0)
		want = 128;
	else {
		for (const char *p = digest; p < colon; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("+._-", *p)))
				return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "malformed digest '%s'", digest);
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "unsupported digest algorithm in '%s'",
					  digest);
	}
	const char *hex = colon + 1;
	size_t n = 0;
	for (; hex[n]; n++)
		if (!((hex[n] >= '0' && hex[n] <= '9') || (hex[n] >= 'a' && hex[n] <= 'f')))
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "malformed digest '%s'", digest);
	if (n != want)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "malformed digest '%s': expected %zu hex digits",
					  digest, want);
	return 0;
}

OCITREE_EXPORT const char *ocitree_digest_hex(const char *digest)
{
	const char *c = strchr(digest, ':');
	return c ? c + 1 : digest;
}

OCITREE_EXPORT struct ocitree_hasher *ocitree_hasher_new(const char *alg)
{
	bool sha512;
	if (strcmp(alg, "sha256") == 0)
		sha512 = false;
	else if (strcmp(alg, "sha512") == 0)
		sha512 = true;
	else
		return NULL;
	struct ocitree_hasher *h = xcalloc(1, sizeof(*h));
	h->sha512 = sha512;
	if (sha512)
		sha512_init(&h->u.s512);
	else
		sha256_init(&h->u.s256);
	snprintf(h->alg, sizeof(h->alg), "%s", alg);
	return h;
}

OCITREE_EXPORT void ocitree_hasher_update(struct ocitree_hasher *h, const void *data, size_t len)
{
	if (!len)
		return;
	if (h->sha512)
		sha512_update(&h->u.s512, len, data);
	else
		sha256_update(&h->u.s256, len, data);
}

OCITREE_EXPORT void ocitree_hasher_final(struct ocitree_hasher *h, char out[OCITREE_DIGEST_MAX])
{
	unsigned char md[SHA512_DIGEST_SIZE];
	size_t n = h->sha512 ? SHA512_DIGEST_SIZE : SHA256_DIGEST_SIZE;
	if (h->sha512)
		sha512_digest(&h->u.s512, SHA512_DIGEST_SIZE, md);
	else
		sha256_digest(&h->u.s256, SHA256_DIGEST_SIZE, md);
	static const char hexd[] = "0123456789abcdef";
	size_t a = strlen(h->alg);
	memcpy(out, h->alg, a);
	out[a++] = ':';
	for (size_t i = 0; i < n; i++) {
		out[a++] = hexd[md[i] >> 4];
		out[a++] = hexd[md[i] & 15];
	}
	out[a] = '\0';
}

OCITREE_EXPORT void ocitree_hasher_free(struct ocitree_hasher *h)
{
	free(h);
}

OCITREE_EXPORT void ocitree_digest_sha256(const void *data, size_t len, char out[OCITREE_DIGEST_MAX])
{
	struct ocitree_hasher *h = ocitree_hasher_new("sha256");
	ocitree_hasher_update(h, data, len);
	ocitree_hasher_final(h, out);
	ocitree_hasher_free(h);
}
