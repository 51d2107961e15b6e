/* fuzz_dkim.c - libFuzzer target for dkim.h's parsers and canonicalizers.
 * The input is taken as a DKIM-Signature field, as a key record, as a
 * header section (its fields found, the signature's header hash made over
 * them) and as a body. Invariants: nothing reads out of bounds; a parsed
 * signature's b= value lies inside the field and h= holds names; the body
 * canonicalized in pieces (sizes from the input's first byte) equals the
 * body at once, for both canonicalizations; relaxed canonicalization of
 * a body or a header field is idempotent; fields lie inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dkim.h"
#include "fuzz.h"

struct out {
	char *b;
	size_t n, cap;
};

static void
out_sink(void *arg, const char *p, size_t n)
{
	struct out *o = arg;

	if (n == 0)
		return;
	if (n > o->cap - o->n) {
		size_t cap = (o->cap + n) * 2;
		char *b = realloc(o->b, cap);
		FUZZ_CHECK(b != NULL);
		o->b = b;
		o->cap = cap;
	}
	memcpy(o->b + o->n, p, n);
	o->n += n;
}

/* The canonical body of p, in pieces of step bytes (0: at once). */
static void
body(enum dkim_canon c, const char *p, size_t n, size_t step, struct out *o, unsigned char hash[32])
{
	struct dkim_body b;

	o->n = 0;
	dkim_body_init(&b, c, -1);
	b.sink = out_sink;
	b.arg = o;
	if (step == 0)
		step = n + 1;
	for (size_t i = 0; i < n; i += step)
		dkim_body_update(&b, p + i, n - i < step ? n - i : step);
	dkim_body_finish(&b, hash);
	FUZZ_CHECK(b.total == o->n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	struct dkim_field f[64];
	struct dkim_sig sig;
	struct dkim_key key;
	struct out a = { 0 }, b = { 0 };
	unsigned char h1[32], h2[32];
	char reason[DKIM_REASON_MAX];
	size_t step = size > 0 ? data[0] % 17 : 0, boff;
	int nf;

	if (dkim_sig_parse(p, size, 1700000000, &sig, reason, sizeof(reason)) == 0) {
		FUZZ_CHECK(sig.braw_start <= sig.braw_end && sig.braw_end <= size);
		FUZZ_CHECK(sig.nh > 0 && sig.nh <= DKIM_H_MAX && sig.blen > 0);
		FUZZ_CHECK(sig.d[0] != '\0' && sig.s[0] != '\0');
		for (int k = 0; k < sig.nh; k++)
			FUZZ_CHECK(sig.hlist[sig.h[k]] != '\0');
		nf = dkim_fields(p, size, f, 64, &boff);
		if (nf > 0)
			dkim_header_hash(&sig, p, f, nf, p, size, h1);
	} else
		FUZZ_CHECK(reason[0] != '\0');
	if (dkim_key_parse(p, size, &key, reason, sizeof(reason)) == -1)
		FUZZ_CHECK(reason[0] != '\0');
	dkim_key_free(&key);

	nf = dkim_fields(p, size, f, 64, &boff);
	FUZZ_CHECK(nf >= -1 && nf <= 64);
	FUZZ_CHECK(boff == DKIM_NO_BODY || boff <= size);
	for (int j = 0; j < nf; j++) {
		FUZZ_CHECK(f[j].off + f[j].len <= size && f[j].nlen <= f[j].len);
		/* Relaxed header canonicalization is idempotent. */
		a.n = b.n = 0;
		dkim_canon_header(DKIM_RELAXED, p + f[j].off, f[j].len, out_sink, &a);
		dkim_canon_header(DKIM_RELAXED, a.b != NULL ? a.b : "", a.n, out_sink, &b);
		FUZZ_CHECK(a.n == b.n && (a.n == 0 || memcmp(a.b, b.b, a.n) == 0));
		dkim_canon_header(DKIM_SIMPLE, p + f[j].off, f[j].len, out_sink, &b);
	}

	for (int c = DKIM_SIMPLE; c <= DKIM_RELAXED; c++) {
		body((enum dkim_canon)c, p, size, 0, &a, h1);
		body((enum dkim_canon)c, p, size, step, &b, h2);
		FUZZ_CHECK(a.n == b.n && memcmp(h1, h2, 32) == 0);
		FUZZ_CHECK(a.n == 0 || memcmp(a.b, b.b, a.n) == 0);
		/* The output is lines ending in CRLF, with no empty line at
		 * the end (simple: "\r\n" alone for an empty body). */
		FUZZ_CHECK(a.n == 0 || (a.n >= 2 && a.b[a.n - 2] == '\r' && a.b[a.n - 1] == '\n'));
		if (c == DKIM_RELAXED) {
			struct out copy = { 0 };
			out_sink(&copy, a.b != NULL ? a.b : "", a.n);
			body(DKIM_RELAXED, copy.b != NULL ? copy.b : "", copy.n, step, &b, h2);
			FUZZ_CHECK(memcmp(h1, h2, 32) == 0);
			free(copy.b);
		}
	}
	free(a.b);
	free(b.b);
	return 0;
}
