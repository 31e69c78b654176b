/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A bounded ring of slots between threads (internal to libocitree): one
 * producer fills slots in order, consumers take them in the same order,
 * and slots come back to the producer in that order again.  The ring only
 * counts: the slots themselves (buffers, pieces of work) are an array of the
 * user's, indexed by the slot numbers the ring hands out, and whoever holds
 * a slot owns its contents.
 *
 * Sequence of a slot: ring_acquire (producer: wait for a free one, fill it)
 * -> ring_push -> ring_take (a consumer) -> [ring_finish, when the release
 * is left to someone else, as the compressor's writer does] -> ring_release
 * (oldest first) -> free for ring_acquire again.
 *
 * Ending: the producer closes the ring (ring_close), with an error or not;
 * consumers take what was pushed before it, then get the end (or a copy of
 * the error).  Either side may give up (ring_cancel): from then on
 * ring_acquire and ring_take return at once, so no thread stays blocked.
 */
#ifndef OCITREE_RING_H
#define OCITREE_RING_H

#include <pthread.h>

#include "util.h"

struct ring {
	pthread_mutex_t mu;
	pthread_cond_t items; /* a consumer may go on: a push, the close, a cancel */
	pthread_cond_t room;  /* the producer may go on: a release, a finish, a cancel */
	size_t n;             /* slots */
	uint64_t pushed;      /* mu: slots the producer pushed */
	uint64_t taken;       /* mu: slots consumers took */
	uint64_t released;    /* mu: slots given back (always the oldest) */
	bool *finished;       /* mu: per slot, ring_finish was called on it */
	bool closed;          /* mu: nothing more will be pushed */
	bool cancelled;       /* mu: someone gave up */
	struct ocitree_error *error; /* mu: why the producer closed, or NULL */
};

/* A ring of n (>= 1) slots. */
void ring_init(struct ring *r, size_t n);
/* The ring must have no waiter left (its threads joined). */
void ring_destroy(struct ring *r);

/* Producer: wait until the next slot is free (fewer than n slots pushed and
 * not released).  Returns its number (< n), or -1 once the ring is
 * cancelled. */
ssize_t ring_acquire(struct ring *r);
/* Producer: hand the slot ring_acquire gave over to the consumers. */
void ring_push(struct ring *r);
/* Producer: nothing more will be pushed; err (may be NULL) says why and is
 * owned by the ring from now on. */
void ring_close(struct ring *r, struct ocitree_error *err);

/* Consumer: wait for the next pushed slot, in order.  Returns 1 with its
 * number in *slot, 0 once the ring is closed (without an error) and empty
 * or cancelled, -1 with a copy of the producer's error in *err once the
 * ring is closed with one and empty.  Several consumers may take. */
int ring_take(struct ring *r, size_t *slot, struct ocitree_error **err);
/* Consumer: done with a slot, when someone else releases it
 * (ring_wait_finished). */
void ring_finish(struct ring *r, size_t slot);

/* The oldest slot not released: whether it is finished, waiting for that
 * when wait is set (false without waiting when the ring is cancelled or
 * nothing is pushed but not released). */
bool ring_oldest_finished(struct ring *r, bool wait);
/* Give the oldest slot not released back to the producer. */
void ring_release(struct ring *r);

/* Consumer that holds one slot at a time, releasing it itself: give the
 * slot held back (when *held), then ring_take the next; *held says whether
 * a slot is held afterwards.  Returns as ring_take. */
int ring_next(struct ring *r, bool *held, size_t *slot, struct ocitree_error **err);

/* Give up: ring_acquire returns -1 and ring_take 0 from now on, in every
 * thread. */
void ring_cancel(struct ring *r);

/* pthread_create, through a pointer that tests replace to make thread
 * creation fail: the threads of the ring's users (layer reader, compressor,
 * index pass, ocitree_layer_index_open_many) are started through it. */
extern int (*thread_create)(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);

#endif
