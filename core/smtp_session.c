/* smtp_session.c - the engine of an SMTP session: a command line finds
 * its row in the table (smtp_verbs.c), runs its hook, and the hook's
 * outcome is applied; input is not processed while a hook is pending, so a
 * pipelining client cannot get ahead of the policy, and replies to a
 * pipelined batch leave in one write. Also the transaction's life, the
 * input loop, and the session's own: creation, timeouts, closing and
 * reaping. The verbs themselves, the message, STARTTLS, AUTH and the reply
 * writer are the other files of smtp_session_int.h. */
#include "smtp_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"
#include "conn.h"
#include "hook_api.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "msgstore.h"
#include "script.h"
#include "smtp_lmtp.h"
#include "smtp_pace.h"
#include "smtp_parse.h"
#include "smtp_sasl.h"
#include "smtp_session_int.h"
#include "spf_lua.h"

#define SMTP_OUTPUT_HIGH  65536 /* stop reading commands while replies pile up */
#define SMTP_CLOSE_LINGER 5.0   /* seconds to get the last reply out */

static void smtp_hook_finish(struct smtp_session *, const struct hook_result *);
static void smtp_session_free(struct smtp_session *);

void
smtp_enter_state(struct smtp_session *s, enum smtp_state st)
{
	if (s->state == st)
		return;
	log_debug(s->sid, "smtp.state from=%s to=%s", smtp_state_str(s->state), smtp_state_str(st));
	s->state = st;
}

/* splitmix64: ids that are unique per process and do not look sequential. */
static uint64_t
smtp_next_id(struct smtp_server *srv)
{
	uint64_t z = (srv->ids += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A new id as 16 hex digits into out (17 bytes). */
void
smtp_id_str(struct smtp_server *srv, char *out)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t id = smtp_next_id(srv);

	for (int i = 15; i >= 0; i--, id >>= 4)
		out[i] = hex[id & 15];
	out[16] = '\0';
}

/* A NUL-terminated copy of n bytes of a command line. Not strndup(): the
 * line lies in the input buffer with no NUL after it, and strndup may look
 * for one past n. NULL when out of memory. */
char *
smtp_copy(const char *p, size_t n)
{
	char *c = malloc(n + 1);

	if (c != NULL) {
		memcpy(c, p, n);
		c[n] = '\0';
	}
	return c;
}

/* Transactions ---------------------------------------------------------- */

void
smtp_tx_free(struct smtp_tx *tx)
{
	if (tx == NULL)
		return;
	metrics_transaction(tx->verdict);
	free(tx->sender);
	free(tx->params);
	for (size_t i = 0; i < tx->nrcpts; i++)
		free(tx->rcpts[i]);
	free(tx->rcpts);
	for (size_t i = 0; i < tx->nrcpts; i++)
		free(tx->rcpt_dsn[i].orcpt);
	free(tx->rcpt_dsn);
	free(tx->dsn_envid);
	smtp_data_free(tx->data);
	msgstore_free(tx->ms);
	for (size_t i = 0; i < tx->relay_cap; i++)
		queue_entry_clear(&tx->relay[i]);
	free(tx->relay);
	smtp_lmtp_tx_free(tx);
	free(tx);
}

/* Keeps srv->data_held, the message bytes the worker holds in memory, in
 * step with what this session holds now: the DATA reader's store, then
 * the message while on_message runs. */
void
smtp_data_account(struct smtp_session *s)
{
	size_t now = 0;

	if (s->tx != NULL && s->tx->data != NULL)
		now = smtp_data_held(s->tx->data);
	else if (s->tx != NULL && s->tx->ms != NULL)
		now = msgstore_held(s->tx->ms);
	s->srv->data_held = s->srv->data_held - s->data_held + now;
	s->data_held = now;
}

/* Ends the transaction (RSET, end of data, HELO, errors) and returns to
 * the state after HELO (or before it). */
void
smtp_tx_end(struct smtp_session *s)
{
	smtp_tx_free(s->tx);
	s->tx = NULL;
	if (s->bdat_mode == SMTP_BDAT_STORE)
		s->bdat_mode = SMTP_BDAT_SKIP;
	s->lmtp_fanout = SMTP_LMTP_OFF;
	spf_lua_forget(&s->spf);
	smtp_data_account(s);
	smtp_enter_state(s, s->helo != NULL ? ST_READY : ST_GREETED);
}

void
smtp_pending_reset(struct smtp_session *s)
{
	free(s->pend.arg);
	/* For AUTH this is the password: leave no copy in freed memory. */
	if (s->pend.params != NULL)
		explicit_bzero(s->pend.params, strlen(s->pend.params));
	free(s->pend.params);
	if (s->script != NULL)
		hook_api_drop_keywords(s->script->L, s);
	memset(&s->pend, 0, sizeof(s->pend));
	hook_api_pending_init(s);
}

/* Hooks ----------------------------------------------------------------- */

static void
smtp_on_hook_done(struct hook_run *run, void *arg)
{
	struct smtp_session *s = arg;

	/* The session owns the run and cancels it when it dies, so s is alive
	 * here (the run's timer cannot fire after hook_run_free). */
	s->run = NULL;
	smtp_hook_finish(s, hook_run_result(run));
	hook_run_free(run);
	smtp_session_process(s);
}

/* The pending hook's name for logs: the verb for custom verbs. */
static const char *
smtp_hook_name(const struct smtp_session *s)
{
	return s->pend.cmd->hook == HOOK_VERB ? s->pend.verb : hook_kind_str(s->pend.cmd->hook);
}

/* Runs the pending command's hook, or proceeds at once without one. */
void
smtp_hook_run(struct smtp_session *s)
{
	const struct smtp_cmd *cmd = s->pend.cmd;
	struct hook_run *run;
	struct hook_result res = { .verdict = HOOK_ACCEPT };
	lua_State *co;
	char kw[256] = "";
	int nargs;
	enum hook_status st;

	if (!script_has(s->script, cmd->hook)) {
		smtp_hook_finish(s, &res);
		return;
	}
	run = hook_run_new(s->script->L, s->srv->loop, HOOK_MODE_POLICY, &s->script->budget,
	    smtp_hook_name(s), s->sid, smtp_on_hook_done, s);
	if (run == NULL) {
		res.verdict = HOOK_ERROR;
		smtp_hook_finish(s, &res);
		return;
	}
	co = hook_run_thread(run);
	if (script_push_hook(s->script, co, cmd->hook, s->pend.verb) == -1) {
		hook_run_free(run);
		smtp_hook_finish(s, &res);
		return;
	}
	if (cmd->hook == HOOK_EHLO)
		smtp_ehlo_keywords(s, kw, sizeof(kw));
	nargs = hook_api_push_args(co, s, cmd->hook, kw);
	st = hook_run_start(run, nargs);
	if (st == HOOK_PENDING) {
		s->run = run;
		return;
	}
	smtp_hook_finish(s, hook_run_result(run));
	hook_run_free(run);
}

/* Whether a custom code fits the phase: 354 only for DATA (which accepts
 * with nothing else), 220 for the greeting and STARTTLS, 221 for QUIT, 235
 * for AUTH. */
static int
smtp_code_allowed(const struct smtp_cmd *cmd, int code)
{
	if (code >= 400)
		return 1;
	switch (cmd->hook) {
	case HOOK_DATA:
		return code == 354;
	case HOOK_CONNECT:
		return code == 220;
	case HOOK_QUIT:
		return code == 221;
	case HOOK_STARTTLS:
		return code == 220; /* only 220 starts TLS (RFC 3207 4) */
	case HOOK_AUTH:
		return code == 235; /* only 235 authenticates (RFC 4954 4) */
	default:
		return code < 300;
	}
}

/* Applies a hook's outcome to the pending command and clears it. */
static void
smtp_hook_finish(struct smtp_session *s, const struct hook_result *res)
{
	const struct smtp_cmd *cmd = s->pend.cmd;
	enum hook_verdict v = res->verdict;

	if ((v == HOOK_CUSTOM || (v == HOOK_CLOSE && res->code != 0)) &&
	    !smtp_code_allowed(cmd, res->code)) {
		log_warn(s->sid,
		    "hook.invalid hook=%s error=\"reply code %d does not fit the verb\"",
		    smtp_hook_name(s), res->code);
		v = HOOK_ERROR;
	}
	/* Credentials are accepted only by an explicit true or 2xx: an
	 * on_auth that forgets to return must not let everybody in. */
	if (cmd->hook == HOOK_AUTH && v == HOOK_ACCEPT && !res->truth)
		v = HOOK_REJECT;
	/* A script fault after the message was written (a budget or an error
	 * once the deliverers returned): a 451 would make the client send it
	 * again, so the reply follows what was written. */
	if (cmd == &smtp_cmd_message && v == HOOK_ERROR && s->tx->delivered > 0 &&
	    !s->tx->delivery_failed) {
		log_warn(s->sid,
		    "smtp.message qid=%s result=accept reason=\"hook failed after delivery\"",
		    s->tx->qid);
		v = HOOK_ACCEPT;
	}
	/* The message handle lives for on_message only. */
	if (cmd == &smtp_cmd_message && s->script != NULL)
		hook_api_end_message(s->script->L, s);
	/* LMTP: the recipients' own replies count when the policy decided. */
	if (cmd == &smtp_cmd_message && s->lmtp_fanout && v != HOOK_ERROR)
		s->lmtp_fanout = SMTP_LMTP_OWN;
	if (v != HOOK_ACCEPT)
		log_info(s->sid, "smtp.hook hook=%s result=%s code=%d", smtp_hook_name(s),
		    hook_verdict_str(v), res->code);
	switch (v) {
	case HOOK_ACCEPT:
		cmd->proceed(s, NULL);
		break;
	case HOOK_CUSTOM:
		if (res->code < 400)
			cmd->proceed(s, res);
		else {
			smtp_reply_hook(s, res, 0, "", NULL);
			if (cmd->rejected != NULL)
				cmd->rejected(s);
		}
		break;
	case HOOK_REJECT:
		if (cmd->hook == HOOK_QUIT || cmd->hook == HOOK_UNKNOWN) {
			cmd->proceed(s, NULL);
			break;
		}
		smtp_reply(s, cmd->rcode, cmd->renh, "%s", cmd->rtext);
		if (cmd->rejected != NULL)
			cmd->rejected(s);
		break;
	case HOOK_CLOSE:
		if (res->code != 0 && res->code < 400)
			cmd->proceed(s, res);
		else {
			if (res->code != 0)
				smtp_reply_hook(s, res, 0, "", NULL);
			if (cmd->rejected != NULL && cmd->rejected != smtp_rejected_close)
				cmd->rejected(s);
		}
		smtp_session_close(s, "hook");
		break;
	case HOOK_ERROR:
		/* Never a permanent failure for a script fault: the client
		 * retries later, after the script is fixed. */
		if (cmd->hook == HOOK_CONNECT || cmd->hook == HOOK_QUIT) {
			smtp_reply(s, 421, "4.3.0", "%s Temporary policy error, closing",
			    s->srv->cfg->hostname);
			smtp_session_close(s, "hook error");
		} else {
			smtp_reply(s, 451, "4.3.0", "Temporary policy error");
			if (cmd->rejected != NULL)
				cmd->rejected(s);
		}
		break;
	}
	if (s->pend.cmd == cmd)
		smtp_pending_reset(s);
}

/* Input ----------------------------------------------------------------- */

void
smtp_command(struct smtp_session *s, const char *line, size_t len)
{
	char verb[SMTP_VERB_MAX + 1], esc[128];
	const char *arg;
	size_t arglen;
	const struct smtp_cmd *cmd;

	if (memchr(line, '\0', len) != NULL) {
		smtp_reply(s, 500, "5.5.2", "Error: NUL character in command");
		return;
	}
	if (smtp_parse_verb(line, len, verb, &arg, &arglen) == -1) {
		log_info(s->sid, "smtp.bad_command line=\"%s\"",
		    log_escape(esc, sizeof(esc), line, len));
		smtp_reply(s, 500, "5.5.2", "Error: command not recognized");
		return;
	}
	log_debug(s->sid, "smtp.command verb=%s", verb);
	if (smtp_lmtp_refuses(s, verb) != NULL) {
		smtp_reply(s, 500, "5.5.1", "%s", smtp_lmtp_refuses(s, verb));
		return;
	}
	cmd = smtp_cmd_lookup(verb);
	if (cmd == NULL) {
		cmd = script_has_verb(s->script, verb) ? &smtp_cmd_verb : &smtp_cmd_unknown;
		snprintf(s->pend.verb, sizeof(s->pend.verb), "%s", verb);
		if (arglen > 0 && (s->pend.arg = smtp_copy(arg, arglen)) == NULL) {
			smtp_reply(s, 451, "4.3.0", "Error: out of memory");
			return;
		}
		if (cmd == &smtp_cmd_unknown)
			log_info(s->sid, "smtp.unknown verb=\"%s\"",
			    log_escape(esc, sizeof(esc), verb, strlen(verb)));
	}
	if (!(cmd->states & S(s->state))) {
		smtp_pending_reset(s);
		smtp_reply(s, 503, "5.5.1", "Error: bad sequence of commands");
		return;
	}
	s->pend.cmd = cmd;
	switch (cmd->check(s, arg, arglen)) {
	case -1:
		smtp_pending_reset(s);
		return;
	case 1:
		return; /* an AUTH exchange goes on over the next lines */
	}
	smtp_hook_run(s);
}

/* A line of an AUTH exchange that is too long (RFC 4954 4) ends the
 * exchange: otherwise the next command would be decoded as base64. */
static void
smtp_line_too_long(struct smtp_session *s)
{
	log_info(s->sid, "smtp.line_too_long");
	if (s->sasl.step != SMTP_SASL_IDLE) {
		smtp_sasl_reset(&s->sasl);
		smtp_pending_reset(s);
		smtp_reply(s, 500, "5.5.6", "Authentication Exchange line is too long");
	} else
		smtp_reply(s, 500, "5.5.2", "Line too long");
}

/* The longest a command line may be (CRLF included), from its first
 * bytes: AUTH and the lines of its exchange carry SASL data (RFC 4954 4),
 * MAIL and RCPT the parameters of extensions (SMTP_ENVELOPE_LINE_MAX);
 * every other command keeps RFC 5321's 512 octets. */
static size_t
smtp_line_max(const struct smtp_session *s, const char *p, size_t n)
{
	if (s->sasl.step != SMTP_SASL_IDLE || (n >= 5 && strncasecmp(p, "AUTH ", 5) == 0))
		return SMTP_SASL_LINE_MAX;
	if (n >= 5 && (strncasecmp(p, "MAIL ", 5) == 0 || strncasecmp(p, "RCPT ", 5) == 0))
		return SMTP_ENVELOPE_LINE_MAX;
	return SMTP_CMD_LINE_MAX;
}

/* One step of input: a DATA chunk or one command line. Returns 0 to go on,
 * -1 when the buffered input holds nothing complete. */
static int
smtp_session_step(struct smtp_session *s, struct buf *in)
{
	const char *line;
	size_t len;
	int crlf, done;

	if (s->state == ST_DATA) {
		size_t n = smtp_data_feed(s->tx->data, buf_head(in), buf_avail(in), &done);
		buf_consume(in, n);
		smtp_data_progress(s, n);
		smtp_data_budget(s);
		if (done)
			smtp_data_end(s);
		return 0;
	}
	if (s->bdat_mode != SMTP_BDAT_IDLE) {
		int store = s->bdat_mode == SMTP_BDAT_STORE;
		size_t n = smtp_bdat_feed(
		    &s->bdat, store ? s->tx->data : NULL, buf_head(in), buf_avail(in), &done);
		buf_consume(in, n);
		smtp_data_progress(s, n);
		if (store)
			smtp_data_budget(s);
		if (done)
			smtp_bdat_end(s);
		return 0;
	}
	if (s->skip_line) {
		const char *lf = memchr(buf_head(in), '\n', buf_avail(in));
		if (lf == NULL) {
			buf_consume(in, buf_avail(in));
			return -1;
		}
		buf_consume(in, (size_t)(lf - buf_head(in)) + 1);
		conn_touch(s->conn);
		s->skip_line = 0;
		smtp_line_too_long(s);
		return 0;
	}
	switch (buf_getline(in, SMTP_SASL_LINE_MAX, &line, &len, &crlf)) {
	case BUF_NEED_MORE:
		if (buf_avail(in) < smtp_line_max(s, buf_head(in), buf_avail(in)))
			return -1;
		s->skip_line = 1;
		return 0;
	case BUF_TOO_LONG:
		s->skip_line = 1;
		return 0;
	case BUF_LINE:
		break;
	}
	/* A whole line is progress; a partial one is not. */
	conn_touch(s->conn);
	/* Checked when the next command comes, as Postfix does: the error
	 * reply that reached the limit went out as it was. */
	if (s->srv->cfg->max_errors > 0 && s->errors >= s->srv->cfg->max_errors) {
		log_info(s->sid, "smtp.error_limit errors=%d", s->errors);
		smtp_reply(s, 421, "4.7.0", "%s Error: too many errors", s->srv->cfg->hostname);
		smtp_session_close(s, "error_limit");
		return 0;
	}
	if (!crlf && s->srv->cfg->bare == SMTP_BARE_REJECT) {
		/* A command ended by a bare LF is where SMTP smuggling starts
		 * (RFC 5321 2.3.8): never split on it, never execute it. */
		log_info(s->sid, "smtp.bare_lf state=%s", smtp_state_str(s->state));
		smtp_reply(s, 500, "5.5.2", "Error: bare <LF> received (see RFC 5321 2.3.8)");
		smtp_session_close(s, "bare_lf");
	} else if (s->sasl.step != SMTP_SASL_IDLE ||
	    (len >= 5 && strncasecmp(line, "AUTH ", 5) == 0))
		smtp_auth_line(s, line, len);
	else if (len + (crlf ? 2 : 1) > smtp_line_max(s, line, len))
		smtp_line_too_long(s);
	else
		smtp_command(s, line, len);
	return 0;
}

/* Whether the session may take its next input now: not while a hook is
 * parked, a paced reply goes out, a handshake runs or replies pile up. */
static int
smtp_session_ready(const struct smtp_session *s)
{
	return !s->closing && s->run == NULL && s->pace == NULL && s->state != ST_CONNECTED &&
	    !s->tls_wait && conn_output_pending(s->conn) < SMTP_OUTPUT_HIGH;
}

/* Handles every complete command line and DATA chunk that is buffered,
 * unless a hook is parked or replies are piling up; then writes all
 * replies of the batch at once. When the replies stopped the loop and the
 * write took them all, the loop goes on: no CONN_DRAINED would come. */
void
smtp_session_process(struct smtp_session *s)
{
	struct buf *in = conn_input(s->conn);
	int full;

	if (s->in_process)
		return;
	s->in_process = 1;
	do {
		while (smtp_session_ready(s) && buf_avail(in) > 0)
			if (smtp_session_step(s, in) == -1)
				break;
		full = conn_output_pending(s->conn) >= SMTP_OUTPUT_HIGH;
		conn_flush(s->conn);
	} while (full && smtp_session_ready(s) && buf_avail(in) > 0);
	s->in_process = 0;
	/* The client closed its side (or --stdio's input ended): once all
	 * it sent is answered, the session is over. */
	if (s->input_eof && smtp_session_ready(s))
		smtp_session_close(s, s->srv->stdio ? "eof" : "peer_closed");
	conn_flush(s->conn);
	if (buf_avail(in) == 0)
		conn_trim(s->conn);
}

/* Sessions -------------------------------------------------------------- */

void
smtp_session_on_reap(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct smtp_server *srv = w->data;
	struct smtp_session *s;

	(void)revents;
	ev_idle_stop(loop, w);
	while ((s = srv->reap) != NULL) {
		srv->reap = s->reap_next;
		s->reaping = 0;
		/* Let the last reply (paced or not) drain first; the end of
		 * the pace, CONN_DRAINED, an error or the linger timer brings
		 * the session back here, and the last two end the wait. */
		if (!s->linger_over && s->pace != NULL)
			continue;
		if (!s->linger_over && conn_output_pending(s->conn) > 0) {
			conn_flush(s->conn);
			if (conn_output_pending(s->conn) > 0)
				continue;
		}
		smtp_session_free(s);
	}
}

void
smtp_reap(struct smtp_session *s)
{
	if (s->reaping)
		return;
	s->reaping = 1;
	s->reap_next = s->srv->reap;
	s->srv->reap = s;
	ev_idle_start(s->srv->loop, &s->srv->reaper);
}

/* Marks the session closed; it is freed from the loop, after the callback
 * that closed it has returned (a callback may close its own session). */
void
smtp_session_close(struct smtp_session *s, const char *reason)
{
	if (s->closing)
		return;
	s->closing = 1;
	log_info(s->sid, "smtp.close reason=%s", reason);
	metrics_session_end(reason);
	/* A connection that already failed (reset by the peer) cannot take
	 * the last reply: free its slot now rather than after the linger. */
	if (conn_failed(s->conn))
		s->linger_over = 1;
	hook_run_free(s->run);
	s->run = NULL;
	smtp_enter_state(s, ST_CLOSING);
	conn_shutdown_input(s->conn);
	conn_set_timeout(s->conn, SMTP_CLOSE_LINGER);
	smtp_reap(s);
}

static void
smtp_on_conn(struct conn *c, enum conn_event ev, void *arg)
{
	struct smtp_session *s = arg;

	(void)c;
	log_debug(s->sid, "smtp.conn event=%s", conn_event_str(ev));
	switch (ev) {
	case CONN_DATAIN:
		if (!s->closing)
			smtp_session_process(s);
		break;
	case CONN_DRAINED:
		if (s->closing)
			smtp_reap(s);
		else
			smtp_session_process(s);
		break;
	case CONN_TLS_READY:
		smtp_tls_ready(s);
		break;
	case CONN_TIMEOUT:
		if (s->closing) {
			s->linger_over = 1;
			smtp_reap(s);
			break;
		}
		if (s->tls_wait) {
			/* No plaintext reply fits in the middle of a handshake. */
			log_info(s->sid, "smtp.tls_timeout");
			metrics_inc(MC_TLS_TIMEOUT);
			smtp_session_close(s, "tls_timeout");
			break;
		}
		log_info(s->sid, "smtp.timeout state=%s", smtp_state_str(s->state));
		smtp_reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->srv->cfg->hostname);
		conn_flush(s->conn);
		smtp_session_close(s, "timeout");
		break;
	case CONN_CLOSED:
	case CONN_ERROR:
		if (s->closing) {
			/* Nothing more can be written. */
			s->linger_over = 1;
			smtp_reap(s);
			break;
		}
		if (ev == CONN_CLOSED && s->tls_wait) {
			smtp_session_close(s, "peer_closed");
			break;
		}
		if (ev == CONN_CLOSED) {
			/* The client closed its side (a half-close, or a file
			 * or pipe on --stdio's stdin ending): everything it
			 * sent before still gets its reply, a parked hook
			 * included, then the session closes. A transaction cut
			 * short (DATA without its final dot) is abandoned. */
			s->input_eof = 1;
			smtp_session_process(s);
			break;
		}
		/* A reset or an error abandons whatever was in progress (mid-DATA,
		 * or a hook pending): nothing gets delivered then. */
		if (ev == CONN_ERROR)
			log_info(s->sid, "smtp.conn_error state=%s error=\"%s\"",
			    smtp_state_str(s->state), conn_strerror(s->conn));
		smtp_session_close(s, ev == CONN_CLOSED ? "peer_closed" : "error");
		break;
	}
}

struct smtp_session *
smtp_session_new(struct smtp_server *srv, int fd, int wfd, const struct sockaddr *sa, int mode,
    const struct anvil_key *counted, const struct smtp_via *px)
{
	int tls = (mode & SMTP_SESSION_TLS) != 0;
	const struct config *cfg = srv->cfg;
	struct smtp_session *s;
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		close(fd);
		if (wfd != fd)
			close(wfd);
		return NULL;
	}
	s->srv = srv;
	hook_api_session_init(s);
	s->max_size = cfg->max_size;
	s->add_received = 1;
	s->lmtp = (mode & SMTP_SESSION_LMTP) != 0;
	smtp_id_str(srv, s->sid);
	listener_addr_str(sa, s->peer_ip, sizeof(s->peer_ip), &s->peer_port);
	/* Decided by the address that connected: what XCLIENT later says
	 * the client is never makes it trusted. */
	s->xclient_trusted = config_xclient_ip(cfg, s->peer_ip);
	if (px != NULL && !px->hdr->local)
		listener_addr_str((const struct sockaddr *)&px->hdr->dst, s->local_ip,
		    sizeof(s->local_ip), &s->local_port);
	else if (getsockname(fd, (struct sockaddr *)&local, &llen) == 0)
		listener_addr_str(
		    (struct sockaddr *)&local, s->local_ip, sizeof(s->local_ip), &s->local_port);
	if (px != NULL) {
		if ((s->proxy = malloc(sizeof(*s->proxy))) == NULL) {
			close(fd);
			free(s);
			return NULL;
		}
		s->proxy->hdr = *px->hdr;
		listener_addr_str(px->proxy, s->proxy->ip, sizeof(s->proxy->ip), &s->proxy->port);
	}
	if ((s->conn = conn_new_pair(srv->loop, fd, wfd, smtp_on_conn, s)) == NULL) {
		free(s->proxy);
		free(s);
		return NULL;
	}
	if (counted != NULL) {
		s->client = *counted;
		s->client_counted = 1;
	}
	s->script = srv->script;
	if (s->script != NULL)
		script_ref(s->script);
	s->next = srv->sessions;
	if (srv->sessions != NULL)
		srv->sessions->prev = s;
	srv->sessions = s;
	srv->nsessions++;
	metrics_connections(1);
	if (s->proxy != NULL)
		log_info(s->sid, "smtp.connect peer=%s port=%d tls=%s proxy=%s proxy_port=%d",
		    s->peer_ip, s->peer_port, tls ? "implicit" : "no", s->proxy->ip,
		    s->proxy->port);
	else
		log_info(s->sid, "smtp.connect peer=%s port=%d tls=%s%s", s->peer_ip, s->peer_port,
		    tls ? "implicit" : "no", s->lmtp ? " proto=lmtp" : "");
	if (tls) {
		/* RFC 8314 3.3: the handshake comes first; the greeting (and
		 * on_connect) follow in smtp_tls_ready(). */
		if (conn_starttls(s->conn, srv->tls) == -1) {
			smtp_session_close(s, "out of memory");
			return s;
		}
		s->tls_wait = 1;
		conn_set_timeout(s->conn, cfg->tls_timeout);
		return s;
	}
	conn_set_timeout(s->conn, cfg->timeout);
	s->pend.cmd = &smtp_cmd_connect;
	smtp_hook_run(s);
	smtp_session_process(s);
	return s;
}

/* on_disconnect is a notification: its result is ignored, and it cannot
 * wait (the session is going away). */
static void
smtp_hook_disconnect(struct smtp_session *s)
{
	struct hook_run *run;
	lua_State *co;

	if (!script_has(s->script, HOOK_DISCONNECT))
		return;
	run = hook_run_new(s->script->L, s->srv->loop, HOOK_MODE_POLICY, &s->script->budget,
	    "on_disconnect", s->sid, smtp_on_hook_done, s);
	if (run == NULL)
		return;
	co = hook_run_thread(run);
	if (script_push_hook(s->script, co, HOOK_DISCONNECT, NULL) == 0) {
		if (hook_run_start(run, hook_api_push_args(co, s, HOOK_DISCONNECT, NULL)) ==
		    HOOK_PENDING)
			log_warn(s->sid,
			    "hook.cancel hook=on_disconnect reason=\"cannot wait in "
			    "on_disconnect\"");
	}
	hook_run_free(run);
}

static void
smtp_session_free(struct smtp_session *s)
{
	struct smtp_server *srv = s->srv;

	hook_run_free(s->run);
	s->run = NULL;
	smtp_pace_free(s->pace);
	s->pace = NULL;
	if (s->script != NULL) {
		smtp_hook_disconnect(s);
		hook_api_release(s->script->L, s);
	}
	smtp_pending_reset(s);
	smtp_sasl_reset(&s->sasl);
	smtp_tx_free(s->tx);
	s->tx = NULL;
	smtp_data_account(s);
	if (s->client_counted)
		anvil_disconnect(srv->anvil, &s->client);
	free(s->helo);
	free(s->user);
	free(s->rdns);
	spf_lua_forget(&s->spf);
	free(s->proxy);
	conn_free(s->conn);
	script_unref(s->script);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	srv->nsessions--;
	metrics_connections(-1);
	log_debug(s->sid, "smtp.free");
	free(s);
	if (srv->nsessions == 0 && srv->on_drained != NULL)
		srv->on_drained(srv);
}

void
smtp_session_abort(struct smtp_session *s)
{
	if (!s->closing) {
		metrics_session_end("shutdown");
		smtp_reply(s, 421, "4.3.2", "%s Service shutting down", s->srv->cfg->hostname);
		conn_flush(s->conn);
	}
	smtp_session_free(s);
}
