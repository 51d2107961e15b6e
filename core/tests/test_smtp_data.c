/* test_smtp_data.c - the DATA reader: a table of inputs with the bytes, error
 * and consumed count each must give (dot-stuffing, the SMTP smuggling
 * sequences under every bare-CR/LF policy, the size limit), then a property
 * test: random inputs fed in random chunks must match feeding them whole and
 * a deliberately naive line-by-line reference written from the header. */

#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "msgstore.h"
#include "smtp_data.h"
#include "test.h"

#define BYTES(s) (s), (sizeof(s) - 1)

enum { REJECT = SMTP_BARE_REJECT, FIX = SMTP_BARE_FIX, ALLOW = SMTP_BARE_ALLOW };

struct data_case {
	const char *in;
	size_t inlen;
	int bare;
	size_t max;
	const char *out;
	size_t outlen;
	enum smtp_data_err err;
	int done;
	size_t consumed;
	size_t size;
};

#define BIG 1000

/* Random inputs in the property test; raise it to search harder
 * (-DPROPERTY_RUNS=1000000). */
#ifndef PROPERTY_RUNS
#define PROPERTY_RUNS 600
#endif

/* input, policy, max_size, stored, error, done, consumed, size */
static const struct data_case data_cases[] = {
	/* The end marker, and where consuming stops. */
	{ BYTES("Hello\r\n.\r\n"), REJECT, BIG, BYTES("Hello\r\n"), SMTP_DATA_OK, 1, 10, 7 },
	{ BYTES(".\r\n"), REJECT, BIG, BYTES(""), SMTP_DATA_OK, 1, 3, 0 },
	{ BYTES(".\r\nMAIL FROM:<a@b>\r\n"), REJECT, BIG, BYTES(""), SMTP_DATA_OK, 1, 3, 0 },
	{ BYTES("a\r\n.\r\nQUIT\r\n"), REJECT, BIG, BYTES("a\r\n"), SMTP_DATA_OK, 1, 6, 3 },
	{ BYTES("a\r\n.\r\n.\r\n"), REJECT, BIG, BYTES("a\r\n"), SMTP_DATA_OK, 1, 6, 3 },
	{ BYTES("\r\n.\r\n"), REJECT, BIG, BYTES("\r\n"), SMTP_DATA_OK, 1, 5, 2 },
	{ BYTES("a\0b\r\n.\r\n"), REJECT, BIG, BYTES("a\0b\r\n"), SMTP_DATA_OK, 1, 8, 5 },
	{ BYTES("a\r\n. \r\n.\r\n"), REJECT, BIG, BYTES("a\r\n \r\n"), SMTP_DATA_OK, 1, 10, 6 },
	{ BYTES("a\r\nx.\r\n.\r\n"), REJECT, BIG, BYTES("a\r\nx.\r\n"), SMTP_DATA_OK, 1, 10, 7 },

	/* Not finished yet: held bytes are not stored. */
	{ BYTES(""), REJECT, BIG, BYTES(""), SMTP_DATA_OK, 0, 0, 0 },
	{ BYTES("a\r\n"), REJECT, BIG, BYTES("a\r\n"), SMTP_DATA_OK, 0, 3, 3 },
	{ BYTES("a\r\n."), REJECT, BIG, BYTES("a\r\n"), SMTP_DATA_OK, 0, 4, 3 },
	{ BYTES("a\r\n.\r"), REJECT, BIG, BYTES("a\r\n"), SMTP_DATA_OK, 0, 5, 3 },
	{ BYTES("abc\r"), REJECT, BIG, BYTES("abc"), SMTP_DATA_OK, 0, 4, 3 },

	/* Dot-unstuffing (RFC 5321 4.5.2). */
	{ BYTES("..x\r\n.\r\n"), REJECT, BIG, BYTES(".x\r\n"), SMTP_DATA_OK, 1, 8, 4 },
	{ BYTES(".x\r\n.\r\n"), REJECT, BIG, BYTES("x\r\n"), SMTP_DATA_OK, 1, 7, 3 },
	{ BYTES("a\r\n..\r\n.\r\n"), REJECT, BIG, BYTES("a\r\n.\r\n"), SMTP_DATA_OK, 1, 10, 6 },
	{ BYTES("...\r\n.\r\n"), REJECT, BIG, BYTES("..\r\n"), SMTP_DATA_OK, 1, 8, 4 },
	{ BYTES("a\r\n..\r\n..\r\n.\r\n"), REJECT, BIG, BYTES("a\r\n.\r\n.\r\n"), SMTP_DATA_OK, 1,
	    14, 9 },
	/* A lone "." line after a bare LF is kept and does not end. */
	{ BYTES("a\n.\r\nb\r\n.\r\n"), ALLOW, BIG, BYTES("a\n.\r\nb\r\n"), SMTP_DATA_OK, 1, 11, 8 },
	{ BYTES("x\r\n.\n.\r\n"), ALLOW, BIG, BYTES("x\r\n.\n.\r\n"), SMTP_DATA_OK, 0, 8, 8 },
	{ BYTES(".\n.\r\n"), ALLOW, BIG, BYTES(".\n.\r\n"), SMTP_DATA_OK, 0, 5, 5 },
	{ BYTES("..\n.\r\n"), ALLOW, BIG, BYTES(".\n.\r\n"), SMTP_DATA_OK, 0, 6, 5 },
	{ BYTES("a\n.\r\n.\r\n"), FIX, BIG, BYTES("a\r\n.\r\n"), SMTP_DATA_OK, 1, 8, 6 },

	/* "\n.\n": bare LF, a "." line, bare LF. */
	{ BYTES("a\n.\nb\r\n.\r\n"), REJECT, BIG, BYTES("a"), SMTP_DATA_ERR_BARE, 1, 10, 7 },
	{ BYTES("a\n.\nb\r\n.\r\n"), FIX, BIG, BYTES("a\r\n.\r\nb\r\n"), SMTP_DATA_OK, 1, 10, 9 },
	{ BYTES("a\n.\nb\r\n.\r\n"), ALLOW, BIG, BYTES("a\n.\nb\r\n"), SMTP_DATA_OK, 1, 10, 7 },
	{ BYTES("a\n.\n"), ALLOW, BIG, BYTES("a\n.\n"), SMTP_DATA_OK, 0, 4, 4 },
	{ BYTES("\n.\n"), FIX, BIG, BYTES("\r\n.\r\n"), SMTP_DATA_OK, 0, 3, 5 },
	/* "\r\n.\n": the "." line ends in a bare LF. */
	{ BYTES("a\r\n.\nb\r\n.\r\n"), REJECT, BIG, BYTES("a\r\n."), SMTP_DATA_ERR_BARE, 1, 11, 8 },
	{ BYTES("a\r\n.\nb\r\n.\r\n"), FIX, BIG, BYTES("a\r\n.\r\nb\r\n"), SMTP_DATA_OK, 1, 11, 9 },
	{ BYTES("a\r\n.\nb\r\n.\r\n"), ALLOW, BIG, BYTES("a\r\n.\nb\r\n"), SMTP_DATA_OK, 1, 11, 8 },
	{ BYTES("a\r\n.\n"), ALLOW, BIG, BYTES("a\r\n.\n"), SMTP_DATA_OK, 0, 5, 5 },
	/* "\n.\r\n": the "." line follows a bare LF. */
	{ BYTES("a\n.\r\nb\r\n.\r\n"), REJECT, BIG, BYTES("a"), SMTP_DATA_ERR_BARE, 1, 11, 8 },
	{ BYTES("a\n.\r\nb\r\n.\r\n"), FIX, BIG, BYTES("a\r\n.\r\nb\r\n"), SMTP_DATA_OK, 1, 11, 9 },
	{ BYTES("a\n.\r\nb\r\n.\r\n"), ALLOW, BIG, BYTES("a\n.\r\nb\r\n"), SMTP_DATA_OK, 1, 11, 8 },
	{ BYTES("a\n.\r\n"), FIX, BIG, BYTES("a\r\n.\r\n"), SMTP_DATA_OK, 0, 5, 6 },
	/* "\r.\r\n": a bare CR is not a line end, so no "." line at all. */
	{ BYTES("a\r.\r\nb\r\n.\r\n"), REJECT, BIG, BYTES("a"), SMTP_DATA_ERR_BARE, 1, 11, 8 },
	{ BYTES("a\r.\r\nb\r\n.\r\n"), FIX, BIG, BYTES("a\r\n.\r\nb\r\n"), SMTP_DATA_OK, 1, 11, 9 },
	{ BYTES("a\r.\r\nb\r\n.\r\n"), ALLOW, BIG, BYTES("a\r.\r\nb\r\n"), SMTP_DATA_OK, 1, 11, 8 },
	{ BYTES("a\r.\r\n"), ALLOW, BIG, BYTES("a\r.\r\n"), SMTP_DATA_OK, 0, 5, 5 },

	/* Bare CR elsewhere. */
	{ BYTES("a\rb\r\n.\r\n"), REJECT, BIG, BYTES("a"), SMTP_DATA_ERR_BARE, 1, 8, 5 },
	{ BYTES("a\rb\r\n.\r\n"), FIX, BIG, BYTES("a\r\nb\r\n"), SMTP_DATA_OK, 1, 8, 6 },
	{ BYTES("a\rb\r\n.\r\n"), ALLOW, BIG, BYTES("a\rb\r\n"), SMTP_DATA_OK, 1, 8, 5 },
	/* CR CR LF: the first CR is bare, the line still ends in CRLF. */
	{ BYTES("a\r\r\n.\r\n"), REJECT, BIG, BYTES("a"), SMTP_DATA_ERR_BARE, 1, 7, 4 },
	{ BYTES("a\r\r\n.\r\n"), FIX, BIG, BYTES("a\r\n\r\n"), SMTP_DATA_OK, 1, 7, 5 },
	{ BYTES("a\r\r\n.\r\n"), ALLOW, BIG, BYTES("a\r\r\n"), SMTP_DATA_OK, 1, 7, 4 },
	{ BYTES("\r\r\r\n.\r\n"), FIX, BIG, BYTES("\r\n\r\n\r\n"), SMTP_DATA_OK, 1, 7, 6 },
	/* ".\rx": stuffed dot removed, then a bare CR. */
	{ BYTES(".\rx\r\n.\r\n"), ALLOW, BIG, BYTES("\rx\r\n"), SMTP_DATA_OK, 1, 8, 4 },
	{ BYTES(".\rx\r\n.\r\n"), FIX, BIG, BYTES("\r\nx\r\n"), SMTP_DATA_OK, 1, 8, 5 },
	{ BYTES(".\r.\r\n.\r\n"), ALLOW, BIG, BYTES("\r.\r\n"), SMTP_DATA_OK, 1, 8, 4 },
	{ BYTES(".\r\r\n.\r\n"), ALLOW, BIG, BYTES("\r\r\n"), SMTP_DATA_OK, 1, 7, 3 },
	/* Bare LF on the first line. */
	{ BYTES("\n.\r\n"), REJECT, BIG, BYTES(""), SMTP_DATA_ERR_BARE, 0, 4, 4 },

	/* Size: the limit is on stored (unstuffed, fixed) bytes. */
	{ BYTES("Hello\r\n.\r\n"), REJECT, 7, BYTES("Hello\r\n"), SMTP_DATA_OK, 1, 10, 7 },
	{ BYTES("Hello\r\n.\r\n"), REJECT, 6, BYTES("Hello\r"), SMTP_DATA_ERR_SIZE, 1, 10, 7 },
	{ BYTES("a\r\n.\r\n"), REJECT, 0, BYTES(""), SMTP_DATA_ERR_SIZE, 1, 6, 3 },
	{ BYTES(".\r\n"), REJECT, 0, BYTES(""), SMTP_DATA_OK, 1, 3, 0 },
	{ BYTES("aaaa\r\nbbbb\r\n.\r\nX"), REJECT, 3, BYTES("aaa"), SMTP_DATA_ERR_SIZE, 1, 15, 12 },
	{ BYTES("..\r\n.\r\n"), REJECT, 3, BYTES(".\r\n"), SMTP_DATA_OK, 1, 7, 3 },
	{ BYTES("a\nb\r\n.\r\n"), FIX, 3, BYTES("a\r\n"), SMTP_DATA_ERR_SIZE, 1, 8, 6 },
	{ BYTES("a\nb\r\n.\r\n"), FIX, 2, BYTES("a\r"), SMTP_DATA_ERR_SIZE, 1, 8, 6 },
	{ BYTES("a\nb\r\n.\r\n"), ALLOW, 5, BYTES("a\nb\r\n"), SMTP_DATA_OK, 1, 8, 5 },
	/* The first error sticks: size, then a bare LF. */
	{ BYTES("aaaa\nb\r\n.\r\n"), REJECT, 2, BYTES("aa"), SMTP_DATA_ERR_SIZE, 1, 11, 8 },
	/* A bare LF, then size. */
	{ BYTES("a\nbbbbbb\r\n.\r\n"), REJECT, 3, BYTES("a"), SMTP_DATA_ERR_BARE, 1, 13, 10 },
	/* After an error, smuggling sequences still do not end the data. */
	{ BYTES("aaaa\r\n.\nX\r\n.\r\n"), ALLOW, 1, BYTES("a"), SMTP_DATA_ERR_SIZE, 1, 14, 11 },
};

/* Feeds in[0..n) to d in chunks of the given sizes (cycled; 0 means all at
 * once), stopping at the end of data. Returns the total consumed. */
static size_t
feed_chunks(
    struct smtp_data *d, const char *in, size_t n, const size_t *sizes, size_t nsizes, int *done)
{
	size_t off = 0, k = 0, chunk, got;

	*done = 0;
	do {
		chunk = nsizes == 0 ? n - off : sizes[k++ % nsizes];
		if (chunk > n - off)
			chunk = n - off;
		got = smtp_data_feed(d, in + off, chunk, done);
		if (got > chunk) {
			/* Consuming more than offered is a bug. */
			CHECK_MSG(got <= chunk, "consumed %zu of %zu", got, chunk);
			break;
		}
		if (!*done && got != chunk) {
			CHECK_MSG(got == chunk, "short feed without done");
			break;
		}
		off += got;
	} while (!*done && off < n);
	return off;
}

static int
same_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void
test_table(void)
{
	static const size_t ones[] = { 1 }, mixed[] = { 2, 1, 3 };
	const size_t *sizes[] = { NULL, ones, mixed };
	const size_t nsizes[] = { 0, 1, 3 };
	struct smtp_data *d;
	const char *got;
	size_t i, m, len, used;
	int done;

	for (i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
		const struct data_case *c = &data_cases[i];

		for (m = 0; m < 3; m++) {
			if ((d = smtp_data_new(c->max, c->bare, NULL, 0)) == NULL) {
				CHECK(d != NULL);
				return;
			}
			used = feed_chunks(d, c->in, c->inlen, sizes[m], nsizes[m], &done);
			got = smtp_data_bytes(d, &len);
			CHECK_MSG(same_bytes(got, len, c->out, c->outlen),
			    "data row %zu mode %zu: stored %zu bytes", i, m, len);
			CHECK_MSG(smtp_data_error(d) == c->err, "data row %zu mode %zu: error %s",
			    i, m, smtp_data_err_str(smtp_data_error(d)));
			CHECK_MSG(done == c->done && used == c->consumed,
			    "data row %zu mode %zu: done %d consumed %zu", i, m, done, used);
			CHECK_MSG(smtp_data_size(d) == c->size, "data row %zu mode %zu: size %zu",
			    i, m, smtp_data_size(d));
			smtp_data_free(d);
		}
	}
}

static void
test_api(void)
{
	static const char *const spill_dirs[] = { "/tmp", NULL };
	static const char *const bad_dirs[] = { "/proc/no/such/dir", NULL };
	struct smtp_data *d;
	struct msgstore *ms;
	enum smtp_bare b;
	const char *bytes;
	size_t len;
	int done;

	/* After the end, more input is not consumed. */
	d = smtp_data_new(BIG, SMTP_BARE_REJECT, NULL, 0);
	CHECK(d != NULL);
	CHECK(smtp_data_feed(d, "", 0, &done) == 0 && done == 0);
	CHECK(smtp_data_feed(d, BYTES("x\r\n.\r\n"), &done) == 6 && done == 1);
	CHECK(smtp_data_feed(d, BYTES("y\r\n"), &done) == 0 && done == 1);
	bytes = smtp_data_bytes(d, &len);
	CHECK(same_bytes(bytes, len, BYTES("x\r\n")));

	/* take() hands the store over and leaves nothing behind. */
	ms = smtp_data_take(d);
	CHECK(ms != NULL);
	bytes = msgstore_head(ms, &len);
	CHECK(same_bytes(bytes, len, BYTES("x\r\n")) && msgstore_len(ms) == 3);
	msgstore_free(ms);
	bytes = smtp_data_bytes(d, &len);
	CHECK(bytes != NULL && len == 0);
	CHECK(smtp_data_take(d) == NULL && smtp_data_held(d) == 0);
	CHECK(smtp_data_size(d) == 3);
	smtp_data_free(d);

	/* Nothing stored: an empty store. */
	d = smtp_data_new(BIG, SMTP_BARE_REJECT, NULL, 0);
	CHECK(smtp_data_feed(d, BYTES(".\r\n"), &done) == 3 && done == 1);
	ms = smtp_data_take(d);
	CHECK(ms != NULL && msgstore_len(ms) == 0);
	msgstore_free(ms);
	smtp_data_free(d);
	d = smtp_data_new(0, SMTP_BARE_FIX, NULL, 0);
	CHECK(smtp_data_feed(d, BYTES("abc\r\n.\r\n"), &done) == 8 && done);
	CHECK(smtp_data_error(d) == SMTP_DATA_ERR_SIZE);
	ms = smtp_data_take(d);
	CHECK(ms != NULL && msgstore_len(ms) == 0);
	msgstore_free(ms);
	smtp_data_free(d);

	/* Past the store's memory bound the bytes go to a file, and the
	 * limit still covers the whole message. */
	d = smtp_data_new(40, SMTP_BARE_REJECT, spill_dirs, 8);
	CHECK(smtp_data_feed(d, BYTES("Subject: spilled\r\n\r\nbody\r\n"), &done) == 26 && !done);
	CHECK(smtp_data_held(d) >= MSGSTORE_WBUF);
	CHECK(smtp_data_feed(d, BYTES("..more\r\n.\r\n"), &done) == 11 && done);
	CHECK(smtp_data_error(d) == SMTP_DATA_OK);
	ms = smtp_data_take(d);
	CHECK(ms != NULL && msgstore_spilled(ms) && msgstore_len(ms) == 33);
	if (ms != NULL) {
		char whole[64];
		int fd = open(spill_dirs[0], O_TMPFILE | O_RDWR, 0600);
		CHECK(fd != -1 && msgstore_write(ms, fd) == 0);
		CHECK(pread(fd, whole, sizeof(whole), 0) == 33);
		CHECK(same_bytes(whole, 33, BYTES("Subject: spilled\r\n\r\nbody\r\n.more\r\n")));
		close(fd);
	}
	msgstore_free(ms);
	smtp_data_free(d);
	d = smtp_data_new(40, SMTP_BARE_REJECT, spill_dirs, 8);
	CHECK(smtp_data_feed(
		  d, BYTES("0123456789012345678901234567890123456789x\r\n.\r\n"), &done) == 46 &&
	    done);
	CHECK(smtp_data_error(d) == SMTP_DATA_ERR_SIZE && smtp_data_size(d) == 43);
	smtp_data_free(d);

	/* A store whose directories all fail: a storage error, with its errno. */
	d = smtp_data_new(BIG, SMTP_BARE_REJECT, bad_dirs, 4);
	CHECK(smtp_data_feed(d, BYTES("long enough\r\n.\r\n"), &done) == 16 && done);
	CHECK(smtp_data_error(d) == SMTP_DATA_ERR_STORAGE && smtp_data_errno(d) != 0);
	smtp_data_free(d);

	smtp_data_free(NULL);

	CHECK(smtp_bare_parse("reject", &b) == 0 && b == SMTP_BARE_REJECT);
	CHECK(smtp_bare_parse("fix", &b) == 0 && b == SMTP_BARE_FIX);
	CHECK(smtp_bare_parse("allow", &b) == 0 && b == SMTP_BARE_ALLOW);
	CHECK(smtp_bare_parse("normalize", &b) == -1);
	CHECK(smtp_bare_parse("", &b) == -1);
	for (b = SMTP_BARE_REJECT; b <= SMTP_BARE_ALLOW; b++) {
		enum smtp_bare back;

		CHECK(smtp_bare_parse(smtp_bare_str(b), &back) == 0 && back == b);
	}
	CHECK_STR(smtp_data_err_str(SMTP_DATA_OK), "ok");
	CHECK(strcmp(smtp_data_err_str(SMTP_DATA_ERR_SIZE),
		  smtp_data_err_str(SMTP_DATA_ERR_BARE)) != 0);
	CHECK(strcmp(smtp_data_err_str(SMTP_DATA_ERR_NOMEM), smtp_data_err_str(SMTP_DATA_OK)) != 0);
}

/* A large, ordinary message: many CRLF lines, some stuffed, fed whole and
 * in small chunks. Also a line of a million bare CRs, which a reader that
 * rescans for LF after each CR would take minutes over. */
static void
test_large(void)
{
	static const size_t ones[] = { 1 }, sevens[] = { 7, 4093 };
	struct smtp_data *d;
	char *in, *want, *p, *w;
	const char *got;
	size_t n, wlen, len, used, k;
	clock_t t0;
	int done;

	n = 110 * 1024;
	in = malloc(n + 16);
	want = malloc(n + 16);
	CHECK(in != NULL && want != NULL);
	if (in == NULL || want == NULL)
		goto out;
	for (p = in, w = want, k = 0; (size_t)(p - in) < n - 100; k++) {
		if (k % 10 == 3) {
			/* A stuffed line: sent "..", stored ".". */
			memcpy(p, "..line\r\n", 8);
			memcpy(w, ".line\r\n", 7);
			p += 8;
			w += 7;
		} else {
			int l = snprintf(p, 64, "line %zu of a big message\r\n", k);

			memcpy(w, p, (size_t)l);
			p += l;
			w += l;
		}
	}
	memcpy(p, ".\r\n", 3);
	n = (size_t)(p - in) + 3;
	wlen = (size_t)(w - want);

	d = smtp_data_new(n, SMTP_BARE_REJECT, NULL, 0);
	used = feed_chunks(d, in, n, NULL, 0, &done);
	got = smtp_data_bytes(d, &len);
	CHECK(done && used == n && smtp_data_error(d) == SMTP_DATA_OK);
	CHECK(same_bytes(got, len, want, wlen));
	smtp_data_free(d);

	d = smtp_data_new(n, SMTP_BARE_REJECT, NULL, 0);
	used = feed_chunks(d, in, n, ones, 1, &done);
	got = smtp_data_bytes(d, &len);
	CHECK(done && used == n && same_bytes(got, len, want, wlen));
	smtp_data_free(d);

	d = smtp_data_new(wlen - 1, SMTP_BARE_REJECT, NULL, 0);
	used = feed_chunks(d, in, n, sevens, 2, &done);
	got = smtp_data_bytes(d, &len);
	CHECK(done && used == n && smtp_data_error(d) == SMTP_DATA_ERR_SIZE);
	CHECK(same_bytes(got, len, want, wlen - 1));
	CHECK(smtp_data_size(d) == wlen);
	smtp_data_free(d);

	free(in);
	in = malloc(1024 * 1024 + 8);
	CHECK(in != NULL);
	if (in == NULL)
		goto out;
	memset(in, '\r', 1024 * 1024);
	memcpy(in + 1024 * 1024, "\n.\r\n", 4);
	d = smtp_data_new(SIZE_MAX, SMTP_BARE_ALLOW, NULL, 0);
	t0 = clock();
	used = smtp_data_feed(d, in, 1024 * 1024 + 4, &done);
	CHECK_MSG((double)(clock() - t0) / CLOCKS_PER_SEC < 2.0, "a line of bare CRs took %.1f s",
	    (double)(clock() - t0) / CLOCKS_PER_SEC);
	CHECK(done && used == 1024 * 1024 + 4);
	CHECK(smtp_data_size(d) == 1024 * 1024 + 1);
	smtp_data_free(d);
out:
	free(in);
	free(want);
}

/*
 * The reference: the header's rules applied to whole lines, one byte at a
 * time, with no state carried between calls. It is slow and obvious on
 * purpose; the reader must agree with it on every input.
 */
struct ref {
	char *out;
	size_t len;
	size_t size;
	size_t max;
	int bare;
	enum smtp_data_err err;
	int done;
	size_t consumed;
};

/* One byte of the unstuffed message. */
static void
ref_put(struct ref *r, char c)
{
	r->size++;
	if (r->err != SMTP_DATA_OK)
		return;
	if (r->len == r->max) {
		r->err = SMTP_DATA_ERR_SIZE;
		return;
	}
	r->out[r->len++] = c;
}

/* A bare CR or bare LF, per policy. */
static void
ref_bare(struct ref *r, char c)
{
	if (r->bare == FIX) {
		ref_put(r, '\r');
		ref_put(r, '\n');
	} else if (r->bare == ALLOW)
		ref_put(r, c);
	else {
		if (r->err == SMTP_DATA_OK)
			r->err = SMTP_DATA_ERR_BARE;
		r->size++;
	}
}

/* Line content: every CR in it is bare (a CR before the LF belongs to the
 * terminator, not the content). */
static void
ref_content(struct ref *r, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] == '\r')
			ref_bare(r, '\r');
		else
			ref_put(r, s[i]);
	}
}

static void
ref_run(struct ref *r, const char *in, size_t n)
{
	size_t pos = 0, lf, clen;
	int crlf, prev_crlf = 1;

	r->out = malloc(n * 2 + 1);
	r->len = r->size = 0;
	r->err = SMTP_DATA_OK;
	r->done = 0;
	while (pos < n) {
		for (lf = pos; lf < n && in[lf] != '\n'; lf++)
			;
		if (lf == n)
			break;
		crlf = lf > pos && in[lf - 1] == '\r';
		clen = lf - pos - (crlf ? 1 : 0);
		if (clen == 1 && in[pos] == '.' && crlf && prev_crlf) {
			r->done = 1;
			r->consumed = lf + 1;
			return;
		}
		if (clen > 1 && in[pos] == '.')
			ref_content(r, in + pos + 1, clen - 1);
		else
			ref_content(r, in + pos, clen);
		if (crlf) {
			ref_put(r, '\r');
			ref_put(r, '\n');
		} else
			ref_bare(r, '\n');
		prev_crlf = crlf;
		pos = lf + 1;
	}

	/* An unterminated last line is stored only as far as it is decided:
	 * a "." or ".\r" may yet be the end marker, and a final CR may yet
	 * be half of a CRLF. */
	r->consumed = n;
	clen = n - pos;
	if (clen == 0 || (clen == 1 && in[pos] == '.') ||
	    (clen == 2 && in[pos] == '.' && in[pos + 1] == '\r'))
		return;
	if (in[n - 1] == '\r')
		clen--;
	if (in[pos] == '.')
		ref_content(r, in + pos + 1, clen - 1);
	else
		ref_content(r, in + pos, clen);
}

/* xorshift64*: fixed, libc-independent, so a failure reproduces anywhere. */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

static size_t
rnd_below(uint64_t *s, size_t n)
{
	return (size_t)(rnd(s) % n);
}

/* Inputs are mostly CR, LF, "." and "a", the octets the reader cares
 * about, with a little else (NUL, space, 0xff) for variety. */
static size_t
gen_input(uint64_t *s, char *buf, size_t cap)
{
	static const char tail[] = "\r\n.\r\nNEXT";
	size_t n, i, r;

	n = rnd_below(s, 8) == 0 ? rnd_below(s, 400) : rnd_below(s, 40);
	if (n > cap - sizeof(tail))
		n = cap - sizeof(tail);
	for (i = 0; i < n; i++) {
		r = rnd_below(s, 100);
		buf[i] = r < 26 ? '\r' :
		    r < 52      ? '\n' :
		    r < 74      ? '.' :
		    r < 92      ? 'a' :
		    r < 95      ? ' ' :
		    r < 98      ? '\0' :
				  '\xff';
	}
	/* Half the inputs end in a sure end marker and a next command. */
	if (rnd_below(s, 2) == 0) {
		memcpy(buf + n, tail, sizeof(tail) - 1);
		n += sizeof(tail) - 1;
	}
	return n;
}

struct outcome {
	const char *bytes;
	size_t len;
	enum smtp_data_err err;
	int done;
	size_t consumed;
	size_t size;
};

static int
outcome_eq(const struct outcome *a, const struct outcome *b)
{
	return same_bytes(a->bytes, a->len, b->bytes, b->len) && a->err == b->err &&
	    a->done == b->done && a->consumed == b->consumed && a->size == b->size;
}

static void
dump(const char *what, const char *p, size_t n)
{
	size_t i;

	fprintf(stderr, "  %s (%zu): \"", what, n);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\r')
			fputs("\\r", stderr);
		else if (c == '\n')
			fputs("\\n", stderr);
		else if (c >= 32 && c < 127)
			fputc(c, stderr);
		else
			fprintf(stderr, "\\x%02x", c);
	}
	fputs("\"\n", stderr);
}

static void
test_property(void)
{
	static const size_t maxes[] = { 0, 1, 5, 20, BIG };
	uint64_t seed = 0x6c75616d7461ULL; /* "luamta" */
	struct smtp_data *whole, *part;
	struct outcome ow, op, orf;
	struct ref r;
	char in[512];
	size_t sizes[16], n, i, k, ns;
	int bare, done_kinds[2] = { 0, 0 };
	int err_kinds[3] = { 0, 0, 0 };

	for (i = 0; i < PROPERTY_RUNS; i++) {
		n = gen_input(&seed, in, sizeof(in));
		bare = (int)(i % 3);
		r.max = maxes[rnd_below(&seed, 5)];
		r.bare = bare;
		ref_run(&r, in, n);
		orf = (struct outcome){ r.out, r.len, r.err, r.done, r.consumed, r.size };

		whole = smtp_data_new(r.max, (enum smtp_bare)bare, NULL, 0);
		ow.consumed = feed_chunks(whole, in, n, NULL, 0, &ow.done);
		ow.bytes = smtp_data_bytes(whole, &ow.len);
		ow.err = smtp_data_error(whole);
		ow.size = smtp_data_size(whole);

		/* One input in four goes byte by byte; the others in
		 * random chunks of 1-9 octets, sometimes a larger one. */
		if (i % 4 == 0) {
			sizes[0] = 1;
			ns = 1;
		} else {
			ns = 1 + rnd_below(&seed, 16);
			for (k = 0; k < ns; k++)
				sizes[k] = rnd_below(&seed, 6) == 0 ? 1 + rnd_below(&seed, 100) :
								      1 + rnd_below(&seed, 9);
		}
		part = smtp_data_new(r.max, (enum smtp_bare)bare, NULL, 0);
		op.consumed = feed_chunks(part, in, n, sizes, ns, &op.done);
		op.bytes = smtp_data_bytes(part, &op.len);
		op.err = smtp_data_error(part);
		op.size = smtp_data_size(part);

		CHECK_MSG(outcome_eq(&ow, &orf),
		    "input %zu (%s, max %zu): "
		    "whole feed differs from reference: err %s/%s done %d/%d "
		    "consumed %zu/%zu size %zu/%zu",
		    i, smtp_bare_str((enum smtp_bare)bare), r.max, smtp_data_err_str(ow.err),
		    smtp_data_err_str(orf.err), ow.done, orf.done, ow.consumed, orf.consumed,
		    ow.size, orf.size);
		CHECK_MSG(outcome_eq(&op, &ow),
		    "input %zu (%s, max %zu): "
		    "chunked feed differs from whole: err %s/%s done %d/%d "
		    "consumed %zu/%zu size %zu/%zu",
		    i, smtp_bare_str((enum smtp_bare)bare), r.max, smtp_data_err_str(op.err),
		    smtp_data_err_str(ow.err), op.done, ow.done, op.consumed, ow.consumed, op.size,
		    ow.size);
		if (!outcome_eq(&ow, &orf) || !outcome_eq(&op, &ow)) {
			dump("input", in, n);
			dump("reference", orf.bytes, orf.len);
			dump("whole", ow.bytes, ow.len);
			dump("chunked", op.bytes, op.len);
		}

		done_kinds[orf.done]++;
		err_kinds[orf.err == SMTP_DATA_ERR_NOMEM ? 0 : orf.err]++;
		free(r.out);
		smtp_data_free(whole);
		smtp_data_free(part);
	}

	/* The generator must reach every outcome, or the property above
	 * proves little. */
	CHECK_MSG(done_kinds[0] > 50 && done_kinds[1] > 50, "done: %d no, %d yes", done_kinds[0],
	    done_kinds[1]);
	CHECK_MSG(err_kinds[SMTP_DATA_OK] > 50 && err_kinds[SMTP_DATA_ERR_SIZE] > 50 &&
		err_kinds[SMTP_DATA_ERR_BARE] > 50,
	    "ok %d, size %d, bare %d", err_kinds[SMTP_DATA_OK], err_kinds[SMTP_DATA_ERR_SIZE],
	    err_kinds[SMTP_DATA_ERR_BARE]);
}

/* An error set from outside (the owner's memory budget) gives the stored
 * bytes back, stores nothing more, and the end of data is still found. */
static void
test_fail(void)
{
	struct smtp_data *d = smtp_data_new(1 << 20, SMTP_BARE_REJECT, NULL, 0);
	const char *first = "Subject: x\r\n\r\nfirst part\r\n";
	const char *rest = "more body\r\n.\r\nNOOP\r\n";
	size_t n, len;
	int done = 0;

	CHECK(d != NULL);
	if (d == NULL)
		return;
	CHECK(smtp_data_feed(d, first, strlen(first), &done) == strlen(first) && !done);
	CHECK(smtp_data_held(d) >= strlen(first));
	smtp_data_fail(d, SMTP_DATA_ERR_STORAGE);
	CHECK(smtp_data_held(d) == 0);
	CHECK(smtp_data_error(d) == SMTP_DATA_ERR_STORAGE);
	CHECK_STR(smtp_data_err_str(SMTP_DATA_ERR_STORAGE), "storage");
	n = smtp_data_feed(d, rest, strlen(rest), &done);
	CHECK(done);
	CHECK(n == strlen("more body\r\n.\r\n"));
	CHECK(smtp_data_held(d) == 0);
	CHECK(smtp_data_bytes(d, &len) != NULL && len == 0);
	/* The first error wins. */
	smtp_data_fail(d, SMTP_DATA_ERR_NOMEM);
	CHECK(smtp_data_error(d) == SMTP_DATA_ERR_STORAGE);
	smtp_data_free(d);
}

int
main(void)
{
	test_fail();
	test_table();
	test_api();
	test_large();
	test_property();
	return test_done("test_smtp_data");
}
