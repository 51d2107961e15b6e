/* http_parse.h - the pure parts of luamta.http: which method and header
 * names a script may send, which values are safe on the wire, and how one
 * line of a response's header block splits into a name and a value.
 * No I/O, no allocation, no libcurl. */
#ifndef LUAMTA_HTTP_PARSE_H
#define LUAMTA_HTTP_PARSE_H

#include <stddef.h>

/* Whether s[0..len) is a non-empty RFC 9110 5.6.2 token (a method or a
 * field name). */
int http_token_ok(const char *s, size_t len);
/* Whether a field value may be sent: no CR, LF or NUL (a script's value
 * can then neither end the header block nor smuggle another field). */
int http_value_ok(const char *s, size_t len);

enum http_line {
	HTTP_LINE_FIELD = 0, /* name: value */
	HTTP_LINE_FOLD,      /* obs-fold: more of the previous field's value */
	HTTP_LINE_SKIP,      /* the status line, the blank end, or malformed */
};
const char *http_line_str(enum http_line);

struct http_field {
	char *name; /* into the line, lower-cased in place; FIELD only */
	size_t nlen;
	const char *value; /* into the line, without surrounding blanks */
	size_t vlen;
};

/* Splits one response header line (its CRLF or LF may still end it).
 * Lower-cases the name in place, so callers can join repeated fields by
 * comparing bytes. */
enum http_line http_header_line(char *line, size_t len, struct http_field *);

#endif
