/* conn.h - one client socket on the event loop (plaintext for now; TLS will
 * slot in underneath). Fills an input buffer, drains an output queue, runs
 * an idle timer; knows nothing of SMTP.
 * Reading goes on while the owner is busy (a hook is pending) until the
 * input holds CONN_INPUT_HIGH bytes, so a client that hangs up mid-hook is
 * noticed at once. */
#ifndef LUAMTA_CONN_H
#define LUAMTA_CONN_H

#include <stddef.h>

#include <ev.h>

#include "buf.h"

#define CONN_READ_CHUNK 16384
#define CONN_INPUT_HIGH 65536 /* stop reading past this much unprocessed input */

struct conn; /* opaque */
struct tls;
struct tls_config;

enum conn_event {
	CONN_DATAIN = 0, /* new bytes in conn_input() */
	CONN_DRAINED,    /* the output queue became empty */
	CONN_TIMEOUT,    /* the idle timer expired */
	CONN_CLOSED,     /* the peer closed its side (after any buffered input) */
	CONN_ERROR,      /* read/write/TLS error, see conn_strerror() */
	CONN_TLS_READY,  /* the TLS handshake finished */
};
const char *conn_event_str(enum conn_event);

/* Called from the loop. The callback must not free the conn; it may call
 * anything else here. */
typedef void conn_cb(struct conn *, enum conn_event, void *arg);

/* Takes ownership of fd (made non-blocking, TCP_NODELAY); conn_free()
 * closes it. Returns NULL when out of memory (fd is then closed). */
struct conn *conn_new(struct ev_loop *, int fd, conn_cb *, void *arg);
/* The same with separate read and write descriptors (--stdio over pipes:
 * stdin and stdout); takes ownership of both. TLS needs one socket. */
struct conn *conn_new_pair(struct ev_loop *, int fd, int wfd, conn_cb *, void *arg);
void conn_free(struct conn *); /* NULL is a no-op */

/* Unprocessed input; the owner consumes what it parsed. */
struct buf *conn_input(struct conn *);

/* Queues bytes for the peer; nothing is written until conn_flush() (so a
 * batch of pipelined replies leaves in one write). 0 or -1 (ENOMEM). */
int conn_write(struct conn *, const void *, size_t);
/* Writes what is queued now; the rest goes out when the socket allows and
 * CONN_DRAINED follows. */
void conn_flush(struct conn *);
size_t conn_output_pending(const struct conn *);

/* (Re)arms the timer: CONN_TIMEOUT after secs unless conn_touch() comes
 * first. Input alone does not re-arm it (see conn_touch). */
void conn_set_timeout(struct conn *, double secs);
/* Restarts the timer: the owner saw progress (a whole command line, DATA
 * arriving fast enough), not merely bytes. */
void conn_touch(struct conn *);
/* Shuts down the reading side and drops buffered input (for closing). */
void conn_shutdown_input(struct conn *);
/* Gives idle buffers back to the allocator. */
void conn_trim(struct conn *);

/* Switches to TLS (server side): drops buffered plaintext input (it came
 * before the switch; RFC 3207 5, CVE-2011-0411), sends what is queued in
 * plaintext, then runs the handshake. CONN_TLS_READY or CONN_ERROR follows.
 * Takes a reference on cfg. 0, or -1 when out of memory or already TLS. */
int conn_starttls(struct conn *, struct tls_config *);
/* The TLS context once the handshake finished, else NULL. */
struct tls *conn_tls(const struct conn *);

const char *conn_strerror(const struct conn *);
/* Whether a read, write or TLS error has ended the connection. */
int conn_failed(const struct conn *);

#endif
