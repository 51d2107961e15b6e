/* fuzz_received.c - libFuzzer target for dsn_received() and
 * dsn_count_received() (dsn.h). The input is split at NUL bytes into the
 * client-supplied parts of the field: the HELO name, the rDNS name and the
 * recipient. Whatever they hold, the field must stay one header field:
 * CRLF only as a fold (followed by a tab) or at the very end, lines under
 * 998 octets, one Received: field by our own count, the date last. The
 * whole input is also counted as a message header, which must not crash
 * and cannot find more fields than lines. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsn.h"
#include "fuzz.h"

static void
check_field(const char *r)
{
	size_t n = strlen(r), col = 0;
	static const char tail[] = " +0000\r\n";

	FUZZ_CHECK(strncmp(r, "Received: from ", 15) == 0);
	FUZZ_CHECK(n > sizeof(tail) && strcmp(r + n - sizeof(tail) + 1, tail) == 0);
	for (size_t i = 0; i < n; i++) {
		if (r[i] == '\r') {
			FUZZ_CHECK(r[i + 1] == '\n');
			/* A fold, or the end. */
			FUZZ_CHECK(r[i + 2] == '\t' || r[i + 2] == '\0');
		} else if (r[i] == '\n') {
			FUZZ_CHECK(i > 0 && r[i - 1] == '\r');
			col = 0;
		} else {
			FUZZ_CHECK(++col < 998);
			FUZZ_CHECK(r[i] != '\0');
		}
	}
	FUZZ_CHECK(dsn_count_received(r, n) == 1);
	/* Nothing a client sent can add a clause after ours: the last ';'
	 * is the one before the date. */
	FUZZ_CHECK(strchr(strrchr(r, ';'), '(') == NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy, *helo, *rdns = NULL, *rcpt = NULL, *r;
	size_t lines = 1;
	int n;

	n = dsn_count_received((const char *)data, size);
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	FUZZ_CHECK(n >= 0 && (size_t)n <= lines);

	if ((copy = malloc(size + 3)) == NULL)
		return 0;
	if (size > 0)
		memcpy(copy, data, size);
	/* Three NULs: every part below is a string, possibly empty. */
	memset(copy + size, 0, 3);
	helo = copy;
	rdns = helo + strlen(helo) + 1;
	if (rdns > copy + size)
		rdns = NULL;
	else {
		rcpt = rdns + strlen(rdns) + 1;
		if (rcpt > copy + size)
			rcpt = NULL;
	}
	r = dsn_received(helo, rdns, size % 2 ? "192.0.2.1" : "2001:db8::1", "mx.example.net",
	    "ESMTPS", "0123456789ABCDEF", rcpt, (time_t)(size * 86399));
	FUZZ_CHECK(r != NULL);
	check_field(r);
	free(r);
	free(copy);
	return 0;
}
