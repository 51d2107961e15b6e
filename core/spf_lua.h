/* spf_lua.h - luamta.spf: SPF checks (spf.h) for policies, their DNS done
 * through dns.h without blocking: the hook parks until the result is in.
 * Also what s:spf() keeps of its result for the transaction. */
#ifndef LUAMTA_SPF_LUA_H
#define LUAMTA_SPF_LUA_H

#include <lua.h>

#define SPF_LUA_TIMEOUT 20.0 /* seconds a whole check may take (RFC 7208 4.6.4) */

/* Sets the field spf of the table on top of L's stack; hostname is ours
 * (the %{r} of explanations). */
void spf_lua_open(lua_State *L, const char *hostname);
/* luamta.spf.check{ ip =, helo =, sender = [, timeout =] } -> result,
 * explanation: for s:spf(), which calls it with lua_callk. */
int spf_lua_check(lua_State *L);
/* Pushes spf_lua_check and its table for ip, helo and sender, with the
 * timeout of the options table at opts (if it is one, read raw). */
void spf_lua_push_call(
    lua_State *L, const char *ip, const char *helo, const char *sender, int opts);
/* Frees what the module keeps between calls. */
void spf_lua_shutdown(void);

/* s:spf()'s last result, owned by its session (NULL: none). */
struct spf_lua_cache;
/* When c holds the result for key: pushes result, explanation and returns
 * 2; else returns 0. */
int spf_lua_cached(lua_State *L, const struct spf_lua_cache *c, const char *key);
/* Keeps result, explanation (the two values on top of L's stack) for key
 * in *c, unless the result is temperror (asked again next time). */
void spf_lua_keep(lua_State *L, struct spf_lua_cache **c, const char *key);
/* Forgets *c (NULL is a no-op). */
void spf_lua_forget(struct spf_lua_cache **c);

#endif
