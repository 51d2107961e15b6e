/* http_parse.c - the pure parts of luamta.http (see http_parse.h). */
#include "http_parse.h"

#include <string.h>

static const char *const http_line_names[] = { "field", "fold", "skip" };

const char *
http_line_str(enum http_line l)
{
	return (unsigned)l < sizeof(http_line_names) / sizeof(http_line_names[0]) ?
	    http_line_names[l] :
	    "?";
}

/* RFC 9110 5.6.2: tchar. */
static int
http_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int
http_token_ok(const char *s, size_t len)
{
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!http_tchar((unsigned char)s[i]))
			return 0;
	return 1;
}

int
http_value_ok(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return 0;
	return 1;
}

static int
http_blank(char c)
{
	return c == ' ' || c == '\t';
}

enum http_line
http_header_line(char *line, size_t len, struct http_field *f)
{
	size_t i, end;

	memset(f, 0, sizeof(*f));
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (len == 0)
		return HTTP_LINE_SKIP;
	/* RFC 9112 5.2: a recipient may replace an obs-fold with a space; the
	 * caller appends the value to the previous field's. */
	if (http_blank(line[0])) {
		for (i = 0; i < len && http_blank(line[i]); i++)
			;
		for (end = len; end > i && http_blank(line[end - 1]); end--)
			;
		f->value = line + i;
		f->vlen = end - i;
		return HTTP_LINE_FOLD;
	}
	for (i = 0; i < len && line[i] != ':'; i++)
		;
	/* No colon (the status line "HTTP/1.1 200 OK" among them), or a name
	 * that is no token (RFC 9112 5.1 forbids blanks before the colon). */
	if (i == len || !http_token_ok(line, i))
		return HTTP_LINE_SKIP;
	for (size_t k = 0; k < i; k++)
		if (line[k] >= 'A' && line[k] <= 'Z')
			line[k] = (char)(line[k] - 'A' + 'a');
	f->name = line;
	f->nlen = i;
	for (i++; i < len && http_blank(line[i]); i++)
		;
	for (end = len; end > i && http_blank(line[end - 1]); end--)
		;
	f->value = line + i;
	f->vlen = end - i;
	return HTTP_LINE_FIELD;
}
