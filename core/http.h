/* http.h - luamta.http: HTTP and HTTPS requests from hooks, on libcurl's
 * multi-socket interface driven by the worker's libev loop. A request
 * parks the hook (hook_park) until its answer, an error or its timeout.
 * Per worker: one multi handle (and its connection cache), made on first
 * use. It does not interpret answers: 4xx and 5xx are answers too. */
#ifndef LUAMTA_HTTP_H
#define LUAMTA_HTTP_H

#include <lua.h>

/* Sets the field "http" of the table on top of L's stack (luamta). */
void http_lua_open(lua_State *L);
/* Frees the multi handle, every request still held, the socket watchers
 * and libcurl's global state. Call after the sessions are gone (their
 * waiting requests were cancelled then) and before the loop is destroyed. */
void http_shutdown(void);

#endif
