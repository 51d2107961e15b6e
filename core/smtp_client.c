/* smtp_client.c - one delivery attempt over SMTP or LMTP on the libev loop
 * (see smtp_client.h). The rules it follows:
 *
 * Hosts. Every address of every host is tried in order (or the one UNIX
 * socket). A refused or timed-out connection, a greeting other than 2xx
 * (5xx too, as Postfix does: another MX may take the mail), a 421
 * anywhere, a failed EHLO/HELO, STARTTLS or AUTH, a timeout or a lost
 * connection before the end of data all move on to the next address with
 * the recipients' results cleared: the first server that holds a whole
 * transaction decides every recipient. When none does, every recipient is
 * deferred with the last failure (a 4xx reply as the server gave it, a 5xx
 * turned into a 451 or 454 deferral that quotes it, or one made up:
 * 4.4.1 connect, 4.4.2 timeout or lost connection).
 *
 * TLS. NONE never sends STARTTLS. MAY sends it when offered, verifies
 * nothing, carries on in plaintext when the server refuses it, and when
 * the handshake fails reconnects to the same address in plaintext (logged).
 * REQUIRE needs STARTTLS offered, a chain to the CA bundle (the system's,
 * or req->ca_file) and the host's name in the certificate (a UNIX socket
 * or an address literal has no name: the chain only); otherwise 4.7.5 and
 * nothing is sent. After the handshake EHLO (LHLO) is sent again.
 *
 * AUTH. With auth_user the client sends AUTH PLAIN, and only over TLS
 * unless the route is a UNIX socket or tls NONE was chosen: credentials
 * never go out in plaintext because a MAY handshake failed. No TLS where
 * one is needed, no AUTH PLAIN offered, or the server refusing the
 * credentials (535) defers with 4.7.0 and the server's text (454), so an
 * operator can fix them before the mail bounces.
 *
 * The transaction. MAIL gets SIZE=<length> when SIZE is offered, and a
 * message longer than the advertised SIZE is not sent (552 5.3.4 for all).
 * BODY=8BITMIME goes with body_8bit when 8BITMIME is offered; without it
 * the message is sent anyway, as Postfix does (RFC 6152 permits only a
 * conversion, which is not ours to make). smtputf8 needs SMTPUTF8 offered,
 * else 553 5.6.7 for all and nothing is sent. When DSN is offered, MAIL
 * gets RET= and ENVID= and each RCPT its NOTIFY= and ORCPT= (xtext), as
 * the queue entry holds them (RFC 3461 5.2.1). With PIPELINING, MAIL, every
 * RCPT and DATA leave in one write and the replies are read in order;
 * without it one command per reply. A 5xx or 4xx to MAIL decides all
 * recipients (421 excepted); a RCPT's reply decides that recipient, so a
 * 452 defers only it (RFC 5321 4.5.3.1.10). With no recipient accepted
 * there is no DATA (after a pipelined DATA that got 354 anyway, a lone "."
 * ends it). The message is dot-stuffed (bare LF sent as CRLF) and ended
 * with CRLF.CRLF; SMTP's final reply applies to every accepted recipient,
 * LMTP's replies come one per accepted recipient in RCPT order. Once the
 * end of data is sent a lost connection or a timeout defers the
 * recipients without a reply (no other host is tried: the mail may have
 * been taken). QUIT ends every session; its reply is awaited 5 s at most.
 *
 * Cached connections. With a cache_key, a transaction that ended in step
 * (every reply read, nothing left to send, no 421, not a plaintext retry
 * of a MAY route, fewer than SMTPC_CACHE_REUSE_MAX transactions and
 * SMTPC_CACHE_AGE_MAX seconds behind it) leaves its connection in
 * smtp_client_cache.c instead of QUIT, and an attempt with the same key
 * takes a parked connection before it connects. The greeting, EHLO, TLS
 * and AUTH stay that session's (the key names everything they depend on).
 * The next transaction starts with RSET (pipelined ahead of MAIL when
 * PIPELINING was offered); anything but a 250 to it, or a connection lost
 * before the end of data, gives the cached connection up and the attempt
 * begins again with a fresh connection to the first target. Nothing of
 * the message is sent before RSET's 250 and DATA's 354 arrived.
 *
 * Timeouts (RFC 5321 4.5.3.2): connect 30 s, greeting and commands 300 s,
 * DATA 120 s, each block of data 180 s, the final reply 600 s, unless the
 * request sets shorter ones (timeout_command covers every command and the
 * TLS handshake; timeout_data the blocks and the final reply). */
#include "smtp_client_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <mbedtls/base64.h>
#include <mbedtls/platform_util.h>

#include "cosocket_pool.h"
#include "dsn_param.h"
#include "log.h"
#include "smtp_client_cache.h"
#include "xtext.h"

const char *const smtpc_stage[] = { "idle", "connecting", "waiting for the greeting", "after EHLO",
	"after HELO", "after STARTTLS", "in the TLS handshake", "after AUTH", "after RSET",
	"after MAIL/RCPT/DATA", "sending the message", "after the end of data",
	"after the end of data", "after QUIT", "done" };

/* What a reply in each state answers, for the texts of failures. */
static const char *const cl_cmd[] = { "-", "-", "the connection", "EHLO", "HELO", "STARTTLS", "-",
	"AUTH", "RSET", "MAIL", "-", "the end of data", "the end of data", "QUIT", "-" };

static void cl_tls_failed(struct smtp_client *, const char *why);
static void cl_send(struct smtp_client *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void
smtpc_set(struct smtp_client *c, size_t i, int code, const char *text, int st)
{
	char t[SMTP_CREPLY_TEXT + 16];

	free(c->res.rcpt[i].text);
	smtp_creply_result_text(t, sizeof(t), code, text);
	c->res.rcpt[i].code = code;
	c->res.rcpt[i].text = strdup(t); /* NULL when out of memory: the code stands */
	c->rstate[i] = (unsigned char)st;
}

/* Every recipient this session has not decided gets code and text. */
void
smtpc_set_open(struct smtp_client *c, int code, const char *text, int accepted_only)
{
	for (size_t i = 0; i < c->req.nrcpts; i++)
		if (c->rstate[i] == RC_ACCEPTED || (!accepted_only && c->rstate[i] == RC_PENDING))
			smtpc_set(c, i, code, text, RC_DONE);
}

static const char *
cl_tls_desc(const struct smtp_client *c, char *buf, size_t len)
{
	if (!c->tls_up)
		return "none";
	snprintf(buf, len, "%s/%s", tls_version(c->tls), tls_cipher(c->tls));
	return buf;
}

void
smtpc_log(struct smtp_client *c, const char *result, const char *why)
{
	char host[300], addr[300], reason[700], tls[160];

	if (!log_enabled(LOG_INFO))
		return;
	log_escape(host, sizeof(host), c->name, strlen(c->name));
	log_escape(addr, sizeof(addr), c->addrtxt, strlen(c->addrtxt));
	log_escape(reason, sizeof(reason), why, strlen(why));
	log_info(NULL,
	    "relay.attempt id=%s host=\"%s\" addr=\"%s\" result=%s tls=%s reason=\"%s\" reuse=%u",
	    c->req.id != NULL ? c->req.id : "-", host, addr, result,
	    cl_tls_desc(c, tls, sizeof(tls)), reason, c->reused ? c->uses : 0);
}

/* Parks the connection in smtp_client_cache.c for the next attempt with
 * the same key, when the session is in step: every reply read and nothing
 * left to send (so the next transaction's first reply is RSET's), no 421
 * (the server is closing), not a plaintext retry of a MAY route (the next
 * attempt tries STARTTLS again), and within the reuse limits. 1: parked
 * (the client no longer holds the fd), 0: the caller says QUIT. */
static int
cl_park(struct smtp_client *c)
{
	struct smtpc_conn k;

	if (c->req.cache_key == NULL || c->reply.code == 421 || c->plain_retry || c->rset_pending ||
	    buf_avail(&c->in) > 0 || buf_avail(&c->out) > 0 ||
	    (c->tls != NULL && (!c->tls_up || tls_pending(c->tls) > 0)) ||
	    !smtp_client_cache_reusable(c->loop, c->uses + 1, c->born))
		return 0;
	memset(&k, 0, sizeof(k));
	k.fd = c->fd;
	k.tls = c->tls;
	k.caps = c->caps;
	snprintf(k.name, sizeof(k.name), "%s", c->name);
	snprintf(k.addrtxt, sizeof(k.addrtxt), "%s", c->addrtxt);
	snprintf(k.desc, sizeof(k.desc), "%s", c->desc);
	k.uses = c->uses + 1;
	k.born = c->born;
	/* The cache owns them now: smtpc_close() must not touch them. */
	c->fd = -1;
	c->tls = NULL;
	c->tls_up = 0;
	smtp_client_cache_put(c->loop, c->req.cache_key, &k, c->req.cache_idle);
	return 1;
}

/* This session decided every recipient: log it, park the connection or
 * QUIT, finish. */
static void
cl_decided(struct smtp_client *c, int can_quit)
{
	size_t i, n[3] = { 0, 0, 0 };
	char why[96];

	snprintf(c->res.remote, sizeof(c->res.remote), "%s", c->desc);
	c->res.tls = c->tls_up;
	if (c->tls_up) {
		snprintf(c->res.tls_version, sizeof(c->res.tls_version), "%s", tls_version(c->tls));
		snprintf(c->res.tls_cipher, sizeof(c->res.tls_cipher), "%s", tls_cipher(c->tls));
	}
	for (i = 0; i < c->req.nrcpts; i++) {
		int k = c->res.rcpt[i].code / 100;

		n[k == 2 ? 0 : k == 4 ? 1 : 2]++;
	}
	snprintf(why, sizeof(why), "delivered=%zu deferred=%zu bounced=%zu", n[0], n[1], n[2]);
	smtpc_log(c, "done", why);
	if (!can_quit || c->fd == -1) {
		smtpc_finish(c);
		return;
	}
	if (cl_park(c)) {
		smtpc_finish(c);
		return;
	}
	buf_append(&c->out, "QUIT\r\n", 6);
	c->state = CL_QUIT;
	smtpc_timer(c,
	    cl_cmd_timeout(c, CL_QUIT_WAIT) < CL_QUIT_WAIT ? cl_cmd_timeout(c, 0) : CL_QUIT_WAIT);
}

/* This target failed: remember why (code and text, the text formatted),
 * undo what its session decided and go on to the next. */
void
smtpc_host_fail(struct smtp_client *c, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->failtext, sizeof(c->failtext), fmt, ap);
	va_end(ap);
	c->failcode = code;
	snprintf(c->faildesc, sizeof(c->faildesc), "%s", c->connected ? c->desc : "");
	smtpc_log(c, "failed", c->failtext);
	if (c->fd != -1 && c->state != CL_CONNECT && c->state != CL_HANDSHAKE && !c->tls_up)
		(void)send(c->fd, "QUIT\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT);
	smtpc_close(c);
	for (size_t i = 0; i < c->req.nrcpts; i++)
		if (c->rstate[i] != RC_LOCAL) {
			free(c->res.rcpt[i].text);
			c->res.rcpt[i].text = NULL;
			c->res.rcpt[i].code = 0;
			c->rstate[i] = RC_PENDING;
		}
	c->plain_retry = 0;
	smtpc_next(c);
}

/* A server's refusal before the transaction: a 4xx as it is, a 5xx as a
 * deferral quoting it (enh: the made-up code, or NULL to take the
 * server's own with class 4). */
static void
cl_reply_fail(struct smtp_client *c, int code, const char *enh)
{
	const struct smtp_creply *r = &c->reply;
	char e[16];

	if (r->code / 100 == 4) {
		smtpc_host_fail(c, r->code, "%s", r->text);
		return;
	}
	if (enh == NULL) {
		snprintf(e, sizeof(e), "%s", r->enh[0] != '\0' ? r->enh : "4.0.0");
		e[0] = '4';
		enh = e;
	}
	smtpc_host_fail(c, code, "%s %s answered %s with %d %s", enh, c->desc, cl_cmd[c->state],
	    r->code, r->text);
}

/* The connection broke or timed out (what says which) in the current state. */
void
smtpc_lost(struct smtp_client *c, const char *what)
{
	char t[600];

	switch (c->state) {
	case CL_CONNECT:
		smtpc_host_fail(c, 451, "4.4.1 connect to %s: %s", c->desc, what);
		break;
	case CL_QUIT:
	case CL_EMPTY_DOT:
		if (c->state == CL_QUIT)
			smtpc_finish(c);
		else
			cl_decided(c, 0);
		break;
	case CL_HANDSHAKE:
		/* A stalled or broken handshake is a failed one (MAY: plaintext). */
		snprintf(t, sizeof(t), "TLS handshake with %s failed: %s", c->desc, what);
		cl_tls_failed(c, t);
		break;
	case CL_DOT:
		snprintf(t, sizeof(t), "4.4.2 %s with %s after the end of data", what, c->desc);
		smtpc_set_open(c, 451, t, 1);
		cl_decided(c, 0);
		break;
	default:
		if (c->state == CL_TXN && c->mail_decided)
			cl_decided(c, 0);
		else
			smtpc_host_fail(
			    c, 451, "4.4.2 %s with %s %s", what, c->desc, smtpc_stage[c->state]);
	}
}

static void
cl_send(struct smtp_client *c, const char *fmt, ...)
{
	char line[2048]; /* AUTH PLAIN with its longest credentials fits */
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof(line))
		buf_append(&c->out, line, (size_t)n);
	mbedtls_platform_zeroize(line, sizeof(line)); /* AUTH goes through here */
}

static void
cl_helo(struct smtp_client *c)
{
	const char *helo = c->req.helo != NULL ? c->req.helo : "localhost";

	memset(&c->caps, 0, sizeof(c->caps));
	cl_send(c, "%s %s\r\n", c->req.lmtp ? "LHLO" : "EHLO", helo);
	c->state = CL_EHLO;
	smtpc_timer(c, cl_cmd_timeout(c, 300));
}

/* RCPT for recipient i, with its NOTIFY and ORCPT when DSN is offered. */
static void
cl_rcpt(struct smtp_client *c, size_t i)
{
	const struct smtp_client_req *q = &c->req;
	const struct queue_rcpt *r =
	    c->caps.dsn && q->dsn_rcpts != NULL ? &q->dsn_rcpts[q->dsn_idx[i]] : NULL;
	char notify[32], orcpt[3 * DSN_ORCPT_MAX + 1];

	notify[0] = orcpt[0] = '\0';
	if (r != NULL && r->notify != 0) {
		memcpy(notify, " NOTIFY=", 9);
		dsn_param_notify_str(r->notify, notify + 8, sizeof(notify) - 8);
	}
	if (r != NULL && r->orcpt != NULL) {
		memcpy(orcpt, " ORCPT=", 8);
		if (dsn_param_orcpt_encode(r->orcpt, orcpt + 7, sizeof(orcpt) - 7) == -1)
			orcpt[0] = '\0';
	}
	cl_send(c, "RCPT TO:<%s>%s%s\r\n", q->rcpts[i], notify, orcpt);
}

/* After the greeting and one successful handshake the message goes out
 * in one transaction. */
static void
cl_mail(struct smtp_client *c)
{
	const struct smtp_client_req *q = &c->req;
	char t[256], envid[3 * DSN_ENVID_MAX + 1];
	size_t i;

	if (q->smtputf8 && !c->caps.smtputf8) {
		smtpc_set_open(
		    c, 553, "5.6.7 the message needs SMTPUTF8, which the server does not offer", 0);
		cl_decided(c, 1);
		return;
	}
	if (c->caps.size > 0 && q->msglen > c->caps.size) {
		snprintf(t, sizeof(t), "5.3.4 message size %zu exceeds the limit of %llu of %.80s",
		    q->msglen, c->caps.size, c->desc);
		smtpc_set_open(c, 552, t, 0);
		cl_decided(c, 1);
		return;
	}
	if (c->reused && !c->rset_done) {
		/* A cached connection: RSET first (RFC 5321 4.1.1.5), and
		 * whatever it answers but 250 sends the attempt to a fresh
		 * connection. With PIPELINING it leads the group (RFC 2920
		 * 3.1 lets RSET stand anywhere in one). */
		cl_send(c, "RSET\r\n");
		if (!c->caps.pipelining) {
			c->state = CL_RSET;
			smtpc_timer(c, cl_cmd_timeout(c, 300));
			return;
		}
		c->rset_pending = 1;
	}
	cl_send(c, "MAIL FROM:<%s>", q->sender);
	if (c->caps.size_offered)
		cl_send(c, " SIZE=%zu", q->msglen);
	if (q->body_8bit && c->caps.eightbitmime)
		cl_send(c, " BODY=8BITMIME");
	if (q->smtputf8)
		cl_send(c, " SMTPUTF8");
	if (c->caps.dsn && dsn_param_ret_str(q->dsn_ret) != NULL)
		cl_send(c, " RET=%s", dsn_param_ret_str(q->dsn_ret));
	if (c->caps.dsn && q->envid != NULL &&
	    xtext_encode(q->envid, strlen(q->envid), envid, sizeof(envid)) > 0)
		cl_send(c, " ENVID=%s", envid);
	cl_send(c, "\r\n");
	c->res.dsn = c->caps.dsn;
	c->pipelined = c->caps.pipelining;
	c->mail_ok = c->mail_decided = 0;
	c->step = 0;
	c->naccepted = 0;
	c->norder = 0;
	for (i = 0; i < q->nrcpts; i++)
		if (c->rstate[i] == RC_PENDING) {
			c->order[c->norder++] = i;
			if (c->pipelined)
				cl_rcpt(c, i);
		}
	if (c->pipelined)
		cl_send(c, "DATA\r\n");
	c->state = CL_TXN;
	smtpc_timer(c, cl_cmd_timeout(c, 300));
}

/* What follows EHLO: STARTTLS, AUTH, then the transaction. */
static void
cl_after_helo(struct smtp_client *c)
{
	const struct smtp_client_req *q = &c->req;
	char plain[1100], b64[1500];
	size_t ul, pl, n;

	if (!c->tls_up && !c->plain_retry && !c->tls_refused && q->tls != QUEUE_TLS_NONE) {
		if (c->caps.starttls) {
			cl_send(c, "STARTTLS\r\n");
			c->state = CL_STARTTLS;
			smtpc_timer(c, cl_cmd_timeout(c, 300));
			return;
		}
		if (q->tls == QUEUE_TLS_REQUIRE) {
			smtpc_host_fail(c, 451,
			    "4.7.5 TLS is required, but %s does not offer STARTTLS", c->desc);
			return;
		}
	}
	if (q->auth_user == NULL) {
		cl_mail(c);
		return;
	}
	if (!c->tls_up && q->unix_path == NULL && q->tls != QUEUE_TLS_NONE) {
		smtpc_host_fail(c, 454, "4.7.0 not sending credentials to %s without TLS", c->desc);
		return;
	}
	if (!c->caps.auth_plain) {
		smtpc_host_fail(c, 454, "4.7.0 %s does not offer AUTH PLAIN", c->desc);
		return;
	}
	ul = strlen(q->auth_user);
	pl = q->auth_pass != NULL ? strlen(q->auth_pass) : 0;
	if (ul + pl + 2 > sizeof(plain)) {
		smtpc_host_fail(c, 454, "4.7.0 credentials too long");
		return;
	}
	/* RFC 4616: authzid (empty) NUL authcid NUL passwd. */
	plain[0] = '\0';
	memcpy(plain + 1, q->auth_user, ul);
	plain[1 + ul] = '\0';
	if (pl > 0)
		memcpy(plain + 2 + ul, q->auth_pass, pl);
	if (mbedtls_base64_encode((unsigned char *)b64, sizeof(b64), &n,
		(const unsigned char *)plain, ul + pl + 2) == 0)
		cl_send(c, "AUTH PLAIN %s\r\n", b64);
	mbedtls_platform_zeroize(plain, sizeof(plain));
	mbedtls_platform_zeroize(b64, sizeof(b64));
	c->state = CL_AUTH;
	smtpc_timer(c, cl_cmd_timeout(c, 300));
}

/* STARTTLS went wrong after the server agreed to it: REQUIRE gives the
 * host up, MAY tries the same address again in plaintext. */
static void
cl_tls_failed(struct smtp_client *c, const char *why)
{
	if (c->req.tls == QUEUE_TLS_REQUIRE) {
		smtpc_host_fail(c, 451, "4.7.5 %s", why);
		return;
	}
	smtpc_log(c, "tls-failed-retrying-plaintext", why);
	smtpc_close(c);
	c->plain_retry = 1;
	smtpc_next(c);
}

void
smtpc_handshake(struct smtp_client *c)
{
	enum tls_status st = tls_handshake(c->tls);
	char why[400];

	if (st == TLS_WANT_READ || st == TLS_WANT_WRITE) {
		c->tls_want = st == TLS_WANT_READ ? EV_READ : EV_WRITE;
		return;
	}
	c->tls_want = 0;
	if (st == TLS_OK) {
		c->tls_up = 1;
		cl_helo(c);
		return;
	}
	snprintf(why, sizeof(why), "TLS handshake with %s failed: %s", c->desc,
	    st == TLS_CLOSED ? "connection closed" : tls_strerror(c->tls));
	cl_tls_failed(c, why);
}

static void
cl_starttls(struct smtp_client *c)
{
	struct tls_config *cfg;
	struct in6_addr a;
	char err[400];
	const char *ca = NULL;

	if (buf_avail(&c->in) > 0) {
		/* Bytes after the 220 came in plaintext and cannot be told from
		 * ones a man in the middle injected. */
		snprintf(err, sizeof(err), "%s sent data after its STARTTLS reply", c->desc);
		cl_tls_failed(c, err);
		return;
	}
	if (c->req.tls == QUEUE_TLS_REQUIRE)
		ca = c->req.ca_file != NULL ? c->req.ca_file : CL_CA_BUNDLE;
	if ((cfg = cosocket_tls_config(ca, err, sizeof(err))) == NULL) {
		smtpc_host_fail(c, 451, "4.7.5 TLS client setup: %s", err);
		return;
	}
	if ((c->tls = tls_new(cfg, c->fd)) == NULL) {
		smtpc_host_fail(c, 451, "4.3.0 out of memory");
		return;
	}
	/* An address or a socket path has no name to verify (mbedTLS matches
	 * names only): then the chain alone. */
	if (c->req.unix_path == NULL && c->name[0] != '\0' &&
	    inet_pton(AF_INET, c->name, &a) != 1 && inet_pton(AF_INET6, c->name, &a) != 1 &&
	    tls_set_hostname(c->tls, c->name) == -1) {
		smtpc_host_fail(c, 451, "4.7.5 bad host name for TLS: %s", c->desc);
		return;
	}
	c->state = CL_HANDSHAKE;
	smtpc_timer(c, cl_cmd_timeout(c, 300));
	smtpc_handshake(c);
}

/* A cached connection did not answer RSET with 250: it is given up (what
 * was pipelined behind the RSET goes with it, and no message was sent)
 * and the attempt starts again on a fresh connection to the first
 * target (smtpc_next: the client has not started on the list). */
static void
cl_rset_failed(struct smtp_client *c)
{
	smtpc_host_fail(c, 451, "4.4.2 %s answered RSET on a cached connection with %d %s", c->desc,
	    c->reply.code, c->reply.text);
}

/* A reply to MAIL, one of the RCPTs or DATA, in the order they were sent
 * (after a pipelined RSET's). */
static void
cl_txn_reply(struct smtp_client *c)
{
	const struct smtp_creply *r = &c->reply;
	size_t i;

	if (c->rset_pending) {
		c->rset_pending = 0;
		if (r->code != 250) {
			cl_rset_failed(c);
			return;
		}
		c->rset_done = 1;
		smtpc_timer(c, cl_cmd_timeout(c, 300));
		return;
	}
	if (r->code == 421 && !c->mail_decided) {
		cl_reply_fail(c, 451, NULL);
		return;
	}
	if (c->step == 0) {
		if (r->code / 100 == 2)
			c->mail_ok = 1;
		else {
			smtpc_set_open(c, r->code, r->text, 0);
			c->mail_decided = 1;
		}
	} else if (c->step <= c->norder) {
		i = c->order[c->step - 1];
		if (!c->mail_ok)
			; /* a pipelined RCPT after a failed MAIL */
		else if (r->code / 100 == 2) {
			c->rstate[i] = RC_ACCEPTED;
			c->naccepted++;
		} else
			smtpc_set(c, i, r->code, r->text, RC_DONE);
	} else {
		/* DATA's reply. */
		if (c->mail_ok && c->naccepted > 0) {
			if (r->code == 354) {
				smtp_stuff_init(&c->stuff);
				c->msgoff = 0;
				c->state = CL_BODY;
				smtpc_timer(c, cl_data_timeout(c, 180));
				return;
			}
			smtpc_set_open(c, r->code, r->text, 1);
		} else if (r->code == 354) {
			cl_send(c, ".\r\n");
			c->state = CL_EMPTY_DOT;
			smtpc_timer(c, cl_data_timeout(c, 600));
			return;
		}
		cl_decided(c, 1);
		return;
	}
	c->step++;
	smtpc_timer(c, cl_cmd_timeout(c, 300));
	if (c->pipelined)
		return;
	/* One command at a time. */
	if (c->mail_decided) {
		cl_decided(c, 1);
	} else if (c->step <= c->norder) {
		cl_rcpt(c, c->order[c->step - 1]);
	} else if (c->naccepted == 0) {
		cl_decided(c, 1);
	} else {
		cl_send(c, "DATA\r\n");
		smtpc_timer(c, cl_cmd_timeout(c, 120));
	}
}

/* A whole reply arrived. */
void
smtpc_reply(struct smtp_client *c)
{
	const struct smtp_creply *r = &c->reply;
	int ok = r->code / 100 == 2;
	size_t i;

	switch (c->state) {
	case CL_GREETING:
		if (ok)
			cl_helo(c);
		else
			cl_reply_fail(c, 451, NULL);
		break;
	case CL_EHLO:
		if (ok)
			cl_after_helo(c);
		else if (r->code / 100 == 5 && !c->req.lmtp && r->code != 421) {
			cl_send(c, "HELO %s\r\n", c->req.helo != NULL ? c->req.helo : "localhost");
			c->state = CL_HELO;
			smtpc_timer(c, cl_cmd_timeout(c, 300));
		} else
			cl_reply_fail(c, 451, NULL);
		break;
	case CL_HELO:
		memset(&c->caps, 0, sizeof(c->caps));
		if (ok)
			cl_after_helo(c);
		else
			cl_reply_fail(c, 451, NULL);
		break;
	case CL_STARTTLS:
		if (r->code == 220)
			cl_starttls(c);
		else if (c->req.tls == QUEUE_TLS_REQUIRE || r->code == 421)
			cl_reply_fail(c, 451, r->code == 421 ? NULL : "4.7.5");
		else {
			c->tls_refused = 1;
			cl_after_helo(c);
		}
		break;
	case CL_AUTH:
		/* The credentials went out from this buffer: leave no copy. */
		if (buf_avail(&c->out) == 0 && c->out.data != NULL)
			mbedtls_platform_zeroize(c->out.data, c->out.cap);
		if (r->code == 235)
			cl_mail(c);
		else
			cl_reply_fail(c, 454, r->code == 421 ? NULL : "4.7.0");
		break;
	case CL_RSET:
		if (r->code == 250) {
			c->rset_done = 1;
			cl_mail(c);
		} else
			cl_rset_failed(c);
		break;
	case CL_TXN:
		cl_txn_reply(c);
		break;
	case CL_DOT:
		if (!c->req.lmtp) {
			smtpc_set_open(c, r->code, r->text, 1);
			cl_decided(c, 1);
			break;
		}
		/* LMTP: the next accepted recipient's reply. */
		for (i = c->lmtp_next; i < c->req.nrcpts && c->rstate[i] != RC_ACCEPTED; i++)
			;
		if (i < c->req.nrcpts) {
			smtpc_set(c, i, r->code, r->text, RC_DONE);
			c->lmtp_next = i + 1;
		}
		for (; i < c->req.nrcpts && c->rstate[i] != RC_ACCEPTED; i++)
			;
		if (i >= c->req.nrcpts)
			cl_decided(c, 1);
		else
			smtpc_timer(c, cl_data_timeout(c, 600));
		break;
	case CL_EMPTY_DOT:
		cl_decided(c, 1);
		break;
	case CL_QUIT:
		smtpc_finish(c);
		break;
	default:
		break;
	}
}

/* Starts the transaction on a connection taken from the cache (the
 * greeting, EHLO, TLS and AUTH were that session's). */
void
smtpc_resume(struct smtp_client *c)
{
	smtp_creply_init(&c->reply);
	cl_mail(c);
}
