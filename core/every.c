/* every.c - luamta.every: periodic tasks of a policy generation, one
 * ev_timer each, run through hook.c like any hook (budgets, parking,
 * cancellation). A tick that comes while the previous run of the same task
 * still waits is skipped, so a slow backend never piles runs up. */
#include "every.h"

#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>

#include "hook.h"
#include "log.h"

#define EVERY_MAX      64     /* tasks per policy */
#define EVERY_MIN_SECS 0.01   /* a shorter period would only burn the budget */
#define EVERY_MAX_SECS 604800 /* a week */

/* The registry key of the list of { fn, seconds } the policy registered. */
static char every_key;

struct every_task {
	struct every *set;
	ev_timer timer;
	lua_Integer index;    /* in the registered list */
	struct hook_run *run; /* waiting, or NULL */
	char name[24];        /* "every[1]", for the logs */
};

struct every {
	lua_State *L; /* the generation's state, which outlives the set */
	struct hook_budget budget;
	struct ev_loop *loop;
	int ntasks;
	struct every_task tasks[];
};

int
every_register(lua_State *L)
{
	lua_Number secs = luaL_checknumber(L, 1);
	lua_Integer n;

	luaL_checktype(L, 2, LUA_TFUNCTION);
	if (!hook_loading())
		return luaL_error(L, "luamta.every can only be called while the policy loads");
	if (!(secs >= EVERY_MIN_SECS && secs <= EVERY_MAX_SECS))
		return luaL_error(L, "luamta.every: seconds must be from %f to %d", EVERY_MIN_SECS,
		    EVERY_MAX_SECS);
	if (lua_rawgetp(L, LUA_REGISTRYINDEX, &every_key) != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lua_rawsetp(L, LUA_REGISTRYINDEX, &every_key);
	}
	if ((n = (lua_Integer)lua_rawlen(L, -1)) >= EVERY_MAX)
		return luaL_error(L, "luamta.every: at most %d tasks", EVERY_MAX);
	lua_createtable(L, 2, 0);
	lua_pushvalue(L, 2);
	lua_rawseti(L, -2, 1);
	lua_pushnumber(L, secs);
	lua_rawseti(L, -2, 2);
	lua_rawseti(L, -2, n + 1);
	return 0;
}

static void
every_on_done(struct hook_run *run, void *arg)
{
	struct every_task *t = arg;

	hook_run_free(run);
	t->run = NULL;
}

static void
every_on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct every_task *t = w->data;
	struct hook_run *run;
	lua_State *co;

	(void)revents;
	if (t->run != NULL) {
		log_debug(NULL, "every.skip task=%s why=\"the previous run still waits\"", t->name);
		return;
	}
	run = hook_run_new(
	    t->set->L, loop, HOOK_MODE_TASK, &t->set->budget, t->name, NULL, every_on_done, t);
	if (run == NULL) {
		log_warn(NULL, "every.skip task=%s why=\"out of memory\"", t->name);
		return;
	}
	co = hook_run_thread(run);
	lua_rawgetp(co, LUA_REGISTRYINDEX, &every_key);
	lua_rawgeti(co, -1, t->index);
	lua_rawgeti(co, -1, 1);
	lua_replace(co, -3);
	lua_pop(co, 1);
	if (hook_run_start(run, 0) == HOOK_PENDING)
		t->run = run;
	else
		hook_run_free(run);
}

struct every *
every_start(lua_State *L, const struct hook_budget *budget, struct ev_loop *loop)
{
	struct every *set;
	int n;

	if (L == NULL)
		return NULL;
	if (lua_rawgetp(L, LUA_REGISTRYINDEX, &every_key) != LUA_TTABLE ||
	    (n = (int)lua_rawlen(L, -1)) == 0) {
		lua_pop(L, 1);
		return NULL;
	}
	if ((set = calloc(1, sizeof(*set) + (size_t)n * sizeof(set->tasks[0]))) == NULL) {
		lua_pop(L, 1);
		log_warn(NULL, "every.start error=\"out of memory\"");
		return NULL;
	}
	set->L = L;
	set->budget = *budget;
	set->loop = loop;
	set->ntasks = n;
	for (int i = 0; i < n; i++) {
		struct every_task *t = &set->tasks[i];
		double secs;

		lua_rawgeti(L, -1, i + 1);
		lua_rawgeti(L, -1, 2);
		secs = lua_tonumber(L, -1);
		lua_pop(L, 2);
		t->set = set;
		t->index = i + 1;
		snprintf(t->name, sizeof(t->name), "every[%d]", i + 1);
		ev_timer_init(&t->timer, every_on_tick, secs, secs);
		t->timer.data = t;
		ev_timer_start(loop, &t->timer);
		/* Periodic work is no reason to keep a draining process up. */
		ev_unref(loop);
	}
	lua_pop(L, 1);
	log_debug(NULL, "every.start tasks=%d", n);
	return set;
}

void
every_stop(struct every *set)
{
	if (set == NULL)
		return;
	for (int i = 0; i < set->ntasks; i++) {
		struct every_task *t = &set->tasks[i];

		ev_ref(set->loop);
		ev_timer_stop(set->loop, &t->timer);
		if (t->run != NULL) {
			hook_run_free(t->run);
			t->run = NULL;
		}
	}
	free(set);
}
