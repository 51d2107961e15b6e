/* fuzz_spf.c - libFuzzer target for SPF (spf.h): the record parser, macro
 * expansion and whole checks whose DNS answers come from the input.
 *
 * The input is lines. The first is parsed as a record and expanded as a
 * macro-string, and is also the top domain's TXT answer; each later query
 * of the check takes the next line as its answer: "!" SERVFAIL, "?"
 * timeout, "-" NODATA, "~" NXDOMAIN, else records separated by "|" (text,
 * names or addresses as the query's type reads them); once the lines run
 * out every answer is NXDOMAIN. The client is IPv4 or IPv6 by the first
 * line's length.
 *
 * Invariants: a record parses (its terms and CIDR lengths in range, its
 * modifiers inside the text) or is refused with a reason; an expansion
 * fits its buffer, and as a domain is at most 253 octets or one label; a
 * check ends within SPF_QUERIES_MAX queries with one of the seven
 * results, an explanation only for a fail and at most SPF_EXP_TEXT_MAX
 * octets, and a reason for every error. */
#include <string.h>

#include "fuzz.h"
#include "spf.h"

#define FUZZ_SPF_LINE_MAX 2048

static void
check_record(const char *txt, size_t len)
{
	struct spf_record rec;
	const char *why = NULL;

	if (spf_record_parse(txt, len, &rec, &why) == -1) {
		FUZZ_CHECK(why != NULL && why[0] != '\0');
		FUZZ_CHECK(rec.terms == NULL && rec.nterms == 0);
		return;
	}
	FUZZ_CHECK(spf_is_record(txt, len));
	for (size_t i = 0; i < rec.nterms; i++) {
		const struct spf_term *t = &rec.terms[i];

		FUZZ_CHECK(t->cidr4 >= 0 && t->cidr4 <= 32 && t->cidr6 >= 0 && t->cidr6 <= 128);
		FUZZ_CHECK(t->qual == SPF_PASS || t->qual == SPF_FAIL || t->qual == SPF_SOFTFAIL ||
		    t->qual == SPF_NEUTRAL);
		if (t->spec != NULL)
			FUZZ_CHECK(
			    t->spec > txt && t->spec + t->speclen <= txt + len && t->speclen > 0);
	}
	if (rec.redirect != NULL)
		FUZZ_CHECK(rec.redirect > txt && rec.redirect + rec.redirect_len <= txt + len);
	if (rec.exp != NULL)
		FUZZ_CHECK(rec.exp > txt && rec.exp + rec.exp_len <= txt + len);
	spf_record_free(&rec);
}

static void
check_expand(const char *txt, size_t len)
{
	static char out[SPF_EXPAND_MAX];
	struct spf_macro_vars v = { .s = "user+tag@example.com",
		.l = "user+tag",
		.o = "example.com",
		.d = "sub.example.com",
		.i = "192.0.2.1",
		.p = "unknown",
		.v = "in-addr",
		.h = "mail.example.com",
		.c = "192.0.2.1",
		.r = "mx.test",
		.t = "1700000000" };

	for (int explain = 0; explain < 2; explain++)
		for (int domain = 0; domain < 2; domain++) {
			int n = spf_expand(&v, txt, len, explain, domain, out, sizeof(out));

			FUZZ_CHECK(n >= -1 && n < (int)sizeof(out));
			if (n == -1)
				continue;
			FUZZ_CHECK(spf_macro_ok(txt, len, explain));
			FUZZ_CHECK((size_t)n == strlen(out));
			if (domain)
				FUZZ_CHECK(n <= 253 || strchr(out, '.') == NULL);
		}
}

/* The answer the check gets from the input's next line. */
static void
make_answer(
    struct fuzz_in *in, int qtype, struct dns_answer *a, struct dns_rr *rr, size_t max, char *line)
{
	size_t n = 0;
	char *p;

	memset(a, 0, sizeof(*a));
	a->rr = rr;
	if (in->n == 0) {
		a->err = DNS_NXDOMAIN;
		return;
	}
	while (in->n > 0 && in->p[0] != '\n' && n < FUZZ_SPF_LINE_MAX - 1)
		line[n++] = (char)fuzz_take_byte(in);
	fuzz_take_byte(in);
	line[n] = '\0';
	switch (line[0]) {
	case '!':
		a->err = DNS_SERVFAIL;
		return;
	case '?':
		a->err = DNS_TIMEOUT;
		return;
	case '-':
		a->err = DNS_NODATA;
		return;
	case '~':
		a->err = DNS_NXDOMAIN;
		return;
	}
	for (p = line; a->nrr < max;) {
		char *bar = memchr(p, '|', (size_t)(line + n - p));
		size_t l = bar != NULL ? (size_t)(bar - p) : (size_t)(line + n - p);

		rr[a->nrr].type = qtype;
		rr[a->nrr].ttl = 0;
		rr[a->nrr].preference = (int)a->nrr;
		rr[a->nrr].data = p;
		rr[a->nrr].len = l;
		p[l] = '\0';
		a->nrr++;
		if (bar == NULL)
			break;
		p = bar + 1;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char first[FUZZ_SPF_LINE_MAX], line[FUZZ_SPF_LINE_MAX];
	struct fuzz_in in = { data, size };
	const char *exp, *why;
	struct spf_query q;
	struct spf *s;
	enum spf_result r;
	size_t n = 0, steps = 0;

	while (n < size && data[n] != '\n' && n < FUZZ_SPF_LINE_MAX - 1)
		n++;
	memcpy(first, data, n);
	first[n] = '\0';
	check_record(first, n);
	check_expand(first, n);

	s = spf_new(n % 2 ? "2001:db8::1" : "192.0.2.1", "mail.example.com", "user+tag@example.com",
	    "mx.test", 1700000000);
	FUZZ_CHECK(s != NULL);
	while (spf_next(s, &q) == 1) {
		struct dns_answer a;
		struct dns_rr rr[16];

		FUZZ_CHECK(++steps <= SPF_QUERIES_MAX);
		FUZZ_CHECK(q.name != NULL && q.name[0] != '\0');
		FUZZ_CHECK(q.qtype == DNS_T_TXT || q.qtype == DNS_T_A || q.qtype == DNS_T_AAAA ||
		    q.qtype == DNS_T_MX || q.qtype == DNS_T_PTR);
		make_answer(&in, q.qtype, &a, rr, 16, line);
		FUZZ_CHECK(spf_feed(s, &a) == 0);
	}
	r = spf_result(s, &exp, &why);
	FUZZ_CHECK(r >= SPF_NONE && r <= SPF_PERMERROR);
	FUZZ_CHECK(exp == NULL || (r == SPF_FAIL && strlen(exp) <= SPF_EXP_TEXT_MAX));
	FUZZ_CHECK(why != NULL);
	if (r == SPF_PERMERROR || r == SPF_TEMPERROR)
		FUZZ_CHECK(why[0] != '\0');
	FUZZ_CHECK(spf_queries(s) <= SPF_QUERIES_MAX);
	spf_free(s);
	return 0;
}
