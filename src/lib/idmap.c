/* SPDX-License-Identifier: Apache-2.0 */
/* Id mappings and the rootless-containers ownership xattr. */
#include "config.h"

#include <inttypes.h>

#include "bundle-internal.h"
#include "json.h"

OCITREE_EXPORT int ocitree_idmap_parse(const char *spec, struct ocitree_idmap *out, struct ocitree_error **err)
{
	uint64_t v[3];
	const char *p = spec;
	for (int i = 0; i < 3; i++) {
		char *end = NULL;
		if (*p < '0' || *p > '9')
			goto bad;
		errno = 0;
		v[i] = strtoull(p, &end, 10);
		if (errno || v[i] > UINT32_MAX || (i < 2 && *end != ':') || (i == 2 && *end != '\0'))
			goto bad;
		p = end + 1;
	}
	if (v[2] == 0 || v[0] + v[2] - 1 > UINT32_MAX || v[1] + v[2] - 1 > UINT32_MAX)
		goto bad;
	out->container_id = (uint32_t)v[0];
	out->host_id = (uint32_t)v[1];
	out->size = (uint32_t)v[2];
	return 0;
bad:
	return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
				  "invalid id mapping '%s': must be CONTAINER:HOST:SIZE with a non-zero size", spec);
}

int64_t idmap_to_host(const struct ocitree_idmap *m, size_t n, int64_t id)
{
	if (n == 0)
		return id;
	for (size_t i = 0; i < n; i++)
		if (id >= m[i].container_id && id - m[i].container_id < m[i].size)
			return m[i].host_id + (id - m[i].container_id);
	return -1;
}

int64_t idmap_to_container(const struct ocitree_idmap *m, size_t n, int64_t id)
{
	if (n == 0)
		return id;
	for (size_t i = 0; i < n; i++)
		if (id >= m[i].host_id && id - m[i].host_id < m[i].size)
			return m[i].container_id + (id - m[i].host_id);
	return -1;
}

static size_t put_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;
	do {
		out[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			out[n] |= 0x80;
		n++;
	} while (v);
	return n;
}

size_t rootless_encode(uint32_t uid, uint32_t gid, uint8_t out[12])
{
	if (uid == 0 && gid == 0)
		return 0;
	/* umoci writes both fields, uint32(-1) for the one that is root */
	size_t n = 0;
	out[n++] = 0x08; /* field 1, varint */
	n += put_varint(out + n, uid ? uid : UINT32_MAX);
	out[n++] = 0x10; /* field 2, varint */
	n += put_varint(out + n, gid ? gid : UINT32_MAX);
	return n;
}

int rootless_decode(const void *data, size_t len, uint32_t *uid, uint32_t *gid)
{
	const uint8_t *p = data, *end = p + len;
	while (p < end) {
		uint64_t key = 0, v = 0;
		for (int shift = 0;; shift += 7) {
			if (p >= end || shift > 63)
				return -1;
			key |= (uint64_t)(*p & 0x7f) << shift;
			if (!(*p++ & 0x80))
				break;
		}
		if ((key & 7) != 0) /* only varints are expected */
			return -1;
		for (int shift = 0;; shift += 7) {
			if (p >= end || shift > 63)
				return -1;
			v |= (uint64_t)(*p & 0x7f) << shift;
			if (!(*p++ & 0x80))
				break;
		}
		if (v > UINT32_MAX)
			return -1;
		if (v == UINT32_MAX)
			continue;
		if (key >> 3 == 1)
			*uid = (uint32_t)v;
		else if (key >> 3 == 2)
			*gid = (uint32_t)v;
	}
	return 0;
}

cJSON *idmap_json(const struct ocitree_idmap *m, size_t n)
{
	cJSON *a = json_array();
	for (size_t i = 0; i < n; i++) {
		cJSON *o = json_object();
		json_add(o, "containerID", json_int64(m[i].container_id));
		json_add(o, "hostID", json_int64(m[i].host_id));
		json_add(o, "size", json_int64(m[i].size));
		json_append(a, o);
	}
	return a;
}
