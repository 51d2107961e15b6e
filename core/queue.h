/* queue.h - the durable queue of messages to relay (msg:relay). One entry
 * per message and route; an entry is two files in the spool directory:
 *   ID.msg  the message as accepted (CRLF lines, not dot-stuffed), written
 *           once and never changed; several entries of one message share it
 *           through hard links;
 *   ID.env  the envelope and the state of every recipient, as text
 *           (queue_env_format), replaced whole on every change: written to a
 *           temporary name, fsync'ed, renamed, and the directory fsync'ed.
 * A process delivering an entry holds flock(LOCK_EX) on its ID.msg (which a
 * rename never replaces), so no two processes deliver the same entry, and a
 * lock dies with its process (kill -9), which makes the entry deliverable
 * again: delivery is at least once.
 * Knows nothing of SMTP sessions, Lua or the loop: synchronous file work,
 * called where a short fsync is acceptable. */
#ifndef LUAMTA_QUEUE_H
#define LUAMTA_QUEUE_H

#include <stddef.h>
#include <time.h>

#define QUEUE_ID_MAX 24 /* an id and its NUL: 16 hex digits and a suffix */

/* Whether id has the shape of a queue id: 16 lower-case hex digits, then
 * for one entry of a message queued for several routes "-N" (N from 1 to
 * 999999, no leading zero). Anything else (a path, "..") is refused before
 * it names a file. */
int queue_id_valid(const char *id);

enum queue_tls {
	QUEUE_TLS_MAY = 0, /* STARTTLS when offered, not verified; plaintext if it fails */
	QUEUE_TLS_REQUIRE, /* STARTTLS required, chain and host name verified */
	QUEUE_TLS_NONE,    /* never */
};
/* "may", "require", "none": the words of ID.env and of the JSON. */
const char *queue_tls_str(enum queue_tls);

enum queue_rcpt_state {
	QUEUE_RCPT_QUEUED = 0, /* not tried yet */
	QUEUE_RCPT_DEFERRED,   /* tried, temporary failure: next_attempt says when */
	QUEUE_RCPT_DELIVERED,  /* done: the next hop took it */
	QUEUE_RCPT_BOUNCED,    /* done: failed for good (a bounce was queued or suppressed) */
};
const char *queue_rcpt_state_str(enum queue_rcpt_state);

/* Where an entry goes: each recipient's MX (host NULL, socket NULL), one
 * host, or a UNIX socket. */
struct queue_route {
	char *host;   /* owned, or NULL: the recipients' MX */
	int port;     /* 0: the default (--relay-port for MX; 25, or 24 for LMTP) */
	char *socket; /* owned: a UNIX socket path, or NULL */
	int lmtp;     /* speak LMTP (RFC 2033) */
	enum queue_tls tls;
	char *auth_user; /* owned, or NULL: no AUTH */
	char *auth_pass; /* owned, or NULL */
};

struct queue_rcpt {
	char *address; /* owned: the address without <> */
	enum queue_rcpt_state state;
	int attempts;
	time_t next_attempt; /* QUEUED, DEFERRED: not before (0: at once) */
	char *last_reply;    /* owned: the last reply or error, or NULL */
	unsigned notify;     /* RCPT's NOTIFY= (DSN_NOTIFY_* of dsn_param.h); 0: none */
	char *orcpt;         /* owned: RCPT's ORCPT= decoded ("rfc822;a@x"), or NULL */
};

struct queue_entry {
	char id[QUEUE_ID_MAX];
	char *sender; /* owned: "" for the null sender */
	time_t created;
	int held;      /* `luamta queue hold`: not delivered until released */
	size_t size;   /* bytes of the message (ID.msg past its envelope) */
	int body_8bit; /* MAIL had BODY=8BITMIME */
	int smtputf8;  /* MAIL had SMTPUTF8 */
	int is_bounce; /* a delivery status notification we made: never bounced */
	int dsn_ret;   /* MAIL's RET= (enum dsn_ret of dsn_param.h); 0: none */
	char *envid;   /* owned: MAIL's ENVID= decoded, or NULL */
	/* When its delay warning was queued (--delay-warning); 0: not yet. */
	time_t delay_warned;
	struct queue_route route;
	struct queue_rcpt *rcpts; /* owned */
	size_t nrcpts;
};

/* Frees what the entry owns (not the entry itself) and zeroes it. */
void queue_entry_clear(struct queue_entry *);
/* Whether every recipient is DELIVERED or BOUNCED. */
int queue_entry_done(const struct queue_entry *);

/* The text form of ID.env (pure: queue_file.c). format returns a malloc'ed
 * buffer (*len bytes) or NULL when out of memory; parse fills out (to be
 * cleared by the caller) and returns 0, or -1 with a reason in err for a
 * malformed, truncated or unknown-version text. */
char *queue_env_format(const struct queue_entry *, size_t *len);
int queue_env_parse(const char *text, size_t len, struct queue_entry *out, char *err, size_t errsz);

struct msgstore;

/* Creates the spool directory (mode 0700; its parents 0755) and
 * SPOOL/flush/ when missing; checks the spool can be written. 0, or -1
 * with err. */
int queue_open(const char *spool, char *err, size_t errsz);

/* Queues one message for n entries (one per route), each with its own
 * recipients: writes ID.msg once, the first entry's envelope in front of
 * the message (through a temporary name, so it is whole once visible),
 * hard links for the other entries and an ID.env each, everything
 * fsync'ed and the directory last. A message with one route is one file
 * and two fsyncs. Fills each entry's id, created and size. Returns 0 only
 * when all are durable; on -1 (err set) nothing of them is left. */
int queue_enqueue(const char *spool, const struct msgstore *ms, struct queue_entry *entries,
    size_t n, char *err, size_t errsz);

/* Reads the entry's envelope into out: ID.env, or without one the
 * envelope in front of a first entry's ID.msg (queue_save writes ID.env,
 * which then stands). 0; 1 when the entry does not exist (any more, or an
 * ID.env whose message is gone); -1 with err when it cannot be read or
 * does not parse (corrupt). */
int queue_load(const char *spool, const char *id, struct queue_entry *out, char *err, size_t errsz);
/* Replaces ID.env durably (see above). 0 or -1 with err. */
int queue_save(const char *spool, const struct queue_entry *, char *err, size_t errsz);
/* Removes the entry (ID.msg first, then ID.env), durably. 0 (also when it
 * was gone already) or -1. */
int queue_remove(const char *spool, const char *id, char *err, size_t errsz);
/* The same for an entry that is over (every recipient delivered or
 * bounced, its bounce queued), without syncing the directory: the
 * delivery scheduler's removal. Not durable at once: after a power cut
 * (a killed process loses nothing: the kernel has the unlinks) the entry
 * may come back as it was last saved, and its recipients are delivered
 * once more, which at-least-once delivery allows (relay.c says why it
 * stays "once more"). The next sync of the directory (the next enqueue
 * or save) makes the removal durable with it. 0 or -1 with err. */
int queue_remove_finished(const char *spool, const char *id, char *err, size_t errsz);
/* A corrupt entry is moved to SPOOL/corrupt/ for a human, out of the way. */
int queue_quarantine(const char *spool, const char *id, char *err, size_t errsz);

/* The ids of every entry in the spool (an ID.env, or a first entry's
 * ID.msg), sorted; *ids malloc'ed (free each, then the array). 0 or -1
 * with err. */
int queue_list_ids(const char *spool, char ***ids, size_t *n, char *err, size_t errsz);

/* Removes what a crash can leave behind, when last changed before
 * `before`: temporary files (ID.env.XXXXXX, ID.msg.XXXXXX), the ID.msg of
 * an entry other than the first without its ID.env, and an ID.env without
 * its ID.msg (an enqueue or a remove cut short). The age keeps it off an
 * enqueue in progress in another process: give a time well in the past
 * (now minus an hour). Returns how many files it removed, or -1 with err. */
int queue_sweep(const char *spool, time_t before, char *err, size_t errsz);

/* Where the message starts in ID.msg (open as fd), past the envelope
 * written in front of it. 0, or -1 with errno (EINVAL: none there). */
int queue_body_offset(int fd, size_t *off);
/* Reads the message of ID.msg into a malloc'ed buffer. 0 or -1 with err. */
int queue_read_body(
    const char *spool, const char *id, char **msg, size_t *len, char *err, size_t errsz);

/* Takes the delivery lock of an entry without waiting: returns a
 * descriptor to give to queue_unlock(), or -1 (errno EWOULDBLOCK: another
 * process has it; ENOENT: the entry is gone; EINVAL: not an id). The lock
 * is on ID.msg's inode, which the entries of one message share: holding
 * one of them holds them all. `luamta queue hold/release/remove` change an
 * entry only under its lock, so a deliverer loads ID.env after locking. */
int queue_lock(const char *spool, const char *id);
void queue_unlock(int fd);

/* What the running server watches to be told "retry now": `luamta queue
 * flush [ID]` creates a file in SPOOL/flush/ (the id, or "all"). */
#define QUEUE_FLUSH_DIR "flush"
/* SPOOL/incoming: the unnamed files of messages being received (msgstore.h);
 * nothing there keeps a name, so nothing there is ever swept. */
#define QUEUE_INCOMING_DIR "incoming"
/* Creates SPOOL/flush/NAME (NAME an id or "all") through a temporary name
 * ("NAME.XXXXXX") and a rename, so a watcher sees it whole. 0 or -1 with
 * err. The server removes what it has acted on. */
int queue_flush_request(const char *spool, const char *name, char *err, size_t errsz);

#endif
