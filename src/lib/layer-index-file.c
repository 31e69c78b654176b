/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The layer index cache file: its format, writing, loading and checking
 * (see layer-index-internal.h for the other parts of the index).
 *
 * Index file format, version 2, host byte order (the endian mark makes a
 * file from another byte order look corrupt, so it is rebuilt):
 *
 *   struct idx_header                      (offsets below are from file start)
 *   entries      n_entries * struct ocitree_layer_entry
 *   strings      NUL-terminated names; offset 0 is ""
 *   xattrs       per entry with xattrs, 4-aligned: u32 count, then per xattr
 *                u32 namelen, u32 valuelen, name, NUL, value
 *   checkpoints  n_checkpoints * struct idx_checkpoint (gzip only)
 *   windows      per checkpoint, raw-deflated: the 32 KiB window before it
 *                (zlib checkpoints) or the ISA-L inflate state (ISA-L ones);
 *                nothing for member starts and CP_CONT checkpoints
 *
 * Gzip checkpoints come in two kinds.  Built with zlib (inflate with
 * Z_BLOCK, as in zlib's zran example), a checkpoint is a deflate block
 * boundary: bit offset plus window.  Built with ISA-L, which inflates 3-4x
 * faster but cannot stop at block boundaries, a checkpoint is a copy of
 * ISA-L's whole inflate state at exactly every CHECKPOINT_SPAN of output
 * (the state is self-contained and resumable by the streaming contract of
 * isal_inflate: it holds the history, the current Huffman tables and the
 * buffered input bits).  Either kind is placed every RESTORE_CHUNKS
 * chunks; the checkpoints between (CP_CONT, one every CHECKPOINT_SPAN)
 * only end a chunk and its CRC-32, and are decoded from the resumable
 * checkpoint before them.  Such an index records the ISA-L version and state
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <zlib.h>
#ifdef HAVE_ISAL
#include <isa-l.h>
#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#endif

#include "layer-index-internal.h"
#include "tar-scan.h"

#define IDX_MAGIC "OCITIDX\n"
/* 2: chunks of 256 KiB, CP_CONT checkpoints between the resumable ones */
#define IDX_VERSION 2u
#define IDX_ENDIAN 0x01020304u

bool layer_index_use_isal(void)
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
uint32_t layer_index_crc(uint32_t crc, const void *p, size_t n)
{
#ifdef HAVE_ISAL
	if (layer_index_use_isal())
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

/* Append src raw-deflated (fast: ISA-L's level 0, zlib's 1) to dst; *len
 * gets its size. */
void layer_index_pack_window(struct buf *dst, const void *src, size_t n, uint32_t *len, uint32_t *crc, void **scratch)
{
	(void)scratch; /* no compressor keeps work space now */
	size_t bound = n + n / 8 + 1024;
	buf_reserve(dst, bound);
	unsigned char *out = (unsigned char *)dst->data + dst->len;
	size_t got = 0;
#ifdef HAVE_ISAL
	if (layer_index_use_isal()) {
		/* zeroed: stateless_init leaves some of the internal state
		 * that level 0 reads (valgrind saw it in the output) */
		struct isal_zstream zs;
		memset(&zs, 0, sizeof(zs));
		isal_deflate_stateless_init(&zs);
		/* level 0: a third faster than level 1 and 12% bigger; it needs
		 * no level buffer */
		zs.level = 0;
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
	*crc = layer_index_crc(0, out, got);
	dst->len += got;
}

/* Inflate what layer_index_pack_window() made into out (of exactly n bytes,
 * or of up to n when got is set, which gets the count). */
int layer_index_unpack_window(const unsigned char *in, size_t in_len, uint32_t crc, void *out, size_t n, size_t *got_n,
			      struct ocitree_error **err)
{
	if (layer_index_crc(0, in, in_len) != crc)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "index checkpoint data checksum mismatch");
#ifdef HAVE_ISAL
	if (layer_index_use_isal()) {
		/* not zeroed: init and the stateless call set all it reads
		 * (a calloc here was a memset of 87 KiB per decoded chunk) */
		_cleanup_free_ struct inflate_state *st = xmalloc(sizeof(*st));
		isal_inflate_init(st);
		st->next_in = (uint8_t *)in;
		st->avail_in = (uint32_t)in_len;
		st->next_out = out;
		st->avail_out = (uint32_t)n;
		st->crc_flag = ISAL_DEFLATE;
		if (isal_inflate_stateless(st) == ISAL_DECOMP_OK && (st->total_out == n || (got_n && st->total_out < n))) {
			if (got_n)
				*got_n = st->total_out;
			return 0;
		}
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
	if (r != Z_STREAM_END || (got_n ? got > n : got != n))
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "index checkpoint data is corrupt");
	if (got_n)
		*got_n = got;
	return 0;
}


static uint64_t idx_align8(uint64_t x)
{
	return (x + 7) & ~(uint64_t)7;
}

/* Up to 7 bytes of padding between sections. */
static const unsigned char zeros[8];

static void image_add(struct layer_index_image *im, const void *p, size_t n)
{
	if (!n)
		return;
	im->iov[im->n_iov].iov_base = (void *)(uintptr_t)p;
	im->iov[im->n_iov].iov_len = n;
	im->n_iov++;
	im->len += n;
}

static void image_pad(struct layer_index_image *im)
{
	image_add(im, zeros, (size_t)(idx_align8(im->len) - im->len));
}

void layer_index_serialise(const struct layer_index_parts *b, const char *digest, enum ocitree_compression comp,
			   uint64_t blob_size, struct layer_index_image *out)
{
	memset(out, 0, sizeof(*out));
	struct idx_header *h = &out->header;
	memcpy(h->magic, IDX_MAGIC, 8);
	h->version = IDX_VERSION;
	h->endian = IDX_ENDIAN;
	h->compression = comp;
	h->blob_size = blob_size;
	h->tar_size = b->tar_size;
	h->n_entries = b->tar->n_entries;
	h->entry_size = sizeof(struct ocitree_layer_entry);
	h->checkpoint_size = sizeof(struct idx_checkpoint);
#ifdef HAVE_ISAL
	if (b->isal) {
		h->isal_state_size = sizeof(struct inflate_state);
		h->isal_version = ISAL_VERSION;
	}
#endif
	snprintf(h->digest, sizeof(h->digest), "%s", digest);
	/* the image is the parts where they are, not a copy of them: the
	 * windows alone are megabytes */
	image_add(out, h, sizeof(*h));
	image_pad(out);
	/* a layer whose every entry was left out has no entry table */
	image_add(out, b->tar->entries, h->n_entries * sizeof(struct ocitree_layer_entry));
	image_pad(out);
	h->strings_off = out->len;
	h->strings_len = b->tar->strings.len;
	image_add(out, b->tar->strings.data, h->strings_len);
	image_pad(out);
	h->xattrs_off = out->len;
	h->xattrs_len = b->tar->xattrs.len;
	image_add(out, b->tar->xattrs.data, h->xattrs_len);
	image_pad(out);
	h->checkpoints_off = out->len;
	h->n_checkpoints = b->n_cps;
	image_add(out, b->cps, b->n_cps * sizeof(struct idx_checkpoint));
	image_pad(out);
	h->windows_off = out->len;
	h->windows_len = b->windows_fd >= 0 ? b->windows_len : b->windows->len;
	/* the checksum covers the header (with meta_crc 0) and what follows
	 * up to the windows */
	uint32_t crc = 0;
	for (size_t i = 0; i < out->n_iov; i++)
		crc = layer_index_crc(crc, out->iov[i].iov_base, out->iov[i].iov_len);
	h->meta_crc = crc;
	out->windows_fd = b->windows_fd;
	if (b->windows_fd >= 0) {
		out->windows_len = h->windows_len;
		out->len += h->windows_len;
	} else {
		image_add(out, b->windows->data, h->windows_len);
	}
}

/* Read len bytes at offset 0 of fd into p. */
static int read_windows(int fd, unsigned char *p, uint64_t len, struct ocitree_error **err)
{
	uint64_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, p + done, (size_t)(len - done), (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return ocitree_error_set(err, n < 0 ? errno : EIO, "read back index windows");
		done += (uint64_t)n;
	}
	return 0;
}

void *layer_index_image_flatten(const struct layer_index_image *im, struct ocitree_error **err)
{
	/* 8-aligned, as a mapping is */
	unsigned char *p = xmalloc(im->len ? im->len : 1), *q = p;
	for (size_t i = 0; i < im->n_iov; i++) {
		memcpy(q, im->iov[i].iov_base, im->iov[i].iov_len);
		q += im->iov[i].iov_len;
	}
	if (im->windows_fd >= 0 && read_windows(im->windows_fd, q, im->windows_len, err) < 0) {
		free(p);
		return NULL;
	}
	return p;
}

/* Append the first len bytes of in to out, in the kernel when it can. */
static int copy_windows(int in, int out, uint64_t len)
{
	off_t from = 0;
#ifdef HAVE_COPY_FILE_RANGE
	while ((uint64_t)from < len) {
		loff_t at = from;
		ssize_t n = copy_file_range(in, &at, out, NULL, (size_t)(len - (uint64_t)from), 0);
		from = (off_t)at;
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0)
			continue;
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
			return -1;
		break;
	}
#endif
	/* another file system, or no copy_file_range: by hand */
	if ((uint64_t)from < len) {
		_cleanup_free_ unsigned char *tmp = xmalloc(1u << 16);
		while ((uint64_t)from < len) {
			size_t want = len - (uint64_t)from < (1u << 16) ? (size_t)(len - (uint64_t)from) : (1u << 16);
			ssize_t r = pread(in, tmp, want, from);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				if (r == 0)
					errno = EIO;
				return -1;
			}
			if (write_all(out, tmp, (size_t)r) < 0)
				return -1;
			from += r;
		}
	}
	return 0;
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
int layer_index_attach(struct ocitree_layer_index *idx, const unsigned char *img, size_t len, const char *digest,
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
	    idx_align8(sizeof(h)) + h.n_entries * sizeof(struct ocitree_layer_entry) > h.strings_off ||
	    /* sections after the header (the checksum covers the header, then
	     * up to windows_off), checkpoints aligned as they are read */
	    h.xattrs_off < idx_align8(sizeof(h)) || h.checkpoints_off < idx_align8(sizeof(h)) ||
	    h.windows_off < idx_align8(sizeof(h)) || h.checkpoints_off % 8)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "index file is malformed");
	struct idx_header z = h;
	z.meta_crc = 0;
	uint32_t crc = layer_index_crc(0, &z, sizeof(z));
	crc = layer_index_crc(crc, img + sizeof(z), h.windows_off - sizeof(z));
	if (crc != h.meta_crc)
		return ocitree_error_setk(err, OCITREE_ERROR_INVALID, "index file checksum mismatch");
	idx->meta_crc = h.meta_crc;
	idx->comp = (enum ocitree_compression)h.compression;
	idx->blob_size = h.blob_size;
	idx->tar_size = h.tar_size;
	idx->entries = (const struct ocitree_layer_entry *)(img + idx_align8(sizeof(h)));
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
		uint64_t restore_out = 0; /* of the last resumable checkpoint */
		for (size_t i = 0; i < idx->n_cps; i++) {
			const struct idx_checkpoint *cp = &idx->cps[i];
			if (cp->kind != CP_CONT)
				restore_out = cp->out_off;
			/* a CP_CONT chunk is inflated from the resumable
			 * checkpoint before it: not far */
			if (cp->window_off > idx->windows_len || cp->window_len > idx->windows_len - cp->window_off ||
			    cp->in_off > idx->blob_size || cp->bits > 7 || cp->out_off > idx->tar_size ||
			    (i && cp->out_off <= idx->cps[i - 1].out_off) || (i && cp->in_off < idx->cps[i - 1].in_off) ||
			    cp->kind > CP_CONT || (cp->kind == CP_CONT && (!i || cp->window_len || cp->bits)) ||
			    idx_chunk_end(idx, i) - restore_out > RESTORE_MAX_DIST)
				return ocitree_error_setk(err, OCITREE_ERROR_INVALID,
							  "index file checkpoint %zu is malformed", i);
			if (cp->kind == CP_ISAL && !isal_ok)
				return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED,
							  "index file was made with another ISA-L");
		}
	}
	return 0;
}

int layer_index_write_file(int dirfd, const char *name, const struct layer_index_image *im, int *fd_out,
			   struct ocitree_error **err)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = open_tmpfile_at(dirfd, "index", &tmp, err);
	if (fd < 0)
		return -1;
	struct iovec iov[ARRAY_SIZE(im->iov)];
	memcpy(iov, im->iov, sizeof(iov));
	struct iovec *v = iov;
	int n = (int)im->n_iov;
	/* one system call for the whole file, as a rule */
	while (n > 0) {
		ssize_t w = writev(fd, v, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			goto fail;
		}
		while (n > 0 && (size_t)w >= v->iov_len) {
			w -= (ssize_t)v->iov_len;
			v++;
			n--;
		}
		if (n > 0) {
			v->iov_base = (char *)v->iov_base + w;
			v->iov_len -= (size_t)w;
		}
	}
	if (im->windows_fd >= 0 && copy_windows(im->windows_fd, fd, im->windows_len) < 0)
		goto fail;
	/* no fsync: the checksum catches a file torn by a crash, and a torn
	 * index is simply rebuilt */
	if (renameat(dirfd, tmp, dirfd, name) < 0)
		goto fail;
	if (fd_out)
		*fd_out = steal_fd(&fd);
	return 0;
fail:;
	int e = errno;
	unlinkat(dirfd, tmp, 0);
	return ocitree_error_set(err, e, "write index file");
}

/* Load a cached index; NULL (with *err) when it is missing or unusable. */
struct ocitree_layer_index *layer_index_load_cached(const struct ocitree_descriptor *d, enum ocitree_compression comp,
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
	size_t meta = (size_t)(meta_len < (uint64_t)st.st_size ? meta_len : (uint64_t)st.st_size);
	(void)madvise(map, meta, MADV_WILLNEED);
#ifdef MADV_POPULATE_READ
	/* ... and mapped in one call, which the checksum then reads: page
	 * faults one after the other cost twice as much (more in a virtual
	 * machine).  Before Linux 5.14 this is EINVAL and the faults happen. */
	(void)madvise(map, meta, MADV_POPULATE_READ);
#endif
	struct ocitree_layer_index *idx = layer_index_alloc(d->digest);
	idx->map = map;
	idx->map_len = (size_t)st.st_size;
	if (layer_index_attach(idx, map, idx->map_len, d->digest, err) < 0 || idx->comp != comp ||
	    (d->size >= 0 && idx->blob_size != (uint64_t)d->size)) {
		if (err && !*err)
			ocitree_error_setk(err, OCITREE_ERROR_INVALID, "cached index does not describe this layer");
		ocitree_layer_index_free(idx);
		return NULL;
	}
	if (comp == OCITREE_COMPRESSION_ZSTD) {
		_cleanup_free_ char *alg = layer_index_digest_alg(d->digest);
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
	struct ocitree_layer_index *idx = layer_index_alloc(digest);
	idx->blob_fd = blob_fd;
	idx->chunks = chunks;
	/* 8-aligned, as a mapping is */
	idx->owned[0] = xmalloc(len ? len : 1);
	memcpy(idx->owned[0], img, len);
	idx->map_len = len;
	if (layer_index_attach(idx, idx->owned[0], len, digest, err) < 0) {
		if (data_fd >= 0)
			close(data_fd);
		ocitree_layer_index_free(idx);
		return NULL;
	}
	/* reads of gzip layers go to the blob, the others to the tar */
	if (idx->comp == OCITREE_COMPRESSION_GZIP) {
		if (data_fd >= 0)
			close(data_fd);
		layer_index_map_blob(idx);
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
			cp.window_crc = layer_index_crc(0, p + h.windows_off + cp.window_off, cp.window_len);
			memcpy(p + h.checkpoints_off + i * sizeof(cp), &cp, sizeof(cp));
		}
	}
	if (h.windows_off < sizeof(h) || h.windows_off > len)
		return;
	h.meta_crc = 0;
	uint32_t crc = layer_index_crc(0, &h, sizeof(h));
	crc = layer_index_crc(crc, p + sizeof(h), h.windows_off - sizeof(h));
	memcpy(p + offsetof(struct idx_header, meta_crc), &crc, sizeof(crc));
}
