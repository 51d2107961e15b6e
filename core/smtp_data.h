/* smtp_data.h - the DATA reader: finds the end of data, undoes dot-stuffing,
 * applies the bare-LF/bare-CR policy and the size limit.
 * It only transforms bytes into a message store (msgstore.h: memory, then a
 * file past a bound); it does not know where the message goes. Input may
 * arrive in chunks split at any byte. */
#ifndef LUAMTA_SMTP_DATA_H
#define LUAMTA_SMTP_DATA_H

#include <stddef.h>

/* What to do with a bare LF (LF not preceded by CR) or a bare CR (CR not
 * followed by LF) inside DATA (SMTP smuggling, Dec 2023). */
enum smtp_bare {
	SMTP_BARE_REJECT = 0, /* sticky error SMTP_DATA_ERR_BARE; reply 550 5.6.0 */
	SMTP_BARE_FIX,        /* store the bare LF or bare CR as CRLF */
	SMTP_BARE_ALLOW,      /* store it as received */
};
const char *smtp_bare_str(enum smtp_bare);
int smtp_bare_parse(const char *s, enum smtp_bare *out); /* 0 or -1 */

enum smtp_data_err {
	SMTP_DATA_OK = 0,
	SMTP_DATA_ERR_SIZE,    /* more than max_size bytes after unstuffing */
	SMTP_DATA_ERR_BARE,    /* bare LF/CR under SMTP_BARE_REJECT */
	SMTP_DATA_ERR_NOMEM,   /* could not grow the buffer */
	SMTP_DATA_ERR_STORAGE, /* the store's file failed (smtp_data_errno), or the
				* owner's memory budget ran out (smtp_data_fail) */
};
const char *smtp_data_err_str(enum smtp_data_err);

struct smtp_data; /* opaque */
struct msgstore;

/* A reader for one message. max_size is the limit on stored bytes; dirs and
 * mem_max are the store's (msgstore_new: NULL keeps it all in memory).
 * Returns NULL when out of memory. */
struct smtp_data *smtp_data_new(
    size_t max_size, enum smtp_bare bare, const char *const *dirs, size_t mem_max);
void smtp_data_free(struct smtp_data *); /* NULL is a no-op */

/* Feeds n bytes. Returns how many were consumed: all of them, or fewer when
 * the end-of-data line was found, in which case *done is set to 1 and the
 * bytes after ".\r\n" belong to the next command.
 * Rules (input lines end at LF; a CRLF line ends in CR LF):
 *  - end of data is a line that is exactly ".\r\n" and is either the first
 *    line or follows a CRLF line. "\n.\n", "\r\n.\n", "\n.\r\n" never end it.
 *  - a line starting with "." that has other octets before its terminator
 *    loses that first "." (RFC 5321 4.5.2); a lone "." line that is not the
 *    end stays ".".
 *  - bare LF/CR are handled per the smtp_bare policy.
 *  - once an error is set it sticks: nothing more is stored, but the reader
 *    still looks for the end of data.
 * Stored bytes are the message as received after unstuffing, without the
 * end-of-data line. */
size_t smtp_data_feed(struct smtp_data *, const char *p, size_t n, int *done);

/* Raw mode, for BDAT (RFC 3030), set before the first feed: the input is
 * the message as it is, so nothing ends it and no dot is removed; the
 * bare CR/LF policy and the size limit apply as above (a message relayed
 * over DATA later must still be valid). Feeds then consume everything and
 * never set *done, until smtp_data_close() says the message is complete:
 * a CR held at its very end is bare. smtp_data_close() does nothing
 * outside raw mode. */
void smtp_data_raw(struct smtp_data *);
void smtp_data_close(struct smtp_data *);

enum smtp_data_err smtp_data_error(const struct smtp_data *);
/* The stored bytes in memory (msgstore_head: all of them unless the store
 * went to a file); valid until the next feed or free. */
const char *smtp_data_bytes(const struct smtp_data *, size_t *len);
/* The errno of the store's failure behind SMTP_DATA_ERR_STORAGE/NOMEM, or 0. */
int smtp_data_errno(const struct smtp_data *);
/* Bytes the message would have after unstuffing, even past the limit. */
size_t smtp_data_size(const struct smtp_data *);
/* Bytes of memory the reader holds for the message (what it allocated). */
size_t smtp_data_held(const struct smtp_data *);
/* Sets a sticky error from outside (the first error wins) and gives the
 * stored bytes back at once; the reader still looks for the end of data. */
void smtp_data_fail(struct smtp_data *, enum smtp_data_err);
/* Takes the store out (the caller frees it with msgstore_free); call it
 * once the end of data was found: the reader stores nothing afterwards. */
struct msgstore *smtp_data_take(struct smtp_data *);

#endif
