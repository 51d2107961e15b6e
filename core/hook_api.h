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

#include "script.h"

struct smtp_session;

/* Registers the luamta module (global and package.loaded) and the
 * handle metatables in a new state. */
void hook_api_open(lua_State *L, const char *hostname);

/* A new session's Lua references: none yet. */
void hook_api_session_init(struct smtp_session *);
/* The pending command's references: none (after it was reset). */
void hook_api_pending_init(struct smtp_session *);

/* Pushes what the hook of kind receives: the session handle, then its
 * arguments from the pending command (keywords: the EHLO keyword lines,
 * '\n'-separated, for on_ehlo to edit). Returns how many it pushed. */
int hook_api_push_args(lua_State *co, struct smtp_session *, enum hook_kind, const char *keywords);
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

/* The EHLO keyword list as on_ehlo left it, or NULL when no list was
 * handed to a hook (or out of memory): the valid entries (printable ASCII,
 * 1-500 bytes, as many as fit a reply) joined by '\n', malloc'ed. The
 * list's reference is released. */
char *hook_api_take_keywords(lua_State *L, struct smtp_session *);
/* Releases the keyword list's reference, if any. */
void hook_api_drop_keywords(lua_State *L, struct smtp_session *);

/* Sets DSN's decoded fields that were given (RFC 3461: ret "FULL" or
 * "HDRS", envid, notify as a list of words, orcpt "rfc822;a@x") in the
 * table on top: the hooks' params, msg.dsn, and the queue entry of the
 * outbound hooks (relay_outcome.c) all show them so. */
void hook_api_set_dsn(
    lua_State *co, int ret, const char *envid, unsigned notify, const char *orcpt);

#endif
