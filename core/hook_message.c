/* hook_message.c - the message handle scripts get in on_message: its
 * fields (sender, recipients, data, size, qid, params, delivery_failed)
 * and methods (header lookups, prepend_header, removing forged
 * Authentication-Results fields, the deliverers, print, save, relay;
 * dkim_sign and dkim_verify, which dkim_lua.c implements over the
 * message's store). A handle points at its session and is cut off when
 * on_message is over (hook_api_end_message), so a kept one raises instead
 * of reading a freed transaction. Split from hook_api.c, which owns the
 * rest of the Lua face; the two share hook_api_int.h. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <lauxlib.h>

#include "authres.h"
#include "config.h"
#include "delivery.h"
#include "dkim_lua.h"
#include "dmarc_lua.h"
#include "hook.h"
#include "hook_api.h"
#include "hook_api_int.h"
#include "log.h"
#include "msghdr.h"
#include "msgstore.h"
#include "smtp_parse.h"
#include "smtp_server.h"
#include "smtp_session_types.h"

#define HOOK_API_PREPEND_MAX 65536 /* header bytes msg:prepend_header may add */

static struct smtp_tx *
message_tx(lua_State *L)
{
	struct smtp_session *s = hook_api_check(L, 1, HOOK_API_MESSAGE);

	if (s->tx == NULL)
		luaL_error(L, "attempt to use a message that has ended");
	return s->tx;
}

/* Finds header fields named name (case-insensitive) in the header section
 * and stores each value, unfolded (RFC 5322 2.2.3), in the table at index
 * t (t[1], t[2]...), up to max of them. A message may carry thousands of
 * fields, so values go into the table as they are found rather than onto
 * the stack. Only the message's beginning that the store keeps in memory
 * is searched (over 100 KiB: a header section longer than that is read as
 * far as that, as Postfix's header_size_limit does). Returns how many it
 * stored. */
static int
message_find_headers(lua_State *L, const struct smtp_tx *tx, const char *name, int t, int max)
{
	const char *p, *end;
	size_t nlen = strlen(name), hlen;
	int found = 0;

	p = msgstore_head(tx->ms, &hlen);
	end = p + hlen;
	while (p != NULL && p < end && found < max) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *lend = eol != NULL ? eol : end;

		if (lend == p || (lend == p + 1 && *p == '\r'))
			break; /* the empty line ends the header section */
		if ((size_t)(lend - p) > nlen && p[nlen] == ':' &&
		    strncasecmp(p, name, nlen) == 0) {
			luaL_Buffer b;
			const char *v = p + nlen + 1;

			luaL_buffinit(L, &b);
			for (;;) {
				const char *e = lend;
				if (e > v && e[-1] == '\r')
					e--;
				while (v < e && (*v == ' ' || *v == '\t'))
					v++;
				luaL_addlstring(&b, v, (size_t)(e - v));
				if (eol == NULL || eol + 1 >= end ||
				    (eol[1] != ' ' && eol[1] != '\t'))
					break;
				/* A folded continuation line. */
				luaL_addchar(&b, ' ');
				v = eol + 1;
				eol = memchr(v, '\n', (size_t)(end - v));
				lend = eol != NULL ? eol : end;
			}
			luaL_pushresult(&b);
			lua_rawseti(L, t, ++found);
		}
		p = eol != NULL ? eol + 1 : NULL;
		/* Skip continuation lines of a header we did not want. */
		while (p != NULL && p < end && (*p == ' ' || *p == '\t')) {
			eol = memchr(p, '\n', (size_t)(end - p));
			p = eol != NULL ? eol + 1 : NULL;
		}
	}
	return found;
}

static int
message_header(lua_State *L)
{
	struct smtp_tx *tx = message_tx(L);
	const char *name = luaL_checkstring(L, 2);

	lua_settop(L, 2);
	lua_createtable(L, 1, 0);
	message_find_headers(L, tx, name, 3, 1);
	lua_rawgeti(L, 3, 1); /* nil when there is none */
	return 1;
}

static int
message_headers(lua_State *L)
{
	struct smtp_tx *tx = message_tx(L);
	const char *name = luaL_checkstring(L, 2);

	lua_settop(L, 2);
	lua_newtable(L);
	message_find_headers(L, tx, name, 3, INT_MAX);
	return 1;
}

/* Puts field (len bytes, its CRLF included) on top of the message, within
 * what scripts may add in all; raises otherwise. */
static void
message_prepend_field(lua_State *L, void *arg, const char *field, size_t len)
{
	struct smtp_tx *tx = arg;

	/* The message's beginning is held outside the script's memory cap
	 * and moved each time: what scripts add to it is bounded. */
	if (len > HOOK_API_PREPEND_MAX - tx->prepended)
		luaL_error(
		    L, "at most %d bytes of header fields may be added", HOOK_API_PREPEND_MAX);
	if (msgstore_prepend(tx->ms, field, len) == -1)
		luaL_error(L, "out of memory");
	tx->prepended += len;
}

static int
message_prepend_header(lua_State *L)
{
	struct smtp_tx *tx = message_tx(L);
	size_t nlen, vlen, add;
	const char *name = luaL_checklstring(L, 2, &nlen);
	const char *value = luaL_checklstring(L, 3, &vlen);
	luaL_Buffer b;

	/* RFC 5322 2.2: field names are printable ASCII without ':'. */
	if (nlen == 0 || nlen > 76)
		return luaL_error(L, "prepend_header: bad header name");
	for (size_t i = 0; i < nlen; i++)
		if (name[i] <= 32 || name[i] >= 127 || name[i] == ':')
			return luaL_error(L, "prepend_header: bad header name");
	if (memchr(value, '\r', vlen) != NULL || memchr(value, '\n', vlen) != NULL ||
	    memchr(value, '\0', vlen) != NULL)
		return luaL_error(L, "prepend_header: the value must not contain CR, LF or NUL");
	add = nlen + 2 + vlen + 2;
	if (add > HOOK_API_PREPEND_MAX - tx->prepended)
		return luaL_error(L,
		    "prepend_header: at most %d bytes of header fields may be added",
		    HOOK_API_PREPEND_MAX);
	luaL_buffinit(L, &b);
	luaL_addlstring(&b, name, nlen);
	luaL_addstring(&b, ": ");
	luaL_addlstring(&b, value, vlen);
	luaL_addstring(&b, "\r\n");
	luaL_pushresult(&b);
	message_prepend_field(L, tx, lua_tostring(L, -1), add);
	return 0;
}

/* msg:remove_forged_auth_results([authserv_id]): removes every
 * Authentication-Results field whose authserv-id is ours (by default the
 * server's --hostname; compared case-insensitively), as RFC 8601 5 asks of
 * a border MTA: only we may say what we checked. Returns how many went.
 * The fields are cut out of the store, so msg.data, the deliverers,
 * msg:save and the queue all see the message without them. Only the
 * header's part the store keeps in memory is searched (as msg:header
 * does); a field the memory part ends inside of is left alone. */
static int
message_remove_forged_auth_results(lua_State *L)
{
	struct smtp_tx *tx = message_tx(L);
	struct smtp_session *s = hook_api_check(L, 1, HOOK_API_MESSAGE);
	const char *ours = luaL_optstring(L, 2, s->srv->cfg->hostname), *head;
	struct msghdr_field f;
	size_t pos = 0, hlen;
	char id[256];
	lua_Integer removed = 0;

	if (ours[0] == '\0')
		return luaL_argerror(L, 2, "an authserv-id must not be empty");
	head = msgstore_head(tx->ms, &hlen);
	while (msghdr_next(head, hlen, &pos, &f)) {
		if (!msghdr_is(&f, "Authentication-Results") ||
		    (!f.complete && msgstore_spilled(tx->ms)) ||
		    authres_servid(f.value, f.vlen, id, sizeof(id)) == -1 ||
		    strcasecmp(id, ours) != 0)
			continue;
		if (msgstore_cut(tx->ms, f.off, f.len) == -1)
			return luaL_error(L, "remove_forged_auth_results: %s", strerror(errno));
		head = msgstore_head(tx->ms, &hlen);
		pos = f.off;
		removed++;
	}
	lua_pushinteger(L, removed);
	return 1;
}

int
hook_message_dmarc_check(lua_State *L)
{
	struct smtp_tx *tx = message_tx(L);
	struct smtp_session *s = hook_api_check(L, 1, HOOK_API_MESSAGE);
	struct dmarc_lua_msg m;

	m.sender = tx->sender;
	m.helo = s->helo;
	m.head = msgstore_head(tx->ms, &m.hlen);
	return dmarc_lua_check(L, &m);
}

/* msg:dkim_sign{}: the field goes on top at once, so every deliverer and
 * msg:save see it. */
static int
message_dkim_sign(lua_State *L)
{
	struct smtp_tx *tx = message_tx(L);

	return dkim_lua_sign(L, tx->ms, message_prepend_field, tx);
}

static int
message_dkim_verify(lua_State *L)
{
	return dkim_lua_verify(L, message_tx(L)->ms);
}

/* A failed delivery makes the end-of-data reply a 451 whatever the hook
 * returns, so accepting after a failure can never lose the message; with
 * rcpt (a deliverer's { rcpt = }) in LMTP, that recipient's reply only
 * (hook_lmtp.c). */
static int
message_delivery_result(lua_State *L, struct smtp_session *s, int rc, const char *how,
    const char *where, const char *err, const char *rcpt)
{
	char esc[512];

	if (rc == 0) {
		s->tx->delivered++;
		log_info(s->sid, "delivery.ok qid=%s method=%s to=\"%s\"", s->tx->qid, how,
		    log_escape(esc, sizeof(esc), where, strlen(where)));
		lua_pushboolean(L, 1);
		return 1;
	}
	hook_lmtp_delivery_failed(L, s, rcpt);
	log_warn(s->sid, "delivery.failed qid=%s method=%s error=\"%s\"%s", s->tx->qid, how,
	    log_escape(esc, sizeof(esc), err, strlen(err)),
	    rcpt != NULL && s->lmtp ? " scope=rcpt" : "");
	lua_pushnil(L);
	lua_pushstring(L, err);
	return 2;
}

static int
message_deliver_maildir(lua_State *L)
{
	struct smtp_tx *tx = message_tx(L);
	const char *dir = luaL_checkstring(L, 2);
	const char *rcpt = hook_lmtp_opt_rcpt(L, 3, "msg:deliver_maildir");
	char name[256], err[512], where[1024];
	int rc;

	rc = delivery_maildir(dir, tx->ms, name, sizeof(name), err, sizeof(err));
	if (rc == 0)
		hook_lmtp_delivered(hook_api_check(L, 1, HOOK_API_MESSAGE), rcpt);
	snprintf(where, sizeof(where), "%s/new/%s", dir, rc == 0 ? name : "");
	return message_delivery_result(
	    L, hook_api_check(L, 1, HOOK_API_MESSAGE), rc, "maildir", where, err, rcpt);
}

/* A mailbox locked by another process (a MUA rewriting it) is waited for
 * by parking the hook and trying again, so the other sessions go on. MUAs
 * hold the lock only while they rewrite the file, hence the short interval;
 * the default wait is Postfix's (deliver_lock_attempts 20, one second
 * apart); the cap keeps a typo from parking a session for hours. */
#define HOOK_API_MBOX_RETRY_MS     100
#define HOOK_API_MBOX_WAIT_DEFAULT 20
#define HOOK_API_MBOX_WAIT_MAX     3600
/* Stack slots of msg:deliver_mbox(path [, opts]) after its arguments, kept
 * across the waits. The wait is counted as the sum of the timers' intervals,
 * in milliseconds, so no clock has to be read and a clock step changes
 * nothing. */
#define HOOK_API_MBOX_LEFT   4 /* milliseconds of waiting left */
#define HOOK_API_MBOX_WAIT   5 /* the whole wait allowed, for the error text */
#define HOOK_API_MBOX_FAILED 6 /* msg.delivery_failed from before the wait */

/* One attempt of msg:deliver_mbox: called by it first (status LUA_OK), then
 * as the continuation of each wait (LUA_YIELD). */
static int
message_deliver_mbox_try(lua_State *L, int status, lua_KContext ctx)
{
	/* Read from the handle again after every wait. The session frees a
	 * parked run when it ends, so this continuation cannot run for a
	 * dead one; were it to, message_tx raises instead of reading freed
	 * memory. */
	struct smtp_tx *tx = message_tx(L);
	struct smtp_session *s = hook_api_check(L, 1, HOOK_API_MESSAGE);
	const char *path = lua_tostring(L, 2), *rcpt;
	lua_Integer left = lua_tointeger(L, HOOK_API_MBOX_LEFT), nap;
	lua_Integer wait = lua_tointeger(L, HOOK_API_MBOX_WAIT);
	char err[512], esc[512], esc2[512];
	size_t n;
	int rc;

	(void)ctx;
	if (status == LUA_YIELD)
		tx->delivery_failed = lua_toboolean(L, HOOK_API_MBOX_FAILED);
	rc = delivery_mbox(path, tx->sender, tx->ms, err, sizeof(err));
	if (rc == DELIVERY_LOCKED && left > 0 && lua_isyieldable(L)) {
		/* Logged once, on the first wake-up that finds the lock still
		 * held: the hook did park by then (a park that raises leaves
		 * no line saying it waits), and a lock gone within one
		 * interval is not worth a line. */
		if (status == LUA_YIELD && wait - left <= HOOK_API_MBOX_RETRY_MS)
			log_info(s->sid,
			    "delivery.wait qid=%s method=mbox to=\"%s\" seconds=%g error=\"%s\"",
			    tx->qid, log_escape(esc, sizeof(esc), path, strlen(path)),
			    (double)wait / 1000, log_escape(esc2, sizeof(esc2), err, strlen(err)));
		nap = left < HOOK_API_MBOX_RETRY_MS ? left : HOOK_API_MBOX_RETRY_MS;
		lua_pushinteger(L, left - nap);
		lua_replace(L, HOOK_API_MBOX_LEFT);
		lua_pushboolean(L, tx->delivery_failed);
		lua_replace(L, HOOK_API_MBOX_FAILED);
		/* Failed until the wait is over: if parking raises (a
		 * coroutine of the script's own cannot park the hook) and the
		 * script catches the error, the reply is still the 451 that
		 * matches the untouched mailbox. The wake-up restores it. */
		tx->delivery_failed = 1;
		return hook_sleepk(
		    L, "msg:deliver_mbox", (double)nap / 1000, 0, message_deliver_mbox_try);
	}
	if (rc == DELIVERY_LOCKED) {
		/* Out of time, no wait allowed, or a hook that cannot yield
		 * here (inside a metamethod or a callback called from C):
		 * a temporary failure, and the client tries again later. */
		n = strlen(err);
		if (status == LUA_YIELD)
			(void)snprintf(err + n, sizeof(err) - n, "; still locked after %g s",
			    (double)wait / 1000);
		else if (left > 0)
			(void)snprintf(err + n, sizeof(err) - n, "; cannot wait for it here");
		rc = -1;
	}
	rcpt = hook_lmtp_opt_rcpt(L, 3, "msg:deliver_mbox");
	if (rc == 0)
		hook_lmtp_delivered(s, rcpt);
	return message_delivery_result(L, s, rc, "mbox", path, err, rcpt);
}

/* msg:deliver_mbox(path [, opts]); opts.lock_timeout: seconds to wait for a
 * locked mailbox. */
static int
message_deliver_mbox(lua_State *L)
{
	lua_Number secs = HOOK_API_MBOX_WAIT_DEFAULT;

	(void)message_tx(L);
	luaL_checkstring(L, 2);
	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		lua_getfield(L, 3, "lock_timeout");
		if (!lua_isnil(L, -1)) {
			secs = lua_tonumber(L, -1);
			if (lua_type(L, -1) != LUA_TNUMBER ||
			    !(secs >= 0 && secs <= HOOK_API_MBOX_WAIT_MAX))
				return luaL_argerror(L, 3,
				    "lock_timeout must be a number of seconds from 0 to 3600");
		}
	}
	(void)hook_lmtp_opt_rcpt(L, 3, "msg:deliver_mbox"); /* checked before it writes */
	lua_settop(L, 3);
	lua_pushinteger(L, (lua_Integer)(secs * 1000 + 0.5));
	lua_pushvalue(L, HOOK_API_MBOX_LEFT);
	lua_pushboolean(L, 0);
	return message_deliver_mbox_try(L, LUA_OK, 0);
}

static int
message_print(lua_State *L)
{
	struct smtp_tx *tx = message_tx(L);
	struct smtp_session *s = hook_api_check(L, 1, HOOK_API_MESSAGE);
	char err[128];
	int rc;

	/* With --stdio, stdout carries the SMTP replies: print to stderr. */
	rc = delivery_print(s->srv->stdio ? STDERR_FILENO : STDOUT_FILENO, s->peer_ip, tx->sender,
	    (const char *const *)tx->rcpts, tx->nrcpts, tx->ms);
	snprintf(err, sizeof(err), "cannot write to stdout");
	return message_delivery_result(L, s, rc, "print", "stdout", err, NULL);
}

/* msg:save(path): the message as one file, whole or not at all (fsync'ed).
 * Unlike the deliverers it does not turn a failure into a 451 by itself:
 * it returns nil, err for the caller (e.g. luamta.capture) to decide. */
static int
message_save(lua_State *L)
{
	struct smtp_tx *tx = message_tx(L);
	const char *path = luaL_checkstring(L, 2);
	char err[512];

	return hook_api_result(L, delivery_file(path, tx->ms, err, sizeof(err)), err);
}

/* msg.data: the whole message as one string, read back from the store's
 * file when it went to one (counted against the script's memory cap, like
 * any string it makes). */
static void
message_push_data(lua_State *L, const struct msgstore *ms)
{
	size_t off = 0, len = msgstore_len(ms);
	const char *p;
	luaL_Buffer b;
	ssize_t n;
	char *dst;

	if (!msgstore_spilled(ms)) {
		p = msgstore_head(ms, &len);
		lua_pushlstring(L, p, len);
		return;
	}
	dst = luaL_buffinitsize(L, &b, len);
	while (off < len) {
		n = msgstore_piece(ms, off, dst + off, len - off, &p);
		if (n <= 0)
			luaL_error(L, "msg.data: cannot read the message: %s",
			    n == 0 ? "it is shorter than its size" : strerror(errno));
		if (p != dst + off)
			memcpy(dst + off, p, (size_t)n);
		off += (size_t)n;
	}
	luaL_pushresultsize(&b, len);
}

/* Message fields by name, resolved as the session's are (hook_api_field). */
enum message_field {
	MF_NONE = 0,
	MF_SENDER,
	MF_RECIPIENTS,
	MF_DATA,
	MF_SIZE,
	MF_QID,
	MF_DELIVERY_FAILED,
	MF_PARAMS,
	MF_DSN,
	MF__COUNT,
};
static const char *const message_field_names[MF__COUNT] = {
	[MF_SENDER] = "sender",
	[MF_RECIPIENTS] = "recipients",
	[MF_DATA] = "data",
	[MF_SIZE] = "size",
	[MF_QID] = "qid",
	[MF_DELIVERY_FAILED] = "delivery_failed",
	[MF_PARAMS] = "params",
	[MF_DSN] = "dsn",
};

/* msg.dsn: the transaction's RFC 3461 parameters decoded, { ret, envid,
 * recipients = { {address, notify, orcpt}, ... } } in msg.recipients'
 * order (each field only when given). */
static void
message_push_dsn(lua_State *L, const struct smtp_tx *tx)
{
	lua_createtable(L, 0, 3);
	hook_api_set_dsn(L, tx->dsn_ret, tx->dsn_envid, 0, NULL);
	lua_createtable(L, (int)tx->nrcpts, 0);
	for (size_t i = 0; i < tx->nrcpts; i++) {
		lua_createtable(L, 0, 3);
		lua_pushstring(L, tx->rcpts[i]);
		lua_setfield(L, -2, "address");
		hook_api_set_dsn(L, 0, NULL, tx->rcpt_dsn[i].notify, tx->rcpt_dsn[i].orcpt);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "recipients");
}

/* Fields first (upvalue 1: their ids), then the methods (upvalue 2). */
static int
message_index(lua_State *L)
{
	struct smtp_tx *tx = message_tx(L);

	luaL_checkstring(L, 2);
	switch (hook_api_field(L, 2)) {
	case MF_SENDER:
		lua_pushstring(L, tx->sender);
		break;
	case MF_RECIPIENTS:
		hook_api_push_rcpts(L, tx);
		break;
	case MF_DATA:
		message_push_data(L, tx->ms);
		break;
	case MF_SIZE:
		lua_pushinteger(L, (lua_Integer)msgstore_len(tx->ms));
		break;
	case MF_QID:
		lua_pushstring(L, tx->qid);
		break;
	case MF_DELIVERY_FAILED:
		lua_pushboolean(L, tx->delivery_failed);
		break;
	case MF_PARAMS:
		hook_api_push_params(L, tx->params);
		break;
	case MF_DSN:
		message_push_dsn(L, tx);
		break;
	default:
		lua_pushvalue(L, 2);
		lua_rawget(L, lua_upvalueindex(2));
	}
	return 1;
}

/* Pushes a message handle for the session's transaction (on_message). */
void
hook_message_push(lua_State *co, struct smtp_session *s)
{
	struct hook_api_handle *h;

	h = lua_newuserdatauv(co, sizeof(*h), 0);
	h->s = s;
	luaL_setmetatable(co, HOOK_API_MESSAGE);
	lua_pushvalue(co, -1);
	s->msg_ref = luaL_ref(co, LUA_REGISTRYINDEX);
}

/* msg:relay([opts]) -------------------------------------------------------- */

#define MSG_RELAY_ROUTES 16  /* msg:relay calls per message */
#define MSG_RELAY_ADDR   320 /* bytes of an address (RFC 5321 4.5.3.1.3: 256 for a path) */

/* Whether the MAIL parameters asked for BODY=8BITMIME. */
static int
message_body_8bit(const char *params)
{
	char copy[SMTP_ENVELOPE_LINE_MAX];
	struct smtp_param p[SMTP_PARAMS_MAX];
	int n;

	if (params == NULL || strlen(params) >= sizeof(copy))
		return 0;
	strcpy(copy, params);
	if ((n = smtp_parse_params(copy, p, SMTP_PARAMS_MAX, 1)) < 0)
		return 0;
	for (int i = 0; i < n; i++)
		if (strcasecmp(p[i].key, "BODY") == 0 && p[i].value != NULL &&
		    strcasecmp(p[i].value, "8BITMIME") == 0)
			return 1;
	return 0;
}

/* A recipient address for the queue: printable, no space, no <>, bounded. */
static const char *
message_relay_addr(lua_State *L, int idx)
{
	size_t len;
	const char *a;

	if (lua_type(L, idx) != LUA_TSTRING)
		luaL_error(L, "msg:relay: recipients must be strings");
	a = lua_tolstring(L, idx, &len);
	if (len == 0 || len > MSG_RELAY_ADDR || strchr(a, '@') == NULL)
		luaL_error(L, "msg:relay: bad recipient address");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)a[i];
		if (c <= ' ' || c == 0x7f || c == '<' || c == '>')
			luaL_error(L, "msg:relay: bad recipient address");
	}
	return a;
}

/* A string option of the table at idx (read raw), or NULL; raises unless
 * it is a string of 1..max printable bytes. */
static const char *
message_relay_str(lua_State *L, int idx, const char *key, size_t max)
{
	const char *v;
	size_t len;

	lua_pushstring(L, key);
	if (lua_rawget(L, idx) == LUA_TNIL) {
		lua_pop(L, 1);
		return NULL;
	}
	if (lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "msg:relay: %s must be a string", key);
	v = lua_tolstring(L, -1, &len);
	if (len == 0 || len > max || strlen(v) != len || strpbrk(v, "\r\n") != NULL)
		luaL_error(L, "msg:relay: bad %s", key);
	lua_pop(L, 1); /* still referenced by the table */
	return v;
}

static char *
message_dup(lua_State *L, const char *s)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		luaL_error(L, "msg:relay: out of memory");
	return d;
}

/* Reads msg:relay's options at idx into r (raises on a bad one). */
static void
message_relay_route(lua_State *L, int idx, struct queue_route *r)
{
	static const char *const known[] = { "rcpts", "host", "port", "tls", "auth", "lmtp",
		"socket", NULL };
	const char *host, *socket, *tls, *user = NULL, *pass = NULL;
	lua_Integer port = 0;
	int lmtp = 0;

	/* Unknown keys are mistakes (a "tsl" would silently relay in
	 * plaintext): refuse them. */
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		int ok = 0;
		if (lua_type(L, -2) == LUA_TSTRING)
			for (int i = 0; known[i] != NULL; i++)
				ok |= strcmp(lua_tostring(L, -2), known[i]) == 0;
		if (!ok)
			luaL_error(L, "msg:relay: unknown option %s",
			    lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "(not a name)");
		lua_pop(L, 1);
	}
	host = message_relay_str(L, idx, "host", 253);
	socket = message_relay_str(L, idx, "socket", 107);
	tls = message_relay_str(L, idx, "tls", 16);
	lua_pushliteral(L, "port");
	if (lua_rawget(L, idx) != LUA_TNIL) {
		int isnum;
		port = lua_tointegerx(L, -1, &isnum);
		if (!isnum || port < 1 || port > 65535)
			luaL_error(L, "msg:relay: port must be an integer from 1 to 65535");
	}
	lua_pop(L, 1);
	lua_pushliteral(L, "lmtp");
	if (lua_rawget(L, idx) != LUA_TNIL) {
		if (lua_type(L, -1) != LUA_TBOOLEAN)
			luaL_error(L, "msg:relay: lmtp must be a boolean");
		lmtp = lua_toboolean(L, -1);
	}
	lua_pop(L, 1);
	lua_pushliteral(L, "auth");
	if (lua_rawget(L, idx) != LUA_TNIL) {
		int t = lua_gettop(L);
		if (lua_type(L, t) != LUA_TTABLE)
			luaL_error(L, "msg:relay: auth must be { user = ..., pass = ... }");
		user = message_relay_str(L, t, "user", 255);
		pass = message_relay_str(L, t, "pass", 255);
		if (user == NULL || pass == NULL)
			luaL_error(L, "msg:relay: auth needs user and pass");
	}
	if (host != NULL && socket != NULL)
		luaL_error(L, "msg:relay: give host or socket, not both");
	if (lmtp && host == NULL && socket == NULL)
		luaL_error(L, "msg:relay: lmtp needs a host or a socket");
	if (port != 0 && host == NULL)
		luaL_error(L, "msg:relay: port goes with host");
	r->tls = QUEUE_TLS_MAY;
	if (tls != NULL) {
		if (strcmp(tls, "require") == 0)
			r->tls = QUEUE_TLS_REQUIRE;
		else if (strcmp(tls, "none") == 0)
			r->tls = QUEUE_TLS_NONE;
		else if (strcmp(tls, "may") != 0)
			luaL_error(L, "msg:relay: tls must be \"require\", \"may\" or \"none\"");
	}
	r->port = (int)port;
	r->lmtp = lmtp;
	r->host = message_dup(L, host);
	r->socket = message_dup(L, socket);
	r->auth_user = message_dup(L, user);
	r->auth_pass = message_dup(L, pass);
	lua_pop(L, 1); /* auth */
}

/* A queued recipient's NOTIFY and ORCPT: those of the transaction's
 * recipient i, or (SIZE_MAX: a list given to msg:relay) of the first one
 * with the same address; none for an address the client did not give. */
static void
message_relay_dsn(lua_State *L, const struct smtp_tx *tx, size_t i, struct queue_rcpt *rc)
{
	for (size_t k = 0; i == SIZE_MAX && k < tx->nrcpts; k++)
		if (strcmp(tx->rcpts[k], rc->address) == 0)
			i = k;
	if (i >= tx->nrcpts)
		return;
	rc->notify = tx->rcpt_dsn[i].notify;
	rc->orcpt = message_dup(L, tx->rcpt_dsn[i].orcpt);
}

/* msg:relay([{ rcpts =, host =, port =, tls =, auth =, lmtp =, socket = }]):
 * queues the message for those recipients (all by default) on that route
 * (their MX by default) when the message is accepted: the 250 goes out once
 * every route is on disk, a failure answers 451 and queues nothing. */
static int
message_relay(lua_State *L)
{
	struct smtp_session *s = hook_api_check(L, 1, HOOK_API_MESSAGE);
	struct smtp_tx *tx = s->tx;
	struct queue_entry *e, *grown;
	size_t n;

	if (!lua_isnoneornil(L, 2))
		luaL_checktype(L, 2, LUA_TTABLE);
	if (tx->nrelay == MSG_RELAY_ROUTES)
		return luaL_error(L, "msg:relay: at most %d routes per message", MSG_RELAY_ROUTES);
	if (tx->relay_cap < tx->nrelay + 1) {
		if ((grown = realloc(tx->relay, (tx->nrelay + 1) * sizeof(*grown))) == NULL)
			return luaL_error(L, "msg:relay: out of memory");
		tx->relay = grown;
		tx->relay_cap = tx->nrelay + 1;
		memset(&tx->relay[tx->nrelay], 0, sizeof(*grown));
	}
	/* Built in the spare slot past the routes, counted only once whole:
	 * a raise half-way (caught by pcall or not) queues nothing, and the
	 * transaction frees the slot. */
	e = &tx->relay[tx->nrelay];
	queue_entry_clear(e);
	if (lua_istable(L, 2)) {
		message_relay_route(L, 2, &e->route);
		lua_pushliteral(L, "rcpts");
		lua_rawget(L, 2);
	} else
		lua_pushnil(L);
	n = lua_istable(L, -1) ? (size_t)lua_rawlen(L, -1) : tx->nrcpts;
	if (!lua_isnil(L, -1) && !lua_istable(L, -1))
		return luaL_error(L, "msg:relay: rcpts must be a list of addresses");
	if (n == 0 || n > 10000)
		return luaL_error(L, "msg:relay: no recipients");
	if ((e->rcpts = calloc(n, sizeof(*e->rcpts))) == NULL)
		return luaL_error(L, "msg:relay: out of memory");
	for (size_t i = 0; i < n; i++) {
		const char *a;

		if (lua_istable(L, -1)) {
			lua_rawgeti(L, -1, (lua_Integer)i + 1);
			a = message_relay_addr(L, lua_gettop(L));
		} else {
			lua_pushstring(L, tx->rcpts[i]);
			a = lua_tostring(L, -1);
		}
		e->rcpts[i].address = message_dup(L, a);
		e->nrcpts++;
		message_relay_dsn(L, tx, lua_istable(L, -2) ? SIZE_MAX : i, &e->rcpts[i]);
		lua_pop(L, 1);
	}
	e->dsn_ret = tx->dsn_ret;
	e->envid = message_dup(L, tx->dsn_envid);
	e->sender = message_dup(L, tx->sender);
	e->smtputf8 = tx->smtputf8;
	e->body_8bit = message_body_8bit(tx->params);
	tx->nrelay++;
	return 0;
}

static const luaL_Reg message_methods[] = {
	{ "header", message_header },
	{ "headers", message_headers },
	{ "prepend_header", message_prepend_header },
	{ "remove_forged_auth_results", message_remove_forged_auth_results },
	{ "deliver_maildir", message_deliver_maildir },
	{ "deliver_mbox", message_deliver_mbox },
	{ "print", message_print },
	{ "save", message_save },
	{ "relay", message_relay },
	{ "rcpt_reply", hook_lmtp_rcpt_reply },
	{ "dkim_sign", message_dkim_sign },
	{ "dkim_verify", message_dkim_verify },
	{ NULL, NULL },
};

void
hook_message_open(lua_State *L)
{
	luaL_newmetatable(L, HOOK_API_MESSAGE);
	hook_api_push_ids(L, message_field_names, MF__COUNT);
	luaL_newlib(L, message_methods);
	lua_pushcclosure(L, message_index, 2);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
}
