/* dmarc_lua.c - luamta.dmarc.check and luamta.auth_results.
 *
 * check(msg, spf, dkim [, opts]) reads everything it needs before it
 * waits: the RFC5322.From domain from the message's header, the envelope
 * domain, and which of the SPF and DKIM results are aligned with the From
 * domain in relaxed and in strict mode (the record, not yet known, picks
 * the mode). Then it parks the hook and asks for the TXT records of
 * _dmarc.<From domain>, and when there is no DMARC record there, of
 * _dmarc.<organizational domain> (RFC 7489 6.6.3); the answer decides.
 *
 * The envelope domain is the domain of the message's MAIL FROM address,
 * or the session's HELO name for the null sender: the identity SPF checks
 * (RFC 7208 2.4, RFC 7489 3.1.2), so the spf argument is SPF's result for
 * that same identity.
 *
 * The state of a check is allocated before the hook parks, which takes it
 * as the cancel argument; parking raises where Lua cannot yield, so the
 * state is kept as the spare for the next call instead of leaking (as
 * dns_lua.c does). */
#include "dmarc_lua.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>

#include "authres.h"
#include "dmarc.h"
#include "dns.h"
#include "hook.h"
#include "msghdr.h"

struct dmarc_op {
	struct hook_run *run;
	struct dns_req *req; /* the query in flight, or NULL */
	double deadline;
	int at_org; /* the query is the organizational domain's */
	int spf_r, spf_s, dkim_r, dkim_s;
	char from[DMARC_DOMAIN_MAX];
	char org[DMARC_DOMAIN_MAX];
	char name[DMARC_DOMAIN_MAX + 8]; /* "_dmarc." and a domain */
};

static struct dmarc_op *dmarc_spare;

static void dmarc_on_answer(void *arg, const struct dns_answer *ans);

static void
dmarc_cancel(void *arg)
{
	struct dmarc_op *op = arg;

	dns_cancel(op->req);
	free(op);
}

void
dmarc_lua_shutdown(void)
{
	free(dmarc_spare);
	dmarc_spare = NULL;
}

/* Results ---------------------------------------------------------------- */

static void
set_str(lua_State *co, const char *key, const char *v)
{
	lua_pushstring(co, v);
	lua_setfield(co, -2, key);
}

static void
set_bool(lua_State *co, const char *key, int v)
{
	lua_pushboolean(co, v);
	lua_setfield(co, -2, key);
}

/* Pushes result, disposition and the details table. rec: the record that
 * decided (NULL: none); reason: why there is no verdict (or NULL). */
static int
dmarc_push(lua_State *co, const struct dmarc_op *op, enum dmarc_result r,
    const struct dmarc_record *rec, enum dmarc_policy policy, enum dmarc_policy dis,
    const char *reason)
{
	int strict_spf = rec != NULL && rec->aspf_strict,
	    strict_dkim = rec != NULL && rec->adkim_strict;

	lua_pushstring(co, dmarc_result_str(r));
	lua_pushstring(co, dmarc_policy_str(dis));
	lua_createtable(co, 0, 11);
	set_str(co, "result", dmarc_result_str(r));
	set_str(co, "disposition", dmarc_policy_str(dis));
	if (op->from[0] != '\0') {
		set_str(co, "domain", op->from);
		set_str(co, "org_domain", op->org);
		set_bool(co, "spf_aligned", strict_spf ? op->spf_s : op->spf_r);
		set_bool(co, "dkim_aligned", strict_dkim ? op->dkim_s : op->dkim_r);
	}
	if (rec != NULL) {
		set_str(co, "policy", dmarc_policy_str(policy));
		set_str(co, "record_domain", op->at_org ? op->org : op->from);
		lua_pushinteger(co, rec->pct);
		lua_setfield(co, -2, "pct");
		set_bool(co, "sampled_out", r == DMARC_FAIL && dis != policy);
	}
	if (reason != NULL)
		set_str(co, "reason", reason);
	return 3;
}

/* Sends the TXT query of _dmarc.<domain>. 0, or -1 (out of memory). */
static int
dmarc_send(struct dmarc_op *op, const char *domain)
{
	struct ev_loop *loop = hook_run_loop(op->run);
	double left = op->deadline - ev_now(loop);

	if (left < 0.001)
		left = 0.001; /* out of time already: it times out on the next turn */
	snprintf(op->name, sizeof(op->name), "_dmarc.%s", domain);
	op->req = dns_query(loop, op->name, DNS_T_TXT, left, dmarc_on_answer, op);
	return op->req != NULL ? 0 : -1;
}

/* The step after an answer: pushes the results onto co and returns how
 * many, or returns -1 when it asked the organizational domain. */
static int
dmarc_step(struct dmarc_op *op, lua_State *co, const struct dns_answer *ans)
{
	struct dmarc_record rec, one;
	enum dmarc_rec_status st = DMARC_REC_NOT;
	enum dmarc_policy policy, dis;
	enum dmarc_result r;
	char reason[64];
	int found = 0;

	if (ans->err != DNS_OK && dns_err_temporary(ans->err)) {
		snprintf(reason, sizeof(reason), "dns %s", dns_err_str(ans->err));
		return dmarc_push(co, op, DMARC_TEMPERROR, NULL, 0, 0, reason);
	}
	for (size_t i = 0; ans->err == DNS_OK && i < ans->nrr; i++) {
		enum dmarc_rec_status s1 =
		    dmarc_record_parse(ans->rr[i].data, ans->rr[i].len, &one);
		if (s1 == DMARC_REC_NOT)
			continue; /* 6.6.3: records that are not DMARC's are dropped */
		if (++found == 1) {
			st = s1;
			rec = one;
		}
	}
	/* 6.6.3 applies no policy where several records or a broken one are
	 * published; the result says so as permerror (11.2), so that the
	 * owner's mistake shows in Authentication-Results. */
	if (found > 1)
		return dmarc_push(co, op, DMARC_PERMERROR, NULL, 0, 0, "several DMARC records");
	if (found == 1 && st == DMARC_REC_INVALID)
		return dmarc_push(co, op, DMARC_PERMERROR, NULL, 0, 0, "invalid DMARC record");
	if (found == 1) {
		r = dmarc_evaluate(&rec, op->at_org, op->spf_r, op->spf_s, op->dkim_r, op->dkim_s,
		    arc4random_uniform(100), &policy, &dis);
		return dmarc_push(co, op, r, &rec, policy, dis, NULL);
	}
	if (!op->at_org && strcmp(op->from, op->org) != 0) {
		op->at_org = 1;
		if (dmarc_send(op, op->org) == 0)
			return -1;
		return dmarc_push(co, op, DMARC_TEMPERROR, NULL, 0, 0, "out of memory");
	}
	return dmarc_push(co, op, DMARC_NONE, NULL, 0, 0, "no DMARC record");
}

static void
dmarc_on_answer(void *arg, const struct dns_answer *ans)
{
	struct dmarc_op *op = arg;
	struct hook_run *run = op->run;
	lua_State *co = hook_run_thread(run);
	int n;

	op->req = NULL;
	/* Built outside Lua's memory cap: a few short strings. */
	if (!lua_checkstack(co, 8))
		n = 0;
	else if ((n = dmarc_step(op, co, ans)) == -1)
		return;
	free(op);
	hook_wake(run, n);
}

/* luamta.dmarc.check ------------------------------------------------------- */

/* The domain after the last '@' of an address (or the whole of a HELO
 * name), lower-cased into out; "" when there is none that fits. */
static void
envelope_domain(const char *sender, const char *helo, char *out)
{
	const char *d = sender[0] != '\0' ? strrchr(sender, '@') : NULL;
	size_t n;

	if (sender[0] != '\0')
		d = d != NULL ? d + 1 : "";
	else
		d = helo != NULL ? helo : "";
	n = strlen(d);
	if (n >= DMARC_DOMAIN_MAX)
		n = 0;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)(d[i] >= 'A' && d[i] <= 'Z' ? d[i] - 'A' + 'a' : d[i]);
	out[n] = '\0';
}

/* A string field of the table at idx, read raw; NULL when absent, raises
 * when it is there and not a string. */
static const char *
raw_string(lua_State *L, int idx, const char *key, const char *what)
{
	const char *v = NULL;

	lua_pushstring(L, key);
	switch (lua_rawget(L, idx)) {
	case LUA_TNIL:
		break;
	case LUA_TSTRING:
		v = lua_tostring(L, -1);
		break;
	default:
		luaL_error(L, "%s: %s must be a string", what, key);
	}
	lua_pop(L, 1); /* still referenced by the table */
	return v;
}

/* Which passing DKIM results of the array at idx are aligned. */
static void
dkim_alignment(lua_State *L, int idx, struct dmarc_op *op)
{
	static const char what[] = "luamta.dmarc.check";
	lua_Integer n = (lua_Integer)lua_rawlen(L, idx);

	if (n > DMARC_LUA_DKIM_MAX)
		n = DMARC_LUA_DKIM_MAX;
	for (lua_Integer i = 1; i <= n; i++) {
		const char *result, *domain;
		int t;

		lua_rawgeti(L, idx, i);
		t = lua_gettop(L);
		if (lua_type(L, t) != LUA_TTABLE)
			luaL_error(L, "%s: dkim must be an array of result tables", what);
		result = raw_string(L, t, "result", what);
		domain = raw_string(L, t, "domain", what);
		if (result != NULL && domain != NULL && strcasecmp(result, "pass") == 0 &&
		    domain[0] != '\0') {
			op->dkim_r |= dmarc_aligned(op->from, domain, 0);
			op->dkim_s |= dmarc_aligned(op->from, domain, 1);
		}
		lua_pop(L, 1);
	}
}

/* The RFC5322.From domain into op->from, or the reason there is none
 * that DMARC can use (RFC 7489 6.6.1: exactly one From, one address). */
static const char *
from_domain(const struct dmarc_lua_msg *v, struct dmarc_op *op)
{
	struct msghdr_field f, from;
	size_t pos = 0;
	int n = 0;

	while (msghdr_next(v->head, v->hlen, &pos, &f))
		if (msghdr_is(&f, "From") && n++ == 0)
			from = f;
	if (n == 0)
		return "no From field";
	if (n > 1)
		return "several From fields";
	switch (dmarc_from_domain(from.value, from.vlen, op->from)) {
	case DMARC_FROM_OK:
		return NULL;
	case DMARC_FROM_MULTIPLE:
		op->from[0] = '\0';
		return "several From addresses";
	default:
		op->from[0] = '\0';
		return "no usable From address";
	}
}

/* luamta.dmarc.check(msg, spf, dkim [, opts]) -> result, disposition,
 * details; waits for DNS. */
int
dmarc_lua_check(lua_State *L, const struct dmarc_lua_msg *m)
{
	static const char what[] = "luamta.dmarc.check";
	struct dmarc_op *op;
	const char *spf = NULL, *why;
	char env[DMARC_DOMAIN_MAX];
	double timeout = DMARC_LUA_TIMEOUT;

	if (!lua_isnoneornil(L, 2)) {
		if (lua_type(L, 2) != LUA_TSTRING)
			return luaL_typeerror(L, 2, "string (the SPF result) or nil");
		spf = lua_tostring(L, 2);
	}
	if (!lua_isnoneornil(L, 3) && !lua_istable(L, 3))
		return luaL_typeerror(L, 3, "table (the DKIM results) or nil");
	if (!lua_isnoneornil(L, 4)) {
		luaL_checktype(L, 4, LUA_TTABLE);
		lua_pushliteral(L, "timeout");
		if (lua_rawget(L, 4) != LUA_TNIL) {
			if (lua_type(L, -1) != LUA_TNUMBER)
				return luaL_error(
				    L, "%s: timeout must be a number of seconds", what);
			timeout = lua_tonumber(L, -1);
			if (!(timeout > 0) || timeout > DNS_TIMEOUT_MAX)
				return luaL_error(L,
				    "%s: timeout must be above 0 and at most %d seconds", what,
				    DNS_TIMEOUT_MAX);
		}
		lua_pop(L, 1);
	}
	if (dmarc_spare == NULL && (dmarc_spare = malloc(sizeof(*dmarc_spare))) == NULL)
		return luaL_error(L, "%s: out of memory", what);
	op = dmarc_spare;
	memset(op, 0, sizeof(*op));
	if ((why = from_domain(m, op)) != NULL)
		return dmarc_push(L, op, DMARC_PERMERROR, NULL, 0, 0, why);
	dmarc_org_domain(op->from, op->org);
	envelope_domain(m->sender, m->helo, env);
	if (spf != NULL && strcasecmp(spf, "pass") == 0 && env[0] != '\0') {
		op->spf_r = dmarc_aligned(op->from, env, 0);
		op->spf_s = dmarc_aligned(op->from, env, 1);
	}
	if (lua_istable(L, 3))
		dkim_alignment(L, 3, op);
	op->run = hook_park(L, what, dmarc_cancel, op);
	dmarc_spare = NULL;
	op->deadline = ev_now(hook_run_loop(op->run)) + timeout;
	if (dmarc_send(op, op->from) == -1) {
		/* Nothing went out: not waiting after all. */
		hook_park_undo(op->run);
		free(op);
		return luaL_error(L, "%s: out of memory", what);
	}
	return lua_yield(L, 0);
}

/* luamta.auth_results ----------------------------------------------------- */

static const char ar_what[] = "luamta.auth_results";

/* The string field key of the table at idx as a property of the clause
 * being built. Absent, empty or unwritable (control characters, over 255
 * bytes: such values come from messages, and must not make the policy
 * raise) adds nothing. 0, or -1 when it did not fit. */
static int
ar_prop(lua_State *L, struct authres *ar, int idx, const char *key, const char *prop)
{
	const char *v = raw_string(L, idx, key, ar_what);
	size_t n = v != NULL ? strlen(v) : 0;

	if (n == 0 || !authres_value_ok(v, n))
		return 0;
	return authres_prop(ar, prop, v, n);
}

/* Opens a "method=result" clause; raises on a result that is not a
 * keyword (the results are the checks' own words). 0, or -1 when it did
 * not fit. */
static int
ar_method(lua_State *L, struct authres *ar, const char *method, const char *result)
{
	if (!authres_keyword(result, strlen(result)))
		luaL_error(L, "%s: bad %s result", ar_what, method);
	return authres_method(ar, method, result);
}

/* spf, with smtp.mailfrom (or smtp.helo for the null sender). */
static void
ar_spf(lua_State *L, struct authres *ar, int args)
{
	const char *spf = raw_string(L, args, "spf", ar_what), *mailfrom;
	size_t mark = authres_mark(ar);

	if (spf == NULL)
		return;
	mailfrom = raw_string(L, args, "mailfrom", ar_what);
	if (ar_method(L, ar, "spf", spf) == -1 ||
	    (mailfrom != NULL && mailfrom[0] != '\0' ?
		    ar_prop(L, ar, args, "mailfrom", "smtp.mailfrom") :
		    ar_prop(L, ar, args, "helo", "smtp.helo")) == -1)
		authres_reset(ar, mark);
}

/* dmarc: a result string (header.from from the argument's from), or the
 * details table luamta.dmarc.check returned. */
static void
ar_dmarc(lua_State *L, struct authres *ar, int args)
{
	const char *result, *policy, *dis;
	size_t mark = authres_mark(ar);
	char comment[64];
	int t, ok;

	lua_pushliteral(L, "dmarc");
	t = lua_rawget(L, args);
	if (t == LUA_TSTRING)
		ok = ar_method(L, ar, "dmarc", lua_tostring(L, -1)) == 0 &&
		    ar_prop(L, ar, args, "from", "header.from") == 0;
	else if (t == LUA_TTABLE) {
		t = lua_gettop(L);
		if ((result = raw_string(L, t, "result", ar_what)) == NULL)
			luaL_error(L, "%s: dmarc.result is missing", ar_what);
		ok = ar_method(L, ar, "dmarc", result) == 0;
		policy = raw_string(L, t, "policy", ar_what);
		dis = raw_string(L, t, "disposition", ar_what);
		if (ok && policy != NULL && dis != NULL && strlen(policy) < 16 &&
		    strlen(dis) < 16) {
			snprintf(comment, sizeof(comment), "p=%s dis=%s", policy, dis);
			ok = authres_comment(ar, comment, strlen(comment)) == 0;
		}
		ok = ok && ar_prop(L, ar, t, "domain", "header.from") == 0;
	} else if (t == LUA_TNIL)
		ok = 1;
	else
		return (void)luaL_error(
		    L, "%s: dmarc must be a result or luamta.dmarc.check's table", ar_what);
	if (!ok)
		authres_reset(ar, mark);
	lua_pop(L, 1);
}

/* The dkim array: one clause per result, each whole or (past the line's
 * length) left out. */
static void
ar_dkim(lua_State *L, struct authres *ar, int args)
{
	lua_Integer n;

	lua_pushliteral(L, "dkim");
	if (lua_rawget(L, args) == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	if (!lua_istable(L, -1))
		luaL_error(L, "%s: dkim must be an array of result tables", ar_what);
	n = (lua_Integer)lua_rawlen(L, -1);
	if (n == 0)
		(void)authres_method(ar, "dkim", "none");
	if (n > DMARC_LUA_DKIM_MAX)
		n = DMARC_LUA_DKIM_MAX;
	for (lua_Integer i = 1; i <= n; i++) {
		const char *result, *reason;
		size_t mark = authres_mark(ar), rlen;
		int t, ok;

		lua_rawgeti(L, -1, i);
		t = lua_gettop(L);
		if (lua_type(L, t) != LUA_TTABLE)
			luaL_error(L, "%s: dkim must be an array of result tables", ar_what);
		if ((result = raw_string(L, t, "result", ar_what)) == NULL)
			luaL_error(L, "%s: dkim[%d].result is missing", ar_what, (int)i);
		ok = ar_method(L, ar, "dkim", result) == 0;
		reason = raw_string(L, t, "reason", ar_what);
		rlen = reason != NULL ? strlen(reason) : 0;
		if (ok && rlen > 0 && authres_value_ok(reason, rlen))
			ok = authres_reason(ar, reason, rlen) == 0;
		ok = ok && ar_prop(L, ar, t, "domain", "header.d") == 0 &&
		    ar_prop(L, ar, t, "selector", "header.s") == 0 &&
		    ar_prop(L, ar, t, "algorithm", "header.a") == 0;
		/* Whole or not at all: a clause cut short by the line's length
		 * would say less than the check found. */
		if (!ok)
			authres_reset(ar, mark);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

/* luamta.auth_results{ authserv_id =, spf =, mailfrom =, helo =, dkim =,
 * dmarc =, from = } -> the value of an Authentication-Results field: the
 * clauses spf, dmarc, then one per DKIM result (those that would take the
 * line past AUTHRES_MAX are left out), or "none". */
static int
dmarc_lua_auth_results(lua_State *L)
{
	struct authres *ar;
	const char *id;
	size_t mark;

	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	/* The builder lives in a userdata: Lua frees it whatever raises. */
	ar = lua_newuserdatauv(L, sizeof(*ar), 0);
	if ((id = raw_string(L, 1, "authserv_id", ar_what)) == NULL)
		id = lua_tostring(L, lua_upvalueindex(1));
	if (authres_begin(ar, id, strlen(id)) == -1)
		return luaL_error(L, "%s: bad authserv_id", ar_what);
	mark = authres_mark(ar);
	ar_spf(L, ar, 1);
	ar_dmarc(L, ar, 1);
	ar_dkim(L, ar, 1);
	if (authres_mark(ar) == mark)
		(void)authres_none(ar);
	lua_pushlstring(L, ar->buf, ar->len);
	return 1;
}

void
dmarc_lua_open(lua_State *L, const char *hostname, lua_CFunction check)
{
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, check);
	lua_setfield(L, -2, "check");
	lua_setfield(L, -2, "dmarc");
	lua_pushstring(L, hostname);
	lua_pushcclosure(L, dmarc_lua_auth_results, 1);
	lua_setfield(L, -2, "auth_results");
}
