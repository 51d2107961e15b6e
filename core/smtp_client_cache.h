/* smtp_client_cache.h - the SMTP client's connections between two
 * transactions, per process (what Postfix's smtp keeps in its connection
 * cache). After a transaction that left its session in step, smtp_client
 * parks the connection here under its request's cache_key (one route: the
 * host or socket, port, TLS, AUTH and LMTP of a host route, or the domain
 * for MX delivery) and the next attempt with the same key takes it instead
 * of connecting. A parked connection is closed (QUIT, then close) when it
 * has been idle for the time its request gave (--connection-cache-time,
 * Postfix's smtp_connection_cache_time_limit: 2 s), when the peer closes
 * it or sends anything, when the cache is full, or at
 * smtp_client_cache_flush() (reload, stop); each close is logged at debug
 * level (smtp_client.cache_close with why=idle, peer, full or flush).
 * Speaks no SMTP beyond that QUIT. */
#ifndef LUAMTA_SMTP_CLIENT_CACHE_H
#define LUAMTA_SMTP_CLIENT_CACHE_H

#include <ev.h>

#include "smtp_client_parse.h" /* struct smtp_caps */
#include "tls.h"

#define SMTPC_CACHE_REUSE_MAX 100 /* transactions per connection (Postfix: no limit by default) */
#define SMTPC_CACHE_AGE_MAX                                                                        \
	300.0              /* seconds from connect: Postfix's smtp_connection_reuse_time_limit */
#define SMTPC_CACHE_MAX 64 /* parked connections per process, all keys together */

/* What a connection carries from one transaction to the next. */
struct smtpc_conn {
	int fd;                /* owned */
	struct tls *tls;       /* owned, or NULL: plaintext */
	struct smtp_caps caps; /* the server's EHLO (LHLO) reply, after TLS when there is TLS */
	char name[256];        /* the host's name (TLS verified it) */
	char addrtxt[128];     /* its address, or "unix:PATH" */
	char desc[300];        /* "name [addr]" for the logs */
	unsigned uses;         /* transactions it carried */
	double born;           /* ev_now() when it connected */
};

/* What a session depends on, for smtp_client_cache_key(). */
struct smtpc_key {
	const char *kind; /* "mx", "host", "unix" */
	const char *dest; /* the domain, host or socket path */
	int port, lmtp;
	const char *tls;                   /* "may", "require", "none" */
	const char *auth_user, *auth_pass; /* or NULL */
	const char *helo;                  /* our EHLO name */
};
/* A malloc'ed key naming every field, each with its length first, so that
 * no two different routes make the same key whatever bytes they hold;
 * NULL when out of memory (the attempt then goes without the cache). */
char *smtp_client_cache_key(const struct smtpc_key *);

/* Whether a connection may carry one more transaction after uses
 * transactions, born at born: SMTPC_CACHE_REUSE_MAX and
 * SMTPC_CACHE_AGE_MAX. */
int smtp_client_cache_reusable(struct ev_loop *, unsigned uses, double born);

/* Parks conn under key for idle seconds at most. The connection is the cache's from then on, even
 * on failure (out of memory: it is closed); key is copied and never
 * logged (it holds the route's credentials). When the cache is full the
 * connection parked longest ago goes first. */
void smtp_client_cache_put(
    struct ev_loop *, const char *key, const struct smtpc_conn *conn, double idle);

/* Moves the connection parked last under key into *out, which the caller
 * owns from then on: 1, or 0 when there is none. */
int smtp_client_cache_take(struct ev_loop *, const char *key, struct smtpc_conn *out);

/* Closes every parked connection (a reload: the next attempts connect
 * afresh; a stop). */
void smtp_client_cache_flush(struct ev_loop *);

#endif
