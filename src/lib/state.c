/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bundle metadata: ocitree's state record, umoci's mtree and umoci.json.
 *
 * The state record (BUNDLE/ocitree.state) is text, one line per path in tree
 * order (a directory before its contents, siblings sorted by bytes):
 *
 *   ocitree-state 1
 *   manifest <digest of the manifest the tree was unpacked or refreshed from>
 *   <path> <type> <mode> <uid> <gid> <size> <mtime> <ctime> <ino> <nlink> <rdev> <sha256> <link> <xattrs> <btime>
 *
 * path is "." for the root, else relative; type is one of f d l c b p s;
 * mode is octal (permission bits with setuid/setgid/sticky); mtime and ctime
 * are seconds.nanoseconds; sha256 is the hex digest of a regular file's
 * content or "-"; link is a symlink's target or "-"; xattrs is "-" or
 * name=base64value pairs joined by ','; btime is the creation time where the
 * filesystem has one, else "-".  In path, link and xattr names,
 * bytes below '!' or above '~' and the characters '\\' ',' and '=' are
 * written as \ooo (three octal digits); a lone "-" is written \055.
 * Repack compares the tree on disk with these fields (like git's index):
 * an entry whose type, mode, owner, size, mtime, ctime and inode are
 * unchanged is unchanged, without reading its content; a directory with
 * another inode or creation time was replaced.
 */
#include "config.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <sys/stat.h>

#include "bundle-internal.h"
#include "json.h"

/* ---- escaping ---- */

static void put_escaped(struct buf *b, const char *s, const char *extra)
{
	if (strcmp(s, "-") == 0) {
		buf_puts(b, "\\055");
		return;
	}
	const char *start = s;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p > ' ' && *p < 0x7f && *p != '\\' && !strchr(extra, *p))
			continue;
		buf_append(b, start, (size_t)((const char *)p - start));
		buf_printf(b, "\\%03o", *p);
		start = (const char *)p + 1;
	}
	buf_puts(b, start);
}

/* Decode \ooo escapes in place; returns -1 for a malformed escape. */
static int unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r;) {
		if (*r != '\\') {
			*w++ = *r++;
			continue;
		}
		int v = 0, n = 0;
		r++;
		while (n < 3 && *r >= '0' && *r <= '7') {
			v = v * 8 + (*r++ - '0');
			n++;
		}
		if (n == 0) {
			/* go-mtree's vis also has \\, \s and friends */
			switch (*r) {
			case '\\': v = '\\'; break;
			case 's': v = ' '; break;
			case 't': v = '\t'; break;
			case 'n': v = '\n'; break;
			case 'r': v = '\r'; break;
			case 'a': v = '\a'; break;
			case 'b': v = '\b'; break;
			case 'f': v = '\f'; break;
			case 'v': v = '\v'; break;
			case '0': v = 0; break;
			case 'E': v = 033; break;
			default: return -1;
			}
			r++;
		}
		if (v == 0 || v > 255)
			return -1;
		*w++ = (char)v;
	}
	*w = '\0';
	return 0;
}

static char type_letter(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR: return 'd';
	case S_IFLNK: return 'l';
	case S_IFCHR: return 'c';
	case S_IFBLK: return 'b';
	case S_IFIFO: return 'p';
	case S_IFSOCK: return 's';
	default: return 'f';
	}
}

static uint32_t letter_type(char c)
{
	switch (c) {
	case 'd': return S_IFDIR;
	case 'l': return S_IFLNK;
	case 'c': return S_IFCHR;
	case 'b': return S_IFBLK;
	case 'p': return S_IFIFO;
	case 's': return S_IFSOCK;
	case 'f': return S_IFREG;
	default: return 0;
	}
}

static void put_hex(struct buf *b, const uint8_t *d, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	buf_reserve(b, 2 * n);
	for (size_t i = 0; i < n; i++) {
		b->data[b->len++] = hex[d[i] >> 4];
		b->data[b->len++] = hex[d[i] & 15];
	}
	b->data[b->len] = '\0';
}

static int parse_hex(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int v = 0;
		for (int k = 0; k < 2; k++) {
			char c = s[2 * i + k];
			int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
			if (x < 0)
				return -1;
			v = v * 16 + x;
		}
		out[i] = (uint8_t)v;
	}
	return 0;
}

/* ---- the state record ---- */

static void state_line(struct buf *b, const struct tnode *n, struct buf *path)
{
	if (!n->parent)
		buf_puts(b, ".");
	else
		put_escaped(b, path->data, ",=");
	buf_printf(b, " %c %o %" PRIu32 " %" PRIu32 " %" PRIu64 " %jd.%09ld %jd.%09ld %" PRIu64 " %" PRIu64 " %" PRIu64 " ",
		   type_letter(n->mode), n->mode & 07777, n->uid, n->gid, n->size, (intmax_t)n->mtime.tv_sec,
		   n->mtime.tv_nsec, (intmax_t)n->ctime.tv_sec, n->ctime.tv_nsec, n->ino, n->nlink, n->rdev);
	if (n->has_digest)
		put_hex(b, n->digest, 32);
	else
		buf_puts(b, "-");
	buf_puts(b, " ");
	if (n->link)
		put_escaped(b, n->link, ",=");
	else
		buf_puts(b, "-");
	buf_puts(b, " ");
	if (!n->xattrs || !n->xattrs->n) {
		buf_puts(b, "-");
	} else {
		for (size_t i = 0; i < n->xattrs->n; i++) {
			if (i)
				buf_puts(b, ",");
			put_escaped(b, n->xattrs->v[i].name, ",=");
			buf_puts(b, "=");
			buf_put_base64(b, n->xattrs->v[i].value, n->xattrs->v[i].len);
		}
	}
	if (n->has_btime)
		buf_printf(b, " %jd.%09ld\n", (intmax_t)n->btime.tv_sec, n->btime.tv_nsec);
	else
		buf_puts(b, " -\n");
}

static void state_walk(struct buf *b, const struct tnode *n, struct buf *path)
{
	state_line(b, n, path);
	if (!S_ISDIR(n->mode))
		return;
	_cleanup_free_ struct tnode **kids = NULL;
	size_t k = tree_sorted_children(n, &kids);
	size_t base = path->len;
	for (size_t i = 0; i < k; i++) {
		if (base)
			buf_puts(path, "/");
		buf_puts(path, kids[i]->name);
		state_walk(b, kids[i], path);
		path->len = base;
		path->data[base] = '\0';
	}
}

void state_render(struct buf *b, const struct tree *t, const char *manifest_digest)
{
	_cleanup_buf_ struct buf path = BUF_INIT;
	buf_printf(b, "ocitree-state 1\nmanifest %s\n", manifest_digest);
	buf_reserve(&path, 256);
	path.data[0] = '\0';
	state_walk(b, t->root, &path);
}

int state_write_at(int dirfd, const char *name, const struct tree *t, const char *manifest_digest,
		   struct ocitree_error **err)
{
	_cleanup_buf_ struct buf b = BUF_INIT;
	state_render(&b, t, manifest_digest);
	if (write_file_atomic_at(dirfd, name, b.data, b.len, 0644, err) < 0)
		return ocitree_error_prefix(err, "write bundle state");
	return 0;
}

static int parse_u64(const char *s, uint64_t *v)
{
	char *end = NULL;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno || end == s || *end ? -1 : 0;
}

static int parse_time(const char *s, struct timespec *ts)
{
	char *end = NULL;
	errno = 0;
	long long sec = strtoll(s, &end, 10);
	if (errno || *end != '.')
		return -1;
	char *end2 = NULL;
	long ns = strtol(end + 1, &end2, 10);
	if (*end2 || ns < 0 || ns > 999999999)
		return -1;
	ts->tv_sec = (time_t)sec;
	ts->tv_nsec = ns;
	return 0;
}

/* A name a record may give a node: one path component, not "." or "..".
 * The records are the user's to edit, and repack turns names into layer
 * entries and whiteouts. */
static bool node_name_ok(const char *s)
{
	return *s && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && !strchr(s, '/');
}

/* The parent node for a relative path, which must exist. */
static struct tnode *parent_node(struct tree *t, char *path, char **base)
{
	char *slash = strrchr(path, '/');
	if (!slash) {
		*base = path;
		return t->root;
	}
	*slash = '\0';
	*base = slash + 1;
	return tree_lookup(t, path);
}

static int parse_xattrs(struct tnode *n, char *s)
{
	if (strcmp(s, "-") == 0)
		return 0;
	_cleanup_buf_ struct buf v = BUF_INIT;
	char *save = NULL;
	for (char *item = strtok_r(s, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');
		if (!eq)
			return -1;
		*eq = '\0';
		if (unescape(item) < 0 || base64_decode(eq + 1, &v) < 0)
			return -1;
		xattr_list_add(&n->xattrs, item, v.data ? v.data : "", v.len);
	}
	xattr_list_sort(n->xattrs);
	return 0;
}

struct tree *state_read_at(int dirfd, const char *name, char manifest_digest[OCITREE_DIGEST_MAX],
			   struct ocitree_error **err)
{
	_cleanup_buf_ struct buf b = BUF_INIT;
	if (read_file_at(dirfd, name, (size_t)1 << 34, &b, "bundle state", err) < 0)
		return NULL;
	char *save = NULL;
	char *line = strtok_r(b.data, "\n", &save);
	if (!line || strcmp(line, "ocitree-state 1") != 0)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "bundle state '%s': unknown format", name),
		       NULL;
	line = strtok_r(NULL, "\n", &save);
	if (!line || !str_has_prefix(line, "manifest ") || strlen(line + 9) >= OCITREE_DIGEST_MAX)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "bundle state '%s': no manifest line", name), NULL;
	snprintf(manifest_digest, OCITREE_DIGEST_MAX, "%s", line + 9);
	struct tree *t = tree_new();
	size_t lineno = 2;
	while ((line = strtok_r(NULL, "\n", &save))) {
		lineno++;
		char *f[15];
		size_t nf = 0;
		char *s2 = NULL;
		for (char *x = strtok_r(line, " ", &s2); x && nf < 15; x = strtok_r(NULL, " ", &s2))
			f[nf++] = x;
		uint64_t mode, uid, gid;
		struct tnode *n = NULL;
		if (nf != 15 || !letter_type(f[1][0]) || f[1][1])
			goto bad;
		char *endp = NULL;
		mode = strtoull(f[2], &endp, 8);
		if (*endp || mode > 07777 || parse_u64(f[3], &uid) < 0 || parse_u64(f[4], &gid) < 0 || uid > UINT32_MAX ||
		    gid > UINT32_MAX)
			goto bad;
		if (strcmp(f[0], ".") == 0) {
			/* the root comes first, once, and is a directory */
			if (lineno != 3 || f[1][0] != 'd')
				goto bad;
			n = t->root;
		} else {
			if (unescape(f[0]) < 0)
				goto bad;
			char *base;
			struct tnode *p = parent_node(t, f[0], &base);
			if (!p || !S_ISDIR(p->mode) || !node_name_ok(base) || tree_child(t, p, base))
				goto bad;
			n = tree_add(t, p, base);
		}
		n->mode = letter_type(f[1][0]) | (uint32_t)mode;
		n->uid = (uint32_t)uid;
		n->gid = (uint32_t)gid;
		if (parse_u64(f[5], &n->size) < 0 || parse_time(f[6], &n->mtime) < 0 || parse_time(f[7], &n->ctime) < 0 ||
		    parse_u64(f[8], &n->ino) < 0 || parse_u64(f[9], &n->nlink) < 0 || parse_u64(f[10], &n->rdev) < 0)
			goto bad;
		if (strcmp(f[11], "-") != 0) {
			if (parse_hex(f[11], n->digest, 32) < 0)
				goto bad;
			n->has_digest = true;
		}
		if (strcmp(f[12], "-") != 0) {
			if (unescape(f[12]) < 0)
				goto bad;
			n->link = xstrdup(f[12]);
		}
		if (parse_xattrs(n, f[13]) < 0)
			goto bad;
		if (strcmp(f[14], "-") != 0) {
			if (parse_time(f[14], &n->btime) < 0)
				goto bad;
			n->has_btime = true;
		}
		continue;
	bad:
		tree_free(t);
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "bundle state '%s': malformed line %zu", name,
					  lineno),
		       NULL;
	}
	return t;
}

/* ---- go-mtree ---- */

char *mtree_name(const char *manifest_digest)
{
	const char *colon = strchr(manifest_digest, ':');
	return xasprintf("%.*s_%s.mtree", (int)(colon - manifest_digest), manifest_digest, colon + 1);
}

static const char *mtree_type(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR: return "dir";
	case S_IFLNK: return "link";
	case S_IFCHR: return "char";
	case S_IFBLK: return "block";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "socket";
	default: return "file";
	}
}

/* go-mtree's Vis with its DefaultVisFlags, byte for byte: a backslash
 * doubled (an octal \134 would not match go-mtree's own encoding when it
 * compares link= values as text), glob characters, white space and bytes
 * outside printable ASCII in three-digit octal, everything else as it is.
 * extra names more bytes to write in octal. */
static void put_vis_extra(struct buf *b, const char *s, const char *extra)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\\')
			buf_puts(b, "\\\\");
		else if (*p > ' ' && *p < 0x7f && !strchr("#*?[", *p) && !strchr(extra, *p))
			buf_append(b, p, 1);
		else
			buf_printf(b, "\\%03o", *p);
	}
}

static void put_vis(struct buf *b, const char *s)
{
	put_vis_extra(b, s, "");
}

static void mtree_entry(struct buf *b, const struct tnode *n, bool indent)
{
	if (indent)
		buf_puts(b, "    ");
	if (!n->parent)
		buf_puts(b, ".");
	else
		put_vis(b, n->name);
	buf_printf(b, " size=%" PRIu64 " type=%s uid=%" PRIu32 " gid=%" PRIu32 " mode=%#o", n->size, mtree_type(n->mode),
		   n->uid, n->gid, n->mode & 07777);
	if (n->link) {
		buf_puts(b, " link=");
		put_vis(b, n->link);
	}
	buf_printf(b, " nlink=%" PRIu64 " tar_time=%jd.000000000", n->nlink, (intmax_t)n->mtime.tv_sec);
	if (S_ISREG(n->mode) && n->has_digest) {
		buf_puts(b, " sha256digest=");
		put_hex(b, n->digest, 32);
	}
	for (size_t i = 0; n->xattrs && i < n->xattrs->n; i++) {
		/* names are plain in practice; escape the odd ones, '=' too */
		buf_puts(b, " xattr.");
		put_vis_extra(b, n->xattrs->v[i].name, "=");
		buf_puts(b, "=");
		buf_put_base64(b, n->xattrs->v[i].value, n->xattrs->v[i].len);
	}
	buf_puts(b, "\n");
}

static void mtree_dir(struct buf *b, const struct tnode *d, struct buf *path)
{
	/* the comment is escaped too: a name with a newline must not start a
	 * line of its own */
	buf_puts(b, "\n# ");
	if (path->len)
		put_vis(b, path->data);
	else
		buf_puts(b, ".");
	buf_puts(b, "\n");
	mtree_entry(b, d, false);
	_cleanup_free_ struct tnode **kids = NULL;
	size_t k = tree_sorted_children(d, &kids);
	for (size_t i = 0; i < k; i++)
		if (!S_ISDIR(kids[i]->mode))
			mtree_entry(b, kids[i], true);
	size_t base = path->len;
	for (size_t i = 0; i < k; i++) {
		if (!S_ISDIR(kids[i]->mode))
			continue;
		if (base)
			buf_puts(path, "/");
		buf_puts(path, kids[i]->name);
		mtree_dir(b, kids[i], path);
		path->len = base;
		path->data[base] = '\0';
	}
	buf_puts(b, "..\n");
}

void mtree_render(struct buf *b, const struct tree *t, const char *root_label)
{
	_cleanup_buf_ struct buf path = BUF_INIT;
	struct passwd *pw = getpwuid(geteuid());
	char host[256] = "";
	gethostname(host, sizeof(host) - 1);
	time_t now = time(NULL);
	char date[64];
	struct tm tm;
	strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", localtime_r(&now, &tm));
	buf_printf(b,
		   "#          user: %s\n#       machine: %s\n#          tree: %s\n#          date: %s\n"
		   "#      keywords: size,type,uid,gid,mode,link,nlink,tar_time,sha256digest,xattr\n",
		   pw ? pw->pw_name : "?", host, root_label, date);
	buf_reserve(&path, 256);
	path.data[0] = '\0';
	mtree_dir(b, t->root, &path);
}

int mtree_write_at(int dirfd, const char *name, const struct tree *t, const char *root_label,
		   struct ocitree_error **err)
{
	_cleanup_buf_ struct buf b = BUF_INIT;
	mtree_render(&b, t, root_label);
	if (write_file_atomic_at(dirfd, name, b.data, b.len, 0644, err) < 0)
		return ocitree_error_prefix(err, "write mtree");
	return 0;
}

/* A keyword of an mtree line, from the entry or the current /set. */
struct kv {
	char *key, *value;
};

static const char *kv_get(struct kv *kv, size_t n, struct kv *set, size_t n_set, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(kv[i].key, key) == 0)
			return kv[i].value;
	for (size_t i = 0; i < n_set; i++)
		if (strcmp(set[i].key, key) == 0)
			return set[i].value;
	return NULL;
}

static size_t split_kvs(char *s, struct kv **out, size_t *cap)
{
	size_t n = 0;
	char *save = NULL;
	for (char *f = strtok_r(s, " \t", &save); f; f = strtok_r(NULL, " \t", &save)) {
		char *eq = strchr(f, '=');
		GROW(*out, *cap, n + 1);
		(*out)[n].key = f;
		(*out)[n].value = eq ? eq + 1 : (char *)"";
		if (eq)
			*eq = '\0';
		n++;
	}
	return n;
}

static int mtree_fill(struct tnode *n, struct kv *kv, size_t nkv, struct kv *set, size_t nset)
{
	const char *type = kv_get(kv, nkv, set, nset, "type");
	const char *v;
	uint32_t t = S_IFREG;
	if (type) {
		static const char *const names[] = {"file", "dir", "link", "char", "block", "fifo", "socket"};
		static const uint32_t types[] = {S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK};
		t = 0;
		for (size_t i = 0; i < ARRAY_SIZE(names); i++)
			if (strcmp(type, names[i]) == 0)
				t = types[i];
		if (!t)
			return -1;
	}
	char *end;
	/* an entry may be given again (full paths, /set), but a directory with
	 * children stays a directory, as the root does */
	if (t != S_IFDIR && (n->first_child || !n->parent))
		return -1;
	n->mode = t;
	if ((v = kv_get(kv, nkv, set, nset, "mode"))) {
		unsigned long m = strtoul(v, &end, 8);
		if (*end || m > 07777)
			return -1;
		n->mode |= (uint32_t)m;
	}
	if ((v = kv_get(kv, nkv, set, nset, "uid")))
		n->uid = (uint32_t)strtoul(v, NULL, 10);
	if ((v = kv_get(kv, nkv, set, nset, "gid")))
		n->gid = (uint32_t)strtoul(v, NULL, 10);
	if ((v = kv_get(kv, nkv, set, nset, "size")))
		n->size = strtoull(v, NULL, 10);
	if ((v = kv_get(kv, nkv, set, nset, "nlink")))
		n->nlink = strtoull(v, NULL, 10);
	if ((v = kv_get(kv, nkv, set, nset, "tar_time")) || (v = kv_get(kv, nkv, set, nset, "time")))
		n->mtime.tv_sec = (time_t)strtoll(v, NULL, 10);
	if ((v = kv_get(kv, nkv, set, nset, "link"))) {
		free(n->link);
		n->link = xstrdup(v);
		if (unescape(n->link) < 0)
			return -1;
	}
	if ((v = kv_get(kv, nkv, set, nset, "sha256digest")) || (v = kv_get(kv, nkv, set, nset, "sha256"))) {
		if (parse_hex(v, n->digest, 32) < 0)
			return -1;
		n->has_digest = true;
	}
	_cleanup_buf_ struct buf val = BUF_INIT;
	for (size_t i = 0; i < nkv; i++) {
		if (!str_has_prefix(kv[i].key, "xattr."))
			continue;
		if (base64_decode(kv[i].value, &val) < 0 || unescape(kv[i].key) < 0)
			return -1;
		xattr_list_add(&n->xattrs, kv[i].key + 6, val.data ? val.data : "", val.len);
	}
	xattr_list_sort(n->xattrs);
	return 0;
}

struct tree *mtree_read_at(int dirfd, const char *name, struct ocitree_error **err)
{
	_cleanup_buf_ struct buf b = BUF_INIT;
	if (read_file_at(dirfd, name, (size_t)1 << 34, &b, "mtree", err) < 0)
		return NULL;
	struct tree *t = tree_new();
	struct tnode *cur = NULL; /* the current directory; NULL before "." */
	_cleanup_free_ struct kv *set = NULL, *kv = NULL;
	size_t n_set = 0, cap_set = 0, cap_kv = 0;
	_cleanup_free_ char *setline = NULL;
	size_t lineno = 0;
	char *save = NULL;
	for (char *line = strtok_r(b.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lineno++;
		while (*line == ' ' || *line == '\t')
			line++;
		if (!*line || *line == '#')
			continue;
		if (str_has_prefix(line, "/set")) {
			free(setline);
			setline = xstrdup(line + 4);
			n_set = split_kvs(setline, &set, &cap_set);
			continue;
		}
		if (str_has_prefix(line, "/unset")) {
			n_set = 0;
			continue;
		}
		if (strcmp(line, "..") == 0 || str_has_prefix(line, ".. ")) {
			if (!cur)
				goto bad;
			cur = cur->parent;
			continue;
		}
		char *sp = line + strcspn(line, " \t");
		char *rest = *sp ? sp + 1 : sp;
		*sp = '\0';
		char *ename = line;
		size_t nkv = split_kvs(rest, &kv, &cap_kv);
		if (unescape(ename) < 0)
			goto bad;
		struct tnode *n;
		if (strchr(ename, '/')) {
			/* a full path entry */
			char *base;
			struct tnode *p = parent_node(t, ename, &base);
			if (!p || !S_ISDIR(p->mode) || !node_name_ok(base))
				goto bad;
			n = tree_child(t, p, base);
			if (!n)
				n = tree_add(t, p, base);
		} else if (!cur) {
			if (strcmp(ename, ".") != 0)
				goto bad;
			n = t->root;
		} else {
			/* cur may have been made a file since (by its full path) */
			if (!node_name_ok(ename) || !S_ISDIR(cur->mode))
				goto bad;
			n = tree_child(t, cur, ename);
			if (!n)
				n = tree_add(t, cur, ename);
		}
		if (mtree_fill(n, kv, nkv, set, n_set) < 0)
			goto bad;
		if (S_ISDIR(n->mode) && !strchr(ename, '/'))
			cur = n;
	}
	return t;
bad:
	tree_free(t);
	return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "mtree '%s': cannot parse line %zu", name, lineno), NULL;
}

/* ---- umoci.json ---- */

char *umoci_meta_render(const struct umoci_meta *m)
{
	_cleanup_json_ cJSON *j = json_object();
	json_add(j, "umoci_version", json_string("2"));
	cJSON *from = json_object();
	cJSON *walk = json_array();
	for (size_t i = 0; i < m->n_walk; i++)
		json_append(walk, json_descriptor(&m->walk[i]));
	json_add(from, "descriptor_walk", walk);
	json_add(j, "from_descriptor_path", from);
	cJSON *mo = json_object();
	/* umoci writes null, not [], for no mappings */
	json_add(mo, "uid_mappings", m->map.n_uid_map ? idmap_json(m->map.uid_map, m->map.n_uid_map) : cJSON_CreateNull());
	json_add(mo, "gid_mappings", m->map.n_gid_map ? idmap_json(m->map.gid_map, m->map.n_gid_map) : cJSON_CreateNull());
	json_add(mo, "rootless", json_bool(m->map.rootless));
	json_add(j, "map_options", mo);
	json_add(j, "whiteout_mode", json_int64(0));
	return json_encode(j, false);
}

int umoci_meta_write_at(int dirfd, const struct umoci_meta *m, struct ocitree_error **err)
{
	_cleanup_free_ char *text = umoci_meta_render(m);
	if (write_file_atomic_at(dirfd, UMOCI_META_FILE, text, strlen(text), 0644, err) < 0)
		return ocitree_error_prefix(err, "write " UMOCI_META_FILE);
	return 0;
}

static int read_idmaps(const cJSON *mo, const char *key, const struct ocitree_idmap **out, size_t *n,
		       struct ocitree_error **err)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(mo, key);
	*out = NULL;
	*n = 0;
	if (!a || cJSON_IsNull(a))
		return 0;
	if (!cJSON_IsArray(a))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, UMOCI_META_FILE ": '%s' is not an array", key);
	size_t count = (size_t)cJSON_GetArraySize(a);
	struct ocitree_idmap *m = xcalloc(count ? count : 1, sizeof(*m));
	size_t i = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, a)
	{
		int64_t c = 0, h = 0, s = 0;
		if (json_get_int64(e, "containerID", true, &c, UMOCI_META_FILE, err) < 0 ||
		    json_get_int64(e, "hostID", true, &h, UMOCI_META_FILE, err) < 0 ||
		    json_get_int64(e, "size", true, &s, UMOCI_META_FILE, err) < 0 || c < 0 || h < 0 || s <= 0 ||
		    c > UINT32_MAX || h > UINT32_MAX || s > UINT32_MAX) {
			free(m);
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, UMOCI_META_FILE ": invalid '%s'", key);
		}
		m[i].container_id = (uint32_t)c;
		m[i].host_id = (uint32_t)h;
		m[i].size = (uint32_t)s;
		i++;
	}
	*out = m;
	*n = count;
	return 0;
}

int umoci_meta_read_at(int dirfd, struct umoci_meta *m, struct ocitree_error **err)
{
	memset(m, 0, sizeof(*m));
	_cleanup_buf_ struct buf b = BUF_INIT;
	if (read_file_at(dirfd, UMOCI_META_FILE, 1 << 20, &b, "bundle metadata", err) < 0)
		return -1;
	_cleanup_json_ cJSON *j = json_parse_object(b.data, b.len, UMOCI_META_FILE, err);
	if (!j)
		return -1;
	const char *v;
	if (json_get_string(j, "umoci_version", true, &v, UMOCI_META_FILE, err) < 0)
		return -1;
	if (strcmp(v, "2") != 0)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, UMOCI_META_FILE ": unsupported umoci_version '%s'",
					  v);
	const cJSON *from = cJSON_GetObjectItemCaseSensitive(j, "from_descriptor_path");
	const cJSON *walk = from ? cJSON_GetObjectItemCaseSensitive(from, "descriptor_walk") : NULL;
	if (!cJSON_IsArray(walk) || cJSON_GetArraySize(walk) < 1)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, UMOCI_META_FILE ": no descriptor_walk");
	/* reuse the index parser for the descriptors */
	cJSON *fake = json_object();
	json_add(fake, "schemaVersion", json_int64(2));
	json_add(fake, "manifests", json_dup(walk));
	_cleanup_free_ char *text = json_print(fake);
	cJSON_Delete(fake);
	struct ocitree_index *idx = ocitree_index_parse(text, strlen(text), err);
	if (!idx)
		return ocitree_error_prefix(err, UMOCI_META_FILE);
	m->walk = steal_pointer(&idx->manifests);
	m->n_walk = idx->n_manifests;
	idx->n_manifests = 0;
	ocitree_index_free(idx);
	const cJSON *mo = cJSON_GetObjectItemCaseSensitive(j, "map_options");
	if (mo && cJSON_IsObject(mo)) {
		if (read_idmaps(mo, "uid_mappings", &m->map.uid_map, &m->map.n_uid_map, err) < 0 ||
		    read_idmaps(mo, "gid_mappings", &m->map.gid_map, &m->map.n_gid_map, err) < 0) {
			umoci_meta_clear(m);
			return -1;
		}
		json_get_bool(mo, "rootless", &m->map.rootless, UMOCI_META_FILE, NULL);
	}
	return 0;
}

void umoci_meta_clear(struct umoci_meta *m)
{
	for (size_t i = 0; i < m->n_walk; i++)
		ocitree_descriptor_clear(&m->walk[i]);
	free(m->walk);
	free((void *)m->map.uid_map);
	free((void *)m->map.gid_map);
	memset(m, 0, sizeof(*m));
}
