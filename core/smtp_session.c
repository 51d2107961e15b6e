/* smtp_session.c - the SMTP state machine. Every verb goes through the one
 * table below in three steps: check (sequence and syntax, may reply and
 * stop), hook (the Lua phase, which may finish now or later) and proceed
 * (apply the effects and send the success reply). Input is not processed
 * while a hook is pending, so a pipelining client cannot get ahead of the
 * policy; replies to a pipelined batch leave in one write.
 * The file is long on purpose: the table, each verb's check and proceed,
 * and the loop that drives them are one state machine, read together.
 * Everything that is not (the door, SASL, reply formatting and pacing,
 * what Lua sees) lives in its own module. */
#include "smtp_session.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "dsn.h"
#include "dsn_local.h"
#include "listener.h"
#include "tls.h"
#include "hook_api.h"
#include "log.h"
#include "metrics.h"
#include "msgstore.h"
#include "relay.h"
#include "smtp_bdat.h"
#include "smtp_lmtp.h"
#include "smtp_pace.h"
#include "smtp_parse.h"
#include "smtp_reply.h"
#include "smtp_sasl.h"
#include "smtp_session_types.h"
#include "smtp_xclient.h"
#include "spf_lua.h"

#define SMTP_OUTPUT_HIGH   65536 /* stop reading commands while replies pile up */
#define SMTP_CLOSE_LINGER  5.0   /* seconds to get the last reply out */
#define SMTP_DATA_MIN_RATE 500   /* bytes/s that keep DATA alive (Postfix's default) */
/* A message's first bytes stay in memory, where on_message's header
 * look-ups read them: more than Postfix's header_size_limit (100 KiB), so
 * a header section it would read whole is read whole here. The rest goes
 * to a file as it arrives; so a message holds at most this much memory,
 * plus the store's write buffer. */
#define SMTP_SPILL_AT   (128 * 1024)
#define SMTP_SPILL_HELD (SMTP_SPILL_AT + MSGSTORE_WBUF)

#define S(st)      (1u << (st))
#define ST_SESSION (S(ST_GREETED) | S(ST_READY) | S(ST_MAIL) | S(ST_RCPT) | S(ST_BDAT))

struct smtp_cmd {
	const char *verb;    /* NULL for the phases without a verb */
	unsigned states;     /* where it is allowed (S(ST_x) bits) */
	enum hook_kind hook; /* HOOK__COUNT: no hook */
	int (*check)(struct smtp_session *, const char *arg, size_t len);
	void (*proceed)(struct smtp_session *, const struct hook_result *);
	void (*rejected)(struct smtp_session *); /* effects of a refusal */
	int rcode;                               /* default refusal */
	const char *renh;
	const char *rtext;
};

static void smtp_session_process(struct smtp_session *);
static void smtp_reap(struct smtp_session *);
static void smtp_reply_lines(struct smtp_session *, int, const char *, const char *);
static void smtp_session_close(struct smtp_session *, const char *reason);
static void smtp_hook_finish(struct smtp_session *, const struct hook_result *);
static void smtp_session_free(struct smtp_session *);
static void smtp_hook_run(struct smtp_session *);
static void smtp_starttls_begin(struct smtp_session *);

static void
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
static void
smtp_id_str(struct smtp_server *srv, char *out)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t id = smtp_next_id(srv);

	for (int i = 15; i >= 0; i--, id >>= 4)
		out[i] = hex[id & 15];
	out[16] = '\0';
}

/* Replies --------------------------------------------------------------- */

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
static void
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
static void
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

static void smtp_reply(struct smtp_session *, int, const char *, const char *, ...)
    __attribute__((format(printf, 4, 5)));

static void
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
static void
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

/* A NUL-terminated copy of n bytes of a command line. Not strndup(): the
 * line lies in the input buffer with no NUL after it, and strndup may look
 * for one past n. NULL when out of memory. */
static char *
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

static void
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
static void
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
static void
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

static void
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

/* Checks ---------------------------------------------------------------- */

static int
check_noarg(struct smtp_session *s, const char *arg, size_t len)
{
	(void)arg;
	if (len == 0)
		return 0;
	smtp_reply(s, 501, "5.5.4", "Syntax: %s", s->pend.cmd->verb);
	return -1;
}

static int
check_anyarg(struct smtp_session *s, const char *arg, size_t len)
{
	(void)s;
	(void)arg;
	(void)len;
	return 0;
}

/* Keeps the argument of HELO, EHLO and VRFY for the hook. */
static int
check_keep_arg(struct smtp_session *s, const char *arg, size_t len)
{
	if ((s->pend.arg = smtp_copy(arg, len)) == NULL) {
		smtp_reply(s, 451, "4.3.0", "Error: out of memory");
		return -1;
	}
	return 0;
}

static int
check_helo(struct smtp_session *s, const char *arg, size_t len)
{
	if (len == 0) {
		smtp_reply(s, 501, "5.5.4", "Syntax: %s hostname", s->pend.cmd->verb);
		return -1;
	}
	/* The name goes to logs, to hooks and into --capture's JSON: control
	 * characters and broken UTF-8 have no place in a host name. */
	if (smtp_reply_text_ok(arg, len) == -1) {
		smtp_reply(
		    s, 501, "5.5.2", "Error: invalid characters in %s hostname", s->pend.cmd->verb);
		return -1;
	}
	return check_keep_arg(s, arg, len);
}

static int
check_vrfy(struct smtp_session *s, const char *arg, size_t len)
{
	if (len == 0) {
		smtp_reply(s, 501, "5.5.4", "Syntax: VRFY address");
		return -1;
	}
	return check_keep_arg(s, arg, len);
}

/* Common to MAIL and RCPT: "FROM:" / "TO:", then a path, then parameters. */
static int
check_path(struct smtp_session *s, const char *arg, size_t len, const char *prefix, int is_mail,
    char *path)
{
	size_t plen = strlen(prefix);
	const char *p, *rest, *end = arg + len;
	enum smtp_path_err perr;
	int utf8 = is_mail || (s->tx != NULL && s->tx->smtputf8);

	if (len < plen || strncasecmp(arg, prefix, plen) != 0) {
		smtp_reply(
		    s, 501, "5.5.4", "Syntax: %s%s<address>", is_mail ? "MAIL " : "RCPT ", prefix);
		return -1;
	}
	/* RFC 5321 has no space after the colon; Postfix tolerates it and so
	 * do many clients' users, so we do too. */
	for (p = arg + plen; p < end && *p == ' '; p++)
		;
	perr = smtp_parse_path(
	    p, (size_t)(end - p), is_mail, !is_mail, utf8, path, SMTP_PATH_MAX + 1, &rest);
	if (perr == SMTP_PATH_UTF8 && !utf8) {
		smtp_reply(s, 553, "5.6.7", "Error: non-ASCII address without SMTPUTF8");
		return -1;
	}
	if (perr != SMTP_PATH_OK) {
		smtp_reply(s, 501, is_mail ? "5.1.7" : "5.1.3", "Error: bad %s address syntax (%s)",
		    is_mail ? "sender" : "recipient", smtp_path_err_str(perr));
		return -1;
	}
	if (rest < end && *rest != ' ') {
		smtp_reply(s, 501, "5.5.4", "Error: junk after the address");
		return -1;
	}
	while (rest < end && *rest == ' ')
		rest++;
	if (rest < end && (s->pend.params = smtp_copy(rest, (size_t)(end - rest))) == NULL) {
		smtp_reply(s, 451, "4.3.0", "Error: out of memory");
		return -1;
	}
	if ((s->pend.arg = strdup(path)) == NULL) {
		smtp_reply(s, 451, "4.3.0", "Error: out of memory");
		return -1;
	}
	return 0;
}

/* Parses a copy of the parameters into p; replies and returns -1 on error. */
static int
check_params(struct smtp_session *s, char *copy, struct smtp_param *p, int *n)
{
	if (s->pend.params == NULL) {
		*n = 0;
		return 0;
	}
	if (!s->esmtp) {
		/* RFC 5321 4.1.1.11: parameters only after EHLO. */
		smtp_reply(s, 555, "5.5.4", "Error: parameters need EHLO");
		return -1;
	}
	strcpy(copy, s->pend.params);
	if ((*n = smtp_parse_params(copy, p, SMTP_PARAMS_MAX, 1)) == -1) {
		smtp_reply(s, 501, "5.5.4", "Error: bad parameter syntax");
		return -1;
	}
	return 0;
}

/* One of RFC 3461's parameters, when DSN was offered: 1 taken (decoded
 * into s->pend.dsn), 0 not one of them, -1 malformed or repeated (501
 * 5.5.4 sent). */
static int
check_dsn_param(struct smtp_session *s, const struct smtp_param *p, int is_mail)
{
	const char *why;
	int r;

	if (!(s->ext & SMTP_EXT_DSN))
		return 0;
	if ((r = dsn_param_take(&s->pend.dsn, p->key, p->value, is_mail, &why)) == -1)
		smtp_reply(s, 501, "5.5.4", "Error: %s", why);
	return r;
}

static int
check_mail(struct smtp_session *s, const char *arg, size_t len)
{
	char path[SMTP_PATH_MAX + 1], copy[SMTP_CMD_LINE_MAX];
	struct smtp_param p[SMTP_PARAMS_MAX];
	int n, utf8 = 0, dsn;

	/* Each transaction starts with our trace field on; the hooks of
	 * this MAIL, its RCPTs and DATA may turn it off for the message. */
	s->add_received = 1;
	if ((s->require_tls || s->srv->cfg->require_tls) && !s->tls_active) {
		smtp_reply(s, 530, "5.7.0", "Must issue a STARTTLS command first");
		return -1;
	}
	if (check_path(s, arg, len, "FROM:", 1, path) == -1 || check_params(s, copy, p, &n) == -1)
		return -1;
	for (int i = 0; i < n; i++) {
		/* RFC 5321 4.1.1.11: only parameters of advertised extensions. */
		if (strcasecmp(p[i].key, "SIZE") == 0 && (s->ext & SMTP_EXT_SIZE)) {
			char *end;
			unsigned long long sz;

			if (p[i].value == NULL || !isdigit((unsigned char)p[i].value[0]) ||
			    (errno = 0, sz = strtoull(p[i].value, &end, 10), *end != '\0') ||
			    errno != 0) {
				smtp_reply(s, 501, "5.5.4", "Error: bad SIZE parameter");
				return -1;
			}
			if (sz > s->max_size) {
				smtp_reply(
				    s, 552, "5.3.4", "Error: message size exceeds fixed limit");
				return -1;
			}
			s->pend.size = (size_t)sz;
		} else if (strcasecmp(p[i].key, "BODY") == 0 && (s->ext & SMTP_EXT_8BITMIME)) {
			/* RFC 3030 3: BINARYMIME where it was offered. */
			int binary = (s->ext & SMTP_EXT_BINARYMIME) && p[i].value != NULL &&
			    strcasecmp(p[i].value, "BINARYMIME") == 0;
			if (!binary &&
			    (p[i].value == NULL ||
				(strcasecmp(p[i].value, "7BIT") != 0 &&
				    strcasecmp(p[i].value, "8BITMIME") != 0))) {
				smtp_reply(s, 501, "5.5.4",
				    "Error: BODY must be 7BIT or 8BITMIME%s",
				    (s->ext & SMTP_EXT_BINARYMIME) ? " or BINARYMIME" : "");
				return -1;
			}
			s->pend.binarymime = binary;
		} else if (strcasecmp(p[i].key, "AUTH") == 0 && p[i].value != NULL &&
		    (s->ext & SMTP_EXT_AUTH)) {
			/* RFC 4954 5: the original submitter, as xtext; we
			 * accept it and keep it among the parameters. */
		} else if (strcasecmp(p[i].key, "SMTPUTF8") == 0 && p[i].value == NULL &&
		    (s->ext & SMTP_EXT_SMTPUTF8)) {
			utf8 = 1;
		} else if ((dsn = check_dsn_param(s, &p[i], 1)) != 1) {
			if (dsn == 0)
				smtp_reply(s, 555, "5.5.4", "Error: unsupported parameter %.64s",
				    p[i].key);
			return -1;
		}
	}
	/* RFC 6531 3.4: a non-ASCII path needs the SMTPUTF8 parameter. */
	for (const char *c = path; !utf8 && *c != '\0'; c++)
		if ((unsigned char)*c >= 0x80) {
			smtp_reply(s, 553, "5.6.7", "Error: non-ASCII sender without SMTPUTF8");
			return -1;
		}
	s->pend.smtputf8 = utf8;
	return 0;
}

static int
check_rcpt(struct smtp_session *s, const char *arg, size_t len)
{
	char path[SMTP_PATH_MAX + 1], copy[SMTP_CMD_LINE_MAX];
	struct smtp_param p[SMTP_PARAMS_MAX];
	int n, dsn;

	if (check_path(s, arg, len, "TO:", 0, path) == -1 || check_params(s, copy, p, &n) == -1)
		return -1;
	for (int i = 0; i < n; i++)
		if ((dsn = check_dsn_param(s, &p[i], 0)) != 1) {
			if (dsn == 0)
				smtp_reply(s, 555, "5.5.4", "Error: unsupported parameter %.64s",
				    p[i].key);
			return -1;
		}
	if (s->tx->nrcpts >= (size_t)s->srv->cfg->max_recipients) {
		smtp_reply(s, 452, "4.5.3", "Error: too many recipients");
		return -1;
	}
	return 0;
}

/* Proceeds ------------------------------------------------------------- */

static void
do_helo(struct smtp_session *s, const struct hook_result *res)
{
	smtp_tx_end(s);
	free(s->helo);
	s->helo = s->pend.arg;
	s->pend.arg = NULL;
	s->esmtp = 0;
	s->ext = 0;
	smtp_enter_state(s, ST_READY);
	smtp_reply_hook(s, res, 250, NULL, s->srv->cfg->hostname);
}

/* RFC 4954 and aiosmtpd's auth_require_tls: AUTH only over TLS, unless the
 * operator runs a local test server (--auth-plaintext); never without an
 * on_auth hook to decide. */
static int
smtp_auth_offered(const struct smtp_session *s)
{
	return script_has(s->script, HOOK_AUTH) && (s->tls_active || s->srv->cfg->auth_plaintext);
}

static int
smtp_starttls_offered(const struct smtp_session *s)
{
	return s->srv->tls != NULL && !s->tls_active;
}

/* The keywords we advertise, '\n'-separated, as on_ehlo sees them. */
static void
smtp_ehlo_keywords(struct smtp_session *s, char *out, size_t outsz)
{
	snprintf(out, outsz,
	    "PIPELINING\nSIZE "
	    "%zu\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8\nDSN\nCHUNKING%s%s\nHELP",
	    s->max_size, smtp_auth_offered(s) ? "\nAUTH PLAIN LOGIN" : "",
	    smtp_starttls_offered(s) ? "\nSTARTTLS" : "");
	if (s->xclient_trusted && strlen(out) + sizeof("\n" SMTP_XCLIENT_KEYWORD) <= outsz)
		strcat(out, "\n" SMTP_XCLIENT_KEYWORD);
}

/* Which parameter-bearing extensions the final keyword list offers. */
static unsigned
smtp_ehlo_ext(const char *keywords)
{
	static const struct {
		const char *kw;
		unsigned bit;
	} exts[] = {
		{ "SIZE", SMTP_EXT_SIZE },
		{ "8BITMIME", SMTP_EXT_8BITMIME },
		{ "SMTPUTF8", SMTP_EXT_SMTPUTF8 },
		{ "AUTH", SMTP_EXT_AUTH },
		{ "DSN", SMTP_EXT_DSN },
		{ "CHUNKING", SMTP_EXT_CHUNKING },
		{ "BINARYMIME", SMTP_EXT_BINARYMIME },
	};
	unsigned ext = 0;

	for (const char *line = keywords; line != NULL && *line != '\0';) {
		size_t len = strcspn(line, " \n");
		for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++)
			if (len == strlen(exts[i].kw) && strncasecmp(line, exts[i].kw, len) == 0)
				ext |= exts[i].bit;
		line = strchr(line, '\n');
		line = line != NULL ? line + 1 : NULL;
	}
	/* BINARYMIME comes only by BDAT (RFC 3030 3). */
	if (!(ext & SMTP_EXT_CHUNKING))
		ext &= ~SMTP_EXT_BINARYMIME;
	return ext;
}

static void
do_ehlo(struct smtp_session *s, const struct hook_result *res)
{
	char kwbuf[256], *kw = NULL, first[SMTP_REPLY_TEXT_MAX + 1], *text;
	const char *keywords;
	size_t n;

	/* The list on_ehlo edited, else ours. */
	if (s->script != NULL && (kw = hook_api_take_keywords(s->script->L, s)) != NULL)
		keywords = kw;
	else {
		smtp_ehlo_keywords(s, kwbuf, sizeof(kwbuf));
		keywords = kwbuf;
	}
	smtp_tx_end(s);
	free(s->helo);
	s->helo = s->pend.arg;
	s->pend.arg = NULL;
	s->esmtp = 1;
	s->ext = smtp_ehlo_ext(keywords);
	smtp_enter_state(s, ST_READY);
	/* A custom 2xx replaces the first line's text; the keywords follow. */
	if (res != NULL && res->code != 0 && res->text != NULL)
		snprintf(first, sizeof(first), "%.*s", (int)strcspn(res->text, "\n"), res->text);
	else
		snprintf(first, sizeof(first), "%s", s->srv->cfg->hostname);
	n = strlen(first) + 1 + strlen(keywords) + 1;
	if ((text = malloc(n)) != NULL) {
		snprintf(text, n, "%s%s%s", first, keywords[0] ? "\n" : "", keywords);
		if (res != NULL && hook_result_paced(res))
			smtp_reply_paced(s, 250, NULL, text, res);
		else
			smtp_reply_lines(s, 250, NULL, text);
		free(text);
	} else
		smtp_reply(s, 451, "4.3.0", "Error: out of memory");
	free(kw);
}

static void
do_mail(struct smtp_session *s, const struct hook_result *res)
{
	struct smtp_tx *tx;

	if ((tx = calloc(1, sizeof(*tx))) == NULL) {
		smtp_reply(s, 451, "4.3.0", "Error: out of memory");
		return;
	}
	smtp_id_str(s->srv, tx->qid);
	tx->sender = s->pend.arg;
	tx->params = s->pend.params;
	s->pend.arg = s->pend.params = NULL;
	tx->smtputf8 = s->pend.smtputf8;
	tx->size = s->pend.size;
	tx->dsn_ret = s->pend.dsn.ret;
	if (s->pend.dsn.envid[0] != '\0' && (tx->dsn_envid = strdup(s->pend.dsn.envid)) == NULL) {
		smtp_tx_free(tx);
		smtp_reply(s, 451, "4.3.0", "Error: out of memory");
		return;
	}
	tx->binarymime = s->pend.binarymime;
	s->tx = tx;
	smtp_enter_state(s, ST_MAIL);
	log_debug(s->sid, "smtp.mail qid=%s", tx->qid);
	smtp_reply_hook(s, res, 250, "2.1.0", "Ok");
}

static void
do_rcpt(struct smtp_session *s, const struct hook_result *res)
{
	struct smtp_tx *tx = s->tx;

	struct smtp_rcpt_dsn d = { s->pend.dsn.notify, NULL };

	if (tx->nrcpts == tx->rcpts_cap) {
		size_t cap = tx->rcpts_cap ? tx->rcpts_cap * 2 : 4;
		char **r = realloc(tx->rcpts, cap * sizeof(*r));
		struct smtp_rcpt_dsn *rd;

		if (r != NULL)
			tx->rcpts = r;
		rd = r != NULL ? realloc(tx->rcpt_dsn, cap * sizeof(*rd)) : NULL;
		if (rd == NULL) {
			smtp_reply(s, 451, "4.3.0", "Error: out of memory");
			return;
		}
		tx->rcpt_dsn = rd;
		tx->rcpts_cap = cap;
	}
	if (s->pend.dsn.orcpt[0] != '\0' && (d.orcpt = strdup(s->pend.dsn.orcpt)) == NULL) {
		smtp_reply(s, 451, "4.3.0", "Error: out of memory");
		return;
	}
	tx->rcpt_dsn[tx->nrcpts] = d;
	tx->rcpts[tx->nrcpts++] = s->pend.arg;
	s->pend.arg = NULL;
	smtp_enter_state(s, ST_RCPT);
	smtp_reply_hook(s, res, 250, "2.1.5", "Ok");
}

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

static int
check_data(struct smtp_session *s, const char *arg, size_t len)
{
	if (check_noarg(s, arg, len) == -1)
		return -1;
	if (s->tx->binarymime) {
		smtp_reply(s, 503, "5.5.1", "Error: BODY=BINARYMIME requires BDAT");
		return -1;
	}
	s->tx->data_tried = 1;
	return check_data_memory(s);
}

/* on_data refused the message before it came (for the metrics only). */
static void
rejected_data(struct smtp_session *s)
{
	metrics_message(s->last_code, METRICS_STAGE_DATA);
}

static void
do_data(struct smtp_session *s, const struct hook_result *res)
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

static void
do_rset(struct smtp_session *s, const struct hook_result *res)
{
	smtp_tx_end(s);
	smtp_reply_hook(s, res, 250, "2.0.0", "Ok");
}

/* NOOP, and custom verbs that accept without a reply of their own. */
static void
do_ok(struct smtp_session *s, const struct hook_result *res)
{
	smtp_reply_hook(s, res, 250, "2.0.0", "Ok");
}

static void
do_quit(struct smtp_session *s, const struct hook_result *res)
{
	smtp_reply_hook(s, res, 221, "2.0.0", "Bye");
	smtp_session_close(s, "quit");
}

static void
do_vrfy(struct smtp_session *s, const struct hook_result *res)
{
	smtp_reply_hook(
	    s, res, 252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

static void
do_help(struct smtp_session *s, const struct hook_result *res)
{
	smtp_reply_hook(s, res, 214, "2.0.0",
	    "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP");
}

static void
do_unknown(struct smtp_session *s, const struct hook_result *res)
{
	smtp_reply_hook(s, res, 500, "5.5.2", "Error: command not recognized");
}

static void
do_connect(struct smtp_session *s, const struct hook_result *res)
{
	char text[SMTP_REPLY_TEXT_MAX + 1];

	smtp_enter_state(s, ST_GREETED);
	s->greeted_max_size = s->max_size;
	s->greeted_require_tls = s->require_tls;
	if (s->script != NULL)
		hook_api_mark_greeted(s->script->L, s);
	snprintf(
	    text, sizeof(text), "%s %s luamta", s->srv->cfg->hostname, s->lmtp ? "LMTP" : "ESMTP");
	smtp_reply_hook(s, res, 220, NULL, text);
}

static void
rejected_close(struct smtp_session *s)
{
	smtp_session_close(s, "rejected");
}

/* XCLIENT (Postfix's extension) --------------------------------------- */

static const struct smtp_cmd smtp_cmd_connect;

/* Only the networks of --xclient-trusted may say who the client is; and
 * not inside a transaction (the state table refuses that with 503). */
static int
check_xclient(struct smtp_session *s, const char *arg, size_t len)
{
	const char *why;

	if (!s->xclient_trusted) {
		log_info(s->sid, "smtp.xclient result=refused peer=%s", s->peer_ip);
		smtp_reply(s, 550, "5.7.0", "Error: insufficient authorization");
		return -1;
	}
	if (smtp_xclient_parse(arg, len, &s->pend.xclient, &why) == -1) {
		smtp_reply(s, 501, "5.5.4", "%s", why);
		return -1;
	}
	return 0;
}

/* Takes the attributes XCLIENT gave (the others keep their values), and
 * starts over as a new connection from that client would: on_connect
 * runs again and answers with a fresh greeting, and the client says EHLO
 * again. */
static void
do_xclient(struct smtp_session *s, const struct hook_result *res)
{
	const struct smtp_xclient *x = &s->pend.xclient;
	char *copy;

	(void)res;
	if (x->has_addr && x->addr[0] != '[')
		snprintf(s->peer_ip, sizeof(s->peer_ip), "%s", x->addr);
	if (x->port >= 0)
		s->peer_port = x->port;
	if (x->proto >= 0)
		s->esmtp = x->proto;
	if (x->has_name) {
		/* The client's name as s:rdns() and Received: give it; an
		 * unavailable one is none, a temporarily unavailable one is
		 * looked up again if a hook asks. */
		free(s->rdns);
		s->rdns = NULL;
		s->rdns_err[0] = '\0';
		if (strcmp(x->name, "[UNAVAILABLE]") == 0)
			snprintf(s->rdns_err, sizeof(s->rdns_err), "nxdomain");
		else if (x->name[0] != '[')
			s->rdns = strdup(x->name);
	} else if (x->has_addr) {
		/* A new address: the old one's name no longer applies. */
		free(s->rdns);
		s->rdns = NULL;
		s->rdns_err[0] = '\0';
	}
	if (x->has_helo) {
		copy = x->helo[0] != '[' ? strdup(x->helo) : NULL;
		free(s->helo);
		s->helo = copy;
	}
	if (x->has_login) {
		copy = x->login[0] != '[' ? strdup(x->login) : NULL;
		free(s->user);
		s->user = copy;
	}
	log_info(s->sid, "smtp.xclient result=ok peer=%s port=%d name=%s helo=%s login=%s",
	    s->peer_ip, s->peer_port, s->rdns != NULL ? s->rdns : "-",
	    s->helo != NULL ? s->helo : "-", s->user != NULL ? s->user : "-");
	smtp_tx_free(s->tx);
	s->tx = NULL;
	smtp_data_account(s);
	smtp_enter_state(s, ST_CONNECTED);
	smtp_pending_reset(s);
	s->pend.cmd = &smtp_cmd_connect;
	smtp_hook_run(s);
}

/* AUTH (RFC 4954) ------------------------------------------------------- */

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

static int
check_auth(struct smtp_session *s, const char *arg, size_t len)
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

static void
do_auth(struct smtp_session *s, const struct hook_result *res)
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

static void
rejected_auth(struct smtp_session *s)
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

static void do_message(struct smtp_session *, const struct hook_result *);
static void rejected_message(struct smtp_session *);
static int check_bdat(struct smtp_session *, const char *, size_t);
static void do_bdat(struct smtp_session *, const struct hook_result *);
static void rejected_bdat(struct smtp_session *);

/* STARTTLS (RFC 3207) -------------------------------------------------- */

static int
check_starttls(struct smtp_session *s, const char *arg, size_t len)
{
	(void)arg;
	if (s->srv->tls == NULL) {
		smtp_reply(s, 502, "5.5.1", "Error: command not implemented");
		return -1;
	}
	if (s->tls_active) {
		smtp_reply(s, 503, "5.5.1", "Error: TLS already active");
		return -1;
	}
	if (len != 0) {
		smtp_reply(s, 501, "5.5.4", "Syntax: STARTTLS");
		return -1;
	}
	return 0;
}

/* After the 220 is out (all of it, when it was paced): the switch. */
static void
smtp_starttls_begin(struct smtp_session *s)
{
	size_t injected = buf_avail(conn_input(s->conn));

	s->starttls_pending = 0;
	/* Whatever the client pipelined after STARTTLS was sent in plaintext
	 * and must not be executed (CVE-2011-0411); conn_starttls drops it. */
	if (injected > 0)
		log_warn(s->sid, "smtp.starttls_injection discarded=%zu", injected);
	if (conn_starttls(s->conn, s->srv->tls) == -1) {
		smtp_session_close(s, "out of memory");
		return;
	}
	/* RFC 3207 4.2: forget everything learnt from the client before the
	 * handshake, including what hooks set on the session since the
	 * greeting (what on_connect set came from no client input and
	 * stays). Failed AUTH attempts still count: a new handshake must not
	 * reset that limit. */
	smtp_tx_end(s);
	free(s->helo);
	free(s->user);
	s->helo = s->user = NULL;
	s->esmtp = 0;
	s->ext = 0;
	s->max_size = s->greeted_max_size;
	s->require_tls = s->greeted_require_tls;
	if (s->script != NULL)
		hook_api_forget(s->script->L, s);
	smtp_enter_state(s, ST_GREETED);
	s->tls_wait = 1;
	conn_set_timeout(s->conn, s->srv->cfg->tls_timeout);
}

static void
do_starttls(struct smtp_session *s, const struct hook_result *res)
{
	smtp_reply_hook(s, res, 220, "2.0.0", "Ready to start TLS");
	/* A paced 220 must reach the client whole before the handshake:
	 * the switch waits for the end of the pace (smtp_on_pace). */
	if (s->pace != NULL)
		s->starttls_pending = 1;
	else
		smtp_starttls_begin(s);
}

/* The handshake finished: STARTTLS goes on with the greeted session, an
 * implicit-TLS session starts with its greeting. */
static void
smtp_tls_ready(struct smtp_session *s)
{
	struct tls *t = conn_tls(s->conn);

	s->tls_wait = 0;
	s->tls_active = 1;
	log_info(s->sid, "smtp.tls version=%s cipher=%s client_cert=%s", tls_version(t),
	    tls_cipher(t),
	    !tls_peer_cert_present(t)     ? "none" :
		tls_peer_cert_verified(t) ? "verified" :
					    "unverified");
	conn_set_timeout(s->conn, s->srv->cfg->timeout);
	if (s->state == ST_CONNECTED) {
		s->pend.cmd = &smtp_cmd_connect;
		smtp_hook_run(s);
	}
	smtp_session_process(s);
}

/* The one command table. Phases without a verb (connect, message) use the
 * same check/hook/proceed path. */
/* clang-format off */
static const struct smtp_cmd smtp_cmds[] = {
	/* verb    states                 hook          check         proceed     rejected */
	{ "HELO", ST_SESSION,             HOOK_HELO,    check_helo,   do_helo,    NULL,
	  550, "5.7.1", "Rejected" },
	{ "EHLO", ST_SESSION,             HOOK_EHLO,    check_helo,   do_ehlo,    NULL,
	  550, "5.7.1", "Rejected" },
	{ "LHLO", ST_SESSION,             HOOK_EHLO,    check_helo,   do_ehlo,    NULL,
	  550, "5.7.1", "Rejected" },
	{ "MAIL", S(ST_READY),            HOOK_MAIL,    check_mail,   do_mail,    NULL,
	  550, "5.7.1", "Sender rejected" },
	{ "RCPT", S(ST_MAIL) | S(ST_RCPT), HOOK_RCPT,   check_rcpt,   do_rcpt,    NULL,
	  550, "5.7.1", "Recipient rejected" },
	{ "DATA", S(ST_RCPT),             HOOK_DATA,    check_data,   do_data,    rejected_data,
	  554, "5.5.1", "Rejected" },
	/* Every state, for check_bdat to read the chunk a refusal skips. */
	{ "BDAT", ST_SESSION,             HOOK_DATA,    check_bdat,   do_bdat,    rejected_bdat,
	  554, "5.5.1", "Rejected" },
	{ "RSET", ST_SESSION,             HOOK_RSET,    check_noarg,  do_rset,    NULL,
	  550, "5.7.1", "Rejected" },
	{ "NOOP", ST_SESSION,             HOOK__COUNT,  check_anyarg, do_ok,    NULL,
	  0, NULL, NULL },
	{ "QUIT", ST_SESSION,             HOOK_QUIT,    check_noarg,  do_quit,    rejected_close,
	  221, "2.0.0", "Bye" },
	{ "VRFY", ST_SESSION,             HOOK_VRFY,    check_vrfy,   do_vrfy,    NULL,
	  550, "5.1.1", "Rejected" },
	{ "AUTH", S(ST_READY),            HOOK_AUTH,    check_auth,   do_auth,    rejected_auth,
	  535, "5.7.8", "Authentication credentials invalid" },
	{ "STARTTLS", S(ST_GREETED) | S(ST_READY), HOOK_STARTTLS, check_starttls, do_starttls, NULL,
	  454, "4.7.0", "TLS not available" },
	{ "HELP", ST_SESSION,             HOOK__COUNT,  check_anyarg, do_help,    NULL,
	  0, NULL, NULL },
	{ "XCLIENT", S(ST_GREETED) | S(ST_READY), HOOK__COUNT, check_xclient, do_xclient, NULL,
	  0, NULL, NULL },
};
static const struct smtp_cmd smtp_cmd_unknown =
	{ NULL, ST_SESSION, HOOK_UNKNOWN, check_anyarg, do_unknown, NULL,
	  500, "5.5.2", "Error: command not recognized" };
static const struct smtp_cmd smtp_cmd_verb =
	{ NULL, ST_SESSION, HOOK_VERB, check_anyarg, do_ok, NULL,
	  550, "5.7.1", "Rejected" };
static const struct smtp_cmd smtp_cmd_connect =
	{ NULL, S(ST_CONNECTED), HOOK_CONNECT, NULL, do_connect, rejected_close,
	  554, "5.7.1", "Connection rejected" };
/* The chunks after a transaction's first BDAT: on_data ran already. */
static const struct smtp_cmd smtp_cmd_bdat_next =
	{ NULL, S(ST_BDAT), HOOK__COUNT, NULL, do_bdat, NULL,
	  0, NULL, NULL };
static const struct smtp_cmd smtp_cmd_message =
	{ NULL, S(ST_DATA) | S(ST_BDAT), HOOK_MESSAGE, NULL, do_message, rejected_message,
	  554, "5.7.1", "Message rejected" };
/* clang-format on */

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
static void
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
			if (cmd->rejected != NULL && cmd->rejected != rejected_close)
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

/* DATA ------------------------------------------------------------------ */

/* The verdict on the transaction's message, for the metrics. */
static void
smtp_verdict(struct smtp_session *s, int code, enum metrics_stage stage)
{
	s->tx->verdict = code;
	metrics_message(code, stage);
}

/* Refused at the final dot: by the server's checks, or by on_message (its
 * command is still pending then). A close without a reply counts as 554. */
static void
rejected_message(struct smtp_session *s)
{
	smtp_verdict(s, s->last_code >= 400 ? s->last_code : 554,
	    s->pend.cmd == &smtp_cmd_message ? METRICS_STAGE_POLICY : METRICS_STAGE_END);
	smtp_tx_end(s);
	conn_set_timeout(s->conn, s->srv->cfg->timeout);
}

static void
do_message(struct smtp_session *s, const struct hook_result *res)
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
static void
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
static void
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
static void
smtp_data_end(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	enum smtp_data_err err = smtp_data_error(tx->data);

	smtp_lmtp_message_end(s);
	if (err != SMTP_DATA_OK) {
		smtp_data_refuse(s, err);
		rejected_message(s);
		return;
	}
	tx->ms = smtp_data_take(tx->data);
	if (msgstore_finish(tx->ms) == -1) {
		log_warn(s->sid, "smtp.message qid=%s result=tempfail error=storage cause=\"%s\"",
		    tx->qid, strerror(errno));
		smtp_reply(s, 452, "4.3.1", "Insufficient system storage, try again later");
		rejected_message(s);
		return;
	}
	smtp_data_free(tx->data);
	tx->data = NULL;
	smtp_data_account(s);
	if (smtp_trace(s) == -1) {
		rejected_message(s);
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
static int
check_bdat(struct smtp_session *s, const char *arg, size_t len)
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
static void
rejected_bdat(struct smtp_session *s)
{
	rejected_data(s);
	smtp_bdat_skip(s, s->pend.bdat_size, s->pend.bdat_last);
}

static void smtp_bdat_end(struct smtp_session *);

/* The chunk comes next: its reply waits for its last octet. */
static void
do_bdat(struct smtp_session *s, const struct hook_result *res)
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
static void
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

/* Input ----------------------------------------------------------------- */

static const struct smtp_cmd *
smtp_cmd_lookup(const char *verb)
{
	for (size_t i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++)
		if (strcmp(smtp_cmds[i].verb, verb) == 0)
			return &smtp_cmds[i];
	return NULL;
}

static void
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

/* An AUTH command or a line of its exchange carries credentials: it is
 * handled from a copy, and neither the copy nor the bytes in the input
 * buffer (which stay there until the next read) outlive it. */
static void
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
	/* Lines may reach SMTP_SASL_LINE_MAX only for AUTH and its
	 * responses (RFC 4954 4); others keep the RFC 5321 limit. */
	switch (buf_getline(in, SMTP_SASL_LINE_MAX, &line, &len, &crlf)) {
	case BUF_NEED_MORE:
		if (buf_avail(in) < SMTP_CMD_LINE_MAX || s->sasl.step != SMTP_SASL_IDLE ||
		    strncasecmp(buf_head(in), "AUTH ", 5) == 0)
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
	else if (len + (crlf ? 2 : 1) > SMTP_CMD_LINE_MAX)
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
static void
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

static void
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
static void
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
