/* smtp_sasl.c - SMTP AUTH's PLAIN and LOGIN exchanges (RFC 4954, RFC 4616)
 * as a small state machine over whole lines. Responses are decoded into a
 * fixed stack buffer, which is wiped before every return: a password never
 * outlives the call except in the owned user/pass fields. Sending replies,
 * the line limit and judging the credentials are left to the caller. */

#include "smtp_sasl.h"

#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>

/* The largest decoded response: a line the caller accepts is at most
 * SMTP_SASL_LINE_MAX bytes of base64, and 4 of those decode to 3. */
#define SASL_DECODED_MAX (SMTP_SASL_LINE_MAX / 4 * 3)

#define SASL_PROMPT_USER "VXNlcm5hbWU6" /* "Username:" */
#define SASL_PROMPT_PASS "UGFzc3dvcmQ6" /* "Password:" */

const char *
smtp_sasl_step_str(enum smtp_sasl_step step)
{
	switch (step) {
	case SMTP_SASL_IDLE:
		return "idle";
	case SMTP_SASL_PLAIN:
		return "plain";
	case SMTP_SASL_LOGIN_USER:
		return "login_user";
	case SMTP_SASL_LOGIN_PASS:
		return "login_pass";
	}
	return "unknown";
}

void
smtp_sasl_reset(struct smtp_sasl *sasl)
{
	/* Neither field can hold a NUL before its end (the parsers refuse
	 * them), so strlen covers every byte of the allocation. */
	if (sasl->user != NULL) {
		explicit_bzero(sasl->user, strlen(sasl->user));
		free(sasl->user);
		sasl->user = NULL;
	}
	if (sasl->pass != NULL) {
		explicit_bzero(sasl->pass, strlen(sasl->pass));
		free(sasl->pass);
		sasl->pass = NULL;
	}
	sasl->step = SMTP_SASL_IDLE;
}

static enum smtp_sasl_status
sasl_fail(
    struct smtp_sasl *sasl, struct smtp_sasl_reply *r, int code, const char *enh, const char *text)
{
	smtp_sasl_reset(sasl);
	r->code = code;
	r->enh = enh;
	r->text = text;
	return SMTP_SASL_FAIL;
}

static enum smtp_sasl_status
sasl_challenge(
    struct smtp_sasl *sasl, struct smtp_sasl_reply *r, enum smtp_sasl_step step, const char *text)
{
	sasl->step = step;
	r->code = 334;
	r->enh = NULL;
	r->text = text;
	return SMTP_SASL_CHALLENGE;
}

static enum smtp_sasl_status
sasl_done(struct smtp_sasl *sasl, struct smtp_sasl_reply *r)
{
	sasl->step = SMTP_SASL_IDLE;
	r->code = 0;
	r->enh = NULL;
	r->text = NULL;
	return SMTP_SASL_DONE;
}

static enum smtp_sasl_status
sasl_nomem(struct smtp_sasl *sasl, struct smtp_sasl_reply *r)
{
	return sasl_fail(sasl, r, 451, "4.3.0", "Error: out of memory");
}

static enum smtp_sasl_status
sasl_bad_base64(struct smtp_sasl *sasl, struct smtp_sasl_reply *r)
{
	return sasl_fail(sasl, r, 501, "5.5.2", "Error: invalid base64 data");
}

/* A NUL-terminated copy of n bytes that hold no NUL, or NULL. */
static char *
sasl_dup(const char *s, size_t n)
{
	char *p;

	if ((p = malloc(n + 1)) == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static int
sasl_b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	    c == '+' || c == '/';
}

/* Decodes one response into out (SASL_DECODED_MAX + 1 bytes) and
 * NUL-terminates it. Returns 0 and sets *n, or -1 when the input is not
 * strict base64 or would not fit. */
static int
sasl_decode(const char *in, size_t len, char *out, size_t *n)
{
	size_t pad, i;

	*n = 0;
	/* RFC 4954 4: "=" alone is an empty response. */
	if (len == 1 && in[0] == '=') {
		out[0] = '\0';
		return 0;
	}
	/* Strict RFC 4648 4: whole quanta, the alphabet only, and "=" only as
	 * the last one or two characters. mbedTLS alone would skip spaces and
	 * line breaks. The size test comes first, so that a long input costs
	 * nothing more. */
	if (len == 0 || len % 4 != 0 || len / 4 * 3 > SASL_DECODED_MAX)
		return -1;
	pad = in[len - 1] != '=' ? 0 : in[len - 2] != '=' ? 1 : 2;
	for (i = 0; i < len - pad; i++)
		if (!sasl_b64_char(in[i]))
			return -1;
	if (mbedtls_base64_decode(
		(unsigned char *)out, SASL_DECODED_MAX, n, (const unsigned char *)in, len) != 0) {
		*n = 0;
		return -1;
	}
	out[*n] = '\0';
	return 0;
}

/* A decoded PLAIN message (RFC 4616 2): "authzid NUL authcid NUL passwd",
 * NUL-terminated at msg[len]. */
static enum smtp_sasl_status
sasl_plain(struct smtp_sasl *sasl, const char *msg, size_t len, struct smtp_sasl_reply *r)
{
	const char *nul1, *nul2, *authcid, *passwd, *end = msg + len;

	if ((nul1 = memchr(msg, '\0', len)) == NULL ||
	    (nul2 = memchr(nul1 + 1, '\0', (size_t)(end - (nul1 + 1)))) == NULL ||
	    memchr(nul2 + 1, '\0', (size_t)(end - (nul2 + 1))) != NULL)
		return sasl_fail(sasl, r, 501, "5.5.2", "Error: malformed PLAIN response");
	authcid = nul1 + 1;
	passwd = nul2 + 1;
	/* Acting as another identity would need a policy of its own: only
	 * an authorization identity equal to the user itself is allowed. */
	if (nul1 != msg && strcmp(msg, authcid) != 0)
		return sasl_fail(
		    sasl, r, 535, "5.7.8", "Error: authorization identity not allowed");
	if (*authcid == '\0')
		return sasl_fail(sasl, r, 501, "5.5.2", "Error: empty user name");
	if ((sasl->user = sasl_dup(authcid, (size_t)(nul2 - authcid))) == NULL ||
	    (sasl->pass = sasl_dup(passwd, (size_t)(end - passwd))) == NULL)
		return sasl_nomem(sasl, r);
	return sasl_done(sasl, r);
}

/* LOGIN's decoded user name, from the initial response or a line. */
static enum smtp_sasl_status
sasl_login_user(struct smtp_sasl *sasl, const char *msg, size_t len, struct smtp_sasl_reply *r)
{
	if (len == 0 || memchr(msg, '\0', len) != NULL)
		return sasl_fail(sasl, r, 501, "5.5.2", "Error: bad user name");
	if ((sasl->user = sasl_dup(msg, len)) == NULL)
		return sasl_nomem(sasl, r);
	return sasl_challenge(sasl, r, SMTP_SASL_LOGIN_PASS, SASL_PROMPT_PASS);
}

/* LOGIN's decoded password; an empty one is the policy's to judge. */
static enum smtp_sasl_status
sasl_login_pass(struct smtp_sasl *sasl, const char *msg, size_t len, struct smtp_sasl_reply *r)
{
	if (memchr(msg, '\0', len) != NULL)
		return sasl_fail(sasl, r, 501, "5.5.2", "Error: bad password");
	if ((sasl->pass = sasl_dup(msg, len)) == NULL)
		return sasl_nomem(sasl, r);
	return sasl_done(sasl, r);
}

enum smtp_sasl_status
smtp_sasl_start(struct smtp_sasl *sasl, const char *arg, size_t len, struct smtp_sasl_reply *r)
{
	char mech[SMTP_SASL_MECH_MAX + 1], buf[SASL_DECODED_MAX + 1];
	const char *sp = len > 0 ? memchr(arg, ' ', len) : NULL;
	size_t ml = sp != NULL ? (size_t)(sp - arg) : len, n, i;
	enum smtp_sasl_status st;
	int plain;

	smtp_sasl_reset(sasl);
	sasl->mech[0] = '\0';
	if (ml == 0 || ml > SMTP_SASL_MECH_MAX)
		goto syntax;
	/* RFC 4422 3.1: upper-case letters, digits, "-" and "_"; names are
	 * matched case-insensitively, as clients send them either way. */
	for (i = 0; i < ml; i++) {
		char c = arg[i];

		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			goto syntax;
		mech[i] = c;
	}
	mech[ml] = '\0';
	memcpy(sasl->mech, mech, ml + 1);
	if (strcmp(mech, "PLAIN") == 0)
		plain = 1;
	else if (strcmp(mech, "LOGIN") == 0)
		plain = 0;
	else
		return sasl_fail(
		    sasl, r, 504, "5.5.4", "Error: unsupported authentication mechanism");
	if (sp == NULL) {
		if (plain)
			return sasl_challenge(sasl, r, SMTP_SASL_PLAIN, "");
		return sasl_challenge(sasl, r, SMTP_SASL_LOGIN_USER, SASL_PROMPT_USER);
	}
	/* An initial response (RFC 4954 4) is PLAIN's whole message, or the
	 * LOGIN user name. "*" here is no cancel: it is bad base64. */
	if (sasl_decode(sp + 1, len - ml - 1, buf, &n) == -1)
		st = sasl_bad_base64(sasl, r);
	else if (plain)
		st = sasl_plain(sasl, buf, n, r);
	else
		st = sasl_login_user(sasl, buf, n, r);
	explicit_bzero(buf, sizeof(buf));
	return st;
syntax:
	return sasl_fail(sasl, r, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
}

enum smtp_sasl_status
smtp_sasl_next(struct smtp_sasl *sasl, const char *line, size_t len, struct smtp_sasl_reply *r)
{
	char buf[SASL_DECODED_MAX + 1];
	enum smtp_sasl_status st;
	size_t n;

	if (sasl->step == SMTP_SASL_IDLE)
		return sasl_fail(sasl, r, 503, "5.5.1", "Error: no authentication exchange");
	if (len == 1 && line[0] == '*')
		return sasl_fail(sasl, r, 501, "5.7.0", "Authentication aborted");
	if (sasl_decode(line, len, buf, &n) == -1)
		st = sasl_bad_base64(sasl, r);
	else if (sasl->step == SMTP_SASL_PLAIN)
		st = sasl_plain(sasl, buf, n, r);
	else if (sasl->step == SMTP_SASL_LOGIN_USER)
		st = sasl_login_user(sasl, buf, n, r);
	else if (sasl->step == SMTP_SASL_LOGIN_PASS)
		st = sasl_login_pass(sasl, buf, n, r);
	else
		st = sasl_fail(sasl, r, 503, "5.5.1", "Error: no authentication exchange");
	explicit_bzero(buf, sizeof(buf));
	return st;
}
