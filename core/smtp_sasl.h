/* smtp_sasl.h - the server side of an SMTP AUTH exchange (RFC 4954) for the
 * PLAIN (RFC 4616) and LOGIN mechanisms: the mechanism name, strict base64,
 * the challenges and the credentials they yield. It sends nothing, logs
 * nothing and judges no credentials: the caller replies, enforces the line
 * limit, wipes its own copies of the lines, and asks the policy. */
#ifndef LUAMTA_SMTP_SASL_H
#define LUAMTA_SMTP_SASL_H

#include <stddef.h>

#define SMTP_SASL_LINE_MAX 12288 /* RFC 4954 4: AUTH lines and responses */
#define SMTP_SASL_MECH_MAX 20    /* RFC 4422 3.1 */

/* Which response the client's next line carries. */
enum smtp_sasl_step {
	SMTP_SASL_IDLE = 0,   /* no exchange in progress */
	SMTP_SASL_PLAIN,      /* PLAIN's message, after an empty challenge */
	SMTP_SASL_LOGIN_USER, /* LOGIN's user name */
	SMTP_SASL_LOGIN_PASS, /* LOGIN's password; the user name is held */
};
const char *smtp_sasl_step_str(enum smtp_sasl_step);

enum smtp_sasl_status {
	/* Reply 334 with r->text; the next line goes to smtp_sasl_next(). */
	SMTP_SASL_CHALLENGE = 0,
	/* sasl->user and sasl->pass are set; the exchange is over. */
	SMTP_SASL_DONE,
	/* Reply r->code r->enh r->text; the exchange is over, nothing kept. */
	SMTP_SASL_FAIL,
};

/* What to answer. The strings are static. A challenge has code 334, enh
 * NULL and the base64 text; DONE leaves {0, NULL, NULL}, since the reply
 * then depends on what the policy says of the credentials. */
struct smtp_sasl_reply {
	int code;
	const char *enh;
	const char *text;
};

/* Embedded by its user; all zeroes is idle and holds nothing. */
struct smtp_sasl {
	enum smtp_sasl_step step;          /* SMTP_SASL_IDLE outside an exchange */
	char mech[SMTP_SASL_MECH_MAX + 1]; /* upper-cased mechanism name once parsed */
	char *user;                        /* owned, NUL-terminated */
	char *pass;                        /* owned; wiped and freed by smtp_sasl_reset */
};

/* Starts an exchange from AUTH's argument: "MECHANISM [initial-response]"
 * (len bytes, no CRLF, need not be NUL-terminated; any len is safe). Any
 * earlier exchange and its credentials are dropped first. mech is set once
 * the name is well-formed (else "") and kept until the next start, also
 * past FAIL and smtp_sasl_reset, so the caller can log it. On DONE user and
 * pass are owned by sasl: a caller may take either by setting the field to
 * NULL, and then wipes and frees it itself. r must not be NULL; *r is
 * always filled. arg may hold a password in base64: wiping it is the
 * caller's job. */
enum smtp_sasl_status smtp_sasl_start(
    struct smtp_sasl *, const char *arg, size_t len, struct smtp_sasl_reply *);

/* The client's next line during an exchange (len bytes, no CRLF): a base64
 * response, "=" for an empty one, or "*" to cancel. Returns and fills *r
 * like smtp_sasl_start; when no exchange is in progress it is FAIL 503,
 * which like every FAIL leaves no credentials behind. */
enum smtp_sasl_status smtp_sasl_next(
    struct smtp_sasl *, const char *line, size_t len, struct smtp_sasl_reply *);

/* Ends any exchange: wipes (explicit_bzero) and frees user and pass, sets
 * them to NULL and step to SMTP_SASL_IDLE. mech is left as it is.
 * Idempotent; a zeroed struct needs no reset. */
void smtp_sasl_reset(struct smtp_sasl *);

#endif
