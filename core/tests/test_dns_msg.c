/* test_dns_msg.c - DNS responses built byte by byte and what dns_parse()
 * makes of them (records, CNAME chains, rcodes, negative TTLs, compression,
 * malformed input), names that can be asked for, and reversed names for
 * PTR and DNSBL lookups. */

#include <stdint.h>
#include <string.h>

#include "dns_msg.h"
#include "test.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* A message under construction. */
struct mb {
	unsigned char b[4096];
	size_t n;
};

static void
put8(struct mb *m, unsigned v)
{
	m->b[m->n++] = (unsigned char)v;
}

static void
put16(struct mb *m, unsigned v)
{
	put8(m, v >> 8);
	put8(m, v & 0xff);
}

static void
put32(struct mb *m, uint32_t v)
{
	put16(m, v >> 16);
	put16(m, v & 0xffff);
}

/* An uncompressed name from dotted text (no escapes). */
static void
put_name(struct mb *m, const char *name)
{
	while (*name != '\0') {
		const char *dot = strchr(name, '.');
		size_t len = dot != NULL ? (size_t)(dot - name) : strlen(name);

		put8(m, (unsigned)len);
		memcpy(m->b + m->n, name, len);
		m->n += len;
		name += len;
		if (*name == '.')
			name++;
	}
	put8(m, 0);
}

static void
put_ptr(struct mb *m, size_t off)
{
	put16(m, 0xc000 | (unsigned)off);
}

/* Header and one question; flags 0x8180 is a response, RD+RA, NOERROR. */
static void
start(struct mb *m, unsigned rcode, const char *qname, int qtype, unsigned an, unsigned ns)
{
	m->n = 0;
	put16(m, 0x1234);
	put16(m, 0x8180 | rcode);
	put16(m, 1);
	put16(m, an);
	put16(m, ns);
	put16(m, 0);
	put_name(m, qname);
	put16(m, (unsigned)qtype);
	put16(m, 1);
}

/* The fixed part of a record; the caller writes rdlen octets after. */
static void
rr_head(struct mb *m, const char *owner, int type, uint32_t ttl, unsigned rdlen)
{
	put_name(m, owner);
	put16(m, (unsigned)type);
	put16(m, 1);
	put32(m, ttl);
	put16(m, rdlen);
}

static void
rr_a(struct mb *m, const char *owner, uint32_t ttl, unsigned a, unsigned b, unsigned c, unsigned d)
{
	rr_head(m, owner, DNS_T_A, ttl, 4);
	put8(m, a);
	put8(m, b);
	put8(m, c);
	put8(m, d);
}

static void
rr_name(struct mb *m, const char *owner, int type, uint32_t ttl, const char *target)
{
	size_t at;

	rr_head(m, owner, type, ttl, 0);
	at = m->n;
	put_name(m, target);
	m->b[at - 2] = (unsigned char)((m->n - at) >> 8);
	m->b[at - 1] = (unsigned char)((m->n - at) & 0xff);
}

static void
rr_soa(struct mb *m, const char *owner, uint32_t ttl, uint32_t minimum)
{
	size_t at;

	rr_head(m, owner, DNS_T_SOA, ttl, 0);
	at = m->n;
	put_name(m, "ns.example");
	put_name(m, "hostmaster.example");
	put32(m, 1);
	put32(m, 3600);
	put32(m, 600);
	put32(m, 86400);
	put32(m, minimum);
	m->b[at - 2] = (unsigned char)((m->n - at) >> 8);
	m->b[at - 1] = (unsigned char)((m->n - at) & 0xff);
}

static struct dns_answer *
parse(const struct mb *m, const char *qname, int qtype)
{
	struct dns_answer *a = dns_parse(m->b, m->n, qname, qtype);

	CHECK(a != NULL);
	return a;
}

static void
test_a(void)
{
	struct mb m;
	struct dns_answer *a;

	start(&m, 0, "mx.example", DNS_T_A, 3, 0);
	rr_a(&m, "mx.example", 300, 192, 0, 2, 1);
	rr_a(&m, "other.example", 10, 192, 0, 2, 9); /* not asked for: dropped */
	rr_a(&m, "MX.Example", 120, 192, 0, 2, 2);   /* case does not matter */
	a = parse(&m, "mx.example.", DNS_T_A);
	CHECK(a->err == DNS_OK);
	CHECK(a->nrr == 2);
	if (a->nrr == 2) {
		CHECK_STR(a->rr[0].data, "192.0.2.1");
		CHECK(a->rr[0].ttl == 300);
		CHECK_STR(a->rr[1].data, "192.0.2.2");
		CHECK(a->rr[1].len == 9);
	}
	CHECK(a->ttl == 120);
	dns_answer_free(a);

	/* The same records asked as AAAA: none of that type. */
	a = parse(&m, "mx.example", DNS_T_AAAA);
	CHECK(a->err == DNS_NODATA);
	CHECK(a->nrr == 0 && a->ttl == 0);
	dns_answer_free(a);
}

static void
test_aaaa_ptr_ns(void)
{
	struct mb m;
	struct dns_answer *a;
	static const unsigned char v6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0, 1 };

	start(&m, 0, "v6.example", DNS_T_AAAA, 1, 0);
	rr_head(&m, "v6.example", DNS_T_AAAA, 60, 16);
	memcpy(m.b + m.n, v6, 16);
	m.n += 16;
	a = parse(&m, "v6.example", DNS_T_AAAA);
	CHECK(a->err == DNS_OK && a->nrr == 1);
	if (a->nrr == 1)
		CHECK_STR(a->rr[0].data, "2001:db8::1");
	dns_answer_free(a);

	start(&m, 0, "2.0.0.127.in-addr.arpa", DNS_T_PTR, 2, 0);
	rr_name(&m, "2.0.0.127.in-addr.arpa", DNS_T_PTR, 60, "host.example");
	rr_name(&m, "2.0.0.127.in-addr.arpa", DNS_T_PTR, 60, "alias.example");
	a = parse(&m, "2.0.0.127.in-addr.arpa", DNS_T_PTR);
	CHECK(a->err == DNS_OK && a->nrr == 2);
	if (a->nrr == 2) {
		CHECK_STR(a->rr[0].data, "host.example");
		CHECK_STR(a->rr[1].data, "alias.example");
	}
	dns_answer_free(a);

	start(&m, 0, "example", DNS_T_NS, 1, 0);
	rr_name(&m, "example", DNS_T_NS, 60, "ns1.example");
	a = parse(&m, "example", DNS_T_NS);
	CHECK(a->err == DNS_OK && a->nrr == 1 && a->rr[0].type == DNS_T_NS);
	dns_answer_free(a);
}

static void
test_cname(void)
{
	struct mb m;
	struct dns_answer *a;

	/* alias -> mid -> host, records out of order. */
	start(&m, 0, "alias.example", DNS_T_A, 4, 0);
	rr_a(&m, "host.example", 600, 192, 0, 2, 7);
	rr_name(&m, "mid.example", DNS_T_CNAME, 50, "host.example");
	rr_name(&m, "alias.example", DNS_T_CNAME, 3600, "mid.example");
	rr_a(&m, "alias.example", 600, 192, 0, 2, 66); /* beside a CNAME: not followed */
	a = parse(&m, "alias.example", DNS_T_A);
	CHECK(a->err == DNS_OK && a->nrr == 1);
	if (a->nrr == 1)
		CHECK_STR(a->rr[0].data, "192.0.2.7");
	CHECK(a->ttl == 50);
	dns_answer_free(a);

	/* Asked as CNAME: the first link only. */
	a = parse(&m, "alias.example", DNS_T_CNAME);
	CHECK(a->err == DNS_OK && a->nrr == 1);
	if (a->nrr == 1)
		CHECK_STR(a->rr[0].data, "mid.example");
	dns_answer_free(a);

	/* A loop of CNAMEs is a failure, not a hang. */
	start(&m, 0, "a.example", DNS_T_A, 2, 0);
	rr_name(&m, "a.example", DNS_T_CNAME, 60, "b.example");
	rr_name(&m, "b.example", DNS_T_CNAME, 60, "a.example");
	a = parse(&m, "a.example", DNS_T_A);
	CHECK(a->err == DNS_SERVFAIL && a->nrr == 0);
	dns_answer_free(a);
}

static void
test_mx_txt_compression(void)
{
	struct mb m;
	struct dns_answer *a;
	size_t qname_off = 12, at;

	start(&m, 0, "example", DNS_T_MX, 2, 0);
	/* Owner and exchange point back at the question's name. */
	put_ptr(&m, qname_off);
	put16(&m, DNS_T_MX);
	put16(&m, 1);
	put32(&m, 300);
	put16(&m, 2 + 5 + 2);
	put16(&m, 10);
	put8(&m, 4);
	memcpy(m.b + m.n, "mail", 4);
	m.n += 4;
	put_ptr(&m, qname_off);
	put_ptr(&m, qname_off);
	put16(&m, DNS_T_MX);
	put16(&m, 1);
	put32(&m, 300);
	put16(&m, 2 + 2);
	put16(&m, 20);
	put_ptr(&m, qname_off);
	a = parse(&m, "example", DNS_T_MX);
	CHECK(a->err == DNS_OK && a->nrr == 2);
	if (a->nrr == 2) {
		CHECK(a->rr[0].preference == 10);
		CHECK_STR(a->rr[0].data, "mail.example");
		CHECK(a->rr[1].preference == 20);
		CHECK_STR(a->rr[1].data, "example");
	}
	dns_answer_free(a);

	/* TXT: character-strings joined; a NUL octet survives. */
	start(&m, 0, "t.example", DNS_T_TXT, 1, 0);
	rr_head(&m, "t.example", DNS_T_TXT, 60, 0);
	at = m.n;
	put8(&m, 5);
	memcpy(m.b + m.n, "v=spf", 5);
	m.n += 5;
	put8(&m, 0);
	put8(&m, 4);
	memcpy(m.b + m.n, "1 \0x", 4);
	m.n += 4;
	m.b[at - 1] = (unsigned char)(m.n - at);
	a = parse(&m, "t.example", DNS_T_TXT);
	CHECK(a->err == DNS_OK && a->nrr == 1);
	if (a->nrr == 1) {
		CHECK(a->rr[0].len == 9);
		CHECK(memcmp(a->rr[0].data, "v=spf1 \0x", 9) == 0);
	}
	dns_answer_free(a);

	/* A TXT record without strings: an empty text. */
	start(&m, 0, "t.example", DNS_T_TXT, 1, 0);
	rr_head(&m, "t.example", DNS_T_TXT, 60, 0);
	a = parse(&m, "t.example", DNS_T_TXT);
	CHECK(a->err == DNS_OK && a->nrr == 1 && a->rr[0].len == 0);
	dns_answer_free(a);
}

static void
test_negative(void)
{
	static const struct {
		unsigned rcode;
		int soa;
		uint32_t soa_ttl, minimum;
		enum dns_err err;
		uint32_t ttl;
	} cases[] = {
		{ 3, 1, 300, 10, DNS_NXDOMAIN, 10 }, { 3, 1, 5, 3600, DNS_NXDOMAIN, 5 },
		{ 3, 1, 3600, 3600, DNS_NXDOMAIN, DNS_NEG_TTL_MAX },
		{ 3, 0, 0, 0, DNS_NXDOMAIN, 0 }, { 0, 1, 300, 30, DNS_NODATA, 30 },
		{ 0, 0, 0, 0, DNS_NODATA, 0 }, { 2, 1, 300, 30, DNS_SERVFAIL, 0 },
		{ 5, 0, 0, 0, DNS_REFUSED, 0 }, { 4, 0, 0, 0, DNS_SERVFAIL, 0 }, /* NOTIMP */
		{ 1, 0, 0, 0, DNS_SERVFAIL, 0 },                                 /* FORMERR */
	};
	struct mb m;

	for (size_t i = 0; i < NELEM(cases); i++) {
		struct dns_answer *a;

		start(&m, cases[i].rcode, "no.example", DNS_T_A, 0, cases[i].soa);
		if (cases[i].soa)
			rr_soa(&m, "example", cases[i].soa_ttl, cases[i].minimum);
		a = parse(&m, "no.example", DNS_T_A);
		CHECK_MSG(a->err == cases[i].err && a->ttl == cases[i].ttl,
		    "case %zu: err %s ttl %u", i, dns_err_str(a->err), (unsigned)a->ttl);
		CHECK(a->nrr == 0);
		dns_answer_free(a);
	}
}

static void
test_malformed(void)
{
	struct mb m, ok;
	struct dns_answer *a;

	/* Every prefix of a good answer is malformed (or at least not
	 * an answer with records), and none is read past its end. */
	start(&ok, 0, "mx.example", DNS_T_A, 1, 0);
	rr_a(&ok, "mx.example", 300, 192, 0, 2, 1);
	for (size_t n = 0; n < ok.n; n++) {
		a = dns_parse(ok.b, n, "mx.example", DNS_T_A);
		CHECK_MSG(a != NULL && a->err == DNS_SERVFAIL && a->nrr == 0, "prefix %zu", n);
		dns_answer_free(a);
	}

	/* A pointer to itself. */
	start(&m, 0, "x.example", DNS_T_A, 1, 0);
	put_ptr(&m, m.n);
	put16(&m, DNS_T_A);
	a = parse(&m, "x.example", DNS_T_A);
	CHECK(a->err == DNS_SERVFAIL);
	dns_answer_free(a);

	/* A pointer forward. */
	start(&m, 0, "x.example", DNS_T_A, 1, 0);
	put_ptr(&m, m.n + 2);
	put8(&m, 0);
	put16(&m, DNS_T_A);
	put16(&m, 1);
	put32(&m, 1);
	put16(&m, 4);
	put32(&m, 0x7f000001);
	a = parse(&m, "x.example", DNS_T_A);
	CHECK(a->err == DNS_SERVFAIL);
	dns_answer_free(a);

	/* An A record of 3 octets. */
	start(&m, 0, "x.example", DNS_T_A, 1, 0);
	rr_head(&m, "x.example", DNS_T_A, 1, 3);
	put8(&m, 1);
	put8(&m, 2);
	put8(&m, 3);
	a = parse(&m, "x.example", DNS_T_A);
	CHECK(a->err == DNS_SERVFAIL && a->nrr == 0);
	dns_answer_free(a);

	/* A TXT string longer than its record. */
	start(&m, 0, "x.example", DNS_T_TXT, 1, 0);
	rr_head(&m, "x.example", DNS_T_TXT, 1, 3);
	put8(&m, 9);
	put8(&m, 'a');
	put8(&m, 'b');
	a = parse(&m, "x.example", DNS_T_TXT);
	CHECK(a->err == DNS_SERVFAIL);
	dns_answer_free(a);

	/* An MX exchange running out of its rdata. */
	start(&m, 0, "x.example", DNS_T_MX, 1, 0);
	rr_head(&m, "x.example", DNS_T_MX, 1, 4);
	put16(&m, 10);
	put_name(&m, "long.example");
	a = parse(&m, "x.example", DNS_T_MX);
	CHECK(a->err == DNS_SERVFAIL);
	dns_answer_free(a);

	/* A query, not a response. */
	start(&m, 0, "x.example", DNS_T_A, 0, 0);
	m.b[2] &= 0x7f;
	a = parse(&m, "x.example", DNS_T_A);
	CHECK(a->err == DNS_SERVFAIL);
	dns_answer_free(a);

	/* A name longer than 255 octets through pointers. */
	start(&m, 0, "x.example", DNS_T_A, 1, 0);
	{
		size_t prev = 0;
		for (int i = 0; i < 10; i++) {
			size_t here = m.n;
			put8(&m, 30);
			memset(m.b + m.n, 'a', 30);
			m.n += 30;
			if (prev == 0)
				put8(&m, 0);
			else
				put_ptr(&m, prev);
			prev = here;
		}
		rr_head(&m, "x.example", DNS_T_PTR, 1, 2);
		put_ptr(&m, prev);
	}
	a = parse(&m, "x.example", DNS_T_PTR);
	CHECK(a->err == DNS_SERVFAIL);
	dns_answer_free(a);
}

static void
test_escapes(void)
{
	struct mb m;
	struct dns_answer *a;

	/* A label with a dot, a backslash and a space in it. */
	start(&m, 0, "p.example", DNS_T_PTR, 1, 0);
	rr_head(&m, "p.example", DNS_T_PTR, 1, 8 + 9);
	put8(&m, 5);
	memcpy(m.b + m.n, "a.b\\ ", 5);
	m.n += 5;
	put8(&m, 1);
	put8(&m, 0x80);
	put_name(&m, "example");
	a = parse(&m, "p.example", DNS_T_PTR);
	CHECK(a->err == DNS_OK && a->nrr == 1);
	if (a->nrr == 1)
		CHECK_STR(a->rr[0].data, "a\\.b\\\\\\032.\\128.example");
	dns_answer_free(a);
}

static void
test_types(void)
{
	CHECK(dns_type_parse("A") == DNS_T_A);
	CHECK(dns_type_parse("aaaa") == DNS_T_AAAA);
	CHECK(dns_type_parse("Mx") == DNS_T_MX);
	CHECK(dns_type_parse("TXT") == DNS_T_TXT);
	CHECK(dns_type_parse("PTR") == DNS_T_PTR);
	CHECK(dns_type_parse("CNAME") == DNS_T_CNAME);
	CHECK(dns_type_parse("NS") == DNS_T_NS);
	CHECK(dns_type_parse("SOA") == -1);
	CHECK(dns_type_parse("") == -1);
	CHECK_STR(dns_type_str(DNS_T_MX), "MX");
	CHECK_STR(dns_err_str(DNS_NXDOMAIN), "nxdomain");
	CHECK_STR(dns_err_str(DNS_REFUSED), "refused");
	CHECK(!dns_err_temporary(DNS_NODATA) && dns_err_temporary(DNS_TIMEOUT));
}

static void
test_names(void)
{
	char l63[64], l64[65], long254[256];
	static const struct {
		const char *name;
		int ok;
	} cases[] = {
		{ "example", 1 }, { "mx.example.", 1 }, { "", 0 }, { ".", 0 }, { "a..b", 0 },
		{ ".a", 0 }, { "a.b..", 0 },
		{ "[192.0.2.1]", 1 }, /* odd, but a name DNS can carry */
	};

	for (size_t i = 0; i < NELEM(cases); i++)
		CHECK_MSG(dns_name_ok(cases[i].name, strlen(cases[i].name)) == cases[i].ok,
		    "\"%s\"", cases[i].name);
	CHECK(!dns_name_ok("a\0b", 3));
	memset(l63, 'x', 63);
	l63[63] = '\0';
	memset(l64, 'x', 64);
	l64[64] = '\0';
	CHECK(dns_name_ok(l63, 63));
	CHECK(!dns_name_ok(l64, 64));
	for (size_t i = 0; i < 254; i++)
		long254[i] = i % 50 == 49 ? '.' : 'y';
	long254[254] = '\0';
	CHECK(!dns_name_ok(long254, 254));
	CHECK(dns_name_ok(long254, 253));
}

static void
test_reverse(void)
{
	static const struct {
		const char *ip, *zone, *want;
	} cases[] = {
		{ "127.0.0.2", "zen.example", "2.0.0.127.zen.example" },
		{ "192.0.2.1", NULL, "1.2.0.192.in-addr.arpa" },
		{ "192.0.2.1", "bl.example.", "1.2.0.192.bl.example" },
		{ "::ffff:10.1.2.3", "bl.example", "3.2.1.10.bl.example" },
		{ "2001:db8::1", NULL,
		    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa" },
		{ "2001:DB8:0:0:0:0:ab:cdef", "bl.example",
		    "f.e.d.c.b.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example" },
		{ "1.2.3", NULL, NULL },
		{ "1.2.3.256", NULL, NULL },
		{ "example", "bl.example", NULL },
		{ "", NULL, NULL },
		{ "1.2.3.4", "", NULL },
		{ "1.2.3.4", ".", NULL },
		{ "1.2.3.4", "bad..zone", NULL },
	};
	char out[DNS_NAME_TEXT_MAX], zone[300];
	unsigned char a[16];

	for (size_t i = 0; i < NELEM(cases); i++) {
		int rc = dns_reverse(cases[i].ip, cases[i].zone, out, sizeof(out));

		if (cases[i].want == NULL)
			CHECK_MSG(rc == -1, "\"%s\" under \"%s\"", cases[i].ip,
			    cases[i].zone ? cases[i].zone : "-");
		else {
			CHECK_MSG(rc == 0, "\"%s\"", cases[i].ip);
			if (rc == 0)
				CHECK_STR(out, cases[i].want);
		}
	}
	/* An IPv6 name takes 72 octets: a zone of 190 no longer fits. */
	memset(zone, 'z', sizeof(zone));
	for (size_t i = 50; i < 190; i += 50)
		zone[i] = '.';
	zone[190] = '\0';
	CHECK(dns_reverse("2001:db8::1", zone, out, sizeof(out)) == -1);
	CHECK(dns_reverse("192.0.2.1", zone, out, sizeof(out)) == 0);
	/* Too small an output. */
	CHECK(dns_reverse("192.0.2.1", NULL, out, 10) == -1);

	CHECK(dns_addr_parse("192.0.2.1", a) == 4 && a[0] == 192 && a[3] == 1);
	CHECK(dns_addr_parse("::ffff:192.0.2.1", a) == 4 && a[0] == 192);
	CHECK(dns_addr_parse("::1", a) == 16 && a[15] == 1);
	CHECK(dns_addr_parse("x", a) == 0);
}

static void
test_dup(void)
{
	struct mb m;
	struct dns_answer *a, *b;

	start(&m, 0, "mx.example", DNS_T_A, 2, 0);
	rr_a(&m, "mx.example", 300, 192, 0, 2, 1);
	rr_a(&m, "mx.example", 200, 192, 0, 2, 2);
	a = parse(&m, "mx.example", DNS_T_A);
	b = dns_answer_dup(a);
	CHECK(b != NULL && b->nrr == 2 && b->ttl == 200 && b->err == DNS_OK);
	if (b != NULL && b->nrr == 2) {
		CHECK(b->rr[0].data != a->rr[0].data);
		CHECK_STR(b->rr[1].data, "192.0.2.2");
	}
	dns_answer_free(a);
	dns_answer_free(b);
	dns_answer_free(NULL);
}

int
main(void)
{
	test_a();
	test_aaaa_ptr_ns();
	test_cname();
	test_mx_txt_compression();
	test_negative();
	test_malformed();
	test_escapes();
	test_types();
	test_names();
	test_reverse();
	test_dup();
	return test_done("test_dns_msg");
}
