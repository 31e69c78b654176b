/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The unpacker's trash (internal to libocitree): a directory a layer
 * removes is renamed into a trash directory in the root and emptied there
 * by a second thread (and by the caller's thread at the end), so that the
 * writer goes on at once and the unlinks run on both cores.  Items are
 * numbered directories; emptying one makes its subdirectories items of
 * their own, so that both threads find work in one deep tree.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "bundle-internal.h"
#include "ring.h"
#include "unpack-trash.h"

void trash_init(struct trash *t)
{
	memset(t, 0, sizeof(*t));
	t->fd = -1;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
}

static void trash_push(struct trash *t, uint32_t id)
{
	GROW(t->todo, t->cap_todo, t->n_todo + 1);
	t->todo[t->n_todo++] = id;
	pthread_cond_signal(&t->cv);
}

static void trash_fail(struct trash *t, struct ocitree_error *e)
{
	pthread_mutex_lock(&t->mu);
	if (!t->error)
		t->error = e;
	else
		ocitree_error_free(e);
	pthread_mutex_unlock(&t->mu);
}

/* Empty and remove trash item id: its files go, its subdirectories become
 * items of their own (so that both threads find work in one deep tree). */
static void trash_empty(struct trash *t, uint32_t id)
{
	char name[16];
	snprintf(name, sizeof(name), "%" PRIu32, id);
	struct ocitree_error *e = NULL;
	int fd = openat(t->fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		/* rm_rf_at knows what to do about permissions */
		if (rm_rf_at(t->fd, name, &e) < 0)
			trash_fail(t, e);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (de->d_type == DT_DIR) {
			pthread_mutex_lock(&t->mu);
			uint32_t sub = t->next++;
			pthread_mutex_unlock(&t->mu);
			char sname[16];
			snprintf(sname, sizeof(sname), "%" PRIu32, sub);
			if (renameat(fd, de->d_name, t->fd, sname) == 0) {
				pthread_mutex_lock(&t->mu);
				trash_push(t, sub);
				pthread_mutex_unlock(&t->mu);
				continue;
			}
		} else if (de->d_type != DT_UNKNOWN && (unlinkat(fd, de->d_name, 0) == 0 || errno == ENOENT)) {
			continue;
		}
		if (rm_rf_at(fd, de->d_name, &e) < 0) {
			trash_fail(t, e);
			e = NULL;
		}
	}
	closedir(d);
	if (unlinkat(t->fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && rm_rf_at(t->fd, name, &e) < 0)
		trash_fail(t, e);
}

/* Take items until there are none left; with closing set, return only
 * when no other thread holds one either (which could make more). */
static void trash_work(struct trash *t)
{
	pthread_mutex_lock(&t->mu);
	for (;;) {
		if (t->n_todo) {
			uint32_t id = t->todo[--t->n_todo];
			t->busy++;
			pthread_mutex_unlock(&t->mu);
			trash_empty(t, id);
			pthread_mutex_lock(&t->mu);
			if (--t->busy == 0 && !t->n_todo)
				pthread_cond_broadcast(&t->cv);
			continue;
		}
		if (t->closing && !t->busy)
			break;
		pthread_cond_wait(&t->cv, &t->mu);
	}
	pthread_mutex_unlock(&t->mu);
}

static void *trash_thread(void *arg)
{
	trash_work(arg);
	return NULL;
}

int trash_put(struct trash *t, int rootfd, int pfd, const char *name)
{
	if (t->failed)
		return -1;
	if (t->fd < 0) {
		static const char chars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
		unsigned char raw[12] = {0};
		if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
			uint64_t x = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
			for (size_t i = 0; i < sizeof(raw); i++, x = x * 6364136223846793005ULL + 1)
				raw[i] = (unsigned char)(x >> 33);
		}
		char rnd[sizeof(raw) + 1];
		for (size_t i = 0; i < sizeof(raw); i++)
			rnd[i] = chars[raw[i] % (sizeof(chars) - 1)];
		rnd[sizeof(raw)] = '\0';
		snprintf(t->name, sizeof(t->name), OCITREE_TMP_PREFIX "trash.%s", rnd);
		if (mkdirat(rootfd, t->name, 0700) < 0 ||
		    (t->fd = openat(rootfd, t->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
			t->failed = true;
			return -1;
		}
	}
	pthread_mutex_lock(&t->mu);
	uint32_t id = t->next++;
	pthread_mutex_unlock(&t->mu);
	char idname[16];
	snprintf(idname, sizeof(idname), "%" PRIu32, id);
	if (renameat(pfd, name, t->fd, idname) < 0)
		return -1;
	pthread_mutex_lock(&t->mu);
	trash_push(t, id);
	pthread_mutex_unlock(&t->mu);
	/* without the thread, trash_finish does it all */
	if (!t->started)
		t->started = thread_create(&t->thread, NULL, trash_thread, t) == 0;
	return 0;
}

int trash_finish(struct trash *t, int rootfd, const struct timespec *root_mtime, struct ocitree_error **err)
{
	if (t->fd < 0)
		return 0;
	pthread_mutex_lock(&t->mu);
	t->closing = true;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
	trash_work(t);
	if (t->started)
		pthread_join(t->thread, NULL);
	t->started = false;
	close(t->fd);
	t->fd = -1;
	t->failed = true; /* no more of it: one per unpack */
	if (t->error) {
		if (err) {
			ocitree_error_free(*err);
			*err = steal_pointer(&t->error);
		}
		return ocitree_error_prefix(err, "remove a replaced directory");
	}
	if (unlinkat(rootfd, t->name, AT_REMOVEDIR) < 0)
		return ocitree_error_set(err, errno, "remove '%s'", t->name);
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, *root_mtime};
	if (futimens(rootfd, ts) < 0)
		return ocitree_error_set(err, errno, "set times of the rootfs");
	return 0;
}

void trash_free(struct trash *t, int rootfd)
{
	/* after a failure: the caller removes the rest (the root's time does
	 * not matter then) */
	struct ocitree_error *e = NULL;
	struct timespec keep = {.tv_nsec = UTIME_OMIT};
	trash_finish(t, rootfd, &keep, &e);
	ocitree_error_free(e);
	pthread_mutex_destroy(&t->mu);
	pthread_cond_destroy(&t->cv);
	free(t->todo);
	ocitree_error_free(t->error);
}
