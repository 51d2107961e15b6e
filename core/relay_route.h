/* relay_route.h - where a group of recipients goes: the hosts to try, in
 * order, with their addresses. For the recipients' MX (RFC 5321 5.1): the
 * MX records by preference, equal preferences in random order, each
 * exchange's A and AAAA; no MX: the domain itself (implicit MX); a null MX
 * (RFC 7505): a 556 5.1.10 bounce; a domain that does not exist: 550 5.1.2;
 * a DNS failure: 451 4.4.3 (deferred). For a route with a host: that host
 * (a name is resolved the same way, an address is used as it is). For a
 * UNIX socket: nothing to resolve. All through dns.h, on the loop. */
#ifndef LUAMTA_RELAY_ROUTE_H
#define LUAMTA_RELAY_ROUTE_H

#include <ev.h>

#include "queue.h"
#include "smtp_client.h"

#define RELAY_ROUTE_MAX_MX 10 /* exchanges tried per domain */
#define RELAY_DNS_TIMEOUT  30.0

struct config;

struct relay_route_result {
	int code;         /* 0: hosts are set; else a reply for every recipient */
	const char *text; /* with code: "4.4.3 DNS: servfail" */
	const struct smtp_client_host *hosts;
	size_t nhosts;
	int port;
};

typedef void relay_route_cb(void *arg, const struct relay_route_result *);

struct relay_route;
/* Resolves dest (a domain for an MX route, else the route's host; ignored
 * for a socket). cb is called once from the loop, never from inside this
 * call; the hosts it gets stay valid until relay_route_free(). NULL when
 * out of memory. */
struct relay_route *relay_route_start(struct ev_loop *, const struct config *,
    const struct queue_route *, const char *dest, relay_route_cb *, void *arg);
/* Cancels what is in flight (cb will not be called) and frees. NULL: no-op. */
void relay_route_free(struct relay_route *);

#endif
