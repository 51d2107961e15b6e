/* relay_int.h - what relay.c (the scheduler) and relay_outcome.c (the
 * outbound hooks and the bounces) share: a job, its groups and what each
 * recipient's attempt decided. Not for other files. */
#ifndef LUAMTA_RELAY_INT_H
#define LUAMTA_RELAY_INT_H

#include <ev.h>

#include "hook.h"
#include "queue.h"

struct config;
struct dsn_rcpt;
struct relay_route;
struct smtp_client;

struct relay_group;

struct relay_job {
	struct relay_job *next;
	struct ev_loop *loop;
	const struct config *cfg;
	char id[QUEUE_ID_MAX];
	struct queue_entry e;
	int lockfd;
	size_t msgbase; /* where the message starts in ID.msg (past its envelope) */
	size_t msglen;  /* read from lockfd from msgbase on, as it is sent */
	struct relay_group *groups;
	size_t ngroups, pending;
	/* The outcome, in recipient order: what this pass decided. */
	struct relay_outcome {
		int decided; /* 0: not tried this pass */
		int carry;   /* a 452 in a transaction that took others: again at once */
		int code;
		char *reply;    /* owned: "550 5.1.1 text" */
		char *remote;   /* owned, or NULL */
		int dsn_passed; /* the next hop took RFC 3461's parameters (relay_bounce) */
	} * out;
	size_t hook_next;      /* the next recipient whose hook runs */
	int left;              /* recipients left untried for a concurrency limit */
	struct hook_run *run;  /* a hook that waits, or NULL */
	struct script *run_sc; /* its generation (own reference) */
	int *bounce; /* recipients a report may name (on_bounce did not say false; relay_bounce
		      * applies NOTIFY) */
};

struct relay_group {
	struct relay_job *job;
	char *dest;    /* owned: the domain, host or socket (for the logs and limits) */
	size_t *rcpts; /* owned: indexes into job->e.rcpts */
	size_t n;
	struct relay_route *route; /* the resolution (relay_route.c) */
	struct smtp_client *client;
	const char **addrs; /* owned array of borrowed strings: the recipients */
	char *cache_key;    /* owned: the route's key in smtp_client_cache.h */
};

/* relay.c: the end of a job
 * (bounce, state, unlock: takes the job); putting a job back undone. */
void relay_job_commit(struct relay_job *);
void relay_job_abandon(struct relay_job *, double due);

/* relay_outcome.c: runs the hooks of the recipients decided in this pass,
 * one at a time (a hook may wait), then relay_job_commit(). */
void relay_next_hook(struct relay_job *);
/* Queues one report (RFC 3464) for the recipients in j->bounce as their
 * NOTIFY asks: failed ones (NOTIFY absent or with FAILURE), delivered
 * ones with SUCCESS whose next hop did not take the parameters on (none
 * for a null sender or a bounce). 0, or -1: not queued. */
int relay_bounce(struct relay_job *);
/* Queues one report on the job's entry for the n recipients in dr to the
 * entry's sender (relay_report() in relay.h); kind names it in the log
 * ("success", "delay"; NULL for failures). 0, or -1: not queued. */
int relay_job_report(struct relay_job *, const struct dsn_rcpt *dr, size_t n, const char *kind);
/* The name of an outcome's remote ("mx.example.net [192.0.2.1]") as
 * RFC 3464's Remote-MTA, copied into out; NULL when there is none. */
const char *relay_remote_mta(const char *remote, char *out, size_t outsz);
/* The enhanced status code of reply ("550 5.1.1 ..."), or code's class
 * with ".0.0", into out. */
void relay_status(const char *reply, int code, char *out, size_t outsz);

/* relay_delay.c: with --delay-warning, once per entry, a report
 * ("Action: delayed") for the recipients still deferred (their NOTIFY
 * absent or with DELAY) once the entry has waited that long; records it
 * in j->e.delay_warned for the save that follows. Called by
 * relay_job_commit() after the hooks and relay_bounce(). */
void relay_delay_warn(struct relay_job *);

#endif
