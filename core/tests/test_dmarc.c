/* test_dmarc.c - DMARC without the network: policy records (the version
 * first, p and sp, defaults for broken optional tags, the rua fallback of
 * RFC 7489 6.6.3), RFC5322.From values (display names, comments, quoted
 * local parts, groups, several mailboxes), organizational domains from
 * the Public Suffix List, alignment in both modes, and a table of
 * From/SPF/DKIM combinations through to the result and disposition
 * (subdomain policy, pct at its ends and in between). */
#include <stdlib.h>
#include <string.h>

#include "dmarc.h"
#include "test.h"

static void
test_record(void)
{
	static const struct {
		const char *txt;
		enum dmarc_rec_status st;
		enum dmarc_policy p, sp;
		int adkim_s, aspf_s, pct, rua;
		const char *fo;
	} t[] = {
		{ "v=DMARC1; p=reject", DMARC_REC_OK, DMARC_P_REJECT, 0, 0, 0, 100, 0, "0" },
		{ "v=DMARC1;p=none", DMARC_REC_OK, DMARC_P_NONE, 0, 0, 0, 100, 0, "0" },
		{ " v = DMARC1 ; p = Quarantine ; ", DMARC_REC_OK, DMARC_P_QUARANTINE, 0, 0, 0, 100,
		    0, "0" },
		{ "v=DMARC1; p=reject; sp=none; adkim=s; aspf=s; pct=20; fo=1:d; ri=3600",
		    DMARC_REC_OK, DMARC_P_REJECT, DMARC_P_NONE, 1, 1, 20, 0, "1:d" },
		{ "v=DMARC1; p=quarantine; rua=mailto:d@example.com,mailto:e@example.net!10m",
		    DMARC_REC_OK, DMARC_P_QUARANTINE, 0, 0, 0, 100, 1, "0" },
		/* Broken optional tags take their defaults. */
		{ "v=DMARC1; p=reject; adkim=x; aspf=; pct=101; fo=2; ri=x", DMARC_REC_OK,
		    DMARC_P_REJECT, 0, 0, 0, 100, 0, "0" },
		{ "v=DMARC1; p=reject; pct=-1", DMARC_REC_OK, DMARC_P_REJECT, 0, 0, 0, 100, 0,
		    "0" },
		{ "v=DMARC1; p=reject; pct=0", DMARC_REC_OK, DMARC_P_REJECT, 0, 0, 0, 0, 0, "0" },
		/* The first of a repeated tag counts; unknown tags are ignored. */
		{ "v=DMARC1; p=none; p=reject; x=y; junk", DMARC_REC_OK, DMARC_P_NONE, 0, 0, 0, 100,
		    0, "0" },
		/* Not DMARC records at all. */
		{ "v=spf1 -all", DMARC_REC_NOT, 0, 0, 0, 0, 0, 0, NULL },
		{ "p=reject; v=DMARC1", DMARC_REC_NOT, 0, 0, 0, 0, 0, 0, NULL },
		{ "v=dmarc1; p=reject", DMARC_REC_NOT, 0, 0, 0, 0, 0, 0, NULL },
		{ "v=DMARC1p=reject", DMARC_REC_NOT, 0, 0, 0, 0, 0, 0, NULL },
		{ "", DMARC_REC_NOT, 0, 0, 0, 0, 0, 0, NULL },
		{ ";v=DMARC1; p=reject", DMARC_REC_NOT, 0, 0, 0, 0, 0, 0, NULL },
		/* No valid p: invalid, unless a valid rua makes it p=none. */
		{ "v=DMARC1", DMARC_REC_INVALID, 0, 0, 0, 0, 0, 0, NULL },
		{ "v=DMARC1; p=block", DMARC_REC_INVALID, 0, 0, 0, 0, 0, 0, NULL },
		{ "v=DMARC1; p=reject; sp=maybe", DMARC_REC_INVALID, 0, 0, 0, 0, 0, 0, NULL },
		{ "v=DMARC1; rua=nope", DMARC_REC_INVALID, 0, 0, 0, 0, 0, 0, NULL },
		{ "v=DMARC1; p=block; rua=mailto:r@example.com", DMARC_REC_OK, DMARC_P_NONE, 0, 0,
		    0, 100, 1, "0" },
		{ "v=DMARC1; rua=mailto:r@example.com", DMARC_REC_OK, DMARC_P_NONE, 0, 0, 0, 100, 1,
		    "0" },
	};
	struct dmarc_record r;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		enum dmarc_rec_status st = dmarc_record_parse(t[i].txt, strlen(t[i].txt), &r);
		CHECK_MSG(st == t[i].st, "%s: status %d", t[i].txt, (int)st);
		if (st != DMARC_REC_OK || t[i].st != DMARC_REC_OK)
			continue;
		CHECK_MSG(r.p == t[i].p && r.sp == t[i].sp, "%s: p %d sp %d", t[i].txt, (int)r.p,
		    (int)r.sp);
		CHECK_MSG(
		    r.adkim_strict == t[i].adkim_s && r.aspf_strict == t[i].aspf_s, "%s", t[i].txt);
		CHECK_MSG(r.pct == t[i].pct, "%s: pct %d", t[i].txt, r.pct);
		CHECK_MSG(r.rua == t[i].rua, "%s: rua", t[i].txt);
		CHECK_STR(r.fo, t[i].fo);
	}
	/* A NUL is a byte like others: in a tag of its own it is ignored,
	 * in p's value it makes p invalid. */
	CHECK(dmarc_record_parse("v=DMARC1; p=reject;\0x", 21, &r) == DMARC_REC_OK &&
	    r.p == DMARC_P_REJECT);
	CHECK(dmarc_record_parse("v=DMARC1; p=reject\0x", 20, &r) == DMARC_REC_INVALID);
}

static void
test_from(void)
{
	static const struct {
		const char *v;
		enum dmarc_from_status st;
		const char *domain;
	} t[] = {
		{ "user@example.com", DMARC_FROM_OK, "example.com" },
		{ "  User@Example.COM  ", DMARC_FROM_OK, "example.com" },
		{ "Joe Q. Public <john.q.public@example.com>", DMARC_FROM_OK, "example.com" },
		{ "\"Public, Joe\" <joe@mail.example.org>", DMARC_FROM_OK, "mail.example.org" },
		{ "\"a@evil.test\" <b@good.example>", DMARC_FROM_OK, "good.example" },
		{ "(comment (nested)) joe (x) @ (y) example.net (z)", DMARC_FROM_OK,
		    "example.net" },
		{ "\"quoted local\"@example.com", DMARC_FROM_OK, "example.com" },
		{ "<a@example.com>", DMARC_FROM_OK, "example.com" },
		{ "Name\r\n <a@folded.example>", DMARC_FROM_OK, "folded.example" },
		{ "a@example.com,", DMARC_FROM_OK, "example.com" },
		{ "a@example.com, b@example.net", DMARC_FROM_MULTIPLE, "" },
		{ "A <a@example.com>, B <b@example.com>", DMARC_FROM_MULTIPLE, "" },
		{ "\"x,y\" <a@example.com>", DMARC_FROM_OK, "example.com" },
		{ "Group: a@example.com;", DMARC_FROM_MULTIPLE, "" },
		{ "undisclosed-recipients:;", DMARC_FROM_MULTIPLE, "" },
		{ "", DMARC_FROM_SYNTAX, "" },
		{ "nobody", DMARC_FROM_SYNTAX, "" },
		{ "a@", DMARC_FROM_SYNTAX, "" },
		{ "@example.com", DMARC_FROM_SYNTAX, "" },
		{ "a@[192.0.2.1]", DMARC_FROM_SYNTAX, "" },
		{ "a@example..com", DMARC_FROM_SYNTAX, "" },
		{ "a@example.com.", DMARC_FROM_SYNTAX, "" },
		{ "a@exa mple.com", DMARC_FROM_SYNTAX, "" },
		{ "Name <a@example.com", DMARC_FROM_SYNTAX, "" },
		{ "Name <a@example.com> trailing", DMARC_FROM_SYNTAX, "" },
		{ "<a@b.example> <c@d.example>", DMARC_FROM_SYNTAX, "" },
		{ "a@b@example.com", DMARC_FROM_SYNTAX, "" },
		{ "a@example.com (c) trailing", DMARC_FROM_SYNTAX, "" },
		{ "a b@example.com", DMARC_FROM_OK, "example.com" },
		{ "a@example.com,,, ,", DMARC_FROM_OK, "example.com" },
		{ ",,a@example.com,, b@example.com", DMARC_FROM_MULTIPLE, "" },
		{ "(unclosed a@example.com", DMARC_FROM_SYNTAX, "" },
		{ "\"unclosed a@example.com", DMARC_FROM_SYNTAX, "" },
		{ "a@b\xc3\xa9.example", DMARC_FROM_SYNTAX, "" },
		{ "\xc3\xa9@example.com", DMARC_FROM_OK, "example.com" },
	};
	char d[DMARC_DOMAIN_MAX];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		enum dmarc_from_status st = dmarc_from_domain(t[i].v, strlen(t[i].v), d);
		CHECK_MSG(st == t[i].st, "'%s': status %d", t[i].v, (int)st);
		if (st == DMARC_FROM_OK)
			CHECK_STR(d, t[i].domain);
	}
	/* However long the display name, and however many empty list
	 * elements: one mailbox (a From DMARC cannot read is a permerror,
	 * so padding must not make one). */
	{
		char v[4000] = "";
		for (int i = 0; i < 300; i++)
			strcat(v, i % 2 ? "word " : "\"q\" ");
		strcat(v, "<a@Padded.example>");
		for (int i = 0; i < 200; i++)
			strcat(v, ",");
		CHECK(dmarc_from_domain(v, strlen(v), d) == DMARC_FROM_OK &&
		    strcmp(d, "padded.example") == 0);
		CHECK(dmarc_from_domain(v + 4, strlen(v) - 4, d) == DMARC_FROM_OK);
	}
	/* A domain of 254 octets or more cannot be one. */
	{
		char v[600] = "a@";
		for (int i = 0; i < 60; i++)
			strcat(v, "abcd.");
		strcat(v, "com");
		CHECK(dmarc_from_domain(v, strlen(v), d) == DMARC_FROM_SYNTAX);
	}
}

static void
test_org(void)
{
	static const struct {
		const char *d, *org;
	} t[] = {
		{ "example.com", "example.com" },
		{ "a.b.example.com", "example.com" },
		{ "example.co.uk", "example.co.uk" },
		{ "mail.example.co.uk", "example.co.uk" },
		{ "co.uk", "co.uk" },
		{ "com", "com" },
		{ "news.spec.test", "spec.test" },    /* an unlisted TLD: the "*" rule */
		{ "foo.github.io", "foo.github.io" }, /* the list's private part counts */
		{ "x.foo.github.io", "foo.github.io" },
	};
	char out[DMARC_DOMAIN_MAX];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		dmarc_org_domain(t[i].d, out);
		CHECK_STR(out, t[i].org);
	}
}

static void
test_aligned(void)
{
	static const struct {
		const char *from, *a;
		int relaxed, strict;
	} t[] = {
		{ "example.com", "example.com", 1, 1 },
		{ "example.com", "EXAMPLE.com", 1, 1 },
		{ "example.com", "mail.example.com", 1, 0 },
		{ "a.b.example.com", "example.com", 1, 0 },
		{ "a.b.example.com", "c.example.com", 1, 0 },
		{ "example.com", "example.net", 0, 0 },
		{ "example.co.uk", "other.co.uk", 0, 0 },
		{ "mail.example.co.uk", "example.co.uk", 1, 0 },
		{ "foo.github.io", "bar.github.io", 0, 0 },
		{ "example.com", "", 0, 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		CHECK_MSG(dmarc_aligned(t[i].from, t[i].a, 0) == t[i].relaxed, "%s ~ %s relaxed",
		    t[i].from, t[i].a);
		CHECK_MSG(dmarc_aligned(t[i].from, t[i].a, 1) == t[i].strict, "%s ~ %s strict",
		    t[i].from, t[i].a);
	}
}

/* One message: its From domain, the record found and where (at the From
 * domain, or at its organizational domain: sub), SPF's result for the
 * envelope domain, and DKIM's passing signatures' domains. Alignment is
 * worked out as dmarc_lua.c does it. */
static void
test_combinations(void)
{
	static const struct {
		const char *from, *rec;
		int at_org; /* the record is the organizational domain's */
		const char *spf, *spf_domain;
		const char *dkim[3]; /* domains of passing signatures */
		unsigned sample;
		enum dmarc_result want;
		enum dmarc_policy policy, disposition;
	} t[] = {
		/* No record. */
		{ "example.com", NULL, 0, "fail", "evil.test", { NULL }, 0, DMARC_NONE,
		    DMARC_P_NONE, DMARC_P_NONE },
		/* Aligned SPF, relaxed: a subdomain's envelope passes. */
		{ "example.com", "v=DMARC1; p=reject", 0, "pass", "bounce.example.com", { NULL }, 0,
		    DMARC_PASS, DMARC_P_REJECT, DMARC_P_NONE },
		/* ...not in strict mode. */
		{ "example.com", "v=DMARC1; p=reject; aspf=s", 0, "pass", "bounce.example.com",
		    { NULL }, 0, DMARC_FAIL, DMARC_P_REJECT, DMARC_P_REJECT },
		/* SPF passing for an unrelated domain does not help. */
		{ "example.com", "v=DMARC1; p=reject", 0, "pass", "evil.test", { NULL }, 0,
		    DMARC_FAIL, DMARC_P_REJECT, DMARC_P_REJECT },
		/* Only "pass" counts. */
		{ "example.com", "v=DMARC1; p=quarantine", 0, "softfail", "example.com", { NULL },
		    0, DMARC_FAIL, DMARC_P_QUARANTINE, DMARC_P_QUARANTINE },
		/* DKIM alone, relaxed and strict. */
		{ "a.b.example.com", "v=DMARC1; p=reject", 0, "fail", "evil.test",
		    { "example.com" }, 0, DMARC_PASS, DMARC_P_REJECT, DMARC_P_NONE },
		{ "a.b.example.com", "v=DMARC1; p=reject; adkim=s", 0, "fail", "evil.test",
		    { "example.com" }, 0, DMARC_FAIL, DMARC_P_REJECT, DMARC_P_REJECT },
		{ "a.b.example.com", "v=DMARC1; p=reject; adkim=s", 0, "none", "",
		    { "evil.test", "A.B.Example.com" }, 0, DMARC_PASS, DMARC_P_REJECT,
		    DMARC_P_NONE },
		/* Public suffixes: example.co.uk and other.co.uk are strangers. */
		{ "example.co.uk", "v=DMARC1; p=reject", 0, "pass", "other.co.uk", { "co.uk" }, 0,
		    DMARC_FAIL, DMARC_P_REJECT, DMARC_P_REJECT },
		{ "mail.example.co.uk", "v=DMARC1; p=reject", 1, "pass", "example.co.uk", { NULL },
		    0, DMARC_PASS, DMARC_P_REJECT, DMARC_P_NONE },
		/* The organizational domain's record: sp= for a subdomain. */
		{ "news.example.com", "v=DMARC1; p=reject; sp=quarantine", 1, "fail", "", { NULL },
		    0, DMARC_FAIL, DMARC_P_QUARANTINE, DMARC_P_QUARANTINE },
		{ "news.example.com", "v=DMARC1; p=reject; sp=none", 1, "fail", "", { NULL }, 0,
		    DMARC_FAIL, DMARC_P_NONE, DMARC_P_NONE },
		{ "news.example.com", "v=DMARC1; p=reject", 1, "fail", "", { NULL }, 0, DMARC_FAIL,
		    DMARC_P_REJECT, DMARC_P_REJECT },
		/* The From domain's own record: its p=, whatever sp= says. */
		{ "news.example.com", "v=DMARC1; p=reject; sp=none", 0, "fail", "", { NULL }, 0,
		    DMARC_FAIL, DMARC_P_REJECT, DMARC_P_REJECT },
		/* pct: at 0 never, at 100 always, in between by the sample. */
		{ "example.com", "v=DMARC1; p=reject; pct=0", 0, "fail", "", { NULL }, 0,
		    DMARC_FAIL, DMARC_P_REJECT, DMARC_P_QUARANTINE },
		{ "example.com", "v=DMARC1; p=quarantine; pct=0", 0, "fail", "", { NULL }, 0,
		    DMARC_FAIL, DMARC_P_QUARANTINE, DMARC_P_NONE },
		{ "example.com", "v=DMARC1; p=reject; pct=100", 0, "fail", "", { NULL }, 99,
		    DMARC_FAIL, DMARC_P_REJECT, DMARC_P_REJECT },
		{ "example.com", "v=DMARC1; p=reject; pct=30", 0, "fail", "", { NULL }, 29,
		    DMARC_FAIL, DMARC_P_REJECT, DMARC_P_REJECT },
		{ "example.com", "v=DMARC1; p=reject; pct=30", 0, "fail", "", { NULL }, 30,
		    DMARC_FAIL, DMARC_P_REJECT, DMARC_P_QUARANTINE },
		{ "example.com", "v=DMARC1; p=none; pct=0", 0, "fail", "", { NULL }, 50, DMARC_FAIL,
		    DMARC_P_NONE, DMARC_P_NONE },
		/* pct does not touch a pass. */
		{ "example.com", "v=DMARC1; p=reject; pct=0", 0, "pass", "example.com", { NULL }, 0,
		    DMARC_PASS, DMARC_P_REJECT, DMARC_P_NONE },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct dmarc_record rec;
		enum dmarc_policy policy, dis;
		enum dmarc_result r;
		int spf_r = 0, spf_s = 0, dkim_r = 0, dkim_s = 0, sub;
		char org[DMARC_DOMAIN_MAX];

		if (t[i].rec != NULL)
			CHECK(dmarc_record_parse(t[i].rec, strlen(t[i].rec), &rec) == DMARC_REC_OK);
		if (strcmp(t[i].spf, "pass") == 0) {
			spf_r = dmarc_aligned(t[i].from, t[i].spf_domain, 0);
			spf_s = dmarc_aligned(t[i].from, t[i].spf_domain, 1);
		}
		for (int k = 0; k < 3 && t[i].dkim[k] != NULL; k++) {
			dkim_r |= dmarc_aligned(t[i].from, t[i].dkim[k], 0);
			dkim_s |= dmarc_aligned(t[i].from, t[i].dkim[k], 1);
		}
		dmarc_org_domain(t[i].from, org);
		sub = t[i].at_org && strcmp(org, t[i].from) != 0;
		r = dmarc_evaluate(t[i].rec != NULL ? &rec : NULL, sub, spf_r, spf_s, dkim_r,
		    dkim_s, t[i].sample, &policy, &dis);
		CHECK_MSG(r == t[i].want && policy == t[i].policy && dis == t[i].disposition,
		    "case %zu (%s, %s): %s %s %s", i, t[i].from, t[i].rec ? t[i].rec : "-",
		    dmarc_result_str(r), dmarc_policy_str(policy), dmarc_policy_str(dis));
	}
	CHECK_STR(dmarc_result_str(DMARC_TEMPERROR), "temperror");
	CHECK_STR(dmarc_result_str(DMARC_PERMERROR), "permerror");
	CHECK_STR(dmarc_policy_str(DMARC_P_UNSET), "none");
}

int
main(void)
{
	test_record();
	test_from();
	test_org();
	test_aligned();
	test_combinations();
	return test_done("test_dmarc");
}
