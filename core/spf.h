/* spf.h - SPF (RFC 7208), sans I/O: the record parser, macro expansion and
 * an evaluator that asks its caller for each DNS answer it needs instead
 * of doing any I/O itself. Pure: no sockets, no c-ares, no Lua.
 *
 * Why our own evaluator: libspf2, the C library Debian packages, resolves
 * names with blocking calls of its own (it would stall the worker's whole
 * loop) and has had remote code execution bugs (CVE-2021-20314,
 * CVE-2021-33912/33913); no packaged SPF library lets the caller do the
 * DNS. spf_lua.c drives this one with dns.h's non-blocking queries.
 *
 * A check: spf_new(), then while spf_next() asks for a query, answer it
 * with spf_feed() (any answer, a timeout or SERVFAIL included); once
 * spf_next() returns 0, spf_result() has the verdict. */
#ifndef LUAMTA_SPF_H
#define LUAMTA_SPF_H

#include <stddef.h>

#include "dns_msg.h"

#define SPF_TERMS_MAX    10   /* DNS-querying terms per check (RFC 7208 4.6.4) */
#define SPF_VOID_MAX     2    /* void lookups per check (4.6.4) */
#define SPF_MX_MAX       10   /* MX names one "mx" may have (4.6.4) */
#define SPF_PTR_MAX      10   /* PTR names "ptr" and %{p} look at (4.6.4) */
#define SPF_QUERIES_MAX  160  /* distinct queries per check: a bound the limits imply */
#define SPF_EXPAND_MAX   4096 /* an expanded domain-spec or explanation */
#define SPF_EXP_TEXT_MAX 1024 /* the explanation kept (longer is cut) */

enum spf_result {
	SPF_NONE = 0,
	SPF_NEUTRAL,
	SPF_PASS,
	SPF_FAIL,
	SPF_SOFTFAIL,
	SPF_TEMPERROR,
	SPF_PERMERROR,
};
/* "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror". */
const char *spf_result_str(enum spf_result);

/* The record parser ---------------------------------------------------- */

enum spf_mech {
	SPF_M_ALL,
	SPF_M_INCLUDE,
	SPF_M_A,
	SPF_M_MX,
	SPF_M_PTR,
	SPF_M_IP4,
	SPF_M_IP6,
	SPF_M_EXISTS
};

/* One directive. spec points into the record text (not NUL-terminated). */
struct spf_term {
	enum spf_mech mech;
	enum spf_result qual; /* SPF_PASS, SPF_FAIL, SPF_SOFTFAIL or SPF_NEUTRAL */
	const char *spec;     /* the domain-spec, or NULL for the current domain */
	size_t speclen;
	int cidr4, cidr6;      /* prefix lengths (ip4/ip6: the one that applies) */
	unsigned char net[16]; /* ip4, ip6 */
};

struct spf_record {
	struct spf_term *terms; /* owned */
	size_t nterms;
	const char *redirect, *exp; /* the modifiers' domain-specs, or NULL */
	size_t redirect_len, exp_len;
};

/* Whether txt (len octets) is an SPF record: "v=spf1" (any case), then a
 * space or its end (4.5). */
int spf_is_record(const char *txt, size_t len);
/* Parses a record whole (4.6): every term checked, macros included, before
 * anything is evaluated. Returns 0, or -1 for a syntax error (permerror)
 * or out of memory, with *why saying which (static text). rec points into
 * txt, which must outlive it. */
int spf_record_parse(const char *txt, size_t len, struct spf_record *rec, const char **why);
void spf_record_free(struct spf_record *);

/* Macros (7) ------------------------------------------------------------ */

/* The values the macro letters stand for, NUL-terminated. p is computed
 * by the evaluator before an expansion that uses it. */
struct spf_macro_vars {
	const char *s, *l, *o, *d, *i, *p, *v, *h, *c, *r, *t;
};

/* Whether the macro-string in (len octets) is well-formed (7.1);
 * explain: the letters c, r and t are allowed (explanation text only). */
int spf_macro_ok(const char *in, size_t len, int explain);
/* Whether it uses %{p} (any case). */
int spf_macro_uses_p(const char *in, size_t len);
/* Expands the macro-string into out (outsz octets, NUL-terminated).
 * domain: a domain-spec, so a final dot is dropped and a name over 253
 * octets loses labels on its left until it fits (7.3). Returns the length,
 * or -1 when the string is malformed or the result does not fit. */
int spf_expand(const struct spf_macro_vars *, const char *in, size_t len, int explain, int domain,
    char *out, size_t outsz);

/* Whether name is a domain check_host() may start from (4.3): labels of 1
 * to 63 octets, at least two of them, at most 253 octets, one final dot
 * allowed. */
int spf_domain_ok(const char *name);

/* The evaluator ---------------------------------------------------------- */

struct spf;

/* A check of ip (numeric; an IPv4-mapped IPv6 address counts as IPv4) for
 * the identity sender, or with sender "" (the null sender) for HELO's
 * identity "postmaster@helo" (2.4, 4.3). receiver: our host name, for the
 * %{r} of explanations; now: the %{t} timestamp. NULL when ip does not
 * parse or out of memory. */
struct spf *spf_new(
    const char *ip, const char *helo, const char *sender, const char *receiver, long long now);
void spf_free(struct spf *);

struct spf_query {
	const char *name; /* valid until the next spf_feed/spf_free */
	int qtype;        /* DNS_T_TXT, A, AAAA, MX or PTR */
};
/* Runs the check as far as the answers so far allow. Returns 1 with q set
 * when it needs that answer (give it to spf_feed before calling again), 0
 * when the result is known. */
int spf_next(struct spf *, struct spf_query *q);
/* The answer to the query spf_next() asked for (copied). Returns 0, or -1
 * when out of memory: the check then ends in temperror. */
int spf_feed(struct spf *, const struct dns_answer *);
/* After spf_next() returned 0: the result, and (for fail only) the
 * explanation of the domain's exp= (7, 6.2), else NULL; both owned by the
 * check. why: a few words on a permerror or temperror, else "". */
enum spf_result spf_result(const struct spf *, const char **explanation, const char **why);
/* Queries asked so far (for tests and the fuzzer's bound). */
size_t spf_queries(const struct spf *);

#endif
