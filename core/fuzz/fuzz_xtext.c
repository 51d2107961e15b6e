/* fuzz_xtext.c - libFuzzer target for xtext.c and dsn_param.c.
 * The input is decoded as xtext: accepted exactly when a slow reference
 * of RFC 3461 4 accepts it, never past its bounds, and the decoded bytes
 * encode back to an xtext that decodes to them again. The input's bytes
 * (up to a NUL) are encoded: the result is well-formed xtext and decodes
 * to them. As ENVID, NOTIFY and ORCPT values: an accepted ORCPT encodes
 * back to a value that parses to the same, NOTIFY's bits print back to a
 * value that parses to the same bits. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsn_param.h"
#include "fuzz.h"
#include "xtext.h"

#define XT_MAX 1024

static int
ref_hex(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* RFC 3461 4: xtext = *( xchar / hexchar ), with a decoded NUL refused. */
static int
ref_valid(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '+') {
			if (n - i < 3 || !ref_hex(p[i + 1]) || !ref_hex(p[i + 2]) ||
			    (p[i + 1] == '0' && p[i + 2] == '0'))
				return 0;
			i += 2;
		} else if (p[i] < 33 || p[i] > 126 || p[i] == '=')
			return 0;
	}
	return 1;
}

static void
check_encoded(const char *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)e[i];

		FUZZ_CHECK(c >= 33 && c <= 126 && c != '=');
		if (c == '+') {
			FUZZ_CHECK(
			    i + 2 < n && ref_hex((uint8_t)e[i + 1]) && ref_hex((uint8_t)e[i + 2]));
			i += 2;
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dec[XT_MAX + 1], enc[3 * XT_MAX + 1], back[XT_MAX + 1], str[XT_MAX + 1];
	char orcpt[DSN_ORCPT_MAX + 1], orcpt2[DSN_ORCPT_MAX + 1], val[3 * DSN_ORCPT_MAX + 1];
	char words[32];
	unsigned bits, bits2;
	size_t n = size < XT_MAX ? size : XT_MAX, sn;
	int d, e, b;

	/* Decoding. */
	d = xtext_decode((const char *)data, n, dec, sizeof(dec));
	FUZZ_CHECK((d >= 0) == ref_valid(data, n));
	if (d >= 0) {
		FUZZ_CHECK((size_t)d <= n && dec[d] == '\0' && strlen(dec) == (size_t)d);
		e = xtext_encode(dec, (size_t)d, enc, sizeof(enc));
		FUZZ_CHECK(e >= 0 && (size_t)e <= 3 * (size_t)d);
		check_encoded(enc, (size_t)e);
		b = xtext_decode(enc, (size_t)e, back, sizeof(back));
		FUZZ_CHECK(b == d && memcmp(back, dec, (size_t)d) == 0);
	}
	/* A short output buffer is refused, never overrun. */
	if (n > 0)
		FUZZ_CHECK(xtext_decode((const char *)data, n, dec, 1) == -1);

	/* Encoding: the bytes before a NUL. */
	sn = strnlen((const char *)data, n);
	memcpy(str, data, sn);
	str[sn] = '\0';
	e = xtext_encode(str, sn, enc, sizeof(enc));
	FUZZ_CHECK(e >= 0);
	check_encoded(enc, (size_t)e);
	b = xtext_decode(enc, (size_t)e, back, sizeof(back));
	FUZZ_CHECK(b == (int)sn && memcmp(back, str, sn) == 0);
	if (sn > 0)
		FUZZ_CHECK(xtext_encode(str, sn, enc, (size_t)e) == -1);

	/* The parameters. */
	if (dsn_param_envid(str, dec, sizeof(dec)) == 0)
		FUZZ_CHECK(sn <= DSN_ENVID_MAX && strlen(dec) <= sn && strlen(dec) > 0);
	if (dsn_param_notify(str, &bits) == 0) {
		FUZZ_CHECK(bits != 0 && (!(bits & DSN_NOTIFY_NEVER) || bits == DSN_NOTIFY_NEVER));
		dsn_param_notify_str(bits, words, sizeof(words));
		FUZZ_CHECK(dsn_param_notify(words, &bits2) == 0 && bits2 == bits);
	}
	if (dsn_param_orcpt(str, orcpt, sizeof(orcpt)) == 0) {
		FUZZ_CHECK(sn <= DSN_ORCPT_MAX && strchr(orcpt, ';') != NULL);
		FUZZ_CHECK(dsn_param_orcpt_encode(orcpt, val, sizeof(val)) == 0);
		FUZZ_CHECK(strlen(val) <= sn);
		FUZZ_CHECK(dsn_param_orcpt(val, orcpt2, sizeof(orcpt2)) == 0);
		FUZZ_CHECK(strcmp(orcpt, orcpt2) == 0);
	}
	if (dsn_param_ret(str) > 0)
		FUZZ_CHECK(strlen(dsn_param_ret_str(dsn_param_ret(str))) == 4);
	return 0;
}
