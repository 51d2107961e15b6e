/* fuzz_data.c - libFuzzer target for the DATA reader (smtp_data.h).
 * The first bytes of the input choose the bare CR/LF policy, the size limit
 * and a list of chunk sizes; the rest is the DATA stream. It is fed three
 * ways (all at once, in those chunks, one byte at a time) and each result
 * (stored bytes, size, error, done, consumed) must equal the others and the
 * result of ref_unstuff(), a deliberately naive reader that applies the
 * header's rules line by line.
 *
 * Input layout:
 *   byte 0      policy: bits 0-1 select reject/fix/allow (3 = an unknown
 *               value, which the reader must treat as reject)
 *   bytes 1-2   limit: top two bits of byte 1 pick a scale (tiny, up to
 *               16 KiB, 1 GiB, SIZE_MAX), the other 14 bits a value
 *   byte 3      number of chunk sizes that follow (0-7)
 *   bytes ...   chunk sizes 0-255, used in turn (a 0 is an empty feed)
 *   the rest    the bytes received after the DATA command's 354 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_msg.h"
#include "smtp_data.h"

struct result {
	struct fuzz_msg m;
	int done;
	size_t consumed;
};

/* Line content without its terminator: a CR in it is bare, since the only
 * CR followed by LF is the one the terminator took. */
static void
ref_text(struct fuzz_ref *f, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r')
			fuzz_ref_bare(f, '\r');
		else
			fuzz_ref_store(f, p[i]);
	}
}

/* The rules of smtp_data.h, one line at a time over the whole input.
 * A trailing line without LF is only partly decided: a leading "." (or
 * ".\r") might still become the end of data, and a final CR might still be
 * the first half of CRLF, so those bytes are held, not stored. */
static void
ref_unstuff(const char *p, size_t n, size_t max, enum smtp_bare bare, struct result *out)
{
	struct fuzz_ref f;
	const char *line, *lf;
	size_t off = 0, llen, blen;
	int prev_crlf = 1, crlf, done = 0;

	fuzz_ref_init(&f, n, max, bare);

	while (off < n) {
		line = p + off;
		if ((lf = memchr(line, '\n', n - off)) == NULL) {
			llen = n - off;
			if ((llen == 1 && line[0] == '.') ||
			    (llen == 2 && line[0] == '.' && line[1] == '\r')) {
				off = n;
				break;
			}
			if (line[0] == '.')
				line++, llen--;
			if (llen > 0 && line[llen - 1] == '\r')
				llen--;
			ref_text(&f, line, llen);
			off = n;
			break;
		}
		llen = (size_t)(lf - line); /* without the LF */
		crlf = llen > 0 && line[llen - 1] == '\r';
		blen = crlf ? llen - 1 : llen; /* without CR LF */
		off += llen + 1;
		if (crlf && blen == 1 && line[0] == '.' && prev_crlf) {
			done = 1;
			break;
		}
		/* RFC 5321 4.5.2: a "." with other octets after it is a
		 * stuffed dot; a lone "." line that did not end the data
		 * stays as it is. */
		if (blen > 1 && line[0] == '.') {
			line++;
			blen--;
		}
		ref_text(&f, line, blen);
		if (crlf) {
			fuzz_ref_store(&f, '\r');
			fuzz_ref_store(&f, '\n');
		} else
			fuzz_ref_bare(&f, '\n');
		prev_crlf = crlf;
	}
	out->m = f.m;
	out->done = done;
	out->consumed = off;
}

/* Feeds p[0..n) in chunks of the given sizes (used in turn; all of it at
 * once when there are none). After the end of data, one more feed must
 * consume nothing and say done again. */
static void
feed(const char *p, size_t n, size_t max, enum smtp_bare bare, const uint8_t *cuts, size_t ncuts,
    struct result *out)
{
	struct smtp_data *d;
	size_t off = 0, k = 0, chunk, used;
	int done = 0, all_zero = ncuts > 0;

	for (size_t i = 0; i < ncuts; i++)
		all_zero &= cuts[i] == 0;
	memset(out, 0, sizeof(*out));
	if ((d = smtp_data_new(max, bare, NULL, 0)) == NULL)
		abort();
	while (off < n) {
		chunk = ncuts == 0 ? n - off : cuts[k++ % ncuts];
		/* Only empty chunks: one empty feed, then the rest. */
		if (all_zero && k > 1)
			chunk = n - off;
		if (chunk > n - off)
			chunk = n - off;
		/* A chunk-sized heap copy: reading past it is caught. */
		char *c = malloc(chunk > 0 ? chunk : 1);
		FUZZ_CHECK(c != NULL);
		memcpy(c, p + off, chunk);
		done = -1;
		used = smtp_data_feed(d, c, chunk, &done);
		free(c);
		FUZZ_CHECK(done == 0 || done == 1);
		FUZZ_CHECK(used <= chunk);
		/* Everything is consumed unless the end was found. */
		FUZZ_CHECK(done || used == chunk);
		off += used;
		if (done)
			break;
	}
	if (done) {
		int again = 0;
		FUZZ_CHECK(smtp_data_feed(d, p, n, &again) == 0 && again == 1);
	}
	out->done = done == 1;
	out->consumed = off;
	fuzz_msg_read(d, max, &out->m);
}

static void
check_same(const struct result *a, const struct result *b)
{
	FUZZ_CHECK(a->done == b->done);
	FUZZ_CHECK(a->consumed == b->consumed);
	fuzz_msg_same(&a->m, &b->m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct result whole, chunked, bytewise, ref;
	struct fuzz_stream_opts o;
	uint8_t one = 1;
	enum smtp_bare bare, eff;
	size_t max;

	/* The reader treats an unknown policy as reject. */
	fuzz_take_stream_opts(&in, &o, SMTP_BARE_FIX, SMTP_BARE_ALLOW);
	bare = (enum smtp_bare)o.bare;
	eff = (enum smtp_bare)o.eff;
	max = o.max;

	ref_unstuff((const char *)in.p, in.n, max, eff, &ref);
	feed((const char *)in.p, in.n, max, bare, NULL, 0, &whole);
	feed((const char *)in.p, in.n, max, bare, o.cuts, o.ncuts, &chunked);
	feed((const char *)in.p, in.n, max, bare, &one, 1, &bytewise);
	check_same(&whole, &ref);
	check_same(&chunked, &ref);
	check_same(&bytewise, &ref);

	free(ref.m.bytes);
	free(whole.m.bytes);
	free(chunked.m.bytes);
	free(bytewise.m.bytes);
	return 0;
}
