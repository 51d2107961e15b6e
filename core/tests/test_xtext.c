/* test_xtext.c - xtext.c (RFC 3461 4) and dsn_param.c (RET, ENVID,
 * NOTIFY, ORCPT). */
#include <string.h>

#include "dsn_param.h"
#include "test.h"
#include "xtext.h"

static void
test_decode(void)
{
	static const struct {
		const char *in;
		const char *out; /* NULL: refused */
	} cases[] = {
		{ "", "" },
		{ "abc", "abc" },
		{ "a+2Bb@x", "a+b@x" },
		{ "+20+7E", " ~" },
		{ "+3D", "=" },
		{ "+C3+A9", "\xc3\xa9" },
		{ "+2b", NULL },  /* lower-case hex */
		{ "+2", NULL },   /* cut short */
		{ "+", NULL },    /* cut short */
		{ "a=b", NULL },  /* '=' must be encoded */
		{ "a b", NULL },  /* so must a space */
		{ "+00", NULL },  /* a NUL */
		{ "+G0", NULL },  /* not hex */
		{ "\x7f", NULL }, /* not printable */
		{ "\xc3\xa9", NULL },
	};
	char out[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = xtext_decode(cases[i].in, strlen(cases[i].in), out, sizeof(out));

		if (cases[i].out == NULL)
			CHECK_MSG(r == -1, "%s accepted", cases[i].in);
		else {
			CHECK_MSG(r == (int)strlen(cases[i].out), "%s: %d", cases[i].in, r);
			if (r >= 0)
				CHECK_STR(out, cases[i].out);
		}
	}
	/* Room for the NUL is needed. */
	CHECK(xtext_decode("abc", 3, out, 3) == -1);
	CHECK(xtext_decode("abc", 3, out, 4) == 3);
	CHECK(xtext_decode("+41", 3, out, 2) == 1 && strcmp(out, "A") == 0);
	CHECK(xtext_hexval('F') == 15 && xtext_hexval('f') == -1 && xtext_hexval('0') == 0);
}

static void
test_encode(void)
{
	char out[64];

	CHECK(xtext_encode("a+b=c d", 7, out, sizeof(out)) == 13);
	CHECK_STR(out, "a+2Bb+3Dc+20d");
	CHECK(xtext_encode("\xc3\xa9\x01", 3, out, sizeof(out)) == 9);
	CHECK_STR(out, "+C3+A9+01");
	CHECK(xtext_encode("", 0, out, sizeof(out)) == 0 && out[0] == '\0');
	CHECK(xtext_encode("+", 1, out, 3) == -1); /* "+2B" and the NUL need 4 */
	CHECK(xtext_encode("+", 1, out, 4) == 3);
	CHECK(xtext_encode("ab", 2, out, 2) == -1);
}

static void
test_params(void)
{
	char out[DSN_ORCPT_MAX + 1], enc[3 * DSN_ORCPT_MAX + 1], long_v[DSN_ORCPT_MAX + 8];
	unsigned bits;

	CHECK(dsn_param_ret("FULL") == DSN_RET_FULL);
	CHECK(dsn_param_ret("hdrs") == DSN_RET_HDRS);
	CHECK(dsn_param_ret("HEADERS") == -1 && dsn_param_ret(NULL) == -1);
	CHECK_STR(dsn_param_ret_str(DSN_RET_HDRS), "HDRS");
	CHECK(dsn_param_ret_str(DSN_RET_UNSET) == NULL);

	CHECK(dsn_param_notify("NEVER", &bits) == 0 && bits == DSN_NOTIFY_NEVER);
	CHECK(dsn_param_notify("success,Failure,DELAY", &bits) == 0 &&
	    bits == (DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY));
	CHECK(dsn_param_notify("NEVER,SUCCESS", &bits) == -1);
	CHECK(dsn_param_notify("SUCCESS,SUCCESS", &bits) == -1);
	CHECK(dsn_param_notify("SUCCESS,", &bits) == -1);
	CHECK(dsn_param_notify(",FAILURE", &bits) == -1);
	CHECK(dsn_param_notify("", &bits) == -1 && dsn_param_notify(NULL, &bits) == -1);
	CHECK(dsn_param_notify("SOMETIMES", &bits) == -1);
	dsn_param_notify_str(DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE, out, sizeof(out));
	CHECK_STR(out, "SUCCESS,FAILURE");
	dsn_param_notify_str(DSN_NOTIFY_NEVER, out, sizeof(out));
	CHECK_STR(out, "NEVER");
	dsn_param_notify_str(0, out, sizeof(out));
	CHECK_STR(out, "");

	CHECK(dsn_param_envid("QQ+2B1", out, sizeof(out)) == 0);
	CHECK_STR(out, "QQ+1");
	CHECK(dsn_param_envid("a+20b", out, sizeof(out)) == -1); /* graphic only */
	CHECK(dsn_param_envid("", out, sizeof(out)) == -1);
	memset(long_v, 'e', 101);
	long_v[101] = '\0';
	CHECK(dsn_param_envid(long_v, out, sizeof(out)) == -1);
	long_v[100] = '\0';
	CHECK(dsn_param_envid(long_v, out, sizeof(out)) == 0);
	CHECK(dsn_param_envid("x", out, DSN_ENVID_MAX) == -1); /* no room promised */

	CHECK(dsn_param_orcpt("rfc822;a+2Bb@x", out, sizeof(out)) == 0);
	CHECK_STR(out, "rfc822;a+b@x");
	CHECK(dsn_param_orcpt("RFC822;+22a+20b+22@x", out, sizeof(out)) == 0);
	CHECK_STR(out, "RFC822;\"a b\"@x");
	CHECK(dsn_param_orcpt("x-local;user", out, sizeof(out)) == 0);
	CHECK(dsn_param_orcpt("rfc822", out, sizeof(out)) == -1);
	CHECK(dsn_param_orcpt(";a@x", out, sizeof(out)) == -1);
	CHECK(dsn_param_orcpt("rfc822;", out, sizeof(out)) == -1);
	CHECK(dsn_param_orcpt("rfc 822;a@x", out, sizeof(out)) == -1);
	CHECK(dsn_param_orcpt("rfc822;a+2bb@x", out, sizeof(out)) == -1);
	CHECK(dsn_param_orcpt("rfc822;a+0Ab@x", out, sizeof(out)) == -1); /* a line break */
	memcpy(long_v, "rfc822;", 7);
	memset(long_v + 7, 'a', DSN_ORCPT_MAX - 7 + 1);
	long_v[DSN_ORCPT_MAX + 1] = '\0';
	CHECK(dsn_param_orcpt(long_v, out, sizeof(out)) == -1);
	long_v[DSN_ORCPT_MAX] = '\0';
	CHECK(dsn_param_orcpt(long_v, out, sizeof(out)) == 0);

	CHECK(dsn_param_orcpt_encode("rfc822;a+b@x", enc, sizeof(enc)) == 0);
	CHECK_STR(enc, "rfc822;a+2Bb@x");
	CHECK(dsn_param_orcpt_encode("rfc822;\"a b\"@x", enc, sizeof(enc)) == 0);
	CHECK_STR(enc, "rfc822;\"a+20b\"@x");
	CHECK(dsn_param_orcpt_encode("nosemicolon", enc, sizeof(enc)) == -1);
	CHECK(dsn_param_orcpt_encode("rfc822;a+b", enc, 10) == -1);
}

static void
test_take(void)
{
	struct dsn_params p;
	const char *why = NULL;

	memset(&p, 0, sizeof(p));
	CHECK(dsn_param_take(&p, "ret", "hdrs", 1, &why) == 1 && p.ret == DSN_RET_HDRS);
	CHECK(dsn_param_take(&p, "RET", "FULL", 1, &why) == -1);
	CHECK_STR(why, "RET given twice");
	CHECK(dsn_param_take(&p, "ENVID", "QQ+2B1", 1, &why) == 1);
	CHECK_STR(p.envid, "QQ+1");
	CHECK(dsn_param_take(&p, "SIZE", "10", 1, &why) == 0);
	CHECK(dsn_param_take(&p, "NOTIFY", "NEVER", 1, &why) == 0); /* RCPT's */
	CHECK(dsn_param_take(&p, "ORCPT", "rfc822;a@x", 1, &why) == 0);

	memset(&p, 0, sizeof(p));
	CHECK(dsn_param_take(&p, "RET", "FULL", 0, &why) == 0); /* MAIL's */
	CHECK(dsn_param_take(&p, "Notify", "success,failure", 0, &why) == 1);
	CHECK(p.notify == (DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE));
	CHECK(dsn_param_take(&p, "NOTIFY", "NEVER", 0, &why) == -1);
	CHECK(dsn_param_take(&p, "ORCPT", "rfc822;a+2Bb@x", 0, &why) == 1);
	CHECK_STR(p.orcpt, "rfc822;a+b@x");
	CHECK(dsn_param_take(&p, "ORCPT", "rfc822;a@x", 0, &why) == -1);

	memset(&p, 0, sizeof(p));
	CHECK(dsn_param_take(&p, "NOTIFY", NULL, 0, &why) == -1); /* no value */
	CHECK(dsn_param_take(&p, "ORCPT", "a@x", 0, &why) == -1);
	CHECK(dsn_param_take(&p, "RET", "", 1, &why) == -1);
	CHECK(dsn_param_take(&p, "ENVID", "a=b", 1, &why) == -1);
}

int
main(void)
{
	test_decode();
	test_encode();
	test_params();
	test_take();
	return test_done("test_xtext");
}
