/* dsn_local.c - the success report (RFC 3461 4.1 NOTIFY=SUCCESS, RFC
 * 3464 "Action: delivered", Status 2.0.0) for a message on_message put
 * into mailboxes itself: the recipients msg:deliver_maildir or
 * msg:deliver_mbox wrote it for ({ rcpt = } names one; without it, every
 * recipient), once the message is accepted. It is what relay_outcome.c
 * sends for the queue's own deliveries, built and queued through the same
 * relay_report(): from MAILER-DAEMON, through the queue, to the sender,
 * with ENVID as Original-Envelope-Id and ORCPT as Original-Recipient; the
 * header only, whatever RET says (RFC 3461 4.3: a report without a
 * failure returns the header). Not reported:
 *   - anything for the null sender (a bounce is never reported on);
 *   - a message accepted with nothing written (the policy's 250 alone,
 *     msg:relay's routes, msg:print, msg:save): nothing was delivered
 *     here, and a relayed recipient is the queue's to report;
 *   - in LMTP, a recipient whose own reply is a failure (msg:rcpt_reply
 *     4xx/5xx, a deliverer's 451), even if another deliverer wrote it.
 * When the queue cannot take the report (no spool, a full disk), the
 * message stays accepted (its 2xx is on its way) and one warning line
 * says which report was lost: Postfix too accepts first and reports
 * after, and a report is never worth a retry of the mail itself. */
#include "dsn_local.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "dsn.h"
#include "dsn_param.h"
#include "log.h"
#include "msgstore.h"
#include "queue.h"
#include "relay.h"
#include "smtp_session_types.h"

/* Whether recipient i is reported (see the top). */
static int
dsn_local_reported(const struct smtp_tx *tx, size_t i)
{
	const struct smtp_rcpt_reply *r = &tx->rcpt_replies[i];

	return r->delivered && !r->failed && (r->code == 0 || r->code < 400) &&
	    (tx->rcpt_dsn[i].notify & DSN_NOTIFY_SUCCESS);
}

void
dsn_local_report(const struct config *cfg, const char *sid, const struct smtp_tx *tx)
{
	struct dsn_rcpt *dr;
	struct dsn_report rep;
	char seed[64], err[256], id[QUEUE_ID_MAX];
	size_t n = 0;

	if (tx->rcpt_replies == NULL || tx->sender[0] == '\0' || tx->ms == NULL)
		return;
	for (size_t i = 0; i < tx->nrcpts; i++)
		n += dsn_local_reported(tx, i);
	if (n == 0)
		return;
	if ((dr = calloc(n, sizeof(*dr))) == NULL) {
		log_warn(sid, "dsn.local qid=%s result=failed rcpts=%zu error=\"out of memory\"",
		    tx->qid, n);
		return;
	}
	memset(&rep, 0, sizeof(rep));
	rep.now = time(NULL);
	n = 0;
	for (size_t i = 0; i < tx->nrcpts; i++) {
		if (!dsn_local_reported(tx, i))
			continue;
		dr[n].address = tx->rcpts[i];
		dr[n].orcpt = tx->rcpt_dsn[i].orcpt;
		dr[n].action = DSN_DELIVERED;
		dr[n].status = "2.0.0";
		dr[n].last_attempt = rep.now;
		n++;
	}
	rep.reporting_mta = cfg->hostname;
	rep.sender = tx->sender;
	rep.queue_id = tx->qid;
	rep.arrival = rep.now;
	rep.rcpts = dr;
	rep.nrcpts = n;
	rep.envid = tx->dsn_envid;
	rep.msg = msgstore_head(tx->ms, &rep.msglen);
	rep.headers_only = 1;
	snprintf(seed, sizeof(seed), "%s.%ld", tx->qid, (long)rep.now);
	rep.message_id_seed = seed;
	if (relay_report(cfg, &rep, id, sizeof(id), err, sizeof(err)) == -1)
		log_warn(sid, "dsn.local qid=%s result=failed to=<%s> rcpts=%zu error=\"%s\"",
		    tx->qid, tx->sender, n, err);
	else
		log_info(sid, "dsn.local qid=%s result=queued report=%s to=<%s> rcpts=%zu", tx->qid,
		    id, tx->sender, n);
	free(dr);
}
