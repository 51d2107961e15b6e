/* msgstore.h - one message's bytes while it is received and handled.
 *
 * The beginning stays in memory: there the header section is looked up and
 * header fields are prepended. Once the message outgrows mem_max bytes, all
 * of it goes on to an unnamed file (O_TMPFILE) in the first directory of
 * the store's list that takes one, as it arrives, a buffer at a time; the
 * file disappears when the store is freed or the process dies, so a crash
 * leaves nothing to sweep. So a worker holds at most about mem_max plus one
 * write buffer per message, whatever the message's size.
 *
 * The message is: the prepended fields, then the appended bytes, less the
 * ranges cut from the head. */
#ifndef LUAMTA_MSGSTORE_H
#define LUAMTA_MSGSTORE_H

#include <stddef.h>
#include <sys/types.h>

/* Bytes written to the file at a time (and read back at a time). */
#define MSGSTORE_WBUF (64 * 1024)

struct msgstore; /* opaque */

/* dirs: NULL-terminated list of directories for the file, tried in order
 * when the message first outgrows mem_max (a missing directory is created,
 * mode 0700, its parent too); NULL keeps everything in memory whatever its
 * size. The list is not copied: it must outlive the store. */
struct msgstore *msgstore_new(const char *const *dirs, size_t mem_max);
void msgstore_free(struct msgstore *); /* NULL is a no-op */
/* A memory-only store holding a copy of p (a bounce, a test's message). */
struct msgstore *msgstore_of(const char *p, size_t n);

/* Adds n bytes at the end. 0, or -1 with errno: ENOMEM, a write error of
 * the file (ENOSPC, EIO, ...), or no directory took the file. After a
 * failure the store keeps what it had before the call. */
int msgstore_append(struct msgstore *, const char *p, size_t n);
/* Adds n bytes in front (a header field). 0, or -1 with errno ENOMEM. */
int msgstore_prepend(struct msgstore *, const char *p, size_t n);
/* Removes the n bytes at off (a header field), which must lie within the
 * first bytes msgstore_head() shows; every reader (pieces, the length,
 * msgstore_write) sees the message without them from then on. 0, or -1
 * with errno EINVAL when the range is not inside the head. */
int msgstore_cut(struct msgstore *, size_t off, size_t n);
/* The message is complete: writes out and frees the write buffer, so a
 * message waiting for its hooks holds only its memory part. 0, or -1 with
 * errno (a write error). Appending afterwards still works. */
int msgstore_finish(struct msgstore *);
/* Drops every byte and the file; the store can be appended to again. */
void msgstore_clear(struct msgstore *);

/* The whole message's length. */
size_t msgstore_len(const struct msgstore *);
/* The first bytes, contiguous (never NULL): the whole message unless it
 * went to a file, else the prepended fields and at least the first mem_max
 * bytes appended. Valid until the next change. */
const char *msgstore_head(const struct msgstore *, size_t *len);
/* Whether part of the message lives only in the file. */
int msgstore_spilled(const struct msgstore *);
/* The directory that took the file (one of dirs), or NULL. */
const char *msgstore_dir(const struct msgstore *);
/* Bytes of memory the store holds. */
size_t msgstore_held(const struct msgstore *);

/* The bytes from off on, one piece at a time: *p points into the store's
 * memory, or into buf (bufsz bytes, at least 1) after a read from the file.
 * Returns the piece's length, 0 at the end, or -1 with errno. Loop with
 * off += the length. */
ssize_t msgstore_piece(
    const struct msgstore *, size_t off, char *buf, size_t bufsz, const char **p);
/* Writes the whole message to fd at its current offset. 0, or -1 with
 * errno. */
int msgstore_write(const struct msgstore *, int fd);

#endif
