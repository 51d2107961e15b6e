/* proxy.h - the wait for a PROXY protocol header on connections accepted
 * from a load balancer (--listen-proxy, --listen-tls-proxy): nothing is
 * sent until the header is read, and a header that is malformed, too long
 * or too slow closes the connection (logged once). The header is consumed
 * exactly, so the next byte read is the client's (or its TLS ClientHello).
 * Knows nothing of SMTP: a connection whose header is in goes to the
 * callback, which owns it from then on. Who may send a header is the
 * caller's decision. */
#ifndef LUAMTA_PROXY_H
#define LUAMTA_PROXY_H

#include <sys/socket.h>

#include <ev.h>

#include "proxy_parse.h"

struct proxy_door; /* opaque */

/* fd and its ownership pass to the callback; via is the address that
 * connected (the proxy), h the header it sent; tag is proxy_door_add's. */
typedef void proxy_door_cb(
    void *arg, int fd, const struct sockaddr *via, const struct proxy_hdr *h, int tag);

/* A door for one process: headers must arrive within timeout seconds; at
 * most max connections wait at once (more are closed). NULL when out of
 * memory. */
struct proxy_door *proxy_door_new(
    struct ev_loop *, double timeout, int max, proxy_door_cb *, void *arg);
/* Takes ownership of fd, a fresh connection from peer, and waits for its
 * header. */
void proxy_door_add(struct proxy_door *, int fd, const struct sockaddr *peer, int tag);
/* Connections waiting now. */
int proxy_door_waiting(const struct proxy_door *);
/* Closes every waiting connection and frees the door; NULL is a no-op. */
void proxy_door_free(struct proxy_door *);

#endif
