/* script.h - one loaded policy: its lua_State with a capped allocator, the
 * lua/ module path, the luamta API, and references to its hooks.
 * All script state lives in this one object, so a reload can load a new one
 * beside the old and let each session finish on the one it started with
 * (sessions hold a reference). Knows nothing of SMTP. */
#ifndef LUAMTA_SCRIPT_H
#define LUAMTA_SCRIPT_H

#include <stddef.h>

#include <ev.h>
#include <lauxlib.h> /* LUA_NOREF */
#include <lua.h>

#include "hook.h"

enum hook_kind {
	HOOK_CONNECT = 0,
	HOOK_HELO,
	HOOK_EHLO,
	HOOK_MAIL,
	HOOK_RCPT,
	HOOK_DATA,
	HOOK_MESSAGE,
	HOOK_RSET,
	HOOK_VRFY,
	HOOK_QUIT,
	HOOK_UNKNOWN,
	HOOK_DISCONNECT,
	HOOK_AUTH,
	HOOK_STARTTLS,
	HOOK_VERB,     /* a function of the verbs table */
	HOOK_DEFERRED, /* the outbound side (relay.c): not a session's */
	HOOK_BOUNCE,
	HOOK_DELIVERED,
	HOOK__COUNT,
};
/* "on_connect", ..., "verbs". */
const char *hook_kind_str(enum hook_kind);

struct script {
	lua_State *L;
	char *path; /* owned; NULL for the empty policy */
	size_t mem_used;
	size_t mem_max;
	struct hook_budget budget;
	int ref[HOOK__COUNT]; /* functions; HOOK_VERB: the verbs table */
	int refcount;         /* the server's current pointer and each session */
	unsigned generation;  /* 1 for the first load, +1 per reload */
	char **files;         /* owned, NULL-terminated: the policy and the Lua
			       * files it required (for --watch) */
};

#define SCRIPT_SHARED_DEPTH 64 /* nesting kept when luamta.shared is carried over */

struct script_opts {
	const char *path; /* the policy file, or NULL for an empty policy */
	size_t mem_max;   /* --lua-memory */
	struct hook_budget budget;
	const char *hostname;    /* luamta.hostname */
	const char *capture_dir; /* --capture: wrap the policy with luamta.capture */
};
/* Loads and runs the policy file at path in a fresh state (under the
 * budget), checks that it returned a table of known hooks, and keeps
 * references to them. With prev (the generation in force, borrowed), this is
 * a reload: prev's luamta.shared is copied into the new state before the
 * file runs (strings, numbers, booleans and tables; functions, userdata and
 * coroutines are dropped), and the generation number follows prev's.
 * Returns NULL with "file:line: message" in err; prev is untouched then. */
struct script *script_load(const struct script_opts *, struct ev_loop *, const struct script *prev,
    char *err, size_t errsz);
void script_ref(struct script *);
void script_unref(struct script *); /* frees at zero; NULL is a no-op */

static inline int
script_has(const struct script *sc, enum hook_kind k)
{
	return sc != NULL && (unsigned)k < HOOK__COUNT && sc->ref[k] != LUA_NOREF;
}

/* Whether the verbs table has a function for verb (upper case). */
int script_has_verb(struct script *, const char *verb);

/* Pushes the function for kind (for HOOK_VERB, verbs[verb]) onto co.
 * Returns 0, or -1 (nothing pushed) when there is none. */
int script_push_hook(struct script *, lua_State *co, enum hook_kind, const char *verb);

#endif
