/* redis_cmd.c - the commands luamta.redis refuses, and its wording of
 * connection errors. Every session's commands go down one connection, in
 * order, so a command that blocks it, changes its state for everyone or
 * stops its replies would break the others' calls. */
#include "redis_cmd.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const redis_cmd_kinds[] = { "ok", "refused", "multi", "exec" };

/* Blocking (the connection waits for them), subscribing and monitoring (it
 * stops answering commands), changing the connection's db, user or
 * protocol for everyone, closing it, or watching keys across commands of
 * other sessions. */
static const char *const redis_cmd_refused[] = { "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP",
	"BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF", "SUBSCRIBE", "PSUBSCRIBE",
	"SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR", "SYNC", "PSYNC",
	"SELECT", "AUTH", "HELLO", "QUIT", "RESET", "WATCH", "UNWATCH", NULL };

const char *
redis_cmd_kind_str(enum redis_cmd_kind k)
{
	return (unsigned)k < 4 ? redis_cmd_kinds[k] : "?";
}

static int
redis_cmd_is(const char *s, size_t len, const char *name)
{
	return len == strlen(name) && strncasecmp(s, name, len) == 0;
}

enum redis_cmd_kind
redis_cmd_check(int argc, const char *const *argv, const size_t *lens, char *why, size_t whysize)
{
	const char *name = argv[0];
	size_t len = lens[0];

	for (int k = 0; redis_cmd_refused[k] != NULL; k++)
		if (redis_cmd_is(name, len, redis_cmd_refused[k])) {
			snprintf(why, whysize, "%s is not supported on the shared connection",
			    redis_cmd_refused[k]);
			return REDIS_CMD_REFUSED;
		}
	if (redis_cmd_is(name, len, "XREAD") || redis_cmd_is(name, len, "XREADGROUP"))
		for (int j = 1; j < argc; j++)
			if (redis_cmd_is(argv[j], lens[j], "BLOCK")) {
				snprintf(why, whysize,
				    "a blocking XREAD is not supported on the shared connection");
				return REDIS_CMD_REFUSED;
			}
	/* CLIENT REPLY OFF would leave callbacks without replies; a name
	 * would be everyone's. */
	if (argc > 1 && redis_cmd_is(name, len, "CLIENT") &&
	    (redis_cmd_is(argv[1], lens[1], "REPLY") ||
		redis_cmd_is(argv[1], lens[1], "SETNAME"))) {
		snprintf(why, whysize, "CLIENT %s is not supported on the shared connection",
		    redis_cmd_is(argv[1], lens[1], "REPLY") ? "REPLY" : "SETNAME");
		return REDIS_CMD_REFUSED;
	}
	if (redis_cmd_is(name, len, "MULTI"))
		return REDIS_CMD_MULTI;
	if (redis_cmd_is(name, len, "EXEC") || redis_cmd_is(name, len, "DISCARD"))
		return REDIS_CMD_EXEC;
	return REDIS_CMD_OK;
}

void
redis_cmd_errtext(char *dst, size_t size, int eof, const char *errstr)
{
	if (size == 0)
		return;
	if (eof || errstr == NULL || errstr[0] == '\0') {
		snprintf(dst, size, "closed");
		return;
	}
	snprintf(dst, size, "%s", errstr);
	if (isupper((unsigned char)dst[0]) && islower((unsigned char)dst[1]))
		dst[0] = (char)tolower((unsigned char)dst[0]);
}
