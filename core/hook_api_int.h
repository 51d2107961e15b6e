/* hook_api_int.h - what the two files of the Lua face share: hook_api.c
 * (the luamta module, the session handle, hook arguments) and
 * hook_message.c (the message handle of on_message). Not for other files:
 * they go through hook_api.h. */
#ifndef LUAMTA_HOOK_API_INT_H
#define LUAMTA_HOOK_API_INT_H

#include <lua.h>

#define HOOK_API_SESSION "luamta.session"
#define HOOK_API_MESSAGE "luamta.message"

struct smtp_proxy;
struct smtp_session;
struct smtp_tx;

/* The userdata of a session or message handle. */
struct hook_api_handle {
	struct smtp_session *s; /* borrowed; NULL once the session is gone */
};

/* The session of the handle at idx (metatable tname), or a Lua error when
 * it is not one or has ended. */
struct smtp_session *hook_api_check(lua_State *L, int idx, const char *tname);
/* Pushes the transaction's recipients as a new array (empty without one). */
void hook_api_push_rcpts(lua_State *L, const struct smtp_tx *tx);
/* Pushes ESMTP parameters ("KEY=value\n...") as a table of KEY = value. */
void hook_api_push_params(lua_State *co, const char *params);
/* The Lua convention for operations that can fail: true, or nil and err
 * when rc is -1. Returns the number of values pushed. */
int hook_api_result(lua_State *L, int rc, const char *err);
/* Pushes a table mapping each names[i] (1 <= i < n) to i: field names
 * resolved by one hash look-up (hook_api_field) instead of strcmp chains. */
void hook_api_push_ids(lua_State *L, const char *const *names, int n);
/* The number of the field named at idx in the id table at upvalue 1, or 0. */
int hook_api_field(lua_State *L, int idx);

/* The session handle's computed fields and waiting methods
 * (hook_session.c): s.tls, s.proxy, s:rdns(), s:spf(). */
void hook_api_push_tls(lua_State *L, struct smtp_session *s);
void hook_api_push_proxy(lua_State *L, const struct smtp_proxy *px);
int hook_session_rdns(lua_State *L);
int hook_session_spf(lua_State *L);

/* The message handle (hook_message.c): its metatable, once per state; a
 * new handle for the session's transaction, referenced in s->msg_ref. */
void hook_message_open(lua_State *L);
void hook_message_push(lua_State *co, struct smtp_session *s);
/* luamta.dmarc.check: the message handle at index 1 read for dmarc_lua.c,
 * which does the rest (it cannot read a handle itself: it sits below this
 * file). */
int hook_message_dmarc_check(lua_State *L);

/* The LMTP side of the message handle (hook_lmtp.c). msg:rcpt_reply: */
int hook_lmtp_rcpt_reply(lua_State *L);
/* A deliverer's { rcpt = } in the options table at idx (0: none): the
 * address, checked to be one of the message's recipients, or NULL. */
const char *hook_lmtp_opt_rcpt(lua_State *L, int idx, const char *who);
/* A deliverer failed: with rcpt in an LMTP session, that recipient gets
 * 451 and the others keep their replies; otherwise the whole message gets
 * 451 (tx->delivery_failed). */
void hook_lmtp_delivery_failed(lua_State *L, struct smtp_session *s, const char *rcpt);
/* msg:deliver_maildir or msg:deliver_mbox wrote the message for rcpt
 * (NULL: every recipient), in LMTP and SMTP alike: marked in
 * tx->rcpt_replies for dsn_local.c, when a recipient asked for a success
 * report (none is made for the null sender). Never raises. */
void hook_lmtp_delivered(struct smtp_session *s, const char *rcpt);

#endif
