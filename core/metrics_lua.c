/* metrics_lua.c - what scripts see of the metrics:
 *   local c = luamta.metrics.counter("app_rejects_total", "Rejections by reason.")
 *   c:inc({ reason = "rbl" })      -- labels: a table of name -> string
 *   c:inc(nil, 5)                  -- by 5: a non-negative integer
 * counter() raises on a bad name or help, on a name already defined with
 * another help, and when the counter table is full; inc() raises on bad
 * labels. A full series table is not an error: the increment is counted
 * in luamta_metrics_series_dropped_total. Tables are read raw (lua_next),
 * as everything a script hands over. */
#include "metrics_lua.h"

#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "metrics.h"

#define METRICS_LUA_COUNTER "luamta.metrics.counter"

struct metrics_lua_counter {
	int fam; /* metrics.h's family, or -1 without --metrics */
};

static int
metrics_lua_counter(lua_State *L)
{
	size_t nlen, hlen;
	const char *name = luaL_checklstring(L, 1, &nlen);
	const char *help = luaL_checklstring(L, 2, &hlen);
	struct metrics_lua_counter *c;
	int fam = -1;

	if (!metrics_name_ok(name, nlen))
		return luaL_error(L,
		    "luamta.metrics.counter: invalid name '%s' (expected [a-zA-Z_:][a-zA-Z0-9_:]*, "
		    "at most %d bytes, ending in _total, not starting with luamta_)",
		    name, METRICS_NAME_MAX);
	if (hlen > METRICS_HELP_MAX || strlen(help) != hlen)
		return luaL_error(L,
		    "luamta.metrics.counter: help must be at most %d bytes, without NUL",
		    METRICS_HELP_MAX);
	if (metrics_enabled()) {
		fam = metrics_family(name, help);
		if (fam == -1)
			return luaL_error(L,
			    "luamta.metrics.counter: '%s' already exists with another help", name);
		if (fam < 0)
			return luaL_error(L,
			    "luamta.metrics.counter: too many counters (at most %d)",
			    METRICS_FAMILY_MAX);
	}
	c = lua_newuserdatauv(L, sizeof(*c), 0);
	c->fam = fam;
	luaL_setmetatable(L, METRICS_LUA_COUNTER);
	return 1;
}

static int
metrics_lua_inc(lua_State *L)
{
	struct metrics_lua_counter *c = luaL_checkudata(L, 1, METRICS_LUA_COUNTER);
	lua_Integer n = luaL_optinteger(L, 3, 1);
	struct metrics_label labels[METRICS_LABELS_MAX];
	char nums[METRICS_LABELS_MAX][48];
	int nlabels = 0;

	if (n < 0)
		return luaL_error(L, "inc: the amount must not be negative");
	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_pushnil(L);
		while (lua_next(L, 2) != 0) {
			struct metrics_label *l = &labels[nlabels];
			size_t len;

			if (lua_type(L, -2) != LUA_TSTRING)
				return luaL_error(L, "inc: label names must be strings");
			l->name = lua_tolstring(L, -2, &len);
			if (!metrics_label_ok(l->name, len))
				return luaL_error(L,
				    "inc: invalid label name '%s' (expected "
				    "[a-zA-Z_][a-zA-Z0-9_]*, at "
				    "most %d bytes, not starting with __)",
				    l->name, METRICS_LABEL_MAX);
			if (nlabels == METRICS_LABELS_MAX)
				return luaL_error(L, "inc: at most %d labels", METRICS_LABELS_MAX);
			/* Strings stay alive in the table; numbers are formatted
			 * here, without converting the table's value in place. */
			if (lua_type(L, -1) == LUA_TSTRING)
				l->value = lua_tolstring(L, -1, &l->vlen);
			else if (lua_isinteger(L, -1)) {
				snprintf(nums[nlabels], sizeof(nums[0]), LUA_INTEGER_FMT,
				    lua_tointeger(L, -1));
				l->value = nums[nlabels];
				l->vlen = strlen(l->value);
			} else if (lua_type(L, -1) == LUA_TNUMBER) {
				snprintf(nums[nlabels], sizeof(nums[0]), LUA_NUMBER_FMT,
				    lua_tonumber(L, -1));
				l->value = nums[nlabels];
				l->vlen = strlen(l->value);
			} else
				return luaL_error(L,
				    "inc: label '%s' must be a string or a number, not %s", l->name,
				    luaL_typename(L, -1));
			nlabels++;
			lua_pop(L, 1);
		}
	}
	if (c->fam >= 0)
		(void)metrics_add(c->fam, labels, nlabels, (uint64_t)n);
	return 0;
}

static const luaL_Reg metrics_lua_methods[] = {
	{ "inc", metrics_lua_inc },
	{ NULL, NULL },
};

static const luaL_Reg metrics_lua_funcs[] = {
	{ "counter", metrics_lua_counter },
	{ NULL, NULL },
};

void
metrics_lua_open(lua_State *L)
{
	luaL_newmetatable(L, METRICS_LUA_COUNTER);
	luaL_newlib(L, metrics_lua_methods);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	luaL_newlib(L, metrics_lua_funcs);
	lua_setfield(L, -2, "metrics");
}
