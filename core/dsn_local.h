/* dsn_local.h - success reports (RFC 3464 "delivered", RFC 3461 NOTIFY=
 * SUCCESS) for the recipients of an accepted message that a local
 * deliverer (msg:deliver_maildir, msg:deliver_mbox) wrote in on_message;
 * relay_outcome.c reports on the queue's own deliveries. */
#ifndef LUAMTA_DSN_LOCAL_H
#define LUAMTA_DSN_LOCAL_H

struct config;
struct smtp_tx;

/* The message of tx was just accepted (its 2xx is queued): queues one
 * report to its sender naming every recipient whose NOTIFY has SUCCESS,
 * that a mailbox deliverer wrote the message for, and that got no failure
 * reply of its own (LMTP). Nothing for the null sender. When the queue
 * cannot take the report, logs it once (sid's line) and the message
 * stays accepted. */
void dsn_local_report(const struct config *, const char *sid, const struct smtp_tx *);

#endif
