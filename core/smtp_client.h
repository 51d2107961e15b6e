/* smtp_client.h - one delivery attempt of one message to one destination
 * over SMTP or LMTP, on the libev loop: the hosts are tried in the order
 * given (each host's addresses in turn), a connection failure, a 4xx or
 * 5xx greeting or a 421 moves on to the next address (smtp_client.c's top
 * comment has every rule), and the first host that holds a
 * whole transaction decides every recipient's result. It knows nothing of
 * the queue or of DNS: the caller resolves names (MX, A/AAAA) first and
 * turns the results into queue state. With a cache key the connection
 * outlives the attempt (smtp_client_cache.h). */
#ifndef LUAMTA_SMTP_CLIENT_H
#define LUAMTA_SMTP_CLIENT_H

#include <stddef.h>
#include <sys/socket.h>

#include <ev.h>

#include "queue.h" /* enum queue_tls */

/* One host to try: its name (for TLS SNI and verification, and the logs)
 * and its addresses as text ("192.0.2.1", "2001:db8::1"). */
struct smtp_client_host {
	const char *name;
	const char *const *addrs;
	size_t naddrs;
};

struct smtp_client_req {
	const struct smtp_client_host *hosts; /* in order; or none with unix_path */
	size_t nhosts;
	int port;
	const char *unix_path; /* a UNIX socket instead of hosts, or NULL */
	int lmtp;              /* LHLO, and one reply per recipient after the dot */
	const char *helo;      /* our name for EHLO/LHLO */
	enum queue_tls tls;
	const char *auth_user, *auth_pass; /* AUTH PLAIN (after TLS), or NULL */
	const char *ca_file;               /* CAs for REQUIRE (PEM); NULL: the system bundle */
	const char *sender;                /* "" for the null sender */
	const char *const *rcpts;
	size_t nrcpts;
	/* The message as accepted (CRLF lines, not dot-stuffed): msg, or
	 * when that is NULL the file msgfd (read a block at a time with
	 * pread from offset msgbase, so a queued message is never whole in
	 * memory). */
	const char *msg;
	int msgfd;
	size_t msgbase;
	size_t msglen;
	int body_8bit;  /* MAIL gets BODY=8BITMIME (when offered) */
	int smtputf8;   /* needs SMTPUTF8: a server without it gets nothing (5.6.7) */
	const char *id; /* the queue id, for the logs */
	/* RFC 3461's parameters, passed on when the server offers DSN:
	 * MAIL's RET (enum dsn_ret) and ENVID (decoded, or NULL), and each
	 * recipient's NOTIFY and ORCPT, those of rcpts[i] in
	 * dsn_rcpts[dsn_idx[i]] (dsn_rcpts NULL: none). */
	int dsn_ret;
	const char *envid;
	const struct queue_rcpt *dsn_rcpts;
	const size_t *dsn_idx;
	/* The route as a key of smtp_client_cache.h: a connection parked
	 * under it is taken instead of connecting, and this attempt's
	 * connection is parked under it when its transaction ends in step.
	 * It must name everything a session depends on (host or socket,
	 * port, TLS, AUTH with its password, LMTP, our name). NULL: one
	 * connection for this attempt, QUIT at the end. */
	const char *cache_key;
	double cache_idle; /* seconds a parked connection waits (> 0 with a key) */
	/* Timeouts (RFC 5321 4.5.3.2), seconds; 0: the RFC's default
	 * (connect 30, greeting 300, MAIL/RCPT 300, DATA 120, a block of data
	 * 180, the final dot 600). Tests shorten them. */
	double timeout_connect, timeout_command, timeout_data;
};

/* The outcome: for every recipient a reply (code 2xx delivered, 4xx
 * deferred, 5xx bounced), which is the host's reply to that recipient, or
 * to the whole transaction when it failed before or after RCPT, or one the
 * client made up for a failure of its own (no host answered: 4.4.1; TLS
 * required and refused: 4.7.5 etc.; the message larger than the SIZE the
 * server allows: 552 5.3.4; SMTPUTF8 needed and not offered: 553 5.6.7). */
struct smtp_client_rcpt_result {
	int code;
	char *text; /* owned: the reply's text as one line ("5.1.1 No such user"), as in a DSN */
};

struct smtp_client_result {
	char remote[300]; /* "mx.example.net [192.0.2.1]" of the host that decided; "" when none */
	int tls;          /* the decisive session was encrypted */
	char tls_version[32]; /* and how ("TLSv1.2"), */
	char tls_cipher[96];  /* with what */
	int dsn;              /* the decisive server offered DSN: the parameters went on to it */
	struct smtp_client_rcpt_result *rcpt; /* nrcpts, in the request's order */
	size_t nrcpts;
};

/* Called once from the loop when the attempt is over; result is borrowed
 * for the call. Never called from inside smtp_client_start(). */
typedef void smtp_client_cb(void *arg, const struct smtp_client_result *);

struct smtp_client;
/* Starts an attempt; the request's strings and arrays must live until the
 * callback (or smtp_client_cancel). NULL when out of memory. */
struct smtp_client *smtp_client_start(
    struct ev_loop *, const struct smtp_client_req *, smtp_client_cb *, void *arg);
/* Abandons the attempt (closing its connection); the callback will not be
 * called. Safe from any callback. */
void smtp_client_cancel(struct smtp_client *);

#endif
