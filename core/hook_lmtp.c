/* hook_lmtp.c - the message handle's LMTP side (RFC 2033 4.2): a
 * recipient's own reply after the final dot, from msg:rcpt_reply or from a
 * deliverer given { rcpt = address } that failed (451 for it alone).
 * smtp_lmtp.c sends them; in an SMTP session there is one reply for the
 * message, so msg:rcpt_reply returns false there and a deliverer's failure
 * fails the whole message. And which recipients a mailbox deliverer wrote
 * the message for, in both (for dsn_local.c's success reports). Split
 * from hook_message.c; the two share hook_api_int.h. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "dsn_param.h"
#include "hook_api_int.h"
#include "log.h"
#include "smtp_parse.h"
#include "smtp_session_types.h"

#define HOOK_LMTP_FAILED_TEXT "4.3.0 Error: local delivery failed, try again later"

static struct smtp_tx *
lmtp_tx(lua_State *L, struct smtp_session **sp)
{
	struct smtp_session *s = hook_api_check(L, 1, HOOK_API_MESSAGE);

	if (s->tx == NULL)
		luaL_error(L, "attempt to use a message that has ended");
	*sp = s;
	return s->tx;
}

/* Whether addr is one of the message's recipients (as RCPT gave it). */
static int
lmtp_is_rcpt(const struct smtp_tx *tx, const char *addr)
{
	for (size_t i = 0; i < tx->nrcpts; i++)
		if (strcmp(tx->rcpts[i], addr) == 0)
			return 1;
	return 0;
}

/* The recipients' own entries, made on first use; NULL when out of
 * memory. */
static struct smtp_rcpt_reply *
lmtp_replies(struct smtp_tx *tx)
{
	if (tx->rcpt_replies == NULL)
		tx->rcpt_replies = calloc(tx->nrcpts, sizeof(*tx->rcpt_replies));
	return tx->rcpt_replies;
}

/* Gives every recipient equal to addr the reply code/text (text may be
 * NULL); one whose delivery failed keeps its 451 against a 2xx. Returns
 * whether any took it. */
static int
lmtp_set(lua_State *L, struct smtp_tx *tx, const char *addr, int code, const char *text, int failed)
{
	int set = 0;

	if (lmtp_replies(tx) == NULL)
		luaL_error(L, "out of memory");
	for (size_t i = 0; i < tx->nrcpts; i++) {
		struct smtp_rcpt_reply *r = &tx->rcpt_replies[i];
		char *copy = NULL;

		if (strcmp(tx->rcpts[i], addr) != 0 || (r->failed && code < 400))
			continue;
		if (text != NULL && (copy = strdup(text)) == NULL)
			luaL_error(L, "out of memory");
		free(r->text);
		r->text = copy;
		r->code = code;
		r->failed |= failed;
		set = 1;
	}
	return set;
}

/* msg:rcpt_reply(address, code [, text]): true when set, false in an SMTP
 * session or for a recipient whose delivery failed (given a 2xx). */
int
hook_lmtp_rcpt_reply(lua_State *L)
{
	struct smtp_session *s;
	struct smtp_tx *tx = lmtp_tx(L, &s);
	const char *addr = luaL_checkstring(L, 2);
	lua_Integer code = luaL_checkinteger(L, 3);
	size_t len = 0;
	const char *text = luaL_optlstring(L, 4, NULL, &len);

	if (!((code >= 200 && code <= 299) || (code >= 400 && code <= 599)) || code == 421)
		return luaL_argerror(L, 3, "a reply code 2xx, 4xx or 5xx (not 421)");
	if (text != NULL && smtp_reply_text_ok(text, len) == -1)
		return luaL_argerror(
		    L, 4, "one line of printable text or UTF-8, at most 506 bytes");
	if (!lmtp_is_rcpt(tx, addr))
		return luaL_argerror(L, 2, "not a recipient of the message");
	lua_pushboolean(L, s->lmtp && lmtp_set(L, tx, addr, (int)code, text, 0));
	return 1;
}

const char *
hook_lmtp_opt_rcpt(lua_State *L, int idx, const char *who)
{
	struct smtp_session *s;
	struct smtp_tx *tx = lmtp_tx(L, &s);
	const char *addr;

	if (idx == 0 || lua_isnoneornil(L, idx))
		return NULL;
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_pushliteral(L, "rcpt");
	lua_rawget(L, idx);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return NULL;
	}
	if (lua_type(L, -1) != LUA_TSTRING || !lmtp_is_rcpt(tx, lua_tostring(L, -1)))
		luaL_error(L, "%s: rcpt must be one of the message's recipients", who);
	/* The options table keeps the string alive once it is popped. */
	addr = lua_tostring(L, -1);
	lua_pop(L, 1);
	return addr;
}

void
hook_lmtp_delivery_failed(lua_State *L, struct smtp_session *s, const char *rcpt)
{
	if (rcpt != NULL && s->lmtp)
		(void)lmtp_set(L, s->tx, rcpt, 451, HOOK_LMTP_FAILED_TEXT, 1);
	else
		s->tx->delivery_failed = 1;
}

void
hook_lmtp_delivered(struct smtp_session *s, const char *rcpt)
{
	struct smtp_tx *tx = s->tx;
	int wanted = 0;

	/* The mark serves success reports only (dsn_local.c): a message no
	 * recipient asked one for, or one from the null sender, needs none. */
	for (size_t i = 0; i < tx->nrcpts && !wanted; i++)
		wanted = (tx->rcpt_dsn[i].notify & DSN_NOTIFY_SUCCESS) != 0;
	if (!wanted || tx->sender[0] == '\0')
		return;
	/* Never raises: the message is written, and a Lua error now would
	 * make its reply a 451 and the client send it again. */
	if (lmtp_replies(tx) == NULL) {
		log_warn(s->sid, "dsn.local qid=%s error=\"out of memory\"", tx->qid);
		return;
	}
	for (size_t i = 0; i < tx->nrcpts; i++)
		if (rcpt == NULL || strcmp(tx->rcpts[i], rcpt) == 0)
			tx->rcpt_replies[i].delivered = 1;
}
