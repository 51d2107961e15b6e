/* hook.h - one run of a Lua function as a budgeted coroutine: create and
 * anchor the thread, resume it, park it while it sleeps, turn its return
 * values into a validated hook_result, and cancel it.
 * Every call into policy code goes through here. It does not format SMTP
 * replies and does not know which verb it serves. */
#ifndef LUAMTA_HOOK_H
#define LUAMTA_HOOK_H

#include <ev.h>
#include <lua.h>

#define HOOK_SLICE 1000 /* instructions between budget checks */

enum hook_status {
	HOOK_DONE = 0, /* finished; the result is ready */
	HOOK_PENDING,  /* parked in a waiting call; the done callback follows */
	HOOK_FAILED,   /* error, budget or memory: logged; result is HOOK_ERROR */
};
const char *hook_status_str(enum hook_status);

enum hook_verdict {
	HOOK_ACCEPT = 0, /* nothing or true: default accept reply */
	HOOK_REJECT,     /* false: default reject reply */
	HOOK_CUSTOM,     /* code and text */
	HOOK_CLOSE,      /* luamta.disconnect(): code/text optional, then close */
	HOOK_ERROR,      /* failed or invalid return: already logged, reply 451 */
};
const char *hook_verdict_str(enum hook_verdict);

struct hook_result {
	enum hook_verdict verdict;
	int code;          /* HOOK_CUSTOM, HOOK_CLOSE with a reply; else 0 */
	char *text;        /* owned: reply lines joined by '\n', or NULL for the default */
	int truth;         /* HOOK_ACCEPT from a literal true (not from nothing) */
	double line_delay; /* luamta.reply{line_delay}: seconds between reply lines */
	int drop_after;    /* luamta.reply{drop_after}: lines sent before hanging up, or -1 */
};
void hook_result_reset(struct hook_result *);
/* Whether a custom reply asked to be paced or cut short (luamta.reply). */
static inline int
hook_result_paced(const struct hook_result *r)
{
	return r->code != 0 && (r->line_delay > 0 || r->drop_after >= 0);
}

struct hook_budget {
	long instructions; /* per run, over all its resumes */
	double seconds;    /* wall clock per resume */
};

struct hook_run; /* opaque */
typedef void hook_done_cb(struct hook_run *, void *arg);

enum hook_mode {
	HOOK_MODE_POLICY = 0, /* map the return values to a hook_result */
	HOOK_MODE_RAW,        /* leave them on the thread (script loading) */
	HOOK_MODE_TASK,       /* drop them (luamta.every) */
};

/* Keeps the threads of finished runs of L for later runs: once after
 * lua_newstate (it claims L's extra space), and hook_pool_free() before
 * lua_close. */
void hook_pool_init(lua_State *L);
void hook_pool_free(lua_State *L);

/* Whether co is the thread of a hook run (or a pooled one), which the
 * script must not resume or close itself. */
int hook_is_run_thread(lua_State *co);

/* A run of a function on a new thread of L. name ("on_rcpt") and sid are
 * copied for logs. done is called from the loop when a parked run finishes,
 * never from inside hook_run_resume(). Returns NULL when out of memory. */
struct hook_run *hook_run_new(lua_State *L, struct ev_loop *, enum hook_mode,
    const struct hook_budget *, const char *name, const char *sid, hook_done_cb *done, void *arg);
/* The thread: push the function, then nargs arguments, then resume. */
lua_State *hook_run_thread(struct hook_run *);
/* Starts the run with the function and nargs arguments on its thread. */
enum hook_status hook_run_start(struct hook_run *, int nargs);
/* The outcome once DONE or FAILED (valid until hook_run_free). */
struct hook_result *hook_run_result(struct hook_run *);
/* After HOOK_FAILED: the error message ("file:line: message"). */
const char *hook_run_error(const struct hook_run *);
/* HOOK_MODE_RAW: the number of values the function returned (on the thread). */
int hook_run_nresults(const struct hook_run *);
/* Frees the run; a parked run is cancelled (its timer stopped, its thread
 * closed and released). NULL is a no-op. */
void hook_run_free(struct hook_run *);

/* The one way a hook waits. A waiting call (luamta.sleep, a DNS query, a
 * socket read...) calls hook_park() first: it raises a Lua error unless L is
 * the running hook's own coroutine and may yield here (not inside a
 * metamethod or a callback called from C), so nothing is armed for a yield
 * that cannot happen. The caller then arms its watcher and returns
 * lua_yield(L, 0) (or lua_yieldk); the watcher's callback pushes the call's
 * results onto hook_run_thread(run) and calls hook_wake().
 * When the run ends while parked (its session closed, the server shut
 * down), cancel(arg) is called once, before the thread is closed: it stops
 * the watcher and forgets the run, which must never be woken after that.
 * cancel may be NULL when the caller's watcher is the run's own (sleep).
 * Returns the run being parked. */
typedef void hook_cancel_cb(void *arg);
struct hook_run *hook_park(lua_State *L, const char *what, hook_cancel_cb *cancel, void *arg);
/* Takes back a park whose waiting call could not start after all (out of
 * memory arming it), before it yields: the run is no longer waiting and
 * cancel will not be called. The call then returns or raises as usual. */
void hook_park_undo(struct hook_run *);
/* Resumes a parked run with the nvalues values on top of its thread as the
 * waiting call's results. The run may park again, or end: then its done
 * callback runs, which may free the run and whatever owns it (the session).
 * The caller must not touch either afterwards, and must not call this from
 * inside Lua code (only from a watcher's callback). */
void hook_wake(struct hook_run *, int nvalues);
/* The loop the run's watchers belong to. */
struct ev_loop *hook_run_loop(const struct hook_run *);
/* The session id the run serves ("" for none), for the logs of a module. */
const char *hook_run_sid(const struct hook_run *);
/* Parks the running hook for secs and yields; with k, the continuation
 * k(L, LUA_YIELD, ctx) runs when the time is up (a C function that retries,
 * such as mbox delivery waiting for a lock). what names the call in
 * errors. hook_sleep() is luamta.sleep(). */
int hook_sleepk(lua_State *L, const char *what, double secs, lua_KContext ctx, lua_KFunction k);
int hook_sleep(lua_State *L, double secs);
/* Whether policy code is executing now. The script allocator enforces its
 * cap only then, so C code pushing arguments never meets a memory error
 * outside a protected call. */
int hook_running(void);
/* Whether the policy file is being loaded now (a HOOK_MODE_RAW run). */
int hook_loading(void);
/* Whether the running hook has run out of its budget and is being
 * stopped: its error goes up untouched (see script.c's xpcall). */
int hook_exhausted(void);
/* The session id of the running hook, or NULL (for luamta.log). */
const char *hook_current_sid(void);

/* What a watchdog in another process reads when this one stops turning its
 * loop: the session and hook running now. The memory may be shared with the
 * master (mmap), so it is written field by field, since last. */
struct hook_beacon {
	volatile double since; /* ev_time() when the running resume began; 0: none */
	char sid[24];
	char name[32];
};
/* Keeps b current from now on (NULL: stop). */
void hook_set_beacon(struct hook_beacon *b);

/* The value luamta.disconnect() returns first, recognised by result mapping. */
void *hook_disconnect_token(void);
/* The value luamta.reply() returns first (a custom reply with options). */
void *hook_reply_token(void);

#endif
