/* redis_int.h - what the two halves of luamta.redis share: redis.c (the
 * pool, its hiredis connections and the waiting requests) and redis_lua.c
 * (what scripts see: connect, call, pipeline, their arguments and options).
 * Not for other modules: they use redis.h. */
#ifndef LUAMTA_REDIS_INT_H
#define LUAMTA_REDIS_INT_H

#include <stddef.h>

#include <ev.h>
#include <lua.h>

#define REDIS_POOL_MAX      32         /* distinct servers, dbs and passwords per worker */
#define REDIS_REPLY_DEFAULT (4 << 20)  /* bytes of reply one call may hand to Lua */
#define REDIS_REPLY_LIMIT   (64 << 20) /* the most max_reply may be */

struct hook_run;
struct redis_link; /* one hiredis connection: redis.c's own */

/* A pool entry: one (server, db, password) in this worker. */
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

enum redis_kind {
	REDIS_CALL = 0,
	REDIS_PIPELINE,
	REDIS_CONNECT,
};

/* One waiting call; see redis.c for who frees it. */
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

/* The options of connect{} that name a pool entry. */
struct redis_opts {
	const char *host; /* an address, or a socket's path when port is 0 */
	int port;
	long long db;
	const char *password; /* NULL: none */
	size_t passlen;
};

/* The pool entry for o, made if new; NULL when the pool is full or out of
 * memory. */
struct redis_conn *redis_conn_get(const struct redis_opts *o);
/* Whether conn has a connection that is up and answered its handshake. */
int redis_conn_ready(const struct redis_conn *conn);
/* A request for ncmds commands (the caller formats them into cmds and
 * lens). Raises when out of memory. Until redis_start() parks it, the
 * request is kept where the next call frees it, so a Lua error in between
 * leaks nothing. */
struct redis_req *redis_req_new(
    lua_State *L, enum redis_kind, int ncmds, const struct redis_client *);
/* Parks the hook (what names the call in errors), hands the commands to
 * the client's connection, arms the timeout and yields (with k, the
 * continuation). The results come from the replies: see redis.c. */
int redis_start(lua_State *L, struct redis_req *, const char *what, const struct redis_client *,
    lua_KFunction k);

#endif
