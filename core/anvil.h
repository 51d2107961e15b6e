/* anvil.h - per-client connection counts and connection rates, the way
 * Postfix's anvil server keeps them, but inside one process. A client is an
 * IPv4 address or an IPv6 /64. The caller asks on accept and reports each
 * close; this module holds the counters and decides, and does no I/O, no
 * logging and no timekeeping of its own (the caller passes the time). */
#ifndef LUAMTA_ANVIL_H
#define LUAMTA_ANVIL_H

#include <stddef.h>
#include <sys/socket.h>

/* Soft bound on the entries held. Past it, new clients are no longer rate
 * counted (fail open), but an entry is still made for a client whose
 * connection is accepted, so that its open connections stay counted: those
 * entries are bounded by the number of open connections (--max-connections),
 * and each one goes away when its last connection closes. An entry costs
 * about 64 bytes with malloc's overhead, plus at most 8 bytes of bucket
 * array, so a full table is about 4.5 MiB per process. */
#define ANVIL_ENTRIES_MAX 65536
#define ANVIL_WINDOW      60.0 /* seconds per rate window (per minute, like Postfix's) */
#define ANVIL_KEY_STR_MAX 50   /* INET6_ADDRSTRLEN (46) + "/64", with the NUL */

struct anvil; /* opaque */

/* b[0] is 4 or 6; then the IPv4 address (4 bytes) or the IPv6 /64 prefix
 * (8 bytes) in network order; the rest is zero, so keys compare bytewise. */
struct anvil_key {
	unsigned char b[17];
};

enum anvil_verdict {
	ANVIL_OK = 0,   /* counted as open: the caller owes one anvil_disconnect() */
	ANVIL_TOO_MANY, /* the client already has max_conns connections open */
	ANVIL_TOO_FAST, /* more than max_rate attempts in the current window */
};
/* "ok", "max_per_ip", "max_conn_rate" (named after the options). */
const char *anvil_verdict_str(enum anvil_verdict);

/* An empty table with a fresh random hash seed; NULL when out of memory.
 * Make one per process: a table copied by fork() shares its seed. */
struct anvil *anvil_new(void);
void anvil_free(struct anvil *); /* NULL is a no-op */

/* Fills *key with the client a socket address belongs to: the IPv4 address,
 * the /64 of an IPv6 address, or the IPv4 address inside an IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d). Returns 0, or -1 (key zeroed) for anything
 * else, such as a UNIX socket or NULL (--stdio). */
int anvil_key(const struct sockaddr *, struct anvil_key *);

/* Formats a key for logs into buf: "192.0.2.1" or "2001:db8:1:2::/64"
 * (ANVIL_KEY_STR_MAX bytes always suffice; less truncates), "?" for a key
 * anvil_key() did not make. Returns buf, or "" when bufsz is 0. */
const char *anvil_key_str(const struct anvil_key *, char *buf, size_t bufsz);

/* One new connection from key at time now (seconds, any origin, never going
 * back; a smaller now than an earlier call's counts as that earlier time).
 * When max_rate > 0, every attempt counts toward the rate, refused ones too,
 * so a client that keeps hammering stays refused until it slows down. The
 * window is fixed: it opens at the first attempt after the previous window
 * ended and lasts ANVIL_WINDOW seconds, so a client may fit up to 2 *
 * max_rate attempts in a minute that straddles two windows.
 * Answers, in this order: ANVIL_TOO_MANY when key already has max_conns
 * connections open; ANVIL_TOO_FAST when this attempt is number max_rate + 1
 * or more of the window; else ANVIL_OK, and the connection is counted open.
 * A limit of 0 (or less) is no limit, and with max_rate 0 no rate is kept.
 * Fails open: when out of memory, or when the table holds ANVIL_ENTRIES_MAX
 * entries none of which can be dropped, a new client gets ANVIL_OK and is
 * not rate counted; its connection is still counted open when an entry can
 * be allocated (see ANVIL_ENTRIES_MAX). A connection that could not be
 * counted at all still owes its anvil_disconnect(), which then lowers the
 * count of a later connection from that client, if any: the error is on the
 * permissive side, and never goes below zero. */
enum anvil_verdict anvil_connect(
    struct anvil *, const struct anvil_key *, double now, int max_conns, int max_rate);

/* One connection of key, counted by an ANVIL_OK, closed. A key that is
 * unknown or has no connection open is a no-op (never below zero). */
void anvil_disconnect(struct anvil *, const struct anvil_key *);

/* Connections of key counted open now (for tests and logs). */
int anvil_open(const struct anvil *, const struct anvil_key *);

/* Entries held. Entries with no connection open and no running window are
 * dropped by later calls, a few buckets at a time, so the size follows the
 * live clients; it exceeds ANVIL_ENTRIES_MAX only by entries that have a
 * connection open. */
size_t anvil_size(const struct anvil *);

#endif
