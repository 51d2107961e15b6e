/* msghdr.h - walking the header section of a message held in memory
 * (RFC 5322 2.2): one field at a time, with its name, its raw value (folds
 * included) and the bytes it takes, so a caller can read a field or cut it
 * out. Pure: no allocation, no I/O. */
#ifndef LUAMTA_MSGHDR_H
#define LUAMTA_MSGHDR_H

#include <stddef.h>

struct msghdr_field {
	const char *name; /* not NUL-terminated; blanks before the ':' left out */
	size_t nlen;
	const char *value; /* after the ':', to the end of its last line (no CRLF) */
	size_t vlen;
	size_t off, len; /* the whole field in the buffer, line endings included */
	int complete;    /* it ends before the buffer does: nothing of it is missing */
};

/* The next field at or after *pos in buf (len bytes, a message's first
 * bytes): fills f, moves *pos past it and returns 1; returns 0 at the end
 * of the header section (the empty line, or the end of buf). A line that
 * is not a field (no ':', or a name that is not printable ASCII) is
 * skipped, with its continuation lines. Lines end in LF, CRLF or at the
 * end of buf. */
int msghdr_next(const char *buf, size_t len, size_t *pos, struct msghdr_field *f);

/* Whether f is named name (case-insensitive). */
int msghdr_is(const struct msghdr_field *f, const char *name);

/* Writes f's value unfolded (RFC 5322 2.2.3: every CR and LF removed,
 * leading blanks dropped) into out as a string, cut to outsz - 1 bytes.
 * Returns the unfolded length, which may be outsz or more. */
size_t msghdr_unfold(const struct msghdr_field *f, char *out, size_t outsz);

#endif
