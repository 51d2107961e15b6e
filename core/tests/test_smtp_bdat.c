/* test_smtp_bdat.c - BDAT: a table of arguments with what each parses to,
 * then chunks read through the DATA reader's raw mode: no dot processing,
 * the bare CR/LF policy across chunk boundaries, the size limit across
 * chunks, discarded chunks, and every split of the input giving the same
 * message. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_bdat.h"
#include "smtp_data.h"
#include "test.h"

#define BYTES(s) (s), (sizeof(s) - 1)

struct parse_case {
	const char *arg;
	int rc;
	uint64_t size;
	int last;
};

static const struct parse_case parse_cases[] = {
	{ "0", 0, 0, 0 },
	{ "1", 0, 1, 0 },
	{ "0 LAST", 0, 0, 1 },
	{ "42 last", 0, 42, 1 },
	{ "42 LaSt", 0, 42, 1 },
	{ "42   LAST", 0, 42, 1 },
	{ "007", 0, 7, 0 },
	{ "9223372036854775807", 0, INT64_MAX, 0 },
	{ "0009223372036854775807 LAST", 0, INT64_MAX, 1 },
	{ "9223372036854775808", -1, 0, 0 },
	{ "18446744073709551616", -1, 0, 0 },
	{ "99999999999999999999999", -1, 0, 0 },
	{ "", -1, 0, 0 },
	{ "LAST", -1, 0, 0 },
	{ "x", -1, 0, 0 },
	{ "-1", -1, 0, 0 },
	{ "+1", -1, 0, 0 },
	{ "1x", -1, 0, 0 },
	{ "1 LASTX", -1, 0, 0 },
	{ "1 LAS", -1, 0, 0 },
	{ "1 LAST x", -1, 0, 0 },
	{ "1\tLAST", -1, 0, 0 },
	{ "1 \x0c\x01st", -1, 0, 0 },
	{ "1 MORE", -1, 0, 0 },
	{ "1 2", -1, 0, 0 },
};

static void
test_parse(void)
{
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];
		uint64_t size = 12345;
		int last = 9;
		int rc = smtp_bdat_parse(c->arg, strlen(c->arg), &size, &last);

		CHECK_MSG(rc == c->rc, "\"%s\": %d", c->arg, rc);
		if (c->rc == 0)
			CHECK_MSG(size == c->size && last == c->last, "\"%s\"", c->arg);
		else
			CHECK_MSG(size == 12345 && last == 9, "\"%s\" touched", c->arg);
	}
}

/* Reads the chunks (each "n bytes", n from sizes[], a negative size a
 * discarded chunk of -n) from in, fed step bytes at a time, and closes the
 * message. */
static struct smtp_data *
read_chunks(const char *in, size_t inlen, const int *sizes, size_t nsizes, int bare, size_t max,
    size_t step)
{
	struct smtp_data *d = smtp_data_new(max, (enum smtp_bare)bare, NULL, 0);
	struct smtp_bdat b;
	size_t off = 0;
	int done;

	smtp_data_raw(d);
	for (size_t i = 0; i < nsizes; i++) {
		int keep = sizes[i] >= 0;
		smtp_bdat_start(&b, (uint64_t)(keep ? sizes[i] : -sizes[i]), i + 1 == nsizes);
		CHECK(b.size == b.left);
		done = b.left == 0;
		while (!done) {
			size_t n = inlen - off < step ? inlen - off : step;
			size_t used = smtp_bdat_feed(&b, keep ? d : NULL, in + off, n, &done);
			CHECK(used <= n);
			off += used;
			if (n == 0)
				break;
		}
		/* The next chunk's bytes are never taken. */
		CHECK(smtp_bdat_feed(&b, d, in + off, inlen - off, &done) == 0 && done);
	}
	CHECK(off == inlen);
	smtp_data_close(d);
	return d;
}

struct chunk_case {
	const char *in;
	size_t inlen;
	int sizes[4];
	size_t nsizes;
	int bare;
	size_t max;
	const char *out;
	size_t outlen;
	enum smtp_data_err err;
	size_t size;
};

enum { REJECT = SMTP_BARE_REJECT, FIX = SMTP_BARE_FIX, ALLOW = SMTP_BARE_ALLOW };

static const struct chunk_case chunk_cases[] = {
	/* Dots and end-of-data lines are content. */
	{ BYTES(".\r\n..x\r\n"), { 8 }, 1, REJECT, 100, BYTES(".\r\n..x\r\n"), SMTP_DATA_OK, 8 },
	{ BYTES("a\r\n.\r\nb\r\n"), { 3, 6 }, 2, REJECT, 100, BYTES("a\r\n.\r\nb\r\n"),
	    SMTP_DATA_OK, 9 },
	/* CRLF split across two chunks is one CRLF. */
	{ BYTES("a\r\nb"), { 2, 2 }, 2, REJECT, 100, BYTES("a\r\nb"), SMTP_DATA_OK, 4 },
	/* ... and across a discarded chunk too: the message is what was kept. */
	{ BYTES("a\rxx\n"), { 2, -2, 1 }, 3, REJECT, 100, BYTES("a\r\n"), SMTP_DATA_OK, 3 },
	/* Bare LF and CR per policy; a CR at the very end is bare. */
	{ BYTES("a\nb\r"), { 4 }, 1, REJECT, 100, BYTES("a"), SMTP_DATA_ERR_BARE, 4 },
	{ BYTES("a\nb\r"), { 4 }, 1, FIX, 100, BYTES("a\r\nb\r\n"), SMTP_DATA_OK, 6 },
	{ BYTES("a\nb\r"), { 4 }, 1, ALLOW, 100, BYTES("a\nb\r"), SMTP_DATA_OK, 4 },
	/* The limit counts every chunk. */
	{ BYTES("abcdefgh"), { 4, 4 }, 2, REJECT, 6, BYTES("abcdef"), SMTP_DATA_ERR_SIZE, 8 },
	{ BYTES("abcdef"), { 3, 3 }, 2, REJECT, 6, BYTES("abcdef"), SMTP_DATA_OK, 6 },
	/* Empty chunks, an empty LAST. */
	{ BYTES("ab"), { 0, 2, 0 }, 3, REJECT, 100, BYTES("ab"), SMTP_DATA_OK, 2 },
	{ BYTES(""), { 0 }, 1, REJECT, 100, BYTES(""), SMTP_DATA_OK, 0 },
	/* NUL and 8-bit octets are kept. */
	{ BYTES("\0\xff\r\n"), { 4 }, 1, REJECT, 100, BYTES("\0\xff\r\n"), SMTP_DATA_OK, 4 },
};

static void
test_chunks(void)
{
	for (size_t i = 0; i < sizeof(chunk_cases) / sizeof(chunk_cases[0]); i++) {
		const struct chunk_case *c = &chunk_cases[i];
		for (size_t step = 1; step <= c->inlen + 1; step++) {
			struct smtp_data *d = read_chunks(
			    c->in, c->inlen, c->sizes, c->nsizes, c->bare, c->max, step);
			size_t len;
			const char *got = smtp_data_bytes(d, &len);

			CHECK_MSG(smtp_data_error(d) == c->err, "case %zu step %zu: %s", i, step,
			    smtp_data_err_str(smtp_data_error(d)));
			CHECK_MSG(smtp_data_size(d) == c->size, "case %zu step %zu: size %zu", i,
			    step, smtp_data_size(d));
			CHECK_MSG(len == c->outlen && memcmp(got, c->out, len) == 0,
			    "case %zu step %zu: %zu bytes", i, step, len);
			smtp_data_free(d);
		}
	}
}

/* Outside raw mode, smtp_data_close() changes nothing. */
static void
test_close_not_raw(void)
{
	struct smtp_data *d = smtp_data_new(100, SMTP_BARE_REJECT, NULL, 0);
	int done;

	CHECK(smtp_data_feed(d, "a\r", 2, &done) == 2 && !done);
	smtp_data_close(d);
	CHECK(smtp_data_feed(d, "\n.\r\n", 4, &done) == 4 && done);
	CHECK(smtp_data_error(d) == SMTP_DATA_OK && smtp_data_size(d) == 3);
	smtp_data_free(d);
}

int
main(void)
{
	test_parse();
	test_chunks();
	test_close_not_raw();
	return test_done("test_smtp_bdat");
}
