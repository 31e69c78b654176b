/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The container of ocitree run and build (ocitree/container.h): the
 * config.json made from an image config and overrides, --bind parsing,
 * /etc/subuid ranges and the id mapping of an unprivileged user.
 * Public API only, as a front end would use it.
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ocitree/ocitree.h"
#include "tap.h"

static const char *str_at(const cJSON *arr, int i)
{
	const cJSON *e = cJSON_GetArrayItem(arr, i);
	return cJSON_IsString(e) ? e->valuestring : NULL;
}

static const cJSON *mount_at(const cJSON *spec, const char *dest)
{
	const cJSON *m;
	cJSON_ArrayForEach (m, cJSON_GetObjectItem(spec, "mounts")) {
		if (strcmp(cJSON_GetObjectItem(m, "destination")->valuestring, dest) == 0)
			return m;
	}
	return NULL;
}

static bool has_str(const cJSON *arr, const char *s)
{
	const cJSON *e;
	cJSON_ArrayForEach (e, arr) {
		if (cJSON_IsString(e) && strcmp(e->valuestring, s) == 0)
			return true;
	}
	return false;
}

static bool has_ns(const cJSON *spec, const char *type)
{
	const cJSON *e;
	cJSON_ArrayForEach (e, cJSON_GetObjectItem(cJSON_GetObjectItem(spec, "linux"), "namespaces")) {
		if (strcmp(cJSON_GetObjectItem(e, "type")->valuestring, type) == 0)
			return true;
	}
	return false;
}

static void test_config(const char *rootfs)
{
	static const char img[] = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"User\":\"app\","
	                          "\"Env\":[\"A=1\",\"PATH=/image/bin\"],\"Entrypoint\":[\"/entry\"],\"Cmd\":[\"x\"],"
	                          "\"WorkingDir\":\"/w\"},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
	struct ocitree_error *err = NULL;
	struct ocitree_config *c = ocitree_config_parse(img, strlen(img), &err);
	ok(c, "image config parsed");
	if (!c)
		return;

	/* the image's own process */
	char *text = ocitree_container_config(c, rootfs, NULL, &err);
	ok(text, "config for the image's process");
	cJSON *spec = text ? cJSON_Parse(text) : NULL;
	const cJSON *proc = cJSON_GetObjectItem(spec, "process");
	const cJSON *env = cJSON_GetObjectItem(proc, "env");
	is_str(str_at(cJSON_GetObjectItem(proc, "args"), 0), "/entry", "entrypoint first");
	is_str(str_at(cJSON_GetObjectItem(proc, "args"), 1), "x", "then cmd");
	is_int(cJSON_GetObjectItem(cJSON_GetObjectItem(proc, "user"), "uid")->valueint, 1000, "the image's user");
	ok(has_str(env, "PATH=/image/bin") && has_str(env, "A=1"), "the image's environment");
	ok(has_str(env, "HOME=/home/app"), "HOME from /etc/passwd");
	is_str(cJSON_GetObjectItem(proc, "cwd")->valuestring, "/w", "the image's working directory");
	ok(cJSON_IsFalse(cJSON_GetObjectItem(proc, "terminal")), "no terminal unless asked");
	ok(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(proc, "capabilities"), "effective")) == 0,
	   "a non-root user has no effective capabilities");
	is_str(cJSON_GetObjectItem(cJSON_GetObjectItem(spec, "root"), "path")->valuestring, rootfs,
	       "root is the mount");
	ok(!has_ns(spec, "network") && !has_ns(spec, "user") && has_ns(spec, "pid") && has_ns(spec, "mount"),
	   "host network, no user namespace, own pids and mounts");
	const cJSON *resolv = mount_at(spec, "/etc/resolv.conf");
	ok(resolv && has_str(cJSON_GetObjectItem(resolv, "options"), "ro"), "resolv.conf bound read-only");
	const cJSON *sys = mount_at(spec, "/sys");
	ok(sys && strcmp(cJSON_GetObjectItem(sys, "type")->valuestring, "sysfs") == 0 &&
	       has_str(cJSON_GetObjectItem(sys, "options"), "ro"),
	   "/sys read-only");
	ok(mount_at(spec, "/proc") && mount_at(spec, "/dev/pts") && mount_at(spec, "/dev/shm"),
	   "/proc, /dev/pts, /dev/shm");
	cJSON_Delete(spec);
	free(text);

	/* overrides, in a user namespace */
	const char *argv[] = {"/bin/sh", "-c", "true", NULL};
	const char *envs[] = {"A=2", "B=3", "HOME=/h", NULL};
	struct ocitree_container_bind binds[] = {{"/src", "/in", true}, {"/out", "/out", false}};
	struct ocitree_container_spec s = {.argv = argv,
	                                   .env = envs,
	                                   .cwd = "/tmp",
	                                   .user = "0:0",
	                                   .binds = binds,
	                                   .n_binds = 2,
	                                   .terminal = true,
	                                   .userns = true};
	text = ocitree_container_config(c, rootfs, &s, &err);
	ok(text, "config with overrides");
	spec = text ? cJSON_Parse(text) : NULL;
	proc = cJSON_GetObjectItem(spec, "process");
	env = cJSON_GetObjectItem(proc, "env");
	is_str(str_at(cJSON_GetObjectItem(proc, "args"), 0), "/bin/sh", "argv replaces entrypoint and cmd");
	is_int(cJSON_GetArraySize(cJSON_GetObjectItem(proc, "args")), 3, "all of it");
	ok(has_str(env, "A=2") && !has_str(env, "A=1") && has_str(env, "B=3") && has_str(env, "HOME=/h"),
	   "env set over the image's");
	is_str(cJSON_GetObjectItem(proc, "cwd")->valuestring, "/tmp", "cwd");
	is_int(cJSON_GetObjectItem(cJSON_GetObjectItem(proc, "user"), "uid")->valueint, 0, "user");
	ok(has_str(cJSON_GetObjectItem(cJSON_GetObjectItem(proc, "capabilities"), "effective"), "CAP_SETUID"),
	   "root can switch users");
	ok(cJSON_IsTrue(cJSON_GetObjectItem(proc, "terminal")), "a terminal");
	const cJSON *in = mount_at(spec, "/in");
	ok(in && strcmp(cJSON_GetObjectItem(in, "source")->valuestring, "/src") == 0 &&
	       has_str(cJSON_GetObjectItem(in, "options"), "ro"),
	   "a read-only bind");
	const cJSON *out = mount_at(spec, "/out");
	ok(out && !has_str(cJSON_GetObjectItem(out, "options"), "ro"), "a read-write bind");
	sys = mount_at(spec, "/sys");
	ok(sys && strcmp(cJSON_GetObjectItem(sys, "type")->valuestring, "bind") == 0,
	   "in a user namespace /sys is a bind");
	ok(!mount_at(spec, "/sys/fs/cgroup"), "and no cgroup mount");
	ok(!cJSON_GetObjectItem(cJSON_GetObjectItem(spec, "linux"), "resources"), "nor device rules");
	cJSON_Delete(spec);
	free(text);

	s = (struct ocitree_container_spec){.user = "nosuch"};
	text = ocitree_container_config(c, rootfs, &s, &err);
	ok(!text && err && strstr(err->msg, "nosuch"), "an unknown user is an error naming it");
	ocitree_error_free(err);
	err = NULL;
	ok(!ocitree_container_config(c, "relative", NULL, &err), "a relative root is refused");
	ocitree_error_free(err);
	err = NULL;
	const char *bad_env[] = {"NOEQUALS", NULL};
	s = (struct ocitree_container_spec){.env = bad_env};
	ok(!ocitree_container_config(c, rootfs, &s, &err) && err && err->kind == OCITREE_ERROR_USAGE,
	   "env without '=' is a usage error");
	ocitree_error_free(err);
	ocitree_config_free(c);
}

static void test_bind(void)
{
	struct ocitree_container_bind b;
	char *buf = NULL;
	struct ocitree_error *err = NULL;
	ok(ocitree_container_bind_parse("/a:/b:ro", &b, &buf, &err) == 0 && strcmp(b.source, "/a") == 0 &&
	       strcmp(b.destination, "/b") == 0 && b.readonly,
	   "SRC:DST:ro");
	free(buf);
	ok(ocitree_container_bind_parse("rel:/b", &b, &buf, &err) == 0 && !b.readonly, "SRC:DST");
	free(buf);
	static const char *const bad[] = {"/a", ":/b", "/a:b", "/a:/b:rx", NULL};
	for (const char *const *p = bad; *p; p++) {
		ok(ocitree_container_bind_parse(*p, &b, &buf, &err) < 0 && err && err->kind == OCITREE_ERROR_USAGE,
		   "refuse '%s'", *p);
		ocitree_error_free(err);
		err = NULL;
	}
}

static void test_subids(const char *dir)
{
	char *path = NULL;
	if (asprintf(&path, "%s/subuid", dir) < 0)
		abort();
	FILE *f = fopen(path, "w");
	fputs("alice:100000:65536\n#bob:1:1\nbob:200000:1000\n1001:300000:10\nalice:500000:5\nalice:bad:1\n", f);
	fclose(f);
	struct ocitree_idmap *r = NULL;
	size_t n = 0;
	struct ocitree_error *err = NULL;
	ok(ocitree_subid_ranges(path, "alice", 1000, &r, &n, &err) == 0, "subuid read");
	is_int(n, 2, "alice's two ranges, the bad line skipped");
	ok(n == 2 && r[0].host_id == 100000 && r[0].size == 65536 && r[1].host_id == 500000, "in file order");
	struct ocitree_idmap m[3];
	size_t k = ocitree_container_idmap(1000, r, n, m);
	is_int(k, 3, "root and both ranges");
	ok(m[0].container_id == 0 && m[0].host_id == 1000 && m[0].size == 1, "root is the user");
	ok(m[1].container_id == 1 && m[1].host_id == 100000 && m[2].container_id == 65537 && m[2].size == 5,
	   "the ranges follow from id 1");
	free(r);
	ok(ocitree_subid_ranges(path, NULL, 1001, &r, &n, &err) == 0 && n == 1 && r[0].host_id == 300000,
	   "a line by uid");
	k = ocitree_container_idmap(300005, r, n, m);
	is_int(k, 1, "a range holding the user's own id is left out");
	free(r);
	ok(ocitree_subid_ranges("/nonexistent/subuid", "alice", 1, &r, &n, &err) == 0 && n == 0, "no file: no range");
	unlink(path);
	free(path);
}

int main(void)
{
	char dir[] = "/tmp/test-container.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char *etc = NULL, *passwd = NULL;
	if (asprintf(&etc, "%s/etc", dir) < 0 || asprintf(&passwd, "%s/etc/passwd", dir) < 0)
		return 1;
	mkdir(etc, 0755);
	FILE *f = fopen(passwd, "w");
	fputs("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n", f);
	fclose(f);
	test_config(dir);
	test_bind();
	test_subids(dir);
	unlink(passwd);
	rmdir(etc);
	rmdir(dir);
	free(etc);
	free(passwd);
	return done_testing();
}
