/* smtp_lmtp.c - LMTP's differences from SMTP in a session (RFC 2033):
 * the greeting verb, and the replies after the message, one per accepted
 * recipient in RCPT order (4.2). A recipient's own reply (msg:rcpt_reply,
 * or 451 from a deliverer given { rcpt = } that failed) replaces the
 * message's when on_message decided the message (SMTP_LMTP_OWN); the
 * server's own failures (size, loop, storage, a script error, queueing)
 * apply to every recipient alike. */
#include "smtp_lmtp.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "smtp_session_types.h"

const char *
smtp_lmtp_refuses(const struct smtp_session *s, const char *verb)
{
	if (s->lmtp && (strcasecmp(verb, "HELO") == 0 || strcasecmp(verb, "EHLO") == 0))
		return "Error: this is LMTP, say LHLO";
	if (!s->lmtp && strcasecmp(verb, "LHLO") == 0)
		return "Error: command not recognized";
	return NULL;
}

void
smtp_lmtp_message_end(struct smtp_session *s)
{
	if (s->lmtp)
		s->lmtp_fanout = SMTP_LMTP_SAME;
}

int
smtp_lmtp_reply(
    struct smtp_session *s, int code, const char *enh, const char *text, smtp_lmtp_emit *emit)
{
	static const char *const class_enh[] = { NULL, NULL, "2.0.0", NULL, "4.0.0", "5.0.0" };
	struct smtp_tx *tx = s->tx;
	char esc[256];

	if (s->lmtp_fanout == SMTP_LMTP_OFF || code == 421 || tx == NULL || tx->nrcpts == 0)
		return 0;
	for (size_t i = 0; i < tx->nrcpts; i++) {
		const struct smtp_rcpt_reply *r = s->lmtp_fanout == SMTP_LMTP_OWN &&
			tx->rcpt_replies != NULL && tx->rcpt_replies[i].code != 0 ?
		    &tx->rcpt_replies[i] :
		    NULL;
		int c = r != NULL ? r->code : code;

		log_info(s->sid, "smtp.lmtp_reply qid=%s rcpt=\"%s\" code=%d own=%s", tx->qid,
		    log_escape(esc, sizeof(esc), tx->rcpts[i], strlen(tx->rcpts[i])), c,
		    r != NULL ? "yes" : "no");
		if (r == NULL)
			emit(s, code, enh, text);
		else
			emit(s, c, class_enh[c / 100],
			    r->text != NULL ? r->text :
				c < 400     ? "Ok" :
				c < 500     ? "Try again later" :
					      "Rejected");
	}
	return 1;
}

void
smtp_lmtp_tx_free(struct smtp_tx *tx)
{
	if (tx->rcpt_replies == NULL)
		return;
	for (size_t i = 0; i < tx->nrcpts; i++)
		free(tx->rcpt_replies[i].text);
	free(tx->rcpt_replies);
	tx->rcpt_replies = NULL;
}
