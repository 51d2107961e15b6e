/* smtp_reply.h - SMTP replies on the wire: formatting a (multi-line) reply
 * with its enhanced status codes, and the one limit on its size. Pure: no
 * I/O, no allocation; sessions decide what to say and when. */
#ifndef LUAMTA_SMTP_REPLY_H
#define LUAMTA_SMTP_REPLY_H

#include <stddef.h>

/* One whole (multi-line) reply on the wire. Clients buffer a reply until
 * its last line; 8 KiB is far more than any real one needs. */
#define SMTP_REPLY_MAX 8192
/* What formatting adds to a line of text at most: "250-", an enhanced code
 * "5.123.123 " and CRLF. */
#define SMTP_REPLY_LINE_EXTRA 16
/* One line of a reply with its CRLF (RFC 5321 4.5.3.1.5). */
#define SMTP_REPLY_LINE_MAX 512

/* The one check of a reply's size: 0 when nlines lines holding textlen
 * bytes of text in all are sure to fit SMTP_REPLY_MAX once formatted,
 * else -1. Every reply text a script gives (hook replies, EHLO keywords)
 * passes here, so a reply is never cut on the wire. */
int smtp_reply_size_ok(size_t nlines, size_t textlen);

/* Formats code and text ('\n'-separated lines) into out as CRLF lines,
 * "250-" on all but the last. When enh is not NULL, every line carries an
 * enhanced status code (RFC 2034 3): its own if it has one, else that of
 * the first line, else enh. Returns the length, or 0 when the reply does
 * not fit in outsz bytes or a line would pass SMTP_REPLY_LINE_MAX (nothing
 * partial is ever returned). */
size_t smtp_reply_format(char *out, size_t outsz, int code, const char *enh, const char *text);

#endif
