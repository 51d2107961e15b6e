/* authres.c - Authentication-Results text (RFC 8601, see authres.h).
 *
 * The grammar (RFC 8601 2.2) builds on MIME's: an authserv-id and
 * property values are "value" (RFC 2045: a token, or a quoted-string),
 * and a property value may also be an address or a domain. Comments
 * (parenthesised, nested, with quoted pairs) may stand between any two
 * words. */
#include "authres.h"

#include <string.h>

/* RFC 2045 5.1's tspecials, which a token cannot hold. */
static int
tspecial(unsigned char c)
{
	return strchr("()<>@,;:\\\"/[]?=", c) != NULL && c != '\0';
}

static int
token_char(unsigned char c)
{
	return c > 32 && c < 127 && !tspecial(c);
}

/* Skips blanks, line breaks and comments from i; returns the index after
 * them, or n + 1 for a comment that never ends. */
static size_t
skip_cfws(const char *s, size_t n, size_t i)
{
	int depth = 0;

	for (; i < n; i++) {
		char c = s[i];
		if (depth > 0) {
			if (c == '\\')
				i++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
		} else if (c == '(')
			depth = 1;
		else if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
			return i;
	}
	return depth > 0 ? n + 1 : n;
}

int
authres_servid(const char *v, size_t n, char *out, size_t outsz)
{
	size_t i = skip_cfws(v, n, 0), o = 0;

	if (i >= n || outsz == 0)
		return -1;
	if (v[i] == '"') {
		for (i++; i < n && v[i] != '"'; i++) {
			if (v[i] == '\\' && ++i == n)
				return -1;
			if (v[i] == '\r' || v[i] == '\n')
				continue; /* a fold inside the string */
			if (((unsigned char)v[i] < 32 && v[i] != '\t') || v[i] == 127)
				return -1; /* no name has control characters */
			if (o + 1 >= outsz)
				return -1;
			out[o++] = v[i];
		}
		if (i == n)
			return -1;
	} else {
		/* Bytes past ASCII are allowed in the name (RFC 6532). */
		for (; i < n && (token_char((unsigned char)v[i]) || (unsigned char)v[i] >= 128);
		     i++) {
			if (o + 1 >= outsz)
				return -1;
			out[o++] = v[i];
		}
	}
	if (o == 0)
		return -1;
	out[o] = '\0';
	return (int)o;
}

int
authres_keyword(const char *s, size_t n)
{
	if (n == 0 || n > 64)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int alnum =
		    (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || (c != '-' && c != '_')))
			return 0;
	}
	return 1;
}

int
authres_value_ok(const char *s, size_t n)
{
	if (n > 255)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 32 || s[i] == 127)
			return 0;
	return 1;
}

static int
add(struct authres *ar, const char *s, size_t n)
{
	if (n > AUTHRES_MAX - ar->len)
		return -1;
	memcpy(ar->buf + ar->len, s, n);
	ar->len += n;
	ar->buf[ar->len] = '\0';
	return 0;
}

static int
add_str(struct authres *ar, const char *s)
{
	return add(ar, s, strlen(s));
}

/* Whether v is a token, or [local-part] "@" domain of token characters
 * (RFC 8601 2.2's pvalue): written as it is. */
static int
plain(const char *v, size_t n, int at_ok)
{
	const char *at = at_ok ? memchr(v, '@', n) : NULL;

	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!token_char((unsigned char)v[i]) && v + i != at)
			return 0;
	return at == NULL || at + 1 < v + n;
}

/* v as a quoted-string, '"' and '\\' escaped; nothing added on failure. */
static int
add_quoted(struct authres *ar, const char *v, size_t n)
{
	size_t mark = ar->len;

	if (add(ar, "\"", 1) == -1)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (((v[i] == '"' || v[i] == '\\') && add(ar, "\\", 1) == -1) ||
		    add(ar, v + i, 1) == -1)
			goto fail;
	if (add(ar, "\"", 1) == 0)
		return 0;
fail:
	authres_reset(ar, mark);
	return -1;
}

/* v as a value: plain, else a quoted-string. */
static int
add_value(struct authres *ar, const char *v, size_t n, int at_ok)
{
	if (!authres_value_ok(v, n))
		return -1;
	return plain(v, n, at_ok) ? add(ar, v, n) : add_quoted(ar, v, n);
}

int
authres_begin(struct authres *ar, const char *servid, size_t n)
{
	ar->len = 0;
	ar->buf[0] = '\0';
	if (n == 0)
		return -1;
	return add_value(ar, servid, n, 0);
}

size_t
authres_mark(const struct authres *ar)
{
	return ar->len;
}

void
authres_reset(struct authres *ar, size_t mark)
{
	if (mark <= ar->len) {
		ar->len = mark;
		ar->buf[mark] = '\0';
	}
}

/* Adds the pieces in order, or nothing. */
static int
add_all(struct authres *ar, const char *const *parts)
{
	size_t mark = ar->len;

	for (; *parts != NULL; parts++)
		if (add_str(ar, *parts) == -1) {
			authres_reset(ar, mark);
			return -1;
		}
	return 0;
}

int
authres_method(struct authres *ar, const char *method, const char *result)
{
	const char *parts[] = { "; ", method, "=", result, NULL };

	if (!authres_keyword(method, strlen(method)) || !authres_keyword(result, strlen(result)))
		return -1;
	return add_all(ar, parts);
}

int
authres_none(struct authres *ar)
{
	return add_str(ar, "; none");
}

int
authres_reason(struct authres *ar, const char *v, size_t n)
{
	size_t mark = ar->len;

	if (add_str(ar, " reason=") == -1)
		return -1;
	/* Always quoted: a reason is text. */
	if (authres_value_ok(v, n) && add_quoted(ar, v, n) == 0)
		return 0;
	authres_reset(ar, mark);
	return -1;
}

int
authres_comment(struct authres *ar, const char *text, size_t n)
{
	size_t mark = ar->len;

	if (!authres_value_ok(text, n) || add_str(ar, " (") == -1)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (((text[i] == '(' || text[i] == ')' || text[i] == '\\') &&
			add(ar, "\\", 1) == -1) ||
		    add(ar, text + i, 1) == -1)
			goto fail;
	if (add(ar, ")", 1) == 0)
		return 0;
fail:
	authres_reset(ar, mark);
	return -1;
}

int
authres_prop(struct authres *ar, const char *ptype_property, const char *v, size_t n)
{
	size_t mark = ar->len;
	const char *parts[] = { " ", ptype_property, "=", NULL };

	if (add_all(ar, parts) == -1)
		return -1;
	if (add_value(ar, v, n, 1) == -1) {
		authres_reset(ar, mark);
		return -1;
	}
	return 0;
}
