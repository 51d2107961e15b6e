/* dns_lua.c - luamta.dns. A call checks its arguments, parks the hook and
 * sends its first query; the answers come back through dns_lua_on_answer(),
 * which may send the next query of the call (rbl asks for TXT once listed,
 * fcrdns asks for the addresses of each PTR name) or push the results onto
 * the hook's thread and wake it. A call's timeout covers all its queries.
 *
 * The state of a call (struct dns_lua_op) is allocated before the hook is
 * parked, because parking takes it as the cancel argument; parking raises
 * where Lua cannot yield, so the state is kept as the spare for the next
 * call instead of leaking. Once parked, the op belongs to this file until
 * it wakes the hook (freed just before) or the run is cancelled (freed in
 * dns_lua_cancel). */
#include "dns_lua.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "dns.h"
#include "hook.h"

enum dns_lua_kind {
	DL_QUERY = 0, /* records as tables */
	DL_LIST,      /* a plain array of strings */
	DL_MX,        /* {preference=, exchange=} by preference */
	DL_RBL_A,     /* the A lookup of a DNSBL */
	DL_RBL_TXT,   /* then its TXT reason */
	DL_FCRDNS_PTR,
	DL_FCRDNS_FWD, /* the addresses of one PTR name */
};

struct dns_lua_op {
	struct hook_run *run;
	struct dns_req *req; /* the query in flight, or NULL */
	enum dns_lua_kind kind;
	double deadline;
	unsigned char addr[16]; /* fcrdns: the address to find */
	int alen;
	char name[DNS_NAME_TEXT_MAX]; /* rbl: the listed name */
	struct dns_answer *prev;      /* rbl: the A answer; fcrdns: the PTR answer */
	size_t next;                  /* fcrdns: the PTR name being confirmed */
	enum dns_err fwd_err;         /* fcrdns: a temporary failure on the way */
};

static struct dns_lua_op *dns_lua_spare;

static void dns_lua_on_answer(void *arg, const struct dns_answer *ans);

static void
dns_lua_op_free(struct dns_lua_op *op)
{
	dns_answer_free(op->prev);
	free(op);
}

static void
dns_lua_cancel(void *arg)
{
	struct dns_lua_op *op = arg;

	dns_cancel(op->req);
	dns_lua_op_free(op);
}

void
dns_lua_shutdown(void)
{
	free(dns_lua_spare);
	dns_lua_spare = NULL;
}

/* Sends the op's next query with what is left of its time. Returns 0, or
 * -1 when out of memory. */
static int
dns_lua_send(struct dns_lua_op *op, const char *name, int qtype)
{
	struct ev_loop *loop = hook_run_loop(op->run);
	double left = op->deadline - ev_now(loop);

	/* Out of time already: the query times out on the next turn. */
	if (left < 0.001)
		left = 0.001;
	op->req = dns_query(loop, name, qtype, left, dns_lua_on_answer, op);
	return op->req != NULL ? 0 : -1;
}

/* Arguments ----------------------------------------------------------- */

static const char *
dns_lua_checkname(lua_State *L, int idx, size_t *len)
{
	if (lua_type(L, idx) != LUA_TSTRING)
		luaL_typeerror(L, idx, "string");
	return lua_tolstring(L, idx, len);
}

/* The timeout from an options table at idx (absent or nil: the default),
 * read raw: the table is the script's. */
static double
dns_lua_timeout(lua_State *L, int idx, const char *what)
{
	double t = DNS_LUA_TIMEOUT;

	if (lua_isnoneornil(L, idx))
		return t;
	if (!lua_istable(L, idx))
		luaL_error(L, "%s: options must be a table", what);
	lua_pushliteral(L, "timeout");
	if (lua_rawget(L, idx) != LUA_TNIL) {
		if (lua_type(L, -1) != LUA_TNUMBER)
			luaL_error(L, "%s: timeout must be a number of seconds", what);
		t = lua_tonumber(L, -1);
		if (!(t > 0) || t > DNS_TIMEOUT_MAX)
			luaL_error(L, "%s: timeout must be above 0 and at most %d seconds", what,
			    DNS_TIMEOUT_MAX);
	}
	lua_pop(L, 1);
	return t;
}

/* The numeric address at idx, reversed under zone (NULL: the arpa tree). */
static void
dns_lua_reverse(lua_State *L, int idx, const char *zone, const char *what, char *out)
{
	const char *ip;
	unsigned char a[16];

	if (lua_type(L, idx) != LUA_TSTRING)
		luaL_typeerror(L, idx, "string");
	ip = lua_tostring(L, idx);
	if (dns_addr_parse(ip, a) == 0)
		luaL_error(L, "%s: invalid IP address '%s'", what, ip);
	if (dns_reverse(ip, zone, out, DNS_NAME_TEXT_MAX) == -1)
		luaL_error(L, "%s: invalid zone '%s'", what, zone);
}

/* A fresh op: the spare, so a park that raises leaves nothing behind. */
static struct dns_lua_op *
dns_lua_op(lua_State *L, enum dns_lua_kind kind, double timeout)
{
	if (dns_lua_spare == NULL && (dns_lua_spare = malloc(sizeof(*dns_lua_spare))) == NULL)
		luaL_error(L, "out of memory");
	memset(dns_lua_spare, 0, sizeof(*dns_lua_spare));
	dns_lua_spare->kind = kind;
	dns_lua_spare->deadline = timeout; /* made absolute once parked */
	return dns_lua_spare;
}

/* Parks the hook on op and sends its first query, then yields: the
 * results are what dns_lua_on_answer() pushes. */
static int
dns_lua_wait(lua_State *L, const char *what, struct dns_lua_op *op, const char *name, int qtype)
{
	op->run = hook_park(L, what, dns_lua_cancel, op);
	dns_lua_spare = NULL;
	op->deadline += ev_now(hook_run_loop(op->run));
	if (dns_lua_send(op, name, qtype) == -1) {
		/* Nothing went out: not waiting after all, so a script that
		 * catches the error may wait again. */
		hook_park_undo(op->run);
		dns_lua_op_free(op);
		return luaL_error(L, "%s: out of memory", what);
	}
	return lua_yield(L, 0);
}

/* Results ------------------------------------------------------------- */

static int
dns_lua_push_err(lua_State *co, enum dns_err err)
{
	lua_pushnil(co);
	lua_pushstring(co, dns_err_str(err));
	return 2;
}

static void
dns_lua_set(lua_State *co, const char *key, const struct dns_rr *rr)
{
	lua_pushlstring(co, rr->data, rr->len);
	lua_setfield(co, -2, key);
}

/* The records as {type=, ttl=, ...} tables. */
static int
dns_lua_push_records(lua_State *co, const struct dns_answer *ans)
{
	lua_createtable(co, (int)ans->nrr, 0);
	for (size_t i = 0; i < ans->nrr; i++) {
		const struct dns_rr *rr = &ans->rr[i];

		lua_createtable(co, 0, 4);
		lua_pushstring(co, dns_type_str(rr->type));
		lua_setfield(co, -2, "type");
		lua_pushinteger(co, (lua_Integer)rr->ttl);
		lua_setfield(co, -2, "ttl");
		switch (rr->type) {
		case DNS_T_A:
		case DNS_T_AAAA:
			dns_lua_set(co, "address", rr);
			break;
		case DNS_T_MX:
			lua_pushinteger(co, rr->preference);
			lua_setfield(co, -2, "preference");
			dns_lua_set(co, "exchange", rr);
			break;
		case DNS_T_TXT:
			dns_lua_set(co, "text", rr);
			break;
		default:
			dns_lua_set(co, "name", rr);
			break;
		}
		lua_rawseti(co, -2, (lua_Integer)i + 1);
	}
	return 1;
}

static int
dns_lua_push_list(lua_State *co, const struct dns_answer *ans)
{
	lua_createtable(co, (int)ans->nrr, 0);
	for (size_t i = 0; i < ans->nrr; i++) {
		lua_pushlstring(co, ans->rr[i].data, ans->rr[i].len);
		lua_rawseti(co, -2, (lua_Integer)i + 1);
	}
	return 1;
}

static int
dns_lua_mx_cmp(const void *a, const void *b)
{
	const struct dns_rr *x = *(const struct dns_rr *const *)a;
	const struct dns_rr *y = *(const struct dns_rr *const *)b;

	if (x->preference != y->preference)
		return x->preference < y->preference ? -1 : 1;
	return strcmp(x->data, y->data);
}

/* By preference, then by name, so equal preferences come out the same
 * way every time (a caller that wants them shuffled does it). */
static int
dns_lua_push_mx(lua_State *co, const struct dns_answer *ans)
{
	const struct dns_rr **v;

	if ((v = calloc(ans->nrr, sizeof(*v))) == NULL)
		return dns_lua_push_err(co, DNS_SERVFAIL);
	for (size_t i = 0; i < ans->nrr; i++)
		v[i] = &ans->rr[i];
	qsort(v, ans->nrr, sizeof(*v), dns_lua_mx_cmp);
	lua_createtable(co, (int)ans->nrr, 0);
	for (size_t i = 0; i < ans->nrr; i++) {
		lua_createtable(co, 0, 2);
		lua_pushinteger(co, v[i]->preference);
		lua_setfield(co, -2, "preference");
		lua_pushlstring(co, v[i]->data, v[i]->len);
		lua_setfield(co, -2, "exchange");
		lua_rawseti(co, -2, (lua_Integer)i + 1);
	}
	free(v);
	return 1;
}

/* listed, codes, reason (txt: the TXT answer, or NULL). */
static int
dns_lua_push_rbl(lua_State *co, const struct dns_answer *a, const struct dns_answer *txt)
{
	lua_pushboolean(co, 1);
	dns_lua_push_list(co, a);
	if (txt != NULL && txt->err == DNS_OK)
		lua_pushlstring(co, txt->rr[0].data, txt->rr[0].len);
	else
		lua_pushnil(co);
	return 3;
}

/* Whether one of the addresses in ans is op's. */
static int
dns_lua_fcrdns_match(const struct dns_lua_op *op, const struct dns_answer *ans)
{
	unsigned char a[16];

	if (ans->err != DNS_OK)
		return 0;
	for (size_t i = 0; i < ans->nrr; i++)
		if (dns_addr_parse(ans->rr[i].data, a) == op->alen &&
		    memcmp(a, op->addr, (size_t)op->alen) == 0)
			return 1;
	return 0;
}

/* fcrdns: asks for the addresses of the next PTR name. Returns 1 when one
 * was sent, 0 when none is left (or the time is up), -1 out of memory. */
static int
dns_lua_fcrdns_next(struct dns_lua_op *op)
{
	const struct dns_answer *ptr = op->prev;
	int qtype;

	if (op->next >= ptr->nrr || op->next >= DNS_LUA_FCRDNS_MAX)
		return 0;
	if (ev_now(hook_run_loop(op->run)) >= op->deadline) {
		op->fwd_err = DNS_TIMEOUT;
		return 0;
	}
	op->kind = DL_FCRDNS_FWD;
	qtype = op->alen == 4 ? DNS_T_A : DNS_T_AAAA;
	if (dns_lua_send(op, ptr->rr[op->next].data, qtype) == -1)
		return -1;
	return 1;
}

/* The op's next step after ans: pushes its results onto co and returns how
 * many, or returns -1 when it sent another query. */
static int
dns_lua_step(struct dns_lua_op *op, lua_State *co, const struct dns_answer *ans)
{
	int rc;

	switch (op->kind) {
	case DL_QUERY:
	case DL_LIST:
	case DL_MX:
		if (ans->err != DNS_OK)
			return dns_lua_push_err(co, ans->err);
		if (op->kind == DL_QUERY)
			return dns_lua_push_records(co, ans);
		return op->kind == DL_LIST ? dns_lua_push_list(co, ans) : dns_lua_push_mx(co, ans);
	case DL_RBL_A:
		/* Not listed: the name does not exist (or, oddly, has no A). */
		if (ans->err == DNS_NXDOMAIN || ans->err == DNS_NODATA) {
			lua_pushboolean(co, 0);
			return 1;
		}
		if (ans->err != DNS_OK)
			return dns_lua_push_err(co, ans->err);
		if ((op->prev = dns_answer_dup(ans)) == NULL)
			return dns_lua_push_err(co, DNS_SERVFAIL);
		op->kind = DL_RBL_TXT;
		if (dns_lua_send(op, op->name, DNS_T_TXT) == 0)
			return -1;
		return dns_lua_push_rbl(co, op->prev, NULL);
	case DL_RBL_TXT:
		return dns_lua_push_rbl(co, op->prev, ans);
	case DL_FCRDNS_PTR:
		if (ans->err != DNS_OK)
			return dns_lua_push_err(co, ans->err);
		if ((op->prev = dns_answer_dup(ans)) == NULL)
			return dns_lua_push_err(co, DNS_SERVFAIL);
		break;
	case DL_FCRDNS_FWD:
		if (dns_lua_fcrdns_match(op, ans)) {
			const struct dns_rr *rr = &op->prev->rr[op->next];
			lua_pushlstring(co, rr->data, rr->len);
			return 1;
		}
		if (dns_err_temporary(ans->err))
			op->fwd_err = ans->err;
		op->next++;
		break;
	}
	/* fcrdns: the next name, or the verdict. A name that could not be
	 * checked (a temporary failure) may still be the one: that failure
	 * is the answer rather than "mismatch". */
	if ((rc = dns_lua_fcrdns_next(op)) == 1)
		return -1;
	if (rc == -1)
		return dns_lua_push_err(co, DNS_SERVFAIL);
	if (op->fwd_err != DNS_OK)
		return dns_lua_push_err(co, op->fwd_err);
	lua_pushnil(co);
	lua_pushliteral(co, "mismatch");
	return 2;
}

static void
dns_lua_on_answer(void *arg, const struct dns_answer *ans)
{
	struct dns_lua_op *op = arg;
	struct hook_run *run = op->run;
	lua_State *co = hook_run_thread(run);
	int n;

	op->req = NULL;
	/* The results are built outside Lua's memory cap; they are bounded
	 * by the size of DNS messages (64 KiB each). */
	if (!lua_checkstack(co, 8))
		n = 0;
	else if ((n = dns_lua_step(op, co, ans)) == -1)
		return;
	dns_lua_op_free(op);
	hook_wake(run, n);
}

/* The Lua functions --------------------------------------------------- */

/* dns.query(name, qtype[, opts]) -> records | nil, err */
static int
dns_lua_query(lua_State *L)
{
	static const char what[] = "luamta.dns.query";
	size_t len;
	const char *name = dns_lua_checkname(L, 1, &len);
	const char *qt = luaL_checkstring(L, 2);
	int qtype = dns_type_parse(qt);
	double timeout;

	if (qtype == -1)
		return luaL_error(L, "%s: unknown qtype '%s'", what, qt);
	timeout = dns_lua_timeout(L, 3, what);
	if (!dns_name_ok(name, len))
		return dns_lua_push_err(L, DNS_NXDOMAIN);
	return dns_lua_wait(L, what, dns_lua_op(L, DL_QUERY, timeout), name, qtype);
}

static int
dns_lua_simple(lua_State *L, const char *what, enum dns_lua_kind kind, int qtype)
{
	size_t len;
	const char *name = dns_lua_checkname(L, 1, &len);
	double timeout = dns_lua_timeout(L, 2, what);

	if (!dns_name_ok(name, len))
		return dns_lua_push_err(L, DNS_NXDOMAIN);
	return dns_lua_wait(L, what, dns_lua_op(L, kind, timeout), name, qtype);
}

static int
dns_lua_a(lua_State *L)
{
	return dns_lua_simple(L, "luamta.dns.a", DL_LIST, DNS_T_A);
}

static int
dns_lua_aaaa(lua_State *L)
{
	return dns_lua_simple(L, "luamta.dns.aaaa", DL_LIST, DNS_T_AAAA);
}

static int
dns_lua_txt(lua_State *L)
{
	return dns_lua_simple(L, "luamta.dns.txt", DL_LIST, DNS_T_TXT);
}

static int
dns_lua_mx(lua_State *L)
{
	return dns_lua_simple(L, "luamta.dns.mx", DL_MX, DNS_T_MX);
}

/* dns.ptr(ip[, opts]) -> names | nil, err */
static int
dns_lua_ptr(lua_State *L)
{
	static const char what[] = "luamta.dns.ptr";
	char name[DNS_NAME_TEXT_MAX];
	double timeout;

	dns_lua_reverse(L, 1, NULL, what, name);
	timeout = dns_lua_timeout(L, 2, what);
	return dns_lua_wait(L, what, dns_lua_op(L, DL_LIST, timeout), name, DNS_T_PTR);
}

/* dns.rbl(ip, zone[, opts]) -> listed, codes, reason | nil, err */
static int
dns_lua_rbl(lua_State *L)
{
	static const char what[] = "luamta.dns.rbl";
	struct dns_lua_op *op;
	char name[DNS_NAME_TEXT_MAX];
	const char *zone;
	double timeout;

	if (lua_type(L, 2) != LUA_TSTRING)
		luaL_typeerror(L, 2, "string");
	zone = lua_tostring(L, 2);
	dns_lua_reverse(L, 1, zone, what, name);
	timeout = dns_lua_timeout(L, 3, what);
	op = dns_lua_op(L, DL_RBL_A, timeout);
	strcpy(op->name, name);
	return dns_lua_wait(L, what, op, name, DNS_T_A);
}

/* dns.fcrdns(ip[, opts]) -> name | nil, err */
int
dns_lua_fcrdns(lua_State *L)
{
	static const char what[] = "luamta.dns.fcrdns";
	struct dns_lua_op *op;
	char name[DNS_NAME_TEXT_MAX];
	unsigned char addr[16];
	int alen;
	double timeout;

	dns_lua_reverse(L, 1, NULL, what, name);
	alen = dns_addr_parse(lua_tostring(L, 1), addr);
	timeout = dns_lua_timeout(L, 2, what);
	op = dns_lua_op(L, DL_FCRDNS_PTR, timeout);
	memcpy(op->addr, addr, sizeof(addr));
	op->alen = alen;
	return dns_lua_wait(L, what, op, name, DNS_T_PTR);
}

static const luaL_Reg dns_lua_funcs[] = {
	{ "query", dns_lua_query },
	{ "a", dns_lua_a },
	{ "aaaa", dns_lua_aaaa },
	{ "txt", dns_lua_txt },
	{ "mx", dns_lua_mx },
	{ "ptr", dns_lua_ptr },
	{ "rbl", dns_lua_rbl },
	{ "fcrdns", dns_lua_fcrdns },
	{ NULL, NULL },
};

void
dns_lua_open(lua_State *L)
{
	luaL_newlib(L, dns_lua_funcs);
	lua_setfield(L, -2, "dns");
}
