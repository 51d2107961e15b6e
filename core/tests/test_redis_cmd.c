/* test_redis_cmd.c - tables for the commands luamta.redis refuses or
 * treats as a transaction's bounds, and for its connection error texts. */

#include <string.h>

#include "redis_cmd.h"
#include "test.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void
test_check(void)
{
	static const struct {
		const char *words[4];
		enum redis_cmd_kind want;
		const char *why;
	} t[] = {
		{ { "GET", "k" }, REDIS_CMD_OK, NULL },
		{ { "incr", "k" }, REDIS_CMD_OK, NULL },
		{ { "BLPOP", "k", "1" }, REDIS_CMD_REFUSED,
		    "BLPOP is not supported on the shared connection" },
		{ { "brpop", "k", "0" }, REDIS_CMD_REFUSED,
		    "BRPOP is not supported on the shared connection" },
		{ { "Subscribe", "c" }, REDIS_CMD_REFUSED,
		    "SUBSCRIBE is not supported on the shared connection" },
		{ { "SELECT", "2" }, REDIS_CMD_REFUSED,
		    "SELECT is not supported on the shared connection" },
		{ { "auth", "pw" }, REDIS_CMD_REFUSED,
		    "AUTH is not supported on the shared connection" },
		{ { "WATCH", "k" }, REDIS_CMD_REFUSED,
		    "WATCH is not supported on the shared connection" },
		{ { "XREAD", "COUNT", "1", "STREAMS" }, REDIS_CMD_OK, NULL },
		{ { "XREAD", "block", "0", "STREAMS" }, REDIS_CMD_REFUSED,
		    "a blocking XREAD is not supported on the shared connection" },
		{ { "CLIENT", "reply", "OFF" }, REDIS_CMD_REFUSED,
		    "CLIENT REPLY is not supported on the shared connection" },
		{ { "CLIENT", "SETNAME", "x" }, REDIS_CMD_REFUSED,
		    "CLIENT SETNAME is not supported on the shared connection" },
		{ { "CLIENT", "ID" }, REDIS_CMD_OK, NULL },
		{ { "CLIENT" }, REDIS_CMD_OK, NULL },
		{ { "multi" }, REDIS_CMD_MULTI, NULL },
		{ { "EXEC" }, REDIS_CMD_EXEC, NULL },
		{ { "discard" }, REDIS_CMD_EXEC, NULL },
		/* a prefix or a longer name is another command */
		{ { "BLPOPX" }, REDIS_CMD_OK, NULL },
		{ { "BLPO" }, REDIS_CMD_OK, NULL },
		{ { "EXECUTE" }, REDIS_CMD_OK, NULL },
	};
	char why[128];

	for (size_t i = 0; i < NELEM(t); i++) {
		size_t lens[4];
		int argc = 0;

		while (argc < 4 && t[i].words[argc] != NULL) {
			lens[argc] = strlen(t[i].words[argc]);
			argc++;
		}
		why[0] = '\0';
		enum redis_cmd_kind k = redis_cmd_check(argc, t[i].words, lens, why, sizeof(why));
		CHECK_MSG(
		    k == t[i].want, "case %zu (%s): %s", i, t[i].words[0], redis_cmd_kind_str(k));
		if (t[i].why != NULL)
			CHECK_STR(why, t[i].why);
	}
}

/* Words are binary: a name with a NUL inside is not the name before it. */
static void
test_binary(void)
{
	const char *argv[] = { "BLPOP\0x" };
	size_t lens[] = { 7 };
	char why[64];

	CHECK(redis_cmd_check(1, argv, lens, why, sizeof(why)) == REDIS_CMD_OK);
}

static void
test_errtext(void)
{
	static const struct {
		int eof;
		const char *errstr, *want;
	} t[] = {
		{ 0, "Connection refused", "connection refused" },
		{ 0, "Connection reset by peer", "connection reset by peer" },
		{ 1, "Server closed the connection", "closed" },
		{ 0, "", "closed" },
		{ 0, NULL, "closed" },
		{ 0, "ERR max number of clients reached", "ERR max number of clients reached" },
		{ 0, "X", "X" },
	};
	char out[64];

	for (size_t i = 0; i < NELEM(t); i++) {
		redis_cmd_errtext(out, sizeof(out), t[i].eof, t[i].errstr);
		CHECK_STR(out, t[i].want);
	}
	redis_cmd_errtext(out, 4, 0, "Connection refused");
	CHECK_STR(out, "con");
}

int
main(void)
{
	test_check();
	test_binary();
	test_errtext();
	return test_done("test_redis_cmd");
}
