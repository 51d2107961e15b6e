/* cosocket_io.c - the data calls of luamta.tcp(): send, receive,
 * receiveuntil's reader and starttls, each a step that tries its work and
 * waits (cosocket_wait) with itself as the continuation until it is done or
 * its deadline passes. The receive buffer is bounded (max_buffer): the
 * script's memory cap does not apply to C allocations. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <ev.h>
#include <lauxlib.h>

#include "cosocket_pool.h"
#include "hook.h"
#include "tls.h"
#include "cosocket_priv.h"

/* Send ---------------------------------------------------------------- */

static int
cos_send_k(lua_State *L, int status, lua_KContext ctx)
{
	struct cosocket *s = cosocket_check(L, 1);
	size_t len, n;
	const char *p = lua_tolstring(L, 2, &len);
	enum tls_status st;
	char err[256];
	ssize_t w;
	int ev;

	(void)status;
	(void)ctx;
	while (s->sent < len) {
		ev = EV_WRITE;
		if (s->c.tls != NULL) {
			st = tls_write(s->c.tls, p + s->sent, len - s->sent, &n);
			if (st == TLS_OK) {
				s->sent += n;
				if (s->sent == len)
					break;
			} else if (st == TLS_WANT_READ)
				ev = EV_READ;
			else if (st != TLS_WANT_WRITE) {
				snprintf(err, sizeof(err), "%s",
				    st == TLS_CLOSED ? "closed" : tls_strerror(s->c.tls));
				cosocket_drop(s);
				return cosocket_fail(L, err);
			}
		} else if ((w = send(s->c.fd, p + s->sent, len - s->sent, MSG_NOSIGNAL)) >= 0) {
			s->sent += (size_t)w;
			continue;
		} else if (errno == EINTR)
			continue;
		else if (errno != EAGAIN && errno != EWOULDBLOCK) {
			cosocket_strerror(errno, err, sizeof(err));
			cosocket_drop(s);
			return cosocket_fail(L, err);
		}
		if (cosocket_expired(s)) {
			s->op = COS_IDLE;
			s->dirty = 1;
			return cosocket_fail(L, "timeout");
		}
		return cosocket_wait(L, s, ev, cos_send_k, 0, "sock:send");
	}
	s->op = COS_IDLE;
	lua_pushinteger(L, (lua_Integer)len);
	return 1;
}

/* sock:send(data): data is a string or an array of strings (and numbers),
 * sent whole before the call returns. */
int
cosocket_send(lua_State *L)
{
	struct cosocket *s = cosocket_check(L, 1);
	luaL_Buffer b;
	lua_Integer i, n;
	int r;

	if (lua_type(L, 2) == LUA_TTABLE) {
		n = (lua_Integer)lua_rawlen(L, 2);
		luaL_buffinit(L, &b);
		for (i = 1; i <= n; i++) {
			int t = lua_rawgeti(L, 2, i);
			if (t != LUA_TSTRING && t != LUA_TNUMBER)
				return luaL_error(L,
				    "bad argument #1 to 'send' (item %d is a %s, not a string)",
				    (int)i, lua_typename(L, t));
			luaL_addvalue(&b);
		}
		luaL_pushresult(&b);
		lua_replace(L, 2);
	} else
		luaL_checklstring(L, 2, NULL);
	lua_settop(L, 2);
	if ((r = cosocket_begin(L, s, "sock:send", COS_SEND, COS_TO_SEND)) != 0)
		return r;
	s->sent = 0;
	return cos_send_k(L, LUA_OK, 0);
}

/* Receive ------------------------------------------------------------- */

/* Reads once into the buffer. COS_WAIT sets *ev to what to wait for;
 * COS_FAIL puts the error in err. */
static enum cos_fill
cos_fill(struct cosocket *s, int *ev, char *err, size_t errsz)
{
	size_t avail = s->rlen - s->roff, n, cap;
	enum tls_status st;
	ssize_t r;
	char *nb;

	if (avail >= s->rmax)
		return COS_TOO_LARGE;
	if (avail == 0)
		s->roff = s->rlen = 0;
	else if (s->roff > 0 && s->rcap - s->rlen < COS_CHUNK) {
		memmove(s->rbuf, s->rbuf + s->roff, avail);
		s->roff = 0;
		s->rlen = avail;
	}
	if (s->rcap - s->rlen < COS_CHUNK) {
		cap = s->rcap < COS_CHUNK ? 2 * COS_CHUNK : 2 * s->rcap;
		if (cap > s->rmax + COS_CHUNK)
			cap = s->rmax + COS_CHUNK;
		if ((nb = realloc(s->rbuf, cap)) == NULL) {
			snprintf(err, errsz, "out of memory");
			return COS_FAIL;
		}
		s->rbuf = nb;
		s->rcap = cap;
	}
	n = s->rcap - s->rlen;
	if (s->c.tls != NULL) {
		st = tls_read(s->c.tls, s->rbuf + s->rlen, n, &n);
		switch (st) {
		case TLS_OK:
			s->rlen += n;
			return COS_GOT;
		case TLS_WANT_READ:
			*ev = EV_READ;
			return COS_WAIT;
		case TLS_WANT_WRITE:
			*ev = EV_WRITE;
			return COS_WAIT;
		case TLS_CLOSED:
			return COS_EOF;
		default:
			snprintf(err, errsz, "%s", tls_strerror(s->c.tls));
			return COS_FAIL;
		}
	}
	for (;;) {
		if ((r = recv(s->c.fd, s->rbuf + s->rlen, n, 0)) > 0) {
			s->rlen += (size_t)r;
			return COS_GOT;
		}
		if (r == 0)
			return COS_EOF;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			*ev = EV_READ;
			return COS_WAIT;
		}
		cosocket_strerror(errno, err, errsz);
		return COS_FAIL;
	}
}

/* Pushes n buffered bytes and consumes them. */
static void
cos_push(lua_State *L, struct cosocket *s, size_t n)
{
	lua_pushlstring(L, s->rbuf != NULL ? s->rbuf + s->roff : "", n);
	s->roff += n;
}

/* Ends a receive that did not get what it wanted: nil, err, and whatever
 * was buffered as the partial data. Timeouts leave the connection open
 * (but never pooled); anything else closes it. */
static int
cos_recv_fail(lua_State *L, struct cosocket *s, enum cos_fill f, const char *err)
{
	lua_pushnil(L);
	if (f == COS_TOO_LARGE) {
		lua_pushliteral(L, "too large");
		cosocket_drop(s);
		return 2;
	}
	lua_pushstring(L, f == COS_WAIT ? "timeout" : f == COS_EOF ? "closed" : err);
	cos_push(L, s, s->rlen - s->roff);
	s->op = COS_IDLE;
	if (f == COS_WAIT)
		s->dirty = 1;
	else
		cosocket_drop(s);
	return 3;
}

/* ctx: the pattern, and for COS_PAT_SIZE the size times 4. */
static int
cos_receive_k(lua_State *L, int status, lua_KContext ctx)
{
	struct cosocket *s = cosocket_check(L, 1);
	enum cos_pattern pat = (enum cos_pattern)(ctx & 3);
	size_t size = (size_t)(ctx >> 2), avail, len;
	enum cos_fill f;
	char err[256], *p, *nl;
	int ev = 0;

	(void)status;
	for (;;) {
		avail = s->rlen - s->roff;
		p = s->rbuf != NULL ? s->rbuf + s->roff : NULL; /* no arithmetic on NULL */
		if (pat == COS_PAT_LINE && avail > s->scan &&
		    (nl = memchr(p + s->scan, '\n', avail - s->scan)) != NULL) {
			len = (size_t)(nl - p);
			lua_pushlstring(L, p, len > 0 && p[len - 1] == '\r' ? len - 1 : len);
			s->roff += len + 1;
			break;
		}
		s->scan = avail;
		if (pat == COS_PAT_SIZE && avail >= size) {
			cos_push(L, s, size);
			break;
		}
		f = cos_fill(s, &ev, err, sizeof(err));
		if (f == COS_GOT)
			continue;
		if (f == COS_EOF && pat == COS_PAT_ALL) {
			cos_push(L, s, avail);
			cosocket_drop(s);
			return 1;
		}
		if (f == COS_WAIT && !cosocket_expired(s))
			return cosocket_wait(L, s, ev, cos_receive_k, ctx, "sock:receive");
		return cos_recv_fail(L, s, f, err);
	}
	s->op = COS_IDLE;
	return 1;
}

/* sock:receive([pattern]): "*l" (the default) a line without its CR LF or
 * LF, "*a" everything until the peer closes, or a number of bytes. */
int
cosocket_receive(lua_State *L)
{
	struct cosocket *s = cosocket_check(L, 1);
	enum cos_pattern pat = COS_PAT_LINE;
	lua_Integer size = 0;
	const char *p;
	int r;

	if (lua_type(L, 2) == LUA_TNUMBER) {
		size = luaL_checkinteger(L, 2);
		luaL_argcheck(L, size >= 0, 2, "size must not be negative");
		pat = COS_PAT_SIZE;
	} else if (!lua_isnoneornil(L, 2)) {
		p = luaL_checkstring(L, 2);
		if (strcmp(p, "*a") == 0 || strcmp(p, "a") == 0)
			pat = COS_PAT_ALL;
		else if (strcmp(p, "*l") != 0 && strcmp(p, "l") != 0)
			return luaL_argerror(L, 2, "pattern must be \"*l\", \"*a\" or a size");
	}
	lua_settop(L, 1);
	if ((r = cosocket_begin(L, s, "sock:receive", COS_RECEIVE, COS_TO_READ)) != 0)
		return r;
	if ((size_t)size > s->rmax) {
		s->op = COS_IDLE;
		return cosocket_fail(L, "too large");
	}
	return cos_receive_k(L, LUA_OK, (lua_KContext)(((size_t)size << 2) | pat));
}

/* The first occurrence of pat in [p, p + len), or NULL (memmem is a GNU
 * extension). */
static char *
cos_find(char *p, size_t len, const char *pat, size_t plen)
{
	char *end = p + len, *q;

	while (plen <= (size_t)(end - p) &&
	    (q = memchr(p, pat[0], (size_t)(end - p) - plen + 1)) != NULL) {
		if (memcmp(q, pat, plen) == 0)
			return q;
		p = q + 1;
	}
	return NULL;
}

/* The iterator of sock:receiveuntil(). Upvalues: the socket, the pattern,
 * inclusive, and whether a chunked read reached the pattern (the next call
 * then returns nil once). ctx: the chunk size, 0 for none. */
static int
cos_reader_k(lua_State *L, int status, lua_KContext ctx)
{
	struct cosocket *s = lua_touserdata(L, lua_upvalueindex(1));
	size_t plen, size = (size_t)ctx, avail, start, pos, safe;
	const char *pat = lua_tolstring(L, lua_upvalueindex(2), &plen);
	int inclusive = lua_toboolean(L, lua_upvalueindex(3)), ev = 0;
	enum cos_fill f;
	char err[256], *p, *hit;

	(void)status;
	for (;;) {
		avail = s->rlen - s->roff;
		p = s->rbuf != NULL ? s->rbuf + s->roff : NULL; /* no arithmetic on NULL */
		start = s->scan >= plen ? s->scan - plen + 1 : 0;
		hit = avail >= plen ? cos_find(p + start, avail - start, pat, plen) : NULL;
		if (hit != NULL) {
			pos = (size_t)(hit - p);
			if (size > 0 && pos > size) {
				cos_push(L, s, size);
				break;
			}
			if (size > 0 && pos == 0 && !inclusive) {
				s->roff += plen;
				lua_pushnil(L);
				break;
			}
			cos_push(L, s, inclusive ? pos + plen : pos);
			if (!inclusive)
				s->roff += plen;
			if (size > 0) {
				lua_pushboolean(L, 1);
				lua_replace(L, lua_upvalueindex(4));
			}
			break;
		}
		s->scan = avail;
		/* Bytes that cannot be the start of the pattern. */
		safe = avail >= plen ? avail - plen + 1 : 0;
		if (size > 0 && safe >= size) {
			cos_push(L, s, size);
			break;
		}
		f = cos_fill(s, &ev, err, sizeof(err));
		if (f == COS_GOT)
			continue;
		if (f == COS_WAIT && !cosocket_expired(s))
			return cosocket_wait(L, s, ev, cos_reader_k, ctx, "sock:receiveuntil");
		return cos_recv_fail(L, s, f, err);
	}
	s->op = COS_IDLE;
	return 1;
}

static int
cos_reader(lua_State *L)
{
	struct cosocket *s = lua_touserdata(L, lua_upvalueindex(1));
	lua_Integer size = luaL_optinteger(L, 1, 0);
	int r;

	luaL_argcheck(L, size >= 0, 1, "size must not be negative");
	lua_settop(L, 0);
	if (lua_toboolean(L, lua_upvalueindex(4))) {
		lua_pushboolean(L, 0);
		lua_replace(L, lua_upvalueindex(4));
		lua_pushnil(L);
		return 1;
	}
	if ((r = cosocket_begin(L, s, "sock:receiveuntil", COS_RECEIVE, COS_TO_READ)) != 0)
		return r;
	if ((size_t)size > s->rmax) {
		s->op = COS_IDLE;
		return cosocket_fail(L, "too large");
	}
	return cos_reader_k(L, LUA_OK, (lua_KContext)size);
}

/* sock:receiveuntil(pattern [, { inclusive = bool }]) -> reader. */
int
cosocket_receiveuntil(lua_State *L)
{
	size_t plen;
	int inclusive = 0;

	cosocket_check(L, 1);
	luaL_checklstring(L, 2, &plen);
	luaL_argcheck(L, plen > 0, 2, "pattern must not be empty");
	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		lua_pushliteral(L, "inclusive");
		lua_rawget(L, 3);
		inclusive = lua_toboolean(L, -1);
		lua_pop(L, 1);
	}
	lua_pushvalue(L, 1);
	lua_pushvalue(L, 2);
	lua_pushboolean(L, inclusive);
	lua_pushboolean(L, 0);
	lua_pushcclosure(L, cos_reader, 4);
	return 1;
}

/* TLS ----------------------------------------------------------------- */

static int
cos_handshake_k(lua_State *L, int status, lua_KContext ctx)
{
	struct cosocket *s = cosocket_check(L, 1);
	enum tls_status st = tls_handshake(s->c.tls);
	char err[320];

	(void)status;
	(void)ctx;
	if (st == TLS_OK) {
		s->op = COS_IDLE;
		lua_pushboolean(L, 1);
		return 1;
	}
	if ((st == TLS_WANT_READ || st == TLS_WANT_WRITE) && !cosocket_expired(s))
		return cosocket_wait(L, s, st == TLS_WANT_READ ? EV_READ : EV_WRITE,
		    cos_handshake_k, 0, "sock:starttls");
	snprintf(err, sizeof(err), "%s",
	    st == TLS_CLOSED    ? "closed" :
		st == TLS_ERROR ? tls_strerror(s->c.tls) :
				  "timeout");
	cosocket_drop(s);
	return cosocket_fail(L, err);
}

static int
cos_same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* sock:starttls{ servername =, verify = true, cafile = }: a TLS client
 * handshake under the connect timeout. */
int
cosocket_starttls(lua_State *L)
{
	struct cosocket *s = cosocket_check(L, 1);
	const char *sni = NULL, *cafile = NULL, *ca;
	struct tls_config *cfg;
	struct in6_addr a6;
	int verify = 1, r;
	char err[320];

	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_pushliteral(L, "servername");
		if (lua_rawget(L, 2) == LUA_TSTRING)
			sni = lua_tostring(L, -1)[0] != '\0' ? lua_tostring(L, -1) : NULL;
		else if (!lua_isnil(L, -1))
			luaL_argerror(L, 2, "servername must be a string");
		lua_pushliteral(L, "verify");
		if (lua_rawget(L, 2) == LUA_TBOOLEAN)
			verify = lua_toboolean(L, -1);
		else if (!lua_isnil(L, -1))
			luaL_argerror(L, 2, "verify must be a boolean");
		lua_pushliteral(L, "cafile");
		if (lua_rawget(L, 2) == LUA_TSTRING)
			cafile = lua_tostring(L, -1);
		else if (!lua_isnil(L, -1))
			luaL_argerror(L, 2, "cafile must be a string");
	}
	if ((r = cosocket_begin(L, s, "sock:starttls", COS_HANDSHAKE, COS_TO_CONNECT)) != 0)
		return r;
	s->op = COS_IDLE;
	/* The name connected to is the name to check, unless it is an
	 * address (mbedTLS matches names only) or a UNIX path. */
	if (sni == NULL && s->host != NULL && strncmp(s->host, "unix:", 5) != 0 &&
	    inet_pton(AF_INET, s->host, &a6) != 1 && inet_pton(AF_INET6, s->host, &a6) != 1 &&
	    s->host[0] != '[')
		sni = s->host;
	ca = verify ? (cafile != NULL ? cafile : COS_CA_BUNDLE) : NULL;
	if (s->c.tls != NULL) {
		/* A pooled connection comes back with its TLS: the same
		 * settings make this a no-op, others cannot be had. */
		if (s->c.reused > 0 && cos_same(sni, s->c.servername) && cos_same(ca, s->c.verify))
			return lua_pushboolean(L, 1), 1;
		return cosocket_fail(L, "TLS already started");
	}
	/* Bytes that came before the handshake cannot be told from bytes
	 * injected by a man in the middle (the STARTTLS injection attacks):
	 * refuse rather than read them as if protected. */
	if (s->rlen > s->roff) {
		cosocket_drop(s);
		return cosocket_fail(L, "unread data in buffer");
	}
	if ((cfg = cosocket_tls_config(ca, err, sizeof(err))) == NULL)
		return cosocket_fail(L, err);
	if ((s->c.tls = tls_new(cfg, s->c.fd)) == NULL)
		return luaL_error(L, "out of memory");
	if ((sni != NULL &&
		((s->c.servername = strdup(sni)) == NULL ||
		    tls_set_hostname(s->c.tls, sni) == -1)) ||
	    (ca != NULL && (s->c.verify = strdup(ca)) == NULL)) {
		cosocket_drop(s);
		return cosocket_fail(L, "bad server name");
	}
	s->op = COS_HANDSHAKE;
	return cos_handshake_k(L, LUA_OK, 0);
}
