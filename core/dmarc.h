/* dmarc.h - DMARC (RFC 7489) without the network: the policy record, the
 * RFC5322.From domain, the organizational domain (the Public Suffix List
 * through libpsl), identifier alignment, and the result and disposition
 * once the records are known. Pure: no sockets, no Lua; dmarc_lua.c asks
 * DNS and calls these. */
#ifndef LUAMTA_DMARC_H
#define LUAMTA_DMARC_H

#include <stddef.h>

#define DMARC_DOMAIN_MAX 254 /* a domain name's text and its NUL */

enum dmarc_policy {
	DMARC_P_UNSET = 0, /* sp= absent (p= applies) */
	DMARC_P_NONE,
	DMARC_P_QUARANTINE,
	DMARC_P_REJECT,
};

enum dmarc_result {
	DMARC_NONE = 0, /* no policy published */
	DMARC_PASS,
	DMARC_FAIL,
	DMARC_TEMPERROR,
	DMARC_PERMERROR,
};

/* A parsed record (RFC 7489 6.3). Tags other than p and sp that are
 * missing or invalid take their defaults (6.3: "syntax errors in the
 * remainder of the record SHOULD be discarded in favor of default
 * values"); rua, ruf, fo, rf and ri are read, and not acted on. */
struct dmarc_record {
	enum dmarc_policy p, sp;
	int adkim_strict, aspf_strict; /* adkim=s, aspf=s (default r) */
	int pct;                       /* 0 to 100 (default 100) */
	int rua, ruf;                  /* a syntactically valid URI was given */
	char fo[16];                   /* "0" by default */
	unsigned ri;                   /* 86400 by default */
};

enum dmarc_rec_status {
	DMARC_REC_OK = 0,
	DMARC_REC_NOT,     /* not a DMARC record: "v=DMARC1" is not its first tag */
	DMARC_REC_INVALID, /* p missing or invalid (or sp invalid), and no rua to fall back on */
};

/* Parses the TXT record txt (len bytes). A record without a valid p (or
 * with an invalid sp) that names a valid rua is read as p=none, as RFC
 * 7489 6.6.3 asks. */
enum dmarc_rec_status dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *);

enum dmarc_from_status {
	DMARC_FROM_OK = 0,
	DMARC_FROM_SYNTAX,   /* not a mailbox, or a domain that is not a host name */
	DMARC_FROM_MULTIPLE, /* several mailboxes, or a group */
};

/* The domain of the one mailbox in an RFC5322.From value (unfolded or
 * not: CR and LF are blanks here), lower-cased, into out (at least
 * DMARC_DOMAIN_MAX bytes). Display names, comments, quoted local parts and
 * the obsolete phrase with dots are understood; a group, a domain literal
 * and a domain outside the letters, digits, '-' and '_' of host names
 * (an internationalised one not in A-labels) are not DMARC's to judge. */
enum dmarc_from_status dmarc_from_domain(const char *value, size_t len, char *out);

/* Whether d is a domain this module can work with: 1 to 253 octets of
 * labels of 1 to 63 letters, digits, '-' or '_', no final dot. */
int dmarc_domain_ok(const char *d);

/* The organizational domain of the lower-case domain d (RFC 7489 3.2):
 * its public suffix and one label more, by the Public Suffix List; d
 * itself when d is a public suffix. out: DMARC_DOMAIN_MAX bytes. */
void dmarc_org_domain(const char *d, char *out);

/* Whether a (an authenticated domain) is aligned with from (RFC 7489
 * 3.1): the same name in strict mode, the same organizational domain in
 * relaxed mode (case-insensitive either way). */
int dmarc_aligned(const char *from, const char *a, int strict);

/* The verdict for a message whose policy record is rec (NULL: none was
 * found), taken from the organizational domain's name (sub != 0: the
 * From domain is below it, so sp= applies) or the From domain's own.
 * spf_r/spf_s and dkim_r/dkim_s say which identifiers passed and are
 * aligned in relaxed and in strict mode. sample (0 to 99, uniformly
 * random) decides pct= (6.6.4: a failure outside the sample falls one step
 * back, reject to quarantine, quarantine to none). Sets *policy to the
 * policy the record asks for and *disposition to what should be done, and
 * returns the result: pass, fail or none (without a record). */
enum dmarc_result dmarc_evaluate(const struct dmarc_record *rec, int sub, int spf_r, int spf_s,
    int dkim_r, int dkim_s, unsigned sample, enum dmarc_policy *policy,
    enum dmarc_policy *disposition);

/* "none", "pass", "fail", "temperror", "permerror". */
const char *dmarc_result_str(enum dmarc_result);
/* "none", "quarantine", "reject" (DMARC_P_UNSET: "none"). */
const char *dmarc_policy_str(enum dmarc_policy);

#endif
