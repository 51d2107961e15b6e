/* log.h - one event per line on stderr: "<time> <level> <session> <event> k=v",
 * or (--log-format json) one JSON object per line with the same fields.
 * Knows nothing of sessions beyond the id string it is given; escapes
 * client-supplied text with log_escape() so an event is always one line. */
#ifndef LUAMTA_LOG_H
#define LUAMTA_LOG_H

#include <stddef.h>

enum log_level {
	LOG_ERROR = 0,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};
const char *log_level_str(enum log_level);
int log_level_parse(const char *, enum log_level *); /* 0 or -1 */

void log_set_level(enum log_level);
int log_enabled(enum log_level);

enum log_format {
	LOG_FORMAT_TEXT = 0,
	LOG_FORMAT_JSON,
};
int log_format_parse(const char *, enum log_format *); /* "text", "json": 0 or -1 */
void log_set_format(enum log_format);

/* The JSON form of one event: {"ts":..,"level":..,"session":..|null,
 * "event":..,"k":"v",...} from the text form's parts, body being "event
 * k=v k=\"quoted\" ...". Every value is a string; a quoted value's
 * escapes become JSON's (\xHH stays as those four characters, so bytes
 * a client sent stay visible and the line stays valid UTF-8 JSON); what
 * does not read as k=v goes whole into "msg". Writes at most outsz bytes
 * with a NUL and returns the length, or 0 when it did not fit. */
size_t log_json(char *out, size_t outsz, const char *ts, const char *level, const char *sid,
    const char *body, size_t len);

/* sid is a session id or NULL ("-"); fmt describes "event k=v ...". */
void log_event(enum log_level, const char *sid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(sid, ...) log_event(LOG_ERROR, sid, __VA_ARGS__)
#define log_warn(sid, ...)  log_event(LOG_WARN, sid, __VA_ARGS__)
#define log_info(sid, ...)                                                                         \
	do {                                                                                       \
		if (log_enabled(LOG_INFO))                                                         \
			log_event(LOG_INFO, sid, __VA_ARGS__);                                     \
	} while (0)
#define log_debug(sid, ...)                                                                        \
	do {                                                                                       \
		if (log_enabled(LOG_DEBUG))                                                        \
			log_event(LOG_DEBUG, sid, __VA_ARGS__);                                    \
	} while (0)

/* Startup and invariant failures only: log and exit(1). fatal() appends
 * strerror(errno). Never on the per-connection path. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Escapes len bytes of s into out (outsz bytes, always NUL-terminated):
 * printable ASCII except '\\' and '"' is copied, the rest becomes \n, \r,
 * \t, \\, \" or \xNN. Truncates with "..." when out is too small.
 * Returns out, so it can be used as a printf argument. */
char *log_escape(char *out, size_t outsz, const char *s, size_t len);

#endif
