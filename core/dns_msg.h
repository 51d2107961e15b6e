/* dns_msg.h - DNS answers as callers see them: a response message (RFC 1035
 * 4.1) parsed into the records of the type asked for, the error classes a
 * policy acts on (permanent or temporary), and the reversed names of PTR
 * and DNSBL lookups. Pure: no sockets, no c-ares, no Lua. */
#ifndef LUAMTA_DNS_MSG_H
#define LUAMTA_DNS_MSG_H

#include <stddef.h>
#include <stdint.h>

/* Record types (RFC 1035 3.2.2, RFC 3596). */
#define DNS_T_A     1
#define DNS_T_NS    2
#define DNS_T_CNAME 5
#define DNS_T_SOA   6
#define DNS_T_PTR   12
#define DNS_T_MX    15
#define DNS_T_TXT   16
#define DNS_T_AAAA  28

#define DNS_NAME_MAX      255           /* wire octets, RFC 1035 2.3.4 */
#define DNS_NAME_TEXT_MAX (4 * 255 + 1) /* every octet escaped as \DDD */
#define DNS_NEG_TTL_MAX   60            /* negative answers, see dns_parse() */
#define DNS_TTL_MAX       86400         /* positive answers are kept at most a day */

enum dns_err {
	DNS_OK = 0,
	DNS_NXDOMAIN, /* permanent: the name does not exist */
	DNS_NODATA,   /* permanent: the name exists without records of the type */
	DNS_SERVFAIL, /* temporary: also a malformed answer or any other failure */
	DNS_TIMEOUT,  /* temporary: no server answered in time */
	DNS_REFUSED,  /* temporary: the server refused, or nothing listens */
};
/* "ok", "nxdomain", "nodata", "servfail", "timeout", "refused". */
const char *dns_err_str(enum dns_err);
/* Whether a retry later may give another answer. */
int dns_err_temporary(enum dns_err);

/* One record. data is owned by the answer and NUL-terminated; len excludes
 * the NUL (a TXT record may hold NUL octets of its own). */
struct dns_rr {
	int type;
	uint32_t ttl;
	int preference; /* MX */
	char *data;     /* A/AAAA: the address as text; MX: the exchange;
			 * NS/CNAME/PTR: the name; TXT: its character-strings joined */
	size_t len;
};

struct dns_answer {
	enum dns_err err;
	uint32_t ttl; /* how long the answer may be cached; 0: not at all */
	size_t nrr;   /* DNS_OK: at least 1 */
	struct dns_rr *rr;
};

/* The supported types by name ("A", "mx": case-insensitive); -1 for others. */
int dns_type_parse(const char *);
/* "A", "MX"... for a supported type, else "?". */
const char *dns_type_str(int type);

/* An answer with no records. NULL when out of memory. */
struct dns_answer *dns_answer_new(enum dns_err);
struct dns_answer *dns_answer_dup(const struct dns_answer *);
/* NULL is a no-op. */
void dns_answer_free(struct dns_answer *);

/* Parses the response msg to the question (qname, qtype). Only records of
 * qtype whose owner is qname, or the end of a CNAME chain that starts at
 * qname, are kept, so an answer padded with others gives nothing away.
 * A name is written as text with the master-file escapes (RFC 1035 5.1:
 * "\." and "\\", \DDD outside printable ASCII), without a final dot.
 * ttl: the smallest TTL on the way (CNAMEs included, at most DNS_TTL_MAX);
 * for NXDOMAIN and NODATA the SOA in the authority section decides
 * (RFC 2308 5: the smaller of its TTL and MINIMUM), at most DNS_NEG_TTL_MAX,
 * and 0 without a SOA. A malformed message is DNS_SERVFAIL. Returns NULL
 * only when out of memory. */
struct dns_answer *dns_parse(const unsigned char *msg, size_t len, const char *qname, int qtype);

/* Whether name can be asked for: 1 to 253 octets in labels of 1 to 63
 * (an optional final dot aside), no NUL. Escapes are taken literally, so
 * this is the bound that counts for plain host names. */
int dns_name_ok(const char *name, size_t len);

/* Writes the reversed form of the numeric address ip under zone into out:
 * "2.0.0.127.zone" for 127.0.0.2, 32 nibbles for IPv6 (RFC 3596 2.5). An
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) is reversed as IPv4. zone NULL
 * picks in-addr.arpa or ip6.arpa. Returns 0, or -1 when ip does not parse
 * or the name would not fit (outsz, or the 253 octets of a name). */
int dns_reverse(const char *ip, const char *zone, char *out, size_t outsz);

/* Parses a numeric address into 4 or 16 octets (an IPv4-mapped address
 * gives its 4). Returns the length, or 0 when it does not parse. */
int dns_addr_parse(const char *ip, unsigned char out[16]);

#endif
