/* cosocket.h - luamta.tcp(): a TCP or UNIX stream socket for hooks, shaped
 * like OpenResty's ngx.socket.tcp. Its calls look blocking and park the
 * hook (hook_park) until the socket is ready or their timeout passes; a
 * per-worker pool keeps idle connections for reuse; client TLS goes
 * through tls.h. It does not resolve names itself (see
 * cosocket_resolve_start() in cosocket.c) and knows nothing of SMTP. */
#ifndef LUAMTA_COSOCKET_H
#define LUAMTA_COSOCKET_H

#include <stddef.h>

#include <lua.h>

/* Registers the socket's metatable in L and sets the field "tcp" (the
 * constructor) on the table on top of the stack. */
void cosocket_lua_open(lua_State *L);

/* The completion of a name lookup that cosocket_resolve_start() started
 * for sock (the struct cosocket it was given): the addresses as text
 * ("192.0.2.1", "2001:db8::1"; unusable ones are skipped), or naddrs 0 and
 * err (NULL for "no address"). Called from the loop, never from inside
 * cosocket_resolve_start(); wakes the parked connect. */
void cosocket_resolved(void *sock, const char *const *addrs, size_t naddrs, const char *err);

/* Closes every pooled connection and drops the TLS client configs (the
 * CA bundles). Sockets still held by a Lua state keep their own references
 * and are closed when it collects them. For the worker's teardown. */
void cosocket_shutdown(void);

#endif
