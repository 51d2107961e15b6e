/* metrics.h - the server's Prometheus metrics: counters, gauges and one
 * histogram in memory shared by the master and every worker it forks, the
 * counters scripts define (luamta.metrics), and the text exposition of all
 * of it. Pure: no sockets and no Lua; metrics_http.c serves the text and
 * metrics_lua.c is what scripts see. Without metrics_init() every call
 * below is a no-op, so the increment points cost one test of a pointer. */
#ifndef LUAMTA_METRICS_H
#define LUAMTA_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define METRICS_WORKERS_MAX 257  /* slot 0: --foreground; 1..256: workers */
#define METRICS_HOOKS_MAX   64   /* hook names with series of their own */
#define METRICS_FAMILY_MAX  128  /* counters scripts may define */
#define METRICS_SERIES_MAX  1024 /* label sets over all script counters */
#define METRICS_NAME_MAX    100  /* bytes of a script counter's name */
#define METRICS_HELP_MAX    200  /* bytes of its help text */
#define METRICS_LABELS_MAX  8    /* labels of one series */
#define METRICS_LABEL_MAX   64   /* bytes of a label name */
#define METRICS_VALUE_MAX   128  /* bytes of a label value */

/* The fixed counters. Each is one series: a family and one set of label
 * values (the table in metrics.c names them). */
enum metrics_counter {
	MC_CONN_ACCEPTED = 0,
	MC_REFUSED_MAX_CONNECTIONS,
	MC_REFUSED_MAX_PER_IP,
	MC_REFUSED_MAX_CONN_RATE,
	MC_REFUSED_PROXY,
	MC_SESSION_QUIT,
	MC_SESSION_PEER_CLOSED,
	MC_SESSION_TIMEOUT,
	MC_SESSION_TLS_TIMEOUT,
	MC_SESSION_HOOK,
	MC_SESSION_HOOK_ERROR,
	MC_SESSION_REJECTED,
	MC_SESSION_AUTH_FAILURES,
	MC_SESSION_ERROR_LIMIT,
	MC_SESSION_BARE_LF,
	MC_SESSION_ERROR,
	MC_SESSION_SHUTDOWN,
	MC_SESSION_OTHER,
	MC_TX_ACCEPTED,
	MC_TX_REJECTED,
	MC_TX_DEFERRED,
	MC_TX_ABANDONED,
	MC_MSG_ACCEPTED,
	MC_MSG_REJECTED_DATA,
	MC_MSG_DEFERRED_DATA,
	MC_MSG_REJECTED_END,
	MC_MSG_DEFERRED_END,
	MC_MSG_REJECTED_POLICY,
	MC_MSG_DEFERRED_POLICY,
	MC_MSG_DEFERRED_QUEUE,
	MC_MSG_DEFERRED_DELIVERY,
	MC_TLS_OK_12,
	MC_TLS_OK_13,
	MC_TLS_OK_OTHER,
	MC_TLS_FAILED,
	MC_TLS_TIMEOUT,
	MC_AUTH_SUCCESS,
	MC_AUTH_FAILURE,
	MC_AUTH_TEMPFAIL,
	MC_AUTH_ABORTED,
	MC_RELOAD_OK,
	MC_RELOAD_FAILED,
	MC_WORKER_RESTARTS,
	MC_DELIVERY_DELIVERED,
	MC_DELIVERY_DEFERRED,
	MC_DELIVERY_BOUNCED,
	MC_SERIES_DROPPED,
	MC__COUNT,
};

/* Where a message got its verdict (luamta_messages_total's stage). */
enum metrics_stage {
	METRICS_STAGE_DATA = 0, /* the DATA command was refused */
	METRICS_STAGE_END,      /* the server's checks at the final dot */
	METRICS_STAGE_POLICY,   /* on_message, or the default without one */
	METRICS_STAGE_QUEUE,    /* msg:relay's entries could not be written */
	METRICS_STAGE_DELIVERY, /* a local deliverer failed */
};

/* Maps the shared memory (every counter at 0, a gauge slot for each of
 * METRICS_WORKERS_MAX processes) in this process, for the children it
 * forks to inherit. Called once, before any fork; 0, or -1 with errno. */
int metrics_init(void);
/* Whether metrics_init() was called (--metrics). */
int metrics_enabled(void);
/* In a serving process: index is its slot (0 for --foreground), where its
 * per-process gauges go. */
void metrics_worker_start(int index);
/* In the master, once the worker in slot index is dead: its gauges go, its
 * counters stay. */
void metrics_worker_gone(int index);

/* Counter increments. */
void metrics_inc(enum metrics_counter);
/* The session that closed for reason (smtp_session_close()'s words). */
void metrics_session_end(const char *reason);
/* A message's verdict: code is the reply it got (2xx accepted, 4xx
 * deferred, anything else rejected). */
void metrics_message(int code, enum metrics_stage);
/* A transaction that ended: code as above, or 0 when it ended without a
 * message (RSET, a new HELO, the session's end). */
void metrics_transaction(int code);
/* A finished TLS handshake: version ("TLSv1.2") or NULL when it failed. */
void metrics_tls(const char *version);
/* Sessions open in this process: +1 or -1. */
void metrics_connections(int delta);

/* Hook runs. metrics_hook_slot() finds (or makes) the series of the hook
 * named name: an index for metrics_hook_end(), or -1 (no metrics, or a
 * name that fits nowhere: then the "other" series counts it). The run is
 * counted at once. */
int metrics_hook_slot(const char *name);
/* The run in slot ended after secs seconds; failed: with an error. */
void metrics_hook_end(int slot, double secs, int failed);

/* Script counters. A name matches [a-zA-Z_:][a-zA-Z0-9_:]* and ends in
 * _total; luamta_ belongs to the server. */
int metrics_name_ok(const char *name, size_t len);
/* A label name matches [a-zA-Z_][a-zA-Z0-9_]* and does not start with __. */
int metrics_label_ok(const char *name, size_t len);
/* The family of the counter name with help: found, or made. Returns its
 * index, -1 when the name exists with another help, -2 when there is no
 * room (or no metrics). */
int metrics_family(const char *name, const char *help);

struct metrics_label {
	const char *name;
	const char *value;
	size_t vlen;
};
/* Adds n to the series of family fam with the labels given (nlabels,
 * names already checked, in any order; a name twice is the caller's
 * error). Values are cut to METRICS_VALUE_MAX bytes and bytes that are not
 * UTF-8 become '?'. A full table counts luamta_metrics_series_dropped_total
 * instead. Returns 0, or -1 when the series was dropped. */
int metrics_add(int fam, const struct metrics_label *, int nlabels, uint64_t n);

/* The queue's entries by state, counted by the caller at scrape time. */
struct metrics_queue {
	int known; /* 0: the spool could not be read; no queue gauges */
	uint64_t queued, deferred, held;
};
/* Appends the text exposition (format 0.0.4) of every metric to out.
 * Returns 0, or -1 when out of memory. */
int metrics_write(struct buf *out, const struct metrics_queue *);

/* For tests: forgets the mapping of this process (metrics_init() may then
 * be called again for a fresh one). */
void metrics_reset(void);

#endif
