/* smtp_parse.h - pure SMTP parsers: command verb, <path>, ESMTP parameters,
 * and validation of reply text coming from policy scripts.
 * No allocation and no I/O: every function works on caller-owned memory and
 * can be table-tested without a server. */
#ifndef LUAMTA_SMTP_PARSE_H
#define LUAMTA_SMTP_PARSE_H

#include <stddef.h>

#define SMTP_CMD_LINE_MAX 512 /* RFC 5321 4.5.3.1.4, including CRLF */
/* MAIL and RCPT lines, which extensions' parameters lengthen (RFC 5321
 * 4.5.3.1.4 lets them: ORCPT and AUTH= take up to 500 octets each, ENVID
 * 100): Postfix's line_length_limit, including CRLF. */
#define SMTP_ENVELOPE_LINE_MAX 2048
#define SMTP_VERB_MAX          32  /* longest verb we keep; longer is "unknown" */
#define SMTP_PATH_MAX          512 /* RFC 5321 4.5.3.1.3: 256 octets; we allow a line's worth */
#define SMTP_LOCAL_MAX         64  /* RFC 5321 4.5.3.1.1 */
#define SMTP_DOMAIN_MAX        255 /* RFC 5321 4.5.3.1.2 */
#define SMTP_PARAMS_MAX        16  /* ESMTP parameters per MAIL/RCPT */
#define SMTP_REPLY_TEXT_MAX    506 /* 512 minus "250-" and CRLF (RFC 5321 4.5.3.1.5) */

/* Splits a command line (without its CRLF) into an upper-cased verb and its
 * argument. Writes at most SMTP_VERB_MAX bytes plus NUL into verb; the verb
 * ends at the first SP (or end of line). *arg points into line just past the
 * single separating SP (leading extra spaces skipped), or at "" when there is
 * none; *arglen is its length with trailing spaces removed.
 * Returns 0, or -1 when the line is empty, the verb is longer than
 * SMTP_VERB_MAX, or the verb contains bytes other than ALPHA/DIGIT/"-"/"_". */
int smtp_parse_verb(const char *line, size_t len, char *verb, const char **arg, size_t *arglen);

enum smtp_path_err {
	SMTP_PATH_OK = 0,
	SMTP_PATH_SYNTAX,   /* not a valid <path> */
	SMTP_PATH_NULL,     /* "<>" where a null path is not allowed */
	SMTP_PATH_TOO_LONG, /* local part, domain or whole path over its limit */
	SMTP_PATH_UTF8,     /* non-ASCII without SMTPUTF8 (or invalid UTF-8) */
};
const char *smtp_path_err_str(enum smtp_path_err);

/* Parses a reverse-path or forward-path at the start of s (len bytes), which
 * must begin with '<' (RFC 5321 4.1.2). Accepts "<>" when allow_null, quoted
 * local parts ("a b"@x), address literals ([1.2.3.4], [IPv6:...]) and source
 * routes (<@a,@b:u@d>), which are dropped (RFC 5321 4.1.2, C.2).
 * Non-ASCII octets are accepted only when utf8 is set, and must be valid UTF-8
 * (RFC 6531). A local part without a domain ("<postmaster>") is accepted only
 * for RCPT, when allow_postmaster is set and the local part is postmaster
 * (case-insensitive; RFC 5321 4.5.1).
 * On success writes the mailbox ("local@domain", quotes kept as sent; "" for
 * the null path) NUL-terminated into out (outsz >= SMTP_PATH_MAX + 1), and
 * sets *rest to the first byte after '>'. */
enum smtp_path_err smtp_parse_path(const char *s, size_t len, int allow_null, int allow_postmaster,
    int utf8, char *out, size_t outsz, const char **rest);

struct smtp_param {
	const char *key;   /* points into the parsed string, NUL-terminated */
	const char *value; /* NULL when the parameter has no "=value" */
};

/* Parses ESMTP parameters (RFC 5321 4.1.2 Mail-parameters) in place: s is a
 * NUL-terminated, writable string of SP-separated "keyword[=value]" items
 * (leading spaces allowed, may be empty). Keywords are ALPHA/DIGIT followed by
 * ALPHA/DIGIT/"-"; values are octets 33-126 except "=" (and, when utf8 is
 * set, valid UTF-8 sequences). NULs are written over the separators.
 * Returns the number of parameters stored in p (at most max), or -1 on a
 * syntax error or more than max parameters. */
int smtp_parse_params(char *s, struct smtp_param *p, int max, int utf8);

/* Returns the length of a leading RFC 3463 enhanced status code followed by
 * one SP ("5.1.1 " -> 6) in text, or 0 when text does not start with one.
 * The class digit must be 2, 4 or 5; subject and detail are 1-3 digits. */
size_t smtp_enhanced_len(const char *text, size_t len);

/* Reply text from a script is acceptable when it has no CR, LF or NUL, is at
 * most SMTP_REPLY_TEXT_MAX bytes, and is printable ASCII or valid UTF-8
 * (returns 0), else -1. */
int smtp_reply_text_ok(const char *text, size_t len);

/* 0 when p[0..len) is valid UTF-8 (no overlongs, no surrogates), else -1. */
int smtp_utf8_valid(const char *p, size_t len);

#endif
