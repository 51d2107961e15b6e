/* fuzz_bdat.c - libFuzzer target for BDAT (smtp_bdat.h): the command's
 * argument and the chunk reader over the DATA reader's raw mode.
 *
 * The argument: every line is parsed by smtp_bdat_parse() and by
 * ref_parse(), a reference written from the header, and both must agree.
 *
 * The chunks: the input after the header is a stream as a session reads
 * it after its first BDAT line: commands ending in LF, each followed by
 * the chunk it counts. A line that does not parse ends the stream (the
 * session closes there), so does LAST. A chunk whose size starts with "0"
 * is read and discarded (a refused chunk), the others are stored. The
 * stream is fed three ways (all at once, in the chunk sizes the header
 * picks, one byte at a time) and each result (stored bytes, size, error,
 * chunks, LAST seen) must equal the others and
 * ref_stream()'s, which applies the bare CR/LF rules to the stored chunks
 * joined together, one byte at a time.
 *
 * Input layout:
 *   byte 0      policy: bits 0-1 select reject/fix/allow (3 = unknown,
 *               treated as reject)
 *   bytes 1-2   limit: top two bits of byte 1 pick a scale (tiny, up to
 *               16 KiB, 1 GiB, SIZE_MAX), the other 14 bits a value
 *   byte 3      number of feed sizes that follow (0-7)
 *   bytes ...   feed sizes 0-255, used in turn
 *   the rest    "BDAT" arguments and chunks: "3\r\nabc0 LAST\n" */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_msg.h"
#include "smtp_bdat.h"
#include "smtp_data.h"

#define LINE_MAX_FUZZ 64

struct result {
	struct fuzz_msg m;
	unsigned chunks;
	int last;
};

/* The header's grammar, read differently: digits, then optionally spaces
 * and LAST; the value compared as a decimal string with 2^63 - 1. */
static int
ref_parse(const char *a, size_t n, uint64_t *size, int *last)
{
	static const char max[] = "9223372036854775807";
	size_t d = 0, z = 0, i;
	uint64_t v = 0;

	while (d < n && a[d] >= '0' && a[d] <= '9')
		d++;
	if (d == 0)
		return -1;
	i = d;
	*last = 0;
	if (i < n) {
		if (a[i] != ' ')
			return -1;
		while (i < n && a[i] == ' ')
			i++;
		if (n - i != 4 || (a[i] != 'L' && a[i] != 'l') ||
		    (a[i + 1] != 'A' && a[i + 1] != 'a') || (a[i + 2] != 'S' && a[i + 2] != 's') ||
		    (a[i + 3] != 'T' && a[i + 3] != 't'))
			return -1;
		*last = 1;
	}
	while (z < d - 1 && a[z] == '0')
		z++;
	if (d - z > 19 || (d - z == 19 && memcmp(a + z, max, 19) > 0))
		return -1;
	for (i = z; i < d; i++)
		v = v * 10 + (uint64_t)(a[i] - '0');
	*size = v;
	return 0;
}

/* One line of the stream: smtp_bdat_parse() and ref_parse() must agree.
 * A trailing CR is not part of the argument. */
static int
parse_line(const char *line, size_t n, uint64_t *size, int *last)
{
	uint64_t s1 = 7, s2 = 7;
	int l1 = 7, l2 = 7, r1, r2;

	if (n > 0 && line[n - 1] == '\r')
		n--;
	r1 = smtp_bdat_parse(line, n, &s1, &l1);
	r2 = ref_parse(line, n, &s2, &l2);
	FUZZ_CHECK(r1 == r2);
	if (r1 == -1) {
		FUZZ_CHECK(s1 == 7 && l1 == 7); /* untouched */
		return -1;
	}
	FUZZ_CHECK(s1 == s2 && l1 == l2 && s1 <= SMTP_BDAT_SIZE_MAX);
	*size = s1;
	*last = l1;
	return 0;
}

/* The whole stream at once: the commands found line by line, the stored
 * chunks joined, then the message rules over them. A CR at the very end
 * of an unfinished message is still held (it may be half of a CRLF). */
static void
ref_stream(const char *p, size_t n, size_t max, enum smtp_bare bare, struct result *out)
{
	struct fuzz_ref f;
	char *msg = malloc(n + 1);
	size_t off = 0, mlen = 0, i;
	const char *lf;
	uint64_t size;
	int last = 0;

	FUZZ_CHECK(msg != NULL);
	memset(out, 0, sizeof(*out));
	fuzz_ref_init(&f, n, max, bare);
	while (off < n && !last) {
		lf = memchr(p + off, '\n', n - off < LINE_MAX_FUZZ ? n - off : LINE_MAX_FUZZ);
		if (lf == NULL)
			break;
		if (parse_line(p + off, (size_t)(lf - (p + off)), &size, &last) == -1) {
			off = (size_t)(lf - p) + 1;
			break;
		}
		int keep = p[off] != '0';
		off = (size_t)(lf - p) + 1;
		out->chunks++;
		size_t take = size < n - off ? (size_t)size : n - off;
		if (keep) {
			memcpy(msg + mlen, p + off, take);
			mlen += take;
		}
		off += take;
		if (take < size)
			last = 0; /* the chunk never finished */
	}
	for (i = 0; i < mlen; i++) {
		if (msg[i] == '\r' && i + 1 < mlen && msg[i + 1] == '\n') {
			fuzz_ref_store(&f, '\r');
			fuzz_ref_store(&f, '\n');
			i++;
		} else if (msg[i] == '\r' && i + 1 == mlen && !last)
			break; /* held */
		else if (msg[i] == '\r' || msg[i] == '\n')
			fuzz_ref_bare(&f, msg[i]);
		else
			fuzz_ref_store(&f, msg[i]);
	}
	out->last = last;
	out->m = f.m;
	free(msg);
}

/* A session's loop over the same stream, fed in pieces of the given sizes
 * (used in turn; all at once when there are none): lines gathered until
 * their LF, chunks through smtp_bdat_feed(). */
static void
feed(const char *p, size_t n, size_t max, enum smtp_bare bare, const uint8_t *cuts, size_t ncuts,
    struct result *out)
{
	struct smtp_data *d;
	struct smtp_bdat b;
	char line[LINE_MAX_FUZZ];
	size_t llen = 0, off = 0, k = 0, piece, used;
	int in_chunk = 0, keep = 0, done, stop = 0, got_last = 0, all_zero = ncuts > 0;
	uint64_t size;

	for (size_t i = 0; i < ncuts; i++)
		all_zero &= cuts[i] == 0;
	memset(out, 0, sizeof(*out));
	if ((d = smtp_data_new(max, bare, NULL, 0)) == NULL)
		abort();
	smtp_data_raw(d);
	while (off < n && !stop) {
		piece = ncuts == 0 ? n - off : cuts[k++ % ncuts];
		if (all_zero && k > 1)
			piece = n - off;
		if (piece > n - off)
			piece = n - off;
		/* A piece-sized heap copy: reading past it is caught. */
		char *c = malloc(piece > 0 ? piece : 1);
		FUZZ_CHECK(c != NULL);
		memcpy(c, p + off, piece);
		size_t i = 0;
		while (i < piece && !stop) {
			if (in_chunk) {
				used = smtp_bdat_feed(&b, keep ? d : NULL, c + i, piece - i, &done);
				FUZZ_CHECK(used <= piece - i);
				FUZZ_CHECK(done || used == piece - i);
				i += used;
				if (done) {
					in_chunk = 0;
					stop = got_last = b.last;
				}
				continue;
			}
			if (llen == LINE_MAX_FUZZ) {
				stop = 1; /* as the reference: no LF in time */
				break;
			}
			line[llen++] = c[i++];
			if (line[llen - 1] != '\n')
				continue;
			if (parse_line(line, llen - 1, &size, &done) == -1) {
				stop = 1;
				break;
			}
			keep = line[0] != '0';
			llen = 0;
			out->chunks++;
			smtp_bdat_start(&b, size, done);
			in_chunk = 1;
			/* A chunk of 0 ends at once, as the session does. */
			used = smtp_bdat_feed(&b, keep ? d : NULL, c + i, 0, &done);
			FUZZ_CHECK(used == 0);
			if (done) {
				in_chunk = 0;
				stop = got_last = b.last;
			}
		}
		off += i;
		free(c);
	}
	out->last = got_last;
	if (out->last)
		smtp_data_close(d);
	fuzz_msg_read(d, max, &out->m);
}

static void
check_same(const struct result *a, const struct result *b)
{
	FUZZ_CHECK(a->last == b->last);
	FUZZ_CHECK(a->chunks == b->chunks);
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

	ref_stream((const char *)in.p, in.n, max, eff, &ref);
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
