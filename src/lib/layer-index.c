/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Layer indexes (see ocitree/layer-index.h): the index pass, the cache file
 * format, and random-access reads of the uncompressed tar.
 *
 * Index file format, version 1, host byte order (the endian mark makes a
 * file from another byte order look corrupt, so it is rebuilt):
 *
 *   struct idx_header                      (offsets below are from file start)
 *   entries      n_entries * struct ocitree_layer_entry
 *   strings      NUL-terminated names; offset 0 is ""
 *   xattrs       per entry with xattrs, 4-aligned: u32 count, then per xattr
 *                u32 namelen, u32 valuelen, name, NUL, value
 *   checkpoints  n_checkpoints * struct idx_checkpoint (gzip only)
 *   windows      per checkpoint, raw-deflated: the 32 KiB window before it
 *                (zlib checkpoints) or the ISA-L inflate state (ISA-L ones)
 *
 * Gzip checkpoints come in two kinds.  Built with zlib (inflate with
 * Z_BLOCK, as in zlib's zran example), a checkpoint is a deflate block
 * boundary: bit offset plus window.  Built with ISA-L, which inflates 3-4x
 * faster but cannot stop at block boundaries, a checkpoint is a copy of
 * ISA-L's whole inflate state at exactly every CHECKPOINT_SPAN of output
 * (the state is self-contained and resumable by the streaming contract of
 * isal_inflate: it holds the history, the current Huffman tables and the
 * buffered input bits).  Such an index records the ISA-L version and state
 * size and is rebuilt by a program with another ISA-L.
 *
 * meta_crc is the CRC-32 of the header (with meta_crc 0) and every section
 * but windows, checked at load; each window has its own CRC-32 (checked
 * when used), so loading does not read them.
 *
 * What the checksums guard against is damage (a torn write, a bad disk).
 * The cache is the user's own directory, trusted like the rest of their
 * home; still, attach() checks everything a reader follows (offsets, sizes,
 * alignment, normalised paths, type against mode, the order of checkpoints)
 * as if the file were hostile, since recomputing a CRC-32 is easy, and
 * fuzz-index checks it that way.  The one part taken on trust is the content
 * of an ISA-L state: restoring a crafted one is outside what ISA-L promises
 * to survive, so it stays guarded by its checksum only.  (The uncompressed
 * tar of a zstd layer in the cache is trusted the same way: reads are
 * served from it as it is.)
 */
#include "config.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>
#ifdef HAVE_ISAL
#include <isa-l.h>
#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#endif

#include "chunk-cache.h"
#include "layer-index-internal.h"
#include "layout-internal.h"
#include "ocitree/digest.h"
#include "ocitree/layer-index.h"
#include "ocitree/layer.h"
#include "tar-scan.h"
#include "util.h"

#define IDX_MAGIC "OCITIDX\n"
#define IDX_VERSION 1u
#define IDX_ENDIAN 0x01020304u
#define IDX_DIR "index-v1"
#define TAR_DIR "tar"
/* output between two gzip checkpoints */
#define CHECKPOINT_SPAN (1u << 20)
uint32_t layer_index_checkpoint_span = CHECKPOINT_SPAN;
#define WINDOW_SIZE 32768u

static bool use_isal(void)
{
#ifdef HAVE_ISAL
	/* OCITREE_INFLATE=zlib forces the zlib paths (tests compare both) */
	const char *e = getenv("OCITREE_INFLATE");
	return !(e && strcmp(e, "zlib") == 0);
#else
	return false;
#endif
}

/* CRC-32 as zlib computes it; ISA-L's is many times faster. */
static bool use_isal(void);

static uint32_t crc_update(uint32_t crc, const void *p, size_t n)
{
#ifdef HAVE_ISAL
	if (use_isal())
		return crc32_gzip_refl(crc, (const unsigned char *)p, n);
#endif
	while (n) {
		uInt c = n > (1u << 30) ? 1u << 30 : (uInt)n;
		crc = (uint32_t)crc32(crc, p, c);
		p = (const char *)p + c;
		n -= c;
	}
	return crc;
}

/* Append src raw-deflated (fast, level 1) to dst; *len gets its size. */
static void pack(struct buf *dst, const void *src, size_t n, uint32_t *len, uint32_t *crc)
{
	size_t bound = n + n / 8 + 1024;
	buf_reserve(dst, bound);
	unsigned char *out = (unsigned char *)dst->data + dst->len;
	size_t got = 0;
#ifdef HAVE_ISAL
	if (use_isal()) {
		struct isal_zstream zs;
		isal_deflate_stateless_init(&zs);
		_cleanup_free_ uint8_t *lvl = xmalloc(ISAL_DEF_LVL1_DEFAULT);
		zs.level = 1;
		zs.level_buf = lvl;
		zs.level_buf_size = ISAL_DEF_LVL1_DEFAULT;
		zs.gzip_flag = 0;
		zs.end_of_stream = 1;
		zs.flush = NO_FLUSH;
		zs.next_in = (uint8_t *)src;
		zs.avail_in = (uint32_t)n;
		zs.next_out = out;
		zs.avail_out = (uint32_t)bound;
		if (isal_deflate_stateless(&zs) == COMP_OK)
			got = zs.total_out;
	}
#endif
	if (!got) {
		z_stream z = {0};
		deflateInit2(&z, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
		z.next_in = (Bytef *)src;
		z.avail_in = (uInt)n;
		z.next_out = out;
		z.avail_out = (uInt)bound;
		deflate(&z, Z_FINISH);
		got = z.total_out;
		deflateEnd(&z);
	}
	*len = (uint32_t)got;
	*crc = crc_update(0, out, got);
	dst->len += got;
}

/* Inflate what pack() made into out (of exactly n bytes). */
static int unpack(const unsigned char *in, size_t in_len, uint32_t crc, void *out, size_t n, struct ocitree_error **err)
{
	if (crc_update(0, in, in_len) != crc)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "index checkpoint data checksum mismatch");
#ifdef HAVE_ISAL
	if (use_isal()) {
		_cleanup_free_ struct inflate_state *st = xcalloc(1, sizeof(*st)); /* zeroed: its bytes are saved in checkpoints */
		isal_inflate_init(st);
		st->next_in = (uint8_t *)in;
		st->avail_in = (uint32_t)in_len;
		st->next_out = out;
		st->avail_out = (uint32_t)n;
		st->crc_flag = ISAL_DEFLATE;
		if (isal_inflate_stateless(st) == ISAL_DECOMP_OK && st->total_out == n)
			return 0;
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "index checkpoint data is corrupt");
	}
#endif
	z_stream zs = {0};
	inflateInit2(&zs, -15);
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)in_len;
	zs.next_out = out;
	zs.avail_out = (uInt)n;
	int r = inflate(&zs, Z_FINISH);
	size_t got = zs.total_out;
	inflateEnd(&zs);
	if (r != Z_STREAM_END || got != n)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "index checkpoint data is corrupt");
	return 0;
}

struct idx_header {
	char magic[8];
	uint32_t version;
	uint32_t endian;
	uint32_t compression;
	uint32_t meta_crc;
	uint64_t blob_size;
	uint64_t tar_size;
	uint64_t n_entries;
	uint64_t strings_off, strings_len;
	uint64_t xattrs_off, xattrs_len;
	uint64_t checkpoints_off, n_checkpoints;
	uint64_t windows_off, windows_len;
	uint64_t entry_size, checkpoint_size; /* sizeof the records, as a format check */
	uint64_t isal_state_size; /* sizeof(struct inflate_state) of ISA-L checkpoints, else 0 */
	uint64_t isal_version;
	char digest[OCITREE_DIGEST_MAX];
};

/* A place to resume inflating: the deflate block starting at bit
 * (in_off * 8 - bits) of the blob produces tar byte out_off. */
struct idx_checkpoint {
	uint64_t out_off;
	uint64_t in_off;     /* first byte with whole bits of the block */
	uint64_t window_off; /* into windows */
	uint32_t window_len; /* deflated length; 0 at the start of the stream */
	uint32_t window_crc; /* CRC-32 of the deflated window */
	uint32_t chunk_crc;  /* CRC-32 of the output up to the next checkpoint */
	uint8_t bits;        /* bits of the block in the byte at in_off - 1 */
	uint8_t kind;        /* enum cp_kind */
	uint8_t pad[2];
};

enum cp_kind {
	CP_ZLIB = 0,   /* a block boundary: bits and window */
	CP_MEMBER = 1, /* in_off is the start of a gzip member (header included) */
	CP_ISAL = 2,   /* in_off is where ISA-L's saved state resumes reading */
};

struct ocitree_layer_index {
	char digest[OCITREE_DIGEST_MAX];
	enum ocitree_compression comp;
	int blob_fd;
	int data_fd;       /* the uncompressed tar as a file, or -1 */
	uint64_t data_base;
	uint64_t blob_size, tar_size;
	bool cached;
	/* the index: either a mapping of the file or owned buffers */
	void *map;
	size_t map_len;
	void *owned[4];
	const struct ocitree_layer_entry *entries;
	size_t n_entries;
	const char *strings;
	size_t strings_len;
	const unsigned char *xattrs;
	size_t xattrs_len;
	const struct idx_checkpoint *cps;
	size_t n_cps;
	const unsigned char *windows;
	size_t windows_len;
	struct ocitree_chunk_cache *chunks; /* borrowed; may be NULL */
	uint64_t last_end; /* atomic: where the last read ended, to spot sequential readers */
	uint64_t ra_next;  /* atomic: the chunk after the last one read-ahead was asked for */
	uint8_t *live;     /* atomic: bitmap of the chunks holding data a tree shows (bits only added); NULL: all */
};

/* ---------------------------------------------------------------- cache dir */

OCITREE_EXPORT char *ocitree_cache_dir_default(void)
{
	const char *e = getenv("OCITREE_CACHE_DIR");
	if (e && *e)
		return xstrdup(e);
	e = getenv("XDG_CACHE_HOME");
	if (e && *e == '/')
		return xasprintf("%s/ocitree", e);
	e = getenv("HOME");
	if (e && *e == '/')
		return xasprintf("%s/.cache/ocitree", e);
	return NULL;
}

/* mkdir -p of dir/sub/alg relative to nothing; returns an fd of the last. */
static int open_cache_subdir(const char *cache_dir, const char *sub, const char *alg, bool create,
			     struct ocitree_error **err)
{
	_cleanup_free_ char *path = xasprintf("%s/%s/%s", cache_dir, sub, alg);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 || !create)
		return fd >= 0 ? fd : ocitree_error_set(err, errno, "open cache directory '%s'", path);
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return ocitree_error_set(err, errno, "create cache directory '%s'", path);
		*p = '/';
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return ocitree_error_set(err, errno, "create cache directory '%s'", path);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return ocitree_error_set(err, errno, "open cache directory '%s'", path);
	return fd;
}

static char *digest_alg(const char *digest)
{
	return xstrndup(digest, (size_t)(strchr(digest, ':') - digest));
}

/* ---------------------------------------------------------------- building */

struct builder {
	struct tar_scan tar;
	struct ocitree_hasher *diff_hasher; /* NULL when no diff_id is checked */
	uint64_t out;                       /* uncompressed bytes so far */
	/* gzip */
	struct idx_checkpoint *cps;
	size_t n_cps, cap_cps;
	struct buf windows;
	uint32_t chunk_crc;
	/* zstd: the tar cache file being written */
	int tar_fd;
	bool isal; /* gzip checkpoints are ISA-L states */
	struct hash_pipe *pipe; /* when set, diff_hasher runs in its thread */
	const struct ocitree_layer_index_opts *opts;
	uint64_t told; /* out when progress was last told */
};

/* Progress is told every this many uncompressed bytes. */
#define PROGRESS_SPAN (4u << 20)

/* Hashing the uncompressed stream (for the diff_id) costs half as much as
 * inflating it: a second thread does it, fed through a ring of output
 * buffers, so that one big layer uses both cores. */
#define PIPE_SLOTS 8
struct hash_pipe {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;             /* signalled on every change below */
	struct ocitree_hasher *hasher;   /* used by the thread only */
	unsigned char *bufs[PIPE_SLOTS]; /* immutable pointers; contents owned by whoever holds the slot */
	size_t len[PIPE_SLOTS];          /* lock */
	bool queued[PIPE_SLOTS];         /* lock: the slot waits to be hashed */
	size_t head;                     /* lock: the next slot the hasher takes */
	bool done;                       /* lock: nothing more will be queued */
};

static void *pipe_thread(void *arg)
{
	struct hash_pipe *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->queued[p->head] && !p->done)
			pthread_cond_wait(&p->cond, &p->lock);
		if (!p->queued[p->head])
			break;
		size_t k = p->head;
		pthread_mutex_unlock(&p->lock);
		ocitree_hasher_update(p->hasher, p->bufs[k], p->len[k]);
		pthread_mutex_lock(&p->lock);
		p->queued[k] = false;
		p->head = (k + 1) % PIPE_SLOTS;
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static struct hash_pipe *pipe_start(struct ocitree_hasher *h, size_t buf_size)
{
	struct hash_pipe *p = xcalloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->hasher = h;
	for (size_t i = 0; i < PIPE_SLOTS; i++)
		p->bufs[i] = xcalloc(1, buf_size);
	if (pthread_create(&p->thread, NULL, pipe_thread, p) != 0) {
		for (size_t i = 0; i < PIPE_SLOTS; i++)
			free(p->bufs[i]);
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->cond);
		free(p);
		return NULL;
	}
	return p;
}

/* The buffer of slot k, once the hasher is done with it. */
static unsigned char *pipe_buffer(struct hash_pipe *p, size_t k)
{
	pthread_mutex_lock(&p->lock);
	while (p->queued[k])
		pthread_cond_wait(&p->cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
	return p->bufs[k];
}

static void pipe_submit(struct hash_pipe *p, size_t k, size_t len)
{
	pthread_mutex_lock(&p->lock);
	p->len[k] = len;
	p->queued[k] = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* Wait for the hasher to finish everything queued and stop it. */
static void pipe_stop(struct hash_pipe *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->done = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	for (size_t i = 0; i < PIPE_SLOTS; i++)
		free(p->bufs[i]);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

static int builder_output(struct builder *b, const unsigned char *p, size_t n, struct ocitree_error **err)
{
	if (!n)
		return 0;
	if (b->diff_hasher && !b->pipe)
		ocitree_hasher_update(b->diff_hasher, p, n);
	b->chunk_crc = crc_update(b->chunk_crc, p, n);
	b->out += n;
	if (b->tar_fd >= 0 && write_all(b->tar_fd, p, n) < 0)
		return ocitree_error_set(err, errno, "write uncompressed layer cache");
	if (tar_scan_feed(&b->tar, p, n, err) < 0)
		return -1;
	if (b->opts->progress && b->out - b->told >= PROGRESS_SPAN) {
		b->told = b->out;
		struct ocitree_progress pr = {.phase = "index", .bytes = b->out, .entries = b->tar.n_entries};
		b->opts->progress(&pr, b->opts->progress_data);
	}
	/* what follows the end of the archive is not looked at, but it is
	 * decompressed (and, for zstd, written to the cache): a little padding
	 * is normal, more is a bomb, refused as unpack refuses it */
	if (b->tar.ended && b->out - b->tar.end_pos > OCITREE_LAYER_MAX_TRAILER)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
					  "more than %u bytes of data after the end of the archive",
					  OCITREE_LAYER_MAX_TRAILER);
	return 0;
}

static void add_checkpoint(struct builder *b, uint64_t in_off, int bits, enum cp_kind kind, const unsigned char *win,
			   size_t win_len)
{
	if (b->n_cps)
		b->cps[b->n_cps - 1].chunk_crc = b->chunk_crc;
	b->chunk_crc = 0;
	GROW(b->cps, b->cap_cps, b->n_cps + 1);
	struct idx_checkpoint *cp = &b->cps[b->n_cps++];
	memset(cp, 0, sizeof(*cp));
	cp->out_off = b->out;
	cp->in_off = in_off;
	cp->bits = (uint8_t)bits;
	cp->kind = (uint8_t)kind;
	cp->window_off = b->windows.len;
	if (win_len)
		pack(&b->windows, win, win_len, &cp->window_len, &cp->window_crc);
}

#define IN_CHUNK (256u << 10)
#define OUT_CHUNK (256u << 10)

/* Inflate the blob with zlib, stopping at every deflate block boundary
 * (Z_BLOCK) to place a checkpoint when CHECKPOINT_SPAN of output has passed
 * since the last one.  Gzip members may be concatenated. */
static int build_gzip(struct builder *b, struct ocitree_blob_reader *r, struct ocitree_error **err)
{
	_cleanup_free_ unsigned char *in = xmalloc(IN_CHUNK);
	/* output: the last WINDOW_SIZE bytes stay in front of the new output */
	_cleanup_free_ unsigned char *out = xmalloc(WINDOW_SIZE + OUT_CHUNK);
	size_t out_len = 0; /* valid bytes in out */
	z_stream zs = {0};
	if (inflateInit2(&zs, 15 + 16) != Z_OK)
		return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "inflateInit2 failed");
	uint64_t in_total = 0; /* compressed bytes given to zlib */
	bool eof = false, member_done = false, any_member = false, padding = false;
	uint64_t last_cp_out = 0;
	int ret = 0;
	add_checkpoint(b, 0, 0, CP_MEMBER, NULL, 0);
	for (;;) {
		if (zs.avail_in == 0 && !eof) {
			ssize_t n = ocitree_blob_reader_read(r, in, IN_CHUNK, err);
			if (n < 0) {
				ret = -1;
				break;
			}
			if (n == 0)
				eof = true;
			zs.next_in = in;
			zs.avail_in = (uInt)n;
			in_total += (uint64_t)n;
		}
		if (member_done) {
			/* another gzip member may follow; trailing zeros are padding,
			 * and nothing comes after them (as unpack reads it) */
			while (zs.avail_in && *zs.next_in == 0) {
				zs.next_in++;
				zs.avail_in--;
				padding = true;
			}
			if (zs.avail_in == 0) {
				if (eof)
					break;
				continue;
			}
			if (padding) {
				ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "garbage after the gzip stream");
				break;
			}
			inflateReset(&zs);
			member_done = false;
			/* a member boundary is a natural checkpoint: no window needed
			 * (a new member cannot refer back), no bits */
			if (b->out - last_cp_out >= layer_index_checkpoint_span / 4) {
				add_checkpoint(b, in_total - zs.avail_in, 0, CP_MEMBER, NULL, 0);
				last_cp_out = b->out;
			}
		}
		if (zs.avail_in == 0 && eof) {
			ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "gzip stream is truncated");
			break;
		}
		if (out_len == WINDOW_SIZE + OUT_CHUNK) {
			memmove(out, out + out_len - WINDOW_SIZE, WINDOW_SIZE);
			out_len = WINDOW_SIZE;
		}
		zs.next_out = out + out_len;
		zs.avail_out = (uInt)(WINDOW_SIZE + OUT_CHUNK - out_len);
		int z = inflate(&zs, Z_BLOCK);
		size_t produced = (size_t)(zs.next_out - (out + out_len));
		if (z != Z_OK && z != Z_STREAM_END && z != Z_BUF_ERROR) {
			ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "corrupt gzip stream at offset %ju: %s",
						 (uintmax_t)(in_total - zs.avail_in), zs.msg ? zs.msg : "inflate error");
			break;
		}
		if (builder_output(b, out + out_len, produced, err) < 0) {
			ret = -1;
			break;
		}
		out_len += produced;
		if (z == Z_STREAM_END) {
			member_done = true;
			any_member = true;
			continue;
		}
		/* at the end of a block that is not the last one */
		if ((zs.data_type & 128) && !(zs.data_type & 64) && b->out - last_cp_out >= layer_index_checkpoint_span) {
			size_t wl = out_len < WINDOW_SIZE ? out_len : WINDOW_SIZE;
			add_checkpoint(b, in_total - zs.avail_in, zs.data_type & 7, CP_ZLIB, out + out_len - wl, wl);
			last_cp_out = b->out;
		}
	}
	inflateEnd(&zs);
	if (ret == 0 && !any_member)
		ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "empty gzip stream");
	if (ret == 0)
		b->cps[b->n_cps - 1].chunk_crc = b->chunk_crc;
	return ret;
}

#ifdef HAVE_ISAL
/* The gzip pass with ISA-L: a checkpoint (a copy of the inflate state) at
 * exactly every CHECKPOINT_SPAN of output.  Gzip members may be
 * concatenated. */
static int build_gzip_isal(struct builder *b, struct ocitree_blob_reader *r, struct ocitree_error **err)
{
	_cleanup_free_ unsigned char *in = xcalloc(1, IN_CHUNK);
	_cleanup_free_ unsigned char *own_out = NULL;
	_cleanup_free_ struct inflate_state *st = xcalloc(1, sizeof(*st)); /* zeroed: its bytes are saved in checkpoints */
	isal_inflate_init(st);
	st->crc_flag = ISAL_GZIP;
	if (b->diff_hasher)
		b->pipe = pipe_start(b->diff_hasher, OUT_CHUNK);
	if (!b->pipe)
		own_out = xcalloc(1, OUT_CHUNK);
	size_t slot = 0;
	uint64_t span = layer_index_checkpoint_span;
	uint64_t in_total = 0, next_cp = span, last_cp_out = 0;
	bool eof = false, any = false, padding = false;
	b->isal = true;
	add_checkpoint(b, 0, 0, CP_MEMBER, NULL, 0);
	for (;;) {
		if (st->avail_in == 0 && !eof) {
			ssize_t n = ocitree_blob_reader_read(r, in, IN_CHUNK, err);
			if (n < 0)
				return -1;
			if (n == 0)
				eof = true;
			st->next_in = in;
			st->avail_in = (uint32_t)n;
			in_total += (uint64_t)n;
		}
		if (st->block_state == ISAL_BLOCK_FINISH) {
			any = true;
			/* another member may follow; trailing zeros are padding, and
			 * nothing comes after them (as unpack reads it) */
			while (st->avail_in && *st->next_in == 0) {
				st->next_in++;
				st->avail_in--;
				padding = true;
			}
			if (st->avail_in == 0) {
				if (eof)
					break;
				continue;
			}
			if (padding)
				return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "garbage after the gzip stream");
			isal_inflate_reset(st);
			st->crc_flag = ISAL_GZIP;
			if (b->out - last_cp_out >= span / 4) {
				add_checkpoint(b, in_total - st->avail_in, 0, CP_MEMBER, NULL, 0);
				last_cp_out = b->out;
				next_cp = b->out + span;
			}
		}
		if (st->avail_in == 0 && eof)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "gzip stream is truncated");
		uint64_t room = next_cp - b->out;
		unsigned char *out = b->pipe ? pipe_buffer(b->pipe, slot) : own_out;
		st->next_out = out;
		st->avail_out = (uint32_t)(room < OUT_CHUNK ? room : OUT_CHUNK);
		int z = isal_inflate(st);
		if (z != ISAL_DECOMP_OK)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "corrupt gzip stream at offset %ju (ISA-L error %d)",
						  (uintmax_t)(in_total - st->avail_in), z);
		size_t produced = (size_t)(st->next_out - out);
		if (builder_output(b, out, produced, err) < 0)
			return -1;
		if (b->pipe && produced) {
			pipe_submit(b->pipe, slot, produced);
			slot = (slot + 1) % PIPE_SLOTS;
		}
		if (b->out == next_cp) {
			if (st->block_state != ISAL_BLOCK_FINISH) {
				add_checkpoint(b, in_total - st->avail_in, 0, CP_ISAL, (const unsigned char *)st,
					       sizeof(*st));
				last_cp_out = b->out;
			}
			next_cp += span;
		}
	}
	if (!any)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "empty gzip stream");
	/* a checkpoint at the very end has nothing to resume */
	while (b->n_cps > 1 && b->cps[b->n_cps - 1].out_off == b->out)
		b->n_cps--;
	b->cps[b->n_cps - 1].chunk_crc = b->chunk_crc;
	return 0;
}
#endif

static int build_zstd(struct builder *b, struct ocitree_blob_reader *r, struct ocitree_error **err)
{
	_cleanup_free_ unsigned char *in = xmalloc(IN_CHUNK);
	_cleanup_free_ unsigned char *own_out = NULL;
	/* zstd inflates about as fast as SHA-256 hashes: the diff_id is
	 * hashed in a second thread, as for gzip */
	if (b->diff_hasher)
		b->pipe = pipe_start(b->diff_hasher, OUT_CHUNK);
	if (!b->pipe)
		own_out = xmalloc(OUT_CHUNK);
	size_t slot = 0;
	ZSTD_DStream *zd = ZSTD_createDStream();
	if (!zd)
		return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "ZSTD_createDStream failed");
	ZSTD_initDStream(zd);
	int ret = 0;
	size_t last = 1;
	bool any = false;
	for (;;) {
		ssize_t n = ocitree_blob_reader_read(r, in, IN_CHUNK, err);
		if (n < 0) {
			ret = -1;
			break;
		}
		if (n == 0)
			break;
		ZSTD_inBuffer ib = {in, (size_t)n, 0};
		bool full;
		do {
			unsigned char *out = b->pipe ? pipe_buffer(b->pipe, slot) : own_out;
			ZSTD_outBuffer ob = {out, OUT_CHUNK, 0};
			size_t before = ib.pos;
			size_t z = ZSTD_decompressStream(zd, &ob, &ib);
			if (ZSTD_isError(z)) {
				ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "corrupt zstd stream: %s",
							 ZSTD_getErrorName(z));
				goto out;
			}
			/* a call that moved nothing reports the next frame's
			 * header size, not the state of the one that ended */
			if (ob.pos || ib.pos != before)
				last = z;
			any = true;
			if (builder_output(b, out, ob.pos, err) < 0) {
				ret = -1;
				goto out;
			}
			if (b->pipe && ob.pos) {
				pipe_submit(b->pipe, slot, ob.pos);
				slot = (slot + 1) % PIPE_SLOTS;
			}
			full = ob.pos == OUT_CHUNK;
		} while (ib.pos < ib.size || full);
	}
	if (ret == 0 && (!any || last != 0))
		ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "zstd stream is truncated");
out:
	ZSTD_freeDStream(zd);
	return ret;
}

static int build_none(struct builder *b, struct ocitree_blob_reader *r, struct ocitree_error **err)
{
	_cleanup_free_ unsigned char *in = xmalloc(IN_CHUNK);
	for (;;) {
		ssize_t n = ocitree_blob_reader_read(r, in, IN_CHUNK, err);
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if (builder_output(b, in, (size_t)n, err) < 0)
			return -1;
	}
}

static void builder_free(struct builder *b)
{
	pipe_stop(b->pipe);
	b->pipe = NULL;
	tar_scan_free(&b->tar);
	ocitree_hasher_free(b->diff_hasher);
	free(b->cps);
	buf_free(&b->windows);
	if (b->tar_fd >= 0)
		close(b->tar_fd);
}

static uint64_t align8(uint64_t x)
{
	return (x + 7) & ~(uint64_t)7;
}

/* Serialise the built index into one buffer (the file image). */
static void serialise(const struct builder *b, const char *digest, enum ocitree_compression comp, uint64_t blob_size,
		      struct buf *out)
{
	struct idx_header h = {0};
	memcpy(h.magic, IDX_MAGIC, 8);
	h.version = IDX_VERSION;
	h.endian = IDX_ENDIAN;
	h.compression = comp;
	h.blob_size = blob_size;
	h.tar_size = b->out;
	h.n_entries = b->tar.n_entries;
	h.entry_size = sizeof(struct ocitree_layer_entry);
	h.checkpoint_size = sizeof(struct idx_checkpoint);
#ifdef HAVE_ISAL
	if (b->isal) {
		h.isal_state_size = sizeof(struct inflate_state);
		h.isal_version = ISAL_VERSION;
	}
#endif
	snprintf(h.digest, sizeof(h.digest), "%s", digest);
	uint64_t off = align8(sizeof(h));
	uint64_t entries_off = off;
	off = align8(off + h.n_entries * sizeof(struct ocitree_layer_entry));
	h.strings_off = off;
	h.strings_len = b->tar.strings.len;
	off = align8(off + h.strings_len);
	h.xattrs_off = off;
	h.xattrs_len = b->tar.xattrs.len;
	off = align8(off + h.xattrs_len);
	h.checkpoints_off = off;
	h.n_checkpoints = b->n_cps;
	off = align8(off + b->n_cps * sizeof(struct idx_checkpoint));
	h.windows_off = off;
	h.windows_len = b->windows.len;
	off += h.windows_len;

	buf_reset(out);
	buf_reserve(out, off);
	memset(out->data, 0, off);
	/* a layer whose every entry was left out has no entry table */
	if (h.n_entries)
		memcpy(out->data + entries_off, b->tar.entries, h.n_entries * sizeof(struct ocitree_layer_entry));
	if (h.strings_len)
		memcpy(out->data + h.strings_off, b->tar.strings.data, h.strings_len);
	if (h.xattrs_len)
		memcpy(out->data + h.xattrs_off, b->tar.xattrs.data, h.xattrs_len);
	if (b->n_cps)
		memcpy(out->data + h.checkpoints_off, b->cps, b->n_cps * sizeof(struct idx_checkpoint));
	if (h.windows_len)
		memcpy(out->data + h.windows_off, b->windows.data, h.windows_len);
	memcpy(out->data, &h, sizeof(h));
	uint32_t crc = crc_update(0, out->data, h.windows_off);
	((struct idx_header *)out->data)->meta_crc = crc;
	out->len = off;
}

/* A path as tar_path_normalise() makes them: "" or names joined by '/',
 * none empty, "." or "..".  The merged tree takes the components of entry
 * paths for names in the view. */
static bool path_normalised(const char *p)
{
	if (!*p)
		return true;
	for (;;) {
		size_t n = (size_t)(strchrnul(p, '/') - p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (!p[n])
			return true;
		p += n + 1;
	}
}

/* The file type bits an entry of type t has (the tree goes by the type,
 * stat by the mode: they must agree). */
static uint32_t type_bits(uint8_t t)
{
	switch (t) {
	case OCITREE_ENTRY_DIR: return S_IFDIR;
	case OCITREE_ENTRY_SYMLINK: return S_IFLNK;
	case OCITREE_ENTRY_CHR: return S_IFCHR;
	case OCITREE_ENTRY_BLK: return S_IFBLK;
	case OCITREE_ENTRY_FIFO: return S_IFIFO;
	default: return S_IFREG;
	}
}

/* Point idx's sections into an index file image (mapped or in memory),
 * checking everything a reader relies on. */
static int attach(struct ocitree_layer_index *idx, const unsigned char *img, size_t len, const char *digest,
		  struct ocitree_error **err)
{
	struct idx_header h;
	if (len < sizeof(h))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "index file is truncated");
	memcpy(&h, img, sizeof(h));
	if (memcmp(h.magic, IDX_MAGIC, 8) != 0 || h.endian != IDX_ENDIAN)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "not an ocitree index file");
	if (h.version != IDX_VERSION || h.entry_size != sizeof(struct ocitree_layer_entry) ||
	    h.checkpoint_size != sizeof(struct idx_checkpoint))
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "index file version %u", h.version);
	if (strncmp(h.digest, digest, sizeof(h.digest)) != 0)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "index file is for another blob");
	if (h.n_entries > len / sizeof(struct ocitree_layer_entry) || h.strings_off > len ||
	    h.strings_len > len - h.strings_off || h.xattrs_off > len || h.xattrs_len > len - h.xattrs_off ||
	    h.checkpoints_off > len || h.n_checkpoints > (len - h.checkpoints_off) / sizeof(struct idx_checkpoint) ||
	    h.windows_off > len || h.windows_len != len - h.windows_off || h.strings_len == 0 ||
	    h.xattrs_len < 4 || h.compression > OCITREE_COMPRESSION_ZSTD ||
	    align8(sizeof(h)) + h.n_entries * sizeof(struct ocitree_layer_entry) > h.strings_off ||
	    /* sections after the header (the checksum covers the header, then
	     * up to windows_off), checkpoints aligned as they are read */
	    h.xattrs_off < align8(sizeof(h)) || h.checkpoints_off < align8(sizeof(h)) ||
	    h.windows_off < align8(sizeof(h)) || h.checkpoints_off % 8)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "index file is malformed");
	struct idx_header z = h;
	z.meta_crc = 0;
	uint32_t crc = crc_update(0, &z, sizeof(z));
	crc = crc_update(crc, img + sizeof(z), h.windows_off - sizeof(z));
	if (crc != h.meta_crc)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "index file checksum mismatch");
	idx->comp = (enum ocitree_compression)h.compression;
	idx->blob_size = h.blob_size;
	idx->tar_size = h.tar_size;
	idx->entries = (const struct ocitree_layer_entry *)(img + align8(sizeof(h)));
	idx->n_entries = h.n_entries;
	idx->strings = (const char *)img + h.strings_off;
	idx->strings_len = h.strings_len;
	idx->xattrs = img + h.xattrs_off;
	idx->xattrs_len = h.xattrs_len;
	idx->cps = (const struct idx_checkpoint *)(img + h.checkpoints_off);
	idx->n_cps = h.n_checkpoints;
	idx->windows = img + h.windows_off;
	idx->windows_len = h.windows_len;
	if (idx->strings[idx->strings_len - 1] != '\0')
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "index file is malformed");
	/* every offset a reader follows must be in range */
	for (size_t i = 0; i < idx->n_entries; i++) {
		const struct ocitree_layer_entry *e = &idx->entries[i];
		if (e->path >= idx->strings_len || e->link >= idx->strings_len || e->type > OCITREE_ENTRY_FIFO ||
		    (e->mode & S_IFMT) != type_bits(e->type) ||
		    (e->xattrs && (e->xattrs % 4 || e->xattrs > idx->xattrs_len - 4)) ||
		    e->data_off > idx->tar_size || e->size > idx->tar_size - e->data_off ||
		    !path_normalised(idx->strings + e->path) ||
		    (e->type == OCITREE_ENTRY_HARDLINK &&
		     (!idx->strings[e->link] || !path_normalised(idx->strings + e->link))))
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "index file entry %zu is malformed", i);
	}
	bool isal_ok = false;
#ifdef HAVE_ISAL
	isal_ok = h.isal_state_size == sizeof(struct inflate_state) && h.isal_version == ISAL_VERSION;
#endif
	if (idx->comp == OCITREE_COMPRESSION_GZIP) {
		if (idx->n_cps == 0 || idx->cps[0].out_off != 0)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "index file has no checkpoints");
		for (size_t i = 0; i < idx->n_cps; i++) {
			const struct idx_checkpoint *cp = &idx->cps[i];
			if (cp->window_off > idx->windows_len || cp->window_len > idx->windows_len - cp->window_off ||
			    cp->in_off > idx->blob_size || cp->bits > 7 || cp->out_off > idx->tar_size ||
			    (i && cp->out_off <= idx->cps[i - 1].out_off) || (i && cp->in_off < idx->cps[i - 1].in_off) ||
			    cp->kind > CP_ISAL)
				return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
							  "index file checkpoint %zu is malformed", i);
			if (cp->kind == CP_ISAL && !isal_ok)
				return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED,
							  "index file was made with another ISA-L");
		}
	}
	return 0;
}

static int write_index_file(int dirfd, const char *name, const struct buf *img, struct ocitree_error **err)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = open_tmpfile_at(dirfd, "index", &tmp, err);
	if (fd < 0)
		return -1;
	/* no fsync: the checksum catches a file torn by a crash, and a torn
	 * index is simply rebuilt */
	if (write_all(fd, img->data, img->len) < 0 || renameat(dirfd, tmp, dirfd, name) < 0) {
		int e = errno;
		unlinkat(dirfd, tmp, 0);
		return ocitree_error_set(err, e, "write index file");
	}
	return 0;
}

static struct ocitree_layer_index *index_alloc(const char *digest)
{
	struct ocitree_layer_index *idx = xcalloc(1, sizeof(*idx));
	snprintf(idx->digest, sizeof(idx->digest), "%s", digest);
	idx->blob_fd = -1;
	idx->data_fd = -1;
	return idx;
}

/* Build the index of a layer with one verified pass; write it (and the zstd
 * tar) to the cache unless opts->no_write. */
static struct ocitree_layer_index *build(struct ocitree_layout *l, const struct ocitree_descriptor *d,
					 enum ocitree_compression comp, const char *diff_id,
					 const struct ocitree_layer_index_opts *opts, int idx_dirfd,
					 struct ocitree_error **err)
{
	_cleanup_free_ char *alg = digest_alg(d->digest);
	const char *hex = ocitree_digest_hex(d->digest);
	struct builder b = {.opts = opts};
	b.tar_fd = -1;
	tar_scan_init(&b.tar);
	b.chunk_crc = (uint32_t)crc32(0, NULL, 0);
	if (diff_id && comp != OCITREE_COMPRESSION_NONE) {
		_cleanup_free_ char *dalg = digest_alg(diff_id);
		b.diff_hasher = ocitree_hasher_new(dalg);
	}
	_cleanup_close_ int tar_dirfd = -1;
	_cleanup_free_ char *tar_tmp = NULL;
	_cleanup_free_ char *tar_path = NULL;
	struct ocitree_layer_index *idx = NULL;
	_cleanup_buf_ struct buf img = BUF_INIT;
	int r = -1;
	if (comp == OCITREE_COMPRESSION_ZSTD) {
		/* the uncompressed tar goes to the cache, even with no_write:
		 * reads are served from it */
		tar_dirfd = open_cache_subdir(opts->cache_dir, TAR_DIR, alg, true, err);
		if (tar_dirfd < 0)
			goto out;
		b.tar_fd = open_tmpfile_at(tar_dirfd, "tar", &tar_tmp, err);
		if (b.tar_fd < 0)
			goto out;
		tar_path = xasprintf("%s/%s/%s/%s", opts->cache_dir, TAR_DIR, alg, hex);
	}
	struct ocitree_blob_reader *rd = ocitree_blob_reader_open(l, d->digest, d->size, err);
	if (!rd)
		goto out;
	switch (comp) {
	case OCITREE_COMPRESSION_GZIP:
#ifdef HAVE_ISAL
		if (use_isal()) {
			r = build_gzip_isal(&b, rd, err);
			break;
		}
#endif
		r = build_gzip(&b, rd, err);
		break;
	case OCITREE_COMPRESSION_ZSTD:
		r = build_zstd(&b, rd, err);
		break;
	default:
		r = build_none(&b, rd, err);
		break;
	}
	/* read to the verified end even if the tar ended early; and when the
	 * stream was bad, a digest mismatch is the better explanation */
	if (r == 0 || (err && *err && (*err)->kind == OCITREE_ERROR_INVALID)) {
		_cleanup_free_ char *tmp = xmalloc(IN_CHUNK);
		struct ocitree_error *rerr = NULL;
		ssize_t n;
		while ((n = ocitree_blob_reader_read(rd, tmp, IN_CHUNK, &rerr)) > 0)
			;
		if (n < 0 && (r == 0 || rerr->kind == OCITREE_ERROR_DIGEST)) {
			r = -1;
			if (err) {
				ocitree_error_free(*err);
				*err = steal_pointer(&rerr);
			}
		}
		ocitree_error_free(rerr);
	}
	ocitree_blob_reader_free(rd);
	if (r == 0)
		r = tar_scan_finish(&b.tar, err);
	/* the hasher thread must have seen everything before the digest */
	pipe_stop(b.pipe);
	b.pipe = NULL;
	if (r == 0 && b.diff_hasher) {
		char got[OCITREE_DIGEST_MAX];
		ocitree_hasher_final(b.diff_hasher, got);
		if (strcmp(got, diff_id) != 0)
			r = ocitree_error_setk(err, OCITREE_ERROR_DIGEST,
					       "uncompressed content does not match diff_id %s (it is %s)", diff_id,
					       got);
	}
	if (r < 0)
		goto out;
	r = -1;
	serialise(&b, d->digest, comp, d->size >= 0 ? (uint64_t)d->size : 0, &img);
	if (b.tar_fd >= 0) {
		/* the tar has no checksum of its own: make it durable before it
		 * gets its name */
		if (fdatasync(b.tar_fd) < 0 || renameat(tar_dirfd, tar_tmp, tar_dirfd, hex) < 0) {
			ocitree_error_set(err, errno, "write uncompressed layer cache '%s'", tar_path);
			goto out;
		}
		free(tar_tmp);
		tar_tmp = NULL;
	}
	if (!opts->no_write && idx_dirfd >= 0) {
		struct ocitree_error *werr = NULL;
		if (write_index_file(idx_dirfd, hex, &img, &werr) < 0) {
			/* a read-only cache costs speed next time, not this mount */
			log_warn("cannot cache the index of layer %s: %s", d->digest, werr->msg);
			ocitree_error_free(werr);
		}
	}
	idx = index_alloc(d->digest);
	idx->map_len = img.len;
	idx->owned[0] = buf_steal(&img);
	if (attach(idx, idx->owned[0], idx->map_len, d->digest, err) < 0) {
		ocitree_layer_index_free(idx);
		idx = NULL;
		goto out;
	}
	if (comp == OCITREE_COMPRESSION_ZSTD) {
		idx->data_fd = steal_fd(&b.tar_fd);
	}
	r = 0;
out:
	if (tar_tmp)
		unlinkat(tar_dirfd, tar_tmp, 0);
	builder_free(&b);
	return r == 0 ? idx : NULL;
}

/* Load a cached index; NULL (with *err) when it is missing or unusable. */
static struct ocitree_layer_index *load_cached(const struct ocitree_descriptor *d, enum ocitree_compression comp,
					       const struct ocitree_layer_index_opts *opts, int idx_dirfd,
					       struct ocitree_error **err)
{
	const char *hex = ocitree_digest_hex(d->digest);
	_cleanup_close_ int fd = openat(idx_dirfd, hex, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ocitree_error_set(err, errno, "open cached index"), NULL;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return ocitree_error_set(err, errno, "stat cached index"), NULL;
	if (st.st_size < (off_t)sizeof(struct idx_header))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "cached index is truncated"), NULL;
	void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		return ocitree_error_set(err, errno, "map cached index"), NULL;
	/* From a cold page cache: the first touch would read megabytes
	 * around it (the device's read-ahead), most of them deflate windows
	 * that are read one at a time if ever.  The metadata, which the
	 * checksum reads whole, is asked for in one request instead. */
	(void)madvise(map, (size_t)st.st_size, MADV_RANDOM);
	uint64_t meta_len = ((const struct idx_header *)map)->windows_off;
	(void)madvise(map, (size_t)(meta_len < (uint64_t)st.st_size ? meta_len : (uint64_t)st.st_size),
		      MADV_WILLNEED);
	struct ocitree_layer_index *idx = index_alloc(d->digest);
	idx->map = map;
	idx->map_len = (size_t)st.st_size;
	if (attach(idx, map, idx->map_len, d->digest, err) < 0 || idx->comp != comp ||
	    (d->size >= 0 && idx->blob_size != (uint64_t)d->size)) {
		if (err && !*err)
			ocitree_error_setk(err, OCITREE_ERROR_INVALID, "cached index does not describe this layer");
		ocitree_layer_index_free(idx);
		return NULL;
	}
	if (comp == OCITREE_COMPRESSION_ZSTD) {
		_cleanup_free_ char *alg = digest_alg(d->digest);
		_cleanup_free_ char *p = xasprintf("%s/%s/%s/%s", opts->cache_dir, TAR_DIR, alg, hex);
		idx->data_fd = open(p, O_RDONLY | O_CLOEXEC);
		if (idx->data_fd < 0 || fstat(idx->data_fd, &st) < 0 || (uint64_t)st.st_size != idx->tar_size) {
			ocitree_error_setk(err, OCITREE_ERROR_INVALID, "uncompressed layer cache is missing");
			ocitree_layer_index_free(idx);
			return NULL;
		}
	}
	return idx;
}

struct ocitree_layer_index *layer_index_from_image(const void *img, size_t len, const char *digest, int blob_fd,
						    int data_fd, struct ocitree_chunk_cache *chunks,
						    struct ocitree_error **err)
{
	struct ocitree_layer_index *idx = index_alloc(digest);
	idx->blob_fd = blob_fd;
	idx->chunks = chunks;
	/* 8-aligned, as a mapping is */
	idx->owned[0] = xmalloc(len ? len : 1);
	memcpy(idx->owned[0], img, len);
	idx->map_len = len;
	if (attach(idx, idx->owned[0], len, digest, err) < 0) {
		if (data_fd >= 0)
			close(data_fd);
		ocitree_layer_index_free(idx);
		return NULL;
	}
	/* reads of gzip layers go to the blob, the others to the tar */
	if (idx->comp == OCITREE_COMPRESSION_GZIP) {
		if (data_fd >= 0)
			close(data_fd);
	} else {
		idx->data_fd = data_fd;
	}
	return idx;
}

void layer_index_image_seal(void *img, size_t len)
{
	struct idx_header h;
	if (len < sizeof(h))
		return;
	memcpy(&h, img, sizeof(h));
	unsigned char *p = img;
	if (h.checkpoints_off <= len && h.windows_off <= len && h.n_checkpoints <= len / sizeof(struct idx_checkpoint) &&
	    h.n_checkpoints * sizeof(struct idx_checkpoint) <= len - h.checkpoints_off) {
		for (size_t i = 0; i < h.n_checkpoints; i++) {
			struct idx_checkpoint cp;
			memcpy(&cp, p + h.checkpoints_off + i * sizeof(cp), sizeof(cp));
			if (cp.kind == CP_ISAL || cp.window_off > len - h.windows_off ||
			    cp.window_len > len - h.windows_off - cp.window_off)
				continue;
			cp.window_crc = crc_update(0, p + h.windows_off + cp.window_off, cp.window_len);
			memcpy(p + h.checkpoints_off + i * sizeof(cp), &cp, sizeof(cp));
		}
	}
	if (h.windows_off < sizeof(h) || h.windows_off > len)
		return;
	h.meta_crc = 0;
	uint32_t crc = crc_update(0, &h, sizeof(h));
	crc = crc_update(crc, p + sizeof(h), h.windows_off - sizeof(h));
	memcpy(p + offsetof(struct idx_header, meta_crc), &crc, sizeof(crc));
}

OCITREE_EXPORT struct ocitree_layer_index *ocitree_layer_index_open(struct ocitree_layout *l,
								    const struct ocitree_descriptor *layer,
								    const char *diff_id,
								    const struct ocitree_layer_index_opts *opts,
								    struct ocitree_error **err)
{
	enum ocitree_compression comp;
	if (ocitree_layer_compression(layer->media_type, &comp, err) < 0)
		return NULL;
	if (ocitree_digest_check(layer->digest, err) < 0)
		return NULL;
	if (diff_id && ocitree_digest_check(diff_id, err) < 0)
		return ocitree_error_prefix(err, "diff_id"), NULL;
	if (comp == OCITREE_COMPRESSION_NONE && diff_id && strcmp(diff_id, layer->digest) != 0)
		return ocitree_error_setk(err, OCITREE_ERROR_DIGEST,
					  "uncompressed layer %s does not match its diff_id %s", layer->digest, diff_id),
		       NULL;
	if (!opts || !opts->cache_dir)
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE, "no cache directory for layer indexes"), NULL;
	_cleanup_free_ char *alg = digest_alg(layer->digest);
	_cleanup_close_ int blob_fd = ocitree_blob_open_fd(l, layer->digest, err);
	if (blob_fd < 0)
		return NULL;
	struct ocitree_error *cerr = NULL;
	_cleanup_close_ int idx_dirfd = open_cache_subdir(opts->cache_dir, IDX_DIR, alg, !opts->no_write, &cerr);
	if (idx_dirfd < 0) {
		log_info("layer %s: no index cache: %s", layer->digest, cerr->msg);
		ocitree_error_free(cerr);
		cerr = NULL;
	}
	struct ocitree_layer_index *idx = NULL;
	if (idx_dirfd >= 0 && !opts->rebuild) {
		idx = load_cached(layer, comp, opts, idx_dirfd, &cerr);
		if (!idx) {
			if (cerr && cerr->kind != OCITREE_ERROR_NOT_FOUND)
				log_info("layer %s: rebuilding its index: %s", layer->digest, cerr->msg);
			ocitree_error_free(cerr);
			cerr = NULL;
		} else {
			idx->cached = true;
		}
	}
	if (!idx) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		idx = build(l, layer, comp, diff_id, opts, idx_dirfd, err);
		if (!idx)
			return ocitree_error_prefix(err, "%s", layer->digest), NULL;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		log_info("layer %s: indexed %zu entries, %ju bytes, in %.3f s", layer->digest, idx->n_entries,
			 (uintmax_t)idx->tar_size, (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	}
	if (comp == OCITREE_COMPRESSION_NONE) {
		idx->data_fd = dup(blob_fd);
		if (idx->data_fd < 0) {
			ocitree_layer_index_free(idx);
			return ocitree_error_set(err, errno, "layer %s: dup", layer->digest), NULL;
		}
	}
	idx->blob_fd = steal_fd(&blob_fd);
	idx->chunks = opts->chunks;
	return idx;
}

struct open_many_job {
	struct ocitree_layout *l;
	const struct ocitree_descriptor *layers;
	char *const *diff_ids;
	size_t n;
	const struct ocitree_layer_index_opts *opts;
	struct ocitree_layer_index **out;
	struct ocitree_error **errs;
	pthread_mutex_t lock;
	size_t next; /* lock */
	/* progress, summed over the layers: */
	size_t done;                /* lock: layers opened */
	struct ocitree_progress *per; /* lock: the last told of each layer */
};

struct open_many_layer {
	struct open_many_job *j;
	size_t i;
};

static void open_many_progress(const struct ocitree_progress *p, void *userdata)
{
	struct open_many_layer *ml = userdata;
	struct open_many_job *j = ml->j;
	pthread_mutex_lock(&j->lock);
	if (p)
		j->per[ml->i] = *p;
	struct ocitree_progress sum = {.phase = "index", .n_layers = j->n};
	sum.layer = j->done < j->n ? j->done + 1 : j->n;
	for (size_t i = 0; i < j->n; i++) {
		sum.bytes += j->per[i].bytes;
		sum.entries += j->per[i].entries;
	}
	j->opts->progress(&sum, j->opts->progress_data);
	pthread_mutex_unlock(&j->lock);
}

static void *open_many_worker(void *arg)
{
	struct open_many_job *j = arg;
	for (;;) {
		pthread_mutex_lock(&j->lock);
		size_t i = j->next++;
		pthread_mutex_unlock(&j->lock);
		if (i >= j->n)
			return NULL;
		struct ocitree_layer_index_opts o = *j->opts;
		struct open_many_layer ml = {.j = j, .i = i};
		if (o.progress) {
			o.progress = open_many_progress;
			o.progress_data = &ml;
		}
		j->out[i] = ocitree_layer_index_open(j->l, &j->layers[i], j->diff_ids ? j->diff_ids[i] : NULL, &o,
						     &j->errs[i]);
		if (o.progress) {
			/* a cached index is not worth a word */
			bool built = j->out[i] && !j->out[i]->cached;
			pthread_mutex_lock(&j->lock);
			j->done++;
			if (built)
				j->per[i] = (struct ocitree_progress){.bytes = j->out[i]->tar_size,
								      .entries = j->out[i]->n_entries};
			pthread_mutex_unlock(&j->lock);
			if (built)
				open_many_progress(NULL, &ml);
		}
	}
}

OCITREE_EXPORT int ocitree_layer_index_open_many(struct ocitree_layout *l, const struct ocitree_descriptor *layers,
						 char *const *diff_ids, size_t n,
						 const struct ocitree_layer_index_opts *opts, unsigned threads,
						 struct ocitree_layer_index **out, struct ocitree_error **err)
{
	struct open_many_job j = {.l = l, .layers = layers, .diff_ids = diff_ids, .n = n, .opts = opts, .out = out};
	j.errs = xcalloc(n ? n : 1, sizeof(*j.errs));
	j.per = xcalloc(n ? n : 1, sizeof(*j.per));
	pthread_mutex_init(&j.lock, NULL);
	for (size_t i = 0; i < n; i++)
		out[i] = NULL;
	/* largest layers first would balance better, but layers are usually
	 * few; order them by size descending through the shared counter */
	if (threads < 1)
		threads = 1;
	if (threads > n)
		threads = (unsigned)n;
	pthread_t *tids = xcalloc(threads ? threads : 1, sizeof(*tids));
	unsigned started = 0;
	for (unsigned t = 1; t < threads; t++)
		if (pthread_create(&tids[t], NULL, open_many_worker, &j) == 0)
			started++;
	open_many_worker(&j);
	for (unsigned t = 1; t <= started; t++)
		pthread_join(tids[t], NULL);
	free(tids);
	pthread_mutex_destroy(&j.lock);
	int ret = 0;
	for (size_t i = 0; i < n; i++) {
		if (!out[i] && ret == 0) {
			ret = -1;
			if (err) {
				ocitree_error_free(*err);
				*err = j.errs[i];
				j.errs[i] = NULL;
				ocitree_error_prefix(err, "layer %zu", i + 1);
			}
		}
		ocitree_error_free(j.errs[i]);
	}
	free(j.errs);
	free(j.per);
	if (ret < 0)
		for (size_t i = 0; i < n; i++) {
			ocitree_layer_index_free(out[i]);
			out[i] = NULL;
		}
	return ret;
}

OCITREE_EXPORT void ocitree_layer_index_free(struct ocitree_layer_index *idx)
{
	if (!idx)
		return;
	chunk_cache_forget_owner(idx->chunks, idx);
	free(idx->live);
	if (idx->map)
		munmap(idx->map, idx->map_len);
	for (size_t i = 0; i < ARRAY_SIZE(idx->owned); i++)
		free(idx->owned[i]);
	if (idx->blob_fd >= 0)
		close(idx->blob_fd);
	if (idx->data_fd >= 0)
		close(idx->data_fd);
	free(idx);
}

OCITREE_EXPORT bool ocitree_layer_index_was_cached(const struct ocitree_layer_index *idx)
{
	return idx->cached;
}

OCITREE_EXPORT size_t ocitree_layer_index_count(const struct ocitree_layer_index *idx)
{
	return idx->n_entries;
}

OCITREE_EXPORT const struct ocitree_layer_entry *ocitree_layer_index_entry(const struct ocitree_layer_index *idx,
									   size_t i)
{
	return i < idx->n_entries ? &idx->entries[i] : NULL;
}

OCITREE_EXPORT const char *ocitree_layer_index_string(const struct ocitree_layer_index *idx, uint32_t off)
{
	return off < idx->strings_len ? idx->strings + off : "";
}

OCITREE_EXPORT uint64_t ocitree_layer_index_tar_size(const struct ocitree_layer_index *idx)
{
	return idx->tar_size;
}

OCITREE_EXPORT const char *ocitree_layer_index_digest(const struct ocitree_layer_index *idx)
{
	return idx->digest;
}

OCITREE_EXPORT enum ocitree_compression ocitree_layer_index_compression(const struct ocitree_layer_index *idx)
{
	return idx->comp;
}

OCITREE_EXPORT size_t ocitree_layer_index_checkpoints(const struct ocitree_layer_index *idx)
{
	return idx->comp == OCITREE_COMPRESSION_GZIP ? idx->n_cps : 0;
}

OCITREE_EXPORT bool ocitree_layer_entry_xattr_next(const struct ocitree_layer_index *idx,
						   const struct ocitree_layer_entry *e, uint32_t *cursor,
						   const char **name, const void **value, size_t *len)
{
	if (!e->xattrs)
		return false;
	const unsigned char *base = idx->xattrs;
	size_t end = idx->xattrs_len;
	uint32_t count;
	memcpy(&count, base + e->xattrs, 4);
	/* the cursor counts records in its high bits and keeps the byte
	 * position in the low 32 bits of a 64-bit walk; records are few, so
	 * walk from the start each time */
	uint32_t want = *cursor;
	if (want >= count)
		return false;
	size_t pos = e->xattrs + 4;
	for (uint32_t i = 0;; i++) {
		uint32_t nl, vl;
		if (pos + 8 > end)
			return false;
		memcpy(&nl, base + pos, 4);
		memcpy(&vl, base + pos + 4, 4);
		if (nl > end - pos - 8 || vl > end - pos - 8 - nl - 1 || pos + 8 + nl + 1 + vl > end ||
		    base[pos + 8 + nl] != '\0') /* names are used as C strings */
			return false;
		if (i == want) {
			*name = (const char *)base + pos + 8;
			*value = base + pos + 8 + nl + 1;
			*len = vl;
			*cursor = want + 1;
			return true;
		}
		pos += 8 + nl + 1 + vl;
	}
}

/* ---------------------------------------------------------------- reading */

static size_t find_checkpoint(const struct ocitree_layer_index *idx, uint64_t off)
{
	size_t lo = 0, hi = idx->n_cps;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (idx->cps[mid].out_off <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static uint64_t chunk_end(const struct ocitree_layer_index *idx, size_t i)
{
	return i + 1 < idx->n_cps ? idx->cps[i + 1].out_off : idx->tar_size;
}

/* A checkpoint's deflated window.  A cached index is mapped with
 * MADV_RANDOM (see load_cached): its pages are asked for in one request. */
static const unsigned char *window_bytes(const struct ocitree_layer_index *idx, const struct idx_checkpoint *cp)
{
	const unsigned char *p = idx->windows + cp->window_off;
	if (idx->map && cp->window_len) {
		uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
		uintptr_t start = (uintptr_t)p & ~(page - 1);
		(void)madvise((void *)start, (uintptr_t)p + cp->window_len - start, MADV_WILLNEED);
	}
	return p;
}

static int window_of(const struct ocitree_layer_index *idx, const struct idx_checkpoint *cp, unsigned char *win,
		     size_t *win_len, struct ocitree_error **err)
{
	*win_len = 0;
	if (!cp->window_len)
		return 0;
	/* a window is 32 KiB but at the start of a stream */
	size_t n = cp->out_off < WINDOW_SIZE ? (size_t)cp->out_off : WINDOW_SIZE;
	if (unpack(window_bytes(idx, cp), cp->window_len, cp->window_crc, win, n, err) < 0)
		return -1;
	*win_len = n;
	return 0;
}

#ifdef HAVE_ISAL
/* ISA-L inflates 3-4x faster than zlib.  It resumes at a checkpoint given the
 * window as dictionary and the partial byte's bits primed into its bit
 * buffer.  Returns 1 when the chunk crosses the end of a gzip member (rare:
 * concatenated gzip files), which the zlib path handles. */
static int inflate_chunk_isal(const struct idx_checkpoint *cp, const unsigned char *in, size_t in_len,
			      const unsigned char *win, size_t win_len, unsigned char *out, size_t out_len,
			      struct ocitree_error **err)
{
	_cleanup_free_ struct inflate_state *st = xcalloc(1, sizeof(*st)); /* zeroed: its bytes are saved in checkpoints */
	isal_inflate_init(st);
	size_t pos = 0;
	if (cp->kind == CP_MEMBER) {
		st->crc_flag = ISAL_GZIP;
	} else if (cp->kind == CP_ISAL) {
		/* the saved state, as isal_inflate left it */
		if (unpack(win, win_len, cp->window_crc, st, sizeof(*st), err) < 0)
			return -1;
	} else {
		st->crc_flag = ISAL_DEFLATE;
		if (win_len && isal_inflate_set_dict(st, (uint8_t *)win, (uint32_t)win_len) != COMP_OK)
			return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "isal_inflate_set_dict failed");
		if (cp->bits) {
			st->read_in = (uint64_t)(in[0] >> (8 - cp->bits));
			st->read_in_length = cp->bits;
			pos = 1;
		}
	}
	st->next_in = (uint8_t *)in + pos;
	st->avail_in = (uint32_t)(in_len - pos);
	st->next_out = out;
	st->avail_out = (uint32_t)out_len;
	for (;;) {
		int r = isal_inflate(st);
		if (r != ISAL_DECOMP_OK)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "corrupt gzip stream (ISA-L error %d)", r);
		if (st->avail_out == 0)
			return 0;
		if (st->block_state != ISAL_BLOCK_FINISH)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "gzip stream ends early");
		if (st->crc_flag == ISAL_DEFLATE)
			return 1; /* a raw resume cannot skip the trailer: zlib can */
		/* the next gzip member */
		while (st->avail_in && *st->next_in == 0) {
			st->next_in++;
			st->avail_in--;
		}
		uint8_t *ni = st->next_in, *no = st->next_out;
		uint32_t ai = st->avail_in, ao = st->avail_out;
		isal_inflate_reset(st);
		st->crc_flag = ISAL_GZIP;
		st->next_in = ni;
		st->avail_in = ai;
		st->next_out = no;
		st->avail_out = ao;
	}
}
#endif

static int inflate_chunk_zlib(const struct idx_checkpoint *cp, const unsigned char *in, size_t in_len,
			      const unsigned char *win, size_t win_len, unsigned char *out, size_t out_len,
			      struct ocitree_error **err)
{
	z_stream zs = {0};
	size_t pos = 0;
	if (cp->kind == CP_ISAL)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "checkpoint needs ISA-L");
	bool raw = cp->kind != CP_MEMBER;
	inflateInit2(&zs, raw ? -15 : 15 + 16);
	if (raw) {
		if (cp->bits) {
			inflatePrime(&zs, cp->bits, in[0] >> (8 - cp->bits));
			pos = 1;
		}
		if (win_len)
			inflateSetDictionary(&zs, win, (uInt)win_len);
	}
	zs.next_in = (Bytef *)in + pos;
	zs.avail_in = (uInt)(in_len - pos);
	zs.next_out = out;
	zs.avail_out = (uInt)out_len;
	int ret = 0;
	while (zs.avail_out) {
		int r = inflate(&zs, Z_NO_FLUSH);
		if (r == Z_STREAM_END) {
			if (raw) {
				/* the 8-byte gzip trailer of this member */
				if (zs.avail_in < 8) {
					ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "gzip stream ends early");
					break;
				}
				zs.next_in += 8;
				zs.avail_in -= 8;
			}
			while (zs.avail_in && *zs.next_in == 0) {
				zs.next_in++;
				zs.avail_in--;
			}
			raw = false;
			inflateReset2(&zs, 15 + 16);
			continue;
		}
		if (r != Z_OK) {
			ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "corrupt gzip stream: %s",
						 zs.msg ? zs.msg : "inflate error");
			break;
		}
		if (zs.avail_in == 0 && zs.avail_out) {
			ret = ocitree_error_setk(err, OCITREE_ERROR_INVALID, "gzip stream ends early");
			break;
		}
	}
	inflateEnd(&zs);
	return ret;
}

/* Compressed input of a chunk is read into a buffer of the decoding thread,
 * kept for its next chunk: a fresh buffer per chunk costs more in page
 * faults than the copy itself.  A chunk that needs more than SCRATCH_MAX
 * (not one of the 1 MiB chunks ocitree writes) gets a buffer of its own,
 * so that no thread keeps a big one. */
#define SCRATCH_MAX (4u << 20)
struct scratch {
	unsigned char *in;
	size_t cap;
};
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
	struct scratch *s = p;
	if (s)
		free(s->in);
	free(s);
}

static void scratch_init(void)
{
	if (pthread_key_create(&scratch_key, scratch_free) != 0)
		abort();
}

static unsigned char *scratch_input(size_t len)
{
	pthread_once(&scratch_once, scratch_init);
	struct scratch *s = pthread_getspecific(scratch_key);
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		if (pthread_setspecific(scratch_key, s) != 0)
			abort();
	}
	if (s->cap < len) {
		free(s->in);
		s->cap = len < (1u << 20) ? 1u << 20 : len;
		s->in = xmalloc(s->cap);
	}
	return s->in;
}

static int decode_chunk(void *userdata, struct ocitree_chunk_cache *cache, uint64_t no, struct chunk_data *outd,
			struct ocitree_error **err)
{
	struct ocitree_layer_index *idx = userdata;
	const struct idx_checkpoint *cp = &idx->cps[no];
	uint64_t out_len = chunk_end(idx, (size_t)no) - cp->out_off;
	uint64_t in_start = cp->bits ? cp->in_off - 1 : cp->in_off;
	/* a little past the next checkpoint: decoders may want lookahead */
	uint64_t in_end = no + 1 < idx->n_cps ? idx->cps[no + 1].in_off + 64 : idx->blob_size;
	if (in_end > idx->blob_size)
		in_end = idx->blob_size;
	if (in_end <= in_start || out_len > (64u << 20))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "bad checkpoint %ju", (uintmax_t)no);
	/* a chunk's input is never much more than its output (deflate adds a
	 * few bytes per stored block, fixed Huffman codes an eighth; member
	 * headers a little): read no more, whatever the checkpoints say, and a
	 * stream that needs more ends early */
	uint64_t in_max = out_len + out_len / 8 + (1u << 20);
	if (in_end - in_start > in_max)
		in_end = in_start + in_max;
	size_t in_len = (size_t)(in_end - in_start);
	_cleanup_free_ unsigned char *own_in = NULL;
	unsigned char *in = in_len <= SCRATCH_MAX ? scratch_input(in_len) : (own_in = xmalloc(in_len));
	ssize_t n = pread_full(idx->blob_fd, in, in_len, (off_t)in_start);
	if (n < 0)
		return ocitree_error_set(err, errno, "read blob %s", idx->digest);
	if ((size_t)n != in_len)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "blob %s is truncated", idx->digest);
	unsigned char win[WINDOW_SIZE];
	size_t win_len = 0;
	if (cp->kind != CP_ISAL && window_of(idx, cp, win, &win_len, err) < 0)
		return -1;
	unsigned char *out;
	_cleanup_free_ unsigned char *own = NULL;
	if (cache) {
		/* the cache frees it if decoding fails */
		chunk_cache_alloc(cache, (size_t)out_len, outd);
		out = outd->data;
	} else {
		out = own = xmalloc(out_len ? out_len : 1);
	}
	int r;
#ifdef HAVE_ISAL
	if (cp->kind == CP_ISAL)
		r = inflate_chunk_isal(cp, in, in_len, window_bytes(idx, cp), cp->window_len, out, out_len,
				       err);
	else
		r = use_isal() ? inflate_chunk_isal(cp, in, in_len, win, win_len, out, out_len, err) : 1;
	if (r == 1)
#else
	r = 1;
#endif
		r = inflate_chunk_zlib(cp, in, in_len, win, win_len, out, out_len, err);
	if (r < 0)
		return ocitree_error_prefix(err, "blob %s at offset %ju", idx->digest, (uintmax_t)cp->in_off);
	if (crc_update(0, out, out_len) != cp->chunk_crc)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
					  "blob %s: data at offset %ju does not match its checksum", idx->digest,
					  (uintmax_t)cp->in_off);
	if (!cache)
		outd->data = steal_pointer(&own);
	outd->len = out_len;
	return 0;
}

/* Chunk c of a gzip layer, from the cache (to give back with release_chunk)
 * or decoded into *local. */
static const struct chunk_data *get_chunk(struct ocitree_layer_index *idx, size_t c, struct chunk_data *local,
					  struct ocitree_error **err)
{
	if (idx->chunks)
		return chunk_cache_get(idx->chunks, idx, c, decode_chunk, idx, err);
	*local = (struct chunk_data){0};
	if (decode_chunk(idx, NULL, c, local, err) < 0)
		return NULL;
	return local;
}

static void release_chunk(struct ocitree_layer_index *idx, const struct chunk_data *d)
{
	if (idx->chunks)
		chunk_cache_put(idx->chunks, d);
	else
		free(d->data);
}

/* A read of [off, off + len) is about to be served: when reads go forward
 * through the layer, have the cache decode the chunks that follow c. */
static void read_ahead(struct ocitree_layer_index *idx, uint64_t off, size_t len, size_t c)
{
	if (!idx->chunks)
		return;
	unsigned depth = chunk_cache_readahead(idx->chunks);
	/* sequential: this read starts near where the previous one ended (the
	 * next file in tar order is a header away, or a few files further when
	 * an upper layer hides some; the kernel's read-ahead requests may
	 * arrive a little out of order) */
	uint64_t prev = __atomic_exchange_n(&idx->last_end, off + len, __ATOMIC_RELAXED);
	uint64_t near = (uint64_t)(depth + 1) * CHECKPOINT_SPAN;
	if (!depth || off + near < prev || off > prev + near)
		return;
	uint64_t last = c + depth < idx->n_cps ? c + depth : idx->n_cps - 1;
	/* ra_next: the chunk after the last one asked for, to ask for each
	 * chunk once as the reader moves on (a stale value only costs lookups) */
	uint64_t from = __atomic_load_n(&idx->ra_next, __ATOMIC_RELAXED);
	if (from <= c || from > last + 1)
		from = c + 1;
	if (from > last)
		return;
	__atomic_store_n(&idx->ra_next, last + 1, __ATOMIC_RELAXED);
	const uint8_t *live = __atomic_load_n(&idx->live, __ATOMIC_ACQUIRE);
	for (uint64_t k = from; k <= last; k++)
		if (!live || (__atomic_load_n(&live[k / 8], __ATOMIC_RELAXED) & (1u << (k % 8))))
			chunk_cache_prefetch(idx->chunks, idx, k, decode_chunk, idx);
}

void layer_index_mark_live(struct ocitree_layer_index *idx, const uint8_t *entries)
{
	if (idx->comp != OCITREE_COMPRESSION_GZIP || !idx->n_cps)
		return;
	/* a writable mount's live commit marks for its new tree while the
	 * old one is read: bits are only ever added, and a reader that sees
	 * some too early only reads ahead less */
	uint8_t *live = __atomic_load_n(&idx->live, __ATOMIC_ACQUIRE);
	if (!live) {
		uint8_t *fresh = xcalloc(1, (idx->n_cps + 7) / 8);
		if (__atomic_compare_exchange_n(&idx->live, &live, fresh, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			live = fresh;
		else
			free(fresh);
	}
	/* entries are in tar order: the chunk of one is mostly that of the
	 * one before, or the next (a search over the checkpoints per entry
	 * cost node's 82k entries 5-9 ms of mount time) */
	size_t k = 0;
	for (size_t i = 0; i < idx->n_entries; i++) {
		const struct ocitree_layer_entry *e = &idx->entries[i];
		if (!(entries[i / 8] & (1u << (i % 8))) || e->type != OCITREE_ENTRY_REG || !e->size)
			continue;
		uint64_t first = e->data_off, last = e->data_off + e->size - 1;
		if (first < idx->cps[k].out_off || first >= chunk_end(idx, k))
			k = find_checkpoint(idx, first);
		for (;;) {
			uint8_t bit = (uint8_t)(1u << (k % 8));
			if (!(__atomic_load_n(&live[k / 8], __ATOMIC_RELAXED) & bit))
				__atomic_fetch_or(&live[k / 8], bit, __ATOMIC_RELAXED);
			if (k + 1 >= idx->n_cps || idx->cps[k + 1].out_off > last)
				break;
			k++;
		}
	}
}

OCITREE_EXPORT ssize_t ocitree_layer_index_pread(struct ocitree_layer_index *idx, void *buf, size_t len,
						 uint64_t off, struct ocitree_error **err)
{
	if (off >= idx->tar_size)
		return 0;
	if (len > idx->tar_size - off)
		len = (size_t)(idx->tar_size - off);
	if (idx->data_fd >= 0) {
		ssize_t n = pread_full(idx->data_fd, buf, len, (off_t)(off + idx->data_base));
		if (n < 0)
			return ocitree_error_set(err, errno, "read layer %s", idx->digest);
		return n;
	}
	if (idx->comp != OCITREE_COMPRESSION_GZIP)
		return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "layer %s has no data source", idx->digest);
	size_t done = 0;
	read_ahead(idx, off, len, find_checkpoint(idx, off));
	while (done < len) {
		uint64_t pos = off + done;
		size_t c = find_checkpoint(idx, pos);
		struct chunk_data local;
		const struct chunk_data *d = get_chunk(idx, c, &local, err);
		if (!d)
			return -1;
		size_t skip = (size_t)(pos - idx->cps[c].out_off);
		size_t n = d->len > skip ? d->len - skip : 0;
		if (n > len - done)
			n = len - done;
		memcpy((char *)buf + done, d->data + skip, n);
		done += n;
		release_chunk(idx, d);
		if (n == 0)
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "layer %s: bad chunk %zu", idx->digest, c);
	}
	return (ssize_t)done;
}

OCITREE_EXPORT ssize_t ocitree_layer_index_pin(struct ocitree_layer_index *idx, uint64_t off, size_t len,
					       struct ocitree_layer_pin *pin, struct ocitree_error **err)
{
	pin->n = 0;
	pin->idx = idx;
	if (!idx->chunks || idx->data_fd >= 0 || idx->comp != OCITREE_COMPRESSION_GZIP || off >= idx->tar_size)
		return 0;
	if (len > idx->tar_size - off)
		len = (size_t)(idx->tar_size - off);
	size_t first = find_checkpoint(idx, off);
	if (find_checkpoint(idx, off + len - 1) - first >= OCITREE_LAYER_PIN_MAX)
		return 0;
	read_ahead(idx, off, len, first);
	size_t done = 0;
	while (done < len) {
		uint64_t pos = off + done;
		size_t c = find_checkpoint(idx, pos);
		const struct chunk_data *d = chunk_cache_get(idx->chunks, idx, c, decode_chunk, idx, err);
		if (!d) {
			ocitree_layer_index_unpin(pin);
			return -1;
		}
		pin->held[pin->n] = d;
		size_t skip = (size_t)(pos - idx->cps[c].out_off);
		size_t n = d->len > skip ? d->len - skip : 0;
		if (n > len - done)
			n = len - done;
		pin->iov[pin->n].iov_base = d->data + skip;
		pin->iov[pin->n].iov_len = n;
		pin->n++;
		done += n;
		if (n == 0 || (done < len && pin->n == OCITREE_LAYER_PIN_MAX)) {
			ocitree_layer_index_unpin(pin);
			return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "layer %s: bad chunk %zu", idx->digest, c);
		}
	}
	return (ssize_t)done;
}

OCITREE_EXPORT void ocitree_layer_index_unpin(struct ocitree_layer_pin *pin)
{
	for (size_t i = 0; i < pin->n; i++)
		chunk_cache_put(pin->idx->chunks, pin->held[i]);
	pin->n = 0;
}

OCITREE_EXPORT int ocitree_layer_index_data_fd(const struct ocitree_layer_index *idx, uint64_t *base)
{
	if (base)
		*base = idx->data_base;
	return idx->data_fd;
}
