/* spf_record.c - the text side of SPF: the record's grammar (RFC 7208
 * 4.6.1, 5, 6) and macros (7). A record is parsed whole before it is
 * evaluated, so a syntax error anywhere is a permerror even after a
 * mechanism that would have matched (4.6). */
#include "spf.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int
is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int
is_alnum(int c)
{
	return is_alpha(c) || is_digit(c);
}

const char *
spf_result_str(enum spf_result r)
{
	static const char *const names[] = { "none", "neutral", "pass", "fail", "softfail",
		"temperror", "permerror" };

	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "permerror";
}

int
spf_is_record(const char *txt, size_t len)
{
	return len >= 6 && strncasecmp(txt, "v=spf1", 6) == 0 && (len == 6 || txt[6] == ' ');
}

/* Macros ---------------------------------------------------------------- */

static int
macro_delim(int c)
{
	return c != '\0' && strchr(".-+,/_=", c) != NULL;
}

/* One macro-expand at in[0] == '%': its length, or 0 when malformed. The
 * letter, the digits (0: none) and the other transformers are returned. */
static size_t
macro_one(const char *in, size_t len, int explain, char *letter, unsigned *digits, int *rev,
    const char **delims, size_t *ndelims)
{
	size_t i = 2;
	int c;

	if (len < 2)
		return 0;
	if (in[1] == '%' || in[1] == '_' || in[1] == '-') {
		*letter = in[1];
		return 2;
	}
	if (in[1] != '{' || len < 4)
		return 0;
	c = in[2] | 0x20;
	if (strchr("slodiphv", c) == NULL && !(explain && strchr("crt", c) != NULL))
		return 0;
	*letter = in[2];
	i = 3;
	*digits = 0;
	if (i < len && is_digit(in[i])) {
		if (in[i] == '0') /* the digit transformer is nonzero (7.3) */
			return 0;
		while (i < len && is_digit(in[i])) {
			if (*digits < 1000)
				*digits = *digits * 10 + (unsigned)(in[i] - '0');
			i++;
		}
	}
	*rev = 0;
	if (i < len && (in[i] | 0x20) == 'r') {
		*rev = 1;
		i++;
	}
	*delims = in + i;
	while (i < len && macro_delim(in[i]))
		i++;
	*ndelims = (size_t)(in + i - *delims);
	if (i >= len || in[i] != '}')
		return 0;
	return i + 1;
}

int
spf_macro_ok(const char *in, size_t len, int explain)
{
	for (size_t i = 0; i < len; i++) {
		char letter;
		unsigned digits;
		int rev;
		const char *delims;
		size_t nd, n;

		if (in[i] < 0x21 || in[i] > 0x7e) {
			/* macro-literal is visible ASCII; explain-strings
			 * also have spaces (6.2) */
			if (!(explain && in[i] == ' '))
				return 0;
			continue;
		}
		if (in[i] != '%')
			continue;
		if ((n = macro_one(
			 in + i, len - i, explain, &letter, &digits, &rev, &delims, &nd)) == 0)
			return 0;
		i += n - 1;
	}
	return 1;
}

int
spf_macro_uses_p(const char *in, size_t len)
{
	for (size_t i = 0; i + 2 < len; i++)
		if (in[i] == '%' && in[i + 1] == '{' && (in[i + 2] | 0x20) == 'p')
			return 1;
	return 0;
}

struct outbuf {
	char *p;
	size_t n, cap;
	int over;
};

static void
out_put(struct outbuf *o, const char *s, size_t n)
{
	if (o->n + n >= o->cap) {
		o->over = 1;
		return;
	}
	memcpy(o->p + o->n, s, n);
	o->n += n;
}

/* A value's parts, transformed and joined with "." (7.3); url: the
 * letter was upper case, so everything but the unreserved characters of
 * RFC 3986 is escaped. */
static void
macro_value(struct outbuf *o, const char *val, unsigned digits, int rev, const char *delims,
    size_t nd, int url)
{
	const char *part[128], *end[128];
	size_t np = 0, first = 0;
	const char *p = val;

	if (nd == 0) {
		delims = ".";
		nd = 1;
	}
	/* Split; a value of more parts than fit keeps its rightmost ones. */
	for (;;) {
		const char *q = p;

		while (*q != '\0' && memchr(delims, *q, nd) == NULL)
			q++;
		if (np == 128) {
			memmove(part, part + 1, sizeof(part[0]) * 127);
			memmove(end, end + 1, sizeof(end[0]) * 127);
			np--;
		}
		part[np] = p;
		end[np++] = q;
		if (*q == '\0')
			break;
		p = q + 1;
	}
	if (rev)
		for (size_t i = 0; i < np / 2; i++) {
			const char *a = part[i], *b = end[i];
			part[i] = part[np - 1 - i];
			end[i] = end[np - 1 - i];
			part[np - 1 - i] = a;
			end[np - 1 - i] = b;
		}
	if (digits > 0 && digits < np)
		first = np - digits;
	for (size_t i = first; i < np; i++) {
		if (i > first)
			out_put(o, ".", 1);
		for (const char *c = part[i]; c < end[i]; c++) {
			char esc[4];

			if (!url || is_alnum(*c) || strchr("-._~", *c) != NULL) {
				out_put(o, c, 1);
				continue;
			}
			snprintf(esc, sizeof(esc), "%%%02X", (unsigned char)*c);
			out_put(o, esc, 3);
		}
	}
}

static const char *
macro_var(const struct spf_macro_vars *v, int c)
{
	switch (c | 0x20) {
	case 's':
		return v->s;
	case 'l':
		return v->l;
	case 'o':
		return v->o;
	case 'd':
		return v->d;
	case 'i':
		return v->i;
	case 'p':
		return v->p != NULL ? v->p : "unknown";
	case 'v':
		return v->v;
	case 'h':
		return v->h;
	case 'c':
		return v->c;
	case 'r':
		return v->r;
	default:
		return v->t;
	}
}

int
spf_expand(const struct spf_macro_vars *v, const char *in, size_t len, int explain, int domain,
    char *out, size_t outsz)
{
	struct outbuf o = { out, 0, outsz, 0 };
	char *dot;

	if (outsz == 0 || !spf_macro_ok(in, len, explain))
		return -1;
	for (size_t i = 0; i < len && !o.over; i++) {
		char letter;
		unsigned digits = 0;
		int rev = 0;
		const char *delims = NULL, *val;
		size_t nd = 0, n;

		if (in[i] != '%') {
			out_put(&o, in + i, 1);
			continue;
		}
		n = macro_one(in + i, len - i, explain, &letter, &digits, &rev, &delims, &nd);
		i += n - 1;
		if (letter == '%')
			out_put(&o, "%", 1);
		else if (letter == '_')
			out_put(&o, " ", 1);
		else if (letter == '-')
			out_put(&o, "%20", 3);
		else if ((val = macro_var(v, letter)) != NULL)
			macro_value(
			    &o, val, digits, rev, delims, nd, letter >= 'A' && letter <= 'Z');
	}
	if (o.over)
		return -1;
	out[o.n] = '\0';
	if (!domain)
		return (int)o.n;
	if (o.n > 0 && out[o.n - 1] == '.')
		out[--o.n] = '\0';
	/* Too long for a name: labels go from the left (7.3). */
	while (o.n > 253 && (dot = strchr(out, '.')) != NULL) {
		size_t cut = (size_t)(dot + 1 - out);
		memmove(out, dot + 1, o.n - cut + 1);
		o.n -= cut;
	}
	return (int)o.n;
}

int
spf_domain_ok(const char *name)
{
	size_t len = strlen(name), labels = 0, l = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || name[i] == '.') {
			if (l == 0 || l > 63)
				return 0;
			labels++;
			l = 0;
		} else
			l++;
	}
	return labels >= 2;
}

/* Terms ----------------------------------------------------------------- */

/* toplabel = ( *alphanum ALPHA *alphanum ) /
 *            ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) */
static int
toplabel_ok(const char *s, size_t n)
{
	int alpha = 0, dash = 0;

	if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '-')
			dash = 1;
		else if (is_alpha(s[i]))
			alpha = 1;
		else if (!is_digit(s[i]))
			return 0;
	}
	return alpha || dash;
}

/* domain-spec = macro-string domain-end, where domain-end is "." toplabel
 * ["."] or a macro-expand: checked before expansion (7.1). */
static int
domain_spec_ok(const char *s, size_t n)
{
	size_t e = n, b;

	if (n == 0 || !spf_macro_ok(s, n, 0))
		return 0;
	/* Ends in a macro-expand: "}" of %{...}, or %%, %_, %- (the
	 * latter when the "%" before it is not itself escaped). */
	if (s[n - 1] == '}' && memchr(s, '%', n) != NULL)
		return 1;
	if (n >= 2 && s[n - 2] == '%' && strchr("%_-", s[n - 1]) != NULL) {
		size_t k = 0;
		for (size_t i = n - 1; i > 0 && s[i - 1] == '%'; i--)
			k++;
		if (k % 2 == 1)
			return 1;
	}
	if (s[e - 1] == '.')
		e--;
	b = e;
	while (b > 0 && s[b - 1] != '.')
		b--;
	return b > 0 && toplabel_ok(s + b, e - b);
}

/* "/" N (dbl: "//" N) at the end of s[0..*n), N without a leading zero:
 * strips it and returns N; -1 when there is none, -2 when N is over max. */
static int
cidr_suffix(const char *s, size_t *n, int dbl, int max)
{
	size_t e = *n, b = e;
	long v = 0;

	while (b > 0 && is_digit(s[b - 1]) && e - b < 4)
		b--;
	if (b == e || b == 0 || s[b - 1] != '/' || (s[b] == '0' && e - b > 1))
		return -1;
	if (dbl != (b >= 2 && s[b - 2] == '/'))
		return -1;
	for (size_t i = b; i < e; i++)
		v = v * 10 + (s[i] - '0');
	*n = b - 1 - (size_t)dbl;
	return v > max ? -2 : (int)v;
}

static int
ip4_ok(const char *s, size_t n, unsigned char out[4])
{
	char buf[16];
	int dots = 0;

	if (n == 0 || n >= sizeof(buf))
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			dots++;
			/* no leading zeros: "01" is not a dec-octet (4.6.1) */
			if (i + 2 < n && s[i + 1] == '0' && is_digit(s[i + 2]))
				return 0;
		} else if (!is_digit(s[i]))
			return 0;
	}
	if (dots != 3 || (n > 1 && s[0] == '0' && is_digit(s[1])))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(AF_INET, buf, out) == 1;
}

static int
ip6_ok(const char *s, size_t n, unsigned char out[16])
{
	char buf[64];

	if (n == 0 || n >= sizeof(buf))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(AF_INET6, buf, out) == 1;
}

static const struct {
	const char *name;
	enum spf_mech mech;
} spf_mechs[] = {
	{ "all", SPF_M_ALL },
	{ "include", SPF_M_INCLUDE },
	{ "a", SPF_M_A },
	{ "mx", SPF_M_MX },
	{ "ptr", SPF_M_PTR },
	{ "ip4", SPF_M_IP4 },
	{ "ip6", SPF_M_IP6 },
	{ "exists", SPF_M_EXISTS },
};

/* One directive (s, n octets). Returns 0, or -1 with *why. */
static int
directive_parse(const char *s, size_t n, struct spf_term *t, const char **why)
{
	size_t k = 0, rest;
	int c4 = -1, c6 = -1;
	const char *arg;

	memset(t, 0, sizeof(*t));
	t->qual = SPF_PASS;
	switch (s[0]) {
	case '+':
		t->qual = SPF_PASS;
		k = 1;
		break;
	case '-':
		t->qual = SPF_FAIL;
		k = 1;
		break;
	case '~':
		t->qual = SPF_SOFTFAIL;
		k = 1;
		break;
	case '?':
		t->qual = SPF_NEUTRAL;
		k = 1;
		break;
	}
	s += k;
	n -= k;
	for (k = 0; k < n && is_alnum(s[k]); k++)
		;
	*why = "unknown mechanism";
	for (size_t i = 0;; i++) {
		if (i == sizeof(spf_mechs) / sizeof(spf_mechs[0]))
			return -1;
		if (strlen(spf_mechs[i].name) == k && strncasecmp(s, spf_mechs[i].name, k) == 0) {
			t->mech = spf_mechs[i].mech;
			break;
		}
	}
	arg = s + k;
	rest = n - k;
	*why = "bad CIDR length";
	switch (t->mech) {
	case SPF_M_A:
	case SPF_M_MX:
		/* dual-cidr-length = [ "/" N4 ] [ "//" N6 ], taken from the
		 * end: a domain-spec may hold "/" itself */
		if ((c6 = cidr_suffix(arg, &rest, 1, 128)) == -2 ||
		    (c4 = cidr_suffix(arg, &rest, 0, 32)) == -2)
			return -1;
		t->cidr4 = c4 >= 0 ? c4 : 32;
		t->cidr6 = c6 >= 0 ? c6 : 128;
		break;
	case SPF_M_IP4:
		if ((c4 = cidr_suffix(arg, &rest, 0, 32)) == -2)
			return -1;
		t->cidr4 = c4 >= 0 ? c4 : 32;
		*why = "bad ip4 address";
		if (rest < 1 || arg[0] != ':' || !ip4_ok(arg + 1, rest - 1, t->net))
			return -1;
		return 0;
	case SPF_M_IP6:
		if ((c6 = cidr_suffix(arg, &rest, 0, 128)) == -2)
			return -1;
		t->cidr6 = c6 >= 0 ? c6 : 128;
		*why = "bad ip6 address";
		if (rest < 1 || arg[0] != ':' || !ip6_ok(arg + 1, rest - 1, t->net))
			return -1;
		return 0;
	default:
		break;
	}
	if (rest == 0) {
		*why = "domain-spec missing";
		return t->mech == SPF_M_INCLUDE || t->mech == SPF_M_EXISTS ? -1 : 0;
	}
	*why = "bad mechanism syntax";
	if (t->mech == SPF_M_ALL || arg[0] != ':')
		return -1;
	*why = "bad domain-spec";
	if (!domain_spec_ok(arg + 1, rest - 1))
		return -1;
	t->spec = arg + 1;
	t->speclen = rest - 1;
	return 0;
}

void
spf_record_free(struct spf_record *rec)
{
	free(rec->terms);
	memset(rec, 0, sizeof(*rec));
}

int
spf_record_parse(const char *txt, size_t len, struct spf_record *rec, const char **why)
{
	size_t max = 1, i;

	memset(rec, 0, sizeof(*rec));
	*why = "not an SPF record";
	if (!spf_is_record(txt, len))
		return -1;
	*why = "not printable ASCII";
	for (i = 0; i < len; i++) {
		if (txt[i] < 0x20 || txt[i] > 0x7e)
			return -1;
		max += txt[i] == ' ';
	}
	if ((rec->terms = calloc(max, sizeof(*rec->terms))) == NULL) {
		*why = "out of memory";
		return -1;
	}
	for (i = 6; i < len;) {
		const char *s;
		size_t n = 0, k = 0;

		while (i < len && txt[i] == ' ')
			i++;
		if (i == len)
			break;
		s = txt + i;
		while (i + n < len && txt[i + n] != ' ')
			n++;
		i += n;
		/* A modifier: name "=" ..., name = ALPHA *(ALPHA/DIGIT/-/_/.) */
		if (is_alpha(s[0]))
			for (k = 1; k < n && (is_alnum(s[k]) || strchr("-_.", s[k]) != NULL); k++)
				;
		if (k > 0 && k < n && s[k] == '=') {
			const char **slot = NULL;
			size_t *slot_len = NULL;

			if (k == 8 && strncasecmp(s, "redirect", 8) == 0) {
				slot = &rec->redirect;
				slot_len = &rec->redirect_len;
			} else if (k == 3 && strncasecmp(s, "exp", 3) == 0) {
				slot = &rec->exp;
				slot_len = &rec->exp_len;
			}
			*why = "bad modifier";
			if (slot == NULL) {
				if (!spf_macro_ok(s + k + 1, n - k - 1, 1))
					goto fail;
				continue;
			}
			*why = slot == &rec->exp ? "exp= twice" : "redirect= twice";
			if (*slot != NULL)
				goto fail;
			*why = "bad domain-spec";
			if (!domain_spec_ok(s + k + 1, n - k - 1))
				goto fail;
			*slot = s + k + 1;
			*slot_len = n - k - 1;
			continue;
		}
		if (directive_parse(s, n, &rec->terms[rec->nterms], why) == -1)
			goto fail;
		rec->nterms++;
	}
	*why = "";
	return 0;
fail:
	spf_record_free(rec);
	return -1;
}
