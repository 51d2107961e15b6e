/* smtp_pace.h - a formatted reply released one line at a time on a timer,
 * optionally cut off after some lines: luamta.reply's line_delay and
 * drop_after, for testing how clients cope with slow or broken servers.
 * It writes to the connection and reports the end; the session decides
 * what happens next. */
#ifndef LUAMTA_SMTP_PACE_H
#define LUAMTA_SMTP_PACE_H

#include <stddef.h>

#include <ev.h>

struct conn;
struct smtp_pace; /* opaque */

enum smtp_pace_end {
	SMTP_PACE_DONE = 0, /* every line is out */
	SMTP_PACE_DROPPED,  /* drop_after lines are out: the caller hangs up */
	SMTP_PACE_FAILED,   /* the output could not be queued (out of memory) */
};
const char *smtp_pace_end_str(enum smtp_pace_end);

/* Called from the loop when the pace is over (never from smtp_pace_new()).
 * The pace is still allocated; the callback frees it. */
typedef void smtp_pace_cb(struct smtp_pace *, enum smtp_pace_end, int lines, void *arg);

/* Copies reply (len bytes of CRLF-terminated lines) and releases its first
 * line to conn now, then one line every delay seconds; with drop_after >= 0
 * it stops after that many lines. conn is borrowed: free the pace before
 * the connection. Returns NULL when out of memory. */
struct smtp_pace *smtp_pace_new(struct ev_loop *, struct conn *, const char *reply, size_t len,
    double delay, int drop_after, smtp_pace_cb *done, void *arg);
void smtp_pace_free(struct smtp_pace *); /* NULL is a no-op */

#endif
