/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: what reads an upper directory that a user, or a crash, may
 * have left in any state: the record in the work directory
 * (ocitree_upper_open), the copy-up journal of hardlinked files, the probe,
 * the private xattrs (upper_meta_read, the virtual stat), finishing an
 * interrupted commit --clear, and commit, which walks the tree, reads the
 * image for metacopy data, writes a layer and may empty the directory.
 *
 * The input is a program that builds an upper directory and its work
 * directory in a scratch directory; they are then committed on top of a
 * layout made once at start (image "base": one layer with directories,
 * files, a hardlinked pair and a symlink).
 *
 *   byte 0   flags: bits 0-1 the record's xattrs (0 none, 1 and 3 trusted,
 *            2 user), bit 2 .wh. file whiteouts, bit 3 virtual owners, bit 4
 *            commit --clear, bit 5 keep some files when clearing (as a live
 *            mount keeps open ones), bits 6-7 compression (none, gzip, zstd,
 *            gzip)
 *   then     records: an op byte (modulo 16) and its operands
 *      0 mkdir    P NAME MODE
 *      1 file     P NAME MODE DATA
 *      2 symlink  P NAME TARGET
 *      3 link     P NAME E              a hardlink to object E
 *      4 whiteout P NAME                a 0/0 character device
 *      5 node     P NAME KIND MAJ MIN   KIND%4: char, block, fifo, socket
 *      6 xattr    E KEY VALUE           KEY: see xattr_name()
 *      7 truncate E SIZE3               a regular file, sparse, < 1 MiB
 *      8 chown    E UID GID
 *      9 record   BYTES                 the record, as it is
 *     10 field    F VALUE               one field of the record ((F&127)%11; with
 *                                       F & 0x80 VALUE is raw JSON, else a
 *                                       string)
 *     11 journal  BYTES                 the copy-up journal, as it is
 *     12 workfile NAME KIND BYTES       in the work directory: KIND%4 a
 *                                       file, a fifo, a directory (mode 0)
 *                                       holding a file, a symlink to BYTES
 *     13 chmod    E MODE
 *     14 how      BITS                  1: no record; 2: commit to the
 *                                       record's tag (as `ocitree commit
 *                                       --upper` without one), not "t"
 *     15 times    E SECONDS4
 *   P and E number the objects made so far (0: the upper directory itself),
 *   modulo their count; P must be a directory.  NAME, TARGET, VALUE and
 *   KEY's raw names are a length byte and bytes ('/' and NUL become '_');
 *   DATA and BYTES a 16-bit length and bytes; numbers little endian, MODE,
 *   UID and GID 16-bit.  The record is otherwise made right (the base image,
 *   the format of the flags); a digest field "@N" names blob N of the layout
 *   (its manifest, config or layer), with its size unless the size is given
 *   too.
 *
 * Properties: nothing crashes or hangs; an error has a message; the journal,
 * when it reads, lists paths that stay below the root; nothing outside the
 * upper and work directories changes; a failed commit leaves index.json as
 * it was; commit fails while the copy-up journal is there (a copy-up left
 * half done); a commit that succeeds tags an image that is the base plus at most
 * the new layer, whose entries are as many as commit says, each a clean
 * relative path below a directory written before it (whiteouts of real
 * names, hardlinks to regular files before them, no name twice), and which
 * unpacks (ocitree_unpack_rootfs) and merges (layer indexes and the tree, as
 * a mount does); --clear without keep empties the upper directory.
 *
 * Where trusted.* xattrs cannot be set (not root), the trusted format
 * becomes the user one: the same code with another prefix.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "bundle-internal.h"
#include "ocitree/bundle.h"
#include "ocitree/image.h"
#include "ocitree/layer-index.h"
#include "ocitree/layer.h"
#include "ocitree/tree.h"
#include "upper-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OBJECTS 128
#define CANARY "outside the upper directory\n"

static char top[64];
static int topfd = -1;
static char layout_path[128], upper_path[128], work_path[128], rootfs_path[128], cache_path[128];
static bool have_trusted, is_root;
static bool verbose; /* FUZZ_VERBOSE set: say what happened */
static struct ocitree_descriptor base_desc;
static size_t base_layers;
static struct buf base_index = BUF_INIT;
static struct strset base_files; /* blobs and cache files of the base image */
static struct blobs {
	struct blob {
		char digest[OCITREE_DIGEST_MAX];
		int64_t size;
	} v[8];
	size_t n;
} base_blobs; /* the layout's blobs, for records that name them */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("fuzz-upper: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

static void need_message(const struct ocitree_error *err, const char *what)
{
	if (!err || !err->msg || !*err->msg)
		fail("%s failed without a message", what);
}

/* ---- the scratch directory ---- */

static void cleanup(void)
{
	if (topfd >= 0)
		rm_rf_at(AT_FDCWD, top, NULL);
}

/* Every file below dir (relative to topfd), as "dir/name", into set. */
static void list_files(const char *dir, struct strset *set)
{
	int fd = openat(topfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.') {
			_cleanup_free_ char *p = xasprintf("%s/%s", dir, e->d_name);
			strset_add(set, p);
		}
	closedir(d);
}

static const char *const blob_dirs[] = {"layout/blobs/sha256", "cache/index-v2/sha256", "cache/tar/sha256"};

/* Back to the base image: index.json as it was, no other blob or cache
 * file. */
static void restore_layout(void)
{
	struct ocitree_error *err = NULL;
	int lfd = openat(topfd, "layout", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (lfd < 0 || write_file_atomic_at(lfd, "index.json", base_index.data, base_index.len, 0644, &err) < 0)
		fail("restore index.json");
	close(lfd);
	for (size_t i = 0; i < ARRAY_SIZE(blob_dirs); i++) {
		_cleanup_(strset_free) struct strset now = {0};
		list_files(blob_dirs[i], &now);
		for (size_t k = 0; k < now.cap; k++)
			if (now.slots[k] && !strset_has(&base_files, now.slots[k]))
				unlinkat(topfd, now.slots[k], 0);
	}
}

static void write_at(int dfd, const char *name, const void *data, size_t len, mode_t mode)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0 || write_all(fd, data, len) < 0)
		fail("write '%s': %s", name, strerror(errno));
	close(fd);
}

/* The same where the work directory may hold anything under that name. */
static void try_write_at(int dfd, const char *name, const void *data, size_t len)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (write_all(fd, data, len) < 0)
		fail("write '%s': %s", name, strerror(errno));
	close(fd);
}

static int cmp_blob(const void *a, const void *b)
{
	return strcmp(((const struct blob *)a)->digest, ((const struct blob *)b)->digest);
}

static void setup(void)
{
	if (topfd >= 0)
		return;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(top, sizeof(top), "%.40s/fuzz-upper.XXXXXX", base);
	if (!mkdtemp(top) || (topfd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		fail("cannot make a scratch directory");
	atexit(cleanup);
	snprintf(layout_path, sizeof(layout_path), "%s/layout", top);
	snprintf(upper_path, sizeof(upper_path), "%s/upper", top);
	snprintf(work_path, sizeof(work_path), "%s/work", top);
	snprintf(rootfs_path, sizeof(rootfs_path), "%s/rootfs", top);
	snprintf(cache_path, sizeof(cache_path), "%s/cache", top);
	is_root = geteuid() == 0;
	verbose = getenv("FUZZ_VERBOSE");
	/* the tree of the base image */
	if (mkdirat(topfd, "src", 0755) < 0 || mkdirat(topfd, "src/etc", 0755) < 0 ||
	    mkdirat(topfd, "src/d", 0755) < 0 || mkdirat(topfd, "src/d/sub", 0700) < 0)
		fail("mkdir");
	write_at(topfd, "src/etc/hello", "hello\n", 6, 0644);
	write_at(topfd, "src/d/x", "x\n", 2, 0600);
	write_at(topfd, "src/d/sub/deep", "deep\n", 5, 0644);
	write_at(topfd, "src/empty", "", 0, 0644);
	char big[20000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 23);
	write_at(topfd, "src/big", big, sizeof(big), 0755);
	if (linkat(topfd, "src/etc/hello", topfd, "src/etc/hard", 0) < 0 ||
	    symlinkat("hello", topfd, "src/etc/link") < 0)
		fail("link");
	/* something the upper directory's symlinks may point at */
	if (mkdirat(topfd, "outside", 0755) < 0)
		fail("mkdir");
	write_at(topfd, "outside/canary", CANARY, strlen(CANARY), 0644);
	char probe[] = "probe";
	write_at(topfd, probe, "", 0, 0644);
	char pp[192];
	snprintf(pp, sizeof(pp), "%s/%s", top, probe);
	have_trusted = setxattr(pp, "trusted.overlay.fuzz", "1", 1, 0) == 0;
	unlinkat(topfd, probe, 0);

	struct ocitree_error *err = NULL;
	struct ocitree_layout *l = NULL;
	if (ocitree_layout_create(layout_path, &err) < 0 || !(l = ocitree_layout_open(layout_path, &err)))
		fail("layout: %s", err->msg);
	struct ocitree_image *img = ocitree_image_new(l);
	struct ocitree_insert_options io = {.write = {.compression = OCITREE_COMPRESSION_GZIP},
					    .map = {.rootless = !is_root}};
	_cleanup_free_ char *src = xasprintf("%s/src", top);
	if (ocitree_insert(img, src, "/", "base", &io, &err) < 0)
		fail("insert: %s", err->msg);
	ocitree_image_free(img);
	ocitree_layout_free(l);
	if (!(l = ocitree_layout_open(layout_path, &err)) || !(img = ocitree_image_open(l, "base", &err)))
		fail("open base: %s", err->msg);
	ocitree_descriptor_copy(&base_desc, &img->manifest_desc);
	base_layers = img->manifest->n_layers;
	/* its layer index in the cache, as a mount leaves it */
	struct ocitree_layer_index_opts xo = {.cache_dir = cache_path};
	struct ocitree_layer_index *idx =
		ocitree_layer_index_open(l, &img->manifest->layers[0], img->config->diff_ids[0], &xo, &err);
	if (!idx)
		fail("index: %s", err->msg);
	ocitree_layer_index_free(idx);
	ocitree_image_free(img);
	ocitree_layout_free(l);
	if (read_file_at(topfd, "layout/index.json", 1 << 20, &base_index, "index.json", &err) < 0)
		fail("%s", err->msg);
	for (size_t i = 0; i < ARRAY_SIZE(blob_dirs); i++)
		list_files(blob_dirs[i], &base_files);
	/* in name order, so that "@N" names the same blob every run */
	_cleanup_(strset_free) struct strset blobs = {0};
	list_files(blob_dirs[0], &blobs);
	for (size_t i = 0; i < blobs.cap; i++) {
		if (!blobs.slots[i] || base_blobs.n == ARRAY_SIZE(base_blobs.v))
			continue;
		struct blob *bl = &base_blobs.v[base_blobs.n++];
		struct stat st;
		snprintf(bl->digest, sizeof(bl->digest), "sha256:%s", strrchr(blobs.slots[i], '/') + 1);
		bl->size = fstatat(topfd, blobs.slots[i], &st, 0) == 0 ? st.st_size : -1;
	}
	qsort(base_blobs.v, base_blobs.n, sizeof(base_blobs.v[0]), cmp_blob);
}

/* Nothing outside the upper and work directories changed. */
static void check_outside(void)
{
	_cleanup_buf_ struct buf b = BUF_INIT;
	struct ocitree_error *err = NULL;
	struct stat st;
	if (read_file_at(topfd, "outside/canary", 4096, &b, "canary", &err) < 0 || strcmp(b.data, CANARY) != 0 ||
	    fstatat(topfd, "outside/canary", &st, AT_SYMLINK_NOFOLLOW) < 0 || (st.st_mode & 07777) != 0644 ||
	    st.st_nlink != 1 || st.st_uid != geteuid())
		fail("a file outside the upper directory changed");
	char pp[192];
	snprintf(pp, sizeof(pp), "%s/outside/canary", top);
	if (llistxattr(pp, NULL, 0) > 0)
		fail("a file outside the upper directory got xattrs");
	_cleanup_(strset_free) struct strset o = {0};
	list_files("outside", &o);
	if (o.n != 1)
		fail("something appeared outside the upper directory");
	if (fstatat(topfd, "src/etc/hello", &st, 0) < 0 || st.st_nlink != 2)
		fail("the source tree changed");
	ocitree_error_free(err);
}

/* ---- building the upper directory ---- */

struct in {
	const uint8_t *p;
	size_t n;
	bool end;
};

static unsigned u8(struct in *in)
{
	if (!in->n) {
		in->end = true;
		return 0;
	}
	in->n--;
	return *in->p++;
}

static unsigned u16(struct in *in)
{
	unsigned lo = u8(in);
	return lo | u8(in) << 8;
}

/* len bytes (len read as one or two bytes), at most what is left */
static size_t bytes(struct in *in, bool wide, const uint8_t **out)
{
	size_t len = wide ? u16(in) : u8(in);
	if (len > in->n)
		len = in->n;
	*out = in->p;
	in->p += len;
	in->n -= len;
	return len;
}

static void name(struct in *in, char out[NAME_MAX + 1])
{
	const uint8_t *p;
	size_t len = bytes(in, false, &p);
	for (size_t i = 0; i < len; i++)
		out[i] = p[i] == '/' || p[i] == '\0' ? '_' : (char)p[i];
	out[len] = '\0';
}

struct obj {
	int dfd;   /* the directory holding it (the upper directory's fd for the root) */
	char name[NAME_MAX + 1]; /* "" for the root */
	int fd;    /* directories: an O_PATH fd, else -1 */
};

struct build {
	struct obj o[MAX_OBJECTS];
	size_t n;
	struct ocitree_upper_format f;
	const char *prefix; /* where the private xattrs go */
	const char *other;  /* the other prefix */
	bool raw_record, no_record, record_tag;
	struct buf record;
	char *field[11];
	bool field_raw[11];
};

static struct obj *obj_at(struct build *b, unsigned i)
{
	return &b->o[i % b->n];
}

static struct obj *dir_at(struct build *b, unsigned i)
{
	struct obj *o = obj_at(b, i);
	return o->fd >= 0 ? o : &b->o[0];
}

static void upath_of(struct obj *o, struct upath *p)
{
	if (o->name[0])
		upath_at(p, o->dfd, o->name);
	else
		upath_fd(p, o->fd);
}

static void add_obj(struct build *b, struct obj *parent, const char *nm, bool dir)
{
	if (b->n == MAX_OBJECTS)
		return;
	struct obj *o = &b->o[b->n++];
	o->dfd = parent->fd;
	snprintf(o->name, sizeof(o->name), "%s", nm);
	o->fd = dir ? openat(parent->fd, nm, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
}

/* A name for xattr KEY (modulo 16). */
static const char *xattr_name(struct build *b, unsigned key, const char *raw, char *buf, size_t size)
{
	static const char *const priv[] = {UPPER_X_OPAQUE, UPPER_X_METACOPY, UPPER_X_REDIRECT, UPPER_X_ORIGIN,
					   UPPER_X_STAT};
	key %= 16;
	if (key < 5)
		snprintf(buf, size, "%s%s", b->prefix, priv[key]);
	else if (key < 8)
		snprintf(buf, size, "%s%s", b->other, priv[key - 5]);
	else if (key == 8)
		snprintf(buf, size, "%soverlay.%s", b->prefix, raw);
	else if (key == 9)
		snprintf(buf, size, "user.%s", raw);
	else if (key == 10)
		snprintf(buf, size, "security.capability");
	else if (key == 11)
		snprintf(buf, size, "security.selinux");
	else if (key == 12)
		snprintf(buf, size, "%s%s", have_trusted ? "trusted." : "user.", raw);
	else if (key == 13)
		snprintf(buf, size, "%s", raw);
	else if (key == 14)
		snprintf(buf, size, "%soverlay.overlay.%s", b->prefix, raw);
	else
		snprintf(buf, size, "%socitree.%s", b->prefix, raw);
	return buf;
}

static void json_escape(struct buf *out, const char *s, size_t len)
{
	buf_puts(out, "\"");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			buf_printf(out, "\\%c", c);
		else if (c < 0x20)
			buf_printf(out, "\\u%04x", c);
		else
			buf_append(out, &s[i], 1);
	}
	buf_puts(out, "\"");
}

enum { F_VERSION, F_LAYOUT, F_TAG, F_MANIFEST, F_WHITEOUT, F_XATTRS, F_OWNERS, F_CLEARING, F_MT, F_DIGEST, F_SIZE };

static void field(struct buf *out, struct build *b, int f, const char *name_, const char *dflt, bool dflt_raw)
{
	buf_printf(out, "%s\"%s\":", f == F_VERSION || f == F_MT ? "" : ",", name_);
	const char *v = b->field[f] ? b->field[f] : dflt;
	bool raw = b->field[f] ? b->field_raw[f] : dflt_raw;
	if (raw)
		buf_puts(out, v);
	else
		json_escape(out, v, strlen(v));
}

static void make_record(struct build *b)
{
	static const char *const xa[] = {"none", "trusted", "user"};
	struct buf *r = &b->record;
	char size[32];
	snprintf(size, sizeof(size), "%jd", (intmax_t)base_desc.size);
	buf_puts(r, "{");
	field(r, b, F_VERSION, "ocitreeUpperVersion", "1", true);
	field(r, b, F_LAYOUT, "layout", layout_path, false);
	field(r, b, F_TAG, "tag", "base", false);
	if (b->field[F_MANIFEST]) {
		field(r, b, F_MANIFEST, "manifest", "", false);
	} else {
		buf_puts(r, ",\"manifest\":{");
		field(r, b, F_MT, "mediaType", base_desc.media_type, false);
		const char *digest = b->field[F_DIGEST];
		if (digest && digest[0] == '@' && base_blobs.n) {
			/* a blob of the layout, with its own size */
			const struct blob *bl = &base_blobs.v[(unsigned char)digest[1] % base_blobs.n];
			free(b->field[F_DIGEST]);
			b->field[F_DIGEST] = xstrdup(bl->digest);
			b->field_raw[F_DIGEST] = false;
			snprintf(size, sizeof(size), "%jd", (intmax_t)bl->size);
		}
		field(r, b, F_DIGEST, "digest", base_desc.digest, false);
		field(r, b, F_SIZE, "size", size, true);
		buf_puts(r, "}");
	}
	field(r, b, F_WHITEOUT, "whiteout", b->f.whiteout == OCITREE_UPPER_WHITEOUT_FILE ? "file" : "chardev", false);
	field(r, b, F_XATTRS, "xattrs", xa[b->f.xattrs], false);
	field(r, b, F_OWNERS, "owners", b->f.virtual_owners ? "virtual" : "real", false);
	field(r, b, F_CLEARING, "clearing", "false", true);
	buf_puts(r, "}\n");
}

static void op(struct build *b, struct in *in, int workfd)
{
	char nm[NAME_MAX + 1], raw[NAME_MAX + 1] = "", xn[2 * NAME_MAX];
	const uint8_t *p;
	size_t len;
	struct upath up;
	struct stat st;
	unsigned code = u8(in) % 16;
	switch (code) {
	case 0: { /* mkdir */
		struct obj *d = dir_at(b, u8(in));
		name(in, nm);
		mode_t mode = u16(in) & 07777;
		if (!in->end && mkdirat(d->fd, nm, 0700) == 0) {
			add_obj(b, d, nm, true);
			fchmodat(d->fd, nm, mode, 0);
		}
		break;
	}
	case 1: { /* file */
		struct obj *d = dir_at(b, u8(in));
		name(in, nm);
		mode_t mode = u16(in) & 07777;
		len = bytes(in, true, &p);
		int fd = in->end ? -1 : openat(d->fd, nm, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0) {
			if (write_all(fd, p, len) < 0)
				fail("write: %s", strerror(errno));
			fchmod(fd, mode);
			close(fd);
			add_obj(b, d, nm, false);
		}
		break;
	}
	case 2: { /* symlink */
		struct obj *d = dir_at(b, u8(in));
		name(in, nm);
		len = bytes(in, false, &p); /* a target keeps its slashes */
		for (size_t i = 0; i < len; i++)
			raw[i] = p[i] ? (char)p[i] : '_';
		raw[len] = '\0';
		if (!in->end && symlinkat(raw, d->fd, nm) == 0)
			add_obj(b, d, nm, false);
		break;
	}
	case 3: { /* link */
		struct obj *d = dir_at(b, u8(in));
		name(in, nm);
		struct obj *t = obj_at(b, u8(in));
		if (!in->end && t->name[0] && linkat(t->dfd, t->name, d->fd, nm, 0) == 0)
			add_obj(b, d, nm, false);
		break;
	}
	case 4: { /* whiteout */
		struct obj *d = dir_at(b, u8(in));
		name(in, nm);
		if (!in->end && mknodat(d->fd, nm, S_IFCHR | 0600, 0) == 0)
			add_obj(b, d, nm, false);
		break;
	}
	case 5: { /* node */
		static const mode_t types[] = {S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK};
		struct obj *d = dir_at(b, u8(in));
		name(in, nm);
		mode_t t = types[u8(in) % 4];
		unsigned ma = u8(in), mi = u8(in);
		if (!in->end && mknodat(d->fd, nm, t | 0644, makedev(ma, mi)) == 0)
			add_obj(b, d, nm, false);
		break;
	}
	case 6: { /* xattr */
		struct obj *o = obj_at(b, u8(in));
		unsigned key = u8(in);
		if (key % 16 >= 8)
			name(in, raw);
		len = bytes(in, false, &p);
		if (in->end)
			break;
		xattr_name(b, key, raw, xn, sizeof(xn));
		upath_of(o, &up);
		upath_setxattr(&up, xn, p, len, 0);
		break;
	}
	case 7: { /* truncate */
		struct obj *o = obj_at(b, u8(in));
		unsigned size = (u16(in) | u8(in) << 16) & ((1u << 20) - 1);
		if (in->end || !o->name[0] || fstatat(o->dfd, o->name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			break;
		int fd = openat(o->dfd, o->name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0) {
			if (ftruncate(fd, size) < 0)
				fail("truncate: %s", strerror(errno));
			close(fd);
		}
		break;
	}
	case 8: { /* chown */
		struct obj *o = obj_at(b, u8(in));
		unsigned uid = u16(in), gid = u16(in);
		if (!in->end && o->name[0])
			fchownat(o->dfd, o->name, uid, gid, AT_SYMLINK_NOFOLLOW);
		break;
	}
	case 9: /* record */
		len = bytes(in, true, &p);
		buf_reset(&b->record);
		buf_append(&b->record, p, len);
		b->raw_record = true;
		break;
	case 10: { /* field */
		unsigned f = u8(in);
		len = bytes(in, false, &p);
		if (in->end)
			break;
		free(b->field[(f & 0x7f) % 11]);
		b->field[(f & 0x7f) % 11] = xstrndup((const char *)p, len);
		b->field_raw[(f & 0x7f) % 11] = f & 0x80;
		break;
	}
	case 11: /* journal */
		len = bytes(in, true, &p);
		try_write_at(workfd, UPPER_LINKS_JOURNAL, p, len);
		break;
	case 12: { /* workfile */
		name(in, nm);
		unsigned kind = u8(in) % 4;
		len = bytes(in, true, &p);
		if (in->end || !nm[0] || strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0)
			break;
		upper_rm_rf_at(workfd, nm);
		if (kind == 0) {
			try_write_at(workfd, nm, p, len);
		} else if (kind == 1) {
			mkfifoat(workfd, nm, 0600);
		} else if (kind == 2) {
			if (mkdirat(workfd, nm, 0700) == 0) {
				int dfd = openat(workfd, nm, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
				if (dfd >= 0) {
					try_write_at(dfd, "f", p, len);
					close(dfd);
				}
				fchmodat(workfd, nm, 0, 0);
			}
		} else {
			_cleanup_free_ char *t = xstrndup((const char *)p, len);
			symlinkat(t, workfd, nm);
		}
		break;
	}
	case 13: { /* chmod: never through a symlink, which may lead anywhere */
		struct obj *o = obj_at(b, u8(in));
		mode_t mode = u16(in) & 07777;
		if (in->end)
			break;
		if (!o->name[0]) {
			upath_of(o, &up);
			chmod(up.path, mode);
		} else if (fstatat(o->dfd, o->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISLNK(st.st_mode)) {
			fchmodat(o->dfd, o->name, mode, 0);
		}
		break;
	}
	case 14: {
		unsigned bits = u8(in);
		b->no_record |= bits & 1;
		b->record_tag |= bits & 2;
		break;
	}
	case 15: { /* times */
		struct obj *o = obj_at(b, u8(in));
		unsigned secs = u16(in) | u16(in) << 16;
		struct timespec ts[2] = {{secs, 0}, {secs, 0}};
		if (in->end)
			break;
		if (o->name[0]) {
			utimensat(o->dfd, o->name, ts, AT_SYMLINK_NOFOLLOW);
		} else {
			upath_of(o, &up); /* an O_PATH fd: through its path */
			utimensat(AT_FDCWD, up.path, ts, 0);
		}
		break;
	}
	}
}

/* ---- checking what commit made ---- */

static void check_path(const char *p, const char *what)
{
	if (strcmp(p, ".") == 0)
		return;
	if (!*p || p[0] == '/')
		fail("%s '%s': not a relative path", what, p);
	for (const char *c = p;;) {
		const char *end = strchrnul(c, '/');
		size_t n = (size_t)(end - c);
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			fail("%s '%s': not a clean path", what, p);
		if (!*end)
			break;
		c = end + 1;
	}
}

static void visit(const char *path, const struct stat *st, void *userdata)
{
	(void)st, (void)userdata;
	check_path(path, "visit");
}

static bool keep_some(int dirfd, const char *nm, const struct stat *st, void *userdata)
{
	(void)dirfd, (void)st, (void)userdata;
	return hash_bytes(nm, strlen(nm)) & 1;
}

static void check_layer(struct ocitree_layout *l, const struct ocitree_descriptor *d, const char *diff_id,
			uint64_t entries)
{
	struct ocitree_error *err = NULL;
	struct ocitree_layer_reader *r = ocitree_layer_reader_open(l, d, diff_id, &err);
	struct ocitree_tar_reader *tr = r ? ocitree_tar_reader_new(r, &err) : NULL;
	if (!tr)
		fail("the new layer does not open: %s", err->msg);
	_cleanup_(strset_free) struct strset dirs = {0}, files = {0}, seen = {0};
	const struct ocitree_tar_entry *e;
	uint64_t n = 0;
	int k;
	while ((k = ocitree_tar_reader_next(tr, &e, &err)) > 0) {
		/* directories end in '/' in the archive, the root is "./" */
		_cleanup_free_ char *p = xstrdup(e->path);
		size_t pl = strlen(p);
		while (pl > 1 && p[pl - 1] == '/')
			p[--pl] = '\0';
		n++;
		check_path(p, "entry");
		if (n == 1 && (strcmp(p, ".") != 0 || e->type != OCITREE_TAR_DIR))
			fail("the first entry is '%s', not the root directory", p);
		if (!strset_add(&seen, p))
			fail("entry '%s' twice", p);
		const char *slash = strrchr(p, '/');
		_cleanup_free_ char *parent = slash ? xstrndup(p, (size_t)(slash - p)) : xstrdup(".");
		const char *base = slash ? slash + 1 : p;
		if (n > 1 && !strset_has(&dirs, parent))
			fail("entry '%s' before its directory", p);
		if (str_has_prefix(base, ".wh.")) {
			const char *w = base + 4;
			if (e->type != OCITREE_TAR_REG || e->size != 0)
				fail("whiteout '%s' is not an empty file", p);
			if (!*w || strcmp(w, ".") == 0 || strcmp(w, "..") == 0 ||
			    (str_has_prefix(w, ".wh.") && strcmp(w, ".wh..opq") != 0))
				fail("whiteout '%s' of no name an image can have", p);
		}
		if (e->type == OCITREE_TAR_DIR)
			strset_add(&dirs, p);
		else if (e->type == OCITREE_TAR_REG)
			strset_add(&files, p);
		else if (e->type == OCITREE_TAR_HARDLINK && (!e->linkname || !strset_has(&files, e->linkname)))
			fail("hardlink '%s' to '%s', no regular file before it", p, e->linkname ? e->linkname : "");
		const void *buf;
		int64_t off;
		ssize_t got;
		while ((got = ocitree_tar_reader_data(tr, &buf, &off, &err)) > 0)
			;
		if (got < 0)
			fail("data of '%s': %s", p, err->msg);
	}
	if (k < 0)
		fail("the new layer does not read back: %s", err->msg);
	if (n != entries)
		fail("the new layer has %ju entries, commit said %ju", (uintmax_t)n, (uintmax_t)entries);
	ocitree_tar_reader_free(tr);
	ocitree_layer_reader_free(r);
}

static void check_commit(const char *tag, const struct ocitree_commit_result *res)
{
	struct ocitree_error *err = NULL;
	struct ocitree_layout *l = ocitree_layout_open(layout_path, &err);
	struct ocitree_image *img = l ? ocitree_image_open(l, tag, &err) : NULL;
	if (!img)
		fail("the commit does not open: %s", err->msg);
	if (strcmp(img->manifest_desc.digest, res->manifest) != 0)
		fail("tag '%s' is %s, commit said %s", tag, img->manifest_desc.digest, res->manifest);
	struct ocitree_manifest *m = img->manifest;
	bool layer = res->layer[0];
	if (m->n_layers != base_layers + layer)
		fail("%zu layers after commit", m->n_layers);
	if (layer) {
		if (strcmp(m->layers[base_layers].digest, res->layer) != 0 ||
		    strcmp(img->config->diff_ids[base_layers], res->diff_id) != 0)
			fail("the new layer is not the one commit said");
		check_layer(l, &m->layers[base_layers], res->diff_id, res->entries);
	}
	/* what a mount of it does: index every layer, merge them */
	struct ocitree_layer_index *idx[8] = {0};
	struct ocitree_layer_index_opts xo = {.cache_dir = cache_path};
	if (ocitree_layer_index_open_many(l, m->layers, img->config->diff_ids, m->n_layers, &xo, 1, idx, &err) < 0)
		fail("the commit does not index: %s", err->msg);
	struct ocitree_tree *t = ocitree_tree_build(idx, m->n_layers, 0, &err);
	if (!t)
		fail("the commit does not merge: %s", err->msg);
	ocitree_tree_free(t);
	for (size_t i = 0; i < m->n_layers; i++)
		ocitree_layer_index_free(idx[i]);
	/* what unpack does */
	struct ocitree_unpack_options uo = {.map = {.rootless = !is_root}};
	if (ocitree_unpack_rootfs(img, rootfs_path, &uo, &err) < 0)
		fail("the commit does not unpack: %s", err->msg);
	rm_rf_at(AT_FDCWD, rootfs_path, NULL);
	ocitree_image_free(img);
	ocitree_layout_free(l);
}

static void check_journal(struct ocitree_upper *u)
{
	struct ocitree_error *err = NULL;
	char **paths = NULL;
	if (upper_links_journal_read(u, &paths, &err) < 0) {
		need_message(err, "reading the journal");
		ocitree_error_free(err);
		return;
	}
	size_t n = 0;
	for (; paths && paths[n]; n++) {
		if (paths[n][0] != '/' || strcmp(paths[n], "/") == 0)
			fail("journal path '%s' is not absolute", paths[n]);
		check_path(paths[n] + 1, "journal path");
	}
	if (paths && n < 2)
		fail("a journal of %zu paths", n);
	strv_free(paths);
}

/* Everything that reads an opened upper directory, as mount and commit do;
 * record_tag: commit to the tag the record names. */
static void use_upper(struct ocitree_upper *u, unsigned flags, bool record_tag, struct ocitree_error **err)
{
	static const enum ocitree_compression comp[] = {OCITREE_COMPRESSION_NONE, OCITREE_COMPRESSION_GZIP,
							OCITREE_COMPRESSION_ZSTD, OCITREE_COMPRESSION_GZIP};
	check_journal(u);
	struct ocitree_upper_format pf;
	if (ocitree_upper_probe(u, NULL, &pf, err) < 0) {
		need_message(*err, "probe");
		ocitree_error_free(*err);
		*err = NULL;
	}
	ocitree_upper_remove_stale(u);
	if (u->state.clearing) {
		if (ocitree_upper_finish_clear(u, err) < 0) {
			need_message(*err, "finishing a clear");
			return;
		}
		if (u->state.clearing || !ocitree_upper_is_empty(u))
			fail("a finished clear left the upper directory full");
	}
	struct ocitree_layout *l = ocitree_layout_open(layout_path, err);
	if (!l)
		fail("layout: %s", (*err)->msg);
	bool clear = flags & 16, keep = flags & 32;
	struct ocitree_commit_options o = {.compression = comp[flags >> 6], .clear = clear, .cache_dir = cache_path,
					   .visit = visit, .keep = keep ? keep_some : NULL};
	struct ocitree_commit_result res;
	_cleanup_free_ char *tag = xstrdup(record_tag && u->state.tag ? u->state.tag : "t");
	struct stat jst;
	bool half_done = fstatat(u->work_fd, UPPER_LINKS_JOURNAL, &jst, AT_SYMLINK_NOFOLLOW) == 0;
	int r = ocitree_upper_commit(u, l, tag, &o, &res, err);
	if (r == 0 && half_done)
		fail("commit went on with a copy-up left half done");
	ocitree_layout_free(l);
	if (verbose)
		fprintf(stderr, "fuzz-upper: commit: %s%s (%ju entries)\n", r < 0 ? "" : res.layer,
			r < 0 ? (*err)->msg : "", (uintmax_t)res.entries);
	if (r < 0) {
		need_message(*err, "commit");
		if (!res.manifest[0]) {
			_cleanup_buf_ struct buf now = BUF_INIT;
			struct ocitree_error *e2 = NULL;
			if (read_file_at(topfd, "layout/index.json", 1 << 20, &now, "index.json", &e2) < 0 ||
			    now.len != base_index.len || memcmp(now.data, base_index.data, now.len) != 0)
				fail("a failed commit changed index.json");
		}
		return;
	}
	check_commit(tag, &res);
	if (clear) {
		if (u->state.clearing || strcmp(u->state.manifest.digest, res.manifest) != 0)
			fail("after commit --clear the record does not name the new image");
		if (!keep && !ocitree_upper_is_empty(u))
			fail("commit --clear left the upper directory full");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	setup();
	upper_rm_rf_at(topfd, "upper");
	upper_rm_rf_at(topfd, "work");
	upper_rm_rf_at(topfd, "rootfs");
	if (mkdirat(topfd, "upper", 0755) < 0 || mkdirat(topfd, "work", 0700) < 0)
		fail("mkdir: %s", strerror(errno));
	int workfd = openat(topfd, "work", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct build *b = xcalloc(1, sizeof(*b));
	b->o[0] = (struct obj){.dfd = -1, .fd = openat(topfd, "upper", O_PATH | O_DIRECTORY | O_CLOEXEC)};
	b->n = 1;
	if (workfd < 0 || b->o[0].fd < 0)
		fail("open: %s", strerror(errno));

	struct in in = {data + 1, size - 1, false};
	unsigned flags = data[0];
	static const enum ocitree_upper_xattrs xa[] = {OCITREE_UPPER_XATTR_NONE, OCITREE_UPPER_XATTR_TRUSTED,
						       OCITREE_UPPER_XATTR_USER, OCITREE_UPPER_XATTR_TRUSTED};
	b->f.xattrs = xa[flags & 3];
	if (b->f.xattrs == OCITREE_UPPER_XATTR_TRUSTED && !have_trusted)
		b->f.xattrs = OCITREE_UPPER_XATTR_USER;
	b->f.whiteout = flags & 4 ? OCITREE_UPPER_WHITEOUT_FILE : OCITREE_UPPER_WHITEOUT_CHARDEV;
	b->f.virtual_owners = flags & 8;
	bool trusted = b->f.xattrs == OCITREE_UPPER_XATTR_TRUSTED ||
		       (b->f.xattrs == OCITREE_UPPER_XATTR_NONE && have_trusted);
	b->prefix = trusted ? "trusted.overlay." : "user.overlay.";
	b->other = trusted ? "user.overlay." : have_trusted ? "trusted.overlay." : "user.overlay.";
	while (!in.end && in.n)
		op(b, &in, workfd);
	if (!b->raw_record)
		make_record(b);
	if (!b->no_record)
		try_write_at(workfd, UPPER_STATE_FILE, b->record.data ? b->record.data : "", b->record.len);
	for (size_t i = 0; i < b->n; i++)
		if (b->o[i].fd >= 0)
			close(b->o[i].fd);
	close(workfd);
	bool record_tag = b->record_tag;
	buf_free(&b->record);
	for (size_t i = 0; i < ARRAY_SIZE(b->field); i++)
		free(b->field[i]);
	free(b);

	struct ocitree_error *err = NULL;
	struct ocitree_upper *u = ocitree_upper_open(upper_path, work_path, false, &err);
	if (u)
		use_upper(u, flags, record_tag, &err);
	else
		need_message(err, "open");
	if (verbose && !u)
		fprintf(stderr, "fuzz-upper: open: %s\n", err->msg);
	ocitree_error_free(err);
	ocitree_upper_free(u);
	check_outside();
	restore_layout();
	return 0;
}
