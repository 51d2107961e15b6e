/* log.c - stderr event log. Each event is formatted into one buffer and
 * written with one write(2), so lines from a future multi-process server
 * never interleave mid-line. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_level = LOG_INFO;

static const char *const log_level_names[] = { "error", "warn", "info", "debug" };

const char *
log_level_str(enum log_level l)
{
	return (unsigned)l < 4 ? log_level_names[l] : "?";
}

int
log_level_parse(const char *s, enum log_level *out)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, log_level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	return -1;
}

void
log_set_level(enum log_level l)
{
	log_level = l;
}

int
log_enabled(enum log_level l)
{
	return l <= log_level;
}

static void
log_vwrite(enum log_level l, const char *sid, const char *fmt, va_list ap)
{
	/* The time prefix changes once a second: format it only then (the
	 * bench found strftime a tenth of the per-session user CPU). */
	static char stamp[32];
	static size_t stamp_len;
	static time_t stamp_sec = -1;
	char line[4096];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != stamp_sec) {
		gmtime_r(&ts.tv_sec, &tm);
		stamp_len = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ ", &tm);
		stamp_sec = ts.tv_sec;
	}
	memcpy(line, stamp, stamp_len);
	n = stamp_len;
	r = snprintf(
	    line + n, sizeof(line) - n, "%s %s ", log_level_str(l), sid != NULL ? sid : "-");
	if (r > 0)
		n += (size_t)r;
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (r < 0)
		r = 0;
	n += (size_t)r;
	if (n > sizeof(line) - 2) {
		/* Truncated: keep the one-line promise. */
		n = sizeof(line) - 5;
		memcpy(line + n, "...", 3);
		n += 3;
	}
	line[n++] = '\n';
	/* A short write to stderr is not worth a retry loop on this path. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

void
log_event(enum log_level l, const char *sid, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(l))
		return;
	va_start(ap, fmt);
	log_vwrite(l, sid, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	char msg[1024];
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_event(LOG_ERROR, NULL, "fatal %s: %s", msg, strerror(saved));
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_event(LOG_ERROR, NULL, "fatal %s", msg);
	exit(1);
}

char *
log_escape(char *out, size_t outsz, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (outsz == 0)
		return out;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char tmp[4];
		size_t tl = 0;

		if (c == '\n')
			tmp[tl++] = '\\', tmp[tl++] = 'n';
		else if (c == '\r')
			tmp[tl++] = '\\', tmp[tl++] = 'r';
		else if (c == '\t')
			tmp[tl++] = '\\', tmp[tl++] = 't';
		else if (c == '\\' || c == '"')
			tmp[tl++] = '\\', tmp[tl++] = (char)c;
		else if (c < 0x20 || c >= 0x7f) {
			tmp[tl++] = '\\';
			tmp[tl++] = 'x';
			tmp[tl++] = hex[c >> 4];
			tmp[tl++] = hex[c & 15];
		} else
			tmp[tl++] = (char)c;
		if (o + tl + 4 > outsz) {
			if (outsz >= 4) {
				o = o > outsz - 4 ? outsz - 4 : o;
				memcpy(out + o, "...", 3);
				o += 3;
			}
			break;
		}
		memcpy(out + o, tmp, tl);
		o += tl;
	}
	out[o < outsz ? o : outsz - 1] = '\0';
	return out;
}
