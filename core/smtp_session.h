/* smtp_session.h - one SMTP session: the state machine, the transaction,
 * the one command table, replies. Policy decisions are delegated to hooks
 * (hook.h); Lua itself is touched only through hook_api.h. The server
 * (smtp_server.c) creates sessions and hands them their socket. */
#ifndef LUAMTA_SMTP_SESSION_H
#define LUAMTA_SMTP_SESSION_H

#include <sys/socket.h>

#include <ev.h>

#include "anvil.h"
#include "smtp_server.h"

struct proxy_hdr;

/* A session that came through a load balancer: its PROXY header, and the
 * address that connected (the balancer's). */
struct smtp_via {
	const struct proxy_hdr *hdr;
	const struct sockaddr *proxy;
};

/* smtp_session_new's mode bits. */
#define SMTP_SESSION_TLS  0x1 /* implicit TLS: the handshake first (RFC 8314) */
#define SMTP_SESSION_LMTP 0x2 /* LMTP (RFC 2033): --listen-lmtp */

/* Starts a session of srv on a socket (fd == wfd) or a pair of descriptors
 * (--stdio over pipes), taking ownership of them; mode is a set of
 * SMTP_SESSION_* bits. The session links itself
 * into srv->sessions and frees itself when it ends (never before the loop
 * runs again, so the caller may still look at it). When counted is not
 * NULL the session owes srv->anvil one anvil_disconnect() for that key
 * when it is freed. px is the PROXY header it came with, or NULL; then
 * peer is the client the header named (or the proxy, for a LOCAL one), and
 * the session's local address is the one the client connected to. Returns
 * the session, or NULL when out of memory (the
 * descriptors are closed and nothing is owed). */
struct smtp_session *smtp_session_new(struct smtp_server *, int fd, int wfd,
    const struct sockaddr *peer, int mode, const struct anvil_key *counted,
    const struct smtp_via *px);
/* Shutdown: a session not already closing is told 421 4.3.2, then freed. */
void smtp_session_abort(struct smtp_session *);
/* srv->reaper's callback: frees the closed sessions once their last reply
 * is out (or their linger is over). */
void smtp_session_on_reap(struct ev_loop *, ev_idle *, int revents);

#endif
