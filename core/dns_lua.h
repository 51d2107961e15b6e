/* dns_lua.h - luamta.dns: the resolver (dns.h) as policies see it. Every
 * call parks the hook (hook_park) until its answers are in, and returns
 * results or nil and an error word; bad arguments raise. */
#ifndef LUAMTA_DNS_LUA_H
#define LUAMTA_DNS_LUA_H

#include <lua.h>

#define DNS_LUA_TIMEOUT    5.0 /* seconds a call waits by default */
#define DNS_LUA_FCRDNS_MAX 10  /* PTR names fcrdns tries to confirm */

/* Sets the field dns of the table on top of L's stack. */
void dns_lua_open(lua_State *L);
/* luamta.dns.fcrdns(ip[, opts]) -> name | nil, err: for the session's
 * s:rdns(), which calls it with lua_callk. */
int dns_lua_fcrdns(lua_State *L);
/* Frees what the module keeps between calls. */
void dns_lua_shutdown(void);

#endif
