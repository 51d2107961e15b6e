/* log.c - stderr event log. Each event is formatted into one buffer and
 * written with one write(2), so lines from a future multi-process server
 * never interleave mid-line. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_level = LOG_INFO;
static enum log_format log_format = LOG_FORMAT_TEXT;

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

int
log_format_parse(const char *s, enum log_format *out)
{
	if (strcmp(s, "text") == 0)
		*out = LOG_FORMAT_TEXT;
	else if (strcmp(s, "json") == 0)
		*out = LOG_FORMAT_JSON;
	else
		return -1;
	return 0;
}

void
log_set_format(enum log_format f)
{
	log_format = f;
}

/* Appends to out as long as it fits; o is SIZE_MAX once it did not. */
static void
json_put(char *out, size_t outsz, size_t *o, const char *s, size_t n)
{
	if (*o == SIZE_MAX || n >= outsz - *o) {
		*o = SIZE_MAX;
		return;
	}
	memcpy(out + *o, s, n);
	*o += n;
}

/* A JSON string of text that is already log_escape()d (or a bare token):
 * its escapes are carried over, a quote or control byte escaped. */
static void
json_str(char *out, size_t outsz, size_t *o, const char *s, size_t n, int unescape)
{
	json_put(out, outsz, o, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (unescape && c == '\\' && i + 1 < n) {
			char e = s[++i];
			/* \n \r \t \\ \" are JSON's too; \xHH is kept as
			 * text: a backslash, then "xHH". */
			if (e == 'n' || e == 'r' || e == 't' || e == '\\' || e == '"') {
				char two[2] = { '\\', e };
				json_put(out, outsz, o, two, 2);
			} else {
				json_put(out, outsz, o, "\\\\", 2);
				json_put(out, outsz, o, &e, 1);
			}
		} else if (c == '"' || c == '\\') {
			char two[2] = { '\\', c };
			json_put(out, outsz, o, two, 2);
		} else if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f) {
			/* Not produced by log_escape(); never invalid JSON. */
			char hex[8];
			snprintf(hex, sizeof(hex), "\\u%04x", (unsigned char)c);
			json_put(out, outsz, o, hex, 6);
		} else
			json_put(out, outsz, o, &c, 1);
	}
	json_put(out, outsz, o, "\"", 1);
}

static void
json_field(char *out, size_t outsz, size_t *o, const char *key, size_t klen, const char *v,
    size_t vlen, int unescape)
{
	json_put(out, outsz, o, ",", 1);
	json_str(out, outsz, o, key, klen, 0);
	json_put(out, outsz, o, ":", 1);
	json_str(out, outsz, o, v, vlen, unescape);
}

size_t
log_json(char *out, size_t outsz, const char *ts, const char *level, const char *sid,
    const char *body, size_t len)
{
	const char *p = body, *end = body + len, *k, *v;
	size_t o = 0, klen;

	if (outsz == 0)
		return 0;
	json_put(out, outsz, &o, "{\"ts\":", 6);
	json_str(out, outsz, &o, ts, strlen(ts), 0);
	json_field(out, outsz, &o, "level", 5, level, strlen(level), 0);
	json_put(out, outsz, &o, ",\"session\":", 11);
	if (sid != NULL)
		json_str(out, outsz, &o, sid, strlen(sid), 0);
	else
		json_put(out, outsz, &o, "null", 4);
	/* The event: the first word. */
	for (k = p; p < end && *p != ' '; p++)
		;
	json_field(out, outsz, &o, "event", 5, k, (size_t)(p - k), 0);
	while (p < end) {
		while (p < end && *p == ' ')
			p++;
		if (p == end)
			break;
		/* key=: lower-case letters, digits, '_' and '.'. */
		for (k = p; p < end &&
		     ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
			 *p == '.');
		     p++)
			;
		klen = (size_t)(p - k);
		if (klen == 0 || p == end || *p != '=') {
			json_field(out, outsz, &o, "msg", 3, k, (size_t)(end - k), 0);
			break;
		}
		v = ++p;
		if (p < end && *p == '"') {
			/* Up to the closing quote; \" and \\ inside are escapes. */
			for (v = ++p; p < end && *p != '"'; p++)
				if (*p == '\\' && p + 1 < end)
					p++;
			json_field(out, outsz, &o, k, klen, v, (size_t)(p - v), 1);
			if (p < end)
				p++;
		} else {
			while (p < end && *p != ' ')
				p++;
			json_field(out, outsz, &o, k, klen, v, (size_t)(p - v), 0);
		}
	}
	json_put(out, outsz, &o, "}", 1);
	if (o == SIZE_MAX || o >= outsz)
		return 0;
	out[o] = '\0';
	return o;
}

static void
log_vwrite(enum log_level l, const char *sid, const char *fmt, va_list ap)
{
	/* The time prefix changes once a second: format it only then (the
	 * bench found strftime a tenth of the per-session user CPU). */
	static char stamp[32];
	static size_t stamp_len;
	static time_t stamp_sec = -1;
	char line[4096], json[8192];
	struct timespec ts;
	struct tm tm;
	size_t n, body;
	int r;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != stamp_sec) {
		gmtime_r(&ts.tv_sec, &tm);
		stamp_len = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ ", &tm);
		stamp_sec = ts.tv_sec;
	}
	/* The text form's prefix, then the event formatted right after it:
	 * the JSON form reads the event from there. */
	memcpy(line, stamp, stamp_len);
	n = stamp_len;
	r = snprintf(
	    line + n, sizeof(line) - n, "%s %s ", log_level_str(l), sid != NULL ? sid : "-");
	if (r > 0)
		n += (size_t)r;
	body = n;
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
	if (log_format == LOG_FORMAT_JSON && stamp_len > 0) {
		char when[32];
		size_t jn;

		memcpy(when, stamp, stamp_len - 1); /* without the space */
		when[stamp_len - 1] = '\0';
		jn = log_json(
		    json, sizeof(json) - 1, when, log_level_str(l), sid, line + body, n - body);
		/* Too long once escaped (only unescaped 8-bit text grows that
		 * much): still one JSON object, saying so. */
		if (jn == 0)
			jn = log_json(json, sizeof(json) - 1, when, log_level_str(l), sid,
			    "log.too_long", 12);
		json[jn++] = '\n';
		(void)!write(STDERR_FILENO, json, jn);
		return;
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
