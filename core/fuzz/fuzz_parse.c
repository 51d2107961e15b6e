/* fuzz_parse.c - libFuzzer target for the pure parsers in smtp_parse.h:
 * the verb splitter, <path> under every flag combination, ESMTP parameters,
 * enhanced status codes, reply text and UTF-8 validation.
 * Every parser gets the input as an exact-size heap copy, so AddressSanitizer
 * catches a read one past the end; each result is checked against the
 * header's contract and, where cheap, against a slow reference or against
 * the same parser with other flags (allowing more never accepts less). */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtp_parse.h"

static int
ref_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* RFC 3629 by decoding: a code point per sequence, then range checks. Written
 * differently from smtp_parse.c on purpose (decode first, judge after). */
static int
ref_utf8_valid(const unsigned char *p, size_t len)
{
	size_t i = 0, k, n;
	uint32_t cp, min;

	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0) {
			n = 2, cp = p[i] & 0x1f, min = 0x80;
		} else if ((p[i] & 0xf0) == 0xe0) {
			n = 3, cp = p[i] & 0x0f, min = 0x800;
		} else if ((p[i] & 0xf8) == 0xf0) {
			n = 4, cp = p[i] & 0x07, min = 0x10000;
		} else
			return -1;
		if (len - i < n)
			return -1;
		for (k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return -1;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return -1;
		i += n;
	}
	return 0;
}

static void
check_utf8(const char *s, size_t n)
{
	int got = smtp_utf8_valid(s, n);

	FUZZ_CHECK(got == 0 || got == -1);
	FUZZ_CHECK(got == ref_utf8_valid((const unsigned char *)s, n));
}

static void
check_reply_text(const char *s, size_t n)
{
	size_t i;
	int want = 0, got = smtp_reply_text_ok(s, n);

	if (n > SMTP_REPLY_TEXT_MAX || ref_utf8_valid((const unsigned char *)s, n) != 0)
		want = -1;
	for (i = 0; i < n && want == 0; i++)
		if ((unsigned char)s[i] < 32 || (unsigned char)s[i] == 127)
			want = -1;
	FUZZ_CHECK(got == want);
}

static void
check_enhanced(const char *s, size_t n)
{
	size_t got = smtp_enhanced_len(s, n), i, part, digits;
	size_t want = 0;

	/* Reference: class "." 1*3digit "." 1*3digit SP, class in 2/4/5. */
	if (n > 0 && (s[0] == '2' || s[0] == '4' || s[0] == '5')) {
		i = 1;
		for (part = 0; part < 2; part++) {
			if (i >= n || s[i] != '.')
				break;
			i++;
			for (digits = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++)
				digits++;
			if (digits == 0 || digits > 3)
				break;
		}
		if (part == 2 && i < n && s[i] == ' ')
			want = i + 1;
	}
	FUZZ_CHECK(got == want);
	if (got > 0)
		FUZZ_CHECK(got >= 6 && got <= 10 && got <= n && s[got - 1] == ' ');
}

static void
check_verb(const char *s, size_t n)
{
	char verb[SMTP_VERB_MAX + 1 + 8];
	const char *arg = NULL;
	size_t arglen = 12345, vlen, i, a;
	int rc, want = 0;

	memset(verb, 'Z', sizeof(verb));
	rc = smtp_parse_verb(s, n, verb, &arg, &arglen);
	FUZZ_CHECK(rc == 0 || rc == -1);
	FUZZ_CHECK(memchr(verb, '\0', SMTP_VERB_MAX + 1) != NULL);
	/* Nothing written past the verb buffer the header promises. */
	for (i = SMTP_VERB_MAX + 1; i < sizeof(verb); i++)
		FUZZ_CHECK(verb[i] == 'Z');

	for (vlen = 0; vlen < n && s[vlen] != ' '; vlen++)
		if (!ref_alnum((unsigned char)s[vlen]) && s[vlen] != '-' && s[vlen] != '_')
			want = -1;
	if (vlen == 0 || vlen > SMTP_VERB_MAX)
		want = -1;
	FUZZ_CHECK(rc == want);
	FUZZ_CHECK(arg != NULL);
	if (rc == -1)
		return;

	FUZZ_CHECK(strlen(verb) == vlen);
	for (i = 0; i < vlen; i++) {
		char c = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 'a' + 'A') : s[i];
		FUZZ_CHECK(verb[i] == c);
	}
	if (arglen == 0) {
		/* Either "" or an empty position inside the line. */
		FUZZ_CHECK(arg[0] == '\0' || (arg >= s && arg <= s + n));
		for (a = vlen; a < n; a++)
			FUZZ_CHECK(s[a] == ' ');
		return;
	}
	FUZZ_CHECK(arg > s + vlen && arg + arglen <= s + n);
	FUZZ_CHECK(arg[0] != ' ' && arg[arglen - 1] != ' ');
	for (a = vlen; s + a < arg; a++)
		FUZZ_CHECK(s[a] == ' ');
	for (a = (size_t)(arg - s) + arglen; a < n; a++)
		FUZZ_CHECK(s[a] == ' ');
}

struct path_result {
	enum smtp_path_err err;
	char out[SMTP_PATH_MAX + 1];
	size_t restoff;
};

static void
parse_path(const char *s, size_t n, int flags, struct path_result *r)
{
	/* An exact-size heap copy, so reading s[n] is caught. */
	char *copy = malloc(n > 0 ? n : 1);
	char *out = malloc(SMTP_PATH_MAX + 1);
	const char *rest = NULL;
	size_t olen;

	FUZZ_CHECK(copy != NULL && out != NULL);
	if (n > 0)
		memcpy(copy, s, n);
	memset(out, 'Z', SMTP_PATH_MAX + 1);
	r->err = smtp_parse_path(
	    copy, n, flags & 1, (flags >> 1) & 1, (flags >> 2) & 1, out, SMTP_PATH_MAX + 1, &rest);
	FUZZ_CHECK(r->err >= SMTP_PATH_OK && r->err <= SMTP_PATH_UTF8);
	FUZZ_CHECK(memchr(out, '\0', SMTP_PATH_MAX + 1) != NULL);
	FUZZ_CHECK(strcmp(smtp_path_err_str(r->err), "unknown") != 0);
	memcpy(r->out, out, SMTP_PATH_MAX + 1);
	r->restoff = 0;
	if (r->err == SMTP_PATH_OK) {
		FUZZ_CHECK(rest != NULL && rest > copy + 1 && rest <= copy + n);
		FUZZ_CHECK(rest[-1] == '>');
		r->restoff = (size_t)(rest - copy);
		olen = strlen(out);
		/* The mailbox is copied as sent, just before the '>'. */
		FUZZ_CHECK(olen <= SMTP_PATH_MAX && olen + 2 <= r->restoff);
		FUZZ_CHECK(memcmp(rest - 1 - olen, out, olen) == 0);
		FUZZ_CHECK(r->restoff <= SMTP_PATH_MAX);
	}
	free(copy);
	free(out);
}

static int
has_byte_at_least(const char *s, size_t n, unsigned char min)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] >= min)
			return 1;
	return 0;
}

static void
check_path(const char *s, size_t n)
{
	struct path_result r[8], again;
	size_t olen, i;
	int f;

	for (f = 0; f < 8; f++)
		parse_path(s, n, f, &r[f]);
	for (f = 0; f < 8; f++) {
		if (r[f].err != SMTP_PATH_OK) {
			/* "<>" is refused as NULL exactly when not allowed. */
			if (r[f].err == SMTP_PATH_NULL)
				FUZZ_CHECK(!(f & 1) && n >= 2 && s[0] == '<' && s[1] == '>');
			continue;
		}
		olen = strlen(r[f].out);
		if (olen == 0)
			FUZZ_CHECK((f & 1) && r[f].restoff == 2);
		else if (memchr(r[f].out, '@', olen) == NULL)
			FUZZ_CHECK((f & 2) && olen == 10 && r[f].restoff == 12);
		/* No control octets in a mailbox, quoted or not; 8-bit only
		 * with SMTPUTF8, and then well-formed. */
		for (i = 0; i < olen; i++)
			FUZZ_CHECK(
			    (unsigned char)r[f].out[i] >= 32 && (unsigned char)r[f].out[i] != 127);
		if (!(f & 4))
			FUZZ_CHECK(!has_byte_at_least(r[f].out, olen, 0x80));
		FUZZ_CHECK(ref_utf8_valid((const unsigned char *)r[f].out, olen) == 0);
		/* Allowing more (null path, postmaster, UTF-8) never turns an
		 * accepted path into a refused or different one. */
		for (int g = 0; g < 8; g++) {
			if ((f & g) != f)
				continue;
			FUZZ_CHECK(r[g].err == SMTP_PATH_OK);
			FUZZ_CHECK(strcmp(r[g].out, r[f].out) == 0 && r[g].restoff == r[f].restoff);
		}
		/* The parser never looks past the '>': the prefix up to it
		 * parses the same. */
		parse_path(s, r[f].restoff, f, &again);
		FUZZ_CHECK(again.err == SMTP_PATH_OK && strcmp(again.out, r[f].out) == 0 &&
		    again.restoff == r[f].restoff);
	}
}

/* One smtp_parse_params() call on a fresh writable, NUL-terminated copy of
 * s[0..n) (which may itself hold NULs: parsing stops at the first). */
static int
parse_params(const char *s, size_t n, int max, int utf8, char **copyp, struct smtp_param *p)
{
	char *copy = malloc(n + 1);
	int rc;

	FUZZ_CHECK(copy != NULL);
	memcpy(copy, s, n);
	copy[n] = '\0';
	rc = smtp_parse_params(copy, p, max, utf8);
	*copyp = copy;
	return rc;
}

static void
check_params(const char *s, size_t n, int max)
{
	struct smtp_param p[SMTP_PARAMS_MAX + 1], q[SMTP_PARAMS_MAX + 1];
	char *copy, *copy2;
	const char *prev_end, *k, *v;
	size_t slen = strnlen(s, n);
	int rc, rc2, i, utf8;

	for (utf8 = 0; utf8 < 2; utf8++) {
		rc = parse_params(s, n, SMTP_PARAMS_MAX, utf8, &copy, p);
		FUZZ_CHECK(rc >= -1 && rc <= SMTP_PARAMS_MAX);
		prev_end = copy;
		for (i = 0; i < rc; i++) {
			k = p[i].key;
			v = p[i].value;
			/* Keys and values lie inside the string, in order. */
			FUZZ_CHECK(k >= prev_end && k < copy + slen);
			FUZZ_CHECK(k[0] != '\0' && ref_alnum((unsigned char)k[0]));
			for (; *k != '\0'; k++)
				FUZZ_CHECK(ref_alnum((unsigned char)*k) || *k == '-');
			prev_end = k;
			if (v == NULL)
				continue;
			FUZZ_CHECK(v == k + 1 && v < copy + slen && v[0] != '\0');
			for (; *v != '\0'; v++) {
				FUZZ_CHECK(*v != '=' && (unsigned char)*v > 32 && *v != 127);
				if (!utf8)
					FUZZ_CHECK((unsigned char)*v < 0x80);
			}
			FUZZ_CHECK(ref_utf8_valid((const unsigned char *)p[i].value,
				       (size_t)(v - p[i].value)) == 0);
			prev_end = v;
		}
		FUZZ_CHECK(prev_end <= copy + slen);

		/* A smaller max takes the same list or refuses it whole. */
		rc2 = parse_params(s, n, max, utf8, &copy2, q);
		if (rc >= 0 && rc <= max) {
			FUZZ_CHECK(rc2 == rc);
			for (i = 0; i < rc; i++) {
				FUZZ_CHECK(q[i].key - copy2 == p[i].key - copy);
				FUZZ_CHECK((q[i].value == NULL) == (p[i].value == NULL));
			}
		} else
			FUZZ_CHECK(rc2 == -1);
		/* Without SMTPUTF8, what parses also parses with it. */
		if (!utf8 && rc >= 0) {
			char *copy3;
			int rc3 = parse_params(s, n, SMTP_PARAMS_MAX, 1, &copy3, q);
			FUZZ_CHECK(rc3 == rc);
			free(copy3);
		}
		free(copy);
		free(copy2);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *arg, *colon;
	char verb[SMTP_VERB_MAX + 1];
	size_t arglen;
	char *s;

	/* Command lines are at most 512 octets; a little more keeps the
	 * length checks honest without making each run slow. */
	if (size > 4096)
		return 0;
	if ((s = malloc(size > 0 ? size : 1)) == NULL)
		return 0;
	memcpy(s, data, size);

	check_utf8(s, size);
	check_reply_text(s, size);
	check_enhanced(s, size);
	check_verb(s, size);
	check_path(s, size);
	check_params(s, size, size > 0 ? (unsigned char)s[0] % (SMTP_PARAMS_MAX + 1) : 0);

	/* The way the session uses them: "MAIL FROM:<path> params". */
	if (smtp_parse_verb(s, size, verb, &arg, &arglen) == 0 && arglen > 0 &&
	    (colon = memchr(arg, ':', arglen)) != NULL) {
		size_t off = (size_t)(colon + 1 - arg);
		struct path_result r;

		check_path(colon + 1, arglen - off);
		for (int f = 0; f < 8; f++) {
			parse_path(colon + 1, arglen - off, f, &r);
			if (r.err == SMTP_PATH_OK)
				check_params(colon + 1 + r.restoff, arglen - off - r.restoff,
				    SMTP_PARAMS_MAX);
		}
	}
	free(s);
	return 0;
}
