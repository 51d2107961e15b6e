/* hook_api.c - the C functions and objects policy scripts see: the luamta
 * module (with the modules of the waiting calls registered in it), the
 * session handle "luamta.session", hook arguments, and the handles'
 * lifetime. Handles are userdata holding a session pointer that the
 * session clears when it (or the on_message phase) ends; every access checks
 * it, so a handle kept in a global raises instead of touching freed memory.
 * The session handle's computed fields and waiting methods are in
 * hook_session.c, the message handle's fields and methods in
 * hook_message.c (and hook_lmtp.c); they share hook_api_int.h. */
#include "hook_api.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "cosocket.h"
#include "delivery.h"
#include "dmarc_lua.h"
#include "dns_lua.h"
#include "dsn_param.h"
#include "every.h"
#include "hook_api_int.h"
#include "http.h"
#include "log.h"
#include "metrics_lua.h"
#include "redis.h"
#include "smtp_parse.h"
#include "smtp_reply.h"
#include "smtp_session_types.h"
#include "spf_lua.h"

struct smtp_session *
hook_api_check(lua_State *L, int idx, const char *tname)
{
	struct hook_api_handle *h = luaL_checkudata(L, idx, tname);

	if (h->s == NULL)
		luaL_error(L, "attempt to use a %s that has ended",
		    strcmp(tname, HOOK_API_SESSION) == 0 ? "session" : "message");
	return h->s;
}

void
hook_api_push_rcpts(lua_State *L, const struct smtp_tx *tx)
{
	lua_createtable(L, tx != NULL ? (int)tx->nrcpts : 0, 0);
	for (size_t i = 0; tx != NULL && i < tx->nrcpts; i++) {
		lua_pushstring(L, tx->rcpts[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
}

/* luamta.disconnect([code, text]): the token, then the reply if any. */
static int
api_disconnect(lua_State *L)
{
	int n = lua_gettop(L);

	lua_pushlightuserdata(L, hook_disconnect_token());
	lua_insert(L, 1);
	return n + 1;
}

/* luamta.reply(code, text [, opts]): a custom reply with options (paced
 * lines, a drop mid-reply); the token, then the arguments as given. */
static int
api_reply(lua_State *L)
{
	luaL_checkinteger(L, 1);
	lua_settop(L, 3);
	lua_pushlightuserdata(L, hook_reply_token());
	lua_insert(L, 1);
	return 4;
}

static int
api_sleep(lua_State *L)
{
	return hook_sleep(L, luaL_checknumber(L, 1));
}

static void
api_log_text(lua_State *L, const char *sid, int idx)
{
	char esc[1024];
	size_t len;
	const char *msg = luaL_checklstring(L, idx, &len);

	log_info(sid, "script.log msg=\"%s\"", log_escape(esc, sizeof(esc), msg, len));
}

static int
api_log(lua_State *L)
{
	api_log_text(L, hook_current_sid(), 1);
	return 0;
}

/* Session handle -------------------------------------------------------- */

static int
session_log(lua_State *L)
{
	struct smtp_session *s = hook_api_check(L, 1, HOOK_API_SESSION);

	api_log_text(L, s->sid, 2);
	return 0;
}

/* Session fields by name. session_index finds a name's number in a table
 * (an upvalue) keyed by the interned strings, so a field read costs one
 * hash look-up instead of a chain of string comparisons. */
enum session_field {
	SF_NONE = 0,
	SF_ID,
	SF_PEER_IP,
	SF_PEER_PORT,
	SF_LOCAL_IP,
	SF_LOCAL_PORT,
	SF_HELO,
	SF_ESMTP,
	SF_SENDER,
	SF_RECIPIENTS,
	SF_MAIL_PARAMS,
	SF_MAX_SIZE,
	SF_MESSAGES,
	SF_STATE,
	SF_TLS,
	SF_USER,
	SF_REQUIRE_TLS,
	SF_VARS,
	SF_LOG,
	SF_RDNS,
	SF_ADD_RECEIVED,
	SF_PROXY,
	SF_SPF,
	SF_LMTP,
	SF__COUNT,
};
static const char *const session_field_names[SF__COUNT] = {
	[SF_ID] = "id",
	[SF_PEER_IP] = "peer_ip",
	[SF_PEER_PORT] = "peer_port",
	[SF_LOCAL_IP] = "local_ip",
	[SF_LOCAL_PORT] = "local_port",
	[SF_HELO] = "helo",
	[SF_ESMTP] = "esmtp",
	[SF_SENDER] = "sender",
	[SF_RECIPIENTS] = "recipients",
	[SF_MAIL_PARAMS] = "mail_params",
	[SF_MAX_SIZE] = "max_size",
	[SF_MESSAGES] = "messages",
	[SF_STATE] = "state",
	[SF_TLS] = "tls",
	[SF_USER] = "user",
	[SF_REQUIRE_TLS] = "require_tls",
	[SF_VARS] = "vars",
	[SF_LOG] = "log",
	[SF_RDNS] = "rdns",
	[SF_ADD_RECEIVED] = "add_received",
	[SF_PROXY] = "proxy",
	[SF_SPF] = "spf",
	[SF_LMTP] = "lmtp",
};

void
hook_api_push_ids(lua_State *L, const char *const *names, int n)
{
	lua_createtable(L, 0, n);
	for (int i = 1; i < n; i++) {
		lua_pushinteger(L, i);
		lua_setfield(L, -2, names[i]);
	}
}

int
hook_api_field(lua_State *L, int idx)
{
	int id;

	lua_pushvalue(L, idx);
	lua_rawget(L, lua_upvalueindex(1));
	id = (int)lua_tointeger(L, -1); /* nil: 0 */
	lua_pop(L, 1);
	return id;
}

static int
session_index(lua_State *L)
{
	struct smtp_session *s = hook_api_check(L, 1, HOOK_API_SESSION);

	luaL_checkstring(L, 2);
	switch (hook_api_field(L, 2)) {
	case SF_ID:
		lua_pushstring(L, s->sid);
		break;
	case SF_PEER_IP:
		lua_pushstring(L, s->peer_ip);
		break;
	case SF_PEER_PORT:
		lua_pushinteger(L, s->peer_port);
		break;
	case SF_LOCAL_IP:
		lua_pushstring(L, s->local_ip);
		break;
	case SF_LOCAL_PORT:
		lua_pushinteger(L, s->local_port);
		break;
	case SF_HELO:
		s->helo != NULL ? (void)lua_pushstring(L, s->helo) : lua_pushnil(L);
		break;
	case SF_ESMTP:
		lua_pushboolean(L, s->esmtp);
		break;
	case SF_SENDER:
		s->tx != NULL ? (void)lua_pushstring(L, s->tx->sender) : lua_pushnil(L);
		break;
	case SF_RECIPIENTS:
		hook_api_push_rcpts(L, s->tx);
		break;
	case SF_MAIL_PARAMS:
		hook_api_push_params(L, s->tx != NULL ? s->tx->params : NULL);
		break;
	case SF_MAX_SIZE:
		lua_pushinteger(L, (lua_Integer)s->max_size);
		break;
	case SF_MESSAGES:
		lua_pushinteger(L, s->messages);
		break;
	case SF_STATE:
		lua_pushstring(L, smtp_state_str(s->state));
		break;
	case SF_TLS:
		hook_api_push_tls(L, s);
		break;
	case SF_USER:
		s->user != NULL ? (void)lua_pushstring(L, s->user) : lua_pushnil(L);
		break;
	case SF_REQUIRE_TLS:
		lua_pushboolean(L, s->require_tls || s->srv->cfg->require_tls);
		break;
	case SF_VARS:
		lua_getiuservalue(L, 1, 1);
		break;
	case SF_LOG:
		lua_pushcfunction(L, session_log);
		break;
	case SF_RDNS:
		lua_pushcfunction(L, hook_session_rdns);
		break;
	case SF_ADD_RECEIVED:
		lua_pushboolean(L, s->add_received);
		break;
	case SF_LMTP:
		lua_pushboolean(L, s->lmtp);
		break;
	case SF_PROXY:
		hook_api_push_proxy(L, s->proxy);
		break;
	case SF_SPF:
		lua_pushcfunction(L, hook_session_spf);
		break;
	default:
		lua_pushnil(L); /* unknown: nil, like a table */
	}
	return 1;
}

static int
session_newindex(lua_State *L)
{
	struct smtp_session *s = hook_api_check(L, 1, HOOK_API_SESSION);
	const char *k = luaL_checkstring(L, 2);

	if (strcmp(k, "max_size") == 0) {
		lua_Integer v = luaL_checkinteger(L, 3);
		if (v < 1)
			return luaL_error(L, "max_size must be a positive integer");
		s->max_size = (size_t)v;
		return 0;
	}
	if (strcmp(k, "require_tls") == 0) {
		s->require_tls = lua_toboolean(L, 3);
		return 0;
	}
	/* Our Received: field for this transaction's message (set again at
	 * each MAIL): tests that capture exact bytes switch it off. */
	if (strcmp(k, "add_received") == 0) {
		luaL_checktype(L, 3, LUA_TBOOLEAN);
		s->add_received = lua_toboolean(L, 3);
		return 0;
	}
	return luaL_error(L, "session field '%s' is read-only (keep your own data in s.vars)", k);
}

static int
session_tostring(lua_State *L)
{
	struct hook_api_handle *h = luaL_checkudata(L, 1, HOOK_API_SESSION);

	lua_pushfstring(L, "luamta.session(%s)", h->s != NULL ? h->s->sid : "ended");
	return 1;
}

/* Pushes the session's handle onto co, creating it on first use. */
static void
hook_api_push_session(lua_State *co, struct smtp_session *s)
{
	struct hook_api_handle *h;

	if (s->handle_ref != LUA_NOREF) {
		lua_rawgeti(co, LUA_REGISTRYINDEX, s->handle_ref);
		return;
	}
	/* User values: s.vars, and its copy as on_connect left it. */
	h = lua_newuserdatauv(co, sizeof(*h), 2);
	h->s = s;
	luaL_setmetatable(co, HOOK_API_SESSION);
	lua_newtable(co); /* s.vars */
	lua_setiuservalue(co, -2, 1);
	lua_pushvalue(co, -1);
	s->handle_ref = luaL_ref(co, LUA_REGISTRYINDEX);
}

int
hook_api_result(lua_State *L, int rc, const char *err)
{
	if (rc == -1) {
		lua_pushnil(L);
		lua_pushstring(L, err);
		return 2;
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* luamta.append(path, text): one O_APPEND write and fsync. */
static int
api_append(lua_State *L)
{
	size_t len;
	const char *path = luaL_checkstring(L, 1);
	const char *text = luaL_checklstring(L, 2, &len);
	char err[512];

	return hook_api_result(L, delivery_append(path, text, len, err, sizeof(err)), err);
}

static void
hook_api_cut(lua_State *L, int *ref)
{
	struct hook_api_handle *h;

	if (*ref == LUA_NOREF)
		return;
	lua_rawgeti(L, LUA_REGISTRYINDEX, *ref);
	h = lua_touserdata(L, -1);
	if (h != NULL)
		h->s = NULL;
	lua_pop(L, 1);
	luaL_unref(L, LUA_REGISTRYINDEX, *ref);
	*ref = LUA_NOREF;
}

void
hook_api_end_message(lua_State *L, struct smtp_session *s)
{
	hook_api_cut(L, &s->msg_ref);
}

/* Replaces the table at idx by a shallow copy of itself (raw reads). */
static void
hook_api_copy_table(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	lua_newtable(L);
	if (lua_type(L, idx) == LUA_TTABLE) {
		lua_pushnil(L);
		while (lua_next(L, idx) != 0) {
			lua_pushvalue(L, -2);
			lua_insert(L, -2);
			lua_rawset(L, -4);
		}
	}
	lua_replace(L, idx);
}

void
hook_api_mark_greeted(lua_State *L, struct smtp_session *s)
{
	if (s->handle_ref == LUA_NOREF)
		return;
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->handle_ref);
	lua_getiuservalue(L, -1, 1);
	hook_api_copy_table(L, -1);
	lua_setiuservalue(L, -2, 2);
	lua_pop(L, 1);
}

void
hook_api_forget(lua_State *L, struct smtp_session *s)
{
	if (s->handle_ref == LUA_NOREF)
		return;
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->handle_ref);
	lua_getiuservalue(L, -1, 2);
	hook_api_copy_table(L, -1);
	lua_setiuservalue(L, -2, 1);
	lua_pop(L, 1);
}

void
hook_api_release(lua_State *L, struct smtp_session *s)
{
	hook_api_cut(L, &s->msg_ref);
	hook_api_cut(L, &s->handle_ref);
}

/* Argument tables ------------------------------------------------------- */

void
hook_api_session_init(struct smtp_session *s)
{
	s->handle_ref = s->msg_ref = LUA_NOREF;
	hook_api_pending_init(s);
}

void
hook_api_pending_init(struct smtp_session *s)
{
	s->pend.keywords_ref = LUA_NOREF;
}

/* Sets RFC 3461's decoded fields in the table on top: ret ("FULL",
 * "HDRS"), envid, notify (a list of words), orcpt ("rfc822;address"),
 * each only when given. */
void
hook_api_set_dsn(lua_State *co, int ret, const char *envid, unsigned notify, const char *orcpt)
{
	char words[32];
	int n = 0;

	if (dsn_param_ret_str(ret) != NULL) {
		lua_pushstring(co, dsn_param_ret_str(ret));
		lua_setfield(co, -2, "ret");
	}
	if (envid != NULL && *envid != '\0') {
		lua_pushstring(co, envid);
		lua_setfield(co, -2, "envid");
	}
	if (notify != 0) {
		dsn_param_notify_str(notify, words, sizeof(words));
		lua_createtable(co, 4, 0);
		for (const char *w = words; *w != '\0';) {
			size_t len = strcspn(w, ",");

			lua_pushlstring(co, w, len);
			lua_rawseti(co, -2, ++n);
			w += len + (w[len] == ',');
		}
		lua_setfield(co, -2, "notify");
	}
	if (orcpt != NULL && *orcpt != '\0') {
		lua_pushstring(co, orcpt);
		lua_setfield(co, -2, "orcpt");
	}
}

/* Pushes a table of ESMTP parameters parsed from params (may be NULL):
 * upper-cased keyword -> value, or true without a value; RFC 3461's that
 * are well-formed also decoded under lower-case keys (hook_api_set_dsn). */
void
hook_api_push_params(lua_State *co, const char *params)
{
	char copy[SMTP_ENVELOPE_LINE_MAX];
	struct smtp_param p[SMTP_PARAMS_MAX];
	struct dsn_params dsn;
	int n = 0;

	lua_newtable(co);
	if (params == NULL || strlen(params) >= sizeof(copy))
		return;
	strcpy(copy, params);
	if ((n = smtp_parse_params(copy, p, SMTP_PARAMS_MAX, 1)) < 0)
		return;
	memset(&dsn, 0, sizeof(dsn));
	for (int i = 0; i < n; i++) {
		char key[64];
		size_t j;
		const char *why;

		if (dsn_param_take(&dsn, p[i].key, p[i].value, 1, &why) == -1 ||
		    dsn_param_take(&dsn, p[i].key, p[i].value, 0, &why) == -1)
			memset(&dsn, 0, sizeof(dsn)); /* not from a session that checked them */
		for (j = 0; p[i].key[j] != '\0' && j < sizeof(key) - 1; j++)
			key[j] = (char)toupper((unsigned char)p[i].key[j]);
		key[j] = '\0';
		if (p[i].value != NULL)
			lua_pushstring(co, p[i].value);
		else
			lua_pushboolean(co, 1);
		lua_setfield(co, -2, key);
	}
	hook_api_set_dsn(co, dsn.ret, dsn.envid, dsn.notify, dsn.orcpt);
}

/* Pushes the EHLO keyword list ('\n'-separated in lines) as an array and
 * keeps a registry reference to it in the pending command, so the list as
 * on_ehlo left it can be read back. */
static void
hook_api_push_keywords(lua_State *co, struct smtp_session *s, const char *lines)
{
	const char *line = lines;
	int i = 0;

	lua_newtable(co);
	while (line != NULL && *line != '\0') {
		const char *nl = strchr(line, '\n');
		size_t len = nl != NULL ? (size_t)(nl - line) : strlen(line);

		lua_pushlstring(co, line, len);
		lua_rawseti(co, -2, ++i);
		line = nl != NULL ? nl + 1 : NULL;
	}
	lua_pushvalue(co, -1);
	s->pend.keywords_ref = luaL_ref(co, LUA_REGISTRYINDEX);
}

void
hook_api_drop_keywords(lua_State *L, struct smtp_session *s)
{
	luaL_unref(L, LUA_REGISTRYINDEX, s->pend.keywords_ref);
	s->pend.keywords_ref = LUA_NOREF;
}

char *
hook_api_take_keywords(lua_State *L, struct smtp_session *s)
{
	size_t n, len, total = 1, o = 0, kept = 0;
	const char *kw;
	char *out = NULL;

	if (s->pend.keywords_ref == LUA_NOREF)
		return NULL;
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->pend.keywords_ref);
	hook_api_drop_keywords(L, s);
	n = lua_type(L, -1) == LUA_TTABLE ? (size_t)lua_rawlen(L, -1) : 0;
	if (n > 64)
		n = 64;
	/* Two passes over the list: measure, then copy the valid entries.
	 * Keywords that would make the reply (with a first line of the
	 * longest kind) too long for the wire are dropped, from the first
	 * that does not fit. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 1; i <= n; i++) {
			int ok;

			lua_rawgeti(L, -1, (lua_Integer)i);
			kw = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
			ok = kw != NULL && len > 0 && len <= 500;
			for (size_t j = 0; ok && j < len; j++)
				ok = kw[j] >= 32 && kw[j] <= 126;
			if (ok && pass == 0 &&
			    smtp_reply_size_ok(kept + 2, total + len + SMTP_REPLY_TEXT_MAX) == -1) {
				log_warn(s->sid,
				    "hook.invalid hook=on_ehlo error=\"keywords past the reply "
				    "size limit dropped\" dropped=%zu",
				    n - i + 1);
				n = i - 1;
				lua_pop(L, 1);
				break;
			}
			if (ok && pass == 0) {
				total += len + 1;
				kept++;
			} else if (ok) {
				if (o > 0)
					out[o++] = '\n';
				memcpy(out + o, kw, len);
				o += len;
			}
			lua_pop(L, 1);
		}
		if (pass == 0 && (out = malloc(total)) == NULL)
			break;
	}
	lua_pop(L, 1);
	if (out != NULL)
		out[o] = '\0';
	return out;
}

int
hook_api_push_args(lua_State *co, struct smtp_session *s, enum hook_kind kind, const char *keywords)
{
	const struct smtp_pending *p = &s->pend;

	hook_api_push_session(co, s);
	switch (kind) {
	case HOOK_HELO:
	case HOOK_VRFY:
		lua_pushstring(co, p->arg);
		return 2;
	case HOOK_EHLO:
		lua_pushstring(co, p->arg);
		hook_api_push_keywords(co, s, keywords);
		return 3;
	case HOOK_MAIL:
	case HOOK_RCPT:
		if (kind == HOOK_MAIL) { /* a new transaction for s:spf() */
			s->pend.mail_hook = 1;
			spf_lua_forget(&s->spf);
		}
		lua_pushstring(co, p->arg);
		hook_api_push_params(co, p->params);
		return 3;
	case HOOK_MESSAGE:
		hook_message_push(co, s);
		return 2;
	case HOOK_AUTH:
		lua_pushstring(co, p->verb);
		lua_pushstring(co, p->arg);
		lua_pushstring(co, p->params != NULL ? p->params : "");
		return 4;
	case HOOK_UNKNOWN:
		lua_pushstring(co, p->verb);
		lua_pushstring(co, p->arg != NULL ? p->arg : "");
		return 3;
	case HOOK_VERB:
		lua_pushstring(co, p->arg != NULL ? p->arg : "");
		return 2;
	default:
		return 1;
	}
}

/* Registration ---------------------------------------------------------- */

static const luaL_Reg api_funcs[] = {
	{ "disconnect", api_disconnect },
	{ "reply", api_reply },
	{ "sleep", api_sleep },
	{ "log", api_log },
	{ "append", api_append },
	{ "every", every_register },
	{ NULL, NULL },
};

void
hook_api_open(lua_State *L, const char *hostname)
{
	luaL_newmetatable(L, HOOK_API_SESSION);
	hook_api_push_ids(L, session_field_names, SF__COUNT);
	lua_pushcclosure(L, session_index, 1);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, session_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_pushcfunction(L, session_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);

	hook_message_open(L);

	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
	luaL_newlib(L, api_funcs);
	http_lua_open(L);
	dns_lua_open(L);
	spf_lua_open(L, hostname);
	redis_lua_open(L);
	metrics_lua_open(L);
	dmarc_lua_open(L, hostname, hook_message_dmarc_check);
	lua_pushstring(L, LUAMTA_VERSION);
	lua_setfield(L, -2, "version");
	lua_pushstring(L, hostname);
	lua_setfield(L, -2, "hostname");
	lua_newtable(L); /* survives reloads: see script_carry_shared() */
	lua_setfield(L, -2, "shared");
	cosocket_lua_open(L); /* luamta.tcp */
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, "luamta"); /* package.loaded.luamta */
	lua_setglobal(L, "luamta");
	lua_pop(L, 1);
}
