/* metrics_lua.h - luamta.metrics: the counters a policy defines, kept in
 * metrics.h's shared tables (so every worker adds to the same series, and
 * a reload keeps them). Without --metrics the calls check their arguments
 * and count nothing. */
#ifndef LUAMTA_METRICS_LUA_H
#define LUAMTA_METRICS_LUA_H

#include <lua.h>

/* Sets the field metrics of the table on top of L's stack. */
void metrics_lua_open(lua_State *L);

#endif
