/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The library's logging (ocitree/log.h): messages at or above the level are
 * handed to the handler the program installed, and dropped when there is
 * none, so that the library never prints.
 */
#include "config.h"

#include <stdarg.h>
#include <strings.h>

#include "util.h"

/* Set once by the program before threads start; read without locking. */
static ocitree_log_fn log_fn;
static void *log_userdata;
static enum ocitree_log_level log_level = OCITREE_LOG_WARN;

OCITREE_EXPORT void ocitree_log_set_handler(ocitree_log_fn fn, void *userdata)
{
	log_fn = fn;
	log_userdata = userdata;
}

OCITREE_EXPORT void ocitree_log_set_level(enum ocitree_log_level level)
{
	log_level = level;
}

OCITREE_EXPORT enum ocitree_log_level ocitree_log_get_level(void)
{
	return log_level;
}

OCITREE_EXPORT int ocitree_log_level_parse(const char *name, enum ocitree_log_level *level)
{
	static const struct {
		const char *name;
		enum ocitree_log_level level;
	} names[] = {
		{"debug", OCITREE_LOG_DEBUG}, {"info", OCITREE_LOG_INFO},   {"warn", OCITREE_LOG_WARN},
		{"warning", OCITREE_LOG_WARN}, {"error", OCITREE_LOG_ERROR}, {"fatal", OCITREE_LOG_ERROR},
	};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		if (strcasecmp(name, names[i].name) == 0) {
			*level = names[i].level;
			return 0;
		}
	}
	return -1;
}

OCITREE_EXPORT void ocitree_log(enum ocitree_log_level level, const char *fmt, ...)
{
	if (!log_fn || level < log_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *m = xvasprintf(fmt, ap);
	va_end(ap);
	log_fn(level, m, log_userdata);
	free(m);
}
