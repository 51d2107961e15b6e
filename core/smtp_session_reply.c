/* smtp_session_reply.c - every reply of a session on its way out: built
 * (smtp_reply.c formats; a reply that cannot fit becomes a 451), counted
 * (the last code, errors towards --max-errors), sent once per recipient
 * in LMTP after the message (smtp_lmtp.c), or paced for testing clients
 * (smtp_pace.c), and a hook's custom reply chosen over the default. */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "conn.h"
#include "hook.h"
#include "log.h"
#include "smtp_lmtp.h"
#include "smtp_pace.h"
#include "smtp_parse.h"
#include "smtp_reply.h"
#include "smtp_session_int.h"

/* Formats a reply into out; one that cannot fit (smtp_reply_size_ok()
 * makes sure no script text gets here) becomes a 451 rather than half a
 * reply that would leave the client waiting for its last line. */
static size_t
smtp_reply_build(
    struct smtp_session *s, char *out, size_t outsz, int code, const char *enh, const char *text)
{
	size_t n = smtp_reply_format(out, outsz, code, enh, text);

	if (n == 0) {
		log_warn(s->sid, "smtp.reply_too_long code=%d", code);
		n = smtp_reply_format(out, outsz, 451, "4.3.0", "Error: reply too long");
	}
	return n;
}

/* Every reply goes past here: remembers its code, and counts an error
 * reply towards --max-errors (Postfix's smtpd_hard_error_limit). Two are
 * not errors: 421, which ends the session anyway, and 452 4.5.3 (too many
 * recipients), which is the protocol asking for another transaction
 * (RFC 5321 4.5.3.1.10), not the client doing wrong. */
static void
smtp_reply_seen(struct smtp_session *s, int code, const char *enh)
{
	s->last_code = code;
	if (code >= 400 && code != 421 && !(code == 452 && enh != NULL && !strcmp(enh, "4.5.3")))
		s->errors++;
}

/* Queues one reply once. */
static void
smtp_reply_once(struct smtp_session *s, int code, const char *enh, const char *text)
{
	char out[SMTP_REPLY_MAX];
	size_t n = smtp_reply_build(s, out, sizeof(out), code, enh, text);

	smtp_reply_seen(s, code, enh);
	if (conn_write(s->conn, out, n) == -1)
		smtp_session_close(s, "out of memory");
	log_debug(s->sid, "smtp.reply code=%d", code);
}

/* Queues one reply (see smtp_reply_format); in LMTP after the message,
 * once per recipient (smtp_lmtp.h). */
void
smtp_reply_lines(struct smtp_session *s, int code, const char *enh, const char *text)
{
	if (!smtp_lmtp_reply(s, code, enh, text, smtp_reply_once))
		smtp_reply_once(s, code, enh, text);
}

/* A paced reply is over: what the client sent meanwhile is next, or the
 * close that was waiting for it, or the TLS handshake. */
static void
smtp_on_pace_end(struct smtp_pace *p, enum smtp_pace_end end, int lines, void *arg)
{
	struct smtp_session *s = arg;

	smtp_pace_free(p);
	s->pace = NULL;
	if (end == SMTP_PACE_DROPPED) {
		log_info(s->sid, "smtp.reply_dropped lines=%d", lines);
		smtp_session_close(s, "hook_drop");
		return;
	}
	if (end == SMTP_PACE_FAILED) {
		smtp_session_close(s, "out of memory");
		return;
	}
	if (s->closing)
		smtp_reap(s);
	else {
		if (s->starttls_pending)
			smtp_starttls_begin(s);
		smtp_session_process(s);
	}
}

/* Paced replies (luamta.reply options, for testing clients): the lines go
 * out line_delay apart, and with drop_after the connection is cut after
 * that many lines. Commands wait until the reply is over. */
void
smtp_reply_paced(struct smtp_session *s, int code, const char *enh, const char *text,
    const struct hook_result *res)
{
	char out[SMTP_REPLY_MAX];
	size_t n = smtp_reply_build(s, out, sizeof(out), code, enh, text);

	/* One line that is not cut off has nothing to pace: it goes out now,
	 * so what follows it (a STARTTLS handshake) starts at once too. LMTP's
	 * replies per recipient are not paced. */
	if ((res->drop_after < 0 && memchr(out, '\n', n) == out + n - 1) || s->lmtp_fanout) {
		smtp_reply_lines(s, code, enh, text);
		return;
	}
	smtp_reply_seen(s, code, enh);
	smtp_pace_free(s->pace);
	s->pace = smtp_pace_new(
	    s->srv->loop, s->conn, out, n, res->line_delay, res->drop_after, smtp_on_pace_end, s);
	if (s->pace == NULL)
		smtp_reply_lines(s, code, enh, text);
}

void
smtp_reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
	char text[SMTP_REPLY_TEXT_MAX + 1];
	va_list ap;

	/* Most replies are fixed text: no formatting pass for them. */
	if (strchr(fmt, '%') == NULL) {
		smtp_reply_lines(s, code, enh, fmt);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	smtp_reply_lines(s, code, enh, text);
}

/* Sends the hook's custom reply when it gave one, else the default. */
void
smtp_reply_hook(struct smtp_session *s, const struct hook_result *res, int code, const char *enh,
    const char *text)
{
	if (res != NULL && res->code != 0) {
		static const char *const class_enh[] = { NULL, NULL, "2.0.0", NULL, "4.0.0",
			"5.0.0" };
		/* Every custom reply carries an enhanced code (RFC 2034 3) but
		 * 220 and 354, which RFC 2034 leaves without one. */
		const char *renh = res->code == 220 ? NULL : class_enh[res->code / 100];
		const char *rtext = res->text != NULL ? res->text :
		    res->code < 400                   ? "Ok" :
		    res->code < 500                   ? "Try again later" :
							"Rejected";

		if (hook_result_paced(res))
			smtp_reply_paced(s, res->code, renh, rtext, res);
		else
			smtp_reply_lines(s, res->code, renh, rtext);
	} else
		smtp_reply_lines(s, code, enh, text);
}
