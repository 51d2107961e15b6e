/* test_smtp_xclient.c - XCLIENT's attributes: each one, xtext, the
 * special values, and every way a command is refused. */
#include <string.h>

#include "smtp_xclient.h"
#include "test.h"

static int
parse(const char *s, struct smtp_xclient *x, const char **why)
{
	return smtp_xclient_parse(s, strlen(s), x, why);
}

int
main(void)
{
	static const char *const bad[] = { "", "   ", "NAME", "FOO=1", "ADDR=1.2.3", "ADDR=IPV6:zz",
		"PORT=65536", "PORT=-1", "PORT=x", "PROTO=LMTP", "NAME=a NAME=b", "HELO=a+2",
		"HELO=a+zz", "HELO=a+20b", "HELO=a+0Ab",
		"LOGIN="
		"x=y" };
	struct smtp_xclient x;
	const char *why;

	CHECK(parse("NAME=mail.example.org ADDR=192.0.2.7 PORT=4711 PROTO=ESMTP "
		    "HELO=client+2Bone LOGIN=alice",
		  &x, &why) == 0);
	CHECK(x.has_name && strcmp(x.name, "mail.example.org") == 0);
	CHECK(x.has_addr && strcmp(x.addr, "192.0.2.7") == 0);
	CHECK(x.port == 4711 && x.proto == 1);
	CHECK(x.has_helo && strcmp(x.helo, "client+one") == 0);
	CHECK(x.has_login && strcmp(x.login, "alice") == 0);

	/* Names are case-insensitive; IPv6 carries its tag; the rest keep
	 * their "not given". */
	CHECK(parse("addr=IPV6:2001:db8::1 proto=smtp", &x, &why) == 0);
	CHECK(x.has_addr && strcmp(x.addr, "2001:db8::1") == 0 && x.proto == 0);
	CHECK(!x.has_name && !x.has_helo && !x.has_login && x.port == -1);

	CHECK(parse("NAME=[UNAVAILABLE] ADDR=[TEMPUNAVAIL] PORT=[UNAVAILABLE]", &x, &why) == 0);
	CHECK(strcmp(x.name, "[UNAVAILABLE]") == 0 && strcmp(x.addr, "[TEMPUNAVAIL]") == 0);
	CHECK(x.port == 0);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_MSG(parse(bad[i], &x, &why) == -1 && why != NULL && why[0] != '\0',
		    "accepted: %s", bad[i]);
	CHECK(parse("FOO=1", &x, &why) == -1 && strstr(why, "name") != NULL);
	CHECK(parse("NAME=a NAME=b", &x, &why) == -1 && strstr(why, "Repeated") != NULL);
	return test_done("test_smtp_xclient");
}
