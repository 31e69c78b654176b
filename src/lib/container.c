/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The parts of a container that are not its config.json (that is
 * runtime.c's): the --bind form, and the id mappings of the user namespace
 * an unprivileged user runs containers in, from /etc/subuid and
 * /etc/subgid.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>

#include "common.h"
#include "ocitree/container.h"

OCITREE_EXPORT int ocitree_container_bind_parse(const char *spec, struct ocitree_container_bind *out, char **buf,
                                                struct ocitree_error **err)
{
	*buf = NULL;
	memset(out, 0, sizeof(*out));
	_cleanup_free_ char *copy = xstrdup(spec);
	char *dst = strchr(copy, ':');
	if (!dst || dst == copy)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid bind '%s': use SRC:DST[:ro]", spec);
	*dst++ = '\0';
	char *opt = strchr(dst, ':');
	if (opt)
		*opt++ = '\0';
	if (dst[0] != '/')
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
		                          "invalid bind '%s': the destination must be an absolute path", spec);
	if (opt && strcmp(opt, "ro") != 0 && strcmp(opt, "rw") != 0)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
		                          "invalid bind '%s': the option is ro or rw, not '%s'", spec, opt);
	out->source = copy;
	out->destination = dst;
	out->readonly = opt && strcmp(opt, "ro") == 0;
	*buf = steal_pointer(&copy);
	return 0;
}

static bool parse_u32(const char *s, uint32_t *out)
{
	char *end = NULL;
	if (!*s || *s == '-')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

OCITREE_EXPORT int ocitree_subid_ranges(const char *path, const char *name, uint32_t id, struct ocitree_idmap **out,
                                        size_t *n, struct ocitree_error **err)
{
	*out = NULL;
	*n = 0;
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT)
			return 0;
		return ocitree_error_set(err, errno, "open '%s'", path);
	}
	char id_str[16];
	snprintf(id_str, sizeof(id_str), "%" PRIu32, id);
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		line[strcspn(line, "\n")] = '\0';
		char *a = strchr(line, ':');
		char *b = a ? strchr(a + 1, ':') : NULL;
		if (!a || !b || line[0] == '#')
			continue;
		*a++ = '\0';
		*b++ = '\0';
		if (!(name && strcmp(line, name) == 0) && strcmp(line, id_str) != 0)
			continue;
		uint32_t start, count;
		if (!parse_u32(a, &start) || !parse_u32(b, &count) || count == 0)
			continue;
		*out = xrealloc(*out, (*n + 1) * sizeof(**out));
		(*out)[(*n)++] = (struct ocitree_idmap){.container_id = 0, .host_id = start, .size = count};
	}
	free(line);
	return 0;
}

OCITREE_EXPORT size_t ocitree_container_idmap(uint32_t host_id, const struct ocitree_idmap *ranges, size_t n_ranges,
                                              struct ocitree_idmap *out)
{
	size_t k = 0;
	out[k++] = (struct ocitree_idmap){.container_id = 0, .host_id = host_id, .size = 1};
	uint64_t next = 1;
	for (size_t i = 0; i < n_ranges; i++) {
		uint64_t h = ranges[i].host_id, sz = ranges[i].size;
		/* the kernel refuses overlapping host ranges */
		if (host_id >= h && host_id < h + sz)
			continue;
		if (h + sz > UINT32_MAX || next + sz > UINT32_MAX)
			continue;
		bool overlap = false;
		for (size_t j = 1; j < k; j++)
			if (h < (uint64_t)out[j].host_id + out[j].size && out[j].host_id < h + sz)
				overlap = true;
		if (overlap)
			continue;
		out[k++] = (struct ocitree_idmap){
		    .container_id = (uint32_t)next, .host_id = (uint32_t)h, .size = (uint32_t)sz};
		next += sz;
	}
	return k;
}
