/* hook_api.h - what Lua sees: the luamta module, the session handle and the
 * message handle, and the argument tables hooks receive. Keeps no state of
 * its own: a handle points at its session and is cut off when the session
 * (or the on_message phase) ends, so a kept handle raises instead of
 * touching freed memory.
 * This is the one file below smtp_session.c that reads session structs
 * (smtp_session_types.h): it is the session's Lua face. */
#ifndef LUAMTA_HOOK_API_H
#define LUAMTA_HOOK_API_H

#include <lua.h>

struct smtp_session;

/* Registers the luamta module (global and package.loaded) and the
 * handle metatables in a new state. */
void hook_api_open(lua_State *L, const char *hostname);

/* Pushes the session's handle onto co, creating it on first use. */
void hook_api_push_session(lua_State *co, struct smtp_session *);
/* Pushes a message handle for the session's transaction (on_message). */
void hook_api_push_message(lua_State *co, struct smtp_session *);
/* Cuts the message handle off (the on_message phase is over). */
void hook_api_end_message(lua_State *L, struct smtp_session *);
/* The greeting is out: remembers s.vars as on_connect left it (a shallow
 * copy), before the client said anything. */
void hook_api_mark_greeted(lua_State *L, struct smtp_session *);
/* STARTTLS: s.vars goes back to what hook_api_mark_greeted() kept; all
 * that was learnt from the client in plaintext is forgotten. */
void hook_api_forget(lua_State *L, struct smtp_session *);
/* Cuts every handle of the session off and releases them. */
void hook_api_release(lua_State *L, struct smtp_session *);

/* Pushes a table of ESMTP parameters parsed from params (may be NULL):
 * upper-cased keyword -> value, or true without a value. */
void hook_api_push_params(lua_State *co, const char *params);
/* Pushes the EHLO keyword list ('\n'-separated in lines) as an array and
 * returns a registry reference to it, so the edited list can be read back. */
int hook_api_push_keywords(lua_State *co, const char *lines);
/* Reads the keyword list back and releases the reference. Returns the
 * valid entries (printable ASCII, 1-500 bytes) joined by '\n' (malloc'ed;
 * "" when empty), or NULL when out of memory. */
char *hook_api_take_keywords(lua_State *L, int ref);

#endif
