/* redis.c - luamta.redis on hiredis' asynchronous API and its libev adapter:
 * the pool and its connections, and the waiting requests; redis_lua.c is
 * what scripts see. A pool entry (struct redis_conn) stands for one
 * (server, db, password) in this worker and lives until redis_shutdown();
 * its link (struct redis_link) is the hiredis connection of the moment,
 * dropped on any failure and made anew by the next call, with AUTH and
 * SELECT queued first. Sessions share the link: Redis answers in order and
 * hiredis hands each reply to the callback queued with its command. A
 * request (struct redis_req) is one waiting call; hiredis owns it while
 * callbacks are due (a command cannot be taken back), so a cancelled call
 * is only marked and freed by its last callback. */
#include "redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>
#include <lauxlib.h>

#include "hook.h"
#include "log.h"
#include "redis_cmd.h"
#include "redis_int.h"

#define REDIS_VALUE_COST 16 /* what a reply element costs beyond its bytes */

struct redis_link {
	struct redis_conn *conn; /* NULL once dropped: no new command goes to it */
	redisAsyncContext *ac;   /* NULL once hiredis freed it */
	int reading;             /* inside redis_on_read: hiredis may free ac under us */
	int gone;                /* it did: redis_on_read frees the link */
	int handshakes;          /* AUTH and SELECT replies still to come */
	int ready;               /* connected and the handshake answered */
	char err[160];           /* why it was dropped: what the calls on it return */
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

struct redis_req *
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

int
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

struct redis_conn *
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
int
redis_conn_ready(const struct redis_conn *conn)
{
	return conn->link != NULL && conn->link->ready;
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
