/* dns.h - the worker's resolver: c-ares driven by the libev loop, with a
 * bounded cache of answers by TTL. One channel per process, created on the
 * first query (workers are forked from a master that never asks). It knows
 * nothing of Lua: dns_lua.c is its face for policies; the session and the
 * relay use it directly. */
#ifndef LUAMTA_DNS_H
#define LUAMTA_DNS_H

#include <ev.h>

#include "dns_msg.h"

#define DNS_CACHE_MAX   4096 /* answers kept per worker */
#define DNS_TRY_TIMEOUT 2.0  /* seconds c-ares waits for a server before the next */
#define DNS_TRIES       3    /* rounds over the servers */
#define DNS_TIMEOUT_MAX 3600 /* the longest timeout a query may ask for */

struct config;
struct dns_req; /* opaque */

/* ans is borrowed for the call: ans->err, and the records when DNS_OK. */
typedef void dns_cb(void *arg, const struct dns_answer *ans);

/* The servers to ask: cfg's --resolver list, or /etc/resolv.conf's when
 * it is empty. Called when a serving process starts; a channel already
 * made is dropped (with its pending queries: call it before any). */
void dns_configure(const struct config *);

/* Asks for the records of qtype (DNS_T_*) of name, from the cache or the
 * servers. cb is called exactly once from the loop, never before this
 * returns: with the answer, or DNS_TIMEOUT after timeout seconds (at most
 * DNS_TIMEOUT_MAX). A name that cannot exist (dns_name_ok) is
 * DNS_NXDOMAIN without a query. Returns NULL only when out of memory. */
struct dns_req *dns_query(
    struct ev_loop *, const char *name, int qtype, double timeout, dns_cb *, void *arg);
/* Forgets the request: cb will never be called. Only before cb ran; safe
 * from any callback, including another request's. */
void dns_cancel(struct dns_req *);

/* Frees the channel, the cache and every request (their callbacks are not
 * called). For a process that is done serving. */
void dns_shutdown(void);

#endif
