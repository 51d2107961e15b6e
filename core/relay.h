/* relay.h - the outbound side of one serving process: it takes the queue
 * entries that are due (new ones at once, deferred ones at their time,
 * `luamta queue flush` when told), locks each, resolves where its
 * recipients go (MX per RFC 5321 5.1, or the route's host or socket),
 * hands them to smtp_client, records every recipient's result durably,
 * runs on_delivered / on_deferred / on_bounce, queues bounces (RFC 3464)
 * and retries with back-off until the queue lifetime is over. */
#ifndef LUAMTA_RELAY_H
#define LUAMTA_RELAY_H

#include <stddef.h>

#include <ev.h>

#include "queue.h"

struct config;
struct dsn_report;
struct script;

/* Starts the relay of this process on loop: scans the spool (creating
 * it when missing) and watches its flush directory. A spool that cannot
 * be opened is logged and retried at the next scan. */
void relay_start(struct ev_loop *, const struct config *);
/* The policy generation whose on_delivered/on_deferred/on_bounce run from
 * now on (a reference is taken; NULL: none). */
void relay_set_script(struct script *);
/* The generation set last (borrowed), or NULL. */
struct script *relay_script(void);
/* Stops: abandons attempts in flight (their entries stay in the spool,
 * unlocked, for the next start) and frees everything. */
void relay_stop(void);

/* Queues a message accepted in a session for the routes a policy gave
 * (msg:relay), durably (queue_enqueue), and starts their first attempt
 * at once. 0, or -1 with err: nothing was queued. */
int relay_commit(const struct config *, const struct msgstore *, struct queue_entry *entries,
    size_t n, char *err, size_t errsz);

/* Builds a report (dsn_build) and queues it through relay_commit() from
 * the null sender to rep->sender, marked as a bounce (so never reported
 * on itself): relay_outcome.c's bounces and success reports, and
 * dsn_local.c's for local deliveries. 0 with the report's queue id in id,
 * or -1 with err: nothing was queued. */
int relay_report(const struct config *, const struct dsn_report *rep, char *id, size_t idsz,
    char *err, size_t errsz);

#endif
