/* dsn_param.h - RFC 3461's ESMTP parameters: RET and ENVID on MAIL,
 * NOTIFY and ORCPT on RCPT, checked and decoded (their xtext through
 * xtext.h), and written back for a next hop that offers DSN. Pure: no
 * allocation, no I/O. */
#ifndef LUAMTA_DSN_PARAM_H
#define LUAMTA_DSN_PARAM_H

#include <stddef.h>

/* NOTIFY's words as bits. 0 stands for no NOTIFY at all, which RFC 3461
 * 4.1 lets us read as FAILURE (luamta sends no delay warnings). */
#define DSN_NOTIFY_NEVER   0x01u
#define DSN_NOTIFY_SUCCESS 0x02u
#define DSN_NOTIFY_FAILURE 0x04u
#define DSN_NOTIFY_DELAY   0x08u

enum dsn_ret {
	DSN_RET_UNSET = 0, /* no RET: the whole message, as FULL */
	DSN_RET_FULL,
	DSN_RET_HDRS, /* a failure report quotes the header only */
};

#define DSN_ENVID_MAX 100 /* RFC 3461 4.4: ENVID's value, as sent */
#define DSN_ORCPT_MAX 500 /* RFC 3461 4.2: ORCPT's value, as sent */

/* RET=FULL or RET=HDRS (any case): DSN_RET_FULL or DSN_RET_HDRS; -1. */
int dsn_param_ret(const char *v);
/* "FULL", "HDRS", or NULL for DSN_RET_UNSET. */
const char *dsn_param_ret_str(int ret);

/* NOTIFY=NEVER alone, or a comma list of SUCCESS, FAILURE and DELAY (any
 * case, each once). 0 with the bits in *out, or -1. */
int dsn_param_notify(const char *v, unsigned *out);
/* The bits as NOTIFY's value ("SUCCESS,FAILURE", "NEVER"; "" for 0) into
 * out (32 bytes are always enough). */
void dsn_param_notify_str(unsigned notify, char *out, size_t outsz);

/* ENVID=xtext: at most DSN_ENVID_MAX characters, decoded to printable
 * ASCII without spaces. 0 with the decoded value in out (outsz >
 * DSN_ENVID_MAX), or -1. */
int dsn_param_envid(const char *v, char *out, size_t outsz);

/* ORCPT=addr-type;xtext: at most DSN_ORCPT_MAX characters, addr-type
 * letters, digits and '-' (kept as sent, "rfc822" or any other), the
 * address decoded to printable ASCII (spaces allowed: a quoted local
 * part). 0 with "addr-type;decoded" in out (outsz > DSN_ORCPT_MAX), or
 * -1. */
int dsn_param_orcpt(const char *v, char *out, size_t outsz);
/* The reverse: "addr-type;decoded" back to ORCPT's value, the address
 * xtext-encoded. 0, or -1 when it does not fit or has no ';'. */
int dsn_param_orcpt_encode(const char *orcpt, char *out, size_t outsz);

/* What one MAIL or RCPT said, decoded. */
struct dsn_params {
	int ret;                       /* MAIL: enum dsn_ret */
	char envid[DSN_ENVID_MAX + 1]; /* MAIL: "" when none */
	unsigned notify;               /* RCPT: DSN_NOTIFY_* bits; 0 when none */
	char orcpt[DSN_ORCPT_MAX + 1]; /* RCPT: "addr-type;address", "" when none */
	unsigned seen;                 /* which keywords came: a repeat is refused */
};

/* Takes one ESMTP parameter of MAIL (RET, ENVID; is_mail set) or RCPT
 * (NOTIFY, ORCPT) into p (zeroed before the command's first): 1 when it
 * is one of them and valid, 0 when it is none of them (the caller
 * decides), -1 when it is malformed or repeated, with the reason in *why
 * (for a 501 5.5.4). */
int dsn_param_take(
    struct dsn_params *p, const char *key, const char *value, int is_mail, const char **why);

#endif
