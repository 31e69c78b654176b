/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An OCI image layout on disk (ocitree/layout.h): opening and creating
 * one, index.json read and replaced under the layout lock, tag names, and
 * the content-addressed blob store (reading, writing through a hashing
 * writer, the shared blobs lock).  Ownership of new files follows the
 * layout directory's when run as root, as umoci does.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "json.h"
#include "layout-internal.h"
#include "sha256-pair.h"
#include "ocitree/layout.h"

#define OCI_LAYOUT_FILE "oci-layout"
#define INDEX_FILE "index.json"

OCITREE_EXPORT const char *ocitree_layout_path(const struct ocitree_layout *l)
{
	return l->path;
}

OCITREE_EXPORT int ocitree_layout_dirfd(const struct ocitree_layout *l)
{
	return l->dirfd;
}

static int check_oci_layout(int dirfd, struct ocitree_error **err)
{
	_cleanup_buf_ struct buf b = BUF_INIT;
	if (read_file_at(dirfd, OCI_LAYOUT_FILE, 65536, &b, "layout file", err) < 0)
		return -1;
	_cleanup_json_ cJSON *j = json_parse_object(b.data, b.len, "'" OCI_LAYOUT_FILE "'", err);
	if (!j)
		return -1;
	const char *v;
	if (json_get_string(j, "imageLayoutVersion", true, &v, "'" OCI_LAYOUT_FILE "'", err) < 0)
		return -1;
	if (!str_has_prefix(v, "1."))
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED,
					  "'" OCI_LAYOUT_FILE "': unsupported imageLayoutVersion '%s'", v);
	return 0;
}

OCITREE_EXPORT struct ocitree_layout *ocitree_layout_open(const char *path, struct ocitree_error **err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND,
						  "open layout '%s': No such file or directory", path),
			       NULL;
		return ocitree_error_set(err, errno, "open layout '%s'", path), NULL;
	}
	if (check_oci_layout(fd, err) < 0)
		return ocitree_error_prefix(err, "open layout '%s'", path), NULL;
	struct stat st;
	if (fstatat(fd, "blobs", &st, 0) < 0 || !S_ISDIR(st.st_mode))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "open layout '%s': missing 'blobs' directory",
					  path),
		       NULL;
	struct ocitree_layout *l = xcalloc(1, sizeof(*l));
	l->dirfd = steal_fd(&fd);
	l->blobs_lock_fd = -1;
	l->path = xstrdup(path);
	/* index.json is read again by each operation; reading it now reports a
	 * broken layout before any work starts, and the first operation takes
	 * this reading if the file has not been replaced since (a second read
	 * and parse at the start of every command) */
	struct stat ist;
	bool have_st = fstatat(l->dirfd, INDEX_FILE, &ist, 0) == 0; /* before the read: a later file differs */
	struct ocitree_index *idx = ocitree_layout_read_index(l, err);
	if (!idx) {
		ocitree_layout_free(l);
		return NULL;
	}
	if (have_st) {
		l->opened_index = idx;
		l->opened_index_st = ist;
	} else {
		ocitree_index_free(idx);
	}
	return l;
}

OCITREE_EXPORT void ocitree_layout_free(struct ocitree_layout *l)
{
	if (!l)
		return;
	if (l->blobs_lock_fd >= 0)
		close(l->blobs_lock_fd);
	if (l->dirfd >= 0)
		close(l->dirfd);
	free(l->path);
	ocitree_index_free(l->opened_index);
	free(l);
}

static bool dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return false;
	struct dirent *e;
	bool empty = true;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			empty = false;
			break;
		}
	}
	closedir(d);
	return empty;
}

static void remove_tree_at(int parent, const char *name)
{
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		DIR *d = fdopendir(fd);
		if (d) {
			struct dirent *e;
			while ((e = readdir(d))) {
				if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
					continue;
				if (unlinkat(dirfd(d), e->d_name, 0) < 0 && (errno == EISDIR || errno == EPERM))
					remove_tree_at(dirfd(d), e->d_name);
			}
			closedir(d);
		} else {
			close(fd);
		}
	}
	unlinkat(parent, name, AT_REMOVEDIR);
}

OCITREE_EXPORT int ocitree_layout_create(const char *path, struct ocitree_error **err)
{
	struct stat st;
	if (*path == '\0')
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "create layout: empty path");
	if (lstat(path, &st) == 0 && !(S_ISDIR(st.st_mode) && dir_is_empty(path)))
		return ocitree_error_setk(err, OCITREE_ERROR_EXISTS, "create layout '%s': path already exists", path);

	/* build it beside its final place, then rename it there in one step */
	_cleanup_free_ char *pcopy = xstrdup(path), *ncopy = xstrdup(path);
	const char *parent = dirname(pcopy);
	const char *base = basename(ncopy);
	_cleanup_close_ int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (pfd < 0)
		return ocitree_error_set(err, errno, "create layout '%s': open parent directory", path);
	_cleanup_free_ char *tmp = NULL;
	for (int i = 0; i < 100 && !tmp; i++) {
		char *t = xasprintf(OCITREE_TMP_PREFIX "layout.%d.%d", (int)getpid(), i);
		if (mkdirat(pfd, t, 0755) == 0)
			tmp = t;
		else {
			int e = errno;
			free(t);
			if (e != EEXIST)
				return ocitree_error_set(err, e, "create layout '%s'", path);
		}
	}
	if (!tmp)
		return ocitree_error_set(err, EEXIST, "create layout '%s'", path);

	_cleanup_close_ int tfd = openat(pfd, tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	static const char layout_json[] = "{\"imageLayoutVersion\":\"" OCITREE_MT_OCI_LAYOUT_VERSION "\"}\n";
	_cleanup_free_ char *index_json = NULL;
	struct ocitree_index *idx = ocitree_index_new();
	index_json = ocitree_index_to_json(idx);
	ocitree_index_free(idx);
	if (tfd < 0 || mkdirat(tfd, "blobs", 0755) < 0 || mkdirat(tfd, "blobs/sha256", 0755) < 0) {
		ocitree_error_set(err, errno, "create layout '%s'", path);
		goto fail;
	}
	if (write_file_atomic_at(tfd, OCI_LAYOUT_FILE, layout_json, strlen(layout_json), 0644, err) < 0 ||
	    write_file_atomic_at(tfd, INDEX_FILE, index_json, strlen(index_json), 0644, err) < 0) {
		ocitree_error_prefix(err, "create layout '%s'", path);
		goto fail;
	}
	if (fsync_dir_at(tfd, "blobs") < 0 || fsync(tfd) < 0) {
		ocitree_error_set(err, errno, "create layout '%s': sync", path);
		goto fail;
	}
	if (renameat(pfd, tmp, pfd, base) < 0) {
		if (errno == ENOTEMPTY || errno == EEXIST)
			ocitree_error_setk(err, OCITREE_ERROR_EXISTS, "create layout '%s': path already exists", path);
		else
			ocitree_error_set(err, errno, "create layout '%s'", path);
		goto fail;
	}
	/* the layout is complete and in place, but its name survives a crash
	 * only once the parent directory is on disk: say so when that fails
	 * (and leave the layout, which is whole; removing it would need the
	 * same sync).  EINVAL: a file system that cannot sync directories. */
	if (fsync(pfd) < 0 && errno != EINVAL)
		return ocitree_error_set(err, errno, "create layout '%s': sync directory '%s'", path, parent);
	return 0;
fail:
	remove_tree_at(pfd, tmp);
	return -1;
}

/* Is index.json still the file st describes?  It is replaced by rename,
 * never written in place (see ocitree_layout_update_index). */
static bool index_unchanged(const struct ocitree_layout *l, const struct stat *st)
{
	struct stat now;
	return fstatat(l->dirfd, INDEX_FILE, &now, 0) == 0 && now.st_dev == st->st_dev && now.st_ino == st->st_ino &&
	       now.st_size == st->st_size && now.st_ctim.tv_sec == st->st_ctim.tv_sec &&
	       now.st_ctim.tv_nsec == st->st_ctim.tv_nsec && now.st_mtim.tv_sec == st->st_mtim.tv_sec &&
	       now.st_mtim.tv_nsec == st->st_mtim.tv_nsec;
}

OCITREE_EXPORT struct ocitree_index *ocitree_layout_read_index(struct ocitree_layout *l, struct ocitree_error **err)
{
	if (l->opened_index) {
		struct ocitree_index *idx = l->opened_index;
		l->opened_index = NULL;
		if (index_unchanged(l, &l->opened_index_st))
			return idx;
		ocitree_index_free(idx);
	}
	_cleanup_buf_ struct buf b = BUF_INIT;
	if (read_file_at(l->dirfd, INDEX_FILE, OCITREE_MAX_INDEX_SIZE, &b, "index", err) < 0)
		return ocitree_error_prefix(err, "layout '%s'", l->path), NULL;
	struct ocitree_index *idx = ocitree_index_parse(b.data, b.len, err);
	if (!idx)
		return ocitree_error_prefix(err, "layout '%s': '" INDEX_FILE "'", l->path), NULL;
	return idx;
}

/* The owner new files in the layout get: as umoci >= 0.5.1 does
 * (oci/cas/dir/dir.go, fchown), a command run as root gives them to the
 * owner of the layout directory, so that "sudo ocitree repack" does not
 * leave files the layout's user cannot remove; -1 (no change) otherwise. */
static void layout_owner(const struct ocitree_layout *l, uid_t *uid, gid_t *gid)
{
	struct stat st;
	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	if (geteuid() != 0 || fstat(l->dirfd, &st) < 0)
		return;
	if (st.st_uid != geteuid())
		*uid = st.st_uid;
	if (st.st_gid != getegid())
		*gid = st.st_gid;
}

static int give_to_layout_owner(const struct ocitree_layout *l, int dirfd, const char *name,
				struct ocitree_error **err)
{
	uid_t uid;
	gid_t gid;
	layout_owner(l, &uid, &gid);
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
		return ocitree_error_set(err, errno, "give '%s' to the owner of layout '%s'", name, l->path);
	return 0;
}

static int lock_fd(int fd, int op, const char *what, struct ocitree_error **err)
{
	if (flock(fd, op | LOCK_NB) == 0)
		return 0;
	if (errno != EWOULDBLOCK)
		return ocitree_error_set(err, errno, "lock %s", what);
	log_info("waiting for the lock on %s", what);
	while (flock(fd, op) < 0) {
		if (errno != EINTR)
			return ocitree_error_set(err, errno, "lock %s", what);
	}
	return 0;
}

static bool digest_in_index(const struct ocitree_index *idx, const char *digest)
{
	for (size_t i = 0; i < idx->n_manifests; i++)
		if (strcmp(idx->manifests[i].digest, digest) == 0)
			return true;
	return false;
}

OCITREE_EXPORT int ocitree_layout_update_index(struct ocitree_layout *l, ocitree_index_update_fn fn, void *userdata,
					       struct ocitree_error **err)
{
	_cleanup_close_ int lfd = openat(l->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (lfd < 0)
		return ocitree_error_set(err, errno, "open layout '%s'", l->path);
	if (lock_fd(lfd, LOCK_EX, "layout", err) < 0)
		return ocitree_error_prefix(err, "update layout '%s'", l->path);
	struct ocitree_index *before = ocitree_layout_read_index(l, err);
	if (!before)
		return -1;
	struct ocitree_index *idx = ocitree_layout_read_index(l, err);
	if (!idx) {
		ocitree_index_free(before);
		return -1;
	}
	int r = fn(idx, userdata, err);
	/* a new reference must point at a blob that is there */
	for (size_t i = 0; r == 0 && i < idx->n_manifests; i++) {
		const char *d = idx->manifests[i].digest;
		if (!digest_in_index(before, d) && !ocitree_blob_exists(l, d))
			r = ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND, "update '" INDEX_FILE "': blob %s is missing",
					       d);
	}
	if (r == 0) {
		_cleanup_free_ char *json = ocitree_index_to_json(idx);
		uid_t uid;
		gid_t gid;
		layout_owner(l, &uid, &gid);
		r = write_file_atomic_owned_at(l->dirfd, INDEX_FILE, json, strlen(json), 0644, uid, gid, err);
	}
	ocitree_index_free(before);
	ocitree_index_free(idx);
	if (r < 0)
		return ocitree_error_prefix(err, "layout '%s'", l->path);
	return 0;
}

OCITREE_EXPORT int ocitree_tag_check(const char *tag, struct ocitree_error **err)
{
	size_t n = strlen(tag);
	if (n == 0)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid tag '': tag is empty");
	if (n > 128)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid tag '%.40s...': longer than 128 characters",
					  tag);
	if (tag[0] == '.' || tag[0] == '-')
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "invalid tag '%s': must not start with '%c'", tag,
					  tag[0]);
	for (size_t i = 0; i < n; i++) {
		char c = tag[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
						  "invalid tag '%s': only letters, digits, '.', '_' and '-' are allowed",
						  tag);
	}
	return 0;
}

/* ---- blobs ---- */

char *blob_path(const char *digest)
{
	const char *colon = strchr(digest, ':');
	return xasprintf("blobs/%.*s/%s", (int)(colon - digest), digest, colon + 1);
}

OCITREE_EXPORT bool ocitree_blob_exists(struct ocitree_layout *l, const char *digest)
{
	if (ocitree_digest_check(digest, NULL) < 0)
		return false;
	_cleanup_free_ char *p = blob_path(digest);
	struct stat st;
	return fstatat(l->dirfd, p, &st, 0) == 0 && S_ISREG(st.st_mode);
}

OCITREE_EXPORT int ocitree_blob_open_fd(struct ocitree_layout *l, const char *digest, struct ocitree_error **err)
{
	if (ocitree_digest_check(digest, err) < 0)
		return -1;
	_cleanup_free_ char *p = blob_path(digest);
	_cleanup_close_ int fd = openat(l->dirfd, p, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT)
			return ocitree_error_setk(err, OCITREE_ERROR_NOT_FOUND, "blob %s is missing", digest);
		return ocitree_error_set(err, errno, "open blob %s", digest);
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return ocitree_error_set(err, errno, "stat blob %s", digest);
	if (!S_ISREG(st.st_mode))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "blob %s is not a regular file", digest);
	return steal_fd(&fd);
}

const uint8_t *blob_map(int fd, int64_t size, int advice, size_t *len)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0)
		return NULL;
	uint64_t n = size >= 0 && size < st.st_size ? (uint64_t)size : (uint64_t)st.st_size;
	if (!n || n > SIZE_MAX)
		return NULL;
	void *p = mmap(NULL, (size_t)n, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, (size_t)n, advice);
	*len = (size_t)n;
	return p;
}

struct ocitree_blob_reader {
	int fd;
	struct ocitree_hasher *hasher;
	char digest[OCITREE_DIGEST_MAX];
	int64_t size;
	int64_t off;
	bool done;
	/* blob_reader_map_next(): the whole blob, mapped on first use */
	const uint8_t *map;
	size_t map_len;
	bool map_failed;
	bool outside; /* blob_reader_hash_outside() */
};

OCITREE_EXPORT struct ocitree_blob_reader *ocitree_blob_reader_open(struct ocitree_layout *l, const char *digest,
								    int64_t size, struct ocitree_error **err)
{
	int fd = ocitree_blob_open_fd(l, digest, err);
	if (fd < 0)
		return NULL;
	/* read front to back, once */
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	struct ocitree_blob_reader *r = xcalloc(1, sizeof(*r));
	r->fd = fd;
	_cleanup_free_ char *alg = xstrndup(digest, (size_t)(strchr(digest, ':') - digest));
	r->hasher = ocitree_hasher_new(alg);
	snprintf(r->digest, sizeof(r->digest), "%s", digest);
	r->size = size;
	return r;
}

static ssize_t blob_reader_end(struct ocitree_blob_reader *r, bool extra, struct ocitree_error **err);

OCITREE_EXPORT ssize_t ocitree_blob_reader_read(struct ocitree_blob_reader *r, void *buf, size_t len,
						struct ocitree_error **err)
{
	if (r->done)
		return 0;
	if (r->outside) {
		/* hashed by the caller, and blob_reader_check_outside()
		 * checks the end */
		size_t left = r->map_len - (size_t)r->off;
		if (!left) {
			r->done = true;
			return 0;
		}
		if (len > left)
			len = left;
		ssize_t k = pread_full(r->fd, buf, len, (off_t)r->off);
		if (k < 0)
			return ocitree_error_set(err, errno, "read blob %s", r->digest);
		if (k == 0)
			return ocitree_error_setk(err, OCITREE_ERROR_DIGEST,
						  "blob %s is %jd bytes, smaller than its declared size %jd: verified "
						  "reader size mismatch",
						  r->digest, (intmax_t)r->off, (intmax_t)r->size);
		r->off += k;
		return k;
	}
	/* Like umoci's verified reader (pkg/hardening/verified_reader.go):
	 * hash at most the declared size, then look for one byte more; at the
	 * end the digest is checked first and the length after, so a blob
	 * whose declared bytes are wrong reports its digest however long it
	 * is, and a lying descriptor never makes us hash an unbounded file. */
	bool extra = false;
	ssize_t n;
	if (r->size >= 0 && r->off >= r->size) {
		char one;
		do
			n = read(r->fd, &one, 1);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return ocitree_error_set(err, errno, "read blob %s", r->digest);
		extra = n > 0;
		n = 0;
	} else {
		if (r->size >= 0 && (int64_t)len > r->size - r->off)
			len = (size_t)(r->size - r->off);
		do
			n = read(r->fd, buf, len);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return ocitree_error_set(err, errno, "read blob %s", r->digest);
	}
	if (n > 0) {
		r->off += n;
		ocitree_hasher_update(r->hasher, buf, (size_t)n);
		return n;
	}
	return blob_reader_end(r, extra, err);
}

static int blob_mismatch(const struct ocitree_blob_reader *r, const char *got, bool extra, int64_t off,
			 struct ocitree_error **err);

/* At the end of the declared bytes: the digest first, then the size. */
static ssize_t blob_reader_end(struct ocitree_blob_reader *r, bool extra, struct ocitree_error **err)
{
	char got[OCITREE_DIGEST_MAX];
	ocitree_hasher_final(r->hasher, got);
	if (blob_mismatch(r, got, extra, r->off, err) < 0)
		return -1;
	r->done = true;
	return 0;
}

static int blob_mismatch(const struct ocitree_blob_reader *r, const char *got, bool extra, int64_t off,
			 struct ocitree_error **err)
{
	if (strcmp(got, r->digest) != 0)
		return ocitree_error_setk(err, OCITREE_ERROR_DIGEST,
					  "blob %s does not match its digest (content is %s): verified reader digest mismatch",
					  r->digest, got);
	if (extra)
		return ocitree_error_setk(err, OCITREE_ERROR_DIGEST,
					  "blob %s is larger than its declared size %jd: verified reader size mismatch",
					  r->digest, (intmax_t)r->size);
	if (r->size >= 0 && off != r->size)
		return ocitree_error_setk(
			err, OCITREE_ERROR_DIGEST,
			"blob %s is %jd bytes, smaller than its declared size %jd: verified reader size mismatch", r->digest,
			(intmax_t)off, (intmax_t)r->size);
	return 0;
}

/* The layer reader's fetch thread copied every compressed byte out of the
 * page cache (read()) for the inflater to read once: mapped, the inflater
 * reads the page cache itself.  Pages are faulted in ahead, a range per
 * call (MADV_POPULATE_READ), so that the inflater does not take a page
 * fault per few pages (they are dear in this kind of guest), and a file
 * that shrank since fstat() fails there with EFAULT, not with a SIGBUS
 * in the inflater.  Blobs are written once and renamed into place: only
 * a truncation in place by another process, between that call and the
 * inflater's reading of the range, could still raise one. */
static bool blob_reader_map(struct ocitree_blob_reader *r)
{
	if (r->map)
		return true;
	/* the declared size bounds what is hashed, as in the read form; a
	 * blob shorter than declared is read, for the read form's error */
	if (r->map_failed || r->off != 0 || !(r->map = blob_map(r->fd, r->size, MADV_SEQUENTIAL, &r->map_len))) {
		r->map_failed = true;
		return false;
	}
	if (r->size >= 0 && r->map_len < (uint64_t)r->size) {
		munmap((void *)r->map, r->map_len);
		r->map = NULL;
		r->map_failed = true;
		return false;
	}
	return true;
}

static int blob_populate(const struct ocitree_blob_reader *r, const uint8_t *p, size_t n, struct ocitree_error **err)
{
#ifdef MADV_POPULATE_READ
	if (madvise((void *)p, n, MADV_POPULATE_READ) < 0 && errno != EINVAL && errno != EAGAIN && errno != EINTR)
		return ocitree_error_set(err, errno == EFAULT ? EIO : errno, "read blob %s (did it shrink?)",
					 r->digest);
#else
	(void)r, (void)p, (void)n, (void)err;
#endif
	return 0;
}

ssize_t blob_reader_map_next(struct ocitree_blob_reader *r, const void **data, size_t len,
			     struct ocitree_error **err)
{
	if (r->done)
		return 0;
	if (!blob_reader_map(r))
		return -2;
	if ((size_t)r->off >= r->map_len && r->outside) {
		/* blob_reader_check_outside() checks the end */
		r->done = true;
		return 0;
	}
	if ((size_t)r->off >= r->map_len) {
		/* one byte more than declared is an error, as in the read form */
		char one;
		ssize_t n;
		do
			n = pread(r->fd, &one, 1, r->off);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return ocitree_error_set(err, errno, "read blob %s", r->digest);
		return blob_reader_end(r, r->size >= 0 && n > 0, err);
	}
	size_t n = r->map_len - (size_t)r->off;
	if (n > len)
		n = len;
	const uint8_t *p = r->map + r->off;
	if (blob_populate(r, p, n, err) < 0)
		return -1;
	if (!r->outside)
		ocitree_hasher_update(r->hasher, p, n);
	r->off += (int64_t)n;
	*data = p;
	return (ssize_t)n;
}

const uint8_t *blob_reader_hash_outside(struct ocitree_blob_reader *r, size_t *len)
{
	if (strncmp(r->digest, "sha256:", 7) != 0 || !blob_reader_map(r))
		return NULL;
	r->outside = true;
	*len = r->map_len;
	return r->map;
}

int blob_reader_check_outside(struct ocitree_blob_reader *r, struct sha256p *s, size_t hashed,
			      struct ocitree_error **err)
{
	/* what the caller has not hashed (nothing, normally) */
	if (hashed < r->map_len) {
		if (blob_populate(r, r->map + hashed, r->map_len - hashed, err) < 0)
			return -1;
		sha256p_update(s, r->map + hashed, r->map_len - hashed);
	}
	char got[OCITREE_DIGEST_MAX];
	sha256p_final_digest(s, got);
	/* one byte more than declared is an error, as in the read form */
	char one;
	ssize_t n;
	do
		n = pread(r->fd, &one, 1, (off_t)r->map_len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return ocitree_error_set(err, errno, "read blob %s", r->digest);
	return blob_mismatch(r, got, r->size >= 0 && n > 0, (int64_t)r->map_len, err);
}

int blob_reader_fd(const struct ocitree_blob_reader *r)
{
	return r->fd;
}

void blob_reader_unmap(struct ocitree_blob_reader *r, const void *data, size_t len)
{
	if (!r->map || !len)
		return;
	madvise_within(data, len, MADV_DONTNEED);
}

OCITREE_EXPORT int64_t ocitree_blob_reader_offset(const struct ocitree_blob_reader *r)
{
	return r->off;
}

OCITREE_EXPORT void ocitree_blob_reader_free(struct ocitree_blob_reader *r)
{
	if (!r)
		return;
	if (r->map)
		munmap((void *)r->map, r->map_len);
	close(r->fd);
	ocitree_hasher_free(r->hasher);
	free(r);
}

OCITREE_EXPORT int ocitree_blob_read(struct ocitree_layout *l, const char *digest, int64_t size, size_t max,
				     char **data, size_t *len, struct ocitree_error **err)
{
	if (size >= 0 && (uint64_t)size > max)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "blob %s is too large (%jd bytes, limit %zu)",
					  digest, (intmax_t)size, max);
	struct ocitree_blob_reader *r = ocitree_blob_reader_open(l, digest, size, err);
	if (!r)
		return -1;
	_cleanup_buf_ struct buf b = BUF_INIT;
	int ret = 0;
	for (;;) {
		buf_reserve(&b, 65536);
		ssize_t n = ocitree_blob_reader_read(r, b.data + b.len, 65536, err);
		if (n < 0) {
			ret = -1;
			break;
		}
		if (n == 0)
			break;
		b.len += (size_t)n;
		b.data[b.len] = '\0';
		if (b.len > max) {
			ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "blob %s is too large (limit %zu bytes)",
						 digest, max);
			break;
		}
	}
	ocitree_blob_reader_free(r);
	if (ret < 0)
		return -1;
	if (len)
		*len = b.len;
	*data = buf_steal(&b);
	return 0;
}

OCITREE_EXPORT struct ocitree_manifest *ocitree_blob_read_manifest(struct ocitree_layout *l,
								   const struct ocitree_descriptor *d,
								   struct ocitree_error **err)
{
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	if (ocitree_blob_read(l, d->digest, d->size, OCITREE_MAX_MANIFEST_SIZE, &data, &len, err) < 0)
		return ocitree_error_prefix(err, "read manifest %s", d->digest), NULL;
	struct ocitree_manifest *m = ocitree_manifest_parse(data, len, err);
	if (!m)
		return ocitree_error_prefix(err, "blob %s", d->digest), NULL;
	return m;
}

OCITREE_EXPORT struct ocitree_index *ocitree_blob_read_index(struct ocitree_layout *l,
							     const struct ocitree_descriptor *d,
							     struct ocitree_error **err)
{
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	if (ocitree_blob_read(l, d->digest, d->size, OCITREE_MAX_INDEX_SIZE, &data, &len, err) < 0)
		return ocitree_error_prefix(err, "read image index %s", d->digest), NULL;
	struct ocitree_index *idx = ocitree_index_parse(data, len, err);
	if (!idx)
		return ocitree_error_prefix(err, "blob %s", d->digest), NULL;
	return idx;
}

OCITREE_EXPORT struct ocitree_config *ocitree_blob_read_config(struct ocitree_layout *l,
							       const struct ocitree_descriptor *d,
							       struct ocitree_error **err)
{
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	if (ocitree_blob_read(l, d->digest, d->size, OCITREE_MAX_CONFIG_SIZE, &data, &len, err) < 0)
		return ocitree_error_prefix(err, "read config %s", d->digest), NULL;
	struct ocitree_config *c = ocitree_config_parse(data, len, err);
	if (!c)
		return ocitree_error_prefix(err, "blob %s", d->digest), NULL;
	return c;
}

OCITREE_EXPORT int ocitree_layout_hold_blobs(struct ocitree_layout *l, struct ocitree_error **err)
{
	if (l->blobs_lock_fd >= 0)
		return 0;
	int fd = openat(l->dirfd, "blobs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return ocitree_error_set(err, errno, "open '%s/blobs'", l->path);
	if (lock_fd(fd, LOCK_SH, "blobs", err) < 0) {
		close(fd);
		return -1;
	}
	l->blobs_lock_fd = fd;
	return 0;
}

struct ocitree_blob_writer {
	struct ocitree_layout *layout;
	int dirfd; /* blobs/sha256 */
	int fd;
	char *tmpname;
	struct ocitree_hasher *hasher;
	int64_t size;
};

OCITREE_EXPORT struct ocitree_blob_writer *ocitree_blob_writer_new(struct ocitree_layout *l,
								   struct ocitree_error **err)
{
	if (ocitree_layout_hold_blobs(l, err) < 0)
		return NULL;
	_cleanup_close_ int dfd = openat(l->dirfd, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 && errno == ENOENT) {
		if (mkdirat(l->dirfd, "blobs/sha256", 0755) < 0 && errno != EEXIST)
			return ocitree_error_set(err, errno, "create '%s/blobs/sha256'", l->path), NULL;
		if (give_to_layout_owner(l, l->dirfd, "blobs/sha256", err) < 0)
			return NULL;
		dfd = openat(l->dirfd, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (dfd < 0)
		return ocitree_error_set(err, errno, "open '%s/blobs/sha256'", l->path), NULL;
	_cleanup_free_ char *name = NULL;
	int fd = open_tmpfile_at(dfd, "blob", &name, err);
	if (fd < 0)
		return NULL;
	if (give_to_layout_owner(l, dfd, name, err) < 0) {
		unlinkat(dfd, name, 0);
		close(fd);
		return NULL;
	}
	struct ocitree_blob_writer *w = xcalloc(1, sizeof(*w));
	w->layout = l;
	w->dirfd = steal_fd(&dfd);
	w->fd = fd;
	w->tmpname = steal_pointer(&name);
	w->hasher = ocitree_hasher_new("sha256");
	return w;
}

OCITREE_EXPORT int ocitree_blob_writer_write(struct ocitree_blob_writer *w, const void *data, size_t len,
					     struct ocitree_error **err)
{
	if (write_all(w->fd, data, len) < 0)
		return ocitree_error_set(err, errno, "write blob in '%s'", w->layout->path);
	ocitree_hasher_update(w->hasher, data, len);
	w->size += (int64_t)len;
	return 0;
}

OCITREE_EXPORT int ocitree_blob_writer_commit(struct ocitree_blob_writer *w, char digest[OCITREE_DIGEST_MAX],
					      int64_t *size, struct ocitree_error **err)
{
	char d[OCITREE_DIGEST_MAX];
	ocitree_hasher_final(w->hasher, d);
	if (fsync(w->fd) < 0)
		return ocitree_error_set(err, errno, "sync blob %s", d);
	const char *hex = ocitree_digest_hex(d);
	struct stat st;
	if (fstatat(w->dirfd, hex, &st, 0) == 0 && S_ISREG(st.st_mode) && st.st_size == w->size) {
		/* already there (content addressed): keep the existing file, which
		 * readers may have open */
		unlinkat(w->dirfd, w->tmpname, 0);
	} else {
		if (renameat(w->dirfd, w->tmpname, w->dirfd, hex) < 0)
			return ocitree_error_set(err, errno, "store blob %s", d);
		if (fsync(w->dirfd) < 0 && errno != EINVAL)
			return ocitree_error_set(err, errno, "sync blob directory");
	}
	free(w->tmpname);
	w->tmpname = NULL;
	if (digest)
		memcpy(digest, d, sizeof(d));
	if (size)
		*size = w->size;
	return 0;
}

OCITREE_EXPORT void ocitree_blob_writer_free(struct ocitree_blob_writer *w)
{
	if (!w)
		return;
	if (w->tmpname) {
		unlinkat(w->dirfd, w->tmpname, 0);
		free(w->tmpname);
	}
	close(w->fd);
	close(w->dirfd);
	ocitree_hasher_free(w->hasher);
	free(w);
}

OCITREE_EXPORT int ocitree_blob_put(struct ocitree_layout *l, const void *data, size_t len,
				    char digest[OCITREE_DIGEST_MAX], struct ocitree_error **err)
{
	struct ocitree_blob_writer *w = ocitree_blob_writer_new(l, err);
	if (!w)
		return -1;
	int r = ocitree_blob_writer_write(w, data, len, err);
	if (r == 0)
		r = ocitree_blob_writer_commit(w, digest, NULL, err);
	ocitree_blob_writer_free(w);
	return r;
}
