/* queue_make.c - test-only: queues one message through queue_enqueue()
 * from its arguments, so the queue specs can fill a spool without a
 * relaying server. Prints the new ids, one a line. Every string argument
 * is %XX-decoded first, so a spec can pass any byte through a shell.
 *
 *   queue_make --spool DIR --msg FILE [--sender S] [--entries N]
 *       [--host H] [--port N] [--socket PATH] [--lmtp] [--tls may|require|none]
 *       [--auth-user U] [--auth-pass P] [--held]
 *       [--ret FULL|HDRS] [--envid ENVID]
 *       --rcpt ADDR [--state queued|deferred|delivered|bounced]
 *                   [--attempts N] [--next UNIXTIME] [--reply TEXT]
 *                   [--notify SUCCESS,FAILURE|NEVER] [--orcpt rfc822;a@x] ...
 *
 * --state, --attempts, --next, --reply, --notify and --orcpt apply to the
 * --rcpt before them (DSN's values decoded, as the queue keeps them);
 * --entries N queues N entries (one per route, as msg:relay would) sharing
 * the message, each with every recipient. Exit 0, or 1 with a reason. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsn_param.h"
#include "msgstore.h"
#include "queue.h"

#define MAX_RCPTS 64

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes %XX in place (an invalid escape stays as it is). */
static char *
decode(char *s)
{
	char *o = s, *p = s;

	while (*p != '\0') {
		if (p[0] == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0 &&
		    (hexval(p[1]) | hexval(p[2])) != 0) {
			*o++ = (char)(hexval(p[1]) << 4 | hexval(p[2]));
			p += 3;
		} else
			*o++ = *p++;
	}
	*o = '\0';
	return s;
}

static void
usage(const char *why)
{
	fprintf(stderr, "queue_make: %s\n", why);
	exit(1);
}

int
main(int argc, char **argv)
{
	struct queue_entry e, *entries;
	struct msgstore *ms = NULL;
	struct queue_rcpt rcpts[MAX_RCPTS];
	const char *spool = NULL, *msgfile = NULL;
	char err[1024], *msg = NULL;
	size_t nentries = 1, len = 0, cap = 0, got;
	FILE *f;

	memset(&e, 0, sizeof(e));
	memset(rcpts, 0, sizeof(rcpts));
	e.sender = "";
	e.rcpts = rcpts;
	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i];
		char *val = i + 1 < argc ? argv[i + 1] : NULL;
		struct queue_rcpt *last = e.nrcpts > 0 ? &rcpts[e.nrcpts - 1] : NULL;

		if (strcmp(opt, "--lmtp") == 0) {
			e.route.lmtp = 1;
			continue;
		}
		if (strcmp(opt, "--held") == 0) {
			e.held = 1;
			continue;
		}
		if (val == NULL)
			usage("an option without its value");
		i++;
		decode(val);
		if (strcmp(opt, "--spool") == 0)
			spool = val;
		else if (strcmp(opt, "--msg") == 0)
			msgfile = val;
		else if (strcmp(opt, "--sender") == 0)
			e.sender = val;
		else if (strcmp(opt, "--entries") == 0)
			nentries = (size_t)strtoul(val, NULL, 10);
		else if (strcmp(opt, "--host") == 0)
			e.route.host = val;
		else if (strcmp(opt, "--port") == 0)
			e.route.port = atoi(val);
		else if (strcmp(opt, "--socket") == 0)
			e.route.socket = val;
		else if (strcmp(opt, "--auth-user") == 0)
			e.route.auth_user = val;
		else if (strcmp(opt, "--auth-pass") == 0)
			e.route.auth_pass = val;
		else if (strcmp(opt, "--tls") == 0)
			e.route.tls = strcmp(val, "require") == 0 ? QUEUE_TLS_REQUIRE :
			    strcmp(val, "none") == 0              ? QUEUE_TLS_NONE :
								    QUEUE_TLS_MAY;
		else if (strcmp(opt, "--ret") == 0) {
			if ((e.dsn_ret = dsn_param_ret(val)) == -1)
				usage("--ret: FULL or HDRS");
		} else if (strcmp(opt, "--envid") == 0)
			e.envid = val;
		else if (strcmp(opt, "--rcpt") == 0) {
			if (e.nrcpts == MAX_RCPTS)
				usage("too many recipients");
			rcpts[e.nrcpts++].address = val;
		} else if (last == NULL)
			usage("a recipient's option before any --rcpt");
		else if (strcmp(opt, "--state") == 0) {
			int s;

			for (s = QUEUE_RCPT_QUEUED; s <= QUEUE_RCPT_BOUNCED; s++)
				if (strcmp(val, queue_rcpt_state_str((enum queue_rcpt_state)s)) ==
				    0)
					break;
			if (s > QUEUE_RCPT_BOUNCED)
				usage("unknown state");
			last->state = (enum queue_rcpt_state)s;
		} else if (strcmp(opt, "--attempts") == 0)
			last->attempts = atoi(val);
		else if (strcmp(opt, "--next") == 0)
			last->next_attempt = (time_t)strtoll(val, NULL, 10);
		else if (strcmp(opt, "--reply") == 0)
			last->last_reply = val;
		else if (strcmp(opt, "--notify") == 0) {
			if (dsn_param_notify(val, &last->notify) == -1)
				usage("--notify: NEVER or a list of SUCCESS, FAILURE, DELAY");
		} else if (strcmp(opt, "--orcpt") == 0)
			last->orcpt = val;
		else
			usage("unknown option");
	}
	if (spool == NULL || msgfile == NULL || e.nrcpts == 0 || nentries == 0)
		usage("needs --spool, --msg and at least one --rcpt");
	if ((f = fopen(msgfile, "rb")) == NULL)
		usage(strerror(errno));
	do {
		if (len == cap && (msg = realloc(msg, cap = cap * 2 + 4096)) == NULL)
			usage("out of memory");
		got = fread(msg + len, 1, cap - len, f);
		len += got;
	} while (got > 0);
	fclose(f);
	if ((entries = calloc(nentries, sizeof(*entries))) == NULL)
		usage("out of memory");
	for (size_t i = 0; i < nentries; i++)
		entries[i] = e;
	if (queue_open(spool, err, sizeof(err)) == -1 || (ms = msgstore_of(msg, len)) == NULL ||
	    queue_enqueue(spool, ms, entries, nentries, err, sizeof(err)) == -1)
		usage(err);
	for (size_t i = 0; i < nentries; i++)
		printf("%s\n", entries[i].id);
	free(entries);
	msgstore_free(ms);
	free(msg);
	return 0;
}
