/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control server of the writable mount: a socket in the work directory
 * that `ocitree commit MOUNTPOINT` talks to, and the live commit it runs
 * (freezing writers, committing the upper directory, and with --clear
 * moving the mount onto the new image).
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>

#include "fs-rw.h"
#include "ocitree/control.h"
#include "ocitree/mount.h"

/* ================================================================ live commit */

/* The paths a commit --clear saw, by upper inode number: where each live
 * node is to be found again in the new image.  Filled in the commit's
 * order, sorted once, searched per node; of several names of one inode the
 * first seen counts. */
struct ino_paths {
	struct ino_path {
		uint64_t ino;
		size_t seq;
		char *path;
	} * v;
	size_t n, cap;
};

static void visit_upper(const char *path, const struct stat *st, void *userdata)
{
	struct ino_paths *m = userdata;
	grow_array((void **)&m->v, &m->cap, m->n + 1, sizeof(*m->v));
	m->v[m->n] = (struct ino_path){.ino = st->st_ino, .seq = m->n, .path = xstrdup(path)};
	m->n++;
}

static int ino_path_cmp(const void *a, const void *b)
{
	const struct ino_path *x = a, *y = b;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void ino_paths_sort(struct ino_paths *m)
{
	if (m->n)
		qsort(m->v, m->n, sizeof(*m->v), ino_path_cmp);
}

/* The first path of ino (after ino_paths_sort()), or NULL. */
static const char *ino_paths_get(const struct ino_paths *m, uint64_t ino)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->v[mid].ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < m->n && m->v[lo].ino == ino ? m->v[lo].path : NULL;
}

static void ino_paths_free(struct ino_paths *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i].path);
	free(m->v);
	*m = (struct ino_paths){0};
}

/* The st_ino of every file of this mount open for writing, sorted.  The
 * kernel opens files without telling the daemon (fs-rw.h), so they are read
 * from /proc: the fds of each process open for writing on this mount
 * (fdinfo), and its shared writable mappings of the mount's files (maps).
 * Processes the daemon may not inspect are not seen. */
struct open_set {
	uint64_t *v;
	size_t n, cap;
};

static void open_set_add(struct open_set *s, uint64_t ino)
{
	grow_array((void **)&s->v, &s->cap, s->n + 1, sizeof(*s->v));
	s->v[s->n++] = ino;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool open_set_has(const struct open_set *s, uint64_t ino)
{
	return s->n && bsearch(&ino, s->v, s->n, sizeof(*s->v), u64_cmp);
}

/* The fds of process dir pfd (a /proc/PID) open for writing on files of
 * device dev (whichever mount of it, in whichever mount namespace: a
 * container's root is a bind mount of this one). */
static void scan_fds(int pfd, dev_t dev, struct open_set *s)
{
	int dfd = openat(pfd, "fdinfo", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		int f = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC);
		if (f < 0)
			continue;
		char buf[512];
		ssize_t len = read(f, buf, sizeof(buf) - 1);
		close(f);
		if (len <= 0)
			continue;
		buf[len] = 0;
		const char *fl = strstr(buf, "flags:");
		if (!fl || (strtoul(fl + 6, NULL, 8) & O_ACCMODE) == O_RDONLY)
			continue;
		/* the inode the fd is on: cached attributes, no request to us
		 * or to another FUSE daemon */
		char link[NAME_MAX + 4];
		snprintf(link, sizeof(link), "fd/%s", de->d_name);
		struct statx sx;
		if (statx(pfd, link, AT_STATX_DONT_SYNC, STATX_INO, &sx) == 0 &&
		    makedev(sx.stx_dev_major, sx.stx_dev_minor) == dev)
			open_set_add(s, sx.stx_ino);
	}
	closedir(d);
}

/* The shared writable mappings of process dir pfd of files on device dev. */
static void scan_maps(int pfd, dev_t dev, struct open_set *s)
{
	int f = openat(pfd, "maps", O_RDONLY | O_CLOEXEC);
	FILE *m = f < 0 ? NULL : fdopen(f, "re");
	if (!m) {
		if (f >= 0)
			close(f);
		return;
	}
	char line[4096];
	while (fgets(line, sizeof(line), m)) {
		char perms[8];
		unsigned maj, min;
		unsigned long long ino;
		if (sscanf(line, "%*x-%*x %7s %*x %x:%x %llu", perms, &maj, &min, &ino) == 4 && perms[1] == 'w' &&
		    perms[3] == 's' && makedev(maj, min) == dev)
			open_set_add(s, ino);
	}
	fclose(m);
}

static void open_set_scan(struct rwfs *fs, struct open_set *s)
{
	struct statx mx;
	if (!fs->mountpoint || statx(AT_FDCWD, fs->mountpoint, AT_STATX_DONT_SYNC, STATX_INO, &mx) < 0)
		return;
	dev_t dev = makedev(mx.stx_dev_major, mx.stx_dev_minor);
	DIR *d = opendir("/proc");
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		int pfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pfd < 0)
			continue;
		scan_fds(pfd, dev, s);
		scan_maps(pfd, dev, s);
		close(pfd);
	}
	closedir(d);
	if (s->n)
		qsort(s->v, s->n, sizeof(*s->v), u64_cmp);
}

struct keep_ctx {
	struct rwfs *fs;
	const struct open_set *open;
};

/* Keep what is open for writing: its data goes on changing here. */
static bool keep_open_files(int dirfd, const char *name, const struct stat *st, void *userdata)
{
	struct keep_ctx *k = userdata;
	pthread_mutex_lock(&k->fs->nodes);
	struct node *n = map_find(&k->fs->by_upper, st->st_ino, true);
	bool keep = n && open_set_has(k->open, n->o.ino);
	pthread_mutex_unlock(&k->fs->nodes);
	return keep;
}

/* After a commit --clear: the image is now the committed one (its layers
 * plus the new layer), the upper directory is emptied but for files open
 * for writing, and every live node is found again in the new tree by its
 * path, keeping its node id and st_ino.  Nothing the kernel caches
 * changes: the tree shows the same. */
static int switch_image(struct rwfs *fs, struct ocitree_layout *l, const struct ocitree_commit_result *res,
                        const char *tag, struct ino_paths *paths, struct ocitree_error **err)
{
	struct ocitree_image img = {.layout = l, .tag = (char *)tag};
	img.manifest_desc =
	    (struct ocitree_descriptor){.media_type = (char *)OCITREE_MT_OCI_MANIFEST, .size = res->manifest_size};
	snprintf(img.manifest_desc.digest, sizeof(img.manifest_desc.digest), "%s", res->manifest);
	struct ocitree_mount m = {0};
	struct ocitree_tree *t2 = NULL;
	struct open_set open = {0};
	int ret = -1;
	img.manifest = ocitree_blob_read_manifest(l, &img.manifest_desc, err);
	if (!img.manifest)
		goto out;
	img.config = ocitree_blob_read_config(l, &img.manifest->config, err);
	if (!img.config)
		goto out;
	/* the new layer's index and tree, and the record (clearing) */
	struct ocitree_mount_options mo = {.index = fs->index_opts,
	                                   .threads = 1,
	                                   .reuse = fs->layers,
	                                   .n_reuse = fs->n_layers,
	                                   .upper = fs->upper,
	                                   .clearing = true};
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
	ino_paths_sort(paths);
	char **pv = xcalloc(nn + 1, sizeof(*pv));
	for (size_t i = 0; i < nn; i++) {
		struct node *n = v[i];
		if (n == fs->root)
			pv[i] = xstrdup("/");
		else if (n->o.ufd >= 0) {
			const char *p = ino_paths_get(paths, n->o.uino);
			pv[i] = p ? xasprintf("/%s", p) : NULL;
		} else if (!n->o.unlinked && n->o.tree == ocitree_overlay_tree(fs->ov) && n->o.lower) {
			pv[i] = ocitree_overlay_tree_path(fs->ov, n->o.lower);
		}
	}

	/* what stays in the upper directory is the file itself, with its data
	 * (it was committed already) */
	open_set_scan(fs, &open);
	for (size_t i = 0; i < nn; i++) {
		if (v[i]->o.ufd >= 0 && v[i]->o.metacopy && open_set_has(&open, v[i]->o.ino) &&
		    ocitree_overlay_copy_up(fs->ov, &v[i]->o, OCITREE_OVERLAY_CU_DATA))
			open.n = 0; /* keep none rather than a file without its data */
	}

	/* the record names the new image already: now the upper directory */
	struct keep_ctx kc = {fs, &open};
	ret = ocitree_upper_clear(fs->upper, keep_open_files, &kc, err);

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
		for (size_t i = 0; i < nn; i++) {
			struct node *n = v[i];
			uint32_t k = 0;
			if (pv[i]) {
				k = strcmp(pv[i], "/") == 0 ? OCITREE_TREE_ROOT
				                            : ocitree_tree_lookup_path(t2, pv[i] + 1);
				if (k && ocitree_overlay_ltype(t2, k) != n->o.type)
					k = 0;
			}
			bool dropped = false;
			if (n->o.ufd >= 0) {
				struct stat st;
				bool gone = fstat(n->o.ufd, &st) == 0 && st.st_nlink == 0 && n != fs->root;
				if (gone && k) {
					/* committed and cleared: it is the new image's now */
					pthread_mutex_lock(&fs->nodes);
					close(n->o.ufd);
					n->o.ufd = -1;
					node_close_fds_locked(n);
					pthread_mutex_unlock(&fs->nodes);
					dropped = true;
				}
			}
			ocitree_overlay_obj_move(&n->o, t2, k, dropped);
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
		o->tree = ocitree_overlay_set_tree(fs->ov, t2);
		o->next = fs->old;
		fs->old = o;
		t2 = NULL;
	} else if (ret == 0) {
		/* nothing changed: the same tree, another manifest */
		for (size_t i = 0; i < nn; i++)
			ocitree_overlay_dir_changed(&v[i]->o);
	}
	pthread_rwlock_unlock(&fs->ns);
	for (size_t i = 0; i < nn; i++) {
		free(pv[i]);
		node_put(fs, v[i]);
	}
	free(pv);
	free(v);
out:
	free(open.v);
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
static int live_commit(struct rwfs *fs, const struct ocitree_control_request *req, struct ocitree_control_reply *reply,
                       struct ocitree_error **err)
{
	if (!same_file(req->layout, fs->layout))
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
					  "the mount's image is in layout '%s', not '%s': commit there", fs->layout,
					  req->layout);
	bool clear = req->clear;
	pthread_rwlock_wrlock(&fs->freeze);
	const struct ocitree_upper_state *st = ocitree_upper_get_state(fs->upper);
	_cleanup_free_ char *use_tag = xstrdup(req->tag ? req->tag : st ? st->tag : "");
	struct ocitree_layout *l = ocitree_layout_open(fs->layout, err);
	struct ino_paths paths = {0};
	struct ocitree_commit_result res;
	int ret = -1;
	if (l) {
		struct ocitree_commit_options o = {.compression = req->compression,
		                                   .history = req->has_history ? &req->history : NULL,
		                                   .lower = ocitree_overlay_tree(fs->ov),
		                                   .visit = clear ? visit_upper : NULL,
		                                   .userdata = &paths};
		ret = ocitree_upper_commit(fs->upper, l, use_tag, &o, &res, err);
		if (ret == 0 && clear && switch_image(fs, l, &res, use_tag, &paths, err) < 0) {
			ocitree_error_prefix(err, "image %s is tagged '%s', but the mount could not move onto it",
					     res.manifest, use_tag);
			ret = -1;
		}
	}
	ino_paths_free(&paths);
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

int rw_control_start(struct rwfs *fs, struct fuse_session *se)
{
	fs->se = se;
	_cleanup_error_ struct ocitree_error *err = NULL;
	fs->ctl_fd = ocitree_control_listen(ocitree_upper_work_fd(fs->upper), &err);
	if (fs->ctl_fd < 0 || pipe2(fs->ctl_wake, O_CLOEXEC) < 0) {
		ocitree_log(OCITREE_LOG_WARN, "%s", err ? err->msg : strerror(errno));
		if (fs->ctl_fd >= 0) {
			close(fs->ctl_fd);
			ocitree_control_unlisten(ocitree_upper_work_fd(fs->upper));
		}
		fs->ctl_fd = -1;
		return -1;
	}
	if (pthread_create(&fs->ctl_thread, NULL, ctl_main, fs) != 0)
		return -1;
	fs->ctl_running = true;
	return 0;
}

void rw_control_stop(struct rwfs *fs)
{
	if (fs->ctl_running) {
		if (write(fs->ctl_wake[1], "x", 1) < 0)
			ocitree_log(OCITREE_LOG_WARN, "stop the control thread: %s", strerror(errno));
		pthread_join(fs->ctl_thread, NULL);
		fs->ctl_running = false;
	}
	if (fs->ctl_fd >= 0) {
		close(fs->ctl_fd);
		ocitree_control_unlisten(ocitree_upper_work_fd(fs->upper));
	}
	for (int i = 0; i < 2; i++)
		if (fs->ctl_wake[i] >= 0)
			close(fs->ctl_wake[i]);
	fs->ctl_fd = fs->ctl_wake[0] = fs->ctl_wake[1] = -1;
}
