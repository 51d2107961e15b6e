/* dkim_lua.h - msg:dkim_sign{} and msg:dkim_verify() (dkim_lua.c): what
 * scripts see of dkim.h. hook_message.c owns the message handle and calls
 * these with the message's store. */
#ifndef LUAMTA_DKIM_LUA_H
#define LUAMTA_DKIM_LUA_H

#include <stddef.h>

#include <lua.h>

struct msgstore;

/* Puts a header field (with its CRLF) on top of the message; raises on
 * failure (the bound on what scripts may add, memory). */
typedef void dkim_lua_prepend_fn(lua_State *L, void *arg, const char *field, size_t len);

/* msg:dkim_sign{ domain =, selector =, key =, algorithm =, headers =,
 * canonicalization = } (the table at index 2) -> true | nil, err. Bad
 * options raise; a key that cannot be used returns nil, err and signs
 * nothing. */
int dkim_lua_sign(lua_State *L, const struct msgstore *, dkim_lua_prepend_fn *, void *arg);
/* msg:dkim_verify([{ timeout = }]) -> { { result =, domain =, selector =,
 * algorithm =, reason = }, ... }, one per DKIM-Signature field, top first.
 * Parks the hook while the keys are looked up. */
int dkim_lua_verify(lua_State *L, const struct msgstore *);

#endif
