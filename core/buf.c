/* buf.c - growable byte buffer and bounded line splitting. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

void
buf_init(struct buf *b)
{
	memset(b, 0, sizeof(*b));
}

void
buf_reset(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

int
buf_reserve(struct buf *b, size_t n)
{
	size_t need, cap;
	char *p;

	if (b->cap - b->len >= n)
		return 0;
	/* Slide unread bytes to the front before growing. */
	if (b->off > 0) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		if (b->cap - b->len >= n)
			return 0;
	}
	need = b->len + n;
	if (need < n)
		return -1;
	cap = b->cap ? b->cap : 256;
	while (cap < need) {
		if (cap > ((size_t)-1) / 2)
			return -1;
		cap *= 2;
	}
	if ((p = realloc(b->data, cap)) == NULL)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	if (buf_reserve(b, n) == -1)
		return -1;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

void
buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len - b->off)
		b->off = b->len = 0;
	else
		b->off += n;
}

void
buf_trim(struct buf *b)
{
	if (b->off == b->len)
		buf_reset(b);
}

enum buf_line
buf_getline(struct buf *b, size_t max, const char **line, size_t *len, int *crlf)
{
	size_t avail = b->len - b->off, scan;
	const char *p, *lf;

	/* Never compute data + off on a buffer that was never allocated
	 * (NULL + 0 is undefined; found by fuzz_buf). */
	if (avail == 0)
		return max == 0 ? BUF_TOO_LONG : BUF_NEED_MORE;
	p = b->data + b->off;

	/* Apply the limit to partial lines too: only look at max bytes, so an
	 * endless line cannot grow the buffer without bound. */
	scan = avail < max ? avail : max;
	if (scan == 0 || (lf = memchr(p, '\n', scan)) == NULL)
		return avail >= max ? BUF_TOO_LONG : BUF_NEED_MORE;
	*line = p;
	*len = (size_t)(lf - p);
	*crlf = *len > 0 && p[*len - 1] == '\r';
	if (*crlf)
		(*len)--;
	b->off += (size_t)(lf - p) + 1;
	if (b->off == b->len)
		b->off = b->len = 0;
	return BUF_LINE;
}
