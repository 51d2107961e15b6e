/* test_smtp_client_parse.c - table tests for the client's reply reader,
 * enhanced codes, EHLO keywords, address checks and dot-stuffing (fed
 * whole and in every split, since the client stuffs in pieces). */
#include <stdlib.h>
#include <string.h>

#include "smtp_client_parse.h"
#include "test.h"

/* Feeds the lines of a reply (LF-separated in the table) one by one. */
static int
feed(struct smtp_creply *r, const char *lines)
{
	const char *p = lines, *nl;
	int rc = 0;

	smtp_creply_init(r);
	if (*p == '\0')
		return smtp_creply_line(r, p, 0);
	while (*p != '\0') {
		nl = strchr(p, '\n');
		rc = smtp_creply_line(r, p, nl != NULL ? (size_t)(nl - p) : strlen(p));
		if (rc != 0 || nl == NULL)
			break;
		p = nl + 1;
	}
	return rc;
}

static void
test_replies(void)
{
	static const struct {
		const char *lines;
		int rc, code;
		const char *text, *enh;
	} t[] = {
		{ "250 ok", 1, 250, "ok", "" },
		{ "250", 1, 250, "", "" },
		{ "220-mx.example ESMTP\n220 ready", 1, 220, "mx.example ESMTP ready", "" },
		{ "550-5.1.1 no such\n550 5.1.1 user", 1, 550, "5.1.1 no such user", "5.1.1" },
		{ "550-5.1.1 a\n550 5.7.1 b", 1, 550, "5.1.1 a 5.7.1 b", "5.1.1" },
		{ "250-mx\n250-PIPELINING\n250", 1, 250, "mx PIPELINING", "" },
		{ "250-first", 0, 250, "first", "" },
		/* Inconsistent codes, bad separators, codes out of range. */
		{ "250-a\n251 b", -1, 250, "a", "" },
		{ "250xok", -1, 0, "", "" },
		{ "25 ok", -1, 0, "", "" },
		{ "199 no", -1, 0, "", "" },
		{ "600 no", -1, 0, "", "" },
		{ "260 no", -1, 0, "", "" },
		{ "abc", -1, 0, "", "" },
		{ "", -1, 0, "", "" },
		/* A control byte or 8-bit text is masked. */
		{ "421 a\tb\x80", 1, 421, "a?b?", "" },
		/* The wrong class is no enhanced code for this reply. */
		{ "550 4.1.1 hm", 1, 550, "4.1.1 hm", "" },
	};
	struct smtp_creply r;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int rc = feed(&r, t[i].lines);

		CHECK_MSG(rc == t[i].rc, "case %zu: rc %d", i, rc);
		CHECK_MSG(r.code == t[i].code, "case %zu: code %d", i, r.code);
		CHECK_STR(r.text, t[i].text);
		CHECK_STR(r.enh, t[i].enh);
	}
	/* After the last line nothing more is taken. */
	CHECK(feed(&r, "250 ok") == 1);
	CHECK(smtp_creply_line(&r, "250 again", 9) == -1);
}

static void
test_too_many_lines(void)
{
	struct smtp_creply r;
	int i, rc = 0;

	smtp_creply_init(&r);
	for (i = 0; i < SMTP_CREPLY_LINES_MAX + 5 && rc == 0; i++)
		rc = smtp_creply_line(&r, "250-x", 5);
	CHECK(rc == -1);
	CHECK(i == SMTP_CREPLY_LINES_MAX + 1);
}

static void
test_long_text(void)
{
	struct smtp_creply r;
	char line[SMTP_CREPLY_LINE_MAX];

	memset(line, 'a', sizeof(line));
	memcpy(line, "250-", 4);
	smtp_creply_init(&r);
	CHECK(smtp_creply_line(&r, line, sizeof(line)) == 0);
	line[3] = ' ';
	CHECK(smtp_creply_line(&r, line, sizeof(line)) == 1);
	CHECK(r.len == sizeof(r.text) - 1);
	CHECK(strlen(r.text) == r.len);
}

static void
test_enhanced(void)
{
	static const struct {
		const char *text;
		int cls;
		size_t want;
	} t[] = {
		{ "5.1.1 x", 5, 5 },
		{ "5.1.1", 0, 5 },
		{ "2.0.0 ok", 2, 5 },
		{ "4.123.456 x", 4, 9 },
		{ "4.1234.1 x", 4, 0 },
		{ "5.1.1x", 5, 0 },
		{ "5.1. x", 5, 0 },
		{ "5..1 x", 5, 0 },
		{ "3.1.1 x", 0, 0 },
		{ "5.1.1 x", 4, 0 },
		{ "5.1", 5, 0 },
		{ "", 0, 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t n = smtp_creply_enh_len(t[i].text, strlen(t[i].text), t[i].cls);

		CHECK_MSG(n == t[i].want, "case %zu (%s): %zu", i, t[i].text, n);
	}
}

static void
test_result_text(void)
{
	char out[64];

	CHECK_STR(smtp_creply_result_text(out, sizeof(out), 550, "5.1.1 gone"), "5.1.1 gone");
	CHECK_STR(smtp_creply_result_text(out, sizeof(out), 550, "gone"), "5.0.0 gone");
	CHECK_STR(smtp_creply_result_text(out, sizeof(out), 451, "5.1.1 hm"), "4.0.0 5.1.1 hm");
	CHECK_STR(smtp_creply_result_text(out, sizeof(out), 250, ""), "2.0.0");
	CHECK_STR(smtp_creply_result_text(out, 6, 550, "gone"), "5.0.0");
}

static void
test_caps(void)
{
	static const char *const lines[] = {
		"PIPELINING",
		"size 10240000",
		"8BITMIME",
		"SMTPUTF8",
		"STARTTLS",
		"CHUNKING",
		"DSN",
		"AUTH LOGIN PLAIN",
		"PIPELININGX",
		"ENHANCEDSTATUSCODES",
	};
	struct smtp_caps c;

	memset(&c, 0, sizeof(c));
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		smtp_caps_line(&c, lines[i], strlen(lines[i]));
	CHECK(c.pipelining && c.eightbitmime && c.smtputf8 && c.starttls && c.chunking && c.dsn);
	CHECK(c.auth && c.auth_plain);
	CHECK(c.size == 10240000);

	memset(&c, 0, sizeof(c));
	smtp_caps_line(&c, "AUTH=LOGIN", 10);
	CHECK(c.auth && !c.auth_plain);
	smtp_caps_line(&c, "AUTH=PLAIN", 10);
	CHECK(c.auth_plain);
	smtp_caps_line(&c, "SIZE", 4);
	CHECK(c.size == 0);
	smtp_caps_line(&c, "SIZE 12x", 8);
	CHECK(c.size == 0);
	smtp_caps_line(&c, "SIZE 99999999999999999999999", 28);
	CHECK(c.size == 0);
	smtp_caps_line(&c, "SIZE 0", 6);
	CHECK(c.size == 0);
	smtp_caps_line(&c, "STARTTLSX", 9);
	CHECK(!c.starttls);
}

static void
test_paths(void)
{
	char big[300];

	CHECK(smtp_client_path_ok(""));
	CHECK(smtp_client_path_ok("a@example.net"));
	CHECK(smtp_client_path_ok("\xc3\xa9@example.net"));
	CHECK(!smtp_client_path_ok("a@b\r\nRCPT TO:<c@d"));
	CHECK(!smtp_client_path_ok("a>b"));
	CHECK(!smtp_client_path_ok("a\x7f"));
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK(!smtp_client_path_ok(big));
	big[256] = '\0';
	CHECK(smtp_client_path_ok(big));
}

/* Stuffs in (whole, then split at every point with a small out buffer)
 * and checks the output with its end against want. */
static void
check_stuff(const char *in, const char *want)
{
	size_t inlen = strlen(in), wlen = strlen(want);
	char *out = malloc(2 * inlen + 8);

	for (size_t split = 0; split <= inlen; split++) {
		for (size_t outsz = 2; outsz <= 5; outsz += 3) {
			struct smtp_stuff st;
			size_t i = 0, o = 0, used, lim;

			smtp_stuff_init(&st);
			while (i < inlen) {
				lim = i < split ? split : inlen;
				o += smtp_stuff(&st, in + i, lim - i, &used, out + o, outsz);
				i += used;
			}
			o += smtp_stuff_end(&st, out + o);
			CHECK_MSG(o == wlen && memcmp(out, want, o) == 0,
			    "\"%s\" split %zu out %zu: \"%.*s\"", in, split, outsz, (int)o, out);
		}
	}
	free(out);
}

static void
test_stuffing(void)
{
	check_stuff("", ".\r\n");
	check_stuff("a\r\n", "a\r\n.\r\n");
	check_stuff("a", "a\r\n.\r\n");
	check_stuff(".\r\n", "..\r\n.\r\n");
	check_stuff("a\r\n.b\r\n..\r\n", "a\r\n..b\r\n...\r\n.\r\n");
	check_stuff(".", "..\r\n.\r\n");
	check_stuff("a\nb\n", "a\r\nb\r\n.\r\n");
	check_stuff("a\n.\n", "a\r\n..\r\n.\r\n");
	check_stuff("a\r", "a\r\n.\r\n");
	check_stuff("a.\r\nb. .\r\n", "a.\r\nb. .\r\n.\r\n");
	check_stuff("x\r.y\r\n", "x\r.y\r\n.\r\n");
}

int
main(void)
{
	test_replies();
	test_too_many_lines();
	test_long_text();
	test_enhanced();
	test_result_text();
	test_caps();
	test_paths();
	test_stuffing();
	return test_done("test_smtp_client_parse");
}
