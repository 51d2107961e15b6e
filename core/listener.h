/* listener.h - listening sockets: bind, accept, and back off on EMFILE.
 * Hands each accepted fd to a callback; knows nothing of the protocol
 * (connection caps answer 421, so they live in smtp_server.c). */
#ifndef LUAMTA_LISTENER_H
#define LUAMTA_LISTENER_H

#include <sys/socket.h>

#include <ev.h>

struct listener; /* opaque */

/* Takes ownership of fd; the callback owns it from then on. */
typedef void listener_cb(int fd, const struct sockaddr *peer, socklen_t len, void *arg);

/* Binds and listens on host:port (numeric IPv4 or IPv6; port 0 picks a
 * free one). Returns the non-blocking socket, or -1 with a message in err.
 * Done once, before any fork: every worker accepts from the same socket. */
int listener_bind(const char *host, int port, char *err, size_t errsz);

/* Binds and listens on a UNIX socket at path with mode 0660 (before any
 * fork, as listener_bind). A socket file already there is removed only
 * when nothing answers on it (a server that died without removing it);
 * one that answers is in use, and an error. The caller removes the file
 * when it is done (listener_unlink_unix). Returns the socket, or -1 with
 * a message in err. */
int listener_bind_unix(const char *path, char *err, size_t errsz);
/* Removes the socket file of a listener_bind_unix() at exit, if it is
 * still a socket. */
void listener_unlink_unix(const char *path);

/* The address a socket is bound to ("127.0.0.1", "::1") and its port
 * (useful after port 0). 0 or -1. */
int listener_sockname(int fd, char *host, size_t hostsz, int *port);

/* A peer's (or a local) address as text ("192.0.2.1", "2001:db8::1";
 * "stdio" for AF_UNSPEC, "local" for anything else) and its port (0 when
 * it has none). */
void listener_addr_str(const struct sockaddr *, char *ip, size_t ipsz, int *port);

/* Starts accepting on a socket from listener_bind(); takes ownership of
 * this process's copy of fd. Returns NULL when out of memory. */
struct listener *listener_new(struct ev_loop *, int fd, listener_cb *, void *arg);
void listener_free(struct listener *); /* closes the socket; NULL is a no-op */

#endif
