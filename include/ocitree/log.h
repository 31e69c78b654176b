/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging.  The library never prints: it hands messages to a handler that
 * the program installs.  Without a handler, messages are dropped.
 */
#ifndef OCITREE_LOG_H
#define OCITREE_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

enum ocitree_log_level {
	OCITREE_LOG_DEBUG = 0,
	OCITREE_LOG_INFO,
	OCITREE_LOG_WARN,
	OCITREE_LOG_ERROR,
};

typedef void (*ocitree_log_fn)(enum ocitree_log_level level, const char *msg, void *userdata);

/* Install the handler (NULL to drop messages) and its userdata. */
void ocitree_log_set_handler(ocitree_log_fn fn, void *userdata);

/* Messages below level are not formatted at all.  Default: WARN. */
void ocitree_log_set_level(enum ocitree_log_level level);
enum ocitree_log_level ocitree_log_get_level(void);

/* Parse "debug", "info", "warn", "error" (and "fatal", as error).
 * Returns -1 for anything else. */
int ocitree_log_level_parse(const char *name, enum ocitree_log_level *level);

void ocitree_log(enum ocitree_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif
