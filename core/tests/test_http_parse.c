/* test_http_parse.c - tables for luamta.http's pure parts: tokens (methods
 * and field names), the values a script may send, and the split of
 * response header lines, folded lines and the status line included. */

#include <string.h>

#include "http_parse.h"
#include "test.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void
test_token(void)
{
	static const struct {
		const char *s;
		int ok;
	} t[] = {
		{ "GET", 1 },
		{ "PROPFIND", 1 },
		{ "X-Custom_Header.1", 1 },
		{ "!#$%&'*+-.^_`|~", 1 },
		{ "", 0 },
		{ "GET ", 0 },
		{ "X:Y", 0 },
		{ "a\rb", 0 },
		{ "caf\xc3\xa9", 0 },
		{ "(x)", 0 },
		{ "a/b", 0 },
	};

	for (size_t i = 0; i < NELEM(t); i++)
		CHECK_MSG(http_token_ok(t[i].s, strlen(t[i].s)) == t[i].ok, "case %zu: \"%s\"", i,
		    t[i].s);
	/* An embedded NUL is no token character. */
	CHECK(!http_token_ok("A\0B", 3));
}

static void
test_value(void)
{
	CHECK(http_value_ok("", 0));
	CHECK(http_value_ok("text/plain; charset=utf-8", 25));
	CHECK(http_value_ok("caf\xc3\xa9 \t x", 9));
	CHECK(!http_value_ok("a\r\nX-Injected: 1", 16));
	CHECK(!http_value_ok("a\nb", 3));
	CHECK(!http_value_ok("a\rb", 3));
	CHECK(!http_value_ok("a\0b", 3));
}

static void
test_header_line(void)
{
	static const struct {
		const char *line;
		enum http_line kind;
		const char *name, *value;
	} t[] = {
		{ "Content-Type: text/plain\r\n", HTTP_LINE_FIELD, "content-type", "text/plain" },
		{ "X-A:b", HTTP_LINE_FIELD, "x-a", "b" },
		{ "X-Empty:   \r\n", HTTP_LINE_FIELD, "x-empty", "" },
		{ "Set-Cookie: a=1; Path=/ \t\r\n", HTTP_LINE_FIELD, "set-cookie", "a=1; Path=/" },
		{ "X-Colon: a: b\n", HTTP_LINE_FIELD, "x-colon", "a: b" },
		{ " more of it \r\n", HTTP_LINE_FOLD, NULL, "more of it" },
		{ "\tx\r\n", HTTP_LINE_FOLD, NULL, "x" },
		{ "HTTP/1.1 200 OK\r\n", HTTP_LINE_SKIP, NULL, NULL },
		{ "\r\n", HTTP_LINE_SKIP, NULL, NULL },
		{ "", HTTP_LINE_SKIP, NULL, NULL },
		{ "Bad Name: x\r\n", HTTP_LINE_SKIP, NULL, NULL },
		{ "Space-Before : x\r\n", HTTP_LINE_SKIP, NULL, NULL },
		{ ": no name\r\n", HTTP_LINE_SKIP, NULL, NULL },
	};
	char buf[128];
	struct http_field f;

	for (size_t i = 0; i < NELEM(t); i++) {
		size_t len = strlen(t[i].line);
		enum http_line kind;

		memcpy(buf, t[i].line, len + 1);
		kind = http_header_line(buf, len, &f);
		CHECK_MSG(kind == t[i].kind, "case %zu: %s, want %s", i, http_line_str(kind),
		    http_line_str(t[i].kind));
		if (kind != t[i].kind)
			continue;
		if (t[i].name != NULL)
			CHECK_MSG(
			    f.nlen == strlen(t[i].name) && memcmp(f.name, t[i].name, f.nlen) == 0,
			    "case %zu: name \"%.*s\"", i, (int)f.nlen, f.name);
		if (t[i].value != NULL)
			CHECK_MSG(f.vlen == strlen(t[i].value) &&
				memcmp(f.value, t[i].value, f.vlen) == 0,
			    "case %zu: value \"%.*s\"", i, (int)f.vlen, f.value);
	}
	CHECK_STR(http_line_str(HTTP_LINE_FOLD), "fold");
	CHECK_STR(http_line_str((enum http_line)7), "?");
}

int
main(void)
{
	test_token();
	test_value();
	test_header_line();
	return test_done("test_http_parse");
}
