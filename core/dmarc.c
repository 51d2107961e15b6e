/* dmarc.c - DMARC's rules without the network (see dmarc.h).
 *
 * The organizational domain comes from the Public Suffix List through
 * libpsl rather than a parser of our own: Debian's publicsuffix package
 * ships the list compiled for libpsl (a DAFSA), libpsl applies its wildcard
 * and exception rules, and an update of the package reaches a running
 * system without rebuilding luamta. The list is loaded once per process,
 * on first use: psl_latest() takes the newer of that file and the copy
 * built into libpsl. */
#include "dmarc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpsl.h>

/* The record --------------------------------------------------------- */

static int
wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* s[0..n) with the blanks at both ends taken off. */
static void
trim(const char **s, size_t *n)
{
	while (*n > 0 && wsp(**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && wsp((*s)[*n - 1]))
		(*n)--;
}

static int
is(const char *s, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

static enum dmarc_policy
policy_word(const char *v, size_t n)
{
	if (is(v, n, "none"))
		return DMARC_P_NONE;
	if (is(v, n, "quarantine"))
		return DMARC_P_QUARANTINE;
	if (is(v, n, "reject"))
		return DMARC_P_REJECT;
	return DMARC_P_UNSET;
}

/* A rua/ruf list: URIs (RFC 3986's scheme ":" and something) separated by
 * commas, each optionally followed by "!size". Whether one is valid. */
static int
uri_list(const char *v, size_t n)
{
	int valid = 0;

	while (n > 0) {
		const char *comma = memchr(v, ',', n), *u = v;
		size_t len = comma != NULL ? (size_t)(comma - v) : n, ul, i = 1;
		const char *bang;

		ul = len;
		trim(&u, &ul);
		if ((bang = memchr(u, '!', ul)) != NULL)
			ul = (size_t)(bang - u);
		if (ul > 0 && isalpha((unsigned char)u[0])) {
			while (i < ul &&
			    (isalnum((unsigned char)u[i]) || u[i] == '+' || u[i] == '-' ||
				u[i] == '.'))
				i++;
			if (i < ul && u[i] == ':' && i + 1 < ul)
				valid = 1;
		}
		if (comma == NULL)
			break;
		n -= len + 1;
		v = comma + 1;
	}
	return valid;
}

/* fo: "0", "1", "d", "s", separated by colons. */
static int
fo_ok(const char *v, size_t n)
{
	if (n == 0 || n >= sizeof(((struct dmarc_record *)0)->fo))
		return 0;
	for (size_t i = 0; i < n; i++) {
		int opt = strchr("01ds", v[i]) != NULL && v[i] != '\0';
		if (i % 2 == 0 ? !opt : v[i] != ':')
			return 0;
	}
	return n % 2 == 1;
}

/* A decimal number of 1 to digits digits, or -1. */
static long
number(const char *v, size_t n, size_t digits)
{
	long x = 0;

	if (n == 0 || n > digits)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)v[i]))
			return -1;
		x = x * 10 + (v[i] - '0');
	}
	return x;
}

enum dmarc_rec_status
dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *r)
{
	enum {
		SEEN_P = 1,
		SEEN_SP = 2,
		SEEN_ADKIM = 4,
		SEEN_ASPF = 8,
		SEEN_PCT = 16,
		SEEN_RUA = 32,
		SEEN_RUF = 64,
		SEEN_FO = 128,
		SEEN_RI = 256
	};
	unsigned seen = 0;
	int first = 1, bad_p = 0, bad_sp = 0, last = 0;
	const char *p = txt, *end = txt + len;

	memset(r, 0, sizeof(*r));
	r->pct = 100;
	r->ri = 86400;
	strcpy(r->fo, "0");
	while (!last) {
		const char *semi = memchr(p, ';', (size_t)(end - p));
		const char *tag = p, *eq, *v;
		size_t tl = semi != NULL ? (size_t)(semi - p) : (size_t)(end - p), nl, vl;

		last = semi == NULL;
		p = semi != NULL ? semi + 1 : end;
		trim(&tag, &tl);
		if (tl == 0) {
			if (first)
				return DMARC_REC_NOT;
			continue; /* ";;" or a final ';' */
		}
		if ((eq = memchr(tag, '=', tl)) == NULL) {
			if (first)
				return DMARC_REC_NOT;
			continue; /* not a tag: ignored like an unknown one */
		}
		nl = (size_t)(eq - tag);
		v = eq + 1;
		vl = tl - nl - 1;
		while (nl > 0 && wsp(tag[nl - 1]))
			nl--;
		trim(&v, &vl);
		if (first) {
			/* The version is case-sensitive (6.4: %x44 %x4d ...). */
			if (!is(tag, nl, "v") || vl != 6 || memcmp(v, "DMARC1", 6) != 0)
				return DMARC_REC_NOT;
			first = 0;
			continue;
		}
		/* A repeated tag: the first one counts. */
		if (is(tag, nl, "p") && !(seen & SEEN_P)) {
			seen |= SEEN_P;
			r->p = policy_word(v, vl);
			bad_p = r->p == DMARC_P_UNSET;
		} else if (is(tag, nl, "sp") && !(seen & SEEN_SP)) {
			seen |= SEEN_SP;
			r->sp = policy_word(v, vl);
			bad_sp = r->sp == DMARC_P_UNSET;
		} else if (is(tag, nl, "adkim") && !(seen & SEEN_ADKIM)) {
			seen |= SEEN_ADKIM;
			r->adkim_strict = is(v, vl, "s");
		} else if (is(tag, nl, "aspf") && !(seen & SEEN_ASPF)) {
			seen |= SEEN_ASPF;
			r->aspf_strict = is(v, vl, "s");
		} else if (is(tag, nl, "pct") && !(seen & SEEN_PCT)) {
			long x = number(v, vl, 3);
			seen |= SEEN_PCT;
			if (x >= 0 && x <= 100)
				r->pct = (int)x;
		} else if (is(tag, nl, "rua") && !(seen & SEEN_RUA)) {
			seen |= SEEN_RUA;
			r->rua = uri_list(v, vl);
		} else if (is(tag, nl, "ruf") && !(seen & SEEN_RUF)) {
			seen |= SEEN_RUF;
			r->ruf = uri_list(v, vl);
		} else if (is(tag, nl, "fo") && !(seen & SEEN_FO)) {
			seen |= SEEN_FO;
			if (fo_ok(v, vl)) {
				memcpy(r->fo, v, vl);
				r->fo[vl] = '\0';
			}
		} else if (is(tag, nl, "ri") && !(seen & SEEN_RI)) {
			long x = number(v, vl, 9);
			seen |= SEEN_RI;
			if (x >= 0)
				r->ri = (unsigned)x;
		}
		/* rf (only "afrf" is defined) and unknown tags are ignored
		 * (6.3: unknown tags MUST be ignored). */
	}
	if (first)
		return DMARC_REC_NOT;
	if (!(seen & SEEN_P) || bad_p || bad_sp) {
		/* 6.6.3: without a valid p (or with an invalid sp), a record
		 * that names a valid rua is taken as p=none; else none. */
		if (!r->rua)
			return DMARC_REC_INVALID;
		r->p = DMARC_P_NONE;
		r->sp = DMARC_P_UNSET;
	}
	return DMARC_REC_OK;
}

/* RFC5322.From ---------------------------------------------------------- */

/* TK_WORDS: words one after the other (atoms, quoted strings), taken as
 * one token, as are commas in a row: however long a display name, and
 * however many empty list elements, a mailbox is a few tokens. */
enum tok_kind { TK_END = 0, TK_ATOM, TK_QS, TK_WORDS, TK_SPECIAL };

struct tok {
	enum tok_kind kind;
	char c; /* TK_SPECIAL */
	const char *s;
	size_t n;
};

#define FROM_TOKENS_MAX 128

static int
atext(unsigned char c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL) || c >= 128;
}

static int
word(const struct tok *t)
{
	return t->kind == TK_ATOM || t->kind == TK_QS || t->kind == TK_WORDS;
}

/* Adds cur after the k tokens of t: joined to the word (or comma) before
 * it, else as token k + 1. Returns the new count, or -1 past max. */
static int
push(struct tok *t, int k, int max, const struct tok *cur)
{
	if (k > 0 && word(cur) && word(&t[k - 1])) {
		t[k - 1].kind = TK_WORDS;
		t[k - 1].n = (size_t)(cur->s + cur->n - t[k - 1].s);
		return k;
	}
	if (k > 0 && cur->kind == TK_SPECIAL && cur->c == ',' && t[k - 1].kind == TK_SPECIAL &&
	    t[k - 1].c == ',')
		return k;
	if (k == max)
		return -1;
	t[k] = *cur;
	return k + 1;
}

/* Splits v into tokens (comments and blanks dropped). Returns how many, or
 * -1 for a byte that has no place in an address list (or more than max
 * tokens: no single mailbox has that many). */
static int
tokenize(const char *v, size_t n, struct tok *t, int max)
{
	struct tok cur;
	size_t i = 0;
	int k = 0, depth;

	while (i < n && k != -1) {
		unsigned char c = (unsigned char)v[i];
		if (wsp((char)c)) {
			i++;
			continue;
		}
		if (c == '(') {
			for (depth = 0; i < n; i++) {
				if (v[i] == '\\')
					i++;
				else if (v[i] == '(')
					depth++;
				else if (v[i] == ')' && --depth == 0)
					break;
			}
			if (i >= n)
				return -1;
			i++;
			continue;
		}
		memset(&cur, 0, sizeof(cur));
		cur.s = v + i;
		if (c == '"') {
			for (i++; i < n && v[i] != '"'; i++)
				if (v[i] == '\\')
					i++;
			if (i >= n)
				return -1;
			cur.kind = TK_QS;
			cur.n = (size_t)(v + ++i - cur.s);
		} else if (atext(c) || c == '.') {
			while (i < n && (atext((unsigned char)v[i]) || v[i] == '.'))
				i++;
			cur.kind = TK_ATOM;
			cur.n = (size_t)(v + i - cur.s);
		} else if (strchr("<>@,;:[]", c) != NULL && c != '\0') {
			cur.kind = TK_SPECIAL;
			cur.c = (char)c;
			cur.n = 1;
			i++;
		} else
			return -1;
		k = push(t, k, max, &cur);
	}
	return k;
}

static int
special(const struct tok *t, char c)
{
	return t->kind == TK_SPECIAL && t->c == c;
}

int
dmarc_domain_ok(const char *d)
{
	size_t n = strlen(d), label = 0;

	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i <= n; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63)
				return 0;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_')
			label++;
		else
			return 0;
	}
	return 1;
}

/* addr-spec from t[0..n): local-part "@" domain, the domain into out. */
static enum dmarc_from_status
addr_spec(const struct tok *t, int n, char *out)
{
	int i = 0;

	/* Words joined into one token: the local part is t[0]. */
	if (n > 0 && word(&t[0]))
		i = 1;
	if (i == 0 || i + 2 != n || !special(&t[i], '@') || t[i + 1].kind != TK_ATOM ||
	    t[i + 1].n >= DMARC_DOMAIN_MAX)
		return DMARC_FROM_SYNTAX;
	for (size_t j = 0; j < t[i + 1].n; j++)
		out[j] = (char)tolower((unsigned char)t[i + 1].s[j]);
	out[t[i + 1].n] = '\0';
	return dmarc_domain_ok(out) ? DMARC_FROM_OK : DMARC_FROM_SYNTAX;
}

enum dmarc_from_status
dmarc_from_domain(const char *v, size_t len, char *out)
{
	struct tok t[FROM_TOKENS_MAX];
	int n = tokenize(v, len, t, FROM_TOKENS_MAX), start = -1, end = -1, lt = -1;

	out[0] = '\0';
	if (n < 0)
		return DMARC_FROM_SYNTAX;
	/* One mailbox among the commas (empty list elements aside, as
	 * obs-mbox-list allows); a ':' or ';' is a group. */
	for (int i = 0, seg = 0; i <= n; i++) {
		if (i < n && (special(&t[i], ':') || special(&t[i], ';')))
			return DMARC_FROM_MULTIPLE;
		if (i < n && !special(&t[i], ','))
			continue;
		if (i > seg) {
			if (start != -1)
				return DMARC_FROM_MULTIPLE;
			start = seg;
			end = i;
		}
		seg = i + 1;
	}
	if (start == -1)
		return DMARC_FROM_SYNTAX;
	for (int i = start; i < end && lt == -1; i++)
		if (special(&t[i], '<'))
			lt = i;
	if (lt == -1)
		return addr_spec(t + start, end - start, out);
	/* name-addr: a phrase (words, dots in them as obs-phrase has it),
	 * then the address in angle brackets, and nothing after. */
	for (int i = start; i < lt; i++)
		if (!word(&t[i]))
			return DMARC_FROM_SYNTAX;
	if (!special(&t[end - 1], '>') || end - 1 <= lt + 1)
		return DMARC_FROM_SYNTAX;
	return addr_spec(t + lt + 1, end - 1 - (lt + 1), out);
}

/* Organizational domains -------------------------------------------------- */

static const psl_ctx_t *dmarc_psl;

void
dmarc_org_domain(const char *d, char *out)
{
	const char *reg = NULL, *dot;

	if (dmarc_psl == NULL && (dmarc_psl = psl_latest(NULL)) == NULL)
		dmarc_psl = psl_builtin();
	if (dmarc_psl != NULL)
		reg = psl_registrable_domain(dmarc_psl, d);
	else if ((dot = strrchr(d, '.')) != NULL) {
		/* No list at all: every TLD is a public suffix (its "*" rule). */
		while (dot > d && dot[-1] != '.')
			dot--;
		reg = dot > d ? dot : NULL;
	}
	/* NULL: d is a public suffix itself, its own organization. */
	snprintf(out, DMARC_DOMAIN_MAX, "%s", reg != NULL ? reg : d);
}

int
dmarc_aligned(const char *from, const char *a, int strict)
{
	char of[DMARC_DOMAIN_MAX], oa[DMARC_DOMAIN_MAX], la[DMARC_DOMAIN_MAX];
	size_t n = strlen(a);

	if (strcasecmp(from, a) == 0)
		return 1;
	if (strict || n == 0 || n >= sizeof(la))
		return 0;
	for (size_t i = 0; i <= n; i++)
		la[i] = (char)tolower((unsigned char)a[i]);
	dmarc_org_domain(from, of);
	dmarc_org_domain(la, oa);
	return strcmp(of, oa) == 0;
}

/* The verdict ---------------------------------------------------------------- */

enum dmarc_result
dmarc_evaluate(const struct dmarc_record *rec, int sub, int spf_r, int spf_s, int dkim_r,
    int dkim_s, unsigned sample, enum dmarc_policy *policy, enum dmarc_policy *disposition)
{
	int spf, dkim;

	*policy = *disposition = DMARC_P_NONE;
	if (rec == NULL)
		return DMARC_NONE;
	*policy = sub && rec->sp != DMARC_P_UNSET ? rec->sp : rec->p;
	spf = rec->aspf_strict ? spf_s : spf_r;
	dkim = rec->adkim_strict ? dkim_s : dkim_r;
	if (spf || dkim)
		return DMARC_PASS;
	*disposition = *policy;
	/* Outside the pct sample: one step less (6.6.4, 6.3 pct). */
	if (sample >= (unsigned)rec->pct) {
		if (*disposition == DMARC_P_REJECT)
			*disposition = DMARC_P_QUARANTINE;
		else if (*disposition == DMARC_P_QUARANTINE)
			*disposition = DMARC_P_NONE;
	}
	return DMARC_FAIL;
}

const char *
dmarc_result_str(enum dmarc_result r)
{
	static const char *const names[] = { "none", "pass", "fail", "temperror", "permerror" };

	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "permerror";
}

const char *
dmarc_policy_str(enum dmarc_policy p)
{
	return p == DMARC_P_REJECT ? "reject" : p == DMARC_P_QUARANTINE ? "quarantine" : "none";
}
