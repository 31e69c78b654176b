/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Upper directories (see ocitree/upper.h and upper-internal.h): opening and
 * locking, the record in the work directory, probing what the file system
 * allows, the private xattrs, and emptying an upper directory after commit.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "json.h"
#include "layout-internal.h"
#include "upper-internal.h"

/* ---- xattr names ---- */

const char *upper_xattr_prefix(const struct ocitree_upper_format *f)
{
	switch (f->xattrs) {
	case OCITREE_UPPER_XATTR_TRUSTED:
		return "trusted.overlay.";
	case OCITREE_UPPER_XATTR_USER:
		return "user.overlay.";
	default:
		return NULL;
	}
}

const char *upper_xattr_name(const struct ocitree_upper_format *f, const char *which,
			     char buf[UPPER_XATTR_NAME_MAX])
{
	const char *p = upper_xattr_prefix(f);
	if (!p)
		return NULL;
	snprintf(buf, UPPER_XATTR_NAME_MAX, "%s%s", p, which);
	return buf;
}

char *upper_xattr_escape(const struct ocitree_upper_format *f, const char *name)
{
	const char *p = upper_xattr_prefix(f);
	if (p && str_has_prefix(name, p))
		return xasprintf("%soverlay.%s", p, name + strlen(p));
	return xstrdup(name);
}

const char *upper_xattr_unescape(const struct ocitree_upper_format *f, const char *name)
{
	const char *p = upper_xattr_prefix(f);
	if (!p || !str_has_prefix(name, p))
		return name;
	const char *rest = name + strlen(p);
	if (!str_has_prefix(rest, "overlay."))
		return NULL; /* private */
	/* "P.overlay.X" is the image's "P.X": the same bytes minus "overlay."
	 * after the prefix.  Callers get a pointer they may not keep past the
	 * next call on the same thread. */
	static __thread char out[XATTR_NAME_MAX + 1];
	snprintf(out, sizeof(out), "%s%s", p, rest + strlen("overlay."));
	return out;
}

/* ---- /proc/self/fd paths ---- */

void upath_fd(struct upath *p, int fd)
{
	snprintf(p->path, sizeof(p->path), "/proc/self/fd/%d", fd);
	p->follow = true;
}

void upath_at(struct upath *p, int dirfd, const char *name)
{
	snprintf(p->path, sizeof(p->path), "/proc/self/fd/%d/%s", dirfd, name);
	p->follow = false;
}

ssize_t upath_getxattr(const struct upath *p, const char *name, void *buf, size_t size)
{
	return p->follow ? getxattr(p->path, name, buf, size) : lgetxattr(p->path, name, buf, size);
}

int upath_setxattr(const struct upath *p, const char *name, const void *value, size_t size, int flags)
{
	return p->follow ? setxattr(p->path, name, value, size, flags) : lsetxattr(p->path, name, value, size, flags);
}

int upath_removexattr(const struct upath *p, const char *name)
{
	return p->follow ? removexattr(p->path, name) : lremovexattr(p->path, name);
}

ssize_t upath_listxattr(const struct upath *p, char *buf, size_t size)
{
	return p->follow ? listxattr(p->path, buf, size) : llistxattr(p->path, buf, size);
}

/* The whole value of xattr name, or the whole list when name is NULL:
 * size, then read, again when it grew in between. */
static int read_sized(const struct upath *p, const char *name, struct buf *out)
{
	for (int attempt = 0; attempt < 8; attempt++) {
		ssize_t n = name ? upath_getxattr(p, name, NULL, 0) : upath_listxattr(p, NULL, 0);
		if (n < 0)
			return -1;
		buf_reset(out);
		buf_reserve(out, (size_t)n + 1);
		ssize_t m = !n ? 0 : name ? upath_getxattr(p, name, out->data, (size_t)n)
					  : upath_listxattr(p, out->data, (size_t)n);
		if (m >= 0) {
			out->len = (size_t)m;
			out->data[m] = '\0';
			return 0;
		}
		if (errno != ERANGE)
			return -1;
	}
	errno = EAGAIN;
	return -1;
}

int upath_list_all(const struct upath *p, struct buf *out)
{
	if (read_sized(p, NULL, out) == 0)
		return 0;
	if (errno != ENOTSUP)
		return -1;
	buf_reset(out); /* a file system without xattrs: none */
	return 0;
}

int upath_get_all(const struct upath *p, const char *name, struct buf *out)
{
	return read_sized(p, name, out);
}

/* ---- private xattrs ---- */

void upper_stat_format(char buf[64], uid_t uid, gid_t gid, mode_t mode, dev_t rdev)
{
	if (S_ISCHR(mode) || S_ISBLK(mode))
		snprintf(buf, 64, "%u:%u:0%o:%u:%u", (unsigned)uid, (unsigned)gid, (unsigned)mode, major(rdev),
			 minor(rdev));
	else
		snprintf(buf, 64, "%u:%u:0%o", (unsigned)uid, (unsigned)gid, (unsigned)mode);
}

int upper_stat_parse(const char *s, size_t len, uid_t *uid, gid_t *gid, mode_t *mode, dev_t *rdev)
{
	char tmp[64];
	if (len >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	unsigned long v[5];
	int n = 0;
	char *p = tmp;
	while (n < 5) {
		char *e;
		errno = 0;
		v[n] = strtoul(p, &e, n == 2 ? 8 : 10);
		if (errno || e == p)
			return -1;
		n++;
		if (*e == '\0')
			break;
		if (*e != ':')
			return -1;
		p = e + 1;
	}
	if (n != 3 && n != 5)
		return -1;
	if (v[0] > UINT32_MAX || v[1] > UINT32_MAX || v[2] > 0177777 || !(v[2] & S_IFMT))
		return -1;
	*uid = (uid_t)v[0];
	*gid = (gid_t)v[1];
	*mode = (mode_t)v[2];
	*rdev = n == 5 ? makedev((unsigned)v[3], (unsigned)v[4]) : 0;
	return 0;
}

void upper_meta_apply(const struct upper_meta *m, struct stat *st)
{
	if (!m->has_stat)
		return;
	st->st_uid = m->uid;
	st->st_gid = m->gid;
	st->st_mode = m->mode;
	st->st_rdev = m->rdev;
}

void upper_meta_clear(struct upper_meta *m)
{
	free(m->redirect);
	free(m->origin);
	memset(m, 0, sizeof(*m));
}

static int get_string(const struct upper_meta *m, const struct upath *p, const char *name, char **out)
{
	struct buf b = BUF_INIT;
	if (upath_get_all(p, name, &b) < 0) {
		buf_free(&b);
		return errno == ENODATA || errno == ENOTSUP ? 0 : -1;
	}
	*out = b.data ? buf_steal(&b) : xstrdup("");
	return 1;
}

int upper_meta_read(const struct ocitree_upper_format *f, const struct upath *p, struct upper_meta *m)
{
	memset(m, 0, sizeof(*m));
	if (f->xattrs == OCITREE_UPPER_XATTR_NONE)
		return 0;
	/* one listxattr tells which private ones are there */
	_cleanup_buf_ struct buf names = BUF_INIT;
	if (upath_list_all(p, &names) < 0)
		return -1;
	const char *prefix = upper_xattr_prefix(f);
	size_t plen = strlen(prefix);
	for (size_t off = 0; off < names.len; off += strlen(names.data + off) + 1) {
		const char *n = names.data + off;
		if (strncmp(n, prefix, plen) != 0)
			continue;
		const char *w = n + plen;
		int r = 0;
		char *s = NULL;
		if (strcmp(w, UPPER_X_OPAQUE) == 0) {
			r = get_string(m, p, n, &s);
			m->opaque = r > 0 && strcmp(s, "y") == 0;
		} else if (strcmp(w, UPPER_X_METACOPY) == 0) {
			m->metacopy = true;
		} else if (strcmp(w, UPPER_X_REDIRECT) == 0) {
			r = get_string(m, p, n, &m->redirect);
		} else if (strcmp(w, UPPER_X_ORIGIN) == 0) {
			r = get_string(m, p, n, &m->origin);
		} else if (strcmp(w, UPPER_X_STAT) == 0) {
			r = get_string(m, p, n, &s);
			if (r > 0 && upper_stat_parse(s, strlen(s), &m->uid, &m->gid, &m->mode, &m->rdev) == 0)
				m->has_stat = true;
			else if (r > 0)
				log_warn("%s: malformed %s xattr '%s': ignored", p->path, n, s);
		}
		free(s);
		if (r < 0) {
			int e = errno;
			upper_meta_clear(m);
			errno = e;
			return -1;
		}
	}
	/* a metacopy file without a redirect has nothing to show */
	if (m->metacopy && (!m->redirect || m->redirect[0] != '/')) {
		log_warn("%s: metacopy file without an absolute redirect: shown as it is", p->path);
		m->metacopy = false;
	}
	return 0;
}

/* ---- removal ---- */

int upper_rm_rf_at(int parent, const char *name)
{
	if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -1;
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		/* a directory we may not read: give ourselves the right first */
		if (errno != EACCES || fchmodat(parent, name, 0700, 0) < 0)
			return -1;
		fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return -1;
	}
	struct stat st;
	if (fstat(fd, &st) == 0 && (st.st_mode & 0700) != 0700)
		fchmod(fd, st.st_mode | 0700);
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	struct dirent *de;
	int ret = 0;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (upper_rm_rf_at(dirfd(d), de->d_name) < 0)
			ret = -1;
	}
	int e = errno;
	closedir(d);
	if (ret < 0) {
		errno = e;
		return -1;
	}
	if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return -1;
	return 0;
}

void upper_tmp_name(char buf[64])
{
	static atomic_uint_fast64_t counter;
	uint64_t n = atomic_fetch_add(&counter, 1);
	snprintf(buf, 64, UPPER_TMP_PREFIX "%d.%" PRIu64, (int)getpid(), n);
}

/* ---- the copy-up journal of hardlinked files ---- */

int upper_links_journal_write(struct ocitree_upper *u, const char *const *paths, size_t n,
			      struct ocitree_error **err)
{
	_cleanup_buf_ struct buf b = BUF_INIT;
	for (size_t i = 0; i < n; i++)
		buf_append(&b, paths[i], strlen(paths[i]) + 1);
	return write_file_atomic_at(u->work_fd, UPPER_LINKS_JOURNAL, b.data, b.len, 0600, err);
}

/* "/a/b": names that stay below the root, as a mount resolves them */
static bool journal_path_ok(const char *p)
{
	if (p[0] != '/')
		return false;
	for (const char *c = p + 1;;) {
		const char *end = strchrnul(c, '/');
		size_t n = (size_t)(end - c);
		if (n == 0 || n > NAME_MAX || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		if (!*end)
			return true;
		c = end + 1;
	}
}

int upper_links_journal_read(struct ocitree_upper *u, char ***paths, struct ocitree_error **err)
{
	*paths = NULL;
	_cleanup_buf_ struct buf b = BUF_INIT;
	struct ocitree_error *e = NULL;
	if (read_file_at(u->work_fd, UPPER_LINKS_JOURNAL, 1 << 20, &b, "copy-up journal", &e) < 0) {
		int r = e && e->kind == OCITREE_ERROR_NOT_FOUND ? 0 : -1;
		if (r < 0 && err) {
			ocitree_error_free(*err);
			*err = e;
		} else {
			ocitree_error_free(e);
		}
		return r < 0 ? ocitree_error_prefix(err, "work directory '%s'", u->work_path) : 0;
	}
	/* the writer ends every path with a NUL and replaces the file whole */
	size_t n = 0;
	for (size_t off = 0; off < b.len; off += strlen(b.data + off) + 1, n++)
		if (!journal_path_ok(b.data + off))
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
						  "copy-up journal '%s/%s': path %zu is not an absolute path of names",
						  u->work_path, UPPER_LINKS_JOURNAL, n + 1);
	if (n < 2 || b.data[b.len - 1] != '\0')
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
					  "copy-up journal '%s/%s' is malformed: %s", u->work_path,
					  UPPER_LINKS_JOURNAL, n < 2 ? "fewer than two names" : "no NUL at its end");
	char **v = xcalloc(n + 1, sizeof(*v));
	n = 0;
	for (size_t off = 0; off < b.len; off += strlen(b.data + off) + 1)
		v[n++] = xstrdup(b.data + off);
	*paths = v;
	return 0;
}

void upper_links_journal_remove(struct ocitree_upper *u)
{
	unlinkat(u->work_fd, UPPER_LINKS_JOURNAL, 0);
}

/* ---- opening ---- */

char *ocitree_upper_default_workdir(const char *upper)
{
	size_t n = strlen(upper);
	while (n > 1 && upper[n - 1] == '/')
		n--;
	return xasprintf("%.*s.work", (int)n, upper);
}

static const char *whiteout_name(enum ocitree_upper_whiteout w)
{
	return w == OCITREE_UPPER_WHITEOUT_FILE ? "file" : "chardev";
}

static const char *xattrs_name(enum ocitree_upper_xattrs x)
{
	return x == OCITREE_UPPER_XATTR_TRUSTED ? "trusted" : x == OCITREE_UPPER_XATTR_USER ? "user" : "none";
}

static void state_clear(struct ocitree_upper_state *s)
{
	free(s->layout);
	free(s->tag);
	ocitree_descriptor_clear(&s->manifest);
	memset(s, 0, sizeof(*s));
}

static int state_read(struct ocitree_upper *u, struct ocitree_error **err)
{
	_cleanup_buf_ struct buf b = BUF_INIT;
	struct ocitree_error *e = NULL;
	if (read_file_at(u->work_fd, UPPER_STATE_FILE, 1 << 20, &b, UPPER_STATE_FILE, &e) < 0) {
		if (e && e->kind == OCITREE_ERROR_NOT_FOUND) {
			ocitree_error_free(e);
			return 0;
		}
		if (err) {
			ocitree_error_free(*err);
			*err = e;
		} else {
			ocitree_error_free(e);
		}
		return -1;
	}
	_cleanup_free_ char *what = xasprintf("'%s/%s'", u->work_path, UPPER_STATE_FILE);
	_cleanup_json_ cJSON *j = json_parse_object(b.data, b.len, what, err);
	if (!j)
		return -1;
	int64_t version = 0;
	const char *layout, *tag, *mt, *digest, *wh, *xa, *owners;
	int64_t size;
	bool clearing = false;
	if (json_get_int64(j, "ocitreeUpperVersion", true, &version, what, err) < 0)
		return -1;
	if (version != 1)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "%s: version %" PRId64 " is not supported",
					  what, version);
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "manifest");
	if (!cJSON_IsObject(m))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: 'manifest' is not an object", what);
	if (json_get_string(j, "layout", true, &layout, what, err) < 0 ||
	    json_get_string(j, "tag", true, &tag, what, err) < 0 ||
	    json_get_string(m, "mediaType", true, &mt, what, err) < 0 ||
	    json_get_string(m, "digest", true, &digest, what, err) < 0 ||
	    json_get_int64(m, "size", true, &size, what, err) < 0 ||
	    json_get_string(j, "whiteout", true, &wh, what, err) < 0 ||
	    json_get_string(j, "xattrs", true, &xa, what, err) < 0 ||
	    json_get_string(j, "owners", true, &owners, what, err) < 0 ||
	    json_get_bool(j, "clearing", &clearing, what, err) < 0)
		return -1;
	if (ocitree_digest_check(digest, err) < 0)
		return ocitree_error_prefix(err, "%s", what);
	struct ocitree_upper_state s = {0};
	if (strcmp(wh, "chardev") == 0)
		s.format.whiteout = OCITREE_UPPER_WHITEOUT_CHARDEV;
	else if (strcmp(wh, "file") == 0)
		s.format.whiteout = OCITREE_UPPER_WHITEOUT_FILE;
	else
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: unknown whiteout form '%s'", what, wh);
	if (strcmp(xa, "trusted") == 0)
		s.format.xattrs = OCITREE_UPPER_XATTR_TRUSTED;
	else if (strcmp(xa, "user") == 0)
		s.format.xattrs = OCITREE_UPPER_XATTR_USER;
	else if (strcmp(xa, "none") == 0)
		s.format.xattrs = OCITREE_UPPER_XATTR_NONE;
	else
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: unknown xattrs '%s'", what, xa);
	if (strcmp(owners, "virtual") == 0)
		s.format.virtual_owners = true;
	else if (strcmp(owners, "real") != 0)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: unknown owners '%s'", what, owners);
	if (s.format.virtual_owners && s.format.xattrs == OCITREE_UPPER_XATTR_NONE)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "%s: virtual owners need xattrs", what);
	s.layout = xstrdup(layout);
	s.tag = xstrdup(tag);
	s.manifest.media_type = xstrdup(mt);
	snprintf(s.manifest.digest, sizeof(s.manifest.digest), "%s", digest);
	s.manifest.size = size;
	s.clearing = clearing;
	state_clear(&u->state);
	u->state = s;
	u->has_state = true;
	return 0;
}

OCITREE_EXPORT int ocitree_upper_save_state(struct ocitree_upper *u, struct ocitree_error **err)
{
	const struct ocitree_upper_state *s = &u->state;
	_cleanup_json_ cJSON *j = json_object();
	json_add(j, "ocitreeUpperVersion", json_int64(1));
	json_add(j, "layout", json_string(s->layout ? s->layout : ""));
	json_add(j, "tag", json_string(s->tag ? s->tag : ""));
	cJSON *m = json_object();
	json_add(m, "mediaType", json_string(s->manifest.media_type ? s->manifest.media_type : OCITREE_MT_OCI_MANIFEST));
	json_add(m, "digest", json_string(s->manifest.digest));
	json_add(m, "size", json_int64(s->manifest.size));
	json_add(j, "manifest", m);
	json_add(j, "whiteout", json_string(whiteout_name(s->format.whiteout)));
	json_add(j, "xattrs", json_string(xattrs_name(s->format.xattrs)));
	json_add(j, "owners", json_string(s->format.virtual_owners ? "virtual" : "real"));
	json_add(j, "clearing", json_bool(s->clearing));
	_cleanup_free_ char *text = json_print(j);
	size_t len = strlen(text);
	text = xrealloc(text, len + 2);
	text[len] = '\n';
	text[len + 1] = '\0';
	if (write_file_atomic_at(u->work_fd, UPPER_STATE_FILE, text, len + 1, 0600, err) < 0)
		return ocitree_error_prefix(err, "work directory '%s'", u->work_path);
	u->has_state = true;
	return 0;
}

OCITREE_EXPORT int ocitree_upper_set_state(struct ocitree_upper *u, const struct ocitree_upper_state *st,
				       struct ocitree_error **err)
{
	/* copy before letting go of the old record: st may point into it */
	struct ocitree_upper_state s = {.layout = xstrdup_or_null(st->layout),
					.tag = xstrdup_or_null(st->tag),
					.format = st->format,
					.clearing = st->clearing};
	ocitree_descriptor_copy(&s.manifest, &st->manifest);
	struct ocitree_upper_state old = u->state;
	bool had = u->has_state;
	u->state = s;
	if (ocitree_upper_save_state(u, err) < 0) {
		state_clear(&u->state);
		u->state = old;
		u->has_state = had;
		return -1;
	}
	state_clear(&old);
	return 0;
}

OCITREE_EXPORT const struct ocitree_upper_state *ocitree_upper_get_state(const struct ocitree_upper *u)
{
	return u->has_state ? &u->state : NULL;
}

OCITREE_EXPORT int ocitree_upper_fd(const struct ocitree_upper *u)
{
	return u->fd;
}

OCITREE_EXPORT int ocitree_upper_work_fd(const struct ocitree_upper *u)
{
	return u->work_fd;
}

OCITREE_EXPORT const char *ocitree_upper_path(const struct ocitree_upper *u)
{
	return u->path;
}

OCITREE_EXPORT const char *ocitree_upper_work_path(const struct ocitree_upper *u)
{
	return u->work_path;
}

OCITREE_EXPORT struct ocitree_upper *ocitree_upper_open(const char *upper, const char *work, bool create,
							 struct ocitree_error **err)
{
	_cleanup_free_ char *wdef = work ? NULL : ocitree_upper_default_workdir(upper);
	const char *wpath = work ? work : wdef;
	_cleanup_close_ int fd = open(upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return ocitree_error_set(err, errno, "open upper directory '%s'", upper), NULL;
	if (create && mkdir(wpath, 0700) < 0 && errno != EEXIST)
		return ocitree_error_set(err, errno, "create work directory '%s'", wpath), NULL;
	_cleanup_close_ int wfd = open(wpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (wfd < 0)
		return ocitree_error_set(err, errno, "open work directory '%s'", wpath), NULL;
	struct stat ust, wst;
	if (fstat(fd, &ust) < 0 || fstat(wfd, &wst) < 0)
		return ocitree_error_set(err, errno, "stat upper directory '%s'", upper), NULL;
	if (ust.st_dev != wst.st_dev)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
					  "work directory '%s' is not on the file system of upper directory '%s'",
					  wpath, upper),
		       NULL;
	if (ust.st_ino == wst.st_ino)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "the work directory cannot be the upper directory"),
		       NULL;
	/* a daemon whose mount was just unmounted lets go a moment later */
	int r;
	for (int i = 0; (r = flock(wfd, LOCK_EX | LOCK_NB)) < 0 && errno == EWOULDBLOCK && i < 60; i++) {
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (r < 0) {
		if (errno == EWOULDBLOCK)
			return ocitree_error_setk(err, OCITREE_ERROR_EXISTS,
						  "upper directory '%s' is in use (mounted): work directory '%s' is "
						  "locked",
						  upper, wpath),
			       NULL;
		return ocitree_error_set(err, errno, "lock work directory '%s'", wpath), NULL;
	}
	struct ocitree_upper *u = xcalloc(1, sizeof(*u));
	u->path = xstrdup(upper);
	u->work_path = xstrdup(wpath);
	u->fd = steal_fd(&fd);
	u->work_fd = steal_fd(&wfd);
	if (state_read(u, err) < 0) {
		ocitree_upper_free(u);
		return NULL;
	}
	return u;
}

OCITREE_EXPORT void ocitree_upper_free(struct ocitree_upper *u)
{
	if (!u)
		return;
	if (u->fd >= 0)
		close(u->fd);
	if (u->work_fd >= 0)
		close(u->work_fd); /* drops the lock */
	state_clear(&u->state);
	free(u->path);
	free(u->work_path);
	free(u);
}

OCITREE_EXPORT bool ocitree_upper_is_empty(const struct ocitree_upper *u)
{
	int fd = openat(u->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return false;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return false;
	}
	bool empty = true;
	struct dirent *de;
	while (empty && (de = readdir(d)))
		empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
	closedir(d);
	return empty;
}

/* ---- probing ---- */

OCITREE_EXPORT int ocitree_upper_probe(struct ocitree_upper *u, const struct ocitree_upper_probe_opts *want,
				       struct ocitree_upper_format *out, struct ocitree_error **err)
{
	char name[64];
	upper_tmp_name(name);
	struct ocitree_upper_format f = {0};
	/* whiteouts: a 0/0 character device (unprivileged users may make
	 * those since Linux 5.8) */
	if (mknodat(u->work_fd, name, S_IFCHR | 0600, 0) == 0) {
		f.whiteout = OCITREE_UPPER_WHITEOUT_CHARDEV;
		unlinkat(u->work_fd, name, 0);
	} else {
		f.whiteout = OCITREE_UPPER_WHITEOUT_FILE;
	}
	int fd = openat(u->work_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return ocitree_error_set(err, errno, "create a file in work directory '%s'", u->work_path);
	bool chown_ok = fchown(fd, 1, 1) == 0;
	struct upath p;
	upath_fd(&p, fd);
	bool trusted_ok = setxattr(p.path, "trusted.overlay.ocitree.probe", "1", 1, 0) == 0;
	bool user_ok = setxattr(p.path, "user.overlay.ocitree.probe", "1", 1, 0) == 0;
	close(fd);
	unlinkat(u->work_fd, name, 0);
	if (chown_ok && trusted_ok)
		f.xattrs = OCITREE_UPPER_XATTR_TRUSTED;
	else if (user_ok)
		f.xattrs = OCITREE_UPPER_XATTR_USER;
	else if (trusted_ok)
		f.xattrs = OCITREE_UPPER_XATTR_TRUSTED;
	else
		f.xattrs = OCITREE_UPPER_XATTR_NONE;
	f.virtual_owners = !chown_ok;
	if (want && want->force_whiteout >= 0) {
		if (want->force_whiteout == OCITREE_UPPER_WHITEOUT_CHARDEV && f.whiteout != OCITREE_UPPER_WHITEOUT_CHARDEV)
			return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED,
						  "whiteout=chardev: cannot create a 0/0 character device in '%s'",
						  u->work_path);
		f.whiteout = (enum ocitree_upper_whiteout)want->force_whiteout;
	}
	if (want && want->force_xattrs >= 0) {
		enum ocitree_upper_xattrs x = (enum ocitree_upper_xattrs)want->force_xattrs;
		if ((x == OCITREE_UPPER_XATTR_TRUSTED && !trusted_ok) || (x == OCITREE_UPPER_XATTR_USER && !user_ok))
			return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED,
						  "xattrs=%s: the file system of '%s' refuses them here", xattrs_name(x),
						  u->work_path);
		f.xattrs = x;
	}
	if (f.virtual_owners && f.xattrs == OCITREE_UPPER_XATTR_NONE)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED,
					  "upper directory '%s': an unprivileged user needs a file system with user "
					  "xattrs to keep owners and modes",
					  u->path);
	*out = f;
	return 0;
}

/* ---- clearing ---- */

struct clear_ctx {
	struct ocitree_upper *u;
	ocitree_upper_keep_fn keep;
	void *userdata;
};

/* Strip what only made sense on top of the old image from a directory that
 * stays: private xattrs other than the stat, opaque marker files. */
static void strip_dir(struct clear_ctx *c, int dirfd)
{
	const struct ocitree_upper_format *f = &c->u->state.format;
	char n[UPPER_XATTR_NAME_MAX];
	struct upath p;
	upath_fd(&p, dirfd);
	if (upper_xattr_name(f, UPPER_X_OPAQUE, n))
		upath_removexattr(&p, n);
	if (upper_xattr_name(f, UPPER_X_ORIGIN, n))
		upath_removexattr(&p, n);
}

static int move_out(struct clear_ctx *c, int dirfd, const char *name)
{
	char tmp[64];
	upper_tmp_name(tmp);
	if (renameat(dirfd, name, c->u->work_fd, tmp) < 0)
		return errno == ENOENT ? 0 : -1;
	return upper_rm_rf_at(c->u->work_fd, tmp);
}

/* Returns 1 when something below dirfd was kept, 0 when it is empty now. */
static int clear_dir(struct clear_ctx *c, int dirfd)
{
	int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		GROW(names, cap, n + 1);
		names[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	int kept = 0, ret = 0;
	/* a directory that stays keeps its times: emptying it is no change */
	struct stat dst;
	bool have_times = fstat(dirfd, &dst) == 0;
	for (size_t i = 0; i < n && ret == 0; i++) {
		struct stat st;
		if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				ret = -1;
			continue;
		}
		if (S_ISDIR(st.st_mode) && c->keep) {
			int sub = openat(dirfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				ret = -1;
				continue;
			}
			int r = clear_dir(c, sub);
			if (r > 0)
				strip_dir(c, sub);
			close(sub);
			if (r < 0)
				ret = -1;
			else if (r > 0)
				kept = 1;
			else if (move_out(c, dirfd, names[i]) < 0)
				ret = -1;
			continue;
		}
		if (!S_ISDIR(st.st_mode) && !upper_is_whiteout(&st) && !upper_name_reserved(names[i]) && c->keep &&
		    c->keep(dirfd, names[i], &st, c->userdata)) {
			/* a full copy now: the new image has its data below */
			const struct ocitree_upper_format *f = &c->u->state.format;
			char xn[UPPER_XATTR_NAME_MAX];
			struct upath p;
			upath_at(&p, dirfd, names[i]);
			if (upper_xattr_name(f, UPPER_X_ORIGIN, xn))
				upath_removexattr(&p, xn);
			kept = 1;
			continue;
		}
		if (move_out(c, dirfd, names[i]) < 0)
			ret = -1;
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	/* not best effort: a directory that stays is in the next commit, and
	 * with the time of the clearing as its mtime it would carry a change
	 * nobody made */
	if (have_times && ret == 0) {
		struct timespec ts[2] = {dst.st_atim, dst.st_mtim};
		if (futimens(dirfd, ts) < 0)
			ret = -1;
	}
	return ret < 0 ? -1 : kept;
}

OCITREE_EXPORT void ocitree_upper_remove_stale(struct ocitree_upper *u)
{
	int dfd = openat(u->work_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d)))
		if (str_has_prefix(de->d_name, UPPER_TMP_PREFIX))
			upper_rm_rf_at(u->work_fd, de->d_name);
	closedir(d);
}

OCITREE_EXPORT int ocitree_upper_clear(struct ocitree_upper *u, ocitree_upper_keep_fn keep, void *userdata,
				       struct ocitree_error **err)
{
	struct clear_ctx c = {u, keep, userdata};
	if (clear_dir(&c, u->fd) < 0)
		return ocitree_error_set(err, errno, "empty upper directory '%s'", u->path);
	strip_dir(&c, u->fd);
	ocitree_upper_remove_stale(u);
	u->state.clearing = false;
	return ocitree_upper_save_state(u, err);
}

OCITREE_EXPORT int ocitree_upper_finish_clear(struct ocitree_upper *u, struct ocitree_error **err)
{
	if (!u->state.clearing)
		return 0;
	log_info("upper directory '%s': finishing an interrupted commit --clear", u->path);
	return ocitree_upper_clear(u, NULL, NULL, err);
}

OCITREE_EXPORT struct ocitree_image *ocitree_upper_base_image(struct ocitree_upper *u, struct ocitree_layout *l,
							      struct ocitree_error **err)
{
	const struct ocitree_descriptor *md = &u->state.manifest;
	if (!u->has_state)
		return ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND,
					  "upper directory '%s' has no record of its image (no %s in '%s')", u->path,
					  UPPER_STATE_FILE, u->work_path),
		       NULL;
	if (ocitree_media_type_kind(md->media_type) != OCITREE_DOC_MANIFEST)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "image %s: media type '%s' is not a manifest",
					  md->digest, md->media_type),
		       NULL;
	struct ocitree_image *img = xcalloc(1, sizeof(*img));
	img->layout = l;
	img->tag = xstrdup_or_null(u->state.tag);
	ocitree_descriptor_copy(&img->manifest_desc, md);
	if (image_load(img, err) < 0) {
		ocitree_image_free(img);
		return ocitree_error_prefix(err, "the image of upper directory '%s'", u->path), NULL;
	}
	return img;
}
