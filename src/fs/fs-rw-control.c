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
#include "json.h"
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
	struct ocitree_descriptor md = {.media_type = (char *)OCITREE_MT_OCI_MANIFEST, .size = res->manifest_size};
	snprintf(md.digest, sizeof(md.digest), "%s", res->manifest);
	struct ocitree_manifest *m = ocitree_blob_read_manifest(l, &md, err);
	if (!m)
		return -1;
	struct ocitree_layer_index *idx = NULL;
	struct ocitree_tree *t2 = NULL;
	int ret = -1;
	if (res->layer[0]) {
		idx = ocitree_layer_index_open(l, &m->layers[m->n_layers - 1], res->diff_id, &fs->index_opts, err);
		if (!idx)
			goto out;
		struct ocitree_layer_index **layers = xcalloc(fs->n_layers + 2, sizeof(*layers));
		memcpy(layers, fs->layers, fs->n_layers * sizeof(*layers));
		layers[fs->n_layers] = idx;
		t2 = ocitree_tree_build(layers, fs->n_layers + 1, 0, err);
		if (!t2) {
			free(layers);
			goto out;
		}
		free(fs->layers);
		fs->layers = layers;
		fs->n_layers++;
		idx = NULL;
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

	/* the record first (clearing), then the upper directory */
	struct ocitree_upper *u = fs->upper;
	ocitree_descriptor_clear(&u->state.manifest);
	ocitree_descriptor_copy(&u->state.manifest, &md);
	free(u->state.tag);
	u->state.tag = xstrdup(tag);
	u->state.clearing = true;
	ret = ocitree_upper_save_state(u, err);
	if (ret == 0)
		ret = ocitree_upper_clear(u, keep_open_files, fs, err);

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
	ocitree_layer_index_free(idx);
	ocitree_tree_free(t2);
	ocitree_manifest_free(m);
	return ret;
}

static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* One commit request: freeze the writers, commit the upper directory, and
 * with clear move on to the new image. */
static int live_commit(struct rwfs *fs, const cJSON *req, cJSON *resp, struct ocitree_error **err)
{
	const char *layout = NULL, *tag = NULL, *comp = NULL;
	bool clear = false;
	if (json_get_string(req, "layout", true, &layout, "request", err) < 0 ||
	    json_get_string(req, "tag", false, &tag, "request", err) < 0 ||
	    json_get_string(req, "compression", true, &comp, "request", err) < 0 ||
	    json_get_bool(req, "clear", &clear, "request", err) < 0)
		return -1;
	enum ocitree_compression c;
	if (ocitree_compression_parse(comp, &c) < 0)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "unknown compression '%s'", comp);
	if (!same_file(layout, fs->layout))
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
					  "the mount's image is in layout '%s', not '%s': commit there", fs->layout,
					  layout);
	struct ocitree_history h = {0};
	const cJSON *hj = cJSON_GetObjectItemCaseSensitive(req, "history");
	if (cJSON_IsObject(hj)) {
		const char *v;
		if (json_get_string(hj, "created", false, &v, "history", err) < 0)
			return -1;
		h.created = (char *)v;
		if (json_get_string(hj, "created_by", false, &v, "history", err) < 0)
			return -1;
		h.created_by = (char *)v;
		if (json_get_string(hj, "author", false, &v, "history", err) < 0)
			return -1;
		h.author = (char *)v;
		if (json_get_string(hj, "comment", false, &v, "history", err) < 0)
			return -1;
		h.comment = (char *)v;
	}
	pthread_rwlock_wrlock(&fs->freeze);
	_cleanup_free_ char *use_tag = xstrdup(tag ? tag : fs->upper->state.tag);
	struct ocitree_layout *l = ocitree_layout_open(fs->layout, err);
	struct inomap paths = {0};
	struct ocitree_commit_result res;
	int ret = -1;
	if (l) {
		struct ocitree_commit_options o = {.compression = c, .history = cJSON_IsObject(hj) ? &h : NULL,
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
		json_add(resp, "manifest", json_string(res.manifest));
		json_add(resp, "layer", json_string(res.layer));
		json_add(resp, "tag", json_string(use_tag));
		json_add(resp, "entries", json_int64((int64_t)res.entries));
	}
	return ret;
}

static void ctl_serve(struct rwfs *fs, int c)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	_cleanup_error_ struct ocitree_error *err = NULL;
	_cleanup_json_ cJSON *resp = json_object();
	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || (cred.uid != 0 && cred.uid != fs->uid)) {
		ocitree_error_setk(&err, OCITREE_ERROR_USAGE, "only the user of the mount (or root) may commit it");
	} else {
		struct timeval tv = {30, 0};
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		_cleanup_buf_ struct buf b = BUF_INIT;
		while (b.len < (1u << 20)) {
			buf_reserve(&b, 4096);
			ssize_t r = read(c, b.data + b.len, 4096);
			if (r <= 0)
				break;
			b.len += (size_t)r;
			b.data[b.len] = '\0';
			if (memchr(b.data, '\n', b.len))
				break;
		}
		_cleanup_json_ cJSON *req = b.len ? json_parse_object(b.data, b.len, "request", &err) : NULL;
		const char *op = NULL;
		if (!req && !err)
			ocitree_error_setk(&err, OCITREE_ERROR_INVALID, "empty request");
		else if (req && json_get_string(req, "op", true, &op, "request", &err) == 0) {
			if (strcmp(op, "commit") == 0)
				live_commit(fs, req, resp, &err);
			else
				ocitree_error_setk(&err, OCITREE_ERROR_UNSUPPORTED, "unknown request '%s'", op);
		}
	}
	json_add(resp, "ok", json_bool(err == NULL));
	if (err) {
		json_add(resp, "error", json_string(err->msg));
		json_add(resp, "kind", json_int64(err->kind));
		ocitree_log(OCITREE_LOG_WARN, "control request: %s", err->msg);
	}
	_cleanup_free_ char *text = json_print(resp);
	if (write_all(c, text, strlen(text)) == 0)
		write_all(c, "\n", 1);
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
	int wfd = fs->upper->work_fd;
	unlinkat(wfd, UPPER_CONTROL_SOCKET, 0); /* a dead daemon's */
	fs->ctl_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fs->ctl_fd < 0)
		return -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/" UPPER_CONTROL_SOCKET, wfd);
	if (bind(fs->ctl_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    fchmodat(wfd, UPPER_CONTROL_SOCKET, 0600, 0) < 0 || listen(fs->ctl_fd, 8) < 0 ||
	    pipe2(fs->ctl_wake, O_CLOEXEC) < 0) {
		close(fs->ctl_fd);
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
		unlinkat(fs->upper->work_fd, UPPER_CONTROL_SOCKET, 0);
	}
	for (int i = 0; i < 2; i++)
		if (fs->ctl_wake[i] >= 0)
			close(fs->ctl_wake[i]);
	fs->ctl_fd = fs->ctl_wake[0] = fs->ctl_wake[1] = -1;
}

const struct fs_hooks rw_hooks = {.started = ctl_start, .stopping = ctl_stop};
