/* redis_cmd.h - what luamta.redis decides about a command before it is
 * sent, and how it words connection errors. Pure: no sockets, no Lua,
 * table-tested by core/tests/test_redis_cmd.c. */
#ifndef LUAMTA_REDIS_CMD_H
#define LUAMTA_REDIS_CMD_H

#include <stddef.h>

enum redis_cmd_kind {
	REDIS_CMD_OK = 0,  /* an ordinary command */
	REDIS_CMD_REFUSED, /* would break a connection every session shares */
	REDIS_CMD_MULTI,   /* opens a transaction */
	REDIS_CMD_EXEC,    /* EXEC or DISCARD: closes one */
};
const char *redis_cmd_kind_str(enum redis_cmd_kind);

/* Classifies the command of argc words (argc >= 1; words binary, with their
 * lengths). For REDIS_CMD_REFUSED, why gets a sentence naming it. */
enum redis_cmd_kind redis_cmd_check(
    int argc, const char *const *argv, const size_t *lens, char *why, size_t whysize);

/* The error a call returns for a connection that failed with errstr
 * (hiredis' text; eof: the server closed it): "closed" for an end of file
 * or no text, else errstr with a strerror-style capital lowered
 * ("connection refused"); a message from Redis itself stays as it is. */
void redis_cmd_errtext(char *dst, size_t size, int eof, const char *errstr);

#endif
