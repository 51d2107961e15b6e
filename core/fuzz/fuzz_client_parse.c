/* fuzz_client_parse.c - libFuzzer target for the SMTP client's pure half
 * (smtp_client_parse.h). The input is read as a server's reply lines, fed
 * to the reply reader and the EHLO keyword reader, and as a message, which
 * is dot-stuffed in pieces whose sizes the first byte picks. Invariants:
 * the reply's text stays NUL-terminated, printable and within its buffer;
 * a reply ends at most once; the stuffed output never has a line starting
 * with a single '.' before the end, never a bare LF, and undoing the
 * stuffing gives the input back (bare LFs as CRLF). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtp_client_parse.h"

static void
check_replies(const uint8_t *data, size_t size)
{
	struct smtp_creply r;
	struct smtp_caps caps;
	const char *p = (const char *)data, *end = p + size, *nl, *text;
	size_t len, tlen, i;
	int rc, code, last;

	smtp_creply_init(&r);
	memset(&caps, 0, sizeof(caps));
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		if (smtp_creply_parse_line(p, len, &code, &last, &text, &tlen) == 0) {
			FUZZ_CHECK(code >= 200 && code <= 599);
			FUZZ_CHECK(text >= p && text + tlen == p + len);
			smtp_caps_line(&caps, text, tlen);
		}
		rc = smtp_creply_line(&r, p, len);
		FUZZ_CHECK(r.len < sizeof(r.text) && r.text[r.len] == '\0');
		FUZZ_CHECK(strlen(r.text) == r.len);
		for (i = 0; i < r.len; i++)
			FUZZ_CHECK(r.text[i] >= 0x20 && r.text[i] <= 0x7e);
		if (rc != 0)
			smtp_creply_init(&r);
		p += len + (nl != NULL);
	}
	FUZZ_CHECK(caps.size == 0 || caps.size_offered);
	FUZZ_CHECK(!caps.auth_plain || caps.auth);
}

static void
check_stuffing(const uint8_t *data, size_t size)
{
	struct smtp_stuff st;
	size_t piece = size > 0 ? (size_t)data[0] % 16 + 2 : 2;
	size_t cap = 2 * size + 8, i = 0, o = 0, used, k, j;
	char *out = malloc(cap), *back = malloc(cap);
	const char *in = (const char *)data;

	FUZZ_CHECK(out != NULL && back != NULL);
	smtp_stuff_init(&st);
	while (i < size) {
		o += smtp_stuff(&st, in + i, size - i, &used, out + o, piece);
		FUZZ_CHECK(used > 0);
		i += used;
	}
	o += smtp_stuff_end(&st, out + o);
	FUZZ_CHECK(o <= cap && o >= 3 && memcmp(out + o - 3, ".\r\n", 3) == 0);
	/* Undo: every LF follows a CR; a line starting with '.' loses it; the
	 * last line is the lone dot. */
	for (k = 0, j = 0; k < o; k++) {
		if (out[k] == '\n')
			FUZZ_CHECK(k > 0 && out[k - 1] == '\r');
		if ((k == 0 || out[k - 1] == '\n') && out[k] == '.') {
			if (k + 3 == o)
				break;
			FUZZ_CHECK(k + 1 < o && out[k + 1] == '.');
			continue;
		}
		back[j++] = out[k];
	}
	/* back is the input with bare LFs turned into CRLF and an end of
	 * line added when it had none. */
	for (k = 0, i = 0; i < size; i++) {
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			FUZZ_CHECK(k < j && back[k++] == '\r');
		FUZZ_CHECK(k < j && back[k++] == in[i]);
	}
	FUZZ_CHECK(j - k <= 2);
	free(out);
	free(back);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_replies(data, size);
	check_stuffing(data, size);
	return 0;
}
