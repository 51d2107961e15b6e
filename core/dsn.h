/* dsn.h - delivery status notifications (RFC 3464, RFC 3462's
 * multipart/report) and the trace header every accepted message gets
 * (RFC 5321 4.4 Received:). Pure: builds text, does no I/O. */
#ifndef LUAMTA_DSN_H
#define LUAMTA_DSN_H

#include <stddef.h>
#include <time.h>

enum dsn_action {
	DSN_FAILED = 0,
	DSN_DELAYED,
	DSN_DELIVERED,
	DSN_RELAYED,
};

struct dsn_rcpt {
	const char *address; /* final recipient (rfc822;...) */
	enum dsn_action action;
	const char *status;     /* "5.1.1": the enhanced code */
	const char *remote_mta; /* host name that answered, or NULL */
	const char *diagnostic; /* "550 5.1.1 No such user" (smtp;...), or NULL */
	time_t last_attempt;    /* or 0 */
	const char *orcpt;      /* ORCPT decoded ("rfc822;a@x"): Original-Recipient, or NULL */
	/* DSN_DELAYED: when the tries end (Will-Retry-Until), or 0. */
	time_t will_retry_until;
};

struct dsn_report {
	const char *reporting_mta; /* our host name */
	const char *sender;        /* the original envelope sender: where it goes */
	const char *queue_id;      /* of the original message */
	time_t arrival;            /* when we accepted it */
	const struct dsn_rcpt *rcpts;
	size_t nrcpts;
	const char *msg; /* the original message (CRLF) */
	size_t msglen;
	int headers_only;            /* attach only the original's header (RET=HDRS) */
	time_t now;                  /* the Date of the report */
	const char *message_id_seed; /* makes the Message-ID unique (e.g. queue id + time) */
	const char *envid;           /* ENVID decoded: Original-Envelope-Id, or NULL */
};

/* The whole bounce message (header and body, CRLF lines): From
 * MAILER-DAEMON@reporting_mta, To the sender, a human-readable part, the
 * message/delivery-status part and the original (message/rfc822, or
 * text/rfc822-headers with headers_only). malloc'ed; *len set; NULL when
 * out of memory. */
char *dsn_build(const struct dsn_report *, size_t *len);

/* The Received: field of an accepted message, folded, ending in CRLF
 * (RFC 5321 4.4):
 *   Received: from HELO (RDNS [IP]) by HOSTNAME (luamta) with PROTO id QID
 *           for <RCPT>; DATE
 * rdns NULL gives "unknown"; rcpt NULL (several recipients) leaves "for"
 * out; proto is ESMTP, ESMTPS, ESMTPA, ESMTPSA, SMTP or LMTP (RFC 3848).
 * Client-supplied text (helo) is sanitised: anything but printable ASCII
 * becomes '?', a ")" or "(" is kept out of the comment. malloc'ed, NULL
 * when out of memory. */
char *dsn_received(const char *helo, const char *rdns, const char *ip, const char *hostname,
    const char *proto, const char *qid, const char *rcpt, time_t now);

/* t as an RFC 5322 3.3 date-time in UTC ("Mon, 30 Nov 2026 16:35:58
 * +0000"), in English whatever the locale; buf gets at most size bytes,
 * NUL-terminated (32 are always enough). */
void dsn_date(time_t t, char *buf, size_t size);

/* How many Received: fields the header of msg (CRLF lines, up to the
 * empty line) has, for the hop count (RFC 5321 6.3). */
int dsn_count_received(const char *msg, size_t len);

#endif
