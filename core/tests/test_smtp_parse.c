/* test_smtp_parse.c - table tests for the pure SMTP parsers: verbs, <path>
 * (RFC 5321 4.1.2 grammar, limits, SMTPUTF8), ESMTP parameters, enhanced
 * status codes, reply text and UTF-8 validation. Each row states one rule;
 * a row that fails names its input. */

#include <stdint.h>
#include <string.h>

#include "smtp_parse.h"
#include "test.h"

/* Lets a table row carry a string with NULs in it: the length is the
 * literal's, not strlen()'s. */
#define BYTES(s) (s), (sizeof(s) - 1)

struct verb_case {
	const char *line;
	size_t len;
	int ret;
	const char *verb;
	const char *arg;
};

static const struct verb_case verb_cases[] = {
	{ BYTES("MAIL FROM:<x>"), 0, "MAIL", "FROM:<x>" },
	{ BYTES("mail FROM:<x>"), 0, "MAIL", "FROM:<x>" },
	{ BYTES("eHlO client.example"), 0, "EHLO", "client.example" },
	{ BYTES("QUIT"), 0, "QUIT", "" },
	{ BYTES("NOOP   "), 0, "NOOP", "" },
	{ BYTES("RCPT   TO:<a@b.c>  "), 0, "RCPT", "TO:<a@b.c>" },
	{ BYTES("HELO a b"), 0, "HELO", "a b" },
	{ BYTES("X-FOO_1 arg"), 0, "X-FOO_1", "arg" },
	{ BYTES("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"), 0, "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", "" },
	{ BYTES("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456"), -1, "", "" },
	{ BYTES("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456 x"), -1, "", "" },
	{ BYTES(""), -1, "", "" },
	{ BYTES(" NOOP"), -1, "", "" },
	{ BYTES("NO\tOP"), -1, "", "" },
	{ BYTES("NOOP\t"), -1, "", "" },
	{ BYTES("NO:OP"), -1, "", "" },
	{ BYTES("MAIL:FROM:<x>"), -1, "", "" },
	{ BYTES("NO\xc3\x9cP"), -1, "", "" },
	{ BYTES("MA\0L FROM:<x>"), -1, "", "" },
	{ BYTES("QUIT\r"), -1, "", "" },
	/* Only len bytes count: the rest of the buffer is not the line. */
	{ "NOOPXYZ", 4, 0, "NOOP", "" },
	{ "DATA trailing", 5, 0, "DATA", "" },
};

static void
test_verbs(void)
{
	char verb[SMTP_VERB_MAX + 1];
	const char *arg;
	size_t i, arglen;
	int ret;

	for (i = 0; i < sizeof(verb_cases) / sizeof(verb_cases[0]); i++) {
		const struct verb_case *c = &verb_cases[i];

		memset(verb, 'Z', sizeof(verb));
		ret = smtp_parse_verb(c->line, c->len, verb, &arg, &arglen);
		CHECK_MSG(ret == c->ret, "verb row %zu \"%s\": ret %d", i, c->line, ret);
		/* Even on failure, verb is a string a caller may log. */
		CHECK_MSG(memchr(verb, '\0', sizeof(verb)) != NULL,
		    "verb row %zu: verb not terminated", i);
		if (ret != 0 || c->ret != 0)
			continue;
		CHECK_MSG(strcmp(verb, c->verb) == 0, "verb row %zu: \"%s\"", i, verb);
		CHECK_MSG(arglen == strlen(c->arg) && memcmp(arg, c->arg, arglen) == 0,
		    "verb row %zu: arg \"%.*s\"", i, (int)arglen, arg);
		/* The argument points into the line, not a copy. */
		if (arglen > 0)
			CHECK_MSG(arg > c->line && arg + arglen <= c->line + c->len,
			    "verb row %zu: arg outside line", i);
	}
}

enum {
	NUL_OK = 1, /* allow_null */
	PM_OK = 2,  /* allow_postmaster */
	UTF8 = 4,   /* SMTPUTF8 */
};

struct path_case {
	const char *s;
	size_t len;
	int flags;
	enum smtp_path_err err;
	const char *out;  /* on SMTP_PATH_OK */
	const char *rest; /* on SMTP_PATH_OK */
};

/* input, flags, error, mailbox, rest */
static const struct path_case path_cases[] = {
	/* Plain mailboxes and what follows the '>'. */
	{ BYTES("<a@b.c>"), 0, SMTP_PATH_OK, "a@b.c", "" },
	{ BYTES("<a@b.c> SIZE=10"), 0, SMTP_PATH_OK, "a@b.c", " SIZE=10" },
	{ BYTES("<a@b.c>>"), 0, SMTP_PATH_OK, "a@b.c", ">" },
	{ BYTES("<User.Name+tag@Sub.Example-1.ORG>"), 0, SMTP_PATH_OK,
	    "User.Name+tag@Sub.Example-1.ORG", "" },
	{ BYTES("<!#$%&'*+-/=?^_`{|}~@x.y>"), 0, SMTP_PATH_OK, "!#$%&'*+-/=?^_`{|}~@x.y", "" },
	{ BYTES("<a@123>"), 0, SMTP_PATH_OK, "a@123", "" },
	{ BYTES("<a@b>"), 0, SMTP_PATH_OK, "a@b", "" },

	/* The null path. */
	{ BYTES("<>"), NUL_OK, SMTP_PATH_OK, "", "" },
	{ BYTES("<> BODY=8BITMIME"), NUL_OK, SMTP_PATH_OK, "", " BODY=8BITMIME" },
	{ BYTES("<>"), 0, SMTP_PATH_NULL, NULL, NULL },
	{ BYTES("<>"), PM_OK | UTF8, SMTP_PATH_NULL, NULL, NULL },

	/* Quoted local parts, kept as sent. */
	{ BYTES("<\"a b\"@x.org>"), 0, SMTP_PATH_OK, "\"a b\"@x.org", "" },
	{ BYTES("<\"a\\\"b\\\\c\"@x.org>"), 0, SMTP_PATH_OK, "\"a\\\"b\\\\c\"@x.org", "" },
	{ BYTES("<\"a@b\"@x.org>"), 0, SMTP_PATH_OK, "\"a@b\"@x.org", "" },
	{ BYTES("<\"a>b\"@x.org>"), 0, SMTP_PATH_OK, "\"a>b\"@x.org", "" },
	{ BYTES("<\"\\ \"@x.org>"), 0, SMTP_PATH_OK, "\"\\ \"@x.org", "" },
	{ BYTES("<\"\"@x.org>"), 0, SMTP_PATH_OK, "\"\"@x.org", "" },
	{ BYTES("<\"a\\\x01\"@x.org>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<\"a\tb\"@x.org>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<\"a\\\"@x.org>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<\"open@x.org>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<\"a\"b@x.org>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a\"b\"@x.org>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },

	/* Dot-string atoms. */
	{ BYTES("<.a@x.org>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a.@x.org>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a..b@x.org>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a b@x.org>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a(b)@x.org>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a\0b@x.org>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@b@x.org>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },

	/* Domains. */
	{ BYTES("<a@-b.c>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@b-.c>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@b..c>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@b.c.>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@.b.c>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@b_c.d>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@b c>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<@b.c>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@b.c\r\n>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },

	/* Address literals (RFC 5321 4.1.3). */
	{ BYTES("<a@[1.2.3.4]>"), 0, SMTP_PATH_OK, "a@[1.2.3.4]", "" },
	{ BYTES("<a@[255.255.255.255]>"), 0, SMTP_PATH_OK, "a@[255.255.255.255]", "" },
	{ BYTES("<a@[0.0.0.0]>"), 0, SMTP_PATH_OK, "a@[0.0.0.0]", "" },
	{ BYTES("<a@[001.02.3.4]>"), 0, SMTP_PATH_OK, "a@[001.02.3.4]", "" },
	{ BYTES("<a@[256.1.1.1]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[1.2.3.300]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[1.2.3]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[1.2.3.4.5]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[1.2.3.0004]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[1..3.4]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[1.2.3.4.]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[ 1.2.3.4]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[1.2.3.4>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[example.org]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@x[1.2.3.4]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[IPv6:::1]>"), 0, SMTP_PATH_OK, "a@[IPv6:::1]", "" },
	{ BYTES("<a@[ipv6:2001:db8::1]>"), 0, SMTP_PATH_OK, "a@[ipv6:2001:db8::1]", "" },
	{ BYTES("<a@[IPv6:2001:db8:0:0:0:0:0:1]>"), 0, SMTP_PATH_OK,
	    "a@[IPv6:2001:db8:0:0:0:0:0:1]", "" },
	{ BYTES("<a@[IPv6:::ffff:192.0.2.1]>"), 0, SMTP_PATH_OK, "a@[IPv6:::ffff:192.0.2.1]", "" },
	{ BYTES("<a@[IPv6:2001:db8::g]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[IPv6:1:2:3:4:5:6:7:8:9]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[IPv6:1.2.3.4]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[IPv6:]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[IPv6:fe80::1%eth0]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[IPv6:1:2:3:4:5:6:7:8:1:2:3:4:5:6:7:8:1:2:3:4:5:6:7]>"), 0, SMTP_PATH_SYNTAX,
	    NULL, NULL },
	{ BYTES("<a@[x-tag:any=thing]>"), 0, SMTP_PATH_OK, "a@[x-tag:any=thing]", "" },
	{ BYTES("<a@[tag:]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[:x]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[tag-:x]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[t_g:x]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[tag:a b]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[tag:a\\b]>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@[tag:\xc3\xbc]>"), UTF8, SMTP_PATH_SYNTAX, NULL, NULL },

	/* Source routes: accepted, then dropped. */
	{ BYTES("<@a.b:u@e.f>"), 0, SMTP_PATH_OK, "u@e.f", "" },
	{ BYTES("<@a.b,@c.d:u@e.f> X=1"), 0, SMTP_PATH_OK, "u@e.f", " X=1" },
	{ BYTES("<@a.b,u@e.f>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<@a.b,xc.d:u@e.f>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<@a.b u@e.f>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<@:u@e.f>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<@a.b,@:u@e.f>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<@a.b,:u@e.f>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<@[1.2.3.4]:u@e.f>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<@a.b:>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<@a.b:<>>"), NUL_OK, SMTP_PATH_SYNTAX, NULL, NULL },

	/* Missing brackets and junk. */
	{ BYTES(""), NUL_OK, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<"), NUL_OK, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES(">"), NUL_OK, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("a@b.c"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES(" <a@b.c>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@b.c"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("a@b.c>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("< a@b.c>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a@b.c >"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<<a@b.c>>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<@>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<a>"), 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("< >"), NUL_OK, SMTP_PATH_SYNTAX, NULL, NULL },
	/* The '>' must be within len, even if the buffer goes on. */
	{ "<a@b.c>", 6, 0, SMTP_PATH_SYNTAX, NULL, NULL },
	{ "<>", 1, NUL_OK, SMTP_PATH_SYNTAX, NULL, NULL },

	/* <postmaster> only for RCPT, spelled as sent. */
	{ BYTES("<postmaster>"), PM_OK, SMTP_PATH_OK, "postmaster", "" },
	{ BYTES("<PostMaster> X"), PM_OK, SMTP_PATH_OK, "PostMaster", " X" },
	{ BYTES("<postmaster>"), NUL_OK | UTF8, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<postmasters>"), PM_OK, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<postmaste>"), PM_OK, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<\"postmaster\">"), PM_OK, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<@a.b:postmaster>"), PM_OK, SMTP_PATH_SYNTAX, NULL, NULL },
	{ BYTES("<postmaster@x.org>"), 0, SMTP_PATH_OK, "postmaster@x.org", "" },

	/* SMTPUTF8 (RFC 6531): only with the flag, only valid UTF-8. */
	{ BYTES("<\xc3\xbc@x.org>"), 0, SMTP_PATH_UTF8, NULL, NULL },
	{ BYTES("<\xc3\xbc@x.org>"), UTF8, SMTP_PATH_OK, "\xc3\xbc@x.org", "" },
	{ BYTES("<a@b\xc3\xbc"
		"cher.de>"),
	    0, SMTP_PATH_UTF8, NULL, NULL },
	{ BYTES("<a@b\xc3\xbc"
		"cher.de>"),
	    UTF8, SMTP_PATH_OK,
	    "a@b\xc3\xbc"
	    "cher.de",
	    "" },
	{ BYTES("<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5"
		"\xb9\xbf\xe5\x91\x8a>"),
	    UTF8, SMTP_PATH_OK,
	    "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf"
	    "\xe5\x91\x8a",
	    "" },
	{ BYTES("<\"\xc3\xbc x\"@y.z>"), UTF8, SMTP_PATH_OK, "\"\xc3\xbc x\"@y.z", "" },
	{ BYTES("<\"\xc3\xbc x\"@y.z>"), 0, SMTP_PATH_UTF8, NULL, NULL },
	{ BYTES("<@\xc3\xbc.de:a@b.c>"), 0, SMTP_PATH_UTF8, NULL, NULL },
	{ BYTES("<\xc3\x28@x.org>"), UTF8, SMTP_PATH_UTF8, NULL, NULL },
	{ BYTES("<\xc0\xaf@x.org>"), UTF8, SMTP_PATH_UTF8, NULL, NULL },
	{ BYTES("<\xff@x.org>"), UTF8, SMTP_PATH_UTF8, NULL, NULL },
	{ BYTES("<a@\xed\xa0\x80.org>"), UTF8, SMTP_PATH_UTF8, NULL, NULL },
	{ BYTES("<a@b\xc3>"), UTF8, SMTP_PATH_UTF8, NULL, NULL },
	{ BYTES("<a@b\xe2\x82>"), UTF8, SMTP_PATH_UTF8, NULL, NULL },
	{ BYTES("<\"\xe2\x82\"@x.org>"), UTF8, SMTP_PATH_UTF8, NULL, NULL },
};

/* Fills buf with n copies of c and returns buf + n. */
static char *
fill(char *buf, int c, size_t n)
{
	memset(buf, c, n);
	return buf + n;
}

/* Builds "<" local "@" domain ">" with an llen-octet local part and a
 * domain of dlen octets made of 50-octet labels, then parses it. */
static enum smtp_path_err
parse_sized(size_t llen, size_t dlen, int quoted, char *out)
{
	char in[1024], *p = in;
	const char *rest;
	size_t left;

	*p++ = '<';
	if (quoted) {
		*p++ = '"';
		p = fill(p, 'q', llen - 2);
		*p++ = '"';
	} else
		p = fill(p, 'l', llen);
	*p++ = '@';
	for (left = dlen; left > 0;) {
		size_t label = left > 50 ? 50 : left;

		/* Never end on a dot: shorten this label to make room. */
		if (left > 50 && left - 50 < 2)
			label = left - 2;
		p = fill(p, 'd', label);
		left -= label;
		if (left > 0) {
			*p++ = '.';
			left--;
		}
	}
	*p++ = '>';
	return smtp_parse_path(in, (size_t)(p - in), 0, 0, 0, out, SMTP_PATH_MAX + 1, &rest);
}

static void
test_path_limits(void)
{
	char out[SMTP_PATH_MAX + 1], in[600];
	const char *rest;
	size_t n;

	/* RFC 5321 4.5.3.1.1: a local part of 64 octets, quotes included. */
	CHECK(parse_sized(64, 10, 0, out) == SMTP_PATH_OK);
	CHECK(strlen(out) == 64 + 1 + 10);
	CHECK(parse_sized(65, 10, 0, out) == SMTP_PATH_TOO_LONG);
	CHECK(parse_sized(64, 10, 1, out) == SMTP_PATH_OK);
	CHECK(parse_sized(65, 10, 1, out) == SMTP_PATH_TOO_LONG);

	/* RFC 5321 4.5.3.1.3: the whole path, brackets included, is at most
	 * 256 octets: "<" + 1 + "@" + 252 + ">" = 256. */
	CHECK(parse_sized(1, 252, 0, out) == SMTP_PATH_OK);
	CHECK(strlen(out) == 254);
	CHECK(parse_sized(1, 253, 0, out) == SMTP_PATH_TOO_LONG);
	CHECK(parse_sized(64, 189, 0, out) == SMTP_PATH_OK);
	CHECK(parse_sized(64, 190, 0, out) == SMTP_PATH_TOO_LONG);
	/* 4.5.3.1.2: a 256-octet domain is over its own limit too. */
	CHECK(parse_sized(1, 256, 0, out) == SMTP_PATH_TOO_LONG);

	/* RFC 1035 2.3.4: a 63-octet label is the longest. */
	n = (size_t)snprintf(in, sizeof(in), "<a@%.63s.org>",
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	CHECK(smtp_parse_path(in, n, 0, 0, 0, out, sizeof(out), &rest) == SMTP_PATH_OK);
	n = (size_t)snprintf(in, sizeof(in), "<a@%.64s.org>",
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	CHECK(smtp_parse_path(in, n, 0, 0, 0, out, sizeof(out), &rest) == SMTP_PATH_TOO_LONG);

	/* A too-small output buffer is refused, never overrun. */
	memset(out, 'Z', sizeof(out));
	CHECK(smtp_parse_path(BYTES("<a@b.c>"), 0, 0, 0, out, 5, &rest) == SMTP_PATH_TOO_LONG);
	CHECK(out[5] == 'Z');
	CHECK(smtp_parse_path(BYTES("<a@b.c>"), 0, 0, 0, out, 6, &rest) == SMTP_PATH_OK);
	CHECK_STR(out, "a@b.c");
}

static void
test_paths(void)
{
	char out[SMTP_PATH_MAX + 1];
	const char *rest;
	size_t i;
	enum smtp_path_err err;

	for (i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
		const struct path_case *c = &path_cases[i];

		rest = NULL;
		memset(out, 'Z', sizeof(out));
		err = smtp_parse_path(c->s, c->len, c->flags & NUL_OK, c->flags & PM_OK,
		    c->flags & UTF8, out, sizeof(out), &rest);
		CHECK_MSG(err == c->err, "path row %zu \"%.*s\": %s, want %s", i, (int)c->len, c->s,
		    smtp_path_err_str(err), smtp_path_err_str(c->err));
		if (err != SMTP_PATH_OK || c->err != SMTP_PATH_OK)
			continue;
		CHECK_MSG(strcmp(out, c->out) == 0, "path row %zu: out \"%s\"", i, out);
		CHECK_MSG(rest != NULL && rest >= c->s && rest <= c->s + c->len &&
			(size_t)(c->s + c->len - rest) == strlen(c->rest) &&
			memcmp(rest, c->rest, strlen(c->rest)) == 0,
		    "path row %zu: wrong rest", i);
	}
	CHECK_STR(smtp_path_err_str(SMTP_PATH_OK), "ok");
	CHECK(strcmp(smtp_path_err_str(SMTP_PATH_SYNTAX), smtp_path_err_str(SMTP_PATH_UTF8)) != 0);
	CHECK(
	    strcmp(smtp_path_err_str(SMTP_PATH_NULL), smtp_path_err_str(SMTP_PATH_TOO_LONG)) != 0);
}

struct param_case {
	const char *s;
	int utf8;
	int max;
	int ret;
	const char *kv[8]; /* key, value (NULL = none), ... */
};

static const struct param_case param_cases[] = {
	{ "", 0, 16, 0, { NULL } },
	{ "   ", 0, 16, 0, { NULL } },
	{ "SIZE=100 BODY=8BITMIME", 0, 16, 2, { "SIZE", "100", "BODY", "8BITMIME" } },
	{ "  SMTPUTF8", 0, 16, 1, { "SMTPUTF8", NULL } },
	{ "SMTPUTF8 SIZE=1", 0, 16, 2, { "SMTPUTF8", NULL, "SIZE", "1" } },
	{ "size=100  body=7bit ", 0, 16, 2, { "size", "100", "body", "7bit" } },
	{ "X-1=a+2Bb ENVID=<x@y>", 0, 16, 2, { "X-1", "a+2Bb", "ENVID", "<x@y>" } },
	{ "9=!~", 0, 16, 1, { "9", "!~" } },
	{ "=100", 0, 16, -1, { NULL } },
	{ "-X=1", 0, 16, -1, { NULL } },
	{ "SI_ZE=1", 0, 16, -1, { NULL } },
	{ "SIZE:1", 0, 16, -1, { NULL } },
	{ "SIZE=", 0, 16, -1, { NULL } },
	{ "SIZE= BODY=7BIT", 0, 16, -1, { NULL } },
	{ "A=b=c", 0, 16, -1, { NULL } },
	{ "A==b", 0, 16, -1, { NULL } },
	{ "A=b\tB=c", 0, 16, -1, { NULL } },
	{ "A=b\r", 0, 16, -1, { NULL } },
	{ "A=\x7f", 0, 16, -1, { NULL } },
	{ "ENVID=\xc3\xbc", 0, 16, -1, { NULL } },
	{ "ENVID=\xc3\xbc", 1, 16, 1, { "ENVID", "\xc3\xbc" } },
	{ "ENVID=a\xc3", 1, 16, -1, { NULL } },
	{ "ENVID=\xc0\xaf", 1, 16, -1, { NULL } },
	{ "\xc3\xbc=1", 1, 16, -1, { NULL } },
	{ "A B C", 0, 3, 3, { "A", NULL, "B", NULL, "C", NULL } },
	{ "A B C", 0, 2, -1, { NULL } },
	{ "A", 0, 0, -1, { NULL } },
	{ "", 0, 0, 0, { NULL } },
};

static void
test_params(void)
{
	struct smtp_param p[SMTP_PARAMS_MAX + 1];
	char buf[256], *w;
	size_t i;
	int n, k;

	for (i = 0; i < sizeof(param_cases) / sizeof(param_cases[0]); i++) {
		const struct param_case *c = &param_cases[i];

		snprintf(buf, sizeof(buf), "%s", c->s);
		n = smtp_parse_params(buf, p, c->max, c->utf8);
		CHECK_MSG(n == c->ret, "params row %zu \"%s\": %d", i, c->s, n);
		for (k = 0; k < n && n == c->ret; k++) {
			const char *key = c->kv[2 * k], *val = c->kv[2 * k + 1];

			CHECK_MSG(strcmp(p[k].key, key) == 0, "params row %zu: key %d \"%s\"", i, k,
			    p[k].key);
			CHECK_MSG(val == NULL ? p[k].value == NULL :
						p[k].value != NULL && strcmp(p[k].value, val) == 0,
			    "params row %zu: value %d", i, k);
		}
	}

	/* Parsed in place: the pointers are into buf and NULs replaced the
	 * separators. */
	snprintf(buf, sizeof(buf), "SIZE=100 BODY=8BITMIME");
	CHECK(smtp_parse_params(buf, p, SMTP_PARAMS_MAX, 0) == 2);
	CHECK(p[0].key == buf && p[0].value == buf + 5);
	CHECK(p[1].key == buf + 9 && p[1].value == buf + 14);
	CHECK(memcmp(buf,
		  "SIZE\0"
		  "100\0"
		  "BODY\0"
		  "8BITMIME",
		  23) == 0);

	/* SMTP_PARAMS_MAX items fit, one more does not. */
	for (w = buf, k = 0; k < SMTP_PARAMS_MAX; k++)
		w += snprintf(w, sizeof(buf) - (size_t)(w - buf), "K%d=%d ", k, k);
	CHECK(smtp_parse_params(buf, p, SMTP_PARAMS_MAX, 0) == SMTP_PARAMS_MAX);
	CHECK_STR(p[SMTP_PARAMS_MAX - 1].key, "K15");
	CHECK_STR(p[SMTP_PARAMS_MAX - 1].value, "15");
	for (w = buf, k = 0; k < SMTP_PARAMS_MAX + 1; k++)
		w += snprintf(w, sizeof(buf) - (size_t)(w - buf), "K%d ", k);
	CHECK(smtp_parse_params(buf, p, SMTP_PARAMS_MAX, 0) == -1);
}

struct enh_case {
	const char *text;
	size_t len;
	size_t want;
};

static const struct enh_case enh_cases[] = {
	{ BYTES("5.1.1 User unknown"), 6 },
	{ BYTES("2.0.0 Ok"), 6 },
	{ BYTES("4.7.1 "), 6 },
	{ BYTES("5.123.456 x"), 10 },
	{ BYTES("5.1.1  two spaces"), 6 },
	{ BYTES("3.1.1 x"), 0 },
	{ BYTES("1.1.1 x"), 0 },
	{ BYTES("5.1.1"), 0 },
	{ BYTES("5.1.1x"), 0 },
	{ BYTES("5.1.1\tx"), 0 },
	{ BYTES("5.1234.1 x"), 0 },
	{ BYTES("5.1.1234 x"), 0 },
	{ BYTES("5..1 x"), 0 },
	{ BYTES("5.1. x"), 0 },
	{ BYTES("5.a.1 x"), 0 },
	{ BYTES("55.1.1 x"), 0 },
	{ BYTES(" 5.1.1 x"), 0 },
	{ BYTES(""), 0 },
	{ "5.1.1 x", 5, 0 }, /* the SP is past len */
	{ "5.1.1 x", 6, 6 },
};

static void
test_enhanced(void)
{
	size_t i, got;

	for (i = 0; i < sizeof(enh_cases) / sizeof(enh_cases[0]); i++) {
		got = smtp_enhanced_len(enh_cases[i].text, enh_cases[i].len);
		CHECK_MSG(got == enh_cases[i].want,
		    "enhanced row %zu \"%s\": "
		    "%zu",
		    i, enh_cases[i].text, got);
	}
}

struct text_case {
	const char *text;
	size_t len;
	int want;
};

static const struct text_case text_cases[] = {
	{ BYTES(""), 0 },
	{ BYTES("Hello there"), 0 },
	{ BYTES("Gr\xc3\xbc\xc3\x9f"
		"e ~!"),
	    0 },
	{ BYTES("a\rb"), -1 },
	{ BYTES("a\nb"), -1 },
	{ BYTES("ok\r\n250 forged"), -1 },
	{ BYTES("a\0b"), -1 },
	{ BYTES("tab\there"), -1 },
	{ BYTES("esc\x1b[0m"), -1 },
	{ BYTES("del\x7f"), -1 },
	{ BYTES("bad \xff"), -1 },
	{ BYTES("overlong \xc0\xaf"), -1 },
	{ BYTES("cut \xe2\x82"), -1 },
};

static void
test_reply_text(void)
{
	char buf[SMTP_REPLY_TEXT_MAX + 8];
	size_t i;

	for (i = 0; i < sizeof(text_cases) / sizeof(text_cases[0]); i++)
		CHECK_MSG(
		    smtp_reply_text_ok(text_cases[i].text, text_cases[i].len) == text_cases[i].want,
		    "reply text row %zu", i);

	memset(buf, 'a', sizeof(buf));
	CHECK(smtp_reply_text_ok(buf, SMTP_REPLY_TEXT_MAX) == 0);
	CHECK(smtp_reply_text_ok(buf, SMTP_REPLY_TEXT_MAX + 1) == -1);
	/* The limit is in octets, not characters. */
	memcpy(buf + SMTP_REPLY_TEXT_MAX - 2, "\xc3\xbc", 2);
	CHECK(smtp_reply_text_ok(buf, SMTP_REPLY_TEXT_MAX) == 0);
	memset(buf, 'a', sizeof(buf));
	memcpy(buf + SMTP_REPLY_TEXT_MAX - 1, "\xc3\xbc", 2);
	CHECK(smtp_reply_text_ok(buf, SMTP_REPLY_TEXT_MAX + 1) == -1);
	/* A sequence cut by len is invalid, whatever follows in memory. */
	CHECK(smtp_reply_text_ok(buf, SMTP_REPLY_TEXT_MAX) == -1);
}

static const struct text_case utf8_cases[] = {
	{ BYTES(""), 0 }, { BYTES("plain ascii\0with nul"), 0 },
	{ BYTES("\xc2\x80"), 0 },                                           /* U+0080 */
	{ BYTES("\xc3\xbc"), 0 }, { BYTES("\xdf\xbf"), 0 },                 /* U+07FF */
	{ BYTES("\xe0\xa0\x80"), 0 },                                       /* U+0800 */
	{ BYTES("\xe2\x82\xac"), 0 },                                       /* euro sign */
	{ BYTES("\xed\x9f\xbf"), 0 },                                       /* U+D7FF */
	{ BYTES("\xee\x80\x80"), 0 },                                       /* U+E000 */
	{ BYTES("\xef\xbf\xbf"), 0 },                                       /* U+FFFF */
	{ BYTES("\xf0\x90\x80\x80"), 0 },                                   /* U+10000 */
	{ BYTES("\xf0\x9f\x98\x80"), 0 }, { BYTES("\xf4\x8f\xbf\xbf"), 0 }, /* U+10FFFF */
	/* Overlong forms. */
	{ BYTES("\xc0\x80"), -1 }, { BYTES("\xc0\xaf"), -1 }, { BYTES("\xc1\xbf"), -1 },
	{ BYTES("\xe0\x80\xaf"), -1 }, { BYTES("\xe0\x9f\xbf"), -1 },
	{ BYTES("\xf0\x80\x80\xaf"), -1 }, { BYTES("\xf0\x8f\xbf\xbf"), -1 },
	/* UTF-16 surrogates. */
	{ BYTES("\xed\xa0\x80"), -1 }, { BYTES("\xed\xbf\xbf"), -1 },
	{ BYTES("\xed\xa0\xbd\xed\xb8\x80"), -1 },
	/* Above U+10FFFF and never-valid octets. */
	{ BYTES("\xf4\x90\x80\x80"), -1 }, { BYTES("\xf5\x80\x80\x80"), -1 },
	{ BYTES("\xf8\x88\x80\x80\x80"), -1 }, { BYTES("\xfe"), -1 }, { BYTES("\xff"), -1 },
	/* Truncated, or a continuation octet where a lead is due. */
	{ BYTES("\xc3"), -1 }, { BYTES("\xe2\x82"), -1 }, { BYTES("a\xf0\x9f\x98"), -1 },
	{ BYTES("\xf0\x9f\x98z"), -1 }, { BYTES("\xc3\x28"), -1 }, { BYTES("\x80"), -1 },
	{ BYTES("\xc3\xbc\xbc"), -1 }, { "\xc3\xbc", 1, -1 }, /* cut by len */
};

static void
test_utf8(void)
{
	size_t i;

	for (i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++)
		CHECK_MSG(
		    smtp_utf8_valid(utf8_cases[i].text, utf8_cases[i].len) == utf8_cases[i].want,
		    "utf8 row %zu", i);
}

int
main(void)
{
	test_verbs();
	test_paths();
	test_path_limits();
	test_params();
	test_enhanced();
	test_reply_text();
	test_utf8();
	return test_done("test_smtp_parse");
}
