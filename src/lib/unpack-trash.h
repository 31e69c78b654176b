/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The unpacker's trash (internal to libocitree): directories a layer
 * removes, emptied on a thread of their own (see unpack-trash.c).
 */
#ifndef OCITREE_UNPACK_TRASH_H
#define OCITREE_UNPACK_TRASH_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "ocitree/error.h"

/* Directories being removed: named by number in the trash directory. */
struct trash {
	int fd;        /* the trash directory (in the root), or -1 */
	char name[48]; /* its name in the root */
	bool failed;   /* it could not be made: remove in place */
	pthread_mutex_t mu;
	pthread_cond_t cv; /* mu: an item came, or the last one in progress ended */
	uint32_t *todo;    /* mu: directories to empty and remove */
	size_t n_todo, cap_todo;
	size_t busy;   /* mu: items being emptied */
	uint32_t next; /* mu: the next number */
	bool closing;  /* mu: no more items from the writer */
	bool started;  /* the thread runs */
	pthread_t thread;
	struct ocitree_error *error; /* mu: the first failure */
};

void trash_init(struct trash *t);
/* Move directory name (in pfd) into the trash of the root rootfd (made on
 * first use), to be removed there.  Returns -1 when it cannot (remove it
 * in place then). */
int trash_put(struct trash *t, int rootfd, int pfd, const char *name);
/* Empty the trash (helping the thread), remove it and put the root's
 * mtime back (root_mtime).  Returns the first failure.  One trash per
 * unpack: nothing goes into it afterwards. */
int trash_finish(struct trash *t, int rootfd, const struct timespec *root_mtime, struct ocitree_error **err);
/* Finish what is left after a failure (the caller removes the rest) in
 * the root rootfd, and free what t holds. */
void trash_free(struct trash *t, int rootfd);

#endif
