/* redis_lua.c - what scripts see of luamta.redis: connect{} and its
 * options (read raw), the client handle, call and pipeline with their
 * arguments checked and formatted before the hook parks. The waiting and
 * the replies are redis.c's. */
#include "redis.h"

#include <arpa/inet.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <lauxlib.h>

#include "redis_cmd.h"
#include "redis_int.h"

#define REDIS_CLIENT          "luamta.redis.client"
#define REDIS_TIMEOUT_DEFAULT 5.0 /* seconds per call */
#define REDIS_TIMEOUT_MAX     3600.0
#define REDIS_ARGS_BYTES_MAX  (64 << 20) /* bytes of arguments in one call */
#define REDIS_PIPELINE_MAX    4096       /* commands in one pipeline */

/* Formats the command whose argc words are at base..base+argc-1 on L's
 * stack into req's slot i. Raises on a bad or refused command; sets kind
 * for the caller's MULTI bookkeeping. */
static void
redis_format(lua_State *L, struct redis_req *req, int i, int base, int argc, size_t *total,
    enum redis_cmd_kind *kind)
{
	const char **argv;
	size_t *lens;
	char why[128];
	int len;

	if (argc < 1)
		luaL_error(L, "luamta.redis: command %d is empty", i + 1);
	argv = lua_newuserdatauv(L, (size_t)argc * (sizeof(*argv) + sizeof(*lens)), 0);
	lens = (size_t *)(argv + argc);
	for (int j = 0; j < argc; j++) {
		int t = lua_type(L, base + j);
		if (t != LUA_TSTRING && t != LUA_TNUMBER)
			luaL_error(L,
			    "luamta.redis: argument %d of command %d is a %s (string or number "
			    "expected)",
			    j + 1, i + 1, lua_typename(L, t));
		argv[j] = lua_tolstring(L, base + j, &lens[j]);
		if ((*total += lens[j]) > REDIS_ARGS_BYTES_MAX)
			luaL_error(L, "luamta.redis: arguments too large");
	}
	if ((*kind = redis_cmd_check(argc, argv, lens, why, sizeof(why))) == REDIS_CMD_REFUSED)
		luaL_error(L, "luamta.redis: %s", why);
	if ((len = redisFormatCommandArgv(&req->cmds[i], argc, argv, lens)) < 0)
		luaL_error(L, "luamta.redis: out of memory");
	req->lens[i] = len;
	lua_pop(L, 1);
}

static struct redis_client *
redis_check(lua_State *L)
{
	return luaL_checkudata(L, 1, REDIS_CLIENT);
}

/* client:call(name, args...) -> reply | nil, err */
static int
redis_call(lua_State *L)
{
	struct redis_client *c = redis_check(L);
	struct redis_req *req;
	enum redis_cmd_kind kind;
	size_t total = 0;

	req = redis_req_new(L, REDIS_CALL, 1, c);
	redis_format(L, req, 0, 2, lua_gettop(L) - 1, &total, &kind);
	if (kind != REDIS_CMD_OK)
		return luaL_error(
		    L, "luamta.redis: %s only within one client:pipeline{}", lua_tostring(L, 2));
	return redis_start(L, req, "client:call", c, NULL);
}

/* client:pipeline{ {name, args...}, ... } -> { reply or false or {err=}, ... } | nil, err */
static int
redis_pipeline(lua_State *L)
{
	struct redis_client *c = redis_check(L);
	struct redis_req *req;
	enum redis_cmd_kind kind;
	size_t total = 0;
	lua_Integer n;
	int argc, multi = 0;

	luaL_checktype(L, 2, LUA_TTABLE);
	lua_settop(L, 2);
	n = (lua_Integer)lua_rawlen(L, 2);
	luaL_argcheck(L, n >= 1 && n <= REDIS_PIPELINE_MAX, 2, "1 to 4096 commands expected");
	req = redis_req_new(L, REDIS_PIPELINE, (int)n, c);
	for (int i = 0; i < (int)n; i++) {
		if (lua_rawgeti(L, 2, i + 1) != LUA_TTABLE)
			return luaL_error(L, "luamta.redis: command %d is not a table", i + 1);
		if (lua_rawlen(L, 3) > 100000)
			return luaL_error(
			    L, "luamta.redis: command %d has too many arguments", i + 1);
		argc = (int)lua_rawlen(L, 3);
		luaL_checkstack(L, argc + 4, "too many arguments");
		for (int j = 1; j <= argc; j++)
			lua_rawgeti(L, 3, j);
		redis_format(L, req, i, 4, argc, &total, &kind);
		if (kind == REDIS_CMD_MULTI)
			multi = 1;
		else if (kind == REDIS_CMD_EXEC)
			multi = 0;
		lua_settop(L, 2);
	}
	if (multi)
		return luaL_error(L, "luamta.redis: MULTI without EXEC or DISCARD in the pipeline");
	return redis_start(L, req, "client:pipeline", c, NULL);
}

static int
redis_client_tostring(lua_State *L)
{
	struct redis_client *c = redis_check(L);

	if (c->conn->port == 0)
		lua_pushfstring(
		    L, "luamta.redis.client (unix:%s db %d)", c->conn->host, (int)c->conn->db);
	else
		lua_pushfstring(L, "luamta.redis.client (%s:%d db %d)", c->conn->host,
		    c->conn->port, (int)c->conn->db);
	return 1;
}

/* One option of connect{}, read raw: pushed; whether it was given. */
static int
redis_opt(lua_State *L, const char *key, int type)
{
	int t;

	lua_pushstring(L, key);
	t = lua_rawget(L, 1);
	if (t != LUA_TNIL && t != type && !(type == LUA_TNUMBER && t == LUA_TSTRING))
		luaL_error(L, "luamta.redis.connect: %s must be a %s", key, lua_typename(L, type));
	return t != LUA_TNIL;
}

static void
redis_opts(lua_State *L, struct redis_opts *o, struct redis_client *c)
{
	static const char *const keys[] = { "host", "port", "db", "password", "timeout", "path",
		"max_reply", NULL };
	unsigned char a[16];
	lua_Integer v;

	memset(o, 0, sizeof(*o));
	o->host = "127.0.0.1";
	o->port = 6379;
	c->timeout = REDIS_TIMEOUT_DEFAULT;
	c->max_reply = REDIS_REPLY_DEFAULT;
	lua_pushnil(L);
	while (lua_next(L, 1) != 0) {
		int k = 0;
		lua_pop(L, 1);
		while (keys[k] != NULL &&
		    !(lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), keys[k]) == 0))
			k++;
		if (keys[k] == NULL)
			luaL_error(L, "luamta.redis.connect: unknown option %s",
			    lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) :
							     luaL_typename(L, -1));
	}
	if (redis_opt(L, "host", LUA_TSTRING)) {
		o->host = lua_tostring(L, -1);
		if (strncmp(o->host, "unix:", 5) == 0)
			o->host += 5, o->port = 0;
		else if (strcmp(o->host, "localhost") == 0)
			o->host = "127.0.0.1";
		else if (inet_pton(AF_INET, o->host, a) != 1 &&
		    inet_pton(AF_INET6, o->host, a) != 1)
			luaL_error(L,
			    "luamta.redis.connect: host must be an IP address, \"localhost\" "
			    "or \"unix:/path\" (resolving a name would block the server)");
	}
	if (redis_opt(L, "path", LUA_TSTRING))
		o->host = lua_tostring(L, -1), o->port = 0;
	if (o->port == 0 && o->host[0] != '/')
		luaL_error(L, "luamta.redis.connect: a socket path must be absolute");
	if (redis_opt(L, "port", LUA_TNUMBER)) {
		v = luaL_checkinteger(L, -1);
		if (v < 1 || v > 65535)
			luaL_error(L, "luamta.redis.connect: port must be from 1 to 65535");
		if (o->port != 0)
			o->port = (int)v;
	}
	if (redis_opt(L, "db", LUA_TNUMBER)) {
		o->db = luaL_checkinteger(L, -1);
		if (o->db < 0 || o->db > 1000000)
			luaL_error(L, "luamta.redis.connect: db must be from 0 to 1000000");
	}
	if (redis_opt(L, "password", LUA_TSTRING))
		o->password = lua_tolstring(L, -1, &o->passlen);
	if (redis_opt(L, "timeout", LUA_TNUMBER)) {
		c->timeout = luaL_checknumber(L, -1);
		if (!(c->timeout > 0) || c->timeout > REDIS_TIMEOUT_MAX)
			luaL_error(
			    L, "luamta.redis.connect: timeout must be from 0 to 3600 seconds");
	}
	if (redis_opt(L, "max_reply", LUA_TNUMBER)) {
		v = luaL_checkinteger(L, -1);
		if (v < 1024 || v > REDIS_REPLY_LIMIT)
			luaL_error(L,
			    "luamta.redis.connect: max_reply must be from 1024 to %d bytes",
			    REDIS_REPLY_LIMIT);
		c->max_reply = (size_t)v;
	}
}
/* After connect{}'s PING: the stack holds the options, the client and what
 * the wake pushed (true, or nil and the error). */
static int
redis_connect_k(lua_State *L, int status, lua_KContext ctx)
{
	(void)status;
	(void)ctx;
	if (lua_gettop(L) == 3 && lua_toboolean(L, 3)) {
		lua_settop(L, 2);
		return 1;
	}
	return 2;
}

/* luamta.redis.connect{ host=, port=, db=, password=, timeout=, path=,
 * max_reply= } -> client | nil, err */
static int
redis_connect(lua_State *L)
{
	const char *ping[] = { "PING" };
	const size_t pinglen[] = { 4 };
	struct redis_opts o;
	struct redis_client tmp, *c;
	struct redis_req *req;
	int len;

	if (lua_isnoneornil(L, 1)) {
		lua_settop(L, 0);
		lua_newtable(L);
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	redis_opts(L, &o, &tmp);
	if ((tmp.conn = redis_conn_get(&o)) == NULL) {
		lua_pushnil(L);
		lua_pushfstring(
		    L, "too many Redis connections (at most %d per worker)", REDIS_POOL_MAX);
		return 2;
	}
	lua_settop(L, 1);
	c = lua_newuserdatauv(L, sizeof(*c), 0);
	*c = tmp;
	luaL_setmetatable(L, REDIS_CLIENT);
	if (c->conn->max_reply < c->max_reply)
		c->conn->max_reply = c->max_reply;
	if (redis_conn_ready(c->conn))
		return 1;
	req = redis_req_new(L, REDIS_CONNECT, 1, c);
	if ((len = redisFormatCommandArgv(&req->cmds[0], 1, ping, pinglen)) < 0)
		return luaL_error(L, "luamta.redis: out of memory");
	req->lens[0] = len;
	return redis_start(L, req, "luamta.redis.connect", c, redis_connect_k);
}

void
redis_lua_open(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "call", redis_call },
		{ "pipeline", redis_pipeline },
		{ NULL, NULL },
	};
	static const luaL_Reg funcs[] = {
		{ "connect", redis_connect },
		{ NULL, NULL },
	};

	luaL_newmetatable(L, REDIS_CLIENT);
	luaL_newlib(L, methods);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, redis_client_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	lua_setfield(L, -2, "redis");
}
