/* authres.h - the text of Authentication-Results header fields (RFC 8601):
 * reading the authserv-id of a field found in a message, and writing the
 * pieces of ours (values quoted where the grammar needs it). Pure: no
 * allocation, no I/O. */
#ifndef LUAMTA_AUTHRES_H
#define LUAMTA_AUTHRES_H

#include <stddef.h>

/* The longest value this file writes: a field "Authentication-Results: "
 * plus this stays within RFC 5322's 998 octets per line, as it is never
 * folded. */
#define AUTHRES_MAX 970

/* The authserv-id of an Authentication-Results value (raw: folds,
 * comments and blanks are skipped; a quoted-string is unquoted) into out
 * as a string. Returns its length, or -1 when the value does not start
 * with one or it does not fit outsz - 1 bytes. */
int authres_servid(const char *value, size_t len, char *out, size_t outsz);

/* A value being built, within AUTHRES_MAX octets. */
struct authres {
	char buf[AUTHRES_MAX + 1];
	size_t len;
};

/* Whether s (n bytes) can be a method or result name: a letter or digit,
 * then those, '-' and '_' (RFC 8601 2.2's Keyword, with the '_' that
 * registered names such as "dkim-adsp" do not need but others use), at
 * most 64 bytes. */
int authres_keyword(const char *s, size_t n);
/* Whether s can be written as a value at all: no control characters
 * (CR, LF, NUL, DEL...) and at most 255 bytes. */
int authres_value_ok(const char *s, size_t n);

/* Starts ar with the authserv-id (a value, quoted when it is not a
 * token). -1 when it cannot be written. */
int authres_begin(struct authres *ar, const char *servid, size_t n);
/* A clause of its own, "; method=result", when it fits: 0, or -1 (nothing
 * written). Later pieces (authres_reason, authres_comment, authres_prop)
 * add to the last clause; a caller that wants a clause whole or not at all
 * takes authres_mark() first and goes back to it on a failure. */
int authres_method(struct authres *ar, const char *method, const char *result);
/* " reason=VALUE", " (TEXT)" (TEXT written with its parentheses and
 * backslashes escaped), " ptype.property=VALUE" where VALUE is written as
 * a token, an address or domain ([local-part] "@" domain) when it is one,
 * else a quoted-string. 0, or -1 when it does not fit (nothing written). */
int authres_reason(struct authres *ar, const char *v, size_t n);
int authres_comment(struct authres *ar, const char *text, size_t n);
int authres_prop(struct authres *ar, const char *ptype_property, const char *v, size_t n);

/* "; none" (RFC 8601 2.2: no method was applied). */
int authres_none(struct authres *ar);

/* The length of ar now, and a cut back to an earlier length (a clause
 * that did not fit whole). */
size_t authres_mark(const struct authres *ar);
void authres_reset(struct authres *ar, size_t mark);

#endif
