/* smtp_message.c - the message: DATA and BDAT (RFC 3030) as verbs, the
 * bytes of DATA and of each chunk on their way into the reader (its rate,
 * the worker's memory budget), and the end of the message, the one way to
 * on_message: size and bare-LF errors answered, the hop limit and our
 * Received: field, and the verdict (queued with msg:relay's routes on
 * disk first, or refused). */

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "dsn.h"
#include "dsn_local.h"
#include "hook_api.h"
#include "log.h"
#include "metrics.h"
#include "msgstore.h"
#include "relay.h"
#include "smtp_bdat.h"
#include "smtp_data.h"
#include "smtp_lmtp.h"
#include "smtp_session_int.h"

#define SMTP_DATA_MIN_RATE 500 /* bytes/s that keep DATA alive (Postfix's default) */

/* A message's first SMTP_SPILL_AT bytes stay in memory, within
 * --max-data-memory for the worker; the rest goes to a file as it arrives.
 * A DATA that the budget cannot take (already spent, or less left than
 * MAIL's SIZE= needs in memory) waits for a retry (RFC 1870 6.2). */
static int
check_data_memory(struct smtp_session *s)
{
	size_t max = s->srv->cfg->max_data_memory, held = s->srv->data_held;
	size_t need = s->tx->size < SMTP_SPILL_HELD ? s->tx->size : SMTP_SPILL_HELD;

	if (held >= max || need > max - held) {
		log_warn(s->sid, "smtp.data_memory result=refused held=%zu size=%zu max=%zu", held,
		    s->tx->size, max);
		smtp_reply(s, 452, "4.3.1", "Insufficient system storage, try again later");
		metrics_message(452, METRICS_STAGE_DATA);
		return -1;
	}
	return 0;
}

int
smtp_check_data(struct smtp_session *s, const char *arg, size_t len)
{
	if (smtp_check_noarg(s, arg, len) == -1)
		return -1;
	if (s->tx->binarymime) {
		smtp_reply(s, 503, "5.5.1", "Error: BODY=BINARYMIME requires BDAT");
		return -1;
	}
	s->tx->data_tried = 1;
	return check_data_memory(s);
}

/* on_data refused the message before it came (for the metrics only). */
void
smtp_rejected_data(struct smtp_session *s)
{
	metrics_message(s->last_code, METRICS_STAGE_DATA);
}

void
smtp_do_data(struct smtp_session *s, const struct hook_result *res)
{
	s->tx->data =
	    smtp_data_new(s->max_size, s->srv->cfg->bare, s->srv->spill_dirs, SMTP_SPILL_AT);
	if (s->tx->data == NULL) {
		smtp_reply(s, 451, "4.3.0", "Error: out of memory");
		return;
	}
	smtp_enter_state(s, ST_DATA);
	conn_set_timeout(s->conn, s->srv->cfg->data_timeout);
	s->data_mark = ev_now(s->srv->loop);
	s->data_bytes = 0;
	/* RFC 2034: no enhanced code on 354 (it is not a completion). */
	smtp_reply_hook(s, res, 354, NULL, "End data with <CR><LF>.<CR><LF>");
}

/* The end of the message ---------------------------------------------- */

/* The verdict on the transaction's message, for the metrics. */
static void
smtp_verdict(struct smtp_session *s, int code, enum metrics_stage stage)
{
	s->tx->verdict = code;
	metrics_message(code, stage);
}

/* Refused at the final dot: by the server's checks, or by on_message (its
 * command is still pending then). A close without a reply counts as 554. */
void
smtp_rejected_message(struct smtp_session *s)
{
	smtp_verdict(s, s->last_code >= 400 ? s->last_code : 554,
	    s->pend.cmd == &smtp_cmd_message ? METRICS_STAGE_POLICY : METRICS_STAGE_END);
	smtp_tx_end(s);
	conn_set_timeout(s->conn, s->srv->cfg->timeout);
}

void
smtp_do_message(struct smtp_session *s, const struct hook_result *res)
{
	struct smtp_tx *tx = s->tx;

	/* msg:relay's routes: on disk (fsync'ed) before the 250, or nothing
	 * is queued and the client keeps the message. */
	if (!tx->delivery_failed && tx->nrelay > 0) {
		char err[512];

		if (relay_commit(s->srv->cfg, tx->ms, tx->relay, tx->nrelay, err, sizeof(err)) ==
		    -1) {
			if (s->lmtp_fanout)
				s->lmtp_fanout = SMTP_LMTP_SAME;
			log_warn(
			    s->sid, "smtp.queue qid=%s result=failed error=\"%s\"", tx->qid, err);
			smtp_reply(
			    s, 451, "4.3.0", "Error: cannot queue the message, try again later");
			smtp_verdict(s, 451, METRICS_STAGE_QUEUE);
			smtp_tx_end(s);
			conn_set_timeout(s->conn, s->srv->cfg->timeout);
			return;
		}
		for (size_t i = 0; i < tx->nrelay; i++)
			log_info(s->sid, "smtp.queue qid=%s id=%s rcpts=%zu", tx->qid,
			    tx->relay[i].id, tx->relay[i].nrcpts);
	}
	if (tx->delivery_failed) {
		/* The client keeps the message and retries (RFC 5321 4.2.5). */
		if (s->lmtp_fanout)
			s->lmtp_fanout = SMTP_LMTP_SAME;
		smtp_reply(s, 451, "4.3.0", "Error: local delivery failed, try again later");
		smtp_verdict(s, 451, METRICS_STAGE_DELIVERY);
		log_warn(s->sid, "smtp.message qid=%s result=tempfail reason=delivery", tx->qid);
	} else {
		s->messages++;
		s->errors = 0; /* "without delivering mail", as Postfix counts */
		smtp_verdict(s, 250, METRICS_STAGE_POLICY);
		log_info(s->sid, "smtp.message qid=%s result=accept size=%zu rcpts=%zu", tx->qid,
		    msgstore_len(tx->ms), tx->nrcpts);
		if (res != NULL && res->code != 0)
			smtp_reply_hook(s, res, 250, "2.0.0", NULL);
		else
			smtp_reply(s, 250, "2.0.0", "Ok: queued as %s", tx->qid);
		dsn_local_report(s->srv->cfg, s->sid, tx);
	}
	smtp_tx_end(s);
	conn_set_timeout(s->conn, s->srv->cfg->timeout);
}

/* DATA keeps the session alive only while it arrives at SMTP_DATA_MIN_RATE
 * or faster (Postfix's smtpd_min_data_rate): a client that trickles the
 * message a byte at a time still meets --data-timeout. */
void
smtp_data_progress(struct smtp_session *s, size_t n)
{
	ev_tstamp now = ev_now(s->srv->loop);

	s->data_bytes += n;
	if ((double)s->data_bytes >= (now - s->data_mark) * SMTP_DATA_MIN_RATE) {
		conn_touch(s->conn);
		s->data_mark = now;
		s->data_bytes = 0;
	}
}

/* Counts what the DATA reader now holds; past the worker's budget the
 * message is dropped at once and the rest read to its end, then answered
 * 452 (RFC 1870 6.2: a temporary lack of storage). */
void
smtp_data_budget(struct smtp_session *s)
{
	const struct config *cfg = s->srv->cfg;

	smtp_data_account(s);
	if (s->srv->data_held <= cfg->max_data_memory ||
	    smtp_data_error(s->tx->data) != SMTP_DATA_OK)
		return;
	log_warn(s->sid, "smtp.data_memory result=dropped qid=%s held=%zu max=%zu", s->tx->qid,
	    s->srv->data_held, cfg->max_data_memory);
	smtp_data_fail(s->tx->data, SMTP_DATA_ERR_STORAGE);
	smtp_data_account(s);
}

/* The protocol name of the Received: field (RFC 3848). */
static const char *
smtp_proto(const struct smtp_session *s)
{
	static const char *const names[2][4] = {
		{ "ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA" },
		{ "LMTP", "LMTPS", "LMTPA", "LMTPSA" },
	};

	if (!s->esmtp && !s->lmtp)
		return "SMTP";
	return names[s->lmtp ? 1 : 0][(s->tls_active ? 1 : 0) + (s->user != NULL ? 2 : 0)];
}

/* The hop count and our trace field, before on_message sees the message:
 * a message that already passed --max-hops relays (counted in what the
 * client sent) is a loop and refused (RFC 5321 6.3); every other one gets
 * the Received: field of RFC 5321 4.4 on top, unless a hook switched it
 * off. The rDNS name is the one s:rdns() found, if a hook asked: no
 * lookup here. Returns -1 when it replied (the message is refused). */
static int
smtp_trace(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	const struct config *cfg = s->srv->cfg;
	size_t hlen;
	const char *head = msgstore_head(tx->ms, &hlen);
	/* Counted in the header section, which the store keeps in memory. */
	int hops = dsn_count_received(head, hlen);
	char *field;
	unsigned char addr[sizeof(struct in6_addr)];
	/* A UNIX socket's client ("local") or --stdio over pipes ("stdio")
	 * has no address, and "[local]" is no address literal. */
	int has_ip =
	    inet_pton(AF_INET, s->peer_ip, addr) == 1 || inet_pton(AF_INET6, s->peer_ip, addr) == 1;
	int rc;

	if (hops > cfg->max_hops) {
		log_warn(s->sid, "smtp.message qid=%s result=reject error=loop hops=%d max=%d",
		    tx->qid, hops, cfg->max_hops);
		smtp_reply(s, 554, "5.4.6", "Too many hops (mail loop?)");
		return -1;
	}
	if (!s->add_received)
		return 0;
	field = dsn_received(s->helo, s->rdns, has_ip ? s->peer_ip : NULL, cfg->hostname,
	    smtp_proto(s), tx->qid, tx->nrcpts == 1 ? tx->rcpts[0] : NULL, time(NULL));
	rc = field != NULL ? msgstore_prepend(tx->ms, field, strlen(field)) : -1;
	free(field);
	if (rc == -1) {
		smtp_reply(s, 451, "4.3.0", "Error: out of memory");
		return -1;
	}
	smtp_data_account(s);
	return 0;
}

/* Logs and answers the reader's error (at the final dot, BDAT LAST, or
 * a BDAT chunk the message no longer fits in). */
static void
smtp_data_refuse(struct smtp_session *s, enum smtp_data_err err)
{
	struct smtp_tx *tx = s->tx;

	if (smtp_data_errno(tx->data) != 0)
		log_warn(s->sid, "smtp.message qid=%s result=tempfail error=%s cause=\"%s\"",
		    tx->qid, smtp_data_err_str(err), strerror(smtp_data_errno(tx->data)));
	else
		log_info(s->sid, "smtp.message qid=%s result=reject error=%s size=%zu", tx->qid,
		    smtp_data_err_str(err), smtp_data_size(tx->data));
	if (err == SMTP_DATA_ERR_SIZE)
		smtp_reply(s, 552, "5.3.4", "Error: message file too big");
	else if (err == SMTP_DATA_ERR_BARE)
		smtp_reply(
		    s, 550, "5.6.0", "Error: bare <CR> or <LF> in message (see RFC 5321 2.3.8)");
	else if (err == SMTP_DATA_ERR_STORAGE)
		smtp_reply(s, 452, "4.3.1", "Insufficient system storage, try again later");
	else
		smtp_reply(s, 451, "4.3.0", "Error: out of memory");
}

/* The end of the message: the final dot, or BDAT LAST (whose reader was
 * closed). The one way to on_message: answer size and bare-LF errors,
 * else put the trace field on and hand the message over. */
void
smtp_data_end(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	enum smtp_data_err err = smtp_data_error(tx->data);

	smtp_lmtp_message_end(s);
	if (err != SMTP_DATA_OK) {
		smtp_data_refuse(s, err);
		smtp_rejected_message(s);
		return;
	}
	tx->ms = smtp_data_take(tx->data);
	if (msgstore_finish(tx->ms) == -1) {
		log_warn(s->sid, "smtp.message qid=%s result=tempfail error=storage cause=\"%s\"",
		    tx->qid, strerror(errno));
		smtp_reply(s, 452, "4.3.1", "Insufficient system storage, try again later");
		smtp_rejected_message(s);
		return;
	}
	smtp_data_free(tx->data);
	tx->data = NULL;
	smtp_data_account(s);
	if (smtp_trace(s) == -1) {
		smtp_rejected_message(s);
		return;
	}
	s->pend.cmd = &smtp_cmd_message;
	smtp_hook_run(s);
}

/* BDAT (RFC 3030) -------------------------------------------------------- */

/* A chunk whose command was refused is still read, and dropped: its
 * octets are not commands. */
static void
smtp_bdat_skip(struct smtp_session *s, uint64_t size, int last)
{
	if (size == 0)
		return;
	smtp_bdat_start(&s->bdat, size, last);
	s->bdat_mode = SMTP_BDAT_SKIP;
	conn_set_timeout(s->conn, s->srv->cfg->data_timeout);
	s->data_mark = ev_now(s->srv->loop);
	s->data_bytes = 0;
}

/* A size that cannot be read leaves no way to tell the chunk from the
 * commands after it: the session ends, with 521 5.5.4 as Postfix's smtpd
 * ends it (a 5xx that says the connection is over, RFC 7504). Every
 * other refusal reads the chunk and drops it. The first chunk of a
 * transaction runs on_data (a refusal skips the chunk too); the others
 * only add to the message. */
int
smtp_check_bdat(struct smtp_session *s, const char *arg, size_t len)
{
	uint64_t size;
	int last;

	if (smtp_bdat_parse(arg, len, &size, &last) == -1) {
		log_info(s->sid, "smtp.bdat_syntax state=%s", smtp_state_str(s->state));
		smtp_reply(s, 521, "5.5.4", "Syntax: BDAT count [LAST]");
		smtp_session_close(s, "bdat_syntax");
		return -1;
	}
	if (!(s->ext & SMTP_EXT_CHUNKING)) {
		smtp_reply(s, 502, "5.5.1", "Error: CHUNKING was not offered");
		smtp_bdat_skip(s, size, last);
		return -1;
	}
	if ((s->state != ST_RCPT && s->state != ST_BDAT) ||
	    (s->state == ST_RCPT && s->tx->data_tried)) {
		smtp_reply(s, 503, "5.5.1", "Error: bad sequence of commands");
		smtp_bdat_skip(s, size, last);
		return -1;
	}
	s->pend.bdat_size = size;
	s->pend.bdat_last = last;
	if (s->state == ST_BDAT) {
		s->pend.cmd = &smtp_cmd_bdat_next;
		return 0;
	}
	if (check_data_memory(s) == -1) {
		smtp_bdat_skip(s, size, last);
		return -1;
	}
	return 0;
}

/* on_data refused the transaction's first chunk: it is dropped. */
void
smtp_rejected_bdat(struct smtp_session *s)
{
	smtp_rejected_data(s);
	smtp_bdat_skip(s, s->pend.bdat_size, s->pend.bdat_last);
}

/* The chunk comes next: its reply waits for its last octet. */
void
smtp_do_bdat(struct smtp_session *s, const struct hook_result *res)
{
	struct smtp_tx *tx = s->tx;

	(void)res; /* on_data's 354 has no place in BDAT's replies */
	if (tx->data == NULL) {
		tx->data = smtp_data_new(
		    s->max_size, s->srv->cfg->bare, s->srv->spill_dirs, SMTP_SPILL_AT);
		if (tx->data == NULL) {
			smtp_reply(s, 451, "4.3.0", "Error: out of memory");
			smtp_bdat_skip(s, s->pend.bdat_size, s->pend.bdat_last);
			return;
		}
		smtp_data_raw(tx->data);
		smtp_enter_state(s, ST_BDAT);
	}
	tx->chunks++;
	smtp_bdat_start(&s->bdat, s->pend.bdat_size, s->pend.bdat_last);
	s->bdat_mode = SMTP_BDAT_STORE;
	conn_set_timeout(s->conn, s->srv->cfg->data_timeout);
	s->data_mark = ev_now(s->srv->loop);
	s->data_bytes = 0;
	if (s->bdat.left == 0)
		smtp_bdat_end(s);
}

/* A chunk's last octet arrived. A chunk the message no longer fits in
 * (size, the memory budget) gets the error, and so does every chunk
 * after it, LAST included; a bare CR or LF is answered at LAST, as at the
 * final dot. LAST ends the message the way the final dot does. */
void
smtp_bdat_end(struct smtp_session *s)
{
	int mode = s->bdat_mode;
	enum smtp_data_err err;

	s->bdat_mode = SMTP_BDAT_IDLE;
	conn_set_timeout(s->conn, s->srv->cfg->timeout);
	if (mode != SMTP_BDAT_STORE)
		return;
	if (s->bdat.last) {
		smtp_data_close(s->tx->data);
		log_info(s->sid, "smtp.bdat qid=%s chunks=%u size=%zu", s->tx->qid, s->tx->chunks,
		    smtp_data_size(s->tx->data));
		smtp_data_end(s);
		return;
	}
	err = smtp_data_error(s->tx->data);
	if (err == SMTP_DATA_OK || err == SMTP_DATA_ERR_BARE)
		smtp_reply(
		    s, 250, "2.0.0", "%llu octets received", (unsigned long long)s->bdat.size);
	else
		smtp_data_refuse(s, err);
}
