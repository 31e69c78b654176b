/* SPDX-License-Identifier: Apache-2.0 */
/* Layer indexes and the merged tree: tar scanning (long names, pax xattrs,
 * hardlinks), gzip checkpoint resume with zlib and ISA-L (single and
 * multi-member streams), zstd and uncompressed layers, the cache (round
 * trip, corrupt file rebuilt), the chunk cache (its memory bound, read-ahead
 * under sequential, interleaved and random readers, reads pinned in place,
 * a corrupt chunk), OCI merge semantics and the cache of merged trees. */
#include "config.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <zlib.h>

#include "chunk-cache.h"
#include "layer-index-internal.h"
#include "ring.h"
#include "ocitree/ocitree.h"
#include "tap.h"
#include "util.h"

static char tmpdir[] = "/tmp/ocitree-unit.XXXXXX";
static struct ocitree_layout *layout;

struct ent {
	const char *path;
	char type; /* 'f' file, 'd' dir, 'l' symlink, 'h' hardlink */
	const char *link;
	size_t size; /* for 'f': content is gen(path, size) */
	const char *xattr;
};

static unsigned char byte_at(const char *seed, size_t i)
{
	/* compressible pseudo-random bytes, reproducible from the name */
	uint64_t x = hash_bytes(seed, strlen(seed)) + (i / 16) * 0x9e3779b97f4a7c15ULL;
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	return (unsigned char)("abcdefghijklmnopqrstuvwxyz\n "[(x >> 40) % 28] + (i % 16 == 0 ? 0 : 0));
}

static unsigned char *gen(const char *seed, size_t n)
{
	unsigned char *p = xmalloc(n ? n : 1);
	for (size_t i = 0; i < n; i++)
		p[i] = byte_at(seed, i);
	return p;
}

/* A tar of entries, in memory. */
static void make_tar(const struct ent *ents, size_t n, struct buf *out)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	size_t used = 0;
	size_t cap = 64u << 20;
	buf_reserve(out, cap);
	archive_write_open_memory(a, out->data, cap, &used);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, ents[i].path);
		archive_entry_set_mtime(e, 1700000000, 0);
		archive_entry_set_uid(e, 0);
		archive_entry_set_gid(e, 0);
		unsigned char *data = NULL;
		switch (ents[i].type) {
		case 'd':
			archive_entry_set_filetype(e, AE_IFDIR);
			archive_entry_set_perm(e, 0755);
			break;
		case 'l':
			archive_entry_set_filetype(e, AE_IFLNK);
			archive_entry_set_perm(e, 0777);
			archive_entry_set_symlink(e, ents[i].link);
			break;
		case 'h':
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_perm(e, 0644);
			archive_entry_set_hardlink(e, ents[i].link);
			break;
		default:
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_perm(e, 0644);
			archive_entry_set_size(e, (la_int64_t)ents[i].size);
			data = gen(ents[i].path, ents[i].size);
			break;
		}
		if (ents[i].xattr) {
			/* "NAME=VALUE", or a value of user.test */
			const char *eq = strchr(ents[i].xattr, '=');
			_cleanup_free_ char *name = eq ? xstrndup(ents[i].xattr, (size_t)(eq - ents[i].xattr))
						       : xstrdup("user.test");
			const char *value = eq ? eq + 1 : ents[i].xattr;
			archive_entry_xattr_add_entry(e, name, value, strlen(value));
		}
		archive_write_header(a, e);
		if (data)
			archive_write_data(a, data, ents[i].size);
		free(data);
		archive_entry_free(e);
	}
	archive_write_close(a);
	archive_write_free(a);
	out->len = used;
}

static void gzip_append(struct buf *out, const void *data, size_t n)
{
	z_stream zs = {0};
	deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
	size_t bound = deflateBound(&zs, (uLong)n) + 64;
	buf_reserve(out, bound);
	zs.next_in = (Bytef *)data;
	zs.avail_in = (uInt)n;
	zs.next_out = (Bytef *)out->data + out->len;
	zs.avail_out = (uInt)bound;
	deflate(&zs, Z_FINISH);
	out->len += zs.total_out;
	deflateEnd(&zs);
}

/* Store a layer blob; fill the descriptor and the diff_id. */
static void put_layer(const struct ent *ents, size_t n, const char *comp, int members, struct ocitree_descriptor *d,
		      char diff_id[OCITREE_DIGEST_MAX])
{
	struct buf tar = BUF_INIT, blob = BUF_INIT;
	make_tar(ents, n, &tar);
	ocitree_digest_sha256(tar.data, tar.len, diff_id);
	memset(d, 0, sizeof(*d));
	if (strcmp(comp, "gzip") == 0) {
		size_t part = tar.len / (size_t)members;
		for (int m = 0; m < members; m++) {
			size_t from = part * (size_t)m, to = m == members - 1 ? tar.len : part * (size_t)(m + 1);
			gzip_append(&blob, tar.data + from, to - from);
		}
		d->media_type = xstrdup(OCITREE_MT_OCI_LAYER_GZIP);
	} else {
		blob = tar;
		tar = (struct buf)BUF_INIT;
		d->media_type = xstrdup(OCITREE_MT_OCI_LAYER);
	}
	ocitree_blob_put(layout, blob.data, blob.len, d->digest, NULL);
	d->size = (int64_t)blob.len;
	buf_free(&tar);
	buf_free(&blob);
}

static struct ocitree_layer_index *open_idx(const struct ocitree_descriptor *d, const char *diff_id, const char *cache,
					    struct ocitree_chunk_cache *cc)
{
	struct ocitree_layer_index_opts o = {.cache_dir = cache, .chunks = cc};
	struct ocitree_error *err = NULL;
	struct ocitree_layer_index *idx = ocitree_layer_index_open(layout, d, diff_id, &o, &err);
	if (!idx)
		diag("open index: %s", err->msg);
	ocitree_error_free(err);
	return idx;
}

static const struct ocitree_layer_entry *find(const struct ocitree_layer_index *idx, const char *path)
{
	for (size_t i = ocitree_layer_index_count(idx); i-- > 0;) {
		const struct ocitree_layer_entry *e = ocitree_layer_index_entry(idx, i);
		if (strcmp(ocitree_layer_index_string(idx, e->path), path) == 0)
			return e;
	}
	return NULL;
}

/* Every byte of a file read back at assorted offsets and lengths. */
static bool check_file(struct ocitree_layer_index *idx, const char *path, size_t size)
{
	const struct ocitree_layer_entry *e = find(idx, path);
	if (!e || e->size != size)
		return false;
	unsigned char *want = gen(path, size);
	unsigned char *got = xmalloc(size + 1);
	bool good = true;
	uint64_t x = 12345;
	for (int i = 0; i < 200 && good; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		size_t off = (size_t)(x >> 20) % size;
		size_t len = 1 + (size_t)(x >> 8) % (i % 3 == 0 ? 3u << 20 : 5000u);
		if (len > size - off)
			len = size - off;
		ssize_t n = ocitree_layer_index_pread(idx, got, len, e->data_off + off, NULL);
		good = n == (ssize_t)len && memcmp(got, want + off, len) == 0;
		if (!good)
			diag("%s: mismatch at %zu+%zu", path, off, len);
	}
	/* and the whole file in one go */
	if (good)
		good = ocitree_layer_index_pread(idx, got, size, e->data_off, NULL) == (ssize_t)size &&
		       memcmp(got, want, size) == 0;
	free(want);
	free(got);
	return good;
}

static char long_name[300];

/* OCITREE_INFLATE=zlib in the environment (the valgrind run: memcheck
 * cannot follow ISA-L's SIMD code) makes every case use zlib */
static const char *forced_inflate;

static void test_index(const char *comp, int members, const char *inflate)
{
	/* each case gets a cache of its own, named after the case */
	const char *variant = inflate ? inflate : "isal";
	if (!inflate)
		inflate = forced_inflate;
	if (inflate)
		setenv("OCITREE_INFLATE", inflate, 1);
	else
		unsetenv("OCITREE_INFLATE");
	const struct ent ents[] = {
		{"etc", 'd', NULL, 0, NULL},
		{"etc/hosts", 'f', NULL, 100, "hello"},
		{long_name, 'f', NULL, 3000, NULL},
		{"big", 'f', NULL, 9u << 20, NULL},
		{"big2", 'h', "big", 0, NULL},
		{"lnk", 'l', "etc/hosts", 0, NULL},
		{"after", 'f', NULL, 700000, NULL},
	};
	struct ocitree_descriptor d;
	char diff_id[OCITREE_DIGEST_MAX];
	put_layer(ents, ARRAY_SIZE(ents), comp, members, &d, diff_id);
	_cleanup_free_ char *cache = xasprintf("%s/cache-%s-%d-%s", tmpdir, comp, members, variant);
	struct ocitree_chunk_cache *cc = ocitree_chunk_cache_new(4u << 20);
	const char *what = inflate ? inflate : "default";

	_cleanup_free_ char *f = xasprintf("%s/index-v2/sha256/%s", cache, ocitree_digest_hex(d.digest));
	struct ocitree_layer_index *idx = open_idx(&d, diff_id, cache, cc);
	ok(idx != NULL, "%s x%d (%s): index built", comp, members, what);
	if (!idx)
		goto out;
	ok(!ocitree_layer_index_was_cached(idx), "%s x%d (%s): first open builds", comp, members, what);
	is_int(ocitree_layer_index_count(idx), ARRAY_SIZE(ents), "%s x%d (%s): entry count", comp, members, what);
	ok(find(idx, long_name) != NULL, "%s x%d (%s): long name", comp, members, what);
	const struct ocitree_layer_entry *h = find(idx, "big2");
	ok(h && h->type == OCITREE_ENTRY_HARDLINK && strcmp(ocitree_layer_index_string(idx, h->link), "big") == 0,
	   "%s x%d (%s): hardlink and its target", comp, members, what);
	const struct ocitree_layer_entry *e = find(idx, "etc/hosts");
	uint32_t cur = 0;
	const char *xn = NULL;
	const void *xv = NULL;
	size_t xl = 0;
	ok(e && ocitree_layer_entry_xattr_next(idx, e, &cur, &xn, &xv, &xl) && strcmp(xn, "user.test") == 0 &&
		   xl == 5 && memcmp(xv, "hello", 5) == 0,
	   "%s x%d (%s): pax xattr", comp, members, what);
	if (strcmp(comp, "gzip") == 0)
		ok(ocitree_layer_index_checkpoints(idx) >= 7, "%s x%d (%s): checkpoints about every MiB (%zu)", comp, members,
		   what, ocitree_layer_index_checkpoints(idx));
	ok(check_file(idx, "big", 9u << 20) && check_file(idx, "after", 700000) && check_file(idx, long_name, 3000),
	   "%s x%d (%s): reads at random offsets", comp, members, what);
	ocitree_layer_index_free(idx);

	idx = open_idx(&d, diff_id, cache, cc);
	ok(idx && ocitree_layer_index_was_cached(idx), "%s x%d (%s): second open uses the cache", comp, members, what);
	ok(idx && check_file(idx, "big", 9u << 20), "%s x%d (%s): reads through the cached index", comp, members,
	   what);
	ocitree_layer_index_free(idx);

	/* damage the cached file: it is rebuilt */
	int fd = open(f, O_WRONLY);
	ok(fd >= 0 && pwrite(fd, "XXXX", 4, 200) == 4, "%s x%d (%s): damage the index", comp, members, what);
	if (fd >= 0)
		close(fd);
	idx = open_idx(&d, diff_id, cache, cc);
	ok(idx && !ocitree_layer_index_was_cached(idx) && check_file(idx, "after", 700000),
	   "%s x%d (%s): a corrupt index is rebuilt", comp, members, what);
	ocitree_layer_index_free(idx);
out:
	ocitree_chunk_cache_free(cc);
	ocitree_descriptor_clear(&d);
}

/* A blob cut short after its index was cached: the decoder maps the blob,
 * and must see that a chunk's input is not all there (an error, not
 * SIGBUS), while chunks before the cut still read. */
static void test_truncated_blob(void)
{
	const struct ent ents[] = {
		{"first", 'f', NULL, 5000, NULL},
		{"big", 'f', NULL, 6u << 20, NULL},
		{"last", 'f', NULL, 300000, NULL},
	};
	struct ocitree_descriptor d;
	char diff_id[OCITREE_DIGEST_MAX];
	put_layer(ents, ARRAY_SIZE(ents), "gzip", 1, &d, diff_id);
	_cleanup_free_ char *cache = xasprintf("%s/cache-truncated", tmpdir);
	struct ocitree_chunk_cache *cc = ocitree_chunk_cache_new(4u << 20);
	struct ocitree_layer_index *idx = open_idx(&d, diff_id, cache, cc);
	ok(idx != NULL, "truncated blob: index built");
	ocitree_layer_index_free(idx);
	_cleanup_free_ char *blob = xasprintf("%s/layout/blobs/sha256/%s", tmpdir, ocitree_digest_hex(d.digest));
	ok(truncate(blob, d.size / 2) == 0, "truncated blob: cut in half");
	idx = open_idx(&d, diff_id, cache, cc);
	ok(idx && ocitree_layer_index_was_cached(idx), "truncated blob: the cached index is used");
	if (idx) {
		ok(check_file(idx, "first", 5000), "truncated blob: data before the cut reads");
		const struct ocitree_layer_entry *e = find(idx, "last");
		unsigned char buf[4096];
		struct ocitree_error *err = NULL;
		ssize_t n = e ? ocitree_layer_index_pread(idx, buf, sizeof(buf), e->data_off + 1000, &err) : 0;
		ok(n < 0 && err && strstr(err->msg, "truncated"), "truncated blob: data past the cut fails (%s)",
		   err ? err->msg : "no error");
		ocitree_error_free(err);
		ocitree_layer_index_free(idx);
	}
	ocitree_chunk_cache_free(cc);
	ocitree_descriptor_clear(&d);
}

/* ---- the chunk cache and read-ahead ---- */

struct reader_job {
	struct ocitree_layer_index *idx;
	const struct ocitree_layer_entry *e;
	const unsigned char *want;
	size_t step;    /* sequential reads of this size; 0: random reads */
	uint64_t seed;
	bool pin;       /* through ocitree_layer_index_pin */
	/* with step: after each read, wait for the read-ahead it started to be
	 * done, so that what read-ahead does is not a race with the reader (a
	 * slow machine, valgrind or ASan would otherwise let the reader come
	 * first and decode the chunk itself) */
	struct ocitree_chunk_cache *settle;
	bool good;      /* out */
};

static bool read_compare(struct reader_job *j, size_t off, size_t len, unsigned char *got)
{
	if (j->pin) {
		struct ocitree_layer_pin pin;
		ssize_t n = ocitree_layer_index_pin(j->idx, j->e->data_off + off, len, &pin, NULL);
		if (n == 0) /* more chunks than a pin holds */
			return ocitree_layer_index_pread(j->idx, got, len, j->e->data_off + off, NULL) == (ssize_t)len &&
			       memcmp(got, j->want + off, len) == 0;
		size_t at = 0;
		bool good = n == (ssize_t)len;
		for (size_t i = 0; good && i < pin.n; i++) {
			good = at + pin.iov[i].iov_len <= len && memcmp(pin.iov[i].iov_base, j->want + off + at,
									pin.iov[i].iov_len) == 0;
			at += pin.iov[i].iov_len;
		}
		ocitree_layer_index_unpin(&pin);
		return good && at == len;
	}
	return ocitree_layer_index_pread(j->idx, got, len, j->e->data_off + off, NULL) == (ssize_t)len &&
	       memcmp(got, j->want + off, len) == 0;
}

/* Wait (10 s at most) until the read-ahead thread has nothing to do. */
static void settle(struct ocitree_chunk_cache *c)
{
	struct chunk_cache_stats st;
	for (int w = 0; w < 10000; w++) {
		chunk_cache_stats(c, &st);
		if (!st.pending)
			return;
		usleep(1000);
	}
}

static void *reader(void *arg)
{
	struct reader_job *j = arg;
	size_t size = (size_t)j->e->size;
	unsigned char *got = xmalloc(size);
	j->good = true;
	if (j->step) {
		for (size_t off = 0; off < size && j->good; off += j->step) {
			j->good = read_compare(j, off, MIN(j->step, size - off), got);
			if (j->settle)
				settle(j->settle);
		}
	} else {
		uint64_t x = j->seed;
		for (int i = 0; i < 300 && j->good; i++) {
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			size_t off = (size_t)(x >> 20) % size;
			size_t len = MIN(1 + (size_t)(x >> 8) % 300000, size - off);
			j->good = read_compare(j, off, len, got);
		}
	}
	free(got);
	return NULL;
}

/* Readers on threads of their own, at once; true when every byte matched. */
static bool run_readers(struct reader_job *jobs, size_t n)
{
	pthread_t t[8];
	for (size_t i = 0; i < n; i++)
		pthread_create(&t[i], NULL, reader, &jobs[i]);
	bool good = true;
	for (size_t i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		good = good && jobs[i].good;
	}
	return good;
}

static void test_chunk_cache(void)
{
	unsetenv("OCITREE_INFLATE");
	if (forced_inflate)
		setenv("OCITREE_INFLATE", forced_inflate, 1);
	const struct ent ents[] = {
		{"one", 'f', NULL, 6u << 20, NULL},
		{"two", 'f', NULL, 5u << 20, NULL},
		{"small", 'f', NULL, 5000, NULL},
	};
	struct ocitree_descriptor d;
	char diff_id[OCITREE_DIGEST_MAX];
	put_layer(ents, ARRAY_SIZE(ents), "gzip", 1, &d, diff_id);
	_cleanup_free_ char *cache = xasprintf("%s/cache-chunks", tmpdir);
	_cleanup_free_ char *blob = xasprintf("%s/layout/blobs/sha256/%s", tmpdir, ocitree_digest_hex(d.digest));
	unsigned char *want[2] = {gen("one", 6u << 20), gen("two", 5u << 20)};
	struct chunk_cache_stats st;

	/* a cache of 16 chunks: read-ahead is bounded to four */
	struct ocitree_chunk_cache *cc = ocitree_chunk_cache_new(4u << 20);
	struct ocitree_layer_index *idx = open_idx(&d, diff_id, cache, cc);
	ok(idx != NULL, "chunk cache: layer indexed");
	if (!idx)
		goto out;
	const struct ocitree_layer_entry *e[2] = {find(idx, "one"), find(idx, "two")};
	struct reader_job seq = {.idx = idx, .e = e[0], .want = want[0], .step = 128u << 10, .settle = cc};
	ok(run_readers(&seq, 1), "chunk cache: a sequential reader reads every byte");
	chunk_cache_stats(cc, &st);
	ok(st.readahead > 0 && st.readahead_used > 0, "chunk cache: read-ahead decoded chunks the reader used (%ju of %ju)",
	   (uintmax_t)st.readahead_used, (uintmax_t)st.readahead);
	/* the 6 MiB file spans 25 chunks of 256 KiB; read-ahead goes on
	 * past its end */
	ok(st.decodes <= (6u << 20) / CHUNK_CACHE_CHUNK + 1 + chunk_cache_readahead(cc),
	   "chunk cache: no chunk decoded twice by a sequential reader (%ju decodes)",
	   (uintmax_t)st.decodes);

	/* sequential readers of two files, and random readers, at once */
	struct reader_job mix[6] = {
		{.idx = idx, .e = e[0], .want = want[0], .step = 64u << 10},
		{.idx = idx, .e = e[1], .want = want[1], .step = 100000},
		{.idx = idx, .e = e[0], .want = want[0], .seed = 1},
		{.idx = idx, .e = e[1], .want = want[1], .seed = 2},
		{.idx = idx, .e = e[0], .want = want[0], .step = 300000, .pin = true},
		{.idx = idx, .e = e[1], .want = want[1], .seed = 3, .pin = true},
	};
	ok(run_readers(mix, ARRAY_SIZE(mix)), "chunk cache: interleaved sequential, random and pinned readers agree");
	settle(cc);
	chunk_cache_stats(cc, &st);
	/* six threads may each hold up to OCITREE_LAYER_PIN_MAX pinned chunks
	 * beyond the bound, one being decoded each, and the read-ahead thread
	 * one (zlib's chunks may be a part of a deflate block longer) */
	ok(st.peak_bytes <= (4u << 20) + (6 * (OCITREE_LAYER_PIN_MAX + 1) + 1) * (CHUNK_CACHE_CHUNK + (256u << 10)),
	   "chunk cache: memory stays near its bound (peak %zu KiB)", st.peak_bytes >> 10);
	ok(st.bytes <= 4u << 20, "chunk cache: back within its bound when readers are done (%zu KiB)", st.bytes >> 10);

	/* pinned chunks stay valid while other reads go through the cache: a
	 * read of FUSE's largest (1 MiB, 5 chunks when not aligned) */
	struct ocitree_layer_pin pin;
	ssize_t n = ocitree_layer_index_pin(idx, e[0]->data_off + 1000, 1u << 20, &pin, NULL);
	size_t pinned = pin.n, spanned = 0; /* zlib's chunks end at deflate blocks: count them */
	for (size_t k = 0; k < idx->n_cps; k++)
		spanned += idx->cps[k].out_off < e[0]->data_off + 1000 + (1u << 20) &&
		           idx_chunk_end(idx, k) > e[0]->data_off + 1000;
	struct reader_job other = {.idx = idx, .e = e[1], .want = want[1], .step = 1u << 20};
	bool good = n == 1u << 20 && run_readers(&other, 1);
	size_t at = 0;
	for (size_t i = 0; good && i < pin.n; i++) {
		good = memcmp(pin.iov[i].iov_base, want[0] + 1000 + at, pin.iov[i].iov_len) == 0;
		at += pin.iov[i].iov_len;
	}
	if (n > 0)
		ocitree_layer_index_unpin(&pin);
	ok(good && at == 1u << 20 && pinned == spanned && (forced_inflate || pinned == 5),
	   "chunk cache: pinned data outlives evictions (%zd bytes in %zu)", n, pinned);
	ok(ocitree_layer_index_pin(idx, e[0]->data_off, 6u << 20, &pin, NULL) == 0,
	   "chunk cache: a read over more chunks than a pin holds is not pinned");

	/* freeing an index while its read-ahead is queued or running */
	seq = (struct reader_job){.idx = idx, .e = e[1], .want = want[1], .step = 1u << 20};
	ocitree_layer_index_free(idx);
	ocitree_chunk_cache_free(cc);
	cc = ocitree_chunk_cache_new(16u << 20);
	idx = open_idx(&d, diff_id, cache, cc);
	seq.idx = idx;
	seq.e = idx ? find(idx, "two") : NULL;
	ok(idx && seq.e && run_readers(&seq, 1), "chunk cache: read-ahead with a bigger cache");
	ocitree_layer_index_free(idx);
	chunk_cache_stats(cc, &st);
	ok(st.bytes == 0, "chunk cache: freeing an index drops its chunks, read-ahead included (%zu bytes left)",
	   st.bytes);

	/* a corrupt byte in the middle of the blob: EIO there, from the reader
	 * or from read-ahead, and good data elsewhere */
	idx = open_idx(&d, diff_id, cache, cc);
	e[0] = idx ? find(idx, "one") : NULL;
	int fd = open(blob, O_RDWR);
	if (fd < 0) {
		chmod(blob, 0644);
		fd = open(blob, O_RDWR);
	}
	unsigned char c = 0;
	off_t at_blob = d.size / 4;
	ok(idx && e[0] && fd >= 0 && pread(fd, &c, 1, at_blob) == 1, "chunk cache: open the blob to damage it");
	c ^= 0x55;
	if (idx && e[0] && fd >= 0 && pwrite(fd, &c, 1, at_blob) == 1) {
		unsigned char *got = xmalloc(1u << 20);
		size_t bad = 0, good_reads = 0;
		for (size_t off = 0; off < (6u << 20); off += 1u << 20) {
			struct ocitree_error *err = NULL;
			ssize_t r = ocitree_layer_index_pread(idx, got, 1u << 20, e[0]->data_off + off, &err);
			if (r < 0 && err && err->kind == OCITREE_ERROR_INVALID)
				bad++;
			else if (r == 1u << 20 && memcmp(got, want[0] + off, 1u << 20) == 0)
				good_reads++;
			ocitree_error_free(err);
		}
		ok(bad >= 1 && bad + good_reads == 6, "chunk cache: a corrupt chunk is an error, never wrong bytes (%zu bad)", bad);
		/* the failed chunk stays known as corrupt: reading it again (as
		 * the kernel retries every page of a failed read) fails at once,
		 * with the same message, without decoding it again */
		settle(cc);
		chunk_cache_stats(cc, &st);
		uint64_t decodes = st.decodes;
		size_t again = 0;
		bool same = true;
		_cleanup_free_ char *first_msg = NULL;
		for (int round = 0; round < 2; round++) {
			for (size_t off = 0; off < (6u << 20); off += 1u << 20) {
				struct ocitree_error *err = NULL;
				ssize_t r = ocitree_layer_index_pread(idx, got, 1u << 20, e[0]->data_off + off, &err);
				if (r < 0 && err && err->kind == OCITREE_ERROR_INVALID) {
					again++;
					if (!first_msg)
						first_msg = xstrdup(err->msg);
					else
						same = same && strcmp(first_msg, err->msg) == 0;
				}
				ocitree_error_free(err);
			}
		}
		settle(cc);
		chunk_cache_stats(cc, &st);
		/* one flipped byte damages one chunk: every failure is its message */
		ok(again == 2 * bad && same, "chunk cache: the corrupt chunk fails again on every read (%zu of %zu)",
		   again, 2 * bad);
		ok(st.decodes == decodes, "chunk cache: ... without being decoded again (%ju decodes after)",
		   (uintmax_t)(st.decodes - decodes));
		free(got);
		c ^= 0x55;
		ok(pwrite(fd, &c, 1, at_blob) == 1, "chunk cache: repair the blob");
	}
	if (fd >= 0)
		close(fd);
	ocitree_layer_index_free(idx);
out:
	ocitree_chunk_cache_free(cc);
	free(want[0]);
	free(want[1]);
	ocitree_descriptor_clear(&d);
}

/* A chunk of 1 MiB, filled with its number, for the cache tests below. */
static int fake_decode(void *userdata, struct ocitree_chunk_cache *c, uint64_t no, struct chunk_data *out,
		       struct ocitree_error **err)
{
	chunk_cache_alloc(c, 1u << 20, out);
	memset(out->data, (int)(no & 0xff), 1u << 20);
	out->len = 1u << 20;
	return 0;
}

/* Read-ahead no reader has come for yet outlives the chunks another stream
 * went through: what it decoded is used, not decoded again. */
static void test_evict_readahead_last(void)
{
	int owner_a, owner_b;
	struct ocitree_chunk_cache *cc = ocitree_chunk_cache_new(8u << 20);
	chunk_cache_prefetch(cc, &owner_a, 0, fake_decode, NULL);
	chunk_cache_prefetch(cc, &owner_a, 1, fake_decode, NULL);
	settle(cc);
	bool good = true;
	for (uint64_t k = 0; k < 20 && good; k++) {
		const struct chunk_data *d = chunk_cache_get(cc, &owner_b, k, fake_decode, NULL, NULL);
		good = d && d->data[0] == (unsigned char)k;
		if (d)
			chunk_cache_put(cc, d);
	}
	struct chunk_cache_stats st;
	chunk_cache_stats(cc, &st);
	uint64_t decodes = st.decodes;
	for (uint64_t k = 0; k < 2 && good; k++) {
		const struct chunk_data *d = chunk_cache_get(cc, &owner_a, k, fake_decode, NULL, NULL);
		good = d && d->data[0] == (unsigned char)k;
		if (d)
			chunk_cache_put(cc, d);
	}
	chunk_cache_stats(cc, &st);
	ok(good && st.decodes == decodes && st.readahead_used == 2 && st.readahead_wasted == 0,
	   "chunk cache: read-ahead not used yet is evicted after what a stream went through (%ju decoded again)",
	   (uintmax_t)(st.decodes - decodes));
	ok(st.bytes <= 8u << 20, "chunk cache: ... within its bound (%zu KiB)", st.bytes >> 10);

	/* but no more than a quarter of the cache is kept so: read-ahead
	 * nobody comes for does not crowd out the readers */
	for (uint64_t k = 10; k < 16; k++)
		chunk_cache_prefetch(cc, &owner_a, k, fake_decode, NULL);
	settle(cc);
	for (uint64_t k = 100; k < 120 && good; k++) {
		const struct chunk_data *d = chunk_cache_get(cc, &owner_b, k, fake_decode, NULL, NULL);
		good = d != NULL;
		if (d)
			chunk_cache_put(cc, d);
	}
	chunk_cache_stats(cc, &st);
	/* each step evicts the oldest chunk beyond the 2 MiB spared */
	ok(good && st.readahead_wasted >= 4 && st.bytes <= 8u << 20,
	   "chunk cache: read-ahead beyond a quarter of the cache is evicted as usual (%ju evicted unused)",
	   (uintmax_t)st.readahead_wasted);
	ocitree_chunk_cache_free(cc);
}

/* Chunks between restore points (CP_CONT) are decoded from the restore
 * point before them; a reader going forward goes on with the inflate of the
 * chunk before, restoring one state for the whole layer; any other order
 * still decodes every chunk right. */
static void test_seek_stream(const char *inflate)
{
	if (inflate)
		setenv("OCITREE_INFLATE", inflate, 1);
	else
		unsetenv("OCITREE_INFLATE");
	const char *what = inflate ? inflate : "default";
	uint32_t span = layer_index_checkpoint_span;
	layer_index_checkpoint_span = 16384;
	const struct ent ents[] = {{"a", 'f', NULL, 3u << 20, NULL}};
	struct ocitree_descriptor d;
	char diff_id[OCITREE_DIGEST_MAX];
	put_layer(ents, ARRAY_SIZE(ents), "gzip", 1, &d, diff_id);
	_cleanup_free_ char *cache = xasprintf("%s/cache-stream-%s", tmpdir, what);
	struct ocitree_layer_index *idx = open_idx(&d, diff_id, cache, NULL);
	layer_index_checkpoint_span = span;
	size_t cont = 0, resumable = 0;
	for (size_t k = 0; idx && k < idx->n_cps; k++) {
		if (idx->cps[k].kind == CP_CONT)
			cont++;
		else
			resumable++;
	}
	/* ISA-L saves a state every second chunk; zlib's checkpoints are all
	 * resumable, each at the first deflate block boundary a span past the
	 * one before (its blocks are long: fewer of them) */
	bool zlib = inflate && strcmp(inflate, "zlib") == 0;
	ok(idx && (zlib ? cont == 0 && resumable > 4 : cont > 80 && resumable > 80) && idx->blob_map,
	   "stream (%s): %zu chunks, %zu resumable", what, idx ? idx->n_cps : 0, resumable);
	if (!idx)
		goto out;
	bool good = true;
	uint64_t before = __atomic_load_n(&layer_seek_restores, __ATOMIC_RELAXED);
	for (size_t k = 0; k < idx->n_cps && good; k++) {
		struct chunk_data c = {0};
		good = layer_index_decode_chunk(idx, NULL, k, &c, NULL) == 0 &&
		       c.len == idx_chunk_end(idx, k) - idx->cps[k].out_off;
		free(c.data);
	}
	uint64_t restores = __atomic_load_n(&layer_seek_restores, __ATOMIC_RELAXED) - before;
	ok(good && restores == 1, "stream (%s): a sequential decode restores one state (%ju)", what,
	   (uintmax_t)restores);
	/* backwards: every chunk from its restore point */
	before = __atomic_load_n(&layer_seek_restores, __ATOMIC_RELAXED);
	for (size_t k = idx->n_cps; k-- > 0 && good;) {
		struct chunk_data c = {0};
		good = layer_index_decode_chunk(idx, NULL, k, &c, NULL) == 0;
		free(c.data);
	}
	restores = __atomic_load_n(&layer_seek_restores, __ATOMIC_RELAXED) - before;
	ok(good && restores == idx->n_cps, "stream (%s): backwards, each chunk from its restore point", what);
	ok(check_file(idx, "a", 3u << 20), "stream (%s): every byte right, read in any order", what);
out:
	ocitree_layer_index_free(idx);
	ocitree_descriptor_clear(&d);
	unsetenv("OCITREE_INFLATE");
	if (forced_inflate)
		setenv("OCITREE_INFLATE", forced_inflate, 1);
}

/* Read-ahead skips the data of files a tree hides. */
static void test_readahead_live(void)
{
	const struct ent l1[] = {
		{"a", 'f', NULL, 3u << 20, NULL},
		{"hidden", 'f', NULL, 8u << 20, NULL},
		{"z", 'f', NULL, 3u << 20, NULL},
	};
	const struct ent l2[] = {
		{".wh.hidden", 'f', NULL, 0, NULL},
	};
	struct ocitree_descriptor d[2];
	char diff_id[2][OCITREE_DIGEST_MAX];
	put_layer(l1, ARRAY_SIZE(l1), "gzip", 1, &d[0], diff_id[0]);
	put_layer(l2, ARRAY_SIZE(l2), "gzip", 1, &d[1], diff_id[1]);
	_cleanup_free_ char *cache = xasprintf("%s/cache-live", tmpdir);
	struct ocitree_chunk_cache *cc = ocitree_chunk_cache_new(64u << 20);
	chunk_cache_set_readahead(cc, 8);
	struct ocitree_layer_index *layers[2] = {open_idx(&d[0], diff_id[0], cache, cc),
						 open_idx(&d[1], diff_id[1], cache, cc)};
	struct ocitree_tree *t = layers[0] && layers[1] ? ocitree_tree_build(layers, 2, 0, NULL) : NULL;
	ok(t != NULL, "read-ahead: tree of a layer hiding another's file");
	if (t) {
		unsigned char *want[2] = {gen("a", 3u << 20), gen("z", 3u << 20)};
		struct reader_job jobs[2] = {
			{.idx = layers[0], .e = find(layers[0], "a"), .want = want[0], .step = 128u << 10},
			{.idx = layers[0], .e = find(layers[0], "z"), .want = want[1], .step = 128u << 10},
		};
		bool good = run_readers(&jobs[0], 1) && run_readers(&jobs[1], 1);
		struct chunk_cache_stats st;
		chunk_cache_stats(cc, &st);
		/* a and z touch 25 or 26 chunks; hidden alone 31 more */
		ok(good && st.decodes <= 2 * ((3u << 20) / CHUNK_CACHE_CHUNK + 1) + 1,
		   "read-ahead: the hidden file's chunks are not decoded (%ju decodes)",
		   (uintmax_t)st.decodes);
		free(want[0]);
		free(want[1]);
	}
	ocitree_tree_free(t);
	ocitree_layer_index_free(layers[0]);
	ocitree_layer_index_free(layers[1]);
	ocitree_chunk_cache_free(cc);
	ocitree_descriptor_clear(&d[0]);
	ocitree_descriptor_clear(&d[1]);
}

/* ---- thread creation failing ---- */

/* thread_create, failing as told; the threads it starts are counted while
 * they run.  Threads started after a failure wait a little before they
 * begin: one that its starter forgot to join is still counted when the
 * starter returns. */
static int fail_mask;      /* bit i: the (i+1)th call fails */
static int create_calls;   /* calls so far */
static int threads_alive;  /* atomic */

struct counted {
	void *(*fn)(void *);
	void *arg;
	bool late;
};

static void *counted_main(void *p)
{
	struct counted c = *(struct counted *)p;
	free(p);
	if (c.late)
		nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
	void *r = c.fn(c.arg);
	__atomic_fetch_sub(&threads_alive, 1, __ATOMIC_SEQ_CST);
	return r;
}

static int flaky_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	int call = create_calls++;
	if (call < 31 && (fail_mask & (1 << call)))
		return EAGAIN;
	struct counted *c = xmalloc(sizeof(*c));
	c->fn = fn;
	c->arg = arg;
	c->late = (fail_mask & ((1 << call) - 1)) != 0;
	__atomic_fetch_add(&threads_alive, 1, __ATOMIC_SEQ_CST);
	int e = pthread_create(t, attr, counted_main, c);
	if (e) {
		__atomic_fetch_sub(&threads_alive, 1, __ATOMIC_SEQ_CST);
		free(c);
	}
	return e;
}

static void test_thread_failure(void)
{
	unsetenv("OCITREE_INFLATE");
	if (forced_inflate)
		setenv("OCITREE_INFLATE", forced_inflate, 1);
	enum { N = 5 };
	struct ocitree_descriptor d[N];
	char diff_ids[N][OCITREE_DIGEST_MAX];
	char *ids[N];
	char names[N][16];
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "file%d", i);
		const struct ent ents[] = {{names[i], 'f', NULL, (size_t)(300000 + 70000 * i), NULL}};
		put_layer(ents, 1, "gzip", 1, &d[i], diff_ids[i]);
		ids[i] = diff_ids[i];
	}
	thread_create = flaky_create;
	/* open_many with 4 threads asks for 3 helpers: the first cannot be
	 * started, the next could be; a helper that was started must be
	 * joined, and none that was not (it used to join thread ids never
	 * set and leave a helper running on the caller's stack).  The index
	 * passes' hashing threads fail to start as well: they hash inline. */
	for (int round = 0; round < 2; round++) {
		fail_mask = round == 0 ? 1 : ~0;
		create_calls = 0;
		_cleanup_free_ char *cache = xasprintf("%s/cache-threads-%d", tmpdir, round);
		struct ocitree_layer_index_opts o = {.cache_dir = cache, .no_write = true};
		struct ocitree_layer_index *out[N];
		struct ocitree_error *err = NULL;
		int r = ocitree_layer_index_open_many(layout, d, ids, N, &o, 4, out, &err);
		ok(r == 0, "open_many, %s: every layer opens (%s)",
		   round == 0 ? "the first helper cannot start" : "no thread can start", err ? err->msg : "ok");
		ok(__atomic_load_n(&threads_alive, __ATOMIC_SEQ_CST) == 0,
		   "open_many, %s: no thread left running", round == 0 ? "the first helper cannot start" : "no thread can start");
		ok(create_calls >= 1, "open_many: thread creation was tried (%d calls)", create_calls);
		bool good = r == 0;
		for (int i = 0; i < N && good; i++)
			good = check_file(out[i], names[i], (size_t)(300000 + 70000 * i));
		ok(good, "open_many, %s: the indexes read right",
		   round == 0 ? "the first helper cannot start" : "no thread can start");
		if (r == 0)
			for (int i = 0; i < N; i++)
				ocitree_layer_index_free(out[i]);
		ocitree_error_free(err);
	}
	/* a wrong diff_id is still caught when the hash runs inline */
	create_calls = 0;
	fail_mask = ~0;
	_cleanup_free_ char *cache = xasprintf("%s/cache-threads-bad", tmpdir);
	struct ocitree_layer_index_opts o = {.cache_dir = cache, .no_write = true};
	struct ocitree_error *err = NULL;
	struct ocitree_layer_index *idx = ocitree_layer_index_open(layout, &d[0], ids[1], &o, &err);
	ok(!idx && err && err->kind == OCITREE_ERROR_DIGEST, "no hashing thread: a wrong diff_id is an error (%s)",
	   err ? err->msg : "none");
	ocitree_layer_index_free(idx);
	ocitree_error_free(err);
	thread_create = pthread_create;
	for (int i = 0; i < N; i++)
		ocitree_descriptor_clear(&d[i]);
}

/* ---- merge semantics ---- */

static struct ocitree_layer_index *layer_of(const struct ent *ents, size_t n)
{
	struct ocitree_descriptor d;
	char diff_id[OCITREE_DIGEST_MAX];
	put_layer(ents, n, "none", 1, &d, diff_id);
	_cleanup_free_ char *cache = xasprintf("%s/cache-tree", tmpdir);
	struct ocitree_layer_index *idx = open_idx(&d, diff_id, cache, NULL);
	ocitree_descriptor_clear(&d);
	return idx;
}

static void test_tree(void)
{
	const struct ent l1[] = {
		{"a", 'd', NULL, 0, NULL},          {"a/keep", 'f', NULL, 1, NULL},    {"a/gone", 'f', NULL, 2, NULL},
		{"o", 'd', NULL, 0, NULL},          {"o/lower", 'f', NULL, 3, NULL},   {"o/sub", 'd', NULL, 0, NULL},
		{"o/sub/x", 'f', NULL, 1, NULL},    {"f2d", 'f', NULL, 4, NULL},       {"d2f", 'd', NULL, 0, NULL},
		{"d2f/c", 'f', NULL, 1, NULL},      {"h1", 'f', NULL, 10, NULL},       {"h2", 'h', "h1", 0, NULL},
		{"wd", 'd', NULL, 0, NULL},         {"wd/deep", 'f', NULL, 1, NULL},
	};
	const struct ent l2[] = {
		{"a/.wh.gone", 'f', NULL, 0, NULL}, {"o/.wh..wh..opq", 'f', NULL, 0, NULL},
		{"o/upper", 'f', NULL, 1, NULL},    {"f2d", 'd', NULL, 0, NULL},
		{"f2d/in", 'f', NULL, 1, NULL},     {"d2f", 'f', NULL, 5, NULL},
		{"h3", 'h', "h1", 0, NULL},         {".wh.wd", 'f', NULL, 0, NULL},
		{"implicit/dir/file", 'f', NULL, 1, NULL},
	};
	struct ocitree_layer_index *layers[2] = {layer_of(l1, ARRAY_SIZE(l1)), layer_of(l2, ARRAY_SIZE(l2))};
	ok(layers[0] && layers[1], "tree: layers indexed");
	if (!layers[0] || !layers[1])
		return;
	struct ocitree_error *err = NULL;
	struct ocitree_tree *t = ocitree_tree_build(layers, 2, 0, &err);
	ok(t != NULL, "tree: merged");
	struct stat st;
	ok(ocitree_tree_lookup_path(t, "a/keep") && !ocitree_tree_lookup_path(t, "a/gone") &&
		   !ocitree_tree_lookup_path(t, "a/.wh.gone"),
	   "tree: whiteout hides the lower file, and is not shown");
	ok(ocitree_tree_dir_size(t, ocitree_tree_lookup_path(t, "o")) == 1 && ocitree_tree_lookup_path(t, "o/upper"),
	   "tree: opaque directory keeps only the upper layer");
	uint32_t f2d = ocitree_tree_lookup_path(t, "f2d");
	ok(ocitree_tree_stat(t, f2d, &st) == 0 && S_ISDIR(st.st_mode) && ocitree_tree_lookup_path(t, "f2d/in"),
	   "tree: file replaced by a directory");
	uint32_t d2f = ocitree_tree_lookup_path(t, "d2f");
	ok(ocitree_tree_stat(t, d2f, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 5 &&
		   !ocitree_tree_lookup_path(t, "d2f/c"),
	   "tree: directory replaced by a file");
	uint32_t h1 = ocitree_tree_lookup_path(t, "h1");
	ok(h1 && h1 == ocitree_tree_lookup_path(t, "h2") && h1 == ocitree_tree_lookup_path(t, "h3"),
	   "tree: hardlinks share one inode, across layers");
	ok(ocitree_tree_stat(t, h1, &st) == 0 && st.st_nlink == 3 && st.st_size == 10, "tree: nlink is 3");
	ok(!ocitree_tree_lookup_path(t, "wd") && !ocitree_tree_lookup_path(t, "wd/deep"), "tree: whiteout of a directory");
	uint32_t imp = ocitree_tree_lookup_path(t, "implicit/dir");
	ok(imp && ocitree_tree_stat(t, imp, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0755 &&
		   ocitree_tree_entry(t, imp, NULL) == NULL,
	   "tree: missing parents are made up");
	/* a, o, f2d and implicit are the root's directories */
	ocitree_tree_stat(t, OCITREE_TREE_ROOT, &st);
	is_int(st.st_nlink, 2 + 4, "tree: root nlink counts subdirectories");
	/* names are sorted and inode numbers are the same on every build */
	const char *prev = "";
	bool sorted = true;
	for (uint32_t i = 0; i < ocitree_tree_dir_size(t, OCITREE_TREE_ROOT); i++) {
		const char *n = ocitree_tree_dir_entry(t, OCITREE_TREE_ROOT, i, NULL);
		sorted = sorted && strcmp(prev, n) < 0;
		prev = n;
	}
	ok(sorted, "tree: children in name order");
	struct ocitree_tree *t2 = ocitree_tree_build(layers, 2, 0, NULL);
	ok(t2 && ocitree_tree_inodes(t2) == ocitree_tree_inodes(t) &&
		   ocitree_tree_lookup_path(t2, "o/upper") == ocitree_tree_lookup_path(t, "o/upper"),
	   "tree: inode numbers are stable");
	diag("tree: %u inodes in %zu bytes", ocitree_tree_inodes(t), ocitree_tree_memory(t));
	ocitree_tree_free(t2);
	ocitree_tree_free(t);

	t = ocitree_tree_build(layers + 1, 1, OCITREE_TREE_RAW, &err);
	ok(t && ocitree_tree_lookup_path(t, "a/.wh.gone") && ocitree_tree_lookup_path(t, "o/.wh..wh..opq") &&
		   !ocitree_tree_lookup_path(t, "h3"),
	   "tree: a raw layer shows whiteouts; a hardlink to a lower layer is dropped");
	ocitree_tree_free(t);
	ocitree_error_free(err);
	ocitree_layer_index_free(layers[0]);
	ocitree_layer_index_free(layers[1]);
}

/* Do a and b show the same tree (names, inode numbers, attributes)? */
static bool same_tree(const struct ocitree_tree *a, const struct ocitree_tree *b)
{
	if (!a || !b || ocitree_tree_inodes(a) != ocitree_tree_inodes(b))
		return false;
	for (uint32_t i = 1; i <= ocitree_tree_inodes(a); i++) {
		struct stat sa, sb;
		if (ocitree_tree_stat(a, i, &sa) < 0 || ocitree_tree_stat(b, i, &sb) < 0 || sa.st_mode != sb.st_mode ||
		    sa.st_size != sb.st_size || sa.st_nlink != sb.st_nlink || sa.st_uid != sb.st_uid ||
		    sa.st_mtim.tv_sec != sb.st_mtim.tv_sec ||
		    ocitree_tree_dir_size(a, i) != ocitree_tree_dir_size(b, i))
			return false;
		for (uint32_t k = 0; k < ocitree_tree_dir_size(a, i); k++) {
			uint32_t ca = 0, cb = 0;
			const char *na = ocitree_tree_dir_entry(a, i, k, &ca),
			           *nb = ocitree_tree_dir_entry(b, i, k, &cb);
			if (!na || !nb || strcmp(na, nb) != 0 || ca != cb)
				return false;
		}
	}
	return true;
}

/* The one file in dir, its inode number in *ino; NULL if not exactly one. */
static char *only_file(const char *dir, ino_t *ino)
{
	DIR *d = opendir(dir);
	char *found = NULL;
	int n = 0;
	for (struct dirent *e; d && (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		n++;
		free(found);
		found = xasprintf("%s/%s", dir, e->d_name);
	}
	if (d)
		closedir(d);
	struct stat st;
	if (n != 1 || !found || stat(found, &st) < 0) {
		free(found);
		return NULL;
	}
	*ino = st.st_ino;
	return found;
}

/* the merged tree kept in the cache: mapped back the same, and merged again
 * when the file is damaged or of another format version */
static void test_tree_cache(void)
{
	const struct ent l1[] = {
	    {"a", 'd', NULL, 0, NULL},       {"a/keep", 'f', NULL, 1, NULL}, {"a/gone", 'f', NULL, 2, NULL},
	    {"h1", 'f', NULL, 10, NULL},     {"h2", 'h', "h1", 0, NULL},     {"o", 'd', NULL, 0, NULL},
	    {"o/lower", 'f', NULL, 3, NULL},
	};
	const struct ent l2[] = {
	    {"a/.wh.gone", 'f', NULL, 0, NULL},
	    {"o/.wh..wh..opq", 'f', NULL, 0, NULL},
	    {"o/upper", 'f', NULL, 1, NULL},
	    {"deep/er/file", 'f', NULL, 4, NULL},
	};
	struct ocitree_layer_index *layers[2] = {layer_of(l1, ARRAY_SIZE(l1)), layer_of(l2, ARRAY_SIZE(l2))};
	ok(layers[0] && layers[1], "tree cache: layers indexed");
	if (!layers[0] || !layers[1])
		return;
	_cleanup_free_ char *cache = xasprintf("%s/cache-trees", tmpdir);
	_cleanup_free_ char *dir = xasprintf("%s/tree-v1/sha256", cache);
	struct ocitree_error *err = NULL;
	struct ocitree_tree *built = ocitree_tree_build(layers, 2, 0, &err);
	struct ocitree_tree *t = ocitree_tree_open_cached(layers, 2, 0, cache, false, &err);
	ino_t ino = 0, ino2 = 0;
	_cleanup_free_ char *file = only_file(dir, &ino);
	ok(t && file && same_tree(built, t), "tree cache: the first open merges and writes the file");
	ocitree_tree_free(t);
	t = ocitree_tree_open_cached(layers, 2, 0, cache, false, &err);
	free(only_file(dir, &ino2));
	ok(t && same_tree(built, t) && ino2 == ino, "tree cache: the second maps it: the same tree, the file kept");
	ok(t && ocitree_tree_lookup_path(t, "deep/er/file") && !ocitree_tree_lookup_path(t, "a/gone") &&
	       ocitree_tree_dir_size(t, ocitree_tree_lookup_path(t, "o")) == 1,
	   "tree cache: lookups in the mapped tree");
	ocitree_tree_free(t);

	/* one byte of a name changed: the checksum catches it */
	int fd = file ? open(file, O_RDWR) : -1;
	struct stat st;
	char c = 0;
	bool damaged = fd >= 0 && fstat(fd, &st) == 0 && pread(fd, &c, 1, st.st_size - 2) == 1 &&
	               (c ^= 1, pwrite(fd, &c, 1, st.st_size - 2) == 1);
	if (fd >= 0)
		close(fd);
	t = ocitree_tree_open_cached(layers, 2, 0, cache, false, &err);
	free(only_file(dir, &ino2));
	ok(damaged && t && same_tree(built, t) && ino2 != ino,
	   "tree cache: a damaged file is merged again and rewritten");
	ocitree_tree_free(t);

	/* an older format version (the u32 after the magic) is not read as this one */
	ino = ino2;
	fd = file ? open(file, O_RDWR) : -1;
	uint32_t v = 0;
	bool old = fd >= 0 && pwrite(fd, &v, sizeof(v), 8) == sizeof(v);
	if (fd >= 0)
		close(fd);
	t = ocitree_tree_open_cached(layers, 2, 0, cache, false, &err);
	free(only_file(dir, &ino2));
	fd = file ? open(file, O_RDONLY) : -1;
	bool rewritten = fd >= 0 && pread(fd, &v, sizeof(v), 8) == sizeof(v) && v != 0;
	if (fd >= 0)
		close(fd);
	ok(old && t && same_tree(built, t) && ino2 != ino && rewritten,
	   "tree cache: a file of another format version is merged again, not misread");
	ocitree_tree_free(t);

	/* --rebuild-index merges again; other flags are another tree */
	t = ocitree_tree_open_cached(layers, 2, 0, cache, true, &err);
	ino = ino2;
	free(only_file(dir, &ino2));
	ok(t && same_tree(built, t) && ino2 != ino, "tree cache: rebuild merges again");
	ocitree_tree_free(t);
	struct ocitree_tree *raw = ocitree_tree_build(layers, 2, OCITREE_TREE_RAW, &err);
	t = ocitree_tree_open_cached(layers, 2, OCITREE_TREE_RAW, cache, false, &err);
	ok(t && same_tree(raw, t) && !only_file(dir, &ino2) && ocitree_tree_lookup_path(t, "a/.wh.gone"),
	   "tree cache: a raw tree is a file of its own");
	ocitree_tree_free(t);
	ocitree_tree_free(raw);
	ok(!err, "tree cache: no error");
	ocitree_error_free(err);
	ocitree_tree_free(built);
	ocitree_layer_index_free(layers[0]);
	ocitree_layer_index_free(layers[1]);
}

/* a layer as an overlayfs lower directory (the layer store's diff/) */
static void test_overlay_tree(void)
{
	const struct ent l[] = {
		{"a", 'd', NULL, 0, NULL},
		{"a/.wh.gone", 'f', NULL, 0, NULL},
		{"o/.wh..wh..opq", 'f', NULL, 0, NULL},
		{"o/new", 'f', NULL, 1, NULL},
		{".wh.re", 'f', NULL, 0, NULL},
		{"re", 'd', NULL, 0, NULL},
		{"re/x", 'f', NULL, 1, NULL},
		{"file", 'f', NULL, 3, "trusted.overlay.redirect=/etc"},
		{"kept", 'f', NULL, 3, "user.kept=1"},
		{"h1", 'f', NULL, 2, NULL},
		{"h2", 'h', "h1", 0, NULL},
		{"refile", 'f', NULL, 2, NULL},
		{".wh.refile", 'f', NULL, 0, NULL},
	};
	struct ocitree_layer_index *idx = layer_of(l, ARRAY_SIZE(l));
	ok(idx != NULL, "overlay tree: layer indexed");
	if (!idx)
		return;
	struct ocitree_error *err = NULL;
	struct ocitree_tree *t = ocitree_tree_build(&idx, 1, OCITREE_TREE_OVERLAY, &err);
	ok(t != NULL, "overlay tree: built");
	struct stat st;
	uint32_t gone = ocitree_tree_lookup_path(t, "a/gone");
	ok(gone && ocitree_tree_stat(t, gone, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == 0 &&
		   !ocitree_tree_lookup_path(t, "a/.wh.gone"),
	   "overlay tree: a whiteout is a 0/0 character device of the name it hides");
	struct ocitree_tree_data d;
	ok(ocitree_tree_read(t, gone, 0, 10, &d, NULL) < 0, "overlay tree: a whiteout cannot be read");
	uint32_t o = ocitree_tree_lookup_path(t, "o");
	ok(o && ocitree_tree_is_opaque(t, o) && ocitree_tree_dir_size(t, o) == 1 && !ocitree_tree_is_opaque(t, gone),
	   "overlay tree: the opaque marker marks its directory and is not shown");
	uint32_t cur = 0;
	const char *name;
	const void *value;
	size_t len;
	ok(ocitree_tree_xattr_next(t, o, &cur, &name, &value, &len) && strcmp(name, "trusted.overlay.opaque") == 0 &&
		   len == 1 && memcmp(value, "y", 1) == 0 && !ocitree_tree_xattr_next(t, o, &cur, &name, &value, &len),
	   "overlay tree: an opaque directory has trusted.overlay.opaque=y");
	uint32_t re = ocitree_tree_lookup_path(t, "re");
	ok(re && ocitree_tree_is_opaque(t, re) && ocitree_tree_lookup_path(t, "re/x"),
	   "overlay tree: a directory whited out and made again in one layer is opaque");
	uint32_t refile = ocitree_tree_lookup_path(t, "refile");
	ok(refile && ocitree_tree_stat(t, refile, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 2,
	   "overlay tree: a file whited out and made again in one layer is the file");
	cur = 0;
	ok(!ocitree_tree_xattr_next(t, ocitree_tree_lookup_path(t, "file"), &cur, &name, &value, &len),
	   "overlay tree: a layer's own overlay xattrs are not shown");
	cur = 0;
	ok(ocitree_tree_xattr_next(t, ocitree_tree_lookup_path(t, "kept"), &cur, &name, &value, &len) &&
		   strcmp(name, "user.kept") == 0,
	   "overlay tree: other xattrs are");
	uint32_t h1 = ocitree_tree_lookup_path(t, "h1");
	ok(h1 && h1 == ocitree_tree_lookup_path(t, "h2"), "overlay tree: hardlinks share one inode");
	ocitree_tree_free(t);

	t = ocitree_tree_build(&idx, 1, OCITREE_TREE_OVERLAY | OCITREE_TREE_OVERLAY_USER, NULL);
	cur = 0;
	ok(t && ocitree_tree_xattr_next(t, ocitree_tree_lookup_path(t, "o"), &cur, &name, &value, &len) &&
		   strcmp(name, "user.overlay.opaque") == 0,
	   "overlay tree: user.overlay.opaque for rootless overlayfs");
	ocitree_tree_free(t);
	struct ocitree_layer_index *two[2] = {idx, idx};
	ok(!ocitree_tree_build(two, 2, OCITREE_TREE_OVERLAY, &err) && err && err->kind == OCITREE_ERROR_USAGE,
	   "overlay tree: of one layer only");
	ocitree_error_free(err);
	ocitree_layer_index_free(idx);
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 1;
	_cleanup_free_ char *lp = xasprintf("%s/layout", tmpdir);
	struct ocitree_error *err = NULL;
	if (ocitree_layout_create(lp, &err) < 0 || !(layout = ocitree_layout_open(lp, &err))) {
		printf("Bail out! %s\n", err ? err->msg : "layout");
		return 1;
	}
	memset(long_name, 'n', sizeof(long_name) - 1);
	for (size_t i = 50; i < sizeof(long_name) - 1; i += 50)
		long_name[i] = '/';
	forced_inflate = getenv("OCITREE_INFLATE");
	test_index("gzip", 1, NULL);
	test_index("gzip", 1, "zlib");
	test_index("gzip", 3, NULL);
	test_index("gzip", 3, "zlib");
	test_index("none", 1, NULL);
	test_truncated_blob();
	test_chunk_cache();
	test_seek_stream(NULL);
	test_seek_stream("zlib");
	test_evict_readahead_last();
	test_readahead_live();
	test_thread_failure();
	test_tree();
	test_tree_cache();
	test_overlay_tree();
	ocitree_layout_free(layout);
	_cleanup_free_ char *rm = xasprintf("rm -rf '%s'", tmpdir);
	if (system(rm) != 0)
		diag("could not remove %s", tmpdir);
	return done_testing();
}
