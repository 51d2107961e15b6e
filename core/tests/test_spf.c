/* test_spf.c - spf.h without a network: the record parser, macros, and
 * whole checks driven from a zone in this file (spf_next asks, the zone
 * answers through spf_feed). The OpenSPF suite runs against the server in
 * spec/integration/spf_spec.lua; these are the cases worth a fast test. */
#include <stdlib.h>
#include <string.h>

#include "spf.h"
#include "test.h"

/* The zone: records by name and type; err entries make that (name,
 * type) fail with the error; a name absent is NXDOMAIN, a name present
 * without the type is NODATA. */
struct rr {
	const char *name;
	int type;
	const char *data;
	enum dns_err err;
};

static const struct rr zone[] = {
	{ "example.com", DNS_T_TXT, "v=spf1 a mx -all", 0 },
	{ "example.com", DNS_T_TXT, "google-site-verification=xyz", 0 },
	{ "example.com", DNS_T_A, "192.0.2.10", 0 },
	{ "example.com", DNS_T_MX, "mx.example.com", 0 },
	{ "mx.example.com", DNS_T_A, "192.0.2.20", 0 },
	{ "mx.example.com", DNS_T_AAAA, "2001:db8::20", 0 },
	{ "exp.example.com", DNS_T_TXT, "v=spf1 -all exp=why.example.com", 0 },
	{ "why.example.com", DNS_T_TXT, "%{i} may not send for %{d} (%{l}, %{o}, %{h}, %{v})", 0 },
	{ "inc.example.com", DNS_T_TXT, "v=spf1 include:example.com ~all", 0 },
	{ "incnone.example.com", DNS_T_TXT, "v=spf1 include:nothing.example.com", 0 },
	{ "red.example.com", DNS_T_TXT, "v=spf1 redirect=example.com", 0 },
	{ "two.example.com", DNS_T_TXT, "v=spf1 -all", 0 },
	{ "two.example.com", DNS_T_TXT, "v=spf1 +all", 0 },
	{ "temp.example.com", DNS_T_TXT, NULL, DNS_SERVFAIL },
	{ "atemp.example.com", DNS_T_TXT, "v=spf1 a:temp.example.com -all", 0 },
	{ "temp.example.com", DNS_T_A, NULL, DNS_TIMEOUT },
	{ "voids.example.com", DNS_T_TXT,
	    "v=spf1 a:n1.example.com a:n2.example.com a:n3.example.com +all", 0 },
	{ "loop.example.com", DNS_T_TXT, "v=spf1 include:loop.example.com -all", 0 },
	{ "many.example.com", DNS_T_TXT, "v=spf1 a a a a a a a a a a a -all", 0 },
	{ "many.example.com", DNS_T_A, "192.0.2.99", 0 },
	{ "ptr.example.com", DNS_T_TXT, "v=spf1 ptr -all", 0 },
	{ "10.2.0.192.in-addr.arpa", DNS_T_PTR, "host.ptr.example.com", 0 },
	{ "host.ptr.example.com", DNS_T_A, "192.0.2.10", 0 },
	{ "pexp.example.com", DNS_T_TXT, "v=spf1 -all exp=pwhy.example.com", 0 },
	{ "pwhy.example.com", DNS_T_TXT, "from %{p}", 0 },
	{ "six.example.com", DNS_T_TXT, "v=spf1 ip6:2001:db8::/32 ip4:192.0.2.0/24 -all", 0 },
	{ "cidr.example.com", DNS_T_TXT, "v=spf1 a:example.com/24 -all", 0 },
	{ "exists.example.com", DNS_T_TXT, "v=spf1 exists:%{ir}.%{l1r-}.x.example.com -all", 0 },
	{ "10.2.0.192.bob.x.example.com", DNS_T_A, "127.0.0.2", 0 },
};

static void
answer(const char *name, int type, struct dns_answer *a, struct dns_rr *rrs, size_t max)
{
	int seen = 0;

	memset(a, 0, sizeof(*a));
	a->rr = rrs;
	for (size_t i = 0; i < sizeof(zone) / sizeof(zone[0]); i++) {
		if (strcasecmp(zone[i].name, name) != 0)
			continue;
		seen = 1;
		if (zone[i].type != type)
			continue;
		if (zone[i].err != DNS_OK) {
			a->err = zone[i].err;
			a->nrr = 0;
			return;
		}
		if (a->nrr < max) {
			memset(&rrs[a->nrr], 0, sizeof(rrs[0]));
			rrs[a->nrr].type = type;
			rrs[a->nrr].data = (char *)zone[i].data;
			rrs[a->nrr].len = strlen(zone[i].data);
			a->nrr++;
		}
	}
	a->err = a->nrr > 0 ? DNS_OK : seen ? DNS_NODATA : DNS_NXDOMAIN;
}

/* Runs a check against the zone; returns the result, the explanation in
 * exp (or ""), and how many queries it asked in *nq. */
static enum spf_result
run(const char *ip, const char *helo, const char *sender, char *exp, size_t *nq)
{
	struct spf *s = spf_new(ip, helo, sender, "mx.receiver.test", 1700000000);
	struct spf_query q;
	const char *e;
	enum spf_result r;
	int steps = 0;

	CHECK(s != NULL);
	if (s == NULL)
		return SPF_PERMERROR;
	while (spf_next(s, &q) == 1 && steps++ < 1000) {
		struct dns_answer a;
		struct dns_rr rrs[16];

		answer(q.name, q.qtype, &a, rrs, 16);
		CHECK(spf_feed(s, &a) == 0);
	}
	r = spf_result(s, &e, NULL);
	snprintf(exp, 256, "%s", e != NULL ? e : "");
	if (nq != NULL)
		*nq = spf_queries(s);
	spf_free(s);
	return r;
}

static void
test_eval(void)
{
	static const struct {
		const char *ip, *sender, *want, *exp;
	} cases[] = {
		{ "192.0.2.10", "bob@example.com", "pass", "" },
		{ "192.0.2.20", "bob@example.com", "pass", "" },
		{ "2001:db8::20", "bob@example.com", "pass", "" },
		{ "::ffff:192.0.2.20", "bob@example.com", "pass", "" },
		{ "192.0.2.30", "bob@example.com", "fail", "" },
		{ "192.0.2.30", "bob@exp.example.com", "fail",
		    "192.0.2.30 may not send for exp.example.com (bob, exp.example.com, "
		    "helo.test, in-addr)" },
		{ "192.0.2.10", "bob@inc.example.com", "pass", "" },
		{ "192.0.2.30", "bob@inc.example.com", "softfail", "" },
		{ "192.0.2.30", "bob@incnone.example.com", "permerror", "" },
		{ "192.0.2.20", "bob@red.example.com", "pass", "" },
		{ "192.0.2.20", "bob@two.example.com", "permerror", "" },
		{ "192.0.2.20", "bob@temp.example.com", "temperror", "" },
		{ "192.0.2.20", "bob@atemp.example.com", "temperror", "" },
		{ "192.0.2.20", "bob@voids.example.com", "permerror", "" },
		{ "192.0.2.20", "bob@loop.example.com", "permerror", "" },
		{ "192.0.2.20", "bob@many.example.com", "permerror", "" },
		{ "192.0.2.99", "bob@many.example.com", "pass", "" },
		{ "192.0.2.10", "bob@ptr.example.com", "pass", "" },
		{ "192.0.2.11", "bob@ptr.example.com", "fail", "" },
		{ "192.0.2.10", "bob@pexp.example.com", "fail", "from host.ptr.example.com" },
		{ "192.0.2.11", "bob@pexp.example.com", "fail", "from unknown" },
		{ "2001:db8:1::1", "bob@six.example.com", "pass", "" },
		{ "2001:db9::1", "bob@six.example.com", "fail", "" },
		{ "192.0.2.250", "bob@cidr.example.com", "pass", "" },
		{ "192.0.3.1", "bob@cidr.example.com", "fail", "" },
		{ "192.0.2.10", "bob@exists.example.com", "pass", "" },
		{ "192.0.2.10", "alice@exists.example.com", "fail", "" },
		{ "192.0.2.10", "bob@nothing.example.com", "none", "" },
		{ "192.0.2.10", "bob@localhost", "none", "" },
		{ "192.0.2.10", "bob@[192.0.2.10]", "none", "" },
		/* the null sender: HELO's identity */
		{ "192.0.2.10", "", "none", "" },
	};
	char exp[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum spf_result r = run(cases[i].ip, "helo.test", cases[i].sender, exp, NULL);
		CHECK_MSG(strcmp(spf_result_str(r), cases[i].want) == 0, "%s from %s: %s, want %s",
		    cases[i].sender, cases[i].ip, spf_result_str(r), cases[i].want);
		CHECK_MSG(
		    strcmp(exp, cases[i].exp) == 0, "%s: explanation \"%s\"", cases[i].sender, exp);
	}
	CHECK_STR(spf_result_str(run("192.0.2.10", "example.com", "", exp, NULL)), "pass");
	CHECK(spf_new("not-an-ip", "h", "s@d", NULL, 0) == NULL);
}

static void
test_parse(void)
{
	static const struct {
		const char *rec;
		int ok;
	} cases[] = {
		{ "v=spf1", 1 },
		{ "v=spf1 ", 1 },
		{ "V=SPF1 -ALL", 1 },
		{ "v=spf1  a  mx   -all  ", 1 },
		{ "v=spf1 a/24//64 mx:%{d}/27 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all", 1 },
		{ "v=spf1 mx:%%%_/.Clara.de/27", 1 },
		{ "v=spf1 exists:%{i}.%{s1}.100/86400.rate.%{d}", 1 },
		{ "v=spf1 a:mail.example.com. -all", 1 },
		{ "v=spf1 foo=bar moo.cow-x_y=%{d}", 1 },
		{ "v=spf1 redirect=_spf.example.com", 1 },
		{ "v=spf1 ptr ptr:example.com", 1 },
		{ "v=spf1 ip4:0.0.0.0/0", 1 },
		{ "v=spf1 ip6:::/0", 1 },
		{ "v=spf1 a//0", 1 },
		{ "v=spf10", 0 },
		{ "v=spf1 moo", 0 },
		{ "v=spf1 all:foo", 0 },
		{ "v=spf1 all/8", 0 },
		{ "v=spf1 a:", 0 },
		{ "v=spf1 include", 0 },
		{ "v=spf1 exists", 0 },
		{ "v=spf1 a/33", 0 },
		{ "v=spf1 a//129", 0 },
		{ "v=spf1 a/024", 0 },
		{ "v=spf1 ip4:1.2.3.4/33", 0 },
		{ "v=spf1 ip4:1.2.03.4", 0 },
		{ "v=spf1 ip4:1.2.3", 0 },
		{ "v=spf1 ip4:1.2.3.4//32", 0 },
		{ "v=spf1 ip6:2001:db8::/129", 0 },
		{ "v=spf1 ip6:2001:db8:zz::", 0 },
		{ "v=spf1 ptr/24", 0 },
		{ "v=spf1 a:foo.1", 0 },
		{ "v=spf1 a:museum", 0 },
		{ "v=spf1 a:example.com:8080", 0 },
		{ "v=spf1 =a", 0 },
		{ "v=spf1 a:%{x}.example.com", 0 },
		{ "v=spf1 a:%{c}.example.com", 0 },
		{ "v=spf1 a:%{d0}.example.com", 0 },
		{ "v=spf1 a:%.example.com", 0 },
		{ "v=spf1 a:example.com%", 0 },
		{ "v=spf1 redirect=a.example.com redirect=b.example.com", 0 },
		{ "v=spf1 exp=a.example.com exp=b.example.com", 0 },
		{ "v=spf1 exp=", 0 },
		{ "v=spf1 -all\tip4:1.2.3.4", 0 },
		{ "v=spf1 a:caf\xc3\xa9.example.com", 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct spf_record rec;
		const char *why;
		int rc = spf_record_parse(cases[i].rec, strlen(cases[i].rec), &rec, &why);

		CHECK_MSG((rc == 0) == cases[i].ok, "\"%s\": %d (%s)", cases[i].rec, rc, why);
		if (rc == 0)
			spf_record_free(&rec);
	}
}

static void
test_macros(void)
{
	/* RFC 7208 7.4's examples */
	struct spf_macro_vars v = { .s = "strong-bad@email.example.com",
		.l = "strong-bad",
		.o = "email.example.com",
		.d = "email.example.com",
		.i = "192.0.2.3",
		.p = "mx.example.org",
		.v = "in-addr",
		.h = "mx.example.org",
		.c = "192.0.2.3",
		.r = "example.net",
		.t = "1700000000" };
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "%{s}", "strong-bad@email.example.com" },
		{ "%{o}", "email.example.com" },
		{ "%{d}", "email.example.com" },
		{ "%{d4}", "email.example.com" },
		{ "%{d3}", "email.example.com" },
		{ "%{d2}", "example.com" },
		{ "%{d1}", "com" },
		{ "%{dr}", "com.example.email" },
		{ "%{d2r}", "example.email" },
		{ "%{l}", "strong-bad" },
		{ "%{l-}", "strong.bad" },
		{ "%{lr}", "strong-bad" },
		{ "%{lr-}", "bad.strong" },
		{ "%{l1r-}", "strong" },
		{ "%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com" },
		{ "%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com" },
		{ "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
		    "3.2.0.192.in-addr.strong.lp._spf.example.com" },
		{ "%{p2}.trusted-domains.example.net.", "example.org.trusted-domains.example.net" },
		{ "%%%_%-", "% %20" },
		{ "%{S}", "strong-bad%40email.example.com" },
	};
	char out[SPF_EXPAND_MAX], big[600];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = spf_expand(&v, cases[i].in, strlen(cases[i].in), 0, 1, out, sizeof(out));
		CHECK_MSG(n >= 0 && strcmp(out, cases[i].out) == 0, "%s -> %s", cases[i].in,
		    n >= 0 ? out : "(error)");
	}
	CHECK(spf_expand(&v, "%{c} %{r} %{t}", 14, 1, 0, out, sizeof(out)) >= 0);
	CHECK_STR(out, "192.0.2.3 example.net 1700000000");
	CHECK(spf_expand(&v, "%{c}", 4, 0, 1, out, sizeof(out)) == -1);
	/* a name past 253 octets loses labels on its left */
	memset(big, 'a', sizeof(big));
	for (size_t i = 60; i < sizeof(big) - 1; i += 61)
		big[i] = '.';
	big[sizeof(big) - 1] = '\0';
	CHECK(spf_expand(&v, big, strlen(big), 0, 1, out, sizeof(out)) <= 253);
	CHECK(strlen(out) <= 253 && out[0] != '.');
	CHECK(spf_domain_ok("example.com") && spf_domain_ok("example.com."));
	CHECK(!spf_domain_ok("com") && !spf_domain_ok("a..b") && !spf_domain_ok(""));
}

int
main(void)
{
	size_t nq = 0;
	char exp[256];

	test_parse();
	test_macros();
	test_eval();
	/* the limits bound the queries: 10 a terms, then a permerror */
	run("192.0.2.20", "helo.test", "bob@many.example.com", exp, &nq);
	CHECK(nq <= 3);
	return test_done("test_spf");
}
