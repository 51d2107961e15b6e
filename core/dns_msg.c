/* dns_msg.c - parsing DNS responses into answers, and reversed names.
 * Every length in a message is checked against its end: the bytes come
 * from whatever answered on the resolver's port. */
#include "dns_msg.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DNS_HDR        12
#define DNS_CLASS_IN   1
#define DNS_CNAME_HOPS 16 /* a longer chain is treated as a failure */

static const char *const dns_err_names[] = {
	[DNS_OK] = "ok",
	[DNS_NXDOMAIN] = "nxdomain",
	[DNS_NODATA] = "nodata",
	[DNS_SERVFAIL] = "servfail",
	[DNS_TIMEOUT] = "timeout",
	[DNS_REFUSED] = "refused",
};

const char *
dns_err_str(enum dns_err e)
{
	if ((unsigned)e < sizeof(dns_err_names) / sizeof(dns_err_names[0]))
		return dns_err_names[e];
	return "?";
}

int
dns_err_temporary(enum dns_err e)
{
	return e == DNS_SERVFAIL || e == DNS_TIMEOUT || e == DNS_REFUSED;
}

static const struct {
	const char *name;
	int type;
} dns_types[] = {
	{ "A", DNS_T_A },
	{ "AAAA", DNS_T_AAAA },
	{ "MX", DNS_T_MX },
	{ "TXT", DNS_T_TXT },
	{ "PTR", DNS_T_PTR },
	{ "CNAME", DNS_T_CNAME },
	{ "NS", DNS_T_NS },
};

int
dns_type_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(dns_types) / sizeof(dns_types[0]); i++)
		if (strcasecmp(s, dns_types[i].name) == 0)
			return dns_types[i].type;
	return -1;
}

const char *
dns_type_str(int type)
{
	for (size_t i = 0; i < sizeof(dns_types) / sizeof(dns_types[0]); i++)
		if (dns_types[i].type == type)
			return dns_types[i].name;
	return "?";
}

struct dns_answer *
dns_answer_new(enum dns_err err)
{
	struct dns_answer *a;

	if ((a = calloc(1, sizeof(*a))) == NULL)
		return NULL;
	a->err = err;
	return a;
}

void
dns_answer_free(struct dns_answer *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->nrr; i++)
		free(a->rr[i].data);
	free(a->rr);
	free(a);
}

/* Appends a record with a copy of len octets of data. */
static int
dns_answer_add(struct dns_answer *a, int type, uint32_t ttl, int pref, const char *data, size_t len)
{
	struct dns_rr *rr;
	char *copy;

	if ((copy = malloc(len + 1)) == NULL)
		return -1;
	memcpy(copy, data, len);
	copy[len] = '\0';
	/* Grows by one: answers hold a handful of records. */
	if ((rr = realloc(a->rr, (a->nrr + 1) * sizeof(*rr))) == NULL) {
		free(copy);
		return -1;
	}
	a->rr = rr;
	rr = &a->rr[a->nrr++];
	rr->type = type;
	rr->ttl = ttl;
	rr->preference = pref;
	rr->data = copy;
	rr->len = len;
	return 0;
}

struct dns_answer *
dns_answer_dup(const struct dns_answer *src)
{
	struct dns_answer *a;

	if ((a = dns_answer_new(src->err)) == NULL)
		return NULL;
	a->ttl = src->ttl;
	for (size_t i = 0; i < src->nrr; i++) {
		const struct dns_rr *r = &src->rr[i];
		if (dns_answer_add(a, r->type, r->ttl, r->preference, r->data, r->len) == -1) {
			dns_answer_free(a);
			return NULL;
		}
	}
	return a;
}

/* Parsing ------------------------------------------------------------- */

struct dns_msg {
	const unsigned char *p;
	size_t len;
};

static unsigned
get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads the name at *off into out (text, see dns_parse()) and moves *off
 * past it. A compression pointer must point before itself, so following
 * pointers always ends (RFC 1035 4.1.4 allows only earlier names). */
static int
msg_name(const struct dns_msg *m, size_t *off, char *out, size_t outsz)
{
	size_t pos = *off, o = 0, wire = 0;
	int jumped = 0;

	for (;;) {
		unsigned c;

		if (pos >= m->len)
			return -1;
		c = m->p[pos];
		if ((c & 0xc0) == 0xc0) {
			size_t target;

			if (pos + 1 >= m->len)
				return -1;
			target = (c & 0x3f) << 8 | m->p[pos + 1];
			if (target >= pos)
				return -1;
			if (!jumped)
				*off = pos + 2;
			jumped = 1;
			pos = target;
			continue;
		}
		if ((c & 0xc0) != 0) /* the extended label types of RFC 6891 */
			return -1;
		pos++;
		if (c == 0)
			break;
		if (pos + c > m->len || (wire += c + 1) > DNS_NAME_MAX)
			return -1;
		if (o > 0)
			out[o++] = '.';
		for (unsigned i = 0; i < c; i++) {
			unsigned char b = m->p[pos + i];

			/* A label needs at most 4 bytes per octet; outsz is
			 * DNS_NAME_TEXT_MAX, which leaves room for it all. */
			if (o + 5 > outsz)
				return -1;
			if (b == '.' || b == '\\') {
				out[o++] = '\\';
				out[o++] = (char)b;
			} else if (b < 0x21 || b > 0x7e)
				o += (size_t)snprintf(out + o, outsz - o, "\\%03u", b);
			else
				out[o++] = (char)b;
		}
		pos += c;
	}
	if (!jumped)
		*off = pos;
	if (o == 0)
		out[o++] = '.';
	out[o] = '\0';
	return 0;
}

/* Skips a name without decoding it. */
static int
msg_skip_name(const struct dns_msg *m, size_t *off)
{
	char buf[DNS_NAME_TEXT_MAX];

	return msg_name(m, off, buf, sizeof(buf));
}

/* One resource record's fixed part, its rdata left at rdoff. */
struct msg_rr {
	char owner[DNS_NAME_TEXT_MAX];
	int type, class;
	uint32_t ttl;
	size_t rdoff, rdlen;
};

static int
msg_rr(const struct dns_msg *m, size_t *off, struct msg_rr *rr)
{
	const unsigned char *p;

	if (msg_name(m, off, rr->owner, sizeof(rr->owner)) == -1 || *off + 10 > m->len)
		return -1;
	p = m->p + *off;
	rr->type = (int)get16(p);
	rr->class = (int)get16(p + 2);
	rr->ttl = get32(p + 4);
	/* RFC 2181 8: a TTL with the top bit set is to be read as zero. */
	if (rr->ttl > 0x7fffffffu)
		rr->ttl = 0;
	rr->rdlen = get16(p + 8);
	rr->rdoff = *off + 10;
	if (rr->rdoff + rr->rdlen > m->len)
		return -1;
	*off = rr->rdoff + rr->rdlen;
	return 0;
}

/* A name inside rdata: it must end within the rdata. */
static int
msg_rdata_name(
    const struct dns_msg *m, const struct msg_rr *rr, size_t off, char *out, size_t outsz)
{
	if (msg_name(m, &off, out, outsz) == -1 || off > rr->rdoff + rr->rdlen)
		return -1;
	return 0;
}

/* The next octet of a name in text form at *p, an escape ("\\DDD" or
 * "\\c") read whole; 256 for an escaped dot (not a separator), -1 at the
 * end. */
static int
name_next(const char **p)
{
	const unsigned char *s = (const unsigned char *)*p;
	int c;

	if (*s == '\0')
		return -1;
	if (*s != '\\' || s[1] == '\0') {
		*p += 1;
		return *s;
	}
	if (isdigit(s[1]) && isdigit(s[2]) && isdigit(s[3])) {
		c = ((s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0')) & 0xff;
		*p += 4;
	} else {
		c = s[1];
		*p += 2;
	}
	return c == '.' ? 256 : c;
}

/* Compares two names in text form, octet by octet whichever way each is
 * escaped (c-ares takes "\\c", dns_parse writes "\\DDD"), ignoring
 * ASCII case and a final dot. */
static int
name_eq(const char *a, const char *b)
{
	for (;;) {
		int ca = name_next(&a), cb = name_next(&b);

		if (ca == '.' && *a == '\0')
			ca = -1;
		if (cb == '.' && *b == '\0')
			cb = -1;
		if (ca >= 'A' && ca <= 'Z')
			ca += 'a' - 'A';
		if (cb >= 'A' && cb <= 'Z')
			cb += 'a' - 'A';
		if (ca != cb)
			return 0;
		if (ca == -1)
			return 1;
	}
}

static uint32_t
ttl_min(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* Adds the record rr (of the type asked for) to a. Returns 0, 1 when the
 * rdata is malformed, -1 when out of memory. */
static int
answer_add_rr(struct dns_answer *a, const struct dns_msg *m, const struct msg_rr *rr)
{
	char text[DNS_NAME_TEXT_MAX];
	const unsigned char *rd = m->p + rr->rdoff;
	int pref = 0;

	switch (rr->type) {
	case DNS_T_A:
	case DNS_T_AAAA:
		if (rr->rdlen != (rr->type == DNS_T_A ? 4u : 16u))
			return 1;
		inet_ntop(rr->type == DNS_T_A ? AF_INET : AF_INET6, rd, text, sizeof(text));
		break;
	case DNS_T_MX:
		if (rr->rdlen < 3)
			return 1;
		pref = (int)get16(rd);
		if (msg_rdata_name(m, rr, rr->rdoff + 2, text, sizeof(text)) == -1)
			return 1;
		break;
	case DNS_T_NS:
	case DNS_T_CNAME:
	case DNS_T_PTR:
		if (msg_rdata_name(m, rr, rr->rdoff, text, sizeof(text)) == -1)
			return 1;
		break;
	case DNS_T_TXT: {
		/* One or more <length><octets> strings, joined as SPF reads
		 * them (RFC 7208 3.3). Some servers send none at all: an
		 * empty text rather than a malformed answer (the OpenSPF
		 * suite's "null-text": the record beside it still counts). */
		char *buf;
		size_t n = 0;
		int rc;

		if (rr->rdlen == 0)
			return dns_answer_add(a, rr->type, rr->ttl, 0, "", 0);
		if ((buf = malloc(rr->rdlen)) == NULL)
			return -1;
		for (size_t i = 0; i < rr->rdlen;) {
			size_t sl = rd[i++];
			if (i + sl > rr->rdlen) {
				free(buf);
				return 1;
			}
			memcpy(buf + n, rd + i, sl);
			n += sl;
			i += sl;
		}
		rc = dns_answer_add(a, rr->type, rr->ttl, 0, buf, n);
		free(buf);
		return rc;
	}
	default:
		return 1;
	}
	return dns_answer_add(a, rr->type, rr->ttl, pref, text, strlen(text));
}

/* The negative TTL from a SOA in the authority section, or 0. */
static uint32_t
msg_neg_ttl(const struct dns_msg *m, size_t off, unsigned nscount)
{
	struct msg_rr rr;

	for (unsigned i = 0; i < nscount; i++) {
		size_t rd;

		if (msg_rr(m, &off, &rr) == -1)
			return 0;
		if (rr.type != DNS_T_SOA || rr.class != DNS_CLASS_IN)
			continue;
		rd = rr.rdoff;
		if (msg_skip_name(m, &rd) == -1 || msg_skip_name(m, &rd) == -1 ||
		    rd + 20 > rr.rdoff + rr.rdlen)
			return 0;
		return ttl_min(ttl_min(rr.ttl, get32(m->p + rd + 16)), DNS_NEG_TTL_MAX);
	}
	return 0;
}

struct dns_answer *
dns_parse(const unsigned char *msg, size_t len, const char *qname, int qtype)
{
	struct dns_msg m = { msg, len };
	struct dns_answer *a;
	struct msg_rr rr;
	char target[DNS_NAME_TEXT_MAX];
	size_t off, an_off;
	unsigned rcode, qdcount, ancount, nscount;
	uint32_t ttl = DNS_TTL_MAX;
	int hops;

	if ((a = dns_answer_new(DNS_SERVFAIL)) == NULL)
		return NULL;
	if (len < DNS_HDR || !(msg[2] & 0x80)) /* not a response */
		return a;
	rcode = msg[3] & 0x0f;
	qdcount = get16(msg + 4);
	ancount = get16(msg + 6);
	nscount = get16(msg + 8);
	off = DNS_HDR;
	for (unsigned i = 0; i < qdcount; i++) {
		if (msg_skip_name(&m, &off) == -1 || off + 4 > len)
			return a;
		off += 4;
	}
	an_off = off;

	/* Follows the CNAME chain from qname, then collects the records of
	 * its end. A chain of CNAMEs is short, so the section is read again
	 * for each hop rather than indexed. */
	if (strlen(qname) >= sizeof(target))
		return a;
	strcpy(target, qname);
	for (hops = 0; qtype != DNS_T_CNAME; hops++) {
		int found = 0;

		off = an_off;
		for (unsigned i = 0; i < ancount && !found; i++) {
			if (msg_rr(&m, &off, &rr) == -1)
				return a;
			if (rr.type != DNS_T_CNAME || rr.class != DNS_CLASS_IN ||
			    !name_eq(rr.owner, target))
				continue;
			if (msg_rdata_name(&m, &rr, rr.rdoff, target, sizeof(target)) == -1)
				return a;
			ttl = ttl_min(ttl, rr.ttl);
			found = 1;
		}
		if (!found)
			break;
		if (hops == DNS_CNAME_HOPS)
			return a;
	}
	off = an_off;
	for (unsigned i = 0; i < ancount; i++) {
		int rc;

		if (msg_rr(&m, &off, &rr) == -1)
			goto malformed;
		if (rr.type != qtype || rr.class != DNS_CLASS_IN || !name_eq(rr.owner, target))
			continue;
		if ((rc = answer_add_rr(a, &m, &rr)) == -1) {
			dns_answer_free(a);
			return NULL;
		}
		if (rc == 1)
			goto malformed;
		ttl = ttl_min(ttl, rr.ttl);
	}

	switch (rcode) {
	case 0:
		a->err = a->nrr > 0 ? DNS_OK : DNS_NODATA;
		break;
	case 3:
		a->err = DNS_NXDOMAIN;
		break;
	case 5:
		a->err = DNS_REFUSED;
		break;
	default:
		a->err = DNS_SERVFAIL;
		break;
	}
	if (a->err == DNS_OK)
		a->ttl = ttl;
	else if (a->err == DNS_NXDOMAIN || a->err == DNS_NODATA)
		a->ttl = msg_neg_ttl(&m, off, nscount);
	if (a->err != DNS_OK)
		goto drop;
	return a;
malformed:
	a->err = DNS_SERVFAIL;
drop:
	/* Records of an answer that failed are not handed out. */
	for (size_t i = 0; i < a->nrr; i++)
		free(a->rr[i].data);
	free(a->rr);
	a->rr = NULL;
	a->nrr = 0;
	return a;
}

/* Names and addresses ------------------------------------------------- */

int
dns_name_ok(const char *name, size_t len)
{
	size_t label = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > 253 || memchr(name, '\0', len) != NULL)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (name[i] != '.') {
			if (++label > 63)
				return 0;
			continue;
		}
		if (label == 0)
			return 0;
		label = 0;
	}
	return label > 0;
}

int
dns_addr_parse(const char *ip, unsigned char out[16])
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	struct in6_addr a6;

	if (inet_pton(AF_INET, ip, out) == 1)
		return 4;
	if (inet_pton(AF_INET6, ip, &a6) != 1)
		return 0;
	if (memcmp(a6.s6_addr, mapped, sizeof(mapped)) == 0) {
		memcpy(out, a6.s6_addr + 12, 4);
		return 4;
	}
	memcpy(out, a6.s6_addr, 16);
	return 16;
}

int
dns_reverse(const char *ip, const char *zone, char *out, size_t outsz)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char a[16];
	char buf[DNS_NAME_MAX + 2];
	size_t n = 0, zl;
	int alen;

	if ((alen = dns_addr_parse(ip, a)) == 0)
		return -1;
	if (zone == NULL)
		zone = alen == 4 ? "in-addr.arpa" : "ip6.arpa";
	zl = strlen(zone);
	if (zl > 0 && zone[zl - 1] == '.')
		zl--;
	if (zl == 0)
		return -1;
	if (alen == 4)
		n = (size_t)snprintf(buf, sizeof(buf), "%u.%u.%u.%u.", a[3], a[2], a[1], a[0]);
	else
		for (int i = 15; i >= 0; i--) {
			buf[n++] = hex[a[i] & 0x0f];
			buf[n++] = '.';
			buf[n++] = hex[a[i] >> 4];
			buf[n++] = '.';
		}
	if (n + zl + 1 > sizeof(buf) || n + zl + 1 > outsz)
		return -1;
	memcpy(buf + n, zone, zl);
	buf[n + zl] = '\0';
	if (!dns_name_ok(buf, n + zl))
		return -1;
	memcpy(out, buf, n + zl + 1);
	return 0;
}
