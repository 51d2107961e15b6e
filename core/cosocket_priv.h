/* cosocket_priv.h - what cosocket.c (the object, connect, pooling) and
 * cosocket_io.c (send, receive, TLS) share: the socket's struct and the
 * helpers every waiting call goes through. Private to those two files. */
#ifndef LUAMTA_COSOCKET_PRIV_H
#define LUAMTA_COSOCKET_PRIV_H

#include <stddef.h>

#include <sys/socket.h>

#include <ev.h>
#include <lua.h>

#include "cosocket_pool.h"
#include "dns.h"
#include "hook.h"

#define COS_MT          "luamta.tcp"
#define COS_TIMEOUT     10.0       /* seconds, each of connect, send and read */
#define COS_TIMEOUT_MAX 86400.0    /* as luamta.sleep */
#define COS_BUF_MAX     (8u << 20) /* receive buffer bound, bytes */
#define COS_BUF_MIN     1024u
#define COS_BUF_LIMIT   (1u << 30) /* largest max_buffer accepted */
#define COS_CHUNK       16384      /* bytes read at a time */
#define COS_ADDRS_MAX   16         /* addresses tried per connect */
#define COS_POOL_SIZE   30         /* idle connections per key */
#define COS_POOL_IDLE   60.0       /* seconds an idle connection is kept */
#define COS_CA_BUNDLE   "/etc/ssl/certs/ca-certificates.crt" /* Debian's */

enum cos_op {
	COS_IDLE = 0,
	COS_RESOLVE, /* waiting for cosocket_resolved() */
	COS_CONNECT, /* a non-blocking connect in progress on fd */
	COS_SEND,
	COS_RECEIVE,
	COS_HANDSHAKE,
};

enum cos_timeout { COS_TO_CONNECT = 0, COS_TO_SEND, COS_TO_READ };

enum cos_pattern { COS_PAT_LINE = 0, COS_PAT_ALL, COS_PAT_SIZE };

/* What cos_fill() found. */
enum cos_fill { COS_GOT = 0, COS_EOF, COS_WAIT, COS_FAIL, COS_TOO_LARGE };

struct cos_addr {
	struct sockaddr_storage sa;
	socklen_t len;
};

/* The userdata. Everything malloc'ed here is freed by cosocket_drop() and the
 * rest by Lua; the watchers are active only while a run is parked, and
 * that run's thread holds the userdata (an argument or an upvalue of the
 * call that yielded), so it cannot be collected meanwhile. */
/* One of a connect's two lookups (A, AAAA) of a host name. */
struct cos_dnsq {
	struct cosocket *s;
	struct dns_req *req;    /* in flight, or NULL */
	struct dns_answer *ans; /* arrived, waiting for the other */
};

struct cosocket {
	struct cosocket_conn c; /* c.fd >= 0 while connected or connecting */
	int connected;
	struct ev_loop *loop; /* of the last run parked here, or the pool's */
	ev_io io;
	ev_timer timer;
	struct hook_run *run; /* parked in a call on this socket, or NULL */
	enum cos_op op;
	int fired;          /* the deadline timer woke the run */
	int dirty;          /* a call timed out or was cancelled: never pool */
	ev_tstamp deadline; /* of the call in progress */
	double timeout[3];  /* enum cos_timeout */
	char *rbuf;         /* received, not yet returned: [roff, rlen) */
	size_t roff, rlen, rcap, rmax;
	size_t scan; /* bytes of rbuf already searched by this call */
	size_t sent; /* bytes of the data sent by this call */
	char *key;   /* owned: the pool key of the destination */
	char *host;  /* owned: the host as given to connect */
	int port;
	struct cos_addr addrs[COS_ADDRS_MAX];
	int naddrs, iaddr;
	int resolved;            /* cosocket_resolved() has answered */
	struct cos_dnsq dnsq[2]; /* the lookups of a host name: A, AAAA */
	char err[192];           /* the last connect or lookup failure */
};

/* The socket at idx, or a Lua error. */
struct cosocket *cosocket_check(lua_State *L, int idx);
/* strerror(e) with a lower-case first letter ("connection refused"). */
const char *cosocket_strerror(int e, char *buf, size_t len);
/* Lets go of the connection, its buffer and its names (not the
 * settings): for close(), errors, a new connect and the collector. */
void cosocket_drop(struct cosocket *s);
/* The checks every call on a connection starts with: raises where the hook
 * cannot yield; returns 0 and starts op under timeout to, or the number of
 * values of a nil, err it pushed ("socket busy", "closed"). */
int cosocket_begin(lua_State *L, struct cosocket *s, const char *what, enum cos_op op, int to);
/* Parks the running hook until fd is ready for events (0: no fd, only the
 * deadline) or the call's deadline passes, then yields: k(ctx) tries
 * again. hook_park() raises before anything is armed when the hook
 * cannot wait here. */
int cosocket_wait(lua_State *L, struct cosocket *s, int events, lua_KFunction k, lua_KContext ctx,
    const char *what);
/* Whether the call's deadline has passed. */
int cosocket_expired(const struct cosocket *s);
/* Pushes nil, err: 2. */
int cosocket_fail(lua_State *L, const char *err);

/* The calls of cosocket_io.c, for the method table. */
int cosocket_send(lua_State *L);
int cosocket_receive(lua_State *L);
int cosocket_receiveuntil(lua_State *L);
int cosocket_starttls(lua_State *L);

#endif
