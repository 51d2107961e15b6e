/* smtp_data.c - the DATA reader: a byte-level state machine that finds the
 * end of data, undoes dot-stuffing and applies the bare CR/LF policy and the
 * size limit, for input split at any byte. Plain text is copied in runs found
 * with memchr(); only CR, LF and a leading "." go through the states.
 * Where the message goes is the caller's business. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "msgstore.h"
#include "smtp_data.h"

/* Where the previous byte left us. Bytes whose meaning depends on the next
 * one (a CR, a "." or ".\r" at the start of a line) are held in the state,
 * not stored, so a chunk boundary can fall anywhere. */
enum data_state {
	DS_BOL = 0, /* at the start of a line */
	DS_TEXT,    /* inside a line */
	DS_CR,      /* inside a line, right after a CR */
	DS_DOT,     /* after a "." that started a line */
	DS_DOT_CR,  /* after ".\r" that started a line */
	DS_DONE,    /* the end-of-data line has been consumed */
};

struct smtp_data {
	struct msgstore *ms; /* owned until taken; NULL afterwards */
	size_t size;         /* unstuffed size, counted past errors */
	int sys_errno;       /* why the store failed (NOMEM, STORAGE) */
	size_t max_size;
	enum smtp_bare bare;
	enum smtp_data_err err; /* sticky: the first error wins */
	enum data_state state;
	/* The previous line ended in CRLF, or there was none yet: only
	 * then may a "." line end the data. */
	int crlf;
	int raw; /* BDAT: no end of data, no dot-stuffing */
};

const char *
smtp_bare_str(enum smtp_bare bare)
{
	switch (bare) {
	case SMTP_BARE_REJECT:
		return "reject";
	case SMTP_BARE_FIX:
		return "fix";
	case SMTP_BARE_ALLOW:
		return "allow";
	}
	return "unknown";
}

int
smtp_bare_parse(const char *s, enum smtp_bare *out)
{
	if (strcmp(s, "reject") == 0)
		*out = SMTP_BARE_REJECT;
	else if (strcmp(s, "fix") == 0)
		*out = SMTP_BARE_FIX;
	else if (strcmp(s, "allow") == 0)
		*out = SMTP_BARE_ALLOW;
	else
		return -1;
	return 0;
}

const char *
smtp_data_err_str(enum smtp_data_err err)
{
	switch (err) {
	case SMTP_DATA_OK:
		return "ok";
	case SMTP_DATA_ERR_SIZE:
		return "size";
	case SMTP_DATA_ERR_BARE:
		return "bare";
	case SMTP_DATA_ERR_NOMEM:
		return "nomem";
	case SMTP_DATA_ERR_STORAGE:
		return "storage";
	}
	return "unknown";
}

struct smtp_data *
smtp_data_new(size_t max_size, enum smtp_bare bare, const char *const *dirs, size_t mem_max)
{
	struct smtp_data *d;

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	if ((d->ms = msgstore_new(dirs, mem_max)) == NULL) {
		free(d);
		return NULL;
	}
	d->max_size = max_size;
	/* An unknown policy gets the safe one. */
	d->bare = (bare == SMTP_BARE_FIX || bare == SMTP_BARE_ALLOW) ? bare : SMTP_BARE_REJECT;
	d->err = SMTP_DATA_OK;
	d->state = DS_BOL;
	d->crlf = 1;
	return d;
}

void
smtp_data_free(struct smtp_data *d)
{
	if (d == NULL)
		return;
	msgstore_free(d->ms);
	free(d);
}

/* Stores n bytes of the unstuffed message. Until an error is set, size
 * equals the bytes stored, so it is what the limit is checked against; the
 * bytes that still fit are kept, so what is stored does not depend on
 * chunking. */
static void
data_store(struct smtp_data *d, const char *p, size_t n)
{
	size_t room, take;

	if (d->err == SMTP_DATA_OK && d->ms != NULL) {
		room = d->max_size - d->size;
		take = n < room ? n : room;
		if (take > 0 && msgstore_append(d->ms, p, take) == -1) {
			d->sys_errno = errno;
			d->err = errno == ENOMEM ? SMTP_DATA_ERR_NOMEM : SMTP_DATA_ERR_STORAGE;
		} else if (take < n)
			d->err = SMTP_DATA_ERR_SIZE;
	}
	d->size = n > SIZE_MAX - d->size ? SIZE_MAX : d->size + n;
}

/* A bare LF, or a CR not followed by LF: the SMTP smuggling ingredients.
 * Under REJECT it still counts one byte of size, as received. */
static void
data_bare(struct smtp_data *d, char c)
{
	switch (d->bare) {
	case SMTP_BARE_FIX:
		data_store(d, "\r\n", 2);
		break;
	case SMTP_BARE_ALLOW:
		data_store(d, &c, 1);
		break;
	default:
		if (d->err == SMTP_DATA_OK)
			d->err = SMTP_DATA_ERR_BARE;
		data_store(d, &c, 1); /* stores nothing, counts size */
		break;
	}
}

size_t
smtp_data_feed(struct smtp_data *d, const char *p, size_t n, int *done)
{
	const char *q;
	size_t i = 0, lf = SIZE_MAX, cr = SIZE_MAX;

	*done = d->state == DS_DONE;
	if (*done)
		return 0;
	while (i < n) {
		switch (d->state) {
		case DS_BOL:
			if (p[i] == '.' && !d->raw) {
				d->state = DS_DOT;
				i++;
			} else
				d->state = DS_TEXT;
			break;
		case DS_TEXT:
			/* Copy up to the next CR or LF in one go. Both
			 * positions are remembered, so a line of many bare
			 * CRs is not rescanned for its LF each time. */
			if (lf == SIZE_MAX || lf < i) {
				q = memchr(p + i, '\n', n - i);
				lf = q != NULL ? (size_t)(q - p) : n;
			}
			if (cr == SIZE_MAX || cr < i) {
				q = memchr(p + i, '\r', lf - i);
				cr = q != NULL ? (size_t)(q - p) : lf;
			}
			if (cr > i) {
				data_store(d, p + i, cr - i);
				i = cr;
			} else if (p[i] == '\r') {
				d->state = DS_CR;
				i++;
			} else {
				/* A bare LF ends the line, but the next line
				 * cannot end the message (smuggling). */
				data_bare(d, '\n');
				d->crlf = 0;
				d->state = DS_BOL;
				i++;
			}
			break;
		case DS_CR:
			if (p[i] == '\n') {
				data_store(d, "\r\n", 2);
				d->crlf = 1;
				d->state = DS_BOL;
				i++;
			} else {
				/* Not consumed: it is plain text (or a CR). */
				data_bare(d, '\r');
				d->state = DS_TEXT;
			}
			break;
		case DS_DOT:
			if (p[i] == '\r') {
				d->state = DS_DOT_CR;
				i++;
			} else if (p[i] == '\n') {
				/* ".\n" is a lone "." line: kept, never an end. */
				data_store(d, ".", 1);
				data_bare(d, '\n');
				d->crlf = 0;
				d->state = DS_BOL;
				i++;
			} else {
				/* RFC 5321 4.5.2: drop the stuffed dot. */
				d->state = DS_TEXT;
			}
			break;
		case DS_DOT_CR:
			if (p[i] == '\n') {
				i++;
				/* End of data only after a CRLF line, so
				 * "\n.\r\n" does not end it (smuggling). */
				if (d->crlf) {
					d->state = DS_DONE;
					*done = 1;
					return i;
				}
				data_store(d, ".\r\n", 3);
				d->crlf = 1;
				d->state = DS_BOL;
			} else {
				/* ".\rx": unstuffed, and the CR is bare. */
				data_bare(d, '\r');
				d->state = DS_TEXT;
			}
			break;
		case DS_DONE:
			/* Not reached: DONE returns above. */
			*done = 1;
			return i;
		}
	}
	return i;
}

void
smtp_data_raw(struct smtp_data *d)
{
	d->raw = 1;
}

void
smtp_data_close(struct smtp_data *d)
{
	if (!d->raw || d->state == DS_DONE)
		return;
	/* Nothing follows a CR held at the end: it is bare. */
	if (d->state == DS_CR)
		data_bare(d, '\r');
	d->state = DS_DONE;
}

enum smtp_data_err
smtp_data_error(const struct smtp_data *d)
{
	return d->err;
}

const char *
smtp_data_bytes(const struct smtp_data *d, size_t *len)
{
	if (d->ms == NULL) {
		if (len != NULL)
			*len = 0;
		return "";
	}
	return msgstore_head(d->ms, len);
}

size_t
smtp_data_size(const struct smtp_data *d)
{
	return d->size;
}

int
smtp_data_errno(const struct smtp_data *d)
{
	return d->sys_errno;
}

struct msgstore *
smtp_data_take(struct smtp_data *d)
{
	struct msgstore *ms = d->ms;

	d->ms = NULL;
	return ms;
}

size_t
smtp_data_held(const struct smtp_data *d)
{
	return d->ms != NULL ? msgstore_held(d->ms) : 0;
}

void
smtp_data_fail(struct smtp_data *d, enum smtp_data_err err)
{
	if (d->err == SMTP_DATA_OK)
		d->err = err;
	if (d->ms != NULL)
		msgstore_clear(d->ms);
}
