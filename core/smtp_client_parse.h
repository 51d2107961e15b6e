/* smtp_client_parse.h - the pure half of the SMTP/LMTP client: reading a
 * server's replies (one line at a time, multi-line replies with one code),
 * enhanced status codes, the EHLO keywords the client acts on, checking
 * envelope addresses before they go into a command, and dot-stuffing the
 * message as it is sent. No I/O, no allocation. */
#ifndef LUAMTA_SMTP_CLIENT_PARSE_H
#define LUAMTA_SMTP_CLIENT_PARSE_H

#include <stddef.h>

#define SMTP_CREPLY_LINE_MAX  2048 /* a reply line with its CRLF (RFC 5321: 512) */
#define SMTP_CREPLY_LINES_MAX 200  /* lines of one reply (an EHLO has ~15) */
#define SMTP_CREPLY_TEXT      1024 /* bytes of a reply's text kept, with the NUL */

/* One reply line: "250-text", "250 text" or "250". Fills *code, *last (0
 * for "250-") and the text after the separator. 0, or -1 when the line is
 * not a reply line (no three digits, a code outside 200..599 or with a
 * second digit above 5, another separator). */
int smtp_creply_parse_line(
    const char *line, size_t len, int *code, int *last, const char **text, size_t *textlen);

/* A reply being read. The text of its lines is joined by single spaces
 * (a continuation line's repeated enhanced code left out), control and
 * non-ASCII bytes become '?', and what does not fit is cut. */
struct smtp_creply {
	int code;                    /* of the first line; 0 before it */
	int nlines;                  /* lines read so far */
	int done;                    /* the last line was read */
	char enh[16];                /* the first line's enhanced code, or "" */
	size_t len;                  /* of text */
	char text[SMTP_CREPLY_TEXT]; /* NUL-terminated */
};
void smtp_creply_init(struct smtp_creply *);
/* Adds one line (without its CRLF). 1 when the reply is complete, 0 when
 * more lines follow, -1 when the line is malformed, its code differs from
 * the first line's or there are too many lines. */
int smtp_creply_line(struct smtp_creply *, const char *line, size_t len);

/* The length of an RFC 3463 enhanced status code ("5.1.1") at the start
 * of text, followed by a space or the end, whose class is cls (2, 4 or 5;
 * 0: any of them); 0 when there is none. */
size_t smtp_creply_enh_len(const char *text, size_t len, int cls);

/* The reply as a result's one-line text: the text when it starts with an
 * enhanced code of the code's class, else "<class>.0.0 " and the text.
 * Returns out (always NUL-terminated, cut to fit). */
char *smtp_creply_result_text(char *out, size_t outsz, int code, const char *text);

/* What an EHLO (or LHLO) reply offers, from its lines after the first. */
struct smtp_caps {
	int pipelining, eightbitmime, smtputf8, starttls, chunking, dsn;
	int auth;                /* AUTH was offered at all */
	int auth_plain;          /* with the PLAIN mechanism */
	int size_offered;        /* SIZE came, with or without a limit */
	unsigned long long size; /* its limit; 0: none stated */
};
/* Reads one EHLO line's text ("SIZE 10240000", "AUTH PLAIN LOGIN") into
 * caps; unknown keywords and malformed values are ignored. */
void smtp_caps_line(struct smtp_caps *, const char *text, size_t len);

/* Whether an address can go between < and > of MAIL or RCPT as it is:
 * no control characters, no angle brackets, at most 256 octets. "" (the
 * null sender) passes. */
int smtp_client_path_ok(const char *);

/* Dot-stuffing (RFC 5321 4.5.2) of a message sent in pieces: a '.' at the
 * start of a line is doubled and a bare LF becomes CRLF, so a strict
 * server never sees a bare line feed. */
struct smtp_stuff {
	int bol; /* the next byte starts a line */
	int cr;  /* the last byte was a CR */
};
void smtp_stuff_init(struct smtp_stuff *);
/* Copies from in (inlen bytes) to out (outsz bytes) until in is used up or
 * out has fewer than two bytes left; *used says how much of in was taken.
 * Returns the bytes written to out. */
size_t smtp_stuff(
    struct smtp_stuff *, const char *in, size_t inlen, size_t *used, char *out, size_t outsz);
/* The end of the data after everything was stuffed: ".\r\n" after a line
 * end, "\n.\r\n" after a trailing CR, else "\r\n.\r\n". out holds 6 bytes;
 * returns the length written (no NUL). */
size_t smtp_stuff_end(const struct smtp_stuff *, char *out);

#endif
