/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Platform selectors (ocitree/image.h): "OS/ARCH[/VARIANT]" parsed and
 * checked, formatted back, and matched against the platform of an image
 * index entry.  Which entry of an index an image comes from is decided
 * here and nowhere else.
 */
#include "config.h"

#include "ocitree/image.h"
#include "util.h"

/* What Go's platforms and OCI's values use: lower case names, digits and
 * a few separators.  Anything else is a typo rather than a platform. */
static bool part_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

OCITREE_EXPORT int ocitree_platform_parse(const char *s, struct ocitree_platform *p, struct ocitree_error **err)
{
	memset(p, 0, sizeof(*p));
	const char *a = strchr(s, '/');
	const char *v = a ? strchr(a + 1, '/') : NULL;
	if (!a || !part_ok(s, (size_t)(a - s)) || !part_ok(a + 1, v ? (size_t)(v - a - 1) : strlen(a + 1)) ||
	    (v && (!part_ok(v + 1, strlen(v + 1)))))
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
		                          "invalid platform '%s': expected OS/ARCH[/VARIANT] (e.g. linux/arm64/v8)", s);
	p->os = xstrndup(s, (size_t)(a - s));
	p->architecture = v ? xstrndup(a + 1, (size_t)(v - a - 1)) : xstrdup(a + 1);
	p->variant = v ? xstrdup(v + 1) : NULL;
	return 0;
}

OCITREE_EXPORT void ocitree_platform_clear(struct ocitree_platform *p)
{
	if (!p)
		return;
	free(p->os);
	free(p->architecture);
	free(p->os_version);
	free(p->variant);
	strv_free(p->os_features);
	memset(p, 0, sizeof(*p));
}

OCITREE_EXPORT char *ocitree_platform_format(const struct ocitree_platform *p)
{
	const char *os = p && p->os && *p->os ? p->os : "?";
	const char *arch = p && p->architecture && *p->architecture ? p->architecture : "?";
	if (p && p->variant && *p->variant)
		return xasprintf("%s/%s/%s", os, arch, p->variant);
	return xasprintf("%s/%s", os, arch);
}

/* arm64 is v8 unless it says otherwise (containerd's normalisation). */
static const char *variant_of(const struct ocitree_platform *p)
{
	if (p->variant && *p->variant)
		return p->variant;
	if (p->architecture && strcmp(p->architecture, "arm64") == 0)
		return "v8";
	return NULL;
}

OCITREE_EXPORT bool ocitree_platform_match(const struct ocitree_platform *p, const struct ocitree_platform *want)
{
	if (!p || !p->os || !p->architecture || !want || !want->os || !want->architecture)
		return false;
	if (strcmp(p->os, want->os) != 0 || strcmp(p->architecture, want->architecture) != 0)
		return false;
	if (!want->variant || !*want->variant)
		return true;
	const char *have = variant_of(p), *need = variant_of(want);
	return have && need && strcmp(have, need) == 0;
}
