/* smtp_server.h - the SMTP service of one process: the sessions it runs,
 * the policy generation new sessions start on, TLS, and the door: accepting
 * connections under the connection caps, --stdio, draining and shutting
 * down. The protocol itself is smtp_session.c's (and its
 * siblings', see smtp_session_int.h). */
#ifndef LUAMTA_SMTP_SERVER_H
#define LUAMTA_SMTP_SERVER_H

#include <stdint.h>
#include <sys/socket.h>

#include <ev.h>

#include "config.h"

struct anvil;
struct proxy_door;
struct script;
struct smtp_session;
struct tls_config;

struct smtp_server {
	struct ev_loop *loop;
	const struct config *cfg;      /* borrowed */
	struct script *script;         /* current generation (own ref), or NULL */
	struct smtp_session *sessions; /* all live sessions */
	int nsessions;
	size_t data_held; /* message bytes the sessions hold in memory (--max-data-memory) */
	/* Where a message goes past SMTP_SPILL_AT bytes (msgstore.h):
	 * SPOOL/incoming, else $TMPDIR or /tmp. */
	char spill_path[4096];
	const char *spill_dirs[3];
	struct smtp_session *reap; /* closed sessions waiting to be freed */
	ev_idle reaper;
	uint64_t ids; /* id generator state */
	int stopping;
	int stdio;                /* --stdio: at EOF, answer what was read before closing */
	struct tls_config *tls;   /* own reference, or NULL: no TLS */
	struct anvil *anvil;      /* per-client counts and rates, or NULL (out of memory) */
	struct proxy_door *proxy; /* connections waiting for their PROXY header, or NULL */
	void (*on_drained)(struct smtp_server *); /* draining: called at 0 sessions */
};

/* Borrows cfg; takes over the caller's reference to script (may be NULL).
 * The caller may then set srv->tls (taking over a reference). */
void smtp_server_init(
    struct smtp_server *, struct ev_loop *, const struct config *, struct script *);
/* A listener_cb: takes ownership of fd and starts a session on it, or
 * answers 421 and closes when a cap is reached: --max-connections for the
 * process, --max-per-ip and --max-conn-rate for the client (an IPv4
 * address or an IPv6 /64; --limit-exempt networks are spared). The
 * per-client counts are this process's: with --workers N, a client may
 * reach N times the limits. */
void smtp_server_accept(int fd, const struct sockaddr *, socklen_t, void *srv);
/* The same for an implicit-TLS listener (RFC 8314): handshake first. */
void smtp_server_accept_tls(int fd, const struct sockaddr *, socklen_t, void *srv);
/* The same for an LMTP listener (--listen-lmtp, RFC 2033): TCP or a UNIX
 * socket, whose clients are "local" (listener_addr_str) and meet no
 * per-client cap (they have no address to count). */
void smtp_server_accept_lmtp(int fd, const struct sockaddr *, socklen_t, void *srv);
/* A PROXY protocol listener (--listen-proxy, --listen-tls-proxy): a
 * connection from outside --proxy-trusted is closed unanswered; otherwise
 * it waits for its header (proxy.h), and then the client the header names
 * meets the caps above and gets a session, as if it had connected. */
void smtp_server_accept_proxy(int fd, const struct sockaddr *, socklen_t, void *srv);
void smtp_server_accept_tls_proxy(int fd, const struct sockaddr *, socklen_t, void *srv);
/* --stdio: one session on rfd/wfd (stdin and stdout, or one socket). */
void smtp_server_stdio(struct smtp_server *, int rfd, int wfd);
/* Makes sc (taking over the caller's reference) the generation new
 * sessions start on; the previous one lives on in its sessions. */
void smtp_server_set_script(struct smtp_server *, struct script *sc);
/* Stops taking sessions; cb runs when the last one has ended. */
void smtp_server_drain(struct smtp_server *, void (*cb)(struct smtp_server *));
/* Answers every session 421 4.3.2 and frees them all, then the script. */
void smtp_server_shutdown(struct smtp_server *);

#endif
