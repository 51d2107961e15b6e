/* fuzz_buf.c - libFuzzer target for struct buf and buf_getline() (buf.h).
 * The input is a little program: each op byte appends bytes (by buf_append,
 * or buf_reserve + buf_tail + buf_commit), reads lines with a chosen max,
 * consumes, or trims. A shadow copy of everything appended, with a read
 * cursor, says what the buffer must hold; every line must be the next line
 * of the shadow, never longer than max with its terminator. After
 * BUF_TOO_LONG the harness discards up to the LF, as smtp_session.c does.
 *
 *   op % 5 == 0  append the next k bytes (k = next byte) with buf_append
 *   op % 5 == 1  the same with buf_reserve/buf_commit
 *   op % 5 == 2  buf_getline until it stops giving lines; max is
 *                SMTP_CMD_LINE_MAX when op & 0x80, else 1 + next byte
 *   op % 5 == 3  buf_consume(next byte)
 *   op % 5 == 4  buf_trim */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "smtp_parse.h"

struct shadow {
	char *bytes; /* everything appended, in order */
	size_t len;
	size_t pos;       /* first byte not yet consumed */
	size_t lines;     /* bytes handed out as lines, terminators included */
	size_t discarded; /* bytes dropped by consume or the skip */
};

static void
check_buf(const struct buf *b, const struct shadow *sh)
{
	FUZZ_CHECK(b->off <= b->len && b->len <= b->cap);
	FUZZ_CHECK(b->cap == 0 || b->data != NULL);
	FUZZ_CHECK(buf_avail(b) == sh->len - sh->pos);
	FUZZ_CHECK(
	    buf_avail(b) == 0 || memcmp(buf_head(b), sh->bytes + sh->pos, buf_avail(b)) == 0);
	/* Every byte appended is a line, dropped, or still unread. */
	FUZZ_CHECK(sh->lines + sh->discarded + buf_avail(b) == sh->len);
}

static void
do_append(struct buf *b, struct shadow *sh, struct fuzz_in *in, int reserve)
{
	size_t k = fuzz_take_byte(in);

	if (k > in->n)
		k = in->n;
	if (reserve) {
		FUZZ_CHECK(buf_reserve(b, k) == 0);
		FUZZ_CHECK(b->cap - b->len >= k);
		if (k > 0)
			memcpy(buf_tail(b), in->p, k);
		buf_commit(b, k);
	} else
		FUZZ_CHECK(buf_append(b, in->p, k) == 0);
	memcpy(sh->bytes + sh->len, in->p, k);
	sh->len += k;
	in->p += k;
	in->n -= k;
}

static void
do_consume(struct buf *b, struct shadow *sh, size_t k)
{
	if (k > sh->len - sh->pos)
		k = sh->len - sh->pos;
	buf_consume(b, k);
	sh->pos += k;
	sh->discarded += k;
}

/* What smtp_session.c does after BUF_TOO_LONG: drop through the next LF,
 * or everything when there is none yet (and keep skipping). */
static int
do_skip(struct buf *b, struct shadow *sh)
{
	const char *lf;

	if (buf_avail(b) == 0)
		return 1;
	if ((lf = memchr(buf_head(b), '\n', buf_avail(b))) == NULL) {
		do_consume(b, sh, buf_avail(b));
		return 1;
	}
	do_consume(b, sh, (size_t)(lf - buf_head(b)) + 1);
	return 0;
}

static void
do_getlines(struct buf *b, struct shadow *sh, size_t max, int *skipping)
{
	const char *line, *head, *unread;
	size_t len, avail, term, scan;
	enum buf_line r;
	int crlf;

	for (;;) {
		if (*skipping && (*skipping = do_skip(b, sh)) != 0)
			return;
		check_buf(b, sh);
		avail = sh->len - sh->pos;
		unread = sh->bytes + sh->pos;
		head = avail > 0 ? buf_head(b) : NULL;
		line = NULL;
		len = 12345;
		crlf = -1;
		r = buf_getline(b, max, &line, &len, &crlf);
		scan = avail < max ? avail : max;
		switch (r) {
		case BUF_LINE:
			FUZZ_CHECK(avail > 0 && line == head);
			FUZZ_CHECK(crlf == 0 || crlf == 1);
			term = crlf ? 2 : 1;
			FUZZ_CHECK(len + term <= max && len + term <= avail);
			/* The line is the shadow's next line, LF not in it. */
			FUZZ_CHECK(memcmp(line, unread, len) == 0);
			FUZZ_CHECK(memchr(unread, '\n', len) == NULL);
			FUZZ_CHECK(unread[len + term - 1] == '\n');
			FUZZ_CHECK(!crlf || unread[len] == '\r');
			FUZZ_CHECK(crlf || len == 0 || unread[len - 1] != '\r');
			sh->pos += len + term;
			sh->lines += len + term;
			check_buf(b, sh);
			break;
		case BUF_NEED_MORE:
			FUZZ_CHECK(avail < max && memchr(unread, '\n', avail) == NULL);
			check_buf(b, sh);
			return;
		case BUF_TOO_LONG:
			/* Only with max bytes and no LF among them. */
			FUZZ_CHECK(avail >= max && memchr(unread, '\n', scan) == NULL);
			check_buf(b, sh);
			*skipping = 1;
			break;
		default:
			FUZZ_CHECK(!"unknown buf_getline result");
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct shadow sh;
	struct buf b;
	uint8_t op;
	size_t max;
	int skipping = 0;

	memset(&sh, 0, sizeof(sh));
	if ((sh.bytes = malloc(size > 0 ? size : 1)) == NULL)
		return 0;
	buf_init(&b);
	while (in.n > 0) {
		op = fuzz_take_byte(&in);
		switch (op % 5) {
		case 0:
		case 1:
			do_append(&b, &sh, &in, op % 5 == 1);
			break;
		case 2:
			max = (op & 0x80) ? SMTP_CMD_LINE_MAX : 1 + (size_t)fuzz_take_byte(&in);
			do_getlines(&b, &sh, max, &skipping);
			break;
		case 3:
			do_consume(&b, &sh, fuzz_take_byte(&in));
			break;
		default:
			buf_trim(&b);
			/* An emptied buffer gives its memory back. */
			if (sh.pos == sh.len)
				FUZZ_CHECK(b.data == NULL && b.cap == 0);
			break;
		}
		check_buf(&b, &sh);
	}
	/* Whatever is left must still split into lines correctly. */
	do_getlines(&b, &sh, SMTP_CMD_LINE_MAX, &skipping);
	buf_reset(&b);
	FUZZ_CHECK(b.data == NULL && b.len == 0 && b.off == 0 && b.cap == 0);
	free(sh.bytes);
	return 0;
}
