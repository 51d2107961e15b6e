/* redis.c - luamta.redis on hiredis' asynchronous API and its libev adapter.
 * A pool entry (struct redis_conn) stands for one (server, db, password) in
 * this worker and lives until redis_shutdown(); its link (struct redis_link)
 * is the hiredis connection of the moment, dropped on any failure and made
 * anew by the next call, with AUTH and SELECT queued first. Sessions share
 * the link: Redis answers in order and hiredis hands each reply to the
 * callback queued with its command. A request (struct redis_req) is one
 * waiting call; hiredis owns it while callbacks are due (a command cannot
 * be taken back), so a cancelled call is only marked and freed by its last
 * callback. */
#include "redis.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ev.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>
#include <lauxlib.h>

#include "hook.h"
#include "log.h"
#include "redis_cmd.h"

#define REDIS_CLIENT          "luamta.redis.client"
#define REDIS_POOL_MAX        32  /* distinct servers, dbs and passwords per worker */
#define REDIS_TIMEOUT_DEFAULT 5.0 /* seconds per call */
#define REDIS_TIMEOUT_MAX     3600.0
#define REDIS_REPLY_DEFAULT   (4 << 20)  /* bytes of reply one call may hand to Lua */
#define REDIS_REPLY_LIMIT     (64 << 20) /* the most max_reply may be */
#define REDIS_ARGS_BYTES_MAX  (64 << 20) /* bytes of arguments in one call */
#define REDIS_PIPELINE_MAX    4096       /* commands in one pipeline */
#define REDIS_VALUE_COST      16         /* what a reply element costs beyond its bytes */

struct redis_link;

struct redis_conn {
	struct redis_conn *next;
	char *host; /* an address, or the socket's path when port is 0 */
	int port;
	long long db;
	char *password; /* NULL: no AUTH */
	size_t passlen;
	size_t max_reply;        /* the largest of its clients' */
	struct redis_link *link; /* the live connection, or NULL until the next call */
};

struct redis_link {
	struct redis_conn *conn; /* NULL once dropped: no new command goes to it */
	redisAsyncContext *ac;   /* NULL once hiredis freed it */
	int reading;             /* inside redis_on_read: hiredis may free ac under us */
	int gone;                /* it did: redis_on_read frees the link */
	int handshakes;          /* AUTH and SELECT replies still to come */
	int ready;               /* connected and the handshake answered */
	char err[160];           /* why it was dropped: what the calls on it return */
};

enum redis_kind {
	REDIS_CALL = 0,
	REDIS_PIPELINE,
	REDIS_CONNECT,
};

struct redis_req {
	enum redis_kind kind;
	struct hook_run *run; /* NULL once woken or cancelled: never wake it */
	struct ev_loop *loop;
	ev_timer timer;
	struct redis_link *link; /* valid while pending > 0 */
	int ncmds;
	char **cmds; /* formatted commands, until they are handed to hiredis */
	int *lens;
	int pending;   /* hiredis callbacks still due */
	int replies;   /* pipeline entries filled */
	int pushed;    /* the pipeline's table is on the thread */
	int too_large; /* the reply overflowed the link's buffer */
	size_t max_reply, used;
	char err[160]; /* a failure before anything was sent */
};

/* What a client handle holds: the pool entry and this script's settings. */
struct redis_client {
	struct redis_conn *conn;
	double timeout;
	size_t max_reply;
};

static struct redis_conn *redis_pool;
static int redis_npool;
/* A request built for a call that has not parked yet: hook_park() raises
 * where the hook cannot wait, and the request must not leak then. The next
 * call (or the shutdown) frees it. */
static struct redis_req *redis_unparked;
static char redis_tag_auth[] = "auth", redis_tag_select[] = "select";

static void redis_on_reply(redisAsyncContext *, void *, void *);

static void
redis_req_free(struct redis_req *req)
{
	if (req == NULL)
		return;
	for (int i = 0; req->cmds != NULL && i < req->ncmds; i++)
		redisFreeCommand(req->cmds[i]);
	free(req->cmds);
	free(req->lens);
	free(req);
}

static void
redis_reclaim(void)
{
	redis_req_free(redis_unparked);
	redis_unparked = NULL;
}

/* The text a call returns for a connection hiredis gave up on. */
static void
redis_errtext(char *dst, size_t size, const redisAsyncContext *ac)
{
	redis_cmd_errtext(dst, size, ac->err == 0 || ac->err == REDIS_ERR_EOF, ac->errstr);
}

/* The pool entry forgets the link: the next call makes a new one. */
static void
redis_link_detach(struct redis_link *link)
{
	if (link->conn != NULL && link->conn->link == link)
		link->conn->link = NULL;
	link->conn = NULL;
}

/* Closes the link at once: every call waiting on it returns nil and
 * link->err (why, if not set yet). From inside a hiredis callback, hiredis
 * frees the connection once the callback returns; otherwise now, and the
 * link is gone when this returns. */
static void
redis_link_drop(struct redis_link *link, const char *why)
{
	struct redis_conn *conn = link->conn;

	if (conn == NULL || link->ac == NULL)
		return;
	if (link->err[0] == '\0')
		snprintf(link->err, sizeof(link->err), "%s", why);
	log_info(NULL, "redis.drop server=%s:%d reason=\"%s\"", conn->host, conn->port, link->err);
	redis_link_detach(link);
	redisAsyncFree(link->ac);
}

/* hiredis frees the connection: its last word, after every pending
 * callback ran. The adapter's cleanup stops the watchers. */
static void
redis_on_cleanup(void *privdata)
{
	redisLibevEvents *e = privdata;
	redisAsyncContext *ac = e->context;
	struct redis_link *link = ac->data;

	redisLibevCleanup(privdata);
	memset(&ac->ev, 0, sizeof(ac->ev));
	ac->data = NULL;
	redis_link_detach(link);
	link->ac = NULL;
	if (link->reading)
		link->gone = 1;
	else
		free(link);
}

/* The adapter's read callback, plus a bound on what hiredis buffers: it
 * reads a whole reply before handing it over, so a server sending a huge
 * one would otherwise grow the process without limit. Complete replies are
 * handed over after each read, so the buffer holds one reply's bytes; on
 * the wire a reply takes at most about twice what redis_reply_size()
 * counts, hence the bound. */
static void
redis_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	redisLibevEvents *e = w->data;
	struct redis_link *link = e->context->data;
	redisReader *r;
	redisCallback *head;

	(void)loop;
	(void)revents;
	link->reading = 1;
	redisAsyncHandleRead(e->context);
	link->reading = 0;
	if (link->gone) {
		free(link);
		return;
	}
	r = link->ac->c.reader;
	if (link->conn == NULL || r == NULL || r->len - r->pos <= 2 * link->conn->max_reply + 65536)
		return;
	head = link->ac->replies.head;
	if (head != NULL && head->fn == redis_on_reply)
		((struct redis_req *)head->privdata)->too_large = 1;
	redis_link_drop(link, "closed");
}

static void
redis_on_connect(const redisAsyncContext *ac, int status)
{
	struct redis_link *link = ac->data;

	if (link == NULL)
		return;
	if (status != REDIS_OK)
		redis_link_detach(link);
	else if (link->handshakes == 0)
		link->ready = 1;
}

/* AUTH and SELECT: an error reply fails the link, and so every call queued
 * behind them, with "auth: <what Redis said>". */
static void
redis_on_handshake(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct redis_link *link = ac->data;
	redisReply *r = reply;

	if (link == NULL)
		return;
	if (r == NULL) {
		redis_link_detach(link);
		return;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(link->err, sizeof(link->err), "%s: %s", (char *)privdata, r->str);
		redis_link_drop(link, NULL);
		return;
	}
	if (--link->handshakes == 0)
		link->ready = 1;
}

/* The live link of conn, or a new one with its handshake queued. hiredis
 * resolves names while connecting, so only addresses reach here. Returns
 * NULL and the error in err when connecting failed at once. */
static struct redis_link *
redis_link_get(struct redis_conn *conn, struct ev_loop *loop, char *err, size_t errsize)
{
	struct redis_link *link;
	redisAsyncContext *ac;
	redisLibevEvents *e;
	const char *argv[2];
	size_t lens[2];
	char db[24];

	if (conn->link != NULL)
		return conn->link;
	if ((link = calloc(1, sizeof(*link))) == NULL) {
		snprintf(err, errsize, "out of memory");
		return NULL;
	}
	ac = conn->port ? redisAsyncConnect(conn->host, conn->port) :
			  redisAsyncConnectUnix(conn->host);
	if (ac == NULL || ac->err || redisLibevAttach(loop, ac) != REDIS_OK) {
		if (ac == NULL)
			snprintf(err, errsize, "out of memory");
		else
			redis_errtext(err, errsize, ac);
		if (ac != NULL)
			redisAsyncFree(ac);
		free(link);
		return NULL;
	}
	ac->data = link;
	e = ac->ev.data;
	ev_set_cb(&e->rev, redis_on_read);
	ac->ev.cleanup = redis_on_cleanup;
	redisAsyncSetConnectCallback(ac, redis_on_connect);
	link->ac = ac;
	link->conn = conn;
	conn->link = link;
	if (conn->password != NULL) {
		argv[0] = "AUTH", lens[0] = 4;
		argv[1] = conn->password, lens[1] = conn->passlen;
		if (redisAsyncCommandArgv(ac, redis_on_handshake, redis_tag_auth, 2, argv, lens) ==
		    REDIS_OK)
			link->handshakes++;
	}
	if (conn->db != 0) {
		snprintf(db, sizeof(db), "%lld", conn->db);
		argv[0] = "SELECT", lens[0] = 6;
		argv[1] = db, lens[1] = strlen(db);
		if (redisAsyncCommandArgv(
			ac, redis_on_handshake, redis_tag_select, 2, argv, lens) == REDIS_OK)
			link->handshakes++;
	}
	return link;
}

/* Requests ----------------------------------------------------------------- */

/* Wakes the call with the n values on top of its thread. The request is
 * freed first if hiredis owes it nothing more. */
static void
redis_finish(struct redis_req *req, int n)
{
	struct hook_run *run = req->run;

	req->run = NULL;
	ev_timer_stop(req->loop, &req->timer);
	if (req->pending == 0)
		redis_req_free(req);
	hook_wake(run, n);
}

static void
redis_fail(struct redis_req *req, const char *err)
{
	lua_State *co = hook_run_thread(req->run);

	if (req->pushed)
		lua_pop(co, 1);
	req->pushed = 0;
	lua_checkstack(co, 2);
	lua_pushnil(co);
	lua_pushstring(co, err);
	redis_finish(req, 2);
}

/* What a reply costs in Lua, roughly: its bytes and a fixed cost per value. */
static size_t
redis_reply_size(const redisReply *r)
{
	size_t n = REDIS_VALUE_COST;

	if (r->type == REDIS_REPLY_ARRAY)
		for (size_t i = 0; i < r->elements; i++)
			n += redis_reply_size(r->element[i]);
	else if (r->type != REDIS_REPLY_INTEGER && r->type != REDIS_REPLY_NIL)
		n += r->len;
	return n;
}

/* Pushes a reply as a value inside a table: nil is false (a table cannot
 * hold nil), an error reply is { err = text }. hiredis nests at most a few
 * levels, so the recursion is shallow. */
static void
redis_push(lua_State *co, const redisReply *r)
{
	lua_checkstack(co, 4);
	switch (r->type) {
	case REDIS_REPLY_STRING:
	case REDIS_REPLY_STATUS:
		lua_pushlstring(co, r->str, r->len);
		break;
	case REDIS_REPLY_INTEGER:
		lua_pushinteger(co, r->integer);
		break;
	case REDIS_REPLY_ARRAY:
		lua_createtable(co, (int)r->elements, 0);
		for (size_t i = 0; i < r->elements; i++) {
			redis_push(co, r->element[i]);
			lua_rawseti(co, -2, (lua_Integer)i + 1);
		}
		break;
	case REDIS_REPLY_ERROR:
		lua_createtable(co, 0, 1);
		lua_pushliteral(co, "err");
		lua_pushlstring(co, r->str, r->len);
		lua_rawset(co, -3);
		break;
	default:
		lua_pushboolean(co, 0);
		break;
	}
}

static void
redis_on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct redis_req *req = privdata;
	struct redis_link *link = ac->data;
	redisReply *r = reply;
	lua_State *co;
	size_t size;

	req->pending--;
	if (r == NULL && link != NULL)
		redis_link_detach(link);
	if (req->run == NULL) {
		if (req->pending == 0)
			redis_req_free(req);
		return;
	}
	if (r == NULL) {
		if (req->too_large)
			redis_fail(req, "reply too large");
		else if (link != NULL && link->err[0] != '\0')
			redis_fail(req, link->err);
		else {
			redis_errtext(req->err, sizeof(req->err), ac);
			redis_fail(req, req->err);
		}
		return;
	}
	co = hook_run_thread(req->run);
	lua_checkstack(co, 4);
	size = redis_reply_size(r);
	switch (req->kind) {
	case REDIS_CONNECT:
		if (r->type == REDIS_REPLY_ERROR)
			redis_fail(req, r->str);
		else {
			lua_pushboolean(co, 1);
			redis_finish(req, 1);
		}
		return;
	case REDIS_CALL:
		if (r->type == REDIS_REPLY_ERROR) {
			lua_pushnil(co);
			lua_pushlstring(co, r->str, r->len);
			redis_finish(req, 2);
		} else if (size > req->max_reply)
			redis_fail(req, "reply too large");
		else {
			if (r->type == REDIS_REPLY_NIL)
				lua_pushnil(co);
			else
				redis_push(co, r);
			redis_finish(req, 1);
		}
		return;
	case REDIS_PIPELINE:
		if (!req->pushed)
			lua_createtable(co, req->ncmds, 0);
		req->pushed = 1;
		if (size > req->max_reply - req->used) {
			lua_createtable(co, 0, 1);
			lua_pushliteral(co, "err");
			lua_pushliteral(co, "reply too large");
			lua_rawset(co, -3);
		} else {
			req->used += size;
			redis_push(co, r);
		}
		lua_rawseti(co, -2, ++req->replies);
		if (req->pending > 0)
			return;
		if (req->replies < req->ncmds)
			redis_fail(req, "closed");
		else
			redis_finish(req, 1);
		return;
	}
}

/* A call's timeout: Redis answers in order, so everything queued on the
 * link waits behind the late reply; the link is dropped and every call on
 * it returns nil, "timeout". A call that never reached hiredis fails with
 * its own error (the timer was set to fire at once). */
static void
redis_on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct redis_req *req = w->data;

	(void)loop;
	(void)revents;
	if (req->pending > 0 && req->link->conn != NULL) {
		redis_link_drop(req->link, "timeout");
		return;
	}
	redis_fail(req, req->pending > 0 ? "timeout" : req->err);
}

/* The session ended while the call waited: the commands stay queued, and
 * their callbacks free the request. */
static void
redis_cancel(void *arg)
{
	struct redis_req *req = arg;

	req->run = NULL;
	ev_timer_stop(req->loop, &req->timer);
	if (req->pending == 0)
		redis_req_free(req);
}

static struct redis_req *
redis_req_new(lua_State *L, enum redis_kind kind, int ncmds, const struct redis_client *c)
{
	struct redis_req *req;

	redis_reclaim();
	if ((req = calloc(1, sizeof(*req))) == NULL ||
	    (req->cmds = calloc((size_t)ncmds, sizeof(*req->cmds))) == NULL ||
	    (req->lens = calloc((size_t)ncmds, sizeof(*req->lens))) == NULL) {
		redis_req_free(req);
		luaL_error(L, "luamta.redis: out of memory");
	}
	req->kind = kind;
	req->ncmds = ncmds;
	req->max_reply = c->max_reply;
	redis_unparked = req;
	return req;
}

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

/* Parks the hook, hands the commands to the link and arms the timer. */
static int
redis_start(lua_State *L, struct redis_req *req, const char *what, const struct redis_client *c,
    lua_KFunction k)
{
	struct redis_link *link;
	int i = 0;

	req->run = hook_park(L, what, redis_cancel, req);
	redis_unparked = NULL;
	req->loop = hook_run_loop(req->run);
	ev_timer_init(&req->timer, redis_on_timeout, c->timeout, 0);
	req->timer.data = req;
	link = redis_link_get(c->conn, req->loop, req->err, sizeof(req->err));
	if (link != NULL) {
		req->link = link;
		for (i = 0; i < req->ncmds; i++) {
			if (redisAsyncFormattedCommand(link->ac, redis_on_reply, req, req->cmds[i],
				(size_t)req->lens[i]) != REDIS_OK)
				break;
			req->pending++;
		}
		if (req->pending == 0)
			snprintf(req->err, sizeof(req->err), "closed");
	}
	for (i = 0; i < req->ncmds; i++)
		redisFreeCommand(req->cmds[i]);
	free(req->cmds);
	req->cmds = NULL;
	if (req->pending == 0)
		ev_timer_set(&req->timer, 0, 0);
	ev_timer_start(req->loop, &req->timer);
	return k != NULL ? lua_yieldk(L, 0, 0, k) : lua_yield(L, 0);
}

/* Lua API ------------------------------------------------------------------ */

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

/* The options of connect{}, read raw from the script's table. */
struct redis_opts {
	const char *host;
	int port;
	lua_Integer db;
	const char *password;
	size_t passlen;
};

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
			    luaL_tolstring(L, -1, NULL));
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

/* The pool entry for o, made if new; NULL when the pool is full or out of
 * memory. */
static struct redis_conn *
redis_conn_get(const struct redis_opts *o)
{
	struct redis_conn *conn;

	for (conn = redis_pool; conn != NULL; conn = conn->next)
		if (conn->port == o->port && conn->db == o->db &&
		    strcmp(conn->host, o->host) == 0 &&
		    (conn->password == NULL) == (o->password == NULL) &&
		    (o->password == NULL ||
			(conn->passlen == o->passlen &&
			    memcmp(conn->password, o->password, o->passlen) == 0)))
			return conn;
	if (redis_npool >= REDIS_POOL_MAX || (conn = calloc(1, sizeof(*conn))) == NULL)
		return NULL;
	conn->host = strdup(o->host);
	if (o->password != NULL && (conn->password = malloc(o->passlen + 1)) != NULL) {
		memcpy(conn->password, o->password, o->passlen);
		conn->password[o->passlen] = '\0';
		conn->passlen = o->passlen;
	}
	if (conn->host == NULL || (o->password != NULL && conn->password == NULL)) {
		free(conn->host);
		free(conn->password);
		free(conn);
		return NULL;
	}
	conn->port = o->port;
	conn->db = o->db;
	conn->next = redis_pool;
	redis_pool = conn;
	redis_npool++;
	return conn;
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
	if (c->conn->link != NULL && c->conn->link->ready)
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

void
redis_shutdown(void)
{
	struct redis_conn *conn;

	redis_reclaim();
	while ((conn = redis_pool) != NULL) {
		if (conn->link != NULL)
			redis_link_drop(conn->link, "shutdown");
		redis_pool = conn->next;
		free(conn->host);
		if (conn->password != NULL)
			explicit_bzero(conn->password, conn->passlen);
		free(conn->password);
		free(conn);
	}
	redis_npool = 0;
}
