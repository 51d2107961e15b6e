/* delivery.h - durable local delivery of an accepted message: Maildir, mbox
 * and stdout. Each call finishes (including fsync) before it returns, so the
 * caller may send 250 afterwards. It never replies to a client; errors are
 * returned as text for the caller to log.
 * These calls block the event loop while they write and fsync; that is the
 * price of the simple contract for a low-volume MTA (see core/README.md). */
#ifndef LUAMTA_DELIVERY_H
#define LUAMTA_DELIVERY_H

#include <stddef.h>

struct msgstore;

/* Creates dir (and its missing parents) and its tmp/, new/, cur/
 * subdirectories when missing (mode 0700), writes the message to tmp/<unique>, fsyncs it,
 * links/renames it into new/<unique> and fsyncs new/. The unique name follows the Maildir
 * convention: "<secs>.M<usecs>P<pid>Q<counter>.<hostname>" with "/" and ":"
 * in the hostname escaped as \057 and \072. On success copies the file name
 * (without directory) into name (namesz bytes) when name is not NULL.
 * Returns 0, or -1 with a message in err (errsz bytes); on failure no file is
 * left in tmp/ or new/. */
int delivery_maildir(
    const char *dir, const struct msgstore *, char *name, size_t namesz, char *err, size_t errsz);

/* delivery_mbox() found the mailbox locked by another process (a MUA):
 * nothing was written, and trying again later may succeed. */
#define DELIVERY_LOCKED (-2)

/* Appends the message to the mbox file path (created 0600 when missing):
 * a "From <sender or MAILER-DAEMON> <asctime date>" line, the message with
 * CRLF turned into LF and lines matching ^>*From  quoted with one more ">"
 * (mboxrd), and an empty line. Locks the whole file with both fcntl and
 * flock while writing, fsyncs, and on a write failure truncates the file
 * back to its old size. It never waits for a lock: when another process
 * holds either, it writes nothing and returns DELIVERY_LOCKED with err
 * saying so; waiting and retrying is the caller's business. Otherwise
 * returns 0, or -1 with a message in err. */
int delivery_mbox(
    const char *path, const char *sender, const struct msgstore *, char *err, size_t errsz);

/* Writes a DebuggingServer-style dump to fd: a "---------- MESSAGE FOLLOWS
 * ----------" line, "X-Peer: <peer>", "X-MailFrom: <sender>",
 * "X-RcptTo: <r1>, <r2>" and the message with LF line endings, then a
 * "------------ END MESSAGE ------------" line. Returns 0 or -1 (errno). */
int delivery_print(int fd, const char *peer, const char *sender, const char *const *rcpts,
    size_t nrcpts, const struct msgstore *);

/* Writes the message to path whole or not at all: a temporary file beside
 * it, fsync, rename over path. 0, or -1 with a message in err. */
int delivery_file(const char *path, const struct msgstore *, char *err, size_t errsz);

/* Appends data to path (created 0600) with one O_APPEND write, then fsync,
 * so records appended by several processes never interleave. 0 or -1. */
int delivery_append(const char *path, const char *data, size_t len, char *err, size_t errsz);

#endif
