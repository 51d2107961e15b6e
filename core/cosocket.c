/* cosocket.c - luamta.tcp(): the socket object policies see, connect and
 * the name lookup, settings, pooling and closing. Every call that may
 * wait tries its work first, and when the socket is not ready parks the
 * hook (hook_park) on one ev_io and one deadline timer, then yields with a
 * continuation that tries again once woken. So results are only ever
 * pushed by the call itself, inside Lua, where the memory cap holds; the
 * watchers' callbacks just wake the run. Sending, receiving and TLS are in
 * cosocket_io.c; pooled connections and TLS configs in cosocket_pool.c. */
#include "cosocket.h"

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

static int cos_connect_k(lua_State *, int, lua_KContext);

/* "Connection refused" as OpenResty and LuaSocket say it. */
const char *
cosocket_strerror(int e, char *buf, size_t len)
{
	snprintf(buf, len, "%s", strerror(e));
	if (buf[0] >= 'A' && buf[0] <= 'Z')
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

struct cosocket *
cosocket_check(lua_State *L, int idx)
{
	return luaL_checkudata(L, idx, COS_MT);
}

static void
cos_stop(struct cosocket *s)
{
	if (s->loop == NULL)
		return;
	ev_io_stop(s->loop, &s->io);
	ev_timer_stop(s->loop, &s->timer);
}

/* Lets go of the connection (not of the settings): for close(), errors,
 * a new connect and the collector. */
void
cosocket_drop(struct cosocket *s)
{
	cos_stop(s);
	cosocket_conn_close(&s->c);
	free(s->rbuf);
	free(s->key);
	free(s->host);
	s->rbuf = s->key = s->host = NULL;
	s->roff = s->rlen = s->rcap = 0;
	s->connected = s->dirty = 0;
	s->op = COS_IDLE;
}

/* The name lookup: the one place a host name becomes addresses, through
 * the worker's resolver (dns.h: cached, never blocking). A and AAAA are
 * asked at once; the connect tries the IPv4 addresses first, then the IPv6
 * ones, each in the order of its answer. Called with the hook parked
 * (s->loop is the run's loop), before the deadline timer is armed, which
 * then covers the lookup too. */
static void cos_on_dns(void *arg, const struct dns_answer *ans);
static void cosocket_resolve_cancel(struct cosocket *s);

static int
cosocket_resolve_start(struct cosocket *s, const char *host, char *err, size_t errsz)
{
	static const int types[2] = { DNS_T_A, DNS_T_AAAA };
	double left = s->deadline - ev_time();

	for (int i = 0; i < 2; i++) {
		s->dnsq[i].s = s;
		s->dnsq[i].ans = NULL;
		s->dnsq[i].req = dns_query(
		    s->loop, host, types[i], left > 0 ? left : 0.001, cos_on_dns, &s->dnsq[i]);
		if (s->dnsq[i].req == NULL) {
			cosocket_resolve_cancel(s);
			snprintf(err, errsz, "cannot resolve %s: out of memory", host);
			return -1;
		}
	}
	return 0;
}

/* The run was cancelled, or the deadline passed, while a lookup was in
 * flight: cosocket_resolved() must never be called for s now. */
static void
cosocket_resolve_cancel(struct cosocket *s)
{
	for (int i = 0; i < 2; i++) {
		if (s->dnsq[i].req != NULL)
			dns_cancel(s->dnsq[i].req);
		s->dnsq[i].req = NULL;
		dns_answer_free(s->dnsq[i].ans);
		s->dnsq[i].ans = NULL;
	}
}

/* One of the two answers; once both are in, the addresses go to
 * cosocket_resolved(). The error reported is A's, unless A had none. */
static void
cos_on_dns(void *arg, const struct dns_answer *ans)
{
	struct cos_dnsq *q = arg;
	struct cosocket *s = q->s;
	const char *addrs[COS_ADDRS_MAX];
	const char *err = NULL;
	size_t n = 0;

	q->req = NULL;
	if ((q->ans = dns_answer_dup(ans)) == NULL)
		q->ans = dns_answer_new(DNS_SERVFAIL); /* out of memory: no address */
	if (s->dnsq[0].req != NULL || s->dnsq[1].req != NULL)
		return;
	for (int i = 0; i < 2; i++) {
		const struct dns_answer *a = s->dnsq[i].ans;

		if (a == NULL)
			continue;
		if (a->err != DNS_OK && err == NULL)
			err = dns_err_str(a->err);
		for (size_t j = 0; a->err == DNS_OK && j < a->nrr && n < COS_ADDRS_MAX; j++)
			addrs[n++] = a->rr[j].data;
	}
	/* cosocket_resolved() copies the addresses; it wakes the run, after
	 * which s may be gone: free the answers first, from copies. */
	{
		struct dns_answer *keep[2] = { s->dnsq[0].ans, s->dnsq[1].ans };

		s->dnsq[0].ans = s->dnsq[1].ans = NULL;
		cosocket_resolved(s, addrs, n, err);
		dns_answer_free(keep[0]);
		dns_answer_free(keep[1]);
	}
}

/* Adds an address as text ("192.0.2.1", "::1", "[::1]") with s->port.
 * 0, or -1 if it is not an IP literal or the list is full. */
static int
cos_add_address(struct cosocket *s, const char *text)
{
	struct cos_addr *a;
	struct sockaddr_in *sin;
	struct sockaddr_in6 *sin6;
	char buf[INET6_ADDRSTRLEN + 2];
	size_t len = strlen(text);

	if (s->naddrs == COS_ADDRS_MAX)
		return -1;
	a = &s->addrs[s->naddrs];
	memset(a, 0, sizeof(*a));
	sin = (struct sockaddr_in *)&a->sa;
	sin6 = (struct sockaddr_in6 *)&a->sa;
	if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)s->port);
		a->len = sizeof(*sin);
	} else {
		if (len >= 2 && text[0] == '[' && text[len - 1] == ']' && len - 2 < sizeof(buf)) {
			memcpy(buf, text + 1, len - 2);
			buf[len - 2] = '\0';
			text = buf;
		}
		if (inet_pton(AF_INET6, text, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)s->port);
		a->len = sizeof(*sin6);
	}
	s->naddrs++;
	return 0;
}

/* Watchers ------------------------------------------------------------- */

static void
cos_wake(struct cosocket *s, int fired)
{
	struct hook_run *run = s->run;

	cos_stop(s);
	s->run = NULL;
	s->fired = fired;
	/* Runs Lua, which may drop the socket and collect it: s is not
	 * touched after this. */
	hook_wake(run, 0);
}

static void
cos_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	cos_wake(w->data, 0);
}

static void
cos_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	cos_wake(w->data, 1);
}

/* The run ends while parked (its session closed): forget it. The
 * connection stays with the userdata, in a state no one knows, so it will
 * not be pooled. */
static void
cos_cancel(void *arg)
{
	struct cosocket *s = arg;

	cos_stop(s);
	s->run = NULL;
	if (s->op == COS_RESOLVE)
		cosocket_resolve_cancel(s);
	s->op = COS_IDLE;
	s->dirty = 1;
}

void
cosocket_resolved(void *sock, const char *const *addrs, size_t naddrs, const char *err)
{
	struct cosocket *s = sock;
	size_t i;

	if (s->op != COS_RESOLVE || s->run == NULL || s->resolved)
		return;
	for (i = 0; i < naddrs; i++)
		(void)cos_add_address(s, addrs[i]);
	if (s->naddrs == 0)
		snprintf(s->err, sizeof(s->err), "cannot resolve %s: %s", s->host,
		    err != NULL ? err : "no address");
	s->resolved = 1;
	cos_wake(s, 0);
}

/* hook_park() for s: raises, with nothing armed, where the hook cannot
 * wait. */
static void
cos_park(lua_State *L, struct cosocket *s, const char *what)
{
	struct hook_run *run = hook_park(L, what, cos_cancel, s);

	s->loop = hook_run_loop(run);
	s->run = run;
	s->fired = 0;
}

/* Arms the deadline timer and, with events, the fd's watcher. */
static void
cos_arm(struct cosocket *s, int events)
{
	ev_tstamp left = s->deadline - ev_time();

	ev_timer_set(&s->timer, left > 0 ? left : 0, 0);
	ev_timer_start(s->loop, &s->timer);
	if (events != 0) {
		ev_io_set(&s->io, s->c.fd, events);
		ev_io_start(s->loop, &s->io);
	}
}

int
cosocket_wait(lua_State *L, struct cosocket *s, int events, lua_KFunction k, lua_KContext ctx,
    const char *what)
{
	cos_park(L, s, what);
	cos_arm(s, events);
	return lua_yieldk(L, 0, ctx, k);
}

int
cosocket_expired(const struct cosocket *s)
{
	return s->fired || ev_time() >= s->deadline;
}

/* Raised, not returned: a hook that cannot yield here cannot use the
 * socket at all, whether or not this particular call would have waited. */
static void
cos_yieldable(lua_State *L, const char *what)
{
	if (!lua_isyieldable(L))
		luaL_error(L,
		    "%s cannot wait here (inside a metamethod or a callback "
		    "called from C)",
		    what);
}

int
cosocket_fail(lua_State *L, const char *err)
{
	lua_pushnil(L);
	lua_pushstring(L, err);
	return 2;
}

/* Common entry checks of a call that uses the connection: 0 to go on, or
 * the number of values of a nil, err already pushed. */
int
cosocket_begin(lua_State *L, struct cosocket *s, const char *what, enum cos_op op, int to)
{
	cos_yieldable(L, what);
	if (s->run != NULL)
		return cosocket_fail(L, "socket busy");
	if (!s->connected)
		return cosocket_fail(L, "closed");
	s->op = op;
	s->fired = 0;
	s->scan = 0;
	s->deadline = ev_time() + s->timeout[to];
	return 0;
}

/* Connect ------------------------------------------------------------- */

/* sock:connect(host, port [, opts]) or sock:connect("unix:/path" [, opts]);
 * opts.servername: take a pooled connection that did TLS with that name. */
static int
sock_connect(lua_State *L)
{
	struct cosocket *s = cosocket_check(L, 1);
	const char *host = luaL_checkstring(L, 2), *sni = NULL;
	struct sockaddr_un *un;
	lua_Integer port = 0;
	int unix_ = strncmp(host, "unix:", 5) == 0, opts = unix_ ? 3 : 4;
	size_t plen;
	char key[600];

	if (!unix_) {
		port = luaL_checkinteger(L, 3);
		luaL_argcheck(L, port > 0 && port < 65536, 3, "port must be from 1 to 65535");
	}
	if (!lua_isnoneornil(L, opts)) {
		luaL_checktype(L, opts, LUA_TTABLE);
		lua_pushliteral(L, "servername");
		/* A TLS connection made without a name is pooled under "". */
		if (lua_rawget(L, opts) == LUA_TSTRING)
			sni = lua_tostring(L, -1); /* stays on the stack */
		else if (!lua_isnil(L, -1))
			luaL_argerror(L, opts, "servername must be a string");
	}
	cos_yieldable(L, "sock:connect");
	if (s->run != NULL)
		return cosocket_fail(L, "socket busy");
	if (strlen(host) > 255 || (sni != NULL && strlen(sni) > 255))
		return cosocket_fail(L, "host name too long");
	cosocket_drop(s);
	if (unix_)
		snprintf(key, sizeof(key), "%s", host);
	else
		snprintf(key, sizeof(key),
		    strchr(host, ':') != NULL && host[0] != '[' ? "[%s]:%d" : "%s:%d", host,
		    (int)port);
	plen = strlen(key);
	if (sni != NULL)
		snprintf(key + plen, sizeof(key) - plen, "|%s", sni);
	if (cosocket_pool_take(key, &s->c) == 0) {
		s->c.reused++;
		s->loop = s->c.loop;
		key[plen] = '\0';
		if ((s->key = strdup(key)) == NULL || (s->host = strdup(host)) == NULL) {
			cosocket_drop(s);
			return luaL_error(L, "out of memory");
		}
		s->connected = 1;
		lua_pushboolean(L, 1);
		return 1;
	}
	key[plen] = '\0';
	if ((s->key = strdup(key)) == NULL || (s->host = strdup(host)) == NULL) {
		cosocket_drop(s);
		return luaL_error(L, "out of memory");
	}
	s->port = (int)port;
	s->naddrs = s->iaddr = s->resolved = 0;
	s->fired = 0;
	s->err[0] = '\0';
	s->deadline = ev_time() + s->timeout[COS_TO_CONNECT];
	if (unix_) {
		un = (struct sockaddr_un *)&s->addrs[0].sa;
		memset(&s->addrs[0], 0, sizeof(s->addrs[0]));
		if (strlen(host + 5) == 0 || strlen(host + 5) >= sizeof(un->sun_path))
			return cosocket_fail(L, "bad unix socket path");
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, host + 5, strlen(host + 5) + 1);
		s->addrs[0].len = sizeof(*un);
		s->naddrs = 1;
	} else if (cos_add_address(s, host) == -1) {
		/* Parked first: a lookup must never be in flight for a
		 * call that raised. */
		s->op = COS_RESOLVE;
		cos_park(L, s, "sock:connect");
		if (cosocket_resolve_start(s, host, s->err, sizeof(s->err)) == -1) {
			/* Answered on the next turn of the loop, as a lookup
			 * that failed would be. */
			s->resolved = 1;
			s->deadline = ev_time();
		}
		cos_arm(s, 0);
		return lua_yieldk(L, 0, 0, cos_connect_k);
	}
	s->op = COS_CONNECT;
	return cos_connect_k(L, LUA_OK, 0);
}

static int
cos_connect_fail(lua_State *L, struct cosocket *s, const char *err)
{
	char msg[sizeof(s->err)];

	snprintf(msg, sizeof(msg), "%s", err);
	cosocket_drop(s);
	return cosocket_fail(L, msg);
}

/* Tries the addresses in turn until one connects; the deadline covers the
 * lookup and every attempt. */
static int
cos_connect_k(lua_State *L, int status, lua_KContext ctx)
{
	struct cosocket *s = cosocket_check(L, 1);
	struct cos_addr *a;
	socklen_t elen = sizeof(int);
	int e = 0, one = 1, fd;

	(void)status;
	(void)ctx;
	if (s->op == COS_RESOLVE) {
		if (!s->resolved) {
			cosocket_resolve_cancel(s);
			return cos_connect_fail(L, s, "timeout");
		}
		if (s->naddrs == 0)
			return cos_connect_fail(L, s, s->err);
		s->op = COS_CONNECT;
		s->c.fd = -1;
	}
	for (;;) {
		if (s->c.fd >= 0) {
			/* Woken on an attempt in progress. */
			if (s->fired)
				return cos_connect_fail(L, s, "timeout");
			if (getsockopt(s->c.fd, SOL_SOCKET, SO_ERROR, &e, &elen) == -1)
				e = errno;
			if (e == 0)
				break;
			cosocket_strerror(e, s->err, sizeof(s->err));
			close(s->c.fd);
			s->c.fd = -1;
			s->iaddr++;
		}
		if (s->iaddr >= s->naddrs)
			return cos_connect_fail(L, s, s->err[0] ? s->err : "no address");
		if (cosocket_expired(s))
			return cos_connect_fail(L, s, "timeout");
		a = &s->addrs[s->iaddr];
		fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd == -1) {
			cosocket_strerror(errno, s->err, sizeof(s->err));
			s->iaddr++;
			continue;
		}
		if (connect(fd, (struct sockaddr *)&a->sa, a->len) == 0 || errno == EINPROGRESS) {
			/* Even a connect that succeeded at once (a UNIX socket)
			 * waits for writability, which is immediate: so every
			 * fresh connect parks once, and the socket learns its
			 * loop. */
			s->c.fd = fd;
			return cosocket_wait(L, s, EV_WRITE, cos_connect_k, 0, "sock:connect");
		}
		cosocket_strerror(errno, s->err, sizeof(s->err));
		close(fd);
		s->iaddr++;
	}
	if (s->addrs[s->iaddr].sa.ss_family != AF_UNIX)
		(void)setsockopt(s->c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->connected = 1;
	s->c.reused = 0;
	s->op = COS_IDLE;
	lua_pushboolean(L, 1);
	return 1;
}

/* Settings, pooling, closing ----------------------------------------- */

static double
cos_checktimeout(lua_State *L, int idx, double dflt)
{
	double t;

	if (lua_isnoneornil(L, idx))
		return dflt;
	t = luaL_checknumber(L, idx);
	luaL_argcheck(L, t > 0 && t <= COS_TIMEOUT_MAX, idx, "seconds must be from 0 to 86400");
	return t;
}

/* sock:settimeouts(connect, send, read): seconds; nil keeps one. */
static int
sock_settimeouts(lua_State *L)
{
	struct cosocket *s = cosocket_check(L, 1);
	double t[3];
	int i;

	for (i = 0; i < 3; i++)
		t[i] = cos_checktimeout(L, i + 2, s->timeout[i]);
	memcpy(s->timeout, t, sizeof(t));
	return 0;
}

static int
sock_settimeout(lua_State *L)
{
	struct cosocket *s = cosocket_check(L, 1);
	double t;

	t = luaL_checknumber(L, 2);
	luaL_argcheck(L, t > 0 && t <= COS_TIMEOUT_MAX, 2, "seconds must be from 0 to 86400");
	s->timeout[0] = s->timeout[1] = s->timeout[2] = t;
	return 0;
}

/* sock:setkeepalive([idle [, size]]): hands the connection to the pool;
 * the socket is closed after it, whatever the outcome. */
static int
sock_setkeepalive(lua_State *L)
{
	struct cosocket *s = cosocket_check(L, 1);
	double idle = COS_POOL_IDLE;
	lua_Integer size = luaL_optinteger(L, 3, COS_POOL_SIZE);
	char key[600], probe;
	const char *why = NULL;
	ssize_t n;

	if (!lua_isnoneornil(L, 2)) {
		idle = luaL_checknumber(L, 2);
		luaL_argcheck(
		    L, idle >= 0 && idle <= COS_TIMEOUT_MAX, 2, "seconds must be from 0 to 86400");
	}
	luaL_argcheck(L, size >= 1 && size <= 100000, 3, "pool size must be from 1 to 100000");
	if (s->run != NULL)
		return cosocket_fail(L, "socket busy");
	if (!s->connected)
		return cosocket_fail(L, "closed");
	if (s->dirty)
		why = "connection in an unknown state (a call timed out or was cancelled)";
	else if (s->rlen > s->roff || (s->c.tls != NULL && tls_pending(s->c.tls) > 0))
		why = "unread data in buffer";
	else if ((n = recv(s->c.fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT)) == 0)
		why = "closed";
	else if (n > 0)
		why = "unread data in buffer";
	else if (errno != EAGAIN && errno != EWOULDBLOCK)
		why = "closed";
	else if (s->loop == NULL)
		why = "closed"; /* never parked: cannot happen, see cos_connect_k */
	if (why != NULL) {
		cosocket_drop(s);
		return cosocket_fail(L, why);
	}
	/* TLS connections apart from plaintext ones, by server name. */
	snprintf(key, sizeof(key), "%s%s%s", s->key, s->c.tls != NULL ? "|" : "",
	    s->c.servername != NULL ? s->c.servername : "");
	s->c.loop = s->loop;
	if (cosocket_pool_put(key, &s->c, idle, (int)size) == -1) {
		cosocket_drop(s);
		return cosocket_fail(L, "out of memory");
	}
	cosocket_drop(s); /* the rest of it: buffer, names */
	lua_pushboolean(L, 1);
	return 1;
}

static int
sock_getreusedtimes(lua_State *L)
{
	struct cosocket *s = cosocket_check(L, 1);

	if (!s->connected)
		return cosocket_fail(L, "closed");
	lua_pushinteger(L, s->c.reused);
	return 1;
}

static int
sock_close(lua_State *L)
{
	struct cosocket *s = cosocket_check(L, 1);

	if (s->run != NULL)
		return cosocket_fail(L, "socket busy");
	if (s->c.fd < 0)
		return cosocket_fail(L, "closed");
	cosocket_drop(s);
	lua_pushboolean(L, 1);
	return 1;
}

/* __gc and __close. A parked call owns the socket until it returns (only
 * __close can see one: another session closing a shared socket's scope). */
static int
sock_gc(lua_State *L)
{
	struct cosocket *s = cosocket_check(L, 1);

	if (s->run == NULL)
		cosocket_drop(s);
	return 0;
}

static int
sock_tostring(lua_State *L)
{
	struct cosocket *s = cosocket_check(L, 1);

	lua_pushfstring(L, "luamta.tcp (%s%s%s)", s->connected ? "connected to " : "closed",
	    s->connected && s->key != NULL ? s->key : "", s->c.tls != NULL ? ", TLS" : "");
	return 1;
}

/* luamta.tcp([{ max_buffer = bytes }]) */
static int
api_tcp(lua_State *L)
{
	struct cosocket *s;
	lua_Integer max = COS_BUF_MAX;

	if (!lua_isnoneornil(L, 1)) {
		luaL_checktype(L, 1, LUA_TTABLE);
		lua_pushliteral(L, "max_buffer");
		if (lua_rawget(L, 1) != LUA_TNIL) {
			max = luaL_checkinteger(L, -1);
			luaL_argcheck(L, max >= COS_BUF_MIN && max <= COS_BUF_LIMIT, 1,
			    "max_buffer must be from 1024 to 1073741824 bytes");
		}
	}
	s = lua_newuserdatauv(L, sizeof(*s), 0);
	memset(s, 0, sizeof(*s));
	s->c.fd = -1;
	s->rmax = (size_t)max;
	s->timeout[0] = s->timeout[1] = s->timeout[2] = COS_TIMEOUT;
	ev_init(&s->io, cos_on_io);
	ev_init(&s->timer, cos_on_timer);
	s->io.data = s->timer.data = s;
	luaL_setmetatable(L, COS_MT);
	return 1;
}

static const luaL_Reg cos_methods[] = {
	{ "connect", sock_connect },
	{ "send", cosocket_send },
	{ "receive", cosocket_receive },
	{ "receiveuntil", cosocket_receiveuntil },
	{ "starttls", cosocket_starttls },
	{ "settimeout", sock_settimeout },
	{ "settimeouts", sock_settimeouts },
	{ "setkeepalive", sock_setkeepalive },
	{ "getreusedtimes", sock_getreusedtimes },
	{ "close", sock_close },
	{ NULL, NULL },
};

void
cosocket_lua_open(lua_State *L)
{
	luaL_newmetatable(L, COS_MT);
	luaL_newlib(L, cos_methods);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, sock_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, sock_gc);
	lua_setfield(L, -2, "__close");
	lua_pushcfunction(L, sock_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushliteral(L, "luamta.tcp");
	lua_setfield(L, -2, "__name");
	lua_pop(L, 1);
	lua_pushcfunction(L, api_tcp);
	lua_setfield(L, -2, "tcp");
}

void
cosocket_shutdown(void)
{
	cosocket_pool_shutdown();
}
