/* listener.h - listening sockets: bind, accept, and back off on EMFILE.
 * Hands each accepted fd to a callback; knows nothing of the protocol
 * (connection caps answer 421, so they live in smtp_session.c). */
#ifndef LUAMTA_LISTENER_H
#define LUAMTA_LISTENER_H

#include <sys/socket.h>

#include <ev.h>

struct listener; /* opaque */

/* Takes ownership of fd; the callback owns it from then on. */
typedef void listener_cb(int fd, const struct sockaddr *peer, socklen_t len, void *arg);

/* Binds host:port (numeric IPv4 or IPv6), listens and starts accepting.
 * Returns NULL with a message in err on failure. */
struct listener *listener_new(struct ev_loop *, const char *host, int port, listener_cb *,
    void *arg, char *err, size_t errsz);
void listener_free(struct listener *); /* closes the socket; NULL is a no-op */

/* The bound address ("127.0.0.1", "::1") and port (useful after port 0). */
const char *listener_host(const struct listener *);
int listener_port(const struct listener *);

#endif
