/* SPDX-License-Identifier: Apache-2.0 */
/* Unpacking images into root filesystems and bundles. */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <sys/stat.h>

#include "bundle-internal.h"
#include "ring.h"

static int check_image(struct ocitree_image *img, struct ocitree_error **err)
{
	if (img->config->rootfs_type && strcmp(img->config->rootfs_type, "layers") != 0)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "unsupported rootfs.type '%s'",
					  img->config->rootfs_type);
	if (strv_len(img->config->diff_ids) != img->manifest->n_layers)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "manifest has %zu layers but the config %zu diff_ids",
					  img->manifest->n_layers, strv_len(img->config->diff_ids));
	return 0;
}

/* Unpack into an open, empty rootfs directory; returns the tree. */
static struct tree *unpack_into(struct ocitree_image *img, int rootfd, const struct ocitree_unpack_options *o,
				struct ocitree_error **err)
{
	if (check_image(img, err) < 0)
		return NULL;
	if (!o->map.rootless) {
		int64_t uid = idmap_to_host(o->map.uid_map, o->map.n_uid_map, 0);
		int64_t gid = idmap_to_host(o->map.gid_map, o->map.n_gid_map, 0);
		if (uid < 0 || gid < 0)
			return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "the id mappings do not map root (0)"), NULL;
		if (fchown(rootfd, (uid_t)uid, (gid_t)gid) < 0)
			return ocitree_error_set(err, errno, "chown rootfs"), NULL;
	}
	/* images seldom say what the root's time is: start from the epoch, as
	 * umoci does, so that unpacks agree */
	struct timespec epoch[2] = {{0, 0}, {0, 0}};
	if (futimens(rootfd, epoch) < 0)
		return ocitree_error_set(err, errno, "set rootfs times"), NULL;
	struct unpacker *u = unpacker_new(rootfd, o, err);
	if (!u)
		return NULL;
	int r = 0;
	for (size_t i = 0; r == 0 && i < img->manifest->n_layers; i++)
		r = unpacker_apply(u, img->layout, &img->manifest->layers[i], img->config->diff_ids[i], i,
				   img->manifest->n_layers, err);
	if (r == 0)
		r = unpacker_finish(u, err);
	struct tree *t = r == 0 ? unpacker_take_tree(u) : NULL;
	unpacker_free(u);
	return t;
}

/* Create dir (mode) unless it is there already and empty; returns an fd of
 * its parent in *pfd and its base name in *base.  *created says whether
 * this call made it. */
static int open_new_dir(const char *path, mode_t mode, bool must_be_empty, int *pfd, char **base, bool *created,
			struct ocitree_error **err)
{
	_cleanup_free_ char *c1 = xstrdup(path), *c2 = xstrdup(path);
	const char *parent = dirname(c1);
	*base = xstrdup(basename(c2));
	*pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*pfd < 0)
		return ocitree_error_set(err, errno, "open '%s'", parent);
	*created = false;
	if (mkdirat(*pfd, *base, mode) == 0) {
		*created = true;
		return 0;
	}
	if (errno != EEXIST)
		return ocitree_error_set(err, errno, "create '%s'", path);
	if (must_be_empty) {
		_cleanup_close_ int fd = openat(*pfd, *base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return ocitree_error_set(err, errno, "open '%s'", path);
		DIR *d = fdopendir(steal_fd(&fd));
		if (!d)
			return ocitree_error_set(err, errno, "read '%s'", path);
		struct dirent *de;
		bool empty = true;
		while (empty && (de = readdir(d)))
			empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
		closedir(d);
		if (!empty)
			return ocitree_error_setk(err, OCITREE_ERROR_EXISTS, "'%s' already exists and is not empty", path);
	}
	return 0;
}

OCITREE_EXPORT int ocitree_unpack_rootfs(struct ocitree_image *img, const char *rootfs,
					 const struct ocitree_unpack_options *o, struct ocitree_error **err)
{
	_cleanup_close_ int pfd = -1;
	_cleanup_free_ char *base = NULL;
	bool created = false;
	if (open_new_dir(rootfs, 0755, true, &pfd, &base, &created, err) < 0)
		return -1;
	_cleanup_close_ int rootfd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rootfd < 0)
		return ocitree_error_set(err, errno, "open '%s'", rootfs);
	struct tree *t = unpack_into(img, rootfd, o, err);
	if (!t) {
		struct ocitree_error *e2 = NULL;
		if (created)
			rm_rf_at(pfd, base, &e2);
		else
			log_warn("the partial tree in '%s' was left behind", rootfs);
		ocitree_error_free(e2);
		return -1;
	}
	tree_free(t);
	return 0;
}

static bool exists_at(int dirfd, const char *name)
{
	struct stat st;
	return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* The descriptors from index.json's entry down to the manifest. */
static void make_walk(struct ocitree_image *img, struct umoci_meta *m)
{
	m->n_walk = 0;
	m->walk = xcalloc(2, sizeof(*m->walk));
	if (img->root.digest[0] && strcmp(img->root.digest, img->manifest_desc.digest) != 0)
		ocitree_descriptor_copy(&m->walk[m->n_walk++], &img->root);
	ocitree_descriptor_copy(&m->walk[m->n_walk++],
				img->root.digest[0] && strcmp(img->root.digest, img->manifest_desc.digest) == 0
					? &img->root
					: &img->manifest_desc);
}

struct mtree_job {
	const struct tree *t;
	const char *label;
	struct buf out;
};

static void *render_mtree(void *arg)
{
	struct mtree_job *j = arg;
	mtree_render(&j->out, j->t, j->label);
	return NULL;
}

static int write_meta_file(int bfd, const char *name, const void *data, size_t len, bool sync,
			   struct ocitree_error **err)
{
	return sync ? write_file_atomic_at(bfd, name, data, len, 0644, err)
		    : write_file_nosync_at(bfd, name, data, len, 0644, err);
}

/* config.json is written by unpack only; the rest also by repack
 * --refresh-bundle.  The mtree and the state record (a line per path each,
 * tens of milliseconds for a distribution image) are made side by side. */
int bundle_write_meta(int bfd, const char *bundle, struct ocitree_image *img, const struct tree *t,
		      const struct ocitree_map_options *map, bool sync, struct ocitree_error **err)
{
	_cleanup_free_ char *mname = mtree_name(img->manifest_desc.digest);
	_cleanup_free_ char *label = xasprintf("%s/rootfs", bundle);
	struct mtree_job job = {.t = t, .label = label, .out = BUF_INIT};
	pthread_t th;
	bool threaded = thread_create(&th, NULL, render_mtree, &job) == 0;
	if (!threaded)
		render_mtree(&job);
	_cleanup_buf_ struct buf state = BUF_INIT;
	state_render(&state, t, img->manifest_desc.digest);
	if (threaded)
		pthread_join(th, NULL);
	_cleanup_buf_ struct buf mtree = job.out;
	if (write_meta_file(bfd, mname, mtree.data, mtree.len, sync, err) < 0)
		return ocitree_error_prefix(err, "write mtree");
	if (write_meta_file(bfd, STATE_FILE, state.data, state.len, sync, err) < 0)
		return ocitree_error_prefix(err, "write bundle state");
	struct umoci_meta m = {0};
	make_walk(img, &m);
	m.map = *map;
	_cleanup_free_ char *text = umoci_meta_render(&m);
	m.map = (struct ocitree_map_options){0};
	umoci_meta_clear(&m);
	if (write_meta_file(bfd, UMOCI_META_FILE, text, strlen(text), sync, err) < 0)
		return ocitree_error_prefix(err, "write " UMOCI_META_FILE);
	return 0;
}

OCITREE_EXPORT int ocitree_unpack_bundle(struct ocitree_image *img, const char *bundle,
					 const struct ocitree_unpack_options *o, struct ocitree_error **err)
{
	_cleanup_close_ int pfd = -1;
	_cleanup_free_ char *base = NULL;
	bool created = false;
	if (open_new_dir(bundle, 0700, false, &pfd, &base, &created, err) < 0)
		return -1;
	_cleanup_close_ int bfd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (bfd < 0)
		return ocitree_error_set(err, errno, "open bundle '%s'", bundle);
	/* a bundle can hold setuid binaries: keep others out, as umoci does */
	if (fchmod(bfd, 0700) < 0)
		return ocitree_error_set(err, errno, "chmod bundle '%s'", bundle);
	if (exists_at(bfd, "config.json"))
		return ocitree_error_setk(err, OCITREE_ERROR_EXISTS, "bundle '%s' already has a config.json", bundle);
	if (exists_at(bfd, "rootfs"))
		return ocitree_error_setk(err, OCITREE_ERROR_EXISTS, "bundle '%s' already has a rootfs", bundle);
	if (mkdirat(bfd, "rootfs", 0755) < 0)
		return ocitree_error_set(err, errno, "create '%s/rootfs'", bundle);
	_cleanup_free_ char *mname = mtree_name(img->manifest_desc.digest);
	_cleanup_close_ int rootfd = openat(bfd, "rootfs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct tree *t = NULL;
	_cleanup_free_ char *config = NULL;
	_cleanup_free_ char *rootfs_path = xasprintf("%s/rootfs", bundle);
	if (rootfd < 0) {
		ocitree_error_set(err, errno, "open '%s/rootfs'", bundle);
		goto fail;
	}
	t = unpack_into(img, rootfd, o, err);
	if (!t)
		goto fail;
	config = ocitree_runtime_config(img->config, rootfs_path, &o->map, err);
	if (!config) {
		ocitree_error_prefix(err, "generate config.json");
		goto fail;
	}
	/* not synced, as the rootfs they describe is not: after a crash the
	 * bundle is to be unpacked again in any case */
	if (write_meta_file(bfd, "config.json", config, strlen(config), false, err) < 0)
		goto fail;
	if (bundle_write_meta(bfd, bundle, img, t, &o->map, false, err) < 0)
		goto fail;
	tree_free(t);
	return 0;
fail:
	tree_free(t);
	{
		struct ocitree_error *e2 = NULL;
		if (created) {
			rm_rf_at(pfd, base, &e2);
		} else {
			rm_rf_at(bfd, "rootfs", &e2);
			unlinkat(bfd, "config.json", 0);
			unlinkat(bfd, mname, 0);
			unlinkat(bfd, STATE_FILE, 0);
			unlinkat(bfd, UMOCI_META_FILE, 0);
		}
		ocitree_error_free(e2);
	}
	return -1;
}
