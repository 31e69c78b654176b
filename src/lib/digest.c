/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Content digests (ocitree/digest.h): checking that a digest string is
 * well formed and of an algorithm ocitree supports, and an opaque hasher
 * over OpenSSL that formats its result as "alg:hex".
 *
 * The hasher calls OpenSSL's SHA-256/SHA-512 functions directly, not
 * through EVP: the same code (SHA-NI where the CPU has it), but EVP's first
 * use loads the configuration and the default provider, 2 MiB of a mount
 * daemon's resident memory.  The direct functions are deprecated since
 * OpenSSL 3.0; a build without them uses EVP.
 */
#include "config.h"

/* the direct functions, knowingly (see above) */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/evp.h>
#include <openssl/opensslconf.h>
#include <openssl/sha.h>
#if !defined(OPENSSL_NO_DEPRECATED_3_0) && !defined(OPENSSL_NO_DEPRECATED)
#define DIRECT_SHA 1
#endif

#include "ocitree/digest.h"
#include "util.h"

struct ocitree_hasher {
#ifdef DIRECT_SHA
	bool sha512;
	union {
		SHA256_CTX s256;
		SHA512_CTX s512;
	} u;
#else
	EVP_MD_CTX *ctx;
#endif
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
#ifdef DIRECT_SHA
	h->sha512 = sha512;
	if ((sha512 ? SHA512_Init(&h->u.s512) : SHA256_Init(&h->u.s256)) != 1)
		oom("OpenSSL digest");
#else
	h->ctx = xcheck(EVP_MD_CTX_new(), "OpenSSL");
	/* sha256 and sha512 are in every OpenSSL build (the default provider,
	 * and the FIPS one): setting one up fails only when its context cannot
	 * be allocated */
	if (EVP_DigestInit_ex(h->ctx, sha512 ? EVP_sha512() : EVP_sha256(), NULL) != 1)
		oom("OpenSSL digest");
#endif
	snprintf(h->alg, sizeof(h->alg), "%s", alg);
	return h;
}

OCITREE_EXPORT void ocitree_hasher_update(struct ocitree_hasher *h, const void *data, size_t len)
{
	if (!len)
		return;
#ifdef DIRECT_SHA
	if (h->sha512)
		SHA512_Update(&h->u.s512, data, len);
	else
		SHA256_Update(&h->u.s256, data, len);
#else
	EVP_DigestUpdate(h->ctx, data, len);
#endif
}

OCITREE_EXPORT void ocitree_hasher_final(struct ocitree_hasher *h, char out[OCITREE_DIGEST_MAX])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
#ifdef DIRECT_SHA
	if (h->sha512) {
		SHA512_Final(md, &h->u.s512);
		n = SHA512_DIGEST_LENGTH;
	} else {
		SHA256_Final(md, &h->u.s256);
		n = SHA256_DIGEST_LENGTH;
	}
#else
	EVP_DigestFinal_ex(h->ctx, md, &n);
#endif
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
#ifndef DIRECT_SHA
	EVP_MD_CTX_free(h->ctx);
#endif
	free(h);
}

OCITREE_EXPORT void ocitree_digest_sha256(const void *data, size_t len, char out[OCITREE_DIGEST_MAX])
{
	struct ocitree_hasher *h = ocitree_hasher_new("sha256");
	ocitree_hasher_update(h, data, len);
	ocitree_hasher_final(h, out);
	ocitree_hasher_free(h);
}
