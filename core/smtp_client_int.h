/* smtp_client_int.h - what smtp_client.c (the protocol: replies, the
 * transaction, TLS and AUTH decisions, results) and smtp_client_io.c (the
 * sockets: connecting to each target, reading, writing, the message's
 * stuffing, timers, the object's lifetime) share, and nothing else. */
#ifndef LUAMTA_SMTP_CLIENT_INT_H
#define LUAMTA_SMTP_CLIENT_INT_H

#include <ev.h>

#include "buf.h"
#include "smtp_client.h"
#include "smtp_client_parse.h"
#include "tls.h"

#define CL_CA_BUNDLE  "/etc/ssl/certs/ca-certificates.crt" /* Debian's */
#define CL_OUT_CHUNK  65536 /* stuffed message bytes queued at a time */
#define CL_READ_CHUNK 16384 /* bytes of a queued message read at a time */
#define CL_IN_MAX     65536 /* unread reply bytes before it is a protocol error */
#define CL_QUIT_WAIT  5.0

enum cl_state {
	CL_IDLE = 0,  /* between connections */
	CL_CONNECT,   /* waiting for connect() */
	CL_GREETING,  /* for the 220 */
	CL_EHLO,      /* EHLO or LHLO sent */
	CL_HELO,      /* HELO sent after EHLO got 5xx */
	CL_STARTTLS,  /* STARTTLS sent */
	CL_HANDSHAKE, /* TLS handshake */
	CL_AUTH,      /* AUTH PLAIN sent */
	CL_RSET,      /* RSET sent on a cached connection (no PIPELINING) */
	CL_TXN,       /* MAIL, RCPT and DATA replies */
	CL_BODY,      /* sending the message */
	CL_DOT,       /* waiting for the final reply(ies) */
	CL_EMPTY_DOT, /* a lone "." after an unwanted 354 */
	CL_QUIT,      /* QUIT sent */
	CL_DONE,      /* the result waits for its timer */
};

enum { RC_PENDING = 0, RC_ACCEPTED, RC_DONE, RC_LOCAL };

struct smtp_client {
	struct ev_loop *loop;
	struct smtp_client_req req;
	smtp_client_cb *cb;
	void *arg;
	struct smtp_client_result res;
	unsigned char *rstate; /* RC_* per recipient */

	size_t host, addr; /* the next target */
	int started;       /* a first target was taken */
	int plain_retry;   /* reconnecting to the same address without TLS */
	int fd;
	struct tls *tls; /* set once STARTTLS began */
	int tls_up;      /* the handshake completed */
	int tls_refused; /* MAY: STARTTLS got a non-220, go on in plaintext */
	int tls_want;    /* the event the TLS layer asked for */
	ev_io io;
	ev_timer timer, done;
	int io_events;
	unsigned gen; /* counts connections closed: who still holds this one */
	enum cl_state state;
	struct buf in, out;
	struct smtp_creply reply;
	struct smtp_caps caps;
	const char *name;  /* the current host's name */
	char addrtxt[128]; /* its address (and port), or the socket path */
	char desc[300];    /* "name [addr]" */
	int connected;     /* this target accepted the connection */
	int reused;        /* the connection came from smtp_client_cache.c */
	int rset_pending;  /* a pipelined RSET's reply comes before MAIL's */
	int rset_done;     /* the cached connection answered RSET with 250 */
	unsigned uses;     /* transactions the connection carried before this one */
	double born;       /* ev_now() when it connected */
	char namebuf[256]; /* name when the connection was cached: the host list is another job's */

	int pipelined, mail_ok, mail_decided;
	size_t *order, norder; /* the recipients sent RCPT, in order */
	size_t step, naccepted, lmtp_next;
	size_t msgoff;
	struct smtp_stuff stuff;

	int failcode;
	char failtext[512];
	char faildesc[300]; /* the host the failure came from, if connected */
	int in_cb, cancelled;
};

extern const char *const smtpc_stage[]; /* by state, for failure texts */

static inline double
cl_cmd_timeout(const struct smtp_client *c, double dflt)
{
	return c->req.timeout_command > 0 ? c->req.timeout_command : dflt;
}

static inline double
cl_data_timeout(const struct smtp_client *c, double dflt)
{
	return c->req.timeout_data > 0 ? c->req.timeout_data : dflt;
}

/* smtp_client_io.c */
void smtpc_timer(struct smtp_client *, double secs);
void smtpc_close(struct smtp_client *);
void smtpc_finish(struct smtp_client *);
void smtpc_next(struct smtp_client *);

/* smtp_client.c */
void smtpc_set(struct smtp_client *, size_t i, int code, const char *text, int st);
void smtpc_set_open(struct smtp_client *, int code, const char *text, int accepted_only);
void smtpc_log(struct smtp_client *, const char *result, const char *why);
void smtpc_host_fail(struct smtp_client *, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void smtpc_lost(struct smtp_client *, const char *what);
void smtpc_reply(struct smtp_client *);
void smtpc_handshake(struct smtp_client *);
void smtpc_resume(struct smtp_client *);

#endif
