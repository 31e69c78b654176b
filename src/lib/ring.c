/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A bounded ring of slots between a producer thread and consumer threads
 * (see ring.h).
 */
#include "config.h"

#include "ring.h"

int (*thread_create)(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) = pthread_create;

void ring_init(struct ring *r, size_t n)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->items, NULL);
	pthread_cond_init(&r->room, NULL);
	r->n = n ? n : 1;
	r->finished = xcalloc(r->n, sizeof(*r->finished));
}

void ring_destroy(struct ring *r)
{
	ocitree_error_free(r->error);
	free(r->finished);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->items);
	pthread_cond_destroy(&r->room);
}

ssize_t ring_acquire(struct ring *r)
{
	pthread_mutex_lock(&r->mu);
	while (r->pushed - r->released >= r->n && !r->cancelled)
		pthread_cond_wait(&r->room, &r->mu);
	ssize_t slot = r->cancelled ? -1 : (ssize_t)(r->pushed % r->n);
	pthread_mutex_unlock(&r->mu);
	return slot;
}

void ring_push(struct ring *r)
{
	pthread_mutex_lock(&r->mu);
	r->pushed++;
	/* one more slot: one consumer can take it */
	pthread_cond_signal(&r->items);
	pthread_mutex_unlock(&r->mu);
}

void ring_close(struct ring *r, struct ocitree_error *err)
{
	pthread_mutex_lock(&r->mu);
	r->closed = true;
	if (err) {
		ocitree_error_free(r->error);
		r->error = err;
	}
	pthread_cond_broadcast(&r->items);
	pthread_mutex_unlock(&r->mu);
}

int ring_take(struct ring *r, size_t *slot, struct ocitree_error **err)
{
	int ret = 0;
	pthread_mutex_lock(&r->mu);
	while (r->taken == r->pushed && !r->closed && !r->cancelled)
		pthread_cond_wait(&r->items, &r->mu);
	if (r->cancelled) {
		ret = 0;
	} else if (r->taken < r->pushed) {
		*slot = (size_t)(r->taken++ % r->n);
		ret = 1;
	} else if (r->error) {
		/* every consumer, and every call, gets the error */
		if (err) {
			ocitree_error_free(*err);
			*err = xmalloc(sizeof(**err));
			**err = *r->error;
			(*err)->msg = xstrdup(r->error->msg);
		}
		ret = -1;
	}
	pthread_mutex_unlock(&r->mu);
	return ret;
}

void ring_finish(struct ring *r, size_t slot)
{
	pthread_mutex_lock(&r->mu);
	r->finished[slot] = true;
	pthread_cond_broadcast(&r->room);
	pthread_mutex_unlock(&r->mu);
}

bool ring_oldest_finished(struct ring *r, bool wait)
{
	pthread_mutex_lock(&r->mu);
	size_t k = (size_t)(r->released % r->n);
	while (wait && r->released < r->pushed && !r->finished[k] && !r->cancelled)
		pthread_cond_wait(&r->room, &r->mu);
	bool done = r->released < r->pushed && r->finished[k];
	pthread_mutex_unlock(&r->mu);
	return done;
}

void ring_release(struct ring *r)
{
	pthread_mutex_lock(&r->mu);
	if (r->released < r->taken) {
		r->finished[r->released % r->n] = false;
		r->released++;
		pthread_cond_broadcast(&r->room);
	}
	pthread_mutex_unlock(&r->mu);
}

int ring_next(struct ring *r, bool *held, size_t *slot, struct ocitree_error **err)
{
	if (*held) {
		ring_release(r);
		*held = false;
	}
	int ret = ring_take(r, slot, err);
	*held = ret > 0;
	return ret;
}

void ring_cancel(struct ring *r)
{
	pthread_mutex_lock(&r->mu);
	r->cancelled = true;
	pthread_cond_broadcast(&r->items);
	pthread_cond_broadcast(&r->room);
	pthread_mutex_unlock(&r->mu);
}
