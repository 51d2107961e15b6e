/* redis.h - luamta.redis: Redis commands from hooks, without blocking the
 * loop. One hiredis connection per (server, db, password) per worker, shared
 * by every session and reconnected on the next call after a failure; each
 * call parks its hook until the reply comes or its timeout passes.
 * It does not speak RESP itself (hiredis does) and keeps no per-session
 * state beyond the requests in flight. */
#ifndef LUAMTA_REDIS_H
#define LUAMTA_REDIS_H

#include <lua.h>

/* Sets the field "redis" of the table on top of L's stack (the luamta table)
 * and registers the client metatable. */
void redis_lua_open(lua_State *L);

/* Frees every connection and request of this process; pending callbacks
 * see the connection closed. Call after every session is gone. */
void redis_shutdown(void);

#endif
