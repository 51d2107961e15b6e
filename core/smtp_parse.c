/* smtp_parse.c - pure SMTP parsers: command verb, <path> (RFC 5321 4.1.2),
 * ESMTP parameters, enhanced status codes and reply text from scripts.
 * Every parser is bounded by the length it is given, never allocates and
 * never looks at the locale: SMTP syntax is ASCII, so we classify octets
 * ourselves rather than trust <ctype.h>. */

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string.h>

#include "smtp_parse.h"

/* RFC 5321 4.5.3.1.3: a whole reverse-path or forward-path, including the
 * angle brackets and any source route. */
#define SMTP_PATH_OCTETS 256
/* RFC 1035 2.3.4: a DNS label. Applied to LDH labels only; a U-label's
 * length in UTF-8 octets says little about its A-label (RFC 5890). */
#define SMTP_LABEL_MAX 63

static int
is_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int
is_alnum(unsigned char c)
{
	return is_alpha(c) || is_digit(c);
}

static unsigned char
ascii_upper(unsigned char c)
{
	return (c >= 'a' && c <= 'z') ? c - 'a' + 'A' : c;
}

/* Case-insensitive compare of n ASCII octets; strncasecmp() would follow
 * the locale (a Turkish dotless i must not match "IPv6"). */
static int
ascii_caseeq(const char *a, const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (ascii_upper((unsigned char)a[i]) != ascii_upper((unsigned char)b[i]))
			return 0;
	return 1;
}

/* RFC 5322 3.2.3 atext, which RFC 5321 4.1.2 uses for Atom. */
static int
is_atext(unsigned char c)
{
	return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Length of the well-formed UTF-8 sequence at p (at most len octets): 1 for
 * ASCII, 2-4 for a multi-octet sequence, 0 when it is truncated, overlong
 * (C0, C1, E0 80-9F, F0 80-8F), a UTF-16 surrogate (ED A0-BF) or above
 * U+10FFFF (F4 90-BF, F5-FF), following RFC 3629 section 4. Overlongs are
 * refused because they smuggle "/", "." or NUL past byte-wise checks.
 * Continuation octets are checked in order, so a NUL stops the scan. */
static size_t
utf8_seq(const unsigned char *p, size_t len)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, k;

	if (len == 0)
		return 0;
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (len < n || p[1] < lo || p[1] > hi)
		return 0;
	for (k = 2; k < n; k++)
		if (p[k] < 0x80 || p[k] > 0xbf)
			return 0;
	return n;
}

int
smtp_utf8_valid(const char *p, size_t len)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t i, n;

	for (i = 0; i < len; i += n)
		if ((n = utf8_seq(u + i, len - i)) == 0)
			return -1;
	return 0;
}

int
smtp_parse_verb(const char *line, size_t len, char *verb, const char **arg, size_t *arglen)
{
	size_t vlen, a, e;
	unsigned char c;

	*arg = "";
	*arglen = 0;
	verb[0] = '\0';
	for (vlen = 0; vlen < len && line[vlen] != ' '; vlen++) {
		c = (unsigned char)line[vlen];
		/* A bounded verb buffer: longer words are not commands we
		 * know, and NUL, CR or 8-bit octets are not commands at all. */
		if (vlen == SMTP_VERB_MAX || (!is_alnum(c) && c != '-' && c != '_')) {
			verb[0] = '\0';
			return -1;
		}
		verb[vlen] = (char)ascii_upper(c);
	}
	verb[vlen] = '\0';
	if (vlen == 0)
		return -1;
	if (vlen == len)
		return 0;

	/* RFC 5321 4.1.1 wants exactly one SP, but 4.5.3 asks us to be
	 * liberal here: extra spaces around the argument carry no meaning. */
	for (a = vlen + 1; a < len && line[a] == ' '; a++)
		;
	for (e = len; e > a && line[e - 1] == ' '; e--)
		;
	if (e > a) {
		*arg = line + a;
		*arglen = e - a;
	}
	return 0;
}

const char *
smtp_path_err_str(enum smtp_path_err err)
{
	switch (err) {
	case SMTP_PATH_OK:
		return "ok";
	case SMTP_PATH_SYNTAX:
		return "syntax";
	case SMTP_PATH_NULL:
		return "null";
	case SMTP_PATH_TOO_LONG:
		return "too-long";
	case SMTP_PATH_UTF8:
		return "utf8";
	}
	return "unknown";
}

/* A non-ASCII octet at s[*ip] where RFC 6531 allows UTF8-non-ascii: only
 * with SMTPUTF8, and only as one well-formed sequence. */
static enum smtp_path_err
path_utf8(const char *s, size_t len, size_t *ip, int utf8)
{
	size_t n;

	if (!utf8)
		return SMTP_PATH_UTF8;
	n = utf8_seq((const unsigned char *)s + *ip, len - *ip);
	if (n == 0)
		return SMTP_PATH_UTF8;
	*ip += n;
	return SMTP_PATH_OK;
}

/* Local-part = Dot-string / Quoted-string (RFC 5321 4.1.2, RFC 6531 3.3).
 * Leaves *ip on the first octet after it. */
static enum smtp_path_err
path_local(const char *s, size_t len, size_t *ip, int utf8)
{
	enum smtp_path_err err;
	unsigned char c;
	size_t i = *ip, atom;

	if (i < len && s[i] == '"') {
		for (i++;;) {
			if (i >= len)
				return SMTP_PATH_SYNTAX;
			c = (unsigned char)s[i];
			if (c == '"')
				break;
			if (c == '\\') {
				/* quoted-pairSMTP: a backslash quotes only
				 * %d32-126, never CR, LF or NUL. */
				if (i + 1 >= len || (unsigned char)s[i + 1] < 32 ||
				    (unsigned char)s[i + 1] > 126)
					return SMTP_PATH_SYNTAX;
				i += 2;
			} else if (c >= 0x80) {
				if ((err = path_utf8(s, len, &i, utf8)) != 0)
					return err;
			} else if (c < 32 || c > 126)
				return SMTP_PATH_SYNTAX;
			else
				i++;
		}
		*ip = i + 1;
		return SMTP_PATH_OK;
	}

	/* Dot-string: no empty atom, so no leading, trailing or double dot. */
	for (;;) {
		atom = i;
		while (i < len) {
			c = (unsigned char)s[i];
			if (c >= 0x80) {
				if ((err = path_utf8(s, len, &i, utf8)) != 0)
					return err;
			} else if (is_atext(c))
				i++;
			else
				break;
		}
		if (i == atom)
			return SMTP_PATH_SYNTAX;
		if (i < len && s[i] == '.') {
			i++;
			continue;
		}
		break;
	}
	*ip = i;
	return SMTP_PATH_OK;
}

/* Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str],
 * or a U-label with SMTPUTF8 (RFC 6531 3.3). We check UTF-8 form only;
 * IDNA rules for U-labels are the resolver's business. */
static enum smtp_path_err
path_domain(const char *s, size_t len, size_t *ip, int utf8)
{
	enum smtp_path_err err;
	unsigned char c;
	size_t i = *ip, label;
	int ascii;

	for (;;) {
		label = i;
		ascii = 1;
		while (i < len) {
			c = (unsigned char)s[i];
			if (c >= 0x80) {
				if ((err = path_utf8(s, len, &i, utf8)) != 0)
					return err;
				ascii = 0;
			} else if (is_alnum(c) || c == '-')
				i++;
			else
				break;
		}
		if (i == label || s[label] == '-' || s[i - 1] == '-')
			return SMTP_PATH_SYNTAX;
		if (ascii && i - label > SMTP_LABEL_MAX)
			return SMTP_PATH_TOO_LONG;
		if (i < len && s[i] == '.') {
			i++;
			continue;
		}
		break;
	}
	*ip = i;
	return SMTP_PATH_OK;
}

/* IPv4-address-literal = Snum 3("." Snum); Snum = 1*3DIGIT, 0-255. Parsed
 * by hand: inet_pton() refuses the leading zeros the grammar allows. */
static int
path_ipv4(const char *p, size_t len)
{
	size_t i = 0, digits;
	int part, val;

	for (part = 0; part < 4; part++) {
		if (part > 0) {
			if (i >= len || p[i] != '.')
				return -1;
			i++;
		}
		for (val = 0, digits = 0; i < len && is_digit(p[i]); i++) {
			if (++digits > 3)
				return -1;
			val = val * 10 + (p[i] - '0');
		}
		if (digits == 0 || val > 255)
			return -1;
	}
	return i == len ? 0 : -1;
}

/* address-literal = "[" ( IPv4 / "IPv6:" IPv6-addr / General ) "]"
 * (RFC 5321 4.1.3). s[*ip] is the '['. */
static enum smtp_path_err
path_literal(const char *s, size_t len, size_t *ip)
{
	char addr[INET6_ADDRSTRLEN];
	struct in6_addr in6;
	const char *body, *colon;
	unsigned char c;
	size_t i, blen, tlen, k;

	for (i = *ip + 1; i < len && s[i] != ']'; i++) {
		/* dcontent = %d33-90 / %d94-126: no space, no brackets,
		 * no backslash, no UTF-8. */
		c = (unsigned char)s[i];
		if (c < 33 || c > 126 || c == '[' || c == '\\')
			return SMTP_PATH_SYNTAX;
	}
	if (i >= len)
		return SMTP_PATH_SYNTAX;
	body = s + *ip + 1;
	blen = i - (*ip + 1);
	*ip = i + 1;

	if ((colon = memchr(body, ':', blen)) == NULL)
		return path_ipv4(body, blen) == 0 ? SMTP_PATH_OK : SMTP_PATH_SYNTAX;

	/* Standardized-tag = Ldh-str: it must end in a letter or digit. */
	tlen = (size_t)(colon - body);
	if (tlen == 0 || !is_alnum((unsigned char)body[tlen - 1]))
		return SMTP_PATH_SYNTAX;
	for (k = 0; k < tlen; k++)
		if (!is_alnum((unsigned char)body[k]) && body[k] != '-')
			return SMTP_PATH_SYNTAX;
	if (tlen == 4 && ascii_caseeq(body, "IPv6", 4)) {
		/* The tag is registered, so its content must really be an
		 * IPv6 address; inet_pton() takes a C string, so copy. */
		blen -= 5;
		if (blen == 0 || blen >= sizeof(addr))
			return SMTP_PATH_SYNTAX;
		memcpy(addr, body + 5, blen);
		addr[blen] = '\0';
		if (inet_pton(AF_INET6, addr, &in6) != 1)
			return SMTP_PATH_SYNTAX;
		return SMTP_PATH_OK;
	}
	/* General-address-literal needs 1*dcontent after the colon. */
	return blen > tlen + 1 ? SMTP_PATH_OK : SMTP_PATH_SYNTAX;
}

enum smtp_path_err
smtp_parse_path(const char *s, size_t len, int allow_null, int allow_postmaster, int utf8,
    char *out, size_t outsz, const char **rest)
{
	enum smtp_path_err err;
	size_t i, mbox, llen, dom, dlen = 0;

	if (outsz > 0)
		out[0] = '\0';
	if (len < 2 || s[0] != '<')
		return SMTP_PATH_SYNTAX;
	if (s[1] == '>') {
		if (!allow_null)
			return SMTP_PATH_NULL;
		*rest = s + 2;
		return SMTP_PATH_OK;
	}

	/* A-d-l = At-domain *("," At-domain): obsolete source routes must
	 * be accepted and their hosts ignored (RFC 5321 4.1.2, C.2); never
	 * relay through them. */
	i = 1;
	if (s[i] == '@') {
		for (;;) {
			i++;
			if ((err = path_domain(s, len, &i, utf8)) != 0)
				return err;
			if (i + 1 < len && s[i] == ',' && s[i + 1] == '@') {
				i++;
				continue;
			}
			break;
		}
		if (i >= len || s[i] != ':')
			return SMTP_PATH_SYNTAX;
		i++;
	}

	mbox = i;
	if ((err = path_local(s, len, &i, utf8)) != 0)
		return err;
	llen = i - mbox;
	if (i < len && s[i] == '>') {
		/* RCPT TO:<Postmaster> without a domain (RFC 5321 4.1.1.3,
		 * 4.5.1); not for MAIL, nor behind a source route. */
		if (!allow_postmaster || mbox != 1 || llen != 10 ||
		    !ascii_caseeq(s + mbox, "postmaster", 10))
			return SMTP_PATH_SYNTAX;
	} else {
		if (i >= len || s[i] != '@')
			return SMTP_PATH_SYNTAX;
		dom = ++i;
		if (i < len && s[i] == '[')
			err = path_literal(s, len, &i);
		else
			err = path_domain(s, len, &i, utf8);
		if (err != 0)
			return err;
		dlen = i - dom;
		if (i >= len || s[i] != '>')
			return SMTP_PATH_SYNTAX;
	}

	/* i is on the '>', so the path is i + 1 octets long. */
	if (llen > SMTP_LOCAL_MAX || dlen > SMTP_DOMAIN_MAX || i + 1 > SMTP_PATH_OCTETS ||
	    i - mbox >= outsz)
		return SMTP_PATH_TOO_LONG;
	memcpy(out, s + mbox, i - mbox);
	out[i - mbox] = '\0';
	*rest = s + i + 1;
	return SMTP_PATH_OK;
}

int
smtp_parse_params(char *s, struct smtp_param *p, int max, int utf8)
{
	unsigned char c;
	char *key, *value;
	size_t n;
	int count = 0;

	for (;;) {
		while (*s == ' ')
			s++;
		if (*s == '\0')
			return count;
		if (count >= max)
			return -1;

		/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
		key = s;
		if (!is_alnum((unsigned char)*s))
			return -1;
		while (is_alnum((unsigned char)*s) || *s == '-')
			s++;

		/* esmtp-value = 1*(%d33-60 / %d62-126), plus UTF8-non-ascii
		 * with SMTPUTF8 (RFC 6531 3.3). A bare "=" or a second "="
		 * would let two parsers disagree on where a value ends. */
		value = NULL;
		if (*s == '=') {
			*s++ = '\0';
			value = s;
			while (*s != '\0' && *s != ' ') {
				c = (unsigned char)*s;
				if (c >= 0x80) {
					n = utf8_seq((unsigned char *)s, strnlen(s, 4));
					if (!utf8 || n == 0)
						return -1;
					s += n;
				} else if (c < 33 || c > 126 || c == '=')
					return -1;
				else
					s++;
			}
			if (s == value)
				return -1;
		}
		if (*s == ' ')
			*s++ = '\0';
		else if (*s != '\0')
			return -1;
		p[count].key = key;
		p[count].value = value;
		count++;
	}
}

size_t
smtp_enhanced_len(const char *text, size_t len)
{
	size_t i, part, digits;

	/* status-code = class "." subject "." detail (RFC 3463 2) */
	if (len < 6 || (text[0] != '2' && text[0] != '4' && text[0] != '5'))
		return 0;
	i = 1;
	for (part = 0; part < 2; part++) {
		if (i >= len || text[i] != '.')
			return 0;
		i++;
		for (digits = 0; i < len && is_digit(text[i]); i++)
			if (++digits > 3)
				return 0;
		if (digits == 0)
			return 0;
	}
	if (i >= len || text[i] != ' ')
		return 0;
	return i + 1;
}

int
smtp_reply_text_ok(const char *text, size_t len)
{
	const unsigned char *u = (const unsigned char *)text;
	size_t i, n;

	if (len > SMTP_REPLY_TEXT_MAX)
		return -1;
	for (i = 0; i < len; i += n) {
		/* CR or LF would let a script forge extra reply lines;
		 * other controls (NUL, HT, ESC, DEL) have no place in a
		 * reply and end up in logs. */
		if (u[i] < 0x80 && (u[i] < 32 || u[i] == 127))
			return -1;
		if ((n = utf8_seq(u + i, len - i)) == 0)
			return -1;
	}
	return 0;
}
