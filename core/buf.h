/* buf.h - a growable byte buffer with a read offset, and line splitting with
 * a length limit. Allocates lazily and can give its memory back, so an idle
 * connection holds no buffer. Touches no sockets. */
#ifndef LUAMTA_BUF_H
#define LUAMTA_BUF_H

#include <stddef.h>

struct buf {
	char *data; /* owned; NULL until the first append */
	size_t off; /* start of unread bytes */
	size_t len; /* end of unread bytes */
	size_t cap;
};

enum buf_line {
	BUF_LINE = 0,  /* a whole line: *line, *len exclude the LF (and CR) */
	BUF_NEED_MORE, /* no LF yet, and fewer than max bytes buffered */
	BUF_TOO_LONG,  /* max bytes without an LF: caller discards up to the LF */
};

void buf_init(struct buf *);
void buf_reset(struct buf *); /* frees memory; buf is empty */
static inline size_t
buf_avail(const struct buf *b)
{
	return b->len - b->off;
}
static inline const char *
buf_head(const struct buf *b)
{
	/* data is NULL until the first append: never NULL + 0 (undefined). */
	return b->off != 0 ? b->data + b->off : b->data;
}

/* Makes room for at least n more bytes at buf_tail(). 0 or -1 (ENOMEM). */
int buf_reserve(struct buf *, size_t n);
static inline char *
buf_tail(struct buf *b)
{
	return b->data + b->len;
}
static inline void
buf_commit(struct buf *b, size_t n)
{
	b->len += n;
}
int buf_append(struct buf *, const void *, size_t);
/* Drops n unread bytes; an emptied buffer rewinds to offset 0. */
void buf_consume(struct buf *, size_t n);
/* Frees the memory when nothing is unread (idle connections hold nothing). */
void buf_trim(struct buf *);

/* Finds the next line among the unread bytes. On BUF_LINE, *line points into
 * the buffer (valid until the next append, consume or reset) and *len
 * excludes the terminator; *crlf says whether it ended in CRLF rather than a
 * bare LF; the line and its terminator are consumed. max counts the
 * terminator too (SMTP_CMD_LINE_MAX). */
enum buf_line buf_getline(struct buf *, size_t max, const char **line, size_t *len, int *crlf);

#endif
