/* smtp_verbs.c - the one command table, and the check and proceed steps
 * of the verbs that build the envelope and the session: HELO, EHLO and
 * LHLO (with the keywords we offer), MAIL and RCPT with their parameters
 * (SIZE, BODY, SMTPUTF8, AUTH, DSN's), RSET, NOOP, QUIT, VRFY, HELP,
 * unknown and custom verbs, the greeting, and Postfix's XCLIENT. */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hook_api.h"
#include "log.h"
#include "script.h"
#include "smtp_parse.h"
#include "smtp_reply.h"
#include "smtp_session_int.h"
#include "smtp_xclient.h"

/* Checks ---------------------------------------------------------------- */

int
smtp_check_noarg(struct smtp_session *s, const char *arg, size_t len)
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
	char path[SMTP_PATH_MAX + 1], copy[SMTP_ENVELOPE_LINE_MAX];
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
	char path[SMTP_PATH_MAX + 1], copy[SMTP_ENVELOPE_LINE_MAX];
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
int
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
void
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

void
smtp_rejected_close(struct smtp_session *s)
{
	smtp_session_close(s, "rejected");
}

/* XCLIENT (Postfix's extension) --------------------------------------- */

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
	{ "DATA", S(ST_RCPT),             HOOK_DATA,    smtp_check_data,   smtp_do_data,    smtp_rejected_data,
	  554, "5.5.1", "Rejected" },
	/* Every state, for smtp_check_bdat to read the chunk a refusal skips. */
	{ "BDAT", ST_SESSION,             HOOK_DATA,    smtp_check_bdat,   smtp_do_bdat,    smtp_rejected_bdat,
	  554, "5.5.1", "Rejected" },
	{ "RSET", ST_SESSION,             HOOK_RSET,    smtp_check_noarg,  do_rset,    NULL,
	  550, "5.7.1", "Rejected" },
	{ "NOOP", ST_SESSION,             HOOK__COUNT,  check_anyarg, do_ok,    NULL,
	  0, NULL, NULL },
	{ "QUIT", ST_SESSION,             HOOK_QUIT,    smtp_check_noarg,  do_quit,    smtp_rejected_close,
	  221, "2.0.0", "Bye" },
	{ "VRFY", ST_SESSION,             HOOK_VRFY,    check_vrfy,   do_vrfy,    NULL,
	  550, "5.1.1", "Rejected" },
	{ "AUTH", S(ST_READY),            HOOK_AUTH,    smtp_check_auth,   smtp_do_auth,    smtp_rejected_auth,
	  535, "5.7.8", "Authentication credentials invalid" },
	{ "STARTTLS", S(ST_GREETED) | S(ST_READY), HOOK_STARTTLS, smtp_check_starttls, smtp_do_starttls, NULL,
	  454, "4.7.0", "TLS not available" },
	{ "HELP", ST_SESSION,             HOOK__COUNT,  check_anyarg, do_help,    NULL,
	  0, NULL, NULL },
	{ "XCLIENT", S(ST_GREETED) | S(ST_READY), HOOK__COUNT, check_xclient, do_xclient, NULL,
	  0, NULL, NULL },
};
const struct smtp_cmd smtp_cmd_unknown =
	{ NULL, ST_SESSION, HOOK_UNKNOWN, check_anyarg, do_unknown, NULL,
	  500, "5.5.2", "Error: command not recognized" };
const struct smtp_cmd smtp_cmd_verb =
	{ NULL, ST_SESSION, HOOK_VERB, check_anyarg, do_ok, NULL,
	  550, "5.7.1", "Rejected" };
const struct smtp_cmd smtp_cmd_connect =
	{ NULL, S(ST_CONNECTED), HOOK_CONNECT, NULL, do_connect, smtp_rejected_close,
	  554, "5.7.1", "Connection rejected" };
/* The chunks after a transaction's first BDAT: on_data ran already. */
const struct smtp_cmd smtp_cmd_bdat_next =
	{ NULL, S(ST_BDAT), HOOK__COUNT, NULL, smtp_do_bdat, NULL,
	  0, NULL, NULL };
const struct smtp_cmd smtp_cmd_message =
	{ NULL, S(ST_DATA) | S(ST_BDAT), HOOK_MESSAGE, NULL, smtp_do_message, smtp_rejected_message,
	  554, "5.7.1", "Message rejected" };
/* clang-format on */

const struct smtp_cmd *
smtp_cmd_lookup(const char *verb)
{
	for (size_t i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++)
		if (strcmp(smtp_cmds[i].verb, verb) == 0)
			return &smtp_cmds[i];
	return NULL;
}
