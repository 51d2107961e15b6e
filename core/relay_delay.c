/* relay_delay.c - the delay warning (RFC 3461 4.1 NOTIFY=DELAY, RFC 3464
 * "Action: delayed"), as Postfix's delay_warning_time: once an entry has
 * been in the queue --delay-warning seconds, the end of its next pass that
 * leaves recipients deferred queues one report to the sender naming them,
 * with the status of each one's last reply and Will-Retry-Until (its
 * arrival plus --queue-lifetime), quoting the header only. At most once
 * per entry: the time it was queued is kept in the entry's envelope
 * (delay_warned, saved with the state of the pass), so neither a later
 * pass nor a restart sends another. A recipient is named when its NOTIFY
 * is absent (Postfix warns then too) or has DELAY; NOTIFY=NEVER or a list
 * without DELAY keeps it out. Never for the null sender or about a report.
 * The warning follows the pass's outbound hooks (on_deferred has run) and
 * its failure report, if any; a crash between queuing it and saving the
 * entry sends it once more at the next pass, as delivery is at least once.
 * A warning that cannot be queued is tried again at the next pass. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "dsn.h"
#include "dsn_param.h"
#include "log.h"
#include "relay_int.h"

/* Whether recipient r is named in a delay warning (see the top). */
static int
relay_delay_wanted(const struct queue_rcpt *r)
{
	return r->state == QUEUE_RCPT_DEFERRED &&
	    (r->notify == 0 || (r->notify & DSN_NOTIFY_DELAY));
}

void
relay_delay_warn(struct relay_job *j)
{
	const struct config *cfg = j->cfg;
	time_t now = time(NULL);
	struct dsn_rcpt *dr;
	char(*status)[16];
	char(*remote)[256];
	size_t n = 0;

	if (cfg->delay_warning <= 0 || j->e.delay_warned != 0 || j->e.sender[0] == '\0' ||
	    j->e.is_bounce || (double)(now - j->e.created) < cfg->delay_warning)
		return;
	for (size_t i = 0; i < j->e.nrcpts; i++)
		n += relay_delay_wanted(&j->e.rcpts[i]);
	if (n == 0)
		return;
	dr = calloc(n, sizeof(*dr));
	status = calloc(n, sizeof(*status));
	remote = calloc(n, sizeof(*remote));
	if (dr == NULL || status == NULL || remote == NULL) {
		log_warn(NULL, "relay.bounce id=%s kind=delay error=\"out of memory\"", j->id);
		goto out;
	}
	n = 0;
	for (size_t i = 0; i < j->e.nrcpts; i++) {
		const struct queue_rcpt *r = &j->e.rcpts[i];
		const char *reply = r->last_reply != NULL ? r->last_reply : "";
		int code = atoi(reply);
		/* Tried in this pass: its answer and who gave it. */
		const struct relay_outcome *o = j->out[i].decided ? &j->out[i] : NULL;

		if (!relay_delay_wanted(r))
			continue;
		relay_status(
		    reply, code >= 400 && code < 500 ? code : 451, status[n], sizeof(status[n]));
		dr[n].address = r->address;
		dr[n].orcpt = r->orcpt;
		dr[n].action = DSN_DELAYED;
		dr[n].status = status[n];
		dr[n].remote_mta =
		    relay_remote_mta(o != NULL ? o->remote : NULL, remote[n], sizeof(remote[n]));
		dr[n].diagnostic = r->last_reply;
		dr[n].last_attempt = o != NULL ? now : 0;
		dr[n].will_retry_until = j->e.created + (time_t)cfg->queue_lifetime;
		n++;
	}
	if (relay_job_report(j, dr, n, "delay") == 0)
		j->e.delay_warned = now;
out:
	free(dr);
	free(status);
	free(remote);
}
