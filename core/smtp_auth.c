/* smtp_auth.c - AUTH (RFC 4954) in a session: when it may start, the
 * lines of the exchange handled from a copy that is wiped, and on_auth's
 * verdict; the exchange itself (PLAIN, LOGIN, base64) is smtp_sasl.c. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hook_api.h"
#include "log.h"
#include "metrics.h"
#include "script.h"
#include "smtp_sasl.h"
#include "smtp_session_int.h"

/* Answers what the exchange (smtp_sasl.c) asks for: a challenge or a
 * failure here; with credentials, the on_auth hook decides. Returns 1 while
 * the exchange goes on, -1 when it failed, 0 when the user name and the
 * password are in the pending command (whose reset wipes the password). */
static int
smtp_sasl_result(struct smtp_session *s, enum smtp_sasl_status st, const struct smtp_sasl_reply *r)
{
	snprintf(s->pend.verb, sizeof(s->pend.verb), "%s", s->sasl.mech);
	switch (st) {
	case SMTP_SASL_CHALLENGE:
		smtp_reply(s, 334, NULL, "%s", r->text);
		return 1;
	case SMTP_SASL_FAIL:
		smtp_reply(s, r->code, r->enh, "%s", r->text);
		metrics_inc(MC_AUTH_ABORTED);
		return -1;
	case SMTP_SASL_DONE:
		break;
	}
	s->pend.arg = s->sasl.user;
	s->pend.params = s->sasl.pass;
	s->sasl.user = s->sasl.pass = NULL;
	smtp_sasl_reset(&s->sasl);
	return 0;
}

int
smtp_check_auth(struct smtp_session *s, const char *arg, size_t len)
{
	struct smtp_sasl_reply r;

	if (!s->esmtp) {
		smtp_reply(s, 503, "5.5.1", "Error: send EHLO first");
		return -1;
	}
	if (s->user != NULL) {
		smtp_reply(s, 503, "5.5.1", "Error: already authenticated");
		return -1;
	}
	if (!script_has(s->script, HOOK_AUTH)) {
		smtp_reply(s, 503, "5.5.1", "Error: authentication not enabled");
		return -1;
	}
	if (!smtp_auth_offered(s)) {
		smtp_reply(
		    s, 538, "5.7.11", "Encryption required for requested authentication mechanism");
		return -1;
	}
	return smtp_sasl_result(s, smtp_sasl_start(&s->sasl, arg, len, &r), &r);
}

/* A line of an AUTH exchange: cancel, more of LOGIN, or the end. */
static void
smtp_sasl_line(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_sasl_reply r;

	switch (smtp_sasl_result(s, smtp_sasl_next(&s->sasl, line, len, &r), &r)) {
	case 0:
		smtp_hook_run(s);
		break;
	case -1:
		smtp_pending_reset(s);
		break;
	}
}

void
smtp_do_auth(struct smtp_session *s, const struct hook_result *res)
{
	char esc[128];

	free(s->user);
	s->user = s->pend.arg;
	s->pend.arg = NULL;
	log_info(s->sid, "smtp.auth result=accept mech=%s user=\"%s\"", s->pend.verb,
	    log_escape(esc, sizeof(esc), s->user, strlen(s->user)));
	metrics_inc(MC_AUTH_SUCCESS);
	smtp_reply_hook(s, res, 235, "2.7.0", "Authentication successful");
}

void
smtp_rejected_auth(struct smtp_session *s)
{
	char esc[128];

	s->auth_failures++;
	metrics_inc(s->last_code / 100 == 4 ? MC_AUTH_TEMPFAIL : MC_AUTH_FAILURE);
	log_info(s->sid, "smtp.auth result=reject mech=%s user=\"%s\" failures=%d", s->pend.verb,
	    log_escape(esc, sizeof(esc), s->pend.arg != NULL ? s->pend.arg : "",
		s->pend.arg != NULL ? strlen(s->pend.arg) : 0),
	    s->auth_failures);
	if (s->auth_failures >= s->srv->cfg->max_auth_failures) {
		/* RFC 5321 3.8: 421 may come at any time before closing. */
		smtp_reply(s, 421, "4.7.0", "%s Error: too many failed authentication attempts",
		    s->srv->cfg->hostname);
		smtp_session_close(s, "auth_failures");
	}
}

/* An AUTH command or a line of its exchange carries credentials: it is
 * handled from a copy, and neither the copy nor the bytes in the input
 * buffer (which stay there until the next read) outlive it. */
void
smtp_auth_line(struct smtp_session *s, const char *line, size_t len)
{
	char copy[SMTP_SASL_LINE_MAX];

	memcpy(copy, line, len);
	explicit_bzero((char *)(uintptr_t)line, len);
	if (s->sasl.step != SMTP_SASL_IDLE)
		smtp_sasl_line(s, copy, len);
	else
		smtp_command(s, copy, len);
	explicit_bzero(copy, len);
}
