/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control server of the writable mount: a socket in the work directory
 * that `ocitree commit MOUNTPOINT` talks to, and the live commit it runs
 * (freezing writers, committing the upper directory, and with --clear
 * moving the mount onto the new image).
 */
#include "config.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "fs-rw.h"
#include "ocitree/control.h"
#include "ocitree/mount.h"
#include "util.h"

/* ================================================================ live commit */

static void visit_upper(const char *path, const struct stat *st, void *userdata)
{
	inomap_put(userdata, st->st_ino, path);
}

/* Keep what is open for writing: its data goes on changing here. */
static bool keep_open_files(int dirfd, const char *name, const struct stat *st, void *userdata)
{
	struct rwfs *fs = userdata;
	pthread_mutex_lock(&fs->nodes);
	struct node *n = map_find(&fs->by_upper, st->st_ino, true);
	bool keep = n && n->writers > 0;
	pthread_mutex_unlock(&fs->nodes);
	return keep;
}

/* After a commit --clear: the image is now the committed one (its layers
 * plus the new layer), the upper directory is emptied but for files open
 * for writing, and every live node is found again in the new tree by its
 * path, keeping its node id and st_ino.  Nothing the kernel caches
 * changes: the tree shows the same. */
static int switch_image(struct rwfs *fs, struct ocitree_layout *l, const struct ocitree_commit_result *res,
			const char *tag, struct inomap *paths, struct ocitree_error **err)
{
	struct ocitree_image img = {.layout = l, .tag = (char *)tag};
	img.manifest_desc = (struct ocitree_descriptor){.media_type = (char *)OCITREE_MT_OCI_MANIFEST,
							.size = res->manifest_size};
	snprintf(img.manifest_desc.digest, sizeof(img.manifest_desc.digest), "%s", res->manifest);
	struct ocitree_mount m = {0};
	struct ocitree_tree *t2 = NULL;
	int ret = -1;
	img.manifest = ocitree_blob_read_manifest(l, &img.manifest_desc, err);
	if (!img.manifest)
		goto out;
	img.config = ocitree_blob_read_config(l, &img.manifest->config, err);
	if (!img.config)
		goto out;
	/* the new layer's index and tree, and the record (clearing) */
	struct ocitree_mount_options mo = {.index = fs->index_opts, .threads = 1, .reuse = fs->layers,
					   .n_reuse = fs->n_layers, .upper = fs->upper, .clearing = true};
	if (ocitree_mount_setup(l, &img, &mo, &m, err) < 0)
		goto out;
	if (m.tree) {
		free(fs->layers);
		fs->layers = m.layers;
		fs->n_layers = m.n_layers;
		t2 = m.tree;
		m = (struct ocitree_mount){0}; /* the layers are fs's now */
	}

	pthread_rwlock_wrlock(&fs->ns);
	/* every live node, pinned, with its path before anything moves */
	pthread_mutex_lock(&fs->nodes);
	size_t nn = 0, cap = fs->by_lower.n + fs->by_upper.n + 1;
	struct node **v = xcalloc(cap, sizeof(*v));
	for (int which = 0; which < 2; which++) {
		struct nodemap *mp = which ? &fs->by_upper : &fs->by_lower;
		for (size_t i = 0; i < mp->nb; i++) {
			for (struct node *n = mp->b[i]; n; n = which ? n->unext : n->lnext) {
				if (which && n->in_lower)
					continue; /* counted with by_lower */
				n->refs++;
				v[nn++] = n;
			}
		}
	}
	pthread_mutex_unlock(&fs->nodes);
	char **pv = xcalloc(nn + 1, sizeof(*pv));
	for (size_t i = 0; i < nn; i++) {
		struct node *n = v[i];
		if (n == fs->root)
			pv[i] = xstrdup("/");
		else if (n->o.ufd >= 0) {
			const char *p = inomap_get(paths, n->o.uino);
			pv[i] = p ? xasprintf("/%s", p) : NULL;
		} else if (!n->o.unlinked && n->o.tree == fs->ov.tree && n->o.lower) {
			pv[i] = overlay_tree_path(&fs->ov, n->o.lower);
		}
	}

	/* the record names the new image already: now the upper directory */
	ret = ocitree_upper_clear(fs->upper, keep_open_files, fs, err);

	if (ret == 0 && t2) {
		/* the nodes, in the new tree */
		pthread_mutex_lock(&fs->nodes);
		free(fs->by_lower.b);
		free(fs->by_upper.b);
		memset(&fs->by_lower, 0, sizeof(fs->by_lower));
		memset(&fs->by_upper, 0, sizeof(fs->by_upper));
		for (size_t i = 0; i < nn; i++) {
			v[i]->in_lower = v[i]->in_upper = false;
			v[i]->lnext = v[i]->unext = NULL;
		}
		pthread_mutex_unlock(&fs->nodes);
		fs->ov.gen++;
		for (size_t i = 0; i < nn; i++) {
			struct node *n = v[i];
			uint32_t k = 0;
			if (pv[i]) {
				k = strcmp(pv[i], "/") == 0 ? OCITREE_TREE_ROOT : ocitree_tree_lookup_path(t2, pv[i] + 1);
				if (k && overlay_ltype(t2, k) != n->o.type)
					k = 0;
			}
			if (n->o.ufd >= 0) {
				struct stat st;
				bool gone = fstat(n->o.ufd, &st) == 0 && st.st_nlink == 0 && n != fs->root;
				if (gone && k) {
					/* committed and cleared: it is the new image's now */
					pthread_mutex_lock(&fs->nodes);
					close(n->o.ufd);
					n->o.ufd = -1;
					if (n->rfd >= 0)
						close(n->rfd);
					n->rfd = -1;
					pthread_mutex_unlock(&fs->nodes);
					n->o.vstat = false;
				}
			}
			if (k) {
				n->o.tree = t2;
				n->o.metacopy = false;
				n->o.lower = n->o.ufd < 0 || S_ISDIR(n->o.type) ? k : 0;
			}
			atomic_store(&n->o.dir_nlink, 0);
			pthread_mutex_lock(&fs->nodes);
			if (n->o.ufd >= 0) {
				n->ukey = n->o.uino;
				map_insert(&fs->by_upper, n, true);
			}
			if (k) {
				n->lkey = k;
				map_insert(&fs->by_lower, n, false);
			}
			pthread_mutex_unlock(&fs->nodes);
		}
		struct old_tree *o = xcalloc(1, sizeof(*o));
		o->tree = fs->ov.tree;
		o->next = fs->old;
		fs->old = o;
		fs->ov.tree = t2;
		t2 = NULL;
		overlay_tindex_free(&fs->ov);
	} else if (ret == 0) {
		/* nothing changed: the same tree, another manifest */
		for (size_t i = 0; i < nn; i++)
			atomic_store(&v[i]->o.dir_nlink, 0);
	}
	pthread_rwlock_unlock(&fs->ns);
	for (size_t i = 0; i < nn; i++) {
		free(pv[i]);
		node_put(fs, v[i]);
	}
	free(pv);
	free(v);
out:
	ocitree_tree_free(t2);
	ocitree_mount_clear(&m);
	ocitree_manifest_free(img.manifest);
	ocitree_config_free(img.config);
	return ret;
}

static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* One commit request: freeze the writers, commit the upper directory, and
 * with clear move on to the new image. */
static int live_commit(struct rwfs *fs, const struct ocitree_control_request *req,
		       struct ocitree_control_reply *reply, struct ocitree_error **err)
{
	if (!same_file(req->layout, fs->layout))
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
					  "the mount's image is in layout '%s', not '%s': commit there", fs->layout,
					  req->layout);
	bool clear = req->clear;
	pthread_rwlock_wrlock(&fs->freeze);
	_cleanup_free_ char *use_tag = xstrdup(req->tag ? req->tag : fs->upper->state.tag);
	struct ocitree_layout *l = ocitree_layout_open(fs->layout, err);
	struct inomap paths = {0};
	struct ocitree_commit_result res;
	int ret = -1;
	if (l) {
		struct ocitree_commit_options o = {.compression = req->compression,
						   .history = req->has_history ? &req->history : NULL,
						   .lower = fs->ov.tree, .visit = clear ? visit_upper : NULL,
						   .userdata = &paths};
		ret = ocitree_upper_commit(fs->upper, l, use_tag, &o, &res, err);
		if (ret == 0 && clear && switch_image(fs, l, &res, use_tag, &paths, err) < 0) {
			ocitree_error_prefix(err, "image %s is tagged '%s', but the mount could not move onto it",
					     res.manifest, use_tag);
			ret = -1;
		}
	}
	inomap_free(&paths);
	ocitree_layout_free(l);
	pthread_rwlock_unlock(&fs->freeze);
	if (ret == 0) {
		reply->manifest = xstrdup(res.manifest);
		reply->layer = xstrdup(res.layer);
		reply->tag = steal_pointer(&use_tag);
		reply->entries = res.entries;
	}
	return ret;
}

/* One connection: the daemon's side of the control protocol. */
static void ctl_serve(struct rwfs *fs, int c)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	_cleanup_error_ struct ocitree_error *err = NULL;
	struct ocitree_control_request req = {0};
	struct ocitree_control_reply reply = {0};
	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || (cred.uid != 0 && cred.uid != fs->uid))
		ocitree_error_setk(&err, OCITREE_ERROR_USAGE, "only the user of the mount (or root) may commit it");
	else if (ocitree_control_read_request(c, &req, &err) == 0)
		live_commit(fs, &req, &reply, &err);
	if (err)
		ocitree_log(OCITREE_LOG_WARN, "control request: %s", err->msg);
	ocitree_control_send_reply(c, &reply, err);
	ocitree_control_request_clear(&req);
	ocitree_control_reply_clear(&reply);
}

static void *ctl_main(void *arg)
{
	struct rwfs *fs = arg;
	for (;;) {
		struct pollfd p[2] = {{.fd = fs->ctl_fd, .events = POLLIN}, {.fd = fs->ctl_wake[0], .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		int c = accept4(fs->ctl_fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		ctl_serve(fs, c);
		close(c);
	}
	return NULL;
}

static int ctl_start(void *userdata, struct fuse_session *se)
{
	struct rwfs *fs = userdata;
	fs->se = se;
	_cleanup_error_ struct ocitree_error *err = NULL;
	fs->ctl_fd = ocitree_control_listen(fs->upper->work_fd, &err);
	if (fs->ctl_fd < 0 || pipe2(fs->ctl_wake, O_CLOEXEC) < 0) {
		ocitree_log(OCITREE_LOG_WARN, "%s", err ? err->msg : strerror(errno));
		if (fs->ctl_fd >= 0) {
			close(fs->ctl_fd);
			ocitree_control_unlisten(fs->upper->work_fd);
		}
		fs->ctl_fd = -1;
		return -1;
	}
	if (pthread_create(&fs->ctl_thread, NULL, ctl_main, fs) != 0)
		return -1;
	fs->ctl_running = true;
	return 0;
}

static void ctl_stop(void *userdata)
{
	struct rwfs *fs = userdata;
	if (fs->ctl_running) {
		if (write(fs->ctl_wake[1], "x", 1) < 0)
			ocitree_log(OCITREE_LOG_WARN, "stop the control thread: %s", strerror(errno));
		pthread_join(fs->ctl_thread, NULL);
		fs->ctl_running = false;
	}
	if (fs->ctl_fd >= 0) {
		close(fs->ctl_fd);
		ocitree_control_unlisten(fs->upper->work_fd);
	}
	for (int i = 0; i < 2; i++)
		if (fs->ctl_wake[i] >= 0)
			close(fs->ctl_wake[i]);
	fs->ctl_fd = fs->ctl_wake[0] = fs->ctl_wake[1] = -1;
}

const struct fs_hooks rw_hooks = {.started = ctl_start, .stopping = ctl_stop};
