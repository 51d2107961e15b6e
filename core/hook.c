/* hook.c - run policy code as budgeted coroutines (HAProxy's hlua_ctx_resume,
 * lua-nginx-module's anchored threads). Each run owns one anchored thread;
 * whatever way it ends, the thread is closed and released here. */
#include "hook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "log.h"
#include "metrics.h"
#include "smtp_parse.h"
#include "smtp_reply.h"

/* Lua 5.4.6 renamed lua_resetthread(L) to lua_closethread(L, from). */
#if LUA_VERSION_RELEASE_NUM >= 50406
#define hook_closethread(co, L) lua_closethread((co), (L))
#else
#define hook_closethread(co, L) ((void)(L), lua_resetthread(co))
#endif

struct hook_run {
	lua_State *L;  /* the script's main thread (borrowed) */
	lua_State *co; /* our thread, anchored by co_ref */
	int co_ref;
	struct ev_loop *loop;
	enum hook_mode mode;
	struct hook_budget budget;
	long slices;            /* HOOK_SLICE units used so far */
	ev_tstamp deadline;     /* of the current resume */
	ev_timer sleep;         /* luamta.sleep's timer */
	int parked;             /* yielded in a waiting call; a watcher resumes it */
	hook_cancel_cb *cancel; /* the waiting call's, while parked */
	void *cancel_arg;
	int exhausted; /* a budget ran out: the run is being stopped */
	int nres;      /* values returned (HOOK_MODE_RAW) */
	int top;       /* L's stack top at creation, checked at free */
	char *error;   /* owned: the failure's message, or NULL */
	struct hook_result res;
	hook_done_cb *done;
	void *arg;
	char name[32];
	char sid[24];
	int mslot;          /* metrics.h's series of this hook, or -1 */
	ev_tstamp mstarted; /* when the run started, for its duration */
};

/* Threads whose run returned normally, kept for the next runs on the same
 * state: a hook run then costs no lua_newthread, no registry reference and
 * no dead thread for the collector. Such a thread has an empty stack, no
 * call in progress and nothing left to close, so it is as good as new. The
 * pool hangs off the main state's extra space (see hook_pool_init). */
#define HOOK_POOL_MAX 64
struct hook_pool {
	int n;
	struct {
		lua_State *co;
		int ref;
	} idle[HOOK_POOL_MAX];
};

/* The run in progress (script loading counts as one). Not a per-state slot:
 * coroutines the script creates inherit the count hook, and this tells
 * on_budget which run they belong to. Only one run executes at a time. */
static struct hook_run *hook_current;
static struct hook_beacon *hook_beacon;

static char hook_disconnect_tok, hook_reply_tok;

static const char *const hook_status_names[] = { "done", "pending", "failed" };
static const char *const hook_verdict_names[] = {
	"accept",
	"reject",
	"custom",
	"close",
	"error",
};

const char *
hook_status_str(enum hook_status s)
{
	return (unsigned)s < 3 ? hook_status_names[s] : "?";
}

const char *
hook_verdict_str(enum hook_verdict v)
{
	return (unsigned)v < 5 ? hook_verdict_names[v] : "?";
}

void *
hook_reply_token(void)
{
	return &hook_reply_tok;
}

void *
hook_disconnect_token(void)
{
	return &hook_disconnect_tok;
}

int
hook_running(void)
{
	return hook_current != NULL;
}

int
hook_loading(void)
{
	return hook_current != NULL && hook_current->mode == HOOK_MODE_RAW;
}

int
hook_exhausted(void)
{
	return hook_current != NULL && hook_current->exhausted;
}

const char *
hook_current_sid(void)
{
	return hook_current != NULL && hook_current->sid[0] != '\0' ? hook_current->sid : NULL;
}

void
hook_set_beacon(struct hook_beacon *b)
{
	hook_beacon = b;
}

/* Copies src into dst (size bytes), cut short and always terminated: names
 * and ids are copied at every run, where a printf would be most of the
 * cost of starting one. */
static void
hook_strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Makes run the one executing (for the budget, the allocator and the
 * beacon) from now until hook_leave(prev). */
static struct hook_run *
hook_enter(struct hook_run *run)
{
	struct hook_run *prev = hook_current;

	run->deadline = ev_time() + run->budget.seconds;
	hook_current = run;
	if (hook_beacon != NULL) {
		hook_strlcpy(hook_beacon->sid, run->sid, sizeof(hook_beacon->sid));
		hook_strlcpy(hook_beacon->name, run->name, sizeof(hook_beacon->name));
		hook_beacon->since = ev_time();
	}
	return prev;
}

static void
hook_leave(struct hook_run *prev)
{
	hook_current = prev;
	if (hook_beacon == NULL)
		return;
	if (prev == NULL)
		hook_beacon->since = 0;
	else {
		hook_strlcpy(hook_beacon->sid, prev->sid, sizeof(hook_beacon->sid));
		hook_strlcpy(hook_beacon->name, prev->name, sizeof(hook_beacon->name));
	}
}

void
hook_result_reset(struct hook_result *r)
{
	free(r->text);
	memset(r, 0, sizeof(*r));
	r->drop_after = -1;
}

/* luamta.reply(code, text, { line_delay = s, drop_after = n }): the
 * options of a paced reply, for fault injection. 0 or -1 (invalid). */
static int
hook_reply_opts(struct hook_run *run, int idx)
{
	lua_State *co = run->co;
	int isnum;

	if (lua_isnoneornil(co, idx))
		return 0;
	if (!lua_istable(co, idx))
		return -1;
	/* Raw reads: the table is the script's, and a metamethod would run
	 * here, outside any protected call and without a budget. */
	lua_pushliteral(co, "line_delay");
	if (lua_rawget(co, idx) != LUA_TNIL) {
		run->res.line_delay = lua_tonumberx(co, -1, &isnum);
		if (!isnum || !(run->res.line_delay >= 0) || run->res.line_delay > 3600)
			return -1;
	}
	lua_pushliteral(co, "drop_after");
	if (lua_rawget(co, idx) != LUA_TNIL) {
		lua_Integer n = lua_tointegerx(co, -1, &isnum);
		if (!isnum || n < 0 || n > 64)
			return -1;
		run->res.drop_after = (int)n;
	}
	lua_pop(co, 2);
	return 0;
}

static void
hook_on_budget(lua_State *co, lua_Debug *ar)
{
	struct hook_run *run = hook_current;

	(void)ar;
	if (run == NULL)
		return;
	if (++run->slices <= run->budget.instructions / HOOK_SLICE && ev_time() < run->deadline)
		return;
	/* Fire on every instruction from now on, so a pcall in the script
	 * cannot swallow the error and keep looping. */
	run->exhausted = 1;
	lua_sethook(co, hook_on_budget, LUA_MASKCOUNT, 1);
	luaL_error(co, "%s exceeded its %s budget", run->name,
	    run->slices > run->budget.instructions / HOOK_SLICE ? "instruction" : "time");
}

/* The extra space of a hook's own thread holds this address; threads the
 * script creates inherit the main thread's (the pool). */
static char hook_thread_mark;

int
hook_is_run_thread(lua_State *co)
{
	return *(void **)lua_getextraspace(co) == &hook_thread_mark;
}

static struct hook_pool *
hook_pool(lua_State *L)
{
	return *(struct hook_pool **)lua_getextraspace(L);
}

void
hook_pool_init(lua_State *L)
{
	struct hook_pool *pool = calloc(1, sizeof(*pool));

	/* Without it (out of memory), every run makes its own thread. */
	*(struct hook_pool **)lua_getextraspace(L) = pool;
}

void
hook_pool_free(lua_State *L)
{
	/* The threads themselves go with the state. */
	free(hook_pool(L));
	*(struct hook_pool **)lua_getextraspace(L) = NULL;
}

struct hook_run *
hook_run_new(lua_State *L, struct ev_loop *loop, enum hook_mode mode,
    const struct hook_budget *budget, const char *name, const char *sid, hook_done_cb *done,
    void *arg)
{
	struct hook_pool *pool;
	struct hook_run *run;

	if ((run = calloc(1, sizeof(*run))) == NULL)
		return NULL;
	run->top = lua_gettop(L);
	if (!lua_checkstack(L, 4)) {
		free(run);
		return NULL;
	}
	pool = hook_pool(L);
	if (pool != NULL && pool->n > 0) {
		pool->n--;
		run->co = pool->idle[pool->n].co;
		run->co_ref = pool->idle[pool->n].ref;
	} else {
		/* The memory cap is only enforced while Lua code runs (see
		 * hook_running()), so this cannot fail short of a real OOM. */
		run->co = lua_newthread(L); /* [thread] */
		run->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
		*(void **)lua_getextraspace(run->co) = &hook_thread_mark;
	}
	run->L = L;
	run->loop = loop;
	run->mode = mode;
	run->budget = *budget;
	run->done = done;
	run->arg = arg;
	hook_strlcpy(run->name, name, sizeof(run->name));
	hook_strlcpy(run->sid, sid != NULL ? sid : "", sizeof(run->sid));
	run->mslot = -1;
	ev_init(&run->sleep, NULL);
	run->sleep.data = run;
	lua_sethook(run->co, hook_on_budget, LUA_MASKCOUNT, HOOK_SLICE);
	return run;
}

/* The run stops waiting without being woken: its watchers are stopped and
 * the waiting call lets go of it. */
static void
hook_unpark(struct hook_run *run)
{
	hook_cancel_cb *cancel = run->cancel;

	ev_timer_stop(run->loop, &run->sleep);
	run->parked = 0;
	run->cancel = NULL;
	if (cancel != NULL)
		cancel(run->cancel_arg);
}

lua_State *
hook_run_thread(struct hook_run *run)
{
	return run->co;
}

struct hook_result *
hook_run_result(struct hook_run *run)
{
	return &run->res;
}

int
hook_run_nresults(const struct hook_run *run)
{
	return run->nres;
}

void
hook_run_free(struct hook_run *run)
{
	struct hook_run *prev;
	struct hook_pool *pool;
	lua_Debug ar;

	if (run == NULL)
		return;
	if (hook_current == run)
		hook_current = NULL;
	hook_unpark(run);
	/* Closes pending to-be-closed variables of a parked run and empties
	 * the thread, then lets the collector have it. Their __close
	 * metamethods are policy code: they run under a fresh time budget
	 * (and whatever is left of the instruction budget), so one that
	 * loops is cut short like a hook. A run that returned has none, and
	 * skips the budget's bookkeeping. */
	pool = hook_pool(run->L);
	if (lua_status(run->co) == LUA_OK && lua_gettop(run->co) == 0 &&
	    !lua_getstack(run->co, 0, &ar) && pool != NULL && pool->n < HOOK_POOL_MAX) {
		pool->idle[pool->n].co = run->co;
		pool->idle[pool->n].ref = run->co_ref;
		pool->n++;
	} else {
		if (lua_status(run->co) == LUA_OK)
			hook_closethread(run->co, run->L);
		else {
			prev = hook_enter(run);
			hook_closethread(run->co, run->L);
			hook_leave(prev);
		}
		luaL_unref(run->L, LUA_REGISTRYINDEX, run->co_ref);
	}
	if (lua_gettop(run->L) != run->top)
		log_warn(run->sid[0] ? run->sid : NULL, "hook.stack name=%s expected=%d got=%d",
		    run->name, run->top, lua_gettop(run->L));
	hook_result_reset(&run->res);
	free(run->error);
	free(run);
}

const char *
hook_run_error(const struct hook_run *run)
{
	return run->error != NULL ? run->error : "unknown error";
}

static int
hook_traceback_cf(lua_State *L)
{
	lua_State *co = lua_touserdata(L, 1);
	const char *msg = lua_tostring(L, 2);

	luaL_traceback(L, co, msg, 0);
	return 1;
}

/* Logs a failed run once: session id, hook name, error and traceback (from
 * the coroutine's own stack). The traceback is built under lua_pcall because
 * the memory cap can make it fail too. */
static void
hook_log_failure(struct hook_run *run, int status)
{
	char esc[2048];
	const char *msg, *tb = NULL;
	char what[96];

	if (status == LUA_ERRMEM)
		msg = "memory limit exceeded";
	else if (lua_type(run->co, -1) == LUA_TSTRING)
		msg = lua_tostring(run->co, -1);
	else {
		snprintf(
		    what, sizeof(what), "(error object is a %s value)", luaL_typename(run->co, -1));
		msg = what;
	}
	if (status != LUA_ERRMEM && lua_checkstack(run->L, 3)) {
		lua_pushcfunction(run->L, hook_traceback_cf);
		lua_pushlightuserdata(run->L, run->co);
		lua_pushstring(run->L, msg);
		if (lua_pcall(run->L, 2, 1, 0) == LUA_OK)
			tb = lua_tostring(run->L, -1);
	}
	free(run->error);
	run->error = strdup(msg);
	log_escape(esc, sizeof(esc), tb != NULL ? tb : msg, strlen(tb != NULL ? tb : msg));
	/* Loading reports its own error (with the file and line) once. */
	if (run->mode != HOOK_MODE_RAW)
		log_warn(run->sid[0] ? run->sid : NULL, "hook.error hook=%s error=\"%s\"",
		    run->name, esc);
	if (status != LUA_ERRMEM && lua_gettop(run->L) > run->top)
		lua_settop(run->L, run->top);
}

static void
hook_invalid(struct hook_run *run, const char *why)
{
	log_warn(
	    run->sid[0] ? run->sid : NULL, "hook.invalid hook=%s error=\"%s\"", run->name, why);
	hook_result_reset(&run->res);
	run->res.verdict = HOOK_ERROR;
}

/* Appends reply text at index idx of the thread (a string, a number or a
 * table of them) to run->res.text as '\n'-separated lines. 0 or -1. */
static int
hook_copy_text(struct hook_run *run, int idx)
{
	lua_State *co = run->co;
	size_t total = 0, len, n = 1, i;
	const char *s;
	char *p = NULL;

	if (lua_type(co, idx) == LUA_TTABLE) {
		n = (size_t)lua_rawlen(co, idx);
		if (n == 0 || n > 64)
			return -1;
	} else if (lua_type(co, idx) != LUA_TSTRING && lua_type(co, idx) != LUA_TNUMBER)
		return -1;
	/* Two passes: validate and measure, then copy. */
	for (int pass = 0; pass < 2; pass++) {
		for (i = 1; i <= n; i++) {
			if (lua_type(co, idx) == LUA_TTABLE) {
				lua_rawgeti(co, idx, (lua_Integer)i);
			} else
				lua_pushvalue(co, idx);
			if (lua_type(co, -1) != LUA_TSTRING && lua_type(co, -1) != LUA_TNUMBER) {
				lua_pop(co, 1);
				return -1;
			}
			s = lua_tolstring(co, -1, &len);
			if (pass == 0) {
				if (smtp_reply_text_ok(s, len) == -1) {
					lua_pop(co, 1);
					return -1;
				}
				total += len + 1;
			} else {
				memcpy(p, s, len);
				p += len;
				*p++ = i < n ? '\n' : '\0';
			}
			lua_pop(co, 1);
		}
		if (pass == 0) {
			if (smtp_reply_size_ok(n, total) == -1 ||
			    (run->res.text = malloc(total)) == NULL)
				return -1;
			p = run->res.text;
		}
	}
	return 0;
}

/* Maps what a policy hook returned (nres values on top of the thread) to
 * run->res, validating everything that may reach the wire: the code range,
 * the text (no CR/LF/NUL, length, UTF-8) and an enhanced code of the same
 * class. The verb-specific checks belong to the caller. */
static void
hook_map_result(struct hook_run *run, int nres)
{
	lua_State *co = run->co;
	int base = lua_gettop(co) - nres + 1, idx = base;
	lua_Integer code;
	int isnum;

	hook_result_reset(&run->res);
	if (nres == 0 || lua_isnil(co, base) ||
	    (lua_isboolean(co, base) && lua_toboolean(co, base))) {
		run->res.verdict = HOOK_ACCEPT;
		run->res.truth = nres > 0 && lua_isboolean(co, base);
		goto out;
	}
	if (lua_isboolean(co, base)) {
		run->res.verdict = HOOK_REJECT;
		goto out;
	}
	if (lua_touserdata(co, base) == hook_disconnect_token()) {
		run->res.verdict = HOOK_CLOSE;
		if (nres == 1 || lua_isnil(co, base + 1))
			goto out;
		idx = base + 1;
	} else if (lua_touserdata(co, base) == hook_reply_token()) {
		run->res.verdict = HOOK_CUSTOM;
		idx = base + 1;
		if (hook_reply_opts(run, base + 3) == -1) {
			hook_invalid(run,
			    "luamta.reply options: line_delay 0-3600 seconds, "
			    "drop_after 0-64 lines");
			goto out;
		}
	} else
		run->res.verdict = HOOK_CUSTOM;
	if (lua_type(co, idx) != LUA_TNUMBER) {
		hook_invalid(run,
		    "first return value must be nil, a boolean, a reply code or "
		    "luamta.disconnect()");
		goto out;
	}
	code = lua_tointegerx(co, idx, &isnum);
	if (!isnum || code < 200 || code > 599) {
		hook_invalid(run, "reply code must be an integer from 200 to 599");
		goto out;
	}
	run->res.code = (int)code;
	if (idx + 1 <= lua_gettop(co) && !lua_isnil(co, idx + 1)) {
		if (hook_copy_text(run, idx + 1) == -1) {
			hook_invalid(run,
			    "reply text must be a string or a list of 1-64 strings, "
			    "each without CR, LF or NUL, valid UTF-8, at most 506 bytes, "
			    "the whole reply at most 8192 bytes");
			goto out;
		}
		/* An enhanced code of another class than the reply would
		 * contradict it (RFC 3463 2: the class matches the reply). */
		for (const char *line = run->res.text; line != NULL;) {
			const char *nl = strchr(line, '\n');
			size_t ll = nl != NULL ? (size_t)(nl - line) : strlen(line);
			if (smtp_enhanced_len(line, ll) > 0 && line[0] - '0' != code / 100) {
				hook_invalid(run,
				    "enhanced status code class does not match the reply code");
				goto out;
			}
			line = nl != NULL ? nl + 1 : NULL;
		}
	}
out:
	lua_settop(co, base - 1);
}

static void hook_on_sleep(struct ev_loop *, ev_timer *, int);

static enum hook_status
hook_resume(struct hook_run *run, int nargs)
{
	struct hook_run *prev;
	int status, nres = 0;

	run->parked = 0;
	run->cancel = NULL;
	prev = hook_enter(run);
	status = lua_resume(run->co, run->L, nargs, &nres);
	hook_leave(prev);
	/* A blocking call that returned just before the end of the hook never
	 * reached another budget check: the overrun still counts. */
	if ((status == LUA_OK || status == LUA_YIELD) && ev_time() > run->deadline) {
		/* The waiting call lets go first: emptying the stack may
		 * run the collector, which may free what it waits on. */
		hook_unpark(run);
		lua_settop(run->co, 0);
		lua_pushfstring(run->co, "%s exceeded its time budget", run->name);
		status = LUA_ERRRUN;
	}
	if (status == LUA_YIELD) {
		lua_pop(run->co, nres);
		if (run->parked)
			return HOOK_PENDING;
		/* A bare coroutine.yield() from the hook itself: no event
		 * would ever resume it. */
		lua_pushstring(run->co, "hook yielded outside a luamta waiting call");
		status = LUA_ERRRUN;
	}
	if (status != LUA_OK) {
		hook_log_failure(run, status);
		hook_result_reset(&run->res);
		run->res.verdict = HOOK_ERROR;
		return HOOK_FAILED;
	}
	if (run->mode == HOOK_MODE_RAW) {
		run->nres = nres;
		return HOOK_DONE;
	}
	if (run->mode == HOOK_MODE_TASK) {
		lua_pop(run->co, nres);
		return HOOK_DONE;
	}
	hook_map_result(run, nres);
	return run->res.verdict == HOOK_ERROR ? HOOK_FAILED : HOOK_DONE;
}

/* A run that ended (not a cancelled one) goes into the metrics: its
 * time from start to end, waiting included, and whether it failed. */
static enum hook_status
hook_metrics_end(struct hook_run *run, enum hook_status st)
{
	if (st != HOOK_PENDING && run->mslot >= 0)
		metrics_hook_end(run->mslot, ev_time() - run->mstarted, st == HOOK_FAILED);
	return st;
}

enum hook_status
hook_run_start(struct hook_run *run, int nargs)
{
	/* Loading the policy is not a hook. */
	if (run->mode != HOOK_MODE_RAW && metrics_enabled()) {
		run->mslot = metrics_hook_slot(run->name);
		run->mstarted = ev_time();
	}
	return hook_metrics_end(run, hook_resume(run, nargs));
}

void
hook_wake(struct hook_run *run, int nvalues)
{
	ev_timer_stop(run->loop, &run->sleep);
	if (hook_metrics_end(run, hook_resume(run, nvalues)) == HOOK_PENDING)
		return;
	run->done(run, run->arg);
}

static void
hook_on_sleep(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	hook_wake(w->data, 0);
}

struct ev_loop *
hook_run_loop(const struct hook_run *run)
{
	return run->loop;
}

const char *
hook_run_sid(const struct hook_run *run)
{
	return run->sid;
}

struct hook_run *
hook_park(lua_State *L, const char *what, hook_cancel_cb *cancel, void *arg)
{
	struct hook_run *run = hook_current;

	if (run == NULL || L != run->co)
		luaL_error(L,
		    "%s must be called from a hook, not from a coroutine of the script's own",
		    what);
	else if (run->mode == HOOK_MODE_RAW || run->done == NULL)
		luaL_error(L, "%s cannot be used here", what);
	/* A yield that cannot happen (inside a metamethod or callback that C
	 * code called: string.gsub, table.sort, __gc, an xpcall message
	 * handler...) would leave a watcher armed for a run that goes on and
	 * ends; refuse before anything is armed. */
	else if (!lua_isyieldable(L))
		luaL_error(L,
		    "%s cannot wait here (inside a metamethod or a callback "
		    "called from C)",
		    what);
	else if (run->parked)
		luaL_error(L, "%s: the hook is already waiting", what);
	run->parked = 1;
	run->cancel = cancel;
	run->cancel_arg = arg;
	return run;
}

void
hook_park_undo(struct hook_run *run)
{
	run->parked = 0;
	run->cancel = NULL;
}

int
hook_sleepk(lua_State *L, const char *what, double secs, lua_KContext ctx, lua_KFunction k)
{
	struct hook_run *run;

	if (!(secs >= 0) || secs > 86400)
		return luaL_error(L, "%s: seconds must be from 0 to 86400", what);
	run = hook_park(L, what, NULL, NULL);
	ev_timer_init(&run->sleep, hook_on_sleep, secs, 0);
	run->sleep.data = run;
	ev_timer_start(run->loop, &run->sleep);
	return lua_yieldk(L, 0, ctx, k);
}

int
hook_sleep(lua_State *L, double secs)
{
	return hook_sleepk(L, "luamta.sleep", secs, 0, NULL);
}
