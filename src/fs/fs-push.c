/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pushing files into the kernel's page cache ahead of a reader that walks
 * a mount in listing order (find | xargs cat, tar, cp -r): each
 * file it reads costs a READ round trip through the daemon otherwise, and
 * most files of an image are small, so those round trips, not the data,
 * are what such a walk waits for.
 *
 * Once the files read follow each other in the depth-first order of the
 * directory listings (the order find and fts walk a tree in), a thread of
 * its own reads the next files through the tree (the chunk cache decodes
 * and checks them as for any read: nothing unverified is pushed) and
 * stores them with fuse_lowlevel_notify_store, so that the reader finds
 * them in the page cache.
 *
 * Big files are pushed too, in pieces: three quarters of an image's bytes
 * are in files of more than 256 KiB, and a reader that reads them through
 * READs waits for their chunks to be decoded, while the daemon has nothing
 * to do as long as the reader is busy with small files.
 *
 * The reads of pushed files never reach the daemon, so the reader's
 * progress is learnt from the files left out on purpose: every
 * SENTINEL_EVERY-th one, and the next one after SENTINEL_BYTES were
 * pushed.  Pushing stays at most AHEAD_FILES files and
 * AHEAD_BYTES bytes ahead of the last file the reader was seen at (more
 * on the read-only mount, see AHEAD_BYTES_RO), and stops when the reads
 * leave the order.  A push the kernel refuses (the
 * inode not looked up yet: ENOENT) only costs the reader its round trip.
 *
 * On the read-only mount a sentinel is pushed but for its last page, which
 * the pusher keeps (HELD_MAX of them at most): the reader's READ of that
 * page is answered from it, so a sentinel costs the reader one short round
 * trip, never a wait for a decode, and the reader's position, far behind
 * the pusher's, never asks the chunk cache for chunks it dropped since (a
 * big file left out whole was read through READs waiting for decodes, and
 * a sentinel's chunks decoded again when the window was wider than the
 * cache).  The writable mount leaves its sentinels out whole: their data
 * can change under the pusher.
 *
 * On the writable mount a file may stop being the image's while it is
 * pushed: the driver (struct fs_push_driver, fs-rw-nodes.c) claims each
 * file before it is decoded, may call the store off until the last moment,
 * and says when the file changed while its store was in flight; the
 * pusher then drops what it stored.  Which files, and why that is safe,
 * is the driver's to say.
 */
#include "config.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "fs-push.h"
#include "fs-session.h"

/* files ahead of the reader, at most */
#define AHEAD_FILES 128u
/* bytes of the files after the reader's at most: what is pushed waits in
 * the page cache, not in the chunk cache, and each chunk is decoded once
 * as the pushes go through it */
#define AHEAD_BYTES (16u << 20)
/* ... and on the read-only mount, whose sentinels' last pages the pusher
 * keeps (so that the reader, far behind, never asks the chunk cache for
 * what it dropped): the decoder runs on while the reader goes through runs
 * of small files (a cat per 256 of them, an open and a close each), so
 * that it is ahead when the reader comes to big files.  A walk that stops
 * in the middle costs at most this much decoding for nothing. */
#define AHEAD_FILES_RO 1024u
#define AHEAD_BYTES_RO (64u << 20)
/* one pushed file in this many is left for the reader to ask for */
#define SENTINEL_EVERY 24u
/* ... and the next one after this many bytes were pushed: in a run of big
 * files the pusher still learns where the reader is before it has pushed
 * AHEAD_BYTES */
#define SENTINEL_BYTES (8u << 20)
/* the most pushed at once: two chunks at most */
#define PIECE (1u << 20)
/* how far (in files) a read may skip ahead and still follow the order:
 * empty files are never read, and a file may still be cached */
#define GAP 8u
/* reads in order before pushing starts */
#define STREAK 2u
/* last pages of sentinels kept at most (the oldest goes first: its reader
 * then reads it through the tree) */
#define HELD_MAX 64u

/* The last page of a sentinel, kept for the reader's READ of it. */
struct held {
	uint32_t ino; /* 0: free */
	uint64_t off; /* where the page starts in the file */
	size_t len;   /* up to the end of the file */
	unsigned char *data;
};

struct fs_push {
	const struct ocitree_tree *tree;
	const struct fs_push_driver *drv; /* NULL: node ids are the tree's inodes, which never change */
	void *drv_data;
	unsigned ahead_files; /* AHEAD_FILES or AHEAD_FILES_RO */
	uint64_t ahead_bytes;
	struct fuse_session *se;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t wake; /* signalled on progress, a wanted order, or stop */
	/* lock: */
	bool stop;
	uint32_t first_ino; /* the first file read, before the order is wanted */
	bool want_order;
	/* built by the thread, then immutable: regular files in listing
	 * order; cum[i] the bytes of the files before position i;
	 * pos_of[ino] 1 + the inode's position, 0 for none */
	uint32_t *order;
	uint64_t *cum;
	uint32_t n;
	uint32_t *pos_of;
	/* lock: where the reads are */
	uint32_t last; /* 1 + position of the last file read, 0 for none */
	unsigned streak;
	bool active;
	uint32_t reader;  /* position of the reader while active */
	uint32_t next;    /* next position to push while active */
	unsigned since;   /* files pushed since the last sentinel */
	uint64_t since_bytes; /* and their bytes */
	uint64_t pushed;  /* files pushed, for the log */
	uint64_t refused; /* pushes the kernel or the driver did not take */
	uint64_t dropped; /* pushes dropped again: the file changed under them */
	struct held held[HELD_MAX]; /* lock: a ring, the oldest at held_next */
	unsigned held_next;
	uint64_t held_used; /* sentinel pages the reader got from held */
	/* OCITREE_TEST_PUSH_DELAY_US: a wait between decoding a file and
	 * storing it, so that tests/fs/writable-push.sh can make writes meet
	 * pushes under way (otherwise a window of microseconds) */
	unsigned test_delay_us;
};

struct fs_push *fs_push_new(const struct ocitree_tree *tree, const struct fs_push_driver *drv, void *data)
{
	struct fs_push *p = xcalloc(1, sizeof(*p));
	p->tree = tree;
	p->drv = drv;
	p->drv_data = data;
	p->ahead_files = drv ? AHEAD_FILES : AHEAD_FILES_RO;
	p->ahead_bytes = drv ? AHEAD_BYTES : AHEAD_BYTES_RO;
	const char *e = getenv("OCITREE_TEST_PUSH_DELAY_US");
	if (e)
		p->test_delay_us = (unsigned)strtoul(e, NULL, 10);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	return p;
}

/* The depth-first listing order of the tree's regular files (a hard link's
 * first name places it).  Runs on the thread, without the lock. */
static void build_order(struct fs_push *p, uint32_t **order_out, uint64_t **cum_out, uint32_t *n_out,
                        uint32_t **pos_out)
{
	const struct ocitree_tree *t = p->tree;
	uint32_t n_inodes = ocitree_tree_inodes(t);
	uint32_t *pos_of = xcalloc((size_t)n_inodes + 1, sizeof(*pos_of));
	uint32_t *order = NULL;
	uint64_t *cum = NULL;
	size_t n = 0, cap = 0, cap_cum = 0;
	struct frame {
		uint32_t dir, i;
	} *stack = NULL;
	size_t depth = 0, cap_stack = 0;
	uint64_t bytes = 0;
	GROW(stack, cap_stack, 1);
	stack[depth++] = (struct frame){OCITREE_TREE_ROOT, 0};
	while (depth) {
		struct frame *f = &stack[depth - 1];
		uint32_t child;
		if (!ocitree_tree_dir_entry(t, f->dir, f->i++, &child)) {
			depth--;
			continue;
		}
		struct stat st;
		if (ocitree_tree_stat(t, child, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			GROW(stack, cap_stack, depth + 1);
			stack[depth++] = (struct frame){child, 0};
		} else if (S_ISREG(st.st_mode) && !pos_of[child]) {
			GROW(order, cap, n + 1);
			GROW(cum, cap_cum, n + 2);
			cum[n] = bytes;
			order[n] = child;
			pos_of[child] = (uint32_t)++n;
			bytes += (uint64_t)st.st_size;
		}
	}
	GROW(cum, cap_cum, n + 1);
	cum[n] = bytes;
	free(stack);
	*order_out = order;
	*cum_out = cum;
	*n_out = (uint32_t)n;
	*pos_out = pos_of;
}

void fs_push_saw_read(struct fs_push *p, uint32_t ino)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	if (!p->pos_of) {
		/* the order is built off the request path, at the read of a
		 * second file: a mount that reads one file (a container's
		 * first exec, cat of /etc/os-release) does not pay for it */
		if (!p->first_ino)
			p->first_ino = ino;
		else if (ino != p->first_ino && !p->want_order) {
			p->want_order = true;
			pthread_cond_signal(&p->wake);
		}
		goto out;
	}
	uint32_t pos = ino <= ocitree_tree_inodes(p->tree) ? p->pos_of[ino] : 0;
	if (!pos || pos == p->last)
		goto out; /* not a file of the order, or more of the same file */
	uint32_t i = pos - 1;
	if (p->active) {
		uint32_t front = p->next > p->reader ? p->next : p->reader;
		if (i > p->reader && i <= front + GAP) {
			/* on: a sentinel, a big file, or the pusher is behind */
			p->reader = i;
			if (p->next <= i)
				p->next = i + 1;
			pthread_cond_signal(&p->wake);
		} else if (i < p->reader && i + GAP >= p->reader) {
			goto out; /* a straggler: another reader, or the kernel's read-ahead */
		} else {
			p->active = false;
			p->streak = 0;
		}
	} else {
		if (p->last && pos > p->last && pos <= p->last + GAP)
			p->streak++;
		else
			p->streak = 0;
		if (p->streak >= STREAK) {
			p->active = true;
			p->reader = i;
			p->next = i + 1;
			p->since = 0;
			p->since_bytes = 0;
			pthread_cond_signal(&p->wake);
		}
	}
	p->last = pos;
out:
	pthread_mutex_unlock(&p->lock);
}

/* What push_file returns besides fuse_lowlevel_notify_store's 0 or -errno:
 * the driver did not let the file be pushed, or had it dropped again */
#define PUSH_SKIPPED 1
#define PUSH_DROPPED 2

/* Store file nodeid (tree inode ino, size bytes) in the page cache, PIECE
 * at a time.  A piece starts on a page and ends on one (or at the end of
 * the file), so that the kernel marks every page it fills up to date; it is
 * one chunk's bytes as they are, but for the page across a chunk seam,
 * joined.  The driver is asked before each piece (a change of the file
 * waits for at most one piece, then the rest is not stored).  Returns what
 * fuse_lowlevel_notify_store does, PUSH_SKIPPED when the driver stopped it
 * before the first piece (0 after: what was stored is the driver's end's
 * to drop), 0 when the file cannot be read (the reader will be told by its
 * own read). */
static int store_file(struct fs_push *p, uint32_t ino, uint64_t nodeid, void *token, size_t size)
{
	char page[4096];
	size_t off = 0;
	while (off < size) {
		_cleanup_error_ struct ocitree_error *err = NULL;
		struct ocitree_tree_data d;
		size_t len = size - off < PIECE ? size - off : PIECE;
		if (ocitree_tree_read(p->tree, ino, off, len, &d, &err) < 0)
			return 0;
		size_t n = d.size;
		struct fuse_bufvec bv = FUSE_BUFVEC_INIT(0);
		enum fuse_buf_copy_flags flags = FUSE_BUF_NO_SPLICE; /* a memory buffer is written as it is */
		if (n == 0) {
			ocitree_tree_data_release(&d);
			return 0;
		} else if (d.fd >= 0) {
			bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
			bv.buf[0].fd = d.fd;
			bv.buf[0].pos = (off_t)d.pos;
			flags = 0;
		} else if (d.n_iov == 1) {
			bv.buf[0].mem = d.iov[0].iov_base;
		} else if (d.iov[0].iov_len >= sizeof(page)) {
			n = d.iov[0].iov_len & ~(sizeof(page) - 1); /* up to the seam's page */
			bv.buf[0].mem = d.iov[0].iov_base;
		} else {
			n = n < sizeof(page) ? n : sizeof(page); /* the seam's page */
			size_t at = 0;
			for (size_t k = 0; k < d.n_iov && at < n; k++) {
				size_t c = d.iov[k].iov_len < n - at ? d.iov[k].iov_len : n - at;
				memcpy(page + at, d.iov[k].iov_base, c);
				at += c;
			}
			bv.buf[0].mem = page;
		}
		bv.buf[0].size = n;
		if (p->test_delay_us)
			usleep(p->test_delay_us);
		int r = PUSH_SKIPPED;
		if (!p->drv || p->drv->storing(p->drv_data, token))
			r = fuse_lowlevel_notify_store(p->se, nodeid, (off_t)off, &bv, flags);
		ocitree_tree_data_release(&d);
		if (r == PUSH_SKIPPED && off > 0)
			return 0; /* pieces were stored: the driver's end says whether to drop them */
		if (r != 0)
			return r;
		off += n;
	}
	return 0;
}


/* Keep bytes [off, off + len) of tree inode ino (its last page) for the
 * reader's READ of them.  Lock not held. */
static void hold_page(struct fs_push *p, uint32_t ino, uint64_t off, size_t len)
{
	_cleanup_error_ struct ocitree_error *err = NULL;
	struct ocitree_tree_data d;
	if (ocitree_tree_read(p->tree, ino, off, len, &d, &err) < 0)
		return; /* the reader will be told by its own read */
	unsigned char *data = xmalloc(len ? len : 1);
	size_t at = 0;
	if (d.fd >= 0) {
		ssize_t n = pread_full(d.fd, data, d.size, (off_t)d.pos);
		at = n > 0 ? (size_t)n : 0;
	} else {
		for (size_t k = 0; k < d.n_iov && at < len; k++) {
			size_t c = d.iov[k].iov_len < len - at ? d.iov[k].iov_len : len - at;
			memcpy(data + at, d.iov[k].iov_base, c);
			at += c;
		}
	}
	ocitree_tree_data_release(&d);
	if (at != len) {
		free(data);
		return;
	}
	pthread_mutex_lock(&p->lock);
	struct held *h = &p->held[p->held_next];
	p->held_next = (p->held_next + 1) % HELD_MAX;
	free(h->data);
	*h = (struct held){.ino = ino, .off = off, .len = len, .data = data};
	pthread_mutex_unlock(&p->lock);
}

bool fs_push_reply_held(struct fs_push *p, fuse_req_t req, uint32_t ino, uint64_t off, size_t size)
{
	if (!p || !ino)
		return false;
	struct held h = {0};
	pthread_mutex_lock(&p->lock);
	for (unsigned k = 0; k < HELD_MAX; k++) {
		if (p->held[k].ino == ino && p->held[k].off == off) {
			h = p->held[k];
			p->held[k] = (struct held){0};
			p->held_used++;
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	if (!h.ino)
		return false;
	/* the page, up to the end of the file: all a READ from its start asks */
	fuse_reply_buf(req, (const char *)h.data, size < h.len ? size : h.len);
	free(h.data);
	return true;
}

/* Push tree inode ino (size bytes) through the driver's claim, if there is
 * a driver: what store_file returns, or PUSH_SKIPPED. */
static int push_file(struct fs_push *p, uint32_t ino, size_t size)
{
	if (!p->drv)
		return store_file(p, ino, ino, NULL, size);
	uint64_t nodeid;
	void *token;
	if (!p->drv->claim(p->drv_data, ino, &nodeid, &token))
		return PUSH_SKIPPED;
	int r = store_file(p, ino, nodeid, token, size);
	if (p->drv->end(p->drv_data, token) && r == 0) {
		/* the file changed under the store: what it stored may be the
		 * image's bytes over the new ones (see the driver) */
		fuse_lowlevel_notify_inval_inode(p->se, nodeid, 0, 0);
		r = PUSH_DROPPED;
	}
	p->drv->put(p->drv_data, token);
	return r;
}

static void *push_thread(void *arg)
{
	struct fs_push *p = arg;
	(void)pthread_setname_np(pthread_self(), "ocitree-push");
	/* work ahead of the reader, as the chunk cache's read-ahead thread:
	 * it does not preempt the reader when it wakes up */
	struct sched_param sp = {0};
	(void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		if (p->want_order && !p->pos_of) {
			pthread_mutex_unlock(&p->lock);
			uint32_t *order, *pos_of, n;
			uint64_t *cum;
			build_order(p, &order, &cum, &n, &pos_of);
			pthread_mutex_lock(&p->lock);
			p->order = order;
			p->cum = cum;
			p->n = n;
			p->pos_of = pos_of;
			continue;
		}
		if (!p->active || p->next >= p->n || p->next > p->reader + p->ahead_files ||
		    p->cum[p->next] - p->cum[p->reader + 1] > p->ahead_bytes) {
			pthread_cond_wait(&p->wake, &p->lock);
			continue;
		}
		uint32_t i = p->next++;
		uint32_t ino = p->order[i];
		struct stat st;
		if (ocitree_tree_stat(p->tree, ino, &st) < 0 || st.st_size == 0)
			continue;
		size_t size = (size_t)st.st_size;
		bool sentinel = p->since >= SENTINEL_EVERY || p->since_bytes >= SENTINEL_BYTES;
		if (sentinel) {
			p->since = 0; /* left for the reader */
			p->since_bytes = 0;
			if (p->drv)
				continue;
		} else {
			p->since++;
			p->since_bytes += (uint64_t)st.st_size;
		}
		pthread_mutex_unlock(&p->lock);
		int r;
		if (sentinel) {
			/* all but its last page (the kernel's), which waits for
			 * the reader here */
			size_t page = (size_t)sysconf(_SC_PAGESIZE);
			size_t last = (size - 1) & ~(page - 1);
			r = store_file(p, ino, ino, NULL, last);
			if (r == 0)
				hold_page(p, ino, last, size - last);
		} else {
			r = push_file(p, ino, size);
		}
		pthread_mutex_lock(&p->lock);
		if (r == 0)
			p->pushed++;
		else if (r == -ENOENT || r == PUSH_SKIPPED)
			p->refused++;
		else if (r == PUSH_DROPPED)
			p->dropped++;
		else {
			/* the kernel does not take pushes (an old one), or the
			 * session is going: reads work as before */
			log_debug("pushing files into the page cache stopped: %s", strerror(-r));
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int fs_push_start(struct fs_push *p, struct fuse_session *se)
{
	p->se = se;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	/* the thread decodes chunks (inflate state on the heap): a small
	 * stack will do */
	pthread_attr_setstacksize(&attr, 256u << 10);
	p->started = pthread_create(&p->thread, &attr, push_thread, p) == 0;
	pthread_attr_destroy(&attr);
	return p->started ? 0 : -1;
}

void fs_push_free(struct fs_push *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	/* After a signal ended the loop, the thread may be stuck in a push:
	 * the kernel locks a page cache page while a READ of it waits in the
	 * queue, and the push waits for that lock.  Nobody reads the queue any
	 * more, so answer what is there until the thread is done. */
	while (p->started) {
		struct timespec ts = realtime_in_ms(50);
		if (pthread_timedjoin_np(p->thread, NULL, &ts) == 0)
			break;
		struct pollfd pfd = {.fd = fuse_session_fd(p->se), .events = POLLIN};
		if (poll(&pfd, 1, 50) != 1 || !(pfd.revents & POLLIN))
			continue;
		struct fuse_buf fbuf = {.mem = NULL};
		if (fuse_session_receive_buf(p->se, &fbuf) > 0)
			fuse_session_process_buf(p->se, &fbuf);
		free(fbuf.mem);
	}
	log_debug("pushed %ju files into the page cache (%ju refused or skipped, %ju dropped again); "
	          "%ju sentinel pages answered from the pusher",
	          (uintmax_t)p->pushed, (uintmax_t)p->refused, (uintmax_t)p->dropped, (uintmax_t)p->held_used);
	for (unsigned k = 0; k < HELD_MAX; k++)
		free(p->held[k].data);
	free(p->order);
	free(p->cum);
	free(p->pos_of);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	free(p);
}
