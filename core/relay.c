/* relay.c - the delivery scheduler of one serving process.
 *
 * The spool is the truth; this file keeps only an index of the entries it
 * knows (id, when due) to arm one timer for the earliest. An entry is
 * worked on as a job: lock it (flock: no other process delivers it at the
 * same time), read its state again, split the due recipients into groups
 * by destination (a domain's MX, or the route's host or socket), resolve
 * each group's hosts through dns.h and give it to smtp_client. When every
 * group is over, the job runs the outbound hooks, queues one bounce for
 * the recipients that failed for good, saves the new state (all durable,
 * in that order: a crash repeats work, it never loses a bounce) and
 * removes the entry when nothing is left. Delivery is at least once.
 *
 * Other processes (workers) share the spool: each scans it at start, every
 * RELAY_RESCAN seconds and when `luamta queue flush` writes into
 * SPOOL/flush; the lock decides who delivers. A new entry is attempted at
 * once by the process that accepted it.
 *
 * A little over 800 lines: the index, the jobs, the scans and the flush
 * watcher all work on the one static state R, which a split would have
 * to expose to another file. */
#include "relay.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "config.h"
#include "dns.h"
#include "dsn.h"
#include "hook.h"
#include "log.h"
#include "metrics.h"
#include "relay_int.h"
#include "relay_route.h"
#include "script.h"
#include "smtp_client.h"
#include "smtp_client_cache.h"

#define RELAY_RESCAN      30.0 /* seconds between scans of the whole spool */
#define RELAY_BUSY_RETRY  1.0  /* an entry left for a concurrency limit */
#define RELAY_FLUSH_STALE 60   /* seconds a flush request file is kept */

struct relay_index {
	char id[QUEUE_ID_MAX];
	double due;       /* ev_now() time; 0: now */
	int busy;         /* a job of this process works on it */
	double queued_at; /* ev_now() when this process queued it; 0: found in the spool */
	int waits_slot;   /* left for a concurrency limit: due again when a delivery ends */
};

static struct {
	struct ev_loop *loop;
	const struct config *cfg;
	struct script *sc; /* own reference, or NULL */
	struct relay_index *idx;
	size_t nidx, capidx;
	ev_timer timer;  /* the earliest due entry */
	ev_timer rescan; /* the whole spool again */
	ev_io flush;     /* inotify on SPOOL/flush */
	int inotify;
	int started;
	int active; /* smtp_client attempts in flight */
	struct relay_job *jobs;
} R = { .inotify = -1 };

static void relay_arm(void);
static void relay_job_start(struct relay_index *);

/* The index ----------------------------------------------------------- */

static struct relay_index *
relay_find(const char *id)
{
	for (size_t i = 0; i < R.nidx; i++)
		if (strcmp(R.idx[i].id, id) == 0)
			return &R.idx[i];
	return NULL;
}

static struct relay_index *
relay_add(const char *id, double due)
{
	struct relay_index *x = relay_find(id);

	if (x != NULL) {
		if (due < x->due)
			x->due = due;
		return x;
	}
	if (R.nidx == R.capidx) {
		size_t cap = R.capidx ? R.capidx * 2 : 64;
		struct relay_index *n = realloc(R.idx, cap * sizeof(*n));
		if (n == NULL)
			return NULL;
		R.idx = n;
		R.capidx = cap;
	}
	x = &R.idx[R.nidx++];
	memset(x, 0, sizeof(*x));
	snprintf(x->id, sizeof(x->id), "%s", id);
	x->due = due;
	return x;
}

static void
relay_forget(const char *id)
{
	struct relay_index *x = relay_find(id);

	if (x != NULL)
		*x = R.idx[--R.nidx];
}

/* When the entry is next due (in ev_now() time), or -1: nothing left. */
static double
relay_entry_due(const struct queue_entry *e)
{
	double now = ev_now(R.loop), wall = (double)time(NULL), due = -1;

	if (e->held)
		return -1;
	for (size_t i = 0; i < e->nrcpts; i++) {
		const struct queue_rcpt *r = &e->rcpts[i];
		double t;

		if (r->state != QUEUE_RCPT_QUEUED && r->state != QUEUE_RCPT_DEFERRED)
			continue;
		t = r->next_attempt <= wall ? now : now + ((double)r->next_attempt - wall);
		if (due < 0 || t < due)
			due = t;
	}
	return due;
}

/* Reads the entry's state from the spool into the index. */
static void
relay_learn(const char *id)
{
	struct queue_entry e;
	char err[256];
	double due;
	int rc;

	memset(&e, 0, sizeof(e));
	if ((rc = queue_load(R.cfg->spool, id, &e, err, sizeof(err))) != 0) {
		if (rc == -1) {
			log_warn(
			    NULL, "relay.corrupt id=%s error=\"%s\" action=quarantine", id, err);
			if (queue_quarantine(R.cfg->spool, id, err, sizeof(err)) == -1)
				log_warn(NULL, "relay.quarantine id=%s error=\"%s\"", id, err);
		}
		relay_forget(id);
		return;
	}
	due = relay_entry_due(&e);
	queue_entry_clear(&e);
	if (due < 0) {
		struct relay_index *x = relay_find(id);
		if (x == NULL || !x->busy)
			relay_forget(id);
		return;
	}
	(void)relay_add(id, due);
}

static void
relay_scan(void)
{
	char **ids = NULL, err[256];
	size_t n = 0;

	if (queue_open(R.cfg->spool, err, sizeof(err)) == -1 ||
	    queue_list_ids(R.cfg->spool, &ids, &n, err, sizeof(err)) == -1) {
		log_warn(NULL, "relay.scan spool=%s error=\"%s\"", R.cfg->spool, err);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct relay_index *x = relay_find(ids[i]);
		if (x == NULL || !x->busy)
			relay_learn(ids[i]);
		free(ids[i]);
	}
	free(ids);
	relay_arm();
}

/* Starts every due entry (within the concurrency limit) and arms the
 * timer for the next. */
static void
relay_run_due(void)
{
	double now = ev_now(R.loop);

	for (size_t i = 0; i < R.nidx && R.active < R.cfg->delivery_concurrency; i++) {
		struct relay_index *x = &R.idx[i];
		if (!x->busy && x->due <= now)
			relay_job_start(x);
	}
	relay_arm();
}

static void
relay_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	relay_run_due();
}

static void
relay_arm(void)
{
	double next = -1, now = ev_now(R.loop);

	for (size_t i = 0; i < R.nidx; i++)
		if (!R.idx[i].busy && (next < 0 || R.idx[i].due < next))
			next = R.idx[i].due;
	ev_timer_stop(R.loop, &R.timer);
	if (next < 0)
		return;
	ev_timer_set(&R.timer, next > now ? next - now : 0, 0);
	ev_timer_start(R.loop, &R.timer);
}

/* Jobs ---------------------------------------------------------------- */

static void relay_job_finish(struct relay_job *);

static int
relay_dest_active(const char *dest)
{
	int n = 0;

	for (struct relay_job *j = R.jobs; j != NULL; j = j->next)
		for (size_t g = 0; g < j->ngroups; g++)
			if (j->groups[g].client != NULL && strcmp(j->groups[g].dest, dest) == 0)
				n++;
	return n;
}

static void
relay_outcome(struct relay_job *j, size_t i, int code, const char *text, const char *remote)
{
	char line[1200];

	snprintf(line, sizeof(line), "%d %s", code, text != NULL ? text : "");
	free(j->out[i].reply);
	free(j->out[i].remote);
	j->out[i].decided = 1;
	j->out[i].code = code;
	j->out[i].reply = strdup(line);
	j->out[i].remote = remote != NULL && remote[0] != '\0' ? strdup(remote) : NULL;
}

static void
relay_group_done(struct relay_group *g)
{
	struct relay_job *j = g->job;

	g->client = NULL;
	if (--j->pending == 0)
		relay_job_finish(j);
}

static void
relay_on_client(void *arg, const struct smtp_client_result *res)
{
	struct relay_group *g = arg;
	int taken = 0;

	R.active--;
	for (size_t k = 0; k < g->n && k < res->nrcpts; k++) {
		relay_outcome(
		    g->job, g->rcpts[k], res->rcpt[k].code, res->rcpt[k].text, res->remote);
		g->job->out[g->rcpts[k]].dsn_passed = res->dsn;
		if (res->rcpt[k].code >= 200 && res->rcpt[k].code < 300)
			taken = 1;
	}
	/* RFC 5321 4.5.3.1.10: a server out of room for more recipients in
	 * one transaction answers 452 to the rest, which go in a later one.
	 * When this transaction took some, that is the very next attempt
	 * (on the same connection, through the cache), not a back-off; a
	 * transaction that took none makes no progress and backs off. */
	for (size_t k = 0; taken && k < g->n && k < res->nrcpts; k++)
		if (res->rcpt[k].code == 452)
			g->job->out[g->rcpts[k]].carry = 1;
	relay_group_done(g);
	/* A slot is free: what a limit held back may go now. */
	for (size_t i = 0; i < R.nidx; i++)
		if (R.idx[i].waits_slot && !R.idx[i].busy) {
			R.idx[i].waits_slot = 0;
			R.idx[i].due = ev_now(R.loop);
		}
	relay_arm();
}

/* The key under which the group's connections are parked and taken: one
 * destination (the domain of MX delivery, the host or the socket:
 * g->dest) as this route reaches it, credentials included (a connection
 * authenticated for one password never carries another's mail). */
static char *
relay_cache_key(const struct relay_group *g, int port)
{
	const struct queue_route *rt = &g->job->e.route;
	struct smtpc_key k = {
		.kind = rt->socket != NULL ? "unix" :
		    rt->host != NULL       ? "host" :
					     "mx",
		.dest = g->dest,
		.port = port,
		.lmtp = rt->lmtp,
		.tls = queue_tls_str(rt->tls),
		.auth_user = rt->auth_user,
		.auth_pass = rt->auth_pass,
		.helo = R.cfg->hostname,
	};

	return smtp_client_cache_key(&k);
}

/* The group's hosts are known (or it failed for all its recipients). */
static void
relay_on_route(void *arg, const struct relay_route_result *rr)
{
	struct relay_group *g = arg;
	struct relay_job *j = g->job;
	struct smtp_client_req req;

	if (rr->code != 0) {
		for (size_t k = 0; k < g->n; k++)
			relay_outcome(j, g->rcpts[k], rr->code, rr->text, NULL);
		relay_group_done(g);
		return;
	}
	memset(&req, 0, sizeof(req));
	req.hosts = rr->hosts;
	req.nhosts = rr->nhosts;
	req.port = rr->port;
	req.unix_path = j->e.route.socket;
	req.lmtp = j->e.route.lmtp;
	req.helo = R.cfg->hostname;
	req.tls = j->e.route.tls;
	req.auth_user = j->e.route.auth_user;
	req.auth_pass = j->e.route.auth_pass;
	req.sender = j->e.sender;
	req.rcpts = g->addrs;
	req.nrcpts = g->n;
	req.msgfd = j->lockfd; /* the lock is taken on ID.msg, open for reading */
	req.msgbase = j->msgbase;
	req.msglen = j->msglen;
	req.body_8bit = j->e.body_8bit;
	req.smtputf8 = j->e.smtputf8;
	req.id = j->id;
	req.dsn_ret = j->e.dsn_ret;
	req.envid = j->e.envid;
	req.dsn_rcpts = j->e.rcpts;
	req.dsn_idx = g->rcpts;
	if (R.cfg->connection_cache_time > 0) {
		req.cache_key = g->cache_key = relay_cache_key(g, rr->port);
		req.cache_idle = R.cfg->connection_cache_time;
	}
	if ((g->client = smtp_client_start(R.loop, &req, relay_on_client, g)) == NULL) {
		for (size_t k = 0; k < g->n; k++)
			relay_outcome(j, g->rcpts[k], 451, "4.3.0 out of memory", NULL);
		relay_group_done(g);
		return;
	}
	R.active++;
}

/* The domain of an address, lower-cased, into out. */
static void
relay_domain(const char *addr, char *out, size_t outsz)
{
	const char *at = strrchr(addr, '@');
	size_t i;

	at = at != NULL ? at + 1 : "";
	for (i = 0; at[i] != '\0' && i + 1 < outsz; i++)
		out[i] = (char)tolower((unsigned char)at[i]);
	out[i] = '\0';
}

/* Splits the due recipients into groups by destination. */
static int
relay_job_group(struct relay_job *j)
{
	time_t wall = time(NULL);
	const struct queue_route *rt = &j->e.route;

	if ((j->groups = calloc(j->e.nrcpts ? j->e.nrcpts : 1, sizeof(*j->groups))) == NULL)
		return -1;
	for (size_t i = 0; i < j->e.nrcpts; i++) {
		const struct queue_rcpt *r = &j->e.rcpts[i];
		char dest[300];
		struct relay_group *g = NULL;

		if ((r->state != QUEUE_RCPT_QUEUED && r->state != QUEUE_RCPT_DEFERRED) ||
		    r->next_attempt > wall)
			continue;
		if (rt->socket != NULL)
			snprintf(dest, sizeof(dest), "unix:%s", rt->socket);
		else if (rt->host != NULL)
			snprintf(dest, sizeof(dest), "%s", rt->host);
		else
			relay_domain(r->address, dest, sizeof(dest));
		for (size_t k = 0; k < j->ngroups; k++)
			if (strcmp(j->groups[k].dest, dest) == 0)
				g = &j->groups[k];
		if (g == NULL) {
			g = &j->groups[j->ngroups++];
			g->job = j;
			if ((g->dest = strdup(dest)) == NULL ||
			    (g->rcpts = calloc(j->e.nrcpts, sizeof(*g->rcpts))) == NULL ||
			    (g->addrs = calloc(j->e.nrcpts, sizeof(*g->addrs))) == NULL)
				return -1;
		}
		g->addrs[g->n] = r->address;
		g->rcpts[g->n++] = i;
	}
	return 0;
}

static void
relay_job_free(struct relay_job *j)
{
	struct relay_job **pp;

	for (pp = &R.jobs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	for (size_t g = 0; g < j->ngroups; g++) {
		if (j->groups[g].client != NULL) {
			smtp_client_cancel(j->groups[g].client);
			R.active--;
		}
		relay_route_free(j->groups[g].route);
		free(j->groups[g].dest);
		free(j->groups[g].rcpts);
		free(j->groups[g].addrs);
		free(j->groups[g].cache_key);
	}
	free(j->groups);
	for (size_t i = 0; j->out != NULL && i < j->e.nrcpts; i++) {
		free(j->out[i].reply);
		free(j->out[i].remote);
	}
	free(j->out);
	free(j->bounce);
	hook_run_free(j->run);
	script_unref(j->run_sc);
	queue_entry_clear(&j->e);
	if (j->lockfd >= 0)
		queue_unlock(j->lockfd);
	free(j);
}

/* The entry could not be worked on now: back in the index, due at due. */
void
relay_job_abandon(struct relay_job *j, double due)
{
	struct relay_index *x = relay_find(j->id);

	if (x != NULL) {
		x->busy = 0;
		x->due = due;
	}
	relay_job_free(j);
}

static void
relay_job_start(struct relay_index *x)
{
	struct relay_job *j;
	char err[256];
	struct stat st;
	double due;
	int rc;

	if ((j = calloc(1, sizeof(*j))) == NULL)
		return;
	snprintf(j->id, sizeof(j->id), "%s", x->id);
	j->lockfd = -1;
	j->loop = R.loop;
	j->cfg = R.cfg;
	x->busy = 1;
	j->next = R.jobs;
	R.jobs = j;
	if ((j->lockfd = queue_lock(R.cfg->spool, j->id)) < 0) {
		/* Another process delivers it (or it is gone): it tells the
		 * spool when it is done; look again at the next scan. */
		if (errno == ENOENT) {
			relay_job_free(j);
			relay_forget(x->id);
		} else
			/* The entries of one message share the lock (one
			 * ID.msg): a sibling route may be under way here. */
			relay_job_abandon(j, ev_now(R.loop) + RELAY_BUSY_RETRY);
		return;
	}
	if ((rc = queue_load(R.cfg->spool, j->id, &j->e, err, sizeof(err))) != 0) {
		if (rc == -1) {
			log_warn(
			    NULL, "relay.corrupt id=%s error=\"%s\" action=quarantine", j->id, err);
			(void)queue_quarantine(R.cfg->spool, j->id, err, sizeof(err));
		}
		relay_job_free(j);
		relay_forget(x->id);
		return;
	}
	if ((due = relay_entry_due(&j->e)) < 0 || due > ev_now(R.loop)) {
		if (due < 0) {
			relay_job_free(j);
			relay_forget(x->id);
		} else
			relay_job_abandon(j, due);
		return;
	}
	/* The message is read from the locked ID.msg, past the envelope in
	 * front of it, as it is sent: no copy in memory. A file whose size
	 * disagrees with its envelope was cut short: corrupt. */
	if (fstat(j->lockfd, &st) == -1 || queue_body_offset(j->lockfd, &j->msgbase) == -1) {
		snprintf(err, sizeof(err), "%s.msg: %s", j->id, strerror(errno));
		st.st_size = -1;
	} else if ((size_t)st.st_size != j->msgbase + j->e.size) {
		log_warn(NULL,
		    "relay.corrupt id=%s error=\"ID.msg has %lld bytes, not %zu\" "
		    "action=quarantine",
		    j->id, (long long)st.st_size, j->msgbase + j->e.size);
		(void)queue_quarantine(R.cfg->spool, j->id, err, sizeof(err));
		relay_job_free(j);
		relay_forget(x->id);
		return;
	}
	j->msglen = j->e.size;
	if (st.st_size < 0 || (j->out = calloc(j->e.nrcpts, sizeof(*j->out))) == NULL ||
	    (j->bounce = calloc(j->e.nrcpts, sizeof(*j->bounce))) == NULL ||
	    relay_job_group(j) == -1) {
		log_warn(NULL, "relay.start id=%s error=\"%s\"", j->id,
		    st.st_size < 0 ? err : "out of memory");
		relay_job_abandon(j, ev_now(R.loop) + R.cfg->retry_min);
		return;
	}
	j->pending = j->ngroups + 1; /* + 1 until every group has started */
	for (size_t g = 0; g < j->ngroups; g++) {
		struct relay_group *gr = &j->groups[g];

		if (R.active >= R.cfg->delivery_concurrency ||
		    relay_dest_active(gr->dest) >= R.cfg->destination_concurrency) {
			/* Left for later: not an attempt, nothing recorded. */
			j->pending--;
			continue;
		}
		gr->route =
		    relay_route_start(R.loop, R.cfg, &j->e.route, gr->dest, relay_on_route, gr);
		if (gr->route == NULL) {
			for (size_t k = 0; k < gr->n; k++)
				relay_outcome(j, gr->rcpts[k], 451, "4.3.0 out of memory", NULL);
			j->pending--;
		}
	}
	if (--j->pending == 0)
		relay_job_finish(j);
}

void
relay_job_commit(struct relay_job *j)
{
	char err[256];
	double due;

	if (relay_bounce(j) == -1) {
		/* The bounce is not safe yet: keep the old state and try the
		 * whole pass again later (it is repeated, not lost). */
		relay_job_abandon(j, ev_now(R.loop) + R.cfg->retry_min);
		return;
	}
	relay_delay_warn(j); /* --delay-warning: saved with the state below */
	if (queue_entry_done(&j->e)) {
		/* Over: the entry goes without a save of its final state and
		 * without a sync of the directory (one fsync fewer per
		 * message). Both are safe for at-least-once: the bounce is
		 * durable already (relay_bounce), and a removal that a power
		 * cut undoes brings the entry back as it was last saved, so
		 * the recipients of this pass are delivered (or bounced) once
		 * more by the next start, whose own pass ends in the same
		 * removal: at most once more per crash, as for a crash in the
		 * middle of an attempt. A killed process loses nothing here:
		 * the unlinks are the kernel's the moment they return. */
		if (queue_remove_finished(R.cfg->spool, j->id, err, sizeof(err)) == -1)
			log_warn(NULL, "relay.remove id=%s error=\"%s\"", j->id, err);
		{
			/* Postfix's delay=: from the 250 to the last result, for
			 * the logs and the bench. */
			struct relay_index *x = relay_find(j->id);
			double delay = x != NULL && x->queued_at > 0 ?
			    ev_time() - x->queued_at :
			    (double)(time(NULL) - j->e.created);
			log_info(NULL, "relay.done id=%s delay=%.3f", j->id, delay);
		}
		relay_forget(j->id);
		relay_job_free(j);
		relay_arm();
		return;
	}
	if (queue_save(R.cfg->spool, &j->e, err, sizeof(err)) == -1)
		log_warn(NULL, "relay.save id=%s error=\"%s\"", j->id, err);
	due = relay_entry_due(&j->e);
	/* Recipients left for a concurrency limit are still due on disk:
	 * they wait for a delivery to end (relay_on_client), or a pause at
	 * most, never a spin. */
	if (j->left && due >= 0 && due < ev_now(R.loop) + RELAY_BUSY_RETRY)
		due = ev_now(R.loop) + RELAY_BUSY_RETRY;
	if (due < 0) {
		relay_forget(j->id);
		relay_job_free(j);
	} else {
		struct relay_index *x = relay_find(j->id);
		if (x != NULL)
			x->waits_slot = j->left;
		relay_job_abandon(j, due);
	}
	relay_arm();
}

/* Every group is over: the new state of each recipient tried. */
static void
relay_job_finish(struct relay_job *j)
{
	time_t wall = time(NULL);
	int left = 0;

	for (size_t i = 0; i < j->e.nrcpts; i++) {
		struct queue_rcpt *r = &j->e.rcpts[i];
		struct relay_outcome *o = &j->out[i];

		if (!o->decided) {
			/* Not tried (a concurrency limit): soon again. */
			if (r->state == QUEUE_RCPT_QUEUED || r->state == QUEUE_RCPT_DEFERRED)
				left = 1;
			continue;
		}
		free(r->last_reply);
		r->last_reply = strdup(o->reply);
		if (o->carry && (double)(wall - j->e.created) < R.cfg->queue_lifetime) {
			/* Not an attempt of its own: no back-off. */
			r->state = QUEUE_RCPT_DEFERRED;
			r->next_attempt = wall;
			log_info(NULL,
			    "relay.deferred id=%s to=<%s> reply=\"%s\" retry_in=0 why=carried",
			    j->id, r->address, o->reply);
			continue;
		}
		r->attempts++;
		if (o->code >= 200 && o->code < 300) {
			r->state = QUEUE_RCPT_DELIVERED;
			metrics_inc(MC_DELIVERY_DELIVERED);
			j->bounce[i] = 1; /* a success report, if NOTIFY asks for one */
			log_info(NULL, "relay.delivered id=%s to=<%s> remote=\"%s\" reply=\"%s\"",
			    j->id, r->address, o->remote ? o->remote : "", o->reply);
		} else if (o->code >= 500 ||
		    (double)(wall - j->e.created) >= R.cfg->queue_lifetime) {
			r->state = QUEUE_RCPT_BOUNCED;
			metrics_inc(MC_DELIVERY_BOUNCED);
			j->bounce[i] = 1;
			log_info(NULL, "relay.bounced id=%s to=<%s> reply=\"%s\"%s", j->id,
			    r->address, o->reply, o->code < 500 ? " why=lifetime" : "");
		} else {
			double wait = R.cfg->retry_min;

			for (int k = 1; k < r->attempts && wait < R.cfg->retry_max; k++)
				wait *= 2;
			if (wait > R.cfg->retry_max)
				wait = R.cfg->retry_max;
			r->state = QUEUE_RCPT_DEFERRED;
			metrics_inc(MC_DELIVERY_DEFERRED);
			r->next_attempt = wall + (time_t)(wait + 0.5);
			log_info(NULL, "relay.deferred id=%s to=<%s> reply=\"%s\" retry_in=%.0f",
			    j->id, r->address, o->reply, wait);
		}
	}
	j->left = left;
	j->hook_next = 0;
	relay_next_hook(j);
}

/* Flush requests -------------------------------------------------------- */

/* Whether SPOOL/flush holds a request named name. */
static int
relay_flush_requested(const char *name)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s/%s", R.cfg->spool, QUEUE_FLUSH_DIR, name);
	return stat(path, &st) == 0;
}

static void
relay_on_flush(struct ev_loop *loop, ev_io *w, int revents)
{
	char buf[4096];
	int all;

	(void)loop;
	(void)revents;
	while (read(w->fd, buf, sizeof(buf)) > 0)
		;
	/* What changed is in the spool (release rewrote next_attempt; a
	 * request names an entry, or all): read it again, then make the
	 * entries asked for due now. */
	relay_scan();
	all = relay_flush_requested("all");
	for (size_t i = 0; i < R.nidx; i++)
		if (!R.idx[i].busy && (all || relay_flush_requested(R.idx[i].id)))
			R.idx[i].due = ev_now(R.loop);
	relay_run_due();
}

/* Removes flush requests older than RELAY_FLUSH_STALE seconds: every
 * process has seen them by then. */
static void
relay_flush_tidy(void)
{
	char dir[4096], path[4400];
	struct dirent *de;
	struct stat st;
	time_t now = time(NULL);
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/%s", R.cfg->spool, QUEUE_FLUSH_DIR);
	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) == 0 && now - st.st_mtime > RELAY_FLUSH_STALE)
			(void)unlink(path);
	}
	closedir(d);
}

static void
relay_on_rescan(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	if (access(R.cfg->spool, F_OK) == -1)
		return;
	relay_flush_tidy();
	/* What a crash left behind (a temporary envelope, a message without
	 * one), once it is surely not an enqueue in progress elsewhere. */
	{
		char err[256];
		int n = queue_sweep(R.cfg->spool, time(NULL) - 3600, err, sizeof(err));
		if (n > 0)
			log_info(NULL, "relay.sweep removed=%d", n);
	}
	relay_scan();
	relay_run_due();
}

static void
relay_watch_flush(void)
{
	char dir[4096];

	snprintf(dir, sizeof(dir), "%s/%s", R.cfg->spool, QUEUE_FLUSH_DIR);
	(void)mkdir(dir, 0700);
	if ((R.inotify = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1 ||
	    inotify_add_watch(R.inotify, dir, IN_MOVED_TO | IN_CLOSE_WRITE) == -1) {
		log_warn(NULL, "relay.flush_watch dir=%s error=\"%s\"", dir, strerror(errno));
		if (R.inotify != -1)
			close(R.inotify);
		R.inotify = -1;
		return;
	}
	ev_io_init(&R.flush, relay_on_flush, R.inotify, EV_READ);
	ev_io_start(R.loop, &R.flush);
	ev_unref(R.loop);
}

/* Entry points ---------------------------------------------------------- */

void
relay_start(struct ev_loop *loop, const struct config *cfg)
{
	char err[256];

	R.loop = loop;
	R.cfg = cfg;
	R.started = 1;
	ev_timer_init(&R.timer, relay_on_timer, 0, 0);
	ev_timer_init(&R.rescan, relay_on_rescan, RELAY_RESCAN, RELAY_RESCAN);
	ev_timer_start(loop, &R.rescan);
	/* Neither the retries nor the rescans keep a draining process up. */
	ev_unref(loop);
	/* A server that never relayed has no spool: nothing to do until the
	 * first msg:relay makes it (relay_commit). */
	if (access(cfg->spool, F_OK) == -1 && errno == ENOENT)
		return;
	if (queue_open(cfg->spool, err, sizeof(err)) == -1) {
		log_warn(NULL, "relay.spool spool=%s error=\"%s\"", cfg->spool, err);
		return;
	}
	relay_watch_flush();
	relay_scan();
	relay_run_due();
}

struct script *
relay_script(void)
{
	return R.sc;
}

void
relay_set_script(struct script *sc)
{
	if (sc != NULL)
		script_ref(sc);
	script_unref(R.sc);
	R.sc = sc;
	/* A reload starts afresh with the next hops too (what changed may be
	 * a route's server). */
	if (R.started)
		smtp_client_cache_flush(R.loop);
}

void
relay_stop(void)
{
	if (!R.started)
		return;
	while (R.jobs != NULL)
		relay_job_free(R.jobs);
	smtp_client_cache_flush(R.loop);
	ev_timer_stop(R.loop, &R.timer);
	ev_ref(R.loop);
	ev_timer_stop(R.loop, &R.rescan);
	if (R.inotify != -1) {
		ev_ref(R.loop);
		ev_io_stop(R.loop, &R.flush);
		close(R.inotify);
		R.inotify = -1;
	}
	script_unref(R.sc);
	R.sc = NULL;
	free(R.idx);
	R.idx = NULL;
	R.nidx = R.capidx = 0;
	R.started = 0;
}

int
relay_commit(const struct config *cfg, const struct msgstore *ms, struct queue_entry *entries,
    size_t n, char *err, size_t errsz)
{
	/* queue_open() (a mkdir per component of the path, an access) is
	 * for a spool this process has not opened yet, or one whose enqueue
	 * just failed: it may have been removed under us, and is made again
	 * before the one retry (a failed enqueue left nothing behind). */
	static char opened[4096];
	int known = strcmp(opened, cfg->spool) == 0;

	if (!known && queue_open(cfg->spool, err, errsz) == -1)
		return -1;
	if (queue_enqueue(cfg->spool, ms, entries, n, err, errsz) == -1) {
		opened[0] = '\0';
		if (!known || queue_open(cfg->spool, err, errsz) == -1 ||
		    queue_enqueue(cfg->spool, ms, entries, n, err, errsz) == -1)
			return -1;
	}
	snprintf(opened, sizeof(opened), "%s", cfg->spool);
	if (R.started && R.inotify == -1)
		relay_watch_flush();
	for (size_t i = 0; i < n; i++) {
		log_info(NULL, "relay.queued id=%s from=<%s> rcpts=%zu%s", entries[i].id,
		    entries[i].sender, entries[i].nrcpts,
		    entries[i].is_bounce ? " bounce=yes" : "");
		if (R.started) {
			struct relay_index *x = relay_add(entries[i].id, 0);
			if (x != NULL)
				x->queued_at = ev_time();
		}
	}
	/* The first attempt starts from the loop, not from inside the
	 * caller (a session answering its client, or a job queuing a
	 * bounce). */
	if (R.started)
		relay_arm();
	return 0;
}
