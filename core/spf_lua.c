/* spf_lua.c - luamta.spf.check. The call reads its table raw, makes the
 * check (spf.h), parks the hook and sends the first query the check asks
 * for; each answer goes back to the check, which may ask for another,
 * until it has its result, which is pushed onto the hook's thread.
 *
 * The time limit covers the whole check (RFC 7208 4.6.4 allows one): each
 * query gets what is left of it. A query that timed out is an answer like
 * any other (the check decides: temperror for most lookups, no match for
 * ptr's, no explanation for exp='s); a check that still wants to ask once
 * the time is up ends in temperror.
 *
 * As in dns_lua.c, the state of a call is made before the hook parks and
 * kept as the spare when parking raises, so nothing leaks; once parked it
 * is this file's until the hook is woken (freed just before) or the run
 * is cancelled (freed in spf_lua_cancel). */
#include "spf_lua.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#include "dns.h"
#include "hook.h"
#include "log.h"
#include "spf.h"

struct spf_lua_op {
	struct hook_run *run;
	struct dns_req *req; /* the query in flight, or NULL */
	struct spf *spf;
	double deadline;
	int out_of_time;
};

static struct spf_lua_op *spf_lua_spare;
static char spf_lua_hostname[256]; /* ours, for the %{r} of explanations */

static void spf_lua_on_answer(void *arg, const struct dns_answer *ans);

static void
spf_lua_op_free(struct spf_lua_op *op)
{
	spf_free(op->spf);
	free(op);
}

static void
spf_lua_cancel(void *arg)
{
	struct spf_lua_op *op = arg;

	dns_cancel(op->req);
	spf_lua_op_free(op);
}

void
spf_lua_shutdown(void)
{
	if (spf_lua_spare != NULL)
		spf_lua_op_free(spf_lua_spare);
	spf_lua_spare = NULL;
}

/* Sends the check's next query, if it has one. Returns 1 when one went
 * out, 0 when the result is known, -1 when out of memory. */
static int
spf_lua_send(struct spf_lua_op *op)
{
	struct ev_loop *loop = hook_run_loop(op->run);
	struct spf_query q;
	double left;

	if (spf_next(op->spf, &q) == 0)
		return 0;
	left = op->deadline - ev_now(loop);
	if (left < 0.001) {
		op->out_of_time = 1;
		return 0;
	}
	op->req = dns_query(loop, q.name, q.qtype, left, spf_lua_on_answer, op);
	return op->req != NULL ? 1 : -1;
}

/* Pushes result, explanation onto co. */
static int
spf_lua_push(struct spf_lua_op *op, lua_State *co, int oom)
{
	const char *exp = NULL, *why = "";
	enum spf_result r = SPF_TEMPERROR;

	if (oom)
		why = "out of memory";
	else if (op->out_of_time)
		why = "time limit";
	else
		r = spf_result(op->spf, &exp, &why);
	lua_pushstring(co, spf_result_str(r));
	if (exp != NULL)
		lua_pushstring(co, exp);
	else
		lua_pushnil(co);
	if (why[0] != '\0')
		log_debug(hook_run_sid(op->run), "spf.result result=%s why=\"%s\" queries=%zu",
		    spf_result_str(r), why, spf_queries(op->spf));
	return 2;
}

static void
spf_lua_on_answer(void *arg, const struct dns_answer *ans)
{
	struct spf_lua_op *op = arg;
	struct hook_run *run = op->run;
	lua_State *co = hook_run_thread(run);
	int rc, n = 0;

	op->req = NULL;
	rc = spf_feed(op->spf, ans) == -1 ? 0 : spf_lua_send(op);
	if (rc == 1)
		return;
	if (lua_checkstack(co, 4))
		n = spf_lua_push(op, co, rc == -1);
	spf_lua_op_free(op);
	hook_wake(run, n);
}

/* A string field of the table at 1, read raw. The table keeps the string
 * alive while this call runs (no Lua code runs in between). */
static const char *
spf_lua_field(lua_State *L, const char *key)
{
	const char *v;

	lua_pushstring(L, key);
	if (lua_rawget(L, 1) != LUA_TSTRING)
		luaL_error(L, "luamta.spf.check: %s must be a string", key);
	v = lua_tostring(L, -1);
	lua_pop(L, 1);
	return v;
}

/* spf.check{ ip =, helo =, sender = [, timeout =] } -> result, explanation */
int
spf_lua_check(lua_State *L)
{
	static const char what[] = "luamta.spf.check";
	const char *ip, *helo, *sender;
	unsigned char a[16];
	double timeout = SPF_LUA_TIMEOUT;
	struct spf_lua_op *op;
	int rc;

	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	ip = spf_lua_field(L, "ip");
	helo = spf_lua_field(L, "helo");
	sender = spf_lua_field(L, "sender");
	if (dns_addr_parse(ip, a) == 0)
		return luaL_error(L, "%s: invalid IP address '%s'", what, ip);
	lua_pushliteral(L, "timeout");
	if (lua_rawget(L, 1) != LUA_TNIL) {
		if (lua_type(L, -1) != LUA_TNUMBER)
			return luaL_error(L, "%s: timeout must be a number of seconds", what);
		timeout = lua_tonumber(L, -1);
		if (!(timeout > 0) || timeout > DNS_TIMEOUT_MAX)
			return luaL_error(L, "%s: timeout must be above 0 and at most %d seconds",
			    what, DNS_TIMEOUT_MAX);
	}
	lua_pop(L, 1);
	if (spf_lua_spare == NULL && (spf_lua_spare = calloc(1, sizeof(*spf_lua_spare))) == NULL)
		return luaL_error(L, "%s: out of memory", what);
	op = spf_lua_spare;
	spf_free(op->spf);
	memset(op, 0, sizeof(*op));
	if ((op->spf = spf_new(ip, helo, sender, spf_lua_hostname, (long long)time(NULL))) == NULL)
		return luaL_error(L, "%s: out of memory", what);
	op->run = hook_park(L, what, spf_lua_cancel, op);
	spf_lua_spare = NULL;
	op->deadline = ev_now(hook_run_loop(op->run)) + timeout;
	if ((rc = spf_lua_send(op)) == 1)
		return lua_yield(L, 0);
	/* Nothing to ask (a malformed domain is "none" at once), or out of
	 * memory: not waiting after all. */
	hook_park_undo(op->run);
	rc = rc == 0 ? spf_lua_push(op, L, 0) : 0;
	spf_lua_op_free(op);
	return rc != 0 ? rc : luaL_error(L, "%s: out of memory", what);
}

void
spf_lua_push_call(lua_State *L, const char *ip, const char *helo, const char *sender, int opts)
{
	opts = lua_absindex(L, opts);
	lua_pushcfunction(L, spf_lua_check);
	lua_createtable(L, 0, 4);
	lua_pushstring(L, ip);
	lua_setfield(L, -2, "ip");
	lua_pushstring(L, helo);
	lua_setfield(L, -2, "helo");
	lua_pushstring(L, sender);
	lua_setfield(L, -2, "sender");
	if (lua_type(L, opts) == LUA_TTABLE) {
		lua_pushliteral(L, "timeout");
		lua_rawget(L, opts);
		lua_setfield(L, -2, "timeout");
	}
}

/* s:spf()'s cache ----------------------------------------------------- */

struct spf_lua_cache {
	char *key;
	char *exp; /* or NULL */
	char result[12];
};

int
spf_lua_cached(lua_State *L, const struct spf_lua_cache *c, const char *key)
{
	if (c == NULL || strcmp(c->key, key) != 0)
		return 0;
	lua_pushstring(L, c->result);
	if (c->exp != NULL)
		lua_pushstring(L, c->exp);
	else
		lua_pushnil(L);
	return 2;
}

void
spf_lua_keep(lua_State *L, struct spf_lua_cache **c, const char *key)
{
	const char *r = lua_tostring(L, -2), *exp = lua_tostring(L, -1);
	struct spf_lua_cache *n;

	spf_lua_forget(c);
	if (r == NULL || strcmp(r, "temperror") == 0 || (n = calloc(1, sizeof(*n))) == NULL)
		return;
	snprintf(n->result, sizeof(n->result), "%s", r);
	n->key = strdup(key);
	n->exp = exp != NULL ? strdup(exp) : NULL;
	if (n->key == NULL || (exp != NULL && n->exp == NULL)) {
		spf_lua_forget(&n);
		return;
	}
	*c = n;
}

void
spf_lua_forget(struct spf_lua_cache **c)
{
	if (*c == NULL)
		return;
	free((*c)->key);
	free((*c)->exp);
	free(*c);
	*c = NULL;
}

static const luaL_Reg spf_lua_funcs[] = {
	{ "check", spf_lua_check },
	{ NULL, NULL },
};

void
spf_lua_open(lua_State *L, const char *hostname)
{
	snprintf(spf_lua_hostname, sizeof(spf_lua_hostname), "%s", hostname);
	luaL_newlib(L, spf_lua_funcs);
	lua_setfield(L, -2, "spf");
}
