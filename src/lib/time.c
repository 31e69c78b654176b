/* SPDX-License-Identifier: Apache-2.0 */
/* The RFC 3339 timestamps of image JSON ("created" of configs and history
 * entries), and the time ocitree stamps new ones with. */
#include "config.h"

#include "ocitree/layer.h"
#include "ocitree/model.h"
#include "util.h"

static int parse_digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

OCITREE_EXPORT int ocitree_time_parse(const char *s, struct timespec *out)
{
	const char *p = s;
	int Y, M, D, h, m, sec;
	long nsec = 0;
	if (parse_digits(&p, 4, &Y) < 0 || *p++ != '-' || parse_digits(&p, 2, &M) < 0 || *p++ != '-' ||
	    parse_digits(&p, 2, &D) < 0 || (*p != 'T' && *p != 't' && *p != ' '))
		return -1;
	p++;
	if (parse_digits(&p, 2, &h) < 0 || *p++ != ':' || parse_digits(&p, 2, &m) < 0 || *p++ != ':' ||
	    parse_digits(&p, 2, &sec) < 0)
		return -1;
	if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
		return -1;
	if (*p == '.') {
		p++;
		int digits = 0;
		while (*p >= '0' && *p <= '9') {
			if (digits < 9)
				nsec = nsec * 10 + (*p - '0');
			digits++;
			p++;
		}
		if (digits == 0)
			return -1;
		for (int i = digits; i < 9; i++)
			nsec *= 10;
	}
	int64_t offset = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1, oh, om;
		p++;
		if (parse_digits(&p, 2, &oh) < 0 || *p++ != ':' || parse_digits(&p, 2, &om) < 0 || oh > 23 || om > 59)
			return -1;
		offset = sign * (oh * 3600 + om * 60);
	} else {
		return -1;
	}
	if (*p != '\0')
		return -1;
	int64_t t = days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 + h * 3600 + m * 60 + sec - offset;
	out->tv_sec = (time_t)t;
	out->tv_nsec = nsec;
	return 0;
}

static bool leap_year(int y)
{
	return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

OCITREE_EXPORT char *ocitree_time_canonical(const char *s)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	const char *p = s;
	int Y, M, D, h, m, sec;
	if (parse_digits(&p, 4, &Y) < 0 || *p++ != '-' || parse_digits(&p, 2, &M) < 0 || *p++ != '-' ||
	    parse_digits(&p, 2, &D) < 0 || *p++ != 'T' || parse_digits(&p, 2, &h) < 0 || *p++ != ':' ||
	    parse_digits(&p, 2, &m) < 0 || *p++ != ':' || parse_digits(&p, 2, &sec) < 0)
		return NULL;
	if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] + (M == 2 && leap_year(Y)) || h > 23 || m > 59 || sec > 59)
		return NULL;
	/* Go takes ',' as well as '.' before the fraction and keeps nine digits */
	char frac[11] = "";
	if ((*p == '.' || *p == ',') && p[1] >= '0' && p[1] <= '9') {
		size_t n = 0;
		frac[n++] = '.';
		for (p++; *p >= '0' && *p <= '9'; p++)
			if (n < 10)
				frac[n++] = *p;
		while (n > 1 && frac[n - 1] == '0')
			n--;
		frac[n > 1 ? n : 0] = '\0';
	}
	char zone[8] = "Z";
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		char sign = *p++;
		int oh, om;
		if (parse_digits(&p, 2, &oh) < 0 || *p++ != ':' || parse_digits(&p, 2, &om) < 0 || oh > 23 || om > 59)
			return NULL;
		if (oh || om)
			snprintf(zone, sizeof(zone), "%c%02d:%02d", sign, oh, om);
	} else {
		return NULL;
	}
	if (*p != '\0')
		return NULL;
	return xasprintf("%.19s%s%s", s, frac, zone);
}

OCITREE_EXPORT char *ocitree_time_format(const struct timespec *ts)
{
	struct tm tm;
	time_t t = ts->tv_sec;
	gmtime_r(&t, &tm);
	char base[64];
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	if (ts->tv_nsec == 0)
		return xasprintf("%sZ", base);
	char frac[16];
	snprintf(frac, sizeof(frac), "%09ld", ts->tv_nsec);
	for (int i = 8; i > 0 && frac[i] == '0'; i--)
		frac[i] = '\0';
	return xasprintf("%s.%sZ", base, frac);
}

OCITREE_EXPORT struct timespec ocitree_time_now(void)
{
	struct timespec ts = {0, 0};
	int64_t sde = ocitree_source_date_epoch();
	if (sde >= 0) {
		ts.tv_sec = (time_t)sde;
		return ts;
	}
	const char *s = getenv("SOURCE_DATE_EPOCH");
	if (s && *s)
		log_warn("ignoring invalid SOURCE_DATE_EPOCH '%s'", s);
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}
