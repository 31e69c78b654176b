/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Content digests (ocitree/digest.h): checking that a digest string is
 * well formed and of an algorithm ocitree supports, and an opaque hasher
 * over OpenSSL's EVP interface that formats its result as "alg:hex".
 */
#include "config.h"

#include <openssl/evp.h>

#include "ocitree/digest.h"
#include "util.h"

struct ocitree_hasher {
	EVP_MD_CTX *ctx;
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
	const EVP_MD *md;
	if (strcmp(alg, "sha256") == 0)
		md = EVP_sha256();
	else if (strcmp(alg, "sha512") == 0)
		md = EVP_sha512();
	else
		return NULL;
	struct ocitree_hasher *h = xcalloc(1, sizeof(*h));
	h->ctx = xcheck(EVP_MD_CTX_new(), "OpenSSL");
	/* sha256 and sha512 are in every OpenSSL build (the default provider,
	 * and the FIPS one): setting one up fails only when its context cannot
	 * be allocated */
	if (EVP_DigestInit_ex(h->ctx, md, NULL) != 1)
		oom("OpenSSL digest");
	snprintf(h->alg, sizeof(h->alg), "%s", alg);
	return h;
}

OCITREE_EXPORT void ocitree_hasher_update(struct ocitree_hasher *h, const void *data, size_t len)
{
	if (len)
		EVP_DigestUpdate(h->ctx, data, len);
}

OCITREE_EXPORT void ocitree_hasher_final(struct ocitree_hasher *h, char out[OCITREE_DIGEST_MAX])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_DigestFinal_ex(h->ctx, md, &n);
	static const char hexd[] = "0123456789abcdef";
	size_t a = strlen(h->alg);
	memcpy(out, h->alg, a);
	out[a++] = ':';
	for (unsigned int i = 0; i < n; i++) {
		out[a++] = hexd[md[i] >> 4];
		out[a++] = hexd[md[i] & 15];
	}
	out[a] = '\0';
}

OCITREE_EXPORT void ocitree_hasher_free(struct ocitree_hasher *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

OCITREE_EXPORT void ocitree_digest_sha256(const void *data, size_t len, char out[OCITREE_DIGEST_MAX])
{
	struct ocitree_hasher *h = ocitree_hasher_new("sha256");
	ocitree_hasher_update(h, data, len);
	ocitree_hasher_final(h, out);
	ocitree_hasher_free(h);
}
