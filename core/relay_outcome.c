/* relay_outcome.c - what follows an attempt: the outbound hooks
 * (on_delivered, on_deferred, on_bounce) with the entry as Lua sees it, one
 * recipient at a time, then one report (RFC 3464) for the recipients that
 * failed for good, whose on_bounce did not return false and whose NOTIFY
 * (RFC 3461 4.1) does not say NEVER or leave FAILURE out, and for those
 * delivered whose NOTIFY has SUCCESS when the next hop did not take the
 * parameters on (5.2.2; "delivered" over LMTP, else "relayed"). No NOTIFY
 * is FAILURE here; DELAY is relay_delay.c's (--delay-warning), which
 * queues its report through relay_job_report() too; dsn_local.c's
 * success reports for local deliveries come through relay_report(). A failure report quotes
 * the header only with RET=HDRS (or a message too large to quote), a
 * success or delay report always (RFC 3461 4.3). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "config.h"
#include "dsn.h"
#include "dsn_param.h"
#include "hook_api.h"
#include "log.h"
#include "msgstore.h"
#include "relay.h"
#include "relay_int.h"
#include "script.h"
#include "smtp_parse.h"

/* Pushes the hooks' view of the entry: { id, sender, created, size, route,
 * ret, envid, recipients = { {address, state, attempts, next_attempt,
 * last_reply, notify, orcpt} } } (DSN's fields only when given). */
static void
relay_push_entry(lua_State *co, const struct queue_entry *e)
{
	const struct queue_route *rt = &e->route;

	lua_createtable(co, 0, 7);
	lua_pushstring(co, e->id);
	lua_setfield(co, -2, "id");
	lua_pushstring(co, e->sender);
	lua_setfield(co, -2, "sender");
	lua_pushinteger(co, (lua_Integer)e->created);
	lua_setfield(co, -2, "created");
	lua_pushinteger(co, (lua_Integer)e->size);
	lua_setfield(co, -2, "size");
	lua_createtable(co, 0, 5);
	if (rt->host != NULL) {
		lua_pushstring(co, rt->host);
		lua_setfield(co, -2, "host");
	}
	if (rt->socket != NULL) {
		lua_pushstring(co, rt->socket);
		lua_setfield(co, -2, "socket");
	}
	lua_pushinteger(co, rt->port);
	lua_setfield(co, -2, "port");
	lua_pushboolean(co, rt->lmtp);
	lua_setfield(co, -2, "lmtp");
	lua_pushstring(co,
	    rt->tls == QUEUE_TLS_REQUIRE  ? "require" :
		rt->tls == QUEUE_TLS_NONE ? "none" :
					    "may");
	lua_setfield(co, -2, "tls");
	lua_setfield(co, -2, "route");
	hook_api_set_dsn(co, e->dsn_ret, e->envid, 0, NULL);
	lua_createtable(co, (int)e->nrcpts, 0);
	for (size_t i = 0; i < e->nrcpts; i++) {
		const struct queue_rcpt *r = &e->rcpts[i];

		lua_createtable(co, 0, 5);
		lua_pushstring(co, r->address);
		lua_setfield(co, -2, "address");
		lua_pushstring(co, queue_rcpt_state_str(r->state));
		lua_setfield(co, -2, "state");
		lua_pushinteger(co, r->attempts);
		lua_setfield(co, -2, "attempts");
		lua_pushinteger(co, (lua_Integer)r->next_attempt);
		lua_setfield(co, -2, "next_attempt");
		if (r->last_reply != NULL) {
			lua_pushstring(co, r->last_reply);
			lua_setfield(co, -2, "last_reply");
		}
		hook_api_set_dsn(co, 0, NULL, r->notify, r->orcpt);
		lua_rawseti(co, -2, (lua_Integer)i + 1);
	}
	lua_setfield(co, -2, "recipients");
}

static void
relay_on_hook_done(struct hook_run *run, void *arg)
{
	struct relay_job *j = arg;
	const struct hook_result *res = hook_run_result(run);
	size_t i = j->hook_next - 1;

	if (j->e.rcpts[i].state == QUEUE_RCPT_BOUNCED && res->verdict == HOOK_REJECT)
		j->bounce[i] = 0; /* on_bounce returned false */
	hook_run_free(run);
	j->run = NULL;
	script_unref(j->run_sc);
	j->run_sc = NULL;
	relay_next_hook(j);
}

/* Runs the hook of the next decided recipient, one at a time (a hook may
 * wait); then commits. */
void
relay_next_hook(struct relay_job *j)
{
	struct script *sc = relay_script();

	while (j->hook_next < j->e.nrcpts) {
		size_t i = j->hook_next++;
		const struct queue_rcpt *r = &j->e.rcpts[i];
		enum hook_kind kind = r->state == QUEUE_RCPT_DELIVERED ? HOOK_DELIVERED :
		    r->state == QUEUE_RCPT_BOUNCED                     ? HOOK_BOUNCE :
									 HOOK_DEFERRED;
		struct hook_run *run;
		lua_State *co;
		enum hook_status st;

		if (!j->out[i].decided || !script_has(sc, kind))
			continue;
		run = hook_run_new(sc->L, j->loop, HOOK_MODE_POLICY, &sc->budget,
		    hook_kind_str(kind), j->id, relay_on_hook_done, j);
		if (run == NULL)
			continue;
		co = hook_run_thread(run);
		script_push_hook(sc, co, kind, NULL);
		relay_push_entry(co, &j->e);
		lua_pushstring(co, r->address);
		lua_pushstring(co, j->out[i].reply);
		st = hook_run_start(run, 3);
		if (st == HOOK_PENDING) {
			/* A reload may let the generation go while the hook
			 * waits: the job keeps it alive until the run ends. */
			script_ref(sc);
			j->run_sc = sc;
			j->run = run;
			return;
		}
		if (kind == HOOK_BOUNCE && st == HOOK_DONE &&
		    hook_run_result(run)->verdict == HOOK_REJECT)
			j->bounce[i] = 0;
		hook_run_free(run);
	}
	relay_job_commit(j);
}

/* The enhanced code of a reply ("550 5.1.1 ..."), or a default by class. */
void
relay_status(const char *reply, int code, char *out, size_t outsz)
{
	const char *p = strchr(reply, ' ');
	size_t n = p != NULL ? smtp_enhanced_len(p + 1, strlen(p + 1)) : 0;

	/* n counts the space after the code. */
	if (n > 1 && n <= outsz && p[1] - '0' == code / 100) {
		memcpy(out, p + 1, n - 1);
		out[n - 1] = '\0';
	} else
		snprintf(out, outsz, "%d.0.0", code / 100);
}

/* A bounce quotes an original of up to RELAY_BOUNCE_WHOLE bytes whole
 * (Postfix's bounce_size_limit); a cut message/rfc822 part would be a
 * broken message, so a larger one is quoted by its header only, as far as
 * RELAY_BOUNCE_HEAD bytes hold it. */
#define RELAY_BOUNCE_WHOLE 50000
#define RELAY_BOUNCE_HEAD  (128 * 1024)

/* What the bounce quotes, read from the locked ID.msg; NULL (quoting
 * nothing) when it cannot be read: the sender still hears of the failure. */
static char *
relay_original(const struct relay_job *j, size_t *len, int *headers_only)
{
	size_t want = j->msglen, got = 0;
	char *buf;
	ssize_t r;

	*headers_only = want > RELAY_BOUNCE_WHOLE;
	if (*headers_only && want > RELAY_BOUNCE_HEAD)
		want = RELAY_BOUNCE_HEAD;
	if ((buf = malloc(want + 1)) == NULL)
		return NULL;
	while (got < want) {
		r = pread(j->lockfd, buf + got, want - got, (off_t)(j->msgbase + got));
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			log_warn(NULL, "relay.bounce id=%s original=unreadable error=\"%s\"", j->id,
			    r == 0 ? "shorter than its size" : strerror(errno));
			free(buf);
			return NULL;
		}
		got += (size_t)r;
	}
	*len = want;
	return buf;
}

/* Whether recipient i (bounced, or delivered) is reported, as its
 * NOTIFY asks (see the top). */
static int
relay_reported(const struct relay_job *j, size_t i)
{
	const struct queue_rcpt *r = &j->e.rcpts[i];

	if (r->state == QUEUE_RCPT_DELIVERED)
		return (r->notify & DSN_NOTIFY_SUCCESS) && !j->out[i].dsn_passed;
	return r->state == QUEUE_RCPT_BOUNCED &&
	    (r->notify == 0 || (r->notify & DSN_NOTIFY_FAILURE));
}

/* Builds the report and queues it, from the null sender, to the sender of
 * the original, as a bounce (never reported on itself). relay_bounce()
 * and dsn_local.c's success reports both come through here. */
int
relay_report(const struct config *cfg, const struct dsn_report *rep, char *id, size_t idsz,
    char *err, size_t errsz)
{
	struct queue_entry b;
	struct queue_rcpt br;
	struct msgstore *ms;
	size_t len;
	char *text;
	int rc;

	if ((text = dsn_build(rep, &len)) == NULL) {
		snprintf(err, errsz, "out of memory");
		return -1;
	}
	memset(&b, 0, sizeof(b));
	memset(&br, 0, sizeof(br));
	br.address = (char *)rep->sender;
	b.sender = "";
	b.is_bounce = 1;
	b.rcpts = &br;
	b.nrcpts = 1;
	ms = msgstore_of(text, len);
	free(text);
	if (ms == NULL) {
		snprintf(err, errsz, "out of memory");
		return -1;
	}
	rc = relay_commit(cfg, ms, &b, 1, err, errsz);
	msgstore_free(ms);
	if (rc == 0)
		snprintf(id, idsz, "%s", b.id);
	return rc;
}

/* RFC 3464's Remote-MTA is a name alone: "mx.example.net" of
 * "mx.example.net [192.0.2.1]", copied into out; NULL when there is none
 * (or it does not fit). */
const char *
relay_remote_mta(const char *remote, char *out, size_t outsz)
{
	size_t len = remote != NULL ? strcspn(remote, " ") : 0;

	if (len == 0 || len >= outsz)
		return NULL;
	memcpy(out, remote, len);
	out[len] = '\0';
	return out;
}

/* Queues one report for the recipients in j->bounce. 0 or -1. */
int
relay_bounce(struct relay_job *j)
{
	struct dsn_rcpt *dr;
	char(*status)[16];
	char(*remote)[256];
	size_t n = 0;
	int rc, failed = 0;

	if (j->e.sender[0] == '\0' || j->e.is_bounce)
		return 0; /* never a bounce for a bounce (RFC 5321 6.1) */
	for (size_t i = 0; i < j->e.nrcpts; i++) {
		j->bounce[i] = j->bounce[i] && relay_reported(j, i);
		n += j->bounce[i] != 0;
	}
	if (n == 0)
		return 0;
	dr = calloc(n, sizeof(*dr));
	status = calloc(n, sizeof(*status));
	remote = calloc(n, sizeof(*remote));
	if (dr == NULL || status == NULL || remote == NULL) {
		free(dr);
		free(status);
		free(remote);
		return -1;
	}
	n = 0;
	for (size_t i = 0; i < j->e.nrcpts; i++) {
		if (!j->bounce[i])
			continue;
		relay_status(j->out[i].reply, j->out[i].code, status[n], sizeof(status[n]));
		dr[n].address = j->e.rcpts[i].address;
		dr[n].orcpt = j->e.rcpts[i].orcpt;
		dr[n].action = j->e.rcpts[i].state != QUEUE_RCPT_DELIVERED ? DSN_FAILED :
		    j->e.route.lmtp                                        ? DSN_DELIVERED :
									     DSN_RELAYED;
		failed |= dr[n].action == DSN_FAILED;
		dr[n].status = status[n];
		dr[n].remote_mta = relay_remote_mta(j->out[i].remote, remote[n], sizeof(remote[n]));
		dr[n].diagnostic = j->out[i].reply;
		dr[n].last_attempt = time(NULL);
		n++;
	}
	rc = relay_job_report(j, dr, n, failed ? NULL : "success");
	free(dr);
	free(status);
	free(remote);
	return rc;
}

/* The report on entry j for the n recipients in dr, to the entry's
 * sender (relay_report), quoting the original whole only for a failure
 * without RET=HDRS. kind names it in the log ("success", "delay"; NULL:
 * a failure). 0, or -1: not queued. */
int
relay_job_report(struct relay_job *j, const struct dsn_rcpt *dr, size_t n, const char *kind)
{
	struct dsn_report rep;
	char seed[64], err[256], bid[QUEUE_ID_MAX];
	char *original;
	int rc, failed = 0;

	for (size_t i = 0; i < n; i++)
		failed |= dr[i].action == DSN_FAILED;
	memset(&rep, 0, sizeof(rep));
	rep.reporting_mta = j->cfg->hostname;
	rep.sender = j->e.sender;
	rep.queue_id = j->id;
	rep.arrival = j->e.created;
	rep.rcpts = dr;
	rep.nrcpts = n;
	rep.envid = j->e.envid;
	original = relay_original(j, &rep.msglen, &rep.headers_only);
	rep.msg = original;
	if (!failed || j->e.dsn_ret == DSN_RET_HDRS)
		rep.headers_only = 1;
	rep.now = time(NULL);
	snprintf(seed, sizeof(seed), "%s.%ld%s", j->id, (long)rep.now, kind != NULL ? kind : "");
	rep.message_id_seed = seed;
	rc = relay_report(j->cfg, &rep, bid, sizeof(bid), err, sizeof(err));
	free(original);
	if (rc == -1)
		log_warn(NULL, "relay.bounce id=%s error=\"%s\"", j->id, err);
	else
		log_info(NULL, "relay.bounce id=%s bounce=%s to=<%s> rcpts=%zu%s%s", j->id, bid,
		    j->e.sender, n, kind != NULL ? " kind=" : "", kind != NULL ? kind : "");
	return rc;
}
