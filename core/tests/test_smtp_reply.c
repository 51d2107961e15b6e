/* test_smtp_reply.c - table tests for reply formatting and the reply size
 * limit: enhanced codes per line, continuation marks, and that a reply
 * either fits whole or is refused (never cut). */
#include <stdlib.h>
#include <string.h>

#include "smtp_reply.h"
#include "test.h"

static void
test_format(void)
{
	static const struct {
		int code;
		const char *enh, *text, *want;
	} t[] = {
		{ 250, NULL, "Ok", "250 Ok\r\n" },
		{ 250, "2.0.0", "Ok", "250 2.0.0 Ok\r\n" },
		/* A line's own code wins; the first line's code serves the rest. */
		{ 550, "5.0.0", "5.7.1 no\nreally", "550-5.7.1 no\r\n550 5.7.1 really\r\n" },
		{ 550, "5.0.0", "no\n5.1.1 gone", "550-5.0.0 no\r\n550 5.1.1 gone\r\n" },
		{ 250, NULL, "mx\nPIPELINING\nHELP", "250-mx\r\n250-PIPELINING\r\n250 HELP\r\n" },
		{ 354, NULL, "", "354 \r\n" },
		{ 421, "4.3.2", "a\n\nb", "421-4.3.2 a\r\n421-4.3.2 \r\n421 4.3.2 b\r\n" },
	};
	char out[SMTP_REPLY_MAX];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t n = smtp_reply_format(out, sizeof(out), t[i].code, t[i].enh, t[i].text);
		CHECK_MSG(n == strlen(t[i].want), "case %zu: length %zu", i, n);
		out[n] = '\0';
		CHECK_STR(out, t[i].want);
	}
}

/* A reply that does not fit is refused whole, whatever the buffer size. */
static void
test_never_partial(void)
{
	const char *text = "first line\nsecond line\nthird line";
	char full[256], out[256];
	size_t len = smtp_reply_format(full, sizeof(full), 250, "2.0.0", text);

	CHECK(len > 0);
	for (size_t sz = 0; sz <= len; sz++) {
		memset(out, 'Z', sizeof(out));
		CHECK_MSG(smtp_reply_format(out, sz, 250, "2.0.0", text) == 0,
		    "a %zu-byte buffer took a %zu-byte reply", sz, len);
	}
	CHECK(smtp_reply_format(out, len + 1, 250, "2.0.0", text) == len);
	CHECK(memcmp(out, full, len) == 0);
}

/* What smtp_reply_size_ok accepts always formats whole into SMTP_REPLY_MAX
 * (with the longest enhanced codes), and the bound is tight enough to take
 * the replies clients see in practice. */
static void
test_size_ok(void)
{
	static char text[SMTP_REPLY_MAX * 2], out[SMTP_REPLY_MAX];
	/* Up to 496 bytes, so that no line passes 512 octets with the
	 * longest code added (test_line_limit covers that). */
	static const size_t lens[] = { 0, 1, 100, 300, 490, 496 };

	CHECK(smtp_reply_size_ok(1, 506) == 0);
	CHECK(smtp_reply_size_ok(SMTP_REPLY_MAX, 0) == -1);
	CHECK(smtp_reply_size_ok(1, SMTP_REPLY_MAX) == -1);
	CHECK(smtp_reply_size_ok((size_t)-1, (size_t)-1) == -1);
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		for (size_t n = 1; n <= 600; n++) {
			size_t o = 0, textlen = n * lens[li];

			if (smtp_reply_size_ok(n, textlen) == -1)
				continue;
			for (size_t i = 0; i < n; i++) {
				memset(text + o, 'x', lens[li]);
				o += lens[li];
				text[o++] = i + 1 < n ? '\n' : '\0';
			}
			CHECK_MSG(smtp_reply_format(out, sizeof(out), 550, "5.123.123", text) > 0,
			    "%zu lines of %zu bytes were allowed but do not fit", n, lens[li]);
		}
	}
	/* 16 lines of 490 bytes fit; 17 lines of 500 do not. */
	CHECK(smtp_reply_size_ok(16, 16 * 490) == 0);
	CHECK(smtp_reply_size_ok(17, 17 * 500) == -1);
}

/* RFC 5321 4.5.3.1.5: no line over 512 octets with its CRLF, however the
 * enhanced code added to it makes it grow. */
static void
test_line_limit(void)
{
	char text[600], out[SMTP_REPLY_MAX];
	size_t n;

	memset(text, 'x', 496);
	text[496] = '\0';
	n = smtp_reply_format(out, sizeof(out), 550, "5.123.123", text);
	CHECK(n == 512);
	memset(text, 'x', 497);
	text[497] = '\0';
	CHECK(smtp_reply_format(out, sizeof(out), 550, "5.123.123", text) == 0);
	CHECK(smtp_reply_format(out, sizeof(out), 550, "5.0.0", text) == 4 + 6 + 497 + 2);
	/* A line with its own code gets none added: 506 bytes of text fit. */
	memcpy(text, "5.1.1 ", 6);
	memset(text + 6, 'x', 500);
	text[506] = '\0';
	CHECK(smtp_reply_format(out, sizeof(out), 550, "5.0.0", text) == 512);
	/* The second line of a reply counts on its own. */
	snprintf(text, sizeof(text), "ok\n%0507d", 0);
	CHECK(smtp_reply_format(out, sizeof(out), 250, NULL, text) == 0);
}

int
main(void)
{
	test_line_limit();
	test_format();
	test_never_partial();
	test_size_ok();
	return test_done("test_smtp_reply");
}
