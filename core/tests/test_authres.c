/* test_authres.c - Authentication-Results text and the header walk it is
 * found with: authserv-ids behind comments, folds and quotes; values
 * written plain, as addresses or quoted; clauses that do not fit left out
 * whole; header fields with folds, obsolete blanks before the colon,
 * lines that are not fields, and a field cut by the end of the buffer. */
#include <string.h>

#include "authres.h"
#include "msghdr.h"
#include "test.h"

static void
test_servid(void)
{
	static const struct {
		const char *v, *want; /* NULL: none */
	} t[] = {
		{ " mx.example.net; spf=pass", "mx.example.net" },
		{ "mx.example.net", "mx.example.net" },
		{ "MX.Example.NET 1; none", "MX.Example.NET" },
		{ " (a comment (nested)) mx.example.net;", "mx.example.net" },
		{ "\r\n\tmx.example.net;", "mx.example.net" },
		{ " \"mx.example.net\"; none", "mx.example.net" },
		{ " \"mx\\\".x\"; none", "mx\".x" },
		{ " ; spf=pass", NULL },
		{ "", NULL },
		{ " (unclosed mx.example.net", NULL },
		{ " \"unclosed", NULL },
	};
	char out[64];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int n = authres_servid(t[i].v, strlen(t[i].v), out, sizeof(out));
		if (t[i].want == NULL)
			CHECK_MSG(n == -1, "'%s' gave %s", t[i].v, out);
		else {
			CHECK_MSG(n == (int)strlen(t[i].want), "'%s': %d", t[i].v, n);
			if (n > 0)
				CHECK_STR(out, t[i].want);
		}
	}
	/* Too long for out: none rather than a cut name. */
	CHECK(authres_servid("abcdefgh", 8, out, 8) == -1);
}

static void
test_build(void)
{
	struct authres ar;
	size_t mark;
	char big[300];

	CHECK(authres_begin(&ar, "mx.example.net", 14) == 0);
	CHECK(authres_method(&ar, "spf", "pass") == 0);
	CHECK(authres_prop(&ar, "smtp.mailfrom", "bounce@example.com", 18) == 0);
	CHECK(authres_method(&ar, "dkim", "fail") == 0);
	CHECK(authres_reason(&ar, "bad \"sig\"", 9) == 0);
	CHECK(authres_prop(&ar, "header.d", "example.com", 11) == 0);
	CHECK(authres_prop(&ar, "header.s", "sel 1", 5) == 0);
	CHECK(authres_method(&ar, "dmarc", "fail") == 0);
	CHECK(authres_comment(&ar, "p=reject dis=none (x)", 21) == 0);
	CHECK(authres_prop(&ar, "header.from", "@example.com", 12) == 0);
	CHECK_STR(ar.buf,
	    "mx.example.net; spf=pass smtp.mailfrom=bounce@example.com; "
	    "dkim=fail reason=\"bad \\\"sig\\\"\" header.d=example.com "
	    "header.s=\"sel 1\"; dmarc=fail (p=reject dis=none \\(x\\)) "
	    "header.from=@example.com");
	/* Refused: bad keywords, control characters; nothing written. */
	mark = authres_mark(&ar);
	CHECK(authres_method(&ar, "sp f", "pass") == -1);
	CHECK(authres_method(&ar, "spf", "pa;ss") == -1);
	CHECK(authres_method(&ar, "-x", "pass") == -1);
	CHECK(authres_prop(&ar, "header.d", "a\r\nX-Evil: 1", 13) == -1);
	CHECK(authres_reason(&ar, "a\nb", 3) == -1);
	CHECK(authres_comment(&ar, "a\0b", 3) == -1);
	CHECK(authres_mark(&ar) == mark);
	/* Values that are not tokens or addresses are quoted. */
	CHECK(authres_begin(&ar, "a b", 3) == 0 && strcmp(ar.buf, "\"a b\"") == 0);
	CHECK(authres_prop(&ar, "smtp.mailfrom", "a@", 2) == 0);
	CHECK(authres_prop(&ar, "smtp.mailfrom", "a@b@c", 5) == 0);
	CHECK_STR(ar.buf, "\"a b\" smtp.mailfrom=\"a@\" smtp.mailfrom=\"a@b@c\"");
	CHECK(authres_begin(&ar, "", 0) == -1);
	CHECK(authres_begin(&ar, "x", 1) == 0 && authres_none(&ar) == 0);
	CHECK_STR(ar.buf, "x; none");
	/* Filling up: whatever does not fit is left out, the rest stays. */
	memset(big, 'a', sizeof(big));
	CHECK(authres_begin(&ar, "mx", 2) == 0);
	for (int i = 0; i < 10; i++) {
		mark = authres_mark(&ar);
		if (authres_method(&ar, "dkim", "pass") == -1 ||
		    authres_prop(&ar, "header.d", big, 250) == -1)
			authres_reset(&ar, mark);
	}
	CHECK(ar.len <= AUTHRES_MAX && strlen(ar.buf) == ar.len);
	CHECK(ar.len == 2 + 3 * (2 + 9 + 1 + 9 + 250));
	CHECK(authres_prop(&ar, "header.d", big, 256) == -1); /* over 255 */
}

static void
test_walk(void)
{
	static const char h[] = "Received: from a\r\n\tby b\r\n"
				"Authentication-Results : mx.example.net;\r\n spf=pass\r\n"
				"not a field\r\n"
				" continued junk\r\n"
				"From: <a@example.com>\n"
				"\r\n"
				"Body: not a field\r\n";
	struct msghdr_field f;
	size_t pos = 0;
	char v[128];

	CHECK(msghdr_next(h, strlen(h), &pos, &f) == 1 && msghdr_is(&f, "received"));
	CHECK(f.off == 0 && f.len == 25 && f.complete);
	CHECK(msghdr_unfold(&f, v, sizeof(v)) == 11);
	CHECK_STR(v, "from a\tby b");
	CHECK(msghdr_next(h, strlen(h), &pos, &f) == 1 && msghdr_is(&f, "Authentication-Results"));
	CHECK(f.off == 25 && f.len == 53);
	msghdr_unfold(&f, v, sizeof(v));
	CHECK_STR(v, "mx.example.net; spf=pass");
	CHECK(msghdr_next(h, strlen(h), &pos, &f) == 1 && msghdr_is(&f, "From"));
	CHECK(f.len == 22 && f.complete);
	CHECK(msghdr_next(h, strlen(h), &pos, &f) == 0);
	/* A short unfold buffer: cut, the whole length returned. */
	CHECK(msghdr_unfold(&f, v, 4) == 15 && strcmp(v, "<a@") == 0);
	/* The buffer ends inside a field: found, not complete. */
	pos = 0;
	CHECK(msghdr_next("A: 1\r\nB: 2", 10, &pos, &f) == 1 && f.complete);
	CHECK(msghdr_next("A: 1\r\nB: 2", 10, &pos, &f) == 1 && !f.complete && f.len == 4);
	CHECK(msghdr_next("A: 1\r\nB: 2", 10, &pos, &f) == 0);
	pos = 0;
	CHECK(msghdr_next("A: 1\r\n", 6, &pos, &f) == 1 && !f.complete);
	pos = 0;
	CHECK(msghdr_next(": x\r\n\tB: 1\r\n", 12, &pos, &f) == 0);
}

int
main(void)
{
	test_servid();
	test_build();
	test_walk();
	return test_done("test_authres");
}
